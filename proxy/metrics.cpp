#include "proxy/metrics.hpp"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include <initializer_list>
#include <limits>
#include <utility>

#include "proxy/keyspace_events.hpp"
#include "proxy/sketch_report.hpp"
#include "proxy/version.hpp"
#include "proxy/worker.hpp"

namespace keygate::proxy {

namespace {

using Counter = WorkerStats::Counter;

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type,
                                double value,
                                std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
  return f;
}

// Sums one histogram over the workers into a Prometheus histogram sample. The stored unit
// divided by `scale` is the metric's (microseconds / 1e6 = seconds; dividing keeps bucket
// bounds such as 0.1 exact, so a profile's budget can be matched to an `le`).
template <std::size_t N, typename Get>
prometheus::ClientMetric sumHistogram(const std::vector<std::unique_ptr<Worker>>& workers,
                                      const std::array<std::uint64_t, N>& bounds, double scale,
                                      Get get) {
  std::array<std::uint64_t, N + 1> buckets{};
  std::uint64_t count = 0, sum = 0;
  for (const auto& w : workers) {
    const auto& h = get(*w);
    for (std::size_t i = 0; i <= N; ++i)
      buckets[i] += h.buckets[i].load(std::memory_order_relaxed);
    count += h.count.load(std::memory_order_relaxed);
    sum += h.sum.load(std::memory_order_relaxed);
  }
  prometheus::ClientMetric m;
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= N; ++i) {
    cumulative += buckets[i];
    prometheus::ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound =
        i < N ? static_cast<double>(bounds[i]) / scale : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(b);
  }
  m.histogram.sample_count = count;
  m.histogram.sample_sum = static_cast<double>(sum) / scale;
  return m;
}

prometheus::MetricFamily emptyFamily(std::string name, std::string help,
                                     prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

}  // namespace

