#pragma once

/// \file
/// A connection server: accepts on a listener and runs a handler in a task of its own per
/// connection (gevent's StreamServer, asyncio's start_server).
///
///     tcp::acceptor listener(tcp::endpoint(address_v4::loopback(), 8080));
///     serve(listener, [](tcp::socket s) { ... });            // until the task is cancelled
///
///     server<tcp::protocol> srv(std::move(listener), handler, {.max_connections = 1000});
///     auto t = srv.start();  ...  srv.stop(2s);              // explicit graceful stop
///
/// - Concurrency cap: with max_connections set, accepting pauses while that many handlers
///   run (connections wait in the kernel's backlog).
/// - Accept errors: running out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM)
///   pauses accepting with a doubling back-off, reported once per episode; a connection
///   aborted before it was accepted is skipped. The server neither dies nor spins.
/// - A handler that throws is reported (the hub's exception handler) with the peer's address;
///   the server goes on. The socket is closed when the handler returns.
/// - Graceful stop: stop accepting, wait for the handlers up to a grace period, cancel those
///   still running, wait for them to unwind.
///
/// Several cores: multi_server runs one server per hub of a hub_group, each on its own
/// listener bound to the same port with SO_REUSEPORT (the kernel spreads the connections).
///
/// Thread: a server belongs to the hub of the thread that created it.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "greenfiber/hub_group.hpp"
#include "greenfiber/socket.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"

namespace greenfiber {

/// How a server runs its connections: a cap, stacks, the accept back-off, a grace period.
struct server_options {
    std::size_t max_connections = 0;  ///< handlers running at once; 0: no limit
    std::size_t stack_size = 0;       ///< each handler's stack; 0: the default
    /// Back-off after an accept fails for lack of resources: starts here, doubles, caps at
    /// accept_backoff_max.
    std::chrono::milliseconds accept_backoff{10};
    /// The longest back-off between two accept attempts.
    std::chrono::milliseconds accept_backoff_max{1000};
    /// serve(): how long a cancelled serve() lets the handlers finish before cancelling them.
    std::chrono::steady_clock::duration grace = std::chrono::seconds(5);
    std::string name = "server";  ///< names the tasks ("server-conn-7") and the reports
    /// Each handler's small stack in bytes (stack.hpp, "Small stacks"; spawn_options::
    /// small_stack), 0: a paged stack of stack_size. An idle connection then costs its small
    /// stack instead of a resident page. Count the handler's own frames, its buffers on the
    /// stack, and the calls it makes: the server's own frames and a socket read or write
    /// take 1.7 to 2.4 KiB, and being cancelled in one (a stop past its grace) adds little
    /// where small_stacks_unwind_aside(). An echo handler with a 256-byte buffer on its
    /// stack reaches 2.6 KiB, cancelled or not: 3 072 bytes hold it. A handler's failure is
    /// reported from the thread's side stack.
    std::size_t small_stack = 0;
};

namespace detail {

struct server_stop_state;

/// The protocol-independent part: bookkeeping of handlers, back-off, stop.
class server_core {
  public:
    server_core(server_options opts);
    ~server_core();
    server_core(const server_core&) = delete;
    server_core& operator=(const server_core&) = delete;

    std::size_t active() const noexcept { return active_; }
    std::size_t served() const noexcept { return served_; }
    /// Accepts that failed for lack of resources (each followed by a pause).
    std::size_t accept_shortages() const noexcept { return shortages_; }
    bool stopping() const noexcept { return stopping_; }
    const server_options& options() const noexcept { return opts_; }

  protected:
    /// Waits for a free slot (max_connections). False when stopping.
    bool wait_for_slot();
    /// Handles a failed accept: true to go on accepting, false to stop (listener closed or
    /// stop()); throws for an error that means the listener is unusable.
    bool on_accept_error(const boost::system::error_code& ec, const std::string& where);
    void accepted_ok() noexcept { backoff_ = {}; }
    /// Runs `body` in a new handler task, tracked until it ends.
    void launch(unique_function<void()> body, std::string peer);
    /// Stops accepting (close_listener) and ends the handlers: waits up to `grace`, then
    /// cancels the rest and waits for them, and for the accept loop to leave. Returns how
    /// many were cancelled. The waits are shielded: a cancelled caller (serve() being
    /// cancelled) still gives the handlers their grace, and the server is never left with
    /// handlers that refer to it.
    std::size_t stop_handlers(std::chrono::steady_clock::duration grace);
    /// Brackets the accept loop, so that stop() from another fiber can wait for it to leave.
    /// Stops accepting and kills every handler still running, and the accept loop's task if
    /// another task runs it (their fibers unwind now); reports it, with `why` (the error
    /// that ended the destructor's wait, or null). Switches: yes.
    void kill_handlers(std::exception_ptr why) noexcept;
    void enter_loop();
    void leave_loop() noexcept;
    void set_closer(unique_function<void()> close_listener) { close_ = std::move(close_listener); }

