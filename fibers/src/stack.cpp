// The stack pool: slabs of lazily committed stacks, guard pages within the VMA budget,
// and the SIGSEGV handler that names a greenlet that overflowed its stack.

#include "greenfiber/stack.hpp"

#include <elf.h>
#include <link.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "detail/stack_pool.hpp"
#include "greenfiber/detail/greenlet_impl.hpp"

#if GREENFIBER_ASAN
#include <sanitizer/asan_interface.h>
#endif

#ifndef GREENFIBER_VALGRIND
#define GREENFIBER_VALGRIND 0
#endif
#if GREENFIBER_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#endif

#ifndef GREENFIBER_DEFAULT_STACK_SIZE
#define GREENFIBER_DEFAULT_STACK_SIZE 262144
#endif

namespace greenfiber {
namespace detail {
namespace {

const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
constexpr std::size_t stacks_per_slab = 32;
// The unused gap below each stack of a slab that the guard budget does not fully cover.
// An overflow that writes into it and returns harms nothing; one still live at a switch is
// caught by the stack-pointer check (greenlet_impl.hpp). Address space only: never touched,
// it costs no memory and, inside the slab's mapping, no VMA.
const std::size_t unguarded_gap = std::max<std::size_t>(64 * 1024, page);

std::size_t round_to_page(std::size_t n) {
    return (n + page - 1) / page * page;
}

std::size_t read_guard_budget() {
    long max_maps = 65530;
    std::ifstream in("/proc/sys/vm/max_map_count");
    if (in) in >> max_maps;
    // Leave 4096 VMAs to everything else in the process; each guard splits a mapping in two.
    return max_maps > 8192 ? static_cast<std::size_t>(max_maps - 4096) / 2 : 2048;
}

// A slab: `count` stacks, each a gap of `gap` bytes followed by `size` usable bytes; a
// guarded stack's guard page is the top page of its gap. The slab table is append-only (the
// overflow handler reads it without locks).
struct slab_record {
    std::atomic<char*> base{nullptr};
    std::size_t stride = 0;
    std::size_t gap = 0;
    std::size_t size = 0;
    std::size_t count = 0;
};
constexpr std::size_t max_slabs = 1 << 17;
slab_record slabs[max_slabs];
std::atomic<std::size_t> slab_count{0};

// The header at the top of every stack. Written by its owner thread; read by the handler.
struct stack_header {
    std::atomic<const greenlet_impl*> owner;
    // The id Valgrind gave the stack while it is handed out (see valgrind_hand_out).
    // Written and read by whoever holds the stack (the pool, a cache or its greenlet).
    unsigned valgrind_id;
};
static_assert(sizeof(stack_header) <= stack_header_size);

stack_header* header_of(char* lo, std::size_t size) {
    return reinterpret_cast<stack_header*>(lo + size - stack_header_size);
}

// Whether to describe stacks to Valgrind: only when running under it (a process cannot be
// moved under Valgrind later, so asking once is enough), and unless
// GREENFIBER_VALGRIND_STACKS=0. Each request outside Valgrind is a dozen no-op
// instructions, five of them per stack taken and given back (about 5% of a pooled
// spawn-and-join); asked once, the cost is one branch.
bool valgrind_wanted() {
#if GREENFIBER_VALGRIND
    if (RUNNING_ON_VALGRIND == 0) return false;
    const char* v = std::getenv("GREENFIBER_VALGRIND_STACKS");
    return !(v != nullptr && std::strcmp(v, "0") == 0);
#else
    return false;
#endif
}

struct thread_cache;

struct pool_state {
    std::mutex mu;
    // Written under mu; read without it by the per-thread caches (thread_cache below), which
    // hold stacks of this size only.
    std::atomic<std::size_t> default_size{round_to_page(GREENFIBER_DEFAULT_STACK_SIZE)};
    // Guarded by mu.
    std::vector<stack_block> free_default;  // stacks of default_size
    std::vector<stack_block> free_other;    // other sizes, reused by exact size
    // Free small stacks (below paged_stack_min), one list per slot size, carved from slabs
    // of small_slab_bytes that are never unmapped. Guarded by mu.
    std::vector<std::pair<std::size_t, std::vector<char*>>> free_small;
    std::size_t small_free_count = 0;  // stacks in free_small. Guarded by mu.
    // Atomic, not guarded by mu: a stack taken from or given back to a thread's cache
    // counts here without the lock. A snapshot (stack_statistics) reads them under mu, so
    // it is consistent with the free lists; a concurrent take may land between the reads
    // of in_use and high_water, which the snapshot absorbs by reporting the larger.
    std::atomic<std::size_t> in_use{0};
    std::atomic<std::size_t> high_water{0};  // the most stacks in use at once since the last reset
    // The threads' caches that hold or held stacks (registered at their first give-back,
    // removed at their thread's exit): their stacks count as pooled. Guarded by mu.
    std::vector<const thread_cache*> caches;
    std::size_t guarded = 0;                         // Guarded by mu.
    std::size_t guard_budget = read_guard_budget();  // Guarded by mu.
    // Written under mu; read without it by the caches' fast path.
    std::atomic<guard_policy> policy{guard_policy::fallback_unguarded};
    bool warned = false;  // Guarded by mu.
    // Whether stacks are described to Valgrind (valgrind_wanted). Set once.
    const bool valgrind = valgrind_wanted();
};

pool_state& pool() {
    static pool_state* p = new pool_state;  // never destroyed: stacks outlive static destructors
    return *p;
}

// What memcheck is told about a stack, when running under Valgrind (valgrind_wanted).
//
// A stack handed out is registered as a stack, so that memcheck sees a jump between two
// greenlet stacks as a switch. Unregistered, a jump of less than its --max-stackframe
// (2 MB; the stacks of one slab lie closer than that) reads as one huge frame pushed or
// popped: memcheck marks the memory between the two stack pointers undefined or
// inaccessible, which is the live frames of other greenlets, and then reports every use of
// them; a longer jump gets "client switching stacks?". The usable range alone is
// registered. The guard page is PROT_NONE, which memcheck knows from mprotect; the unused
// gap below each stack of a slab past the guard budget is marked inaccessible when the slab
// is mapped, so that a stray write into it is reported instead of passing silently (a frame
// that grows into it is not: memcheck makes what a falling stack pointer passes accessible).
//
// A stack handed out is also marked undefined but for its canary word (a new greenlet must
// not read what the last one left there), and a stack given back to the pool is
// deregistered and marked inaccessible, like freed memory: a pointer that outlives its
// greenlet's frame is reported when it is used (tests/valgrind). Precondition for both: the
// caller holds the stack (the id lives in its header), from the pool or from its cache.
void valgrind_hand_out([[maybe_unused]] const pool_state& p,
                       [[maybe_unused]] const stack_block& s) {
#if GREENFIBER_VALGRIND
    if (!p.valgrind) return;
    VALGRIND_MAKE_MEM_UNDEFINED(s.lo, s.size);
    // Except the canary word at the bottom: each switch out reads it, and its content is
    // real (zero from mmap, or what an overflow wrote there).
    VALGRIND_MAKE_MEM_DEFINED(s.lo, sizeof(std::uintptr_t));
    stack_header* h = header_of(s.lo, s.size);
    h->valgrind_id = VALGRIND_STACK_REGISTER(s.lo, s.lo + s.size - 1);
#endif
}

void valgrind_give_back([[maybe_unused]] const pool_state& p,
                        [[maybe_unused]] const stack_block& s) {
#if GREENFIBER_VALGRIND
    if (!p.valgrind) return;
    VALGRIND_STACK_DEREGISTER(header_of(s.lo, s.size)->valgrind_id);
    VALGRIND_MAKE_MEM_NOACCESS(s.lo, s.size);
#endif
}

// A new slab's stacks are pooled, and so inaccessible, until handed out; so is the gap below
// each (the guard page, if any, is PROT_NONE already).
void valgrind_new_slab([[maybe_unused]] const pool_state& p, [[maybe_unused]] char* base,
                       [[maybe_unused]] std::size_t length) {
#if GREENFIBER_VALGRIND
    if (!p.valgrind) return;
    VALGRIND_MAKE_MEM_NOACCESS(base, length);
#endif
}

// Maps a slab of `count` stacks of `size` bytes; guards as many as the budget allows.
// Returns 0, or mmap's errno (nothing is mapped then) and the length it refused in
// `*refused`. Precondition: mu held.
int map_slab(pool_state& p, std::size_t size, std::size_t count, std::vector<stack_block>& out,
             std::size_t* refused) {
    // One page when every stack gets a guard; else a wide gap, under every stack of the slab.
    const std::size_t gap = p.guarded + count <= p.guard_budget ? page : unguarded_gap;
    const std::size_t stride = gap + size;
    out.reserve(out.size() + count);  // no allocation failure once the slab is mapped
    void* mem = mmap(nullptr, stride * count, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED) {
        *refused = stride * count;
        return errno;
    }
    madvise(mem, stride * count, MADV_NOHUGEPAGE);
    char* base = static_cast<char*>(mem);
    valgrind_new_slab(p, base, stride * count);
    for (std::size_t i = 0; i < count; ++i) {
        stack_block s{base + i * stride + gap, size, false};
        if (p.guarded < p.guard_budget && mprotect(s.lo - page, page, PROT_NONE) == 0) {
            s.guarded = true;
            ++p.guarded;
        }
        out.push_back(s);
    }
    const std::size_t n = slab_count.load(std::memory_order_relaxed);
    if (n < max_slabs) {
        slabs[n].stride = stride;
        slabs[n].gap = gap;
        slabs[n].size = size;
        slabs[n].count = count;
        slabs[n].base.store(base, std::memory_order_release);
        slab_count.store(n + 1, std::memory_order_release);
    }
    return 0;
}

std::size_t count_lines(const char* path) {
    std::ifstream in(path);
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
}

// Which limit made mmap of `bytes` fail with `err`, in words. Runs only on failure.
std::string limit_words(int err, std::size_t bytes) {
    if (err != ENOMEM) return "the kernel refused the mapping";
    struct rlimit rl {};
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        std::size_t pages = 0;
        std::ifstream statm("/proc/self/statm");
        statm >> pages;
        const std::size_t in_use = pages * page;
        if (in_use + bytes > rl.rlim_cur) {
            return "the address-space limit RLIMIT_AS (" + std::to_string(rl.rlim_cur) +
                   " bytes, " + std::to_string(in_use) + " in use) is reached";
        }
    }
    long max_maps = 65530;
    std::ifstream in("/proc/sys/vm/max_map_count");
    if (in) in >> max_maps;
    const std::size_t maps = count_lines("/proc/self/maps");
    if (max_maps > 0 && maps + 2 >= static_cast<std::size_t>(max_maps)) {
        return "the mapping limit vm.max_map_count (" + std::to_string(max_maps) + ", " +
               std::to_string(maps) + " mappings in use) is reached";
    }
    return "the address space has no free range of " + std::to_string(bytes) +
           " bytes, or the kernel is out of memory";
}

[[noreturn]] void throw_stack_error(int err, std::size_t size, const greenlet_impl* owner,
                                    const std::string& why) {
    throw stack_error(std::error_code(err, std::generic_category()),
                      "greenfiber: cannot allocate the " + std::to_string(size) +
                          "-byte stack of " + describe_greenlet(owner) + ": " + why,
                      size);
}

bool usable(const pool_state& p, const stack_block& s) {
    return s.guarded ||
           p.policy.load(std::memory_order_relaxed) == guard_policy::fallback_unguarded;
}

void warn_unguarded(pool_state& p) {
    if (p.warned) return;
    p.warned = true;
    std::fprintf(stderr,
                 "greenfiber: the guard-page budget (%zu stacks, from vm.max_map_count) is spent; "
                 "further stacks have no guard page, only a canary checked at each switch\n",
                 p.guard_budget);
}

// Takes a usable stack from `list`, mapping a new slab when none is left.
stack_block take(pool_state& p, std::vector<stack_block>& list, std::size_t size,
                 std::size_t slab_count_hint, const greenlet_impl* owner) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        for (std::size_t i = list.size(); i-- > 0;) {
            if (list[i].size != size || !usable(p, list[i])) continue;
            stack_block s = list[i];
            list[i] = list.back();
            list.pop_back();
            if (!s.guarded) warn_unguarded(p);
            return s;
        }
        if (p.policy.load(std::memory_order_relaxed) == guard_policy::require &&
            p.guarded >= p.guard_budget) {
            throw_stack_error(ENOMEM, size, owner,
                              "the guard-page budget of " + std::to_string(p.guard_budget) +
                                  " stacks is spent (guard_policy::require; raise "
                                  "vm.max_map_count or call set_guard_budget)");
        }
        std::size_t refused = 0;
        int err = map_slab(p, size, slab_count_hint, list, &refused);
        // A whole slab may not fit where one stack still does.
        if (err != 0 && slab_count_hint > 1) err = map_slab(p, size, 1, list, &refused);
        if (err != 0) {
            throw_stack_error(err, size, owner,
                              "mmap of " + std::to_string(refused) +
                                  " bytes (the stack and the gap below it) failed; " +
                                  limit_words(err, refused));
        }
    }
    throw_stack_error(ENOMEM, size, owner, "no usable stack after mapping a slab");
}

