// The connection server's bookkeeping: handler tasks, the concurrency cap, accept back-off
// and the graceful stop.

#include "greenfiber/server.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "side_stack.hpp"

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

// What a fiber in stop_handlers() may still read once the server is freed.
struct server_stop_state {
    wait_list stoppers;      // fibers in stop_handlers(), signalled as handlers end
    bool destroyed = false;  // the server is gone: its stoppers return without touching it
};

server_core::server_core(server_options opts)
    : opts_(std::move(opts)), stop_(std::make_shared<server_stop_state>()) {}

server_core::~server_core() {
    // The stoppers still holding stop_ were signalled already (the accept loop left and
    // every handler ended before the derived destructor returned, or they were killed);
    // signalling again costs nothing and wakes any that a kill left waiting.
    stop_->destroyed = true;
    stop_->stoppers.signal_all();
}

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
    stop_->stoppers.signal_all();
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
        *it = spawn(spawn_options{.name = opts_.name + "-conn-" + std::to_string(++next_id_),
                                  .stack_size = opts_.stack_size,
                                  .small_stack = opts_.small_stack},
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
                            report_handler_failure(peer);
                        }
                    });
    } catch (...) {
        finished(it);
        throw;
    }
}

void server_core::report_handler_failure(const std::string& peer) noexcept {
    // On a stack of the thread's own when the handler's is small: the report handler
    // formats and writes (stack.hpp, "Small stacks").
    const std::exception_ptr failure = std::current_exception();
    detail::on_side_stack_throwing([&]() noexcept {
        std::string msg;
        try {
            msg = "greenfiber: server '" + opts_.name + "': the handler of the connection from " +
                  peer + " threw";
        } catch (...) {
            msg.clear();  // out of memory: the exception alone says what failed
        }
        hub::current().report({msg.empty()
                                   ? std::string_view("greenfiber: a server's handler threw")
                                   : std::string_view(msg),
                               failure, nullptr, report_severity::error, "server"});
    });
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
    // Every park may end with the server freed by its owner (serve_forever() returned in
    // another fiber, which then destroyed it): after each, `st` says so, and nothing of
    // the server may be read then. `st` keeps the wait list alive for the park itself.
    const std::shared_ptr<server_stop_state> st = stop_;
    // Parks once, linked where handlers and the accept loop find it when they end; true
    // unless `until` passed first.
    auto park = [&st](const std::chrono::steady_clock::time_point* until) {
        sync_waiter sw("a server's handlers to finish (stop)");
        return park_in(st->stoppers, sw, until, true);
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
        while (active_ > own) {
            const bool woken = park(&until);
            if (st->destroyed) return 0;
            if (!woken) break;
        }
    }
    std::size_t n = 0;
    for (any_task& t : conns_) {
        if (t && !t.done() && t.state() != self) {
            t.cancel();  // does not switch: the handler unwinds when its hub runs it
            ++n;
        }
    }
    while (active_ > own) {
        (void)park(nullptr);
        if (st->destroyed) return n;
    }
    while (loop_fiber_ != nullptr && loop_fiber_ != tls->current) {
        (void)park(nullptr);
        if (st->destroyed) return n;
    }
    return n;
}

}  // namespace greenfiber::detail

