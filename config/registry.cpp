// Registry YAML -> Registry. Same strict walk as the process configuration (yaml_reader.hpp):
// one table of fields per section, every problem reported with file:line:column, the YAML path
// and how to fix it, then the checks that need the whole file (a cache pattern's TTL contract
// may come from `defaults:`, which can be written after the patterns). What a pattern means
// (its syntax, overlaps) is checked by policies::compileRegistry(), not here.

#include "config/registry.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <span>
#include <system_error>

#include "config/values.hpp"
#include "config/yaml_reader.hpp"

namespace keygate::config {

using std::chrono::milliseconds;

namespace {

constexpr std::uint64_t kMiB = 1024ull * 1024;
constexpr std::uint64_t kTiB = 1024ull * 1024 * kMiB;
// Redis refuses strings over 512 MiB (proto-max-bulk-len), so no larger limit means anything.
constexpr std::uint64_t kMaxValueBytesLimit = 512 * kMiB;
constexpr std::uint64_t kMaxPerKeyOverhead = kMiB;
constexpr std::uint64_t kMaxMemoryBudget = 1024 * kTiB;
constexpr std::uint64_t kMaxCardinality = 1'000'000'000'000ull;
// A TTL beyond a year is no staleness budget: such keys should say why with `exempt`.
constexpr milliseconds kMaxTtl = std::chrono::hours(24 * 365);
// Only so that parse errors come from the duration grammar; the range is checked here.
constexpr milliseconds kAnyDuration = std::chrono::hours(1'000'000);

constexpr std::array<std::string_view, 2> kModes = {"enforce", "audit"};
constexpr std::array<std::string_view, 2> kKinds = {"key", "channel"};
constexpr std::array<std::string_view, 2> kMissingChoices = {"inject", "reject"};
constexpr std::array<std::string_view, 2> kTooLongChoices = {"clamp", "reject"};
constexpr std::array<std::string_view, 5> kTtlPolicyKeys = {"default", "max", "jitter", "missing",
                                                            "tooLong"};

constexpr std::string_view kExample = "config/examples/cpq-registry.yaml";

SourcePos posOf(const YAML::Mark& mark) {
  if (mark.is_null()) return {};
  return {mark.line + 1, mark.column + 1};
}

std::string trimmed(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

bool isCommandChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

char upper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

// "cluster failover" or "CLUSTER|FAILOVER" -> "CLUSTER|FAILOVER"; empty when it is not one or
// two words of letters, digits, '_' and '-'.
std::string canonicalCommand(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  for (const char c : text) {
    if (c == ' ' || c == '\t' || c == '|') {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
      if (c == '|' && words.empty()) return {};  // "|FAILOVER"
      continue;
    }
    if (!isCommandChar(c)) return {};
    word.push_back(upper(c));
  }
  if (!word.empty()) words.push_back(std::move(word));
  if (words.empty() || words.size() > 2) return {};
  return words.size() == 1 ? words[0] : words[0] + "|" + words[1];
}

class RegistryLoader;

using Field = FieldOf<RegistryLoader>;
using Section = SectionOf<RegistryLoader>;

// What the checks after the walk need to know about one `ttl:` map.
struct TtlMarks {
  std::string path;  // "patterns[2].ttl"
  YAML::Mark at;     // the map (or the key, when the value is missing)
};

// What the checks after the walk need to know about one pattern entry.
struct PatternCheck {
  std::string path;  // "patterns[2]"
  YAML::Mark at;     // the list item
};

class RegistryLoader : public YamlReader {
 public:
  RegistryLoader(const std::string& file, RegistryLoadResult& out)
      : YamlReader(file, out.errors), out_(out) {}

  void load(std::string_view yaml);

  Registry& registry() { return out_.registry; }
  PatternEntry& pattern() { return *pattern_; }
  TtlPolicy& ttl() { return *ttl_; }
  Rewrite& rewrite() { return *rewrite_; }

  void readDefaults(const Entry& e);
  void readTtl(const Entry& e);
  void readTtlDuration(const Entry& e, milliseconds TtlPolicy::*field);
  void readExempt(const Entry& e);
  void readValueBytes(const Entry& e, std::optional<std::uint64_t>& out);
  void readDenyCommands(const Entry& e);
  void readPatterns(const Entry& e);
  void readInvalidation(const Entry& e);
  void readRewrites(const Entry& e);
  // A string that must say something: owner, purpose, pattern.
  std::optional<std::string> readText(const Entry& e, std::string_view example);

 private:
  // A list of mappings: `patterns:` and `rewrites:`. Calls `readItem(entry)` for each mapping.
  template <typename ReadItem>
  void readListOfMaps(const Entry& e, std::string_view noun, std::string_view example,
                      ReadItem readItem);
  void readPattern(const Entry& item);
  void readRewrite(const Entry& item);
  void checkTtl(const TtlPolicy& policy, const TtlMarks& marks, bool isDefaults);
  void checkAcrossSections();

  RegistryLoadResult& out_;
  PatternEntry* pattern_ = nullptr;
  TtlPolicy* ttl_ = nullptr;
  Rewrite* rewrite_ = nullptr;
  std::vector<PatternCheck> patternChecks_;  // parallel to registry().patterns
  bool sawDenyCommands_ = false;
};

// ---- schema -------------------------------------------------------------------------------

constexpr Field kTtlFields[] = {
    {"default",
     [](RegistryLoader& l, const Entry& e) { l.readTtlDuration(e, &TtlPolicy::defaultTtl); }},
    {"max", [](RegistryLoader& l, const Entry& e) { l.readTtlDuration(e, &TtlPolicy::max); }},
    {"jitter", [](RegistryLoader& l, const Entry& e) { l.readTtlDuration(e, &TtlPolicy::jitter); }},
    {"missing",
     [](RegistryLoader& l, const Entry& e) {
       if (auto i = l.readChoice(e, kMissingChoices, "missing-TTL action")) {
         l.ttl().missing = *i == 0 ? MissingTtl::kInject : MissingTtl::kReject;
       }
     }},
    {"tooLong",
     [](RegistryLoader& l, const Entry& e) {
       if (auto i = l.readChoice(e, kTooLongChoices, "too-long-TTL action")) {
         l.ttl().tooLong = *i == 0 ? TooLongTtl::kClamp : TooLongTtl::kReject;
       }
     }},
    {"exempt", [](RegistryLoader& l, const Entry& e) { l.readExempt(e); }},
};

constexpr Field kDefaultsFields[] = {
    {"maxValueBytes",
     [](RegistryLoader& l, const Entry& e) {
       std::optional<std::uint64_t> v;
       l.readValueBytes(e, v);
       if (v) l.registry().defaults.maxValueBytes = *v;
     }},
    {"ttl", [](RegistryLoader& l, const Entry& e) { l.readTtl(e); }},
    {"perKeyOverheadBytes",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readSize(e, 0, kMaxPerKeyOverhead)) {
         l.registry().defaults.perKeyOverheadBytes = *v;
       }
     }},
    {"memoryBudget",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readSize(e, 0, kMaxMemoryBudget)) {
         l.registry().defaults.memoryBudgetBytes = *v;
       }
     }},
};

