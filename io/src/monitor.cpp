// The stall monitor (introspect.hpp) and the hub's heartbeat it samples
// (detail/stall_beat.hpp).

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <source_location>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>

#include "greenfiber/detail/greenlet_impl.hpp"
#include "greenfiber/detail/stall_beat.hpp"
#include "greenfiber/error.hpp"
#include "greenfiber/introspect.hpp"
#include "greenfiber/stacktrace.hpp"
#include "greenfiber/task.hpp"
#include "greenfiber/value.hpp"

namespace greenfiber {

namespace detail {
// Odd (idle) at first: a thread that never ran its hub is not stalled.
constinit thread_local std::atomic<std::uint64_t> stall_beat GREENFIBER_TLS_MODEL{1};
}  // namespace detail

namespace {

// Where the signal handler leaves one sample. One per hub thread, made before any signal can
// be sent, freed only when the thread exits (a sample requested by a monitor that has gone
// may still be delivered). The handler writes it only between `requested` and `filled`.
struct sample_slot {
    enum : int { idle, requested, filling, filled };
    std::atomic<int> phase{idle};
    sem_t done;  // posted by the handler (sem_post is async-signal-safe)
    raw_stack stack;
    char name[96] = {};  // the running fiber's task name, or its greenlet name
    std::size_t name_len = 0;
    std::uint64_t greenlet_id = 0;
    bool is_task = false;
    bool is_hub_or_main = false;         // no task: the hub's greenlet (a callback) or main
    const std::type_info* fn = nullptr;  // the task's function (its site without a line)
    std::source_location site{};         // the task's spawn site (trivially copyable)

    sample_slot() { sem_init(&done, 0, 0); }
    ~sample_slot() { sem_destroy(&done); }
};

// The signal handler's view of its thread's slot (initial-exec TLS: no allocation).
constinit thread_local sample_slot* t_slot GREENFIBER_TLS_MODEL = nullptr;

void copy_name(sample_slot& s, const std::string& name) noexcept {
    s.name_len = std::min(name.size(), sizeof(s.name));
    std::memcpy(s.name, name.data(), s.name_len);
}

// Runs on the stalled thread, inside whatever it was doing: only copies, into the slot.
void on_sample(int) {
    const int saved_errno = errno;
    sample_slot* s = t_slot;
    int expect = sample_slot::requested;
    if (s != nullptr &&
        s->phase.compare_exchange_strong(expect, sample_slot::filling, std::memory_order_acquire)) {
        // Leaves out this handler and the kernel's signal trampoline: the first frame is
        // the interrupted instruction.
        capture_stack(s->stack, 2);
        s->stack.first_is_instruction = true;
        const detail::greenlet_impl* g = detail::tls != nullptr ? detail::tls->current : nullptr;
        s->name_len = 0;
        s->is_task = false;
        s->is_hub_or_main = false;
        s->fn = nullptr;
        s->site = {};
        if (g != nullptr) {
            s->greenlet_id = g->id;
            if (const auto* t = static_cast<const detail::task_base*>(g->local)) {
                s->is_task = true;
                copy_name(*s, t->name());
                s->fn = &t->function_type();
                s->site = t->spawned_at();
            } else {
                copy_name(*s, g->name);
                s->is_hub_or_main = g->is_main;
            }
        }
        s->phase.store(sample_slot::filled, std::memory_order_release);
        sem_post(&s->done);
    }
    errno = saved_errno;
}

// Signals whose handler is on_sample. Guarded by signals_mu.
std::mutex signals_mu;
std::set<int> installed_signals;

void install_handler(int signo) {
    std::lock_guard lock(signals_mu);
    if (installed_signals.count(signo) != 0) return;
    struct sigaction old {};
    if (sigaction(signo, nullptr, &old) != 0)
        throw std::system_error(errno, std::generic_category(),
                                "greenfiber: stall monitor: sigaction");
    // At its default or ignored: take it (on_sample also ignores it unless a sample is
    // asked for). Anything else is someone's handler.
    if ((old.sa_flags & SA_SIGINFO) != 0 ||
        (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)) {
        throw error("greenfiber: stall monitor: signal " + std::to_string(signo) +
                    " already has a handler; choose another in stall_monitor_options::signal");
    }
    struct sigaction sa {};
    sa.sa_handler = &on_sample;
    sigemptyset(&sa.sa_mask);
    // SA_RESTART: a sampled blocking read() goes on, never sees EINTR. SA_ONSTACK: the
    // kernel's frame and the capture stay off the sampled fiber's stack, which may be small
    // (stack.hpp, "Small stacks"); the capture unwinds through the signal frame to it.
    sa.sa_flags = SA_RESTART | SA_ONSTACK;
    if (sigaction(signo, &sa, nullptr) != 0)
        throw std::system_error(errno, std::generic_category(),
                                "greenfiber: stall monitor: sigaction");
    installed_signals.insert(signo);
}

}  // namespace

struct stall_monitor::state {
    stall_monitor_options opts;
    std::mutex mu;
    std::condition_variable cv;
    bool stop = false;         // Guarded by mu.
    bool thread_alive = true;  // Guarded by mu: the hub's thread has not exited.
    pthread_t hub_thread = pthread_self();
    std::thread::id hub_thread_id = std::this_thread::get_id();
    std::atomic<std::uint64_t>* beat = &detail::stall_beat;  // in the hub thread's TLS
    sample_slot* slot = nullptr;  // Borrowed from the hub thread's record.
    std::atomic<std::size_t> reports{0};
    std::thread thread;

