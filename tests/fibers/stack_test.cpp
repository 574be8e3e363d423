// stack.hpp: the stack pool, its counters, guard pages and the overflow message.

#include <greenfiber/stack.hpp>

#include <alloca.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <greenfiber/greenlet.hpp>
#include <greenfiber/value.hpp>

#include "leak_check.hpp"
#include "long_run.hpp"
#include "stack_support.hpp"

namespace {

using greenfiber::default_stack_size;
using greenfiber::greenlet;
using greenfiber::guard_policy;
using greenfiber::stack_statistics;
using greenfiber::stack_stats;
using greenfiber::value;
using ::testing::HasSubstr;

const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));

std::size_t round_up_to_page(std::size_t n) {
    return (n + page - 1) / page * page;
}

greenlet::options named(std::string name, std::size_t stack_size = 0) {
    greenlet::options o;
    o.name = std::move(name);
    o.stack_size = stack_size;
    return o;
}

value to_parent(value v = {}) {
    greenlet p = greenlet::current().parent();
    return p.switch_to(std::move(v));
}

using greenfiber::testing::pool_settings_scope;

// Recurses until `depth == limit` (never, for a negative limit), 256 bytes and more a level.
volatile int recursion_sink = 0;
__attribute__((noinline)) int recurse(int depth, int limit) {
    volatile char pad[256];
    pad[0] = static_cast<char>(depth);
    if (depth == limit) return pad[0];
    const int below = recurse(depth + 1, limit);
    recursion_sink = below;
    return below + pad[0];
}

class StackPool : public greenfiber::testing::leak_checked {};
class StackOverflowDeathTest : public greenfiber::testing::leak_checked {};

TEST_F(StackPool, DefaultSizeIsWholePagesAndUsedByGreenletsWithoutASize) {
    const std::size_t d = default_stack_size();
    EXPECT_EQ(d % page, 0u);
    EXPECT_GE(d, 16u * 1024u);
    greenlet g([] { (void)to_parent(); });
    (void)g.switch_to();
    EXPECT_EQ(g.stack_size(), d);
}

TEST_F(StackPool, SetDefaultStackSizeRoundsUpToPagesWithA16KiBMinimum) {
    pool_settings_scope restore;
    const std::size_t original = default_stack_size();
    greenfiber::set_default_stack_size(100000);
    EXPECT_EQ(default_stack_size(), round_up_to_page(100000));
    {
        greenlet g([] { (void)to_parent(); });
        (void)g.switch_to();
        EXPECT_EQ(g.stack_size(), round_up_to_page(100000));
    }
    greenfiber::set_default_stack_size(1);
    EXPECT_EQ(default_stack_size(), round_up_to_page(16 * 1024));
    greenfiber::set_default_stack_size(original);
    EXPECT_EQ(default_stack_size(), original);
    greenlet g([] { (void)to_parent(); });
    (void)g.switch_to();
    EXPECT_EQ(g.stack_size(), original);
}

TEST_F(StackPool, InUseCountsStacksOfStartedLiveGreenletsAndReturnsToBaseline) {
    const std::size_t base = stack_statistics().in_use;
    greenlet a([] { (void)to_parent(); });
    greenlet b([] { (void)to_parent(); });
    EXPECT_EQ(stack_statistics().in_use, base);  // no stack before the start
    (void)a.switch_to();
    EXPECT_EQ(stack_statistics().in_use, base + 1);
    (void)b.switch_to();
    EXPECT_EQ(stack_statistics().in_use, base + 2);
    const std::size_t pooled = stack_statistics().pooled;
    (void)a.switch_to();  // a finishes; its handle stays but its stack goes back
    EXPECT_TRUE(a.dead());
    EXPECT_EQ(stack_statistics().in_use, base + 1);
    EXPECT_EQ(stack_statistics().pooled, pooled + 1);
    b = greenlet();  // killed on drop
    EXPECT_EQ(stack_statistics().in_use, base);
}

TEST_F(StackPool, ExplicitStackSizeIsRoundedUpToWholePages) {
    greenlet g([] { (void)to_parent(); }, named("sized", 100000));
    (void)g.switch_to();
    EXPECT_EQ(g.stack_size(), round_up_to_page(100000));
    greenlet tiny([] { (void)to_parent(); }, named("tiny", 1000));
    (void)tiny.switch_to();
    EXPECT_EQ(tiny.stack_size(), round_up_to_page(16 * 1024));
}

TEST_F(StackPool, RecursionWithinTheStackIsFine) {
    greenlet g([] { return recurse(0, 100); }, named("moderate", 64 * 1024));
    EXPECT_EQ(g.switch_to().get<int>(), 100 * 101 / 2);  // the sum of the depths 0..100
}

TEST_F(StackPool, BeyondTheGuardBudgetGreenletsStillWorkOnUnguardedStacks) {
    pool_settings_scope restore;
    const stack_stats before = stack_statistics();
    const std::size_t budget = before.guarded + 2;
    greenfiber::set_guard_budget(budget);
    EXPECT_EQ(stack_statistics().guard_budget, budget);
    const std::size_t n = before.pooled + 100;  // more than the pool holds: new slabs are mapped
    std::vector<greenlet> live;
    live.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        live.emplace_back([](int x) {
            value back = to_parent(x);
            return back.get<int>() + x;
        });
        ASSERT_EQ(live.back().switch_to(static_cast<int>(i)).get<int>(), static_cast<int>(i));
    }
    const stack_stats during = stack_statistics();
    EXPECT_EQ(during.in_use, before.in_use + n);
    EXPECT_LE(during.guarded, budget);
    for (std::size_t i = 0; i < n; ++i) {
        ASSERT_EQ(live[i].switch_to(1000).get<int>(), 1000 + static_cast<int>(i));
    }
    live.clear();
    EXPECT_EQ(stack_statistics().in_use, before.in_use);
}

