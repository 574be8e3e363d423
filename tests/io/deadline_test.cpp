#include "greenfiber/deadline.hpp"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <ratio>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "greenfiber/combinators.hpp"
#include "greenfiber/loop.hpp"
#include "greenfiber/queue.hpp"
#include "greenfiber/socket.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "greenfiber/use_fiber.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using boost::system::error_code;
using clock_type = std::chrono::steady_clock;

namespace {

class Deadline : public greenfiber::testing::io_checked {};

using days_d = std::chrono::duration<double, std::ratio<86400>>;
using thirds = std::chrono::duration<std::int64_t, std::ratio<1, 3>>;

TEST(DeadlineConversion, SaturatesInsteadOfOverflowing) {
    using detail::to_steady_duration;
    using ns = clock_type::duration;
    EXPECT_EQ(to_steady_duration(std::chrono::hours::max()), ns::max());
    EXPECT_EQ(to_steady_duration(std::chrono::hours::min()), ns::min());
    EXPECT_EQ(to_steady_duration(std::chrono::seconds::max()), ns::max());
    EXPECT_EQ(to_steady_duration(ns::max()), ns::max());
    EXPECT_EQ(to_steady_duration(ns::min()), ns::min());
    EXPECT_EQ(to_steady_duration(thirds::max()), ns::max());  // count * 10^9 / 3 needs 128 bits
    EXPECT_EQ(to_steady_duration(days_d(1e300)), ns::max());
    EXPECT_EQ(to_steady_duration(days_d(-1e300)), ns::min());
    EXPECT_EQ(to_steady_duration(days_d(std::numeric_limits<double>::infinity())), ns::max());
    EXPECT_EQ(to_steady_duration(days_d(std::nan(""))), ns::zero());
    // Values that fit are exact.
    EXPECT_EQ(to_steady_duration(std::chrono::hours(2)), std::chrono::hours(2));
    EXPECT_EQ(to_steady_duration(-1500ms), -1500ms);
    EXPECT_EQ(to_steady_duration(thirds(3)), 1s);
    EXPECT_EQ(to_steady_duration(std::chrono::duration<std::int64_t, std::pico>(
                  std::numeric_limits<std::int64_t>::max())),
              ns(std::numeric_limits<std::int64_t>::max() / 1000));
    EXPECT_EQ(to_steady_duration(std::chrono::duration<double>(0.25)), 250ms);
    EXPECT_EQ(to_steady_duration(
                  std::chrono::duration<std::uint64_t>(std::numeric_limits<std::uint64_t>::max())),
              ns::max());
}

TEST(DeadlineConversion, FarMeansNeverAndPastMeansNow) {
    using detail::deadline_after;
    EXPECT_EQ(deadline_after(std::chrono::hours::max()), clock_type::time_point::max());
    EXPECT_EQ(deadline_after(clock_type::duration::max()), clock_type::time_point::max());
    EXPECT_EQ(deadline_after(days_d(1e300)), clock_type::time_point::max());
    EXPECT_EQ(deadline(std::chrono::hours::max()).at(), clock_type::time_point::max());
    // Within a human lifetime: exact, and in the future.
    const auto before = clock_type::now();
    const auto in_a_year = deadline_after(std::chrono::hours(24 * 365));
    EXPECT_GE(in_a_year, before + std::chrono::hours(24 * 365));
    EXPECT_LT(in_a_year, clock_type::time_point::max());
    // Zero, negative, the most negative, NaN: now (already passed by the time it is used).
    for (const auto tp :
         {deadline_after(0s), deadline_after(-1ns), deadline_after(std::chrono::hours::min()),
          deadline_after(clock_type::duration::min()), deadline_after(days_d(-1e300)),
          deadline_after(days_d(std::nan("")))}) {
        EXPECT_GE(tp, before);
        EXPECT_LE(tp, clock_type::now());
    }
}

// Starts every kind of timed wait of the library with duration `d`, each in its own task,
// and a loop timer; returns the tasks. Each task ends with what its wait returned: true
// for "it timed out".
template <class D>
struct every_wait {
    explicit every_wait(D d) {
        m.lock();  // held: lock_for() must wait
        auto add = [this](std::function<bool()> fn) { tasks.push_back(spawn(std::move(fn))); };
        add([d] {
            const auto before = clock_type::now();
            sleep(d);
            return clock_type::now() >= before;  // returned at all: "timed out"
        });
        add([this, d] { return !ev.wait_for(d); });
        add([this, d] { return !m.lock_for(d); });
        add([this, d] { return !sem.acquire_for(d); });
        add([this, d] { return !q.get_for(d).has_value(); });
        add([this, d] {
            std::lock_guard<condition> g(cond);
            return !cond.wait_for(d);
        });
        add([d] {
            auto inner = spawn([] { sleep(std::chrono::hours(1)); });
            try {
                wait_for(inner, d);
                return false;
            } catch (const timeout_error&) {
                return true;
            }
        });
        add([d] {
            try {
                timeout(d, [] { sleep(std::chrono::hours(1)); });
                return false;
            } catch (const timeout_error&) {
                return true;
            }
        });
        add([d] {
            asio::steady_timer timer(hub::current().context(), std::chrono::hours(1));
            error_code ec;
            timer.async_wait(use_fiber.until(d)[ec]);
            return ec == asio::error::timed_out;
        });
        add([this, d] {
            std::array<char, 4> buf{};
            error_code ec;
            (void)pair.a.read_some(asio::buffer(buf), d, ec);
            return ec == asio::error::timed_out;
        });
        later = event_loop::current().call_later(d, [this] { fired = true; });
    }
    ~every_wait() {
        later.cancel();
        m.unlock();
    }

