// Fiber-aware synchronisation primitives: the non-template ones. Each wait follows the
// rule of detail/wait_list.hpp: `try { wait_in(...) } catch (...) { if (granted) pass it
// on; throw; }`.

#include "greenfiber/sync.hpp"

#include <exception>
#include <string>

#include "greenfiber/task.hpp"

namespace greenfiber {

namespace {

const detail::greenlet_impl* current_fiber() noexcept {
    return detail::tls != nullptr ? detail::tls->current : nullptr;
}

// "KIND 'NAME'", or KIND alone for an unnamed object.
std::string named(const char* kind, const std::string& name) {
    return name.empty() ? std::string(kind) : std::string(kind) + " '" + name + "'";
}

// Lets a sync_waiter's wait describe itself from `object` (called only when asked).
void describe_with(detail::sync_waiter& sw, std::string (*fn)(const detail::waiter&),
                   const void* object) noexcept {
    sw.w.describe = fn;
    sw.w.describe_arg = object;
}

}  // namespace

// ---- mutex ----

void mutex::unlock() {
    if (!locked_) throw error("greenfiber: lock.unlock(): Lock is not acquired.");
    if (claims_ > 0) {
        --claims_;  // the unlock of a killed condition waiter that could not re-acquire it
        return;
    }
    hand_over();
}

void mutex::claim() noexcept {
    if (locked_) {
        ++claims_;
    } else {
        locked_ = true;
        holder_ = current_fiber();
    }
}

void mutex::hand_over() noexcept {
    // The lock stays locked while it goes to the longest waiter: nobody can take it between
    // this call and the moment that waiter runs.
    if (detail::sync_waiter* next = waiters_.signal_front(true)) {
        holder_ = next->fiber;
    } else {
        locked_ = false;
        holder_ = nullptr;
    }
}

std::string mutex::describe(const detail::waiter& w) {
    const auto& m = *static_cast<const mutex*>(w.describe_arg);
    std::string out = named("lock", m.name_);
    if (!m.locked_) return out;
    // holder_ may be a finished fiber: it is only compared with the live tasks' fibers.
    if (const detail::task_base* t = detail::task_base::of_fiber(m.holder_)) {
        out += " held by task '" + t->name() + "'";
    } else {
        out += " held by a fiber that is not a running task";
    }
    return out;
}

bool mutex::wait_slow(const std::chrono::steady_clock::time_point* deadline) {
    detail::sync_waiter sw("a lock");
    describe_with(sw, &describe, this);
    try {
        return detail::wait_in(waiters_, sw, deadline);
    } catch (...) {
        if (sw.granted) hand_over();  // handed to us, but we will not run: pass it on
        throw;
    }
}

void mutex::lock_shielded() {
    if (try_lock()) return;
    detail::sync_waiter sw("a lock (re-acquired by a condition wait)");
    describe_with(sw, &describe, this);
    try {
        detail::wait_in_shielded(waiters_, sw);
    } catch (...) {
        if (sw.granted) hand_over();
        throw;
    }
}

// ---- rlock ----

bool rlock::try_lock() {
    const detail::greenlet_impl* me = detail::this_thread().current;
    if (count_ == 0) {
        owner_ = me;
        count_ = 1;
        return true;
    }
    if (owner_ == me) {
        ++count_;
        return true;
    }
    return false;
}

bool rlock::lock_impl(const std::chrono::steady_clock::time_point* deadline) {
    if (try_lock()) return true;
    if (deadline != nullptr && detail::deadline_passed(*deadline)) return false;
    detail::sync_waiter sw("a reentrant lock");
    try {
        // On a grant, hand_over() already made us the owner with a count of 1.
        return detail::wait_in(waiters_, sw, deadline);
    } catch (...) {
        if (sw.granted) {
            count_ = 0;
            hand_over();
        }
        throw;
    }
}

void rlock::unlock() {
    if (count_ == 0 || owner_ != current_fiber())
        throw error(
            "greenfiber: rlock.unlock(): cannot release un-acquired lock (the calling fiber "
            "does not own it)");
    if (--count_ == 0) hand_over();
}

void rlock::hand_over() noexcept {
    if (detail::sync_waiter* next = waiters_.signal_front(true)) {
        owner_ = next->fiber;
        count_ = 1;
    } else {
        owner_ = nullptr;
    }
}

bool rlock::owned_by_current() const noexcept {
    return count_ > 0 && owner_ == current_fiber();
}

// ---- event ----

void event::set() noexcept {
    if (set_) return;
    set_ = true;
    waiters_.signal_all();
}

bool event::wait_impl(const std::chrono::steady_clock::time_point* deadline) {
    if (set_) return true;
    if (deadline != nullptr && detail::deadline_passed(*deadline)) return false;
    detail::sync_waiter sw("an event");
    describe_with(sw, &describe, this);
    // Nothing to pass on: set() woke every waiter, and a cancelled one takes nothing away.
    return detail::wait_in(waiters_, sw, deadline);
}

std::string event::describe(const detail::waiter& w) {
    return named("event", static_cast<const event*>(w.describe_arg)->name_);
}

// ---- semaphore ----

std::string semaphore::describe(const detail::waiter& w) {
    const auto& s = *static_cast<const semaphore*>(w.describe_arg);
    return named("semaphore", s.name_) + " (no unit free, " + std::to_string(s.waiters_.size()) +
           " waiting)";
}

void semaphore::release() {
    if (value_ >= bound_)
        throw error("greenfiber: semaphore.release(): BoundedSemaphore released too many times");
    hand_over();
}

void semaphore::hand_over() noexcept {
    // The unit goes straight to the longest waiter; value_ stays 0 while anyone waits.
    if (waiters_.signal_front(true) == nullptr) ++value_;
}

bool semaphore::wait_slow(const std::chrono::steady_clock::time_point* deadline) {
    detail::sync_waiter sw("a semaphore");
    describe_with(sw, &describe, this);
    try {
        return detail::wait_in(waiters_, sw, deadline);
    } catch (...) {
        if (sw.granted) hand_over();  // a unit came to us, but we will not run: pass it on
        throw;
    }
}

// ---- condition ----

std::string condition::describe(const detail::waiter& w) {
    return named("condition", static_cast<const condition*>(w.describe_arg)->name_) +
           " (a notification)";
}

bool condition::wait_impl(const std::chrono::steady_clock::time_point* deadline) {
    if (!m_->locked()) throw error("greenfiber: condition.wait(): cannot wait on un-acquired lock");
    detail::sync_waiter sw("a condition");
    describe_with(sw, &describe, this);
    m_->unlock();  // does not switch: nobody can notify before we are in the list
    std::exception_ptr failure;
    bool notified = false;
    try {
        notified = detail::wait_in(waiters_, sw, deadline);
    } catch (const greenlet_exit&) {
        // Killed (its hub is being destroyed, or its last handle dropped): it must not park
        // again. At thread exit the holder of the lock may be a task that is killed later,
        // and waiting for it would hang the thread. So it takes the lock only if it is
        // free, else a deferred claim that its own unlock (its guard's, during this very
        // unwinding) cancels, leaving the holder's lock intact.
        if (sw.granted) notify_waiters(1);
        m_->claim();
        throw;
    } catch (...) {
        failure = std::current_exception();
        // Notified, then cancelled before running: the notification goes to the next waiter
        // (asyncio 3.13 does the same; a spurious wake-up is allowed, a lost one is not).
        if (sw.granted) notify_waiters(1);
    }
    // Re-acquire the lock whatever happened, without letting a pending cancellation stop
    // us: the caller's guard will unlock it (asyncio's "must re-acquire lock even if wait
    // is cancelled"). The cancellation request stays pending (sticky).
    m_->lock_shielded();
    if (failure) std::rethrow_exception(failure);
    return notified;
}

void condition::notify(std::size_t n) {
    if (!m_->locked())
        throw error("greenfiber: condition.notify(): cannot notify on un-acquired lock");
    notify_waiters(n);
}

void condition::notify_waiters(std::size_t n) noexcept {
    for (std::size_t i = 0; i < n && waiters_.signal_front(true) != nullptr; ++i) {
    }
}

// ---- barrier ----

barrier::barrier(std::size_t parties) : parties_(parties) {
    if (parties == 0) throw error("greenfiber: barrier: parties must be > 0");
}

std::size_t barrier::wait() {
    // Block while the barrier drains or resets. Nothing is counted yet, so a cancellation
    // here leaves no trace.
    while (state_ == state::draining || state_ == state::resetting) {
        detail::sync_waiter sw("a barrier to drain");
        (void)detail::wait_in(blocked_, sw, nullptr);
    }
    if (state_ == state::broken) throw broken_barrier_error("greenfiber: barrier: Barrier aborted");

    const std::size_t index = count_++;
    struct leave_on_exit {
        barrier& b;
        ~leave_on_exit() { b.leave(); }
    } guard{*this};
    if (index + 1 == parties_) {
        // The last party releases the others.
        state_ = state::draining;
        arrived_.signal_all();
        return index;
    }
    while (state_ == state::filling) {
        detail::sync_waiter sw("a barrier to fill");
        (void)detail::wait_in(arrived_, sw, nullptr);
    }
    if (state_ == state::broken || state_ == state::resetting)
        throw broken_barrier_error("greenfiber: barrier: Abort or reset of barrier");
    return index;
}

void barrier::leave() noexcept {
    // The last party to leave ends a drain or reset, and lets blocked arrivals in.
    if (--count_ == 0) {
        if (state_ == state::resetting || state_ == state::draining) state_ = state::filling;
        blocked_.signal_all();
    }
}

void barrier::reset() noexcept {
    if (count_ > 0) {
        state_ = state::resetting;
    } else {
        state_ = state::filling;
    }
    arrived_.signal_all();
    blocked_.signal_all();
}

void barrier::abort() noexcept {
    state_ = state::broken;
    arrived_.signal_all();
    blocked_.signal_all();
}

}  // namespace greenfiber
