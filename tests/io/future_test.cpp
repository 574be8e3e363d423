#include "greenfiber/future.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/loop.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

using clock_type = std::chrono::steady_clock;

class Future : public greenfiber::testing::io_checked {};

TEST_F(Future, SetValueWakesEveryWaiterWithTheSameValue) {
    promise<std::string> p;
    auto f = p.get_future();
    std::vector<std::string> seen;
    std::vector<task<void>> ts;
    for (int i = 0; i < 3; ++i) {
        ts.push_back(spawn([&seen, i, g = f.share()]() mutable {
            seen.push_back(std::to_string(i) + ":" + g.get());
        }));
    }
    yield_now();
    EXPECT_TRUE(seen.empty());
    EXPECT_FALSE(f.ready());
    p.set_value("done");
    EXPECT_TRUE(f.ready());
    EXPECT_TRUE(f.has_value());
    EXPECT_FALSE(f.has_exception());
    for (auto& t : ts) t.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"0:done", "1:done", "2:done"}));
    EXPECT_EQ(f.get(), "done");  // ready: no wait, and it can be read again
    EXPECT_EQ(f.result(), "done");
}

TEST_F(Future, SettingTwiceIsAnInvalidStateError) {
    promise<int> p;
    p.set_value(1);
    try {
        p.set_value(2);
        FAIL() << "a second set_value() returned";
    } catch (const invalid_state_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("invalid state"));
    }
    EXPECT_THROW(p.set_exception(std::runtime_error("late")), invalid_state_error);
    EXPECT_EQ(p.get_future().get(), 1);

    promise<int> q;
    q.set_exception(std::runtime_error("first"));
    EXPECT_THROW(q.set_value(3), invalid_state_error);
}

TEST_F(Future, AnExceptionIsRethrownByEveryGet) {
    promise<int> p;
    auto f = p.get_future();
    auto waiter = spawn([g = f.share()]() mutable { return g.get(); });
    yield_now();
    p.set_exception(std::runtime_error("bad"));
    EXPECT_THROW((void)waiter.get(), std::runtime_error);
    EXPECT_TRUE(f.has_exception());
    EXPECT_FALSE(f.has_value());
    try {
        (void)f.get();
        FAIL() << "get() of a failed future returned";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "bad");
    }
    EXPECT_NE(f.exception(), nullptr);
}

TEST_F(Future, ResultAndExceptionOfAnUnsetFutureAreInvalidStateErrors) {
    promise<int> p;
    auto f = p.get_future();
    try {
        (void)f.result();
        FAIL() << "result() of an unset future returned";
    } catch (const invalid_state_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("Result is not set."));
    }
    try {
        (void)f.exception();
        FAIL() << "exception() of an unset future returned";
    } catch (const invalid_state_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("Exception is not set."));
    }
    p.set_value(5);
    EXPECT_EQ(f.exception(), nullptr);
}

TEST_F(Future, TimedWaitsReturnNulloptOrFalseOnTimeout) {
    promise<int> p;
    auto f = p.get_future();
    EXPECT_EQ(f.get_for(2ms), std::nullopt);
    EXPECT_FALSE(f.wait_for(2ms));
    EXPECT_FALSE(f.wait_until(clock_type::now() - 1s));
    auto waiter = spawn([g = f.share()]() mutable { return g.get_until(clock_type::now() + 1h); });
    yield_now();
    p.set_value(9);
    EXPECT_EQ(waiter.get(), 9);
    EXPECT_EQ(f.get_for(0ms), 9);

    promise<void> v;
    auto fv = v.get_future();
    EXPECT_FALSE(fv.get_for(2ms));
    v.set_value();
    EXPECT_TRUE(fv.get_for(0ms));
}

TEST_F(Future, AVoidPromiseSignalsCompletion) {
    promise<void> p;
    auto f = p.get_future();
    std::vector<std::string> seen;
    auto t = spawn([&, g = f.share()]() mutable {
        g.get();
        seen.push_back("completed");
    });
    yield_now();
    EXPECT_TRUE(seen.empty());
    p.set_value();
    t.get();
    EXPECT_EQ(seen, std::vector<std::string>{"completed"});
    EXPECT_TRUE(f.has_value());
    EXPECT_THROW(p.set_value(), invalid_state_error);
}

TEST_F(Future, MoveOnlyValuesAreReadByReference) {
    promise<std::unique_ptr<int>> p;
    auto f = p.get_future();
    auto t = spawn([g = f.share()]() mutable { return *g.get() + 1; });
    yield_now();
    p.set_value(std::make_unique<int>(41));
    EXPECT_EQ(t.get(), 42);
    const std::unique_ptr<int>& v = f.get();
    EXPECT_EQ(*v, 41);
}

