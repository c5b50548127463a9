#include "proxy/worker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>

#include "proxy/client_session.hpp"

namespace keygate::proxy {

namespace {
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{2000};
// Cluster: a dead master is retried (and the topology asked for) at least this often, so a
// promoted replica is found soon after the failover.
constexpr std::chrono::milliseconds kMaxClusterBackoff{500};
constexpr std::chrono::milliseconds kRefreshRequestGap{100};
}  // namespace

Worker::Worker(std::size_t index, ServerContext& context)
    : index_(index),
      context_(context),
      io_(1),
      poller_(ReadinessPoller::of(io_)),
      cluster_(context.config.upstream.mode == config::UpstreamMode::kCluster) {
  poller_.useRing(context.config.ioUring);
  socketCallsBatched_ = poller_.batch().ringActive();
  applyEndpoints();
  if (!cluster_) standalone_ = &nodePool(upstreamNode(), false);
}

ClusterNode Worker::upstreamNode() const {
  ClusterNode node;
  node.host = context_.upstream.host;
  node.port = context_.upstream.port;
  return node;
}

Worker::~Worker() {
  join();
}

void Worker::start() {
  // The RESP2 pool connects now, so readiness reflects Redis before the first client arrives.
  // (Cluster: once the first slot map arrives.)
  if (standalone_ != nullptr) {
    asio::post(io_, [this] {
      const std::string key = standalone_->settings.label();
      for (std::size_t i = 0; i < standalone_->pool(resp::Protocol::kResp2).size(); ++i)
        connectShared(key, resp::Protocol::kResp2, i);
    });
  }
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(io_);
    io_.run();
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::stop() {
  io_.stop();
}

std::string Worker::upstreamVersion() const {
  return upstreamVersion_.empty() ? std::string("7.0.0") : upstreamVersion_;
}

void Worker::adopt(asio::ip::tcp::socket::native_handle_type fd) {
  asio::post(io_, [this, fd] {
    asio::ip::tcp::socket socket(io_);
    boost::system::error_code ec;
    socket.assign(asio::ip::tcp::v4(), fd, ec);
    if (ec) {
      ::close(fd);
      context_.activeClients.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
    const auto id = context_.nextClientId.fetch_add(1, std::memory_order_relaxed);
    auto session = std::make_shared<ClientSession>(*this, std::move(socket), id);
    sessions_.emplace(id, session);
    WorkerStats::add(stats_.connectionsAccepted);
    session->start();
    if (draining_) session->beginDrain();
  });
}

void Worker::sessionClosed(std::uint64_t id) {
  auto it = sessions_.find(id);
  if (it != sessions_.end()) {
    // Released after this turn: the session may be the caller.
    asio::post(io_, [session = std::move(it->second)] {});
    sessions_.erase(it);
    WorkerStats::add(stats_.connectionsClosed);
    context_.activeClients.fetch_sub(1, std::memory_order_relaxed);
  }
}

std::vector<std::shared_ptr<ClientSession>> Worker::liveSessions() const {
  // A copy: beginDrain() and close() remove sessions from the map while we iterate.
  std::vector<std::shared_ptr<ClientSession>> live;
  live.reserve(sessions_.size());
  for (const auto& [id, session] : sessions_)
    live.push_back(session);
  return live;
}

void Worker::beginDrain() {
  asio::post(io_, [this] {
    draining_ = true;
    for (auto& s : liveSessions())
      s->beginDrain();
  });
}

void Worker::closeAll() {
  asio::post(io_, [this] {
    draining_ = true;
    closingAll_ = true;
    for (auto& s : liveSessions())
      s->close();
    deadlines_.clear();
    reads_.stop();
    for (auto& [key, node] : nodes_) {
      for (auto& p : node->byProto) {
        for (auto& slot : p) {
          if (slot.retryTimer) slot.retryTimer->cancel();
          if (slot.conn) slot.conn->close("keygate is shutting down");
        }
      }
    }
  });
}

Worker::NodePool& Worker::nodePool(const ClusterNode& node, bool replica) {
  std::string key = node.address();
  if (replica) key += "/ro";
  auto it = nodes_.find(key);
  if (it != nodes_.end()) return *it->second;
  auto pool = std::make_unique<NodePool>();
  pool->settings = context_.upstream;
  pool->settings.host = node.host;
  pool->settings.port = node.port;
  pool->settings.readOnly = replica;
  pool->settings.labelErrors = cluster_;
  pool->health = &nodeHealth(node.address());
  const std::size_t perProto =
      std::max<std::uint32_t>(1, context_.config.upstream.connectionsPerWorker);
  for (auto& p : pool->byProto)
    p.resize(perProto);
  return *nodes_.emplace(std::move(key), std::move(pool)).first->second;
}

UpstreamConnection& Worker::pooledConnection(NodePool& node, resp::Protocol proto,
                                             std::uint64_t sessionId) {
  auto& p = node.pool(proto);
  const std::size_t slot = p.size() == 1 ? 0 : sessionId % p.size();
  if (!p[slot].conn) {
    connectShared(node.settings.label() + (node.settings.readOnly ? "/ro" : ""), proto, slot);
  }
  return *p[slot].conn;
}

UpstreamConnection& Worker::sharedUpstream(resp::Protocol proto, std::uint64_t sessionId) {
  return pooledConnection(*standalone_, proto, sessionId);
}

UpstreamConnection* Worker::masterUpstream(std::uint16_t slot, resp::Protocol proto,
                                           std::uint64_t sessionId) {
  if (!slotMap_) return nullptr;
  const auto master = slotMap_->masterIndex(slot);
  if (master == SlotMap::kNoNode) return nullptr;
  return &pooledConnection(*masterPools_[master], proto, sessionId);
}

UpstreamConnection* Worker::replicaUpstream(std::uint16_t slot, resp::Protocol proto,
                                            std::uint64_t sessionId) {
  if (!slotMap_) return nullptr;
  const auto master = slotMap_->masterIndex(slot);
  if (master == SlotMap::kNoNode || replicaPools_[master].empty()) return nullptr;
  const auto& replicas = replicaPools_[master];
  // Start at the session's replica; skip ones that are down (their backoff keeps them failed).
  for (std::size_t i = 0; i < replicas.size(); ++i) {
    auto& conn = pooledConnection(*replicas[(sessionId + i) % replicas.size()], proto, sessionId);
    if (!conn.failed()) return &conn;
  }
  return nullptr;
}

UpstreamConnection& Worker::nodeUpstream(const ClusterNode& node, resp::Protocol proto,
                                         std::uint64_t sessionId) {
  return pooledConnection(nodePool(node, false), proto, sessionId);
}

void Worker::connectShared(const std::string& key, resp::Protocol proto, std::size_t slot) {
  auto& node = *nodes_.at(key);
  auto& entry = node.pool(proto)[slot];
  entry.conn = std::make_shared<UpstreamConnection>(io_, node.settings, proto,
                                                    UpstreamConnection::Kind::kShared, stats_);
  entry.conn->setHealth(node.health);
  entry.conn->setBatchHook([this] { scheduleFlushDirty(); });
  entry.conn->start(
      [this, key, proto, slot](UpstreamConnection& conn, UpstreamConnection::State s) {
        onSharedState(key, proto, slot, conn, s);
      });
}

void Worker::onSharedState(const std::string& key, resp::Protocol proto, std::size_t slot,
                           UpstreamConnection& conn, UpstreamConnection::State state) {
  auto it = nodes_.find(key);
  if (it == nodes_.end()) return;  // a pool dropped after a topology change
  auto& entry = it->second->pool(proto)[slot];
  if (entry.conn.get() != &conn) return;  // an older connection
  const bool primary =
      standalone_ != nullptr && it->second.get() == standalone_ && proto == resp::Protocol::kResp2;
  NodeHealth* health = it->second->health;
  if (state == UpstreamConnection::State::kReady) {
    if (health != nullptr) ++health->connections;
    entry.backoff = std::chrono::milliseconds{0};
    if (!conn.serverVersion().empty()) upstreamVersion_ = conn.serverVersion();
    if (primary) upstreamUp_.store(true, std::memory_order_relaxed);
    spdlog::get("upstream")
        ->info("worker {}: connected to {} (RESP{})", index_, key, static_cast<int>(proto));
    return;
  }
  if (state != UpstreamConnection::State::kFailed) return;
  if (primary) upstreamUp_.store(false, std::memory_order_relaxed);
  if (health != nullptr && conn.everReady()) --health->connections;
  if (closingAll_) return;  // our own shutdown, not a failure
  if (health != nullptr) ++health->errors;
  // A new connection object later: requests routed from now on may take another path.
  ++routeEpoch_;
  if (conn.everReady() && entry.backoff.count() == 0 && !draining_) {
    // A working connection dropped (Redis restarted, an idle link was cut, too many timeouts):
    // reconnect at once, so a retried read has somewhere to go. If that fails, back off.
    spdlog::get("upstream")
        ->warn("worker {}: upstream {} failed: {}; reconnecting", index_, key, conn.lastError());
    if (cluster_) requestTopologyRefresh();
    connectShared(key, proto, slot);
    return;
  }
  entry.backoff = entry.backoff.count() == 0
                      ? kFirstBackoff
                      : std::min(entry.backoff * 2, cluster_ ? kMaxClusterBackoff : kMaxBackoff);
  spdlog::get("upstream")
      ->warn("worker {}: upstream {} failed: {}; retrying in {} ms", index_, key, conn.lastError(),
             entry.backoff.count());
  if (cluster_) requestTopologyRefresh();  // a node error may mean a failover
  if (draining_) return;
  // Until the retry, the failed connection stays in place: requests fail fast instead of piling
  // up behind a connect that is likely to fail again.
  if (!entry.retryTimer) entry.retryTimer = std::make_unique<asio::steady_timer>(io_);
  entry.retryTimer->expires_after(entry.backoff);
  entry.retryTimer->async_wait([this, key, proto, slot](const boost::system::error_code& ec) {
    if (ec || draining_ || nodes_.find(key) == nodes_.end()) return;
    connectShared(key, proto, slot);
  });
}

std::shared_ptr<UpstreamConnection> Worker::openDedicated(resp::Protocol proto,
                                                          const ClusterNode* node) {
  UpstreamSettings settings = context_.upstream;
  if (node != nullptr) {
    settings.host = node->host;
    settings.port = node->port;
    settings.labelErrors = true;
  }
  auto conn = std::make_shared<UpstreamConnection>(io_, settings, proto,
                                                   UpstreamConnection::Kind::kDedicated, stats_);
  WorkerStats::add(stats_.dedicatedConnections);
  conn->setHealth(&nodeHealth(settings.label()));
  conn->setBatchHook([this] { flushDirty(); });
  conn->start();
  return conn;
}

void Worker::requestTopologyRefresh() {
  if (!context_.requestTopologyRefresh) return;
  // Requests fail by the thousand while a node is down; the refresher needs to hear it once.
  const auto now = std::chrono::steady_clock::now();
  if (now - lastRefreshRequest_ < kRefreshRequestGap) return;
  lastRefreshRequest_ = now;
  context_.requestTopologyRefresh();
}

void Worker::installSlotMap(std::shared_ptr<const SlotMap> map) {
  asio::post(io_, [this, map = std::move(map)]() mutable { useSlotMap(std::move(map)); });
}

void Worker::noteMoved(std::uint16_t slot, const ClusterNode& node) {
  WorkerStats::add(stats_.clusterMoved);
  requestTopologyRefresh();
  if (slotMap_) {
    const ClusterNode* current = slotMap_->masterFor(slot);
    if (current != nullptr && *current == node) return;  // already followed
    useSlotMap(std::make_shared<const SlotMap>(slotMap_->withSlotMovedTo(slot, node)));
  }
}

void Worker::useSlotMap(std::shared_ptr<const SlotMap> map) {
  if (!map) return;
  const bool first = !slotMap_;
  const bool changed = !slotMap_ || !slotMap_->sameRouting(*map);
  slotMap_ = std::move(map);
  const auto& masters = slotMap_->masters();
  masterPools_.clear();
  replicaPools_.assign(masters.size(), {});
  const bool replicaReads =
      context_.config.upstream.readFrom == config::ReadFrom::kReplicaPreferred;
  for (std::size_t i = 0; i < masters.size(); ++i) {
    masterPools_.push_back(&nodePool(masters[i], false));
    if (replicaReads) {
      for (const auto& r : slotMap_->replicasOf(static_cast<std::uint16_t>(i)))
        replicaPools_[i].push_back(&nodePool(r, true));
    }
  }
  scanOrder_ = slotMap_->mastersBySlot();
  if (changed) ++routeEpoch_;
  upstreamUp_.store(slotMap_->uncoveredSlots() == 0, std::memory_order_relaxed);
  // Masters get their RESP2 connection now, so the first requests do not wait for a connect.
  for (auto* pool : masterPools_) {
    auto& p = pool->pool(resp::Protocol::kResp2);
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (!p[i].conn) connectShared(pool->settings.label(), resp::Protocol::kResp2, i);
    }
  }
  if (!first) dropUnusedPools();
  trackNodes();
}

void Worker::dropUnusedPools() {
  // Nodes the map no longer names (a failed master, a removed node) keep their connections
  // while requests are still in flight on them; the next map change checks again.
  std::vector<const NodePool*> used(masterPools_.begin(), masterPools_.end());
  for (const auto& r : replicaPools_)
    used.insert(used.end(), r.begin(), r.end());
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    NodePool* pool = it->second.get();
    if (std::find(used.begin(), used.end(), pool) != used.end()) {
      ++it;
      continue;
    }
    bool busy = false;
    for (auto& p : pool->byProto) {
      for (auto& slot : p)
        busy = busy || (slot.conn && slot.conn->inflight() > 0);
    }
    if (busy) {
      ++it;
      continue;
    }
    // Out of the map first: closing reports kFailed, which must not look like a node error.
    auto gone = std::move(it->second);
    it = nodes_.erase(it);
    for (auto& p : gone->byProto) {
      for (auto& slot : p) {
        if (slot.retryTimer) slot.retryTimer->cancel();
        if (slot.conn) slot.conn->close("node left the cluster's slot map");
      }
    }
  }
}

void Worker::installRegistry(std::shared_ptr<const policies::CompiledRegistry> registry) {
  asio::post(io_, [this, registry = std::move(registry)]() mutable {
    registry_ = std::move(registry);
    applyEndpoints();
    reads_.configure(registry_.get(), patternIds_, context_.workerCount);
    trackNodes();
  });
}

void Worker::trackNodes() {
  if (standalone_ != nullptr) {
    reads_.useNodes({upstreamNode()});
  } else if (slotMap_) {
    reads_.useNodes(slotMap_->masters());
  }
}

void Worker::postKeyChanged(std::string key) {
  asio::post(io_, [this, key = std::move(key)] { reads_.keyChanged(key); });
}

const policies::EndpointSet& Worker::endpointSet() const {
  return registry_ ? registry_->endpoints() : policies::EndpointSet::builtinOnly();
}

void Worker::applyEndpoints() {
  const auto& set = endpointSet();
  ++endpointGeneration_;
  endpoints_.clear();
  for (const auto& profile : set.all()) {
    auto& slot = endpointsByName_[profile.name];
    if (!slot) {
      slot = std::make_unique<EndpointRuntime>();
      slot->metricId = context_.internEndpoint(profile.name);
    }
    slot->profile = profile;
    context_.endpointBudgetMs[slot->metricId].store(
        static_cast<std::uint32_t>(profile.timeout.count()), std::memory_order_relaxed);
    endpoints_.push_back(slot.get());
  }
  for (auto& [node, health] : health_)
    wireBreakers(*health);
  patternIds_.clear();
  if (registry_) {
    for (std::size_t i = 0; i < registry_->patternCount(); ++i) {
      const auto& entry = *registry_->rules(i).entry;
      const std::uint16_t id = context_.patternNames.intern(entry.pattern);
      const auto& rules = registry_->rules(i);
      sensitive_[id] = entry.containsPII || entry.containsCommerciallySensitiveData;
      distinctWindow_[id] = rules.ttlBound ? std::max<std::chrono::milliseconds>(
                                                 rules.ttlMax, std::chrono::minutes(1))
                                           : std::chrono::milliseconds(0);
      context_.patternMaxCardinality[id].store(entry.maxExpectedCardinality,
                                               std::memory_order_relaxed);
      patternIds_.push_back(id);
    }
  }
}

void Worker::wireBreakers(NodeHealth& health) {
  health.byIndex.clear();
  for (const EndpointRuntime* e : endpoints_) {
    auto& b = health.byName[e->profile.name];
    if (!b) {
      b = std::make_unique<Breaker>();
      b->metricId = e->metricId;
      b->node = health.node;
    }
    b->state.configure(e->profile.breaker);
    health.byIndex.push_back(b.get());
  }
}

NodeHealth& Worker::nodeHealth(const std::string& node) {
  auto& h = health_[node];
  if (!h) {
    h = std::make_unique<NodeHealth>();
    h->node = node;
    wireBreakers(*h);
  }
  return *h;
}

bool Worker::breakerAllows(Breaker& b) {
  if (b.state.closed()) return true;
  return b.state.allow(policies::CircuitBreaker::Clock::now());
}

void Worker::breakerSuccess(Breaker& b) {
  if (b.state.closed()) {
    b.state.onSuccess({});
    return;
  }
  b.state.onSuccess(policies::CircuitBreaker::Clock::now());
  if (b.state.closed()) {
    stats_.endpoints[b.metricId].breakersOpen.fetch_sub(1, std::memory_order_relaxed);
    spdlog::get("upstream")
        ->info("worker {}: circuit breaker for {} closed again ({})", index_, b.node,
               context_.endpointName(b.metricId));
  }
}

void Worker::breakerFailure(Breaker& b) {
  const bool wasClosed = b.state.closed();
  b.state.onFailure(policies::CircuitBreaker::Clock::now());
  if (wasClosed && !b.state.closed()) {
    auto& counters = stats_.endpoints[b.metricId];
    WorkerStats::add(counters.breakerOpens);
    counters.breakersOpen.fetch_add(1, std::memory_order_relaxed);
    spdlog::get("upstream")
        ->warn(
            "worker {}: circuit breaker for {} opened ({}: {}); requests are answered at once "
            "for {} ms",
            index_, b.node, context_.endpointName(b.metricId), b.state.reason(),
            b.state.openFor().count());
  }
}

std::uint64_t Worker::Random::upTo(std::uint64_t bound) {
  if (state_ == 0) {
    state_ =
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) | 1;
  }
  // xorshift64*: plenty for spreading expiries (jitter), cheap, no locks.
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  const std::uint64_t r = state_ * 2685821657736338717ull;
  return bound == UINT64_MAX ? r : r % (bound + 1);
}

