#pragma once

/// \file
/// The completion token that lets a fiber call any Asio-style asynchronous operation (Asio's,
/// Beast's, any library built on Asio) as if it were blocking:
///
///     std::size_t n = sock.async_read_some(buf, greenfiber::use_fiber);   // throws system_error
///     http::async_read(stream, buffer, req, greenfiber::use_fiber[ec]);    // reports through ec
///
/// The calling fiber suspends; other fibers run; the call returns the operation's result.
/// What the call returns follows the completion signature: void(error_code, T) gives T,
/// void(error_code) gives void, void(error_code, T, U) gives std::tuple<T, U>,
/// void(exception_ptr, ...) rethrows, void(T) gives T.
///
/// The fiber parks first and the operation is started afterwards, from the hub: a completion
/// can never arrive before the fiber is suspended. The handler carries the hub's executor (so
/// composed operations stay on the hub's thread) and a cancellation slot.
///
/// The fiber never leaves while the operation may still use what the caller lent it (its
/// buffers, often on the fiber's own stack). Cancelling the task (or a timeout() around the
/// call) or passing the deadline given with until() emits a terminal cancellation on the
/// slot and then waits, shielded from further cancellation, for the completion handler. An
/// operation that supports cancellation completes at once (operation_aborted), and the call
/// raises the cancellation (cancelled_error, timeout_error) or reports timed_out. An
/// operation that ignores cancellation is waited for all the same: leaving would let it
/// write into a dead frame. If it has not completed `stuck_report_after()` (5 s by default)
/// after the request, the hub reports it (hub::report, naming the task) and the fiber keeps
/// waiting. Its result, when it comes, is returned if the wait ended at the deadline (the
/// work was done: nothing is lost), or dropped if the task was cancelled. A handler destroyed
/// without being called (its io_context destroyed with the operation pending) wakes the fiber
/// with operation_aborted. Only a fiber killed with greenlet_exit (its hub going away) leaves
/// without waiting; the operation is told to stop first.
///
/// Thread: the call must come from a fiber of this thread's hub (not from a callback on the
/// hub itself). The operation may complete on any thread.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include "greenfiber/deadline.hpp"
#include "greenfiber/hub.hpp"

namespace greenfiber {

/// The type of use_fiber, the completion token (see the file comment). Copied by value;
/// operator[], until() and stuck_report_after() return modified copies.
class use_fiber_t {
  public:
    constexpr use_fiber_t() noexcept = default;
    /// The non-throwing form: errors are stored in `ec` (cleared on success).
    constexpr use_fiber_t operator[](boost::system::error_code& ec) const noexcept {
        use_fiber_t t = *this;
        t.ec_ = &ec;
        return t;
    }
    /// With a deadline: when it passes, the operation is cancelled and waited for, and the call
    /// reports timed_out. A result that arrived anyway is kept (see above for an operation
    /// that ignores cancellation).
    use_fiber_t until(deadline dl) const noexcept {
        use_fiber_t t = *this;
        t.dl_ = dl;
        return t;
    }
    /// How long a cancelled operation may take to complete before the hub reports it as one
    /// that ignores cancellation (the fiber keeps waiting either way). Saturates; default 5 s.
    /// Switches: no.
    template <class Rep, class Period>
    use_fiber_t stuck_report_after(std::chrono::duration<Rep, Period> d) const noexcept {
        use_fiber_t t = *this;
        t.report_after_ = detail::to_steady_duration(d);
        return t;
    }
    ///@{
    /// What the token carries, for the async_result specialisation: the error_code given
    /// with operator[] (or null) / the deadline given with until() / the stuck_report_after()
    /// threshold. Switches: no.
    constexpr boost::system::error_code* error_sink() const noexcept { return ec_; }
    constexpr const deadline& time_limit() const noexcept { return dl_; }
    constexpr std::chrono::steady_clock::duration report_after() const noexcept {
        return report_after_;
    }
    ///@}

