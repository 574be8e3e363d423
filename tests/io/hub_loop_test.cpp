// The hub's loop and what it runs behind the ready fibers: a socket's read after a short read
// starts from the hub's own list of deferred calls (hub::defer), which its owner unlinks when
// the wait ends first. What users do to it: cancel the task, close, cancel or destroy the
// socket while the start is queued, several queued at once, the hub going away with one
// queued; and the loop's promises: every completion of a reactor wait runs, and fibers that
// never stop yielding do not starve the reactor, the timers or call_soon.

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "greenfiber/loop.hpp"
#include "greenfiber/socket.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

class DeferredStart : public greenfiber::testing::io_checked {};
class HubLoop : public greenfiber::testing::io_checked {};

using greenfiber::testing::tcp_pair;

// A reader whose second read is deferred: its first read is short, so the next one starts
// from the hub behind the ready fibers. Its task returns what the second read did.
struct deferred_reader {
    tcp::socket& s;
    event first;
    event go;
    task<std::pair<std::size_t, error_code>> t;
    explicit deferred_reader(tcp::socket& sock, tcp::socket& peer)
        : s(sock), t(spawn([this] {
              std::array<char, 8> buf{};
              (void)s.read_some(asio::buffer(buf));  // short: the next read is deferred
              first.set();
              go.wait();
              error_code ec;
              const std::size_t n = s.read_some(asio::buffer(buf), ec);
              return std::make_pair(n, ec);
          })) {
        peer.write(asio::buffer("a", 1));
        first.wait();
    }
    // Lets the reader park in its second read; returns with the start still queued (the
    // reader hands the thread straight back to this fiber, before the hub runs).
    void park_with_the_start_queued() {
        go.set();
        yield_now();
    }
};

// Lets the hub run its loop once with this fiber parked: the deferred calls run then.
void let_the_hub_turn() {
    sleep(1ms);
}

TEST_F(DeferredStart, IsQueuedWithTheHubAndRunsBeforeTheReactorIsAsked) {
    tcp_pair p;
    deferred_reader r(p.client, p.server);
    r.park_with_the_start_queued();
    EXPECT_EQ(hub::current().deferred_count(), 1u);
    let_the_hub_turn();
    EXPECT_EQ(hub::current().deferred_count(), 0u);  // started: now a read in the reactor
    EXPECT_FALSE(r.t.done());
    p.server.write(asio::buffer("bc", 2));
    const auto [n, ec] = r.t.get();
    EXPECT_FALSE(ec);
    EXPECT_EQ(n, 2u);
}

// Cancelled while queued: unlinked at once, nothing starts, and the bytes written afterwards
// go to the next reader.
TEST_F(DeferredStart, ATaskCancelledBeforeItRunsLeavesNothingQueued) {
    tcp_pair p;
    deferred_reader r(p.client, p.server);
    r.park_with_the_start_queued();
    r.t.cancel();
    EXPECT_EQ(hub::current().deferred_count(), 0u);
    EXPECT_THROW(r.t.get(), cancelled_error);
    p.server.write(asio::buffer("xyz", 3));
    std::array<char, 8> buf{};
    const std::size_t n = p.client.read_some(asio::buffer(buf), 5s);
    EXPECT_EQ(std::string(buf.data(), n), "xyz");
}

// The socket destroyed by another fiber while the start is queued: the reader wakes with
// operation_aborted and nothing touches the dead socket afterwards (the sanitizer build
// checks that: neither the start nor the reader's own bookkeeping on the way out).
TEST_F(DeferredStart, TheSocketDestroyedBeforeItRunsAbortsTheRead) {
    tcp_pair p;
    auto client = std::make_unique<tcp::socket>(std::move(p.client));
    deferred_reader r(*client, p.server);
    r.park_with_the_start_queued();
    client.reset();
    EXPECT_EQ(hub::current().deferred_count(), 0u);
    const auto [n, ec] = r.t.get();
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(ec, asio::error::operation_aborted);
    let_the_hub_turn();
}

// The same, destroyed while the read has started (in the reactor): Asio aborts it, and the
// reader's guard does not write to the dead socket either.
TEST_F(DeferredStart, TheSocketDestroyedAfterItRanAbortsTheRead) {
    tcp_pair p;
    auto client = std::make_unique<tcp::socket>(std::move(p.client));
    deferred_reader r(*client, p.server);
    r.park_with_the_start_queued();
    let_the_hub_turn();
    client.reset();
    const auto [n, ec] = r.t.get();
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(ec, asio::error::operation_aborted);
}

// Two sockets with their starts queued; one cancelled, one closed: each ends on its own, and a
// third still queued runs and reads.
TEST_F(DeferredStart, SeveralQueuedEndIndependently) {
    tcp_pair p1, p2, p3;
    deferred_reader r1(p1.client, p1.server);
    deferred_reader r2(p2.client, p2.server);
    deferred_reader r3(p3.client, p3.server);
    r1.go.set();
    r2.go.set();
    r3.park_with_the_start_queued();
    EXPECT_EQ(hub::current().deferred_count(), 3u);
    r2.t.cancel();
    p1.client.close();
    EXPECT_EQ(hub::current().deferred_count(), 1u);
    p3.server.write(asio::buffer("ok", 2));
    EXPECT_THROW(r2.t.get(), cancelled_error);
    const auto [n1, ec1] = r1.t.get();
    EXPECT_EQ(n1, 0u);
    EXPECT_EQ(ec1, asio::error::operation_aborted);
    const auto [n3, ec3] = r3.t.get();
    EXPECT_FALSE(ec3);
    EXPECT_EQ(n3, 2u);
}

