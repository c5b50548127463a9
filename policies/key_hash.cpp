#include "policies/key_hash.hpp"

#include <boost/uuid/detail/sha1.hpp>
#include <cstring>

namespace keygate::policies {

namespace {

// Odd 64-bit constants with well-mixed bits: 2^64 / golden ratio, and the multipliers of the
// splitmix64 and murmur3 finalizers.
constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
constexpr std::uint64_t kMixA = 0xbf58476d1ce4e5b9ULL;
constexpr std::uint64_t kMixB = 0x94d049bb133111ebULL;
constexpr std::uint64_t kFinalA = 0xff51afd7ed558ccdULL;
constexpr std::uint64_t kFinalB = 0xc4ceb9fe1a85ec53ULL;

__extension__ using Wide = unsigned __int128;

// The full 128-bit product folded to 64 bits: every input bit reaches the middle output bits.
std::uint64_t fold(std::uint64_t a, std::uint64_t b) {
  const Wide product = static_cast<Wide>(a) * b;
  return static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
}

std::uint64_t load64(const char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::uint64_t load32(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::uint64_t finalize(std::uint64_t x) {
  x ^= x >> 33;
  x *= kFinalA;
  x ^= x >> 33;
  x *= kFinalB;
  x ^= x >> 33;
  return x;
}

}  // namespace

std::uint64_t keyHash64(std::string_view key) noexcept {
  const char* p = key.data();
  std::size_t n = key.size();
  std::uint64_t h = kGolden ^ (static_cast<std::uint64_t>(n) * kMixA);
  // Blocks of 16 while more than 16 bytes remain; the last 1..16 bytes go through the tail
  // below, which reads them with (possibly overlapping) loads inside the key.
  while (n > 16) {
    h = fold(load64(p) ^ kMixA, load64(p + 8) ^ h ^ kMixB);
    p += 16;
    n -= 16;
  }
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  if (n > 8) {
    a = load64(p);
    b = load64(p + n - 8);
  } else if (n >= 4) {
    a = load32(p);
    b = load32(p + n - 4);
  } else if (n > 0) {
    const auto byte = [p](std::size_t i) {
      return static_cast<std::uint64_t>(static_cast<unsigned char>(p[i]));
    };
    a = (byte(0) << 16) | (byte(n / 2) << 8) | byte(n - 1);
  }
  return finalize(fold(a ^ kMixA, b ^ h ^ kMixB) ^ h);
}

std::string stableKeyHash(std::string_view key) {
  boost::uuids::detail::sha1 sha;
  sha.process_bytes(key.data(), key.size());
  boost::uuids::detail::sha1::digest_type digest;
  sha.get_digest(digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha1:";
  out.reserve(5 + 16);
  // The digest's first two 32-bit words, most significant nibble first, as sha1sum prints them.
  for (int word = 0; word < 2; ++word) {
    for (int shift = 28; shift >= 0; shift -= 4) {
      out.push_back(kHex[(digest[word] >> shift) & 0xf]);
    }
  }
  return out;
}

}  // namespace keygate::policies