TEST_F(StackPool, RequirePolicyThrowsSystemErrorOnceTheBudgetIsSpent) {
    pool_settings_scope restore;
    const stack_stats before = stack_statistics();
    greenfiber::set_guard_budget(before.guarded);  // spent
    greenfiber::set_guard_policy(guard_policy::require);
    // A size no other test uses, so that no pooled guarded stack fits.
    greenlet g([] {}, named("needs_a_guard", default_stack_size() + 7 * page));
    try {
        (void)g.switch_to();
        ADD_FAILURE() << "no exception";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ENOMEM);
        EXPECT_THAT(e.what(), HasSubstr("budget"));
        EXPECT_THAT(e.what(), HasSubstr(std::to_string(before.guarded)));
    }
    EXPECT_FALSE(g.started());
    EXPECT_EQ(stack_statistics().in_use, before.in_use);
}

TEST_F(StackPool, ThousandsOfGreenletsReusePooledStacks) {
    {
        greenlet warm([] {});
        (void)warm.switch_to();  // at least one default stack is pooled now
    }
    const stack_stats before = stack_statistics();
    std::vector<greenlet> finished;
    const int n = greenfiber::testing::rounds(5000, 200000);
    for (int i = 0; i < n; ++i) {
        greenlet g([i] { return i; });
        ASSERT_EQ(g.switch_to().get<int>(), i);
        if (i % 5 == 0) finished.push_back(std::move(g));  // dead handles hold no stack
    }
    const stack_stats after = stack_statistics();
    EXPECT_EQ(after.in_use, before.in_use);
    EXPECT_EQ(after.pooled, before.pooled);  // one pooled stack served them all
    EXPECT_EQ(finished.size(), static_cast<std::size_t>(n / 5));
}

TEST_F(StackPool, ThousandsOfSuspendedGreenletsAtOnceAreAllKilledOnDrop) {
    const std::size_t base = stack_statistics().in_use;
    int unwound = 0;
    struct count_on_destroy {
        int& n;
        ~count_on_destroy() { ++n; }
    };
    {
        std::vector<greenlet> live;
        for (int i = 0; i < 2000; ++i) {
            live.emplace_back([&unwound] {
                count_on_destroy c{unwound};
                (void)to_parent();
            });
            (void)live.back().switch_to();
        }
        EXPECT_EQ(stack_statistics().in_use, base + 2000);
    }
    EXPECT_EQ(unwound, 2000);
    EXPECT_EQ(stack_statistics().in_use, base);
}

TEST_F(StackPool, TrimmedPoolStacksAreStillUsable) {
    {
        greenlet warm([] {});
        (void)warm.switch_to();
    }
    greenfiber::trim_stack_pool();
    for (int i = 0; i < 100; ++i) {
        greenlet g([](int x) {
            value v = to_parent(x);
            return v.get<int>() * x;
        });
        ASSERT_EQ(g.switch_to(i).get<int>(), i);
        ASSERT_EQ(g.switch_to(3).get<int>(), 3 * i);
    }
}

// The counters: in_use, pooled and the high-water mark of in_use (reset_stack_high_water).

TEST_F(StackPool, HighWaterMarkKeepsThePeakOfStacksInUseAfterTheyAreGivenBack) {
    const std::size_t base = stack_statistics().in_use;
    greenfiber::reset_stack_high_water();
    EXPECT_EQ(stack_statistics().high_water, base);
    {
        std::vector<greenlet> live;
        for (int i = 0; i < 3; ++i) {
            live.emplace_back([] { (void)to_parent(); });
            (void)live.back().switch_to();
            EXPECT_EQ(stack_statistics().high_water, base + live.size());
        }
        (void)live[0].switch_to();  // finishes: one fewer in use, the peak stays
        EXPECT_EQ(stack_statistics().in_use, base + 2);
        EXPECT_EQ(stack_statistics().high_water, base + 3);
        greenlet again([] { (void)to_parent(); });
        (void)again.switch_to();  // back to three in use: not a new peak
        EXPECT_EQ(stack_statistics().high_water, base + 3);
    }  // the suspended ones are killed on drop
    const stack_stats after = stack_statistics();
    EXPECT_EQ(after.in_use, base);
    EXPECT_EQ(after.high_water, base + 3);
}

TEST_F(StackPool, ResettingTheHighWaterMarkReturnsTheOldPeakAndStartsAtTheCountInUse) {
    const std::size_t base = stack_statistics().in_use;
    greenlet held([] { (void)to_parent(); });
    (void)held.switch_to();
    {
        greenlet brief([] { (void)to_parent(); });
        (void)brief.switch_to();
        (void)brief.switch_to();  // finishes
    }
    EXPECT_GE(greenfiber::reset_stack_high_water(), base + 2);
    // The greenlet still holding a stack counts in the new mark.
    EXPECT_EQ(stack_statistics().high_water, base + 1);
    EXPECT_EQ(greenfiber::reset_stack_high_water(), base + 1);
    held = greenlet();
    EXPECT_EQ(stack_statistics().high_water, base + 1);  // giving back never lowers it
    EXPECT_EQ(greenfiber::reset_stack_high_water(), base + 1);
    EXPECT_EQ(stack_statistics().high_water, base);
}

