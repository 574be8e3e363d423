// 001_generator: generators built on greenlet switches, one delegating to another.
//
// Ports seeds/001 (the asyncio tutorial), section "2. 实现 - yield". The tutorial gives this
// way of switching between code blocks in words only: "a generator calls another generator,
// and the other generator's yield comes back to the first". Its usual form is:
//
//     def func1():            def func2():
//         yield 1                 yield 3
//         yield from func2()      yield 4
//         yield 2
//
//     for item in func1(): print(item)          # 1 3 4 2
//
// greenfiber::generator runs its body in its own greenlet: each yield is a switch to the
// consumer, each next() a switch back. `yield from` is a loop over the inner generator
// inside the outer body; the inner body's consumer is then the outer body, so generators
// nest. Dropping a generator before its end kills its body with greenlet_exit, which
// unwinds its stack (the last step shows it).

#include <exception>
#include <iostream>

#include <greenfiber/generator.hpp>

namespace {

using greenfiber::generator;

generator<int> func2() {
    return generator<int>([](generator<int>::yielder& yield) {
        yield(3);
        yield(4);
    });
}

generator<int> func1() {
    return generator<int>([](generator<int>::yielder& yield) {
        yield(1);
        for (int item : func2()) yield(item);  // yield from func2()
        yield(2);
    });
}

// Lives on a generator body's stack; says when that stack unwinds.
struct unwind_witness {
    unwind_witness() = default;
    unwind_witness(const unwind_witness&) = delete;
    unwind_witness& operator=(const unwind_witness&) = delete;
    ~unwind_witness() { std::cout << "counter body unwound by greenlet_exit\n"; }
};

int demo() {
    // Step 1: iterate func1; items from func2 arrive in the middle, as with `yield from`.
    std::cout << "for item in func1():\n";
    for (int item : func1()) std::cout << item << "\n";

    // Step 2: nothing runs until the first item is asked for, and each next() runs the body
    // only up to its next yield.
    generator<int> counter([](generator<int>::yielder& yield) {
        unwind_witness witness;
        std::cout << "counter body started\n";
        for (int i = 0;; ++i) yield(i);
    });
    std::cout << "counter created: its body has not run\n";
    const int first = *counter.next();
    std::cout << "next() gave " << first << "\n";
    const int second = *counter.next();
    std::cout << "next() gave " << second << "\n";

    // Step 3: the counter never ends; dropping it kills its body where it waits in yield.
    counter = generator<int>([](generator<int>::yielder&) {});
    std::cout << "main: done\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "001_generator: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "001_generator: unknown exception\n";
    }
    return 1;
}
