#include "greenfiber/use_fiber.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "greenfiber/combinators.hpp"
#include "greenfiber/socket.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using boost::system::error_code;

namespace {

class UseFiber : public greenfiber::testing::io_checked {};

// An asynchronous operation with signature `Sig` whose initiation is `init(handler)`.
template <class Sig, class Init>
auto async_custom(Init init) {
    return asio::async_initiate<const use_fiber_t&, Sig>(
        [](auto handler, Init i) { i(std::move(handler)); }, use_fiber, std::move(init));
}
template <class Sig, class Init>
auto async_custom(Init init, error_code& ec, deadline dl = {}) {
    use_fiber_t token = use_fiber.until(dl)[ec];
    return asio::async_initiate<use_fiber_t, Sig>(
        [](auto handler, Init i) { i(std::move(handler)); }, token, std::move(init));
}

TEST_F(UseFiber, TimerWaitSuspendsOnlyTheFiber) {
    asio::steady_timer timer(hub::current().context(), 20ms);
    int ticks = 0;
    auto other = spawn([&] {
        for (int i = 0; i < 5; ++i) {
            ++ticks;
            yield_now();
        }
    });
    timer.async_wait(use_fiber);
    // Against the timer's own expiry: a start read after the timer was armed would make
    // the measured wait look short by the time between the two.
    EXPECT_GE(std::chrono::steady_clock::now(), timer.expiry());
    EXPECT_EQ(ticks, 5);
    other.get();
}

TEST_F(UseFiber, ImmediateCompletionInsideTheInitiation) {
    // The handler runs before initiate returns: the fiber is already parked, so it is
    // simply made ready.
    const int v =
        async_custom<void(error_code, int)>([](auto h) { std::move(h)(error_code{}, 42); });
    EXPECT_EQ(v, 42);
    asio::post(hub::current().context(), use_fiber);  // void()
}

TEST_F(UseFiber, SignaturesMapToReturnValues) {
    auto t = async_custom<void(error_code, int, std::string)>(
        [](auto h) { std::move(h)(error_code{}, 7, std::string("seven")); });
    EXPECT_EQ(t, std::make_tuple(7, std::string("seven")));
    const std::string s = async_custom<void(std::string)>([](auto h) { std::move(h)("plain"); });
    EXPECT_EQ(s, "plain");
    EXPECT_THROW(async_custom<void(std::exception_ptr, int)>([](auto h) {
                     std::move(h)(std::make_exception_ptr(std::runtime_error("boom")), 0);
                 }),
                 std::runtime_error);
    try {
        async_custom<void(error_code)>(
            [](auto h) { std::move(h)(make_error_code(asio::error::connection_refused)); });
        FAIL() << "no throw";
    } catch (const boost::system::system_error& e) {
        EXPECT_EQ(e.code(), asio::error::connection_refused);
    }
}

TEST_F(UseFiber, ErrorCodeFormDoesNotThrow) {
    error_code ec = make_error_code(asio::error::eof);
    EXPECT_EQ(
        async_custom<void(error_code, int)>([](auto h) { std::move(h)(error_code{}, 1); }, ec), 1);
    EXPECT_FALSE(ec);
    tcp::endpoint closed;
    {
        tcp::acceptor a(tcp::endpoint(asio::ip::address_v4::loopback(), 0));
        closed = a.local_endpoint();
    }
    asio::ip::tcp::socket s(hub::current().context());
    s.async_connect(closed, use_fiber[ec]);
    EXPECT_EQ(ec, asio::error::connection_refused);
}

TEST_F(UseFiber, CompletionFromAnotherThread) {
    // Through Asio: the handler's executor brings it back to the hub.
    asio::thread_pool pool(1);
    const auto caller = std::this_thread::get_id();
    std::thread::id ran_on;
    asio::post(pool, [&] { ran_on = std::this_thread::get_id(); });
    pool.join();
    asio::thread_pool pool2(1);
    asio::post(pool2, use_fiber);
    EXPECT_NE(ran_on, caller);
    // By hand: a foreign thread calls the handler directly.
    std::thread worker;
    const int v = async_custom<void(int)>([&](auto h) {
        worker = std::thread([h = std::move(h)]() mutable {
            std::this_thread::sleep_for(10ms);
            std::move(h)(99);
        });
    });
    EXPECT_EQ(v, 99);
    worker.join();
    pool2.join();
}

TEST_F(UseFiber, IoContextDestroyedWithTheOperationPending) {
    // A handler posted to a context that never runs; destroying the context destroys it
    // uncalled (no I/O object may outlive its context, so none is used here).
    auto other = std::make_unique<asio::io_context>();
    auto t = spawn([&] { asio::post(*other, use_fiber); });
    auto t_ec = spawn([&] {
        error_code ec;
        asio::post(*other, use_fiber[ec]);
        return ec;
    });
    yield_now();
    EXPECT_FALSE(t.done());
    other.reset();
    try {
        t.get();
        FAIL() << "no error";
    } catch (const boost::system::system_error& e) {
        EXPECT_EQ(e.code(), asio::error::operation_aborted);
        EXPECT_THAT(e.what(), HasSubstr("destroyed without being called"));
    }
    EXPECT_EQ(t_ec.get(), asio::error::operation_aborted);
}

TEST_F(UseFiber, CancellingTheTaskCancelsTheOperation) {
    asio::steady_timer timer(hub::current().context(), std::chrono::hours(1));
    auto t = spawn([&] { timer.async_wait(use_fiber); });
    yield_now();
    t.cancel();
    EXPECT_THROW(t.get(), cancelled_error);
}

// An operation with no cancellation support that fills the caller's buffer when the test
// says so, as a driver whose request cannot be withdrawn would: fill() writes into the buffer
// at once, then posts the completion. Between start and fill() it holds the buffer.
class late_filler {
  public:
    bool started() const { return static_cast<bool>(fill_); }
    void fill() {
        auto f = std::move(fill_);
        fill_ = nullptr;
        f();
    }
    template <class Token>
    auto async_fill(asio::mutable_buffer buf, Token&& token) {
        return asio::async_initiate<Token, void(error_code, std::size_t)>(
            [this](auto handler, asio::mutable_buffer b) {
                auto shared = std::make_shared<decltype(handler)>(std::move(handler));
                fill_ = [shared, b] {
                    std::memset(b.data(), 'x', b.size());
                    auto ex = asio::get_associated_executor(*shared);
                    asio::post(ex,
                               [shared, n = b.size()] { std::move (*shared)(error_code{}, n); });
                };
            },
            token, buf);
    }

