// The umbrella header: everything in one include, and the type rules users rely on. (That each
// public header compiles alone is proved by tests/headers_alone.py: the test programs are
// compiled after a precompiled header of GoogleTest and Asio, which would hide a missing
// include.)

#include <greenfiber/greenfiber.hpp>

#include <gtest/gtest.h>

#include <exception>
#include <string>
#include <type_traits>

#include "leak_check.hpp"

namespace {

using greenfiber::greenlet;
using greenfiber::greenlet_exit;
using greenfiber::value;

// `catch (const std::exception&)` must not swallow a kill (reference §1.3).
static_assert(!std::is_base_of_v<std::exception, greenlet_exit>);
static_assert(!std::is_base_of_v<std::exception, greenfiber::cancelled_error>);
static_assert(!std::is_copy_constructible_v<greenfiber::task<int>>);
static_assert(std::is_base_of_v<std::logic_error, greenfiber::error>);
static_assert(!std::is_copy_constructible_v<value>);
static_assert(!std::is_copy_assignable_v<value>);
static_assert(std::is_nothrow_move_constructible_v<value>);
static_assert(!std::is_copy_constructible_v<greenlet>);
static_assert(!std::is_copy_assignable_v<greenlet>);
static_assert(std::is_nothrow_move_constructible_v<greenlet>);
static_assert(!std::is_convertible_v<greenlet, bool>);  // explicit operator bool only

class Headers : public greenfiber::testing::leak_checked {};

TEST_F(Headers, StdExceptionHandlerDoesNotCatchGreenletExit) {
    std::string caught_by;
    try {
        try {
            throw greenlet_exit("killed");
        } catch (const std::exception&) {
            caught_by = "std::exception";
        }
    } catch (const greenlet_exit& e) {
        caught_by = "greenlet_exit: " + e.message();
    }
    EXPECT_EQ(caught_by, "greenlet_exit: killed");
}

TEST_F(Headers, UmbrellaHeaderOffersEveryPart) {
    greenfiber::generator<int> gen([](auto& yield) { yield(1); });
    EXPECT_EQ(gen.next(), std::optional<int>(1));
    EXPECT_GE(greenfiber::default_stack_size(), 16u * 1024u);
    greenlet g([](int x) { return x + 1; });
    EXPECT_EQ(g.switch_to(1).get<int>(), 2);
}

}  // namespace
