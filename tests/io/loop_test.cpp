#include "greenfiber/loop.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>

#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/executor.hpp"
#include "greenfiber/sync.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

class Loop : public greenfiber::testing::io_checked {};

TEST_F(Loop, RunUntilCompleteReturnsTheResult) {
    event_loop& loop = event_loop::current();
    auto t = spawn([] {
        sleep(1ms);
        return 42;
    });
    EXPECT_FALSE(loop.is_running());
    EXPECT_EQ(loop.run_until_complete(t), 42);
    EXPECT_FALSE(loop.is_running());
}

TEST_F(Loop, IsRunningFromInsideRunUntilComplete) {
    event_loop& loop = event_loop::current();
    auto t = spawn([&] { return loop.is_running(); });
    EXPECT_TRUE(loop.run_until_complete(t));
}

TEST_F(Loop, StopBeforeTheTaskCompletesMakesRunUntilCompleteThrow) {
    event_loop& loop = event_loop::current();
    auto slow = spawn([] { sleep(1h); });
    auto stopper = spawn([&] { loop.stop(); });
    try {
        loop.run_until_complete(slow);
        FAIL() << "run_until_complete returned";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("Event loop stopped before the task completed"));
    }
    stopper.get();
    slow.cancel();
    EXPECT_THROW(slow.get(), cancelled_error);
}

TEST_F(Loop, RunForeverRunsUntilStop) {
    event_loop& loop = event_loop::current();
    std::vector<std::string> seen;
    auto t = spawn([&] {
        sleep(2ms);
        seen.push_back("task");
        loop.stop();
    });
    loop.run_forever();
    seen.push_back("returned");
    t.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"task", "returned"}));
}

TEST_F(Loop, StopBeforeRunForeverRunsWhatIsReadyOnceThenReturns) {
    event_loop& loop = event_loop::current();
    std::vector<std::string> seen;
    loop.call_soon([&] { seen.push_back("soon"); });
    loop.stop();
    loop.run_forever();
    EXPECT_EQ(seen, std::vector<std::string>{"soon"});
}

TEST_F(Loop, StopThenRunForeverLetsCancelledSleepersFinish) {
    // asyncio's Ctrl-C idiom: cancel everything, stop(), run_forever() once to unwind.
    std::vector<task<void>> sleepers;
    for (int i = 0; i < 3; ++i) sleepers.push_back(spawn([] { sleep(std::chrono::hours(1)); }));
    yield_now();
    for (auto& t : sleepers) t.cancel();
    auto& loop = event_loop::current();
    loop.stop();
    loop.run_forever();
    for (auto& t : sleepers) {
        EXPECT_TRUE(t.done());
        EXPECT_THROW(t.get(), cancelled_error);
    }
}

TEST_F(Loop, RunningTwiceAndClosingARunningLoopAreErrors) {
    event_loop& loop = event_loop::current();
    std::vector<std::string> errors;
    auto t = spawn([&] {
        try {
            loop.close();
        } catch (const greenfiber::error& e) {
            errors.emplace_back(e.what());
        }
        try {
            loop.run_forever();
        } catch (const greenfiber::error& e) {
            errors.emplace_back(e.what());
        }
        loop.stop();
    });
    loop.run_forever();
    t.get();
    ASSERT_EQ(errors.size(), 2u);
    EXPECT_THAT(errors[0], HasSubstr("Cannot close a running event loop"));
    EXPECT_THAT(errors[1], HasSubstr("already running"));
}

TEST_F(Loop, CallSoonIsFifoAndRunsBeforeDueTimers) {
    // asyncio: ['soon1', 'soon2', 'at_now', 'later']
    event_loop& loop = event_loop::current();
    std::vector<std::string> seen;
    // "now" is read before call_later reads the clock: at_now is due first however long the
    // two calls take apart (a loaded sanitizer build once took more than 5 ms).
    const auto now = std::chrono::steady_clock::now();
    loop.call_later(5ms, [&] {
        seen.push_back("later");
        loop.stop();
    });
    loop.call_at(now, [&] { seen.push_back("at_now"); });
    loop.call_soon([&] { seen.push_back("soon1"); });
    loop.call_soon([&] { seen.push_back("soon2"); });
    loop.run_forever();
    EXPECT_EQ(seen, (std::vector<std::string>{"soon1", "soon2", "at_now", "later"}));
}