void ProxyCollector::collectNearCache(std::vector<prometheus::MetricFamily>& out) const {
  using prometheus::MetricType;
  // Per pattern, from the sessions' counters and each worker's near cache (docs/near-cache.md).
  using Read = std::uint64_t (*)(const Worker&, std::size_t);
  struct Def {
    const char* name;
    const char* help;
    MetricType type;
    Read read;
  };
  static constexpr auto load = [](const WorkerStats::Counter& c) {
    return c.load(std::memory_order_relaxed);
  };
  static const Def kDefs[] = {
      {"keygate_near_cache_hits_total", "Reads answered from keygate's near cache",
       MetricType::Counter,
       [](const Worker& w, std::size_t id) { return load(w.traffic().patterns[id].nearHits); }},
      {"keygate_near_cache_misses_total", "Near-cache lookups that went to Redis",
       MetricType::Counter,
       [](const Worker& w, std::size_t id) { return load(w.traffic().patterns[id].nearMisses); }},
      {"keygate_coalesced_requests_total",
       "Reads answered by sharing another client's identical request in flight",
       MetricType::Counter,
       [](const Worker& w, std::size_t id) { return load(w.traffic().patterns[id].coalesced); }},
      {"keygate_near_cache_invalidations_total",
       "Near-cache entries dropped because their key changed (Redis invalidation, a write "
       "through keygate, a flush)",
       MetricType::Counter,
       [](const Worker& w, std::size_t id) {
         return load(w.reads().cache().stats(static_cast<std::uint16_t>(id)).invalidations);
       }},
      {"keygate_near_cache_evictions_total",
       "Near-cache entries dropped to stay within maxBytes / maxEntries (least recently used)",
       MetricType::Counter,
       [](const Worker& w, std::size_t id) {
         return load(w.reads().cache().stats(static_cast<std::uint16_t>(id)).evictions);
       }},
      {"keygate_near_cache_expirations_total", "Near-cache entries dropped at nearCache.ttl",
       MetricType::Counter,
       [](const Worker& w, std::size_t id) {
         return load(w.reads().cache().stats(static_cast<std::uint16_t>(id)).expirations);
       }},
      {"keygate_near_cache_bytes", "Memory held by near-cache entries", MetricType::Gauge,
       [](const Worker& w, std::size_t id) {
         return load(w.reads().cache().stats(static_cast<std::uint16_t>(id)).bytes);
       }},
      {"keygate_near_cache_entries", "Near-cache entries", MetricType::Gauge,
       [](const Worker& w, std::size_t id) {
         return load(w.reads().cache().stats(static_cast<std::uint16_t>(id)).entries);
       }},
  };
  const std::size_t patterns = context_.patternNames.count();
  std::vector<std::vector<std::uint64_t>> totals(std::size(kDefs),
                                                 std::vector<std::uint64_t>(patterns));
  std::vector<bool> seen(patterns);
  for (std::size_t d = 0; d < std::size(kDefs); ++d) {
    for (std::size_t id = 0; id < patterns; ++id) {
      for (const auto& w : workers_)
        totals[d][id] += kDefs[d].read(*w, id);
      if (totals[d][id] > 0) seen[id] = true;
    }
  }
  for (std::size_t d = 0; d < std::size(kDefs); ++d) {
    auto f = emptyFamily(kDefs[d].name, kDefs[d].help, kDefs[d].type);
    for (std::size_t id = 0; id < patterns; ++id) {
      if (!seen[id]) continue;
      prometheus::ClientMetric m;
      m.label = {{"pattern", context_.patternNames.name(id)}};
      if (kDefs[d].type == MetricType::Gauge) {
        m.gauge.value = static_cast<double>(totals[d][id]);
      } else {
        m.counter.value = static_cast<double>(totals[d][id]);
      }
      f.metric.push_back(std::move(m));
    }
    out.push_back(std::move(f));
  }
  auto tracking =
      emptyFamily("keygate_near_cache_tracking",
                  "1 when every worker's CLIENT TRACKING connection to the node is up, else 0",
                  MetricType::Gauge);
  {
    std::lock_guard lock(context_.trackingMutex);
    for (const auto& [node, count] : context_.trackingLinks) {
      prometheus::ClientMetric m;
      m.label = {{"node", node}};
      m.gauge.value = count >= workers_.size() ? 1 : 0;
      tracking.metric.push_back(std::move(m));
    }
  }
  out.push_back(std::move(tracking));
  auto flushes = emptyFamily("keygate_near_cache_flushes_total",
                             "Whole near cache dropped on a worker: tracking connection "
                             "(re)established, Redis flushed, registry changed",
                             MetricType::Counter);
  prometheus::ClientMetric m;
  for (const auto& w : workers_)
    m.counter.value += static_cast<double>(w->reads().flushes());
  flushes.metric.push_back(std::move(m));
  out.push_back(std::move(flushes));
}