// A slab of small stacks: slots of one size side by side, no guard page between them
// (that is what makes them small). Fresh pages read as zero, so every slot's canary is
// intact until a greenlet overflows it.
constexpr std::size_t small_slab_bytes = 256 * 1024;

std::vector<char*>& small_list(pool_state& p, std::size_t size) {
    for (auto& [s, list] : p.free_small)
        if (s == size) return list;
    p.free_small.emplace_back(size, std::vector<char*>{});
    return p.free_small.back().second;
}

// Takes a free small stack of `size` bytes, mapping a slab when none is left.
// Precondition: mu held.
stack_block take_small(pool_state& p, std::size_t size, const greenlet_impl* owner) {
    std::vector<char*>& list = small_list(p, size);
    if (list.empty()) {
        const std::size_t count = small_slab_bytes / size;
        list.reserve(count);  // no allocation failure once the slab is mapped
        void* mem = mmap(nullptr, small_slab_bytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (mem == MAP_FAILED) {
            const int err = errno;
            throw_stack_error(err, size, owner,
                              "mmap of a " + std::to_string(small_slab_bytes) +
                                  "-byte slab of small stacks failed; " +
                                  limit_words(err, small_slab_bytes));
        }
        madvise(mem, small_slab_bytes, MADV_NOHUGEPAGE);
        char* base = static_cast<char*>(mem);
        valgrind_new_slab(p, base, small_slab_bytes);
        // Handed out from the slab's start: the slots a thread takes in a row share pages.
        for (std::size_t i = count; i-- > 0;) list.push_back(base + i * size);
        p.small_free_count += count;
    }
    char* lo = list.back();
    list.pop_back();
    --p.small_free_count;
    return {lo, size, false};
}

// One more stack in use; the mark follows. Both are atomic: the caches count without mu.
void count_taken(pool_state& p) noexcept {
    const std::size_t n = p.in_use.fetch_add(1, std::memory_order_relaxed) + 1;
    std::size_t hw = p.high_water.load(std::memory_order_relaxed);
    while (hw < n && !p.high_water.compare_exchange_weak(hw, n, std::memory_order_relaxed)) {
    }
}

// What AddressSanitizer is told about a stack. A pooled stack is poisoned whole, like freed
// memory: it may hold objects that lived in it (a task and its fiber's control block in the
// top, detail::stack_home), and a pointer kept into them, or into a dead greenlet's frames,
// is then reported as a use after poison instead of reading whatever the next owner wrote
// there. Handed out, it is unpoisoned whole: that also clears the poisoning a finished
// greenlet's last frames left (it jumps away from them without unwinding them).
void asan_hand_out([[maybe_unused]] const stack_block& s) noexcept {
#if GREENFIBER_ASAN
    __asan_unpoison_memory_region(s.lo, s.size);
#endif
}

void asan_give_back([[maybe_unused]] const stack_block& s) noexcept {
#if GREENFIBER_ASAN
    __asan_poison_memory_region(s.lo, s.size);
#endif
}

// A few stacks of the default size per thread, taken and given back without the pool's
// lock: a task or greenlet that is spawned and finishes on one thread reuses the stack the
// last one gave back, with no mutex (the lock was a tenth of a task's spawn and join). A
// stack given back on another thread than it was taken on goes into that thread's cache:
// stacks belong to the process, not to a thread. Every cached stack counts as pooled, and
// in_use/high_water are counted when a stack leaves or enters a cache as when it leaves or
// enters the free lists, so stack_statistics() is unchanged by the cache. At thread exit the
// cache goes back to the pool (cache_flusher); a stack given back after that goes straight
// to the pool. Plain thread-local storage (no constructor, no heap: nothing to leak) with the
// initial-exec model, so that the fast path reads it with one %fs-relative access.
constexpr unsigned cache_capacity = 16;
struct thread_cache {
    stack_block slots[cache_capacity];
    unsigned count;
    // `count` as stack_statistics() reads it from another thread: stored (a plain store,
    // no locked instruction) by this thread after each change.
    std::atomic<unsigned> shown;
    bool registered;  // cache_flusher is constructed for this thread, and in pool_state::caches
    bool gone;        // this thread's thread-local destructors ran: bypass the cache
    void set_count(unsigned n) noexcept {
        count = n;
        shown.store(n, std::memory_order_relaxed);
    }
};
constinit thread_local thread_cache tcache GREENFIBER_TLS_MODEL{};

// Moves the calling thread's cached stacks to the free lists. Precondition: mu held.
void flush_cache(pool_state& p, thread_cache& c) {
    const std::size_t def = p.default_size.load(std::memory_order_relaxed);
    for (unsigned i = 0; i < c.count; ++i) {
        const stack_block& s = c.slots[i];
        try {
            (s.size == def ? p.free_default : p.free_other).push_back(s);
        } catch (...) {
            // Out of memory growing the free list: the stack stays mapped but unused.
        }
    }
    c.set_count(0);
}

// Its destructor, at thread exit, gives the thread's cached stacks back to the pool.
struct cache_flusher {
    ~cache_flusher() {
        pool_state& p = pool();
        std::lock_guard lock(p.mu);
        flush_cache(p, tcache);
        std::erase(p.caches, &tcache);
        tcache.gone = true;
    }
    void arm() noexcept {}  // an odr-use that constructs it (and registers the destructor)
};
thread_local cache_flusher flusher;

}  // namespace

