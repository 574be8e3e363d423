// Spawn+join of greenlets on pooled stacks: batches of 1000 trivial greenlets are
// created, each switched to once (its function returns at once, so it finishes and
// its stack goes back to the pool), then the handles are dropped. ns per greenlet.
// Arguments in the order of the anchor spawn_bctx:
//   spawn [pooled [N [runs]]]
// greenfiber's stacks always come from its pool, so `pooled` is the only mode.
#include <greenfiber/greenlet.hpp>
#include <greenfiber/stack.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "common.hpp"

namespace gf = greenfiber;

namespace {

constexpr long batch = 1000;
volatile long sink = 0;

void trivial() {
    sink = sink + 1;
}

double run(long tasks) {
    std::vector<gf::greenlet> gs;
    gs.reserve(batch);
    const auto t0 = bench::clock_type::now();
    for (long done = 0; done < tasks; done += batch) {
        for (long i = 0; i < batch; ++i) gs.emplace_back(trivial);
        for (auto& g : gs) (void)g.switch_to();  // runs to its end, back to us (the parent)
        gs.clear();                              // dead greenlets: freed, no switch
    }
    return bench::ns_since(t0) / double(tasks);
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "pooled";
    if (mode != "pooled") {
        std::fprintf(stderr, "usage: spawn [pooled [N [runs]]] (greenfiber always pools stacks)\n");
        return 2;
    }
    const long n = bench::arg_long(argc, argv, 2, 1'000'000);
    const int runs = int(bench::arg_long(argc, argv, 3, 5));
    const long before = long(sink);
    bench::timed(
        "spawn_join", "greenfiber_greenlet_pooled", "ns", n, n / 10, runs,
        "batch=" + std::to_string(batch) + " stack=" + std::to_string(gf::default_stack_size()),
        run);
    // Every greenlet ran: the warm-up (rounded up to whole batches) and the runs.
    const long warm = (n / 10 + batch - 1) / batch * batch;
    const long all = (n + batch - 1) / batch * batch;
    if (long(sink) - before != warm + runs * all) {
        std::fprintf(stderr, "spawn: %ld greenlets ran, expected %ld\n", long(sink) - before,
                     warm + runs * all);
        return 1;
    }
    if (gf::live_greenlets() != 0) {
        std::fprintf(stderr, "spawn: %zu greenlets still alive\n", gf::live_greenlets());
        return 1;
    }
}
