#include "policies/key_hash.hpp"

#include <catch2/catch.hpp>
#include <set>
#include <string>

using keygate::policies::keyHash64;
using keygate::policies::stableKeyHash;

// Expected values: `printf %s KEY | sha1sum`, first 16 hex digits.
TEST_CASE("stable key hash: known answers", "[policies][key_hash]") {
  CHECK(stableKeyHash("cpq:{tenant-acme}:customer:alice@example.com") == "sha1:464142e7eeec56c2");
  CHECK(stableKeyHash("") == "sha1:da39a3ee5e6b4b0d");
  CHECK(stableKeyHash("a") == "sha1:86f7e437faa5a7fc");
  // FIPS 180 test vectors: "abc", and 56 bytes (the padding spills into a second block).
  CHECK(stableKeyHash("abc") == "sha1:a9993e364706816a");
  CHECK(stableKeyHash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "sha1:84983e441c3bd26e");
  CHECK(stableKeyHash(std::string(1000, 'x')) == "sha1:c3efa690fa3fdd2e");
}

TEST_CASE("stable key hash: same key same hash, different keys differ", "[policies][key_hash]") {
  const std::string key = "oms:{tenant-7}:order:42";
  CHECK(stableKeyHash(key) == stableKeyHash(std::string(key)));
  CHECK(stableKeyHash(key).size() == 5 + 16);
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    seen.insert(stableKeyHash("oms:{tenant-7}:order:" + std::to_string(i)));
  }
  CHECK(seen.size() == 2000);
  CHECK(stableKeyHash("user:1") != stableKeyHash("user:2"));
  CHECK(stableKeyHash("user:1") != stableKeyHash("user:1 "));
}

TEST_CASE("key hash 64: stable, length-sensitive, well spread", "[policies][key_hash]") {
  // Fixed outputs: the hash has no seed, so processes agree (and merged sketches are valid).
  CHECK(keyHash64("cpq:{tenant-acme}:quote:1") ==
        keyHash64(std::string("cpq:{tenant-acme}:quote:1")));
  // Keys that differ only in length or in one byte at every position and length.
  std::set<std::uint64_t> seen;
  std::size_t inserted = 0;
  for (std::size_t len = 0; len <= 70; ++len) {
    std::string key(len, '\0');
    seen.insert(keyHash64(key));
    ++inserted;
    for (std::size_t i = 0; i < len; ++i) {
      key[i] = 'k';
      seen.insert(keyHash64(key));
      ++inserted;
      key[i] = '\0';
    }
  }
  CHECK(seen.size() == inserted);
  // Each output bit is set for about half of a sequence of similar keys.
  constexpr int kKeys = 20000;
  int ones[64] = {};
  for (int i = 0; i < kKeys; ++i) {
    const auto h = keyHash64("session:" + std::to_string(i));
    for (int b = 0; b < 64; ++b)
      ones[b] += static_cast<int>((h >> b) & 1);
  }
  for (int b = 0; b < 64; ++b) {
    INFO("bit " << b);
    CHECK(ones[b] > kKeys / 2 - 500);  // ~7 standard deviations
    CHECK(ones[b] < kKeys / 2 + 500);
  }
}
