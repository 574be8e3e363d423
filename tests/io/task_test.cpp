#include "greenfiber/task.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include "greenfiber/detail/debug.hpp"
#include "greenfiber/loop.hpp"
#include "greenfiber/stack.hpp"
#include "greenfiber/sync.hpp"

#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

class Task : public greenfiber::testing::io_checked {};

static_assert(!std::is_base_of_v<std::exception, cancelled_error>,
              "cancelled_error must not be caught as a std::exception");

TEST_F(Task, IsScheduledNotStartedBySpawn) {
    bool ran = false;
    auto t = spawn([&] { ran = true; });
    EXPECT_EQ(t.status(), task_status::pending);
    EXPECT_FALSE(ran);
    t.get();
    EXPECT_TRUE(ran);
    EXPECT_EQ(t.status(), task_status::done);
}

TEST_F(Task, GetReturnsTheResultAndPassesArguments) {
    auto t =
        spawn([](int a, std::string b) { return b + std::to_string(a * 10); }, 4, std::string("x"));
    EXPECT_EQ(t.get(), "x40");
    EXPECT_EQ(t.result(), "x40");  // asyncio: result() can be asked again
}

TEST_F(Task, MoveOnlyResultIsTakenOnce) {
    auto t = spawn([] { return std::make_unique<int>(7); });
    EXPECT_EQ(*t.get(), 7);
    EXPECT_THROW((void)t.result(), invalid_state_error);
}

TEST_F(Task, GetRethrowsTheTasksException) {
    auto t = spawn([]() -> int { throw std::runtime_error("bad"); });
    EXPECT_THROW(
        {
            try {
                (void)t.get();
            } catch (const std::runtime_error& e) {
                EXPECT_STREQ(e.what(), "bad");
                throw;
            }
        },
        std::runtime_error);
    EXPECT_EQ(t.status(), task_status::done);
}

TEST_F(Task, ResultOfAPendingTaskIsAnInvalidStateError) {
    auto t = spawn([] { return 1; });
    try {
        (void)t.result();
        FAIL() << "result() of a pending task returned";
    } catch (const invalid_state_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("not finished"));
    }
    EXPECT_THROW((void)t.exception(), invalid_state_error);
    EXPECT_EQ(t.get(), 1);
}

TEST_F(Task, CancelBeforeTheFirstRunMeansTheBodyNeverRuns) {
    bool ran = false;
    auto t = spawn([&] { ran = true; });
    EXPECT_TRUE(t.cancel());
    EXPECT_THROW(t.get(), cancelled_error);
    EXPECT_FALSE(ran);
    EXPECT_TRUE(t.cancelled());
    EXPECT_THROW(t.result(), cancelled_error);
    EXPECT_THROW((void)t.exception(), cancelled_error);
}

TEST_F(Task, CancelWhileSleepingRaisesAtTheSuspensionPoint) {
    std::vector<std::string> seen;
    auto t = spawn([&] {
        try {
            sleep(1h);
        } catch (const cancelled_error& e) {
            seen.push_back("caught: " + e.message());
            throw;
        }
    });
    yield_now();  // let it start and park in sleep
    EXPECT_EQ(t.status(), task_status::parked);
    EXPECT_TRUE(t.cancel("why"));
    EXPECT_EQ(t.cancelling(), 1);
    EXPECT_FALSE(t.cancelled());  // only a request until the task lets it escape
    EXPECT_THROW(t.get(), cancelled_error);
    EXPECT_EQ(seen, std::vector<std::string>{"caught: why"});
    EXPECT_TRUE(t.cancelled());
    EXPECT_FALSE(t.cancel());  // already finished
}

TEST_F(Task, ATaskThatSwallowsTheCancellationAndReturnsIsNotCancelled) {
    auto t = spawn([] {
        try {
            sleep(1h);
        } catch (const cancelled_error&) {
            return std::string("swallowed");
        }
        return std::string("slept");
    });
    yield_now();
    t.cancel();
    EXPECT_EQ(t.get(), "swallowed");
    EXPECT_FALSE(t.cancelled());
}

TEST_F(Task, CancellationIsStickyUntilUncancelled) {
    std::vector<std::string> seen;
    auto t = spawn([&] {
        for (int i = 0; i < 2; ++i) {
            try {
                sleep(1h);
            } catch (const cancelled_error&) {
                seen.push_back("cancelled " + std::to_string(i));
            }
        }
        greenfiber::detail::task_base::current()->uncancel();
        sleep(1ms);
        seen.push_back("slept after uncancel");
    });
    yield_now();
    t.cancel();
    t.get();
    EXPECT_EQ(seen,
              (std::vector<std::string>{"cancelled 0", "cancelled 1", "slept after uncancel"}));
}

