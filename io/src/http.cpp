// HTTP/1.1 server and client on Beast's synchronous API over greenfiber sockets.

#include "greenfiber/http.hpp"

#include "greenfiber/net.hpp"

#include <sys/socket.h>

#include <cerrno>

#include <algorithm>
#include <array>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace greenfiber::http {

namespace {

using boost::system::error_code;

deadline after(std::chrono::steady_clock::duration d) {
    return d.count() > 0 ? deadline(d) : deadline();
}

// Closes so that the response just written is not lost to a reset: send FIN, then read
// (and drop) what the peer still sends, for a bounded time.
void close_gracefully(tcp::socket& s) {
    error_code ec;
    s.shutdown(boost::asio::socket_base::shutdown_send, ec);
    std::array<char, 4096> sink{};
    const deadline dl(std::chrono::seconds(1));
    for (std::size_t drained = 0; !ec && drained < 256 * 1024;) {
        drained += s.read_some(boost::asio::buffer(sink), dl, ec);
    }
    s.close(ec);
}

response error_response(status st, std::string_view server_name) {
    response res{st, 11};
    res.set(field::server, server_name);
    res.set(field::content_type, "text/plain");
    res.body() = std::string(beast_http::obsolete_reason(st)) + "\n";
    res.keep_alive(false);
    res.prepare_payload();
    return res;
}

bool is_parse_error(const error_code& ec) {
    return ec.category() == beast_http::make_error_code(beast_http::error::bad_method).category();
}

using request_parser = beast_http::request_parser<beast_http::string_body>;

// Whether a head (start line and fields, up to its blank line) folds a line: a line end
// followed by a space or tab. Beast would join such a line to the one before; a proxy in
// front of the server may not, and the two would then disagree on a field's value.
bool folds_a_line(std::string_view head) {
    const auto end = head.find("\r\n\r\n");
    if (end != std::string_view::npos) head = head.substr(0, end + 2);
    for (auto at = head.find('\n'); at != std::string_view::npos; at = head.find('\n', at + 1)) {
        if (at + 1 < head.size() && (head[at + 1] == ' ' || head[at + 1] == '\t')) return true;
    }
    return false;
}

// beast_http::read_header that also sees the bytes of the head: Beast parses a head only
// once it has all of it (up to its blank line), so the bytes one put() consumes when the
// head is done are that head, checked here for folded lines before they count.
template <class Stream>
void read_head(Stream& in, boost::beast::flat_buffer& buffer, request_parser& parser,
               error_code& ec) {
    for (;;) {
        if (buffer.size() > 0) {
            const auto data = buffer.data();
            const std::size_t n = parser.put(data, ec);
            if (!ec && parser.is_header_done() &&
                folds_a_line({static_cast<const char*>(data.data()), n})) {
                ec = beast_http::error::bad_value;
            }
            buffer.consume(n);
            if (ec != beast_http::error::need_more) return;
            ec = {};
        }
        const std::size_t room = std::min<std::size_t>(4096, buffer.max_size() - buffer.size());
        if (room == 0) {
            ec = beast_http::error::buffer_overflow;
            return;
        }
        const std::size_t n = in.read_some(buffer.prepare(room), ec);
        buffer.commit(n);
        if (ec == boost::asio::error::eof) {
            ec = parser.got_some() ? error_code(beast_http::error::partial_message)
                                   : error_code(beast_http::error::end_of_stream);
        }
        if (ec) return;
    }
}

// RFC 9112 §6: what a complete head says about the body's framing that Beast lets through.
// Beast frames a request as chunked only when chunked is the last coding, and otherwise
// ignores Transfer-Encoding, taking the body as empty (or as long as a Content-Length
// that follows it): the body would then be read as the next request.
status check_framing(const request& head) {
    const auto [first, last] = head.equal_range(field::transfer_encoding);
    if (first == last) return status::ok;
    // §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
    if (head.version() < 11) return status::bad_request;
    std::vector<std::string_view> codings;
    for (auto it = first; it != last; ++it) {
        // Not a plain list of tokens ("chunked;x=1", "\"chunked\""): where a proxy in front
        // would see chunked is anyone's guess.
        const beast_http::opt_token_list list(it->value());
        if (!beast_http::validate_list(list)) return status::bad_request;
        for (const auto coding : list) codings.push_back(coding);
    }
    // §6.3: the final coding must be chunked, and chunked comes once (§7).
    const auto is_chunked = [](std::string_view c) { return boost::beast::iequals(c, "chunked"); };
    if (codings.empty() || !is_chunked(codings.back())) return status::bad_request;
    codings.pop_back();
    for (const auto coding : codings) {
        if (is_chunked(coding)) return status::bad_request;
    }
    // §6.1: a coding the server does not decode (it decodes none but chunked).
    if (!codings.empty()) return status::not_implemented;
    return status::ok;
}

// RFC 9110 §10.1.1: what a request's Expect field asks of the server before it sends the
// body. 100-continue is the only expectation defined; an HTTP/1.0 request's is ignored.
enum class expectation { none, continue_100, unknown };
expectation expects(const request& head) {
    const auto [first, last] = head.equal_range(field::expect);
    if (first == last) return expectation::none;
    if (head.version() < 11) return expectation::none;
    if (std::next(first) != last) return expectation::unknown;
    return boost::beast::iequals(first->value(), "100-continue") ? expectation::continue_100
                                                                 : expectation::unknown;
}

// Writes the error answer and closes.
void reject(tcp::socket& s, status st, const server_options& opts) {
    error_code ec;
    auto out = with_deadline(s, after(opts.io_timeout));
    beast_http::write(out, error_response(st, opts.server_name), ec);
    if (!ec) close_gracefully(s);
}

}  // namespace

