#include "greenfiber/hub_group.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/loop.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

class HubGroup : public greenfiber::testing::io_checked {};

// Sets a flag as it is destroyed: proves a remote task's frame unwound.
struct unwound {
    std::atomic<bool>& flag;
    ~unwound() { flag = true; }
};

// Waits on the calling fiber (its hub goes on) until `flag` is set; bounded far away.
void wait_for_flag(const std::atomic<bool>& flag) {
    for (int i = 0; i < 20000 && !flag; ++i) sleep(1ms);
    ASSERT_TRUE(flag) << "the flag was never set";
}

TEST_F(HubGroup, TaskRunsOnTheChosenHubAndItsValueComesBack) {
    hub_group group(2);
    ASSERT_EQ(group.size(), 2u);
    EXPECT_EQ(group.current_index(), 2u);  // the test's thread is not one of them
    for (std::size_t i = 0; i < group.size(); ++i) {
        auto r = group.spawn_on(i, [&group] {
            return std::make_pair(group.current_index(), std::this_thread::get_id());
        });
        EXPECT_EQ(r.hub_index(), i);
        const auto& [index, thread] = r.get();
        EXPECT_EQ(index, i);
        EXPECT_NE(thread, std::this_thread::get_id());
    }
    auto v = group.spawn_on(0, [] {});
    v.get();
    EXPECT_TRUE(v.ready());
}

TEST_F(HubGroup, TheCallerWaitsWithoutBlockingItsHub) {
    hub_group group(1);
    std::atomic<bool> go{false};
    // The remote task ends only when a task of the caller's hub has run meanwhile: a get()
    // that blocked its thread would never let it.
    auto r = group.spawn_on(0, [&go] {
        wait_for_flag(go);
        return 7;
    });
    auto ticker = spawn([&go] {
        yield_now();
        go = true;
    });
    EXPECT_EQ(r.get(), 7);
    ticker.get();
}

TEST_F(HubGroup, TheRemoteTasksExceptionIsRethrownToTheCaller) {
    hub_group group(2);
    auto r = group.spawn_on(1, []() -> int { throw std::runtime_error("boom on hub 1"); });
    try {
        (void)r.get();
        FAIL() << "get() returned";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(), "boom on hub 1");
    }
    // A cancelled_error thrown by the remote function is the remote task's cancellation.
    auto c = group.spawn_on(0, [] { throw cancelled_error("from the remote"); });
    try {
        c.get();
        FAIL() << "get() returned";
    } catch (const cancelled_error& e) {
        EXPECT_EQ(e.message(), "from the remote");
    }
}

TEST_F(HubGroup, CancelCancelsTheRemoteTaskAndItsFrameUnwinds) {
    hub_group group(2);
    std::atomic<bool> started{false}, done{false};
    auto r = group.spawn_on(1, [&] {
        unwound u{done};
        started = true;
        sleep(1h);
        return 1;
    });
    wait_for_flag(started);
    EXPECT_TRUE(r.cancel());
    EXPECT_THROW((void)r.get(), cancelled_error);
    EXPECT_TRUE(done);  // the outcome is sent as the task unwinds, after its locals
}

TEST_F(HubGroup, CancelBeforeTheRemoteTaskRunsMeansItNeverRuns) {
    hub_group group(1);
    std::atomic<bool> ran{false};
    // Keep hub 0 busy so that the second spawn is still queued when cancel() arrives.
    std::atomic<bool> blocker_started{false}, release{false};
    auto blocker = group.spawn_on(0, [&] {
        blocker_started = true;
        while (!release) std::this_thread::yield();  // holds the hub's thread on purpose
    });
    wait_for_flag(blocker_started);
    auto r = group.spawn_on(0, [&ran] { ran = true; });
    EXPECT_TRUE(r.cancel());
    release = true;
    try {
        r.get();
        FAIL() << "get() returned";
    } catch (const cancelled_error& e) {
        EXPECT_THAT(e.message(), HasSubstr("cancelled before it ran"));
    }
    blocker.get();
    EXPECT_FALSE(ran);
}

