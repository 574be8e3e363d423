// introspect.hpp: the stall monitor names a fiber that blocks its hub while it still blocks.

#include "greenfiber/introspect.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/hub.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

class StallMonitor : public greenfiber::testing::io_checked {};

// How long a test waits for something that should happen at once: far beyond any
// threshold here, so that only a broken monitor reaches it.
constexpr auto patience = 60s;

// Collects the reports of one monitor (they arrive on its thread).
struct collector {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::string> texts;
    std::atomic<bool> any{false};
    std::function<void()> on_report;  // called on the monitor's thread after each report

    report_handler handler() {
        return [this](const failure_report& r) {
            {
                std::lock_guard lock(mu);
                texts.emplace_back(r.message);
            }
            any.store(true);
            cv.notify_all();
            if (on_report) on_report();
        };
    }
    std::vector<std::string> all() {
        std::lock_guard lock(mu);
        return texts;
    }
    bool wait_for_report() {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, patience, [&] { return !texts.empty(); });
    }
};

stall_monitor_options options(collector& c, std::chrono::milliseconds threshold) {
    stall_monitor_options o;
    o.threshold = threshold;
    o.handler = c.handler();
    return o;
}

spawn_options named(std::string name) {
    spawn_options o;
    o.name = std::move(name);
    return o;
}

// Busy until `until` is set (or `patience` runs out): a fiber that never yields.
[[gnu::noinline]] void spin_in_named_frame(const std::atomic<bool>& until) {
    const auto give_up = std::chrono::steady_clock::now() + patience;
    while (!until.load() && std::chrono::steady_clock::now() < give_up) {
        asm volatile("" ::: "memory");
    }
}

// A blocking read() on the hub's thread: the mistake the monitor exists for.
[[gnu::noinline]] ssize_t blocking_read_in_named_frame(int fd, char& c) {
    const ssize_t n = ::read(fd, &c, 1);
    asm volatile("" ::: "memory");
    return n;
}

struct pipe_fds {
    int r = -1;
    int w = -1;
    pipe_fds() {
        int fds[2];
        if (::pipe(fds) != 0) throw std::runtime_error("pipe");
        r = fds[0];
        w = fds[1];
    }
    ~pipe_fds() {
        ::close(r);
        ::close(w);
    }
    void put(char c) const { (void)!::write(w, &c, 1); }
};

// Writes to the pipe after `patience` unless cancelled: a broken monitor fails the test
// instead of hanging it.
struct rescue {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::thread t;
    explicit rescue(const pipe_fds& p) {
        t = std::thread([this, &p] {
            std::unique_lock lock(mu);
            if (!cv.wait_for(lock, patience, [&] { return done; })) p.put('r');
        });
    }
    ~rescue() {
        {
            std::lock_guard lock(mu);
            done = true;
        }
        cv.notify_all();
        t.join();
    }
};

TEST_F(StallMonitor, ASpinningFiberIsReportedOnceWhileItSpins) {
    collector c;
    stall_monitor m(options(c, 100ms));
    std::atomic<bool> reported{false};
    std::atomic<bool> release{false};
    c.on_report = [&] { reported.store(true); };
    const int spinner_line = __LINE__ + 1;
    auto spinner = spawn({.name = "spinner"}, [&] {
        spin_in_named_frame(reported);
        // Still blocked after the report: the same stall, not a second one.
        const std::size_t before = m.reports();
        std::thread releaser([&] {
            // Several monitor periods pass while the fiber still spins.
            std::this_thread::sleep_for(600ms);
            release.store(true);
        });
        spin_in_named_frame(release);
        releaser.join();
        return before;
    });
    EXPECT_EQ(spinner.get(), 1u);
    ASSERT_TRUE(reported.load()) << "no report while the fiber spun";
    const auto texts = c.all();
    ASSERT_EQ(texts.size(), 1u);
    EXPECT_THAT(texts[0],
                HasSubstr("stall monitor: task 'spinner' (spawned at " + std::string(__FILE__) +
                          ":" + std::to_string(spinner_line) + ":"));
    EXPECT_THAT(texts[0], HasSubstr("and still does"));
    EXPECT_THAT(texts[0], HasSubstr("spin_in_named_frame"));
    EXPECT_THAT(texts[0], HasSubstr("monitor_test.cpp:"));
    // A later stall is a new episode, reported again.
    reported.store(false);
    auto again = spawn(named("spinner-2"), [&] { spin_in_named_frame(reported); });
    again.get();
    ASSERT_TRUE(reported.load());
    ASSERT_EQ(c.all().size(), 2u);
    EXPECT_THAT(c.all()[1], HasSubstr("task 'spinner-2'"));
}

