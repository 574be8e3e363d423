// Executors: a bounded thread pool, and the fiber side of run_in_executor().

#include "greenfiber/executor.hpp"

#include <cxxabi.h>
#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <thread>

#include "greenfiber/task.hpp"
#include "side_stack.hpp"

namespace greenfiber {

// ---- executor_job ------------------------------------------------------------------------

std::string executor_job::name() const {
    if (!name_.empty()) return name_;
    int status = 0;
    char* demangled = abi::__cxa_demangle(fn_type_->name(), nullptr, nullptr, &status);
    std::string out = status == 0 && demangled != nullptr ? demangled : fn_type_->name();
    std::free(demangled);  // NOLINT: allocated by the demangler with malloc
    return out;
}

// ---- the fiber's side of a job -------------------------------------------------------------

namespace detail {

void job_base::run() noexcept {
    // A job whose waiter was cancelled before it started never starts.
    if (stop_.stop_requested()) {
        complete(outcome::skipped);
        return;
    }
    try {
        invoke();
    } catch (...) {
        error_ = std::current_exception();
        complete(outcome::threw);
        return;
    }
    complete(outcome::returned);
}

void job_base::discard() noexcept {
    complete(outcome::discarded);
}

void job_base::complete(outcome o) noexcept {
    outcome_ = o;
    {
        // Posting under mu_: the waiting fiber clears home_ under mu_ when it stops waiting,
        // so its hub is alive for as long as it is set (a fiber parked on a hub keeps the hub).
        std::lock_guard<std::mutex> lock(mu_);
        if (home_ != nullptr) {
            try {
                home_->post([self = shared_from_this()] { self->completed_on_hub(); });
                return;
            } catch (...) {
                // Out of memory: the fiber is not woken by this job; it stays parked until
                // cancelled (the hub still counts it as work, so no loop_exit either).
                return;
            }
        }
    }
    // Nobody waits any more (cancelled): the outcome is dropped, on the hub.
    drop_payload_on_hub();
}

void job_base::completed_on_hub() noexcept {
    completed_ = true;
    if (waiter_ != nullptr) {
        hub::current().wake(*waiter_);
    } else {
        drop_payload();  // the fiber stopped waiting after the outcome was posted
    }
}

void job_base::drop_payload() noexcept {
    error_ = nullptr;
    drop_captures();
}

void job_base::drop_payload_on_hub() noexcept {
    if (anchor_ && !anchor_->on_its_thread()) {
        try {
            if (anchor_->post([self = shared_from_this()] { self->drop_payload(); })) return;
        } catch (...) {
            // Out of memory: dropped here after all.
        }
    }
    // On the hub's thread already, or its thread has exited: nothing to get back to.
    drop_payload();
}

void job_base::on_cancel(waiter& w) noexcept {
    // Runs on the hub's thread, from task::cancel(). A stop callback the job registered runs
    // here, synchronously (std::stop_source semantics).
    static_cast<job_base*>(w.context)->stop_.request_stop();
    hub::current().wake(w);
}

void job_base::submit_and_wait(executor& ex) {
    hub& h = hub::current();
    if (h.in_hub()) {
        throw error("greenfiber: cannot wait for executor job '" + name() +
                    "' on the hub itself: a callback must not suspend (spawn a task instead)");
    }
    // A task already cancelled does not submit anything: a park raises it (after a turn of
    // the hub), unless the task may not be cancelled here (hub::park).
    if (task_base* t = task_base::current(); t != nullptr && t->cancel_pending()) yield_now();

    anchor_ = hub_anchor::current();
    waiter w("an executor job (run_in_executor)");
    w.on_cancel = &job_base::on_cancel;
    w.context = this;
    {
        std::lock_guard<std::mutex> lock(mu_);
        home_ = &h;
    }
    waiter_ = &w;
    // However the wait ends (outcome, cancellation, greenlet_exit), the job stops referring
    // to this frame and to this hub before the frame goes away.
    struct detach {
        job_base& job;
        // The job will post back: the hub must not conclude that nothing can wake this
        // fiber while it runs, on whatever thread the executor runs it.
        hub_handle keep;
        bool returning = false;  // the caller takes the outcome, then drops the payload
        ~detach() {
            job.waiter_ = nullptr;
            {
                std::lock_guard<std::mutex> lock(job.mu_);
                job.home_ = nullptr;
            }
            // Left with the outcome here but unused (cancelled after it was posted): drop the
            // payload now. Without an outcome, whoever ends the job sends it back (complete()).
            if (job.completed_ && !returning) job.drop_payload();
        }
    } detach_guard{*this, h.keep_alive()};

    ex.submit(shared_from_this());
    while (!completed_) h.park(w);
    detach_guard.returning = true;
}

void job_base::rethrow_failure() {
    switch (outcome_) {
        case outcome::returned:
            return;
        case outcome::threw:
            std::rethrow_exception(error_);
        case outcome::discarded:
            throw executor_shutdown_error("greenfiber: executor job '" + name() +
                                          "' was cancelled: its executor shut down before it "
                                          "started");
        case outcome::skipped:
        case outcome::pending:
            break;
    }
    // Only reachable if the executor broke its contract (run() and discard() both, or the
    // wait ended without an outcome).
    throw error("greenfiber: executor job '" + name() + "' ended without an outcome");
}

}  // namespace detail

// ---- thread_pool_executor ----------------------------------------------------------------

struct thread_pool_executor::state {
    explicit state(std::size_t max) : max_threads(max) {}