TEST_F(Task, CancelledAfterBeingWokenButBeforeResumingStillRaises) {
    std::vector<std::string> seen;
    greenfiber::detail::waiter* parked = nullptr;
    auto sleeper = spawn([&] {
        greenfiber::detail::waiter w("a test wake-up");
        parked = &w;
        try {
            hub::current().park(w);
            seen.push_back("woke normally");
        } catch (const cancelled_error&) {
            seen.push_back("cancelled");
        }
    });
    auto other = spawn([&] {
        yield_now();
        hub::current().wake(*parked);  // queued to resume...
        sleeper.cancel();              // ...but cancelled before it runs
    });
    other.get();
    sleeper.get();
    EXPECT_EQ(seen, std::vector<std::string>{"cancelled"});
}

TEST_F(Task, DroppingTheHandleDetachesTheTask) {
    auto done = std::make_shared<bool>(false);
    {
        auto t = spawn([done] {
            sleep(1ms);
            *done = true;
        });
    }
    EXPECT_FALSE(*done);
    sleep(20ms);
    EXPECT_TRUE(*done);
}

TEST_F(Task, DoneCallbacksRunFromTheHubEvenWhenAlreadyDone) {
    std::vector<std::string> seen;
    auto t = spawn([] { return 3; });
    t.get();
    t.add_done_callback(
        [&](task<int>& d) { seen.push_back("callback " + std::to_string(d.result())); });
    EXPECT_TRUE(seen.empty());  // never before add_done_callback returns
    yield_now();
    EXPECT_EQ(seen, std::vector<std::string>{"callback 3"});
}

TEST_F(Task, DoneCallbacksRunBeforeTheWaiterResumes) {
    std::vector<std::string> seen;
    auto t = spawn([] { sleep(1ms); });
    t.add_done_callback([&](task<void>&) { seen.push_back("callback"); });
    t.get();
    seen.push_back("waiter");
    EXPECT_EQ(seen, (std::vector<std::string>{"callback", "waiter"}));
}

TEST_F(Task, DoneCallbacksRunOnceInOrderAndCanBeRemoved) {
    std::vector<int> seen;
    auto t = spawn([] { sleep(1ms); });
    t.add_done_callback([&](task<void>&) { seen.push_back(1); });
    const auto id = t.add_done_callback([&](task<void>&) { seen.push_back(2); });
    t.add_done_callback([&](task<void>&) { seen.push_back(3); });
    EXPECT_EQ(t.remove_done_callback(id), 1u);
    EXPECT_EQ(t.remove_done_callback(id), 0u);
    t.get();
    yield_now();
    EXPECT_EQ(seen, (std::vector<int>{1, 3}));
}

// asyncio's awaiters are done callbacks: a fiber in get() or wait() and the done callbacks
// resume in the order they were registered, whatever their kind.
TEST_F(Task, WaitersAndDoneCallbacksResumeInRegistrationOrder) {
    std::vector<std::string> seen;
    event go;
    auto t = spawn([&] { go.wait(); });
    auto first = spawn([&, t = t.share()]() mutable {
        t.get();
        seen.push_back("get");
    });
    yield_now();  // `first` is in get() now
    t.add_done_callback([&](task<void>&) { seen.push_back("callback"); });
    auto second = spawn([&, t = t.share()] {
        t.wait();
        seen.push_back("wait");
    });
    yield_now();  // `second` is in wait() now
    t.add_done_callback([&](task<void>&) { seen.push_back("last callback"); });
    go.set();
    first.get();
    second.get();
    yield_now();
    EXPECT_EQ(seen, (std::vector<std::string>{"get", "callback", "wait", "last callback"}));
}

