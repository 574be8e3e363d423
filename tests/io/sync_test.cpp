#include "greenfiber/sync.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/loop.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

using clock_type = std::chrono::steady_clock;

class Lock : public greenfiber::testing::io_checked {};
class RLock : public greenfiber::testing::io_checked {};
class Event : public greenfiber::testing::io_checked {};
class Semaphore : public greenfiber::testing::io_checked {};
class Condition : public greenfiber::testing::io_checked {};
class Barrier : public greenfiber::testing::io_checked {};

// Counts the fibers inside a critical section and the most ever seen there at once.
struct occupancy {
    int inside = 0;
    int most = 0;
    int entries = 0;
    struct scope {
        occupancy& o;
        explicit scope(occupancy& oc) : o(oc) {
            ++o.inside;
            ++o.entries;
            o.most = std::max(o.most, o.inside);
        }
        ~scope() { --o.inside; }
    };
};

// Waits for every task; returns how many were cancelled.
template <class T>
int join_all(std::vector<task<T>>& ts) {
    int cancelled = 0;
    for (auto& t : ts) {
        try {
            t.get();
        } catch (const cancelled_error&) {
            ++cancelled;
        }
    }
    return cancelled;
}

// ---------------------------------------------------------------- lock

static_assert(std::is_same_v<greenfiber::lock, greenfiber::mutex>);

TEST_F(Lock, IsNotReentrantTryLockFailsWhileHeld) {
    lock l;
    EXPECT_FALSE(l.locked());
    EXPECT_TRUE(l.try_lock());
    EXPECT_TRUE(l.locked());
    EXPECT_FALSE(l.try_lock());  // not reentrant
    l.unlock();
    EXPECT_FALSE(l.locked());
}

TEST_F(Lock, UnlockOfAnUnlockedLockThrowsLockIsNotAcquired) {
    lock l;
    try {
        l.unlock();
        FAIL() << "unlock() of an unlocked lock returned";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("Lock is not acquired."));
    }
}

// cpython test_locks.LockTests.test_acquire, step by step.
TEST_F(Lock, WaitersAcquireInFifoOrderAsAsyncio) {
    lock l;
    std::vector<int> result;
    l.lock();
    auto c = [&](int n) {
        l.lock();
        result.push_back(n);
    };
    auto t1 = spawn(c, 1);
    auto t2 = spawn(c, 2);
    yield_now();
    EXPECT_EQ(result, std::vector<int>{});
    l.unlock();
    yield_now();
    EXPECT_EQ(result, std::vector<int>{1});
    yield_now();
    EXPECT_EQ(result, std::vector<int>{1});
    auto t3 = spawn(c, 3);
    l.unlock();
    yield_now();
    EXPECT_EQ(result, (std::vector<int>{1, 2}));
    l.unlock();
    yield_now();
    EXPECT_EQ(result, (std::vector<int>{1, 2, 3}));
    EXPECT_TRUE(t1.done() && t2.done() && t3.done());
    EXPECT_TRUE(l.locked());
    l.unlock();
}

TEST_F(Lock, ALaterArrivalNeverOvertakesAWaiter) {
    lock l;
    std::vector<std::string> order;
    l.lock();
    auto waiter = spawn([&] {
        l.lock();
        order.push_back("waiter");
        l.unlock();
    });
    yield_now();
    l.unlock();  // handed to the waiter, which has not run yet
    EXPECT_TRUE(l.locked());
    EXPECT_FALSE(l.try_lock());  // no barging
    auto late = spawn([&] {
        l.lock();
        order.push_back("late");
        l.unlock();
    });
    waiter.get();
    late.get();
    EXPECT_EQ(order, (std::vector<std::string>{"waiter", "late"}));
    EXPECT_FALSE(l.locked());
}

TEST_F(Lock, WorksWithStdLockGuardAndUniqueLock) {
    lock l;
    {
        std::lock_guard g(l);
        EXPECT_TRUE(l.locked());
    }
    EXPECT_FALSE(l.locked());
    {
        std::unique_lock u(l, std::try_to_lock);
        EXPECT_TRUE(u.owns_lock());
        std::unique_lock v(l, std::try_to_lock);
        EXPECT_FALSE(v.owns_lock());
    }
    {
        std::unique_lock u(l, clock_type::now() + 1h);  // TimedLockable
        EXPECT_TRUE(u.owns_lock());
        auto t = spawn([&] {
            std::unique_lock v(l, 2ms);
            return v.owns_lock();
        });
        EXPECT_FALSE(t.get());
    }
    EXPECT_FALSE(l.locked());
}

TEST_F(Lock, LockForTimesOutWhileHeldAndLockUntilSucceedsWhenReleased) {
    lock l;
    l.lock();
    auto timed_out = spawn([&] { return l.lock_for(3ms); });
    EXPECT_FALSE(timed_out.get());
    EXPECT_FALSE(l.lock_until(clock_type::now() - 1s));  // already passed: does not wait
    auto succeeds = spawn([&] {
        const bool got = l.lock_until(clock_type::now() + 1h);
        if (got) l.unlock();
        return got;
    });
    yield_now();
    l.unlock();
    EXPECT_TRUE(succeeds.get());
    EXPECT_FALSE(l.locked());
}

