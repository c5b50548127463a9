#include "proxy/check_command.hpp"

#include <cstdio>
#include <ostream>

#include "proxy/registry_watcher.hpp"

namespace keygate::proxy {

namespace {

std::string bytesText(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

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

}  // namespace

int runCheckCommand(const std::string& path, std::ostream& out, std::ostream& err) {
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
  return 0;
}

}  // namespace keygate::proxy
