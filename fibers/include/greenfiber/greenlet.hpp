#pragma once
/// \file
/// Greenlets: stackful fibers switched explicitly, with the semantics of Python's greenlet
/// (greenfiber::greenlet), and greenlet_exit, the exception that kills one.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "greenfiber/detail/greenlet_impl.hpp"
#include "greenfiber/error.hpp"
#include "greenfiber/value.hpp"

namespace greenfiber {

/// Kills a greenlet: thrown into it by throw_in() with no argument and when its last
/// handle is dropped while it is suspended. When it escapes a greenlet's function it is
/// not an error: the parent receives it as a value (`v.is<greenlet_exit>()`). On its way
/// it kills, without running them, the parents that have not started, as any exception
/// would, and lands as a value at the first started one (a greenlet_exit returned or
/// switched as an ordinary value starts an unstarted greenlet with it, as in Python).
/// Deliberately not derived from std::exception, so `catch (const std::exception&)` does
/// not swallow it. Code that catches (...) must rethrow it.
class greenlet_exit {
  public:
    greenlet_exit() = default;
    ///@{
    /// A greenlet_exit carrying `message` / the message it was created with ("" by default).
    /// Switches: no.
    explicit greenlet_exit(std::string message) : message_(std::move(message)) {}
    const std::string& message() const noexcept { return message_; }
    ///@}

  private:
    std::string message_;
};

namespace detail {
template <class Fn>
struct run_holder;
struct access;
}  // namespace detail

/// A greenlet: a function running on its own stack, switched to explicitly, with the
/// semantics of Python's greenlet.
///
/// A `greenlet` object is a handle. Handles are move-only; share() makes another handle
/// to the same greenlet. When the last handle to a *suspended* greenlet goes away, the
/// greenlet is killed: greenlet_exit is thrown into it, its stack unwinds and every
/// destructor on it runs. An exception escaping that kill, or a greenlet that refuses to
/// die, is sent to the report handler (error.hpp), never thrown from a destructor.
///
/// A destructor that suspends: greenlet_exit raised at its switch would escape a noexcept
/// function (std::terminate). The library sees two such cases and then does not kill: a
/// greenlet suspended while unwinding an exception (a destructor switched away during the
/// unwinding; std::uncaught_exceptions() > 0 in it), and one suspended inside a
/// no_kill_scope. A destructor that suspends outside unwinding cannot be recognised, so it
/// must open a no_kill_scope around its switches (and catch what they can raise, e.g. a
/// child's exception). Dropping the last handle of such a greenlet reports it by name as
/// unkillable, with the report's `source` as a handle to it; it stays suspended and its
/// stack stays allocated (a reported leak) unless whoever holds that handle resumes it, after
/// which a later drop kills it as usual. A greenlet dropped so after its thread exited has
/// its stack freed without unwinding (reported too).
///
/// Thread: thread-bound. A greenlet runs only on the thread that created it; switching to
/// it from another thread throws greenfiber::error. A handle may be dropped on any thread
/// (the kill then happens on the owner thread at its next greenlet call).
class greenlet {
  public:
    /// How a greenlet is created: its name, its stack size, when its stack is allocated.
    struct options {
        std::string name;            ///< shown in errors, reports and overflow messages
        std::size_t stack_size = 0;  ///< 0: default_stack_size() (stack.hpp)
        /// Allocate the stack in the constructor, so that a failure (stack_error, stack.hpp)
        /// is thrown there rather than at the first switch. Default: at the first switch.
        bool eager_stack = false;
        /// Nonzero: a small stack of this many bytes instead of a paged one (stack.hpp,
        /// "Small stacks": what the size must leave room for). stack_size must then be 0.
        std::size_t small_stack = 0;
    };

    /// An empty handle.
    greenlet() noexcept = default;

