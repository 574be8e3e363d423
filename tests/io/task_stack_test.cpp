// task.hpp: a task's storage and the ends of its life: killed before it ran, dropped while
// parked, read long after it finished.

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "greenfiber/detail/debug.hpp"
#include "greenfiber/loop.hpp"
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

}  // namespace
