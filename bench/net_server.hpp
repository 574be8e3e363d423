// What the network benchmark servers (echo_server, http_server) share: the command line,
// the listener on 127.0.0.1, the accept loop that spawns one task per connection, and a
// clean exit on SIGTERM. Shaped like the anchors' asio_common.hpp, so that the servers
// compared by shared/anchors/net/run differ only in the library underneath.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include <greenfiber/hub_group.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/server.hpp>
#include <greenfiber/signal.hpp>
#include <greenfiber/socket.hpp>
#include <greenfiber/stack.hpp>
#include <greenfiber/task.hpp>

namespace bench::net {

namespace gf = greenfiber;
namespace asio = boost::asio;
using boost::system::error_code;

// The command line: PORT, then --NAME VALUE pairs for the knobs each server declares.
// PORT 0 picks a free port and prints "listening on 127.0.0.1:N" once (for the smoke
// tests); otherwise nothing is printed.
struct options {
    unsigned short port = 0;
    std::size_t stack = 0;   // --stack BYTES: greenlet stack size (0: the library default)
    std::size_t buffer = 0;  // --buffer BYTES: the server's read buffer
    std::size_t hubs = 1;    // --hubs N: N threads, each a hub with its own listener
    // --accept reuseport|one (with --hubs N > 1): a SO_REUSEPORT listener per hub (the
    // default, multi_server), or one acceptor on hub 0 handing each connection to the hubs
    // in turn through hub_group::spawn_on() (the design bench/net_cores measures against it).
    bool one_acceptor = false;
    // --small-stack BYTES: each session on a small stack of that size (stack.hpp, "Small
    // stacks"); 0: paged stacks of --stack. Not with --accept one.
    std::size_t small_stack = 0;
};

inline options parse(int argc, char** argv, options defaults) {
    auto usage = [&] {
        std::fprintf(stderr,
                     "usage: %s PORT [--stack BYTES] [--small-stack BYTES] [--buffer BYTES] "
                     "[--hubs N] [--accept reuseport|one]\n",
                     argv[0]);
        std::exit(2);
    };
    auto number = [&](const char* s, long lo, long hi) {
        char* end = nullptr;
        const long v = std::strtol(s, &end, 10);
        if (end == s || *end != '\0' || v < lo || v > hi) usage();
        return v;
    };
    if (argc < 2 || (argc % 2) != 0) usage();
    options o = defaults;
    o.port = static_cast<unsigned short>(number(argv[1], 0, 65535));
    for (int i = 2; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--stack") == 0) {
            o.stack = static_cast<std::size_t>(number(argv[i + 1], 16384, 1 << 26));
        } else if (std::strcmp(argv[i], "--hubs") == 0) {
            o.hubs = static_cast<std::size_t>(number(argv[i + 1], 1, 256));
        } else if (std::strcmp(argv[i], "--accept") == 0) {
            if (std::strcmp(argv[i + 1], "one") == 0) {
                o.one_acceptor = true;
            } else if (std::strcmp(argv[i + 1], "reuseport") == 0) {
                o.one_acceptor = false;
            } else {
                usage();
            }
        } else if (std::strcmp(argv[i], "--small-stack") == 0) {
            o.small_stack = static_cast<std::size_t>(
                number(argv[i + 1], 1024, static_cast<long>(gf::small_stack_max())));
        } else if (std::strcmp(argv[i], "--buffer") == 0) {
            o.buffer = static_cast<std::size_t>(number(argv[i + 1], 1, 1 << 20));
        } else {
            usage();
        }
    }
    if (o.small_stack != 0 && o.one_acceptor) usage();
    return o;
}

// Listens on 127.0.0.1:o.port and runs `session(socket)` in a detached task of its own
// for each connection, until SIGTERM: that cancels the accept loop, run() then cancels and
// joins every session, and the process exits with status 0. `session` takes the socket as
// `gf::tcp::socket&&`, so the socket stays in the task's own state (no copy on its stack).
// --hubs N (N > 1): a hub_group of N threads and a multi_server on it, one SO_REUSEPORT
// listener per hub (server.hpp says why). The main thread only waits for SIGTERM, then
// stops the servers and the group. Same session, same socket options as with one hub.
// How many connections each hub got, on stderr at SIGTERM: "connections per hub: A B ..."
// (bench/net_cores reads it for the evenness of the split).
inline void print_split(const std::vector<std::size_t>& per_hub) {
    std::fprintf(stderr, "connections per hub:");
    for (std::size_t n : per_hub) std::fprintf(stderr, " %zu", n);
    std::fprintf(stderr, "\n");
}

// Prints the port the kernel chose, when it chose it (the driver reads this line).
inline void print_port(const options& o, unsigned short port) {
    if (o.port != 0) return;
    std::printf("listening on 127.0.0.1:%u\n", port);
    std::fflush(stdout);
}