TEST_F(StackPool, StartingAGreenletTakesAPooledStackBeforeMappingAnother) {
    {
        greenlet warm([] {});
        (void)warm.switch_to();  // a default-size stack is pooled now
    }
    const stack_stats before = stack_statistics();
    ASSERT_GT(before.pooled, 0u);
    greenlet g([] { (void)to_parent(); });
    (void)g.switch_to();
    const stack_stats during = stack_statistics();
    EXPECT_EQ(during.in_use, before.in_use + 1);
    EXPECT_EQ(during.pooled, before.pooled - 1);
    (void)g.switch_to();  // finishes: the stack goes back to the pool
    const stack_stats after = stack_statistics();
    EXPECT_EQ(after.in_use, before.in_use);
    EXPECT_EQ(after.pooled, before.pooled);
}

TEST_F(StackPool, AStackThatCannotBeHadCountsNowhere) {
    pool_settings_scope restore;
    greenfiber::reset_stack_high_water();
    const stack_stats before = stack_statistics();
    greenfiber::set_guard_budget(before.guarded);  // spent
    greenfiber::set_guard_policy(guard_policy::require);
    // A size no other test uses, so that no pooled guarded stack fits.
    greenlet g([] {}, named("refused", default_stack_size() + 11 * page));
    EXPECT_THROW((void)g.switch_to(), greenfiber::stack_error);
    greenlet::options eager = named("refused-eagerly", default_stack_size() + 11 * page);
    eager.eager_stack = true;
    EXPECT_THROW(greenlet([] {}, eager), greenfiber::stack_error);
    const stack_stats after = stack_statistics();
    EXPECT_EQ(after.in_use, before.in_use);
    EXPECT_EQ(after.pooled, before.pooled);
    EXPECT_EQ(after.high_water, before.high_water);
}

TEST_F(StackPool, EagerStacksCountFromConstructionUntilKilledOrDroppedUnstarted) {
    greenfiber::reset_stack_high_water();
    const std::size_t base = stack_statistics().in_use;
    greenlet::options eager = named("eager");
    eager.eager_stack = true;
    greenlet killed([] {}, eager);
    greenlet dropped([] {}, eager);
    EXPECT_EQ(stack_statistics().in_use, base + 2);
    EXPECT_EQ(stack_statistics().high_water, base + 2);
    (void)killed.throw_in();
    dropped = greenlet();
    EXPECT_EQ(stack_statistics().in_use, base);
    EXPECT_EQ(stack_statistics().high_water, base + 2);
}

// Several threads take and give back stacks while another reads the counters and resets the
// mark: every snapshot is consistent (in use never above the mark), and once the workers are
// done the counts are back where they started and the mark saw every thread's peak at least.
TEST_F(StackPool, CountersStayConsistentWhileThreadsTakeAndGiveBackStacks) {
    constexpr int workers = 4;
    constexpr std::size_t per_thread = 20;
    const int rounds = greenfiber::testing::rounds(50, 2000);
    const std::size_t base = stack_statistics().in_use;
    greenfiber::reset_stack_high_water();
    std::atomic<int> running{workers};
    std::atomic<bool> resetting{true};
    std::atomic<long> snapshots{0};
    std::atomic<long> inconsistent{0};
    std::thread reader([&] {
        while (running.load() > 0) {
            const stack_stats s = stack_statistics();
            if (s.in_use > s.high_water) inconsistent.fetch_add(1);
            snapshots.fetch_add(1);
            if (resetting.load() && snapshots.load() % 16 == 0) {
                const std::size_t old = greenfiber::reset_stack_high_water();
                if (old < base) inconsistent.fetch_add(1);
            }
            std::this_thread::yield();
        }
    });
    const auto work = [&] {
        for (int r = 0; r < rounds; ++r) {
            std::vector<greenlet> live;
            for (std::size_t i = 0; i < per_thread; ++i) {
                live.emplace_back([](int x) { return to_parent(x).get<int>() + x; });
                if (live.back().switch_to(static_cast<int>(i)).get<int>() != static_cast<int>(i))
                    inconsistent.fetch_add(1);
            }
            for (std::size_t i = 0; i < per_thread; i += 2) {
                if (live[i].switch_to(1).get<int>() != static_cast<int>(i) + 1)
                    inconsistent.fetch_add(1);
            }
        }  // the odd ones are killed on drop
        running.fetch_sub(1);
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < workers; ++t) threads.emplace_back(work);
    for (auto& t : threads) t.join();
    reader.join();
    EXPECT_EQ(inconsistent.load(), 0);
    EXPECT_GT(snapshots.load(), 0);
    EXPECT_EQ(stack_statistics().in_use, base);

    // Without the resets, the mark holds at least one thread's peak and at most all of them.
    greenfiber::reset_stack_high_water();
    resetting = false;
    running = workers;
    threads.clear();
    for (int t = 0; t < workers; ++t) threads.emplace_back(work);
    for (auto& t : threads) t.join();
    const stack_stats after = stack_statistics();
    EXPECT_EQ(after.in_use, base);
    EXPECT_GE(after.high_water, base + per_thread);
    EXPECT_LE(after.high_water, base + workers * per_thread);
    EXPECT_EQ(greenfiber::reset_stack_high_water(), after.high_water);
}

TEST_F(StackOverflowDeathTest, OverflowNamesTheGreenletAndItsStackSize) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            greenlet g([] { return recurse(0, -1); }, named("deep", 64 * 1024));
            (void)g.switch_to();
        },
        "stack overflow in greenlet 'deep'.*65536");
}

