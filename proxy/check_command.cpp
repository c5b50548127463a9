#include "proxy/check_command.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <string_view>
#include <vector>

#include "config/values.hpp"
#include "policies/endpoints.hpp"
#include "policies/fail_open.hpp"
#include "policies/registry_policy.hpp"
#include "proxy/registry_watcher.hpp"
#include "proxy/text_format.hpp"

namespace keygate::proxy {

namespace {

std::string durationText(std::chrono::milliseconds ms) {
  const auto n = ms.count();
  if (n > 0 && n % 86'400'000 == 0) return std::to_string(n / 86'400'000) + "d";
  if (n > 0 && n % 3'600'000 == 0) return std::to_string(n / 3'600'000) + "h";
  if (n > 0 && n % 60'000 == 0) return std::to_string(n / 60'000) + "m";
  if (n > 0 && n % 1000 == 0) return std::to_string(n / 1000) + "s";
  return std::to_string(n) + "ms";
}

std::string ttlContract(const policies::PatternRules& r) {
  if (r.channel) return "channel (no TTL)";
  const auto& own = r.entry->ttl;
  if (own.present && own.exempt) return "exempt: " + own.exemptReason;
  if (!r.ttlBound) return "none";
  std::string text = durationText(r.ttlDefault);
  if (r.ttlJitter.count() > 0) text += " + up to " + durationText(r.ttlJitter) + " jitter";
  text += ", max " + durationText(r.ttlMax);
  text += r.missing == config::MissingTtl::kInject ? "; missing: inject" : "; missing: reject";
  text += r.tooLong == config::TooLongTtl::kClamp ? ", too long: clamp" : ", too long: reject";
  return text;
}

// "ttl 30s, maxBytes 16MiB, maxEntries 10000 per keygate process (split across its workers);
// tracking prefix cpq:{tenant-<tenant>}:catalog:offering:"
std::string nearCacheSummary(const policies::CompiledRegistry& registry, std::size_t index) {
  const auto& r = registry.rules(index);
  std::string text = "ttl " + durationText(r.nearTtl) + ", maxBytes " +
                     config::formatSize(r.nearMaxBytes) + ", maxEntries " +
                     std::to_string(r.nearMaxEntries) +
                     " per keygate process (split across its workers); tracking prefix ";
  const std::string prefix = policies::trackingPrefixTemplate(registry.pattern(index));
  text += prefix.empty() ? std::string("(empty: every key)") : prefix;
  if (r.entry->containsPII) text += "; holds PII (allowPII: true)";
  return text;
}

// ---------------------------------------------------------------------------------------------
// --explain: what the application sees when Redis is slow or down

// The fail-closed error texts, as ClientSession::failureReply (and upstreamError) write them;
// keep the two in sync. The Redis address is only known at run time: HOST:PORT here (in
// cluster mode keygate writes "a cluster node" and names the node in the reason).
std::string msText(std::chrono::milliseconds ms) {
  return std::to_string(ms.count()) + "ms";
}

std::string timeoutError(const policies::Endpoint& e) {
  return "-TIMEOUT keygate: endpoint '" + e.name + "': no reply from Redis within " +
         msText(e.timeout);
}

std::string unavailableError(const policies::Endpoint& e) {
  return "-UNAVAILABLE keygate: Redis at HOST:PORT is unavailable (REASON); endpoint '" + e.name +
         "' fails closed";
}

std::string breakerError(const policies::Endpoint& e, std::string_view reason) {
  return "-UNAVAILABLE keygate: endpoint '" + e.name +
         "': circuit breaker open for Redis at HOST:PORT after " + std::string(reason) +
         "; requests go to Redis again within " + msText(e.breaker.openFor);
}

// The reasons CircuitBreaker::reason() can give for this profile's breaker.
std::vector<std::string_view> breakerReasons(const config::BreakerPolicy& b) {
  std::vector<std::string_view> reasons;
  if (!b.enabled) return reasons;
  if (b.consecutiveFailures > 0) reasons.emplace_back("consecutive failures");
  if (b.failureRatio > 0) reasons.emplace_back("failure ratio");
  return reasons;
}

std::string plural(std::uint64_t n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

std::string percentText(double ratio) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g%%", ratio * 100);
  return buf;
}

std::string breakerSummary(const config::BreakerPolicy& b) {
  if (!b.enabled) return "off: never opens, every request goes to Redis";
  std::string text = "opens after ";
  if (b.consecutiveFailures > 0) {
    text += plural(b.consecutiveFailures, "failure", "consecutive failures");
  }
  if (b.failureRatio > 0) {
    if (b.consecutiveFailures > 0) text += ", or ";
    text += percentText(b.failureRatio) + " failures over the last " +
            plural(b.window, "request", "requests") + " (at least " +
            std::to_string(b.minRequests) + " seen)";
  }
  text += "; open for " + durationText(b.openFor) + ", then " +
          plural(b.halfOpenProbes, "probe request", "probe requests");
  return text;
}

std::string retriesSummary(const config::RetryPolicy& r) {
  if (r.attempts == 0) return "none";
  return "up to " + plural(r.attempts, "extra try", "extra tries") +
         " for idempotent reads after a failure known at once, each after " +
         durationText(r.backoff) + " + up to " + durationText(r.jitter) +
         " jitter, while the budget has room";
}

std::string clientsSummary(const config::EndpointProfile* profile) {
  if (profile == nullptr || profile->clients.empty()) return "none (selected by no client name)";
  std::string exact;
  std::string prefix;
  for (const auto& c : profile->clients) {
    std::string& list = !c.empty() && c.back() == '*' ? prefix : exact;
    if (!list.empty()) list += ", ";
    list += c;
  }
  std::string text;
  if (!exact.empty()) text += "exact " + exact;
  if (!prefix.empty()) text += (text.empty() ? "" : "; ") + std::string("prefix ") + prefix;
  return text;
}

// "GET, GETEX, HGET, ..." from the class's command list.
std::string commandSample(std::string_view commands) {
  std::string out;
  std::size_t pos = 0;
  for (int n = 0; n < 3 && pos < commands.size(); ++n) {
    const std::size_t comma = commands.find(", ", pos);
    const std::string_view item =
        commands.substr(pos, comma == std::string_view::npos ? commands.npos : comma - pos);
    if (!out.empty()) out += ", ";
    out += item;
    if (comma == std::string_view::npos) return out;
    pos = comma + 2;
  }
  return out + ", ...";
}

void field(std::ostream& out, std::string_view indent, std::string_view label, std::size_t width,
           std::string_view value) {
  std::string left(indent);
  left += label;
  left.resize(std::max(left.size() + 1, indent.size() + width), ' ');
  out << left << value << "\n";
}

constexpr std::size_t kFieldWidth = 14;
constexpr std::string_view kRedisErrors = "LOADING, BUSY, MASTERDOWN, CLUSTERDOWN, TRYAGAIN";

// One situation (slow or down) of one profile.
void explainSituation(std::ostream& out, const policies::Endpoint& e, bool slow) {
  const std::string_view in = "    ";
  const auto reasons = breakerReasons(e.breaker);
  std::string waits;
  if (slow) {
    waits = durationText(e.timeout) + " (the budget), then the answer below";
    if (!reasons.empty()) waits += "; none while the breaker is open";
  } else {
    waits = "none: the answer below comes at once, not after the budget";
    if (e.retries.attempts > 0) {
      waits += " (a read is first retried up to " + plural(e.retries.attempts, "time", "times") +
               ", never past " + durationText(e.timeout) + ")";
    }
  }
  field(out, in, "app waits", kFieldWidth, waits);
  const std::string error = slow ? timeoutError(e) : unavailableError(e);
  const std::string_view code = slow ? "-TIMEOUT" : "-UNAVAILABLE";
  field(out, in, e.open ? "fails closed" : "every command", kFieldWidth, error);
  // Once the breaker has opened, requests get its answer at once (ClientSession asks the
  // breaker before it looks at the connection), until openFor has passed.
  for (std::size_t i = 0; i < reasons.size(); ++i) {
    std::string text;
    if (i > 0) {
      text = "or ";
    } else if (e.open) {
      text = "the same misses; what fails closed gets ";
    }
    field(out, in, i == 0 ? "breaker open" : "", kFieldWidth, text + breakerError(e, reasons[i]));
  }
  if (!slow) {
    field(out, in, "Redis errors", kFieldWidth,
          std::string(kRedisErrors) +
              (e.open ? ": as when down, except that what fails closed gets Redis's own error"
                      : ": Redis's own error, unchanged"));
  }
  if (!e.open) return;
  out << in << "by command class:\n";
  const auto classes = policies::missClasses();
  std::vector<std::string> labels;
  std::size_t width = 0;
  for (const auto& c : classes) {
    labels.push_back(std::string(c.name) + " (" + commandSample(c.commands) + ")");
    width = std::max(width, labels.back().size() + 2);
  }
  for (std::size_t i = 0; i < classes.size(); ++i) {
    const auto& c = classes[i];
    std::string reply;
    if (c.reply.starts_with("fails closed")) {
      reply = "fails closed: " + std::string(code);
    } else if (c.write) {
      reply = "only on authority:false patterns: " + std::string(c.reply) +
              "; on authority:true patterns fails closed: " + std::string(code);
    } else {
      reply = c.reply;
    }
    field(out, "      ", labels[i], width, reply);
  }
}

void explainEndpoint(std::ostream& out, const policies::CompiledRegistry& registry,
                     std::size_t index) {
  const auto& set = registry.endpoints();
  const auto& e = set.at(index);
  const auto& source = registry.source();
  const config::EndpointProfile* profile = nullptr;
  for (const auto& p : source.endpoints) {
    if (p.name == e.name) profile = &p;
  }
  if (e.builtin) profile = nullptr;
  out << "endpoint " << e.name;
  if (e.builtin) {
    out << " (built-in default: the file names no default profile)";
  } else if (index == set.defaultIndex()) {
    out << " (default: "
        << (source.defaults.endpoint.empty() ? "the profile named default" : "defaults.endpoint")
        << ")";
  }
  out << "\n";
  const std::string_view in = "  ";
  const std::string selected = clientsSummary(profile);
  std::size_t naming = 0;
  for (std::size_t i = 0; i < registry.patternCount(); ++i) {
    if (registry.rules(i).endpoint == static_cast<int>(index)) ++naming;
  }
  field(out, in, "clients", kFieldWidth, selected);
  field(out, in, "patterns", kFieldWidth,
        plural(naming, "pattern names", "patterns name") + " it in failureBehavior" +
            (index == set.defaultIndex() ? "; also every request that nothing else gives a profile"
                                         : ""));
  field(out, in, "budget", kFieldWidth, durationText(e.timeout) + " per request, retries included");
  field(out, in, "decision", kFieldWidth,
        e.open ? "open: a reply in the shape of a miss where the command has one, else an error"
               : "closed: an error");
  field(out, in, "retries", kFieldWidth, retriesSummary(e.retries));
  field(out, in, "breaker", kFieldWidth, breakerSummary(e.breaker));
  field(out, in, "description", kFieldWidth, e.description.empty() ? "(none)" : e.description);
  out << in << "When Redis is slow (no reply within " << durationText(e.timeout) << "):\n";
  explainSituation(out, e, true);
  out << in << "When Redis is down (connection refused or reset):\n";
  explainSituation(out, e, false);
}

std::string patternSummary(const policies::PatternRules& r, const policies::Endpoint& e) {
  const std::string error = "error (-TIMEOUT when slow, -UNAVAILABLE when down)";
  if (r.channel) return "slow/down: PUBLISH -> " + error + "; pub/sub has no miss shape";
  if (!e.open) return "slow/down: reads -> " + error + ", writes -> " + error;
  std::string text =
      "slow/down: reads -> miss (nil for GET, nils for MGET, 0 for EXISTS, empty for HGETALL), "
      "writes -> ";
  if (r.entry->authority) {
    text += error + ": authority pattern, no write fails open (a SET NX never answers OK)";
  } else {
    text +=
        "nil for SET (never OK) and 0 for SETNX / EXPIRE; DEL, INCR and other writes -> "
        "error";
  }
  return text;
}

void explainPattern(std::ostream& out, const policies::CompiledRegistry& registry,
                    std::size_t index) {
  const auto& r = registry.rules(index);
  const auto& entry = *r.entry;
  const auto& set = registry.endpoints();
  const std::string_view in = "  ";
  out << "pattern " << entry.pattern << "\n";
  field(out, in, "owner", kFieldWidth, entry.owner);
  const std::string_view authority = entry.authority
                                         ? "true (Redis holds the truth: writes never fail open)"
                                     : r.channel ? "false (a pub/sub channel)"
                                                 : "false (a cache)";
  field(out, in, "authority", kFieldWidth, authority);
  const int endpoint = r.endpoint >= 0 ? r.endpoint : set.defaultIndex();
  const auto& e = set.at(static_cast<std::size_t>(endpoint));
  std::string which = e.name + " (";
  which += r.endpoint >= 0 ? "its failureBehavior"
           : e.builtin     ? "the built-in default"
                           : "the registry's default";
  which += ", " + std::string(e.open ? "open" : "closed") + ", " + durationText(e.timeout) +
           ") when the client's name selects no profile";
  field(out, in, "endpoint", kFieldWidth, which);
  field(out, in, "on failure", kFieldWidth,
        entry.failureBehavior.empty() ? "(not described)" : entry.failureBehavior);
  if (r.nearCache) {
    // Near-cache hits never ask Redis, so they are answered also while it is slow or down; the
    // near-cache ttl bounds how old they are.
    const bool within = r.nearTtl <= r.ttlDefault;
    field(out, in, "near cache", kFieldWidth,
          "reads of near-cached keys are answered from keygate's memory, also while Redis is "
          "slow or down, each entry for at most " +
              durationText(r.nearTtl) + " after it was read from Redis (" +
              (within ? "within" : "longer than") + " the pattern's TTL " +
              durationText(r.ttlDefault) + ", its staleness budget); other reads as below");
  }
  out << in << patternSummary(r, e) << "\n";
}

}  // namespace

void writeFailureExplanation(const policies::CompiledRegistry& registry, std::ostream& out) {
  const auto& set = registry.endpoints();
  out << "When Redis is slow or down: "
      << plural(set.size(), "endpoint profile", "endpoint profiles") << ", "
      << plural(registry.patternCount(), "pattern", "patterns") << "\n";
  out << "(a request's profile: the one its client's name selects, else the strictest its "
         "keys' patterns name, else the default; docs/endpoints.md)\n";
  for (std::size_t i = 0; i < set.size(); ++i) {
    out << "\n";
    explainEndpoint(out, registry, i);
  }
  for (std::size_t i = 0; i < registry.patternCount(); ++i) {
    out << "\n";
    explainPattern(out, registry, i);
  }
}

int runCheckCommand(const std::string& path, std::ostream& out, std::ostream& err, bool explain) {
  std::vector<config::ConfigError> errors;
  auto registry = loadCompiledRegistry(path, &errors);
  if (!registry) {
    for (const auto& e : errors)
      err << e.str() << "\n";
    err << errors.size() << " registry error" << (errors.size() == 1 ? "" : "s") << " in " << path
        << "\n";
    return 1;
  }
  const auto& source = registry->source();
  const auto& defaults = source.defaults;
  out << "registry " << path << ": " << registry->patternCount() << " patterns, "
      << source.rewrites.size() << " rewrites, mode "
      << (source.mode == config::RegistryMode::kAudit ? "audit" : "enforce") << ", hash "
      << registry->hash() << "\n\n";
  double total = 0;
  std::size_t warnings = 0;
  for (std::size_t i = 0; i < registry->patternCount(); ++i) {
    const auto& r = registry->rules(i);
    const auto& e = *r.entry;
    const double valueBytes = static_cast<double>(e.avgValueBytes.value_or(r.maxValueBytes));
    const double perKey = valueBytes + static_cast<double>(defaults.perKeyOverheadBytes) +
                          static_cast<double>(e.pattern.size());
    const double budget = static_cast<double>(e.maxExpectedCardinality) * perKey;
    if (!r.channel) total += budget;
    out << e.pattern << "\n";
    out << "  owner " << e.owner << "; " << (e.authority ? "authority" : "cache")
        << (r.mode == config::RegistryMode::kAudit ? "; mode audit" : "")
        << (e.containsPII ? "; contains PII" : "")
        << (e.containsCommerciallySensitiveData ? "; commercially sensitive" : "") << "\n";
    out << "  ttl " << ttlContract(r) << "\n";
    if (!r.channel) {
      out << "  values up to " << bytesText(static_cast<double>(r.maxValueBytes))
          << "; cardinality " << e.maxExpectedCardinality << " keys x " << bytesText(perKey)
          << " = " << bytesText(budget) << "\n";
    }
    if (r.nearCache) out << "  near cache " << nearCacheSummary(*registry, i) << "\n";
    if (r.coalesce) {
      out << "  coalesce: identical reads of a key in flight at the same time on one worker share "
             "one Redis request\n";
    }
    for (const auto& warning : policies::cachingWarnings(r)) {
      ++warnings;
      out << "  WARNING: " << warning << "\n";
    }
    if (r.nearCache && policies::trackingPrefixTemplate(registry->pattern(i)).empty()) {
      ++warnings;
      out << "  WARNING: the near cache's tracking prefix is empty (the pattern starts with a "
             "variable): Redis reports every write to any key to every keygate; put a literal "
             "before the first variable\n";
    }
    if (!r.channel && defaults.memoryBudgetBytes > 0 &&
        budget > static_cast<double>(defaults.memoryBudgetBytes)) {
      ++warnings;
      out << "  WARNING: memory budget " << bytesText(budget) << " is over defaults.memoryBudget "
          << bytesText(static_cast<double>(defaults.memoryBudgetBytes))
          << "; shorten the TTL, cache selectively or lower maxExpectedCardinality\n";
    }
  }
  out << "\ntotal memory budget " << bytesText(total) << " (" << warnings << " warning"
      << (warnings == 1 ? "" : "s") << ")\n";
  if (explain) {
    out << "\n";
    writeFailureExplanation(*registry, out);
  }
  return 0;
}

}  // namespace keygate::proxy
