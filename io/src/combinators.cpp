// gather, wait, as_completed, wait_for, timeout, task_group and pool: all built on a
// task's done entries, which fire in registration order among its done callbacks.

#include "greenfiber/combinators.hpp"

#include <algorithm>
#include <memory>
#include <string>

namespace greenfiber {
namespace detail {

namespace {

bool failed(task_base& t) {
    if (!t.done()) return false;
    return t.status() == task_status::cancelled || t.peek_exception() != nullptr;
}

// asyncio builds gather, wait and wait_for on a done callback per task, which counts the
// completions and, once the outcome is settled, completes an inner future whose own done
// callback wakes the awaiting task. The same two turns here: each task's done entry queues
// a completion callback on the hub in the entry's turn (at once for a task that is already
// finished, as add_done_callback does), and the callback that settles the outcome wakes the
// caller, which resumes one turn of the ready queue later. So what the callbacks registered
// before the caller queued has run when it returns, and the outcome (which task failed
// first) is the one the callbacks saw, in their order, as in asyncio.
class completions {
  public:
    enum class mode { wait, gather };

    completions(const std::vector<task_base*>& ts, mode m, return_when rw, waiter& w)
        : st_(std::make_shared<state>(w, ts, m, rw)), entries_(ts.size()) {
        for (std::size_t i = 0; i < ts.size(); ++i) {
            if (ts[i]->done()) {
                queue(st_, i);
                continue;
            }
            entries_[i].owner = this;
            entries_[i].index = i;
            entries_[i].l.context = &entries_[i];
            entries_[i].l.fn = [](done_listener& l, task_base&) noexcept {
                auto* e = static_cast<entry*>(l.context);
                queue(e->owner->st_, e->index);
            };
            ts[i]->add_done_entry(entries_[i].l);
        }
    }
    ~completions() {
        for (std::size_t i = 0; i < entries_.size(); ++i) {
            st_->ts[i]->remove_done_entry(entries_[i].l);
        }
        st_->w = nullptr;  // callbacks still queued find the caller gone
    }
    completions(const completions&) = delete;
    completions& operator=(const completions&) = delete;

    bool settled() const noexcept { return st_->settled; }
    // The index of the task whose failure settled a gather, or -1.
    int first_failure() const noexcept { return st_->first_failure; }

  private:
    // Shared by the caller's frame and its queued completion callbacks, which may run after
    // the caller left: then `w` is null and they do nothing.
    struct state {
        state(waiter& wt, const std::vector<task_base*>& t, mode md, return_when r)
            : w(&wt), ts(t), m(md), rw(r) {}
        waiter* w;                   // Borrowed: the caller's wait record, while it waits.
        std::vector<task_base*> ts;  // Borrowed while `w` is set: the caller holds handles.
        mode m;
        return_when rw;
        std::size_t processed = 0;
        int first_failure = -1;
        bool settled = false;

        void complete(std::size_t i) noexcept {
            if (w == nullptr || settled) return;
            ++processed;
            task_base& t = *ts[i];
            if (m == mode::gather) {
                if (failed(t)) {
                    first_failure = static_cast<int>(i);
                    settled = true;
                } else {
                    settled = processed == ts.size();
                }
            } else {
                settled = processed == ts.size() || rw == return_when::first_completed ||
                          (rw == return_when::first_exception && t.status() == task_status::done &&
                           t.peek_exception() != nullptr);
            }
            if (settled) hub::current().wake(*w);
        }
    };
    struct entry {
        done_listener l;
        completions* owner = nullptr;
        std::size_t index = 0;
    };
    static void queue(const std::shared_ptr<state>& st, std::size_t i) noexcept {
        hub::current().call_soon([st, i] { st->complete(i); });
    }

