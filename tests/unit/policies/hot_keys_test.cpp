#include "policies/hot_keys.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "policies/key_hash.hpp"

using keygate::policies::HotKey;
using keygate::policies::HotKeys;
using keygate::policies::kMaxTrackedKeyBytes;
using keygate::policies::trackedKeyForm;
using namespace std::chrono_literals;

namespace {

using TimePoint = HotKeys::Clock::time_point;
const TimePoint kT0 = TimePoint{} + 1000s;

std::string key(std::size_t i) {
  return "cpq:{tenant-acme}:quote:" + std::to_string(i);
}

// Space-Saving's guarantees against the exact weights, with no decay: every count bounds the
// true weight from above and count - errorBound from below; every key heavier than W / K is
// tracked; the counts add up to W (each record adds its weight to exactly one counter).
void checkGuarantees(const HotKeys& hot, const std::map<std::string, std::uint64_t>& truth,
                     std::uint64_t total) {
  const auto snapshot = hot.snapshot(hot.capacity(), kT0);
  REQUIRE(snapshot.size() <= hot.capacity());
  std::uint64_t sum = 0;
  std::map<std::string, HotKey> reported;
  for (const auto& h : snapshot) {
    INFO(h.key << " count " << h.count << " error " << h.errorBound);
    const auto it = truth.find(h.key);
    const std::uint64_t weight = it == truth.end() ? 0 : it->second;
    CHECK(h.count >= weight);
    CHECK(h.errorBound <= h.count);
    CHECK(h.count - h.errorBound <= weight);
    sum += h.count;
    reported.emplace(h.key, h);
  }
  CHECK(sum == total);
  for (const auto& [k, weight] : truth) {
    if (weight * hot.capacity() > total) {
      INFO(k << " has " << weight << " of " << total);
      CHECK(reported.count(k) == 1);
    }
  }
}

}  // namespace

TEST_CASE("hot keys: empty", "[policies][hot_keys]") {
  HotKeys hot;
  CHECK(hot.size() == 0);
  CHECK(hot.capacity() == 64);
  CHECK(hot.snapshot(10, kT0).empty());
  CHECK(hot.memoryBytes() == 0);
  hot.record("k", 0, kT0);  // weight 0 changes nothing
  CHECK(hot.size() == 0);
}

TEST_CASE("hot keys: exact while fewer keys than K", "[policies][hot_keys]") {
  HotKeys hot(8, 0s);
  for (int i = 0; i < 5; ++i) {
    for (int n = 0; n <= i; ++n)
      hot.record(key(i), 1, kT0);
  }
  hot.record(key(0), 10, kT0);
  const auto snapshot = hot.snapshot(3, kT0);
  REQUIRE(snapshot.size() == 3);
  CHECK(snapshot[0] == HotKey{key(0), 11, 0});
  CHECK(snapshot[1] == HotKey{key(4), 5, 0});
  CHECK(snapshot[2] == HotKey{key(3), 4, 0});
  CHECK(hot.snapshot(100, kT0).size() == 5);
  CHECK(hot.evictions() == 0);
}

TEST_CASE("hot keys: Space-Saving guarantees on a skewed stream", "[policies][hot_keys]") {
  for (const std::size_t k : {1u, 7u, 32u, 64u}) {
    HotKeys hot(k, 0s);
    std::mt19937_64 rng(k);
    // A few heavy keys over a long tail: key i drawn with probability ~ 1/(i+1), 5000 keys.
    std::vector<double> weights;
    for (int i = 0; i < 5000; ++i)
      weights.push_back(1.0 / (i + 1));
    std::discrete_distribution<int> pick(weights.begin(), weights.end());
    std::map<std::string, std::uint64_t> truth;
    std::uint64_t total = 0;
    for (int n = 0; n < 50'000; ++n) {
      const std::string name = key(static_cast<std::size_t>(pick(rng)));
      const std::uint64_t weight = n % 3 == 0 ? 1 + rng() % 50 : 1;  // bytes, or requests
      hot.record(name, weight, kT0);
      truth[name] += weight;
      total += weight;
      REQUIRE(hot.size() <= k);
    }
    INFO("K = " << k);
    CHECK(hot.size() == k);
    checkGuarantees(hot, truth, total);
    CHECK(hot.evictions() > 0);
  }
}

