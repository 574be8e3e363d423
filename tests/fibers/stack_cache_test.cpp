// stack.hpp: each thread's cache of free stacks in front of the process-wide pool, and the
// pages a parked greenlet keeps resident (the canary of a guarded stack reads no page).

#include <greenfiber/stack.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <greenfiber/greenlet.hpp>
#include <greenfiber/value.hpp>

#include "leak_check.hpp"
#include "stack_support.hpp"

namespace {

using greenfiber::default_stack_size;
using greenfiber::greenlet;
using greenfiber::guard_policy;
using greenfiber::stack_statistics;
using greenfiber::stack_stats;
using greenfiber::value;

const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));

greenfiber::detail::greenlet_impl* impl(const greenlet& g) {
    return greenfiber::detail::access::impl(g);
}

char* stack_lo(const greenlet& g) {
    return static_cast<char*>(impl(g)->stack_lo);
}

greenlet::options eager_stack(std::string name = {}) {
    greenlet::options o;
    o.name = std::move(name);
    o.eager_stack = true;
    return o;
}

value to_parent(value v = {}) {
    greenlet p = greenlet::current().parent();
    return p.switch_to(std::move(v));
}

using greenfiber::testing::pool_settings_scope;

// The pages of [lo, lo + size) that are resident (mincore: mapped to a page frame, the
// kernel's shared zero page included), as indices from the bottom.
std::vector<std::size_t> resident_pages(const char* lo, std::size_t size) {
    std::vector<unsigned char> vec(size / page);
    if (mincore(const_cast<char*>(lo), size, vec.data()) != 0) ADD_FAILURE() << "mincore failed";
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < vec.size(); ++i) {
        if (vec[i] & 1) out.push_back(i);
    }
    return out;
}

class StackCache : public greenfiber::testing::leak_checked {};

// ---------------------------------------------------------------------------------------
// Resident pages of a parked greenlet

// A greenlet on a guarded stack, parked after a shallow call, keeps only the top of its
// stack resident. Its switches never read the stack's lowest page: the kernel may map a
// page there on a read (the canary's), which doubled the memory of a parked fiber.
TEST_F(StackCache, AParkedGreenletOnAGuardedStackHasOnlyItsTopPagesResident) {
    greenfiber::trim_stack_pool();  // the stack it gets has no page resident
    greenlet g([] {
        for (int i = 0; i < 3; ++i) (void)to_parent(i);  // several switches out
    });
    ASSERT_EQ(g.switch_to().get<int>(), 0);
    ASSERT_EQ(g.switch_to().get<int>(), 1);
    ASSERT_TRUE(impl(g)->stack_guarded) << "the guard budget is spent in this process";
    const std::size_t size = impl(g)->stack_size;
    const std::vector<std::size_t> pages = resident_pages(stack_lo(g), size);
    const std::size_t top = size / page - 1;
    ASSERT_FALSE(pages.empty()) << "the greenlet's frames are on its stack";
    EXPECT_NE(pages.front(), 0u) << "the lowest page (where the canary word was) is resident";
    // A trivial greenlet's frames and the stack's header fit in its top two pages.
    EXPECT_GE(pages.front(), top - 1) << "resident from page " << pages.front() << " of " << top;
    EXPECT_LE(pages.size(), 2u);
    EXPECT_EQ(g.switch_to().get<int>(), 2);
    (void)g.switch_to();
    EXPECT_TRUE(g.dead());
}

// The unguarded kind keeps its canary: the lowest word of its own stack, read at every
// switch out; the guarded kind reads a word that is not on its stack.
TEST_F(StackCache, OnlyAnUnguardedStackHasItsCanaryOnTheStack) {
    pool_settings_scope restore;
    greenlet guarded([] { (void)to_parent(); }, eager_stack());
    ASSERT_TRUE(impl(guarded)->stack_guarded);
    const char* const c = reinterpret_cast<const char*>(impl(guarded)->canary);
    EXPECT_TRUE(c < stack_lo(guarded) || c >= stack_lo(guarded) + impl(guarded)->stack_size);
    EXPECT_EQ(*impl(guarded)->canary, greenfiber::detail::canary_value);

    greenfiber::set_guard_budget(stack_statistics().guarded);  // spent
    // A size of its own: a new slab, mapped without guard pages.
    greenlet::options own_size = eager_stack();
    own_size.stack_size = default_stack_size() + 17 * page;
    greenlet unguarded([] { (void)to_parent(); }, own_size);
    ASSERT_FALSE(impl(unguarded)->stack_guarded);
    EXPECT_EQ(reinterpret_cast<const char*>(impl(unguarded)->canary), stack_lo(unguarded));
    // Both still switch (the canary checks pass).
    (void)guarded.switch_to();
    (void)unguarded.switch_to();
    (void)guarded.switch_to();
    (void)unguarded.switch_to();
    EXPECT_TRUE(guarded.dead());
    EXPECT_TRUE(unguarded.dead());
}

