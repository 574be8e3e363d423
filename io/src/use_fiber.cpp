// The use_fiber completion token: the state shared by a waiting fiber and its handler.

#include "greenfiber/use_fiber.hpp"

#include <string>

#include <boost/asio/error.hpp>

#include "greenfiber/detail/trace_hooks.hpp"
#include "greenfiber/task.hpp"

namespace greenfiber::detail {

fiber_op::fiber_op(hub& h) noexcept
    : h_(&h), thread_(std::this_thread::get_id()), w_("an asynchronous operation (use_fiber)") {}

void fiber_op::wait(void (*start)(void*) noexcept, void* arg, deadline dl,
                    std::chrono::steady_clock::duration report_after) {
    w_.context = this;
    w_.on_cancel = &fiber_op::on_cancel;
    // However the wait ends, the handler stops referring to the fiber before it goes on.
    // Normally the operation completed by then; only a fiber killed with greenlet_exit gets
    // here with it pending, and then the operation is at least told to stop.
    struct leave {
        fiber_op& op;
        ~leave() {
            if (op.started_ && !op.done_) op.signal_.emit(boost::asio::cancellation_type::terminal);
            {
                std::lock_guard<std::mutex> lock(op.mu_);
                op.waiting_ = false;
            }
            op.work_.reset();
        }
    } guard{*this};
    work_.emplace(h_->context().get_executor());
    struct arm_ctx {
        fiber_op* op;
        void (*start)(void*) noexcept;
        void* arg;
    } arm{this, start, arg};
    auto arm_fn = [](void* p) noexcept {
        auto* a = static_cast<arm_ctx*>(p);
        a->op->started_ = true;
        a->start(a->arg);
    };
    // The cancellation (or interrupt) is raised only once the operation let go of the
    // caller's buffers: kept here, rethrown after wait_out(), outside the catch block.
    std::exception_ptr raised;
    try {
        if (!dl.is_set()) {
            h_->park(w_, arm_fn, &arm);
            while (!done_) h_->park(w_);
            return;
        }
        if (h_->park_until(w_, dl.at(), arm_fn, &arm) || done_) {
            while (!done_) h_->park(w_);
            return;
        }
        // The deadline passed first.
        timed_out_ = true;
    } catch (const greenlet_exit&) {
        throw;  // killed: the hub is going away; the guard tells the operation to stop
    } catch (...) {
        raised = std::current_exception();
    }
    wait_out(report_after);
    if (raised) std::rethrow_exception(raised);
}

void fiber_op::wait_out(std::chrono::steady_clock::duration report_after) {
    if (!started_ || done_) return;
    signal_.emit(boost::asio::cancellation_type::terminal);
    // An operation that supports cancellation completes soon (operation_aborted). One that
    // does not may still write into the caller's buffers: leaving would be a use after free,
    // so it is waited for however long it takes, and reported once it takes suspiciously long.
    const auto until = deadline_after(report_after);
    while (!done_ && h_->park_shielded_until(w_, until)) {
    }
    if (done_) return;
    std::string who = "a fiber";
    if (task_base* t = task_base::current()) who = "task '" + t->name() + "'";
    h_->report(
        {"greenfiber: use_fiber: " + who +
             " cancelled an asynchronous operation that has not completed " +
             std::to_string(
                 std::chrono::duration_cast<std::chrono::milliseconds>(report_after).count()) +
             " ms later: it ignores cancellation. The fiber keeps waiting for it, since "
             "it may still write into the caller's buffers",
         nullptr, nullptr, report_severity::warning, "use_fiber"});
    while (!done_) h_->park_shielded(w_);
}

void fiber_op::on_cancel(waiter& w) noexcept {
    // Tell the operation to stop and wake the fiber, which raises the cancellation once the
    // operation completed (wait_out): at once for one that supports cancellation.
    auto* op = static_cast<fiber_op*>(w.context);
    if (op->started_) op->signal_.emit(boost::asio::cancellation_type::terminal);
    op->h_->wake(w);
}

void fiber_op::complete() noexcept {
    if (std::this_thread::get_id() == thread_) {
        on_hub();
        return;
    }
    // Another thread: hand the wake-up to the hub. Under mu_, so the fiber (and with it the
    // hub, which a parked fiber keeps alive) is still there while posting.
    std::lock_guard<std::mutex> lock(mu_);
    if (!waiting_) return;
    retain();
    h_->post([this] {
        on_hub();
        release();
    });
}

void fiber_op::on_hub() noexcept {
    done_ = true;
    if (hub_trace* t = trace_of(*h_)) [[unlikely]]
        trace_completion(*t, w_);
    if (waiting_) h_->wake(w_);
}

void throw_handler_dropped() {
    throw boost::system::system_error(
        boost::asio::error::operation_aborted,
        "greenfiber::use_fiber: the operation's handler was destroyed without being called "
        "(its io_context was destroyed or shut down)");
}

void throw_system_error(const boost::system::error_code& ec) {
    throw boost::system::system_error(ec);
}

}  // namespace greenfiber::detail