void ProxyCollector::collectTraffic(std::vector<prometheus::MetricFamily>& out) const {
  using prometheus::MetricType;
  constexpr double kMicros = 1e6;
  // Per pattern: only patterns that saw traffic (the label set is bounded by the registry).
  struct PatternCounter {
    const char* name;
    const char* help;
    WorkerStats::Counter PatternCounters::*field;
  };
  static constexpr PatternCounter kPatternCounters[] = {
      {"keygate_pattern_requests_total", "Requests whose first key matched the pattern",
       &PatternCounters::requests},
      {"keygate_pattern_hits_total", "Read replies with a value (MGET / HMGET: per element)",
       &PatternCounters::hits},
      {"keygate_pattern_misses_total",
       "Read replies meaning absent: nil, empty, 0 (fail-open answers included)",
       &PatternCounters::misses},
      {"keygate_pattern_writes_total", "Write requests", &PatternCounters::writes},
      {"keygate_pattern_ttl_injected_total", "TTLs keygate added", &PatternCounters::ttlInjected},
      {"keygate_pattern_ttl_clamped_total", "TTLs lowered to ttl.max",
       &PatternCounters::ttlClamped},
      {"keygate_pattern_request_bytes_total", "Request bytes", &PatternCounters::requestBytes},
      {"keygate_pattern_reply_bytes_total", "Reply bytes", &PatternCounters::replyBytes},
  };
  const std::size_t patterns = context_.patternNames.count();
  std::vector<std::size_t> active;
  for (std::size_t id = 0; id < patterns; ++id) {
    std::uint64_t seen = 0;
    for (const auto& w : workers_) {
      const auto& pc = w->traffic().patterns[id];
      seen += pc.requests.load(std::memory_order_relaxed);
      for (const auto& r : pc.rejects)
        seen += r.load(std::memory_order_relaxed);
    }
    if (seen > 0) active.push_back(id);
  }
  for (const auto& def : kPatternCounters) {
    auto f = emptyFamily(def.name, def.help, MetricType::Counter);
    for (const std::size_t id : active) {
      double total = 0;
      for (const auto& w : workers_)
        total += static_cast<double>(
            (w->traffic().patterns[id].*def.field).load(std::memory_order_relaxed));
      prometheus::ClientMetric m;
      m.label = {{"pattern", context_.patternNames.name(id)}};
      m.counter.value = total;
      f.metric.push_back(std::move(m));
    }
    out.push_back(std::move(f));
  }
  auto rejects = emptyFamily("keygate_pattern_rejects_total",
                             "Requests refused by the registry, by the first key's pattern",
                             MetricType::Counter);
  for (const std::size_t id : active) {
    for (std::size_t r = 0; r < WorkerStats::kRegistryReasons; ++r) {
      std::uint64_t total = 0;
      for (const auto& w : workers_)
        total += w->traffic().patterns[id].rejects[r].load(std::memory_order_relaxed);
      if (total == 0) continue;
      prometheus::ClientMetric m;
      m.label = {{"pattern", context_.patternNames.name(id)},
                 {"reason", std::string(policies::reasonName(static_cast<policies::Reason>(r)))}};
      m.counter.value = static_cast<double>(total);
      rejects.metric.push_back(std::move(m));
    }
  }
  out.push_back(std::move(rejects));
  auto durations = emptyFamily("keygate_pattern_request_duration_seconds",
                               "Time from sending a request to Redis to its answer, by pattern",
                               MetricType::Histogram);
  auto values = emptyFamily("keygate_pattern_value_bytes", "Sizes of values written, by pattern",
                            MetricType::Histogram);
  for (const std::size_t id : active) {
    auto m = sumHistogram(
        workers_, kDurationBoundsUs, kMicros, [id](const Worker& w) -> const auto& {
          return w.traffic().patterns[id].duration;
        });
    m.label = {{"pattern", context_.patternNames.name(id)}};
    durations.metric.push_back(std::move(m));
    auto v = sumHistogram(
        workers_, kValueBounds,
        1.0, [id](const Worker& w) -> const auto& { return w.traffic().patterns[id].valueBytes; });
    v.label = {{"pattern", context_.patternNames.name(id)}};
    values.metric.push_back(std::move(v));
  }
  out.push_back(std::move(durations));
  out.push_back(std::move(values));
  collectNearCache(out);

  // Per command: the commands clients sent (bounded by the command table).
  const auto rows = commands::CommandTable::redis70().all();
  auto commandCount = emptyFamily("keygate_command_requests_total",
                                  "Requests by command (top-level name)", MetricType::Counter);
  auto commandDuration = emptyFamily(
      "keygate_command_duration_seconds",
      "Time from sending a request to Redis to its answer, by command", MetricType::Histogram);
  for (std::size_t row = 0; row < rows.size(); ++row) {
    std::uint64_t total = 0;
    for (const auto& w : workers_)
      total += w->traffic().commands[row].requests.load(std::memory_order_relaxed);
    if (total == 0) continue;
    const std::string name(rows[row].name);
    prometheus::ClientMetric m;
    m.label = {{"command", name}};
    m.counter.value = static_cast<double>(total);
    commandCount.metric.push_back(std::move(m));
    auto d = sumHistogram(
        workers_, kDurationBoundsUs, kMicros, [row](const Worker& w) -> const auto& {
          return w.traffic().commands[row].duration;
        });
    d.label = {{"command", name}};
    commandDuration.metric.push_back(std::move(d));
  }
  out.push_back(std::move(commandCount));
  out.push_back(std::move(commandDuration));

  // Per endpoint profile: durations, for the latency budget burn.
  auto endpointDuration =
      emptyFamily("keygate_endpoint_request_duration_seconds",
                  "Time from sending a request to Redis to its answer (or keygate's at the "
                  "deadline), by endpoint profile",
                  MetricType::Histogram);
  for (std::size_t id = 0; id < context_.endpointCount(); ++id) {
    auto d = sumHistogram(
        workers_, kDurationBoundsUs,
        kMicros, [id](const Worker& w) -> const auto& { return w.traffic().endpoints[id]; });
    d.label = {{"endpoint", context_.endpointName(id)}};
    endpointDuration.metric.push_back(std::move(d));
  }
  out.push_back(std::move(endpointDuration));
  auto budgets =
      emptyFamily("keygate_endpoint_budget_seconds",
                  "The Redis time budget (timeout) of each endpoint profile", MetricType::Gauge);
  for (std::size_t id = 0; id < context_.endpointCount(); ++id) {
    prometheus::ClientMetric m;
    m.label = {{"endpoint", context_.endpointName(id)}};
    m.gauge.value =
        static_cast<double>(context_.endpointBudgetMs[id].load(std::memory_order_relaxed)) / 1000.0;
    budgets.metric.push_back(std::move(m));
  }
  out.push_back(std::move(budgets));
  auto maxCardinality =
      emptyFamily("keygate_pattern_max_expected_cardinality",
                  "The registry's maxExpectedCardinality of each pattern", MetricType::Gauge);
  for (std::size_t id = 1; id < context_.patternNames.count(); ++id) {
    prometheus::ClientMetric m;
    m.label = {{"pattern", context_.patternNames.name(id)}};
    m.gauge.value =
        static_cast<double>(context_.patternMaxCardinality[id].load(std::memory_order_relaxed));
    maxCardinality.metric.push_back(std::move(m));
  }
  out.push_back(std::move(maxCardinality));
}

