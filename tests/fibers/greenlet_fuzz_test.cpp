// A structured fuzz test of the greenlet API against a model of Python's greenlet.
//
// From a seed, greenlets run a random program one operation at a time: switch_to and
// throw_in (to suspended, unstarted, dead and current targets), returning and raising
// (test errors and greenlet_exit), creating children with default or explicit parents,
// set_parent (cycles and the main greenlet must be refused), and dropping the last handle
// (which kills a suspended greenlet, frees an unstarted one without running it, and frees a
// dead parent with its last child). The model — Python greenlet's rules (reference §1.1, G01-G52) —
// predicts which greenlet runs next and what it receives; every greenlet checks what it really
// receives against that prediction, and every held handle's started()/dead()/parent()
// against the model. At the end every greenlet is killed or dead and dropped, and the
// fixture checks that none leaked.
//
// The default suite runs a bounded number of seeds (about ten seconds at most). For a long
// run or to replay one seed:
//   GREENFIBER_FUZZ_SEEDS=200000 build/tests/fibers_greenlet_fuzz_test
//   GREENFIBER_FUZZ_SEED=1234 build/tests/fibers_greenlet_fuzz_test    # with its trace
// A failure prints its seed, the operations that led to it and what differed.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "greenfiber/error.hpp"
#include "greenfiber/greenlet.hpp"
#include "greenfiber/value.hpp"
#include "leak_check.hpp"

using namespace greenfiber;

namespace {

// The error greenlets raise on purpose; `id` says which operation raised it.
struct test_error : std::runtime_error {
    explicit test_error(int i) : std::runtime_error("test_error " + std::to_string(i)), id(i) {}
    int id;
};

#if defined(__SANITIZE_ADDRESS__)
constexpr std::uint64_t default_seeds = 5000;
#else
constexpr std::uint64_t default_seeds = 30000;
#endif
constexpr auto time_budget = std::chrono::seconds(8);

std::uint64_t env_or(const char* name, std::uint64_t fallback) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return fallback;
    return std::strtoull(v, nullptr, 10);
}

// What a greenlet receives when it gets control: the argument it starts with, the result
// of its pending switch, an exception raised at that switch, or the end of its own
// operation (set_parent, a drop, a refused call).
struct payload {
    enum kind_t { empty, integer, exit_value, thrown_error, thrown_exit, start, done, refused };
    kind_t kind = empty;
    int n = 0;  // the integer, or the test_error's id
    bool is_start = false;

    friend bool operator==(const payload& a, const payload& b) {
        return a.kind == b.kind && a.n == b.n && a.is_start == b.is_start;
    }
    std::string str() const {
        std::string s = is_start ? "start(" : "";
        switch (kind) {
            case empty:
                s += "()";
                break;
            case integer:
                s += std::to_string(n);
                break;
            case exit_value:
                s += "greenlet_exit as a value";
                break;
            case thrown_error:
                s += "raised test_error " + std::to_string(n);
                break;
            case thrown_exit:
                s += "raised greenlet_exit";
                break;
            case start:
                s += "start";
                break;
            case done:
                s += "done";
                break;
            case refused:
                s += "refused";
                break;
        }
        if (is_start) s += ")";
        return s;
    }
};

payload of_value(value& v) {
    payload p;
    if (v.empty()) {
        p.kind = payload::empty;
    } else if (v.is<int>()) {
        p.kind = payload::integer;
        p.n = v.get<int>();
    } else if (v.is<greenlet_exit>()) {
        p.kind = payload::exit_value;
    } else {
        p.kind = payload::refused;  // a type the program never sends
        p.n = -1;
    }
    return p;
}

enum class op_kind {
    to_parent,
    switch_to,
    throw_error,
    throw_exit,
    ret,
    raise_error,
    raise_exit,
    create,
    set_parent,
    drop,
    stop
};

// The model of one greenlet.
struct model_greenlet {
    enum state_t { not_started, suspended, running, dead } state = not_started;
    int parent = 0;
    bool slot = true;      // the program holds its handle
    bool freed = false;    // no reference is left: gone
    int holding = -1;      // the greenlet its switch call holds a handle to (-1: none)
    bool in_kill = false;  // being killed by a drop
};

