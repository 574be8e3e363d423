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

}  // namespace
