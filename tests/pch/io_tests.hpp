// Precompiled for every io test program (tests/meson.build): GoogleTest, the standard headers
// and the parts of Boost.Asio that greenfiber's io headers include, parsed once per build
// instead of once per program (about 1.5 s of CPU each). Only third-party and standard headers
// belong here, never greenfiber's own: a test still includes what it uses, and
// tests/headers_alone.py proves that each public header compiles on its own, which a header
// seen after this one could no longer show. Beast stays out: only a few tests use it, and a
// larger header costs every other program more to load than those few save.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
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

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/system_error.hpp>
