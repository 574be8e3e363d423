// A randomised stress test of the task layer: from a seed, a random program of tasks,
// combinators, sync primitives, a queue, promises and the executor, under random
// cancellation and random deadlines, checked against invariants that hold whatever the
// interleaving:
//   - every item put in the queue is got exactly once or is still in it at the end;
//   - a mutex is never held by two, a semaphore never gives out more units than it has,
//     and at the end every unit is back;
//   - condition tokens are conserved (produced = consumed + left);
//   - get(), gather(), wait(), as_completed(), wait_for(), join() never report a task
//     finished before its function left;
//   - a pool never runs more tasks than its size;
//   - a timed wait that says "timed out" returns at or after its deadline;
//   - every task ends, within a watchdog bound (a hang fails the test, it never hangs it);
//   - nothing leaks (the fixture checks greenlets, stacks, parked fibers and timers).
//
// Every sleep is 0-3 ms, so a seed runs in milliseconds. The default suite runs a few
// hundred seeds (fewer under ASan). For a long run or to replay one seed:
//   GREENFIBER_STRESS_SEEDS=20000 build/tests/io_stress_test     # seeds 1..20000
//   GREENFIBER_STRESS_FIRST=50001 GREENFIBER_STRESS_SEEDS=1000 ...  # seeds 50001..51000
//   GREENFIBER_STRESS_SEED=1234 build/tests/io_stress_test       # that seed only
//   GREENFIBER_STRESS_REPEAT=20 ...        # each seed 20 times
//   GREENFIBER_STRESS_TRACE=1 ...          # print what every fiber does
//   GREENFIBER_STRESS_ONLY=8,14 ...        # only those actions (the cases of act())
// A failure prints its seed and the invariant that broke. Sleeps use the real clock, so a
// seed always builds the same program but not always the same interleaving: replay a
// failing seed with a repeat count.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "greenfiber/combinators.hpp"
#include "greenfiber/executor.hpp"
#include "greenfiber/future.hpp"
#include "greenfiber/hub.hpp"
#include "greenfiber/queue.hpp"
#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"
#include "io_check.hpp"

using namespace greenfiber;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

// The failure a child task raises on purpose.
struct test_error : std::runtime_error {
    explicit test_error(int id) : std::runtime_error("test_error " + std::to_string(id)) {}
};

#if defined(__SANITIZE_ADDRESS__)
constexpr std::uint64_t default_seeds = 200;
#else
constexpr std::uint64_t default_seeds = 1000;
#endif

std::uint64_t env_or(const char* name, std::uint64_t fallback) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return fallback;
    return std::strtoull(v, nullptr, 10);
}

// What a child task records about itself:
// whether its function was entered and whether it has left (by any path). A task cancelled
// before it started never enters it.
struct child_info {
    int id = 0;
    bool entered = false;
    bool exited = false;
};

struct world;

// Marks a child's function as left when it unwinds or returns.
struct exit_mark {
    explicit exit_mark(std::shared_ptr<child_info> i) : info(std::move(i)) { info->entered = true; }
    ~exit_mark() { info->exited = true; }
    exit_mark(const exit_mark&) = delete;
    exit_mark& operator=(const exit_mark&) = delete;
    std::shared_ptr<child_info> info;
};

// Everything one seed's program shares, and the bookkeeping the invariants need.
struct world {
    explicit world(std::uint64_t s, executor& ex)
        : seed(s),
          rng(s * 0x9E3779B97F4A7C15ull + 1),
          q(pick(0, 3)),
          sem_units(pick(1, 3)),
          sem(sem_units),
          bar(pick(2, 3)),
          pool_size(pick(1, 3)),
          workers_pool(pool_size),
          threads(ex) {}

    std::uint64_t seed;
    std::mt19937_64 rng;
    std::vector<std::string> failures;

    // The queue: every value put is unique.
    greenfiber::queue<int> q;
    int next_item = 1;
    std::multiset<int> put_ok;
    std::multiset<int> got;

    // The mutex and how many hold it.
    mutex m;
    int holders = 0;

    // The reentrant lock, the fiber holding it and its depth as the program counts it.
    rlock rl;
    const void* rl_owner = nullptr;
    std::size_t rl_depth = 0;

    // The semaphore and how many units are out.
    std::size_t sem_units;
    semaphore sem;
    std::size_t sem_held = 0;

    // The event and how often it was set.
    event ev;
    int ev_sets = 0;

    // The condition and its tokens.
    condition cv;
    long tokens = 0, produced = 0, consumed = 0;

    barrier bar;

