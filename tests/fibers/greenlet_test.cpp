// greenlet.hpp: the semantics of Python's greenlet, ported from reference §1.2 (G01-G66).
// Each test names the behaviour it shows; the comment gives its G-number. G65/G66 (generators
// on switch) live in generator_test.cpp.

#include <greenfiber/greenlet.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <greenfiber/error.hpp>
#include <greenfiber/stack.hpp>
#include <greenfiber/value.hpp>

#include "leak_check.hpp"

namespace {

using greenfiber::error;
using greenfiber::failure_report;
using greenfiber::greenlet;
using greenfiber::greenlet_exit;
using greenfiber::report_handler;
using greenfiber::trace_event;
using greenfiber::value;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

struct some_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct key_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct index_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

greenlet::options named(std::string name, std::size_t stack_size = 0) {
    greenlet::options o;
    o.name = std::move(name);
    o.stack_size = stack_size;
    return o;
}

// greenlet's `getcurrent().parent.switch(v)`. The handle to the current greenlet is dropped
// before the switch, so that a suspended greenlet holds no handle to itself (kill on drop).
value to_parent(value v = {}) {
    greenlet p = greenlet::current().parent();
    return p.switch_to(std::move(v));
}

// Appends `what` to `out` when destroyed: shows that a destructor on a fiber stack ran.
struct on_destroy {
    std::vector<std::string>& out;
    std::string what;
    ~on_destroy() { out.push_back(what); }
};

// greenlet's `fmain(seen)` (test_greenlet.py): waits in the parent, records the type of any
// exception arriving there and re-raises it; raises some_error when resumed normally.
void fmain(std::vector<std::string>& seen) {
    try {
        (void)to_parent();
    } catch (const some_error&) {
        seen.push_back("some_error");
        throw;
    } catch (const key_error&) {
        seen.push_back("key_error");
        throw;
    } catch (const greenlet_exit&) {
        seen.push_back("greenlet_exit");
        throw;
    } catch (...) {
        seen.push_back("other");
        throw;
    }
    throw some_error("raised by fmain");
}

std::string error_message(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const error& e) {
        return e.what();
    }
    return "(no greenfiber::error was thrown)";
}

// Installs a report handler for the scope and restores the previous one.
class report_scope {
  public:
    explicit report_scope(report_handler h) : prev_(greenfiber::set_report_handler(std::move(h))) {}
    ~report_scope() { greenfiber::set_report_handler(std::move(prev_)); }
    report_scope(const report_scope&) = delete;
    report_scope& operator=(const report_scope&) = delete;

  private:
    report_handler prev_;
};

// Installs a trace hook for the scope and restores the previous one.
class trace_scope {
  public:
    explicit trace_scope(greenfiber::trace_function fn)
        : prev_(greenfiber::settrace(std::move(fn))) {}
    ~trace_scope() { greenfiber::settrace(std::move(prev_)); }
    trace_scope(const trace_scope&) = delete;
    trace_scope& operator=(const trace_scope&) = delete;

  private:
    greenfiber::trace_function prev_;
};

std::string who(const greenlet& g) {
    return g.is_main() ? "main" : g.name();
}

using trace_record = std::tuple<std::string, std::string, std::string>;

greenfiber::trace_function recorder(std::vector<trace_record>& events) {
    return [&events](trace_event e, const greenlet& origin, const greenlet& target) {
        events.emplace_back(e == trace_event::switch_to ? "switch" : "throw", who(origin),
                            who(target));
    };
}

std::string thread_words(std::thread::id id) {
    std::ostringstream os;
    os << "thread " << id;
    return os.str();
}

class GreenletSwitch : public greenfiber::testing::leak_checked {};
class GreenletState : public greenfiber::testing::leak_checked {};
class GreenletExceptions : public greenfiber::testing::leak_checked {};
class GreenletParent : public greenfiber::testing::leak_checked {};
class GreenletThrow : public greenfiber::testing::leak_checked {};
class GreenletKill : public greenfiber::testing::leak_checked {};
class GreenletThreads : public greenfiber::testing::leak_checked {};
class GreenletExceptionState : public greenfiber::testing::leak_checked {};
class GreenletTrace : public greenfiber::testing::leak_checked {};

// ---------------------------------------------------------------------------------------
// Switching and value passing

// G01
TEST_F(GreenletSwitch, SwitchesAlternateBetweenMainAndChildInOrder) {
    std::vector<int> lst;
    greenlet g([&] {
        lst.push_back(1);
        (void)to_parent();
        lst.push_back(3);
    });
    lst.push_back(0);
    (void)g.switch_to();
    lst.push_back(2);
    (void)g.switch_to();
    lst.push_back(4);
    EXPECT_EQ(lst, (std::vector<int>{0, 1, 2, 3, 4}));
    EXPECT_TRUE(g.dead());
}

// G02: Python's two positional arguments become one std::pair argument.
TEST_F(GreenletSwitch, FirstSwitchArgumentBecomesTheFunctionsArgument) {
    using words = std::pair<std::string, std::string>;
    std::vector<std::string> printed;
    greenlet gr1;
    greenlet gr2;
    gr1 = greenlet([&](words xy) {
        value z = gr2.switch_to(xy.first + xy.second);
        printed.push_back(std::to_string(z.get<int>()));
    });
    gr2 = greenlet([&](std::string u) {
        printed.push_back(u);
        (void)gr1.switch_to(42);
    });
    value r = gr1.switch_to(words("hello", " world"));
    EXPECT_EQ(printed, (std::vector<std::string>{"hello world", "42"}));
    EXPECT_TRUE(r.empty());
    EXPECT_TRUE(gr1.dead());
    EXPECT_FALSE(gr2.dead());  // left suspended; killed when its handle goes
}

// G03: keyword arguments have no C++ form; a struct argument carries the named values.
TEST_F(GreenletSwitch, StructArgumentStartsFunctionAndItsResultComesBack) {
    struct ab {
        int a;
        int b;
    };
    std::vector<int> got;
    greenlet g([&](ab args) {
        got = {args.a, args.b};
        return 42;
    });
    value r = g.switch_to(ab{4, 2});
    EXPECT_EQ(got, (std::vector<int>{4, 2}));
    EXPECT_EQ(r.get<int>(), 42);
}

// G04: the dict of kwargs becomes a std::map, (args, kwargs) a std::pair of both.
TEST_F(GreenletSwitch, ValuesSwitchedToParentArriveAsResultsOfEachSwitch) {
    using kwargs = std::map<std::string, int>;
    using args_kwargs = std::pair<std::vector<int>, kwargs>;
    greenlet g([](int x) {
        (void)to_parent(kwargs{{"x", x}});
        (void)to_parent(args_kwargs{{2}, {{"x", 3}}});
        return std::pair<int, int>(x, x * x);
    });
    value r1 = g.switch_to(3);
    EXPECT_EQ(r1.get<kwargs>(), (kwargs{{"x", 3}}));
    value r2 = g.switch_to();
    EXPECT_EQ(r2.get<args_kwargs>(), (args_kwargs{{2}, {{"x", 3}}}));
    using two = std::pair<int, int>;
    value r3 = g.switch_to();
    EXPECT_EQ(r3.get<two>(), two(3, 9));
}

// G05
TEST_F(GreenletSwitch, SwitchWithoutArgumentDeliversAnEmptyValue) {
    bool was_empty = false;
    bool was_int = true;
    bool zero_is_empty = true;
    greenlet g([&] {
        value v = to_parent();
        was_empty = v.empty();
        was_int = v.is<int>();
        value z = to_parent();
        zero_is_empty = z.empty();
    });
    (void)g.switch_to();
    (void)g.switch_to();
    EXPECT_TRUE(was_empty);
    EXPECT_FALSE(was_int);
    (void)g.switch_to(0);  // an int 0 is a value, not "nothing"
    EXPECT_FALSE(zero_is_empty);
}

// G06
TEST_F(GreenletSwitch, ReturnValueOfFunctionIsTheResultOfTheFinalSwitch) {
    greenlet g([] {
        (void)to_parent();
        return std::string("meaning of life");
    });
    (void)g.switch_to();
    value r = g.switch_to();
    EXPECT_EQ(r.get<std::string>(), "meaning of life");
    EXPECT_FALSE(g.active());
    EXPECT_TRUE(g.dead());

    greenlet none([] {});  // Python's `return None`: a void function delivers an empty value
    EXPECT_TRUE(none.switch_to().empty());
}

// G07
TEST_F(GreenletSwitch, SwitchToDeadGreenletReturnsTheValueToTheCaller) {
    greenlet g([] {});
    (void)g.switch_to();
    ASSERT_TRUE(g.dead());
    EXPECT_TRUE(g.switch_to().empty());
    EXPECT_EQ(g.switch_to(7).get<int>(), 7);
    using two = std::pair<int, int>;
    EXPECT_EQ(g.switch_to(two(1, 2)).get<two>(), two(1, 2));
}

// G08
TEST_F(GreenletSwitch, SwitchToFinishedChildReturnsToTheChildsParent) {
    std::vector<std::string> got;
    greenlet outer([&] {
        greenlet inner([] { return 42; });
        value first = inner.switch_to();
        got.push_back(first.is<int>() ? std::to_string(first.get<int>()) : "?");
        value second = inner.switch_to();
        got.push_back(second.empty() ? "empty" : "not empty");
    });
    (void)outer.switch_to();
    EXPECT_EQ(got, (std::vector<std::string>{"42", "empty"}));
    EXPECT_TRUE(outer.dead());
}

// G09
TEST_F(GreenletSwitch, SwitchToCurrentGreenletReturnsTheValueAtOnce) {
    EXPECT_EQ(greenlet::current().switch_to(5).get<int>(), 5);
    EXPECT_TRUE(greenlet::current().switch_to().empty());
    std::vector<std::string> inside;
    greenlet g([&] {
        value five = greenlet::current().switch_to(5);
        inside.push_back(five.is<int>() ? std::to_string(five.get<int>()) : "?");
        inside.push_back(greenlet::current().switch_to().empty() ? "empty" : "?");
    });
    (void)g.switch_to();
    EXPECT_EQ(inside, (std::vector<std::string>{"5", "empty"}));
}

// G10
TEST_F(GreenletSwitch, ChildsDefaultParentIsTheGreenletThatCreatedIt) {
    std::string lst;
    greenlet g([&] {
        lst += 'a';
        greenlet f([&] {
            lst += 'b';
            (void)to_parent();
        });
        (void)f.switch_to();
        lst += 'c';
    });
    (void)g.switch_to();
    EXPECT_EQ(lst, "abc");
}

