// Helpers shared by greenfiber's benchmarks: timing, medians, /proc readings and the
// one RESULT line each program prints. The output format is that of the micro anchors
// (shared/anchors/micro), so that one table and one set of ratios covers both.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace bench {

using clock_type = std::chrono::steady_clock;

inline double ns_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::nano>(clock_type::now() - t0).count();
}

struct summary {
    double median, min, max;
};

inline summary summarize(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    const double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return {med, v.front(), v.back()};
}

// argv[i] as a number, or `def` when absent. Exits with a message on garbage.
inline long arg_long(int argc, char** argv, int i, long def) {
    if (argc <= i) return def;
    char* end = nullptr;
    const long v = std::strtol(argv[i], &end, 10);
    if (end == argv[i] || *end != '\0' || v <= 0) {
        std::fprintf(stderr, "bad argument %d: '%s' (a positive integer)\n", i, argv[i]);
        std::exit(2);
    }
    return v;
}

// Minor page faults of this process so far (first touches of memory: about 10 us each
// on the virtual machines these run on, so they explain many figures).
inline long minor_faults() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

// One warm-up call (with `warm_arg`) and `runs` measured calls of `fn(arg)`; fn returns
// the figure of one run. Prints the median with min and max.
template <class F>
void timed(const char* name, const char* impl, const char* unit, long arg, long warm_arg, int runs,
           const std::string& extra, F&& fn) {
    fn(warm_arg);
    const long faults0 = minor_faults();
    std::vector<double> v;
    for (int r = 0; r < runs; ++r) v.push_back(fn(arg));
    const double faults = double(minor_faults() - faults0) / (double(runs) * double(arg));
    const summary s = summarize(v);
    std::printf(
        "RESULT name=%s impl=%s value=%.2f unit=%s min=%.2f max=%.2f runs=%d n=%ld "
        "minflt_per_op=%.3f%s%s\n",
        name, impl, s.median, unit, s.min, s.max, runs, arg, faults, extra.empty() ? "" : " ",
        extra.c_str());
    std::fflush(stdout);
}

// A field of /proc/self/status in bytes (VmRSS, VmSize, VmPTE, ...); -1 if absent.
inline long status_bytes(const char* key) {
    std::ifstream in("/proc/self/status");
    std::string line;
    const std::size_t klen = std::strlen(key);
    while (std::getline(in, line)) {
        if (line.compare(0, klen, key) == 0 && line.size() > klen && line[klen] == ':')
            return std::strtol(line.c_str() + klen + 1, nullptr, 10) * 1024;
    }
    return -1;
}

inline long map_count() {
    std::ifstream in("/proc/self/maps");
    std::string line;
    long n = 0;
    while (std::getline(in, line)) ++n;
    return n;
}

struct mem_snapshot {
    long rss, vmsize, pte, minflt;
    static mem_snapshot take() {
        return {status_bytes("VmRSS"), status_bytes("VmSize"), status_bytes("VmPTE"),
                minor_faults()};
    }
};

// The anchors' memory line: VmRSS delta / n as the value, VmSize delta / n as vmsize.
inline void report_memory(const char* impl, long n, const mem_snapshot& before,
                          const mem_snapshot& after, const std::string& extra = {}) {
    const double rss = double(after.rss - before.rss) / double(n);
    const double vms = double(after.vmsize - before.vmsize) / double(n);
    std::printf("RESULT name=mem_parked impl=%s value=%.0f unit=bytes vmsize=%.0f n=%ld%s%s\n",
                impl, rss, vms, n, extra.empty() ? "" : " ", extra.c_str());
    std::fflush(stdout);
}

}  // namespace bench
