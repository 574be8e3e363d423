#include "greenfiber/trace.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "greenfiber/loop.hpp"
#include "greenfiber/socket.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "greenfiber/use_fiber.hpp"
#include "io_check.hpp"
#include "net_support.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace asio = boost::asio;

namespace {

class Trace : public greenfiber::testing::io_checked {
  protected:
    void TearDown() override {
        stop_trace();
        greenfiber::testing::io_checked::TearDown();
    }
};

// Python's json module reads the file (so it is valid JSON) and prints it back in lines the
// test can check: "lost N", "recorded N", "track PID TID LABEL" per thread_name, and
// "ev PH NAME PID TID TS_NS DUR_NS ARGS" per event (tab-separated; ARGS as k=v;k=v sorted).
constexpr const char* checker = R"py(
import json, sys
with open(sys.argv[1]) as f:
    d = json.load(f)
assert d["otherData"]["producer"] == "greenfiber"
print("lost", d["otherData"]["lost_events"])
print("recorded", d["otherData"]["recorded_events"])
for e in d["traceEvents"]:
    assert e["ph"] in ("M", "X", "i", "C"), e
    assert isinstance(e["pid"], int) and isinstance(e["tid"], int), e
    if e["ph"] == "M":
        if e["name"] == "thread_name":
            print("track", e["pid"], e["tid"], e["args"]["name"], sep="\t")
        continue
    assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0, e
    if e["ph"] == "X":
        assert e["dur"] > 0, e
    a = ";".join("%s=%s" % (k, json.dumps(v) if not isinstance(v, str) else v)
                 for k, v in sorted(e.get("args", {}).items()))
    print("ev", e["ph"], e["name"], e["pid"], e["tid"], round(e["ts"] * 1000),
          round(e.get("dur", 0) * 1000), a, sep="\t")
)py";

struct event_line {
    std::string ph, name;
    long pid = 0;
    unsigned long long tid = 0;
    long long ts = 0, dur = 0;
    std::string args;
    std::string track;  // the label of its tid
    long long end() const { return ts + dur; }
};

struct parsed {
    unsigned long long lost = 0, recorded = 0;
    std::map<std::pair<long, unsigned long long>, std::string> tracks;
    std::vector<event_line> events;

    std::vector<event_line> where(const std::string& ph, const std::string& name,
                                  const std::string& track = "") const {
        std::vector<event_line> out;
        for (const auto& e : events) {
            if (e.ph == ph && (name.empty() || e.name == name) &&
                (track.empty() || e.track == track))
                out.push_back(e);
        }
        return out;
    }
    // The runs of the task whose track is labelled `track`.
    std::vector<event_line> runs(const std::string& track) const { return where("X", "", track); }
};

std::string temp_path(const std::string& tag) {
    return "/tmp/greenfiber_trace_test_" + std::to_string(::getpid()) + "_" + tag + ".json";
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s) {
        if (c == sep) {
            out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    out.push_back(cur);
    return out;
}

// Reads the JSON file with Python's json module; fails the test if it does not parse.
parsed parse_file(const std::string& path) {
    const std::string script = path + ".py";
    {
        std::ofstream f(script);
        f << checker;
    }
    const std::string cmd = "python3 " + script + " " + path + " 2>&1";
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(cmd.c_str(), "r"), &::pclose);
    parsed out;
    if (!pipe) {
        ADD_FAILURE() << "cannot run python3 (needed to check the JSON)";
        return out;
    }
    std::string all;
    std::array<char, 4096> buf{};
    while (std::fgets(buf.data(), buf.size(), pipe.get()) != nullptr) all += buf.data();
    const int rc = ::pclose(pipe.release());
    std::remove(script.c_str());
    EXPECT_EQ(rc, 0) << "the trace is not valid JSON of the expected shape:\n" << all;
    std::istringstream in(all);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("lost ", 0) == 0) {
            out.lost = std::stoull(line.substr(5));
        } else if (line.rfind("recorded ", 0) == 0) {
            out.recorded = std::stoull(line.substr(9));
        } else if (line.rfind("track\t", 0) == 0) {
            auto f = split(line, '\t');
            out.tracks[{std::stol(f[1]), std::stoull(f[2])}] = f[3];
        } else if (line.rfind("ev\t", 0) == 0) {
            auto f = split(line, '\t');
            event_line e;
            e.ph = f[1];
            e.name = f[2];
            e.pid = std::stol(f[3]);
            e.tid = std::stoull(f[4]);
            e.ts = std::stoll(f[5]);
            e.dur = std::stoll(f[6]);
            e.args = f[7];
            out.events.push_back(e);
        }
    }
    for (auto& e : out.events) {
        auto it = out.tracks.find({e.pid, e.tid});
        e.track = it != out.tracks.end() ? it->second : "?";
    }
    return out;
}