constexpr Field kPatternFields[] = {
    {"pattern",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readText(e, "pattern: \"cpq:{tenant-<tenant>}:lock:quote-<quoteId>\"")) {
         l.pattern().pattern = *v;
         l.pattern().pos = posOf(e.at());
       }
     }},
    {"kind",
     [](RegistryLoader& l, const Entry& e) {
       if (auto i = l.readChoice(e, kKinds, "pattern kind")) {
         l.pattern().kind = *i == 0 ? PatternKind::kKey : PatternKind::kChannel;
       }
     }},
    {"owner",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readText(e, "owner: pricing-service")) l.pattern().owner = *v;
     }},
    {"purpose",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readText(e, "purpose: cache calculated price previews for the UI")) {
         l.pattern().purpose = *v;
       }
     }},
    {"authority",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readBool(e)) l.pattern().authority = *v;
     }},
    {"sourceOfRebuild",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readString(e)) l.pattern().sourceOfRebuild = *v;
     }},
    {"invalidation", [](RegistryLoader& l, const Entry& e) { l.readInvalidation(e); }},
    {"failureBehavior",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readString(e)) l.pattern().failureBehavior = *v;
     }},
    {"containsPII",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readBool(e)) l.pattern().containsPII = *v;
     }},
    {"containsCommerciallySensitiveData",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readBool(e)) l.pattern().containsCommerciallySensitiveData = *v;
     }},
    {"maxExpectedCardinality",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readUint(e, 0, kMaxCardinality,
                               "give the expected number of live keys, e.g. 500000")) {
         l.pattern().maxExpectedCardinality = *v;
       }
     }},
    {"maxValueBytes",
     [](RegistryLoader& l, const Entry& e) { l.readValueBytes(e, l.pattern().maxValueBytes); }},
    {"avgValueBytes",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readSize(e, 1, kMaxValueBytesLimit)) l.pattern().avgValueBytes = *v;
     }},
    {"ttl", [](RegistryLoader& l, const Entry& e) { l.readTtl(e); }},
    {"mode",
     [](RegistryLoader& l, const Entry& e) {
       if (auto i = l.readChoice(e, kModes, "mode")) {
         l.pattern().mode = *i == 0 ? RegistryMode::kEnforce : RegistryMode::kAudit;
       }
     }},
};

