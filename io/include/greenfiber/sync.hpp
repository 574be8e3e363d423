#pragma once
/// \file
/// Fiber-aware synchronisation primitives with asyncio's semantics: mutex (asyncio's Lock,
/// also spelled `lock`), rlock, event, semaphore, bounded_semaphore, condition, barrier.
///
/// They are for the fibers of one hub (one thread): a wait parks only the calling fiber,
/// and nothing here is thread-safe. To use one from another thread, post() to its hub.
///
/// Every wait is cancellation-safe in asyncio's sense and stronger: a fiber that was
/// *granted* something (a lock handed over, a semaphore unit, a condition notification)
/// and is cancelled before it runs again passes the grant on to the next waiter, or back
/// to the primitive; nothing is lost and nobody waits for a grant that went to a fiber
/// that will never use it. A condition re-acquires its lock before a cancellation leaves
/// its wait. (asyncio's gh-90155 and python/asyncio#270 are the bugs this prevents; the
/// library's tests cancel waiters just after they were granted something.)
///
/// Waiting is FIFO: the fiber that waited longest is served first, and a fiber that
/// arrives while others wait never overtakes them.
///
/// Cancellation (task.cancel()) raises cancelled_error in a waiting fiber; a wait that
/// does not have to suspend (the lock is free, the event is set) completes without
/// looking at a pending cancellation, as asyncio's do. A timed wait that was granted just
/// as its deadline passed reports success: the grant wins. The `*_for` waits take any
/// duration type and saturate (detail::deadline_after): hours::max() waits practically
/// forever; zero or a negative duration does not wait.
///
/// Destroying a primitive while fibers wait on it aborts with a message: their wait
/// records, which live in their frames, would otherwise dangle.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>

#include "greenfiber/detail/wait_list.hpp"
#include "greenfiber/error.hpp"
#include "greenfiber/hub.hpp"

namespace greenfiber {

/// asyncio's Lock: a non-reentrant mutual-exclusion lock for fibers, FIFO-fair. It has no
/// owner: any fiber may unlock it (as asyncio allows), and a fiber that locks it twice
/// waits for itself. It is a Lockable and TimedLockable, so std::lock_guard,
/// std::unique_lock and std::scoped_lock work with it. Unlocking hands the lock directly
/// to the longest waiter, so a fiber that arrives later never barges in.
///
/// (The class is `mutex` because a class cannot have a member function named like itself;
/// `greenfiber::lock` is an alias, spelled as asyncio spells it.)
///
/// Thread: thread-bound (fibers of one hub). Must outlive its waiters.
class mutex {
  public:
    /// An unlocked lock. Switches: no.
    mutex() noexcept = default;
    /// An unlocked lock named `name` (see name()). Switches: no.
    explicit mutex(std::string name) noexcept : name_(std::move(name)) {}
    mutex(const mutex&) = delete;
    mutex& operator=(const mutex&) = delete;

    /// Locks it, waiting (FIFO) while another holds it.
    /// Switches: only when it must wait.   Thread: thread-bound.
    /// Throws: cancelled_error (then it does not hold the lock); loop_exit.
    void lock() {
        if (!locked_) {
            locked_ = true;
            holder_ = detail::tls != nullptr ? detail::tls->current : nullptr;
            return;
        }
        (void)wait_slow(nullptr);
    }

    /// Locks it if it is free and nobody waits. Switches: no.
    [[nodiscard]] bool try_lock() noexcept {
        if (locked_) return false;
        locked_ = true;
        holder_ = detail::tls != nullptr ? detail::tls->current : nullptr;
        return true;
    }

    /// Locks it, waiting at most until `deadline`; returns false if it passed first (then
    /// the lock is not held). Switches: only when it must wait.
    /// Throws: cancelled_error; loop_exit.
    [[nodiscard]] bool lock_until(std::chrono::steady_clock::time_point deadline) {
        if (try_lock()) return true;
        if (detail::deadline_passed(deadline)) return false;
        return wait_slow(&deadline);
    }
    /// lock_until(now + `timeout`).
    template <class Rep, class Period>
    [[nodiscard]] bool lock_for(std::chrono::duration<Rep, Period> timeout) {
        return lock_until(detail::deadline_after(timeout));
    }
    ///@{
    /// The TimedLockable spellings of lock_until / lock_for (for std::unique_lock).
    [[nodiscard]] bool try_lock_until(std::chrono::steady_clock::time_point deadline) {
        return lock_until(deadline);
    }
    template <class Rep, class Period>
    [[nodiscard]] bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
        return lock_for(timeout);
    }
    ///@}

