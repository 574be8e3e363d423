// The greenfiber half of the differential test against asyncio (asyncio_diff.py, which
// documents the program language and the trace). Reads programs from standard input, each
// ended by a line "E", runs each on greenfiber and prints its trace followed by "E".

#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <greenfiber/combinators.hpp>
#include <greenfiber/loop.hpp>
#include <greenfiber/sync.hpp>
#include <greenfiber/task.hpp>

namespace {

using namespace greenfiber;
using namespace std::chrono_literals;

constexpr int clock_turns = 40;  // CLOCK_TURNS in asyncio_diff.py

struct task_spec {
    bool catch_cancel = false;
    bool raises = false;
    std::vector<std::string> ops;
};

struct program {
    std::vector<task_spec> tasks;
    int nevents = 0;
};

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    std::istringstream in(s);
    while (std::getline(in, cur, sep)) out.push_back(cur);
    return out;
}

program parse(const std::vector<std::string>& lines) {
    program p;
    std::istringstream head(lines.at(0));
    std::string tag;
    std::size_t n = 0;
    head >> tag >> n >> p.nevents;
    for (std::size_t i = 1; i < lines.size(); ++i) {
        std::istringstream in(lines[i]);
        task_spec t;
        std::string index, catch_flag, end, op;
        in >> tag >> index >> catch_flag >> end;
        t.catch_cancel = catch_flag == "1";
        t.raises = end == "x";
        while (in >> op) t.ops.push_back(op);
        p.tasks.push_back(std::move(t));
    }
    if (p.tasks.size() != n) throw std::runtime_error("asyncio_diff_interp: bad program header");
    return p;
}

// The error a task raises (asyncio_diff.py's TaskError).
class task_error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class interpreter {
  public:
    explicit interpreter(program p) : p_(std::move(p)), handles_(p_.tasks.size()) {}

    std::string run_program() {
        greenfiber::run([this] { main_body(); });
        return out_.str();
    }

  private:
    void log(const std::string& line) { out_ << line << "\n"; }

    static std::string status(task<int>& t) {
        if (t.cancelled()) return "cancelled";
        if (std::exception_ptr e = t.exception()) {
            try {
                std::rethrow_exception(e);
            } catch (const task_error& x) {
                return std::string("raised ") + x.what();
            }
        }
        return "returned " + std::to_string(t.result());
    }

    bool spawned(std::size_t j) const { return static_cast<bool>(handles_[j]); }

    void main_body() {
        events_.clear();
        for (int e = 0; e < p_.nevents; ++e) events_.push_back(std::make_unique<event>());
        auto clock = spawn([this] {
            for (int i = 0; i < clock_turns; ++i) yield_now();
            log("clock sets the events");
            for (auto& e : events_) e->set();
        });
        try {
            (void)body(0);
        } catch (const cancelled_error&) {
            // main waited for a cancelled task: it goes on to wait for the rest
        }
        for (std::size_t j = 1; j < p_.tasks.size(); ++j) {
            if (!spawned(j)) continue;
            std::vector<task<int>> one;
            one.push_back(handles_[j].share());
            (void)wait(one);
        }
        clock.get();
        for (std::size_t j = 1; j < p_.tasks.size(); ++j) {
            log("final t" + std::to_string(j) + " " +
                (spawned(j) ? status(handles_[j]) : std::string("not spawned")));
        }
    }

    // Runs fn() and describes its result as asyncio_diff.py's outcome() does.
    template <class Fn>
    std::string outcome(Fn fn) {
        try {
            return "-> " + fn();
        } catch (const task_error& e) {
            return std::string("-> error ") + e.what();
        }
    }

    int body(std::size_t i) {
        const task_spec& spec = p_.tasks[i];
        const std::string me = "t" + std::to_string(i);
        try {
            for (const std::string& op : spec.ops) run_op(me, op);
        } catch (const cancelled_error&) {
            if (!spec.catch_cancel) {
                log(me + " cancelled");
                throw;
            }
            any_task t = current_task();
            log(me + " caught the cancellation, cancelling " + std::to_string(t.cancelling()));
            while (t.cancelling() > 0) t.uncancel();
            const int v = 10 * static_cast<int>(i) + 1;
            log(me + " returns " + std::to_string(v));
            return v;
        }
        if (spec.raises) {
            log(me + " raises");
            throw task_error(me);
        }
        const int v = 10 * static_cast<int>(i);
        log(me + " returns " + std::to_string(v));
        return v;
    }

