#pragma once

/// \file
/// Sockets whose blocking calls suspend only the calling fiber: TCP, UDP and Unix stream
/// sockets, listeners, and a readiness wait on any file descriptor.
///
/// Every call first tries the non-blocking system call and waits for readiness (on the
/// hub's epoll reactor) only when it would block: no allocation per operation when data is
/// there. Each blocking call comes in four forms, Asio's convention plus a deadline:
///
///     n = sock.read_some(buf);                 // throws boost::system::system_error
///     n = sock.read_some(buf, ec);             // reports through ec
///     n = sock.read_some(buf, 2s);             // gives up with timed_out
///     n = sock.read_some(buf, deadline, ec);
///
/// Errors: `timed_out` when the deadline passes, `operation_aborted` when close() or
/// cancel() ends the wait, `eof` when the peer closed. Cancelling the task that waits
/// cancels the operation and throws cancelled_error in every form (cancellation is not an
/// I/O error). Misuse (a second concurrent reader, another thread) throws greenfiber::error
/// in every form.
///
/// One reader and one writer may be active at once (full duplex). The stream sockets model
/// Asio's SyncReadStream and SyncWriteStream: boost::asio::read, read_until and Beast's
/// synchronous http::read/http::write work on them unchanged.
///
/// Every socket type and fd_watch also has the calls of their common base: native() (the
/// Asio object underneath, for options and calls not wrapped here), native_handle(),
/// get_executor(), home() (its hub), is_open(), close() (fibers waiting on it wake with
/// operation_aborted), cancel() (ends the waits in progress; it stays open),
/// set_option() / get_option() and local_endpoint() as Asio's, and set_timeout() /
/// timeout(), a default deadline for every blocking call given none (gevent's socket
/// timeout).
///
/// Thread: an object belongs to the hub of the thread that created it.
/// Destroying one while a fiber waits on it is a bug: the waiting fiber would refer to it.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <chrono>
#include <cstddef>
#include <type_traits>
#include <utility>

#include <boost/asio/basic_datagram_socket.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/system_error.hpp>

#include "greenfiber/deadline.hpp"
#include "greenfiber/detail/io_wait.hpp"
#include "greenfiber/hub.hpp"

namespace greenfiber {

namespace detail {

inline bool would_block(const boost::system::error_code& ec) noexcept {
    return ec == boost::asio::error::would_block || ec == boost::asio::error::try_again;
}

inline void throw_if(const boost::system::error_code& ec, const char* what) {
    if (ec) throw boost::system::system_error(ec, what);
}

/// Starts a non-blocking connect. Returns true when it is in progress (wait until writable,
/// then call finish_connect); false when it finished, with ec set on failure.
bool start_connect(int fd, const void* addr, std::size_t len, boost::system::error_code& ec);
void finish_connect(int fd, boost::system::error_code& ec);

/// The state shared by every socket type: the Asio object on the hub's io_context, its two
/// directions and the default timeout. `Object` is an Asio socket or acceptor type.
template <class Object>
class io_object {
  public:
    using native_type = Object;
    using executor_type = boost::asio::io_context::executor_type;

    explicit io_object(hub& h = hub::current()) : h_(&h), obj_(h.context()) {}
    io_object(hub& h, Object&& obj) : h_(&h), obj_(std::move(obj)) {}

    io_object(io_object&&) noexcept = default;
    io_object& operator=(io_object&&) noexcept = default;

    /// The Asio object underneath, for options and calls not wrapped here.
    Object& native() noexcept { return obj_; }
    const Object& native() const noexcept { return obj_; }
    typename Object::native_handle_type native_handle() { return obj_.native_handle(); }
    executor_type get_executor() noexcept { return obj_.get_executor(); }
    hub& home() const noexcept { return *h_; }

    bool is_open() const noexcept { return obj_.is_open(); }

