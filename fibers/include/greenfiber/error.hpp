#pragma once
/// \file
/// The exceptions of misuse (greenfiber::error) and the report of failures that could not
/// be thrown to anyone (failure_report, set_report_handler).

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace greenfiber {

/// Misuse of the API: a dead or foreign target, a parent cycle, a type mismatch.
/// The message names the objects involved and the rule that was broken.
class error : public std::logic_error {
  public:
    using std::logic_error::logic_error;
};

class greenlet;

/// How bad a failure_report is, for a log's level.
enum class report_severity {
    /// Something to look at that lost nothing: a slow fiber (watchdog), an object destroyed
    /// with work it then dropped on purpose (a server's handlers, a writer's buffer).
    warning,
    /// An exception nobody could catch: it escaped a callback, a task's exception was never
    /// retrieved, a cleanup failed, a greenlet could not be killed.
    error,
    /// The reporting itself failed (a report handler threw): reports may be lost.
    critical,
};

/// "warning", "error" or "critical". Switches: no.
constexpr const char* to_string(report_severity s) noexcept {
    switch (s) {
        case report_severity::warning:
            return "warning";
        case report_severity::error:
            return "error";
        case report_severity::critical:
            return "critical";
    }
    return "unknown";
}

/// Something that could not be thrown to anyone: an exception escaping a greenlet that
/// was being killed from a destructor, a greenlet that refused to die, a greenlet dropped
/// after its thread exited, and in io/ an exception escaping a callback, a task's exception
/// never retrieved, a watchdog report. Delivered to the report handler, never lost.
struct failure_report {
    std::string_view message;  ///< what happened, naming the greenlet or task
    std::exception_ptr error;  ///< the exception involved, or null (exception_text() says it)
    greenlet* source;          ///< borrowed for the call; may be null. Share it to keep it.
    /// How bad it is; every report greenfiber makes sets it.
    report_severity severity = report_severity::error;
    /// What reported it, one word for a log's logger name: "greenlet", "callback", "task",
    /// "watchdog", "monitor", "run", "server", "stream", "executor", "promise", "use_fiber",
    /// "http", "signal", "task_group", "hub" ("other" when not set). A static string.
    std::string_view category = "other";
};

/// The exception in words: "TYPE: what()" for a std::exception, the demangled type alone
/// for anything else (greenfiber::cancelled_error), "" for null. What the default report
/// handler prints after a report's message.
/// Switches: no.   Thread: thread-safe.   Throws: std::bad_alloc.
std::string exception_text(const std::exception_ptr& e);

/// What receives failure reports (set_report_handler()).
using report_handler = std::function<void(const failure_report&)>;

/// Replaces the process-wide report handler and returns the previous one. An empty
/// handler restores the default, which writes one line to stderr: the message, then ": "
/// and exception_text() of the exception if there is one, prefixed with "warning: " or
/// "critical: " for those severities.
/// Switches: no.   Thread: thread-safe; the handler runs on the thread that failed.
report_handler set_report_handler(report_handler handler);

/// Sends `report` to the current handler. For library layers built on greenlets.
/// Switches: only if the handler does.   Thread: thread-safe.
void report_failure(const failure_report& report) noexcept;

}  // namespace greenfiber