// The sampling signal is handled on the thread's alternate stack (SA_ONSTACK): a fiber on
// a small stack (stack.hpp, "Small stacks") has no room for the kernel's signal frame, up
// to 3.5 KiB. The 2 KiB stack is the first of its slab, nothing mapped below it.
TEST_F(StallMonitor, AFiberSpinningOnASmallStackIsSampledFromTheAlternateStack) {
    collector c;
    stall_monitor m(options(c, 100ms));
    std::atomic<bool> reported{false};
    c.on_report = [&] { reported.store(true); };
    auto spinner = spawn({.name = "small spinner", .small_stack = 2048},
                         [&] { spin_in_named_frame(reported); });
    spinner.get();
    ASSERT_TRUE(reported.load());
    struct sigaction sa {};
    ASSERT_EQ(::sigaction(stall_monitor_options{}.signal, nullptr, &sa), 0);
    EXPECT_NE(sa.sa_flags & SA_ONSTACK, 0);
    const auto texts = c.all();
    ASSERT_EQ(texts.size(), 1u);
    EXPECT_THAT(texts[0], HasSubstr("task 'small spinner'"));
    EXPECT_THAT(texts[0], HasSubstr("spin_in_named_frame"));
}

TEST_F(StallMonitor, ABlockingReadOnAPipeIsReportedWhileBlockedAndTheReadGoesOn) {
    pipe_fds p;
    rescue r(p);
    collector c;
    // The report itself ends the stall: the read returns only because it was reported.
    c.on_report = [&] { p.put('x'); };
    stall_monitor m(options(c, 100ms));
    auto reader = spawn(named("reader"), [&] {
        char ch = 0;
        const ssize_t n = blocking_read_in_named_frame(p.r, ch);
        return n == 1 ? ch : '!';
    });
    // The sampling signal restarts read() (SA_RESTART): it returns the byte, not EINTR.
    EXPECT_EQ(reader.get(), 'x');
    const auto texts = c.all();
    ASSERT_EQ(texts.size(), 1u);
    EXPECT_THAT(texts[0], HasSubstr("task 'reader'"));
    EXPECT_THAT(texts[0], HasSubstr("blocking_read_in_named_frame"));
}

TEST_F(StallMonitor, AnIdleHubAndTheMainGreenletOutsideTheLoopAreNotReported) {
    collector c;
    // A threshold well above a loaded machine's scheduling delays: the fibers below are
    // busy for microseconds only, and a thread kept off the CPU in one of those moments
    // for a whole threshold would be (rightly) reported as a stall.
    stall_monitor m(options(c, 100ms));
    // Idle in epoll for several thresholds: the hub waits, it is not stalled.
    sleep(500ms);
    auto sleeper = spawn(named("sleeper"), [] { sleep(500ms); });
    sleeper.get();
    // The thread's main greenlet busy outside the loop: the hub is not running.
    const auto until = std::chrono::steady_clock::now() + 500ms;
    while (std::chrono::steady_clock::now() < until) {
        asm volatile("" ::: "memory");
    }
    EXPECT_EQ(m.reports(), 0u);
    EXPECT_TRUE(c.all().empty());
}

