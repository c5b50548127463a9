#pragma once

// The invariant behind resumable parsing, shared by the request parser and reply scanner tests:
// however the bytes are split into reads, including one byte at a time, the outcome is the one
// for the whole input. `feed(stream, cuts)` runs the codec with reads ending at `cuts` and
// returns a comparable outcome.

#include <catch2/catch.hpp>
#include <cstddef>
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

}  // namespace keygate::resp::test
