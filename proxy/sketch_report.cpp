#include "proxy/sketch_report.hpp"

#include <algorithm>
#include <cstdio>
#include <map>

#include "policies/key_hash.hpp"

namespace keygate::proxy {

std::string jsonString(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + 2);
  out.push_back('"');
  for (const char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out.append(buf);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
  return out;
}

SketchReport collectSketches(const ServerContext& context,
                             const std::vector<std::unique_ptr<Worker>>& workers,
                             std::chrono::milliseconds wait) {
  std::vector<std::future<SketchSnapshot>> pending;
  for (const auto& w : workers)
    pending.push_back(w->snapshotSketches());
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::vector<SketchSnapshot> snaps;
  for (auto& f : pending) {
    if (f.wait_until(deadline) == std::future_status::ready) snaps.push_back(f.get());
  }
  SketchReport report;
  report.takenAt = std::chrono::steady_clock::now();
  report.workersAnswered = snaps.size();
  if (!snaps.empty()) report.registry = snaps.front().registry;
  // Group every worker's patterns by id, and sum its nodes by address.
  std::map<std::uint16_t, std::vector<const SketchSnapshot::Pattern*>> byId;
  std::map<std::string, SketchSnapshot::Node> nodes;
  for (const auto& snap : snaps) {
    for (const auto& p : snap.patterns)
      byId[p.id].push_back(&p);
    for (const auto& n : snap.nodes) {
      auto& sum = nodes[n.address];
      sum.address = n.address;
      sum.connections += n.connections;
      sum.errors += n.errors;
    }
  }
  for (auto& [address, n] : nodes)
    report.nodes.push_back(n);
  for (const auto& [id, parts] : byId) {
    SketchReport::Pattern out;
    out.id = id;
    out.name = id < context.patternNames.count() ? context.patternNames.name(id) : "?";
    out.maxExpected = context.patternMaxCardinality[id].load(std::memory_order_relaxed);
    std::vector<std::vector<policies::HotKey>> hot;
    std::vector<std::vector<policies::BigKeys::Entry>> big;
    policies::HyperLogLog distinct;
    for (const auto* p : parts) {
      out.sensitive = out.sensitive || p->sensitive;
      hot.push_back(p->hot);
      big.push_back(p->big);
      out.nearCached.insert(out.nearCached.end(), p->nearCached.begin(), p->nearCached.end());
      if (p->hasDistinct) {
        distinct.merge(p->distinct);
        out.hasDistinct = true;
      }
    }
    out.hot = policies::HotKeys::merge(hot, policies::HotKeys::kDefaultCapacity);
    out.big = policies::BigKeys::merge(big, 16);
    if (out.hasDistinct) out.distinct = distinct.estimate();
    if (out.sensitive) {
      for (auto& k : out.hot)
        k.key = policies::stableKeyHash(k.key);
      for (auto& b : out.big)
        b.key = policies::stableKeyHash(b.key);
      for (auto& k : out.nearCached)
        k = policies::stableKeyHash(k);
    }
    std::sort(out.nearCached.begin(), out.nearCached.end());
    out.nearCached.erase(std::unique(out.nearCached.begin(), out.nearCached.end()),
                         out.nearCached.end());
    report.patterns.push_back(std::move(out));
  }
  return report;
}

namespace {

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

}  // namespace

// Whether a hot key is answered from keygate's near cache (on some worker) right now.
static const char* nearCachedJson(const SketchReport::Pattern& p, const std::string& key) {
  return std::binary_search(p.nearCached.begin(), p.nearCached.end(), key) ? "true" : "false";
}

std::string hotKeysJson(const SketchReport& report, std::size_t perPattern) {
  // Patterns by their hottest key, hottest first.
  std::vector<const SketchReport::Pattern*> order;
  for (const auto& p : report.patterns) {
    if (!p.hot.empty()) order.push_back(&p);
  }
  std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return a->hot.front().count > b->hot.front().count;
  });
  // Every key of every pattern, hottest first, for "top".
  struct Flat {
    const SketchReport::Pattern* pattern;
    const policies::HotKey* key;
  };
  std::vector<Flat> flat;
  for (const auto* p : order) {
    for (const auto& k : p->hot)
      flat.push_back({p, &k});
  }
  std::stable_sort(flat.begin(), flat.end(),
                   [](const Flat& a, const Flat& b) { return a.key->count > b.key->count; });
  std::string out = "{\"window_seconds\":";
  out += std::to_string(
      std::chrono::duration_cast<std::chrono::seconds>(policies::HotKeys::kDefaultWindow).count());
  out += ",\"workers\":" + std::to_string(report.workersAnswered) + ",\"top\":[";
  for (std::size_t i = 0; i < flat.size() && i < perPattern; ++i) {
    if (i > 0) out += ",";
    out += "{\"pattern\":" + jsonString(flat[i].pattern->name) +
           ",\"key\":" + jsonString(flat[i].key->key) +
           ",\"hashed\":" + (flat[i].pattern->sensitive ? "true" : "false") +
           ",\"count\":" + std::to_string(flat[i].key->count) +
           ",\"error\":" + std::to_string(flat[i].key->errorBound) +
           ",\"nearCache\":" + nearCachedJson(*flat[i].pattern, flat[i].key->key) + "}";
  }
  out += "],\"patterns\":[";
  bool first = true;
  for (const auto* p : order) {
    if (!first) out += ",";
    first = false;
    out += "{\"pattern\":" + jsonString(p->name) +
           ",\"hashed\":" + (p->sensitive ? "true" : "false") + ",\"keys\":[";
    for (std::size_t i = 0; i < p->hot.size() && i < perPattern; ++i) {
      if (i > 0) out += ",";
      out += "{\"key\":" + jsonString(p->hot[i].key) +
             ",\"count\":" + std::to_string(p->hot[i].count) +
             ",\"error\":" + std::to_string(p->hot[i].errorBound) +
             ",\"nearCache\":" + nearCachedJson(*p, p->hot[i].key) + "}";
    }
    out += "]}";
  }
  out += "]}\n";
  return out;
}

