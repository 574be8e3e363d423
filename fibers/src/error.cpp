#include "greenfiber/error.hpp"

#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include "greenfiber/value.hpp"

namespace greenfiber {
namespace {

std::mutex handler_mu;
report_handler& handler() {
    static auto* h = new report_handler;  // never destroyed: reports may come at exit
    return *h;
}

void default_report(const failure_report& r) {
    std::string line;
    if (r.severity != report_severity::error) {
        line += to_string(r.severity);
        line += ": ";
    }
    line += r.message;
    if (r.error) {
        line += ": ";
        line += exception_text(r.error);
    }
    std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace

std::string exception_text(const std::exception_ptr& e) {
    if (!e) return {};
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        const std::type_info* t = abi::__cxa_current_exception_type();
        return (t != nullptr ? detail::type_name(*t) : std::string("std::exception")) + ": " +
               x.what();
    } catch (...) {
        const std::type_info* t = abi::__cxa_current_exception_type();
        return t != nullptr ? detail::type_name(*t)
                            : std::string("an exception not derived from std::exception");
    }
}

report_handler set_report_handler(report_handler h) {
    std::lock_guard lock(handler_mu);
    std::swap(handler(), h);
    return h;
}

void report_failure(const failure_report& r) noexcept {
    report_handler h;
    {
        std::lock_guard lock(handler_mu);
        h = handler();
    }
    try {
        if (h) {
            h(r);
        } else {
            default_report(r);
        }
    } catch (...) {
        std::fputs("critical: greenfiber: the report handler threw; report lost\n", stderr);
    }
}

namespace detail {

std::string type_name(const std::type_info& t) {
    if (t == typeid(void)) return "nothing";
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> d(
        abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), std::free);
    return status == 0 && d ? std::string(d.get()) : std::string(t.name());
}

void throw_bad_value_access(const std::type_info& held, const std::type_info& wanted) {
    throw error("greenfiber: the value holds " +
                (held == typeid(void) ? std::string("nothing (it is empty)") : type_name(held)) +
                ", not " + type_name(wanted));
}

}  // namespace detail
}  // namespace greenfiber
