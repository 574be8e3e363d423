#include "greenfiber/stream.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "greenfiber/combinators.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// Runtime conditions of the data, not misuse: catchable as I/O errors, never as
// greenfiber::error.
static_assert(std::is_base_of_v<boost::system::system_error, incomplete_read_error>);
static_assert(std::is_base_of_v<boost::system::system_error, limit_overrun_error>);
static_assert(std::is_base_of_v<std::runtime_error, incomplete_read_error>);
static_assert(!std::is_base_of_v<greenfiber::error, incomplete_read_error>);
static_assert(!std::is_base_of_v<greenfiber::error, limit_overrun_error>);
static_assert(std::is_nothrow_copy_constructible_v<incomplete_read_error>);
static_assert(readable_stream<tcp::socket> && writable_stream<tcp::socket>);
static_assert(readable_stream<unix_stream::socket> && writable_stream<unix_stream::socket>);
static_assert(!readable_stream<udp::socket>);
static_assert(std::is_nothrow_move_constructible_v<stream_reader>);
static_assert(std::is_nothrow_move_constructible_v<stream_writer>);

using greenfiber::testing::tcp_pair;

// A small send buffer on `a` (64 KiB, which Linux doubles), so that a peer that does not read
// pushes back on a writer on `a` after a few hundred KiB: the receiver's window stays at its
// initial size while nothing is read, and the sender's buffer would otherwise grow to
// tcp_wmem's maximum. Not smaller: with buffers of a segment or two, loopback crawls at one
// segment per delayed ACK.
void shrink_a_to_b(tcp_pair& p) {
    p.a.set_option(asio::socket_base::send_buffer_size(64 * 1024));
}

// A connected Unix stream pair.
struct unix_pair {
    unix_stream::socket a;
    unix_stream::socket b;
    unix_pair() {
        auto [x, y] = unix_stream::pair();
        a = std::move(x);
        b = std::move(y);
    }
};

class Stream : public greenfiber::testing::io_checked {};

template <class Pair>
class StreamPair : public greenfiber::testing::io_checked {};

struct pair_names {
    template <class T>
    static std::string GetName(int) {
        return std::is_same_v<T, tcp_pair> ? "Tcp" : "Unix";
    }
};
using pair_types = ::testing::Types<tcp_pair, unix_pair>;
TYPED_TEST_SUITE(StreamPair, pair_types, pair_names);

// Suspends the calling fiber until `pred()` holds (bounded: fails after 5 s).
template <class Pred>
void wait_for(Pred pred) {
    const auto give_up = std::chrono::steady_clock::now() + 5s;
    while (!pred()) {
        ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "condition never held";
        sleep(1ms);
    }
}

// Writes each piece in turn and, but for the last, waits until `in` has buffered every
// byte sent so far (the reader must not consume them meanwhile), so that the reader sees
// the pieces in separate reads.
template <class Socket>
void send_in_pieces(Socket& s, const stream_reader& in, const std::vector<std::string>& pieces) {
    std::size_t sent = 0;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        s.write(asio::buffer(pieces[i]));
        sent += pieces[i].size();
        if (i + 1 < pieces.size()) wait_for([&] { return in.buffer_size() == sent; });
    }
}

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
    return s;
}

// ---------------------------------------------------------------- reader, both socket types

TYPED_TEST(StreamPair, ReadServesTheBufferFirstThenWaitsForAtLeastOneByte) {
    TypeParam p;
    stream_reader in(p.b);
    p.a.write(asio::buffer(std::string("abcdef")));
    EXPECT_EQ(in.read(2), "ab");
    EXPECT_EQ(in.buffer_size(), 4u);
    EXPECT_EQ(in.read(100), "cdef");  // the buffer, without waiting for more
    EXPECT_EQ(in.read(0), "");
    auto late = spawn([&] {
        sleep(5ms);
        p.a.write(asio::buffer("g", 1));
    });
    EXPECT_EQ(in.read(100, 5s), "g");
    late.get();
    EXPECT_FALSE(in.at_eof());
}

TYPED_TEST(StreamPair, ReadAllReadsUntilTheEndOfTheStream) {
    TypeParam p;
    stream_reader in(p.b);
    auto writer = spawn([&] {
        for (const char* piece : {"first ", "second ", "third"}) {
            p.a.write(asio::buffer(std::string(piece)));
            sleep(2ms);
        }
        p.a.shutdown(asio::socket_base::shutdown_send);
    });
    EXPECT_EQ(in.read(), "first second third");
    writer.get();
    EXPECT_TRUE(in.at_eof());
    EXPECT_EQ(in.read(5), "");
    EXPECT_EQ(in.read(-1), "");
    EXPECT_EQ(in.readline(), "");
}

