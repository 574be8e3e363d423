// Runs greenlet programs (README.md in this folder) on greenfiber's fibers layer and prints
// each one's event trace, for greenlet_diff.py to compare with Python's greenlet running
// the same program. Reads programs on stdin; writes "program N", the trace, then "end".
// This file mirrors oracle() in greenlet_diff.py line by line: change both together.
//
//   interpreter < programs.txt

#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <greenfiber/error.hpp>
#include <greenfiber/greenlet.hpp>
#include <greenfiber/value.hpp>

namespace {

using greenfiber::greenlet;
using greenfiber::greenlet_exit;
using greenfiber::value;

// The programs' own exceptions (E1, E2).
struct test_error {
    std::string name;
};

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    std::istringstream in(s);
    while (std::getline(in, cur, sep)) {
        if (!cur.empty()) out.push_back(cur);
    }
    return out;
}

std::string fmt(const value& v) {
    if (v.empty()) return "()";
    if (v.is<greenlet_exit>()) return "exit";
    if (v.is<int>()) return std::to_string(v.get<int>());
    return "?" + greenfiber::detail::type_name(v.type());
}

class program {
  public:
    explicit program(std::map<int, std::vector<std::string>> scripts)
        : scripts_(std::move(scripts)) {
        table_.emplace(0, greenlet::current());
    }

    // Runs the program, with the trace hook recording when `traced`; returns its trace.
    std::vector<std::string> run(bool traced) {
        if (traced) {
            greenfiber::settrace([this](greenfiber::trace_event e, const greenlet& origin,
                                        const greenlet& target) {
                if (done_) return;
                trace_.push_back(std::string("trace ") +
                                 (e == greenfiber::trace_event::switch_to ? "switch" : "throw") +
                                 " g" + std::to_string(index_of(origin)) + " g" +
                                 std::to_string(index_of(target)));
            });
        }
        try {
            (void)interp(0, value());
        } catch (const test_error& e) {
            trace_.push_back("main raised " + e.name);
        } catch (const greenlet_exit&) {
            trace_.push_back("main raised exit");
        } catch (const greenfiber::error&) {
            trace_.push_back("main raised error");
        }
        done_ = true;
        greenfiber::settrace(nullptr);
        trace_.push_back("end");
        // Unwind what is left while `done_` makes every script return at once.
        for (auto& [i, g] : table_) {
            if (g.active() && !g.is_current()) {
                try {
                    (void)g.throw_in();
                } catch (...) {
                }
            }
        }
        table_.clear();
        return std::move(trace_);
    }

  private:
    int index_of(const greenlet& g) const {
        for (const auto& [i, h] : table_) {
            if (h == g) return i;
        }
        return -1;
    }

    greenlet* find(int i) {
        auto it = table_.find(i);
        return it == table_.end() ? nullptr : &it->second;
    }

    std::string name_of_current_exception() {
        try {
            throw;
        } catch (const greenlet_exit&) {
            return "exit";
        } catch (const test_error& e) {
            return e.name;
        } catch (...) {
            return "error";
        }
    }

    template <class Call>
    void result(int i, Call&& call, const std::string& c) {
        value r;
        try {
            r = call();
        } catch (...) {
            if (c != "c") throw;
            if (done_) return;
            trace_.push_back("g" + std::to_string(i) + " caught " + name_of_current_exception());
            return;
        }
        if (!done_) trace_.push_back("g" + std::to_string(i) + " got " + fmt(r));
    }

    static value arg_of(const std::string& w) {
        if (w == "-") return value();
        if (w == "X") return value(greenlet_exit());  // an exit passed as an ordinary value
        return value(std::stoi(w));
    }

    // Greenlet c's function: its script.
    auto run_of(int c) {
        return [this, c](value a) { return interp(c, std::move(a)); };
    }

