#pragma once
/// \file
/// Tasks: functions running in fibers of their own on the hub, with asyncio's Task API
/// (spawn(), task<T>, any_task, current_task(), all_tasks()).

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <ranges>
#include <source_location>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "greenfiber/detail/intrusive_list.hpp"
#include "greenfiber/detail/wait_list.hpp"
#include "greenfiber/hub.hpp"

namespace greenfiber {

/// Asking a task for something it does not have yet: result() of a pending task
/// (asyncio's InvalidStateError).
class invalid_state_error : public error {
  public:
    using error::error;
};

/// pending: created, not started yet; running: started and not finished, and not parked
/// (executing, woken and waiting for its turn, or switched away from by a plain greenlet
/// switch); parked: suspended in the hub, waiting for something that has not happened yet
/// (any_task::waiting_for() says what); done: finished with a result or an exception;
/// cancelled: finished by letting cancelled_error escape. asyncio's PENDING is pending,
/// running or parked here: `!t.done()` asks what asyncio's state asks.
/// One byte: a task keeps it beside its other small fields.
enum class task_status : std::uint8_t { pending, running, parked, done, cancelled };

/// "pending", "running", "parked", "done" or "cancelled". Switches: no.
constexpr const char* to_string(task_status s) noexcept {
    switch (s) {
        case task_status::pending:
            return "pending";
        case task_status::running:
            return "running";
        case task_status::parked:
            return "parked";
        case task_status::done:
            return "done";
        case task_status::cancelled:
            return "cancelled";
    }
    return "unknown";
}

/// Options of spawn().
struct spawn_options {
    std::string name{};  ///< empty: "task-N" (an initializer, so {.stack_size = n} is clean)
    std::size_t stack_size = 0;  ///< 0: the default
    /// Start at once: the task runs until its first suspension before spawn() returns
    /// (asyncio's eager tasks). From a hub callback, or from a fiber on a small stack (which
    /// has no room for the new stack's allocation and first switch), it is scheduled as usual.
    bool eager = false;
    /// Where the task is spawned from (any_task::site()). The default is evaluated where these
    /// options are aggregate-initialized, which in `spawn({.name = "x"}, fn)` or
    /// `spawn(spawn_options{"x"}, fn)` is the caller's line; options built earlier and passed
    /// later name the line that built them. Options default-initialized (`spawn_options o;`)
    /// record no line, and site() then names the function's type: build them with braces
    /// (`spawn_options{.name = n}`) or set this. Set it to forward a caller's site (a wrapper
    /// that spawns on behalf of its own caller takes a std::source_location default argument).
    std::source_location site = std::source_location::current();
    /// Nonzero: the task's fiber runs on a small stack of this many bytes (stack.hpp, "Small
    /// stacks": a cancellation unwinds on it too). stack_size must then be 0.
    std::size_t small_stack = 0;
};

template <class T>
class task;
class any_task;
class event_loop;
any_task current_task() noexcept;
std::vector<any_task> all_tasks();

namespace detail {

/// Tags of the two per-thread lists a task can be in: the unfinished tasks (while it is
/// pending or running) and the finished tasks whose exception nobody retrieved yet.
struct live_tasks_tag;
struct unretrieved_tag;
/// Tag of a task's list of done entries.
struct done_tag;

class task_base;

/// A spawn site as task_base::site() words it: "file:line:function", or the type of the
/// task's function when no line was recorded (`at.line()` is 0). Switches: no.
/// Throws: std::bad_alloc.
std::string format_site(const std::source_location& at, const std::type_info& fn);

/// What most tasks never have, in one block that a task allocates when it first needs it
/// (one pointer in every task instead of three fields): an interrupt not raised yet, a
/// cancellation's message, and the name kept once kill() has dropped the fiber that held it.
/// Owned by its task; freed with it. Thread: as its task.
struct task_rare {
    std::exception_ptr interrupt;  ///< raised once at the next suspension point
    std::string cancel_message;    ///< "" if none was given
    std::string name;              ///< empty while the fiber holds the name
};

/// The types a task's function deals in: one static record per instantiation, so that a
/// task keeps one pointer to it instead of two.
struct task_types {
    const std::type_info* fn;      ///< the function's type (site() names it)
    const std::type_info* result;  ///< what it returns
};
/// The record of a task whose function is `Fn` returning `R`.
template <class Fn, class R>
inline constexpr task_types task_types_of{&typeid(Fn), &typeid(R)};

/// One thing to do when a task finishes: queue a done callback, wake a fiber waiting for it
/// (get(), wait(), a combinator), or call a combinator's listener. A task keeps every kind in
/// one list and fires them in the order they were registered, because asyncio's awaiters are
/// done callbacks too: whoever registered first resumes first. `fire` is called on the
/// finishing fiber after the entry was unlinked; it must not switch (it queues or wakes).
class done_entry : public list_hook<done_tag> {
  public:
    using fire_fn = void (*)(done_entry& self, task_base& t) noexcept;
    explicit done_entry(fire_fn f) noexcept : fire(f) {}
    fire_fn fire;
};

/// A done entry that wakes a parked fiber's wait record (call_soon semantics: the fiber is
/// queued behind what is ready, in the entry's turn). Borrowed: lives in the waiting frame.
struct done_wake : done_entry {
    done_wake() noexcept : done_entry(&wake_it) {}
    explicit done_wake(waiter& wt) noexcept : done_entry(&wake_it), w(&wt) {}
    waiter* w = nullptr;  // Borrowed: the waiting frame's record.

