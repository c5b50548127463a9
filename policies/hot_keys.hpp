#pragma once

// The hottest keys of one pattern on one worker: a Space-Saving summary (Metwally, Agrawal,
// El Abbadi 2005) of K counters with exponential decay.
//
// Space-Saving keeps K (key, count, error) entries. A tracked key's count grows by the weight
// recorded; an untracked key takes over the entry with the smallest count m, starting at
// m + weight with error m. With W the total weight recorded:
//   - count never underestimates: count >= the key's true weight >= count - error;
//   - the smallest count is at most W / K, so every key with more than W / K is tracked.
// Decay: every `window` all counts and errors are halved (applied lazily, on the first call
// that sees a later window; n windows at once halve n times), so a key that was hot an hour
// ago fades out instead of holding its place forever. The guarantees above then hold for the
// decayed weights (each weight halved once per window boundary since it was recorded), to
// within the rounding down of each halving.
//
// Cost on the request path (record): a hash of the key, a lookup in an open-addressed index
// of 4K+ slots, and a sift in a binary min-heap of K counts (O(log K); a hot key sits at the
// bottom, where the sift stops at once). Measured (bench/hot_keys_bench.cpp, K = 64): about
// 15 ns when the key is tracked, about 50 ns when nearly every key evicts (uniform over 1M
// keys). No allocation once every entry's key buffer has grown to the keys seen. Memory is
// bounded: K entries, each with a key buffer of at most kMaxTrackedKeyBytes + 32 bytes, plus
// 8 bytes per index slot (K = 64: about 25 KiB when every key is long, about 10 KiB for keys
// of 40 bytes; see memoryBytes()). Nothing is allocated before the first record().
//
// Sampling (sample(), for the request path): under heavy traffic only some requests are
// recorded, each with the weight of the requests it stands for. Each request is sampled
// independently with probability 2^-s (geometric gaps between samples: one decrement per
// request that is not sampled, no hash, no lookup) and a sampled one weighs 2^s, so every
// key's recorded weight is an unbiased estimate of its requests. s is chosen per sampling
// period (kSamplePeriod) from the previous period's requests: the largest s (at most the
// constructor's maxSampleShift, default 6: 1 in 64) that still leaves kSamplesPerPeriod samples
// per period; within a period s grows by one each time 2 * kSamplesPerPeriod samples have been
// taken (a burst). So below about 2 * kSamplesPerPeriod requests per period (8,192 per second)
// every request is recorded with weight 1 and the counts are exact as above; at the rates where
// tracking cost matters, a key with share f of R requests per decay window is sampled about
// f R / 2^s times, and its count has a sampling standard error of about sqrt(count * 2^s) on top
// of Space-Saving's error (errorBound covers only the latter). Example: 500k requests/s, s = 6,
// 10 s window: a key with 1% of the traffic counts ~50,000 +- 1,800 (3.6%, one standard error).
// Measured (bench/hot_keys_bench.cpp BM_WritePath, a write's hot keys + HyperLogLog + big
// values, uniform keys, CPU time): 60 ns recording every request with two hashes, 11 ns
// sampling 1 in 64 with one hash shared by both sketches.
//
// Not thread-safe: one worker owns each instance; the admin thread asks the worker for a
// snapshot() and merges those of all workers with merge().

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policies/key_hash.hpp"

namespace keygate::policies {

// Keys longer than this are tracked (and shown) by their first kMaxTrackedKeyBytes bytes
// followed by a length marker, "...(<n> bytes)". Two long keys with the same first
// kMaxTrackedKeyBytes bytes and the same length are counted as one.
inline constexpr std::size_t kMaxTrackedKeyBytes = 256;

// The form `key` is tracked under (itself when short enough), written into `out` (whose
// buffer is reused: no allocation once it has grown to kMaxTrackedKeyBytes + 32).
void trackedKeyForm(std::string_view key, std::string& out);

struct HotKey {
  std::string key;          // in clear: a caller showing PII patterns replaces it (stableKeyHash)
  std::uint64_t count = 0;  // upper bound of the key's (decayed) weight
  std::uint64_t errorBound = 0;  // count - errorBound is a lower bound

  bool operator==(const HotKey&) const = default;
};

class HotKeys {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kDefaultCapacity = 64;
  static constexpr std::size_t kMaxCapacity = 1 << 16;
  static constexpr Clock::duration kDefaultWindow = std::chrono::seconds(10);
  // Sampling (see above): at most 1 in 2^maxSampleShift requests recorded.
  static constexpr unsigned kDefaultMaxSampleShift = 6;
  static constexpr unsigned kMaxSampleShift = 20;
  static constexpr std::uint64_t kSamplesPerPeriod = 4096;
  static constexpr Clock::duration kSamplePeriod = std::chrono::seconds(1);

