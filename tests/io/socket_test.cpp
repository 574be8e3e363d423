#include "greenfiber/socket.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>

#include "greenfiber/combinators.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

class Socket : public greenfiber::testing::io_checked {};
class Udp : public greenfiber::testing::io_checked {};
class UnixSocket : public greenfiber::testing::io_checked {};
class FdWatch : public greenfiber::testing::io_checked {};

using greenfiber::testing::loopback_any;
using greenfiber::testing::open_fds;
using greenfiber::testing::tcp_pair;

std::string read_exactly(tcp::socket& s, std::size_t n) {
    std::string out(n, '\0');
    s.read(asio::buffer(out));
    return out;
}

// Fills the socket's send buffer (and the peer's receive buffer) until a write would block.
std::size_t fill(tcp::socket& s) {
    s.set_option(asio::socket_base::send_buffer_size(4096));
    std::vector<char> chunk(65536, 'x');
    std::size_t total = 0;
    for (;;) {
        error_code ec;
        const std::size_t n = s.write_some(asio::buffer(chunk), 50ms, ec);
        total += n;
        if (ec == asio::error::timed_out) return total;
        if (ec) throw boost::system::system_error(ec);
    }
}

TEST_F(Socket, EchoRoundTrip) {
    tcp_pair p;
    auto echo = spawn([&] {
        std::array<char, 64> buf{};
        for (;;) {
            error_code ec;
            const std::size_t n = p.server.read_some(asio::buffer(buf), ec);
            if (ec == asio::error::eof) return;
            p.server.write(asio::buffer(buf.data(), n));
        }
    });
    for (int i = 0; i < 100; ++i) {
        const std::string msg = "ping " + std::to_string(i);
        p.client.write(asio::buffer(msg));
        EXPECT_EQ(read_exactly(p.client, msg.size()), msg);
    }
    p.client.shutdown(asio::socket_base::shutdown_send);
    echo.get();
}

TEST_F(Socket, ReadSomeTimesOutInBothForms) {
    tcp_pair p;
    std::array<char, 8> buf{};
    error_code ec;
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(p.client.read_some(asio::buffer(buf), 30ms, ec), 0u);
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
    try {
        (void)p.client.read_some(asio::buffer(buf), 10ms);
        FAIL() << "no timeout";
    } catch (const boost::system::system_error& e) {
        EXPECT_EQ(e.code(), asio::error::timed_out);
    }
    // The socket is still usable after a timeout.
    p.server.write(asio::buffer("hi", 2));
    EXPECT_EQ(read_exactly(p.client, 2), "hi");
}

TEST_F(Socket, DefaultTimeoutAppliesWhenNoDeadlineIsGiven) {
    tcp_pair p;
    p.client.set_timeout(20ms);
    std::array<char, 8> buf{};
    error_code ec;
    (void)p.client.read_some(asio::buffer(buf), ec);
    EXPECT_EQ(ec, asio::error::timed_out);
    // An explicit deadline wins over the default.
    p.client.set_timeout(1ms);
    auto writer = spawn([&] {
        sleep(30ms);
        p.server.write(asio::buffer("x", 1));
    });
    EXPECT_EQ(p.client.read_some(asio::buffer(buf), 5s), 1u);
    writer.get();
}

TEST_F(Socket, SecondConcurrentReaderGetsAnErrorNamingTheHolder) {
    tcp_pair p;
    auto reader = spawn(spawn_options{"first-reader"}, [&] {
        std::array<char, 8> buf{};
        return p.client.read_some(asio::buffer(buf));
    });
    yield_now();  // the reader parks in read_some
    std::array<char, 8> buf{};
    try {
        (void)p.client.read_some(asio::buffer(buf));
        FAIL() << "no error";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("task 'first-reader'"));
        EXPECT_THAT(e.what(), HasSubstr("reader"));
    }
    // The error form throws too: this is misuse, not an I/O error.
    error_code ec;
    EXPECT_THROW((void)p.client.read_some(asio::buffer(buf), ec), greenfiber::error);
    p.server.write(asio::buffer("abc", 3));
    EXPECT_EQ(reader.get(), 3u);
}