    // A shared promise, set at most once.
    std::optional<promise<int>> pr{std::in_place};
    future<int> fut = pr->get_future();
    bool pr_set = false;
    int pr_value = 0;

    // The pool shared by every worker, and how many of its tasks run at once.
    std::size_t pool_size;
    pool workers_pool;
    std::size_t pool_running = 0;

    executor& threads;

    // Task groups shared by the workers (spawned into and joined by several); a joined one
    // is closed and the next action opens another. Kept to the end.
    std::vector<std::unique_ptr<task_group>> groups;
    bool group_open = false;

    // A deadline both sides of a pair use, so that the value and the deadline can fall on
    // the same instant.
    clock_type::time_point instant = clock_type::now();

    std::vector<any_task> all;  // every task spawned, to check each ended
    std::vector<task<void>> workers;
    int next_child = 1;

    int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
    bool chance(int percent) { return pick(0, 99) < percent; }
    clock_type::duration small() {
        // 0-3 ms, sometimes exactly 0.
        return std::chrono::microseconds(chance(20) ? 0 : pick(0, 3000));
    }

    // With GREENFIBER_STRESS_TRACE set, what each fiber does, printed as it happens.
    bool tracing = std::getenv("GREENFIBER_STRESS_TRACE") != nullptr;
    void trace(const char* what, int n = -1) {
        if (!tracing) return;
        const any_task t = current_task();
        std::fprintf(stderr, "[%s] %s %d\n", t ? t.name().c_str() : "main", what, n);
    }

    void fail(const std::string& what) { failures.push_back(what); }
    void check(bool ok, const char* what) {
        if (!ok) fail(what);
    }

    // Sleeps a little, yields, or does nothing.
    void pause() {
        const int how = pick(0, 3);
        trace("pause", how);
        switch (how) {
            case 0:
                break;
            case 1:
                yield_now();
                break;
            case 2:
                sleep(small());
                break;
            default:
                sleep_until(instant);
                break;
        }
    }

    void new_instant() { instant = clock_type::now() + std::chrono::milliseconds(pick(0, 3)); }

    // A child task: pauses, then returns its id or throws test_error.
    task<int> child(const char* kind, std::shared_ptr<child_info>* out = nullptr,
                    bool may_cancel = true) {
        auto info = std::make_shared<child_info>();
        info->id = next_child++;
        const int mode = pick(0, 9);
        const auto d = small();
        auto t = spawn([this, info, mode, d] {
            exit_mark mark(info);
            if (mode >= 1) sleep(d);
            if (mode == 2) yield_now();
            if (mode == 3) sleep_until(instant);
            if (mode == 9) throw test_error(info->id);
            return info->id;
        });
        t.set_name(std::string(kind) + "-" + std::to_string(info->id));
        if (may_cancel && chance(10)) t.cancel("cancelled before it started");
        all.push_back(t.share_any());
        if (out != nullptr) *out = info;
        return t;
    }

    // A task that get(), gather() and the rest said was finished really is.
    void check_finished(const any_task& t, const std::shared_ptr<child_info>& info,
                        const char* by) {
        if (!t.done()) fail(std::string(by) + " returned while the task was not done");
        if (info && info->entered && !info->exited)
            fail(std::string(by) + " returned before the task's function left");
    }

    void check_timed_out(clock_type::time_point deadline, const char* what) {
        const auto early = deadline - clock_type::now();
        if (early > clock_type::duration::zero())
            fail(std::string(what) + " reported a timeout " +
                 std::to_string(
                     std::chrono::duration_cast<std::chrono::microseconds>(early).count()) +
                 " us before its deadline");
    }

    // ---- the actions a worker takes ----

    void queue_put() {
        const int item = next_item++;
        bool ok = false;
        switch (pick(0, 3)) {
            case 0:
                q.put(item);
                ok = true;
                break;
            case 1: {
                const auto dl = clock_type::now() + small();
                ok = q.put_until(item, dl);
                if (!ok) check_timed_out(dl, "queue.put_until()");
                break;
            }
            case 2:
                try {
                    q.put_nowait(item);
                    ok = true;
                } catch (const queue_full&) {
                }
                break;
            default: {
                const auto at = instant;  // another fiber may move `instant` meanwhile
                ok = q.put_until(item, at);
                if (!ok) check_timed_out(at, "queue.put_until(instant)");
                break;
            }
        }
        if (ok) put_ok.insert(item);
    }

    void record_got(int item) {
        if (put_ok.count(item) == 0) fail("queue: got an item that was never put (or twice)");
        if (got.count(item) != 0) fail("queue: an item was got twice");
        got.insert(item);
        q.task_done();  // processed at once: join() counts it
    }

