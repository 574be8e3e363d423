// Call stacks of greenlets: capture (also of a suspended greenlet, on top of its context)
// and symbolisation. Read the comment of greenfiber/stacktrace.hpp first.

#include "greenfiber/stacktrace.hpp"

#include <cstdint>
#include <cstdio>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

// Symbolisation through gcc's libbacktrace (linked statically, see fibers/meson.build):
// function, file and line from the DWARF information, in the program and in shared
// libraries alike. Boost's default backend names functions only (dladdr).
#define BOOST_STACKTRACE_USE_BACKTRACE
#include <backtrace.h>

#include <boost/context/detail/fcontext.hpp>
#include <boost/core/demangle.hpp>
#include <boost/stacktrace/frame.hpp>
#include <boost/stacktrace/safe_dump_to.hpp>

#include "detail/stack_pool.hpp"
#include "greenfiber/detail/greenlet_impl.hpp"
#include "greenfiber/error.hpp"
#include "greenfiber/greenlet.hpp"

namespace greenfiber {

namespace {

namespace bctx = boost::context::detail;

// The capture shared by both forms: the calling stack, without this function and its
// `skip` innermost callers. noinline: the frame count below depends on it being a frame.
[[gnu::noinline]] void capture_here(raw_stack& out, std::size_t skip) noexcept {
    // safe_dump_to leaves out its own frames; the first address it writes is ours.
    // It writes a terminating null when there is room: one slot more than we keep.
    void* buf[raw_stack::capacity + 2];
    std::size_t n = boost::stacktrace::safe_dump_to(skip + 1, buf,
                                                    sizeof(buf) / sizeof(buf[0]) * sizeof(void*));
    while (n > 0 && buf[n - 1] == nullptr) --n;
    if (n > raw_stack::capacity) n = raw_stack::capacity;
    for (std::size_t i = 0; i < n; ++i) out.frames[i] = buf[i];
    out.size = n;
    asm volatile("" ::: "memory");  // no tail call: this frame must exist while unwinding
}

#if GREENFIBER_CALL_ON_STACK && !GREENFIBER_ASAN
constexpr bool can_capture_aside = true;
#else
// Elsewhere, and under AddressSanitizer (whose view of the stacks the frame would bypass), a
// greenlet without room for the capture yields no frame.
constexpr bool can_capture_aside = false;
#endif

// The room the capture leaves on a suspended greenlet's stack when it runs aside: the frame of
// capture_on_top and the context it saves there, which stay until the greenlet is resumed.
constexpr std::size_t capture_aside_room = 512;

// What the capturing greenlet hands to the capture running on top of the suspended one.
struct capture_request {
    raw_stack* out;
    detail::greenlet_impl* target;
    // The capture runs on the capturing greenlet's stack, below the context it saved (the
    // suspended greenlet has less than capture_stack_reserve bytes left).
    bool aside = false;
#if GREENFIBER_ASAN
    const void* from_bottom = nullptr;  // the capturing greenlet's stack, for the way back
    std::size_t from_size = 0;
#endif
};

#if GREENFIBER_CALL_ON_STACK && !GREENFIBER_ASAN
struct aside_capture {
    raw_stack* out;
    std::size_t earlier;  // captures the greenlet is still suspended in
};

// On the capturing greenlet's stack, called through greenfiber_call_on_stack by
// capture_aside: leaves out itself, the call's frame, capture_on_top and the earlier
// captures. noinline, and no tail call: the count depends on this frame.
[[gnu::noinline]] std::uintptr_t capture_aside_entry(void* p) {
    auto* c = static_cast<aside_capture*>(p);
    capture_here(*c->out, 3 + c->earlier);
    asm volatile("" ::: "memory");
    return 0;
}

// Runs the capture below `capturer`, the context the capturing greenlet saved when it
// switched here: that greenlet is suspended, so the memory below its stack pointer is free
// (capture_stack checked that there is room).
void capture_aside(void* capturer, raw_stack& out, std::size_t earlier) noexcept {
    aside_capture c{&out, earlier};
    const auto below = reinterpret_cast<std::uintptr_t>(capturer) - 256;  // leave its red zone
    greenfiber_call_on_stack(&c, &capture_aside_entry,
                             reinterpret_cast<char*>(below & ~std::uintptr_t{15}));
}
#else
void capture_aside(void*, raw_stack&, std::size_t) noexcept {}
#endif

// The free stack below the caller's frame on the stack it runs on: the current greenlet's
// when the caller is on it, else unbounded for this purpose (the thread's side stack, the
// main thread's stack beyond the greenlet's recorded bounds).
std::size_t room_here(const detail::greenlet_impl* current) noexcept {
    const auto sp = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
    const auto lo = reinterpret_cast<std::uintptr_t>(current->stack_lo);
    if (lo == 0 || sp < lo || sp - lo >= current->stack_size) return SIZE_MAX;
    return sp - lo;
}

// Runs on the suspended greenlet's stack, called by ontop_fcontext in place of the return
// of that greenlet's pending jump: its caller chain is the greenlet's own frames. It
// captures them, jumps back to the capturing greenlet, and stays suspended right here.
// When the greenlet is next resumed by a normal switch, that jump returns the resumer's
// transfer, and returning it completes the greenlet's original pending jump as if nothing
// had happened in between (ontop_fcontext left that jump's return address on the stack).
// The sanitizer's switch annotations mirror those of a switch (greenlet_impl.hpp): the
// finish on arrival here, the start before jumping back; the normal resume later is
// annotated by the resumer and finished by arrive() in the greenlet.
bctx::transfer_t capture_on_top(bctx::transfer_t t) {
    auto* req = static_cast<capture_request*>(t.data);
#if GREENFIBER_ASAN
    __sanitizer_finish_switch_fiber(req->target->asan_fake, &req->from_bottom, &req->from_size);
#endif
    // Leaves out this frame, and the frames of earlier captures the greenlet is still
    // suspended in (each is one frame): the first address is its pending switch.
    detail::greenlet_impl* const target = req->target;
    if (req->aside) {
        capture_aside(t.fctx, *req->out, target->captures_on_top);
    } else {
        capture_here(*req->out, 1 + target->captures_on_top);
    }
    ++target->captures_on_top;
#if GREENFIBER_ASAN
    __sanitizer_start_switch_fiber(&target->asan_fake, req->from_bottom, req->from_size);
#endif
    // req lives on the capturing greenlet's stack: not touched after this jump.
    const bctx::transfer_t resumed = bctx::jump_fcontext(t.fctx, nullptr);
    --target->captures_on_top;
    return resumed;
}

}  // namespace

void capture_stack(raw_stack& out, std::size_t skip) noexcept {
    out.first_is_instruction = false;
    capture_here(out, skip + 1);
    asm volatile("" ::: "memory");  // no tail call: the skip above counts this frame
}

raw_stack capture_stack(const greenlet& g) {
    detail::greenlet_impl* target = detail::access::impl(g);
    if (target == nullptr) throw error("greenfiber: capture_stack of an empty greenlet handle");
    detail::thread_state& ts = detail::this_thread();
    if (target->owner != &ts) {
        throw error("greenfiber: capture_stack of " + g.describe() +
                    " from another thread: a greenlet's stack can be captured only on its own "
                    "thread");
    }
    raw_stack out;
    if (target == ts.current) {
        capture_here(out, 1);  // leaves out this function
        return out;
    }
    if (target->ctx == nullptr) return out;  // not started, or dead: no frames
    // The capture runs below the saved stack pointer: there must be room for it. The main
    // greenlet's bounds are the thread's (stack_lo is its lowest address). A greenlet with
    // less room left (a small stack, a full paged one) keeps only capture_on_top's frame,
    // and the unwinder runs aside, on this greenlet's stack while it waits for the capture.
    const auto sp = reinterpret_cast<std::uintptr_t>(target->ctx);
    const auto lo = reinterpret_cast<std::uintptr_t>(target->stack_lo);
    capture_request req{&out, target};
    if (lo != 0 && sp - lo < capture_stack_reserve) {
        if (!can_capture_aside || sp - lo < capture_aside_room ||
            room_here(ts.current) < capture_stack_reserve)
            return out;
        req.aside = true;
    }
    void* to = std::exchange(target->ctx, nullptr);
#if GREENFIBER_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, target->stack_lo, target->stack_size);
#endif
    const bctx::transfer_t back = bctx::ontop_fcontext(to, &req, &capture_on_top);
#if GREENFIBER_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    // Suspended again, now inside capture_on_top: its next resume goes through it.
    target->ctx = back.fctx;
    return out;
}

namespace {

// libbacktrace's state for the calling thread, as Boost.Stacktrace keeps its own: a state
// shared by threads crashes in a shared library (gcc bug 87653). It reads the program's
// and every loaded library's debug information on first use and keeps it (never freed,
// like Boost's). Null when the program cannot be read.
backtrace_state* thread_backtrace_state() noexcept {
    thread_local backtrace_state* state = backtrace_create_state(
        nullptr, 0, [](void*, const char*, int) {}, nullptr);
    return state;
}

// Collects the frames libbacktrace reports for one address: innermost inlined call first.
int collect_frame(void* data, std::uintptr_t, const char* file, int line,
                  const char* function) noexcept {
    try {
        auto& out = *static_cast<std::vector<stack_frame>*>(data);
        stack_frame f;
        if (function != nullptr) f.function = boost::core::demangle(function);
        if (file != nullptr) f.file = file;
        f.line = line > 0 ? static_cast<std::size_t>(line) : 0;
        f.inlined = true;
        out.push_back(std::move(f));
        return 0;
    } catch (...) {
        return 1;  // stop: out of memory
    }
}

}  // namespace

std::vector<stack_frame> symbolize_inlined(void* address, bool instruction) {
    std::vector<stack_frame> out;
    if (address == nullptr) {
        out.emplace_back();
        return out;
    }
    const auto pc = reinterpret_cast<std::uintptr_t>(address) - (instruction ? 0 : 1);
    if (backtrace_state* state = thread_backtrace_state())
        backtrace_pcinfo(
            state, pc, &collect_frame, [](void*, const char*, int) {}, &out);
    if (out.empty()) out.emplace_back();
    // The owning function by its qualified name: the debug information often holds only
    // the short one ("TestBody", "operator()"); Boost.Stacktrace reads the symbol tables
    // (dladdr, then the ELF symbols) and falls back on the debug information.
    std::string qualified = boost::stacktrace::frame(reinterpret_cast<void*>(pc)).name();
    if (!qualified.empty()) out.back().function = std::move(qualified);
    out.back().inlined = false;
    // Inlined calls inside the C++ standard library (std::invoke, std::apply and their
    // helpers, between a task's body and the user's lambda) say nothing to the reader.
    std::erase_if(out, [](const stack_frame& f) {
        return f.inlined && f.file.find("/include/c++/") != std::string::npos;
    });
    for (stack_frame& f : out) f.address = address;
    return out;
}

stack_frame symbolize(void* address, bool instruction) {
    std::vector<stack_frame> all = symbolize_inlined(address, instruction);
    stack_frame f = std::move(all.back());
    // The line that is executing in the owning function is where the first inlined call
    // sits: the outermost record carries it.
    return f;
}

std::string to_string(const stack_frame& f) {
    std::string s;
    if (!f.function.empty()) {
        s = f.function;
    } else {
        char hex[2 + 2 * sizeof(void*) + 1];
        std::snprintf(hex, sizeof(hex), "%p", f.address);
        s = hex;
    }
    if (!f.file.empty()) {
        s += " at " + f.file;
        if (f.line != 0) {
            s += ':';  // not ":" + to_string(): g++ 12's -Wrestrict misreads it in release builds
            s += std::to_string(f.line);
        }
    }
    return s;
}

void print_stack(std::ostream& os, const raw_stack& s, std::string_view indent) {
    for (std::size_t i = 0; i < s.size; ++i) {
        for (const stack_frame& f :
             symbolize_inlined(s.frames[i], i == 0 && s.first_is_instruction)) {
            os << indent << '#' << i << ' ' << to_string(f) << (f.inlined ? " (inlined)" : "")
               << '\n';
        }
    }
}

}  // namespace greenfiber
