// 005_seeing_inside: what is every fiber doing, and who keeps the hub from its loop?
//
// Three tools answer. dump() prints every task and greenlet of the hub with its call stack
// (gevent's print_run_info, Go's goroutine dump). A stall_monitor is a thread of its own
// that notices a fiber blocking the hub while it still blocks, and reports it by name with
// its stack at that moment (gevent's monitor thread). The hub's watchdog reports the same
// stall once the fiber yields, with how long it lasted.
//
// The program prints verdicts, not the reports themselves: their stacks, thread ids and
// durations change from run to run. Print the reports to see them.

#include <atomic>
#include <chrono>
#include <exception>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <greenfiber/hub.hpp>
#include <greenfiber/introspect.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;

// A task that waits for news that never comes (until it is cancelled).
[[gnu::noinline]] void wait_for_news() {
    greenfiber::sleep(1h);
    asm volatile("" ::: "memory");
}

// A fiber that computes without yielding: it stands for any blocking call on the hub's
// thread (a synchronous DNS lookup, a read() of a slow file). Here it stops once the
// monitor has spoken, or after 10 s.
[[gnu::noinline]] void slow_checksum(const std::atomic<bool>& reported) {
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (!reported.load() && std::chrono::steady_clock::now() < give_up) {
        asm volatile("" ::: "memory");
    }
}

const char* yes(bool b) {
    return b ? "yes" : "no";
}

bool has(const std::string& text, const std::string& what) {
    return text.find(what) != std::string::npos;
}

void demo() {
    greenfiber::hub& hub = greenfiber::hub::current();

    // Step 1: a parked task, and the dump. The dump itself reads the debug information the
    // first time (a few hundred ms), blocking the hub meanwhile: the watchdog is off and the
    // monitor not there yet, so that they speak of the blocker alone.
    hub.set_watchdog(0ms);
    auto sleeper = greenfiber::spawn(greenfiber::spawn_options{"sleeper"}, wait_for_news);
    greenfiber::yield_now();  // it runs to its sleep
    std::ostringstream dump;
    greenfiber::dump(dump);
    std::cout << "dump: task 'sleeper' parked, waiting for its sleep: "
              << yes(has(dump.str(), "task 'sleeper' parked for ") &&
                     has(dump.str(), "waiting for sleep until +"))
              << "\n";
    std::cout << "dump: its stack names wait_for_news(): " << yes(has(dump.str(), "wait_for_news"))
              << "\n";
    greenfiber::yield_now();  // the watchdog's measure of this turn ends here

    // The watchdog speaks after the fact, through the hub's exception handler.
    hub.set_watchdog(100ms);
    std::vector<std::string> watchdog_reports;
    hub.set_exception_handler(
        [&](const greenfiber::failure_report& r) { watchdog_reports.emplace_back(r.message); });

    // The monitor speaks while the stall lasts, on its own thread.
    std::mutex mu;
    std::vector<std::string> monitor_reports;
    std::atomic<bool> reported{false};
    greenfiber::stall_monitor_options options;
    options.threshold = 150ms;
    options.handler = [&](const greenfiber::failure_report& r) {
        {
            std::lock_guard lock(mu);
            monitor_reports.emplace_back(r.message);
        }
        reported.store(true);
    };
    greenfiber::stall_monitor monitor(options);

    // Step 2: a task that blocks the hub.
    // (A report before it starts would be of another stall: a loaded machine can keep the
    // thread off the CPU that long. The blocker waits for one of its own.)
    auto blocker = greenfiber::spawn(greenfiber::spawn_options{"blocker"}, [&] {
        reported.store(false);
        slow_checksum(reported);
    });
    blocker.get();
    std::string seen;
    {
        std::lock_guard lock(mu);
        for (const std::string& r : monitor_reports)
            if (has(r, "task 'blocker'")) seen = r;
    }
    std::cout << "monitor: a report while the hub was blocked: " << yes(!seen.empty()) << "\n";
    std::cout << "monitor: it names task 'blocker': " << yes(has(seen, "task 'blocker'")) << "\n";
    std::cout << "monitor: its stack names slow_checksum(): " << yes(has(seen, "slow_checksum"))
              << "\n";
    bool watchdog_named = false;
    for (const std::string& r : watchdog_reports)
        watchdog_named = watchdog_named || has(r, "watchdog: task 'blocker'");
    std::cout << "watchdog: reported task 'blocker' after it yielded: " << yes(watchdog_named)
              << "\n";

    sleeper.cancel();
    try {
        sleeper.get();
    } catch (const greenfiber::cancelled_error&) {
        std::cout << "sleeper: cancelled\n";
    }
}

}  // namespace

int main() {
    std::cout << "005_seeing_inside: a dump of every fiber, the stall monitor and the watchdog\n";
    try {
        greenfiber::run(demo);
    } catch (const std::exception& e) {
        std::cout << "escaped: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
