// Counts of the calling thread's internal lists (detail/debug.hpp).

#include "greenfiber/detail/debug.hpp"

#include "greenfiber/hub.hpp"
#include "greenfiber/loop.hpp"
#include "greenfiber/task.hpp"

namespace greenfiber::detail {

thread_lists debug_thread_lists() noexcept {
    thread_lists out;
    out.unretrieved = task_base::unretrieved_count();
    out.tasks = task_base::live_count();
    if (hub* h = hub_if_any()) {
        out.ready = h->ready_count() + h->deferred_count();  // both are runs the hub owes
        out.parked = h->parked();
        out.timers = h->timed_parks() + loop_pending_timers_if_any();
    }
    return out;
}

}  // namespace greenfiber::detail
