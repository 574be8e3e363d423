// hub.hpp / task.hpp: a task whose function has ended hands the thread straight to the next
// ready fiber (one switch, its stack freed by the receiver), as a fiber that parks does; it
// dies into the hub only when the next entry is a callback, the turn's budget is spent, or
// its parent is not the hub (a kill returns to the killer). What a careless or hostile
// program does around that: every way a task ends, a handle dropped while it runs, a trace
// hook, the watchdog, the hub's trace, eager tasks, run()'s main task, a failed start.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "greenfiber/detail/greenlet_impl.hpp"
#include "greenfiber/hub.hpp"
#include "greenfiber/loop.hpp"
#include "greenfiber/stack.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "greenfiber/trace.hpp"
#include "hub_support.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

class TaskHandoff : public greenfiber::testing::io_checked {};

// The switches and throws this thread's trace hook sees while it is in scope, as
// "origin>target" (a switch) or "origin!target" (a throw); a greenlet is named by its name,
// the thread's main greenlet "main", the hub's greenlet "hub". A hook puts the thread's
// switches on the general path: a finishing task then hands off through deliver(), and
// the hook names the switch that really happens.
class switch_log {
  public:
    switch_log() {
        previous_ = settrace([this](trace_event ev, const greenlet& origin, const greenlet& to) {
            seen.push_back(label(origin) + (ev == trace_event::switch_to ? ">" : "!") + label(to));
        });
    }
    switch_log(const switch_log&) = delete;
    switch_log& operator=(const switch_log&) = delete;
    ~switch_log() { (void)settrace(std::move(previous_)); }

    std::vector<std::string> seen;

  private:
    static std::string label(const greenlet& g) { return g.is_main() ? "main" : g.name(); }
    trace_function previous_;
};

// Lets the hub's loop begin a new turn and resumes the caller in it, with the whole
// ready_budget() ahead: a hand-off happens only within the turn's budget, so the switches a
// test expects must not depend on what the tests before it spent. The ready queue is empty
// when it is called, so the hub's loop goes to the reactor, which runs the post.
void fresh_turn() {
    event turned;
    hub::current().post([&turned] { turned.set(); });
    turned.wait();
}

spawn_options named(std::string name, bool eager = false) {
    return spawn_options{.name = std::move(name), .eager = eager};
}

// Two tasks, "p1" and "p2", parked on e1 and e2: each records its name in `order` when
// woken. Constructed, both have parked.
struct two_parked {
    explicit two_parked(std::vector<std::string>& order)
        : p1(spawn(named("p1"),
                   [this, &order] {
                       e1.wait();
                       order.push_back("p1");
                   })),
          p2(spawn(named("p2"), [this, &order] {
              e2.wait();
              order.push_back("p2");
          })) {
        yield_now();
    }
    event e1;
    event e2;
    task<void> p1;
    task<void> p2;
};

// Two tasks parked on events, a callback and a task on its first run are queued, in that
// order, by a task that then finishes: they run in the order they were queued, whichever
// way the thread gets to each (handed on from the finishing fiber, or from the hub).
TEST_F(TaskHandoff, AFinishingTaskRunsWhatIsReadyInFifoOrder) {
    hub& h = hub::current();
    std::vector<std::string> order;
    two_parked parked(order);
    auto& [e1, e2, p1, p2] = parked;
    ASSERT_TRUE(p1.parked());
    ASSERT_TRUE(p2.parked());
    auto finisher = spawn(named("finisher"), [&] {
        e1.set();
        h.call_soon([&] { order.push_back(h.in_hub() ? "callback" : "callback off the hub"); });
        e2.set();
        order.push_back("finisher");
    });
    auto n1 = spawn(named("n1"), [&] { order.push_back("n1"); });
    finisher.get();
    order.push_back("main");
    n1.get();
    p1.get();
    p2.get();
    // n1 was queued before the finisher woke p1, queued the callback and woke p2; the main
    // greenlet, woken by the finisher's end, comes last.
    EXPECT_EQ(order, (std::vector<std::string>{"finisher", "n1", "p1", "callback", "p2", "main"}));
}

