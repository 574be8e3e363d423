#pragma once
/// \file
/// The hub: each thread's scheduler on a Boost.Asio io_context, which parks fibers and
/// resumes them when what they wait for happens (gevent's hub), with hub_handle, sleep(),
/// yield_now() and the exceptions of waiting (cancelled_error, loop_exit).

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "greenfiber/deadline.hpp"
#include "greenfiber/detail/intrusive_list.hpp"
#include "greenfiber/detail/timer_heap.hpp"
#include "greenfiber/detail/unique_function.hpp"
#include "greenfiber/error.hpp"
#include "greenfiber/greenlet.hpp"
#include "greenfiber/stack.hpp"

namespace greenfiber {

/// Raised in a fiber whose wait can never end: the hub has nothing ready, nothing pending in
/// its reactor and no hub_handle is held anywhere, so no other thread can post to it
/// (gevent's LoopExit). The message names what the thread's main greenlet waits for and
/// every parked task with what it waits for.
class loop_exit : public error {
  public:
    using error::error;
};

/// Raised at the current or next suspension point of a cancelled task. Deliberately not
/// derived from std::exception (asyncio's CancelledError is a BaseException): a
/// `catch (const std::exception&)` must not swallow it, and code that catches (...) must
/// rethrow it.
class cancelled_error {
  public:
    cancelled_error() = default;
    ///@{
    /// A cancelled_error carrying `message` (task.cancel(message)) / that message, "" if none.
    /// Switches: no.
    explicit cancelled_error(std::string message) : message_(std::move(message)) {}
    const std::string& message() const noexcept { return message_; }
    ///@}

  private:
    std::string message_;
};

class hub;
class executor;

namespace detail {

class task_base;
class hub_anchor;
class hub_trace;
struct io_wait;
/// The timeline `h` records (trace.hpp), or null while it records none: every trace hook
/// tests this one pointer first. Switches: no.   Thread: `h`'s thread.
hub_trace* trace_of(const hub& h) noexcept;
/// This thread's hub if it has one (never creates it). Switches: no.
hub* hub_if_any() noexcept;
/// Cancels every unfinished task of this thread's hub and waits for them, at most `grace`
/// (a task still running then is reported by name). Switches: yes.
void cancel_and_join_tasks(std::chrono::steady_clock::duration grace) noexcept;
/// The hub's default executor (null until first use); see executor.hpp. Switches: no.
/// Thread: `h`'s thread.
std::shared_ptr<executor>& default_executor_slot(hub& h) noexcept;
/// Lets every other ready fiber and callback run once, like yield_now(), but is never a
/// cancellation point (run_until_complete's last turn). Switches: yes.
/// Throws: greenfiber::error on the hub itself.
void yield_shielded();

class ready_queue;

/// This thread's hub, null until hub::current() first creates it (and again once it is
/// destroyed at thread exit). Initial-exec TLS: hub::current() is one %fs-relative load.
extern constinit thread_local hub* current_hub GREENFIBER_TLS_MODEL;

/// The coarse monotonic clock (CLOCK_MONOTONIC_COARSE: vDSO, a few ms of resolution), as a
/// steady_clock time. Switches: no.
std::chrono::steady_clock::time_point coarse_now() noexcept;

/// An entry of the hub's ready queue: a fiber to switch into, or a callback the hub calls on
/// its own stack. Only what the queue and the hub's run of it need: a task's first run (its
/// start entry, which every pending task holds) is one of these, so a task does not carry a
/// whole wait record for a queue slot it uses once.
///
/// Its one link belongs to the hub's ready queue and nothing else can use it (it is private
/// to ready_queue); queued() says whether it is in the queue, which every push checks.
/// What it is, a fiber's entry or a callback's, is fixed when it is made: the fiber and the
/// callback share one word, and is_callback() says which of the two it holds.
struct ready_entry {
    /// A fiber's entry; `fiber` is set before it is queued. Switches: no.
    ready_entry() noexcept : fiber(nullptr) {}
    /// A callback's entry: the hub calls `fn(*this)` on its own stack instead of switching
    /// (call_soon and done callbacks). Switches: no.
    explicit ready_entry(void (*fn)(ready_entry& e)) noexcept : run(fn), callback_(true) {}
    ready_entry(const ready_entry&) = delete;
    ready_entry& operator=(const ready_entry&) = delete;

