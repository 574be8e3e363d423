#include "greenfiber/executor.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/future.hpp"
#include "greenfiber/hub.hpp"
#include "greenfiber/loop.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

namespace {

class Executor : public greenfiber::testing::io_checked {};

// Waits (from a fiber, letting the hub run) until `cond()` holds; fails after 10 s rather
// than hanging. Not a timing assertion: the bound only turns a bug into a failure.
template <class Cond>
bool eventually(Cond cond) {
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (!cond()) {
        if (std::chrono::steady_clock::now() > give_up) return false;
        sleep(1ms);
    }
    return true;
}

// Blocks a worker thread until `cond()` holds, bounded the same way.
template <class Cond>
bool eventually_on_thread(Cond cond) {
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (!cond()) {
        if (std::chrono::steady_clock::now() > give_up) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

TEST_F(Executor, ReturnsTheResultToTheWaitingFiberAndRunsTheJobOnAnotherThread) {
    thread_pool_executor pool(2);
    std::thread::id job_thread;
    const int r = run_in_executor(
        pool,
        [&job_thread](int a, std::string b) {
            job_thread = std::this_thread::get_id();
            std::this_thread::sleep_for(5ms);  // the hub would raise loop_exit if it had no work
            return a + static_cast<int>(b.size());
        },
        40, std::string("ab"));
    EXPECT_EQ(r, 42);
    EXPECT_NE(job_thread, std::this_thread::get_id());
}

TEST_F(Executor, RethrowsTheJobsException) {
    thread_pool_executor pool(1);
    try {
        run_in_executor(pool, []() -> int { throw std::runtime_error("job failed"); });
        FAIL() << "expected the job's exception";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "job failed");
    }
    // The pool is still usable.
    EXPECT_EQ(run_in_executor(pool, [] { return 7; }), 7);
}

TEST_F(Executor, MovesMoveOnlyArgumentsAndResultsAndReturnsReferences) {
    thread_pool_executor pool(1);
    auto p = run_in_executor(
        pool, [](std::unique_ptr<int> in) { return std::make_unique<int>(*in * 2); },
        std::make_unique<int>(21));
    ASSERT_TRUE(p);
    EXPECT_EQ(*p, 42);
    int target = 0;
    int& ref = run_in_executor(
        pool, [](int& t) -> int& { return t; }, std::ref(target));
    EXPECT_EQ(&ref, &target);
    run_in_executor(
        pool, [](int& t) { t = 5; }, std::ref(target));
    EXPECT_EQ(target, 5);
}

TEST_F(Executor, TasksWaitConcurrentlyAndAtMostThePoolSizeRunsAtOnce) {
    constexpr std::size_t pool_size = 3;
    constexpr int jobs = 12;
    thread_pool_executor pool(pool_size);
    std::atomic<int> now{0};
    std::atomic<int> most{0};
    std::atomic<bool> release{false};
    std::vector<task<int>> tasks;
    for (int i = 0; i < jobs; ++i) {
        tasks.push_back(spawn([&, i] {
            return run_in_executor(pool, [&, i] {
                const int n = now.fetch_add(1) + 1;
                int seen = most.load();
                while (n > seen && !most.compare_exchange_weak(seen, n)) {
                }
                (void)eventually_on_thread([&] { return release.load(); });
                now.fetch_sub(1);
                return i;
            });
        }));
    }
    // Every thread of the pool gets busy; the other jobs queue.
    ASSERT_TRUE(eventually([&] { return now.load() == static_cast<int>(pool_size); }));
    EXPECT_EQ(pool.running(), pool_size);
    EXPECT_EQ(pool.queued(), jobs - pool_size);
    EXPECT_EQ(pool.threads(), pool_size);
    release = true;
    for (int i = 0; i < jobs; ++i) EXPECT_EQ(tasks[i].get(), i);
    EXPECT_EQ(most.load(), static_cast<int>(pool_size));
}

TEST_F(Executor, OtherFibersKeepRunningWhileOneWaits) {
    thread_pool_executor pool(1);
    std::atomic<int> ticks{0};
    bool done = false;
    auto ticker = spawn([&] {
        while (!done) {
            ++ticks;
            sleep(1ms);
        }
    });
    // The job finishes only once the ticker, on the hub, has made progress.
    const bool saw_ticks =
        run_in_executor(pool, [&] { return eventually_on_thread([&] { return ticks >= 5; }); });
    done = true;
    ticker.get();
    EXPECT_TRUE(saw_ticks);
}

TEST_F(Executor, CancellingTheWaitingTaskRaisesAtOnceAndRequestsStop) {
    thread_pool_executor pool(1);
    // State the job uses after the task stopped waiting: shared, never on the fiber's stack.
    struct shared {
        std::atomic<bool> started{false};
        std::atomic<bool> saw_stop{false};
        std::atomic<bool> may_finish{false};
        std::atomic<bool> finished{false};
    };
    auto s = std::make_shared<shared>();
    auto t = spawn([s, &pool] {
        return run_in_executor(pool, [s](std::stop_token st) {
            s->started = true;
            s->saw_stop = eventually_on_thread([&] { return st.stop_requested(); });
            (void)eventually_on_thread([&] { return s->may_finish.load(); });
            s->finished = true;
            return 1;
        });
    });
    ASSERT_TRUE(eventually([&] { return s->started.load(); }));
    EXPECT_TRUE(t.cancel("enough"));
    // The task ends cancelled while the job is still running: it did not wait for the job.
    EXPECT_THROW(t.get(), cancelled_error);
    EXPECT_TRUE(t.cancelled());
    EXPECT_FALSE(s->finished.load());
    ASSERT_TRUE(eventually([&] { return s->saw_stop.load(); }));
    s->may_finish = true;
    pool.shutdown(10s);
    EXPECT_TRUE(s->finished.load());
}

TEST_F(Executor, AJobWhoseWaiterWasCancelledBeforeItStartedNeverRuns) {
    thread_pool_executor pool(1);
    std::latch release(1);
    std::atomic<bool> second_ran{false};
    auto first = spawn([&] { run_in_executor(pool, [&] { release.wait(); }); });
    auto second = spawn([&] { run_in_executor(pool, [&] { second_ran = true; }); });
    ASSERT_TRUE(eventually([&] { return pool.running() == 1 && pool.queued() == 1; }));
    second.cancel();
    EXPECT_THROW(second.get(), cancelled_error);
    release.count_down();
    first.get();
    pool.shutdown(10s);
    EXPECT_FALSE(second_ran.load());
}

TEST_F(Executor, AJobThatTakesNoStopTokenIsNotGivenOneAndAnUncancelledOneSeesNoStop) {
    thread_pool_executor pool(1);
    EXPECT_FALSE(run_in_executor(pool, [](std::stop_token st) { return st.stop_requested(); }));
    EXPECT_TRUE(run_in_executor(pool, [](std::stop_token st) { return st.stop_possible(); }));
    EXPECT_EQ(run_in_executor(
                  pool, [](int x) { return x + 1; }, 1),
              2);
}

TEST_F(Executor, AnAlreadyCancelledTaskSubmitsNothing) {
    thread_pool_executor pool(1);
    std::atomic<bool> ran{false};
    auto t = spawn([&] {
        try {
            sleep(1h);
        } catch (const cancelled_error&) {
            // Still cancelled (sticky): the job is never submitted.
            run_in_executor(pool, [&] { ran = true; });
        }
    });
    yield_now();
    t.cancel();
    EXPECT_THROW(t.get(), cancelled_error);
    pool.shutdown(10s);
    EXPECT_EQ(pool.threads(), 0u);
    EXPECT_FALSE(ran.load());
}

TEST_F(Executor, TheDefaultExecutorIsCreatedLazilyAndCanBeReplaced) {
    auto builtin = default_executor();
    ASSERT_TRUE(builtin);
    EXPECT_EQ(builtin, default_executor());
    auto* as_pool = dynamic_cast<thread_pool_executor*>(builtin.get());
    ASSERT_NE(as_pool, nullptr);
    EXPECT_GE(as_pool->max_threads(), 4u);
    EXPECT_LE(as_pool->max_threads(), 32u);

    // An executor that counts what it is given and hands it to a pool.
    struct counting : executor {
        thread_pool_executor pool{1};
        std::atomic<int> submitted{0};
        void submit(std::shared_ptr<executor_job> job) override {
            ++submitted;
            pool.submit(std::move(job));
        }
        void shutdown(std::chrono::steady_clock::duration d) override { pool.shutdown(d); }
    };
    auto mine = std::make_shared<counting>();
    auto previous = set_default_executor(mine);
    EXPECT_EQ(previous, builtin);
    EXPECT_EQ(to_thread([] { return 1; }), 1);
    EXPECT_EQ(run_in_executor([](int x) { return x; }, 2), 2);
    EXPECT_EQ(to_thread(job_options{"named"}, [] { return 3; }), 3);
    EXPECT_EQ(mine->submitted.load(), 3);

    // Null brings back a built-in one, created afresh.
    EXPECT_EQ(set_default_executor(nullptr), mine);
    auto fresh = default_executor();
    EXPECT_NE(fresh, mine);
    EXPECT_EQ(to_thread([] { return 4; }), 4);
    EXPECT_EQ(mine->submitted.load(), 3);

    // shutdown_default_executor() shuts it down and forgets it.
    shutdown_default_executor(10s);
    EXPECT_THROW(run_in_executor(*fresh, [] {}), executor_shutdown_error);
    EXPECT_NE(default_executor(), fresh);
    (void)set_default_executor(previous);
}

TEST_F(Executor, ShutdownIsBoundedAndNamesTheJobStillRunning) {
    auto pool = std::make_unique<thread_pool_executor>(2);
    std::latch release(1);
    std::atomic<bool> started{false};
    auto t = spawn([&] {
        return run_in_executor(*pool, job_options{"stuck-job"}, [&] {
            started = true;
            release.wait();
            return 5;
        });
    });
    ASSERT_TRUE(eventually([&] { return started.load(); }));
    try {
        pool->shutdown(20ms);
        FAIL() << "expected shutdown_timeout_error";
    } catch (const shutdown_timeout_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("'stuck-job'"));
        EXPECT_THAT(e.what(), HasSubstr("still running"));
        EXPECT_THAT(e.running_jobs(), ElementsAre("stuck-job"));
    }
    // Shut down: nothing new is accepted.
    EXPECT_THROW(run_in_executor(*pool, [] {}), executor_shutdown_error);
    release.count_down();
    EXPECT_EQ(t.get(), 5);  // the running job finished normally
    pool->shutdown(10s);    // now it completes
    EXPECT_EQ(pool->threads(), 0u);
    pool.reset();
}

struct blocking_functor {
    std::latch* release;
    void operator()() const { release->wait(); }
};

TEST_F(Executor, AnUnnamedJobIsNamedAfterItsFunctionsType) {
    thread_pool_executor pool(1);
    std::latch release(1);
    auto t = spawn([&] { run_in_executor(pool, blocking_functor{&release}); });
    ASSERT_TRUE(eventually([&] { return pool.running() == 1; }));
    try {
        pool.shutdown(10ms);
        FAIL() << "expected shutdown_timeout_error";
    } catch (const shutdown_timeout_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("blocking_functor"));
    }
    release.count_down();
    t.get();
}