response make_response(const request& req, status s, std::string body,
                       std::string_view content_type) {
    response res{s, req.version()};
    res.set(field::content_type, content_type);
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
}

void serve_connection(tcp::socket& s, const handler& h, const server_options& opts) {
    // Beast's parser keeps what it cannot parse yet (a head, a chunk-size line with its
    // extensions, the trailer fields) in the buffer until its line end arrives; only the
    // buffer's limit bounds that, and a read past it fails with buffer_overflow.
    const std::size_t buffer_max = opts.header_limit + opts.buffer_limit >= opts.header_limit
                                       ? opts.header_limit + opts.buffer_limit
                                       : std::numeric_limits<std::size_t>::max();
    boost::beast::flat_buffer buffer(buffer_max);
    for (;;) {
        request_parser parser;
        parser.header_limit(static_cast<std::uint32_t>(opts.header_limit));
        parser.body_limit(opts.body_limit);
        error_code ec;
        auto idle = with_deadline(s, after(opts.idle_timeout));
        read_head(idle, buffer, parser, ec);
        if (!ec) {
            if (const status st = check_framing(parser.get()); st != status::ok) {
                reject(s, st, opts);
                return;
            }
            // A body too large for body_limit has already failed the head (413) without
            // a 100, so the client can stop before sending it.
            const expectation ex = expects(parser.get());
            if (ex == expectation::unknown) {
                reject(s, status::expectation_failed, opts);
                return;
            }
            // The client waits for this before it sends the body. A request with no body
            // to come needs none (§10.1.1 lets the server omit it).
            if (ex == expectation::continue_100 && !parser.is_done()) {
                static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
                s.write(boost::asio::buffer(go_on), after(opts.io_timeout), ec);
                if (ec) return;
            }
        }
        if (!ec && !parser.is_done()) {
            auto in = with_deadline(s, after(opts.io_timeout));
            beast_http::read(in, buffer, parser, ec);
        }
        if (ec) {
            if (!is_parse_error(ec) || ec == beast_http::error::end_of_stream) return;
            // Not HTTP, or too large: say so and close; the server goes on with others.
            const status st =
                ec == beast_http::error::body_limit || ec == beast_http::error::buffer_overflow
                    ? status::payload_too_large
                : ec == beast_http::error::header_limit ? status::request_header_fields_too_large
                                                        : status::bad_request;
            reject(s, st, opts);
            return;
        }
        request req = parser.release();
        response res;
        try {
            res = h(req);
        } catch (const cancelled_error&) {
            throw;
        } catch (...) {
            hub::current().report(
                {"greenfiber: http handler for " + std::string(req.method_string()) + " " +
                     std::string(req.target()) + " threw",
                 std::current_exception(), nullptr, report_severity::error, "http"});
            res = error_response(status::internal_server_error, opts.server_name);
        }
        if (!req.keep_alive()) res.keep_alive(false);
        if (res.find(field::server) == res.end()) res.set(field::server, opts.server_name);
        auto out = with_deadline(s, after(opts.io_timeout));
        if (req.method() == verb::head) {
            // RFC 9110 §9.3.2: the head of the GET response, no body. Content-Length is the
            // body's, unless the handler set its own and returned no body.
            if (!res.body().empty() || res.find(field::content_length) == res.end()) {
                res.prepare_payload();
            }
            beast_http::response_serializer<beast_http::string_body> sr{res};
            beast_http::write_header(out, sr, ec);
        } else {
            res.prepare_payload();
            beast_http::write(out, res, ec);
        }
        if (ec) return;
        if (!res.keep_alive()) {
            close_gracefully(s);
            return;
        }
    }
}

