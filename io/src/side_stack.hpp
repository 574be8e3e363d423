#pragma once
// Not API: running a throwing call off a small stack (stack.hpp, "Small stacks").

#include <exception>
#include <type_traits>

#include "greenfiber/detail/greenlet_impl.hpp"

namespace greenfiber::detail {

// Calls f() as on_side_stack does (on the thread's side stack when the running greenlet's
// stack is small, else here). An exception f throws is carried back and rethrown on the
// caller's stack. f must not switch. Thread-bound.
template <class F>
void on_side_stack_throwing(F&& f) {
    struct call {
        std::remove_reference_t<F>* f;
        std::exception_ptr error;
    } c{&f, nullptr};
    on_side_stack(
        [](void* p) noexcept {
            auto* c = static_cast<call*>(p);
            try {
                (*c->f)();
            } catch (...) {
                c->error = std::current_exception();
            }
        },
        &c);
    if (c.error) std::rethrow_exception(c.error);
}

}  // namespace greenfiber::detail