    void queue_join() {
        const auto dl = chance(50) ? instant : clock_type::now() + small();
        if (!q.join_until(dl)) check_timed_out(dl, "queue.join_until()");
    }

    void queue_get() {
        switch (pick(0, 3)) {
            case 0:
                timeout(small(), [&] { record_got(q.get()); });
                break;
            case 1: {
                const auto dl = clock_type::now() + small();
                if (auto v = q.get_until(dl)) {
                    record_got(*v);
                } else {
                    check_timed_out(dl, "queue.get_until()");
                }
                break;
            }
            case 2:
                try {
                    record_got(q.get_nowait());
                } catch (const queue_empty&) {
                }
                break;
            default: {
                const auto at = instant;
                if (auto v = q.get_until(at)) {
                    record_got(*v);
                } else {
                    check_timed_out(at, "queue.get_until(instant)");
                }
                break;
            }
        }
    }

    void hold_mutex() {
        bool locked = false;
        if (chance(60)) {
            m.lock();
            locked = true;
        } else {
            const auto dl = clock_type::now() + small();
            locked = m.lock_until(dl);
            if (!locked) check_timed_out(dl, "mutex.lock_until()");
        }
        if (!locked) return;
        if (holders != 0) fail("mutex: held by two fibers at once");
        ++holders;
        if (!m.locked()) fail("mutex: locked() is false while held");
        try {
            pause();
        } catch (...) {
            --holders;
            m.unlock();
            throw;
        }
        --holders;
        m.unlock();
    }

    void hold_rlock(int depth) {
        const auto dl = clock_type::now() + small();
        if (!(chance(60) ? (rl.lock(), true) : rl.lock_until(dl))) {
            check_timed_out(dl, "rlock.lock_until()");
            return;
        }
        const void* me = current_task().state();
        if (rl_depth != 0 && rl_owner != me) fail("rlock: held by two fibers at once");
        rl_owner = me;
        ++rl_depth;
        if (rl.recursion_count() != rl_depth) fail("rlock: wrong recursion count");
        if (!rl.owned_by_current()) fail("rlock: not owned by the fiber holding it");
        try {
            pause();
            if (depth < 2 && chance(50)) hold_rlock(depth + 1);
        } catch (...) {
            if (--rl_depth == 0) rl_owner = nullptr;
            rl.unlock();
            throw;
        }
        if (--rl_depth == 0) rl_owner = nullptr;
        rl.unlock();
    }

    // gevent's Timeout: it raises in this task while it lives, never once it is gone.
    void use_timeout_guard() {
        try {
            timeout_guard g(small());
            pause();
            if (chance(50)) pause();
        } catch (const timeout_error&) {
        }
        try {
            yield_now();
            sleep(std::chrono::microseconds(pick(0, 500)));
        } catch (const timeout_error&) {
            fail("timeout_guard: its timeout was raised after it was destroyed");
        }
    }

    void hold_semaphore() {
        bool got_unit = false;
        if (chance(60)) {
            sem.acquire();
            got_unit = true;
        } else {
            const auto dl = clock_type::now() + small();
            got_unit = sem.acquire_until(dl);
            if (!got_unit) check_timed_out(dl, "semaphore.acquire_until()");
        }
        if (!got_unit) return;
        ++sem_held;
        if (sem_held > sem_units) fail("semaphore: more units out than it has");
        try {
            pause();
        } catch (...) {
            --sem_held;
            sem.release();
            throw;
        }
        --sem_held;
        sem.release();
    }

    void use_event() {
        switch (pick(0, 4)) {
            case 0:
                ++ev_sets;
                ev.set();
                break;
            case 1:
                ev.clear();
                break;
            case 2: {
                const auto dl = clock_type::now() + small();
                if (ev.wait_until(dl)) {
                    if (ev_sets == 0) fail("event: wait returned true but it was never set");
                } else {
                    check_timed_out(dl, "event.wait_until()");
                }
                break;
            }
            case 3:
                timeout(small(), [&] {
                    ev.wait();
                    if (ev_sets == 0) fail("event: wait returned but it was never set");
                });
                break;
            default: {
                const auto at = instant;
                if (!ev.wait_until(at)) check_timed_out(at, "event.wait_until(instant)");
                break;
            }
        }
    }

