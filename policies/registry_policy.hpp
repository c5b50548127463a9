#pragma once

// The registry, compiled for the request path (SPEC.md sections 3 and 4), and the decision it
// makes about one request: forward as is, forward rewritten (canonical keys, an injected or
// clamped TTL), forward followed by hidden commands (EXPIRE NX on keys created without a TTL),
// or refuse with an error whose first word is a stable code. Pure: no sockets, no clocks or
// randomness of its own (the caller passes the time and a random source), so every rule is
// unit-tested.
//
// Error codes (first word of the error reply):
//   DENIED          the command is in denyCommands
//   KEYUNKNOWN      a key matches no registry pattern
//   CHANNELUNKNOWN  a pub/sub channel matches no `kind: channel` pattern
//   CROSSTENANT     a key of another tenant on a connection bound to a tenant
//   VALUETOOLARGE   an argument larger than the pattern's maxValueBytes
//   TTLREQUIRED     a write without a TTL to a pattern with `ttl.missing: reject`
//   TTLTOOLONG      a TTL above the pattern's ttl.max with `ttl.tooLong: reject`
//   TTLPERSIST      PERSIST / GETEX PERSIST on a TTL-bound key
//   NOPERM          an ACL user's key or channel outside its patterns (never audit-only)

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/registry.hpp"
#include "policies/endpoints.hpp"
#include "policies/key_matcher.hpp"
#include "policies/key_pattern.hpp"
#include "proxy/commands/command_table.hpp"

namespace keygate::policies {

// A pattern's rules with the registry's defaults applied.
struct PatternRules {
  const config::PatternEntry* entry = nullptr;
  bool channel = false;
  bool tenantScoped = false;  // the pattern has <tenant>
  std::uint64_t maxValueBytes = 0;
  bool ttlBound = false;  // a TTL policy applies (own or defaults.ttl; not exempt)
  std::chrono::milliseconds ttlDefault{0};
  std::chrono::milliseconds ttlMax{0};  // default + jitter when the file gave none
  std::chrono::milliseconds ttlJitter{0};
  config::MissingTtl missing = config::MissingTtl::kInject;
  config::TooLongTtl tooLong = config::TooLongTtl::kClamp;
  config::RegistryMode mode = config::RegistryMode::kEnforce;
  int endpoint = -1;  // failureBehavior's profile (EndpointSet index), -1: none
  // Issue 8 (config::PatternEntry::coalesce / nearCache); both false on a channel pattern.
  bool coalesce = false;                 // identical concurrent reads share one Redis request
  bool nearCache = false;                // read replies are kept in keygate's memory
  std::chrono::milliseconds nearTtl{0};  // the longest an entry is served; 0 when !nearCache
  std::uint64_t nearMaxBytes = 0;        // per keygate process (all workers); 0 when !nearCache
  std::uint64_t nearMaxEntries = 0;      // per keygate process (all workers); 0 when !nearCache
};

enum class Reason : std::uint8_t {
  kDenied,
  kUnknownKey,
  kUnknownChannel,
  kCrossTenant,
  kValueTooLarge,
  kTtlRequired,
  kTtlTooLong,
  kPersist,
  kNoPermission,
  kCount,
};
std::string_view reasonName(Reason r);  // "denied", "unknown_key", ... (metric labels)

class CompiledRegistry {
 public:
  // Compiles a loaded registry: pattern syntax, overlaps, rewrite targets. Errors (with the
  // file position of the pattern or rewrite) make the result null.
  static std::shared_ptr<const CompiledRegistry> compile(config::Registry registry,
                                                         std::vector<config::ConfigError>* errors);

  const config::Registry& source() const { return registry_; }
  const KeyMatcher& keys() const { return keys_; }
  const PatternRules& rules(std::size_t index) const { return rules_[index]; }
  // The compiled pattern of rules(index).
  const KeyPattern& pattern(std::size_t index) const { return keys_.pattern(index); }
  std::size_t patternCount() const { return rules_.size(); }
  // `info` the resolved row (a subcommand for containers), `top` the top-level row.
  bool denied(const commands::CommandInfo& info, const commands::CommandInfo& top) const;
  // A hash of the file's content, for /registry and the version metric.
  const std::string& hash() const { return hash_; }
  // Endpoint profiles (never empty: the default is among them).
  const EndpointSet& endpoints() const { return endpoints_; }

  struct RewriteRule {
    KeyPattern from;
    KeyPattern to;
    std::size_t target = 0;  // pattern index `to` produces
  };
  const std::vector<RewriteRule>& rewrites() const { return rewrites_; }
  const KeyMatcher& rewriteFrom() const { return rewriteFrom_; }

 private:
  CompiledRegistry() = default;

