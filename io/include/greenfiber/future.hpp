#pragma once
/// \file
/// A one-shot result that fibers can wait for: promise<T> sets it, future<T> reads it
/// (gevent's AsyncResult, split into its two ends as std::promise and std::shared_future are).
///
///     greenfiber::promise<int> p;
///     auto f = p.get_future();
///     auto t = greenfiber::spawn([f = f.share()]() mutable { return f.get() * 2; });
///     p.set_value(21);   // wakes every fiber waiting in get(); t returns 42
///
/// The result is set once (a value or an exception); any number of fibers may wait for it
/// and all see the same result. A promise destroyed before setting it sets broken_promise,
/// so no fiber waits forever for it. A waiting fiber that is cancelled just leaves; the
/// other waiters are not affected.
///
/// Thread: thread-bound (fibers of one hub), except that a promise may be fulfilled, broken
/// or destroyed from any thread, a plain std::thread included: that is sent to its hub (see
/// promise). A fiber waiting for a result holds a hub_handle meanwhile, since the promise
/// may be on another thread: the hub never raises loop_exit in it. A promise that nobody
/// will ever set must therefore be destroyed (its waiters then get broken_promise), or the
/// wait bounded (wait_for), or the waiting task cancelled.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <chrono>
#include <concepts>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "greenfiber/deadline.hpp"
#include "greenfiber/detail/hub_anchor.hpp"
#include "greenfiber/error.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"

namespace greenfiber {

/// The error a future gets when its promise was destroyed without setting a result.
class broken_promise : public error {
  public:
    using error::error;
};

template <class T>
class future;

namespace detail {

/// The state a promise and its futures share. Thread-bound.
template <class T>
struct future_state {
    using stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
    std::optional<stored> value;
    std::exception_ptr error;
    wait_list waiters;  // fibers in get()/wait()
    bool ready() const noexcept { return value.has_value() || error != nullptr; }
    /// Sets broken_promise and wakes the waiters, unless a result is set.
    void break_if_unset() noexcept {
        if (ready()) return;
        error = std::make_exception_ptr(broken_promise(
            "greenfiber: the promise was destroyed before it set a result (broken promise)"));
        waiters.signal_all();
    }
};

/// What future<T>::get() returns: a reference to the shared value, or nothing.
template <class T>
struct future_ref {
    using type = const T&;
};
template <>
struct future_ref<void> {
    using type = void;
};

/// What future<T>::get_until() returns: a copy of the value (nullopt on timeout), or
/// whether it is ready.
template <class T>
struct future_opt {
    using type = std::optional<T>;
};
template <>
struct future_opt<void> {
    using type = bool;
};

}  // namespace detail

/// The setting end of a one-shot result. Move-only.
/// A promise belongs to the hub of the thread that creates it (creating that hub if there is
/// none), whose fibers wait for its result. On that thread everything happens at once. From
/// any other thread (a to_thread() job, a plain std::thread), set_value(), set_exception()
/// and the destructor are sent to the hub (hub::post: thread-safe, and it wakes the hub),
/// where the result is set, or broken, and the waiters woken; a result that turns out to be
/// set already by then is reported through the hub (there is nobody to throw to). If that
/// thread has exited, there is no fiber left to wake and the result is set in place.
/// Thread: thread-bound, except set_value(), set_exception() and the destructor, which are
///         thread-safe in the sense above (one thread at a time per promise).
template <class T>
class promise {
  public:
    /// A promise with a fresh, unset result, belonging to this thread's hub.
    /// Switches: no.   Throws: std::bad_alloc.
    promise()
        : s_(std::make_shared<detail::future_state<T>>()), home_(detail::hub_anchor::current()) {}
    /// Takes over `o`'s result; `o` is left without one. Switches: no.
    promise(promise&& o) noexcept = default;
    /// Breaks the result this promise held if it was not set (see ~promise).
    promise& operator=(promise&& o) noexcept {
        promise(std::move(o)).swap(*this);
        return *this;
    }
    promise(const promise&) = delete;
    promise& operator=(const promise&) = delete;

    /// If the result was never set, sets broken_promise and wakes its waiters (on its hub).
    /// Switches: no.   Thread: any (see the class comment).
    ~promise() {
        if (s_ == nullptr) return;
        if (home_->on_its_thread()) {
            s_->break_if_unset();
            return;
        }
        // This reference goes with the function, so the state (and a value in it) is not
        // destroyed here either.
        auto brk = [s = std::move(s_)] {
            if (s) s->break_if_unset();
        };
        try {
            if (home_->post(std::move(brk))) return;
        } catch (...) {
            // Out of memory: broken in place below, the best that is left.
        }
        brk();  // the hub's thread has exited: no fiber is left to wake
    }

