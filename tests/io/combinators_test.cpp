#include "greenfiber/combinators.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "greenfiber/sync.hpp"

#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

class Gather : public greenfiber::testing::io_checked {};
class Wait : public greenfiber::testing::io_checked {};
class AsCompleted : public greenfiber::testing::io_checked {};
class WaitFor : public greenfiber::testing::io_checked {};
class Timeout : public greenfiber::testing::io_checked {};
class Shield : public greenfiber::testing::io_checked {};
class TaskGroup : public greenfiber::testing::io_checked {};
class Pool : public greenfiber::testing::io_checked {};
class Order : public greenfiber::testing::io_checked {};

task<int> after(std::chrono::milliseconds d, int v) {
    return spawn([d, v] {
        sleep(d);
        return v;
    });
}

template <class... T>
std::vector<task<int>> tasks(T&&... ts) {
    std::vector<task<int>> v;
    (v.push_back(std::move(ts)), ...);
    return v;
}

TEST_F(Gather, ReturnsResultsInArgumentOrderNotCompletionOrder) {
    auto a = after(30ms, 1);
    auto b = spawn([] {
        sleep(1ms);
        return std::string("two");
    });
    auto c = spawn([] {});
    auto [x, y, z] = gather(a, b, c);
    EXPECT_EQ(x, 1);
    EXPECT_EQ(y, "two");
    (void)z;  // std::monostate for a void task
}

TEST_F(Gather, OverARangeKeepsTheOrder) {
    std::vector<task<int>> ts;
    for (int i = 0; i < 5; ++i) ts.push_back(after(std::chrono::milliseconds(10 - 2 * i), i * 10));
    EXPECT_EQ(gather(ts), (std::vector<int>{0, 10, 20, 30, 40}));
}

TEST_F(Gather, TheFirstExceptionPropagatesAndSiblingsKeepRunning) {
    bool sibling_finished = false;
    auto bad = spawn([]() -> int {
        sleep(1ms);
        throw std::invalid_argument("bad");
    });
    auto slow = spawn([&] {
        sleep(20ms);
        sibling_finished = true;
        return 2;
    });
    EXPECT_THROW(gather(bad, slow), std::invalid_argument);
    EXPECT_FALSE(slow.done());
    EXPECT_EQ(slow.get(), 2);
    EXPECT_TRUE(sibling_finished);
}

TEST_F(Gather, CancelOnErrorCancelsTheRest) {
    auto bad = spawn([]() -> int { throw std::runtime_error("bad"); });
    auto slow = after(1h, 2);
    EXPECT_THROW(gather(gather_options{true}, bad, slow), std::runtime_error);
    EXPECT_THROW(slow.get(), cancelled_error);
}

TEST_F(Gather, ReturnExceptionsPutsThemInTheResults) {
    // asyncio: [1, ValueError('bad')]
    auto good = after(1ms, 1);
    auto bad = spawn([]() -> int { throw std::invalid_argument("bad"); });
    auto [r1, r2] = gather_outcomes(good, bad);
    ASSERT_TRUE(r1.has_value());
    EXPECT_EQ(r1.value(), 1);
    ASSERT_FALSE(r2.has_value());
    try {
        std::rethrow_exception(r2.error());
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "bad");
    }
}

TEST_F(Gather, ACancelledChildCountsAsRaisingCancelledError) {
    auto child = after(1h, 1);
    auto other = after(1ms, 2);
    auto outer = spawn([&] { return gather(child, other); });
    yield_now();
    child.cancel();
    EXPECT_THROW(outer.get(), cancelled_error);
    EXPECT_EQ(outer.status(), task_status::cancelled);  // the exception escaped it
    EXPECT_EQ(other.get(), 2);
}

TEST_F(Gather, CancellingTheGatherCancelsTheUnfinishedChildren) {
    auto a = after(1h, 1);
    auto b = after(1h, 2);
    auto outer = spawn([&] { (void)gather(a, b); });
    yield_now();
    outer.cancel();
    EXPECT_THROW(outer.get(), cancelled_error);
    EXPECT_THROW(a.get(), cancelled_error);
    EXPECT_THROW(b.get(), cancelled_error);
}