std::string bigKeysJson(const SketchReport& report) {
  std::string out = "{\"workers\":" + std::to_string(report.workersAnswered) + ",\"patterns\":[";
  bool first = true;
  for (const auto& p : report.patterns) {
    if (p.big.empty()) continue;
    if (!first) out += ",";
    first = false;
    out += "{\"pattern\":" + jsonString(p.name) +
           ",\"hashed\":" + (p.sensitive ? "true" : "false") + ",\"keys\":[";
    for (std::size_t i = 0; i < p.big.size(); ++i) {
      if (i > 0) out += ",";
      const auto age =
          std::chrono::duration_cast<std::chrono::milliseconds>(report.takenAt - p.big[i].when);
      out += "{\"key\":" + jsonString(p.big[i].key) +
             ",\"bytes\":" + std::to_string(p.big[i].bytes) +
             ",\"age_seconds\":" + number(static_cast<double>(age.count()) / 1000.0) + "}";
    }
    out += "]}";
  }
  out += "]}\n";
  return out;
}

std::string registryJson(const ServerContext& context, const SketchReport& report) {
  const auto [version, hash] = context.registryInfo();
  std::string out = "{\"file\":" + jsonString(context.config.registryPath) +
                    ",\"version\":" + std::to_string(version) + ",\"hash\":" + jsonString(hash);
  const auto* registry = report.registry.get();
  out += ",\"patterns\":[";
  if (registry != nullptr) {
    for (std::size_t i = 0; i < registry->patternCount(); ++i) {
      const auto& rules = registry->rules(i);
      const auto& e = *rules.entry;
      if (i > 0) out += ",";
      const int endpoint =
          rules.endpoint >= 0 ? rules.endpoint : registry->endpoints().defaultIndex();
      out += "{\"pattern\":" + jsonString(e.pattern) + ",\"owner\":" + jsonString(e.owner) +
             ",\"kind\":" + (rules.channel ? "\"channel\"" : "\"key\"") +
             ",\"authority\":" + (e.authority ? "true" : "false") + ",\"mode\":" +
             (rules.mode == config::RegistryMode::kAudit ? "\"audit\"" : "\"enforce\"") +
             ",\"endpoint\":" +
             jsonString(registry->endpoints().at(static_cast<std::size_t>(endpoint)).name) +
             ",\"ttlMaxMs\":" + std::to_string(rules.ttlBound ? rules.ttlMax.count() : 0) +
             ",\"maxValueBytes\":" + std::to_string(rules.maxValueBytes) +
             ",\"maxExpectedCardinality\":" + std::to_string(e.maxExpectedCardinality) +
             ",\"containsPII\":" + (e.containsPII ? "true" : "false") +
             ",\"containsCommerciallySensitiveData\":" +
             (e.containsCommerciallySensitiveData ? "true" : "false") + "}";
    }
  }
  out += "],\"endpoints\":[";
  if (registry != nullptr) {
    const auto& set = registry->endpoints();
    for (std::size_t i = 0; i < set.size(); ++i) {
      const auto& ep = set.at(i);
      if (i > 0) out += ",";
      out += "{\"name\":" + jsonString(ep.name) +
             ",\"timeoutMs\":" + std::to_string(ep.timeout.count()) +
             ",\"onFailure\":" + (ep.open ? "\"open\"" : "\"closed\"") +
             ",\"default\":" + (i == set.defaultIndex() ? "true" : "false") +
             ",\"builtin\":" + (ep.builtin ? "true" : "false") + "}";
    }
  }
  out += "]}\n";
  return out;
}