TEST_F(Executor, AQueuedJobIsCancelledByShutdownAndItsFiberIsTold) {
    thread_pool_executor pool(1);
    std::latch release(1);
    std::atomic<bool> queued_ran{false};
    auto running =
        spawn([&] { run_in_executor(pool, job_options{"running"}, [&] { release.wait(); }); });
    auto queued =
        spawn([&] { run_in_executor(pool, job_options{"queued"}, [&] { queued_ran = true; }); });
    ASSERT_TRUE(eventually([&] { return pool.running() == 1 && pool.queued() == 1; }));
    EXPECT_THROW(pool.shutdown(10ms), shutdown_timeout_error);
    try {
        queued.get();
        FAIL() << "expected executor_shutdown_error";
    } catch (const executor_shutdown_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("'queued'"));
    }
    release.count_down();
    running.get();
    pool.shutdown(10s);
    EXPECT_FALSE(queued_ran.load());
}

TEST_F(Executor, WaitingOnTheHubItselfIsRefused) {
    thread_pool_executor pool(1);
    std::vector<std::string> reports;
    auto previous = set_report_handler([&](const failure_report& r) {
        try {
            std::rethrow_exception(r.error);
        } catch (const std::exception& e) {
            reports.emplace_back(e.what());
        }
    });
    hub::current().call_soon([&] { run_in_executor(pool, [] {}); });
    yield_now();
    set_report_handler(std::move(previous));
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_THAT(reports[0], HasSubstr("on the hub itself"));
    EXPECT_EQ(pool.queued() + pool.running(), 0u);
}

