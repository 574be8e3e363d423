// Seeing inside a running program: where each task was spawned, what a parked task waits
// for and for how long, how a task prints itself, the hub's counters, and the severity and
// exception text of every report.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <source_location>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "greenfiber/combinators.hpp"
#include "greenfiber/loop.hpp"
#include "greenfiber/queue.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

class IntrospectSite : public greenfiber::testing::io_checked {};
class IntrospectWait : public greenfiber::testing::io_checked {};
class IntrospectRepr : public greenfiber::testing::io_checked {};
class IntrospectStats : public greenfiber::testing::io_checked {};
class IntrospectReport : public greenfiber::testing::io_checked {};

// "FILE:LINE:FUNCTION" as site() spells it, for a call on `line` of the calling function.
std::string site_at(int line, std::source_location here = std::source_location::current()) {
    return std::string(here.file_name()) + ":" + std::to_string(line) + ":" + here.function_name();
}

// "introspect_test.cpp:LINE", as a task's repr spells where it was spawned.
std::string repr_site(int line) {
    return "introspect_test.cpp:" + std::to_string(line);
}

// ---- spawn site ------------------------------------------------------------------------

TEST_F(IntrospectSite, SpawnWithoutOptionsRecordsTheCallersLine) {
    const int l0 = __LINE__ + 1;
    auto t0 = spawn([] { return 0; });
    const int l1 = __LINE__ + 1;
    auto t1 = spawn([](int a) { return a; }, 1);
    const int l2 = __LINE__ + 1;
    auto t2 = spawn([](int a, int b) { return a + b; }, 1, 2);
    const int l6 = __LINE__ + 1;
    auto t6 = spawn([](int a, int, int, int, int, int f) { return a + f; }, 1, 2, 3, 4, 5, 6);
    EXPECT_EQ(t0.site(), site_at(l0));
    EXPECT_EQ(t1.site(), site_at(l1));
    EXPECT_EQ(t2.site(), site_at(l2));
    EXPECT_EQ(t6.site(), site_at(l6));
    EXPECT_EQ(t0.spawned_at().line(), static_cast<unsigned>(l0));
    EXPECT_STREQ(t0.spawned_at().file_name(), __FILE__);
    EXPECT_EQ(t0.get() + t1.get() + t2.get() + t6.get(), 11);
}

TEST_F(IntrospectSite, SpawnWithOptionsRecordsTheLineThatBuiltThem) {
    const int la = __LINE__ + 1;
    auto a = spawn({.name = "a"}, [] { return 1; });
    const int lb = __LINE__ + 2;  // the line of the options' initialization
    auto b = spawn(
        spawn_options{"b"}, [](int x) { return x; }, 2);
    const int lc = __LINE__ + 1;
    spawn_options early{.name = "c"};
    auto c = spawn(early, [] { return 3; });
    EXPECT_EQ(a.site(), site_at(la));
    EXPECT_EQ(b.site(), site_at(lb));
    EXPECT_EQ(c.site(), site_at(lc));  // documented: the options' line, not the spawn's
    EXPECT_EQ(a.get() + b.get() + c.get(), 6);
}

TEST_F(IntrospectSite, GroupAndPoolSpawnsRecordTheCallersLine) {
    std::string in_group;
    std::string in_group_args;
    int lg = 0;
    int lga = 0;
    with_task_group([&](task_group& g) {
        lg = __LINE__ + 1;
        auto t = g.spawn([] {});
        lga = __LINE__ + 1;
        auto u = g.spawn([](int, int) {}, 1, 2);
        in_group = t.site();
        in_group_args = u.site();
    });
    EXPECT_THAT(in_group, StartsWith(std::string(__FILE__) + ":" + std::to_string(lg) + ":"));
    EXPECT_THAT(in_group_args, StartsWith(std::string(__FILE__) + ":" + std::to_string(lga) + ":"));
    pool p(2);
    const int lp = __LINE__ + 1;
    auto t = p.spawn([](int x) { return x; }, 7);
    EXPECT_EQ(t.site(), site_at(lp));
    EXPECT_EQ(t.get(), 7);
    p.join();
}

TEST_F(IntrospectSite, SevenArgumentsFallBackToTheFunctionsType) {
    auto t = spawn([](int, int, int, int, int, int, int) { return 1; }, 1, 2, 3, 4, 5, 6, 7);
    EXPECT_EQ(t.spawned_at().line(), 0u);
    EXPECT_THAT(t.site(), HasSubstr("lambda"));
    EXPECT_EQ(t.get(), 1);
}

