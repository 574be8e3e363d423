// Greenlets on Boost.Context: the slow paths of a switch, starting and finishing, the
// parent chain, kill on drop, threads and tracing. The inline fast path is in
// detail/greenlet_impl.hpp; read its comments first.

#include "greenfiber/greenlet.hpp"

#include <cxxabi.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/context/detail/fcontext.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <sstream>
#include <vector>

#include "detail/stack_pool.hpp"
#include "greenfiber/stack.hpp"

// greenfiber_jump (greenlet_impl.hpp) is jump_fcontext by its assembler name: the types
// must agree.
static_assert(sizeof(greenfiber::detail::transfer) == sizeof(boost::context::detail::transfer_t));
static_assert(offsetof(boost::context::detail::transfer_t, data) ==
              offsetof(greenfiber::detail::transfer, data));

namespace greenfiber {
namespace detail {

namespace bctx = boost::context::detail;

constinit thread_local thread_state* tls GREENFIBER_TLS_MODEL = nullptr;

namespace {

// Greenlet ids are handed to each thread in blocks: no locked instruction per greenlet.
std::atomic<std::uint64_t> next_id{1};
constexpr std::uint64_t id_block = 256;
const std::uintptr_t main_canary = canary_value;

// The rest of a thread's state, out of the hot path.
struct thread_full : thread_state {
    greenlet_impl* main = nullptr;  // Owned (one reference).
    trace_function trace;
    // The origin the trace hook reports for the switch in progress when it is not the
    // greenlet that jumped: the last unstarted greenlet an exception killed on the way
    // (greenlet starts it to raise there, and it switches on as it dies).
    // Strong reference, taken by the sender and dropped by the receiver.
    greenlet_impl* trace_origin = nullptr;
    // Who keeps this state alive: every greenlet's `owner` (main too) and the thread itself.
    // While the thread runs, its own greenlets are counted in `owned` without a locked
    // instruction, and `refs` holds a bias for the thread and them; a greenlet freed on
    // another thread (or after the exit) takes one from `refs`. At exit the thread trades
    // the bias for `owned` (thread_holder), and whoever brings `refs` to zero deletes it.
    static constexpr std::int64_t bias = std::int64_t{1} << 40;
    std::atomic<std::int64_t> refs{bias};
    std::int64_t owned = 1;  // the main greenlet; only this thread touches it, until its exit
    std::thread::id id = std::this_thread::get_id();
    long tid = static_cast<long>(syscall(SYS_gettid));
    void* altstack = nullptr;
    // A stack for the library's heavier paths while a small-stack greenlet runs
    // (on_side_stack): mapped at its first use, unmapped at exit. `side_busy` while in use.
    char* side_stack = nullptr;
    unsigned side_stack_valgrind = 0;  // its registration with memcheck, if any
    bool side_busy = false;
    std::mutex mu;
    // Guarded by mu: greenlets whose last handle was dropped on another thread.
    std::vector<greenlet_impl*> remote_drops;
    bool exited = false;  // Guarded by mu.
    // The ids this thread gives its next greenlets: [id_next, id_end).
    std::uint64_t id_next = 0;
    std::uint64_t id_end = 0;
    // Greenlets created minus greenlets destroyed by this thread (it may go below zero: a
    // greenlet destroyed on another thread than its own). Written by this thread only,
    // without a locked instruction; read by live_greenlets().
    std::atomic<std::int64_t> live{0};
};

// live_greenlets(): the sum of the registered threads' counts and of what the others left
// (threads that exited, and a thread without greenlet state dropping a dead greenlet).
// Never destroyed: threads may exit after static destruction.
struct live_registry {
    std::mutex mu;
    std::vector<thread_full*> threads;  // Guarded by mu.
};
live_registry& registry() {
    static auto* r = new live_registry;
    return *r;
}
std::atomic<std::int64_t> live_elsewhere{0};

void count_live(std::int64_t d) noexcept {
    if (thread_state* ts = tls; ts != nullptr) [[likely]] {
        std::atomic<std::int64_t>& c = static_cast<thread_full*>(ts)->live;
        c.store(c.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
    } else {
        live_elsewhere.fetch_add(d, std::memory_order_relaxed);
    }
}

// At thread exit, after tls is cleared: its count joins the others'.
void unregister_live(thread_full* t) noexcept {
    live_registry& r = registry();
    std::lock_guard lock(r.mu);
    live_elsewhere.fetch_add(t->live.load(std::memory_order_relaxed), std::memory_order_relaxed);
    std::erase(r.threads, t);
}

thread_full& full(thread_state& ts) {
    return static_cast<thread_full&>(ts);
}
thread_full* full(thread_state* ts) {
    return static_cast<thread_full*>(ts);
}

void release_thread(thread_full* t) noexcept {
    if (t->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete t;
}

// A greenlet of `t` is gone: counted in `owned` on t's own thread while it runs.
void drop_owner_ref(thread_full* t) noexcept {
    if (tls == t) [[likely]] {
        --t->owned;
    } else {
        release_thread(t);
    }
}

std::string thread_words(thread_full* t) {
    std::ostringstream os;
    os << "thread " << t->id << " (tid " << t->tid << ")";
    return os.str();
}

std::string describe(const greenlet_impl* g) {
    if (g->is_main) return "the main greenlet of " + thread_words(full(g->owner));
    if (g->name.empty()) return "greenlet #" + std::to_string(g->id);
    return "greenlet '" + g->name + "' (#" + std::to_string(g->id) + ")";
}

void recompute_slow(thread_full& t) {
    // Precondition: t.mu held.
    t.slow.store(static_cast<bool>(t.trace) || !t.remote_drops.empty(), std::memory_order_relaxed);
}

void destroy(greenlet_impl* g) noexcept;
void kill_dropped(greenlet_impl* g) noexcept;
void reap_orphan(greenlet_impl* g) noexcept;
void abandon(greenlet_impl* g) noexcept;

// Kills the greenlets dropped on other threads. Runs on the owner thread.
void drain_remote(thread_full& t) noexcept {
    std::vector<greenlet_impl*> drops;
    {
        std::lock_guard lock(t.mu);
        drops.swap(t.remote_drops);
        recompute_slow(t);
    }
    for (greenlet_impl* g : drops) {
        if (g->refs.load(std::memory_order_acquire) == 0) last_release(g);
    }
}

constexpr std::size_t side_stack_size = 64 * 1024;

// Holds this thread's state; its destructor runs at thread exit.
struct thread_holder {
    thread_full* t = nullptr;
    ~thread_holder() {
        if (t == nullptr) return;
        drain_remote(*t);
        {
            std::lock_guard lock(t->mu);
            t->exited = true;
        }
        remove_overflow_handler(t->altstack);
        if (t->side_stack != nullptr) {
            valgrind_deregister_stack(t->side_stack_valgrind);
            munmap(t->side_stack, side_stack_size);
        }
        t->main->state = gstate::dead;
        greenlet_impl* main = t->main;
        tls = nullptr;
        unregister_live(t);
        release(main);  // tls is null: taken from refs
        // The bias goes, the greenlets still counted in `owned` stay.
        const std::int64_t change = t->owned - thread_full::bias;
        if (t->refs.fetch_add(change, std::memory_order_acq_rel) + change == 0) delete t;
    }
};
thread_local thread_holder holder;
thread_local bool thread_gone = false;  // trivially destructible: readable after holder died

}  // namespace

thread_state* init_thread_state() {
    if (thread_gone) throw error("greenfiber: greenlets used while their thread is exiting");
    auto* t = new thread_full;
    t->eh_globals = reinterpret_cast<eh_state*>(abi::__cxa_get_globals());
    auto* m = new greenlet_impl;
    m->owner = t;
    m->state = gstate::alive;
    m->is_main = true;
    m->canary = &main_canary;
    m->id = 0;
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &m->stack_lo, &m->stack_size);
        pthread_attr_destroy(&attr);
    }
    t->main = m;
    t->current = m;
    t->altstack = install_overflow_handler();
    {
        live_registry& r = registry();
        std::lock_guard lock(r.mu);
        r.threads.push_back(t);
    }
    tls = t;
    holder.t = t;
    return t;
}

namespace {

// What a greenlet's stack_size holds before its start, from its options: 0 (the default),
// a paged size (at least paged_stack_min) or a small stack's slot (below it). Throws:
// error, for a small_stack that cannot be had.
std::size_t stack_request(const greenlet::options& opts) {
    if (opts.small_stack == 0)
        return opts.stack_size == 0 ? 0 : std::max(opts.stack_size, paged_stack_min);
    const std::string who = opts.name.empty() ? "a greenlet" : "greenlet '" + opts.name + "'";
    if (opts.stack_size != 0) {
        throw error("greenfiber: " + who + " asks for both a stack_size (" +
                    std::to_string(opts.stack_size) + ") and a small_stack (" +
                    std::to_string(opts.small_stack) + "): set one of them");
    }
    if (const std::string& lazy = lazily_bound_object(); !lazy.empty()) {
        throw error("greenfiber: " + who + " asks for a small stack, but " + lazy +
                    " binds its symbols at their first call, which saves the vector registers "
                    "on the calling stack (up to 3 KiB) and would overflow a small one: run "
                    "the program with LD_BIND_NOW=1, or link every library with -Wl,-z,now");
    }
    const std::size_t slot = small_stack_slot(opts.small_stack);
    if (slot == 0) {
        throw error("greenfiber: the small_stack of " + who + " is " +
                    std::to_string(opts.small_stack) + " bytes; a small stack is at most " +
                    std::to_string(small_stack_max()) +
                    " bytes (small_stack_max()): give it a paged stack (stack_size) instead");
    }
    return slot;
}

// How to give `g` more stack, for the overflow reports.
const char* larger_stack_words(const greenlet_impl* g) noexcept {
    return on_small_stack(g)
               ? "Declare a larger small stack (options::small_stack; stack.hpp, \"Small "
                 "stacks\", says what it must hold) or give it a paged one (stack_size)."
               : "Give it a larger stack (greenlet::options::stack_size).";
}

// Overflow reports are formatted on a stack of their own: the overflowed one may have no
// room left (a small stack has none), and the report ends the process anyway. One report
// per process: a second thread that overflows at the same time waits for the abort.
alignas(64) char report_stack[64 * 1024];
std::atomic_flag reporting = ATOMIC_FLAG_INIT;

struct report_call {
    void (*fn)(const report_call&) noexcept;
    greenlet_impl* g;
    void* sp;
};

void report_entry(bctx::transfer_t t) {
    const auto* call = static_cast<const report_call*>(t.data);
    call->fn(*call);
    std::abort();
}

[[noreturn]] void report_and_abort(const report_call& call) noexcept {
    if (reporting.test_and_set()) {
        for (;;) pause();
    }
    const bctx::fcontext_t c =
        bctx::make_fcontext(report_stack + sizeof report_stack, sizeof report_stack, &report_entry);
    bctx::jump_fcontext(c, const_cast<report_call*>(&call));
    std::abort();
}

void print_sp_overflow(const report_call& call) noexcept {
    greenlet_impl* g = call.g;
    const auto below = g->sp_limit - reinterpret_cast<std::uintptr_t>(call.sp);
    std::fprintf(stderr,
                 "greenfiber: stack overflow in %s: it switched out with its stack pointer %zu "
                 "bytes below the bottom of its %zu-byte %s. %s\n",
                 describe(g).c_str(), static_cast<std::size_t>(below), g->stack_size,
                 on_small_stack(g)  ? "small stack (no guard page)"
                 : g->stack_guarded ? "stack"
                                    : "stack (which has no guard page: the guard budget is spent)",
                 larger_stack_words(g));
}

void print_canary_overflow(const report_call& call) noexcept {
    greenlet_impl* g = call.g;
    std::fprintf(stderr,
                 "greenfiber: stack overflow in %s: the canary at the limit of its %zu-byte %s "
                 "was overwritten. %s\n",
                 describe(g).c_str(), g->stack_size, on_small_stack(g) ? "small stack" : "stack",
                 larger_stack_words(g));
}

}  // namespace

void stack_pointer_overflow(greenlet_impl* g, void* sp) noexcept {
    report_and_abort({&print_sp_overflow, g, sp});
}

void stack_overflow(greenlet_impl* g) noexcept {
    report_and_abort({&print_canary_overflow, g, nullptr});
}

namespace {

struct side_call {
    void (*fn)(void*) noexcept;
    void* arg;
#if GREENFIBER_ASAN
    const void* from_bottom = nullptr;
    std::size_t from_size = 0;
#endif
};

void side_entry(bctx::transfer_t t) {
    auto* call = static_cast<side_call*>(t.data);
#if GREENFIBER_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &call->from_bottom, &call->from_size);
#endif
    call->fn(call->arg);
#if GREENFIBER_ASAN
    // This context is abandoned once it jumps back: no fake stack to keep.
    __sanitizer_start_switch_fiber(nullptr, call->from_bottom, call->from_size);
#endif
    bctx::jump_fcontext(t.fctx, nullptr);
}

// Maps the thread's side stack if it has none yet; false when no memory is left for it.
bool map_side_stack(thread_full& tf) noexcept {
    if (tf.side_stack != nullptr) [[likely]]
        return true;
    void* mem = mmap(nullptr, side_stack_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED) return false;
    tf.side_stack = static_cast<char*>(mem);
    tf.side_stack_valgrind = valgrind_register_stack(tf.side_stack, side_stack_size);
    return true;
}

}  // namespace

void on_side_stack(void (*fn)(void*) noexcept, void* arg) noexcept {
    thread_state* ts = tls;
    if (ts == nullptr || !on_small_stack(ts->current)) return fn(arg);
    thread_full& tf = full(*ts);
    // No memory for it: the call runs where it is, as it would on a larger stack.
    if (tf.side_busy || !map_side_stack(tf)) return fn(arg);
    tf.side_busy = true;
    side_call call{fn, arg};
    const bctx::fcontext_t c =
        bctx::make_fcontext(tf.side_stack + side_stack_size, side_stack_size, &side_entry);
#if GREENFIBER_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, tf.side_stack, side_stack_size);
#endif
    bctx::jump_fcontext(c, &call);
#if GREENFIBER_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    tf.side_busy = false;
}

char* unwind_stack_top() noexcept {
    thread_state* ts = tls;
    if (ts == nullptr) return nullptr;
    const greenlet_impl* g = ts->current;
    if (g == nullptr || g->stack_lo == nullptr || !on_small_stack(g)) [[likely]]
        return nullptr;
    // Only from the small stack itself: not from the side stack (on_side_stack), nor from
    // the signal stack, whose frames must stay where they are.
    const auto sp = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
    const auto lo = reinterpret_cast<std::uintptr_t>(g->stack_lo);
    if (sp < lo || sp - lo >= g->stack_size) return nullptr;
    // The side stack is free here: on_side_stack's function runs to its end on it, without
    // a switch, and an unwinder that ran on it left it when it landed.
    thread_full& tf = full(*ts);
    if (tf.side_busy || !map_side_stack(tf)) return nullptr;
    return tf.side_stack + side_stack_size;
}

std::string describe_greenlet(const greenlet_impl* g) {
    return describe(g);
}

void rethrow_message(std::exception_ptr* exc) {
    std::exception_ptr e = std::move(*exc);  // leave nothing behind on the sender's stack
    std::rethrow_exception(e);
}

namespace {

bool is_greenlet_exit(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const greenlet_exit&) {
        return true;
    } catch (...) {
        return false;
    }
}

greenlet_exit as_greenlet_exit(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const greenlet_exit& x) {
        return x;
    }
}

struct extra_switch {
    unsigned post = 0;
    void (*after_fn)(void*) noexcept = nullptr;
    void* after_arg = nullptr;
    // The scheduler's own wake-up (switch_value()): may resume a parked fiber with a value.
    bool may_resume_parked = false;
};

// Why a value from `self` must not resume `target`, parked by a scheduler.
error parked_error(const greenlet_impl* self, const greenlet_impl* target) {
    return error("greenfiber: " + describe(self) +
                 (self->state == gstate::dead ? " finished, but cannot return its value to "
                                              : " cannot switch to ") +
                 describe(target) + ": it is parked by the hub, waiting for " + target->parked_for +
                 ", and only the hub resumes it (a switch would end that wait as if it were "
                 "over). Wake what it waits for, or interrupt the wait with throw_in() or its "
                 "task's cancel()");
}

[[noreturn]] void die(greenlet_impl* self, message m) noexcept;

void entry(bctx::transfer_t t) noexcept {
    greenlet_impl* self = tls->current;
    value result;
    std::exception_ptr failure;
    try {
        value arg = arrive({t.fctx, t.data});
        result = self->run->invoke(std::move(arg));
    } catch (...) {
        // A greenlet_exit too: deliver() turns it into a value where it lands, and it
        // must still kill a parent that has not started on the way (greenlet's rule 6).
        failure = std::current_exception();
    }
    delete std::exchange(self->run, nullptr);
    die(self, failure ? message{nullptr, &failure} : message{&result, nullptr});
}

// Calls the trace hook for a switch or throw from `origin` to `target`. An exception from
// the hook turns tracing off and propagates (to be raised in the target).
void call_trace(thread_full& t, bool is_throw, greenlet_impl* origin, greenlet_impl* target) {
    if (!t.trace) return;
    retain(origin);
    retain(target);
    const greenlet o = access::adopt(origin);
    const greenlet g = access::adopt(target);
    try {
        trace_function hook = t.trace;  // the hook may replace itself
        hook(is_throw ? trace_event::throw_in : trace_event::switch_to, o, g);
    } catch (...) {
        std::lock_guard lock(t.mu);
        t.trace = nullptr;
        recompute_slow(t);
        throw;
    }
}

// Gives a not-started greenlet its stack. On failure it is left as it was.
void take_stack(greenlet_impl* g) {
    const stack_block s = allocate_stack(g->stack_size, g);
    g->stack_lo = s.lo;
    g->stack_size = s.size;
    g->stack_guarded = s.guarded;
    // A guarded stack needs no canary: an overflow that reaches its lowest word faults on
    // the guard page below, and a frame that skips past the guard is caught by sp_limit at
    // the switch out. Reading the canary would also cost a page: the lowest page is never
    // written, and on some kernels a read maps a real page there (two resident pages per
    // parked fiber instead of one). Such a greenlet reads a static zero word instead (the
    // switch's load stays unconditional). An unguarded stack keeps its canary.
    g->canary = s.guarded ? &main_canary : reinterpret_cast<const std::uintptr_t*>(s.lo);
    g->sp_limit = reinterpret_cast<std::uintptr_t>(s.lo);
    set_stack_owner(s, g);
}

// Gives a not-started greenlet its initial context (and its stack, unless it has one).
void start(greenlet_impl* g) {
    if (g->stack_lo == nullptr) take_stack(g);
    char* lo = static_cast<char*>(g->stack_lo);
    g->ctx = bctx::make_fcontext(lo + g->stack_size - stack_header_size,
                                 g->stack_size - stack_header_size, &entry);
    g->state = gstate::alive;
}

void free_stack(greenlet_impl* g) noexcept {
    if (g->stack_lo == nullptr || g->is_main) return;
    const stack_block s{static_cast<char*>(g->stack_lo), g->stack_size, g->stack_guarded};
    set_stack_owner(s, nullptr);
    release_stack(s);
    g->stack_lo = nullptr;
    g->canary = &main_canary;
    g->sp_limit = 0;
}

// A not-started greenlet receives an exception: it dies without running.
void kill_unstarted(greenlet_impl* g) noexcept {
    g->state = gstate::dead;
    delete std::exchange(g->run, nullptr);
    free_stack(g);  // allocated eagerly (options::eager_stack)
}

// Delivers `m` to `target` following greenlet's rules: to the first greenlet up the
// parent chain that can take it. Returns (or throws) the message of the next switch back
// into the caller; never returns when the caller is dead.
value deliver(thread_state& ts, greenlet_impl* target, message m, extra_switch extra = {}) {
    greenlet_impl* const self = ts.current;
    value converted;         // a greenlet_exit turned into a value
    std::exception_ptr err;  // an error raised while delivering
    // Set while `converted` holds a greenlet_exit that escaped a greenlet (its death, or a
    // throw passing a dead one): it kills an unstarted greenlet like an exception would,
    // where a greenlet_exit switched as an ordinary value would start it.
    bool exit_in_flight = false;
    // Drops the message being replaced (it is consumed) and installs `e`. The replaced
    // one may live in a dying greenlet's frame, which is never unwound: empty it here.
    auto fail = [&](std::exception_ptr e) {
        if (m.val != nullptr) m.val->reset();
        if (m.exc != nullptr && m.exc != &err) *m.exc = nullptr;
        err = std::move(e);
        m = message{nullptr, &err};
        exit_in_flight = false;
    };
    // A greenlet_exit leaving a greenlet travels on as the value it becomes.
    auto exit_to_value = [&] {
        converted = value(as_greenlet_exit(*m.exc));
        *m.exc = nullptr;
        m = message{&converted, nullptr};
        exit_in_flight = true;
    };
    if (self->state == gstate::dead && m.exc != nullptr && is_greenlet_exit(*m.exc))
        exit_to_value();
    // Whom the trace hook names as the origin: the caller, or the last unstarted greenlet
    // killed on the way (greenlet's trace shows it starting and switching on as it dies).
    greenlet_impl* origin = self;
    // Whether the greenlet now handing the message on is dead: the caller when it is
    // finishing, or an unstarted greenlet that an exception killed on the way.
    bool sender_dead = self->state == gstate::dead;
    for (;;) {
        if (target == self && self->state != gstate::dead) {
            if (extra.after_fn != nullptr) extra.after_fn(extra.after_arg);
            // greenlet traces a switch that lands where it started too (to the current
            // greenlet, or up a dead one's chain back to the caller).
            if (full(ts).trace) call_trace(full(ts), m.exc != nullptr, origin, self);
            if (m.exc != nullptr) rethrow_message(m.exc);
            return std::move(*m.val);
        }
        if (target->state == gstate::dead) {
            // Every chain ends at this thread's main greenlet, which is alive while the
            // thread runs; a dead main belongs to an exited thread, checked before.
            if (target->parent == nullptr) {
                std::fputs("greenfiber: a parent chain ends at a dead main greenlet\n", stderr);
                std::abort();
            }
            if (m.exc != nullptr && is_greenlet_exit(*m.exc)) exit_to_value();
            target = target->parent;
            continue;
        }
        if (target->state == gstate::not_started) {
            // A start that fails before the function runs fails in the greenlet that is
            // switching (greenlet's rule): a live caller gets the error without switching,
            // and the target stays unstarted; a dying greenlet (or an unstarted one that an
            // exception just killed on the way) hands it on up the chain.
            if (target->run == nullptr) {
                error e("greenfiber: cannot start " + describe(target) +
                        ": it has no function (greenlet::set_run)");
                if (!sender_dead) throw e;
                fail(std::make_exception_ptr(std::move(e)));
                target = target->parent;
                continue;
            }
            if (m.exc != nullptr || exit_in_flight) {
                kill_unstarted(target);
                sender_dead = true;
                if (full(ts).trace) {
                    // It dies without running, so the hook runs here, on the caller's stack.
                    try {
                        call_trace(full(ts), true, origin, target);
                    } catch (...) {
                        fail(std::current_exception());
                    }
                    origin = target;
                }
                continue;  // now dead: the exception (or the exit's value) goes on up its chain
            }
            if (!target->run->accepts(*m.val)) {
                const std::type_info& want = target->run->parameter();
                fail(std::make_exception_ptr(
                    error("greenfiber: cannot start " + describe(target) + ": its function takes " +
                          (want == typeid(void) ? std::string("no argument") : type_name(want)) +
                          ", but " + describe(self) + " passed it " +
                          (m.val->empty() ? std::string("no value") : type_name(m.val->type())))));
                target = target->parent;
                continue;
            }
            try {
                start(target);
            } catch (...) {
                if (!sender_dead) throw;
                fail(std::current_exception());
                target = target->parent;
                continue;
            }
        }
        // target is alive and suspended on this thread.
        if (target->parked_for != nullptr && m.val != nullptr && !extra.may_resume_parked)
            [[unlikely]] {
            // A live caller gets the error without switching. A dying one cannot take it:
            // the error is raised in the parked fiber instead, ending its wait as any
            // exception may (gevent raises its InvalidSwitchError there too).
            if (self->state != gstate::dead) throw parked_error(self, target);
            fail(std::make_exception_ptr(parked_error(self, target)));
        }
        ts.msg = m;
        ts.post |= extra.post | (self->state == gstate::dead ? post_dead : 0u) |
                   (full(ts).trace ? post_trace : 0u);
        // Only a receiver that calls the hook takes the origin (a hook that threw on the way
        // turned tracing off).
        if (origin != self && (ts.post & post_trace) != 0) {
            retain(origin);  // released by the receiver once the hook has run
            full(ts).trace_origin = origin;
        }
        if (extra.after_fn != nullptr) {
            ts.post |= post_after;
            ts.after_fn = extra.after_fn;
            ts.after_arg = extra.after_arg;
        }
        return resume(ts, self, target);
    }
}

[[noreturn]] void die(greenlet_impl* self, message m) noexcept {
    thread_state& ts = *tls;
    self->state = gstate::dead;
    try {
        (void)deliver(ts, self->parent, m);
    } catch (...) {
    }
    // deliver() jumps away for good from a dead greenlet (the chain ends at a live main).
    std::fputs("greenfiber: a finished greenlet found no live greenlet to return to\n", stderr);
    std::abort();
}

}  // namespace

