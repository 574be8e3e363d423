#pragma once
/// \file
/// Seeing inside a running program: a dump of every fiber of the hub with its call stack
/// (gevent's print_run_info, Go's SIGQUIT goroutine dump), on demand or on a signal, and a
/// stall monitor that names a fiber blocking its hub while it still blocks (gevent's
/// monitor thread).

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <signal.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string_view>

#include "greenfiber/error.hpp"

namespace greenfiber {

/// Writes every fiber of the calling thread's hub to `os`, a block each: first every
/// unfinished task (its name, state, what it waits for, where it was spawned), then the
/// greenlets that are not tasks: the hub's own, the calling greenlet and its parents, and
/// the thread's main greenlet. Under each, the symbolised call stack of the fiber, innermost
/// frame first ("#0 function at file:line"); the calling fiber's stack is the one it is
/// running on, a task that has not started yet has none. Called on a small stack (stack.hpp,
/// "Small stacks"), the text is written from a stack of the thread's own and the caller's
/// block shows no frames (there is no room to capture them); a parked small-stack fiber's
/// are captured from the dumping stack (capture_stack in stacktrace.hpp).
///
/// A suspended fiber's stack is captured without running any of its code (see
/// stacktrace.hpp): dumping never changes what any fiber observes, and the switch path pays
/// nothing for it when no dump is asked for. Greenlets that are neither tasks nor on the
/// calling greenlet's parent chain are not listed: the fibers layer keeps no list of live
/// greenlets (print one with capture_stack() and print_stack() from a handle).
/// A thread without a hub gets its main greenlet and the calling greenlet's chain; no hub is
/// created.
/// Switches: into each suspended fiber and straight back, as capture_stack() does; never
/// to the hub.   Thread: thread-bound (the calling thread's fibers only).
/// Throws: std::bad_alloc; what the stream throws.
void dump(std::ostream& os);

/// Where enable_dump_on_signal() sends each dump: the whole text, once per signal.
using dump_sink = std::function<void(std::string_view text)>;

/// Opts in to a dump on a signal, as Go dumps its goroutines on SIGQUIT: each time the
/// process receives `signo`, this thread's hub writes dump() to `sink` (empty: stderr).
/// The signal handler itself only notes the signal (add_signal_handler, signal.hpp): the
/// dump runs on the hub, between two fibers, so every task is suspended and shows where it
/// waits. A hub blocked by a fiber that never yields dumps once that fiber yields.
/// While enabled, the hub has a pending signal wait (as for add_signal_handler): a fiber
/// waiting for something only a signal can bring waits instead of raising loop_exit.
/// Replaces this hub's previous handler of `signo`.
/// Switches: no.   Thread: thread-bound.
/// Throws: boost::system::system_error for a signal that cannot be caught.
void enable_dump_on_signal(int signo, dump_sink sink = {});

/// Stops dumping on `signo` (removes this hub's handler of it); returns false if there was
/// none. Switches: no.   Thread: thread-bound.
bool disable_dump_on_signal(int signo) noexcept;

/// What a stall_monitor watches for and where it reports.
struct stall_monitor_options {
    /// How long one fiber (or callback) may keep the hub from its loop before it is
    /// reported. Measured by sampling, so a report comes between one and one and a quarter
    /// thresholds into the stall.
    std::chrono::milliseconds threshold{500};
    /// The signal that samples the stalled thread's stack. Its handler is installed on the
    /// first monitor using it and stays installed for the life of the process (a sample may
    /// still be in flight when a monitor goes); it does nothing unless a sample is asked
    /// for, and it restarts interrupted system calls (SA_RESTART), so a blocking read()
    /// in the sampled fiber goes on undisturbed. SIGURG's default action is to ignore it,
    /// so a late one is harmless; choose another if the program uses SIGURG itself.
    int signal = SIGURG;
    /// Receives each report, on the monitor's thread. Empty: report_failure() (error.hpp).
    /// The report's `source` is null: the fiber belongs to another thread.
    report_handler handler;
};

/// A live stall monitor for the hub of the thread that creates it: a thread of its own that
/// notices when that hub has not returned to its loop for longer than the threshold while
/// it is still away, and reports the fiber keeping it (task name and spawn site, or the
/// greenlet) with that fiber's stack at that moment, so a fiber that spins, or calls a
/// blocking read() on the hub's thread, is named with file and line while it blocks. One
/// report per stall: a fiber blocking for a minute is reported once. The hub's watchdog
/// (hub::set_watchdog) stays: it reports the same stall after the fact, once the fiber
/// yields, with how long it lasted.
///
/// How: the hub stores a new heartbeat value each time it resumes a fiber, and marks itself
/// idle before blocking in its reactor (one relaxed store each: the same whether or not a
/// monitor runs). The monitor wakes every quarter threshold; a heartbeat unchanged and not
/// idle for a threshold is a stall. It then sends options.signal to the hub's thread
/// (pthread_kill), whose handler copies the raw return addresses (capture_stack) and the
/// running fiber's name into storage made beforehand, and the monitor symbolises and
/// reports them. An idle hub (blocked in epoll, however long) and the thread's main
/// greenlet running outside the loop are never reported; neither is a function posted with
/// hub::post(), which runs inside the reactor's wait.
///
/// One monitor per hub (thread): each watches its own, so two hubs on two threads take two
/// monitors. A per-process monitor thread would need a registry of hubs whose lifetimes
/// it shares; monitoring is a debugging aid, and one thread per hub is cheap at one hub
/// per core.
/// Thread: create it on the hub's thread; destroy it on any thread (also while the hub is
/// blocked). The hub's thread may exit first: the monitor then stops watching.
class stall_monitor {
  public:
    /// Starts watching the calling thread's hub (created or not yet).
    /// Switches: no.   Thread: the hub's thread.
    /// Throws: greenfiber::error if this thread already has a running monitor, or if
    ///         `options.signal` already has a handler of someone else's;
    ///         std::system_error if the thread or the signal cannot be set up.
    explicit stall_monitor(stall_monitor_options options = {});
    /// Stops the monitor thread and waits for it (at most a report in progress).
    /// Switches: no.   Thread: any.
    ~stall_monitor();
    stall_monitor(const stall_monitor&) = delete;
    stall_monitor& operator=(const stall_monitor&) = delete;

    /// Stalls reported so far. Switches: no.   Thread: thread-safe.
    std::size_t reports() const noexcept;

    /// Not API: the state shared with the monitor thread and the hub's thread.
    struct state;

  private:
    // Shared with the hub thread's record (until that thread exits); owns the monitor
    // thread, joined by the destructor.
    std::shared_ptr<state> s_;
};

}  // namespace greenfiber
