// 003_wait_vs_gather: wait() and gather() both run tasks at once; wait() returns the tasks
// sorted into done and pending, gather() returns their results.
//
// Ports seeds/003 (the "why asyncio" tutorial), section "asyncio.wait(tasks) 与
// async.gather(*task)":
// - a(), b() and c() each print "begin", sleep 0.5 s and print "end"; run with
//   run_until_complete(asyncio.wait(taskList)) (or gather(*taskList)), and the elapsed time
//   printed: about one sleep, not three;
// - "两者返回值是不一样的": wait() returns (finished_task_set, pending_task_set), and each
//   result is read from its task; gather() returns a list of the coroutines' return values.
//   main() runs three do() (each returns 'hello') through gather and prints the list and
//   `'result : ', res` for each; the tutorial leaves the wait() form as comments, and both
//   are run here.
//
// greenfiber::wait() returns a wait_result {done, pending} of task handles;
// greenfiber::gather() over a vector returns a vector of results, in argument order. The
// sleeps are 150 ms here; the elapsed time is shown as a verdict.

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

constexpr auto delay = 150ms;

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

void a() {
    std::cout << "aaa begin\n";
    greenfiber::sleep(delay);
    std::cout << "aaa end\n";
}

void b() {
    std::cout << "bbb begin\n";
    greenfiber::sleep(delay);
    std::cout << "bbb end\n";
}

void c() {
    std::cout << "ccc begin\n";
    greenfiber::sleep(delay);
    std::cout << "ccc end\n";
}

std::string do_() {  // `do` is a C++ keyword
    std::cout << "let's do it !\n";
    greenfiber::sleep(delay);
    std::cout << "done....\n";
    return "hello";
}

// Python's print() of a list of strings.
void print_list(const std::vector<std::string>& v) {
    std::cout << "[";
    for (std::size_t i = 0; i < v.size(); ++i) std::cout << (i ? ", '" : "'") << v[i] << "'";
    std::cout << "]\n";
}

void async_main() {
    greenfiber::sleep(delay);

    // gather(*taskList): the return values, in argument order.
    std::vector<greenfiber::task<std::string>> task_list;
    for (int i = 0; i < 3; ++i) task_list.push_back(greenfiber::spawn(do_));
    std::vector<std::string> result = greenfiber::gather(task_list);
    std::cout << "gather() returned a list of results:\n";
    print_list(result);
    for (const auto& res : result) std::cout << "result :  " << res << "\n";

    // dones, pendings = await asyncio.wait(taskList): the tasks, sorted.
    std::vector<greenfiber::task<std::string>> again;
    for (int i = 0; i < 3; ++i) again.push_back(greenfiber::spawn(do_));
    greenfiber::wait_result<std::string> r = greenfiber::wait(again);
    std::cout << "wait() returned (done, pending) of tasks: " << r.done.size() << " done, "
              << r.pending.size() << " pending\n";
    for (auto& task : r.done) std::cout << "result :  " << task.result() << "\n";
}

int demo() {
    greenfiber::event_loop& event_lopp = greenfiber::event_loop::current();

    // Step 1: taskList = [a(), b(), c()]; run_until_complete(asyncio.wait(taskList))
    const auto start = clock_type::now();
    auto all = greenfiber::spawn([] {
        std::vector<greenfiber::task<void>> task_list;
        task_list.push_back(greenfiber::spawn(a));
        task_list.push_back(greenfiber::spawn(b));
        task_list.push_back(greenfiber::spawn(c));
        (void)greenfiber::wait(task_list);
    });
    event_lopp.run_until_complete(all);
    print_verdict("tasks of one sleep each", 3, clock_type::now() - start);

    // Step 2: the shapes of the two results, from main().
    auto main_task = greenfiber::spawn(greenfiber::spawn_options{"main"}, async_main);
    event_lopp.run_until_complete(main_task);
    event_lopp.close();
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "003_wait_vs_gather: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "003_wait_vs_gather: unknown exception\n";
    }
    return 1;
}
