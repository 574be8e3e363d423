// 004_many_tasks: many requests as many tasks; they overlap only if the request lets the loop
// run while it waits.
//
// Ports seeds/004 (the "Python 异步编程 协程(async/await)" tutorial), section "4、多任务协程":
// five tasks of request() in a list, printed (`'Tasks:', tasks`), run with
// loop.run_until_complete(asyncio.wait(tasks)), and each `'Task Result:', task.result()`
// printed. The tutorial's request() calls requests.get(), which blocks the whole thread: the
// five tasks then run one after another and nothing is gained. seeds/000 section "3 运用"
// measures exactly that (15 s blocking against 3 s with aiohttp, for five requests to a
// server that answers after 3 s).
//
// This sample does without the network. Each request waits 100 ms for its "server":
// - first as the tutorial wrote it, with a call that blocks the thread
//   (std::this_thread::sleep_for stands for requests.get): about 5 delays;
// - then with a wait that suspends only the task (greenfiber::sleep, where a greenfiber
//   socket read would wait): about 1 delay.
// The program measures both runs and prints a verdict for each. In the blocking run the
// hub's watchdog reports each request that kept the loop waiting (reference §3.1: the
// blocking case, detected by the stall watchdog). (The HTTP form of these examples is
// 004_many_tasks_http; 000_requests_vs_aiohttp makes real blocking requests.)

#include <chrono>
#include <exception>
#include <iostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <greenfiber/combinators.hpp>
#include <greenfiber/hub.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr auto delay = 100ms;
constexpr int requests = 5;

// A task as print(task) shows it, without addresses: <task 'name' status>.
std::string describe(const greenfiber::any_task& t) {
    return "<task '" + t.name() + "' " + greenfiber::to_string(t.status()) + ">";
}

// requests.get(url) as the tutorial calls it: the whole thread waits, and the loop with it.
int blocking_request() {
    std::this_thread::sleep_for(delay);
    return 200;
}

// A request whose wait suspends only its own task.
int cooperative_request() {
    greenfiber::sleep(delay);
    return 200;
}

// The tutorial's program, with `request` as its request function; returns the elapsed time.
clock_type::duration run_requests(int (*request)(), const char* label) {
    greenfiber::event_loop& loop = greenfiber::event_loop::current();
    const auto start = clock_type::now();

    // tasks = [asyncio.ensure_future(request()) for _ in range(5)]; print('Tasks:', tasks)
    std::vector<greenfiber::task<int>> tasks;
    for (int i = 1; i <= requests; ++i) {
        tasks.push_back(greenfiber::spawn(
            greenfiber::spawn_options{std::string(label) + " " + std::to_string(i)}, request));
    }
    std::cout << "Tasks: [";
    for (std::size_t i = 0; i < tasks.size(); ++i)
        std::cout << (i ? ", " : "") << describe(tasks[i]);
    std::cout << "]\n";

    // loop.run_until_complete(asyncio.wait(tasks))
    auto all = greenfiber::spawn([&tasks] { (void)greenfiber::wait(tasks); });
    loop.run_until_complete(all);
    const auto elapsed = clock_type::now() - start;

    // for task in tasks: print('Task Result:', task.result())
    for (auto& task : tasks) std::cout << "Task Result: " << task.result() << "\n";
    return elapsed;
}

int demo() {
    greenfiber::hub& hub = greenfiber::hub::current();

    // Step 1: as in the tutorial, a request that blocks the thread. A blocking wait never
    // ends early, so five in a row take at least five delays. The hub's watchdog reports a
    // fiber that keeps the loop from running; its threshold is set to half a request, and its
    // reports are collected here instead of going to stderr.
    std::cout << "== a request that blocks the thread (requests.get)\n";
    std::vector<std::string> reports;
    greenfiber::report_handler previous_handler = hub.set_exception_handler(
        [&reports](const greenfiber::failure_report& r) { reports.emplace_back(r.message); });
    const std::chrono::milliseconds previous_threshold = hub.watchdog();
    hub.set_watchdog(std::chrono::duration_cast<std::chrono::milliseconds>(delay / 2));

    const double blocking =
        std::chrono::duration<double>(run_requests(blocking_request, "blocking")) / delay;
    std::cout << requests << " requests: "
              << (blocking > requests - 0.5 ? "one after another (about 5 delays, not 1)"
                                            : "overlapped?!")
              << "\n";

    hub.set_watchdog(previous_threshold);
    (void)hub.set_exception_handler(std::move(previous_handler));
    int reported = 0;
    for (int i = 1; i <= requests; ++i) {
        const std::string name = "'blocking " + std::to_string(i) + "'";
        for (const auto& r : reports) {
            if (r.find("watchdog") != std::string::npos && r.find(name) != std::string::npos) {
                ++reported;
                break;
            }
        }
    }
    std::cout << "the watchdog reported " << reported << " of the " << requests
              << " blocking requests\n";

    // Step 2: a request that suspends only its task: the five waits overlap.
    std::cout << "== a request that suspends only its task\n";
    const double cooperative =
        std::chrono::duration<double>(run_requests(cooperative_request, "cooperative")) / delay;
    std::cout << requests << " requests: "
              << (cooperative < requests - 0.5 ? "concurrent (about 1 delay, not 5)"
                                               : "NOT concurrent")
              << "\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "004_many_tasks: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "004_many_tasks: unknown exception\n";
    }
    return 1;
}