void finish_into(greenlet_impl* target) noexcept {
    thread_state& ts = *tls;
    greenlet_impl* const self = ts.current;
    // entry()'s tail, without the return through it: the function is released (a task's
    // lives in the task, which may be gone: it then unhooked it and `run` is null), and the
    // greenlet is dead from here on, which makes resume() end its ASan fiber (no fake stack
    // to save) and the receiver free its stack.
    delete std::exchange(self->run, nullptr);
    self->state = gstate::dead;
    // The message lives in this frame, on the stack the receiver frees: post_switch() moves
    // it out first. An empty value owns nothing, so nothing is left to destroy here.
    value none;
    if (target->ctx != nullptr && target->owner == &ts && !ts.slow.load(std::memory_order_relaxed))
        [[likely]] {
        ts.msg = message{&none, nullptr};
        // post_orphaned stays if it is set: the last handle went while this greenlet ran,
        // and the receiver frees it after its stack.
        ts.post |= post_dead;
        (void)resume(ts, self, target);
    } else {
        // A trace hook or remote kills pending: the general path, which sets the same bits,
        // the trace's bit and its origin, and may resume a parked target (the scheduler's
        // own wake-up). It never returns to a dead sender.
        try {
            (void)deliver(ts, target, message{&none, nullptr}, {0, nullptr, nullptr, true});
        } catch (...) {
        }
    }
    std::fputs("greenfiber: a finished greenlet was resumed after it handed the thread on\n",
               stderr);
    std::abort();
}

