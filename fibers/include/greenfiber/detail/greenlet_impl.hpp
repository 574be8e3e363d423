#pragma once
// Not API: the greenlet control block and the inline fast path of a switch.
//
// Why inline: a switch function called out of line returns (`ret`) on another stack than
// the one it was called on, so the CPU's return-stack predictor misses on every switch
// (DESIGN.md: 2.3x the raw context jump out of line, 1.08x inline). The fast path below is
// therefore in the header; the rare cases (first start, dead target, wrong thread, trace
// hook, remote kills) are out of line in greenlet.cpp. The context jump itself is behind
// detail::jump() so that no Boost.Context header reaches users' code.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <typeinfo>

#include "greenfiber/value.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define GREENFIBER_ASAN 1
#else
#define GREENFIBER_ASAN 0
#endif

#if defined(__GNUC__)
// The switch must be inlined into its caller even where the compiler's heuristics would not
// (a caller that is itself large): see the note at the top.
#define GREENFIBER_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define GREENFIBER_ALWAYS_INLINE inline
#endif

#if defined(__GNUC__)
// The hot thread-local is read with one %fs-relative load, not __tls_get_addr.
#define GREENFIBER_TLS_MODEL __attribute__((tls_model("initial-exec")))
#else
#define GREENFIBER_TLS_MODEL
#endif

namespace greenfiber::detail {
// What a context jump returns: the context that jumped to us and the data it passed.
struct transfer {
    void* ctx;
    void* data;
};
}  // namespace greenfiber::detail

// Saves the calling context and jumps to `to`, passing `data`. Returns when a context
// jumps back, with that context and its data. This is Boost.Context's fcontext jump,
// declared under our own C++ name with its assembler name, so that the inline switch
// calls it directly without Boost.Context's headers reaching users' code (a port to
// another backend changes this declaration only). Calling it straight from the inline
// switch matters: a wrapper function would `ret` on another stack than it was called on.
// Switches: yes (always).   Thread: the contexts must belong to the calling thread.
extern "C" greenfiber::detail::transfer greenfiber_jump(void* to, void* data) noexcept
    __asm__("jump_fcontext");