TEST_F(Socket, OneReaderAndOneWriterRunAtOnce) {
    tcp_pair p;
    constexpr std::size_t total = 1 << 20;
    // The client writes 1 MiB while its own reader drains the echo: full duplex.
    auto echo = spawn([&] {
        std::vector<char> buf(8192);
        for (;;) {
            error_code ec;
            const std::size_t n = p.server.read_some(asio::buffer(buf), ec);
            if (ec == asio::error::eof) break;
            p.server.write(asio::buffer(buf.data(), n));
        }
        p.server.shutdown(asio::socket_base::shutdown_send);
    });
    auto writer = spawn([&] {
        std::vector<char> data(total, 'd');
        p.client.write(asio::buffer(data));
        p.client.shutdown(asio::socket_base::shutdown_send);
    });
    std::vector<char> buf(8192);
    std::size_t got = 0;
    for (;;) {
        error_code ec;
        got += p.client.read_some(asio::buffer(buf), ec);
        if (ec == asio::error::eof) break;
        ASSERT_FALSE(ec) << ec.message();
    }
    writer.get();
    echo.get();
    EXPECT_EQ(got, total);
}

TEST_F(Socket, CloseFromAThirdFiberWakesReaderAndWriter) {
    tcp_pair p;
    (void)fill(p.client);
    auto reader = spawn([&] {
        std::array<char, 8> buf{};
        error_code ec;
        (void)p.client.read_some(asio::buffer(buf), ec);
        return ec;
    });
    auto writer = spawn([&] {
        std::vector<char> more(1 << 20, 'y');
        error_code ec;
        (void)p.client.write(asio::buffer(more), ec);
        return ec;
    });
    sleep(10ms);
    EXPECT_FALSE(reader.done());
    EXPECT_FALSE(writer.done());
    p.client.close();
    EXPECT_EQ(reader.get(), asio::error::operation_aborted);
    EXPECT_EQ(writer.get(), asio::error::operation_aborted);
}

TEST_F(Socket, CancellingATaskCancelsOnlyItsOperation) {
    tcp_pair p;
    auto reader = spawn([&] {
        std::array<char, 8> buf{};
        return p.client.read_some(asio::buffer(buf));
    });
    yield_now();
    reader.cancel();
    EXPECT_THROW(reader.get(), cancelled_error);
    // The socket goes on: a new reader gets the data.
    p.server.write(asio::buffer("ok", 2));
    EXPECT_EQ(read_exactly(p.client, 2), "ok");
}

TEST_F(Socket, BytesReadBeforeACancellationLandsAreReturnedNotLost) {
    tcp_pair p;
    std::size_t first = 0;
    std::size_t second = 0;
    event go;
    auto reader = spawn([&] {
        std::array<char, 8> buf{};
        first = p.client.read_some(asio::buffer(buf));  // a short read: the next one waits
        go.wait();
        second = p.client.read_some(asio::buffer(buf));
        sleep(std::chrono::hours(1));  // the cancellation lands here
    });
    p.server.write(asio::buffer("a", 1));
    sleep(10ms);
    p.server.write(asio::buffer("bcd", 3));
    sleep(10ms);  // in the kernel, and seen by the reactor, before the second read starts
    go.set();
    yield_now();  // the reader starts its read, which completes at once, and parks...
    asio::post(hub::current().context(), [&] { reader.cancel(); });  // ...then this lands
    EXPECT_THROW(reader.get(), cancelled_error);
    EXPECT_EQ(first, 1u);
    EXPECT_EQ(second, 3u);
}

TEST_F(Socket, TimeoutScopeCancelsAPendingRead) {
    tcp_pair p;
    auto t = spawn([&] {
        std::array<char, 8> buf{};
        return timeout(20ms, [&] { return p.client.read_some(asio::buffer(buf)); });
    });
    EXPECT_THROW(t.get(), timeout_error);
}

