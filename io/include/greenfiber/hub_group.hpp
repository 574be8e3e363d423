#pragma once
/// \file
/// Several hubs, one per thread, for a program that wants every core: hub_group starts N
/// threads each running a hub, spawn_on() runs a task on one of them and brings its result
/// back to the calling fiber (remote_task), and stop() ends them all with a grace period.
///
///     greenfiber::hub_group group(2);
///     greenfiber::run([&] {
///         auto r = group.spawn_on(1, [] { return 6 * 7; });  // runs on hub 1's thread
///         int v = r.get();  // parks this fiber only; this hub goes on meanwhile
///     });
///     group.stop();  // joins both threads
///
/// Built on the cross-thread pieces that exist: the task runs on the remote hub through a
/// hub_handle's post(), and its outcome comes back through a promise of the caller's hub
/// (future.hpp), so the caller waits as for any future: only its fiber parks.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <chrono>
#include <cstddef>
#include <exception>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "greenfiber/detail/hub_anchor.hpp"
#include "greenfiber/detail/unique_function.hpp"
#include "greenfiber/error.hpp"
#include "greenfiber/future.hpp"
#include "greenfiber/hub.hpp"
#include "greenfiber/task.hpp"

namespace greenfiber {

/// spawn_on() was called on a hub_group that is stopping or stopped: nothing was spawned.
class hub_group_stopped : public error {
  public:
    using error::error;
};

/// Options of a hub_group.
struct hub_group_options {
    /// How long stop() lets the tasks running on each hub finish on their own before it
    /// cancels them.
    std::chrono::steady_clock::duration grace = std::chrono::seconds(5);
    /// How long each hub then waits for its cancelled tasks to unwind; a task still running
    /// after that (one that swallows its cancellation) is reported by name and killed as
    /// its hub's thread exits.
    std::chrono::steady_clock::duration unwind = std::chrono::seconds(5);
};

class hub_group;

namespace detail {

struct remote_control;

/// One hub of a group: its thread and what that thread's hub keeps of the tasks spawned on
/// it. Owned by the group; outlives its thread (the group joins it first).
struct hub_slot {
    /// A task spawned on this hub by spawn_on(), with the shared control of its remote_task.
    struct live_entry {
        any_task task;
        std::shared_ptr<remote_control> control;
    };

    std::size_t index = 0;
    std::thread thread;
    std::thread::id id;  // the thread's id; written before the constructor returns
    /// The way to the hub from any thread. Guarded by the group's mutex; empty once the
    /// group stops.
    hub_handle handle;

    // The rest is thread-bound: touched only on the slot's own thread.
    std::list<live_entry> live;                   // tasks spawned here and not finished
    bool stopping = false;                        // stop() was received: spawns are refused
    std::chrono::steady_clock::duration grace{};  // stop()'s grace, set with `stopping`
    event* stop_requested = nullptr;              // Borrowed: the thread's own, while it runs
    event* drained = nullptr;                     // Borrowed: set when `live` becomes empty

