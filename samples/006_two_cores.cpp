// 006_two_cores: one program on both cores: a hub_group runs a hub on each of two threads,
// spawn_on() runs a task on one of them and brings its result back to the calling fiber,
// and a multi_server serves one port from both hubs.
//
// Beyond the tutorials (they run on one thread, as asyncio and gevent do). What a program
// writes to use every core:
//   hub_group group(2);                                  // two threads, a hub each
//   auto r = group.spawn_on(1, fn);  r.get();            // a task there, its result here
//   multi_server srv(group, endpoint, handler);          // one port, served by every hub
// - step 1: a task on each hub reports which hub ran it and whether that is another thread
//   than main's; get() parks only the main task while the hubs work;
// - step 2: 64 clients on the main thread each echo a line through the server: the kernel
//   spreads the connections over the two hubs' SO_REUSEPORT listeners, so both serve some
//   (which connection lands where changes from run to run; the sample prints the verdict);
// - step 3: the server stops gracefully, then the group joins its threads.
// The listener binds 127.0.0.1 port 0 (the kernel picks a free port; it is never printed).

#include <array>
#include <chrono>
#include <cstddef>
#include <exception>
#include <iostream>
#include <string>
#include <thread>

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/address_v4.hpp>

#include <greenfiber/hub_group.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/server.hpp>
#include <greenfiber/socket.hpp>
#include <greenfiber/task.hpp>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
namespace tcp = greenfiber::tcp;

constexpr std::size_t clients = 64;

// The handler, on whichever hub accepted: answers each read with "<hub index>:" and the
// bytes, until the client closes.
void echo_with_hub(greenfiber::hub_group& group, tcp::socket s) {
    std::array<char, 256> buf{};
    for (;;) {
        boost::system::error_code ec;
        const std::size_t n = s.read_some(asio::buffer(buf), ec);
        if (ec) return;
        const std::string out =
            std::to_string(group.current_index()) + ":" + std::string(buf.data(), n);
        s.write(asio::buffer(out), ec);
        if (ec) return;
    }
}

// One client: sends `line` and returns the index of the hub that echoed it, or -1 if the
// echo was wrong.
int echo_once(const tcp::endpoint& ep, const std::string& line) {
    tcp::socket c;
    c.connect(ep, 5s);
    c.write(asio::buffer(line));
    std::string got(line.size() + 2, '\0');  // "N:" and the line
    boost::system::error_code ec;
    std::size_t have = 0;
    while (have < got.size() && !ec)
        have += c.read_some(asio::buffer(got.data() + have, got.size() - have), ec);
    if (have != got.size() || got.substr(2) != line || got[1] != ':') return -1;
    return got[0] - '0';
}

void main_task(greenfiber::hub_group& group) {
    const auto main_thread = std::this_thread::get_id();

    std::cout << "step 1: a task on each hub, its result back on the main task\n";
    for (std::size_t i = 0; i < group.size(); ++i) {
        auto r = group.spawn_on(i, [&group, main_thread] {
            return std::to_string(group.current_index()) +
                   (std::this_thread::get_id() != main_thread ? ", on a thread of its own"
                                                              : ", on main's thread");
        });
        std::cout << "  spawn_on(" << i << ") ran on hub " << r.get() << "\n";
    }

    std::cout << "step 2: one port served by both hubs\n";
    const tcp::endpoint any_port(asio::ip::address_v4::loopback(), 0);
    greenfiber::multi_server srv(group, any_port,
                                 [&group](tcp::socket s) { echo_with_hub(group, std::move(s)); });
    std::array<std::size_t, 2> per_hub{};
    std::size_t correct = 0;
    for (std::size_t k = 0; k < clients; ++k) {
        const int hub = echo_once(srv.local_endpoint(), "line " + std::to_string(k));
        if (hub == 0 || hub == 1) {
            ++correct;
            ++per_hub[static_cast<std::size_t>(hub)];
        }
    }
    std::cout << "  " << correct << " of " << clients << " clients got their line back\n";
    std::cout << "  both hubs served some: " << (per_hub[0] > 0 && per_hub[1] > 0 ? "yes" : "no")
              << "\n";
    std::cout << "  the hubs' own counts add up: "
              << (srv.served(0) + srv.served(1) == clients ? "yes" : "no") << "\n";

    std::cout << "step 3: stop the server, then the group\n";
    std::cout << "  handlers cancelled by the stop: " << srv.stop(5s) << "\n";
}

int demo() {
    greenfiber::hub_group group(2);
    greenfiber::run([&group] { main_task(group); });
    group.stop();
    std::cout << "  group stopped: " << (group.stopped() ? "yes" : "no") << "\n";
    return 0;
}

}  // namespace

int main() {
    std::cout << "006_two_cores: two hubs on two threads, tasks sent to each, one port served "
                 "by both\n";
    try {
        return demo();
    } catch (const std::exception& e) {
        std::cerr << "006_two_cores: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "006_two_cores: unknown exception\n";
    }
    return 1;
}
