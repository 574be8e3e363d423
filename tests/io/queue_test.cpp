#include "greenfiber/queue.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "greenfiber/loop.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

using clock_type = std::chrono::steady_clock;

class Queue : public greenfiber::testing::io_checked {};
class QueueShutdown : public greenfiber::testing::io_checked {};
class QueueCancel : public greenfiber::testing::io_checked {};

static_assert(std::is_base_of_v<greenfiber::error, queue_full>);
static_assert(std::is_base_of_v<greenfiber::error, queue_empty>);
static_assert(std::is_base_of_v<greenfiber::error, queue_shutdown>);

template <class Q>
std::vector<int> drain(Q& q) {
    std::vector<int> out;
    while (!q.empty()) out.push_back(q.get_nowait());
    return out;
}

// ---------------------------------------------------------------- basics

// cpython test_queues: test_order for the three kinds.
TEST_F(Queue, FifoLifoAndPriorityOrderAsAsyncio) {
    queue<int> fifo;
    lifo_queue<int> lifo;
    priority_queue<int> prio;
    for (int i : {1, 3, 2}) {
        fifo.put_nowait(i);
        lifo.put_nowait(i);
        prio.put_nowait(i);
    }
    EXPECT_EQ(drain(fifo), (std::vector<int>{1, 3, 2}));
    EXPECT_EQ(drain(lifo), (std::vector<int>{2, 3, 1}));
    EXPECT_EQ(drain(prio), (std::vector<int>{1, 2, 3}));
}

TEST_F(Queue, PriorityQueueTakesACompareWhereTrueMeansFirst) {
    priority_queue<int, std::greater<int>> largest_first;
    for (int i : {5, 1, 9, 3}) largest_first.put(i);
    EXPECT_EQ(drain(largest_first), (std::vector<int>{9, 5, 3, 1}));
    // asyncio's (priority, data) tuples.
    priority_queue<std::pair<int, std::string>> jobs;
    jobs.put({2, "write"});
    jobs.put({1, "read"});
    jobs.put({3, "close"});
    EXPECT_EQ(jobs.get().second, "read");
    EXPECT_EQ(jobs.get().second, "write");
    EXPECT_EQ(jobs.get().second, "close");
}

// cpython test_queues.QueueBasicTests.test_maxsize.
TEST_F(Queue, ABoundedQueueBlocksThePutterAsAsyncio) {
    queue<int> q(2);
    EXPECT_EQ(q.maxsize(), 2u);
    std::vector<int> have_been_put;
    auto t = spawn([&] {
        for (int i = 0; i < 3; ++i) {
            q.put(i);
            have_been_put.push_back(i);
        }
        return true;
    });
    for (int i = 0; i < 2; ++i) yield_now();
    EXPECT_EQ(have_been_put, (std::vector<int>{0, 1}));  // blocked after two
    EXPECT_TRUE(q.full());
    EXPECT_EQ(q.get(), 0);
    yield_now();
    EXPECT_EQ(have_been_put, (std::vector<int>{0, 1, 2}));
    EXPECT_EQ(q.get_nowait(), 1);
    EXPECT_EQ(q.get_nowait(), 2);
    EXPECT_TRUE(t.done());
    EXPECT_TRUE(t.get());
}

TEST_F(Queue, SizeFullAndEmpty) {
    queue<int> q(2);
    EXPECT_TRUE(q.empty());
    EXPECT_FALSE(q.full());
    EXPECT_EQ(q.qsize(), 0u);
    q.put_nowait(1);
    EXPECT_FALSE(q.empty());
    EXPECT_FALSE(q.full());
    q.put_nowait(2);
    EXPECT_TRUE(q.full());
    EXPECT_EQ(q.qsize(), 2u);
    queue<int> unbounded;
    for (int i = 0; i < 1000; ++i) unbounded.put_nowait(i);
    EXPECT_FALSE(unbounded.full());
    EXPECT_EQ(unbounded.qsize(), 1000u);
    EXPECT_EQ(drain(q), (std::vector<int>{1, 2}));
    EXPECT_EQ(drain(unbounded).size(), 1000u);
}