namespace {

// dl_iterate_phdr's callback: stops at the first object whose PLT is bound lazily, and
// copies its name into the lazy_name at *arg (nothing that allocates or throws: the dynamic
// linker's lock is held). The dynamic linker (loaded at AT_BASE) relocates itself at
// start-up.
struct lazy_name {
    char text[256];
};

int find_lazy_object(dl_phdr_info* info, std::size_t, void* arg) noexcept {
    if (info->dlpi_addr == getauxval(AT_BASE)) return 0;
    const ElfW(Dyn)* dyn = nullptr;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    }
    if (dyn == nullptr) return 0;
    bool plt = false;
    bool now = false;
    for (const ElfW(Dyn)* d = dyn; d->d_tag != DT_NULL; ++d) {
        if (d->d_tag == DT_JMPREL) plt = true;
        if (d->d_tag == DT_BIND_NOW) now = true;
        if (d->d_tag == DT_FLAGS && (d->d_un.d_val & DF_BIND_NOW) != 0) now = true;
        if (d->d_tag == DT_FLAGS_1 && (d->d_un.d_val & DF_1_NOW) != 0) now = true;
    }
    if (!plt || now) return 0;
    const char* name = info->dlpi_name[0] != '\0' ? info->dlpi_name : "the program";
    auto& out = static_cast<lazy_name*>(arg)->text;
    std::snprintf(out, sizeof out, "%s", name);
    return 1;
}

}  // namespace