TEST_F(Wait, ReturnsDoneAndPendingOnTimeoutWithoutCancellingOrRaising) {
    std::vector<task<int>> ts = tasks(after(1ms, 1), after(1h, 2));
    auto r = wait(ts, 30ms);
    ASSERT_EQ(r.done.size(), 1u);
    ASSERT_EQ(r.pending.size(), 1u);
    EXPECT_EQ(r.done[0].result(), 1);
    EXPECT_FALSE(r.pending[0].done());
    ts[1].cancel();
    EXPECT_THROW(ts[1].get(), cancelled_error);
}

TEST_F(Wait, FirstCompletedReturnsAsSoonAsOneFinishes) {
    std::vector<task<int>> ts = tasks(after(1h, 1), after(1ms, 2), after(1h, 3));
    auto r = wait(ts, std::nullopt, return_when::first_completed);
    ASSERT_EQ(r.done.size(), 1u);
    EXPECT_EQ(r.done[0].result(), 2);
    EXPECT_EQ(r.pending.size(), 2u);
    for (auto& t : r.pending) t.cancel();
    for (auto& t : ts) t.wait();
}

TEST_F(Wait, FirstExceptionReturnsOnTheFirstFailureOrWhenAllAreDone) {
    std::vector<task<int>> ts =
        tasks(after(1h, 1), spawn([]() -> int { throw std::runtime_error("x"); }));
    auto r = wait(ts, std::nullopt, return_when::first_exception);
    ASSERT_EQ(r.done.size(), 1u);
    EXPECT_THROW(r.done[0].result(), std::runtime_error);
    std::vector<task<int>> ok = tasks(after(1ms, 1), after(2ms, 2));
    auto all = wait(ok, std::nullopt, return_when::first_exception);
    EXPECT_EQ(all.done.size(), 2u);
    ts[0].cancel();
    ts[0].wait();
}

TEST_F(Wait, ATaskCanReturnTheDoneAndPendingSets) {
    // asyncio: run_until_complete(asyncio.wait(tasks)).
    auto waiter = spawn([] {
        std::vector<task<int>> ts = tasks(after(1ms, 1), after(2ms, 2));
        return wait(ts);
    });
    auto r = waiter.get();
    EXPECT_EQ(r.done.size(), 2u);
    EXPECT_TRUE(r.pending.empty());
}

TEST_F(Wait, AnEmptySetIsAnError) {
    std::vector<task<int>> none;
    try {
        (void)wait(none);
        FAIL();
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("Set of Tasks/Futures is empty."));
    }
}

TEST_F(AsCompleted, HandsOutTasksInCompletionOrder) {
    std::vector<task<int>> ts = tasks(after(40ms, 1), after(1ms, 2), after(20ms, 3));
    std::vector<int> order;
    for (task<int> t : as_completed<int>(ts)) order.push_back(t.get());
    EXPECT_EQ(order, (std::vector<int>{2, 3, 1}));
}

TEST_F(AsCompleted, RaisesTimeoutErrorWhenTheTimeoutPasses) {
    std::vector<task<int>> ts = tasks(after(1ms, 1), after(1h, 2));
    as_completed<int> it(ts, 20ms);
    EXPECT_EQ(it.next().get(), 1);
    EXPECT_THROW(it.next(), timeout_error);
    ts[1].cancel();
    ts[1].wait();
}

TEST_F(WaitFor, ReturnsTheResultInTime) {
    auto t = after(1ms, 5);
    EXPECT_EQ(wait_for(t, 1h), 5);
}

TEST_F(WaitFor, OnTimeoutCancelsTheTaskWaitsForItThenRaises) {
    std::vector<std::string> seen;
    auto t = spawn([&] {
        try {
            sleep(1h);
        } catch (const cancelled_error& e) {
            seen.push_back("inner cancelled: " + e.message());
            throw;
        }
    });
    try {
        wait_for(t, 10ms);
        FAIL();
    } catch (const timeout_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("did not finish within 10 ms"));
    }
    // The cancellation had finished before wait_for raised.
    EXPECT_EQ(seen, std::vector<std::string>{"inner cancelled: wait_for timed out"});
    EXPECT_TRUE(t.cancelled());
}