class fuzz {
  public:
    explicit fuzz(std::uint64_t seed)
        : seed_(seed), rng_(seed * 0x2545F4914F6CDD1Dull + 7), budget_(pick(5, 120)) {
        slots_.reserve(max_greenlets);
        slots_.push_back(greenlet::current());
        model_.push_back({});
        model_[0].state = model_greenlet::running;
        model_[0].parent = -1;
    }

    // Runs the program in the calling (main) greenlet. Returns what went wrong.
    std::string run() {
        auto previous = set_report_handler([this](const failure_report& r) {
            ++reports_;
            trace("report: " + std::string(r.message));
        });
        loop(0);
        // Everything left is dead or not started: drop the lot.
        for (auto& s : slots_) s = greenlet();
        set_report_handler(std::move(previous));
        if (failure_.empty() && reports_ != expected_reports_)
            failure_ = "reports: " + std::to_string(reports_) + ", expected " +
                       std::to_string(expected_reports_);
        if (failure_.empty()) return {};
        std::ostringstream os;
        os << "seed " << seed_ << " (replay: GREENFIBER_FUZZ_SEED=" << seed_ << "): " << failure_
           << "\ntrace:\n"
           << log_.str();
        return os.str();
    }

    bool verbose = false;

  private:
    static constexpr std::size_t max_greenlets = 24;

    int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
    bool chance(int percent) { return pick(0, 99) < percent; }

    void trace(const std::string& s) {
        log_ << "  " << s << "\n";
        if (verbose) std::fprintf(stderr, "%s\n", s.c_str());
    }
    void diverge(const std::string& what) {
        if (failure_.empty()) failure_ = what;
        trace("DIVERGED: " + what);
        broken_ = true;
    }

    // ---- the real side ----

    value body(int self, value arg) {
        observe(self, [&] {
            payload p = of_value(arg);
            p.is_start = true;
            return p;
        }());
        return loop(self);
    }

    // Runs operations while this greenlet is current; returns (or throws) when it ends.
    value loop(int self) {
        for (;;) {
            const op o = next(self);
            switch (o.kind) {
                case op_kind::switch_to:
                case op_kind::throw_error:
                case op_kind::throw_exit: {
                    // Like Python's frame, the call holds a reference to its target.
                    greenlet target = slots_[static_cast<std::size_t>(o.a)].share();
                    payload got;
                    try {
                        value r = o.kind == op_kind::switch_to ? target.switch_to(make_value(o))
                                  : o.kind == op_kind::throw_error
                                      ? target.throw_in(test_error(o.n))
                                      : target.throw_in();
                        got = of_value(r);
                    } catch (const test_error& e) {
                        got = {payload::thrown_error, e.id, false};
                    } catch (const greenlet_exit&) {
                        got = {payload::thrown_exit, 0, false};
                    } catch (const error& e) {
                        diverge(std::string("a switch raised greenfiber::error: ") + e.what());
                        got = {payload::refused, 0, false};
                    }
                    observe(self, got);
                    release_held(self);
                    target = greenlet();
                    observe(self, {payload::done, 0, false});
                    break;
                }
                case op_kind::to_parent: {
                    payload got;
                    try {
                        value r = greenlet::switch_to_parent(make_value(o));
                        got = of_value(r);
                    } catch (const test_error& e) {
                        got = {payload::thrown_error, e.id, false};
                    } catch (const greenlet_exit&) {
                        got = {payload::thrown_exit, 0, false};
                    } catch (const error&) {
                        got = {payload::refused, 0, false};  // from the main greenlet
                    }
                    observe(self, got);
                    break;
                }
                case op_kind::ret:
                    if (o.n == 0) return {};
                    return value(o.n);
                case op_kind::raise_error:
                    throw test_error(o.n);
                case op_kind::raise_exit:
                    throw greenlet_exit("raised by the program");
                case op_kind::create: {
                    const int idx = static_cast<int>(slots_.size());
                    auto fn = [this, idx](value v) { return body(idx, std::move(v)); };
                    if (o.b < 0) {
                        slots_.emplace_back(fn);
                    } else {
                        slots_.emplace_back(fn, slots_[static_cast<std::size_t>(o.b)]);
                    }
                    observe(self, {payload::done, 0, false});
                    break;
                }
                case op_kind::set_parent: {
                    bool ok = true;
                    try {
                        slots_[static_cast<std::size_t>(o.a)].set_parent(
                            slots_[static_cast<std::size_t>(o.b)]);
                    } catch (const error&) {
                        ok = false;
                    }
                    observe(self, {ok ? payload::done : payload::refused, 0, false});
                    break;
                }
                case op_kind::drop:
                    slots_[static_cast<std::size_t>(o.a)] = greenlet();
                    observe(self, {payload::done, 0, false});
                    break;
                case op_kind::stop:
                    return {};
            }
        }
    }

