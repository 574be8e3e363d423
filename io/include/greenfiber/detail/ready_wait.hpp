#pragma once

// The one wait every socket operation is built on: park the fiber until an Asio object is
// ready to read or write (async_wait), a deadline passes, or the wait is cancelled.

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/system/error_code.hpp>

#include "greenfiber/deadline.hpp"
#include "greenfiber/hub.hpp"

namespace greenfiber::detail {

// One direction (reading or writing) of an I/O object: which fiber uses it and how to
// cancel its pending readiness wait without touching the other direction.
// Thread: the owning hub's.
struct io_direction {
    io_direction() = default;
    // Moving an object that a fiber is using is a bug; the moved-to side starts idle.
    io_direction(io_direction&&) noexcept {}
    io_direction& operator=(io_direction&&) noexcept { return *this; }

    greenlet_impl* owner = nullptr;  // Borrowed: the fiber inside an operation, or null
    boost::asio::cancellation_signal cancel;
};

// Throws greenfiber::error: `what` found `d` used by another fiber.
[[noreturn]] void throw_busy(const char* what, const char* direction, const greenlet_impl* holder,
                             const greenlet_impl* self);
// Throws greenfiber::error: an I/O object used from a thread other than its hub's.
[[noreturn]] void throw_wrong_thread(const char* what, const hub& h);

// Marks the calling fiber as the user of one direction for the scope of an operation.
// Re-entrant for the same fiber (a composed read calls read_some).
class direction_guard {
  public:
    direction_guard(io_direction& d, const char* what, const char* direction) : d_(d) {
        greenlet_impl* self = tls->current;
        if (d.owner != nullptr && d.owner != self) throw_busy(what, direction, d.owner, self);
        prev_ = d.owner;
        d.owner = self;
    }
    ~direction_guard() { d_.owner = prev_; }
    direction_guard(const direction_guard&) = delete;
    direction_guard& operator=(const direction_guard&) = delete;

  private:
    io_direction& d_;
    greenlet_impl* prev_;
};

// A readiness wait in progress. Lives in the waiting fiber's frame; await_ready() does not
// return before the async_wait's handler has run, so the handler never sees a dead frame.
struct ready_wait {
    ready_wait(hub& hb, io_direction& d, const char* what) noexcept
        : w(what), h(&hb), cancel(&d.cancel) {}

    waiter w;
    hub* h;
    boost::asio::cancellation_signal* cancel;
    void (*start)(ready_wait&) noexcept = nullptr;  // begins the async_wait
    void* object = nullptr;                         // for start
    int type = 0;                                   // for start: the Asio wait_type
    boost::system::error_code result;
    bool armed = false;
    bool done = false;

    void complete(const boost::system::error_code& ec) noexcept {
        result = ec;
        done = true;
        h->wake(w);
    }
};

// Parks until `rw` completes (ec = its result), `dl` passes (ec = timed_out) or the task
// is cancelled (throws cancelled_error). Switches: yes.
void await_ready(ready_wait& rw, deadline dl, boost::system::error_code& ec);

// Waits until `object` (an Asio socket, acceptor or descriptor) is ready for `type`.
template <class Object>
void wait_ready(hub& h, Object& object, typename Object::wait_type type, io_direction& d,
                const char* what, deadline dl, boost::system::error_code& ec) {
    ready_wait rw(h, d, what);
    rw.object = &object;
    rw.type = static_cast<int>(type);
    rw.start = [](ready_wait& self) noexcept {
        static_cast<Object*>(self.object)
            ->async_wait(static_cast<typename Object::wait_type>(self.type),
                         boost::asio::bind_cancellation_slot(
                             self.cancel->slot(),
                             [&self](const boost::system::error_code& e) { self.complete(e); }));
    };
    await_ready(rw, dl, ec);
}

}  // namespace greenfiber::detail