// A waiter woken in its turn and then cancelled before it runs raises cancelled_error there
// (asyncio throws it in at the wake-up), and the callbacks after it still run in order.
TEST_F(Task, AWaiterCancelledAfterItsWakeUpRaisesAndTheOthersKeepTheirOrder) {
    std::vector<std::string> seen;
    event go;
    auto t = spawn([&] { go.wait(); });
    auto waiter = spawn([&, t = t.share()]() mutable {
        try {
            t.get();
            seen.push_back("get returned");
        } catch (const cancelled_error&) {
            seen.push_back("get cancelled");
            throw;
        }
    });
    yield_now();  // the waiter is in get() now
    t.add_done_callback([&](task<void>&) { seen.push_back("callback"); });
    go.set();  // t is queued, then this cancellation: t finishes and wakes the waiter first
    event_loop::current().call_soon([&, w = waiter.share()] {
        seen.push_back("cancel");
        w.cancel();
    });
    waiter.wait();
    yield_now();
    EXPECT_TRUE(waiter.cancelled());
    EXPECT_TRUE(t.done());
    EXPECT_FALSE(t.cancelled());  // get() cancels what it awaits only while it waits
    EXPECT_EQ(seen, (std::vector<std::string>{"cancel", "get cancelled", "callback"}));
}

// A waiter destroyed while parked leaves the task's done list: the callbacks around it run
// once and in order, and nothing fires into its gone frame.
TEST_F(Task, AWaiterKilledWhileParkedLeavesTheOrderedListIntact) {
    std::vector<std::string> seen;
    event go;
    auto t = spawn([&] { go.wait(); });
    t.add_done_callback([&](task<void>&) { seen.push_back("1"); });
    auto doomed = spawn([t = t.share()] { t.wait(); });
    auto kept = spawn([&, t = t.share()] {
        t.wait();
        seen.push_back("2");
    });
    yield_now();
    doomed.state()->kill();
    EXPECT_TRUE(doomed.cancelled());
    t.add_done_callback([&](task<void>&) { seen.push_back("3"); });
    go.set();
    kept.get();
    yield_now();
    EXPECT_EQ(seen, (std::vector<std::string>{"1", "2", "3"}));
}

// Once a task finished, its callbacks are queued: removing one then removes nothing and it
// still runs, as in asyncio, whose list is emptied when the callbacks are scheduled.
TEST_F(Task, RemovingADoneCallbackAfterTheTaskFinishedRemovesNothing) {
    std::vector<int> seen;
    auto t = spawn([] {});
    const auto id = t.add_done_callback([&](task<void>&) { seen.push_back(1); });
    t.get();
    EXPECT_EQ(t.remove_done_callback(id), 0u);  // already queued: asyncio's list is empty too
    yield_now();
    EXPECT_EQ(seen, std::vector<int>{1});
}

TEST_F(Task, AnExceptionNeverRetrievedIsReportedOnceWithTheTaskName) {
    std::vector<std::string> reports;
    auto previous =
        set_report_handler([&](const failure_report& r) { reports.emplace_back(r.message); });
    {
        auto t = spawn(spawn_options{"lost", 0}, [] { throw std::runtime_error("nobody looked"); });
        yield_now();
        EXPECT_TRUE(t.done());
    }
    {
        auto t = spawn([] { throw std::runtime_error("handled"); });
        EXPECT_THROW(t.get(), std::runtime_error);
    }
    set_report_handler(std::move(previous));
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_THAT(reports[0], HasSubstr("task 'lost'"));
    EXPECT_THAT(reports[0], HasSubstr("never retrieved"));
}

TEST_F(Task, ATaskCannotWaitForItself) {
    task<void> self;
    auto t = spawn([&] {
        yield_now();
        EXPECT_THROW(self.get(), greenfiber::error);
    });
    self = t.share();
    t.get();
}

TEST_F(Task, NamesDefaultAndCanBeSet) {
    auto t = spawn(spawn_options{"worker", 0}, [] {});
    EXPECT_EQ(t.name(), "worker");
    t.set_name("renamed");
    EXPECT_EQ(t.name(), "renamed");
    auto u = spawn([] {});
    EXPECT_THAT(u.name(), HasSubstr("task-"));
    t.get();
    u.get();
}

TEST_F(Task, ManyTasksRunConcurrently) {
    std::vector<task<int>> ts;
    for (int i = 0; i < 100; ++i) {
        ts.push_back(spawn([i] {
            sleep(5ms);
            return i * 10;
        }));
    }
    int sum = 0;
    for (auto& t : ts) sum += t.get();
    EXPECT_EQ(sum, 10 * (99 * 100 / 2));
}