namespace {

void check_thread(thread_state& ts, greenlet_impl* target, const char* what) {
    if (target->owner == &ts) return;
    thread_full* other = full(target->owner);
    bool exited;
    {
        std::lock_guard lock(other->mu);
        exited = other->exited;
    }
    throw error(std::string("greenfiber: cannot ") + what + " " + describe(target) +
                ": it belongs to " + thread_words(other) + (exited ? " (which has exited)" : "") +
                ", and this is " + thread_words(full(&ts)) + "; greenlets never change threads");
}

thread_state& checked(greenlet_impl* target, const char* what) {
    if (target == nullptr)
        throw error(std::string("greenfiber: cannot ") + what + " an empty greenlet handle");
    thread_state& ts = this_thread();
    check_thread(ts, target, what);
    if (ts.slow.load(std::memory_order_relaxed)) drain_remote(full(ts));
    return ts;
}

void report(const std::string& what, std::exception_ptr e, greenlet_impl* g) noexcept {
    if (g != nullptr) retain(g);
    greenlet h = access::adopt(g);
    report_failure(
        {what, std::move(e), g != nullptr ? &h : nullptr, report_severity::error, "greenlet"});
}

}  // namespace

bool prepare_start(greenlet_impl* g) noexcept {
    if (g->state != gstate::not_started || g->run == nullptr || g->owner != tls ||
        !g->run->accepts(value()))
        return false;
    try {
        start(g);
    } catch (...) {
        return false;  // left unstarted: the switch that starts it reports the failure
    }
    return true;
}

