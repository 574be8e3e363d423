// 002_done_callback: a callback attached to a task receives the finished task and reads its
// result.
//
// Ports seeds/002 (the coroutine tutorial), section "回调函数 / 单个协程的回调函数":
// test1() prints "This is test1", awaits test2() (which sleeps 4 s and prints "This is
// test2"), prints "test1 end" and returns "result done"; callback(future) prints
// `"callback: ", future.result()`. The task is made with ensure_future(), the callback
// attached with add_done_callback(), and the loop runs the task. The tutorial's output:
//
//     This is test1
//     This is test2
//     test1 end
//     callback:  result done
//
// It also lists the states of a future, Pending/Running/Done/Cancelled; greenfiber's
// task_status has the same four, and the sample shows the first three.
//
// As in asyncio, the done callback runs before run_until_complete() returns: it was added
// before run_until_complete() began to wait. The sleep is 100 ms here.

#include <chrono>
#include <exception>
#include <iostream>
#include <string>

#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;

void test2() {
    greenfiber::sleep(100ms);
    std::cout << "This is test2\n";
}

std::string test1() {
    std::cout << "This is test1\n";
    std::cout << "(test1's state while it runs: "
              << greenfiber::to_string(greenfiber::current_task().status()) << ")\n";
    test2();  // await test2(): a plain call; the sleep inside suspends this task
    std::cout << "test1 end\n";
    return "result done";
}

void callback(greenfiber::task<std::string>& future) {
    std::cout << "callback:  " << future.result() << "\n";
}

int demo() {
    greenfiber::event_loop& loop = greenfiber::event_loop::current();

    // Step 1: task = asyncio.ensure_future(test1()); task.add_done_callback(callback)
    greenfiber::task<std::string> task =
        greenfiber::spawn(greenfiber::spawn_options{"test1"}, test1);
    task.add_done_callback(callback);
    std::cout << "(the task's state before the run: " << greenfiber::to_string(task.status())
              << ")\n";

    // Step 2: loop.run_until_complete(task); the callback has run when it returns.
    loop.run_until_complete(task);
    std::cout << "(the task's state after the run: " << greenfiber::to_string(task.status())
              << ")\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "002_done_callback: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "002_done_callback: unknown exception\n";
    }
    return 1;
}
