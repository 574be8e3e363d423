// 004_callback_result: the result of a task, read by a done callback or after the run.
//
// Ports seeds/004 (the "Python 异步编程 协程(async/await)" tutorial), section "3、Python 协程
// (async/await)的使用", examples "4）绑定回调函数方法" and "5）调用 result() 获取结果":
// request() fetches a page with requests.get() and returns the response;
// - in 4), callback(task) prints `'Status:', task.result()`; the task is made with
//   ensure_future(), the callback attached, the task printed (pending), the loop run and the
//   task printed again (finished);
// - in 5), there is no callback: after the run, `'Task Result:', task.result()` is printed.
//
// This sample does without the network: request() waits 100 ms, standing for the server's
// answer, and returns the status code 200. (The HTTP form of these examples is
// 004_callback_result_http.) As in asyncio, the done callback of 4) has run when
// run_until_complete() returns.

#include <chrono>
#include <exception>
#include <iostream>
#include <string>

#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;

// A task as print(task) shows it, without addresses: <task 'name' status result=...>.
std::string describe(greenfiber::task<int>& t) {
    std::string s = "<task '" + t.name() + "' " + greenfiber::to_string(t.status());
    if (t.status() == greenfiber::task_status::done) s += " result=" + std::to_string(t.result());
    return s + ">";
}

// Stands for requests.get(url): waits for the "server" without blocking the loop, then
// returns the status code.
int request() {
    greenfiber::sleep(100ms);
    return 200;
}

void callback(greenfiber::task<int>& task) {
    std::cout << "Status: " << task.result() << "\n";
}

int demo() {
    greenfiber::event_loop& loop = greenfiber::event_loop::current();

    // Example 4): t = asyncio.ensure_future(request()); t.add_done_callback(callback)
    std::cout << "== 4) a done callback\n";
    greenfiber::task<int> t = greenfiber::spawn(greenfiber::spawn_options{"request"}, request);
    t.add_done_callback(callback);
    std::cout << "Task: " << describe(t) << "\n";
    loop.run_until_complete(t);  // the callback has run
    std::cout << "Task: " << describe(t) << "\n";

    // Example 5): no callback; task.result() after the run.
    std::cout << "== 5) result() after the run\n";
    greenfiber::task<int> task = greenfiber::spawn(greenfiber::spawn_options{"request"}, request);
    std::cout << "Task: " << describe(task) << "\n";
    loop.run_until_complete(task);
    std::cout << "Task: " << describe(task) << "\n";
    std::cout << "Task Result: " << task.result() << "\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "004_callback_result: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "004_callback_result: unknown exception\n";
    }
    return 1;
}