  // `capacity` (K) is clamped to [1, kMaxCapacity]. A `window` of zero or less disables decay.
  // `maxSampleShift` (clamped to kMaxSampleShift) bounds sample()'s rate; 0: sample() takes
  // every request.
  explicit HotKeys(std::size_t capacity = kDefaultCapacity, Clock::duration window = kDefaultWindow,
                   unsigned maxSampleShift = kDefaultMaxSampleShift);

  // Adds `weight` (1 per request, or bytes) to `key` at `now`. A weight of 0 changes nothing.
  // `key` is copied when it becomes tracked; the view need not outlive the call.
  void record(std::string_view key, std::uint64_t weight, Clock::time_point now) {
    record(key, key.size() > kMaxTrackedKeyBytes ? 0 : keyHash64(key), weight, now);
  }
  // The same for a caller that already has `hash` == keyHash64(key) (ignored for keys longer
  // than kMaxTrackedKeyBytes, which are hashed in their tracked form).
  void record(std::string_view key, std::uint64_t hash, std::uint64_t weight,
              Clock::time_point now);

  // One request at `now`: 0 when it is not sampled (the common case under load: a decrement),
  // otherwise the weight to record() it with. Usage:
  //   if (const auto w = hot.sample(now)) hot.record(key, hash, w, now);
  std::uint64_t sample(Clock::time_point now) {
    if (--countdown_ != 0) return 0;
    return nextSample(now);
  }
  // The current sampling rate: 1 in 2^sampleShift() requests.
  unsigned sampleShift() const { return shift_; }

  // The (up to) `n` entries with the highest counts, decayed to `now`, highest first (ties by
  // key). Entries whose count decayed to zero are left out. Does not change the summary.
  std::vector<HotKey> snapshot(std::size_t n, Clock::time_point now) const;

  // Combines the snapshots of several workers: counts and error bounds of the same key are
  // summed, the result sorted as snapshot() and cut to `n`. Take each worker's snapshot with
  // n = capacity(): a key missing from one worker's snapshot contributes nothing from that
  // worker, so its merged count can be low by up to that worker's smallest count.
  static std::vector<HotKey> merge(std::span<const std::vector<HotKey>> snapshots, std::size_t n);

  std::size_t size() const { return entries_.size(); }  // tracked keys, at most capacity()
  std::size_t capacity() const { return capacity_; }
  Clock::duration window() const { return window_; }
  // Times an untracked key took over the smallest entry: a high rate against the request rate
  // means no key stands out (a flat distribution), and counts are mostly error.
  std::uint64_t evictions() const { return evictions_; }
  // Heap bytes held (entries, key buffers, heap, index), for the memory budget.
  std::size_t memoryBytes() const;
  void clear();

 private:
  struct Entry {
    std::uint64_t error = 0;
    std::uint32_t tag = 0;      // low 32 bits of keyHash64(key)
    std::uint32_t heapPos = 0;  // where this entry's count is in heap_
    std::string key;
  };
  // The count lives in the heap node so that sifting compares adjacent memory.
  struct Node {
    std::uint64_t count;
    std::uint32_t entry;
  };
  // An index slot: `entry` + 1 (0: empty) and the key's tag, checked before the key is.
  struct Slot {
    std::uint32_t tag;
    std::uint32_t entry;
  };

  void allocate();
  std::uint64_t nextSample(Clock::time_point now);
  void decay(Clock::time_point now);
  unsigned pendingHalvings(Clock::time_point now) const;
  void siftDown(std::size_t pos);
  void siftUp(std::size_t pos);
  void place(std::size_t pos, Node node);
  void eraseSlot(std::uint32_t tag, std::uint32_t entry);
  void insertSlot(std::uint32_t tag, std::uint32_t entry);

  std::size_t capacity_;
  Clock::duration window_;
  // Counts were last halved at epoch_; the next halving is due at nextDecay_ (min() until the
  // first record, so that the first record sets the epoch).
  Clock::time_point epoch_{};
  Clock::time_point nextDecay_ = Clock::time_point::min();
  std::vector<Entry> entries_;
  std::vector<Node> heap_;  // min-heap by count of the first size() nodes
  std::vector<Slot> slots_;
  std::uint32_t slotMask_ = 0;
  std::uint64_t evictions_ = 0;
  std::string longKey_;  // the tracked form of an over-long key, reused
  // Sampling: requests left until the next sample (1: the next one), drawn with probability
  // 2^-gapShift_; the rate for the next gap; the period and what was sampled in it.
  std::uint64_t countdown_ = 1;
  unsigned gapShift_ = 0;
  unsigned shift_ = 0;
  unsigned maxShift_;
  std::uint64_t periodSamples_ = 0;
  std::uint64_t periodWeight_ = 0;  // estimated requests of the period (sampled weights)
  Clock::time_point periodEnd_ = Clock::time_point::min();
  std::uint64_t rng_ = 0x9e3779b97f4a7c15ULL;
  unsigned gapScaleShift_ = 0;  // gapScale_ = 1 / ln(1 - 2^-gapScaleShift_), once shift > 0
  double gapScale_ = 0;
};

}  // namespace keygate::policies
