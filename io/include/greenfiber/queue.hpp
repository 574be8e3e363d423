#pragma once
/// \file
/// Fiber-aware queues with asyncio's Queue semantics (3.13, shutdown included):
/// queue<T> (FIFO), lifo_queue<T> and priority_queue<T, Compare>.
///
///     greenfiber::queue<std::string> q(8);         // at most 8 items; 0 = unbounded
///     q.put("job");                                // waits while the queue is full
///     std::string job = q.get();                   // waits while it is empty
///     q.task_done();                               // join() returns when all are done
///     if (auto item = q.get_for(100ms)) use(*item); // std::nullopt on timeout
///
/// Items are moved in and out, so move-only types work. put() and its variants take the
/// item by reference and move from it only when it is actually queued: after a timeout,
/// cancellation, queue_full or queue_shutdown the caller still has it.
///
/// Grants: an item that arrives while fibers wait in get() is promised to the longest
/// waiter, a slot that frees while fibers wait in put() to the longest putter; nobody else
/// can take it before that fiber runs. A promised fiber that is cancelled (or killed)
/// before it runs passes its promise on to the next waiter, or back to the queue: no item
/// and no slot is ever lost, and waiters are served FIFO.
///
/// The `*_for` waits take any duration type and saturate (detail::deadline_after):
/// hours::max() waits practically forever; zero or a negative duration does not wait.
///
/// Thread: thread-bound (fibers of one hub). A queue must outlive its waiters.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "greenfiber/error.hpp"
#include "greenfiber/hub.hpp"
#include "greenfiber/sync.hpp"

namespace greenfiber {

/// put_nowait() on a full queue (asyncio's QueueFull).
class queue_full : public error {
  public:
    using error::error;
};

/// get_nowait() on an empty queue (asyncio's QueueEmpty).
class queue_empty : public error {
  public:
    using error::error;
};

/// A put on a queue that was shut down, or a get on one that was shut down and is empty
/// (asyncio's QueueShutDown, 3.13).
class queue_shutdown : public error {
  public:
    using error::error;
};

namespace detail {

/// Storage policies: push() adds an item, pop() removes the next one out.
template <class T>
class fifo_store {
  public:
    template <class U>
    void push(U&& item) {
        c_.push_back(std::forward<U>(item));
    }
    T pop() {
        T item = std::move(c_.front());
        c_.pop_front();
        return item;
    }
    std::size_t size() const noexcept { return c_.size(); }
    void clear() noexcept { c_.clear(); }

  private:
    std::deque<T> c_;
};

template <class T>
class lifo_store {
  public:
    template <class U>
    void push(U&& item) {
        c_.push_back(std::forward<U>(item));
    }
    T pop() {
        T item = std::move(c_.back());
        c_.pop_back();
        return item;
    }
    std::size_t size() const noexcept { return c_.size(); }
    void clear() noexcept { c_.clear(); }

  private:
    std::vector<T> c_;
};

/// A binary heap whose top is the item that `comp` orders first (comp(a, b): a before b).
template <class T, class Compare>
class priority_store {
  public:
    explicit priority_store(Compare comp = Compare()) : comp_(std::move(comp)) {}
    template <class U>
    void push(U&& item) {
        c_.push_back(std::forward<U>(item));
        std::push_heap(c_.begin(), c_.end(), later());
    }
    T pop() {
        std::pop_heap(c_.begin(), c_.end(), later());
        T item = std::move(c_.back());
        c_.pop_back();
        return item;
    }
    std::size_t size() const noexcept { return c_.size(); }
    void clear() noexcept { c_.clear(); }

  private:
    /// std's heap puts the greatest on top; ours puts the one `comp_` orders first.
    auto later() {
        return [this](const T& a, const T& b) { return comp_(b, a); };
    }
    std::vector<T> c_;
    Compare comp_;
};

/// The queue itself, over a storage policy. See queue<T> for the documentation.
template <class T, class Store>
class basic_queue {
  public:
    using value_type = T;
    using time_point = std::chrono::steady_clock::time_point;
    using duration = std::chrono::steady_clock::duration;

    /// An empty queue holding at most `maxsize` items (0: unbounded). Switches: no.
    explicit basic_queue(std::size_t maxsize = 0, Store store = Store())
        : store_(std::move(store)), maxsize_(maxsize) {}
    basic_queue(const basic_queue&) = delete;
    basic_queue& operator=(const basic_queue&) = delete;