TEST_F(Executor, WorksFromTheHubOfAnotherThread) {
    thread_pool_executor pool(2);
    int result = 0;
    std::thread other([&] {
        // This thread's main greenlet waits on its own hub.
        result = run_in_executor(pool, [] { return 9; });
        auto t = spawn([&] { return run_in_executor(pool, [] { return 10; }); });
        result += t.get();
    });
    other.join();
    EXPECT_EQ(result, 19);
}

TEST_F(Executor, AHubThatGoesAwayWhileItsFiberWaitsDoesNotReceiveTheResult) {
    thread_pool_executor pool(1);
    std::latch release(1);
    std::atomic<bool> started{false};
    std::atomic<bool> finished{false};
    std::thread other([&] {
        // A task left waiting when its thread ends: the hub kills it, and the job, still
        // running, must not post to the dead hub.
        auto t = spawn([&] {
            run_in_executor(pool, [&] {
                started = true;
                release.wait();
                finished = true;
            });
        });
        yield_now();
        EXPECT_TRUE(eventually_on_thread([&] { return started.load(); }));
    });
    other.join();
    release.count_down();
    pool.shutdown(10s);
    EXPECT_TRUE(finished.load());
}

// A capture bound to the hub: a promise, whose breaking wakes fibers of this hub, and a
// record of the thread it is destroyed on.
struct probe {
    promise<int> p;
    std::shared_ptr<std::atomic<std::thread::id>> where;
    probe(promise<int> pr, std::shared_ptr<std::atomic<std::thread::id>> w)
        : p(std::move(pr)), where(std::move(w)) {}
    probe(probe&&) = default;
    ~probe() {
        if (where) *where = std::this_thread::get_id();
    }
};

