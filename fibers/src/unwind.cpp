// The unwinder off small stacks. A throw (and so a kill or a task's cancellation) runs the
// unwinder below the frame it starts from: about 2 KiB of its own state and frames, more
// than a parked fiber's small stack has left. This file defines the unwinder's three entry
// points (_Unwind_RaiseException, _Unwind_Resume, _Unwind_Resume_or_Rethrow); the dynamic
// linker binds every caller in the process to them (this library precedes libgcc_s in the
// lookup order). Each checks whether it runs on the current greenlet's small stack and, if
// so, calls libgcc's own on the thread's side stack through a frame whose call-frame
// information leads the unwinder back to the small stack. The landing pads it finds still
// run where they belong: on the small stack, which pays only for its own frames.
//
// Elsewhere (paged stacks, threads without greenlets) each is one thread-local test and a
// call. Linux x86-64 only: other targets keep the unwinder where the throw is.

#include <dlfcn.h>
#include <unistd.h>
#include <unwind.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "detail/stack_pool.hpp"
#include "greenfiber/stack.hpp"

#if GREENFIBER_CALL_ON_STACK

// greenfiber_call_on_stack (stack_pool.hpp): the caller's stack pointer is kept at the new
// stack's top word; the frame's CFA is computed from it (DW_CFA_def_cfa_expression:
// *(rsp) + 8), so an unwinder started in fn steps from this frame straight into the
// caller's, on the old stack.
asm(R"(
    .text
    .p2align 4
    .globl greenfiber_call_on_stack
    .hidden greenfiber_call_on_stack
    .type greenfiber_call_on_stack, @function
greenfiber_call_on_stack:
    .cfi_startproc
    endbr64
    movq %rsp, -16(%rdx)
    leaq -16(%rdx), %rsp
    .cfi_escape 0x0f, 0x05, 0x77, 0x00, 0x06, 0x23, 0x08
    callq *%rsi
    movq (%rsp), %rsp
    .cfi_def_cfa %rsp, 8
    retq
    .cfi_endproc
    .size greenfiber_call_on_stack, .-greenfiber_call_on_stack
)");

namespace {

using raise_fn = _Unwind_Reason_Code (*)(_Unwind_Exception*);

// One of libgcc's entry points: the next definition of `name` after ours. Found when this
// library is loaded (resolve_at_load below: the lookup takes 1.5 KiB of stack, more than a
// small stack has left), or at the first use for a throw before that. No definition: the
// process cannot unwind at all, which is fatal.
struct libgcc_entry {
    const char* name;
    const char* version;
    std::atomic<void*> fn{nullptr};

    void* get() noexcept {
        void* p = fn.load(std::memory_order_acquire);
        if (p != nullptr) [[likely]]
            return p;
        p = dlvsym(RTLD_NEXT, name, version);
        if (p == nullptr) p = dlsym(RTLD_NEXT, name);
        if (p == nullptr) {
            static const char msg[] = "greenfiber: no definition of the unwinder after ours\n";
            [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
            std::abort();
        }
        fn.store(p, std::memory_order_release);
        return p;
    }
};

libgcc_entry real_raise{"_Unwind_RaiseException", "GCC_3.0"};
libgcc_entry real_resume{"_Unwind_Resume", "GCC_3.0"};
libgcc_entry real_rethrow{"_Unwind_Resume_or_Rethrow", "GCC_3.3"};

// Runs the unwinder entry `fn` on `exc`: on the side stack when the caller is on a small
// stack, else here. Not noexcept, nor is anything between the throw and the landing pad:
// the exception passes through these frames, and a noexcept one would end in terminate.
_Unwind_Reason_Code run_unwinder(void* fn, _Unwind_Exception* exc) {
    if (char* top = greenfiber::detail::unwind_stack_top(); top != nullptr) {
        return static_cast<_Unwind_Reason_Code>(
            greenfiber_call_on_stack(exc, reinterpret_cast<std::uintptr_t (*)(void*)>(fn), top));
    }
    return reinterpret_cast<raise_fn>(fn)(exc);
}

bool aside = false;  // small_stacks_unwind_aside(), set at load

}  // namespace

extern "C" __attribute__((visibility("default"))) _Unwind_Reason_Code _Unwind_RaiseException(
    _Unwind_Exception* exc) {
    return run_unwinder(real_raise.get(), exc);
}

extern "C" __attribute__((visibility("default"))) _Unwind_Reason_Code _Unwind_Resume_or_Rethrow(
    _Unwind_Exception* exc) {
    return run_unwinder(real_rethrow.get(), exc);
}

extern "C" __attribute__((visibility("default"))) void _Unwind_Resume(_Unwind_Exception* exc) {
    run_unwinder(real_resume.get(), exc);
    // libgcc's _Unwind_Resume never returns: it lands in the next pad or aborts.
    std::abort();
}

namespace {

__attribute__((constructor)) void resolve_at_load() {
    for (libgcc_entry* e : {&real_raise, &real_resume, &real_rethrow}) (void)e->get();
    // Every caller binds through the global scope, as this lookup does. AddressSanitizer's
    // runtime comes first with an interceptor of the raise, which calls the next one: ours.
    void* raise = dlsym(RTLD_DEFAULT, "_Unwind_RaiseException");
    aside = dlsym(RTLD_DEFAULT, "_Unwind_Resume") == reinterpret_cast<void*>(&_Unwind_Resume) &&
            (raise == reinterpret_cast<void*>(&_Unwind_RaiseException) ||
             (raise != nullptr &&
              raise == dlsym(RTLD_DEFAULT, "__interceptor__Unwind_RaiseException")));
}

}  // namespace

bool greenfiber::small_stacks_unwind_aside() noexcept {
    return aside;
}

#else

bool greenfiber::small_stacks_unwind_aside() noexcept {
    return false;
}

#endif
