#include "greenfiber/server.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/net.hpp"
#include "greenfiber/stream.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

class Server : public greenfiber::testing::io_checked {};
class Net : public greenfiber::testing::io_checked {};

using greenfiber::testing::echo_until_eof;
using greenfiber::testing::loopback_listener;
using greenfiber::testing::open_fds;
using greenfiber::testing::reports;

std::string round_trip(const tcp::endpoint& ep, const std::string& msg) {
    tcp::socket c;
    c.connect(ep);
    c.write(asio::buffer(msg));
    std::string got(msg.size(), '\0');
    c.read(asio::buffer(got));
    return got;
}

TEST_F(Server, ServesConcurrentClientsAndStopsGracefully) {
    server<tcp::protocol> srv(loopback_listener(), echo_until_eof);
    const auto ep = srv.local_endpoint();
    auto loop = srv.start();
    std::vector<task<std::string>> clients;
    for (int i = 0; i < 20; ++i) {
        clients.push_back(spawn([ep, i] { return round_trip(ep, "client " + std::to_string(i)); }));
    }
    for (int i = 0; i < 20; ++i) EXPECT_EQ(clients[i].get(), "client " + std::to_string(i));
    EXPECT_EQ(srv.stop(1s), 0u);  // every handler had finished: nothing to cancel
    loop.get();
    EXPECT_EQ(srv.served(), 20u);
    EXPECT_EQ(srv.active(), 0u);
}

TEST_F(Server, AcceptPausesAtTheConcurrencyCap) {
    std::size_t most = 0;
    server<tcp::protocol>* self = nullptr;
    server<tcp::protocol> srv(
        loopback_listener(),
        [&](tcp::socket s) {
            most = std::max(most, self->active());
            sleep(20ms);
            echo_until_eof(std::move(s));
        },
        server_options{.max_connections = 2});
    self = &srv;
    const auto ep = srv.local_endpoint();
    auto loop = srv.start();
    std::vector<task<std::string>> clients;
    for (int i = 0; i < 6; ++i) clients.push_back(spawn([ep] { return round_trip(ep, "x"); }));
    for (auto& c : clients) EXPECT_EQ(c.get(), "x");
    srv.stop();
    loop.get();
    EXPECT_EQ(most, 2u);
    EXPECT_EQ(srv.served(), 6u);
}

TEST_F(Server, StopCancelsHandlersStillRunningAfterTheGrace) {
    bool unwound = false;
    server<tcp::protocol> srv(loopback_listener(), [&](tcp::socket) {
        struct cleanup {
            bool& flag;
            ~cleanup() { flag = true; }
        } c{unwound};
        sleep(std::chrono::hours(1));
    });
    const auto ep = srv.local_endpoint();
    auto loop = srv.start();
    tcp::socket client;
    client.connect(ep);
    while (srv.active() == 0) yield_now();
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(srv.stop(30ms), 1u);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
    EXPECT_TRUE(unwound);
    loop.get();
    // New connections are refused once stopped.
    tcp::socket late;
    error_code ec;
    late.connect(ep, ec);
    EXPECT_EQ(ec, asio::error::connection_refused);
}

TEST_F(Server, CancellingServeStopsItGracefully) {
    auto listener = loopback_listener();
    const auto ep = listener.local_endpoint();
    auto t =
        spawn([&] { serve(std::move(listener), echo_until_eof, server_options{.grace = 1s}); });
    EXPECT_EQ(round_trip(ep, "before"), "before");
    t.cancel();
    EXPECT_THROW(t.get(), cancelled_error);
    tcp::socket late;
    error_code ec;
    late.connect(ep, ec);
    EXPECT_EQ(ec, asio::error::connection_refused);
}

TEST_F(Server, AHandlerThatThrowsIsReportedAndTheServerGoesOn) {
    reports r;
    int calls = 0;
    server<tcp::protocol> srv(loopback_listener(), [&](tcp::socket s) {
        if (++calls == 1) throw std::runtime_error("handler failed");
        echo_until_eof(std::move(s));
    });
    auto loop = srv.start();
    {
        tcp::socket c;
        c.connect(srv.local_endpoint());
        std::array<char, 1> b{};
        error_code ec;
        (void)c.read_some(asio::buffer(b), ec);  // closed by the server after the throw
        EXPECT_EQ(ec, asio::error::eof);
    }
    EXPECT_EQ(round_trip(srv.local_endpoint(), "second"), "second");
    srv.stop();
    loop.get();
    ASSERT_EQ(r.messages.size(), 1u);
    EXPECT_THAT(r.messages[0], HasSubstr("the handler of the connection from 127.0.0.1:"));
}

