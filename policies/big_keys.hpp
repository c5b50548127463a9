#pragma once

// The largest values written recently to one pattern on one worker: the N biggest writes of
// the last `window` (default 16 over 5 minutes), one entry per key (its biggest write still in
// the window). What /bigkeys shows, merged over the workers.
//
// The request path pays one comparison for almost every write: once N entries are held,
// a write no bigger than the smallest of them is rejected before the key is looked at
// (unless the oldest entry has aged out, which the same check notices). Other writes (while
// fewer than N are held, or one that enters the set) scan the N entries. Memory: N entries with
// keys of at most kMaxTrackedKeyBytes plus a length marker (see hot_keys.hpp); nothing before the
// first write that qualifies. Not thread-safe: one worker owns each instance.

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keygate::policies {

class BigKeys {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kDefaultCapacity = 16;
  static constexpr std::size_t kMaxCapacity = 1024;
  static constexpr Clock::duration kDefaultWindow = std::chrono::minutes(5);

  struct Entry {
    std::string key;  // in clear, truncated as in hot_keys.hpp; PII patterns: stableKeyHash
    std::uint64_t bytes = 0;
    Clock::time_point when{};

    bool operator==(const Entry&) const = default;
  };

  // `capacity` (N) is clamped to [1, kMaxCapacity]. A `window` of zero or less keeps entries
  // until bigger writes push them out.
  explicit BigKeys(std::size_t capacity = kDefaultCapacity,
                   Clock::duration window = kDefaultWindow);

  // A write of `bytes` to `key` at `now`. `key` is copied only when the write enters the set.
  void record(std::string_view key, std::uint64_t bytes, Clock::time_point now) {
    if (full_ && bytes <= minBytes_ && now < oldestExpiry_) return;
    insert(key, bytes, now);
  }

  // The entries still in the window at `now`, biggest first (ties: most recent first, then by
  // key). Does not change the set.
  std::vector<Entry> snapshot(Clock::time_point now) const;

  // Combines several workers' snapshots: one entry per key (its biggest write; the latest of
  // equal ones), sorted as snapshot(), cut to `n`.
  static std::vector<Entry> merge(std::span<const std::vector<Entry>> snapshots, std::size_t n);

  std::size_t size() const { return entries_.size(); }  // may include aged-out entries
  std::size_t capacity() const { return capacity_; }
  Clock::duration window() const { return window_; }
  void clear();

 private:
  void insert(std::string_view key, std::uint64_t bytes, Clock::time_point now);
  void dropExpired(Clock::time_point now);
  void refresh();
  bool expired(const Entry& entry, Clock::time_point now) const;

  std::size_t capacity_;
  Clock::duration window_;
  std::vector<Entry> entries_;
  // Cached for the fast path of record(): whether the set is full, its smallest size and
  // when its oldest entry leaves the window (max() without a window).
  bool full_ = false;
  std::uint64_t minBytes_ = 0;
  Clock::time_point oldestExpiry_ = Clock::time_point::max();
  std::string trackedKey_;  // the tracked form of the key being inserted, reused
};

}  // namespace keygate::policies