  private:
    void finished(std::list<any_task>::iterator it) noexcept;
    /// Reports the exception in flight (called in a handler): the handler of `peer` threw.
    void report_handler_failure(const std::string& peer) noexcept;
    void notify_stoppers() noexcept;

    server_options opts_;
    std::list<any_task> conns_;  // running handlers (the hub owns them; these are handles)
    std::size_t active_ = 0;
    std::size_t served_ = 0;
    std::size_t shortages_ = 0;
    std::size_t next_id_ = 0;
    bool stopping_ = false;
    std::chrono::milliseconds backoff_{0};
    event slot_freed_;  // set when a handler ends (wakes a paused accept loop)
    // The fibers in stop_handlers(), and whether the server is gone. Shared with each of
    // them while it waits: the owner may free the server as soon as serve_forever()
    // returns, before a stopping fiber runs again; that fiber then finds out here, without
    // touching the server (tests/io/server_stop_test.cpp).
    std::shared_ptr<server_stop_state> stop_;
    const void* loop_fiber_ = nullptr;  // the fiber running the accept loop, if any
    unique_function<void()> close_;
};

}  // namespace detail

/// A connection server (see the file comment): accepts on `listener` and runs `handler`
/// with each connection's socket in a task of its own, until stop().
/// Also, from its base: active() (handlers running now), served() (connections handed to a
/// handler so far), accept_shortages() (accepts that failed for lack of resources),
/// stopping() and options().
/// Thread: thread-bound: it belongs to the hub of the thread that created it.
template <class Protocol>
class server : public detail::server_core {
  public:
    ///@{
    /// The listener's and the connections' socket types, and the handler's type: it gets the
    /// connection's socket and owns it; the socket is closed when the handler returns.
    using socket_type = basic_stream_socket<Protocol>;
    using acceptor_type = basic_acceptor<Protocol>;
    using handler_type = std::function<void(socket_type)>;
    ///@}

    /// A server on `listener` (it takes it) running `handler` per connection. Accepts nothing
    /// until serve_forever() or start(). Switches: no.
    server(acceptor_type listener, handler_type handler, server_options opts = {})
        : server_core(std::move(opts)),
          listener_(std::move(listener)),
          handler_(std::move(handler)) {
        set_closer([this] {
            boost::system::error_code ignored;
            listener_.close(ignored);
        });
    }
    /// Handlers refer to the server: whatever still runs is cancelled and waited for. A
    /// destructor must not suspend while an exception unwinds it (a kill there would call
    /// std::terminate), so then, or if the wait fails (loop_exit), the handlers still
    /// running are killed at once instead, and that is reported.
    ~server() {
        if (std::uncaught_exceptions() > 0) {
            kill_handlers(nullptr);
            return;
        }
        try {
            stop_handlers(std::chrono::steady_clock::duration::zero());
        } catch (...) {
            kill_handlers(std::current_exception());
        }
    }

    /// The listener's address (with the port the system chose for port 0).
    /// Switches: no.   Throws: system_error.
    auto local_endpoint() const { return listener_.local_endpoint(); }

    /// Accepts connections until stop() (or until the calling task is cancelled: then it
    /// stops as stop(options().grace) does and rethrows cancelled_error).
    /// Switches: yes.   Throws: cancelled_error; boost::system::system_error if the
    /// listener fails for good (not open, not listening).
    void serve_forever() {
        enter_loop();
        struct leave {
            server& s;
            ~leave() { s.leave_loop(); }
        } guard{*this};
        try {
            accept_loop();
        } catch (const cancelled_error&) {
            stop(options().grace);
            throw;
        }
    }

    /// serve_forever() in a task of its own.
    [[nodiscard]] task<void> start() {
        return spawn(spawn_options{options().name}, [this] { serve_forever(); });
    }

    /// Graceful stop: closes the listener (serve_forever returns), waits up to `grace` for
    /// the handlers, cancels those still running and waits for them. Returns how many were
    /// cancelled. It may be called from any fiber of the server's thread, while another
    /// fiber runs serve_forever() and frees the server as soon as that returns: stop() then
    /// returns without touching the server again (it counts only what it cancelled itself).
    /// Switches: yes.
    std::size_t stop(std::chrono::steady_clock::duration grace = std::chrono::seconds(5)) {
        return stop_handlers(grace);
    }
    /// stop() with any duration type, saturating (hours::max(): no handler is cancelled
    /// before it ends). Switches: yes.
    template <class Rep, class Period>
    std::size_t stop(std::chrono::duration<Rep, Period> grace) {
        return stop_handlers(detail::to_steady_duration(grace));
    }

  private:
    void accept_loop() {
        while (wait_for_slot()) {
            boost::system::error_code ec;
            socket_type s = listener_.accept(ec);
            if (ec) {
                if (!on_accept_error(ec, options().name)) return;
                continue;
            }
            accepted_ok();
            std::string peer;
            try {
                peer = to_string(s.remote_endpoint());
            } catch (const boost::system::system_error&) {
                peer = "a peer that already left";
            }
            launch([this, sock = std::move(s)]() mutable { handler_(std::move(sock)); },
                   std::move(peer));
        }
    }

