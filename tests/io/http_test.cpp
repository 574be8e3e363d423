#include "greenfiber/http.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "greenfiber/task.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

class Http : public greenfiber::testing::io_checked {};

// A server on a free loopback port, stopped (gracefully) when the fixture goes.
struct running_server {
    explicit running_server(http::handler h, http::server_options opts = {})
        : running_server(tcp::acceptor(tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
                         std::move(h), std::move(opts)) {}
    running_server(tcp::acceptor listener, http::handler h, http::server_options opts)
        : srv(std::move(listener),
              [h = std::move(h), opts](tcp::socket s) { http::serve_connection(s, h, opts); }) {
        port = srv.local_endpoint().port();
        loop = srv.start();
    }
    ~running_server() {
        srv.stop(100ms);
        loop.get();
    }
    std::string url(const std::string& path = "/") const {
        return "http://127.0.0.1:" + std::to_string(port) + path;
    }
    server<tcp::protocol> srv;
    unsigned short port = 0;
    task<void> loop;
};

http::response hello(const http::request& req) {
    return http::make_response(req, http::status::ok, "Hello, World!");
}

// Everything `s` receives until the peer closes (or 5 s pass without a byte).
std::string read_until_closed(tcp::socket& s) {
    std::string out;
    std::array<char, 1024> buf{};
    for (;;) {
        error_code ec;
        const std::size_t n = s.read_some(asio::buffer(buf), 5s, ec);
        out.append(buf.data(), n);
        if (ec) break;
    }
    return out;
}

// Sends raw bytes and returns everything the server answers until it closes.
std::string raw_exchange(unsigned short port, const std::string& bytes) {
    tcp::socket s;
    s.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
    s.write(asio::buffer(bytes));
    return read_until_closed(s);
}

TEST_F(Http, GetWithKeepAliveReusesTheConnection) {
    int connections = 0;
    running_server srv(hello);
    http::client session;
    for (int i = 0; i < 5; ++i) {
        http::response res = session.get(srv.url(), 5s);
        EXPECT_EQ(res.result(), http::status::ok);
        EXPECT_EQ(res.body(), "Hello, World!");
        EXPECT_EQ(res[http::field::server], "greenfiber");
    }
    connections = static_cast<int>(srv.srv.served());
    EXPECT_EQ(connections, 1);
    EXPECT_EQ(session.idle_connections(), 1u);
}

TEST_F(Http, PostEchoesTheBodyAndStatusesAreResponses) {
    running_server srv([](const http::request& req) {
        if (req.target() == "/missing")
            return http::make_response(req, http::status::not_found, "no");
        return http::make_response(req, http::status::ok,
                                   std::string(req.method_string()) + ":" + req.body());
    });
    http::client session;
    EXPECT_EQ(session.post(srv.url("/echo"), "payload", "text/plain").body(), "POST:payload");
    EXPECT_EQ(session.get(srv.url("/missing")).result(), http::status::not_found);
}

TEST_F(Http, ManyFibersShareOneClient) {
    running_server srv([](const http::request& req) {
        sleep(20ms);
        return http::make_response(req, http::status::ok, std::string(req.target()));
    });
    http::client session;
    std::vector<task<std::string>> gets;
    for (int i = 0; i < 10; ++i) {
        gets.push_back(
            spawn([&, i] { return session.get(srv.url("/" + std::to_string(i))).body(); }));
    }
    for (int i = 0; i < 10; ++i) EXPECT_EQ(gets[i].get(), "/" + std::to_string(i));
}

TEST_F(Http, ClientTimesOutOnASlowServer) {
    running_server srv([](const http::request& req) {
        sleep(2s);
        return hello(req);
    });
    http::client session;
    try {
        (void)session.get(srv.url(), 50ms);
        FAIL() << "no timeout";
    } catch (const boost::system::system_error& e) {
        EXPECT_EQ(e.code(), asio::error::timed_out);
        EXPECT_THAT(e.what(), HasSubstr("GET http://127.0.0.1:"));
    }
}

TEST_F(Http, AStaleKeptAliveConnectionIsRetriedOnce) {
    running_server srv(hello, http::server_options{.idle_timeout = 20ms});
    http::client session;
    EXPECT_EQ(session.get(srv.url()).body(), "Hello, World!");
    sleep(100ms);  // the server closes the idle connection
    EXPECT_EQ(session.get(srv.url()).body(), "Hello, World!");
    EXPECT_EQ(srv.srv.served(), 2u);
}

TEST_F(Http, GarbageGets400AndTheServerKeepsServing) {
    running_server srv(hello);
    const std::string answer = raw_exchange(srv.port, "\x16\x03\x01 not http at all\r\n\r\n");
    EXPECT_THAT(answer, HasSubstr("HTTP/1.1 400 Bad Request"));
    EXPECT_THAT(answer, HasSubstr("Connection: close"));
    http::client session;
    EXPECT_EQ(session.get(srv.url()).body(), "Hello, World!");
}

TEST_F(Http, OversizedHeadsAndBodiesGet431And413) {
    running_server srv(hello, http::server_options{.header_limit = 256, .body_limit = 16});
    EXPECT_THAT(
        raw_exchange(srv.port, "GET / HTTP/1.1\r\nX: " + std::string(1000, 'a') + "\r\n\r\n"),
        HasSubstr("431"));
    EXPECT_THAT(raw_exchange(srv.port, "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n" +
                                           std::string(100, 'b')),
                HasSubstr("413"));
}

TEST_F(Http, AClientThatSendsNothingIsClosedAfterTheIdleTimeout) {
    running_server srv(hello, http::server_options{.idle_timeout = 30ms});
    tcp::socket s;
    s.connect(tcp::endpoint(asio::ip::address_v4::loopback(), srv.port));
    std::array<char, 16> buf{};
    error_code ec;
    (void)s.read_some(asio::buffer(buf), 5s, ec);
    EXPECT_EQ(ec, asio::error::eof);
    while (srv.srv.active() > 0) yield_now();
}

TEST_F(Http, AHandlerThatThrowsGets500AndIsReported) {
    greenfiber::testing::reports r;
    {
        running_server srv([](const http::request&) -> http::response {
            throw std::runtime_error("handler bug");
        });
        http::client session;
        EXPECT_EQ(session.get(srv.url("/x")).result(), http::status::internal_server_error);
    }
    ASSERT_EQ(r.messages.size(), 1u);
    EXPECT_THAT(r.messages[0], HasSubstr("GET /x"));
}

TEST_F(Http, BeastSynchronousApiWorksOnGreenfiberSockets) {
    running_server srv(hello);
    tcp::socket s;
    s.connect(tcp::endpoint(asio::ip::address_v4::loopback(), srv.port));
    http::request req{http::verb::get, "/", 11};
    req.set(http::field::host, "localhost");
    boost::beast::http::write(s, req);
    boost::beast::flat_buffer buf;
    http::response res;
    boost::beast::http::read(s, buf, res);
    EXPECT_EQ(res.body(), "Hello, World!");
}

// A server that records every request its handler sees ("METHOD target body"), with a
// short idle timeout so that a keep-alive connection left open ends the exchange quickly.
struct recording_server {
    recording_server()
        : recording_server(tcp::acceptor(tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
                           http::server_options{.idle_timeout = 1s}) {}
    recording_server(tcp::acceptor listener, http::server_options opts)
        : srv(
              std::move(listener),
              [this](const http::request& req) {
                  seen.push_back(std::string(req.method_string()) + " " +
                                 std::string(req.target()) + " " + req.body());
                  return hello(req);
              },
              std::move(opts)) {}
    std::vector<std::string> seen;
    running_server srv;
};

std::size_t count(const std::string& haystack, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = haystack.find(needle); at != std::string::npos;
         at = haystack.find(needle, at + 1)) {
        ++n;
    }
    return n;
}

// What the body of a badly framed request carries: if the server ever parses it as the
// next request on the connection, the handler sees "GET /smuggled".
const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

// Sends `head` + `body`, expects one response with `status_line` and the connection
// closed, and the handler never called.
void expect_rejected(const std::string& head, const std::string& body,
                     const std::string& status_line = "HTTP/1.1 400 Bad Request\r\n") {
    recording_server rs;
    const std::string answer = raw_exchange(rs.srv.port, head + body);
    EXPECT_EQ(answer.rfind(status_line, 0), 0u) << answer;
    EXPECT_THAT(answer, HasSubstr("Connection: close"));
    EXPECT_EQ(count(answer, "HTTP/1.1 "), 1u) << answer;
    EXPECT_EQ(rs.seen, std::vector<std::string>{});
}

TEST_F(Http, TransferEncodingNotEndingInChunkedIsRejected) {
    // RFC 9112 §6.3: the length of such a request cannot be determined reliably.
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", smuggled);
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                    smuggled);
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: x-unknown\r\n\r\n", smuggled);
    // Not a list of codings: parameters on chunked (it has none), a quoted string.
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;x=1\r\n\r\n",
                    "0\r\n\r\n" + smuggled);
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
                    "0\r\n\r\n" + smuggled);
    // chunked twice is not chunked framing either (§7: applied at most once).
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                    "0\r\n\r\n" + smuggled);
}