// ---------------------------------------------------------------------------------------
// Stacks that cannot be mapped

// Larger than the whole user address space: mmap fails whatever the limits.
constexpr std::size_t unmappable = std::size_t(1) << 47;

TEST_F(StackPool, UnmappableStackFailsTheFirstSwitchWithATypedErrorNamingGreenletAndSize) {
    const stack_stats before = stack_statistics();
    bool ran = false;
    greenlet g([&] { ran = true; }, named("huge", unmappable));
    try {
        (void)g.switch_to();
        ADD_FAILURE() << "no exception";
    } catch (const greenfiber::stack_error& e) {
        EXPECT_EQ(e.code().value(), ENOMEM);
        EXPECT_THAT(e.what(), HasSubstr("greenlet 'huge'"));
        EXPECT_THAT(e.what(), HasSubstr(std::to_string(unmappable) + "-byte stack"));
        EXPECT_THAT(e.what(), HasSubstr("address space"));
    }
    // Still not started, nothing allocated; it can be retried, killed and dropped.
    EXPECT_FALSE(g.started());
    EXPECT_FALSE(ran);
    EXPECT_EQ(stack_statistics().in_use, before.in_use);
    EXPECT_THROW((void)g.switch_to(), std::system_error);
    value killed = g.throw_in();
    EXPECT_TRUE(killed.is<greenfiber::greenlet_exit>());
    EXPECT_TRUE(g.dead());
    EXPECT_FALSE(ran);
}

TEST_F(StackPool, UnmappableStackOfAChildGoesToItsParentWhichCanCatchIt) {
    greenlet outer([] {
        greenlet inner([] {}, named("inner", unmappable));
        try {
            (void)inner.switch_to();
        } catch (const std::system_error& e) {
            return std::string(e.what());
        }
        return std::string("(nothing thrown)");
    });
    EXPECT_THAT(outer.switch_to().get<std::string>(), HasSubstr("greenlet 'inner'"));
}

TEST_F(StackPool, EagerStackIsAllocatedByTheConstructorWhichThrowsWhenItCannot) {
    const stack_stats before = stack_statistics();
    const std::size_t live = greenfiber::live_greenlets();
    greenlet::options huge = named("eager-huge", unmappable);
    huge.eager_stack = true;
    bool ran = false;
    try {
        greenlet g([&] { ran = true; }, huge);
        ADD_FAILURE() << "no exception";
    } catch (const greenfiber::stack_error& e) {
        EXPECT_EQ(e.stack_size(), unmappable);
        EXPECT_THAT(e.what(), HasSubstr("greenlet 'eager-huge'"));
    }
    EXPECT_FALSE(ran);
    EXPECT_EQ(greenfiber::live_greenlets(), live);
    EXPECT_EQ(stack_statistics().in_use, before.in_use);

    greenlet::options ok = named("eager", 100000);
    ok.eager_stack = true;
    greenlet g(
        [](int x) {
            value v = to_parent(x);
            return x + v.get<int>();
        },
        ok);
    EXPECT_FALSE(g.started());
    EXPECT_EQ(g.stack_size(), round_up_to_page(100000));
    EXPECT_EQ(stack_statistics().in_use, before.in_use + 1);
    EXPECT_EQ(g.switch_to(1).get<int>(), 1);  // runs on the stack allocated above
    EXPECT_EQ(stack_statistics().in_use, before.in_use + 1);
    EXPECT_EQ(g.switch_to(2).get<int>(), 3);
    EXPECT_EQ(stack_statistics().in_use, before.in_use);

    // Never started: killing it or dropping it gives the stack back.
    greenlet killed([] {}, ok);
    greenlet dropped([] {}, ok);
    EXPECT_EQ(stack_statistics().in_use, before.in_use + 2);
    EXPECT_TRUE(killed.throw_in().is<greenfiber::greenlet_exit>());
    EXPECT_EQ(stack_statistics().in_use, before.in_use + 1);
    dropped = greenlet();
    EXPECT_EQ(stack_statistics().in_use, before.in_use);
}

