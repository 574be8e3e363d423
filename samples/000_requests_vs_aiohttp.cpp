// 000_requests_vs_aiohttp: five HTTP requests to a slow local server: a blocking client
// makes the five tasks take turns (about 5 delays), a client whose waits suspend only the
// task lets them overlap (about 1 delay).
//
// Ports seeds/000 (the async_coroutine tutorial), section "3 运用": a local server (beego)
// whose handler sleeps 3 s; request() fetches http://localhost:8080/ and five tasks of it
// run with loop.run_until_complete(asyncio.wait(tasks)), printing each task.result() and
// the time:
// - f1 calls requests.get(url), which blocks the whole thread: 15 s for five requests;
// - f2 calls `await session.get(url)` on an aiohttp.ClientSession ("点睛之笔，耗时转用其他
//   协程": while it waits, the other coroutines run): 3 s.
//
// Here the server is greenfiber's http::serve on 127.0.0.1 (a free port, never printed),
// in a thread and loop of its own, as the tutorial's server is a process of its own: a
// client that blocks the main thread cannot stop it from answering. Its handler sleeps
// 250 ms (greenfiber::sleep: the server answers several requests at once). The clients:
// - f1: requests_get() is a blocking GET written with Beast on a plain Asio socket, as a
//   library that knows nothing of fibers would do it: the thread waits in the kernel, the
//   loop cannot switch to another task, and the five requests take turns; the hub's
//   watchdog reports each of them (a fiber that kept the loop waiting);
// - f2: http::client (aiohttp's ClientSession) on greenfiber sockets: get() suspends only
//   the calling task, so the five requests are at the server at the same time.
// The program measures both runs and prints a verdict for each instead of the time; the
// bound lies half a delay below 5, the least that five requests one after another take,
// so a loaded machine that slows the concurrent run does not change its verdict. Each result is
// printed as the tutorial's print(task.result()) shows it: a requests Response for f1, the status
// for f2.
//
// `000_requests_vs_aiohttp --trace FILE` also records the client's hub while both runs go on
// and writes the timeline to FILE (Chrome trace event JSON; open it in ui.perfetto.dev or
// chrome://tracing): f1's five tasks run one long slice each, one after another, while f2's
// park on their reads and overlap. The printed output stays the same.

#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <exception>
#include <future>
#include <iostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <greenfiber/combinators.hpp>
#include <greenfiber/http.hpp>
#include <greenfiber/hub.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/sync.hpp>
#include <greenfiber/task.hpp>
#include <greenfiber/trace.hpp>

namespace {

namespace asio = boost::asio;
namespace http = greenfiber::http;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr auto delay = 250ms;  // the server's answer time
constexpr int requests = 5;

// The tutorial's beego service: an HTTP server on a thread of its own whose handler takes
// one delay. The constructor returns once it listens; the destructor stops it gracefully
// and joins the thread.
class server_thread {
  public:
    server_thread() {
        std::promise<void> ready;
        std::future<void> listening = ready.get_future();
        thread_ = std::thread([this, &ready] { run(ready); });
        try {
            listening.get();  // rethrows what the thread could not set up
        } catch (...) {
            thread_.join();
            throw;
        }
    }
    ~server_thread() {
        // The only cross-thread call: ask the server's loop to set its stop event.
        loop_->call_soon_threadsafe([this] { stop_->set(); });
        thread_.join();
    }
    server_thread(const server_thread&) = delete;
    server_thread& operator=(const server_thread&) = delete;

    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }
    unsigned short port() const { return port_; }

  private:
    void run(std::promise<void>& ready) {
        try {
            greenfiber::run([&] {
                greenfiber::server<greenfiber::tcp::protocol> srv(
                    greenfiber::tcp::acceptor(
                        greenfiber::tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
                    [](greenfiber::tcp::socket s) {
                        http::serve_connection(s, [](const http::request& req) {
                            greenfiber::sleep(delay);  // time.Sleep(3 * time.Second)
                            return http::make_response(req, http::status::ok, "index.html");
                        });
                    });
                greenfiber::event stop;
                port_ = srv.local_endpoint().port();
                loop_ = &greenfiber::event_loop::current();
                stop_ = &stop;
                greenfiber::task<void> serving = srv.start();
                ready.set_value();
                stop.wait();
                (void)srv.stop(1s);
                serving.get();
            });
        } catch (...) {
            if (loop_ == nullptr) {
                ready.set_exception(std::current_exception());
            } else {
                std::cerr << "000_requests_vs_aiohttp: the server thread failed\n";
            }
        }
    }

    std::thread thread_;
    unsigned short port_ = 0;
    // Borrowed, set by the server thread before `ready`: its loop and its stop event live
    // until stop_ is set.
    greenfiber::event_loop* loop_ = nullptr;
    greenfiber::event* stop_ = nullptr;
};

// What requests.get returns, as far as print() shows it.
struct requests_response {
    int status_code = 0;
};

// requests.get(url): a blocking GET (Beast on a plain Asio socket). The thread waits in
// the kernel until the answer comes; SO_RCVTIMEO/SO_SNDTIMEO bound each wait to 5 s.
requests_response requests_get(unsigned short port) {
    asio::io_context ctx;
    asio::ip::tcp::socket s(ctx);
    s.connect(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), port));
    const timeval limit{5, 0};
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    http::request req{http::verb::get, "/", 11};
    req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
    boost::beast::http::write(s, req);
    boost::beast::flat_buffer buffer;
    http::response res;
    boost::beast::http::read(s, buffer, res);
    return requests_response{static_cast<int>(res.result_int())};
}