  private:
    static void wake_it(done_entry& self, task_base& t) noexcept;
};

/// A done entry calling `fn(self, task)` synchronously on the finishing fiber, in its turn
/// among the other entries (gevent-style bookkeeping such as pool slots). `fn` must not
/// switch. Borrowed: its owner unlinks it before it goes away.
struct done_listener : done_entry {
    done_listener() noexcept : done_entry(&call) {}
    void (*fn)(done_listener& self, task_base& t) noexcept = nullptr;
    void* context = nullptr;

  private:
    static void call(done_entry& self, task_base& t) noexcept {
        auto& l = static_cast<done_listener&>(self);
        l.fn(l, t);
    }
};

/// The shared state of a task. Thread-bound: used only on its hub's thread.
/// Reference-counted: every task<T> handle, plus the hub while the task is unfinished
/// (the hub owns running tasks; dropping every handle detaches the task).
class task_base : public list_hook<live_tasks_tag>, public list_hook<unretrieved_tag> {
  public:
    task_base(const task_base&) = delete;
    task_base& operator=(const task_base&) = delete;

    void retain() noexcept { ++refs_; }
    void release() noexcept {
        if (--refs_ == 0) delete this;
    }

    ///@{
    /// A task and its fiber's control block share one allocation, the block just before the
    /// task: one allocation and one free per task instead of two. The storage goes back when
    /// both are done with it, the task (its last reference) and its fiber (its last handle,
    /// which a copy of fiber() may hold longer). Both ends run on the task's thread (the
    /// fiber's block is disposed of there: greenlet_impl::dispose). Throws: std::bad_alloc.
    static void* operator new(std::size_t size);
    static void operator delete(void* p) noexcept;
    ///@}
    ///@{
    /// An over-aligned task is allocated alone; its fiber's control block is then a
    /// separate allocation. Throws: std::bad_alloc.
    static void* operator new(std::size_t size, std::align_val_t al) {
        return ::operator new(size, al);
    }
    static void operator delete(void* p, std::align_val_t al) noexcept { ::operator delete(p, al); }
    ///@}

    /// pending, running, done or cancelled: never parked (any_task::status() adds that).
    task_status status() const noexcept { return status_; }
    bool done() const noexcept {
        return status_ == task_status::done || status_ == task_status::cancelled;
    }
    bool cancel(std::string message);
    int cancelling() const noexcept { return cancel_requests_; }
    int uncancel() noexcept {
        if (cancel_requests_ > 0 && --cancel_requests_ == 0) must_cancel_ = false;
        return cancel_requests_;
    }

    void wait_done() { wait_for_done(false); }
    /// wait_done() for get(): if the caller is cancelled while it waits, this task is
    /// cancelled too and waited for (shielded) before the caller's cancelled_error goes on.
    void await_done();

    /// A borrowed entry is linked while registered; its owner unlinks it
    /// (remove_done_entry()) before it goes away. Entries fire in registration order.
    void add_done_entry(done_entry& e) noexcept;
    void remove_done_entry(done_entry& e) noexcept;
    /// Parks once with the caller's wait record, as a done entry: returns when the task
    /// finished or anything else woke `sw.w`. Switches: yes.
    void wait_done_with(sync_waiter& sw);
    /// wait_done() with a deadline: false when it passed first. Switches: yes.
    bool wait_done_until(std::chrono::steady_clock::time_point deadline);
    void check_result();  // throws cancelled_error or the exception (then marked retrieved)
    std::exception_ptr exception();
    /// The exception of a finished task without marking it retrieved (null if none).
    std::exception_ptr peek_exception() const noexcept {
        return status_ == task_status::pending ? nullptr : started_.error;
    }
    std::uint64_t add_done_callback(detail::unique_function<void()> fn);
    std::size_t remove_done_callback(std::uint64_t id) noexcept;