TEST_F(WaitFor, CancellingTheCallerCancelsTheInnerTask) {
    auto inner = after(1h, 1);
    auto outer = spawn([&] { return wait_for(inner, 1h); });
    yield_now();
    outer.cancel();
    EXPECT_THROW(outer.get(), cancelled_error);
    EXPECT_TRUE(inner.cancelled());
}

TEST_F(Timeout, AnExpiredBlockRaisesTimeoutErrorAndIsMarkedExpired) {
    bool expired = false;
    auto t = spawn([&] {
        try {
            timeout(10ms, [&](timeout_scope& scope) {
                struct mark {
                    timeout_scope& s;
                    bool& e;
                    ~mark() { e = s.expired(); }
                } m{scope, expired};
                sleep(1h);
            });
        } catch (const timeout_error&) {
            return std::string("timed out");
        }
        return std::string("finished");
    });
    EXPECT_EQ(t.get(), "timed out");
    EXPECT_TRUE(expired);
    EXPECT_EQ(t.cancelling(), 0);
}

TEST_F(Timeout, ABlockThatFinishesInTimeReturnsItsValue) {
    auto t = spawn([] { return timeout(1h, [] { return 3; }); });
    EXPECT_EQ(t.get(), 3);
}

TEST_F(Timeout, OnlyItsOwnCancellationIsConverted) {
    auto t = spawn([] { timeout(1h, [] { sleep(1h); }); });
    yield_now();
    t.cancel("from outside");
    EXPECT_THROW(t.get(), cancelled_error);
}

TEST_F(Timeout, RescheduleMovesTheDeadline) {
    auto t = spawn([] {
        return timeout(5ms, [](timeout_scope& s) {
            s.reschedule(std::chrono::steady_clock::now() + 1h);
            sleep(20ms);
            return s.expired();
        });
    });
    EXPECT_FALSE(t.get());
}

TEST_F(Timeout, NeedsATask) {
    EXPECT_THROW(timeout(1ms, [] {}), greenfiber::error);
}

TEST_F(Timeout, AGuardRaisesTimeoutErrorOnceInsideTheBlock) {
    auto t = spawn([] {
        std::vector<std::string> seen;
        try {
            timeout_guard g(10ms);
            sleep(1h);
            seen.push_back("slept");
        } catch (const timeout_error& e) {
            seen.push_back(std::string("timeout: ") + e.what());
        }
        sleep(1ms);  // not sticky: the task runs on
        seen.push_back("after");
        return seen;
    });
    const auto seen = t.get();
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_THAT(seen[0], HasSubstr("timeout: greenfiber: timeout_guard: 10 ms passed"));
    EXPECT_EQ(seen[1], "after");
}

TEST_F(Timeout, AGuardLeftInTimeNeverFires) {
    auto t = spawn([] {
        {
            timeout_guard g(1h);
            sleep(1ms);
        }
        sleep(2ms);
        return 1;
    });
    EXPECT_EQ(t.get(), 1);
}

TEST_F(Shield, CancellingTheShieldLeavesTheInnerTaskRunning) {
    auto inner = spawn([] {
        sleep(10ms);
        return std::string("inner");
    });
    auto shielded = shield(inner);
    yield_now();
    shielded.cancel();
    EXPECT_THROW(shielded.get(), cancelled_error);
    EXPECT_EQ(inner.get(), "inner");
    EXPECT_FALSE(inner.cancelled());
}

TEST_F(TaskGroup, JoinWaitsForEveryTask) {
    std::vector<int> done;
    auto t = spawn([&] {
        task_group g;
        for (int i = 0; i < 3; ++i) {
            (void)g.spawn([&done, i] {
                sleep(std::chrono::milliseconds(3 - i));
                done.push_back(i);
            });
        }
        g.join();
        return done.size();
    });
    EXPECT_EQ(t.get(), 3u);
    std::sort(done.begin(), done.end());
    EXPECT_EQ(done, (std::vector<int>{0, 1, 2}));
}

