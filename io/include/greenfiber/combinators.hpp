#pragma once
/// \file
/// Waiting for several tasks and bounding waits in time: gather(), gather_outcomes(), wait(),
/// as_completed, timeout(), timeout_guard, task_group and pool.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <chrono>
#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "greenfiber/loop.hpp"
#include "greenfiber/task.hpp"

namespace greenfiber {

/// A wait that ran out of time (asyncio's TimeoutError): wait_for(), timeout(),
/// as_completed().
class timeout_error : public error {
  public:
    using error::error;
};

/// The failures of a task_group, in the order they happened (asyncio's ExceptionGroup).
class exception_group : public error {
  public:
    /// An error with the message `what` over `errors`, in the order they happened.
    exception_group(const std::string& what, std::vector<std::exception_ptr> errors)
        : error(what), errors_(std::move(errors)) {}
    /// The exceptions of the tasks that failed, in the order they happened. Switches: no.
    const std::vector<std::exception_ptr>& errors() const noexcept { return errors_; }

  private:
    std::vector<std::exception_ptr> errors_;
};

/// When wait() returns.
enum class return_when { all_completed, first_completed, first_exception };

/// What gather_outcomes() gives for one task: its result, or the exception it raised
/// (cancelled_error for a cancelled task), asyncio's return_exceptions=True.
template <class T>
class outcome {
  public:
    /// What a successful outcome holds: T, or std::monostate for a task<void>.
    using stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
    ///@{
    /// The outcome of a task that returned `v` / that raised `e`.
    explicit outcome(stored v) : v_(std::move(v)) {}
    explicit outcome(std::exception_ptr e) : v_(std::move(e)) {}
    ///@}
    /// Whether the task returned (true) or raised (false).
    bool has_value() const noexcept { return v_.index() == 0; }
    /// The result. Throws: the task's exception if it failed.
    stored& value() {
        if (!has_value()) std::rethrow_exception(std::get<1>(v_));
        return std::get<0>(v_);
    }
    /// The exception, or null.
    std::exception_ptr error() const noexcept { return has_value() ? nullptr : std::get<1>(v_); }

