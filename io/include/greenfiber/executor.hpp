#pragma once
/// \file
/// Executors: run blocking work on other threads while only the calling fiber waits
/// (asyncio's run_in_executor / to_thread / set_default_executor).

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "greenfiber/deadline.hpp"
#include "greenfiber/detail/hub_anchor.hpp"
#include "greenfiber/error.hpp"
#include "greenfiber/hub.hpp"

namespace greenfiber {

/// A job was submitted to an executor that is shut down, or was still queued (never
/// started) when its executor shut down; the job did not run.
class executor_shutdown_error : public error {
  public:
    using error::error;
};

/// executor::shutdown() waited as long as it was allowed to and some jobs were still
/// running. what() names them; running_jobs() lists their names.
class shutdown_timeout_error : public error {
  public:
    /// An error with `message`, naming the `jobs` still running.
    shutdown_timeout_error(const std::string& message, std::vector<std::string> jobs)
        : error(message), jobs_(std::move(jobs)) {}
    /// The names of the jobs still running when shutdown() gave up.
    const std::vector<std::string>& running_jobs() const noexcept { return jobs_; }

  private:
    std::vector<std::string> jobs_;
};

/// Options of run_in_executor() and to_thread().
struct job_options {
    std::string name;  ///< empty: the (demangled) type name of the function
};

/// One unit of work handed to an executor: a function and its arguments, and the way back
/// to the fiber waiting for it. An executor calls exactly one of run() and discard() for
/// every job its submit() accepted, from any thread, exactly once.
/// Thread: run(), discard() and name() are thread-safe.
class executor_job {
  public:
    executor_job(const executor_job&) = delete;
    executor_job& operator=(const executor_job&) = delete;
    virtual ~executor_job() = default;

    /// Runs the job on the calling thread (unless its waiter was cancelled before it
    /// started: then it is skipped) and sends the outcome back to the waiting fiber's hub.
    /// Switches: no.   Thread: any thread, once.
    virtual void run() noexcept = 0;

    /// Drops the job without running it: the waiting fiber gets executor_shutdown_error.
    /// Switches: no.   Thread: any thread, once, instead of run().
    virtual void discard() noexcept = 0;

    /// The job's name: the name given in job_options, else its function's type name.
    /// Throws: std::bad_alloc.
    std::string name() const;

  protected:
    /// `fn_type` is borrowed: a std::type_info lives as long as the program.
    executor_job(std::string name, const std::type_info& fn_type) noexcept
        : name_(std::move(name)), fn_type_(&fn_type) {}

  private:
    std::string name_;
    const std::type_info* fn_type_;
};

/// Something that runs jobs on other threads. Implement it to plug in another thread pool.
/// Thread: thread-safe.
class executor {
  public:
    executor() = default;
    executor(const executor&) = delete;
    executor& operator=(const executor&) = delete;
    virtual ~executor() = default;

    /// Accepts `job`: the executor will call job->run() or job->discard() exactly once.
    /// Switches: no.   Thread: thread-safe.
    /// Throws: executor_shutdown_error after shutdown(); greenfiber::error if `job` is null.
    virtual void submit(std::shared_ptr<executor_job> job) = 0;

    /// Stops accepting jobs, discards the queued ones (their fibers get
    /// executor_shutdown_error) and waits up to `wait_for` for the running ones to finish.
    /// May be called again to wait more. Switches: no; blocks the calling thread (and so
    /// its hub) for at most `wait_for`.   Thread: thread-safe.
    /// Throws: shutdown_timeout_error naming every job still running at the end.
    virtual void shutdown(std::chrono::steady_clock::duration wait_for) = 0;
    /// shutdown() with any duration type; one too long for the clock (hours::max()) waits
    /// practically forever instead of overflowing.
    template <class Rep, class Period>
    void shutdown(std::chrono::duration<Rep, Period> wait_for) {
        shutdown(detail::to_steady_duration(wait_for));
    }
};

/// A bounded thread pool: at most `max_threads()` jobs run at once, the rest wait in FIFO
/// order. Threads are started on demand (up to the bound) and kept until shutdown.
/// The destructor shuts the pool down, waiting up to 5 s for running jobs; a job still
/// running then is reported (report_failure, naming it) and its thread detached: it keeps
/// the pool's shared state alive and ends with its job.
/// Thread: thread-safe.
class thread_pool_executor final : public executor {
  public:
    /// A pool of at most `threads` threads. Switches: no.
    /// Throws: greenfiber::error if `threads` is 0.
    explicit thread_pool_executor(std::size_t threads);
    ~thread_pool_executor() override;

