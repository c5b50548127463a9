#pragma once

// Circuit breakers towards one Redis node, on one worker thread: one per endpoint profile
// (docs/endpoints.md). In cluster mode every node has its own, so a failing master fails only
// the requests for its slots. Owned by the worker and never freed while it runs: connections,
// requests in flight and fan-out parts point at them.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "policies/circuit_breaker.hpp"

namespace keygate::proxy {

struct Breaker {
  policies::CircuitBreaker state;
  std::uint16_t metricId = 0;  // the endpoint's id in the metric label table
  std::string node;            // "host:port", for error messages
};

struct NodeHealth {
  std::string node;
  // By endpoint name: a profile that survives a registry reload keeps its breaker.
  std::unordered_map<std::string, std::unique_ptr<Breaker>> byName;
  // By the profile's index in the registry in force.
  std::vector<Breaker*> byIndex;
  // This worker's shared connections to the node that are ready, and their failures (refused,
  // reset, handshake errors, timeouts) since start. Worker thread only; read via snapshots.
  std::int64_t connections = 0;
  std::uint64_t errors = 0;

  Breaker* breaker(std::size_t endpoint) const {
    return endpoint < byIndex.size() ? byIndex[endpoint] : nullptr;
  }
};

}  // namespace keygate::proxy
