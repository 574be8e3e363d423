// value.hpp: the move-only, type-erased value that a switch carries.

#include <greenfiber/value.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include <greenfiber/error.hpp>

#include "leak_check.hpp"

namespace {

using greenfiber::error;
using greenfiber::value;
using ::testing::HasSubstr;

class Value : public greenfiber::testing::leak_checked {};

// Records how many objects of it exist.
struct counted {
    static inline int live = 0;
    int n;
    explicit counted(int v) : n(v) { ++live; }
    counted(counted&& o) noexcept : n(o.n) { ++live; }
    counted(const counted&) = delete;
    ~counted() { --live; }
};

struct big {
    std::array<std::uint64_t, 8> words{};
};

struct throwing_move {  // small, but not nothrow-movable: must live on the heap
    int n;
    explicit throwing_move(int v) : n(v) {}
    throwing_move(throwing_move&& o) noexcept(false) : n(o.n) {}
};

struct alignas(64) over_aligned {
    int n;
};

std::string error_message(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const error& e) {
        return e.what();
    }
    return "(no greenfiber::error was thrown)";
}

// True when the object held by `v` lies inside `v` itself (no allocation).
template <class T>
bool stored_inline(const value& v) {
    const auto* obj = reinterpret_cast<const unsigned char*>(&v.get<T>());
    const auto* self = reinterpret_cast<const unsigned char*>(&v);
    return obj >= self && obj + sizeof(T) <= self + sizeof(value);
}

TEST_F(Value, DefaultConstructedValueIsEmpty) {
    value v;
    EXPECT_TRUE(v.empty());
    EXPECT_TRUE(v.type() == typeid(void));
    EXPECT_FALSE(v.is<int>());
    EXPECT_FALSE(v.is<value>());
}

TEST_F(Value, ValueHoldingAnIntIsNotEmpty) {
    value v(42);
    EXPECT_FALSE(v.empty());
    EXPECT_TRUE(v.type() == typeid(int));
    EXPECT_TRUE(v.is<int>());
    EXPECT_FALSE(v.is<long>());
    EXPECT_FALSE(v.is<unsigned>());
    EXPECT_EQ(v.get<int>(), 42);
    const value& c = v;
    EXPECT_EQ(c.get<int>(), 42);
    v.get<int>() = 43;
    EXPECT_EQ(v.get<int>(), 43);
}

TEST_F(Value, ZeroIsAValueNotNothing) {
    value zero(0);
    value none;
    EXPECT_FALSE(zero.empty());
    EXPECT_TRUE(none.empty());
    value null_ptr(static_cast<int*>(nullptr));
    EXPECT_FALSE(null_ptr.empty());
    EXPECT_EQ(null_ptr.get<int*>(), nullptr);
}

TEST_F(Value, StoredTypeIsDecayed) {
    value literal("abc");
    EXPECT_TRUE(literal.is<const char*>());
    EXPECT_STREQ(literal.get<const char*>(), "abc");
    const std::string s = "text";
    value copy(s);
    EXPECT_TRUE(copy.is<std::string>());
    EXPECT_EQ(copy.get<std::string>(), "text");
    EXPECT_EQ(s, "text");  // copied in, not moved from
}

TEST_F(Value, MoveOnlyTypesAreAccepted) {
    static_assert(!std::is_copy_constructible_v<std::unique_ptr<int>>);
    value v(std::make_unique<int>(7));
    ASSERT_TRUE(v.is<std::unique_ptr<int>>());
    EXPECT_EQ(*v.get<std::unique_ptr<int>>(), 7);
    std::unique_ptr<int> p = v.take<std::unique_ptr<int>>();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 7);
    EXPECT_TRUE(v.empty());
}

TEST_F(Value, SmallNothrowMovableValuesAreStoredInline) {
    int x = 5;
    EXPECT_TRUE(stored_inline<int>(value(42)));
    EXPECT_TRUE(stored_inline<int*>(value(&x)));
    using two_pointers = std::pair<void*, void*>;
    EXPECT_TRUE(stored_inline<two_pointers>(value(two_pointers(nullptr, &x))));
    value a(42);
    value b(std::move(a));
    value c;
    c = std::move(b);
    EXPECT_TRUE(stored_inline<int>(c));
    EXPECT_EQ(c.get<int>(), 42);
}

TEST_F(Value, LargeValuesLiveOnTheHeapAndMoveWithoutCopying) {
    EXPECT_FALSE(stored_inline<big>(value(big{})));
    EXPECT_FALSE(stored_inline<std::string>(value(std::string("heap"))));
    value a(big{{1, 2, 3, 4, 5, 6, 7, 8}});
    const big* where = &a.get<big>();
    value b;
    b = std::move(a);
    EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from values are empty
    EXPECT_EQ(&b.get<big>(), where);  // the pointer moved, not the object
    EXPECT_EQ(b.get<big>().words[7], 8u);

    const std::string long_text(100, 'x');
    value s(long_text);
    EXPECT_EQ(s.get<std::string>(), long_text);
    value s2(std::move(s));
    EXPECT_EQ(s2.get<std::string>(), long_text);
}

