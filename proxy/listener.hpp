#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include "config/config.hpp"

namespace keygate::proxy {

// Opens, binds (SO_REUSEADDR) and listens on `address`, which must be an IP address literal.
inline boost::system::error_code openListener(boost::asio::ip::tcp::acceptor& acceptor,
                                              const config::HostPort& address) {
  namespace asio = boost::asio;
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(address.host, ec);
  if (ec) return ec;
  const asio::ip::tcp::endpoint endpoint(ip, address.port);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  return ec;
}

}  // namespace keygate::proxy