TEST_F(Lock, CancelledAfterBeingGrantedPassesTheLockToTheNextWaiter) {
    lock l;
    std::vector<std::string> seen;
    l.lock();
    auto a = spawn([&] {
        try {
            l.lock();
            seen.push_back("a locked");
            l.unlock();
        } catch (const cancelled_error&) {
            seen.push_back("a cancelled");
            throw;
        }
    });
    auto b = spawn([&] {
        l.lock();
        seen.push_back("b locked");
        l.unlock();
    });
    yield_now();  // both wait
    l.unlock();   // handed to a, queued to resume...
    a.cancel();   // ...and cancelled before it runs
    EXPECT_THROW(a.get(), cancelled_error);
    b.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"a cancelled", "b locked"}));
    EXPECT_FALSE(l.locked());
}

TEST_F(Lock, CancelledAfterBeingGrantedWithNobodyElseWaitingFreesTheLock) {
    lock l;
    l.lock();
    auto a = spawn([&] { l.lock(); });
    yield_now();
    l.unlock();
    EXPECT_TRUE(l.locked());  // a holds it on paper
    a.cancel();
    EXPECT_THROW(a.get(), cancelled_error);
    EXPECT_FALSE(l.locked());  // given back, not lost
}

TEST_F(Lock, CancelledWhileWaitingLeavesTheQueueAtOnce) {
    lock l;
    std::vector<std::string> seen;
    l.lock();
    auto a = spawn([&] { l.lock(); });
    auto b = spawn([&] {
        l.lock();
        seen.push_back("b");
        l.unlock();
    });
    yield_now();
    a.cancel();  // not granted: it leaves the wait list now
    l.unlock();  // so the lock goes straight to b
    EXPECT_THROW(a.get(), cancelled_error);
    b.get();
    EXPECT_EQ(seen, std::vector<std::string>{"b"});
    EXPECT_FALSE(l.locked());
}

TEST_F(Lock, ACancelledTaskStillTakesAFreeLockWithoutWaiting) {
    lock l;
    auto t = spawn([&] {
        try {
            sleep(1h);
        } catch (const cancelled_error&) {
        }
        // The cancellation is still pending (sticky), but a free lock needs no wait.
        const bool got = l.try_lock();
        std::lock_guard g(l, std::adopt_lock);
        EXPECT_TRUE(got);
        EXPECT_THROW(yield_now(), cancelled_error);
    });
    yield_now();
    t.cancel();
    t.get();  // the task caught both: it ends normally
    EXPECT_FALSE(l.locked());
}

TEST_F(Lock, TimedOutButGrantedBeforeItRanKeepsTheLock) {
    lock l;
    l.lock();
    const auto deadline = clock_type::now() + 2ms;
    auto waiter = spawn([&] { return l.lock_until(deadline); });
    yield_now();  // it waits, with its timer armed
    // Due just after the waiter's timer: in the same reactor pass, the timer wakes the
    // waiter first, then this hands it the lock before it runs.
    event_loop::current().call_at(deadline + 1ms, [&] { l.unlock(); });
    std::this_thread::sleep_for(10ms);  // both deadlines pass while the hub is blocked
    EXPECT_TRUE(waiter.get());          // the grant wins over the timeout
    EXPECT_TRUE(l.locked());            // and it holds the lock
    l.unlock();
}

TEST_F(Lock, ManyFibersNeverOverlapAndNoWakeUpIsLost) {
    lock l;
    occupancy occ;
    std::vector<task<void>> ts;
    for (int i = 0; i < 50; ++i) {
        ts.push_back(spawn([&, i] {
            for (int k = 0; k < 20; ++k) {
                std::lock_guard g(l);
                occupancy::scope s(occ);
                for (int y = 0; y < (i + k) % 3; ++y) yield_now();
            }
            if (i % 2 == 0) yield_now();
        }));
    }
    EXPECT_EQ(join_all(ts), 0);
    EXPECT_EQ(occ.entries, 50 * 20);
    EXPECT_EQ(occ.most, 1);
    EXPECT_FALSE(l.locked());
}

TEST_F(Lock, RandomCancellationsNeitherLoseNorDuplicateTheLock) {
    lock l;
    occupancy occ;
    std::minstd_rand rng(20240501);
    std::vector<task<void>> ts;
    int finished = 0;
    for (int i = 0; i < 64; ++i) {
        ts.push_back(spawn([&] {
            for (int k = 0; k < 4; ++k) {
                std::lock_guard g(l);
                occupancy::scope s(occ);
                yield_now();
            }
            ++finished;
        }));
    }
    for (int round = 0; round < 150; ++round) {
        for (unsigned y = rng() % 3; y > 0; --y) yield_now();
        (void)ts[rng() % ts.size()].cancel();
    }
    const int cancelled = join_all(ts);
    EXPECT_GT(cancelled, 0);
    EXPECT_EQ(cancelled + finished, 64);
    EXPECT_EQ(occ.most, 1);
    EXPECT_FALSE(l.locked());
}

