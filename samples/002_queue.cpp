// 002_queue: a producer fills a bounded queue of URLs and several consumer tasks fetch them;
// the queue hands each URL to one consumer, and the fetches overlap.
//
// Ports seeds/002 (the coroutine tutorial), section "异步使用队列": URLs such as
// http://httpbin.org/get?a=1 go through a queue (the code is in a file the tutorial links
// to, _queue.py, not in the text). The tutorial reports that it could not get the requests
// to run concurrently through the queue, only by passing the URLs as arguments (_thread.py).
// The usual asyncio pattern does both: one producer task puts the URLs into an
// asyncio.Queue(maxsize), several consumer tasks each loop on `url = await queue.get()`,
// fetch it and call queue.task_done(); the main task waits for the producer, awaits
// queue.join() and then stops the consumers (here with queue.shutdown(), asyncio 3.13,
// instead of one sentinel each).
//
// This sample does without the network: fetch() waits 100 ms with greenfiber::sleep (where
// a greenfiber socket read would wait, suspending only its task) and answers 200. (The HTTP
// form is 002_queue_http.) Six URLs, three consumers, a queue of at most
// two: the program measures itself and prints a verdict, about 2 fetch times instead of 6.
//
// The output is the same on every run because the queue is FIFO for items and for waiting
// fibers alike: the n-th get() receives the n-th URL, and every fetch takes the same time,
// so consumer 1 fetches a=1 and a=4, consumer 2 a=2 and a=5, consumer 3 a=3 and a=6. Only
// the consumers print as they go; when the producer's put() returns depends on the timing,
// so it counts its waits and the main task prints them at the end.

#include <chrono>
#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include <greenfiber/combinators.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/queue.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

constexpr auto delay = 100ms;  // one fetch
constexpr int url_count = 6;
constexpr int consumer_count = 3;
constexpr std::size_t maxsize = 2;

// The stand-in for a request: suspends only the calling task for one delay.
int fetch(const std::string& url) {
    (void)url;
    greenfiber::sleep(delay);
    return 200;
}

// Puts every URL into `queue`; put() waits while the queue is full. Returns how many of
// the puts had to wait for a free slot.
int producer(greenfiber::queue<std::string>& queue) {
    int waited = 0;
    for (int i = 1; i <= url_count; ++i) {
        if (queue.full()) ++waited;
        queue.put("http://httpbin.org/get?a=" + std::to_string(i));
    }
    return waited;
}

// Takes URLs from `queue` until it is shut down; marks each one done once fetched.
void consumer(int number, greenfiber::queue<std::string>& queue) {
    const std::string me = "consumer " + std::to_string(number);
    for (;;) {
        std::string url;
        try {
            url = queue.get();
        } catch (const greenfiber::queue_shutdown&) {
            std::cout << me << ": the queue is shut down; done\n";
            return;
        }
        std::cout << me << ": got " << url << "\n";
        const int status = fetch(url);
        std::cout << me << ": fetched " << url << ": " << status << "\n";
        queue.task_done();
    }
}

void main_task() {
    const auto start = clock_type::now();
    greenfiber::queue<std::string> queue(maxsize);

    // Step 1: the consumers start first and wait in get(); then the producer fills the queue.
    std::vector<greenfiber::task<void>> consumers;
    for (int i = 1; i <= consumer_count; ++i) {
        consumers.push_back(greenfiber::spawn(consumer, i, std::ref(queue)));
    }
    auto produce = greenfiber::spawn(producer, std::ref(queue));

    // Step 2: wait for the producer, then await queue.join(), which returns once every URL
    // put was marked done. (join() right away would return at once: nothing is put yet.)
    const int waited = produce.get();
    queue.join();
    const double delays = std::chrono::duration<double>(clock_type::now() - start) / delay;
    std::cout << "join() returned: all " << url_count << " urls fetched\n";

    // Step 3: stop the consumers. shutdown() wakes the ones waiting in get() with
    // queue_shutdown (FIFO: the one that waited longest first).
    queue.shutdown();
    (void)greenfiber::wait(consumers);

    std::cout << "producer: put " << url_count << " urls into a queue of maxsize " << maxsize
              << "; put() waited for a free slot " << waited << " times\n";
    // One consumer: 6 fetches one after another. Three: three at a time, about 2. The bound
    // lies half a fetch time below 6, as wide as a loaded machine needs.
    std::cout << url_count << " fetches by " << consumer_count << " consumers: "
              << (delays < url_count - 0.5 ? "concurrent (about 2 fetch times, not 6)"
                                           : "NOT concurrent")
              << "\n";
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
        std::cerr << "002_queue: " << e.what() << "\n";
    } catch (...) {
        std::cerr << "002_queue: unknown exception\n";
    }
    return 1;
}
