// 000_task_basics: a function becomes a task, the loop runs it, and the task keeps its result.
//
// Ports seeds/000 (the async_coroutine tutorial), section "2 基本概念", the "简单认识"
// example: `excute(100)` makes a coroutine object, `loop.create_task()` wraps it in a task
// that is pending, `loop.run_until_complete(task)` runs it (finished), and `task.result()`
// gives its return value. The tutorial's chain "async func --> coroutine --> task -->
// event_loop" is, in greenfiber: a function --> a callable bound to its argument -->
// spawn() --> event_loop::run_until_complete(). A task's result exists only once it is
// finished; asking earlier throws invalid_state_error.

#include <exception>
#include <functional>
#include <iostream>

#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

// The tutorial's `async def excute(x)`: an ordinary function; any function may run in a task.
int excute(int x) {
    std::cout << "x:  " << x << "\n";
    return x;
}

int demo() {
    // Step 1: the "coroutine object": the function bound to its argument. Nothing runs.
    auto coroutine = std::bind_front(excute, 100);
    std::cout << "main: bound excute to 100: nothing ran\n";

    // Step 2: get_event_loop() and create_task(). The task is scheduled, not started: it
    // runs when this code next lets the loop run.
    greenfiber::event_loop& loop = greenfiber::event_loop::current();
    greenfiber::task<int> task = greenfiber::spawn(greenfiber::spawn_options{"excute"}, coroutine);
    std::cout << "main: created task '" << task.name()
              << "': " << greenfiber::to_string(task.status()) << "\n";
    try {
        (void)task.result();
    } catch (const greenfiber::invalid_state_error&) {
        std::cout << "main: result() before the run throws invalid_state_error\n";
    }

    // Step 3: run_until_complete() runs the loop until the task is finished.
    const int returned = loop.run_until_complete(task);
    std::cout << "main: run_until_complete returned " << returned << "; task '" << task.name()
              << "': " << greenfiber::to_string(task.status()) << "\n";

    // Step 4: the finished task keeps its result (print(task.result())).
    std::cout << task.result() << "\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "000_task_basics: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "000_task_basics: unknown exception\n";
    }
    return 1;
}