// Regression: options default-initialized (`spawn_options o;`) carried their implicit
// constructor's location, so the dump said a task was spawned in task.hpp.
TEST_F(IntrospectSite, DefaultInitializedOptionsRecordNoLineRatherThanAWrongOne) {
    spawn_options o;
    o.name = "plain";
    auto t = spawn(o, [] { return 2; });
    EXPECT_EQ(t.spawned_at().line(), 0u);
    EXPECT_THAT(t.site(), Not(HasSubstr("task.hpp")));
    EXPECT_THAT(t.site(), HasSubstr("lambda"));
    EXPECT_EQ(t.get(), 2);
}

// Regression: run()'s main task named a line inside loop.hpp as its spawn site.
TEST(IntrospectRun, RunsMainTaskRecordsTheLineOfTheRunCall) {
    std::string site;
    int line = 0;
    std::thread([&] {
        line = __LINE__ + 1;
        site = run([] { return current_task().site(); });
    }).join();
    EXPECT_THAT(site, StartsWith(std::string(__FILE__) + ":" + std::to_string(line) + ":"));
}

TEST_F(IntrospectSite, TheWatchdogReportNamesTheSpawnLine) {
    hub& h = hub::current();
    std::vector<std::string> reports;
    auto previous =
        h.set_exception_handler([&](const failure_report& r) { reports.emplace_back(r.message); });
    const auto previous_threshold = h.watchdog();
    const auto before = h.stats().watchdog_reports;
    h.set_watchdog(50ms);
    // Far above the threshold: the block is reported whatever the machine's load.
    const int lb = __LINE__ + 1;
    auto blocker = spawn({.name = "blocker"}, [] { std::this_thread::sleep_for(600ms); });
    blocker.get();
    h.set_watchdog(previous_threshold);
    h.set_exception_handler(std::move(previous));
    std::vector<std::string> about_blocker;
    for (const std::string& r : reports) {
        if (r.find("'blocker'") != std::string::npos) about_blocker.push_back(r);
    }
    ASSERT_EQ(about_blocker.size(), 1u);
    EXPECT_THAT(about_blocker[0], HasSubstr("task 'blocker' (spawned at " + site_at(lb) + ")"));
    EXPECT_GE(h.stats().watchdog_reports, before + 1);
}

TEST_F(IntrospectSite, TheDeadlockReportNamesTheSpawnLineAndTheWaitInWords) {
    event never("never");
    const int ls = __LINE__ + 1;
    auto stuck = spawn({.name = "stuck"}, [&] { never.wait(); });
    std::string message;
    try {
        stuck.get();
    } catch (const loop_exit& e) {
        message = e.what();
    }
    EXPECT_THAT(message,
                HasSubstr("task 'stuck' (spawned at " + site_at(ls) + ") waits for event 'never'"));
    EXPECT_THAT(message, HasSubstr("get() of task 'stuck'"));  // what main waits for
    never.set();
    stuck.get();
}

// ---- wait reasons ----------------------------------------------------------------------

TEST_F(IntrospectWait, SleepSaysWhenItEnds) {
    auto t = spawn([] { sleep(1h); });
    yield_now();
    ASSERT_TRUE(t.parked());
    EXPECT_EQ(t.status(), task_status::parked);  // not "running", as a parked task read before
    EXPECT_STREQ(to_string(t.status()), "parked");
    const std::string why = t.waiting_for();
    ASSERT_THAT(why, StartsWith("sleep until +"));
    const double left = std::strtod(why.c_str() + std::string("sleep until +").size(), nullptr);
    EXPECT_GT(left, 3000.0);
    EXPECT_LE(left, 3600.0);
    EXPECT_THAT(why, ::testing::EndsWith(" s"));
    t.cancel();
    t.wait();
    EXPECT_TRUE(t.cancelled());
    EXPECT_FALSE(t.parked());
    EXPECT_EQ(t.waiting_for(), "");
}

