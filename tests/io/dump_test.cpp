// introspect.hpp: dump() of every fiber with its stack, and the dump on a signal.

#include "greenfiber/introspect.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <array>
#include <chrono>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "greenfiber/hub.hpp"
#include "greenfiber/signal.hpp"
#include "greenfiber/socket.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;
namespace asio = boost::asio;

namespace {

class Dump : public greenfiber::testing::io_checked {};

using greenfiber::testing::tcp_pair;

std::string dump_text() {
    std::ostringstream os;
    dump(os);
    return os.str();
}

// The block of the dump whose header line starts with `header` ("" if none): that line and
// its frames, up to the blank line that ends every block.
std::string block(const std::string& text, std::string_view header) {
    std::size_t at = 0;
    while (at < text.size()) {
        std::size_t end = text.find("\n\n", at);
        if (end == std::string::npos) end = text.size();
        if (std::string_view(text).substr(at, end - at).starts_with(header))
            return text.substr(at, end - at);
        at = end + 2;
    }
    return {};
}

spawn_options named(std::string name) {
    return spawn_options{.name = std::move(name)};
}

// The frames each dump must name: noinline, and not tail calls.

[[gnu::noinline]] void sleep_in_named_frame() {
    sleep(1h);
    asm volatile("" ::: "memory");
}

[[gnu::noinline]] void event_wait_in_named_frame(event& ev) {
    ev.wait();
    asm volatile("" ::: "memory");
}

[[gnu::noinline]] std::size_t read_in_named_frame(tcp::socket& s, std::array<char, 16>& buf) {
    const std::size_t n = s.read_some(asio::buffer(buf));
    asm volatile("" ::: "memory");
    return n;
}

[[gnu::noinline]] std::string dump_in_named_frame() {
    std::string s = dump_text();
    asm volatile("" ::: "memory");
    return s;
}

TEST_F(Dump, ParkedTasksShowNameStateSpawnSiteAndTheirOwnFrames) {
    tcp_pair p;
    event ev;
    const int sleeper_line = __LINE__ + 1;
    auto sleeper = spawn({.name = "sleeper"}, [] { sleep_in_named_frame(); });
    auto waiter = spawn(named("waiter"), [&] { event_wait_in_named_frame(ev); });
    auto reader = spawn(named("reader"), [&] {
        std::array<char, 16> buf{};
        const std::size_t n = read_in_named_frame(p.server, buf);
        return std::string(buf.data(), n);
    });
    yield_now();  // each runs to its wait
    const std::string text = dump_text();

    EXPECT_THAT(text, HasSubstr("3 unfinished tasks"));
    const std::string s = block(text, "task 'sleeper'");
    // Name, state, how long, the wait in words, and the spawn() line itself.
    EXPECT_THAT(s, HasSubstr("task 'sleeper' parked for "));
    EXPECT_THAT(s, HasSubstr(" s, waiting for sleep until +"));
    EXPECT_THAT(s, HasSubstr("; spawned at " + std::string(__FILE__) + ":" +
                             std::to_string(sleeper_line) + ":"));
    EXPECT_THAT(s, HasSubstr("sleep_in_named_frame"));
    EXPECT_THAT(s, HasSubstr("dump_test.cpp:"));
    EXPECT_THAT(s, Not(HasSubstr("event_wait_in_named_frame")));
    const std::string w = block(text, "task 'waiter'");
    EXPECT_THAT(w, HasSubstr(" s, waiting for event"));
    EXPECT_THAT(w, HasSubstr("event_wait_in_named_frame"));
    EXPECT_THAT(w, Not(HasSubstr("sleep_in_named_frame")));
    const std::string r = block(text, "task 'reader'");
    EXPECT_THAT(r, HasSubstr(" s, waiting for read_some on 127.0.0.1:"));
    EXPECT_THAT(r, HasSubstr("read_in_named_frame"));
    // The greenlets that are not tasks: the hub, suspended in its loop, and the caller.
    const std::string h = block(text, "greenlet 'hub'");
    EXPECT_THAT(h, HasSubstr("(the hub) suspended"));
    EXPECT_THAT(h, HasSubstr("greenfiber::hub::loop"));
    const std::string m = block(text, "the main greenlet");
    EXPECT_THAT(m, HasSubstr("running (it called dump)"));
    EXPECT_THAT(m, HasSubstr("ParkedTasksShowNameStateSpawnSiteAndTheirOwnFrames"));
    // The caller's stack starts at the call of dump(), not inside it.
    EXPECT_THAT(m, HasSubstr("#0 (anonymous namespace)::dump_text()"));

    // Dumped fibers go on as if nothing happened, however they are woken next.
    ev.set();
    p.client.write(asio::buffer(std::string("hello")));
    waiter.get();
    EXPECT_EQ(reader.get(), "hello");
    EXPECT_TRUE(sleeper.cancel());
    EXPECT_THROW(sleeper.get(), cancelled_error);
}

TEST_F(Dump, FromInsideATaskShowsItRunningAndTheMainGreenletParkedInGet) {
    auto other = spawn(named("sleeper"), [] { sleep_in_named_frame(); });
    auto dumper = spawn(named("dumper"), [] { return dump_in_named_frame(); });
    const std::string text = dumper.get();
    const std::string d = block(text, "task 'dumper'");
    EXPECT_THAT(d, HasSubstr("running (it called dump)"));
    EXPECT_THAT(d, HasSubstr("dump_in_named_frame"));
    EXPECT_THAT(block(text, "task 'sleeper'"), HasSubstr("sleep_in_named_frame"));
    const std::string m = block(text, "the main greenlet");
    EXPECT_THAT(m, HasSubstr("parked, waiting for"));
    EXPECT_THAT(m, HasSubstr("FromInsideATaskShowsItRunningAndTheMainGreenletParkedInGet"));
    EXPECT_THAT(block(text, "greenlet 'hub'"), HasSubstr("greenfiber::hub::run_ready"));
    // The dumper is listed once, as a task.
    EXPECT_THAT(text, Not(HasSubstr("the caller of dump")));
    other.cancel();
    EXPECT_THROW(other.get(), cancelled_error);
}

TEST_F(Dump, AFiberWokenButNotYetRunShowsAsWokenAndStillResumes) {
    event ev;
    auto t = spawn(named("woken"), [&] {
        event_wait_in_named_frame(ev);
        return 5;
    });
    yield_now();
    ev.set();  // queued to run, not run yet
    const std::string b = block(dump_text(), "task 'woken'");
    EXPECT_THAT(b, HasSubstr("woken, queued to run (it waited for an event)"));
    EXPECT_THAT(b, HasSubstr("event_wait_in_named_frame"));
    EXPECT_EQ(t.get(), 5);
}

TEST_F(Dump, ACancellationAfterADumpIsRaisedWhereTheTaskWaits) {
    bool caught_in_frame = false;
    auto t = spawn(named("victim"), [&] {
        try {
            sleep_in_named_frame();
        } catch (const cancelled_error&) {
            caught_in_frame = true;
            throw;
        }
    });
    yield_now();
    (void)dump_text();
    (void)dump_text();  // twice: the second capture runs on top of the first
    EXPECT_TRUE(t.cancel());
    EXPECT_THROW(t.get(), cancelled_error);
    EXPECT_TRUE(caught_in_frame);
}

TEST_F(Dump, ATaskNotStartedYetHasNoStack) {
    auto t = spawn(named("later"), [] { return 1; });
    const std::string b = block(dump_text(), "task 'later'");
    EXPECT_THAT(b, HasSubstr("pending, queued for its first run"));
    EXPECT_THAT(b, HasSubstr("(no stack)"));
    EXPECT_EQ(t.get(), 1);
}

[[gnu::noinline]] value switched_away_in_named_frame(greenlet& inner) {
    value v = inner.switch_to();
    asm volatile("" ::: "memory");
    return v;
}

TEST_F(Dump, APlainGreenletOnTheCallersParentChainIsListedWithItsFrames) {
    std::string text;
    greenlet outer(
        [&](value) {
            greenlet inner([&](value) {
                text = dump_text();
                return value();
            });
            (void)switched_away_in_named_frame(inner);
            return value();
        },
        greenlet::options{"outer", 0});
    (void)outer.switch_to();
    const std::string o = block(text, "greenlet 'outer'");
    EXPECT_THAT(o, HasSubstr("suspended (it switched to another greenlet)"));
    EXPECT_THAT(o, HasSubstr("switched_away_in_named_frame"));
    EXPECT_THAT(text, HasSubstr("(the caller of dump, or its parent) running (it called dump)"));
}

TEST_F(Dump, AThreadWithoutAHubDumpsItsMainGreenletAndCreatesNoHub) {
    std::string text;
    bool hub_after = true;
    std::thread th([&] {
        text = dump_in_named_frame();
        hub_after = detail::hub_if_any() != nullptr;
    });
    th.join();
    EXPECT_THAT(text, HasSubstr("0 unfinished tasks, no hub"));
    const std::string m = block(text, "the main greenlet");
    EXPECT_THAT(m, HasSubstr("running (it called dump)"));
    EXPECT_THAT(m, HasSubstr("dump_in_named_frame"));
    EXPECT_FALSE(hub_after);
}

TEST_F(Dump, TheSignalPathDumpsOnTheHubIntoTheSink) {
    std::vector<std::string> received;
    event got;
    enable_dump_on_signal(SIGUSR1, [&](std::string_view text) {
        received.emplace_back(text);
        got.set();
    });
    auto sleeper = spawn({.name = "sleeper"}, [] { sleep_in_named_frame(); });
    yield_now();
    ASSERT_EQ(raise(SIGUSR1), 0);
    ASSERT_TRUE(got.wait_for(60s));
    ASSERT_EQ(received.size(), 1u);
    const std::string& text = received[0];
    EXPECT_THAT(block(text, "task 'sleeper'"), HasSubstr("sleep_in_named_frame"));
    // The dump ran on the hub, between fibers: the test body waits on the event.
    EXPECT_THAT(block(text, "greenlet 'hub'"), HasSubstr("running (it called dump)"));
    EXPECT_THAT(block(text, "the main greenlet"), HasSubstr("parked, waiting for an event"));
    EXPECT_TRUE(disable_dump_on_signal(SIGUSR1));
    EXPECT_FALSE(disable_dump_on_signal(SIGUSR1));
    EXPECT_EQ(signal_handler_count(), 0u);
    sleeper.cancel();
    EXPECT_THROW(sleeper.get(), cancelled_error);
}

}  // namespace
