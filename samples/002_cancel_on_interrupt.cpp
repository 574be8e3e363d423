// 002_cancel_on_interrupt: Ctrl-C stops the loop; the program then cancels every task and lets
// them unwind before it closes the loop.
//
// Ports seeds/002 (the coroutine tutorial), section "回调函数 / 如何取消协程？": 100 tasks of
// test1() print "This is test1" and sleep 10 s; loop.run_until_complete(asyncio.wait(tasks))
// runs inside try/except KeyboardInterrupt. On Ctrl-C the except branch cancels every task
// of asyncio.Task.all_tasks(), calls loop.stop() and then loop.run_forever(), which runs one
// round of the loop so that the cancellations reach the tasks; `finally` closes the loop.
// "test1 done" is never printed.
//
// Nobody presses Ctrl-C in a test, so the program sends itself SIGINT (raise()) from a
// call_later() callback 100 ms after the start; the sleep is 1 s instead of 10, and the
// tasks count what they print instead of printing it 100 times.
//
// Where greenfiber differs:
// - Python turns SIGINT into KeyboardInterrupt wherever the main thread happens to be.
//   greenfiber delivers signals on the hub (add_signal_handler: a callback on the hub's
//   stack, never in signal context), so the sample spells it out: while
//   run_until_complete() runs, a SIGINT handler stops the loop, and the stopped
//   run_until_complete() is reported as greenfiber::keyboard_interrupt.
// - The tutorial's all_tasks() also holds the task of asyncio.wait(tasks), which
//   run_until_complete() wrapped; here that task is spelled out ("wait"): 101 tasks.
// - A task cancelled in greenfiber::sleep() finishes only once the reactor has handed back
//   its cancelled timer, and the round that run_forever() runs after stop() may end before
//   the reactor is polled: after the tutorial's stop(); run_forever() the sample waits for
//   each cancelled task (any_task::wait()), where asyncio needs nothing more.
// - greenfiber::run does all of this by itself, asyncio.run's way: a SIGINT cancels the
//   main task; run() then cancels and waits for every other task and throws
//   keyboard_interrupt. The second part shows it.
// Each part runs on a thread of its own, so each has a fresh loop (the first closes its).

#include <chrono>
#include <csignal>
#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <greenfiber/combinators.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/signal.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;

constexpr int task_count = 100;
constexpr auto nap = 1s;              // the tutorial's asyncio.sleep(10)
constexpr auto ctrl_c_after = 100ms;  // when the program "presses" Ctrl-C

// What the tasks did, counted instead of printed 100 times.
struct tally {
    int started = 0;    // printed "This is test1"
    int finished = 0;   // printed "test1 done"
    int cancelled = 0;  // saw cancelled_error at their sleep
};

void test1(tally& t) {
    ++t.started;  // print('This is test1')
    try {
        greenfiber::sleep(nap);
    } catch (const greenfiber::cancelled_error&) {
        ++t.cancelled;
        throw;  // cancellation is control flow: always let it go on
    }
    ++t.finished;  // print('test1 done')
}

// loop.run_until_complete(t), under which a SIGINT raises KeyboardInterrupt: a SIGINT
// handler stops the loop, and the run_until_complete() it stopped throws
// keyboard_interrupt. The handler lives as long as the call.
template <class T>
void run_until_complete_or_interrupt(greenfiber::event_loop& loop, greenfiber::task<T>& t) {
    bool interrupted = false;
    greenfiber::add_signal_handler(SIGINT, [&loop, &interrupted] {
        interrupted = true;
        loop.stop();
    });
    struct remove_handler {
        ~remove_handler() { (void)greenfiber::remove_signal_handler(SIGINT); }
    } on_the_way_out;
    try {
        (void)loop.run_until_complete(t);
    } catch (const greenfiber::error&) {
        // "Event loop stopped before the task completed", because of the SIGINT.
        if (interrupted) throw greenfiber::keyboard_interrupt();
        throw;
    }
}

