// 001_event_loop: the calls that manage an event loop, and the running loop seen from a task.
//
// Ports seeds/001 (the asyncio tutorial), section "4.1 事件循环": the list of seven loop
// calls (get_event_loop, call_later, call_soon, time, set_event_loop, new_event_loop,
// run_forever) and the example in which hello() prints the running loop
// (get_running_loop()), sleeps and prints "end", run with loop.run_until_complete(hello()).
//
// In greenfiber each thread has exactly one loop, the face of its hub:
// - get_event_loop() and get_running_loop() are both event_loop::current();
// - new_event_loop() + set_event_loop() is a new thread, which gets a loop of its own;
// - call_soon, call_later, time, run_forever and stop keep their asyncio meaning.
// A loop printed by Python shows its address; here the sample says which loop it is instead.

#include <chrono>
#include <exception>
#include <iostream>
#include <thread>

#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;

const char* yes_no(bool b) {
    return b ? "yes" : "no";
}

// The loop of the thread that runs main(), for comparisons (borrowed; it lives as long as
// that thread).
greenfiber::event_loop* main_loop = nullptr;

void hello() {
    std::cout << "start\n";
    greenfiber::event_loop& loop = greenfiber::event_loop::current();  // get_running_loop()
    std::cout << "现在运行的事件循环是 main's loop: " << yes_no(&loop == main_loop)
              << ", running: " << yes_no(loop.is_running()) << "\n";
    greenfiber::sleep(100ms);
    std::cout << "end\n";
}

int demo() {
    // Step 1: get_event_loop(). One loop per thread: every call gives the same one.
    greenfiber::event_loop& loop = greenfiber::event_loop::current();
    main_loop = &loop;
    std::cout << "main: event_loop::current() twice gives the same loop: "
              << yes_no(&greenfiber::event_loop::current() == &loop)
              << "; running: " << yes_no(loop.is_running()) << "\n";

    // Step 2: loop.run_until_complete(hello()).
    auto task = greenfiber::spawn(greenfiber::spawn_options{"hello"}, hello);
    loop.run_until_complete(task);
    std::cout << "main: run_until_complete returned; running: " << yes_no(loop.is_running())
              << "\n";

    // Step 3: call_soon(callback, arg) and call_later(delay, callback, arg) schedule plain
    // callbacks (a lambda captures what asyncio passes as `arg`); run_forever() runs them
    // until a callback calls stop(). loop.time() is the loop's clock in seconds: only
    // differences are meaningful, so only a difference is shown.
    const double start = loop.time();
    loop.call_later(200ms, [&loop] {
        std::cout << "callback: stop()\n";
        loop.stop();
    });
    loop.call_later(100ms, [&loop, start] {
        std::cout << "callback(later): loop.time() advanced by at least 0.1 s: "
                  << yes_no(loop.time() - start >= 0.1) << "\n";
    });
    loop.call_soon([] { std::cout << "callback(soon): runs first, before any timer\n"; });
    std::cout << "main: scheduled call_later(0.2 s, stop), call_later(0.1 s), call_soon; "
                 "run_forever()\n";
    loop.run_forever();
    std::cout << "main: run_forever returned after stop()\n";

    // Step 4: new_event_loop() + set_event_loop(): another thread has a loop of its own,
    // which runs that thread's tasks.
    std::thread worker([] {
        greenfiber::event_loop& own = greenfiber::event_loop::current();
        auto answer = greenfiber::spawn([] {
            greenfiber::sleep(10ms);
            return 42;
        });
        const int result = own.run_until_complete(answer);
        std::cout << "worker thread: its loop is a new one: " << yes_no(&own != main_loop)
                  << "; its task returned " << result << "\n";
    });
    worker.join();

    // Step 5: close(): the loop refuses to run again.
    loop.close();
    std::cout << "main: closed: " << yes_no(loop.is_closed()) << "\n";
    try {
        loop.run_forever();
        std::cout << "main: run_forever after close() ran\n";
    } catch (const greenfiber::error&) {
        std::cout << "main: run_forever after close() throws greenfiber::error\n";
    }
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "001_event_loop: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "001_event_loop: unknown exception\n";
    }
    return 1;
}