TEST_F(Http, TransferEncodingAndContentLengthTogetherAreRejected) {
    // §6.1 allows rejecting or letting TE win (then closing); rejecting is the safe choice.
    expect_rejected(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "0\r\n\r\n" + smuggled);
    expect_rejected(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "0\r\n\r\n" + smuggled);
    const std::string cl = "Content-Length: " + std::to_string(smuggled.size()) + "\r\n";
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n" + cl + "\r\n",
                    smuggled);
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\n" + cl + "Transfer-Encoding: gzip\r\n\r\n",
                    smuggled);
}

TEST_F(Http, AnUnknownCodingBeforeChunkedGets501) {
    // §6.1: a transfer coding the server does not understand; chunked framing still tells
    // where the request ends, but the server closes anyway.
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: x-unknown, chunked\r\n\r\n",
                    "0\r\n\r\n" + smuggled, "HTTP/1.1 501 Not Implemented\r\n");
    expect_rejected(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
        "chunked\r\n\r\n",
        "0\r\n\r\n" + smuggled, "HTTP/1.1 501 Not Implemented\r\n");
}

TEST_F(Http, TransferEncodingInHttp10IsRejected) {
    // §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    expect_rejected("POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                    "5\r\nhello\r\n0\r\n\r\n" + smuggled);
}

