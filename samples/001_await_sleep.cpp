// 001_await_sleep: waiting for a sleep suspends the task and lets other work run; the sleep
// gives back nothing.
//
// Ports seeds/001 (the asyncio tutorial), section "4.3 await", the first example: func()
// prints "hhhhhhhhhh", then `response = await asyncio.sleep(2)` and prints
// `"结束", response`, which is `结束 None`, run with asyncio.run(func()). The tutorial adds:
// at the await the loop "先去执行其他事件（如果有其他事件的话）" — runs other events, if
// there are any.
//
// In greenfiber the await is a plain call: greenfiber::sleep() suspends the calling task
// and returns void, C++'s "nothing" where asyncio.sleep() gives None. A callback scheduled
// before the sleep is the "other event": it runs while func is suspended. The sleep is
// 100 ms here.

#include <chrono>
#include <exception>
#include <iostream>
#include <type_traits>

#include <greenfiber/loop.hpp>

namespace {

using namespace std::chrono_literals;

// What `await asyncio.sleep(2)` evaluates to: nothing.
static_assert(std::is_void_v<decltype(greenfiber::sleep(100ms))>);

void func() {
    std::cout << "hhhhhhhhhh\n";
    greenfiber::event_loop::current().call_soon(
        [] { std::cout << "another event runs while func sleeps\n"; });
    greenfiber::sleep(100ms);  // response = await asyncio.sleep(...): there is no response
    std::cout << "结束 None (greenfiber::sleep returns void)\n";
}

int demo() {
    greenfiber::run(func);  // asyncio.run(func())
    std::cout << "main: run(func) returned\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "001_await_sleep: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "001_await_sleep: unknown exception\n";
    }
    return 1;
}
