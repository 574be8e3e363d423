// The hub: one greenlet per thread driving Asio's io_context and a FIFO ready queue.

#include "greenfiber/hub.hpp"

#include <time.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "greenfiber/detail/hub_anchor.hpp"
#include "greenfiber/detail/stall_beat.hpp"
#include "greenfiber/detail/trace_hooks.hpp"
#include "greenfiber/executor.hpp"
#include "greenfiber/loop.hpp"
#include "greenfiber/task.hpp"

namespace greenfiber {

namespace {

// Cheap enough to read around every resume (vDSO, no syscall); a few ms of resolution.
// Internal linkage, so the hub's reads around each resume are inlined: a call to the
// exported detail::coarse_now() from a shared library goes through the PLT.
inline std::chrono::steady_clock::time_point read_coarse_clock() noexcept {
#if defined(CLOCK_MONOTONIC_COARSE)
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return std::chrono::steady_clock::time_point(std::chrono::seconds(ts.tv_sec) +
                                                 std::chrono::nanoseconds(ts.tv_nsec));
#else
    return std::chrono::steady_clock::now();
#endif
}

}  // namespace

std::chrono::steady_clock::time_point detail::coarse_now() noexcept {
    return read_coarse_clock();
}

namespace detail {

void ready_queue::remove_queued(ready_entry& w) noexcept {
    ready_entry* prev = nullptr;
    for (ready_entry* it = head_; it != nullptr; prev = it, it = it->next_) {
        if (it != &w) continue;
        if (prev != nullptr) {
            prev->next_ = it->next_;
        } else {
            head_ = it->next_;
        }
        if (tail_ == it) tail_ = prev;
        it->next_ = nullptr;
        it->queued_ = false;
        --size_;
        return;
    }
}

void ready_queue::twice(const ready_entry& w) noexcept {
    std::fprintf(stderr, "greenfiber: internal error: %s was queued in the ready queue twice\n",
                 w.is_callback() ? "a callback" : "a fiber's entry");
    std::abort();
}

}  // namespace detail

// Destroys this thread's hub at thread exit, after its tasks (see ~hub).
struct hub::holder {
    hub* h = nullptr;
    ~holder() { delete h; }
};

constinit thread_local hub* detail::current_hub = nullptr;  // Borrowed from hub::holder.

hub& hub::create_current() {
    // The fibers layer's thread state must outlive the hub: touch it first, so that its
    // thread_local is constructed first and destroyed last.
    (void)detail::this_thread();
    static thread_local holder h;
    if (h.h == nullptr) h.h = new hub;
    detail::current_hub = h.h;
    return *h.h;
}

hub* detail::hub_if_any() noexcept {
    return current_hub;
}

std::shared_ptr<executor>& detail::default_executor_slot(hub& h) noexcept {
    return h.default_executor_;
}

// ---- hub_handle ------------------------------------------------------------------------------

hub_handle::hub_handle(std::shared_ptr<detail::hub_anchor> a) noexcept : anchor_(std::move(a)) {
    if (anchor_) anchor_->hold();
}

hub_handle::hub_handle(const hub_handle& o) noexcept : anchor_(o.anchor_) {
    if (anchor_) anchor_->hold();
}

hub_handle& hub_handle::operator=(const hub_handle& o) noexcept {
    if (this != &o) {
        hub_handle copy(o);
        *this = std::move(copy);
    }
    return *this;
}

hub_handle& hub_handle::operator=(hub_handle&& o) noexcept {
    if (this != &o) {
        reset();
        anchor_ = std::move(o.anchor_);
    }
    return *this;
}

void hub_handle::reset() noexcept {
    if (!anchor_) return;
    std::shared_ptr<detail::hub_anchor> a = std::move(anchor_);
    a->unhold();
}

bool hub_handle::post_erased(detail::unique_function<void()> fn) {
    if (!anchor_) return false;
    return anchor_->post([f = std::move(fn)]() mutable {
        try {
            f();
        } catch (const greenlet_exit&) {
            throw;  // the hub itself is being killed
        } catch (...) {
            hub::current().report({"greenfiber: a function posted through a hub_handle threw",
                                   std::current_exception(), nullptr, report_severity::error,
                                   "callback"});
        }
    });
}

hub_handle hub::keep_alive() {
    if (std::this_thread::get_id() != thread_) {
        throw error(
            "greenfiber: hub::keep_alive() must be called on the hub's own thread; copy the "
            "handle it returns to hand it to other threads");
    }
    return hub_handle(detail::hub_anchor::current());
}

void hub::hold() noexcept {
    // Work first, count second (unhold() undoes it in the other order): whenever the count
    // is non-zero the io_context has work, so run_one() blocks instead of returning 0.
    io_.get_executor().on_work_started();
    holds_.fetch_add(1, std::memory_order_release);
}

void hub::unhold() noexcept {
    holds_.fetch_sub(1, std::memory_order_release);
    // When this was the io_context's last work it stops, which wakes a hub blocked in
    // run_one(): it then sees no hold left and reports the deadlock.
    io_.get_executor().on_work_finished();
}

hub::hub() : loop_([this] { loop(); }, greenlet::options{"hub", 0}), now_(read_coarse_clock()) {
    // The hub returns to the thread's main greenlet, whoever created it.
    greenlet root = greenlet::current();
    for (greenlet p = root.parent(); p; p = p.parent()) root = p.share();
    loop_.set_parent(root);
    // The starting watchdog threshold may come from the environment (see set_watchdog): a
    // whole number of milliseconds, 0 for off. Anything else leaves the default.
    if (const char* env = std::getenv("GREENFIBER_WATCHDOG_MS"); env != nullptr) {
        const char* end = env + std::strlen(env);
        std::uint32_t ms = 0;  // over 49 days does not parse: the default stays
        const auto [at, ec] = std::from_chars(env, end, ms);
        if (ec == std::errc() && at == end && at != env) watchdog_ = std::chrono::milliseconds(ms);
    }
}

hub::~hub() {
    // First cancel what is left and let it finish on a running hub (bounded): a task whose
    // unwinding waits for another would otherwise block the thread's exit. Only what is
    // still there after that is killed with greenlet_exit.
    if (!detail::task_base::all(*this).empty() && !in_hub()) {
        const auto saved = std::exchange(watchdog_, std::chrono::milliseconds(0));
        detail::cancel_and_join_tasks(std::chrono::seconds(1));
        watchdog_ = saved;
    }
    // A killed task whose fiber catches greenlet_exit and waits again would keep this
    // hub running for it, and the thread from exiting: its unwinding gets a bounded time.
    reap_until_ = detail::deadline_after(std::chrono::seconds(1));
    detail::task_base::destroy_all(*this);
    // The hub's default executor goes with it (asyncio's loop.close()): queued jobs are
    // dropped; the pool's destructor waits a bounded time for running ones and reports them.
    if (std::shared_ptr<executor> ex = std::move(default_executor_)) {
        try {
            ex->shutdown(std::chrono::seconds(0));
        } catch (...) {
            // Jobs still running: the last owner's destructor waits for them and reports.
        }
    }
    detail::current_hub = nullptr;
    // Dropping loop_ kills the hub's greenlet if it is suspended in its loop.
}

namespace {

// The io_context stops whenever its work runs out: inside a poll() or run_one(), and outside
// them when a fiber releases the last work (a work guard, a use_fiber operation's end). A
// stopped context's poll() runs nothing and its run_one() returns at once, so the loop
// restarts it before each call, where a stop from any of those places is seen.
void restart_if_stopped(boost::asio::io_context& io) {
    if (io.stopped()) io.restart();
}

std::size_t poll_running(boost::asio::io_context& io) {
    restart_if_stopped(io);
    return io.poll();
}

}  // namespace

void hub::loop() {
    for (;;) {
        now_ = read_coarse_clock();  // one read per turn: what parks record (waiter::since)
        turn_ran_ = 0;
        // After the reactor's handlers of the last pass (every path below polls before it
        // comes back here), so a wake-up and a deadline due together end as a wake-up.
        if (!timers_.empty()) fire_timers();
        if (trace_ != nullptr) [[unlikely]]
            detail::trace_loop_turn(*trace_, ready_.size());
        run_ready();
        // Behind the ready fibers, before the reactor: what they queue runs this turn.
        if (!deferred_.empty()) run_deferred();
        // One reactor wait per turn. Asio's poll() ends every call with a non-blocking
        // epoll_wait when it reaches the reactor, whatever it ran before, and run_one()
        // makes one too when a handler was posted: so the turn polls once, which runs
        // what the fibers queued (completions of reads that found data at once) and what
        // the kernel has ready, and blocks only when that ran nothing. A budget spent with
        // fibers still ready polls in the same way, so I/O is never starved.
        if (trace_ != nullptr) [[unlikely]]
            detail::trace_poll_begin(*trace_);
        const std::size_t polled = poll_running(io_);
        if (trace_ != nullptr) [[unlikely]]
            detail::trace_poll_end(*trace_, polled, false);
        if (polled != 0 || !ready_.empty()) continue;
        // Nothing ready: block in the reactor until a handler runs.
        detail::stall_beat_idle();
        restart_if_stopped(io_);
        if (trace_ != nullptr) [[unlikely]]
            detail::trace_poll_begin(*trace_);
        // With a timer pending, block no longer than its deadline (the heap counts as work,
        // so this returns 0 only when the deadline came); a deadline of time_point::max()
        // never comes, and an idle hub blocks without a timeout either way.
        const std::size_t ran =
            timers_.empty() || timers_.earliest() == std::chrono::steady_clock::time_point::max()
                ? io_.run_one()
                : io_.run_one_until(timers_.earliest());
        if (ran == 0) {
            if (trace_ != nullptr) [[unlikely]]
                detail::trace_poll_end(*trace_, 0, true);
            if (!timers_.empty()) {
                // The earliest deadline came. Asio's handlers due by now (a call_at, a
                // completion) run first, as they do on every other path to the next turn's
                // fire_timers(): a wake-up due in the same pass wins over the timeout.
                (void)poll_running(io_);
                continue;
            }
            restart_if_stopped(io_);
            // A hub_handle held on any thread may still post the wake-up: wait for it.
            // (The io_context counts the hold as work, so run_one() blocks until it is
            // dropped or something is posted.)
            if (ready_.empty() && holds_.load(std::memory_order_acquire) == 0) no_work();
            continue;
        }
        // The wait's other completions are queued in front of the reactor: run them now, so
        // that their fibers run in one batch and hand off to each other.
        const std::size_t more = poll_running(io_);
        if (trace_ != nullptr) [[unlikely]]
            detail::trace_poll_end(*trace_, ran + more, true);
    }
}

void hub::begin_slice(detail::greenlet_impl* next) noexcept {
    detail::stall_beat_resume(next);
    ++switches_;
    if (trace_ != nullptr) [[unlikely]]
        detail::trace_resume(*trace_, next);
    // The thread's main greenlet is not watched: between two run_* calls it does what it
    // likes, and the hub is not running then (asyncio's slow-callback check agrees).
    if (watchdog_.count() == 0 || (next != nullptr && next->is_main)) {
        slice_start_ = {};
        return;
    }
    now_ = read_coarse_clock();
    open_slice(next, now_);
}

void hub::hand_slice(detail::greenlet_impl* self, detail::greenlet_impl* next) noexcept {
    if (trace_ != nullptr) [[unlikely]] {
        detail::trace_suspend(*trace_);
        detail::trace_resume(*trace_, next);
    }
    detail::stall_beat_resume(next);
    ++switches_;
    if (watchdog_.count() == 0) [[unlikely]] {
        slice_start_ = {};
        return;
    }
    const bool watched = slice_start_ != std::chrono::steady_clock::time_point{};
    if (!watched && next->is_main) return;
    // One clock read ends one slice and begins the next.
    const auto now = read_coarse_clock();
    now_ = now;
    if (watched) close_slice(now, self);
    if (!next->is_main) [[likely]]
        open_slice(next, now);
}

void hub::open_slice(detail::greenlet_impl* next,
                     std::chrono::steady_clock::time_point now) noexcept {
    slice_start_ = now;
    slice_fiber_ = next;
    // A plain greenlet may die before its slice is measured: its name is kept.
    if (next != nullptr && next->local == nullptr) [[unlikely]] {
        slice_name_ = next->name.empty() ? "#" + std::to_string(next->id) : next->name;
    } else if (!slice_name_.empty()) [[unlikely]] {
        slice_name_.clear();
    }
}

void hub::close_slice(std::chrono::steady_clock::time_point now,
                      detail::greenlet_impl* who) noexcept {
    const auto ran = std::chrono::duration_cast<std::chrono::milliseconds>(now - slice_start_);
    slice_start_ = {};
    if (ran >= watchdog_ && watchdog_.count() > 0) [[unlikely]] {
        // Formatted on a stack of its own when `who` runs on a small one (stack.hpp).
        struct call {
            hub* h;
            std::chrono::milliseconds ran;
            detail::greenlet_impl* who;
        } c{this, ran, who};
        detail::on_side_stack(
            [](void* p) noexcept {
                auto* c = static_cast<call*>(p);
                c->h->report_slice(c->ran, c->who);
            },
            &c);
    }
}

void hub::end_slice(detail::greenlet_impl* self) noexcept {
    if (trace_ != nullptr) [[unlikely]]
        detail::trace_suspend(*trace_);
    if (slice_start_ == std::chrono::steady_clock::time_point{}) return;
    now_ = read_coarse_clock();
    close_slice(now_, self);
}

void hub::end_slice_in_hub() noexcept {
    // Ended by the fiber itself (or not watched): its trace record too.
    if (slice_start_ == std::chrono::steady_clock::time_point{}) return;
    if (trace_ != nullptr) [[unlikely]]
        detail::trace_suspend(*trace_);
    // The fiber may be gone: only a callback or a plain greenlet (its name copied) ends here.
    close_slice(read_coarse_clock(), nullptr);
}

void hub::report_slice(std::chrono::milliseconds ran, detail::greenlet_impl* who) noexcept {
    try {
        std::string name = "a callback";
        greenlet* fiber = nullptr;
        if (slice_fiber_ != nullptr && slice_fiber_ != who && !slice_name_.empty()) {
            // The slice began in a plain greenlet that has died or switched on since (into
            // `who`, or back into the hub): the greenlet is what the hub resumed.
            name = "greenlet '" + slice_name_ + "'";
        } else if (who != nullptr && who->local != nullptr) {
            auto* t = static_cast<detail::task_base*>(who->local);
            name = "task '" + t->name() + "' (spawned at " + t->site() + ")";
            fiber = &t->fiber_;
        } else if (who != nullptr) {
            name = "greenlet '" + who->name + "'";
        }
        report({"greenfiber: watchdog: " + name + " kept the hub from its loop for " +
                    std::to_string(ran.count()) + " ms (threshold " +
                    std::to_string(watchdog_.count()) +
                    " ms): a blocking call in a fiber? Move it to to_thread()",
                nullptr, fiber, report_severity::warning, "watchdog"});
        ++watchdog_reports_;
    } catch (...) {
    }
}

void hub::run_ready() {
    while (turn_ran_ < budget_) {
        detail::ready_entry* w = ready_.pop_front();
        if (w == nullptr) return;
        ++turn_ran_;
        const bool w_is_callback = w->is_callback();
        // A task's first run: if its fiber cannot start (no stack), the task fails with that
        // error instead of staying pending. The hub's reference keeps it alive meanwhile.
        detail::task_base* starting = nullptr;
        if (!w_is_callback && w->fiber->local != nullptr) {
            auto* t = static_cast<detail::task_base*>(w->fiber->local);
            if (w == &t->start_) starting = t;
        }
        // The task may finish and hand the thread on before anything comes back here, and
        // be freed: its finish() clears this, so the catch below never reads it then.
        starting_ = starting;
        try {
            // The waiter lives in the fiber's frame: after the switch it may be gone, and the
            // fiber's task with it; so may every fiber the thread was handed on to meanwhile.
            begin_slice(w_is_callback ? nullptr : w->fiber);
            struct end {
                hub& h;
                ~end() { h.end_slice_in_hub(); }
            } ended{*this};
            if (w_is_callback) {
                w->run(*w);
                continue;
            }
            value v;
            // A task's first run takes the inline switch too once it has its stack; if it
            // cannot have one, the switch below raises why (fail_start).
            if (starting != nullptr) (void)detail::prepare_start(w->fiber);
            (void)detail::switch_value(w->fiber, v);
        } catch (const greenlet_exit&) {
            throw;  // the hub itself is being killed
        } catch (...) {
            starting = std::exchange(starting_, nullptr);
            if (starting != nullptr && starting->status() == task_status::pending) {
                starting->fail_start(std::current_exception());
                continue;
            }
            // A callback threw, or a plain greenlet whose parent is the hub let an exception
            // escape. The hub goes on.
            report({w_is_callback ? "greenfiber: a callback run by the hub threw"
                                  : "greenfiber: an exception escaped a fiber into the hub",
                    std::current_exception(), nullptr, report_severity::error,
                    w_is_callback ? "callback" : "greenlet"});
        }
    }
}

void hub::run_deferred() noexcept {
    // A call may wake a fiber but never queue another call (it cannot park), so this ends.
    while (detail::deferred_call* c = deferred_.pop_front()) c->fn(c->arg);
}

namespace {
// A call_soon entry; frees itself after running.
struct callback_node : detail::ready_entry {
    explicit callback_node(detail::unique_function<void()> f)
        : ready_entry(&call), fn(std::move(f)) {}
    static void call(detail::ready_entry& w) {
        std::unique_ptr<callback_node> self(static_cast<callback_node*>(&w));
        self->fn();
    }
    detail::unique_function<void()> fn;
};
}  // namespace

void hub::call_soon(detail::unique_function<void()> fn) {
    auto* node = new callback_node(std::move(fn));
    schedule(*node);
}

report_handler hub::set_exception_handler(report_handler handler) {
    std::swap(exception_handler_, handler);
    return handler;
}

void hub::report(const failure_report& r) noexcept {
    if (!exception_handler_) return report_failure(r);
    try {
        exception_handler_(r);
    } catch (...) {
        report_failure({"greenfiber: the hub's exception handler threw", std::current_exception(),
                        nullptr, report_severity::critical, "hub"});
    }
}

std::string hub::parked_tasks_report() {
    // Every parked task, a line each, bounded: the task that is actually stuck is usually
    // not the main one, which only waits for it.
    constexpr std::size_t max_lines = 8;
    std::string out;
    std::size_t listed = 0;
    std::size_t more = 0;
    for (const detail::task_base* t : detail::task_base::all(*this)) {
        const detail::waiter* w = t->current_wait();
        if (w == nullptr) continue;
        if (listed == max_lines) {
            ++more;
            continue;
        }
        ++listed;
        out += "\n  task '" + t->name() + "' (spawned at " + t->site() + ") waits for " +
               (w->woken ? std::string(w->what) : w->description());
    }
    if (more > 0) out += "\n  ... and " + std::to_string(more) + " more parked tasks";
    return out;
}

void hub::no_work() {
    // Nothing is ready, the reactor has no pending operation and no hub_handle is held, so
    // no other thread can post: every parked fiber waits forever. Raise loop_exit where the
    // thread's main greenlet is, naming what each parked task waits for.
    std::string msg = "greenfiber: the hub has nothing left to run: ";
    msg += root_waiter_ == nullptr ? std::string("the main greenlet is suspended")
                                   : "the main greenlet waits for " + root_waiter_->description();
    msg += ", which nothing can complete (" + std::to_string(parked_) + " fiber" +
           (parked_ == 1 ? "" : "s") + " parked, no timer, no I/O, no hub_handle held)";
    std::string tasks;
    try {
        tasks = parked_tasks_report();
    } catch (...) {
        // Out of memory: the first line alone.
    }
    if (!tasks.empty()) msg += "; parked tasks:" + tasks;
    greenlet main = loop_.parent();
    (void)main.throw_in(loop_exit(msg));
}

void hub::park(detail::waiter& w, void (*arm)(void*) noexcept, void* arg) {
    park_impl(w, arm, arg, true, loop_);
}

void hub::park_shielded(detail::waiter& w) {
    park_impl(w, nullptr, nullptr, false, loop_);
}

void hub::run_first(greenlet& target) {
    detail::waiter w{"its turn after an eager task started"};
    struct ctx {
        hub* h;
        detail::waiter* w;
    } c{this, &w};
    park_impl(
        w,
        [](void* p) noexcept {
            auto* c = static_cast<ctx*>(p);
            c->w->woken = true;
            c->h->ready_.push_front(*c->w);
        },
        &c, false, target);
}

void hub::park_impl(detail::waiter& w, void (*arm)(void*) noexcept, void* arg, bool cancellable,
                    greenlet& to, bool requeue) {
    detail::thread_state& ts = detail::this_thread();
    detail::greenlet_impl* self = ts.current;
    if (self == detail::access::impl(loop_)) {
        throw error(std::string("greenfiber: cannot wait for ") + w.what +
                    " on the hub itself: a callback must not suspend (spawn a task instead)");
    }
    if (reap_until_ != std::chrono::steady_clock::time_point{} && !self->is_main &&
        std::chrono::steady_clock::now() >= reap_until_) [[unlikely]] {
        // The hub is going away, and this fiber, killed (its parent is its killer during
        // the kill), still waits: it caught greenlet_exit. Back to the killer, which
        // reports it as a greenlet that did not die; it stays suspended here (a reported
        // leak) rather than keeping the thread from exiting. Resumed, it unwinds.
        value none;
        (void)detail::switch_value(self->parent, none);
        throw greenlet_exit{};
    }
    // A fiber unwinding an exception (a destructor waiting for its cleanup) or inside a
    // no_kill_scope waits shielded: a cancelled_error raised there would leave a noexcept
    // destructor (std::terminate). The request stays pending for the next wait.
    auto* task = cancellable && !no_kill_scope::active()
                     ? static_cast<detail::task_base*>(self->local)
                     : nullptr;
    if (task != nullptr && task->cancel_pending()) {
        // Raised only after a turn of the hub, as asyncio throws a cancellation in at the
        // task's next step: the ready fibers, timers and I/O go first, so a task that
        // catches everything in a loop around a wait cannot freeze its thread.
        detail::waiter turn{"its turn before a cancellation is raised"};
        park_impl(turn, nullptr, nullptr, false, to, true);
        task->raise_cancel();
    }
    w.fiber = self;
    w.since = now_;
    w.woken = false;
    w.cancelled = false;
    if (task != nullptr) task->started_.wait = &w;  // running: it left pending
    const bool root = self->is_main;
    if (root) root_waiter_ = &w;
    ++parked_;
    struct unpark {
        hub& h;
        detail::waiter& w;
        detail::task_base* task;
        bool root;
        detail::greenlet_impl* self;
        const char* was_parked_for;  // while parked, a user's switch to `self` is refused
        ~unpark() {
            --h.parked_;
            h.ready_.remove(w);
            if (task != nullptr) task->started_.wait = nullptr;
            if (root) h.root_waiter_ = nullptr;
            self->parked_for = was_parked_for;
        }
    } guard{*this, w, task, root, self, std::exchange(self->parked_for, w.what)};
    if (trace_ != nullptr) [[unlikely]]
        detail::trace_park(*trace_, w);
    if (&to == &loop_) [[likely]] {
        // The arm runs here, on the parking fiber's stack, before the switch: whatever it
        // starts completes only through the hub (a handler run by the reactor, a post from
        // another thread, a wake() into the ready queue), never before the fiber has left.
        if (requeue) {
            w.woken = true;
            ready_.push_back(w);
        } else if (arm != nullptr) {
            arm(arg);
        }
        suspend(self);
    } else {
        // Straight into a not-started task (run_first): its own slice.
        end_slice(self);
        begin_slice(detail::access::impl(to));
        if (requeue) {
            // Not reached: a yield parks towards the hub. Kept exact all the same.
            arm = [](void* p) noexcept { hub::current().wake(*static_cast<detail::waiter*>(p)); };
            arg = &w;
        }
        (void)to.switch_to_then(
            value(), arm != nullptr ? arm : [](void*) noexcept {}, arg);
    }
    if (w.cancelled && task != nullptr) task->raise_cancel();
}

// Inlined into both callers: suspend() is the yield's and every park's path.
GREENFIBER_ALWAYS_INLINE detail::greenlet_impl* hub::take_hand_off(
    detail::greenlet_impl* self) noexcept {
    detail::ready_entry* next = ready_.front();
    // A direct hand-off needs another suspended fiber, or a task's that can be given its
    // stack now (if it cannot, the hub starts it and fails the task). Fibers on small stacks
    // (stack.hpp, "Small stacks") neither start one (a stack's allocation, or the report of
    // its failure, runs on the hub's stack) nor are started so: a small-stack fiber is
    // started by the hub, which has then started its own greenlet, whose first start would
    // not fit on a small stack either. A callback runs on the hub's stack. Within the turn's budget
    // (the reactor is polled between turns), and not while ~hub reaps the fibers left. A fiber that
    // woke itself with nothing else ready (a lone yield_now) goes through the hub: the reactor gets
    // its turn, as asyncio's sleep(0) gives it.
    if (next == nullptr || next->is_callback() || next->fiber == self || turn_ran_ >= budget_ ||
        reap_until_ != std::chrono::steady_clock::time_point{} ||
        (next->fiber->ctx == nullptr &&
         (detail::on_small_stack(self) || detail::on_small_stack(next->fiber) ||
          !detail::prepare_start(next->fiber)))) [[unlikely]]
        return nullptr;
    ready_.pop_front();
    ++turn_ran_;
    return next->fiber;
}

void hub::suspend(detail::greenlet_impl* self) {
    if (detail::greenlet_impl* next = take_hand_off(self)) [[likely]] {
        hand_slice(self, next);
        value v;
        (void)detail::switch_value(next, v);
        return;
    }
    end_slice(self);
    value v;
    (void)detail::switch_value(detail::access::impl(loop_), v);
}

void hub::finish_fiber(detail::greenlet_impl* self) noexcept {
    // Only a fiber that would die into the hub: one killed by a greenlet_exit
    // (task_base::kill, ~hub) has its killer as its parent while it unwinds, and the kill
    // returns there; so does any other parent.
    if (self->parent != detail::access::impl(loop_)) return;
    detail::greenlet_impl* next = take_hand_off(self);
    if (next == nullptr) return;
    // The dying fiber's slice was ended by its task, which could still be named then
    // (task_base::finish): this is the other half of hand_slice(), the next fiber's.
    begin_slice(next);
    detail::finish_into(next);
}

namespace {

// A deadline for one park, in the waiting frame: the hub's timer heap links it from the
// arm callback on and the wait's own cleanup unlinks it, however the wait ends (woken,
// cancelled, killed), so nothing is allocated and nothing outlives the frame.
struct park_timer : detail::timer_node {
    park_timer(hub& hb, detail::waiter& wt, std::chrono::steady_clock::time_point when,
               void (*a)(void*) noexcept, void* a_arg) noexcept
        : h(&hb), w(&wt), deadline(when), arm(a), arm_arg(a_arg) {}
    park_timer(const park_timer&) = delete;
    park_timer& operator=(const park_timer&) = delete;

