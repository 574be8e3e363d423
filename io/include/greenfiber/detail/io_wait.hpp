#pragma once

// The one wait every socket operation is built on: park the fiber until an Asio object is
// ready to read or write (async_wait), a deadline passes, or the wait is cancelled.

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <sstream>
#include <string>
#include <type_traits>

#include "greenfiber/deadline.hpp"
#include "greenfiber/detail/trace_hooks.hpp"
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

// An Asio operation on an I/O object in progress (a readiness wait or a transfer). Lives in
// the waiting fiber's frame; await_io() does not return before the operation's handler has
// run, so the handler never sees a dead frame.
struct io_wait {
    io_wait(hub& hb, io_direction& d, const char* what) noexcept
        : w(what), h(&hb), cancel(&d.cancel) {}

    waiter w;
    hub* h;
    boost::asio::cancellation_signal* cancel;
    void (*start)(io_wait&) noexcept = nullptr;  // begins the operation
    void* object = nullptr;                      // for start
    boost::system::error_code result;
    std::size_t bytes = 0;
    bool armed = false;
    bool done = false;

    void complete(const boost::system::error_code& ec, std::size_t n) noexcept {
        result = ec;
        bytes = n;
        done = true;
        if (hub_trace* t = trace_of(*h)) [[unlikely]]
            trace_io_ready(*t, w, ec.failed(), n);
        h->wake(w);
    }
    // The completion handler: two pointers, so Asio's recycled operation memory fits it.
    auto handler() noexcept {
        return boost::asio::bind_cancellation_slot(
            cancel->slot(),
            [this](const boost::system::error_code& e, std::size_t n = 0) { complete(e, n); });
    }
};

// How a wait on an I/O object describes itself when asked (waiter::describe and its arg).
struct io_description {
    std::string (*fn)(const waiter& w) = nullptr;
    const void* object = nullptr;  // Borrowed: the Asio object, alive while the fiber waits
};

// "read_some on 127.0.0.1:8080 <- 127.0.0.1:51514 fd=12": the operation, the object's local
// endpoint, the peer's (arrow: the direction data flows), the descriptor. Formatted only when
// someone asks, from the object's state then.
template <class Object, bool Reading>
std::string describe_io(const waiter& w) {
    const auto& o = *static_cast<const Object*>(w.describe_arg);
    std::ostringstream os;
    os << w.what;
    boost::system::error_code ec;
    if constexpr (requires { o.local_endpoint(ec); }) {
        const auto local = o.local_endpoint(ec);
        if (!ec) os << " on " << local;
    }
    if constexpr (requires { o.remote_endpoint(ec); }) {
        const auto remote = o.remote_endpoint(ec);
        if (!ec) os << (Reading ? " <- " : " -> ") << remote;
    }
    if constexpr (requires(Object & m) { m.native_handle(); }) {  // not const in Asio
        os << " fd=" << const_cast<Object&>(o).native_handle();
    }
    return os.str();
}

// The description of a wait to read (`reading`) or write on `object`.
template <class Object>
io_description describe_io_on(const Object& object, bool reading) noexcept {
    return {reading ? &describe_io<Object, true> : &describe_io<Object, false>, &object};
}

// Parks until `op` completes (ec = its result; returns its byte count) or `dl` passes
// (ec = timed_out; returns 0). A cancelled task throws cancelled_error, unless bytes were
// already transferred: then they are returned and the cancellation is raised at the next
// suspension point (a transfer is never lost). Switches: yes.
std::size_t await_io(io_wait& op, deadline dl, boost::system::error_code& ec);

// Runs `start(handler)` (an Asio asynchronous operation) from the hub once the fiber is
// parked, and waits for it as await_io() does.
template <class Start>
std::size_t async_io(hub& h, io_direction& d, const char* what, deadline dl,
                     boost::system::error_code& ec, Start&& start, io_description desc = {}) {
    io_wait op(h, d, what);
    op.w.describe = desc.fn;
    op.w.describe_arg = desc.object;
    op.object = &start;
    op.start = [](io_wait& self) noexcept {
        (*static_cast<std::remove_reference_t<Start>*>(self.object))(self.handler());
    };
    return await_io(op, dl, ec);
}

// Waits until `object` (an Asio socket, acceptor or descriptor) is ready for `type`.
template <class Object>
void wait_ready(hub& h, Object& object, typename Object::wait_type type, io_direction& d,
                const char* what, deadline dl, boost::system::error_code& ec) {
    (void)async_io(
        h, d, what, dl, ec, [&](auto&& handler) { object.async_wait(type, std::move(handler)); },
        describe_io_on(object, type == Object::wait_read));
}

}  // namespace greenfiber::detail
