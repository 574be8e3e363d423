// task.hpp: a task's storage and the ends of its life: killed before it ran, dropped while
// parked, read long after it finished.

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/detail/debug.hpp"
#include "greenfiber/loop.hpp"
#include "greenfiber/stack.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

using namespace greenfiber;

namespace {

class TaskStack : public greenfiber::testing::io_checked {};

// kill() of a task that has not started ends it at once (cancelled, its function never
// runs) and takes its first run out of the hub's ready queue: a start record left queued
// would run a finished task's fiber again, or, once the last handle is gone, be popped from
// freed memory (ASan: heap-use-after-free in the hub's run_ready).
TEST_F(TaskStack, KillOfAPendingTaskTakesItsStartOutOfTheReadyQueue) {
    const std::size_t ready = hub::current().ready_count();
    int ran = 0;
    {
        auto t = spawn([&] { ++ran; });
        ASSERT_EQ(t.status(), task_status::pending);
        ASSERT_EQ(hub::current().ready_count(), ready + 1);
        t.state()->kill();
        EXPECT_TRUE(t.cancelled());
        EXPECT_EQ(hub::current().ready_count(), ready);
    }             // the last handle: the task is freed
    yield_now();  // the hub runs its ready queue
    yield_now();
    EXPECT_EQ(ran, 0);
}

// The same with a handle kept: the task stays cancelled, is not finished a second time by a
// stray first run, and its waiters see it done.
TEST_F(TaskStack, AKilledPendingTaskStaysCancelledAndNeverRuns) {
    int ran = 0;
    auto t = spawn([&] { ++ran; });
    auto waiter = spawn([&] {
        t.wait();
        return t.cancelled();
    });
    t.state()->kill();
    EXPECT_TRUE(waiter.get());
    yield_now();
    EXPECT_EQ(ran, 0);
    EXPECT_TRUE(t.cancelled());
    EXPECT_THROW(t.get(), cancelled_error);
}

// A finished task's result and exception are its own: however many tasks run, finish and
// scribble over the stacks given back meanwhile, they read back intact long after.
TEST_F(TaskStack, AFinishedTaskKeepsItsResultWhileOthersReuseTheStacks) {
    auto value = spawn([] { return std::string(300, 'v'); });
    auto failed = spawn([]() -> int { throw std::runtime_error("boom kept"); });
    value.wait();
    failed.wait();
    for (int i = 0; i < 100; ++i) {
        spawn([] {
            volatile char junk[8192];
            for (std::size_t k = 0; k < sizeof junk; ++k) junk[k] = char(0xA5);
        }).get();
    }
    EXPECT_EQ(value.get(), std::string(300, 'v'));
    EXPECT_EQ(value.result(), std::string(300, 'v'));
    try {
        (void)failed.get();
        ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "boom kept");
    }
}

// A task that never ran (killed while pending, or its thread's hub destroyed under it)
// holds no stack and leaves no greenlet behind; its function never runs.
TEST_F(TaskStack, ATaskDestroyedBeforeItRanLeavesNothingBehind) {
    const std::size_t in_use = stack_statistics().in_use;
    const std::size_t greenlets = live_greenlets();
    int ran = 0;
    {
        auto t = spawn([&] { ++ran; });
        EXPECT_EQ(stack_statistics().in_use, in_use);  // taken at its first run
        t.state()->kill();
    }
    EXPECT_EQ(stack_statistics().in_use, in_use);
    EXPECT_EQ(live_greenlets(), greenlets);
    std::thread other([&] {
        (void)event_loop::current();
        std::vector<task<void>> kept;
        for (int i = 0; i < 5; ++i) kept.push_back(spawn([&] { ++ran; }));
    });  // the hub goes with its thread, the tasks pending
    other.join();
    yield_now();
    EXPECT_EQ(ran, 0);
    EXPECT_EQ(stack_statistics().in_use, in_use);
    EXPECT_EQ(live_greenlets(), greenlets);
}

// Cancelled while parked, killed while parked, detached while parked: each unwinds its
// stack and gives it back when its fiber ends, handles kept or not.
TEST_F(TaskStack, ATaskCancelledKilledOrDroppedWhileParkedGivesItsStackBack) {
    const std::size_t in_use = stack_statistics().in_use;
    event never;
    event later;
    int unwound = 0;
    struct on_unwind {
        int& n;
        ~on_unwind() { ++n; }
    };
    auto cancelled = spawn([&] {
        on_unwind u{unwound};
        never.wait();
    });
    auto killed = spawn([&] {
        on_unwind u{unwound};
        never.wait();
    });
    {
        auto dropped = spawn([&] {
            on_unwind u{unwound};
            later.wait();
            return 5;
        });
    }  // detached: the hub keeps it running
    yield_now();
    ASSERT_TRUE(cancelled.parked());
    ASSERT_TRUE(killed.parked());
    EXPECT_EQ(stack_statistics().in_use, in_use + 3);
    cancelled.cancel("stop");
    killed.state()->kill();
    EXPECT_TRUE(killed.cancelled());
    EXPECT_THROW(cancelled.get(), cancelled_error);
    later.set();
    yield_now();
    yield_now();
    EXPECT_EQ(unwound, 3);
    EXPECT_EQ(stack_statistics().in_use, in_use);
}