void Worker::markDirty(std::shared_ptr<ClientSession> session) {
  dirty_.push_back(std::move(session));
}

void Worker::scheduleFlushDirty() {
  if (!cluster_) {
    flushDirty();
    return;
  }
  // Cluster: one client's pipeline is answered by several nodes, whose reads complete in the
  // same turn of the event loop. Writing after all of them gives each client one write.
  if (flushPosted_) return;
  flushPosted_ = true;
  asio::post(io_, [this] {
    flushPosted_ = false;
    flushDirty();
  });
}

void Worker::deferTurnEnd(std::shared_ptr<ClientSession> session) {
  turnEnd_.push_back(std::move(session));
  if (turnEndPosted_) return;
  turnEndPosted_ = true;
  asio::post(io_, [this] {
    turnEndPosted_ = false;
    std::swap(turnEnd_, turnEndSpare_);
    // Every write first, then every read: the time between a client's reply and our read of its
    // socket is the time its next request has to arrive.
    flushSessions(turnEndSpare_);
    for (auto& s : turnEndSpare_)
      s->resumeReading();
    turnEndSpare_.clear();
  });
}

void Worker::flushSessions(const std::vector<std::shared_ptr<ClientSession>>& sessions) {
  SocketBatch& batch = poller_.batch();
  // Queueing only queues (nothing runs that could run another batch); what cannot be batched
  // (TLS, a handshake) is written after. The list is taken from the member, which keeps its
  // capacity between calls: a session's flushDone() may flush others (a nested call).
  std::vector<std::size_t> unbatched;
  unbatched.swap(unbatched_);
  unbatched.clear();
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    if (!sessions[i]->queueFlush(batch, i)) unbatched.push_back(i);
  }
  if (unbatched.size() < sessions.size()) {
    // `sessions` holds each one until its result is in.
    batch.run([&sessions](std::uint64_t i, int result) { sessions[i]->flushDone(result); });
  }
  for (const std::size_t i : unbatched)
    sessions[i]->flushOutput();
  if (unbatched_.capacity() < unbatched.capacity()) unbatched_.swap(unbatched);
}