// The same run, its switches recorded: finisher into n1 (its first run), n1 into p1 (woken
// from a park); p1 dies into the hub, which runs the callback on its own stack and hands p2
// the thread; p2 into the main greenlet, parked in get(). Nothing that finishes goes
// through the hub when a fiber is next.
TEST_F(TaskHandoff, TheSwitchesOfAFinishingTaskGoToTheNextFiberNotTheHub) {
    hub& h = hub::current();
    std::vector<std::string> order;
    two_parked parked(order);
    auto& [e1, e2, p1, p2] = parked;
    fresh_turn();
    auto finisher = spawn(named("finisher"), [&] {
        e1.set();
        h.call_soon([&] { order.push_back("callback"); });
        e2.set();
        order.push_back("finisher");
    });
    auto n1 = spawn(named("n1"), [&] { order.push_back("n1"); });
    std::vector<std::string> seen;
    {
        switch_log log;
        finisher.get();
        seen = log.seen;
    }
    n1.get();
    p1.get();
    p2.get();
    EXPECT_EQ(order, (std::vector<std::string>{"finisher", "n1", "p1", "callback", "p2"}));
    EXPECT_EQ(seen, (std::vector<std::string>{"main>finisher", "finisher>n1", "n1>p1", "p1>hub",
                                              "hub>p2", "p2>main"}));
}

// Each way a task's function can end hands the thread to the task queued behind it, with
// the task's outcome intact: a value, an exception, a cancellation raised in a park, a
// cancellation before its first run.
TEST_F(TaskHandoff, EveryWayATaskEndsHandsOffToTheNextTask) {
    std::vector<std::string> order;
    auto next = [&](std::string name) {
        return spawn(named(name), [&order, name] { order.push_back(name); });
    };
    std::vector<std::string> seen;
    {
        fresh_turn();
        auto returns = spawn(named("returns"), [] { return 7; });
        auto after_return = next("after-return");
        switch_log log;
        EXPECT_EQ(returns.get(), 7);
        seen.insert(seen.end(), log.seen.begin(), log.seen.end());
        after_return.get();
    }
    {
        fresh_turn();
        auto throws = spawn(named("throws"), []() -> int { throw std::runtime_error("thrown"); });
        auto after_throw = next("after-throw");
        switch_log log;
        try {
            (void)throws.get();
            ADD_FAILURE() << "no exception";
        } catch (const std::runtime_error& e) {
            EXPECT_STREQ(e.what(), "thrown");
        }
        seen.insert(seen.end(), log.seen.begin(), log.seen.end());
        after_throw.get();
    }
    {
        event never;
        auto parked = spawn(named("parked"), [&] { never.wait(); });
        yield_now();
        ASSERT_TRUE(parked.parked());
        fresh_turn();
        EXPECT_TRUE(parked.cancel("stop"));  // queued now, then the next task behind it
        auto after_cancel = next("after-cancel");
        switch_log log;
        EXPECT_THROW(parked.get(), cancelled_error);
        seen.insert(seen.end(), log.seen.begin(), log.seen.end());
        after_cancel.get();
        EXPECT_EQ(parked.state()->cancel_message(), "stop");
    }
    {
        fresh_turn();
        bool ran = false;
        auto unstarted = spawn(named("unstarted"), [&] { ran = true; });
        EXPECT_TRUE(unstarted.cancel());  // before its first run: its function never runs
        auto after_unstarted = next("after-unstarted");
        switch_log log;
        EXPECT_THROW(unstarted.get(), cancelled_error);
        seen.insert(seen.end(), log.seen.begin(), log.seen.end());
        after_unstarted.get();
        EXPECT_FALSE(ran);
    }
    EXPECT_EQ(order, (std::vector<std::string>{"after-return", "after-throw", "after-cancel",
                                               "after-unstarted"}));
    EXPECT_EQ(seen, (std::vector<std::string>{
                        "main>returns", "returns>after-return", "after-return>main",  //
                        "main>throws", "throws>after-throw", "after-throw>main",      //
                        "main>parked", "parked>after-cancel", "after-cancel>main",    //
                        "main>unstarted", "unstarted>after-unstarted", "after-unstarted>main"}));
}

