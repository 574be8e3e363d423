#include "greenfiber/signal.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <boost/system/system_error.hpp>

#include "greenfiber/hub.hpp"
#include "greenfiber/loop.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

static_assert(std::is_base_of_v<error, keyboard_interrupt>,
              "keyboard_interrupt is reported by main()'s catch (const std::exception&)");

// The disposition of `signo` right now.
struct sigaction disposition(int signo) {
    struct sigaction sa {};
    ::sigaction(signo, nullptr, &sa);
    return sa;
}

bool is_default(int signo) {
    const struct sigaction sa = disposition(signo);
    return (sa.sa_flags & SA_SIGINFO) == 0 && sa.sa_handler == SIG_DFL;
}

// Sets `signo`'s disposition for one test and puts the old one back afterwards.
class scoped_disposition {
  public:
    scoped_disposition(int signo, void (*handler)(int)) : signo_(signo) {
        struct sigaction sa {};
        sa.sa_handler = handler;
        sigemptyset(&sa.sa_mask);
        ::sigaction(signo_, &sa, &old_);
    }
    ~scoped_disposition() { ::sigaction(signo_, &old_, nullptr); }
    scoped_disposition(const scoped_disposition&) = delete;
    scoped_disposition& operator=(const scoped_disposition&) = delete;

  private:
    int signo_;
    struct sigaction old_ {};
};

class Signal : public greenfiber::testing::io_checked {
  protected:
    void TearDown() override {
        EXPECT_EQ(signal_handler_count(), 0u) << "a signal handler was left installed";
        io_checked::TearDown();
    }
};

TEST_F(Signal, AHandlerRunsOnTheHubAfterTheSignalNotInsideRaise) {
    hub& h = hub::current();
    detail::waiter delivered("SIGUSR1");
    bool ran = false;
    bool on_hub = false;
    int got = 0;
    add_signal_handler(SIGUSR1, [&](int signo) {
        ran = true;
        got = signo;
        on_hub = h.in_hub();
        h.wake(delivered);
    });
    EXPECT_EQ(signal_handler_count(), 1u);
    bool ran_inside_raise = true;
    auto sender = spawn([&] {
        ASSERT_EQ(::raise(SIGUSR1), 0);
        ran_inside_raise = ran;  // the handler must not have run in signal context
    });
    // Nothing else is pending: the signal wait is what keeps the hub blocking (no
    // loop_exit) until the signal is delivered.
    h.park(delivered);
    sender.get();
    EXPECT_FALSE(ran_inside_raise);
    EXPECT_TRUE(ran);
    EXPECT_TRUE(on_hub);
    EXPECT_EQ(got, SIGUSR1);
    EXPECT_TRUE(remove_signal_handler(SIGUSR1));
    EXPECT_TRUE(is_default(SIGUSR1));
}

// The kernel pushes its signal frame (up to 3.5 KiB with AVX-512) on the running stack
// unless the handler asks for the alternate one: a signal raised on a task's small stack
// must not land on it (stack.hpp, "Small stacks"). The 2 KiB stack is the first of its own
// slab, with nothing mapped below: without SA_ONSTACK the frame faults there.
TEST_F(Signal, ASignalRaisedOnASmallStackIsHandledOnTheAlternateStack) {
    hub& h = hub::current();
    detail::waiter delivered("SIGUSR1");
    int got = 0;
    add_signal_handler(SIGUSR1, [&](int signo) {
        got = signo;
        h.wake(delivered);
    });
    EXPECT_NE(disposition(SIGUSR1).sa_flags & SA_ONSTACK, 0);
    auto sender =
        spawn(spawn_options{.name = "small sender", .small_stack = 2048}, [] { ::raise(SIGUSR1); });
    h.park(delivered);
    sender.get();
    EXPECT_EQ(got, SIGUSR1);
    EXPECT_TRUE(remove_signal_handler(SIGUSR1));
}

TEST_F(Signal, AProcessDirectedSignalReachesTheHubToo) {
    hub& h = hub::current();
    detail::waiter delivered("SIGUSR1 by kill()");
    int count = 0;
    add_signal_handler(SIGUSR1, [&] {
        ++count;
        h.wake(delivered);
    });
    auto sender = spawn([] { ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0); });
    h.park(delivered);
    sender.get();
    EXPECT_EQ(count, 1);
    EXPECT_TRUE(remove_signal_handler(SIGUSR1));
}