// A cancellation and a close landing on the same queued start, in both orders: one ending,
// no second wake-up (the ready queue aborts on a double push).
TEST_F(DeferredStart, CancelAndCloseTogetherEndItOnce) {
    for (const bool close_first : {false, true}) {
        tcp_pair p;
        deferred_reader r(p.client, p.server);
        r.park_with_the_start_queued();
        if (close_first) p.client.close();
        r.t.cancel();
        if (!close_first) p.client.close();
        EXPECT_EQ(hub::current().deferred_count(), 0u);
        // Closed first: the read ended with operation_aborted before the cancellation
        // could; the task then stops at its next suspension point, or returns (sticky
        // request with no suspension left).
        try {
            const auto [n, ec] = r.t.get();
            EXPECT_TRUE(close_first);
            EXPECT_EQ(n, 0u);
            EXPECT_EQ(ec, asio::error::operation_aborted);
        } catch (const cancelled_error&) {
        }
    }
}

// The hub goes away (its thread's run() returns) with a start queued: the task left is
// cancelled, the start never runs, and the socket it would have read is gone cleanly.
TEST(DeferredStartHubExit, AQueuedStartIsDroppedWithItsTaskWhenTheHubGoesAway) {
    std::atomic<int> reader_saw{0};  // 1: cancelled, 2: a read returned
    std::atomic<std::size_t> queued_at_return{0};
    std::thread([&] {
        run([&] {
            event first;
            event go;
            // Its handle is dropped at once: the hub owns it (a detached task).
            (void)spawn([&] {
                tcp_pair p;
                p.server.write(asio::buffer("a", 1));
                std::array<char, 8> buf{};
                (void)p.client.read_some(asio::buffer(buf));  // short
                first.set();
                go.wait();
                try {
                    (void)p.client.read_some(asio::buffer(buf));  // deferred, never started
                    reader_saw = 2;
                } catch (const cancelled_error&) {
                    reader_saw = 1;
                    throw;
                }
            });
            first.wait();
            go.set();
            yield_now();  // the task parks in its second read and hands back to this fiber
            queued_at_return = hub::current().deferred_count();
        });
    }).join();
    EXPECT_EQ(queued_at_return.load(), 1u);
    EXPECT_EQ(reader_saw.load(), 1);
}

// Reads made ready by another thread while the hub is blocked in the reactor: the one wait
// that sees them runs every completion, and each reader gets its byte.
TEST_F(HubLoop, EveryCompletionOfOneReactorWaitRuns) {
    constexpr int n = 8;
    std::vector<std::unique_ptr<tcp_pair>> pairs;
    std::vector<task<std::size_t>> readers;
    for (int i = 0; i < n; ++i) pairs.push_back(std::make_unique<tcp_pair>());
    for (int i = 0; i < n; ++i) {
        readers.push_back(spawn([&p = *pairs[i]] {
            std::array<char, 8> buf{};
            return p.client.read_some(asio::buffer(buf));  // eager: EAGAIN, then the reactor
        }));
    }
    let_the_hub_turn();  // every reader is in the reactor now
    std::vector<int> fds;
    for (auto& p : pairs) fds.push_back(p->server.native_handle());
    std::thread writer([fds] {
        for (const int fd : fds) EXPECT_EQ(::write(fd, "x", 1), 1);
    });
    std::size_t total = 0;
    {
        hub_handle h = hub::current().keep_alive();  // the writer is another thread
        for (auto& r : readers) total += r.get();
    }
    writer.join();
    EXPECT_EQ(total, std::size_t(n));
}

// Fibers that yield without end still let the reactor, the timers and call_soon run: the
// budget ends the turn and the hub polls.
TEST_F(HubLoop, SpinningFibersStillLetIoTimersAndCallbacksRun) {
    tcp_pair p;
    bool stop = false;
    std::size_t spins = 0;
    auto spinner = [&] {
        while (!stop) {
            yield_now();
            ++spins;
        }
    };
    auto s1 = spawn(spinner);
    auto s2 = spawn(spinner);
    bool called = false;
    hub::current().call_soon([&] { called = true; });
    auto reader = spawn([&] {
        std::array<char, 8> buf{};
        return p.client.read_some(asio::buffer(buf), 10s);
    });
    auto sleeper = spawn([] { sleep(5ms); });
    p.server.write(asio::buffer("abc", 3));
    EXPECT_EQ(reader.get(), 3u);
    sleeper.get();
    EXPECT_TRUE(called);
    stop = true;
    s1.get();
    s2.get();
    EXPECT_GT(spins, 0u);
}

}  // namespace
