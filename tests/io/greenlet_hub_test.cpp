// greenlet.hpp and hub.hpp together: a fiber parked by the hub is resumed only by the hub.
// A user's raw switch carrying a value to it (switch_to, switch_to_then, switch_to_parent,
// a switch to a dead greenlet whose chain leads to it) throws greenfiber::error in the
// caller, naming both greenlets and what the target waits for, and switches nowhere
// (gevent's InvalidSwitchError); the wait goes on and ends as it would have. Exceptions
// still end a wait (cancel, kill), and greenlets that sleep inside a task still hand
// values to the task that drives them.

#include <greenfiber/greenlet.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "greenfiber/error.hpp"
#include "greenfiber/hub.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

class GreenletHub : public greenfiber::testing::io_checked {};

std::string error_message(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const greenfiber::error& e) {
        return e.what();
    }
    return "(no greenfiber::error was thrown)";
}

TEST_F(GreenletHub, RawSwitchFromMainIntoAParkedTaskThrowsNamingBothAndWhatItWaitsFor) {
    event ev;
    greenlet fiber;
    std::vector<std::string> log;
    auto t = spawn(spawn_options{.name = "waiter"}, [&] {
        fiber = greenlet::current();
        ev.wait();
        log.push_back("woken by the event");
    });
    yield_now();  // the task runs and parks in ev.wait()
    ASSERT_TRUE(fiber);
    const std::size_t parked = hub::current().parked();
    const std::string msg = error_message([&] { (void)fiber.switch_to(42); });
    EXPECT_THAT(msg, HasSubstr(fiber.describe()));
    EXPECT_THAT(msg, HasSubstr("the main greenlet"));
    EXPECT_THAT(msg, HasSubstr("waiting for an event"));
    EXPECT_TRUE(log.empty()) << "the raw switch woke the task early";
    EXPECT_EQ(hub::current().parked(), parked);
    ev.set();
    t.get();
    EXPECT_EQ(log, (std::vector<std::string>{"woken by the event"}));
}

TEST_F(GreenletHub, RawSwitchFromOneTaskIntoAnotherSleepingOneIsRefusedAndTheSleepEnds) {
    greenlet sleeper_fiber;
    std::vector<std::string> log;
    auto sleeper = spawn(spawn_options{.name = "sleeper"}, [&] {
        sleeper_fiber = greenlet::current();
        sleep(50ms);
        log.push_back("slept");
    });
    auto intruder = spawn(spawn_options{.name = "intruder"}, [&] {
        yield_now();  // the sleeper has parked by now
        const std::string msg =
            error_message([&] { (void)sleeper_fiber.switch_to(std::string("wake up")); });
        EXPECT_THAT(msg, HasSubstr("'intruder'"));
        EXPECT_THAT(msg, HasSubstr("'sleeper'"));
        EXPECT_THAT(msg, HasSubstr("a timer (sleep)"));
        log.push_back("refused");
    });
    intruder.get();
    sleeper.get();
    EXPECT_EQ(log, (std::vector<std::string>{"refused", "slept"}));
}

TEST_F(GreenletHub, SwitchToThenIntoAParkedTaskIsRefusedAndItsActionDoesNotRun) {
    event ev;
    greenlet fiber;
    auto t = spawn([&] {
        fiber = greenlet::current();
        ev.wait();
    });
    yield_now();
    bool ran = false;
    const std::string msg = error_message([&] {
        (void)fiber.switch_to_then(
            value(1), [](void* p) noexcept { *static_cast<bool*>(p) = true; }, &ran);
    });
    EXPECT_THAT(msg, HasSubstr("parked by the hub"));
    EXPECT_FALSE(ran);
    ev.set();
    t.get();
}

// A switch to a dead greenlet goes up its parent chain: a parked task there refuses too.
TEST_F(GreenletHub, SwitchToADeadChildOfAParkedTaskIsRefusedInTheCaller) {
    event ev;
    greenlet child;
    bool resumed_early = false;
    auto t = spawn([&] {
        child = greenlet([] { return 1; });  // its parent is this task's fiber
        EXPECT_EQ(child.switch_to().get<int>(), 1);
        ev.wait();
        resumed_early = !ev.is_set();
    });
    yield_now();
    ASSERT_TRUE(child.dead());
    EXPECT_THAT(error_message([&] { (void)child.switch_to(7); }),
                HasSubstr("waiting for an event"));
    EXPECT_THAT(error_message([&] { (void)child.throw_in(); }),  // arrives as a value
                HasSubstr("waiting for an event"));
    ev.set();
    t.get();
    EXPECT_FALSE(resumed_early);
}

// A greenlet driven by a task (a generator) switches to the task's fiber while the task is
// suspended in that raw switch, not parked: nothing is refused, even when the greenlet
// itself sleeps in between (the hub then resumes the greenlet, not the task).
TEST_F(GreenletHub, GreenletThatSleepsInsideATaskStillHandsValuesToTheTask) {
    auto t = spawn([] {
        greenlet gen([] {
            sleep(1ms);
            (void)greenlet::switch_to_parent(1);
            sleep(1ms);
            return 2;
        });
        int sum = gen.switch_to().get<int>();
        sum += gen.switch_to().get<int>();
        return sum;
    });
    EXPECT_EQ(t.get(), 3);
}

// Refused while the wake-up is already queued (the hub has not resumed the task yet): the
// task then resumes exactly once, from the hub.
TEST_F(GreenletHub, RefusedWhileItsWakeUpIsQueuedThenResumesOnce) {
    event ev;
    greenlet fiber;
    int resumed = 0;
    auto t = spawn([&] {
        fiber = greenlet::current();
        ev.wait();
        ++resumed;
    });
    yield_now();
    ev.set();  // queued in the hub's ready queue, not yet run
    EXPECT_THAT(error_message([&] { (void)fiber.switch_to(); }), HasSubstr("parked by the hub"));
    EXPECT_EQ(resumed, 0);
    t.get();
    EXPECT_EQ(resumed, 1);
}

// After a refused switch the wait is intact: cancelling the task still ends it.
TEST_F(GreenletHub, ParkedTaskCanStillBeCancelledAfterARefusedSwitch) {
    event ev;
    greenlet fiber;
    bool unwound = false;
    auto t = spawn([&] {
        fiber = greenlet::current();
        try {
            ev.wait();
        } catch (const cancelled_error&) {
            unwound = true;
            throw;
        }
    });
    yield_now();
    EXPECT_THAT(error_message([&] { (void)fiber.switch_to(); }), HasSubstr("parked by the hub"));
    t.cancel();
    EXPECT_THROW(t.get(), cancelled_error);
    EXPECT_TRUE(unwound);
}

// The main greenlet parked in get() is refused too. (A child finishing into a parked parent
// is in tests/fibers/greenlet_test.cpp: the error ends the parent's wait instead.)
TEST_F(GreenletHub, MainGreenletParkedInGetIsRefusedToo) {
    greenlet main = greenlet::current();
    std::string refused;
    auto t = spawn([&] {
        yield_now();  // main is parked in get() now
        refused = error_message([&] { (void)main.switch_to(1); });
    });
    t.get();
    EXPECT_THAT(refused, HasSubstr("the main greenlet"));
    EXPECT_THAT(refused, HasSubstr("parked by the hub"));
}

}  // namespace
