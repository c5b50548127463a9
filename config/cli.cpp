// Command line -> CliOptions. Values are kept as text here and validated by applyOverrides with
// the same rules as the file, so `--threads 300` and `threads: 300` say the same thing.

#include <algorithm>
#include <array>
#include <string_view>

#include "config/config.hpp"
#include "config/values.hpp"

namespace keygate::config {
namespace {

struct Flag {
  std::string_view longName;   // "--listen"
  std::string_view shortName;  // "-h", or empty
  std::string_view valueName;  // "HOST:PORT"; empty for a flag that takes no value
  std::string_view example;    // a valid value, shown when the value is missing
  std::string_view help;
  void (*apply)(CliOptions&, std::string);
};

// The one list of flags: parsing and usage() both read it.
constexpr std::array<Flag, 12> kFlags = {{
    {"--config", "", "FILE", "/etc/keygate/keygate.yaml",
     "YAML configuration file (without it, the built-in defaults)",
     [](CliOptions& o, std::string v) { o.configPath = std::move(v); }},
    {"--listen", "", "HOST:PORT", "127.0.0.1:6380", "address clients connect to (overrides listen)",
     [](CliOptions& o, std::string v) { o.overrides.listen = std::move(v); }},
    {"--upstream", "", "HOST:PORT", "127.0.0.1:6379",
     "Redis to forward to (overrides upstream.address; in cluster mode, the seed)",
     [](CliOptions& o, std::string v) { o.overrides.upstream = std::move(v); }},
    {"--cluster", "", "HOST:PORT,...", "10.0.0.1:6379,10.0.0.2:6379",
     "Redis Cluster seed nodes (sets upstream.mode: cluster and upstream.seeds)",
     [](CliOptions& o, std::string v) { o.overrides.cluster = std::move(v); }},
    {"--admin", "", "HOST:PORT", "127.0.0.1:9180",
     "admin HTTP listener: /metrics, health checks (overrides admin)",
     [](CliOptions& o, std::string v) { o.overrides.admin = std::move(v); }},
    {"--registry", "", "FILE", "/etc/keygate/registry/registry.yaml",
     "key registry to enforce (overrides registry; `keygate check FILE` lints one)",
     [](CliOptions& o, std::string v) { o.overrides.registry = std::move(v); }},
    {"--registry-mode", "", "MODE", "audit",
     "enforce or audit, whatever the registry file's mode says (overrides registryMode)",
     [](CliOptions& o, std::string v) { o.overrides.registryMode = std::move(v); }},
    {"--threads", "", "N", "4", "worker threads, 0 for one per core (overrides threads)",
     [](CliOptions& o, std::string v) { o.overrides.threads = std::move(v); }},
    {"--log-level", "", "LEVEL", "info",
     "trace, debug, info, warn, error, critical, off (overrides log.level)",
     [](CliOptions& o, std::string v) { o.overrides.logLevel = std::move(v); }},
    {"--log-format", "", "FORMAT", "json", "text or json (overrides log.format)",
     [](CliOptions& o, std::string v) { o.overrides.logFormat = std::move(v); }},
    {"--help", "-h", "", "", "print this help and exit",
     [](CliOptions& o, std::string) { o.action = CliAction::kHelp; }},
    {"--version", "-V", "", "", "print the version and exit",
     [](CliOptions& o, std::string) {
       if (o.action == CliAction::kRun) o.action = CliAction::kVersion;  // --help wins
     }},
}};

const Flag* findFlag(std::string_view name) {
  const auto it = std::find_if(kFlags.begin(), kFlags.end(), [&](const Flag& f) {
    return f.longName == name || (!f.shortName.empty() && f.shortName == name);
  });
  return it == kFlags.end() ? nullptr : &*it;
}

ConfigError usageError(std::string_view path, std::string message) {
  return ConfigError{"", 0, 0, std::string(path), std::move(message)};
}

std::string missingValue(const Flag& flag) {
  return "missing value; write " + std::string(flag.longName) + " " + std::string(flag.valueName) +
         ", e.g. " + std::string(flag.longName) + " " + std::string(flag.example);
}

}  // namespace

CliResult parseCommandLine(int argc, const char* const* argv) {
  CliResult result;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i] != nullptr ? argv[i] : "";
      if (arg.size() < 2 || arg.front() != '-') {
        result.errors.push_back(
            usageError("", "unexpected argument '" + std::string(arg) +
                               "'; keygate takes only flags, run keygate --help for the list"));
        continue;
      }
      std::string_view name = arg;
      std::optional<std::string_view> inlineValue;
      if (arg.starts_with("--")) {
        if (const auto eq = arg.find('='); eq != std::string_view::npos) {
          name = arg.substr(0, eq);
          inlineValue = arg.substr(eq + 1);
        }
      }
      const Flag* flag = findFlag(name);
      if (flag == nullptr) {
        std::vector<std::string_view> known;
        for (const auto& f : kFlags)
          known.push_back(f.longName);
        std::string message = "unknown flag '" + std::string(name) + "'; ";
        if (const auto near = closestMatch(name, known)) {
          message += "did you mean '" + std::string(*near) + "'?";
        } else {
          message += "run keygate --help for the list of flags";
        }
        result.errors.push_back(usageError(name, std::move(message)));
        // Its value, if it had one, is part of the same mistake: one error, not two.
        if (!inlineValue && i + 1 < argc && argv[i + 1] != nullptr && argv[i + 1][0] != '-') ++i;
        continue;
      }
      if (flag->valueName.empty()) {
        if (inlineValue) {
          result.errors.push_back(
              usageError(name, "takes no value; write " + std::string(flag->longName) + " alone"));
          continue;
        }
        flag->apply(result.options, {});
        continue;
      }
      std::string_view value;
      if (inlineValue) {
        value = *inlineValue;
      } else if (i + 1 < argc && argv[i + 1] != nullptr &&
                 !std::string_view(argv[i + 1]).starts_with("--")) {
        value = argv[++i];
      }
      if (value.empty()) {
        result.errors.push_back(usageError(name, missingValue(*flag)));
        continue;
      }
      flag->apply(result.options, std::string(value));
    }
  } catch (const std::exception& e) {
    result.errors.push_back(
        usageError("", "internal error while reading flags: " + std::string(e.what())));
  }
  return result;
}

