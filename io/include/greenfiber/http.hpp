#pragma once

// HTTP/1.1 on greenfiber sockets with Beast's synchronous API: a keep-alive server and a
// client with a connection pool (the counterpart of aiohttp's ClientSession). Beast does
// all the parsing and serialising; requests and responses are Beast's messages.
//
//     http::serve(std::move(listener), [](const http::request& req) {
//         return http::make_response(req, http::status::ok, "Hello, World!");
//     });
//
//     http::client session;
//     http::response res = session.get("http://127.0.0.1:8080/", 5s);
//
// Thread: like sockets, everything here belongs to the hub of the thread that uses it.

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
using request = beast_http::request<beast_http::string_body>;
using response = beast_http::response<beast_http::string_body>;
using status = beast_http::status;
using verb = beast_http::verb;
using field = beast_http::field;

// A response to `req` with its version and keep-alive, a body and Content-Length.
response make_response(const request& req, status s, std::string body,
                       std::string_view content_type = "text/plain");

struct server_options {
    greenfiber::server_options connections{};  // cap, stacks, grace (see server.hpp)
    // How long a connection may stay silent between requests, and how long reading a
    // request or writing a response may take. Zero: no limit.
    std::chrono::steady_clock::duration idle_timeout = std::chrono::seconds(15);
    std::chrono::steady_clock::duration io_timeout = std::chrono::seconds(30);
    std::size_t header_limit = 8 * 1024;   // larger heads get 431
    std::size_t body_limit = 1024 * 1024;  // larger bodies get 413
    // What a request may make the server hold unparsed beyond its head: a chunk-size line
    // with its extensions, the trailer fields (parsed only once all have arrived), or bytes
    // sent ahead of the next request. The read buffer holds at most header_limit +
    // buffer_limit bytes; a request that needs more gets 413. Body bytes do not count here:
    // they move to the body as they arrive (body_limit bounds them).
    std::size_t buffer_limit = 64 * 1024;
    std::string server_name = "greenfiber";  // the Server header, unless the handler sets one
};

// Answers one request. An exception becomes a 500 response (and a report to the hub's
// exception handler); cancelled_error passes through.
using handler = std::function<response(const request&)>;

// Serves HTTP/1.1 requests on one connection until the peer closes it, asks to close, stays
// idle too long, or sends something that is not HTTP (answered with 400, 413 or 431, then
// closed). Switches: yes.   Throws: cancelled_error.
//
// Memory. What one connection holds from its peer is bounded by the options: the read
// buffer by header_limit + buffer_limit, a request's fields (trailers included) by what
// that buffer held, its body by body_limit. Past header_limit the answer is 431, past
// body_limit or the buffer 413 (a chunk extension or a trailer that never ends gets 413 once
// the buffer is full), then the connection is closed.
//
// Framing (RFC 9112 §6). A request whose body length is in doubt is answered and the
// connection closed before any of its body is read, so that no part of it is ever taken
// for the next request and the handler never sees it:
//  - 400: Transfer-Encoding whose final coding is not chunked (gzip; chunked, identity; an
//    unknown coding), chunked more than once, a Transfer-Encoding value that is not a list
//    of tokens ("chunked;x=1"), Transfer-Encoding in an HTTP/1.0 request,
//    Transfer-Encoding together with Content-Length (in either order: §6.1 lets a server
//    reject it or let Transfer-Encoding win; rejecting is the safe choice), Content-Length
//    values that differ ("5, 6", or two fields) or are not plain digits, a folded field
//    line (obs-fold, §5.2) or whitespace before the first field, and a bare LF as a line end
//    (§2.2 allows accepting it; the server does not).
//  - 501: a transfer coding other than chunked before the final chunked (e.g. "gzip,
//    chunked"): the server decodes none.
// Content-Length repeated with one value ("5, 5", or two equal fields) is that value (§6.3).
//
// HEAD (RFC 9110 §9.3.2): the handler is called as for GET; the response goes out without
// its body, with the Content-Length of the body the handler returned, or, if that body is
// empty, the Content-Length the handler set (when it set one).
void serve_connection(tcp::socket& s, const handler& h, const server_options& opts = {});

// serve() from server.hpp with serve_connection as the handler: until the calling task is
// cancelled (then a graceful stop).
void serve(tcp::acceptor listener, handler h, server_options opts = {});

// The pieces of an http:// URL. Throws std::invalid_argument for anything else.
struct url_parts {
    std::string host;
    std::string port;    // "80" when absent
    std::string target;  // path and query, "/" when empty
};
url_parts parse_url(std::string_view url);

struct client_options {
    // Bounds a whole request (connect, write, read) when the call gives no deadline.
    std::chrono::steady_clock::duration timeout = std::chrono::seconds(30);
    std::size_t max_idle_per_host = 8;  // keep-alive connections kept for reuse
    std::size_t body_limit = 64 * 1024 * 1024;
    std::string user_agent = "greenfiber";
};

// An HTTP/1.1 client that reuses keep-alive connections (aiohttp's ClientSession). Any
// status is a response (no exception for 404 or 500); transport failures throw
// boost::system::system_error naming the URL (timed_out when the deadline passes). A
// request on a reused connection that the server had closed meanwhile is retried once on
// a new one. Several fibers may use one client at once; each request has its own
// connection while it runs. A response to HEAD has its headers (Content-Length included)
// and an empty body; the connection stays usable.
class client {
  public:
    explicit client(client_options opts = {});
    ~client();
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    response get(std::string_view url, deadline dl = {});
    response post(std::string_view url, std::string body,
                  std::string_view content_type = "application/octet-stream", deadline dl = {});
    // Any method; `req`'s target and Host are set from `url`.
    response send(std::string_view url, request req, deadline dl = {});

    // Closes the idle connections. Switches: no.
    void close() noexcept;
    std::size_t idle_connections() const noexcept;

  private:
    tcp::socket checkout(const url_parts& u, deadline dl, bool& reused);
    void checkin(const url_parts& u, tcp::socket s);

    client_options opts_;
    std::map<std::string, std::vector<tcp::socket>> idle_;  // "host:port" → connections
};

}  // namespace greenfiber::http