// G11
TEST_F(GreenletSwitch, TwoGreenletsOnTheSameFunctionRunIndependently) {
    std::vector<int> lst;
    auto f = [&] {
        lst.push_back(1);
        (void)to_parent();
        lst.push_back(1);
        lst.push_back(1);
    };
    greenlet g(f);
    greenlet h(f);
    (void)g.switch_to();
    EXPECT_EQ(lst.size(), 1u);
    (void)h.switch_to();
    EXPECT_EQ(lst.size(), 2u);
    (void)h.switch_to();
    EXPECT_EQ(lst.size(), 4u);
    EXPECT_TRUE(h.dead());
    (void)g.switch_to();
    EXPECT_EQ(lst.size(), 6u);
    EXPECT_TRUE(g.dead());
}

// G12
TEST_F(GreenletSwitch, SwitchToGreenletWithoutFunctionThrowsNoFunctionError) {
    greenlet g(named("runless"));
    EXPECT_THAT(error_message([&] { (void)g.switch_to(); }), HasSubstr("has no function"));
    EXPECT_THAT(error_message([&] { (void)g.switch_to(); }), HasSubstr("'runless'"));
}

// G12 (throw): Python raises AttributeError naming "run" for g.throw(X) too, not X.
TEST_F(GreenletSwitch, ThrowIntoGreenletWithoutFunctionThrowsNoFunctionError) {
    greenlet g(named("runless"));
    std::string what;
    try {
        (void)g.throw_in(some_error("thrown in"));
        what = "(nothing thrown)";
    } catch (const error& e) {
        what = e.what();
    } catch (const some_error& e) {
        what = std::string("some_error: ") + e.what();
    }
    EXPECT_THAT(what, HasSubstr("has no function"));
}

// G13
TEST_F(GreenletSwitch, StartedGreenletHasNoRunAndRunCannotBeSet) {
    std::vector<bool> has_run_inside;
    greenlet g;
    g = greenlet([&] {
        has_run_inside.push_back(g.has_run());
        (void)to_parent();
    });
    EXPECT_TRUE(g.has_run());
    (void)g.switch_to();
    EXPECT_EQ(has_run_inside, (std::vector<bool>{false}));
    EXPECT_FALSE(g.has_run());
    EXPECT_THAT(error_message([&] { g.set_run([] {}); }),
                HasSubstr("run cannot be set after the start"));
}

// G13 (the allowed half): a greenlet created without a function gets one before it starts.
TEST_F(GreenletSwitch, SetRunBeforeTheStartGivesTheGreenletItsFunction) {
    greenlet g(named("late"));
    EXPECT_FALSE(g.has_run());
    g.set_run([](int x) { return x * 2; });
    EXPECT_TRUE(g.has_run());
    g.set_run([](int x) { return x + 1; });  // replacing it before the start is allowed
    EXPECT_EQ(g.switch_to(20).get<int>(), 21);
    EXPECT_FALSE(g.has_run());
}

// G25's C++ form for a direct start: the first switch must pass what the function takes.
TEST_F(GreenletSwitch, StartWithTheWrongArgumentTypeThrowsNamingBothTypes) {
    greenlet g([](int x) { return x; }, named("typed"));
    const std::string msg = error_message([&] { (void)g.switch_to(std::string("text")); });
    EXPECT_THAT(msg, HasSubstr("'typed'"));
    EXPECT_THAT(msg, HasSubstr("int"));
    EXPECT_THAT(msg, HasSubstr("basic_string"));
    EXPECT_FALSE(g.started());
    EXPECT_EQ(g.switch_to(9).get<int>(), 9);  // still startable with the right type
}

TEST_F(GreenletSwitch, MoveOnlyValuesTravelThroughSwitches) {
    greenlet g([](std::unique_ptr<int> p) {
        value back = to_parent(std::make_unique<int>(*p + 1));
        return std::make_unique<int>(*back.take<std::unique_ptr<int>>() * 10);
    });
    value r = g.switch_to(std::make_unique<int>(1));
    EXPECT_EQ(*r.get<std::unique_ptr<int>>(), 2);
    value last = g.switch_to(std::make_unique<int>(4));
    EXPECT_EQ(*last.get<std::unique_ptr<int>>(), 40);
}

TEST_F(GreenletSwitch, SwitchToThenRunsTheActionOnceTheCallerIsParked) {
    struct ctx {
        greenlet* main;
        std::string main_state;
        bool target_current;
        greenlet* target;
    };
    greenlet main = greenlet::current();
    greenlet g([](int x) { return x + 1; });
    ctx c{&main, "", false, &g};
    auto action = [](void* p) noexcept {
        auto* c = static_cast<ctx*>(p);
        c->main_state = c->main->state_string();
        c->target_current = c->target->is_current();
    };
    value r = g.switch_to_then(value(1), action, &c);
    EXPECT_EQ(r.get<int>(), 2);
    EXPECT_EQ(c.main_state, "suspended active started main");
    EXPECT_TRUE(c.target_current);
}

TEST_F(GreenletSwitch, EmptyHandleCannotBeSwitchedTo) {
    greenlet empty;
    EXPECT_FALSE(empty);
    EXPECT_THAT(error_message([&] { (void)empty.switch_to(); }),
                HasSubstr("empty greenlet handle"));
    EXPECT_THAT(error_message([&] { (void)empty.throw_in(); }), HasSubstr("empty greenlet handle"));
}

// ---------------------------------------------------------------------------------------
// State and introspection

// G14
TEST_F(GreenletState, NotStartedGreenletIsPending) {
    greenlet g([] {});
    EXPECT_FALSE(g.dead());
    EXPECT_FALSE(g.active());
    EXPECT_FALSE(g.started());
    EXPECT_EQ(g.state_string(), "pending");
}

// G15
TEST_F(GreenletState, SuspendedGreenletIsActiveAndStarted) {
    greenlet g([] { (void)to_parent(); });
    (void)g.switch_to();
    EXPECT_FALSE(g.dead());
    EXPECT_TRUE(g.active());
    EXPECT_TRUE(g.started());
    EXPECT_FALSE(g.is_current());
    EXPECT_EQ(g.state_string(), "suspended active started");
}

// G16
TEST_F(GreenletState, CurrentGreenletIsCurrentActiveStarted) {
    std::vector<std::string> states;
    greenlet main = greenlet::current();
    greenlet g;
    g = greenlet([&] {
        states.push_back(g.state_string());
        states.push_back(main.state_string());
    });
    (void)g.switch_to();
    EXPECT_EQ(states, (std::vector<std::string>{"current active started",
                                                "suspended active started main"}));
    EXPECT_EQ(main.state_string(), "current active started main");
}

// G17
TEST_F(GreenletState, FinishedGreenletIsDead) {
    greenlet g([] {});
    (void)g.switch_to();
    EXPECT_TRUE(g.dead());
    EXPECT_FALSE(g.active());
    EXPECT_TRUE(g.started());
    EXPECT_EQ(g.state_string(), "dead");
}

// G18
TEST_F(GreenletState, CurrentIsTheMainGreenletAtTopLevelAndTheRunningOneInside) {
    greenlet main = greenlet::current();
    EXPECT_TRUE(main.is_main());
    EXPECT_FALSE(main.parent());
    EXPECT_FALSE(main.dead());
    EXPECT_TRUE(main.active());
    EXPECT_TRUE(main.is_current());
    EXPECT_EQ(main.thread_id(), std::this_thread::get_id());
    bool inside_is_g = false;
    bool inside_is_main = true;
    greenlet g;
    g = greenlet([&] {
        inside_is_g = greenlet::current() == g;
        inside_is_main = greenlet::current().is_main();
    });
    (void)g.switch_to();
    EXPECT_TRUE(inside_is_g);
    EXPECT_FALSE(inside_is_main);
    EXPECT_TRUE(greenlet::current() == main);
}

// G19
TEST_F(GreenletState, HandlesAreMoveOnlyAndShareNeverDuplicatesTheGreenlet) {
    static_assert(!std::is_copy_constructible_v<greenlet>);
    static_assert(!std::is_copy_assignable_v<greenlet>);
    static_assert(std::is_nothrow_move_constructible_v<greenlet>);
    std::vector<int> runs;
    greenlet a([&] {
        runs.push_back(1);
        (void)to_parent();
        runs.push_back(2);
    });
    greenlet b = a.share();
    EXPECT_TRUE(a == b);
    (void)a.switch_to();
    EXPECT_TRUE(b.active());
    (void)b.switch_to();  // the same fiber continues; nothing ran twice
    EXPECT_EQ(runs, (std::vector<int>{1, 2}));
    greenlet c = std::move(a);
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): a moved-from handle is empty
    EXPECT_TRUE(c == b);
}

TEST_F(GreenletState, DescribeNamesTheGreenlet) {
    greenlet named_g([] {}, named("worker"));
    greenlet plain([] {});
    EXPECT_EQ(named_g.name(), "worker");
    EXPECT_EQ(plain.name(), "");
    EXPECT_THAT(named_g.describe(), MatchesRegex("greenlet 'worker' \\(#[0-9]+\\)"));
    // greenlet.hpp documents the unnamed form as `greenlet #id`.
    EXPECT_THAT(plain.describe(), MatchesRegex("greenlet #[0-9]+"));
}

// greenlet.hpp: stack_size() is "0 for a main greenlet and before the first start".
TEST_F(GreenletState, StackSizeIsZeroForMainAndBeforeTheStart) {
    EXPECT_EQ(greenlet::current().stack_size(), 0u);
    greenlet g([] { (void)to_parent(); }, named("sized", 100000));
    EXPECT_EQ(g.stack_size(), 0u);
    (void)g.switch_to();
    EXPECT_GE(g.stack_size(), 100000u);
}

// ---------------------------------------------------------------------------------------
// Exceptions and the parent chain

// G20
TEST_F(GreenletExceptions, ExceptionEscapingTheFunctionIsRaisedInTheParent) {
    greenlet g([] { throw std::domain_error("division by zero"); });
    EXPECT_THROW((void)g.switch_to(), std::domain_error);
    EXPECT_TRUE(g.dead());
}

// G21
TEST_F(GreenletExceptions, ExceptionTravelsUpAReassignedParentChain) {
    std::vector<std::string> seen;
    greenlet g1([&] { fmain(seen); });
    greenlet g2([&] { fmain(seen); });
    (void)g1.switch_to();
    (void)g2.switch_to();
    g2.set_parent(g1);
    EXPECT_TRUE(seen.empty());
    EXPECT_THROW((void)g2.switch_to(), some_error);
    EXPECT_EQ(seen, (std::vector<std::string>{"some_error"}));
    EXPECT_TRUE(g2.switch_to().empty());
    EXPECT_EQ(seen, (std::vector<std::string>{"some_error"}));
    EXPECT_EQ(g2.switch_to(25).get<int>(), 25);
    EXPECT_EQ(seen, (std::vector<std::string>{"some_error"}));
}

