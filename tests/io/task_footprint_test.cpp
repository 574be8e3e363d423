// task.hpp: what a task costs and what it keeps: its fiber's function lives inside the task,
// its stack comes from the thread's cache, its name is formatted once, and a parked task
// keeps only the top of its stack resident.

#include <sys/mman.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
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
using ::testing::Not;
using namespace std::chrono_literals;

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

// A pending task holds only a ready entry for its first run. Killed or cancelled before
// that run, the entry leaves the hub's queue, the function never runs, and what waits for
// the task (a done callback, a get()) is told, in order; the message is the cancel's.
TEST_F(TaskFootprint, APendingTaskEndedBeforeItsFirstRunLeavesTheQueue) {
    hub& h = hub::current();
    const std::size_t ready = h.ready_count();
    int ran = 0;
    std::vector<std::string> seen;
    auto killed = spawn(spawn_options{.name = "killed"}, [&] { ++ran; });
    auto cancelled = spawn(spawn_options{.name = "cancelled"}, [&] { ++ran; });
    EXPECT_EQ(h.ready_count(), ready + 2);
    killed.state()->kill();
    EXPECT_TRUE(killed.cancelled());
    EXPECT_EQ(h.ready_count(), ready + 1);  // its start entry left the queue
    (void)cancelled.add_done_callback([&](task<void>& t) { seen.push_back("cb " + t.name()); });
    // Eager: parked in get() before `cancelled` could run, behind the callback.
    auto getter = spawn(spawn_options{.eager = true}, [&, c = cancelled.share()]() mutable {
        try {
            c.get();
        } catch (const cancelled_error& e) {
            seen.push_back("get " + e.message());
        }
    });
    EXPECT_TRUE(cancelled.cancel("first"));
    EXPECT_TRUE(cancelled.cancel("second"));  // the last message given is the one raised
    EXPECT_EQ(cancelled.cancelling(), 2);
    getter.get();
    EXPECT_TRUE(cancelled.cancelled());
    EXPECT_EQ(cancelled.state()->cancel_message(), "second");
    EXPECT_THAT(to_string(cancelled), HasSubstr("message='second'"));
    EXPECT_EQ(ran, 0);
    EXPECT_EQ(seen, (std::vector<std::string>{"cb cancelled", "get second"}));
    EXPECT_EQ(h.ready_count(), ready);
    EXPECT_FALSE(cancelled.cancel("late"));  // finished: nothing changes
    EXPECT_EQ(cancelled.state()->cancel_message(), "second");
}

// A cancellation without a message keeps none, and one raised with a message (a
// cancelled_error thrown by the function itself) is the task's message.
TEST_F(TaskFootprint, ACancellationsMessageIsKeptOnlyWhenThereIsOne) {
    auto quiet = spawn([] { sleep(1h); });
    auto loud = spawn([] { throw cancelled_error("from inside"); });
    yield_now();
    quiet.cancel();
    quiet.wait();
    loud.wait();
    EXPECT_TRUE(quiet.cancelled());
    EXPECT_EQ(quiet.state()->cancel_message(), "");
    EXPECT_THAT(to_string(quiet), Not(HasSubstr("message=")));
    EXPECT_TRUE(loud.cancelled());
    EXPECT_EQ(loud.state()->cancel_message(), "from inside");
}

// An interrupt (gevent's kill(exception), a timeout_scope's expiry) given to a task before
// its first run is raised at its first suspension point; withdrawn in time, it is never
// raised; a task that never had one has none to withdraw.
TEST_F(TaskFootprint, AnInterruptGivenToAPendingTaskIsRaisedAtItsFirstSuspension) {
    int reached = 0;
    auto hit = spawn([&] {
        ++reached;
        yield_now();
        ++reached;
    });
    auto spared = spawn([&] {
        yield_now();
        return 5;
    });
    EXPECT_FALSE(spared.state()->withdraw_interrupt());
    hit.state()->interrupt(std::make_exception_ptr(std::runtime_error("interrupted")));
    spared.state()->interrupt(std::make_exception_ptr(std::runtime_error("never raised")));
    EXPECT_TRUE(spared.state()->withdraw_interrupt());
    EXPECT_FALSE(spared.state()->withdraw_interrupt());
    EXPECT_THROW(hit.get(), std::runtime_error);
    EXPECT_EQ(reached, 1);
    EXPECT_EQ(spared.get(), 5);
}

// Names after a kill: a pending task killed keeps its fiber (it never ran) and its name; a
// task killed while parked keeps a copy; renamed to "" and back, it says what it was told.
TEST_F(TaskFootprint, AKilledTaskCanBeRenamedToEmptyAndBack) {
    auto pending = spawn(spawn_options{.name = "pending"}, [] {});
    pending.state()->kill();
    EXPECT_EQ(pending.name(), "pending");
    pending.set_name("renamed");
    EXPECT_EQ(pending.name(), "renamed");

    event never;
    auto parked = spawn(spawn_options{.name = "parked"}, [&] { never.wait(); });
    yield_now();
    parked.state()->kill();
    ASSERT_FALSE(static_cast<bool>(parked.state()->fiber()));
    EXPECT_EQ(parked.name(), "parked");
    parked.set_name("");
    EXPECT_EQ(parked.name(), "");
    parked.set_name("again");
    EXPECT_EQ(parked.name(), "again");

    // Killed while parked with an empty name: nothing to keep, and the name stays empty.
    auto nameless = spawn([&] { never.wait(); });
    nameless.set_name("");
    yield_now();
    nameless.state()->kill();
    EXPECT_EQ(nameless.name(), "");
    EXPECT_THAT(to_string(nameless), HasSubstr("<task '' cancelled"));
}