namespace greenfiber::detail {

inline transfer jump(void* to, void* data) noexcept {
    return greenfiber_jump(to, data);
}

// A copy of the C++ runtime's per-thread exception state (__cxa_eh_globals in the
// Itanium ABI: the caught-exception stack and std::uncaught_exceptions()). Each greenlet
// has its own, swapped at every switch, so a `catch` block survives a switch away.
struct eh_state {
    void* caught = nullptr;
    unsigned int uncaught = 0;
};

// A message in flight: exactly one of the two is set. Both point into the sender's frame,
// which stays intact until the receiver has moved the object out (a dying sender's stack
// is released only after that).
struct message {
    value* val = nullptr;
    std::exception_ptr* exc = nullptr;
};

// The function a greenlet runs, type-erased. Owned by its greenlet until it finishes.
struct run_base {
    virtual ~run_base() = default;
    // Runs the function with the first switch's value.
    virtual value invoke(value&& arg) = 0;
    // Whether `arg` can start the function (its parameter type matches).
    virtual bool accepts(const value& arg) const noexcept = 0;
    // The parameter type: typeid(void) for none, typeid(value) for any.
    virtual const std::type_info& parameter() const noexcept = 0;
};

enum class gstate : std::uint8_t { not_started, alive, dead };

struct thread_state;

// The control block of one greenlet. Thread-bound: only its owner thread touches it,
// except `refs`, which any thread may decrement (the last one hands the greenlet back to
// its owner; see release()).
struct greenlet_impl {
    void* ctx = nullptr;  // Saved context while suspended; null if current, not started or dead.
    thread_state* owner;  // The thread this greenlet lives on. Strong reference.
    // What it waits for while an upper layer's scheduler (io/: the hub) has parked it, else
    // null. Only that scheduler may then resume it with a value (switch_value()); a public
    // switch carrying a value to it throws instead of ending the wait early. Set and
    // cleared by the scheduler around the park; points at a static or longer-lived string.
    const char* parked_for = nullptr;
    greenlet_impl* parent = nullptr;  // Strong reference; null only for a main greenlet.
    // The word at the stack limit of an unguarded stack; a static zero word for main and
    // for a guarded stack, whose guard page catches what the canary would (take_stack).
    const std::uintptr_t* canary;
    // The lowest valid saved stack pointer: the bottom of its stack (0 for main, whose
    // thread stack is the system's to guard). Checked at every switch out (see arrive()).
    std::uintptr_t sp_limit = 0;
    eh_state eh;
    std::atomic<std::uint32_t> refs{1};
    gstate state = gstate::not_started;
    bool is_main = false;
    bool orphaned = false;  // every handle went away while it was running
    bool stack_guarded = false;
    void* stack_lo = nullptr;    // usable bottom of the stack (the canary is there)
    std::size_t stack_size = 0;  // requested size (0: default) until started, then actual
    run_base* run = nullptr;     // Owned; null once finished or when created without one.
    void* asan_fake = nullptr;
    void* local = nullptr;  // Borrowed: the upper layer's record of this greenlet (io/: its task).
    // Null when the block was allocated by `new`. Otherwise the block lives in storage that an
    // upper layer allocated with an object of its own (io/: the task's allocation), and its
    // last release calls this, on the owner thread (or after the owner exited), to destroy the
    // block and give the storage back.
    void (*dispose)(greenlet_impl* g) noexcept = nullptr;
    std::uint32_t no_kill = 0;  // open no_kill_scopes on this greenlet's stack
    // Stack captures (stacktrace.cpp) it is suspended inside: each left one frame above its
    // pending switch, until the greenlet is resumed. Touched only by the capture.
    std::uint32_t captures_on_top = 0;
    std::uint64_t id;
    std::string name;
};

// The smallest paged stack. A stack size below it (and above 0) is a small stack's
// (stack.hpp, "Small stacks"): greenlet's constructor turns a stack_size below it into this.
constexpr std::size_t paged_stack_min = 16384;

// Whether `g` runs, or will run, on a small stack: one with no room for the library's heavier
// paths (a stack's allocation and its failure report), which must then run elsewhere.
inline bool on_small_stack(const greenlet_impl* g) noexcept {
    return g->stack_size != 0 && g->stack_size < paged_stack_min;
}

// Calls fn(arg) on a stack of the thread's own (64 KiB) when the running greenlet has a
// small stack, else right here: for the library's heavier paths that may run inside any
// fiber (reports, formatting). `fn` must not switch nor throw. Thread-bound.
void on_side_stack(void (*fn)(void*) noexcept, void* arg) noexcept;

// The canary is the lowest word of a stack, which no frame reaches unless the stack
// overflowed. Its expected value is zero: memory that was never written reads as zero
// without being committed, so checking it costs no resident page.
constexpr std::uintptr_t canary_value = 0;

// Post-switch work for the receiving side; set by the sender, cleared by the receiver.
enum post_bits : unsigned {
    post_dead = 1,      // the sender died: release its stack once its message is taken
    post_trace = 2,     // call the trace hook
    post_after = 4,     // run the after-switch action
    post_orphaned = 8,  // the sender lost its last handle while running: kill or free it
};

struct thread_state {
    greenlet_impl* current;  // The running greenlet. Borrowed (main is owned below).
    eh_state* eh_globals;    // This thread's __cxa_eh_globals, cached: it never moves.
    message msg;             // The message of the switch in progress.
    unsigned post = 0;       // post_bits for the receiver of the switch in progress.
    void (*after_fn)(void*) noexcept = nullptr;  // see post_after
    void* after_arg = nullptr;
    // Set while any switch must take the slow path (trace hook, remote kills pending).
    // Written by other threads for remote kills, hence atomic.
    std::atomic<bool> slow{false};
};

// This thread's state; null until the thread first uses greenlets.
// constinit: no dynamic initialisation, so no TLS wrapper call on access.
extern constinit thread_local thread_state* tls GREENFIBER_TLS_MODEL;

thread_state* init_thread_state();
inline thread_state& this_thread() {
    thread_state* ts = tls;
    if (ts == nullptr) [[unlikely]]
        ts = init_thread_state();
    return *ts;
}

[[noreturn]] void stack_overflow(greenlet_impl* g) noexcept;
[[noreturn]] void stack_pointer_overflow(greenlet_impl* g, void* sp) noexcept;
value post_switch(greenlet_impl* prev);
[[noreturn]] void rethrow_message(std::exception_ptr* exc);

// Receiving side of every switch: records the context of the greenlet that jumped to us,
// then takes the message. Runs on the receiver's stack, right after the jump.
GREENFIBER_ALWAYS_INLINE value arrive(transfer t) {
    thread_state& ts = *tls;
#if GREENFIBER_ASAN
    __sanitizer_finish_switch_fiber(ts.current->asan_fake, nullptr, nullptr);
#endif
    auto* prev = static_cast<greenlet_impl*>(t.data);
    prev->ctx = t.ctx;
    // The saved context sits at the stack pointer of the greenlet that left: below its
    // stack, a frame overflowed it without touching the canary (a frame larger than the
    // rest of the stack, on a stack that has no guard page past the guard budget).
    if (reinterpret_cast<std::uintptr_t>(t.ctx) < prev->sp_limit) [[unlikely]]
        stack_pointer_overflow(prev, t.ctx);
    if (ts.post != 0) [[unlikely]]
        return post_switch(prev);
    if (ts.msg.exc != nullptr) [[unlikely]]
        rethrow_message(ts.msg.exc);
    return std::move(*ts.msg.val);
}

// Suspends `self` (the running greenlet) and resumes `target` (suspended, same thread).
// The message is already in ts.msg. Returns the message of the switch back into `self`.
// Invariant: nothing on this stack may be cached across jump() except what is re-read
// after it; thread_locals are safe because greenlets never change threads.
GREENFIBER_ALWAYS_INLINE value resume(thread_state& ts, greenlet_impl* self,
                                      greenlet_impl* target) {
    if (*self->canary != canary_value) [[unlikely]]
        stack_overflow(self);
    eh_state* g = ts.eh_globals;
    self->eh = *g;
    *g = target->eh;
    ts.current = target;
    void* to = target->ctx;
    target->ctx = nullptr;
#if GREENFIBER_ASAN
    __sanitizer_start_switch_fiber(self->state == gstate::dead ? nullptr : &self->asan_fake,
                                   target->stack_lo, target->stack_size);
#endif
    return arrive(jump(to, self));
}

value switch_slow(greenlet_impl* target, message m);
// Gives a not-started greenlet of this thread, whose function takes no value, its stack and
// initial context, so that a scheduler's first switch into it with an empty value takes the
// inline path. False when it is not such a greenlet or the stack could not be had (it is
// then left unstarted, and the switch that starts it raises the failure as always).
bool prepare_start(greenlet_impl* g) noexcept;
value switch_slow_checked(greenlet_impl* target, message m);

// The whole of a switch when the target is suspended on this thread: the inline fast
// path, else the slow one. `Checked` refuses a target parked by the upper layer's
// scheduler (see greenlet_impl::parked_for); that costs one load and a branch (parked_for
// sits beside ctx, on the line already loaded), and the slow path then refuses it.
template <bool Checked>
GREENFIBER_ALWAYS_INLINE value switch_inline(greenlet_impl* target, value& v) {
    thread_state* ts = tls;
    if (ts != nullptr && target != nullptr && target->ctx != nullptr && target->owner == ts &&
        (!Checked || target->parked_for == nullptr) && !ts->slow.load(std::memory_order_relaxed))
        [[likely]] {
        ts->msg = message{&v, nullptr};
        return resume(*ts, ts->current, target);
    }
    return Checked ? switch_slow_checked(target, message{&v, nullptr})
                   : switch_slow(target, message{&v, nullptr});
}

// A switch that may resume a fiber parked by the scheduler: the scheduler's own wake-up.
GREENFIBER_ALWAYS_INLINE value switch_value(greenlet_impl* target, value& v) {
    return switch_inline<false>(target, v);
}

// greenlet::switch_to(v): users' switches, which never resume a parked fiber.
GREENFIBER_ALWAYS_INLINE value switch_checked(greenlet_impl* target, value& v) {
    return switch_inline<true>(target, v);
}

void last_release(greenlet_impl* g) noexcept;

inline void retain(greenlet_impl* g) noexcept {
    g->refs.fetch_add(1, std::memory_order_relaxed);
}
inline void release(greenlet_impl* g) noexcept {
    if (g->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) last_release(g);
}

// Ends the running greenlet from inside its function and resumes `target` with an empty
// value, instead of returning to its parent: what entry() does once the function returns
// (the function released, the greenlet dead), then a switch that makes `target` free the
// dead greenlet's stack once it has taken the message, and reap the greenlet if its last
// handle went while it ran. For an upper layer's scheduler only (io/: a finished task hands
// the thread straight to the next ready fiber); a plain greenlet still returns to its
// parent by greenlet's rules.
// The caller guarantees that nothing is left to unwind: every frame from the greenlet's
// entry to this call holds no live object with a destructor and no exception being handled
// (call it after the catch blocks have ended). Those frames are never unwound; the stack
// is given back as it is. `target` is suspended on this thread, or a not-started greenlet
// that prepare_start() has made startable; it may be parked by the scheduler (this is the
// scheduler's own wake-up, like switch_value()). With a trace hook set (or remote kills
// pending) the switch takes the general path, so the hook sees it, from the dead greenlet.
// Switches: yes, and never returns.   Thread: the running greenlet's.
[[noreturn]] void finish_into(greenlet_impl* target) noexcept;

}  // namespace greenfiber::detail
