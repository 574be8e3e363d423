// generator.hpp: a generator built on switch (reference G65, G66).

#include <greenfiber/generator.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <greenfiber/greenlet.hpp>
#include <greenfiber/value.hpp>

#include "leak_check.hpp"

namespace {

using greenfiber::generator;
using greenfiber::greenlet;
using greenfiber::greenlet_exit;
using greenfiber::value;
using ::testing::Contains;

class Generator : public greenfiber::testing::leak_checked {};

struct on_destroy {
    std::vector<std::string>& out;
    std::string what;
    ~on_destroy() { out.push_back(what); }
};

// test_generator.py's g(n, seen): records each item before yielding it.
generator<int> g(int n, std::vector<int>& seen) {
    return generator<int>([n, &seen](auto& yield) {
        for (int i = 0; i < n; ++i) {
            seen.push_back(i);
            yield(i);
        }
    });
}

// test_generator_nested.py's perms(l), with nested generators.
generator<std::vector<int>> perms(std::vector<int> l) {
    return generator<std::vector<int>>([l = std::move(l)](auto& yield) {
        if (l.size() > 1) {
            for (int e : l) {
                std::vector<int> rest;
                std::copy_if(l.begin(), l.end(), std::back_inserter(rest),
                             [e](int x) { return x != e; });
                for (const std::vector<int>& p : perms(rest)) {
                    std::vector<int> item{e};
                    item.insert(item.end(), p.begin(), p.end());
                    yield(std::move(item));
                }
            }
        } else {
            yield(l);
        }
    });
}

// test_generator_nested.py's genlet on raw greenlets: Yield(v, level) hands `v` to the
// consumer `level` genlets up, and the next next() on that outer genlet resumes the inner
// one directly. generator<T> yields one level only, so this layer is built here on switch.
class genlet {
  public:
    template <class Fn>
    explicit genlet(Fn fn) : g_(std::move(fn)) {
        registry().push_back(this);
    }
    ~genlet() { std::erase(registry(), this); }
    genlet(const genlet&) = delete;
    genlet& operator=(const genlet&) = delete;

    std::optional<int> next() {
        value result;
        if (child_ != nullptr) {
            genlet* child = child_;
            while (child->child_ != nullptr) {
                genlet* tmp = child;
                child = child->child_;
                tmp->child_ = nullptr;
            }
            result = child->g_.switch_to();
        } else {
            g_.set_parent(greenlet::current());
            result = g_.switch_to();
        }
        if (g_.active()) return result.take<int>();
        return std::nullopt;
    }

    static genlet* of(const greenlet& g) {
        for (genlet* x : registry()) {
            if (x->g_ == g) return x;
        }
        return nullptr;
    }

    genlet* child_ = nullptr;

  private:
    static std::vector<genlet*>& registry() {
        static thread_local std::vector<genlet*> r;
        return r;
    }
    greenlet g_;
};

void yield_up(int v, int level = 1) {
    greenlet g = greenlet::current();
    while (level != 0) {
        if (genlet::of(g) == nullptr) throw std::runtime_error("yield outside a genlet");
        if (level > 1) genlet::of(g.parent())->child_ = genlet::of(g);
        g = g.parent();
        --level;
    }
    (void)g.switch_to(v);  // `g` is the consumer now: no handle to ourselves is held
}

// G65
TEST_F(Generator, EachItemIsProducedWhenAskedFor) {
    std::vector<int> seen;
    for (int k = 0; k < 3; ++k) {
        for (int j : g(5, seen)) seen.push_back(j);
    }
    std::vector<int> once{0, 0, 1, 1, 2, 2, 3, 3, 4, 4};
    std::vector<int> expected;
    for (int k = 0; k < 3; ++k) expected.insert(expected.end(), once.begin(), once.end());
    EXPECT_EQ(seen, expected);
}

// G66
TEST_F(Generator, LayeredGenletsYieldTwoLevelsUp) {
    std::vector<int> seen;
    auto gr1 = [](int n) {
        return [n] {
            for (int ii = 1; ii < n; ++ii) {
                yield_up(ii);
                yield_up(ii * ii, 2);
            }
        };
    };
    auto gr2 = [&](int n) {
        return [&seen, n, gr1] {
            genlet inner(gr1(n));
            while (std::optional<int> ii = inner.next()) seen.push_back(*ii);
        };
    };
    genlet outer(gr2(5));
    while (std::optional<int> ii = outer.next()) seen.push_back(*ii);
    EXPECT_EQ(seen, (std::vector<int>{1, 1, 2, 4, 3, 9, 4, 16}));
}

// G66
TEST_F(Generator, NestedGeneratorsGiveAllPermutations) {
    std::vector<std::vector<int>> permutations;
    for (auto& p : perms({0, 1, 2, 3})) permutations.push_back(p);
    EXPECT_EQ(permutations.size(), 24u);
    EXPECT_THAT(permutations, Contains(std::vector<int>{0, 1, 2, 3}));
    EXPECT_THAT(permutations, Contains(std::vector<int>{3, 2, 1, 0}));
    std::vector<std::vector<int>> sorted = permutations;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end());  // all distinct
}

