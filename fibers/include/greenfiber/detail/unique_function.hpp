#pragma once
// Not API: a move-only std::function (std::move_only_function is C++23).

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace greenfiber::detail {

template <class Sig>
class unique_function;

template <class R, class... A>
class unique_function<R(A...)> {
  public:
    unique_function() noexcept = default;
    template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, unique_function>>>
    unique_function(F&& f)  // NOLINT: implicit, like std::function
        : p_(std::make_unique<impl<std::decay_t<F>>>(std::forward<F>(f))) {}

    R operator()(A... a) { return p_->call(std::forward<A>(a)...); }
    explicit operator bool() const noexcept { return p_ != nullptr; }

  private:
    struct base {
        virtual ~base() = default;
        virtual R call(A... a) = 0;
    };
    template <class F>
    struct impl final : base {
        explicit impl(F&& fn) : f(std::move(fn)) {}
        explicit impl(const F& fn) : f(fn) {}
        R call(A... a) override { return std::invoke(f, std::forward<A>(a)...); }
        F f;
    };
    std::unique_ptr<base> p_;
};

}  // namespace greenfiber::detail