    /// The name lives in the task's fiber (one string, shown by greenlet::name() too); the
    /// task keeps its own copy only once kill() has dropped its fiber.
    const std::string& name() const noexcept {
        return fiber_ ? fiber_impl_->name : rare_ ? rare_->name : no_string();
    }
    /// The message of a cancellation ("" if none was given). Switches: no.
    const std::string& cancel_message() const noexcept {
        return rare_ ? rare_->cancel_message : no_string();
    }
    void set_name(std::string name);
    /// Where it was spawned from: "file:line:function", or, for a task spawned with more
    /// arguments than the site-capturing overloads take, the type of its function.
    std::string site() const;
    const std::source_location& spawned_at() const noexcept { return site_; }
    /// The wait its fiber is in (woken or not), or null. Switches: no.
    const waiter* current_wait() const noexcept { return wait_or_null(); }
    /// any_task::waiting_for() / any_task::waited(), for code holding the state.
    std::string waiting_for() const;
    std::chrono::steady_clock::duration waited() const noexcept;
    /// The type its function returns. Switches: no.
    const std::type_info& result_type() const noexcept { return *types_->result; }
    /// The task whose fiber is `fiber`, if that fiber belongs to an unfinished task of this
    /// thread; found by walking the list, so `fiber` may be a dangling pointer. Switches: no.
    static task_base* of_fiber(const greenlet_impl* fiber) noexcept;
    /// Throws greenfiber::error naming both threads unless called on the task's thread.
    void check_thread(const char* what) const;
    hub& owner() const noexcept { return *hub_; }
    ///@{
    /// Its fiber / the type of its function (site() names it): for dump() and the stall
    /// monitor's signal handler.
    const greenlet& fiber() const noexcept { return fiber_; }
    const std::type_info& function_type() const noexcept { return *types_->fn; }
    ///@}

    /// Whether hub::park must raise instead of parking: an interrupt is pending, or a
    /// cancellation is requested (sticky until the task ends or uncancel() brings the count
    /// to zero).
    bool cancel_pending() const noexcept {
        return cancel_requests_ > 0 || (rare_ && rare_->interrupt);
    }
    /// Throws the pending interrupt (once), else cancelled_error.
    [[noreturn]] void raise_cancel();

    /// Raises `e` once at the task's current or next suspension point (gevent's Timeout and
    /// kill(exception)); unlike cancel() it is not sticky. Switches: no.
    void interrupt(std::exception_ptr e);
    /// Withdraws an interrupt that was not raised yet; returns whether one was pending.
    bool withdraw_interrupt() noexcept {
        return rare_ && static_cast<bool>(std::exchange(rare_->interrupt, nullptr));
    }

    static task_base* current() noexcept;
    static std::vector<task_base*> all(hub& h);
    static void destroy_all(hub& h) noexcept;
    /// Ends the task now: a pending one is cancelled, a started one is killed with
    /// greenlet_exit (unless it is the caller). Switches: yes, into the task's fiber.
    void kill() noexcept;
    /// Reports (once) every finished task whose exception nobody retrieved yet; run() calls it
    /// on the way out, for tasks whose handles outlive it.
    static void report_all_unretrieved() noexcept;
    /// Counts of this thread's lists, for leak checks (detail/debug.hpp).
    static std::size_t live_count() noexcept;
    static std::size_t unretrieved_count() noexcept;

  protected:
    /// `in_block`: allocated by the first operator new above, with room for the fiber's
    /// control block before it (false for an over-aligned task).
    task_base(hub& h, spawn_options&& opts, const task_types& types, bool in_block);
    virtual ~task_base();
    virtual void invoke() = 0;  // runs the function and stores its result
    /// Queues its first run, or with `eager` (spawn_options::eager) runs it now.
    void start(bool eager);