TEST_F(Lock, WaitingFromAnotherThreadWhileFibersWaitHereThrows) {
    lock l;
    l.lock();
    auto waiter = spawn([&] { l.lock(); });
    yield_now();
    std::string message;
    std::thread([&] {
        try {
            l.lock();
        } catch (const greenfiber::error& e) {
            message = e.what();
        }
    }).join();
    EXPECT_THAT(message, HasSubstr("another thread"));
    l.unlock();
    waiter.get();
    l.unlock();
}

// ---------------------------------------------------------------- rlock

TEST_F(RLock, TheOwnerMayLockAgainAndMustUnlockAsOften) {
    rlock r;
    r.lock();
    r.lock();
    EXPECT_TRUE(r.try_lock());
    EXPECT_EQ(r.recursion_count(), 3u);
    EXPECT_TRUE(r.owned_by_current());
    auto other = spawn([&] { return r.try_lock(); });
    EXPECT_FALSE(other.get());
    r.unlock();
    r.unlock();
    EXPECT_TRUE(r.locked());
    r.unlock();
    EXPECT_FALSE(r.locked());
    EXPECT_FALSE(r.owned_by_current());
}

TEST_F(RLock, ReleasingFromANonOwnerThrows) {
    rlock r;
    try {
        r.unlock();
        FAIL() << "unlock() of an unlocked rlock returned";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("cannot release un-acquired lock"));
    }
    r.lock();
    auto thief = spawn([&] {
        try {
            r.unlock();
            return std::string("released");
        } catch (const greenfiber::error& e) {
            return std::string(e.what());
        }
    });
    EXPECT_THAT(thief.get(), HasSubstr("cannot release un-acquired lock"));
    EXPECT_TRUE(r.owned_by_current());
    r.unlock();
}

TEST_F(RLock, AWaiterBecomesTheOwnerWhenTheLastLevelIsReleased) {
    rlock r;
    std::vector<std::string> seen;
    r.lock();
    r.lock();
    auto t = spawn([&] {
        std::lock_guard g(r);
        seen.push_back("t owns it");
        EXPECT_TRUE(r.owned_by_current());
        std::lock_guard again(r);
        EXPECT_EQ(r.recursion_count(), 2u);
    });
    yield_now();
    r.unlock();
    yield_now();
    EXPECT_TRUE(seen.empty());  // still held once
    r.unlock();
    EXPECT_FALSE(r.owned_by_current());  // handed to t
    t.get();
    EXPECT_EQ(seen, std::vector<std::string>{"t owns it"});
    EXPECT_FALSE(r.locked());
}

TEST_F(RLock, CancelledAfterBeingGrantedPassesOwnershipToTheNextWaiter) {
    rlock r;
    std::vector<std::string> seen;
    r.lock();
    auto a = spawn([&] {
        std::lock_guard g(r);
        seen.push_back("a");
    });
    auto b = spawn([&] {
        std::lock_guard g(r);
        seen.push_back(r.owned_by_current() ? "b owns it" : "b does not own it");
    });
    yield_now();
    r.unlock();  // to a...
    a.cancel();  // ...cancelled before it runs
    EXPECT_THROW(a.get(), cancelled_error);
    b.get();
    EXPECT_EQ(seen, std::vector<std::string>{"b owns it"});
    EXPECT_FALSE(r.locked());
}

TEST_F(RLock, LockForTimesOutWhileAnotherFiberOwnsIt) {
    rlock r;
    r.lock();
    auto t = spawn([&] { return r.lock_for(3ms); });
    EXPECT_FALSE(t.get());
    EXPECT_EQ(r.recursion_count(), 1u);
    r.unlock();
}

// ---------------------------------------------------------------- event

// cpython test_locks.EventTests.test_wait.
TEST_F(Event, SetWakesEveryWaiterAsAsyncio) {
    event ev;
    EXPECT_FALSE(ev.is_set());
    std::vector<int> result;
    auto c = [&](int n) {
        ev.wait();
        result.push_back(n);
    };
    auto t1 = spawn(c, 1);
    auto t2 = spawn(c, 2);
    yield_now();
    EXPECT_EQ(result, std::vector<int>{});
    auto t3 = spawn(c, 3);
    ev.set();
    yield_now();
    EXPECT_EQ(result, (std::vector<int>{3, 1, 2}));
    EXPECT_TRUE(t1.done() && t2.done() && t3.done());
}

TEST_F(Event, WaitOnASetEventReturnsAtOnceAndClearResetsIt) {
    event ev;
    ev.set();
    EXPECT_TRUE(ev.is_set());
    ev.wait();
    EXPECT_TRUE(ev.wait_for(0ms));
    ev.clear();
    EXPECT_FALSE(ev.is_set());
    EXPECT_FALSE(ev.wait_for(2ms));
}