  private:
    std::variant<stored, std::exception_ptr> v_;
};

/// How gather() treats a failure among its tasks.
struct gather_options {
    /// On the first failure, cancel the tasks still running (asyncio leaves them running).
    bool cancel_on_error = false;
};

namespace detail {

using time_point = std::chrono::steady_clock::time_point;

/// Parks until `rw` holds for `ts`, or until `deadline`. Returns false on timeout.
/// Switches: yes.   Throws: cancelled_error (the caller was cancelled), loop_exit.
bool wait_tasks(const std::vector<task_base*>& ts, return_when rw,
                std::optional<time_point> deadline);

/// Waits for every task, or the first failure (an exception or a cancellation). Returns the
/// index of the failed task, or -1. Cancels the unfinished tasks when the caller is
/// cancelled (and when cancel_on_error and one failed).
int gather_wait(const std::vector<task_base*>& ts, gather_options opts);

std::exception_ptr failure_of(task_base& t);  // the exception of a finished task, retrieved

template <class T>
auto result_of(task<T>& t) {
    if constexpr (std::is_void_v<T>) {
        t.result();
        return std::monostate{};
    } else {
        return t.result();
    }
}

template <class T>
outcome<T> outcome_of(task<T>& t) {
    if (std::exception_ptr e = failure_of(*t.state())) return outcome<T>(std::move(e));
    return outcome<T>(result_of(t));
}

}  // namespace detail

// The order of a combinator's return (gather, gather_outcomes, wait, wait_for), as in
// asyncio: each task's turn among its done callbacks queues a completion callback on the
// hub (at once for a task already finished), and the callback that settles the outcome
// wakes the caller, which resumes one turn later. So whatever the callbacks registered
// before the caller queued has run when it returns, and a gather's failure is the first one
// its callbacks saw. A cancellation of the caller after the outcome is settled is raised
// and leaves the tasks alone (asyncio's inner future is done by then).

///@{
/// Waits for all the tasks and returns their results in argument order (void results are
/// std::monostate). The first failure (in completion order) is rethrown at once — its
/// siblings keep running unless opts.cancel_on_error. Cancelling the caller cancels every
/// unfinished task and raises cancelled_error at once; asyncio 3.11 raises it only when the
/// first of them has finished cancelled, because there the caller awaits the gather's own
/// future, which that child's end cancels. Switches: yes.
/// Throws: the first failure; cancelled_error.
template <class... T>
std::tuple<typename outcome<T>::stored...> gather(gather_options opts, task<T>&... ts) {
    const std::vector<detail::task_base*> states{ts.state()...};
    const int failed = detail::gather_wait(states, opts);
    if (failed >= 0)
        std::rethrow_exception(detail::failure_of(*states[static_cast<std::size_t>(failed)]));
    return std::tuple<typename outcome<T>::stored...>(detail::result_of(ts)...);
}
template <class... T>
std::tuple<typename outcome<T>::stored...> gather(task<T>&... ts) {
    return gather(gather_options{}, ts...);
}
///@}

/// gather() over a range of tasks of one type.
template <class T>
std::vector<typename outcome<T>::stored> gather(std::vector<task<T>>& ts,
                                                gather_options opts = {}) {
    std::vector<detail::task_base*> states;
    for (auto& t : ts) states.push_back(t.state());
    const int failed = detail::gather_wait(states, opts);
    if (failed >= 0)
        std::rethrow_exception(detail::failure_of(*states[static_cast<std::size_t>(failed)]));
    std::vector<typename outcome<T>::stored> out;
    out.reserve(ts.size());
    for (auto& t : ts) out.push_back(detail::result_of(t));
    return out;
}

///@{
/// Waits for all the tasks and returns each one's outcome, exceptions included
/// (asyncio's gather(return_exceptions=True)). Switches: yes.   Throws: cancelled_error.
template <class... T>
std::tuple<outcome<T>...> gather_outcomes(task<T>&... ts) {
    const std::vector<detail::task_base*> states{ts.state()...};
    (void)detail::wait_tasks(states, return_when::all_completed, std::nullopt);
    return std::tuple<outcome<T>...>(detail::outcome_of(ts)...);
}
template <class T>
std::vector<outcome<T>> gather_outcomes(std::vector<task<T>>& ts) {
    std::vector<detail::task_base*> states;
    for (auto& t : ts) states.push_back(t.state());
    (void)detail::wait_tasks(states, return_when::all_completed, std::nullopt);
    std::vector<outcome<T>> out;
    for (auto& t : ts) out.push_back(detail::outcome_of(t));
    return out;
}
///@}

/// The two sets wait() returns, as handles to the same tasks, each in argument order.
template <class T>
struct wait_result {
    /// The tasks that were finished when wait() returned.
    std::vector<task<T>> done;
    /// The tasks that were not.
    std::vector<task<T>> pending;
};

namespace detail {
template <class T>
struct copyable<wait_result<T>> : std::false_type {};  // a task may return a wait_result
}  // namespace detail

/// Waits until `when` holds (asyncio.wait): all tasks finished, the first one finished, or
/// the first one raised (all finished if none raises). With a timeout it returns what it
/// has when the time is up; it never raises on timeout and cancels nothing.
/// Switches: yes.
/// Throws: greenfiber::error "Set of Tasks/Futures is empty." for no tasks; cancelled_error.
template <class T>
wait_result<T> wait(std::vector<task<T>>& ts,
                    std::optional<std::chrono::steady_clock::duration> timeout = {},
                    return_when when = return_when::all_completed) {
    if (ts.empty()) throw error("greenfiber: wait(): Set of Tasks/Futures is empty.");
    std::vector<detail::task_base*> states;
    for (auto& t : ts) states.push_back(t.state());
    std::optional<detail::time_point> deadline;
    if (timeout) deadline = detail::deadline_after(*timeout);
    (void)detail::wait_tasks(states, when, deadline);
    wait_result<T> r;
    for (auto& t : ts) (t.done() ? r.done : r.pending).push_back(t.share());
    return r;
}

namespace detail {

/// The completion order of a set of tasks, recorded by done listeners.
class completion_queue {
  public:
    explicit completion_queue(std::vector<task_base*> ts);
    ~completion_queue();
    completion_queue(const completion_queue&) = delete;
    completion_queue& operator=(const completion_queue&) = delete;
    /// The index of the next task to finish. Throws timeout_error past `deadline`.
    std::size_t next(std::optional<time_point> deadline);
    std::size_t remaining() const noexcept { return remaining_; }