// G22
TEST_F(GreenletExceptions, ExceptionFromAHelperChildIsRaisedInItsSuspendedParent) {
    std::vector<std::string> seen;
    greenlet g1([&] { fmain(seen); });
    (void)g1.switch_to();
    auto send_exception = [](const greenlet& g, std::exception_ptr exc) {
        greenlet crasher([](std::exception_ptr e) { std::rethrow_exception(e); }, g);
        (void)crasher.switch_to(exc);
    };
    EXPECT_THROW(send_exception(g1, std::make_exception_ptr(key_error("k"))), key_error);
    EXPECT_EQ(seen, (std::vector<std::string>{"key_error"}));
    EXPECT_TRUE(g1.dead());
}

// G23
TEST_F(GreenletExceptions, ParentThatCatchesTheChildsExceptionReturnsItsValue) {
    greenlet pp([]() -> std::string {
        try {
            (void)to_parent();
        } catch (const key_error&) {
            return "par caught";
        }
        return "par resumed normally";
    });
    (void)pp.switch_to();
    greenlet child([] { throw key_error("k"); }, pp);
    value r = child.switch_to();
    EXPECT_EQ(r.get<std::string>(), "par caught");
    EXPECT_TRUE(pp.dead());
    EXPECT_TRUE(child.dead());
}

// G24
TEST_F(GreenletExceptions, ReturnValueStartsAnUnstartedParent) {
    using two = std::pair<int, int>;
    greenlet p([](int x) { return two(x, 24); });
    greenlet c([] { return 42; }, p);
    EXPECT_EQ(c.switch_to().get<two>(), two(42, 24));
    EXPECT_TRUE(p.dead());
    EXPECT_TRUE(c.dead());
}

// G25
TEST_F(GreenletExceptions, UnstartedParentThatTakesNoArgumentRaisesErrorNamingBothGreenlets) {
    std::vector<std::string> ran;
    greenlet p([&] { ran.push_back("parent"); }, named("zero_arg_parent"));
    greenlet c([] { return 42; }, p, named("child_returning_42"));
    const std::string msg = error_message([&] { (void)c.switch_to(); });
    EXPECT_THAT(msg, HasSubstr("'zero_arg_parent'"));
    EXPECT_THAT(msg, HasSubstr("'child_returning_42'"));
    EXPECT_THAT(msg, HasSubstr("int"));
    EXPECT_TRUE(ran.empty());
    EXPECT_TRUE(c.dead());
}

// G26: the parent's start fails before its function runs (the child delivers nothing, the
// parent's function takes a std::string).
TEST_F(GreenletExceptions, ParentThatFailsToStartFailsEveryTimeAndChildDoesNotRerun) {
    std::vector<int> seen;
    greenlet parent([](std::string) {}, named("perverse_parent"));
    greenlet child([&] { seen.push_back(42); }, parent);
    EXPECT_THAT(error_message([&] { (void)child.switch_to(); }), HasSubstr("cannot start"));
    EXPECT_EQ(seen, (std::vector<int>{42}));
    EXPECT_THAT(error_message([&] { (void)child.switch_to(); }), HasSubstr("cannot start"));
    EXPECT_EQ(seen, (std::vector<int>{42}));
    EXPECT_FALSE(parent.started());
}

// G27
TEST_F(GreenletExceptions, SwitchToDeadChildStartsItsNewUnstartedParent) {
    std::vector<int> seen;
    greenlet child([&] { seen.push_back(42); });
    (void)child.switch_to();
    EXPECT_EQ(seen, (std::vector<int>{42}));
    greenlet p([&] { seen.push_back(24); });
    child.set_parent(p);
    EXPECT_TRUE(child.switch_to().empty());
    EXPECT_EQ(seen, (std::vector<int>{42, 24}));
    EXPECT_TRUE(p.dead());
}

// Found by tests/fibers/greenlet_diff: greenlet fails a start in the greenlet that switches.
// A live caller gets the "no function" error itself, without switching, even when the
// target's parent is another, suspended greenlet, and the target stays unstarted; a
// throw_in() likewise.
TEST_F(GreenletExceptions, StartWithoutFunctionFailsInTheLiveCallerNotInTheTargetsParent) {
    greenlet main = greenlet::current();
    std::vector<std::string> parent_saw;
    greenlet p([&] {
        try {
            (void)main.switch_to(std::string("p waits"));
        } catch (const error&) {
            parent_saw.push_back("error");
        }
    });
    EXPECT_EQ(p.switch_to().get<std::string>(), "p waits");
    greenlet runless(named("runless"));
    runless.set_parent(p);
    EXPECT_THAT(error_message([&] { (void)runless.switch_to(1); }), HasSubstr("has no function"));
    EXPECT_THAT(error_message([&] { (void)runless.throw_in(some_error("x")); }),
                HasSubstr("has no function"));
    EXPECT_TRUE(parent_saw.empty());
    EXPECT_FALSE(runless.started());
    // Up a dead greenlet's chain too: the caller is still the one switching.
    greenlet dead([] {});
    (void)dead.switch_to();
    dead.set_parent(runless);
    EXPECT_THAT(error_message([&] { (void)dead.switch_to(); }), HasSubstr("has no function"));
    EXPECT_TRUE(parent_saw.empty());
    EXPECT_TRUE(p.active());
}

// An exception object that counts its live copies.
struct counted_error {
    static inline int live = 0;
    counted_error() { ++live; }
    counted_error(const counted_error&) { ++live; }
    ~counted_error() { --live; }
};

// Found by tests/fibers/greenlet_diff under LeakSanitizer: when the start of the parent
// fails, its error replaces the exception a finishing child was handing on. That exception
// lived in the child's frame, which is never unwound: it must be released, not leaked.
TEST_F(GreenletExceptions, ExceptionReplacedByAFailedStartOfTheParentIsReleased) {
    {
        greenlet p(named("runless_parent"));
        greenlet c([] { throw counted_error(); }, p);
        EXPECT_THAT(error_message([&] { (void)c.switch_to(); }), HasSubstr("has no function"));
        EXPECT_TRUE(c.dead());
    }
    EXPECT_EQ(counted_error::live, 0);
}

// G28
TEST_F(GreenletExceptions, ParentWithoutFunctionSendsTheErrorToMain) {
    greenlet g1(named("runless_parent"));
    greenlet g2([] {}, g1);
    const std::string msg = error_message([&] { (void)g2.switch_to(); });
    EXPECT_THAT(msg, HasSubstr("has no function"));
    EXPECT_THAT(msg, HasSubstr("'runless_parent'"));
    EXPECT_TRUE(g2.dead());
}

// ---------------------------------------------------------------------------------------
// Greenlets parked by a scheduler (io/'s hub sets parked_for around its park; here a test
// plays the scheduler). Only the scheduler's switch_value() may resume one with a value;
// tests/io/greenlet_hub_test.cpp has the same rules with the real hub.

class GreenletParked : public greenfiber::testing::leak_checked {};

// Parks the calling greenlet "for `what`" and switches to `to`, as the hub's park does;
// returns what resumes it.
value fake_park(greenlet& to, const char* what) {
    greenfiber::detail::greenlet_impl* self = greenfiber::detail::access::impl(greenlet::current());
    self->parked_for = what;
    struct unpark {
        greenfiber::detail::greenlet_impl* g;
        ~unpark() { g->parked_for = nullptr; }
    } guard{self};
    return to.switch_to();
}

// The scheduler's wake-up.
value scheduler_resume(const greenlet& g, value v = {}) {
    return greenfiber::detail::switch_value(greenfiber::detail::access::impl(g), v);
}

TEST_F(GreenletParked, ValueSwitchIsRefusedNamingBothAndTheSchedulerStillResumesIt) {
    greenlet main = greenlet::current();
    std::vector<std::string> log;
    greenlet w(
        [&] {
            log.push_back("woken with " +
                          std::to_string(fake_park(main, "a test wait").get<int>()));
        },
        named("parked_one"));
    (void)w.switch_to();
    const std::string msg = error_message([&] { (void)w.switch_to(1); });
    EXPECT_THAT(msg, HasSubstr("the main greenlet"));
    EXPECT_THAT(msg, HasSubstr("'parked_one'"));
    EXPECT_THAT(msg, HasSubstr("waiting for a test wait"));
    bool ran = false;
    EXPECT_THAT(error_message([&] {
                    (void)w.switch_to_then(
                        value(2), [](void* p) noexcept { *static_cast<bool*>(p) = true; }, &ran);
                }),
                HasSubstr("parked by the hub"));
    EXPECT_FALSE(ran);
    EXPECT_TRUE(log.empty());
    EXPECT_TRUE(scheduler_resume(w, 3).empty());
    EXPECT_EQ(log, (std::vector<std::string>{"woken with 3"}));
    EXPECT_TRUE(w.dead());
}

// With a trace hook every switch takes the slow path: the rule and the scheduler's
// wake-up must hold there too.
TEST_F(GreenletParked, RuleHoldsOnTheSlowPathWithATraceHook) {
    greenlet main = greenlet::current();
    std::vector<trace_record> events;
    trace_scope tracing(recorder(events));
    greenlet w([&] { return fake_park(main, "a traced wait"); }, named("w"));
    (void)w.switch_to();
    EXPECT_THAT(error_message([&] { (void)w.switch_to(1); }), HasSubstr("a traced wait"));
    EXPECT_EQ(scheduler_resume(w, 4).get<int>(), 4);
    EXPECT_TRUE(w.dead());
    EXPECT_EQ(events, (std::vector<trace_record>{{"switch", "main", "w"},
                                                 {"switch", "w", "main"},
                                                 {"switch", "main", "w"},
                                                 {"switch", "w", "main"}}));
}

TEST_F(GreenletParked, ExceptionThrownInEndsTheWait) {
    greenlet main = greenlet::current();
    greenlet w([&]() -> std::string {
        try {
            (void)fake_park(main, "a test wait");
        } catch (const some_error& e) {
            return std::string("interrupted: ") + e.what();
        }
        return "not interrupted";
    });
    (void)w.switch_to();
    EXPECT_EQ(w.throw_in(some_error("stop")).get<std::string>(), "interrupted: stop");
}

TEST_F(GreenletParked, SwitchToParentAndSwitchesUpADeadChildsChainAreRefused) {
    greenlet main = greenlet::current();
    greenlet w([&] { (void)fake_park(main, "a test wait"); }, named("w"));
    greenlet dead_child([] {});
    (void)dead_child.switch_to();
    (void)w.switch_to();
    dead_child.set_parent(w);
    EXPECT_THAT(error_message([&] { (void)dead_child.switch_to(1); }), HasSubstr("'w'"));
    // throw_in(greenlet_exit) into a dead greenlet arrives as a value: refused as well.
    EXPECT_THAT(error_message([&] { (void)dead_child.throw_in(); }), HasSubstr("'w'"));
    std::string from_child;
    greenlet child(
        [&] {
            from_child = error_message([] { (void)greenlet::switch_to_parent(5); });
            (void)main.switch_to();
        },
        w, named("child"));
    (void)child.switch_to();
    EXPECT_THAT(from_child, HasSubstr("'child' (#"));
    EXPECT_THAT(from_child, HasSubstr("cannot switch to greenlet 'w'"));
    EXPECT_TRUE(scheduler_resume(w).empty());
    EXPECT_TRUE(w.dead());
}