// The address-space limit (RLIMIT_AS) is named, in a child process that lowers it.
TEST_F(StackOverflowDeathTest, StackBeyondRlimitAsFailsNamingTheLimit) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(
        {
            std::ifstream statm("/proc/self/statm");
            std::size_t pages = 0;
            statm >> pages;
            // Room for small allocations, not for a 64 MiB stack.
            const rlim_t limit = static_cast<rlim_t>(pages * page + 16 * 1024 * 1024);
            struct rlimit rl {};
            getrlimit(RLIMIT_AS, &rl);
            rl.rlim_cur = limit;
            if (setrlimit(RLIMIT_AS, &rl) != 0) std::_Exit(2);
            greenlet g([] {}, named("limited", 64 * 1024 * 1024));
            std::string what = "(nothing thrown)";
            try {
                (void)g.switch_to();
            } catch (const greenfiber::stack_error& e) {
                what = e.what();
            }
            std::fprintf(stderr, "%s\n", what.c_str());
            std::fflush(stderr);
            std::_Exit(!g.started() ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "67108864-byte stack of greenlet 'limited'.*RLIMIT_AS");
}

// The lowest usable byte of a started greenlet's stack (its canary word is there).
char* stack_bottom(const greenlet& g) {
    return static_cast<char*>(greenfiber::detail::access::impl(g)->stack_lo);
}

// Reaches 512 bytes below the bottom of the calling greenlet's stack with one frame larger
// than a page, writes its far end (so the canary word at the bottom stays intact) and
// switches to the parent while that frame is live. Exits 3 if the stack is guarded (the
// test would prove nothing).
__attribute__((noinline)) void overflow_past_the_canary() {
    const greenlet self = greenlet::current();
    if (greenfiber::detail::access::impl(self)->stack_guarded) std::_Exit(3);
    char here = 0;
    const auto room = static_cast<std::size_t>(&here - stack_bottom(self));
    auto* frame = static_cast<volatile char*>(alloca(room + 512));
    frame[0] = 1;  // the far end: in the page below the stack, not on the canary
    (void)to_parent();
    frame[1] = frame[0];
}

// Past the guard budget a stack has no guard page. An overflow by a frame that skips the
// canary is still caught, at the switch out of the overflowing frame, and named.
TEST_F(StackOverflowDeathTest, UnguardedOverflowThatSkipsTheCanaryIsCaughtAtTheSwitch) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            greenfiber::set_guard_budget(stack_statistics().guarded);  // spent
            // A size of its own: a new slab, mapped without a guard page.
            greenlet g([] { overflow_past_the_canary(); },
                       named("unguarded", default_stack_size() + 11 * page));
            (void)g.switch_to();
        },
        "stack overflow in greenlet 'unguarded' \\(#[0-9]+\\).*below the bottom of its " +
            std::to_string(default_stack_size() + 11 * page) + "-byte stack");
}

// A guarded stack has no canary word of its own (its guard page does that work): a frame
// that jumps over the guard page, without touching it, is still caught at the switch out of
// that frame, by the stack-pointer check, and named. The stack is the first of a new slab of
// guarded stacks, so the memory below its guard page is the next stack's (mapped).
__attribute__((noinline)) void skip_past_the_guard() {
    const greenlet self = greenlet::current();
    if (!greenfiber::detail::access::impl(self)->stack_guarded) std::_Exit(3);
    char here = 0;
    const auto room = static_cast<std::size_t>(&here - stack_bottom(self));
    auto* frame = static_cast<volatile char*>(alloca(room + page + 512));
    (void)to_parent();  // the frame's far end lies below the guard page: nothing touched it
    frame[room] = 1;
}

TEST_F(StackOverflowDeathTest, GuardedOverflowThatSkipsTheGuardPageIsCaughtAtTheSwitch) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            // A default size of its own: a new slab of 32 guarded stacks, the top one first.
            greenfiber::set_default_stack_size(default_stack_size() + 23 * page);
            greenlet g([] { skip_past_the_guard(); }, named("guarded"));
            (void)g.switch_to();
        },
        "stack overflow in greenlet 'guarded' \\(#[0-9]+\\).*below the bottom of its " +
            std::to_string(default_stack_size() + 23 * page) + "-byte stack\\.");
}

// An unguarded stack keeps its canary: a frame that overwrites the stack's lowest word
// (and returns) is caught at the greenlet's next switch out.
TEST_F(StackOverflowDeathTest, UnguardedOverflowOntoTheCanaryIsCaughtAtTheNextSwitch) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            greenfiber::set_guard_budget(stack_statistics().guarded);  // spent
            greenlet g(
                [] {
                    const greenlet self = greenlet::current();
                    if (greenfiber::detail::access::impl(self)->stack_guarded) std::_Exit(3);
                    *reinterpret_cast<volatile std::uintptr_t*>(stack_bottom(self)) = 0x5a5a;
                    (void)to_parent();
                },
                named("canary", default_stack_size() + 29 * page));
            (void)g.switch_to();
        },
        "stack overflow in greenlet 'canary' \\(#[0-9]+\\): the canary at the limit of its " +
            std::to_string(default_stack_size() + 29 * page) + "-byte stack was overwritten");
}

// Writes one byte `below` bytes under the bottom of the calling greenlet's stack, from a
// frame that reaches there, and returns without switching: the canary word stays intact
// and the stack pointer is back inside the stack at the next switch.
__attribute__((noinline)) void write_below_the_stack_and_return(std::size_t below) {
    char* lo = stack_bottom(greenlet::current());
    char here = 0;
    const auto room = static_cast<std::size_t>(&here - lo);
    auto* frame = static_cast<char*>(alloca(room + below + 256));
    *static_cast<volatile char*>(frame + ((lo - below) - frame)) = 0x77;
}

// Past the guard budget the stacks of a slab lie over an unused gap: a frame that
// overflows by more than a page, writes there and returns harms nothing below it (with a
// one-page gap the write landed in the neighbouring stack's frames).
TEST_F(StackPool, UnguardedOverflowBeyondAPageDoesNotReachTheNeighbouringStack) {
    pool_settings_scope restore;
    greenfiber::set_guard_budget(stack_statistics().guarded);  // spent
    // A default size of its own: the next stacks come from a new, unguarded slab.
    greenfiber::set_default_stack_size(default_stack_size() + 13 * page);
    // Parks with a pattern on its stack; resumed with a distance, overflows by it and
    // parks again; finally says whether its pattern is intact.
    auto body = [] {
        std::array<unsigned char, 32 * 1024> pattern;
        pattern.fill(0x5a);
        value v = to_parent();
        if (v.is<std::size_t>()) {
            write_below_the_stack_and_return(v.get<std::size_t>());
            (void)to_parent();
        }
        return std::all_of(pattern.begin(), pattern.end(),
                           [](unsigned char c) { return c == 0x5a; });
    };
    greenlet first(body, named("first"));
    greenlet second(body, named("second"));
    (void)first.switch_to();
    (void)second.switch_to();
    auto* a = greenfiber::detail::access::impl(first);
    auto* b = greenfiber::detail::access::impl(second);
    ASSERT_FALSE(a->stack_guarded);
    ASSERT_FALSE(b->stack_guarded);
    const bool first_is_lower = a->stack_lo < b->stack_lo;
    greenlet& lower = first_is_lower ? first : second;
    greenlet& upper = first_is_lower ? second : first;
    char* const lower_top = stack_bottom(lower) + default_stack_size();
    ASSERT_GE(stack_bottom(upper), lower_top);
    ASSERT_LE(stack_bottom(upper) - lower_top, 1 << 20) << "not neighbours in one slab";
    // Two pages under the upper stack: with a one-page gap, inside the lower one's pattern.
    EXPECT_TRUE(upper.switch_to(std::size_t(2) * page).empty());
    EXPECT_TRUE(lower.switch_to().get<bool>());
    EXPECT_TRUE(upper.switch_to().get<bool>());
}

