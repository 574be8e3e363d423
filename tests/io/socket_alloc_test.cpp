// A socket operation's memory lives in its wait (io_wait's handler_memory), and a read after
// a short read starts only once the fibers already ready have run (io_wait::deferred): what
// users do to both. Counting allocations needs the global operator new replaced, which is
// why these tests have a program of their own.

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include <boost/asio/post.hpp>

#include "greenfiber/socket.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

namespace {

// Allocations made by this thread while `counting` is set: operator new and aligned_alloc.
thread_local bool counting = false;
thread_local std::size_t allocations = 0;

}  // namespace

// Asio's own allocator (the recycling cache in front of the heap) calls aligned_alloc, not
// operator new: counted here, then passed on to the next definition (libc's, or the
// sanitizer's in the ASan build).
extern "C" void* aligned_alloc(std::size_t align, std::size_t n) noexcept {
    using fn = void* (*)(std::size_t, std::size_t);
    static const fn next = reinterpret_cast<fn>(::dlsym(RTLD_NEXT, "aligned_alloc"));
    if (counting) ++allocations;
    return next(align, n);
}

// The operators below count too; the deletes are out of line, so that the compiler does not
// see a `delete` become free() of memory from `new` and warn (both sides use malloc).
void* operator new(std::size_t n) {
    if (counting) ++allocations;
    if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    return ::operator new(n);
}
void* operator new(std::size_t n, std::align_val_t a) {
    if (counting) ++allocations;
    const std::size_t al = static_cast<std::size_t>(a);
    if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
    return ::operator new(n, a);
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::align_val_t) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::align_val_t) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}

using namespace greenfiber;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

class SocketAlloc : public greenfiber::testing::io_checked {};
class DeferredRead : public greenfiber::testing::io_checked {};

using greenfiber::testing::tcp_pair;

// Counts the allocations of this thread in its scope.
struct count_allocations {
    count_allocations() {
        allocations = 0;
        counting = true;
    }
    ~count_allocations() { counting = false; }
    std::size_t count() const { return allocations; }
};

// Echoes on `s` until end of stream: read_some into a small buffer, write it back.
void echo(tcp::socket& s) {
    std::array<char, 64> buf{};
    for (;;) {
        error_code ec;
        const std::size_t n = s.read_some(asio::buffer(buf), ec);
        if (ec) return;
        s.write(asio::buffer(buf.data(), n), ec);
        if (ec) return;
    }
}

// Many reads outstanding, completed in one batch by the hub, then started again by their
// fibers: Asio's per-thread cache holds two operations' memory, so without a home of their
// own the others came from malloc on every round.
TEST_F(SocketAlloc, ABatchOfCompletionsAllocatesNothing) {
    constexpr int conns = 16;
    std::vector<std::unique_ptr<tcp_pair>> pairs;
    std::vector<task<void>> echoes;
    for (int i = 0; i < conns; ++i) {
        pairs.push_back(std::make_unique<tcp_pair>());
        echoes.push_back(spawn([&s = pairs.back()->server] { echo(s); }));
    }
    std::array<char, 8> in{};
    auto round = [&](int r) {
        const std::string msg = "round" + std::to_string(r % 10);
        for (auto& p : pairs) p->client.write(asio::buffer(msg));  // all readers complete
        for (auto& p : pairs) {
            const std::size_t n = p->client.read(asio::buffer(in.data(), msg.size()));
            ASSERT_EQ(std::string(in.data(), n), msg);
        }
    };
    for (int r = 0; r < 3; ++r) round(r);  // warm: stacks, cancellation slots, buffers
    std::size_t during = 0;
    {
        count_allocations c;
        for (int r = 0; r < 20; ++r) round(r);
        during = c.count();
    }
    EXPECT_EQ(during, 0u) << "operator new calls during 20 rounds of " << conns
                          << " echoes; an operation's memory should be its wait's";
    for (auto& p : pairs) p->client.shutdown(asio::socket_base::shutdown_send);
    for (auto& e : echoes) e.get();
}

