// server::stop() from another fiber than the one that owns the server and runs its accept
// loop. The owner may free the server as soon as serve_forever() returns, which it does
// while the stopping fiber still waits inside stop(): stop() must not touch the server after
// that. Each test frees the server from its owner; the sanitizer build catches any later
// access (heap-use-after-free).

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "greenfiber/server.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;

namespace {

class ServerStop : public greenfiber::testing::io_checked {};

using greenfiber::testing::echo_until_eof;
using greenfiber::testing::loopback_listener;
using tcp_server = server<tcp::protocol>;

// The owner's fiber: serves until stopped, then frees the server at once.
task<void> serve_then_free(std::unique_ptr<tcp_server>& srv) {
    return spawn([&srv] {
        srv->serve_forever();
        srv.reset();
    });
}

TEST_F(ServerStop, FromAnotherFiberWhileTheOwnerFreesTheServerOnReturn) {
    auto srv = std::make_unique<tcp_server>(loopback_listener(), echo_until_eof);
    tcp_server* borrowed = srv.get();
    auto owner = serve_then_free(srv);
    yield_now();  // the owner waits in accept()
    // stop() closes the listener and waits for the accept loop to leave; the owner's
    // serve_forever() returns and frees the server before the stopper runs again.
    auto stopper = spawn([borrowed] { return borrowed->stop(1s); });
    EXPECT_EQ(stopper.get(), 0u);
    owner.get();
    EXPECT_EQ(srv, nullptr);
}

TEST_F(ServerStop, WithAGraceWhileAHandlerRunsAndTheOwnerFreesTheServer) {
    event never;  // the handler waits on it until it is cancelled
    event handling;
    auto srv = std::make_unique<tcp_server>(loopback_listener(), [&](tcp::socket) {
        handling.set();
        never.wait();
    });
    const auto ep = srv->local_endpoint();
    tcp_server* borrowed = srv.get();
    auto owner = serve_then_free(srv);
    tcp::socket client;
    client.connect(ep);
    handling.wait();
    // The stopper waits in its grace period; the owner's serve_forever() returns meanwhile
    // (the listener is closed) and its destructor cancels the handler and frees the server.
    auto stopper = spawn([borrowed] { return borrowed->stop(1h); });
    owner.get();
    EXPECT_EQ(srv, nullptr);
    EXPECT_EQ(stopper.get(), 0u);  // the destructor cancelled the handler, not stop()
}

TEST_F(ServerStop, TwoStoppersAndTheOwnerFreesTheServer) {
    auto srv = std::make_unique<tcp_server>(loopback_listener(), echo_until_eof);
    tcp_server* borrowed = srv.get();
    auto owner = serve_then_free(srv);
    yield_now();
    std::vector<task<std::size_t>> stoppers;
    for (int i = 0; i < 2; ++i) {
        stoppers.push_back(spawn([borrowed] { return borrowed->stop(1s); }));
    }
    for (auto& s : stoppers) EXPECT_EQ(s.get(), 0u);
    owner.get();
    EXPECT_EQ(srv, nullptr);
}

TEST_F(ServerStop, AStopperCancelledWhileTheOwnerFreesTheServer) {
    // The stopper is cancelled while it waits: stop() is shielded, so it still waits for the
    // accept loop to leave, and it must still not touch the server once that is freed.
    auto srv = std::make_unique<tcp_server>(loopback_listener(), echo_until_eof);
    tcp_server* borrowed = srv.get();
    auto owner = serve_then_free(srv);
    yield_now();
    auto stopper = spawn([borrowed] { return borrowed->stop(1s); });
    yield_now();  // the stopper closed the listener and waits for the accept loop
    stopper.cancel();
    owner.get();
    EXPECT_EQ(srv, nullptr);
    try {
        (void)stopper.get();
    } catch (const cancelled_error&) {
        // Delivered at the stopper's next suspension point, if it had one: either outcome
        // is correct; what matters is that nothing touched the freed server.
    }
}

}  // namespace
