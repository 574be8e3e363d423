// 003_c10k: the 10K problem: 10 000 connections open at once, each served by straight-line
// code in a fiber of its own, one thread on each side.
//
// Ports seeds/003 (the "为什么要用asyncio" tutorial), sections "10K问题", "I/O多路复用" and
// "根本思路". The 10K problem is serving 10 000 clients at once; a process or a thread per
// client costs too much (memory, scheduling, creation), so one process or thread handles
// many connections through I/O multiplexing: it asks the kernel which of them are ready
// and works only on those.
// - select: scans every descriptor it is given, each time, and copies the whole set between
//   user space and the kernel on every call; the set has a fixed maximum size (FD_SETSIZE).
// - poll: the same scan and copy, without the fixed maximum (a list instead of a bit set);
//   level-triggered: a ready descriptor not handled is reported again and again.
// - epoll: one descriptor stands for the whole interest set, kept in the kernel, so nothing
//   is copied per call; the kernel reports only the ready descriptors (no scan), edge- or
//   level-triggered, with no maximum.
// The tutorial's "根本思路": let the kernel do the control work (which connection is ready)
// and the program the data work, with coroutines as units lighter than processes or
// threads. The tutorial has no code here; this sample is the demonstration.
//
// greenfiber's hub is exactly that: a fiber that must wait for a socket registers it with
// the hub's epoll set (through Asio's reactor) and switches away; the hub sleeps in
// epoll_wait and switches back to exactly the fibers whose sockets became ready. Each
// connection's code reads like blocking code (connect, write a line, read the echo),
// with a 32 KiB stack per fiber where a thread would reserve megabytes.
//
// The per-process descriptor limit here is 20 000, and 10 000 connections need 10 000
// descriptors on each side, so the program runs as two processes: it starts itself again
// (posix_spawn of /proc/self/exe with --server) as the server, an echo server<> on
// 127.0.0.1 (a free port, never printed) that reports its port through a pipe. The parent
// then runs 10 000 client fibers: each connects, sends a line and checks the echo, then
// keeps its connection open until every client has got its echo, so all 10 000 are open
// at the same moment on both sides. At most 500 connects are in progress at a time, so
// the server's accept queue (somaxconn) never overflows (an overflow costs a one-second
// SYN retransmission). The parent counts the connections open at once; the server counts
// its handlers running at once and reports them through the pipe when it stops. The
// parent stops it by PID (SIGTERM: a graceful stop) and waits for it. Both processes raise
// their descriptor soft limit to the hard limit first. Every wait has a deadline, so a
// failure ends the program instead of hanging it.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/address_v4.hpp>

#include <greenfiber/combinators.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/server.hpp>
#include <greenfiber/signal.hpp>
#include <greenfiber/socket.hpp>
#include <greenfiber/sync.hpp>
#include <greenfiber/task.hpp>

extern char** environ;

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

constexpr int connections = 10000;
constexpr std::size_t connects_in_flight = 500;
constexpr std::size_t stack_size = 32 * 1024;  // per fiber, on both sides
constexpr auto run_limit = 40s;                // bounds the whole client run

[[noreturn]] void throw_errno(const char* what) {
    throw std::system_error(errno, std::generic_category(), what);
}

// Raises the soft limit on open descriptors to the hard limit.
void raise_descriptor_limit() {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0) throw_errno("getrlimit");
    r.rlim_cur = r.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &r) != 0) throw_errno("setrlimit");
}

// ---------------------------------------------------------------- the server process

// The handlers running now, and the most that ran at once.
struct echo_counts {
    std::size_t running = 0;
    std::size_t peak = 0;
};

// Echoes what it reads until the client closes; counts itself in `counts` meanwhile.
void echo(greenfiber::tcp::socket s, echo_counts& counts) {
    ++counts.running;
    counts.peak = std::max(counts.peak, counts.running);
    struct leave {
        echo_counts& c;
        ~leave() { --c.running; }
    } guard{counts};
    s.set_timeout(run_limit);  // no read or write of a handler waits longer
    std::array<char, 256> buf{};
    for (;;) {
        boost::system::error_code ec;
        const std::size_t n = s.read_some(asio::buffer(buf), ec);
        if (ec) return;  // end of file: the client closed
        s.write(asio::buffer(buf.data(), n));
    }
}