    struct op {
        op_kind kind;
        int a = -1;  // target slot
        int b = -1;  // parent slot (-1: the default)
        int n = 0;   // the value sent (0: empty) or the error id
    };

    static value make_value(const op& o) { return o.n == 0 ? value() : value(o.n); }

    // ---- the model side ----

    int cur_ = 0;         // the greenlet the model says is running
    int expect_who_ = 0;  // who gets control next, and what it receives
    payload expect_;
    bool have_expect_ = false;
    int killer_ = -1;  // the greenlet whose drop is killing another

    bool live_slot(int i) const { return slots_held(i); }
    bool slots_held(int i) const { return model_[static_cast<std::size_t>(i)].slot; }
    model_greenlet& m(int i) { return model_[static_cast<std::size_t>(i)]; }

    // Called by the greenlet that just got control: checks what it received.
    void observe(int self, payload p) {
        if (broken_) return;
        if (!have_expect_) {
            diverge("greenlet " + std::to_string(self) + " got control unexpectedly with " +
                    p.str());
            return;
        }
        if (self != expect_who_ || !(p == expect_)) {
            diverge("expected greenlet " + std::to_string(expect_who_) + " to get " +
                    expect_.str() + ", but greenlet " + std::to_string(self) + " got " + p.str());
            return;
        }
        trace("g" + std::to_string(self) + " <- " + p.str());
        have_expect_ = false;
        check_handles(self);
    }

    // Every held handle agrees with the model.
    void check_handles(int self) {
        if (!(greenlet::current() == slots_[static_cast<std::size_t>(self)]) && m(self).slot) {
            diverge("greenlet::current() is not greenlet " + std::to_string(self));
            return;
        }
        for (std::size_t i = 1; i < slots_.size(); ++i) {
            const auto& g = model_[i];
            if (!g.slot) continue;
            const greenlet& h = slots_[i];
            const bool started = g.state != model_greenlet::not_started;
            const bool dead = g.state == model_greenlet::dead;
            if (h.started() != started || h.dead() != dead) {
                diverge("greenlet " + std::to_string(i) + " is " + h.state_string() +
                        ", the model says " +
                        (dead      ? "dead"
                         : started ? "alive"
                                   : "not started"));
                return;
            }
            if (m(g.parent).slot && !(h.parent() == slots_[static_cast<std::size_t>(g.parent)])) {
                diverge("greenlet " + std::to_string(i) + "'s parent is not greenlet " +
                        std::to_string(g.parent));
                return;
            }
        }
    }

    void expect(int who, payload p) {
        expect_who_ = who;
        expect_ = p;
        have_expect_ = true;
    }

    // References to greenlet i: the program's handle and its children's parent links.
    int refs(int i) {
        int r = m(i).slot ? 1 : 0;
        for (std::size_t j = 0; j < model_.size(); ++j) {
            if (model_[j].freed) continue;
            if (j != 0 && model_[j].parent == i) ++r;
            if (model_[j].holding == i) ++r;
        }
        return r;
    }