    union {
        greenlet_impl* fiber;         ///< A fiber's entry: the fiber to resume (borrowed).
        void (*run)(ready_entry& e);  ///< A callback's entry: what the hub calls.
    };

    /// True while it is in the hub's ready queue.
    bool queued() const noexcept { return queued_; }
    /// Whether it is a callback's entry (run), not a fiber's (fiber).
    bool is_callback() const noexcept { return callback_; }

  private:
    friend class ready_queue;
    ready_entry* next_ = nullptr;  // Owned by the ready queue while queued_.
    bool queued_ = false;
    bool callback_ = false;  // fixed by the constructor
};

/// A parked fiber's wake-up record: a ready entry (what the hub's ready queue links when the
/// fiber is woken) and what the wait says about itself. It lives in the frame of the wait
/// that parks the fiber, so it exists exactly as long as the fiber is parked; whoever may
/// wake it must be unlinked (or have completed) before that wait returns.
///
/// Its one link is the ready entry's, and belongs to the hub's ready queue. A wait that must
/// also be found in another list (a lock's waiters, a task's done waiters) links a separate
/// record that holds this one (sync_waiter in detail/wait_list.hpp), so "queued in the ready
/// queue" and "linked in a wait list" are two links of two types and a cancellation can
/// never put one record in two lists.
struct waiter : ready_entry {
    explicit waiter(const char* what_) noexcept : what(what_) {}

    // First: they fill the ready entry's tail padding.
    /// Set by wake(); cleared only when the fiber parks. A waiter that is not parked is
    /// therefore "woken", and a stray wake() of it does nothing.
    bool woken = true;
    bool cancelled = false;  // ended by a cancellation request

    /// The kind of wait, a static string ("an event", "a timer (sleep)"): hub::stats()
    /// groups parked fibers by it, and it is what loop_exit names when nothing better is known.
    const char* what;
    /// Formats what it waits for in words, from `describe_arg` (the waited-on object), when
    /// someone asks (any_task::waiting_for()); null: `what` says it all. Set by the wait
    /// before it parks; called only while the fiber is parked in it, on the hub's thread,
    /// never on the park path. Must not switch.
    std::string (*describe)(const waiter& w) = nullptr;
    const void* describe_arg = nullptr;  // Borrowed: lives at least as long as the park.
    /// What it waits for in words: describe(*this), or `what` without a describer. Only
    /// while parked (the waited-on object may be gone once woken). Throws: std::bad_alloc.
    std::string description() const { return describe != nullptr ? describe(*this) : what; }
    /// When it parked, from the hub's cached coarse clock (set by hub::park).
    std::chrono::steady_clock::time_point since{};
    /// Called by task::cancel() while the fiber is parked here: must make the wait end soon
    /// (cancel the operation, or unlink and wake). Null: wake at once.
    void (*on_cancel)(waiter& w) noexcept = nullptr;
    void* context = nullptr;  // for on_cancel
};

/// The hub's FIFO of ready entries, linked through the entry's private link. Push checks
/// that the entry is not queued already: a record is in this queue at most once.
/// Thread-bound.
class ready_queue {
  public:
    bool empty() const noexcept { return head_ == nullptr; }
    std::size_t size() const noexcept { return size_; }
    void push_back(ready_entry& w) noexcept {
        if (w.queued_) twice(w);
        w.queued_ = true;
        w.next_ = nullptr;
        if (tail_ != nullptr) {
            tail_->next_ = &w;
        } else {
            head_ = &w;
        }
        tail_ = &w;
        ++size_;
    }
    void push_front(ready_entry& w) noexcept {
        if (w.queued_) twice(w);
        w.queued_ = true;
        w.next_ = head_;
        head_ = &w;
        if (tail_ == nullptr) tail_ = &w;
        ++size_;
    }
    /// The first entry, still queued; null when empty.
    ready_entry* front() const noexcept { return head_; }
    ready_entry* pop_front() noexcept {
        ready_entry* w = head_;
        if (w != nullptr) {
            head_ = w->next_;
            if (head_ == nullptr) tail_ = nullptr;
            w->next_ = nullptr;
            w->queued_ = false;
            --size_;
        }
        return w;
    }
    /// Unlinks `w` if it is queued here. O(n): only a wait that ends while queued (a fiber
    /// killed after it was woken) needs it; every other wait pays one test, inline.
    void remove(ready_entry& w) noexcept {
        if (w.queued_) [[unlikely]]
            remove_queued(w);
    }

