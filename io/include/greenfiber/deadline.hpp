#pragma once
/// \file
/// greenfiber::deadline, the absolute point in time that bounds a blocking call, and the
/// saturating conversion of durations to it.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <chrono>
#include <ratio>
#include <type_traits>

namespace greenfiber {

namespace detail {

/// `d` in steady_clock ticks, clamped to what a steady_clock::duration can hold: max() and
/// min() of any duration type (hours::max(), a huge double-based duration) do not overflow,
/// they saturate, as Asio's timers do. NaN becomes zero.
/// Switches: no.   Thread: any.
template <class Rep, class Period>
constexpr std::chrono::steady_clock::duration to_steady_duration(
    std::chrono::duration<Rep, Period> d) noexcept {
    using out = std::chrono::steady_clock::duration;
    // The ratio from `Period` to a tick, reduced: a tick count is count * num / den.
    using cf = std::ratio_divide<Period, out::period>;
    constexpr auto hi = out::max().count();
    constexpr auto lo = out::min().count();
    if constexpr (std::is_floating_point_v<Rep>) {
        const long double ticks = static_cast<long double>(d.count()) *
                                  static_cast<long double>(cf::num) /
                                  static_cast<long double>(cf::den);
        if (!(ticks == ticks)) return out::zero();  // NaN
        if (ticks >= static_cast<long double>(hi)) return out::max();
        if (ticks <= static_cast<long double>(lo)) return out::min();
        return out(static_cast<out::rep>(ticks));
    } else {
        // In 128 bits the product cannot overflow: |count| < 2^64 and num < 2^63.
        __extension__ using wide = __int128;
        const wide ticks =
            static_cast<wide>(d.count()) * static_cast<wide>(cf::num) / static_cast<wide>(cf::den);
        if (ticks >= static_cast<wide>(hi)) return out::max();
        if (ticks <= static_cast<wide>(lo)) return out::min();
        return out(static_cast<out::rep>(ticks));
    }
}

/// The point `d` after now on the steady clock, saturating: a duration too long for the
/// clock (duration::max(), hours::max()) gives time_point::max(), "practically never"; zero,
/// a negative duration or NaN gives now, a deadline that has passed. The conversion every
/// `*_for(duration)` overload and every duration-taking deadline goes through.
/// Switches: no.   Thread: any.
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(
    std::chrono::duration<Rep, Period> d) noexcept {
    using clock = std::chrono::steady_clock;
    const clock::time_point now = clock::now();
    const clock::duration ticks = to_steady_duration(d);
    if (ticks <= clock::duration::zero()) return now;
    // now + ticks without overflow: the room left before the clock's end.
    if (ticks >= clock::time_point::max() - now) return clock::time_point::max();
    return now + ticks;
}

}  // namespace detail

/// When a blocking call gives up: a point on the steady clock, or never. Converts implicitly
/// from a duration (relative to now, taken at the conversion) and from a time point, so a
/// call reads `sock.read_some(buf, 2s)` or `sock.read_some(buf, deadline_point)`. A duration
/// too long for the clock (hours::max()) means practically never; zero or a negative one, a
/// deadline that has already passed (see detail::deadline_after).
class deadline {
  public:
    /// The clock every deadline is on.
    using clock = std::chrono::steady_clock;

    /// No deadline.
    constexpr deadline() noexcept = default;
    /// At `at`. Implicit, so that a time_point can be passed where a deadline is taken.
    constexpr deadline(clock::time_point at) noexcept : at_(at), set_(true) {}  // NOLINT
    /// `in` from now, saturating (see the class comment). Implicit, so that `5s` can be
    /// passed where a deadline is taken.
    template <class Rep, class Period>
    deadline(std::chrono::duration<Rep, Period> in) noexcept  // NOLINT: implicit by design
        : at_(detail::deadline_after(in)), set_(true) {}

    /// No deadline: deadline{}, spelled out.
    static constexpr deadline never() noexcept { return {}; }

    /// Whether there is a deadline (false for never()).
    constexpr bool is_set() const noexcept { return set_; }
    /// Meaningful only when is_set().
    constexpr clock::time_point at() const noexcept { return at_; }

    /// The earlier of two deadlines.
    friend constexpr deadline earliest(deadline a, deadline b) noexcept {
        if (!a.set_) return b;
        if (!b.set_) return a;
        return a.at_ <= b.at_ ? a : b;
    }

  private:
    clock::time_point at_{};
    bool set_ = false;
};

}  // namespace greenfiber