TEST_F(Socket, EofAndHalfClose) {
    tcp_pair p;
    p.client.write(asio::buffer("last", 4));
    p.client.shutdown(asio::socket_base::shutdown_send);
    EXPECT_EQ(read_exactly(p.server, 4), "last");
    std::array<char, 8> buf{};
    error_code ec;
    EXPECT_EQ(p.server.read_some(asio::buffer(buf), ec), 0u);
    EXPECT_EQ(ec, asio::error::eof);
    // The other direction still works after the half-close.
    p.server.write(asio::buffer("reply", 5));
    EXPECT_EQ(read_exactly(p.client, 5), "reply");
}

TEST_F(Socket, ReadExactlyReportsEofWithThePartialCount) {
    tcp_pair p;
    p.client.write(asio::buffer("abc", 3));
    p.client.close();
    std::array<char, 10> buf{};
    error_code ec;
    EXPECT_EQ(p.server.read(asio::buffer(buf), ec), 3u);
    EXPECT_EQ(ec, asio::error::eof);
}

TEST_F(Socket, PeerResetMidReadAndMidWrite) {
    {
        tcp_pair p;
        auto reader = spawn([&] {
            std::array<char, 8> buf{};
            error_code ec;
            (void)p.server.read_some(asio::buffer(buf), ec);
            return ec;
        });
        yield_now();
        p.client.set_option(asio::socket_base::linger(true, 0));  // close sends RST
        p.client.close();
        EXPECT_EQ(reader.get(), asio::error::connection_reset);
    }
    {
        tcp_pair p;
        auto writer = spawn([&] {
            std::vector<char> data(8 << 20, 'w');
            error_code ec;
            const std::size_t n = p.server.write(asio::buffer(data), ec);
            EXPECT_LT(n, data.size());
            return ec;
        });
        sleep(20ms);
        p.client.set_option(asio::socket_base::linger(true, 0));
        p.client.close();
        const error_code ec = writer.get();
        EXPECT_TRUE(ec == asio::error::connection_reset || ec == asio::error::broken_pipe)
            << ec.message();
    }
}

TEST_F(Socket, WriteDeadlineOnASlowReaderReportsHowMuchWasWritten) {
    tcp_pair p;
    p.client.set_option(asio::socket_base::send_buffer_size(4096));
    std::vector<char> data(16 << 20, 's');
    error_code ec;
    const std::size_t n = p.client.write(asio::buffer(data), 50ms, ec);
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_GT(n, 0u);
    EXPECT_LT(n, data.size());  // bounded by the kernel's buffers: nothing queued in user space
    // The bytes reported as written all arrive.
    std::vector<char> got(n);
    EXPECT_EQ(p.server.read(asio::buffer(got)), n);
}

TEST_F(Socket, ConnectToAClosedPortIsRefused) {
    tcp::endpoint ep;
    {
        tcp::acceptor a(loopback_any());
        ep = a.local_endpoint();
    }
    tcp::socket s;
    error_code ec;
    s.connect(ep, ec);
    EXPECT_EQ(ec, asio::error::connection_refused);
    EXPECT_THROW(s.connect(ep), boost::system::system_error);
}

TEST_F(Socket, AcceptTimesOutAndCloseWakesIt) {
    tcp::acceptor a(loopback_any());
    error_code ec;
    (void)a.accept(10ms, ec);
    EXPECT_EQ(ec, asio::error::timed_out);
    auto t = spawn([&] {
        error_code e;
        (void)a.accept(e);
        return e;
    });
    yield_now();
    a.close();
    EXPECT_EQ(t.get(), asio::error::operation_aborted);
}

TEST_F(Socket, ModelsSyncReadStreamForAsioAlgorithms) {
    tcp_pair p;
    p.client.write(asio::buffer(std::string("line one\nline two\n")));
    asio::streambuf sb;
    const std::size_t n = asio::read_until(p.server, sb, '\n');
    std::string line(asio::buffers_begin(sb.data()), asio::buffers_begin(sb.data()) + n);
    EXPECT_EQ(line, "line one\n");
    sb.consume(n);
    (void)asio::read_until(p.server, sb, '\n');
    std::string rest(asio::buffers_begin(sb.data()), asio::buffers_end(sb.data()));
    EXPECT_EQ(rest, "line two\n");
    EXPECT_EQ(asio::write(p.server, asio::buffer("xy", 2)), 2u);
    EXPECT_EQ(read_exactly(p.client, 2), "xy");
}

