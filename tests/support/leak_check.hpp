#pragma once
// A fixture base that asserts nothing leaked: every test starts and ends with no live
// greenlet (other than main greenlets) and no stack out of the pool.

#include <gtest/gtest.h>

#include <cstddef>

namespace greenfiber::testing {

class leak_checked : public ::testing::Test {
  protected:
    void SetUp() override;
    void TearDown() override;

  private:
    std::size_t greenlets_before_ = 0;
    std::size_t stacks_before_ = 0;
};

}  // namespace greenfiber::testing
