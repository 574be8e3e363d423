// "Hello, World!" keep-alive HTTP/1.1 server on Boost.Beast over ONE Asio io_context run
// by N threads (default 2): Beast's own multi-threaded form (its http_server_async
// example), callbacks, a strand per connection so that a connection's handlers never run
// on two threads at once, one acceptor whose completions any thread may run. The anchor
// bench/net_cores compares greenfiber's multi-hub HTTP server with: the same response as
// bench/http_server.cpp (Content-Type text/plain, Content-Length 13, the body; to HEAD,
// the same headers without the body).
//
//   net_beast_mt_http PORT [--threads N]     (listens on 127.0.0.1:PORT)
//
// SIGTERM stops the io_context and the program exits with status 0; PORT 0 picks a free
// port and prints "listening on 127.0.0.1:N" (for bench/net_smoke.py).
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using boost::system::error_code;

// One connection: read a request, answer it, again until the peer closes or asks to.
// Every handler runs on the connection's strand; the object lives as long as a handler
// holds it (shared_from_this).
class session : public std::enable_shared_from_this<session> {
  public:
    explicit session(tcp::socket s) : stream_(std::move(s)) {}
    void start() { read(); }

  private:
    void read() {
        req_ = {};
        http::async_read(
            stream_, buffer_, req_,
            [self = shared_from_this()](error_code ec, std::size_t) { self->on_read(ec); });
    }
    void on_read(error_code ec) {
        if (ec) return close();  // end of stream, or a malformed request
        res_ = {http::status::ok, req_.version()};
        res_.set(http::field::content_type, "text/plain");
        res_.keep_alive(req_.keep_alive());
        res_.body() = "Hello, World!";
        res_.prepare_payload();
        auto done = [self = shared_from_this()](error_code ec, std::size_t) { self->on_write(ec); };
        if (req_.method() == http::verb::head) {
            // RFC 9110 §9.3.2: GET's headers and no body.
            sr_.emplace(res_);
            http::async_write_header(stream_, *sr_, std::move(done));
        } else {
            http::async_write(stream_, res_, std::move(done));
        }
    }
    void on_write(error_code ec) {
        sr_.reset();
        if (ec || !res_.keep_alive()) return close();
        read();
    }
    void close() {
        error_code ignored;
        stream_.shutdown(tcp::socket::shutdown_send, ignored);
    }

    tcp::socket stream_;  // its executor is the connection's strand
    beast::flat_buffer buffer_;
    http::request<http::string_body> req_;
    http::response<http::string_body> res_;
    std::optional<http::response_serializer<http::string_body>> sr_;
};

// Accepts forever; each connection gets a strand of its own on the shared io_context.
void accept(asio::io_context& ctx, tcp::acceptor& acceptor, asio::steady_timer& retry) {
    acceptor.async_accept(asio::make_strand(ctx), [&](error_code ec, tcp::socket s) {
        if (ec) {
            if (ec == asio::error::operation_aborted) return;
            // Out of descriptors, say: wait a little instead of spinning.
            std::fprintf(stderr, "accept: %s\n", ec.message().c_str());
            retry.expires_after(std::chrono::milliseconds(10));
            retry.async_wait([&](error_code) { accept(ctx, acceptor, retry); });
            return;
        }
        s.set_option(tcp::no_delay(true), ec);
        std::make_shared<session>(std::move(s))->start();
        accept(ctx, acceptor, retry);
    });
}

[[noreturn]] void usage(const char* argv0) {
    std::fprintf(stderr, "usage: %s PORT [--threads N]\n", argv0);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2 && argc != 4) usage(argv[0]);
    char* end = nullptr;
    const long port = std::strtol(argv[1], &end, 10);
    if (*end != '\0' || port < 0 || port > 65535) usage(argv[0]);
    long threads = 2;
    if (argc == 4) {
        if (std::strcmp(argv[2], "--threads") != 0) usage(argv[0]);
        threads = std::strtol(argv[3], &end, 10);
        if (*end != '\0' || threads < 1 || threads > 256) usage(argv[0]);
    }
    try {
        asio::io_context ctx(static_cast<int>(threads));
        const tcp::endpoint ep(asio::ip::address_v4::loopback(), static_cast<unsigned short>(port));
        tcp::acceptor acceptor(ctx);
        acceptor.open(ep.protocol());
        acceptor.set_option(tcp::acceptor::reuse_address(true));
        acceptor.bind(ep);
        acceptor.listen(4096);
        if (port == 0) {
            std::printf("listening on 127.0.0.1:%u\n", acceptor.local_endpoint().port());
            std::fflush(stdout);
        }
        asio::signal_set stop(ctx, SIGTERM);
        stop.async_wait([&](error_code, int) { ctx.stop(); });
        asio::steady_timer retry(ctx);
        accept(ctx, acceptor, retry);
        std::vector<std::thread> pool;
        for (long i = 1; i < threads; ++i) pool.emplace_back([&ctx] { ctx.run(); });
        ctx.run();
        for (auto& t : pool) t.join();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "server: %s\n", e.what());
        return 1;
    }
    return 0;
}
