#pragma once
// Helpers for the tests of the stack pool: settings put back after a test changed them.

#include <cstddef>

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

}  // namespace greenfiber::testing