TEST_F(Queue, NowaitOnAFullOrEmptyQueueThrows) {
    queue<int> q(1);
    try {
        (void)q.get_nowait();
        FAIL() << "get_nowait() on an empty queue returned";
    } catch (const queue_empty& e) {
        EXPECT_THAT(e.what(), HasSubstr("empty"));
    }
    q.put_nowait(1);
    try {
        q.put_nowait(2);
        FAIL() << "put_nowait() on a full queue returned";
    } catch (const queue_full& e) {
        EXPECT_THAT(e.what(), HasSubstr("full"));
    }
    EXPECT_EQ(q.get_nowait(), 1);
}

// cpython test_queues: test_blocking_get / test_get_with_putters.
TEST_F(Queue, AWaitingGetterReceivesTheNextPut) {
    queue<int> q(1);
    auto getter = spawn([&] { return q.get(); });
    yield_now();
    EXPECT_FALSE(getter.done());
    q.put_nowait(7);
    EXPECT_EQ(getter.get(), 7);

    q.put_nowait(1);
    auto putter = spawn([&] { q.put(2); });
    yield_now();
    EXPECT_FALSE(putter.done());
    EXPECT_EQ(q.get(), 1);
    putter.get();
    EXPECT_EQ(q.get_nowait(), 2);
}

TEST_F(Queue, GettersAndPuttersAreServedInFifoOrder) {
    queue<int> q(1);
    std::vector<std::string> got;
    auto g = [&](std::string name) { got.push_back(name + "=" + std::to_string(q.get())); };
    auto g1 = spawn(g, std::string("g1"));
    auto g2 = spawn(g, std::string("g2"));
    auto g3 = spawn(g, std::string("g3"));
    yield_now();
    for (int i = 1; i <= 3; ++i) q.put(i);
    g1.get();
    g2.get();
    g3.get();
    EXPECT_EQ(got, (std::vector<std::string>{"g1=1", "g2=2", "g3=3"}));

    q.put(0);  // full
    std::vector<task<void>> putters;
    for (int i = 1; i <= 3; ++i) putters.push_back(spawn([&q, i] { q.put(i); }));
    yield_now();
    std::vector<int> order;
    for (int i = 0; i < 4; ++i) order.push_back(q.get());
    for (auto& p : putters) p.get();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
}

TEST_F(Queue, AnItemPromisedToAWaiterCannotBeTakenByALaterGet) {
    queue<int> q;
    auto waiter = spawn([&] { return q.get(); });
    yield_now();
    q.put(1);  // promised to `waiter`, which has not run yet
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.qsize(), 0u);
    EXPECT_THROW((void)q.get_nowait(), queue_empty);
    EXPECT_EQ(waiter.get(), 1);
}

TEST_F(Queue, TimeoutsReturnNulloptOrFalseAndSucceedBeforeTheDeadline) {
    queue<int> q(1);
    auto empty_get = spawn([&] { return q.get_for(3ms); });
    EXPECT_EQ(empty_get.get(), std::nullopt);
    EXPECT_EQ(q.get_until(clock_type::now() - 1s), std::nullopt);  // passed: no wait
    q.put(1);
    auto full_put = spawn([&] { return q.put_for(2, 3ms); });
    EXPECT_FALSE(full_put.get());
    EXPECT_FALSE(q.put_until(3, clock_type::now() - 1s));
    EXPECT_EQ(q.get_until(clock_type::now() + 1h), 1);
    auto later_get = spawn([&] { return q.get_until(clock_type::now() + 1h); });
    auto later_put = spawn([&] { return q.put_until(5, clock_type::now() + 1h); });
    EXPECT_EQ(later_get.get(), 5);
    EXPECT_TRUE(later_put.get());
    EXPECT_TRUE(q.empty());
}