parsed write_and_parse(const std::string& tag) {
    const std::string path = temp_path(tag);
    write_trace(path);
    parsed p = parse_file(path);
    std::remove(path.c_str());
    return p;
}

// Runs on one track never overlap, and each begins before it ends.
void expect_runs_well_formed(const parsed& p) {
    std::map<std::pair<long, unsigned long long>, std::vector<event_line>> by_track;
    for (const auto& e : p.events) {
        if (e.ph == "X") by_track[{e.pid, e.tid}].push_back(e);
    }
    for (auto& [track, runs] : by_track) {
        std::sort(runs.begin(), runs.end(),
                  [](const event_line& a, const event_line& b) { return a.ts < b.ts; });
        for (std::size_t i = 0; i < runs.size(); ++i) {
            EXPECT_LT(runs[i].ts, runs[i].end()) << runs[i].name;
            if (i > 0) {
                EXPECT_LE(runs[i - 1].end(), runs[i].ts)
                    << "runs overlap on track " << p.tracks.at(track);
            }
        }
    }
}

TEST_F(Trace, ScriptedProgramShowsEachTaskRunsParksTimersAndSocketReads) {
    start_trace();
    event go;
    greenfiber::testing::tcp_pair pair;  // spawns and finishes an accept task
    auto sleeper = spawn(spawn_options{.name = "sleeper"}, [&] {
        sleep(2ms);
        go.set();
    });
    auto waiter_task = spawn(spawn_options{.name = "waiter"}, [&] { go.wait(); });
    auto reader = spawn(spawn_options{.name = "reader"}, [&] {
        std::array<char, 16> buf{};
        return pair.server.read_some(asio::buffer(buf));
    });
    auto writer = spawn(spawn_options{.name = "writer"}, [&] {
        go.wait();
        pair.client.write(asio::buffer(std::string("hello")));
    });
    auto failing = spawn(spawn_options{.name = "failing"}, [] {
        yield_now();
        throw std::runtime_error("boom");
    });
    auto doomed = spawn(spawn_options{.name = "doomed"}, [] { sleep(1h); });
    sleeper.get();
    waiter_task.get();
    writer.get();
    EXPECT_EQ(reader.get(), 5u);
    EXPECT_THROW(failing.get(), std::runtime_error);
    doomed.cancel();
    EXPECT_THROW(doomed.get(), cancelled_error);
    stop_trace();

    const parsed p = write_and_parse("scripted");
    EXPECT_EQ(p.lost, 0u);
    expect_runs_well_formed(p);
    for (const std::string name : {"sleeper", "waiter", "reader", "writer", "failing", "doomed"}) {
        const std::string track = "task '" + name + "'";
        SCOPED_TRACE(name);
        const auto spawns = p.where("i", "spawn", track);
        ASSERT_EQ(spawns.size(), 1u);
        EXPECT_THAT(spawns[0].args, HasSubstr("name=" + name));
        EXPECT_THAT(spawns[0].args, HasSubstr("by=main"));
        const auto runs = p.runs(track);
        ASSERT_FALSE(runs.empty());
        for (const auto& r : runs) EXPECT_EQ(r.name, name);  // a slice carries the task's name
        const auto finishes = p.where("i", "finish", track);
        ASSERT_EQ(finishes.size(), 1u);
        // spawn < first run; finish inside the last run
        EXPECT_LT(spawns[0].ts, runs.front().ts);
        EXPECT_GE(finishes[0].ts, runs.back().ts);
        EXPECT_LE(finishes[0].ts, runs.back().end());
    }
    // Outcomes.
    EXPECT_EQ(p.where("i", "finish", "task 'sleeper'")[0].args, "outcome=done");
    EXPECT_EQ(p.where("i", "finish", "task 'failing'")[0].args, "outcome=failed");
    EXPECT_EQ(p.where("i", "finish", "task 'doomed'")[0].args, "outcome=cancelled");
    // The sleeper: two runs (start → sleep, timer → set), its park's reason, its timer.
    const auto sleeper_runs = p.runs("task 'sleeper'");
    ASSERT_EQ(sleeper_runs.size(), 2u);
    const auto parks = p.where("i", "park", "task 'sleeper'");
    ASSERT_EQ(parks.size(), 1u);
    EXPECT_EQ(parks[0].args, "reason=a timer (sleep)");
    EXPECT_GE(parks[0].ts, sleeper_runs[0].ts);  // parked inside its first run
    EXPECT_LE(parks[0].ts, sleeper_runs[0].end());
    const auto timers = p.where("i", "timer fired", "task 'sleeper'");
    ASSERT_EQ(timers.size(), 1u);
    EXPECT_EQ(timers[0].args, "reason=a timer (sleep)");
    EXPECT_GT(timers[0].ts, sleeper_runs[0].end());  // between its two runs
    EXPECT_LT(timers[0].ts, sleeper_runs[1].ts);
    // The waiter parks on the event and runs again only after the sleeper set it.
    const auto waiter_runs = p.runs("task 'waiter'");
    ASSERT_EQ(waiter_runs.size(), 2u);
    EXPECT_GT(waiter_runs[1].ts, sleeper_runs[1].ts);
    ASSERT_EQ(p.where("i", "park", "task 'waiter'").size(), 1u);
    // The reader: parked for a read, woken by the I/O completion after the writer wrote.
    const auto reads = p.where("i", "I/O done", "task 'reader'");
    ASSERT_EQ(reads.size(), 1u);
    EXPECT_THAT(reads[0].args, HasSubstr("failed=false"));
    const auto reader_parks = p.where("i", "park", "task 'reader'");
    ASSERT_EQ(reader_parks.size(), 1u);
    EXPECT_LT(reader_parks[0].ts, reads[0].ts);
    const auto writer_runs = p.runs("task 'writer'");
    EXPECT_GT(reads[0].ts, writer_runs.back().ts);
    const auto reader_runs = p.runs("task 'reader'");
    ASSERT_EQ(reader_runs.size(), 2u);
    EXPECT_GT(reader_runs[1].ts, reads[0].ts);
    // The hub's own track: reactor waits and loop turns.
    EXPECT_FALSE(p.where("X", "reactor wait", "hub").empty());
    EXPECT_FALSE(p.where("C", "ready", "hub").empty());
}