    /// A new, not yet started greenlet that will run `fn`, whose parent is the current
    /// greenlet. `fn` takes either nothing, a `value`, or one argument of a type T (the first
    /// switch must then pass a T); it returns nothing, a `value` or any movable type.
    /// Switches: no.   Throws: std::bad_alloc; stack_error with options::eager_stack;
    /// greenfiber::error for options::small_stack above small_stack_max() or beside a
    /// stack_size.
    template <class Fn, class = std::enable_if_t<!std::is_same_v<std::decay_t<Fn>, greenlet> &&
                                                 !std::is_same_v<std::decay_t<Fn>, options>>>
    explicit greenlet(Fn&& fn, options opts = {})
        : greenlet(make_run(std::forward<Fn>(fn)), nullptr, std::move(opts)) {}

    /// The same with an explicit parent (borrowed for the call; the new greenlet then
    /// holds a reference to it). Throws: greenfiber::error if `parent` is empty or belongs
    /// to another thread.
    template <class Fn>
    greenlet(Fn&& fn, const greenlet& parent, options opts = {})
        : greenlet(make_run(std::forward<Fn>(fn)), &parent, std::move(opts)) {}

    /// A greenlet with no function yet (set it with set_run()). Starting it without one
    /// raises greenfiber::error "has no function".
    explicit greenlet(options opts) : greenlet(nullptr, nullptr, std::move(opts)) {}

    ///@{
    /// Takes over `other`'s handle; `other` is left empty (operator bool is false).
    /// A move-assignment drops the handle held before, as the destructor does.
    /// Switches: only the move-assignment, as the destructor.
    greenlet(greenlet&& other) noexcept : p_(std::exchange(other.p_, nullptr)) {}
    greenlet& operator=(greenlet&& other) noexcept {
        greenlet(std::move(other)).swap(*this);
        return *this;
    }
    ///@}
    greenlet(const greenlet&) = delete;
    greenlet& operator=(const greenlet&) = delete;

    /// Drops this handle; if it was the last one and the greenlet is suspended, kills it
    /// (see the class comment). Switches: yes, in that case.
    ~greenlet() {
        if (p_ != nullptr) detail::release(p_);
    }

    /// Another handle to the same greenlet. Switches: no.
    greenlet share() const noexcept {
        if (p_ != nullptr) detail::retain(p_);
        return greenlet(p_);
    }

    /// Exchanges the two handles. Switches: no.
    void swap(greenlet& other) noexcept { std::swap(p_, other.p_); }

    /// The running greenlet of this thread (its main greenlet outside any other).
    /// Switches: no.
    static greenlet current();

    /// Suspends the calling greenlet and resumes this one, passing `v` (moved):
    /// - not started: starts it; `v` becomes its function's argument;
    /// - suspended: `v` becomes the result of the switch it is suspended in;
    /// - current: returns `v` at once;
    /// - dead: `v` goes to the first live greenlet up its parent chain.
    /// Returns the value of the next switch back into the caller: that of whoever switches
    /// to it, or a child's return value.
    /// A fiber parked by the hub (in sleep(), a socket wait, a lock...) is resumed only
    /// by the hub, when what it waits for happens: a value switched to it (directly, or up
    /// a dead greenlet's chain) is refused with greenfiber::error naming both greenlets and
    /// what the target waits for, without switching (gevent's InvalidSwitchError). An
    /// exception may interrupt such a wait (throw_in(), a task's cancel()).
    /// Switches: yes.   Thread: only from this greenlet's thread.
    /// Throws: greenfiber::error if this greenlet belongs to another thread, the handle is
    ///         empty, the value would resume a fiber parked by the hub, or the greenlet to
    ///         start (this one, or the first unstarted one up a dead one's chain) has no
    ///         function (it stays unstarted, as in greenlet); an exception that
    ///         a child lets escape, or that is thrown into the caller (throw_in()) while it is
    ///         suspended; stack_error (stack.hpp) if a start finds no memory for the stack
    ///         (the greenlet stays not started).
    [[nodiscard]] value switch_to(value v = {}) { return detail::switch_checked(p_, v); }

    /// Switches to the parent of the calling greenlet, like `current().parent().switch_to(v)`
    /// but without holding a handle to the parent while suspended (a generator must not keep
    /// its consumer alive).
    /// Switches: yes.   Throws: greenfiber::error from a main greenlet; as switch_to() (a
    ///         parent parked by the hub is refused).
    [[nodiscard]] static value switch_to_parent(value v = {});

