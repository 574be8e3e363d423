// gather, wait, as_completed, wait_for, timeout, task_group and pool: all built on task
// done listeners (synchronous hooks on the finishing fiber) that wake one parked waiter.

#include "greenfiber/combinators.hpp"

#include <algorithm>
#include <string>

namespace greenfiber {
namespace detail {

namespace {

void wake_context(task_base::done_listener& l, task_base&) noexcept {
    hub::current().wake(*static_cast<waiter*>(l.context));
}

bool failed(task_base& t) {
    if (!t.done()) return false;
    return t.status() == task_status::cancelled || t.peek_exception() != nullptr;
}

bool condition(const std::vector<task_base*>& ts, return_when rw) {
    switch (rw) {
        case return_when::all_completed:
            return std::all_of(ts.begin(), ts.end(), [](task_base* t) { return t->done(); });
        case return_when::first_completed:
            return std::any_of(ts.begin(), ts.end(), [](task_base* t) { return t->done(); });
        case return_when::first_exception:
            return std::all_of(ts.begin(), ts.end(), [](task_base* t) { return t->done(); }) ||
                   std::any_of(ts.begin(), ts.end(), [](task_base* t) {
                       return t->status() == task_status::done && t->peek_exception() != nullptr;
                   });
    }
    return true;
}

// Listeners on every unfinished task, waking `w`; unlinked on destruction.
class listening {
  public:
    listening(const std::vector<task_base*>& ts, waiter& w) : ts_(ts), ls_(ts.size()) {
        for (std::size_t i = 0; i < ts.size(); ++i) {
            if (ts[i]->done()) continue;
            ls_[i].fn = wake_context;
            ls_[i].context = &w;
            ts[i]->add_done_listener(ls_[i]);
        }
    }
    ~listening() {
        for (std::size_t i = 0; i < ts_.size(); ++i) ts_[i]->remove_done_listener(ls_[i]);
    }