constexpr Field kRewriteFields[] = {
    {"from",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readText(e, "from: \"catalog:offering-<offeringId>\"")) {
         l.rewrite().from = *v;
         l.rewrite().pos = posOf(e.at());
       }
     }},
    {"to",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readText(e, "to: \"cpq:{tenant-<tenant>}:catalog:offering:<offeringId>\"")) {
         l.rewrite().to = *v;
         l.rewrite().toPos = posOf(e.at());
       }
     }},
};

constexpr Field kTopFields[] = {
    {"version",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readUint(e, 1, 1, "this keygate reads registry format version 1")) {
         l.registry().version = static_cast<std::uint32_t>(*v);
       }
     }},
    {"mode",
     [](RegistryLoader& l, const Entry& e) {
       if (auto i = l.readChoice(e, kModes, "mode")) {
         l.registry().mode = *i == 0 ? RegistryMode::kEnforce : RegistryMode::kAudit;
       }
     }},
    {"defaults", [](RegistryLoader& l, const Entry& e) { l.readDefaults(e); }},
    {"denyCommands", [](RegistryLoader& l, const Entry& e) { l.readDenyCommands(e); }},
    {"patterns", [](RegistryLoader& l, const Entry& e) { l.readPatterns(e); }},
    {"rewrites", [](RegistryLoader& l, const Entry& e) { l.readRewrites(e); }},
};

constexpr Section kTopSection{"", kTopFields, "e.g. mode: enforce"};
constexpr Section kDefaultsSection{"defaults", kDefaultsFields,
                                   "e.g. defaults: {maxValueBytes: 1MiB, ttl: {default: 10m}}"};
constexpr Section kPatternSection{"patterns", kPatternFields, "", "in each entry of 'patterns:'"};
constexpr Section kTtlSection{"ttl", kTtlFields, "e.g. ttl: {default: 5m, jitter: 30s, max: 10m}"};
constexpr Section kRewriteSection{"rewrites", kRewriteFields, "", "in each entry of 'rewrites:'"};

constexpr const Section* kAllSections[] = {&kTopSection, &kDefaultsSection, &kPatternSection,
                                           &kTtlSection, &kRewriteSection};
constexpr std::span<const Section* const> kSections(kAllSections);

// ---- loader -------------------------------------------------------------------------------

void RegistryLoader::load(std::string_view yaml) {
  registry().file = file();
  const auto document = parse(std::string(yaml));
  if (!document) return;  // a syntax error, reported
  const YAML::Node& root = *document;
  if (root.IsNull()) {
    // Not "no rules": an empty file is far more often a failed mount or a truncated write, and
    // in enforce mode an empty registry would refuse every key.
    report(YAML::Mark(), "",
           "the registry file is empty; give it at least a patterns: list (see " +
               std::string(kExample) + ")");
    return;
  }
  if (!root.IsMap()) {
    report(root.Mark(), "",
           "the top level must be a mapping with keys such as 'mode:', 'defaults:' and "
           "'patterns:', got " +
               kindOf(root) + "; see " + std::string(kExample));
    return;
  }
  walkMap(*this, root, "", kTopSection, kSections);
  if (!isSet("patterns")) {
    report(YAML::Mark(), "patterns",
           "the registry has no 'patterns:' list; add one with an entry per key pattern (write "
           "patterns: [] only if every key should be refused)");
  }
  if (!sawDenyCommands_) {
    registry().denyCommands = defaultDenyCommands();
    registry().denyCommandPositions.assign(registry().denyCommands.size(), SourcePos{});
  }
  checkAcrossSections();
  sortErrors();
}

