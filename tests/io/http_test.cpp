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
        : srv(tcp::acceptor(tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
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

// Sends raw bytes and returns everything the server answers until it closes.
std::string raw_exchange(unsigned short port, const std::string& bytes) {
    tcp::socket s;
    s.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
    s.write(asio::buffer(bytes));
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