    std::shared_ptr<state> st_;
    std::vector<entry> entries_;  // linked in the unfinished tasks' done lists
};

}  // namespace

bool wait_tasks(const std::vector<task_base*>& ts, return_when rw,
                std::optional<time_point> deadline) {
    if (ts.empty()) return true;
    hub& h = hub::current();
    waiter w("tasks (wait/gather)");
    completions c(ts, completions::mode::wait, rw, w);
    while (!c.settled()) {
        if (!deadline) {
            h.park(w);
        } else if (!h.park_until(w, *deadline)) {
            return c.settled();
        }
    }
    return true;
}

int gather_wait(const std::vector<task_base*>& ts, gather_options opts) {
    if (ts.empty()) return -1;
    hub& h = hub::current();
    waiter w("tasks (gather)");
    completions c(ts, completions::mode::gather, return_when::all_completed, w);
    try {
        while (!c.settled()) h.park(w);
    } catch (const cancelled_error&) {
        // Cancelling the gather cancels every unfinished child (asyncio); once its outcome
        // is settled only the caller is cancelled (asyncio's outer future is done then).
        if (!c.settled()) {
            for (task_base* t : ts) t->cancel("the gather was cancelled");
        }
        throw;
    }
    const int f = c.first_failure();
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
        entries_[i].l.fn = [](done_listener& l, task_base&) noexcept {
            auto* e = static_cast<entry*>(l.context);
            e->q->finished_.push_back(e->index);
            e->q->waiting_.signal_all();
        };
        tasks_[i]->add_done_entry(entries_[i].l);
    }
}

completion_queue::~completion_queue() {
    for (std::size_t i = 0; i < tasks_.size(); ++i) tasks_[i]->remove_done_entry(entries_[i].l);
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
    hub& h = hub::current();
    // Waits for the cancelled task to finish, whatever the caller's own cancellation says.
    auto join_cancelled = [&] {
        waiter w("a cancelled task (wait_for)");
        completions c({&t}, completions::mode::wait, return_when::all_completed, w);
        while (!c.settled()) h.park_shielded(w);
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

task_group::task_group() : owner_(current_task()), self_(std::make_shared<task_group*>(this)) {}

task_group::~task_group() {
    // A join() that did not end (its fiber was killed in it) left tasks running: they are
    // joined here too, since their done entries point into this group.
    const bool was_joined = joined_;
    if (!was_joined || unsettled_ > 0) {
        try {
            cancel();
            join_impl(false, nullptr);
        } catch (...) {
            report_failure({"greenfiber: task_group: joining in its destructor failed",
                            std::current_exception(), nullptr, report_severity::error,
                            "task_group"});
        }
    }
    for (auto& e : tasks_) e->t.state()->remove_done_entry(e->l);
    *self_ = nullptr;  // completion turns still queued find the group gone
    if (was_joined) return;
    for (auto& e : errors_) {
        report_failure({"greenfiber: task_group destroyed without join(): a task failed", e,
                        nullptr, report_severity::error, "task_group"});
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
    ++unsettled_;
    if (state->done()) {
        on_done(e->l, *state);
    } else {
        state->add_done_entry(e->l);
    }
    tasks_.push_back(std::move(e));
}

void task_group::on_done(detail::done_listener& l, detail::task_base&) noexcept {
    // asyncio's TaskGroup handles a task's end in a done callback: one turn later, in the
    // task's turn among its callbacks. A sibling already woken then runs before it is
    // cancelled, and its own failure counts too.
    auto* e = static_cast<entry*>(l.context);
    hub::current().call_soon([self = e->g->self_, e] {
        if (*self != nullptr) (*self)->on_turn(*e);
    });
}

void task_group::on_turn(entry& e) noexcept {
    task_group* g = this;
    detail::task_base& t = *e.t.state();
    --unsettled_;
    if (t.status() == task_status::done && t.peek_exception() != nullptr) {
        const bool first = g->errors_.empty();
        g->errors_.push_back(t.exception());
        if (first) {
            for (auto& other : g->tasks_) other->t.cancel("a task in the group failed");
            // The owner is cancelled to stop what it does in the group's body; in join()
            // it is already waiting for the group.
            if (g->owner_ && !g->owner_.done() && !g->owner_in_join_) {
                g->cancelled_owner_ = true;
                g->owner_.cancel("a task in the group failed");
            } else if (g->owner_in_join_) {
                // asyncio cancels the parent in __aexit__ too, which wakes it to look again:
                // it returns now if every other end was handled already.
                g->joiners_.signal_all();
            }
        }
    }
    // join() returns once every end was handled (asyncio completes __aexit__'s future when
    // its set of tasks is empty), not at each.
    if (unsettled_ == 0) g->joiners_.signal_all();
}

std::size_t task_group::running() const noexcept {
    return static_cast<std::size_t>(
        std::count_if(tasks_.begin(), tasks_.end(), [](const auto& e) { return !e->t.done(); }));
}

void task_group::cancel() noexcept {
    for (auto& e : tasks_) e->t.cancel("the task group was cancelled");
}

void task_group::join() {
    join_impl(true, nullptr);
}

void task_group::join_after(std::exception_ptr body_error) {
    join_impl(true, std::move(body_error));
}

namespace {
bool is_cancellation(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const cancelled_error&) {
        return true;
    } catch (...) {
        return false;
    }
}
}  // namespace

void task_group::join_impl(bool throwing, std::exception_ptr body_error) {
    joined_ = true;
    const bool body_cancelled = body_error && is_cancellation(body_error);
    // A body that left with an exception aborts the group (asyncio's __aexit__): its tasks
    // are cancelled and joined, and further cancellations of the owner only wait longer.
    bool aborting = static_cast<bool>(body_error);
    if (aborting) cancel();
    bool outside_cancel = false;
    const bool owner_here = owner_ && current_task() == owner_;
    struct in_join {
        task_group& g;
        bool was;
        ~in_join() { g.owner_in_join_ = was; }
    } restore{*this, owner_in_join_};
    if (owner_here) owner_in_join_ = true;
    while (unsettled_ > 0) {
        detail::sync_waiter sw("the tasks of a task_group (join)");
        try {
            (void)detail::park_in(joiners_, sw, nullptr, aborting);
        } catch (const cancelled_error&) {
            if (cancelled_owner_) {
                // Our own cancellation of the owner: absorb it and keep joining.
                cancelled_owner_ = false;
                owner_.uncancel();
                continue;
            }
            // From outside: cancel the group, join it anyway, then leave cancelled.
            outside_cancel = true;
            aborting = true;
            cancel();
        }
    }
    for (auto& e : tasks_) e->t.state()->remove_done_entry(e->l);
    if (cancelled_owner_) {
        // The owner was cancelled by the group (and the body may have seen it): withdraw
        // the request, as asyncio's __aexit__ uncancels the parent.
        cancelled_owner_ = false;
        owner_.uncancel();
    }
    if (!throwing) return;
    // Failures come first, whatever cancelled the owner: the code that joins learns every
    // one of them, never a bare cancelled_error (asyncio raises the ExceptionGroup then).
    // A copy: every fiber that joins the group learns the failures.
    std::vector<std::exception_ptr> errors = errors_;
    if (body_error && !body_cancelled) errors.push_back(body_error);
    if (!errors.empty()) {
        const std::string what =
            "greenfiber: task_group: " + std::to_string(errors.size()) + " failure(s)";
        throw exception_group(what, std::move(errors));
    }
    if (body_cancelled) std::rethrow_exception(body_error);
    if (outside_cancel) throw cancelled_error("the task owning the group was cancelled");
}

// pool ---------------------------------------------------------------------------------------

pool::pool(std::size_t size) : size_(size == 0 ? 1 : size) {}

pool::~pool() {
    for (auto& e : tasks_) e->t.state()->remove_done_entry(e->l);
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
    state->add_done_entry(e->l);
    tasks_.push_back(std::move(e));
}

void pool::on_done(detail::done_listener& l, detail::task_base&) noexcept {
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
