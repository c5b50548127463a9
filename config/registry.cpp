// Registry YAML -> Registry. Same strict walk as the process configuration (yaml_reader.hpp):
// one table of fields per section, every problem reported with file:line:column, the YAML path
// and how to fix it, then the checks that need the whole file (a cache pattern's TTL contract
// may come from `defaults:`, which can be written after the patterns). What a pattern means
// (its syntax, overlaps) is checked by policies::compileRegistry(), not here. Endpoint profiles
// (`endpoints:`) are checked here in full, including every reference to them by name
// (`defaults.endpoint`, a pattern's `failureBehavior: {endpoint: ...}`): which profile a request
// gets is policies::EndpointSet's job.

#include "config/registry.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
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

constexpr std::array<std::string_view, 2> kKinds = {"key", "channel"};
constexpr std::array<std::string_view, 2> kMissingChoices = {"inject", "reject"};
constexpr std::array<std::string_view, 2> kTooLongChoices = {"clamp", "reject"};
constexpr std::array<std::string_view, 5> kTtlPolicyKeys = {"default", "max", "jitter", "missing",
                                                            "tooLong"};
constexpr std::array<std::string_view, 2> kOnFailureChoices = {"open", "closed"};

// Endpoint profiles. Every worker keeps one breaker per profile per Redis node, so the number of
// profiles is capped; prefixes in `clients` keep a large organisation within it.
constexpr std::size_t kMaxEndpoints = 64;
constexpr std::size_t kMaxEndpointNameLength = 64;
constexpr std::size_t kMaxClientNameLength = 128;
constexpr milliseconds kMinEndpointTimeout{1};
constexpr milliseconds kMaxEndpointTimeout = std::chrono::seconds(60);
constexpr std::uint64_t kMaxRetryAttempts = 5;
constexpr std::uint64_t kMaxConsecutiveFailures = 1'000'000;
constexpr std::uint64_t kMaxBreakerWindow = 100'000;
constexpr milliseconds kMinOpenFor{10};
constexpr milliseconds kMaxOpenFor = std::chrono::minutes(10);
constexpr std::uint64_t kMaxHalfOpenProbes = 1000;

// Near cache (nearCache:). Under 10ms an entry saves almost no round trips; over an hour it is no
// longer a short local copy but a second cache with its own staleness. Sizes are per keygate
// process, which runs in the application's pod next to it.
constexpr milliseconds kMinNearTtl{10};
constexpr milliseconds kMaxNearTtl = std::chrono::hours(1);
constexpr std::uint64_t kMinNearBytes = 1024;
constexpr std::uint64_t kMaxNearBytes = 4 * 1024 * kMiB;
constexpr std::uint64_t kMaxNearEntries = 10'000'000;

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

bool isProfileNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '/' || c == '-';
}

// Redis refuses client names with spaces, newlines or other characters outside '!'..'~'
// (CLIENT SETNAME), so a registry entry with one could never match.
bool isClientNameChar(char c) {
  return c >= '!' && c <= '~';
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
  std::string path;     // "patterns[2]"
  YAML::Mark at;        // the list item
  YAML::Mark nearAt{};  // the `nearCache` key, when the entry has one
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
  EndpointProfile& profile() { return *profile_; }
  NearCachePolicy& nearCache() { return pattern_->nearCache; }

  void readDefaults(const Entry& e);
  void readTtl(const Entry& e);
  void readTtlDuration(const Entry& e, milliseconds TtlPolicy::*field);
  void readExempt(const Entry& e);
  void readValueBytes(const Entry& e, std::optional<std::uint64_t>& out);
  void readDenyCommands(const Entry& e);
  void readPatterns(const Entry& e);
  void readInvalidation(const Entry& e);
  void readRewrites(const Entry& e);
  void readFailureBehavior(const Entry& e);
  void readNearCache(const Entry& e);
  void readNearTtl(const Entry& e);
  void readNearBytes(const Entry& e);
  void readEndpoints(const Entry& e);
  void readProfileName(const Entry& e);
  void readClients(const Entry& e);
  // `retries:` and `breaker:` of the profile being read.
  void readProfileSection(const Entry& e, const SectionOf<RegistryLoader>& section);
  // breaker.failureRatio: a number from 0 to 1, unquoted.
  std::optional<double> readRatio(const Entry& e);
  // A string that must say something: owner, purpose, pattern.
  std::optional<std::string> readText(const Entry& e, std::string_view example);

 private:
  // A list of mappings: `patterns:` and `rewrites:`. Calls `readItem(entry)` for each mapping.
  template <typename ReadItem>
  void readListOfMaps(const Entry& e, std::string_view noun, std::string_view example,
                      ReadItem readItem);
  void readPattern(const Entry& item);
  void readRewrite(const Entry& item);
  void readEndpoint(const Entry& item);
  void checkTtl(const TtlPolicy& policy, const TtlMarks& marks, bool isDefaults);
  // The rules of `coalesce` and `nearCache` that need only the entry itself.
  void checkCaching(const PatternEntry& entry, const PatternCheck& check);
  void checkRetries(const EndpointProfile& p, const std::string& path);
  void checkBreaker(const EndpointProfile& p, const std::string& path);
  // `name` (at `path`) must name one of `endpoints`.
  void checkEndpointReference(const std::string& name, const std::string& path);
  void checkAcrossSections();

  RegistryLoadResult& out_;
  PatternEntry* pattern_ = nullptr;
  YAML::Mark nearAt_{};  // the current entry's `nearCache` key
  TtlPolicy* ttl_ = nullptr;
  Rewrite* rewrite_ = nullptr;
  EndpointProfile* profile_ = nullptr;
  std::vector<PatternCheck> patternChecks_;  // parallel to registry().patterns
  std::vector<std::string> endpointPaths_;   // parallel to registry().endpoints: "endpoints[2]"
  // Every profile's name was read, so a reference naming none of them is wrong, not a follow-up
  // of an error already reported.
  bool endpointNamesKnown_ = true;
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
    {"endpoint",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readText(e, "endpoint: internal-read")) {
         l.registry().defaults.endpoint = *v;
         l.registry().defaults.endpointPos = posOf(e.at());
       }
     }},
};