volatile std::sig_atomic_t prior_handler_calls = 0;
void count_prior(int) {
    prior_handler_calls = prior_handler_calls + 1;
}

TEST_F(Signal, RemovingTheHandlerStopsDeliveryAndRestoresThePriorDisposition) {
    // SIGUSR2's prior disposition is a harmless counting handler: a signal that goes past
    // the hub after the removal never kills the test process.
    scoped_disposition prior(SIGUSR2, &count_prior);
    prior_handler_calls = 0;
    hub& h = hub::current();
    detail::waiter delivered("SIGUSR2");
    int count = 0;
    add_signal_handler(SIGUSR2, [&] {
        ++count;
        h.wake(delivered);
    });
    EXPECT_NE(disposition(SIGUSR2).sa_handler, &count_prior);
    ASSERT_EQ(::raise(SIGUSR2), 0);
    h.park(delivered);
    EXPECT_EQ(count, 1);
    EXPECT_EQ(prior_handler_calls, 0);

    EXPECT_TRUE(remove_signal_handler(SIGUSR2));
    EXPECT_FALSE(remove_signal_handler(SIGUSR2));
    EXPECT_EQ(disposition(SIGUSR2).sa_handler, &count_prior);
    ASSERT_EQ(::raise(SIGUSR2), 0);  // the prior handler runs, inside raise
    EXPECT_EQ(prior_handler_calls, 1);
    // Let the hub poll its reactor a few times: nothing reaches the removed handler.
    for (int i = 0; i < 3; ++i) sleep(1ms);
    EXPECT_EQ(count, 1);
}

TEST_F(Signal, AddingAgainReplacesTheHandlerAndEverySignalIsDelivered) {
    scoped_disposition prior(SIGUSR2, &count_prior);
    hub& h = hub::current();
    detail::waiter delivered("SIGUSR2 twice");
    std::vector<std::string> seen;
    add_signal_handler(SIGUSR2, [&] { seen.push_back("first"); });
    add_signal_handler(SIGUSR2, [&] {
        seen.push_back("second");
        if (seen.size() == 2) h.wake(delivered);
    });
    EXPECT_EQ(signal_handler_count(), 1u);
    // Two signals before the hub runs: each is delivered.
    ASSERT_EQ(::raise(SIGUSR2), 0);
    ASSERT_EQ(::raise(SIGUSR2), 0);
    h.park(delivered);
    EXPECT_EQ(seen, (std::vector<std::string>{"second", "second"}));
    EXPECT_TRUE(remove_signal_handler(SIGUSR2));
}

TEST_F(Signal, AHandlerMayRemoveItselfAndItsExceptionsAreReported) {
    scoped_disposition prior(SIGUSR2, &count_prior);
    std::vector<std::string> reports;
    auto previous = set_report_handler([&](const failure_report& r) {
        try {
            std::rethrow_exception(r.error);
        } catch (const std::exception& e) {
            reports.push_back(std::string(r.message) + ": " + e.what());
        }
    });
    hub& h = hub::current();
    detail::waiter delivered("SIGUSR2");
    add_signal_handler(SIGUSR2, [&] {
        EXPECT_TRUE(remove_signal_handler(SIGUSR2));  // the running handler stays alive
        h.wake(delivered);
        throw std::runtime_error("handler failed");
    });
    ASSERT_EQ(::raise(SIGUSR2), 0);
    h.park(delivered);
    yield_now();
    set_report_handler(std::move(previous));
    EXPECT_EQ(signal_handler_count(), 0u);
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_THAT(reports[0], HasSubstr("handler failed"));
    EXPECT_THAT(reports[0], HasSubstr("signal " + std::to_string(SIGUSR2)));
}

TEST_F(Signal, ASignalThatCannotBeCaughtIsRefused) {
    EXPECT_THROW(add_signal_handler(SIGKILL, [] {}), boost::system::system_error);
    EXPECT_THROW(add_signal_handler(0, [] {}), boost::system::system_error);
    EXPECT_THROW(add_signal_handler(100000, [] {}), boost::system::system_error);
    EXPECT_EQ(signal_handler_count(), 0u);
    EXPECT_FALSE(remove_signal_handler(SIGKILL));
    EXPECT_TRUE(is_default(SIGKILL));
}