    /// Closes now. Fibers waiting on it wake with operation_aborted.
    void close() {
        boost::system::error_code ec;
        close(ec);
        throw_if(ec, "close");
    }
    void close(boost::system::error_code& ec) {
        check_thread("close");
        read_.abort_deferred();
        write_.abort_deferred();
        obj_.close(ec);
    }

    /// Ends the waits in progress with operation_aborted; the object stays open.
    void cancel() {
        check_thread("cancel");
        read_.abort_deferred();
        write_.abort_deferred();
        boost::system::error_code ec;
        obj_.cancel(ec);
        throw_if(ec, "cancel");
    }

    /// Socket options and addresses, as Asio's. Switches: no.   Throws: system_error.
    template <class Option>
    void set_option(const Option& o) {
        check_thread("set_option");
        obj_.set_option(o);
    }
    template <class Option>
    void get_option(Option& o) const {
        check_thread("get_option");
        obj_.get_option(o);
    }
    auto local_endpoint() const {
        check_thread("local_endpoint");
        return obj_.local_endpoint();
    }

    /// A default deadline for every blocking call that is given none, counted from the call
    /// (gevent's socket timeout). Zero: none. Useful where the caller cannot pass one, as in
    /// Beast's http::read. Any duration type; one too long for the clock saturates
    /// (hours::max(): practically never). Switches: no.
    template <class Rep, class Period>
    void set_timeout(std::chrono::duration<Rep, Period> t) noexcept {
        timeout_ = detail::to_steady_duration(t);
    }
    std::chrono::steady_clock::duration timeout() const noexcept { return timeout_; }

  protected:
    ~io_object() = default;

    void check_thread(const char* what) const {
        if (std::this_thread::get_id() != h_->thread_id()) throw_wrong_thread(what, *h_);
    }

    deadline effective(deadline d) const noexcept {
        if (d.is_set() || timeout_.count() == 0) return d;
        return deadline(detail::deadline_after(timeout_));
    }

    /// A transfer: the non-blocking call `sync(ec)` first when `eager`; when it would block,
    /// Asio's asynchronous form `async(handler)`, parked on. Asio's form waits on the reactor
    /// without re-arming the descriptor (a readiness wait would cost an epoll_ctl per wait);
    /// it does try the call once itself when it starts (Asio 1.26 skips that only after end
    /// of stream). When not eager, that start is deferred until the fibers and completions
    /// already ready have run (io_wait::deferred), so the speculative call finds data more
    /// often. Returns the bytes transferred.
    template <class Sync, class Async>
    std::size_t transfer(io_direction& d, const char* what, const char* role, bool eager,
                         deadline dl, boost::system::error_code& ec, Sync&& sync, Async&& async) {
        check_thread(what);
        direction_guard guard(d, what, role);
        if (eager) {
            const std::size_t n = sync(ec);
            if (!would_block(ec)) return n;
        }
        return async_io(*h_, d, what, effective(dl), ec, std::forward<Async>(async),
                        detail::describe_io_on(obj_, &d == &read_), !eager);
    }

    /// Runs `attempt(ec)` (a non-blocking call) until it does not would-block, waiting for
    /// readiness in between. Returns what the last attempt returned.
    template <class Attempt>
    std::size_t perform(io_direction& d, typename Object::wait_type type, const char* what,
                        deadline dl, boost::system::error_code& ec, Attempt&& attempt) {
        check_thread(what);
        direction_guard guard(d, what, type == Object::wait_read ? "reader" : "writer");
        bool timed = false;
        for (;;) {
            const std::size_t n = attempt(ec);
            if (!would_block(ec)) return n;
            if (!timed) {
                dl = effective(dl);
                timed = true;
            }
            wait_ready(*h_, obj_, type, d, what, dl, ec);
            if (ec) return 0;
        }
    }