    void run_op(const std::string& me, const std::string& op) {
        const std::vector<std::string> parts = split(op, ':');
        const std::string& kind = parts[0];
        if (kind == "s") {
            const std::size_t j = std::stoul(parts[1]);
            log(me + " spawn t" + std::to_string(j));
            handles_[j] = spawn([this, j] { return body(j); });
        } else if (kind == "y") {
            log(me + " yield");
            yield_now();
            log(me + " resumed");
        } else if (kind == "c") {
            const std::string n = parts[1];
            log(me + " call_soon c" + n);
            event_loop::current().call_soon([this, n] { log("c" + n); });
        } else if (kind == "a") {
            const std::size_t j = std::stoul(parts[1]);
            const std::string n = parts[2];
            if (!spawned(j)) {
                log(me + " add c" + n + " to t" + std::to_string(j) + ": not spawned");
                return;
            }
            log(me + " add c" + n + " to t" + std::to_string(j));
            const auto id = handles_[j].add_done_callback([this, n, j](task<int>& t) {
                log("c" + n + " t" + std::to_string(j) + " " + status(t));
            });
            callbacks_[n] = {j, id};
        } else if (kind == "r") {
            const std::string n = parts[1];
            auto it = callbacks_.find(n);
            if (it == callbacks_.end()) {
                log(me + " remove c" + n + ": not added");
                return;
            }
            const std::size_t removed =
                handles_[it->second.first].remove_done_callback(it->second.second);
            log(me + " remove c" + n + " -> " + std::to_string(removed));
        } else if (kind == "k") {
            const std::size_t j = std::stoul(parts[1]);
            if (!spawned(j)) {
                log(me + " cancel t" + std::to_string(j) + ": not spawned");
                return;
            }
            const bool r = handles_[j].cancel();
            log(me + " cancel t" + std::to_string(j) + " -> " + (r ? "True" : "False"));
        } else if (kind == "e") {
            log(me + " set e" + parts[1]);
            events_.at(std::stoul(parts[1]))->set();
        } else if (kind == "w") {
            log(me + " wait e" + parts[1]);
            events_.at(std::stoul(parts[1]))->wait();
            log(me + " waited e" + parts[1]);
        } else if (kind == "t") {
            std::vector<std::size_t> ids;
            std::string arg;
            for (const std::string& x : split(parts[1], ',')) {
                ids.push_back(std::stoul(x));
                arg += (arg.empty() ? "t" : ",t") + x;
            }
            log(me + " group " + arg);
            try {
                with_task_group([&](task_group& g) {
                    for (std::size_t j : ids) {
                        log(me + " spawn t" + std::to_string(j));
                        handles_[j] = g.spawn([this, j] { return body(j); });
                    }
                });
            } catch (const exception_group& eg) {
                std::string errors;
                for (const auto& e : eg.errors()) {
                    try {
                        std::rethrow_exception(e);
                    } catch (const task_error& x) {
                        errors += (errors.empty() ? "" : ", ") + std::string(x.what());
                    }
                }
                log(me + " group " + arg + " -> errors " + errors);
                return;
            }
            log(me + " group " + arg + " -> ok");
        } else if (kind == "g" || kind == "F") {
            const std::size_t j = std::stoul(parts[1]);
            const std::string name = kind == "g" ? "get" : "wait_for";
            const std::string what = me + " " + name + " t" + std::to_string(j);
            if (!spawned(j)) {
                log(what + ": not spawned");
                return;
            }
            log(what);
            std::string r;
            if (kind == "g") {
                r = outcome([&] { return std::to_string(handles_[j].get()); });
            } else {
                r = outcome([&] { return std::to_string(wait_for(handles_[j], 1000s)); });
            }
            log(what + " " + r);
        } else if (kind == "W" || kind == "G") {
            std::vector<std::size_t> ids;
            for (const std::string& x : split(parts.back(), ',')) {
                if (spawned(std::stoul(x))) ids.push_back(std::stoul(x));
            }
            const std::string name = kind == "W" ? "wait" + parts[1] : "gather";
            std::string arg;
            std::vector<task<int>> ts;
            for (std::size_t j : ids) {
                arg += (arg.empty() ? "t" : ",t") + std::to_string(j);
                ts.push_back(handles_[j].share());
            }
            if (ids.empty()) {
                log(me + " " + name + ": none spawned");
                return;
            }
            log(me + " " + name + " " + arg);
            if (kind == "W") {
                auto r = wait(
                    ts, std::nullopt,
                    parts[1] == "a" ? return_when::all_completed : return_when::first_completed);
                std::string names;
                for (std::size_t k = 0; k < ids.size(); ++k) {
                    bool in_done = false;
                    for (auto& d : r.done) in_done = in_done || d == ts[k];
                    if (in_done) names += (names.empty() ? "t" : ",t") + std::to_string(ids[k]);
                }
                log(me + " " + name + " " + arg + " -> done " + names);
            } else {
                const std::string r = outcome([&] {
                    std::string list = "[";
                    for (int v : gather(ts)) {
                        list += (list.size() > 1 ? ", " : "") + std::to_string(v);
                    }
                    return list + "]";
                });
                log(me + " " + name + " " + arg + " " + r);
            }
        } else {
            throw std::runtime_error("asyncio_diff_interp: unknown operation " + op);
        }
    }

    program p_;
    std::vector<task<int>> handles_;
    std::vector<std::unique_ptr<event>> events_;
    std::map<std::string, std::pair<std::size_t, std::uint64_t>> callbacks_;
    std::ostringstream out_;
};

}  // namespace

int main() {
    // Exceptions nobody retrieved are reported by both implementations, outside the trace.
    set_report_handler([](const failure_report&) {});
    std::vector<std::string> lines;
    std::string line;
    try {
        while (std::getline(std::cin, line)) {
            if (line != "E") {
                lines.push_back(line);
                continue;
            }
            interpreter in(parse(lines));
            std::cout << in.run_program() << "E\n";
            lines.clear();
        }
    } catch (const std::exception& e) {
        std::cerr << "asyncio_diff_interp: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
