#include "greenfiber/use_fiber.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

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
    const auto start = std::chrono::steady_clock::now();
    timer.async_wait(use_fiber);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
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

TEST_F(UseFiber, AnOperationThatCannotBeCancelledIsAbandoned) {
    std::function<void(int)> stored;
    auto t = spawn([&] {
        return async_custom<void(int)>([&](auto h) {
            auto shared = std::make_shared<decltype(h)>(std::move(h));
            stored = [shared](int v) { std::move (*shared)(v); };
        });
    });
    yield_now();
    t.cancel();
    EXPECT_THROW(t.get(), cancelled_error);
    stored(5);  // completes into the orphaned state: dropped, nothing touches the fiber
    stored = nullptr;
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
    // An operation that cannot be cancelled is abandoned at the deadline.
    std::function<void(int)> stored;
    const int v = async_custom<void(error_code, int)>(
        [&](auto h) {
            auto shared = std::make_shared<decltype(h)>(std::move(h));
            stored = [shared](int x) { std::move (*shared)(error_code{}, x); };
        },
        ec, 10ms);
    EXPECT_EQ(v, 0);
    EXPECT_EQ(ec, asio::error::timed_out);
    stored(1);
    stored = nullptr;
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