TEST_F(Queue, MoveOnlyItemsWorkAndAFailedPutLeavesTheItemWithTheCaller) {
    queue<std::unique_ptr<int>> q(1);
    q.put(std::make_unique<int>(1));
    auto item = std::make_unique<int>(2);
    EXPECT_THROW(q.put_nowait(std::move(item)), queue_full);
    ASSERT_NE(item, nullptr);  // not consumed
    auto t = spawn([&] { return q.put_for(std::move(item), 2ms); });
    EXPECT_FALSE(t.get());
    ASSERT_NE(item, nullptr);  // not consumed by the timed-out put either
    EXPECT_EQ(*q.get(), 1);
    EXPECT_TRUE(q.put_for(std::move(item), 1h));
    EXPECT_EQ(item, nullptr);
    auto got = q.get_until(clock_type::now() + 1h);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(**got, 2);
    lifo_queue<std::unique_ptr<int>> lifo;
    lifo.put(std::make_unique<int>(3));
    EXPECT_EQ(*lifo.get_nowait(), 3);
    priority_queue<std::unique_ptr<int>,
                   std::function<bool(const std::unique_ptr<int>&, const std::unique_ptr<int>&)>>
        prio(0, [](const auto& a, const auto& b) { return *a < *b; });
    prio.put(std::make_unique<int>(9));
    prio.put(std::make_unique<int>(4));
    EXPECT_EQ(*prio.get(), 4);
    EXPECT_EQ(*prio.get(), 9);
}

TEST_F(Queue, CopyablePutsCopy) {
    queue<std::string> q;
    const std::string s = "kept";
    q.put(s);
    q.put_nowait(s);
    EXPECT_TRUE(q.put_until(s, clock_type::now() + 1h));
    EXPECT_EQ(s, "kept");
    EXPECT_EQ(q.qsize(), 3u);
    while (!q.empty()) EXPECT_EQ(q.get(), "kept");
}

// ---------------------------------------------------------------- task_done / join

TEST_F(Queue, TaskDoneTooManyTimesThrows) {
    queue<int> q;
    try {
        q.task_done();
        FAIL() << "task_done() on a fresh queue returned";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("task_done() called too many times"));
    }
    q.put(1);
    EXPECT_EQ(q.unfinished_tasks(), 1u);
    (void)q.get();
    q.task_done();
    EXPECT_THROW(q.task_done(), greenfiber::error);
}

TEST_F(Queue, JoinOnAQueueWithNothingPendingReturnsAtOnce) {
    queue<int> q;
    q.join();
    EXPECT_TRUE(q.join_for(0ms));
}

// cpython test_queues: test_task_done.
TEST_F(Queue, JoinReturnsWhenEveryItemIsDoneAsAsyncio) {
    queue<int> q;
    for (int i = 0; i < 100; ++i) q.put_nowait(i);
    int accumulator = 0;
    bool running = true;
    std::vector<task<void>> workers;
    for (int w = 0; w < 2; ++w) {
        workers.push_back(spawn([&] {
            while (running) {
                accumulator += q.get();
                q.task_done();
            }
        }));
    }
    q.join();
    EXPECT_EQ(accumulator, 99 * 100 / 2);
    running = false;
    for (std::size_t i = 0; i < workers.size(); ++i) q.put_nowait(0);
    for (auto& w : workers) w.get();
}

TEST_F(Queue, JoinUntilTimesOutWhileItemsArePending) {
    queue<int> q;
    q.put(1);
    EXPECT_FALSE(q.join_for(2ms));
    (void)q.get();
    q.task_done();
    EXPECT_TRUE(q.join_for(1h));
}

// ---------------------------------------------------------------- shutdown (3.13)

// cpython test_queues: test_shutdown_empty.
TEST_F(QueueShutdown, EmptyQueueAsAsyncio) {
    queue<std::string> q;
    auto get_task = spawn([&] { return q.get(); });
    yield_now();
    q.shutdown();
    EXPECT_TRUE(q.is_shutdown());
    EXPECT_EQ(q.qsize(), 0u);
    q.join();
    yield_now();
    EXPECT_TRUE(get_task.done());
    EXPECT_THROW(get_task.get(), queue_shutdown);
    EXPECT_THROW(q.put("data"), queue_shutdown);
    EXPECT_THROW(q.put_nowait("data"), queue_shutdown);
    EXPECT_THROW((void)q.get(), queue_shutdown);
    try {
        (void)q.get_nowait();
        FAIL() << "get_nowait() after shutdown returned";
    } catch (const queue_shutdown& e) {
        EXPECT_THAT(e.what(), HasSubstr("shut down"));
    }
}

