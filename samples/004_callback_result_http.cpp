// 004_callback_result_http: the status of an HTTP request, read by a done callback or with
// result() after the run.
//
// Ports seeds/004 (the "Python 异步编程 协程(async/await)" tutorial), section "3、Python 协程
// (async/await)的使用", examples "4）绑定回调函数方法" and "5）调用 result() 获取结果", with
// real HTTP: request() fetches https://www.baidu.com with requests.get() and returns the
// response;
// - in 4), callback(task) prints `'Status:', task.result()`; the task is made with
//   ensure_future(), the callback attached, the task printed (pending), the loop run and the
//   task printed again (finished);
// - in 5), there is no callback: after the run, `'Task Result:', task.result()` is printed.
// 004_callback_result is the same program with a stand-in request.
//
// Here the server is local: http::serve_connection under a server<tcp::protocol> on
// 127.0.0.1 (a free port, never printed), answering after 100 ms. It runs as a task of the
// same loop, so it serves while run_until_complete() runs the request. request() uses
// http::client (aiohttp's ClientSession), whose get() suspends only its task, and returns
// the status code. (requests.get, which blocks the whole thread, could not be answered by
// a server on the same thread; 000_requests_vs_aiohttp shows it against a server on a
// thread of its own.) As in asyncio, the done callback of 4) has run when
// run_until_complete() returns.

#include <chrono>
#include <exception>
#include <iostream>
#include <string>

#include <boost/asio/ip/address_v4.hpp>

#include <greenfiber/http.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/server.hpp>
#include <greenfiber/task.hpp>

namespace {

namespace asio = boost::asio;
namespace http = greenfiber::http;
using namespace std::chrono_literals;

// A task as print(task) shows it, without addresses: <task 'name' status result=...>.
std::string describe(greenfiber::task<unsigned>& t) {
    std::string s = "<task '" + t.name() + "' " + greenfiber::to_string(t.status());
    if (t.status() == greenfiber::task_status::done) s += " result=" + std::to_string(t.result());
    return s + ">";
}

// The local server's handler: the page, after 100 ms.
http::response site(const http::request& req) {
    greenfiber::sleep(100ms);
    return http::make_response(req, http::status::ok, "<html>baidu</html>", "text/html");
}

// request(): status = session.get(url); suspends only its task while the server answers.
unsigned request(const std::string& url) {
    http::client session;
    return session.get(url, 5s).result_int();
}

void callback(greenfiber::task<unsigned>& task) {
    std::cout << "Status: " << task.result() << "\n";
}

int demo() {
    greenfiber::event_loop& loop = greenfiber::event_loop::current();

    // The local server, as a task of this loop: it runs whenever the loop does.
    greenfiber::server<greenfiber::tcp::protocol> srv(
        greenfiber::tcp::acceptor(greenfiber::tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
        [](greenfiber::tcp::socket s) { http::serve_connection(s, site); });
    const std::string url = "http://127.0.0.1:" + std::to_string(srv.local_endpoint().port()) + "/";
    greenfiber::task<void> serving = srv.start();

    // Example 4): t = asyncio.ensure_future(request()); t.add_done_callback(callback)
    std::cout << "== 4) a done callback\n";
    greenfiber::task<unsigned> t =
        greenfiber::spawn(greenfiber::spawn_options{"request"}, request, url);
    t.add_done_callback(callback);
    std::cout << "Task: " << describe(t) << "\n";
    loop.run_until_complete(t);
    std::cout << "Task: " << describe(t) << "\n";

    // Example 5): no callback; task.result() after the run.
    std::cout << "== 5) result() after the run\n";
    greenfiber::task<unsigned> task =
        greenfiber::spawn(greenfiber::spawn_options{"request"}, request, url);
    std::cout << "Task: " << describe(task) << "\n";
    loop.run_until_complete(task);
    std::cout << "Task: " << describe(task) << "\n";
    std::cout << "Task Result: " << task.result() << "\n";

    // Stop the server gracefully: each request closed its connection, so no handler is
    // left to cancel.
    const std::size_t cancelled = srv.stop(1s);
    loop.run_until_complete(serving);
    std::cout << "server stopped: " << srv.served() << " connections served, " << cancelled
              << " handlers cancelled\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "004_callback_result_http: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "004_callback_result_http: unknown exception\n";
    }
    return 1;
}
