// Memory per parked greenlet: N greenlets, each switched into once and parked in the
// middle of its function (it switches back to main). Prints VmRSS delta / N (value) and
// VmSize delta / N, like the anchor mem_bctx. Then resumes every greenlet to its end and
// checks a checksum built from a value each greenlet kept on its own stack while parked
// and a value it received on resumption.
//   mem_parked [N]
#include <greenfiber/greenlet.hpp>
#include <greenfiber/stack.hpp>

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

}  // namespace

int main(int argc, char** argv) {
    const long n = bench::arg_long(argc, argv, 1, 100'000);
    gf::greenlet self = gf::greenlet::current();  // sets up this thread's state first
    main_g = &self;

    std::vector<gf::greenlet> gs;
    const auto before = bench::mem_snapshot::take();
    gs.reserve(std::size_t(n));
    for (long i = 0; i < n; ++i) {
        gs.emplace_back(parked);
        (void)gs.back().switch_to(i);  // runs to its park point, back here
    }
    const auto after = bench::mem_snapshot::take();
    const gf::stack_stats st = gf::stack_statistics();
    const long maps = bench::map_count();

    const auto t0 = bench::clock_type::now();
    for (long i = 0; i < n; ++i) (void)gs[std::size_t(i)].switch_to(3 * i + 1);  // to its end
    const double resume_ns = bench::ns_since(t0) / double(n);
    std::uint64_t expect = 0;
    for (long i = 0; i < n; ++i) expect += mix(std::uint64_t(i), std::uint64_t(3 * i + 1));
    bool ok = checksum == expect;
    for (const auto& g : gs) ok = ok && g.dead();
    gs.clear();
    ok = ok && gf::live_greenlets() == 0;

    char sum[32], faults[32];
    std::snprintf(sum, sizeof sum, "%016llx", static_cast<unsigned long long>(checksum));
    std::snprintf(faults, sizeof faults, "%.3f", double(after.minflt - before.minflt) / double(n));
    bench::report_memory("greenfiber_greenlet", n, before, after,
                         "stack=" + std::to_string(gf::default_stack_size()) +
                             " pte_bytes=" + std::to_string((after.pte - before.pte) / n) +
                             " minflt_per_op=" + faults + " guarded=" + std::to_string(st.guarded) +
                             " maps=" + std::to_string(maps) +
                             " resume_ns=" + std::to_string(long(resume_ns)) + " checksum=" + sum +
                             (ok ? " check=ok" : " check=FAILED"));
    if (!ok) {
        std::fprintf(stderr, "mem_parked: checksum %s, expected %016llx, or a greenlet not dead\n",
                     sum, static_cast<unsigned long long>(expect));
        return 1;
    }
}