TYPED_TEST(StreamPair, ReadlineReturnsThePartialLastLineAtEof) {
    TypeParam p;
    stream_reader in(p.b);
    p.a.write(asio::buffer(std::string("one\ntwo\nthr")));
    p.a.shutdown(asio::socket_base::shutdown_send);
    EXPECT_EQ(in.readline(), "one\n");
    EXPECT_FALSE(in.at_eof());
    EXPECT_EQ(in.readline(), "two\n");
    EXPECT_FALSE(in.at_eof());  // "thr" is still buffered
    EXPECT_EQ(in.readline(), "thr");
    EXPECT_TRUE(in.at_eof());
    EXPECT_EQ(in.readline(), "");
    EXPECT_TRUE(in.at_eof());
}

TYPED_TEST(StreamPair, ReadexactlyGathersManySmallWrites) {
    TypeParam p;
    stream_reader in(p.b);
    auto writer = spawn([&] {
        for (char c : std::string("0123456789")) {
            p.a.write(asio::buffer(&c, 1));
            yield_now();
        }
    });
    EXPECT_EQ(in.readexactly(4), "0123");
    EXPECT_EQ(in.readexactly(6), "456789");
    EXPECT_EQ(in.readexactly(0), "");
    writer.get();
}

TYPED_TEST(StreamPair, ReadexactlyAtEofThrowsWithThePartialBytes) {
    TypeParam p;
    stream_reader in(p.b);
    p.a.write(asio::buffer(std::string("abc")));
    p.a.shutdown(asio::socket_base::shutdown_send);
    try {
        (void)in.readexactly(10);
        FAIL() << "no incomplete_read_error";
    } catch (const incomplete_read_error& e) {
        EXPECT_EQ(e.partial(), "abc");
        EXPECT_EQ(e.expected(), 10u);
        EXPECT_EQ(e.code(), asio::error::eof);
        EXPECT_THAT(e.what(), HasSubstr("3 bytes read on a total of 10 expected bytes"));
    }
    // The partial bytes were handed over: nothing is left.
    EXPECT_TRUE(in.at_eof());
    EXPECT_EQ(in.buffer_size(), 0u);
}

TYPED_TEST(StreamPair, ReaduntilFindsASeparatorSplitAcrossReads) {
    TypeParam p;
    stream_reader in(p.b);
    auto first = spawn([&] { send_in_pieces(p.a, in, {"head\r", "\n"}); });
    EXPECT_EQ(in.readuntil("\r\n"), "head\r\n");
    first.get();
    auto second = spawn([&] { send_in_pieces(p.a, in, {"body<", "E", "N", "D>tail"}); });
    EXPECT_EQ(in.readuntil("<END>"), "body<END>");
    second.get();
    EXPECT_EQ(in.read(4), "tail");
}

TYPED_TEST(StreamPair, EchoThroughAReaderAndAWriter) {
    TypeParam p;
    auto server = spawn([&] {
        stream_reader in(p.b);
        stream_writer out(p.b);
        for (;;) {
            std::string line = in.readline(5s);
            if (line.empty()) break;
            std::transform(line.begin(), line.end(), line.begin(),
                           [](char c) { return c == 'x' ? 'y' : c; });
            out.write(line);
            out.drain(5s);
        }
        out.write_eof();
        return in.at_eof();
    });
    stream_reader in(p.a);
    stream_writer out(p.a);
    for (int i = 0; i < 100; ++i) {
        out.write("x" + std::to_string(i));
        out.write("x\n");
        out.drain(5s);
        EXPECT_EQ(in.readline(5s), "y" + std::to_string(i) + "y\n");
    }
    out.write_eof();
    EXPECT_EQ(in.readline(5s), "");
    EXPECT_TRUE(in.at_eof());
    EXPECT_TRUE(server.get());
}

TYPED_TEST(StreamPair, SlowReaderBlocksDrainWithBoundedMemory) {
    TypeParam p;
    if constexpr (std::is_same_v<TypeParam, tcp_pair>) shrink_a_to_b(p);
    constexpr std::size_t chunk = 64 * 1024;
    constexpr std::size_t chunks = 128;  // 8 MiB: far more than the kernel buffers hold
    const std::string data = pattern(chunk * chunks);
    stream_writer out(p.a);
    std::size_t drained = 0;
    std::size_t most_buffered = 0;
    auto producer = spawn([&] {
        for (std::size_t i = 0; i < chunks; ++i) {
            out.write(std::string_view(data).substr(i * chunk, chunk));
            most_buffered = std::max(most_buffered, out.buffer_size());
            out.drain();
            ++drained;
        }
    });
    sleep(30ms);  // the peer reads nothing meanwhile
    EXPECT_FALSE(producer.done()) << "drain() did not wait for the slow reader";
    EXPECT_LT(drained, chunks);
    EXPECT_LE(out.buffer_size(), chunk);  // one write held in user space, not eight MiB
    // The peer reads slowly, a little at a time: the producer follows its pace.
    stream_reader in(p.b);
    std::string got;
    while (got.size() < data.size()) {
        got += in.read(256 * 1024, 5s);
        if (got.size() < 1024 * 1024) yield_now();
    }
    producer.get();
    EXPECT_EQ(drained, chunks);
    EXPECT_LE(most_buffered, chunk);
    EXPECT_TRUE(got == data) << "the bytes arrived out of order or changed";
}