    hub* h;
    detail::waiter* w;
    std::chrono::steady_clock::time_point deadline;
    void (*arm)(void*) noexcept;
    void* arm_arg;
    bool timed_out = false;  // set by hub::fire_timers() when the deadline won
};

}  // namespace

void hub::add_timer(detail::timer_node& n, std::chrono::steady_clock::time_point when) noexcept {
    // Work while the heap is not empty: counted on the way from empty only, undone in
    // remove_timer() and fire_timers() when it empties again.
    if (timers_.empty()) io_.get_executor().on_work_started();
    timers_.push(n, when);  // the room was reserved before the park: no allocation here
}

void hub::remove_timer(detail::timer_node& n) noexcept {
    if (!n.linked()) return;
    timers_.remove(n);
    if (timers_.empty()) io_.get_executor().on_work_finished();
}

void hub::fire_timers() noexcept {
    const auto now = std::chrono::steady_clock::now();
    while (detail::timer_node* n = timers_.pop_due(now)) {
        auto& t = *static_cast<park_timer*>(n);
        if (t.w->woken) continue;  // woken this turn before its deadline came: not a timeout
        t.timed_out = true;
        if (trace_ != nullptr) [[unlikely]]
            detail::trace_timer(*trace_, *t.w);
        wake(*t.w);
    }
    if (timers_.empty()) io_.get_executor().on_work_finished();
}

bool hub::park_until(detail::waiter& w, std::chrono::steady_clock::time_point deadline,
                     void (*arm)(void*) noexcept, void* arg) {
    return park_until_impl(w, deadline, arm, arg, true);
}

bool hub::park_shielded_until(detail::waiter& w, std::chrono::steady_clock::time_point deadline) {
    return park_until_impl(w, deadline, nullptr, nullptr, false);
}

bool hub::park_until_impl(detail::waiter& w, std::chrono::steady_clock::time_point deadline,
                          void (*arm)(void*) noexcept, void* arg, bool cancellable) {
    ++timed_parks_;
    struct count {
        std::size_t& n;
        ~count() { --n; }
    } counted{timed_parks_};
    // Every park with a deadline links at most one node: with room for all of them the
    // insertion in the arm callback, which must not throw, cannot allocate.
    timers_.reserve(timed_parks_);
    park_timer t(*this, w, deadline, arm, arg);
    // However the park ends (woken, timed out, cancelled, killed while parked), the node
    // leaves the heap before this frame does.
    struct unlink {
        hub& h;
        park_timer& t;
        ~unlink() { h.remove_timer(t); }
    } guard{*this, t};
    // The arm callback runs once the fiber is parked (or just before its switch): it
    // touches only this hub's state, on this thread, so either place is right.
    park_impl(
        w,
        [](void* p) noexcept {
            auto* self = static_cast<park_timer*>(p);
            if (self->arm != nullptr) self->arm(self->arm_arg);
            self->h->add_timer(*self, self->deadline);
        },
        &t, cancellable, loop_);
    return !t.timed_out;
}

namespace {
// "sleep until +2.3 s": the time left, from the deadline in the sleeping frame.
std::string describe_sleep(const detail::waiter& w) {
    const auto& deadline =
        *static_cast<const std::chrono::steady_clock::time_point*>(w.describe_arg);
    const auto left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now());
    char buf[64];
    std::snprintf(buf, sizeof buf, "sleep until +%.1f s", left.count() > 0 ? left.count() : 0.0);
    return buf;
}
}  // namespace

