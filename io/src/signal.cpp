// POSIX signals on the hub, and run()'s Ctrl-C handling.

#include "greenfiber/signal.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>

#include <boost/asio/error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/system/system_error.hpp>

namespace greenfiber {

namespace {

// ---- process-wide: what a signal did before the first hub handled it ----------------------

// Asio's signal_set sets SIG_DFL when its last registration for a signal goes; we put back
// whatever was there before the first add_signal_handler() for it (a user's handler,
// SIG_IGN, or run()'s SIGINT handling).
struct saved_disposition {
    int users = 0;  // hubs with a handler for the signal
    struct sigaction prior {};
};

std::mutex table_mu;            // Serializes every change of a disposition made here.
saved_disposition table[NSIG];  // Guarded by table_mu.

bool is_default(const struct sigaction& sa) noexcept {
    return (sa.sa_flags & SA_SIGINFO) == 0 && sa.sa_handler == SIG_DFL;
}

// ---- per hub: the handlers and their signal_set --------------------------------------------

struct registry {
    explicit registry(hub& h) : set(h.context()) {}
    ~registry();

    void arm();
    bool remove(int signo) noexcept;
    static void on_signal(const boost::system::error_code& ec, int signo);

    boost::asio::signal_set set;
    std::map<int, std::shared_ptr<detail::unique_function<void(int)>>> handlers;
    bool waiting = false;  // an async_wait is pending on `set`
};

// This thread's registry, or null. Trivially destructible, so a completion that runs late
// during thread exit can still ask whether the registry is alive.
thread_local registry* t_registry = nullptr;

struct registry_owner {
    std::unique_ptr<registry> r;
    ~registry_owner() {
        t_registry = nullptr;
        r.reset();
    }
};

registry& this_registry() {
    hub& h = hub::current();
    // Constructed after the hub's thread_local, so destroyed before it: the signal_set
    // goes away while the hub's io_context is still alive.
    static thread_local registry_owner owner;
    if (!owner.r) {
        owner.r = std::make_unique<registry>(h);
        t_registry = owner.r.get();
    }
    return *owner.r;
}

registry::~registry() {
    while (!handlers.empty()) (void)remove(handlers.begin()->first);
}

void registry::arm() {
    if (waiting || handlers.empty()) return;
    waiting = true;
    set.async_wait(&registry::on_signal);
}

void registry::on_signal(const boost::system::error_code& ec, int signo) {
    registry* r = t_registry;
    if (r == nullptr) return;  // the thread is exiting
    r->waiting = false;
    if (!ec) {
        auto it = r->handlers.find(signo);
        if (it != r->handlers.end()) {
            auto fn = it->second;  // shared: the handler may remove or replace itself
            try {
                (*fn)(signo);
            } catch (const greenlet_exit&) {
                throw;  // the hub itself is being killed
            } catch (...) {
                report_failure(
                    {"greenfiber: the handler of signal " + std::to_string(signo) + " threw",
                     std::current_exception(), nullptr, report_severity::error, "signal"});
            }
        }
    }
    if (t_registry != nullptr) t_registry->arm();
}

bool registry::remove(int signo) noexcept {
    auto it = handlers.find(signo);
    if (it == handlers.end()) return false;
    handlers.erase(it);
    {
        std::lock_guard<std::mutex> lock(table_mu);
        boost::system::error_code ec;
        set.remove(signo, ec);
        saved_disposition& d = table[signo];
        if (d.users > 0 && --d.users == 0) {
            // Only if Asio let go (SIG_DFL): a signal_set of someone else's may still hold it.
            struct sigaction now {};
            if (::sigaction(signo, nullptr, &now) == 0 && is_default(now)) {
                (void)::sigaction(signo, &d.prior, nullptr);
            }
        }
    }
    if (handlers.empty()) {
        boost::system::error_code ec;
        set.cancel(ec);  // the pending wait ends (operation_aborted) and is not re-armed
    }
    return true;
}

// ---- run()'s SIGINT handling ---------------------------------------------------------------

// Read by the signal handler: lock-free atomics only.
std::atomic<int> sigint_fd{-1};         // the active guard's pipe (write end), or -1
std::atomic<int> sigints_seen{0};       // SIGINTs since the guard was installed
std::atomic<int> in_sigint_handler{0};  // handlers between reading sigint_fd and writing it
std::atomic<bool> guard_active{false};  // one guard per process
static_assert(std::atomic<int>::is_always_lock_free);

// The SIGINT handler while a guard is installed. Async-signal-safe: atomics, write(),
// sigaction(), raise().
void on_sigint(int) {
    const int saved_errno = errno;
    in_sigint_handler.fetch_add(1);
    const int fd = sigint_fd.load();
    if (fd < 0 || sigints_seen.fetch_add(1) > 0) {
        // The second SIGINT (or one that arrives after the guard went): the default action,
        // at once. SIGINT is blocked while this handler runs, so the raised one is
        // delivered, fatally, when the handler returns.
        in_sigint_handler.fetch_sub(1);
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        (void)::sigaction(SIGINT, &dfl, nullptr);
        (void)::raise(SIGINT);
        errno = saved_errno;
        return;
    }
    const char byte = 'i';
    (void)!::write(fd, &byte, 1);
    in_sigint_handler.fetch_sub(1);
    errno = saved_errno;
}

// Asio installs its handler without SA_ONSTACK, so the kernel would push its signal frame
// (up to 3.5 KiB) on whatever stack runs: a fiber's small stack too (stack.hpp, "Small
// stacks"). Every thread that runs greenlets has an alternate signal stack.
void on_alternate_stack(int signo) noexcept {
    struct sigaction sa {};
    if (::sigaction(signo, nullptr, &sa) != 0 || (sa.sa_flags & SA_ONSTACK) != 0) return;
    if ((sa.sa_flags & SA_SIGINFO) == 0 && (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN))
        return;
    sa.sa_flags |= SA_ONSTACK;
    (void)::sigaction(signo, &sa, nullptr);
}

void write_byte(int fd, char byte) noexcept {
    while (::write(fd, &byte, 1) < 0 && errno == EINTR) {
    }
}

}  // namespace

namespace detail {

void add_signal_handler(int signo, unique_function<void(int)> fn) {
    if (signo <= 0 || signo >= NSIG) {
        throw boost::system::system_error(
            boost::asio::error::invalid_argument,
            "greenfiber: add_signal_handler(" + std::to_string(signo) + ")");
    }
    registry& r = this_registry();
    auto entry = std::make_shared<unique_function<void(int)>>(std::move(fn));
    auto it = r.handlers.find(signo);
    if (it != r.handlers.end()) {
        it->second = std::move(entry);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(table_mu);
        saved_disposition& d = table[signo];
        struct sigaction prior {};
        if (d.users == 0) (void)::sigaction(signo, nullptr, &prior);
        r.set.add(signo);  // throws for SIGKILL, SIGSTOP
        on_alternate_stack(signo);
        if (d.users++ == 0) d.prior = prior;
    }
    r.handlers.emplace(signo, std::move(entry));
    r.arm();
}

}  // namespace detail

bool remove_signal_handler(int signo) noexcept {
    return t_registry != nullptr && t_registry->remove(signo);
}

std::size_t signal_handler_count() noexcept {
    return t_registry != nullptr ? t_registry->handlers.size() : 0;
}

namespace detail {

struct sigint_guard::state {
    hub* home = nullptr;  // Borrowed: the guard lives on the hub's thread, inside its life.
    target main{};        // Borrowed; used only while `active`.
    bool installed = false;
    bool active = true;        // Hub thread only; false once the guard is gone.
    bool interrupted = false;  // Hub thread only.
    int read_fd = -1;          // Owned, closed by the guard.
    int write_fd = -1;         // Owned, closed by the guard.
    struct sigaction prior {};
    std::thread watcher;  // Reads the pipe; joined by the guard.