// cpython test_queues: test_shutdown_nonempty.
TEST_F(QueueShutdown, NonEmptyQueueAsAsyncio) {
    queue<std::string> q(1);
    q.put_nowait("data");
    auto join_task = spawn([&] { q.join(); });
    auto put_task = spawn([&] { q.put("data2"); });
    yield_now();
    EXPECT_FALSE(put_task.done());
    q.shutdown();
    EXPECT_EQ(q.qsize(), 1u);
    yield_now();
    EXPECT_TRUE(put_task.done());
    EXPECT_THROW(put_task.get(), queue_shutdown);
    EXPECT_EQ(q.get(), "data");  // the remaining item is still delivered
    yield_now();
    EXPECT_FALSE(join_task.done());
    EXPECT_THROW(q.put("data"), queue_shutdown);
    EXPECT_THROW(q.put_nowait("data"), queue_shutdown);
    EXPECT_THROW((void)q.get(), queue_shutdown);
    EXPECT_THROW((void)q.get_nowait(), queue_shutdown);
    q.task_done();
    yield_now();
    EXPECT_TRUE(join_task.done());
    join_task.get();
    EXPECT_THROW(q.task_done(), greenfiber::error);
}

// cpython test_queues: test_shutdown_immediate.
TEST_F(QueueShutdown, ImmediateDropsTheItemsAndReleasesJoinAsAsyncio) {
    queue<std::string> q;
    q.put_nowait("data");
    auto join_task = spawn([&] { q.join(); });
    q.shutdown(true);
    EXPECT_EQ(q.qsize(), 0u);
    yield_now();
    EXPECT_TRUE(join_task.done());
    join_task.get();
    EXPECT_THROW(q.put("data"), queue_shutdown);
    EXPECT_THROW((void)q.get(), queue_shutdown);
    EXPECT_THROW(q.task_done(), greenfiber::error);
}

// cpython test_queues: test_shutdown_immediate_with_unfinished.
TEST_F(QueueShutdown, ImmediateWithUnfinishedTasksAsAsyncio) {
    queue<std::string> q;
    q.put_nowait("data");
    q.put_nowait("data");
    auto join_task = spawn([&] { q.join(); });
    EXPECT_EQ(q.get(), "data");
    q.shutdown(true);  // unfinished: 2 -> 1
    EXPECT_EQ(q.qsize(), 0u);
    yield_now();
    EXPECT_FALSE(join_task.done());
    EXPECT_THROW(q.put("data"), queue_shutdown);
    EXPECT_THROW((void)q.get_nowait(), queue_shutdown);
    q.task_done();
    EXPECT_THROW(q.task_done(), greenfiber::error);
    yield_now();
    EXPECT_TRUE(join_task.done());
    join_task.get();
}

TEST_F(QueueShutdown, WaitingGettersAndPuttersAllRaise) {
    queue<int> full(1);
    full.put(0);
    queue<int> empty;
    std::vector<task<void>> ts;
    for (int i = 0; i < 3; ++i) ts.push_back(spawn([&] { full.put(1); }));
    for (int i = 0; i < 3; ++i) ts.push_back(spawn([&] { (void)empty.get(); }));
    yield_now();
    full.shutdown();
    empty.shutdown();
    int raised = 0;
    for (auto& t : ts) {
        try {
            t.get();
        } catch (const queue_shutdown&) {
            ++raised;
        }
    }
    EXPECT_EQ(raised, 6);
    EXPECT_EQ(full.get(), 0);
}

TEST_F(QueueShutdown, AGetterPromisedAnItemStillGetsItUnlessTheShutdownIsImmediate) {
    queue<int> q;
    auto kept = spawn([&] { return q.get(); });
    yield_now();
    q.put(1);      // promised to `kept`
    q.shutdown();  // not immediate: the promise stands
    EXPECT_EQ(kept.get(), 1);

    queue<int> r;
    auto dropped = spawn([&] { return r.get(); });
    yield_now();
    r.put(2);          // promised to `dropped`
    r.shutdown(true);  // immediate: dropped, and the getter learns it
    EXPECT_THROW(dropped.get(), queue_shutdown);
    EXPECT_EQ(r.qsize(), 0u);
    EXPECT_EQ(r.unfinished_tasks(), 0u);
}

