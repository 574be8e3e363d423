#pragma once
// The hub's timers: a 4-ary min-heap of deadlines whose nodes live in the waiting frames
// (as the hub's waiter does), so a wait with a deadline allocates nothing. The heap's array
// holds each deadline beside its node pointer, so that sifting compares keys without touching
// the nodes (the frames are spread over the fibers' stacks: a cache miss each); a node holds
// only its index, rewritten whenever the heap moves it, which is what makes remove() O(log n).
// Equal deadlines come out in the order they went in (a sequence number breaks the tie).
// Not API.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace greenfiber::detail {

/// A deadline in a timer_heap: embedded in (or derived by) the record of the wait, which
/// outlives its stay in the heap: whoever owns the record removes it before it goes away.
struct timer_node {
    /// The index meaning "in no heap".
    static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();
    /// Where it is in its heap's array, or npos. Written by the heap only.
    std::size_t heap_index = npos;
    /// True while it is in a heap. Switches: no.
    bool linked() const noexcept { return heap_index != npos; }
};

/// A min-heap of timer_nodes by deadline, FIFO among equal deadlines. O(1) earliest,
/// O(log n) push, pop and remove; the array grows and never shrinks, so once it has been as
/// large as the most timers pending at once, nothing allocates.
/// Thread: thread-bound (the hub's own state; no locking).
class timer_heap {
  public:
    using time_point = std::chrono::steady_clock::time_point;

    timer_heap() = default;
    timer_heap(const timer_heap&) = delete;
    timer_heap& operator=(const timer_heap&) = delete;
    /// Forgets the nodes still in it without touching them: they may already be gone.
    ~timer_heap() = default;

    /// True when no timer is pending. Switches: no.
    bool empty() const noexcept { return heap_.empty(); }
    /// How many timers are pending. Switches: no.
    std::size_t size() const noexcept { return heap_.size(); }
    /// Makes room for `n` timers, so that push() up to that size cannot allocate.
    /// Switches: no.   Throws: std::bad_alloc.
    void reserve(std::size_t n) {
        if (n > heap_.capacity()) heap_.reserve(std::max(n, 2 * heap_.capacity()));
    }
    /// How many timers fit without allocating. Switches: no.
    std::size_t capacity() const noexcept { return heap_.capacity(); }

    /// The earliest deadline; only when not empty(). Switches: no.
    time_point earliest() const noexcept { return heap_.front().when; }
    /// The node with the earliest deadline (the first pushed among equals), or null when
    /// empty. Switches: no.
    timer_node* top() const noexcept { return heap_.empty() ? nullptr : heap_.front().node; }

    /// Adds `n`, which must not be linked, due at `when`. Allocates only beyond capacity().
    /// Switches: no.   Throws: std::bad_alloc (then `n` stays unlinked).
    void push(timer_node& n, time_point when) {
        heap_.push_back(entry{when, next_seq_++, &n});
        sift_up(heap_.size() - 1);
    }

    /// Removes `n` if it is linked (else does nothing). Switches: no.
    void remove(timer_node& n) noexcept {
        if (!n.linked()) return;
        const std::size_t i = n.heap_index;
        n.heap_index = timer_node::npos;
        const std::size_t last = heap_.size() - 1;
        if (i != last) {
            heap_[i] = heap_[last];
            heap_.pop_back();
            // The moved entry may belong above or below its new place.
            if (i > 0 && less(heap_[i], heap_[parent(i)])) {
                sift_up(i);
            } else {
                sift_down(i);
            }
        } else {
            heap_.pop_back();
        }
    }

    /// Removes and returns the node with the earliest deadline if that deadline is not
    /// after `now`; null otherwise. Switches: no.
    timer_node* pop_due(time_point now) noexcept {
        if (heap_.empty() || heap_.front().when > now) return nullptr;
        timer_node* n = heap_.front().node;
        remove(*n);
        return n;
    }

  private:
    static constexpr std::size_t arity = 4;

    struct entry {
        time_point when;
        std::uint64_t seq;  // the order of push(): the tie-break among equal deadlines
        timer_node* node;   // Borrowed: its owner removes it before it goes away
    };

    static bool less(const entry& a, const entry& b) noexcept {
        return a.when < b.when || (a.when == b.when && a.seq < b.seq);
    }
    static std::size_t parent(std::size_t i) noexcept { return (i - 1) / arity; }

    void place(std::size_t i, const entry& e) noexcept {
        heap_[i] = e;
        e.node->heap_index = i;
    }

    void sift_up(std::size_t i) noexcept {
        const entry e = heap_[i];
        while (i > 0) {
            const std::size_t p = parent(i);
            if (!less(e, heap_[p])) break;
            place(i, heap_[p]);
            i = p;
        }
        place(i, e);
    }

    void sift_down(std::size_t i) noexcept {
        const entry e = heap_[i];
        const std::size_t n = heap_.size();
        for (;;) {
            const std::size_t first = i * arity + 1;
            if (first >= n) break;
            const std::size_t end = first + arity < n ? first + arity : n;
            std::size_t best = first;
            for (std::size_t c = first + 1; c < end; ++c) {
                if (less(heap_[c], heap_[best])) best = c;
            }
            if (!less(heap_[best], e)) break;
            place(i, heap_[best]);
            i = best;
        }
        place(i, e);
    }

    std::vector<entry> heap_;
    std::uint64_t next_seq_ = 0;
};

}  // namespace greenfiber::detail
