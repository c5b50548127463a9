#pragma once

// A worker is one thread running one io_context. Client sessions live on exactly one worker for
// their whole life; each worker has its own multiplexed upstream connections, so nothing on the
// request path is shared between threads or locked.

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "policies/acl.hpp"
#include "policies/big_keys.hpp"
#include "policies/hot_keys.hpp"
#include "policies/hyperloglog.hpp"
#include "policies/registry_policy.hpp"
#include "proxy/deadline_queue.hpp"
#include "proxy/node_health.hpp"
#include "proxy/read_sharing.hpp"
#include "proxy/readiness_poller.hpp"
#include "proxy/resp/limits.hpp"
#include "proxy/resp/reply_writer.hpp"
#include "proxy/slot_map.hpp"
#include "proxy/stats.hpp"
#include "proxy/traffic_stats.hpp"
#include "proxy/upstream_connection.hpp"

namespace keygate::proxy {

class ClientSession;

// State shared by all workers; everything mutable here is atomic.
struct ServerContext {
  config::Config config;
  // Downstream ACL users (config.acl); null: clients are not authenticated by keygate (AUTH
  // passes through to Redis).
  std::shared_ptr<const policies::Acl> acl;
  // Listener TLS (config.tls); null: plain TCP from clients.
  std::shared_ptr<asio::ssl::context> listenerTls;
  UpstreamSettings upstream;
  resp::Limits limits;
  std::chrono::steady_clock::time_point startedAt = std::chrono::steady_clock::now();
  std::atomic<std::uint64_t> nextClientId{1};
  std::atomic<std::uint32_t> activeClients{0};
  std::atomic<std::uint64_t> rejectedMaxClients{0};
  std::atomic<bool> draining{false};

  // Cluster mode. The topology refresher (main thread) sets this before the workers start;
  // workers call it from their threads to ask for an early slot-map fetch (it only posts).
  std::function<void()> requestTopologyRefresh;
  std::atomic<std::uint64_t> topologyRefreshes{0};
  std::atomic<std::uint64_t> topologyRefreshFailures{0};
  std::atomic<std::uint64_t> topologyChanges{0};
  std::atomic<bool> slotMapLoaded{false};

  // Key registry (config.registryPath). The watcher sets reloadRegistry before the admin
  // endpoint starts; POST /reload calls it on the main thread.
  std::function<std::string()> reloadRegistry;
  std::atomic<std::uint64_t> registryReloads{0};
  std::atomic<std::uint64_t> registryReloadFailures{0};
  std::atomic<std::size_t> registryPatterns{0};

  // Metric label ids (proxy/traffic_stats.hpp): endpoint profile names, and pattern texts
  // (id 0 is "(unregistered)").
  LabelTable endpointNames{WorkerStats::kMaxEndpoints, "other"};
  LabelTable patternNames{kMaxPatternIds, "(other)"};
  std::uint16_t internEndpoint(const std::string& name) { return endpointNames.intern(name); }
  std::size_t endpointCount() const { return endpointNames.count(); }
  const std::string& endpointName(std::size_t id) const { return endpointNames.name(id); }

  // Per label id, from the registry in force (gauges next to the traffic counters).
  std::array<std::atomic<std::uint32_t>, WorkerStats::kMaxEndpoints> endpointBudgetMs{};
  std::vector<std::atomic<std::uint64_t>> patternMaxCardinality =
      std::vector<std::atomic<std::uint64_t>>(kMaxPatternIds);

  // The registry in force: version and content hash (keygate_registry_info).
  void setRegistryInfo(std::uint32_t version, std::string hash) {
    std::lock_guard lock(registryInfoMutex_);
    registryVersion_ = version;
    registryHash_ = std::move(hash);
  }
  std::pair<std::uint32_t, std::string> registryInfo() const {
    std::lock_guard lock(registryInfoMutex_);
    return {registryVersion_, registryHash_};
  }

  // Keyspace notifications (proxy/keyspace_events.hpp): evictions and expiries Redis reported,
  // by pattern id, and whether each node has notify-keyspace-events on (by "host:port").
  std::vector<std::atomic<std::uint64_t>> patternEvictions =
      std::vector<std::atomic<std::uint64_t>>(kMaxPatternIds);
  std::vector<std::atomic<std::uint64_t>> patternExpirations =
      std::vector<std::atomic<std::uint64_t>>(kMaxPatternIds);
  mutable std::mutex keyspaceMutex;
  std::map<std::string, bool> keyspaceNotifications;  // guarded by keyspaceMutex

