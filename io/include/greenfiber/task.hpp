#pragma once
/// \file
/// Tasks: functions running in fibers of their own on the hub, with asyncio's Task API
/// (spawn(), task<T>, any_task, current_task(), all_tasks()).

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <ranges>
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

/// pending: created, not started yet; running: started and not finished (executing or
/// suspended); done: finished with a result or an exception; cancelled: finished by letting
/// cancelled_error escape.
enum class task_status { pending, running, done, cancelled };

/// "pending", "running", "done" or "cancelled". Switches: no.
constexpr const char* to_string(task_status s) noexcept {
    switch (s) {
        case task_status::pending:
            return "pending";
        case task_status::running:
            return "running";
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
    /// (asyncio's eager tasks). From a hub callback it is scheduled as usual.
    bool eager = false;
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

    void wait_done();
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
    std::exception_ptr peek_exception() const noexcept { return error_; }
    std::uint64_t add_done_callback(detail::unique_function<void()> fn);
    std::size_t remove_done_callback(std::uint64_t id) noexcept;

    const std::string& name() const noexcept { return name_; }
    void set_name(std::string name);
    /// Where it was spawned from: the type of its function (a lambda's type names the
    /// function that wrote it).
    std::string site() const;
    /// Throws greenfiber::error naming both threads unless called on the task's thread.
    void check_thread(const char* what) const;
    hub& owner() const noexcept { return *hub_; }

    /// Whether hub::park must raise instead of parking: an interrupt is pending, or a
    /// cancellation is requested (sticky until the task ends or uncancel() brings the count
    /// to zero).
    bool cancel_pending() const noexcept { return interrupt_ || cancel_requests_ > 0; }
    /// Throws the pending interrupt (once), else cancelled_error.
    [[noreturn]] void raise_cancel();

    /// Raises `e` once at the task's current or next suspension point (gevent's Timeout and
    /// kill(exception)); unlike cancel() it is not sticky. Switches: no.
    void interrupt(std::exception_ptr e);
    /// Withdraws an interrupt that was not raised yet; returns whether one was pending.
    bool withdraw_interrupt() noexcept {
        return static_cast<bool>(std::exchange(interrupt_, nullptr));
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
    task_base(hub& h, spawn_options opts, const std::type_info& fn_type);
    virtual ~task_base();
    virtual void invoke() = 0;  // runs the function and stores its result
    void start();

  private:
    friend class greenfiber::hub;
    void body() noexcept;
    /// Its fiber could not start (e.g. no stack could be mapped): it ends done with `e`.
    void fail_start(std::exception_ptr e) noexcept;
    void finish() noexcept;
    void end_wait() noexcept;  // ends the current wait early (cancel, interrupt)
    void report_unretrieved() noexcept;
    void mark_retrieved() noexcept;

    hub* hub_;
    greenlet fiber_;
    greenlet_impl* fiber_impl_;  // Borrowed from fiber_ (which may be dropped to kill it).
    waiter start_{"its first run"};
    waiter* wait_ = nullptr;  // the wait the fiber is parked in; set by hub::park
    /// The task whose get() this one is parked in (borrowed: the get() caller's handle keeps
    /// it alive while set). cancel() passes the request on to it at once, as asyncio's
    /// Task.cancel() cancels the future its task awaits; null once passed on.
    task_base* awaiting_ = nullptr;
    task_status status_ = task_status::pending;
    int cancel_requests_ = 0;
    /// A cancellation requested while the fiber could not take it (running, pending, or in
    /// a shielded wait) and not raised yet: if the function then returns normally, the task
    /// ends cancelled (asyncio's _must_cancel).
    bool must_cancel_ = false;
    std::exception_ptr interrupt_;  // raised once at the next suspension point
    std::string cancel_message_;
    std::exception_ptr error_;
    bool retrieved_ = false;
    /// Parks the caller as a done entry until the task finishes, `deadline` (if not null)
    /// passes (returns false) or anything else wakes `w`. Switches: yes.
    bool park_done(waiter& w, const std::chrono::steady_clock::time_point* deadline, bool shielded);
    /// What to do when it finishes, in registration order: done callbacks (owned by the
    /// task while linked: freed when they fire or are removed), waiting fibers and
    /// listeners (borrowed: each owner unlinks its own).
    intrusive_list<done_entry, done_tag> done_;
    std::uint64_t next_callback_id_ = 1;
    std::string name_;
    const std::type_info* fn_type_;
    bool eager_;
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

template <class T>
class task_value : public task_base {
  public:
    using task_base::task_base;
    std::optional<std::conditional_t<std::is_void_v<T>, char, T>> result;
};

template <class R, class Fn, class... Args>
class task_impl final : public task_value<R> {
  public:
    task_impl(hub& h, spawn_options opts, Fn fn, Args... args)
        : task_value<R>(h, std::move(opts), typeid(Fn)),
          fn_(std::move(fn)),
          args_(std::move(args)...) {
        this->start();
    }

  private:
    void invoke() override {
        if constexpr (std::is_void_v<R>) {
            std::apply(fn_, std::move(args_));
            this->result.emplace('\0');
        } else {
            this->result.emplace(std::apply(fn_, std::move(args_)));
        }
    }
    Fn fn_;
    std::tuple<Args...> args_;
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
    /// Where the task is (pending, running, done, cancelled...) / whether it is finished,
    /// whichever way / whether it ended cancelled. Switches: no.
    task_status status() const noexcept { return t_->status(); }
    bool done() const noexcept { return t_->done(); }
    bool cancelled() const noexcept { return t_->status() == task_status::cancelled; }
    ///@}

    ///@{
    /// The task's name (spawn_options::name, or "task-N") / renames it. Switches: no.
    const std::string& name() const noexcept { return t_->name(); }
    void set_name(std::string n) const { t_->set_name(std::move(n)); }
    ///@}

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

///@{
/// Creates a task running `fn(args...)` (all decay-copied) on this thread's hub. It is
/// scheduled, not started: it runs when the creating fiber next suspends. If its stack
/// cannot be mapped then, the task fails with stack_error (stack.hpp), which names it.
/// Switches: no (yes with spawn_options::eager).   Thread: thread-bound.
/// Throws: std::bad_alloc; stack_error at once with spawn_options::eager.
template <class Fn, class... Args>
[[nodiscard]] auto spawn(spawn_options opts, Fn&& fn, Args&&... args) {
    using R = std::invoke_result_t<std::decay_t<Fn>&&, std::decay_t<Args>&&...>;
    auto* t = new detail::task_impl<R, std::decay_t<Fn>, std::decay_t<Args>...>(
        hub::current(), std::move(opts), std::forward<Fn>(fn), std::forward<Args>(args)...);
    return task<R>(t);
}
template <class Fn, class... Args,
          class = std::enable_if_t<!std::is_same_v<std::decay_t<Fn>, spawn_options>>>
[[nodiscard]] auto spawn(Fn&& fn, Args&&... args) {
    return spawn(spawn_options{}, std::forward<Fn>(fn), std::forward<Args>(args)...);
}
///@}

}  // namespace greenfiber
