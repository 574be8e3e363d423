#include "greenfiber/hub.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/task.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

class Hub : public greenfiber::testing::io_checked {};

TEST_F(Hub, IsOnePerThreadAndItsGreenletReturnsToMain) {
    hub& h = hub::current();
    EXPECT_EQ(&h, &hub::current());
    EXPECT_TRUE(h.loop_greenlet().parent().is_main());
    hub* other = nullptr;
    std::thread([&] { other = &hub::current(); }).join();
    EXPECT_NE(other, &h);
}

TEST_F(Hub, SleepersWakeInDeadlineOrder) {
    std::vector<int> order;
    auto a = spawn([&] {
        sleep(120ms);
        order.push_back(1);
    });
    auto b = spawn([&] {
        sleep(10ms);
        order.push_back(2);
    });
    auto c = spawn([&] {
        sleep(60ms);
        order.push_back(3);
    });
    a.get();
    b.get();
    c.get();
    EXPECT_EQ(order, (std::vector<int>{2, 3, 1}));
}

TEST_F(Hub, YieldNowRunsTheOtherReadyFibersInFifoOrder) {
    std::vector<std::string> order;
    auto a = spawn([&] {
        for (int i = 0; i < 3; ++i) {
            order.push_back("a" + std::to_string(i));
            yield_now();
        }
    });
    auto b = spawn([&] {
        for (int i = 0; i < 3; ++i) {
            order.push_back("b" + std::to_string(i));
            yield_now();
        }
    });
    a.get();
    b.get();
    EXPECT_EQ(order, (std::vector<std::string>{"a0", "b0", "a1", "b1", "a2", "b2"}));
}

TEST_F(Hub, TheMainGreenletCanSleepLikeAnyFiber) {
    std::vector<std::string> order;
    auto t = spawn([&] { order.push_back("task"); });
    sleep(1ms);
    order.push_back("main");
    t.get();
    EXPECT_EQ(order, (std::vector<std::string>{"task", "main"}));
}

TEST_F(Hub, WaitingForWhatNothingCanCompleteRaisesLoopExitNamingIt) {
    auto stuck = spawn(spawn_options{"stuck", 0}, [] {
        greenfiber::detail::waiter w("a wake-up nobody sends");
        hub::current().park(w);
    });
    try {
        stuck.get();
        FAIL() << "get() returned";
    } catch (const loop_exit& e) {
        EXPECT_THAT(e.what(), HasSubstr("task 'stuck'"));
        EXPECT_THAT(e.what(), HasSubstr("2 fibers parked"));
    }
    stuck.cancel();
    EXPECT_THROW(stuck.get(), cancelled_error);
}

TEST_F(Hub, ACallbackMustNotSuspend) {
    std::vector<std::string> reports;
    auto previous = set_report_handler([&](const failure_report& r) {
        try {
            std::rethrow_exception(r.error);
        } catch (const std::exception& e) {
            reports.emplace_back(e.what());
        }
    });
    hub::current().call_soon([] { sleep(1ms); });
    yield_now();
    set_report_handler(std::move(previous));
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_THAT(reports[0], HasSubstr("must not suspend"));
}

TEST_F(Hub, PostFromAnotherThreadWakesAParkedFiber) {
    hub& h = hub::current();
    greenfiber::detail::waiter w("a post from another thread");
    auto work = boost::asio::make_work_guard(h.context());  // a post is coming: no loop_exit
    std::thread other([&] {
        std::this_thread::sleep_for(10ms);
        h.post([&] {
            h.wake(w);
            work.reset();
        });
    });
    h.park(w);
    other.join();
    SUCCEED();
}

TEST_F(Hub, ABoundedNumberOfReadyFibersRunsPerTurnSoTimersAreNotStarved) {
    hub& h = hub::current();
    h.set_ready_budget(4);
    bool stop = false;
    int spins = 0;
    auto spinner = spawn([&] {
        while (!stop) {
            ++spins;
            yield_now();
        }
    });
    auto timer = spawn([&] {
        sleep(5ms);
        stop = true;
    });
    timer.get();
    spinner.get();
    h.set_ready_budget(64);
    EXPECT_GT(spins, 0);
    EXPECT_TRUE(stop);
}

