#pragma once
/// \file
/// Greenlet stacks: their default size, the pool they come from, the guard-page budget and
/// stack_error, raised when a stack cannot be allocated.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <cstddef>
#include <string>
#include <system_error>

namespace greenfiber {

// Greenlet stacks come from a process-wide pool. Each stack is an mmap'd region,
// committed lazily (MAP_NORESERVE, MADV_NOHUGEPAGE): a large virtual size costs only
// the pages a greenlet touches, about one 4 KiB page for a parked trivial greenlet.
// Stacks of the default size are reused without returning to the kernel.
//
// Guard pages: a guarded stack has a PROT_NONE page below it, and the SIGSEGV handler
// (on an alternate signal stack) names the greenlet that overflowed it. Each guard splits
// a mapping and costs the process two VMAs, which Linux caps (vm.max_map_count, 65530 by
// default). The guard budget is half of (max_map_count - 4096), read at first use; past
// it the pool behaves as the guard policy says. An unguarded stack has a canary word at its
// limit that is checked each time its greenlet switches out; a guarded one has none (its
// guard faults first, and reading the canary would make the kernel map the stack's lowest
// page on some kernels: a second resident page per parked greenlet). Each switch out of
// any greenlet also checks that its stack pointer is not below its stack (abort naming the
// greenlet: an overflow that skipped the guard page or the canary and is still live when
// the greenlet switches).
//
// Each thread keeps a few free stacks of the default size (16) in a cache of its own, so
// that a greenlet started where the last one finished takes a stack without a lock; the
// cache is part of the pool (counted as pooled) and goes back to it when the thread exits.
//
// Past the budget, each stack of a new slab lies over an unused 64 KiB gap (address space
// only: no memory, no extra VMA), so an overflow that writes into the gap and returns harms
// nothing. What an unguarded stack does not catch: a frame that writes more than 64 KiB
// below its stack without touching the canary word and returns before its greenlet next
// switches corrupts the neighbouring stack (its greenlet's oldest frames) silently, and an
// overflow that never switches (a runaway recursion) runs on through the neighbours until
// it reaches unmapped memory. guard_policy::require (or a larger vm.max_map_count) avoids
// unguarded stacks.
//
// Valgrind: built with the option valgrind (on by default where valgrind/valgrind.h is
// found), the pool registers each stack it hands out with VALGRIND_STACK_REGISTER and
// deregisters it when it comes back, so memcheck sees a switch as a switch. A pooled stack
// and the unused gap below an unguarded one are inaccessible to memcheck, like freed memory:
// a pointer into a dead greenlet's frame, or a stray write below a stack, is reported.
// Outside Valgrind no request is made (whether the process runs under it is asked once):
// one branch per stack taken or given back, nothing on the switch.
// GREENFIBER_VALGRIND_STACKS=0 in the environment turns it off at
// run time (to see what memcheck says without it).

// Small stacks (opt-in, greenlet::options::small_stack and spawn_options::small_stack): a
// stack smaller than a page, for fibers that declare how deep they go, so that a parked one
// costs less memory than the page a paged stack keeps resident. Small stacks of one size
// lie side by side in slabs of 256 KiB, with no guard page between them: an overflow is
// caught only by the canary word at the stack's limit and the stack-pointer check, both at
// the greenlet's next switch out (abort naming the greenlet and its declared size), after
// it has already written over the top of the neighbouring stack. Declare what the fiber
// really needs, and count in it:
// - the call it parks in, counted from the top of the stack for a one-line function (the
//   library built -O2 or -O3): a plain greenlet switched away from takes 0.5 KiB; in a task,
//   a wait on an event, a lock, a semaphore, a queue or a sleep 1.0 to 1.1 KiB; with a
//   deadline or in another task's get() 1.2 KiB; a socket read 1.8 to 1.9 KiB, 2.0 to 2.1
//   KiB with a deadline; a stream_reader call (readline, readexactly) up to 2.7 KiB. Add the
//   frames of the fiber's own function as built (a 48-byte lambda that computes a checksum
//   around its wait added 0.6 KiB at -O3);
// - an exception thrown in the fiber, and so a kill (greenlet_exit) or a task's
//   cancellation: where small_stacks_unwind_aside() is true (Linux x86-64), the unwinder runs
//   on the thread's side stack and only the landing pads (destructors, handlers) run on the
//   fiber's stack, at the depth of their own frames. A cancellation then needs 0 to 250
//   bytes more than the park (a plain greenlet killed while parked: 1.3 KiB; a task
//   cancelled in another task's get(): 1.4 KiB). Where it is false, the unwinder takes about
//   2 KiB below the frame it starts from (2.9 KiB for a task cancelled in an event's wait,
//   3.6 KiB in a socket read: more than the largest small stack);
// - the first call of a function through a lazily bound symbol: the dynamic linker saves
//   the vector registers on the stack (about 3 KiB with AVX-512). Link with -Wl,-z,now (or
//   set LD_BIND_NOW=1) so that binding happens at start-up on the main stack;
// - a signal handled on the fiber's thread: the kernel's signal frame (1 to 3.5 KiB) goes
//   on the running stack unless the handler was installed with SA_ONSTACK. Every thread
//   that runs greenlets has an alternate signal stack, and greenfiber's own handlers
//   (hub signal handlers, run()'s SIGINT, the stall monitor) use it.
// - a switch into a greenlet that has not started yet: its stack is allocated on the
//   switching stack (about 2 KiB). The hub never does this from a small stack (it starts
//   every fiber from its own), nor do its watchdog and unretrieved-exception reports run on
//   one (they use a side stack); a plain greenlet on a small stack must not start another.
// capture_stack() and dump() of a parked small-stack fiber run the unwinder on the capturing
// stack and leave 48 bytes of their own on the fiber's until it resumes: one with less than
// 512 bytes free yields no frame (stacktrace.hpp).
// Sizes are rounded up to 256 bytes, from small_stack_min to small_stack_max(); under
// AddressSanitizer a small stack is four times its declared size (instrumented frames are
// larger). Freed small stacks are reused by size and their pages are never returned to the
// kernel (trim_stack_pool() leaves them: they share pages with stacks in use).

/// The smallest small stack in bytes: a smaller options::small_stack is rounded up to it.
inline constexpr std::size_t small_stack_min = 1024;

/// The largest small stack in bytes (the page size less 512: 3 584 with 4 KiB pages). A
/// larger declared size is refused: a paged stack costs no more memory from there on.
/// Switches: no.   Thread: thread-safe.
std::size_t small_stack_max() noexcept;

/// Whether a throw on a small stack runs the unwinder on the thread's side stack, so that a
/// kill or a cancellation needs only the room of the frames its landing pads run in. The
/// library defines the unwinder's entry points (_Unwind_RaiseException, _Unwind_Resume,
/// _Unwind_Resume_or_Rethrow), which move to the side stack only when called on a small
/// stack and otherwise call libgcc's at once. True on Linux x86-64 when the process binds to
/// them: the library comes before libgcc_s in the program's libraries (the usual link
/// order; AddressSanitizer's interceptor in front of them calls them in turn). False
/// elsewhere (other targets, a program linked with -static-libgcc), and then the unwinder
/// takes about 2 KiB below the frame it starts from (see "Small stacks" above).
/// Switches: no.   Thread: thread-safe.
bool small_stacks_unwind_aside() noexcept;

/// A greenlet's stack could not be allocated: mmap refused it (the address-space limit
/// RLIMIT_AS, the VMA limit vm.max_map_count, or no free range that large) or the guard
/// budget is spent under guard_policy::require. code() is ENOMEM (generic category) or
/// mmap's errno; what() reads "greenfiber: cannot allocate the <n>-byte stack of <greenlet
/// 'name' (#id)>: <what failed>; <which limit was hit>: <strerror>". The greenlet is left
/// not started and owns nothing: it can be switched to again, killed or dropped. Raised
/// where a start failure goes (the target's parent chain; the caller when it is the parent)
/// or, with greenlet::options::eager_stack, by the greenlet's constructor.
class stack_error : public std::system_error {
  public:
    /// The error `code` with the message `what`, for a stack of `stack_size` usable bytes.
    stack_error(std::error_code code, const std::string& what, std::size_t stack_size)
        : std::system_error(code, what), stack_size_(stack_size) {}
    /// The usable size of the stack that could not be allocated, in bytes.
    std::size_t stack_size() const noexcept { return stack_size_; }