namespace {

// An HTTP connection's fiber goes deeper than any small stack (Beast's parser and
// serializer frames overflow small_stack_max()): refused before anything runs.
const greenfiber::server_options& paged_connections(const server_options& opts, const char* who) {
    if (opts.connections.small_stack != 0) {
        throw std::invalid_argument(
            std::string("greenfiber::http::") + who + ": connections.small_stack is " +
            std::to_string(opts.connections.small_stack) +
            ", but an HTTP connection goes deeper than the largest small stack (Beast's "
            "parser and serializer); leave it 0 and set connections.stack_size instead");
    }
    return opts.connections;
}

}  // namespace

void serve(tcp::acceptor listener, handler h, server_options opts) {
    auto connections = paged_connections(opts, "serve");
    greenfiber::serve(
        std::move(listener),
        [h = std::move(h), opts = std::move(opts)](tcp::socket s) { serve_connection(s, h, opts); },
        std::move(connections));
}

multi_server serve_on(hub_group& group, const tcp::endpoint& ep, handler h, server_options opts) {
    auto connections = paged_connections(opts, "serve_on");
    return multi_server(
        group, ep,
        [h = std::move(h), opts = std::move(opts)](tcp::socket s) { serve_connection(s, h, opts); },
        std::move(connections));
}

url_parts parse_url(std::string_view url) {
    auto parsed = boost::urls::parse_uri(url);
    if (!parsed) {
        throw std::invalid_argument("greenfiber::http: not a URL: '" + std::string(url) + "' (" +
                                    parsed.error().message() + ")");
    }
    const boost::urls::url_view& u = *parsed;
    if (u.scheme() != "http") {
        throw std::invalid_argument("greenfiber::http: unsupported scheme in '" + std::string(url) +
                                    "': only http:// (for https, use Beast's ssl_stream with "
                                    "use_fiber)");
    }
    url_parts out;
    out.host = u.host_address();
    if (out.host.empty()) {
        throw std::invalid_argument("greenfiber::http: no host in '" + std::string(url) + "'");
    }
    out.port = u.has_port() ? std::string(u.port()) : "80";
    out.target = std::string(u.encoded_resource());
    // encoded_resource keeps a fragment, which is never sent.
    if (const auto hash = out.target.find('#'); hash != std::string::npos) out.target.resize(hash);
    if (out.target.empty() || out.target.front() != '/') out.target.insert(0, "/");
    return out;
}

client::client(client_options opts) : opts_(std::move(opts)) {}

client::~client() {
    close();
}

void client::close() noexcept {
    idle_.clear();
}