    ///@{
    /// Resumes this greenlet by raising `e` at its suspension point. Into a not-started
    /// greenlet it kills it without running it; into a dead one it goes up the parent chain
    /// like a switch (a greenlet_exit arriving there as a value, anything else raised).
    /// With no argument it throws greenlet_exit{}. Raised into a fiber parked by the hub,
    /// it ends the wait with that exception (the hub's own kills and deadlock report do so).
    /// Switches: yes.   Thread: as switch_to().
    /// Throws: as switch_to(); greenfiber::error, without switching, if this greenlet is
    ///         suspended while unwinding or inside a no_kill_scope (see the class comment).
    [[nodiscard]] value throw_in(std::exception_ptr e);
    [[nodiscard]] value throw_in() { return throw_in(std::make_exception_ptr(greenlet_exit{})); }
    template <class E,
              class = std::enable_if_t<!std::is_same_v<std::decay_t<E>, std::exception_ptr>>>
    [[nodiscard]] value throw_in(E&& e) {
        return throw_in(std::make_exception_ptr(std::forward<E>(e)));
    }
    ///@}

    /// Suspends the caller and resumes this greenlet like switch_to(v), but first runs
    /// `action(arg)` on this greenlet's stack once the caller is fully parked (its context
    /// saved), before this greenlet continues. A wake-up published by `action` can
    /// therefore never arrive before the caller is suspended. `action` must not switch.
    /// Refuses a fiber parked by the hub as switch_to() does (then `action` does not run).
    /// Switches: yes.   Thread, Throws: as switch_to().
    [[nodiscard]] value switch_to_then(value v, void (*action)(void*) noexcept, void* arg);

    /// Whether it has started (still true once it has finished). Switches: no.
    bool started() const noexcept { return p_->state != detail::gstate::not_started; }
    /// Whether it has finished: its function returned or raised, or it was killed. Switches: no.
    bool dead() const noexcept { return p_->state == detail::gstate::dead; }
    /// Started and not dead (greenlet's `bool(g)`).
    bool active() const noexcept { return p_->state == detail::gstate::alive; }
    /// Whether this greenlet is the running one on the calling thread. Switches: no.
    bool is_current() const noexcept {
        return detail::tls != nullptr && detail::tls->current == p_;
    }
    /// Whether this is a thread's main greenlet (the one that runs the thread itself).
    /// Switches: no.
    bool is_main() const noexcept { return p_->is_main; }

    /// The parent, or an empty handle for a main greenlet. Switches: no.
    greenlet parent() const;

    /// Makes `p` the parent (this greenlet keeps a reference to it).
    /// Switches: no.   Throws: greenfiber::error "cyclic parent chain" if this greenlet is
    /// an ancestor of `p` (or `p` itself); if this is a main greenlet; if `p` is empty; if
    /// `p` lives on another thread.
    void set_parent(const greenlet& p);

    /// Gives a greenlet created without a function its function.
    /// Throws: greenfiber::error if it has started ("run cannot be set after the start").
    template <class Fn>
    void set_run(Fn&& fn) {
        set_run_impl(make_run(std::forward<Fn>(fn)));
    }
    /// True while it has a function and has not started (greenlet's `run` attribute).
    bool has_run() const noexcept {
        return p_->state == detail::gstate::not_started && p_->run != nullptr;
    }

    /// The name given at creation, or "" for none (a task's fiber: the task's name, which
    /// any_task::set_name() changes). Switches: no.
    const std::string& name() const noexcept { return p_->name; }
    /// A short description for messages: `greenlet 'name' (#7)`, or `greenlet #7` without
    /// a name (7 standing for its id).
    std::string describe() const;
    /// A greenlet's state in greenlet's repr words, e.g. "suspended active started".
    std::string state_string() const;
    /// The usable stack size in bytes (0 for a main greenlet and before its stack is
    /// allocated: at the first start, or at construction with options::eager_stack).
    std::size_t stack_size() const noexcept {
        return p_->is_main || (p_->state == detail::gstate::not_started && p_->stack_lo == nullptr)
                   ? 0
                   : p_->stack_size;
    }
    /// The id of the thread this greenlet belongs to.
    std::thread::id thread_id() const noexcept;