// The same endings without a hook: the inline switch. Each task's outcome arrives, every
// stack goes back to the pool and every greenlet is freed.
TEST_F(TaskHandoff, EveryWayATaskEndsOnTheInlineSwitchLeavesNothingBehind) {
    const std::size_t in_use = stack_statistics().in_use;
    const std::size_t greenlets = live_greenlets();
    std::vector<std::string> order;
    for (int round = 0; round < 3; ++round) {
        event never;
        auto parked = spawn([&] { never.wait(); });
        yield_now();
        parked.cancel();
        auto unstarted = spawn([&] { order.push_back("never"); });
        unstarted.cancel();
        auto returns = spawn([] { return 1; });
        auto throws = spawn([]() -> int { throw std::runtime_error("thrown"); });
        auto last = spawn([&] { order.push_back("last"); });
        EXPECT_THROW(parked.get(), cancelled_error);
        EXPECT_THROW(unstarted.get(), cancelled_error);
        EXPECT_EQ(returns.get(), 1);
        EXPECT_THROW((void)throws.get(), std::runtime_error);
        last.get();
    }
    EXPECT_EQ(order, (std::vector<std::string>{"last", "last", "last"}));
    EXPECT_EQ(stack_statistics().in_use, in_use);
    EXPECT_EQ(live_greenlets(), greenlets);
}

// A killed task unwinds with greenlet_exit and its fiber returns to the killer, whose kill()
// is a switch waiting for it: never to the ready fiber, which would leave the killer
// suspended with nothing to resume it.
TEST_F(TaskHandoff, AKilledTaskReturnsToItsKillerNotToTheNextFiber) {
    std::vector<std::string> order;
    event never;
    struct on_unwind {
        std::vector<std::string>& order;
        ~on_unwind() { order.push_back("unwound"); }
    };
    auto doomed = spawn(named("doomed"), [&] {
        on_unwind u{order};
        never.wait();
    });
    yield_now();
    ASSERT_TRUE(doomed.parked());
    fresh_turn();
    auto next = spawn(named("next"), [&] { order.push_back("next"); });
    std::vector<std::string> seen;
    {
        switch_log log;
        doomed.state()->kill();
        order.push_back("killer goes on");
        seen = log.seen;
    }
    next.get();
    EXPECT_TRUE(doomed.cancelled());
    EXPECT_EQ(order, (std::vector<std::string>{"unwound", "killer goes on", "next"}));
    EXPECT_EQ(seen, (std::vector<std::string>{"main!doomed", "doomed>main"}));
}

// The same on the inline switch, with the killer a task and another task ready behind the
// one killed: the killer goes on first, then the ready ones in order.
TEST_F(TaskHandoff, AKillFromATaskOnTheInlineSwitchReturnsToTheKiller) {
    std::vector<std::string> order;
    event never;
    auto doomed = spawn([&] { never.wait(); });
    yield_now();
    auto killer = spawn([&] {
        doomed.state()->kill();
        order.push_back("killer goes on");
        yield_now();
        order.push_back("killer again");
    });
    auto next = spawn([&] { order.push_back("next"); });
    killer.get();
    next.get();
    EXPECT_TRUE(doomed.cancelled());
    EXPECT_EQ(order, (std::vector<std::string>{"killer goes on", "next", "killer again"}));
}

// A task whose last handle it drops itself while it runs is detached: when it finishes it
// is freed, and its fiber, which lost its last handle while running, is freed by the fiber
// it hands off to, after the hook has named it.
TEST_F(TaskHandoff, ATaskThatDropsItsLastHandleWhileRunningIsFreedAfterTheHandOff) {
    const std::size_t in_use = stack_statistics().in_use;
    const std::size_t greenlets = live_greenlets();
    std::vector<std::string> order;
    std::vector<std::string> seen;
    std::size_t live_in_next = 0;
    std::size_t stacks_in_next = 0;
    fresh_turn();
    {
        std::optional<task<void>> handle;
        handle = spawn(named("dropper"), [&] {
            handle.reset();  // the last handle: the task and its fiber belong to no one now
            order.push_back("dropper");
        });
        auto next = spawn(named("next"), [&] {
            order.push_back("next");
            live_in_next = live_greenlets();
            stacks_in_next = stack_statistics().in_use;
        });
        switch_log log;
        next.get();
        seen = log.seen;
    }
    EXPECT_EQ(order, (std::vector<std::string>{"dropper", "next"}));
    EXPECT_EQ(seen, (std::vector<std::string>{"main>dropper", "dropper>next", "next>main"}));
    // By the time `next` ran, the dropper's greenlet and stack were gone: only next's left.
    EXPECT_EQ(live_in_next, greenlets + 1);
    EXPECT_EQ(stacks_in_next, in_use + 1);
    EXPECT_EQ(stack_statistics().in_use, in_use);
    EXPECT_EQ(live_greenlets(), greenlets);
}

