// Cost of the hub's timeline (trace.hpp): two tasks ping-pong through the hub with
// yield_now() (each yield parks the task and the hub resumes the other: two switches), in
// one run with the trace off (compiled in, never started) and on (recording into a ring of
// 65 536 records that wraps many times). Prints ns per yield for each, like switch.cpp.
//   trace [yields [runs]]
#include <greenfiber/hub.hpp>
#include <greenfiber/task.hpp>
#include <greenfiber/trace.hpp>

#include <string>

#include "common.hpp"

namespace gf = greenfiber;

namespace {

double run(long yields, bool traced) {
    if (traced) gf::start_trace();
    auto body = [yields] {
        for (long i = 0; i < yields; ++i) gf::yield_now();
    };
    auto a = gf::spawn(body);
    auto b = gf::spawn(body);
    const auto t0 = bench::clock_type::now();
    a.get();  // the main greenlet parks; the hub alternates between a and b
    b.get();
    const double ns = bench::ns_since(t0);
    if (traced) gf::stop_trace();
    return ns / (2.0 * double(yields));
}

}  // namespace

int main(int argc, char** argv) {
    const long n = bench::arg_long(argc, argv, 1, 2'000'000);  // yields per task
    const int runs = int(bench::arg_long(argc, argv, 2, 5));
    // Alternating, so that a drifting machine load hits both alike.
    for (int round = 0; round < 2; ++round) {
        bench::timed("hub_yield", "greenfiber_trace_off", "ns", n, n / 10 + 1, runs,
                     "yields=" + std::to_string(2 * n), [](long k) { return run(k, false); });
        bench::timed("hub_yield", "greenfiber_trace_on", "ns", n, n / 10 + 1, runs,
                     "yields=" + std::to_string(2 * n), [](long k) { return run(k, true); });
    }
    const gf::trace_info info = gf::trace_state();
    std::printf("trace: %llu records made in the last run, %llu overwritten (ring of %zu)\n",
                static_cast<unsigned long long>(info.recorded),
                static_cast<unsigned long long>(info.lost), info.capacity);
}