value switch_slow(greenlet_impl* target, message m) {
    thread_state& ts = checked(target, "switch to");
    return deliver(ts, target, m, {0, nullptr, nullptr, true});
}

value switch_slow_checked(greenlet_impl* target, message m) {
    thread_state& ts = checked(target, "switch to");
    return deliver(ts, target, m);
}

value post_switch(greenlet_impl* prev) {
    thread_state& ts = *tls;
    const unsigned post = std::exchange(ts.post, 0u);
    const bool is_throw = ts.msg.exc != nullptr;
    // Take the message first: it may live on prev's stack, which is released below.
    value v;
    std::exception_ptr e;
    if (is_throw) {
        e = std::move(*ts.msg.exc);
    } else {
        v = std::move(*ts.msg.val);
    }
    if (post & post_dead) {
        prev->ctx = nullptr;
        free_stack(prev);
    }
    if (post & post_after) std::exchange(ts.after_fn, nullptr)(ts.after_arg);
    // A sender that lost its last handle while running is freed (dead) or killed
    // (suspended) after the trace hook: the hook names it while it exists, and reports this
    // switch before the kill's own switches.
    greenlet_impl* const orphan = (post & post_orphaned) && prev->orphaned ? prev : nullptr;
    if (post & post_trace) {
        thread_full& t = full(ts);
        greenlet_impl* origin = std::exchange(t.trace_origin, nullptr);
        const greenlet held = access::adopt(origin);  // drops the sender's reference after
        // The hook's handles would free an orphan on their release: hold it by a count that
        // is dropped without releasing, then reap it as if the hook had not run.
        if (orphan != nullptr) retain(orphan);
        try {
            call_trace(t, is_throw, origin != nullptr ? origin : prev, ts.current);
        } catch (...) {
            if (orphan != nullptr) {
                orphan->refs.fetch_sub(1, std::memory_order_acq_rel);
                reap_orphan(orphan);
            }
            throw;
        }
        if (orphan != nullptr) orphan->refs.fetch_sub(1, std::memory_order_acq_rel);
    }
    if (orphan != nullptr) reap_orphan(orphan);
    if (e) std::rethrow_exception(e);
    return v;
}