    hub* h_;
    Object obj_;
    io_direction read_;
    io_direction write_;
    std::chrono::steady_clock::duration timeout_{0};
};

}  // namespace detail

/// A stream whose every call shares one deadline: hands a deadline to code that calls
/// read_some/write_some itself, such as Asio's composed operations and Beast's synchronous
/// HTTP functions (which take the stream by lvalue reference):
///     auto in = with_deadline(sock, 5s);
///     http::read(in, buffer, req);
/// Models SyncReadStream and SyncWriteStream. Borrows the stream.
template <class Stream>
class deadline_stream {
  public:
    /// Borrows `s` (it must outlive this) for calls bounded by `dl`. Switches: no.
    deadline_stream(Stream& s, deadline dl) noexcept : s_(s), dl_(dl) {}

    ///@{
    /// `s`'s read_some / write_some with the shared deadline, in the throwing and the
    /// error_code form. Switches: yes.   Throws: as the stream's.
    template <class MB>
    std::size_t read_some(const MB& b) {
        return s_.read_some(b, dl_);
    }
    template <class MB>
    std::size_t read_some(const MB& b, boost::system::error_code& ec) {
        return s_.read_some(b, dl_, ec);
    }
    template <class CB>
    std::size_t write_some(const CB& b) {
        return s_.write_some(b, dl_);
    }
    template <class CB>
    std::size_t write_some(const CB& b, boost::system::error_code& ec) {
        return s_.write_some(b, dl_, ec);
    }
    ///@}
    /// The stream underneath. Switches: no.
    Stream& next_layer() noexcept { return s_; }