    /// See executor::submit(). Switches: no.   Thread: thread-safe.
    /// Throws: executor_shutdown_error after shutdown(); std::system_error if no thread
    ///         could be started for it.
    void submit(std::shared_ptr<executor_job> job) override;

    /// See executor::shutdown(). A job that calls shutdown() on its own pool is not waited
    /// for by that call. Switches: no.   Thread: thread-safe.
    /// Throws: shutdown_timeout_error.
    void shutdown(std::chrono::steady_clock::duration wait_for) override;
    using executor::shutdown;

    /// The bound given to the constructor. Switches: no.
    std::size_t max_threads() const noexcept;
    /// Threads started so far and not yet joined. Switches: no.   Thread: thread-safe.
    std::size_t threads() const;
    /// Jobs waiting for a thread. Switches: no.   Thread: thread-safe.
    std::size_t queued() const;
    /// Jobs running now. Switches: no.   Thread: thread-safe.
    std::size_t running() const;

  private:
    struct state;
    std::vector<std::string> shutdown_until(std::chrono::steady_clock::time_point deadline);
    std::shared_ptr<state> s_;  // Shared with the worker threads.
};

/// The calling thread's hub's default executor, used by run_in_executor(fn, ...) and
/// to_thread(): created at first use as a thread_pool_executor of min(32, cores + 4)
/// threads, unless one was set. Each hub has its own (asyncio's default executor is per
/// loop), so one thread's run() ending, or its hub going away, never touches the jobs of
/// another thread. The hub shuts it down as it is destroyed (its thread exits): queued jobs
/// are dropped, running ones waited for a bounded time (see thread_pool_executor). The
/// caller shares ownership, so it stays usable while it is in use.
/// Switches: no.   Thread: thread-bound (creates the calling thread's hub if it has none).
/// Throws: std::bad_alloc.
std::shared_ptr<executor> default_executor();

/// Replaces the calling thread's hub's default executor and returns the previous one (null
/// if none was created). Null restores the built-in default, created again at next use.
/// Jobs already submitted to the previous one are unaffected; it is destroyed (and so shut
/// down) when its last owner lets go. Other threads' hubs keep theirs; an executor may be
/// set as the default of several hubs, and then each of their run()s and destructions shuts
/// it down (asyncio: loop.close() shuts its default executor down, shared or not).
/// Switches: no.   Thread: thread-bound.   Throws: std::bad_alloc (creating the hub).
std::shared_ptr<executor> set_default_executor(std::shared_ptr<executor> ex);

/// Shuts the calling thread's hub's default executor down (see executor::shutdown) and
/// forgets it; the next use creates a new one. No effect if none was created. asyncio.run()
/// does this on its way out, and so does run(). Switches: no; blocks up to `wait_for`.
/// Thread: thread-bound.   Throws: shutdown_timeout_error.
void shutdown_default_executor(std::chrono::steady_clock::duration wait_for);
/// The same with any duration type, saturating (hours::max() waits practically forever).
template <class Rep, class Period>
void shutdown_default_executor(std::chrono::duration<Rep, Period> wait_for) {
    shutdown_default_executor(detail::to_steady_duration(wait_for));
}

namespace detail {

template <class Fn, class... Args>
inline constexpr bool takes_stop_token_v = std::is_invocable_v<Fn&&, std::stop_token, Args&&...>;

template <class Fn, class... Args>
inline constexpr bool job_invocable_v =
    takes_stop_token_v<Fn, Args...> || std::is_invocable_v<Fn&&, Args&&...>;

template <class Fn, class... Args>
using job_result_t =
    typename std::conditional_t<takes_stop_token_v<Fn, Args...>,
                                std::invoke_result<Fn&&, std::stop_token, Args&&...>,
                                std::invoke_result<Fn&&, Args&&...>>::type;

/// The shared state of one run_in_executor() call: owned jointly by the waiting fiber, the
/// executor and the completion posted back to the hub, so the job never refers to the
/// fiber's stack (the fiber may stop waiting, cancelled, while the job still runs).
/// What the job carries for its function (the function, its arguments, its result, its
/// exception: the payload) came from the hub's thread and may be bound to it (a promise, a
/// socket), so it is destroyed there, never on the executor's thread: by the fiber once it
/// took the outcome, or, when nobody waits any more, by a function posted back to the hub.
/// Only when the hub is gone (its thread exited) is it destroyed where the job ended.
class job_base : public executor_job, public std::enable_shared_from_this<job_base> {
  public:
    void run() noexcept final;
    void discard() noexcept final;