// cpython test_locks.EventTests.test_clear_with_waiters.
TEST_F(Event, AWokenWaiterReturnsEvenIfClearedBeforeItRuns) {
    event ev;
    std::vector<int> result;
    auto t = spawn([&] {
        ev.wait();
        result.push_back(1);
    });
    yield_now();
    EXPECT_EQ(result, std::vector<int>{});
    ev.set();
    ev.clear();
    EXPECT_FALSE(ev.is_set());
    ev.set();
    ev.set();
    yield_now();
    EXPECT_EQ(result, std::vector<int>{1});
    t.get();
}

TEST_F(Event, WaitUntilSucceedsWhenSetBeforeTheDeadline) {
    event ev;
    auto t = spawn([&] { return ev.wait_until(clock_type::now() + 1h); });
    yield_now();
    ev.set();
    EXPECT_TRUE(t.get());
}

TEST_F(Event, CancelledAfterBeingWokenRaisesAndTheOthersStillWake) {
    event ev;
    std::vector<std::string> seen;
    auto w = [&](std::string name) {
        try {
            ev.wait();
            seen.push_back(name + " woke");
        } catch (const cancelled_error&) {
            seen.push_back(name + " cancelled");
            throw;
        }
    };
    auto a = spawn(w, std::string("a"));
    auto b = spawn(w, std::string("b"));
    yield_now();
    ev.set();
    a.cancel();
    EXPECT_THROW(a.get(), cancelled_error);
    b.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"a cancelled", "b woke"}));
}

TEST_F(Event, ManyWaitersAreWokenExactlyOnceEach) {
    event ev;
    int woke = 0;
    std::vector<task<void>> ts;
    for (int i = 0; i < 100; ++i) {
        ts.push_back(spawn([&, i] {
            for (int y = 0; y < i % 4; ++y) yield_now();
            ev.wait();
            ++woke;
        }));
    }
    yield_now();
    yield_now();
    ev.set();
    EXPECT_EQ(join_all(ts), 0);
    EXPECT_EQ(woke, 100);
}

// ---------------------------------------------------------------- semaphore

// cpython test_locks.SemaphoreTests.test_acquire (FIFO since gh-90155; ours is exact).
// asyncio's loop.call_soon_threadsafe(event.set), through a hub_handle: the other thread
// holds it while it works, so the waiters wait for it instead of getting loop_exit.
TEST_F(Event, SetFromAnotherThreadThroughAHubHandleWakesEveryWaiter) {
    event ev;
    int woken = 0;
    auto a = spawn([&] {
        ev.wait();
        ++woken;
    });
    auto b = spawn([&] {
        ev.wait();
        ++woken;
    });
    yield_now();
    std::thread other([&ev, hold = hub::current().keep_alive()]() mutable {
        std::this_thread::sleep_for(20ms);
        EXPECT_TRUE(hold.post([&ev] { ev.set(); }));
    });
    a.get();
    b.get();
    other.join();
    EXPECT_EQ(woken, 2);
    EXPECT_EQ(hub::current().handles(), 0u);
}

TEST_F(Semaphore, AcquireIsFifoAsAsyncio) {
    semaphore sem(3);
    std::vector<int> result;
    sem.acquire();
    sem.acquire();
    EXPECT_FALSE(sem.locked());
    auto c = [&](int n) {
        sem.acquire();
        result.push_back(n);
    };
    auto t1 = spawn(c, 1);
    auto t2 = spawn(c, 2);
    auto t3 = spawn(c, 3);
    yield_now();
    EXPECT_EQ(result, std::vector<int>{1});
    EXPECT_TRUE(sem.locked());
    EXPECT_EQ(sem.value(), 0u);
    auto t4 = spawn(c, 4);
    sem.release();
    sem.release();
    EXPECT_EQ(sem.value(), 0u);  // both units went to the waiters
    yield_now();
    EXPECT_EQ(sem.value(), 0u);
    EXPECT_EQ(result, (std::vector<int>{1, 2, 3}));
    EXPECT_TRUE(sem.locked());
    EXPECT_TRUE(t1.done() && t2.done() && t3.done());
    EXPECT_FALSE(t4.done());
    sem.release();
    t4.get();
    EXPECT_EQ(result, (std::vector<int>{1, 2, 3, 4}));
}

TEST_F(Semaphore, BoundedSemaphoreReleasedTooManyTimesThrows) {
    bounded_semaphore sem(2);
    sem.acquire();
    sem.release();
    try {
        sem.release();
        FAIL() << "over-release returned";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("BoundedSemaphore released too many times"));
    }
    EXPECT_EQ(sem.value(), 2u);
    semaphore plain(0);
    plain.release();  // a plain semaphore has no bound
    EXPECT_EQ(plain.value(), 1u);
}

TEST_F(Semaphore, AcquireForTimesOutWhenNoUnitIsFree) {
    semaphore sem(1);
    sem.acquire();
    auto t = spawn([&] { return sem.acquire_for(3ms); });
    EXPECT_FALSE(t.get());
    EXPECT_FALSE(sem.try_acquire());
    EXPECT_FALSE(sem.acquire_until(clock_type::now() - 1s));
    sem.release();
    EXPECT_TRUE(sem.acquire_until(clock_type::now() + 1h));
    sem.release();
    EXPECT_EQ(sem.value(), 1u);
}

