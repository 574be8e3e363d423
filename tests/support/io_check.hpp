#pragma once
// A fixture base for io/ tests: on top of leak_checked (no greenlet, no stack leaked), every
// test must end with no unfinished task, no parked fiber and no pending loop timer.

#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

#include "leak_check.hpp"

namespace greenfiber::testing {

class io_checked : public leak_checked {
  protected:
    void SetUp() override {
        // The hub's own greenlet and its stack are not leaks: create and start it first.
        (void)event_loop::current();
        yield_now();
        leak_checked::SetUp();
    }
    void TearDown() override {
        EXPECT_TRUE(detail::task_base::all(hub::current()).empty()) << "a task was left unfinished";
        EXPECT_EQ(hub::current().parked(), 0u) << "a fiber was left parked";
        EXPECT_EQ(event_loop::current().pending_timers(), 0u) << "a loop timer was left pending";
        leak_checked::TearDown();
    }
};

}  // namespace greenfiber::testing