    /// Whether the handle refers to a greenlet (false once moved from).
    explicit operator bool() const noexcept { return p_ != nullptr; }
    /// Whether both handles refer to the same greenlet. Switches: no.
    friend bool operator==(const greenlet& a, const greenlet& b) noexcept { return a.p_ == b.p_; }

  private:
    explicit greenlet(detail::greenlet_impl* p) noexcept : p_(p) {}
    greenlet(detail::run_base* run, const greenlet* parent, options&& opts, void* storage = nullptr,
             void (*dispose)(detail::greenlet_impl*) noexcept = nullptr);
    void set_run_impl(detail::run_base* run);

    template <class Fn>
    static detail::run_base* make_run(Fn&& fn) {
        return new detail::run_holder<std::decay_t<Fn>>(std::forward<Fn>(fn));
    }

    friend struct detail::access;
    detail::greenlet_impl* p_ = nullptr;  // Strong reference, or null.
};

/// Marks a region of the calling greenlet in which it must not be killed: a destructor (or
/// any other noexcept code) that suspends. Raising greenlet_exit at a switch inside such a
/// region would escape a noexcept function and call std::terminate, so while one is open
/// a drop of the greenlet's last handle does not kill it (the drop is reported instead,
/// see the class comment of greenlet) and throw_in() into it throws in the caller.
/// Scopes nest. The scope belongs to the greenlet that was current at its construction;
/// create and destroy it on that greenlet's stack, as a local.
/// Switches: no.   Thread: thread-bound.   Throws: nothing.
class no_kill_scope {
  public:
    no_kill_scope() noexcept : g_(detail::tls != nullptr ? detail::tls->current : nullptr) {
        if (g_ != nullptr) ++g_->no_kill;
    }
    ~no_kill_scope() {
        if (g_ != nullptr) --g_->no_kill;
    }
    no_kill_scope(const no_kill_scope&) = delete;
    no_kill_scope& operator=(const no_kill_scope&) = delete;

    /// Whether an exception raised at a switch of the calling greenlet now could call
    /// std::terminate: it is inside a no_kill_scope, or it is unwinding an exception (a
    /// destructor running during unwinding). A layer that raises its own exceptions at a
    /// suspension point (a cancellation) can test it first.
    /// Switches: no.   Thread: thread-bound.
    /// Cheap enough for every park: it reads the thread's cached exception state instead of
    /// calling std::uncaught_exceptions() (__cxa_get_globals through __tls_get_addr).
    static bool active() noexcept {
        const detail::thread_state* ts = detail::tls;
        if (ts == nullptr) return std::uncaught_exceptions() > 0;
        return ts->eh_globals->uncaught != 0 || ts->current->no_kill != 0;
    }

