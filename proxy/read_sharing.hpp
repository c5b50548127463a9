#pragma once

// Reads that do not each need their own trip to Redis (issue 8, docs/near-cache.md), on one
// worker thread:
//
//   coalescing  identical reads in flight at the same time (same protocol, endpoint profile and
//               request bytes) share one upstream request: a Flight. The first client's request
//               goes to Redis; the others wait on the flight and get a copy of its reply.
//   near cache  replies to reads of `nearCache:` patterns kept in memory (NearCache), filled by
//               flights, dropped when Redis says the key changed.
//   tracking    one RESP3 connection per master node with `CLIENT TRACKING on BCAST PREFIX p`
//               for every prefix a cached key needs (policies::trackingPrefix): Redis pushes
//               `invalidate [keys]` after any write under those prefixes, from any client.
//
// A fill is stored only when (1) its prefix was confirmed by every master's tracking connection
// when it was sent, (2) no invalidation or write for its key arrived while it was in flight, and
// (3) no tracking connection was lost or (re)established meanwhile (`generation_`). A tracking
// connection that comes up (again) flushes the worker's near cache: what changed while it was
// down was never reported. Entries already stored are served until their TTL even while Redis
// is unreachable: that is the staleness the pattern's `nearCache.ttl` allows.

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policies/registry_policy.hpp"
#include "proxy/near_cache.hpp"
#include "proxy/slot_map.hpp"
#include "proxy/upstream_connection.hpp"

namespace keygate::proxy {

class ClientSession;
class Worker;

// Whether a command's reply depends only on its key's value and arguments (never on time or
// chance), so one reply may answer identical requests: GET, HGETALL, LRANGE, ... By command
// table row.
bool isShareableRead(std::size_t commandRow);

class ReadSharing {
 public:
  explicit ReadSharing(Worker& worker);
  ~ReadSharing();
  ReadSharing(const ReadSharing&) = delete;
  ReadSharing& operator=(const ReadSharing&) = delete;

  // The registry in force (null: none), with its patterns' metric ids. Flushes the near cache.
  void configure(const policies::CompiledRegistry* registry,
                 const std::vector<std::uint16_t>& patternIds, std::size_t workers);
  // Some pattern has coalesce or nearCache: requests need a look here.
  bool active() const { return active_; }
  bool nearCacheUsed() const { return nearPatterns_ > 0; }

  // The master nodes to track (standalone: the one upstream).
  void useNodes(const std::vector<ClusterNode>& masters);
  void stop();

  NearCache& cache() { return cache_; }
  const NearCache& cache() const { return cache_; }

  // --- flights
  struct Waiter {
    std::weak_ptr<ClientSession> session;
    std::uint64_t seq = 0;
  };
  struct Flight {
    std::uint64_t id = 0;
    std::string joinKey;    // protocol byte, endpoint index (2 bytes), the request's bytes
    bool joinable = false;  // in the joinable index: other readers may join
    std::string key;        // the Redis key read
    std::uint16_t patternId = 0;
    resp::Protocol proto = resp::Protocol::kResp2;
    bool fill = false;   // store Redis' reply in the near cache
    bool stale = false;  // the key changed while in flight: do not store
    std::uint64_t generation = 0;
    std::weak_ptr<ClientSession> leader;
    std::uint64_t leaderSeq = 0;
    std::vector<Waiter> waiters;
  };

  // The joinable flight for this request, or 0.
  std::uint64_t findJoinable(resp::Protocol proto, std::uint16_t endpoint,
                             std::string_view request);
  // A flight led by `leader`'s request `seq`. `joinable`: others may join; `fill`: store the
  // reply (the caller checked fillAllowed()).
  std::uint64_t start(const std::shared_ptr<ClientSession>& leader, std::uint64_t seq,
                      resp::Protocol proto, std::uint16_t endpoint, std::string_view request,
                      std::string_view key, std::uint16_t patternId, bool joinable, bool fill);
  void join(std::uint64_t flight, const std::shared_ptr<ClientSession>& session, std::uint64_t seq);
  // Redis answered the flight's request with a value (not an error, not "absent"): store it
  // when the flight may fill.
  void store(std::uint64_t flight, std::string_view reply);
  // The leader's request was answered (by Redis or as its endpoint profile says on failure):
  // every waiter gets the same bytes; the flight ends.
  void finish(std::uint64_t flight, std::string_view reply);
  // The leader's client went away: a waiter still waiting sends the request itself.
  void abandon(std::uint64_t flight);

  // --- keys
  // A write to `key` passed through keygate on this worker: drops its entries here and, posted,
  // on the other workers.
  void keyWritten(std::string_view key);
  // Drops `key`'s entries and keeps flights in the air from storing or being joined.
  void keyChanged(std::string_view key);

  // Registers `prefix` for tracking (once) and says whether a fill under it may be stored now.
  bool fillAllowed(std::string_view prefix);

  // Counters for the scrape (any thread).
  std::uint64_t flushes() const { return flushes_.load(std::memory_order_relaxed); }

 private:
  struct Link;
  friend struct Link;

  void flushAll(const char* why);
  void connectLink(Link& link);
  void closeLink(Link& link, std::string_view reason);
  void scheduleExpire();
  void onLinkState(Link& link, UpstreamConnection& conn, UpstreamConnection::State state);
  void onLinkFrame(Link& link, std::string_view frame);
  void onLinkFailure(Link& link, std::string_view reason);
  void sendPrefixes(Link& link);
  void setLinkArmed(Link& link, bool armed);
  void unjoin(Flight& flight);  // out of the joinable index
  void forget(Flight& flight);

  Worker& worker_;
  NearCache cache_;
  std::vector<std::uint16_t> configured_;  // pattern ids with near-cache limits
  asio::steady_timer expireTimer_;
  bool expireArmed_ = false;
  bool active_ = false;
  std::size_t nearPatterns_ = 0;

  std::uint64_t nextFlight_ = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<Flight>> flights_;
  std::unordered_map<std::string_view, std::uint64_t> joinable_;  // views Flight::joinKey
  std::unordered_map<std::string, std::vector<std::uint64_t>> byKey_;
  std::string scratch_;

  // Tracking: prefixes in registration order (a link has confirmed a prefix when its count of
  // confirmed prefixes is past the prefix's index).
  std::vector<std::string> prefixes_;
  std::unordered_map<std::string, std::size_t> prefixIndex_;  // kNoPrefix: cannot be tracked
  std::vector<std::unique_ptr<Link>> links_;
  std::uint64_t generation_ = 1;
  bool stopped_ = false;
  std::atomic<std::uint64_t> flushes_{0};
};

}  // namespace keygate::proxy