    // The watcher thread: one byte per first SIGINT ('i'), 'q' to quit.
    static void watch(std::shared_ptr<state> s) {
        for (;;) {
            char byte = 0;
            const ssize_t n = ::read(s->read_fd, &byte, 1);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0 || byte == 'q') return;
            s->home->post([s] {
                if (!s->active || s->interrupted) return;
                s->interrupted = true;
                (void)s->main.cancel(s->main.task, "KeyboardInterrupt (SIGINT)");
            });
        }
    }
};

sigint_guard::sigint_guard(task_base& main)
    : sigint_guard(target{&main, [](void* t, std::string msg) {
                              return static_cast<task_base*>(t)->cancel(std::move(msg));
                          }}) {}

sigint_guard::sigint_guard(target main) : s_(std::make_shared<state>()) {
    s_->home = &hub::current();
    s_->main = main;
    // A handler of this hub's own says what SIGINT does here.
    if (t_registry != nullptr && t_registry->handlers.count(SIGINT) != 0) return;
    std::lock_guard<std::mutex> lock(table_mu);
    bool expected = false;
    if (!guard_active.compare_exchange_strong(expected, true)) return;  // another run() has it
    struct sigaction current {};
    if (::sigaction(SIGINT, nullptr, &current) != 0 || !is_default(current)) {
        guard_active = false;  // ignored or handled by someone: leave it alone (asyncio.Runner)
        return;
    }
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        guard_active = false;
        throw std::system_error(errno, std::generic_category(), "greenfiber: sigint_guard: pipe");
    }
    // The signal handler never blocks; the watcher blocks in read().
    (void)::fcntl(fds[1], F_SETFL, O_NONBLOCK);
    s_->read_fd = fds[0];
    s_->write_fd = fds[1];
    try {
        // The watcher takes no signal: they go to the program's own threads.
        sigset_t all, old;
        sigfillset(&all);
        (void)::pthread_sigmask(SIG_BLOCK, &all, &old);
        struct restore_mask {
            sigset_t& old;
            ~restore_mask() { (void)::pthread_sigmask(SIG_SETMASK, &old, nullptr); }
        } restore{old};
        s_->watcher = std::thread(&state::watch, s_);
    } catch (...) {
        ::close(fds[0]);
        ::close(fds[1]);
        guard_active = false;
        throw;
    }
    sigints_seen = 0;
    sigint_fd = fds[1];
    struct sigaction sa {};
    sa.sa_handler = &on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_ONSTACK;  // off a small stack (see on_alternate_stack)
    (void)::sigaction(SIGINT, &sa, &s_->prior);
    s_->installed = true;
}

sigint_guard::~sigint_guard() {
    s_->active = false;
    if (!s_->installed) return;
    {
        std::lock_guard<std::mutex> lock(table_mu);
        struct sigaction current {};
        // If someone replaced our handler meanwhile (add_signal_handler(SIGINT) inside run()),
        // leave theirs; ours comes back when they remove it, and then acts as the default.
        if (::sigaction(SIGINT, nullptr, &current) == 0 && (current.sa_flags & SA_SIGINFO) == 0 &&
            current.sa_handler == &on_sigint) {
            (void)::sigaction(SIGINT, &s_->prior, nullptr);
        }
        sigint_fd = -1;
    }
    // A handler that read the descriptor before it was cleared finishes its write first.
    while (in_sigint_handler.load() != 0) std::this_thread::yield();
    write_byte(s_->write_fd, 'q');
    s_->watcher.join();
    ::close(s_->read_fd);
    ::close(s_->write_fd);
    guard_active = false;
}

bool sigint_guard::installed() const noexcept {
    return s_->installed;
}

bool sigint_guard::interrupted() const noexcept {
    return s_->interrupted;
}

}  // namespace detail
}  // namespace greenfiber