namespace {

// Frees (dead) or kills (suspended) a greenlet whose handles all went while it ran,
// unless a handle was taken since (a trace hook may keep one): that handle's release
// reaps it then.
void reap_orphan(greenlet_impl* g) noexcept {
    g->orphaned = false;
    if (g->refs.load(std::memory_order_acquire) != 0) return;
    if (g->state == gstate::dead) {
        destroy(g);
    } else {
        kill_dropped(g);
    }
}

void destroy(greenlet_impl* g) noexcept {
    delete std::exchange(g->run, nullptr);
    free_stack(g);
    if (g->parent != nullptr) release(g->parent);
    thread_full* owner = full(g->owner);
    const bool counted = !g->is_main;
    if (g->dispose != nullptr) {
        g->dispose(g);
    } else {
        delete g;
    }
    if (counted) count_live(-1);
    drop_owner_ref(owner);
}

// Why an exception must not be raised in `g` (suspended) now, or null if it may. An
// exception raised at the switch of a greenlet that is unwinding (a destructor switched
// away during unwinding; its saved uncaught count says so) or inside a no_kill_scope would
// escape a noexcept destructor: std::terminate.
const char* unkillable(const greenlet_impl* g) noexcept {
    if (g->eh.uncaught != 0) return "while unwinding an exception (a destructor switched away)";
    if (g->no_kill != 0) return "inside a no_kill_scope";
    return nullptr;
}

std::string stack_words(const greenlet_impl* g) {
    return "its " + std::to_string(g->stack_size) + "-byte stack stays allocated";
}

// Precondition: g is suspended, on this thread, and has no handle left.
void kill_dropped(greenlet_impl* g) noexcept {
    thread_state& ts = *tls;
    g->refs.store(1, std::memory_order_relaxed);  // resurrected for the kill
    greenlet h = access::adopt(g);
    if (const char* why = unkillable(g)) {
        report("greenfiber: cannot kill " + describe(g) + ": it is suspended " + why +
                   ", where greenlet_exit would call std::terminate; it stays suspended and " +
                   stack_words(g) + " until a handle to it (this report's source) resumes it",
               nullptr, g);
        // As for a greenlet that survives its kill (below): a reported leak, not a loop.
        if (g->refs.load(std::memory_order_relaxed) == 1) retain(g);
        return;
    }
    // During the kill the dropper is the parent, so the kill returns here (greenlet's rule).
    greenlet_impl* const saved_parent = g->parent;
    retain(ts.current);
    g->parent = ts.current;
    try {
        std::exception_ptr e = std::make_exception_ptr(greenlet_exit{});
        (void)deliver(ts, g, message{nullptr, &e});
    } catch (...) {
        report(
            "greenfiber: " + describe(g) + " let an exception escape while greenlet_exit killed it",
            std::current_exception(), g);
    }
    greenlet_impl* temp = std::exchange(g->parent, saved_parent);
    release(temp);
    // Still alive and nobody kept a handle during the kill (that would be a resurrection).
    if (g->state != gstate::dead && g->refs.load(std::memory_order_relaxed) == 1) {
        report("greenfiber: greenlet_exit did not kill " + describe(g) +
                   (g->eh.uncaught != 0
                        ? ": a destructor switched away while the exit was unwinding it"
                        : ": it caught the exit and switched away") +
                   "; it stays suspended and " + stack_words(g),
               nullptr, g);
        // Unless the report handler shared it, nobody can reach it again: keep one
        // reference so that it is not killed in a loop (a reported leak).
        if (g->refs.load(std::memory_order_relaxed) == 1) retain(g);
    }
}

// The owner thread has exited: the stack cannot be unwound on it.
void abandon(greenlet_impl* g) noexcept {
    report("greenfiber: " + describe(g) +
               " was dropped while suspended after its thread exited; its stack was freed without "
               "unwinding",
           nullptr, nullptr);
    destroy(g);
}

}  // namespace

