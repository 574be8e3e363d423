// Precompiled for every fibers test program (tests/meson.build): GoogleTest and the standard
// headers they all use, parsed once per build instead of once per program. Only third-party
// and standard headers belong here, never greenfiber's own: a test still includes what it
// uses, and tests/headers_alone.py proves that each public header compiles on its own, which
// a header seen after this one could no longer show.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>