TEST_F(HubGroup, CancellingTheWaitingCallerCancelsTheRemoteTask) {
    hub_group group(2);
    std::atomic<bool> started{false}, done{false};
    auto r = group.spawn_on(0, [&] {
        unwound u{done};
        started = true;
        sleep(1h);
    });
    auto caller = spawn([&r] { r.get(); });
    wait_for_flag(started);
    yield_now();  // the caller is parked in get()
    EXPECT_TRUE(caller.cancel());
    EXPECT_THROW(caller.get(), cancelled_error);
    // The caller did not wait for the remote task; its cancellation still reaches it.
    wait_for_flag(done);
    EXPECT_THROW(r.get(), cancelled_error);
}

TEST_F(HubGroup, StopLetsTasksFinishWithinTheGrace) {
    hub_group group(2);
    std::vector<remote_task<int>> rs;
    for (int i = 0; i < 4; ++i) {
        rs.push_back(group.spawn_on(i % 2, [i] {
            sleep(5ms);
            return i;
        }));
    }
    group.stop(1h);  // returns once all four finished: nothing is cancelled
    EXPECT_TRUE(group.stopped());
    for (int i = 0; i < 4; ++i) EXPECT_EQ(rs[i].get(), i);
}

TEST_F(HubGroup, StopCancelsTasksStillRunningAfterTheGrace) {
    std::atomic<bool> started{false}, done{false}, child_done{false};
    remote_task<int> r;
    {
        hub_group group(2);
        r = group.spawn_on(1, [&] {
            unwound u{done};
            // What a remote task spawns on its hub is cancelled too.
            auto child = spawn([&child_done] {
                unwound c{child_done};
                sleep(1h);
            });
            started = true;
            sleep(1h);
            return 1;
        });
        wait_for_flag(started);
        group.stop(0s);
        EXPECT_TRUE(done);
        EXPECT_TRUE(child_done);
        EXPECT_FALSE(r.cancel());  // the hub is gone: nothing to send it to
    }
    EXPECT_THROW((void)r.get(), cancelled_error);
}

TEST_F(HubGroup, SpawnOnAStoppedGroupOrAMissingHubIsAClearError) {
    hub_group group(2);
    try {
        (void)group.spawn_on(2, [] {});
        FAIL() << "spawn_on(2) returned";
    } catch (const error& e) {
        EXPECT_THAT(e.what(), HasSubstr("no hub 2 (the group has 2)"));
    }
    group.stop();
    try {
        (void)group.spawn_on(0, [] {});
        FAIL() << "spawn_on() after stop() returned";
    } catch (const hub_group_stopped& e) {
        EXPECT_THAT(e.what(), HasSubstr("the group is stopped"));
    }
    EXPECT_FALSE(group.handle(0));
    group.stop();  // again: nothing happens
    EXPECT_THROW(hub_group(0), error);
}

TEST_F(HubGroup, StopFromOneOfTheGroupsOwnThreadsIsRefused) {
    hub_group group(1);
    auto r = group.spawn_on(0, [&group] { group.stop(); });
    try {
        r.get();
        FAIL() << "stop() from the group's thread returned";
    } catch (const error& e) {
        EXPECT_THAT(e.what(), HasSubstr("of the group itself"));
    }
    EXPECT_FALSE(group.stopped());
}

// Records the thread its value is destroyed on.
struct where_destroyed {
    std::shared_ptr<std::thread::id> at;
    where_destroyed(std::shared_ptr<std::thread::id> a) : at(std::move(a)) {}
    where_destroyed(where_destroyed&& o) noexcept : at(std::move(o.at)) {}
    ~where_destroyed() {
        if (at) *at = std::this_thread::get_id();
    }
};

TEST_F(HubGroup, AHandleDestroyedOnAnotherThreadFreesItsResultOnItsOwn) {
    hub_group group(1);
    auto at = std::make_shared<std::thread::id>();
    auto r = group.spawn_on(0, [at] { return where_destroyed(at); });
    ASSERT_TRUE(r.wait_for(1h));
    std::thread other([r = std::move(r)]() mutable {
        EXPECT_THROW((void)r.get(), error);  // thread-bound: the result is not this thread's
        remote_task<where_destroyed> gone = std::move(r);
    });
    other.join();
    EXPECT_EQ(*at, std::thread::id());  // not freed on `other`...
    for (int i = 0; i < 20000 && *at == std::thread::id(); ++i) sleep(1ms);
    EXPECT_EQ(*at, std::this_thread::get_id());  // ...but here, when the hub got to it
}

