// HTTP/1.1 server and client on Beast's synchronous API over greenfiber sockets.

#include "greenfiber/http.hpp"

#include "greenfiber/net.hpp"

#include <array>
#include <stdexcept>
#include <utility>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
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
    boost::beast::flat_buffer buffer;
    for (;;) {
        beast_http::request_parser<beast_http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(opts.header_limit));
        parser.body_limit(opts.body_limit);
        error_code ec;
        auto idle = with_deadline(s, after(opts.idle_timeout));
        beast_http::read_header(idle, buffer, parser, ec);
        if (!ec && !parser.is_done()) {
            auto in = with_deadline(s, after(opts.io_timeout));
            beast_http::read(in, buffer, parser, ec);
        }
        if (ec) {
            if (!is_parse_error(ec) || ec == beast_http::error::end_of_stream) return;
            // Not HTTP, or too large: say so and close; the server goes on with others.
            const status st = ec == beast_http::error::body_limit ? status::payload_too_large
                              : ec == beast_http::error::header_limit
                                  ? status::request_header_fields_too_large
                                  : status::bad_request;
            error_code wec;
            auto out = with_deadline(s, after(opts.io_timeout));
            beast_http::write(out, error_response(st, opts.server_name), wec);
            if (!wec) close_gracefully(s);
            return;
        }
        request req = parser.release();
        response res;
        try {
            res = h(req);
        } catch (const cancelled_error&) {
            throw;
        } catch (...) {
            hub::current().report({"greenfiber: http handler for " +
                                       std::string(req.method_string()) + " " +
                                       std::string(req.target()) + " threw",
                                   std::current_exception(), nullptr});
            res = error_response(status::internal_server_error, opts.server_name);
        }
        if (!req.keep_alive()) res.keep_alive(false);
        if (res.find(field::server) == res.end()) res.set(field::server, opts.server_name);
        res.prepare_payload();
        auto out = with_deadline(s, after(opts.io_timeout));
        beast_http::write(out, res, ec);
        if (ec) return;
        if (!res.keep_alive()) {
            close_gracefully(s);
            return;
        }
    }
}

void serve(tcp::acceptor listener, handler h, server_options opts) {
    auto connections = opts.connections;
    greenfiber::serve(
        std::move(listener),
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

tcp::socket client::checkout(const url_parts& u, deadline dl, bool& reused) {
    auto it = idle_.find(u.host + ":" + u.port);
    if (it != idle_.end() && !it->second.empty()) {
        tcp::socket s = std::move(it->second.back());
        it->second.pop_back();
        reused = true;
        return s;
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
    for (int attempt = 0;; ++attempt) {
        bool reused = false;
        tcp::socket s = checkout(u, dl, reused);
        error_code ec;
        auto io = with_deadline(s, dl);
        beast_http::write(io, req, ec);
        boost::beast::flat_buffer buffer;
        beast_http::response_parser<beast_http::string_body> parser;
        parser.body_limit(opts_.body_limit);
        if (!ec) beast_http::read(io, buffer, parser, ec);
        if (ec) {
            // A kept-alive connection the server closed meanwhile: once more, on a new one.
            const bool stale =
                ec == beast_http::error::end_of_stream || ec == boost::asio::error::eof ||
                ec == boost::asio::error::connection_reset || ec == boost::asio::error::broken_pipe;
            if (reused && attempt == 0 && stale && !parser.got_some()) continue;
            throw boost::system::system_error(
                ec,
                "greenfiber::http: " + std::string(req.method_string()) + " " + std::string(url));
        }
        response res = parser.release();
        if (res.keep_alive() && buffer.size() == 0) checkin(u, std::move(s));
        return res;
    }
}

}  // namespace greenfiber::http
