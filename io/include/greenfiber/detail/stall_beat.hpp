#pragma once
// Not API: the hub's heartbeat for the stall monitor (introspect.hpp, io/src/monitor.cpp).
//
// Each hub thread has one word: odd while the hub is idle (blocked in its reactor, or the
// thread's main greenlet runs outside the loop), and a new even value each time the hub
// resumes a fiber or runs a callback. A monitor thread samples it: the same even value for
// longer than its threshold means one fiber has kept the hub from its loop that long, and
// still does. The hub pays one relaxed store per resume (and one before blocking), always,
// so that turning the monitor on or off needs no flag on the hub's path.

#include <atomic>
#include <cstdint>

#include "greenfiber/detail/greenlet_impl.hpp"

namespace greenfiber::detail {

// This thread's heartbeat. Initial-exec TLS: the hub's store is one %fs-relative store.
extern constinit thread_local std::atomic<std::uint64_t> stall_beat GREENFIBER_TLS_MODEL;

// The hub is about to resume `fiber` (null: to run a callback). The main greenlet is not
// watched: between two run_* calls it does what it likes (the watchdog agrees).
inline void stall_beat_resume(const greenlet_impl* fiber) noexcept {
    const std::uint64_t idle = stall_beat.load(std::memory_order_relaxed) | 1u;
    stall_beat.store(fiber != nullptr && fiber->is_main ? idle : idle + 1,
                     std::memory_order_relaxed);
}

// The hub is about to block in its reactor.
inline void stall_beat_idle() noexcept {
    stall_beat.store(stall_beat.load(std::memory_order_relaxed) | 1u, std::memory_order_relaxed);
}

}  // namespace greenfiber::detail
