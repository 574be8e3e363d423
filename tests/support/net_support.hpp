#pragma once
// Helpers for the socket-level tests: a loopback listener, a connected pair, an echo
// handler, a count of open descriptors and a collector of the hub's reports. All of them on
// this thread's hub.

#include <fcntl.h>

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

#include <greenfiber/hub.hpp>
#include <greenfiber/socket.hpp>
#include <greenfiber/task.hpp>

namespace greenfiber::testing {

// 127.0.0.1 on a port the kernel picks.
inline tcp::endpoint loopback_any() {
    return tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0);
}

inline tcp::acceptor loopback_listener() {
    return tcp::acceptor(loopback_any());
}

// A connected TCP pair over loopback. `a` and `b` name the same two ends.
struct tcp_pair {
    tcp::acceptor listener{loopback_any()};
    tcp::socket client;
    tcp::socket server;
    tcp::socket& a = client;
    tcp::socket& b = server;
    tcp_pair() {
        auto t = spawn([this] { return listener.accept(); });
        client.connect(listener.local_endpoint());
        server = t.get();
    }
    tcp_pair(const tcp_pair&) = delete;
    tcp_pair& operator=(const tcp_pair&) = delete;
};

// A connection handler that echoes what it reads until the peer closes or an error ends it.
inline void echo_until_eof(tcp::socket s) {
    std::array<char, 256> buf{};
    for (;;) {
        boost::system::error_code ec;
        const std::size_t n = s.read_some(boost::asio::buffer(buf), ec);
        if (ec) return;
        s.write(boost::asio::buffer(buf.data(), n));
    }
}

// Descriptors open in this process (below 4096).
inline int open_fds() {
    int n = 0;
    for (int fd = 0; fd < 4096; ++fd) {
        if (::fcntl(fd, F_GETFD) != -1) ++n;
    }
    return n;
}

// Collects what the hub reports while it lives.
struct reports {
    std::vector<std::string> messages;
    report_handler previous;
    reports() {
        previous = hub::current().set_exception_handler(
            [this](const failure_report& r) { messages.emplace_back(r.message); });
    }
    ~reports() { hub::current().set_exception_handler(std::move(previous)); }
    reports(const reports&) = delete;
    reports& operator=(const reports&) = delete;
};

}  // namespace greenfiber::testing