TEST_F(Trace, NamesSurviveTasksDestroyedBeforeTheWrite) {
    start_trace();
    {
        auto t = spawn(spawn_options{.name = "short-lived"}, [] { yield_now(); });
        t.get();
    }                                                // the task's state is gone now
    for (int i = 0; i < 3; ++i) spawn([] {}).get();  // default names
    stop_trace();
    const parsed p = write_and_parse("destroyed");
    EXPECT_EQ(p.runs("task 'short-lived'").size(), 2u);
    std::size_t defaults = 0;
    for (const auto& [k, label] : p.tracks) {
        if (label.rfind("task 'task-", 0) == 0) ++defaults;
    }
    EXPECT_EQ(defaults, 3u);
}

TEST_F(Trace, RingWrapsAndTheOutputSaysHowManyEventsWereLost) {
    start_trace({.capacity = 16});
    auto t = spawn(spawn_options{.name = "spinner"}, [] {
        for (int i = 0; i < 200; ++i) yield_now();
    });
    t.get();
    stop_trace();
    const trace_info info = trace_state();
    EXPECT_EQ(info.capacity, 16u);
    EXPECT_EQ(info.records, 16u);
    EXPECT_GE(info.recorded, 400u);  // 200 runs and 200 parks at least
    EXPECT_EQ(info.lost, info.recorded - 16);
    EXPECT_EQ(info.lost + info.records, info.recorded);
    const parsed p = write_and_parse("wrap");
    EXPECT_EQ(p.lost, info.lost);
    EXPECT_EQ(p.recorded, info.recorded);
    // The 16 records kept, plus one marker saying how many were lost.
    EXPECT_EQ(p.events.size(), 17u);
    const auto marker = p.where("i", std::to_string(info.lost) +
                                         " earlier events lost: the trace ring (16 records) "
                                         "was full");
    ASSERT_EQ(marker.size(), 1u);
    EXPECT_EQ(marker[0].args, "lost_events=" + std::to_string(info.lost));
    // The spawn was overwritten long ago, yet the kept runs still carry the task's name.
    EXPECT_TRUE(p.where("i", "spawn").empty());
    const auto runs = p.runs("task 'spinner'");
    ASSERT_FALSE(runs.empty());
    for (const auto& r : runs) EXPECT_EQ(r.name, "spinner");
    expect_runs_well_formed(p);
}

