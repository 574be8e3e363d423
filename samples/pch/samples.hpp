// Precompiled for the samples that use the io layer (samples/meson.build): the standard headers
// and the parts of Boost.Asio that greenfiber's io headers include, parsed once per build
// instead of once per sample. Only third-party and standard headers belong here, never
// greenfiber's own: each sample still includes what it uses, as the tutorial's reader must.
#include <chrono>
#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

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
#include <boost/asio/write.hpp>
#include <boost/system/system_error.hpp>