TEST_F(Signal, EachHubHandlingASignalRunsItsOwnHandler) {
    scoped_disposition prior(SIGUSR2, &count_prior);
    hub& h = hub::current();
    detail::waiter delivered("SIGUSR2 here");
    std::atomic<bool> other_ready{false};
    std::atomic<bool> other_ran{false};
    std::thread other([&] {
        hub& oh = hub::current();
        detail::waiter mine("SIGUSR2 there");
        add_signal_handler(SIGUSR2, [&] {
            other_ran = true;
            oh.wake(mine);
        });
        other_ready = true;
        oh.park(mine);
        EXPECT_TRUE(remove_signal_handler(SIGUSR2));
    });
    bool here_ran = false;
    add_signal_handler(SIGUSR2, [&] {
        here_ran = true;
        h.wake(delivered);
    });
    while (!other_ready) std::this_thread::yield();
    ASSERT_EQ(::kill(::getpid(), SIGUSR2), 0);
    h.park(delivered);
    other.join();
    EXPECT_TRUE(here_ran);
    EXPECT_TRUE(other_ran);
    EXPECT_TRUE(remove_signal_handler(SIGUSR2));
    EXPECT_EQ(disposition(SIGUSR2).sa_handler, &count_prior);
}

// ---- run()'s Ctrl-C handling ---------------------------------------------------------------

class SigintGuard : public Signal {
  protected:
    // The guard only takes a SIGINT at its default disposition (not ignored), whatever the
    // test runner left.
    scoped_disposition sigint_{SIGINT, SIG_DFL};
};

TEST_F(SigintGuard, TheFirstSigintCancelsTheMainTask) {
    auto main = spawn([] {
        sleep(1h);
        return 1;
    });
    {
        detail::sigint_guard guard(main);
        ASSERT_TRUE(guard.installed());
        EXPECT_FALSE(is_default(SIGINT));
        auto ctrl_c = spawn([] { ASSERT_EQ(::raise(SIGINT), 0); });
        EXPECT_THROW(main.get(), cancelled_error);
        ctrl_c.get();
        EXPECT_TRUE(guard.interrupted());
        EXPECT_TRUE(main.cancelled());
    }
    EXPECT_TRUE(is_default(SIGINT));  // restored by the guard
}

TEST_F(SigintGuard, RunRaisesKeyboardInterruptAfterTheMainTasksCleanup) {
    std::vector<std::string> seen;
    auto main = spawn([&] {
        struct cleanup {
            std::vector<std::string>& seen;
            ~cleanup() { seen.push_back("main cleaned up"); }
        } c{seen};
        sleep(1h);
        return 1;
    });
    auto ctrl_c = spawn([] { ASSERT_EQ(::raise(SIGINT), 0); });
    // What run() does with the hook: wait for the main task under the guard.
    try {
        (void)detail::run_interruptible(
            main, [&] { return event_loop::current().run_until_complete(main); });
        FAIL() << "expected keyboard_interrupt";
    } catch (const keyboard_interrupt& e) {
        seen.push_back("keyboard_interrupt");
        EXPECT_THAT(e.what(), HasSubstr("SIGINT"));
    }
    ctrl_c.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"main cleaned up", "keyboard_interrupt"}));
    EXPECT_TRUE(is_default(SIGINT));
}

TEST_F(SigintGuard, AMainTaskThatHandlesTheCancellationReturnsItsResult) {
    auto main = spawn([] {
        try {
            sleep(1h);
        } catch (const cancelled_error&) {
            // It decides to finish normally (asyncio: no KeyboardInterrupt then).
            return 7;
        }
        return 1;
    });
    auto ctrl_c = spawn([] { ASSERT_EQ(::raise(SIGINT), 0); });
    EXPECT_EQ(detail::run_interruptible(
                  main, [&] { return event_loop::current().run_until_complete(main); }),
              7);
    ctrl_c.get();
}

TEST_F(SigintGuard, ACancellationNotCausedBySigintStaysACancellation) {
    auto main = spawn([] { sleep(1h); });
    auto other = spawn([&] { main.cancel("by someone"); });
    EXPECT_THROW(detail::run_interruptible(
                     main, [&] { return event_loop::current().run_until_complete(main); }),
                 cancelled_error);
    other.get();
}