// The map form of a pattern's failureBehavior.
constexpr Field kFailureBehaviorFields[] = {
    {"endpoint",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readText(e, "endpoint: catalog-view")) {
         l.pattern().endpoint = *v;
         l.pattern().endpointPos = posOf(e.at());
       }
     }},
    {"description",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readString(e)) l.pattern().failureBehavior = *v;
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
    {"failureBehavior", [](RegistryLoader& l, const Entry& e) { l.readFailureBehavior(e); }},
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
       if (auto i = l.readChoice(e, kRegistryModes, "mode")) {
         l.pattern().mode = *i == 0 ? RegistryMode::kEnforce : RegistryMode::kAudit;
       }
     }},
    {"coalesce",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readBool(e)) {
         l.pattern().coalesce = *v;
         l.pattern().coalescePos = posOf(e.at());
       }
     }},
    {"nearCache", [](RegistryLoader& l, const Entry& e) { l.readNearCache(e); }},
};

constexpr Field kNearCacheFields[] = {
    {"ttl", [](RegistryLoader& l, const Entry& e) { l.readNearTtl(e); }},
    {"maxBytes", [](RegistryLoader& l, const Entry& e) { l.readNearBytes(e); }},
    {"maxEntries",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readUint(e, 1, kMaxNearEntries,
                               "the most keys of this pattern one keygate keeps in its near cache, "
                               "e.g. maxEntries: 10000")) {
         l.nearCache().maxEntries = *v;
       }
     }},
    {"allowPII",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readBool(e)) l.nearCache().allowPII = *v;
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

constexpr Field kRetryFields[] = {
    {"attempts",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readUint(e, 0, kMaxRetryAttempts,
                               "each retry spends budget and load on a struggling Redis")) {
         l.profile().retries.attempts = static_cast<std::uint32_t>(*v);
       }
     }},
    {"backoff",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readDuration(e, milliseconds(0), kMaxEndpointTimeout)) {
         l.profile().retries.backoff = *v;
       }
     }},
    {"jitter",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readDuration(e, milliseconds(0), kMaxEndpointTimeout)) {
         l.profile().retries.jitter = *v;
       }
     }},
};

constexpr Field kBreakerFields[] = {
    {"enabled",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readBool(e)) l.profile().breaker.enabled = *v;
     }},
    {"consecutiveFailures",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v =
               l.readUint(e, 0, kMaxConsecutiveFailures, "use 0 to open by failureRatio only")) {
         l.profile().breaker.consecutiveFailures = static_cast<std::uint32_t>(*v);
       }
     }},
    {"failureRatio",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readRatio(e)) l.profile().breaker.failureRatio = *v;
     }},
    {"window",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readUint(e, 1, kMaxBreakerWindow, "the number of recent requests judged")) {
         l.profile().breaker.window = static_cast<std::uint32_t>(*v);
       }
     }},
    {"minRequests",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readUint(e, 1, kMaxBreakerWindow)) {
         l.profile().breaker.minRequests = static_cast<std::uint32_t>(*v);
       }
     }},
    {"openFor",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readDuration(e, kMinOpenFor, kMaxOpenFor)) l.profile().breaker.openFor = *v;
     }},
    {"halfOpenProbes",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readUint(e, 1, kMaxHalfOpenProbes)) {
         l.profile().breaker.halfOpenProbes = static_cast<std::uint32_t>(*v);
       }
     }},
};