// A child cannot hand its return value to a parked parent, and nobody is there to take an
// error in its place: the error ends the parent's wait (gevent raises it in the waiter).
TEST_F(GreenletParked, ChildFinishingIntoAParkedParentEndsTheParentsWaitWithTheError) {
    greenlet main = greenlet::current();
    greenlet w(
        [&] {
            std::string msg = error_message([&] { (void)fake_park(main, "a test wait"); });
            (void)main.switch_to(std::move(msg));
        },
        named("parent"));
    (void)w.switch_to();
    greenlet child([] { return 7; }, w, named("child"));
    value r = child.switch_to();  // the child ends; the parent takes the error, then hands
                                  // it to main, where the child's start is pending
    ASSERT_TRUE(r.is<std::string>());
    EXPECT_THAT(r.get<std::string>(), HasSubstr("greenlet 'child' (#"));
    EXPECT_THAT(r.get<std::string>(),
                HasSubstr("finished, but cannot return its value to greenlet 'parent'"));
    EXPECT_TRUE(child.dead());
    EXPECT_TRUE(w.active());  // suspended in its switch to main; dropped (killed) at the end
}

// ---------------------------------------------------------------------------------------
// Parent assignment

// G29: `parent=None` is the C++ constructor without a parent.
TEST_F(GreenletParent, DefaultParentIsTheCurrentGreenlet) {
    greenlet g([] {});
    EXPECT_TRUE(g.parent() == greenlet::current());
    bool inner_parent_is_outer = false;
    greenlet outer;
    outer = greenlet([&] {
        greenlet inner([] {});
        inner_parent_is_outer = inner.parent() == outer;
    });
    (void)outer.switch_to();
    EXPECT_TRUE(inner_parent_is_outer);
}

TEST_F(GreenletParent, ExplicitParentIsKept) {
    greenlet p([](int x) { return x + 1; });
    greenlet c([] { return 1; }, p);
    EXPECT_TRUE(c.parent() == p);
    EXPECT_EQ(c.switch_to().get<int>(), 2);
    greenlet empty;
    EXPECT_THAT(error_message([&] { greenlet bad([] {}, empty); }), HasSubstr("empty handle"));
}

// G30
TEST_F(GreenletParent, GreenletCannotBeItsOwnParent) {
    greenlet glet([] {});
    EXPECT_THAT(error_message([&] { glet.set_parent(glet); }), HasSubstr("cyclic parent chain"));
    EXPECT_TRUE(glet.parent() == greenlet::current());
}

// G31
TEST_F(GreenletParent, DeeperCycleIsRejected) {
    greenlet g1([] {});
    greenlet g2([] {});
    greenlet g3([] {});
    g1.set_parent(g2);
    g2.set_parent(g3);
    EXPECT_THAT(error_message([&] { g3.set_parent(g1); }), HasSubstr("cyclic parent chain"));
    EXPECT_TRUE(g3.parent() == greenlet::current());
}

// G32
TEST_F(GreenletParent, MainGreenletsParentCannotBeSet) {
    greenlet main = greenlet::current();
    greenlet g([] {});
    EXPECT_THAT(error_message([&] { main.set_parent(g); }),
                HasSubstr("cannot set the parent of a main greenlet"));
    EXPECT_FALSE(main.parent());
}

// G33: deleting the parent or assigning a non-greenlet does not compile; an empty handle,
// the one way to say "no greenlet", is refused.
TEST_F(GreenletParent, ParentMustBeAGreenlet) {
    static_assert(!std::is_invocable_v<decltype(&greenlet::set_parent), greenlet&, int>);
    static_assert(!std::is_invocable_v<decltype(&greenlet::set_parent), greenlet&, std::nullptr_t>);
    greenlet g([] {});
    EXPECT_THAT(error_message([&] { g.set_parent(greenlet()); }), HasSubstr("empty handle"));
    EXPECT_TRUE(g.parent() == greenlet::current());
}

// G34
TEST_F(GreenletParent, ParentOnAnotherThreadIsRejected) {
    greenlet g([] { (void)to_parent(); });
    (void)g.switch_to();
    greenlet h;
    std::thread b([&] { h = greenlet([] {}); });
    b.join();
    EXPECT_THAT(error_message([&] { g.set_parent(h); }),
                HasSubstr("parent cannot be on a different thread"));
    EXPECT_TRUE(g.parent() == greenlet::current());
}

// G35
TEST_F(GreenletParent, ReparentedUnstartedChildReturnsToItsNewParent) {
    std::vector<std::string> printed;
    greenlet parent_glet([&](value) { printed.push_back("In the parent."); });
    greenlet child_glet([&] { printed.push_back("In the child."); });
    child_glet.set_parent(parent_glet);
    (void)child_glet.switch_to();
    EXPECT_EQ(printed, (std::vector<std::string>{"In the child.", "In the parent."}));
}

// ---------------------------------------------------------------------------------------
// throw_in()

// G36
TEST_F(GreenletThrow, ThrownExceptionIsRaisedAtTheSuspensionPoint) {
    std::string caught;
    greenlet g([&] {
        try {
            (void)to_parent(std::string("ok"));
        } catch (const std::runtime_error& e) {
            caught = e.what();
            (void)to_parent(std::string("ok"));
        }
    });
    EXPECT_EQ(g.switch_to().get<std::string>(), "ok");
    EXPECT_EQ(g.throw_in(std::runtime_error("ciao")).get<std::string>(), "ok");
    EXPECT_EQ(caught, "ciao");
}

// G37
TEST_F(GreenletThrow, ThrowWithoutArgumentKillsAndReturnsGreenletExit) {
    greenlet g([] { (void)to_parent(); });
    (void)g.switch_to();
    value r = g.throw_in();
    EXPECT_TRUE(r.is<greenlet_exit>());
    EXPECT_TRUE(g.dead());
}

// G38
TEST_F(GreenletThrow, ThrowIntoDeadGreenletGoesToTheCaller) {
    greenlet g([] {});
    (void)g.switch_to();
    ASSERT_TRUE(g.dead());
    EXPECT_TRUE(g.throw_in().is<greenlet_exit>());
    try {
        (void)g.throw_in(std::invalid_argument("d"));
        ADD_FAILURE() << "nothing was raised";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "d");
    }
}

// G39
TEST_F(GreenletThrow, ThrowIntoUnstartedGreenletKillsItWithoutRunningIt) {
    std::vector<int> ran;
    greenlet g([&] { ran.push_back(1); });
    EXPECT_THROW((void)g.throw_in(std::invalid_argument("x")), std::invalid_argument);
    EXPECT_TRUE(g.dead());
    EXPECT_TRUE(ran.empty());
    greenlet fresh([&] { ran.push_back(2); });
    EXPECT_TRUE(fresh.throw_in().is<greenlet_exit>());
    EXPECT_TRUE(fresh.dead());
    EXPECT_TRUE(ran.empty());
}

namespace original_parent {
// test_throw.py's f1/f2: f1 catches index_error, f2 waits in main.
auto f1(greenlet& main) {
    return [&main]() -> std::string {
        try {
            (void)main.switch_to(std::string("f1 ready to catch"));
        } catch (const index_error&) {
            return "caught";
        }
        return "normal exit";
    };
}
auto f2(greenlet& main) {
    return [&main] { (void)main.switch_to(std::string("from f2")); };
}
}  // namespace original_parent

// G40
TEST_F(GreenletThrow, ThrowIntoUnstartedChildOfUnstartedParentKillsBoth) {
    greenlet main = greenlet::current();
    greenlet g1(original_parent::f1(main));
    greenlet g2(original_parent::f2(main), g1);
    EXPECT_THROW((void)g2.throw_in(index_error("i")), index_error);
    EXPECT_TRUE(g2.dead());
    EXPECT_TRUE(g1.dead());
}

// G41
TEST_F(GreenletThrow, ThrowIntoUnstartedChildGoesToItsStartedParent) {
    greenlet main = greenlet::current();
    greenlet g1(original_parent::f1(main));
    greenlet g2(original_parent::f2(main), g1);
    EXPECT_EQ(g1.switch_to().get<std::string>(), "f1 ready to catch");
    EXPECT_EQ(g2.throw_in(index_error("i")).get<std::string>(), "caught");
    EXPECT_TRUE(g2.dead());
    EXPECT_TRUE(g1.dead());
}

// G42
TEST_F(GreenletThrow, ThrowIntoSuspendedChildGoesToItsOriginalParent) {
    greenlet main = greenlet::current();
    greenlet g1(original_parent::f1(main));
    greenlet g2(original_parent::f2(main), g1);
    EXPECT_EQ(g1.switch_to().get<std::string>(), "f1 ready to catch");
    EXPECT_EQ(g2.switch_to().get<std::string>(), "from f2");
    EXPECT_EQ(g2.throw_in(index_error("i")).get<std::string>(), "caught");
    EXPECT_TRUE(g2.dead());
    EXPECT_TRUE(g1.dead());
}

// G43
TEST_F(GreenletThrow, GreenletThatCatchesGreenletExitReturnsItsValue) {
    greenlet g([]() -> std::string {
        try {
            (void)to_parent();
        } catch (const greenlet_exit&) {
            return "cleaned";
        }
        return "not killed";
    });
    (void)g.switch_to();
    EXPECT_EQ(g.throw_in().get<std::string>(), "cleaned");
    EXPECT_TRUE(g.dead());
}

// G44
TEST_F(GreenletThrow, GreenletExitEscapingTheFunctionArrivesAsAValue) {
    greenlet g([] { throw greenlet_exit("bye"); });
    value r;
    EXPECT_NO_THROW(r = g.switch_to());
    ASSERT_TRUE(r.is<greenlet_exit>());
    EXPECT_EQ(r.get<greenlet_exit>().message(), "bye");
    EXPECT_TRUE(g.dead());
}

// A greenlet_exit that escapes a greenlet (raised, or a kill) and meets a parent that has
// not started kills that parent without running it, like any other exception, and goes on
// up the chain; it arrives as a value at the first suspended greenlet. (Python's greenlet
// 2.0.2 starts the parent with a non-tuple argument there, which is undefined behaviour in
// CPython: tests/fibers/greenlet_diff/README.md.)
TEST_F(GreenletThrow, GreenletExitEscapingAChildKillsItsUnstartedParentAndGoesOnUp) {
    std::vector<std::string> ran;
    greenlet p([&](value) { ran.push_back("parent"); }, named("unstarted_parent"));
    greenlet c([] { throw greenlet_exit("bye"); }, p);
    value r = c.switch_to();
    ASSERT_TRUE(r.is<greenlet_exit>());
    EXPECT_EQ(r.get<greenlet_exit>().message(), "bye");
    EXPECT_TRUE(c.dead());
    EXPECT_TRUE(p.dead());
    EXPECT_TRUE(ran.empty());
}