    /// Unlocks it; the longest waiter, if any, gets it (it runs later).
    /// Switches: no.   Throws: greenfiber::error "Lock is not acquired." if it is not locked.
    void unlock();

    /// Whether some fiber holds it (or it was handed to a waiter that has not run yet).
    /// Switches: no.
    bool locked() const noexcept { return locked_; }

    ///@{
    /// The name that describes a wait on it (any_task::waiting_for()); "" by default.
    /// Switches: no.   Throws: std::bad_alloc (set_name).
    const std::string& name() const noexcept { return name_; }
    void set_name(std::string name) { name_ = std::move(name); }
    ///@}

  private:
    friend class condition;
    bool wait_slow(const std::chrono::steady_clock::time_point* deadline);
    void hand_over() noexcept;
    void lock_shielded();
    void claim() noexcept;
    static std::string describe(const detail::waiter& w);

    bool locked_ = false;
    /// The fiber that took it last (for a wait's description only; the lock has no owner).
    /// Borrowed and possibly dangling: compared with live tasks, never dereferenced.
    const detail::greenlet_impl* holder_ = nullptr;
    std::string name_;
    /// Deferred claims of killed condition waiters (see condition::wait): each makes one
    /// unlock() a no-op. Nonzero only while locked_.
    std::size_t claims_ = 0;
    detail::wait_list waiters_;
};

/// asyncio's spelling of mutex.
using lock = mutex;

/// A reentrant lock (threading.RLock for fibers): the fiber (greenlet) that holds it may
/// lock it again; it is released when unlocked as many times as locked. Only the owner may
/// unlock it. FIFO-fair, handed directly to the longest waiter. Lockable and TimedLockable.
/// Thread: thread-bound. Must outlive its waiters.
class rlock {
  public:
    /// An unlocked rlock. Switches: no.
    rlock() noexcept = default;
    rlock(const rlock&) = delete;
    rlock& operator=(const rlock&) = delete;

    /// Locks it (again, if the calling fiber owns it), waiting while another fiber owns it.
    /// Switches: only when it must wait.   Throws: cancelled_error; loop_exit.
    void lock() { (void)lock_impl(nullptr); }
    /// Locks it if it is free or already the caller's. Switches: no.
    [[nodiscard]] bool try_lock();
    /// lock() that gives up at `deadline` (returns false; nothing held).
    /// Switches: only when it must wait.   Throws: cancelled_error; loop_exit.
    [[nodiscard]] bool lock_until(std::chrono::steady_clock::time_point deadline) {
        return lock_impl(&deadline);
    }
    /// lock_until(now + `timeout`).
    template <class Rep, class Period>
    [[nodiscard]] bool lock_for(std::chrono::duration<Rep, Period> timeout) {
        return lock_until(detail::deadline_after(timeout));
    }
    ///@{
    /// The TimedLockable spellings of lock_until / lock_for (for std::unique_lock).
    [[nodiscard]] bool try_lock_until(std::chrono::steady_clock::time_point deadline) {
        return lock_until(deadline);
    }
    template <class Rep, class Period>
    [[nodiscard]] bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
        return lock_for(timeout);
    }
    ///@}

    /// Undoes one lock(); the last one hands it to the longest waiter.
    /// Switches: no.   Throws: greenfiber::error "cannot release un-acquired lock" if the
    /// calling fiber does not own it.
    void unlock();

    /// Whether a fiber owns it. Switches: no.
    bool locked() const noexcept { return count_ > 0; }
    /// Whether the calling fiber owns it. Switches: no.
    bool owned_by_current() const noexcept;
    /// How many times its owner holds it (0 when unlocked). Switches: no.
    std::size_t recursion_count() const noexcept { return count_; }

  private:
    bool lock_impl(const std::chrono::steady_clock::time_point* deadline);
    void hand_over() noexcept;

    const detail::greenlet_impl* owner_ = nullptr;  // Borrowed; null when unlocked.
    std::size_t count_ = 0;
    detail::wait_list waiters_;
};