const std::string& lazily_bound_object() {
    static const std::string found = [] {
        lazy_name name{};
        const char* bind_now = std::getenv("LD_BIND_NOW");
        if (bind_now == nullptr || bind_now[0] == '\0') dl_iterate_phdr(&find_lazy_object, &name);
        return std::string(name.text);
    }();
    return found;
}

unsigned valgrind_register_stack([[maybe_unused]] char* lo,
                                 [[maybe_unused]] std::size_t size) noexcept {
#if GREENFIBER_VALGRIND
    if (pool().valgrind) return VALGRIND_STACK_REGISTER(lo, lo + size - 1) + 1;
#endif
    return 0;
}

void valgrind_deregister_stack([[maybe_unused]] unsigned id) noexcept {
#if GREENFIBER_VALGRIND
    if (id != 0) VALGRIND_STACK_DEREGISTER(id - 1);
#endif
}

std::size_t small_stack_slot(std::size_t declared) noexcept {
    if (declared > small_stack_max()) return 0;
    const std::size_t slot = (std::max(declared, small_stack_min) + 255) / 256 * 256;
#if GREENFIBER_ASAN
    return slot * 4;
#else
    return slot;
#endif
}

stack_block allocate_stack(std::size_t size, const greenlet_impl* owner) {
    pool_state& p = pool();
    const std::size_t def = p.default_size.load(std::memory_order_relaxed);
    const bool is_default = size == 0 || round_to_page(std::max<std::size_t>(size, 16384)) == def;
    thread_cache& c = tcache;
    if (is_default && c.count != 0) {
        const stack_block& top = c.slots[c.count - 1];
        if (top.size == def && usable(p, top)) [[likely]] {
            const stack_block s = top;
            c.set_count(c.count - 1);
            count_taken(p);
            asan_hand_out(s);
            valgrind_hand_out(p, s);
            return s;
        }
    }
    std::lock_guard lock(p.mu);
    stack_block s;
    if (size != 0 && size < paged_stack_min) {
        // A small stack has no guard page whatever the policy: it was asked for.
        s = take_small(p, size, owner);
        count_taken(p);
        asan_hand_out(s);
        valgrind_hand_out(p, s);
        return s;
    }
    // Stacks cached before the default size changed, or unguarded ones the policy now
    // refuses: back to the free lists, where take() sorts them out.
    if (c.count != 0) flush_cache(p, c);
    if (is_default) {
        s = take(p, p.free_default, def, stacks_per_slab, owner);
    } else {
        s = take(p, p.free_other, round_to_page(std::max<std::size_t>(size, 16384)), 1, owner);
    }
    count_taken(p);
    asan_hand_out(s);
    valgrind_hand_out(p, s);
    return s;
}

