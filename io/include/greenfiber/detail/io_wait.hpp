#pragma once

// The one wait every socket operation is built on: park the fiber until an Asio object is
// ready to read or write (async_wait), a deadline passes, or the wait is cancelled.

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <new>
#include <sstream>
#include <string>
#include <type_traits>

#include "greenfiber/deadline.hpp"
#include "greenfiber/detail/trace_hooks.hpp"
#include "greenfiber/hub.hpp"

namespace greenfiber::detail {

struct io_wait;
class direction_guard;

// One direction (reading or writing) of an I/O object: which fiber uses it and how to
// cancel its pending readiness wait without touching the other direction.
// Thread: the owning hub's.
struct io_direction {
    io_direction() = default;
    // Moving an object that a fiber is using is a bug; the moved-to side starts idle.
    io_direction(io_direction&&) noexcept {}
    io_direction& operator=(io_direction&&) noexcept { return *this; }
    // An object destroyed while a fiber waits on it: the wait forgets the object (its
    // cancellation signal dies here) and a read not started yet never starts.
    inline ~io_direction();

    // A read whose start is still queued (see io_wait::deferred) ends with
    // operation_aborted instead of starting: close() and cancel() call it, so that a wait
    // they end reports what Asio reports for the operations it had already.
    inline void abort_deferred() noexcept;

    greenlet_impl* owner = nullptr;  // Borrowed: the fiber inside an operation, or null
    io_wait* op = nullptr;           // Borrowed: the wait in progress (in owner's frame), or null
    // Borrowed: the innermost guard of the owner's operation (in its frame), or null; told
    // when the object dies, so that it does not write to it on the way out.
    direction_guard* guard = nullptr;
    boost::asio::cancellation_signal cancel;
};

// Throws greenfiber::error: `what` found `d` used by another fiber.
[[noreturn]] void throw_busy(const char* what, const char* direction, const greenlet_impl* holder,
                             const greenlet_impl* self);
// Throws greenfiber::error: an I/O object used from a thread other than its hub's.
[[noreturn]] void throw_wrong_thread(const char* what, const hub& h);

// Marks the calling fiber as the user of one direction for the scope of an operation.
// Re-entrant for the same fiber (a composed read calls read_some).
// If the object is destroyed while its fiber waits (another fiber destroys it), the guards
// forget it (~io_direction) and restore nothing.
class direction_guard {
  public:
    direction_guard(io_direction& d, const char* what, const char* direction) : d_(&d) {
        greenlet_impl* self = tls->current;
        if (d.owner != nullptr && d.owner != self) throw_busy(what, direction, d.owner, self);
        prev_ = d.owner;
        prev_guard_ = d.guard;
        d.owner = self;
        // The direction holds this guard's address only while the guard lives: the
        // destructor puts the previous one back (GCC cannot see that, and warns).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
        d.guard = this;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    }
    ~direction_guard() {
        if (d_ == nullptr) return;
        d_->owner = prev_;
        d_->guard = prev_guard_;
    }
    direction_guard(const direction_guard&) = delete;
    direction_guard& operator=(const direction_guard&) = delete;

  private:
    friend struct io_direction;
    io_direction* d_;  // Borrowed; null once the object is destroyed
    greenlet_impl* prev_;
    direction_guard* prev_guard_;
};

// The memory of the one Asio operation an io_wait has outstanding at a time, in the waiting
// fiber's frame. Asio allocates each operation (the reactor's op with the handler inside)
// through the handler's associated allocator; left to its default, that is a per-thread
// cache of two blocks in front of malloc, which a batch of completions empties (each
// completion frees its block before its fiber starts the next operation). Here it lives as
// long as the wait, which outlives the operation (await_io() returns only after the handler
// ran), so no operation of a socket read or write reaches malloc.
struct handler_memory {
    // Room for a reactive socket operation on a buffer sequence of a few buffers (a recv op
    // on one buffer with this handler is about 150 bytes); larger ones use Asio's default.
    static constexpr std::size_t size = 256;
    alignas(std::max_align_t) unsigned char bytes[size];
};

// Hands out `m`'s block when the request fits, else Asio's recycling allocator. Asio frees an
// operation's memory before it invokes the handler, and a wait has one operation at a time,
// so the block is never handed out twice at once; deallocating it writes nothing, so an operation
// destroyed with the io_context after its fiber's frame is gone touches no dead memory.
template <class T>
struct handler_allocator {
    using value_type = T;
    explicit handler_allocator(handler_memory* mem) noexcept : m(mem) {}
    template <class U>
    handler_allocator(const handler_allocator<U>& o) noexcept : m(o.m) {}