    void use_condition() {
        cv.lock();
        try {
            if (chance(50)) {
                ++tokens;
                ++produced;
                if (chance(30)) {
                    cv.notify_all();
                } else {
                    cv.notify(static_cast<std::size_t>(pick(1, 2)));
                }
            } else {
                const auto dl = chance(30) ? instant : clock_type::now() + small();
                if (cv.wait_until(dl, [&] { return tokens > 0; })) {
                    --tokens;
                    ++consumed;
                }
                if (!cv.locked()) fail("condition: wait returned without the lock");
            }
        } catch (...) {
            if (!cv.locked()) fail("condition: a wait left by an exception without the lock");
            cv.unlock();
            throw;
        }
        if (tokens < 0) fail("condition: tokens went negative");
        cv.unlock();
    }

    void use_barrier() {
        switch (pick(0, 9)) {
            case 0:
                bar.reset();
                break;
            case 1:
                bar.abort();
                break;
            default:
                try {
                    timeout(small(), [&] {
                        const std::size_t i = bar.wait();
                        if (i >= bar.parties()) fail("barrier: arrival index out of range");
                    });
                } catch (const broken_barrier_error&) {
                    if (chance(50)) bar.reset();
                }
                break;
        }
    }

    void use_promise() {
        switch (pick(0, 3)) {
            case 0:
                if (!pr_set) {
                    pr_value = pick(1, 1000);
                    pr_set = true;
                    pr->set_value(pr_value);
                }
                break;
            case 1: {
                future<int> f = fut.share();
                const auto dl = chance(50) ? instant : clock_type::now() + small();
                if (auto v = f.get_until(dl)) {
                    if (!pr_set || *v != pr_value) fail("future: a value that was not set");
                } else {
                    check_timed_out(dl, "future.get_until()");
                }
                break;
            }
            default: {
                // A pair on one instant: a child sets (or breaks) the promise at the deadline
                // the getter gives up at.
                promise<int> p;
                future<int> f = p.get_future();
                new_instant();
                const auto at = instant;
                const bool breaks = chance(20);
                auto setter = spawn([this, p = std::move(p), at, breaks]() mutable {
                    sleep_until(at);
                    if (breaks) {
                        promise<int> gone = std::move(p);
                        return;
                    }
                    p.set_value(7);
                });
                setter.set_name("setter");
                all.push_back(setter.share_any());
                try {
                    if (auto v = f.get_until(at)) {
                        if (*v != 7) fail("future: wrong value");
                        if (breaks) fail("future: a value from a broken promise");
                    } else {
                        check_timed_out(at, "future.get_until(instant)");
                    }
                } catch (const broken_promise&) {
                    if (!breaks) fail("future: broken_promise from a promise that was kept");
                }
                break;
            }
        }
    }

    void get_child() {
        std::shared_ptr<child_info> info;
        auto t = child("get", &info);
        if (chance(20)) {
            yield_now();
            t.cancel();
        }
        try {
            (void)t.get();
            check_finished(t, info, "task.get()");
        } catch (const test_error&) {
            check_finished(t, info, "task.get() (failed task)");
        } catch (const cancelled_error&) {
            if (current_task().cancelling() == 0) check_finished(t, info, "task.get() (cancelled)");
            throw;
        }
    }

    std::vector<task<int>> children(const char* kind,
                                    std::vector<std::shared_ptr<child_info>>& infos) {
        std::vector<task<int>> ts;
        const int n = pick(1, 4);
        for (int i = 0; i < n; ++i) {
            std::shared_ptr<child_info> info;
            ts.push_back(child(kind, &info));
            infos.push_back(info);
        }
        return ts;
    }

    void use_gather() {
        std::vector<std::shared_ptr<child_info>> infos;
        auto ts = children("gather", infos);
        if (chance(50)) {
            auto outs = gather_outcomes(ts);
            for (std::size_t i = 0; i < ts.size(); ++i) {
                check_finished(ts[i], infos[i], "gather_outcomes()");
                if (outs[i].has_value() && outs[i].value() != infos[i]->id)
                    fail("gather_outcomes(): wrong result");
            }
            return;
        }
        gather_options opts;
        opts.cancel_on_error = chance(50);
        try {
            auto rs = gather(ts, opts);
            for (std::size_t i = 0; i < ts.size(); ++i) {
                check_finished(ts[i], infos[i], "gather()");
                if (rs[i] != infos[i]->id) fail("gather(): wrong result");
            }
        } catch (const test_error&) {
        } catch (const cancelled_error&) {
            if (current_task().cancelling() > 0) throw;  // the caller's own cancellation
            // A child was cancelled: that is a failure gather reports as it is.
        }
    }

