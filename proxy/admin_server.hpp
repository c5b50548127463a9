#pragma once

// Minimal HTTP/1.1 admin endpoint on the main thread: GET /healthz, /readyz, /metrics,
// /hotkeys, /bigkeys, /registry, POST /reload. One request per connection, bounded request
// size, closed after the response.
//
// Guarding (SPEC.md section 7): with admin.tokenFile, every path but /healthz and /readyz needs
// `Authorization: Bearer <token>` (401 otherwise). A metrics-only server (admin.metricsListen)
// answers /metrics without a token, and nothing else, so Prometheus can scrape a port that
// exposes no key names, registry or reload.

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
  enum class Role : std::uint8_t { kAdmin, kMetricsOnly };

  AdminServer(asio::io_context& io, const ServerContext& context,
              const std::vector<std::unique_ptr<Worker>>& workers, Role role = Role::kAdmin);

  bool open(const config::HostPort& address);
  void start();
  void stop();

  // Builds the response for one request line's target; `authorization` is the request's
  // Authorization header value (empty: none). Exposed for tests.
  std::string respond(std::string_view method, std::string_view target,
                      std::string_view authorization = {}) const;

 private:
  void accept();

  asio::io_context& io_;
  const ServerContext& context_;
  Role role_;
  const std::vector<std::unique_ptr<Worker>>& workers_;
  asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<ProxyCollector> collector_;
  std::shared_ptr<prometheus::Registry> registry_;
};

}  // namespace keygate::proxy
