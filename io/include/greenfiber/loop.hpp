#pragma once
/// \file
/// asyncio's event loop API over the hub: event_loop (call_soon, call_later, run_until_*),
/// timer_handle, and run(), the usual entry point of a program.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "greenfiber/deadline.hpp"
#include "greenfiber/hub.hpp"
#include "greenfiber/signal.hpp"
#include "greenfiber/task.hpp"

namespace greenfiber {

namespace detail {
struct timer_state;
/// Cancels and joins every unfinished task of this thread's hub, waiting at most `grace`.
void finish_run(std::chrono::steady_clock::duration grace) noexcept;
/// Pending call_later/call_at timers of this thread's event loop (not the hub's timed
/// parks), 0 if it has none (never creates it). Switches: no.
std::size_t loop_pending_timers_if_any() noexcept;
}  // namespace detail

/// A callback scheduled by call_later() or call_at(). Cancelling it before it runs means
/// it never runs. Copies refer to the same callback.
/// Thread: thread-bound.
class timer_handle {
  public:
    timer_handle() = default;
    /// Prevents the callback from running; no effect once it ran. Switches: no.
    void cancel() noexcept;
    /// Whether cancel() was called on it before it ran. Switches: no.
    bool cancelled() const noexcept;
    /// When it is (or was) due.
    std::chrono::steady_clock::time_point when() const noexcept;

  private:
    friend class event_loop;
    explicit timer_handle(std::shared_ptr<detail::timer_state> s) : s_(std::move(s)) {}
    std::shared_ptr<detail::timer_state> s_;
};

/// The asyncio event-loop face of this thread's hub. There is one per thread
/// (event_loop::current()); it runs whenever a fiber of the thread waits, and its
/// run_* calls block the caller until their condition, as asyncio's do.
/// Thread: thread-bound.
class event_loop {
  public:
    /// This thread's loop (its hub's face). Switches: no.
    static event_loop& current();

    /// Runs the loop until `t` finishes and returns its result (or rethrows). When `t` has
    /// finished, the callbacks and fibers already ready then get one more turn before it
    /// returns, as asyncio's loop finishes the iteration in which the task's done callback
    /// stops it; what they queue in turn waits for the next run.
    /// Ctrl-C while it runs is handled as under run() (asyncio.Runner's handling, not that of
    /// a bare asyncio loop.run_until_complete): the first SIGINT cancels `t`, which unwinds
    /// (its cleanup runs), and if `t` then ends cancelled, run_until_complete throws
    /// keyboard_interrupt; a second SIGINT ends the process at once. A bare asyncio loop
    /// raises KeyboardInterrupt from Python's signal handler wherever the loop is, leaving
    /// the task pending with its cleanup not run; C++ has no asynchronous exceptions, and a
    /// raise that skipped the task's destructors would leak what they release. A program
    /// that wants the bare loop's outcome (the task left pending) installs its own SIGINT
    /// handler that stops the loop (add_signal_handler()):
    /// then nothing is installed here and the stopped call throws. Nothing is installed
    /// either when SIGINT is ignored, or another run() or run_until_complete() of the
    /// process handles it already (see sigint_guard).
    /// Switches: yes.
    /// Throws: what `t` throws; keyboard_interrupt (see above); greenfiber::error "Event
    ///         loop stopped before the task completed" if stop() came first; "the event loop
    ///         is closed"; "already running" when nested.
    template <class T>
    T run_until_complete(task<T>& t) {
        return detail::run_interruptible(t, [&]() -> T {
            wait_until_done_or_stopped(*t.t_);
            return t.result();
        });
    }

    /// Runs the loop until stop(). Switches: yes.   Throws: as run_until_complete.
    void run_forever();

    /// Makes run_forever()/run_until_complete() return once the callbacks already ready
    /// have run. Switches: no.
    void stop();

    /// Closes the loop: no more run_* calls. Throws: greenfiber::error if it is running.
    void close();

    ///@{
    /// Whether a run_* call is in progress / whether close() was called. Switches: no.
    bool is_running() const noexcept { return running_; }
    bool is_closed() const noexcept { return closed_; }
    ///@}

    /// Runs `fn()` on the hub after what is already ready (FIFO). Switches: no.
    void call_soon(detail::unique_function<void()> fn) { hub_->call_soon(std::move(fn)); }

