#pragma once

// Minimal HTTP/1.1 admin endpoint on the main thread: GET /healthz, /readyz, /metrics.
// One request per connection, bounded request size, closed after the response.

#include <prometheus/registry.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "proxy/metrics.hpp"
#include "proxy/worker.hpp"

namespace keygate::proxy {

class AdminServer {
 public:
  AdminServer(asio::io_context& io, const ServerContext& context,
              const std::vector<std::unique_ptr<Worker>>& workers);

  bool open(const config::HostPort& address);
  void start();
  void stop();

  // Builds the response for one request line's target; exposed for tests.
  std::string respond(std::string_view method, std::string_view target) const;

 private:
  void accept();

  asio::io_context& io_;
  const ServerContext& context_;
  const std::vector<std::unique_ptr<Worker>>& workers_;
  asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<ProxyCollector> collector_;
  std::shared_ptr<prometheus::Registry> registry_;
};

}  // namespace keygate::proxy
