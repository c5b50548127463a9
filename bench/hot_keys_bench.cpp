// Cost of the per-request observability sketches (issue 6: well under 100 ns per recorded key,
// amortised, and no allocation per request in steady state): HotKeys::record() on streams of
// different skew, HyperLogLog::add(), BigKeys::record().
//
// Streams: 1M keys shaped like registry keys ("oms:{tenant-<t>}:order:<id>", 30-40 bytes),
// stored back to back in one buffer so that reading the next key is a sequential read (the
// proxy's key is in its read buffer, already in cache):
//   uniform   ids drawn uniformly from 1M distinct keys: nearly every record evicts
//   zipf      ids drawn Zipf(s = 0.99) over 1M distinct keys, ranks shuffled
//   hot50     every other key is one hot key, the rest uniform over 1M distinct
//   tracked   64 distinct keys round robin (K = 64): every record finds its key
// BM_ReadKeys is the floor: reading the stream's keys and nothing else.
//
//   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DKEYGATE_BUILD_TESTS=OFF
//         -DKEYGATE_BUILD_BENCH=ON   (one command)
//   cmake --build build-bench -j2 --target hot_keys_bench
//   build-bench/bench/hot_keys_bench

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "policies/big_keys.hpp"
#include "policies/hot_keys.hpp"
#include "policies/hyperloglog.hpp"
#include "policies/key_hash.hpp"

