// Switch cost of a greenlet: main and one greenlet switch to each other with
// `(void)g.switch_to()` / `(void)parent.switch_to()` (an empty value each way).
// One round trip = two switches; prints ns per single switch, like the anchor
// switch_bctx (raw boost::context::fiber ping-pong).
//   switch [round_trips [runs]]
#include <greenfiber/greenlet.hpp>

#include <string>

#include "common.hpp"

namespace gf = greenfiber;

namespace {

double run(long round_trips) {
    bool stop = false;
    gf::greenlet main_g = gf::greenlet::current();
    gf::greenlet peer([&stop, &main_g] {
        while (!stop) (void)main_g.switch_to();
    });
    (void)peer.switch_to();  // start it: it parks in its loop
    const auto t0 = bench::clock_type::now();
    for (long i = 0; i < round_trips; ++i) (void)peer.switch_to();
    const double ns = bench::ns_since(t0);
    stop = true;
    (void)peer.switch_to();  // lets it return; its stack goes back to the pool
    return ns / (2.0 * double(round_trips));
}

}  // namespace

int main(int argc, char** argv) {
    const long n = bench::arg_long(argc, argv, 1, 5'000'000);  // round trips: 10M switches
    const int runs = int(bench::arg_long(argc, argv, 2, 5));
    bench::timed("switch", "greenfiber_greenlet", "ns", n, n / 10 + 1, runs,
                 "switches=" + std::to_string(2 * n), run);
}