hub_stats hub::stats() const {
    hub_stats s;
    s.switches = switches_;
    s.ready = ready_.size();
    s.parked = parked_;
    s.timers = timed_parks_ + detail::loop_pending_timers_if_any();
    s.watchdog_reports = watchdog_reports_;
    s.stacks = stack_statistics();
    std::map<std::string_view, std::size_t> kinds;
    for (const detail::task_base* t : detail::task_base::all(const_cast<hub&>(*this))) {
        if (const detail::waiter* w = t->current_wait(); w != nullptr && !w->woken)
            ++kinds[w->what];
    }
    s.parked_by_kind.assign(kinds.begin(), kinds.end());
    std::stable_sort(s.parked_by_kind.begin(), s.parked_by_kind.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    return s;
}

void sleep_until(std::chrono::steady_clock::time_point deadline) {
    detail::waiter w{"a timer (sleep)"};
    w.describe = &describe_sleep;
    w.describe_arg = &deadline;
    (void)hub::current().park_until(w, deadline);
}

void sleep(std::chrono::steady_clock::duration d) {
    sleep_until(detail::deadline_after(d));
}

void detail::yield_shielded() {
    hub& h = hub::current();
    waiter w{"its turn (a last turn of the loop)"};
    h.park_impl(w, nullptr, nullptr, false, h.loop_, true);
}

void yield_now() {
    hub& h = hub::current();
    detail::waiter w{"its turn (yield_now)"};
    // The yield-only park: no arm callback (the waiter is queued inline), every other
    // semantic of park() kept (cancellation point, kill, parked_for, trace, watchdog).
    h.park_impl(w, nullptr, nullptr, true, h.loop_, true);
}

}  // namespace greenfiber