TEST_F(Server, RunningOutOfDescriptorsPausesAcceptsWithoutSpinning) {
    reports r;
    rlimit saved{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
    std::vector<tcp::socket> held;
    server<tcp::protocol> srv(loopback_listener(), echo_until_eof,
                              server_options{.accept_backoff = 5ms, .accept_backoff_max = 40ms});
    const auto ep = srv.local_endpoint();
    auto loop = srv.start();
    yield_now();
    // The clients' descriptors first; then room for two more: the server's third accept
    // runs out.
    for (int i = 0; i < 4; ++i) {
        held.emplace_back();
        held.back().native().open(asio::ip::tcp::v4());
    }
    rlimit low = saved;
    low.rlim_cur = static_cast<rlim_t>(open_fds() + 2);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
    for (auto& c : held) c.connect(ep);
    sleep(200ms);  // the server accepts two, then fails for lack of descriptors
    const std::size_t shortages = srv.accept_shortages();
    EXPECT_GE(shortages, 1u);
    EXPECT_LE(shortages, 20u);  // backed off: 200 ms at 5..40 ms per pause, not a spin
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
    // Once descriptors are free again every waiting connection is served.
    for (auto& c : held) {
        c.write(asio::buffer("e", 1));
        std::array<char, 1> b{};
        EXPECT_EQ(c.read(asio::buffer(b), 5s), 1u);
    }
    held.clear();
    EXPECT_EQ(round_trip(ep, "after"), "after");
    srv.stop();
    loop.get();
    ASSERT_GE(r.messages.size(), 1u);
    EXPECT_THAT(r.messages[0], HasSubstr("Too many open files"));
    EXPECT_THAT(r.messages[0], HasSubstr("pausing accepts"));
}

TEST_F(Server, TenThousandConnectionsLeakNoDescriptor) {
    server<tcp::protocol> srv(loopback_listener(), echo_until_eof);
    const auto ep = srv.local_endpoint();
    auto loop = srv.start();
    yield_now();
    const int before = open_fds();
    for (int i = 0; i < 10000; ++i) {
        tcp::socket c;
        c.connect(ep);
        c.write(asio::buffer("k", 1));
        std::array<char, 1> b{};
        (void)c.read(asio::buffer(b));
    }
    while (srv.active() > 0) yield_now();
    EXPECT_EQ(open_fds(), before);
    EXPECT_EQ(srv.served(), 10000u);
    srv.stop();
    loop.get();
}

TEST_F(Server, ServesUnixStreamSockets) {
    const std::string path = "/tmp/greenfiber-server-" + std::to_string(::getpid()) + ".sock";
    ::unlink(path.c_str());
    server<unix_stream::protocol> srv(
        unix_stream::acceptor(unix_stream::endpoint(path), false),
        [](unix_stream::socket s) { s.write(asio::buffer("unix", 4)); });
    auto loop = srv.start();
    unix_stream::socket c;
    c.connect(unix_stream::endpoint(path));
    std::array<char, 4> b{};
    EXPECT_EQ(c.read(asio::buffer(b)), 4u);
    srv.stop();
    loop.get();
    ::unlink(path.c_str());
}

TEST_F(Server, DestroyingARunningServerCancelsItsHandlers) {
    auto srv = std::make_unique<server<tcp::protocol>>(
        loopback_listener(), [](tcp::socket) { sleep(std::chrono::hours(1)); });
    auto loop = srv->start();
    tcp::socket c;
    c.connect(srv->local_endpoint());
    while (srv->active() == 0) yield_now();
    srv.reset();
    EXPECT_TRUE(loop.done());
    loop.get();
}

// ---------------------------------------------------------------- resolution

TEST_F(Net, ResolvesLocalhostAndConnectsByName) {
    const auto eps = resolve("localhost", "80");
    ASSERT_FALSE(eps.empty());
    EXPECT_TRUE(eps.front().address().is_loopback());
    EXPECT_EQ(eps.front().port(), 80);

    server<tcp::protocol> srv(loopback_listener(), echo_until_eof);
    auto loop = srv.start();
    tcp::socket s = create_connection("127.0.0.1", std::to_string(srv.local_endpoint().port()), 5s);
    s.write(asio::buffer("name", 4));
    std::array<char, 4> b{};
    EXPECT_EQ(s.read(asio::buffer(b)), 4u);
    s.close();
    srv.stop();
    loop.get();
}

TEST_F(Net, ErrorsNameTheHostAndService) {
    try {
        (void)resolve("no-such-host.invalid", "80", 5s);
        FAIL() << "resolved";
    } catch (const boost::system::system_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("resolve 'no-such-host.invalid:80'"));
    }
    tcp::endpoint closed;
    {
        auto a = loopback_listener();
        closed = a.local_endpoint();
    }
    try {
        (void)create_connection("127.0.0.1", std::to_string(closed.port()));
        FAIL() << "connected";
    } catch (const boost::system::system_error& e) {
        EXPECT_EQ(e.code(), asio::error::connection_refused);
        EXPECT_THAT(e.what(), HasSubstr("connect to '127.0.0.1:"));
    }
    error_code ec;
    (void)create_connection("127.0.0.1", std::to_string(closed.port()), {}, ec);
    EXPECT_EQ(ec, asio::error::connection_refused);
}