  private:
    friend class greenfiber::hub;
    void body() noexcept;
    /// Its fiber could not start (e.g. no stack could be mapped): it ends done with `e`.
    void fail_start(std::exception_ptr e) noexcept;
    void finish() noexcept;
    /// The task's fiber, its control block in the task's allocation when `in_block`.
    greenlet make_fiber(hub& h, spawn_options& opts, bool in_block);
    void end_wait() noexcept;  // ends the current wait early (cancel, interrupt)
    void report_unretrieved() noexcept;
    void mark_retrieved() noexcept;
    /// The wait its fiber is parked in, or null (always while it is pending).
    waiter* wait_or_null() const noexcept {
        return status_ == task_status::pending ? nullptr : started_.wait;
    }
    /// Ends its pending state with status `s`: the start entry (out of the ready queue by
    /// now) gives its place to the fields of a started task. The one way out of pending.
    void leave_pending(task_status s) noexcept;
    /// Its rare block, allocated now if it has none. Throws: std::bad_alloc.
    task_rare& rare();
    /// A shared empty string, for the names and messages a task does not have.
    static const std::string& no_string() noexcept;

    /// The function of its fiber, kept inside the task (one allocation less per spawn): the
    /// fiber's `delete` of it when it is done ends its life and frees nothing (operator
    /// delete does nothing here); a task that goes before its fiber has done so unhooks it
    /// (~task_base), so the fiber never runs a function that is gone.
    /// It holds no pointer to its task: it runs on the task's fiber, whose `local` is the task.
    struct fiber_run final : run_base {
        value invoke(value&&) override {
            static_cast<task_base*>(tls->current->local)->body();
            return {};
        }
        bool accepts(const value& arg) const noexcept override { return arg.empty(); }
        const std::type_info& parameter() const noexcept override { return typeid(void); }
        static void operator delete(void*) noexcept {}
    };
    /// Storage of the fiber's fiber_run, constructed with the fiber.
    alignas(fiber_run) unsigned char run_storage_[sizeof(fiber_run)];

    hub* hub_;
    greenlet fiber_;
    greenlet_impl* fiber_impl_;  // Borrowed from fiber_ (which may be dropped to kill it).
    /// What only a task that left pending uses (its first run began, or it ended first).
    struct after_start {
        /// The wait the fiber is parked in; set by hub::park. While it is get()'s wait
        /// (describe_get), describe_arg is the task awaited: cancel() passes the request on
        /// to it at once, as asyncio's Task.cancel() cancels the future its task awaits.
        waiter* wait = nullptr;
        std::exception_ptr error;  ///< the exception it finished with, if any
    };
    /// One place, two owners in turn, told apart by status_. While the task is pending: its
    /// first run's entry in the hub's ready queue (a ready entry, not a wait record: it
    /// never parks). From leave_pending() on, called once the entry is out of the queue
    /// (taken by the hub, removed by kill() or by the first run, never queued for an eager
    /// start): the started task's fields. A parked task pays for one of the two, not both.
    union {
        ready_entry start_;
        after_start started_;
    };
    // The small fields side by side: a parked task's control block is most of its heap.
    task_status status_ = task_status::pending;
    /// A cancellation requested while the fiber could not take it (running, pending, or in
    /// a shielded wait) and not raised yet: if the function then returns normally, the task
    /// ends cancelled (asyncio's _must_cancel).
    bool must_cancel_ = false;
    bool retrieved_ = false;
    /// Set while it waits in get() and cancel() has passed the request on to the task
    /// awaited (await_done() must not pass it on again).
    bool await_passed_ = false;
    /// The id of the next done callback. 32 bits fill the flags' word: ids repeat only after
    /// 2^32 callbacks added to one task, and only an id still registered then is ambiguous.
    std::uint32_t next_callback_id_ = 1;
    std::unique_ptr<task_rare> rare_;  // null until something rare is set (see task_rare)
    /// wait_done(); `get` says which call waits, for the wait's description.
    void wait_for_done(bool get);
    static std::string describe_get(const waiter& w);
    static std::string describe_wait(const waiter& w);
    /// Parks the caller as a done entry until the task finishes, `deadline` (if not null)
    /// passes (returns false) or anything else wakes `w`. Switches: yes.
    bool park_done(waiter& w, const std::chrono::steady_clock::time_point* deadline, bool shielded);
    /// What to do when it finishes, in registration order: done callbacks (owned by the
    /// task while linked: freed when they fire or are removed), waiting fibers and
    /// listeners (borrowed: each owner unlinks its own).
    intrusive_list<done_entry, done_tag, false> done_;  // uncounted: nobody asks its size
    const task_types* types_;                           // Borrowed: a static record (task_types_of)
    std::source_location site_;  // one pointer in libstdc++: nothing is formatted at spawn
    int cancel_requests_ = 0;    // beside refs_: the two 4-byte fields share 8 bytes
    std::uint32_t refs_ = 1;
};

/// Whether T can really be copied: std::is_copy_constructible is true for a vector of
/// move-only elements, whose copy then fails to compile. Only ranges are looked into, and
/// never a value_type that names the type itself (Beast's header element does).
template <class T, class = void>
struct copyable : std::is_copy_constructible<T> {};
template <class T>
requires std::ranges::range<T> &&
    (!std::is_same_v<T, typename T::value_type>)struct copyable<T,
                                                                std::void_t<typename T::value_type>>
    : std::conjunction<std::is_copy_constructible<T>, copyable<typename T::value_type>> {
};
template <class T>
inline constexpr bool copyable_v = copyable<T>::value;

/// A task with room for its function's result (none for void: a void task keeps no
/// result, its status says it returned).
template <class T>
class task_value : public task_base {
  public:
    using task_base::task_base;
    std::optional<T> result;  ///< set when the function returned
};
template <>
class task_value<void> : public task_base {
  public:
    using task_base::task_base;
};

template <class R, class Fn, class... Args>
class task_impl final : public task_value<R> {
  public:
    template <class F, class... A>
    task_impl(hub& h, spawn_options&& opts, F&& fn, A&&... args)
        : task_value<R>(h, std::move(opts), task_types_of<Fn, R>,
                        alignof(task_impl) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__),
          fn_(std::forward<F>(fn)),
          args_(std::forward<A>(args)...) {
        // task_base::operator new's head sits before the task_base subobject: it must be
        // at the start of the allocation (single inheritance).
        assert(static_cast<void*>(static_cast<task_base*>(this)) == static_cast<void*>(this));
        // The options' name was moved out above; the flag is still there.
        this->start(opts.eager);
    }