  private:
    void remove_queued(ready_entry& w) noexcept;
    [[noreturn]] static void twice(const ready_entry& w) noexcept;
    ready_entry* head_ = nullptr;
    ready_entry* tail_ = nullptr;
    std::size_t size_ = 0;
};

/// The link of the hub's list of deferred calls (its own kind: a record in it can be in no
/// other list through this link).
struct deferred_tag {};

/// A call the hub makes on its own stack once the ready entries of a turn have run and before
/// it goes to the reactor: a socket's read after a short read starts there, behind the fibers
/// that are about to answer, without an Asio post (a locked queue and an allocation). The
/// record lives in its owner's frame; the owner unlinks it (hub::undefer) when the call must
/// not run any more, and must do so before the frame goes. `fn` must not switch or throw.
struct deferred_call : list_hook<deferred_tag> {
    void (*fn)(void* arg) noexcept = nullptr;
    void* arg = nullptr;  // Borrowed: the owner's state, alive while the call is linked
};

}  // namespace detail

/// A thread-safe handle on one hub that keeps it waiting: while any thread holds one, the hub
/// does not call a wait hopeless (no loop_exit), because the holder may still post the
/// wake-up; once every handle is dropped (or reset), the deadlock report comes back. Take it
/// on the hub's thread (hub::keep_alive()), hand it to the thread that will complete the
/// wait, and post() the completion through it:
///
///     greenfiber::event done;
///     std::thread worker([h = greenfiber::hub::current().keep_alive(), &done]() mutable {
///         do_blocking_work();
///         h.post([&done] { done.set(); });  // runs on the hub's thread
///     });                                   // h is dropped as the thread ends
///     done.wait();                          // waits, never loop_exit, while `worker` holds h
///
/// Copies are further holds on the same hub; a moved-from or default-constructed handle
/// holds nothing. A handle outliving its hub is harmless: post() then returns false.
/// greenfiber holds one itself for every executor job and for every fiber waiting on a
/// future (its promise may be on another thread).
/// Thread: thread-safe (one object used by one thread at a time, like std::shared_ptr; the
/// hub it refers to may be on any thread).
class hub_handle {
  public:
    /// A handle that holds no hub. Switches: no.
    hub_handle() noexcept = default;
    /// Another hold on the same hub. Switches: no.   Thread: thread-safe.
    hub_handle(const hub_handle& o) noexcept;
    /// Drops the hold this handle had and takes another on `o`'s hub.
    /// Switches: no.   Thread: thread-safe.
    hub_handle& operator=(const hub_handle& o) noexcept;
    /// Takes over `o`'s hold; `o` is left empty. Switches: no.
    hub_handle(hub_handle&& o) noexcept = default;
    /// Drops the hold this handle had and takes over `o`'s; `o` is left empty.
    /// Switches: no.   Thread: thread-safe.
    hub_handle& operator=(hub_handle&& o) noexcept;
    /// Lets go of the hold (see reset()). Switches: no.   Thread: thread-safe.
    ~hub_handle() { reset(); }