  // Near cache (proxy/read_sharing.hpp). The number of workers (limits are split among them);
  // a write through one worker drops the key's entries on the others (set by the Server);
  // per node ("host:port"), how many workers' tracking connections are up.
  std::size_t workerCount = 1;
  std::function<void(std::size_t fromWorker, std::string_view key)> broadcastKeyWrite;
  mutable std::mutex trackingMutex;
  std::map<std::string, std::uint32_t> trackingLinks;  // guarded by trackingMutex

  ServerContext() { patternNames.intern("(unregistered)"); }

 private:
  mutable std::mutex registryInfoMutex_;
  std::uint32_t registryVersion_ = 0;
  std::string registryHash_;
};

// An endpoint profile as a worker applies it. Kept by name and never freed while the worker
// runs, so requests in flight across a registry reload keep a valid pointer (they see the new
// settings, which is what a reload means).
struct EndpointRuntime {
  policies::Endpoint profile;
  std::uint16_t metricId = 0;
};

// Per pattern, on one worker: the hottest keys, distinct keys written, the biggest values
// written. Created on a pattern's first request (one allocation, the sketches' own memory on
// their first use); only the owning worker touches them.
struct KeySketches {
  policies::HotKeys hot;  // fed by HotKeys::sample(): 1 in up to 64 requests under load
  // Distinct keys written in the current and the previous window (the pattern's ttl.max, at
  // least a minute; no TTL: since start): their union approximates the keys alive now. Every
  // write is added (one hash per request, shared with the hot keys).
  policies::HyperLogLog distinct;
  policies::HyperLogLog previous;
  std::chrono::steady_clock::time_point windowStart{};
  policies::BigKeys big;
};
struct PatternSketches {
  std::unique_ptr<KeySketches> sketches;  // null until the pattern's first tracked request
};

// A copy of a worker's sketches, for /hotkeys, /bigkeys and the scrape (taken on the worker).
struct SketchSnapshot {
  struct Pattern {
    std::uint16_t id = 0;
    bool sensitive = false;  // containsPII or containsCommerciallySensitiveData
    std::vector<policies::HotKey> hot;
    std::vector<policies::BigKeys::Entry> big;
    policies::HyperLogLog distinct;
    bool hasDistinct = false;
    std::vector<std::string> nearCached;  // hot keys in this worker's near cache
  };
  std::vector<Pattern> patterns;
  struct Node {
    std::string address;
    std::int64_t connections = 0;
    std::uint64_t errors = 0;
  };
  std::vector<Node> nodes;
  std::shared_ptr<const policies::CompiledRegistry> registry;
  std::chrono::steady_clock::time_point takenAt{};
};

class Worker {
 public:
  Worker(std::size_t index, ServerContext& context);
  ~Worker();

  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  void join();
  // Thread-safe: stops the io_context (after drain or at the deadline).
  void stop();

  // Thread-safe: takes ownership of an accepted connection's file descriptor.
  void adopt(asio::ip::tcp::socket::native_handle_type fd);
  // Thread-safe: stop reading from clients, finish what is in flight, then close.
  void beginDrain();
  // Thread-safe: close every client and upstream connection now.
  void closeAll();

  asio::io_context& io() { return io_; }
  ServerContext& context() { return context_; }
  const resp::Limits& limits() const { return context_.limits; }
  const config::LimitsConfig& clientLimits() const { return context_.config.limits; }
  WorkerStats& stats() { return stats_; }
  const WorkerStats& stats() const { return stats_; }
  TrafficStats& traffic() { return traffic_; }
  const TrafficStats& traffic() const { return traffic_; }
  // The metric id of the registry's pattern `index` (-1: none, "(unregistered)").
  std::uint16_t patternMetricId(int index) const {
    return index >= 0 && static_cast<std::size_t>(index) < patternIds_.size()
               ? patternIds_[static_cast<std::size_t>(index)]
               : kUnregisteredPattern;
  }
  std::size_t index() const { return index_; }
  bool upstreamUp() const { return upstreamUp_.load(std::memory_order_relaxed); }
  std::string upstreamVersion() const;

  bool clusterMode() const { return cluster_; }

