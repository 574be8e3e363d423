// 002_ten_tasks: ten tasks sleep at the same time, so ten sleeps take about one.
//
// Ports seeds/002 (the coroutine tutorial), section "简单的例子": test_asyncio() prints
// "start" with the time, sleeps 5 s and prints "end" with the time; ten of them are made
// with ensure_future() and run with loop.run_until_complete(asyncio.wait(task)). The times
// it prints show that all ten start together and end together, one sleep later.
//
// Printed times would differ on every run, so each task prints its number instead and the
// program measures itself: the ten sleeps of 100 ms overlap, and the whole run takes about
// one sleep, not ten. (Where the tutorial notes that asyncio.wait is needed for a list of
// tasks, greenfiber::wait takes the vector.)

#include <chrono>
#include <exception>
#include <iostream>
#include <vector>

#include <greenfiber/combinators.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr auto delay = 100ms;

// Prints whether `n` jobs of one `delay` each, started together, overlapped: together they
// take about one delay when concurrent and at least `n` delays one after another. The
// bound lies half a delay below `n`: a loaded machine slows the concurrent run, never the
// serial one below its `n` delays.
void print_verdict(const char* what, int n, clock_type::duration elapsed) {
    const double delays = std::chrono::duration<double>(elapsed) / delay;
    std::cout << n << " " << what << ": ";
    if (delays < n - 0.5) {
        std::cout << "concurrent (about 1 delay, not " << n << ")\n";
    } else {
        std::cout << "NOT concurrent (" << delays << " delays)\n";
    }
}

void test_asyncio(int i) {
    std::cout << "start : task " << i << "\n";
    greenfiber::sleep(delay);
    std::cout << "end : task " << i << "\n";
}

int demo() {
    const auto start = clock_type::now();

    // Step 1: task = [asyncio.ensure_future(test_asyncio()) for i in range(10)]
    std::vector<greenfiber::task<void>> task;
    for (int i = 0; i < 10; ++i) task.push_back(greenfiber::spawn(test_asyncio, i));

    // Step 2: loop.run_until_complete(asyncio.wait(task)). main waits itself; the loop runs
    // the tasks meanwhile: each starts, and each sleep lets the next one start.
    (void)greenfiber::wait(task);

    print_verdict("tasks of one sleep each", 10, clock_type::now() - start);
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "002_ten_tasks: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "002_ten_tasks: unknown exception\n";
    }
    return 1;
}
