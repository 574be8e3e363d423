// Echo server on greenfiber: one task per connection, one thread. The greenfiber row of
// shared/anchors/net/run's echo scenarios (bench/net runs it there), next to Boost.Asio's
// callback and asio::spawn servers, which it mirrors: read_some, write all of it, again.
//
//   echo_server PORT [--buffer BYTES] [--stack BYTES] [--small-stack BYTES] [--hubs N]
//                                                                   (listens on 127.0.0.1:PORT)
//
// --hubs N runs N threads, each a hub with its own SO_REUSEPORT listener (multi_server).
// --small-stack BYTES runs each connection on a small stack (needs LD_BIND_NOW=1): with
// --buffer 256, 3 072 bytes hold a session, cancelled or not (bench/net's greenfiber_small).
//
// The read buffer lives on the task's stack (a power of two, 256 B to 64 KiB; default
// 1 KiB) and stacks are 16 KiB by default: an idle connection then holds one stack page
// (bench/RESULTS.md has the measurements behind both choices). SIGTERM ends it with
// status 0; PORT 0 picks a free port and prints it (see net_server.hpp).
#include <array>
#include <cstddef>
#include <cstdio>
#include <cstdlib>

#include "net_server.hpp"

namespace {

using namespace bench::net;

template <std::size_t N>
void echo(gf::tcp::socket&& s) {
    std::array<char, N> buf;
    error_code ec;
    for (;;) {
        const std::size_t n = s.read_some(asio::buffer(buf), ec);
        if (ec) return;  // eof, or a reset
        s.write(asio::buffer(buf.data(), n), ec);
        if (ec) return;
    }
}

template <std::size_t N>
int serve_with(const options& o) {
    if (o.buffer == N) return run_server(o, &echo<N>);
    if constexpr (N < 65536) {
        return serve_with<N * 2>(o);
    } else {
        std::fprintf(stderr, "--buffer: a power of two from 256 to 65536\n");
        return 2;
    }
}

}  // namespace

int main(int argc, char** argv) {
    const options o = parse(argc, argv, {.port = 0, .stack = 16384, .buffer = 1024});
    return serve_with<256>(o);
}