// ---------------------------------------------------------------------------------------
// Small stacks (stack.hpp, "Small stacks"). The test programs run with LD_BIND_NOW=1
// (tests/meson.build), which small stacks require.

// The slot a declared small stack gets: rounded up to 256 bytes from the minimum, four
// times that under AddressSanitizer.
std::size_t small_slot(std::size_t declared) {
    const std::size_t slot = (std::max(declared, greenfiber::small_stack_min) + 255) / 256 * 256;
    return GREENFIBER_ASAN ? slot * 4 : slot;
}

greenlet::options small(std::string name, std::size_t bytes) {
    greenlet::options o;
    o.name = std::move(name);
    o.small_stack = bytes;
    return o;
}

class SmallStack : public greenfiber::testing::leak_checked {};
class SmallStackDeathTest : public greenfiber::testing::leak_checked {};

TEST_F(SmallStack, RunsValuesBothWaysOnAnUnguardedStackOfTheDeclaredSize) {
    const std::size_t base = stack_statistics().in_use;
    greenlet g([](int a) { return to_parent(a * 2).get<int>() + 1; }, small("small", 2000));
    EXPECT_EQ(g.stack_size(), 0u);  // not started: no stack yet
    EXPECT_EQ(g.switch_to(21).get<int>(), 42);
    EXPECT_EQ(g.stack_size(), small_slot(2000));
    EXPECT_FALSE(greenfiber::detail::access::impl(g)->stack_guarded);
    EXPECT_EQ(stack_statistics().in_use, base + 1);
    EXPECT_EQ(g.switch_to(9).get<int>(), 10);
    EXPECT_TRUE(g.dead());
    EXPECT_EQ(stack_statistics().in_use, base);
}

TEST_F(SmallStack, SizesRoundUpTo256BytesFromTheMinimumUpToTheMaximum) {
    for (std::size_t declared : {std::size_t{1}, std::size_t{1024}, std::size_t{1025},
                                 std::size_t{2300}, greenfiber::small_stack_max()}) {
        greenlet::options o = small("eager", declared);
        o.eager_stack = true;
        greenlet e([] {}, std::move(o));
        EXPECT_EQ(e.stack_size(), small_slot(declared)) << declared;
    }
    EXPECT_EQ(greenfiber::small_stack_max(), page - 512);
}

TEST_F(SmallStack, AboveTheMaximumOrBesideAStackSizeIsRefusedNamingTheProblem) {
    const std::size_t base = stack_statistics().in_use;
    try {
        greenlet g([] {}, small("big", greenfiber::small_stack_max() + 1));
        FAIL() << "no error";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("greenlet 'big'"));
        EXPECT_THAT(e.what(),
                    HasSubstr("at most " + std::to_string(greenfiber::small_stack_max())));
        EXPECT_THAT(e.what(), HasSubstr("stack_size"));
    }
    greenlet::options both = small("both", 2048);
    both.stack_size = 65536;
    try {
        greenlet g([] {}, std::move(both));
        FAIL() << "no error";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("greenlet 'both' asks for both a stack_size (65536) and a "
                                        "small_stack (2048)"));
    }
    EXPECT_EQ(stack_statistics().in_use, base);
}

// Many parked small greenlets at once: each keeps what it left on its stack, the stacks lie
// side by side, and every one finishes with its own value.
TEST_F(SmallStack, ThousandsOfParkedSmallGreenletsKeepTheirFramesAndFinish) {
    constexpr int n = 3000;
    const std::size_t base = stack_statistics().in_use;
    std::vector<greenlet> gs;
    gs.reserve(n);
    for (int i = 0; i < n; ++i) {
        gs.emplace_back(
            [](int index) {
                std::array<int, 64> mine;  // 256 bytes on the small stack, kept while parked
                mine.fill(index);
                const int got = to_parent().get<int>();
                for (int x : mine)
                    if (x != index) return -1;
                return index * 7 + got;
            },
            small("parked", 1536));
        ASSERT_TRUE(gs.back().switch_to(i).empty());
    }
    EXPECT_EQ(stack_statistics().in_use, base + n);
    std::vector<char*> bottoms;
    for (const auto& g : gs) bottoms.push_back(stack_bottom(g));
    std::sort(bottoms.begin(), bottoms.end());
    std::size_t neighbours = 0;
    for (std::size_t i = 1; i < bottoms.size(); ++i) {
        ASSERT_GE(static_cast<std::size_t>(bottoms[i] - bottoms[i - 1]), small_slot(1536));
        if (static_cast<std::size_t>(bottoms[i] - bottoms[i - 1]) == small_slot(1536)) ++neighbours;
    }
    EXPECT_GT(neighbours, std::size_t{n / 2}) << "small stacks of one size share their slabs";
    for (int i = n; i-- > 0;) EXPECT_EQ(gs[std::size_t(i)].switch_to(5).get<int>(), i * 7 + 5);
    EXPECT_EQ(stack_statistics().in_use, base);
}