TEST_F(Http, ConflictingContentLengthsAreRejected) {
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                    "hello!" + smuggled);
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
                    "hello!" + smuggled);
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", "hello" + smuggled);
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5 5\r\n\r\n",
                    "hello" + smuggled);
}

TEST_F(Http, ObsFoldIsRejected) {
    // RFC 9112 §5.2 lets a server reject or unfold; a proxy in front may do the other.
    expect_rejected("GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", smuggled);
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
                    "0\r\n\r\n" + smuggled);
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\t\r\n\r\n", smuggled);
    // Whitespace between the start line and the first field (RFC 9112 §2.2).
    expect_rejected("GET / HTTP/1.1\r\n Host: x\r\n\r\n", smuggled);
}

TEST_F(Http, BareLineFeedsAreRejected) {
    // RFC 9112 §2.2 lets a recipient accept a bare LF as a line end; the server does not.
    expect_rejected("GET / HTTP/1.1\nHost: x\n\n", smuggled);
    expect_rejected("GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", smuggled);
}

// Writes `parts` with a pause between them, so that the server reads a head in pieces.
std::string raw_exchange_in_parts(unsigned short port, const std::vector<std::string>& parts) {
    tcp::socket s;
    s.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
    for (const auto& part : parts) {
        s.write(asio::buffer(part));
        sleep(10ms);
    }
    return read_until_closed(s);
}

TEST_F(Http, AHeadArrivingInPiecesIsCheckedWhole) {
    recording_server rs;
    EXPECT_EQ(raw_exchange_in_parts(rs.srv.port, {"GET /a HTTP/1.1\r\nHo", "st: x\r\nX: a\r\n",
                                                  " b\r\nConnection: close\r\n\r\n"})
                  .rfind("HTTP/1.1 400 Bad Request\r\n", 0),
              0u);
    EXPECT_EQ(rs.seen, std::vector<std::string>{});
    const std::string answer = raw_exchange_in_parts(
        rs.srv.port, {"GET /b HTTP/1.1\r\nHo", "st: x\r\nConnection: close\r", "\n", "\r\n"});
    EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answer;
    EXPECT_EQ(rs.seen, std::vector<std::string>{"GET /b "});
}