    void run() noexcept;
    bool sample(std::unique_lock<std::mutex>& lock) noexcept;
    void report(std::chrono::milliseconds stalled) noexcept;
    // Copied out of the slot under mu, for the report.
    raw_stack stack;
    std::string who;
};

namespace {

// The hub thread's record: its slot, and the monitor watching it (if any).
struct thread_record {
    std::unique_ptr<sample_slot> slot;
    std::shared_ptr<stall_monitor::state> watcher;
    ~thread_record() {
        t_slot = nullptr;
        if (watcher) {
            std::lock_guard lock(watcher->mu);
            watcher->thread_alive = false;
        }
        // A signal still pending for this thread finds t_slot null.
    }
};

thread_record& this_record() {
    static thread_local thread_record r;
    return r;
}

// The words naming a sampled fiber: the one place that formats it, so that richer task
// accessors (a spawn site with file and line) change it alone.
std::string sampled_fiber_words(const sample_slot& s) {
    const std::string name(s.name, s.name_len);
    if (s.is_task) {
        return "task '" + name + "' (spawned at " +
               (s.fn != nullptr ? detail::format_site(s.site, *s.fn) : "?") + ")";
    }
    if (s.is_hub_or_main) return "the main greenlet";
    if (name == "hub") return "the hub (a callback or an I/O completion)";
    if (name.empty()) return "greenlet #" + std::to_string(s.greenlet_id);
    return "greenlet '" + name + "'";
}

}  // namespace

bool stall_monitor::state::sample(std::unique_lock<std::mutex>& lock) noexcept {
    // Under mu: the thread is alive while we signal it and wait for its handler.
    (void)lock;
    int expect = sample_slot::idle;
    if (!slot->phase.compare_exchange_strong(expect, sample_slot::requested)) return false;
    if (pthread_kill(hub_thread, opts.signal) != 0) {
        slot->phase.store(sample_slot::idle);
        return false;
    }
    // Bounded: a thread with the signal blocked never answers.
    timespec until{};
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    for (;;) {
        if (sem_timedwait(&slot->done, &until) == 0) break;
        if (errno == EINTR) continue;
        // Timed out: withdraw the request, unless the handler has just taken it.
        expect = sample_slot::requested;
        if (slot->phase.compare_exchange_strong(expect, sample_slot::idle)) return false;
        while (sem_wait(&slot->done) != 0) {
        }
        break;
    }
    stack = slot->stack;
    who = sampled_fiber_words(*slot);
    slot->phase.store(sample_slot::idle, std::memory_order_release);
    return true;
}

void stall_monitor::state::report(std::chrono::milliseconds stalled) noexcept {
    try {
        std::ostringstream os;
        os << "greenfiber: stall monitor: " << who << " has kept the hub of thread "
           << hub_thread_id << " from its loop for " << stalled.count() << " ms so far (threshold "
           << opts.threshold.count()
           << " ms), and still does: a blocking call or a busy loop in a fiber? Its stack now:\n";
        print_stack(os, stack);
        std::string text = std::move(os).str();
        if (!text.empty() && text.back() == '\n') text.pop_back();  // handlers add their own
        const failure_report r{text, nullptr, nullptr, report_severity::warning, "monitor"};
        reports.fetch_add(1, std::memory_order_relaxed);
        if (opts.handler) {
            opts.handler(r);
        } else {
            report_failure(r);
        }
    } catch (...) {
        // Out of memory, or the handler threw: this report is lost, the monitor goes on.
    }
}

void stall_monitor::state::run() noexcept {
    const auto period = std::max(std::chrono::milliseconds(1), opts.threshold / 4);
    std::unique_lock lock(mu);
    std::uint64_t last = 1;
    std::uint64_t reported = 1;  // odd: nothing reported yet
    auto since = std::chrono::steady_clock::now();
    while (!stop) {
        cv.wait_for(lock, period);
        if (stop) break;
        if (!thread_alive) continue;  // nothing to watch any more; wait to be stopped
        const std::uint64_t b = beat->load(std::memory_order_relaxed);
        const auto now = std::chrono::steady_clock::now();
        if (b != last) {
            last = b;
            since = now;
            continue;
        }
        if ((b & 1u) != 0 || b == reported || now - since < opts.threshold) continue;
        reported = b;  // one report per stall, whether or not the sample succeeds
        if (!sample(lock)) continue;
        // The stall may have ended before the signal arrived: the stack would be of
        // something else.
        if (beat->load(std::memory_order_relaxed) != b) continue;
        const auto stalled = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - since);
        lock.unlock();
        report(stalled);
        lock.lock();
    }
}

stall_monitor::stall_monitor(stall_monitor_options options) {
    if (options.threshold <= std::chrono::milliseconds(0))
        throw error("greenfiber: stall monitor: the threshold must be positive");
    thread_record& rec = this_record();
    if (rec.watcher) {
        std::lock_guard lock(rec.watcher->mu);
        if (!rec.watcher->stop) {
            throw error("greenfiber: this thread's hub already has a stall monitor; one per hub");
        }
    }
    install_handler(options.signal);
    (void)detail::this_thread();  // the handler reads the fibers layer's thread state
    {
        // The unwinder's first use may allocate: not inside the signal handler.
        raw_stack warm;
        capture_stack(warm);
    }
    if (!rec.slot) rec.slot = std::make_unique<sample_slot>();
    t_slot = rec.slot.get();
    auto s = std::make_shared<state>();
    s->opts = std::move(options);
    s->slot = rec.slot.get();
    s->thread = std::thread([raw = s.get()] { raw->run(); });
    rec.watcher = s;
    s_ = std::move(s);
}

stall_monitor::~stall_monitor() {
    {
        std::lock_guard lock(s_->mu);
        s_->stop = true;
    }
    s_->cv.notify_all();
    s_->thread.join();
}

std::size_t stall_monitor::reports() const noexcept {
    return s_->reports.load(std::memory_order_relaxed);
}

}  // namespace greenfiber