  // Standalone: the shared connection a session with `sessionId` uses for `proto`. It may be
  // failed (the caller then answers UNAVAILABLE at once) or still connecting (requests queue
  // behind the handshake).
  UpstreamConnection& sharedUpstream(resp::Protocol proto, std::uint64_t sessionId);
  // Cluster: the same for the master of `slot` (nullptr: no slot map yet, or slot not served),
  // for one of its replicas (nullptr: none, or none usable), and for any node by address.
  UpstreamConnection* masterUpstream(std::uint16_t slot, resp::Protocol proto,
                                     std::uint64_t sessionId);
  UpstreamConnection* replicaUpstream(std::uint16_t slot, resp::Protocol proto,
                                      std::uint64_t sessionId);
  UpstreamConnection& nodeUpstream(const ClusterNode& node, resp::Protocol proto,
                                   std::uint64_t sessionId);
  // A new connection of its own for one session; `node` null: the standalone upstream.
  std::shared_ptr<UpstreamConnection> openDedicated(resp::Protocol proto,
                                                    const ClusterNode* node = nullptr);

  // Cluster: this worker's slot map (null until the first fetch). Changes only between
  // requests, on this thread.
  const SlotMap* slotMap() const { return slotMap_.get(); }
  // Masters in SCAN order (by the lowest slot each serves, which survives failovers).
  const std::vector<std::uint16_t>& scanOrder() const { return scanOrder_; }
  // Bumped whenever a request for some slot may now go to another connection than before: a
  // client with requests in flight from before waits for them before sending more.
  std::uint64_t routeEpoch() const { return routeEpoch_; }
  // Thread-safe: installs a slot map fetched by the refresher.
  void installSlotMap(std::shared_ptr<const SlotMap> map);
  // A MOVED reply: `slot` is served by `node` now (this worker's map follows at once; a full
  // refresh is asked for).
  void noteMoved(std::uint16_t slot, const ClusterNode& node);
  void requestTopologyRefresh();

  // The key registry in force on this worker (null: none configured). Swapped between
  // requests, on this thread, when a reload publishes a new one.
  const policies::CompiledRegistry* registry() const { return registry_.get(); }
  // Thread-safe.
  void installRegistry(std::shared_ptr<const policies::CompiledRegistry> registry);
  policies::RandomSource& random() { return random_; }

  // Endpoint profiles in force, by index in the registry's EndpointSet (without a registry:
  // the built-in default only).
  const policies::EndpointSet& endpointSet() const;
  EndpointRuntime& endpoint(std::size_t index) { return *endpoints_[index]; }
  // Bumped whenever the endpoint set changes (a registry reload).
  std::uint64_t endpointGeneration() const { return endpointGeneration_; }
  // The breakers towards a node ("host:port"), created on first use.
  NodeHealth& nodeHealth(const std::string& node);
  DeadlineQueue& deadlines() { return deadlines_; }
  // Hot keys, cardinality and big values of a request's first key (request path).
  void recordKey(std::uint16_t patternId, std::string_view key, bool write,
                 std::uint64_t valueBytes, std::chrono::steady_clock::time_point now);
  // Thread-safe: a copy of this worker's sketches, taken on its thread.
  std::future<SketchSnapshot> snapshotSketches();
  // Breaker bookkeeping that keeps the per-endpoint metrics right.
  bool breakerAllows(Breaker& b);
  void breakerSuccess(Breaker& b);
  void breakerFailure(Breaker& b);

  // Sessions with replies appended during an upstream read are written once the read's batch
  // has been dispatched, so a pipelined batch leaves in one write per client.
  void markDirty(std::shared_ptr<ClientSession> session);
  void flushDirty();
  void scheduleFlushDirty();
  // A session that answered requests itself (near-cache hits, PING, ...): its replies are
  // written at the end of this event-loop turn, together with every other such session's, and
  // it reads again only after all of them are written, as redis-server does in its beforeSleep.
  // The client then gets several replies per wake-up, and the read after a reply more often
  // finds the next request instead of an empty socket.
  void deferTurnEnd(std::shared_ptr<ClientSession> session);
  // Whether this worker's socket calls went through io_uring when it started (SocketBatch).
  bool socketCallsBatched() const { return socketCallsBatched_; }
  // Writes what each of `sessions` has ready, all of their sends in one batch (SocketBatch).
  void flushSessions(const std::vector<std::shared_ptr<ClientSession>>& sessions);

  void sessionClosed(std::uint64_t id);

  // Coalescing and the near cache on this worker.
  ReadSharing& reads() { return reads_; }
  const ReadSharing& reads() const { return reads_; }
  // Thread-safe: a write through another worker changed `key`.
  void postKeyChanged(std::string key);