std::optional<std::string> RegistryLoader::readText(const Entry& e, std::string_view example) {
  auto v = readString(e);
  if (v && trimmed(*v).empty()) {
    report(e.at(), e.path, "must not be empty; e.g. " + std::string(example));
    return std::nullopt;
  }
  return v;
}

void RegistryLoader::readDefaults(const Entry& e) {
  // A section whose keys are all commented out is empty, not wrong: its defaults apply.
  if (!e.value.IsDefined() || e.value.IsNull()) return;
  if (!e.value.IsMap()) {
    report(e.at(), e.path,
           "'defaults' is a section with the keys " + joinNames(kDefaultsSection.fields) +
               ", got " + kindOf(e.value) + "; indent its keys below it, " +
               std::string(kDefaultsSection.example));
    return;
  }
  walkMap(*this, e.value, e.path, kDefaultsSection, kSections);
}

void RegistryLoader::readValueBytes(const Entry& e, std::optional<std::uint64_t>& out) {
  const auto v = readSize(e, 0, std::numeric_limits<std::uint64_t>::max());
  if (!v) return;
  if (*v > kMaxValueBytesLimit) {
    report(e.at(), e.path,
           "must be between 1B and " + formatSize(kMaxValueBytesLimit) + ", got " +
               e.value.Scalar() + "; Redis refuses larger strings, so give at most " +
               formatSize(kMaxValueBytesLimit));
    return;
  }
  if (*v == 0) {
    report(e.at(), e.path,
           "a limit of 0 bytes would refuse every write; give the largest value these keys "
           "should hold, e.g. 64KiB");
    return;
  }
  out = *v;
}

void RegistryLoader::readTtl(const Entry& e) {
  const bool isDefaults = e.path == "defaults.ttl";
  TtlPolicy& policy = isDefaults ? registry().defaults.ttl : pattern().ttl;
  const TtlMarks marks{e.path, e.at()};
  if (!e.value.IsDefined() || e.value.IsNull()) {
    report(e.at(), e.path,
           "missing value; write the TTL contract, e.g. ttl: {default: 5m, jitter: 30s}, or "
           "ttl: {exempt: \"why these keys may live forever\"}, or remove the ttl key");
    return;
  }
  if (!e.value.IsMap()) {
    std::string example = "{default: 5m, jitter: 30s}";
    if (e.value.IsScalar()) example = "{default: " + e.value.Scalar() + "}";
    report(e.at(), e.path,
           "ttl is a section, got " + kindOf(e.value) + "; write ttl: " + example +
               " (add max:, jitter:, missing: and tooLong: as needed), or ttl: {exempt: \"why\"}");
    return;
  }
  TtlPolicy parsed;
  parsed.pos = posOf(e.at());
  ttl_ = &parsed;
  const std::size_t errorsBefore = out_.errors.size();
  walkMap(*this, e.value, e.path, kTtlSection, kSections);
  ttl_ = nullptr;
  checkTtl(parsed, marks, isDefaults);
  if (out_.errors.size() == errorsBefore) {
    parsed.present = true;
    policy = std::move(parsed);
  }
}

void RegistryLoader::readTtlDuration(const Entry& e, milliseconds TtlPolicy::*field) {
  const auto v = readDuration(e, milliseconds(0), kAnyDuration);
  if (!v) return;
  const std::string key = e.path.substr(e.path.rfind('.') + 1);
  if (*v > kMaxTtl) {
    report(e.at(), e.path,
           "a TTL over a year (" + formatDuration(kMaxTtl) +
               ") is no staleness budget; shorten it, or make the keys exempt with a reason: "
               "ttl: {exempt: \"why\"}");
    return;
  }
  if (*v == milliseconds(0) && key == "default") {
    report(e.at(), e.path,
           "a default TTL of 0 would expire keys as they are written; give how long the data "
           "may be served, e.g. default: 5m");
    return;
  }
  if (*v == milliseconds(0) && key == "max") {
    report(e.at(), e.path,
           "a max TTL of 0 would refuse or cut every TTL; remove max (it then defaults to "
           "default + jitter) or give the longest TTL a writer may ask for, e.g. max: 1h");
    return;
  }
  ttl().*field = *v;
}