  private:
    std::size_t stack_size_;
};

/// What to do when the guard budget is spent.
enum class guard_policy {
    /// Hand out unguarded stacks (canary only) and write a one-time warning. Default.
    fallback_unguarded,
    /// Throw stack_error (ENOMEM) naming the budget.
    require,
};

/// The stack pool's counters at one moment (stack_statistics()). The pool is one for the
/// whole process, so are its counters: a hub's thread and every other thread that runs
/// greenlets draw on the same stacks (a stack given back by one thread is handed out to
/// the next greenlet started on any thread), and per-thread counts would not add up to what
/// the process holds. The fields are read together under the pool's lock, so they are
/// consistent with each other (a stack taken from a thread's cache at that moment may count
/// in in_use before it leaves pooled; high_water is never below in_use).
struct stack_stats {
    /// Stacks held by greenlets: taken when a greenlet starts (or is created with
    /// greenlet::options::eager_stack), given back when it dies or is killed.
    std::size_t in_use;
    /// Free stacks kept for reuse, of any size (a new slab adds the stacks not yet handed
    /// out). Their pages are committed only if a greenlet touched them; trim_stack_pool()
    /// returns those pages.
    std::size_t pooled;
    std::size_t guarded;       ///< stacks (in use or pooled) with a guard page
    std::size_t guard_budget;  ///< how many guarded stacks the VMA budget allows
    /// The most stacks in use at once since the process started or since the last
    /// reset_stack_high_water(): the peak a program's stacks reach, which sizes the pool.
    std::size_t high_water;
};

/// Sets the stack size of greenlets created without an explicit size. Rounded up to
/// whole pages; at least 16 KiB. Stacks already pooled at the old size are released.
/// Switches: no.   Thread: thread-safe.
void set_default_stack_size(std::size_t bytes);

/// The current default stack size in bytes (usable, excluding the guard page).
/// Switches: no.   Thread: thread-safe.
std::size_t default_stack_size() noexcept;

/// Sets what happens when the guard budget is spent (see guard_policy).
/// Switches: no.   Thread: thread-safe.
void set_guard_policy(guard_policy policy) noexcept;

/// Overrides the guard budget (for tests and for processes that need VMAs elsewhere).
/// Switches: no.   Thread: thread-safe.
void set_guard_budget(std::size_t stacks) noexcept;

/// Counters of the stack pool.
/// Switches: no.   Thread: thread-safe.
stack_stats stack_statistics() noexcept;

/// Starts a new high-water mark of stacks in use: it becomes the number in use now.
/// Returns the mark before the reset (the peak of the period that ends).
/// Switches: no.   Thread: thread-safe.
std::size_t reset_stack_high_water() noexcept;

/// Returns the pages of every pooled stack to the kernel: the free lists and the calling
/// thread's cache (another thread's cache, at most 16 stacks, keeps its pages until it
/// exits or gives them back to the pool).
/// Switches: no.   Thread: thread-safe.
void trim_stack_pool() noexcept;

}  // namespace greenfiber