  private:
    Stream& s_;
    deadline dl_;
};

/// A deadline_stream over `s` bounded by `dl`. Switches: no.
template <class Stream>
deadline_stream<Stream> with_deadline(Stream& s, deadline dl) noexcept {
    return deadline_stream<Stream>(s, dl);
}

/// A connected stream socket (TCP or Unix). Models SyncReadStream and SyncWriteStream.
template <class Protocol>
class basic_stream_socket
    : public detail::io_object<
          boost::asio::basic_stream_socket<Protocol, boost::asio::io_context::executor_type>> {
    using base = detail::io_object<
        boost::asio::basic_stream_socket<Protocol, boost::asio::io_context::executor_type>>;
    using asio_socket = typename base::native_type;

  public:
    ///@{
    /// The protocol (tcp::protocol, unix_stream::protocol), its endpoint type, and what
    /// shutdown() takes (shutdown_send, shutdown_receive, shutdown_both).
    using protocol_type = Protocol;
    using endpoint_type = typename Protocol::endpoint;
    using shutdown_type = boost::asio::socket_base::shutdown_type;
    ///@}

    /// A socket not yet open; connect() opens it.
    explicit basic_stream_socket(hub& h = hub::current()) : base(h) {}
    /// Adopts a connected Asio socket of `h`'s io_context; makes it non-blocking.
    basic_stream_socket(hub& h, asio_socket&& s) : base(h, std::move(s)) {
        if (this->obj_.is_open()) this->obj_.non_blocking(true);
    }

    ///@{
    /// Connects to `ep`, opening the socket first if needed.
    void connect(const endpoint_type& ep, deadline dl = {}) {
        boost::system::error_code ec;
        connect(ep, dl, ec);
        detail::throw_if(ec, "connect");
    }
    void connect(const endpoint_type& ep, boost::system::error_code& ec) { connect(ep, {}, ec); }
    void connect(const endpoint_type& ep, deadline dl, boost::system::error_code& ec) {
        this->check_thread("connect");
        detail::direction_guard guard(this->write_, "connect", "writer");
        if (!this->obj_.is_open()) {
            this->obj_.open(ep.protocol(), ec);
            if (ec) return;
        }
        this->obj_.non_blocking(true, ec);
        if (ec) return;
        const int fd = this->obj_.native_handle();
        if (!detail::start_connect(fd, ep.data(), ep.size(), ec)) return;
        detail::wait_ready(*this->h_, this->obj_, asio_socket::wait_write, this->write_,
                           "a connect", this->effective(dl), ec);
        if (!ec) detail::finish_connect(fd, ec);
    }
    ///@}

    ///@{
    /// Reads at least one byte (or none for empty buffers). eof when the peer closed.
    template <class MB>
    std::size_t read_some(const MB& b, deadline dl = {}) {
        boost::system::error_code ec;
        const std::size_t n = read_some(b, dl, ec);
        detail::throw_if(ec, "read_some");
        return n;
    }
    template <class MB>
    std::size_t read_some(const MB& b, boost::system::error_code& ec) {
        return read_some(b, {}, ec);
    }
    template <class MB>
    std::size_t read_some(const MB& b, deadline dl, boost::system::error_code& ec) {
        const std::size_t size = boost::asio::buffer_size(b);
        const std::size_t n = this->transfer(
            this->read_, "read_some", "reader", read_eager_, dl, ec,
            [&](boost::system::error_code& e) { return this->obj_.read_some(b, e); },
            [&](auto&& handler) { this->obj_.async_read_some(b, std::move(handler)); });
        // Try the system call first next time only when this read filled the buffers: more
        // is probably waiting. After a short read (request/response traffic) the next data
        // is usually not there yet, and the failed call would be wasted.
        if (!ec) read_eager_ = n == size;
        return n;
    }
    ///@}

    ///@{
    /// Writes at least one byte (or none for empty buffers).
    template <class CB>
    std::size_t write_some(const CB& b, deadline dl = {}) {
        boost::system::error_code ec;
        const std::size_t n = write_some(b, dl, ec);
        detail::throw_if(ec, "write_some");
        return n;
    }
    template <class CB>
    std::size_t write_some(const CB& b, boost::system::error_code& ec) {
        return write_some(b, {}, ec);
    }
    template <class CB>
    std::size_t write_some(const CB& b, deadline dl, boost::system::error_code& ec) {
        return this->transfer(
            this->write_, "write_some", "writer", true, dl, ec,
            [&](boost::system::error_code& e) { return this->obj_.write_some(b, e); },
            [&](auto&& handler) { this->obj_.async_write_some(b, std::move(handler)); });
    }
    ///@}

    ///@{
    /// Asio's AsyncReadStream and AsyncWriteStream: so that Asio's and Beast's composed
    /// operations (async_read_until, async_write, http::async_read, ...) take this socket
    /// directly, with use_fiber or any other completion token. These are Asio's own
    /// operations on the socket underneath: the socket's default timeout and its check that
    /// one fiber reads (writes) at a time do not cover them; give a deadline with
    /// use_fiber.until() or timeout(), and do not run them beside read_some()/write_some() in
    /// the same direction.
    /// Switches: as the token says (use_fiber: yes).   Thread: the hub's thread.
    template <class MB, class Token>
    auto async_read_some(const MB& b, Token&& token) {
        return this->obj_.async_read_some(b, std::forward<Token>(token));
    }
    template <class CB, class Token>
    auto async_write_some(const CB& b, Token&& token) {
        return this->obj_.async_write_some(b, std::forward<Token>(token));
    }
    ///@}

    ///@{
    /// Fills the buffers exactly; on error returns how much was read. `dl` bounds the whole
    /// call. eof before the end: ec = eof, with the partial count.
    template <class MB>
    std::size_t read(const MB& b, deadline dl = {}) {
        boost::system::error_code ec;
        const std::size_t n = read(b, dl, ec);
        detail::throw_if(ec, "read");
        return n;
    }
    template <class MB>
    std::size_t read(const MB& b, boost::system::error_code& ec) {
        return read(b, {}, ec);
    }
    template <class MB>
    std::size_t read(const MB& b, deadline dl, boost::system::error_code& ec) {
        this->check_thread("read");
        detail::direction_guard guard(this->read_, "read", "reader");
        deadline_stream<basic_stream_socket> s(*this, this->effective(dl));
        return boost::asio::read(s, b, ec);
    }
    ///@}

    ///@{
    /// Writes the buffers entirely; on error returns how much was written. `dl` bounds the
    /// whole call.
    template <class CB>
    std::size_t write(const CB& b, deadline dl = {}) {
        boost::system::error_code ec;
        const std::size_t n = write(b, dl, ec);
        detail::throw_if(ec, "write");
        return n;
    }
    template <class CB>
    std::size_t write(const CB& b, boost::system::error_code& ec) {
        return write(b, {}, ec);
    }
    template <class CB>
    std::size_t write(const CB& b, deadline dl, boost::system::error_code& ec) {
        this->check_thread("write");
        detail::direction_guard guard(this->write_, "write", "writer");
        std::size_t done = 0;
        boost::asio::const_buffer rest;
        if constexpr (std::is_convertible_v<const CB&, boost::asio::const_buffer>) {
            // One buffer, and a socket with room for it: one system call, without the
            // composed operation, the deadline or a second guard. Whatever it left (a partial
            // write, or no room) goes through the loop below.
            rest = b;
            if (rest.size() != 0) {
                done = this->obj_.write_some(rest, ec);
                if (done == rest.size() || (ec && !detail::would_block(ec))) return done;
                rest += done;
            }
        }
        deadline_stream<basic_stream_socket> s(*this, this->effective(dl));
        if constexpr (std::is_convertible_v<const CB&, boost::asio::const_buffer>) {
            return done + boost::asio::write(s, rest, ec);
        } else {
            return boost::asio::write(s, b, ec);
        }
    }
    ///@}

    ///@{
    /// Half-close: shutdown_send sends FIN after the bytes already written.
    void shutdown(shutdown_type what) {
        this->check_thread("shutdown");
        this->obj_.shutdown(what);
    }
    void shutdown(shutdown_type what, boost::system::error_code& ec) {
        this->check_thread("shutdown");
        this->obj_.shutdown(what, ec);
    }
    ///@}

    /// The peer's address. Switches: no.   Throws: system_error.
    endpoint_type remote_endpoint() const {
        this->check_thread("remote_endpoint");
        return this->obj_.remote_endpoint();
    }
    /// How many bytes can be read without waiting. Switches: no.   Throws: system_error.
    std::size_t available() const {
        this->check_thread("available");
        return this->obj_.available();
    }

  private:
    bool read_eager_ = true;  // try the read system call before waiting (see read_some)
};

/// A listening socket.
template <class Protocol>
class basic_acceptor
    : public detail::io_object<
          boost::asio::basic_socket_acceptor<Protocol, boost::asio::io_context::executor_type>> {
    using base = detail::io_object<
        boost::asio::basic_socket_acceptor<Protocol, boost::asio::io_context::executor_type>>;
    using asio_acceptor = typename base::native_type;

  public:
    ///@{
    /// The protocol, its endpoint type, and the type of the sockets accept() returns.
    using protocol_type = Protocol;
    using endpoint_type = typename Protocol::endpoint;
    using socket_type = basic_stream_socket<Protocol>;
    ///@}

    /// Not yet open.
    explicit basic_acceptor(hub& h = hub::current()) : base(h) {}
    /// Opens, binds to `ep` and listens. For IP, SO_REUSEADDR is set when `reuse_address`.
    explicit basic_acceptor(const endpoint_type& ep, bool reuse_address = true,
                            int backlog = boost::asio::socket_base::max_listen_connections,
                            hub& h = hub::current())
        : base(h) {
        this->obj_.open(ep.protocol());
        if (reuse_address) {
            this->obj_.set_option(boost::asio::socket_base::reuse_address(true));
        }
        this->obj_.bind(ep);
        this->obj_.listen(backlog);
        this->obj_.non_blocking(true);
    }

    ///@{
    /// Waits for a connection. The new socket is non-blocking and on the same hub.
    socket_type accept(deadline dl = {}) {
        boost::system::error_code ec;
        socket_type s = accept(dl, ec);
        detail::throw_if(ec, "accept");
        return s;
    }
    socket_type accept(boost::system::error_code& ec) { return accept({}, ec); }
    socket_type accept(deadline dl, boost::system::error_code& ec) {
        typename socket_type::native_type peer(this->h_->context());
        this->perform(this->read_, asio_acceptor::wait_read, "accept", dl, ec,
                      [&](boost::system::error_code& e) -> std::size_t {
                          this->obj_.accept(peer, e);
                          return 0;
                      });
        if (ec) return socket_type(*this->h_);
        socket_type s(*this->h_, std::move(peer));
        return s;
    }
    ///@}

    /// Waits until a connection is pending, without accepting it.
    void wait_acceptable(deadline dl, boost::system::error_code& ec) {
        this->check_thread("wait_acceptable");
        detail::direction_guard guard(this->read_, "wait_acceptable", "reader");
        detail::wait_ready(*this->h_, this->obj_, asio_acceptor::wait_read, this->read_,
                           "a connection to accept", this->effective(dl), ec);
    }
};

/// A datagram socket (UDP).
template <class Protocol>
class basic_datagram_socket
    : public detail::io_object<
          boost::asio::basic_datagram_socket<Protocol, boost::asio::io_context::executor_type>> {
    using base = detail::io_object<
        boost::asio::basic_datagram_socket<Protocol, boost::asio::io_context::executor_type>>;
    using asio_socket = typename base::native_type;

  public:
    ///@{
    /// The protocol (udp::protocol) and its endpoint type.
    using protocol_type = Protocol;
    using endpoint_type = typename Protocol::endpoint;
    ///@}

    /// A socket not yet open, on `h`.
    explicit basic_datagram_socket(hub& h = hub::current()) : base(h) {}
    /// Opens for `p` (udp::v4() or v6()), unbound.
    explicit basic_datagram_socket(const Protocol& p, hub& h = hub::current()) : base(h) {
        this->obj_.open(p);
        this->obj_.non_blocking(true);
    }
    /// Opens and binds to `ep`.
    explicit basic_datagram_socket(const endpoint_type& ep, hub& h = hub::current()) : base(h) {
        this->obj_.open(ep.protocol());
        this->obj_.bind(ep);
        this->obj_.non_blocking(true);
    }

    ///@{
    /// Sends one datagram to `to`.
    template <class CB>
    std::size_t send_to(const CB& b, const endpoint_type& to, deadline dl = {}) {
        boost::system::error_code ec;
        const std::size_t n = send_to(b, to, dl, ec);
        detail::throw_if(ec, "send_to");
        return n;
    }
    template <class CB>
    std::size_t send_to(const CB& b, const endpoint_type& to, boost::system::error_code& ec) {
        return send_to(b, to, {}, ec);
    }
    template <class CB>
    std::size_t send_to(const CB& b, const endpoint_type& to, deadline dl,
                        boost::system::error_code& ec) {
        return this->perform(
            this->write_, asio_socket::wait_write, "send_to", dl, ec,
            [&](boost::system::error_code& e) { return this->obj_.send_to(b, to, 0, e); });
    }
    ///@}

    ///@{
    /// Receives one datagram; `from` is set to its sender. A datagram longer than the
    /// buffers is truncated (the rest is lost, as with recvfrom).
    template <class MB>
    std::size_t receive_from(const MB& b, endpoint_type& from, deadline dl = {}) {
        boost::system::error_code ec;
        const std::size_t n = receive_from(b, from, dl, ec);
        detail::throw_if(ec, "receive_from");
        return n;
    }
    template <class MB>
    std::size_t receive_from(const MB& b, endpoint_type& from, boost::system::error_code& ec) {
        return receive_from(b, from, {}, ec);
    }
    template <class MB>
    std::size_t receive_from(const MB& b, endpoint_type& from, deadline dl,
                             boost::system::error_code& ec) {
        return this->perform(
            this->read_, asio_socket::wait_read, "receive_from", dl, ec,
            [&](boost::system::error_code& e) { return this->obj_.receive_from(b, from, 0, e); });
    }
    ///@}
};

/// Waits for readiness of a file descriptor the caller owns (a pipe, an eventfd, a device).
/// The descriptor is registered with the hub's reactor for the watcher's lifetime and is
/// never closed by it. It must not already be registered (it cannot be a greenfiber socket).
class fd_watch
    : public detail::io_object<
          boost::asio::posix::basic_stream_descriptor<boost::asio::io_context::executor_type>> {
    using base = detail::io_object<
        boost::asio::posix::basic_stream_descriptor<boost::asio::io_context::executor_type>>;

  public:
    /// Watches `fd` (borrowed: the caller keeps it open while the watcher lives and closes it
    /// afterwards) on `h`. Switches: no.   Throws: system_error if the reactor refuses it.
    explicit fd_watch(int fd, hub& h = hub::current()) : base(h) { this->obj_.assign(fd); }
    ~fd_watch() {
        if (this->obj_.is_open()) (void)this->obj_.release();
    }
    /// Takes over the other watcher's registration. Switches: no.
    fd_watch(fd_watch&&) noexcept = default;
    fd_watch& operator=(fd_watch&&) = delete;

    ///@{
    /// Waits until the descriptor is readable. Errors as for the sockets: timed_out,
    /// operation_aborted (close() or cancel()); the error_code form reports them in `ec`.
    /// Switches: yes.   Throws: system_error; cancelled_error; greenfiber::error on misuse.
    void wait_readable(deadline dl = {}) {
        boost::system::error_code ec;
        wait_readable(dl, ec);
        detail::throw_if(ec, "wait_readable");
    }
    void wait_readable(deadline dl, boost::system::error_code& ec) {
        wait(this->read_, native_type::wait_read, "wait_readable", dl, ec);
    }
    ///@}
    ///@{
    /// Waits until the descriptor is writable; as wait_readable().
    void wait_writable(deadline dl = {}) {
        boost::system::error_code ec;
        wait_writable(dl, ec);
        detail::throw_if(ec, "wait_writable");
    }
    void wait_writable(deadline dl, boost::system::error_code& ec) {
        wait(this->write_, native_type::wait_write, "wait_writable", dl, ec);
    }
    ///@}

  private:
    void wait(detail::io_direction& d, native_type::wait_type type, const char* what, deadline dl,
              boost::system::error_code& ec) {
        this->check_thread(what);
        detail::direction_guard guard(d, what,
                                      type == native_type::wait_read ? "reader" : "writer");
        detail::wait_ready(*this->h_, this->obj_, type, d, what, this->effective(dl), ec);
    }
};

///@{
/// Waits once for `fd` to be readable / writable (registers it for the call only).
void wait_readable(int fd, deadline dl = {});
void wait_writable(int fd, deadline dl = {});
///@}

namespace tcp {
///@{
/// The protocol, endpoint and socket types for TCP over IPv4 and IPv6 (boost::asio::ip::tcp).
using protocol = boost::asio::ip::tcp;
using endpoint = boost::asio::ip::tcp::endpoint;
using socket = basic_stream_socket<boost::asio::ip::tcp>;
using acceptor = basic_acceptor<boost::asio::ip::tcp>;
///@}
}  // namespace tcp

namespace udp {
///@{
/// The protocol, endpoint and socket types for UDP (boost::asio::ip::udp).
using protocol = boost::asio::ip::udp;
using endpoint = boost::asio::ip::udp::endpoint;
using socket = basic_datagram_socket<boost::asio::ip::udp>;
///@}
}  // namespace udp

namespace unix_stream {
///@{
/// The protocol, endpoint and socket types for Unix-domain stream sockets
/// (boost::asio::local::stream_protocol).
using protocol = boost::asio::local::stream_protocol;
using endpoint = boost::asio::local::stream_protocol::endpoint;
using socket = basic_stream_socket<boost::asio::local::stream_protocol>;
using acceptor = basic_acceptor<boost::asio::local::stream_protocol>;
///@}
/// A connected pair (socketpair(2)).
std::pair<socket, socket> pair(hub& h = hub::current());
}  // namespace unix_stream

}  // namespace greenfiber