constexpr Section kRetrySection{"retries", kRetryFields,
                                "e.g. retries: {attempts: 1, backoff: 2ms, jitter: 3ms}"};
constexpr Section kBreakerSection{"breaker", kBreakerFields,
                                  "e.g. breaker: {consecutiveFailures: 5, openFor: 1s}"};

constexpr Field kEndpointFields[] = {
    {"name", [](RegistryLoader& l, const Entry& e) { l.readProfileName(e); }},
    {"clients", [](RegistryLoader& l, const Entry& e) { l.readClients(e); }},
    {"timeout",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readDuration(e, kMinEndpointTimeout, kMaxEndpointTimeout)) {
         l.profile().timeout = *v;
       }
     }},
    {"onFailure",
     [](RegistryLoader& l, const Entry& e) {
       if (auto i = l.readChoice(e, kOnFailureChoices, "failure decision")) {
         l.profile().onFailure = *i == 0 ? OnFailure::kOpen : OnFailure::kClosed;
       }
     }},
    {"retries", [](RegistryLoader& l, const Entry& e) { l.readProfileSection(e, kRetrySection); }},
    {"breaker",
     [](RegistryLoader& l, const Entry& e) { l.readProfileSection(e, kBreakerSection); }},
    {"description",
     [](RegistryLoader& l, const Entry& e) {
       if (auto v = l.readString(e)) l.profile().description = *v;
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
       if (auto i = l.readChoice(e, kRegistryModes, "mode")) {
         l.registry().mode = *i == 0 ? RegistryMode::kEnforce : RegistryMode::kAudit;
       }
     }},
    {"defaults", [](RegistryLoader& l, const Entry& e) { l.readDefaults(e); }},
    {"denyCommands", [](RegistryLoader& l, const Entry& e) { l.readDenyCommands(e); }},
    {"patterns", [](RegistryLoader& l, const Entry& e) { l.readPatterns(e); }},
    {"rewrites", [](RegistryLoader& l, const Entry& e) { l.readRewrites(e); }},
    {"endpoints", [](RegistryLoader& l, const Entry& e) { l.readEndpoints(e); }},
};

constexpr Section kTopSection{"", kTopFields, "e.g. mode: enforce"};
constexpr Section kDefaultsSection{"defaults", kDefaultsFields,
                                   "e.g. defaults: {maxValueBytes: 1MiB, ttl: {default: 10m}}"};
constexpr Section kPatternSection{"patterns", kPatternFields, "", "in each entry of 'patterns:'"};
constexpr Section kTtlSection{"ttl", kTtlFields, "e.g. ttl: {default: 5m, jitter: 30s, max: 10m}"};
constexpr Section kRewriteSection{"rewrites", kRewriteFields, "", "in each entry of 'rewrites:'"};
constexpr Section kFailureBehaviorSection{
    "failureBehavior", kFailureBehaviorFields,
    "e.g. failureBehavior: {endpoint: catalog-view, description: \"read through to "
    "catalog-service\"}"};
constexpr Section kEndpointSection{"endpoints", kEndpointFields, "",
                                   "in each entry of 'endpoints:'"};
constexpr Section kNearCacheSection{
    "nearCache", kNearCacheFields,
    "e.g. nearCache: {ttl: 30s, maxBytes: 16MiB, maxEntries: 10000}"};

// Where an unknown key's did-you-mean hint looks, in order, when the key's own section has no
// near match. The order decides between sections sharing a key: `jitter` in a pattern entry is
// ttl.jitter, in a profile retries.jitter; `endpoint` in a pattern entry is
// failureBehavior.endpoint, not the top-level `endpoints`.
constexpr const Section* kAllSections[] = {
    &kFailureBehaviorSection, &kTopSection,   &kDefaultsSection,
    &kPatternSection,         &kTtlSection,   &kRewriteSection,
    &kEndpointSection,        &kRetrySection, &kBreakerSection,
    &kNearCacheSection};
constexpr std::span<const Section* const> kSections(kAllSections);
// For the keys of an endpoint profile and its retries and breaker.
constexpr const Section* kAllEndpointSections[] = {
    &kRetrySection, &kBreakerSection,  &kEndpointSection,
    &kTopSection,   &kDefaultsSection, &kPatternSection,
    &kTtlSection,   &kRewriteSection,  &kFailureBehaviorSection};
