#pragma once
// Not API: the stack pool behind greenlets (stack.hpp has the public face).

#include <cstddef>
#include <cstdint>
#include <string>

#if defined(__x86_64__) && defined(__linux__)
// Calls fn(arg) with the stack pointer at `top` (16-byte aligned) and returns its result on
// the caller's stack, in a frame whose call-frame information leads an unwinder from fn
// straight back into the caller's frames (unwind.cpp). Callee-saved registers untouched.
extern "C" std::uintptr_t greenfiber_call_on_stack(void* arg, std::uintptr_t (*fn)(void*),
                                                   char* top);
#define GREENFIBER_CALL_ON_STACK 1
#else
#define GREENFIBER_CALL_ON_STACK 0
#endif

namespace greenfiber::detail {

struct greenlet_impl;

// One stack: [lo, lo + size) is usable; the context starts below `top()`, under a small
// header that names the owning greenlet for the overflow handler.
struct stack_block {
    char* lo = nullptr;
    std::size_t size = 0;
    bool guarded = false;
};

// Bytes reserved at the top of every stack for the overflow handler's header.
constexpr std::size_t stack_header_size = 64;

// Tells memcheck that [lo, lo + size) is a stack, when running under Valgrind with stacks
// described (stack.cpp), so that moving the stack pointer there is seen as a switch, not
// as frames popped; returns an id for valgrind_deregister_stack, 0 when nothing was said.
unsigned valgrind_register_stack(char* lo, std::size_t size) noexcept;
void valgrind_deregister_stack(unsigned id) noexcept;

// The top of this thread's side stack when the caller runs on the current greenlet's small
// stack (the side stack is mapped at its first use), else null: where a throw's unwinder
// runs instead (unwind.cpp). Thread-bound.
char* unwind_stack_top() noexcept;

// The small stack that `declared` bytes (options::small_stack) get: rounded up to 256 bytes,
// at least small_stack_min; under AddressSanitizer four times that (its frames carry red
// zones). 0 when `declared` is above small_stack_max(): the caller says why.
std::size_t small_stack_slot(std::size_t declared) noexcept;

// The first object loaded at start-up whose symbols are bound at their first call (its
// file name, or "the program"), or "" when none is or LD_BIND_NOW is set. Such a first call
// on a small stack would overflow it (stack.hpp, "Small stacks"). Computed once: a library
// opened later with dlopen is not seen. Throws: std::bad_alloc.
const std::string& lazily_bound_object();

// A stack of `size` usable bytes (0: the default size; below paged_stack_min: a small
// stack of exactly that slot size, from small_stack_slot) for `owner`. Lazily committed.
// Throws: stack_error naming `owner` (mmap failure, or guard budget spent under
// guard_policy::require); std::bad_alloc.
stack_block allocate_stack(std::size_t size, const greenlet_impl* owner);

// `greenlet 'name' (#id)`, for the stack pool's messages (greenlet.cpp).
std::string describe_greenlet(const greenlet_impl* g);

// Returns a stack to the pool. Thread: thread-safe.
void release_stack(const stack_block& s) noexcept;

// Records (or clears, with null) which greenlet runs on `s`, for the overflow message.
void set_stack_owner(const stack_block& s, const greenlet_impl* g) noexcept;

// Installs this thread's alternate signal stack (once per thread) and the process-wide
// SIGSEGV handler (once). Returns the alternate stack to free at thread exit, or null.
void* install_overflow_handler();
void remove_overflow_handler(void* altstack) noexcept;

}  // namespace greenfiber::detail