    /// Runs `fn()` on the hub's thread, on its stack, as soon as it can (hub::post), and
    /// returns true; returns false once the hub is gone (its thread exited) or when the
    /// handle is empty, and then `fn` is destroyed on the calling thread without running.
    /// An exception from `fn` goes to the hub's exception handler. Switches: no.
    /// Thread: thread-safe.   Throws: std::bad_alloc (nothing is posted).
    template <class Fn>
    bool post(Fn&& fn) {
        return post_erased(detail::unique_function<void()>(std::forward<Fn>(fn)));
    }

    /// Lets go of the hold: when it was the last one, a hub with nothing else to do raises
    /// loop_exit in its waiting fibers. The handle is empty afterwards.
    /// Switches: no.   Thread: thread-safe.
    void reset() noexcept;

    /// Whether the handle holds a hub (that may be gone by now). Switches: no.
    explicit operator bool() const noexcept { return anchor_ != nullptr; }

  private:
    friend class hub;
    explicit hub_handle(std::shared_ptr<detail::hub_anchor> a) noexcept;
    bool post_erased(detail::unique_function<void()> fn);
    std::shared_ptr<detail::hub_anchor> anchor_;  // Shared; counted as one hold while set.
};

/// A hub's counters at one moment (hub::stats()). Counts that change on the hot paths are
/// kept as plain increments; the break-down of parked fibers is computed when asked, by
/// walking the unfinished tasks.
struct hub_stats {
    /// Fibers resumed by the hub since it was created (each switch from the hub into a
    /// fiber: a task's first run, every wake-up; not users' own greenlet switches).
    std::uint64_t switches = 0;
    /// Fibers and callbacks in the ready queue now.
    std::size_t ready = 0;
    /// Fibers parked now (tasks, the thread's main greenlet and plain greenlets).
    std::size_t parked = 0;
    /// Parked tasks by the kind of their wait (detail::waiter::what, e.g. "an event", "a
    /// timer (sleep)"), most frequent first, ties by kind. Only tasks can be walked: a plain
    /// greenlet or the main greenlet parked counts in `parked` and not here.
    std::vector<std::pair<std::string, std::size_t>> parked_by_kind;
    /// Timers pending: parks with a deadline (sleep, timeouts, deadlines of I/O and sync
    /// waits) plus the event loop's call_later/call_at timers.
    std::size_t timers = 0;
    /// Reports the watchdog has made since the hub was created.
    std::uint64_t watchdog_reports = 0;
    /// The stack pool's counters: stacks in use, pooled, and the high-water mark of in use.
    /// The pool serves every thread, so these read the same from every hub
    /// (stack_statistics()).
    stack_stats stacks{};
};

/// The hub: one per thread, created at first use. It is a greenlet that drives an
/// io_context (epoll on Linux) and a FIFO ready queue. A fiber that waits parks itself and
/// hands the thread on: straight to the next ready fiber when there is one (one switch, not
/// two through the hub's greenlet), else to the hub, which runs callbacks, starts new tasks
/// and polls the reactor; whoever runs next takes the queue in FIFO order. Fibers spawned as
/// tasks have the hub as parent, so a finished fiber returns control to the hub.
///
/// The hub and the hand-offs together run at most `ready_budget()` ready entries per turn
/// before the reactor is polled, so I/O is never starved; when nothing is ready the hub
/// blocks in the reactor (no polling on a timeout: an idle hub uses no CPU).
///
/// Thread: thread-bound, except post(), which is thread-safe.
class hub {
  public:
    /// This thread's hub, created at first use. Switches: no.
    static hub& current() {
        if (hub* h = detail::current_hub; h != nullptr) [[likely]]
            return *h;
        return create_current();
    }

    hub(const hub&) = delete;
    hub& operator=(const hub&) = delete;