// Two fibers on one task: both wait, one is cancelled while the task parks, the task is
// then cancelled while the other still waits; every stack comes back.
TEST_F(TaskStack, TwoWaitersOnOneTaskCancelledWhileItParks) {
    const std::size_t in_use = stack_statistics().in_use;
    event never;
    auto inner = spawn([&] {
        never.wait();
        return 1;
    });
    auto a = spawn([&] { return inner.share().wait(), 1; });
    auto b = spawn([&] {
        inner.share().wait();
        return inner.cancelled() ? 2 : 0;
    });
    yield_now();
    a.cancel();
    yield_now();
    inner.cancel();
    EXPECT_THROW(a.get(), cancelled_error);
    EXPECT_EQ(b.get(), 2);
    EXPECT_THROW(inner.get(), cancelled_error);
    EXPECT_EQ(stack_statistics().in_use, in_use);
}

// Many tasks, spawned, cancelled, joined and dropped in a random order (bounded, seeded):
// every joined task gives the result or error its function made, a cancelled one
// cancelled_error, and at the end every stack and greenlet is back.
TEST_F(TaskStack, RandomisedSpawnCancelJoinKeepsEveryResultAndGivesEveryStackBack) {
    const std::size_t in_use = stack_statistics().in_use;
    const std::size_t greenlets = live_greenlets();
    std::mt19937 rng(17);
    struct entry {
        task<long> t;
        std::shared_ptr<event> gate;
        long id;
        int kind;  // 0: returns id, 1: throws, 2: parks on its gate, then returns id
        bool cancel_asked = false;
    };
    std::vector<entry> live;
    long next = 0;
    long checked = 0;
    auto check = [&](entry& e) {
        e.gate->set();
        try {
            const long r = e.t.get();
            EXPECT_NE(e.kind, 1);
            EXPECT_EQ(r, e.id);
        } catch (const cancelled_error&) {
            EXPECT_TRUE(e.cancel_asked) << "task " << e.id << " cancelled unasked";
        } catch (const std::runtime_error& x) {
            EXPECT_EQ(e.kind, 1);
            EXPECT_EQ(std::string(x.what()), "fail " + std::to_string(e.id));
        }
        ++checked;
    };
    for (int step = 0; step < 3000; ++step) {
        const unsigned op = rng() % 10;
        if (op < 4 || live.empty()) {
            const long id = next++;
            const int kind = int(rng() % 3);
            auto gate = std::make_shared<event>();
            auto t = spawn([id, kind, gate]() -> long {
                if (kind == 1) throw std::runtime_error("fail " + std::to_string(id));
                if (kind == 2) gate->wait();
                return id;
            });
            live.push_back({std::move(t), std::move(gate), id, kind});
        } else {
            const std::size_t i = rng() % live.size();
            entry& e = live[i];
            if (op < 6) {
                e.cancel_asked |= e.t.cancel();
            } else if (op < 7) {
                e.gate->set();
            } else if (op < 8) {
                yield_now();
            } else {
                check(e);
                live[i] = std::move(live.back());
                live.pop_back();
            }
        }
    }
    for (entry& e : live) check(e);
    EXPECT_EQ(checked, next);
    live.clear();
    EXPECT_EQ(stack_statistics().in_use, in_use);
    EXPECT_EQ(live_greenlets(), greenlets);
}

// ---------------------------------------------------------------------------------------
// Tasks on small stacks (spawn_options::small_stack; the programs run with LD_BIND_NOW=1).

