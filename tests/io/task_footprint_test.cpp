// task.hpp: what a task costs and what it keeps: its fiber's function lives inside the task,
// its stack comes from the thread's cache, its name is formatted once, and a parked task
// keeps only the top of its stack resident.

#include <sys/mman.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
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

using namespace greenfiber;
using ::testing::HasSubstr;

namespace {

class TaskFootprint : public greenfiber::testing::io_checked {};

detail::greenlet_impl* fiber_of(const any_task& t) {
    return detail::access::impl(t.state()->fiber());
}

// The calling fiber's stack bottom.
void* my_stack() {
    return detail::access::impl(greenlet::current())->stack_lo;
}

// Tasks that never ran, destroyed with their hub when their thread exits (pending, every
// handle dropped): their fibers, whose function lived inside the task, are freed with them
// and never run it; nothing leaks (the leak checks of the sanitizer build).
TEST_F(TaskFootprint, TasksDestroyedBeforeTheyRanFreeTheirFibers) {
    const std::size_t greenlets = live_greenlets();
    const std::size_t in_use = stack_statistics().in_use;
    std::atomic<int> ran{0};
    std::thread other([&] {
        (void)event_loop::current();
        std::vector<task<void>> kept;
        for (int i = 0; i < 5; ++i) kept.push_back(spawn([&] { ran.fetch_add(1); }));
        kept.clear();  // detached, still pending: the hub owns them until it goes
    });
    other.join();
    EXPECT_EQ(ran.load(), 0);
    EXPECT_EQ(live_greenlets(), greenlets);
    EXPECT_EQ(stack_statistics().in_use, in_use);
}

// A spawn whose stack cannot be mapped (fail_start) leaves nothing behind, eager or not, and
// the tasks after it run normally on the thread's cached stacks.
TEST_F(TaskFootprint, ASpawnThatGetsNoStackLeavesNothingBehind) {
    constexpr std::size_t huge = std::size_t{1} << 50;  // more than the address space
    const std::size_t in_use = stack_statistics().in_use;
    for (int i = 0; i < 3; ++i) {
        auto t = spawn(spawn_options{.name = "no-stack", .stack_size = huge}, [] { return 1; });
        EXPECT_THROW((void)t.get(), stack_error);
        EXPECT_THROW(
            (void)spawn(spawn_options{.name = "no-stack", .stack_size = huge, .eager = true},
                        [] { return 1; }),
            stack_error);
        EXPECT_EQ(spawn([] { return 2; }).get(), 2);
    }
    EXPECT_EQ(stack_statistics().in_use, in_use);
}

// Tasks spawned and joined one after the other take the stack the last one gave back (the
// thread's cache): one stack in use at a time, whatever the number of tasks.
TEST_F(TaskFootprint, TasksJoinedOneByOneReuseOneStack) {
    const std::size_t in_use = stack_statistics().in_use;
    reset_stack_high_water();
    void* first = spawn(my_stack).get();
    for (int i = 0; i < 200; ++i) EXPECT_EQ(spawn(my_stack).get(), first);
    EXPECT_EQ(reset_stack_high_water(), in_use + 1);
}

// Names are what they were: "task-N" when none is given (the fiber has the same), the given
// one otherwise, and a rename shows in the task.
TEST_F(TaskFootprint, NamesAreFormattedOnceAndUnchanged) {
    auto a = spawn([] {});
    auto b = spawn(spawn_options{.name = "given"}, [] {});
    ASSERT_EQ(a.name().rfind("task-", 0), 0u);
    const std::string number = a.name().substr(5);
    ASSERT_FALSE(number.empty());
    EXPECT_EQ(number.find_first_not_of("0123456789"), std::string::npos);
    EXPECT_EQ(fiber_of(a)->name, a.name());
    EXPECT_EQ(b.name(), "given");
    EXPECT_EQ(fiber_of(b)->name, "given");
    auto c = spawn([] {});
    EXPECT_EQ(c.name(), "task-" + std::to_string(std::stoull(number) + 2));
    a.set_name("renamed");
    EXPECT_EQ(a.name(), "renamed");
    EXPECT_THAT(to_string(a), HasSubstr("'renamed'"));
    a.get();
    b.get();
    c.get();
}

// The name is one string, the fiber's: a rename shows in greenlet::name() too, and a task
// killed while parked (its fiber freed with its last handle) still answers with its name.
TEST_F(TaskFootprint, TheNameIsHeldOnceByTheFiber) {
    event never;
    auto t = spawn(spawn_options{.name = "first"}, [&] { never.wait(); });
    EXPECT_EQ(&t.name(), &fiber_of(t)->name);
    t.set_name("second");
    EXPECT_EQ(t.state()->fiber().name(), "second");
    yield_now();  // parked on the event now
    ASSERT_TRUE(t.parked());
    t.state()->kill();
    ASSERT_TRUE(t.done());
    EXPECT_FALSE(static_cast<bool>(t.state()->fiber()));  // its fiber went with the kill
    EXPECT_EQ(t.name(), "second");
    t.set_name("third");
    EXPECT_EQ(t.name(), "third");
    EXPECT_THAT(to_string(t), HasSubstr("'third'"));
}

// The task and its fiber's control block share one allocation, the block just before the
// task; the storage goes when both are done. A copy of the fiber outliving its task keeps
// the storage (the name and state are read from it after the task is gone: ASan sees any
// read of freed memory) and frees it when dropped; the leak checks see the rest.
TEST_F(TaskFootprint, TheFiberBlockLivesBesideItsTask) {
    greenlet kept;
    {
        auto t = spawn(spawn_options{.name = "kept"}, [] { return 7; });
        const auto* task_start = reinterpret_cast<const char*>(t.state());
        const auto* block = reinterpret_cast<const char*>(fiber_of(t));
        EXPECT_LT(block, task_start);
        EXPECT_LE(task_start - block, 256);  // right before it, in the same allocation
        kept = t.state()->fiber().share();
        EXPECT_EQ(t.get(), 7);
    }  // the task is gone; its fiber's block is not
    EXPECT_TRUE(kept.dead());
    EXPECT_EQ(kept.name(), "kept");
    kept = greenlet();
    // The other order: the fiber's last handle goes first (a killed task), the task after.
    event never;
    auto u = spawn(spawn_options{.name = "killed"}, [&] { never.wait(); });
    yield_now();
    u.state()->kill();
    EXPECT_EQ(u.name(), "killed");
    EXPECT_TRUE(u.cancelled());
}

// A fiber handle dropped on another thread after its task is gone: the block goes back on
// the task's thread at its next greenlet call, or at once if that thread has exited.
TEST_F(TaskFootprint, AFiberBlockDroppedOnAnotherThreadGoesBackOnItsOwn) {
    const std::size_t greenlets = live_greenlets();
    greenlet kept;
    {
        auto t = spawn([] {});
        kept = t.state()->fiber().share();
        t.get();
    }
    std::thread([&] { kept = greenlet(); }).join();
    EXPECT_EQ(live_greenlets(), greenlets + 1);  // queued for this thread
    yield_now();                                 // a switch takes the slow path, which drains it
    EXPECT_EQ(live_greenlets(), greenlets);

    // The task's thread exits first, with the handle on this one. (The fiber's parent, that
    // thread's hub greenlet, is then released here too, and reported as freed unwound.)
    std::thread([&] {
        (void)event_loop::current();
        auto t = spawn([] {});
        kept = t.state()->fiber().share();
        t.get();
    }).join();
    kept = greenlet();
    EXPECT_EQ(live_greenlets(), greenlets);
}

// An over-aligned task (its result or function wants more than operator new's alignment)
// is allocated alone, aligned, and its fiber's block separately.
TEST_F(TaskFootprint, AnOverAlignedTaskIsAllocatedAlone) {
    struct alignas(64) wide {
        int v;
    };
    for (int i = 0; i < 20; ++i) {
        auto t = spawn([i] { return wide{i}; });
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.state()) % 64, 0u);
        EXPECT_EQ(t.get().v, i);
    }
    alignas(64) const int lanes[16] = {1, 2, 3};
    struct alignas(64) holder {
        int lanes[16];
    };
    const holder h{{lanes[0], lanes[1], lanes[2]}};
    auto t = spawn([h] { return h.lanes[0] + h.lanes[1] + h.lanes[2]; });
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.state()) % 64, 0u);
    EXPECT_EQ(t.get(), 6);
}

// A task parked on an event keeps only the top of its guarded stack resident: the switch
// reads no word at the stack's bottom (which would make some kernels map a page there).
TEST_F(TaskFootprint, AParkedTaskKeepsOnlyTheTopOfItsStackResident) {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    trim_stack_pool();  // the stack it gets has no page resident
    event go;
    auto t = spawn([&] { go.wait(); });
    yield_now();
    ASSERT_TRUE(t.parked());
    detail::greenlet_impl* f = fiber_of(t);
    ASSERT_TRUE(f->stack_guarded) << "the guard budget is spent in this process";
    std::vector<unsigned char> vec(f->stack_size / page);
    ASSERT_EQ(mincore(f->stack_lo, f->stack_size, vec.data()), 0);
    std::vector<std::size_t> resident;
    for (std::size_t i = 0; i < vec.size(); ++i) {
        if (vec[i] & 1) resident.push_back(i);
    }
    ASSERT_FALSE(resident.empty());
    EXPECT_NE(resident.front(), 0u) << "the stack's lowest page is resident";
    // The task's frames (its function, the wait, the hub's park) fit in the top two pages.
    EXPECT_GE(resident.front(), vec.size() - 2) << "resident from page " << resident.front();
    go.set();
    t.get();
}

}  // namespace