    /// Spawns `body` as a task here, unless the hub stops or the remote task was cancelled
    /// first (then `body` is destroyed unrun, which reports that to the caller).
    /// Switches: no.   Thread: the slot's.
    void launch(const std::shared_ptr<remote_control>& c, spawn_options opts,
                detail::unique_function<void()> body) noexcept;
    /// A task finished (its done callback): forgets it. Switches: no.   Thread: the slot's.
    void finished(remote_control& c) noexcept;
    /// cancel() of a remote_task, delivered here. Switches: no.   Thread: the slot's.
    void cancel(remote_control& c) noexcept;
};

/// What a remote_task and the task on the remote hub share. The fields are thread-bound to
/// the remote hub's thread (only functions posted there touch them); the object itself is
/// shared (std::shared_ptr) and may be freed on either thread.
struct remote_control {
    std::list<hub_slot::live_entry>::iterator entry;  // valid while `linked`
    bool linked = false;                              // the task is in the slot's list
    bool cancel_requested = false;                    // cancel() arrived
};

/// Sends a remote task's outcome to the caller's promise exactly once. Destroyed without
/// having sent one (the task never ran: cancelled first, or its hub stopped), it sends
/// cancelled_error, so the caller never waits for a result that cannot come.
/// Thread: the remote hub's (the promise's cross-thread side, see promise).
template <class R>
class result_sender {
  public:
    explicit result_sender(promise<R> p, std::size_t hub) noexcept : p_(std::move(p)), hub_(hub) {}
    result_sender(result_sender&& o) noexcept
        : p_(std::move(o.p_)), hub_(o.hub_), sent_(std::exchange(o.sent_, true)) {}
    result_sender& operator=(result_sender&&) = delete;
    ~result_sender() {
        if (sent_) return;
        try {
            p_.set_exception(cancelled_error("greenfiber: hub_group: the task on hub " +
                                             std::to_string(hub_) +
                                             " was cancelled before it ran"));
        } catch (...) {
            // Out of memory: ~promise below breaks the result instead (broken_promise).
        }
    }
    /// Runs `fn` and sends what it returns or throws. cancelled_error is sent and rethrown,
    /// so the remote task ends cancelled, as cancellation is never swallowed.
    template <class Fn>
    void run(Fn& fn) {
        try {
            if constexpr (std::is_void_v<R>) {
                fn();
                send([&] { p_.set_value(); });
            } else {
                send([&] { p_.set_value(fn()); });
            }
        } catch (const cancelled_error&) {
            send_error(std::current_exception());
            throw;
        } catch (...) {
            send_error(std::current_exception());
        }
    }

  private:
    template <class Set>
    void send(Set&& set) {
        sent_ = true;  // before: a throw from fn() in `set` is then sent as the error
        try {
            set();
        } catch (...) {
            sent_ = false;
            throw;
        }
    }
    void send_error(std::exception_ptr e) noexcept {
        if (sent_) return;
        sent_ = true;
        try {
            p_.set_exception(std::move(e));
        } catch (...) {
            sent_ = false;  // out of memory: the destructor tries once more
        }
    }
    promise<R> p_;
    std::size_t hub_;
    bool sent_ = false;
};

}  // namespace detail

/// The caller's end of a task spawned on another hub by hub_group::spawn_on(): get() parks
/// the calling fiber until the remote task finishes and returns its result or rethrows its
/// exception; cancel() cancels the remote task. Dropping it detaches the remote task (it
/// runs on; its result is dropped). Move-only.
/// Thread: thread-bound to the thread that called spawn_on() (its result arrives on that
/// thread's hub), except cancel() and the destructor, which are thread-safe: destroyed on
/// another thread, it sends what it holds of the result back to its own hub to be freed there.
template <class R>
class remote_task {
  public:
    /// What the remote function returns.
    using result_type = R;

    /// An empty handle (valid() is false). Switches: no.
    remote_task() noexcept = default;
    ///@{
    /// Takes over `o`'s handle; `o` is left empty. Switches: no.
    remote_task(remote_task&& o) noexcept = default;
    remote_task& operator=(remote_task&& o) noexcept {
        remote_task(std::move(o)).swap(*this);
        return *this;
    }
    ///@}
    remote_task(const remote_task&) = delete;
    remote_task& operator=(const remote_task&) = delete;

    /// Detaches the remote task. On another thread than its own, the result (and the value
    /// in it) is posted back to its own hub and freed there. Switches: no.
    /// Thread: thread-safe (see the class comment).
    ~remote_task() {
        if (home_ == nullptr || home_->on_its_thread()) return;
        try {
            if (home_->post([f = std::move(f_)] {})) return;
        } catch (...) {
            // Out of memory: freed here, the best that is left.
        }
    }

    /// Exchanges two handles. Switches: no.
    void swap(remote_task& o) noexcept {
        std::swap(f_, o.f_);
        home_.swap(o.home_);
        std::swap(hub_, o.hub_);
        std::swap(index_, o.index_);
        control_.swap(o.control_);
    }

    /// Whether it refers to a remote task. Switches: no.
    bool valid() const noexcept { return f_.valid(); }
    /// Whether the outcome has arrived on this thread's hub. Switches: no.
    bool ready() const noexcept { return f_.ready(); }
    /// The index of the hub the task runs on. Switches: no.
    std::size_t hub_index() const noexcept { return index_; }