TEST_F(Semaphore, CancelledAfterBeingGrantedPassesTheUnitToTheNextWaiter) {
    semaphore sem(0);
    std::vector<std::string> seen;
    auto a = spawn([&] {
        sem.acquire();
        seen.push_back("a");
    });
    auto b = spawn([&] {
        sem.acquire();
        seen.push_back("b");
    });
    yield_now();
    sem.release();  // the unit goes to a...
    a.cancel();     // ...which is cancelled before it runs
    EXPECT_THROW(a.get(), cancelled_error);
    b.get();
    EXPECT_EQ(seen, std::vector<std::string>{"b"});
    EXPECT_EQ(sem.value(), 0u);
}

TEST_F(Semaphore, CancelledAfterBeingGrantedWithNobodyElseWaitingGivesTheUnitBack) {
    bounded_semaphore sem(1);
    sem.acquire();
    auto a = spawn([&] { sem.acquire(); });
    yield_now();
    sem.release();
    EXPECT_EQ(sem.value(), 0u);
    a.cancel();
    EXPECT_THROW(a.get(), cancelled_error);
    EXPECT_EQ(sem.value(), 1u);
    EXPECT_THROW(sem.release(), greenfiber::error);  // the bound still holds
}

TEST_F(Semaphore, ManyFibersNeverExceedTheUnitsAndNoWakeUpIsLost) {
    semaphore sem(3);
    occupancy occ;
    std::vector<task<void>> ts;
    for (int i = 0; i < 60; ++i) {
        ts.push_back(spawn([&, i] {
            for (int k = 0; k < 10; ++k) {
                sem.acquire();
                {
                    occupancy::scope s(occ);
                    for (int y = 0; y < (i * 7 + k) % 4; ++y) yield_now();
                }
                sem.release();
            }
        }));
    }
    EXPECT_EQ(join_all(ts), 0);
    EXPECT_EQ(occ.entries, 600);
    EXPECT_EQ(occ.most, 3);
    EXPECT_EQ(sem.value(), 3u);
}

TEST_F(Semaphore, RandomCancellationsNeverLoseAUnit) {
    semaphore sem(2);
    occupancy occ;
    std::minstd_rand rng(7);
    std::vector<task<void>> ts;
    for (int i = 0; i < 48; ++i) {
        ts.push_back(spawn([&] {
            for (int k = 0; k < 3; ++k) {
                sem.acquire();
                struct give_back {
                    semaphore& s;
                    ~give_back() { s.release(); }
                } g{sem};
                occupancy::scope s(occ);
                yield_now();
            }
        }));
    }
    for (int round = 0; round < 120; ++round) {
        for (unsigned y = rng() % 3; y > 0; --y) yield_now();
        (void)ts[rng() % ts.size()].cancel();
    }
    EXPECT_GT(join_all(ts), 0);
    EXPECT_LE(occ.most, 2);
    EXPECT_EQ(sem.value(), 2u);
}

// ---------------------------------------------------------------- condition

// cpython test_locks.ConditionTests.test_wait, step by step.
TEST_F(Condition, WaitAndNotifyAsAsyncio) {
    condition cond;
    std::vector<int> result;
    auto c = [&](int n) {
        cond.lock();
        cond.wait();
        result.push_back(n);  // returns holding the lock, as in the asyncio test
    };
    auto t1 = spawn(c, 1);
    auto t2 = spawn(c, 2);
    auto t3 = spawn(c, 3);
    yield_now();
    EXPECT_EQ(result, std::vector<int>{});
    EXPECT_FALSE(cond.locked());

    cond.lock();
    cond.notify();
    yield_now();
    EXPECT_EQ(result, std::vector<int>{});
    EXPECT_TRUE(cond.locked());

    cond.unlock();
    yield_now();
    EXPECT_EQ(result, std::vector<int>{1});
    EXPECT_TRUE(cond.locked());

    cond.notify(2);
    yield_now();
    EXPECT_EQ(result, std::vector<int>{1});
    EXPECT_TRUE(cond.locked());

    cond.unlock();
    yield_now();
    EXPECT_EQ(result, (std::vector<int>{1, 2}));
    EXPECT_TRUE(cond.locked());

    cond.unlock();
    yield_now();
    EXPECT_EQ(result, (std::vector<int>{1, 2, 3}));
    EXPECT_TRUE(cond.locked());
    EXPECT_TRUE(t1.done() && t2.done() && t3.done());
    cond.unlock();
}

// cpython test_locks.ConditionTests.test_wait_for.
TEST_F(Condition, WaitForAPredicateAsAsyncio) {
    condition cond;
    bool presult = false;
    std::vector<int> result;
    auto t = spawn([&] {
        std::lock_guard g(cond);
        if (cond.wait_for([&] { return presult; })) result.push_back(1);
    });
    yield_now();
    EXPECT_EQ(result, std::vector<int>{});
    cond.lock();
    cond.notify();
    cond.unlock();
    yield_now();
    EXPECT_EQ(result, std::vector<int>{});
    presult = true;
    cond.lock();
    cond.notify();
    cond.unlock();
    yield_now();
    EXPECT_EQ(result, std::vector<int>{1});
    t.get();
}