// ---------------------------------------------------------------- reader, TCP

TEST_F(Stream, ReadlineOverrunLeavesTheDataReadable) {
    tcp_pair p;
    stream_reader in(p.b, 8);
    EXPECT_EQ(in.limit(), 8u);
    p.a.write(asio::buffer(std::string("abcdefghij\n1234567\n")));
    std::size_t consumed = 0;
    try {
        (void)in.readline(5s);
        FAIL() << "no limit_overrun_error";
    } catch (const limit_overrun_error& e) {
        EXPECT_EQ(e.code(), asio::error::not_found);
        EXPECT_THAT(e.what(), HasSubstr("limit of 8 bytes"));
        consumed = e.consumed();
    }
    EXPECT_EQ(consumed, 8u);
    EXPECT_EQ(in.buffer_size(), 8u);  // never more than the limit
    // The caller decides: here it skips the overlong part and goes on.
    EXPECT_EQ(in.read(static_cast<std::ptrdiff_t>(consumed)), "abcdefgh");
    EXPECT_EQ(in.readline(5s), "ij\n");
    // A line of exactly the limit, '\n' included, fits.
    EXPECT_EQ(in.readline(5s), "1234567\n");
}

TEST_F(Stream, ReaduntilOverrunNeverCountsAPossibleSeparatorStartAsConsumed) {
    tcp_pair p;
    stream_reader in(p.b, 8);
    p.a.write(asio::buffer(std::string("abcdefg-")));
    wait_for([&] { return p.b.available() == 8; });
    error_code ec;
    EXPECT_EQ(in.readuntil("--", 5s, ec), "");
    EXPECT_EQ(ec, asio::error::not_found);
    EXPECT_EQ(in.buffer_size(), 8u);
    try {
        (void)in.readuntil("--", 5s);
        FAIL() << "no limit_overrun_error";
    } catch (const limit_overrun_error& e) {
        EXPECT_EQ(e.consumed(), 7u);  // the last '-' may start "--": asyncio's count
    }
    EXPECT_EQ(in.read(7), "abcdefg");
    p.a.write(asio::buffer(std::string("-x")));
    EXPECT_EQ(in.readuntil("--", 5s), "--");
    EXPECT_EQ(in.read(1), "x");
}

TEST_F(Stream, ReadlineNeverBuffersMoreThanTheLimit) {
    tcp_pair p;
    shrink_a_to_b(p);
    stream_reader in(p.b, 1024);
    // The peer sends 16 MiB without an end of line; it must stay blocked in the kernel,
    // not move into the reader's memory.
    auto flood = spawn([&] {
        const std::string data(16 << 20, 'z');
        error_code ec;
        (void)p.a.write(asio::buffer(data), ec);
        return ec;
    });
    EXPECT_THROW((void)in.readline(5s), limit_overrun_error);
    EXPECT_LE(in.buffer_size(), 1024u);
    error_code ec;
    EXPECT_EQ(in.readuntil("\r\n", 5s, ec), "");
    EXPECT_EQ(ec, asio::error::not_found);
    EXPECT_EQ(in.readline(5s, ec), "");
    EXPECT_EQ(ec, asio::error::not_found);
    EXPECT_LE(in.buffer_size(), 1024u);
    EXPECT_FALSE(flood.done());
    // Closing with unread data resets the connection: the flood ends with an error.
    p.b.close();
    const error_code flood_ec = flood.get();
    EXPECT_TRUE(flood_ec == asio::error::connection_reset || flood_ec == asio::error::broken_pipe)
        << flood_ec.message();
}

TEST_F(Stream, ReadexactlyBeyondTheLimitBuffersWhatWasAskedFor) {
    tcp_pair p;
    stream_reader in(p.b, 1024);
    const std::string data = pattern(300000);
    auto writer = spawn([&] { p.a.write(asio::buffer(data)); });
    EXPECT_TRUE(in.readexactly(data.size(), 5s) == data);
    writer.get();
    EXPECT_EQ(in.buffer_size(), 0u);
}

// ---------------------------------------------------------------- memory a peer controls

