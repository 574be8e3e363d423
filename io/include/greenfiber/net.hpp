#pragma once

/// \file
/// Name resolution and connecting by name. Resolution runs getaddrinfo on Asio's resolver
/// thread: the hub and its other fibers keep running meanwhile.

#include "greenfiber/config.hpp"  // first: the C++20 check

#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/basic_resolver.hpp>
#include <boost/system/error_code.hpp>

#include "greenfiber/deadline.hpp"
#include "greenfiber/socket.hpp"
#include "greenfiber/use_fiber.hpp"

namespace greenfiber {

namespace detail {
/// "resolve 'host:service'"-style context for errors.
std::string describe_target(const char* what, std::string_view host, std::string_view service);
[[noreturn]] void throw_net_error(const boost::system::error_code& ec, const char* what,
                                  std::string_view host, std::string_view service);
}  // namespace detail

///@{
/// The addresses of `host` for `service` (a port number or a name like "http"), in
/// getaddrinfo's order. `Protocol` is tcp::protocol (the default) or udp::protocol.
/// Errors: host_not_found, service_not_found, timed_out when `dl` passes first (the lookup
/// is abandoned: getaddrinfo cannot be interrupted).
/// Switches: yes.   Throws: boost::system::system_error naming host and service;
///                  cancelled_error.
template <class Protocol = boost::asio::ip::tcp>
std::vector<typename Protocol::endpoint> resolve(std::string_view host, std::string_view service,
                                                 deadline dl, boost::system::error_code& ec) {
    boost::asio::ip::basic_resolver<Protocol, boost::asio::io_context::executor_type> resolver(
        hub::current().context());
    const auto results = resolver.async_resolve(host, service, use_fiber.until(dl)[ec]);
    std::vector<typename Protocol::endpoint> out;
    if (ec) return out;
    for (const auto& entry : results) out.push_back(entry.endpoint());
    if (out.empty()) ec = boost::asio::error::host_not_found;
    return out;
}
template <class Protocol = boost::asio::ip::tcp>
std::vector<typename Protocol::endpoint> resolve(std::string_view host, std::string_view service,
                                                 deadline dl = {}) {
    boost::system::error_code ec;
    auto out = resolve<Protocol>(host, service, dl, ec);
    if (ec) detail::throw_net_error(ec, "resolve", host, service);
    return out;
}
///@}

///@{
/// Resolves `host` and connects to its addresses in turn until one accepts (Python's
/// socket.create_connection). `dl` bounds the whole call, resolution included. On failure
/// the error is the last address's.
/// Switches: yes.   Throws: boost::system::system_error naming host and service;
///                  cancelled_error.
tcp::socket create_connection(std::string_view host, std::string_view service, deadline dl,
                              boost::system::error_code& ec);
tcp::socket create_connection(std::string_view host, std::string_view service, deadline dl = {});
///@}

}  // namespace greenfiber