void RegistryLoader::readExempt(const Entry& e) {
  const auto v = readString(e);
  if (!v) return;
  static constexpr std::array<std::string_view, 12> kBoolish = {
      "true", "True", "TRUE", "false", "False", "FALSE", "yes", "Yes", "YES", "on", "On", "ON"};
  const bool quoted = e.value.Tag() == "!";
  if (!quoted && std::find(kBoolish.begin(), kBoolish.end(), *v) != kBoolish.end()) {
    report(e.at(), e.path,
           "exempt takes the reason these keys may live without a TTL, not " + *v +
               "; write it as a sentence, e.g. exempt: \"rebuilt from PostgreSQL on every "
               "deploy, bounded to 200 keys\"");
    return;
  }
  if (trimmed(*v).empty()) {
    report(e.at(), e.path,
           "an exemption needs a reason; write why these keys may live without a TTL, e.g. "
           "exempt: \"rebuilt from PostgreSQL on every deploy, bounded to 200 keys\"");
    return;
  }
  ttl().exempt = true;
  ttl().exemptReason = *v;
}

void RegistryLoader::checkTtl(const TtlPolicy& policy, const TtlMarks& marks, bool isDefaults) {
  const auto set = [&](std::string_view key) { return isSet(marks.path + "." + std::string(key)); };
  const auto failed = [&](std::string_view key) {
    return hasFailed(marks.path + "." + std::string(key));
  };
  const auto at = [&](std::string_view key) { return markOf(marks.path + "." + std::string(key)); };
  const auto path = [&](std::string_view key) { return marks.path + "." + std::string(key); };

  if (set("exempt")) {
    std::vector<std::string_view> others;
    for (const auto key : kTtlPolicyKeys) {
      if (set(key)) others.push_back(key);
    }
    if (!others.empty()) {
      std::string list;
      for (std::size_t i = 0; i < others.size(); ++i) {
        if (i > 0) list += (i + 1 == others.size()) ? " and " : ", ";
        list += others[i];
      }
      report(at("exempt"), path("exempt"),
             "exempt cannot be combined with " + list +
                 ": keys either have a TTL contract or are exempt from one; remove exempt, or "
                 "remove " +
                 list);
    }
    if (isDefaults && !failed("exempt")) {
      report(at("exempt"), path("exempt"),
             "defaults.ttl cannot be an exemption, it would exempt every pattern without a ttl "
             "of its own; give a default TTL here and put exempt on the patterns that need it");
    }
    return;
  }
  if (!set("default")) {
    report(marks.at, path("default"),
           "a TTL policy needs default, the TTL keygate injects when a write has none; e.g. "
           "ttl: {default: 5m, jitter: 30s}, or ttl: {exempt: \"why\"} for keys without TTL");
    return;
  }
  if (failed("default")) return;
  const auto d = policy.defaultTtl;
  if (set("jitter") && !failed("jitter") && policy.jitter >= d) {
    report(at("jitter"), path("jitter"),
           "jitter " + formatDuration(policy.jitter) + " must be shorter than default " +
               formatDuration(d) + ", so that every key lives at least as long as the default; " +
               "lower it (a tenth of the default is typical) or raise default");
    return;
  }
  if (set("max") && !failed("max") && !(set("jitter") && failed("jitter"))) {
    if (policy.max < d) {
      report(at("max"), path("max"),
             "max " + formatDuration(policy.max) + " is shorter than default " + formatDuration(d) +
                 ", so keygate would inject TTLs it then refuses or cuts; " +
                 "raise max to at least " + formatDuration(d) + " or lower default");
    } else if (policy.max < d + policy.jitter) {
      report(at("max"), path("max"),
             "max " + formatDuration(policy.max) + " is shorter than default + jitter (" +
                 formatDuration(d + policy.jitter) +
                 "), so some injected TTLs would be over max; raise max to at least " +
                 formatDuration(d + policy.jitter) + " or lower the jitter");
    }
  }
}