TEST_F(Value, SmallTypesWithThrowingMovesAndOverAlignedTypesWork) {
    value t(throwing_move(3));
    EXPECT_FALSE(stored_inline<throwing_move>(t));  // a move that may throw cannot be inline
    value t2(std::move(t));
    EXPECT_EQ(t2.get<throwing_move>().n, 3);

    value o(over_aligned{9});
    value o2(std::move(o));
    const over_aligned& ref = o2.get<over_aligned>();
    EXPECT_EQ(ref.n, 9);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&ref) % alignof(over_aligned), 0u);
}

TEST_F(Value, InPlaceConstructionBuildsTheObjectInside) {
    value v(std::in_place_type<std::vector<int>>, 3u, 7);
    ASSERT_TRUE(v.is<std::vector<int>>());
    EXPECT_EQ(v.get<std::vector<int>>(), (std::vector<int>{7, 7, 7}));
    value s(std::in_place_type<std::string>, 4u, 'z');
    EXPECT_EQ(s.get<std::string>(), "zzzz");
}

TEST_F(Value, HeldObjectIsDestroyedExactlyOnce) {
    ASSERT_EQ(counted::live, 0);
    {
        value v(std::in_place_type<counted>, 1);
        EXPECT_EQ(counted::live, 1);
        value w(std::move(v));
        EXPECT_EQ(counted::live, 1);
        w.reset();
        EXPECT_EQ(counted::live, 0);
        EXPECT_TRUE(w.empty());
        w.reset();  // resetting an empty value does nothing
        value x(std::in_place_type<counted>, 2);
        value y(std::in_place_type<counted>, 3);
        EXPECT_EQ(counted::live, 2);
        x = std::move(y);  // the old object of x is destroyed
        EXPECT_EQ(counted::live, 1);
        EXPECT_EQ(x.get<counted>().n, 3);
        value& same = x;
        x = std::move(same);  // self-move keeps the object
        EXPECT_EQ(counted::live, 1);
        EXPECT_EQ(x.get<counted>().n, 3);
    }
    EXPECT_EQ(counted::live, 0);
}

TEST_F(Value, TakeMovesTheObjectOutAndEmptiesTheValue) {
    value v(std::string("payload"));
    std::string s = v.take<std::string>();
    EXPECT_EQ(s, "payload");
    EXPECT_TRUE(v.empty());
    {
        value c(std::in_place_type<counted>, 5);
        counted out = c.take<counted>();
        EXPECT_EQ(out.n, 5);
        EXPECT_EQ(counted::live, 1);  // only `out`: the moved-from one was destroyed
    }
    EXPECT_EQ(counted::live, 0);
}

TEST_F(Value, GetOfTheWrongTypeThrowsErrorNamingBothTypes) {
    value v(42);
    const std::string msg = error_message([&] { (void)v.get<std::string>(); });
    EXPECT_THAT(msg, HasSubstr("int"));
    EXPECT_THAT(msg, HasSubstr("std::__cxx11::basic_string"));
    const value& c = v;
    EXPECT_THAT(error_message([&] { (void)c.get<double>(); }), HasSubstr("double"));
    EXPECT_EQ(v.get<int>(), 42);
}

TEST_F(Value, GetOnAnEmptyValueSaysItIsEmpty) {
    value v;
    const std::string msg = error_message([&] { (void)v.get<int>(); });
    EXPECT_THAT(msg, HasSubstr("empty"));
    EXPECT_THAT(msg, HasSubstr("int"));
}

TEST_F(Value, TakeOfTheWrongTypeThrowsAndLeavesTheValueUnchanged) {
    value v(std::make_unique<int>(3));
    const std::string msg = error_message([&] { (void)v.take<int>(); });
    EXPECT_THAT(msg, HasSubstr("unique_ptr"));
    EXPECT_THAT(msg, HasSubstr("int"));
    ASSERT_TRUE(v.is<std::unique_ptr<int>>());
    EXPECT_EQ(*v.get<std::unique_ptr<int>>(), 3);
}

TEST_F(Value, ValueIsMoveOnly) {
    static_assert(!std::is_copy_constructible_v<value>);
    static_assert(!std::is_copy_assignable_v<value>);
    static_assert(std::is_nothrow_move_constructible_v<value>);
    static_assert(std::is_nothrow_move_assignable_v<value>);
    static_assert(std::is_nothrow_default_constructible_v<value>);
    value a(std::string("moved"));
    value b(std::move(a));
    EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(b.get<std::string>(), "moved");
}

}  // namespace