// G66: zip() of two generators; the longer one is dropped part-way and killed.
TEST_F(Generator, TwoGeneratorsAdvanceInLockstep) {
    using perm = std::vector<int>;
    std::vector<std::pair<perm, perm>> res;
    {
        generator<perm> a = perms({0, 1, 2, 3});
        generator<perm> b = perms({0, 1, 2});
        for (;;) {
            std::optional<perm> x = a.next();
            if (!x) break;
            std::optional<perm> y = b.next();
            if (!y) break;
            res.emplace_back(std::move(*x), std::move(*y));
        }
    }
    EXPECT_EQ(res, (std::vector<std::pair<perm, perm>>{{{0, 1, 2, 3}, {0, 1, 2}},
                                                       {{0, 1, 3, 2}, {0, 2, 1}},
                                                       {{0, 2, 1, 3}, {1, 0, 2}},
                                                       {{0, 2, 3, 1}, {1, 2, 0}},
                                                       {{0, 3, 1, 2}, {2, 0, 1}},
                                                       {{0, 3, 2, 1}, {2, 1, 0}}}));
}

TEST_F(Generator, NothingRunsBeforeTheFirstNext) {
    std::vector<std::string> events;
    generator<int> gen([&](auto& yield) {
        events.push_back("body started");
        yield(1);
    });
    EXPECT_TRUE(events.empty());
    EXPECT_EQ(gen.next(), std::optional<int>(1));
    EXPECT_EQ(events, (std::vector<std::string>{"body started"}));
}

TEST_F(Generator, ExhaustedGeneratorKeepsReturningNothing) {
    std::vector<int> seen;
    generator<int> gen = g(2, seen);
    EXPECT_EQ(gen.next(), std::optional<int>(0));
    EXPECT_EQ(gen.next(), std::optional<int>(1));
    EXPECT_EQ(gen.next(), std::nullopt);
    EXPECT_EQ(gen.next(), std::nullopt);
    generator<int> nothing([](auto&) {});
    EXPECT_EQ(nothing.next(), std::nullopt);
    EXPECT_TRUE(nothing.begin() == nothing.end());
}

TEST_F(Generator, DroppingAGeneratorPartWayKillsItsBody) {
    std::vector<std::string> events;
    {
        generator<int> gen([&](auto& yield) {
            on_destroy d{events, "body unwound"};
            try {
                for (int i = 0;; ++i) yield(i);
            } catch (const greenlet_exit&) {
                events.push_back("greenlet_exit");
                throw;
            }
        });
        EXPECT_EQ(gen.next(), std::optional<int>(0));
        EXPECT_EQ(gen.next(), std::optional<int>(1));
        EXPECT_TRUE(events.empty());
    }
    EXPECT_EQ(events, (std::vector<std::string>{"greenlet_exit", "body unwound"}));
}

TEST_F(Generator, DroppingAnOuterGeneratorKillsTheNestedOnes) {
    std::vector<std::string> events;
    {
        generator<int> outer([&](auto& yield) {
            on_destroy d{events, "outer unwound"};
            generator<int> inner([&](auto& inner_yield) {
                on_destroy d2{events, "inner unwound"};
                for (int i = 0;; ++i) inner_yield(i);
            });
            for (int i : inner) yield(i * 10);
        });
        EXPECT_EQ(outer.next(), std::optional<int>(0));
        EXPECT_EQ(outer.next(), std::optional<int>(10));
    }
    EXPECT_EQ(events, (std::vector<std::string>{"inner unwound", "outer unwound"}));
}

TEST_F(Generator, ExceptionFromTheBodyPropagatesToNext) {
    generator<int> gen([](auto& yield) {
        yield(1);
        throw std::out_of_range("body failed");
    });
    EXPECT_EQ(gen.next(), std::optional<int>(1));
    try {
        (void)gen.next();
        ADD_FAILURE() << "nothing was raised";
    } catch (const std::out_of_range& e) {
        EXPECT_STREQ(e.what(), "body failed");
    }
    EXPECT_EQ(gen.next(), std::nullopt);
}

TEST_F(Generator, MoveOnlyItemsAreHandedOver) {
    generator<std::unique_ptr<int>> gen([](auto& yield) {
        for (int i = 1; i <= 3; ++i) yield(std::make_unique<int>(i * i));
    });
    std::vector<int> got;
    for (std::unique_ptr<int>& p : gen) got.push_back(*p);
    EXPECT_EQ(got, (std::vector<int>{1, 4, 9}));
}

TEST_F(Generator, TheAskingGreenletReceivesTheItem) {
    std::vector<int> seen;
    generator<int> gen = g(4, seen);
    std::vector<std::string> got;
    greenlet consumer([&] {
        got.push_back("consumer " + std::to_string(gen.next().value_or(-1)));
        greenlet p = greenlet::current().parent();
        (void)p.switch_to();
        got.push_back("consumer " + std::to_string(gen.next().value_or(-1)));
    });
    (void)consumer.switch_to();
    got.push_back("main " + std::to_string(gen.next().value_or(-1)));
    (void)consumer.switch_to();
    got.push_back("main " + std::to_string(gen.next().value_or(-1)));
    EXPECT_EQ(got, (std::vector<std::string>{"consumer 0", "main 1", "consumer 2", "main 3"}));
}

TEST_F(Generator, BodyRunsInAGreenletWithTheGivenOptions) {
    greenlet::options opts;
    opts.name = "numbers";
    opts.stack_size = 64 * 1024;
    std::vector<std::string> names;
    std::vector<std::size_t> sizes;
    generator<int> gen(
        [&](auto& yield) {
            names.push_back(greenlet::current().name());
            sizes.push_back(greenlet::current().stack_size());
            yield(1);
        },
        opts);
    EXPECT_EQ(gen.next(), std::optional<int>(1));
    EXPECT_EQ(names, (std::vector<std::string>{"numbers"}));
    ASSERT_EQ(sizes.size(), 1u);
    EXPECT_GE(sizes[0], 64u * 1024u);
}

}  // namespace