void RegistryLoader::readDenyCommands(const Entry& e) {
  sawDenyCommands_ = true;
  constexpr std::string_view kHow =
      "a list of commands, e.g. [KEYS, FLUSHALL, \"CLUSTER FAILOVER\"]; write denyCommands: [] "
      "to deny none, or remove the key for the built-in list";
  if (!e.value.IsSequence()) {
    const std::string got = e.value.IsNull() ? "nothing" : kindOf(e.value);
    report(e.at(), e.path, "expected " + std::string(kHow) + ", got " + got);
    return;
  }
  std::vector<std::string> commands;
  std::vector<SourcePos> positions;
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    const YAML::Node item = e.value[i];
    const Entry entry{item.IsNull() ? e.at() : item.Mark(), item,
                      e.path + "[" + std::to_string(i) + "]"};
    const auto text = readString(entry);
    if (!text) continue;
    const std::string name = canonicalCommand(*text);
    if (name.empty()) {
      report(entry.at(), entry.path,
             "'" + *text +
                 "' is not a command name; write a command (KEYS) or a command and one "
                 "subcommand (\"CLUSTER FAILOVER\"), using letters, digits, '_' and '-' only");
      continue;
    }
    const auto seen = std::find(commands.begin(), commands.end(), name);
    if (seen != commands.end()) {
      const auto first = static_cast<std::size_t>(seen - commands.begin());
      report(entry.at(), entry.path,
             "'" + *text + "' is listed twice (first on line " +
                 std::to_string(positions[first].line) + "); list each command once");
      continue;
    }
    commands.push_back(name);
    positions.push_back(posOf(entry.at()));
  }
  registry().denyCommands = std::move(commands);
  registry().denyCommandPositions = std::move(positions);
}

template <typename ReadItem>
void RegistryLoader::readListOfMaps(const Entry& e, std::string_view noun, std::string_view example,
                                    ReadItem readItem) {
  if (!e.value.IsDefined() || e.value.IsNull()) return;  // an empty list
  if (!e.value.IsSequence()) {
    report(e.at(), e.path,
           "expected a list of " + std::string(noun) + ", one '- ' entry each, got " +
               kindOf(e.value) + "; e.g. " + std::string(example));
    return;
  }
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    const YAML::Node item = e.value[i];
    const Entry entry{item.IsNull() ? e.at() : item.Mark(), item,
                      e.path + "[" + std::to_string(i) + "]"};
    if (!item.IsMap()) {
      report(entry.at(), entry.path,
             "each entry of " + std::string(e.path) + " is a mapping, got " + kindOf(item) +
                 "; e.g. " + std::string(example));
      continue;
    }
    readItem(entry);
  }
}

void RegistryLoader::readPatterns(const Entry& e) {
  readListOfMaps(e, "key patterns",
                 "- {pattern: \"cpq:{tenant-<tenant>}:lock:quote-<quoteId>\", owner: "
                 "quote-service, purpose: ..., authority: true, ttl: {default: 30s}}",
                 [this](const Entry& item) { readPattern(item); });
}