// Writes `line` to this process's stdout (the pipe to the parent) at once.
void report(const std::string& line) {
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
}

// The child: serves until SIGTERM, then stops gracefully and reports its counts.
void server_main() {
    echo_counts counts;
    greenfiber::server<greenfiber::tcp::protocol> srv(
        greenfiber::tcp::acceptor(greenfiber::tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
        [&counts](greenfiber::tcp::socket s) { echo(std::move(s), counts); },
        greenfiber::server_options{.stack_size = stack_size, .name = "c10k"});
    greenfiber::event stop;
    greenfiber::add_signal_handler(SIGTERM, [&stop] { stop.set(); });
    greenfiber::task<void> serving = srv.start();
    report(std::to_string(srv.local_endpoint().port()) + "\n");  // the parent may connect

    if (!stop.wait_for(2 * run_limit)) std::cerr << "003_c10k server: no SIGTERM came\n";
    (void)greenfiber::remove_signal_handler(SIGTERM);
    const std::size_t cancelled = srv.stop(5s);
    serving.get();
    report(std::to_string(srv.served()) + " " + std::to_string(counts.peak) + " " +
           std::to_string(cancelled) + "\n");
}

// ---------------------------------------------------------------- the client process

// Reads one line from `fd` (a pipe), waiting at most until `dl`. Empty at end of file.
std::string read_line(int fd, greenfiber::deadline dl) {
    std::string line;
    for (;;) {
        char c = 0;
        const ssize_t n = ::read(fd, &c, 1);
        if (n == 1) {
            if (c == '\n') return line;
            line += c;
        } else if (n == 0) {
            return line;
        } else if (errno == EAGAIN) {
            greenfiber::wait_readable(fd, dl);
        } else if (errno != EINTR) {
            throw_errno("read from the server process");
        }
    }
}

// The server process: started by the constructor, stopped (SIGKILL if still running) and
// waited for by the destructor. Its stdout is a pipe to this process.
class server_process {
  public:
    server_process() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2");
        out_ = fds[0];
        // Only this end is non-blocking (read_line waits on the hub); the child's stdout
        // stays an ordinary blocking descriptor.
        if (::fcntl(out_, F_SETFL, O_NONBLOCK) != 0) throw_errno("fcntl");
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);  // not O_CLOEXEC
        const std::string parent = std::to_string(::getpid());
        char exe[] = "/proc/self/exe";
        char flag[] = "--server";
        std::vector<char*> argv = {exe, flag, const_cast<char*>(parent.c_str()), nullptr};
        const int rc = ::posix_spawn(&pid_, exe, &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(fds[1]);
        if (rc != 0) {
            ::close(out_);
            throw std::system_error(rc, std::generic_category(), "posix_spawn");
        }
    }
    ~server_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        ::close(out_);
    }
    server_process(const server_process&) = delete;
    server_process& operator=(const server_process&) = delete;

    // Its stdout.
    int output() const noexcept { return out_; }

    // Sends SIGTERM and waits for it to exit, polling without blocking the hub. Returns
    // its wait status.
    int terminate(greenfiber::deadline dl) {
        if (::kill(pid_, SIGTERM) != 0) throw_errno("kill");
        for (;;) {
            int status = 0;
            const pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                pid_ = 0;
                return status;
            }
            if (r < 0 && errno != EINTR) throw_errno("waitpid");
            if (std::chrono::steady_clock::now() >= dl.at()) {
                throw std::runtime_error("the server process did not stop");
            }
            greenfiber::sleep(10ms);
        }
    }

  private:
    pid_t pid_ = 0;
    int out_ = -1;
};

// What the client fibers share.
struct client_state {
    greenfiber::tcp::endpoint server;
    greenfiber::deadline dl;
    greenfiber::semaphore connecting{connects_in_flight};
    greenfiber::event all_done;  // every client has its echo, or has failed
    int finished = 0;
    int echoed = 0;
    int open_now = 0;
    int peak_open = 0;
    std::string first_error;
};