// A task is running while it executes and while it is woken but not yet resumed; parked only
// in between.
TEST_F(IntrospectWait, StatusTellsRunningFromParkedAtEachStep) {
    event go;
    task_status inside = task_status::pending;
    auto t = spawn([&] {
        inside = current_task().status();
        go.wait();
    });
    EXPECT_EQ(t.status(), task_status::pending);
    yield_now();
    EXPECT_EQ(inside, task_status::running);
    EXPECT_EQ(t.status(), task_status::parked);
    go.set();  // woken: queued to run, not parked any more
    EXPECT_EQ(t.status(), task_status::running);
    EXPECT_FALSE(t.done());
    t.get();
    EXPECT_EQ(t.status(), task_status::done);
}

TEST_F(IntrospectWait, EventsAreNamedWhenTheyHaveANameOnly) {
    event ready("ready");
    event plain;
    auto a = spawn([&] { ready.wait(); });
    auto b = spawn([&] { plain.wait(); });
    yield_now();
    EXPECT_EQ(a.waiting_for(), "event 'ready'");
    EXPECT_EQ(b.waiting_for(), "event");
    ready.set_name("renamed");
    EXPECT_EQ(a.waiting_for(), "event 'renamed'");  // formatted when asked, not when parked
    ready.set();
    plain.set();
    a.get();
    b.get();
}

TEST_F(IntrospectWait, ALockNamesTheTaskThatHoldsIt) {
    mutex db("db");
    event release;
    auto writer = spawn({.name = "writer"}, [&] {
        std::lock_guard g(db);
        release.wait();
    });
    yield_now();
    auto reader = spawn({.name = "reader"}, [&] { std::lock_guard g(db); });
    yield_now();
    ASSERT_TRUE(reader.parked());
    EXPECT_EQ(reader.waiting_for(), "lock 'db' held by task 'writer'");
    writer.set_name("scribe");
    EXPECT_EQ(reader.waiting_for(), "lock 'db' held by task 'scribe'");
    release.set();
    writer.get();
    reader.get();
    EXPECT_FALSE(db.locked());
}

TEST_F(IntrospectWait, ALockHeldByAFinishedTaskIsDescribedWithoutTouchingIt) {
    mutex db("db");
    auto leaver = spawn([&] { db.lock(); });  // returns holding it (a lock has no owner)
    leaver.get();
    auto reader = spawn({.name = "reader"}, [&] { std::lock_guard g(db); });
    yield_now();
    EXPECT_EQ(reader.waiting_for(), "lock 'db' held by a fiber that is not a running task");
    db.unlock();
    reader.get();
}

TEST_F(IntrospectWait, ASocketReadNamesBothEndpointsAndTheDescriptor) {
    greenfiber::testing::tcp_pair p;
    auto t = spawn([&] {
        char c = 0;
        return p.server.read_some(boost::asio::buffer(&c, 1));
    });
    yield_now();
    ASSERT_TRUE(t.parked());
    std::ostringstream want;
    want << "read_some on " << p.server.local_endpoint() << " <- " << p.server.remote_endpoint()
         << " fd=" << p.server.native_handle();
    EXPECT_EQ(t.waiting_for(), want.str());
    EXPECT_THAT(t.waiting_for(), HasSubstr("127.0.0.1:"));
    const char c = 'x';
    p.client.write(boost::asio::buffer(&c, 1));
    EXPECT_EQ(t.get(), 1u);
}

TEST_F(IntrospectWait, GetOfANamedTaskFollowsRenamesAndOutlivesOtherHandles) {
    event go;
    auto inner = spawn({.name = "fetch-3"}, [&] {
        go.wait();
        return 3;
    });
    auto outer = spawn({.name = "caller"}, [in = inner.share()]() mutable { return in.get(); });
    auto waiter_task = spawn([in = inner.share_any()] { in.wait(); });
    yield_now();
    EXPECT_EQ(outer.waiting_for(), "get() of task 'fetch-3'");
    EXPECT_EQ(waiter_task.waiting_for(), "wait() for task 'fetch-3'");
    inner.set_name("fetch-3b");  // renamed while parked
    EXPECT_EQ(outer.waiting_for(), "get() of task 'fetch-3b'");
    inner = task<int>();  // the outside's handle is gone: the waiters' handles keep it
    EXPECT_EQ(outer.waiting_for(), "get() of task 'fetch-3b'");
    go.set();
    EXPECT_EQ(outer.get(), 3);
    waiter_task.get();
}

