#pragma once

// Two hashes of a Redis key, for two different jobs:
//
//   keyHash64()      fast, non-cryptographic, 64 bits; what the per-request sketches (hot keys,
//                    HyperLogLog) index and count by. Stable across processes (no seed) but
//                    easy to invert for short keys and easy to collide on purpose: never show it.
//   stableKeyHash()  SHA-1, for showing a key of a pattern marked containsPII or
//                    containsCommerciallySensitiveData in /hotkeys, /bigkeys and metrics
//                    instead of the key itself. Same output for the same key in every process
//                    and after every restart (no random seed), so dashboards and logs of
//                    different instances can be correlated, and an operator who already knows
//                    a key can find it with `printf %s KEY | sha1sum`.
//
// Hashing hides, it does not encrypt: a key built from a guessable ID (a sequential order
// number, an e-mail address from a known list) can be found again by hashing every candidate.
// The hash only keeps the clear value off the admin pages; it is not a substitute for access
// control on the admin port.

#include <cstdint>
#include <string>
#include <string_view>

namespace keygate::policies {

// 64-bit hash of `key` (multiply-fold over 16-byte blocks, then a murmur3-style finalizer).
// Not collision-resistant against chosen keys; every table indexed by it is bounded, so a
// crafted key set can slow a lookup to a scan of that table, never grow memory.
std::uint64_t keyHash64(std::string_view key) noexcept;

// "sha1:" followed by the first 16 hex digits (64 bits) of SHA-1(key), lowercase: the first 16
// characters `sha1sum` prints for the same bytes.
std::string stableKeyHash(std::string_view key);

}  // namespace keygate::policies