    /// Submits this job to `ex` and parks the calling fiber until the job's outcome is back
    /// on this hub. If the calling task is cancelled meanwhile, the job's stop_token is
    /// signalled and cancelled_error is raised at once; the job may still be running.
    /// Switches: yes.   Thread: thread-bound.
    /// Throws: cancelled_error; what submit() throws; greenfiber::error on the hub itself.
    void submit_and_wait(executor& ex);

    /// Destroys the function, its arguments, its result and its exception. Idempotent.
    /// Switches: no (but the payload's destructors run).   Thread: the waiting fiber's hub
    /// (see the class comment).
    void drop_payload() noexcept;

  protected:
    /// Throws: std::bad_alloc (the stop state).
    job_base(job_options opts, const std::type_info& fn_type)
        : executor_job(std::move(opts.name), fn_type) {}

    /// Runs the function on the job's thread and stores its result.
    virtual void invoke() = 0;
    /// Destroys the function, its arguments and its result. Idempotent.
    /// Thread: the waiting fiber's hub (see the class comment).
    virtual void drop_captures() noexcept = 0;
    /// After submit_and_wait(): throws executor_shutdown_error or the job's exception.
    void rethrow_failure();

    std::stop_source stop_;  // Thread-safe; signalled when the waiting task is cancelled.

  private:
    enum class outcome : unsigned char { pending, returned, threw, skipped, discarded };
    void complete(outcome o) noexcept;
    void completed_on_hub() noexcept;
    /// Sends the payload back to its hub for destruction (see the class comment).
    void drop_payload_on_hub() noexcept;
    static void on_cancel(waiter& w) noexcept;

    /// Written by the thread that runs or discards the job before complete(); read by the
    /// hub's thread after the completion posted by complete() (the post orders them).
    outcome outcome_ = outcome::pending;
    std::exception_ptr error_;
    std::mutex mu_;
    hub* home_ = nullptr;  // Guarded by mu_: where to post the outcome while waited for.
    /// The hub the job was submitted from, for the payload; set before submit().
    std::shared_ptr<hub_anchor> anchor_;
    waiter* waiter_ = nullptr;  // The parked fiber's wait; only touched on the hub's thread.
    bool completed_ = false;    // The outcome arrived; only touched on the hub's thread.
};

template <class R>
using job_slot_t =
    std::conditional_t<std::is_void_v<R>, char,
                       std::conditional_t<std::is_reference_v<R>, std::remove_reference_t<R>*, R>>;

template <class Fn, class... Args>
class job_impl final : public job_base {
  public:
    using result_type = job_result_t<Fn, Args...>;

    template <class F, class... A>
    job_impl(job_options opts, F&& fn, A&&... args)
        : job_base(std::move(opts), typeid(Fn)),
          fn_(std::in_place, std::forward<F>(fn)),
          args_(std::in_place, std::forward<A>(args)...) {}

    /// The outcome, once submit_and_wait() returned: the result is moved out.
    result_type take() {
        rethrow_failure();
        if constexpr (std::is_void_v<result_type>) {
            return;
        } else if constexpr (std::is_reference_v<result_type>) {
            return static_cast<result_type>(**result_);
        } else {
            return std::move(*result_);
        }
    }

  private:
    void invoke() override {
        if constexpr (takes_stop_token_v<Fn, Args...>) {
            call([this](auto&&... a) -> decltype(auto) {
                return std::invoke(std::move(*fn_), stop_.get_token(),
                                   std::forward<decltype(a)>(a)...);
            });
        } else {
            call([this](auto&&... a) -> decltype(auto) {
                return std::invoke(std::move(*fn_), std::forward<decltype(a)>(a)...);
            });
        }
    }
    template <class Call>
    void call(Call&& c) {
        if constexpr (std::is_void_v<result_type>) {
            std::apply(c, std::move(*args_));
            result_.emplace('\0');
        } else if constexpr (std::is_reference_v<result_type>) {
            result_.emplace(&std::apply(c, std::move(*args_)));
        } else {
            result_.emplace(std::apply(c, std::move(*args_)));
        }
    }
    void drop_captures() noexcept override {
        fn_.reset();
        args_.reset();
        result_.reset();
    }

