// 003_echo_server: gevent's classic echo server: one thread serves several connections at
// once, a fiber per connection, and every blocking call suspends only its own fiber.
//
// Ports seeds/003 (the "为什么要用asyncio" tutorial), sections "I/O多路复用" and "根本思路":
// one process or thread handles many connections, each one when it is ready (I/O
// multiplexing), and coroutines are the light unit of work that makes that simple to write.
// The tutorial has no code there; this is the example every green-thread library starts
// with, gevent's examples/echoserver.py: StreamServer(('127.0.0.1', 16000), echo) runs
// echo(socket, address) in a greenlet of its own for each connection; echo() sends
// "Welcome to the echo server! Type quit to exit.", then reads lines with readline() and
// sends each one back, until the client sends "quit" ("client quit") or closes
// ("client disconnected").
//
// Here server<tcp::protocol> is the StreamServer: start() runs its accept loop in a task
// and each connection's handler in a task of its own; stop() is the graceful stop (close
// the listener, let the handlers finish, cancel those that do not). (serve(listener, echo)
// is the same server run by the calling task until that task is cancelled, which then stops
// it the same way.) The handler's code is written as if it blocked (asio::read_until on a
// greenfiber socket is readline()), yet the server, the handlers and the clients all share
// one thread. The listener binds 127.0.0.1 port 0 (the kernel picks a free port; it is
// never printed). The clients are driven step by step from the main task, and the server
// prints before it answers, so the output is the same on every run:
// - step 1: client A connects, gets the welcome line and two echoes;
// - step 2: while A stays connected (its handler waits in readline()), client B is served
//   too, then sends "quit";
// - step 3: A sends one more line, then closes its side: "client disconnected";
// - step 4: the server stops gracefully; a new connection is then refused.

#include <chrono>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>
#include <utility>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/read_until.hpp>

#include <greenfiber/loop.hpp>
#include <greenfiber/server.hpp>
#include <greenfiber/socket.hpp>
#include <greenfiber/task.hpp>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using greenfiber::tcp::socket;

// Each read and write of the handlers and clients gives up after this long, so that a bug
// cannot hang the program.
constexpr auto io_timeout = 5s;

// Reads one line ending in '\n' (readline()); returns it without the line end, or nothing
// with `eof` set when the peer closed first. `pending` keeps what was read past the line.
std::string readline(socket& s, std::string& pending, bool& eof) {
    boost::system::error_code ec;
    const std::size_t n = asio::read_until(s, asio::dynamic_buffer(pending), "\n", ec);
    eof = ec == asio::error::eof;
    if (ec && !eof) throw boost::system::system_error(ec, "readline");
    if (eof) return {};
    std::string line = pending.substr(0, n);
    pending.erase(0, n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    return line;
}

// gevent's echo(socket, address); runs in a task of its own for each connection.
void echo(socket s) {
    s.set_timeout(io_timeout);
    std::cout << "server: new connection\n";
    const std::string welcome = "Welcome to the echo server! Type quit to exit.\r\n";
    s.write(asio::buffer(welcome));
    std::string pending;
    for (;;) {
        bool eof = false;
        const std::string line = readline(s, pending, eof);
        if (eof) {
            std::cout << "server: client disconnected\n";
            return;  // the server closes the socket when the handler returns
        }
        if (line == "quit") {
            std::cout << "server: client quit\n";
            return;
        }
        // Printed before the echo is sent, so it always comes before the client's line.
        std::cout << "server: echoing '" << line << "'\n";
        s.write(asio::buffer(line + "\r\n"));
    }
}

// One client connection, narrated.
class client {
  public:
    client(std::string name, const greenfiber::tcp::endpoint& ep) : name_(std::move(name)) {
        s_.set_timeout(io_timeout);
        s_.connect(ep);
        const std::string welcome = receive();
        std::cout << name_ << ": " << welcome << "\n";
    }

    // Sends `line` and prints the echo.
    void say(const std::string& line) {
        s_.write(asio::buffer(line + "\r\n"));
        const std::string echoed = receive();
        std::cout << name_ << ": sent '" << line << "', got back '" << echoed << "'\n";
    }

    // Sends "quit" and waits for the server to close the connection.
    void quit() {
        s_.write(asio::buffer(std::string("quit\r\n")));
        expect_close();
    }

    // Closes its sending side (the server reads end of file) and waits for the server to
    // close the connection.
    void disconnect() {
        s_.shutdown(asio::socket_base::shutdown_send);
        expect_close();
    }

  private:
    std::string receive() {
        bool eof = false;
        std::string line = readline(s_, pending_, eof);
        if (eof) throw std::runtime_error(name_ + ": the server closed the connection");
        return line;
    }

    void expect_close() {
        bool eof = false;
        (void)readline(s_, pending_, eof);
        std::cout << name_ << ": " << (eof ? "the server closed the connection" : "NOT closed")
                  << "\n";
    }

    std::string name_;
    socket s_;
    std::string pending_;
};

void main_task() {
    // StreamServer(('127.0.0.1', 0), echo).start()
    greenfiber::server<greenfiber::tcp::protocol> srv(
        greenfiber::tcp::acceptor(greenfiber::tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
        echo, greenfiber::server_options{.name = "echo"});
    const greenfiber::tcp::endpoint ep = srv.local_endpoint();
    greenfiber::task<void> serving = srv.start();
    std::cout << "Starting echo server on 127.0.0.1 (a free port)\n";

    // Step 1: client A.
    std::cout << "== step 1: client A\n";
    client a("client A", ep);
    a.say("hello");
    a.say("one fiber per connection");

    // Step 2: client B while A stays connected: two handlers run at once on one thread.
    std::cout << "== step 2: client B, while A stays connected\n";
    client b("client B", ep);
    std::cout << "connections open at the server: " << srv.active() << "\n";
    b.say("a second client");
    b.quit();

    // Step 3: A was never blocked by B: it is served again, then closes its side.
    std::cout << "== step 3: client A again, then it disconnects\n";
    a.say("still here");
    a.disconnect();

    // Step 4: the graceful stop. Every handler has finished, so none is cancelled.
    std::cout << "== step 4: stop the server\n";
    const std::size_t cancelled = srv.stop(1s);
    serving.get();
    std::cout << "server stopped: " << srv.served() << " connections served, " << cancelled
              << " handlers cancelled\n";
    socket late;
    boost::system::error_code ec;
    late.connect(ep, 1s, ec);
    std::cout << "a new connection: "
              << (ec == asio::error::connection_refused ? "refused" : "NOT refused") << "\n";
}

int demo() {
    greenfiber::run(main_task);
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "003_echo_server: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "003_echo_server: unknown exception\n";
    }
    return 1;
}
