// Tasks: a function in its own fiber on the hub, with asyncio's Task semantics.

#include "greenfiber/task.hpp"

#include <algorithm>
#include <sstream>
#include <string>
#include <thread>

namespace greenfiber {
namespace detail {

namespace {

// The hub's list of unfinished tasks, per thread (tasks never change threads).
struct task_list {
    task_base* head = nullptr;
    std::uint64_t next_id = 1;
    // Finished tasks whose exception nobody retrieved yet (borrowed; removed when destroyed).
    std::vector<task_base*> unretrieved;
};
thread_local task_list tasks;

}  // namespace

task_base::task_base(hub& h, spawn_options opts, const std::type_info& fn_type)
    : hub_(&h),
      fiber_(greenlet([this] { body(); }, h.loop_greenlet(),
                      greenlet::options{opts.name, opts.stack_size})),
      name_(opts.name.empty() ? "task-" + std::to_string(tasks.next_id) : std::move(opts.name)),
      fn_type_(&fn_type),
      eager_(opts.eager) {
    ++tasks.next_id;
    fiber_impl_ = access::impl(fiber_);
    fiber_impl_->local = this;
    if (fiber_impl_->name.empty()) fiber_impl_->name = name_;
}

task_base::~task_base() {
    if (error_ && !retrieved_) {
        std::erase(tasks.unretrieved, this);
        report_unretrieved();
    }
}

void task_base::report_unretrieved() noexcept {
    retrieved_ = true;  // reported once
    try {
        hub_->report(
            {"greenfiber: task '" + name_ + "': exception was never retrieved", error_, nullptr});
    } catch (...) {
    }
}

void task_base::report_all_unretrieved() noexcept {
    std::vector<task_base*> list = std::move(tasks.unretrieved);
    tasks.unretrieved.clear();
    for (task_base* t : list) {
        if (!t->retrieved_) t->report_unretrieved();
    }
}

void task_base::start() {
    // The hub's reference: it owns the task until the task finishes.
    retain();
    next_ = tasks.head;
    if (next_ != nullptr) next_->prev_ = this;
    tasks.head = this;
    start_.fiber = fiber_impl_;
    if (eager_ && !hub_->in_hub()) {
        hub_->run_first(fiber_);
    } else {
        hub_->schedule(start_);
    }
}

std::string task_base::site() const {
    return type_name(*fn_type_);
}

void task_base::check_thread(const char* what) const {
    if (std::this_thread::get_id() == hub_->thread_id()) return;
    std::ostringstream os;
    os << "greenfiber: cannot " << what << " task '" << name_ << "' from thread "
       << std::this_thread::get_id() << ": it belongs to the hub of thread " << hub_->thread_id()
       << " (fibers never change threads; use hub::post)";
    throw error(os.str());
}

void task_base::body() noexcept {
    if (cancel_requests_ > 0) {
        // Cancelled before its first run: the function never runs.
        status_ = task_status::cancelled;
        finish();
        return;
    }
    status_ = task_status::running;
    try {
        invoke();
        status_ = task_status::done;
    } catch (const cancelled_error& e) {
        status_ = task_status::cancelled;
        if (cancel_message_.empty()) cancel_message_ = e.message();
    } catch (const greenlet_exit&) {
        // Killed (its hub is going away): it ends as cancelled.
        status_ = task_status::cancelled;
    } catch (...) {
        error_ = std::current_exception();
        status_ = task_status::done;
        try {
            tasks.unretrieved.push_back(this);
        } catch (...) {
            // Out of memory: the report still comes when the task is destroyed.
        }
    }
    finish();
}

void task_base::add_done_listener(done_listener& l) noexcept {
    l.prev = nullptr;
    l.next = listeners_;
    if (listeners_ != nullptr) listeners_->prev = &l;
    listeners_ = &l;
}

void task_base::remove_done_listener(done_listener& l) noexcept {
    if (l.prev == nullptr && l.next == nullptr && listeners_ != &l) return;  // not linked
    if (l.prev != nullptr) l.prev->next = l.next;
    if (l.next != nullptr) l.next->prev = l.prev;
    if (listeners_ == &l) listeners_ = l.next;
    l.prev = l.next = nullptr;
}

void task_base::finish() noexcept {
    // Done callbacks are queued before the waiters are woken: as in asyncio, where a
    // waiter's wake-up is itself a done callback added after the ones already there.
    for (auto& cb : callbacks_) hub_->call_soon(std::move(cb.fn));
    callbacks_.clear();
    while (waiter* w = done_waiters_.pop()) hub_->wake(*w);
    while (done_listener* l = listeners_) {
        remove_done_listener(*l);
        l->fn(*l, *this);
    }
    // Leave the hub's list and drop the hub's reference, last.
    if (prev_ != nullptr) prev_->next_ = next_;
    if (next_ != nullptr) next_->prev_ = prev_;
    if (tasks.head == this) tasks.head = next_;
    prev_ = next_ = nullptr;
    fiber_impl_->local = nullptr;
    release();
}

bool task_base::cancel(std::string message) {
    check_thread("cancel");
    if (done()) return false;
    ++cancel_requests_;
    if (!message.empty()) cancel_message_ = std::move(message);
    end_wait();
    return true;
}

void task_base::interrupt(std::exception_ptr e) {
    check_thread("interrupt");
    if (done() || !e) return;
    interrupt_ = std::move(e);
    end_wait();
}

void task_base::end_wait() noexcept {
    if (wait_ == nullptr || wait_->cancelled) return;
    waiter& w = *wait_;
    w.cancelled = true;
    if (w.on_cancel != nullptr) {
        w.on_cancel(w);
    } else {
        hub_->wake(w);
    }
}

void task_base::raise_cancel() {
    if (interrupt_) std::rethrow_exception(std::exchange(interrupt_, nullptr));
    throw cancelled_error(cancel_message_);
}

namespace {
// Links `w` into a task's done waiters for the duration of a wait.
struct done_link {
    done_link(waiter_queue& q, waiter& w) : q_(q), w_(w) { q_.push(&w_); }
    // Still linked when something else (stop(), a deadline, a cancellation) ended the wait.
    ~done_link() { q_.remove(&w_); }
    waiter_queue& q_;
    waiter& w_;
};
}  // namespace

void task_base::wait_done() {
    check_thread("wait for");
    if (done()) return;
    const std::string what = "task '" + name_ + "'";
    waiter w(what.c_str());
    wait_done_with(w);
}

void task_base::wait_done_with(waiter& w) {
    if (done()) return;
    if (current() == this) throw error("greenfiber: task '" + name_ + "' cannot wait for itself");
    done_link link(done_waiters_, w);
    hub_->park(w);
}

bool task_base::wait_done_until(std::chrono::steady_clock::time_point deadline) {
    check_thread("wait for");
    if (done()) return true;
    if (current() == this) throw error("greenfiber: task '" + name_ + "' cannot wait for itself");
    const std::string what = "task '" + name_ + "'";
    waiter w(what.c_str());
    done_link link(done_waiters_, w);
    return hub_->park_until(w, deadline) || done();
}

void task_base::check_result() {
    if (!done())
        throw invalid_state_error("greenfiber: task '" + name_ +
                                  "' has no result yet (it is not finished)");
    if (status_ == task_status::cancelled) throw cancelled_error(cancel_message_);
    if (error_) {
        retrieved_ = true;
        std::rethrow_exception(error_);
    }
}

std::exception_ptr task_base::exception() {
    if (!done())
        throw invalid_state_error("greenfiber: task '" + name_ +
                                  "' has no exception yet (it is not finished)");
    if (status_ == task_status::cancelled) throw cancelled_error(cancel_message_);
    retrieved_ = true;
    return error_;
}

std::uint64_t task_base::add_done_callback(detail::unique_function<void()> fn) {
    check_thread("add a done callback to");
    const std::uint64_t id = next_callback_id_++;
    if (done()) {
        hub_->call_soon(std::move(fn));
    } else {
        callbacks_.push_back({id, std::move(fn)});
    }
    return id;
}

std::size_t task_base::remove_done_callback(std::uint64_t id) noexcept {
    const auto n = callbacks_.size();
    std::erase_if(callbacks_, [id](const callback& c) { return c.id == id; });
    return n - callbacks_.size();
}

task_base* task_base::current() noexcept {
    if (tls == nullptr) return nullptr;
    return static_cast<task_base*>(tls->current->local);
}

std::vector<task_base*> task_base::all(hub&) {
    std::vector<task_base*> out;
    for (task_base* t = tasks.head; t != nullptr; t = t->next_) out.push_back(t);
    return out;
}

void task_base::destroy_all(hub&) noexcept {
    // Kill every unfinished task's fiber (greenlet_exit unwinds it and it finishes as
    // cancelled); a task that never started just ends.
    while (task_base* t = tasks.head) {
        t->retain();
        if (t->status_ == task_status::pending) {
            t->status_ = task_status::cancelled;
            t->finish();
        } else {
            greenlet f = std::move(t->fiber_);
        }
        if (tasks.head == t) {
            // It refused to finish: unlink it so that the loop ends (reported by the kill).
            t->finish();
        }
        t->release();
    }
}

}  // namespace detail

any_task current_task() noexcept {
    detail::task_base* t = detail::task_base::current();
    if (t != nullptr) t->retain();
    return any_task(t);
}

std::vector<any_task> all_tasks() {
    std::vector<any_task> out;
    for (detail::task_base* t : detail::task_base::all(hub::current())) {
        t->retain();
        out.push_back(any_task(t));
    }
    return out;
}

}  // namespace greenfiber