  private:
    void invoke() override {
        if constexpr (std::is_void_v<R>) {
            std::apply(fn_, std::move(args_));
        } else {
            this->result.emplace(std::apply(fn_, std::move(args_)));
        }
    }
    // No room for what is empty: a function without captures, no arguments (an empty
    // tuple would take 8 bytes of every task otherwise).
    [[no_unique_address]] Fn fn_;
    [[no_unique_address]] std::tuple<Args...> args_;
};

}  // namespace detail

/// An untyped handle to a task: everything but its result. Handles are move-only; share()
/// makes another. Dropping every handle detaches the task: the hub keeps it running to
/// the end. Thread: thread-bound.
class any_task {
  public:
    any_task() noexcept = default;
    ///@{
    /// Takes over `o`'s handle; `o` is left empty. A move-assignment drops the handle held
    /// before (detaching the task if it was the last). Switches: no.
    any_task(any_task&& o) noexcept : t_(std::exchange(o.t_, nullptr)) {}
    any_task& operator=(any_task&& o) noexcept {
        any_task(std::move(o)).swap(*this);
        return *this;
    }
    ///@}
    any_task(const any_task&) = delete;
    any_task& operator=(const any_task&) = delete;
    ~any_task() {
        if (t_ != nullptr) t_->release();
    }
    /// Exchanges the two handles. Switches: no.
    void swap(any_task& o) noexcept { std::swap(t_, o.t_); }

    /// Another untyped handle to the same task. Switches: no.
    any_task share_any() const noexcept {
        if (t_ != nullptr) t_->retain();
        return any_task(t_);
    }

    /// Suspends until the task is finished; neither returns its result nor throws its
    /// exception (see task<T>::get()). Resumes in its turn among the task's done callbacks
    /// and other waiters, by registration (see task<T>::add_done_callback()).
    /// Switches: yes.   Throws: cancelled_error if the *caller* is cancelled; loop_exit;
    /// greenfiber::error when a task waits for itself.
    void wait() const { t_->wait_done(); }

    /// The exception of a finished task, or null if it returned normally. Marks it retrieved.
    /// Throws: invalid_state_error if it is not finished; cancelled_error if cancelled.
    std::exception_ptr exception() const { return t_->exception(); }

    /// Requests cancellation: cancelled_error is raised at the task's current suspension
    /// point, or at its next one (or it never starts, if it has not). A task that returns
    /// without suspending again ends cancelled, as in asyncio; one that catches the
    /// cancelled_error and returns normally ends done with its result. Sticky, unlike
    /// asyncio: every later suspension point raises it again until uncancel() brings the
    /// count to zero, so catching it once cannot lose it; each raise comes after a turn of
    /// the hub, so a task that catches everything cannot freeze its thread. Returns false if
    /// the task is already finished. Switches: no.
    bool cancel(std::string message = {}) const { return t_->cancel(std::move(message)); }
    ///@{
    /// Pending cancellation requests; uncancel() withdraws one and returns the new count
    /// (at zero, a request not raised yet is withdrawn too, as in Python 3.13).
    int cancelling() const noexcept { return t_->cancelling(); }
    int uncancel() const noexcept { return t_->uncancel(); }
    ///@}