TEST_F(Task, AnEagerTaskRunsUntilItsFirstSuspensionBeforeSpawnReturns) {
    std::vector<std::string> seen;
    auto t = spawn(spawn_options{"eager", 0, true}, [&] {
        seen.push_back("eager body");
        yield_now();
        seen.push_back("eager resumed");
    });
    seen.push_back("spawn returned");
    t.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"eager body", "spawn returned", "eager resumed"}));
}

TEST_F(Task, AnEagerTaskThatNeverSuspendsIsDoneWhenSpawnReturns) {
    auto t = spawn(spawn_options{"quick", 0, true}, [] { return 5; });
    EXPECT_TRUE(t.done());
    EXPECT_EQ(t.result(), 5);
}

TEST_F(Task, UsingATaskFromAnotherThreadIsAnErrorNamingBothThreads) {
    auto t = spawn([] { return 1; });
    std::string message;
    std::thread other([&] {
        try {
            t.cancel();
        } catch (const greenfiber::error& e) {
            message = e.what();
        }
    });
    other.join();
    std::ostringstream mine;
    mine << std::this_thread::get_id();
    EXPECT_THAT(message, HasSubstr("cannot cancel task"));
    EXPECT_THAT(message, HasSubstr("belongs to the hub of thread " + mine.str()));
    EXPECT_EQ(t.get(), 1);
}

TEST_F(Task, CurrentTaskAndAllTasks) {
    EXPECT_FALSE(current_task());  // main is not a task
    auto t = spawn(spawn_options{"me", 0}, [] { return current_task().name(); });
    const auto all = all_tasks();
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].name(), "me");
    EXPECT_EQ(t.get(), "me");
    EXPECT_TRUE(all_tasks().empty());
}

// Regression: a failed task whose exception was retrieved stayed in the thread's list of
// unretrieved errors after it was freed, and run()'s exit read it (use-after-free).
TEST_F(Task, ARetrievedFailureLeavesTheUnretrievedListAtOnce) {
    const int got = run([] {
        auto t = spawn([]() -> int { throw std::runtime_error("boom"); });
        try {
            (void)t.get();
        } catch (const std::runtime_error&) {
        }
        EXPECT_EQ(detail::debug_thread_lists().unretrieved, 0u);
        return 7;
    });  // run()'s exit walks the list: it must hold no freed task
    EXPECT_EQ(got, 7);
    EXPECT_EQ(detail::debug_thread_lists().unretrieved, 0u);
}

TEST_F(Task, AnUnretrievedFailureIsListedUntilItIsRetrieved) {
    auto t = spawn([]() -> int { throw std::runtime_error("boom"); });
    t.wait();
    EXPECT_EQ(detail::debug_thread_lists().unretrieved, 1u);
    EXPECT_NE(t.exception(), nullptr);
    EXPECT_EQ(detail::debug_thread_lists().unretrieved, 0u);
}

// Regression: a task waiting in get() on another task and then cancelled was queued in the
// hub's ready queue while still linked in the awaited task's waiter list (one link for
// both): later wake-ups were lost and this ordinary shutdown ended in loop_exit.
TEST_F(Task, CancellingAWaiterAndWhatItWaitsForShutsDownCleanly) {
    run([] {
        auto t = spawn([] { sleep(1h); });
        auto x = spawn([t = t.share()]() mutable { t.get(); });
        auto y = spawn([] { sleep(1h); });
        yield_now();  // all three park
        t.cancel();
        x.cancel();
        y.cancel();
        for (any_task* a :
             {static_cast<any_task*>(&t), static_cast<any_task*>(&x), static_cast<any_task*>(&y)}) {
            a->wait();
            EXPECT_TRUE(a->cancelled()) << a->name();
        }
    });
}

TEST_F(Task, ACancelledWaiterDoesNotStealTheWakeUpOfTheNextOne) {
    auto gate = spawn([] { sleep(5ms); });
    auto first = spawn([g = gate.share()]() mutable { g.wait(); });
    auto second = spawn([g = gate.share()]() mutable {
        g.get();
        return 2;
    });
    int callbacks = 0;
    (void)gate.add_done_callback([&](auto&) { ++callbacks; });
    yield_now();
    first.cancel();
    EXPECT_EQ(second.get(), 2);
    EXPECT_TRUE(gate.done());
    first.wait();
    EXPECT_TRUE(first.cancelled());
    yield_now();  // the done callback runs from the hub
    EXPECT_EQ(callbacks, 1);
}

