#pragma once

// The grammar of single configuration values, shared by the YAML loader and the command line so
// that `threads: 300` and `--threads 300` fail with the same sentence. Pure functions: no I/O, no
// exceptions. Every error string is one sentence that says what is wrong and how to fix it; it
// never starts with the key name (ConfigError::path carries that).

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "config/config.hpp"

namespace keygate::config {

// A parsed value or the reason it could not be parsed.
template <typename T>
struct Parsed {
  std::optional<T> value;
  std::string error;  // set exactly when `value` is empty

  static Parsed ok(T v) { return Parsed{std::move(v), {}}; }
  static Parsed fail(std::string why) { return Parsed{std::nullopt, std::move(why)}; }
  explicit operator bool() const { return value.has_value(); }
};

// Ranges shared by the file and the flags.
inline constexpr std::uint64_t kMaxThreads = 256;
inline constexpr std::string_view kThreadsHint = "use 0 for one worker per core";

inline constexpr std::array<std::string_view, 7> kLogLevels = {"trace", "debug",    "info", "warn",
                                                               "error", "critical", "off"};
inline constexpr std::array<std::string_view, 2> kLogFormats = {"text", "json"};
inline constexpr std::array<std::string_view, 2> kRegistryModes = {"enforce", "audit"};
inline constexpr std::array<std::string_view, 2> kUpstreamModes = {"standalone", "cluster"};
inline constexpr std::array<std::string_view, 2> kReadFromChoices = {"master", "replicaPreferred"};

// A whole decimal number: digits only, no sign, no separators.
Parsed<std::uint64_t> parseUnsigned(std::string_view text);
// parseUnsigned plus an inclusive range; `hint` (may be empty) is appended to range errors.
Parsed<std::uint64_t> parseUnsignedIn(std::string_view text, std::uint64_t min, std::uint64_t max,
                                      std::string_view hint = {});

// "250ms", "10s", "2m", "1h": a whole number followed by a unit (ms, s, m, h). A bare number is
// an error, so that nobody has to guess whether "30" meant seconds or milliseconds.
Parsed<std::chrono::milliseconds> parseDuration(std::string_view text);
Parsed<std::chrono::milliseconds> parseDurationIn(std::string_view text,
                                                  std::chrono::milliseconds min,
                                                  std::chrono::milliseconds max);

// "4096" (bytes), "512B", "64KiB", "16MiB", "1GiB", "1TiB" (powers of 1024) or "64KB", "16MB",
// "1GB", "1TB" (powers of 1000). Units are case-sensitive: "kb" is ambiguous and refused.
Parsed<std::uint64_t> parseSize(std::string_view text);
Parsed<std::uint64_t> parseSizeIn(std::string_view text, std::uint64_t min, std::uint64_t max);

// "host:port", "[v6]:port" or ":port" (host 127.0.0.1), with the reason when it is not one.
// Hosts are checked for shape only (dotted quad, IPv6 literal or DNS name); nothing is resolved.
Parsed<HostPort> parseAddress(std::string_view text);

// One of `choices`, exactly; returns its index. `noun` names the thing ("log level").
Parsed<std::size_t> parseChoice(std::string_view text, std::span<const std::string_view> choices,
                                std::string_view noun);

// "64KiB" when exact in a binary unit, else "1000B". Used in messages.
std::string formatSize(std::uint64_t bytes);
// "2m", "1500ms": the largest unit that is exact.
std::string formatDuration(std::chrono::milliseconds d);

// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
std::size_t editDistance(std::string_view a, std::string_view b);
// The candidate closest to `word` when it is close enough to be a likely typo, comparing
// case-insensitively and ignoring '_' and '-' (so "connect_timeout" finds "connectTimeout");
// failing that, one that the word starts, or that starts the word ("maxPipeline", "warning"),
// when both have at least four characters.
std::optional<std::string_view> closestMatch(std::string_view word,
                                             std::span<const std::string_view> candidates);

// Would binding/connecting to `a` and `b` reach the same socket? Loopback names and wildcard
// hosts are treated as overlapping (0.0.0.0:6380 and 127.0.0.1:6380 collide).
bool sameLocalEndpoint(const HostPort& a, const HostPort& b);
// Does connecting to `target` reach a listener bound to `listener`?
bool reachesListener(const HostPort& target, const HostPort& listener);

}  // namespace keygate::config
