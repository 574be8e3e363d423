// An installed-greenfiber consumer: two tasks hand a counter through a queue on the hub,
// and a greenlet pair checks the fibers layer. Built by check.sh with CMake and with
// pkg-config against an installed tree, and run without LD_LIBRARY_PATH.

#include <chrono>
#include <exception>
#include <iostream>
#include <string>

#include <greenfiber/config.hpp>
#include <greenfiber/greenlet.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/queue.hpp>
#include <greenfiber/task.hpp>

int main() {
    try {
        static_assert(GREENFIBER_VERSION_MAJOR >= 0, "config.hpp is installed");
        const int total = greenfiber::run([] {
            greenfiber::queue<int> q(1);
            auto producer = greenfiber::spawn([&q] {
                for (int i = 1; i <= 4; ++i) {
                    greenfiber::sleep(std::chrono::milliseconds(1));
                    q.put(i);
                }
                q.put(0);
            });
            int sum = 0;
            for (int v = q.get(); v != 0; v = q.get()) sum += v;
            producer.get();
            return sum;
        });
        greenfiber::greenlet echo([](int n) { return n * 2; });
        const int doubled = echo.switch_to(21).take<int>();
        std::cout << "app " << GREENFIBER_VERSION_STRING << ": " << total << " " << doubled << "\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "app: " << e.what() << "\n";
    }
    return 1;
}
