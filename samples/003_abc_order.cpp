// 003_abc_order: a task that never waits runs from start to end without letting others in.
//
// Ports seeds/003 (the "why asyncio" tutorial), section "使用async.coroutine和yield from
// 实现异步IO", the second example: a() and b() print "begin", sleep 0.5 s and print "end";
// c() has its sleep commented out, so it prints "ccc begin" and "ccc end" in one go. The
// tutorial's point: "每当有任务阻塞的时候就await，然后其他协程继续工作" — a task lets others
// run only where it waits. All three run with
// event_lopp.run_until_complete(asyncio.wait(taskList)), then close().
//
// Python's wait() put the three coroutines into a set, so their start order could vary;
// greenfiber starts tasks in the order they were spawned, so the output is fixed: a and b
// begin and wait, c runs through, then a and b end as their sleeps (100 ms here) run out.

#include <chrono>
#include <exception>
#include <iostream>
#include <vector>

#include <greenfiber/combinators.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;

void a() {
    std::cout << "aaa begin\n";
    greenfiber::sleep(100ms);
    std::cout << "aaa end\n";
}

void b() {
    std::cout << "bbb begin\n";
    greenfiber::sleep(100ms);
    std::cout << "bbb end\n";
}

void c() {
    std::cout << "ccc begin\n";
    // greenfiber::sleep(100ms);   (commented out, as in the tutorial: c never waits)
    std::cout << "ccc end\n";
}

int demo() {
    greenfiber::event_loop& event_lopp = greenfiber::event_loop::current();

    // taskList = [a(), b(), c()]; run_until_complete(asyncio.wait(taskList))
    auto all = greenfiber::spawn([] {
        std::vector<greenfiber::task<void>> task_list;
        task_list.push_back(greenfiber::spawn(a));
        task_list.push_back(greenfiber::spawn(b));
        task_list.push_back(greenfiber::spawn(c));
        (void)greenfiber::wait(task_list);
    });
    event_lopp.run_until_complete(all);
    event_lopp.close();
    std::cout << "main: all three finished, loop closed\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "003_abc_order: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "003_abc_order: unknown exception\n";
    }
    return 1;
}