    /// The reactor. Asio objects used from fibers of this hub must be created on it.
    boost::asio::io_context& context() noexcept { return io_; }

    /// Runs `fn()` on the hub's thread, on the hub's stack, as soon as it can. A thread that
    /// will post later holds a hub_handle meanwhile (keep_alive()), or the hub may find
    /// nothing left to do first and raise loop_exit in its waiting fibers; the handle's own
    /// post() is also safe once the hub is gone.
    /// Switches: no.   Thread: thread-safe (the one cross-thread entry point).
    template <class Fn>
    void post(Fn&& fn) {
        boost::asio::post(io_, std::forward<Fn>(fn));
    }

    /// A handle that keeps this hub waiting while it is held and posts to it from any
    /// thread (see hub_handle). Switches: no.
    /// Thread: thread-bound (take it on the hub's thread, then hand it to any thread).
    /// Throws: greenfiber::error from another thread; std::bad_alloc.
    hub_handle keep_alive();

    /// hub_handles held right now, on any thread. Switches: no.   Thread: thread-safe.
    std::size_t handles() const noexcept { return holds_.load(std::memory_order_acquire); }

    /// Parks the calling fiber until `w` is woken by wake(). `arm(arg)` runs once the fiber
    /// is registered as parked, on its own stack, just before it switches away: whatever it
    /// starts completes only through the hub (a reactor handler, a post(), a wake() into
    /// the ready queue), so never before the fiber is suspended; it must not switch or
    /// wait. A cancelled task throws cancelled_error instead of
    /// parking, or when its wait ended because of the cancellation (w.cancelled); except
    /// while it unwinds an exception or is inside a no_kill_scope (a destructor that waits),
    /// where the wait is shielded instead, since the raise would call std::terminate.
    /// Switches: yes.   Thread: thread-bound.
    /// Throws: cancelled_error; loop_exit if nothing can ever wake it; greenfiber::error if
    ///         called from the hub itself (a callback must not wait).
    void park(detail::waiter& w, void (*arm)(void*) noexcept = nullptr, void* arg = nullptr);

    /// park() with a deadline: returns true when woken, false when `deadline` passed first
    /// (then nothing woke it). The timer is cleaned up before it returns.
    /// Switches: yes.   Throws: as park().
    bool park_until(detail::waiter& w, std::chrono::steady_clock::time_point deadline,
                    void (*arm)(void*) noexcept = nullptr, void* arg = nullptr);

    /// Like park(), but a cancellation request neither prevents nor ends the wait (it stays
    /// pending for the next park()). For waiting out an operation's completion handler after
    /// the operation was cancelled. Switches: yes.   Throws: loop_exit.
    void park_shielded(detail::waiter& w);
    /// park_shielded() with a deadline: returns false when it passed first.
    bool park_shielded_until(detail::waiter& w, std::chrono::steady_clock::time_point deadline);

    /// Makes a parked fiber ready. Idempotent: a waiter is queued at most once per park.
    /// Switches: no.   Thread: thread-bound (from another thread, post() a call to it).
    void wake(detail::waiter& w) noexcept {
        if (w.woken) return;
        w.woken = true;
        ready_.push_back(w);
    }

    /// Queues an entry that is not parked: a task's first run, a callback node. It must not
    /// be queued already (that aborts). Switches: no.   Thread: thread-bound.
    void schedule(detail::ready_entry& e) noexcept { ready_.push_back(e); }

    /// Calls `fn()` on the hub's stack after the fibers and callbacks already ready
    /// (asyncio's call_soon). An exception from `fn` goes to report_failure; the hub goes on.
    /// Switches: no.   Thread: thread-bound.
    void call_soon(detail::unique_function<void()> fn);

    /// Replaces this hub's handler of failures nobody can catch (an exception escaping a
    /// callback, a task's exception never retrieved, a watchdog report) and returns the
    /// previous one. Empty: the process-wide handler (set_report_handler in error.hpp).
    /// Switches: no.   Thread: thread-bound.
    report_handler set_exception_handler(report_handler handler);