TEST_F(Http, EqualContentLengthsAreOneContentLength) {
    // §6.3 item 5: a list of equal valid values is that value.
    for (const std::string cl : {"Content-Length: 5\r\nContent-Length: 5\r\n",
                                 "Content-Length: 5, 5\r\n", "Content-Length: 5,5\r\n"}) {
        recording_server rs;
        const std::string answer = raw_exchange(
            rs.srv.port, "POST /a HTTP/1.1\r\nHost: x\r\n" + cl + "\r\nhello" +
                             "GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        EXPECT_EQ(count(answer, "HTTP/1.1 200 OK"), 2u) << answer;
        EXPECT_EQ(rs.seen, (std::vector<std::string>{"POST /a hello", "GET /b "}));
    }
}

TEST_F(Http, ChunkedRequestsAreFramedByTheirChunks) {
    recording_server rs;
    const std::string answer = raw_exchange(
        rs.srv.port,
        "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n"
        "3\r\nabc\r\n0\r\n\r\n");
    EXPECT_EQ(count(answer, "HTTP/1.1 200 OK"), 2u) << answer;
    EXPECT_EQ(rs.seen, (std::vector<std::string>{"POST /a hello", "POST /b abc"}));
}

TEST_F(Http, HeadGetsTheHeadersOfGetAndNoBody) {
    recording_server rs;
    const std::string answer =
        raw_exchange(rs.srv.port,
                     "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const auto end_of_head = answer.find("\r\n\r\n");
    ASSERT_NE(end_of_head, std::string::npos) << answer;
    const std::string head = answer.substr(0, end_of_head + 4);
    const std::string rest = answer.substr(end_of_head + 4);
    EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
    EXPECT_THAT(head, HasSubstr("Content-Length: 13\r\n"));
    EXPECT_THAT(head, HasSubstr("Content-Type: text/plain\r\n"));
    // The next bytes are the GET response, nothing else.
    EXPECT_EQ(rest.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << rest;
    EXPECT_EQ(count(answer, "Hello, World!"), 1u) << answer;
    EXPECT_EQ(rs.seen, (std::vector<std::string>{"HEAD / ", "GET /next "}));
}

TEST_F(Http, AHeadHandlerMaySetItsOwnContentLength) {
    running_server srv([](const http::request& req) {
        http::response res = http::make_response(req, http::status::ok, "");
        res.content_length(1234);
        return res;
    });
    http::client session;
    http::request head{http::verb::head, "/", 11};
    const http::response res = session.send(srv.url(), head, 5s);
    EXPECT_EQ(res[http::field::content_length], "1234");
    EXPECT_EQ(res.body(), "");
}

TEST_F(Http, ClientHeadReturnsTheHeadersAndKeepsTheConnection) {
    running_server srv(hello);
    http::client session;
    http::request head{http::verb::head, "/", 11};
    // Without skipping the body the client would wait for 13 bytes until the deadline.
    const http::response res = session.send(srv.url(), head, 5s);
    EXPECT_EQ(res.result(), http::status::ok);
    EXPECT_EQ(res[http::field::content_length], "13");
    EXPECT_EQ(res.body(), "");
    EXPECT_EQ(session.idle_connections(), 1u);
    EXPECT_EQ(session.get(srv.url()).body(), "Hello, World!");
    EXPECT_EQ(session.send(srv.url(), head, 5s).body(), "");
    EXPECT_EQ(session.get(srv.url()).body(), "Hello, World!");
    EXPECT_EQ(srv.srv.served(), 1u);
}

TEST_F(Http, UrlParsing) {
    const auto u = http::parse_url("http://example.com:8080/a/b?q=1#frag");
    EXPECT_EQ(u.host, "example.com");
    EXPECT_EQ(u.port, "8080");
    EXPECT_EQ(u.target, "/a/b?q=1");
    EXPECT_EQ(http::parse_url("http://h").target, "/");
    EXPECT_EQ(http::parse_url("http://h").port, "80");
    EXPECT_EQ(http::parse_url("http://[::1]:81/").host, "::1");
    EXPECT_THROW(http::parse_url("https://h/"), std::invalid_argument);
    EXPECT_THROW(http::parse_url("not a url"), std::invalid_argument);
}

}  // namespace

namespace {

// What a client that never ends a line got: the server's answer, and how many bytes it
// could send before the first byte of that answer arrived.
struct flood_result {
    std::string answer;
    std::size_t sent_before_answer = 0;
};

// Sends `head`, then `filler` over and over, while another fiber reads the answer; stops
// sending when the answer arrives, a write fails (the server closed) or `cap` bytes went
// out, and reads until the server closes (or 20 s pass).
flood_result flood(unsigned short port, const std::string& head, const std::string& filler,
                   std::size_t cap) {
    tcp::socket s;
    s.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
    // Small, fixed socket buffers on both ends (the listener's pass to what it accepts),
    // so that what the kernels hold stays small next to the server's own limit.
    s.set_option(asio::socket_base::send_buffer_size(64 * 1024));
    s.write(asio::buffer(head));
    flood_result r;
    bool answered = false;
    auto reader = spawn([&] {
        std::array<char, 4096> buf{};
        const deadline dl(20s);
        for (;;) {
            error_code ec;
            const std::size_t n = s.read_some(asio::buffer(buf), dl, ec);
            if (n > 0) answered = true;
            r.answer.append(buf.data(), n);
            if (ec) break;
        }
    });
    std::size_t sent = 0;
    while (!answered && sent < cap) {
        error_code ec;
        sent += s.write_some(asio::buffer(filler), 10s, ec);
        if (ec) break;
    }
    r.sent_before_answer = sent;
    reader.get();
    return r;
}

// A listener whose connections have a small, fixed receive buffer (no autotuning).
tcp::acceptor small_buffer_listener() {
    tcp::acceptor a(tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    a.set_option(asio::socket_base::receive_buffer_size(64 * 1024));
    return a;
}

constexpr std::size_t flood_cap = 64 * 1024 * 1024;
// The server's own limit (header_limit + read_buffer_limit, under 100 KiB by default) plus
// what the kernels buffer on loopback, with a wide margin; an unbounded server takes flood_cap.
constexpr std::size_t flood_bound = 4 * 1024 * 1024;

const std::string chunked_post = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

void expect_cut_off(const std::string& head, const std::string& filler) {
    recording_server rs(small_buffer_listener(), http::server_options{.io_timeout = 3s});
    const flood_result r = flood(rs.srv.port, head, filler, flood_cap);
    EXPECT_EQ(r.answer.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u) << r.answer;
    EXPECT_THAT(r.answer, HasSubstr("Connection: close"));
    EXPECT_LT(r.sent_before_answer, flood_bound);
    EXPECT_EQ(rs.seen, std::vector<std::string>{});
}

TEST_F(Http, AnEndlessChunkExtensionIsCutOffAtTheBufferLimit) {
    expect_cut_off(chunked_post + "5;", std::string(16 * 1024, 'a'));
}

TEST_F(Http, AnEndlessChunkSizeLineIsCutOffAtTheBufferLimit) {
    // Leading zeros keep the size a valid (zero-valued) hex number however long it grows.
    expect_cut_off(chunked_post, std::string(16 * 1024, '0'));
}

TEST_F(Http, AnEndlessTrailerFieldIsCutOffAtTheBufferLimit) {
    expect_cut_off(chunked_post + "5\r\nhello\r\n0\r\nX-Trailer: ", std::string(16 * 1024, 'a'));
}

TEST_F(Http, TheBufferLimitIsWhatTheServerHoldsBeyondTheHeadLimit) {
    // The buffer holds header_limit + buffer_limit = 1280 bytes.
    const http::server_options opts{.header_limit = 256, .buffer_limit = 1024};
    const auto post_with_extension = [&](std::size_t n) {
        recording_server rs(tcp::acceptor(tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
                            opts);
        const std::string answer = raw_exchange(rs.srv.port,
                                                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                                                "chunked\r\nConnection: close\r\n\r\n5;n=" +
                                                    std::string(n, 'v') + "\r\nhello\r\n0\r\n\r\n");
        return answer.substr(0, answer.find("\r\n")) + " " + std::to_string(rs.seen.size());
    };
    EXPECT_EQ(post_with_extension(500), "HTTP/1.1 200 OK 1");
    EXPECT_EQ(post_with_extension(4000), "HTTP/1.1 413 Payload Too Large 0");
}

TEST_F(Http, ARequestWithinTheLimitsStillGoesThroughAfterACutOff) {
    recording_server rs(small_buffer_listener(), http::server_options{.io_timeout = 3s});
    (void)flood(rs.srv.port, chunked_post + "5;", std::string(16 * 1024, 'a'), flood_cap);
    // Chunk extensions and trailers that fit are fine.
    const std::string answer = raw_exchange(
        rs.srv.port, chunked_post.substr(0, chunked_post.size() - 2) +
                         "Connection: close\r\n\r\n5;name=" + std::string(1000, 'v') +
                         "\r\nhello\r\n0\r\nX-T: " + std::string(1000, 't') + "\r\n\r\n");
    EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answer;
    EXPECT_EQ(rs.seen, std::vector<std::string>{"POST / hello"});
}

}  // namespace
