// error.hpp: the misuse exception and the report handler.

#include <greenfiber/error.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <greenfiber/greenlet.hpp>

#include "leak_check.hpp"

namespace {

using greenfiber::error;
using greenfiber::failure_report;
using greenfiber::greenlet;
using greenfiber::report_handler;
using ::testing::HasSubstr;

class Error : public greenfiber::testing::leak_checked {};
class ReportHandler : public greenfiber::testing::leak_checked {};

// Installs a report handler for the scope and restores the previous one.
class report_scope {
  public:
    explicit report_scope(report_handler h) : prev_(greenfiber::set_report_handler(std::move(h))) {}
    ~report_scope() { greenfiber::set_report_handler(std::move(prev_)); }
    report_scope(const report_scope&) = delete;
    report_scope& operator=(const report_scope&) = delete;

  private:
    report_handler prev_;
};

TEST_F(Error, ErrorIsALogicErrorCarryingItsMessage) {
    static_assert(std::is_base_of_v<std::logic_error, error>);
    static_assert(std::is_base_of_v<std::exception, error>);
    try {
        throw error("greenfiber: the rule that was broken");
    } catch (const std::logic_error& e) {
        EXPECT_STREQ(e.what(), "greenfiber: the rule that was broken");
    }
    const error from_string(std::string("from a std::string"));
    EXPECT_STREQ(from_string.what(), "from a std::string");
}

TEST_F(Error, MisuseThrowsErrorNamingTheObjectAndTheRule) {
    greenlet g([] {}, greenlet::options{"misused", 0});
    try {
        g.set_parent(g);
        ADD_FAILURE() << "no error";
    } catch (const std::logic_error& e) {  // caught as its base
        EXPECT_THAT(e.what(), HasSubstr("'misused'"));
        EXPECT_THAT(e.what(), HasSubstr("cyclic parent chain"));
    }
    greenlet empty;
    EXPECT_THROW((void)empty.switch_to(), error);
}

TEST_F(ReportHandler, SetReturnsThePreviousHandlerAndEmptyRestoresTheDefault) {
    report_scope restore{report_handler()};  // puts back whatever was installed, on any exit
    std::vector<std::string> calls;
    const report_handler original = greenfiber::set_report_handler(
        [&](const failure_report& r) { calls.push_back("h1: " + std::string(r.message)); });
    report_handler prev = greenfiber::set_report_handler(
        [&](const failure_report& r) { calls.push_back("h2: " + std::string(r.message)); });
    ASSERT_TRUE(prev);
    prev({"direct", nullptr, nullptr});  // the one returned is h1
    greenfiber::report_failure({"reported", nullptr, nullptr});
    EXPECT_EQ(calls, (std::vector<std::string>{"h1: direct", "h2: reported"}));
    report_handler h2 = greenfiber::set_report_handler(report_handler());
    ASSERT_TRUE(h2);
    h2({"again", nullptr, nullptr});
    EXPECT_EQ(calls.back(), "h2: again");
    // The default is back: it writes to stderr and calls none of ours.
    ::testing::internal::CaptureStderr();
    greenfiber::report_failure({"to the default", nullptr, nullptr});
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_THAT(err, HasSubstr("to the default"));
    EXPECT_EQ(calls.size(), 3u);
    EXPECT_FALSE(original);  // the default handler is the empty one
}

TEST_F(ReportHandler, HandlerReceivesTheMessageTheErrorAndTheSource) {
    std::vector<std::string> got;
    report_scope rs([&](const failure_report& r) {
        got.emplace_back(r.message);
        try {
            if (r.error) std::rethrow_exception(r.error);
            got.push_back("no error");
        } catch (const std::exception& e) {
            got.push_back(std::string("error: ") + e.what());
        }
        got.push_back(r.source != nullptr ? "source: " + r.source->name() : "no source");
    });
    greenlet g([] {}, greenlet::options{"reported", 0});
    greenfiber::report_failure(
        {"with everything", std::make_exception_ptr(std::runtime_error("why")), &g});
    greenfiber::report_failure({"with nothing", nullptr, nullptr});
    EXPECT_EQ(got, (std::vector<std::string>{"with everything", "error: why", "source: reported",
                                             "with nothing", "no error", "no source"}));
}

TEST_F(ReportHandler, DefaultHandlerWritesOneLineWithTheErrorToStderr) {
    report_scope rs{report_handler()};  // the default, whatever was installed
    ::testing::internal::CaptureStderr();
    greenfiber::report_failure({"greenfiber: a test report",
                                std::make_exception_ptr(std::runtime_error("the cause")), nullptr});
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_THAT(err, HasSubstr("greenfiber: a test report"));
    EXPECT_THAT(err, HasSubstr("the cause"));
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1);
    EXPECT_EQ(err.back(), '\n');
}

TEST_F(ReportHandler, ThrowingHandlerDoesNotEscapeReportFailure) {
    static_assert(noexcept(greenfiber::report_failure(std::declval<const failure_report&>())));
    int calls = 0;
    report_scope rs([&](const failure_report&) {
        ++calls;
        throw std::runtime_error("handler failed");
    });
    ::testing::internal::CaptureStderr();
    EXPECT_NO_THROW(greenfiber::report_failure({"lost", nullptr, nullptr}));
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(calls, 1);
    EXPECT_THAT(err, HasSubstr("report handler threw"));
}

TEST_F(ReportHandler, HandlerRunsOnTheThreadThatFailed) {
    std::vector<std::thread::id> ids;
    report_scope rs([&](const failure_report&) { ids.push_back(std::this_thread::get_id()); });
    std::thread::id worker_id;
    std::thread t([&] {
        worker_id = std::this_thread::get_id();
        greenfiber::report_failure({"from a worker", nullptr, nullptr});
    });
    t.join();
    EXPECT_EQ(ids, (std::vector<std::thread::id>{worker_id}));
}

TEST_F(ReportHandler, ConcurrentReportsAllReachTheHandler) {
    std::atomic<int> count{0};
    report_scope rs([&](const failure_report&) { count.fetch_add(1); });
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
        threads.emplace_back([] {
            for (int k = 0; k < 100; ++k)
                greenfiber::report_failure({"concurrent", nullptr, nullptr});
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(count.load(), 800);
}

}  // namespace