// cpython test_locks.ConditionTests.test_notify_all.
TEST_F(Condition, NotifyAllWakesEveryWaiterInOrder) {
    condition cond;
    std::vector<int> result;
    auto c = [&](int n) {
        std::lock_guard g(cond);
        cond.wait();
        result.push_back(n);
    };
    auto t1 = spawn(c, 1);
    auto t2 = spawn(c, 2);
    yield_now();
    EXPECT_EQ(cond.waiting(), 2u);
    {
        std::lock_guard g(cond);
        cond.notify_all();
    }
    t1.get();
    t2.get();
    EXPECT_EQ(result, (std::vector<int>{1, 2}));
}

TEST_F(Condition, WaitOrNotifyWithoutTheLockThrows) {
    condition cond;
    try {
        cond.wait();
        FAIL() << "wait() without the lock returned";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("cannot wait on un-acquired lock"));
    }
    try {
        cond.notify();
        FAIL() << "notify() without the lock returned";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("cannot notify on un-acquired lock"));
    }
    EXPECT_THROW(cond.notify_all(), greenfiber::error);
    EXPECT_FALSE(cond.locked());
}

TEST_F(Condition, ATimedWaitReturnsFalseWithTheLockHeld) {
    condition cond;
    std::lock_guard g(cond);
    EXPECT_FALSE(cond.wait_for(2ms));
    EXPECT_TRUE(cond.locked());
    EXPECT_FALSE(cond.wait_until(clock_type::now() + 2ms, [] { return false; }));
    EXPECT_TRUE(cond.wait_for(1h, [] { return true; }));  // true at once: no wait
    EXPECT_EQ(cond.waiting(), 0u);
}

TEST_F(Condition, ATimedWaitReturnsTrueWhenNotified) {
    condition cond;
    auto t = spawn([&] {
        std::lock_guard g(cond);
        return cond.wait_until(clock_type::now() + 1h);
    });
    yield_now();
    {
        std::lock_guard g(cond);
        cond.notify();
    }
    EXPECT_TRUE(t.get());
}

TEST_F(Condition, WorksOverABorrowedLock) {
    lock l;
    condition cond(l);
    bool ready = false;
    auto t = spawn([&] {
        std::lock_guard g(l);
        cond.wait_for([&] { return ready; });
        EXPECT_TRUE(l.locked());
    });
    yield_now();
    EXPECT_FALSE(l.locked());  // released by the wait
    {
        std::lock_guard g(l);
        ready = true;
        cond.notify();
    }
    t.get();
    EXPECT_FALSE(l.locked());
}

TEST_F(Condition, CancelledAfterBeingNotifiedPassesTheNotificationOnAndHoldsTheLock) {
    condition cond;
    std::vector<std::string> seen;
    auto w = [&](std::string name) {
        std::lock_guard g(cond);
        try {
            cond.wait();
            seen.push_back(name + " notified");
        } catch (const cancelled_error&) {
            seen.push_back(name +
                           (cond.locked() ? " cancelled, lock held" : " cancelled, no lock"));
            throw;
        }
    };
    auto a = spawn(w, std::string("a"));
    auto b = spawn(w, std::string("b"));
    yield_now();
    {
        std::lock_guard g(cond);
        cond.notify(1);  // to a...
    }
    a.cancel();  // ...cancelled before it runs
    EXPECT_THROW(a.get(), cancelled_error);
    b.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"a cancelled, lock held", "b notified"}));
    EXPECT_FALSE(cond.locked());
}

TEST_F(Condition, ACancelledWaitReacquiresTheLockBeforeTheCancellationLeaves) {
    condition cond;
    std::vector<std::string> seen;
    auto a = spawn([&] {
        std::lock_guard g(cond);
        try {
            cond.wait();
        } catch (const cancelled_error&) {
            seen.push_back("cancelled with the lock");
            throw;
        }
    });
    yield_now();
    cond.lock();  // main holds the lock while a is cancelled
    a.cancel();
    yield_now();
    yield_now();
    EXPECT_FALSE(a.done());  // a waits for the lock, despite the pending cancellation
    EXPECT_TRUE(seen.empty());
    cond.unlock();  // handed to a
    EXPECT_THROW(a.get(), cancelled_error);
    EXPECT_EQ(seen, std::vector<std::string>{"cancelled with the lock"});
    EXPECT_FALSE(cond.locked());
}

TEST_F(Condition, ACancelledTimedWaitStillReacquiresTheLock) {
    condition cond;
    bool held = false;
    auto a = spawn([&] {
        std::lock_guard g(cond);
        try {
            (void)cond.wait_for(1h);
        } catch (const cancelled_error&) {
            held = cond.locked();
            throw;
        }
    });
    yield_now();
    a.cancel();
    EXPECT_THROW(a.get(), cancelled_error);
    EXPECT_TRUE(held);
    EXPECT_FALSE(cond.locked());
}

