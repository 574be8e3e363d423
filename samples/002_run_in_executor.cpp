// 002_run_in_executor: a blocking call moved to a thread pool blocks only its pool thread;
// the loop and the other tasks go on meanwhile.
//
// Ports two sections:
// - seeds/002 (the coroutine tutorial), "如何使用阻塞和异步": requests.get blocks the whole
//   thread, so each of three tasks hands it to a thread with
//   `await loop.run_in_executor(None, functools.partial(requests.get, url, verify=False))`
//   and prints res.url; the three tasks run with loop.run_until_complete(asyncio.wait(tasks)).
// - seeds/003 (the "why asyncio" tutorial), "Executor": loop.run_in_executor(executor, func,
//   *args) runs func(*args) in an executor (by default a ThreadPoolExecutor), and
//   loop.set_default_executor(executor) replaces the default one.
//
// This sample does without the network: requests_get() is a stand-in that blocks its thread
// for 200 ms (std::this_thread::sleep_for, where requests.get would wait for the server)
// and answers with the URL it was given. (The HTTP form is 002_run_in_executor_http.)
// The program measures itself and prints verdicts instead of times:
// - step 1: three calls on the default executor overlap (about 1 delay, not 3), and a
//   ticker task keeps running on the loop while they block their pool threads;
// - step 2: the same through an executor passed explicitly, with the arguments after the
//   function (asyncio's run_in_executor(executor, func, *args));
// - step 3: set_default_executor() with a pool of 2 threads: to_thread() now runs there,
//   and three calls take about 2 delays (two at once, then the third).
//
// greenfiber's run_in_executor() and to_thread() are called from the task that waits (no
// loop object is needed) and suspend only that task. functools.partial is std::bind_front
// (or a lambda); the default executor is per hub, as asyncio's is per loop. The results are printed
// in the order of the task list once all are done, so the output is the same on every run.

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <greenfiber/combinators.hpp>
#include <greenfiber/executor.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr auto delay = 200ms;
constexpr auto tick = 20ms;

const std::vector<std::string> urls = {"https://www.baidu.com", "https://www.zhihu.com",
                                       "https://www.163.com"};

// What requests.get returns, as far as the tutorial uses it.
struct response {
    std::string url;
    int status_code = 0;
    bool verified = true;
};

// Calls of requests_get() running now, and the most that ran at once (reset by step 3).
std::atomic<int> calls_running{0};
std::atomic<int> calls_peak{0};

// The stand-in for requests.get(url, verify=...): blocks the calling thread for one delay.
response requests_get(const std::string& url, bool verify) {
    const int running = ++calls_running;
    int peak = calls_peak.load();
    while (running > peak && !calls_peak.compare_exchange_weak(peak, running)) {
    }
    std::this_thread::sleep_for(delay);
    --calls_running;
    return response{url, 200, verify};
}

// How many delays `elapsed` is.
double delays(clock_type::duration elapsed) {
    return std::chrono::duration<double>(elapsed) / delay;
}

// Prints whether `n` blocking calls of one delay each, started together, overlapped: about
// one delay when concurrent, at least `n` one after another. The bound lies half a delay
// below `n`, so a loaded machine that slows the concurrent run still passes it.
void print_verdict(const char* what, int n, clock_type::duration elapsed) {
    const double d = delays(elapsed);
    std::cout << n << " " << what << ": ";
    if (d < n - 0.5) {
        std::cout << "concurrent (about 1 delay, not " << n << ")\n";
    } else {
        std::cout << "NOT concurrent (" << d << " delays)\n";
    }
}

// Spawns one task per URL, each calling `fetch(url)`, runs them with
// loop.run_until_complete(asyncio.wait(tasks)), prints each res.url in list order and
// returns the elapsed time.
template <class Fetch>
clock_type::duration run_tasks(Fetch fetch) {
    greenfiber::event_loop& loop = greenfiber::event_loop::current();
    const auto start = clock_type::now();
    std::vector<greenfiber::task<response>> tasks;
    for (const auto& url : urls) tasks.push_back(greenfiber::spawn(fetch, url));
    auto all = greenfiber::spawn([&tasks] { (void)greenfiber::wait(tasks); });
    loop.run_until_complete(all);
    const auto elapsed = clock_type::now() - start;
    for (auto& t : tasks) std::cout << t.result().url << "\n";  // print(res.url)
    return elapsed;
}

// Step 1: the tutorial's run(url) on the default executor, with a ticker on the loop.
void default_executor() {
    std::cout << "== run_in_executor(None, functools.partial(requests.get, url, verify=False))\n";

    // A task that wakes up every tick while the calls block their threads: it runs only if
    // the loop does.
    int ticks = 0;
    bool stop_ticking = false;
    auto ticker = greenfiber::spawn(greenfiber::spawn_options{"ticker"}, [&] {
        while (!stop_ticking) {
            greenfiber::sleep(tick);
            ++ticks;
        }
    });

    const auto elapsed = run_tasks([](const std::string& url) {
        // res = await loop.run_in_executor(None, functools.partial(requests.get, url,
        // verify=False)): the bound function is copied into the job, so it may not refer to
        // this task's stack.
        return greenfiber::run_in_executor(std::bind_front(requests_get, url, false));
    });
    stop_ticking = true;
    greenfiber::event_loop::current().run_until_complete(ticker);

    print_verdict("blocking calls in the default executor", 3, elapsed);
    // About delay / tick = 10 ticks; a loop blocked by the calls would manage none.
    std::cout << "meanwhile the ticker task ran on the loop: "
              << (ticks >= 3 ? "yes (several ticks)" : "NO") << "\n";
}

// Step 2: run_in_executor(executor, func, *args) on an executor of the program's own.
void explicit_executor() {
    std::cout << "== run_in_executor(executor, func, *args) on a pool of 3 threads\n";
    greenfiber::thread_pool_executor pool(3);
    const auto elapsed = run_tasks([&pool](const std::string& url) {
        // `pool` outlives the tasks: they are all done before run_tasks() returns.
        return greenfiber::run_in_executor(pool, requests_get, url, false);
    });
    print_verdict("blocking calls on 3 threads", 3, elapsed);
}

// Step 3: set_default_executor() with a pool of 2 threads; to_thread() uses it.
void set_default() {
    std::cout << "== set_default_executor(a pool of 2 threads); to_thread(func, *args)\n";
    auto pool = std::make_shared<greenfiber::thread_pool_executor>(2);
    std::shared_ptr<greenfiber::executor> previous = greenfiber::set_default_executor(pool);
    std::cout << "the default executor is the pool of " << pool->max_threads() << ": "
              << (greenfiber::default_executor() == pool ? "yes" : "no") << "\n";

    calls_peak = 0;
    const auto elapsed = run_tasks(
        [](const std::string& url) { return greenfiber::to_thread(requests_get, url, false); });
    // Two calls at once, then the third: at least 2 delays (the third waits for a free
    // thread; the bound lies halfway to 1), and never more than two calls at once. Both
    // hold on a loaded machine, where an upper bound on the time would not.
    const double d = delays(elapsed);
    std::cout << "3 blocking calls on 2 threads: "
              << (d > 1.5 && calls_peak == 2 ? "about 2 delays (two at once, then the third)"
                                             : "NOT about 2 delays")
              << "\n";

    // Put the previous default back; the pool shuts down when its last owner lets go.
    (void)greenfiber::set_default_executor(std::move(previous));
}

int demo() {
    default_executor();
    explicit_executor();
    set_default();
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "002_run_in_executor: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "002_run_in_executor: unknown exception\n";
    }
    return 1;
}
