// stacktrace.hpp: capturing the stack of the running, a suspended and the main greenlet,
// from a signal handler, and symbolising it into function, file and line.

#include <greenfiber/stack.hpp>
#include <greenfiber/stacktrace.hpp>

#include <alloca.h>
#include <signal.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <greenfiber/error.hpp>
#include <greenfiber/greenlet.hpp>
#include <greenfiber/value.hpp>

#include "leak_check.hpp"

namespace {

using greenfiber::greenlet;
using greenfiber::raw_stack;
using greenfiber::value;
using ::testing::HasSubstr;
using ::testing::Not;

class Stacktrace : public greenfiber::testing::leak_checked {};

// The symbolised stack, a frame a line.
std::string text(const raw_stack& s) {
    std::ostringstream os;
    greenfiber::print_stack(os, s);
    return os.str();
}

// Each test function below is a frame the captured stack must name: noinline, and with a
// call after the interesting one so that it is not a tail call.

[[gnu::noinline]] raw_stack capture_in_named_frame() {
    raw_stack s;
    greenfiber::capture_stack(s);
    asm volatile("" ::: "memory");
    return s;
}

TEST_F(Stacktrace, CapturesTheCallersFramesWithFunctionFileAndLine) {
    const raw_stack s = capture_in_named_frame();
    ASSERT_GT(s.size, 1u);
    const greenfiber::stack_frame top = greenfiber::symbolize(s.frames[0]);
    EXPECT_THAT(top.function, HasSubstr("capture_in_named_frame"));
    EXPECT_THAT(top.file, HasSubstr("stacktrace_test.cpp"));
    EXPECT_GT(top.line, 0u);
    EXPECT_THAT(greenfiber::to_string(top), HasSubstr("capture_in_named_frame"));
    EXPECT_THAT(greenfiber::to_string(top), HasSubstr("stacktrace_test.cpp:"));
    // The caller is the test body.
    EXPECT_THAT(text(s), HasSubstr("CapturesTheCallersFramesWithFunctionFileAndLine"));
    EXPECT_THAT(text(s), Not(HasSubstr("capture_here")));
}

[[gnu::noinline]] value parked_in_named_frame() {
    value v = greenlet::switch_to_parent(value(1));
    asm volatile("" ::: "memory");
    return v;
}

TEST_F(Stacktrace, SuspendedGreenletShowsItsPendingSwitchAndResumesUnaware) {
    greenlet g([](value) {
        value first = parked_in_named_frame();
        value second = parked_in_named_frame();
        return first.get<int>() * 100 + second.get<int>();
    });
    EXPECT_EQ(g.switch_to().get<int>(), 1);
    const raw_stack s = greenfiber::capture_stack(g);
    const std::string t = text(s);
    EXPECT_THAT(t, HasSubstr("parked_in_named_frame"));
    // Only its frames: not the capture's, not the capturing test's.
    EXPECT_THAT(t, Not(HasSubstr("capture_on_top")));
    EXPECT_THAT(t, Not(HasSubstr("_Test::TestBody() at")));
    // Captured again before it runs: the same frames (the earlier capture is left out).
    const raw_stack again = greenfiber::capture_stack(g);
    EXPECT_EQ(text(again), t);
    // It receives what is switched to it, exactly as without the captures.
    EXPECT_EQ(g.switch_to(value(7)).get<int>(), 1);
    EXPECT_THAT(text(greenfiber::capture_stack(g)), HasSubstr("parked_in_named_frame"));
    EXPECT_EQ(g.switch_to(value(8)).get<int>(), 708);
    EXPECT_TRUE(g.dead());
}

TEST_F(Stacktrace, ExceptionThrownIntoACapturedGreenletIsCaughtWhereItWaits) {
    std::string caught;
    greenlet g([&](value) {
        try {
            (void)parked_in_named_frame();
        } catch (const std::runtime_error& e) {
            caught = e.what();
        }
        return value(2);
    });
    (void)g.switch_to();
    (void)greenfiber::capture_stack(g);
    (void)greenfiber::capture_stack(g);
    EXPECT_EQ(g.throw_in(std::make_exception_ptr(std::runtime_error("boom"))).get<int>(), 2);
    EXPECT_EQ(caught, "boom");
}

TEST_F(Stacktrace, DroppedAfterACaptureIsKilledAndUnwound) {
    bool unwound = false;
    {
        greenlet g([&](value) {
            struct mark {
                bool& b;
                ~mark() { b = true; }
            } m{unwound};
            (void)parked_in_named_frame();
            return value();
        });
        (void)g.switch_to();
        EXPECT_THAT(text(greenfiber::capture_stack(g)), HasSubstr("parked_in_named_frame"));
    }
    EXPECT_TRUE(unwound);
}

TEST_F(Stacktrace, NotStartedAndDeadGreenletsHaveNoFrames) {
    greenlet g([](value) { return value(); });
    EXPECT_EQ(greenfiber::capture_stack(g).size, 0u);
    (void)g.switch_to();
    ASSERT_TRUE(g.dead());
    EXPECT_EQ(greenfiber::capture_stack(g).size, 0u);
}

[[gnu::noinline]] raw_stack capture_current_in_named_frame() {
    raw_stack s = greenfiber::capture_stack(greenlet::current());
    asm volatile("" ::: "memory");
    return s;
}

[[gnu::noinline]] value main_waits_in_named_frame(greenlet& g) {
    value v = g.switch_to();
    asm volatile("" ::: "memory");
    return v;
}

TEST_F(Stacktrace, TheRunningGreenletAndTheSuspendedMainGreenlet) {
    greenlet main = greenlet::current();
    std::string own;
    std::string of_main;
    greenlet g([&](value) {
        own = text(capture_current_in_named_frame());
        of_main = text(greenfiber::capture_stack(main));
        return value();
    });
    (void)main_waits_in_named_frame(g);
    EXPECT_THAT(own, HasSubstr("capture_current_in_named_frame"));
    EXPECT_THAT(own, Not(HasSubstr("main_waits_in_named_frame")));
    EXPECT_THAT(of_main, HasSubstr("main_waits_in_named_frame"));
    EXPECT_THAT(of_main, HasSubstr("TheRunningGreenletAndTheSuspendedMainGreenlet"));
    // The main greenlet's own capture, while running.
    EXPECT_THAT(text(capture_current_in_named_frame()),
                HasSubstr("capture_current_in_named_frame"));
}

[[gnu::noinline]] void park_here() {
    (void)greenlet::switch_to_parent();
    asm volatile("" ::: "memory");
}

std::string first_line(const std::string& s) {
    return s.substr(0, s.find('\n'));
}

// A greenlet with less than capture_stack_reserve free below its pending switch keeps only
// the capture's own frame on its stack: the unwinder runs aside, on the capturing stack
// (not under AddressSanitizer, where it yields no frame). The frames are those a capture
// with room finds, from the same pending switch; captured again, the same; the greenlet
// resumes as if nothing happened.
TEST_F(Stacktrace, AGreenletWithLittleFreeStackIsCapturedAsideAndStillResumes) {
    greenlet roomy([&](value) {
        park_here();
        return value(1);
    });
    (void)roomy.switch_to();
    const std::string expected = text(greenfiber::capture_stack(roomy));
    ASSERT_THAT(expected, HasSubstr("park_here"));

    std::size_t size = 0;
    greenlet g([&](value) {
        size = greenlet::current().stack_size();
        // Leave less than capture_stack_reserve free below the pending switch.
        const std::size_t take = size - greenfiber::capture_stack_reserve / 2;
        char* p = static_cast<char*>(alloca(take - 8 * 1024));
        std::memset(p, 0, 64);  // touch only the top: the rest stays uncommitted
        asm volatile("" : : "r"(p) : "memory");
        park_here();
        return value(3);
    });
    (void)g.switch_to();
    for (int i = 0; i < 2; ++i) {
        const raw_stack s = greenfiber::capture_stack(g);
        if (GREENFIBER_ASAN) {
            EXPECT_EQ(s.size, 0u);
        } else {
            EXPECT_THAT(text(s), HasSubstr("park_here"));
            EXPECT_EQ(first_line(text(s)), first_line(expected));
        }
    }
    EXPECT_EQ(g.switch_to().get<int>(), 3);
    EXPECT_EQ(roomy.switch_to().get<int>(), 1);
}

// A small stack of 1 280 bytes with a 300-byte buffer on it keeps about 400 bytes free
// below the pending switch: less than the capture's 512, so it is not entered, yields no
// frame and still resumes. (The same on 2 048 bytes is captured: the test above.)
TEST_F(Stacktrace, ASmallStackWithoutRoomForTheCapturesFrameYieldsNoFrame) {
    greenlet::options o;
    o.small_stack = 1280;
    greenlet g(
        [&](value) {
            volatile char buf[300];
            buf[0] = 1;
            park_here();
            return value(buf[0] + 1);
        },
        std::move(o));
    (void)g.switch_to();
    EXPECT_EQ(greenfiber::capture_stack(g).size, 0u);
    EXPECT_EQ(g.switch_to().get<int>(), 2);
}

TEST_F(Stacktrace, AnEmptyHandleOrAnotherThreadsGreenletIsRefused) {
    greenlet empty;
    EXPECT_THROW((void)greenfiber::capture_stack(empty), greenfiber::error);
    greenlet main = greenlet::current();
    std::string message;
    std::thread t([&] {
        try {
            (void)greenfiber::capture_stack(main);
        } catch (const greenfiber::error& e) {
            message = e.what();
        }
    });
    t.join();
    EXPECT_THAT(message, HasSubstr("only on its own thread"));
}

raw_stack sampled;  // filled by the handler: preallocated, as a sampler's would be

void sample_handler(int) {
    greenfiber::capture_stack(sampled);
    asm volatile("" ::: "memory");
}

[[gnu::noinline]] void signalled_in_named_frame() {
    raise(SIGUSR2);
    asm volatile("" ::: "memory");
}

TEST_F(Stacktrace, ASignalHandlerCapturesTheInterruptedFrames) {
    struct sigaction sa {};
    struct sigaction old {};
    sa.sa_handler = &sample_handler;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR2, &sa, &old), 0);
    sampled = raw_stack{};
    signalled_in_named_frame();
    sigaction(SIGUSR2, &old, nullptr);
    EXPECT_THAT(text(sampled), HasSubstr("sample_handler"));
    EXPECT_THAT(text(sampled), HasSubstr("signalled_in_named_frame"));
}

