#pragma once
// Not API: the calls the hub, tasks and waits make into a hub's timeline (trace.hpp).
//
// Every call site tests detail::trace_of(hub) first and calls in only when a trace is
// recording, so tracing costs one load and one well-predicted branch when it is off. The
// functions record one fixed-size entry each; they never switch, allocate only to intern a
// name not seen before, and never throw.

#include <cstddef>

namespace greenfiber::detail {

class hub_trace;
struct waiter;
struct greenlet_impl;

/// The thread is about to run `fiber` (null: a callback), switched to by the hub or handed
/// on by a fiber that parks. Opens a slice.
void trace_resume(hub_trace& t, const greenlet_impl* fiber) noexcept;
/// What trace_resume() ran parked, finished or gave the hub back control: closes the slice
/// it opened (nothing if none is open).
void trace_suspend(hub_trace& t) noexcept;
/// The running fiber parks in `w` (its reason is `w.what`).
void trace_park(hub_trace& t, const waiter& w) noexcept;
/// A task was created on fiber `f` with `name` (interned now: the name outlives the task).
void trace_spawn(hub_trace& t, const greenlet_impl* f, const char* name) noexcept;
/// The task on `f` finished: 0 with a result, 1 with an exception, 2 cancelled.
void trace_finish(hub_trace& t, const greenlet_impl* f, int outcome) noexcept;
/// The task on `f` was renamed to `name`.
void trace_rename(hub_trace& t, const greenlet_impl* f, const char* name) noexcept;
/// The deadline of the park `w` passed: the hub wakes it.
void trace_timer(hub_trace& t, const waiter& w) noexcept;
/// A call_later/call_at callback is about to run on the hub.
void trace_call_later(hub_trace& t) noexcept;
/// The I/O operation the fiber parked in `w` waits for completed (`failed`: with an error).
void trace_io_ready(hub_trace& t, const waiter& w, bool failed, std::size_t bytes) noexcept;
/// The use_fiber operation the fiber parked in `w` waits for completed.
void trace_completion(hub_trace& t, const waiter& w) noexcept;
/// The hub starts a turn of its loop with `ready` entries in its ready queue.
void trace_loop_turn(hub_trace& t, std::size_t ready) noexcept;
/// The hub enters its reactor (`blocking`: it may sleep there until an event).
void trace_poll_begin(hub_trace& t) noexcept;
/// The hub left its reactor after running `handlers` completion handlers.
void trace_poll_end(hub_trace& t, std::size_t handlers, bool blocking) noexcept;

}  // namespace greenfiber::detail