TEST_CASE("hot keys: guarantees on a uniform stream (all error)", "[policies][hot_keys]") {
  HotKeys hot(16, 0s);
  std::mt19937_64 rng(7);
  std::map<std::string, std::uint64_t> truth;
  for (int n = 0; n < 20'000; ++n) {
    const std::string name = key(rng() % 100'000);
    hot.record(name, 1, kT0);
    ++truth[name];
  }
  checkGuarantees(hot, truth, 20'000);
}

TEST_CASE("hot keys: a key with half the traffic ranks first", "[policies][hot_keys]") {
  HotKeys hot;
  std::mt19937_64 rng(3);
  const std::string hotKey = "oms:{tenant-9}:order:hot";
  for (int n = 0; n < 100'000; ++n) {
    hot.record(n % 2 == 0 ? hotKey : key(rng() % 1'000'000), 1, kT0 + n * 1us);
  }
  const auto top = hot.snapshot(5, kT0 + 100ms);
  REQUIRE(!top.empty());
  CHECK(top[0].key == hotKey);
  CHECK(top[0].count >= 50'000);
  CHECK(top[0].count - top[0].errorBound <= 50'000);
  CHECK(top[0].errorBound < 100'000 / 64);
  // The rest are noise: all far below the hot key.
  for (std::size_t i = 1; i < top.size(); ++i)
    CHECK(top[i].count < 100'000 / 64 + 2);
  CHECK(hot.size() == 64);
}

TEST_CASE("hot keys: every tracked key is found again after heavy churn", "[policies][hot_keys]") {
  // Exercises the index's deletions: re-recording a tracked key must never evict.
  for (const std::size_t k : {1u, 3u, 64u, 100u}) {
    HotKeys hot(k, 0s);
    std::mt19937_64 rng(k + 11);
    for (int n = 0; n < 30'000; ++n)
      hot.record(key(rng() % 5000), 1, kT0);
    const auto before = hot.snapshot(k, kT0);
    const auto evictions = hot.evictions();
    for (const auto& h : before)
      hot.record(h.key, 1, kT0);
    INFO("K = " << k);
    CHECK(hot.evictions() == evictions);
    for (const auto& h : before) {
      bool found = false;
      for (const auto& after : hot.snapshot(k, kT0)) {
        if (after.key == h.key) {
          found = true;
          CHECK(after.count == h.count + 1);
        }
      }
      CHECK(found);
    }
  }
}

TEST_CASE("hot keys: counts halve every window", "[policies][hot_keys]") {
  HotKeys hot(4, 10s);
  for (int n = 0; n < 1000; ++n)
    hot.record("a", 1, kT0);
  CHECK(hot.snapshot(1, kT0 + 9s)[0].count == 1000);
  // snapshot() applies the decay it sees without changing the summary.
  CHECK(hot.snapshot(1, kT0 + 10s)[0].count == 500);
  CHECK(hot.snapshot(1, kT0 + 35s)[0].count == 125);
  CHECK(hot.snapshot(1, kT0 + 9s)[0].count == 1000);
  // A record in the fourth window applies three halvings, then adds.
  hot.record("b", 200, kT0 + 35s);
  auto top = hot.snapshot(2, kT0 + 35s);
  REQUIRE(top.size() == 2);
  CHECK(top[0] == HotKey{"b", 200, 0});
  CHECK(top[1] == HotKey{"a", 125, 0});
  // Windows are counted from the first record: the next boundary is at 40 s.
  top = hot.snapshot(2, kT0 + 40s);
  CHECK(top[0] == HotKey{"b", 100, 0});
  CHECK(top[1] == HotKey{"a", 62, 0});
  // Long idle: everything decays to zero and leaves the snapshot.
  CHECK(hot.snapshot(2, kT0 + 3600s).empty());
  hot.record("c", 1, kT0 + 3600s);
  top = hot.snapshot(4, kT0 + 3600s);
  REQUIRE(top.size() == 1);
  CHECK(top[0] == HotKey{"c", 1, 0});
}

TEST_CASE("hot keys: old heat fades, a new hot key takes over", "[policies][hot_keys]") {
  HotKeys hot(8, 10s);
  for (int n = 0; n < 10'000; ++n)
    hot.record("old", 1, kT0 + n * 1ms);  // 10 s of traffic
  for (int n = 0; n < 600; ++n)
    hot.record(n % 2 ? "new" : key(static_cast<std::size_t>(n)), 1, kT0 + 60s + n * 10ms);
  const auto top = hot.snapshot(2, kT0 + 66s);
  REQUIRE(top.size() == 2);
  CHECK(top[0].key == "new");
  CHECK(top[1].key == "old");
  CHECK(top[1].count < 10'000 >> 5);
}

TEST_CASE("hot keys: decayed errors stay below counts", "[policies][hot_keys]") {
  HotKeys hot(4, 1s);
  std::mt19937_64 rng(5);
  for (int n = 0; n < 20'000; ++n) {
    hot.record(key(rng() % 20), 1 + rng() % 7, kT0 + n * 1ms);
    REQUIRE(hot.size() <= 4);
  }
  for (const auto& h : hot.snapshot(4, kT0 + 25s))
    CHECK(h.errorBound <= h.count);
}

TEST_CASE("hot keys: no decay with a zero window", "[policies][hot_keys]") {
  HotKeys hot(2, 0s);
  hot.record("a", 8, kT0);
  hot.record("a", 8, kT0 + 1000h);
  CHECK(hot.snapshot(1, kT0 + 2000h)[0].count == 16);
}

TEST_CASE("hot keys: long keys are tracked truncated with their length", "[policies][hot_keys]") {
  std::string out;
  trackedKeyForm("short", out);
  CHECK(out == "short");
  const std::string exact(kMaxTrackedKeyBytes, 'x');
  trackedKeyForm(exact, out);
  CHECK(out == exact);
  std::string longKey(300, 'k');
  trackedKeyForm(longKey, out);
  CHECK(out == std::string(kMaxTrackedKeyBytes, 'k') + "...(300 bytes)");

  HotKeys hot(8, 0s);
  std::string other = longKey;
  other[280] = 'z';  // the same first 256 bytes and length: counted as one
  hot.record(longKey, 1, kT0);
  hot.record(other, 1, kT0);
  hot.record(longKey + "k", 1, kT0);  // another length: another entry
  const auto top = hot.snapshot(8, kT0);
  REQUIRE(top.size() == 2);
  CHECK(top[0] == HotKey{out, 2, 0});
  CHECK(top[1].key == std::string(kMaxTrackedKeyBytes, 'k') + "...(301 bytes)");
}

TEST_CASE("hot keys: ties sort by key; n cuts", "[policies][hot_keys]") {
  HotKeys hot(8, 0s);
  for (const char* k : {"d", "b", "c", "a"})
    hot.record(k, 3, kT0);
  hot.record("e", 4, kT0);
  const auto top = hot.snapshot(3, kT0);
  REQUIRE(top.size() == 3);
  CHECK(top[0].key == "e");
  CHECK(top[1].key == "a");
  CHECK(top[2].key == "b");
  CHECK(hot.snapshot(0, kT0).empty());
}

TEST_CASE("hot keys: merge sums by key and keeps the top n", "[policies][hot_keys]") {
  const std::vector<std::vector<HotKey>> workers = {
      {{"a", 10, 1}, {"b", 8, 0}, {"c", 2, 2}},
      {{"b", 5, 1}, {"d", 9, 0}},
      {},
      {{"a", 1, 0}, {"c", 1, 0}},
  };
  auto merged = HotKeys::merge(workers, 3);
  REQUIRE(merged.size() == 3);
  CHECK(merged[0] == HotKey{"b", 13, 1});
  CHECK(merged[1] == HotKey{"a", 11, 1});
  CHECK(merged[2] == HotKey{"d", 9, 0});
  CHECK(HotKeys::merge(workers, 100).size() == 4);
  CHECK(HotKeys::merge({}, 5).empty());

  // Two workers' summaries of one split stream: the merge finds the stream's hot key.
  HotKeys w1(16, 0s), w2(16, 0s);
  std::mt19937_64 rng(9);
  for (int n = 0; n < 20'000; ++n) {
    HotKeys& w = n % 2 ? w1 : w2;
    w.record(n % 5 == 0 ? "hot" : key(rng() % 50'000), 1, kT0);
  }
  const std::vector<std::vector<HotKey>> both = {w1.snapshot(16, kT0), w2.snapshot(16, kT0)};
  merged = HotKeys::merge(both, 1);
  REQUIRE(merged.size() == 1);
  CHECK(merged[0].key == "hot");
  CHECK(merged[0].count >= 4000);
  CHECK(merged[0].count - merged[0].errorBound <= 4000);
}

TEST_CASE("hot keys: memory is bounded", "[policies][hot_keys]") {
  HotKeys hot(64, 10s);
  std::mt19937_64 rng(1);
  const std::string pad(200, 'p');
  for (int n = 0; n < 20'000; ++n)
    hot.record(pad + key(rng()), 1, kT0 + n * 1ms);
  const auto grown = hot.memoryBytes();
  CHECK(hot.size() == 64);
  CHECK(grown < 64 * (kMaxTrackedKeyBytes + 24 + 128) + 4096);
  for (int n = 0; n < 50'000; ++n)
    hot.record(pad + key(rng()), 1, kT0 + 20s + n * 1ms);
  CHECK(hot.memoryBytes() == grown);  // no growth in steady state
  CHECK(hot.size() == 64);
  hot.clear();
  CHECK(hot.size() == 0);
  CHECK(hot.memoryBytes() == 0);
  CHECK(hot.snapshot(5, kT0).empty());
}

TEST_CASE("hot keys: capacity is clamped", "[policies][hot_keys]") {
  CHECK(HotKeys(0).capacity() == 1);
  CHECK(HotKeys(1 << 30).capacity() == HotKeys::kMaxCapacity);
}

// --- Hash-taking record() and request sampling (sample()) ---

TEST_CASE("hot keys: record with the caller's hash equals record", "[policies][hot_keys]") {
  HotKeys plain(8, 10s), hashed(8, 10s);
  std::mt19937_64 rng(11);
  const std::string longKey(kMaxTrackedKeyBytes + 40, 'x');
  for (int n = 0; n < 5000; ++n) {
    const std::string name = n % 97 == 0 ? longKey : key(rng() % 20);
    const auto now = kT0 + n * 3ms;  // crosses the window: decay applies to both alike
    plain.record(name, 1, now);
    // For an over-long key the hash given is the full key's: record() hashes the tracked form.
    hashed.record(name, keygate::policies::keyHash64(name), 1, now);
  }
  const auto end = kT0 + 15s;
  CHECK(plain.snapshot(8, end) == hashed.snapshot(8, end));
  CHECK(plain.evictions() == hashed.evictions());
  CHECK(plain.evictions() > 0);
}

TEST_CASE("hot keys: sample() takes every request at low rates (exact counts)",
          "[policies][hot_keys]") {
  HotKeys hot(16, 0s);
  // 5,000 requests per second (below 2 * kSamplesPerPeriod) for 5 s: all recorded, weight 1.
  std::map<std::string, std::uint64_t> truth;
  std::uint64_t sampled = 0;
  for (int n = 0; n < 25'000; ++n) {
    const auto now = kT0 + n * 200us;
    const std::string name = key(n % 7 == 0 ? 1 : static_cast<std::size_t>(n % 5));
    const std::uint64_t w = hot.sample(now);
    REQUIRE(w == 1);
    hot.record(name, w, now);
    ++truth[name];
    ++sampled;
    CHECK(hot.sampleShift() == 0);
  }
  CHECK(sampled == 25'000);
  for (const auto& h : hot.snapshot(16, kT0 + 5s)) {
    CHECK(h.count == truth[h.key]);
    CHECK(h.errorBound == 0);
  }
}

TEST_CASE("hot keys: maxSampleShift 0 never samples", "[policies][hot_keys]") {
  HotKeys hot(16, 0s, 0);
  for (int n = 0; n < 100'000; ++n)
    REQUIRE(hot.sample(kT0) == 1);  // a burst in one instant
  CHECK(hot.sampleShift() == 0);
}

TEST_CASE("hot keys: under load sample() drops to 1 in 64; weights stay unbiased",
          "[policies][hot_keys]") {
  HotKeys hot;
  REQUIRE(HotKeys::kDefaultMaxSampleShift == 6);
  // 500,000 requests per second for 4 s.
  std::uint64_t weightSum = 0;
  std::uint64_t samples = 0;
  std::uint64_t lastSecondSamples = 0;
  const int total = 2'000'000;
  for (int n = 0; n < total; ++n) {
    const auto now = kT0 + n * 2us;
    if (const std::uint64_t w = hot.sample(now)) {
      weightSum += w;
      ++samples;
      if (n >= 1'500'000) ++lastSecondSamples;
    }
  }
  INFO("samples " << samples << ", weights " << weightSum);
  CHECK(hot.sampleShift() == 6);
  // The sum of the weights estimates the requests: standard deviation about
  // sqrt(total * 64) = 11,300, so 3% (60,000) is more than 5 of them.
  CHECK(std::abs(static_cast<double>(weightSum) - total) < 0.03 * total);
  // Steady state: 500,000 / 64 = 7,800 samples per second.
  CHECK(lastSecondSamples > 7'000);
  CHECK(lastSecondSamples < 8'700);
  // The first second ramps up from exact (at most 2 * kSamplesPerPeriod per step).
  CHECK(samples < 4 * 8'700 + 7 * 2 * HotKeys::kSamplesPerPeriod);
}

TEST_CASE("hot keys: a burst lowers the rate within the period; quiet restores exact counts",
          "[policies][hot_keys]") {
  HotKeys hot;
  std::uint64_t samples = 0;
  for (int n = 0; n < 1'000'000; ++n)
    samples += hot.sample(kT0) != 0;  // all at one instant: no period boundary
  CHECK(hot.sampleShift() == 6);
  CHECK(samples < 7 * 2 * HotKeys::kSamplesPerPeriod + 1'000'000 / 64 + 1000);
  // Then 1,000 requests per second: after a period boundary, every request again.
  int exactAfter = -1;
  for (int n = 0; n < 5000; ++n) {
    const auto now = kT0 + 1s + n * 1ms;
    const std::uint64_t w = hot.sample(now);
    if (w == 1 && exactAfter < 0) exactAfter = n;
    if (exactAfter >= 0) {
      REQUIRE(w == 1);
    }
  }
  CHECK(exactAfter >= 0);
  CHECK(exactAfter < 1200);  // the gap drawn at 1 in 64 ends within ~64 requests, then a period
  CHECK(hot.sampleShift() == 0);
}

TEST_CASE("hot keys: sampled skewed stream finds the top keys with counts within the error",
          "[policies][hot_keys]") {
  // 500,000 requests per second for 4 s, no decay: key 0 has 30% of the traffic, keys 1-10
  // 3% each, keys 11-20 1% each, the other 30% is spread over 1M keys. Sampled at 1 in 64
  // after the first second.
  HotKeys sampledNoDecay(64, 0s);  // K = 64, sampling at most 1 in 64
  std::mt19937_64 rng(5);
  std::vector<std::string> heavy;
  for (std::size_t i = 0; i <= 20; ++i)
    heavy.push_back("oms:{tenant-1}:order:heavy-" + std::to_string(i));
  std::map<std::string, std::uint64_t> truth;
  const int total = 2'000'000;
  std::string noise;
  for (int n = 0; n < total; ++n) {
    const auto now = kT0 + n * 2us;
    const auto r = rng() % 100;
    std::string_view name;
    if (r < 30) {
      name = heavy[0];
    } else if (r < 60) {
      name = heavy[1 + (r - 30) / 3];
    } else if (r < 70) {
      name = heavy[11 + (r - 60)];
    } else {
      noise = key(rng() % 1'000'000);
      name = noise;
    }
    if (r < 70) ++truth[std::string(name)];
    if (const std::uint64_t w = sampledNoDecay.sample(now)) sampledNoDecay.record(name, w, now);
  }
  const auto top = sampledNoDecay.snapshot(21, kT0 + 4s);
  REQUIRE(top.size() == 21);
  std::map<std::string, HotKey> reported;
  for (const auto& h : top)
    reported.emplace(h.key, h);
  CHECK(top[0].key == heavy[0]);
  // Every heavy key is among the top 21, each within 5 sampling standard errors
  // (sqrt(true weight * 64)) beyond Space-Saving's own bounds.
  for (const auto& [name, weight] : truth) {
    INFO(name << ": true " << weight);
    REQUIRE(reported.count(name) == 1);
    const HotKey& h = reported.at(name);
    INFO("count " << h.count << " error " << h.errorBound);
    const double sigma = std::sqrt(static_cast<double>(weight) * 64);
    CHECK(static_cast<double>(h.count) + 5 * sigma >= static_cast<double>(weight));
    CHECK(static_cast<double>(h.count - h.errorBound) - 5 * sigma <= static_cast<double>(weight));
  }
  // The hot key (600,000 requests: one sampling standard error is about 1%) within 5%.
  CHECK(std::abs(static_cast<double>(reported.at(heavy[0]).count) - truth[heavy[0]]) <
        0.05 * static_cast<double>(truth[heavy[0]]));
}