    /// Sends `r` to this hub's exception handler. Switches: only if the handler does.
    void report(const failure_report& r) noexcept;

    /// The watchdog: a fiber or callback that keeps the hub from its loop for `threshold` or
    /// longer is reported (with its name and where it was spawned) once it yields. The usual
    /// cause is a blocking call in a fiber: move it to to_thread(). Default 100 ms; zero turns
    /// it off. Measured with the coarse monotonic clock (a few ms of resolution).
    /// A hub starts with the threshold in the environment variable GREENFIBER_WATCHDOG_MS
    /// when it holds a whole number of milliseconds (0: off), read once as the hub is
    /// created; the test harness sets it so that a loaded machine is not reported as a
    /// stall. Code that relies on a threshold sets it here explicitly.
    /// Switches: no.   Thread: thread-bound.
    void set_watchdog(std::chrono::milliseconds threshold) noexcept { watchdog_ = threshold; }
    /// The current stall threshold (zero: the watchdog is off). Switches: no.
    std::chrono::milliseconds watchdog() const noexcept { return watchdog_; }

    /// The thread this hub belongs to.
    std::thread::id thread_id() const noexcept { return thread_; }

    /// Parks the caller and switches straight into `target`, a not-started task fiber; the
    /// caller is queued first in line, so it continues as soon as `target` suspends
    /// (spawn_options::eager). Not a cancellation point. Switches: yes.
    void run_first(greenlet& target);

    /// How many ready fibers run between two polls of the reactor (default 64).
    std::size_t ready_budget() const noexcept { return budget_; }
    /// Sets that number (0 counts as 1). Switches: no.   Thread: thread-bound.
    void set_ready_budget(std::size_t n) noexcept { budget_ = n == 0 ? 1 : n; }

    /// The hub's greenlet (its parent is the thread's main greenlet).
    const greenlet& loop_greenlet() const noexcept { return loop_; }

    /// True when the calling code runs on the hub's own stack (a callback).
    bool in_hub() const noexcept { return loop_.is_current(); }

    /// Fibers parked in park() right now (for leak checks and loop_exit messages).
    std::size_t parked() const noexcept { return parked_; }
    /// Parks with a deadline in progress, and entries in the ready queue (for leak checks).
    std::size_t timed_parks() const noexcept { return timed_parks_; }
    /// Deadlines linked in the hub's timer heap now: one per fiber parked with a deadline
    /// (for leak checks: a node left behind by a wait that ended). Switches: no.
    std::size_t armed_timers() const noexcept { return timers_.size(); }
    /// Fibers and callbacks in the ready queue now (for leak checks). Switches: no.
    std::size_t ready_count() const noexcept { return ready_.size(); }
    /// Deferred calls queued behind the ready fibers now (a socket's read start; for leak
    /// checks). Switches: no.
    std::size_t deferred_count() const noexcept { return deferred_.size(); }

    /// The hub's counters now (see hub_stats). Walks the unfinished tasks for the parked
    /// break-down: call it when asked, not per switch.
    /// Switches: no.   Thread: thread-bound.   Throws: std::bad_alloc.
    hub_stats stats() const;

    /// The hub's cached coarse clock: read once per turn of its loop and once per resume
    /// while the watchdog is on. What parks record as their start (waiter::since).
    /// Switches: no.
    std::chrono::steady_clock::time_point cached_now() const noexcept { return now_; }

