// Consumer of greenfiber as a Meson subproject: two greenlets pass a counter back and
// forth, and main prints the sequence they produced.

#include <exception>
#include <iostream>
#include <string>

#include <greenfiber/greenfiber.hpp>

int main() {
    try {
        using greenfiber::greenlet;
        std::string trace;
        greenlet ping;
        greenlet pong;

        ping = greenlet([&](int n) {
            while (n < 4) {
                trace += "ping" + std::to_string(n) + ' ';
                n = pong.switch_to(n + 1).take<int>();
            }
            return n;
        });
        pong = greenlet([&](int n) {
            for (;;) {
                trace += "pong" + std::to_string(n) + ' ';
                n = ping.switch_to(n + 1).take<int>();
            }
        });

        // ping finishes when the counter reaches 4 and returns it to its parent, main.
        const int last = ping.switch_to(0).take<int>();
        std::cout << "consumer: " << trace << "-> " << last << "\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "consumer: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "consumer: unknown exception\n";
    }
    return 1;
}