TEST_F(Future, ADestroyedUnsetPromiseBreaksItsFuture) {
    auto p = std::make_unique<promise<int>>();
    auto f = p->get_future();
    auto waiter = spawn([g = f.share()]() mutable { return g.get(); });
    yield_now();
    p.reset();
    try {
        (void)waiter.get();
        FAIL() << "get() of a broken promise's future returned";
    } catch (const broken_promise& e) {
        EXPECT_THAT(e.what(), HasSubstr("broken promise"));
    }
    EXPECT_TRUE(f.has_exception());

    promise<int> moved;
    auto g = moved.get_future();
    promise<int> other = std::move(moved);  // the result moves with it: not broken
    other.set_value(3);
    EXPECT_EQ(g.get(), 3);
    EXPECT_THROW(moved.set_value(1), greenfiber::error);
}

TEST_F(Future, AnInvalidFutureOrNullExceptionIsMisuse) {
    future<int> f;
    EXPECT_FALSE(f.valid());
    EXPECT_FALSE(f.ready());
    try {
        (void)f.get();
        FAIL() << "get() of an invalid future returned";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("no state"));
    }
    promise<int> p;
    EXPECT_THROW(p.set_exception(std::exception_ptr()), greenfiber::error);
    EXPECT_FALSE(p.ready());
    p.set_value(0);
}

TEST_F(Future, SetFromAHubCallbackWakesTheWaiter) {
    promise<int> p;
    auto f = p.get_future();
    hub::current().call_soon([&] { p.set_value(17); });
    EXPECT_EQ(f.get(), 17);  // the main greenlet waits like any fiber
}

TEST_F(Future, CancelledAfterBeingWokenRaisesAndTheOtherWaitersGetTheValue) {
    promise<int> p;
    auto f = p.get_future();
    std::vector<std::string> seen;
    auto w = [&](std::string name, future<int> g) {
        try {
            seen.push_back(name + " got " + std::to_string(g.get()));
        } catch (const cancelled_error&) {
            seen.push_back(name + " cancelled");
            throw;
        }
    };
    auto a = spawn(w, std::string("a"), f.share());
    auto b = spawn(w, std::string("b"), f.share());
    yield_now();
    p.set_value(1);
    a.cancel();  // woken, cancelled before it runs
    EXPECT_THROW(a.get(), cancelled_error);
    b.get();
    EXPECT_EQ(seen, (std::vector<std::string>{"a cancelled", "b got 1"}));
    EXPECT_EQ(f.get(), 1);  // the result is untouched
}

TEST_F(Future, ACancelledWaiterLeavesBeforeTheResultArrives) {
    promise<int> p;
    auto f = p.get_future();
    auto a = spawn([g = f.share()]() mutable { return g.get(); });
    auto b = spawn([g = f.share()]() mutable { return g.get(); });
    yield_now();
    a.cancel();
    EXPECT_THROW(a.get(), cancelled_error);
    p.set_value(2);
    EXPECT_EQ(b.get(), 2);
}

TEST_F(Future, ATimedGetSetJustAsItTimesOutReturnsTheValue) {
    promise<int> p;
    auto f = p.get_future();
    const auto deadline = clock_type::now() + 2ms;
    auto waiter = spawn([&, g = f.share()]() mutable { return g.get_until(deadline); });
    yield_now();
    event_loop::current().call_at(deadline + 1ms, [&] { p.set_value(8); });
    std::this_thread::sleep_for(10ms);
    EXPECT_EQ(waiter.get(), 8);
}

TEST_F(Future, ManyWaitersEachWakeExactlyOnce) {
    promise<int> p;
    auto f = p.get_future();
    int sum = 0;
    std::vector<task<void>> ts;
    for (int i = 0; i < 100; ++i) {
        ts.push_back(spawn([&sum, i, g = f.share()]() mutable {
            for (int y = 0; y < i % 3; ++y) yield_now();
            sum += g.get();
        }));
    }
    yield_now();
    p.set_value(1);
    for (auto& t : ts) t.get();
    EXPECT_EQ(sum, 100);
}

// A value that records the thread it last arrived on (constructed or moved).
struct arrival {
    std::thread::id on = std::this_thread::get_id();
    int v = 0;
    explicit arrival(int x) : v(x) {}
    arrival(arrival&& o) noexcept : v(o.v) {}
    arrival(const arrival& o) : v(o.v) {}
};

TEST_F(Future, SetFromAnotherThreadIsStoredAndWokenOnThePromisesHub) {
    promise<arrival> p;
    auto f = p.get_future();
    auto waiter = spawn([f = f.share()]() mutable {
        // Bounded: a wake-up lost to the sleeping reactor ends it as a failure, not a hang.
        return f.get_for(10s);
    });
    yield_now();
    std::thread other([&] { p.set_value(7); });
    other.join();
    const std::optional<arrival> got = waiter.get();
    ASSERT_TRUE(got.has_value()) << "the waiter was not woken";
    EXPECT_EQ(got->v, 7);
    // The value reached the shared state on the hub's thread, not on the foreign one.
    EXPECT_EQ(f.result().on, std::this_thread::get_id());
}

TEST_F(Future, AnExceptionSetFromAnotherThreadWakesTheWaiter) {
    promise<int> p;
    auto f = p.get_future();
    auto waiter = spawn([f = f.share()]() mutable { return f.wait_for(10s); });
    yield_now();
    std::thread other([&] { p.set_exception(std::runtime_error("from afar")); });
    other.join();
    EXPECT_TRUE(waiter.get());
    EXPECT_THROW(f.result(), std::runtime_error);
}

