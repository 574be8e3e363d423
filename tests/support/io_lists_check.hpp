#pragma once
// A stricter fixture base for io/ tests: on top of io_checked (no unfinished task, no
// parked fiber, no loop timer, no greenlet or stack leaked), every internal list of the
// thread is empty at the end of each test: no unretrieved task error, nothing in the hub's
// ready queue, no parked fiber, no unfinished task, no pending timer. A record left in one
// of them is a use-after-free or a lost wake-up waiting to happen.

#include <greenfiber/detail/debug.hpp>

#include <sstream>
#include <string>

#include "io_check.hpp"

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

class io_lists_checked : public io_checked {
  protected:
    void TearDown() override {
        EXPECT_EQ(leftover_lists(), "") << "the thread's internal lists are not empty";
        io_checked::TearDown();
    }
};

}  // namespace greenfiber::testing
