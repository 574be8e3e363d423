// A consumer of the fibers layer alone (greenfiber::fibers, greenfiber-fibers.pc).

#include <exception>
#include <iostream>

#include <greenfiber/greenlet.hpp>

int main() {
    try {
        int steps = 0;
        greenfiber::greenlet child([&] {
            ++steps;
            (void)greenfiber::greenlet::current().parent().switch_to();
            ++steps;
        });
        (void)child.switch_to();
        (void)child.switch_to();
        std::cout << "fibers_app: " << steps << (child.dead() ? " dead" : " alive") << "\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "fibers_app: " << e.what() << "\n";
    }
    return 1;
}
