#pragma once
// The wait list every blocking primitive of io/ is built on: a fiber waiting for something
// (a lock, an item, a task to finish, a free slot) links a wait record into that thing's
// list and parks. The record has its own link, distinct from the hub's ready-queue link
// inside its `w`: a fiber can be in a wait list and in the ready queue at once (woken by a
// cancellation while still linked), and the two can never corrupt each other.
// Not API.

#include <chrono>
#include <cstddef>

#include "greenfiber/hub.hpp"

namespace greenfiber {

namespace detail {

class wait_list;

// A fiber waiting on a primitive: its hub waiter plus a link in the primitive's wait
// list (its type says which list each link belongs to: `w` is the ready queue's, `prev` /
// `next` / `list` the wait list's). It lives in the waiting frame; wait_in() unlinks it before that
// frame returns or unwinds. It is in at most one wait_list at a time (a primitive may move it from
// its waiting list to a list of granted waiters that have not run yet, see queue.hpp); the hub's
// ready queue uses the separate link inside `w`.
struct sync_waiter {
    // Records the calling fiber and its hub. Switches: no.
    explicit sync_waiter(const char* what);
    sync_waiter(const sync_waiter&) = delete;
    sync_waiter& operator=(const sync_waiter&) = delete;

    waiter w;                     // parked in hub::park; w.context points back here
    hub* owner_hub;               // Borrowed: the waiting fiber's hub
    const greenlet_impl* fiber;   // Borrowed: the waiting greenlet (rlock's new owner)
    sync_waiter* prev = nullptr;  // Guarded by `list` (intrusive, doubly linked)
    sync_waiter* next = nullptr;
    wait_list* list = nullptr;  // the list it is linked in, or null
    bool signalled = false;     // taken off the waiting list and woken by the primitive
    bool granted = false;       // holds a grant it must pass on if it does not use it
};

// An intrusive FIFO of sync_waiters with O(1) removal. Thread-bound.
class wait_list {
  public:
    wait_list() noexcept = default;
    wait_list(const wait_list&) = delete;
    wait_list& operator=(const wait_list&) = delete;
    // Aborts with a message if fibers still wait here: their frames would dangle.
    ~wait_list() {
        if (head_ != nullptr) destroyed_with_waiters();
    }

    bool empty() const noexcept { return head_ == nullptr; }
    std::size_t size() const noexcept { return size_; }
    sync_waiter* front() const noexcept { return head_; }

    // Links `s` at the back. Throws: greenfiber::error if fibers of another hub (thread)
    // already wait here.
    void push_back(sync_waiter& s) {
        if (head_ != nullptr && head_->owner_hub != s.owner_hub) foreign_hub(s);
        link(s);
    }

    // Unlinks `s`, which must be linked here.
    void remove(sync_waiter& s) noexcept {
        if (s.prev != nullptr) {
            s.prev->next = s.next;
        } else {
            head_ = s.next;
        }
        if (s.next != nullptr) {
            s.next->prev = s.prev;
        } else {
            tail_ = s.prev;
        }
        s.prev = s.next = nullptr;
        s.list = nullptr;
        --size_;
    }

    // Unlinks the first waiter, marks it signalled (and granted when `grant`) and wakes
    // it; with `to`, links it into `to` until it runs (a list of granted waiters). Returns
    // it, or null if the list is empty. Switches: no.
    sync_waiter* signal_front(bool grant, wait_list* to = nullptr) noexcept {
        sync_waiter* s = head_;
        if (s == nullptr) return nullptr;
        remove(*s);
        s->signalled = true;
        s->granted = grant;
        if (to != nullptr) to->link(*s);
        s->owner_hub->wake(s->w);
        return s;
    }

    // signal_front(false) for every waiter; returns how many. Switches: no.
    std::size_t signal_all() noexcept {
        std::size_t n = 0;
        while (signal_front(false) != nullptr) ++n;
        return n;
    }

    // For a list of granted waiters: unlinks them all and takes their grants back (they
    // stay signalled and find out why when they run). Switches: no.
    void revoke_all() noexcept {
        while (sync_waiter* s = head_) {
            remove(*s);
            s->granted = false;
        }
    }

  private:
    void link(sync_waiter& s) noexcept {
        s.prev = tail_;
        s.next = nullptr;
        if (tail_ != nullptr) {
            tail_->next = &s;
        } else {
            head_ = &s;
        }
        tail_ = &s;
        s.list = this;
        ++size_;
    }
    [[noreturn]] static void foreign_hub(const sync_waiter& s);
    [[noreturn]] void destroyed_with_waiters() noexcept;

    sync_waiter* head_ = nullptr;  // Not owned: each node lives in its waiting frame.
    sync_waiter* tail_ = nullptr;
    std::size_t size_ = 0;
};

// Links `sw` into `list` and parks until a primitive signals it (returns true) or
// `deadline` (if not null) passes first (returns false). Whatever ends the wait, `sw` is
// unlinked from any list before this returns or throws; `sw.granted` then says whether the
// caller holds a grant, which it must pass on if it throws.
// Switches: yes.   Throws: cancelled_error, loop_exit, greenfiber::error (as hub::park).
bool wait_in(wait_list& list, sync_waiter& sw,
             const std::chrono::steady_clock::time_point* deadline);

// Links `sw` into `list`, parks once and unlinks: returns when a signal or anything else
// woke `sw.w` (the caller checks its own condition), false if `deadline` (when not null)
// passed first. `shielded`: a cancellation neither prevents nor ends the park (see
// hub::park_shielded). Switches: yes.   Throws: as hub::park.
bool park_in(wait_list& list, sync_waiter& sw,
             const std::chrono::steady_clock::time_point* deadline = nullptr,
             bool shielded = false);

// wait_in() without a deadline that a cancellation neither prevents nor ends (the request
// stays pending for the next wait). For re-acquiring a lock on the way out of a
// condition wait. Switches: yes.   Throws: loop_exit, greenfiber::error.
void wait_in_shielded(wait_list& list, sync_waiter& sw);

// True once `deadline` has passed. Switches: no.
inline bool deadline_passed(std::chrono::steady_clock::time_point deadline) noexcept {
    return deadline <= std::chrono::steady_clock::now();
}

}  // namespace detail

}  // namespace greenfiber