  private:
    struct entry {
        done_listener l;
        completion_queue* q;
        std::size_t index;
    };
    std::vector<task_base*> tasks_;
    std::vector<entry> entries_;
    std::vector<std::size_t> finished_;  // indexes in completion order, not yet handed out
    std::size_t handed_ = 0;
    std::size_t remaining_;
    wait_list waiting_;  // fibers in next(), signalled at every completion
};

}  // namespace detail

/// Hands out the tasks in the order they finish (asyncio.as_completed, yielding the
/// original tasks). With a timeout, next() throws timeout_error once it has passed.
/// Thread: thread-bound.
template <class T>
class as_completed {
  public:
    /// Hands out the tasks of `ts` (it shares them: `ts` is not changed), waiting at most
    /// `timeout` in all. Switches: no.
    explicit as_completed(std::vector<task<T>>& ts,
                          std::optional<std::chrono::steady_clock::duration> timeout = {})
        : tasks_(share_all(ts)), q_(states(tasks_)) {
        if (timeout) deadline_ = detail::deadline_after(*timeout);
    }
    /// Whether a task is left to hand out.
    bool has_next() const noexcept { return q_.remaining() > 0; }
    /// The next task to finish (suspending until one does).
    /// Switches: yes.   Throws: timeout_error; cancelled_error; greenfiber::error if none is left.
    task<T> next() {
        if (!has_next()) throw error("greenfiber: as_completed: every task was already handed out");
        return tasks_[q_.next(deadline_)].share();
    }

    /// An input iterator for range-for: each dereference waits for the next task to finish
    /// (next()), and it equals end() once every task was handed out.
    class iterator {
      public:
        ///@{
        /// The standard iterator types.
        using value_type = task<T>;
        using difference_type = std::ptrdiff_t;
        ///@}
        /// An iterator over `a` (what begin() returns).
        explicit iterator(as_completed* a) : a_(a) {}
        /// next(). Switches: yes.   Throws: as next().
        task<T> operator*() const { return a_->next(); }
        /// Does nothing: dereferencing is what advances.
        iterator& operator++() { return *this; }
        /// Whether every task was handed out.
        bool operator==(std::default_sentinel_t) const { return !a_->has_next(); }

      private:
        as_completed* a_;
    };
    /// Range-for support: each dereference waits for the next task.
    iterator begin() { return iterator(this); }
    /// The end of the range-for (a sentinel).
    std::default_sentinel_t end() { return {}; }