TEST_F(GreenletThrow, KillingAChildKillsEveryUnstartedAncestorUpToTheFirstSuspendedOne) {
    std::vector<std::string> ran;
    greenlet main = greenlet::current();
    greenlet gp([&](value) { ran.push_back("grandparent"); });
    greenlet p([&](value) { ran.push_back("parent"); }, gp);
    greenlet c([&] { (void)main.switch_to(std::string("child waits")); }, p);
    EXPECT_EQ(c.switch_to().get<std::string>(), "child waits");
    value r = c.throw_in();
    EXPECT_TRUE(r.is<greenlet_exit>());
    EXPECT_TRUE(c.dead());
    EXPECT_TRUE(p.dead());
    EXPECT_TRUE(gp.dead());
    EXPECT_TRUE(ran.empty());
}

TEST_F(GreenletThrow, GreenletExitThrownIntoADeadChildKillsItsUnstartedParent) {
    std::vector<std::string> ran;
    greenlet c([] {});
    (void)c.switch_to();
    ASSERT_TRUE(c.dead());
    greenlet p([&](value) { ran.push_back("parent"); });
    c.set_parent(p);
    EXPECT_TRUE(c.throw_in().is<greenlet_exit>());
    EXPECT_TRUE(p.dead());
    EXPECT_TRUE(ran.empty());
}

// Only an *escaping* greenlet_exit kills: one returned or switched as an ordinary value
// starts an unstarted greenlet with it as the argument, as Python's greenlet does.
TEST_F(GreenletThrow, GreenletExitPassedAsAPlainValueStillStartsAnUnstartedParent) {
    std::vector<std::string> ran;
    greenlet p([&](value v) {
        ran.push_back(v.is<greenlet_exit>() ? "parent got " + v.get<greenlet_exit>().message()
                                            : "parent got something else");
        return std::string("parent done");
    });
    greenlet c([] { return greenlet_exit("returned"); }, p);
    EXPECT_EQ(c.switch_to().get<std::string>(), "parent done");
    EXPECT_EQ(ran, (std::vector<std::string>{"parent got returned"}));
    greenlet q([&](value v) {
        ran.push_back(v.is<greenlet_exit>() ? "q got " + v.get<greenlet_exit>().message()
                                            : "q got something else");
    });
    EXPECT_TRUE(q.switch_to(greenlet_exit("switched")).empty());
    EXPECT_EQ(ran.back(), "q got switched");
}

TEST_F(GreenletThrow, ThrowInWithANullExceptionPtrIsAnError) {
    greenlet g([] {}, named("target"));
    EXPECT_THAT(error_message([&] { (void)g.throw_in(std::exception_ptr()); }),
                HasSubstr("null exception_ptr"));
    EXPECT_FALSE(g.started());
}

// ---------------------------------------------------------------------------------------
// greenlet_exit, kill on drop

// G45
TEST_F(GreenletKill, DroppingSuspendedGreenletsUnwindsTheirStacks) {
    std::vector<std::string> seen;
    std::vector<std::string> destroyed;
    auto body = [&](std::string name) {
        return [&, name] {
            on_destroy d{destroyed, name};
            fmain(seen);
        };
    };
    greenlet g1(body("g1"));
    greenlet g2(body("g2"));
    (void)g1.switch_to();
    (void)g2.switch_to();
    EXPECT_TRUE(seen.empty());
    g1 = greenlet();
    EXPECT_EQ(seen, (std::vector<std::string>{"greenlet_exit"}));
    EXPECT_EQ(destroyed, (std::vector<std::string>{"g1"}));
    g2 = greenlet();
    EXPECT_EQ(seen, (std::vector<std::string>{"greenlet_exit", "greenlet_exit"}));
    EXPECT_EQ(destroyed, (std::vector<std::string>{"g1", "g2"}));
}

// G46
TEST_F(GreenletKill, DroppingANeverStartedGreenletRunsNothing) {
    std::vector<std::string> ran;
    std::vector<std::string> destroyed;
    {
        std::shared_ptr<int> captured(new int(0), [&](int* p) {
            delete p;
            destroyed.push_back("captured state");
        });
        greenlet g([&ran, captured] { ran.push_back("body"); });
    }
    EXPECT_TRUE(ran.empty());
    EXPECT_EQ(destroyed, (std::vector<std::string>{"captured state"}));  // the function is freed
}

// G47
TEST_F(GreenletKill, ExceptionEscapingTheKillIsReportedOnceAndNotThrown) {
    std::vector<std::string> messages;
    std::vector<std::string> errors;
    std::vector<bool> had_source;
    report_scope rs([&](const failure_report& r) {
        messages.emplace_back(r.message);
        had_source.push_back(r.source != nullptr);
        try {
            if (r.error) std::rethrow_exception(r.error);
            errors.push_back("(none)");
        } catch (const some_error& e) {
            errors.push_back(std::string("some_error: ") + e.what());
        } catch (...) {
            errors.push_back("(other)");
        }
    });
    greenlet g(
        [] {
            try {
                (void)to_parent();
            } catch (const greenlet_exit&) {
                throw some_error("raised instead of dying");
            }
        },
        named("stubborn"));
    (void)g.switch_to();
    EXPECT_NO_THROW(g = greenlet());
    ASSERT_EQ(messages.size(), 1u);
    EXPECT_THAT(messages[0], HasSubstr("'stubborn'"));
    EXPECT_EQ(errors, (std::vector<std::string>{"some_error: raised instead of dying"}));
    EXPECT_EQ(had_source, (std::vector<bool>{true}));
}

// G48
TEST_F(GreenletKill, DuringTheKillTheDropperIsTheParentAndTheParentIsRestoredAfter) {
    report_scope quiet([](const failure_report&) {});  // the survivor may be reported (G49)
    std::vector<greenlet> result;
    greenlet hub([] {}, named("hub"));
    greenlet main = greenlet::current();
    {
        greenlet g(
            [&] {
                try {
                    (void)main.switch_to();
                } catch (const greenlet_exit&) {
                    result.push_back(greenlet::current().parent());
                    result.push_back(greenlet::current());
                    (void)hub.switch_to();
                }
            },
            hub, named("worker"));
        (void)g.switch_to();
    }  // drops the only handle: greenlet_exit is thrown into the worker
    ASSERT_EQ(result.size(), 2u);
    EXPECT_TRUE(result[0] == main);
    EXPECT_TRUE(result[1].parent() == hub);
    result.clear();  // the resurrected worker is dropped again and now dies
}

// G49
TEST_F(GreenletKill, GreenletThatSurvivesTheKillIsReportedNotSilentlyLeaked) {
    std::vector<std::string> messages;
    greenlet zombie;
    report_scope rs([&](const failure_report& r) {
        messages.emplace_back(r.message);
        if (r.source != nullptr) zombie = r.source->share();  // keep it, to finish it below
    });
    greenlet main = greenlet::current();
    std::vector<std::string> steps;
    {
        greenlet g(
            [&] {
                try {
                    (void)main.switch_to();
                } catch (const greenlet_exit&) {
                    steps.push_back("caught greenlet_exit");
                    (void)main.switch_to();  // refuses to die
                    steps.push_back("resumed");
                }
            },
            named("refuser"));
        (void)g.switch_to();
    }
    ASSERT_EQ(messages.size(), 1u);
    EXPECT_THAT(messages[0], HasSubstr("greenlet_exit did not kill"));
    EXPECT_THAT(messages[0], HasSubstr("'refuser'"));
    ASSERT_TRUE(zombie);
    EXPECT_TRUE(zombie.active());
    EXPECT_EQ(steps, (std::vector<std::string>{"caught greenlet_exit"}));
    (void)zombie.switch_to();  // let it finish, so that nothing leaks
    EXPECT_TRUE(zombie.dead());
    EXPECT_EQ(steps, (std::vector<std::string>{"caught greenlet_exit", "resumed"}));
}

// G51
TEST_F(GreenletKill, ValueInFlightSurvivesTheKillOfAGreenletThatDroppedItself) {
    std::vector<std::string> seen;
    std::vector<greenlet> worker;
    greenlet initiator;
    worker.emplace_back([&] {
        value v = to_parent();  // wait for the value
        greenlet p = greenlet::current().parent();
        initiator.set_parent(p);
        worker.clear();  // drop every handle to ourselves
        on_destroy finally{seen, "finally"};
        (void)p.switch_to(std::move(v));
    });
    (void)worker[0].switch_to();  // prime the worker
    initiator = greenlet([] { return 42; }, worker[0]);
    value r = initiator.switch_to();
    EXPECT_EQ(seen, (std::vector<std::string>{"finally"}));
    ASSERT_TRUE(r.is<int>());
    EXPECT_EQ(r.get<int>(), 42);
}

// G52: there are no weak handles in C++; what ports is that dead and never-started greenlets
// are freed when their handles go.
TEST_F(GreenletKill, DeadAndNeverStartedGreenletsAreFreedWithTheirHandles) {
    const std::size_t before = greenfiber::live_greenlets();
    {
        greenlet pending([] {});
        greenlet finished([] {});
        (void)finished.switch_to();
        EXPECT_EQ(greenfiber::live_greenlets(), before + 2);
    }
    EXPECT_EQ(greenfiber::live_greenlets(), before);
}

TEST_F(GreenletKill, GreenletThatDropsItsOwnLastHandleIsFreedWhenItFinishes) {
    const std::size_t before = greenfiber::live_greenlets();
    std::vector<greenlet> handles;
    handles.emplace_back([&] {
        handles.clear();
        return 7;
    });
    value r = handles[0].switch_to();
    EXPECT_EQ(r.get<int>(), 7);
    EXPECT_TRUE(handles.empty());
    EXPECT_EQ(greenfiber::live_greenlets(), before);
}

// A trace hook names the greenlet that switched away even when that switch also lost it
// its last handle: the hook runs before the orphan is freed (it died) or killed (it was
// suspended), so the events also come in the order they happened.
TEST_F(GreenletKill, TraceHookSeesADeadOrphanBeforeItIsFreed) {
    const std::size_t before = greenfiber::live_greenlets();
    std::vector<trace_record> events;
    trace_scope tracing(recorder(events));
    std::vector<greenlet> handles;
    handles.emplace_back(
        [&] {
            handles.clear();
            return 7;
        },
        named("g"));
    value r = handles[0].switch_to();
    EXPECT_EQ(r.get<int>(), 7);
    EXPECT_EQ(greenfiber::live_greenlets(), before);
    EXPECT_EQ(events,
              (std::vector<trace_record>{{"switch", "main", "g"}, {"switch", "g", "main"}}));
}