void release_stack(const stack_block& s) noexcept {
    pool_state& p = pool();
    thread_cache& c = tcache;
    valgrind_give_back(p, s);
    asan_give_back(s);
    if (!c.gone && c.count < cache_capacity &&
        s.size == p.default_size.load(std::memory_order_relaxed)) [[likely]] {
        if (!c.registered) [[unlikely]] {
            try {
                std::lock_guard lock(p.mu);
                p.caches.push_back(&c);
                c.registered = true;
                flusher.arm();
            } catch (...) {
                // No memory to register the cache: this stack goes to the free lists.
            }
        }
        if (c.registered) [[likely]] {
            c.slots[c.count] = s;
            c.set_count(c.count + 1);
            p.in_use.fetch_sub(1, std::memory_order_relaxed);
            return;
        }
    }
    std::lock_guard lock(p.mu);
    p.in_use.fetch_sub(1, std::memory_order_relaxed);
    try {
        if (s.size < paged_stack_min) {
            small_list(p, s.size).push_back(s.lo);
            ++p.small_free_count;
            return;
        }
        (s.size == p.default_size.load(std::memory_order_relaxed) ? p.free_default : p.free_other)
            .push_back(s);
    } catch (...) {
        // Out of memory growing the free list: the stack stays mapped but unused.
    }
}