    void use_wait() {
        std::vector<std::shared_ptr<child_info>> infos;
        auto ts = children("wait", infos);
        const return_when when = static_cast<return_when>(pick(0, 2));
        std::optional<clock_type::duration> limit;
        if (chance(50)) limit = small();
        auto r = greenfiber::wait(ts, limit, when);
        for (auto& d : r.done) {
            if (!d.done()) fail("wait(): a task in `done` is not done");
        }
        for (auto& p : r.pending) {
            if (p.done()) fail("wait(): a task in `pending` is done");
        }
        if (r.done.size() + r.pending.size() != ts.size()) fail("wait(): lost a task");
        if (!limit && when == return_when::all_completed && !r.pending.empty())
            fail("wait(all_completed) returned with tasks pending");
        if (!limit && r.done.empty()) fail("wait() without a timeout returned nothing done");
        for (std::size_t i = 0; i < ts.size(); ++i) {
            if (ts[i].done()) check_finished(ts[i], infos[i], "wait()");
        }
    }

    void use_as_completed() {
        std::vector<std::shared_ptr<child_info>> infos;
        auto ts = children("as_completed", infos);
        std::optional<clock_type::duration> limit;
        if (chance(50)) limit = small();
        std::set<detail::task_base*> seen;
        try {
            as_completed<int> ac(ts, limit);
            while (ac.has_next()) {
                task<int> t = ac.next();
                if (!t.done()) fail("as_completed(): handed out a task not done");
                if (!seen.insert(t.state()).second) fail("as_completed(): a task twice");
            }
            if (seen.size() != ts.size()) fail("as_completed(): did not hand out every task");
        } catch (const timeout_error&) {
            if (!limit) fail("as_completed(): timeout_error without a timeout");
        }
        for (std::size_t i = 0; i < ts.size(); ++i) {
            if (ts[i].done()) check_finished(ts[i], infos[i], "as_completed()");
        }
    }

    void use_wait_for() {
        std::shared_ptr<child_info> info;
        auto t = child("wait_for", &info);
        try {
            const int v = wait_for(t, small());
            check_finished(t, info, "wait_for()");
            if (v != info->id) fail("wait_for(): wrong result");
        } catch (const timeout_error&) {
            check_finished(t, info, "wait_for() (timed out)");
        } catch (const test_error&) {
            check_finished(t, info, "wait_for() (failed)");
        } catch (const cancelled_error&) {
            // The caller's cancellation cancels the task and waits for it; a task cancelled
            // before it started is rethrown as it is.
            check_finished(t, info, "wait_for() (cancelled)");
            if (current_task().cancelling() > 0) throw;
        }
    }

    void use_timeout() {
        try {
            timeout(small(), [&] {
                if (chance(50)) {
                    timeout(small(), [&] { pause(); });
                } else {
                    pause();
                }
                pause();
            });
        } catch (const timeout_error&) {
        }
    }

    void use_shield() {
        std::shared_ptr<child_info> info;
        auto inner = child("shielded", &info, false);
        auto outer = shield(inner);
        all.push_back(outer.share_any());
        if (chance(50)) {
            yield_now();
            trace("shield: cancel the shield");
            outer.cancel();
        }
        try {
            trace("shield: outer.get()");
            (void)outer.get();
        } catch (const cancelled_error&) {
            if (current_task().cancelling() > 0) throw;
        } catch (const test_error&) {
        }
        if (inner.cancelled()) fail("shield(): cancelling the shield cancelled the inner task");
        try {
            trace("shield: inner.get()");
            (void)inner.get();
            trace("shield: inner.get() returned");
            check_finished(inner, info, "shielded task.get()");
        } catch (const test_error&) {
        } catch (const cancelled_error&) {
            if (current_task().cancelling() > 0) throw;
        }
    }

    void use_task_group() {
        std::vector<std::shared_ptr<child_info>> infos;
        std::vector<task<int>> ts;
        try {
            task_group g;
            const int n = pick(1, 4);
            for (int i = 0; i < n; ++i) {
                auto info = std::make_shared<child_info>();
                info->id = next_child++;
                const bool throws = chance(15);
                const auto d = small();
                ts.push_back(g.spawn([this, info, throws, d] {
                    exit_mark mark(info);
                    sleep(d);
                    if (throws) throw test_error(info->id);
                    pause();
                    return info->id;
                }));
                ts.back().set_name("group-" + std::to_string(info->id));
                all.push_back(ts.back().share_any());
                infos.push_back(info);
                if (chance(20)) pause();
            }
            if (chance(10)) g.cancel();
            g.join();
            for (std::size_t i = 0; i < ts.size(); ++i)
                check_finished(ts[i], infos[i], "task_group.join()");
        } catch (const exception_group&) {
            for (std::size_t i = 0; i < ts.size(); ++i)
                check_finished(ts[i], infos[i], "task_group.join() (failed)");
        } catch (const cancelled_error&) {
            for (std::size_t i = 0; i < ts.size(); ++i)
                check_finished(ts[i], infos[i], "task_group.join() (cancelled)");
            throw;
        }
    }

