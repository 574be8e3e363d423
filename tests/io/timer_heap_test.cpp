#include "greenfiber/detail/timer_heap.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "greenfiber/hub.hpp"
#include "greenfiber/loop.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

// Counts the program's operator new calls while `counting` is set, so that a test can say
// "this stretch allocated nothing" (malloc underneath, so the sanitizers still see it all).
namespace {
std::atomic<bool> counting{false};
std::atomic<std::size_t> news{0};
void* counted_new(std::size_t n) {
    if (counting.load(std::memory_order_relaxed)) news.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
    throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) {
    return counted_new(n);
}
void* operator new[](std::size_t n) {
    return counted_new(n);
}
// The nothrow forms too: the library frees what they return with the plain delete below.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    try {
        return counted_new(n);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    try {
        return counted_new(n);
    } catch (...) {
        return nullptr;
    }
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}

using namespace greenfiber;
using namespace std::chrono_literals;
using detail::timer_heap;
using detail::timer_node;
using clock_type = std::chrono::steady_clock;

namespace {

const clock_type::time_point t0 = clock_type::time_point(1h);

// Pops everything due at time_point::max() and returns the nodes in order.
std::vector<timer_node*> drain(timer_heap& h) {
    std::vector<timer_node*> out;
    while (timer_node* n = h.pop_due(clock_type::time_point::max())) out.push_back(n);
    return out;
}

TEST(TimerHeap, AnEmptyHeapHasNothingDueAndRemoveOfAnUnlinkedNodeDoesNothing) {
    timer_heap h;
    EXPECT_TRUE(h.empty());
    EXPECT_EQ(h.top(), nullptr);
    EXPECT_EQ(h.pop_due(clock_type::time_point::max()), nullptr);
    timer_node n;
    EXPECT_FALSE(n.linked());
    h.remove(n);  // never linked
    h.push(n, t0);
    h.remove(n);
    h.remove(n);  // twice
    EXPECT_FALSE(n.linked());
    EXPECT_TRUE(h.empty());
}

TEST(TimerHeap, PopsByDeadlineOnlyWhenDueAndEqualDeadlinesInPushOrder) {
    timer_heap h;
    std::vector<timer_node> n(6);
    h.push(n[0], t0 + 3s);
    h.push(n[1], t0 + 1s);
    h.push(n[2], t0 + 3s);
    h.push(n[3], t0 + 2s);
    h.push(n[4], t0 + 1s);
    h.push(n[5], t0 + 3s);
    EXPECT_EQ(h.size(), 6u);
    EXPECT_EQ(h.earliest(), t0 + 1s);
    EXPECT_EQ(h.top(), &n[1]);
    EXPECT_EQ(h.pop_due(t0), nullptr);  // nothing due yet
    EXPECT_EQ(h.pop_due(t0 + 1s), &n[1]);
    EXPECT_EQ(h.pop_due(t0 + 1s), &n[4]);
    EXPECT_EQ(h.pop_due(t0 + 1s), nullptr);
    EXPECT_EQ(drain(h), (std::vector<timer_node*>{&n[3], &n[0], &n[2], &n[5]}));
    for (const auto& x : n) EXPECT_FALSE(x.linked());
}

TEST(TimerHeap, TheExtremesOfTheClockAreOrdinaryDeadlines) {
    timer_heap h;
    timer_node lo, hi, mid;
    h.push(hi, clock_type::time_point::max());
    h.push(mid, t0);
    h.push(lo, clock_type::time_point::min());
    EXPECT_EQ(h.pop_due(clock_type::time_point::min()), &lo);
    EXPECT_EQ(h.pop_due(t0), &mid);
    EXPECT_EQ(h.pop_due(t0 + 1000h), nullptr);
    EXPECT_EQ(h.pop_due(clock_type::time_point::max()), &hi);
}

TEST(TimerHeap, RemovingFromEveryPositionKeepsTheRestInOrder) {
    // Every size up to a few levels of a 4-ary heap, every position removed, with ties.
    for (std::size_t size = 1; size <= 90; ++size) {
        for (std::size_t victim = 0; victim < size; ++victim) {
            timer_heap h;
            std::vector<timer_node> n(size);
            for (std::size_t i = 0; i < size; ++i) {
                // Deadlines in a scrambled order, three nodes per deadline.
                h.push(n[i], t0 + std::chrono::milliseconds((i * 7919) % size / 3));
            }
            h.remove(n[victim]);
            ASSERT_FALSE(n[victim].linked());
            ASSERT_EQ(h.size(), size - 1);
            std::vector<timer_node*> out = drain(h);
            ASSERT_EQ(out.size(), size - 1) << "size " << size << " victim " << victim;
            for (std::size_t k = 1; k < out.size(); ++k) {
                const std::size_t a = std::size_t(out[k - 1] - n.data());
                const std::size_t b = std::size_t(out[k] - n.data());
                const std::size_t da = (a * 7919) % size / 3, db = (b * 7919) % size / 3;
                ASSERT_TRUE(da < db || (da == db && a < b))
                    << "size " << size << " victim " << victim << " at " << k;
            }
        }
    }
}

TEST(TimerHeap, PushWithinTheReservedRoomDoesNotAllocate) {
    timer_heap h;
    h.reserve(1000);
    const std::size_t cap = h.capacity();
    ASSERT_GE(cap, 1000u);
    std::vector<timer_node> n(1000);
    news = 0;
    counting = true;
    for (std::size_t i = 0; i < n.size(); ++i) h.push(n[i], t0 + std::chrono::nanoseconds(i % 17));
    for (std::size_t i = 0; i < n.size(); i += 3) h.remove(n[i]);
    while (h.pop_due(clock_type::time_point::max()) != nullptr) {
    }
    counting = false;
    EXPECT_EQ(news.load(), 0u);
    EXPECT_EQ(h.capacity(), cap);
    h.reserve(10);  // never shrinks
    EXPECT_EQ(h.capacity(), cap);
}

// The heap against std::multimap (which keeps equal keys in insertion order, the FIFO the
// heap promises), under random pushes, pops and removals of any node. Bounded; the seed is
// printed with any failure (set GREENFIBER_TIMER_HEAP_SEED to replay one).
TEST(TimerHeap, AgreesWithAMultimapUnderRandomOperations) {
    std::uint64_t seed = std::random_device{}();
    if (const char* s = std::getenv("GREENFIBER_TIMER_HEAP_SEED"))
        seed = std::strtoull(s, nullptr, 10);
    SCOPED_TRACE("seed " + std::to_string(seed) + " (GREENFIBER_TIMER_HEAP_SEED replays it)");
    std::mt19937_64 rng(seed);
    constexpr std::size_t slots = 600;
    std::vector<timer_node> nodes(slots);
    using oracle_t = std::multimap<clock_type::time_point, std::size_t>;
    oracle_t oracle;
    std::vector<oracle_t::iterator> where(slots, oracle.end());
    timer_heap h;
    clock_type::time_point now = t0;
    for (int step = 0; step < 200000; ++step) {
        const std::size_t i = rng() % slots;
        switch (rng() % 4) {
            case 0:
            case 1:  // push a free slot, with many ties (a small range of deadlines)
                if (!nodes[i].linked()) {
                    const auto when = now + std::chrono::milliseconds(rng() % 50);
                    h.push(nodes[i], when);
                    where[i] = oracle.emplace(when, i);
                }
                break;
            case 2:  // remove a slot wherever it is (a wait that ended early)
                if (nodes[i].linked()) {
                    h.remove(nodes[i]);
                    oracle.erase(where[i]);
                    where[i] = oracle.end();
                }
                break;
            case 3: {  // time goes on; everything due comes out in order
                now += std::chrono::milliseconds(rng() % 8);
                while (timer_node* n = h.pop_due(now)) {
                    ASSERT_FALSE(oracle.empty()) << "step " << step;
                    const auto first = oracle.begin();
                    ASSERT_LE(first->first, now) << "step " << step;
                    ASSERT_EQ(std::size_t(n - nodes.data()), first->second) << "step " << step;
                    ASSERT_FALSE(n->linked());
                    where[first->second] = oracle.end();
                    oracle.erase(first);
                }
                ASSERT_TRUE(oracle.empty() || oracle.begin()->first > now) << "step " << step;
                break;
            }
        }
        ASSERT_EQ(h.size(), oracle.size()) << "step " << step;
        if (!oracle.empty()) {
            ASSERT_EQ(h.earliest(), oracle.begin()->first) << "step " << step;
            ASSERT_EQ(std::size_t(h.top() - nodes.data()), oracle.begin()->second)
                << "step " << step;
        }
    }
    for (auto& n : nodes) h.remove(n);
    EXPECT_TRUE(h.empty());
}

// The hub's use of the heap: every way a wait with a deadline can end.
class HubTimers : public greenfiber::testing::io_checked {
  protected:
    void TearDown() override {
        EXPECT_EQ(hub::current().armed_timers(), 0u) << "a timer node was left in the heap";
        io_checked::TearDown();
    }
};

TEST_F(HubTimers, AWaitWithADeadlineAllocatesNothing) {
    hub& h = hub::current();
    // Warm-up: the heap's room and whatever the hub's loop sets up once.
    for (int i = 0; i < 10; ++i) {
        detail::waiter w("warm-up");
        (void)h.park_until(w, clock_type::now() - 1s);
    }
    news = 0;
    counting = true;
    int timed_out = 0;
    for (int i = 0; i < 1000; ++i) {
        detail::waiter w("a deadline in the past");
        if (!h.park_until(w, clock_type::time_point::min())) ++timed_out;
        detail::waiter s("a shielded one");
        if (!h.park_shielded_until(s, clock_type::now() - 1ms)) ++timed_out;
    }
    counting = false;
    EXPECT_EQ(timed_out, 2000);
    EXPECT_EQ(news.load(), 0u) << "operator new calls in 2000 timed waits";
}

TEST_F(HubTimers, ADeadlineInThePastTimesOutWithoutBlocking) {
    hub& h = hub::current();
    detail::waiter w("a deadline in the past");
    EXPECT_FALSE(h.park_until(w, clock_type::now() - 1h));
    detail::waiter w2("the clock's minimum");
    EXPECT_FALSE(h.park_until(w2, clock_type::time_point::min()));
    sleep(-5s);  // a negative sleep is a past deadline too
    EXPECT_EQ(h.timed_parks(), 0u);
}

TEST_F(HubTimers, AWakeBeforeTheDeadlineFiresInTheSameTurnWins) {
    hub& h = hub::current();
    detail::waiter w("a wake-up racing a past deadline");
    // Ready before the main greenlet parks: it runs in the same turn, after the deadline
    // was armed and before the next turn fires it.
    auto waker = spawn([&] { h.wake(w); });
    EXPECT_TRUE(h.park_until(w, clock_type::now() - 1s));
    waker.get();
}

TEST_F(HubTimers, ADeadlineThatFiredBeforeTheWakeWins) {
    hub& h = hub::current();
    detail::waiter w("a past deadline racing a wake-up");
    auto waker = spawn([&] {
        // Until a later turn fired the deadline; the main greenlet is then ready behind it.
        while (h.armed_timers() != 0) yield_now();
        h.wake(w);  // a no-op now: already woken by its timer
    });
    EXPECT_FALSE(h.park_until(w, clock_type::now() - 1s));
    waker.get();
}

// A deadline and an Asio handler that wakes the same wait, both due when the hub looks:
// the handler runs first and the wait ends woken, as when both were Asio timers.
TEST_F(HubTimers, AnAsioHandlerDueWithTheDeadlineWakesBeforeItFires) {
    hub& h = hub::current();
    detail::waiter w("a wake-up due just after the deadline");
    const auto deadline = clock_type::now() + 2ms;
    bool woken = false;
    auto t = spawn([&] { woken = h.park_until(w, deadline); });
    yield_now();  // it parks, its deadline armed
    event_loop::current().call_at(deadline + 1ms, [&] { h.wake(w); });
    std::this_thread::sleep_for(10ms);  // both pass while the hub is not looking
    t.get();
    EXPECT_TRUE(woken);
}

TEST_F(HubTimers, CancelWhileTheTimerIsPendingRaisesAndUnlinks) {
    hub& h = hub::current();
    bool returned = false;
    auto t = spawn([&] {
        sleep(1h);
        returned = true;
    });
    yield_now();  // it parks
    EXPECT_EQ(h.armed_timers(), 1u);
    EXPECT_EQ(h.stats().timers, 1u);
    t.cancel();
    EXPECT_THROW(t.get(), cancelled_error);
    EXPECT_FALSE(returned);
    EXPECT_EQ(h.armed_timers(), 0u);
    EXPECT_EQ(h.stats().timers, 0u);
}

TEST_F(HubTimers, CancelAfterTheDeadlineFiredButBeforeTheFiberRan) {
    hub& h = hub::current();
    int result = -1;
    auto t = spawn([&] {
        detail::waiter w("a past deadline");
        result = h.park_until(w, clock_type::now() - 1s) ? 1 : 0;
        yield_now();  // the cancellation, requested while it was ready, is raised here
        result = 2;
    });
    yield_now();  // it parks with its deadline armed
    EXPECT_EQ(h.armed_timers(), 1u);
    // A yield may come back in the same turn: yield until a turn boundary fired it. It is
    // then ready, queued behind this greenlet.
    while (h.armed_timers() != 0) yield_now();
    EXPECT_EQ(result, -1);
    // Requested before the fiber ran again, the cancellation is raised from the wait it
    // was woken from (asyncio's rule for a task scheduled to resume), timed out or not.
    t.cancel();
    EXPECT_THROW(t.get(), cancelled_error);
    EXPECT_EQ(result, -1);
}

TEST_F(HubTimers, CancelInTheSameTurnAsThePastDeadlineWinsOverTheTimeout) {
    hub& h = hub::current();
    bool returned = false;
    auto t = spawn([&] {
        detail::waiter w("a past deadline");
        (void)h.park_until(w, clock_type::now() - 1s);
        returned = true;
    });
    yield_now();  // it parks; its deadline is due but fires only at the next turn
    EXPECT_EQ(h.armed_timers(), 1u);
    t.cancel();  // wakes it first: the timer finds it woken and does nothing
    EXPECT_THROW(t.get(), cancelled_error);
    EXPECT_FALSE(returned);
}

TEST_F(HubTimers, TheLatestDeadlineParksUntilWokenAndCountsAsWork) {
    hub& h = hub::current();
    detail::waiter w("forever");
    bool woken = false;
    auto t = spawn([&] { woken = h.park_until(w, clock_type::time_point::max()); });
    yield_now();
    EXPECT_EQ(h.armed_timers(), 1u);
    sleep(2ms);  // the hub blocks with a timer of its own pending and comes back
    EXPECT_FALSE(woken);
    h.wake(w);
    t.get();
    EXPECT_TRUE(woken);
}

TEST_F(HubTimers, APendingTimerIsWorkNotADeadlock) {
    event e;
    auto t = spawn([&] {
        sleep(5ms);
        e.set();
    });
    e.wait();  // nothing else can wake it: only the timer keeps loop_exit away
    t.get();
    // With no timer left, the same wait is a deadlock.
    event never;
    EXPECT_THROW(never.wait(), loop_exit);
}

TEST_F(HubTimers, AGreenletKilledWhileParkedWithADeadlineUnlinksItsNode) {
    hub& h = hub::current();
    // Far enough ahead that no killed greenlet's deadline comes before it is killed.
    const auto base = clock_type::now() + 300ms;
    // Sleepers around it, so that the killed nodes sit in the middle of the heap.
    std::vector<int> order;
    std::vector<task<void>> sleepers;
    for (int i = 0; i < 40; ++i) {
        sleepers.push_back(spawn([&order, base, i] {
            sleep_until(base + std::chrono::microseconds(100 * ((i * 13) % 40)));
            order.push_back((i * 13) % 40);
        }));
    }
    std::vector<greenlet> doomed;
    doomed.reserve(40);  // the callbacks below hold pointers into it
    std::vector<std::string> seen;
    for (int i = 0; i < 40; ++i) {
        doomed.emplace_back(
            [&seen, &h, base, i] {
                struct noisy {
                    std::vector<std::string>& seen;
                    ~noisy() { seen.push_back("unwound"); }
                } n{seen};
                detail::waiter w("killed while parked");
                (void)h.park_until(w, base + std::chrono::microseconds(50 + 100 * i));
                seen.push_back("woke up?");
            },
            h.loop_greenlet());
        greenlet* g = &doomed.back();
        h.call_soon([g] { (void)g->switch_to(); });
    }
    yield_now();
    yield_now();
    EXPECT_EQ(h.armed_timers(), 80u);
    for (std::size_t i = 0; i < doomed.size(); i += 2) doomed[i] = greenlet();  // killed
    EXPECT_EQ(h.armed_timers(), 60u);
    for (std::size_t i = 1; i < doomed.size(); i += 2) doomed[i] = greenlet();
    EXPECT_EQ(h.armed_timers(), 40u);
    EXPECT_EQ(seen, std::vector<std::string>(40, "unwound"));
    for (auto& s : sleepers) s.get();
    std::vector<int> expected(40);
    for (int i = 0; i < 40; ++i) expected[std::size_t(i)] = i;
    EXPECT_EQ(order, expected);
}

TEST_F(HubTimers, ThousandsOfEqualDeadlinesWakeInTheOrderTheyParked) {
    hub& h = hub::current();
    const auto deadline = clock_type::now() + 20ms;
    constexpr int n = 3000;
    std::vector<int> order;
    order.reserve(n);
    std::vector<task<void>> ts;
    for (int i = 0; i < n; ++i) {
        ts.push_back(spawn([&order, deadline, i] {
            sleep_until(deadline);
            order.push_back(i);
        }));
    }
    // Until every task parked (or the first woke); bounded by the loop turns 3000 tasks need.
    for (int i = 0; i < 10 * n && h.armed_timers() < std::size_t(n) && order.empty(); ++i)
        yield_now();
    if (order.empty()) {
        EXPECT_EQ(h.armed_timers(), std::size_t(n));
        EXPECT_EQ(h.stats().timers, std::size_t(n));
    }
    for (auto& t : ts) t.get();
    std::vector<int> expected(n);
    for (int i = 0; i < n; ++i) expected[std::size_t(i)] = i;
    EXPECT_EQ(order, expected);
    EXPECT_EQ(h.stats().timers, 0u);
}

TEST_F(HubTimers, RandomDeadlinesWakeInDeadlineOrder) {
    const std::uint64_t seed = std::random_device{}();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    // Far enough ahead that every task parks before the first deadline: one that parked
    // after its deadline could rightly wake after a later one.
    const auto base = clock_type::now() + 200ms;
    constexpr int n = 2000;
    std::vector<clock_type::time_point> woke;
    std::vector<task<void>> ts;
    for (int i = 0; i < n; ++i) {
        const auto when = base + std::chrono::microseconds(rng() % 20000);
        ts.push_back(spawn([&woke, when] {
            sleep_until(when);
            woke.push_back(when);
        }));
    }
    for (auto& t : ts) t.get();
    ASSERT_EQ(woke.size(), std::size_t(n));
    EXPECT_TRUE(std::is_sorted(woke.begin(), woke.end()));
}

TEST_F(HubTimers, StatsCountParksWithADeadlineAndLoopTimers) {
    hub& h = hub::current();
    auto a = spawn([] { sleep(1h); });
    auto b = spawn([] { sleep(1h); });
    yield_now();
    auto later = event_loop::current().call_later(1h, [] {});
    EXPECT_EQ(h.stats().timers, 3u);
    EXPECT_EQ(event_loop::current().pending_timers(), 3u);
    EXPECT_EQ(h.armed_timers(), 2u);
    a.cancel();
    EXPECT_THROW(a.get(), cancelled_error);
    EXPECT_EQ(h.stats().timers, 2u);
    later.cancel();
    EXPECT_EQ(h.stats().timers, 1u);
    b.cancel();
    EXPECT_THROW(b.get(), cancelled_error);
    EXPECT_EQ(h.stats().timers, 0u);
}

TEST(HubTimersAtExit, AHubDestroyedWithTimersPendingUnlinksThemAll) {
    std::vector<std::string> seen;
    std::thread([&] {
        hub& h = hub::current();
        // A task that waits again with a deadline after its cancellation: killed by ~hub.
        auto stubborn = spawn([&] {
            try {
                sleep(1h);
            } catch (const cancelled_error&) {
                seen.push_back("cancelled");
            }
            try {
                detail::waiter w("a shielded wait, which the cancellation does not end");
                (void)h.park_shielded_until(w, clock_type::now() + 1h);
            } catch (const greenlet_exit&) {
                seen.push_back("killed while sleeping again");
                throw;
            }
        });
        auto plain = spawn([] { sleep(1h); });
        yield_now();
        seen.push_back("armed " + std::to_string(h.armed_timers()));
    }).join();
    EXPECT_EQ(seen,
              (std::vector<std::string>{"armed 2", "cancelled", "killed while sleeping again"}));
}

}  // namespace
