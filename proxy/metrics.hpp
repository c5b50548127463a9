#pragma once

// Exposes the proxy core's counters to Prometheus. Workers count in their own WorkerStats; this
// collector sums them when /metrics is scraped, so the request path never touches a shared
// counter. Metric names are documented in README.md ("Metrics reference").

#include <prometheus/collectable.h>

#include <memory>
#include <vector>

#include "proxy/worker.hpp"

namespace keygate::proxy {

class ProxyCollector : public prometheus::Collectable {
 public:
  ProxyCollector(const ServerContext& context, const std::vector<std::unique_ptr<Worker>>& workers)
      : context_(context), workers_(workers) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  // Per pattern, per command, per endpoint duration (proxy/traffic_stats.hpp).
  void collectTraffic(std::vector<prometheus::MetricFamily>& out) const;
  void collectNearCache(std::vector<prometheus::MetricFamily>& out) const;

  const ServerContext& context_;
  const std::vector<std::unique_ptr<Worker>>& workers_;
};

}  // namespace keygate::proxy