TEST_F(TaskGroup, TheFirstFailureCancelsTheRestAndJoinRaisesTheGroup) {
    std::vector<std::string> seen;
    auto t = spawn([&] {
        task_group g;
        (void)g.spawn([&] {
            try {
                sleep(1h);
            } catch (const cancelled_error&) {
                seen.push_back("sibling cancelled");
                throw;
            }
        });
        (void)g.spawn([] {
            sleep(1ms);
            throw std::runtime_error("child failed");
        });
        try {
            g.join();
        } catch (const exception_group& e) {
            EXPECT_EQ(e.errors().size(), 1u);
            try {
                std::rethrow_exception(e.errors()[0]);
            } catch (const std::runtime_error& r) {
                seen.push_back(std::string("group: ") + r.what());
            }
        }
    });
    t.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"sibling cancelled", "group: child failed"}));
}

TEST_F(TaskGroup, AFailureCancelsTheOwnerWhileItWaitsElsewhere) {
    std::vector<std::string> seen;
    auto t = spawn([&] {
        task_group g;
        (void)g.spawn([] {
            sleep(1ms);
            throw std::runtime_error("boom");
        });
        try {
            sleep(1h);  // the owner's own wait is interrupted
        } catch (const cancelled_error&) {
            seen.push_back("owner interrupted");
        }
        try {
            g.join();
        } catch (const exception_group&) {
            seen.push_back("joined with the failure");
        }
        sleep(1ms);  // the group withdrew its cancellation: the owner runs on normally
        seen.push_back("owner goes on");
    });
    t.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"owner interrupted", "joined with the failure",
                                              "owner goes on"}));
}

TEST_F(TaskGroup, DestroyedWithoutJoinCancelsAndJoinsItsTasks) {
    bool cancelled = false;
    auto t = spawn([&] {
        task_group g;
        (void)g.spawn([&] {
            try {
                sleep(1h);
            } catch (const cancelled_error&) {
                cancelled = true;
                throw;
            }
        });
        yield_now();
    });
    t.get();
    EXPECT_TRUE(cancelled);
}

TEST_F(Pool, SpawnSuspendsWhileThePoolIsFull) {
    int running = 0;
    int peak = 0;
    auto t = spawn([&] {
        pool p(2);
        for (int i = 0; i < 6; ++i) {
            (void)p.spawn([&] {
                ++running;
                peak = std::max(peak, running);
                sleep(2ms);
                --running;
            });
            EXPECT_LE(p.running(), 2u);
        }
        p.join();
        return p.running();
    });
    EXPECT_EQ(t.get(), 0u);
    EXPECT_EQ(peak, 2);
}

// Regression: a freed slot went to a waiter by waking it; a spawn() arriving before that
// waiter ran took the slot, and the waiter, already off the list, waited forever.
TEST_F(Pool, AFreedSlotGoesToTheWaiterNotToALaterSpawn) {
    auto t = spawn([] {
        pool p(1);
        std::vector<int> order;
        event release;
        (void)p.spawn([&] { release.wait(); });  // holds the only slot
        auto b = spawn([&] { (void)p.spawn([&] { order.push_back(1); }); });
        yield_now();  // b waits for the slot
        release.set();
        yield_now();  // the first task ends and frees its slot; b is woken but runs after us
        (void)p.spawn([&] { order.push_back(2); });
        b.get();
        p.join();
        return order;
    });
    EXPECT_EQ(t.get(), (std::vector<int>{1, 2}));
}

// Regression: a waiter woken with a slot and cancelled before it ran took the wake-up with
// it; the next waiter waited forever.
TEST_F(Pool, AWaiterCancelledAfterItWasGivenASlotPassesItOn) {
    auto t = spawn([] {
        pool p(1);
        event release;
        (void)p.spawn([&] { release.wait(); });
        auto b = spawn([&] { (void)p.spawn([] {}); });
        auto c = spawn([&] {
            (void)p.spawn([] {});
            return 3;
        });
        yield_now();  // b and c wait, in that order
        release.set();
        yield_now();  // the first task ends: its slot goes to b, which has not run yet
        b.cancel();
        b.wait();
        EXPECT_TRUE(b.cancelled());
        const int r = c.get();
        p.join();
        EXPECT_EQ(p.free_count(), 1u);
        return r;
    });
    EXPECT_EQ(t.get(), 3);
}