  private:
    static std::vector<task<T>> share_all(std::vector<task<T>>& ts) {
        std::vector<task<T>> out;
        for (auto& t : ts) out.push_back(t.share());
        return out;
    }
    static std::vector<detail::task_base*> states(std::vector<task<T>>& ts) {
        std::vector<detail::task_base*> out;
        for (auto& t : ts) out.push_back(t.state());
        return out;
    }
    std::vector<task<T>> tasks_;
    detail::completion_queue q_;
    std::optional<detail::time_point> deadline_;
};

namespace detail {
/// Waits for `t` until `deadline`; on timeout cancels it, waits for it to finish and throws
/// timeout_error. When the caller is cancelled, cancels `t`, waits for it and rethrows.
void wait_for_or_cancel(task_base& t, time_point deadline, std::chrono::steady_clock::duration d);
}  // namespace detail

/// asyncio.wait_for: the task's result if it finishes within `d`; otherwise cancels it,
/// waits for the cancellation to finish and throws timeout_error. `d` may be of any duration
/// type and saturates (hours::max(): practically forever).
/// Switches: yes.   Throws: timeout_error; the task's exception; cancelled_error.
template <class T, class Rep, class Period>
T wait_for(task<T>& t, std::chrono::duration<Rep, Period> d) {
    detail::wait_for_or_cancel(*t.state(), detail::deadline_after(d),
                               detail::to_steady_duration(d));
    return t.result();
}

/// The running deadline of a timeout() block (asyncio's Timeout object).
class timeout_scope {
  public:
    /// When it expires.
    std::chrono::steady_clock::time_point when() const noexcept { return when_; }
    /// Moves the deadline (earlier or later). Switches: no.
    void reschedule(std::chrono::steady_clock::time_point when);
    /// True once the deadline passed and cancelled the block.
    bool expired() const noexcept { return expired_; }

  private:
    template <class Fn>
    friend auto timeout_at(std::chrono::steady_clock::time_point when, Fn&& fn);
    timeout_scope(std::chrono::steady_clock::time_point when);
    ~timeout_scope();
    void arm();
    /// Each withdraws the block's own cancellation request if it expired; the first call
    /// counts. While cancelled_error propagates out of the block (then it may throw
    /// timeout_error):
    void leave_with_cancel();
    /// When the block returned or let any other exception out:
    void leave() noexcept;
    std::chrono::steady_clock::time_point when_;
    any_task task_;
    int cancelling_at_entry_ = 0;
    bool expired_ = false;
    bool left_ = false;
    timer_handle timer_;
};

/// Runs `fn()` (or `fn(scope)`) in the calling task with a deadline (asyncio.timeout_at):
/// when it passes, the block is cancelled at its current suspension point and this throws
/// timeout_error. Only its own cancellation is converted: a cancel() from elsewhere still
/// leaves as cancelled_error. Returns what fn returns.
/// Switches: yes (whatever fn does).   Thread: in a task only.
/// Throws: timeout_error; what fn throws; greenfiber::error outside a task.
template <class Fn>
auto timeout_at(std::chrono::steady_clock::time_point when, Fn&& fn) {
    timeout_scope scope(when);
    try {
        if constexpr (std::is_invocable_v<Fn&, timeout_scope&>) {
            using R = std::invoke_result_t<Fn&, timeout_scope&>;
            if constexpr (std::is_void_v<R>) {
                fn(scope);
                scope.leave();
            } else {
                R r = fn(scope);
                scope.leave();
                return r;
            }
        } else {
            using R = std::invoke_result_t<Fn&>;
            if constexpr (std::is_void_v<R>) {
                fn();
                scope.leave();
            } else {
                R r = fn();
                scope.leave();
                return r;
            }
        }
    } catch (const cancelled_error&) {
        scope.leave_with_cancel();
        throw;
    } catch (...) {
        scope.leave();
        throw;
    }
}
/// The same with a duration (asyncio.timeout), of any duration type, saturating
/// (hours::max(): practically never).
template <class Rep, class Period, class Fn>
auto timeout(std::chrono::duration<Rep, Period> d, Fn&& fn) {
    return timeout_at(detail::deadline_after(d), std::forward<Fn>(fn));
}

/// gevent's Timeout: while it lives, the deadline raises timeout_error once in the calling
/// task, at its current or next suspension point. No conversion is needed: the error
/// propagates out of the block like any other. Destroying it first disarms it (an
/// undelivered timeout is withdrawn).
///
///     { timeout_guard t(50ms); slow_call(); }  // timeout_error if slow_call() takes 50 ms
///
/// Thread: in a task only, thread-bound.
class timeout_guard {
  public:
    /// Arms a timeout of `d` for the calling task, from now. Switches: no.
    /// Throws: greenfiber::error outside a task.
    explicit timeout_guard(std::chrono::steady_clock::duration d);
    /// The same with any duration type, saturating (hours::max(): practically never).
    template <class Rep, class Period>
    explicit timeout_guard(std::chrono::duration<Rep, Period> d)
        : timeout_guard(detail::to_steady_duration(d)) {}
    ~timeout_guard();
    timeout_guard(const timeout_guard&) = delete;
    timeout_guard& operator=(const timeout_guard&) = delete;
    /// True once the deadline passed.
    bool expired() const noexcept { return expired_; }

