// The wait list: how a fiber waits for a primitive, a task or a slot (see
// detail/wait_list.hpp).
//
// The one rule every wait follows: a grant (a lock handed over, a unit, a notification, a
// finished task) is given to a waiter by taking it off the wait list, setting its
// `signalled` (and `granted`) flag and waking it; the waiter learns what it got from the
// flags, never from how hub::park returned, because park throws cancelled_error when the
// task was cancelled even if the waiter had been woken normally before it ran.

#include "greenfiber/detail/wait_list.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace greenfiber {
namespace detail {

namespace {

// A task cancelled while its fiber waits on a primitive: leave the wait list at once (so
// no grant is handed to a fiber that will not use it) and wake. A waiter already signalled
// keeps its place in a list of granted waiters: it passes its grant on when it runs.
void cancel_sync_wait(waiter& w) noexcept {
    auto* s = static_cast<sync_waiter*>(w.context);
    if (!s->signalled && s->list != nullptr) s->list->remove(*s);
    s->owner_hub->wake(w);
}

// Whatever ends a wait, the waiting frame leaves every list before it goes away.
struct unlink_on_exit {
    sync_waiter& s;
    ~unlink_on_exit() {
        if (s.list != nullptr) s.list->remove(s);
    }
};

}  // namespace

sync_waiter::sync_waiter(const char* what)
    : w(what), owner_hub(&hub::current()), fiber(this_thread().current) {
    w.on_cancel = &cancel_sync_wait;
    w.context = this;
}

void wait_list::foreign_hub(const sync_waiter& s) {
    throw error(std::string("greenfiber: cannot wait for ") + s.w.what +
                ": fibers of another thread wait on it (sync primitives are thread-bound; "
                "post() to the owning hub instead)");
}

void wait_list::destroyed_with_waiters() noexcept {
    std::fprintf(stderr,
                 "greenfiber: a sync primitive was destroyed while %zu fiber(s) wait on it "
                 "(first: %s); their wait records would dangle\n",
                 size_, head_->w.what);
    std::abort();
}

bool wait_in(wait_list& list, sync_waiter& sw,
             const std::chrono::steady_clock::time_point* deadline) {
    list.push_back(sw);
    unlink_on_exit guard{sw};
    hub& h = *sw.owner_hub;
    // Loop: a wake-up that is neither a signal nor the deadline (none is expected) must not
    // end the wait.
    while (!sw.signalled) {
        if (deadline == nullptr) {
            h.park(sw.w);
        } else if (!h.park_until(sw.w, *deadline)) {
            break;  // the deadline passed; a signal that came after it still counts
        }
    }
    return sw.signalled;
}

bool park_in(wait_list& list, sync_waiter& sw,
             const std::chrono::steady_clock::time_point* deadline, bool shielded) {
    list.push_back(sw);
    unlink_on_exit guard{sw};
    hub& h = *sw.owner_hub;
    if (deadline != nullptr) {
        return shielded ? h.park_shielded_until(sw.w, *deadline) : h.park_until(sw.w, *deadline);
    }
    if (shielded) {
        h.park_shielded(sw.w);
    } else {
        h.park(sw.w);
    }
    return true;
}

void wait_in_shielded(wait_list& list, sync_waiter& sw) {
    list.push_back(sw);
    unlink_on_exit guard{sw};
    while (!sw.signalled) sw.owner_hub->park_shielded(sw.w);
}

}  // namespace detail

}  // namespace greenfiber