    /// Empty once dropped (drop_captures).
    std::optional<Fn> fn_;
    std::optional<std::tuple<Args...>> args_;
    std::optional<job_slot_t<result_type>> result_;
};

template <class Fn, class... Args>
decltype(auto) run_job(executor& ex, job_options opts, Fn&& fn, Args&&... args) {
    auto job = std::make_shared<job_impl<std::decay_t<Fn>, std::decay_t<Args>...>>(
        std::move(opts), std::forward<Fn>(fn), std::forward<Args>(args)...);
    job->submit_and_wait(ex);
    // The result is moved out first; the rest of the payload goes here, on the hub.
    struct drop {
        job_base& job;
        ~drop() { job.drop_payload(); }
    } on_exit{*job};
    return job->take();
}

template <class T>
inline constexpr bool is_executor_arg_v = std::is_base_of_v<executor, std::remove_cvref_t<T>> ||
                                          std::is_same_v<std::remove_cvref_t<T>, job_options>;

}  // namespace detail

/// Runs `fn(args...)` on `ex` and suspends only the calling fiber until it finishes; returns
/// its result or rethrows its exception, on the calling fiber's own hub. `fn` and `args` are
/// decay-copied into the job (std::ref to pass a reference). If `fn` accepts a
/// std::stop_token first, it gets one: stop is requested when the waiting task is cancelled.
/// Cancelling the waiting task raises cancelled_error in it at once, without waiting for
/// the job: a job already running goes on, so whatever it uses after a cancellation must
/// not live on the waiting fiber's stack (capture by value); a job not started yet never
/// starts. The function, the arguments and the result are destroyed on the calling fiber's
/// hub thread even then (a captured promise is broken there), unless that thread has exited. A
/// std::stop_callback registered on the token runs inside cancel(), on the hub's thread. The hub
/// holds a hub_handle for the job (no loop_exit while it runs). Switches: yes.   Thread:
/// thread-bound (the job runs on the executor's threads). Throws: the job's exception;
/// cancelled_error; executor_shutdown_error if `ex` is shut
///         down or shuts down before the job starts; greenfiber::error when called on the
///         hub itself (a callback).
template <class Fn, class... Args>
requires detail::job_invocable_v<std::decay_t<Fn>, std::decay_t<Args>...>
decltype(auto) run_in_executor(executor& ex, job_options opts, Fn&& fn, Args&&... args) {
    return detail::run_job(ex, std::move(opts), std::forward<Fn>(fn), std::forward<Args>(args)...);
}

/// run_in_executor() with the job named after its function's type.
/// Switches: yes.   Throws: as above.
template <class Fn, class... Args>
requires(!std::is_same_v<std::remove_cvref_t<Fn>, job_options> &&
         detail::job_invocable_v<std::decay_t<Fn>, std::decay_t<Args>...>) decltype(auto)
    run_in_executor(executor& ex, Fn&& fn, Args&&... args) {
    return detail::run_job(ex, job_options{}, std::forward<Fn>(fn), std::forward<Args>(args)...);
}

///@{
/// run_in_executor() on default_executor() (asyncio's run_in_executor(None, ...)).
/// Switches: yes.   Throws: as above.
template <class Fn, class... Args>
requires(!detail::is_executor_arg_v<Fn> &&
         detail::job_invocable_v<std::decay_t<Fn>, std::decay_t<Args>...>) decltype(auto)
    run_in_executor(Fn&& fn, Args&&... args) {
    auto ex = default_executor();  // shared: kept alive until the job is done
    return detail::run_job(*ex, job_options{}, std::forward<Fn>(fn), std::forward<Args>(args)...);
}
template <class Fn, class... Args>
requires detail::job_invocable_v<std::decay_t<Fn>, std::decay_t<Args>...>
decltype(auto) run_in_executor(job_options opts, Fn&& fn, Args&&... args) {
    auto ex = default_executor();
    return detail::run_job(*ex, std::move(opts), std::forward<Fn>(fn), std::forward<Args>(args)...);
}
///@}

///@{
/// asyncio.to_thread(): the same as run_in_executor(fn, args...) on the default executor.
/// Switches: yes.   Thread: thread-bound.   Throws: as run_in_executor().
template <class Fn, class... Args>
requires(!detail::is_executor_arg_v<Fn> &&
         detail::job_invocable_v<std::decay_t<Fn>, std::decay_t<Args>...>) decltype(auto)
    to_thread(Fn&& fn, Args&&... args) {
    return run_in_executor(std::forward<Fn>(fn), std::forward<Args>(args)...);
}
template <class Fn, class... Args>
requires detail::job_invocable_v<std::decay_t<Fn>, std::decay_t<Args>...>
decltype(auto) to_thread(job_options opts, Fn&& fn, Args&&... args) {
    return run_in_executor(std::move(opts), std::forward<Fn>(fn), std::forward<Args>(args)...);
}
///@}

}  // namespace greenfiber
