// 001_wait_done_pending: tasks start on their own once created; wait() sorts them into done
// and pending.
//
// Ports seeds/001 (the asyncio tutorial), section "4.3 await", the task example: main()
// creates two tasks of nested() (which returns 42) with asyncio.create_task(), "该协程会被
// 自动调度执行" (they are scheduled automatically), and `done, pending = await
// asyncio.wait(task_list, timeout=None)` waits for both: done holds the finished tasks,
// pending the unfinished ones.
//
// greenfiber::wait(tasks, timeout) returns the same two sets as vectors of task handles.
// With no timeout nothing is left pending. The second step adds what the tutorial's
// comment describes but its example never shows: with a timeout, a task that needs longer
// than the timeout comes back in pending, still running; wait() does not cancel it.

#include <chrono>
#include <exception>
#include <iostream>
#include <optional>
#include <vector>

#include <greenfiber/combinators.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;

int nested() {
    return 42;
}

void print_sets(const greenfiber::wait_result<int>& r) {
    std::cout << "  done (" << r.done.size() << "):";
    for (const auto& t : r.done) std::cout << " " << t.name();
    std::cout << "\n  pending (" << r.pending.size() << "):";
    for (const auto& t : r.pending)
        std::cout << " " << t.name() << " [" << greenfiber::to_string(t.status()) << "]";
    std::cout << "\n";
}

void async_main() {
    // Step 1: two tasks of nested(), waited for with timeout=None.
    std::vector<greenfiber::task<int>> task_list;
    task_list.push_back(greenfiber::spawn(greenfiber::spawn_options{"task1"}, nested));
    task_list.push_back(greenfiber::spawn(greenfiber::spawn_options{"task2"}, nested));
    greenfiber::wait_result<int> r = greenfiber::wait(task_list, std::nullopt);
    std::cout << "wait(task_list, timeout=None):\n";
    print_sets(r);
    for (auto& t : r.done) std::cout << "  " << t.name() << ".result() = " << t.result() << "\n";

    // Step 2: a task that sleeps 300 ms, waited for with a timeout of 100 ms.
    std::vector<greenfiber::task<int>> mixed;
    mixed.push_back(greenfiber::spawn(greenfiber::spawn_options{"nested"}, nested));
    mixed.push_back(greenfiber::spawn(greenfiber::spawn_options{"slow"}, [] {
        greenfiber::sleep(300ms);
        return 7;
    }));
    greenfiber::wait_result<int> r2 = greenfiber::wait(mixed, 100ms);
    std::cout << "wait([nested, slow], timeout=0.1 s):\n";
    print_sets(r2);

    // The pending task was left running: wait for it to finish.
    for (auto& t : r2.pending) std::cout << "  " << t.name() << ".get() = " << t.get() << "\n";
}

int demo() {
    greenfiber::run(async_main);  // asyncio.run(main())
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "001_wait_done_pending: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "001_wait_done_pending: unknown exception\n";
    }
    return 1;
}