constexpr std::span<const Section* const> kEndpointSections(kAllEndpointSections);

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
  nearAt_ = YAML::Mark::null_mark();
  walkMap(*this, item.value, item.path, kPatternSection, kSections);
  pattern_ = nullptr;
  const PatternCheck check{item.path, item.at(), nearAt_};

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
  checkCaching(entry, check);

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
  patternChecks_.push_back(check);
}

void RegistryLoader::readNearCache(const Entry& e) {
  nearAt_ = e.keyMark;
  constexpr std::string_view kHow =
      "nearCache: {ttl: 30s} (ttl is the longest an entry is served; add maxBytes, maxEntries "
      "and allowPII as needed)";
  if (!e.value.IsDefined() || e.value.IsNull()) {
    report(e.keyMark, e.path,
           "missing value; write " + std::string(kHow) + ", or remove the nearCache key");
    return;
  }
  if (!e.value.IsMap()) {
    std::string how(kHow);
    if (e.value.IsScalar() && parseDuration(e.value.Scalar())) {
      how = "nearCache: {ttl: " + e.value.Scalar() + "}";
    }
    report(e.at(), e.path,
           "nearCache is a section with the keys " + joinNames(kNearCacheSection.fields) +
               ", got " + kindOf(e.value) + "; write " + how);
    return;
  }
  NearCachePolicy& policy = pattern().nearCache;
  policy = NearCachePolicy{};
  policy.present = true;
  policy.pos = posOf(e.keyMark);
  walkMap(*this, e.value, e.path, kNearCacheSection, kSections);
  if (!isSet(e.path + ".ttl")) {
    report(e.keyMark, e.path + ".ttl",
           "missing 'ttl'; a near cache needs the longest time an entry may be served, which "
           "bounds how stale an answer can be when an invalidation is lost, e.g. nearCache: "
           "{ttl: 30s}");
  }
}

void RegistryLoader::readNearTtl(const Entry& e) {
  const auto v = readDuration(e, milliseconds(0), kAnyDuration);
  if (!v) return;
  if (*v < kMinNearTtl) {
    report(e.at(), e.path,
           "a near-cache ttl of " + formatDuration(*v) + " is under the minimum " +
               formatDuration(kMinNearTtl) +
               ": entries would expire before a second read could use them; give at least " +
               formatDuration(kMinNearTtl) + ", e.g. ttl: 30s, or remove nearCache");
    return;
  }
  if (*v > kMaxNearTtl) {
    report(e.at(), e.path,
           "a near-cache ttl of " + formatDuration(*v) + " is over the maximum " +
               formatDuration(kMaxNearTtl) +
               ": it is how long a value may be served after an invalidation is lost; give at "
               "most " +
               formatDuration(kMaxNearTtl) + " (seconds are typical, e.g. ttl: 30s)");
    return;
  }
  nearCache().ttl = *v;
}

void RegistryLoader::readNearBytes(const Entry& e) {
  const auto v = readSize(e, 0, std::numeric_limits<std::uint64_t>::max());
  if (!v) return;
  if (*v < kMinNearBytes) {
    report(e.at(), e.path,
           "a near cache of " + formatSize(*v) + " is under the minimum " +
               formatSize(kMinNearBytes) + " and could hold almost nothing; give at least " +
               formatSize(kMinNearBytes) + ", e.g. maxBytes: 16MiB (the default)");
    return;
  }
  if (*v > kMaxNearBytes) {
    report(
        e.at(), e.path,
        "a near cache of " + formatSize(*v) + " is over the maximum " + formatSize(kMaxNearBytes) +
            " per keygate process, which shares the application's pod; give at most " +
            formatSize(kMaxNearBytes) + " (the hot keys are what matters, e.g. maxBytes: 64MiB)");
    return;
  }
  nearCache().maxBytes = *v;
}