TEST_F(Condition, AFiberKilledInAWaitDoesNotWaitForTheLockAndItsHolderKeepsIt) {
    condition cond;
    hub& h = hub::current();
    std::vector<std::string> seen;
    greenlet g(
        [&] {
            std::lock_guard guard(cond);
            try {
                cond.wait();
            } catch (const greenlet_exit&) {
                seen.push_back("killed");
                throw;
            }
        },
        h.loop_greenlet());
    h.call_soon([&] { (void)g.switch_to(); });  // starts it from the hub; it parks in wait()
    yield_now();
    EXPECT_EQ(cond.waiting(), 1u);
    cond.lock();     // the lock is held by main when g is killed
    g = greenlet();  // the last handle: greenlet_exit unwinds g through its wait
    EXPECT_EQ(seen, std::vector<std::string>{"killed"});
    EXPECT_EQ(cond.waiting(), 0u);
    EXPECT_TRUE(cond.locked());  // g's guard did not release main's hold
    cond.unlock();
    EXPECT_FALSE(cond.locked());
    EXPECT_THROW(cond.unlock(), greenfiber::error);
}

TEST_F(Condition, AThreadExitsWhileATaskWaitsAndAnotherHoldsTheLock) {
    // At thread exit the hub cancels its tasks and joins them (bounded), then kills what is
    // left; neither path may hang the thread's exit.
    std::vector<std::string> seen;
    std::thread([&] {
        static thread_local condition cond;
        static thread_local event go;
        auto holder = spawn([&] {
            go.wait();
            std::lock_guard g(cond);
            try {
                sleep(1h);
            } catch (const cancelled_error&) {
                seen.push_back("holder ended");
                throw;
            } catch (const greenlet_exit&) {
                seen.push_back("holder ended");
                throw;
            }
        });
        yield_now();
        auto waiter = spawn([&] {
            std::lock_guard g(cond);
            try {
                cond.wait();
            } catch (const cancelled_error&) {
                seen.push_back("waiter ended");
                throw;
            } catch (const greenlet_exit&) {
                seen.push_back("waiter ended");
                throw;
            }
        });
        yield_now();
        go.set();
        yield_now();
        EXPECT_TRUE(cond.locked());
    }).join();
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, (std::vector<std::string>{"holder ended", "waiter ended"}));
}

TEST_F(Condition, ProducersAndConsumersLoseNoNotificationUnderRandomCancellation) {
    condition cond;
    std::vector<int> items;
    std::minstd_rand rng(99);
    int consumed = 0;
    std::vector<task<void>> consumers;
    for (int i = 0; i < 30; ++i) {
        consumers.push_back(spawn([&] {
            for (;;) {
                std::lock_guard g(cond);
                cond.wait_for([&] { return !items.empty(); });
                const int v = items.back();
                items.pop_back();
                if (v < 0) return;  // a stop marker
                ++consumed;
            }
        }));
    }
    int produced = 0;
    for (int round = 0; round < 200; ++round) {
        {
            std::lock_guard g(cond);
            items.push_back(round);
            ++produced;
            cond.notify(1);
        }
        for (unsigned y = rng() % 3; y > 0; --y) yield_now();
        if (round % 17 == 0) (void)consumers[rng() % consumers.size()].cancel();
    }
    // Let the survivors drain, then stop them: one marker per live consumer.
    while (true) {
        yield_now();
        std::lock_guard g(cond);
        if (items.empty()) break;
    }
    std::size_t alive = 0;
    for (auto& t : consumers) alive += t.done() ? 0 : 1;
    {
        std::lock_guard g(cond);
        for (std::size_t i = 0; i < alive; ++i) items.push_back(-1);
        cond.notify_all();
    }
    const int cancelled = join_all(consumers);
    EXPECT_GT(cancelled, 0);
    EXPECT_EQ(consumed, produced);  // every item taken exactly once
    EXPECT_TRUE(items.empty());
    EXPECT_FALSE(cond.locked());
}

// ---------------------------------------------------------------- barrier

// cpython test_locks.BarrierTests: n parties, indices 0..n-1, repeated rounds.
TEST_F(Barrier, AllPartiesPassWithDistinctIndicesRoundAfterRound) {
    barrier b(3);
    EXPECT_EQ(b.parties(), 3u);
    std::vector<std::size_t> indices;
    std::vector<task<void>> ts;
    for (int i = 0; i < 3; ++i) {
        ts.push_back(spawn([&] {
            for (int round = 0; round < 2; ++round) indices.push_back(b.wait());
        }));
    }
    yield_now();
    EXPECT_EQ(b.n_waiting(), 0u);  // the third arrival released the first round
    EXPECT_EQ(join_all(ts), 0);
    ASSERT_EQ(indices.size(), 6u);
    std::multiset<std::size_t> seen(indices.begin(), indices.end());
    EXPECT_EQ(seen, (std::multiset<std::size_t>{0, 0, 1, 1, 2, 2}));
    EXPECT_FALSE(b.broken());
    EXPECT_EQ(b.n_waiting(), 0u);
}