  private:
    any_task task_;
    timer_handle timer_;
    bool expired_ = false;
};

/// asyncio.shield: a new task that waits for `t`. Cancelling the new task (or a combinator
/// or a get() waiting on it) does not cancel `t`, whereas cancelling a get() on `t` itself
/// does (see task::get()). Switches: no.
template <class T>
[[nodiscard]] task<T> shield(task<T>& t) {
    return spawn(spawn_options{"shield(" + t.name() + ")", 0}, [inner = t.share()]() mutable {
        inner.wait();  // not get(): a cancellation of the shield must not reach `inner`
        return inner.result();
    });
}

namespace detail {
/// The spawn() overloads without options of a class whose own spawn(spawn_options, fn,
/// args...) does the work (task_group, pool): each records its caller's line as the task's
/// site, as greenfiber::spawn() does, for up to 4 arguments (the pack form beyond records
/// the function's type). CRTP: `Derived` brings these in with a using-declaration.
template <class Derived>
class site_spawners {
  public:
    template <detail::spawnable_first Fn>
    auto spawn(Fn&& fn, detail::call_site at = detail::call_site(std::source_location::current())) {
        return self().spawn(spawn_options{.site = at.loc}, std::forward<Fn>(fn));
    }
    template <detail::spawnable_first Fn, class A1>
    auto spawn(Fn&& fn, A1&& a1,
               detail::call_site at = detail::call_site(std::source_location::current())) {
        return self().spawn(spawn_options{.site = at.loc}, std::forward<Fn>(fn),
                            std::forward<A1>(a1));
    }
    template <detail::spawnable_first Fn, class A1, class A2>
    auto spawn(Fn&& fn, A1&& a1, A2&& a2,
               detail::call_site at = detail::call_site(std::source_location::current())) {
        return self().spawn(spawn_options{.site = at.loc}, std::forward<Fn>(fn),
                            std::forward<A1>(a1), std::forward<A2>(a2));
    }
    template <detail::spawnable_first Fn, class A1, class A2, class A3>
    auto spawn(Fn&& fn, A1&& a1, A2&& a2, A3&& a3,
               detail::call_site at = detail::call_site(std::source_location::current())) {
        return self().spawn(spawn_options{.site = at.loc}, std::forward<Fn>(fn),
                            std::forward<A1>(a1), std::forward<A2>(a2), std::forward<A3>(a3));
    }
    template <detail::spawnable_first Fn, class A1, class A2, class A3, class A4>
    auto spawn(Fn&& fn, A1&& a1, A2&& a2, A3&& a3, A4&& a4,
               detail::call_site at = detail::call_site(std::source_location::current())) {
        return self().spawn(spawn_options{.site = at.loc}, std::forward<Fn>(fn),
                            std::forward<A1>(a1), std::forward<A2>(a2), std::forward<A3>(a3),
                            std::forward<A4>(a4));
    }
    template <detail::spawnable_first Fn, class... Args>
    auto spawn(Fn&& fn, Args&&... args) {
        return self().spawn(spawn_options{.site = std::source_location{}}, std::forward<Fn>(fn),
                            std::forward<Args>(args)...);
    }