void RegistryLoader::checkCaching(const PatternEntry& entry, const PatternCheck& check) {
  const std::string coalescePath = check.path + ".coalesce";
  const std::string nearPath = check.path + ".nearCache";
  const bool channel = entry.kind == PatternKind::kChannel && !hasFailed(check.path + ".kind");
  if (channel) {
    if (isSet(coalescePath)) {
      report(markOf(coalescePath), coalescePath,
             "a pub/sub channel has no reads to coalesce; remove coalesce from this entry (or "
             "set kind: key if it describes keys)");
    }
    if (isSet(nearPath)) {
      report(check.nearAt, nearPath,
             "a pub/sub channel stores nothing in Redis, so there is nothing to near-cache; "
             "remove nearCache from this entry (or set kind: key if it describes keys)");
    }
    return;
  }
  if (!entry.nearCache.present) return;
  const std::string authorityPath = check.path + ".authority";
  if (entry.authority && !hasFailed(authorityPath)) {
    report(check.nearAt, nearPath,
           "a near cache keeps copies of values in keygate's memory, and this pattern has "
           "authority: true: Redis holds the truth for these keys, so a copy could answer after "
           "the truth changed (a lock released, a counter moved); remove nearCache, or set "
           "authority: false if these keys are a cache of data kept elsewhere");
  }
  const std::string piiPath = check.path + ".containsPII";
  const std::string allowPath = nearPath + ".allowPII";
  if (entry.containsPII && !hasFailed(piiPath) && !entry.nearCache.allowPII &&
      !hasFailed(allowPath)) {
    const bool explicitFalse = isSet(allowPath);
    report(explicitFalse ? markOf(allowPath) : check.nearAt, explicitFalse ? allowPath : nearPath,
           "this pattern has containsPII: true, and a near cache would keep personal data in "
           "every keygate's memory, outside Redis and its access controls; write allowPII: true "
           "in nearCache if that was decided (say why in purpose), or remove nearCache");
  }
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

void RegistryLoader::readFailureBehavior(const Entry& e) {
  if (e.value.IsMap()) {
    walkMap(*this, e.value, e.path, kFailureBehaviorSection, kSections);
    if (!isSet(e.path + ".endpoint")) {
      report(e.at(), e.path + ".endpoint",
             "missing 'endpoint'; the mapping form of failureBehavior names the endpoint profile "
             "of requests on these keys, e.g. failureBehavior: {endpoint: catalog-view, "
             "description: \"read through to catalog-service\"}; for text alone write "
             "failureBehavior: \"...\"");
    }
    return;
  }
  if (e.value.IsSequence()) {
    report(e.at(), e.path,
           "expected text, or a mapping {endpoint: <profile>, description: <text>}, got a list; "
           "write failureBehavior: \"read through to catalog-service\", or failureBehavior: "
           "{endpoint: catalog-view, description: \"read through to catalog-service\"}");
    return;
  }
  if (auto v = readString(e)) pattern().failureBehavior = *v;
}

void RegistryLoader::readEndpoints(const Entry& e) {
  const bool list = e.value.IsSequence();
  if (list && e.value.size() > kMaxEndpoints) {
    const YAML::Node extra = e.value[kMaxEndpoints];
    report(extra.IsNull() ? e.at() : extra.Mark(),
           e.path + "[" + std::to_string(kMaxEndpoints) + "]",
           "the registry has " + std::to_string(e.value.size()) + " endpoint profiles, more than " +
               std::to_string(kMaxEndpoints) +
               " (each worker keeps a breaker per profile and Redis node); merge profiles that "
               "share a timeout and decision, and select them with client prefixes such as "
               "\"quote-service/*\"");
  }
  readListOfMaps(e, "endpoint profiles",
                 "- {name: catalog-view, clients: [\"catalog-service/*\"], timeout: 30ms, "
                 "onFailure: open}",
                 [this](const Entry& item) { readEndpoint(item); });
  const bool empty = !e.value.IsDefined() || e.value.IsNull();
  const auto& endpoints = registry().endpoints;
  endpointNamesKnown_ =
      empty || (list && endpoints.size() == e.value.size() &&
                std::all_of(endpoints.begin(), endpoints.end(),
                            [](const EndpointProfile& p) { return !p.name.empty(); }));
}

void RegistryLoader::readEndpoint(const Entry& item) {
  EndpointProfile entry;
  entry.pos = posOf(item.at());
  profile_ = &entry;
  walkMap(*this, item.value, item.path, kEndpointSection, kEndpointSections);
  profile_ = nullptr;

  struct Required {
    std::string_view key;
    std::string_view message;
  };
  static constexpr Required kRequired[] = {
      {"name",
       "missing 'name'; every profile needs a unique name that patterns and defaults.endpoint "
       "refer to, e.g. name: catalog-view"},
      {"timeout",
       "missing 'timeout'; give the Redis budget of one request, after which it fails open or "
       "closed, e.g. timeout: 30ms (a cache lookup, seed 16.2)"},
      {"onFailure",
       "missing 'onFailure'; state what a request gets when Redis does not answer in time: open "
       "(an answer in the shape of a miss, for data the application can get elsewhere) or "
       "closed (an error, for anything that must not be guessed)"},
  };
  for (const auto& r : kRequired) {
    const std::string path = item.path + "." + std::string(r.key);
    if (!isSet(path)) report(item.at(), path, std::string(r.message));
  }
  checkRetries(entry, item.path);
  checkBreaker(entry, item.path);

  if (!entry.name.empty()) {
    const auto& endpoints = registry().endpoints;
    const auto same = std::find_if(endpoints.begin(), endpoints.end(),
                                   [&](const EndpointProfile& p) { return p.name == entry.name; });
    if (same != endpoints.end()) {
      const auto index = static_cast<std::size_t>(same - endpoints.begin());
      report(markOf(item.path + ".name"), item.path + ".name",
             "the same name as " + endpointPaths_[index] + " (line " +
                 std::to_string(same->pos.line) +
                 "); profile names are unique, rename one or merge the two profiles");
    }
  }
  registry().endpoints.push_back(std::move(entry));
  endpointPaths_.push_back(item.path);
}

void RegistryLoader::readProfileName(const Entry& e) {
  const auto v = readText(e, "name: catalog-view");
  if (!v) return;
  if (!std::all_of(v->begin(), v->end(), isProfileNameChar)) {
    report(e.at(), e.path,
           "'" + *v +
               "' is not a profile name; use letters, digits, '.', '_', '/' and '-' only, e.g. "
               "name: catalog-view");
    return;
  }
  if (v->size() > kMaxEndpointNameLength) {
    report(e.at(), e.path,
           "a profile name has at most " + std::to_string(kMaxEndpointNameLength) +
               " characters, this one has " + std::to_string(v->size()) + "; shorten it");
    return;
  }
  profile().name = *v;
  profile().pos = posOf(e.at());
}

void RegistryLoader::readClients(const Entry& e) {
  if (!e.value.IsDefined() || e.value.IsNull()) return;  // none
  if (!e.value.IsSequence()) {
    const std::string example = e.value.IsScalar()
                                    ? "[\"" + e.value.Scalar() + "\"]"
                                    : "[\"catalog-service/view\", \"catalog-service/*\"]";
    report(
        e.at(), e.path,
        "expected a list of client names, got " + kindOf(e.value) + "; write clients: " + example);
    return;
  }
  std::vector<std::string> clients;
  std::vector<SourcePos> positions;
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    const YAML::Node item = e.value[i];
    const Entry entry{item.IsNull() ? e.at() : item.Mark(), item,
                      e.path + "[" + std::to_string(i) + "]"};
    const auto name = readString(entry);
    if (!name) continue;
    const auto fail = [&](const std::string& why) { report(entry.at(), entry.path, why); };
    if (name->empty()) {
      fail(
          "a client name cannot be empty; write the name the service sets with CLIENT SETNAME, "
          "e.g. catalog-service/view, or a prefix ending in '*', e.g. catalog-service/*");
      continue;
    }
    if (name->size() > kMaxClientNameLength) {
      fail("a client name has at most " + std::to_string(kMaxClientNameLength) +
           " characters, this one has " + std::to_string(name->size()) +
           "; shorten it, or match a shorter prefix ending in '*'");
      continue;
    }
    if (!std::all_of(name->begin(), name->end(), isClientNameChar)) {
      fail("'" + *name +
           "' cannot be a client name: Redis refuses spaces, newlines and characters outside "
           "printable ASCII in CLIENT SETNAME; write it as the service sets it, e.g. "
           "catalog-service/view");
      continue;
    }
    const auto star = name->find('*');
    if (star != std::string::npos && star + 1 != name->size()) {
      fail(
          "'*' may only end a client name, where it makes the entry a prefix (\"quote-service/*\" "
          "matches every name starting with \"quote-service/\"); remove the inner '*'");
      continue;
    }
    if (*name == "*") {
      fail(
          "a '*' alone would select this profile for every client, ahead of every pattern's "
          "failureBehavior endpoint; to give requests a profile when nothing else does, set "
          "defaults.endpoint instead");
      continue;
    }
    const bool prefix = name->back() == '*';
    const std::string what = prefix ? "the prefix '" + *name + "'" : "the client '" + *name + "'";
    const auto seen = std::find(clients.begin(), clients.end(), *name);
    if (seen != clients.end()) {
      const auto first = static_cast<std::size_t>(seen - clients.begin());
      fail(what + " is listed twice (first on line " + std::to_string(positions[first].line) +
           "); list each client once");
      continue;
    }
    bool taken = false;
    for (std::size_t p = 0; p < registry().endpoints.size() && !taken; ++p) {
      const EndpointProfile& other = registry().endpoints[p];
      for (std::size_t c = 0; c < other.clients.size(); ++c) {
        if (other.clients[c] != *name) continue;
        const std::string owner =
            other.name.empty() ? endpointPaths_[p] : "profile '" + other.name + "'";
        fail(what + " already selects " + owner + " (line " +
             std::to_string(other.clientPositions[c].line) +
             "); a client name selects one profile, remove it from one of the two");
        taken = true;
        break;
      }
    }
    if (taken) continue;
    clients.push_back(*name);
    positions.push_back(posOf(entry.at()));
  }
  profile().clients = std::move(clients);
  profile().clientPositions = std::move(positions);
}

