#pragma once

// The key registry file (SPEC.md section 3, seed 3.2): every key pattern with its owner,
// purpose, TTL contract and size budget, plus global rules. This header is the plain, validated
// shape of the YAML; config/registry.cpp loads it strictly (every error at once, with
// file:line:column and how to fix it). What a pattern *means* (its syntax, which keys it
// matches, overlaps between patterns) is policies/'s job: policies::compileRegistry().

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace keygate::config {

// Where a value sits in the registry file (1-based), for errors found after loading.
struct SourcePos {
  int line = 0;
  int column = 0;
};

enum class RegistryMode : std::uint8_t { kEnforce, kAudit };
enum class MissingTtl : std::uint8_t { kInject, kReject };
enum class TooLongTtl : std::uint8_t { kClamp, kReject };
enum class PatternKind : std::uint8_t { kKey, kChannel };  // channel: a pub/sub channel name

// `ttl:` of a pattern or of `defaults`. Either a policy (`default` required, `max` >= default,
// `jitter` < default) or an exemption with a reason (`exempt: "why this key lives forever"`).
struct TtlPolicy {
  bool present = false;  // the YAML had a ttl section
  bool exempt = false;
  std::string exemptReason;
  std::chrono::milliseconds defaultTtl{0};
  std::chrono::milliseconds max{0};     // 0: same as defaultTtl + jitter
  std::chrono::milliseconds jitter{0};  // injected TTL = default + uniform [0, jitter]
  MissingTtl missing = MissingTtl::kInject;
  TooLongTtl tooLong = TooLongTtl::kClamp;
  SourcePos pos;
};

struct PatternEntry {
  std::string pattern;  // WYSIWYG, e.g. "cpq:{tenant-<tenant>}:lock:quote-<quoteId>:submit"
  SourcePos pos;        // of the pattern value
  PatternKind kind = PatternKind::kKey;
  // seed 3.2 metadata
  std::string owner;
  std::string purpose;
  bool authority = false;  // true: Redis holds the truth for a while (locks, idempotency, ...)
  std::string sourceOfRebuild;
  std::vector<std::string> invalidation;
  std::string failureBehavior;
  bool containsPII = false;
  bool containsCommerciallySensitiveData = false;
  std::uint64_t maxExpectedCardinality = 0;
  // enforcement
  std::optional<std::uint64_t> maxValueBytes;  // unset: defaults.maxValueBytes
  std::optional<std::uint64_t> avgValueBytes;  // for the memory budget; unset: maxValueBytes
  TtlPolicy ttl;                               // !present: defaults.ttl applies (if any)
  std::optional<RegistryMode> mode;            // unset: the registry's mode
};

// A legacy key shape mapped onto a registry pattern: `from` and `to` use the pattern syntax;
// every variable of `to` comes from `from` or is <tenant> (the connection's tenant).
struct Rewrite {
  std::string from;
  std::string to;
  SourcePos pos;    // of `from`
  SourcePos toPos;  // of `to`
};

struct RegistryDefaults {
  std::uint64_t maxValueBytes = 1024 * 1024;
  TtlPolicy ttl;                           // applied to patterns without their own
  std::uint64_t perKeyOverheadBytes = 96;  // seed 3.3 memory budget: Redis' cost per key
  std::uint64_t memoryBudgetBytes = 0;     // keygate check warns past it per pattern; 0: off
};

struct Registry {
  std::string file;
  std::uint32_t version = 1;
  RegistryMode mode = RegistryMode::kEnforce;
  RegistryDefaults defaults;
  // Commands refused for every client, upper case, subcommands as "CLUSTER|FAILOVER". When the
  // file has no denyCommands, the built-in list (defaultDenyCommands()) applies.
  std::vector<std::string> denyCommands;
  // Where each of denyCommands was written, same length and order; {0, 0} for the built-in list.
  std::vector<SourcePos> denyCommandPositions;
  std::vector<PatternEntry> patterns;
  std::vector<Rewrite> rewrites;
};

// KEYS, FLUSHALL, FLUSHDB, DEBUG, CONFIG, SHUTDOWN, MONITOR, SWAPDB, SCRIPT FLUSH, FUNCTION
// FLUSH and the mutating CLUSTER subcommands.
const std::vector<std::string>& defaultDenyCommands();

struct RegistryLoadResult {
  Registry registry;
  std::vector<ConfigError> errors;
  bool ok() const { return errors.empty(); }
};

RegistryLoadResult loadRegistryFile(const std::string& path);
RegistryLoadResult loadRegistryText(std::string_view yaml, const std::string& fileName);

}  // namespace keygate::config
