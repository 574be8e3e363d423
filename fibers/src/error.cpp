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
    std::string line(r.message);
    if (r.error) {
        try {
            std::rethrow_exception(r.error);
        } catch (const std::exception& e) {
            line += ": ";
            line += e.what();
        } catch (...) {
            line += ": (an exception not derived from std::exception)";
        }
    }
    std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace

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
        std::fputs("greenfiber: the report handler threw; report lost\n", stderr);
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