    // Drops one reference to i and frees it at zero. The program only drops handles in ways
    // where that frees dead or unstarted greenlets (a kill is modelled by drop()), so
    // anything else is a flaw of the model.
    void release(int i) {
        if (i <= 0 || m(i).freed || refs(i) > 0) return;
        if (m(i).state != model_greenlet::dead && m(i).state != model_greenlet::not_started) {
            diverge("model: greenlet " + std::to_string(i) + " would be freed while alive");
            return;
        }
        free_greenlet(i);
    }
    void free_greenlet(int i) {
        m(i).freed = true;
        release(m(i).parent);
    }

    // The running greenlet drops the handle its switch call held.
    void release_held(int self) {
        if (broken_) return;
        const int t = m(self).holding;
        m(self).holding = -1;
        if (t >= 0) release(t);
        expect(self, {payload::done, 0, false});
    }

    // The first greenlet at or above i that is not dead.
    int live_ancestor(int i) {
        while (m(i).state == model_greenlet::dead) i = m(i).parent;
        return i;
    }

    // The model of delivering a value (`v`) or an exception to the first live greenlet
    // from `to` up (switch to a dead target, a return, an escape).
    void deliver_value(int to, payload v) {
        const int x = live_ancestor(to);
        if (x == cur_) {
            expect(x, v);
            return;
        }
        if (m(x).state == model_greenlet::not_started) {
            m(x).state = model_greenlet::running;
            v.is_start = true;
        } else {
            m(x).state = model_greenlet::running;
        }
        cur_ = x;
        expect(x, v);
    }
    void deliver_exception(int to, payload e) {
        int x = live_ancestor(to);
        while (x != cur_ && m(x).state == model_greenlet::not_started) {
            // An unstarted greenlet receiving an exception dies without running.
            m(x).state = model_greenlet::dead;
            x = live_ancestor(m(x).parent);
        }
        if (x != cur_) m(x).state = model_greenlet::running;
        cur_ = x;
        expect(x, e);
    }
    // A greenlet_exit leaving a greenlet (its death, or a throw passing a dead one): like an
    // exception it kills every unstarted greenlet it meets, and it arrives as a value.
    void deliver_exit(int to) {
        int x = live_ancestor(to);
        while (x != cur_ && m(x).state == model_greenlet::not_started) {
            m(x).state = model_greenlet::dead;
            x = live_ancestor(m(x).parent);
        }
        if (x != cur_) m(x).state = model_greenlet::running;
        cur_ = x;
        expect(x, {payload::exit_value, 0, false});
    }
    // Greenlet `d` (current) ends with a value or an exception.
    void escape(int d, payload what) {
        m(d).state = model_greenlet::dead;
        cur_ = -1;  // nobody runs until it is delivered
        if (what.kind == payload::thrown_error) {
            deliver_exception(m(d).parent, what);
        } else if (what.kind == payload::thrown_exit) {
            deliver_exit(m(d).parent);
        } else {
            deliver_value(m(d).parent, what);
        }
    }