TEST_F(QueueShutdown, APutterPromisedASlotRaisesAndItsItemIsNotQueued) {
    queue<std::unique_ptr<int>> q(1);
    q.put(std::make_unique<int>(1));
    auto item = std::make_unique<int>(2);
    auto putter = spawn([&] { q.put(std::move(item)); });
    yield_now();
    (void)q.get();  // a slot is promised to the putter...
    q.shutdown();   // ...and taken back
    EXPECT_THROW(putter.get(), queue_shutdown);
    EXPECT_NE(item, nullptr);  // still the caller's
    EXPECT_EQ(q.qsize(), 0u);
}

// ---------------------------------------------------------------- cancellation

// cpython test_queues: test_get_cancelled_race (python/asyncio#270).
TEST_F(QueueCancel, ACancelledGetterDoesNotSwallowTheNextItem) {
    queue<std::string> q;
    auto t1 = spawn([&] { return q.get(); });
    auto t2 = spawn([&] { return q.get(); });
    yield_now();
    t1.cancel();
    yield_now();
    EXPECT_TRUE(t1.done());
    q.put("a");
    yield_now();
    EXPECT_EQ(t2.get(), "a");
    EXPECT_THROW(t1.get(), cancelled_error);
}

TEST_F(QueueCancel, GetterCancelledAfterBeingPromisedAnItemPassesItToTheNextGetter) {
    queue<int> q;
    std::vector<std::string> seen;
    auto a = spawn([&] {
        try {
            seen.push_back("a got " + std::to_string(q.get()));
        } catch (const cancelled_error&) {
            seen.push_back("a cancelled");
            throw;
        }
    });
    auto b = spawn([&] { seen.push_back("b got " + std::to_string(q.get())); });
    yield_now();
    q.put(1);    // promised to a...
    a.cancel();  // ...cancelled before it runs
    EXPECT_THROW(a.get(), cancelled_error);
    b.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"a cancelled", "b got 1"}));
    EXPECT_TRUE(q.empty());
}

TEST_F(QueueCancel, GetterCancelledAfterBeingPromisedAnItemWithNobodyElseLeavesItQueued) {
    priority_queue<int> q;
    auto a = spawn([&] { return q.get(); });
    yield_now();
    q.put(5);
    EXPECT_EQ(q.qsize(), 0u);  // promised
    a.cancel();
    EXPECT_THROW(a.get(), cancelled_error);
    EXPECT_EQ(q.qsize(), 1u);  // back, not lost
    EXPECT_EQ(q.get_nowait(), 5);
}

TEST_F(QueueCancel, PutterCancelledAfterBeingPromisedASlotPassesItToTheNextPutter) {
    queue<std::unique_ptr<int>> q(1);
    q.put(std::make_unique<int>(0));
    auto item_a = std::make_unique<int>(1);
    auto a = spawn([&] { q.put(std::move(item_a)); });
    auto b = spawn([&] { q.put(std::make_unique<int>(2)); });
    yield_now();
    EXPECT_EQ(*q.get(), 0);  // the slot is promised to a...
    a.cancel();              // ...cancelled before it runs
    EXPECT_THROW(a.get(), cancelled_error);
    b.get();
    ASSERT_NE(item_a, nullptr);  // a's item was not queued: the caller still has it
    EXPECT_EQ(*item_a, 1);
    EXPECT_EQ(*q.get_nowait(), 2);
    EXPECT_TRUE(q.empty());
}

TEST_F(QueueCancel, PutterCancelledAfterBeingPromisedASlotWithNobodyElseFreesIt) {
    queue<int> q(1);
    q.put(0);
    auto a = spawn([&] { q.put(1); });
    yield_now();
    EXPECT_EQ(q.get(), 0);
    EXPECT_TRUE(q.full());  // the slot is promised to a
    a.cancel();
    EXPECT_THROW(a.get(), cancelled_error);
    EXPECT_FALSE(q.full());
    q.put_nowait(2);
    EXPECT_EQ(q.get_nowait(), 2);
}