    const std::size_t max_threads;
    mutable std::mutex mu;
    std::condition_variable work_cv;  // workers: a job was queued, or shutdown
    std::condition_variable idle_cv;  // shutdown: a running job ended
    // All guarded by mu:
    std::deque<std::shared_ptr<executor_job>> queue;
    struct running_job {
        std::thread::id thread;
        std::shared_ptr<executor_job> job;
    };
    std::vector<running_job> running;
    std::vector<std::thread> threads;  // joined by shutdown or the destructor
    std::size_t idle = 0;              // workers waiting on work_cv
    bool stopping = false;

    static void worker(std::shared_ptr<state> s);
};

void thread_pool_executor::state::worker(std::shared_ptr<state> s) {
    (void)pthread_setname_np(pthread_self(), "greenfiber-pool");
    const std::thread::id self = std::this_thread::get_id();
    std::unique_lock<std::mutex> lock(s->mu);
    for (;;) {
        while (s->queue.empty() && !s->stopping) {
            ++s->idle;
            s->work_cv.wait(lock);
            --s->idle;
        }
        if (s->queue.empty()) return;  // shutting down, nothing left
        std::shared_ptr<executor_job> job = std::move(s->queue.front());
        s->queue.pop_front();
        s->running.push_back({self, job});
        lock.unlock();

        job->run();

        lock.lock();
        auto it = std::find_if(s->running.begin(), s->running.end(),
                               [&](const running_job& r) { return r.job == job; });
        if (it != s->running.end()) s->running.erase(it);
        s->idle_cv.notify_all();
        // The job (and whatever its function captured) is destroyed without the lock.
        lock.unlock();
        job.reset();
        lock.lock();
    }
}

thread_pool_executor::thread_pool_executor(std::size_t threads) {
    if (threads == 0) throw error("greenfiber: thread_pool_executor needs at least one thread");
    s_ = std::make_shared<state>(threads);
}

thread_pool_executor::~thread_pool_executor() {
    const std::vector<std::string> stuck =
        shutdown_until(detail::deadline_after(std::chrono::seconds(5)));
    for (const std::string& name : stuck) {
        report_failure({"greenfiber: thread_pool_executor destroyed while job '" + name +
                            "' was still running after 5 s; its thread is detached",
                        nullptr, nullptr, report_severity::warning, "executor"});
    }
    std::lock_guard<std::mutex> lock(s_->mu);
    for (std::thread& t : s_->threads) {
        if (t.joinable()) t.detach();  // each keeps the state alive until its job ends
    }
    s_->threads.clear();
}

void thread_pool_executor::submit(std::shared_ptr<executor_job> job) {
    if (!job) throw error("greenfiber: thread_pool_executor::submit: null job");
    std::lock_guard<std::mutex> lock(s_->mu);
    if (s_->stopping) {
        throw executor_shutdown_error("greenfiber: cannot run job '" + job->name() +
                                      "': its thread_pool_executor was shut down");
    }
    s_->queue.push_back(std::move(job));
    if (s_->queue.size() > s_->idle && s_->threads.size() < s_->max_threads) {
        // Starting a thread (pthread_create, and its interceptor under the sanitizers) takes
        // more than a small stack holds (stack.hpp, "Small stacks"): from the side stack.
        try {
            detail::on_side_stack_throwing([&] { s_->threads.emplace_back(&state::worker, s_); });
        } catch (...) {
            if (s_->threads.empty()) {
                s_->queue.pop_back();  // no thread would ever run it
                throw;
            }
            // Otherwise a running thread takes it later.
        }
    }
    s_->work_cv.notify_one();
}

std::vector<std::string> thread_pool_executor::shutdown_until(
    std::chrono::steady_clock::time_point deadline) {
    const std::thread::id self = std::this_thread::get_id();
    std::deque<std::shared_ptr<executor_job>> dropped;
    std::unique_lock<std::mutex> lock(s_->mu);
    s_->stopping = true;
    dropped.swap(s_->queue);
    s_->work_cv.notify_all();
    lock.unlock();
    for (auto& job : dropped) job->discard();
    dropped.clear();

    lock.lock();
    // A job that shuts down its own pool is not waited for (it would wait for itself).
    auto others_running = [&] {
        return std::any_of(s_->running.begin(), s_->running.end(),
                           [&](const state::running_job& r) { return r.thread != self; });
    };
    (void)s_->idle_cv.wait_until(lock, deadline, [&] { return !others_running(); });

    std::vector<std::string> stuck;
    std::vector<std::thread> finished;  // threads with no job: they exit at once
    for (auto it = s_->threads.begin(); it != s_->threads.end();) {
        const bool busy =
            std::any_of(s_->running.begin(), s_->running.end(),
                        [&](const state::running_job& r) { return r.thread == it->get_id(); });
        if (busy || it->get_id() == self) {
            ++it;
        } else {
            finished.push_back(std::move(*it));
            it = s_->threads.erase(it);
        }
    }
    std::vector<std::shared_ptr<executor_job>> late;
    for (const auto& r : s_->running) {
        if (r.thread != self) late.push_back(r.job);
    }
    lock.unlock();
    for (std::thread& t : finished) t.join();
    for (const auto& job : late) stuck.push_back(job->name());
    return stuck;
}

void thread_pool_executor::shutdown(std::chrono::steady_clock::duration wait_for) {
    const std::vector<std::string> stuck = shutdown_until(detail::deadline_after(wait_for));
    if (stuck.empty()) return;
    std::string msg =
        "greenfiber: thread_pool_executor::shutdown: after " +
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(wait_for).count()) +
        " ms, " + std::to_string(stuck.size()) + " job" + (stuck.size() == 1 ? " is" : "s are") +
        " still running:";
    for (std::size_t i = 0; i < stuck.size(); ++i) {
        msg += (i == 0 ? " '" : ", '") + stuck[i] + "'";
    }
    throw shutdown_timeout_error(msg, stuck);
}

std::size_t thread_pool_executor::max_threads() const noexcept {
    return s_->max_threads;
}

std::size_t thread_pool_executor::threads() const {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->threads.size();
}

std::size_t thread_pool_executor::queued() const {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->queue.size();
}

std::size_t thread_pool_executor::running() const {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->running.size();
}

// ---- the default executor ------------------------------------------------------------------

std::shared_ptr<executor> default_executor() {
    std::shared_ptr<executor>& slot = detail::default_executor_slot(hub::current());
    if (!slot) {
        const std::size_t cores = std::thread::hardware_concurrency();
        slot = std::make_shared<thread_pool_executor>(std::min<std::size_t>(32, cores + 4));
    }
    return slot;
}

std::shared_ptr<executor> set_default_executor(std::shared_ptr<executor> ex) {
    std::shared_ptr<executor>& slot = detail::default_executor_slot(hub::current());
    slot.swap(ex);
    return ex;
}

void shutdown_default_executor(std::chrono::steady_clock::duration wait_for) {
    std::shared_ptr<executor> ex = set_default_executor(nullptr);
    if (ex) ex->shutdown(wait_for);
}

}  // namespace greenfiber