// The process's peak resident memory in KiB. A delta of it bounds what a call held at its
// worst, however briefly; the margins below are wide (tens of MiB against a GiB).
long peak_rss_kib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

constexpr std::size_t one_gib = std::size_t{1} << 30;
constexpr long bounded_kib = 64 * 1024;  // 64 MiB: far below 1 GiB, far above a few chunks

TEST_F(Stream, ReadexactlyOfAHugeCountHoldsOnlyTheBytesThatArrived) {
    // A length prefix from the peer says 1 GiB; 4 bytes follow, then the end of the stream.
    tcp_pair p;
    stream_reader in(p.b);
    p.a.write(asio::buffer(std::string("abcd")));
    p.a.shutdown(asio::socket_base::shutdown_send);
    const long before = peak_rss_kib();
    try {
        (void)in.readexactly(one_gib, 5s);
        FAIL() << "no incomplete_read_error";
    } catch (const incomplete_read_error& e) {
        EXPECT_EQ(e.partial(), "abcd");
        EXPECT_EQ(e.expected(), one_gib);
    }
    EXPECT_LT(peak_rss_kib() - before, bounded_kib);
    EXPECT_TRUE(in.at_eof());
}

TEST_F(Stream, ReadexactlyOfAHugeCountTimesOutWhileTheHubRuns) {
    // The peer sends nothing: the read must park at once (not first fill a GiB of zeros
    // with the hub stalled) and end with its deadline; meanwhile other fibers run.
    tcp_pair p;
    stream_reader in(p.b);
    std::size_t ticks = 0;
    bool done = false;
    auto ticker = spawn([&] {
        while (!done) {
            sleep(1ms);
            ++ticks;
        }
    });
    yield_now();  // the ticker is parked in its sleep
    const long before = peak_rss_kib();
    const std::size_t ticks_before = ticks;
    error_code ec;
    EXPECT_EQ(in.readexactly(one_gib, 200ms, ec), "");
    const std::size_t ticks_during = ticks - ticks_before;
    done = true;
    ticker.get();
    EXPECT_EQ(ec, asio::error::timed_out);
    // A sleep of 1 ms against a deadline of 200 ms: a hub that ran ticks far more than
    // this; one stalled by the read ticks once at most, after the deadline has passed.
    EXPECT_GE(ticks_during, 5u);
    EXPECT_LT(peak_rss_kib() - before, bounded_kib);
    EXPECT_EQ(in.buffer_size(), 0u);
}

TEST_F(Stream, ReadexactlyAssemblesManySmallPieces) {
    // The buffer grows a little at a time, across reads, beyond the limit; every byte
    // comes out once and in order.
    tcp_pair p;
    stream_reader in(p.b, 1024);
    std::size_t total = 0;
    for (std::size_t i = 0; i < 300; ++i) total += 1 + (i * 37) % 900;
    const std::string all = pattern(total);
    std::vector<std::string> pieces;
    for (std::size_t i = 0, offset = 0; i < 300; ++i) {
        const std::size_t len = 1 + (i * 37) % 900;
        pieces.push_back(all.substr(offset, len));
        offset += len;
    }
    pieces.back() += "tail";  // not asked for: stays buffered
    auto writer = spawn([&] { send_in_pieces(p.a, in, pieces); });
    EXPECT_TRUE(in.readexactly(total, 5s) == all);
    writer.get();
    EXPECT_EQ(in.readexactly(4, 5s), "tail");
    EXPECT_EQ(in.buffer_size(), 0u);
}

TEST_F(Stream, ReadexactlyOfAFastLargeStreamIsExact) {
    // Megabytes that arrive as fast as the reader reads them: the buffer grows many times
    // and the call yields along the way; the bytes are exact and nothing is left over.
    unix_pair p;
    stream_reader in(p.b);
    const std::string data = pattern(6 << 20);
    auto writer = spawn([&] { p.a.write(asio::buffer(data)); });
    EXPECT_TRUE(in.readexactly(data.size(), 5s) == data);
    writer.get();
    EXPECT_EQ(in.buffer_size(), 0u);
}

TEST_F(Stream, ReadOfAHugeCountWithAHugeLimitHoldsOnlyTheBytesThatArrived) {
    // read(n) and read(-1) with a limit the application set large: neither the count nor
    // the limit sizes the buffer ahead of the data.
    tcp_pair p;
    stream_reader in(p.b, one_gib);
    p.a.write(asio::buffer(std::string("abcd")));
    const long before = peak_rss_kib();
    EXPECT_EQ(in.read(static_cast<std::ptrdiff_t>(one_gib), 5s), "abcd");
    p.a.write(asio::buffer(std::string("efgh")));
    p.a.shutdown(asio::socket_base::shutdown_send);
    EXPECT_EQ(in.read(-1, 5s), "efgh");
    EXPECT_LT(peak_rss_kib() - before, bounded_kib);
    EXPECT_TRUE(in.at_eof());
}