TEST_F(Loop, ACancelledTimerNeverRuns) {
    event_loop& loop = event_loop::current();
    bool ran = false;
    const auto before = std::chrono::steady_clock::now();
    timer_handle h = loop.call_later(1ms, [&] { ran = true; });
    EXPECT_GE(h.when(), before + 1ms);
    EXPECT_FALSE(h.cancelled());
    h.cancel();
    EXPECT_TRUE(h.cancelled());
    sleep(10ms);
    EXPECT_FALSE(ran);
}

TEST_F(Loop, AnExceptionInACallbackIsReportedAndTheLoopGoesOn) {
    event_loop& loop = event_loop::current();
    std::vector<std::string> reports;
    auto previous =
        set_report_handler([&](const failure_report& r) { reports.emplace_back(r.message); });
    std::vector<std::string> seen;
    loop.call_soon([] { throw std::runtime_error("callback failed"); });
    loop.call_later(1ms, [] { throw std::runtime_error("timer failed"); });
    loop.call_later(3ms, [&] {
        seen.push_back("still running");
        loop.stop();
    });
    loop.run_forever();
    set_report_handler(std::move(previous));
    EXPECT_EQ(seen, std::vector<std::string>{"still running"});
    EXPECT_EQ(reports.size(), 2u);
}

TEST_F(Loop, TimeIsMonotonicSeconds) {
    event_loop& loop = event_loop::current();
    const double a = loop.time();
    sleep(2ms);
    const double b = loop.time();
    EXPECT_GT(b, a);
}

TEST_F(Loop, RunReturnsTheMainTaskResultAndCancelsLeftoverTasks) {
    std::vector<std::string> seen;
    const int r = run([&] {
        auto forgotten = spawn([&] {
            try {
                sleep(1h);
            } catch (const cancelled_error& e) {
                seen.push_back("leftover cancelled: " + e.message());
                throw;
            }
        });
        yield_now();
        return 7;
    });
    EXPECT_EQ(r, 7);
    EXPECT_EQ(seen, std::vector<std::string>{"leftover cancelled: run() is finishing"});
}

TEST_F(Loop, RunReportsAnUnretrievedExceptionOnceOnTheWayOut) {
    std::vector<std::string> reports;
    auto previous = hub::current().set_exception_handler(
        [&](const failure_report& r) { reports.emplace_back(r.message); });
    task<void> kept;
    run([&] {
        kept = spawn(spawn_options{"failing", 0}, [] { throw std::runtime_error("lost"); });
        yield_now();
    });
    EXPECT_EQ(reports.size(), 1u);  // at the end of run(), though the handle lives on
    kept = task<void>();
    hub::current().set_exception_handler(std::move(previous));
    ASSERT_EQ(reports.size(), 1u);  // not again when the handle goes
    EXPECT_THAT(reports[0], HasSubstr("task 'failing'"));
}

TEST_F(Loop, RunRethrowsTheMainTasksException) {
    EXPECT_THROW(run([]() -> int { throw std::invalid_argument("main failed"); }),
                 std::invalid_argument);
}

TEST_F(Loop, SigintCancelsTheMainTaskOfRunWhichThenRaisesKeyboardInterrupt) {
    std::vector<std::string> seen;
    try {
        run([&] {
            try {
                ::raise(SIGINT);
                sleep(1h);
            } catch (const cancelled_error&) {
                seen.push_back("main task cancelled");
                throw;
            }
        });
        FAIL() << "run() returned";
    } catch (const keyboard_interrupt&) {
        seen.push_back("keyboard_interrupt");
    }
    EXPECT_EQ(seen, (std::vector<std::string>{"main task cancelled", "keyboard_interrupt"}));
}

