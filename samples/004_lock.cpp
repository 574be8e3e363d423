// 004_lock: a read-modify-write that a suspension point splits in two loses updates; a fiber
// mutex around it makes it whole again.
//
// Ports seeds/004 (the "Python 异步编程 协程(async/await)" tutorial), section "2、Python
// 协程(async/await)", its note: "注意：对协程的执行顺序有要求，但执行代码非原子操作，且被
// await 语句隔开。可以使用锁解决。" (when the order matters but the code is not atomic and
// an await splits it, use a lock). The tutorial gives no code; this is the classic example:
// ten tasks each read a shared counter, `await asyncio.sleep(0)`, and write back the value
// they read plus one.
// - Without a lock every task reads 0 before any of them writes: the counter ends at 1,
//   not 10, and nine updates are lost.
// - With `async with lock:` around the three steps (asyncio.Lock) one task at a time runs
//   them; the others wait at the lock, and the counter ends at 10.
//
// greenfiber::yield_now() is asyncio.sleep(0): the task lets every other ready task run
// once. greenfiber::mutex (also spelled greenfiber::lock) is asyncio's Lock: a task that
// finds it held waits, suspending only itself; std::lock_guard is `async with`. A
// std::mutex would not do: its owner is suspended on the same thread, so the next task to
// lock it would block the thread, and the owner with it, for ever. Nothing here depends on
// time: the tasks run in the order they were spawned, and the output is the same each run.

#include <exception>
#include <functional>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include <greenfiber/combinators.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/sync.hpp>
#include <greenfiber/task.hpp>

namespace {

constexpr int task_count = 10;

// The shared state, and what each task saw (in the order the reads and writes happened).
struct shared {
    int counter = 0;
    std::vector<int> reads;
    std::vector<int> writes;
    int waited_for_lock = 0;  // tasks that found the lock held
};

// One read-modify-write, split by a suspension point.
void increment(shared& s) {
    const int value = s.counter;  // read
    s.reads.push_back(value);
    greenfiber::yield_now();  // await asyncio.sleep(0): every other ready task runs here
    s.counter = value + 1;    // write what was read, plus one
    s.writes.push_back(s.counter);
}

void without_lock(shared& s) {
    increment(s);
}

void with_lock(shared& s, greenfiber::mutex& lock) {
    if (lock.locked()) ++s.waited_for_lock;
    std::lock_guard<greenfiber::mutex> hold(lock);  // async with lock:
    increment(s);
}

void print_list(const char* what, const std::vector<int>& values) {
    std::cout << "  " << what << ":";
    for (int v : values) std::cout << " " << v;
    std::cout << "\n";
}

void report(const shared& s) {
    print_list("reads ", s.reads);
    print_list("writes", s.writes);
    std::cout << "  counter = " << s.counter << " (expected " << task_count << ")";
    if (s.counter != task_count) std::cout << ": " << task_count - s.counter << " updates lost";
    std::cout << "\n";
}

void main_task() {
    // Step 1: ten tasks, no lock. Each reads 0, yields, and writes 0 + 1.
    std::cout << "== " << task_count << " tasks: read, yield_now(), write read + 1; no lock\n";
    shared unlocked;
    std::vector<greenfiber::task<void>> tasks;
    for (int i = 0; i < task_count; ++i) {
        tasks.push_back(greenfiber::spawn(without_lock, std::ref(unlocked)));
    }
    (void)greenfiber::gather(tasks);
    report(unlocked);

    // Step 2: the same three steps under a greenfiber::mutex. The first task holds it across
    // its yield_now(); the other nine find it held and wait in line.
    std::cout << "== the same under a greenfiber::mutex (async with lock:)\n";
    shared locked;
    greenfiber::mutex lock;
    tasks.clear();
    for (int i = 0; i < task_count; ++i) {
        tasks.push_back(greenfiber::spawn(with_lock, std::ref(locked), std::ref(lock)));
    }
    (void)greenfiber::gather(tasks);
    report(locked);
    std::cout << "  tasks that waited for the lock: " << locked.waited_for_lock << " of "
              << task_count << "\n";
}

int demo() {
    greenfiber::run(main_task);  // asyncio.run(main())
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "004_lock: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "004_lock: unknown exception\n";
    }
    return 1;
}
