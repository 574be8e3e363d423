// 003_as_completed: results in the order the tasks finish, each as soon as it is ready.
//
// Ports seeds/003 (the "why asyncio" tutorial), section "asyncio.as_completed()": main()
// sleeps 0.5 s, makes three do() tasks and iterates `asyncio.as_completed(taskList)`,
// awaiting each item and printing its result: "按完成顺序生成协程的迭代器" — an iterator that
// hands out the tasks in the order they complete, so each result is handled as soon as it is
// available. The tutorial also prints the iterator itself (an address); here it is described.
//
// In the tutorial all three do() sleep equally long, so the completion order cannot be seen;
// here they sleep 300, 100 and 200 ms, and the results arrive as do 2, do 3, do 1. The sample
// measures the whole run: the slowest task plus main's sleep, not the sum of all sleeps.

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

std::string do_(int n, std::chrono::milliseconds sleep_for) {  // `do` is a C++ keyword
    std::cout << "let's do it ! (do " << n << ", " << sleep_for.count() << " ms)\n";
    greenfiber::sleep(sleep_for);
    std::cout << "done.... (do " << n << ")\n";
    return "hello from do " + std::to_string(n);
}

void async_main() {
    greenfiber::sleep(delay);

    std::vector<greenfiber::task<std::string>> task_list;
    task_list.push_back(greenfiber::spawn(do_, 1, 3 * delay));
    task_list.push_back(greenfiber::spawn(do_, 2, 1 * delay));
    task_list.push_back(greenfiber::spawn(do_, 3, 2 * delay));

    greenfiber::as_completed result(task_list);
    std::cout << "as_completed: hands out " << task_list.size()
              << " tasks in the order they finish\n";
    for (greenfiber::task<std::string> task : result) {
        std::string res = task.get();  // res = await task: it is already finished
        std::cout << res << "\n";
    }
}

int demo() {
    greenfiber::event_loop& loop = greenfiber::event_loop::current();
    const auto start = clock_type::now();

    // loop.run_until_complete(asyncio.wait([main()]))
    auto main_task = greenfiber::spawn(greenfiber::spawn_options{"main"}, async_main);
    loop.run_until_complete(main_task);
    loop.close();

    // print('total cost time: ', now() - start), as a verdict: 1 delay (main) + 3 (slowest).
    const double delays = std::chrono::duration<double>(clock_type::now() - start) / delay;
    std::cout << "total cost time: "
              << (delays < 6.5 ? "about 4 delays (main's sleep + the slowest do), not 7"
                               : "NOT concurrent")
              << "\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "003_as_completed: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "003_as_completed: unknown exception\n";
    }
    return 1;
}