TEST_F(Executor, TheCapturesOfAJobWhoseWaiterWasCancelledAreDestroyedOnItsHub) {
    thread_pool_executor pool(1);
    const auto hub_thread = std::this_thread::get_id();
    auto where = std::make_shared<std::atomic<std::thread::id>>();
    auto started = std::make_shared<std::atomic<bool>>(false);
    auto may_finish = std::make_shared<std::atomic<bool>>(false);
    promise<int> p;
    future<int> f = p.get_future();
    auto reader = spawn([&f] {
        // Bounded: a wake-up lost to the sleeping reactor ends it as a failure, not a hang.
        if (!f.wait_for(10s)) return std::string("not woken");
        return std::string(f.has_exception() ? "broken" : "a value");
    });
    auto waiter = spawn([&pool, &p, where, started, may_finish] {
        run_in_executor(pool, [pr = probe(std::move(p), where), started, may_finish]() {
            *started = true;
            (void)eventually_on_thread([&] { return may_finish->load(); });
        });
    });
    ASSERT_TRUE(eventually([&] { return started->load(); }));
    waiter.cancel();
    EXPECT_THROW(waiter.get(), cancelled_error);
    EXPECT_FALSE(reader.done());
    *may_finish = true;
    // The reader is woken by the promise broken when the job's captures go, on this hub.
    EXPECT_EQ(reader.get(), "broken");
    EXPECT_EQ(where->load(), hub_thread);
    pool.shutdown(10s);
}

TEST_F(Executor, TheResultOfAJobIsDestroyedOnItsHubToo) {
    // The result outlives the job's run: when nobody takes it (the waiter was cancelled),
    // it is destroyed on the hub as well, and a promise in it is broken there.
    thread_pool_executor pool(1);
    const auto hub_thread = std::this_thread::get_id();
    auto may_finish = std::make_shared<std::atomic<bool>>(false);
    auto started = std::make_shared<std::atomic<bool>>(false);
    auto where = std::make_shared<std::atomic<std::thread::id>>();
    promise<int> p;
    future<int> f = p.get_future();
    auto reader = spawn([&f] { return f.wait_for(10s) && f.has_exception(); });
    auto waiter = spawn([&pool, &p, started, may_finish, where] {
        (void)run_in_executor(pool, [pr = std::move(p), started, may_finish, where]() mutable {
            *started = true;
            (void)eventually_on_thread([&] { return may_finish->load(); });
            return probe(std::move(pr), where);
        });
    });
    ASSERT_TRUE(eventually([&] { return started->load(); }));
    waiter.cancel();
    EXPECT_THROW(waiter.get(), cancelled_error);
    *may_finish = true;
    EXPECT_TRUE(reader.get());
    EXPECT_EQ(where->load(), hub_thread);
    pool.shutdown(10s);
}

