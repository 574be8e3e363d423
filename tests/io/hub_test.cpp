#include "greenfiber/hub.hpp"

#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <latch>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/socket.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "hub_support.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

class Hub : public greenfiber::testing::io_checked {};

// The message of the loop_exit that `wait()` raises; a test failure if it returns.
template <class Fn>
std::string loop_exit_message(Fn wait) {
    try {
        wait();
    } catch (const loop_exit& e) {
        return e.what();
    }
    ADD_FAILURE() << "the wait returned instead of raising loop_exit";
    return {};
}

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
    // The threshold and the block are far apart, and far above what a loaded machine adds
    // to a resume that only parks (the polite task's), so no other report slips in.
    greenfiber::testing::watchdog_reports reports(h, 250ms);
    auto polite = spawn(spawn_options{"polite", 0}, [] { sleep(750ms); });
    auto blocker = spawn(spawn_options{"blocker", 0}, [] { std::this_thread::sleep_for(750ms); });
    blocker.get();
    polite.get();
    ASSERT_EQ(reports.messages.size(), 1u);
    EXPECT_THAT(reports.messages[0], HasSubstr("task 'blocker'"));
    EXPECT_THAT(reports.messages[0], HasSubstr("spawned at"));
    EXPECT_THAT(reports.messages[0], HasSubstr("TheWatchdogNamesATaskThatBlocksTheLoop"));
    EXPECT_THAT(reports.messages[0], HasSubstr("to_thread"));
    EXPECT_EQ(reports.sources,
              std::vector<std::string>{"blocker"});  // the report's source is the task's fiber
}