  private:
    boost::system::error_code* ec_ = nullptr;
    deadline dl_;
    std::chrono::steady_clock::duration report_after_ = std::chrono::seconds(5);
};

/// The completion token: `op(args..., use_fiber)` suspends the calling fiber until the
/// operation completes and returns its result (see the file comment).
inline constexpr use_fiber_t use_fiber{};

namespace detail {

/// The state one token operation shares between the waiting fiber and the handler. On the
/// heap and reference-counted: a fiber killed while it waits leaves the handler a live place
/// to complete into.
/// Thread: the fiber's side runs on the hub's thread; complete() and release() on any thread.
class fiber_op {
  public:
    explicit fiber_op(hub& h) noexcept;
    fiber_op(const fiber_op&) = delete;
    fiber_op& operator=(const fiber_op&) = delete;

    void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
    void release() noexcept {
        if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }

    /// Fiber side: parks, runs `start(arg)` from the hub once parked, and returns when the
    /// operation completed; if `dl` passed first, timed_out() is true and the operation was
    /// cancelled and then waited for. A cancellation of the task is raised only after the
    /// operation completed. Either way, an operation still running `report_after` after it was
    /// told to stop is reported through the hub, and waited for.
    /// Switches: yes.   Thread: thread-bound.
    /// Throws: cancelled_error (or the task's interrupt, e.g. timeout_error); greenfiber::error
    ///         when called from the hub itself; greenlet_exit without waiting.
    void wait(void (*start)(void*) noexcept, void* arg, deadline dl,
              std::chrono::steady_clock::duration report_after);
    bool timed_out() const noexcept { return timed_out_; }

    /// Handler side: the result is stored (or the handler is going away uncalled). Wakes the
    /// fiber on its hub's thread. Thread: any.
    void complete() noexcept;

    boost::asio::cancellation_slot slot() noexcept { return signal_.slot(); }
    boost::asio::io_context::executor_type executor() const noexcept {
        return h_->context().get_executor();
    }

    std::exception_ptr failed;  // what the initiation threw

  protected:
    virtual ~fiber_op() = default;

  private:
    void on_hub() noexcept;
    static void on_cancel(waiter& w) noexcept;
    /// Tells a started, unfinished operation to stop, then waits for its completion,
    /// shielded; reports it after `report_after`. Throws: loop_exit (cannot happen while
    /// work_ is held).
    void wait_out(std::chrono::steady_clock::duration report_after);

    hub* h_;
    std::thread::id thread_;
    waiter w_;
    std::mutex mu_;         // orders a foreign-thread complete() against the fiber leaving
    bool waiting_ = true;   // written under mu_ on the hub's thread
    bool done_ = false;     // hub's thread only
    bool started_ = false;  // the initiation ran; hub's thread only
    bool timed_out_ = false;
    std::atomic<int> refs_{1};
    boost::asio::cancellation_signal signal_;
    /// While the fiber waits, the hub has work: a completion may come from another thread.
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
};

template <class... Args>
class fiber_op_of final : public fiber_op {
  public:
    using fiber_op::fiber_op;
    std::optional<std::tuple<std::decay_t<Args>...>> result;  // empty: the handler was dropped
};

/// The handler given to the operation. Move-only; holds one reference to the state.
template <class... Args>
class fiber_handler {
  public:
    using executor_type = boost::asio::io_context::executor_type;
    using cancellation_slot_type = boost::asio::cancellation_slot;

    explicit fiber_handler(fiber_op_of<Args...>* op) noexcept : op_(op) { op_->retain(); }
    fiber_handler(fiber_handler&& o) noexcept : op_(std::exchange(o.op_, nullptr)) {}
    fiber_handler& operator=(fiber_handler&&) = delete;
    ~fiber_handler() {
        // Destroyed uncalled: wake the fiber anyway; the empty result says why.
        if (op_ != nullptr) finish();
    }

    executor_type get_executor() const noexcept { return op_->executor(); }
    cancellation_slot_type get_cancellation_slot() const noexcept { return op_->slot(); }

    template <class... Vs>
    void operator()(Vs&&... vs) {
        op_->result.emplace(std::forward<Vs>(vs)...);
        finish();
    }

