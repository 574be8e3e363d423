#pragma once
// Loopback servers for the HTTP tests: one that runs a script per connection (a server that
// misbehaves on purpose) and greenfiber's HTTP server. Both on this thread's hub, on a port
// the kernel picks, stopped gracefully when they go.

#include <chrono>
#include <functional>
#include <string>
#include <utility>

#include <greenfiber/http.hpp>
#include <greenfiber/server.hpp>
#include <greenfiber/socket.hpp>
#include <greenfiber/task.hpp>

#include "net_support.hpp"

namespace greenfiber::testing {

// Every connection runs `script(socket, n)`, n counting connections from 0.
struct scripted_server {
    explicit scripted_server(std::function<void(tcp::socket&, int)> script,
                             tcp::acceptor listener = loopback_listener())
        : srv(std::move(listener),
              [this, script = std::move(script)](tcp::socket s) { script(s, connections++); }) {
        port = srv.local_endpoint().port();
        loop = srv.start();
    }
    scripted_server(const scripted_server&) = delete;
    scripted_server& operator=(const scripted_server&) = delete;
    ~scripted_server() {
        srv.stop(std::chrono::milliseconds(100));
        loop.get();
    }
    std::string url(const std::string& path = "/") const {
        return "http://127.0.0.1:" + std::to_string(port) + path;
    }
    int connections = 0;
    server<tcp::protocol> srv;
    unsigned short port = 0;
    task<void> loop;
};

// greenfiber's HTTP server with handler `h`.
struct running_server : scripted_server {
    explicit running_server(http::handler h, http::server_options opts = {})
        : running_server(loopback_listener(), std::move(h), std::move(opts)) {}
    running_server(tcp::acceptor listener, http::handler h, http::server_options opts)
        : scripted_server(
              [h = std::move(h), opts](tcp::socket& s, int) { http::serve_connection(s, h, opts); },
              std::move(listener)) {}
};

}  // namespace greenfiber::testing