TEST_F(Pool, EveryFiberInJoinIsWoken) {
    auto t = spawn([] {
        pool p(2);
        (void)p.spawn([] { sleep(2ms); });
        (void)p.spawn([] { sleep(3ms); });
        auto j1 = spawn([&] { p.join(); });
        auto j2 = spawn([&] { p.join(); });
        j1.get();
        j2.get();
        return p.running();
    });
    EXPECT_EQ(t.get(), 0u);
}

TEST_F(Pool, ACancelledJoinerLeavesNoTrace) {
    auto t = spawn([] {
        pool p(1);
        (void)p.spawn([] { sleep(3ms); });
        auto j = spawn([&] { p.join(); });
        yield_now();
        j.cancel();
        j.wait();
        p.join();
        return j.cancelled();
    });
    EXPECT_TRUE(t.get());
}

TEST_F(TaskGroup, EveryFiberInJoinIsWoken) {
    auto t = spawn([] {
        task_group g;
        (void)g.spawn([] { sleep(2ms); });
        (void)g.spawn([] { sleep(3ms); });
        auto j = spawn([&] { g.join(); });
        g.join();
        j.get();
        return g.running();
    });
    EXPECT_EQ(t.get(), 0u);
}

TEST_F(AsCompleted, TwoFibersTakingFromOneQueueAreBothServed) {
    auto t = spawn([] {
        auto ts = tasks(after(2ms, 1), after(4ms, 2));
        auto ac = as_completed(ts);
        auto other = spawn([&] { return ac.next().get(); });
        const int mine = ac.next().get();
        return mine + other.get();
    });
    EXPECT_EQ(t.get(), 3);
}

TEST_F(Shield, CancellingAGetOnTheShieldLeavesTheInnerTaskRunning) {
    auto inner = spawn([] {
        sleep(3ms);
        return 4;
    });
    auto outer = spawn([s = shield(inner)]() mutable { return s.get(); });
    yield_now();
    outer.cancel();
    outer.wait();
    EXPECT_TRUE(outer.cancelled());
    EXPECT_EQ(inner.get(), 4);
}

// Regression: a timeout() block that expired and then let another exception out left its
// cancellation request behind, and the task's next wait raised cancelled_error.
TEST_F(Timeout, AnExpiredBlockLeavingWithAnotherExceptionWithdrawsItsRequest) {
    auto t = spawn([] {
        try {
            timeout(2ms, [] {
                try {
                    sleep(1h);
                } catch (const cancelled_error&) {
                    throw std::runtime_error("cleanup failed");
                }
            });
        } catch (const std::runtime_error&) {
        }
        EXPECT_EQ(current_task().cancelling(), 0);
        sleep(1ms);  // no stale cancellation
        return 9;
    });
    EXPECT_EQ(t.get(), 9);
}

}  // namespace