  private:
    friend class detail::task_base;
    friend class detail::hub_anchor;
    friend std::shared_ptr<executor>& detail::default_executor_slot(hub& h) noexcept;
    friend void detail::yield_shielded();
    friend void yield_now();
    friend detail::hub_trace* detail::trace_of(const hub& h) noexcept;
    friend class detail::hub_trace;
    friend struct detail::io_wait;
    hub();
    ~hub();
    struct holder;
    static hub& create_current();
    /// park() and its variants. `requeue`: the fiber only gives up its turn (yield_now()):
    /// instead of an arm callback, its waiter goes straight to the back of the ready queue.
    void park_impl(detail::waiter& w, void (*arm)(void*) noexcept, void* arg, bool cancellable,
                   greenlet& to, bool requeue = false);
    bool park_until_impl(detail::waiter& w, std::chrono::steady_clock::time_point deadline,
                         void (*arm)(void*) noexcept, void* arg, bool cancellable);
    /// The next ready fiber, taken from the queue and counted in the turn, when the thread
    /// may go to it straight from `self` (suspend()'s conditions); else null, the queue
    /// untouched. May give a task's fiber its stack (detail::prepare_start). Switches: no.
    detail::greenlet_impl* take_hand_off(detail::greenlet_impl* self) noexcept;
    /// Hands the thread on from `self`, which is parked with its arm already run: straight
    /// to the next ready fiber when it is a suspended fiber and the turn's budget allows
    /// (one switch instead of two through the hub), else to the hub.
    void suspend(detail::greenlet_impl* self);
    /// Hands the thread on from `self`, the fiber of a task that has finished (its slice
    /// ended, the hub's reference dropped) and has nothing left to unwind: straight into the
    /// next ready fiber under suspend()'s conditions, when `self` would die into the hub (its
    /// parent is the hub's greenlet); `self` is dead then, the receiver frees its stack,
    /// and this never returns. Otherwise it returns, and `self` dies into the hub.
    /// Switches: yes (for good), or no.   Thread: thread-bound.
    void finish_fiber(detail::greenlet_impl* self) noexcept;
    /// The watchdog's slices: a slice is one fiber's (or callback's) run between two
    /// switches the hub sees. begin_slice() as the thread goes to `next` (null: a callback);
    /// end_slice() by the fiber whose slice ends while it is alive and current, so the
    /// report can name it; end_slice_in_hub() when control came back to the hub without
    /// that (a plain greenlet that died, a callback).
    void begin_slice(detail::greenlet_impl* next) noexcept;
    void end_slice(detail::greenlet_impl* self) noexcept;
    /// end_slice(self) and begin_slice(next) for a hand-off, with one clock read.
    void hand_slice(detail::greenlet_impl* self, detail::greenlet_impl* next) noexcept;
    void end_slice_in_hub() noexcept;
    /// Starts `next`'s slice at `now` / measures the running one up to `now` and reports
    /// it when it reached the threshold (`who` names it, as in report_slice).
    void open_slice(detail::greenlet_impl* next,
                    std::chrono::steady_clock::time_point now) noexcept;
    void close_slice(std::chrono::steady_clock::time_point now,
                     detail::greenlet_impl* who) noexcept;
    void report_slice(std::chrono::milliseconds ran, detail::greenlet_impl* who) noexcept;
    void loop();
    void run_ready();
    /// Queues `c` behind the ready fibers: the hub calls it after this turn's ready entries,
    /// before the reactor. `c` must not be linked. Switches: no.
    void defer(detail::deferred_call& c) noexcept { deferred_.push_back(c); }
    /// Unlinks `c` if it is still queued; returns whether it was (it will not run).
    bool undefer(detail::deferred_call& c) noexcept {
        if (!c.linked()) return false;
        deferred_.remove(c);
        return true;
    }
    /// Runs the deferred calls queued now, in order (those queued meanwhile too).
    void run_deferred() noexcept;
    /// Wakes the parks whose deadline has passed (precise clock; only with timers pending).
    void fire_timers() noexcept;
    /// Links / unlinks a park's deadline; the heap counts as work in io_ while it is not
    /// empty, so run_one() blocks instead of reporting a deadlock. add_timer() needs the
    /// room reserved first (park_until_impl does), so it cannot throw.
    void add_timer(detail::timer_node& n, std::chrono::steady_clock::time_point when) noexcept;
    void remove_timer(detail::timer_node& n) noexcept;
    void no_work();
    std::string parked_tasks_report();
    /// A hub_handle was taken / let go: counted here and as work in io_ (so that run_one()
    /// blocks while one is held). Thread-safe; called by hub_anchor under its lock.
    void hold() noexcept;
    void unhold() noexcept;