    /// Exchanges the results of two promises. Switches: no.
    void swap(promise& o) noexcept {
        s_.swap(o.s_);
        home_.swap(o.home_);
    }

    /// A future for this result; may be called any number of times. Switches: no.
    /// Throws: greenfiber::error on a moved-from promise.
    future<T> get_future() const { return future<T>(state("get_future")); }

    /// Sets the value, constructed from `args` (none for promise<void>), and wakes every
    /// waiting fiber (they run later). From another thread the value is constructed there
    /// and moved to the promise's hub (see the class comment).
    /// Switches: no.   Thread: any (see the class comment).
    /// Throws: invalid_state_error if a result was already set (on the promise's thread);
    /// what T's constructor throws; std::bad_alloc; greenfiber::error on a moved-from promise,
    /// or from another thread if T cannot be moved.
    template <class... Args>
    requires std::is_constructible_v<typename detail::future_state<T>::stored, Args &&...> void
    set_value(Args&&... args) {
        using stored = typename detail::future_state<T>::stored;
        (void)state("set_value");
        if (!home_->on_its_thread()) {
            if constexpr (std::is_move_constructible_v<stored>) {
                auto set = [s = s_, v = stored(std::forward<Args>(args)...)]() mutable {
                    if (s->ready()) return report_already_set("set_value");
                    s->value.emplace(std::move(v));
                    s->waiters.signal_all();
                };
                if (home_->post(std::move(set))) return;
                // The hub's thread has exited: nobody waits; set in place.
                set();
                return;
            } else {
                throw error(
                    "greenfiber: promise.set_value(): called from another thread than the "
                    "promise's, with a value that cannot be moved to it");
            }
        }
        auto& s = check_unset("set_value");
        s.value.emplace(std::forward<Args>(args)...);
        s.waiters.signal_all();
    }

    /// Sets an exception that get() will rethrow, and wakes every waiting fiber.
    /// Switches: no.   Thread: any (see the class comment).
    /// Throws: invalid_state_error if a result was already set (on the promise's thread);
    /// std::bad_alloc; greenfiber::error if `e` is null or the promise is moved-from.
    void set_exception(std::exception_ptr e) {
        if (e == nullptr) throw error("greenfiber: promise.set_exception(): null exception_ptr");
        (void)state("set_exception");
        if (!home_->on_its_thread()) {
            auto set = [s = s_, e = std::move(e)]() mutable {
                if (s->ready()) return report_already_set("set_exception");
                s->error = std::move(e);
                s->waiters.signal_all();
            };
            if (home_->post(std::move(set))) return;
            set();
            return;
        }
        auto& s = check_unset("set_exception");
        s.error = std::move(e);
        s.waiters.signal_all();
    }
    /// set_exception(std::make_exception_ptr(e)).
    template <class E>
    requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>) void set_exception(E&& e) {
        set_exception(std::make_exception_ptr(std::forward<E>(e)));
    }

    /// Whether a result is set. Switches: no.   Thread: thread-bound.
    bool ready() const noexcept { return s_ != nullptr && s_->ready(); }

  private:
    /// A result sent from another thread found one already set: nobody to throw to.
    static void report_already_set(const char* op) noexcept {
        try {
            hub::current().report({std::string("greenfiber: promise.") + op +
                                       "() from another thread: the result was already set "
                                       "(invalid state); this one is dropped",
                                   nullptr, nullptr, report_severity::warning, "promise"});
        } catch (...) {
        }
    }

    const std::shared_ptr<detail::future_state<T>>& state(const char* op) const {
        if (s_ == nullptr)
            throw error(std::string("greenfiber: promise.") + op + "(): moved-from promise");
        return s_;
    }
    detail::future_state<T>& check_unset(const char* op) {
        auto& s = *state(op);
        if (s.ready())
            throw invalid_state_error(std::string("greenfiber: promise.") + op +
                                      "(): the result is already set (invalid state)");
        return s;
    }

    std::shared_ptr<detail::future_state<T>> s_;  // Shared with the futures.
    std::shared_ptr<detail::hub_anchor> home_;    // Shared: the way to the promise's hub.
};

/// The reading end of a one-shot result: get() waits until it is set. Move-only; share()
/// gives another handle to the same result, so several fibers can wait.
/// Thread: thread-bound.
template <class T>
class future {
  public:
    ///@{
    /// The clock types of the timed waits.
    using time_point = std::chrono::steady_clock::time_point;
    using duration = std::chrono::steady_clock::duration;
    ///@}

    /// A future with no state (valid() is false). Switches: no.
    future() noexcept = default;
    ///@{
    /// Takes over the other future's state; it is left without one (valid() is false).
    /// Switches: no.
    future(future&&) noexcept = default;
    future& operator=(future&&) noexcept = default;
    ///@}
    future(const future&) = delete;
    future& operator=(const future&) = delete;