TEST_F(Loop, CallSoonThreadsafeRunsOnTheLoopFromAnotherThread) {
    event_loop& loop = event_loop::current();
    std::thread::id ran_on;
    std::thread other([&] {
        loop.call_soon_threadsafe([&] {
            ran_on = std::this_thread::get_id();
            loop.stop();
        });
    });
    auto guard = boost::asio::make_work_guard(loop.owner().context());  // a post is coming
    other.join();
    loop.run_forever();
    EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST_F(Loop, RunShutsDownTheDefaultExecutor) {
    std::shared_ptr<executor> used;
    run([&] {
        used = default_executor();
        EXPECT_EQ(to_thread([] { return 2; }), 2);
    });
    EXPECT_NE(default_executor(), used);  // a new one: run() shut the old one down
}

TEST_F(Loop, RunInsideRunIsAnError) {
    std::string message;
    run([&] {
        try {
            run([] {});
        } catch (const greenfiber::error& e) {
            message = e.what();
        }
    });
    EXPECT_THAT(message, HasSubstr("cannot be called from a running event loop"));
}

// asyncio.run's shutdown runs the loop again: a callback queued by a callback that ran as
// the main task ended still runs before run() returns.
TEST_F(Loop, RunRunsTheCallbacksStillQueuedWhenTheMainTaskEnds) {
    int ran = 0;
    const int r = run([&] {
        hub::current().call_soon([&] { hub::current().call_soon([&] { ++ran; }); });
        return 4;
    });
    EXPECT_EQ(r, 4);
    EXPECT_EQ(ran, 1);
}

// asyncio: the task's done callback stops the loop, which still finishes that iteration.
// Here 'main' ends, then 'x' (ready in the same iteration) queues cb2: cb2 runs before
// run_until_complete returns, and what cb2 queues (cb3) waits for the next run. CPython
// 3.11 prints ['cb2', 'returned', 'cb3'] for the same program.
TEST_F(Loop, RunUntilCompleteRunsWhatWasReadyWhenTheTaskEndedAndNoMore) {
    event_loop& loop = event_loop::current();
    std::vector<std::string> log;
    auto main = spawn([] { return 1; });
    auto x = spawn([&] {
        loop.call_soon([&] {
            log.push_back("cb2");
            loop.call_soon([&] { log.push_back("cb3"); });
        });
    });
    EXPECT_EQ(loop.run_until_complete(main), 1);
    log.push_back("returned");
    loop.run_until_complete(x);
    EXPECT_EQ(log, (std::vector<std::string>{"cb2", "returned", "cb3"}));
}

// A thread that will call call_soon_threadsafe() later holds a hub_handle meanwhile: the
// waiting fiber waits for it instead of getting loop_exit.
TEST_F(Loop, CallSoonThreadsafeFromAThreadHoldingAHubHandleWakesTheWaiter) {
    event_loop& loop = event_loop::current();
    event done;
    std::thread other([&loop, &done, hold = loop.owner().keep_alive()] {
        std::this_thread::sleep_for(20ms);  // the hub runs out of other work meanwhile
        loop.call_soon_threadsafe([&done] { done.set(); });
    });
    done.wait();
    other.join();
    EXPECT_TRUE(done.is_set());
}

// A task that swallows every cancellation keeps running after run()'s grace period: run()
// reports it by name and returns instead of spinning forever.
TEST_F(Loop, RunsShutdownGraceEndsWithAReportNamingATaskThatSwallowsItsCancellation) {
    hub& h = hub::current();
    std::vector<std::string> reports;
    auto previous =
        h.set_exception_handler([&](const failure_report& r) { reports.emplace_back(r.message); });
    bool stop = false;
    std::optional<task<void>> swallower;
    run([&] {
        swallower.emplace(spawn(spawn_options{"swallower", 0}, [&] {
            while (!stop) {
                try {
                    sleep(1h);
                } catch (...) {
                }
            }
        }));
        yield_now();
    });
    h.set_exception_handler(std::move(previous));
    ASSERT_TRUE(swallower.has_value());
    EXPECT_FALSE(swallower->done());
    bool named = false;
    for (const std::string& r : reports) {
        if (r.find("task 'swallower'") != std::string::npos &&
            r.find("grace period") != std::string::npos)
            named = true;
    }
    EXPECT_TRUE(named) << "no report named the task; reports: " << reports.size();
    stop = true;
    while (!swallower->done()) yield_now();
    try {
        swallower->get();
    } catch (const cancelled_error&) {
    }
}

}  // namespace