TEST_F(HubGroup, GetFromAnotherThreadNamesTheRule) {
    hub_group group(1);
    auto r = group.spawn_on(0, [] { return 1; });
    std::string message;
    std::thread other([&] {
        try {
            (void)r.get();
        } catch (const error& e) {
            message = e.what();
        }
    });
    other.join();
    EXPECT_THAT(message, HasSubstr("another thread than the one that called spawn_on()"));
    EXPECT_EQ(r.get(), 1);
}

TEST_F(HubGroup, ADetachedRemoteTaskRunsToItsEnd) {
    std::atomic<bool> done{false};
    hub_group group(1);
    {
        auto r = group.spawn_on(0, [&done] {
            sleep(2ms);
            done = true;
        });
    }  // dropped: detached
    wait_for_flag(done);
    group.stop();
}

// Many fibers on several hubs of their own spawn onto a group at random, with every kind of
// outcome; every result must be accounted for, and every remote frame must unwind.
TEST_F(HubGroup, RandomisedSpawnsFromSeveralHubsAreAllAccountedFor) {
    const unsigned seed = std::random_device{}();
    SCOPED_TRACE("seed " + std::to_string(seed));
    constexpr int callers = 3, fibers_per_caller = 8, spawns_per_fiber = 12;
    hub_group group(2);
    std::atomic<int> values{0}, errors{0}, cancels{0}, wrong{0}, frames{0}, unwound_frames{0};
    auto caller_thread = [&](unsigned s) {
        std::vector<task<void>> ts;
        for (int f = 0; f < fibers_per_caller; ++f) {
            ts.push_back(spawn([&, rng = std::mt19937(s + f)]() mutable {
                for (int k = 0; k < spawns_per_fiber; ++k) {
                    const int kind = static_cast<int>(rng() % 5);
                    const std::size_t where = rng() % group.size();
                    const int expect = static_cast<int>(rng() % 1000);
                    const int delay = static_cast<int>(rng() % 3);
                    auto body = [&, kind, expect, delay]() -> int {
                        ++frames;
                        struct count {
                            std::atomic<int>& n;
                            ~count() { ++n; }
                        } c{unwound_frames};
                        if (delay > 0) sleep(std::chrono::milliseconds(delay));
                        if (kind == 1) throw std::runtime_error(std::to_string(expect));
                        if (kind == 4) {  // nested: a group hub spawns onto the other one
                            auto inner = group.spawn_on((group.current_index() + 1) % 2,
                                                        [expect] { return expect; });
                            return inner.get();
                        }
                        if (kind >= 2) sleep(1h);  // to be cancelled
                        return expect;
                    };
                    auto r = group.spawn_on(where, body);
                    try {
                        if (kind == 2) {
                            (void)r.cancel();
                        } else if (kind == 3) {  // the waiting caller is cancelled
                            auto waiter = spawn([&r] { (void)r.get(); });
                            yield_now();
                            waiter.cancel();
                            EXPECT_THROW(waiter.get(), cancelled_error);
                        }
                        const int v = r.get();
                        if (v == expect && (kind == 0 || kind == 4)) {
                            ++values;
                        } else {
                            ++wrong;
                        }
                    } catch (const std::runtime_error& e) {
                        if (kind == 1 && e.what() == std::to_string(expect)) {
                            ++errors;
                        } else {
                            ++wrong;
                        }
                    } catch (const cancelled_error&) {
                        if (kind == 2 || kind == 3) {
                            ++cancels;
                        } else {
                            ++wrong;
                        }
                    }
                }
            }));
        }
        for (auto& t : ts) t.get();
    };
    std::vector<std::thread> threads;
    for (int c = 0; c < callers; ++c) threads.emplace_back(caller_thread, seed + 1000u * c);
    for (auto& t : threads) t.join();
    group.stop();
    constexpr int total = callers * fibers_per_caller * spawns_per_fiber;
    EXPECT_EQ(wrong, 0);
    EXPECT_EQ(values + errors + cancels, total);
    EXPECT_EQ(frames, unwound_frames);  // every frame that started has unwound
}

}  // namespace