TEST_F(SigintGuard, StandsAsideWhenSigintIsIgnoredOrHandledOrAlreadyGuarded) {
    auto main = spawn([] {});
    {
        scoped_disposition ignored(SIGINT, SIG_IGN);  // a background job
        detail::sigint_guard guard(main);
        EXPECT_FALSE(guard.installed());
        EXPECT_EQ(disposition(SIGINT).sa_handler, SIG_IGN);
    }
    {
        add_signal_handler(SIGINT, [] {});  // the program handles Ctrl-C itself
        detail::sigint_guard guard(main);
        EXPECT_FALSE(guard.installed());
        EXPECT_TRUE(remove_signal_handler(SIGINT));
    }
    EXPECT_TRUE(is_default(SIGINT));
    {
        detail::sigint_guard outer(main);
        detail::sigint_guard inner(main);  // only one run() per process gets Ctrl-C
        EXPECT_TRUE(outer.installed());
        EXPECT_FALSE(inner.installed());
    }
    EXPECT_TRUE(is_default(SIGINT));
    main.get();
}

TEST_F(SigintGuard, AddsNoWorkToTheHubSoLoopExitStillWorks) {
    detail::waiter never("nothing at all");
    auto main = spawn([&] { hub::current().park(never); });
    {
        detail::sigint_guard guard(main);
        ASSERT_TRUE(guard.installed());
        EXPECT_THROW(main.get(), loop_exit);
    }
    main.cancel();
    EXPECT_THROW(main.get(), cancelled_error);
}

TEST_F(SigintGuard, AHandlerAddedDuringRunTakesOverAndGivesBack) {
    auto main = spawn([] {});
    detail::sigint_guard guard(main);
    ASSERT_TRUE(guard.installed());
    const auto ours = disposition(SIGINT).sa_handler;
    add_signal_handler(SIGINT, [] {});
    EXPECT_NE(disposition(SIGINT).sa_handler, ours);
    EXPECT_TRUE(remove_signal_handler(SIGINT));
    EXPECT_EQ(disposition(SIGINT).sa_handler, ours);
    main.get();
}

using SigintGuardDeathTest = SigintGuard;

TEST_F(SigintGuardDeathTest, TheSecondSigintKillsAtOnceEvenWithTheHubBlocked) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(
        {
            auto main = spawn([] { sleep(1h); });
            detail::sigint_guard guard(main);
            if (!guard.installed()) std::_Exit(3);
            // The main greenlet never lets the hub run: the first SIGINT cannot reach it.
            ::raise(SIGINT);
            ::raise(SIGINT);  // the default action: killed by SIGINT, here
            std::_Exit(4);
        },
        ::testing::KilledBySignal(SIGINT), "");
}

// A bare run_until_complete() (no run()) handles Ctrl-C as run() does: the task is
// cancelled, its cleanup runs, then keyboard_interrupt.
TEST_F(SigintGuard, RunUntilCompleteRaisesKeyboardInterruptAfterTheTasksCleanup) {
    std::vector<std::string> seen;
    auto main = spawn([&] {
        struct cleanup {
            std::vector<std::string>& seen;
            ~cleanup() { seen.push_back("task cleaned up"); }
        } c{seen};
        sleep(1h);
        return 1;
    });
    auto ctrl_c = spawn([] { ASSERT_EQ(::raise(SIGINT), 0); });
    try {
        (void)event_loop::current().run_until_complete(main);
        FAIL() << "expected keyboard_interrupt";
    } catch (const keyboard_interrupt&) {
        seen.push_back("keyboard_interrupt");
    }
    ctrl_c.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"task cleaned up", "keyboard_interrupt"}));
    EXPECT_TRUE(main.cancelled());
    EXPECT_TRUE(is_default(SIGINT));  // the handling ends with the call
}

TEST_F(SigintGuard, RunUntilCompleteOfATaskThatHandlesTheSigintReturnsItsResult) {
    auto main = spawn([] {
        try {
            sleep(1h);
        } catch (const cancelled_error&) {
            return 7;
        }
        return 1;
    });
    auto ctrl_c = spawn([] { ASSERT_EQ(::raise(SIGINT), 0); });
    EXPECT_EQ(event_loop::current().run_until_complete(main), 7);
    ctrl_c.get();
    // A second run_until_complete() handles Ctrl-C afresh.
    auto again = spawn([] { sleep(1h); });
    auto ctrl_c2 = spawn([] { ASSERT_EQ(::raise(SIGINT), 0); });
    EXPECT_THROW(event_loop::current().run_until_complete(again), keyboard_interrupt);
    ctrl_c2.get();
    EXPECT_TRUE(is_default(SIGINT));
}

}  // namespace
