// 001_asyncio_sleep: two tasks that sleep; while one sleeps the other runs (1 3 2 4).
//
// Ports seeds/001 (the asyncio tutorial), sections "2. 实现 - asyncio(重点)" and
// "3. async & await": the same program twice, first with @asyncio.coroutine and
// `yield from`, then with async/await. func1 prints 1, sleeps 1 s, prints 2; func2 prints 3,
// sleeps 2 s, prints 4. Both are wrapped with ensure_future() and the loop runs
// asyncio.wait(tasks). "遇到IO耗时操作，自动化切换到tasks中的其他任务": a sleep switches to
// the other task, so the output is 1 3 2 4, as with the greenlets of 001_greenlet_switch,
// but nobody names the greenlet to switch to.
//
// In greenfiber both spellings are one: any function may sleep, with no decorator and no
// await, because each task has its own stack. The sleeps are 100 ms and 200 ms here.

#include <chrono>
#include <exception>
#include <iostream>
#include <vector>

#include <greenfiber/combinators.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;

void func1() {
    std::cout << "1\n";
    greenfiber::sleep(100ms);  // switches to the other ready task (func2)
    std::cout << "2\n";
}

void func2() {
    std::cout << "3\n";
    greenfiber::sleep(200ms);
    std::cout << "4\n";
}

int demo() {
    // Step 1: tasks = [ensure_future(func1()), ensure_future(func2())]. Neither has run.
    std::vector<greenfiber::task<void>> tasks;
    tasks.push_back(greenfiber::spawn(greenfiber::spawn_options{"func1"}, func1));
    tasks.push_back(greenfiber::spawn(greenfiber::spawn_options{"func2"}, func2));
    std::cout << "main: two tasks created, nothing printed yet\n";

    // Step 2: loop.run_until_complete(asyncio.wait(tasks)). main is a greenlet too, so it
    // calls wait() itself; the loop runs the two tasks while main is suspended in it.
    greenfiber::wait_result<void> r = greenfiber::wait(tasks);

    std::cout << "main: wait() returned " << r.done.size() << " done, " << r.pending.size()
              << " pending\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "001_asyncio_sleep: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "001_asyncio_sleep: unknown exception\n";
    }
    return 1;
}