    void use_shared_group() {
        if (!group_open) {
            groups.push_back(std::make_unique<task_group>());  // owned by this worker's task
            group_open = true;
        }
        task_group& g = *groups.back();
        if (chance(70)) {
            auto info = std::make_shared<child_info>();
            info->id = next_child++;
            const bool throws = chance(10);
            const auto d = small();
            try {
                auto t = g.spawn([this, info, throws, d] {
                    exit_mark mark(info);
                    sleep(d);
                    if (throws) throw test_error(info->id);
                    return info->id;
                });
                t.set_name("shared-group-" + std::to_string(info->id));
                all.push_back(t.share_any());
            } catch (const error&) {
                group_open = false;  // joined or failed: the next action opens another
            }
            return;
        }
        try {
            timeout(small(), [&] {
                g.join();
                if (g.running() != 0) fail("task_group.join() returned with tasks running");
            });
        } catch (const exception_group&) {
            if (g.running() != 0) fail("task_group.join() threw with tasks running");
        }
        if (&g == groups.back().get()) group_open = false;
    }

    void use_pool() {
        if (chance(15)) {
            try {
                timeout(small(), [&] { workers_pool.join(); });
            } catch (const timeout_error&) {
            }
            return;
        }
        auto info = std::make_shared<child_info>();
        info->id = next_child++;
        const auto d = small();
        auto t = workers_pool.spawn([this, info, d] {
            exit_mark mark(info);
            ++pool_running;
            if (pool_running > pool_size) fail("pool: more tasks running than its size");
            try {
                sleep(d);
            } catch (...) {
                --pool_running;
                throw;
            }
            --pool_running;
            return info->id;
        });
        t.set_name("pool-" + std::to_string(info->id));
        all.push_back(t.share_any());
        if (workers_pool.running() > workers_pool.size()) fail("pool: running() above size()");
    }

    void use_executor() {
        const int v = pick(1, 100);
        const auto d = std::chrono::microseconds(pick(0, 500));
        const int r = run_in_executor(threads, [v, d] {
            std::this_thread::sleep_for(d);
            return v;
        });
        if (r != v) fail("run_in_executor(): wrong result");
    }

    // With GREENFIBER_STRESS_ONLY=a,b,... only those actions (the case numbers of act()),
    // to narrow a failure down.
    std::vector<int> only = [] {
        std::vector<int> v;
        if (const char* e = std::getenv("GREENFIBER_STRESS_ONLY")) {
            std::stringstream ss(e);
            std::string item;
            while (std::getline(ss, item, ',')) v.push_back(std::atoi(item.c_str()));
        }
        return v;
    }();

    void act() {
        int what = pick(0, 20);
        if (!only.empty()) what = only[static_cast<std::size_t>(what) % only.size()];
        trace("act", what);
        switch (what) {
            case 0:
                queue_put();
                break;
            case 1:
                queue_get();
                break;
            case 2:
                hold_mutex();
                break;
            case 3:
                hold_semaphore();
                break;
            case 4:
                use_event();
                break;
            case 5:
                use_condition();
                break;
            case 6:
                use_barrier();
                break;
            case 7:
                use_promise();
                break;
            case 8:
                get_child();
                break;
            case 9:
                use_gather();
                break;
            case 10:
                use_wait();
                break;
            case 11:
                use_as_completed();
                break;
            case 12:
                use_wait_for();
                break;
            case 13:
                use_timeout();
                break;
            case 14:
                use_shield();
                break;
            case 15:
                use_task_group();
                break;
            case 17:
                use_shared_group();
                break;
            case 18:
                hold_rlock(0);
                break;
            case 19:
                use_timeout_guard();
                break;
            case 20:
                queue_join();
                break;
            default:
                if (chance(50)) {
                    use_pool();
                } else if (chance(30)) {
                    use_executor();
                } else {
                    pause();
                    new_instant();
                }
                break;
        }
    }