    boost::asio::io_context io_{1};
    greenlet loop_;
    detail::ready_queue ready_;
    /// Calls run behind the ready fibers (defer()); records borrowed from their owners' frames.
    detail::intrusive_list<detail::deferred_call, detail::deferred_tag> deferred_;
    std::size_t budget_ = 64;
    std::size_t parked_ = 0;
    std::size_t timed_parks_ = 0;
    /// The deadlines of the parks in timed_parks_ whose fiber is parked. Its nodes are
    /// borrowed from the waiting frames, which unlink them before they go away.
    detail::timer_heap timers_;
    /// hub_handles held on any thread. Written under the anchor's lock, read by the loop.
    std::atomic<std::size_t> holds_{0};
    /// The default executor of to_thread() and run_in_executor(fn) (asyncio's is per loop);
    /// created at first use, shut down by run() and by ~hub. Owned (shared with the callers
    /// using it). Thread-bound.
    std::shared_ptr<executor> default_executor_;
    detail::waiter* root_waiter_ = nullptr;  // the main greenlet's wait, if it waits
    /// Set while ~hub kills the tasks left: a killed fiber that parks after it (it caught
    /// greenlet_exit and waits again) goes back to its killer instead of running the hub.
    std::chrono::steady_clock::time_point reap_until_{};
    std::chrono::milliseconds watchdog_{100};
    std::chrono::steady_clock::time_point now_{};  // the cached coarse clock (cached_now())
    std::uint64_t switches_ = 0;                   // see hub_stats::switches
    std::size_t turn_ran_ = 0;  // entries run this turn, by the hub or by hand-offs (≤ budget_)
    /// The task whose first run run_ready() switched into last, until it finishes (its
    /// finish() clears it): an exception that comes back to the hub while it is still
    /// pending is its failed start. Borrowed; never read once the task has finished.
    detail::task_base* starting_ = nullptr;
    /// The running slice (begin_slice): when it began ({} while none is watched) and whose
    /// it is. `slice_fiber_` is borrowed and may be gone once control is back in the hub;
    /// a plain greenlet's name is copied for that case.
    std::chrono::steady_clock::time_point slice_start_{};
    detail::greenlet_impl* slice_fiber_ = nullptr;
    std::string slice_name_;
    std::uint64_t watchdog_reports_ = 0;
    report_handler exception_handler_;
    std::thread::id thread_ = std::this_thread::get_id();
    /// The timeline being recorded, null while none is (the only cost of tracing when off).
    /// Borrowed from trace.cpp's per-thread state, which clears it before it goes away.
    detail::hub_trace* trace_ = nullptr;
};

inline detail::hub_trace* detail::trace_of(const hub& h) noexcept {
    return h.trace_;
}

/// Suspends the calling fiber for `d` (at least); other fibers run meanwhile.
/// Switches: yes.   Thread: thread-bound.   Throws: cancelled_error.
void sleep(std::chrono::steady_clock::duration d);

/// Suspends the calling fiber until `deadline`. Switches: yes.   Throws: cancelled_error.
void sleep_until(std::chrono::steady_clock::time_point deadline);
/// sleep() with any duration type, saturating: sleep(hours::max()) sleeps practically forever.
template <class Rep, class Period>
void sleep(std::chrono::duration<Rep, Period> d) {
    sleep_until(detail::deadline_after(d));
}

/// Lets every other ready fiber run once, then continues (asyncio's sleep(0)).
/// Switches: yes.   Throws: cancelled_error.
void yield_now();

}  // namespace greenfiber
