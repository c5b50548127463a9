#pragma once

// TLS contexts (Asio SSL over OpenSSL 3) built once at start-up from the config: one client
// context for every connection to Redis (upstream.tls), one server context for the listener
// (tls). Errors come back as text for the start-up log; nothing here throws.

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "config/config.hpp"

namespace keygate::proxy {

namespace asio = boost::asio;

// Null with `error` set when a file cannot be loaded.
std::shared_ptr<asio::ssl::context> makeUpstreamTlsContext(const config::UpstreamTlsConfig& tls,
                                                           std::string& error);
std::shared_ptr<asio::ssl::context> makeListenerTlsContext(const config::ClientTlsConfig& tls,
                                                           std::string& error);

}  // namespace keygate::proxy