  private:
    void finish() noexcept {
        fiber_op* op = std::exchange(op_, nullptr);
        op->complete();
        op->release();
    }
    fiber_op_of<Args...>* op_;
};

[[noreturn]] void throw_handler_dropped();
[[noreturn]] void throw_system_error(const boost::system::error_code& ec);

template <class... Ts>
struct values {
    using type = std::tuple<Ts...>;
};
template <class T>
struct values<T> {
    using type = T;
};
template <>
struct values<> {
    using type = void;
};

/// The elements of `t` from `Offset` on, as the return value.
template <std::size_t Offset, class Tuple, std::size_t... I>
auto take(Tuple& t, std::index_sequence<I...>) {
    if constexpr (sizeof...(I) == 0) {
        return;
    } else if constexpr (sizeof...(I) == 1) {
        return std::move(std::get<Offset>(t));
    } else {
        return std::make_tuple(std::move(std::get<Offset + I>(t))...);
    }
}

/// How a completion signature's arguments become a return value or an exception.
template <class... Args>
struct completion {
    using head = void;
    using return_type = typename values<std::decay_t<Args>...>::type;
};
template <class First, class... Rest>
struct completion<First, Rest...> {
    using head = std::decay_t<First>;
    static constexpr bool has_error =
        std::is_same_v<head, boost::system::error_code> || std::is_same_v<head, std::exception_ptr>;
    using return_type = std::conditional_t<has_error, typename values<std::decay_t<Rest>...>::type,
                                           typename values<head, std::decay_t<Rest>...>::type>;
};

template <class... Args>
auto unpack(fiber_op_of<Args...>& op, boost::system::error_code* ec) ->
    typename completion<Args...>::return_type {
    using c = completion<Args...>;
    using R = typename c::return_type;
    if (op.failed) std::rethrow_exception(op.failed);
    if (!op.result) {
        const auto why =
            op.timed_out() ? boost::asio::error::timed_out : boost::asio::error::operation_aborted;
        if constexpr (std::is_void_v<R> || std::is_default_constructible_v<R>) {
            if (ec != nullptr) {
                *ec = why;
                return R();
            }
        }
        if (op.timed_out()) throw_system_error(why);
        throw_handler_dropped();
    }
    auto& t = *op.result;
    if constexpr (std::is_same_v<typename c::head, boost::system::error_code>) {
        boost::system::error_code e = std::get<0>(t);
        // Cancelled by the deadline: say so.
        if (op.timed_out() && e == boost::asio::error::operation_aborted) {
            e = boost::asio::error::timed_out;
        }
        if (ec != nullptr) {
            *ec = e;
        } else if (e) {
            throw_system_error(e);
        }
        return take<1>(t, std::make_index_sequence<sizeof...(Args) - 1>{});
    } else if constexpr (std::is_same_v<typename c::head, std::exception_ptr>) {
        if (std::get<0>(t)) std::rethrow_exception(std::get<0>(t));
        return take<1>(t, std::make_index_sequence<sizeof...(Args) - 1>{});
    } else {
        return take<0>(t, std::make_index_sequence<sizeof...(Args)>{});
    }
}

}  // namespace detail

}  // namespace greenfiber

/// \cond
// How Asio's initiating functions run with use_fiber (the behaviour the file comment
// describes). Asio's customisation point, not greenfiber API: left out of the reference.
template <class... Args>
class boost::asio::async_result<greenfiber::use_fiber_t, void(Args...)> {
  public:
    using return_type = typename greenfiber::detail::completion<Args...>::return_type;

    template <class Initiation, class... InitArgs>
    static return_type initiate(Initiation&& init, greenfiber::use_fiber_t token,
                                InitArgs&&... args) {
        using op_type = greenfiber::detail::fiber_op_of<Args...>;
        auto* op = new op_type(greenfiber::hub::current());
        struct owner {
            op_type* op;
            ~owner() { op->release(); }
        } hold{op};
        struct start_ctx {
            Initiation& init;
            std::tuple<InitArgs&&...> args;
            op_type* op;
        } ctx{init, std::forward_as_tuple(std::forward<InitArgs>(args)...), op};
        op->wait(
            [](void* p) noexcept {
                auto* c = static_cast<start_ctx*>(p);
                try {
                    std::apply(
                        [c](auto&&... a) {
                            std::move(c->init)(greenfiber::detail::fiber_handler<Args...>(c->op),
                                               std::forward<decltype(a)>(a)...);
                        },
                        std::move(c->args));
                } catch (...) {
                    // The handler, if it was built, went away uncalled and woke the fiber.
                    c->op->failed = std::current_exception();
                    c->op->complete();
                }
            },
            &ctx, token.time_limit(), token.report_after());
        return greenfiber::detail::unpack(*op, token.error_sink());
    }
};
/// \endcond
