// A small greenfiber program for the valgrind suite (expect_valgrind.py runs it under
// memcheck). Each mode exercises what moves a greenlet between stacks:
//
//   clean   greenlets switching values, a generator-style ping-pong, a greenlet killed by
//           throw_in and one killed by dropping its last handle, stacks given back and
//           handed out again (the pool's counters prove the reuse), and on the hub: tasks
//           that sleep, a cancelled sleeper and a TCP round trip over loopback; greenlets
//           and a task on small stacks, killed and cancelled; then the switches and the hub
//           again on a second thread.
//   stale   the same start, then a read through a pointer into the stack of a greenlet that
//           has died: memcheck must report it (a pooled stack is inaccessible to it).
//   gap     the same start, then a write through a stray pointer into the unused gap below
//           an unguarded stack: memcheck must report it (the gap is inaccessible to it).
//
// Prints "valgrind_program: <mode> ok" at the end, so the driver knows the program ran to
// completion, and exits 1 with a message on any wrong result.

#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <greenfiber/greenfiber.hpp>

namespace {

using namespace std::chrono_literals;
using greenfiber::greenlet;

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "valgrind_program: %s\n", what.c_str());
    std::exit(1);
}

void check(bool ok, const char* what) {
    if (!ok) fail(std::string("check failed: ") + what);
}

greenfiber::value to_parent(greenfiber::value v = {}) {
    return greenlet::current().parent().switch_to(std::move(v));
}

// Two greenlets hand a counter back and forth; each keeps a local array live across its
// switches, so that a switch that memcheck misreads as a frame pop shows up as reads of
// inaccessible or undefined memory.
void ping_pong() {
    constexpr int rounds = 200;
    greenlet ping;
    greenlet pong;
    int seen = 0;
    ping = greenlet([&](greenfiber::value v) {
        int local[64];
        for (int i = 0; i < 64; ++i) local[i] = i;
        int n = v.get<int>();
        while (n < rounds) {
            n = pong.switch_to(n + 1).get<int>();
            check(local[n % 64] == n % 64, "ping's frame survives the switches");
        }
        seen = n;
        return greenfiber::value{};
    });
    pong = greenlet([&](greenfiber::value v) {
        int local[64];
        for (int i = 0; i < 64; ++i) local[i] = 2 * i;
        int n = v.get<int>();
        for (;;) {
            n = ping.switch_to(n + 1).get<int>();
            check(local[n % 64] == 2 * (n % 64), "pong's frame survives the switches");
        }
        return greenfiber::value{};
    });
    (void)ping.switch_to(0);
    check(seen >= rounds, "ping ran to the end");
    check(!pong.dead(), "pong is still suspended");
}  // pong is dropped while suspended: killed with greenlet_exit, its stack unwinds

// A generator-style greenlet yields values to its parent until it returns.
void generator() {
    greenlet gen([](greenfiber::value) {
        std::vector<int> squares;  // heap memory owned by a frame on the greenlet's stack
        for (int i = 0; i < 10; ++i) {
            squares.push_back(i * i);
            (void)to_parent(squares.back());
        }
        return greenfiber::value{};
    });
    int sum = 0;
    for (int i = 0; i < 10; ++i) sum += gen.switch_to().get<int>();
    (void)gen.switch_to();  // returns: the stack goes back to the pool
    check(gen.dead() && sum == 285, "the generator yields 0..81 and finishes");
}

// throw_in kills a suspended greenlet; its destructors run on its own stack.
void killed() {
    bool unwound = false;
    greenlet victim([&](greenfiber::value) {
        struct flag {
            bool& f;
            ~flag() { f = true; }
        } guard{unwound};
        (void)to_parent();
        fail("the killed greenlet was resumed normally");
    });
    (void)victim.switch_to();
    (void)victim.throw_in();  // greenlet_exit: the switch returns its (empty) value
    check(victim.dead() && unwound, "throw_in unwinds the victim");
}

// Stacks given back are handed out again: after the first wave, a second wave of the same
// size maps nothing new.
void pool_reuse() {
    const auto run_wave = [] {
        std::vector<greenlet> wave;
        for (int i = 0; i < 40; ++i) {
            wave.emplace_back([](greenfiber::value v) {
                char buf[512];
                std::memset(buf, v.get<int>(), sizeof buf);
                (void)to_parent();
                return greenfiber::value{static_cast<int>(buf[100])};
            });
            (void)wave.back().switch_to(i);
        }
        int sum = 0;
        for (auto& g : wave) sum += g.switch_to().get<int>();
        return sum;
    };
    const greenfiber::stack_stats before = greenfiber::stack_statistics();
    check(run_wave() == 780, "first wave");
    const greenfiber::stack_stats between = greenfiber::stack_statistics();
    check(run_wave() == 780, "second wave");
    const greenfiber::stack_stats after = greenfiber::stack_statistics();
    check(between.in_use == before.in_use && after.in_use == before.in_use,
          "every stack is given back");
    check(after.pooled == between.pooled, "the second wave reuses the first wave's stacks");
    check(after.high_water >= before.in_use + 40, "the high-water mark saw the wave");
}

