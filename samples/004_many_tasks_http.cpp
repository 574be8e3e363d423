// 004_many_tasks_http: five HTTP requests as five tasks; each suspends only itself while
// the server answers, so the five overlap.
//
// Ports seeds/004 (the "Python 异步编程 协程(async/await)" tutorial), section "4、多任务协程",
// with real HTTP: five tasks of request() in a list, printed (`'Tasks:', tasks`), run with
// loop.run_until_complete(asyncio.wait(tasks)), and each `'Task Result:', task.result()`
// printed. The tutorial's request() calls requests.get(), which blocks the whole thread, so
// its five tasks take turns; 004_many_tasks shows that with stand-ins, and
// 000_requests_vs_aiohttp with real requests to a server on a thread of its own.
//
// Here request() uses http::client (aiohttp's ClientSession), whose get() suspends only its
// task. The server is local: http::serve_connection under a server<tcp::protocol> on
// 127.0.0.1 (a free port, never printed), answering after 200 ms, as a task of the same
// loop (it runs whenever the loop does). The five tasks share one client, as aiohttp
// recommends: each request has a connection of its own while it runs, so the server sees
// five connections at once. The program measures the run and prints a verdict instead of
// the time: about 1 delay, not 5.

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

constexpr auto delay = 200ms;
constexpr int requests = 5;

// A task as print(task) shows it, without addresses: <task 'name' status>.
std::string describe(const greenfiber::any_task& t) {
    return "<task '" + t.name() + "' " + greenfiber::to_string(t.status()) + ">";
}

// The local server's handler: the page, after one delay.
http::response site(const http::request& req) {
    greenfiber::sleep(delay);
    return http::make_response(req, http::status::ok, "<html>baidu</html>", "text/html");
}

int demo() {
    greenfiber::event_loop& loop = greenfiber::event_loop::current();

    // The local server, as a task of this loop.
    greenfiber::server<greenfiber::tcp::protocol> srv(
        greenfiber::tcp::acceptor(greenfiber::tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
        [](greenfiber::tcp::socket s) { http::serve_connection(s, site); });
    const std::string url = "http://127.0.0.1:" + std::to_string(srv.local_endpoint().port()) + "/";
    greenfiber::task<void> serving = srv.start();

    // async def request(): status = await session.get(url); return status
    http::client session;
    auto request = [&session, &url] { return session.get(url, 5s).result_int(); };

    // tasks = [asyncio.ensure_future(request()) for _ in range(5)]; print('Tasks:', tasks)
    const auto start = clock_type::now();
    std::vector<greenfiber::task<unsigned>> tasks;
    for (int i = 1; i <= requests; ++i) {
        tasks.push_back(
            greenfiber::spawn(greenfiber::spawn_options{"request " + std::to_string(i)}, request));
    }
    std::cout << "Tasks: [";
    for (std::size_t i = 0; i < tasks.size(); ++i)
        std::cout << (i ? ", " : "") << describe(tasks[i]);
    std::cout << "]\n";

    // loop.run_until_complete(asyncio.wait(tasks))
    auto all = greenfiber::spawn([&tasks] { (void)greenfiber::wait(tasks); });
    loop.run_until_complete(all);
    const double delays = std::chrono::duration<double>(clock_type::now() - start) / delay;

    // for task in tasks: print('Task Result:', task.result())
    for (auto& task : tasks) std::cout << "Task Result: " << task.result() << "\n";
    std::cout << requests << " requests: "
              << (delays < requests - 0.5 ? "concurrent (about 1 delay, not 5)" : "NOT concurrent")
              << "\n";
    std::cout << "connections the server accepted: " << srv.served() << "\n";

    // Close the client's kept-alive connections, then stop the server gracefully.
    session.close();
    const std::size_t cancelled = srv.stop(1s);
    loop.run_until_complete(serving);
    std::cout << "server stopped: " << cancelled << " handlers cancelled\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "004_many_tasks_http: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "004_many_tasks_http: unknown exception\n";
    }
    return 1;
}