TEST_F(SmallStack, FreedSmallStacksAreReusedBySizeWithoutMappingMore) {
    auto run_batch = [](std::size_t bytes) {
        std::vector<greenlet> gs;
        for (int i = 0; i < 200; ++i) {
            gs.emplace_back([] { (void)to_parent(); }, small("batch", bytes));
            (void)gs.back().switch_to();
        }
        for (auto& g : gs) (void)g.switch_to();
    };
    run_batch(1280);
    run_batch(3072);
    const stack_stats before = stack_statistics();
    for (int round = 0; round < 5; ++round) {
        run_batch(1280);
        run_batch(3072);
    }
    const stack_stats after = stack_statistics();
    EXPECT_EQ(after.in_use, before.in_use);
    EXPECT_EQ(after.pooled, before.pooled);
}

// A kill unwinds on the small stack (about 2 KiB for the unwinder below the park): the
// largest small stack holds it, and every destructor on the way runs.
TEST_F(SmallStack, AParkedSmallGreenletIsKilledAndThrownIntoWithItsDestructorsRun) {
    int destroyed = 0;
    struct counted {
        int* n;
        ~counted() { ++*n; }
    };
    {
        greenlet g(
            [&] {
                counted c{&destroyed};
                (void)to_parent();
            },
            small("killed", greenfiber::small_stack_max()));
        (void)g.switch_to();
    }  // the last handle: greenlet_exit unwinds it
    EXPECT_EQ(destroyed, 1);
    greenlet h(
        [&] {
            counted c{&destroyed};
            try {
                (void)to_parent();
            } catch (const std::runtime_error& e) {
                return std::string("caught ") + e.what();
            }
            return std::string("not thrown");
        },
        small("thrown", greenfiber::small_stack_max()));
    (void)h.switch_to();
    EXPECT_EQ(h.throw_in(std::make_exception_ptr(std::runtime_error("x"))).get<std::string>(),
              "caught x");
    EXPECT_EQ(destroyed, 2);
}

// A throw's unwinder runs on the thread's side stack (small_stacks_unwind_aside()): a kill
// of a greenlet parked on a 1 536-byte stack stays inside it, where the unwinder alone
// would take about 2 KiB below the parked frames. Its landing pads (the destructors) still
// run on the small stack, at the depth of their own frames.
TEST_F(SmallStack, AKillUnwindsOffTheSmallStackAndItsDestructorsRunOnIt) {
    ASSERT_TRUE(greenfiber::small_stacks_unwind_aside());
    int destroyed = 0;
    struct counted {
        int* n;
        ~counted() { ++*n; }
    };
    // Three frames with a destructor each between the park and the greenlet's entry: the
    // unwinding resumes (_Unwind_Resume) from each.
    struct nest {
        static void park(int* n, int depth) {
            counted c{n};
            if (depth == 0) {
                (void)to_parent();
            } else {
                park(n, depth - 1);
            }
        }
    };
    greenlet g([&] { nest::park(&destroyed, 2); }, small("killed", 1536));
    (void)g.switch_to();
    greenfiber::testing::stack_depth_probe probe(greenfiber::detail::access::impl(g));
    (void)g.throw_in();  // greenlet_exit
    EXPECT_TRUE(g.dead());
    EXPECT_EQ(destroyed, 3);
    EXPECT_TRUE(probe.stayed_inside()) << probe.deepest() << " of " << probe.stack_bytes();
}

// Every way an exception is raised on a small stack goes off it: a throw, a rethrow in a
// handler (`throw;`), std::rethrow_exception, an exception thrown from a handler, and a
// function-try-block; each is caught on the small stack with its value.
TEST_F(SmallStack, ThrowsRethrowsAndNestedHandlersRunWithinA1536ByteStack) {
    std::vector<std::string> seen;
    greenlet g(
        [&] {
            (void)to_parent();  // parked once, so that the probe sees the rest
            try {
                try {
                    throw std::runtime_error("first");
                } catch (const std::runtime_error& e) {
                    seen.emplace_back(e.what());
                    throw;  // __cxa_rethrow: _Unwind_Resume_or_Rethrow
                }
            } catch (const std::runtime_error& e) {
                seen.emplace_back(std::string("again ") + e.what());
            }
            std::exception_ptr kept;
            try {
                throw std::logic_error("kept");
            } catch (...) {
                kept = std::current_exception();
            }
            try {
                std::rethrow_exception(kept);
            } catch (const std::logic_error& e) {
                seen.emplace_back(e.what());
                try {
                    throw std::out_of_range("inner");
                } catch (const std::out_of_range& in) {
                    seen.emplace_back(in.what());
                }
            }
            struct fn_try {
                static int run() try { throw 7; } catch (int v) {
                    return v;
                }
            };
            seen.push_back(std::to_string(fn_try::run()));
        },
        small("thrower", 1536));
    (void)g.switch_to();
    greenfiber::testing::stack_depth_probe probe(greenfiber::detail::access::impl(g));
    (void)g.switch_to();
    EXPECT_TRUE(g.dead());
    EXPECT_EQ(seen, (std::vector<std::string>{"first", "again first", "kept", "inner", "7"}));
    EXPECT_TRUE(probe.stayed_inside()) << probe.deepest() << " of " << probe.stack_bytes();
}