    T* allocate(std::size_t n) {
        if (n * sizeof(T) <= handler_memory::size && alignof(T) <= alignof(std::max_align_t)) {
            return reinterpret_cast<T*>(m->bytes);
        }
        return boost::asio::recycling_allocator<T>().allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept {
        if (reinterpret_cast<unsigned char*>(p) == m->bytes) return;
        boost::asio::recycling_allocator<T>().deallocate(p, n);
    }
    template <class U>
    bool operator==(const handler_allocator<U>& o) const noexcept {
        return m == o.m;
    }

    handler_memory* m;  // Borrowed: the io_wait's, alive until its operation has ended
};

// An Asio operation on an I/O object in progress (a readiness wait or a transfer). Lives in
// the waiting fiber's frame; await_io() does not return before the operation's handler has
// run, so the handler never sees a dead frame.
struct io_wait {
    io_wait(hub& hb, io_direction& d, const char* what) noexcept
        : w(what), h(&hb), cancel(&d.cancel), dir(&d) {}

    waiter w;
    hub* h;
    // Borrowed from `dir`; null once the object is destroyed (~io_direction).
    boost::asio::cancellation_signal* cancel;
    io_direction* dir;                           // Borrowed; null once the object is destroyed
    void (*start)(io_wait&) noexcept = nullptr;  // begins the operation
    void* object = nullptr;                      // for start
    boost::system::error_code result;
    std::size_t bytes = 0;
    bool armed = false;
    bool started = false;  // start() ran: the operation's handler will run, exactly once
    bool done = false;
    // Start the operation from the hub, behind the fibers already ready, instead of at once
    // when the fiber parks (Asio's callback servers start their next read from a completion
    // that runs in that order): a request/response peer has then often answered, and Asio's
    // first, speculative read finds the data.
    bool deferred = false;
    bool stop = false;  // the wait was asked to end: a deferred start no longer runs
    // The deferred start, linked in the hub's list from the arm until it runs or is
    // unlinked by whoever ends the wait first.
    deferred_call start_call;
    handler_memory memory;

    void complete(const boost::system::error_code& ec, std::size_t n) noexcept {
        result = ec;
        bytes = n;
        done = true;
        if (hub_trace* t = trace_of(*h)) [[unlikely]]
            trace_io_ready(*t, w, ec.failed(), n);
        h->wake(w);
    }

    // Begins the operation: at once, or queued behind the ready fibers (`deferred`). Called
    // by the arm, once the fiber is parked.
    void arm() noexcept {
        armed = true;
        if (!deferred) {
            started = true;
            start(*this);
            return;
        }
        start_call.fn = [](void* p) noexcept {
            auto& self = *static_cast<io_wait*>(p);
            self.started = true;
            self.start(self);
        };
        start_call.arg = this;
        h->defer(start_call);
    }

    // Asks the operation to end, from anywhere but the waiting fiber (a cancellation, a
    // close(), the object's destruction): a started one through its cancellation slot; a
    // deferred one still queued is unlinked and, if its fiber is still parked, completes
    // with operation_aborted at once. A fiber woken meanwhile (its deadline) finishes it
    // itself (finish_unstarted).
    void request_stop() noexcept {
        stop = true;
        if (h->undefer(start_call)) {
            if (!w.woken) complete(boost::asio::error::operation_aborted, 0);
        } else if (started && cancel != nullptr) {
            cancel->emit(boost::asio::cancellation_type::terminal);
        }
    }

    // The waiting fiber ends its own wait (settle): as request_stop(), but a start that never
    // ran is finished here, without a wake-up, since the fiber is not parked. Returns true
    // when the handler is still to come and must be waited for.
    bool stop_from_owner() noexcept {
        stop = true;
        (void)h->undefer(start_call);
        if (!started) {
            result = boost::asio::error::operation_aborted;
            bytes = 0;
            done = true;
            return false;
        }
        if (cancel != nullptr) cancel->emit(boost::asio::cancellation_type::terminal);
        return !done;
    }

    // The completion handler: two pointers, and the wait's own memory for the operation.
    struct handler_fn {
        io_wait* op;
        using allocator_type = handler_allocator<void>;
        allocator_type get_allocator() const noexcept { return allocator_type(&op->memory); }
        void operator()(const boost::system::error_code& e, std::size_t n = 0) const noexcept {
            op->complete(e, n);
        }
    };
    auto handler() noexcept {
        return boost::asio::bind_cancellation_slot(cancel->slot(), handler_fn{this});
    }
};

io_direction::~io_direction() {
    for (direction_guard* g = guard; g != nullptr; g = g->prev_guard_) g->d_ = nullptr;
    if (op != nullptr) {
        op->stop = true;
        op->cancel = nullptr;
        op->dir = nullptr;
        // A start still queued would run on a dead object: it never runs.
        if (!op->started) op->request_stop();
    }
}

void io_direction::abort_deferred() noexcept {
    if (op != nullptr && op->deferred && !op->started && !op->done) op->request_stop();
}

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
// `deferred`: see io_wait::deferred.
template <class Start>
std::size_t async_io(hub& h, io_direction& d, const char* what, deadline dl,
                     boost::system::error_code& ec, Start&& start, io_description desc = {},
                     bool deferred = false) {
    io_wait op(h, d, what);
    op.deferred = deferred;
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