// Runs five tasks of `request`, named "<label> 1" to "<label> 5", with
// run_until_complete(asyncio.wait(tasks)), prints each result with `show`, and the verdict.
template <class Request, class Show>
void five_requests(const char* label, Request request, Show show) {
    greenfiber::event_loop& loop = greenfiber::event_loop::current();
    const auto start = clock_type::now();
    using result_type = decltype(request());
    std::vector<greenfiber::task<result_type>> tasks;
    for (int i = 1; i <= requests; ++i) {
        tasks.push_back(greenfiber::spawn(
            greenfiber::spawn_options{std::string(label) + " " + std::to_string(i)}, request));
    }
    auto all = greenfiber::spawn([&tasks] { (void)greenfiber::wait(tasks); });
    loop.run_until_complete(all);
    const double delays = std::chrono::duration<double>(clock_type::now() - start) / delay;

    for (auto& task : tasks) std::cout << show(task.result()) << "\n";  // print(task.result())
    std::cout << requests << " requests: ";
    if (delays > requests - 0.5) {
        std::cout << "one after another (about 5 delays, not 1)\n";
    } else {
        std::cout << "concurrent (about 1 delay, not 5)\n";
    }
}

int demo(const char* trace_file) {
    server_thread server;
    greenfiber::hub& hub = greenfiber::hub::current();
    if (trace_file != nullptr) greenfiber::start_trace();

    // f1: status = requests.get(url). The hub's watchdog reports each task that keeps the
    // loop from running longer than its threshold, set here to 100 ms (the default, which
    // GREENFIBER_WATCHDOG_MS may change); the reports are collected here instead of going
    // to stderr, and counted.
    std::cout << "== f1: requests.get(url), a call that blocks the thread\n";
    std::vector<std::string> reports;
    const std::chrono::milliseconds previous_threshold = hub.watchdog();
    hub.set_watchdog(100ms);
    greenfiber::report_handler previous = hub.set_exception_handler(
        [&reports](const greenfiber::failure_report& r) { reports.emplace_back(r.message); });
    five_requests(
        "f1", [port = server.port()] { return requests_get(port); },
        [](const requests_response& r) {
            return "<Response [" + std::to_string(r.status_code) + "]>";
        });
    (void)hub.set_exception_handler(std::move(previous));
    hub.set_watchdog(previous_threshold);
    int reported = 0;
    for (int i = 1; i <= requests; ++i) {
        const std::string name = "'f1 " + std::to_string(i) + "'";
        for (const auto& r : reports) {
            if (r.find("watchdog") != std::string::npos && r.find(name) != std::string::npos) {
                ++reported;
                break;
            }
        }
    }
    std::cout << "the watchdog reported " << reported << " of the " << requests
              << " blocking requests\n";

    // f2: session = aiohttp.ClientSession(); response = await session.get(url)
    std::cout << "== f2: await session.get(url), a call that suspends only its task\n";
    five_requests(
        "f2",
        [url = server.url()] {
            http::client session;
            return session.get(url, 5s).result_int();
        },
        [](unsigned status) { return std::to_string(status); });
    if (trace_file != nullptr) {
        greenfiber::stop_trace();
        greenfiber::write_trace(std::string(trace_file));
        std::cerr << "timeline written to " << trace_file << "\n";
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const char* trace_file = nullptr;  // --trace FILE
    if (argc == 3 && std::string(argv[1]) == "--trace") {
        trace_file = argv[2];
    } else if (argc != 1) {
        std::cerr << "usage: 000_requests_vs_aiohttp [--trace FILE]\n";
        return 2;
    }
    try {
        return demo(trace_file);
    } catch (const std::exception& e) {
        std::cerr << "000_requests_vs_aiohttp: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "000_requests_vs_aiohttp: unknown exception\n";
    }
    return 1;
}
