// Tasks: a function in its own fiber on the hub, with asyncio's Task semantics.

#include "greenfiber/task.hpp"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>

#include "greenfiber/detail/trace_hooks.hpp"

namespace greenfiber {
namespace detail {

namespace {

// The thread's tasks (tasks never change threads). Both lists borrow their elements: a
// task leaves the live list when it finishes and the unretrieved list when its exception
// is retrieved, reported or it is destroyed, whichever comes first.
struct task_list {
    intrusive_list<task_base, live_tasks_tag> live;  // unfinished, oldest first
    intrusive_list<task_base, unretrieved_tag> unretrieved;
    std::uint64_t next_id = 1;
};
// The lists' heads point at themselves, so they cannot be constant-initialized, and a
// thread-local with a dynamic initializer is reached through its init wrapper and guard
// (__tls_get_addr, several times a task). The hot path reads a constinit pointer instead,
// initial-exec (one %fs-relative load: this library is linked, never dlopen'ed), set to
// the thread's lists on first use. task_list is trivially destructible: nothing to run at
// thread exit.
static_assert(std::is_trivially_destructible_v<task_list>);
thread_local task_list tasks_storage;
constinit thread_local task_list* tasks_ptr GREENFIBER_TLS_MODEL = nullptr;

[[gnu::noinline]] task_list& first_tasks() noexcept {
    return *(tasks_ptr = &tasks_storage);
}

task_list& this_thread_tasks() noexcept {
    task_list* t = tasks_ptr;
    return t != nullptr ? *t : first_tasks();
}

// A done callback: owned by its task while linked, freed when it fires (its function goes to
// the hub's ready queue in its turn) or is removed.
struct callback_entry : done_entry {
    callback_entry(std::uint64_t i, detail::unique_function<void()> f)
        : done_entry(&fire_callback), id(i), fn(std::move(f)) {}
    static void fire_callback(done_entry& self, task_base& t) noexcept {
        std::unique_ptr<callback_entry> cb(static_cast<callback_entry*>(&self));
        t.owner().call_soon(std::move(cb->fn));
    }
    std::uint64_t id;
    detail::unique_function<void()> fn;
};

bool is_callback(const done_entry& e) noexcept {
    return e.fire == &callback_entry::fire_callback;
}

// A default-initialized spawn_options (`spawn_options o;`) carries the location of its
// implicit constructor, which names no caller: such a site counts as not recorded.
std::source_location recorded_site(const std::source_location& at) noexcept {
    static const std::source_location implicit = [] {
        spawn_options o;
        return o.site;
    }();
    if (at.line() == implicit.line() && std::strcmp(at.file_name(), implicit.file_name()) == 0)
        return {};
    return at;
}

// Gives options without a name the default one, "task-N" (N: the thread's next task
// number), formatted once into the string's own buffer: no temporary, no allocation.
spawn_options& with_name(spawn_options& o) {
    if (o.name.empty()) {
        char buf[32] = "task-";
        const auto r = std::to_chars(buf + 5, buf + sizeof buf, this_thread_tasks().next_id);
        o.name.assign(buf, r.ptr);
    }
    return o;
}

}  // namespace

void done_wake::wake_it(done_entry& self, task_base& t) noexcept {
    t.owner().wake(*static_cast<done_wake&>(self).w);
}

namespace {

// What precedes a task allocated by task_base::operator new: its fiber's control block and
// the count of the two users of the storage (the task, the block). Both are touched on the
// task's thread only.
struct alignas(__STDCPP_DEFAULT_NEW_ALIGNMENT__) task_head {
    alignas(greenlet_impl) unsigned char block[sizeof(greenlet_impl)];
    std::uint32_t users = 1;  // the task; 2 once the block is constructed
};

// Every byte of a task's allocation stays resident for as long as the task is parked, so
// the sizes are locked in here (LP64 with libstdc++, where bench/RESULTS.md measures them,
// section "Issue 17, fourth round"): a field added to these grows every task. Put what
// most tasks never use in task_rare, what is used only while pending in the start entry's
// place, or raise the bound here with the measurement that justifies it.
static_assert(sizeof(void*) != 8 || sizeof(ready_entry) <= 24,
              "the start entry of every pending task: link, fiber or callback, flags");
static_assert(sizeof(void*) != 8 || sizeof(waiter) <= 72);
static_assert(sizeof(void*) != 8 || sizeof(intrusive_list<done_entry, done_tag, false>) <= 16);
static_assert(sizeof(void*) != 8 || sizeof(greenlet_impl) <= 168);
static_assert(sizeof(void*) != 8 || sizeof(task_head) <= 176);
static_assert(sizeof(void*) != 8 || sizeof(task_base) <= 152,
              "a parked task's control block: see the note above");
static_assert(sizeof(task_value<void>) == sizeof(task_base), "a void task keeps no result");

task_head* head_of(void* task) noexcept {
    return static_cast<task_head*>(task) - 1;
}

void drop_user(task_head* h) noexcept {
    if (--h->users == 0) {
        h->~task_head();
        ::operator delete(h);
    }
}

// greenlet_impl::dispose of a block in a task's head.
void dispose_block(greenlet_impl* g) noexcept {
    auto* h = reinterpret_cast<task_head*>(g);
    g->~greenlet_impl();
    drop_user(h);
}

}  // namespace

void* task_base::operator new(std::size_t size) {
    return ::new (::operator new(sizeof(task_head) + size)) task_head + 1;
}

void task_base::operator delete(void* p) noexcept {
    drop_user(head_of(p));
}

greenlet task_base::make_fiber(hub& h, spawn_options& opts, bool in_block) {
    run_base* run = ::new (static_cast<void*>(run_storage_)) fiber_run();
    // An eager start from a small stack would map the new stack and make the first switch
    // into it there (stack.hpp, "Small stacks": about 2 KiB, not counted in a declared
    // size): the task is scheduled instead, and the hub starts it from its own stack.
    if (opts.eager && on_small_stack(this_thread().current)) opts.eager = false;
    // An eager task is switched into from the spawner, where a failed start would reach the
    // hub: its stack comes now, so spawn() throws. The fiber has the task's name (in
    // messages, dumps, the overflow report).
    greenlet::options o{.name = std::move(with_name(opts).name),
                        .stack_size = opts.stack_size,
                        .eager_stack = opts.eager,
                        .small_stack = opts.small_stack};
    if (!in_block) return access::make(run, h.loop_greenlet(), std::move(o));
    // This is the allocation's object: the task_base subobject of a task_impl (single
    // inheritance) sits at its start, where operator new returned.
    task_head* head = head_of(this);
    ++head->users;
    try {
        return access::make_in(head->block, &dispose_block, run, h.loop_greenlet(), std::move(o));
    } catch (...) {
        // A block that was constructed has been disposed of (users back to 1); else undo.
        if (head->users == 2) --head->users;
        throw;
    }
}

task_base::task_base(hub& h, spawn_options&& opts, const task_types& types, bool in_block)
    : hub_(&h),
      fiber_(make_fiber(h, opts, in_block)),
      start_(),
      types_(&types),
      site_(recorded_site(opts.site)) {
    ++this_thread_tasks().next_id;
    fiber_impl_ = access::impl(fiber_);
    fiber_impl_->local = this;
}

task_base::~task_base() {
    // Its fiber outlives it (another handle) and never ran its function: unhook the function,
    // which lives here. A fiber that ran it has deleted it already (run is then null).
    if (fiber_ && fiber_impl_->run == static_cast<run_base*>(
                                          std::launder(reinterpret_cast<fiber_run*>(run_storage_))))
        fiber_impl_->run = nullptr;
    this_thread_tasks().live.remove(*this);
    this_thread_tasks().unretrieved.remove(*this);
    // A task is destroyed only once finished, which empties the list; whatever is left is a
    // callback it owns.
    while (done_entry* e = done_.pop_front()) {
        if (is_callback(*e)) delete static_cast<callback_entry*>(e);
    }
    if (status_ == task_status::pending) {
        // Never started (a member of the derived task threw as it was built): the entry was
        // never queued.
        start_.~ready_entry();
        return;
    }
    if (started_.error && !retrieved_) report_unretrieved();
    started_.~after_start();
}

task_rare& task_base::rare() {
    if (!rare_) rare_ = std::make_unique<task_rare>();
    return *rare_;
}

const std::string& task_base::no_string() noexcept {
    static const std::string none;
    return none;
}

void task_base::set_name(std::string name) {
    if (fiber_) {
        fiber_impl_->name = std::move(name);
    } else if (rare_ || !name.empty()) {
        rare().name = std::move(name);
    }
    if (hub_trace* tr = trace_of(*hub_)) [[unlikely]]
        trace_rename(*tr, fiber_impl_, this->name().c_str());
}

void task_base::mark_retrieved() noexcept {
    retrieved_ = true;
    this_thread_tasks().unretrieved.remove(*this);
}

void task_base::report_unretrieved() noexcept {
    mark_retrieved();  // reported once
    // Formatted on a stack of its own when the last handle goes on a small one (stack.hpp).
    detail::on_side_stack(
        [](void* p) noexcept {
            auto* t = static_cast<task_base*>(p);
            try {
                t->hub_->report({"greenfiber: task '" + t->name() + "' (spawned at " + t->site() +
                                     "): exception was never retrieved",
                                 t->started_.error, nullptr, report_severity::error, "task"});
            } catch (...) {
            }
        },
        this);
}

void task_base::report_all_unretrieved() noexcept {
    // Each report unlinks its task; a report handler may retrieve or drop others.
    while (task_base* t = this_thread_tasks().unretrieved.front()) {
        t->retain();  // the handler may drop the last handle
        t->report_unretrieved();
        t->release();
    }
}

std::size_t task_base::live_count() noexcept {
    return this_thread_tasks().live.size();
}

std::size_t task_base::unretrieved_count() noexcept {
    return this_thread_tasks().unretrieved.size();
}

void task_base::start(bool eager) {
    // The hub's reference: it owns the task until the task finishes.
    retain();
    this_thread_tasks().live.push_back(*this);
    start_.fiber = fiber_impl_;
    if (hub_trace* tr = trace_of(*hub_)) [[unlikely]]
        trace_spawn(*tr, fiber_impl_, name().c_str());
    if (eager && !hub_->in_hub()) {
        hub_->run_first(fiber_);
    } else {
        hub_->schedule(start_);
    }
}

void task_base::leave_pending(task_status s) noexcept {
    assert(status_ == task_status::pending && !start_.queued());
    start_.~ready_entry();
    ::new (static_cast<void*>(&started_)) after_start();
    status_ = s;
}

void task_base::fail_start(std::exception_ptr e) noexcept {
    leave_pending(task_status::done);
    started_.error = std::move(e);
    this_thread_tasks().unretrieved.push_back(*this);
    finish();
}

std::string format_site(const std::source_location& at, const std::type_info& fn) {
    if (at.line() == 0) return type_name(fn);
    return std::string(at.file_name()) + ":" + std::to_string(at.line()) + ":" + at.function_name();
}

std::string task_base::site() const {
    return format_site(site_, *types_->fn);
}

task_base* task_base::of_fiber(const greenlet_impl* fiber) noexcept {
    task_base* found = nullptr;
    this_thread_tasks().live.for_each([&](task_base& t) {
        if (t.fiber_impl_ == fiber) found = &t;
    });
    return found;
}

void task_base::check_thread(const char* what) const {
    if (std::this_thread::get_id() == hub_->thread_id()) return;
    std::ostringstream os;
    os << "greenfiber: cannot " << what << " task '" << name() << "' from thread "
       << std::this_thread::get_id() << ": it belongs to the hub of thread " << hub_->thread_id()
       << " (fibers never change threads; use hub::post)";
    throw error(os.str());
}

void task_base::body() noexcept {
    // finish() may free the task: what the hand-off needs is read first.
    hub* const h = hub_;
    greenlet_impl* const self = fiber_impl_;
    // Started by the hub, its entry was taken from the queue; started by a user's own switch
    // into its fiber, the entry is still queued, and must leave before its place changes
    // hands (one inline test in the usual case).
    hub_->ready_.remove(start_);
    if (cancel_requests_ > 0) {
        // Cancelled before its first run: the function never runs.
        leave_pending(task_status::cancelled);
        finish();
        h->finish_fiber(self);
        return;
    }
    leave_pending(task_status::running);
    try {
        invoke();
        status_ = must_cancel_ ? task_status::cancelled : task_status::done;
    } catch (const cancelled_error& e) {
        status_ = task_status::cancelled;
        if (cancel_message().empty() && !e.message().empty()) rare().cancel_message = e.message();
    } catch (const greenlet_exit&) {
        // Killed (its hub is going away): it ends as cancelled.
        status_ = task_status::cancelled;
    } catch (...) {
        started_.error = std::current_exception();
        status_ = task_status::done;
        this_thread_tasks().unretrieved.push_back(*this);
    }
    finish();
    // Straight into the next ready fiber if there is one: this frame, fiber_run::invoke's
    // and entry()'s hold nothing left to destroy (the catch blocks above have ended, and the
    // fiber's start value is empty), so the stack can be given back without unwinding them.
    // Otherwise it returns, and the fiber dies into the hub.
    h->finish_fiber(self);
}

void task_base::add_done_entry(done_entry& e) noexcept {
    done_.push_back(e);
}

void task_base::remove_done_entry(done_entry& e) noexcept {
    done_.remove(e);
}

void task_base::finish() noexcept {
    if (hub_trace* tr = trace_of(*hub_)) [[unlikely]]
        trace_finish(*tr, fiber_impl_,
                     started_.error                      ? 1
                     : status_ == task_status::cancelled ? 2
                                                         : 0);
    // One list, fired front to back: a callback is queued, a waiting fiber woken, a listener
    // called, each in the turn it registered (asyncio's awaiters are done callbacks too).
    // An entry is unlinked before it fires, so a listener may unlink any other entry.
    while (done_entry* e = done_.pop_front()) e->fire(*e, *this);
    // Leave the hub's list and drop the hub's reference, last. The watchdog's slice ends
    // here while the task can still be named (the hub may not see it again).
    this_thread_tasks().live.remove(*this);
    // It may be freed below, and it may hand the thread on without returning to the hub
    // that started it: the hub must not take it for a failed start after that.
    if (hub_->starting_ == this) hub_->starting_ = nullptr;
    if (tls != nullptr && tls->current == fiber_impl_) hub_->end_slice(fiber_impl_);
    fiber_impl_->local = nullptr;
    release();
}

bool task_base::cancel(std::string message) {
    check_thread("cancel");
    if (done()) return false;
    ++cancel_requests_;
    if (!message.empty()) rare().cancel_message = std::move(message);
    waiter* const w = wait_or_null();
    if (w == nullptr) must_cancel_ = true;  // raised at its next suspension, if any
    // Parked in get() on another task: that task is cancelled now, not when this one next
    // runs (asyncio cancels the awaited future inside Task.cancel()). Once: await_done()
    // must not pass it on again.
    if (w != nullptr && w->describe == &describe_get && !await_passed_) {
        await_passed_ = true;
        auto* inner = const_cast<task_base*>(static_cast<const task_base*>(w->describe_arg));
        (void)inner->cancel("the task waiting for it in get() was cancelled");
    }
    end_wait();
    return true;
}

void task_base::interrupt(std::exception_ptr e) {
    check_thread("interrupt");
    if (done() || !e) return;
    rare().interrupt = std::move(e);
    end_wait();
}

void task_base::end_wait() noexcept {
    waiter* const parked_in = wait_or_null();
    if (parked_in == nullptr || parked_in->cancelled) return;
    waiter& w = *parked_in;
    w.cancelled = true;
    if (w.on_cancel != nullptr) {
        w.on_cancel(w);
    } else {
        hub_->wake(w);
    }
}

void task_base::raise_cancel() {
    if (rare_ && rare_->interrupt) std::rethrow_exception(std::exchange(rare_->interrupt, nullptr));
    must_cancel_ = false;
    throw cancelled_error(cancel_message());
}

bool task_base::park_done(waiter& w, const std::chrono::steady_clock::time_point* deadline,
                          bool shielded) {
    done_wake e(w);
    add_done_entry(e);
    struct unlink {
        task_base& t;
        done_wake& e;
        ~unlink() { t.remove_done_entry(e); }
    } guard{*this, e};
    hub& h = hub::current();
    if (deadline != nullptr) {
        return shielded ? h.park_shielded_until(w, *deadline) : h.park_until(w, *deadline);
    }
    if (shielded) {
        h.park_shielded(w);
    } else {
        h.park(w);
    }
    return true;
}

std::string task_base::describe_get(const waiter& w) {
    // The caller's handle keeps the awaited task alive while the caller is parked here.
    return "get() of task '" + static_cast<const task_base*>(w.describe_arg)->name() + "'";
}

std::string task_base::describe_wait(const waiter& w) {
    return "wait() for task '" + static_cast<const task_base*>(w.describe_arg)->name() + "'";
}

void task_base::wait_for_done(bool get) {
    check_thread("wait for");
    if (done()) return;
    if (current() == this) throw error("greenfiber: task '" + name() + "' cannot wait for itself");
    waiter w("a task to finish (get/wait)");
    w.describe = get ? &describe_get : &describe_wait;
    w.describe_arg = this;
    while (!done()) (void)park_done(w, nullptr, false);
}

void task_base::await_done() {
    // While the caller (a task) is parked here, in the wait that describe_get describes, its
    // cancel() cancels this task at once and says so in await_passed_.
    task_base* const caller = current();
    struct awaiting {
        task_base* caller;
        ~awaiting() {
            if (caller != nullptr) caller->await_passed_ = false;
        }
    } mark{caller};
    if (caller != nullptr) caller->await_passed_ = false;
    try {
        wait_for_done(true);
    } catch (const cancelled_error&) {
        // Not passed on already by the caller's cancel() (a request that came before the
        // wait, or a cancellation raised after a turn of the hub): pass it on now.
        const bool passed_on = caller != nullptr && caller->await_passed_;
        if (caller != nullptr) caller->await_passed_ = false;
        if (!done() && !passed_on) cancel("the task waiting for it in get() was cancelled");
        if (!done()) {
            // asyncio's awaiter finishes only after what it awaited: wait, shielded.
            waiter w("a task cancelled with the get() waiting for it");
            while (!done()) (void)park_done(w, nullptr, true);
        }
        throw;
    }
}

void task_base::wait_done_with(sync_waiter& sw) {
    if (done()) return;
    if (current() == this) throw error("greenfiber: task '" + name() + "' cannot wait for itself");
    // Any wake-up ends this wait (run_until_complete's stop() wakes `sw.w` directly).
    (void)park_done(sw.w, nullptr, false);
}

bool task_base::wait_done_until(std::chrono::steady_clock::time_point deadline) {
    check_thread("wait for");
    if (done()) return true;
    if (current() == this) throw error("greenfiber: task '" + name() + "' cannot wait for itself");
    waiter w("a task to finish (get/wait)");
    w.describe = &describe_wait;
    w.describe_arg = this;
    while (!done() && park_done(w, &deadline, false)) {
    }
    return done();
}

void task_base::check_result() {
    if (!done())
        throw invalid_state_error("greenfiber: task '" + name() +
                                  "' has no result yet (it is not finished)");
    if (status_ == task_status::cancelled) throw cancelled_error(cancel_message());
    if (started_.error) {
        mark_retrieved();
        std::rethrow_exception(started_.error);
    }
}

std::exception_ptr task_base::exception() {
    if (!done())
        throw invalid_state_error("greenfiber: task '" + name() +
                                  "' has no exception yet (it is not finished)");
    if (status_ == task_status::cancelled) throw cancelled_error(cancel_message());
    mark_retrieved();
    return started_.error;
}

std::uint64_t task_base::add_done_callback(detail::unique_function<void()> fn) {
    check_thread("add a done callback to");
    const std::uint64_t id = next_callback_id_++;
    if (done()) {
        hub_->call_soon(std::move(fn));
    } else {
        done_.push_back(*new callback_entry(id, std::move(fn)));
    }
    return id;
}

std::size_t task_base::remove_done_callback(std::uint64_t id) noexcept {
    std::size_t n = 0;
    done_.for_each([&](done_entry& e) {
        if (n == 0 && is_callback(e) && static_cast<callback_entry&>(e).id == id) {
            done_.remove(e);
            delete static_cast<callback_entry*>(&e);
            ++n;
        }
    });
    return n;
}

task_base* task_base::current() noexcept {
    if (tls == nullptr) return nullptr;
    return static_cast<task_base*>(tls->current->local);
}

std::vector<task_base*> task_base::all(hub&) {
    std::vector<task_base*> out;
    out.reserve(this_thread_tasks().live.size());
    this_thread_tasks().live.for_each([&](task_base& t) { out.push_back(&t); });
    return out;
}

void task_base::destroy_all(hub&) noexcept {
    // Kill every unfinished task's fiber (greenlet_exit unwinds it and it finishes as
    // cancelled); a task that never started just ends.
    while (task_base* t = this_thread_tasks().live.front()) t->kill();
}

void task_base::kill() noexcept {
    if (done()) return;
    retain();
    if (status_ == task_status::pending) {
        // Its first run is queued (start()): take it out, or the hub would later switch
        // into the fiber of a finished task (finishing it twice), or pop the record from a
        // task already freed. An eager task's first run is not queued: nothing to remove.
        hub_->ready_.remove(start_);
        leave_pending(task_status::cancelled);
        finish();
    } else if (current() != this) {
        try {
            // The fiber may go with its handle.
            if (!fiber_impl_->name.empty()) rare().name = fiber_impl_->name;
        } catch (...) {
            // No memory for a copy: the killed task answers with an empty name.
        }
        greenlet f = std::move(fiber_);
    }
    if (!done() && list_hook<live_tasks_tag>::linked()) {
        // It refused to finish (reported by the kill; its fiber stays suspended): it ends as
        // cancelled, so that nobody waits for it.
        status_ = task_status::cancelled;
        finish();
    }
    release();
}

}  // namespace detail

bool any_task::parked() const noexcept {
    const detail::waiter* w = t_->current_wait();
    return w != nullptr && !w->woken;
}

std::string detail::task_base::waiting_for() const {
    const waiter* w = wait_or_null();
    if (w == nullptr || w->woken) return {};
    return w->description();
}

std::chrono::steady_clock::duration detail::task_base::waited() const noexcept {
    const waiter* w = wait_or_null();
    if (w == nullptr || w->woken) return {};
    const auto d = detail::coarse_now() - w->since;
    return d.count() > 0 ? d : std::chrono::steady_clock::duration{};
}

std::string any_task::waiting_for() const {
    return t_->waiting_for();
}

std::chrono::steady_clock::duration any_task::waited() const noexcept {
    return t_->waited();
}

namespace {

// The file's base name: a repr line stays short; site() has the whole path.
std::string_view base_name(std::string_view path) noexcept {
    const auto slash = path.find_last_of('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string to_string(const any_task& t) {
    if (!t) return "<task none>";
    const detail::task_base& s = *t.state();
    std::string out = "<task '" + s.name() + "' ";
    const detail::waiter* w = s.current_wait();
    const bool is_current = detail::task_base::current() == &s;
    switch (s.status()) {
        case task_status::pending:
            out += "pending";
            break;
        case task_status::parked:  // never from task_base::status(); told apart below
        case task_status::running:
            if (is_current) {
                out += "running";
            } else if (w != nullptr && !w->woken) {
                char waited[32];
                std::snprintf(waited, sizeof waited, "%.1fs",
                              std::chrono::duration<double>(t.waited()).count());
                out += "parked waiting=[" + t.waiting_for() + "] waited=" + waited;
            } else if (w != nullptr) {
                // Only the kind: once woken, what it waited on may be gone (an event destroyed
                // right after its set()), so the describer is not called.
                out += "ready woken-from=[" + std::string(w->what) + "]";
            } else {
                out += "suspended";
            }
            break;
        case task_status::done:
            if (std::exception_ptr e = s.peek_exception()) {
                out += "done exception=[" + exception_text(e) + "]";
            } else {
                out += "done result=" + (s.result_type() == typeid(void)
                                             ? std::string("void")
                                             : detail::type_name(s.result_type()));
            }
            break;
        case task_status::cancelled:
            out += "cancelled";
            if (!s.cancel_message().empty()) out += " message='" + s.cancel_message() + "'";
            break;
    }
    const std::source_location& at = s.spawned_at();
    if (at.line() != 0) {
        out += " spawned=";
        out += base_name(at.file_name());
        // Appended piecewise: ":" + to_string() inserts at the front, which g++ 12's
        // -Wrestrict misreads in release builds.
        out += ':';
        out += std::to_string(at.line());
    } else {
        out += " spawned=" + s.site();
    }
    out += ">";
    return out;
}

std::ostream& operator<<(std::ostream& os, const any_task& t) {
    return os << to_string(t);
}

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