    value interp(int i, value args) {
        const std::string me = "g" + std::to_string(i);
        if (i != 0 && !done_) trace_.push_back(me + " start " + fmt(args));
        for (const std::string& op : scripts_[i]) {
            if (done_) return value(0);
            const std::vector<std::string> w = split(op, ' ');
            const std::string& k = w[0];
            if (k == "sw" || k == "th") {
                greenlet* t = find(std::stoi(w[1]));
                if (t == nullptr) {
                    trace_.push_back(me + " " + k + " g" + w[1] + " missing");
                    continue;
                }
                trace_.push_back(me + " " + k + " g" + w[1] + " " + w[2]);
                if (k == "sw") {
                    result(
                        i, [&] { return t->switch_to(arg_of(w[2])); }, w[3]);
                } else if (w[2] == "exit") {
                    result(
                        i, [&] { return t->throw_in(); }, w[3]);
                } else {
                    result(
                        i, [&] { return t->throw_in(test_error{w[2]}); }, w[3]);
                }
            } else if (k == "par") {
                const greenlet parent = greenlet::current().parent();
                trace_.push_back(me + " par " +
                                 (parent ? "g" + std::to_string(index_of(parent)) : "none") + " " +
                                 w[1]);
                result(
                    i, [&] { return greenlet::switch_to_parent(arg_of(w[1])); }, w[2]);
            } else if (k == "cr" || k == "crn") {
                const int c = std::stoi(w[1]);
                const int p = std::stoi(w[2]);
                if (find(c) != nullptr) {
                    trace_.push_back(me + " " + k + " g" + std::to_string(c) + " exists");
                    continue;
                }
                greenlet* par = p >= 0 ? find(p) : nullptr;
                greenlet g;
                if (k == "cr") {
                    g = par != nullptr ? greenlet(run_of(c), *par) : greenlet(run_of(c));
                } else {
                    g = greenlet(greenlet::options{});
                    if (par != nullptr) g.set_parent(*par);
                }
                const greenlet& added = table_.emplace(c, std::move(g)).first->second;
                trace_.push_back(me + " " + k + " g" + std::to_string(c) + " parent g" +
                                 std::to_string(index_of(added.parent())));
            } else if (k == "run") {
                greenlet* t = find(std::stoi(w[1]));
                if (t == nullptr) {
                    trace_.push_back(me + " run g" + w[1] + " missing");
                    continue;
                }
                try {
                    t->set_run(run_of(std::stoi(w[1])));
                    trace_.push_back(me + " run g" + w[1] + " ok");
                } catch (const greenfiber::error&) {
                    trace_.push_back(me + " run g" + w[1] + " refused");
                }
            } else if (k == "sp") {
                greenlet* c = find(std::stoi(w[1]));
                greenlet* p = find(std::stoi(w[2]));
                const std::string what = me + " sp g" + w[1] + " g" + w[2];
                if (c == nullptr || p == nullptr) {
                    trace_.push_back(what + " missing");
                    continue;
                }
                try {
                    c->set_parent(*p);
                    trace_.push_back(what + " ok");
                } catch (const greenfiber::error&) {
                    trace_.push_back(what + " refused");
                }
            } else if (k == "ret") {
                trace_.push_back(me + " return " + w[1]);
                return arg_of(w[1]);
            } else if (k == "rai") {
                trace_.push_back(me + " raise " + w[1]);
                throw test_error{w[1]};
            } else if (k == "exi") {
                trace_.push_back(me + " raise exit");
                throw greenlet_exit();
            }
        }
        if (i == 0 || done_) return value(0);
        trace_.push_back(me + " return " + std::to_string(100 + i));
        return value(100 + i);
    }

    std::map<int, std::vector<std::string>> scripts_;
    std::map<int, greenlet> table_;  // index -> handle; 0 is this thread's main greenlet
    std::vector<std::string> trace_;
    bool done_ = false;
};

}  // namespace

int main() {
    std::ios::sync_with_stdio(false);
    std::string line;
    int seed = -1;
    std::map<int, std::vector<std::string>> scripts;
    bool traced = false;
    int failures = 0;
    while (std::getline(std::cin, line)) {
        if (line.rfind("program ", 0) == 0) {
            seed = std::stoi(line.substr(8));
            scripts.clear();
            traced = false;
        } else if (line == "trace") {
            traced = true;
        } else if (line.rfind("g ", 0) == 0) {
            std::istringstream in(line.substr(2));
            int i = 0;
            in >> i;
            std::string rest;
            std::getline(in, rest);
            scripts[i] = split(rest.empty() ? rest : rest.substr(1), ';');
        } else if (line == "run") {
            std::vector<std::string> trace = program(scripts).run(traced);
            std::cout << "program " << seed << '\n';
            for (const std::string& t : trace) std::cout << t << '\n';
            // Every greenlet of the program is dead and freed once its handles are gone.
            if (greenfiber::live_greenlets() != 0) {
                std::cout << "leak: " << greenfiber::live_greenlets() << " greenlets live\n";
                ++failures;
            }
        }
    }
    std::cout.flush();
    return failures == 0 ? 0 : 1;
}