    // ---- put ----

    /// Adds `item` (moved from only once it is queued), waiting (FIFO) while the queue is
    /// full. Switches: only when it must wait.
    /// Throws: queue_shutdown; cancelled_error (then `item` was not queued); loop_exit.
    void put(T&& item) { (void)put_impl(std::move(item), nullptr); }
    void put(const T& item) requires std::copy_constructible<T> { (void)put_impl(item, nullptr); }

    /// put() that gives up at `deadline`: returns false if it passed first (then `item` is
    /// untouched). Switches: only when it must wait.   Throws: as put().
    [[nodiscard]] bool put_until(T&& item, time_point deadline) {
        return put_impl(std::move(item), &deadline);
    }
    [[nodiscard]] bool put_until(const T& item,
                                 time_point deadline) requires std::copy_constructible<T> {
        return put_impl(item, &deadline);
    }
    /// put_until(item, now + `timeout`).
    template <class Rep, class Period>
    [[nodiscard]] bool put_for(T&& item, std::chrono::duration<Rep, Period> timeout) {
        return put_until(std::move(item), detail::deadline_after(timeout));
    }
    template <class Rep, class Period>
    [[nodiscard]] bool put_for(const T& item, std::chrono::duration<Rep, Period> timeout) requires
        std::copy_constructible<T> {
        return put_until(item, detail::deadline_after(timeout));
    }

    /// Adds `item` without waiting. Switches: no.
    /// Throws: queue_full if there is no free slot (then `item` is untouched);
    /// queue_shutdown.
    void put_nowait(T&& item) { put_nowait_impl(std::move(item)); }
    void put_nowait(const T& item) requires std::copy_constructible<T> { put_nowait_impl(item); }

    // ---- get ----

    /// Removes and returns the next item, waiting (FIFO) while there is none.
    /// Switches: only when it must wait.
    /// Throws: queue_shutdown once the queue is shut down and empty (at once, or while
    /// waiting); cancelled_error (then no item was taken); loop_exit.
    T get() { return *get_impl(nullptr); }

    /// get() that gives up at `deadline`: std::nullopt if it passed first.
    /// Switches: only when it must wait.   Throws: as get().
    std::optional<T> get_until(time_point deadline) { return get_impl(&deadline); }
    /// get_until(now + `timeout`).
    template <class Rep, class Period>
    std::optional<T> get_for(std::chrono::duration<Rep, Period> timeout) {
        return get_until(detail::deadline_after(timeout));
    }

    /// Removes and returns the next item without waiting. Switches: no.
    /// Throws: queue_empty if there is none; queue_shutdown if there is none and the queue
    /// is shut down.
    T get_nowait() {
        if (has_item()) return take();
        if (shutdown_) throw_shutdown("get_nowait()");
        throw queue_empty("greenfiber: queue.get_nowait(): the queue is empty");
    }

    // ---- state ----

    /// Items a get() would find now (those promised to woken getters are not counted).
    /// Switches: no.
    std::size_t qsize() const noexcept { return store_.size() - get_granted_.size(); }
    /// Whether get_nowait() would throw. Switches: no.
    bool empty() const noexcept { return !has_item(); }
    /// Whether put_nowait() would throw queue_full (slots promised to woken putters count
    /// as taken). Always false when unbounded. Switches: no.
    bool full() const noexcept { return !has_slot(); }
    /// The bound given at construction (0: unbounded). Switches: no.
    std::size_t maxsize() const noexcept { return maxsize_; }

    ///@{
    /// The name that describes a wait on it (any_task::waiting_for(): "queue 'jobs' get
    /// (empty)"); "" by default. Switches: no.   Throws: std::bad_alloc (set_name).
    const std::string& name() const noexcept { return name_; }
    void set_name(std::string name) { name_ = std::move(name); }
    ///@}

    // ---- join ----

    /// Marks one item taken by get() as processed; when every item put has been, join()
    /// returns. Switches: no.
    /// Throws: greenfiber::error "task_done() called too many times".
    void task_done() {
        if (unfinished_ == 0)
            throw error("greenfiber: queue.task_done(): task_done() called too many times");
        if (--unfinished_ == 0) joiners_.signal_all();
    }