// A destructor run by a kill's unwinding throws and catches an exception of its own, on the
// small stack, between two landing pads: the inner unwinding uses the side stack while the
// outer one is in flight (its state is in the exception object, not on the side stack), and
// the kill then resumes to the end.
TEST_F(SmallStack, ADestructorThrowsAndCatchesWhileAKillUnwindsIt) {
    int inner_caught = 0;
    int destroyed = 0;
    struct throws_inside {
        int* caught;
        int* n;
        ~throws_inside() {
            try {
                throw std::runtime_error("inside a destructor");
            } catch (const std::runtime_error&) {
                ++*caught;
            }
            ++*n;
        }
    };
    struct plain {
        int* n;
        ~plain() { ++*n; }
    };
    greenlet g(
        [&] {
            plain outer{&destroyed};
            throws_inside middle{&inner_caught, &destroyed};
            plain inner{&destroyed};
            (void)to_parent();
        },
        small("nested", 1536));
    (void)g.switch_to();
    greenfiber::testing::stack_depth_probe probe(greenfiber::detail::access::impl(g));
    (void)g.throw_in();
    EXPECT_TRUE(g.dead());
    EXPECT_EQ(inner_caught, 1);
    EXPECT_EQ(destroyed, 3);
    EXPECT_TRUE(probe.stayed_inside()) << probe.deepest() << " of " << probe.stack_bytes();
}

// Two threads throw on small stacks at once: each unwinds on its own side stack.
TEST_F(SmallStack, TwoThreadsUnwindOnTheirOwnSideStacksAtOnce) {
    std::atomic<int> caught{0};
    auto body = [&] {
        for (int round = 0; round < 200; ++round) {
            greenlet g(
                [&] {
                    try {
                        throw std::runtime_error("x");
                    } catch (const std::runtime_error&) {
                        caught.fetch_add(1, std::memory_order_relaxed);
                    }
                    (void)to_parent();
                },
                small("thread", 1536));
            (void)g.switch_to();
        }  // each killed while parked: greenlet_exit unwinds it aside too
    };
    std::thread other(body);
    body();
    other.join();
    EXPECT_EQ(caught.load(), 400);
}

TEST_F(SmallStackDeathTest, ARunawayRecursionIsReportedAsAnOverflowOfItsSmallStack) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            greenlet g([] { return recurse(0, -1); }, small("runaway", 2048));
            (void)g.switch_to();
        },
        "stack overflow in greenlet 'runaway' \\(#[0-9]+\\): its stack is " +
            std::to_string(small_slot(2048)) + " bytes, a small stack");
}

// Leaves about 600 bytes of its stack (5 000 under ASan), overwrites the canary and switches out:
// the report is printed from a stack of its own, since this one has no room for it. (The stack is
// the first of a fresh slab, with nothing mapped below it: a report formatted on it would fault
// below the slab and print the fault's message instead.)
TEST_F(SmallStackDeathTest, ACanaryOverwrittenAtTheEdgeIsReportedFromAStackOfItsOwn) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            greenlet g(
                [] {
                    const greenlet self = greenlet::current();
                    char* lo = stack_bottom(self);
                    char here = 0;
                    const auto room = static_cast<std::size_t>(&here - lo);
                    // Instrumented frames are larger: the switch out needs more room.
                    const std::size_t left = GREENFIBER_ASAN ? 5000 : 600;
                    auto* frame = static_cast<volatile char*>(alloca(room - left));
                    frame[0] = 1;
                    *reinterpret_cast<volatile std::uintptr_t*>(lo) = 0x5a5a;
                    (void)to_parent();
                },
                small("edge", 1792));
            (void)g.switch_to();
        },
        "stack overflow in greenlet 'edge' \\(#[0-9]+\\): the canary at the limit of its " +
            std::to_string(small_slot(1792)) + "-byte small stack was overwritten");
}

// Small stacks are refused while a loaded library binds its symbols lazily: the program is
// run again without LD_BIND_NOW, where it must say so and how to fix it.
TEST_F(SmallStack, RefusedNamingTheLazilyBoundLibraryWithoutLdBindNow) {
    char self[4096];
    const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    ASSERT_GT(len, 0);
    self[len] = '\0';
    const std::string command = std::string("env -u LD_BIND_NOW '") + self +
                                "' --gtest_also_run_disabled_tests "
                                "--gtest_filter=SmallStack.DISABLED_ChildAsksForASmallStack 2>&1";
    std::FILE* child = popen(command.c_str(), "r");
    ASSERT_NE(child, nullptr);
    std::string out;
    char buf[4096];
    for (std::size_t got; (got = std::fread(buf, 1, sizeof buf, child)) > 0;) out.append(buf, got);
    EXPECT_EQ(pclose(child), 0) << out;
    EXPECT_THAT(out, HasSubstr("binds its symbols at their first call"));
    EXPECT_THAT(out, HasSubstr("run the program with LD_BIND_NOW=1"));
}

TEST_F(SmallStack, DISABLED_ChildAsksForASmallStack) {
    try {
        greenlet g([] {}, small("child", 2048));
        FAIL() << "a small stack was given with lazy binding";
    } catch (const greenfiber::error& e) {
        std::printf("%s\n", e.what());
    }
}

}  // namespace