namespace {

// asyncio's gather, wait and wait_for complete an inner future from a done callback, whose own
// done callback wakes the caller: it resumes after what the callbacks registered before it
// queued, two turns after a task that was already finished.
TEST_F(Order, GatherReturnsAfterWhatEarlierCallbacksQueued) {
    std::vector<std::string> seen;
    event go;
    auto t = spawn([&] {
        go.wait();
        return 1;
    });
    t.add_done_callback([&](task<int>&) {
        seen.push_back("callback");
        event_loop::current().call_soon([&] { seen.push_back("queued by it"); });
    });
    event_loop::current().call_soon([&] { go.set(); });
    (void)gather(t);
    seen.push_back("gather returned");
    EXPECT_EQ(seen, (std::vector<std::string>{"callback", "queued by it", "gather returned"}));
}

TEST_F(Order, WaitOnFinishedTasksTakesTheTwoTurnsOfItsCallbacks) {
    // Shared with the callbacks: if wait() returned early they would outlive this frame.
    auto seen = std::make_shared<std::vector<std::string>>();
    auto ts = tasks(spawn([] { return 1; }));
    (void)ts[0].get();
    event_loop::current().call_soon([seen] {
        seen->push_back("first");
        event_loop::current().call_soon([seen] { seen->push_back("second"); });
    });
    auto r = wait(ts);
    seen->push_back("wait returned");
    EXPECT_EQ(r.done.size(), 1u);
    EXPECT_EQ(*seen, (std::vector<std::string>{"first", "second", "wait returned"}));
    yield_now();
    yield_now();
}

TEST_F(Order, WaitForResumesAfterTheCallbacksRegisteredBeforeIt) {
    std::vector<std::string> seen;
    event go;
    auto t = spawn([&] {
        go.wait();
        return 7;
    });
    t.add_done_callback([&](task<int>&) {
        seen.push_back("callback");
        event_loop::current().call_soon([&] { seen.push_back("queued by it"); });
    });
    event_loop::current().call_soon([&] { go.set(); });
    EXPECT_EQ(wait_for(t, 1h), 7);
    seen.push_back("wait_for returned");
    EXPECT_EQ(seen, (std::vector<std::string>{"callback", "queued by it", "wait_for returned"}));
}

// A gather raises the failure its completion callbacks saw first, in their turns: a task that
// fails after a sibling finished is seen after the sibling's callback, and what the failing
// task queued on its way out runs before the caller resumes (asyncio's order).
TEST_F(Order, GatherRaisesTheFailureItsCallbacksSawInTheirTurns) {
    auto seen = std::make_shared<std::vector<std::string>>();
    event never;
    auto victim = spawn([&, seen] {
        try {
            never.wait();
        } catch (const cancelled_error&) {
            event_loop::current().call_soon([seen] { seen->push_back("queued by the victim"); });
            throw;
        }
        return 1;
    });
    auto killer = spawn([v = victim.share()] {
        v.cancel();
        return 2;
    });
    try {
        (void)gather(victim, killer);
        seen->push_back("gather returned");
    } catch (const cancelled_error&) {
        seen->push_back("gather raised the cancellation");
    }
    EXPECT_EQ(*seen,
              (std::vector<std::string>{"queued by the victim", "gather raised the cancellation"}));
    yield_now();
}

// A task group handles a task's end in a callback turn, as asyncio's TaskGroup: a sibling
// already scheduled runs before the failure cancels it, and the joining owner, woken by the
// failure, returns as soon as every end was handled.
TEST_F(Order, ATaskGroupHandlesEachEndInItsCallbackTurn) {
    auto seen = std::make_shared<std::vector<std::string>>();
    task<void> grandchild;
    auto owner = spawn([&, seen] {
        task_group g;
        (void)g.spawn([]() -> int { throw std::runtime_error("first"); });
        (void)g.spawn([&, seen] {
            seen->push_back("sibling ran");
            grandchild = spawn([seen] {
                event_loop::current().call_soon([seen] { seen->push_back("queued later"); });
            });
        });
        try {
            g.join();
        } catch (const exception_group& e) {
            seen->push_back("joined with " + std::to_string(e.errors().size()) + " failure");
        }
    });
    owner.get();
    if (grandchild) grandchild.get();  // empty if the sibling never ran
    yield_now();
    EXPECT_EQ(*seen,
              (std::vector<std::string>{"sibling ran", "joined with 1 failure", "queued later"}));
}

// Cancelled after the gather settled (in a callback registered after it): the caller raises
// cancelled_error, and the children are left alone since the gather's outcome was settled
// (asyncio: the outer future is done, the cancellation goes to the waiting task only).
TEST_F(Order, CancellingAGatherThatSettledLeavesItsChildrenAlone) {
    event go;
    event never;
    auto failing = spawn([&]() -> int {
        go.wait();
        throw std::runtime_error("boom");
    });
    auto slow = spawn([&] {
        never.wait();
        return 2;
    });
    auto caller = spawn([&, f = failing.share(), s = slow.share()]() mutable {
        (void)gather(f, s);
        return 0;
    });
    yield_now();  // the caller is in gather() now
    failing.add_done_callback([c = caller.share()](task<int>&) { c.cancel(); });
    go.set();
    caller.wait();
    EXPECT_TRUE(caller.cancelled());
    EXPECT_FALSE(slow.done());
    EXPECT_THROW((void)failing.result(), std::runtime_error);
    never.set();
    EXPECT_EQ(slow.get(), 2);
}

}  // namespace