// One client: connect, send a line, check the echo, then hold the connection open until
// every client is done.
void client(int i, client_state& st) {
    greenfiber::tcp::socket s;
    bool ok = false;
    try {
        st.connecting.acquire();
        try {
            s.connect(st.server, st.dl);
            const std::string line = "client " + std::to_string(i) + "\n";
            s.write(asio::buffer(line), st.dl);
            std::string echo(line.size(), '\0');
            s.read(asio::buffer(echo), st.dl);
            ok = echo == line;
            if (!ok && st.first_error.empty()) st.first_error = "a wrong echo";
        } catch (...) {
            st.connecting.release();
            throw;
        }
        st.connecting.release();
    } catch (const std::exception& e) {
        if (st.first_error.empty()) st.first_error = e.what();
    }
    if (ok) {
        ++st.echoed;
        st.peak_open = std::max(st.peak_open, ++st.open_now);
    }
    if (++st.finished == connections) st.all_done.set();
    if (ok) {
        (void)st.all_done.wait_until(st.dl.at());
        --st.open_now;
    }
}  // the socket closes here

void client_main() {
    const greenfiber::deadline dl(run_limit);
    server_process child;
    const std::string port = read_line(child.output(), dl);
    if (port.empty()) throw std::runtime_error("the server process did not start");
    std::cout << "server process started: an echo server on 127.0.0.1 (a free port)\n";

    client_state st;
    st.server = greenfiber::tcp::endpoint(asio::ip::address_v4::loopback(),
                                          static_cast<unsigned short>(std::stoi(port)));
    st.dl = dl;
    greenfiber::spawn_options small_stack;
    small_stack.stack_size = stack_size;
    std::vector<greenfiber::task<void>> clients;
    clients.reserve(connections);
    for (int i = 0; i < connections; ++i) {
        clients.push_back(greenfiber::spawn(small_stack, client, i, std::ref(st)));
        // Let the clients spawned so far run: spawning all 10 000 in one go would keep the
        // loop from running for longer than the hub's watchdog allows.
        if (i % 500 == 499) greenfiber::yield_now();
    }
    (void)greenfiber::wait(clients);

    std::cout << connections << " client fibers: " << st.echoed << " got their line back\n";
    if (st.echoed == connections && st.peak_open == connections) {
        std::cout << connections << " connections held at once: all echoed\n";
    } else {
        std::cout << "NOT all held at once: " << st.peak_open << " at most, " << st.echoed
                  << " echoed; first error: " << st.first_error << "\n";
    }

    // Stop the server by PID and collect its report: connections served, handlers running
    // at once at the peak, handlers cancelled by the stop.
    const int status = child.terminate(dl);
    const std::string counts = read_line(child.output(), dl);
    std::size_t served = 0, peak = 0, cancelled = 0;
    if (std::sscanf(counts.c_str(), "%zu %zu %zu", &served, &peak, &cancelled) != 3) {
        throw std::runtime_error("the server process did not report its counts");
    }
    std::cout << "the server process: " << served << " connections served, " << peak
              << " handled at once, " << cancelled << " handlers cancelled\n";
    std::cout << "the server process stopped by SIGTERM: "
              << (WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "exited cleanly"
                                                                : "did NOT exit cleanly")
              << "\n";
}

// The server child's entry: dies with its parent, and serves only if the parent is alive.
int server_entry(const char* parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (std::to_string(::getppid()) != parent) return 1;
    raise_descriptor_limit();
    greenfiber::run(server_main);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const bool is_server = argc == 3 && std::strcmp(argv[1], "--server") == 0;
    try {
        if (is_server) return server_entry(argv[2]);
        raise_descriptor_limit();
        greenfiber::run(client_main);
        return 0;
    } catch (const std::exception& e) {
        std::cerr << (is_server ? "003_c10k server: " : "003_c10k: ") << e.what() << "\n";
    } catch (...) {
        std::cerr << (is_server ? "003_c10k server: " : "003_c10k: ") << "unknown exception\n";
    }
    return 1;
}