void Worker::flushDirty() {
  if (dirty_.empty()) return;
  auto batch = std::move(dirty_);
  dirty_.clear();
  if (cluster_) {
    std::erase_if(batch, [](const auto& s) { return s->holdPartialBatch(); });
  }
  flushSessions(batch);
  if (dirty_.empty()) {
    batch.clear();
    dirty_.swap(batch);  // keep the capacity
  }
}

void Worker::recordKey(std::uint16_t patternId, std::string_view key, bool write,
                       std::uint64_t valueBytes, std::chrono::steady_clock::time_point now) {
  auto& owned = sketches_[patternId].sketches;
  if (!owned) [[unlikely]]
    owned = std::make_unique<KeySketches>();
  KeySketches& sk = *owned;
  // The key is hashed once, for both sketches, and only when one of them needs it: a read
  // that is not sampled costs a decrement.
  std::uint64_t hash = 0;
  bool hashed = false;
  if (const std::uint64_t weight = sk.hot.sample(now)) {
    hash = policies::keyHash64(key);
    hashed = true;
    sk.hot.record(key, hash, weight, now);
  }
  if (!write) return;
  if (!hashed) hash = policies::keyHash64(key);
  if (sk.distinct.empty() && sk.previous.empty()) sk.windowStart = now;  // the first write
  const auto window = distinctWindow_[patternId];
  if (window.count() > 0 && now - sk.windowStart >= window) {
    // A new window: the previous one's keys have expired by now or will within one TTL. The
    // registers of the window before that are reused (no allocation).
    std::swap(sk.previous, sk.distinct);
    sk.distinct.reset();
    sk.windowStart = now;
  }
  sk.distinct.addHash(hash);
  if (valueBytes > 0) sk.big.record(key, valueBytes, now);
}

