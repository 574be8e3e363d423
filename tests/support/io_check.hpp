#pragma once
// A fixture base for io/ tests: on top of leak_checked (no greenlet, no stack leaked), every
// test must end with no unfinished task, no parked fiber and no pending loop timer, and
// with every internal list of the thread empty: no unretrieved task error, nothing in the
// hub's ready queue, no parked fiber, no unfinished task, no pending timer. A record left
// in one of them is a use-after-free or a lost wake-up waiting to happen.

#include <greenfiber/detail/debug.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

#include <sstream>
#include <string>

#include "leak_check.hpp"

namespace greenfiber::testing {

// What is left in the calling thread's lists, e.g. "ready=1 timers=2"; "" when all are
// empty. Switches: no.
inline std::string leftover_lists() {
    const detail::thread_lists l = detail::debug_thread_lists();
    std::ostringstream os;
    auto add = [&os](const char* name, std::size_t n) {
        if (n != 0) os << (os.tellp() > 0 ? " " : "") << name << "=" << n;
    };
    add("unretrieved", l.unretrieved);
    add("ready", l.ready);
    add("parked", l.parked);
    add("tasks", l.tasks);
    add("timers", l.timers);
    return os.str();
}

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
        EXPECT_EQ(leftover_lists(), "") << "the thread's internal lists are not empty";
        leak_checked::TearDown();
    }
};

}  // namespace greenfiber::testing
