// The connection server's bookkeeping: handler tasks, the concurrency cap, accept back-off
// and the graceful stop.

#include "greenfiber/server.hpp"

#include <algorithm>
#include <cerrno>
#include <string>

namespace greenfiber::detail {

namespace {

// Errors that mean "out of resources for now": retry later, never spin on them.
bool is_resource_shortage(const boost::system::error_code& ec) {
    if (ec.category() != boost::system::system_category()) return false;
    const int e = ec.value();
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

// A connection that went away between the kernel's accept queue and accept(): skip it.
bool is_transient(const boost::system::error_code& ec) {
    if (ec == boost::asio::error::connection_aborted) return true;
    if (ec.category() != boost::system::system_category()) return false;
    const int e = ec.value();
    return e == EPROTO || e == EPERM || e == ENETDOWN || e == ENOPROTOOPT || e == EHOSTDOWN ||
           e == ENONET || e == EHOSTUNREACH || e == EOPNOTSUPP || e == ENETUNREACH || e == EINTR ||
           e == ECONNRESET;
}

}  // namespace

server_core::server_core(server_options opts) : opts_(std::move(opts)) {}

server_core::~server_core() = default;

void server_core::enter_loop() {
    if (loop_fiber_ != nullptr) {
        throw error("greenfiber: server '" + opts_.name + "' is already serving");
    }
    if (stopping_) throw error("greenfiber: server '" + opts_.name + "' was stopped");
    loop_fiber_ = tls->current;
}

void server_core::leave_loop() noexcept {
    loop_fiber_ = nullptr;
    notify_stoppers();
}

void server_core::notify_stoppers() noexcept {
    hub& h = hub::current();
    while (waiter* w = stoppers_.pop()) h.wake(*w);
}

bool server_core::wait_for_slot() {
    while (!stopping_ && opts_.max_connections != 0 && active_ >= opts_.max_connections) {
        slot_freed_.clear();
        slot_freed_.wait();
    }
    return !stopping_;
}

bool server_core::on_accept_error(const boost::system::error_code& ec, const std::string& where) {
    if (stopping_ || ec == boost::asio::error::operation_aborted) return false;
    if (is_transient(ec)) return true;
    if (!is_resource_shortage(ec)) {
        throw boost::system::system_error(ec, "greenfiber: server '" + where + "': accept");
    }
    // Out of descriptors or memory: pause, doubling the pause while it lasts. A handler
    // that ends (freeing its descriptor) ends the pause early.
    ++shortages_;
    const bool first = backoff_.count() == 0;
    backoff_ = first ? opts_.accept_backoff : std::min(backoff_ * 2, opts_.accept_backoff_max);
    if (first) {
        hub::current().report(
            {"greenfiber: server '" + where + "': accept failed (" + ec.message() +
                 "); pausing accepts, from " + std::to_string(backoff_.count()) + " ms up to " +
                 std::to_string(opts_.accept_backoff_max.count()) + " ms, until it succeeds again",
             nullptr, nullptr});
    }
    slot_freed_.clear();
    (void)slot_freed_.wait_for(backoff_);
    return !stopping_;
}

void server_core::launch(unique_function<void()> body, std::string peer) {
    conns_.emplace_front();
    const auto it = conns_.begin();
    ++active_;
    ++served_;
    try {
        *it = spawn(
            spawn_options{opts_.name + "-conn-" + std::to_string(++next_id_), opts_.stack_size},
            [this, it, body = std::move(body), peer = std::move(peer)]() mutable {
                struct done {
                    server_core* s;
                    std::list<any_task>::iterator it;
                    ~done() { s->finished(it); }
                } guard{this, it};
                try {
                    body();
                } catch (const cancelled_error&) {
                    throw;
                } catch (...) {
                    hub::current().report({"greenfiber: server '" + opts_.name +
                                               "': the handler of the connection from " + peer +
                                               " threw",
                                           std::current_exception(), nullptr});
                }
            });
    } catch (...) {
        finished(it);
        throw;
    }
}

void server_core::finished(std::list<any_task>::iterator it) noexcept {
    conns_.erase(it);
    --active_;
    slot_freed_.set();
    if (active_ == 0) notify_stoppers();
}

std::size_t server_core::stop_handlers(std::chrono::steady_clock::duration grace) {
    stopping_ = true;
    if (close_) close_();
    slot_freed_.set();  // a paused accept loop sees stopping_
    hub& h = hub::current();
    waiter w("a server's handlers to finish (stop)");
    // Parks once, linked where handlers and the accept loop find it when they end.
    auto park = [&](const std::chrono::steady_clock::time_point* until) {
        stoppers_.push(&w);
        struct unlink {
            waiter_queue& q;
            waiter& w;
            ~unlink() { q.remove(&w); }
        } guard{stoppers_, w};
        return until != nullptr ? h.park_shielded_until(w, *until) : (h.park_shielded(w), true);
    };
    if (active_ > 0 && grace > std::chrono::steady_clock::duration::zero()) {
        const auto until = deadline_after(grace);
        while (active_ > 0 && park(&until)) {
        }
    }
    std::size_t n = 0;
    for (any_task& t : conns_) {
        if (t && !t.done()) {
            t.cancel();
            ++n;
        }
    }
    while (active_ > 0) (void)park(nullptr);
    while (loop_fiber_ != nullptr && loop_fiber_ != tls->current) (void)park(nullptr);
    return n;
}

}  // namespace greenfiber::detail