    event ev;
    mutex m;
    semaphore sem{0};
    queue<int> q;
    condition cond;
    greenfiber::testing::tcp_pair pair;
    std::vector<task<bool>> tasks;
    bool fired = false;
    timer_handle later;
};

template <class D>
void expect_still_pending(D d) {
    every_wait<D> w(d);
    // Much later than a wait that was wrongly due "now" (an overflow wrapping to the past).
    sleep(20ms);
    EXPECT_FALSE(w.fired) << "call_later";
    for (std::size_t i = 0; i < w.tasks.size(); ++i) {
        EXPECT_FALSE(w.tasks[i].done()) << "wait #" << i << " ended";
        w.tasks[i].cancel();
    }
    for (auto& t : w.tasks) EXPECT_THROW((void)t.get(), cancelled_error);
}

template <class D>
void expect_timed_out_at_once(D d) {
    every_wait<D> w(d);
    for (std::size_t i = 0; i < w.tasks.size(); ++i) {
        EXPECT_TRUE(w.tasks[i].get()) << "wait #" << i << " did not time out";
    }
    // Due now: the loop timer runs at the next turn of the reactor.
    for (int i = 0; i < 100 && !w.fired; ++i) sleep(1ms);
    EXPECT_TRUE(w.fired) << "call_later";
}

TEST_F(Deadline, FarFutureDurationsWaitPracticallyForever) {
    expect_still_pending(clock_type::duration::max());
    expect_still_pending(std::chrono::hours::max());
    expect_still_pending(std::chrono::seconds::max());
    expect_still_pending(thirds::max());
    expect_still_pending(days_d(1e300));
}

TEST_F(Deadline, ZeroAndNegativeDurationsTimeOutAtOnce) {
    expect_timed_out_at_once(0s);
    expect_timed_out_at_once(-1ns);
    expect_timed_out_at_once(std::chrono::hours::min());
    expect_timed_out_at_once(clock_type::duration::min());
    expect_timed_out_at_once(days_d(-1e300));
}

TEST_F(Deadline, ASocketTimeoutTooLongForTheClockIsNoTimeout) {
    greenfiber::testing::tcp_pair pair;
    pair.a.set_timeout(std::chrono::hours::max());
    auto reader = spawn([&] {
        std::array<char, 2> buf{};
        return pair.a.read_some(asio::buffer(buf));
    });
    sleep(20ms);
    EXPECT_FALSE(reader.done());
    pair.b.write_some(asio::buffer("ok", 2));
    EXPECT_EQ(reader.get(), 2u);
}

}  // namespace