    template <class Endpoint>
    static std::string to_string(const Endpoint& ep) {
        if constexpr (requires { ep.address(); }) {
            return ep.address().to_string() + ":" + std::to_string(ep.port());
        } else {
            return ep.path().empty() ? std::string("an unnamed peer") : std::string(ep.path());
        }
    }

    acceptor_type listener_;
    handler_type handler_;
};

/// Serves `listener` with `handler` until the calling task is cancelled (then: graceful stop
/// with options.grace, and cancelled_error). Switches: yes.
/// The server takes the listener.
template <class Protocol, class Handler>
void serve(basic_acceptor<Protocol> listener, Handler&& handler, server_options opts = {}) {
    server<Protocol> srv(std::move(listener), std::forward<Handler>(handler), std::move(opts));
    srv.serve_forever();
}

namespace detail {
struct multi_server_state;
}

/// A TCP server on every hub of a hub_group (see the file comment): each hub runs a server
/// (the class above) on a listener of its own, all bound to one address and port with
/// SO_REUSEPORT, so the kernel spreads new connections over the hubs by a hash of their
/// addresses and no thread hands connections to another. Why listeners per hub and not one
/// acceptor handing sockets out: a socket is bound to the hub that created it, so a hand-off
/// would cost a cross-thread post per connection and a listener thread that every
/// connection waits for; with SO_REUSEPORT each accept stays on the hub that serves it
/// (bench/RESULTS.md, "Both cores", has the measured spread and cost).
/// - `handler` is copied once per hub; each hub calls its own copy, on its own thread.
/// - server_options apply per hub: max_connections caps each hub's handlers, so the group
///   serves at most size() × max_connections at once; the names of the tasks and reports
///   get "-<hub index>" appended.
/// - A handler that throws is reported on its hub; that hub and the others go on serving.
/// - stop() stops every hub's server gracefully (as server::stop(grace)), concurrently.
///   Connections still in a listener's kernel queue when it closes are reset (Linux does
///   not move them to another SO_REUSEPORT listener).
/// Thread: thread-bound to the thread that created it (its calls park that thread's fiber
/// while the hubs do the work); the group's hubs run the servers.
class multi_server {
  public:
    /// The handler's type: it gets the connection's socket and owns it.
    using handler_type = std::function<void(tcp::socket)>;

    /// Starts a server on every hub of `group`, listening on `ep` (port 0: the first hub
    /// picks a port and the others bind the same one), and returns once every hub listens.
    /// Switches: yes (waits for the hubs).
    /// Throws: boost::system::system_error if a listener cannot be opened or bound (the
    /// servers already started are stopped first); hub_group_stopped; cancelled_error.
    multi_server(hub_group& group, const tcp::endpoint& ep, handler_type handler,
                 server_options opts = {});
    /// stop(options().grace) unless stopped; a failure is reported.
    /// Switches: yes, unless stopped already.
    ~multi_server();
    multi_server(const multi_server&) = delete;
    multi_server& operator=(const multi_server&) = delete;

    /// The address every hub listens on (with the port chosen for port 0). Switches: no.
    const tcp::endpoint& local_endpoint() const noexcept { return ep_; }
    /// How many hubs serve. Switches: no.
    std::size_t hubs() const noexcept { return runs_.size(); }
    /// Connections handed to a handler so far by hub `i` (every hub: sum them).
    /// Switches: no.   Thread: thread-safe.   Throws: std::out_of_range.
    std::size_t served(std::size_t i) const;
    /// Handlers running now on hub `i`. Switches: no.   Thread: thread-safe.
    /// Throws: std::out_of_range.
    std::size_t active(std::size_t i) const;

    /// Graceful stop of every hub's server: each closes its listener, waits up to `grace`
    /// for its handlers, cancels those still running and waits for them (server::stop).
    /// Returns how many handlers were cancelled on all hubs together. Calling it again
    /// returns 0. If the group was stopped first, its stop already ended the servers.
    /// Switches: yes.   Throws: cancelled_error (the servers still stop: each hub finishes
    /// its graceful stop on its own).
    std::size_t stop(std::chrono::steady_clock::duration grace);
    /// stop() with any duration type, saturating.
    template <class Rep, class Period>
    std::size_t stop(std::chrono::duration<Rep, Period> grace) {
        return stop(detail::to_steady_duration(grace));
    }

  private:
    hub_group& group_;  // Borrowed: must outlive the multi_server, or be stopped first.
    server_options opts_;
    tcp::endpoint ep_;
    std::shared_ptr<detail::multi_server_state> state_;  // Shared with the hubs.
    std::vector<remote_task<void>> runs_;                // each hub's serve_forever()
    bool stopped_ = false;
};

}  // namespace greenfiber