    /// Waits until the remote task finished and its outcome arrived, then returns (a
    /// reference to) its value, which lives as long as this handle, or rethrows its exception
    /// (cancelled_error if it was cancelled, or cancelled before it ran because its hub
    /// stopped). Only the calling fiber waits; its hub goes on. If the *caller* is
    /// cancelled meanwhile, the remote task is cancelled too (the request is posted to its
    /// hub) and the caller's cancelled_error is raised at once, without waiting for the
    /// remote task to unwind: another thread's task may take any time to end, and a
    /// cancelled caller must not hang on it.
    /// Switches: only when it must wait.   Thread: thread-bound.
    /// Throws: the remote task's exception; cancelled_error; greenfiber::error if !valid()
    /// or on another thread than spawn_on()'s.
    typename detail::future_ref<R>::type get() {
        check("get");
        try {
            return f_.get();
        } catch (const cancelled_error&) {
            if (!f_.ready()) (void)cancel();  // the caller was cancelled, not the task
            throw;
        }
    }

    /// Waits like get() until `deadline`; returns whether the outcome arrived. The remote
    /// task goes on after a timeout. Switches: only when it must wait.
    /// Throws: cancelled_error (the remote task is then cancelled, as in get());
    /// greenfiber::error as get().
    bool wait_until(std::chrono::steady_clock::time_point deadline) {
        check("wait_until");
        try {
            return f_.wait_until(deadline);
        } catch (const cancelled_error&) {
            if (!f_.ready()) (void)cancel();
            throw;
        }
    }
    /// wait_until(now + `timeout`), saturating as future::wait_for().
    template <class Rep, class Period>
    bool wait_for(std::chrono::duration<Rep, Period> timeout) {
        return wait_until(detail::deadline_after(timeout));
    }

    /// Requests cancellation of the remote task: delivered on its hub, where it acts as
    /// task::cancel() (a task not started yet never runs, and get() then throws
    /// cancelled_error). Returns false when the request could not be sent (the hub has
    /// stopped, or the handle is empty); a task that already finished keeps its outcome.
    /// Switches: no.   Thread: thread-safe.
    bool cancel() {
        if (!hub_ || !control_) return false;
        return hub_.post([c = control_, s = slot_] { s->cancel(*c); });
    }

  private:
    friend class hub_group;
    void check(const char* what) const {
        if (!f_.valid())
            throw error(std::string("greenfiber: remote_task.") + what + "(): empty handle");
        if (!home_->on_its_thread())
            throw error(std::string("greenfiber: remote_task.") + what +
                        "(): called on another thread than the one that called spawn_on(); "
                        "its result arrives on that thread's hub (move the handle back there, "
                        "or spawn from this thread)");
    }

    future<R> f_;
    std::shared_ptr<detail::hub_anchor> home_;  // Shared: the caller's hub.
    hub_handle hub_;                            // The remote hub (for cancel()).
    std::size_t index_ = 0;
    detail::hub_slot* slot_ = nullptr;  // Borrowed: dereferenced only on its own thread.
    std::shared_ptr<detail::remote_control> control_;
};

/// N threads, each running a hub until stop(): a program's way to use several cores (one
/// hub per core). Tasks go to a hub with spawn_on(); servers on every hub are in
/// multi_server (server.hpp's serve_on()).
/// Each hub's thread waits for work from its main greenlet, so a hub of the group never
/// raises loop_exit while the group runs. Only tasks spawned on a hub run there; what they
/// spawn runs there too.
/// Thread: the constructor, stop() and the destructor from any thread that is not one of
/// the group's; spawn_on(), size() and stopped() are thread-safe.
class hub_group {
  public:
    /// Starts `n` threads, each with its hub, and returns once every hub is ready.
    /// Switches: no; blocks the calling thread while the threads start.
    /// Throws: greenfiber::error if `n` is 0; std::system_error if a thread cannot start
    /// (those started are stopped first).
    explicit hub_group(std::size_t n, hub_group_options opts = {});
    /// stop() with the options' grace; a failure is reported, not thrown.
    /// Switches: no; blocks as stop().
    ~hub_group();
    hub_group(const hub_group&) = delete;
    hub_group& operator=(const hub_group&) = delete;