namespace greenfiber {

namespace detail {

// What the hubs of a multi_server share with it: each hub's server, while it runs, and
// counters anyone may read.
struct multi_server_state {
    struct hub_part {
        // The hub's server while it serves; only on its hub's thread. Shared: a stop() in
        // progress keeps it alive while serve_forever() has returned and its task ends (the
        // stopping fiber still waits inside it for the accept loop to have left).
        std::shared_ptr<server<boost::asio::ip::tcp>> srv;
        std::atomic<std::size_t> served{0};
        std::atomic<std::size_t> active{0};
    };
    std::vector<std::unique_ptr<hub_part>> parts;  // fixed after construction
};

}  // namespace detail

namespace {

// A listener on `ep` that shares its port with the other hubs' listeners (SO_REUSEPORT).
tcp::acceptor reuse_port_listener(const tcp::endpoint& ep) {
    tcp::acceptor a;
    auto& n = a.native();
    n.open(ep.protocol());
    n.set_option(boost::asio::socket_base::reuse_address(true));
    const int one = 1;
    if (::setsockopt(n.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        throw boost::system::system_error(errno, boost::system::system_category(),
                                          "greenfiber: multi_server: setsockopt(SO_REUSEPORT)");
    }
    n.bind(ep);
    n.listen();
    n.non_blocking(true);  // as basic_acceptor's own constructor: accept() waits in the hub
    return a;
}

}  // namespace

multi_server::multi_server(hub_group& group, const tcp::endpoint& ep, handler_type handler,
                           server_options opts)
    : group_(group),
      opts_(std::move(opts)),
      ep_(ep),
      state_(std::make_shared<detail::multi_server_state>()) {
    const std::size_t n = group.size();
    for (std::size_t i = 0; i < n; ++i)
        state_->parts.push_back(std::make_unique<detail::multi_server_state::hub_part>());
    try {
        for (std::size_t i = 0; i < n; ++i) {
            server_options o = opts_;
            o.name += "-" + std::to_string(i);
            promise<tcp::endpoint> listening;  // this hub's: set from hub i once it listens
            future<tcp::endpoint> bound = listening.get_future();
            spawn_options task_opts{.name = o.name};  // before `o` moves into the task
            runs_.push_back(
                group.spawn_on(i, std::move(task_opts),
                               [st = state_, i, ep = ep_, handler, o = std::move(o),
                                p = std::move(listening)]() mutable {
                                   auto& part = *st->parts[i];
                                   std::shared_ptr<server<boost::asio::ip::tcp>> srv;
                                   try {
                                       srv = std::make_shared<server<boost::asio::ip::tcp>>(
                                           reuse_port_listener(ep),
                                           [&part, h = std::move(handler)](tcp::socket s) {
                                               part.served.fetch_add(1, std::memory_order_relaxed);
                                               part.active.fetch_add(1, std::memory_order_relaxed);
                                               struct done {
                                                   std::atomic<std::size_t>& n;
                                                   ~done() {
                                                       n.fetch_sub(1, std::memory_order_relaxed);
                                                   }
                                               } d{part.active};
                                               h(std::move(s));
                                           },
                                           std::move(o));
                                       p.set_value(srv->local_endpoint());
                                   } catch (...) {
                                       p.set_exception(std::current_exception());
                                       return;
                                   }
                                   part.srv = srv;
                                   struct unpublish {
                                       detail::multi_server_state::hub_part& part;
                                       ~unpublish() { part.srv.reset(); }
                                   } at_end{part};
                                   srv->serve_forever();
                               }));
            // Hub 0 picks the port for port 0; the others bind the same one.
            ep_ = bound.get();
        }
    } catch (...) {
        // The hubs that listen already are stopped; the error is the caller's.
        try {
            (void)stop(std::chrono::steady_clock::duration::zero());
        } catch (...) {
        }
        throw;
    }
}

multi_server::~multi_server() {
    if (stopped_) return;
    if (std::uncaught_exceptions() > 0) {
        // No waiting while an exception unwinds: each hub stops its server on its own
        // (serve_forever's graceful stop on cancellation).
        for (auto& r : runs_) (void)r.cancel();
        return;
    }
    try {
        (void)stop(opts_.grace);
    } catch (...) {
        report_failure({"greenfiber: ~multi_server(): stopping the hubs' servers",
                        std::current_exception(), nullptr, report_severity::error, "server"});
    }
}

std::size_t multi_server::served(std::size_t i) const {
    return state_->parts.at(i)->served.load(std::memory_order_relaxed);
}

std::size_t multi_server::active(std::size_t i) const {
    return state_->parts.at(i)->active.load(std::memory_order_relaxed);
}

std::size_t multi_server::stop(std::chrono::steady_clock::duration grace) {
    if (stopped_) return 0;
    stopped_ = true;
    std::vector<remote_task<std::size_t>> stops;
    for (std::size_t i = 0; i < runs_.size(); ++i) {
        try {
            stops.push_back(group_.spawn_on(i, [st = state_, i, grace]() -> std::size_t {
                std::shared_ptr<server<boost::asio::ip::tcp>> srv = st->parts[i]->srv;
                return srv != nullptr ? srv->stop(grace) : 0;
            }));
        } catch (const hub_group_stopped&) {
            // The group's stop cancelled the servers already (a graceful stop each).
        }
    }
    std::size_t cancelled = 0;
    // A remote task that ended cancelled (the group stopping meanwhile) is not an error of
    // this stop; the caller's own cancellation is (the remote task is not ready then).
    for (auto& r : stops) {
        try {
            cancelled += r.get();
        } catch (const cancelled_error&) {
            if (!r.ready()) throw;
        }
    }
    for (auto& r : runs_) {
        try {
            r.get();
        } catch (const cancelled_error&) {
            if (!r.ready()) throw;
        }
    }
    return cancelled;
}

}  // namespace greenfiber
