#include "policies/big_keys.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "policies/hot_keys.hpp"

using keygate::policies::BigKeys;
using namespace std::chrono_literals;

namespace {

using Entry = BigKeys::Entry;
using TimePoint = BigKeys::Clock::time_point;
const TimePoint kT0 = TimePoint{} + 1000s;

std::vector<std::uint64_t> sizes(const std::vector<Entry>& entries) {
  std::vector<std::uint64_t> out;
  for (const auto& e : entries)
    out.push_back(e.bytes);
  return out;
}

}  // namespace

TEST_CASE("big keys: empty", "[policies][big_keys]") {
  BigKeys big;
  CHECK(big.capacity() == 16);
  CHECK(big.window() == 5min);
  CHECK(big.snapshot(kT0).empty());
  CHECK(big.size() == 0);
}

TEST_CASE("big keys: keeps the N largest, biggest first", "[policies][big_keys]") {
  BigKeys big(4, 5min);
  std::mt19937_64 rng(2);
  std::vector<std::uint64_t> all;
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t bytes = rng() % 1'000'000;
    all.push_back(bytes);
    big.record("k:" + std::to_string(i), bytes, kT0 + i * 1ms);
    REQUIRE(big.size() <= 4);
  }
  std::sort(all.rbegin(), all.rend());
  all.resize(4);
  const auto snapshot = big.snapshot(kT0 + 1s);
  CHECK(sizes(snapshot) == all);
}

TEST_CASE("big keys: ordering ties by recency, then key", "[policies][big_keys]") {
  BigKeys big(8, 5min);
  big.record("b", 100, kT0);
  big.record("a", 100, kT0);
  big.record("c", 100, kT0 + 1s);
  big.record("d", 500, kT0);
  const auto snapshot = big.snapshot(kT0 + 2s);
  REQUIRE(snapshot.size() == 4);
  CHECK(snapshot[0] == Entry{"d", 500, kT0});
  CHECK(snapshot[1] == Entry{"c", 100, kT0 + 1s});
  CHECK(snapshot[2] == Entry{"a", 100, kT0});
  CHECK(snapshot[3] == Entry{"b", 100, kT0});
}

TEST_CASE("big keys: one entry per key, its biggest write", "[policies][big_keys]") {
  BigKeys big(4, 5min);
  big.record("a", 100, kT0);
  big.record("a", 300, kT0 + 1s);
  big.record("a", 50, kT0 + 2s);  // smaller: the 300-byte write stands
  big.record("b", 200, kT0 + 3s);
  const auto snapshot = big.snapshot(kT0 + 4s);
  REQUIRE(snapshot.size() == 2);
  CHECK(snapshot[0] == Entry{"a", 300, kT0 + 1s});
  CHECK(snapshot[1] == Entry{"b", 200, kT0 + 3s});
}

TEST_CASE("big keys: full set rejects writes no bigger than its smallest", "[policies][big_keys]") {
  BigKeys big(2, 5min);
  big.record("a", 100, kT0);
  big.record("b", 200, kT0);
  big.record("c", 100, kT0 + 1s);  // equal to the smallest: rejected
  big.record("d", 50, kT0 + 1s);
  CHECK(sizes(big.snapshot(kT0 + 2s)) == std::vector<std::uint64_t>{200, 100});
  CHECK(big.snapshot(kT0 + 2s)[1].key == "a");
  big.record("e", 150, kT0 + 2s);  // replaces the smallest
  const auto snapshot = big.snapshot(kT0 + 3s);
  REQUIRE(snapshot.size() == 2);
  CHECK(snapshot[0].key == "b");
  CHECK(snapshot[1] == Entry{"e", 150, kT0 + 2s});
}

TEST_CASE("big keys: entries older than the window drop out", "[policies][big_keys]") {
  BigKeys big(2, 5min);
  big.record("huge", 1'000'000, kT0);
  big.record("big", 500'000, kT0 + 1min);
  CHECK(big.snapshot(kT0 + 4min).size() == 2);
  // At 5 min the first write has left the window: snapshot() no longer shows it, and a small
  // write is admitted in its place although the set was full.
  CHECK(sizes(big.snapshot(kT0 + 5min)) == std::vector<std::uint64_t>{500'000});
  big.record("small", 10, kT0 + 5min);
  CHECK(sizes(big.snapshot(kT0 + 5min)) == std::vector<std::uint64_t>{500'000, 10});
  CHECK(big.size() == 2);
  // Later everything ages out.
  CHECK(big.snapshot(kT0 + 11min).empty());
  big.record("late", 7, kT0 + 11min);
  const auto snapshot = big.snapshot(kT0 + 11min);
  REQUIRE(snapshot.size() == 1);
  CHECK(snapshot[0] == Entry{"late", 7, kT0 + 11min});
}

TEST_CASE("big keys: a key rewritten after its entry aged out", "[policies][big_keys]") {
  BigKeys big(4, 1min);
  big.record("a", 900, kT0);
  big.record("a", 100, kT0 + 2min);
  const auto snapshot = big.snapshot(kT0 + 2min);
  REQUIRE(snapshot.size() == 1);
  CHECK(snapshot[0] == Entry{"a", 100, kT0 + 2min});
}

TEST_CASE("big keys: no window keeps entries", "[policies][big_keys]") {
  BigKeys big(2, 0s);
  big.record("a", 10, kT0);
  big.record("b", 20, kT0);
  big.record("c", 5, kT0 + 100h);
  CHECK(sizes(big.snapshot(kT0 + 1000h)) == std::vector<std::uint64_t>{20, 10});
}

TEST_CASE("big keys: long keys are truncated as hot keys are", "[policies][big_keys]") {
  BigKeys big(2, 5min);
  const std::string longKey(1000, 'v');
  big.record(longKey, 1 << 20, kT0);
  std::string expected;
  keygate::policies::trackedKeyForm(longKey, expected);
  const auto snapshot = big.snapshot(kT0);
  REQUIRE(snapshot.size() == 1);
  CHECK(snapshot[0].key == expected);
  CHECK(snapshot[0].key.size() < 300);
}

TEST_CASE("big keys: merge keeps each key's biggest write and the top n", "[policies][big_keys]") {
  const std::vector<std::vector<Entry>> workers = {
      {{"a", 500, kT0}, {"b", 100, kT0}},
      {{"a", 700, kT0 + 1s}, {"c", 300, kT0}},
      {},
      {{"b", 100, kT0 + 2s}, {"d", 50, kT0}},
  };
  auto merged = BigKeys::merge(workers, 3);
  REQUIRE(merged.size() == 3);
  CHECK(merged[0] == Entry{"a", 700, kT0 + 1s});
  CHECK(merged[1] == Entry{"c", 300, kT0});
  CHECK(merged[2] == Entry{"b", 100, kT0 + 2s});  // equal sizes: the latest write
  CHECK(BigKeys::merge(workers, 10).size() == 4);
  CHECK(BigKeys::merge({}, 10).empty());
}

TEST_CASE("big keys: clear and capacity clamp", "[policies][big_keys]") {
  BigKeys big(2, 5min);
  big.record("a", 10, kT0);
  big.record("b", 20, kT0);
  big.clear();
  CHECK(big.size() == 0);
  big.record("c", 1, kT0);  // not full any more: admitted
  CHECK(big.snapshot(kT0).size() == 1);
  CHECK(BigKeys(0).capacity() == 1);
  CHECK(BigKeys(1 << 20).capacity() == BigKeys::kMaxCapacity);
}