namespace {

using keygate::policies::BigKeys;
using keygate::policies::HotKeys;
using keygate::policies::HyperLogLog;
using keygate::policies::keyHash64;

constexpr std::size_t kDistinct = 1'000'000;
constexpr std::size_t kStream = 1'000'000;

class KeyStream {
 public:
  void add(std::uint64_t id) {
    arena_ += "oms:{tenant-";
    arena_ += std::to_string(id % 97);
    arena_ += "}:order:";
    arena_ += std::to_string(id * 2654435761u % 100'000'000'000ULL);
    ends_.push_back(static_cast<std::uint32_t>(arena_.size()));
  }
  std::size_t size() const { return ends_.size(); }
  std::string_view operator[](std::size_t i) const {
    const std::uint32_t begin = i == 0 ? 0 : ends_[i - 1];
    return std::string_view(arena_).substr(begin, ends_[i] - begin);
  }

 private:
  std::string arena_;
  std::vector<std::uint32_t> ends_;
};

KeyStream uniform() {
  std::mt19937_64 rng(1);
  KeyStream s;
  for (std::size_t i = 0; i < kStream; ++i)
    s.add(rng() % kDistinct);
  return s;
}

KeyStream zipf() {
  std::mt19937_64 rng(2);
  std::vector<double> cdf(kDistinct);
  double sum = 0;
  for (std::size_t r = 0; r < kDistinct; ++r) {
    sum += 1.0 / std::pow(static_cast<double>(r + 1), 0.99);
    cdf[r] = sum;
  }
  std::vector<std::uint64_t> idOfRank(kDistinct);
  std::iota(idOfRank.begin(), idOfRank.end(), 0);
  std::shuffle(idOfRank.begin(), idOfRank.end(), rng);
  std::uniform_real_distribution<double> u(0, sum);
  KeyStream s;
  for (std::size_t i = 0; i < kStream; ++i) {
    const auto rank = std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin();
    s.add(idOfRank[static_cast<std::size_t>(std::min<std::ptrdiff_t>(rank, kDistinct - 1))]);
  }
  return s;
}

KeyStream hot50() {
  std::mt19937_64 rng(3);
  KeyStream s;
  for (std::size_t i = 0; i < kStream; ++i)
    s.add(i % 2 ? kDistinct + 1 : rng() % kDistinct);
  return s;
}

KeyStream tracked() {
  KeyStream s;
  for (std::size_t i = 0; i < kStream; ++i)
    s.add(i % 64);
  return s;
}

const KeyStream& stream(int which) {
  static const KeyStream streams[] = {uniform(), zipf(), hot50(), tracked()};
  return streams[which];
}

const char* const kNames[] = {"uniform", "zipf", "hot50", "tracked"};

// The proxy reads its clock once per event-loop turn; here time moves 1 us per key, so the
// 10 s decay window is crossed every 10M records.
HotKeys::Clock::time_point at(std::size_t tick) {
  return HotKeys::Clock::time_point{} + std::chrono::microseconds(tick);
}

void BM_ReadKeys(benchmark::State& state) {
  const auto& keys = stream(static_cast<int>(state.range(0)));
  std::size_t i = 0;
  for (auto _ : state) {
    const auto key = keys[i];
    benchmark::DoNotOptimize(key.data()[key.size() - 1]);
    if (++i == keys.size()) i = 0;
  }
  state.SetLabel(kNames[state.range(0)]);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_ReadKeys)->Arg(0);

void BM_KeyHash64(benchmark::State& state) {
  const auto& keys = stream(0);
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(keyHash64(keys[i]));
    if (++i == keys.size()) i = 0;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_KeyHash64);

void BM_HotKeysRecord(benchmark::State& state) {
  const auto& keys = stream(static_cast<int>(state.range(0)));
  HotKeys hot(static_cast<std::size_t>(state.range(1)), std::chrono::seconds(10));
  std::size_t i = 0;
  std::size_t tick = 0;
  for (auto _ : state) {
    hot.record(keys[i], 1, at(tick++));
    if (++i == keys.size()) i = 0;
  }
  state.SetLabel(std::string(kNames[state.range(0)]) + " K=" + std::to_string(state.range(1)));
  state.counters["evict_ratio"] =
      static_cast<double>(hot.evictions()) /
      static_cast<double>(std::max<std::int64_t>(1, state.iterations()));
  state.counters["bytes"] = static_cast<double>(hot.memoryBytes());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_HotKeysRecord)
    ->Args({0, 64})
    ->Args({1, 64})
    ->Args({2, 64})
    ->Args({3, 64})
    ->Args({0, 16})
    ->Args({1, 256})
    ->Args({0, 1024});

void BM_HyperLogLogAdd(benchmark::State& state) {
  const auto& keys = stream(0);
  HyperLogLog hll;
  std::size_t i = 0;
  for (auto _ : state) {
    hll.add(keys[i]);
    if (++i == keys.size()) i = 0;
  }
  state.counters["estimate"] = hll.estimate();
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_HyperLogLogAdd);

// The proxy can hash a key once and give the hash to the sketch.
void BM_HyperLogLogAddHash(benchmark::State& state) {
  std::vector<std::uint64_t> hashes(1 << 16);
  std::mt19937_64 rng(4);
  for (auto& h : hashes)
    h = rng();
  HyperLogLog hll;
  std::size_t i = 0;
  for (auto _ : state) {
    hll.addHash(hashes[i]);
    i = (i + 1) & (hashes.size() - 1);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_HyperLogLogAddHash);

// Value sizes log-normal around 1 KiB: after warm-up nearly every write is rejected by the
// fast path.
void BM_BigKeysRecord(benchmark::State& state) {
  const auto& keys = stream(0);
  std::vector<std::uint64_t> sizes(1 << 16);
  std::mt19937_64 rng(5);
  std::lognormal_distribution<double> dist(7.0, 1.5);
  for (auto& s : sizes)
    s = static_cast<std::uint64_t>(dist(rng));
  BigKeys big;
  std::size_t i = 0;
  std::size_t tick = 0;
  for (auto _ : state) {
    big.record(keys[i], sizes[i & (sizes.size() - 1)], at(tick++));
    if (++i == keys.size()) i = 0;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_BigKeysRecord);

// What the proxy does per write with keyTracking on (proxy/worker.cpp Worker::recordKey), at
// 1 us per request (1M requests/s, so the hot keys sample 1 in 64 after the first second):
//   unsampled  every request recorded, the key hashed twice (the code before sampling)
//   sampled    HotKeys::sample(), the key hashed once for both sketches
// Same-size values, as redis-benchmark writes: BigKeys rejects all but the first 16.
void BM_WritePath(benchmark::State& state) {
  const auto& keys = stream(static_cast<int>(state.range(0)));
  const bool sampled = state.range(1) != 0;
  HotKeys hot;
  HyperLogLog hll;
  BigKeys big;
  std::size_t i = 0;
  std::size_t tick = 0;
  for (auto _ : state) {
    const auto key = keys[i];
    const auto now = at(tick++);
    if (sampled) {
      const std::uint64_t hash = keyHash64(key);
      if (const std::uint64_t w = hot.sample(now)) hot.record(key, hash, w, now);
      hll.addHash(hash);
    } else {
      hot.record(key, 1, now);
      hll.add(key);
    }
    big.record(key, 64, now);
    if (++i == keys.size()) i = 0;
  }
  state.SetLabel(std::string(kNames[state.range(0)]) + (sampled ? " sampled" : " unsampled") +
                 " shift=" + std::to_string(hot.sampleShift()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_WritePath)->Args({0, 0})->Args({0, 1})->Args({2, 0})->Args({2, 1});

}  // namespace
