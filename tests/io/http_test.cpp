#include "greenfiber/http.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "http_support.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

using namespace greenfiber;
using greenfiber::testing::running_server;
using greenfiber::testing::scripted_server;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

class Http : public greenfiber::testing::io_checked {};

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

namespace {

// Reads one request (head and body) from `s`, 5 s at most; false if none came.
bool read_request(tcp::socket& s, boost::beast::flat_buffer& buf, http::request& req) {
    error_code ec;
    auto in = with_deadline(s, deadline(5s));
    req = {};
    boost::beast::http::read(in, buf, req, ec);
    return !ec;
}

void write_all(tcp::socket& s, const std::string& bytes) {
    error_code ec;
    s.write(asio::buffer(bytes), 5s, ec);
}

const std::string ok_response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

// Answers the first request of each connection, then reads the second and closes without
// a byte of answer: what a server that closed a kept-alive connection just as the client
// reused it looks like. Counts the requests it got.
struct one_answer_per_connection {
    std::vector<std::string> requests;
    scripted_server srv{[this](tcp::socket& s, int) {
        boost::beast::flat_buffer buf;
        http::request req;
        if (!read_request(s, buf, req)) return;
        requests.push_back(std::string(req.method_string()) + " " + req.body());
        write_all(s, ok_response);
        if (!read_request(s, buf, req)) return;
        requests.push_back(std::string(req.method_string()) + " " + req.body());
    }};
};

TEST_F(Http, APostTheServerConsumedIsNeverResent) {
    // RFC 9110 §9.2.2: a non-idempotent request is never retried automatically; the server
    // may have acted on it.
    one_answer_per_connection s;
    http::client session;
    EXPECT_EQ(session.get(s.srv.url()).body(), "ok");
    try {
        (void)session.post(s.srv.url(), "pay once", "text/plain", 5s);
        FAIL() << "the POST got an answer";
    } catch (const boost::system::system_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("POST http://127.0.0.1:"));
    }
    EXPECT_EQ(s.requests, (std::vector<std::string>{"GET ", "POST pay once"}));
    EXPECT_EQ(s.srv.connections, 1);
}

TEST_F(Http, IdempotentRequestsOnAStaleConnectionAreResentOnce) {
    for (const http::verb v : {http::verb::get, http::verb::put, http::verb::delete_}) {
        one_answer_per_connection s;
        http::client session;
        EXPECT_EQ(session.get(s.srv.url()).body(), "ok");
        http::request req{v, "/", 11};
        req.body() = "x";
        EXPECT_EQ(session.send(s.srv.url(), req, 5s).body(), "ok");
        const std::string m(http::beast_http::to_string(v));
        EXPECT_EQ(s.requests, (std::vector<std::string>{"GET ", m + " x", m + " x"}));
        EXPECT_EQ(s.srv.connections, 2);
    }
}

TEST_F(Http, AResponseCutShortIsNotRetried) {
    // Only a connection that answered nothing at all may be stale; a response begun and
    // cut off means the server got the request.
    int requests = 0;
    scripted_server srv([&](tcp::socket& s, int) {
        boost::beast::flat_buffer buf;
        http::request req;
        if (!read_request(s, buf, req)) return;
        ++requests;
        write_all(s, ok_response);
        if (!read_request(s, buf, req)) return;
        ++requests;
        write_all(s, "HTTP/1.1 200 OK\r\nContent-Le");
    });
    http::client session;
    EXPECT_EQ(session.get(srv.url()).body(), "ok");
    EXPECT_THROW((void)session.get(srv.url(), 5s), boost::system::system_error);
    EXPECT_EQ(requests, 2);
    EXPECT_EQ(srv.connections, 1);
}