TEST_F(GreenletKill, TraceHookSeesASuspendedOrphanBeforeItIsKilled) {
    const std::size_t before = greenfiber::live_greenlets();
    std::vector<std::string> seen;
    std::vector<trace_record> events;
    trace_scope tracing(recorder(events));
    std::vector<greenlet> handles;
    handles.emplace_back(
        [&] {
            on_destroy finally{seen, "finally"};
            handles.clear();
            (void)to_parent();
        },
        named("g"));
    (void)handles[0].switch_to();
    EXPECT_EQ(seen, (std::vector<std::string>{"finally"}));
    EXPECT_EQ(greenfiber::live_greenlets(), before);
    EXPECT_EQ(events, (std::vector<trace_record>{{"switch", "main", "g"},
                                                 {"switch", "g", "main"},
                                                 {"throw", "main", "g"},
                                                 {"switch", "g", "main"}}));
}

// The child's parent is main, not `outer`: a suspended child whose parent is the greenlet
// holding its handle would form a reference cycle (parents are strong references), which
// leaks in Python too.
TEST_F(GreenletKill, KillingAGreenletKillsTheChildrenItOwns) {
    std::vector<std::string> destroyed;
    greenlet main = greenlet::current();
    greenlet outer([&] {
        on_destroy d{destroyed, "outer"};
        greenlet inner(
            [&] {
                on_destroy d2{destroyed, "inner"};
                (void)to_parent();
            },
            main);
        (void)inner.switch_to();  // inner switches to main; outer stays suspended here
    });
    (void)outer.switch_to();
    EXPECT_TRUE(outer.active());
    outer = greenlet();
    EXPECT_EQ(destroyed, (std::vector<std::string>{"inner", "outer"}));
}

TEST_F(GreenletKill, NoKillScopesNestAndBelongToTheirGreenlet) {
    std::vector<bool> seen;
    greenlet g([&] {
        seen.push_back(greenfiber::no_kill_scope::active());
        {
            greenfiber::no_kill_scope outer;
            {
                greenfiber::no_kill_scope inner;
                seen.push_back(greenfiber::no_kill_scope::active());
            }
            seen.push_back(greenfiber::no_kill_scope::active());
            (void)to_parent();  // the caller is not inside this greenlet's scope
        }
        seen.push_back(greenfiber::no_kill_scope::active());
    });
    (void)g.switch_to();
    seen.push_back(greenfiber::no_kill_scope::active());
    (void)g.switch_to();
    EXPECT_EQ(seen, (std::vector<bool>{false, true, true, false, false}));
    struct during_unwinding {
        std::vector<bool>& out;
        ~during_unwinding() { out.push_back(greenfiber::no_kill_scope::active()); }
    };
    seen.clear();
    try {
        during_unwinding d{seen};
        throw some_error("unwinding");
    } catch (const some_error&) {
    }
    EXPECT_EQ(seen, (std::vector<bool>{true}));
}

// ---------------------------------------------------------------------------------------
// Threads

// G53
TEST_F(GreenletThreads, EachThreadHasItsOwnMainGreenlet) {
    constexpr int n = 10;
    std::vector<std::vector<int>> lists(n);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
        threads.emplace_back([&lst = lists[i]] {
            greenlet g([&] {
                lst.push_back(1);
                (void)to_parent();
                lst.push_back(3);
            });
            lst.push_back(0);
            (void)g.switch_to();
            lst.push_back(2);
            (void)g.switch_to();
            lst.push_back(4);
        });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < n; ++i) EXPECT_EQ(lists[i], (std::vector<int>{0, 1, 2, 3, 4})) << i;
}

// G54
TEST_F(GreenletThreads, SwitchingToAnotherThreadsGreenletThrowsNamingBothThreads) {
    std::promise<greenlet> handed;
    std::promise<greenlet> returned;
    std::thread::id b_id;
    std::vector<std::string> seen_in_b;
    std::thread b([&] {
        b_id = std::this_thread::get_id();
        greenlet g(
            [&] {
                on_destroy d{seen_in_b, "unwound"};
                (void)to_parent();
            },
            named("owned_by_b"));
        (void)g.switch_to();
        handed.set_value(std::move(g));
        greenlet back = returned.get_future().get();
    });  // `back` is dropped in B: killed there
    greenlet g = handed.get_future().get();
    EXPECT_EQ(g.thread_id(), b_id);
    const std::string sw = error_message([&] { (void)g.switch_to(1); });
    EXPECT_THAT(sw, HasSubstr("'owned_by_b'"));
    EXPECT_THAT(sw, HasSubstr(thread_words(b_id)));
    EXPECT_THAT(sw, HasSubstr(thread_words(std::this_thread::get_id())));
    const std::string th = error_message([&] { (void)g.throw_in(some_error("x")); });
    EXPECT_THAT(th, HasSubstr(thread_words(b_id)));
    EXPECT_THAT(th, HasSubstr(thread_words(std::this_thread::get_id())));
    EXPECT_TRUE(seen_in_b.empty());
    returned.set_value(std::move(g));
    b.join();
    EXPECT_EQ(seen_in_b, (std::vector<std::string>{"unwound"}));
}

// G55
TEST_F(GreenletThreads, SwitchingToAGreenletOfAnExitedThreadThrowsSayingItExited) {
    std::vector<std::string> reports;
    report_scope rs([&](const failure_report& r) { reports.emplace_back(r.message); });
    greenlet g;
    std::thread b([&] {
        greenlet main_b = greenlet::current();
        // Holds nothing that needs unwinding: its stack is freed without unwinding.
        g = greenlet([&main_b] { (void)main_b.switch_to(); }, named("left_behind"));
        (void)g.switch_to();
    });
    b.join();
    EXPECT_THAT(error_message([&] { (void)g.switch_to(); }), HasSubstr("exited"));
    EXPECT_THAT(error_message([&] { (void)g.throw_in(); }), HasSubstr("exited"));
    g = greenlet();
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_THAT(reports[0], HasSubstr("'left_behind'"));
    EXPECT_THAT(reports[0], HasSubstr("exited"));
}

// G50
TEST_F(GreenletThreads, GreenletDroppedOnAnotherThreadIsKilledLaterOnItsOwnThread) {
    std::promise<greenlet> handed;
    std::promise<void> dropped;
    std::vector<std::string> seen;
    bool seen_empty_before_next_call = false;
    std::thread b([&] {
        greenlet g([&] {
            try {
                (void)to_parent();
            } catch (const greenlet_exit&) {
                seen.push_back("greenlet_exit");
                throw;
            }
        });
        (void)g.switch_to();
        handed.set_value(std::move(g));
        dropped.get_future().get();
        seen_empty_before_next_call = seen.empty();
        (void)greenlet::current();  // any greenlet call on B runs the pending kill
        seen.push_back("after the call");
    });
    greenlet g = handed.get_future().get();
    g = greenlet();  // the last handle goes, on thread A
    EXPECT_TRUE(seen.empty());
    dropped.set_value();
    b.join();
    EXPECT_TRUE(seen_empty_before_next_call);
    EXPECT_EQ(seen, (std::vector<std::string>{"greenlet_exit", "after the call"}));
}

// live_greenlets() is counted per thread without locked instructions; the sum stays exact
// when a greenlet is freed on another thread than its own (one with greenlet state of its
// own, one without), and when its thread exits first.
TEST_F(GreenletThreads, LiveGreenletsCountsGreenletsFreedOnOtherThreads) {
    const std::size_t before = greenfiber::live_greenlets();
    greenlet made_here([] {});
    (void)made_here.switch_to();  // dead: freed where its last handle goes
    greenlet made_there;
    std::thread([&] {
        made_there = greenlet([] {});
        (void)made_there.switch_to();
        EXPECT_EQ(greenfiber::live_greenlets(), before + 2);
    }).join();  // its thread has exited; the dead greenlet lives on
    EXPECT_EQ(greenfiber::live_greenlets(), before + 2);
    std::thread([&] { made_here = greenlet(); }).join();  // a thread without greenlet state
    EXPECT_EQ(greenfiber::live_greenlets(), before + 1);
    std::thread([&] {
        greenlet own([] {});  // this thread has greenlet state
        made_there = greenlet();
        EXPECT_EQ(greenfiber::live_greenlets(), before + 1);
    }).join();
    EXPECT_EQ(greenfiber::live_greenlets(), before);
}

// Greenlet ids are handed to threads in blocks: unique across threads, past a block's end.
TEST_F(GreenletThreads, IdsAreUniqueAcrossThreads) {
    constexpr int per_thread = 700;  // more than one block
    std::vector<std::uint64_t> ids[2];
    auto make = [](std::vector<std::uint64_t>& out) {
        std::vector<greenlet> gs;
        for (int i = 0; i < per_thread; ++i) {
            gs.emplace_back([] {});
            out.push_back(greenfiber::detail::access::impl(gs.back())->id);
        }
    };
    std::thread a([&] { make(ids[0]); });
    std::thread b([&] { make(ids[1]); });
    a.join();
    b.join();
    std::vector<std::uint64_t> all = ids[0];
    all.insert(all.end(), ids[1].begin(), ids[1].end());
    std::sort(all.begin(), all.end());
    EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
    EXPECT_EQ(all.size(), 2u * per_thread);
    EXPECT_EQ(std::count(all.begin(), all.end(), 0u), 0);  // 0 is every main greenlet's
}

// ---------------------------------------------------------------------------------------
// Per-greenlet exception state

// G56
TEST_F(GreenletExceptionState, CaughtExceptionSurvivesASwitchAwayAndBack) {
    std::vector<std::string> seen;
    auto describe_current = [] {
        const std::exception_ptr e = std::current_exception();
        if (!e) return std::string("none");
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            return std::string(x.what());
        } catch (...) {
            return std::string("not a std::exception");
        }
    };
    greenlet f([&] {
        try {
            throw std::invalid_argument("fun");
        } catch (const std::invalid_argument&) {
            seen.push_back("f: " + describe_current());
            greenlet h([&] { seen.push_back("h: " + describe_current()); });
            (void)h.switch_to();
            seen.push_back("f after h: " + describe_current());
            (void)to_parent();
            seen.push_back("f after main: " + describe_current());
        }
        seen.push_back("f after catch: " + describe_current());
    });
    (void)f.switch_to();
    seen.push_back("main: " + describe_current());
    (void)f.switch_to();
    EXPECT_EQ(seen, (std::vector<std::string>{"f: fun", "h: none", "f after h: fun", "main: none",
                                              "f after main: fun", "f after catch: none"}));
}

struct exception_t {
    int depth;
};