// A buffer sequence whose operation does not fit the wait's block: Asio's own allocator
// takes it, and the bytes still arrive in order across the buffers.
TEST_F(SocketAlloc, AnOperationLargerThanTheBlockStillWorks) {
    tcp_pair p;
    std::array<std::array<char, 2>, 40> parts{};
    std::vector<asio::mutable_buffer> bufs;
    for (auto& part : parts) bufs.push_back(asio::buffer(part));
    std::array<asio::mutable_buffer, 40> seq{};
    std::copy(bufs.begin(), bufs.end(), seq.begin());
    auto reader = spawn([&] { return p.client.read_some(seq); });
    yield_now();  // parked: the operation is started with the array inside it
    EXPECT_FALSE(reader.done());
    const std::string msg = "abcdefghij";
    p.server.write(asio::buffer(msg));
    const std::size_t n = reader.get();
    ASSERT_EQ(n, msg.size());
    std::string got;
    for (std::size_t i = 0; i < n; ++i) got += parts[i / 2][i % 2];
    EXPECT_EQ(got, msg);
}

// Waits that time out again and again on one socket, each leaving its operation to be
// cancelled, each followed at once by the next wait at the same place on the stack: the next
// operation must not be handed memory a cancelled one still holds (ASan's build sees it).
TEST_F(SocketAlloc, MemoryOfATimedOutReadIsNotReusedBeforeItsHandlerRan) {
    tcp_pair p;
    auto reader = spawn([&] {
        std::array<char, 8> buf{};
        int timeouts = 0;
        for (;;) {
            error_code ec;
            const std::size_t n = p.client.read_some(asio::buffer(buf), 1ms, ec);
            if (ec == asio::error::timed_out) {
                ++timeouts;
                continue;
            }
            if (ec) throw boost::system::system_error(ec);
            return std::make_pair(timeouts, std::string(buf.data(), n));
        }
    });
    for (int i = 0; i < 5 && !reader.done(); ++i) sleep(5ms);
    p.server.write(asio::buffer("late", 4));
    const auto [timeouts, got] = reader.get();
    EXPECT_GT(timeouts, 0);
    EXPECT_EQ(got, "late");
}

// Cancels a reader whose operation is pending (its aborted handler not yet run), then reads
// on the same socket from another fiber: the first wait ends only after its handler ran, so
// the second never meets the first's operation.
TEST_F(SocketAlloc, ReadAfterACancelledReadOnTheSameSocket) {
    tcp_pair p;
    for (int i = 0; i < 20; ++i) {
        auto reader = spawn([&] {
            std::array<char, 8> buf{};
            return p.client.read_some(asio::buffer(buf));
        });
        yield_now();
        reader.cancel();
        EXPECT_THROW(reader.get(), cancelled_error);
        auto next = spawn([&] {
            std::array<char, 8> buf{};
            const std::size_t n = p.client.read_some(asio::buffer(buf));
            return std::string(buf.data(), n);
        });
        yield_now();
        p.server.write(asio::buffer("x", 1));
        EXPECT_EQ(next.get(), "x");
    }
}

// The reader of a request/response exchange: a short read, then (once told) a second read,
// which is deferred. Its task returns what the second read did.
struct second_read {
    tcp_pair& p;
    event first;
    event go;
    std::size_t got = 0;  // what the second read returned, once it returned
    bool returned = false;
    task<std::pair<std::size_t, error_code>> t;
    explicit second_read(tcp_pair& pair)
        : p(pair), t(spawn([this] {
              std::array<char, 8> buf{};
              (void)p.client.read_some(asio::buffer(buf));  // short: the next is deferred
              first.set();
              go.wait();
              error_code ec;
              const std::size_t n = p.client.read_some(asio::buffer(buf), ec);
              got = n;
              returned = true;
              return std::make_pair(n, ec);
          })) {
        p.server.write(asio::buffer("a", 1));
        first.wait();  // the reader ran on and now waits on go
    }
    // Lets the reader start its second read and park with the start queued; returns
    // before the hub has run that start (the reader and this fiber run in the same turn).
    void park_with_the_start_queued() {
        go.set();
        yield_now();
    }
};

