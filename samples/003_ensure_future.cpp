// 003_ensure_future: create_task() always makes a task; ensure_future() makes one from a
// function but returns a task it is given unchanged.
//
// Ports seeds/003 (the "why asyncio" tutorial), section "创建一个task对象": both
// event_loop.create_task(corontine) and asyncio.ensure_future(corontine | future) "schedule
// the execution of a coroutine object: wrap it in a future. Return a Task object.", and
// ensure_future adds "If the argument is a Future, it is returned directly."
//
// greenfiber has one way to make a task, spawn() (create_task). ensure_future() is the small
// overload set below: a callable gets spawned, a task comes back as another handle to the
// same task. Handles compare equal when they refer to the same task.

#include <concepts>
#include <exception>
#include <iostream>
#include <utility>

#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

// asyncio.ensure_future(coroutine): spawns it.
template <class Fn>
requires std::invocable<Fn&>
auto ensure_future(Fn&& fn) {
    return greenfiber::spawn(std::forward<Fn>(fn));
}

// asyncio.ensure_future(future): returns it (another handle to the same task).
template <class T>
greenfiber::task<T> ensure_future(const greenfiber::task<T>& t) {
    return t.share();
}

const char* yes_no(bool b) {
    return b ? "yes" : "no";
}

int do_work() {
    std::cout << "do_work runs\n";
    return 1;
}

int demo() {
    greenfiber::event_loop& loop = greenfiber::event_loop::current();

    // Step 1: loop.create_task(corontine) and ensure_future(corontine): two new tasks.
    greenfiber::task<int> created = greenfiber::spawn(do_work);
    greenfiber::task<int> ensured = ensure_future(do_work);
    std::cout << "create_task(do_work) made '" << created.name()
              << "', ensure_future(do_work) made '" << ensured.name()
              << "'; the same task: " << yes_no(created == ensured) << "\n";

    // Step 2: ensure_future(task) returns the task it was given.
    greenfiber::task<int> again = ensure_future(created);
    std::cout << "ensure_future(" << created.name() << ") returns '" << again.name()
              << "'; the same task: " << yes_no(again == created) << "\n";

    // Step 3: run them; each ran once, and the returned handle sees the same result.
    loop.run_until_complete(created);
    loop.run_until_complete(ensured);
    std::cout << "results: " << created.result() << " " << ensured.result()
              << "; through the handle ensure_future returned: " << again.result() << "\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "003_ensure_future: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "003_ensure_future: unknown exception\n";
    }
    return 1;
}
