#pragma once

// A worker's near cache (issue 8, docs/near-cache.md): Redis replies to reads of keys whose
// pattern has `nearCache:`, kept in keygate's memory and served without a network hop.
//
//   entries by request   (protocol, the request's bytes)  -> Entry: the reply as Redis sent it
//   entries by key       the Redis key                    -> its entries (GET k, HGET k f, ...)
//   per pattern          LRU list (most recent first), insertion list (= expiry order: one TTL
//                        per pattern), bytes and entries within the pattern's limits
//
// Only the owning worker thread calls it. The per-pattern gauges and counters are atomics so the
// scrape thread may read them. No I/O, no clock of its own: callers pass `now`.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/resp/reply_writer.hpp"
#include "proxy/stats.hpp"

namespace keygate::proxy {

class NearCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Counter = WorkerStats::Counter;

  // One pattern's limits on this worker (the registry's, divided by the worker count).
  struct Limits {
    std::chrono::milliseconds ttl{0};
    std::uint64_t maxBytes = 0;
    std::uint64_t maxEntries = 0;
  };

  // Gauges and counters of one pattern on this worker.
  struct PatternStats {
    Counter bytes{0};
    Counter entries{0};
    Counter invalidations{0};  // entries dropped because their key changed
    Counter evictions{0};      // dropped to stay within maxBytes / maxEntries
    Counter expirations{0};    // dropped at the TTL
  };

  // What an entry costs beyond its bytes: the node, two hash-table slots, list links.
  static constexpr std::uint64_t kEntryOverhead = 160;

  explicit NearCache(std::size_t patternIds);
  ~NearCache();
  NearCache(const NearCache&) = delete;
  NearCache& operator=(const NearCache&) = delete;

  // Sets a pattern's limits; entries past the new ones are evicted. ttl 0 disables the pattern
  // (its entries are dropped).
  void configure(std::uint16_t pattern, const Limits& limits);
  bool enabled(std::uint16_t pattern) const {
    return pattern < patterns_.size() && patterns_[pattern].limits.ttl.count() > 0;
  }

  // The reply stored for this request, or null (none, or expired: then it is dropped). A hit
  // becomes the pattern's most recently used entry. Valid until the next non-const call.
  const std::string* find(resp::Protocol proto, std::string_view request, Clock::time_point now);

  // Stores Redis' reply to `request` (a read of `key` under `pattern`). Too big for the
  // pattern's limits: not stored. Replaces an entry for the same request.
  void store(std::uint16_t pattern, resp::Protocol proto, std::string_view key,
             std::string_view request, std::string_view reply, Clock::time_point now);

  // Drops every entry of `key`; returns how many.
  std::size_t invalidate(std::string_view key);
  // Drops everything (counted as invalidations).
  void flush();
  // Drops entries past their TTL (cheap: each pattern's oldest first, stops at a live one).
  void expire(Clock::time_point now);

  bool containsKey(std::string_view key) const;
  std::uint64_t size() const { return entryCount_; }
  const PatternStats& stats(std::uint16_t pattern) const { return *stats_[pattern]; }

 private:
  struct Entry;
  struct List {  // intrusive doubly linked list through Entry's links of one kind
    Entry* head = nullptr;
    Entry* tail = nullptr;
  };
  struct Pattern {
    Limits limits;
    List lru;    // most recently used at head
    List byAge;  // oldest (first to expire) at head
    std::uint64_t bytes = 0;
    std::uint64_t entries = 0;
  };
  // Keys view into the entries themselves (Entry::request, Entry::key).
  using RequestMap = std::unordered_map<std::string_view, Entry*>;

  RequestMap& requests(resp::Protocol proto) {
    return proto == resp::Protocol::kResp3 ? byRequest3_ : byRequest2_;
  }
  // What an entry of these bytes costs against maxBytes.
  static std::uint64_t entryCost(std::string_view request, std::string_view key,
                                 std::string_view reply) {
    return request.size() + key.size() + reply.size() + kEntryOverhead;
  }
  // Drops an entry: erase() from everything, release() from all but the key index.
  void erase(Entry* e);
  void release(Entry* e);
  void expirePattern(std::uint16_t pattern, Clock::time_point now);
  void evictFor(Pattern& p, std::uint16_t pattern, std::uint64_t bytes);
  void publish(std::uint16_t pattern);

  std::vector<Pattern> patterns_;
  std::vector<std::unique_ptr<PatternStats>> stats_;
  RequestMap byRequest2_;
  RequestMap byRequest3_;
  std::unordered_map<std::string_view, Entry*> byKey_;  // the key's first entry
  std::uint64_t entryCount_ = 0;
};

}  // namespace keygate::proxy
