// 001_coroutine_object: making the work to run is not running it; the loop runs it.
//
// Ports seeds/001 (the asyncio tutorial), section "4.2 协程对象": calling a coroutine
// function, `result = func()`, only makes a coroutine object: "函数内部代码不会执行". The
// body runs once the object is handed to the loop, with loop.run_until_complete(result) or,
// since Python 3.7, asyncio.run(result).
//
// greenfiber has two stages where Python has one. A callable (here a lambda) is the
// coroutine object: nothing runs. spawn() makes a task that is scheduled but not started:
// still nothing runs, until the code that spawned it lets the loop run
// (run_until_complete(), or any wait). greenfiber::run(fn) is asyncio.run().

#include <exception>
#include <iostream>

#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

int demo() {
    int runs = 0;

    // Step 1: result = func(). The "coroutine object" is the callable; nothing has run.
    auto func = [&runs] {
        ++runs;
        std::cout << "hhhhhhhhh\n";
    };
    std::cout << "main: made func; run count: " << runs << "\n";

    // Step 2: a task made from it is scheduled, not started.
    greenfiber::task<void> result = greenfiber::spawn(greenfiber::spawn_options{"func"}, func);
    std::cout << "main: spawned task '" << result.name()
              << "': " << greenfiber::to_string(result.status()) << "; run count: " << runs << "\n";

    // Step 3: loop.run_until_complete(result): the loop runs it.
    greenfiber::event_loop& loop = greenfiber::event_loop::current();
    loop.run_until_complete(result);
    std::cout << "main: after run_until_complete: " << greenfiber::to_string(result.status())
              << "; run count: " << runs << "\n";

    // Step 4: asyncio.run(result): greenfiber::run() makes the task and runs the loop until
    // it is finished, in one call.
    greenfiber::run(func);
    std::cout << "main: after greenfiber::run(func): run count: " << runs << "\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "001_coroutine_object: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "001_coroutine_object: unknown exception\n";
    }
    return 1;
}