void last_release(greenlet_impl* g) noexcept {
    thread_full* owner = full(g->owner);
    // A block disposed of by its upper layer shares that layer's thread-bound bookkeeping:
    // it is destroyed on its owner thread, or once that thread has exited.
    if (g->state != gstate::alive && (g->dispose == nullptr || tls == owner)) {
        destroy(g);
        return;
    }
    if (tls != owner) {
        bool exited;
        {
            std::lock_guard lock(owner->mu);
            exited = owner->exited;
            if (!exited) {
                owner->remote_drops.push_back(g);
                owner->slow.store(true, std::memory_order_relaxed);
            }
        }
        if (exited) {
            if (g->state == gstate::alive) {
                abandon(g);
            } else {
                destroy(g);
            }
        }
        return;
    }
    if (owner->current == g) {
        g->orphaned = true;
        owner->post |= post_orphaned;  // handled by the receiver of its next switch out
        return;
    }
    kill_dropped(g);
}

}  // namespace detail

using detail::access;
using detail::gstate;

greenlet::greenlet(detail::run_base* run, const greenlet* parent, options&& opts, void* storage,
                   void (*dispose)(detail::greenlet_impl*) noexcept) {
    std::unique_ptr<detail::run_base> owned(run);
    detail::thread_state& ts = detail::this_thread();
    detail::greenlet_impl* par = ts.current;
    if (parent != nullptr) {
        if (parent->p_ == nullptr)
            throw error("greenfiber: the parent of a new greenlet is an empty handle");
        if (parent->p_->owner != &ts) {
            throw error(
                "greenfiber: the parent of a new greenlet must live on the creating thread; " +
                detail::describe(parent->p_) + " does not");
        }
        par = parent->p_;
    }
    const std::size_t stack_request = detail::stack_request(opts);
    auto* g =
        storage != nullptr ? ::new (storage) detail::greenlet_impl : new detail::greenlet_impl;
    g->dispose = dispose;
    g->owner = &ts;
    ++detail::full(ts).owned;
    detail::retain(par);
    g->parent = par;
    g->canary = &detail::main_canary;
    g->stack_size = stack_request;
    g->run = owned.release();
    detail::thread_full& tf = detail::full(ts);
    if (tf.id_next == tf.id_end) [[unlikely]] {
        tf.id_next = detail::next_id.fetch_add(detail::id_block, std::memory_order_relaxed);
        tf.id_end = tf.id_next + detail::id_block;
    }
    g->id = tf.id_next++;
    g->name = std::move(opts.name);
    detail::count_live(1);
    p_ = g;
    if (opts.eager_stack) {
        try {
            detail::take_stack(g);
        } catch (...) {
            detail::release(std::exchange(p_, nullptr));  // not started: simply freed
            throw;
        }
    }
}

