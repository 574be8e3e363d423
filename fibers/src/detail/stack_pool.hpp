#pragma once
// Not API: the stack pool behind greenlets (stack.hpp has the public face).

#include <cstddef>
#include <string>

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

// A stack of `size` usable bytes (0: the default size) for `owner`. Lazily committed.
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