TEST_F(QueueCancel, ATimedGetPromisedAnItemAsItTimesOutKeepsTheItem) {
    queue<int> q;
    const auto deadline = clock_type::now() + 2ms;
    auto getter = spawn([&] { return q.get_until(deadline); });
    yield_now();
    // Due just after the getter's timer: the timer wakes it, then the item is promised to
    // it before it runs.
    event_loop::current().call_at(deadline + 1ms, [&] { q.put_nowait(42); });
    std::this_thread::sleep_for(10ms);
    EXPECT_EQ(getter.get(), 42);
    EXPECT_TRUE(q.empty());
}

TEST_F(QueueCancel, ACancelledJoinJustLeaves) {
    queue<int> q;
    q.put(1);
    auto j = spawn([&] { q.join(); });
    yield_now();
    j.cancel();
    EXPECT_THROW(j.get(), cancelled_error);
    (void)q.get();
    q.task_done();
    q.join();
}

// ---------------------------------------------------------------- stress

TEST_F(Queue, ProducersAndConsumersDeliverEveryItemExactlyOnce) {
    queue<int> q(4);
    std::vector<int> got;
    std::vector<task<void>> ts;
    for (int p = 0; p < 10; ++p) {
        ts.push_back(spawn([&, p] {
            for (int i = 0; i < 50; ++i) {
                q.put(p * 1000 + i);
                if ((p + i) % 3 == 0) yield_now();
            }
        }));
    }
    for (int c = 0; c < 7; ++c) {
        ts.push_back(spawn([&, c] {
            for (;;) {
                const int v = q.get();
                q.task_done();
                if (v < 0) return;
                got.push_back(v);
                if ((v + c) % 4 == 0) yield_now();
            }
        }));
    }
    q.join();  // returns once all 500 are done... but producers may still run
    for (std::size_t i = 0; i < 10; ++i) ts[i].get();
    q.join();
    for (int c = 0; c < 7; ++c) q.put(-1);
    for (auto& t : ts) t.get();
    ASSERT_EQ(got.size(), 500u);
    std::sort(got.begin(), got.end());
    EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end());  // no duplicate
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.unfinished_tasks(), 0u);
}

TEST_F(Queue, RandomCancellationsNeitherLoseNorDuplicateItems) {
    for (unsigned seed : {1u, 2u, 3u, 4u}) {
        queue<int> q(3);
        std::minstd_rand rng(seed);
        std::vector<int> put_ok, got;
        std::vector<task<void>> producers, consumers;
        for (int p = 0; p < 8; ++p) {
            producers.push_back(spawn([&, p] {
                for (int i = 0; i < 30; ++i) {
                    const int v = p * 1000 + i;
                    q.put(v);
                    put_ok.push_back(v);
                }
            }));
        }
        for (int c = 0; c < 8; ++c) {
            consumers.push_back(spawn([&] {
                for (;;) got.push_back(q.get());
            }));
        }
        for (int round = 0; round < 200; ++round) {
            for (unsigned y = rng() % 3; y > 0; --y) yield_now();
            if (rng() % 2 == 0) {
                (void)producers[rng() % producers.size()].cancel();
            } else {
                (void)consumers[rng() % consumers.size()].cancel();
            }
        }
        for (auto& p : producers) {
            try {
                p.get();
            } catch (const cancelled_error&) {
            }
        }
        q.shutdown();  // the surviving consumers drain the rest, then stop
        for (auto& c : consumers) {
            try {
                c.get();
            } catch (const cancelled_error&) {
            } catch (const queue_shutdown&) {
            }
        }
        std::vector<int> left = drain(q);
        got.insert(got.end(), left.begin(), left.end());
        std::sort(got.begin(), got.end());
        std::sort(put_ok.begin(), put_ok.end());
        EXPECT_EQ(got, put_ok) << "seed " << seed;
    }
}

}  // namespace