[[gnu::always_inline]] inline void capture_in_inlined_call(raw_stack& s) {
    greenfiber::capture_stack(s);
    asm volatile("" ::: "memory");
}

[[gnu::noinline]] raw_stack capture_under_inlined_call() {
    raw_stack s;
    capture_in_inlined_call(s);
    asm volatile("" ::: "memory");
    return s;
}

TEST_F(Stacktrace, CallsInlinedAtAnAddressAreListedInnermostFirst) {
    const raw_stack s = capture_under_inlined_call();
    ASSERT_GT(s.size, 0u);
    const std::vector<greenfiber::stack_frame> at = greenfiber::symbolize_inlined(s.frames[0]);
    ASSERT_GE(at.size(), 2u);
    EXPECT_THAT(at.front().function, HasSubstr("capture_in_inlined_call"));
    EXPECT_TRUE(at.front().inlined);
    EXPECT_THAT(at.front().file, HasSubstr("stacktrace_test.cpp"));
    EXPECT_THAT(at.back().function, HasSubstr("capture_under_inlined_call"));
    EXPECT_FALSE(at.back().inlined);
    // symbolize() names the function that owns the address.
    EXPECT_THAT(greenfiber::symbolize(s.frames[0]).function,
                HasSubstr("capture_under_inlined_call"));
    EXPECT_THAT(text(s), HasSubstr("capture_in_inlined_call at "));
    EXPECT_THAT(text(s), HasSubstr("(inlined)"));
}

