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

void server_core::kill_handlers(std::exception_ptr why) noexcept {
    stopping_ = true;
    if (close_) close_();
    const task_base* self = task_base::current();
    auto* loop_task =
        loop_fiber_ != nullptr && loop_fiber_ != tls->current
            ? static_cast<task_base*>(static_cast<const greenlet_impl*>(loop_fiber_)->local)
            : nullptr;
    if (active_ == 0 && loop_task == nullptr && !why) return;
    try {
        hub::current().report(
            {"greenfiber: server '" + opts_.name + "' was destroyed while " +
                 std::to_string(active_) + " handler(s) still ran" +
                 (why ? ", and waiting for them failed" : " (during unwinding)") + ": killing them",
             why, nullptr, why ? report_severity::error : report_severity::warning, "server"});
    } catch (...) {
    }
    // Each kill unwinds a handler, which erases its entry: take them one at a time.
    for (bool again = true; again;) {
        again = false;
        for (any_task& t : conns_) {
            if (t && !t.done() && t.state() != self) {
                any_task keep = t.share_any();
                keep.state()->kill();
                again = true;
                break;
            }
        }
    }
    if (loop_task != nullptr) loop_task->kill();
}

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
    stoppers_.signal_all();
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
             nullptr, nullptr, report_severity::warning, "server"});
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
                    hub::current().report(
                        {"greenfiber: server '" + opts_.name +
                             "': the handler of the connection from " + peer + " threw",
                         std::current_exception(), nullptr, report_severity::error, "server"});
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
    notify_stoppers();  // they check their own condition
}

std::size_t server_core::stop_handlers(std::chrono::steady_clock::duration grace) {
    stopping_ = true;
    if (close_) close_();
    slot_freed_.set();  // a paused accept loop sees stopping_
    // Parks once, linked where handlers and the accept loop find it when they end.
    auto park = [&](const std::chrono::steady_clock::time_point* until) {
        sync_waiter sw("a server's handlers to finish (stop)");
        return park_in(stoppers_, sw, until, true);
    };
    // stop() called from one of this server's own handlers: it does not wait for itself
    // (it could never finish while waiting), nor cancel itself.
    const task_base* self = task_base::current();
    const std::size_t own =
        self != nullptr && std::any_of(conns_.begin(), conns_.end(),
                                       [&](const any_task& t) { return t.state() == self; })
            ? 1
            : 0;
    if (active_ > own && grace > std::chrono::steady_clock::duration::zero()) {
        const auto until = deadline_after(grace);
        while (active_ > own && park(&until)) {
        }
    }
    std::size_t n = 0;
    for (any_task& t : conns_) {
        if (t && !t.done() && t.state() != self) {
            t.cancel();
            ++n;
        }
    }
    while (active_ > own) (void)park(nullptr);
    while (loop_fiber_ != nullptr && loop_fiber_ != tls->current) (void)park(nullptr);
    return n;
}

}  // namespace greenfiber::detail
