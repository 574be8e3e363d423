#pragma once

// A way back to one thread's hub from any other thread, for state that must be touched only
// on its hub (a promise's waiters, the captures of an executor job), and that must not
// reach a hub that is already gone.

#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "greenfiber/hub.hpp"

namespace greenfiber::detail {

// A thread-safe weak handle on a hub: post() runs a function on the hub's thread while the
// hub exists and refuses once its thread is exiting. Shared (std::shared_ptr) by whatever
// needs to get back to the hub.
// Thread: thread-safe.
class hub_anchor {
  public:
    // The anchor of the calling thread's hub, creating the hub if there is none. On a thread
    // that is exiting (its hub being destroyed), an anchor that refuses every post().
    // Switches: no.   Thread: any (each thread gets its own).   Throws: std::bad_alloc.
    static std::shared_ptr<hub_anchor> current();

    explicit hub_anchor(hub* h) noexcept
        : h_(h), thread_(h != nullptr ? h->thread_id() : std::thread::id()) {}
    hub_anchor(const hub_anchor&) = delete;
    hub_anchor& operator=(const hub_anchor&) = delete;

    // Runs `fn()` on the hub's thread, on its stack (hub::post), and returns true; returns
    // false, leaving `fn` untouched, once the hub is going away. A posted function that the
    // hub never gets to run is destroyed on the hub's thread, with the hub's io_context.
    // Switches: no.   Thread: thread-safe.   Throws: std::bad_alloc (nothing is posted).
    template <class Fn>
    bool post(Fn&& fn) {
        std::lock_guard<std::mutex> lock(mu_);
        if (h_ == nullptr) return false;
        h_->post(std::forward<Fn>(fn));
        return true;
    }

    // Whether the caller runs on the hub's thread. Switches: no.   Thread: thread-safe.
    bool on_its_thread() const noexcept { return std::this_thread::get_id() == thread_; }

    // Counts one more hub_handle on the hub (it then waits instead of raising loop_exit);
    // nothing once the hub is going away. Switches: no.   Thread: thread-safe.
    void hold() noexcept {
        std::lock_guard<std::mutex> lock(mu_);
        ++holds_;
        if (h_ != nullptr) h_->hold();
    }
    // Undoes one hold(). Switches: no.   Thread: thread-safe.
    void unhold() noexcept {
        std::lock_guard<std::mutex> lock(mu_);
        --holds_;
        if (h_ != nullptr) h_->unhold();
    }

  private:
    struct holder;
    std::mutex mu_;
    hub* h_;  // Guarded by mu_. Borrowed; null from the moment the hub starts going away.
    // hub_handles on this anchor (guarded by mu_): released on the hub when it goes away,
    // so that its last turns (~hub cancels and joins its tasks) see no stale hold.
    std::size_t holds_ = 0;
    const std::thread::id thread_;
};

// One per thread. Constructed after the thread's hub (hub::current() is called first), and
// so destroyed before it: the anchor refuses posts before the hub's io_context goes away.
struct hub_anchor::holder {
    std::shared_ptr<hub_anchor> anchor;
    ~holder() {
        exited() = true;
        if (!anchor) return;
        std::lock_guard<std::mutex> lock(anchor->mu_);
        if (anchor->h_ != nullptr) {
            for (std::size_t i = 0; i < anchor->holds_; ++i) anchor->h_->unhold();
        }
        anchor->h_ = nullptr;
    }
    // Trivially destructible, so still readable while the thread's other thread_locals
    // (the hub's own shutdown among them) are destroyed.
    static bool& exited() noexcept {
        static thread_local bool gone = false;
        return gone;
    }
};

inline std::shared_ptr<hub_anchor> hub_anchor::current() {
    if (holder::exited()) return std::make_shared<hub_anchor>(nullptr);
    hub& h = hub::current();
    static thread_local holder hold;
    if (!hold.anchor) hold.anchor = std::make_shared<hub_anchor>(&h);
    return hold.anchor;
}

}  // namespace greenfiber::detail