  private:
    detail::greenlet_impl* g_;  // Borrowed: the scope lives on this greenlet's stack.
};

/// Events of the trace hook.
enum class trace_event { switch_to, throw_in };

/// Called for every switch and throw between greenlets of a thread, on the target's
/// stack, after the switch and before the target continues. As in greenlet, that includes
/// a switch that lands back in the caller (to itself, or up a dead greenlet's chain:
/// origin and target are the caller), and an unstarted greenlet killed by an exception
/// shows as a throw into it followed by its death's switch or throw on to its parent
/// (those two calls run on the caller's stack: the killed greenlet never gets one). An
/// exception from the hook is raised in the target as if thrown into it, and turns
/// tracing off for the thread.
using trace_function =
    std::function<void(trace_event, const greenlet& origin, const greenlet& target)>;

/// Installs `fn` (empty: none) as this thread's trace hook and returns the previous one.
/// Switches: no.   Thread: thread-bound (each thread has its own hook).
trace_function settrace(trace_function fn);
/// A copy of this thread's trace hook. Switches: no.
trace_function gettrace();

/// Live counters, for leak checks in tests. Switches: no.   Thread: thread-safe.
std::size_t live_greenlets() noexcept;

namespace detail {

struct access {
    static greenlet_impl* impl(const greenlet& g) noexcept { return g.p_; }
    static greenlet adopt(greenlet_impl* g) noexcept { return greenlet(g); }
    /// A greenlet running `run` (owned: the greenlet deletes it when done with it; an upper
    /// layer that keeps it inside an object of its own gives it a no-op operator delete), with
    /// `parent`. Throws what the constructor throws (then `run` is deleted).
    static greenlet make(run_base* run, const greenlet& parent, greenlet::options&& opts) {
        return greenlet(run, &parent, std::move(opts));
    }
    /// As make(), with the control block constructed in `storage` (sizeof(greenlet_impl)
    /// bytes, suitably aligned) instead of allocated: its last release calls `dispose`
    /// (greenlet_impl::dispose), which must destroy the block and may then free the storage.
    /// If this throws, `dispose` has run when the block had been constructed.
    static greenlet make_in(void* storage, void (*dispose)(greenlet_impl*) noexcept, run_base* run,
                            const greenlet& parent, greenlet::options&& opts) {
        return greenlet(run, &parent, std::move(opts), storage, dispose);
    }
};

template <class T>
struct first_arg;
template <class R, class A>
struct first_arg<R (*)(A)> {
    using type = A;
};
template <class C, class R, class A>
struct first_arg<R (C::*)(A)> {
    using type = A;
};
template <class C, class R, class A>
struct first_arg<R (C::*)(A) const> {
    using type = A;
};
template <class C, class R, class A>
struct first_arg<R (C::*)(A) noexcept> {
    using type = A;
};
template <class C, class R, class A>
struct first_arg<R (C::*)(A) const noexcept> {
    using type = A;
};
template <class R, class A>
struct first_arg<R (*)(A) noexcept> {
    using type = A;
};

template <class Fn, class = void>
struct single_arg {};
template <class Fn>
struct single_arg<Fn, std::void_t<decltype(&Fn::operator())>>
    : first_arg<decltype(&Fn::operator())> {};
template <class Fn>
requires std::is_pointer_v<Fn>
struct single_arg<Fn, void> : first_arg<Fn> {
};

template <class R>
value to_value(R&& r) {
    if constexpr (std::is_same_v<std::decay_t<R>, value>) {
        return std::move(r);
    } else {
        return value(std::forward<R>(r));
    }
}

/// Adapts the three shapes of greenlet function: f(value), f(), f(T).
template <class Fn>
struct run_holder final : run_base {
    template <class F>
    explicit run_holder(F&& f) : fn(std::forward<F>(f)) {}

    template <class... A>
    value call(A&&... a) {
        if constexpr (std::is_void_v<std::invoke_result_t<Fn&, A...>>) {
            std::invoke(fn, std::forward<A>(a)...);
            return {};
        } else {
            return to_value(std::invoke(fn, std::forward<A>(a)...));
        }
    }

    value invoke(value&& arg) override {
        if constexpr (std::is_invocable_v<Fn&, value&&>) {
            return call(std::move(arg));
        } else if constexpr (std::is_invocable_v<Fn&>) {
            return call();
        } else {
            using T = std::decay_t<typename single_arg<Fn>::type>;
            return call(arg.take<T>());
        }
    }

    bool accepts(const value& arg) const noexcept override {
        if constexpr (std::is_invocable_v<Fn&, value&&>) {
            return true;
        } else if constexpr (std::is_invocable_v<Fn&>) {
            return arg.empty();
        } else {
            return arg.is<std::decay_t<typename single_arg<Fn>::type>>();
        }
    }

    const std::type_info& parameter() const noexcept override {
        if constexpr (std::is_invocable_v<Fn&, value&&>) {
            return typeid(value);
        } else if constexpr (std::is_invocable_v<Fn&>) {
            return typeid(void);
        } else {
            return typeid(std::decay_t<typename single_arg<Fn>::type>);
        }
    }

    Fn fn;
};

}  // namespace detail

}  // namespace greenfiber