TEST_F(Trace, ManyShortTasksOnASmallRingKeepTheRightNames) {
    // Every default name is a new string: the tables are compacted as the ring forgets them.
    start_trace({.capacity = 16});
    for (int i = 0; i < 3000; ++i) spawn([] {}).get();
    auto last = spawn(spawn_options{.name = "last one"}, [] { yield_now(); });
    last.get();
    stop_trace();
    const parsed p = write_and_parse("compact");
    EXPECT_GT(p.lost, 3000u);
    EXPECT_EQ(p.runs("task 'last one'").size(), 2u);
    for (const auto& e : p.events) {
        if (e.ph == "X" && e.track.rfind("task '", 0) == 0) {
            // A kept run's name is its own task's name.
            EXPECT_EQ(e.track, "task '" + e.name + "'");
        }
    }
}

TEST_F(Trace, StartAndStopTwice) {
    EXPECT_FALSE(trace_state().recording);
    stop_trace();  // not recording: nothing happens
    start_trace();
    EXPECT_TRUE(trace_state().recording);
    try {
        start_trace();
        FAIL() << "a second start_trace() did not throw";
    } catch (const greenfiber::error& e) {
        EXPECT_THAT(e.what(), HasSubstr("recording a trace already"));
    }
    spawn(spawn_options{.name = "first"}, [] {}).get();
    stop_trace();
    stop_trace();
    EXPECT_FALSE(trace_state().recording);
    const std::uint64_t after_first = trace_state().recorded;
    // Off: running tasks records nothing.
    spawn(spawn_options{.name = "untraced"}, [] { yield_now(); }).get();
    EXPECT_EQ(trace_state().recorded, after_first);
    const parsed one = write_and_parse("first");
    EXPECT_EQ(one.runs("task 'first'").size(), 1u);
    EXPECT_TRUE(one.runs("task 'untraced'").empty());

    start_trace();  // a new, empty ring
    EXPECT_LT(trace_state().recorded, after_first);
    spawn(spawn_options{.name = "second"}, [] {}).get();
    stop_trace();
    const parsed two = write_and_parse("second");
    EXPECT_TRUE(two.runs("task 'first'").empty());
    EXPECT_EQ(two.runs("task 'second'").size(), 1u);
}

TEST_F(Trace, WriteWithoutAnyTraceIsAValidEmptyTrace) {
    // A fresh thread has never traced.
    std::string out;
    std::thread([&] {
        std::ostringstream os;
        write_trace(os);
        out = os.str();
    }).join();
    const std::string path = temp_path("empty");
    {
        std::ofstream f(path);
        f << out;
    }
    const parsed p = parse_file(path);
    std::remove(path.c_str());
    EXPECT_TRUE(p.events.empty());
    EXPECT_EQ(p.recorded, 0u);
}

TEST_F(Trace, WriteToAPathThatCannotBeOpenedThrowsNamingIt) {
    try {
        write_trace(std::string("/nonexistent-dir/trace.json"));
        FAIL() << "no exception";
    } catch (const std::system_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("/nonexistent-dir/trace.json"));
    }
}

TEST_F(Trace, StopWhileFibersAreParked) {
    start_trace();
    event go;
    std::vector<task<void>> parked;
    for (int i = 0; i < 3; ++i) {
        parked.push_back(
            spawn(spawn_options{.name = "parked-" + std::to_string(i)}, [&] { go.wait(); }));
    }
    yield_now();  // they all park
    EXPECT_EQ(hub::current().parked(), 3u);
    stop_trace();
    const std::uint64_t at_stop = trace_state().recorded;
    go.set();
    for (auto& t : parked) t.get();
    EXPECT_EQ(trace_state().recorded, at_stop);  // nothing after the stop
    const parsed p = write_and_parse("parked");
    for (int i = 0; i < 3; ++i) {
        const std::string track = "task 'parked-" + std::to_string(i) + "'";
        EXPECT_EQ(p.runs(track).size(), 1u);
        const auto parks = p.where("i", "park", track);
        ASSERT_EQ(parks.size(), 1u);
        EXPECT_THAT(parks[0].args, HasSubstr("reason=an event"));
        EXPECT_TRUE(p.where("i", "finish", track).empty());  // finished after the stop
    }
}