TEST_F(Task, CancellingTheMiddleWaiterLosesNoOtherWakeUp) {
    auto t = spawn([] {
        sleep(5ms);
        return 5;
    });
    // wait() then result(): a cancelled get() would cancel t as well.
    auto get_it = [&] {
        return spawn([t = t.share()]() mutable {
            t.wait();
            return t.result();
        });
    };
    auto a = get_it();
    auto w = get_it();
    auto b = get_it();
    yield_now();  // a, w and b wait for t, in that order
    w.cancel();
    EXPECT_EQ(a.get(), 5);
    EXPECT_EQ(b.get(), 5);
    w.wait();
    EXPECT_TRUE(w.cancelled());
}

TEST_F(Task, AWaitAfterACaughtCancellationWaitsForTheTaskAgain) {
    auto slow = spawn([] {
        sleep(10ms);
        return 1;
    });
    auto waiter = spawn([s = slow.share()]() mutable {
        // Catches the cancellation and waits again: the second wait must wait for real.
        try {
            s.wait();
        } catch (const cancelled_error&) {
            current_task().uncancel();
            s.wait();
            return s.result() + 10;
        }
        return 0;
    });
    yield_now();
    waiter.cancel();
    EXPECT_EQ(waiter.get(), 11);
}

// asyncio's `await task`: cancelling the awaiting task cancels the awaited one, and the
// awaiter finishes only after it.
TEST_F(Task, CancellingAGetCancelsTheAwaitedTaskAndWaitsForIt) {
    bool b_unwound = false;
    auto b = spawn([&] {
        try {
            sleep(1h);
        } catch (const cancelled_error&) {
            current_task().uncancel();  // to wait in its cleanup (cancellation is sticky)
            sleep(2ms);                 // takes a while to clean up; a waits for it
            b_unwound = true;
            throw;
        }
        return 1;
    });
    auto a = spawn([b = b.share()]() mutable { return b.get(); });
    yield_now();
    a.cancel();
    a.wait();
    EXPECT_TRUE(a.cancelled());
    EXPECT_TRUE(b.cancelled());
    EXPECT_TRUE(b_unwound);
}

// asyncio's Task.cancel() cancels the future its task awaits inside the call: the awaited
// task is cancelled before anything else runs, and only once.
TEST_F(Task, CancellingAGetCancelsTheAwaitedTaskAtOnce) {
    auto b = spawn([] { sleep(1h); });
    auto a = spawn([b = b.share()]() mutable { b.get(); });
    yield_now();
    ASSERT_EQ(b.cancelling(), 0);
    a.cancel("stop");
    EXPECT_EQ(b.cancelling(), 1);  // at once, not when `a` next runs
    a.cancel("again");             // a second request is not passed on twice
    EXPECT_EQ(b.cancelling(), 1);
    a.wait();
    EXPECT_TRUE(a.cancelled());
    EXPECT_TRUE(b.cancelled());
    EXPECT_EQ(b.cancelling(), 1);
}

// A request that comes before the get() (the task is not parked yet) is passed on when the
// cancellation is raised in get(), once.
TEST_F(Task, ACancellationRequestedBeforeTheGetIsPassedOnOnce) {
    auto b = spawn([] { sleep(1h); });
    auto a = spawn([b = b.share()]() mutable {
        current_task().cancel();
        b.get();
    });
    a.wait();
    EXPECT_TRUE(a.cancelled());
    EXPECT_TRUE(b.cancelled());
    EXPECT_EQ(b.cancelling(), 1);
}

TEST_F(Task, CancellingAWaitDoesNotCancelTheAwaitedTask) {
    auto b = spawn([] {
        sleep(3ms);
        return 1;
    });
    auto a = spawn([b = b.share()]() mutable { b.wait(); });
    yield_now();
    a.cancel();
    a.wait();
    EXPECT_TRUE(a.cancelled());
    EXPECT_EQ(b.get(), 1);
}

// Regression: a task whose stack could not be mapped stayed pending forever, and the hub's
// report did not name it.
TEST_F(Task, ATaskWhoseStackCannotBeMappedFailsWithTheError) {
    constexpr std::size_t huge = std::size_t{1} << 50;  // 1 PiB: more than the address space
    auto t = spawn(spawn_options{.name = "no-stack", .stack_size = huge}, [] { return 1; });
    t.wait();
    EXPECT_EQ(t.status(), task_status::done);
    try {
        (void)t.get();
        ADD_FAILURE() << "get() returned";
    } catch (const stack_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("'no-stack'"));
    }
    EXPECT_EQ(detail::debug_thread_lists().unretrieved, 0u);
}