// Many detached tasks finishing into each other on the inline switch (ASan: a use of the
// freed task or of the dead fiber's frame after the hand-off), some failing: each failure
// is reported once, and nothing is left.
TEST_F(TaskHandoff, DetachedTasksFinishingIntoEachOtherLeaveNothingBehind) {
    hub& h = hub::current();
    std::vector<std::string> reports;
    auto previous =
        h.set_exception_handler([&](const failure_report& r) { reports.emplace_back(r.message); });
    const std::size_t in_use = stack_statistics().in_use;
    const std::size_t greenlets = live_greenlets();
    int ran = 0;
    for (int i = 0; i < 200; ++i) {
        (void)spawn([&ran, i] {
            ++ran;
            if (i % 50 == 0) throw std::runtime_error("detached failure");
        });
    }
    {
        // When it runs, every detached task before it has finished and is gone.
        auto last = spawn([&] {
            EXPECT_EQ(live_greenlets(), greenlets + 1);
            EXPECT_EQ(stack_statistics().in_use, in_use + 1);
            return ran;
        });
        EXPECT_EQ(last.get(), 200);
    }
    h.set_exception_handler(std::move(previous));
    EXPECT_EQ(reports.size(), 4u);
    for (const auto& r : reports) EXPECT_THAT(r, HasSubstr("never retrieved"));
    EXPECT_EQ(stack_statistics().in_use, in_use);
    EXPECT_EQ(live_greenlets(), greenlets);
}

// The watchdog sees the hand-off as it sees a park's: the finishing task's slice is closed
// (and named after the task, which is still there then), the next fiber's opened.
TEST_F(TaskHandoff, TheWatchdogClosesTheFinishingTasksSliceAndOpensTheNextOne) {
    hub& h = hub::current();
    greenfiber::testing::watchdog_reports reports(h, 250ms);
    // Each blocks three times the threshold; "next" is queued when "finisher" finishes.
    auto finisher = spawn(named("finisher"), [] { std::this_thread::sleep_for(750ms); });
    auto next = spawn(named("next"), [] { std::this_thread::sleep_for(750ms); });
    finisher.get();
    next.get();
    ASSERT_EQ(reports.messages.size(), 2u);
    EXPECT_THAT(reports.messages[0], HasSubstr("task 'finisher'"));
    EXPECT_THAT(reports.messages[0], HasSubstr("spawned at"));
    EXPECT_THAT(reports.messages[1], HasSubstr("task 'next'"));
}

struct run_slice {
    double ts = 0;
    double dur = 0;
};

// The hub's timeline (write_trace's JSON, one event a line): each run slice ("X", "run")
// and each finish, by track (the fiber's id).
struct timeline {
    std::map<std::string, std::vector<run_slice>> runs;  // by the slice's name
    std::map<long long, std::vector<double>> finishes;   // by track
    std::map<std::string, long long> track_of;           // a run's name -> its track
};

std::string field(const std::string& line, const std::string& key) {
    const std::string k = "\"" + key + "\":";
    const auto at = line.find(k);
    if (at == std::string::npos) return {};
    std::size_t from = at + k.size();
    if (line[from] == '"') {
        const auto end = line.find('"', from + 1);
        return line.substr(from + 1, end - from - 1);
    }
    const auto end = line.find_first_of(",}", from);
    return line.substr(from, end - from);
}