  private:
    const std::vector<task_base*>& ts_;
    std::vector<task_base::done_listener> ls_;
};

}  // namespace

bool wait_tasks(const std::vector<task_base*>& ts, return_when rw,
                std::optional<time_point> deadline) {
    if (condition(ts, rw)) return true;
    hub& h = hub::current();
    waiter w("tasks (wait/gather)");
    listening l(ts, w);
    while (!condition(ts, rw)) {
        if (!deadline) {
            h.park(w);
        } else if (!h.park_until(w, *deadline)) {
            return condition(ts, rw);
        }
    }
    return true;
}

int gather_wait(const std::vector<task_base*>& ts, gather_options opts) {
    auto first_failure = [&]() -> int {
        for (std::size_t i = 0; i < ts.size(); ++i) {
            if (failed(*ts[i])) return static_cast<int>(i);
        }
        return -1;
    };
    auto settled = [&] {
        return first_failure() >= 0 ||
               std::all_of(ts.begin(), ts.end(), [](task_base* t) { return t->done(); });
    };
    hub& h = hub::current();
    if (!settled()) {
        waiter w("tasks (gather)");
        listening l(ts, w);
        try {
            while (!settled()) h.park(w);
        } catch (const cancelled_error&) {
            // Cancelling the gather cancels every unfinished child (asyncio).
            for (task_base* t : ts) t->cancel("the gather was cancelled");
            throw;
        }
    }
    const int f = first_failure();
    if (f >= 0 && opts.cancel_on_error) {
        for (task_base* t : ts) t->cancel("a sibling in the gather failed");
    }
    return f;
}

std::exception_ptr failure_of(task_base& t) {
    if (t.status() == task_status::cancelled) {
        try {
            t.check_result();
        } catch (const cancelled_error&) {
            return std::current_exception();
        }
    }
    return t.exception();
}

completion_queue::completion_queue(std::vector<task_base*> ts)
    : tasks_(std::move(ts)), entries_(tasks_.size()), remaining_(tasks_.size()) {
    for (std::size_t i = 0; i < tasks_.size(); ++i) {
        entries_[i].q = this;
        entries_[i].index = i;
        if (tasks_[i]->done()) {
            finished_.push_back(i);
            continue;
        }
        entries_[i].l.context = &entries_[i];
        entries_[i].l.fn = [](task_base::done_listener& l, task_base&) noexcept {
            auto* e = static_cast<entry*>(l.context);
            e->q->finished_.push_back(e->index);
            e->q->waiting_.signal_all();
        };
        tasks_[i]->add_done_listener(entries_[i].l);
    }
}

completion_queue::~completion_queue() {
    for (std::size_t i = 0; i < tasks_.size(); ++i) tasks_[i]->remove_done_listener(entries_[i].l);
}

std::size_t completion_queue::next(std::optional<time_point> deadline) {
    while (handed_ == finished_.size()) {
        sync_waiter sw("the next task to finish (as_completed)");
        if (!park_in(waiting_, sw, deadline ? &*deadline : nullptr) &&
            handed_ == finished_.size()) {
            throw timeout_error("greenfiber: as_completed: the timeout passed with " +
                                std::to_string(remaining_) + " task(s) unfinished");
        }
    }
    --remaining_;
    return finished_[handed_++];
}

void wait_for_or_cancel(task_base& t, time_point deadline, std::chrono::steady_clock::duration d) {
    if (t.done()) return;
    hub& h = hub::current();
    // Waits for the cancelled task to finish, whatever the caller's own cancellation says.
    auto join_cancelled = [&] {
        waiter w("a cancelled task (wait_for)");
        std::vector<task_base*> one{&t};
        listening l(one, w);
        while (!t.done()) h.park_shielded(w);
    };
    bool in_time;
    try {
        in_time = wait_tasks({&t}, return_when::all_completed, deadline);
    } catch (const cancelled_error&) {
        t.cancel("the task waiting for it (wait_for) was cancelled");
        join_cancelled();
        throw;
    }
    if (in_time) return;
    t.cancel("wait_for timed out");
    join_cancelled();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    throw timeout_error("greenfiber: wait_for: task '" + t.name() + "' did not finish within " +
                        std::to_string(ms) + " ms");
}

}  // namespace detail

timeout_scope::timeout_scope(std::chrono::steady_clock::time_point when)
    : when_(when), task_(current_task()) {
    if (!task_)
        throw error("greenfiber: timeout() needs a task (it works by cancelling the running task)");
    cancelling_at_entry_ = task_.cancelling();
    arm();
}

timeout_scope::~timeout_scope() {
    timer_.cancel();
}

void timeout_scope::arm() {
    timer_.cancel();
    timer_ = event_loop::current().call_at(when_, [this] {
        expired_ = true;
        task_.cancel("timeout");
    });
}

void timeout_scope::reschedule(std::chrono::steady_clock::time_point when) {
    if (expired_) throw error("greenfiber: timeout: cannot reschedule an expired timeout");
    when_ = when;
    arm();
}

void timeout_scope::leave() noexcept {
    if (std::exchange(left_, true)) return;
    timer_.cancel();
    // Expired, and the block returned or threw something else: withdraw our request
    // (asyncio's Timeout.__aexit__), so that it cannot hit the task's next wait.
    if (expired_) task_.uncancel();
}

void timeout_scope::leave_with_cancel() {
    if (std::exchange(left_, true)) return;
    timer_.cancel();
    if (expired_ && task_.uncancel() <= cancelling_at_entry_) {
        throw timeout_error("greenfiber: timeout: the deadline passed");
    }
}

timeout_guard::timeout_guard(std::chrono::steady_clock::duration d) : task_(current_task()) {
    if (!task_)
        throw error("greenfiber: timeout_guard needs a task (it interrupts the running task)");
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    timer_ = event_loop::current().call_later(d, [this, ms] {
        expired_ = true;
        task_.state()->interrupt(std::make_exception_ptr(
            timeout_error("greenfiber: timeout_guard: " + std::to_string(ms) + " ms passed")));
    });
}

timeout_guard::~timeout_guard() {
    timer_.cancel();
    if (expired_) (void)task_.state()->withdraw_interrupt();
}

// task_group -------------------------------------------------------------------------------

task_group::task_group() : owner_(current_task()) {}

task_group::~task_group() {
    if (joined_) return;
    try {
        cancel();
        join_impl(false);
    } catch (...) {
        report_failure({"greenfiber: task_group: joining in its destructor failed",
                        std::current_exception(), nullptr});
    }
    for (auto& e : errors_) {
        report_failure(
            {"greenfiber: task_group destroyed without join(): a task failed", e, nullptr});
    }
}

void task_group::check_open() const {
    if (joined_) throw error("greenfiber: task_group: cannot spawn into a group that was joined");
    if (!errors_.empty())
        throw error("greenfiber: task_group: cannot spawn into a group that has failed");
}

void task_group::add(any_task t) {
    auto e = std::make_unique<entry>();
    e->g = this;
    e->l.context = e.get();
    e->l.fn = &task_group::on_done;
    detail::task_base* state = t.state();
    e->t = std::move(t);
    if (state->done()) {
        on_done(e->l, *state);
    } else {
        state->add_done_listener(e->l);
    }
    tasks_.push_back(std::move(e));
}

void task_group::on_done(detail::task_base::done_listener& l, detail::task_base& t) noexcept {
    auto* e = static_cast<entry*>(l.context);
    task_group* g = e->g;
    if (t.status() == task_status::done && t.peek_exception() != nullptr) {
        const bool first = g->errors_.empty();
        g->errors_.push_back(t.exception());
        if (first) {
            for (auto& other : g->tasks_) other->t.cancel("a task in the group failed");
            if (g->owner_ && !g->owner_.done() && g->joiners_.empty()) {
                g->cancelled_owner_ = true;
                g->owner_.cancel("a task in the group failed");
            }
        }
    }
    g->joiners_.signal_all();
}

std::size_t task_group::running() const noexcept {
    return static_cast<std::size_t>(
        std::count_if(tasks_.begin(), tasks_.end(), [](const auto& e) { return !e->t.done(); }));
}

void task_group::cancel() noexcept {
    for (auto& e : tasks_) e->t.cancel("the task group was cancelled");
}

void task_group::join() {
    join_impl(true);
}

void task_group::join_impl(bool throwing) {
    joined_ = true;
    bool outside_cancel = false;
    while (running() > 0) {
        detail::sync_waiter sw("the tasks of a task_group (join)");
        try {
            (void)detail::park_in(joiners_, sw, nullptr, outside_cancel);
        } catch (const cancelled_error&) {
            if (cancelled_owner_) {
                // Our own cancellation of the owner: absorb it and keep joining.
                cancelled_owner_ = false;
                owner_.uncancel();
                continue;
            }
            // From outside: cancel the group, join it anyway, then leave cancelled.
            outside_cancel = true;
            cancel();
        }
    }
    for (auto& e : tasks_) e->t.state()->remove_done_listener(e->l);
    if (cancelled_owner_) {
        // The owner was cancelled by the group but never raised: withdraw the request.
        cancelled_owner_ = false;
        owner_.uncancel();
    }
    if (outside_cancel && throwing)
        throw cancelled_error("the task owning the group was cancelled");
    if (!errors_.empty() && throwing) {
        std::vector<std::exception_ptr> errors = std::move(errors_);
        errors_.clear();
        throw exception_group(
            "greenfiber: task_group: " + std::to_string(errors.size()) + " task(s) failed",
            std::move(errors));
    }
}

// pool ---------------------------------------------------------------------------------------

pool::pool(std::size_t size) : size_(size == 0 ? 1 : size) {}

pool::~pool() {
    for (auto& e : tasks_) e->t.state()->remove_done_listener(e->l);
}

std::unique_ptr<pool::entry> pool::wait_slot() {
    auto e = std::make_unique<entry>();
    tasks_.reserve(tasks_.size() + 1);  // add() cannot fail once the task exists
    if (busy_ < size_ && slot_waiters_.empty()) {
        ++busy_;
        return e;
    }
    detail::sync_waiter sw("a free slot in a pool");
    try {
        (void)detail::wait_in(slot_waiters_, sw, nullptr);
    } catch (...) {
        if (sw.granted) release_slot();  // given a slot, then cancelled: pass it on
        throw;
    }
    return e;  // release_slot() handed its slot over: busy_ already counts it
}

void pool::release_slot() noexcept {
    if (slot_waiters_.signal_front(true) == nullptr) --busy_;
}

void pool::add(std::unique_ptr<entry> e, any_task t) noexcept {
    e->p = this;
    e->l.context = e.get();
    e->l.fn = &pool::on_done;
    detail::task_base* state = t.state();
    e->t = std::move(t);
    ++running_;
    if (state->done()) {
        on_done(e->l, *state);
        return;
    }
    state->add_done_listener(e->l);
    tasks_.push_back(std::move(e));
}

void pool::on_done(detail::task_base::done_listener& l, detail::task_base&) noexcept {
    auto* e = static_cast<entry*>(l.context);
    pool* p = e->p;
    --p->running_;
    p->release_slot();
    if (p->running_ == 0) p->joiners_.signal_all();
    // The finished task's entry goes (its listener is already unlinked): a long-lived pool
    // holds only what runs.
    auto it = std::find_if(p->tasks_.begin(), p->tasks_.end(),
                           [e](const auto& x) { return x.get() == e; });
    if (it != p->tasks_.end()) {
        std::swap(*it, p->tasks_.back());
        p->tasks_.pop_back();
    }
}

void pool::join() {
    while (running_ > 0) {
        detail::sync_waiter sw("the tasks of a pool (join)");
        (void)detail::park_in(joiners_, sw);
    }
}

}  // namespace greenfiber
