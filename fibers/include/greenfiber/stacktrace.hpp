#pragma once
/// \file
/// Call stacks of greenlets: raw return addresses captured cheaply (from a signal handler
/// too, and of a suspended greenlet), symbolised later into "function at file:line".
///
/// Capture and symbolisation are apart on purpose. Capturing walks the stack with the C++
/// runtime's unwinder (`_Unwind_Backtrace`, through Boost.Stacktrace's safe_dump_to): no
/// allocation, no lock of ours, so a signal handler can sample a thread that is blocked.
/// Symbolising reads DWARF line tables and allocates: it runs later, on a thread that can
/// afford it, with gcc's libbacktrace behind Boost.Stacktrace (function, file and line
/// from the debug information, including a frame in a shared library and code built with
/// -O2 -g). Without debug information a frame still gets its function name where the
/// symbol table has one, or its address.
///
/// A suspended greenlet's stack is captured by running the capture on top of it: the
/// calling greenlet jumps into the suspended context with Boost.Context's ontop_fcontext,
/// which calls the capture as if the greenlet's own pending switch had called it, so the
/// unwinder walks exactly that greenlet's frames. The capture jumps straight back, and the
/// greenlet is left suspended inside it; when it is next resumed the capture returns the
/// resumer's transfer to the original switch, so the greenlet never notices. The switch path
/// pays nothing for it. Unwinding from the saved registers instead (libunwind's
/// unw_init_local2 on a forged context) would need a second unwinder, a hand-built register
/// set matching Boost.Context's private save layout, and libunwind's own view of the
/// runtime's unwind tables; the on-top call reuses the one unwinder that C++ exceptions
/// already rely on for those frames.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <array>
#include <cstddef>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace greenfiber {

class greenlet;

/// The raw return addresses of one call stack, innermost first. Fixed capacity and no
/// allocation, so that a signal handler can fill one made beforehand.
struct raw_stack {
    /// At most this many frames are kept: the innermost ones.
    static constexpr std::size_t capacity = 64;
    /// frames[0] .. frames[size - 1] hold the addresses, innermost first.
    std::array<void*, capacity> frames{};
    /// How many frames were captured (0: none, e.g. a greenlet that never started).
    std::size_t size = 0;
    /// frames[0] is the interrupted instruction itself, not a return address: set by whoever
    /// captures from a signal handler (the stall monitor). It is symbolised as it is, since
    /// one byte before it may be another function (a busy loop at a function's first byte).
    bool first_is_instruction = false;
};

/// Captures the calling thread's current stack into `out`, leaving out capture_stack itself
/// and the `skip` innermost frames of its callers.
/// Async-signal-safe as far as the C++ runtime's unwinder is: it allocates nothing and
/// takes no lock of greenfiber's. The unwinder's first use in a process may allocate (it
/// registers the loaded modules' unwind tables): call it once outside the handler first.
/// Switches: no.   Thread: any (captures the calling thread).
void capture_stack(raw_stack& out, std::size_t skip = 0) noexcept;

/// Captures the stack of `g`: the calling code's own stack when `g` is running (the
/// caller's frames, capture_stack left out), the frames of its pending switch when it is
/// suspended (see the file comment), nothing when it has not started or is dead. A
/// suspended greenlet with less than capture_stack_reserve bytes of free stack (a small
/// stack, a nearly full paged one) keeps only the capture's own frame and the context it
/// saves (48 bytes) until it resumes: the unwinder runs on the capturing stack
/// below the point where it waits (Linux x86-64, not under AddressSanitizer; elsewhere such
/// a greenlet yields no frame). One with less than 512 bytes left, or a capturing stack
/// with less than capture_stack_reserve free, yields no frame.
/// Switches: into `g` and straight back when `g` is suspended, without running any of its
/// code and without changing greenlet::current() or anything `g` can observe.
/// Thread: thread-bound (only `g`'s own thread).
/// Throws: greenfiber::error for an empty handle or a greenlet of another thread.
raw_stack capture_stack(const greenlet& g);

/// The free stack a suspended greenlet needs for capture_stack(const greenlet&) to run the
/// unwinder on top of it (its own frames with room to spare); the capturing stack needs as
/// much when the capture runs aside.
constexpr std::size_t capture_stack_reserve = 16 * 1024;

/// One frame of a stack, symbolised. Empty strings and a zero line for what is unknown.
struct stack_frame {
    void* address = nullptr;  ///< The return address (or the interrupted instruction).
    std::string function;     ///< The demangled function name.
    std::string file;         ///< Its source file, from the debug information.
    std::size_t line = 0;     ///< Its source line, 0 if unknown.
    /// A call the compiler inlined into the next frame of the same address (see
    /// symbolize_inlined()); the real function, which owns the address, has false.
    bool inlined = false;
};

/// Symbolises one captured address: the function that owns it, with the file and line of
/// the address (for a call inlined into that function: the line of the inlined call). A
/// return address points after its call, possibly into the next line or function, so the
/// lookup uses the address one byte before it; an `instruction` (a sampled program counter)
/// is looked up as it is.
/// Switches: no.   Thread: thread-safe (each thread keeps its own symbolisation state).
/// Throws: std::bad_alloc.
stack_frame symbolize(void* address, bool instruction = false);

/// Symbolises one captured address with the calls inlined at it, as a debugger shows them:
/// the innermost inlined call first (`inlined` set), the function that owns the address
/// last. An optimised build inlines small functions, a lambda into its caller's template,
/// so this is how a line of the user's own code in such a frame shows up. Never empty.
/// Switches: no.   Thread: thread-safe.   Throws: std::bad_alloc.
std::vector<stack_frame> symbolize_inlined(void* address, bool instruction = false);

/// "function at file:line", with what is known: the function alone without debug
/// information, the address in hex when nothing is. Switches: no.   Throws: std::bad_alloc.
std::string to_string(const stack_frame& f);

/// Writes each frame of `s` on a line of its own: `indent`, "#<n> " and to_string() of the
/// symbolised frame, with the calls inlined at it first (symbolize_inlined()), each marked
/// "(inlined)" and numbered with its frame's number. Switches: no.   Thread: thread-safe.   Throws:
/// std::bad_alloc; what the stream throws.
void print_stack(std::ostream& os, const raw_stack& s, std::string_view indent = "    ");

}  // namespace greenfiber