// The loopback listener of a one-acceptor server.
inline gf::tcp::acceptor open_listener(const options& o) {
    const gf::tcp::endpoint ep(asio::ip::address_v4::loopback(), o.port);
    gf::tcp::acceptor acceptor(ep, true, 4096);
    print_port(o, acceptor.local_endpoint().port());
    return acceptor;
}

// The next connection. A failed accept (out of descriptors, say) is printed and retried
// after a short sleep instead of spinning.
inline gf::tcp::socket accept_next(gf::tcp::acceptor& acceptor) {
    for (;;) {
        error_code ec;
        gf::tcp::socket s = acceptor.accept(ec);
        if (!ec) return s;
        std::fprintf(stderr, "accept: %s\n", ec.message().c_str());
        gf::sleep(std::chrono::milliseconds(10));
    }
}

// Echo and HTTP answer small messages at once: no Nagle delay. A failure leaves it on.
inline void set_no_delay(gf::tcp::socket& s) {
    error_code ignored;
    s.native().set_option(gf::tcp::protocol::no_delay(true), ignored);
}

// --accept one: hub 0 accepts every connection and hands it to hub (k mod N) for the k-th
// connection, itself included: the descriptor leaves hub 0's reactor (release()) and the
// session adopts it on its own hub, where it runs to the end. The remote_task is dropped
// (the session is detached); its completion still crosses back to hub 0's thread.
template <class Session>
void one_acceptor_loop(gf::hub_group& group, const options& o, Session session,
                       std::vector<std::atomic<std::size_t>>& per_hub) {
    gf::tcp::acceptor acceptor = open_listener(o);
    for (std::size_t k = 0;; ++k) {
        gf::tcp::socket s = accept_next(acceptor);
        error_code ec;
        const std::size_t i = k % group.size();
        per_hub[i].fetch_add(1, std::memory_order_relaxed);
        const int fd = s.native().release(ec);
        if (ec) continue;
        try {
            (void)group.spawn_on(i, [fd, session] {
                gf::hub& h = gf::hub::current();
                gf::tcp::socket adopted(
                    h, gf::tcp::socket::native_type(h.context(), asio::ip::tcp::v4(), fd));
                set_no_delay(adopted);
                session(std::move(adopted));
            });
        } catch (const gf::hub_group_stopped&) {
            ::close(fd);
            return;
        }
    }
}

template <class Session>
int run_multi_hub_server(const options& o, Session session) {
    // Before the group: its stop joins the hubs that count into it.
    std::vector<std::atomic<std::size_t>> per_hub(o.hubs);
    try {
        gf::hub_group group(o.hubs);
        gf::run([&] {
            gf::add_signal_handler(
                SIGTERM, [main = gf::current_task().share_any()] { (void)main.cancel("SIGTERM"); });
            if (o.one_acceptor) {
                auto acceptor =
                    group.spawn_on(0, [&] { one_acceptor_loop(group, o, session, per_hub); });
                try {
                    acceptor.get();  // until SIGTERM cancels the caller, and with it the loop
                } catch (const gf::cancelled_error&) {
                    std::vector<std::size_t> split;
                    for (auto& n : per_hub) split.push_back(n.load());
                    print_split(split);
                    throw;
                }
                return;
            }
            const gf::tcp::endpoint ep(asio::ip::address_v4::loopback(), o.port);
            gf::multi_server srv(
                group, ep,
                [session](gf::tcp::socket s) {
                    set_no_delay(s);
                    session(std::move(s));
                },
                gf::server_options{.small_stack = o.small_stack});
            print_port(o, srv.local_endpoint().port());
            try {
                gf::sleep(std::chrono::hours::max());  // until SIGTERM cancels it
            } catch (const gf::cancelled_error&) {
                std::vector<std::size_t> split;
                for (std::size_t i = 0; i < srv.hubs(); ++i) split.push_back(srv.served(i));
                print_split(split);
                throw;
            }
        });
    } catch (const gf::cancelled_error&) {
        return 0;  // SIGTERM
    } catch (const std::exception& e) {
        std::fprintf(stderr, "server: %s\n", e.what());
        return 1;
    }
    return 0;
}

template <class Session>
int run_server(const options& o, Session session) {
    // Stacks of the chosen size come from the pool's slabs, like the default ones.
    if (o.stack != 0) gf::set_default_stack_size(o.stack);
    if (o.hubs > 1) return run_multi_hub_server(o, session);
    try {
        gf::run([&] {
            gf::add_signal_handler(
                SIGTERM, [main = gf::current_task().share_any()] { (void)main.cancel("SIGTERM"); });
            gf::tcp::acceptor acceptor = open_listener(o);
            for (;;) {
                gf::tcp::socket s = accept_next(acceptor);
                set_no_delay(s);
                (void)gf::spawn(gf::spawn_options{.small_stack = o.small_stack}, session,
                                std::move(s));
            }
        });
    } catch (const gf::cancelled_error&) {
        return 0;  // SIGTERM
    } catch (const std::exception& e) {
        std::fprintf(stderr, "server: %s\n", e.what());
        return 1;
    }
    return 0;
}

}  // namespace bench::net