// A cancellation that lands while the deferred start is still queued: the read never
// starts, and data written afterwards goes to the next reader, not to a phantom read.
TEST_F(DeferredRead, CancelledBeforeItsStartRunsStartsNothing) {
    tcp_pair p;
    second_read r(p);
    r.park_with_the_start_queued();
    EXPECT_FALSE(r.t.done());
    r.t.cancel();
    EXPECT_THROW(r.t.get(), cancelled_error);
    p.server.write(asio::buffer("xyz", 3));
    std::array<char, 8> buf{};
    const std::size_t n = p.client.read_some(asio::buffer(buf), 5s);
    EXPECT_EQ(std::string(buf.data(), n), "xyz");
}

// close() while the start is queued: the reader wakes with operation_aborted, as one whose
// read had started does (CloseFromAThirdFiberWakesReaderAndWriter).
TEST_F(DeferredRead, CloseBeforeItsStartRunsReportsOperationAborted) {
    tcp_pair p;
    second_read r(p);
    r.park_with_the_start_queued();
    EXPECT_FALSE(r.t.done());
    p.client.close();
    const auto [n, ec] = r.t.get();
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(ec, asio::error::operation_aborted);
}

// cancel() (the socket's) while the start is queued: operation_aborted, and the socket
// stays usable.
TEST_F(DeferredRead, SocketCancelBeforeItsStartRunsReportsOperationAborted) {
    tcp_pair p;
    second_read r(p);
    r.park_with_the_start_queued();
    p.client.cancel();
    const auto [n, ec] = r.t.get();
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(ec, asio::error::operation_aborted);
    p.server.write(asio::buffer("ok", 2));
    std::array<char, 8> buf{};
    EXPECT_EQ(p.client.read_some(asio::buffer(buf), 5s), 2u);
}

// Data already there when the deferred start runs: the read completes with it, and a
// cancellation posted behind the start does not lose the bytes.
TEST_F(DeferredRead, DataArrivingBeforeTheStartIsReadAndKept) {
    tcp_pair p;
    second_read r(p);
    p.server.write(asio::buffer("bcd", 3));
    sleep(10ms);  // in the client's receive queue before the second read starts
    r.park_with_the_start_queued();
    asio::post(hub::current().context(), [&] { r.t.cancel(); });
    // The bytes win; the task may still end cancelled (the request was sticky), but the
    // read returned them.
    try {
        const auto [n, ec] = r.t.get();
        EXPECT_EQ(n, 3u);
        EXPECT_FALSE(ec);
    } catch (const cancelled_error&) {
    }
    EXPECT_TRUE(r.returned);
    EXPECT_EQ(r.got, 3u);
}

// A writer on the same socket while the read's start is queued: the directions stay apart.
TEST_F(DeferredRead, AWriterRunsWhileTheReadStartIsQueued) {
    tcp_pair p;
    second_read r(p);
    r.park_with_the_start_queued();
    p.client.write(asio::buffer("ping", 4));  // the other direction, same turn
    std::array<char, 8> buf{};
    EXPECT_EQ(p.server.read(asio::buffer(buf.data(), 4)), 4u);
    p.server.write(asio::buffer("pong", 4));
    const auto [n, ec] = r.t.get();
    EXPECT_FALSE(ec);
    EXPECT_EQ(n, 4u);
}

// A deadline on a deferred read: it times out whether or not its start has run.
TEST_F(DeferredRead, DeadlinePassesWithNothingToRead) {
    tcp_pair p;
    auto t = spawn([&] {
        std::array<char, 8> buf{};
        (void)p.client.read_some(asio::buffer(buf));  // short
        error_code ec;
        const std::size_t n = p.client.read_some(asio::buffer(buf), 20ms, ec);
        return std::make_pair(n, ec);
    });
    p.server.write(asio::buffer("a", 1));
    const auto [n, ec] = t.get();
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(ec, asio::error::timed_out);
}

}  // namespace