TEST_F(Executor, ShutdownAcceptsAnyDurationAndSaturates) {
    thread_pool_executor pool(1);
    EXPECT_EQ(run_in_executor(pool, [] { return 3; }), 3);
    pool.shutdown(std::chrono::hours::max());  // nothing runs: returns at once, no overflow
    thread_pool_executor other(1);
    other.shutdown(std::chrono::duration<double>(1e300));
}

// ---- the default executor belongs to a hub --------------------------------------------------

TEST_F(Executor, EachHubHasItsOwnDefaultExecutor) {
    std::shared_ptr<executor> mine = default_executor();
    std::shared_ptr<executor> theirs;
    std::thread([&] { theirs = default_executor(); }).join();
    ASSERT_NE(theirs, nullptr);
    EXPECT_NE(mine, theirs);
    EXPECT_EQ(default_executor(), mine);
}

// Thread B's jobs: one running (it waits until thread A's run() has ended) and one queued
// behind it on B's one-thread default pool. Thread A's run() ends meanwhile and shuts its
// default executor down: that must be A's alone. With one default per process, A's run()
// either discarded B's queued job or queued its own job behind B's and waited for it.
TEST_F(Executor, OneThreadsRunEndingLeavesAnotherThreadsJobsAlone) {
    std::atomic<bool> a_finished{false};
    std::latch b_started(1);
    bool saw_a_finish = false;
    int queued_result = 0;
    std::string b_error;
    std::thread b([&] {
        try {
            run([&] {
                (void)set_default_executor(std::make_shared<thread_pool_executor>(1));
                auto running = spawn([&] {
                    return to_thread([&] {
                        b_started.count_down();
                        return eventually_on_thread([&] { return a_finished.load(); });
                    });
                });
                auto queued = spawn([] { return to_thread([] { return 2; }); });
                saw_a_finish = running.get();
                queued_result = queued.get();
            });
        } catch (const std::exception& e) {
            b_error = e.what();
        }
    });
    std::string a_error;
    std::thread a([&] {
        b_started.wait();
        try {
            run([] { EXPECT_EQ(to_thread([] { return 1; }), 1); });
        } catch (const std::exception& e) {
            a_error = e.what();
        }
        a_finished = true;
    });
    a.join();
    b.join();
    EXPECT_EQ(a_error, "");
    EXPECT_EQ(b_error, "");
    EXPECT_TRUE(saw_a_finish) << "thread B's job waited for thread A's run() in vain";
    EXPECT_EQ(queued_result, 2);
}

TEST_F(Executor, AHubShutsItsDefaultExecutorDownAsItGoesAway) {
    std::shared_ptr<executor> theirs;
    std::thread([&] {
        theirs = default_executor();
        auto t = spawn([] { return to_thread([] { return 3; }); });
        EXPECT_EQ(t.get(), 3);
    }).join();
    ASSERT_NE(theirs, nullptr);
    EXPECT_THROW((void)run_in_executor(*theirs, [] { return 4; }), executor_shutdown_error);
}

TEST_F(Executor, AJobHoldsItsHubWhileItRunsAndLetsGoAfter) {
    hub& h = hub::current();
    EXPECT_EQ(h.handles(), 0u);
    thread_pool_executor pool(1);
    const std::size_t during = run_in_executor(pool, [&h] { return h.handles(); });
    EXPECT_EQ(during, 1u);
    EXPECT_EQ(h.handles(), 0u);
    // Cancelled while its job runs: the hold goes with the wait.
    std::atomic<bool> release{false};
    auto t = spawn([&] {
        return run_in_executor(
            pool, [&] { return eventually_on_thread([&] { return release.load(); }); });
    });
    yield_now();
    t.cancel();
    EXPECT_THROW(t.get(), cancelled_error);
    EXPECT_EQ(h.handles(), 0u);
    release = true;
    pool.shutdown(10s);
}

}  // namespace
