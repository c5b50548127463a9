#pragma once

// Per-pattern and per-command traffic counters of one worker thread (issue 6, README's metrics
// reference). Only the owning worker writes (relaxed, uncontended); the admin thread reads
// them at scrape time and sums across workers. Label sets are bounded: patterns by the
// registry (ids interned in ServerContext, never reused), commands by the command table.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>

#include "proxy/stats.hpp"

namespace keygate::proxy {

// A Prometheus histogram's buckets, kept non-cumulative (one increment per observation); the
// collector accumulates them.
template <std::size_t N>
struct Histogram {
  std::array<WorkerStats::Counter, N + 1> buckets{};  // the last one is +Inf
  WorkerStats::Counter count{0};
  WorkerStats::Counter sum{0};  // in the unit of `bounds` (microseconds, bytes)

  void observe(std::span<const std::uint64_t, N> bounds, std::uint64_t value) {
    std::size_t i = 0;
    while (i < N && value > bounds[i])
      ++i;
    WorkerStats::add(buckets[i]);
    WorkerStats::add(count);
    WorkerStats::add(sum, value);
  }
};

// Request durations, microseconds: 100us .. 2.5s. The bounds include the budgets endpoint
// profiles commonly use (10, 20, 30, 50, 80, 100, 200, 300, 500 ms, 1 s), so a dashboard can
// read "slower than the budget" off the bucket whose `le` is the budget.
inline constexpr std::array<std::uint64_t, 18> kDurationBoundsUs = {
    100,   250,   500,    1000,   2500,   5000,   10000,   20000,   30000,
    50000, 80000, 100000, 200000, 300000, 500000, 1000000, 2500000, 5000000};
// Value sizes, bytes: 64B .. 16MiB.
inline constexpr std::array<std::uint64_t, 10> kValueBounds = {
    64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216};

using DurationHistogram = Histogram<kDurationBoundsUs.size()>;
using ValueHistogram = Histogram<kValueBounds.size()>;

inline void observeDuration(DurationHistogram& h, std::chrono::steady_clock::duration d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  h.observe(kDurationBoundsUs, us > 0 ? static_cast<std::uint64_t>(us) : 0);
}

struct PatternCounters {
  using Counter = WorkerStats::Counter;
  Counter requests{0};  // requests whose first key matched the pattern
  Counter hits{0};      // read replies with a value
  Counter misses{0};    // read replies meaning "absent" (nil, empty, 0), fail-open ones included
  Counter writes{0};
  Counter ttlInjected{0};
  Counter ttlClamped{0};
  Counter requestBytes{0};
  Counter replyBytes{0};
  Counter nearHits{0};    // answered from the near cache
  Counter nearMisses{0};  // near-cache lookups that went to Redis
  Counter coalesced{0};   // answered by another client's identical request in flight
  std::array<Counter, WorkerStats::kRegistryReasons> rejects{};
  DurationHistogram duration;
  ValueHistogram valueBytes;
};

struct CommandCounters {
  WorkerStats::Counter requests{0};
  DurationHistogram duration;
};

// Pattern metric ids: 0 is "(unregistered)" (no key, or a key no pattern matched); the last
// one collects patterns past the limit as "(other)".
inline constexpr std::size_t kMaxPatternIds = 2048;
inline constexpr std::uint16_t kUnregisteredPattern = 0;

}  // namespace keygate::proxy

#include <mutex>
#include <string>
#include <vector>

namespace keygate::proxy {

// Metric label values interned to small ids (endpoint names, pattern texts): an id keeps its
// meaning for the process' life, so per-worker counter arrays can be indexed by it and summed
// at scrape time. Past `capacity` names, new ones share the last id, labelled `overflow`.
class LabelTable {
 public:
  LabelTable(std::size_t capacity, std::string overflow)
      : names_(capacity), overflow_(std::move(overflow)) {}

  // Thread-safe; takes a lock (registry loads only, never per request).
  std::uint16_t intern(const std::string& name) {
    std::lock_guard lock(mutex_);
    const std::size_t n = count_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) {
      if (names_[i] == name) return static_cast<std::uint16_t>(i);
    }
    if (n == names_.size()) return static_cast<std::uint16_t>(n - 1);
    names_[n] = n + 1 == names_.size() ? overflow_ : name;
    count_.store(n + 1, std::memory_order_release);
    return static_cast<std::uint16_t>(n);
  }
  // Ids below count() are valid and their names never change.
  std::size_t count() const { return count_.load(std::memory_order_acquire); }
  const std::string& name(std::size_t id) const { return names_[id]; }

 private:
  std::mutex mutex_;
  std::vector<std::string> names_;  // sized once: elements never move
  std::string overflow_;
  std::atomic<std::size_t> count_{0};
};

// One worker's traffic counters.
struct TrafficStats {
  TrafficStats(std::size_t commandRows)
      : patterns(kMaxPatternIds), commands(commandRows), endpoints(WorkerStats::kMaxEndpoints) {}
  std::vector<PatternCounters> patterns;     // by pattern id
  std::vector<CommandCounters> commands;     // by CommandTable::all() index
  std::vector<DurationHistogram> endpoints;  // request durations by endpoint id
};

}  // namespace keygate::proxy