    /// call_soon() from any thread: the one cross-thread entry (hub::post). A fiber that
    /// waits for what `fn` will do gets loop_exit if the hub runs out of work before the
    /// call arrives; the calling thread holds a hub_handle (hub::keep_alive()) for as long as
    /// it may still call, or posts through the handle itself.
    /// Switches: no.   Thread: thread-safe.
    template <class Fn>
    void call_soon_threadsafe(Fn&& fn) {
        hub_->post(std::forward<Fn>(fn));
    }

    ///@{
    /// Runs `fn()` on the hub once `delay` has passed / at `when`. `delay` may be of any
    /// duration type and saturates (hours::max(): practically never). Switches: no.
    template <class Rep, class Period>
    timer_handle call_later(std::chrono::duration<Rep, Period> delay,
                            detail::unique_function<void()> fn) {
        return call_at(detail::deadline_after(delay), std::move(fn));
    }
    timer_handle call_at(std::chrono::steady_clock::time_point when,
                         detail::unique_function<void()> fn);
    ///@}

    /// The loop's clock: steady_clock, as seconds (asyncio's loop.time()).
    double time() const noexcept {
        return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    }

    /// Timers pending on this loop's hub: call_later/call_at callbacks not yet run or
    /// cancelled, plus the deadlines of fibers parked with one (sleep(), timeouts, deadlines
    /// of I/O and sync waits), which are the hub's timers rather than the loop's.
    /// Switches: no.
    std::size_t pending_timers() const noexcept { return pending_timers_ + hub_->timed_parks(); }

    /// The hub this loop runs on. Switches: no.
    hub& owner() noexcept { return *hub_; }

  private:
    friend struct detail::timer_state;
    friend std::size_t detail::loop_pending_timers_if_any() noexcept;
    friend class timer_handle;
    explicit event_loop(hub& h) : hub_(&h) {}
    void wait_until_done_or_stopped(detail::task_base& t);
    class running_scope;

    hub* hub_;
    bool running_ = false;
    bool closed_ = false;
    bool stop_requested_ = false;
    detail::waiter* runner_ = nullptr;  // the run_* call's wait, woken by stop()
    std::size_t pending_timers_ = 0;
};

namespace detail {
/// run()'s body; the main task records `at` as its spawn site (empty: its function's type).
template <class Fn, class... Args>
auto run_main(std::source_location at, Fn&& fn, Args&&... args) {
    event_loop& loop = event_loop::current();
    if (loop.is_running())
        throw error("greenfiber: run() cannot be called from a running event loop");
    auto main = spawn(spawn_options{.name = "main", .site = at}, std::forward<Fn>(fn),
                      std::forward<Args>(args)...);
    struct cleanup {
        ~cleanup() { detail::finish_run(std::chrono::seconds(5)); }
    } at_exit;
    // Ctrl-C cancels the main task (run_until_complete handles it; keyboard_interrupt
    // leaves run() after the cleanup); a second Ctrl-C ends the process at once.
    return loop.run_until_complete(main);
}
}  // namespace detail

/// asyncio.run(): runs `fn(args...)` as the main task of this thread's loop and returns its
/// result. On the way out, the callbacks still queued run, every task still unfinished is
/// cancelled and waited for (up to 5 s; a task still running after that, one that swallows
/// its cancellation, is reported by name and left to the hub's destruction), this hub's
/// default executor is shut down within what is left of that time (each hub has its own:
/// other threads' jobs are not touched), and exceptions nobody retrieved are reported.
/// While it runs, SIGINT cancels the main task and run() then throws keyboard_interrupt,
/// after the cleanup; a second SIGINT ends the process at once (see run_until_complete).
/// Switches: yes.   Throws: what the main task throws; keyboard_interrupt;
/// greenfiber::error if the loop is already running (run() inside run()).
template <class Fn, class... Args>
auto run(Fn&& fn, Args&&... args) {
    return detail::run_main(std::source_location{}, std::forward<Fn>(fn),
                            std::forward<Args>(args)...);
}
/// run(fn) without arguments, the usual form: the main task's spawn site is the caller's line.
template <class Fn>
auto run(Fn&& fn, detail::call_site at = detail::call_site(std::source_location::current())) {
    return detail::run_main(at.loc, std::forward<Fn>(fn));
}

}  // namespace greenfiber