    /// How many hubs. Switches: no.   Thread: thread-safe.
    std::size_t size() const noexcept { return slots_.size(); }
    /// Whether stop() was called. Switches: no.   Thread: thread-safe.
    bool stopped() const noexcept;

    /// Runs `fn()` (decay-copied) as a task on hub `i`, named after `opts`, and returns a
    /// handle whose get() brings its result back to the calling fiber. The function object
    /// is copied on the calling thread and destroyed on hub `i`'s; its result is moved to
    /// the calling thread's hub. The task starts when hub `i` gets to it.
    /// Switches: no.   Thread: thread-safe (the handle belongs to the calling thread).
    /// Throws: hub_group_stopped after stop(); greenfiber::error if `i` >= size();
    /// std::bad_alloc.
    template <class Fn>
    requires std::is_invocable_v < std::decay_t<Fn>
    & > auto spawn_on(std::size_t i, spawn_options opts, Fn&& fn)
            -> remote_task<std::invoke_result_t<std::decay_t<Fn>&>> {
        using R = std::invoke_result_t<std::decay_t<Fn>&>;
        static_assert(std::is_void_v<R> || std::is_move_constructible_v<R>,
                      "spawn_on(): the result must be movable to the caller's thread");
        detail::hub_slot& s = slot(i);
        promise<R> p;
        remote_task<R> r;
        r.f_ = p.get_future();
        r.home_ = detail::hub_anchor::current();
        r.index_ = i;
        r.slot_ = &s;
        r.control_ = std::make_shared<detail::remote_control>();
        detail::unique_function<void()> body(
            [send = detail::result_sender<R>(std::move(p), i),
             f = std::decay_t<Fn>(std::forward<Fn>(fn))]() mutable { send.run(f); });
        r.hub_ = post_launch(s, r.control_, std::move(opts), std::move(body));
        return r;
    }
    /// spawn_on() with default options (the task is named as spawn() names it).
    template <class Fn>
    requires std::is_invocable_v < std::decay_t<Fn>
    & > auto spawn_on(std::size_t i, Fn&& fn) {
        return spawn_on(i, spawn_options{}, std::forward<Fn>(fn));
    }

    /// Stops every hub: spawn_on() is refused from now on; each hub lets the tasks spawned
    /// on it finish for up to `grace`, cancels those still running and waits up to the
    /// options' `unwind` for them; then its thread exits and is joined. The remote_tasks of
    /// tasks that ended cancelled, or never ran, get cancelled_error. Calling it again does
    /// nothing. Switches: no; blocks the calling thread until the threads are joined (at
    /// most about grace + unwind).   Thread: any thread but the group's own.
    /// Throws: greenfiber::error from one of the group's threads.
    void stop(std::chrono::steady_clock::duration grace);
    /// stop() with the options' grace.
    void stop() { stop(opts_.grace); }

    /// A hub_handle on hub `i` (to post() to it), empty once stopped. Switches: no.
    /// Thread: thread-safe.   Throws: greenfiber::error if `i` >= size().
    hub_handle handle(std::size_t i) const;

    /// The index of the group's hub the calling thread runs, or size() if none.
    /// Switches: no.   Thread: thread-safe.
    std::size_t current_index() const noexcept;

  private:
    detail::hub_slot& slot(std::size_t i) const;
    hub_handle post_launch(detail::hub_slot& s, std::shared_ptr<detail::remote_control> c,
                           spawn_options opts, detail::unique_function<void()> body);
    void thread_main(detail::hub_slot& s, std::promise<hub_handle>& started) noexcept;

    hub_group_options opts_;
    std::vector<std::unique_ptr<detail::hub_slot>> slots_;  // Owned; fixed after construction.
    mutable std::mutex mu_;                                 // guards stopped_ and the handles
    bool stopped_ = false;                                  // Guarded by mu_.
    std::chrono::steady_clock::duration stop_grace_{};      // Guarded by mu_; set by stop().
};

}  // namespace greenfiber
