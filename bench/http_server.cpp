// "Hello, World!" keep-alive HTTP/1.1 server: Boost.Beast's *synchronous* http::read and
// http::write over greenfiber::tcp::socket (a SyncReadStream and SyncWriteStream whose
// calls suspend only the calling task), one task per connection, one thread. The
// greenfiber row of shared/anchors/net/run's http scenario (bench/net runs it there), next
// to beast_spawn_http, the same session on asio::spawn with http::async_read/async_write:
// it sends the same response (Content-Type text/plain, Content-Length 13, the body; to HEAD,
// the same headers without the body).
//
//   http_server PORT [--stack BYTES] [--hubs N]     (listens on 127.0.0.1:PORT)
//
// --hubs N runs N threads, each a hub with its own SO_REUSEPORT listener (multi_server).
//
// SIGTERM ends it with status 0; PORT 0 picks a free port and prints it (net_server.hpp).
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "net_server.hpp"

namespace {

using namespace bench::net;
namespace beast = boost::beast;
namespace http = beast::http;

void serve(gf::tcp::socket&& socket) {
    beast::flat_buffer buffer;
    error_code ec;
    for (;;) {
        http::request<http::string_body> req;
        http::read(socket, buffer, req, ec);
        if (ec) break;  // end of stream, or a malformed request
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.set(http::field::content_type, "text/plain");
        res.keep_alive(req.keep_alive());
        res.body() = "Hello, World!";
        res.prepare_payload();
        if (req.method() == http::verb::head) {
            // RFC 9110 §9.3.2: GET's headers (Content-Length 13) and no body, or a keep-alive
            // client would read the body as the start of the next response.
            http::response_serializer<http::string_body> sr{res};
            http::write_header(socket, sr, ec);
        } else {
            http::write(socket, res, ec);
        }
        if (ec || !res.keep_alive()) break;
    }
    socket.shutdown(asio::socket_base::shutdown_send, ec);
}

}  // namespace

int main(int argc, char** argv) {
    // Beast's parser and serializer run on the task's stack: keep the library's default.
    return run_server(parse(argc, argv, {}), &serve);
}