    // Chooses the next operation of the running greenlet `self` and moves the model on.
    op next(int self) {
        if (broken_) return {self == 0 ? op_kind::stop : op_kind::raise_exit};
        if (have_expect_ || cur_ != self) {
            diverge("greenlet " + std::to_string(self) + " runs, but the model says greenlet " +
                    std::to_string(cur_));
            return {self == 0 ? op_kind::stop : op_kind::raise_exit};
        }
        const int seq = ++seq_;
        // A greenlet being killed, or any greenlet once the budget is spent, ends.
        if (self != 0 && (m(self).in_kill || ops_ >= budget_)) return end_op(self, seq);
        if (self == 0 && ops_ >= budget_) return finish_op(seq);
        ++ops_;
        for (;;) {
            const int what = pick(0, 99);
            if (what < 35) {  // switch_to
                const int t = any_slot();
                op o{op_kind::switch_to, t, -1, chance(30) ? 0 : seq};
                trace("g" + std::to_string(self) + " switch_to g" + std::to_string(t) + " " +
                      std::to_string(o.n));
                do_switch(self, t, o.n == 0 ? payload{} : payload{payload::integer, o.n, false});
                return o;
            }
            if (what < 40) {  // switch_to_parent: like switch_to, holding no handle
                op o{op_kind::to_parent, -1, -1, chance(30) ? 0 : seq};
                trace("g" + std::to_string(self) + " switch_to_parent " + std::to_string(o.n));
                if (self == 0) {
                    expect(self, {payload::refused, 0, false});
                } else {
                    do_switch(self, m(self).parent,
                              o.n == 0 ? payload{} : payload{payload::integer, o.n, false});
                    m(self).holding = -1;
                }
                return o;
            }
            if (what < 50) {  // throw_in
                const int t = any_slot();
                if (t == self && !chance(20)) continue;
                const bool exit = chance(40);
                op o{exit ? op_kind::throw_exit : op_kind::throw_error, t, -1, seq};
                trace("g" + std::to_string(self) +
                      (exit ? " throw_in(exit) g" : " throw_in(error) g") + std::to_string(t));
                do_throw(self, t,
                         exit ? payload{payload::thrown_exit, 0, false}
                              : payload{payload::thrown_error, seq, false});
                return o;
            }
            if (what < 59 && self != 0) return end_op(self, seq);
            if (what < 72) {  // create
                if (slots_.size() >= max_greenlets) continue;
                const int p = chance(50) ? -1 : any_slot();
                const int idx = static_cast<int>(model_.size());
                model_.push_back({});
                m(idx).parent = p < 0 ? self : p;
                trace("g" + std::to_string(self) + " creates g" + std::to_string(idx) +
                      " parent g" + std::to_string(m(idx).parent));
                expect(self, {payload::done, 0, false});
                return {op_kind::create, -1, p, 0};
            }
            if (what < 84) {  // set_parent
                const int k = chance(5) ? 0 : any_slot();
                const int p = any_slot();
                const bool refuse = k == 0 || is_ancestor_or_self(k, p);
                trace("g" + std::to_string(self) + " set_parent(g" + std::to_string(k) + ", g" +
                      std::to_string(p) + ")" + (refuse ? " refused" : ""));
                if (refuse) {
                    expect(self, {payload::refused, 0, false});
                } else {
                    const int old = m(k).parent;
                    m(k).parent = p;
                    release(old);
                    expect(self, {payload::done, 0, false});
                }
                return {op_kind::set_parent, k, p, 0};
            }
            // drop: a dead greenlet, or one nothing else refers to (a suspended one is then
            // killed; an unstarted one is freed without running).
            const int k = any_slot();
            if (k == 0 || k == self) continue;
            if (m(k).state != model_greenlet::dead && refs(k) != 1) continue;
            trace("g" + std::to_string(self) + " drops g" + std::to_string(k));
            m(k).slot = false;
            if (m(k).state == model_greenlet::suspended) {
                killer_ = self;
                m(self).state = model_greenlet::suspended;
                m(k).in_kill = true;
                m(k).state = model_greenlet::running;
                cur_ = k;
                expect(k, {payload::thrown_exit, 0, false});
            } else {
                release(k);
                expect(self, {payload::done, 0, false});
            }
            return {op_kind::drop, k, -1, 0};
        }
    }

    bool is_ancestor_or_self(int k, int p) {
        for (int x = p; x >= 0; x = m(x).parent)
            if (x == k) return true;
        return false;
    }

    int any_slot() {
        for (;;) {
            const int i = pick(0, static_cast<int>(slots_.size()) - 1);
            if (m(i).slot) return i;
        }
    }

    void do_switch(int self, int t, payload v) {
        m(self).holding = t;
        if (t == self) {
            expect(self, v);
            return;
        }
        m(self).state = model_greenlet::suspended;
        cur_ = -1;
        deliver_value(t, v);
    }

    void do_throw(int self, int t, payload e) {
        m(self).holding = t;
        if (t == self) {
            expect(self, e);
            return;
        }
        m(self).state = model_greenlet::suspended;
        cur_ = -1;
        switch (m(t).state) {
            case model_greenlet::not_started:
                // It dies without running; the exception leaves it like an escape.
                m(t).state = model_greenlet::running;
                escape(t, e);
                break;
            case model_greenlet::suspended:
                m(t).state = model_greenlet::running;
                cur_ = t;
                expect(t, e);
                break;
            default:  // dead: up the parent chain, greenlet_exit as a value
                if (e.kind == payload::thrown_exit) {
                    deliver_exit(t);
                } else {
                    deliver_exception(t, e);
                }
                break;
        }
    }

