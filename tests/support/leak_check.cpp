#include "leak_check.hpp"

#include <greenfiber/greenlet.hpp>
#include <greenfiber/stack.hpp>

namespace greenfiber::testing {

void leak_checked::SetUp() {
    greenlets_before_ = live_greenlets();
    stacks_before_ = stack_statistics().in_use;
}

void leak_checked::TearDown() {
    EXPECT_EQ(live_greenlets(), greenlets_before_) << "a greenlet leaked";
    EXPECT_EQ(stack_statistics().in_use, stacks_before_) << "a stack leaked";
}

}  // namespace greenfiber::testing