TEST_F(Hub, ParkUntilReturnsFalseWhenTheDeadlinePassesFirst) {
    hub& h = hub::current();
    greenfiber::detail::waiter w("nothing");
    EXPECT_FALSE(h.park_until(w, std::chrono::steady_clock::now() + 5ms));
    greenfiber::detail::waiter w2("a wake-up");
    auto t = spawn([&] { h.wake(w2); });
    EXPECT_TRUE(h.park_until(w2, std::chrono::steady_clock::now() + 1h));
    t.get();
}

TEST_F(Hub, AGreenletKilledWhileSleepingUnwindsAndCleansUpItsTimer) {
    std::vector<std::string> seen;
    struct noisy {
        std::vector<std::string>& seen;
        ~noisy() { seen.push_back("unwound"); }
    };
    hub& h = hub::current();
    greenlet g(
        [&] {
            noisy n{seen};
            sleep(1h);
            seen.push_back("slept an hour?");
        },
        h.loop_greenlet());
    h.call_soon([&] { (void)g.switch_to(); });  // starts it from the hub; it parks in sleep
    sleep(5ms);
    EXPECT_TRUE(g.active());
    g = greenlet();  // the last handle: greenlet_exit unwinds it through its sleep
    EXPECT_EQ(seen, std::vector<std::string>{"unwound"});
}

TEST_F(Hub, AtThreadExitUnfinishedTasksAreCancelledAndJoined) {
    std::vector<std::string> seen;
    std::thread([&] {
        auto t = spawn([&] {
            try {
                sleep(1h);
            } catch (const cancelled_error&) {
                seen.push_back("cancelled at thread exit");
                throw;
            }
        });
        yield_now();
    }).join();
    EXPECT_EQ(seen, std::vector<std::string>{"cancelled at thread exit"});
}

TEST_F(Hub, TheWatchdogNamesATaskThatBlocksTheLoop) {
    hub& h = hub::current();
    std::vector<std::string> reports;
    std::vector<std::string> sources;
    auto previous = h.set_exception_handler([&](const failure_report& r) {
        reports.emplace_back(r.message);
        if (r.source != nullptr) sources.push_back(r.source->name());
    });
    // The threshold and the block are far apart, and far above what a loaded machine adds
    // to a resume that only parks (the polite task's), so no other report slips in.
    const auto previous_threshold = h.watchdog();
    h.set_watchdog(250ms);
    auto polite = spawn(spawn_options{"polite", 0}, [] { sleep(750ms); });
    auto blocker = spawn(spawn_options{"blocker", 0}, [] { std::this_thread::sleep_for(750ms); });
    blocker.get();
    polite.get();
    h.set_watchdog(previous_threshold);
    h.set_exception_handler(std::move(previous));
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_THAT(reports[0], HasSubstr("task 'blocker'"));
    EXPECT_THAT(reports[0], HasSubstr("spawned with"));
    EXPECT_THAT(reports[0], HasSubstr("TheWatchdogNamesATaskThatBlocksTheLoop"));
    EXPECT_THAT(reports[0], HasSubstr("to_thread"));
    EXPECT_EQ(sources,
              std::vector<std::string>{"blocker"});  // the report's source is the task's fiber
}

TEST_F(Hub, TheWatchdogLeavesTheMainGreenletAlone) {
    // Between two waits the main greenlet runs outside the loop: not a stall of the hub.
    hub& h = hub::current();
    std::vector<std::string> reports;
    auto previous =
        h.set_exception_handler([&](const failure_report& r) { reports.emplace_back(r.message); });
    const auto previous_threshold = h.watchdog();
    h.set_watchdog(250ms);
    sleep(1ms);
    std::this_thread::sleep_for(750ms);
    sleep(1ms);
    h.set_watchdog(previous_threshold);
    h.set_exception_handler(std::move(previous));
    EXPECT_TRUE(reports.empty()) << reports.front();
}