    /// Waits until every item put has been marked done (returns at once if none is
    /// pending). Switches: only when it must wait.   Throws: cancelled_error; loop_exit.
    void join() { (void)join_impl(nullptr); }
    /// join() that gives up at `deadline` (returns false). Switches: as join().
    bool join_until(time_point deadline) { return join_impl(&deadline); }
    /// join_until(now + `timeout`).
    template <class Rep, class Period>
    bool join_for(std::chrono::duration<Rep, Period> timeout) {
        return join_until(detail::deadline_after(timeout));
    }
    /// Items put and not yet marked done. Switches: no.
    std::size_t unfinished_tasks() const noexcept { return unfinished_; }

    // ---- shutdown ----

    /// Shuts the queue down (asyncio 3.13): every put, waiting or future, throws
    /// queue_shutdown; get() goes on returning the remaining items, then throws
    /// queue_shutdown, as do the fibers waiting in get(). With `immediate`, the remaining
    /// items are dropped first (each counts as done for join(); an item promised to a
    /// woken getter is dropped too and that getter throws queue_shutdown).
    /// Switches: no.
    void shutdown(bool immediate = false) {
        shutdown_ = true;
        if (immediate) {
            get_granted_.revoke_all();
            const std::size_t dropped = store_.size();
            store_.clear();
            unfinished_ = unfinished_ > dropped ? unfinished_ - dropped : 0;
            if (unfinished_ == 0) joiners_.signal_all();
        }
        getters_.signal_all();
        put_granted_.revoke_all();
        putters_.signal_all();
    }
    /// Whether shutdown() was called. Switches: no.
    bool is_shutdown() const noexcept { return shutdown_; }

  private:
    bool has_item() const noexcept { return store_.size() > get_granted_.size(); }
    bool has_slot() const noexcept {
        return maxsize_ == 0 || store_.size() + put_granted_.size() < maxsize_;
    }

    [[noreturn]] static void throw_shutdown(const char* op) {
        throw queue_shutdown(std::string("greenfiber: queue.") + op + ": the queue is shut down");
    }

    template <class U>
    void insert(U&& item) {
        store_.push(std::forward<U>(item));
        ++unfinished_;
        grant_getters();
    }

    T take() {
        T item = store_.pop();
        grant_putters();
        return item;
    }

    /// Promises the items nobody else may take to the longest-waiting getters.
    void grant_getters() noexcept {
        while (!getters_.empty() && has_item()) getters_.signal_front(true, &get_granted_);
    }
    /// Promises the free slots to the longest-waiting putters.
    void grant_putters() noexcept {
        if (shutdown_) return;
        while (!putters_.empty() && has_slot()) putters_.signal_front(true, &put_granted_);
    }

    template <class U>
    void put_nowait_impl(U&& item) {
        if (shutdown_) throw_shutdown("put_nowait()");
        if (!has_slot()) throw queue_full("greenfiber: queue.put_nowait(): the queue is full");
        insert(std::forward<U>(item));
    }

    template <class U>
    bool put_impl(U&& item, const time_point* deadline) {
        for (;;) {
            if (shutdown_) throw_shutdown("put()");
            if (has_slot()) {
                insert(std::forward<U>(item));
                return true;
            }
            if (deadline != nullptr && deadline_passed(*deadline)) return false;
            sync_waiter sw("a free slot in a queue (put)");
            sw.w.describe = &describe_put;
            sw.w.describe_arg = this;
            bool signalled;
            try {
                signalled = wait_in(putters_, sw, deadline);
            } catch (...) {
                // A slot was promised to us, but we will not use it: pass it on.
                if (sw.granted) grant_putters();
                throw;
            }
            if (!signalled) return false;
            // Promised a slot (wait_in released the promise as it unlinked us, so
            // has_slot() holds), or woken by shutdown(): the loop sorts it out.
        }
    }

    std::optional<T> get_impl(const time_point* deadline) {
        for (;;) {
            if (has_item()) return take();
            if (shutdown_) throw_shutdown("get()");
            if (deadline != nullptr && deadline_passed(*deadline)) return std::nullopt;
            sync_waiter sw("an item in a queue (get)");
            sw.w.describe = &describe_get;
            sw.w.describe_arg = this;
            bool signalled;
            try {
                signalled = wait_in(getters_, sw, deadline);
            } catch (...) {
                // An item was promised to us, but we will not take it: pass it on (it is
                // still in the queue, so it is never lost).
                if (sw.granted) grant_getters();
                throw;
            }
            if (!signalled) return std::nullopt;
            // Promised an item (wait_in released the promise as it unlinked us, so
            // has_item() holds), or woken by shutdown(): the loop sorts it out.
        }
    }