timeline read_timeline() {
    std::ostringstream os;
    write_trace(os);
    std::istringstream in(os.str());
    timeline t;
    std::string line;
    while (std::getline(in, line)) {
        const std::string ph = field(line, "ph");
        if (ph == "X" && field(line, "cat") == "run") {
            const std::string name = field(line, "name");
            t.runs[name].push_back({std::stod(field(line, "ts")), std::stod(field(line, "dur"))});
            t.track_of[name] = std::stoll(field(line, "tid"));
        } else if (ph == "i" && field(line, "name") == "finish") {
            t.finishes[std::stoll(field(line, "tid"))].push_back(std::stod(field(line, "ts")));
        }
    }
    return t;
}

// In the hub's trace, tasks finishing into each other run once each, one after the other
// and in order, each finishing inside its run.
TEST_F(TaskHandoff, TheHubsTraceShowsOneRunPerTaskEachFinishingInside) {
    start_trace();
    std::vector<task<void>> tasks;
    for (int i = 0; i < 4; ++i) tasks.push_back(spawn(named("h" + std::to_string(i)), [] {}));
    for (auto& t : tasks) t.get();
    stop_trace();
    const timeline t = read_timeline();
    double last_end = 0;
    for (int i = 0; i < 4; ++i) {
        const std::string name = "h" + std::to_string(i);
        SCOPED_TRACE(name);
        ASSERT_EQ(t.runs.count(name), 1u);
        const auto& runs = t.runs.at(name);
        ASSERT_EQ(runs.size(), 1u);
        EXPECT_GE(runs[0].ts, last_end);  // after the one before it, no overlap
        last_end = runs[0].ts + runs[0].dur;
        const auto& fin = t.finishes.at(t.track_of.at(name));
        ASSERT_EQ(fin.size(), 1u);
        EXPECT_GE(fin[0], runs[0].ts);
        EXPECT_LE(fin[0], last_end);
    }
}

// 10 000 tasks each finishing into the next: the hand-offs count against the turn's budget,
// so the reactor still runs every ready_budget() entries. A post, a due timer and a read
// with its data already there, all set up before, complete long before the last task ends.
TEST_F(TaskHandoff, FinishingTasksNeverStarveTheReactor) {
    namespace asio = boost::asio;
    hub& h = hub::current();
    const std::size_t budget = h.ready_budget();
    constexpr int tasks = 10'000;
    int finished = 0;
    int at_post = -1;
    int at_timer = -1;
    int at_read = -1;
    asio::local::stream_protocol::socket a(h.context());
    asio::local::stream_protocol::socket b(h.context());
    asio::local::connect_pair(a, b);
    asio::write(a, asio::buffer("x", 1));
    std::array<char, 1> buf{};
    b.async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, std::size_t n) {
        EXPECT_FALSE(ec);
        EXPECT_EQ(n, 1u);
        at_read = finished;
    });
    asio::steady_timer timer(h.context(), std::chrono::steady_clock::now());
    timer.async_wait([&](boost::system::error_code ec) {
        EXPECT_FALSE(ec);
        at_timer = finished;
    });
    h.post([&] { at_post = finished; });
    std::vector<task<void>> all;
    all.reserve(tasks);
    for (int i = 0; i < tasks; ++i) all.push_back(spawn([&] { ++finished; }));
    for (auto& t : all) t.get();
    EXPECT_EQ(finished, tasks);
    // Each completes at one of the first two polls (Asio may take one to see the timer
    // and the socket): at most two budgets of entries run before.
    for (const int at : {at_post, at_timer, at_read}) {
        EXPECT_GE(at, 0);
        EXPECT_LE(static_cast<std::size_t>(at), 2 * budget + 2);
    }
}