TEST_F(Future, APromiseDestroyedOnAnotherThreadIsBrokenOnItsHub) {
    auto p = std::make_unique<promise<int>>();
    auto f = p->get_future();
    auto waiter = spawn([f = f.share()]() mutable { return f.wait_for(10s); });
    yield_now();
    std::thread other([&] { p.reset(); });
    other.join();
    EXPECT_TRUE(waiter.get()) << "the waiter was not woken";
    EXPECT_THROW(f.result(), broken_promise);
}

TEST_F(Future, SettingTwiceFromAnotherThreadIsReportedNotLost) {
    std::vector<std::string> reports;
    auto previous = hub::current().set_exception_handler(
        [&](const failure_report& r) { reports.emplace_back(r.message); });
    promise<int> p;
    auto f = p.get_future();
    p.set_value(1);
    std::thread other([&] { p.set_value(2); });
    other.join();
    EXPECT_EQ(f.get(), 1);
    for (int i = 0; i < 10 && reports.empty(); ++i) sleep(1ms);
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_THAT(reports[0], HasSubstr("already set"));
    hub::current().set_exception_handler(std::move(previous));
}

TEST_F(Future, TimedWaitsTakeAnyDurationAndSaturate) {
    promise<int> p;
    auto f = p.get_future();
    // Far-future deadlines: still waiting when the value comes.
    auto w1 = spawn([f = f.share()]() mutable { return f.wait_for(std::chrono::hours::max()); });
    auto w2 = spawn([f = f.share()]() mutable {
        return f.get_for(std::chrono::steady_clock::duration::max());
    });
    auto w3 = spawn([f = f.share()]() mutable {
        return f.wait_for(std::chrono::duration<double, std::ratio<86400>>(1e300));
    });
    // Nothing in the past or now waits.
    EXPECT_FALSE(f.wait_for(std::chrono::hours::min()));
    EXPECT_FALSE(f.get_for(std::chrono::nanoseconds(-1)).has_value());
    EXPECT_FALSE(f.wait_for(std::chrono::seconds(0)));
    sleep(5ms);
    EXPECT_FALSE(w1.done());
    EXPECT_FALSE(w2.done());
    EXPECT_FALSE(w3.done());
    p.set_value(5);
    EXPECT_TRUE(w1.get());
    EXPECT_EQ(w2.get(), 5);
    EXPECT_TRUE(w3.get());
}

// ---- fulfilled by a plain std::thread ----------------------------------------------------------

// The waiting main greenlet is the only thing on the hub: nothing ready, no timer, no I/O.
// It must wait for the other thread, not get loop_exit.
TEST_F(Future, AFiberWaitsForAPromiseThatAPlainThreadFulfilsLater) {
    promise<int> p;
    auto f = p.get_future();
    std::thread other([p = std::move(p)]() mutable {
        std::this_thread::sleep_for(20ms);  // the hub runs out of everything else meanwhile
        p.set_value(5);
    });
    EXPECT_EQ(f.get(), 5);
    other.join();
}

TEST_F(Future, APromiseAPlainThreadDropsBreaksTheWaitInsteadOfLoopExit) {
    auto p = std::make_unique<promise<int>>();
    auto f = p->get_future();
    std::thread other([p = std::move(p)]() mutable {
        std::this_thread::sleep_for(20ms);
        p.reset();
    });
    EXPECT_THROW(f.get(), broken_promise);
    other.join();
}

TEST_F(Future, AWaitingFiberHoldsItsHubOnlyWhileItWaits) {
    hub& h = hub::current();
    promise<int> p;
    auto f = p.get_future();
    auto waiter = spawn([f = f.share()]() mutable { return f.get(); });
    yield_now();
    EXPECT_EQ(h.handles(), 1u);
    p.set_value(1);
    EXPECT_EQ(waiter.get(), 1);
    EXPECT_EQ(h.handles(), 0u);
    // A cancelled waiter lets go too.
    promise<int> q;
    auto g = q.get_future();
    auto cancelled = spawn([g = g.share()]() mutable { return g.get(); });
    yield_now();
    cancelled.cancel();
    EXPECT_THROW(cancelled.get(), cancelled_error);
    EXPECT_EQ(h.handles(), 0u);
}

// Many threads each fulfil their own promise while fibers wait: every value arrives on the
// promise's hub, no wait is called hopeless. Run repeated to shake out races.
TEST_F(Future, ManyPlainThreadsFulfilTheirPromisesWhileFibersWait) {
    constexpr int n = 8;
    std::vector<std::thread> threads;
    std::vector<task<int>> waiters;
    for (int i = 0; i < n; ++i) {
        promise<int> p;
        waiters.push_back(spawn([f = p.get_future()]() mutable { return f.get(); }));
        threads.emplace_back([i, p = std::move(p)]() mutable { p.set_value(i); });
    }
    for (int i = 0; i < n; ++i) EXPECT_EQ(waiters[i].get(), i);
    for (auto& t : threads) t.join();
}

}  // namespace