    // A worker: a run of random actions. A resilient worker withdraws a cancellation and
    // goes on (asyncio's uncancel()); the others end cancelled.
    void worker(int actions, bool resilient) {
        for (int i = 0; i < actions; ++i) {
            try {
                act();
            } catch (const cancelled_error&) {
                if (!resilient) throw;
                while (current_task().uncancel() > 0) {
                }
            } catch (const timeout_error&) {
            } catch (const test_error&) {
            } catch (const exception_group&) {
            } catch (const broken_barrier_error&) {
            } catch (const broken_promise&) {
            } catch (const std::exception& e) {
                fail(std::string("unexpected exception: ") + e.what());
            }
        }
    }

    // Cancels workers at random moments, some right after waking what they wait for.
    void chaos() {
        for (;;) {
            bool any = false;
            for (auto& w : workers) any = any || !w.done();
            if (!any) return;
            pause();
            auto& victim =
                workers[static_cast<std::size_t>(pick(0, static_cast<int>(workers.size()) - 1))];
            const int how = pick(0, 6);
            trace("chaos", how);
            switch (how) {
                case 0: {
                    const int item = next_item++;
                    try {
                        q.put_nowait(item);
                        put_ok.insert(item);
                    } catch (const queue_full&) {
                    }
                    break;
                }
                case 1:
                    ++ev_sets;
                    ev.set();
                    break;
                case 2:
                    if (cv.try_lock()) {
                        ++tokens;
                        ++produced;
                        cv.notify();
                        cv.unlock();
                    }
                    break;
                case 3:
                    if (m.try_lock()) {
                        m.unlock();  // hands the mutex to the next waiter, then the cancel
                    }
                    break;
                case 4:
                    if (sem.try_acquire()) sem.release();
                    break;
                case 5:
                    if (!pr_set && chance(30)) {
                        pr_value = pick(1, 1000);
                        pr_set = true;
                        pr->set_value(pr_value);
                    }
                    break;
                default:
                    break;
            }
            if (chance(60)) {
                trace("cancel", static_cast<int>(&victim - workers.data()));
                victim.cancel("chaos");
            }
        }
    }
};

// Runs one seed; returns the invariants that broke (empty: it passed) and whether the
// program is stuck (then the hub cannot be used for more seeds).
struct outcome_of_seed {
    std::vector<std::string> failures;
    bool stuck = false;
};

outcome_of_seed run_seed(std::uint64_t seed, executor& threads) {
    outcome_of_seed out;
    auto w = std::make_unique<world>(seed, threads);
    const int n_workers = w->pick(2, 6);
    for (int i = 0; i < n_workers; ++i) {
        const int actions = w->pick(3, 12);
        const bool resilient = w->chance(50);
        spawn_options o;
        o.name = "worker-" + std::to_string(i);
        o.eager = w->chance(20);
        w->workers.push_back(
            spawn(o, [wp = w.get(), actions, resilient] { wp->worker(actions, resilient); }));
    }
    auto chaos = spawn(spawn_options{"chaos"}, [wp = w.get()] { wp->chaos(); });
    w->all.push_back(chaos.share_any());
    for (auto& t : w->workers) w->all.push_back(t.share_any());

    // The watchdog: every task must end well within this.
    const auto watchdog = clock_type::now() + 5s;
    auto finished = [&] {
        for (auto& t : w->all)
            if (!t.done()) return false;
        return true;
    };
    while (!finished() && clock_type::now() < watchdog) {
        std::vector<any_task> left;
        for (auto& t : w->all)
            if (!t.done()) left.push_back(t.share_any());
        // Waits for them one at a time, bounded by the watchdog.
        std::vector<task<void>> waiter;
        waiter.push_back(spawn([&left] {
            for (auto& t : left) t.wait();
        }));
        (void)greenfiber::wait(waiter, watchdog - clock_type::now());
        if (!waiter[0].done()) {
            waiter[0].cancel();
            (void)greenfiber::wait(waiter, 1s);
        }
    }
    if (!finished()) {
        std::ostringstream os;
        os << "a task did not end within the watchdog bound:";
        for (auto& t : w->all)
            if (!t.done()) os << " '" << t.name() << "' (" << to_string(t.status()) << ")";
        out.failures.push_back(os.str());
        // Last try: cancel everything left and give it a second.
        for (auto& t : w->all) t.cancel("watchdog");
        const auto grace = clock_type::now() + 1s;
        while (!finished() && clock_type::now() < grace) sleep(1ms);
        if (!finished()) {
            out.stuck = true;
            w.release();  // the stuck fibers still point into it
            return out;
        }
    }

    // The shared groups: their tasks ended already; joining collects their failures.
    for (auto& g : w->groups) {
        if (g->running() != 0) w->fail("task_group: a task still running at the end");
        try {
            g->join();
        } catch (const exception_group&) {
        }
    }
    w->groups.clear();

    // Conservation at the end.
    std::multiset<int> left_in_queue;
    while (!w->q.empty()) {
        left_in_queue.insert(w->q.get_nowait());
        w->q.task_done();
    }
    if (w->q.unfinished_tasks() != 0) w->fail("queue: unfinished_tasks() is not 0 at the end");
    if (w->rl.locked() || w->rl_depth != 0) w->fail("rlock: still locked at the end");
    std::multiset<int> accounted = w->got;
    accounted.insert(left_in_queue.begin(), left_in_queue.end());
    if (accounted != w->put_ok) {
        std::ostringstream os;
        os << "queue: items put " << w->put_ok.size() << ", got " << w->got.size() << ", left "
           << left_in_queue.size() << ": an item was lost or duplicated";
        w->fail(os.str());
    }
    if (w->q.qsize() != 0) w->fail("queue: qsize() is not 0 once drained");
    if (w->sem.value() != w->sem_units || w->sem_held != 0)
        w->fail("semaphore: " + std::to_string(w->sem.value()) + " units at the end, not " +
                std::to_string(w->sem_units));
    if (w->m.locked() || w->holders != 0) w->fail("mutex: still locked at the end");
    if (w->tokens != w->produced - w->consumed) w->fail("condition: tokens not conserved");
    if (w->workers_pool.running() != 0) w->fail("pool: running() is not 0 at the end");
    if (w->pool_running != 0) w->fail("pool: a task is still counted as running");
    if (w->cv.waiting() != 0) w->fail("condition: a waiter is left at the end");
    // Every failure a task raised is retrieved here, so that nothing is reported.
    for (auto& t : w->all) {
        if (t.done() && !t.cancelled()) (void)t.exception();
    }
    out.failures = std::move(w->failures);
    return out;
}

