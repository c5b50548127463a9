#include "proxy/read_sharing.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>

#include "proxy/batch_clock.hpp"
#include "proxy/client_session.hpp"
#include "proxy/commands/command_table.hpp"
#include "proxy/resp/reply_reader.hpp"
#include "proxy/worker.hpp"

namespace keygate::proxy {

namespace {

constexpr std::size_t kNoPrefix = ~std::size_t{0};
// Distinct tracking prefixes per worker (tenants x near-cache patterns in practice). Past it,
// keys under new prefixes are forwarded but not cached.
constexpr std::size_t kMaxPrefixes = 10000;
constexpr std::size_t kMaxPrefixLookups = 4 * kMaxPrefixes;
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{2000};
constexpr std::chrono::milliseconds kExpireEvery{1000};
constexpr std::size_t kJoinHeader = 3;  // protocol byte, endpoint index (2 bytes)

// protocol byte, endpoint index (2 bytes), the request's bytes
void setJoinKey(std::string& out, resp::Protocol proto, std::uint16_t endpoint,
                std::string_view request) {
  out.clear();
  out.reserve(kJoinHeader + request.size());
  out.push_back(static_cast<char>(proto));
  out.push_back(static_cast<char>(endpoint & 0xff));
  out.push_back(static_cast<char>(endpoint >> 8));
  out.append(request);
}

std::shared_ptr<spdlog::logger> logger() {
  auto log = spdlog::get("upstream");
  return log ? log : spdlog::default_logger();
}

std::vector<bool> shareableRows() {
  static constexpr std::string_view kNames[] = {"get",        "getrange",
                                                "strlen",     "hget",
                                                "hmget",      "hgetall",
                                                "hkeys",      "hvals",
                                                "hlen",       "hexists",
                                                "hstrlen",    "lrange",
                                                "llen",       "lindex",
                                                "smembers",   "sismember",
                                                "smismember", "scard",
                                                "zrange",     "zrangebyscore",
                                                "zrevrange",  "zrevrangebyscore",
                                                "zscore",     "zmscore",
                                                "zcard",      "zrank",
                                                "zrevrank",   "exists",
                                                "mget",       "type"};
  const auto rows = commands::CommandTable::redis70().all();
  std::vector<bool> out(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i)
    out[i] = std::find(std::begin(kNames), std::end(kNames), rows[i].name) != std::end(kNames);
  return out;
}

}  // namespace

bool isShareableRead(std::size_t commandRow) {
  static const std::vector<bool> rows = shareableRows();
  return commandRow < rows.size() && rows[commandRow];
}

// One tracking connection, to one master node.
struct ReadSharing::Link final : ReplySink {
  Link(ReadSharing& o, ClusterNode n, asio::io_context& io)
      : owner(o), node(std::move(n)), address(node.address()), timer(io) {}
  void onReply(std::uint64_t, std::string_view frame) override { owner.onLinkFrame(*this, frame); }
  void onFailure(std::uint64_t, std::string_view reason) override {
    owner.onLinkFailure(*this, reason);
  }