// ---------------------------------------------------------------------------------------
// The per-thread cache

// A greenlet started where the last one finished gets the same stack back (from the
// thread's cache), and the counters see each take and give-back.
TEST_F(StackCache, AFinishedGreenletsStackIsTheNextOnesAndCountersFollow) {
    const stack_stats before = stack_statistics();
    greenfiber::reset_stack_high_water();
    char* first = nullptr;
    {
        greenlet a([] { (void)to_parent(); });
        (void)a.switch_to();
        first = stack_lo(a);
        EXPECT_EQ(stack_statistics().in_use, before.in_use + 1);
        (void)a.switch_to();
        ASSERT_TRUE(a.dead());
    }
    const stack_stats between = stack_statistics();
    EXPECT_EQ(between.in_use, before.in_use);
    EXPECT_GE(between.pooled, 1u);
    greenlet b([] { (void)to_parent(); });
    (void)b.switch_to();
    EXPECT_EQ(stack_lo(b), first);
    EXPECT_EQ(stack_statistics().pooled, between.pooled - 1);
    EXPECT_EQ(stack_statistics().high_water, before.in_use + 1);
    (void)b.switch_to();
    EXPECT_EQ(stack_statistics().in_use, before.in_use);
    EXPECT_EQ(stack_statistics().pooled, between.pooled);
}

// More greenlets at once than a cache holds: the peak is counted whether the stacks came
// from the cache or the pool, and all of them come back.
TEST_F(StackCache, HighWaterCountsStacksTakenFromTheCacheAndThePool) {
    const std::size_t base = stack_statistics().in_use;
    for (std::size_t n : {3u, 40u, 5u}) {
        greenfiber::reset_stack_high_water();
        std::vector<greenlet> gs;
        for (std::size_t i = 0; i < n; ++i) {
            gs.emplace_back([] { (void)to_parent(); });
            (void)gs.back().switch_to();
        }
        EXPECT_EQ(stack_statistics().in_use, base + n);
        EXPECT_EQ(stack_statistics().high_water, base + n);
        for (auto& g : gs) (void)g.switch_to();
        gs.clear();
        EXPECT_EQ(stack_statistics().in_use, base);
        EXPECT_EQ(greenfiber::reset_stack_high_water(), base + n);
        EXPECT_EQ(stack_statistics().high_water, base);
    }
}

// A stack given back on another thread than it was taken on (an unstarted greenlet with an
// eager stack, dropped there) goes into that thread's cache and is reused there.
TEST_F(StackCache, AStackGivenBackOnAnotherThreadIsReusedThere) {
    const std::size_t base = stack_statistics().in_use;
    auto g = std::make_unique<greenlet>([] {}, eager_stack("moved"));
    char* const lo = stack_lo(*g);
    bool reused = false;
    std::size_t in_use_there = 0;
    std::thread other([&] {
        g.reset();  // not started: freed here, stack and all
        in_use_there = stack_statistics().in_use;
        greenlet h([] { (void)to_parent(); });
        (void)h.switch_to();
        reused = stack_lo(h) == lo;
        (void)h.switch_to();
    });
    other.join();
    EXPECT_EQ(in_use_there, base);
    EXPECT_TRUE(reused);
    EXPECT_EQ(stack_statistics().in_use, base);
}