// An eager task is switched into by its spawner, but its parent is the hub: when it
// finishes on that first run it hands the thread straight back to its spawner, queued
// first in line; one that parked first finishes later into whoever is next.
TEST_F(TaskHandoff, AnEagerTaskHandsBackToItsSpawnerOrToTheNextFiber) {
    std::vector<std::string> order;
    fresh_turn();
    auto other = spawn(named("other"), [&] { order.push_back("other"); });
    std::vector<std::string> seen;
    {
        switch_log log;
        auto eager = spawn(named("eager", true), [&] { order.push_back("eager"); });
        order.push_back("spawner");
        seen = log.seen;
        EXPECT_TRUE(eager.done());
    }
    other.get();
    EXPECT_EQ(order, (std::vector<std::string>{"eager", "spawner", "other"}));
    EXPECT_EQ(seen, (std::vector<std::string>{"main>eager", "eager>main"}));

    // From a task, and an eager task that parks before it finishes.
    order.clear();
    auto spawner = spawn(named("spawner"), [&] {
        auto quick = spawn(named("quick", true), [&] { order.push_back("quick"); });
        order.push_back("spawner after quick");
        auto slow = spawn(named("slow", true), [&] {
            order.push_back("slow runs");
            yield_now();
            order.push_back("slow ends");
        });
        order.push_back("spawner after slow");
        auto behind = spawn(named("behind"), [&] { order.push_back("behind"); });
        slow.get();
        behind.get();
        order.push_back("spawner ends");
    });
    spawner.get();
    EXPECT_EQ(order, (std::vector<std::string>{"quick", "spawner after quick", "slow runs",
                                               "spawner after slow", "slow ends", "behind",
                                               "spawner ends"}));
}

// run()'s main task finishing while other tasks are ready hands the thread to them, then
// to run()'s caller; every task runs, run() returns the main task's value, nothing is left.
TEST_F(TaskHandoff, RunsMainTaskFinishingWhileOthersAreReady) {
    const std::size_t greenlets = live_greenlets();
    const std::size_t in_use = stack_statistics().in_use;
    std::vector<std::string> order;
    int rc = -1;
    std::thread([&] {
        rc = run([&] {
            (void)spawn([&] { order.push_back("a"); });
            (void)spawn([&] { order.push_back("b"); });
            order.push_back("main task");
            return 3;
        });
    }).join();
    EXPECT_EQ(rc, 3);
    EXPECT_EQ(order, (std::vector<std::string>{"main task", "a", "b"}));
    EXPECT_EQ(live_greenlets(), greenlets);
    EXPECT_EQ(stack_statistics().in_use, in_use);
}

// run_until_complete() returns once its task finished and what was ready then ran: the
// task hands off to those, and the waiting main greenlet comes last.
TEST_F(TaskHandoff, RunUntilCompleteAfterAHandOff) {
    std::vector<std::string> order;
    std::thread([&] {
        event_loop& loop = event_loop::current();
        auto behind = spawn([&] { order.push_back("behind"); });
        auto t = spawn([&] {
            (void)spawn([&] { order.push_back("spawned by it"); });
            order.push_back("task");
            return 5;
        });
        EXPECT_EQ(loop.run_until_complete(t), 5);
        order.push_back("returned");
        behind.get();
    }).join();
    EXPECT_EQ(order, (std::vector<std::string>{"behind", "task", "spawned by it", "returned"}));
}

// The hub started a task (its first run from the hub's queue, not a hand-off); the task
// finished, was freed and handed the thread on; an exception then came back to the hub from
// a plain greenlet whose parent it is. The hub must not read the freed task to decide
// whether that was its failed start (ASan: heap-use-after-free in run_ready): it reports
// the exception as the greenlet's.
TEST_F(TaskHandoff, AnExceptionIntoTheHubAfterAStartedTaskFinishedIsNotBlamedOnIt) {
    hub& h = hub::current();
    greenfiber::testing::hub_started_thrower g(h);
    ASSERT_TRUE(g.started());
    bool ran = false;
    // A callback first in line sends the main greenlet's yield to the hub, which then starts
    // the detached task itself; the task wakes the greenlet and finishes into the main
    // greenlet (next in line), freed. The main greenlet's yield hands the thread to the
    // greenlet, whose exception lands in the hub's switch that started the task.
    h.call_soon([] {});
    (void)spawn([&] {
        ran = true;
        g.go.set();
    });
    yield_now();
    ASSERT_TRUE(ran);
    yield_now();
    for (int i = 0; i < 3 && !g.dead(); ++i) yield_now();
    EXPECT_TRUE(g.dead());
    EXPECT_EQ(g.categories, std::vector<std::string>{"greenlet"});
}

}  // namespace