TEST_F(Stream, ReaduntilAgainstAnEndlessPeerOverrunsWithBoundedMemory) {
    // The peer never stops sending and never sends the separator.
    tcp_pair p;
    shrink_a_to_b(p);
    stream_reader in(p.b, 64 * 1024);
    auto flood = spawn([&] {
        const std::string chunk(64 * 1024, 'z');
        error_code ec;
        while (!ec) (void)p.a.write(asio::buffer(chunk), ec);
        return ec;
    });
    const long before = peak_rss_kib();
    try {
        (void)in.readuntil("\r\n\r\n", 5s);
        FAIL() << "no limit_overrun_error";
    } catch (const limit_overrun_error& e) {
        EXPECT_EQ(e.code(), asio::error::not_found);
        EXPECT_EQ(e.consumed(), 64u * 1024 - 3);  // the last 3 bytes could start "\r\n\r\n"
    }
    EXPECT_EQ(in.buffer_size(), 64u * 1024);
    EXPECT_LT(peak_rss_kib() - before, bounded_kib);
    EXPECT_FALSE(flood.done());
    p.b.close();
    const error_code flood_ec = flood.get();
    EXPECT_TRUE(flood_ec == asio::error::connection_reset || flood_ec == asio::error::broken_pipe)
        << flood_ec.message();
}

// A stream whose data is always there: read_some fills the buffer and returns without
// switching, as a socket does while a fast peer keeps its receive queue full.
struct endless_stream {
    std::size_t read_some(const asio::mutable_buffer& b, deadline, error_code& ec) {
        ec.clear();
        std::memset(b.data(), 'x', b.size());
        return b.size();
    }
};
static_assert(readable_stream<endless_stream>);

TEST_F(Stream, ReadexactlyFromAStreamThatNeverWaitsLetsOtherFibersRun) {
    endless_stream s;
    stream_reader in(s);
    std::size_t runs = 0;
    bool done = false;
    auto other = spawn([&] {
        while (!done) {
            ++runs;
            yield_now();
        }
    });
    yield_now();  // `other` has started and is ready again
    const std::size_t runs_before = runs;
    const std::size_t n = std::size_t{16} << 20;
    EXPECT_TRUE(in.readexactly(n, 5s) == std::string(n, 'x'));
    const std::size_t runs_during = runs - runs_before;
    done = true;
    other.get();
    EXPECT_GE(runs_during, 4u);  // one turn per MiB read, give or take the first
}

TEST_F(Stream, ReadsFromAStreamThatNeverWaitsStillEndAtTheirDeadline) {
    // The deadline bounds the whole call even when no read ever waits; the bytes read
    // stay buffered.
    endless_stream s;
    stream_reader in(s);
    error_code ec;
    const std::size_t n = std::size_t{64} << 20;
    EXPECT_TRUE(in.readexactly(n, std::chrono::steady_clock::now(), ec).empty());
    EXPECT_EQ(ec, asio::error::timed_out);
    const std::size_t kept = in.buffer_size();
    EXPECT_GT(kept, 0u);
    EXPECT_LT(kept, n);
    EXPECT_TRUE(in.read(-1, std::chrono::steady_clock::now(), ec).empty());
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_GT(in.buffer_size(), kept);
    EXPECT_EQ(in.read(4, 5s), "xxxx");  // served from the buffer
    // A line that the application's large limit allows: no overrun yet, but the deadline.
    stream_reader lines(s, n);
    EXPECT_TRUE(lines.readline(std::chrono::steady_clock::now(), ec).empty());
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_GT(lines.buffer_size(), 0u);
    EXPECT_LT(lines.buffer_size(), n);
}

TEST_F(Stream, ErrorCodeFormsReportEofWithThePartialBytes) {
    tcp_pair p;
    stream_reader in(p.b);
    p.a.write(asio::buffer(std::string("xyz")));
    p.a.shutdown(asio::socket_base::shutdown_send);
    error_code ec;
    EXPECT_EQ(in.readexactly(5, ec), "xyz");
    EXPECT_EQ(ec, asio::error::eof);
    EXPECT_EQ(in.readexactly(1, 5s, ec), "");
    EXPECT_EQ(ec, asio::error::eof);
    EXPECT_EQ(in.read(4, ec), "");  // the end of the stream is not an error for read()
    EXPECT_FALSE(ec);
    EXPECT_EQ(in.readline(ec), "");
    EXPECT_FALSE(ec);
}

