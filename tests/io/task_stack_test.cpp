// task.hpp: a task's storage and the ends of its life: killed before it ran, dropped while
// parked, read long after it finished.

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/detail/debug.hpp"
#include "greenfiber/greenlet.hpp"
#include "greenfiber/loop.hpp"
#include "greenfiber/stack.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

// Counts the program's operator new calls while `counting` is set, so that a test can say
// "this stretch allocated nothing" (malloc underneath, so the sanitizers still see it all).
namespace {
std::atomic<bool> counting{false};
std::atomic<std::size_t> news{0};
void* counted_new(std::size_t n) {
    if (counting.load(std::memory_order_relaxed)) news.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
    throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) {
    return counted_new(n);
}
void* operator new[](std::size_t n) {
    return counted_new(n);
}
// The nothrow forms too: the library frees what they return with the plain delete below.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    try {
        return counted_new(n);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    try {
        return counted_new(n);
    } catch (...) {
        return nullptr;
    }
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}

using namespace greenfiber;

namespace {

class TaskStack : public greenfiber::testing::io_checked {};

// Whether `p` lies in the stack of `t`'s fiber.
bool in_own_stack(const any_task& t, const void* p) {
    const detail::greenlet_impl* f = detail::access::impl(t.state()->fiber());
    const auto* lo = static_cast<const char*>(f->stack_lo);
    const auto* c = static_cast<const char*>(p);
    return lo != nullptr && c >= lo && c < lo + f->stack_size;
}

// The calling fiber's stack bottom.
void* my_stack() {
    return detail::access::impl(greenlet::current())->stack_lo;
}

// A small task lives in the top of its fiber's stack beside the fiber's control block, and
// spawning, running and joining it allocates nothing on the heap (its stack comes from the
// thread's cache, warmed by the first task).
TEST_F(TaskStack, ASmallTaskLivesInItsStackAndAllocatesNothing) {
    spawn([] { return 0; }).get();  // warm the stack cache
    counting = true;
    auto t = spawn([](int a) { return a + 1; }, 41);
    const bool task_in_stack = in_own_stack(t, t.state());
    const bool fiber_in_stack = in_own_stack(t, detail::access::impl(t.state()->fiber()));
    const int r = t.get();
    t = task<int>();  // the stack goes back to the thread's cache
    counting = false;
    EXPECT_TRUE(task_in_stack);
    EXPECT_TRUE(fiber_in_stack);
    EXPECT_EQ(r, 42);
    EXPECT_EQ(news.load(), 0u) << "operator new calls in a spawn, run and join";
    news = 0;
}

// A task too large for the top of its stack lives on the heap, and works the same.
TEST_F(TaskStack, ALargeTaskLivesOnTheHeapAndWorksTheSame) {
    std::array<char, 4096> big{};
    big[4000] = 7;
    auto t = spawn([big] { return int(big[4000]); });
    EXPECT_FALSE(in_own_stack(t, t.state()));
    EXPECT_EQ(t.get(), 7);
}

// A finished task's result and exception live in it, in its stack, and its handle keeps
// that stack: however many tasks run and finish meanwhile, none is given it, and the
// result and exception read long after are intact. Once the handle goes, the stack is
// reused.
TEST_F(TaskStack, AFinishedTaskKeepsItsStackWhileItsHandleLives) {
    auto value = spawn([] { return std::string(300, 'v'); });
    auto failed = spawn([]() -> int { throw std::runtime_error("boom kept in the stack"); });
    value.wait();
    failed.wait();
    void* const value_stack = detail::access::impl(value.state()->fiber())->stack_lo;
    void* const failed_stack = detail::access::impl(failed.state()->fiber())->stack_lo;
    for (int i = 0; i < 100; ++i) {
        void* s = spawn(my_stack).get();
        EXPECT_NE(s, value_stack);
        EXPECT_NE(s, failed_stack);
        // Scribble over whatever the reused stacks held.
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
        EXPECT_STREQ(e.what(), "boom kept in the stack");
    }
    const std::size_t in_use = stack_statistics().in_use;
    value = task<std::string>();
    failed = task<int>();
    EXPECT_EQ(stack_statistics().in_use, in_use - 2);
    // The thread's cache hands the stack given back last to the next task.
    EXPECT_EQ(spawn(my_stack).get(), failed_stack);
}

// A task that never ran (killed while pending, or its thread's hub destroyed under it)
// gives its stack back with its last handle; its function never runs.
TEST_F(TaskStack, ATaskDestroyedBeforeItRanGivesItsStackBack) {
    const std::size_t in_use = stack_statistics().in_use;
    const std::size_t greenlets = live_greenlets();
    int ran = 0;
    {
        auto t = spawn([&] { ++ran; });
        EXPECT_TRUE(in_own_stack(t, t.state()));
        EXPECT_EQ(stack_statistics().in_use, in_use + 1);  // taken at the spawn
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
// stack and gives it back once nothing refers to the task any more.
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
    EXPECT_EQ(stack_statistics().in_use, in_use + 2);  // the two handles keep theirs
    cancelled = task<void>();
    killed = task<void>();
    EXPECT_EQ(stack_statistics().in_use, in_use);
}

// Two fibers on one task: both wait in get(), one is cancelled while the task parks, the
// task is then cancelled while the other still waits; every stack comes back.
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
    a = task<int>();
    b = task<int>();
    inner = task<int>();
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

}  // namespace
