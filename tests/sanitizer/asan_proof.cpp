// Proof that AddressSanitizer understands greenlet stacks (the fiber annotations around
// the switch in greenfiber/detail/greenlet_impl.hpp). Built only in an ASan build.
//
//   asan_proof exceptions   throws and catches exceptions on greenlet stacks many times,
//                           switching back and forth; must exit 0 with nothing on stderr.
//                           Without the annotations ASan loses track of which stack is
//                           live and reports false stack errors on unwinding.
//   asan_proof overflow     reads past the end of an array on a greenlet stack; ASan must
//                           report a stack-buffer-overflow and fail the process.
//
// expect_asan.py runs both modes and checks the verdicts.

#include <cstring>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <greenfiber/greenlet.hpp>

namespace {

using greenfiber::greenlet;

constexpr int rounds = 2000;

// Recurses `depth` frames, each with a live local that needs a destructor, then throws.
// The unwinder walks (and ASan unpoisons) every one of those frames on the greenlet stack.
[[noreturn]] void throw_at_depth(int depth) {
    std::string frame_local(32, static_cast<char>('a' + depth % 26));
    if (depth == 0) throw std::runtime_error("bottom " + frame_local);
    throw_at_depth(depth - 1);
}

int exceptions_mode() {
    long caught = 0;
    long escaped = 0;
    long thrown_in = 0;
    greenlet main_greenlet = greenlet::current();

    // Worker: catches its own exceptions, then parks in main with a switch.
    greenlet worker([&] {
        for (int i = 0; i < rounds; ++i) {
            try {
                throw_at_depth(i % 16);
            } catch (const std::runtime_error&) {
                ++caught;
            }
            // Receives either an ordinary resume or an exception thrown in by main.
            try {
                (void)main_greenlet.switch_to(i);
            } catch (const std::logic_error&) {
                ++thrown_in;
            }
        }
    });

    // Main resumes the worker once per round, every other time by throwing into it.
    int got = worker.switch_to().take<int>();
    for (int i = 1; i < rounds; ++i) {
        if (got != i - 1) throw std::logic_error("worker out of step");
        greenfiber::value v =
            i % 2 == 1 ? worker.throw_in(std::logic_error("thrown in")) : worker.switch_to();
        got = v.take<int>();
    }
    if (got != rounds - 1) throw std::logic_error("worker out of step at the end");
    (void)worker.switch_to();  // lets the worker finish its last round and return
    if (!worker.dead()) throw std::logic_error("worker did not finish");

    // Exceptions escaping a greenlet's function reach its parent after the switch.
    for (int i = 0; i < rounds / 4; ++i) {
        greenlet thrower([i] { throw_at_depth(i % 8); });
        try {
            (void)thrower.switch_to();
        } catch (const std::runtime_error&) {
            ++escaped;
        }
    }

    // Suspended greenlets killed by dropping their handle: greenlet_exit unwinds them.
    long unwound = 0;
    for (int i = 0; i < rounds / 4; ++i) {
        struct counter {
            long& n;
            ~counter() { ++n; }
        };
        greenlet victim([&] {
            counter c{unwound};
            std::vector<char> buffer(256, 'x');
            (void)main_greenlet.switch_to();
        });
        (void)victim.switch_to();
    }

    std::cout << "exceptions: caught " << caught << ", thrown in " << thrown_in << ", escaped "
              << escaped << ", unwound " << unwound << "\n";
    const bool ok = caught == rounds && thrown_in == rounds / 2 && escaped == rounds / 4 &&
                    unwound == rounds / 4;
    return ok ? 0 : 1;
}

// Reads p[i] with UBSan's checks off, so that in the address,undefined build the bad read
// reaches ASan's redzone check instead of stopping at UBSan's bounds or object-size check.
// Out of line for the same reason: inlined, the caller's UBSan checks would apply.
__attribute__((no_sanitize("undefined"), noinline)) int read_element(const int* p, int i) {
    return p[i];
}

int overflow_mode() {
    volatile int sink = 0;
    greenlet reader([&] {
        int array[8];
        for (int i = 0; i < 8; ++i) array[i] = i;
        volatile int index = 8;  // one past the end; volatile so it cannot be folded
        sink = read_element(array, index);
    });
    (void)reader.switch_to();
    std::cout << "overflow: read " << sink << " without a report\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc == 2 && std::strcmp(argv[1], "exceptions") == 0) return exceptions_mode();
        if (argc == 2 && std::strcmp(argv[1], "overflow") == 0) return overflow_mode();
        std::cerr << "usage: asan_proof exceptions|overflow\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "asan_proof: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "asan_proof: unknown exception\n";
    }
    return 1;
}
