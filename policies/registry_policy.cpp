#include "policies/registry_policy.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>

#include "proxy/commands/per_row.hpp"
#include "proxy/resp/reply_writer.hpp"

namespace keygate::policies {

namespace {

using std::chrono::milliseconds;

constexpr std::size_t kShownKeyBytes = 120;

std::string shown(std::string_view key) {
  if (key.size() <= kShownKeyBytes) return std::string(key);
  return std::string(key.substr(0, kShownKeyBytes)) + "...";
}

std::string durationText(milliseconds ms) {
  const auto n = ms.count();
  if (n % 3'600'000 == 0 && n > 0) return std::to_string(n / 3'600'000) + "h";
  if (n % 60'000 == 0 && n > 0) return std::to_string(n / 60'000) + "m";
  if (n % 1000 == 0 && n > 0) return std::to_string(n / 1000) + "s";
  return std::to_string(n) + "ms";
}

bool parseInt64(std::string_view text, std::int64_t& value) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

bool equalsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] + 32) : a[i];
    const char y = b[i] >= 'A' && b[i] <= 'Z' ? static_cast<char>(b[i] + 32) : b[i];
    if (x != y) return false;
  }
  return true;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  return out;
}

std::uint64_t fnv1a(std::uint64_t h, std::string_view data) {
  for (const unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// How a command touches TTLs.
enum class TtlKind : std::uint8_t {
  kNone,
  kSet,        // SET: EX / PX / EXAT / PXAT / KEEPTTL options
  kSetex,      // SETEX key seconds value
  kPsetex,     // PSETEX key milliseconds value
  kGetex,      // GETEX key [EX|PX|EXAT|PXAT|PERSIST]
  kExpire,     // EXPIRE key seconds
  kPexpire,    // PEXPIRE key ms
  kExpireat,   // EXPIREAT key unix-seconds
  kPexpireat,  // PEXPIREAT key unix-ms
  kPersist,
  kRestore,  // RESTORE key ttl-ms payload [ABSTTL] ...: 0 = no TTL
  kScript,   // EVAL / EVALSHA / FCALL: the script may create any of its keys
};

TtlKind ttlKindOf(std::string_view name) {
  static constexpr std::pair<std::string_view, TtlKind> kKinds[] = {
      {"set", TtlKind::kSet},           {"setex", TtlKind::kSetex},
      {"psetex", TtlKind::kPsetex},     {"getex", TtlKind::kGetex},
      {"expire", TtlKind::kExpire},     {"pexpire", TtlKind::kPexpire},
      {"expireat", TtlKind::kExpireat}, {"pexpireat", TtlKind::kPexpireat},
      {"persist", TtlKind::kPersist},   {"restore", TtlKind::kRestore},
      {"eval", TtlKind::kScript},       {"evalsha", TtlKind::kScript},
      {"fcall", TtlKind::kScript},
  };
  for (const auto& [n, k] : kKinds) {
    if (n == name) return k;
  }
  return TtlKind::kNone;
}

// How a command names channels, or lists the keyspace (checkChannels).
enum class ChannelKind : std::uint8_t {
  kNone,
  kPublish,     // PUBLISH / SPUBLISH channel message
  kSubscribe,   // SUBSCRIBE / SSUBSCRIBE channel...
  kPsubscribe,  // PSUBSCRIBE pattern...
  kKeyspace,    // SCAN, RANDOMKEY, KEYS: every tenant's keys
};

// What evaluate() needs to know about a top-level command, by name.
struct CommandTraits {
  TtlKind ttl = TtlKind::kNone;
  ChannelKind channel = ChannelKind::kNone;
  bool pairs = false;  // MSET / MSETNX: key value pairs
};

CommandTraits traitsByName(std::string_view name) {
  CommandTraits t;
  t.ttl = ttlKindOf(name);
  if (name == "publish" || name == "spublish") {
    t.channel = ChannelKind::kPublish;
  } else if (name == "subscribe" || name == "ssubscribe") {
    t.channel = ChannelKind::kSubscribe;
  } else if (name == "psubscribe") {
    t.channel = ChannelKind::kPsubscribe;
  } else if (name == "scan" || name == "randomkey" || name == "keys") {
    t.channel = ChannelKind::kKeyspace;
  }
  t.pairs = name == "mset" || name == "msetnx";
  return t;
}

CommandTraits traitsOfRow(const commands::CommandInfo& row) {
  return traitsByName(row.name);
}

CommandTraits traitsOf(const commands::CommandInfo& top) {
  return commands::PerRow<CommandTraits, &traitsOfRow>::of(top);
}

// A TTL as decimal digits in a buffer on the stack (std::to_chars), not a std::string of its own.
struct Digits {
  char text[24];
  std::size_t size = 0;
  std::string_view view() const { return {text, size}; }
};

Digits digitsOf(std::uint64_t n) {
  Digits d;
  char* const end = d.text + sizeof d.text;
  // 32-bit arithmetic where it fits (TTLs up to ~49 days): cheaper than 64-bit division.
  const auto result = n <= UINT32_MAX ? std::to_chars(d.text, end, static_cast<std::uint32_t>(n))
                                      : std::to_chars(d.text, end, n);
  d.size = static_cast<std::size_t>(result.ptr - d.text);
  return d;
}

// A key this write may create without giving it a TTL.
bool mayCreate(const commands::CommandInfo& info, std::uint32_t keyFlags) {
  if (!info.has(commands::kWrite)) return false;
  if ((keyFlags & commands::kKeyDelete) != 0) return false;
  return (keyFlags & (commands::kKeyInsert | commands::kKeyUpdate | commands::kKeyOW)) != 0;
}

class Evaluation {
 public:
  Evaluation(const CompiledRegistry& registry, const commands::CommandInfo& info,
             const commands::CommandInfo& top, std::span<const std::string_view> argv,
             const RequestContext& context, RandomSource& random, EvaluateScratch& scratch,
             Decision& out)
      : registry_(registry),
        info_(info),
        top_(top),
        argv_(argv),
        context_(context),
        random_(random),
        scratch_(scratch),
        out_(out),
        traits_(traitsOf(top)) {}

  void run();

 private:
  // True when the request is refused (stop evaluating).
  bool violate(Reason reason, const PatternRules* rules, std::string message);
  bool checkChannels();
  bool checkKey(std::size_t i);
  // Inline: without a tenant or an ACL user (most requests) they are one test.
  bool checkTenant(const PatternRules& rules, std::string_view key) {
    return !context_.tenant.empty() && rules.tenantScoped && tenantViolation(rules, key);
  }
  bool checkAcl(int pattern, std::string_view name, std::string_view what) {
    return context_.allowedPatterns != nullptr && aclViolation(pattern, name, what);
  }
  bool tenantViolation(const PatternRules& rules, std::string_view key);
  bool aclViolation(int pattern, std::string_view name, std::string_view what);
  bool checkValueSizes();
  bool applyTtl();
  bool clampOrRefuse(const PatternRules& rules, std::string_view key, std::size_t argIndex,
                     std::int64_t value, std::int64_t unitMs, bool absolute);
  void hideExpire(std::string_view key, const PatternRules& rules);
  Digits ttlValue(const PatternRules& rules);
  std::string_view arg(std::size_t i) const {
    return out_.rewritten ? std::string_view(out_.args[i]) : argv_[i];
  }
  void setArg(std::size_t i, std::string value);
  const PatternRules* keyRules(std::size_t keyIndex) const {
    const int p = scratch_.patterns[keyIndex];
    return p < 0 ? nullptr : &registry_.rules(static_cast<std::size_t>(p));
  }

  const CompiledRegistry& registry_;
  const commands::CommandInfo& info_;
  const commands::CommandInfo& top_;
  std::span<const std::string_view> argv_;
  const RequestContext& context_;
  RandomSource& random_;
  EvaluateScratch& scratch_;
  Decision& out_;
  const CommandTraits traits_;
};

bool Evaluation::violate(Reason reason, const PatternRules* rules, std::string message) {
  const auto mode = rules != nullptr ? rules->mode : registry_.source().mode;
  if (mode == config::RegistryMode::kAudit) {
    ++out_.audited[static_cast<std::size_t>(reason)];
    return false;
  }
  out_.refuse = true;
  out_.reason = reason;
  out_.error = std::move(message);
  return true;
}

void Evaluation::setArg(std::size_t i, std::string value) {
  if (!out_.rewritten) {
    out_.rewritten = true;
    out_.args.assign(argv_.begin(), argv_.end());
  }
  out_.args[i] = std::move(value);
}

void Evaluation::run() {
  if (registry_.denied(info_, top_)) {
    std::string name = upper(info_.name);
    std::replace(name.begin(), name.end(), '|', ' ');
    violate(Reason::kDenied, nullptr,
            "DENIED keygate: " + name +
                " is in the registry's denyCommands; run it against Redis directly if an "
                "operator really means it");
    return;
  }
  if (checkChannels()) return;
  scratch_.keys.clear();
  commands::extractKeys(info_, argv_, scratch_.keys);
  if (scratch_.keys.empty()) return;
  scratch_.patterns.assign(scratch_.keys.size(), -1);
  for (std::size_t i = 0; i < scratch_.keys.size(); ++i) {
    if (checkKey(i)) return;
  }
  out_.pattern = scratch_.patterns[0];
  bool cacheOnly = true;
  int endpoint = -1;
  for (const int p : scratch_.patterns) {
    if (p < 0) {
      cacheOnly = false;  // audit mode let an unregistered key through
      continue;
    }
    const auto& rules = registry_.rules(static_cast<std::size_t>(p));
    cacheOnly = cacheOnly && !rules.entry->authority;
    if (rules.endpoint >= 0) endpoint = registry_.endpoints().stricter(endpoint, rules.endpoint);
  }
  out_.cacheOnly = cacheOnly;
  out_.endpoint = endpoint;
  if (checkValueSizes()) return;
  applyTtl();
}

bool Evaluation::checkChannels() {
  const ChannelKind kind = traits_.channel;
  if (kind == ChannelKind::kNone) return false;
  const std::string_view name = top_.name;
  std::size_t first = 0, last = 0;
  const bool publish = kind == ChannelKind::kPublish;
  if (publish) {
    first = last = 1;
  } else if (kind == ChannelKind::kSubscribe) {
    first = 1;
    last = argv_.size() - 1;
  } else if (!context_.tenant.empty() && kind == ChannelKind::kKeyspace) {
    // They list the whole keyspace, every tenant's keys included.
    return violate(Reason::kCrossTenant, nullptr,
                   "CROSSTENANT keygate: " + upper(name) +
                       " would list other tenants' keys on a connection bound to tenant '" +
                       std::string(context_.tenant) +
                       "'; read this tenant's keys by name, or scan from an unbound connection");
  } else if (kind == ChannelKind::kPsubscribe) {
    // A glob cannot be checked against the channel patterns; on a connection bound to a
    // tenant it could deliver other tenants' messages.
    if (context_.tenant.empty()) return false;
    return violate(Reason::kCrossTenant, nullptr,
                   "CROSSTENANT keygate: PSUBSCRIBE could receive other tenants' messages on a "
                   "connection bound to tenant '" +
                       std::string(context_.tenant) +
                       "'; SUBSCRIBE to this tenant's channels by name instead");
  } else {
    return false;
  }
  for (std::size_t i = first; i <= last && i < argv_.size(); ++i) {
    const std::string_view channel = argv_[i];
    scratch_.captures.clear();
    const int p =
        registry_.keys().match(channel, context_.tenant.empty() ? nullptr : &scratch_.captures);
    if (p < 0 || !registry_.rules(static_cast<std::size_t>(p)).channel) {
      if (violate(Reason::kUnknownChannel, nullptr,
                  "CHANNELUNKNOWN keygate: channel '" + shown(channel) +
                      "' matches no registry pattern of kind channel; add it to the registry "
                      "(kind: channel) or fix the channel name")) {
        return true;
      }
      if (checkAcl(-1, channel, "channel")) return true;
      continue;
    }
    const auto& rules = registry_.rules(static_cast<std::size_t>(p));
    if (out_.pattern < 0) out_.pattern = p;
    if (checkAcl(p, channel, "channel")) return true;
    if (checkTenant(rules, channel)) return true;
    if (publish && argv_.size() > 2 && argv_[2].size() > rules.maxValueBytes &&
        violate(Reason::kValueTooLarge, &rules,
                "VALUETOOLARGE keygate: a message of " + std::to_string(argv_[2].size()) +
                    " bytes for channel pattern '" + rules.entry->pattern +
                    "' is over its maxValueBytes " + std::to_string(rules.maxValueBytes) +
                    "; publish an identifier and let subscribers fetch the data, or raise "
                    "maxValueBytes")) {
      return true;
    }
  }
  return false;
}

bool Evaluation::aclViolation(int pattern, std::string_view name, std::string_view what) {
  const auto* allowed = context_.allowedPatterns;
  if (pattern >= 0 && static_cast<std::size_t>(pattern) < allowed->size() &&
      (*allowed)[static_cast<std::size_t>(pattern)] != 0) {
    return false;
  }
  // Security, not hygiene: refused in audit mode too.
  out_.refuse = true;
  out_.reason = Reason::kNoPermission;
  std::string message = "NOPERM keygate: user '" + std::string(context_.user) +
                        "' has no permissions to access the " + std::string(what) + " '" +
                        shown(name) + "'";
  if (pattern >= 0) {
    message += " (pattern '" + registry_.rules(static_cast<std::size_t>(pattern)).entry->pattern +
               "' is not in the user's acl patterns)";
  } else {
    message += " (it matches no registry pattern)";
  }
  out_.error = std::move(message);
  return true;
}

bool Evaluation::tenantViolation(const PatternRules& rules, std::string_view key) {
  for (const auto& c : scratch_.captures) {
    if (c.name == "tenant" && c.value != context_.tenant) {
      return violate(Reason::kCrossTenant, &rules,
                     "CROSSTENANT keygate: '" + shown(key) + "' belongs to tenant '" +
                         std::string(c.value) + "', and this connection is bound to tenant '" +
                         std::string(context_.tenant) + "'");
    }
  }
  return false;
}

bool Evaluation::checkKey(std::size_t i) {
  const std::size_t argIndex = scratch_.keys[i].argIndex;
  std::string_view key = arg(argIndex);
  scratch_.captures.clear();
  Captures* captures = context_.tenant.empty() ? nullptr : &scratch_.captures;
  int p = registry_.keys().match(key, captures);
  if (p >= 0 && registry_.rules(static_cast<std::size_t>(p)).channel) p = -1;
  if (p < 0 && !registry_.rewrites().empty()) {
    // A legacy shape: rewrite it onto its canonical pattern, filling <tenant> from the
    // connection.
    scratch_.captures.clear();
    const int r = registry_.rewriteFrom().match(key, &scratch_.captures);
    if (r >= 0) {
      const auto& rule = registry_.rewrites()[static_cast<std::size_t>(r)];
      if (!context_.tenant.empty()) scratch_.captures.push_back({"tenant", context_.tenant});
      std::string canonical;
      std::string error;
      if (rule.to.expand(scratch_.captures, canonical, &error)) {
        setArg(argIndex, std::move(canonical));
        ++out_.keysRewritten;
        key = arg(argIndex);
        scratch_.captures.clear();
        p = registry_.keys().match(key, captures);
      }
    }
  }
  if (p < 0) {
    std::string message = "KEYUNKNOWN keygate: key '" + shown(key) + "' (shape '" +
                          registry_.keys().shapeOf(key) + "') matches no registry pattern";
    const int closest = registry_.keys().closest(key);
    if (closest >= 0) {
      message += "; closest pattern: '" +
                 registry_.keys().pattern(static_cast<std::size_t>(closest)).text() + "'";
    }
    message += "; register the key shape in the registry or fix the key name";
    if (violate(Reason::kUnknownKey, nullptr, std::move(message))) return true;
    return checkAcl(-1, key, "key");
  }
  scratch_.patterns[i] = p;
  if (checkAcl(p, key, "key")) return true;
  return checkTenant(registry_.rules(static_cast<std::size_t>(p)), key);
}

bool Evaluation::checkValueSizes() {
  if (!info_.has(commands::kWrite)) return false;
  const bool pairs = traits_.pairs;
  std::uint64_t smallest = UINT64_MAX;
  const PatternRules* smallestRules = nullptr;
  for (std::size_t k = 0; k < scratch_.keys.size(); ++k) {
    const PatternRules* rules = keyRules(k);
    if (rules != nullptr && rules->maxValueBytes < smallest) {
      smallest = rules->maxValueBytes;
      smallestRules = rules;
    }
  }
  if (smallestRules == nullptr) return false;
  for (std::size_t i = 1; i < argv_.size(); ++i) {
    const PatternRules* rules = smallestRules;
    bool isKey = false;
    for (std::size_t k = 0; k < scratch_.keys.size(); ++k) {
      if (scratch_.keys[k].argIndex == i) isKey = true;
      // MSET: a value is judged by the pattern of the key before it.
      if (pairs && scratch_.keys[k].argIndex + 1 == i && keyRules(k) != nullptr) {
        rules = keyRules(k);
      }
    }
    if (isKey || argv_[i].size() <= rules->maxValueBytes) continue;
    if (violate(Reason::kValueTooLarge, rules,
                "VALUETOOLARGE keygate: a value of " + std::to_string(argv_[i].size()) +
                    " bytes for pattern '" + rules->entry->pattern +
                    "' is over its maxValueBytes " + std::to_string(rules->maxValueBytes) +
                    "; store less (split or compress it) or raise maxValueBytes in the registry")) {
      return true;
    }
  }
  return false;
}

Digits Evaluation::ttlValue(const PatternRules& rules) {
  const auto jitter = static_cast<std::uint64_t>(rules.ttlJitter.count());
  const auto ms = static_cast<std::uint64_t>(rules.ttlDefault.count()) +
                  (jitter > 0 ? random_.upTo(jitter) : 0);
  return digitsOf(ms);
}

void Evaluation::hideExpire(std::string_view key, const PatternRules& rules) {
  const Digits ttl = ttlValue(rules);
  resp::appendCommand(out_.hidden,
                      {std::string_view("PEXPIRE"), key, ttl.view(), std::string_view("NX")});
  ++out_.hiddenCount;
  out_.hiddenEnds.push_back(static_cast<std::uint32_t>(out_.hidden.size()));
  out_.hiddenKeys.emplace_back(key);
  ++out_.ttlInjected;
}

bool Evaluation::clampOrRefuse(const PatternRules& rules, std::string_view key,
                               std::size_t argIndex, std::int64_t value, std::int64_t unitMs,
                               bool absolute) {
  const std::int64_t nowMs =
      std::chrono::duration_cast<milliseconds>((context_.now.time_since_epoch().count() != 0
                                                    ? context_.now
                                                    : std::chrono::system_clock::now())
                                                   .time_since_epoch())
          .count();
  const std::int64_t relativeMs = absolute ? value * unitMs - nowMs : value * unitMs;
  const std::int64_t maxMs = rules.ttlMax.count();
  if (relativeMs <= maxMs) return false;
  if (rules.mode == config::RegistryMode::kAudit) {
    ++out_.audited[static_cast<std::size_t>(Reason::kTtlTooLong)];
    return false;
  }
  if (rules.tooLong == config::TooLongTtl::kReject) {
    return violate(Reason::kTtlTooLong, &rules,
                   "TTLTOOLONG keygate: a TTL of " + durationText(milliseconds(relativeMs)) +
                       " for '" + shown(key) + "' is over pattern '" + rules.entry->pattern +
                       "' ttl.max " + durationText(rules.ttlMax) + "; use at most " +
                       durationText(rules.ttlMax));
  }
  std::int64_t clamped = absolute ? (nowMs + maxMs) / unitMs : maxMs / unitMs;
  if (clamped <= 0) clamped = 1;
  setArg(argIndex, std::to_string(clamped));
  ++out_.ttlClamped;
  return false;
}

bool Evaluation::applyTtl() {
  const TtlKind kind = traits_.ttl;
  for (std::size_t k = 0; k < scratch_.keys.size(); ++k) {
    const PatternRules* rules = keyRules(k);
    if (rules == nullptr || !rules->ttlBound) continue;
    const std::size_t keyIndex = scratch_.keys[k].argIndex;
    const std::string_view key = arg(keyIndex);
    const bool audit = rules->mode == config::RegistryMode::kAudit;
    auto missing = [&]() -> bool {
      // A write that leaves the key without a TTL.
      if (rules->missing == config::MissingTtl::kReject) {
        return violate(Reason::kTtlRequired, rules,
                       "TTLREQUIRED keygate: '" + shown(key) + "' (pattern '" +
                           rules->entry->pattern +
                           "') must be written with a TTL (ttl.missing: reject); add EX/PX, "
                           "or SET it with a TTL first");
      }
      return false;  // inject (or, in audit mode, leave alone): nothing is refused
    };
    std::int64_t n = 0;
    switch (kind) {
      case TtlKind::kPersist:
        if (violate(Reason::kPersist, rules,
                    "TTLPERSIST keygate: '" + shown(key) + "' (pattern '" + rules->entry->pattern +
                        "') must keep a TTL; PERSIST would make it live forever")) {
          return true;
        }
        break;
      case TtlKind::kExpire:
      case TtlKind::kPexpire:
      case TtlKind::kExpireat:
      case TtlKind::kPexpireat: {
        if (argv_.size() < 3 || !parseInt64(argv_[2], n)) break;  // Redis answers the error
        const bool ms = kind == TtlKind::kPexpire || kind == TtlKind::kPexpireat;
        const bool at = kind == TtlKind::kExpireat || kind == TtlKind::kPexpireat;
        if (clampOrRefuse(*rules, key, 2, n, ms ? 1 : 1000, at)) return true;
        break;
      }
      case TtlKind::kSetex:
      case TtlKind::kPsetex:
        if (argv_.size() < 3 || !parseInt64(argv_[2], n)) break;
        if (clampOrRefuse(*rules, key, 2, n, kind == TtlKind::kPsetex ? 1 : 1000, false)) {
          return true;
        }
        break;
      case TtlKind::kGetex:
        for (std::size_t i = 2; i < argv_.size(); ++i) {
          if (equalsNoCase(argv_[i], "persist")) {
            if (violate(Reason::kPersist, rules,
                        "TTLPERSIST keygate: '" + shown(key) + "' (pattern '" +
                            rules->entry->pattern +
                            "') must keep a TTL; GETEX PERSIST would make it live forever")) {
              return true;
            }
          } else if (i + 1 < argv_.size() && parseInt64(argv_[i + 1], n)) {
            const bool ex = equalsNoCase(argv_[i], "ex"), px = equalsNoCase(argv_[i], "px");
            const bool exat = equalsNoCase(argv_[i], "exat"), pxat = equalsNoCase(argv_[i], "pxat");
            if (ex || px || exat || pxat) {
              if (clampOrRefuse(*rules, key, i + 1, n, (ex || exat) ? 1000 : 1, exat || pxat)) {
                return true;
              }
              ++i;
            }
          }
        }
        break;
      case TtlKind::kSet: {
        bool hasTtl = false, keepTtl = false;
        for (std::size_t i = 3; i < argv_.size(); ++i) {
          const std::string_view opt = argv_[i];
          if (equalsNoCase(opt, "keepttl")) {
            keepTtl = true;
            continue;
          }
          const bool ex = equalsNoCase(opt, "ex"), px = equalsNoCase(opt, "px");
          const bool exat = equalsNoCase(opt, "exat"), pxat = equalsNoCase(opt, "pxat");
          if (!(ex || px || exat || pxat) || i + 1 >= argv_.size()) continue;
          hasTtl = true;
          if (parseInt64(argv_[i + 1], n) &&
              clampOrRefuse(*rules, key, i + 1, n, (ex || exat) ? 1000 : 1, exat || pxat)) {
            return true;
          }
          ++i;
        }
        if (hasTtl) break;
        if (missing()) return true;
        if (audit || rules->missing == config::MissingTtl::kReject) break;
        if (keepTtl) {
          hideExpire(key, *rules);  // keeps an existing TTL, gives one to a new key
        } else {
          auto& tail = out_.rewritten ? out_.args : out_.appended;
          tail.emplace_back("PX");
          tail.emplace_back(ttlValue(*rules).view());
          ++out_.ttlInjected;
        }
        break;
      }
      case TtlKind::kRestore: {
        if (argv_.size() < 3 || !parseInt64(argv_[2], n)) break;
        bool absolute = false;
        for (std::size_t i = 4; i < argv_.size(); ++i)
          absolute = absolute || equalsNoCase(argv_[i], "absttl");
        if (n > 0) {
          if (clampOrRefuse(*rules, key, 2, n, 1, absolute)) return true;
          break;
        }
        if (missing()) return true;
        if (!audit && rules->missing == config::MissingTtl::kInject) hideExpire(key, *rules);
        break;
      }
      case TtlKind::kScript:
        // Whatever the script writes: a key it creates gets a TTL, one it had is left alone.
        if (!audit && rules->missing == config::MissingTtl::kInject) hideExpire(key, *rules);
        break;
      case TtlKind::kNone:
        if (!mayCreate(info_, scratch_.keys[k].flags)) break;
        if (missing()) return true;
        if (audit || rules->missing == config::MissingTtl::kReject) break;
        hideExpire(key, *rules);
        break;
    }
  }
  return false;
}

}  // namespace

std::string_view reasonName(Reason r) {
  switch (r) {
    case Reason::kDenied:
      return "denied";
    case Reason::kUnknownKey:
      return "unknown_key";
    case Reason::kUnknownChannel:
      return "unknown_channel";
    case Reason::kCrossTenant:
      return "cross_tenant";
    case Reason::kValueTooLarge:
      return "value_too_large";
    case Reason::kTtlRequired:
      return "ttl_required";
    case Reason::kTtlTooLong:
      return "ttl_too_long";
    case Reason::kPersist:
      return "ttl_persist";
    case Reason::kNoPermission:
      return "no_permission";
    case Reason::kCount:
      break;
  }
  return "unknown";
}

void Decision::clear() {
  refuse = false;
  reason = Reason::kCount;
  error.clear();
  pattern = -1;
  endpoint = -1;
  cacheOnly = false;
  rewritten = false;
  args.clear();
  appended.clear();
  hidden.clear();
  hiddenCount = 0;
  hiddenEnds.clear();
  hiddenKeys.clear();
  audited.fill(0);
  ttlInjected = ttlClamped = keysRewritten = 0;
}

bool CompiledRegistry::denied(const commands::CommandInfo& info,
                              const commands::CommandInfo& top) const {
  const std::size_t i = commands::Redis70Rows::indexOf(top);
  if (i >= deniedTop_.size()) return false;  // not a row of the Redis 7.0 table
  const auto mark = deniedTop_[i];
  if (mark != 2) return mark == 1;
  return std::find(deniedSub_.begin(), deniedSub_.end(), &info) != deniedSub_.end();
}

std::shared_ptr<const CompiledRegistry> CompiledRegistry::compile(
    config::Registry registry, std::vector<config::ConfigError>* errors) {
  std::shared_ptr<CompiledRegistry> out(new CompiledRegistry());
  const std::size_t errorsBefore = errors->size();
  auto error = [&](config::SourcePos pos, std::string path, std::string message) {
    errors->push_back({registry.file, pos.line, pos.column, std::move(path), std::move(message)});
  };

  std::vector<std::string> texts;
  texts.reserve(registry.patterns.size());
  for (const auto& p : registry.patterns)
    texts.push_back(p.pattern);
  std::vector<PatternProblem> problems;
  out->keys_ = KeyMatcher::build(texts, &problems);
  for (const auto& problem : problems) {
    const auto& entry = registry.patterns[problem.index];
    error(entry.pos, "patterns[" + std::to_string(problem.index) + "].pattern", problem.message);
  }

  const auto& defaults = registry.defaults;
  out->rules_.resize(registry.patterns.size());
  for (std::size_t i = 0; i < registry.patterns.size(); ++i) {
    const auto& entry = registry.patterns[i];
    auto& r = out->rules_[i];
    r.channel = entry.kind == config::PatternKind::kChannel;
    r.maxValueBytes = entry.maxValueBytes.value_or(defaults.maxValueBytes);
    const config::TtlPolicy& ttl = entry.ttl.present ? entry.ttl : defaults.ttl;
    r.ttlBound = !r.channel && ttl.present && !ttl.exempt;
    r.ttlDefault = ttl.defaultTtl;
    r.ttlJitter = ttl.jitter;
    r.ttlMax = ttl.max.count() > 0 ? ttl.max : ttl.defaultTtl + ttl.jitter;
    r.missing = ttl.missing;
    r.tooLong = ttl.tooLong;
    r.mode = entry.mode.value_or(registry.mode);
    r.coalesce = !r.channel && entry.coalesce;
    r.nearCache = !r.channel && entry.nearCache.present;
    if (r.nearCache) {
      r.nearTtl = entry.nearCache.ttl;
      r.nearMaxBytes = entry.nearCache.maxBytes;
      r.nearMaxEntries = entry.nearCache.maxEntries;
    }
  }

  const auto& table = commands::CommandTable::redis70();
  // The loader puts the built-in list here when the file has no denyCommands; `[]` denies none.
  const auto& deny = registry.denyCommands;
  out->deniedTop_.assign(table.all().size(), 0);
  for (std::size_t d = 0; d < deny.size(); ++d) {
    const std::string& name = deny[d];
    const config::SourcePos namePos = d < registry.denyCommandPositions.size()
                                          ? registry.denyCommandPositions[d]
                                          : config::SourcePos{};
    const auto bar = name.find('|');
    const commands::CommandInfo* row = table.find(name.substr(0, bar));
    const commands::CommandInfo* top = row;
    if (row != nullptr && bar != std::string::npos) {
      const std::string sub = lower(name.substr(0, bar)) + "|" + lower(name.substr(bar + 1));
      const commands::CommandInfo* found = nullptr;
      for (const auto& s : row->subcommands) {
        if (s.name == sub) found = &s;
      }
      row = found;
    }
    if (row == nullptr) {
      error(namePos, "denyCommands[" + std::to_string(d) + "]",
            "'" + name +
                "' is not a Redis 7.0 command; use names as in COMMAND INFO, e.g. "
                "FLUSHALL or CLUSTER FAILOVER");
      continue;
    }
    auto& mark = out->deniedTop_[static_cast<std::size_t>(top - table.all().data())];
    if (row == top) {
      mark = 1;
    } else {
      if (mark == 0) mark = 2;
      out->deniedSub_.push_back(row);
    }
  }

  std::vector<std::string> fromTexts;
  std::vector<std::size_t> fromIndex;  // rewrite index of each entry of fromTexts
  for (std::size_t i = 0; i < registry.rewrites.size(); ++i) {
    const auto& rw = registry.rewrites[i];
    const std::string path = "rewrites[" + std::to_string(i) + "]";
    std::string why;
    auto from = KeyPattern::parse(rw.from, &why);
    if (!from) {
      error(rw.pos, path + ".from", why);
      continue;
    }
    auto to = KeyPattern::parse(rw.to, &why);
    if (!to) {
      error(rw.toPos, path + ".to", why);
      continue;
    }
    std::size_t target = SIZE_MAX;
    for (std::size_t p = 0; p < registry.patterns.size(); ++p) {
      if (registry.patterns[p].pattern == rw.to) target = p;
    }
    if (target == SIZE_MAX) {
      error(rw.toPos, path + ".to",
            "'" + rw.to +
                "' is not one of the registry's patterns; a rewrite must land on a "
                "registered pattern (copy its text exactly)");
      continue;
    }
    bool ok = true;
    for (const auto name : to->variableNames()) {
      if (name != "tenant" && !from->hasVariable(name)) {
        error(rw.toPos, path + ".to",
              "variable <" + std::string(name) + "> of the target does not appear in '" + rw.from +
                  "'; every variable except <tenant> must come from the legacy key");
        ok = false;
      }
    }
    if (!ok) continue;
    fromTexts.push_back(rw.from);
    fromIndex.push_back(i);
    out->rewrites_.push_back({std::move(*from), std::move(*to), target});
  }
  std::vector<PatternProblem> rewriteProblems;
  out->rewriteFrom_ = KeyMatcher::build(fromTexts, &rewriteProblems);
  for (const auto& problem : rewriteProblems) {
    const std::size_t i = fromIndex[problem.index];
    error(registry.rewrites[i].pos, "rewrites[" + std::to_string(i) + "].from", problem.message);
  }

  // The hash names the rules in force (patterns, TTLs, sizes, modes, rewrites, denials).
  std::uint64_t h = 1469598103934665603ull;
  h = fnv1a(h, registry.mode == config::RegistryMode::kAudit ? "audit" : "enforce");
  for (std::size_t i = 0; i < registry.patterns.size(); ++i) {
    const auto& r = out->rules_[i];
    h = fnv1a(h, registry.patterns[i].pattern);
    h = fnv1a(h, std::to_string(r.maxValueBytes) + "/" + std::to_string(r.ttlDefault.count()) +
                     "/" + std::to_string(r.ttlMax.count()) + "/" +
                     std::to_string(r.ttlJitter.count()) + "/" +
                     std::to_string(static_cast<int>(r.missing)) +
                     std::to_string(static_cast<int>(r.tooLong)) +
                     std::to_string(static_cast<int>(r.mode)) + (r.ttlBound ? "t" : "f"));
    // Only when set, so that a registry without them keeps the hash it had before issue 8.
    if (r.coalesce) h = fnv1a(h, "/coalesce");
    if (r.nearCache) {
      h = fnv1a(h, "/near/" + std::to_string(r.nearTtl.count()) + "/" +
                       std::to_string(r.nearMaxBytes) + "/" + std::to_string(r.nearMaxEntries));
    }
  }
  for (const auto& rw : registry.rewrites)
    h = fnv1a(h, rw.from + "->" + rw.to);
  for (const auto& d : deny)
    h = fnv1a(h, d);
  out->endpoints_ = EndpointSet::build(registry);
  for (std::size_t i = 0; i < registry.patterns.size(); ++i) {
    const auto& name = registry.patterns[i].endpoint;
    if (!name.empty()) out->rules_[i].endpoint = out->endpoints_.find(name);
  }
  for (const auto& e : out->endpoints_.all()) {
    h = fnv1a(h, e.name + "/" + std::to_string(e.timeout.count()) + (e.open ? "o" : "c"));
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  out->hash_ = hex;

  out->registry_ = std::move(registry);
  for (std::size_t i = 0; i < out->rules_.size(); ++i) {
    out->rules_[i].entry = &out->registry_.patterns[i];
    out->rules_[i].tenantScoped =
        out->keys_.size() > i && out->keys_.pattern(i).hasVariable("tenant");
  }
  if (errors->size() != errorsBefore) return nullptr;
  return out;
}

std::string_view trackingPrefix(const KeyPattern& pattern, std::string_view key) {
  std::size_t start = 0;  // where segment i begins in `key`
  for (std::size_t i = 0; i < pattern.segmentCount(); ++i) {
    const detail::Segment& segment = pattern.segment(i);
    const std::size_t colon = key.find(':', start);
    const std::string_view run =
        key.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start);
    for (std::size_t k = 0; k < segment.vars.size(); ++k) {
      if (pattern.variableName(segment.vars[k]) == kTenantVariable) continue;
      if (k == 0) return key.substr(0, start + segment.prefix.size());
      // <tenant> comes first in this segment: only a match tells where its value ends.
      Captures captures;
      if (!pattern.matchSegment(i, run, &captures) || captures.size() <= k) return key;
      return key.substr(0, static_cast<std::size_t>(captures[k].value.data() - key.data()));
    }
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  return key;
}

std::string trackingPrefixTemplate(const KeyPattern& pattern) {
  for (std::size_t i = 0; i < pattern.segmentCount(); ++i) {
    for (const std::uint32_t v : pattern.segment(i).vars) {
      if (pattern.variableName(v) == kTenantVariable) continue;
      return pattern.text().substr(0, pattern.variable(v).nameOffset - 1);  // before its '<'
    }
  }
  return pattern.text();
}

std::vector<std::string> cachingWarnings(const PatternRules& rules) {
  std::vector<std::string> out;
  if (rules.nearCache && rules.ttlBound && rules.nearTtl > rules.ttlDefault) {
    out.push_back("the near cache may serve a value up to " + durationText(rules.nearTtl) +
                  " old, longer than the pattern's TTL " + durationText(rules.ttlDefault) +
                  " (its staleness budget); lower nearCache.ttl to at most " +
                  durationText(rules.ttlDefault));
  }
  if (rules.coalesce && rules.entry != nullptr && rules.entry->authority) {
    out.push_back(
        "coalesce on an authority: true pattern: a read joining one already in flight can see "
        "a value from just before it was sent (a lock or a counter read a moment late); remove "
        "coalesce unless every reader of these keys accepts that");
  }
  return out;
}

void evaluate(const CompiledRegistry& registry, const commands::CommandInfo& info,
              const commands::CommandInfo& top, std::span<const std::string_view> argv,
              const RequestContext& context, RandomSource& random, EvaluateScratch& scratch,
              Decision& out) {
  out.clear();
  Evaluation(registry, info, top, argv, context, random, scratch, out).run();
}

}  // namespace keygate::policies