  private:
    std::function<void()> fill_;
};

TEST_F(UseFiber, ACancelledFiberWaitsForAnOperationThatIgnoresCancellation) {
    // The buffer is on the heap so that ASan sees a write into it after the fiber left.
    late_filler op;
    std::string seen;
    auto t = spawn([&] {
        auto buf = std::make_unique<char[]>(4);
        std::memset(buf.get(), '-', 4);
        struct record {
            std::string& seen;
            const char* b;
            ~record() { seen.assign(b, 4); }
        } r{seen, buf.get()};
        op.async_fill(asio::buffer(buf.get(), 4), use_fiber);
        ADD_FAILURE() << "the cancellation was not raised";
    });
    yield_now();
    ASSERT_TRUE(op.started());
    t.cancel();
    for (int i = 0; i < 3; ++i) yield_now();
    t.cancel();  // a second request changes nothing
    for (int i = 0; i < 3; ++i) yield_now();
    EXPECT_FALSE(t.done()) << "the fiber left while the operation still held its buffer";
    op.fill();
    EXPECT_THROW(t.get(), cancelled_error);
    EXPECT_EQ(seen, "xxxx");  // the write landed while the buffer was alive
}

TEST_F(UseFiber, ATimeoutWaitsForAnOperationThatIgnoresCancellation) {
    late_filler op;
    std::string seen;
    auto t = spawn([&] {
        timeout(1ms, [&] {
            std::array<char, 4> buf{'-', '-', '-', '-'};  // on the fiber's stack
            struct record {
                std::string& seen;
                const char* b;
                ~record() { seen.assign(b, 4); }
            } r{seen, buf.data()};
            op.async_fill(asio::buffer(buf), use_fiber);
        });
    });
    yield_now();
    ASSERT_TRUE(op.started());
    sleep(20ms);  // the timeout's timer, due much earlier, fired meanwhile
    EXPECT_FALSE(t.done()) << "the fiber left while the operation still held its buffer";
    op.fill();
    EXPECT_THROW(t.get(), timeout_error);
    EXPECT_EQ(seen, "xxxx");
}

TEST_F(UseFiber, ADeadlineWaitsForAnOperationThatIgnoresCancellationAndKeepsItsResult) {
    late_filler op;
    error_code ec;
    std::size_t n = 0;
    std::string seen;
    auto t = spawn([&] {
        auto buf = std::make_unique<char[]>(4);
        // A deadline already passed: it fires at the first turn of the reactor.
        n = op.async_fill(asio::buffer(buf.get(), 4),
                          use_fiber.until(std::chrono::steady_clock::now() - 1s)[ec]);
        seen.assign(buf.get(), 4);
    });
    yield_now();
    ASSERT_TRUE(op.started());
    sleep(5ms);
    EXPECT_FALSE(t.done()) << "the fiber left while the operation still held its buffer";
    op.fill();
    t.get();
    EXPECT_FALSE(ec);  // the work was done: its result is not lost
    EXPECT_EQ(n, 4u);
    EXPECT_EQ(seen, "xxxx");
}

TEST_F(UseFiber, AnOperationThatIgnoresCancellationTooLongIsReportedAndStillWaitedFor) {
    std::vector<std::string> reports;
    auto previous = hub::current().set_exception_handler(
        [&](const failure_report& r) { reports.emplace_back(r.message); });
    late_filler op;
    auto t = spawn(spawn_options{.name = "stubborn"}, [&] {
        std::vector<char> buf(4);
        op.async_fill(asio::buffer(buf), use_fiber.stuck_report_after(1ms));
    });
    yield_now();
    ASSERT_TRUE(op.started());
    t.cancel();
    while (reports.empty()) sleep(1ms);
    EXPECT_FALSE(t.done());
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_THAT(reports[0], HasSubstr("task 'stubborn'"));
    EXPECT_THAT(reports[0], HasSubstr("ignores cancellation"));
    op.fill();
    EXPECT_THROW(t.get(), cancelled_error);
    EXPECT_EQ(reports.size(), 1u);
    hub::current().set_exception_handler(std::move(previous));
}

TEST_F(UseFiber, AHandlerDroppedUncalledAfterCancellationEndsTheWait) {
    late_filler op;
    auto t = spawn([&] {
        std::array<char, 4> buf{};
        op.async_fill(asio::buffer(buf), use_fiber);
    });
    yield_now();
    t.cancel();
    yield_now();
    EXPECT_FALSE(t.done());
    op = late_filler();  // the operation gives up: its handler is destroyed uncalled
    EXPECT_THROW(t.get(), cancelled_error);
}

TEST_F(UseFiber, AnOperationThatSupportsCancellationEndsPromptlyOnCancelAndDeadline) {
    // Every wait below would last an hour if the cancellation did not reach the operation.
    asio::steady_timer timer(hub::current().context(), std::chrono::hours(1));
    auto t = spawn([&] { timer.async_wait(use_fiber); });
    yield_now();
    t.cancel();
    EXPECT_THROW(t.get(), cancelled_error);

    asio::local::stream_protocol::socket a(hub::current().context());
    asio::local::stream_protocol::socket b(hub::current().context());
    asio::local::connect_pair(a, b);
    std::array<char, 8> buf{};
    auto reader = spawn([&] { return a.async_read_some(asio::buffer(buf), use_fiber); });
    yield_now();
    reader.cancel();
    EXPECT_THROW(reader.get(), cancelled_error);

    error_code ec;
    (void)a.async_read_some(asio::buffer(buf), use_fiber.until(5ms)[ec]);
    EXPECT_EQ(ec, asio::error::timed_out);
    auto in_timeout = spawn(
        [&] { timeout(5ms, [&] { (void)a.async_read_some(asio::buffer(buf), use_fiber); }); });
    EXPECT_THROW(in_timeout.get(), timeout_error);
    // The socket is still usable: nothing was left pending on it.
    b.write_some(asio::buffer("hi", 2));
    EXPECT_EQ(a.async_read_some(asio::buffer(buf), use_fiber), 2u);
}

TEST_F(UseFiber, BeastAsyncReadTimesOutAndIsCancelled) {
    tcp::acceptor listener(tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    auto server = spawn([&] {
        tcp::socket s = listener.accept();
        s.write(asio::buffer(std::string("GET / HTTP/1.1\r\nHost: x\r\n")));  // no end of head
        std::array<char, 1> b{};
        error_code ec;
        (void)s.read_some(asio::buffer(b), ec);  // until the client goes away
    });
    asio::ip::tcp::socket client(hub::current().context());
    client.async_connect(listener.local_endpoint(), use_fiber);
    boost::beast::flat_buffer buf;
    http::request<http::string_body> req;
    const auto start = std::chrono::steady_clock::now();
    auto reader =
        spawn([&] { timeout(50ms, [&] { http::async_read(client, buf, req, use_fiber); }); });
    EXPECT_THROW(reader.get(), timeout_error);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    client.close();
    server.get();
}

// greenfiber's own sockets are Asio streams: composed operations take them directly
// (the example at the top of use_fiber.hpp), no .native() needed.
TEST_F(UseFiber, ComposedOperationsTakeGreenfiberSockets) {
    tcp::acceptor listener(tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    auto server = spawn([&] {
        tcp::socket s = listener.accept();
        asio::streambuf line;
        const std::size_t n = asio::async_read_until(s, line, "\n", use_fiber);
        std::string got(asio::buffers_begin(line.data()), asio::buffers_begin(line.data()) + n);
        // A reply larger than a socket buffer, so async_write needs several write_some.
        const std::string reply = got + std::string(1 << 20, 'x');
        EXPECT_EQ(asio::async_write(s, asio::buffer(reply), use_fiber), reply.size());
        // Then Beast over the same socket.
        boost::beast::flat_buffer buf;
        http::request<http::string_body> req;
        http::async_read(s, buf, req, use_fiber);
        http::response<http::string_body> res{http::status::ok, 11};
        res.body() = "target " + std::string(req.target());
        res.prepare_payload();
        http::async_write(s, res, use_fiber);
        return got;
    });
    tcp::socket client;
    client.connect(listener.local_endpoint());
    (void)asio::async_write(client, asio::buffer(std::string("hello\n")), use_fiber);
    std::string reply(6 + (1 << 20), '\0');
    EXPECT_EQ(asio::async_read(client, asio::buffer(reply), use_fiber), reply.size());
    EXPECT_EQ(reply.substr(0, 6), "hello\n");
    EXPECT_EQ(reply.find_first_not_of('x', 6), std::string::npos);

    http::request<http::string_body> req{http::verb::get, "/beast", 11};
    http::async_write(client, req, use_fiber);
    boost::beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::async_read(client, buf, res, use_fiber);
    EXPECT_EQ(res.body(), "target /beast");
    EXPECT_EQ(server.get(), "hello\n");
}

// A peer that never sends the delimiter: the deadline and a cancellation both end the
// composed operation, and the socket is still usable for the greenfiber calls afterwards.
TEST_F(UseFiber, ComposedOperationOnAGreenfiberSocketEndsAtItsDeadlineAndOnCancel) {
    tcp::acceptor listener(tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    tcp::socket client;
    auto accepting = spawn([&] { return listener.accept(); });
    client.connect(listener.local_endpoint());
    tcp::socket server = accepting.get();
    server.write(asio::buffer(std::string("no newline yet")));

    asio::streambuf line;
    error_code ec;
    (void)asio::async_read_until(client, line, "\n", use_fiber.until(10ms)[ec]);
    EXPECT_EQ(ec, asio::error::timed_out);

    auto reader = spawn([&] { return asio::async_read_until(client, line, "\n", use_fiber); });
    yield_now();
    reader.cancel();
    EXPECT_THROW(reader.get(), cancelled_error);

    server.write(asio::buffer(std::string("!\n")));
    const std::size_t n = asio::async_read_until(client, line, "\n", use_fiber);
    EXPECT_EQ(n, std::string("no newline yet!\n").size());
    std::array<char, 4> b{};
    server.write(asio::buffer(std::string("more")));
    EXPECT_EQ(client.read(asio::buffer(b)), 4u);
}

TEST_F(UseFiber, DeadlineCancelsTheOperationAndReportsTimedOut) {
    asio::steady_timer timer(hub::current().context(), std::chrono::hours(1));
    try {
        timer.async_wait(use_fiber.until(20ms));
        FAIL() << "no timeout";
    } catch (const boost::system::system_error& e) {
        EXPECT_EQ(e.code(), asio::error::timed_out);
    }
    error_code ec;
    timer.async_wait(use_fiber.until(10ms)[ec]);
    EXPECT_EQ(ec, asio::error::timed_out);
    // In time: the result as usual.
    timer.expires_after(5ms);
    timer.async_wait(use_fiber.until(5s)[ec]);
    EXPECT_FALSE(ec);
}

TEST_F(UseFiber, ExceptionFromTheInitiationReachesTheCaller) {
    EXPECT_THROW(
        async_custom<void(int)>([](auto) { throw std::runtime_error("initiation failed"); }),
        std::runtime_error);
}

TEST_F(UseFiber, CallingFromAHubCallbackIsAnError) {
    std::optional<std::string> message;
    hub::current().call_soon([&] {
        try {
            asio::post(hub::current().context(), use_fiber);
        } catch (const greenfiber::error& e) {
            message = e.what();
        }
    });
    yield_now();
    yield_now();
    ASSERT_TRUE(message.has_value());
    EXPECT_THAT(*message, HasSubstr("a callback must not suspend"));
}

}  // namespace