int exception_switch_recurse(int depth, int left) {
    if (left > 0) return exception_switch_recurse(depth, left - 1) + 0;
    try {
        (void)to_parent();
        throw exception_t{depth};
    } catch (const exception_t& e) {
        return e.depth == depth ? depth : -1000 - e.depth;
    }
}

// G57
TEST_F(GreenletExceptionState, EachGreenletCatchesItsOwnExceptionAtItsOwnDepth) {
    std::vector<greenlet> greenlets;
    for (int i = 0; i < 4; ++i) {
        greenlets.emplace_back([](int d) { return exception_switch_recurse(d, d); });
        (void)greenlets.back().switch_to(i);
    }
    for (int i = 0; i < 4; ++i) EXPECT_EQ(greenlets[i].switch_to().get<int>(), i);
}

// G57, interleaved: four greenlets are suspended inside their catch blocks at once and each
// rethrows its own exception with `throw;` after being resumed in reverse order.
TEST_F(GreenletExceptionState, RethrowInsideCatchAfterInterleavedSwitchesRethrowsOwnException) {
    std::vector<greenlet> greenlets;
    for (int i = 0; i < 4; ++i) {
        greenlets.emplace_back([](int d) {
            try {
                try {
                    throw exception_t{d};
                } catch (const exception_t&) {
                    (void)to_parent();
                    throw;
                }
            } catch (const exception_t& e) {
                return e.depth;
            }
            return -1;
        });
        (void)greenlets.back().switch_to(i);
    }
    EXPECT_FALSE(std::current_exception());
    for (int i = 3; i >= 0; --i) EXPECT_EQ(greenlets[i].switch_to().get<int>(), i);
}

// G56/G57: std::uncaught_exceptions() belongs to the greenlet that is unwinding.
TEST_F(GreenletExceptionState, UncaughtExceptionsCountIsPerGreenlet) {
    greenlet main = greenlet::current();
    std::vector<int> record;
    struct switch_in_destructor {
        std::vector<int>& record;
        greenlet& main;
        ~switch_in_destructor() {
            record.push_back(std::uncaught_exceptions());
            (void)main.switch_to();
            record.push_back(std::uncaught_exceptions());
        }
    };
    greenlet g([&] {
        try {
            switch_in_destructor s{record, main};
            throw some_error("unwinding");
        } catch (const some_error&) {
            record.push_back(100 + std::uncaught_exceptions());
        }
    });
    (void)g.switch_to();  // g is suspended in a destructor, halfway through unwinding
    EXPECT_EQ(std::uncaught_exceptions(), 0);
    EXPECT_FALSE(std::current_exception());
    EXPECT_EQ(record, (std::vector<int>{1}));
    (void)g.switch_to();
    EXPECT_EQ(record, (std::vector<int>{1, 1, 100}));
    EXPECT_TRUE(g.dead());
}

// ---------------------------------------------------------------------------------------
// Tracing

// G58
TEST_F(GreenletTrace, TracerSeesEverySwitchAndTheThrowOfAFailingGreenlet) {
    std::vector<trace_record> events;
    greenlet g1([] {}, named("g1"));
    greenlet g2([] { throw std::domain_error("division by zero"); }, named("g2"));
    {
        trace_scope ts(recorder(events));
        (void)g1.switch_to();
        EXPECT_THROW((void)g2.switch_to(), std::domain_error);
    }
    EXPECT_EQ(events, (std::vector<trace_record>{{"switch", "main", "g1"},
                                                 {"switch", "g1", "main"},
                                                 {"switch", "main", "g2"},
                                                 {"throw", "g2", "main"}}));
}

// G59
TEST_F(GreenletTrace, ThrowIntoASuspendedGreenletIsTracedAsThrowBothWays) {
    std::vector<trace_record> events;
    greenlet g1([] { (void)to_parent(); }, named("g1"));
    (void)g1.switch_to();
    {
        trace_scope ts(recorder(events));
        EXPECT_THROW((void)g1.throw_in(std::invalid_argument("v")), std::invalid_argument);
    }
    EXPECT_EQ(events,
              (std::vector<trace_record>{{"throw", "main", "g1"}, {"throw", "g1", "main"}}));
}

// G60
// As in greenlet (found by tests/fibers/greenlet_diff): a switch that lands where it
// started is traced too, with the caller as origin and target.
TEST_F(GreenletTrace, SwitchThatLandsBackInTheCallerIsTracedAsFromAndToTheCaller) {
    std::vector<trace_record> events;
    greenlet dead_child([] {}, named("child"));
    (void)dead_child.switch_to();
    ASSERT_TRUE(dead_child.dead());
    {
        trace_scope ts(recorder(events));
        EXPECT_EQ(greenlet::current().switch_to(5).get<int>(), 5);
        EXPECT_EQ(dead_child.switch_to(6).get<int>(), 6);  // up its chain to main
        EXPECT_THROW((void)greenlet::current().throw_in(some_error("self")), some_error);
        EXPECT_THROW((void)dead_child.throw_in(some_error("dead")), some_error);
    }
    EXPECT_EQ(events, (std::vector<trace_record>{{"switch", "main", "main"},
                                                 {"switch", "main", "main"},
                                                 {"throw", "main", "main"},
                                                 {"throw", "main", "main"}}));
}

// greenlet starts an unstarted greenlet to raise a thrown exception in it, and it dies at
// once: its trace shows the throw into it and its death's switch to its parent. greenfiber
// kills it without a stack, and the hook sees the same two events (on the caller's stack).
TEST_F(GreenletTrace, ThrowIntoAnUnstartedGreenletIsTracedAsItsStartAndItsDeath) {
    std::vector<trace_record> events;
    greenlet g([] { ADD_FAILURE() << "ran"; }, named("g"));
    greenlet e([] { ADD_FAILURE() << "ran"; }, named("e"));
    greenlet g1([] { ADD_FAILURE() << "ran"; }, named("g1"));
    greenlet g2([] { ADD_FAILURE() << "ran"; }, g1, named("g2"));
    {
        trace_scope ts(recorder(events));
        EXPECT_THROW((void)g.throw_in(some_error("x")), some_error);
        EXPECT_TRUE(e.throw_in().is<greenlet_exit>());  // the exit arrives as a value
        EXPECT_THROW((void)g2.throw_in(index_error("i")), index_error);
    }
    EXPECT_EQ(events, (std::vector<trace_record>{{"throw", "main", "g"},
                                                 {"throw", "g", "main"},
                                                 {"throw", "main", "e"},
                                                 {"switch", "e", "main"},
                                                 {"throw", "main", "g2"},
                                                 {"throw", "g2", "g1"},
                                                 {"throw", "g1", "main"}}));
}

// The hook throws on the throw into the first of two unstarted greenlets: its exception
// replaces the thrown one, tracing turns off, and the switch that lands in the suspended
// greenlet further up neither calls the hook nor keeps a reference to the killed ones.
TEST_F(GreenletTrace, HookThatThrowsForAnUnstartedGreenletTurnsTracingOffAndLeaksNothing) {
    greenlet main = greenlet::current();
    greenlet p([&]() -> std::string {
        try {
            (void)main.switch_to();
        } catch (const some_error& e) {
            return std::string("p caught ") + e.what();
        }
        return "p resumed normally";
    });
    (void)p.switch_to();
    greenlet g1([] { ADD_FAILURE() << "ran"; }, p, named("g1"));
    greenlet g2([] { ADD_FAILURE() << "ran"; }, g1, named("g2"));
    int calls = 0;
    trace_scope ts([&](trace_event, const greenlet&, const greenlet&) {
        ++calls;
        throw some_error("from the hook");
    });
    EXPECT_EQ(g2.throw_in(index_error("i")).get<std::string>(), "p caught from the hook");
    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(greenfiber::gettrace());
    EXPECT_TRUE(g1.dead());
    EXPECT_TRUE(g2.dead());
}

TEST_F(GreenletTrace, ExceptionFromTheTracerIsThrownIntoTheTargetAndDisablesTracing) {
    std::vector<trace_record> events;
    greenlet g([] { (void)to_parent(); }, named("g"));
    (void)g.switch_to();
    trace_scope ts([&](trace_event e, const greenlet& origin, const greenlet& target) {
        recorder(events)(e, origin, target);
        throw some_error("from the tracer");
    });
    EXPECT_THROW((void)g.switch_to(), some_error);
    EXPECT_FALSE(greenfiber::gettrace());
    EXPECT_TRUE(g.dead());
    EXPECT_EQ(events, (std::vector<trace_record>{{"switch", "main", "g"}}));
}

// G61
TEST_F(GreenletTrace, SettraceReturnsThePreviousTracerWhichRunsInTheTargetsContext) {
    trace_scope restore{greenfiber::trace_function()};  // whatever happens below
    std::vector<std::string> calls;
    greenfiber::trace_function t1 = [&](trace_event, const greenlet&, const greenlet& target) {
        calls.push_back(greenlet::current() == target ? "t1 in target" : "t1 elsewhere");
    };
    greenfiber::trace_function t2 = [&](trace_event, const greenlet&, const greenlet&) {
        calls.push_back("t2");
    };
    const greenfiber::trace_function before = greenfiber::settrace(t1);
    EXPECT_FALSE(before);
    EXPECT_TRUE(greenfiber::gettrace());
    greenfiber::trace_function prev = greenfiber::settrace(t2);
    ASSERT_TRUE(prev);
    prev(trace_event::switch_to, greenlet::current(), greenlet::current());
    EXPECT_EQ(calls, (std::vector<std::string>{"t1 in target"}));  // it was t1
    calls.clear();
    greenfiber::settrace(t1);
    greenfiber::settrace(t1);  // the same tracer twice is safe and traces once
    greenlet g([] { (void)to_parent(); }, named("g"));
    (void)g.switch_to();
    (void)g.switch_to();
    EXPECT_EQ(calls, (std::vector<std::string>(4, "t1 in target")));
    EXPECT_TRUE(greenfiber::settrace(before));  // returns t1 and restores "none"
    EXPECT_FALSE(greenfiber::gettrace());
}

// G62-G64 (gr_context, contextvars): not ported. C++ has no context variables and greenfiber
// gives greenlets no per-greenlet context object; thread_local state is shared by all the
// greenlets of a thread.

// ---------------------------------------------------------------------------------------
// Kills that cannot be delivered: a greenlet parked in a destructor (greenlet.hpp,
// "A destructor that suspends"). Raising greenlet_exit there used to call std::terminate,
// so each case runs in a death-test child that must exit normally: a failed check in the
// child exits 1 and says which, the reports go to stderr for the parent's regex.

// The checks of a scenario run in a death-test child, where a failed EXPECT would not
// reach the parent.
class child_checks {
  public:
    void check(bool ok, const char* what) {
        if (!ok) {
            std::fprintf(stderr, "CHECK FAILED: %s\n", what);
            failed_ = true;
        }
    }
    [[noreturn]] void finish() {
        std::fflush(stderr);
        std::_Exit(failed_ ? 1 : 0);
    }

