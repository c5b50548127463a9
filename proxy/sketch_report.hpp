#pragma once

// Hot keys, distinct keys written and big values per pattern, merged over every worker
// (issue 6): the admin endpoints /hotkeys, /bigkeys and /registry, and their metrics. Keys of
// patterns marked containsPII or containsCommerciallySensitiveData are only ever shown as
// policies::stableKeyHash(key).

#include <prometheus/metric_family.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "proxy/worker.hpp"

namespace keygate::proxy {

struct SketchReport {
  struct Pattern {
    std::uint16_t id = 0;
    std::string name;
    bool sensitive = false;
    std::vector<policies::HotKey> hot;  // merged, highest first; keys already hashed if sensitive
    std::vector<policies::BigKeys::Entry> big;
    double distinct = 0;  // keys written within the last one to two TTLs (HyperLogLog)
    bool hasDistinct = false;
    std::uint64_t maxExpected = 0;
    // Hot keys some worker answers from its near cache (sorted; hashed like `hot`).
    std::vector<std::string> nearCached;
  };
  std::vector<Pattern> patterns;
  std::vector<SketchSnapshot::Node> nodes;                     // summed over workers, by address
  std::shared_ptr<const policies::CompiledRegistry> registry;  // worker 0's, for /registry
  std::chrono::steady_clock::time_point takenAt{};
  std::size_t workersAnswered = 0;
};

// Asks every worker for its sketches and merges them; a worker that does not answer within
// `wait` is left out (workersAnswered says how many did).
SketchReport collectSketches(const ServerContext& context,
                             const std::vector<std::unique_ptr<Worker>>& workers,
                             std::chrono::milliseconds wait);

std::string hotKeysJson(const SketchReport& report, std::size_t perPattern);
std::string bigKeysJson(const SketchReport& report);
std::string registryJson(const ServerContext& context, const SketchReport& report);

// keygate_hot_key_requests{pattern,key,rank} (the `top` hottest keys over all patterns),
// keygate_pattern_cardinality_estimate{pattern}, keygate_upstream_node_connections{node} and
// keygate_upstream_node_errors_total{node}.
void appendSketchFamilies(const SketchReport& report, std::size_t top,
                          std::vector<prometheus::MetricFamily>& out);

// A JSON string literal (quotes included) of arbitrary bytes: control characters and bytes
// outside ASCII are written as \u00XX, so any key gives valid JSON.
std::string jsonString(std::string_view bytes);

}  // namespace keygate::proxy
