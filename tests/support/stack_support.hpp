#pragma once
// Helpers for the tests of the stack pool: settings put back after a test changed them, and
// a probe of how deep a parked greenlet's stack is used after it parked.

#include <cstddef>
#include <cstdint>

#include <greenfiber/greenlet.hpp>
#include <greenfiber/stack.hpp>

namespace greenfiber::testing {

// Puts the process-wide pool settings back as they were, whatever the test did.
class pool_settings_scope {
  public:
    pool_settings_scope()
        : budget_(stack_statistics().guard_budget), default_size_(default_stack_size()) {}
    ~pool_settings_scope() {
        greenfiber::set_guard_policy(guard_policy::fallback_unguarded);
        greenfiber::set_guard_budget(budget_);
        greenfiber::set_default_stack_size(default_size_);
    }
    pool_settings_scope(const pool_settings_scope&) = delete;
    pool_settings_scope& operator=(const pool_settings_scope&) = delete;

  private:
    std::size_t budget_;
    std::size_t default_size_;
};

// Made while `g` is parked on its own stack: fills the dead part of that stack (below its
// saved context, above the canary word) with a pattern. What runs on the stack from then on
// (a wake-up, an unwinding) overwrites it from above; deepest() then says how far down the
// stack was used, counted from its top. The stack's bounds are kept: they stay valid after
// the greenlet died (a small stack's memory is never unmapped), until another fiber takes
// the stack. Uninstrumented, so that AddressSanitizer's poisoning of dead frames does not
// count as a write.
class stack_depth_probe {
  public:
    explicit stack_depth_probe(const detail::greenlet_impl* g)
        : lo_(static_cast<unsigned char*>(g->stack_lo)), top_(lo_ + g->stack_size) {
        fill(lo_ + sizeof(std::uintptr_t), static_cast<unsigned char*>(g->ctx) - 128);
    }
    // The bytes from the stack's top down to the lowest byte written since the fill.
    __attribute__((no_sanitize_address, noinline)) std::size_t deepest() const {
        const unsigned char* p = lo_ + sizeof(std::uintptr_t);
        while (p < end_ && *p == pattern) ++p;
        return static_cast<std::size_t>(top_ - p);
    }
    // Whether the deepest write left the lowest pattern byte (just above the canary) as it
    // was: the stack was used within its bounds, with nothing run off its end.
    bool stayed_inside() const { return deepest() < stack_bytes() - sizeof(std::uintptr_t); }
    std::size_t stack_bytes() const { return static_cast<std::size_t>(top_ - lo_); }

  private:
    static constexpr unsigned char pattern = 0xa5;
    __attribute__((no_sanitize_address, noinline)) void fill(unsigned char* from,
                                                             unsigned char* to) {
        end_ = to;
        for (volatile unsigned char* p = from; p < to; ++p) *p = pattern;
    }
    unsigned char* lo_;
    unsigned char* top_;
    unsigned char* end_ = nullptr;
};

}  // namespace greenfiber::testing
