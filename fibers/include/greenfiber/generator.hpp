#pragma once
/// \file
/// greenfiber::generator: a generator whose body runs in a greenlet of its own.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <iterator>
#include <optional>
#include <utility>

#include "greenfiber/greenlet.hpp"

namespace greenfiber {

/// A generator built on switch, as greenlet's documentation shows: the body runs in its
/// own greenlet and hands each item to whoever asks for the next one.
///
///     generator<int> count(int n) {
///         return generator<int>([n](auto& yield) { for (int i = 0; i < n; ++i) yield(i); });
///     }
///     for (int i : count(3)) ...
///
/// Each next() makes the asking greenlet the body's parent, so generators nest (a body may
/// iterate another generator). Dropping a generator part-way kills its body with
/// greenlet_exit: the destructors on its stack run.
/// Thread: thread-bound.
template <class T>
class generator {
  public:
    /// The body's handle for producing items.
    class yielder {
      public:
        /// Hands `item` to the consumer and suspends until the next item is asked for.
        /// Switches: yes.
        /// No handle is held across the switch, neither to the body's own greenlet nor to
        /// the consumer: dropping the generator must leave the body without handles, so that
        /// it is killed, even when the consumer is itself a generator's body.
        void operator()(T item) { (void)greenlet::switch_to_parent(value(std::move(item))); }
    };

    /// A generator whose body is `body(yielder&)`. Nothing runs until the first next().
    template <class Body>
    explicit generator(Body body, greenlet::options opts = {})
        : g_(
              [body = std::move(body)]() mutable {
                  yielder y;
                  body(y);
              },
              std::move(opts)) {}

    /// The next item, or nothing once the body has returned. An exception from the body
    /// propagates here. Switches: yes.
    std::optional<T> next() {
        if (g_.dead()) return std::nullopt;
        g_.set_parent(greenlet::current());
        value v = g_.switch_to();
        // Between items the body must not hold its consumer (a strong parent reference):
        // nested generators would form a cycle that no drop could break.
        if (!g_.dead()) g_.set_parent(root());
        if (v.empty()) return std::nullopt;
        return std::optional<T>(v.take<T>());
    }

    /// An input iterator over the items; equal to end() once the body has returned.
    /// Advancing it resumes the body. Switches: yes (operator++).
    class iterator {
      public:
        ///@{
        /// The standard iterator types: an input iterator over T.
        using iterator_category = std::input_iterator_tag;
        using value_type = T;
        using difference_type = std::ptrdiff_t;
        using pointer = T*;
        using reference = T&;
        ///@}

        iterator() = default;
        ///@{
        /// The current item / advance to the next one (resumes the body) / equal only at the end.
        /// Switches: operator++ yes.   Throws: what the body throws.
        T& operator*() { return *item_; }
        iterator& operator++() {
            item_ = gen_->next();
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& a, const iterator& b) {
            return !a.item_.has_value() && !b.item_.has_value();
        }
        ///@}

      private:
        friend class generator;
        explicit iterator(generator* g) : gen_(g), item_(g->next()) {}
        generator* gen_ = nullptr;
        std::optional<T> item_;
    };

    /// Starts (or continues) the iteration. Switches: yes.
    iterator begin() { return iterator(this); }
    /// The end of the iteration: an iterator past the last item. Switches: no.
    iterator end() { return iterator(); }

  private:
    static greenlet root() {
        greenlet g = greenlet::current();
        for (greenlet p = g.parent(); p; p = p.parent()) g = p.share();
        return g;
    }

    greenlet g_;
};

}  // namespace greenfiber