void RegistryLoader::readProfileSection(const Entry& e, const Section& section) {
  if (!e.value.IsDefined() || e.value.IsNull()) {
    report(e.at(), e.path,
           "missing value; " + std::string(section.example) + ", or remove the " +
               std::string(section.name) + " key for the defaults");
    return;
  }
  if (!e.value.IsMap()) {
    report(e.at(), e.path,
           "'" + std::string(section.name) + "' is a section with the keys " +
               joinNames(section.fields) + ", got " + kindOf(e.value) + "; " +
               std::string(section.example));
    return;
  }
  walkMap(*this, e.value, e.path, section, kEndpointSections);
}

std::optional<double> RegistryLoader::readRatio(const Entry& e) {
  const auto text = scalarOf(e, "a ratio from 0 to 1 such as 0.5");
  if (!text) return std::nullopt;
  constexpr std::string_view kHow =
      "write a number from 0 to 1, e.g. failureRatio: 0.5 to open when half of the recent "
      "requests failed, or 0 to open by consecutiveFailures only";
  const std::string& tag = e.value.Tag();
  if (tag == "!" || tag == "tag:yaml.org,2002:str") {
    report(
        e.at(), e.path,
        "expected a ratio from 0 to 1, got the quoted string \"" + *text + "\"; remove the quotes");
    return std::nullopt;
  }
  if (!text->empty() && text->back() == '%') {
    report(e.at(), e.path, "a ratio, not a percentage: write 0.5 for 50%; " + std::string(kHow));
    return std::nullopt;
  }
  double value = 0;
  const char* end = text->data() + text->size();
  const auto [next, ec] = std::from_chars(text->data(), end, value, std::chars_format::fixed);
  if (ec != std::errc() || next != end) {
    report(e.at(), e.path, "'" + *text + "' is not a ratio; " + std::string(kHow));
    return std::nullopt;
  }
  if (!(value >= 0 && value <= 1)) {
    report(e.at(), e.path, "must be between 0 and 1, got " + *text + "; " + std::string(kHow));
    return std::nullopt;
  }
  return value;
}