TEST_F(Barrier, ArrivalIndicesFollowArrivalOrder) {
    barrier b(3);
    auto t1 = spawn([&] { return b.wait(); });
    auto t2 = spawn([&] { return b.wait(); });
    yield_now();
    EXPECT_EQ(b.n_waiting(), 2u);
    EXPECT_EQ(b.wait(), 2u);  // the last arrival does not suspend
    EXPECT_EQ(t1.get(), 0u);
    EXPECT_EQ(t2.get(), 1u);
}

TEST_F(Barrier, AbortBreaksItForWaitersAndArrivalsUntilReset) {
    barrier b(3);
    auto w = [&] {
        try {
            (void)b.wait();
            return std::string("passed");
        } catch (const broken_barrier_error& e) {
            return std::string(e.what());
        }
    };
    auto t1 = spawn(w);
    auto t2 = spawn(w);
    yield_now();
    b.abort();
    EXPECT_TRUE(b.broken());
    EXPECT_THAT(t1.get(), HasSubstr("Abort or reset of barrier"));
    EXPECT_THAT(t2.get(), HasSubstr("Abort or reset of barrier"));
    try {
        (void)b.wait();
        FAIL() << "wait() on a broken barrier returned";
    } catch (const broken_barrier_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("Barrier aborted"));
    }
    b.reset();
    EXPECT_FALSE(b.broken());
    auto t3 = spawn([&] { return b.wait(); });
    auto t4 = spawn([&] { return b.wait(); });
    yield_now();
    EXPECT_EQ(b.wait(), 2u);
    EXPECT_EQ(t3.get(), 0u);
    EXPECT_EQ(t4.get(), 1u);
}

TEST_F(Barrier, ResetWhileWaitingBreaksTheWaitersThenFillsAgain) {
    barrier b(2);
    auto t = spawn([&] {
        try {
            (void)b.wait();
            return std::string("passed");
        } catch (const broken_barrier_error& e) {
            return std::string(e.what());
        }
    });
    yield_now();
    EXPECT_EQ(b.n_waiting(), 1u);
    b.reset();
    EXPECT_THAT(t.get(), HasSubstr("Abort or reset of barrier"));
    EXPECT_FALSE(b.broken());
    auto u = spawn([&] { return b.wait(); });
    yield_now();
    EXPECT_EQ(b.wait(), 1u);
    EXPECT_EQ(u.get(), 0u);
}

TEST_F(Barrier, ZeroPartiesIsAnError) {
    try {
        barrier b(0);
        FAIL() << "barrier(0) was constructed";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("parties must be > 0"));
    }
}

TEST_F(Barrier, ACancelledWaiterJustLeavesWithoutBreakingIt) {
    barrier b(2);
    auto a = spawn([&] { return b.wait(); });
    yield_now();
    EXPECT_EQ(b.n_waiting(), 1u);
    a.cancel();
    EXPECT_THROW(a.get(), cancelled_error);
    EXPECT_EQ(b.n_waiting(), 0u);
    EXPECT_FALSE(b.broken());
    auto c = spawn([&] { return b.wait(); });
    yield_now();
    EXPECT_EQ(b.wait(), 1u);
    EXPECT_EQ(c.get(), 0u);
}

TEST_F(Barrier, CancelledAfterBeingReleasedTheOthersPassAndTheNextRoundFills) {
    barrier b(3);
    std::vector<std::string> seen;
    auto a = spawn([&] {
        try {
            (void)b.wait();
            seen.push_back("a passed");
        } catch (const cancelled_error&) {
            seen.push_back("a cancelled");
            throw;
        }
    });
    auto c = spawn([&] { seen.push_back("c passed " + std::to_string(b.wait())); });
    yield_now();
    EXPECT_EQ(b.wait(), 2u);  // releases a and c...
    a.cancel();               // ...a is cancelled before it runs
    // An arrival for the next round waits for the drain to finish.
    auto next = spawn([&] { return b.wait(); });
    EXPECT_THROW(a.get(), cancelled_error);
    c.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"a cancelled", "c passed 1"}));
    yield_now();
    EXPECT_EQ(b.n_waiting(), 1u);  // the next round, filling again
    auto other = spawn([&] { return b.wait(); });
    yield_now();
    EXPECT_EQ(b.wait(), 2u);
    EXPECT_EQ(next.get(), 0u);
    EXPECT_EQ(other.get(), 1u);
    EXPECT_FALSE(b.broken());
}

TEST_F(Barrier, ArrivalsDuringTheDrainWaitForTheNextRound) {
    barrier b(2);
    std::vector<std::string> order;
    auto first = spawn([&] { order.push_back("first " + std::to_string(b.wait())); });
    yield_now();
    EXPECT_EQ(b.wait(), 1u);  // releases `first`, which has not left yet: draining
    auto early = spawn([&] { order.push_back("early " + std::to_string(b.wait())); });
    auto late = spawn([&] { order.push_back("late " + std::to_string(b.wait())); });
    first.get();
    early.get();
    late.get();
    // `late` completes the round and returns at once; `early` runs after it.
    EXPECT_EQ(order, (std::vector<std::string>{"first 0", "late 1", "early 0"}));
}

}  // namespace