TEST_F(IntrospectWait, QueuesSayWhichSideWaits) {
    queue<int> q(1);
    q.set_name("jobs");
    auto getter = spawn([&] { return q.get(); });
    yield_now();
    EXPECT_EQ(getter.waiting_for(), "queue 'jobs' get (empty)");
    q.put_nowait(1);
    EXPECT_EQ(getter.get(), 1);
    q.put_nowait(2);
    auto putter = spawn([&] { q.put(3); });
    yield_now();
    EXPECT_EQ(putter.waiting_for(), "queue 'jobs' put (full, 1 of 1)");
    EXPECT_EQ(q.get(), 2);
    putter.get();
    EXPECT_EQ(q.get(), 3);
}

TEST_F(IntrospectWait, SemaphoresAndConditionsToo) {
    semaphore slots(0);
    slots.set_name("slots");
    condition cond;
    cond.set_name("changed");
    auto a = spawn([&] { slots.acquire(); });
    auto b = spawn([&] {
        std::lock_guard g(cond);
        cond.wait();
    });
    yield_now();
    EXPECT_EQ(a.waiting_for(), "semaphore 'slots' (no unit free, 1 waiting)");
    EXPECT_EQ(b.waiting_for(), "condition 'changed' (a notification)");
    slots.release();
    {
        std::lock_guard g(cond);
        cond.notify();
    }
    a.get();
    b.get();
}

TEST_F(IntrospectWait, WaitedGrowsWhileParkedAndIsZeroOtherwise) {
    event ready("ready");
    auto t = spawn([&] { ready.wait(); });
    EXPECT_EQ(t.waited(), std::chrono::steady_clock::duration::zero());  // pending
    yield_now();
    sleep(30ms);
    const auto first = t.waited();
    sleep(30ms);
    const auto second = t.waited();
    EXPECT_GT(first, std::chrono::steady_clock::duration::zero());
    EXPECT_GT(second, first);
    ready.set();
    EXPECT_EQ(t.waited(), std::chrono::steady_clock::duration::zero());  // woken
    t.get();
    EXPECT_EQ(t.waited(), std::chrono::steady_clock::duration::zero());  // done
}

// An eager task parks before its fresh hub ever turned its loop: its wait is timed from
// the hub's creation, not from the clock's epoch.
TEST_F(IntrospectWait, AnEagerTaskOnAFreshHubWaitsFromTheHubsStart) {
    std::chrono::steady_clock::duration waited{};
    std::thread fresh([&waited] {
        event go;
        auto t = spawn({.eager = true}, [&] { go.wait(); });
        waited = t.waited();
        go.set();
        t.get();
    });
    fresh.join();
    EXPECT_LT(waited, std::chrono::minutes(1));
}

TEST_F(IntrospectWait, AWakeInProgressIsNotParked) {
    event ready("ready");
    auto t = spawn([&] { ready.wait(); });
    auto observer = spawn([&] {
        // Asked from another task between the wake-up and the woken task's turn.
        ready.set();
        return std::make_pair(t.parked(), to_string(t));
    });
    yield_now();
    const auto [parked, repr] = observer.get();
    EXPECT_FALSE(parked);
    EXPECT_THAT(repr, HasSubstr(" ready woken-from=[an event] "));
    t.get();
}

TEST_F(IntrospectWait, AnEventDestroyedRightAfterItsSetIsNotTouched) {
    auto ev = std::make_unique<event>("gone");
    auto t = spawn([e = ev.get()] { e->wait(); });
    yield_now();
    EXPECT_EQ(t.waiting_for(), "event 'gone'");
    ev->set();
    ev.reset();  // legal: set() unlinked its waiter, which has not run yet
    EXPECT_FALSE(t.parked());
    EXPECT_EQ(t.waiting_for(), "");
    EXPECT_THAT(to_string(t), HasSubstr(" ready woken-from=[an event] "));
    t.get();
}

// ---- repr ------------------------------------------------------------------------------

