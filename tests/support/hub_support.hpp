#pragma once
// io/ test helpers around the hub: its watchdog's reports, and a plain greenlet that the hub
// starts from its ready queue, as it starts a task, and that then throws into the hub.

#include <greenfiber/greenlet.hpp>
#include <greenfiber/hub.hpp>
#include <greenfiber/sync.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace greenfiber::testing {

// Sets the hub's watchdog threshold and records each report, its message and its source's
// name when it has one, until destroyed, which puts back the threshold and the handler
// that were there. Thread: the hub's.
class watchdog_reports {
  public:
    watchdog_reports(hub& h, std::chrono::milliseconds threshold)
        : h_(h),
          previous_threshold_(h.watchdog()),
          previous_(h.set_exception_handler([this](const failure_report& r) {
              messages.emplace_back(r.message);
              if (r.source != nullptr) sources.push_back(r.source->name());
          })) {
        h.set_watchdog(threshold);
    }
    watchdog_reports(const watchdog_reports&) = delete;
    watchdog_reports& operator=(const watchdog_reports&) = delete;
    ~watchdog_reports() {
        h_.set_watchdog(previous_threshold_);
        h_.set_exception_handler(std::move(previous_));
    }

    std::vector<std::string> messages;
    std::vector<std::string> sources;

  private:
    hub& h_;
    std::chrono::milliseconds previous_threshold_;
    report_handler previous_;
};

// Its parent is the hub; constructed, it has started and parks on `go`; set, it throws a
// runtime_error into the hub. Meanwhile the hub's exception handler records each report's
// category (the handler before is put back by the destructor). Thread: the hub's.
class hub_started_thrower {
  public:
    explicit hub_started_thrower(hub& h)
        : h_(h),
          previous_(h.set_exception_handler(
              [this](const failure_report& r) { categories.emplace_back(r.category); })),
          g_([this] {
              go.wait();
              throw std::runtime_error("from the plain greenlet");
          }) {
        g_.set_parent(h.loop_greenlet());
        start_.fiber = detail::access::impl(g_);
        h.schedule(start_);
        yield_now();  // it starts and parks on the event
    }
    hub_started_thrower(const hub_started_thrower&) = delete;
    hub_started_thrower& operator=(const hub_started_thrower&) = delete;
    ~hub_started_thrower() { h_.set_exception_handler(std::move(previous_)); }

    // Whether the hub took it from its queue (it started).
    bool started() const noexcept { return !start_.queued(); }
    bool dead() const noexcept { return g_.dead(); }

    event go;
    std::vector<std::string> categories;

  private:
    hub& h_;
    report_handler previous_;
    greenlet g_;
    detail::waiter start_{"a test's start"};
};

}  // namespace greenfiber::testing