TEST_F(Trace, StartAndStopInsideATaskGiveItsRunFromStartToStop) {
    auto t = spawn(spawn_options{.name = "self-tracing"}, [] {
        start_trace();
        yield_now();  // the run from start_trace() ends here
        yield_now();
        stop_trace();  // and the last run ends here
    });
    t.get();
    const parsed p = write_and_parse("inside");
    const auto runs = p.runs("task 'self-tracing'");
    ASSERT_EQ(runs.size(), 3u);
    EXPECT_EQ(p.where("i", "park", "task 'self-tracing'").size(), 2u);
    expect_runs_well_formed(p);
}

TEST_F(Trace, ATaskRenamedMidTraceShowsEachNameWhenItHadIt) {
    start_trace();
    event renamed;
    auto t = spawn(spawn_options{.name = "before"}, [&] {
        yield_now();
        renamed.wait();
        yield_now();
    });
    yield_now();
    yield_now();  // it runs twice as 'before', then waits
    t.set_name("after");
    renamed.set();
    t.get();
    stop_trace();
    const parsed p = write_and_parse("rename");
    const std::string track = "task 'after' (was 'before')";
    const auto runs = p.runs(track);
    ASSERT_EQ(runs.size(), 4u);
    EXPECT_EQ(runs[0].name, "before");
    EXPECT_EQ(runs[1].name, "before");
    EXPECT_EQ(runs[2].name, "after");
    EXPECT_EQ(runs[3].name, "after");
    const auto renames = p.where("i", "rename", track);
    ASSERT_EQ(renames.size(), 1u);
    EXPECT_EQ(renames[0].args, "to=after");
    EXPECT_GT(renames[0].ts, runs[1].end());
    EXPECT_LT(renames[0].ts, runs[2].ts);
    EXPECT_EQ(p.where("i", "spawn", track)[0].args, "by=main;name=before");
}

TEST_F(Trace, TasksOlderThanTheTraceAreNamedByTheirTask) {
    event go;
    auto old = spawn(spawn_options{.name = "older"}, [&] { go.wait(); });
    yield_now();  // it parks before the trace starts
    start_trace();
    go.set();
    old.get();
    stop_trace();
    const parsed p = write_and_parse("older");
    EXPECT_EQ(p.runs("task 'older'").size(), 1u);
    EXPECT_EQ(p.where("i", "finish", "task 'older'").size(), 1u);
}

TEST_F(Trace, PlainGreenletsCallbacksAndCallLaterAppear) {
    start_trace();
    bool ran = false;
    auto h = event_loop::current().call_later(1ms, [&] { ran = true; });
    greenlet g([] { yield_now(); }, greenlet::options{"plain", 0});
    (void)g.switch_to();  // it parks in yield_now(); the hub resumes it later
    hub::current().call_soon([] {});
    sleep(5ms);
    EXPECT_TRUE(ran);
    EXPECT_TRUE(g.dead());
    stop_trace();
    const parsed p = write_and_parse("plain");
    EXPECT_EQ(p.runs("plain").size(), 1u);  // resumed once by the hub
    EXPECT_EQ(p.where("i", "park", "plain").size(), 1u);
    EXPECT_EQ(p.where("i", "call_later", "hub").size(), 1u);
    EXPECT_FALSE(p.where("X", "callback", "hub").empty());
    EXPECT_FALSE(p.runs("main").empty());
}

TEST_F(Trace, UseFiberCompletionsAppear) {
    start_trace();
    auto t = spawn(spawn_options{.name = "timer-user"}, [] {
        asio::steady_timer timer(hub::current().context(), 1ms);
        timer.async_wait(use_fiber);
    });
    t.get();
    stop_trace();
    const parsed p = write_and_parse("use_fiber");
    const auto done = p.where("i", "use_fiber done", "task 'timer-user'");
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].args, "reason=an asynchronous operation (use_fiber)");
    const auto runs = p.runs("task 'timer-user'");
    ASSERT_EQ(runs.size(), 2u);
    EXPECT_GT(done[0].ts, runs[0].end());
    EXPECT_LT(done[0].ts, runs[1].ts);
}