void RegistryLoader::readPattern(const Entry& item) {
  PatternEntry entry;
  entry.pos = posOf(item.at());
  pattern_ = &entry;
  walkMap(*this, item.value, item.path, kPatternSection, kSections);
  pattern_ = nullptr;

  struct Required {
    std::string_view key;
    std::string_view message;
  };
  static constexpr Required kRequired[] = {
      {"pattern",
       "missing 'pattern'; every entry needs the key shape it covers, e.g. pattern: "
       "\"cpq:{tenant-<tenant>}:lock:quote-<quoteId>:submit\""},
      {"owner",
       "missing 'owner'; name the team or service that owns these keys and answers for them, "
       "e.g. owner: pricing-service"},
      {"purpose",
       "missing 'purpose'; say in a sentence why these keys exist, e.g. purpose: cache "
       "calculated price previews for the UI"},
      {"authority",
       "missing 'authority'; state it explicitly because it decides the TTL rules: false for a "
       "cache rebuilt from elsewhere (it then needs a TTL), true when Redis holds the truth "
       "for a while (locks, idempotency keys, rate-limit buckets)"},
  };
  for (const auto& r : kRequired) {
    const std::string path = item.path + "." + std::string(r.key);
    if (!isSet(path)) report(item.at(), path, std::string(r.message));
  }

  if (entry.kind == PatternKind::kChannel && isSet(item.path + ".ttl")) {
    report(markOf(item.path + ".ttl"), item.path + ".ttl",
           "a pub/sub channel stores nothing in Redis, so it has no TTL; remove ttl from this "
           "entry (or set kind: key if it describes keys)");
  }

  if (!entry.pattern.empty() && !hasFailed(item.path + ".kind")) {
    const auto& patterns = registry().patterns;
    const auto same = std::find_if(patterns.begin(), patterns.end(), [&](const PatternEntry& p) {
      return p.pattern == entry.pattern && p.kind == entry.kind;
    });
    if (same != patterns.end()) {
      const auto index = static_cast<std::size_t>(same - patterns.begin());
      report(markOf(item.path + ".pattern"), item.path + ".pattern",
             "the same pattern as " + patternChecks_[index].path + " (line " +
                 std::to_string(same->pos.line) +
                 "); keep one entry per pattern and merge their settings");
    }
  }
  registry().patterns.push_back(std::move(entry));
  patternChecks_.push_back({item.path, item.at()});
}

void RegistryLoader::readInvalidation(const Entry& e) {
  if (!e.value.IsDefined() || e.value.IsNull()) return;  // none
  if (!e.value.IsSequence()) {
    const std::string example =
        e.value.IsScalar() ? "[" + e.value.Scalar() + "]" : "[QuoteChanged, CatalogPublished]";
    report(e.at(), e.path,
           "expected a list of the events that invalidate these keys, got " + kindOf(e.value) +
               "; write invalidation: " + example);
    return;
  }
  std::vector<std::string> events;
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    const YAML::Node item = e.value[i];
    const Entry entry{item.IsNull() ? e.at() : item.Mark(), item,
                      e.path + "[" + std::to_string(i) + "]"};
    if (auto v = readText(entry, "QuoteChanged")) events.push_back(*v);
  }
  pattern().invalidation = std::move(events);
}

void RegistryLoader::readRewrites(const Entry& e) {
  readListOfMaps(e, "rewrites",
                 "- {from: \"catalog:offering-<offeringId>\", to: "
                 "\"cpq:{tenant-<tenant>}:catalog:offering:<offeringId>\"}",
                 [this](const Entry& item) { readRewrite(item); });
}

void RegistryLoader::readRewrite(const Entry& item) {
  Rewrite entry;
  rewrite_ = &entry;
  walkMap(*this, item.value, item.path, kRewriteSection, kSections);
  rewrite_ = nullptr;
  if (!isSet(item.path + ".from")) {
    report(item.at(), item.path + ".from",
           "missing 'from'; a rewrite needs the legacy key shape it replaces, e.g. from: "
           "\"catalog:offering-<offeringId>\"");
  }
  if (!isSet(item.path + ".to")) {
    report(item.at(), item.path + ".to",
           "missing 'to'; a rewrite needs the registry key shape it produces, e.g. to: "
           "\"cpq:{tenant-<tenant>}:catalog:offering:<offeringId>\"");
  }
  if (!entry.from.empty()) {
    const auto& rewrites = registry().rewrites;
    const auto same = std::find_if(rewrites.begin(), rewrites.end(),
                                   [&](const Rewrite& r) { return r.from == entry.from; });
    if (same != rewrites.end()) {
      report(markOf(item.path + ".from"), item.path + ".from",
             "the same 'from' as the rewrite on line " + std::to_string(same->pos.line) +
                 "; a legacy key can be rewritten one way only, keep one of them");
    }
  }
  registry().rewrites.push_back(std::move(entry));
}

