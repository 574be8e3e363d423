// 002_aiohttp: an HTTP client session (aiohttp's ClientSession) used by several tasks at
// once; its requests suspend only their own task, and it keeps connections for reuse.
//
// Ports seeds/002 (the coroutine tutorial), section "aiohttp": for each of three URLs a
// task run(url) opens `async with aiohttp.ClientSession() as session`, and
// fetch(session, url) does `async with session.get(url) as response`, prints
// 'start fetch' with the time, sleeps 4 s and returns response.url, which run() prints
// with the time; loop.run_until_complete(asyncio.wait(tasks)) runs the three.
//
// Here http::client is the ClientSession and the server is local: http::serve_connection
// under a server<tcp::protocol> on 127.0.0.1 (a free port, never printed), in the same
// thread as the clients. It answers a page for each of the tutorial's three hosts, taken
// as paths (/www.baidu.com ...), after one delay (150 ms), and 404 for anything else; a
// fourth URL asks for such a page. A status is a response, not an exception, as in
// aiohttp.
// - step 1: the tutorial's program, a session per task: each task gets its response, sleeps
//   one delay and returns. Four tasks of two delays each take about 2 delays, not 8.
//   Instead of printing as they go (in an order the network decides), the tasks' results
//   are printed in the order of the URL list: status and body length, and the verdict.
// - step 2: one session for all the tasks (what aiohttp's documentation recommends): four
//   tasks fetch the four URLs, twice. The session keeps each connection once its response
//   is read (HTTP/1.1 keep-alive) and the second round reuses them: the server counts 4
//   connections for 8 requests. Several fibers may use one client at once; each request
//   has a connection of its own while it runs.
// - at the end the server stops gracefully, once the sessions have closed their
//   connections.

#include <chrono>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <boost/asio/ip/address_v4.hpp>

#include <greenfiber/combinators.hpp>
#include <greenfiber/http.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/server.hpp>
#include <greenfiber/task.hpp>

namespace {

namespace asio = boost::asio;
namespace http = greenfiber::http;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr auto delay = 150ms;

const std::vector<std::string> paths = {"/www.baidu.com", "/www.163.com", "/www.zhihu.com",
                                        "/www.example.invalid"};

// The local server's handler: one delay, then a page for the tutorial's hosts, 404 else.
http::response site(const http::request& req) {
    greenfiber::sleep(delay);
    const std::string target(req.target());
    if (target == "/www.baidu.com" || target == "/www.163.com" || target == "/www.zhihu.com") {
        return http::make_response(req, http::status::ok,
                                   "<html><title>" + target.substr(1) + "</title></html>",
                                   "text/html");
    }
    return http::make_response(req, http::status::not_found, "404: Not Found");
}

// What a task prints for its URL: the status and the body length.
struct fetched {
    std::string path;
    unsigned status = 0;
    std::size_t length = 0;
};

std::string describe(const fetched& f) {
    return f.path + ": " + std::to_string(f.status) + ", " + std::to_string(f.length) + " bytes";
}

// fetch(session, url): async with session.get(url) as response: ...; await
// asyncio.sleep(); return.
fetched fetch(http::client& session, const std::string& base, const std::string& path) {
    const http::response response = session.get(base + path, 5s);
    greenfiber::sleep(delay);  // await asyncio.sleep(4)
    return fetched{path, response.result_int(), response.body().size()};
}

// Step 1: run(url): async with aiohttp.ClientSession() as session: fetch(session, url).
void session_per_task(const std::string& base) {
    std::cout << "== step 1: a session per task (the tutorial's program)\n";
    const auto start = clock_type::now();
    std::vector<greenfiber::task<fetched>> tasks;
    for (const auto& path : paths) {
        tasks.push_back(greenfiber::spawn([&base, path] {
            http::client session;  // closed when run() returns
            return fetch(session, base, path);
        }));
    }
    (void)greenfiber::wait(tasks);  // asyncio.wait(tasks)
    const double delays = std::chrono::duration<double>(clock_type::now() - start) / delay;

    for (auto& t : tasks) std::cout << describe(t.result()) << "\n";
    // Each task: the server's delay, then its own sleep. Concurrent: about 2 delays; one
    // after another: at least 8. The bound lies half a delay below 8, as wide as a
    // loaded machine needs.
    std::cout << paths.size() << " tasks of 2 delays each: "
              << (delays < 2.0 * paths.size() - 0.5 ? "concurrent (about 2 delays, not 8)"
                                                    : "NOT concurrent")
              << "\n";
}

// Step 2: one session for every task, two rounds.
void shared_session(const std::string& base,
                    const greenfiber::server<greenfiber::tcp::protocol>& srv) {
    std::cout << "== step 2: one session shared by the tasks, two rounds\n";
    const std::size_t connections_before = srv.served();
    http::client session;
    for (int round = 1; round <= 2; ++round) {
        std::vector<greenfiber::task<fetched>> tasks;
        for (const auto& path : paths) {
            tasks.push_back(greenfiber::spawn([&session, &base, path] {
                const http::response r = session.get(base + path, 5s);
                return fetched{path, r.result_int(), r.body().size()};
            }));
        }
        const auto results = greenfiber::gather(tasks);
        std::cout << "round " << round << ":";
        for (const auto& f : results) std::cout << " " << f.status;
        std::cout << "\n";
    }
    std::cout << 2 * paths.size() << " requests, " << srv.served() - connections_before
              << " connections; idle in the session now: " << session.idle_connections() << "\n";
}

void main_task() {
    greenfiber::server<greenfiber::tcp::protocol> srv(
        greenfiber::tcp::acceptor(greenfiber::tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
        [](greenfiber::tcp::socket s) { http::serve_connection(s, site); });
    const std::string base = "http://127.0.0.1:" + std::to_string(srv.local_endpoint().port());
    greenfiber::task<void> serving = srv.start();

    session_per_task(base);
    shared_session(base, srv);

    // Every session is closed by now: the handlers end when they read end of file.
    const std::size_t cancelled = srv.stop(1s);
    serving.get();
    std::cout << "server stopped: " << cancelled << " handlers cancelled\n";
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
        std::cerr << "002_aiohttp: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "002_aiohttp: unknown exception\n";
    }
    return 1;
}
