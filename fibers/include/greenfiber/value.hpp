#pragma once
/// \file
/// greenfiber::value, the move-only type-erased value that a switch passes between
/// greenlets.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <cstddef>
#include <new>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace greenfiber {

namespace detail {
[[noreturn]] void throw_bad_value_access(const std::type_info& held, const std::type_info& wanted);
/// A readable (demangled) name of `t`; "nothing" for typeid(void).
std::string type_name(const std::type_info& t);
}  // namespace detail

/// A move-only, type-erased value: what a switch passes between greenlets.
/// Unlike std::any it accepts move-only types (std::unique_ptr). A default-constructed
/// value is *empty*: that is what a switch with no argument delivers (greenlet's `()`),
/// distinct from any value of any type. Small nothrow-movable values (up to two
/// pointers) are stored inline, so passing an int or a pointer allocates nothing.
/// Thread: a value is a plain object; it is not synchronised.
class value {
  public:
    /// An empty value.
    value() noexcept = default;

    /// A value holding `v` (decayed), moved or copied in.
    template <class T, class D = std::decay_t<T>,
              class = std::enable_if_t<!std::is_same_v<D, value> &&
                                       !std::is_same_v<D, std::in_place_type_t<D>>>>
    value(T&& v) {  // NOLINT: implicit, so that `g.switch_to(42)` reads naturally.
        emplace<D>(std::forward<T>(v));
    }

    /// A value holding a T constructed in place from `args`.
    template <class T, class... Args>
    explicit value(std::in_place_type_t<T>, Args&&... args) {
        emplace<T>(std::forward<Args>(args)...);
    }

    ///@{
    /// Takes over what `other` holds; `other` is left empty. Switches: no.
    value(value&& other) noexcept { steal(other); }
    value& operator=(value&& other) noexcept {
        if (this != &other) {
            reset();
            steal(other);
        }
        return *this;
    }
    ///@}
    value(const value&) = delete;
    value& operator=(const value&) = delete;
    ~value() { reset(); }

    /// True when no object is held (a switch with no argument).
    bool empty() const noexcept { return ops_ == nullptr; }

    /// The held type, or typeid(void) when empty.
    const std::type_info& type() const noexcept { return ops_ ? ops_->type : typeid(void); }

    /// True when the held object is exactly a T.
    template <class T>
    bool is() const noexcept {
        return ops_ != nullptr && ops_->type == typeid(T);
    }

    ///@{
    /// The held T. Throws: greenfiber::error naming both types if the value holds no T.
    template <class T>
    T& get() & {
        if (!is<T>()) detail::throw_bad_value_access(type(), typeid(T));
        return *static_cast<T*>(address());
    }
    template <class T>
    const T& get() const& {
        if (!is<T>()) detail::throw_bad_value_access(type(), typeid(T));
        return *static_cast<const T*>(address());
    }
    ///@}

    /// Moves the held T out and leaves this value empty.
    /// Throws: greenfiber::error naming both types if the value holds no T (then unchanged).
    template <class T>
    T take() {
        T out(std::move(get<T>()));
        reset();
        return out;
    }

    /// Destroys the held object, if any.
    void reset() noexcept {
        if (ops_) {
            ops_->destroy(*this);
            ops_ = nullptr;
        }
    }

  private:
    struct ops_t {
        const std::type_info& type;
        bool on_heap;
        void (*move)(value& dst, value& src) noexcept;  // src's object into dst's storage
        void (*destroy)(value& v) noexcept;
    };

    template <class T>
    static constexpr bool inline_v =
        sizeof(T) <= 2 * sizeof(void*) &&
        alignof(T) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<T>;

    template <class T>
    static const ops_t* ops_for() noexcept {
        if constexpr (inline_v<T>) {
            static constexpr ops_t ops{
                typeid(T), false,
                [](value& dst, value& src) noexcept {
                    T* s = std::launder(reinterpret_cast<T*>(src.buf_));
                    ::new (static_cast<void*>(dst.buf_)) T(std::move(*s));
                    s->~T();
                },
                [](value& v) noexcept { std::launder(reinterpret_cast<T*>(v.buf_))->~T(); }};
            return &ops;
        } else {
            static constexpr ops_t ops{
                typeid(T), true, [](value& dst, value& src) noexcept { dst.heap_ = src.heap_; },
                [](value& v) noexcept { delete static_cast<T*>(v.heap_); }};
            return &ops;
        }
    }

    template <class T, class... Args>
    void emplace(Args&&... args) {
        static_assert(!std::is_reference_v<T> && !std::is_array_v<T>, "value holds objects");
        if constexpr (inline_v<T>) {
            ::new (static_cast<void*>(buf_)) T(std::forward<Args>(args)...);
        } else {
            heap_ = new T(std::forward<Args>(args)...);
        }
        ops_ = ops_for<T>();
    }

    /// Precondition: not empty.
    void* address() const noexcept {
        return ops_->on_heap ? heap_ : static_cast<void*>(const_cast<unsigned char*>(buf_));
    }

    void steal(value& other) noexcept {
        if (other.ops_) {
            other.ops_->move(*this, other);
            ops_ = other.ops_;
            other.ops_ = nullptr;
        }
    }

    const ops_t* ops_ = nullptr;
    union {
        alignas(std::max_align_t) unsigned char buf_[2 * sizeof(void*)];
        void* heap_;
    };
};

}  // namespace greenfiber