TEST_F(StallMonitor, DestroyedFromAnotherThreadWhileTheHubIsBlocked) {
    pipe_fds p;
    rescue r(p);
    collector c;
    auto m = std::make_unique<stall_monitor>(options(c, 50ms));
    std::thread stopper([&] {
        // After the report, the hub is still blocked in read(): stop the monitor then.
        if (c.wait_for_report()) m.reset();
        p.put('y');
    });
    auto reader = spawn(named("reader"), [&] {
        char ch = 0;
        return blocking_read_in_named_frame(p.r, ch) == 1 ? ch : '!';
    });
    EXPECT_EQ(reader.get(), 'y');
    stopper.join();
    EXPECT_EQ(m, nullptr);
    EXPECT_EQ(c.all().size(), 1u);
}

TEST_F(StallMonitor, DestroyedBeforeItsThresholdWhileTheHubIsBlocked) {
    pipe_fds p;
    rescue r(p);
    collector c;
    auto m = std::make_unique<stall_monitor>(options(c, 3600s));
    std::atomic<bool> reading{false};
    std::thread stopper([&] {
        while (!reading.load()) std::this_thread::yield();
        m.reset();  // the hub is blocked (or about to be) in read()
        p.put('z');
    });
    auto reader = spawn(named("reader"), [&] {
        char ch = 0;
        reading.store(true);
        return blocking_read_in_named_frame(p.r, ch) == 1 ? ch : '!';
    });
    EXPECT_EQ(reader.get(), 'z');
    stopper.join();
    EXPECT_TRUE(c.all().empty());
    // The thread can be watched again.
    stall_monitor again(options(c, 3600s));
    EXPECT_EQ(again.reports(), 0u);
}

TEST_F(StallMonitor, TwoHubsOnTwoThreadsEachReportTheirOwnFiber) {
    std::string texts[2];
    std::string errors;
    std::mutex errors_mu;
    auto hub_thread = [&](int i) {
        try {
            collector c;
            std::atomic<bool> reported{false};
            c.on_report = [&] { reported.store(true); };
            stall_monitor m(options(c, 100ms));
            auto t = spawn(named(i == 0 ? "spinner-A" : "spinner-B"),
                           [&] { spin_in_named_frame(reported); });
            t.get();
            const auto all = c.all();
            if (all.size() == 1) texts[i] = all[0];
        } catch (const std::exception& e) {
            std::lock_guard lock(errors_mu);
            errors += e.what();
        }
    };
    std::thread a(hub_thread, 0);
    std::thread b(hub_thread, 1);
    a.join();
    b.join();
    EXPECT_EQ(errors, "");
    EXPECT_THAT(texts[0], HasSubstr("task 'spinner-A'"));
    EXPECT_THAT(texts[0], Not(HasSubstr("spinner-B")));
    EXPECT_THAT(texts[1], HasSubstr("task 'spinner-B'"));
    EXPECT_THAT(texts[1], Not(HasSubstr("spinner-A")));
    EXPECT_THAT(texts[0], HasSubstr("spin_in_named_frame"));
    EXPECT_THAT(texts[1], HasSubstr("spin_in_named_frame"));
}

TEST_F(StallMonitor, ASecondMonitorOnOneHubOrAForeignSignalHandlerIsRefused) {
    collector c;
    {
        stall_monitor m(options(c, 3600s));
        try {
            stall_monitor second(options(c, 3600s));
            ADD_FAILURE() << "a second monitor on one hub was accepted";
        } catch (const error& e) {
            EXPECT_THAT(e.what(), HasSubstr("already has a stall monitor"));
        }
    }
    struct sigaction sa {};
    struct sigaction old {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR2, &sa, &old), 0);
    stall_monitor_options o = options(c, 3600s);
    o.signal = SIGUSR2;
    try {
        stall_monitor m(o);
        ADD_FAILURE() << "a signal with someone else's handler was taken over";
    } catch (const error& e) {
        EXPECT_THAT(e.what(), HasSubstr("already has a handler"));
    }
    sigaction(SIGUSR2, &old, nullptr);
    try {
        stall_monitor_options zero = options(c, 0ms);
        stall_monitor m(zero);
        ADD_FAILURE() << "a zero threshold was accepted";
    } catch (const error& e) {
        EXPECT_THAT(e.what(), HasSubstr("threshold must be positive"));
    }
}

}  // namespace
