// dump() and the dump on a signal (introspect.hpp): every fiber of the hub with its stack.

#include "greenfiber/introspect.hpp"

#include <chrono>
#include <cstdio>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "greenfiber/detail/greenlet_impl.hpp"
#include "greenfiber/greenlet.hpp"
#include "greenfiber/hub.hpp"
#include "greenfiber/signal.hpp"
#include "greenfiber/stacktrace.hpp"
#include "greenfiber/task.hpp"
#include "side_stack.hpp"

namespace greenfiber {

namespace {

// What a greenlet is doing, in words: parked (and on what), woken (queued to run again),
// running, suspended by a plain switch, not started, dead. `wait` is the hub's wait record
// when known (a task's), which tells a parked fiber from one already woken.
std::string state_words(const greenlet& g, const detail::waiter* wait) {
    if (g.dead()) return "dead";
    if (!g.started()) return "not started";
    if (g.is_current()) return "running (it called dump)";
    const char* parked_for = detail::access::impl(g)->parked_for;
    if (parked_for == nullptr) return "suspended (it switched to another greenlet)";
    if (wait != nullptr && wait->woken)
        return std::string("woken, queued to run (it waited for ") + parked_for + ")";
    return std::string("parked, waiting for ") + parked_for;
}

// The header line of one task: name, state, what it waits for and for how long, where it
// was spawned. A parked task's reason comes from its wait's describer (task_base), so the
// dump reads as any_task::waiting_for() does.
std::string task_line(const detail::task_base& t) {
    std::string line = "task '" + t.name() + "' ";
    const detail::waiter* w = t.current_wait();
    if (t.status() == task_status::pending) {
        line += "pending, queued for its first run";
    } else if (w != nullptr && !w->woken && !t.fiber().is_current()) {
        char waited[32];
        std::snprintf(waited, sizeof waited, "%.1f s",
                      std::chrono::duration<double>(t.waited()).count());
        line += "parked for " + std::string(waited) + ", waiting for " + t.waiting_for();
    } else {
        line += state_words(t.fiber(), w);
    }
    line += "; spawned at " + t.site();
    return line;
}

// One block: the header line, then the stack of `g` (nothing for a fiber with no frames).
// The running greenlet's stack is `caller`, captured on entry to dump(), so that it starts
// at dump()'s caller rather than inside the dump.
void write_block(std::ostream& os, const std::string& header, const greenlet& g,
                 const raw_stack& caller) {
    os << header << '\n';
    const raw_stack s = g.is_current() ? caller : capture_stack(g);
    if (s.size == 0) {
        os << "    (no stack)\n";
    } else {
        print_stack(os, s);
    }
    os << '\n';
}

std::string greenlet_line(const greenlet& g, const char* role) {
    std::string line = g.describe();
    if (role != nullptr) line += std::string(" (") + role + ")";
    return line + " " + state_words(g, nullptr);
}

}  // namespace

namespace {

// dump()'s text, after the caller's stack was captured (or not).
void write_dump(std::ostream& os, const raw_stack& caller) {
    hub* h = detail::hub_if_any();
    std::vector<const detail::greenlet_impl*> shown;
    auto seen = [&](const greenlet& g) {
        const detail::greenlet_impl* p = detail::access::impl(g);
        for (const detail::greenlet_impl* q : shown)
            if (q == p) return true;
        shown.push_back(p);
        return false;
    };
    std::vector<detail::task_base*> tasks;
    if (h != nullptr) tasks = detail::task_base::all(*h);
    os << "greenfiber dump of thread " << std::this_thread::get_id() << ": " << tasks.size()
       << " unfinished task" << (tasks.size() == 1 ? "" : "s") << (h != nullptr ? "" : ", no hub")
       << "\n\n";
    for (detail::task_base* t : tasks) {
        t->retain();  // nothing below switches to user code, but stay safe against a sink
        struct drop {
            detail::task_base* t;
            ~drop() { t->release(); }
        } held{t};
        (void)seen(t->fiber());
        write_block(os, task_line(*t), t->fiber(), caller);
    }
    // The greenlets that are not tasks: the hub, the caller and its parents, main.
    if (h != nullptr && !seen(h->loop_greenlet()))
        write_block(os, greenlet_line(h->loop_greenlet(), "the hub"), h->loop_greenlet(), caller);
    for (greenlet g = greenlet::current(); g; g = g.parent()) {
        if (seen(g)) continue;
        const bool is_main = !g.parent();
        const char* role = is_main ? nullptr : "the caller of dump, or its parent";
        write_block(os, greenlet_line(g, role), g, caller);
    }
}

}  // namespace

void dump(std::ostream& os) {
    raw_stack caller;
    // A small stack (stack.hpp, "Small stacks") has no room for the unwinder nor for the
    // formatting: its caller's block shows no frames, and the text is written from a stack
    // of the thread's own.
    const bool small = detail::on_small_stack(detail::this_thread().current);
    if (!small) capture_stack(caller, 1);  // leaves out dump() itself
    detail::on_side_stack_throwing([&] { write_dump(os, caller); });
}

void enable_dump_on_signal(int signo, dump_sink sink) {
    add_signal_handler(signo, [sink = std::move(sink)] {
        std::ostringstream os;
        dump(os);
        const std::string text = std::move(os).str();
        if (sink) {
            sink(text);
        } else {
            std::fwrite(text.data(), 1, text.size(), stderr);
            std::fflush(stderr);
        }
    });
}

bool disable_dump_on_signal(int signo) noexcept {
    return remove_signal_handler(signo);
}

}  // namespace greenfiber