void set_stack_owner(const stack_block& s, const greenlet_impl* g) noexcept {
    header_of(s.lo, s.size)->owner.store(g, std::memory_order_relaxed);
}

namespace {

struct sigaction previous_segv;
constexpr std::size_t altstack_size = 64 * 1024;

void write_str(const char* s) {
    ssize_t r = write(STDERR_FILENO, s, std::strlen(s));
    (void)r;
}
void write_num(std::uint64_t v) {
    char buf[24];
    char* e = buf + sizeof buf;
    char* b = e;
    do {
        *--b = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    ssize_t r = write(STDERR_FILENO, b, static_cast<std::size_t>(e - b));
    (void)r;
}

// Names `g` and its stack of `size` bytes, then `rest`, and restores the default action,
// so that the faulting instruction, run again, ends the process. Async-signal-safe.
void report_overflow(const greenlet_impl* g, std::size_t size, const char* rest) {
    write_str("greenfiber: stack overflow in ");
    if (g != nullptr && !g->name.empty()) {
        write_str("greenlet '");
        ssize_t r = write(STDERR_FILENO, g->name.data(), g->name.size());
        (void)r;
        write_str("' (#");
    } else {
        write_str("greenlet (#");
    }
    write_num(g != nullptr ? g->id : 0);
    write_str("): its stack is ");
    write_num(size);
    write_str(rest);
    signal(SIGSEGV, SIG_DFL);
}

// Async-signal-safe: reads the append-only slab table and the owner's fixed fields.
void on_segv(int sig, siginfo_t* info, void* uctx) {
    char* addr = static_cast<char*>(info->si_addr);
    const std::size_t n = slab_count.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i) {
        char* base = slabs[i].base.load(std::memory_order_acquire);
        const std::size_t stride = slabs[i].stride;
        if (base == nullptr || addr < base || addr >= base + stride * slabs[i].count) continue;
        const std::size_t idx = static_cast<std::size_t>(addr - base) / stride;
        const std::size_t offset = static_cast<std::size_t>(addr - base) - idx * stride;
        const std::size_t gap = slabs[i].gap;
        if (offset >= gap || offset < gap - page) break;  // not a guard page
        char* lo = base + idx * stride + gap;
        report_overflow(header_of(lo, slabs[i].size)->owner.load(std::memory_order_relaxed),
                        slabs[i].size,
                        " bytes; the fault hit the guard page below it. Give it a larger stack "
                        "(greenlet::options::stack_size) or recurse less.\n");
        return;  // the faulting instruction runs again and the default action kills us
    }
    // A small stack has no guard page: a fault in the megabyte below the running greenlet's
    // small stack (through the stacks below it in its slab), or one taken with the stack
    // pointer below it (the frames ran on through other mappings first), is that stack's
    // overflow.
    const thread_state* ts = tls;
    const greenlet_impl* cur = ts != nullptr ? ts->current : nullptr;
    if (cur != nullptr && cur->stack_lo != nullptr && on_small_stack(cur)) {
        char* lo = static_cast<char*>(cur->stack_lo);
        char* sp = nullptr;
#if defined(__x86_64__)
        sp = reinterpret_cast<char*>(static_cast<ucontext_t*>(uctx)->uc_mcontext.gregs[REG_RSP]);
#endif
        if ((addr < lo && static_cast<std::size_t>(lo - addr) < (std::size_t{1} << 20)) ||
            (sp != nullptr && sp < lo &&
             static_cast<std::size_t>(lo - sp) < (std::size_t{1} << 30))) {
            report_overflow(cur, cur->stack_size,
                            " bytes, a small stack; it faulted below that stack, after "
                            "writing over the small stacks beside it. Declare a larger small "
                            "stack (options::small_stack) or give it a paged one.\n");
            return;
        }
    }
    // Not a guard page of ours: hand it to whoever was there before.
    if (previous_segv.sa_flags & SA_SIGINFO) {
        if (previous_segv.sa_sigaction != nullptr)
            return previous_segv.sa_sigaction(sig, info, uctx);
    } else if (previous_segv.sa_handler != SIG_DFL && previous_segv.sa_handler != SIG_IGN) {
        return previous_segv.sa_handler(sig);
    }
    signal(SIGSEGV, SIG_DFL);
}

}  // namespace