// Sets GREENFIBER_WATCHDOG_MS to `value` (unset if empty) and returns the threshold a hub
// created afterwards, on a new thread, starts with. Restores the variable.
std::chrono::milliseconds threshold_of_a_new_hub(std::optional<std::string> value) {
    const char* old = std::getenv("GREENFIBER_WATCHDOG_MS");
    const std::optional<std::string> saved =
        old != nullptr ? std::optional<std::string>(old) : std::nullopt;
    if (value) {
        ::setenv("GREENFIBER_WATCHDOG_MS", value->c_str(), 1);
    } else {
        ::unsetenv("GREENFIBER_WATCHDOG_MS");
    }
    std::chrono::milliseconds seen{-1};
    std::thread([&] { seen = hub::current().watchdog(); }).join();
    if (saved) {
        ::setenv("GREENFIBER_WATCHDOG_MS", saved->c_str(), 1);
    } else {
        ::unsetenv("GREENFIBER_WATCHDOG_MS");
    }
    return seen;
}

TEST_F(Hub, TheWatchdogStartsWithTheThresholdInTheEnvironment) {
    EXPECT_EQ(threshold_of_a_new_hub("250"), 250ms);
    EXPECT_EQ(threshold_of_a_new_hub("0"), 0ms);  // off
    EXPECT_EQ(threshold_of_a_new_hub(std::nullopt), 100ms);
    // Anything but a whole number of milliseconds that fits leaves the default.
    for (const char* bad : {"", "-5", "abc", "12x", " 12", "1.5", "99999999999999999999"}) {
        EXPECT_EQ(threshold_of_a_new_hub(bad), 100ms) << "GREENFIBER_WATCHDOG_MS=\"" << bad << '"';
    }
    // Read once, when the hub is created: the variable changes nothing later.
    hub& h = hub::current();
    const auto before = h.watchdog();
    const char* old = std::getenv("GREENFIBER_WATCHDOG_MS");
    const std::optional<std::string> saved =
        old != nullptr ? std::optional<std::string>(old) : std::nullopt;
    ::setenv("GREENFIBER_WATCHDOG_MS", "7", 1);
    sleep(1ms);
    EXPECT_EQ(h.watchdog(), before);
    if (saved) {
        ::setenv("GREENFIBER_WATCHDOG_MS", saved->c_str(), 1);
    } else {
        ::unsetenv("GREENFIBER_WATCHDOG_MS");
    }
}

TEST_F(Hub, AWaitWithADeadlineThatEndsEarlyGoesOnAtOnce) {
    // Woken before its deadline, a timed park cancels its timer and returns without waiting
    // for the timer's handler: a cancelled sleeper finishes in the same pass of the loop.
    auto sleeper = spawn([] { sleep(std::chrono::hours(1)); });
    yield_now();
    sleeper.cancel();
    int passes = 0;
    while (!sleeper.done() && passes < 10) {
        yield_now();
        ++passes;
    }
    EXPECT_TRUE(sleeper.done());
    EXPECT_LE(passes, 1);
    EXPECT_THROW(sleeper.get(), cancelled_error);
}

TEST_F(Hub, TheWatchdogCanBeTurnedOff) {
    hub& h = hub::current();
    std::vector<std::string> reports;
    auto previous =
        h.set_exception_handler([&](const failure_report& r) { reports.emplace_back(r.message); });
    const auto previous_threshold = h.watchdog();
    h.set_watchdog(0ms);
    auto blocker = spawn([] { std::this_thread::sleep_for(30ms); });
    blocker.get();
    h.set_watchdog(previous_threshold);
    h.set_exception_handler(std::move(previous));
    EXPECT_TRUE(reports.empty());
}

TEST_F(Hub, ItsExceptionHandlerReceivesCallbackFailuresAndTheHubGoesOn) {
    hub& h = hub::current();
    std::vector<std::string> reports;
    auto previous =
        h.set_exception_handler([&](const failure_report& r) { reports.emplace_back(r.message); });
    bool after = false;
    h.call_soon([] { throw std::runtime_error("callback failed"); });
    h.call_soon([&] { after = true; });
    yield_now();
    h.set_exception_handler(std::move(previous));
    EXPECT_TRUE(after);
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_THAT(reports[0], HasSubstr("callback"));
}

}  // namespace
