// 003_nested_tasks: tasks that start tasks of their own; everything overlaps, and each outer
// task hands its inner results to its caller.
//
// Ports seeds/003 (the "why asyncio" tutorial), section "嵌套协程": main() sleeps 0.5 s, makes
// three do() tasks (each prints "let's do it !", sleeps 0.5 s, prints "done...." and returns
// 'hello') and waits for them; two main() run with
// loop.run_until_complete(asyncio.wait([main(), main()])), and the total cost time is about
// 1.0 s: one sleep in main() and one in do(), however many tasks there are. The tutorial then
// says the results need not be printed inside main(): main() can return what wait() or
// gather() gave to its caller, but it leaves that code block empty. Here main() returns its
// results (from gather) and the top level prints them, main by main.
//
// The sleeps are 100 ms; the sample measures itself: about 2 delays, where running every
// sleep one after another would take 8.

#include <chrono>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <greenfiber/combinators.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr auto delay = 100ms;

std::string do_() {  // `do` is a C++ keyword
    std::cout << "let's do it !\n";
    greenfiber::sleep(delay);  // stands for blocking I/O inside the task
    std::cout << "done....\n";
    return "hello";
}

// The tutorial's main(): waits, then runs three do() at once and returns their results.
std::vector<std::string> main_coroutine() {
    greenfiber::sleep(delay);
    std::vector<greenfiber::task<std::string>> task_list;
    for (int i = 0; i < 3; ++i) task_list.push_back(greenfiber::spawn(do_));
    return greenfiber::gather(task_list);
}

int demo() {
    greenfiber::event_loop& loop = greenfiber::event_loop::current();
    const auto start = clock_type::now();

    // Step 1: loop.run_until_complete(asyncio.wait([main(), main()]))
    std::vector<greenfiber::task<std::vector<std::string>>> mains;
    mains.push_back(greenfiber::spawn(greenfiber::spawn_options{"main 1"}, main_coroutine));
    mains.push_back(greenfiber::spawn(greenfiber::spawn_options{"main 2"}, main_coroutine));
    auto both = greenfiber::spawn([&mains] { (void)greenfiber::wait(mains); });
    loop.run_until_complete(both);
    const auto elapsed = clock_type::now() - start;

    // Step 2: each main() returned its results to this caller.
    for (auto& m : mains) {
        for (const auto& res : m.result()) std::cout << m.name() << ": result :  " << res << "\n";
    }

    // Step 3: print('total cost time: ', now() - start), as a verdict: one sleep in main() and
    // one in do() overlap across all eight tasks.
    const double delays = std::chrono::duration<double>(elapsed) / delay;
    std::cout << "total cost time: "
              << (delays < 7.5 ? "about 2 delays, not 8 (everything overlapped)" : "NOT concurrent")
              << "\n";
    loop.close();
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "003_nested_tasks: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "003_nested_tasks: unknown exception\n";
    }
    return 1;
}