std::size_t client::idle_connections() const noexcept {
    std::size_t n = 0;
    for (const auto& [key, conns] : idle_) n += conns.size();
    return n;
}

namespace {

// Whether a kept-alive connection has stayed quiet since its last response: no FIN and no
// unsolicited bytes (a server that sent more than its Content-Length said), which would
// otherwise be read as the answer to the next request sent on it. Switches: no.
bool still_quiet(tcp::socket& s) {
    char c = 0;
    const ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// RFC 9110 §9.2.2: the methods a client may resend without the user asking.
bool is_idempotent(verb v) {
    switch (v) {
        case verb::get:
        case verb::head:
        case verb::options:
        case verb::trace:
        case verb::put:
        case verb::delete_:
            return true;
        default:
            return false;
    }
}

using response_parser = beast_http::response_parser<beast_http::string_body>;

// One request on one connection, as far as it got.
struct exchange {
    std::optional<response_parser> parser;  // the response being read
    bool received = false;                  // any byte of any response arrived
    bool body_sent = true;                  // false once a final answer came before the body
    std::size_t interim_bytes = 0;          // the heads of the 1xx responses read so far
};

// Reads response heads into `x.parser` until one is final (or `ec`), skipping the interim
// 1xx responses (RFC 9110 §15.2), except a 100 Continue when `stop_at_100`. A head that
// was already being read when an earlier call returned is read on.
template <class Stream>
void read_final_head(Stream& in, boost::beast::flat_buffer& buffer, exchange& x, const request& req,
                     const client_options& opts, bool stop_at_100, error_code& ec) {
    for (;;) {
        if (!x.parser || x.parser->is_header_done()) {
            x.parser.emplace();
            x.parser->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
                opts.header_limit, std::numeric_limits<std::uint32_t>::max())));
            x.parser->body_limit(opts.body_limit);
            // A response to HEAD has the GET response's Content-Length but no body (RFC
            // 9110 §9.3.2): Beast cannot tell from the response alone.
            x.parser->skip(req.method() == verb::head);
        }
        const std::size_t n = beast_http::read_header(in, buffer, *x.parser, ec);
        x.received = x.received || x.parser->got_some() || buffer.size() > 0;
        if (ec) return;
        const unsigned code = x.parser->get().result_int();
        if (code < 100 || code >= 200 || code == 101) return;
        // Endless interim responses must not keep the client forever: all the heads of one
        // exchange count against header_limit.
        x.interim_bytes += n;
        if (x.interim_bytes > opts.header_limit) {
            ec = beast_http::error::header_limit;
            return;
        }
        if (code == 100 && stop_at_100) return;
    }
}

// The error to throw for `ec`, saying which client limit a response broke.
boost::system::system_error client_error(error_code ec, const std::string& what,
                                         const client_options& opts) {
    std::string msg = "greenfiber::http: " + what;
    if (ec == beast_http::error::header_limit) {
        msg += ": the response head is larger than client_options::header_limit (" +
               std::to_string(opts.header_limit) + " bytes)";
    } else if (ec == beast_http::error::body_limit) {
        msg += ": the response body is larger than client_options::body_limit (" +
               std::to_string(opts.body_limit) + " bytes)";
    } else if (ec == beast_http::error::buffer_overflow) {
        msg += ": the response holds more than client_options::buffer_limit (" +
               std::to_string(opts.buffer_limit) +
               " bytes) unparsed beyond its head (a chunk line or trailer that does not end)";
    }
    return boost::system::system_error(ec, msg);
}

}  // namespace

tcp::socket client::checkout(const url_parts& u, deadline dl, bool& reused) {
    auto it = idle_.find(u.host + ":" + u.port);
    while (it != idle_.end() && !it->second.empty()) {
        tcp::socket s = std::move(it->second.back());
        it->second.pop_back();
        if (still_quiet(s)) {
            reused = true;
            return s;
        }
    }
    reused = false;
    return create_connection(u.host, u.port, dl);
}

void client::checkin(const url_parts& u, tcp::socket s) {
    auto& conns = idle_[u.host + ":" + u.port];
    if (conns.size() < opts_.max_idle_per_host) conns.push_back(std::move(s));
}