namespace {

class TaskGroupFailures : public greenfiber::testing::io_checked {};

std::vector<std::string> messages_of(const exception_group& g) {
    std::vector<std::string> out;
    for (const auto& e : g.errors()) {
        try {
            std::rethrow_exception(e);
        } catch (const exception_group& inner) {
            out.push_back("group of " + std::to_string(inner.errors().size()));
        } catch (const std::exception& x) {
            out.push_back(x.what());
        }
    }
    return out;
}

// A task that fails only when it is cancelled (its cleanup throws).
void fails_when_cancelled(const char* what) {
    try {
        sleep(1h);
    } catch (const cancelled_error&) {
        throw std::runtime_error(what);
    }
}

TEST_F(TaskGroupFailures, JoinCancelledFromOutsideStillRaisesEveryFailure) {
    std::vector<std::string> seen;
    auto owner = spawn([&] {
        task_group g;
        (void)g.spawn([] { fails_when_cancelled("cleanup failed"); });
        try {
            g.join();
            seen.push_back("joined");
        } catch (const exception_group& e) {
            for (auto& m : messages_of(e)) seen.push_back(m);
        } catch (const cancelled_error&) {
            seen.push_back("bare cancelled_error");
        }
    });
    yield_now();
    yield_now();  // the owner is in join(), the child in its sleep
    owner.cancel();
    owner.wait();
    EXPECT_EQ(seen, std::vector<std::string>{"cleanup failed"});
}

TEST_F(TaskGroupFailures, EveryFailureIsInTheGroupInTheOrderTheyHappened) {
    std::vector<std::string> seen;
    event go;
    auto owner = spawn([&] {
        try {
            with_task_group([&](task_group& g) {
                (void)g.spawn([&] {
                    go.wait();
                    throw std::runtime_error("first");
                });
                (void)g.spawn([&] {
                    go.wait();
                    throw std::runtime_error("second");
                });
                (void)g.spawn([] { fails_when_cancelled("third, on its cancellation"); });
                (void)g.spawn([] { sleep(1h); });  // cancelled quietly
                yield_now();
                go.set();
            });
        } catch (const exception_group& e) {
            seen = messages_of(e);
        }
    });
    owner.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"first", "second", "third, on its cancellation"}));
}

// asyncio cancels the parent task to stop its body; `async with` turns that into the group's
// failures and withdraws the cancellation.
TEST_F(TaskGroupFailures, AFailureWhileTheOwnerWaitsInItsBodyRaisesTheGroupNotCancelled) {
    std::vector<std::string> seen;
    auto owner = spawn([&] {
        try {
            with_task_group([&](task_group& g) {
                (void)g.spawn([] {
                    yield_now();
                    throw std::runtime_error("child failed");
                });
                sleep(1h);  // interrupted by the group
                seen.push_back("body went on");
            });
        } catch (const exception_group& e) {
            for (auto& m : messages_of(e)) seen.push_back(m);
        } catch (const cancelled_error&) {
            seen.push_back("bare cancelled_error");
        }
        seen.push_back("cancelling " + std::to_string(current_task().cancelling()));
        yield_now();  // no stale cancellation
        seen.push_back("owner goes on");
    });
    owner.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"child failed", "cancelling 0", "owner goes on"}));
}

