#pragma once
// Counts of the calling thread's internal lists, for leak checks in tests: at the end of a
// test that ran its fibers to completion, every count is zero. Not API.

#include <cstddef>

namespace greenfiber::detail {

struct thread_lists {
    std::size_t unretrieved = 0;  // finished tasks whose exception nobody retrieved
    std::size_t ready = 0;        // entries in the hub's ready queue
    std::size_t parked = 0;       // fibers parked in the hub
    std::size_t tasks = 0;        // unfinished tasks
    std::size_t timers = 0;       // parks with a deadline, and pending call_later timers
};

// The counts for the calling thread; all zero when it has no hub. Never creates a hub.
// Switches: no.   Thread: thread-bound (reads the calling thread's state only).
thread_lists debug_thread_lists() noexcept;

}  // namespace greenfiber::detail