// Rules that need the whole file: `defaults:` may come after the patterns it applies to.
void RegistryLoader::checkAcrossSections() {
  const RegistryDefaults& defaults = registry().defaults;
  const bool defaultsTtlUnknown = hasFailed("defaults.ttl");
  const bool defaultsMaxUnknown = hasFailed("defaults.maxValueBytes");
  for (std::size_t i = 0; i < registry().patterns.size(); ++i) {
    const PatternEntry& p = registry().patterns[i];
    const PatternCheck& check = patternChecks_[i];
    const std::string ttlPath = check.path + ".ttl";
    const std::string authorityPath = check.path + ".authority";
    const bool cache = isSet(authorityPath) && !hasFailed(authorityPath) && !p.authority;
    if (p.kind == PatternKind::kKey && cache && !isSet(ttlPath) && !defaults.ttl.present &&
        !defaultsTtlUnknown && !hasFailed(check.path + ".kind")) {
      report(check.at, ttlPath,
             "a cache pattern needs a TTL contract: this one has authority: false, no ttl and "
             "defaults has no ttl either; add ttl: {default: 5m, jitter: 30s} here (how long "
             "the data may be served), set defaults.ttl, or set authority: true if Redis holds "
             "the truth for these keys");
    }
    const std::string avgPath = check.path + ".avgValueBytes";
    if (p.avgValueBytes && !hasFailed(check.path + ".maxValueBytes") &&
        !(!p.maxValueBytes && defaultsMaxUnknown)) {
      const std::uint64_t max = p.maxValueBytes.value_or(defaults.maxValueBytes);
      if (*p.avgValueBytes > max) {
        const std::string where =
            p.maxValueBytes ? "this pattern's maxValueBytes" : "defaults.maxValueBytes";
        report(markOf(avgPath), avgPath,
               "the average value size " + formatSize(*p.avgValueBytes) + " is over " + where +
                   " " + formatSize(max) +
                   ", which no value may exceed; lower avgValueBytes or raise maxValueBytes");
      }
    }
  }
}

RegistryLoadResult internalError(const std::string& file, std::string_view what) {
  RegistryLoadResult result;
  result.registry.file = file;
  result.errors.push_back(
      {file, 0, 0, "", "internal error while loading the registry: " + std::string(what)});
  return result;
}

}  // namespace

const std::vector<std::string>& defaultDenyCommands() {
  // Whole-keyspace scans and wipes, server reconfiguration and the CLUSTER subcommands that
  // change the topology. Read-only CLUSTER subcommands (SLOTS, SHARDS, INFO, ...) stay allowed.
  static const std::vector<std::string> kCommands = {
      "KEYS",
      "FLUSHALL",
      "FLUSHDB",
      "DEBUG",
      "CONFIG",
      "SHUTDOWN",
      "MONITOR",
      "SWAPDB",
      "SCRIPT|FLUSH",
      "FUNCTION|FLUSH",
      "CLUSTER|ADDSLOTS",
      "CLUSTER|ADDSLOTSRANGE",
      "CLUSTER|BUMPEPOCH",
      "CLUSTER|DELSLOTS",
      "CLUSTER|DELSLOTSRANGE",
      "CLUSTER|FAILOVER",
      "CLUSTER|FLUSHSLOTS",
      "CLUSTER|FORGET",
      "CLUSTER|MEET",
      "CLUSTER|REPLICATE",
      "CLUSTER|RESET",
      "CLUSTER|SAVECONFIG",
      "CLUSTER|SET-CONFIG-EPOCH",
      "CLUSTER|SETSLOT",
  };
  return kCommands;
}

RegistryLoadResult loadRegistryText(std::string_view yaml, const std::string& fileName) {
  try {
    RegistryLoadResult result;
    RegistryLoader(fileName, result).load(yaml);
    return result;
  } catch (const std::exception& e) {
    return internalError(fileName, e.what());
  } catch (...) {
    return internalError(fileName, "unknown exception");
  }
}

RegistryLoadResult loadRegistryFile(const std::string& path) {
  try {
    const auto unreadable = [&](const std::string& why) {
      RegistryLoadResult result;
      result.registry.file = path;
      result.errors.push_back({path, 0, 0, "",
                               "cannot read the registry file: " + why +
                                   "; check the path given to --registry and its permissions"});
      return result;
    };
    std::string text;
    if (auto why = readTextFile(path, text)) return unreadable(*why);
    return loadRegistryText(text, path);
  } catch (const std::exception& e) {
    return internalError(path, e.what());
  } catch (...) {
    return internalError(path, "unknown exception");
  }
}

}  // namespace keygate::config