// The first part: the tutorial's program.
void tutorial_program() {
    greenfiber::event_loop& loop = greenfiber::event_loop::current();
    tally counts;

    // Step 1: tasks = [asyncio.ensure_future(test1()) for i in range(100)]
    std::vector<greenfiber::task<void>> tasks;
    for (int i = 0; i < task_count; ++i) {
        tasks.push_back(greenfiber::spawn(greenfiber::spawn_options{"test1-" + std::to_string(i)},
                                          test1, std::ref(counts)));
    }
    auto waiting = greenfiber::spawn(greenfiber::spawn_options{"wait"},
                                     [&tasks] { (void)greenfiber::wait(tasks); });

    // Someone presses Ctrl-C after a while.
    loop.call_later(ctrl_c_after, [] { std::raise(SIGINT); });

    // Step 2: try: loop.run_until_complete(asyncio.wait(tasks))
    try {
        run_until_complete_or_interrupt(loop, waiting);
        std::cout << "the tasks finished before Ctrl-C?!\n";
    } catch (const greenfiber::keyboard_interrupt&) {
        // Step 3: except KeyboardInterrupt: cancel every task, stop(), run_forever().
        std::cout << "KeyboardInterrupt: " << counts.started << " tasks printed 'This is test1'"
                  << " and sleep\n";
        std::vector<greenfiber::any_task> all = greenfiber::all_tasks();
        int requested = 0;
        for (auto& task : all) requested += task.cancel() ? 1 : 0;
        std::cout << "all_tasks(): " << all.size() << " tasks, cancel() accepted by " << requested
                  << "\n";
        loop.stop();
        loop.run_forever();  // one round: the cancellations reach the tasks
        // A task cancelled in greenfiber::sleep() finishes only once the reactor has handed
        // back its cancelled timer, and that round may end before the reactor is polled:
        // wait for each cancelled task to finish (asyncio needs nothing more here).
        for (auto& task : all) task.wait();
        std::cout << "stop(); run_forever(); wait(): the cancelled tasks unwound\n";
    } catch (...) {
        loop.close();  // finally: loop.close()
        throw;
    }
    loop.close();  // finally: loop.close()
    std::cout << "loop closed: " << (loop.is_closed() ? "yes" : "no") << "\n";

    int cancelled = 0;
    for (auto& task : tasks) cancelled += task.cancelled() ? 1 : 0;
    std::cout << "test1 tasks cancelled: " << cancelled << " of " << task_count
              << " (cancelled_error seen at the sleep by " << counts.cancelled << ")\n";
    std::cout << "the wait task: " << greenfiber::to_string(waiting.status()) << "\n";
    std::cout << "'test1 done' printed: " << counts.finished << " times\n";
    std::cout << "tasks still unfinished: " << greenfiber::all_tasks().size() << "\n";
}

// The second part: the same tasks under greenfiber::run (asyncio.run), with no handler to
// write. Step 1: the main task spawns the 100 tasks and waits for them. Step 2: the SIGINT
// cancels the main task; run() then cancels every task still unfinished, waits until they
// have unwound, and throws keyboard_interrupt.
void under_run() {
    tally counts;
    int main_cancelled = 0;
    auto main_task = [&counts, &main_cancelled] {
        std::vector<greenfiber::task<void>> tasks;
        for (int i = 0; i < task_count; ++i) {
            tasks.push_back(greenfiber::spawn(
                greenfiber::spawn_options{"test1-" + std::to_string(i)}, test1, std::ref(counts)));
        }
        greenfiber::event_loop::current().call_later(ctrl_c_after, [] { std::raise(SIGINT); });
        try {
            (void)greenfiber::wait(tasks);
        } catch (const greenfiber::cancelled_error&) {
            ++main_cancelled;
            throw;
        }
    };
    try {
        greenfiber::run(main_task);
        std::cout << "run() returned normally?!\n";
    } catch (const greenfiber::keyboard_interrupt& e) {
        std::cout << "run() threw keyboard_interrupt: " << e.what() << "\n";
    }
    std::cout << "main task cancelled: " << (main_cancelled == 1 ? "yes" : "no") << "\n";
    std::cout << "test1 tasks cancelled by run(): " << counts.cancelled << " of " << task_count
              << "; 'test1 done' printed: " << counts.finished << " times\n";
    std::cout << "tasks still unfinished: " << greenfiber::all_tasks().size() << "\n";
}

// Runs `part` on a new thread, which has a fresh loop of its own (asyncio's
// new_event_loop()): the tutorial's program closes its loop at the end. An exception from
// `part` is carried back to the caller.
void on_own_thread(void (*part)()) {
    std::exception_ptr failure;
    std::thread worker([part, &failure] {
        try {
            part();
        } catch (...) {
            failure = std::current_exception();
        }
    });
    worker.join();
    if (failure) std::rethrow_exception(failure);
}

int demo() {
    std::cout << "== the tutorial's loop: KeyboardInterrupt, cancel all_tasks(), run_forever()\n";
    on_own_thread(tutorial_program);
    std::cout << "== greenfiber::run (asyncio.run): Ctrl-C cancels the main task\n";
    on_own_thread(under_run);
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "002_cancel_on_interrupt: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "002_cancel_on_interrupt: unknown exception\n";
    }
    return 1;
}
