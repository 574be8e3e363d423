// Memory per parked fiber, two ways. Prints VmRSS delta / N (value) and VmSize delta / N,
// like the anchors' mem_parked rows, then resumes every fiber to its end and checks a
// checksum built from a value each fiber kept on its own stack while parked and a value
// it saw on resumption.
// - greenlet: N greenlets, each switched into once and parked in the middle of its
//   function (it switches back to main), like the anchor mem_bctx.
// - task_event: N tasks on the hub, each waiting on one greenfiber::event, like the
//   anchors' Go (a channel), asyncio and gevent (an Event) rows: the snapshot is taken
//   inside the running loop before the first spawn and after the last task has parked,
//   and the handles to the N tasks count, as asyncio's list of tasks does.
// - greenlet_small, task_event_small: the same on small stacks of SMALL bytes (default
//   3584, the largest, which a kill or cancellation needs; stack.hpp, "Small stacks"). Run
//   with LD_BIND_NOW=1, which small stacks require.
//   mem_parked [greenlet|task_event|greenlet_small|task_event_small] [N] [SMALL]
#include <greenfiber/greenlet.hpp>
#include <greenfiber/hub.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/stack.hpp>
#include <greenfiber/sync.hpp>
#include <greenfiber/task.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common.hpp"

namespace gf = greenfiber;

namespace {

gf::greenlet* main_g = nullptr;
std::uint64_t checksum = 0;

std::uint64_t mix(std::uint64_t i, std::uint64_t got) {
    return (i * 0x9E3779B97F4A7C15ull) ^ got;
}

// Started with its index; parks; resumed with 3 * index + 1.
void parked(long i) {
    const long mine = i;  // lives on this greenlet's stack while it is parked
    const long got = main_g->switch_to().take<long>();
    checksum += mix(std::uint64_t(mine), std::uint64_t(got));
}

// What every mode prints beside the figure, and whether its checks passed.
void report(const char* impl, long n, std::size_t small, const bench::mem_snapshot& before,
            const bench::mem_snapshot& after, long maps, double resume_ns, std::uint64_t sum,
            bool ok) {
    const gf::stack_stats st = gf::stack_statistics();
    char sumtext[32], faults[32];
    std::snprintf(sumtext, sizeof sumtext, "%016llx", static_cast<unsigned long long>(sum));
    std::snprintf(faults, sizeof faults, "%.3f", double(after.minflt - before.minflt) / double(n));
    bench::report_memory(impl, n, before, after,
                         (small != 0 ? "small_stack=" + std::to_string(small)
                                     : "stack=" + std::to_string(gf::default_stack_size())) +
                             " pte_bytes=" + std::to_string((after.pte - before.pte) / n) +
                             " minflt_per_op=" + faults + " guarded=" + std::to_string(st.guarded) +
                             " maps=" + std::to_string(maps) +
                             " resume_ns=" + std::to_string(long(resume_ns)) +
                             " checksum=" + sumtext + (ok ? " check=ok" : " check=FAILED"));
}

// `base`, or `base`_small<bytes> for small stacks of `small` bytes.
std::string impl_name(const char* base, std::size_t small) {
    return small == 0 ? std::string(base) : std::string(base) + "_small" + std::to_string(small);
}

std::uint64_t expected_sum(long n) {
    std::uint64_t expect = 0;
    for (long i = 0; i < n; ++i) expect += mix(std::uint64_t(i), std::uint64_t(3 * i + 1));
    return expect;
}

// N tasks parked in event::wait() (on small stacks of `small` bytes unless 0); returns 0
// when every check passed.
int task_event(long n, std::size_t small) {
    return gf::run([n, small] {
        // The watchdog stays on as for a user; its threshold is raised only so that
        // spawning N tasks in one go prints no report.
        gf::hub::current().set_watchdog(std::chrono::minutes(10));
        gf::event release;
        gf::event all_parked;
        long parked_count = 0;
        long resumed = 0;  // the value each task sees on resumption: 3 * index + 1 in order
        std::vector<gf::task<void>> ts;
        const auto before = bench::mem_snapshot::take();
        ts.reserve(std::size_t(n));
        for (long i = 0; i < n; ++i)
            ts.push_back(gf::spawn(gf::spawn_options{.small_stack = small}, [&, i] {
                const long mine = i;  // lives on this task's stack while it is parked
                if (++parked_count == n) all_parked.set();
                release.wait();
                // Woken in the order they waited (FIFO), which is the order of spawning.
                const long got = 3 * resumed++ + 1;
                checksum += mix(std::uint64_t(mine), std::uint64_t(got));
            }));
        all_parked.wait();
        const auto after = bench::mem_snapshot::take();
        const long maps = bench::map_count();

        const auto t0 = bench::clock_type::now();
        release.set();
        for (auto& t : ts) t.get();
        const double resume_ns = bench::ns_since(t0) / double(n);
        const std::uint64_t expect = expected_sum(n);
        bool ok = checksum == expect && resumed == n;
        for (const auto& t : ts) ok = ok && t.status() == gf::task_status::done;
        report(impl_name("greenfiber_task_event", small).c_str(), n, small, before, after, maps,
               resume_ns, checksum, ok);
        if (!ok) {
            std::fprintf(stderr,
                         "mem_parked: checksum %016llx, expected %016llx, %ld of %ld resumed, or "
                         "a task not done\n",
                         static_cast<unsigned long long>(checksum),
                         static_cast<unsigned long long>(expect), resumed, n);
            return 1;
        }
        return 0;
    });
}

// N greenlets parked in a switch back to main (on small stacks of `small` bytes unless 0);
// returns 0 when every check passed.
int greenlet_parked(long n, std::size_t small) {
    gf::greenlet self = gf::greenlet::current();  // sets up this thread's state first
    main_g = &self;

    std::vector<gf::greenlet> gs;
    const auto before = bench::mem_snapshot::take();
    gs.reserve(std::size_t(n));
    for (long i = 0; i < n; ++i) {
        gs.emplace_back(parked, gf::greenlet::options{.name = {}, .small_stack = small});
        (void)gs.back().switch_to(i);  // runs to its park point, back here
    }
    const auto after = bench::mem_snapshot::take();
    const long maps = bench::map_count();

    const auto t0 = bench::clock_type::now();
    for (long i = 0; i < n; ++i) (void)gs[std::size_t(i)].switch_to(3 * i + 1);  // to its end
    const double resume_ns = bench::ns_since(t0) / double(n);
    const std::uint64_t expect = expected_sum(n);
    bool ok = checksum == expect;
    for (const auto& g : gs) ok = ok && g.dead();
    gs.clear();
    ok = ok && gf::live_greenlets() == 0;

    report(impl_name("greenfiber_greenlet", small).c_str(), n, small, before, after, maps,
           resume_ns, checksum, ok);
    if (!ok) {
        std::fprintf(
            stderr, "mem_parked: checksum %016llx, expected %016llx, or a greenlet not dead\n",
            static_cast<unsigned long long>(checksum), static_cast<unsigned long long>(expect));
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "greenlet";
    const long n = bench::arg_long(argc, argv, 2, 100'000);
    const auto small = static_cast<std::size_t>(bench::arg_long(argc, argv, 3, 3584));
    if (mode == "greenlet") return greenlet_parked(n, 0);
    if (mode == "task_event") return task_event(n, 0);
    if (mode == "greenlet_small") return greenlet_parked(n, small);
    if (mode == "task_event_small") return task_event(n, small);
    std::fprintf(stderr,
                 "usage: mem_parked [greenlet|task_event|greenlet_small|task_event_small] [N] "
                 "[SMALL]\n");
    return 2;
}
