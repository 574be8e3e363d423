#pragma once
// The long run: `meson test --setup long` sets GREENFIBER_LONG=1 (meson.build). A stress,
// randomised or differential test does a bounded amount of work in the default run, which
// must stay quick, and more in the long run: rounds(default, long).

#include <cstdlib>
#include <string_view>

namespace greenfiber::testing {

// True in the long run (GREENFIBER_LONG=1). Read once.
inline bool long_run() {
    static const bool on = [] {
        const char* v = std::getenv("GREENFIBER_LONG");
        return v != nullptr && std::string_view(v) == "1";
    }();
    return on;
}

// `default_rounds` in the default run, `long_rounds` in the long run.
inline int rounds(int default_rounds, int long_rounds) {
    return long_run() ? long_rounds : default_rounds;
}

}  // namespace greenfiber::testing