TEST_F(Hub, TheWatchdogLeavesTheMainGreenletAlone) {
    // Between two waits the main greenlet runs outside the loop: not a stall of the hub.
    hub& h = hub::current();
    greenfiber::testing::watchdog_reports reports(h, 250ms);
    sleep(1ms);
    std::this_thread::sleep_for(750ms);
    sleep(1ms);
    EXPECT_TRUE(reports.messages.empty()) << reports.messages.front();
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
    greenfiber::testing::watchdog_reports reports(h, 0ms);
    auto blocker = spawn([] { std::this_thread::sleep_for(30ms); });
    blocker.get();
    EXPECT_TRUE(reports.messages.empty());
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

// ---- the deadlock report ---------------------------------------------------------------------

// The main greenlet only waits for 'outer'; the report must name the task that is stuck
// ('inner', in an event) and what each parked task waits for.
TEST_F(Hub, TheDeadlockReportNamesEachParkedTaskAndWhatItWaitsFor) {
    event never;
    auto inner = spawn(spawn_options{"inner", 0}, [&] { never.wait(); });
    auto outer = spawn(spawn_options{"outer", 0}, [&] { inner.get(); });
    const std::string message = loop_exit_message([&] { outer.get(); });
    EXPECT_THAT(message, HasSubstr("the main greenlet waits for get() of task 'outer'"));
    EXPECT_THAT(message, HasSubstr("task 'inner' (spawned at"));
    EXPECT_THAT(message, HasSubstr("waits for event"));
    EXPECT_THAT(message, HasSubstr("task 'outer' (spawned at"));
    EXPECT_THAT(message, HasSubstr("waits for get() of task 'inner'"));
    outer.cancel();  // cancels the awaited 'inner' too
    EXPECT_THROW(outer.get(), cancelled_error);
    inner.cancel();
    EXPECT_THROW(inner.get(), cancelled_error);
}

TEST_F(Hub, TheDeadlockReportListsAFewParkedTasksAndCountsTheRest) {
    event never;
    std::vector<task<void>> stuck;
    for (int i = 0; i < 20; ++i) {
        stuck.push_back(
            spawn(spawn_options{"stuck" + std::to_string(i), 0}, [&] { never.wait(); }));
    }
    const std::string message = loop_exit_message([&] { never.wait(); });
    EXPECT_THAT(message, HasSubstr("task 'stuck0'"));
    EXPECT_THAT(message, HasSubstr("and 12 more parked tasks"));
    EXPECT_THAT(message, ::testing::Not(HasSubstr("task 'stuck19'")));
    EXPECT_LE(std::count(message.begin(), message.end(), '\n'), 10);
    for (auto& t : stuck) t.cancel();
    for (auto& t : stuck) EXPECT_THROW(t.get(), cancelled_error);
}

// ---- hub_handle ------------------------------------------------------------------------------

class HubHandle : public greenfiber::testing::io_checked {};

// The example of hub_handle's comment in hub.hpp.
TEST_F(HubHandle, AFiberWaitsWhileAnotherThreadHoldsOneAndIsWokenByItsPost) {
    hub& h = hub::current();
    event done;
    std::thread worker([hold = h.keep_alive(), &done]() mutable {
        // Long enough for the hub to run out of everything else: without the handle it
        // would raise loop_exit in the waiting main greenlet now.
        std::this_thread::sleep_for(20ms);
        EXPECT_TRUE(hold.post([&done] { done.set(); }));
    });
    done.wait();
    worker.join();
    EXPECT_TRUE(done.is_set());
    EXPECT_EQ(h.handles(), 0u);
}

TEST_F(HubHandle, DroppingTheLastHoldBringsTheDeadlockReportBack) {
    hub& h = hub::current();
    hub_handle first = h.keep_alive();
    hub_handle second = first;  // a copy is a hold of its own
    EXPECT_EQ(h.handles(), 2u);
    bool posted_ran = false;
    std::thread worker([&, a = std::move(first), b = std::move(second)]() mutable {
        std::this_thread::sleep_for(10ms);
        a.reset();  // one hold left: the hub still waits
        std::this_thread::sleep_for(10ms);
        EXPECT_TRUE(b.post([&posted_ran] { posted_ran = true; }));
        b.reset();  // the last: now nothing can wake the main greenlet
    });
    event never;
    const std::string message = loop_exit_message([&] { never.wait(); });
    worker.join();
    EXPECT_TRUE(posted_ran) << "the hub gave up while a handle was still held";
    EXPECT_THAT(message, HasSubstr("the main greenlet waits for event"));
    EXPECT_THAT(message, HasSubstr("no hub_handle"));
    EXPECT_EQ(h.handles(), 0u);
}

TEST_F(HubHandle, CopiesMovesAndResetCountHoldsExactly) {
    hub& h = hub::current();
    hub_handle empty;
    EXPECT_FALSE(empty);
    EXPECT_FALSE(empty.post([] {}));
    {
        hub_handle a = h.keep_alive();
        EXPECT_TRUE(a);
        hub_handle b = a;
        hub_handle c = std::move(a);
        EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty
        EXPECT_EQ(h.handles(), 2u);
        b = c;  // b lets go of its own hold, takes another on the same hub
        EXPECT_EQ(h.handles(), 2u);
        b = b;  // NOLINT: self-assignment keeps the hold
        EXPECT_EQ(h.handles(), 2u);
        c = std::move(b);
        EXPECT_EQ(h.handles(), 1u);
        c.reset();
        c.reset();  // idempotent
        EXPECT_EQ(h.handles(), 0u);
        hub_handle d = h.keep_alive();
        empty = std::move(d);
        EXPECT_EQ(h.handles(), 1u);
    }
    empty.reset();
    EXPECT_EQ(h.handles(), 0u);
}

TEST_F(HubHandle, TakingOneFromAnotherThreadIsRefused) {
    hub& h = hub::current();
    std::string message;
    std::thread([&] {
        try {
            (void)h.keep_alive();
        } catch (const greenfiber::error& e) {
            message = e.what();
        }
    }).join();
    EXPECT_THAT(message, HasSubstr("keep_alive() must be called on the hub's own thread"));
    EXPECT_EQ(h.handles(), 0u);
}

TEST_F(HubHandle, OutlivingItsHubIsHarmlessPostReturnsFalseAndDropsTheFunction) {
    hub_handle hold;
    bool cancelled_at_exit = false;
    std::thread([&] {
        hold = hub::current().keep_alive();
        // A fiber still waits as the thread exits: the hub cancels it although a hold is
        // out, and goes away.
        auto t = spawn([&] {
            try {
                event never;
                never.wait();
            } catch (const cancelled_error&) {
                cancelled_at_exit = true;
                throw;
            }
        });
        yield_now();
    }).join();
    EXPECT_TRUE(cancelled_at_exit);
    auto token = std::make_shared<int>(1);
    std::weak_ptr<int> watch = token;
    EXPECT_FALSE(hold.post([t = std::move(token)] {}));
    EXPECT_TRUE(watch.expired()) << "the function was kept";
    hub_handle copy = hold;  // copying and dropping one of a gone hub is harmless too
    copy.reset();
    hold.reset();
}

// Posts race with the exit of the hub's thread: each is either run by the hub or refused
// (post() returns false); none reaches a destroyed hub (ASan would see it).
TEST_F(HubHandle, PostingWhileItsHubsThreadExitsEitherRunsOrIsRefused) {
    hub_handle hold;
    std::latch taken(1);
    std::atomic<int> ran{0};
    std::thread owner([&] {
        hold = hub::current().keep_alive();
        taken.count_down();  // `hold` is not touched here any more
        for (int i = 0; i < 50; ++i) yield_now();
    });
    taken.wait();
    hub_handle mine = hold;
    int accepted = 0;
    int refused = 0;
    for (int i = 0; i < 2000; ++i) {
        if (mine.post([&ran] { ++ran; })) {
            ++accepted;
        } else {
            ++refused;
        }
    }
    owner.join();
    EXPECT_FALSE(mine.post([&ran] { ++ran; }));
    EXPECT_EQ(accepted + refused, 2000);
    EXPECT_LE(ran.load(), accepted);
    mine.reset();
    hold.reset();
}

TEST_F(HubHandle, ManyThreadsCopyPostAndDropOneConcurrently) {
    hub& h = hub::current();
    constexpr int threads = 4;
    constexpr int posts = 250;
    int arrived = 0;  // touched on the hub's thread only
    event all_arrived;
    std::vector<std::thread> workers;
    {
        hub_handle origin = h.keep_alive();
        for (int i = 0; i < threads; ++i) {
            workers.emplace_back([&, origin]() {
                for (int n = 0; n < posts; ++n) {
                    hub_handle copy = origin;
                    EXPECT_TRUE(copy.post([&] {
                        if (++arrived == threads * posts) all_arrived.set();
                    }));
                }
            });
        }
    }
    all_arrived.wait();
    for (auto& w : workers) w.join();
    EXPECT_EQ(arrived, threads * posts);
    EXPECT_EQ(h.handles(), 0u);
}

TEST_F(HubHandle, AFunctionPostedThroughOneThatThrowsIsReportedAndTheHubGoesOn) {
    hub& h = hub::current();
    std::vector<std::string> reports;
    auto previous =
        h.set_exception_handler([&](const failure_report& r) { reports.emplace_back(r.message); });
    event done;
    std::thread worker([hold = h.keep_alive(), &done]() mutable {
        (void)hold.post([] { throw std::runtime_error("posted failure"); });
        (void)hold.post([&done] { done.set(); });
    });
    done.wait();
    worker.join();
    h.set_exception_handler(std::move(previous));
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_THAT(reports[0], HasSubstr("hub_handle threw"));
}

// ---- liveness: a task that swallows its cancellation -----------------------------------------

// A retry loop with `catch (...) {}` around sleep() swallows every cancelled_error. Each
// raise comes after a turn of the hub, so the thread does not freeze: another task's timers
// fire and its socket I/O completes while the swallower spins.
TEST_F(Hub, ATaskThatSwallowsEveryCancellationDoesNotFreezeTheHub) {
    bool stop = false;
    int swallowed = 0;
    auto swallower = spawn(spawn_options{"swallower", 0}, [&] {
        while (!stop) {
            try {
                sleep(1h);
            } catch (...) {  // the careless retry loop
                ++swallowed;
            }
        }
    });
    yield_now();
    swallower.cancel();
    auto [a, b] = unix_stream::pair();
    char got = 0;
    auto reader = spawn([&, &b = b] {
        std::size_t n = b.read_some(boost::asio::buffer(&got, 1));  // parks: nothing sent yet
        EXPECT_EQ(n, 1u);
    });
    int timers = 0;
    auto worker = spawn([&, &a = a] {
        for (int i = 0; i < 3; ++i) {
            sleep(1ms);
            ++timers;
        }
        const char c = 'x';
        a.write(boost::asio::buffer(&c, 1));
        reader.get();
        stop = true;
    });
    worker.get();
    EXPECT_EQ(timers, 3);
    EXPECT_EQ(got, 'x');
    EXPECT_GT(swallowed, 0);
    try {
        swallower.get();
    } catch (const cancelled_error&) {
        // It returned after a swallowed request: ends cancelled (asyncio's _must_cancel).
    }
    EXPECT_TRUE(swallower.done());
}

// A task that swallows greenlet_exit too (`catch (...)` around its wait) used to keep its
// thread from ever exiting: the hub going away killed it, it waited again, and the hub ran
// on for it. Its unwinding now gets a bounded time, then it is reported as a greenlet that
// did not die and left suspended. In a child process: the leaked fiber is the point, and
// an alarm turns the old hang into a failure.
TEST(HubExitDeathTest, ATaskThatSwallowsItsKillDoesNotKeepItsThreadFromExiting) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(
        {
            alarm(30);
            std::atomic<int> not_killed{0};
            std::atomic<bool> named{false};
            set_report_handler([&](const failure_report& r) {
                if (r.message.find("greenlet_exit did not kill") != std::string::npos) {
                    ++not_killed;
                    if (r.message.find("zombie") != std::string::npos) named = true;
                }
            });
            std::thread([] {
                (void)spawn(spawn_options{"zombie", 0}, [] {
                    for (;;) {
                        try {
                            sleep(1ms);
                        } catch (...) {  // cancelled_error and greenlet_exit alike
                        }
                    }
                });
                yield_now();
            }).join();  // the thread's hub is destroyed as the thread exits
            std::_Exit(not_killed == 1 && named ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "");
}

// A retry loop that backs off with a blocking call once it caught its cancellation keeps
// the hub from its loop: the watchdog names it and where it was spawned.
TEST_F(Hub, TheWatchdogNamesATaskThatSwallowsItsCancellationAndBlocks) {
    hub& h = hub::current();
    greenfiber::testing::watchdog_reports reports(h, 250ms);
    bool blocked = false;
    auto swallower = spawn(spawn_options{"swallower", 0}, [&] {
        while (!blocked) {
            try {
                sleep(1h);
            } catch (...) {
                std::this_thread::sleep_for(750ms);  // a blocking back-off
                blocked = true;
            }
        }
    });
    yield_now();
    swallower.cancel();
    try {
        swallower.get();
    } catch (const cancelled_error&) {
    }
    ASSERT_EQ(reports.messages.size(), 1u);
    EXPECT_THAT(reports.messages[0], HasSubstr("task 'swallower'"));
    EXPECT_THAT(reports.messages[0], HasSubstr("spawned at"));
    EXPECT_THAT(reports.messages[0],
                HasSubstr("TheWatchdogNamesATaskThatSwallowsItsCancellationAndBlocks"));
}

// ---- direct hand-off: a fiber that parks switches straight into the next ready fiber --------

TEST_F(Hub, HandOffKeepsTheReadyQueuesFifoOrderAcrossFibersAndCallbacks) {
    hub& h = hub::current();
    std::vector<std::string> order;
    auto step = [&](std::string name) {
        return [&order, name] {
            for (int i = 0; i < 3; ++i) {
                order.push_back(name + std::to_string(i));
                yield_now();
            }
        };
    };
    auto a = spawn(step("a"));
    auto b = spawn(step("b"));
    // A callback queued between the tasks' steps runs in its place in line, on the hub.
    auto c = spawn([&] {
        order.push_back("c0");
        h.call_soon([&] { order.push_back(h.in_hub() ? "cb-on-hub" : "cb-elsewhere"); });
        yield_now();
        order.push_back("c1");
    });
    a.get();
    b.get();
    c.get();
    EXPECT_EQ(order, (std::vector<std::string>{"a0", "b0", "c0", "a1", "b1", "cb-on-hub", "c1",
                                               "a2", "b2"}));
}

TEST_F(Hub, HandOffsCountAgainstTheTurnsBudgetSoTheReactorIsStillPolled) {
    // Two fibers yielding to each other never leave the ready queue empty: the reactor must
    // still run between turns of at most ready_budget() entries.
    hub& h = hub::current();
    const std::size_t budget = h.ready_budget();
    bool polled = false;
    std::size_t yields_before_poll = 0;
    auto spinner = [&] {
        while (!polled) {
            ++yields_before_poll;
            yield_now();
        }
    };
    auto a = spawn(spinner);
    auto b = spawn(spinner);
    yield_now();  // both run once; the post below goes to the reactor, not the ready queue
    yields_before_poll = 0;
    h.post([&] { polled = true; });
    a.get();
    b.get();
    EXPECT_LE(yields_before_poll, 2 * budget + 2);
    EXPECT_GT(h.stats().switches, 0u);
}

// Yields until `flag` is set, at most ten budgets; returns how many yields it took.
std::size_t yields_until(const bool& flag) {
    const std::size_t most = 10 * hub::current().ready_budget();
    std::size_t yields = 0;
    while (!flag && yields < most) {
        yield_now();
        ++yields;
    }
    return yields;
}

TEST_F(Hub, ALoneFiberThatYieldsStillLetsTheReactorRun) {
    hub& h = hub::current();
    bool polled = false;
    h.post([&] { polled = true; });
    const std::size_t yields = yields_until(polled);
    EXPECT_TRUE(polled);
    EXPECT_LE(yields, h.ready_budget() + 1);
}

// A fiber that releases the io_context's last work stops it (Asio stops a context whose
// work runs out). What is posted after that still runs at the next turn's poll, not one
// turn later: the loop restarts a stopped context before it polls.
TEST_F(Hub, AContextStoppedByAFiberStillPollsAtTheNextTurn) {
    hub& h = hub::current();
    yield_now();  // a fresh turn: the budget below is whole
    {
        auto guard = boost::asio::make_work_guard(h.context());
        guard.reset();  // the last work: the context stops
    }
    ASSERT_TRUE(h.context().stopped());
    bool polled = false;
    h.post([&] { polled = true; });
    const std::size_t yields = yields_until(polled);
    EXPECT_TRUE(polled);
    EXPECT_LE(yields, h.ready_budget() + 1);
}

TEST_F(Hub, TheWatchdogNamesTheFiberThatBlockedNotTheOneItHandedOffTo) {
    hub& h = hub::current();
    greenfiber::testing::watchdog_reports reports(h, 250ms);
    // "blocker" blocks, then yields straight into "quick" (both ready in one turn); then
    // "finisher" blocks and finishes without parking again.
    auto blocker = spawn(spawn_options{"blocker", 0}, [] {
        yield_now();
        std::this_thread::sleep_for(750ms);
        yield_now();
    });
    auto quick = spawn(spawn_options{"quick", 0}, [] {
        for (int i = 0; i < 4; ++i) yield_now();
    });
    blocker.get();
    quick.get();
    auto finisher = spawn(spawn_options{"finisher", 0}, [] { std::this_thread::sleep_for(750ms); });
    finisher.get();
    ASSERT_EQ(reports.messages.size(), 2u);
    EXPECT_THAT(reports.messages[0], HasSubstr("task 'blocker'"));
    EXPECT_THAT(reports.messages[1], HasSubstr("task 'finisher'"));
}

TEST_F(Hub, TheWatchdogNamesAPlainGreenletThatBlockedAndDiedAfterAHandOff) {
    hub& h = hub::current();
    greenfiber::testing::watchdog_reports reports(h, 250ms);
    event go;
    // A plain greenlet inside a task parks on an event; a yield hands the thread straight to
    // it, it blocks, then dies into the task, which finishes: the slice began in the
    // greenlet, so the report names it.
    auto owner = spawn(spawn_options{"owner", 0}, [&] {
        greenlet g(
            [&] {
                go.wait();
                std::this_thread::sleep_for(750ms);
            },
            greenlet::options{"plain-sleeper", 0});
        (void)g.switch_to();
    });
    auto waker = spawn([&] {
        go.set();
        yield_now();
    });
    waker.get();
    owner.get();
    ASSERT_EQ(reports.messages.size(), 1u);
    EXPECT_THAT(reports.messages[0], HasSubstr("greenlet 'plain-sleeper'"));
}

TEST_F(Hub, AnExceptionFromAPlainGreenletHandedTheThreadIsReportedNotBlamedOnAStartingTask) {
    // Its parent is the hub, which starts it from its ready queue as it starts a task.
    greenfiber::testing::hub_started_thrower g(hub::current());
    ASSERT_TRUE(g.started());
    // A task on its first run (started by the hub) wakes the greenlet and yields: the
    // thread goes straight to the greenlet, which throws into the hub.
    auto first = spawn([&] {
        g.go.set();
        yield_now();
        return 7;
    });
    EXPECT_EQ(first.get(), 7);
    for (int i = 0; i < 3 && !g.dead(); ++i) sleep(1ms);
    EXPECT_TRUE(g.dead());
    EXPECT_EQ(g.categories, std::vector<std::string>{"greenlet"});
}

TEST_F(Hub, ACancelledFiberInTheReadyQueueIsNeverHandedTheThreadAfterItEnded) {
    // "victim" is woken (queued), then cancelled before its turn by the fiber ahead of it,
    // then "last" yields: the hand-off goes to whoever is first in line, each exactly once.
    std::vector<std::string> order;
    event e;
    auto victim = spawn(spawn_options{"victim", 0}, [&] {
        e.wait();
        order.push_back("victim ran");
        yield_now();
        order.push_back("victim not cancelled");
    });
    yield_now();
    auto canceller = spawn([&] {
        e.set();  // victim is now queued
        victim.cancel();
        order.push_back("cancelled");
        yield_now();
    });
    canceller.get();
    EXPECT_THROW(victim.get(), cancelled_error);
    // Woken, then cancelled before its turn: it resumes with the cancellation (asyncio's
    // _must_cancel), once.
    EXPECT_EQ(order, std::vector<std::string>{"cancelled"});
}

}  // namespace