TEST_F(Stream, ReaduntilAtEofThrowsWithThePartialBytesAndNoExpectedCount) {
    tcp_pair p;
    stream_reader in(p.b);
    p.a.write(asio::buffer(std::string("abc-")));
    p.a.shutdown(asio::socket_base::shutdown_send);
    try {
        (void)in.readuntil("--", 5s);
        FAIL() << "no incomplete_read_error";
    } catch (const incomplete_read_error& e) {
        EXPECT_EQ(e.partial(), "abc-");
        EXPECT_EQ(e.expected(), std::nullopt);
        EXPECT_THAT(e.what(), HasSubstr("undefined expected bytes"));
    }
    EXPECT_TRUE(in.at_eof());
    error_code ec;
    EXPECT_EQ(in.readuntil("--", ec), "");
    EXPECT_EQ(ec, asio::error::eof);
}

TEST_F(Stream, DeadlinesTimeOutAndKeepTheBytesRead) {
    tcp_pair p;
    stream_reader in(p.b);
    p.a.write(asio::buffer(std::string("par")));
    try {
        (void)in.readline(30ms);
        FAIL() << "no timeout";
    } catch (const boost::system::system_error& e) {
        EXPECT_EQ(e.code(), asio::error::timed_out);
        EXPECT_THAT(e.what(), HasSubstr("stream_reader.readline()"));
    }
    EXPECT_EQ(in.buffer_size(), 3u);
    error_code ec;
    EXPECT_EQ(in.readexactly(5, 10ms, ec), "");
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_EQ(in.readuntil("\n", std::chrono::steady_clock::now() + 10ms, ec), "");
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_EQ(in.read(-1, 10ms, ec), "");
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_EQ(in.buffer_size(), 3u);
    p.a.write(asio::buffer(std::string("tial\n")));
    EXPECT_EQ(in.readline(5s), "partial\n");
    // An empty buffer times out in read() too.
    EXPECT_EQ(in.read(10, 10ms, ec), "");
    EXPECT_EQ(ec, asio::error::timed_out);
}

TEST_F(Stream, SocketDefaultTimeoutAppliesWhenNoDeadlineIsGiven) {
    tcp_pair p;
    p.b.set_timeout(20ms);
    stream_reader in(p.b);
    error_code ec;
    EXPECT_EQ(in.readline(ec), "");
    EXPECT_EQ(ec, asio::error::timed_out);
}

TEST_F(Stream, CancellingAReadKeepsTheBytesItRead) {
    tcp_pair p;
    stream_reader in(p.b);
    auto reader = spawn([&] { return in.readline(); });
    p.a.write(asio::buffer(std::string("abc")));
    wait_for([&] { return in.buffer_size() == 3; });
    reader.cancel();
    EXPECT_THROW(reader.get(), cancelled_error);
    p.a.write(asio::buffer(std::string("def\n")));
    EXPECT_EQ(in.readline(5s), "abcdef\n");
}

TEST_F(Stream, TimeoutScopeEndsAReadline) {
    tcp_pair p;
    stream_reader in(p.b);
    auto t = spawn([&] { return timeout(20ms, [&] { return in.readline(); }); });
    EXPECT_THROW(t.get(), timeout_error);
}

TEST_F(Stream, SecondConcurrentReaderIsMisuse) {
    tcp_pair p;
    stream_reader in(p.b);
    auto reader = spawn([&] { return in.readline(); });
    yield_now();  // the reader parks
    try {
        (void)in.read(1);
        FAIL() << "no error";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("another fiber is already reading"));
    }
    error_code ec;
    EXPECT_THROW((void)in.readexactly(1, ec), greenfiber::error);  // misuse throws in every form
    p.a.write(asio::buffer(std::string("x\n")));
    EXPECT_EQ(reader.get(), "x\n");
}

TEST_F(Stream, PeerResetSurfacesOnRead) {
    tcp_pair p;
    stream_reader in(p.b);
    auto reader = spawn([&] {
        error_code ec;
        (void)in.readline(5s, ec);
        return ec;
    });
    yield_now();
    p.a.set_option(asio::socket_base::linger(true, 0));  // close sends RST
    p.a.close();
    EXPECT_EQ(reader.get(), asio::error::connection_reset);
}

TEST_F(Stream, InvalidArgumentsAreMisuse) {
    tcp_pair p;
    EXPECT_THROW(stream_reader(p.b, 0), greenfiber::error);
    stream_reader in(p.b, 4);
    EXPECT_THROW((void)in.readuntil(""), greenfiber::error);
    try {
        (void)in.readuntil("longer");
        FAIL() << "no error";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("longer than the limit"));
    }
}