TEST_F(Task, AnEagerTaskWhoseStackCannotBeMappedThrowsFromSpawn) {
    constexpr std::size_t huge = std::size_t{1} << 50;
    try {
        auto t = spawn(spawn_options{.name = "no-stack", .stack_size = huge, .eager = true},
                       [] { return 1; });
        ADD_FAILURE() << "spawn() returned";
    } catch (const stack_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("'no-stack'"));
    }
    EXPECT_EQ(detail::debug_thread_lists().tasks, 0u);
}

// asyncio's _must_cancel: a cancellation requested while the task runs, never raised
// because the task returned without suspending, still ends it cancelled.
TEST_F(Task, CancelledWhileRunningAndReturningWithoutSuspendingEndsCancelled) {
    auto t = spawn([] {
        current_task().cancel("from inside");
        return 5;
    });
    t.wait();
    EXPECT_TRUE(t.cancelled());
    try {
        (void)t.get();
        ADD_FAILURE() << "get() returned";
    } catch (const cancelled_error& e) {
        EXPECT_EQ(e.message(), "from inside");
    }
}

TEST_F(Task, ACancellationCaughtAtASuspensionLetsTheTaskReturnItsResult) {
    auto t = spawn([] {
        current_task().cancel();
        try {
            yield_now();
        } catch (const cancelled_error&) {
            current_task().uncancel();
            return 7;  // asyncio: the task is not cancelled; it returns 7
        }
        return 0;
    });
    EXPECT_EQ(t.get(), 7);
    EXPECT_FALSE(t.cancelled());
}

TEST_F(Task, AnUncancelledRequestThatWasNeverRaisedIsWithdrawn) {
    auto t = spawn([] {
        current_task().cancel();
        EXPECT_EQ(current_task().uncancel(), 0);
        return 3;
    });
    EXPECT_EQ(t.get(), 3);
}

// Regression: cancellation is sticky, so a destructor that waits while a cancellation
// unwinds the task (RAII cleanup that sleeps, joins, flushes) had cancelled_error raised
// inside it: std::terminate. Such a wait is shielded now.
TEST_F(Task, ADestructorThatWaitsDuringACancellationFinishesItsWait) {
    bool cleaned = false;
    struct slow_cleanup {
        bool& done;
        ~slow_cleanup() {
            sleep(2ms);
            done = true;
        }
    };
    auto t = spawn([&] {
        slow_cleanup c{cleaned};
        sleep(1h);
    });
    yield_now();
    t.cancel();
    t.wait();
    EXPECT_TRUE(t.cancelled());
    EXPECT_TRUE(cleaned);
}

// Regression: with sticky cancellation, a task catching everything around a wait raised
// at once at every wait and never let the hub run: its thread froze. Each raise now comes
// after a turn of the hub, so timers and other fibers go on.
TEST_F(Task, ATaskThatCatchesEverythingAroundAWaitDoesNotFreezeItsThread) {
    int ticks = 0;
    auto stubborn = spawn([&] {
        int ticks_seen = 0;  // how far the other fiber got while this one looped
        for (int i = 0; i < 1000000 && ticks_seen < 3; ++i) {
            try {
                sleep(1h);
            } catch (...) {  // swallows the cancellation (a bug, but a common one)
            }
            ticks_seen = ticks;
        }
        return ticks_seen;
    });
    auto ticker = spawn([&] {
        for (int i = 0; i < 3; ++i) {
            sleep(1ms);
            ++ticks;
        }
    });
    yield_now();
    stubborn.cancel();
    ticker.get();
    EXPECT_EQ(stubborn.get(), 3);  // it did not run the loop out alone
}

// asyncio delivers a cancellation requested while the task runs at its next step, after
// the ready queue has had its turn.
TEST_F(Task, ACancellationIsRaisedAfterTheReadyFibersHadTheirTurn) {
    std::vector<std::string> order;
    any_task other;
    auto self = spawn([&] {
        current_task().cancel();
        other = spawn([&] { order.push_back("other"); });  // ready after the cancellation
        try {
            yield_now();
        } catch (const cancelled_error&) {
            order.push_back("cancelled");
            throw;
        }
    });
    self.wait();
    other.wait();
    EXPECT_EQ(order, (std::vector<std::string>{"other", "cancelled"}));
}

}  // namespace
