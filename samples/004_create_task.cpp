// 004_create_task: a task made with create_task() or ensure_future() is pending before the
// loop runs it and finished, holding its result, afterwards.
//
// Ports seeds/004 (the "Python 异步编程 协程(async/await)" tutorial), section "3、Python 协程
// (async/await)的使用", examples "2）使用loop.create_task()创建task任务" and "3）使用
// asyncio.ensure_future()创建task任务": execute(x) prints `'Number:', x` and returns x; the
// program makes the coroutine execute(1), prints it and 'After calling execute', makes a task
// of it (with loop.create_task() in the first example, asyncio.ensure_future() in the
// second), prints `'Task:', task` (pending), runs the loop until it completes, prints the
// task again (finished, with result=1) and 'After calling loop'.
//
// Python prints the task with addresses and source positions; here a task prints as
// <task 'name' status> plus its result once it has one. ensure_future() of a callable is
// spawn(); 003_ensure_future shows the overload that returns a task it is given unchanged.

#include <concepts>
#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <utility>

#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

// asyncio.ensure_future(coroutine): spawns it, under the given name.
template <class Fn>
requires std::invocable<Fn&>
auto ensure_future(Fn&& fn, std::string name) {
    return greenfiber::spawn(greenfiber::spawn_options{std::move(name)}, std::forward<Fn>(fn));
}

// A task as print(task) shows it, without addresses: <task 'name' status result=...>.
std::string describe(greenfiber::task<int>& t) {
    std::string s = "<task '" + t.name() + "' " + greenfiber::to_string(t.status());
    if (t.status() == greenfiber::task_status::done) s += " result=" + std::to_string(t.result());
    return s + ">";
}

int execute(int x) {
    std::cout << "Number: " << x << "\n";
    return x;
}

// The program of both examples; only the way the task is made differs.
template <class MakeTask>
void example(const char* title, MakeTask make_task) {
    std::cout << "== " << title << "\n";
    auto coroutine = std::bind_front(execute, 1);
    std::cout << "协程: execute(1), bound and not started\n";
    std::cout << "After calling execute\n";

    greenfiber::event_loop& loop = greenfiber::event_loop::current();
    greenfiber::task<int> task = make_task(coroutine);
    std::cout << "Task: " << describe(task) << "\n";

    loop.run_until_complete(task);

    std::cout << "Task: " << describe(task) << "\n";
    std::cout << "After calling loop\n";
}

int demo() {
    // Example 2): task = loop.create_task(coroutine)
    example("loop.create_task()", [](auto coroutine) {
        return greenfiber::spawn(greenfiber::spawn_options{"execute"}, coroutine);
    });
    // Example 3): task = asyncio.ensure_future(coroutine)
    example("asyncio.ensure_future()",
            [](auto coroutine) { return ensure_future(coroutine, "execute"); });
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "004_create_task: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "004_create_task: unknown exception\n";
    }
    return 1;
}