    bool join_impl(const time_point* deadline) {
        if (unfinished_ == 0) return true;
        if (deadline != nullptr && deadline_passed(*deadline)) return false;
        sync_waiter sw("a queue's unfinished tasks (join)");
        sw.w.describe = &describe_join;
        sw.w.describe_arg = this;
        return wait_in(joiners_, sw, deadline);
    }

    // A wait on it in words, from its state now (called only when someone asks).
    std::string label() const {
        return name_.empty() ? std::string("queue") : "queue '" + name_ + "'";
    }
    static std::string describe_get(const waiter& w) {
        return static_cast<const basic_queue*>(w.describe_arg)->label() + " get (empty)";
    }
    static std::string describe_put(const waiter& w) {
        const auto& q = *static_cast<const basic_queue*>(w.describe_arg);
        return q.label() + " put (full, " + std::to_string(q.store_.size()) + " of " +
               std::to_string(q.maxsize_) + ")";
    }
    static std::string describe_join(const waiter& w) {
        const auto& q = *static_cast<const basic_queue*>(w.describe_arg);
        return q.label() + " join (" + std::to_string(q.unfinished_) + " unfinished)";
    }

    std::string name_;
    Store store_;
    std::size_t maxsize_;
    std::size_t unfinished_ = 0;
    bool shutdown_ = false;
    wait_list getters_;      // fibers waiting for an item
    wait_list get_granted_;  // woken getters each promised an item still in store_
    wait_list putters_;      // fibers waiting for a slot
    wait_list put_granted_;  // woken putters each promised a slot
    wait_list joiners_;      // fibers in join()
};

}  // namespace detail

/// A FIFO queue for the fibers of one hub (asyncio's Queue). Bounded by `maxsize` (0:
/// unbounded). Members (all thread-bound):
///
///     put(item) / put_until / put_for / put_nowait     add (see the file comment on `item`)
///     get() / get_until / get_for / get_nowait         remove the next item
///     qsize() empty() full() maxsize()                  state
///     task_done() / join() / join_until / join_for      completion tracking
///     shutdown(immediate = false) / is_shutdown()       asyncio 3.13 shutdown
/// Each member's comment in detail::basic_queue gives its Switches/Throws lines.
template <class T>
class queue : public detail::basic_queue<T, detail::fifo_store<T>> {
  public:
    /// An empty queue of at most `maxsize` items (0: unbounded). Switches: no.
    explicit queue(std::size_t maxsize = 0)
        : detail::basic_queue<T, detail::fifo_store<T>>(maxsize) {}
};

/// A LIFO queue (asyncio's LifoQueue): get() returns the most recently put item.
/// Members as queue<T>. Thread: thread-bound.
template <class T>
class lifo_queue : public detail::basic_queue<T, detail::lifo_store<T>> {
  public:
    /// An empty queue of at most `maxsize` items (0: unbounded). Switches: no.
    explicit lifo_queue(std::size_t maxsize = 0)
        : detail::basic_queue<T, detail::lifo_store<T>>(maxsize) {}
};

/// A priority queue (asyncio's PriorityQueue): get() returns the item that `Compare`
/// orders first. Unlike std::priority_queue, `comp(a, b)` means "a comes out before b":
/// the default std::less returns the smallest first, as asyncio's (heapq) does; use
/// std::greater for the largest first. Members as queue<T>. Thread: thread-bound.
template <class T, class Compare = std::less<T>>
class priority_queue : public detail::basic_queue<T, detail::priority_store<T, Compare>> {
  public:
    /// An empty queue of at most `maxsize` items (0: unbounded) ordered by `comp`.
    /// Switches: no.
    explicit priority_queue(std::size_t maxsize = 0, Compare comp = Compare())
        : detail::basic_queue<T, detail::priority_store<T, Compare>>(
              maxsize, detail::priority_store<T, Compare>(std::move(comp))) {}
};

}  // namespace greenfiber
