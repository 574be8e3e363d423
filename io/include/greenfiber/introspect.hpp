#pragma once
/// \file
/// Seeing inside a running program: a dump of every fiber of the hub with its call stack
/// (gevent's print_run_info, Go's SIGQUIT goroutine dump), on demand or on a signal.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <functional>
#include <iosfwd>
#include <string_view>

namespace greenfiber {

/// Writes every fiber of the calling thread's hub to `os`, a block each: first every
/// unfinished task (its name, state, what it waits for, where it was spawned), then the
/// greenlets that are not tasks: the hub's own, the calling greenlet and its parents, and
/// the thread's main greenlet. Under each, the symbolised call stack of the fiber, innermost
/// frame first ("#0 function at file:line"); the calling fiber's stack is the one it is
/// running on, a task that has not started yet has none.
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

}  // namespace greenfiber