  private:
    bool failed_ = false;
};
#define CHILD_CHECK(c, cond) (c).check((cond), #cond)

// Keeps every report (messages and shared sources); writes each message to stderr.
struct report_log {
    std::mutex mu;
    std::vector<std::string> messages;  // Guarded by mu.
    std::vector<greenlet> sources;      // Guarded by mu.
    report_handler handler() {
        return [this](const failure_report& r) {
            std::lock_guard lock(mu);
            messages.emplace_back(r.message);
            std::fprintf(stderr, "report: %s\n", messages.back().c_str());
            if (r.source != nullptr) sources.push_back(r.source->share());
        };
    }
    greenlet take_source() {
        std::lock_guard lock(mu);
        if (sources.empty()) return greenlet();
        greenlet g = std::move(sources.back());
        sources.pop_back();
        return g;
    }
};

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

// Switches to the parent from its destructor, as a destructor that waits for something
// would. Says whether it parked during unwinding.
struct parks_in_destructor {
    std::vector<std::string>& log;
    ~parks_in_destructor() {
        log.push_back(std::uncaught_exceptions() > 0 ? "parked while unwinding" : "parked");
        (void)to_parent();
        log.push_back("resumed");
    }
};

// The same, marked as a region where the greenlet must not be killed.
struct parks_in_shielded_destructor {
    std::vector<std::string>& log;
    ~parks_in_shielded_destructor() {
        greenfiber::no_kill_scope shield;
        log.push_back(greenfiber::no_kill_scope::active() ? "parked shielded" : "parked");
        (void)to_parent();
        log.push_back("resumed");
    }
};

using strings = std::vector<std::string>;

class GreenletUnkillableDeathTest : public greenfiber::testing::leak_checked {
  protected:
    void SetUp() override {
        leak_checked::SetUp();
        GTEST_FLAG_SET(death_test_style, "threadsafe");
    }
};

// The kill unwinds the greenlet; a destructor switches away during that unwinding (reported
// as a greenlet that did not die); its handle is dropped again: a second greenlet_exit
// raised in that destructor would escape it during unwinding.
TEST_F(GreenletUnkillableDeathTest, DroppedAgainWhileAKillUnwindsItIsReportedNotTerminated) {
    EXPECT_EXIT(
        {
            child_checks c;
            report_log reports;
            report_scope rs(reports.handler());
            const std::size_t live = greenfiber::live_greenlets();
            strings log;
            {
                greenlet g(
                    [&] {
                        parks_in_destructor p{log};
                        (void)to_parent();
                    },
                    named("unwinding-twice"));
                (void)g.switch_to();
            }  // the kill starts; the destructor parks back here
            CHILD_CHECK(c, log == strings{"parked while unwinding"});
            CHILD_CHECK(c, reports.messages.size() == 1u);
            CHILD_CHECK(c, contains(reports.messages.at(0), "greenlet_exit did not kill"));
            CHILD_CHECK(c, contains(reports.messages.at(0), "unwinding"));
            greenlet zombie = reports.take_source();
            CHILD_CHECK(c, zombie.active());
            zombie = greenlet();  // dropped again
            CHILD_CHECK(c, reports.messages.size() == 2u);
            CHILD_CHECK(c, contains(reports.messages.at(1), "'unwinding-twice'"));
            zombie = reports.take_source();
            CHILD_CHECK(c, zombie.active());
            value r = zombie.switch_to();  // the destructor returns; the first kill finishes
            CHILD_CHECK(c, r.is<greenlet_exit>());
            CHILD_CHECK(c, zombie.dead());
            CHILD_CHECK(c, (log == strings{"parked while unwinding", "resumed"}));
            zombie = greenlet();
            CHILD_CHECK(c, greenfiber::live_greenlets() == live);
            c.finish();
        },
        ::testing::ExitedWithCode(0),
        "cannot kill greenlet 'unwinding-twice' \\(#[0-9]+\\): it is suspended while unwinding");
}

// A destructor switches away while an ordinary exception unwinds the greenlet; then its
// last handle is dropped.
TEST_F(GreenletUnkillableDeathTest, DroppedWhileAnExceptionUnwindsItIsReportedNotTerminated) {
    EXPECT_EXIT(
        {
            child_checks c;
            report_log reports;
            report_scope rs(reports.handler());
            const std::size_t live = greenfiber::live_greenlets();
            const std::size_t stacks = greenfiber::stack_statistics().in_use;
            strings log;
            greenlet g(
                [&] {
                    parks_in_destructor p{log};
                    throw some_error("unwinding");
                },
                named("unwinding-error"));
            (void)g.switch_to();
            CHILD_CHECK(c, log == strings{"parked while unwinding"});
            g = greenlet();
            CHILD_CHECK(c, reports.messages.size() == 1u);
            greenlet zombie = reports.take_source();
            CHILD_CHECK(c, zombie.active());
            CHILD_CHECK(c, greenfiber::stack_statistics().in_use == stacks + 1);  // kept
            bool raised = false;
            try {
                (void)zombie.switch_to();  // the unwinding resumes and ends in the parent
            } catch (const some_error&) {
                raised = true;
            }
            CHILD_CHECK(c, raised);
            CHILD_CHECK(c, zombie.dead());
            zombie = greenlet();
            CHILD_CHECK(c, greenfiber::live_greenlets() == live);
            CHILD_CHECK(c, greenfiber::stack_statistics().in_use == stacks);
            c.finish();
        },
        ::testing::ExitedWithCode(0),
        "cannot kill greenlet 'unwinding-error' \\(#[0-9]+\\): it is suspended while "
        "unwinding.*stack stays allocated");
}

// A plain destructor (not unwinding) that switches away inside a no_kill_scope, then the
// last handle is dropped. Once resumed and out of the scope, a later drop kills it.
TEST_F(GreenletUnkillableDeathTest, DroppedInsideANoKillScopeIsReportedNotTerminated) {
    EXPECT_EXIT(
        {
            child_checks c;
            report_log reports;
            report_scope rs(reports.handler());
            const std::size_t live = greenfiber::live_greenlets();
            strings log;
            greenlet g(
                [&] {
                    { parks_in_shielded_destructor p{log}; }
                    on_destroy d{log, "unwound by the later kill"};
                    (void)to_parent();
                },
                named("plain-destructor"));
            (void)g.switch_to();
            CHILD_CHECK(c, log == strings{"parked shielded"});
            CHILD_CHECK(c, !greenfiber::no_kill_scope::active());  // per greenlet: not here
            g = greenlet();
            CHILD_CHECK(c, reports.messages.size() == 1u);
            greenlet zombie = reports.take_source();
            CHILD_CHECK(c, zombie.active());
            (void)zombie.switch_to();  // leaves the destructor, parks again outside the scope
            CHILD_CHECK(c, (log == strings{"parked shielded", "resumed"}));
            zombie = greenlet();  // now an ordinary kill
            CHILD_CHECK(c, reports.messages.size() == 1u);
            CHILD_CHECK(
                c, (log == strings{"parked shielded", "resumed", "unwound by the later kill"}));
            CHILD_CHECK(c, greenfiber::live_greenlets() == live);
            c.finish();
        },
        ::testing::ExitedWithCode(0),
        "cannot kill greenlet 'plain-destructor' \\(#[0-9]+\\): it is suspended inside a "
        "no_kill_scope");
}

// throw_in() into a greenlet parked in a destructor fails in the caller and leaves the
// target as it was.
TEST_F(GreenletUnkillableDeathTest, ThrowIntoAGreenletParkedInADestructorThrowsInTheCaller) {
    EXPECT_EXIT(
        {
            child_checks c;
            strings log;
            greenlet unwinding(
                [&] {
                    parks_in_destructor p{log};
                    throw some_error("unwinding");
                },
                named("unwinding"));
            greenlet shielded([&] { parks_in_shielded_destructor p{log}; }, named("shielded"));
            (void)unwinding.switch_to();
            (void)shielded.switch_to();
            const std::string m1 = error_message([&] { (void)unwinding.throw_in(); });
            const std::string m2 = error_message([&] { (void)shielded.throw_in(key_error("no")); });
            std::fprintf(stderr, "%s\n%s\n", m1.c_str(), m2.c_str());
            CHILD_CHECK(c, contains(m1, "'unwinding'"));
            CHILD_CHECK(c, contains(m2, "'shielded'"));
            CHILD_CHECK(c, unwinding.active() && shielded.active());
            bool raised = false;
            try {
                (void)unwinding.switch_to();
            } catch (const some_error&) {
                raised = true;
            }
            CHILD_CHECK(c, raised);
            (void)shielded.switch_to();
            CHILD_CHECK(c, unwinding.dead() && shielded.dead());
            c.finish();
        },
        ::testing::ExitedWithCode(0),
        "cannot throw into greenlet 'unwinding'.*cannot throw into greenlet 'shielded'");
}

// At thread exit a thread_local (a hub, say) drops a greenlet parked in a destructor
// during unwinding. The report comes from that thread; the handle it shares is dropped
// after the thread is gone, which frees the stack without unwinding (reported too).
TEST_F(GreenletUnkillableDeathTest, ParkedInADestructorAtThreadExitIsReportedNotTerminated) {
    EXPECT_EXIT(
        {
            child_checks c;
            report_log reports;
            report_scope rs(reports.handler());
            const std::size_t live = greenfiber::live_greenlets();
            const std::size_t stacks = greenfiber::stack_statistics().in_use;
            strings log;
            std::thread t([&log] {
                (void)greenlet::current();  // its greenlet state outlives the holder below
                struct holder {
                    greenlet g;
                };
                static thread_local holder h;
                h.g = greenlet(
                    [&log] {
                        parks_in_destructor p{log};
                        throw some_error("unwinding");
                    },
                    named("at-thread-exit"));
                (void)h.g.switch_to();
            });
            t.join();
            CHILD_CHECK(c, log == strings{"parked while unwinding"});
            CHILD_CHECK(c, reports.messages.size() == 1u);
            greenlet zombie = reports.take_source();
            CHILD_CHECK(c, static_cast<bool>(zombie));
            zombie = greenlet();  // its thread has exited: freed without unwinding
            CHILD_CHECK(c, reports.messages.size() == 2u);
            CHILD_CHECK(c, contains(reports.messages.at(1), "after its thread exited"));
            CHILD_CHECK(c, greenfiber::live_greenlets() == live);
            CHILD_CHECK(c, greenfiber::stack_statistics().in_use == stacks);
            c.finish();
        },
        ::testing::ExitedWithCode(0),
        "cannot kill greenlet 'at-thread-exit' \\(#[0-9]+\\): it is suspended while unwinding");
}

}  // namespace