    ///@{
    /// Where the task is (pending, running, parked, done, cancelled: see task_status) /
    /// whether it is finished, whichever way / whether it ended cancelled. Switches: no.
    task_status status() const noexcept {
        const task_status s = t_->status();
        return s == task_status::running && parked() ? task_status::parked : s;
    }
    bool done() const noexcept { return t_->done(); }
    bool cancelled() const noexcept { return t_->status() == task_status::cancelled; }
    ///@}

    ///@{
    /// The task's name (spawn_options::name, or "task-N") / renames it. Switches: no.
    const std::string& name() const noexcept { return t_->name(); }
    void set_name(std::string n) const { t_->set_name(std::move(n)); }
    ///@}

    /// Where the task was spawned: "file:line:function" of the spawn() call (file as the
    /// compiler was given it), or the type of its function when spawn() had too many
    /// arguments to record the caller (see spawn()). Switches: no.
    /// Throws: std::bad_alloc.
    std::string site() const { return t_->site(); }
    /// The spawn() call's location (line 0 when it was not recorded). Switches: no.
    const std::source_location& spawned_at() const noexcept { return t_->spawned_at(); }

    /// Whether the task is parked: suspended in the hub, waiting for something that has not
    /// happened yet (see waiting_for()). False while it executes, while it is pending, once it
    /// is woken (it then waits for its turn in the ready queue) and once it is finished.
    /// status() == task_status::parked says the same. Switches: no.
    bool parked() const noexcept;
    /// What the parked task waits for, in words ("sleep until +2.3 s", "event 'ready'",
    /// "get() of task 'fetch-3'", "read on 127.0.0.1:8080 <- 127.0.0.1:51514 fd=12",
    /// "lock 'db' held by task 'writer'", "queue 'jobs' get (empty)"), formatted now from
    /// the waited-on object's current state (names given by users included); empty when it
    /// is not parked. Nothing is formatted while the task parks: only this call does it.
    /// Switches: no.   Thread: thread-bound.   Throws: std::bad_alloc.
    std::string waiting_for() const;
    /// How long the parked task has waited (zero when it is not parked). Measured from the
    /// hub's coarse clock, read once per turn of the hub (and per resume while the watchdog
    /// is on), so it can be short by the time the task ran before it parked, and has the
    /// clock's few milliseconds of resolution. Switches: no.
    std::chrono::steady_clock::duration waited() const noexcept;

    /// Whether the handle refers to a task (false when default-made or moved from).
    explicit operator bool() const noexcept { return t_ != nullptr; }
    /// Whether both handles refer to the same task. Switches: no.
    friend bool operator==(const any_task& a, const any_task& b) noexcept { return a.t_ == b.t_; }

    /// Not API: the shared state.
    detail::task_base* state() const noexcept { return t_; }

  protected:
    friend any_task current_task() noexcept;
    friend std::vector<any_task> all_tasks();
    /// Adopts one reference to `t` (for current_task(), all_tasks() and task<T>).
    explicit any_task(detail::task_base* t) noexcept : t_(t) {}
    detail::task_base* t_ = nullptr;  ///< One reference, or null.
};

/// A handle to a task whose function returns T: a function running in its own fiber on
/// this thread's hub, with asyncio's Task API. An exception that nobody retrieved (get(),
/// result(), exception()) is reported once when the task's state is destroyed.
/// Thread: thread-bound.
template <class T>
class task : public any_task {
  public:
    /// What the task's function returns.
    using value_type = T;

    task() noexcept = default;

    /// Another handle to the same task. Switches: no.
    task share() const noexcept {
        if (t_ != nullptr) t_->retain();
        return task(t_);
    }

    /// Suspends until the task is finished, then returns its result or rethrows its
    /// exception (cancelled_error if it was cancelled). A move-only result is moved out:
    /// get() it once. As with asyncio's `await task`, cancelling the caller while it waits
    /// here cancels this task too, and the caller's cancelled_error is raised once this task
    /// has finished (wait() and shield() do not propagate the cancellation).
    /// Switches: yes.   Throws: the task's exception; cancelled_error; greenfiber::error when
    /// a task waits for itself.
    T get() {
        t_->await_done();
        return result();
    }

