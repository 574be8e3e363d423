// The use_fiber completion token: the state shared by a waiting fiber and its handler.

#include "greenfiber/use_fiber.hpp"

#include <boost/asio/error.hpp>

namespace greenfiber::detail {

fiber_op::fiber_op(hub& h) noexcept
    : h_(&h), thread_(std::this_thread::get_id()), w_("an asynchronous operation (use_fiber)") {}

void fiber_op::wait(void (*start)(void*) noexcept, void* arg, deadline dl) {
    w_.context = this;
    w_.on_cancel = &fiber_op::on_cancel;
    // However the wait ends, the handler stops referring to the fiber before it goes on;
    // an operation nobody waits for any more is cancelled.
    struct leave {
        fiber_op& op;
        ~leave() {
            if (!op.done_) op.signal_.emit(boost::asio::cancellation_type::terminal);
            {
                std::lock_guard<std::mutex> lock(op.mu_);
                op.waiting_ = false;
            }
            op.work_.reset();
        }
    } guard{*this};
    work_.emplace(h_->context().get_executor());
    if (!dl.is_set()) {
        h_->park(w_, start, arg);
        while (!done_) h_->park(w_);
        return;
    }
    if (h_->park_until(w_, dl.at(), start, arg) || done_) {
        while (!done_) h_->park(w_);
        return;
    }
    // The deadline passed first. An operation that can be cancelled is, and its completion
    // (operation_aborted, or a result that raced in) is waited for: nothing it did is lost.
    // One that cannot is abandoned.
    timed_out_ = true;
    if (!signal_.slot().has_handler()) return;
    signal_.emit(boost::asio::cancellation_type::terminal);
    while (!done_) h_->park_shielded(w_);
}

void fiber_op::on_cancel(waiter& w) noexcept {
    auto* op = static_cast<fiber_op*>(w.context);
    // An operation that installed a cancellation handler completes soon (operation_aborted)
    // and its completion wakes the fiber. One that did not cannot be stopped: abandon it.
    const bool cancellable = op->signal_.slot().has_handler();
    op->signal_.emit(boost::asio::cancellation_type::terminal);
    if (!cancellable) op->h_->wake(w);
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
