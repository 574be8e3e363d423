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

/// Something that could not be thrown to anyone: an exception escaping a greenlet that
/// was being killed from a destructor, a greenlet that refused to die, a greenlet dropped
/// after its thread exited. Delivered to the report handler, never lost.
struct failure_report {
    std::string_view message;  ///< what happened, naming the greenlet
    std::exception_ptr error;  ///< the exception involved, or null
    greenlet* source;          ///< borrowed for the call; may be null. Share it to keep it.
};

/// What receives failure reports (set_report_handler()).
using report_handler = std::function<void(const failure_report&)>;

/// Replaces the process-wide report handler and returns the previous one. An empty
/// handler restores the default, which writes one line to stderr.
/// Switches: no.   Thread: thread-safe; the handler runs on the thread that failed.
report_handler set_report_handler(report_handler handler);

/// Sends `report` to the current handler. For library layers built on greenlets.
/// Switches: only if the handler does.   Thread: thread-safe.
void report_failure(const failure_report& report) noexcept;

}  // namespace greenfiber