    /// The result of a finished task. Switches: no.
    /// Throws: invalid_state_error if it is not finished; cancelled_error if it was
    /// cancelled; its exception if it failed.
    T result() {
        t_->check_result();
        if constexpr (std::is_void_v<T>) {
            return;
        } else if constexpr (detail::copyable_v<T>) {
            return *static_cast<detail::task_value<T>*>(t_)->result;
        } else {
            auto& r = static_cast<detail::task_value<T>*>(t_)->result;
            if (!r)
                throw invalid_state_error("greenfiber: the result of task '" + name() +
                                          "' was already taken");
            T out = std::move(*r);
            r.reset();
            return out;
        }
    }

    /// Calls `fn(task)` from the hub once the task is finished (also when it already is:
    /// never before add_done_callback returns). Returns an id for remove_done_callback.
    /// Done callbacks and the fibers waiting for the task (get(), wait(), combinators) are
    /// one list: when the task finishes each is queued on the hub in the order it was
    /// registered, as asyncio's awaiters are done callbacks too. Switches: no.
    template <class Fn>
    std::uint64_t add_done_callback(Fn fn) {
        // The callback holds a handle until it has run (then it is dropped).
        return t_->add_done_callback([fn = std::move(fn), h = share()]() mutable { fn(h); });
    }
    /// Removes a done callback; returns how many were removed (0 or 1; 0 once the task has
    /// finished, when every callback is already queued). Switches: no.
    std::size_t remove_done_callback(std::uint64_t id) noexcept {
        return t_->remove_done_callback(id);
    }

