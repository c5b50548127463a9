#pragma once

// Helpers shared by the codec fuzz targets (built by libFuzzer and by the seed replayer).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

// An invariant the target checks; a violation aborts, which the fuzzer reports as a finding.
#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace keygate::fuzz {

// True when `part` (a view the codec returned) lies inside `whole` (the input it was given).
inline bool within(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

// FNV-1a, used to derive deterministic split points from the input itself.
inline std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (char c : s)
    h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

}  // namespace keygate::fuzz