// A thread that exits with stacks in its cache gives them back to the pool: none is lost
// (the next thread can have each of them) and the counters do not move.
TEST_F(StackCache, AThreadExitingWithCachedStacksGivesThemToThePool) {
    const stack_stats before = stack_statistics();
    std::set<char*> cached;
    std::thread worker([&] {
        std::vector<greenlet> gs;
        for (int i = 0; i < 6; ++i) {
            gs.emplace_back([] { (void)to_parent(); });
            (void)gs.back().switch_to();
            cached.insert(stack_lo(gs.back()));
        }
        for (auto& g : gs) (void)g.switch_to();  // all finish: six stacks in its cache
    });
    worker.join();
    const stack_stats after = stack_statistics();
    EXPECT_EQ(after.in_use, before.in_use);
    EXPECT_EQ(after.pooled + after.in_use,
              std::max(before.pooled + before.in_use, after.pooled + after.in_use));
    // Another thread (with an empty cache) finds every one of them in the pool.
    std::thread next([&] {
        std::vector<greenlet> gs;
        const std::size_t pooled = stack_statistics().pooled;
        for (std::size_t i = 0; i < pooled && !cached.empty(); ++i) {
            gs.emplace_back([] {}, eager_stack());
            cached.erase(stack_lo(gs.back()));
        }
    });
    next.join();
    EXPECT_TRUE(cached.empty()) << cached.size() << " stacks of the exited thread are lost";
    EXPECT_EQ(stack_statistics().in_use, before.in_use);
}

// After the default size changes, a cache holding stacks of the old size hands none of them
// out for the new default.
TEST_F(StackCache, StacksCachedAtTheOldDefaultSizeAreNotHandedOutForTheNew) {
    pool_settings_scope restore;
    {
        greenlet a([] {});
        (void)a.switch_to();  // its stack is now in this thread's cache
    }
    const std::size_t bigger = default_stack_size() + 5 * page;
    greenfiber::set_default_stack_size(bigger);
    greenlet b([] { (void)to_parent(); });
    (void)b.switch_to();
    EXPECT_EQ(impl(b)->stack_size, bigger);
    (void)b.switch_to();
    greenfiber::set_default_stack_size(bigger - 5 * page);
    greenlet c([] { (void)to_parent(); });
    (void)c.switch_to();
    EXPECT_EQ(impl(c)->stack_size, bigger - 5 * page);
    (void)c.switch_to();
}

// Under guard_policy::require an unguarded stack sitting in the cache is not handed out: the
// start fails as the pool's would, naming the budget.
TEST_F(StackCache, RequirePolicyRefusesAnUnguardedStackFromTheCache) {
    pool_settings_scope restore;
    greenfiber::set_guard_budget(stack_statistics().guarded);  // spent
    // A default size of its own: its stacks come from a new, unguarded slab.
    greenfiber::set_default_stack_size(default_stack_size() + 19 * page);
    {
        greenlet a([] {});
        (void)a.switch_to();
        ASSERT_FALSE(impl(a)->stack_guarded);
    }  // its stack is in this thread's cache now
    greenfiber::set_guard_policy(guard_policy::require);
    const std::size_t in_use = stack_statistics().in_use;
    greenlet b([] {});
    EXPECT_THROW((void)b.switch_to(), greenfiber::stack_error);
    EXPECT_FALSE(b.started());
    EXPECT_EQ(stack_statistics().in_use, in_use);
}

// Many threads start and finish greenlets and hand unstarted ones (with stacks) to each
// other to drop: every stack comes back, and the pool's counters add up.
TEST_F(StackCache, ManyThreadsTakingAndGivingBackAcrossThreadsLoseNoStack) {
    constexpr int workers = 8;
    constexpr int rounds = 200;
    const std::size_t base = stack_statistics().in_use;
    std::vector<std::unique_ptr<greenlet>> handoff(workers);
    std::atomic<int> ready{0};
    std::atomic<long> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < workers; ++t) {
        threads.emplace_back([&, t] {
            for (int r = 0; r < rounds; ++r) {
                std::vector<greenlet> gs;
                for (int i = 0; i < 3; ++i) {
                    gs.emplace_back([](int x) { return to_parent(x).get<int>() + 1; });
                    if (gs.back().switch_to(i).get<int>() != i) wrong.fetch_add(1);
                }
                for (int i = 0; i < 3; ++i) {
                    if (gs[std::size_t(i)].switch_to(i).get<int>() != i + 1) wrong.fetch_add(1);
                }
            }
            // Each thread leaves an unstarted greenlet with a stack for its neighbour.
            handoff[std::size_t(t)] = std::make_unique<greenlet>([] {}, eager_stack());
            ready.fetch_add(1);
            while (ready.load() < workers) std::this_thread::yield();
            handoff[std::size_t((t + 1) % workers)].reset();
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(wrong.load(), 0);
    EXPECT_EQ(stack_statistics().in_use, base);
    EXPECT_GE(stack_statistics().high_water, base + 3);
}

}  // namespace