[[gnu::noinline]] int first_byte_owner(int x) {
    asm volatile("" ::: "memory");
    return x + 1;
}

// Regression: a sampled program counter at a function's first byte (a busy loop starting
// there) was looked up one byte before, in whatever function precedes it.
TEST_F(Stacktrace, AnInterruptedInstructionAtAFunctionsFirstByteNamesThatFunction) {
    void* entry = reinterpret_cast<void*>(&first_byte_owner);
    EXPECT_THAT(greenfiber::symbolize(entry, true).function, HasSubstr("first_byte_owner"));
    EXPECT_THAT(greenfiber::symbolize(entry).function, Not(HasSubstr("first_byte_owner")));
    raw_stack s;
    s.frames[0] = entry;
    s.size = 1;
    s.first_is_instruction = true;
    EXPECT_THAT(text(s), HasSubstr("#0 (anonymous namespace)::first_byte_owner(int) at "));
    EXPECT_EQ(first_byte_owner(1), 2);
}

TEST_F(Stacktrace, AnAddressWithoutSymbolsPrintsAsHex) {
    greenfiber::stack_frame f;
    f.address = reinterpret_cast<void*>(0x1234);
    EXPECT_EQ(greenfiber::to_string(f), "0x1234");
    EXPECT_EQ(greenfiber::symbolize(nullptr).function, "");
}

}  // namespace
