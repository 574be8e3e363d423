#include "greenfiber/combinators.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
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