TEST_F(Net, OpenConnectionGivesABufferedReaderAndWriter) {
    server<tcp::protocol> srv(loopback_listener(), echo_until_eof);
    auto loop = srv.start();
    {
        stream_connection conn =
            open_connection("localhost", std::to_string(srv.local_endpoint().port()), 5s);
        conn.writer.write("first line\nsecond");
        conn.writer.write(" line\n");
        conn.writer.drain();
        EXPECT_EQ(conn.reader.readline(), "first line\n");
        EXPECT_EQ(conn.reader.readline(), "second line\n");
        conn.writer.write_eof();
        EXPECT_EQ(conn.reader.read(), "");
        EXPECT_TRUE(conn.reader.at_eof());
    }
    srv.stop();
    loop.get();
}

TEST_F(Net, UdpResolution) {
    const auto eps = resolve<udp::protocol>("127.0.0.1", "53");
    ASSERT_EQ(eps.size(), 1u);
    EXPECT_EQ(eps.front().port(), 53);
}

// Regression: stop() from one of the server's own handlers waited for that handler to end,
// which it never could.
TEST_F(Server, StopFromOneOfItsOwnHandlersReturns) {
    server<tcp::protocol>* self = nullptr;
    std::size_t cancelled_by_stop = 99;
    server<tcp::protocol> srv(loopback_listener(), [&](tcp::socket s) {
        std::array<char, 4> buf{};
        s.read(asio::buffer(buf));                 // "stop"
        cancelled_by_stop = self->stop(10ms);      // neither waits for nor cancels itself
        s.write(asio::buffer(std::string("ok")));  // still usable: not cancelled
    });
    self = &srv;
    const auto ep = srv.local_endpoint();
    auto loop = srv.start();
    auto idle = spawn([ep] {  // a second connection that never sends: stop() cancels it
        tcp::socket c;
        c.connect(ep);
        std::array<char, 1> b{};
        error_code ec;
        (void)c.read_some(asio::buffer(b), ec);
    });
    tcp::socket c;
    c.connect(ep);
    while (srv.active() < 2) sleep(1ms);
    c.write(asio::buffer(std::string("stop")));
    std::array<char, 2> reply{};
    c.read(asio::buffer(reply));
    EXPECT_EQ(std::string(reply.data(), 2), "ok");
    loop.get();
    idle.get();
    EXPECT_EQ(cancelled_by_stop, 1u);
    EXPECT_EQ(srv.active(), 0u);
}

// Regression: a server going out of scope waits in its destructor for a handler that
// ignores cancellation; at thread exit, after the cancel grace, the hub killed that fiber
// and greenlet_exit left the noexcept destructor: std::terminate.
TEST_F(Server, DestroyedWhileAHandlerIgnoresCancellationSurvivesThreadExit) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(
        {
            set_report_handler([](const failure_report&) {});  // the kill is reported
            std::thread th([] {
                auto owner = spawn([] {
                    server<tcp::protocol> srv(loopback_listener(), [](tcp::socket) {
                        for (;;) {
                            try {
                                sleep(1h);
                            } catch (const cancelled_error&) {
                                current_task().uncancel();  // stubborn: keeps waiting
                            }
                        }
                    });
                    const auto ep = srv.local_endpoint();
                    auto loop = srv.start();
                    auto client = spawn([ep] {
                        tcp::socket c;
                        c.connect(ep);
                        sleep(1h);
                    });
                    while (srv.active() == 0) sleep(1ms);
                }  // ~server: waits for the stubborn handler
                );
                sleep(50ms);  // then the thread leaves with the owner still in ~server
            });
            th.join();
            std::exit(0);
        },
        ::testing::ExitedWithCode(0), "");
}

}  // namespace
