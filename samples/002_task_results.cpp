// 002_task_results: ten tasks with an argument each; their callbacks and their results.
//
// Ports seeds/002 (the coroutine tutorial), section "回调函数 / 多个协程回调函数": test1(x)
// prints "I am test1 and the param is x", sleeps 10 s and returns x*10; ten tasks, for x in
// range(10), run with loop.run_until_complete(asyncio.wait(tasks)), after which every
// task.result() is printed. The tutorial's callback(param) prints "the waitting x is ..."
// from the finished task (its docstring shows "the waitting x is 20"), but the line that
// attaches it is commented out; here it is attached to every task.
//
// The sleeps are 100 ms, and they overlap: the sample measures that the ten take about one.
// One difference from asyncio: greenfiber resumes whoever waits for a task before it runs
// the task's done callbacks (asyncio runs the callbacks first), so main yields once after
// its wait to let them run.

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

int test1(int x) {
    std::cout << "I am test1 and the param is " << x << "\n";
    greenfiber::sleep(delay);
    return x * 10;
}

// "param 是一个future对象。想象一下，这个类来自未来。" (the param is a future: a value from the
// future). Here it is the finished task.
void callback(greenfiber::task<int>& param) {
    std::cout << "the waitting x is " << param.result() << "\n";
}

int demo() {
    const auto start = clock_type::now();

    // Step 1: tasks = [asyncio.ensure_future(test1(x)) for x in range(10)], each with the
    // callback.
    std::vector<greenfiber::task<int>> tasks;
    for (int x = 0; x < 10; ++x) {
        tasks.push_back(greenfiber::spawn(test1, x));
        tasks.back().add_done_callback(callback);
    }

    // Step 2: loop.run_until_complete(asyncio.wait(tasks)). main waits itself; the loop runs
    // the tasks meanwhile. As in asyncio, each task's callback was added before wait() began,
    // so all of them have run when it returns.
    (void)greenfiber::wait(tasks);
    print_verdict("tasks of one sleep each", 10, clock_type::now() - start);

    // Step 3: for task in tasks: print(task.result())
    for (auto& task : tasks) std::cout << task.result() << "\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "002_task_results: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "002_task_results: unknown exception\n";
    }
    return 1;
}
