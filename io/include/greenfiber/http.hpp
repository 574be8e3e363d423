#pragma once

/// \file
/// HTTP/1.1 on greenfiber sockets with Beast's synchronous API: a keep-alive server and a
/// client with a connection pool (the counterpart of aiohttp's ClientSession). Beast does
/// all the parsing and serialising; requests and responses are Beast's messages.
///
///     http::serve(std::move(listener), [](const http::request& req) {
///         return http::make_response(req, http::status::ok, "Hello, World!");
///     });
///
///     http::client session;
///     http::response res = session.get("http://127.0.0.1:8080/", 5s);
///
/// Thread: like sockets, everything here belongs to the hub of the thread that uses it.
///
/// Limits. Every bound the server and the client apply, with its default; each is a field
/// of server_options or client_options (set it there; zero turns a timeout off).
///
///     server_options (per connection unless said otherwise)
///       header_limit    8 KiB     request line and fields; past it 431, then close
///       body_limit      1 MiB     a request's body, chunked or not; past it 413, then close
///                                 (a Content-Length above it gets 413 before any body byte
///                                 is read, and without 100 Continue)
///       buffer_limit    64 KiB    what the read buffer holds beyond header_limit: a chunk-size
///                                 line with its extensions, the trailer fields, pipelined
///                                 bytes; the buffer never exceeds header_limit + buffer_limit,
///                                 past it 413, then close
///       idle_timeout    15 s      silence before a request's first byte (and between
///                                 keep-alive requests); then the connection is closed
///       io_timeout      30 s      reading one request's rest, or writing one response
///       connections.max_connections   unlimited   handlers running at once; accepting pauses
///                                 at the cap (server.hpp's server_options)
///       connections.grace         5 s         how long serve(), when cancelled, lets the
///                                 connections finish before it cancels them
///       connections.stack_size    the default   each connection's stack
///       (fixed)         1 s, 256 KiB   the drain after an error answer or Connection: close,
///                                 so that the answer is not lost to a reset
///     client_options (per request)
///       timeout         30 s      the whole request (connect, write, read) when the call gives
///                                 no deadline
///       header_limit    64 KiB    a response's head, and all the 1xx heads before it together
///       body_limit      64 MiB    a response's body
///       buffer_limit    64 KiB    what the read buffer holds beyond header_limit (a chunk line
///                                 or trailer that never ends); the buffer never exceeds
///                                 header_limit + buffer_limit
///       expect_timeout  1 s       how long a request with Expect: 100-continue waits for the
///                                 100 before it sends its body anyway
///       max_idle_per_host  8      kept-alive connections kept per host:port
///     Past a client limit the request throws boost::system::system_error whose message names
///     the option and its value ("... client_options::body_limit (67108864 bytes)"); the
///     connection is closed.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>

#include "greenfiber/deadline.hpp"
#include "greenfiber/server.hpp"
#include "greenfiber/socket.hpp"

