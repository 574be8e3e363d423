// 002_run_in_executor_http: a blocking HTTP GET moved to the executor blocks only its pool
// thread; the loop goes on meanwhile, and here it is the loop that answers the request.
//
// Ports seeds/002 (the coroutine tutorial), section "如何使用阻塞和异步", with real HTTP:
// requests.get blocks the whole thread ("会进入全局阻塞的状态"), so each of three tasks
// hands it to a thread with
// `res = await loop.run_in_executor(None, functools.partial(requests.get, url, verify=False))`
// and prints res.url; loop.run_until_complete(asyncio.wait(tasks)) runs the three. The
// tutorial adds that this is no better than plain threads, and that code is best
// asynchronous all the way down. 002_run_in_executor shows the executor API with a
// stand-in call; this sample makes the call a real request.
//
// The server is local and runs on the main thread's loop: http::serve_connection under a
// server<tcp::protocol> on 127.0.0.1 (a free port, never printed); it answers each of the
// tutorial's three hosts, taken as paths (/www.baidu.com ...), after one delay (200 ms).
// - step 1: requests_get() is a blocking GET written with Beast on a plain Asio socket, as
//   a library that knows nothing of fibers would do it. Each task runs it with
//   run_in_executor() on the default executor: the three GETs block three pool threads at
//   once, while the waiting tasks leave the main thread's loop free to run the server,
//   which answers all three (about 1 delay, not 3). Called directly in a task instead, such
//   a GET would block the one thread the server runs on: it could never be answered (the
//   sample does not do that; its socket timeouts would end it after 5 s).
// - step 2: greenfiber's own client in the job: to_thread() with a function that makes an
//   http::client and calls get(). A pool thread has no hub until a greenfiber call needs
//   one; the first call creates it (a hub per thread, created at first use), and get()
//   then blocks that pool thread exactly as requests.get does, its waits running that
//   thread's own loop. This works, but it is rarely what one wants: in a task, on the main
//   loop, the same get() suspends only the task (002_aiohttp), with no thread at all.
// The results are printed in the order of the task list once all are done, so the output
// is the same on every run; each step measures itself and prints a verdict.

#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <greenfiber/combinators.hpp>
#include <greenfiber/executor.hpp>
#include <greenfiber/http.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/server.hpp>
#include <greenfiber/task.hpp>

namespace {

namespace asio = boost::asio;
namespace http = greenfiber::http;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr auto delay = 200ms;

const std::vector<std::string> paths = {"/www.baidu.com", "/www.zhihu.com", "/www.163.com"};

// The local server's handler: one delay, then a page naming the host.
http::response site(const http::request& req) {
    greenfiber::sleep(delay);
    return http::make_response(req, http::status::ok,
                               "<html>" + std::string(req.target().substr(1)) + "</html>",
                               "text/html");
}

// What requests.get returns, as far as the tutorial uses it.
struct response {
    std::string url;
    unsigned status_code = 0;
    bool on_main_thread = false;  // where the call ran
};

// requests.get(url, verify=...): a blocking GET with Beast on a plain Asio socket; the
// calling thread waits in the kernel. SO_RCVTIMEO/SO_SNDTIMEO bound each wait to 5 s.
// `verify` is kept for the tutorial's call (there is no TLS here).
response requests_get(std::thread::id main_thread, const std::string& url, bool verify) {
    (void)verify;
    const http::url_parts u = http::parse_url(url);
    asio::io_context ctx;
    asio::ip::tcp::resolver resolver(ctx);
    asio::ip::tcp::socket s(ctx);
    asio::connect(s, resolver.resolve(u.host, u.port));
    const timeval limit{5, 0};
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    http::request req{http::verb::get, u.target, 11};
    req.set(http::field::host, u.host + ":" + u.port);
    boost::beast::http::write(s, req);
    boost::beast::flat_buffer buffer;
    http::response res;
    boost::beast::http::read(s, buffer, res);
    return response{url, res.result_int(), std::this_thread::get_id() == main_thread};
}

// greenfiber's client, called on whatever thread runs it: a pool thread here.
response client_get(std::thread::id main_thread, const std::string& url) {
    http::client session;  // belongs to this thread's hub, created by this first use
    const http::response res = session.get(url, 5s);
    return response{url, res.result_int(), std::this_thread::get_id() == main_thread};
}

// Spawns a task per path, each calling `fetch(url)`, waits for them (asyncio.wait), prints
// each res.url (as its path: the port is left out) in list order, and the verdict.
template <class Fetch>
void run_tasks(const std::string& base, Fetch fetch) {
    const auto start = clock_type::now();
    std::vector<greenfiber::task<response>> tasks;
    for (const auto& path : paths) tasks.push_back(greenfiber::spawn(fetch, base + path));
    (void)greenfiber::wait(tasks);
    const double delays = std::chrono::duration<double>(clock_type::now() - start) / delay;

    bool off_main = true;
    for (auto& t : tasks) {
        const response& res = t.result();
        std::cout << res.url.substr(base.size()) << " " << res.status_code
                  << "\n";  // print(res.url)
        off_main = off_main && !res.on_main_thread;
    }
    std::cout << "every GET ran on a pool thread: " << (off_main ? "yes" : "NO") << "\n";
    std::cout << paths.size() << " blocking GETs: "
              << (delays < paths.size() - 0.5 ? "concurrent (about 1 delay, not 3)"
                                              : "NOT concurrent")
              << "\n";
}

void main_task() {
    greenfiber::server<greenfiber::tcp::protocol> srv(
        greenfiber::tcp::acceptor(greenfiber::tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
        [](greenfiber::tcp::socket s) { http::serve_connection(s, site); });
    const std::string base = "http://127.0.0.1:" + std::to_string(srv.local_endpoint().port());
    greenfiber::task<void> serving = srv.start();
    const std::thread::id main_thread = std::this_thread::get_id();

    // Step 1: res = await loop.run_in_executor(None, functools.partial(requests.get, url,
    // verify=False)). The bound function is copied into the job.
    std::cout << "== run_in_executor(None, functools.partial(requests.get, url, verify=False))\n";
    run_tasks(base, [main_thread](const std::string& url) {
        return greenfiber::run_in_executor(std::bind_front(requests_get, main_thread, url, false));
    });

    // Step 2: greenfiber's client on the pool threads.
    std::cout << "== to_thread(a function using http::client)\n";
    run_tasks(base, [main_thread](const std::string& url) {
        return greenfiber::to_thread(client_get, main_thread, url);
    });

    (void)srv.stop(1s);
    serving.get();
    std::cout << "server stopped: " << srv.served() << " connections served\n";
}

int demo() {
    greenfiber::run(main_task);  // also shuts the default executor down on the way out
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "002_run_in_executor_http: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "002_run_in_executor_http: unknown exception\n";
    }
    return 1;
}