TEST_F(IntrospectRepr, EveryStateHasItsLine) {
    event ready("ready");
    const int lt = __LINE__ + 1;
    auto t = spawn({.name = "fetch-3"}, [&] {
        const std::string inside = to_string(current_task());
        ready.wait();
        return inside;
    });
    EXPECT_EQ(to_string(t), "<task 'fetch-3' pending spawned=" + repr_site(lt) + ">");
    yield_now();
    EXPECT_THAT(to_string(t),
                ::testing::MatchesRegex("<task 'fetch-3' parked waiting=\\[event 'ready'\\] "
                                        "waited=[0-9]+\\.[0-9]s spawned=" +
                                        repr_site(lt) + ">"));
    ready.set();
    EXPECT_EQ(t.get(), "<task 'fetch-3' running spawned=" + repr_site(lt) + ">");
    EXPECT_EQ(to_string(t),
              "<task 'fetch-3' done result=std::__cxx11::basic_string<char, "
              "std::char_traits<char>, std::allocator<char> > spawned=" +
                  repr_site(lt) + ">");

    const int lv = __LINE__ + 1;
    auto v = spawn({.name = "v"}, [] {});
    v.get();
    EXPECT_EQ(to_string(v), "<task 'v' done result=void spawned=" + repr_site(lv) + ">");

    const int lf = __LINE__ + 1;
    auto f = spawn({.name = "f"}, [] { throw std::runtime_error("boom"); });
    f.wait();
    EXPECT_EQ(to_string(f),
              "<task 'f' done exception=[std::runtime_error: boom] spawned=" + repr_site(lf) + ">");
    EXPECT_TRUE(f.exception());  // not retrieved by the repr: retrieve it here

    const int lc = __LINE__ + 1;
    auto c = spawn({.name = "c"}, [] { sleep(1h); });
    yield_now();
    c.cancel("shutting down");
    c.wait();
    EXPECT_EQ(to_string(c),
              "<task 'c' cancelled message='shutting down' spawned=" + repr_site(lc) + ">");

    std::ostringstream os;
    os << c;
    EXPECT_EQ(os.str(), to_string(c));
    EXPECT_EQ(to_string(any_task()), "<task none>");
}

TEST_F(IntrospectRepr, ARenameShowsAtOnce) {
    auto t = spawn([] { sleep(1h); });
    yield_now();
    t.set_name("renamed");
    EXPECT_THAT(to_string(t), StartsWith("<task 'renamed' parked waiting=[sleep until +"));
    t.cancel();
    t.wait();
}

// ---- counters --------------------------------------------------------------------------

TEST_F(IntrospectStats, AScriptedProgramsCounters) {
    hub& h = hub::current();
    const hub_stats before = h.stats();
    EXPECT_EQ(before.parked, 0u);
    EXPECT_TRUE(before.parked_by_kind.empty());
    event ready("ready");
    auto s1 = spawn([] { sleep(1h); });
    auto s2 = spawn([] { sleep(1h); });
    auto e1 = spawn([&] { ready.wait(); });
    EXPECT_EQ(h.stats().ready, 3u);  // three first runs queued
    yield_now();
    const hub_stats now = h.stats();
    // Three first runs and the main greenlet's own resume after yield_now().
    EXPECT_EQ(now.switches - before.switches, 4u);
    EXPECT_EQ(now.ready, 0u);
    EXPECT_EQ(now.parked, 3u);
    EXPECT_EQ(now.timers, 2u);
    using kinds = std::vector<std::pair<std::string, std::size_t>>;
    EXPECT_EQ(now.parked_by_kind, (kinds{{"a timer (sleep)", 2}, {"an event", 1}}));
    // Three started tasks hold a stack each (the pool is process-wide: at least these).
    EXPECT_GE(now.stacks.in_use, before.stacks.in_use + 3);
    EXPECT_GE(now.stacks.high_water, now.stacks.in_use);
    s1.cancel();
    s2.cancel();
    ready.set();
    s1.wait();
    s2.wait();
    e1.get();
    const hub_stats after = h.stats();
    EXPECT_EQ(after.parked, 0u);
    EXPECT_EQ(after.timers, 0u);
    EXPECT_TRUE(after.parked_by_kind.empty());
    EXPECT_EQ(after.stacks.in_use, before.stacks.in_use);  // given back as the tasks ended
    EXPECT_GE(after.stacks.high_water, now.stacks.in_use);
}

// Regression: pending_timers() read 0 while tasks slept on 1 h timers, because a sleep's
// timer is the hub's timed park, not one of the loop's call_later timers.
TEST_F(IntrospectStats, PendingTimersCountsSleepingTasks) {
    event_loop& loop = event_loop::current();
    auto a = spawn([] { sleep(1h); });
    auto b = spawn([] { sleep(1h); });
    yield_now();
    EXPECT_EQ(loop.pending_timers(), 2u);
    timer_handle later = loop.call_later(1h, [] {});
    EXPECT_EQ(loop.pending_timers(), 3u);
    EXPECT_EQ(hub::current().stats().timers, 3u);
    later.cancel();
    a.cancel();
    b.cancel();
    a.wait();
    b.wait();
    EXPECT_EQ(loop.pending_timers(), 0u);
}