void RegistryLoader::checkRetries(const EndpointProfile& p, const std::string& path) {
  const std::string timeoutPath = path + ".timeout";
  const std::string retries = path + ".retries";
  if (!isSet(timeoutPath) || hasFailed(timeoutPath) || !isSet(retries) || hasFailed(retries)) {
    return;
  }
  const RetryPolicy& r = p.retries;
  const std::string timeout = formatDuration(p.timeout);
  bool fits = true;
  for (const auto& [key, value] : {std::pair<std::string_view, milliseconds>{"backoff", r.backoff},
                                   std::pair<std::string_view, milliseconds>{"jitter", r.jitter}}) {
    if (value <= p.timeout) continue;
    fits = false;
    const std::string at = retries + "." + std::string(key);
    // Only an explicit value can be longer than the timeout: the defaults are 2ms and 3ms.
    report(isSet(at) ? markOf(at) : markOf(retries), isSet(at) ? at : retries,
           std::string(key) + " " + formatDuration(value) + " is longer than the timeout " +
               timeout + ", the budget a retry has to fit in; lower " + std::string(key) +
               " (a tenth of the timeout is typical) or raise the timeout");
  }
  if (fits && r.attempts > 0 && r.backoff + r.jitter >= p.timeout) {
    report(markOf(retries), retries,
           "backoff + jitter (" + formatDuration(r.backoff + r.jitter) +
               ") leave no room for a retry inside the timeout " + timeout +
               "; keep their sum under the timeout (a tenth of it is typical), or set "
               "attempts: 0");
  }
}