    // How a non-main greenlet ends: a return (with or without a value) or a raise.
    op end_op(int self, int seq) {
        const int how = pick(0, 3);
        if (m(self).in_kill) {
            // A killed greenlet's end goes to its killer, which ignores it; an exception is
            // reported.
            m(self).in_kill = false;
            m(self).state = model_greenlet::dead;
            trace("g" + std::to_string(self) + " ends its kill " + std::to_string(how));
            if (how == 2) ++expected_reports_;
            free_greenlet(self);
            const int c = std::exchange(killer_, -1);
            m(c).state = model_greenlet::running;
            cur_ = c;
            expect(c, {payload::done, 0, false});
        } else {
            trace("g" + std::to_string(self) + " ends " + std::to_string(how));
            escape(self, how == 0   ? payload{}
                         : how == 1 ? payload{payload::integer, seq, false}
                         : how == 2 ? payload{payload::thrown_error, seq, false}
                                    : payload{payload::thrown_exit, 0, false});
        }
        switch (how) {
            case 0:
                return {op_kind::ret, -1, -1, 0};
            case 1:
                return {op_kind::ret, -1, -1, seq};
            case 2:
                return {op_kind::raise_error, -1, -1, seq};
            default:
                return {op_kind::raise_exit};
        }
    }

    // The main greenlet's last operations: kill every suspended greenlet, then stop.
    op finish_op(int seq) {
        for (std::size_t i = 1; i < model_.size(); ++i) {
            if (model_[i].state != model_greenlet::suspended || !model_[i].slot) continue;
            const int t = static_cast<int>(i);
            trace("g0 finishes g" + std::to_string(t));
            do_throw(0, t, {payload::thrown_exit, 0, false});
            return {op_kind::throw_exit, t, -1, seq};
        }
        for (std::size_t i = 1; i < model_.size(); ++i) {
            if (model_[i].state == model_greenlet::suspended)
                diverge("model: a suspended greenlet without a handle at the end");
        }
        trace("g0 stops");
        return {op_kind::stop};
    }

    std::uint64_t seed_;
    std::mt19937_64 rng_;
    int budget_;
    int ops_ = 0;
    int seq_ = 0;
    std::vector<greenlet> slots_;
    std::vector<model_greenlet> model_;
    std::ostringstream log_;
    std::string failure_;
    bool broken_ = false;
    int reports_ = 0;
    int expected_reports_ = 0;
};

class GreenletFuzz : public greenfiber::testing::leak_checked {};

TEST_F(GreenletFuzz, RandomProgramsFollowPythonGreenletSemantics) {
    std::uint64_t first = env_or("GREENFIBER_FUZZ_FIRST", 1);
    std::uint64_t count = env_or("GREENFIBER_FUZZ_SEEDS", default_seeds);
    const std::uint64_t one = env_or("GREENFIBER_FUZZ_SEED", 0);
    if (one != 0) {
        first = one;
        count = 1;
    }
    const bool bounded = std::getenv("GREENFIBER_FUZZ_SEEDS") == nullptr && one == 0;
    const auto stop_at = std::chrono::steady_clock::now() + time_budget;
    int failed = 0;
    std::uint64_t ran = 0;
    for (std::uint64_t seed = first; seed < first + count; ++seed) {
        if (bounded && std::chrono::steady_clock::now() > stop_at) break;
        const std::size_t live = live_greenlets();
        std::string what;
        {
            fuzz f(seed);
            f.verbose = one != 0;
            what = f.run();
        }
        ++ran;
        if (what.empty() && live_greenlets() != live)
            what = "seed " + std::to_string(seed) + ": " + std::to_string(live_greenlets() - live) +
                   " greenlet(s) leaked";
        if (!what.empty()) {
            ADD_FAILURE() << what;
            if (++failed >= 5) break;
        }
    }
    EXPECT_GT(ran, 0u);
}

}  // namespace