  ReadSharing& owner;
  ClusterNode node;
  std::string address;
  std::shared_ptr<UpstreamConnection> conn;
  bool armed = false;    // connected; its prefixes are sent as they come
  bool refused = false;  // Redis refused CLIENT TRACKING: not retried before a registry reload
  std::size_t sent = 0;  // prefixes sent (in order of prefixes_)
  std::size_t confirmed = 0;
  std::deque<std::size_t> pending;  // prefixes per CLIENT TRACKING awaiting its reply
  std::chrono::milliseconds backoff{0};
  asio::steady_timer timer;
};

ReadSharing::ReadSharing(Worker& worker)
    : worker_(worker), cache_(kMaxPatternIds), expireTimer_(worker.io()) {}

ReadSharing::~ReadSharing() {
  stop();
}

void ReadSharing::configure(const policies::CompiledRegistry* registry,
                            const std::vector<std::uint16_t>& patternIds, std::size_t workers) {
  flushAll("registry in force changed");
  for (const std::uint16_t id : configured_)
    cache_.configure(id, {});
  configured_.clear();
  active_ = false;
  nearPatterns_ = 0;
  if (registry == nullptr) return;
  workers = std::max<std::size_t>(workers, 1);
  for (std::size_t i = 0; i < registry->patternCount() && i < patternIds.size(); ++i) {
    const auto& rules = registry->rules(i);
    if (rules.coalesce) active_ = true;
    if (!rules.nearCache) continue;
    active_ = true;
    ++nearPatterns_;
    NearCache::Limits limits;
    limits.ttl = rules.nearTtl;
    limits.maxBytes = std::max<std::uint64_t>(rules.nearMaxBytes / workers, 1024);
    limits.maxEntries = std::max<std::uint64_t>(rules.nearMaxEntries / workers, 1);
    cache_.configure(patternIds[i], limits);
    configured_.push_back(patternIds[i]);
  }
  // A refused CLIENT TRACKING is tried again with the new registry.
  for (auto& link : links_) {
    if (link->refused && !stopped_) {
      link->refused = false;
      connectLink(*link);
    }
  }
  if (nearPatterns_ > 0 && !expireArmed_) scheduleExpire();
}

void ReadSharing::useNodes(const std::vector<ClusterNode>& masters) {
  if (stopped_) return;
  std::vector<ClusterNode> wanted;
  if (nearPatterns_ > 0) wanted = masters;
  bool changed = false;
  for (auto it = links_.begin(); it != links_.end();) {
    const bool keep = std::any_of(wanted.begin(), wanted.end(),
                                  [&](const ClusterNode& n) { return n == (*it)->node; });
    if (keep) {
      ++it;
      continue;
    }
    closeLink(**it, "node no longer tracked");
    {
      auto& context = worker_.context();
      std::lock_guard lock(context.trackingMutex);
      auto gauge = context.trackingLinks.find((*it)->address);
      if (gauge != context.trackingLinks.end() && gauge->second == 0) {
        context.trackingLinks.erase(gauge);
      }
    }
    it = links_.erase(it);
    changed = true;
  }
  for (const auto& node : wanted) {
    const bool have =
        std::any_of(links_.begin(), links_.end(), [&](const auto& l) { return l->node == node; });
    if (have) continue;
    links_.push_back(std::make_unique<Link>(*this, node, worker_.io()));
    connectLink(*links_.back());
    changed = true;
  }
  if (changed) ++generation_;
}

void ReadSharing::stop() {
  if (stopped_) return;
  stopped_ = true;
  expireTimer_.cancel();
  for (auto& link : links_)
    closeLink(*link, "keygate is shutting down");
  links_.clear();
}

// ---------------------------------------------------------------------------------------------
// Flights

std::uint64_t ReadSharing::findJoinable(resp::Protocol proto, std::uint16_t endpoint,
                                        std::string_view request) {
  if (joinable_.empty()) return 0;
  setJoinKey(scratch_, proto, endpoint, request);
  auto it = joinable_.find(scratch_);
  return it == joinable_.end() ? 0 : it->second;
}

std::uint64_t ReadSharing::start(const std::shared_ptr<ClientSession>& leader, std::uint64_t seq,
                                 resp::Protocol proto, std::uint16_t endpoint,
                                 std::string_view request, std::string_view key,
                                 std::uint16_t patternId, bool joinable, bool fill) {
  auto flight = std::make_unique<Flight>();
  Flight& f = *flight;
  f.id = nextFlight_++;
  setJoinKey(f.joinKey, proto, endpoint, request);
  f.key.assign(key);
  f.patternId = patternId;
  f.proto = proto;
  f.fill = fill;
  f.generation = generation_;
  f.leader = leader;
  f.leaderSeq = seq;
  if (joinable) {
    f.joinable = joinable_.emplace(f.joinKey, f.id).second;
  }
  byKey_[f.key].push_back(f.id);
  const std::uint64_t id = f.id;
  flights_.emplace(id, std::move(flight));
  return id;
}

void ReadSharing::join(std::uint64_t flight, const std::shared_ptr<ClientSession>& session,
                       std::uint64_t seq) {
  auto it = flights_.find(flight);
  if (it != flights_.end()) it->second->waiters.push_back({session, seq});
}

void ReadSharing::store(std::uint64_t flight, std::string_view reply) {
  auto it = flights_.find(flight);
  if (it == flights_.end()) return;
  const Flight& f = *it->second;
  if (!f.fill || f.stale || f.generation != generation_) return;
  cache_.store(f.patternId, f.proto, f.key, std::string_view(f.joinKey).substr(kJoinHeader), reply,
               BatchClock::now());
}

void ReadSharing::finish(std::uint64_t flight, std::string_view reply) {
  auto it = flights_.find(flight);
  if (it == flights_.end()) return;
  std::vector<Waiter> waiters = std::move(it->second->waiters);
  forget(*it->second);
  if (waiters.empty()) return;
  for (const Waiter& w : waiters) {
    if (auto session = w.session.lock()) session->flightDone(w.seq, reply);
  }
  worker_.scheduleFlushDirty();
}

void ReadSharing::abandon(std::uint64_t flight) {
  for (;;) {
    auto it = flights_.find(flight);
    if (it == flights_.end()) return;
    Flight& f = *it->second;
    if (f.waiters.empty()) {
      forget(f);
      return;
    }
    const Waiter w = f.waiters.front();
    f.waiters.erase(f.waiters.begin());
    auto session = w.session.lock();
    if (!session) continue;
    f.leader = session;
    f.leaderSeq = w.seq;
    // Sends the request (or answers it at once): the flight may be over when this returns.
    if (session->leadFlight(w.seq)) return;
  }
}

void ReadSharing::unjoin(Flight& f) {
  if (!f.joinable) return;
  auto j = joinable_.find(f.joinKey);
  if (j != joinable_.end() && j->second == f.id) joinable_.erase(j);
  f.joinable = false;
}

void ReadSharing::forget(Flight& f) {
  unjoin(f);
  auto k = byKey_.find(f.key);
  if (k != byKey_.end()) {
    auto& ids = k->second;
    ids.erase(std::remove(ids.begin(), ids.end(), f.id), ids.end());
    if (ids.empty()) byKey_.erase(k);
  }
  flights_.erase(f.id);
}

// ---------------------------------------------------------------------------------------------
// Keys

void ReadSharing::keyWritten(std::string_view key) {
  keyChanged(key);
  if (worker_.context().broadcastKeyWrite)
    worker_.context().broadcastKeyWrite(worker_.index(), key);
}

void ReadSharing::keyChanged(std::string_view key) {
  cache_.invalidate(key);
  if (byKey_.empty()) return;
  auto k = byKey_.find(std::string(key));
  if (k == byKey_.end()) return;
  for (const std::uint64_t id : k->second) {
    auto it = flights_.find(id);
    if (it == flights_.end()) continue;
    Flight& f = *it->second;
    f.stale = true;
    unjoin(f);  // readers from now on must not get a reply that may predate the write
  }
}

void ReadSharing::flushAll(const char* why) {
  const bool hadEntries = cache_.size() > 0;
  cache_.flush();
  ++generation_;
  for (auto& [id, f] : flights_) {
    f->stale = true;
    f->joinable = false;
  }
  joinable_.clear();
  if (hadEntries) {
    flushes_.fetch_add(1, std::memory_order_relaxed);
    logger()->info("worker {}: near cache flushed: {}", worker_.index(), why);
  }
}

void ReadSharing::scheduleExpire() {
  expireArmed_ = true;
  expireTimer_.expires_after(kExpireEvery);
  expireTimer_.async_wait([this](const boost::system::error_code& ec) {
    expireArmed_ = false;
    if (ec || stopped_) return;
    cache_.expire(NearCache::Clock::now());
    if (nearPatterns_ > 0) scheduleExpire();
  });
}

// ---------------------------------------------------------------------------------------------
// Tracking

bool ReadSharing::fillAllowed(std::string_view prefix) {
  if (links_.empty()) return false;
  std::size_t index = kNoPrefix;
  auto it = prefixIndex_.find(std::string(prefix));
  if (it != prefixIndex_.end()) {
    index = it->second;
  } else {
    if (prefixIndex_.size() >= kMaxPrefixLookups) return false;
    // Redis refuses overlapping prefixes on one connection: a prefix under one registered
    // already is covered by it; one above a registered prefix cannot be added.
    bool conflict = false;
    for (std::size_t i = 0; i < prefixes_.size() && index == kNoPrefix && !conflict; ++i) {
      if (prefix.starts_with(prefixes_[i])) {
        index = i;
      } else if (std::string_view(prefixes_[i]).starts_with(prefix)) {
        conflict = true;
      }
    }
    if (index == kNoPrefix && !conflict && prefixes_.size() < kMaxPrefixes) {
      index = prefixes_.size();
      prefixes_.emplace_back(prefix);
      for (auto& link : links_) {
        if (link->armed) sendPrefixes(*link);
      }
    }
    if (index == kNoPrefix) {
      logger()->warn("worker {}: near cache: keys under '{}' are not cached ({})", worker_.index(),
                     prefix,
                     conflict ? "it overlaps a tracked prefix" : "too many tracked prefixes");
    }
    prefixIndex_.emplace(std::string(prefix), index);
  }
  if (index == kNoPrefix) return false;
  for (const auto& link : links_) {
    if (!link->armed || link->confirmed <= index) return false;
  }
  return true;
}

void ReadSharing::connectLink(Link& link) {
  if (stopped_ || link.refused) return;
  UpstreamSettings settings = worker_.context().upstream;
  settings.host = link.node.host;
  settings.port = link.node.port;
  settings.readOnly = false;
  settings.labelErrors = worker_.clusterMode();
  settings.timeoutsBeforeReconnect = 0;
  link.conn =
      std::make_shared<UpstreamConnection>(worker_.io(), settings, resp::Protocol::kResp3,
                                           UpstreamConnection::Kind::kDedicated, worker_.stats());
  link.conn->setOwner(&link);
  const std::string address = link.address;
  link.conn->start([this, address](UpstreamConnection& conn, UpstreamConnection::State state) {
    for (auto& l : links_) {
      if (l->address == address && l->conn.get() == &conn) {
        onLinkState(*l, conn, state);
        return;
      }
    }
  });
}

void ReadSharing::closeLink(Link& link, std::string_view reason) {
  link.timer.cancel();
  setLinkArmed(link, false);
  if (link.conn) {
    link.conn->setOwner(nullptr);
    auto conn = std::move(link.conn);
    conn->close(reason);
  }
}

void ReadSharing::onLinkState(Link& link, UpstreamConnection& conn,
                              UpstreamConnection::State state) {
  if (state == UpstreamConnection::State::kReady) {
    link.backoff = std::chrono::milliseconds{0};
    // Whatever changed while this node was not tracked was never reported.
    flushAll("tracking connection established");
    setLinkArmed(link, true);
    if (!prefixes_.empty()) sendPrefixes(link);
    logger()->info("worker {}: near cache: tracking keys on {}", worker_.index(), link.address);
    return;
  }
  if (state != UpstreamConnection::State::kFailed) return;
  setLinkArmed(link, false);
  if (stopped_ || link.refused) return;
  link.backoff =
      link.backoff.count() == 0 ? kFirstBackoff : std::min(link.backoff * 2, kMaxBackoff);
  logger()->warn("worker {}: near cache: tracking connection to {} failed: {}; retrying in {} ms",
                 worker_.index(), link.address, conn.lastError(), link.backoff.count());
  link.timer.expires_after(link.backoff);
  link.timer.async_wait([this, address = link.address](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    for (auto& l : links_) {
      if (l->address == address) connectLink(*l);
    }
  });
}

void ReadSharing::onLinkFailure(Link& link, std::string_view) {
  setLinkArmed(link, false);
}

void ReadSharing::onLinkFrame(Link& link, std::string_view frame) {
  if (frame.empty()) return;
  if (frame[0] == '>') {
    resp::ReplyReader reader(frame);
    const auto header = reader.next();
    const auto kind = reader.next();
    if (!header || !kind || kind->text != "invalidate") return;
    const auto keys = reader.next();
    if (!keys) return;
    if (keys->isNull) {
      flushAll("Redis flushed its keys (FLUSHALL / FLUSHDB)");
      return;
    }
    for (std::int64_t i = 0; i < keys->integer; ++i) {
      const auto key = reader.next();
      if (!key) break;
      keyChanged(key->text);
    }
    return;
  }
  if (link.pending.empty()) return;  // not ours to answer (none expected)
  const std::size_t count = link.pending.front();
  link.pending.pop_front();
  if (frame[0] == '+') {
    link.confirmed += count;
    return;
  }
  // -ERR / -NOPERM: nothing keygate caches under these prefixes could be invalidated.
  std::string_view error = frame.substr(1);
  while (!error.empty() && (error.back() == '\n' || error.back() == '\r'))
    error.remove_suffix(1);
  logger()->error(
      "worker {}: near cache: Redis at {} refused CLIENT TRACKING ({}); near-cache fills are not "
      "stored until the registry is reloaded. Allow the keygate user `client|tracking`.",
      worker_.index(), link.address, error);
  link.refused = true;
  closeLink(link, "CLIENT TRACKING refused");
}

void ReadSharing::sendPrefixes(Link& link) {
  if (!link.conn || link.sent >= prefixes_.size()) return;
  std::vector<std::string_view> args = {"CLIENT", "TRACKING", "on", "BCAST"};
  for (std::size_t i = link.sent; i < prefixes_.size(); ++i) {
    args.push_back("PREFIX");
    args.push_back(prefixes_[i]);
  }
  std::string command;
  resp::appendCommand(command, args);
  link.pending.push_back(prefixes_.size() - link.sent);
  link.sent = prefixes_.size();
  link.conn->sendStream(command);
}

void ReadSharing::setLinkArmed(Link& link, bool armed) {
  if (link.armed == armed) return;
  link.armed = armed;
  link.sent = link.confirmed = 0;
  link.pending.clear();
  ++generation_;
  auto& context = worker_.context();
  std::lock_guard lock(context.trackingMutex);
  auto& count = context.trackingLinks[link.address];
  if (armed) {
    ++count;
  } else if (count > 0) {
    --count;
  }
}

}  // namespace keygate::proxy
