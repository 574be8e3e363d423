// 004_define_coroutine: defining and calling the work does not run it; the loop does.
//
// Ports seeds/004 (the "Python 异步编程 协程(async/await)" tutorial), section "3、Python 协程
// (async/await)的使用", example "1）定义协程": execute(x) prints `'x = ', x`;
// `coroutine = execute(1)` makes a coroutine object without running it; the program prints
// `'协程:', coroutine`, then 'After calling execute'; loop.run_until_complete(coroutine)
// runs the body; then 'After calling loop'. Python prints the coroutine object with its
// address; here it is described.
//
// In greenfiber the coroutine object is the function bound to its argument
// (std::bind_front), and run_until_complete(coroutine), which wraps the coroutine in a task
// in asyncio, is run_until_complete() of the task that spawn() makes from it.

#include <exception>
#include <functional>
#include <iostream>

#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

void execute(int x) {
    std::cout << "x =  " << x << "\n";
}

int demo() {
    // Step 1: coroutine = execute(1): bound, not called.
    auto coroutine = std::bind_front(execute, 1);
    std::cout << "协程: execute(1), bound and not started: nothing has run\n";
    std::cout << "After calling execute\n";

    // Step 2: loop.run_until_complete(coroutine): wrapped in a task and run.
    greenfiber::event_loop& loop = greenfiber::event_loop::current();
    auto task = greenfiber::spawn(greenfiber::spawn_options{"execute"}, coroutine);
    loop.run_until_complete(task);
    std::cout << "After calling loop\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "004_define_coroutine: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "004_define_coroutine: unknown exception\n";
    }
    return 1;
}
