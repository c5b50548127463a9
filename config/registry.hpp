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

enum class MissingTtl : std::uint8_t { kInject, kReject };
enum class TooLongTtl : std::uint8_t { kClamp, kReject };
enum class PatternKind : std::uint8_t { kKey, kChannel };  // channel: a pub/sub channel name
// What a request gets when Redis is slow or down (docs/endpoints.md): open answers in the shape
// of a miss (where the command has one), closed answers an error (TIMEOUT / UNAVAILABLE).
enum class OnFailure : std::uint8_t { kOpen, kClosed };

// `retries:` of an endpoint profile. Only idempotent reads are retried, only after a failure
// that is known at once (connection refused or reset, LOADING, BUSY, MASTERDOWN), and only
// while the budget has room for the wait.
struct RetryPolicy {
  std::uint32_t attempts = 0;            // extra tries after the first (0..5)
  std::chrono::milliseconds backoff{2};  // wait before each retry ...
  std::chrono::milliseconds jitter{3};   // ... plus a uniform random share of this
};

// `breaker:` of an endpoint profile: one breaker per profile per Redis node per worker thread.
struct BreakerPolicy {
  bool enabled = true;
  // Open after this many failures in a row (0: not by count).
  std::uint32_t consecutiveFailures = 5;
  // Open when failures / requests over the last `window` requests reach this (0: not by ratio;
  // else in (0, 1]), once at least `minRequests` of them have been seen.
  double failureRatio = 0;
  std::uint32_t window = 100;
  std::uint32_t minRequests = 20;
  // Stay open this long (requests are answered at once, without touching the network), then
  // let `halfOpenProbes` requests through; when all of them succeed the breaker closes, when
  // one fails it opens again.
  std::chrono::milliseconds openFor{1000};
  std::uint32_t halfOpenProbes = 1;
};

// One entry of `endpoints:`: the Redis time budget of a class of requests and what they get
// when Redis does not answer inside it (SPEC.md section 5, seed 11.2, 11.3, 16.2).
struct EndpointProfile {
  std::string name;  // e.g. "quote-submit"; [A-Za-z0-9._/-]
  SourcePos pos;     // of the name
  // Client names (CLIENT SETNAME / HELLO ... SETNAME) that select this profile: exact, or a
  // prefix when the entry ends in '*' ("catalog-service/*"). The longest match wins.
  std::vector<std::string> clients;
  std::vector<SourcePos> clientPositions;  // same length and order as `clients`
  std::chrono::milliseconds timeout{0};    // the Redis budget of one request (1ms..60s)
  OnFailure onFailure = OnFailure::kClosed;
  RetryPolicy retries;
  BreakerPolicy breaker;
  std::string description;  // free text, shown by `keygate check --explain`
};

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

// `nearCache:` of a pattern: keep read replies of these keys in keygate's memory and answer
// repeated reads without a network hop (SPEC.md section 3, issue 8). Entries are dropped when
// Redis reports a write to their key (CLIENT TRACKING), and in any case after `ttl`, which
// bounds how stale an answer can be when an invalidation is lost. The limits are per keygate
// process, split evenly across its worker threads.
struct NearCachePolicy {
  bool present = false;                       // the pattern has a nearCache section
  std::chrono::milliseconds ttl{0};           // required; 10ms..1h
  std::uint64_t maxBytes = 16 * 1024 * 1024;  // 1KiB..4GiB
  std::uint64_t maxEntries = 10000;           // 1..10000000
  bool allowPII = false;  // must be true to near-cache a pattern with containsPII: true
  SourcePos pos;          // of the `nearCache` key
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
  // `failureBehavior:` is either free text (what the app does when the key is unavailable) or
  // a map {endpoint: <profile name>, description: <text>}; the endpoint applies to requests on
  // this pattern from clients whose name selects no profile.
  std::string failureBehavior;  // the text (the map's `description`)
  std::string endpoint;         // the map's `endpoint`; empty: none
  SourcePos endpointPos;
  bool containsPII = false;
  bool containsCommerciallySensitiveData = false;
  std::uint64_t maxExpectedCardinality = 0;
  // enforcement
  std::optional<std::uint64_t> maxValueBytes;  // unset: defaults.maxValueBytes
  std::optional<std::uint64_t> avgValueBytes;  // for the memory budget; unset: maxValueBytes
  TtlPolicy ttl;                               // !present: defaults.ttl applies (if any)
  std::optional<RegistryMode> mode;            // unset: the registry's mode
  // Reads of these keys that are identical and in flight at the same time (same worker, same
  // request bytes) share one Redis request; every caller gets its own copy of the reply.
  bool coalesce = false;
  SourcePos coalescePos;  // of the value; {0, 0} when the file does not set it
  NearCachePolicy nearCache;
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
  // The profile of requests that neither a client name nor a pattern's failureBehavior gives
  // one. Empty: the profile named "default" if `endpoints` has one, else the built-in default
  // (policies::builtinEndpoint(): 1s, closed, no retries, breaker after 5 failures for 1s).
  std::string endpoint;
  SourcePos endpointPos;
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
  std::vector<EndpointProfile> endpoints;
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
