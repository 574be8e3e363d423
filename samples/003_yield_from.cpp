// 003_yield_from: the legacy @asyncio.coroutine / `yield from` example, where every step is
// a plain call.
//
// Ports seeds/003 (the "why asyncio" tutorial), section "使用async.coroutine和yield from
// 实现异步IO", the first example: foo() is a generator marked with @asyncio.coroutine that
// prints "foo running ....", suspends with `yield from asyncio.sleep(1)` and prints
// "foo done . . .". Two of them run with loop.run_until_complete(asyncio.wait([foo(),
// foo()])), then loop.close(). (Python 3.11 removed both the decorator and bare coroutines
// in wait().)
//
// A greenfiber task has its own stack, so the decorator and `yield from` have no
// counterpart: foo() calls a function that calls sleep(), and the sleep suspends the whole
// task, however deep it is. The output shows the two foo() running at once: the second starts
// before the first is done. The sleep is 100 ms here.

#include <chrono>
#include <exception>
#include <iostream>
#include <vector>

#include <greenfiber/combinators.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;

// Stands for the I/O that foo() waits on: an ordinary function, called normally.
void slow_io() {
    greenfiber::sleep(100ms);  // yield from asyncio.sleep(1)
}

void foo() {
    std::cout << "foo running ....\n";
    slow_io();
    std::cout << "foo done . . .\n";
}

int demo() {
    greenfiber::event_loop& loop = greenfiber::event_loop::current();

    // Step 1: loop.run_until_complete(asyncio.wait([foo(), foo()])): a task that spawns both
    // and waits for them.
    auto both = greenfiber::spawn([] {
        std::vector<greenfiber::task<void>> foos;
        foos.push_back(greenfiber::spawn(foo));
        foos.push_back(greenfiber::spawn(foo));
        return greenfiber::wait(foos).done.size();
    });
    const std::size_t done = loop.run_until_complete(both);
    std::cout << "main: " << done << " foo() finished\n";

    // Step 2: loop.close()
    loop.close();
    std::cout << "main: loop closed\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "003_yield_from: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "003_yield_from: unknown exception\n";
    }
    return 1;
}
