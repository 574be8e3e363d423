// 003_task_states: a task is pending until the loop runs it, and finished afterwards.
//
// Ports seeds/003 (the "why asyncio" tutorial), section "task 任务 / task对象有两种状态":
// do(x) prints "wating: x"; `task = loop.create_task(do(1))`; print(task) shows it pending;
// loop.run_until_complete(task); print(task) shows it finished. Python prints the task with
// its address and source position; here a task prints as <task 'name' status>, and the
// running state in between is printed by the task itself.
//
// greenfiber's states are pending, running, done and cancelled; asyncio's repr calls done
// "finished".

#include <exception>
#include <iostream>
#include <string>

#include <greenfiber/loop.hpp>
#include <greenfiber/task.hpp>

namespace {

// A task as print(task) shows it, without the address: <task 'name' status>.
std::string describe(const greenfiber::any_task& t) {
    return "<task '" + t.name() + "' " + greenfiber::to_string(t.status()) + ">";
}

void do_(int x) {  // `do` is a C++ keyword
    std::cout << "wating: " << x << "\n";
    std::cout << "(inside: " << describe(greenfiber::current_task()) << ")\n";
}

int demo() {
    // Step 1: corontine = do(1); task = loop.create_task(corontine); print(task)
    greenfiber::event_loop& loop = greenfiber::event_loop::current();
    greenfiber::task<void> task = greenfiber::spawn(greenfiber::spawn_options{"do"}, do_, 1);
    std::cout << describe(task) << "\n";

    // Step 2: loop.run_until_complete(task); print(task)
    loop.run_until_complete(task);
    std::cout << describe(task) << "\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "003_task_states: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "003_task_states: unknown exception\n";
    }
    return 1;
}