  private:
    template <class U>
    friend class task;
    friend class event_loop;
    template <class Fn, class... Args>
    friend auto spawn(spawn_options opts, Fn&& fn, Args&&... args);
    explicit task(detail::task_base* t) noexcept : any_task(t) {}
};

/// The task running the calling code, or an empty handle outside any task.
/// Switches: no.   Thread: thread-bound.
any_task current_task() noexcept;

/// Every unfinished task of this thread's hub. Switches: no.
std::vector<any_task> all_tasks();

/// The task in one line, as asyncio's repr shows a task, one of:
///
///     <task 'get' pending spawned=app.cpp:42>
///     <task 'get' running spawned=app.cpp:42>
///     <task 'get' parked waiting=[event 'ready'] waited=1.2s spawned=app.cpp:42>
///     <task 'get' ready woken-from=[a timer (sleep)] spawned=app.cpp:42>
///     <task 'get' suspended spawned=app.cpp:42>
///     <task 'get' done result=int spawned=app.cpp:42>
///     <task 'get' done exception=[std::runtime_error: boom] spawned=app.cpp:42>
///     <task 'get' cancelled message='shutting down' spawned=app.cpp:42>
///
/// States: pending (not started), running (executing now: it is the caller or the caller
/// runs inside it), parked (see any_task::parked(); `waiting=` is any_task::waiting_for(),
/// `waited=` any_task::waited() in seconds), ready (woken, waiting for its turn; only the
/// kind of its wait is shown, since what it waited on may be gone by then), suspended
/// (started and switched away from by hand, neither parked nor ready), done, cancelled
/// (message= only when one was given). `spawned=` is the file's base name and the line (or
/// the function's type, see any_task::site()). A done task's exception is shown without
/// being marked retrieved. An empty handle prints `<task none>`.
/// Switches: no.   Thread: thread-bound.   Throws: std::bad_alloc.
std::string to_string(const any_task& t);
/// Writes to_string(t). Switches: no.   Throws: what the stream throws; std::bad_alloc.
std::ostream& operator<<(std::ostream& os, const any_task& t);

namespace detail {
/// The caller's location, as a trailing default argument of the spawning calls without
/// options. Its own type, so that a user's std::source_location argument is never taken
/// for it.
struct call_site {
    explicit call_site(std::source_location l) noexcept : loc(l) {}
    std::source_location loc;
};
/// Whether `Fn` may be the function of a spawn without options (not the options).
template <class Fn>
concept spawnable_first = !std::is_same_v<std::decay_t<Fn>, spawn_options>;
}  // namespace detail

///@{
/// Creates a task running `fn(args...)` (all decay-copied) on this thread's hub. It is
/// scheduled, not started: it runs when the creating fiber next suspends. If its stack
/// cannot be mapped then, the task fails with stack_error (stack.hpp), which names it.
///
/// The task records where it was spawned (any_task::site()): with options, from
/// spawn_options::site; without, from a trailing default argument, which C++ evaluates at
/// the caller. A parameter pack cannot be followed by a deducible parameter, so the form
/// without options is one overload per arity, for up to 6 arguments; with 7 or more the pack
/// overload runs and the site is the function's type (pass options to keep the line).
/// Switches: no (yes with spawn_options::eager).   Thread: thread-bound.
/// Throws: std::bad_alloc; stack_error at once with spawn_options::eager.
template <class Fn, class... Args>
[[nodiscard]] auto spawn(spawn_options opts, Fn&& fn, Args&&... args) {
    using R = std::invoke_result_t<std::decay_t<Fn>&&, std::decay_t<Args>&&...>;
    auto* t = new detail::task_impl<R, std::decay_t<Fn>, std::decay_t<Args>...>(
        hub::current(), std::move(opts), std::forward<Fn>(fn), std::forward<Args>(args)...);
    return task<R>(t);
}
template <detail::spawnable_first Fn>
[[nodiscard]] auto spawn(
    Fn&& fn, detail::call_site at = detail::call_site(std::source_location::current())) {
    return spawn(spawn_options{.site = at.loc}, std::forward<Fn>(fn));
}
template <detail::spawnable_first Fn, class A1>
[[nodiscard]] auto spawn(
    Fn&& fn, A1&& a1, detail::call_site at = detail::call_site(std::source_location::current())) {
    return spawn(spawn_options{.site = at.loc}, std::forward<Fn>(fn), std::forward<A1>(a1));
}
template <detail::spawnable_first Fn, class A1, class A2>
[[nodiscard]] auto spawn(
    Fn&& fn, A1&& a1, A2&& a2,
    detail::call_site at = detail::call_site(std::source_location::current())) {
    return spawn(spawn_options{.site = at.loc}, std::forward<Fn>(fn), std::forward<A1>(a1),
                 std::forward<A2>(a2));
}
template <detail::spawnable_first Fn, class A1, class A2, class A3>
[[nodiscard]] auto spawn(
    Fn&& fn, A1&& a1, A2&& a2, A3&& a3,
    detail::call_site at = detail::call_site(std::source_location::current())) {
    return spawn(spawn_options{.site = at.loc}, std::forward<Fn>(fn), std::forward<A1>(a1),
                 std::forward<A2>(a2), std::forward<A3>(a3));
}
template <detail::spawnable_first Fn, class A1, class A2, class A3, class A4>
[[nodiscard]] auto spawn(
    Fn&& fn, A1&& a1, A2&& a2, A3&& a3, A4&& a4,
    detail::call_site at = detail::call_site(std::source_location::current())) {
    return spawn(spawn_options{.site = at.loc}, std::forward<Fn>(fn), std::forward<A1>(a1),
                 std::forward<A2>(a2), std::forward<A3>(a3), std::forward<A4>(a4));
}
template <detail::spawnable_first Fn, class A1, class A2, class A3, class A4, class A5>
[[nodiscard]] auto spawn(
    Fn&& fn, A1&& a1, A2&& a2, A3&& a3, A4&& a4, A5&& a5,
    detail::call_site at = detail::call_site(std::source_location::current())) {
    return spawn(spawn_options{.site = at.loc}, std::forward<Fn>(fn), std::forward<A1>(a1),
                 std::forward<A2>(a2), std::forward<A3>(a3), std::forward<A4>(a4),
                 std::forward<A5>(a5));
}
template <detail::spawnable_first Fn, class A1, class A2, class A3, class A4, class A5, class A6>
[[nodiscard]] auto spawn(
    Fn&& fn, A1&& a1, A2&& a2, A3&& a3, A4&& a4, A5&& a5, A6&& a6,
    detail::call_site at = detail::call_site(std::source_location::current())) {
    return spawn(spawn_options{.site = at.loc}, std::forward<Fn>(fn), std::forward<A1>(a1),
                 std::forward<A2>(a2), std::forward<A3>(a3), std::forward<A4>(a4),
                 std::forward<A5>(a5), std::forward<A6>(a6));
}
template <detail::spawnable_first Fn, class... Args>
[[nodiscard]] auto spawn(Fn&& fn, Args&&... args) {
    return spawn(spawn_options{.site = std::source_location{}}, std::forward<Fn>(fn),
                 std::forward<Args>(args)...);
}
///@}

}  // namespace greenfiber
