// The asyncio event-loop face of the hub.

#include "greenfiber/loop.hpp"

#include "greenfiber/detail/trace_hooks.hpp"
#include "greenfiber/executor.hpp"

#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <memory>
#include <vector>

namespace greenfiber {

namespace detail {

struct timer_state {
    timer_state(event_loop& l, std::chrono::steady_clock::time_point when,
                unique_function<void()> f)
        : timer(l.owner().context(), when), loop(&l), fn(std::move(f)) {}
    boost::asio::steady_timer timer;
    event_loop* loop;
    unique_function<void()> fn;
    bool cancelled = false;
    bool done = false;
};

}  // namespace detail

void timer_handle::cancel() noexcept {
    if (!s_ || s_->done) return;
    s_->cancelled = true;
    s_->done = true;  // no longer pending, though its handler still runs (and does nothing)
    --s_->loop->pending_timers_;
    s_->timer.cancel();
}

bool timer_handle::cancelled() const noexcept {
    return s_ && s_->cancelled;
}

std::chrono::steady_clock::time_point timer_handle::when() const noexcept {
    return s_ ? s_->timer.expiry() : std::chrono::steady_clock::time_point{};
}

namespace {
constinit thread_local event_loop* this_loop = nullptr;  // Borrowed from current()'s holder.
}  // namespace

event_loop& event_loop::current() {
    static thread_local struct holder {
        std::unique_ptr<event_loop> loop;
        ~holder() { this_loop = nullptr; }
    } h;
    if (!h.loop) {
        h.loop.reset(new event_loop(hub::current()));
        this_loop = h.loop.get();
    }
    return *h.loop;
}

std::size_t detail::loop_pending_timers_if_any() noexcept {
    return this_loop != nullptr ? this_loop->pending_timers_ : 0;  // the loop's own only
}

timer_handle event_loop::call_at(std::chrono::steady_clock::time_point when,
                                 detail::unique_function<void()> fn) {
    auto s = std::make_shared<detail::timer_state>(*this, when, std::move(fn));
    ++pending_timers_;
    s->timer.async_wait([s](const boost::system::error_code& ec) {
        if (s->done) return;  // cancelled
        s->done = true;
        --s->loop->pending_timers_;
        if (ec) return;
        if (auto* t = detail::trace_of(s->loop->owner())) [[unlikely]]
            detail::trace_call_later(*t);
        auto fn = std::move(s->fn);
        try {
            fn();
        } catch (...) {
            report_failure({"greenfiber: a call_later/call_at callback threw",
                            std::current_exception(), nullptr, report_severity::error, "callback"});
        }
    });
    return timer_handle(std::move(s));
}

// Marks the loop running for one run_* call; the destructor leaves it idle again.
class event_loop::running_scope {
  public:
    running_scope(event_loop& l, const char* what) : l_(l) {
        if (l.closed_)
            throw error(std::string("greenfiber: ") + what + ": the event loop is closed");
        if (l.running_)
            throw error(std::string("greenfiber: ") + what + ": the event loop is already running");
        l.running_ = true;
    }
    ~running_scope() {
        l_.running_ = false;
        l_.runner_ = nullptr;
        l_.stop_requested_ = false;
    }
    running_scope(const running_scope&) = delete;
    running_scope& operator=(const running_scope&) = delete;

  private:
    event_loop& l_;
};

void event_loop::wait_until_done_or_stopped(detail::task_base& t) {
    running_scope running(*this, "run_until_complete");
    if (!t.done() && !stop_requested_) {
        const std::string what = "task '" + t.name() + "' (run_until_complete)";
        detail::sync_waiter sw(what.c_str());
        runner_ = &sw.w;
        t.wait_done_with(sw);
    }
    if (!t.done()) throw error("greenfiber: Event loop stopped before the task completed");
    // asyncio stops the loop from the task's done callback, and the loop finishes that
    // iteration: what was ready when the task ended runs before run_until_complete returns.
    if (hub_->ready_count() > 0) detail::yield_shielded();
}

void event_loop::run_forever() {
    running_scope running(*this, "run_forever");
    detail::waiter w("stop() (run_forever)");
    runner_ = &w;
    if (stop_requested_) {
        // stop() before run_forever(): run what is ready once, then return (asyncio).
        stop_requested_ = false;
        stop();
    }
    hub_->park(w);
}

void event_loop::stop() {
    stop_requested_ = true;
    if (!running_) return;
    // After the callbacks already ready: the current batch finishes first.
    hub_->call_soon([this] {
        if (runner_ != nullptr) hub_->wake(*runner_);
    });
}

void event_loop::close() {
    if (running_) throw error("greenfiber: Cannot close a running event loop");
    closed_ = true;
}

namespace detail {

void finish_run(std::chrono::steady_clock::duration grace) noexcept {
    const auto deadline = deadline_after(grace);
    hub& h = hub::current();
    struct at_end {
        hub& h;
        std::chrono::steady_clock::time_point deadline;
        ~at_end() {
            // asyncio.run's shutdown runs the loop again, so callbacks still queued when
            // the main task ended (and those they queue) run; bounded, in case they never
            // stop queueing more.
            try {
                for (int round = 0; round < 64 && h.ready_count() > 0; ++round) yield_now();
            } catch (...) {
                h.report({"greenfiber: run(): running the callbacks still queued",
                          std::current_exception(), nullptr, report_severity::error, "run"});
            }
            // asyncio.run shuts the default executor down: the rest of the grace period
            // bounds it, and a job still running then is reported by name.
            try {
                shutdown_default_executor(
                    std::max(deadline - std::chrono::steady_clock::now(),
                             std::chrono::steady_clock::duration(std::chrono::milliseconds(100))));
            } catch (...) {
                h.report({"greenfiber: run(): shutting down the default executor",
                          std::current_exception(), nullptr, report_severity::error, "run"});
            }
            task_base::report_all_unretrieved();
        }
    } on_the_way_out{h, deadline};
    cancel_and_join_tasks(grace);
}

void cancel_and_join_tasks(std::chrono::steady_clock::duration grace) noexcept {
    const auto deadline = deadline_after(grace);
    hub& h = hub::current();
    try {
        for (;;) {
            std::vector<task_base*> left = task_base::all(h);
            if (left.empty()) return;
            for (task_base* t : left) {
                t->retain();
                t->cancel("run() is finishing");
            }
            bool late = false;
            for (task_base* t : left) {
                if (!late && !t->done() && !t->wait_done_until(deadline)) late = true;
                if (late && !t->done()) {
                    h.report({"greenfiber: run(): task '" + t->name() +
                                  "' was still running when the grace period for cancelled "
                                  "tasks ended",
                              nullptr, nullptr, report_severity::warning, "run"});
                }
                t->release();
            }
            if (late) return;
        }
    } catch (...) {
        h.report({"greenfiber: run(): cleaning up the remaining tasks failed",
                  std::current_exception(), nullptr, report_severity::error, "run"});
    }
}

}  // namespace detail
}  // namespace greenfiber