std::vector<prometheus::MetricFamily> ProxyCollector::Collect() const {
  auto sum = [this](Counter WorkerStats::*field) {
    double total = 0;
    for (const auto& w : workers_)
      total += static_cast<double>((w->stats().*field).load(std::memory_order_relaxed));
    return total;
  };
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  out.push_back(family("keygate_build_info", "keygate version", MetricType::Gauge, 1,
                       {{"version", kVersion}}));
  double ringWorkers = 0;
  for (const auto& w : workers_)
    ringWorkers += w->socketCallsBatched() ? 1 : 0;
  out.push_back(family("keygate_io_uring_workers",
                       "Worker threads whose socket calls are batched through io_uring (0: one "
                       "system call each; config ioUring, or a seccomp profile refusing it)",
                       MetricType::Gauge, ringWorkers));
  out.push_back(family("keygate_client_connections", "Client connections open now",
                       MetricType::Gauge, context_.activeClients.load(std::memory_order_relaxed)));
  out.push_back(family("keygate_client_connections_accepted_total", "Client connections accepted",
                       MetricType::Counter, sum(&WorkerStats::connectionsAccepted)));
  out.push_back(family("keygate_client_connections_rejected_total",
                       "Client connections refused because limits.maxClients was reached",
                       MetricType::Counter,
                       context_.rejectedMaxClients.load(std::memory_order_relaxed)));
  out.push_back(family("keygate_commands_total", "Requests parsed from clients",
                       MetricType::Counter, sum(&WorkerStats::commands)));
  out.push_back(family("keygate_commands_local_total", "Requests answered by keygate itself",
                       MetricType::Counter, sum(&WorkerStats::commandsLocal)));

  using CounterField = std::pair<const char*, Counter WorkerStats::*>;
  // One counter family with one series per (label value, WorkerStats field).
  const auto byLabel = [&](std::string name, std::string help, const char* label,
                           std::initializer_list<CounterField> series) {
    prometheus::MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = MetricType::Counter;
    for (const auto& [value, field] : series) {
      prometheus::ClientMetric m;
      m.label = {{label, value}};
      m.counter.value = sum(field);
      f.metric.push_back(std::move(m));
    }
    out.push_back(std::move(f));
  };
  byLabel("keygate_commands_refused_total", "Requests refused by the proxy core, by reason",
          "reason",
          {{"unknown_command", &WorkerStats::commandsUnknown},
           {"unsupported", &WorkerStats::commandsUnsupported},
           {"arity", &WorkerStats::commandsArityErrors}});
  byLabel("keygate_acl_auth_total",
          "AUTH and HELLO AUTH attempts against keygate's ACL users, by result", "result",
          {{"ok", &WorkerStats::aclAuthOk}, {"failed", &WorkerStats::aclAuthFailed}});
  byLabel("keygate_acl_refused_total",
          "Requests refused by the ACL: not authenticated (no_auth) or command not allowed "
          "(command); keys outside a user's patterns count in keygate_registry_refused_total "
          "{reason=\"no_permission\"}",
          "reason",
          {{"no_auth", &WorkerStats::aclNoAuth}, {"command", &WorkerStats::aclCommandDenied}});

  out.push_back(family("keygate_client_tls_handshake_failures_total",
                       "Client connections closed because their TLS handshake failed",
                       MetricType::Counter, sum(&WorkerStats::tlsHandshakeFailures)));
  out.push_back(family("keygate_protocol_errors_total",
                       "Client connections closed for malformed RESP", MetricType::Counter,
                       sum(&WorkerStats::protocolErrors)));
  out.push_back(family("keygate_backpressure_pauses_total",
                       "Times a client's reads were paused by the output or pipeline limit",
                       MetricType::Counter, sum(&WorkerStats::backpressurePauses)));
  out.push_back(family("keygate_slow_subscribers_closed_total",
                       "Subscribers closed with over 2 x limits.maxClientOutputBytes unread",
                       MetricType::Counter, sum(&WorkerStats::slowSubscribersClosed)));
  out.push_back(family("keygate_upstream_connects_total", "Upstream connections established",
                       MetricType::Counter, sum(&WorkerStats::upstreamConnects)));
  out.push_back(family("keygate_upstream_connect_failures_total",
                       "Upstream connection attempts that failed", MetricType::Counter,
                       sum(&WorkerStats::upstreamConnectFailures)));
  out.push_back(family("keygate_upstream_disconnects_total",
                       "Established upstream connections lost", MetricType::Counter,
                       sum(&WorkerStats::upstreamDisconnects)));
  out.push_back(family("keygate_upstream_unavailable_replies_total",
                       "Requests answered UNAVAILABLE because Redis could not be reached",
                       MetricType::Counter, sum(&WorkerStats::upstreamErrorsReplied)));
  out.push_back(family("keygate_dedicated_connections_total",
                       "Dedicated upstream connections opened (MULTI, pub/sub, blocking)",
                       MetricType::Counter, sum(&WorkerStats::dedicatedConnections)));
  double up = 0;
  for (const auto& w : workers_)
    up += w->upstreamUp() ? 1 : 0;
  out.push_back(family("keygate_upstream_up", "Workers whose shared upstream connection is ready",
                       MetricType::Gauge, up));
  out.push_back(family("keygate_ready", "1 when /readyz answers 200 (upstream ready, not draining)",
                       MetricType::Gauge, up > 0 && !context_.draining.load() ? 1 : 0));
  if (!context_.config.registryPath.empty()) {
    const auto [version, hash] = context_.registryInfo();
    out.push_back(family("keygate_registry_info", "The registry in force: format version, hash",
                         MetricType::Gauge, 1,
                         {{"version", std::to_string(version)}, {"hash", hash}}));
  }
  if (context_.config.upstream.mode == config::UpstreamMode::kCluster) {
    prometheus::MetricFamily redirects;
    redirects.name = "keygate_cluster_redirects_total";
    redirects.help = "Cluster redirects and retries keygate followed for clients, by kind";
    redirects.type = MetricType::Counter;
    const std::pair<const char*, Counter WorkerStats::*> kinds[] = {
        {"moved", &WorkerStats::clusterMoved},
        {"ask", &WorkerStats::clusterAsk},
        {"retry", &WorkerStats::clusterRetries},
        {"exhausted", &WorkerStats::clusterRedirectsExhausted},
    };
    for (const auto& [kind, field] : kinds) {
      prometheus::ClientMetric m;
      m.label = {{"kind", kind}};
      m.counter.value = sum(field);
      redirects.metric.push_back(std::move(m));
    }
    out.push_back(std::move(redirects));
    out.push_back(family("keygate_cluster_crossslot_refused_total",
                         "Requests refused with CROSSSLOT (keys in several slots)",
                         MetricType::Counter, sum(&WorkerStats::clusterCrossSlot)));
    out.push_back(family("keygate_cluster_split_requests_total",
                         "Multi-key requests split by slot (MGET, MSET, DEL, ...)",
                         MetricType::Counter, sum(&WorkerStats::clusterSplits)));
    out.push_back(family("keygate_cluster_fanout_requests_total",
                         "Keyless requests sent to every master (SCRIPT LOAD, DBSIZE, ...)",
                         MetricType::Counter, sum(&WorkerStats::clusterFanouts)));
    out.push_back(family("keygate_cluster_topology_refreshes_total",
                         "Slot map fetches that succeeded", MetricType::Counter,
                         context_.topologyRefreshes.load(std::memory_order_relaxed)));
    out.push_back(family("keygate_cluster_topology_refresh_failures_total",
                         "Slot map fetches where no node answered", MetricType::Counter,
                         context_.topologyRefreshFailures.load(std::memory_order_relaxed)));
    out.push_back(family("keygate_cluster_topology_changes_total",
                         "Slot maps fetched that routed some slot differently", MetricType::Counter,
                         context_.topologyChanges.load(std::memory_order_relaxed)));
    out.push_back(family("keygate_cluster_slot_map_loaded", "1 once a slot map has been fetched",
                         MetricType::Gauge,
                         context_.slotMapLoaded.load(std::memory_order_relaxed) ? 1 : 0));
  }
  if (!context_.config.registryPath.empty()) {
    prometheus::MetricFamily refusedBy;
    refusedBy.name = "keygate_registry_refused_total";
    refusedBy.help = "Requests refused by the key registry, by reason";
    refusedBy.type = MetricType::Counter;
    prometheus::MetricFamily audited;
    audited.name = "keygate_registry_audited_total";
    audited.help = "Registry violations let through because the pattern is in audit mode";
    audited.type = MetricType::Counter;
    for (std::size_t r = 0; r < static_cast<std::size_t>(policies::Reason::kCount); ++r) {
      std::uint64_t refusedSum = 0, auditedSum = 0;
      for (const auto& w : workers_) {
        refusedSum += w->stats().registryRefused[r].load(std::memory_order_relaxed);
        auditedSum += w->stats().registryAudited[r].load(std::memory_order_relaxed);
      }
      const std::string reason(policies::reasonName(static_cast<policies::Reason>(r)));
      prometheus::ClientMetric m;
      m.label = {{"reason", reason}};
      m.counter.value = static_cast<double>(refusedSum);
      refusedBy.metric.push_back(m);
      m.counter.value = static_cast<double>(auditedSum);
      audited.metric.push_back(std::move(m));
    }
    out.push_back(std::move(refusedBy));
    out.push_back(std::move(audited));
    out.push_back(family("keygate_ttl_injected_total",
                         "TTLs keygate added (SET ... PX, hidden PEXPIRE NX)", MetricType::Counter,
                         sum(&WorkerStats::ttlInjected)));
    out.push_back(family("keygate_ttl_clamped_total", "TTLs lowered to their pattern's ttl.max",
                         MetricType::Counter, sum(&WorkerStats::ttlClamped)));
    out.push_back(family("keygate_keys_rewritten_total",
                         "Legacy keys rewritten onto their canonical pattern", MetricType::Counter,
                         sum(&WorkerStats::keysRewritten)));
    out.push_back(family("keygate_registry_reloads_total",
                         "Registry reloads that changed the rules in force", MetricType::Counter,
                         context_.registryReloads.load(std::memory_order_relaxed)));
    out.push_back(family("keygate_registry_reload_failures_total",
                         "Registry reloads refused (invalid file; previous rules kept)",
                         MetricType::Counter,
                         context_.registryReloadFailures.load(std::memory_order_relaxed)));
    out.push_back(
        family("keygate_registry_patterns", "Patterns in the registry in force", MetricType::Gauge,
               static_cast<double>(context_.registryPatterns.load(std::memory_order_relaxed))));
  }
  // Endpoint profiles (docs/endpoints.md): one series per profile name seen since start.
  {
    struct EndpointFamily {
      const char* name;
      const char* help;
      Counter WorkerStats::EndpointCounters::*field;
    };
    static constexpr EndpointFamily kEndpointFamilies[] = {
        {"keygate_endpoint_requests_total",
         "Requests sent to Redis (or answered) under the profile",
         &WorkerStats::EndpointCounters::requests},
        {"keygate_endpoint_timeouts_total",
         "Requests keygate answered because Redis did not reply within the profile's budget",
         &WorkerStats::EndpointCounters::timeouts},
        {"keygate_endpoint_failures_total",
         "Requests that found Redis unavailable (refused, reset, LOADING, BUSY, CLUSTERDOWN, ...)",
         &WorkerStats::EndpointCounters::failures},
        {"keygate_endpoint_fail_open_total",
         "Failed requests answered in the shape of a miss (onFailure: open)",
         &WorkerStats::EndpointCounters::failOpen},
        {"keygate_endpoint_fail_closed_total", "Failed requests answered with an error",
         &WorkerStats::EndpointCounters::failClosed},
        {"keygate_endpoint_breaker_rejected_total",
         "Requests answered at once, without touching the network, because a breaker was open",
         &WorkerStats::EndpointCounters::breakerRejected},
        {"keygate_endpoint_retries_total", "Idempotent reads sent again after a failure",
         &WorkerStats::EndpointCounters::retries},
        {"keygate_endpoint_breaker_opens_total",
         "Times a breaker (one per node, profile and worker thread) opened",
         &WorkerStats::EndpointCounters::breakerOpens},
    };
    const std::size_t names = context_.endpointCount();
    for (const auto& def : kEndpointFamilies) {
      prometheus::MetricFamily f;
      f.name = def.name;
      f.help = def.help;
      f.type = MetricType::Counter;
      for (std::size_t id = 0; id < names; ++id) {
        double total = 0;
        for (const auto& w : workers_)
          total += static_cast<double>(
              (w->stats().endpoints[id].*def.field).load(std::memory_order_relaxed));
        prometheus::ClientMetric m;
        m.label = {{"endpoint", context_.endpointName(id)}};
        m.counter.value = total;
        f.metric.push_back(std::move(m));
      }
      out.push_back(std::move(f));
    }
    prometheus::MetricFamily open;
    open.name = "keygate_endpoint_breakers_open";
    open.help = "Breakers of the profile open or half-open now (across nodes and worker threads)";
    open.type = MetricType::Gauge;
    for (std::size_t id = 0; id < names; ++id) {
      double total = 0;
      for (const auto& w : workers_)
        total += static_cast<double>(
            w->stats().endpoints[id].breakersOpen.load(std::memory_order_relaxed));
      prometheus::ClientMetric m;
      m.label = {{"endpoint", context_.endpointName(id)}};
      m.gauge.value = total;
      open.metric.push_back(std::move(m));
    }
    out.push_back(std::move(open));
  }
  out.push_back(
      family("keygate_upstream_timeout_closes_total",
             "Upstream connections closed after timeoutsBeforeReconnect timeouts in a row",
             MetricType::Counter, sum(&WorkerStats::upstreamTimeoutCloses)));
  out.push_back(family("keygate_upstream_deferred_sends_total",
                       "Upstream writes held until replies of a deep batch came (deferSendsAbove)",
                       MetricType::Counter, sum(&WorkerStats::deferredSends)));
  out.push_back(family("keygate_upstream_late_replies_total",
                       "Redis replies dropped because keygate had answered at the deadline",
                       MetricType::Counter, sum(&WorkerStats::lateReplies)));
  collectTraffic(out);
  appendKeyspaceFamilies(context_, out);
  appendSketchFamilies(collectSketches(context_, workers_, std::chrono::milliseconds(500)), 10,
                       out);
  out.push_back(family("keygate_client_bytes_received_total", "Bytes read from clients",
                       MetricType::Counter, sum(&WorkerStats::bytesFromClients)));
  out.push_back(family("keygate_client_bytes_sent_total", "Bytes written to clients",
                       MetricType::Counter, sum(&WorkerStats::bytesToClients)));
  return out;
}

}  // namespace keygate::proxy