namespace {

class WriteOneBuffer : public greenfiber::testing::io_checked {};

// A single buffer much larger than the socket's buffers: the first system call writes
// part of it and the rest goes through the waiting loop; every byte arrives, in order.
TEST_F(WriteOneBuffer, APartialFirstWriteIsFinishedByTheLoop) {
    tcp_pair p;
    p.client.set_option(asio::socket_base::send_buffer_size(4096));
    std::string big(1 << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 23);
    auto writer = spawn([&] { return p.client.write(asio::buffer(big)); });
    std::string got(big.size(), '\0');
    EXPECT_EQ(p.server.read(asio::buffer(got)), big.size());
    EXPECT_EQ(writer.get(), big.size());
    EXPECT_TRUE(got == big);
}

// A second writer while the first is parked with its write half done: refused before it
// writes a byte (so the first's bytes stay contiguous), and the first completes.
TEST_F(WriteOneBuffer, ASecondWriterIsRefusedWhileTheFirstIsParked) {
    tcp_pair p;
    p.client.set_option(asio::socket_base::send_buffer_size(4096));
    const std::string big(512 << 10, 'x');
    auto first = spawn([&] { return p.client.write(asio::buffer(big)); });
    yield_now();
    ASSERT_FALSE(first.done());  // parked: the socket's buffers are full
    auto second = spawn([&] { return p.client.write(asio::buffer("intruder", 8)); });
    try {
        (void)second.get();
        ADD_FAILURE() << "the second writer was not refused";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("already has a writer"), std::string::npos)
            << e.what();
    }
    std::string got(big.size(), '\0');
    EXPECT_EQ(p.server.read(asio::buffer(got)), big.size());
    EXPECT_EQ(first.get(), big.size());
    EXPECT_TRUE(got == big);
}

// A deadline that passes with the socket full reports the bytes the first call wrote.
TEST_F(WriteOneBuffer, ADeadlineReportsWhatTheFirstCallWrote) {
    tcp_pair p;
    p.client.set_option(asio::socket_base::send_buffer_size(4096));
    const std::string big(8 << 20, 'y');
    error_code ec;
    const std::size_t n = p.client.write(asio::buffer(big), 20ms, ec);
    EXPECT_EQ(ec, asio::error::timed_out);
    EXPECT_GT(n, 0u);
    EXPECT_LT(n, big.size());
    std::string got(n, '\0');
    EXPECT_EQ(p.server.read(asio::buffer(got)), n);  // exactly what was reported
    EXPECT_EQ(got, std::string(n, 'y'));
    p.client.close();
    std::array<char, 8> more{};
    error_code eof;
    (void)p.server.read_some(asio::buffer(more), eof);
    EXPECT_EQ(eof, asio::error::eof);
}

// An empty buffer writes nothing and reports nothing, even on a closed socket, as the
// composed write always did.
TEST_F(WriteOneBuffer, AnEmptyBufferOnAClosedSocketIsNoError) {
    tcp_pair p;
    p.client.close();
    error_code ec;
    EXPECT_EQ(p.client.write(asio::buffer("", 0), ec), 0u);
    EXPECT_FALSE(ec) << ec.message();
}

// A reset peer: the first call fails at once, and the error comes back with no bytes.
TEST_F(WriteOneBuffer, AResetPeerIsReportedByTheFirstCall) {
    tcp_pair p;
    p.server.set_option(asio::socket_base::linger(true, 0));
    p.server.close();  // RST
    std::array<char, 8> buf{};
    error_code rd;
    (void)p.client.read_some(asio::buffer(buf), 5s, rd);  // the reset has arrived
    error_code ec;
    std::size_t n = 0;
    for (int i = 0; i < 3 && !ec; ++i) n = p.client.write(asio::buffer("z", 1), ec);
    EXPECT_TRUE(ec == asio::error::broken_pipe || ec == asio::error::connection_reset)
        << ec.message();
    EXPECT_EQ(n, 0u);
}

}  // namespace
