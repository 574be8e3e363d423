#pragma once
/// \file
/// A timeline of one hub: which fiber ran when, task spawns and finishes, parks with their
/// reasons, I/O completions, timers and reactor polls, written in the Chrome trace event
/// JSON format that ui.perfetto.dev and chrome://tracing open.
///
///     greenfiber::start_trace();                 // this thread's hub starts recording
///     ... run the program ...
///     greenfiber::stop_trace();
///     greenfiber::write_trace("timeline.json");  // open it in ui.perfetto.dev
///
/// Each fiber gets a track named after its task (or greenlet); each time the hub runs it is
/// a slice on that track, from the hub's resume to the fiber's suspension. Records are kept
/// in a ring of fixed-size entries: memory stays bounded however long the trace runs, and
/// once the ring is full the oldest records are overwritten and the output says how many
/// were lost. Names are copied into the trace when a task is spawned or renamed, so a task
/// destroyed before the trace is written still has its name.
///
/// Off, a trace costs each hook one load and one branch on a hub member; on, see
/// bench/RESULTS.md ("Trace") for the cost per switch.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace greenfiber {

/// Options of start_trace().
struct trace_options {
    /// Records the ring keeps (32 bytes each; rounded up to a power of two, at least 16).
    std::size_t capacity = std::size_t(1) << 16;
};

/// What this thread's trace holds (trace_state()).
struct trace_info {
    bool recording = false;      ///< start_trace() was called and stop_trace() not yet
    std::size_t capacity = 0;    ///< records the ring keeps (0: no trace was started)
    std::size_t records = 0;     ///< records kept now
    std::uint64_t recorded = 0;  ///< records made since start_trace()
    std::uint64_t lost = 0;      ///< of those, overwritten because the ring was full
};

/// Starts recording this thread's hub into a new, empty ring of `opts.capacity` records
/// (what an earlier trace kept is dropped). May be called from any fiber of the hub or from
/// the thread's main greenlet: a fiber calling it starts its slice at this point.
/// Switches: no.   Thread: thread-bound (each hub records its own trace).
/// Throws: greenfiber::error if this hub is recording already; std::bad_alloc.
void start_trace(trace_options opts = {});

/// Stops recording; what was recorded stays for write_trace() until the next start_trace().
/// The caller's own slice, if it runs in one, ends here. Does nothing when not recording.
/// Switches: no.   Thread: thread-bound.
void stop_trace() noexcept;

/// What this thread's trace holds now. Switches: no.   Thread: thread-bound.
trace_info trace_state() noexcept;

/// Writes what this thread's trace holds as Chrome trace event JSON: one process per hub
/// (named after its thread), one track per fiber, slices for runs, instant events for the
/// rest, and `otherData.lost_events` with the number of records the ring overwrote. It may be
/// called while recording (a snapshot: recording goes on) and after stop_trace(); without
/// any trace it writes a valid trace with no events.
/// Switches: no.   Thread: thread-bound.
/// Throws: std::bad_alloc; whatever `os` throws (a failed stream is left failed).
void write_trace(std::ostream& os);

/// write_trace() into the file at `path` (created or truncated).
/// Switches: no.   Thread: thread-bound.
/// Throws: std::system_error naming the path when it cannot be written; std::bad_alloc.
void write_trace(const std::string& path);

}  // namespace greenfiber
