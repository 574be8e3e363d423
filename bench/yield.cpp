// Hub yield ping-pong: two tasks each call yield_now() `round_trips` times, so every
// yield hands the thread to the other task through the hub's ready queue. ns per yield
// (one round trip = two yields), like the anchors' switch rows for Boost.Fiber's yield,
// gevent's sleep(0) and asyncio's sleep(0): the clock runs from spawning both tasks to
// joining both, as Boost.Fiber's does from constructing its fibers to joining them.
//   yield [round_trips [runs]]
#include <greenfiber/hub.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

#include <chrono>
#include <cstdio>
#include <string>

#include "common.hpp"

namespace gf = greenfiber;

namespace {

long yields_done = 0;  // every yield of every run, checked at the end

double run(long round_trips) {
    auto body = [round_trips] {
        for (long i = 0; i < round_trips; ++i) {
            gf::yield_now();
            ++yields_done;
        }
    };
    const auto t0 = bench::clock_type::now();
    auto a = gf::spawn(body);
    auto b = gf::spawn(body);
    a.get();
    b.get();
    return bench::ns_since(t0) / (2.0 * double(round_trips));
}

}  // namespace

int main(int argc, char** argv) {
    const long n = bench::arg_long(argc, argv, 1, 5'000'000);  // round trips: 10M yields
    const int runs = int(bench::arg_long(argc, argv, 2, 5));
    return gf::run([n, runs] {
        // The watchdog stays on, so each resume pays for its clock reads as in a user's
        // program; its threshold is raised only so that a slow (loaded) run prints no report.
        gf::hub::current().set_watchdog(std::chrono::minutes(10));
        bench::timed("switch", "greenfiber_hub_yield", "ns", n, n / 10 + 1, runs,
                     "switches=" + std::to_string(2 * n), run);
        const long expect = 2 * (n / 10 + 1 + long(runs) * n);
        if (yields_done != expect) {
            std::fprintf(stderr, "yield: %ld yields returned, expected %ld\n", yields_done, expect);
            return 1;
        }
        return 0;
    });
}