void RegistryLoader::checkBreaker(const EndpointProfile& p, const std::string& path) {
  const std::string breaker = path + ".breaker";
  if (!isSet(breaker) || hasFailed(breaker)) return;
  const BreakerPolicy& b = p.breaker;
  const auto at = [&](std::string_view key) { return breaker + "." + std::string(key); };
  if (b.minRequests > b.window) {
    const bool minSet = isSet(at("minRequests"));
    const std::string where = minSet ? at("minRequests") : at("window");
    report(markOf(where), where,
           "minRequests " + std::to_string(b.minRequests) + (minSet ? "" : " (the default)") +
               " is more than window " + std::to_string(b.window) +
               ", so the failure ratio could never be judged; keep minRequests at most window");
  }
  if (b.enabled && b.consecutiveFailures == 0 && b.failureRatio == 0) {
    const std::string where =
        isSet(at("consecutiveFailures")) ? at("consecutiveFailures") : breaker;
    report(markOf(where), where,
           "the breaker could never open: consecutiveFailures and failureRatio are both 0; set "
           "enabled: false or a threshold, e.g. consecutiveFailures: 5 or failureRatio: 0.5");
  }
}

void RegistryLoader::checkEndpointReference(const std::string& name, const std::string& path) {
  if (name.empty() || !endpointNamesKnown_) return;
  const auto& endpoints = registry().endpoints;
  if (std::any_of(endpoints.begin(), endpoints.end(),
                  [&](const EndpointProfile& p) { return p.name == name; })) {
    return;
  }
  if (endpoints.empty()) {
    report(markOf(path), path,
           "'" + name +
               "' names no endpoint profile: the registry has none; add one under endpoints: "
               "with name: " +
               name + ", timeout and onFailure, or remove this reference");
    return;
  }
  std::string known;
  std::vector<std::string_view> names;
  for (const auto& p : endpoints) {
    if (!known.empty()) known += ", ";
    known += p.name;
    names.push_back(p.name);
  }
  std::string message = "'" + name + "' names no endpoint profile; ";
  if (const auto near = closestMatch(name, names)) {
    message += "did you mean '" + std::string(*near) + "'? ";
  }
  report(markOf(path), path,
         message + "the profiles are: " + known + " (add a profile named '" + name +
             "' under endpoints: if it is a new one)");
}

// Rules that need the whole file: `defaults:` may come after the patterns it applies to.
void RegistryLoader::checkAcrossSections() {
  checkEndpointReference(registry().defaults.endpoint, "defaults.endpoint");
  const RegistryDefaults& defaults = registry().defaults;
  const bool defaultsTtlUnknown = hasFailed("defaults.ttl");
  const bool defaultsMaxUnknown = hasFailed("defaults.maxValueBytes");
  for (std::size_t i = 0; i < registry().patterns.size(); ++i) {
    const PatternEntry& p = registry().patterns[i];
    const PatternCheck& check = patternChecks_[i];
    const std::string ttlPath = check.path + ".ttl";
    const std::string authorityPath = check.path + ".authority";
    const bool cache = isSet(authorityPath) && !hasFailed(authorityPath) && !p.authority;
    const bool noTtl = p.kind == PatternKind::kKey && cache && !isSet(ttlPath) &&
                       !defaults.ttl.present && !defaultsTtlUnknown &&
                       !hasFailed(check.path + ".kind");
    if (noTtl) {
      report(check.at, ttlPath,
             "a cache pattern needs a TTL contract: this one has authority: false, no ttl and "
             "defaults has no ttl either; add ttl: {default: 5m, jitter: 30s} here (how long "
             "the data may be served), set defaults.ttl, or set authority: true if Redis holds "
             "the truth for these keys");
    }
    // The pattern's TTL is the staleness budget a near cache is judged against: without one
    // (none, or exempt) nothing says how long these values are meant to be served.
    const bool ttlUnknown = isSet(ttlPath) ? hasFailed(ttlPath) : defaultsTtlUnknown;
    const TtlPolicy& effective = isSet(ttlPath) ? p.ttl : defaults.ttl;
    if (p.kind == PatternKind::kKey && p.nearCache.present && !noTtl && !ttlUnknown &&
        !(effective.present && !effective.exempt)) {
      const std::string why = effective.exempt
                                  ? "this pattern's ttl is exempt, so its keys have no staleness "
                                    "budget"
                                  : "this pattern has no ttl and defaults has no ttl either";
      report(check.nearAt, check.path + ".nearCache",
             "a near cache needs a TTL policy, the staleness budget its ttl is judged against; " +
                 why +
                 "; give the pattern a ttl, e.g. ttl: {default: 24h, jitter: 1h}, or set "
                 "defaults.ttl, or remove nearCache");
    }
    checkEndpointReference(p.endpoint, check.path + ".failureBehavior.endpoint");
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