/// asyncio's Event: a flag that fibers can wait for. set() wakes every waiter; a waiter
/// that was woken returns true even if the flag is cleared again before it runs.
/// From another thread (asyncio: loop.call_soon_threadsafe(event.set)), set it through a
/// hub_handle taken on the event's thread: the handle posts set() to the hub, and while the
/// other thread holds it the waiting fibers wait instead of getting loop_exit:
///
///     greenfiber::event ready;
///     std::thread worker([h = greenfiber::hub::current().keep_alive(), &ready]() mutable {
///         h.post([&ready] { ready.set(); });
///     });
///     ready.wait();
///
/// Thread: thread-bound (set it from another thread as above). Must outlive its waiters.
class event {
  public:
    /// A cleared event. Switches: no.
    event() noexcept = default;
    /// A cleared event named `name` (see name()). Switches: no.
    explicit event(std::string name) noexcept : name_(std::move(name)) {}
    event(const event&) = delete;
    event& operator=(const event&) = delete;

    /// Sets the flag and wakes every waiting fiber. Switches: no.
    void set() noexcept;
    /// Clears the flag. Switches: no.
    void clear() noexcept { set_ = false; }
    /// Whether the flag is set. Switches: no.
    bool is_set() const noexcept { return set_; }

    /// Returns at once if the flag is set, else waits until set() is called.
    /// Switches: only when it must wait.   Throws: cancelled_error; loop_exit.
    void wait() { (void)wait_impl(nullptr); }
    /// wait() that gives up at `deadline`: returns true if set, false if it passed first.
    /// Switches: only when it must wait.   Throws: cancelled_error; loop_exit.
    bool wait_until(std::chrono::steady_clock::time_point deadline) { return wait_impl(&deadline); }
    /// wait_until(now + `timeout`).
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> timeout) {
        return wait_until(detail::deadline_after(timeout));
    }

    ///@{
    /// The name that describes a wait on it (any_task::waiting_for()); "" by default.
    /// Switches: no.   Throws: std::bad_alloc (set_name).
    const std::string& name() const noexcept { return name_; }
    void set_name(std::string name) { name_ = std::move(name); }
    ///@}

  private:
    bool wait_impl(const std::chrono::steady_clock::time_point* deadline);
    static std::string describe(const detail::waiter& w);

    bool set_ = false;
    std::string name_;
    detail::wait_list waiters_;
};

/// asyncio's Semaphore: a counter of units; acquire() takes one, waiting while none is
/// left; release() returns one. FIFO (asyncio since gh-90155): a released unit goes
/// directly to the longest waiter, so a later acquire() never overtakes a waiting one.
/// Thread: thread-bound. Must outlive its waiters.
class semaphore {
  public:
    /// A semaphore with `value` units. Switches: no.
    explicit semaphore(std::size_t value = 1) noexcept
        : value_(value), bound_(static_cast<std::size_t>(-1)) {}
    semaphore(const semaphore&) = delete;
    semaphore& operator=(const semaphore&) = delete;

    /// Takes a unit, waiting (FIFO) while none is free.
    /// Switches: only when it must wait.   Throws: cancelled_error (then no unit is held);
    /// loop_exit.
    void acquire() {
        if (try_acquire()) return;
        (void)wait_slow(nullptr);
    }
    /// Takes a unit if one is free and nobody waits. Switches: no.
    [[nodiscard]] bool try_acquire() noexcept {
        if (value_ == 0) return false;
        --value_;
        return true;
    }
    /// acquire() that gives up at `deadline` (returns false; no unit held).
    /// Switches: only when it must wait.   Throws: cancelled_error; loop_exit.
    [[nodiscard]] bool acquire_until(std::chrono::steady_clock::time_point deadline) {
        if (try_acquire()) return true;
        if (detail::deadline_passed(deadline)) return false;
        return wait_slow(&deadline);
    }
    /// acquire_until(now + `timeout`).
    template <class Rep, class Period>
    [[nodiscard]] bool acquire_for(std::chrono::duration<Rep, Period> timeout) {
        return acquire_until(detail::deadline_after(timeout));
    }

    /// Returns a unit: to the longest waiter if any (it runs later), else to the counter.
    /// Switches: no.   Throws: greenfiber::error "BoundedSemaphore released too many
    /// times" for a bounded_semaphore released above its initial value.
    void release();

    /// Free units (0 while fibers wait). Switches: no.
    std::size_t value() const noexcept { return value_; }
    /// True when acquire() would wait. Switches: no.
    bool locked() const noexcept { return value_ == 0; }

