// 003_done_callback: a done callback gets the finished task; extra arguments are bound in
// front of it; without a callback the result is read after the run.
//
// Ports seeds/003 (the "why asyncio" tutorial), section "给task绑定回调":
// - "Task.add_done_callback(future)": do() prints "Waiting:" and returns 'haha'; callback(
//   future) prints `'Callback: ', future.result()`; the task is made with ensure_future(),
//   the callback attached, the loop run, and `'TIME: ', now() - start` printed;
// - "直接使用task.result()获取结果": once finished, task.result() gives the result directly;
// - "使用functools模块为回调函数增加参数": left "待补充" (to be added) in the tutorial. Python
//   binds the extra arguments with functools.partial(callback, 2), and the callback is
//   called as callback(2, future). C++20's std::bind_front is functools.partial; a lambda
//   does the same. Both are completed here.
//
// The printed time would change on every run; the sample prints what it shows instead: do()
// never waits, so the whole run takes far less than a second.
// As in asyncio, the done callbacks, added before run_until_complete(), have run when it
// returns.

#include <chrono>
#include <exception>
#include <functional>
#include <iostream>
#include <string>

#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

std::string do_() {  // `do` is a C++ keyword
    std::cout << "Waiting:\n";
    return "haha";
}

void callback(greenfiber::task<std::string>& future) {
    std::cout << "Callback:  " << future.result() << "\n";
}

// The callback with extra arguments in front, functools.partial style.
void callback_with(int t, const std::string& label, greenfiber::task<std::string>& future) {
    std::cout << "Callback with " << t << " and " << label << ":  " << future.result() << "\n";
}

int demo() {
    const auto start = clock_type::now();
    greenfiber::event_loop& loop = greenfiber::event_loop::current();

    // Step 1: task = asyncio.ensure_future(do()); task.add_done_callback(callback)
    greenfiber::task<std::string> task = greenfiber::spawn(greenfiber::spawn_options{"do"}, do_);
    task.add_done_callback(callback);

    // Step 2: callbacks with extra arguments, as functools.partial(callback_with, 2, ...).
    task.add_done_callback(std::bind_front(callback_with, 2, "bind_front"));
    const int t = 3;
    task.add_done_callback(
        [t](greenfiber::task<std::string>& future) { callback_with(t, "a lambda", future); });

    // Step 3: loop.run_until_complete(task); the callbacks run in the order they were added.
    loop.run_until_complete(task);

    // Step 4: without a callback: task.result() once the task is finished.
    std::cout << "task.result():  " << task.result() << "\n";

    const auto elapsed = clock_type::now() - start;
    std::cout << "TIME:  "
              << (elapsed < std::chrono::seconds(1) ? "under a second" : "OVER a second")
              << " (do() never waits)\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "003_done_callback: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "003_done_callback: unknown exception\n";
    }
    return 1;
}