void* install_overflow_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &previous_segv);
    });
    stack_t current{};
    if (sigaltstack(nullptr, &current) == 0 && !(current.ss_flags & SS_DISABLE)) return nullptr;
    void* mem = mmap(nullptr, altstack_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return nullptr;
    stack_t ss{};
    ss.ss_sp = mem;
    ss.ss_size = altstack_size;
    if (sigaltstack(&ss, nullptr) != 0) {
        munmap(mem, altstack_size);
        return nullptr;
    }
    return mem;
}

void remove_overflow_handler(void* altstack) noexcept {
    if (altstack == nullptr) return;
    stack_t ss{};
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, nullptr);
    munmap(altstack, altstack_size);
}

}  // namespace detail

void set_default_stack_size(std::size_t bytes) {
    auto& p = detail::pool();
    std::lock_guard lock(p.mu);
    const std::size_t size = detail::round_to_page(std::max<std::size_t>(bytes, 16384));
    if (size == p.default_size.load(std::memory_order_relaxed)) return;
    // Pooled stacks of the old size are reused by exact size from now on (those in the
    // threads' caches move there when their thread next takes a stack from the pool).
    for (auto& s : p.free_default) p.free_other.push_back(s);
    p.free_default.clear();
    p.default_size.store(size, std::memory_order_relaxed);
}