    ///@{
    /// The name that describes a wait on it (any_task::waiting_for()); "" by default.
    /// Switches: no.   Throws: std::bad_alloc (set_name).
    const std::string& name() const noexcept { return name_; }
    void set_name(std::string name) { name_ = std::move(name); }
    ///@}

  protected:
    /// A semaphore that refuses to hold more than `bound` free units.
    semaphore(std::size_t value, std::size_t bound) noexcept : value_(value), bound_(bound) {}

  private:
    bool wait_slow(const std::chrono::steady_clock::time_point* deadline);
    void hand_over() noexcept;
    static std::string describe(const detail::waiter& w);

    std::string name_;
    std::size_t value_;
    std::size_t bound_;  // release() above this throws; SIZE_MAX for a plain semaphore
    detail::wait_list waiters_;
};

/// asyncio's BoundedSemaphore: a semaphore whose release() throws when it would raise the
/// value above the initial one (a release without an acquire).
/// Thread: thread-bound.
class bounded_semaphore : public semaphore {
  public:
    /// A semaphore with `value` units, never more. Switches: no.
    explicit bounded_semaphore(std::size_t value = 1) noexcept : semaphore(value, value) {}
};

/// asyncio's Condition: fibers wait on it for a notification while its lock is released.
/// It is also the lock itself (lock(), unlock(), with std::lock_guard), the asyncio way:
///
///     std::lock_guard g(cond);
///     cond.wait_for([&] { return ready; });
///
/// A wait releases the lock, parks, and re-acquires the lock before it returns — also
/// when it is cancelled or times out: the exception leaves with the lock held, so the
/// guard's unlock stays correct. A notified fiber cancelled before it runs passes its
/// notification on to the next waiter. A fiber *killed* in a wait (greenlet_exit: its hub
/// is being destroyed, or its last handle dropped) never waits again: if another fiber
/// holds the lock by then, the killed one leaves with a deferred claim that makes its own
/// next unlock (normally its guard's, as it unwinds) a no-op, so the holder keeps the lock.
/// Thread: thread-bound. Must outlive its waiters; a borrowed mutex must outlive it.
class condition {
  public:
    /// A condition with its own lock. Switches: no.
    condition() noexcept : m_(&own_) {}
    /// A condition over `m` (borrowed: it must outlive the condition). Switches: no.
    explicit condition(mutex& m) noexcept : m_(&m) {}
    condition(const condition&) = delete;
    condition& operator=(const condition&) = delete;

    ///@{
    /// The lock's operations (see mutex): Lockable and TimedLockable.
    /// Switches: lock*() only when they must wait.   Throws: as mutex's.
    void lock() { m_->lock(); }
    [[nodiscard]] bool try_lock() noexcept { return m_->try_lock(); }
    [[nodiscard]] bool lock_until(std::chrono::steady_clock::time_point deadline) {
        return m_->lock_until(deadline);
    }
    template <class Rep, class Period>
    [[nodiscard]] bool lock_for(std::chrono::duration<Rep, Period> timeout) {
        return m_->lock_for(timeout);
    }
    [[nodiscard]] bool try_lock_until(std::chrono::steady_clock::time_point deadline) {
        return m_->lock_until(deadline);
    }
    template <class Rep, class Period>
    [[nodiscard]] bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
        return m_->lock_for(timeout);
    }
    void unlock() { m_->unlock(); }
    bool locked() const noexcept { return m_->locked(); }
    ///@}

    /// Releases the lock, waits until notified, re-acquires the lock.
    /// Switches: yes.
    /// Throws: greenfiber::error "cannot wait on un-acquired lock" if the lock is not held;
    /// cancelled_error (the lock is held again when it leaves); loop_exit; greenlet_exit
    /// when killed (see the class comment).
    void wait() { (void)wait_impl(nullptr); }

    /// wait() that stops waiting for a notification at `deadline`: returns true if
    /// notified, false if it passed first. The lock is re-acquired in both cases.
    /// Switches: yes.   Throws: as wait().
    bool wait_until(std::chrono::steady_clock::time_point deadline) { return wait_impl(&deadline); }
    /// wait_until(now + `timeout`).
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> timeout) {
        return wait_until(detail::deadline_after(timeout));
    }

    /// asyncio's wait_for(predicate): waits until `pred()` is truthy and returns its value;
    /// `pred` is evaluated with the lock held, first before any wait.
    /// Switches: only when it must wait.   Throws: as wait(); what `pred` throws.
    template <class Pred>
    requires std::invocable<Pred&>
    auto wait_for(Pred pred) -> std::decay_t<std::invoke_result_t<Pred&>> {
        auto result = pred();
        while (!result) {
            wait();
            result = pred();
        }
        return result;
    }

    /// Waits until `pred()` is true or `deadline` passes; returns the last value of
    /// `pred()` (std::condition_variable's form). Switches: only when it must wait.
    /// Throws: as wait(); what `pred` throws.
    template <class Pred>
    bool wait_until(std::chrono::steady_clock::time_point deadline, Pred pred) {
        while (!pred()) {
            if (!wait_until(deadline)) return static_cast<bool>(pred());
        }
        return true;
    }
    /// wait_until(now + `timeout`, pred).
    template <class Rep, class Period, class Pred>
    bool wait_for(std::chrono::duration<Rep, Period> timeout, Pred pred) {
        return wait_until(detail::deadline_after(timeout), std::move(pred));
    }

    /// Wakes up to `n` waiters, longest first; they return once they re-acquire the lock.
    /// Switches: no.
    /// Throws: greenfiber::error "cannot notify on un-acquired lock" if the lock is not held.
    void notify(std::size_t n = 1);
    /// Wakes every waiter. Switches: no.   Throws: as notify().
    void notify_all() { notify(waiters_.size()); }

    /// How many fibers wait for a notification. Switches: no.
    std::size_t waiting() const noexcept { return waiters_.size(); }

    ///@{
    /// The name that describes a wait on it (any_task::waiting_for()); "" by default.
    /// Switches: no.   Throws: std::bad_alloc (set_name).
    const std::string& name() const noexcept { return name_; }
    void set_name(std::string name) { name_ = std::move(name); }
    ///@}

  private:
    bool wait_impl(const std::chrono::steady_clock::time_point* deadline);
    static std::string describe(const detail::waiter& w);
    std::string name_;
    void notify_waiters(std::size_t n) noexcept;

    mutex own_;
    mutex* m_;  // Borrowed: own_ or the constructor's argument.
    detail::wait_list waiters_;
};

