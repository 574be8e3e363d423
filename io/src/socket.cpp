// Sockets: the readiness wait, connect's system calls and the misuse errors.

#include "greenfiber/socket.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>
#include <string>

#include "greenfiber/task.hpp"

namespace greenfiber {

namespace detail {

namespace {

std::string who(const greenlet_impl* g) {
    if (g == nullptr) return "nobody";
    if (g->local != nullptr)
        return "task '" + static_cast<const task_base*>(g->local)->name() + "'";
    if (g->is_main) return "the main greenlet";
    if (g->name.empty()) return "greenlet #" + std::to_string(g->id);
    return "greenlet '" + g->name + "'";
}

// Ends an operation whose handler has not run yet: cancels it and waits out its handler
// (shielded), so that it never runs on a dead frame.
void settle(io_wait& op) {
    if (!op.armed || op.done) return;
    if (!op.stop_from_owner()) return;  // a deferred start that never ran: nothing to wait for
    while (!op.done) op.h->park_shielded(op.w);
}

// Registers `op` as its direction's wait in progress for the scope of await_io(), so that an
// object destroyed meanwhile can tell the wait (~io_direction).
class in_progress {
  public:
    explicit in_progress(io_wait& op) noexcept : op_(op) { op.dir->op = &op; }
    ~in_progress() {
        if (op_.dir != nullptr) op_.dir->op = nullptr;
    }
    in_progress(const in_progress&) = delete;
    in_progress& operator=(const in_progress&) = delete;

  private:
    io_wait& op_;
};

}  // namespace

void throw_busy(const char* what, const char* direction, const greenlet_impl* holder,
                const greenlet_impl* self) {
    throw error(std::string("greenfiber: ") + what + " from " + who(self) +
                ": the socket already has a " + direction + ", " + who(holder) +
                " (one reader and one writer at a time; give each direction one fiber, or "
                "guard it with a greenfiber::mutex)");
}

void throw_wrong_thread(const char* what, const hub& h) {
    std::ostringstream os;
    os << "greenfiber: " << what << " on a socket of the hub of thread " << h.thread_id()
       << " from thread " << std::this_thread::get_id()
       << ": an I/O object belongs to the thread that created it (post() to its hub)";
    throw error(os.str());
}

std::size_t await_io(io_wait& op, deadline dl, boost::system::error_code& ec) {
    op.w.context = &op;
    in_progress registered(op);
    // A cancelled task ends only its own direction's operation; the handler then wakes it.
    op.w.on_cancel = [](waiter& w) noexcept { static_cast<io_wait*>(w.context)->request_stop(); };
    // The fiber runs again only through the operation's handler, through its deadline, or
    // through whoever ends a deferred start before it ran (request_stop).
    auto arm = [](void* p) noexcept { static_cast<io_wait*>(p)->arm(); };
    try {
        if (dl.is_set()) {
            (void)op.h->park_until(op.w, dl.at(), arm, &op);
        } else {
            op.h->park(op.w, arm, &op);
        }
    } catch (const greenlet_exit&) {
        settle(op);
        throw;
    } catch (...) {
        settle(op);
        if (op.bytes == 0) throw;
        // The transfer happened before the cancellation could stop it: report it, and raise
        // the cancellation at the next suspension point instead. A cancel() request is
        // still pending (it is sticky); an interrupt is re-armed.
        if (auto* t = task_base::current()) {
            try {
                throw;
            } catch (const cancelled_error&) {
            } catch (...) {
                t->interrupt(std::current_exception());
            }
        }
        ec = op.result;
        return op.bytes;
    }
    if (!op.done) {
        settle(op);  // the deadline passed first
        if (op.bytes == 0) {
            ec = boost::asio::error::timed_out;
            return 0;
        }
    }
    ec = op.result;
    return op.bytes;
}

bool start_connect(int fd, const void* addr, std::size_t len, boost::system::error_code& ec) {
    ec.clear();
    if (::connect(fd, static_cast<const sockaddr*>(addr), static_cast<socklen_t>(len)) == 0) {
        return false;
    }
    // EINTR: the connect goes on asynchronously (POSIX), like EINPROGRESS.
    if (errno == EINPROGRESS || errno == EINTR || errno == EAGAIN) return true;
    ec.assign(errno, boost::system::system_category());
    return false;
}

void finish_connect(int fd, boost::system::error_code& ec) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        ec.assign(errno, boost::system::system_category());
    } else if (err != 0) {
        ec.assign(err, boost::system::system_category());
    } else {
        ec.clear();
    }
}

}  // namespace detail

void wait_readable(int fd, deadline dl) {
    fd_watch w(fd);
    w.wait_readable(dl);
}

void wait_writable(int fd, deadline dl) {
    fd_watch w(fd);
    w.wait_writable(dl);
}

namespace unix_stream {

std::pair<socket, socket> pair(hub& h) {
    socket::native_type a(h.context());
    socket::native_type b(h.context());
    boost::asio::local::connect_pair(a, b);
    return {socket(h, std::move(a)), socket(h, std::move(b))};
}

}  // namespace unix_stream

}  // namespace greenfiber