// Regression: a second cancel() that reached a task while it took its turn before raising
// a first request inside get() marked the request as passed on to the awaited task without
// passing it, so get() then waited, shielded, for a task nobody had cancelled (here
// forever: loop_exit). The awaited task is cancelled once, however the requests fall.
TEST_F(TaskFootprint, ACancelDuringTheTurnBeforeGetRaisesStillCancelsTheAwaitedTask) {
    event never;
    auto inner = spawn(spawn_options{.name = "inner"}, [&] { never.wait(); });
    auto outer = spawn(spawn_options{.name = "outer"}, [i = inner.share()]() mutable {
        current_task().cancel("first");  // raised inside get(), after a turn of the hub
        i.get();
    });
    // Runs in that turn: outer is then in get(), not parked in its wait.
    auto second = spawn([o = outer.share()] { EXPECT_TRUE(o.cancel("second")); });
    EXPECT_THROW(outer.get(), cancelled_error);
    EXPECT_TRUE(second.done());
    EXPECT_TRUE(inner.cancelled());
    EXPECT_EQ(inner.cancelling(), 1);
    EXPECT_TRUE(outer.cancelled());
}

// Cancelling a task parked in get() passes the request on once, however many requests
// come, and a task parked in get() on a task that is then killed is woken, not cancelled.
TEST_F(TaskFootprint, RequestsToATaskInGetArePassedOnOnce) {
    event never;
    auto inner = spawn([&] { never.wait(); });
    auto outer = spawn([i = inner.share()]() mutable { i.get(); });
    yield_now();
    ASSERT_TRUE(outer.parked());
    for (int n = 0; n < 3; ++n) EXPECT_TRUE(outer.cancel());
    EXPECT_EQ(inner.cancelling(), 1);
    EXPECT_EQ(outer.cancelling(), 3);
    outer.wait();
    EXPECT_TRUE(outer.cancelled());
    EXPECT_TRUE(inner.cancelled());

    auto inner2 = spawn([&] { never.wait(); });
    auto outer2 = spawn([i = inner2.share()]() mutable {
        try {
            i.get();
        } catch (const cancelled_error&) {
            return current_task().cancelling();
        }
        return -1;
    });
    yield_now();
    inner2.state()->kill();
    EXPECT_EQ(outer2.get(), 0);  // the killed task's cancellation, not its own
    EXPECT_EQ(outer2.cancelling(), 0);
}

// Done callbacks keep distinct ids: removing one by its id removes that one only, an id
// removed twice removes nothing the second time, and the others run in order.
TEST_F(TaskFootprint, DoneCallbackIdsStayDistinct) {
    std::vector<int> order;
    auto t = spawn([] { yield_now(); });
    std::vector<std::uint64_t> ids;
    for (int i = 0; i < 5; ++i)
        ids.push_back(t.add_done_callback([&order, i](task<void>&) { order.push_back(i); }));
    for (std::size_t i = 1; i < ids.size(); ++i) EXPECT_NE(ids[i], ids[i - 1]);
    EXPECT_EQ(t.remove_done_callback(ids[2]), 1u);
    EXPECT_EQ(t.remove_done_callback(ids[2]), 0u);
    t.get();
    yield_now();  // the callbacks run from the hub
    EXPECT_EQ(order, (std::vector<int>{0, 1, 3, 4}));
}

// A task whose function's copy throws as the task is built never leaves pending: it is
// destroyed before it was queued, with its fiber, and nothing leaks or runs.
TEST_F(TaskFootprint, ATaskWhoseArgumentThrowsAsItIsBuiltLeavesNothing) {
    struct throws_on_copy {
        throws_on_copy() = default;
        throws_on_copy(const throws_on_copy&) { throw std::runtime_error("no copy"); }
    };
    hub& h = hub::current();
    const std::size_t ready = h.ready_count();
    const std::size_t greenlets = live_greenlets();
    const std::size_t live = detail::task_base::live_count();
    const throws_on_copy arg;
    int ran = 0;
    EXPECT_THROW((void)spawn([&ran](const throws_on_copy&) { ++ran; }, arg), std::runtime_error);
    EXPECT_EQ(h.ready_count(), ready);
    EXPECT_EQ(live_greenlets(), greenlets);
    EXPECT_EQ(detail::task_base::live_count(), live);
    yield_now();
    EXPECT_EQ(ran, 0);
}

// Empty functions and arguments take no room in the task; two of one empty type, the
// function and its argument, are still two objects, and each is the one it was given.
TEST_F(TaskFootprint, EmptyFunctionsAndArgumentsKeepTheirIdentity) {
    // The same empty type as function and argument: the function gets a distinct object.
    struct same {
        const void* operator()(const same& other) const noexcept {
            return this != &other ? this : nullptr;
        }
    };
    auto t = spawn(same{}, same{});
    EXPECT_NE(t.get(), nullptr);
    // Nothing captured, no arguments: the task is its result's task_value and nothing more.
    const auto eleven = [] { return 11; };
    EXPECT_EQ(sizeof(detail::task_impl<int, std::decay_t<decltype(eleven)>>),
              sizeof(detail::task_value<int>));
    auto none = spawn(eleven);
    EXPECT_EQ(none.get(), 11);
}

}  // namespace