// The hub: sleeping tasks, a cancelled sleeper and a TCP round trip over loopback.
void hub_work() {
    const int total = greenfiber::run([] {
        auto a = greenfiber::spawn([] {
            greenfiber::sleep(5ms);
            return 1;
        });
        auto b = greenfiber::spawn([] {
            greenfiber::sleep(1ms);
            return 2;
        });
        auto sleeper = greenfiber::spawn([] {
            greenfiber::sleep(1h);
            return 0;
        });
        greenfiber::tcp::acceptor listener(
            greenfiber::tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0));
        auto server = greenfiber::spawn([&listener] {
            greenfiber::tcp::socket s = listener.accept();
            char buf[64];
            const std::size_t n = s.read_some(boost::asio::buffer(buf));
            for (std::size_t i = 0; i < n; ++i) buf[i] = static_cast<char>(buf[i] - 'a' + 'A');
            s.write(boost::asio::buffer(buf, n));
            return static_cast<int>(n);
        });
        greenfiber::tcp::socket client;
        client.connect(listener.local_endpoint());
        client.write(boost::asio::buffer(std::string("hello")));
        char reply[5];
        boost::asio::read(client, boost::asio::buffer(reply));
        check(std::string(reply, 5) == "HELLO", "the loopback round trip");
        sleeper.cancel();
        try {
            (void)sleeper.get();
            fail("the cancelled sleeper returned");
        } catch (const greenfiber::cancelled_error&) {
        }
        return a.get() + b.get() + server.get();
    });
    check(total == 8, "the tasks' results");
}

// Reads a local of a greenlet that has died, through a pointer that outlived it.
int stale_read() {
    volatile int* escaped = nullptr;
    greenlet g([&](greenfiber::value) {
        volatile int local = 42;
        escaped = &local;
        return greenfiber::value{static_cast<int>(local)};
    });
    check(g.switch_to().get<int>() == 42, "the greenlet ran");
    return *escaped;  // its stack is back in the pool
}

// Writes through a stray pointer into the gap below an unguarded stack (past the guard
// budget a new slab's stacks lie over 64 KiB gaps with no guard page).
void gap_write() {
    greenfiber::set_guard_budget(greenfiber::stack_statistics().guarded);  // spent
    greenlet::options o;
    o.name = "unguarded";
    // A size nothing pooled has, so that a new slab is mapped past the budget.
    o.stack_size =
        greenfiber::default_stack_size() + 5 * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    greenlet g(
        [](greenfiber::value) {
            const auto* self = greenfiber::detail::access::impl(greenlet::current());
            check(!self->stack_guarded, "the stack is unguarded");
            volatile char* below = static_cast<char*>(self->stack_lo) - 1000;
            *below = 1;
            return greenfiber::value{};
        },
        std::move(o));
    (void)g.switch_to();
}

// Small stacks (needs LD_BIND_NOW=1, which expect_valgrind.py sets): a greenlet killed on a
// 1 536-byte stack, through a destructor (the unwinder runs on the thread's side stack and
// lands back on the small one), a throw caught there, and a task on a small stack
// cancelled in a sleep.
void small_stacks() {
    greenlet::options o;
    o.name = "small";
    o.small_stack = 1536;
    bool unwound = false;
    int caught = 0;
    greenlet victim(
        [&](greenfiber::value) {
            struct flag {
                bool& f;
                ~flag() { f = true; }
            } guard{unwound};
            try {
                throw std::runtime_error("on a small stack");
            } catch (const std::runtime_error&) {
                ++caught;
            }
            (void)to_parent();
            fail("the killed small-stack greenlet was resumed normally");
        },
        std::move(o));
    (void)victim.switch_to();
    (void)victim.throw_in();
    check(victim.dead() && unwound && caught == 1, "a small-stack greenlet unwinds when killed");
    greenfiber::run([] {
        auto t = greenfiber::spawn(greenfiber::spawn_options{.small_stack = 1536},
                                   [] { greenfiber::sleep(1h); });
        greenfiber::sleep(1ms);
        t.cancel();
        bool cancelled = false;
        try {
            t.get();
        } catch (const greenfiber::cancelled_error&) {
            cancelled = true;
        }
        check(cancelled, "a small-stack task is cancelled in its sleep");
    });
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "clean";
    try {
        const std::size_t live_before = greenfiber::live_greenlets();
        ping_pong();
        generator();
        killed();
        pool_reuse();
        // The hub below is a greenlet that lives as long as its thread: count before it.
        check(greenfiber::live_greenlets() == live_before, "no greenlet is left");
        if (mode == "clean") {
            hub_work();
            small_stacks();
            // Again on a second thread: its hub and greenlets switch from a thread stack
            // that the pool did not map.
            std::thread other([] {
                try {
                    ping_pong();
                    hub_work();
                } catch (const std::exception& e) {
                    fail(std::string("escaped on the second thread: ") + e.what());
                }
            });
            other.join();
        } else if (mode == "gap") {
            gap_write();
        } else if (mode == "stale") {
            std::printf("valgrind_program: stale read %d\n", stale_read());
        } else {
            fail("unknown mode '" + mode + "' (clean, stale or gap)");
        }
    } catch (const std::exception& e) {
        fail(std::string("escaped: ") + e.what());
    }
    std::printf("valgrind_program: %s ok\n", mode.c_str());
    return 0;
}
