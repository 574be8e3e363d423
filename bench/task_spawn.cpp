// Task spawn+get: batches of 1000 trivial tasks are spawned on the hub, then each is
// joined with get() (the first get() parks the spawning task, the batch runs, each task
// finishes and its stack goes back to the pool). ns per task, like the anchors'
// spawn_join rows (Go's goroutines joined by a WaitGroup, Boost.Fiber's fibers joined
// one by one).
//   task_spawn [N [runs]]
#include <greenfiber/greenlet.hpp>
#include <greenfiber/hub.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/stack.hpp>
#include <greenfiber/task.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "common.hpp"

namespace gf = greenfiber;

namespace {

constexpr long batch = 1000;
long results_sum = 0;  // the sum of every task's result, checked at the end

long trivial(long i) {
    return i;
}

double run(long tasks) {
    std::vector<gf::task<long>> ts;
    ts.reserve(batch);
    const auto t0 = bench::clock_type::now();
    for (long done = 0; done < tasks; done += batch) {
        for (long i = 0; i < batch; ++i) ts.push_back(gf::spawn(trivial, i));
        for (auto& t : ts) results_sum += t.get();
        ts.clear();
    }
    return bench::ns_since(t0) / double(tasks);
}

}  // namespace

int main(int argc, char** argv) {
    const long n = bench::arg_long(argc, argv, 1, 1'000'000);
    const int runs = int(bench::arg_long(argc, argv, 2, 5));
    const int rc = gf::run([n, runs] {
        // The watchdog stays on (its clock reads are part of each resume, as for a user);
        // its threshold is raised only so that a slow (loaded) run prints no report.
        gf::hub::current().set_watchdog(std::chrono::minutes(10));
        bench::timed(
            "spawn_join", "greenfiber_task_spawn_get", "ns", n, n / 10, runs,
            "batch=" + std::to_string(batch) + " stack=" + std::to_string(gf::default_stack_size()),
            run);
        // Every task ran and returned its index: the warm-up and the runs, in whole batches.
        const long batches = (n / 10 + batch - 1) / batch + long(runs) * ((n + batch - 1) / batch);
        const long expect = batches * (batch * (batch - 1) / 2);
        if (results_sum != expect) {
            std::fprintf(stderr, "task_spawn: results sum to %ld, expected %ld\n", results_sum,
                         expect);
            return 1;
        }
        return 0;
    });
    if (rc == 0 && gf::live_greenlets() > 1) {  // the thread's main greenlet may remain
        std::fprintf(stderr, "task_spawn: %zu greenlets still alive\n", gf::live_greenlets());
        return 1;
    }
    return rc;
}