TEST_F(TaskGroupFailures, TheBodysOwnExceptionFollowsTheTasksFailures) {
    std::vector<std::string> seen;
    auto owner = spawn([&] {
        try {
            with_task_group([&](task_group& g) {
                (void)g.spawn([] { fails_when_cancelled("child's cleanup"); });
                (void)g.spawn([] { sleep(1h); });
                yield_now();
                throw std::logic_error("body");
            });
        } catch (const exception_group& e) {
            seen = messages_of(e);
        }
        try {
            with_task_group([](task_group&) { throw std::logic_error("body alone"); });
        } catch (const exception_group& e) {
            for (auto& m : messages_of(e)) seen.push_back(m);
        }
    });
    owner.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"child's cleanup", "body", "body alone"}));
}

TEST_F(TaskGroupFailures, TheOwnersCancellationGoesOnWhenNothingFailed) {
    bool child_cancelled = false;
    auto owner = spawn([&] {
        with_task_group([&](task_group& g) {
            (void)g.spawn([&] {
                try {
                    sleep(1h);
                } catch (const cancelled_error&) {
                    child_cancelled = true;
                    throw;
                }
            });
            sleep(1h);
        });
    });
    yield_now();
    yield_now();
    owner.cancel();
    owner.wait();
    EXPECT_TRUE(owner.cancelled());
    EXPECT_TRUE(child_cancelled);
}

// Cancelled from outside in its body while a task fails: the failures win, and the outside
// request stays pending (greenfiber's cancellation is sticky).
TEST_F(TaskGroupFailures, FailuresWinOverAnOutsideCancellationOfTheBody) {
    std::vector<std::string> seen;
    auto owner = spawn([&] {
        try {
            with_task_group([&](task_group& g) {
                (void)g.spawn([] { fails_when_cancelled("child's cleanup"); });
                sleep(1h);
            });
        } catch (const exception_group& e) {
            seen = messages_of(e);
            seen.push_back("cancelling " + std::to_string(current_task().cancelling()));
            throw;
        }
    });
    yield_now();
    yield_now();
    owner.cancel();
    owner.wait();
    EXPECT_EQ(seen, (std::vector<std::string>{"child's cleanup", "cancelling 1"}));
    EXPECT_THROW(owner.get(), exception_group);
}

TEST_F(TaskGroupFailures, NestedGroupsNestTheirFailures) {
    std::vector<std::string> seen;
    auto owner = spawn([&] {
        try {
            with_task_group([&](task_group& outer) {
                (void)outer.spawn([] { sleep(1h); });  // cancelled by the inner failure
                with_task_group([&](task_group& inner) {
                    (void)inner.spawn([] {
                        yield_now();
                        throw std::runtime_error("inner child");
                    });
                    sleep(1h);
                });
            });
        } catch (const exception_group& e) {
            seen = messages_of(e);
            try {
                std::rethrow_exception(e.errors().at(0));
            } catch (const exception_group& inner) {
                for (auto& m : messages_of(inner)) seen.push_back(m);
            }
        }
    });
    owner.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"group of 1", "inner child"}));
}

// The owner parked outside join() is stopped even while another fiber joins the group, and
// every fiber in join() gets the failures.
TEST_F(TaskGroupFailures, TheOwnerIsCancelledWhileAnotherFiberJoins) {
    std::vector<std::string> seen;
    event go;
    event never;
    std::optional<task_group> g;  // outlives both fibers joining it
    auto owner = spawn([&] {
        g.emplace();
        (void)g->spawn([&] {
            go.wait();
            throw std::runtime_error("boom");
        });
        try {
            never.wait();
        } catch (const cancelled_error&) {
            seen.push_back("owner stopped");
        }
        try {
            g->join();
        } catch (const exception_group& e) {
            for (auto& m : messages_of(e)) seen.push_back("owner: " + m);
        }
    });
    yield_now();
    auto joiner = spawn([&] {
        try {
            g->join();
        } catch (const exception_group& e) {
            for (auto& m : messages_of(e)) seen.push_back("joiner: " + m);
        }
    });
    yield_now();
    go.set();
    owner.get();
    joiner.get();
    g.reset();
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, (std::vector<std::string>{"joiner: boom", "owner stopped", "owner: boom"}));
}

}  // namespace
