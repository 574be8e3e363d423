// Servers on several hubs at once: multi_server (server.hpp) and http::serve_on (http.hpp).

#include "greenfiber/server.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/http.hpp"
#include "greenfiber/hub_group.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

class MultiServer : public greenfiber::testing::io_checked {};

using greenfiber::testing::loopback_any;

// Echoes what arrives, with the serving hub's index first, until the peer closes.
void echo_with_hub(hub_group& g, tcp::socket s) {
    std::array<char, 256> buf{};
    for (;;) {
        error_code ec;
        const std::size_t n = s.read_some(asio::buffer(buf), ec);
        if (ec) return;
        const std::string out =
            std::to_string(g.current_index()) + ":" + std::string(buf.data(), n);
        s.write(asio::buffer(out));
    }
}

// One request on a fresh connection; returns the index of the hub that served it.
std::size_t served_by(const tcp::endpoint& ep) {
    tcp::socket c;
    c.connect(ep);
    c.write(asio::buffer(std::string("x")));
    std::array<char, 8> got{};
    const std::size_t n = c.read_some(asio::buffer(got));
    const std::string s(got.data(), n);
    return static_cast<std::size_t>(std::stoul(s.substr(0, s.find(':'))));
}

// Collects the process-wide reports (hubs of other threads report there), thread-safely.
struct process_reports {
    std::mutex mu;
    std::vector<std::string> messages;
    report_handler previous;
    process_reports() {
        previous = set_report_handler([this](const failure_report& r) {
            std::lock_guard<std::mutex> lock(mu);
            messages.emplace_back(r.message);
        });
    }
    ~process_reports() { set_report_handler(std::move(previous)); }
    std::vector<std::string> taken() {
        std::lock_guard<std::mutex> lock(mu);
        return messages;
    }
};

// Opens a connection and waits until the server's handler holds it (it answers one byte).
tcp::socket open_held(const tcp::endpoint& ep) {
    tcp::socket c;
    c.connect(ep);
    c.write(asio::buffer(std::string("h")));
    std::array<char, 8> got{};
    (void)c.read_some(asio::buffer(got));
    return c;
}

TEST_F(MultiServer, EveryHubServesConnectionsOnOnePort) {
    hub_group group(2);
    multi_server srv(group, loopback_any(),
                     [&group](tcp::socket s) { echo_with_hub(group, std::move(s)); });
    ASSERT_NE(srv.local_endpoint().port(), 0);
    ASSERT_EQ(srv.hubs(), 2u);
    // The kernel hashes each connection's addresses to a listener: 64 connections all on
    // one hub would have odds of 2^-63.
    std::array<std::size_t, 2> seen{};
    constexpr int connections = 64;
    for (int i = 0; i < connections; ++i) ++seen.at(served_by(srv.local_endpoint()));
    EXPECT_GT(seen[0], 0u);
    EXPECT_GT(seen[1], 0u);
    EXPECT_EQ(srv.stop(1h), 0u);
    EXPECT_EQ(srv.served(0), seen[0]);
    EXPECT_EQ(srv.served(1), seen[1]);
    EXPECT_EQ(srv.stop(1h), 0u);  // again: nothing
    // Every listener is closed: nobody accepts on the port any more.
    tcp::socket late;
    error_code ec;
    late.connect(srv.local_endpoint(), ec);
    EXPECT_TRUE(ec);
}

TEST_F(MultiServer, StopWhileConnectionsAreOpenCancelsTheirHandlersAfterTheGrace) {
    hub_group group(2);
    std::atomic<int> unwound{0};
    multi_server srv(group, loopback_any(), [&](tcp::socket s) {
        struct count {
            std::atomic<int>& n;
            ~count() { ++n; }
        } c{unwound};
        std::array<char, 8> b{};
        (void)s.read_some(asio::buffer(b));
        s.write(asio::buffer(std::string("h")));
        (void)s.read_some(asio::buffer(b));  // the client never sends more: held
    });
    std::vector<tcp::socket> held;
    constexpr int connections = 24;
    for (int i = 0; i < connections; ++i) held.push_back(open_held(srv.local_endpoint()));
    EXPECT_EQ(srv.active(0) + srv.active(1), static_cast<std::size_t>(connections));
    EXPECT_EQ(srv.stop(0s), static_cast<std::size_t>(connections));
    EXPECT_EQ(unwound, connections);
    EXPECT_EQ(srv.active(0) + srv.active(1), 0u);
    for (auto& c : held) {  // each was closed by its handler's end
        std::array<char, 8> b{};
        error_code ec;
        (void)c.read_some(asio::buffer(b), ec);
        EXPECT_EQ(ec, asio::error::eof);
    }
}