TEST_F(Http, InterimResponsesAreSkipped) {
    // RFC 9110 §15.2: a client reads past 1xx responses to the final one.
    scripted_server srv([](tcp::socket& s, int) {
        boost::beast::flat_buffer buf;
        http::request req;
        while (read_request(s, buf, req)) {
            write_all(s,
                      "HTTP/1.1 100 Continue\r\n\r\n"
                      "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                      "HTTP/1.1 102 Processing\r\n\r\n" +
                          ok_response);
        }
    });
    http::client session;
    for (int i = 0; i < 2; ++i) {
        const http::response res = session.get(srv.url(), 5s);
        EXPECT_EQ(res.result(), http::status::ok);
        EXPECT_EQ(res.body(), "ok");
    }
    EXPECT_EQ(srv.connections, 1);
}

TEST_F(Http, SwitchingProtocolsUnaskedIsAnError) {
    // 101 is not interim for a client that did not ask to upgrade: what follows it on the
    // connection is not HTTP.
    scripted_server srv([](tcp::socket& s, int) {
        boost::beast::flat_buffer buf;
        http::request req;
        if (!read_request(s, buf, req)) return;
        write_all(
            s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n" +
                   ok_response);
    });
    http::client session;
    try {
        (void)session.get(srv.url(), 5s);
        FAIL() << "a 101 was taken for an answer";
    } catch (const boost::system::system_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("101 Switching Protocols"));
        EXPECT_THAT(e.what(), HasSubstr("GET http://127.0.0.1:"));
    }
    EXPECT_EQ(session.idle_connections(), 0u);
}