  private:
    Derived& self() noexcept { return static_cast<Derived&>(*this); }
};
}  // namespace detail

/// Structured concurrency (asyncio.TaskGroup). Tasks spawned through the group are joined by
/// join(). The first failure of a task (an exception other than a cancellation) cancels the
/// group's other tasks and, unless it is already in join(), the task that owns the group
/// (created it), to stop what its body is doing; the group withdraws that cancellation again
/// when it is joined (asyncio's uncancel()). join() then throws exception_group holding every
/// failure, in the order they happened: failures win over a cancellation of the owner, from
/// the group or from outside, so the code that joins never gets a bare cancelled_error while
/// a failure exists.
///
/// The C++ form of `async with asyncio.TaskGroup() as g:` is with_task_group(body), which
/// also handles a body that throws: the group is cancelled and joined, and the exception
/// joins the failures (exception_group), or, when it is the owner's cancellation and no task
/// failed, goes on as it was. A plain task_group destroyed without join() (the body threw
/// past it) cancels and joins its tasks but cannot throw from its destructor: failures are
/// reported (report_failure), not raised. Prefer with_task_group() when the body can suspend
/// between spawn() and join(). Nested groups nest: an inner group's exception_group is one
/// failure of the outer group. Several fibers may join one group, and each gets the
/// failures; the group must outlive every fiber in its join().
///   with_task_group([](task_group& g) { g.spawn(fetch, a); g.spawn(fetch, b); });
/// Thread: thread-bound.
class task_group : public detail::site_spawners<task_group> {
  public:
    task_group();
    ~task_group();
    task_group(const task_group&) = delete;
    task_group& operator=(const task_group&) = delete;

    ///@{
    /// Spawns `fn(args...)` in the group, with `opts` if given. The task's site is the
    /// caller's line, as with greenfiber::spawn() (up to 4 arguments without options).
    /// Switches: no.   Throws: greenfiber::error once the group is joined or has failed.
    template <class Fn, class... Args>
    auto spawn(spawn_options opts, Fn&& fn, Args&&... args) {
        check_open();
        auto t =
            greenfiber::spawn(std::move(opts), std::forward<Fn>(fn), std::forward<Args>(args)...);
        add(t.share_any());
        return t;
    }
    using detail::site_spawners<task_group>::spawn;
    ///@}

    /// Waits for every task of the group. Switches: yes.
    /// Throws: exception_group with the failures; cancelled_error when the owner was cancelled
    /// from outside and no task failed (after cancelling and joining the group's tasks).
    void join();

    /// join() for a body that left with `body_error` (with_task_group uses it): cancels the
    /// tasks first and joins them, shielded. Switches: yes.
    /// Throws: exception_group with the failures followed by `body_error` unless it is a
    /// cancelled_error; else `body_error` (a cancellation goes on as it was).
    void join_after(std::exception_ptr body_error);

    /// Cancels every unfinished task of the group (the API asyncio's TaskGroup lacks).
    /// Switches: no.
    void cancel() noexcept;

    /// Tasks of the group not finished yet. Switches: no.
    std::size_t running() const noexcept;

  private:
    void check_open() const;
    void add(any_task t);
    struct entry {
        detail::done_listener l;
        task_group* g;
        any_task t;
    };
    static void on_done(detail::done_listener& l, detail::task_base& t) noexcept;
    void on_turn(entry& e) noexcept;  // a task's end, handled in its callback turn
    void join_impl(bool throwing, std::exception_ptr body_error);