TEST_F(MultiServer, AHandlerThatThrowsOnOneHubLeavesEveryHubServing) {
    process_reports reports;
    hub_group group(2);
    std::atomic<bool> thrown{false};
    multi_server srv(group, loopback_any(), [&](tcp::socket s) {
        // The first connection hub 0 gets fails; everything else is echoed.
        if (group.current_index() == 0 && !thrown.exchange(true))
            throw std::runtime_error("handler failed on hub 0");
        echo_with_hub(group, std::move(s));
    });
    std::array<std::size_t, 2> seen{};
    for (int i = 0; i < 64; ++i) {
        try {
            ++seen.at(served_by(srv.local_endpoint()));
        } catch (const boost::system::system_error&) {
            // the connection of the throwing handler: closed without an answer
        }
    }
    EXPECT_TRUE(thrown);
    EXPECT_GT(seen[0], 0u);  // hub 0 went on after its handler threw
    EXPECT_GT(seen[1], 0u);
    srv.stop(1h);
    group.stop();
    // Only the handler's failure (a loaded machine may add a watchdog report).
    int handler_reports = 0;
    for (const auto& m : reports.taken())
        handler_reports +=
            m.find("the handler of the connection from 127.0.0.1:") != std::string::npos;
    EXPECT_EQ(handler_reports, 1);
}

TEST_F(MultiServer, MaxConnectionsCapsEachHub) {
    hub_group group(2);
    server_options opts;
    opts.max_connections = 1;
    std::atomic<int> peak0{0}, peak1{0};
    std::array<std::atomic<int>, 2> now{};
    multi_server srv(
        group, loopback_any(),
        [&](tcp::socket s) {
            const std::size_t i = group.current_index();
            const int n = ++now[i];
            auto& peak = i == 0 ? peak0 : peak1;
            if (n > peak) peak = n;
            std::array<char, 8> b{};
            error_code ec;
            (void)s.read_some(asio::buffer(b), ec);  // held until the client closes
            --now[i];
        },
        opts);
    // 40 connections: the odds that they all hash to one hub are 2^-39.
    std::vector<tcp::socket> clients;
    for (int i = 0; i < 40; ++i) {
        tcp::socket c;
        c.connect(srv.local_endpoint());
        clients.push_back(std::move(c));
    }
    for (int i = 0; i < 20000 && srv.active(0) + srv.active(1) < 2; ++i) sleep(1ms);
    sleep(20ms);  // a cap that did not hold would show more by now
    EXPECT_EQ(srv.active(0), 1u);
    EXPECT_EQ(srv.active(1), 1u);  // the cap is per hub: the group serves 2 at once
    clients.clear();               // each hub then takes its queued connections, one by one
    for (int i = 0; i < 20000 && srv.served(0) + srv.served(1) < 40; ++i) sleep(1ms);
    EXPECT_EQ(srv.served(0) + srv.served(1), 40u);
    srv.stop(1h);
    EXPECT_EQ(peak0, 1);
    EXPECT_EQ(peak1, 1);
}

TEST_F(MultiServer, StoppingTheGroupFirstEndsTheServersAndStopIsThenHarmless) {
    hub_group group(2);
    multi_server srv(group, loopback_any(),
                     [&group](tcp::socket s) { echo_with_hub(group, std::move(s)); });
    auto held = open_held(srv.local_endpoint());
    group.stop(0s);
    EXPECT_EQ(srv.stop(1h), 0u);
    std::array<char, 8> b{};
    error_code ec;
    (void)held.read_some(asio::buffer(b), ec);
    EXPECT_TRUE(ec);  // closed as its hub ended
}

TEST_F(MultiServer, ABusyPortIsAnErrorAndNothingKeepsListening) {
    tcp::acceptor taken(loopback_any());  // no SO_REUSEPORT: nobody can share it
    hub_group group(2);
    try {
        multi_server srv(group, taken.local_endpoint(), [](tcp::socket) {});
        FAIL() << "a busy port was bound";
    } catch (const boost::system::system_error& e) {
        EXPECT_EQ(e.code(), asio::error::address_in_use);
    }
}

TEST_F(MultiServer, HttpServeOnServesFromEveryHub) {
    hub_group group(2);
    auto srv = http::serve_on(group, loopback_any(), [&group](const http::request& req) {
        return http::make_response(req, http::status::ok, std::to_string(group.current_index()));
    });
    std::array<std::size_t, 2> seen{};
    const std::string url = "http://127.0.0.1:" + std::to_string(srv.local_endpoint().port()) + "/";
    for (int i = 0; i < 64; ++i) {
        http::client c;  // a client each: a new connection each
        auto res = c.get(url);
        ASSERT_EQ(res.result(), http::status::ok);
        ++seen.at(std::stoul(res.body()));
    }
    EXPECT_GT(seen[0], 0u);
    EXPECT_GT(seen[1], 0u);
    EXPECT_EQ(srv.served(0) + srv.served(1), 64u);
    srv.stop(1h);
}

}  // namespace
