// Connecting by name.

#include "greenfiber/net.hpp"

namespace greenfiber {

namespace detail {

std::string describe_target(const char* what, std::string_view host, std::string_view service) {
    std::string s = what;
    s += " '";
    s += host;
    s += ':';
    s += service;
    s += '\'';
    return s;
}

void throw_net_error(const boost::system::error_code& ec, const char* what, std::string_view host,
                     std::string_view service) {
    throw boost::system::system_error(ec, "greenfiber: " + describe_target(what, host, service));
}

}  // namespace detail

tcp::socket create_connection(std::string_view host, std::string_view service, deadline dl,
                              boost::system::error_code& ec) {
    const auto endpoints = resolve<tcp::protocol>(host, service, dl, ec);
    tcp::socket s;
    if (ec) return s;
    for (const auto& ep : endpoints) {
        s = tcp::socket();
        s.connect(ep, dl, ec);
        if (!ec || ec == boost::asio::error::timed_out) return s;
    }
    return s;
}

tcp::socket create_connection(std::string_view host, std::string_view service, deadline dl) {
    boost::system::error_code ec;
    tcp::socket s = create_connection(host, service, dl, ec);
    if (ec) detail::throw_net_error(ec, "connect to", host, service);
    return s;
}

}  // namespace greenfiber