response client::get(std::string_view url, deadline dl) {
    return send(url, request{verb::get, "/", 11}, dl);
}

response client::post(std::string_view url, std::string body, std::string_view content_type,
                      deadline dl) {
    request req{verb::post, "/", 11};
    req.set(field::content_type, content_type);
    req.body() = std::move(body);
    return send(url, std::move(req), dl);
}

response client::send(std::string_view url, request req, deadline dl) {
    const url_parts u = parse_url(url);
    if (!dl.is_set() && opts_.timeout.count() > 0) dl = deadline(opts_.timeout);
    req.target(u.target);
    req.set(field::host, u.port == "80" ? u.host : u.host + ":" + u.port);
    if (req.find(field::user_agent) == req.end()) req.set(field::user_agent, opts_.user_agent);
    req.keep_alive(true);
    req.prepare_payload();
    const std::string what = std::string(req.method_string()) + " " + std::string(url);
    const auto expect = req.find(field::expect);
    const bool wait_for_100 = expect != req.end() &&
                              boost::beast::iequals(expect->value(), "100-continue") &&
                              !req.body().empty();
    const std::size_t buffer_max = opts_.header_limit + opts_.buffer_limit >= opts_.header_limit
                                       ? opts_.header_limit + opts_.buffer_limit
                                       : std::numeric_limits<std::size_t>::max();
    for (int attempt = 0;; ++attempt) {
        bool reused = false;
        tcp::socket s = checkout(u, dl, reused);
        error_code ec;
        auto io = with_deadline(s, dl);
        boost::beast::flat_buffer buffer(buffer_max);
        exchange x;
        beast_http::request_serializer<beast_http::string_body> sr{req};
        if (wait_for_100) {
            // RFC 9110 §10.1.1: the head alone, then the body once the server says 100 (or
            // after expect_timeout without an answer); a final answer instead ends the
            // request without its body.
            beast_http::write_header(io, sr, ec);
            if (!ec) {
                auto waiting = with_deadline(s, earliest(dl, after(opts_.expect_timeout)));
                read_final_head(waiting, buffer, x, req, opts_, true, ec);
                if (ec == boost::asio::error::timed_out &&
                    (!dl.is_set() || std::chrono::steady_clock::now() < dl.at())) {
                    ec = {};  // the wait for 100 is over, not the request's deadline
                } else if (!ec && x.parser->get().result_int() != 100) {
                    x.body_sent = false;
                }
            }
        }
        if (!ec && x.body_sent) {
            beast_http::write(io, sr, ec);
            if (!ec) read_final_head(io, buffer, x, req, opts_, false, ec);
        }
        if (!ec && x.parser->get().result() == status::switching_protocols) {
            throw boost::system::system_error(
                make_error_code(boost::system::errc::protocol_error),
                "greenfiber::http: " + what +
                    ": the server answered 101 Switching Protocols; http::client does not "
                    "upgrade connections" +
                    (req.find(field::upgrade) == req.end() ? " and the request did not ask to"
                                                           : ""));
        }
        if (!ec && !x.parser->is_done()) beast_http::read(io, buffer, *x.parser, ec);
        if (ec) {
            // A kept-alive connection the server closed just before the request reached it:
            // nothing at all came back. Only then, and only for an idempotent request, can
            // sending it again not do twice what the server did once (RFC 9110 §9.2.2).
            const bool stale =
                ec == beast_http::error::end_of_stream || ec == boost::asio::error::eof ||
                ec == boost::asio::error::connection_reset || ec == boost::asio::error::broken_pipe;
            if (reused && attempt == 0 && stale && !x.received && is_idempotent(req.method())) {
                continue;
            }
            throw client_error(ec, what, opts_);
        }
        response res = x.parser->release();
        if (res.keep_alive() && x.body_sent && buffer.size() == 0) checkin(u, std::move(s));
        return res;
    }
}

}  // namespace greenfiber::http