 private:
  struct SharedSlot {
    std::shared_ptr<UpstreamConnection> conn;
    std::chrono::milliseconds backoff{0};
    std::unique_ptr<asio::steady_timer> retryTimer;
  };
  // The shared connections to one Redis node: per protocol, connectionsPerWorker each.
  struct NodePool {
    UpstreamSettings settings;
    NodeHealth* health = nullptr;
    std::array<std::vector<SharedSlot>, 2> byProto;
    std::vector<SharedSlot>& pool(resp::Protocol proto) {
      return byProto[proto == resp::Protocol::kResp3 ? 1 : 0];
    }
  };

  std::vector<std::shared_ptr<ClientSession>> liveSessions() const;
  NodePool& nodePool(const ClusterNode& node, bool replica);
  UpstreamConnection& pooledConnection(NodePool& node, resp::Protocol proto,
                                       std::uint64_t sessionId);
  void connectShared(const std::string& key, resp::Protocol proto, std::size_t slot);
  void onSharedState(const std::string& key, resp::Protocol proto, std::size_t slot,
                     UpstreamConnection& conn, UpstreamConnection::State state);
  void useSlotMap(std::shared_ptr<const SlotMap> map);
  void dropUnusedPools();
  void applyEndpoints();
  ClusterNode upstreamNode() const;  // standalone: the configured upstream
  void trackNodes();                 // the near cache's tracking connections follow the masters
  void wireBreakers(NodeHealth& health);

  std::size_t index_;
  ServerContext& context_;
  asio::io_context io_;
  ReadinessPoller& poller_;  // io_'s (an Asio service: looked up once, not per flush)
  std::thread thread_;
  WorkerStats stats_;
  const bool cluster_;
  // Node pools by "host:port" (replicas: "host:port/ro"). Standalone: one, `standalone_`.
  std::unordered_map<std::string, std::unique_ptr<NodePool>> nodes_;
  NodePool* standalone_ = nullptr;
  std::shared_ptr<const SlotMap> slotMap_;
  std::vector<NodePool*> masterPools_;                // by SlotMap master index
  std::vector<std::vector<NodePool*>> replicaPools_;  // by SlotMap master index
  std::vector<std::uint16_t> scanOrder_;
  std::uint64_t routeEpoch_ = 0;
  // Owns the sessions: one lives until it closes itself (ClientSession::close), even while it
  // only waits for a reply and has no socket operation pending.
  std::unordered_map<std::uint64_t, std::shared_ptr<ClientSession>> sessions_;
  std::vector<std::shared_ptr<ClientSession>> dirty_;
  bool flushPosted_ = false;
  std::vector<std::shared_ptr<ClientSession>> turnEnd_;
  std::vector<std::shared_ptr<ClientSession>> turnEndSpare_;
  bool turnEndPosted_ = false;
  bool socketCallsBatched_ = false;
  std::vector<std::size_t> unbatched_;  // flushSessions(): sessions written without the batch
  std::shared_ptr<const policies::CompiledRegistry> registry_;
  std::unordered_map<std::string, std::unique_ptr<EndpointRuntime>> endpointsByName_;
  std::vector<EndpointRuntime*> endpoints_;
  std::uint64_t endpointGeneration_ = 0;
  std::vector<std::uint16_t> patternIds_;  // registry pattern index -> metric id
  std::vector<PatternSketches> sketches_ = std::vector<PatternSketches>(kMaxPatternIds);
  // By pattern id, from the registry in force: keys shown hashed; the cardinality window.
  std::vector<bool> sensitive_ = std::vector<bool>(kMaxPatternIds);
  std::vector<std::chrono::milliseconds> distinctWindow_ =
      std::vector<std::chrono::milliseconds>(kMaxPatternIds);
  TrafficStats traffic_{commands::CommandTable::redis70().all().size()};
  std::unordered_map<std::string, std::unique_ptr<NodeHealth>> health_;
  DeadlineQueue deadlines_{io_};
  class Random final : public policies::RandomSource {
   public:
    std::uint64_t upTo(std::uint64_t bound) override;

   private:
    std::uint64_t state_ = 0;
  };
  Random random_;
  std::chrono::steady_clock::time_point lastRefreshRequest_{};
  std::atomic<bool> upstreamUp_{false};
  std::string upstreamVersion_;
  bool draining_ = false;
  bool closingAll_ = false;
  ReadSharing reads_{*this};  // last: its connections use the members above
};

}  // namespace keygate::proxy