    /// Another handle to the same result. Switches: no.
    future share() const noexcept { return future(s_); }

    /// Whether it refers to a result (false when default-constructed or moved from).
    /// Switches: no.
    bool valid() const noexcept { return s_ != nullptr; }
    /// Whether the result is set (gevent's ready()). Switches: no.
    bool ready() const noexcept { return s_ != nullptr && s_->ready(); }
    /// Whether it is set to a value (gevent's successful()). Switches: no.
    bool has_value() const noexcept { return s_ != nullptr && s_->value.has_value(); }
    /// Whether it is set to an exception. Switches: no.
    bool has_exception() const noexcept { return s_ != nullptr && s_->error != nullptr; }

    /// Waits until the result is set; returns at once if it is. Never loop_exit: the promise
    /// may be set from another thread (see the file comment).
    /// Switches: only when it must wait.
    /// Throws: cancelled_error; greenfiber::error if !valid().
    void wait() { (void)wait_impl(nullptr); }
    /// wait() that gives up at `deadline`: returns whether the result is set.
    /// Switches: only when it must wait.   Throws: as wait().
    bool wait_until(time_point deadline) { return wait_impl(&deadline); }
    /// wait_until(now + `timeout`); any duration type, saturating (hours::max() waits
    /// practically forever; zero or less does not wait).
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> timeout) {
        return wait_until(detail::deadline_after(timeout));
    }

    /// Waits until the result is set, then returns (a reference to) the value, which lives
    /// as long as any handle to the result, or rethrows the exception.
    /// Switches: only when it must wait.
    /// Throws: the exception that was set (broken_promise included); cancelled_error;
    /// greenfiber::error if !valid().
    typename detail::future_ref<T>::type get() {
        wait();
        return result();
    }

    /// get() that gives up at `deadline`: a copy of the value, or std::nullopt if the
    /// deadline passed first (for future<void>: true, or false on timeout).
    /// Switches: only when it must wait.   Throws: as get().
    typename detail::future_opt<T>::type get_until(time_point deadline) requires(
        std::is_void_v<T> || std::copy_constructible<T>) {
        if (!wait_until(deadline)) return {};
        if constexpr (std::is_void_v<T>) {
            result();
            return true;
        } else {
            return result();
        }
    }
    /// get_until(now + `timeout`); any duration type, saturating as wait_for().
    template <class Rep, class Period>
    typename detail::future_opt<T>::type get_for(
        std::chrono::duration<Rep, Period> timeout) requires(std::is_void_v<T> ||
                                                             std::copy_constructible<T>) {
        return get_until(detail::deadline_after(timeout));
    }

    /// The result without waiting: the value, or the exception rethrown. Switches: no.
    /// Throws: invalid_state_error "Result is not set." if it is not set; the exception.
    typename detail::future_ref<T>::type result() const {
        const auto& s = state("result");
        if (!s.ready())
            throw invalid_state_error("greenfiber: future.result(): Result is not set.");
        if (s.error) std::rethrow_exception(s.error);
        if constexpr (!std::is_void_v<T>) return *s.value;
    }

    /// The exception that was set, or null if a value was. Switches: no.
    /// Throws: invalid_state_error "Exception is not set." if the result is not set.
    std::exception_ptr exception() const {
        const auto& s = state("exception");
        if (!s.ready())
            throw invalid_state_error("greenfiber: future.exception(): Exception is not set.");
        return s.error;
    }

  private:
    friend class promise<T>;
    explicit future(std::shared_ptr<detail::future_state<T>> s) noexcept : s_(std::move(s)) {}

    const detail::future_state<T>& state(const char* op) const {
        if (s_ == nullptr)
            throw error(std::string("greenfiber: future.") + op + "(): the future has no state");
        return *s_;
    }

    bool wait_impl(const time_point* deadline) {
        (void)state("wait");
        if (s_->ready()) return true;
        if (deadline != nullptr && detail::deadline_passed(*deadline)) return false;
        // Keep the state alive while parked, whatever happens to this handle meanwhile.
        std::shared_ptr<detail::future_state<T>> keep = s_;
        // The promise may be on another thread, which will post the result: while this
        // fiber waits the hub does not call the wait hopeless (see the class comment).
        hub_handle hold = hub::current().keep_alive();
        detail::sync_waiter sw("a future's result");
        // Nothing to pass on: setting the result woke every waiter.
        (void)detail::wait_in(keep->waiters, sw, deadline);
        return keep->ready();
    }

    std::shared_ptr<detail::future_state<T>> s_;  // Shared with the promise; null if invalid.
};

}  // namespace greenfiber