TEST_F(Stream, UseFromAnotherThreadIsMisuse) {
    tcp_pair p;
    stream_reader in(p.b);
    stream_writer out(p.a);
    std::vector<std::string> messages;
    std::thread other([&] {
        try {
            (void)in.read(1);
        } catch (const greenfiber::error& e) {
            messages.emplace_back(e.what());
        }
        try {
            out.write("x");
        } catch (const greenfiber::error& e) {
            messages.emplace_back(e.what());
        }
    });
    other.join();
    ASSERT_EQ(messages.size(), 2u);
    EXPECT_THAT(messages[0], HasSubstr("belongs to the thread that created it"));
    EXPECT_THAT(messages[1], HasSubstr("belongs to the thread that created it"));
    EXPECT_EQ(out.buffer_size(), 0u);
}

TEST_F(Stream, MovedReaderKeepsItsBuffer) {
    tcp_pair p;
    stream_reader in(p.b);
    p.a.write(asio::buffer(std::string("one\ntwo\n")));
    EXPECT_EQ(in.readline(5s), "one\n");
    stream_reader moved(std::move(in));
    EXPECT_EQ(moved.readline(5s), "two\n");
    EXPECT_THROW((void)in.readline(), greenfiber::error);  // NOLINT: use after move on purpose
}

// ---------------------------------------------------------------- writer, TCP

TEST_F(Stream, WriteBuffersUntilDrain) {
    tcp_pair p;
    stream_writer out(p.a);
    out.write("abc");
    out.writelines(std::vector<std::string>{"de", "f"});
    EXPECT_EQ(out.buffer_size(), 6u);
    std::array<char, 8> buf{};
    error_code ec;
    (void)p.b.read_some(asio::buffer(buf), 20ms, ec);
    EXPECT_EQ(ec, asio::error::timed_out) << "write() touched the socket";
    out.drain();
    EXPECT_EQ(out.buffer_size(), 0u);
    out.drain();  // nothing buffered: returns at once
    stream_reader in(p.b);
    EXPECT_EQ(in.readexactly(6, 5s), "abcdef");
}

TEST_F(Stream, DrainTimeoutKeepsTheUnsentBytesForTheNextDrain) {
    tcp_pair p;
    shrink_a_to_b(p);
    stream_writer out(p.a);
    const std::string data = pattern(4 << 20);
    out.write(data);
    error_code ec;
    out.drain(30ms, ec);
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_GT(out.buffer_size(), 0u);
    EXPECT_LT(out.buffer_size(), data.size());
    try {
        out.drain(10ms);
        FAIL() << "no timeout";
    } catch (const boost::system::system_error& e) {
        EXPECT_EQ(e.code(), asio::error::timed_out);
    }
    // A reader appears; close() writes the rest before closing, in order.
    auto reader = spawn([&] {
        stream_reader in(p.b);
        return in.read();
    });
    out.close(5s);
    EXPECT_TRUE(reader.get() == data);
    EXPECT_TRUE(out.is_closing());
}

TEST_F(Stream, CancellingADrainKeepsTheUnsentBytes) {
    tcp_pair p;
    shrink_a_to_b(p);
    stream_writer out(p.a);
    const std::string data = pattern(4 << 20);
    out.write(data);
    auto drainer = spawn([&] { out.drain(); });
    sleep(10ms);
    ASSERT_FALSE(drainer.done());
    drainer.cancel();
    EXPECT_THROW(drainer.get(), cancelled_error);
    EXPECT_GT(out.buffer_size(), 0u);
    auto reader = spawn([&] {
        stream_reader in(p.b);
        return in.readexactly(data.size(), 5s);
    });
    out.drain(5s);
    EXPECT_TRUE(reader.get() == data);
}

TEST_F(Stream, PeerResetSurfacesOnDrain) {
    tcp_pair p;
    stream_writer out(p.a);
    out.write("hello");
    out.drain(5s);
    p.b.set_option(asio::socket_base::linger(true, 0));  // close sends RST
    p.b.close();
    error_code ec;
    for (int i = 0; i < 1000 && !ec; ++i) {
        out.write(std::string(1024, 'r'));
        out.drain(5s, ec);
        if (!ec) sleep(1ms);
    }
    ASSERT_TRUE(ec == asio::error::connection_reset || ec == asio::error::broken_pipe)
        << ec.message();
    EXPECT_EQ(out.buffer_size(), 0u);  // the undeliverable bytes were dropped, and said so
    try {
        out.drain();
        FAIL() << "a broken writer drained";
    } catch (const boost::system::system_error& e) {
        EXPECT_EQ(e.code(), ec);
        EXPECT_THAT(e.what(), HasSubstr("bytes written were never delivered"));
    }
    // Every later write is told too: nothing disappears without an error.
    try {
        out.write("more");
        FAIL() << "a broken writer accepted bytes";
    } catch (const boost::system::system_error& e) {
        EXPECT_EQ(e.code(), ec);
    }
    error_code eof_ec;
    out.write_eof(eof_ec);
    EXPECT_EQ(eof_ec, ec);
    out.close();  // closing a broken writer just closes
    EXPECT_FALSE(p.a.is_open());
}