class Stress : public greenfiber::testing::io_checked {};

TEST_F(Stress, RandomProgramsKeepEveryInvariant) {
    thread_pool_executor threads(2);
    // What the hub reports: a task_group left by a cancellation before its join() reports
    // its failures (expected); anything else (an exception never retrieved) is a failure.
    std::vector<std::string> reports;
    report_handler previous = hub::current().set_exception_handler(
        [&reports](const failure_report& r) { reports.emplace_back(r.message); });
    report_handler previous_process = set_report_handler(
        [&reports](const failure_report& r) { reports.emplace_back(r.message); });
    std::uint64_t first = env_or("GREENFIBER_STRESS_FIRST", 1);
    std::uint64_t count = env_or("GREENFIBER_STRESS_SEEDS", default_seeds);
    if (const std::uint64_t one = env_or("GREENFIBER_STRESS_SEED", 0); one != 0) {
        first = one;
        count = 1;
    }
    const std::uint64_t repeat = std::max<std::uint64_t>(1, env_or("GREENFIBER_STRESS_REPEAT", 1));
    int failed = 0;
    for (std::uint64_t run = 0; run < count * repeat; ++run) {
        const std::uint64_t seed = first + run / repeat;
        outcome_of_seed r = run_seed(seed, threads);
        for (const std::string& m : reports) {
            if (m.find("task_group destroyed without join()") == std::string::npos)
                r.failures.push_back("the hub reported: " + m);
        }
        reports.clear();
        if (!r.stuck) {
            // Every list of the thread is empty once the seed's program has ended.
            if (!all_tasks().empty()) r.failures.push_back("all_tasks() is not empty at the end");
            if (const std::string left = greenfiber::testing::leftover_lists(); !left.empty())
                r.failures.push_back("the thread's lists are not empty at the end: " + left);
        }
        if (!r.failures.empty()) {
            ++failed;
            std::ostringstream os;
            os << "seed " << seed << " (replay: GREENFIBER_STRESS_SEED=" << seed << "):";
            for (const auto& f : r.failures) os << "\n  " << f;
            ADD_FAILURE() << os.str();
        }
        if (r.stuck) {
            ADD_FAILURE() << "seed " << seed << " left fibers stuck; stopping here";
            std::_Exit(1);  // a stuck hub cannot be torn down cleanly
        }
        if (failed >= 10) {
            ADD_FAILURE() << "stopping after 10 failing seeds";
            break;
        }
    }
    threads.shutdown(5s);
    hub::current().set_exception_handler(std::move(previous));
    set_report_handler(std::move(previous_process));
}

}  // namespace