greenlet greenlet::current() {
    detail::thread_state& ts = detail::this_thread();
    if (ts.slow.load(std::memory_order_relaxed)) detail::drain_remote(detail::full(ts));
    detail::retain(ts.current);
    return greenlet(ts.current);
}

value greenlet::throw_in(std::exception_ptr e) {
    detail::thread_state& ts = detail::checked(p_, "throw into");
    if (!e)
        throw error("greenfiber: throw_in with a null exception_ptr into " + detail::describe(p_));
    if (p_->ctx != nullptr) {
        if (const char* why = detail::unkillable(p_)) {
            throw error("greenfiber: cannot throw into " + detail::describe(p_) +
                        ": it is suspended " + why +
                        ", where an exception would call std::terminate (greenlet.hpp)");
        }
    }
    return detail::deliver(ts, p_, detail::message{nullptr, &e});
}

value greenlet::switch_to_then(value v, void (*action)(void*) noexcept, void* arg) {
    detail::thread_state& ts = detail::checked(p_, "switch to");
    return detail::deliver(ts, p_, detail::message{&v, nullptr}, {0, action, arg});
}

value greenlet::switch_to_parent(value v) {
    detail::thread_state& ts = detail::this_thread();
    detail::greenlet_impl* par = ts.current->parent;
    if (par == nullptr)
        throw error("greenfiber: switch_to_parent from a main greenlet, which has no parent");
    return detail::switch_checked(par, v);
}