// Many tasks parked on one event, each on a small stack: all wake in order with what they
// kept on their stacks, and every stack goes back.
TEST_F(TaskStack, ThousandsOfSmallStackTasksParkOnAnEventAndFinish) {
    constexpr int n = 2000;
    const std::size_t base = stack_statistics().in_use;
    event go;
    std::vector<int> order;
    std::vector<task<int>> ts;
    for (int i = 0; i < n; ++i) {
        ts.push_back(spawn(spawn_options{.name = "small", .small_stack = 2048}, [&, i] {
            const int mine = i * 3;  // on the small stack while parked
            go.wait();
            order.push_back(i);
            return mine + 1;
        }));
    }
    yield_now();  // all park
    EXPECT_EQ(stack_statistics().in_use, base + n);
    go.set();
    for (int i = 0; i < n; ++i) EXPECT_EQ(ts[std::size_t(i)].get(), i * 3 + 1);
    ASSERT_EQ(order.size(), std::size_t(n));
    for (int i = 0; i < n; ++i) EXPECT_EQ(order[std::size_t(i)], i);
    ts.clear();
    EXPECT_EQ(stack_statistics().in_use, base);
}

// Cancellation and kill unwind on the small stack (about 2 KiB for the unwinder): at the
// largest small size a task parked in a wait, a sleep or a get() of another task is
// cancelled, killed or dropped, with its destructors run.
TEST_F(TaskStack, SmallStackTasksCancelledKilledOrDroppedWhileParkedUnwindCleanly) {
    const std::size_t base = stack_statistics().in_use;
    int destroyed = 0;
    struct counted {
        int* n;
        ~counted() { ++*n; }
    };
    const spawn_options small{.name = "small", .small_stack = small_stack_max()};
    event never;
    auto waiting = spawn(small, [&] {
        counted c{&destroyed};
        never.wait();
    });
    auto sleeping = spawn(small, [&] {
        counted c{&destroyed};
        sleep(std::chrono::hours(1));
    });
    auto getting = spawn(small, [&] {
        counted c{&destroyed};
        waiting.get();
    });
    auto killed = spawn(small, [&] {
        counted c{&destroyed};
        never.wait();
    });
    auto dropped = spawn(small, [&] {
        counted c{&destroyed};
        never.wait();
    });
    yield_now();
    sleeping.cancel("stop");
    getting.cancel();
    killed.state()->kill();
    EXPECT_THROW(sleeping.get(), cancelled_error);
    EXPECT_THROW(getting.get(), cancelled_error);
    EXPECT_TRUE(killed.cancelled());
    waiting.cancel();
    EXPECT_THROW(waiting.get(), cancelled_error);
    dropped.cancel();
    { auto gone = std::move(dropped); }
    yield_now();
    yield_now();
    EXPECT_EQ(destroyed, 5);
    EXPECT_EQ(stack_statistics().in_use, base);
}

// The last handle of a failed task dropped on a small stack: the "never retrieved" report
// (formatted and printed to stderr, several KiB of stack) runs on a stack of its own. The
// 1 280-byte stack is the first of its slab, nothing mapped below it.
TEST_F(TaskStack, AFailedTasksLastHandleDroppedOnASmallStackIsReportedFromASideStack) {
    auto failed = spawn(spawn_options{.name = "lost"}, [] { throw std::runtime_error("boom"); });
    yield_now();
    ASSERT_TRUE(failed.done());
    ::testing::internal::CaptureStderr();
    auto dropper = spawn(spawn_options{.name = "dropper", .small_stack = 1280},
                         [&] { auto last = std::move(failed); });
    dropper.get();
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("task 'lost'"), std::string::npos) << err;
    EXPECT_NE(err.find("never retrieved"), std::string::npos) << err;
}

// A task on a small stack that blocks the hub past the watchdog's threshold: the report is
// formatted and printed on a stack of its own. The 1 536-byte stack is the first of its
// slab, nothing mapped below it.
TEST_F(TaskStack, AWatchdogReportOfASmallStackTaskIsFormattedOnASideStack) {
    hub& h = hub::current();
    const auto threshold = h.watchdog();
    h.set_watchdog(std::chrono::milliseconds(5));
    ::testing::internal::CaptureStderr();
    auto blocker = spawn(spawn_options{.name = "blocker", .small_stack = 1536},
                         [] { std::this_thread::sleep_for(std::chrono::milliseconds(50)); });
    blocker.get();
    const std::string err = ::testing::internal::GetCapturedStderr();
    h.set_watchdog(threshold);
    EXPECT_NE(err.find("watchdog: task 'blocker'"), std::string::npos) << err;
}

TEST_F(TaskStack, ASmallStackBesideAStackSizeOrTooLargeIsRefusedAtTheSpawn) {
    const std::size_t base = stack_statistics().in_use;
    try {
        (void)spawn(spawn_options{.name = "both", .stack_size = 65536, .small_stack = 2048}, [] {});
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("greenlet 'both' asks for both a stack_size"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_THROW((void)spawn(spawn_options{.small_stack = small_stack_max() + 1}, [] {}), error);
    EXPECT_EQ(stack_statistics().in_use, base);
}

}  // namespace