void appendSketchFamilies(const SketchReport& report, std::size_t top,
                          std::vector<prometheus::MetricFamily>& out) {
  prometheus::MetricFamily hot;
  hot.name = "keygate_hot_key_requests";
  hot.help =
      "Requests for the hottest keys over all patterns (Space-Saving estimate, halved every "
      "10s window; keys of PII or sensitive patterns hashed)";
  hot.type = prometheus::MetricType::Gauge;
  struct Flat {
    const SketchReport::Pattern* pattern;
    const policies::HotKey* key;
  };
  std::vector<Flat> flat;
  for (const auto& p : report.patterns) {
    for (const auto& k : p.hot)
      flat.push_back({&p, &k});
  }
  std::stable_sort(flat.begin(), flat.end(),
                   [](const Flat& a, const Flat& b) { return a.key->count > b.key->count; });
  for (std::size_t i = 0; i < flat.size() && i < top; ++i) {
    prometheus::ClientMetric m;
    m.label = {{"pattern", flat[i].pattern->name},
               {"key", flat[i].key->key},
               {"rank", std::to_string(i + 1)}};
    m.gauge.value = static_cast<double>(flat[i].key->count);
    hot.metric.push_back(std::move(m));
  }
  out.push_back(std::move(hot));
  prometheus::MetricFamily distinct;
  distinct.name = "keygate_pattern_cardinality_estimate";
  distinct.help =
      "Distinct keys written within the last one to two ttl.max windows (HyperLogLog, ~1.6% "
      "error); compare with keygate_pattern_max_expected_cardinality";
  distinct.type = prometheus::MetricType::Gauge;
  for (const auto& p : report.patterns) {
    if (!p.hasDistinct) continue;
    prometheus::ClientMetric m;
    m.label = {{"pattern", p.name}};
    m.gauge.value = p.distinct;
    distinct.metric.push_back(std::move(m));
  }
  out.push_back(std::move(distinct));
  prometheus::MetricFamily connections;
  connections.name = "keygate_upstream_node_connections";
  connections.help = "Shared upstream connections ready now, by Redis node";
  connections.type = prometheus::MetricType::Gauge;
  prometheus::MetricFamily errors;
  errors.name = "keygate_upstream_node_errors_total";
  errors.help =
      "Shared upstream connection failures (refused, reset, handshake, timeouts), by node";
  errors.type = prometheus::MetricType::Counter;
  for (const auto& n : report.nodes) {
    prometheus::ClientMetric c;
    c.label = {{"node", n.address}};
    c.gauge.value = static_cast<double>(n.connections);
    connections.metric.push_back(std::move(c));
    prometheus::ClientMetric e;
    e.label = {{"node", n.address}};
    e.counter.value = static_cast<double>(n.errors);
    errors.metric.push_back(std::move(e));
  }
  out.push_back(std::move(connections));
  out.push_back(std::move(errors));
}

}  // namespace keygate::proxy
