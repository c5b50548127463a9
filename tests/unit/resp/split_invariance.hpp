#pragma once

// The invariant behind resumable parsing, shared by the request parser and reply scanner tests:
// however the bytes are split into reads, including one byte at a time, the outcome is the one
// for the whole input. `feed(stream, cuts)` runs the codec with reads ending at `cuts` and
// returns a comparable outcome.

#include <catch2/catch.hpp>
#include <cstddef>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace keygate::resp::test {

template <class Feed>
void checkSplitInvariance(std::string_view stream, Feed feed) {
  const auto whole = feed(stream, std::vector<std::size_t>{});
  for (std::size_t k = 1; k < stream.size(); ++k) {
    INFO("split at " << k);
    REQUIRE(feed(stream, std::vector<std::size_t>{k}) == whole);
  }
  std::vector<std::size_t> everyByte;
  for (std::size_t k = 1; k < stream.size(); ++k)
    everyByte.push_back(k);
  INFO("one byte at a time");
  REQUIRE(feed(stream, everyByte) == whole);
}

// `count` inputs made from `bases` by changing, dropping or inserting one byte (from `bytes`) at
// a random place, deterministic for a seed; each is handed to `check`.
template <class Check>
void forEachMutation(const std::vector<std::string>& bases, std::string_view bytes, unsigned seed,
                     int count, Check check) {
  std::mt19937 rng(seed);
  for (int i = 0; i < count; ++i) {
    std::string s = bases[rng() % bases.size()];
    const std::size_t at = rng() % s.size();
    switch (rng() % 3) {
      case 0:
        s[at] = bytes[rng() % bytes.size()];
        break;
      case 1:
        s.erase(at, 1);
        break;
      default:
        s.insert(at, 1, bytes[rng() % bytes.size()]);
        break;
    }
    INFO("input " << i << ": " << s);
    check(s);
  }
}

}  // namespace keygate::resp::test
