// 001_greenlet_switch: two greenlets handing control back and forth with switch_to().
//
// Ports seeds/001 (the asyncio tutorial), section "2. 实现 - greenlet": func1 prints 1 and
// switches to func2, which prints 3 and switches back; func1 resumes where it stopped,
// prints 2 and switches to func2 again, which resumes and prints 4. The output is 1 3 2 4.
//
// It also shows what the Python example leaves implicit: when func2 returns, control goes
// to its parent (main), so gr1 is left suspended in its second switch. Dropping the last
// handle to a suspended greenlet kills it: greenlet_exit is thrown at its suspension
// point and its stack unwinds, running every destructor on it.

#include <exception>
#include <iostream>

#include <greenfiber/greenlet.hpp>

namespace {

// Lives on gr1's stack; its destructor runs only when that stack unwinds.
struct unwind_witness {
    unwind_witness() = default;
    unwind_witness(const unwind_witness&) = delete;
    unwind_witness& operator=(const unwind_witness&) = delete;
    ~unwind_witness() { std::cout << "gr1 unwound by greenlet_exit\n"; }
};

int run() {
    using greenfiber::greenlet;

    // Both handles exist before either function runs, so each function can name the
    // other greenlet (Python's module globals gr1 and gr2). Both parents are main.
    greenlet gr1;
    greenlet gr2;

    gr1 = greenlet([&] {
        unwind_witness witness;
        std::cout << "1\n";     // step 2: print 1
        (void)gr2.switch_to();  // step 3: start func2
        std::cout << "2\n";     // step 6: print 2
        (void)gr2.switch_to();  // step 7: resume func2 where it stopped
        // Never reached: func2 finishes and control goes to main, not back here.
        std::cout << "func1 finished\n";
    });
    gr2 = greenlet([&] {
        std::cout << "3\n";     // step 4: print 3
        (void)gr1.switch_to();  // step 5: resume func1 where it stopped
        std::cout << "4\n";     // step 8: print 4, then return to the parent (main)
    });

    (void)gr1.switch_to();  // step 1: start func1

    // Back in main because func2 returned: gr2 is dead, gr1 still waits in its second
    // switch_to().
    std::cout << "main: gr2 " << (gr2.dead() ? "dead" : "alive") << ", gr1 "
              << (gr1.active() ? "suspended" : "not suspended") << "\n";

    // Dropping gr1's handle kills it: greenlet_exit unwinds its stack, so the witness's
    // destructor prints before the next line.
    gr1 = greenlet();
    std::cout << "main: done\n";
    return 0;
}

}  // namespace

int main() {
    try {
        return run();
    } catch (const std::exception& e) {
        std::cerr << "001_greenlet_switch: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "001_greenlet_switch: unknown exception\n";
    }
    return 1;
}