std::size_t small_stack_max() noexcept {
    return detail::page - 512;
}

std::size_t default_stack_size() noexcept {
    return detail::pool().default_size.load(std::memory_order_relaxed);
}

void set_guard_policy(guard_policy policy) noexcept {
    auto& p = detail::pool();
    std::lock_guard lock(p.mu);
    p.policy.store(policy, std::memory_order_relaxed);
}

void set_guard_budget(std::size_t stacks) noexcept {
    auto& p = detail::pool();
    std::lock_guard lock(p.mu);
    p.guard_budget = stacks;
}

stack_stats stack_statistics() noexcept {
    auto& p = detail::pool();
    std::lock_guard lock(p.mu);
    const std::size_t in_use = p.in_use.load(std::memory_order_relaxed);
    std::size_t cached = 0;
    for (const detail::thread_cache* c : p.caches)
        cached += c->shown.load(std::memory_order_relaxed);
    return {in_use, p.free_default.size() + p.free_other.size() + p.small_free_count + cached,
            p.guarded, p.guard_budget,
            std::max(in_use, p.high_water.load(std::memory_order_relaxed))};
}

std::size_t reset_stack_high_water() noexcept {
    auto& p = detail::pool();
    std::lock_guard lock(p.mu);
    const std::size_t in_use = p.in_use.load(std::memory_order_relaxed);
    return std::max(in_use, p.high_water.exchange(in_use, std::memory_order_relaxed));
}

void trim_stack_pool() noexcept {
    auto& p = detail::pool();
    std::lock_guard lock(p.mu);
    // The calling thread's cache first (other threads' caches keep their few stacks).
    if (!detail::tcache.gone) detail::flush_cache(p, detail::tcache);
    // Return the pages (not the address range: the slab table stays valid for the handler).
    for (auto* list : {&p.free_default, &p.free_other}) {
        for (const auto& s : *list) madvise(s.lo, s.size, MADV_DONTNEED);
    }
}

}  // namespace greenfiber
