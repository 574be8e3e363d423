#include "greenfiber/hub_group.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <future>
#include <string>
#include <system_error>
#include <utility>

#include "greenfiber/sync.hpp"
#include "greenfiber/task.hpp"

namespace greenfiber {

namespace detail {

void hub_slot::launch(const std::shared_ptr<remote_control>& c, spawn_options opts,
                      unique_function<void()> body) noexcept {
    // Refused: `body` is destroyed on leaving, and its result_sender tells the caller
    // the task was cancelled before it ran.
    if (stopping || c->cancel_requested) return;
    try {
        task<void> t = spawn(std::move(opts), std::move(body));
        live.push_back({t.share(), c});
        c->entry = std::prev(live.end());
        c->linked = true;
        // Forgets the task once it has finished in any way, started or not: dropping the
        // handle then frees its function, and with it a result_sender that never sent.
        t.add_done_callback([this, c](auto&) { finished(*c); });
    } catch (...) {
        // Out of memory: the task, or its function, is dropped with the same effect.
        hub::current().report(
            {"greenfiber: hub_group: could not spawn a task on hub " + std::to_string(index),
             std::current_exception(), nullptr, report_severity::error, "hub_group"});
    }
}

void hub_slot::finished(remote_control& c) noexcept {
    if (!c.linked) return;
    c.linked = false;
    live.erase(c.entry);
    if (live.empty() && drained != nullptr) drained->set();
}

void hub_slot::cancel(remote_control& c) noexcept {
    c.cancel_requested = true;  // a task not launched yet never will be
    if (c.linked) (void)c.entry->task.cancel();
}

}  // namespace detail

hub_group::hub_group(std::size_t n, hub_group_options opts) : opts_(std::move(opts)) {
    if (n == 0) throw error("greenfiber: hub_group: a group needs at least one hub (n = 0)");
    slots_.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        slots_.push_back(std::make_unique<detail::hub_slot>());
        slots_.back()->index = i;
    }
    try {
        for (auto& s : slots_) {
            // Shared: the thread may still report through it after this loop moved on.
            auto started = std::make_shared<std::promise<hub_handle>>();
            std::future<hub_handle> ready = started->get_future();
            s->thread = std::thread([this, sp = s.get(), started] { thread_main(*sp, *started); });
            // The thread publishes its handle (and id) before it waits for work.
            hub_handle h = ready.get();
            std::lock_guard<std::mutex> lock(mu_);
            s->handle = std::move(h);
        }
    } catch (...) {
        stop(std::chrono::steady_clock::duration::zero());
        throw;
    }
}

hub_group::~hub_group() {
    try {
        stop(opts_.grace);
    } catch (...) {
        report_failure({"greenfiber: ~hub_group(): stopping the hubs", std::current_exception(),
                        nullptr, report_severity::error, "hub_group"});
    }
}

bool hub_group::stopped() const noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    return stopped_;
}

detail::hub_slot& hub_group::slot(std::size_t i) const {
    if (i >= slots_.size())
        throw error("greenfiber: hub_group: no hub " + std::to_string(i) + " (the group has " +
                    std::to_string(slots_.size()) + ")");
    return *slots_[i];
}

hub_handle hub_group::handle(std::size_t i) const {
    detail::hub_slot& s = slot(i);
    std::lock_guard<std::mutex> lock(mu_);
    return s.handle;
}

std::size_t hub_group::current_index() const noexcept {
    const auto me = std::this_thread::get_id();
    for (const auto& s : slots_) {
        if (s->id == me) return s->index;
    }
    return slots_.size();
}

hub_handle hub_group::post_launch(detail::hub_slot& s, std::shared_ptr<detail::remote_control> c,
                                  spawn_options opts, detail::unique_function<void()> body) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_ || !s.handle)
        throw hub_group_stopped("greenfiber: hub_group.spawn_on(" + std::to_string(s.index) +
                                "): the group is stopped; nothing was spawned");
    // The hub outlives the post while the group is not stopped: its thread waits for stop().
    const bool posted = s.handle.post(
        [sp = &s, c = std::move(c), o = std::move(opts), b = std::move(body)]() mutable {
            sp->launch(c, std::move(o), std::move(b));
        });
    if (!posted)
        throw hub_group_stopped("greenfiber: hub_group.spawn_on(" + std::to_string(s.index) +
                                "): the hub's thread has exited; nothing was spawned");
    return s.handle;
}

void hub_group::stop(std::chrono::steady_clock::duration grace) {
    if (current_index() != slots_.size())
        throw error("greenfiber: hub_group.stop(): called from hub " +
                    std::to_string(current_index()) +
                    " of the group itself, which would wait for its own thread; stop it from "
                    "a thread outside the group");
    std::vector<hub_handle> hs;
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopped_) return;
        stopped_ = true;
        for (auto& s : slots_) hs.push_back(std::move(s->handle));
    }
    for (std::size_t i = 0; i < hs.size(); ++i) {
        detail::hub_slot* sp = slots_[i].get();
        // A thread that never published its handle (it failed to start) has nothing to stop.
        if (!hs[i]) continue;
        (void)hs[i].post([sp, grace] {
            sp->stopping = true;
            sp->grace = grace;
            if (sp->stop_requested != nullptr) sp->stop_requested->set();
        });
        hs[i].reset();
    }
    for (auto& s : slots_) {
        if (s->thread.joinable()) s->thread.join();
    }
}

void hub_group::thread_main(detail::hub_slot& s, std::promise<hub_handle>& started) noexcept {
    try {
        hub& h = hub::current();
        event stop_requested;
        event drained;
        s.stop_requested = &stop_requested;
        s.drained = &drained;
        s.id = std::this_thread::get_id();
        started.set_value(h.keep_alive());
        // The thread's main greenlet waits here while the hub runs the tasks: the group's
        // handle on the hub keeps it from calling the wait hopeless until stop() posts.
        stop_requested.wait();
        const auto deadline = detail::deadline_after(s.grace);
        while (!s.live.empty() && drained.wait_until(deadline)) drained.clear();
        // Whatever runs now (spawned tasks and what they spawned) is cancelled and waited
        // for, boundedly; a task that swallows its cancellation is reported by name.
        detail::cancel_and_join_tasks(opts_.unwind);
        // The done callbacks of the tasks just ended forget them; then nothing is left.
        for (int round = 0; round < 64 && h.ready_count() > 0; ++round) detail::yield_shielded();
        s.stop_requested = nullptr;
        s.drained = nullptr;
        // Entries left (a task that outlived `unwind`) are dropped on this thread, before
        // its hub goes away and kills them.
        for (auto& e : s.live) e.control->linked = false;
        s.live.clear();
    } catch (...) {
        try {
            started.set_exception(std::current_exception());
        } catch (const std::future_error&) {
            // Already started: the failure is reported instead.
            report_failure(
                {"greenfiber: hub_group: hub " + std::to_string(s.index) + " failed while it ran",
                 std::current_exception(), nullptr, report_severity::error, "hub_group"});
        }
        s.stop_requested = nullptr;
        s.drained = nullptr;
        s.live.clear();
    }
}

}  // namespace greenfiber