greenlet greenlet::parent() const {
    detail::greenlet_impl* par = p_->parent;
    if (par == nullptr) return greenlet();
    detail::retain(par);
    return greenlet(par);
}

void greenlet::set_parent(const greenlet& p) {
    if (p.p_ == nullptr)
        throw error("greenfiber: cannot make an empty handle the parent of " + describe());
    if (p_->is_main) throw error("greenfiber: cannot set the parent of a main greenlet");
    if (p.p_->owner != p_->owner) {
        throw error("greenfiber: parent cannot be on a different thread: " + describe() +
                    " lives on " + detail::thread_words(detail::full(p_->owner)) + ", " +
                    p.describe() + " on " + detail::thread_words(detail::full(p.p_->owner)));
    }
    for (detail::greenlet_impl* a = p.p_; a != nullptr; a = a->parent) {
        if (a == p_) {
            throw error("greenfiber: cyclic parent chain: " + describe() + " is " +
                        (p.p_ == p_ ? std::string("the proposed parent itself")
                                    : "an ancestor of " + p.describe()));
        }
    }
    detail::retain(p.p_);
    detail::release(std::exchange(p_->parent, p.p_));
}

void greenlet::set_run_impl(detail::run_base* run) {
    std::unique_ptr<detail::run_base> owned(run);
    if (p_->state != gstate::not_started) {
        throw error("greenfiber: run cannot be set after the start of " + describe());
    }
    delete std::exchange(p_->run, owned.release());
}

std::string greenlet::describe() const {
    return detail::describe(p_);
}

std::string greenlet::state_string() const {
    std::string s;
    switch (p_->state) {
        case gstate::not_started:
            return "pending";
        case gstate::dead:
            return "dead";
        case gstate::alive:
            s = is_current() ? "current active started" : "suspended active started";
    }
    if (p_->is_main) s += " main";
    return s;
}

std::thread::id greenlet::thread_id() const noexcept {
    return detail::full(p_->owner)->id;
}

trace_function settrace(trace_function fn) {
    detail::thread_full& t = detail::full(detail::this_thread());
    std::lock_guard lock(t.mu);
    std::swap(t.trace, fn);
    detail::recompute_slow(t);
    return fn;
}

trace_function gettrace() {
    detail::thread_full& t = detail::full(detail::this_thread());
    std::lock_guard lock(t.mu);
    return t.trace;
}

std::size_t live_greenlets() noexcept {
    detail::live_registry& r = detail::registry();
    std::lock_guard lock(r.mu);
    std::int64_t n = detail::live_elsewhere.load(std::memory_order_relaxed);
    for (const detail::thread_full* t : r.threads) n += t->live.load(std::memory_order_relaxed);
    return n > 0 ? static_cast<std::size_t>(n) : 0;
}

}  // namespace greenfiber
