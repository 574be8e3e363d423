// Cost of a yield through the hub: two tasks call yield_now() in turn, so each yield is
// one park, one resume by the hub and one hub turn. Prints ns per yield. It measures the
// hub's own path per resumed fiber, e.g. the stall monitor's heartbeat store.
//   yield [yields_per_task [runs]]
#include <greenfiber/hub.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

#include <string>

#include "common.hpp"

namespace gf = greenfiber;

namespace {

double run(long yields) {
    double ns = 0;
    gf::run([&] {
        auto body = [yields] {
            for (long i = 0; i < yields; ++i) gf::yield_now();
        };
        const auto t0 = bench::clock_type::now();
        auto a = gf::spawn(body);
        auto b = gf::spawn(body);
        a.get();
        b.get();
        ns = bench::ns_since(t0);
    });
    return ns / (2.0 * double(yields));
}

}  // namespace

int main(int argc, char** argv) {
    const long n = bench::arg_long(argc, argv, 1, 1'000'000);  // yields per task
    const int runs = int(bench::arg_long(argc, argv, 2, 5));
    bench::timed("yield", "greenfiber_hub", "ns", n, n / 10 + 1, runs,
                 "yields=" + std::to_string(2 * n), run);
}