std::string usage() {
  std::string out =
      "Usage: keygate [--config FILE] [flags]\n"
      "       keygate check [--explain] FILE\n"
      "       keygate audit (--upstream HOST:PORT | --cluster HOST:PORT,...) --registry FILE\n"
      "                     [--rate KEYS_PER_SEC] [--json] ...   (keygate audit --help)\n"
      "\n"
      "keygate is a RESP caching proxy. It listens for Redis clients, enforces the key\n"
      "registry's policies and forwards to Redis. Flags override values from the file.\n"
      "`keygate check FILE` lints a key registry (exit 0 valid, 1 not); with --explain it\n"
      "also prints, per endpoint profile and per pattern, what clients see when Redis is\n"
      "slow and when it is down. `keygate audit` walks a live Redis with SCAN at a bounded\n"
      "rate and reports keys per pattern, keys without TTL, orphans and the biggest keys.\n"
      "\n"
      "Flags:\n";
  constexpr std::size_t kColumn = 27;
  for (const auto& f : kFlags) {
    std::string left = "  ";
    if (!f.shortName.empty()) left += std::string(f.shortName) + ", ";
    left += f.longName;
    if (!f.valueName.empty()) left += " " + std::string(f.valueName);
    left.resize(std::max(left.size() + 2, kColumn), ' ');
    out += left + std::string(f.help) + "\n";
  }
  out +=
      "\n"
      "Each flag accepts '--flag value' and '--flag=value'; a flag given twice keeps the last.\n"
      "Every configuration key is described in config/README.md.\n";
  return out;
}

}  // namespace keygate::config