TEST_F(Http, AConnectionWithUnsolicitedBytesIsNotReused) {
    // A server that sent more than its Content-Length said: the excess would be read as
    // the answer to the next request on that connection.
    scripted_server srv([](tcp::socket& s, int n) {
        boost::beast::flat_buffer buf;
        http::request req;
        while (read_request(s, buf, req)) {
            write_all(s, ok_response);
            if (n == 0) {
                sleep(10ms);
                write_all(s, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfake!");
            }
        }
    });
    http::client session;
    EXPECT_EQ(session.get(srv.url(), 5s).body(), "ok");
    sleep(100ms);  // the excess arrives at the idle connection
    EXPECT_EQ(session.get(srv.url(), 5s).body(), "ok");
    EXPECT_EQ(srv.connections, 2);
}

// What a client got when a server sent `head` and then `filler` over and over, up to
// `cap` bytes (or until the client closed).
struct flood_outcome {
    std::string error;
    std::size_t sent = 0;
};
flood_outcome flood_client(http::client& session, const std::string& head,
                           const std::string& filler, std::size_t cap) {
    std::size_t sent = 0;
    scripted_server srv([&](tcp::socket& s, int) {
        s.set_option(asio::socket_base::send_buffer_size(64 * 1024));
        boost::beast::flat_buffer buf;
        http::request req;
        if (!read_request(s, buf, req)) return;
        error_code ec;
        s.write(asio::buffer(head), 5s, ec);
        while (!ec && sent < cap) sent += s.write_some(asio::buffer(filler), 10s, ec);
    });
    flood_outcome out;
    try {
        (void)session.get(srv.url(), 30s);
        out.error = "no error";
    } catch (const boost::system::system_error& e) {
        out.error = e.what();
    }
    out.sent = sent;
    return out;
}

TEST_F(Http, TheClientCapsAResponseHead) {
    http::client session(http::client_options{.header_limit = 4096});
    const flood_outcome r = flood_client(
        session, "HTTP/1.1 200 OK\r\nX-Endless: ", std::string(16 * 1024, 'a'), 64 * 1024 * 1024);
    EXPECT_THAT(r.error, HasSubstr("client_options::header_limit (4096 bytes)"));
    EXPECT_LT(r.sent, 8u * 1024 * 1024);
}

TEST_F(Http, TheClientCapsAResponseBody) {
    http::client session(http::client_options{.body_limit = 1000});
    const flood_outcome r =
        flood_client(session, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
                     std::string(1000, 'b'), 100000);
    EXPECT_THAT(r.error, HasSubstr("client_options::body_limit (1000 bytes)"));
    const flood_outcome chunked =
        flood_client(session, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                     "3e8\r\n" + std::string(1000, 'b') + "\r\n", 64 * 1024 * 1024);
    EXPECT_THAT(chunked.error, HasSubstr("client_options::body_limit (1000 bytes)"));
    EXPECT_LT(chunked.sent, 8u * 1024 * 1024);
}

TEST_F(Http, TheClientCapsAnEndlessChunkLine) {
    // A chunk extension that never ends is held unparsed until its line end: the buffer's
    // limit is all that bounds it.
    http::client session(http::client_options{.buffer_limit = 4096});
    const flood_outcome r =
        flood_client(session, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=",
                     std::string(16 * 1024, 'a'), 64 * 1024 * 1024);
    EXPECT_THAT(r.error, HasSubstr("client_options::buffer_limit (4096 bytes)"));
    EXPECT_LT(r.sent, 8u * 1024 * 1024);
}

TEST_F(Http, TheServerAnswersExpectContinueBeforeReadingTheBody) {
    recording_server rs;
    tcp::socket s;
    s.connect(tcp::endpoint(asio::ip::address_v4::loopback(), rs.srv.port));
    s.write(asio::buffer(std::string(
        "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")));
    std::array<char, 64> buf{};
    error_code ec;
    const std::size_t n = s.read_some(asio::buffer(buf), 5s, ec);
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(std::string(buf.data(), n), "HTTP/1.1 100 Continue\r\n\r\n");
    s.write(asio::buffer(std::string("hello")));
    s.write(
        asio::buffer(std::string("GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
    const std::string answer = read_until_closed(s);
    EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answer;
    EXPECT_EQ(count(answer, "HTTP/1.1 200 OK\r\n"), 2u) << answer;
    EXPECT_EQ(rs.seen, (std::vector<std::string>{"POST /up hello", "GET /next "}));
}

TEST_F(Http, ExpectContinueIsAnsweredForChunkedBodiesAndIgnoredInHttp10) {
    recording_server rs;
    // Chunked: 100 first, then the final answer once the chunks came.
    std::string answer = raw_exchange(
        rs.srv.port,
        "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-Continue\r\n"
        "Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    EXPECT_EQ(answer.rfind("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", 0), 0u) << answer;
    // RFC 9110 §10.1.1: an HTTP/1.0 request's 100-continue is ignored. No body: nothing to
    // continue to either.
    answer = raw_exchange(
        rs.srv.port, "POST /old HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi");
    EXPECT_EQ(answer.rfind("HTTP/1.0 200 OK\r\n", 0), 0u) << answer;
    answer = raw_exchange(rs.srv.port,
                          "GET /empty HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                          "Connection: close\r\n\r\n");
    EXPECT_EQ(answer.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << answer;
    EXPECT_EQ(rs.seen, (std::vector<std::string>{"POST /c abc", "POST /old hi", "GET /empty "}));
}

TEST_F(Http, AnUnknownExpectationGets417AndTheBodyIsNeverRead) {
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                        std::to_string(smuggled.size()) + "\r\nExpect: fly\r\n\r\n",
                    smuggled, "HTTP/1.1 417 Expectation Failed\r\n");
    expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                        std::to_string(smuggled.size()) + "\r\nExpect: 100-continue, fly\r\n\r\n",
                    smuggled, "HTTP/1.1 417 Expectation Failed\r\n");
}

TEST_F(Http, ExpectContinueWithTooLargeABodyGets413Without100) {
    recording_server rs(tcp::acceptor(tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
                        http::server_options{.body_limit = 16});
    tcp::socket s;
    s.connect(tcp::endpoint(asio::ip::address_v4::loopback(), rs.srv.port));
    s.write(asio::buffer(std::string(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n")));
    // The client never sends the body: the answer must come without it.
    const std::string answer = read_until_closed(s);
    EXPECT_EQ(answer.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u) << answer;
    EXPECT_THAT(answer, HasSubstr("Connection: close"));
    EXPECT_EQ(rs.seen, std::vector<std::string>{});
}

// A request that asks the server to confirm before its body is sent.
http::request expecting_post(std::string body) {
    http::request req{http::verb::post, "/", 11};
    req.set(http::field::expect, "100-continue");
    req.body() = std::move(body);
    return req;
}

TEST_F(Http, TheClientSendsTheBodyOnlyAfter100Continue) {
    std::vector<std::string> events;
    scripted_server srv([&](tcp::socket& s, int) {
        std::string head;
        std::array<char, 1024> buf{};
        error_code ec;
        while (head.find("\r\n\r\n") == std::string::npos && !ec) {
            head.append(buf.data(), s.read_some(asio::buffer(buf), 5s, ec));
        }
        events.push_back(head.substr(head.find("\r\n\r\n") + 4).empty() ? "head alone"
                                                                        : "body too soon");
        events.push_back(head.find("Expect: 100-continue\r\n") != std::string::npos ? "expect"
                                                                                    : "no expect");
        // Nothing more until the 100 goes out (a far deadline: it must not pass).
        (void)s.read_some(asio::buffer(buf), 200ms, ec);
        events.push_back(ec == asio::error::timed_out ? "waiting" : "sent anyway");
        write_all(s, "HTTP/1.1 100 Continue\r\n\r\n");
        std::string body;
        ec = {};
        while (body.size() < 4 && !ec)
            body.append(buf.data(), s.read_some(asio::buffer(buf), 5s, ec));
        events.push_back(body);
        write_all(s, ok_response);
    });
    http::client session(http::client_options{.expect_timeout = 30s});
    EXPECT_EQ(session.send(srv.url(), expecting_post("data"), 10s).body(), "ok");
    EXPECT_EQ(events, (std::vector<std::string>{"head alone", "expect", "waiting", "data"}));
    EXPECT_EQ(session.idle_connections(), 1u);
}

TEST_F(Http, AFinalAnswerToExpectContinueEndsTheRequestWithoutItsBody) {
    std::string rest;
    scripted_server srv([&](tcp::socket& s, int) {
        std::string head;
        std::array<char, 1024> buf{};
        error_code ec;
        while (head.find("\r\n\r\n") == std::string::npos && !ec) {
            head.append(buf.data(), s.read_some(asio::buffer(buf), 5s, ec));
        }
        write_all(s, "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 3\r\n\r\nno\n");
        rest = head.substr(head.find("\r\n\r\n") + 4) + read_until_closed(s);
    });
    {
        http::client session(http::client_options{.expect_timeout = 30s});
        const http::response res = session.send(srv.url(), expecting_post("secret"), 10s);
        EXPECT_EQ(res.result(), http::status::expectation_failed);
        EXPECT_EQ(res.body(), "no\n");
        // The server may still wait for the body it was told of: not reused.
        EXPECT_EQ(session.idle_connections(), 0u);
    }
    while (srv.srv.active() > 0) yield_now();
    EXPECT_EQ(rest, "");
}

TEST_F(Http, TheClientSendsTheBodyWhen100NeverComes) {
    // RFC 9110 §10.1.1: a client need not wait for 100 indefinitely.
    recording_server rs;
    scripted_server silent([&](tcp::socket& s, int) {
        boost::beast::flat_buffer buf;
        http::request req;
        if (read_request(s, buf, req)) write_all(s, ok_response);
    });
    http::client session(http::client_options{.expect_timeout = 50ms});
    EXPECT_EQ(session.send(silent.url(), expecting_post("late"), 10s).body(), "ok");
    // And against greenfiber's own server, the 100 comes and the body follows.
    EXPECT_EQ(session.send(rs.srv.url("/e"), expecting_post("body"), 10s).body(), "Hello, World!");
    EXPECT_EQ(rs.seen, std::vector<std::string>{"POST /e body"});
}

TEST_F(Http, TheClientSendsNoExpectUnlessAsked) {
    std::string head;
    scripted_server srv([&](tcp::socket& s, int) {
        boost::beast::flat_buffer buf;
        http::request req;
        if (!read_request(s, buf, req)) return;
        head = req.count(http::field::expect) ? "expect" : "no expect";
        write_all(s, ok_response);
    });
    http::client session;
    EXPECT_EQ(session.post(srv.url(), std::string(1024 * 1024, 'x')).body(), "ok");
    EXPECT_EQ(head, "no expect");
}

}  // namespace

namespace {

TEST_F(Http, ARequestCancelledAtAnyStepLeavesNoConnectionBehind) {
    // The server parks at each step of an Expect exchange in turn; the request is
    // cancelled there. Its connection must be closed, never kept for reuse.
    for (int step = 0; step < 4; ++step) {
        event parked;
        bool closed_by_client = false;
        scripted_server srv([&](tcp::socket& s, int) {
            std::array<char, 1024> buf{};
            error_code ec;
            std::string got;
            const auto stop_here = [&](int at) {
                if (at != step) return false;
                parked.set();
                while (!ec) (void)s.read_some(asio::buffer(buf), 5s, ec);  // until the client goes
                closed_by_client = ec == asio::error::eof || ec == asio::error::connection_reset;
                return true;
            };
            if (stop_here(0)) return;  // before a byte of the head is read
            while (got.find("\r\n\r\n") == std::string::npos && !ec) {
                got.append(buf.data(), s.read_some(asio::buffer(buf), 5s, ec));
            }
            if (stop_here(1)) return;  // the client waits for 100
            write_all(s, "HTTP/1.1 100 Continue\r\n\r\n");
            while (got.find("data") == std::string::npos && !ec) {
                got.append(buf.data(), s.read_some(asio::buffer(buf), 5s, ec));
            }
            if (stop_here(2)) return;  // the client waits for the final head
            write_all(s, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
            if (stop_here(3)) return;  // the client waits for the rest of the body
        });
        http::client session(http::client_options{.expect_timeout = 30s});
        auto t = spawn([&] { return session.send(srv.url(), expecting_post("data"), 10s); });
        parked.wait();
        t.cancel();
        EXPECT_THROW((void)t.get(), cancelled_error) << "step " << step;
        EXPECT_EQ(session.idle_connections(), 0u) << "step " << step;
        while (srv.srv.active() > 0) yield_now();
        EXPECT_TRUE(closed_by_client) << "step " << step;
    }
}

}  // namespace

namespace {

TEST_F(Http, ManyFibersSendExpectingRequestsOnOneClient) {
    recording_server rs;
    http::client session(http::client_options{.expect_timeout = 30s});
    // A task can return a whole response (task.hpp's copyable trait used to recurse into
    // Beast's fields and fail to compile).
    std::vector<task<http::response>> posts;
    for (int i = 0; i < 8; ++i) {
        posts.push_back(spawn([&, i] {
            http::request req = expecting_post("body" + std::to_string(i));
            return session.send(rs.srv.url("/" + std::to_string(i)), std::move(req), 10s);
        }));
    }
    for (auto& p : posts) EXPECT_EQ(p.get().body(), "Hello, World!");
    std::vector<std::string> seen = rs.seen;
    std::sort(seen.begin(), seen.end());
    std::vector<std::string> expected;
    for (int i = 0; i < 8; ++i) {
        expected.push_back("POST /" + std::to_string(i) + " body" + std::to_string(i));
    }
    EXPECT_EQ(seen, expected);
    // Each connection went back to the client once its exchange ended.
    EXPECT_EQ(session.idle_connections(), 8u);
}

}  // namespace