TEST_F(Trace, WriteWhileTasksAreStillRunning) {
    start_trace();
    event go;
    auto parked = spawn(spawn_options{.name = "still-parked"}, [&] { go.wait(); });
    std::string snapshot;
    auto writer = spawn(spawn_options{.name = "writer"}, [&] {
        yield_now();
        std::ostringstream os;
        write_trace(os);  // from a running fiber, with another parked
        snapshot = os.str();
        go.set();
    });
    writer.get();
    parked.get();
    EXPECT_TRUE(trace_state().recording);  // a write does not stop it
    stop_trace();
    const std::string path = temp_path("snapshot");
    {
        std::ofstream f(path);
        f << snapshot;
    }
    const parsed early = parse_file(path);
    std::remove(path.c_str());
    EXPECT_EQ(early.runs("task 'still-parked'").size(), 1u);
    EXPECT_TRUE(early.where("i", "finish", "task 'still-parked'").empty());
    const parsed late = write_and_parse("after-snapshot");
    EXPECT_EQ(late.runs("task 'still-parked'").size(), 2u);
    EXPECT_EQ(late.where("i", "finish", "task 'still-parked'").size(), 1u);
}

TEST_F(Trace, TwoThreadsHubsTraceAtOnceEachItsOwn) {
    auto run_on_thread = [](std::string tag, parsed& out, long& tid) {
        start_trace();
        std::vector<task<void>> ts;
        for (int i = 0; i < 4; ++i) {
            ts.push_back(spawn(spawn_options{.name = tag + "-" + std::to_string(i)}, [] {
                for (int k = 0; k < 5; ++k) yield_now();
            }));
        }
        for (auto& t : ts) t.get();
        stop_trace();
        out = write_and_parse(tag);
        tid = out.events.empty() ? 0 : out.events.front().pid;
    };
    parsed a, b;
    long tid_a = 0, tid_b = 0;
    std::thread ta([&] { run_on_thread("alpha", a, tid_a); });
    std::thread tb([&] { run_on_thread("beta", b, tid_b); });
    ta.join();
    tb.join();
    EXPECT_NE(tid_a, tid_b);  // one process id per hub
    for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(a.runs("task 'alpha-" + std::to_string(i) + "'").size(), 6u);
        EXPECT_EQ(b.runs("task 'beta-" + std::to_string(i) + "'").size(), 6u);
        EXPECT_TRUE(a.runs("task 'beta-" + std::to_string(i) + "'").empty());
        EXPECT_TRUE(b.runs("task 'alpha-" + std::to_string(i) + "'").empty());
    }
    for (const auto& e : a.events) EXPECT_EQ(e.pid, tid_a);
    for (const auto& e : b.events) EXPECT_EQ(e.pid, tid_b);
    EXPECT_FALSE(trace_state().recording);  // this thread's hub never traced
}

TEST_F(Trace, AThreadExitingWhileItsHubRecordsWithTasksParkedIsClean) {
    // Neither stop_trace() nor a finished task: the hub kills the parked task as the thread
    // exits, while the thread's trace goes away too. Nothing may touch the other's memory
    // (the sanitizer build checks it).
    std::uint64_t recorded = 0;
    std::thread([&] {
        start_trace();
        auto parked = spawn(spawn_options{.name = "left parked"}, [] { sleep(1h); });
        yield_now();
        recorded = trace_state().recorded;
    }).join();
    EXPECT_GT(recorded, 0u);
}

TEST_F(Trace, CancellingAParkedTaskShowsItsWakeAndCancelledFinish) {
    start_trace();
    auto t = spawn(spawn_options{.name = "victim"}, [] { sleep(1h); });
    yield_now();
    t.cancel();
    EXPECT_THROW(t.get(), cancelled_error);
    stop_trace();
    const parsed p = write_and_parse("cancel");
    const auto runs = p.runs("task 'victim'");
    ASSERT_EQ(runs.size(), 2u);  // up to the sleep, then the cancellation's raise
    EXPECT_TRUE(p.where("i", "timer fired", "task 'victim'").empty());
    EXPECT_EQ(p.where("i", "finish", "task 'victim'")[0].args, "outcome=cancelled");
}

}  // namespace