TEST_F(Socket, UseFromAnotherThreadIsAnError) {
    tcp_pair p;
    std::string message;
    std::thread other([&] {
        std::array<char, 4> buf{};
        try {
            (void)p.client.read_some(asio::buffer(buf));
        } catch (const greenfiber::error& e) {
            message = e.what();
        }
    });
    other.join();
    EXPECT_THAT(message, HasSubstr("belongs to the thread that created it"));
}

TEST_F(Socket, ManyConnectionsOpenAndCloseWithoutLeakingDescriptors) {
    tcp::acceptor a(loopback_any());
    const int before = open_fds();
    auto server = spawn([&] {
        for (int i = 0; i < 2000; ++i) {
            tcp::socket s = a.accept();
            std::array<char, 1> b{};
            error_code ec;
            (void)s.read_some(asio::buffer(b), ec);
        }
    });
    for (int i = 0; i < 2000; ++i) {
        tcp::socket c;
        c.connect(a.local_endpoint());
        c.write(asio::buffer("z", 1));
    }
    server.get();
    EXPECT_EQ(open_fds(), before);
}

// ---------------------------------------------------------------- UDP

TEST_F(Udp, SendToAndReceiveFrom) {
    udp::socket a(udp::endpoint(asio::ip::address_v4::loopback(), 0));
    udp::socket b(udp::endpoint(asio::ip::address_v4::loopback(), 0));
    auto t = spawn([&] {
        std::array<char, 16> buf{};
        udp::endpoint from;
        const std::size_t n = b.receive_from(asio::buffer(buf), from);
        b.send_to(asio::buffer(buf.data(), n), from);
        return std::string(buf.data(), n);
    });
    a.send_to(asio::buffer("datagram", 8), b.local_endpoint());
    std::array<char, 16> buf{};
    udp::endpoint from;
    EXPECT_EQ(a.receive_from(asio::buffer(buf), from, 5s), 8u);
    EXPECT_EQ(from, b.local_endpoint());
    EXPECT_EQ(t.get(), "datagram");
    error_code ec;
    (void)a.receive_from(asio::buffer(buf), from, 10ms, ec);
    EXPECT_EQ(ec, asio::error::timed_out);
}

// ---------------------------------------------------------------- Unix

TEST_F(UnixSocket, PairAndListener) {
    auto [x, y] = unix_stream::pair();
    x.write(asio::buffer("unix", 4));
    std::array<char, 4> buf{};
    EXPECT_EQ(y.read(asio::buffer(buf)), 4u);
    EXPECT_EQ(std::string(buf.data(), 4), "unix");

    const std::string path = "/tmp/greenfiber-test-" + std::to_string(::getpid()) + ".sock";
    ::unlink(path.c_str());
    unix_stream::acceptor a(unix_stream::endpoint(path), false);
    auto t = spawn([&] {
        unix_stream::socket s = a.accept();
        s.write(asio::buffer("hello", 5));
    });
    unix_stream::socket c;
    c.connect(unix_stream::endpoint(path));
    std::array<char, 5> got{};
    EXPECT_EQ(c.read(asio::buffer(got)), 5u);
    t.get();
    ::unlink(path.c_str());
}

// ---------------------------------------------------------------- fd_watch

TEST_F(FdWatch, WaitsForAPipe) {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    auto t = spawn([&] {
        wait_readable(fds[0], 5s);
        char c = 0;
        EXPECT_EQ(::read(fds[0], &c, 1), 1);
        return c;
    });
    yield_now();
    EXPECT_FALSE(t.done());
    ASSERT_EQ(::write(fds[1], "p", 1), 1);
    EXPECT_EQ(t.get(), 'p');
    {
        fd_watch w(fds[0]);
        error_code ec;
        w.wait_readable(10ms, ec);
        EXPECT_EQ(ec, asio::error::timed_out);
    }
    {
        fd_watch w(fds[1]);
        w.wait_writable(5s);  // an empty pipe is writable at once
    }
    // The descriptors stay open: the watcher never closes them.
    EXPECT_NE(::fcntl(fds[0], F_GETFD), -1);
    ::close(fds[0]);
    ::close(fds[1]);
}

}  // namespace
