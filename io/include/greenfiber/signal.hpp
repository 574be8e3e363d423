#pragma once
/// \file
/// POSIX signals on the hub (asyncio's add_signal_handler), and the Ctrl-C handling of run()
/// (asyncio.Runner since 3.11: the first SIGINT cancels the main task, the second exits).

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "greenfiber/detail/unique_function.hpp"
#include "greenfiber/error.hpp"
#include "greenfiber/hub.hpp"
#include "greenfiber/task.hpp"

namespace greenfiber {

/// Thrown by run() and event_loop::run_until_complete() when a SIGINT (Ctrl-C) cancelled the
/// task they run and that task ended cancelled: Python's KeyboardInterrupt, raised after the
/// cleanup (asyncio.Runner's order; see run_until_complete for how a bare asyncio loop
/// differs). It derives from greenfiber::error, hence from std::exception, unlike
/// cancelled_error: it is thrown only by those calls themselves, after the task finished, so
/// no task's `catch (const std::exception&)` can swallow it, while main()'s usual
/// `catch (const std::exception&)` does report it. A program that wants the shell convention
/// exits with status 130 (128 + SIGINT) on it.
class keyboard_interrupt : public error {
  public:
    keyboard_interrupt() : error("greenfiber: interrupted by SIGINT (Ctrl-C)") {}
};

namespace detail {
void add_signal_handler(int signo, unique_function<void(int)> fn);
}  // namespace detail

/// Calls `fn()` (or `fn(signo)`) on this thread's hub each time the process receives signal
/// `signo`, replacing this hub's previous handler for it. The handler runs on the hub's
/// stack as a callback, never in signal context: anything is allowed in it except waiting
/// (spawn a task for that); an exception from it goes to report_failure. Signals received
/// before the handler ran are each delivered. While a handler is installed the hub has
/// pending work: a fiber waiting for something only a signal can bring waits instead of
/// raising loop_exit. Built on boost::asio::signal_set; on removal the signal's previous
/// disposition is restored.
/// Switches: no.   Thread: thread-bound (several hubs may handle the same signal: each
/// runs its handler).
/// Throws: boost::system::system_error for a signal that cannot be caught (SIGKILL,
///         SIGSTOP, out of range).
template <class Fn>
requires(std::is_invocable_v<Fn&> ||
         std::is_invocable_v<Fn&, int>) void add_signal_handler(int signo, Fn fn) {
    if constexpr (std::is_invocable_v<Fn&, int>) {
        detail::add_signal_handler(signo, std::move(fn));
    } else {
        detail::add_signal_handler(signo, [f = std::move(fn)](int) mutable { f(); });
    }
}

/// Removes this hub's handler for `signo`; returns false if it had none. The previous
/// disposition of the signal is restored once no hub handles it. A handler may remove
/// itself. Switches: no.   Thread: thread-bound.
bool remove_signal_handler(int signo) noexcept;

/// How many signals have a handler on this thread's hub (for leak checks).
/// Switches: no.   Thread: thread-bound.
std::size_t signal_handler_count() noexcept;

namespace detail {

/// The Ctrl-C handling of run() and run_until_complete(), installed for the lifetime of the
/// guard (asyncio.Runner):
/// - the first SIGINT cancels the main task (on its hub, message "KeyboardInterrupt");
///   interrupted() becomes true and run() turns the main task's cancelled_error into
///   keyboard_interrupt (see run_interruptible);
/// - a second SIGINT kills the process at once with SIGINT's default action (exit status
///   130 in a shell, WIFSIGNALED for a parent), even while a fiber blocks the hub.
/// It installs nothing (installed() is false) when SIGINT is not at its default disposition
/// (ignored, as in background jobs, or handled by someone, including add_signal_handler on
/// any hub), or when another guard is active in the process (only one run() or
/// run_until_complete() in the process at a time gets Ctrl-C).
/// The previous disposition is restored by the destructor. The signal handler itself only
/// writes to a pipe; a helper thread posts the cancellation to the hub, so the guard adds
/// no pending work to the hub (loop_exit still works under run()).
/// Thread: thread-bound (construct and destroy on the main task's hub thread).
class sigint_guard {
  public:
    /// Installs the handling for `main` (borrowed: it must outlive the guard).
    /// Switches: no.   Throws: std::system_error if the pipe or thread cannot be created.
    explicit sigint_guard(task_base& main);
    template <class T>
    explicit sigint_guard(task<T>& main)
        : sigint_guard(target{&main, [](void* t, std::string msg) {
                                  return static_cast<task<T>*>(t)->cancel(std::move(msg));
                              }}) {}
    sigint_guard(const sigint_guard&) = delete;
    sigint_guard& operator=(const sigint_guard&) = delete;
    /// Restores SIGINT's previous disposition. Switches: no.
    ~sigint_guard();

    /// Whether this guard handles SIGINT (see above). Switches: no.
    bool installed() const noexcept;
    /// Whether a SIGINT reached the hub and cancelled the main task. Switches: no.
    bool interrupted() const noexcept;

    struct state;

  private:
    struct target {
        void* task;  // Borrowed.
        bool (*cancel)(void* task, std::string message);
    };
    explicit sigint_guard(target main);
    std::shared_ptr<state> s_;  // Shared with the completion posted to the hub.
};

/// The one line run() needs: waits for the main task with `wait()` (for instance
/// `[&] { return loop.run_until_complete(main); }`) under a sigint_guard, and turns the
/// main task's cancellation by SIGINT into keyboard_interrupt (asyncio.Runner: when the
/// main task ends cancelled and uncancel() brings its count to zero).
/// Switches: yes (whatever `wait` does).
/// Throws: keyboard_interrupt; whatever `wait` throws.
template <class T, class Wait>
decltype(auto) run_interruptible(task<T>& main, Wait&& wait) {
    sigint_guard guard(main);
    try {
        return std::forward<Wait>(wait)();
    } catch (const cancelled_error&) {
        if (guard.interrupted() && main.cancelled() && main.uncancel() == 0) {
            throw keyboard_interrupt();
        }
        throw;
    }
}

}  // namespace detail
}  // namespace greenfiber