namespace greenfiber::http {

namespace beast_http = boost::beast::http;
///@{
/// Beast's HTTP types as the server and client use them: messages with string bodies, and
/// the status, method and field enumerations.
using request = beast_http::request<beast_http::string_body>;
using response = beast_http::response<beast_http::string_body>;
using status = beast_http::status;
using verb = beast_http::verb;
using field = beast_http::field;
///@}

/// A response to `req` with its version and keep-alive, a body and Content-Length.
/// Switches: no.   Throws: std::bad_alloc.
response make_response(const request& req, status s, std::string body,
                       std::string_view content_type = "text/plain");

/// How a server treats its connections; the Limits table above lists them together.
struct server_options {
    /// Cap, stacks, grace (see server.hpp). Paged stacks only: serve() and serve_on() refuse
    /// a small_stack (std::invalid_argument), since Beast's parser goes deeper.
    greenfiber::server_options connections{};
    /// How long a connection may stay silent between requests, and how long reading a
    /// request or writing a response may take. Zero: no limit.
    std::chrono::steady_clock::duration idle_timeout = std::chrono::seconds(15);
    /// The bound on reading one request or writing one response (see idle_timeout).
    std::chrono::steady_clock::duration io_timeout = std::chrono::seconds(30);
    std::size_t header_limit = 8 * 1024;   ///< larger heads get 431
    std::size_t body_limit = 1024 * 1024;  ///< larger bodies get 413
    /// What a request may make the server hold unparsed beyond its head: a chunk-size line
    /// with its extensions, the trailer fields (parsed only once all have arrived), or bytes
    /// sent ahead of the next request. The read buffer holds at most header_limit +
    /// buffer_limit bytes; a request that needs more gets 413. Body bytes do not count here:
    /// they move to the body as they arrive (body_limit bounds them).
    std::size_t buffer_limit = 64 * 1024;
    std::string server_name = "greenfiber";  ///< the Server header, unless the handler sets one
};

/// Answers one request. An exception becomes a 500 response (and a report to the hub's
/// exception handler); cancelled_error passes through.
using handler = std::function<response(const request&)>;

/// Serves HTTP/1.1 requests on one connection until the peer closes it, asks to close, stays
/// idle too long, or sends something that is not HTTP (answered with 400, 413 or 431, then
/// closed). Switches: yes.   Throws: cancelled_error.
///
/// Memory. What one connection holds from its peer is bounded by the options: the read
/// buffer by header_limit + buffer_limit, a request's fields by its head (header_limit)
/// plus its trailer (what the buffer held: header_limit + buffer_limit), so by
/// 2 * header_limit + buffer_limit in all, its body by body_limit. Past header_limit the
/// answer is 431, past body_limit or the buffer 413 (a chunk extension or a trailer that
/// never ends gets 413 once the buffer is full), then the connection is closed.
///
/// Framing (RFC 9112 §6). A request whose body length is in doubt is answered and the
/// connection closed before any of its body is read, so that no part of it is ever taken
/// for the next request and the handler never sees it:
///  - 400: Transfer-Encoding whose final coding is not chunked (gzip; chunked, identity; an
///    unknown coding), chunked more than once, a Transfer-Encoding value that is not a list
///    of tokens ("chunked;x=1"), Transfer-Encoding in an HTTP/1.0 request,
///    Transfer-Encoding together with Content-Length (in either order: §6.1 lets a server
///    reject it or let Transfer-Encoding win; rejecting is the safe choice), Content-Length
///    values that differ ("5, 6", or two fields) or are not plain digits, a folded field
///    line (obs-fold, §5.2) or whitespace before the first field, and a bare LF as a line end
///    (§2.2 allows accepting it; the server does not).
///  - 501: a transfer coding other than chunked before the final chunked (e.g. "gzip,
///    chunked"): the server decodes none.
/// Content-Length repeated with one value ("5, 5", or two equal fields) is that value (§6.3).
///
/// HEAD (RFC 9110 §9.3.2): the handler is called as for GET; the response goes out without
/// its body, with the Content-Length of the body the handler returned, or, if that body is
/// empty, the Content-Length the handler set (when it set one).
///
/// Expect (RFC 9110 §10.1.1). To "Expect: 100-continue" on an HTTP/1.1 request with a body to
/// come the server answers "HTTP/1.1 100 Continue" before it reads the body; a body above
/// body_limit gets 413 instead, before any of it is read. Any other expectation gets 417.
/// Both close the connection after a bounded drain of what the client still sends. An
/// HTTP/1.0 request's Expect is ignored.
void serve_connection(tcp::socket& s, const handler& h, const server_options& opts = {});

/// serve() from server.hpp with serve_connection as the handler: until the calling task is
/// cancelled (then a graceful stop).
/// Switches: yes.   Throws: cancelled_error; boost::system::system_error if the listener
/// fails for good.
void serve(tcp::acceptor listener, handler h, server_options opts = {});

/// serve() on every hub of `group`: a multi_server (server.hpp) whose hubs each run
/// serve_connection with `h` on a listener of their own bound to `ep` with SO_REUSEPORT.
/// `h` is copied once per hub and each copy called on its own hub's thread, so what it
/// shares with the other copies must be thread-safe. opts.connections applies per hub
/// (max_connections caps each hub). Returns once every hub listens; stop() the result, or
/// let it go out of scope, for a graceful stop of all of them.
/// Switches: yes.   Throws: boost::system::system_error if a listener cannot be bound;
/// hub_group_stopped.
multi_server serve_on(hub_group& group, const tcp::endpoint& ep, handler h,
                      server_options opts = {});

/// The pieces of an http:// URL (parse_url()).
struct url_parts {
    /// The host: a name or an address.
    std::string host;
    std::string port;    ///< "80" when absent
    std::string target;  ///< path and query, "/" when empty
};
/// Splits an http:// URL into host, port and target.
/// Switches: no.   Throws: std::invalid_argument for anything else, naming the URL.
url_parts parse_url(std::string_view url);

/// How a client treats its requests; the Limits table above lists them together.
struct client_options {
    /// Bounds a whole request (connect, write, read) when the call gives no deadline.
    std::chrono::steady_clock::duration timeout = std::chrono::seconds(30);
    std::size_t max_idle_per_host = 8;  ///< keep-alive connections kept for reuse
    /// A response's status line and fields; the 1xx responses before the final one count
    /// against it together.
    std::size_t header_limit = 64 * 1024;
    std::size_t body_limit = 64 * 1024 * 1024;  ///< a response's body, chunked or not
    /// What the read buffer may hold unparsed beyond header_limit: a chunk-size line with its
    /// extensions, trailer fields.
    std::size_t buffer_limit = 64 * 1024;
    /// How long a request that carries "Expect: 100-continue" waits for the 100 before it
    /// sends its body anyway (curl's default). The request's deadline still bounds it.
    std::chrono::steady_clock::duration expect_timeout = std::chrono::seconds(1);
    /// The User-Agent header, unless the request sets one.
    std::string user_agent = "greenfiber";
};

/// An HTTP/1.1 client that reuses keep-alive connections (aiohttp's ClientSession). Any
/// final status is a response (no exception for 404 or 500); transport failures throw
/// boost::system::system_error naming the method and URL (timed_out when the deadline
/// passes). Several fibers may use one client at once; each request has its own connection
/// while it runs.
///
/// - Retries (RFC 9110 §9.2.2): a request is sent again, once, on a new connection only if
///   its method is idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) and it went out on a
///   reused connection from which not one byte of a response came before it closed (the
///   server had closed it meanwhile). A POST or PATCH is never resent: the server may have
///   acted on it.
/// - A kept-alive connection is reused only if nothing arrived on it while it was idle (a
///   server that sent more than its Content-Length said, or closed).
/// - Interim responses (1xx, RFC 9110 §15.2) are read past; the final one is returned. A
///   101 Switching Protocols is an error (errc::protocol_error): the client does not
///   upgrade connections.
/// - Expect: 100-continue is sent only if `req` carries it. Then the head goes out alone and
///   the body once the server answers 100, or after client_options::expect_timeout without
///   an answer. A final answer before the 100 (417, 413, ...) is returned without the body
///   having been sent, and that connection is not reused.
/// - A response to HEAD has its headers (Content-Length included) and an empty body; the
///   connection stays usable.
/// - The limits are client_options' (see Limits at the top).
/// Thread: thread-bound. A client must outlive the requests running on it (a request
/// returns its connection to the client when it ends).
class client {
  public:
    /// A client with no connections yet. Switches: no.
    explicit client(client_options opts = {});
    /// Closes the idle connections. Switches: no.
    ~client();
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    /// send() with a GET request.
    /// Switches: yes.   Throws: as send().
    response get(std::string_view url, deadline dl = {});
    /// send() with a POST request carrying `body` and Content-Type `content_type`.
    /// Switches: yes.   Throws: as send().
    response post(std::string_view url, std::string body,
                  std::string_view content_type = "application/octet-stream", deadline dl = {});
    /// Sends `req` (any method; its target and Host are set from `url`) and returns the
    /// final response, by `dl` or else within client_options::timeout.
    /// Switches: yes.   Thread: thread-bound.
    /// Throws: std::invalid_argument for a URL that is not http://;
    ///         boost::system::system_error for a transport failure (timed_out at the
    ///         deadline), a response past a limit (the message names the option), or a 101;
    ///         cancelled_error (the connection is then closed, never reused).
    response send(std::string_view url, request req, deadline dl = {});

    /// Closes the idle connections. Switches: no.
    void close() noexcept;
    /// How many kept-alive connections wait for reuse. Switches: no.
    std::size_t idle_connections() const noexcept;

  private:
    tcp::socket checkout(const url_parts& u, deadline dl, bool& reused);
    void checkin(const url_parts& u, tcp::socket s);

    client_options opts_;
    std::map<std::string, std::vector<tcp::socket>> idle_;  // "host:port" → connections
};

}  // namespace greenfiber::http