TEST_F(Stream, WriteEofHalfClosesAfterTheBufferedBytes) {
    tcp_pair p;
    stream_writer out(p.a);
    out.write("bye");
    out.write_eof(5s);
    out.write_eof();  // once is enough; again is harmless
    stream_reader in(p.b);
    EXPECT_EQ(in.read(), "bye");
    EXPECT_TRUE(in.at_eof());
    EXPECT_THROW(out.write("more"), greenfiber::error);
    // The other direction still works.
    stream_writer back(p.b);
    back.write("back");
    back.drain();
    stream_reader reply(p.a);
    EXPECT_EQ(reply.readexactly(4, 5s), "back");
}

TEST_F(Stream, CloseFlushesThenClosesAndWakesAReaderOfTheSameSocket) {
    tcp_pair p;
    auto peer = spawn([&] {
        stream_reader in(p.b);
        return in.read();
    });
    stream_reader in(p.a);
    stream_writer out(p.a);
    auto own_reader = spawn([&] {
        error_code ec;
        (void)in.readline(5s, ec);
        return ec;
    });
    yield_now();
    out.write("last words");
    out.close();
    EXPECT_EQ(peer.get(), "last words");
    EXPECT_EQ(own_reader.get(), asio::error::operation_aborted);
    EXPECT_TRUE(out.is_closing());
    EXPECT_FALSE(p.a.is_open());
    out.close();  // idempotent
    EXPECT_THROW(out.write("x"), greenfiber::error);
    EXPECT_THROW(out.write_eof(), greenfiber::error);
}

TEST_F(Stream, ConcurrentDrainsEachReturnOnceTheirBytesAreOut) {
    tcp_pair p;
    shrink_a_to_b(p);
    stream_writer out(p.a);
    const std::string first(1 << 20, 'a');
    const std::string second(1 << 20, 'b');
    std::vector<int> finished;
    auto t1 = spawn([&] {
        out.write(first);
        out.drain(5s);
        finished.push_back(1);
    });
    auto t2 = spawn([&] {
        yield_now();  // t1 is parked in its drain
        out.write(second);
        out.drain(5s);
        finished.push_back(2);
    });
    yield_now();
    yield_now();
    // A third drainer that gives up while another fiber writes.
    error_code ec;
    out.drain(10ms, ec);
    EXPECT_EQ(ec, asio::error::timed_out);
    stream_reader in(p.b);
    EXPECT_TRUE(in.readexactly(first.size() + second.size(), 5s) == first + second);
    t1.get();
    t2.get();
    EXPECT_EQ(finished, (std::vector<int>{1, 2}));
    EXPECT_EQ(out.buffer_size(), 0u);
}

TEST_F(Stream, AbortDropsTheBufferAndWakesADrainer) {
    tcp_pair p;
    shrink_a_to_b(p);
    stream_writer out(p.a);
    out.write(std::string(4 << 20, 'q'));
    auto drainer = spawn([&] {
        error_code ec;
        out.drain(5s, ec);
        return ec;
    });
    sleep(10ms);
    EXPECT_FALSE(drainer.done());
    out.abort();
    EXPECT_EQ(drainer.get(), asio::error::operation_aborted);
    EXPECT_EQ(out.buffer_size(), 0u);
    EXPECT_TRUE(out.is_closing());
    EXPECT_FALSE(p.a.is_open());
    out.abort();  // idempotent
    EXPECT_THROW(out.write("x"), greenfiber::error);
}

TEST_F(Stream, DestroyingAWriterWithBytesNeverDrainedIsReported) {
    tcp_pair p;
    std::vector<std::string> reports;
    auto previous = hub::current().set_exception_handler(
        [&](const failure_report& r) { reports.emplace_back(r.message); });
    {
        stream_writer out(p.a);
        out.write("lost?");
    }
    {
        stream_writer dropped(p.a);
        dropped.write("on purpose");
        dropped.abort();
    }
    hub::current().set_exception_handler(std::move(previous));
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_THAT(reports[0], HasSubstr("5 bytes never drained"));
}

TEST_F(Stream, MovedWriterKeepsItsBuffer) {
    tcp_pair p;
    stream_writer out(p.a);
    out.write("moved");
    stream_writer moved(std::move(out));
    EXPECT_EQ(moved.buffer_size(), 5u);
    EXPECT_THROW(out.drain(), greenfiber::error);  // NOLINT: use after move on purpose
    moved.drain();
    stream_reader in(p.b);
    EXPECT_EQ(in.readexactly(5, 5s), "moved");
}

}  // namespace
