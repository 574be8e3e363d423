#pragma once
// An intrusive, doubly linked list whose link type names the list. An object that can sit
// in two lists derives from two hooks with two tags, so which link belongs to which list is
// written in its type, and pushing an object that is already linked aborts instead of
// corrupting both lists. Not API.
//
// Thread: thread-bound (like everything it links).

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

namespace greenfiber::detail {

template <class T, class Tag, bool Counted = true>
class intrusive_list;

// The link of one list kind. Unlinked when constructed; the list unlinks it again.
template <class Tag>
class list_hook {
  public:
    list_hook() noexcept = default;
    list_hook(const list_hook&) = delete;
    list_hook& operator=(const list_hook&) = delete;

    // True while it is in a list of its kind.
    bool linked() const noexcept { return prev_ != nullptr; }

  private:
    template <class, class, bool>
    friend class intrusive_list;
    list_hook* prev_ = nullptr;  // Both null when unlinked.
    list_hook* next_ = nullptr;
};

// A FIFO of T (which derives from list_hook<Tag>) with O(1) push, pop and removal. It does
// not own its elements: each one must leave (remove()) before it is destroyed.
//
// `Counted`: it keeps its size (size()). A list that nobody asks for its size leaves the
// count out and is two pointers, for lists embedded in many small objects.
template <class T, class Tag, bool Counted>
class intrusive_list {
    using hook = list_hook<Tag>;

  public:
    intrusive_list() noexcept { head_.prev_ = head_.next_ = &head_; }
    intrusive_list(const intrusive_list&) = delete;
    intrusive_list& operator=(const intrusive_list&) = delete;

    bool empty() const noexcept { return head_.next_ == &head_; }
    std::size_t size() const noexcept requires Counted { return size_; }

    // Links `x` at the back. Aborts if it is linked already (in this list or another of
    // the same kind): that is a broken invariant, never a recoverable error.
    void push_back(T& x) noexcept {
        hook& h = x;
        if (h.linked()) linked_twice();
        h.prev_ = head_.prev_;
        h.next_ = &head_;
        head_.prev_->next_ = &h;
        head_.prev_ = &h;
        ++size_;
    }

    // Unlinks `x` if it is linked (it must then be linked in this list).
    void remove(T& x) noexcept {
        hook& h = x;
        if (!h.linked()) return;
        h.prev_->next_ = h.next_;
        h.next_->prev_ = h.prev_;
        h.prev_ = h.next_ = nullptr;
        --size_;
    }

    T* front() const noexcept { return empty() ? nullptr : cast(head_.next_); }

    T* pop_front() noexcept {
        T* x = front();
        if (x != nullptr) remove(*x);
        return x;
    }

    // Calls `fn(T&)` for each element, front to back. `fn` may remove the element it is
    // given, and no other.
    template <class Fn>
    void for_each(Fn&& fn) const {
        for (hook* h = head_.next_; h != &head_;) {
            hook* next = h->next_;
            fn(*cast(h));
            h = next;
        }
    }

  private:
    static T* cast(hook* h) noexcept { return static_cast<T*>(h); }
    static T* cast(const hook* h) noexcept { return static_cast<T*>(const_cast<hook*>(h)); }
    [[noreturn]] static void linked_twice() noexcept {
        std::fputs("greenfiber: internal error: an element was linked into a list twice\n", stderr);
        std::abort();
    }

    hook head_;  // Sentinel: the list is circular through it.
    // No count at all when not Counted (no_unique_address: it takes no room).
    struct no_count {
        void operator++() noexcept {}
        void operator--() noexcept {}
    };
    [[no_unique_address]] std::conditional_t<Counted, std::size_t, no_count> size_{};
};

}  // namespace greenfiber::detail
