#pragma once

#include <chrono>

namespace greenfiber {

// When a blocking call gives up: a point on the steady clock, or never. Converts implicitly
// from a duration (relative to now, taken at the conversion) and from a time point, so a
// call reads `sock.read_some(buf, 2s)` or `sock.read_some(buf, deadline_point)`.
class deadline {
  public:
    using clock = std::chrono::steady_clock;

    // No deadline.
    constexpr deadline() noexcept = default;
    constexpr deadline(clock::time_point at) noexcept : at_(at), set_(true) {}  // NOLINT
    template <class Rep, class Period>
    deadline(std::chrono::duration<Rep, Period> in)  // NOLINT: implicit by design
        : at_(clock::now() + std::chrono::duration_cast<clock::duration>(in)), set_(true) {}

    static constexpr deadline never() noexcept { return {}; }

    constexpr bool is_set() const noexcept { return set_; }
    // Meaningful only when is_set().
    constexpr clock::time_point at() const noexcept { return at_; }

    // The earlier of two deadlines.
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
