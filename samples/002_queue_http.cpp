// 002_queue_http: a producer puts URLs into a bounded queue and several consumer tasks fetch
// them from a local HTTP server with one shared client; the fetches overlap.
//
// Ports seeds/002 (the coroutine tutorial), section "异步使用队列", with real HTTP: URLs such
// as http://httpbin.org/get?a=1 go through a queue (the code is in a file the tutorial
// links to, _queue.py). The tutorial reports that it could not get the requests to run
// concurrently through the queue ("没办法直接通过队列直接进行并发"), only by passing the
// URLs as arguments (_thread.py). A single consumer taking one URL at a time is indeed
// serial; several consumers make it concurrent. 002_queue shows the queue's whole API
// (full(), join(), shutdown()) with a stand-in fetch; this sample makes the fetch real.
//
// The server stands in for httpbin.org: http::serve_connection under a
// server<tcp::protocol> on 127.0.0.1 (a free port, never printed), in the same thread.
// GET /get?a=1 answers {"args": {"a": "1"}} after one delay (100 ms). One producer puts
// six URLs into a queue of at most two; three consumers each loop on queue.get(), fetch
// the URL with a shared http::client (aiohttp's ClientSession) and call task_done(); the
// main task waits for the producer, then queue.join(), then shuts the queue down.
//
// The output is the same on every run: which consumer fetches which URL after the first
// three depends on the network's timing, so the results are printed in URL order after
// join(). The program measures itself (about 2 fetch times, not 6) and counts the
// connections the server accepted: the client keeps each one after its response and the
// next fetch reuses it, so three consumers need three connections for six requests.

#include <chrono>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/ip/address_v4.hpp>

#include <greenfiber/combinators.hpp>
#include <greenfiber/http.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/queue.hpp>
#include <greenfiber/server.hpp>
#include <greenfiber/task.hpp>

namespace {

namespace asio = boost::asio;
namespace http = greenfiber::http;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr auto delay = 100ms;  // the server's answer time
constexpr int url_count = 6;
constexpr int consumer_count = 3;
constexpr std::size_t maxsize = 2;

// httpbin's /get, for a query of one parameter a=N: {"args": {"a": "N"}}.
http::response httpbin(const http::request& req) {
    greenfiber::sleep(delay);
    const std::string target(req.target());
    const auto eq = target.find("?a=");
    if (target.rfind("/get", 0) != 0 || eq == std::string::npos) {
        return http::make_response(req, http::status::not_found, "404: Not Found");
    }
    return http::make_response(req, http::status::ok,
                               "{\"args\": {\"a\": \"" + target.substr(eq + 3) + "\"}}",
                               "application/json");
}

// The outcome of each fetch, by URL path; filled by the consumers.
using results = std::map<std::string, std::string>;

// Puts every URL into `queue`; put() waits while the queue is full.
void producer(const std::string& base, greenfiber::queue<std::string>& queue) {
    for (int i = 1; i <= url_count; ++i) queue.put(base + "/get?a=" + std::to_string(i));
}

// Takes URLs from `queue` until it is shut down; fetches each with `session` and marks it
// done, whatever the outcome (a fetch that fails is recorded, so join() still returns).
void consumer(const std::string& base, greenfiber::queue<std::string>& queue, http::client& session,
              results& out) {
    for (;;) {
        std::string url;
        try {
            url = queue.get();
        } catch (const greenfiber::queue_shutdown&) {
            return;
        }
        std::string& outcome = out[url.substr(base.size())];
        try {
            const http::response res = session.get(url, 5s);
            outcome = std::to_string(res.result_int()) + " " + res.body();
        } catch (const std::exception& e) {
            outcome = std::string("failed: ") + e.what();  // printed; join() still returns
        }
        queue.task_done();
    }
}

void main_task() {
    greenfiber::server<greenfiber::tcp::protocol> srv(
        greenfiber::tcp::acceptor(greenfiber::tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
        [](greenfiber::tcp::socket s) { http::serve_connection(s, httpbin); });
    const std::string base = "http://127.0.0.1:" + std::to_string(srv.local_endpoint().port());
    greenfiber::task<void> serving = srv.start();

    const auto start = clock_type::now();
    greenfiber::queue<std::string> queue(maxsize);
    http::client session;
    results fetched;

    // Step 1: the consumers start first and wait in get(); then the producer fills the queue.
    std::vector<greenfiber::task<void>> consumers;
    for (int i = 0; i < consumer_count; ++i) {
        consumers.push_back(greenfiber::spawn(consumer, std::cref(base), std::ref(queue),
                                              std::ref(session), std::ref(fetched)));
    }
    auto produce = greenfiber::spawn(producer, std::cref(base), std::ref(queue));

    // Step 2: wait for the producer, then for every URL to be marked done.
    produce.get();
    queue.join();
    const double fetch_times = std::chrono::duration<double>(clock_type::now() - start) / delay;
    std::cout << "join() returned: all " << url_count << " urls fetched\n";
    for (const auto& [path, outcome] : fetched) std::cout << path << ": " << outcome << "\n";

    // Step 3: stop the consumers (they leave get() with queue_shutdown).
    queue.shutdown();
    (void)greenfiber::wait(consumers);

    // One consumer: 6 fetches one after another. Three: three at a time, about 2. The bound
    // lies half a fetch time below 6, as wide as a loaded machine needs.
    std::cout << url_count << " fetches by " << consumer_count << " consumers: "
              << (fetch_times < url_count - 0.5 ? "concurrent (about 2 fetch times, not 6)"
                                                : "NOT concurrent")
              << "\n";
    std::cout << "connections the server accepted: " << srv.served() << "\n";

    session.close();  // the handlers read end of file and finish
    (void)srv.stop(1s);
    serving.get();
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
        std::cerr << "002_queue_http: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "002_queue_http: unknown exception\n";
    }
    return 1;
}