    std::vector<std::unique_ptr<entry>> tasks_;
    std::vector<std::exception_ptr> errors_;
    any_task owner_;
    bool joined_ = false;
    bool cancelled_owner_ = false;
    bool owner_in_join_ = false;  // the owner is parked in join() (not cancelled then)
    /// Tasks whose end was not handled yet (their completion turn has not run): join()
    /// waits for them, as asyncio's __aexit__ waits until the callbacks emptied its set.
    std::size_t unsettled_ = 0;
    /// This group, or null once destroyed: shared with the completion turns still queued.
    std::shared_ptr<task_group*> self_;
    detail::wait_list joiners_;  // fibers in join(), signalled whenever a task finishes
};

/// Runs `body(group)` with a new task_group and joins it (asyncio's `async with
/// TaskGroup()`): returns what body returns once every task of the group finished.
/// Switches: yes.   Thread: thread-bound.
/// Throws: exception_group with every task's failure, followed by the body's own exception
/// if it threw one; cancelled_error when the owner was cancelled and nothing failed.
template <class Fn>
auto with_task_group(Fn&& body) -> std::invoke_result_t<Fn&, task_group&> {
    using R = std::invoke_result_t<Fn&, task_group&>;
    task_group g;
    std::exception_ptr body_error;
    if constexpr (std::is_void_v<R>) {
        try {
            body(g);
        } catch (const greenlet_exit&) {
            throw;  // killed: the destructor cancels and joins
        } catch (...) {
            body_error = std::current_exception();
        }
        g.join_after(std::move(body_error));
    } else {
        std::optional<R> r;
        try {
            r.emplace(body(g));
        } catch (const greenlet_exit&) {
            throw;
        } catch (...) {
            body_error = std::current_exception();
        }
        g.join_after(std::move(body_error));
        return std::move(*r);
    }
}

/// gevent's Pool(size): at most `size` tasks at once; spawn() suspends while it is full.
/// A freed slot goes straight to the fiber that waited longest (FIFO; a later spawn()
/// never takes it first), and a waiter cancelled after it was given a slot passes the slot
/// on. Several fibers may spawn into and join one pool. Must outlive the fibers waiting
/// in it. Thread: thread-bound.
class pool : public detail::site_spawners<pool> {
  public:
    /// A pool of `size` slots. Switches: no.
    explicit pool(std::size_t size);
    ~pool();
    pool(const pool&) = delete;
    pool& operator=(const pool&) = delete;

    ///@{
    /// Spawns `fn(args...)` once a slot is free, with `opts` if given. The task's site is
    /// the caller's line, as with greenfiber::spawn() (up to 4 arguments without options).
    /// Switches: yes, while full.
    /// Throws: cancelled_error while waiting for a slot (then it holds no slot).
    template <class Fn, class... Args>
    auto spawn(spawn_options opts, Fn&& fn, Args&&... args) {
        auto e = wait_slot();
        try {
            auto t = greenfiber::spawn(std::move(opts), std::forward<Fn>(fn),
                                       std::forward<Args>(args)...);
            add(std::move(e), t.share_any());
            return t;
        } catch (...) {
            release_slot();
            throw;
        }
    }
    using detail::site_spawners<pool>::spawn;
    ///@}

    /// Waits until every task of the pool is finished. Switches: yes.
    /// Throws: cancelled_error; loop_exit.
    void join();
    /// The number of slots given at construction.
    std::size_t size() const noexcept { return size_; }
    /// Tasks of the pool not finished yet.
    std::size_t running() const noexcept { return running_; }
    /// Slots neither running a task nor promised to a waiting spawn().
    std::size_t free_count() const noexcept { return size_ - busy_; }

  private:
    struct entry {
        detail::done_listener l;
        pool* p = nullptr;
        any_task t;
    };
    /// Takes a slot, waiting for one while none is free; returns the (unlinked) entry that
    /// will track the task.
    std::unique_ptr<entry> wait_slot();
    void release_slot() noexcept;
    void add(std::unique_ptr<entry> e, any_task t) noexcept;
    static void on_done(detail::done_listener& l, detail::task_base& t) noexcept;
    std::size_t size_;
    std::size_t busy_ = 0;     // slots taken: running tasks plus slots granted to waiters
    std::size_t running_ = 0;  // unfinished tasks
    /// Unfinished tasks' entries, each owned here until its task finishes.
    std::vector<std::unique_ptr<entry>> tasks_;
    detail::wait_list slot_waiters_;  // spawn() waiting for a slot
    detail::wait_list joiners_;       // fibers in join()
};

}  // namespace greenfiber