/// The error of a barrier that was aborted, or reset while fibers waited in it
/// (asyncio's BrokenBarrierError).
class broken_barrier_error : public error {
  public:
    using error::error;
};

/// asyncio's Barrier (3.11): `parties` fibers meet; each wait() returns once all have
/// arrived, with the caller's arrival index (0 .. parties-1). After the last one arrives
/// the barrier drains (new arrivals wait until every party has left) and then fills again
/// for the next round. A waiting fiber that is cancelled just leaves (it no longer counts);
/// the barrier is not broken.
/// Thread: thread-bound. Must outlive its waiters.
class barrier {
  public:
    /// A barrier for `parties` fibers. Switches: no.
    /// Throws: greenfiber::error "parties must be > 0" if `parties` is 0.
    explicit barrier(std::size_t parties);
    barrier(const barrier&) = delete;
    barrier& operator=(const barrier&) = delete;

    /// Arrives and waits until `parties` fibers have; returns the arrival index. The last
    /// one to arrive releases the others and returns without suspending.
    /// Switches: unless it is the last to arrive (and the barrier is not draining).
    /// Throws: broken_barrier_error "Barrier aborted" if broken on arrival, "Abort or reset
    /// of barrier" if aborted or reset while waiting; cancelled_error; loop_exit.
    std::size_t wait();

    /// Returns it to the empty state; fibers waiting in it get broken_barrier_error.
    /// Switches: no.
    void reset() noexcept;
    /// Breaks it: current and future wait() calls throw broken_barrier_error until reset().
    /// Switches: no.
    void abort() noexcept;

    /// The number of parties a round needs. Switches: no.
    std::size_t parties() const noexcept { return parties_; }
    /// Fibers waiting for the current round to fill. Switches: no.
    std::size_t n_waiting() const noexcept { return state_ == state::filling ? count_ : 0; }
    /// Whether abort() broke it (until reset()). Switches: no.
    bool broken() const noexcept { return state_ == state::broken; }

  private:
    enum class state { filling, draining, resetting, broken };
    void leave() noexcept;

    std::size_t parties_;
    std::size_t count_ = 0;  // parties inside wait() (arrived and not yet left)
    state state_ = state::filling;
    detail::wait_list arrived_;  // parties waiting for the round to fill
    detail::wait_list blocked_;  // arrivals waiting for a drain or reset to finish
};

}  // namespace greenfiber