std::future<SketchSnapshot> Worker::snapshotSketches() {
  auto promise = std::make_shared<std::promise<SketchSnapshot>>();
  auto future = promise->get_future();
  asio::post(io_, [this, promise] {
    SketchSnapshot snap;
    snap.registry = registry_;
    snap.takenAt = std::chrono::steady_clock::now();
    for (std::size_t id = 0; id < sketches_.size(); ++id) {
      if (!sketches_[id].sketches) continue;
      const KeySketches& sk = *sketches_[id].sketches;
      SketchSnapshot::Pattern p;
      p.id = static_cast<std::uint16_t>(id);
      p.sensitive = sensitive_[id];
      p.hot = sk.hot.snapshot(sk.hot.capacity(), snap.takenAt);
      for (const auto& k : p.hot) {
        if (reads_.cache().containsKey(k.key)) p.nearCached.push_back(k.key);
      }
      p.big = sk.big.snapshot(snap.takenAt);
      if (!sk.distinct.empty() || !sk.previous.empty()) {
        p.distinct = sk.distinct;
        p.distinct.merge(sk.previous);
        p.hasDistinct = true;
      }
      snap.patterns.push_back(std::move(p));
    }
    for (const auto& [address, health] : health_)
      snap.nodes.push_back({address, health->connections, health->errors});
    promise->set_value(std::move(snap));
  });
  return future;
}

}  // namespace keygate::proxy