  config::Registry registry_;
  KeyMatcher keys_;
  std::vector<PatternRules> rules_;
  // By top-level row index (CommandTable::all()): 1 the command is denied, 2 some of its
  // subcommands are (deniedSub_), 0 neither.
  std::vector<std::uint8_t> deniedTop_;
  std::vector<const commands::CommandInfo*> deniedSub_;
  std::vector<RewriteRule> rewrites_;
  KeyMatcher rewriteFrom_;
  EndpointSet endpoints_;
  std::string hash_;
};

// The Redis CLIENT TRACKING BCAST prefix that covers `key` (which matches `pattern`): the key's
// bytes up to where the pattern's first variable other than <tenant> begins (the whole key for
// a pattern without such a variable). Per tenant, so a write to another tenant's keys is not
// broadcast to this keygate. E.g. "cpq:{tenant-<tenant>}:catalog:offering:<offeringId>:v<v:int>"
// and "cpq:{tenant-acme}:catalog:offering:o1:v3" give "cpq:{tenant-acme}:catalog:offering:".
// Views into `key`. No allocation, except when <tenant> and that variable share one
// ':'-separated segment ("x:{t-<tenant>}-<id>"), where the segment is matched to find where
// <tenant>'s value ends. A key that does not match the pattern gives the whole key.
std::string_view trackingPrefix(const KeyPattern& pattern, std::string_view key);

// trackingPrefix in the pattern's own syntax, for `keygate check`:
// "cpq:{tenant-<tenant>}:catalog:offering:" for the pattern above.
std::string trackingPrefixTemplate(const KeyPattern& pattern);

// What `keygate check` warns about a pattern's near cache and coalescing: settings that load but
// deserve a second look (the near-cache ttl over the pattern's TTL, its staleness budget;
// coalescing on an authority pattern). One sentence each, saying how to fix it; empty when
// there is nothing to say.
std::vector<std::string> cachingWarnings(const PatternRules& rules);

// Uniform random numbers for TTL jitter (tests inject a fixed sequence).
class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // A number in [0, bound], uniformly.
  virtual std::uint64_t upTo(std::uint64_t bound) = 0;
};

struct RequestContext {
  std::string_view tenant;  // empty: not bound to a tenant
  // An ACL user's patterns: one byte per registry pattern (Acl::allowedPatterns), 1 allowed.
  // Null: no ACL user, every pattern allowed. `user` names it in errors.
  const std::vector<std::uint8_t>* allowedPatterns = nullptr;
  std::string_view user;
  // For EXPIREAT / EXAT / PXAT / RESTORE ABSTTL; the epoch (unset) means "read the clock when
  // needed", so most requests never do.
  std::chrono::system_clock::time_point now{};
};

// What to do with one request. Reused per session: evaluate() clears it.
struct Decision {
  bool refuse = false;
  Reason reason = Reason::kCount;
  std::string error;  // refuse: the error text, code first (no '-' or CRLF)
  int pattern = -1;   // the first key's pattern (-1: none / keyless)
  // The strictest endpoint profile the request's key patterns name (-1: none), and whether
  // every key is on a cache pattern (authority: false; only then may a write fail open).
  int endpoint = -1;
  bool cacheOnly = false;

  bool rewritten = false;         // send `args` instead of the client's argv
  std::vector<std::string> args;  // rewritten: the whole argv
  // Not rewritten, but these arguments go after the client's (SET ... PX ttl): the request
  // is the client's bytes with a new array length, no copy of its values.
  std::vector<std::string> appended;
  // Hidden commands (RESP, PEXPIRE key ms NX) to send right after the request on the
  // connection of hiddenKeys[i]'s slot; their replies are dropped. Keys are the request's
  // (or, rewritten, `args`') keys.
  std::string hidden;
  std::size_t hiddenCount = 0;
  std::vector<std::uint32_t> hiddenEnds;  // end offset in `hidden` of each command
  std::vector<std::string> hiddenKeys;

  // Violations let through because their pattern (or the registry) is in audit mode.
  std::array<std::uint32_t, static_cast<std::size_t>(Reason::kCount)> audited{};
  std::uint32_t ttlInjected = 0;
  std::uint32_t ttlClamped = 0;
  std::uint32_t keysRewritten = 0;

  void clear();
};

// Scratch buffers evaluate() reuses between calls (one per session).
struct EvaluateScratch {
  std::vector<commands::KeyRef> keys;
  std::vector<int> patterns;  // per key
  Captures captures;
};

void evaluate(const CompiledRegistry& registry, const commands::CommandInfo& info,
              const commands::CommandInfo& top, std::span<const std::string_view> argv,
              const RequestContext& context, RandomSource& random, EvaluateScratch& scratch,
              Decision& out);

}  // namespace keygate::policies