// ---- reports ---------------------------------------------------------------------------

struct seen {
    std::string message;
    report_severity severity;
    std::string category;
    std::string exception;
};

// Collects the hub's reports and the process-wide ones while it lives.
struct collector {
    std::vector<seen> got;
    report_handler previous_hub;
    report_handler previous_process;
    collector() {
        auto keep = [this](const failure_report& r) {
            got.push_back({std::string(r.message), r.severity, std::string(r.category),
                           exception_text(r.error)});
        };
        previous_hub = hub::current().set_exception_handler(keep);
        previous_process = set_report_handler(keep);
    }
    ~collector() {
        hub::current().set_exception_handler(std::move(previous_hub));
        set_report_handler(std::move(previous_process));
    }
    collector(const collector&) = delete;
    collector& operator=(const collector&) = delete;
    const seen* find(const std::string& category) const {
        for (const seen& s : got) {
            if (s.category == category) return &s;
        }
        return nullptr;
    }
};

TEST_F(IntrospectReport, EachKindCarriesItsSeverityAndTheExceptionsText) {
    collector c;
    {
        auto f = spawn({.name = "failing"}, [] { throw std::runtime_error("never seen"); });
        f.wait();
    }  // dropped with its exception unretrieved
    hub::current().call_soon([] { throw std::logic_error("from a callback"); });
    yield_now();
    bool posted = false;
    {
        hub_handle handle = hub::current().keep_alive();
        posted = handle.post([] { throw std::length_error("posted"); });
    }
    EXPECT_TRUE(posted);
    (void)event_loop::current().call_later(0ms, [] { throw std::range_error("from a timer"); });
    sleep(20ms);  // the reactor runs the posted function and the timer meanwhile

    const seen* task = c.find("task");
    ASSERT_NE(task, nullptr);
    EXPECT_EQ(task->severity, report_severity::error);
    EXPECT_EQ(task->exception, "std::runtime_error: never seen");
    EXPECT_THAT(task->message, HasSubstr("task 'failing' (spawned at " __FILE__ ":"));

    std::vector<std::string> callbacks;
    for (const seen& s : c.got) {
        if (s.category != "callback") continue;
        EXPECT_EQ(s.severity, report_severity::error);
        callbacks.push_back(s.exception);
    }
    std::sort(callbacks.begin(), callbacks.end());
    EXPECT_EQ(callbacks, (std::vector<std::string>{"std::length_error: posted",
                                                   "std::logic_error: from a callback",
                                                   "std::range_error: from a timer"}));
}

TEST_F(IntrospectReport, TheWatchdogWarnsWithoutAnException) {
    collector c;
    hub& h = hub::current();
    const auto previous_threshold = h.watchdog();
    h.set_watchdog(50ms);
    auto blocker = spawn({.name = "blocker"}, [] { std::this_thread::sleep_for(600ms); });
    blocker.get();
    h.set_watchdog(previous_threshold);
    const seen* w = c.find("watchdog");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->severity, report_severity::warning);
    EXPECT_EQ(w->exception, "");
}

TEST_F(IntrospectReport, TheDefaultHandlerPrintsSeverityTypeAndWhat) {
    ::testing::internal::CaptureStderr();
    report_failure({"greenfiber: a test report",
                    std::make_exception_ptr(std::runtime_error("boom")), nullptr,
                    report_severity::warning, "test"});
    report_failure({"greenfiber: another", std::make_exception_ptr(42), nullptr,
                    report_severity::error, "test"});
    report_failure({"greenfiber: a third", nullptr, nullptr, report_severity::critical, "test"});
    EXPECT_EQ(::testing::internal::GetCapturedStderr(),
              "warning: greenfiber: a test report: std::runtime_error: boom\n"
              "greenfiber: another: int\n"
              "critical: greenfiber: a third\n");
    EXPECT_EQ(exception_text(std::make_exception_ptr(cancelled_error("x"))),
              "greenfiber::cancelled_error");
    EXPECT_EQ(exception_text(nullptr), "");
}

}  // namespace
