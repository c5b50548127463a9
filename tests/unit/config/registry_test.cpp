// Key registry loading (config/registry.cpp): the shipped example, every field, the built-in
// deny list, and one test per kind of mistake with its exact file:line:column, YAML path and a
// message that says how to fix it; several mistakes at once; files on disk.

#include "config/registry.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "tests/unit/config/load_checks.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using namespace keygate::config;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

namespace {

RegistryLoadResult load(const std::string& yaml) {
  return loadRegistryText(yaml, "r.yaml");
}

std::string dump(const RegistryLoadResult& r) {
  return testing::dumpErrors(r);
}

// Loads `yaml` and expects exactly one error at `line`:`column` on `path`.
ConfigError onlyError(const std::string& yaml, int line, int column, const std::string& path) {
  return testing::expectOnlyError(load, "r.yaml", yaml, line, column, path);
}

// A valid cache pattern entry, indented as a list item under `patterns:`; four lines.
const std::string kEntry =
    "  - pattern: \"cpq:{tenant-<tenant>}:x:<id>\"\n"
    "    owner: team-x\n"
    "    purpose: test keys\n"
    "    authority: false\n";

// kEntry with a TTL contract: five lines.
const std::string kCacheEntry = kEntry + "    ttl: {default: 5m}\n";

}  // namespace

TEST_CASE("the shipped example registry loads with zero errors", "[registry][example]") {
  const auto r = loadRegistryFile(KEYGATE_EXAMPLE_REGISTRY);
  INFO(dump(r));
  REQUIRE(r.ok());
  const Registry& reg = r.registry;
  CHECK(reg.file == KEYGATE_EXAMPLE_REGISTRY);
  CHECK(reg.version == 1);
  CHECK(reg.mode == RegistryMode::kEnforce);
  CHECK(reg.defaults.maxValueBytes == 256 * 1024);
  CHECK_FALSE(reg.defaults.ttl.present);
  CHECK(reg.denyCommands == defaultDenyCommands());
  REQUIRE(reg.patterns.size() == 11);
  REQUIRE(reg.rewrites.size() == 1);
  CHECK(reg.rewrites[0].from == "catalog:offering-<offeringId>");

  const auto find = [&](std::string_view needle) -> const PatternEntry& {
    for (const auto& p : reg.patterns) {
      if (p.pattern.find(needle) != std::string::npos) return p;
    }
    FAIL("no pattern containing " << needle);
    return reg.patterns.front();
  };
  // The seed's roles.
  const auto& preview = find(":pricing:preview:");
  CHECK(preview.pattern ==
        "cpq:{tenant-<tenant>}:pricing:preview:quote-<quoteId>:rev-<rev:int>:policy-"
        "<policyVersion>");
  CHECK(preview.containsCommerciallySensitiveData);
  CHECK_FALSE(preview.authority);
  CHECK(preview.ttl.defaultTtl == minutes(5));
  CHECK(preview.ttl.tooLong == TooLongTtl::kReject);
  CHECK(preview.invalidation ==
        std::vector<std::string>{"QuoteChanged", "PricingPolicyPublished", "CatalogPublished"});
  CHECK(preview.maxExpectedCardinality == 500000);

  const auto& offering = find(":catalog:offering:<offeringId>:catalog-");
  CHECK(offering.ttl.defaultTtl >= hours(24));
  const auto& pointer = find(":catalog:active");
  CHECK(pointer.ttl.defaultTtl <= minutes(1));
  CHECK(pointer.ttl.defaultTtl < offering.ttl.defaultTtl);

  const auto& idempotency = find(":idempotency:");
  CHECK(idempotency.authority);
  CHECK(idempotency.ttl.defaultTtl >= hours(24));  // at least the retry window

  const auto& lock = find(":lock:");
  CHECK(lock.authority);
  CHECK(lock.ttl.defaultTtl <= seconds(30));
  CHECK(lock.ttl.missing == MissingTtl::kReject);

  CHECK(find(":rate:").ttl.jitter == milliseconds(0));
  CHECK(find(":session:").containsPII);
  CHECK(find(":quote:workspace:").ttl.present);
  const auto& worklist = find(":projection:worklist:");
  REQUIRE(worklist.mode.has_value());
  CHECK(*worklist.mode == RegistryMode::kAudit);

  const auto& channel = find(":invalidate:");
  CHECK(channel.kind == PatternKind::kChannel);
  CHECK_FALSE(channel.ttl.present);

  // Every key pattern is tenant-scoped with the visible hash tag.
  for (const auto& p : reg.patterns) {
    INFO(p.pattern);
    CHECK(p.pattern.starts_with("cpq:{tenant-<tenant>}:"));
    CHECK(p.pos.line > 0);
    CHECK_FALSE(p.owner.empty());
    CHECK_FALSE(p.purpose.empty());
  }
}

TEST_CASE("a minimal registry gets the documented defaults", "[registry][load]") {
  const auto r = load("patterns:\n" + kCacheEntry);
  INFO(dump(r));
  REQUIRE(r.ok());
  const Registry& reg = r.registry;
  const RegistryDefaults d;
  CHECK(reg.file == "r.yaml");
  CHECK(reg.version == 1);
  CHECK(reg.mode == RegistryMode::kEnforce);
  CHECK(reg.defaults.maxValueBytes == d.maxValueBytes);
  CHECK(reg.defaults.maxValueBytes == 1024 * 1024);
  CHECK(reg.defaults.perKeyOverheadBytes == 96);
  CHECK(reg.defaults.memoryBudgetBytes == 0);
  CHECK_FALSE(reg.defaults.ttl.present);
  CHECK(reg.denyCommands == defaultDenyCommands());
  CHECK(reg.denyCommandPositions.size() == reg.denyCommands.size());
  CHECK(reg.rewrites.empty());
  REQUIRE(reg.patterns.size() == 1);
  const PatternEntry& p = reg.patterns[0];
  CHECK(p.pattern == "cpq:{tenant-<tenant>}:x:<id>");
  CHECK(p.pos.line == 2);
  CHECK(p.pos.column == 14);
  CHECK(p.kind == PatternKind::kKey);
  CHECK_FALSE(p.authority);
  CHECK_FALSE(p.maxValueBytes);
  CHECK_FALSE(p.avgValueBytes);
  CHECK_FALSE(p.mode);
  CHECK(p.ttl.present);
  CHECK_FALSE(p.ttl.exempt);
  CHECK(p.ttl.defaultTtl == minutes(5));
  CHECK(p.ttl.max == milliseconds(0));
  CHECK(p.ttl.jitter == milliseconds(0));
  CHECK(p.ttl.missing == MissingTtl::kInject);
  CHECK(p.ttl.tooLong == TooLongTtl::kClamp);
  CHECK(p.ttl.pos.line == 6);
  CHECK(p.ttl.pos.column == 10);
}

TEST_CASE("every field is read", "[registry][load]") {
  const auto r = load(R"(version: 1
mode: audit
defaults:
  maxValueBytes: 64KiB
  ttl: {default: 10m, jitter: 1m, max: 1h, missing: reject, tooLong: reject}
  perKeyOverheadBytes: 120
  memoryBudget: 4GiB
denyCommands: [keys, "cluster  failover", FLUSHALL, "script|flush", Debug]
patterns:
  - pattern: "cpq:{tenant-<tenant>}:pricing:preview:quote-<quoteId>:rev-<rev:int>"
    kind: key
    owner: pricing-service
    purpose: cache calculated price preview
    authority: true
    sourceOfRebuild: pricing-service + PostgreSQL
    invalidation: [QuoteChanged, CatalogPublished]
    failureBehavior: recalculate synchronously
    containsPII: true
    containsCommerciallySensitiveData: TRUE
    maxExpectedCardinality: 500000
    maxValueBytes: 16KiB
    avgValueBytes: 4KB
    ttl: {exempt: "rebuilt on deploy, 200 keys"}
    mode: enforce
  - pattern: "cpq:{tenant-<tenant>}:events"
    kind: channel
    owner: catalog-service
    purpose: invalidation fanout
    authority: False
    invalidation:
rewrites:
  - from: "catalog:offering-<id>"
    to: "cpq:{tenant-<tenant>}:pricing:preview:quote-<id>:rev-1"
)");
  INFO(dump(r));
  REQUIRE(r.ok());
  const Registry& reg = r.registry;
  CHECK(reg.mode == RegistryMode::kAudit);
  CHECK(reg.defaults.maxValueBytes == 64 * 1024);
  CHECK(reg.defaults.perKeyOverheadBytes == 120);
  CHECK(reg.defaults.memoryBudgetBytes == 4ull * 1024 * 1024 * 1024);
  const TtlPolicy& dt = reg.defaults.ttl;
  CHECK(dt.present);
  CHECK(dt.defaultTtl == minutes(10));
  CHECK(dt.jitter == minutes(1));
  CHECK(dt.max == hours(1));
  CHECK(dt.missing == MissingTtl::kReject);
  CHECK(dt.tooLong == TooLongTtl::kReject);
  CHECK(dt.pos.line == 5);
  CHECK(dt.pos.column == 8);

  CHECK(reg.denyCommands ==
        std::vector<std::string>{"KEYS", "CLUSTER|FAILOVER", "FLUSHALL", "SCRIPT|FLUSH", "DEBUG"});
  REQUIRE(reg.denyCommandPositions.size() == 5);
  CHECK(reg.denyCommandPositions[1].line == 8);
  CHECK(reg.denyCommandPositions[1].column == 22);

  REQUIRE(reg.patterns.size() == 2);
  const PatternEntry& p = reg.patterns[0];
  CHECK(p.pos.line == 10);
  CHECK(p.pos.column == 14);
  CHECK(p.owner == "pricing-service");
  CHECK(p.purpose == "cache calculated price preview");
  CHECK(p.authority);
  CHECK(p.sourceOfRebuild == "pricing-service + PostgreSQL");
  CHECK(p.invalidation == std::vector<std::string>{"QuoteChanged", "CatalogPublished"});
  CHECK(p.failureBehavior == "recalculate synchronously");
  CHECK(p.containsPII);
  CHECK(p.containsCommerciallySensitiveData);
  CHECK(p.maxExpectedCardinality == 500000);
  REQUIRE(p.maxValueBytes);
  CHECK(*p.maxValueBytes == 16 * 1024);
  REQUIRE(p.avgValueBytes);
  CHECK(*p.avgValueBytes == 4000);
  CHECK(p.ttl.present);
  CHECK(p.ttl.exempt);
  CHECK(p.ttl.exemptReason == "rebuilt on deploy, 200 keys");
  REQUIRE(p.mode);
  CHECK(*p.mode == RegistryMode::kEnforce);

  const PatternEntry& c = reg.patterns[1];
  CHECK(c.kind == PatternKind::kChannel);
  CHECK_FALSE(c.authority);
  CHECK(c.invalidation.empty());

  REQUIRE(reg.rewrites.size() == 1);
  CHECK(reg.rewrites[0].from == "catalog:offering-<id>");
  CHECK(reg.rewrites[0].to == "cpq:{tenant-<tenant>}:pricing:preview:quote-<id>:rev-1");
  CHECK(reg.rewrites[0].pos.line == 32);
  CHECK(reg.rewrites[0].pos.column == 11);
  CHECK(reg.rewrites[0].toPos.line == 33);
  CHECK(reg.rewrites[0].toPos.column == 9);
}

TEST_CASE("the built-in deny list and explicit lists", "[registry][deny]") {
  const auto& builtIn = defaultDenyCommands();
  for (const char* name :
       {"KEYS", "FLUSHALL", "FLUSHDB", "DEBUG", "CONFIG", "SHUTDOWN", "MONITOR", "SWAPDB",
        "SCRIPT|FLUSH", "FUNCTION|FLUSH", "CLUSTER|FAILOVER", "CLUSTER|RESET", "CLUSTER|SETSLOT"}) {
    INFO(name);
    CHECK(std::find(builtIn.begin(), builtIn.end(), name) != builtIn.end());
  }
  // Read-only CLUSTER subcommands stay allowed: clients need them.
  for (const char* name : {"CLUSTER", "CLUSTER|SLOTS", "CLUSTER|SHARDS", "CLUSTER|INFO"}) {
    INFO(name);
    CHECK(std::find(builtIn.begin(), builtIn.end(), name) == builtIn.end());
  }
  // An explicit empty list denies nothing.
  const auto none = load("denyCommands: []\npatterns: []\n");
  INFO(dump(none));
  REQUIRE(none.ok());
  CHECK(none.registry.denyCommands.empty());
  CHECK(none.registry.denyCommandPositions.empty());
}

TEST_CASE("denyCommands entries must be one or two words", "[registry][deny][errors]") {
  struct Case {
    const char* yaml;
    int line, column;
    const char* path;
    const char* why;
  };
  const Case cases[] = {
      {"patterns: []\ndenyCommands: [KEYS, \"KEYS *\"]\n", 2, 22, "denyCommands[1]",
       "'KEYS *' is not a command name; write a command (KEYS) or a command and one subcommand"},
      {"patterns: []\ndenyCommands: [\"CLUSTER SET SLOT\"]\n", 2, 16, "denyCommands[0]",
       "is not a command name"},
      {"patterns: []\ndenyCommands: [\"\"]\n", 2, 16, "denyCommands[0]", "is not a command name"},
      {"patterns: []\ndenyCommands: [keys, KEYS]\n", 2, 22, "denyCommands[1]",
       "'KEYS' is listed twice (first on line 2); list each command once"},
      {"patterns: []\ndenyCommands: KEYS\n", 2, 15, "denyCommands",
       "expected a list of commands, e.g. [KEYS, FLUSHALL, \"CLUSTER FAILOVER\"]"},
      {"patterns: []\ndenyCommands:\n", 2, 1, "denyCommands",
       "write denyCommands: [] to deny none, or remove the key for the built-in list"},
      {"patterns: []\ndenyCommands: [[KEYS]]\n", 2, 16, "denyCommands[0]",
       "expected a string (quote it if it contains ':' or '#'), got a list"},
  };
  for (const auto& c : cases) {
    const auto e = onlyError(c.yaml, c.line, c.column, c.path);
    CHECK_THAT(e.message, Contains(c.why));
  }
}

TEST_CASE("unknown keys are errors with a did-you-mean suggestion", "[registry][errors]") {
  const auto top = onlyError("patterns: []\nmdoe: audit\n", 2, 1, "mdoe");
  CHECK(top.message == "unknown key 'mdoe'; did you mean 'mode'?");

  const auto inPattern =
      onlyError("patterns:\n" + kCacheEntry + "    ownr: x\n", 7, 5, "patterns[0].ownr");
  CHECK(inPattern.message == "unknown key 'ownr'; did you mean 'owner'?");

  const auto caseSlip = onlyError("patterns:\n" + kCacheEntry + "    containsPii: true\n", 7, 5,
                                  "patterns[0].containsPii");
  CHECK_THAT(caseSlip.message, Contains("did you mean 'containsPII'?"));

  const auto inTtl = onlyError("patterns:\n" + kEntry + "    ttl: {default: 5m, jiter: 1s}\n", 6,
                               24, "patterns[0].ttl.jiter");
  CHECK_THAT(inTtl.message, Contains("did you mean 'jitter'?"));

  // A key of another section points there.
  const auto misplaced =
      onlyError("patterns:\n" + kCacheEntry + "    exempt: \"why\"\n", 7, 5, "patterns[0].exempt");
  CHECK(misplaced.message ==
        "unknown key 'exempt'; did you mean 'ttl.exempt'? That key belongs under 'ttl:'.");
  const auto atTop =
      onlyError("patterns: []\nperKeyOverheadBytes: 100\n", 2, 1, "perKeyOverheadBytes");
  CHECK_THAT(atTop.message, Contains("did you mean 'defaults.perKeyOverheadBytes'?"));
  const auto ownerInDefaults =
      onlyError("patterns: []\ndefaults:\n  owner: x\n", 3, 3, "defaults.owner");
  CHECK_THAT(ownerInDefaults.message,
             Contains("did you mean 'owner'? That key belongs in each entry of 'patterns:'."));

  // Sections that do not exist yet are unknown keys like any other.
  const auto endpoints = onlyError("patterns: []\nendpoints: {}\n", 2, 1, "endpoints");
  CHECK_THAT(endpoints.message,
             Contains("remove it, or use one of: version, mode, defaults, denyCommands, "
                      "patterns, rewrites."));

  const auto inRewrite = onlyError("patterns: []\nrewrites:\n  - {from: a, to: b, form: c}\n", 3,
                                   22, "rewrites[0].form");
  CHECK_THAT(inRewrite.message, Contains("did you mean 'from'?"));

  const auto dup = onlyError("patterns: []\nmode: audit\nmode: enforce\n", 3, 1, "mode");
  CHECK_THAT(dup.message, Contains("duplicate key 'mode' (first set on line 2); keep only one"));
}

TEST_CASE("wrong types and bad values are errors at the value", "[registry][errors]") {
  struct Case {
    std::string yaml;
    int line, column;
    const char* path;
    const char* why;
  };
  const std::string head = "patterns:\n" + kCacheEntry;  // the next line is line 7
  const Case cases[] = {
      {"patterns: []\nversion: 2\n", 2, 10, "version",
       "must be between 1 and 1, got 2; this keygate reads registry format version 1"},
      {"patterns: []\nmode: strict\n", 2, 7, "mode", "enforce"},
      {"patterns: {}\n", 1, 11, "patterns",
       "expected a list of key patterns, one '- ' entry each, got a mapping"},
      {"patterns:\n  - just-a-string\n", 2, 5, "patterns[0]",
       "each entry of patterns is a mapping, got a single value"},
      {"patterns:\n  - pattern: a\n    owner: o\n    purpose: p\n    authority: yes\n", 5, 16,
       "patterns[0].authority", "expected true or false, got 'yes'; write true or false"},
      {"patterns:\n  - pattern: a\n    owner: o\n    purpose: p\n    authority: \"false\"\n", 5, 16,
       "patterns[0].authority", "got the quoted string \"false\"; remove the quotes"},
      {head + "    containsPII: 1\n", 7, 18, "patterns[0].containsPII", "write true or false"},
      {head + "    kind: stream\n", 7, 11, "patterns[0].kind", "key"},
      {head + "    mode: warn\n", 7, 11, "patterns[0].mode", "audit"},
      {head + "    invalidation: QuoteChanged\n", 7, 19, "patterns[0].invalidation",
       "write invalidation: [QuoteChanged]"},
      {head + "    invalidation: [QuoteChanged, \"\"]\n", 7, 34, "patterns[0].invalidation[1]",
       "must not be empty"},
      {head + "    maxExpectedCardinality: lots\n", 7, 29, "patterns[0].maxExpectedCardinality",
       "write plain decimal digits"},
      {head + "    maxExpectedCardinality: \"500\"\n", 7, 29, "patterns[0].maxExpectedCardinality",
       "remove the quotes"},
      {head + "    maxValueBytes: 64kb\n", 7, 20, "patterns[0].maxValueBytes",
       "unknown size unit 'kb' in '64kb'; use B, KiB"},
      {head + "    maxValueBytes: 1GiB\n", 7, 20, "patterns[0].maxValueBytes",
       "must be between 1B and 512MiB"},
      {head + "    avgValueBytes: -3\n", 7, 20, "patterns[0].avgValueBytes",
       "a size cannot be negative"},
      {head + "    owner2: x\n", 7, 5, "patterns[0].owner2", "did you mean 'owner'?"},
      {"patterns: []\ndefaults:\n  perKeyOverheadBytes: 2MiB\n", 3, 24,
       "defaults.perKeyOverheadBytes", "must be between 0B and 1MiB"},
      {"patterns: []\ndefaults: 5m\n", 2, 11, "defaults",
       "'defaults' is a section with the keys maxValueBytes, ttl, perKeyOverheadBytes, "
       "memoryBudget, got a single value; indent its keys below it"},
      {"patterns: []\ndefaults:\n  ttl: {default: 5 minutes}\n", 3, 18, "defaults.ttl.default",
       "unknown duration unit ' minutes' in '5 minutes'; use ms, s, m or h"},
      {"patterns: []\ndefaults:\n  ttl: {default: 300}\n", 3, 18, "defaults.ttl.default",
       "duration needs a unit, e.g. 500ms or 10s"},
      {"patterns: []\ndefaults:\n  ttl: {default: 5m, missing: drop}\n", 3, 31,
       "defaults.ttl.missing", "inject"},
      {"patterns: []\ndefaults:\n  ttl: {default: 5m, tooLong: cut}\n", 3, 31,
       "defaults.ttl.tooLong", "clamp"},
      {"patterns:\n" + kEntry + "    ttl: 5m\n", 6, 10, "patterns[0].ttl",
       "ttl is a section, got a single value; write ttl: {default: 5m}"},
      {"patterns:\n" + kEntry + "    ttl:\n", 6, 5, "patterns[0].ttl",
       "missing value; write the TTL contract, e.g. ttl: {default: 5m, jitter: 30s}"},
      {"patterns:\n  - pattern: \"\"\n    owner: o\n    purpose: p\n    authority: true\n", 2, 14,
       "patterns[0].pattern", "must not be empty; e.g. pattern:"},
      {"patterns:\n  - pattern: a\n    owner: \"  \"\n    purpose: p\n    authority: true\n", 3, 12,
       "patterns[0].owner", "must not be empty; e.g. owner: pricing-service"},
  };
  for (const auto& c : cases) {
    const auto e = onlyError(c.yaml, c.line, c.column, c.path);
    CHECK_THAT(e.message, Contains(c.why));
  }
}

TEST_CASE("pattern, owner, purpose and authority are required", "[registry][errors]") {
  const auto r = load(R"(patterns:
  - pattern: "a:<id>"
    authority: true
  - owner: team
    purpose: p
    ttl: {default: 1m}
)");
  INFO(dump(r));
  REQUIRE(r.errors.size() == 4);
  CHECK(r.errors[0].str() ==
        "r.yaml:2:5: patterns[0].owner: missing 'owner'; name the team or service that owns "
        "these keys and answers for them, e.g. owner: pricing-service");
  CHECK(r.errors[1].line == 2);
  CHECK(r.errors[1].column == 5);
  CHECK(r.errors[1].path == "patterns[0].purpose");
  CHECK_THAT(r.errors[1].message, Contains("missing 'purpose'; say in a sentence why"));
  CHECK(r.errors[2].line == 4);
  CHECK(r.errors[2].column == 5);
  CHECK(r.errors[2].path == "patterns[1].pattern");
  CHECK_THAT(r.errors[2].message, Contains("missing 'pattern'; every entry needs the key shape"));
  CHECK(r.errors[3].line == 4);
  CHECK(r.errors[3].path == "patterns[1].authority");
  CHECK_THAT(r.errors[3].message,
             Contains("missing 'authority'; state it explicitly because it decides the TTL "
                      "rules: false for a cache"));
}

TEST_CASE("impossible TTL policies are errors at the key to change", "[registry][ttl][errors]") {
  struct Case {
    std::string ttl;  // the value of patterns[0].ttl, on line 6 at column 10
    int column;
    const char* path;
    const char* why;
  };
  const Case cases[] = {
      {"{default: 10m, max: 5m}", 30, "patterns[0].ttl.max",
       "max 5m is shorter than default 10m, so keygate would inject TTLs it then refuses or "
       "cuts; raise max to at least 10m or lower default"},
      {"{default: 10m, jitter: 2m, max: 11m}", 42, "patterns[0].ttl.max",
       "max 11m is shorter than default + jitter (12m), so some injected TTLs would be over "
       "max; raise max to at least 12m or lower the jitter"},
      {"{default: 1m, jitter: 1m}", 32, "patterns[0].ttl.jitter",
       "jitter 1m must be shorter than default 1m"},
      {"{default: 0s}", 20, "patterns[0].ttl.default",
       "a default TTL of 0 would expire keys as they are written; give how long the data may "
       "be served, e.g. default: 5m"},
      {"{default: 5m, max: 0ms}", 29, "patterns[0].ttl.max", "remove max"},
      {"{default: 9000h}", 20, "patterns[0].ttl.default",
       "a TTL over a year (8760h) is no staleness budget; shorten it, or make the keys exempt"},
      {"{jitter: 1m}", 10, "patterns[0].ttl.default",
       "a TTL policy needs default, the TTL keygate injects when a write has none"},
      {"{}", 10, "patterns[0].ttl.default", "a TTL policy needs default"},
      {"{exempt: \"rebuilt on deploy\", default: 5m, tooLong: reject}", 19,
       "patterns[0].ttl.exempt",
       "exempt cannot be combined with default and tooLong: keys either have a TTL contract or "
       "are exempt from one; remove exempt, or remove default and tooLong"},
      {"{exempt: \"\"}", 19, "patterns[0].ttl.exempt",
       "an exemption needs a reason; write why these keys may live without a TTL"},
      {"{exempt: \"   \"}", 19, "patterns[0].ttl.exempt", "an exemption needs a reason"},
      {"{exempt: true}", 19, "patterns[0].ttl.exempt",
       "exempt takes the reason these keys may live without a TTL, not true"},
      {"{exempt: }", 11, "patterns[0].ttl.exempt", "missing value"},
  };
  for (const auto& c : cases) {
    const std::string yaml = "patterns:\n" + kEntry + "    ttl: " + c.ttl + "\n";
    const auto e = onlyError(yaml, 6, c.column, c.path);
    CHECK_THAT(e.message, Contains(c.why));
  }
  // Valid edges: jitter just under default, max exactly default + jitter, exempt alone.
  for (const char* ttl : {"{default: 1m, jitter: 59s}", "{default: 10m, jitter: 2m, max: 12m}",
                          "{default: 10m, max: 10m}", "{default: 8760h}",
                          "{exempt: \"rebuilt from PostgreSQL on deploy\"}"}) {
    const auto r = load("patterns:\n" + kEntry + "    ttl: " + ttl + "\n");
    INFO(ttl);
    INFO(dump(r));
    CHECK(r.ok());
  }
  // defaults.ttl is never an exemption.
  const auto e = onlyError("patterns: []\ndefaults:\n  ttl: {exempt: \"all\"}\n", 3, 17,
                           "defaults.ttl.exempt");
  CHECK_THAT(e.message, Contains("defaults.ttl cannot be an exemption"));
  CHECK_THAT(e.message, Contains("put exempt on the patterns that need it"));
}

TEST_CASE("a cache pattern needs a TTL contract", "[registry][ttl][errors]") {
  const std::string noTtl = "patterns:\n" + kEntry;
  const auto e = onlyError(noTtl, 2, 5, "patterns[0].ttl");
  CHECK_THAT(e.message, StartsWith("a cache pattern needs a TTL contract"));
  CHECK_THAT(e.message, Contains("add ttl: {default: 5m, jitter: 30s} here"));
  CHECK_THAT(e.message, Contains("set defaults.ttl"));

  // defaults.ttl covers it, written before or after the patterns.
  for (const std::string& yaml : {"defaults:\n  ttl: {default: 10m}\n" + noTtl,
                                  noTtl + "defaults:\n  ttl: {default: 10m}\n"}) {
    const auto r = load(yaml);
    INFO(yaml);
    INFO(dump(r));
    CHECK(r.ok());
  }
  // Authority patterns and channels may go without.
  const auto authority = load(
      "patterns:\n  - {pattern: \"l:<id>\", owner: o, purpose: p, authority: true}\n"
      "  - {pattern: \"c:<id>\", kind: channel, owner: o, purpose: p, authority: false}\n");
  INFO(dump(authority));
  CHECK(authority.ok());

  // A bad defaults.ttl or authority is reported once, not again as a missing contract.
  const auto badDefault =
      onlyError(noTtl + "defaults:\n  ttl: {default: 5x}\n", 7, 18, "defaults.ttl.default");
  CHECK_THAT(badDefault.message, Contains("unknown duration unit"));

  // A channel has no TTL.
  const auto channelTtl = onlyError(
      "patterns:\n  - pattern: \"c:<id>\"\n    kind: channel\n    owner: o\n    purpose: p\n"
      "    authority: false\n    ttl: {default: 1m}\n",
      7, 10, "patterns[0].ttl");
  CHECK_THAT(channelTtl.message, Contains("a pub/sub channel stores nothing in Redis, so it has no "
                                          "TTL; remove ttl from this entry"));
}

TEST_CASE("duplicate patterns and rewrites are errors at the second", "[registry][errors]") {
  const auto dup =
      onlyError("patterns:\n" + kCacheEntry + kCacheEntry, 7, 14, "patterns[1].pattern");
  CHECK(dup.message ==
        "the same pattern as patterns[0] (line 2); keep one entry per pattern and merge their "
        "settings");
  // The same text as a key pattern and as a channel is not a duplicate.
  const auto kinds = load("patterns:\n" + kCacheEntry +
                          "  - {pattern: \"cpq:{tenant-<tenant>}:x:<id>\", kind: channel, owner: "
                          "o, purpose: p, authority: false}\n");
  INFO(dump(kinds));
  CHECK(kinds.ok());

  const auto rw = onlyError(R"(patterns: []
rewrites:
  - {from: "a-<id>", to: "b:<id>"}
  - {from: "a-<id>", to: "c:<id>"}
)",
                            4, 12, "rewrites[1].from");
  CHECK_THAT(rw.message, Contains("the same 'from' as the rewrite on line 3; a legacy key can be "
                                  "rewritten one way only"));
}

TEST_CASE("a rewrite needs from and to", "[registry][errors]") {
  const auto r = load("patterns: []\nrewrites:\n  - from: \"a-<id>\"\n  - to: \"b:<id>\"\n");
  INFO(dump(r));
  REQUIRE(r.errors.size() == 2);
  CHECK(r.errors[0].str() ==
        "r.yaml:3:5: rewrites[0].to: missing 'to'; a rewrite needs the registry key shape it "
        "produces, e.g. to: \"cpq:{tenant-<tenant>}:catalog:offering:<offeringId>\"");
  CHECK(r.errors[1].line == 4);
  CHECK(r.errors[1].column == 5);
  CHECK(r.errors[1].path == "rewrites[1].from");
  CHECK_THAT(r.errors[1].message, Contains("missing 'from'; a rewrite needs the legacy key shape"));

  const auto empty =
      onlyError("patterns: []\nrewrites:\n  - {from: \"\", to: b}\n", 3, 12, "rewrites[0].from");
  CHECK_THAT(empty.message, Contains("must not be empty"));
  const auto notList = onlyError("patterns: []\nrewrites: {from: a, to: b}\n", 2, 11, "rewrites");
  CHECK_THAT(notList.message, Contains("expected a list of rewrites"));
}

TEST_CASE("value size limits", "[registry][size][errors]") {
  const auto zero = onlyError("patterns:\n" + kCacheEntry + "    maxValueBytes: 0\n", 7, 20,
                              "patterns[0].maxValueBytes");
  CHECK(zero.message ==
        "a limit of 0 bytes would refuse every write; give the largest value these keys should "
        "hold, e.g. 64KiB");
  const auto zeroDefault =
      onlyError("patterns: []\ndefaults: {maxValueBytes: 0B}\n", 2, 27, "defaults.maxValueBytes");
  CHECK_THAT(zeroDefault.message, Contains("a limit of 0 bytes would refuse every write"));

  const auto avg =
      onlyError("patterns:\n" + kCacheEntry + "    maxValueBytes: 4KiB\n    avgValueBytes: 5KiB\n",
                8, 20, "patterns[0].avgValueBytes");
  CHECK(avg.message ==
        "the average value size 5KiB is over this pattern's maxValueBytes 4KiB, which no value "
        "may exceed; lower avgValueBytes or raise maxValueBytes");
  // Against defaults.maxValueBytes, even when defaults come after the pattern.
  const auto avgDefault = onlyError(
      "patterns:\n" + kCacheEntry + "    avgValueBytes: 2MiB\ndefaults: {maxValueBytes: 1MiB}\n", 7,
      20, "patterns[0].avgValueBytes");
  CHECK_THAT(avgDefault.message, Contains("is over defaults.maxValueBytes 1MiB"));
  // Equal is fine.
  const auto equal =
      load("patterns:\n" + kCacheEntry + "    maxValueBytes: 4KiB\n    avgValueBytes: 4096\n");
  INFO(dump(equal));
  CHECK(equal.ok());
}

TEST_CASE("the file as a whole", "[registry][errors]") {
  for (const char* yaml : {"", "\n", "# only a comment\n", "---\n"}) {
    const auto e = onlyError(yaml, 1, 1, "");
    CHECK_THAT(e.message,
               Contains("the registry file is empty; give it at least a patterns: list"));
  }
  const auto noPatterns = onlyError("mode: audit\n", 1, 1, "patterns");
  CHECK_THAT(noPatterns.message, Contains("the registry has no 'patterns:' list; add one"));
  const auto list = onlyError("- pattern: a\n", 1, 1, "");
  CHECK_THAT(list.message, Contains("the top level must be a mapping"));
  CHECK_THAT(list.message, Contains("got a list; see config/examples/cpq-registry.yaml"));
  const auto syntax = onlyError("patterns: [a\nmode: audit\n", 2, 5, "");
  CHECK_THAT(syntax.message, Contains("YAML syntax error"));
  const auto quote = onlyError(
      "patterns:\n  - owner: o\n    purpose: p\n    authority: true\n    pattern: \"a:<id>\n", 5,
      14, "patterns[0].pattern");
  CHECK_THAT(quote.message, Contains("has no closing quote"));
  const auto second = onlyError("patterns: []\n---\nmode: audit\n", 3, 1, "");
  CHECK_THAT(second.message, Contains("a second YAML document starts here"));
  // `patterns:` with nothing under it is an empty list.
  const auto empty = load("patterns:\n");
  INFO(dump(empty));
  CHECK(empty.ok());
  CHECK(empty.registry.patterns.empty());
}

TEST_CASE("several mistakes are all reported, in file order", "[registry][errors]") {
  const auto r = load(R"(version: 1
mode: enforce
defaults:
  maxValueBytes: 0
patterns:
  - pattern: "cpq:{tenant-<tenant>}:a:<id>"
    owner: team-a
    purpose: a
    authority: false
    ttl: {default: 5m, jitter: 10m}
  - pattern: "cpq:{tenant-<tenant>}:b:<id>"
    ownr: team-b
    purpose: b
    authority: false
  - pattern: "cpq:{tenant-<tenant>}:a:<id>"
    owner: team-c
    purpose: c
    authority: true
    maxValueBytes: 1 MiB
rewrites:
  - from: "legacy-<id>"
endpoints: {}
)");
  INFO(dump(r));
  REQUIRE(r.errors.size() == 9);
  const std::vector<std::tuple<int, int, std::string>> expected = {
      {4, 18, "defaults.maxValueBytes"},
      {10, 32, "patterns[0].ttl.jitter"},
      {11, 5, "patterns[1].owner"},     // missing
      {11, 5, "patterns[1].ttl"},       // a cache pattern without a TTL contract
      {12, 5, "patterns[1].ownr"},      // did you mean 'owner'?
      {15, 14, "patterns[2].pattern"},  // duplicate of patterns[0]
      {19, 20, "patterns[2].maxValueBytes"},
      {21, 5, "rewrites[0].to"},
      {22, 1, "endpoints"},
  };
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& [line, column, path] = expected[i];
    INFO(i);
    CHECK(r.errors[i].line == line);
    CHECK(r.errors[i].column == column);
    CHECK(r.errors[i].path == path);
    CHECK(r.errors[i].file == "r.yaml");
    CHECK_THAT(r.errors[i].message, Contains(";"));  // what is wrong; how to fix it
  }
}

TEST_CASE("hostile input never throws and ends in errors", "[registry][errors]") {
  for (const char* yaml :
       {"patterns: &a [*a]\n", "patterns:\n  - &x {pattern: a}\n  - *x\n", "? [a]\n: b\n",
        "patterns: !!binary AAAA\n", "patterns:\n  - pattern: !custom a\n", "{{{{{{{{\n",
        "patterns:\n  - {pattern: a, owner: o, purpose: p, authority: true, ttl: {exempt: [1]}}\n",
        "patterns: [[[[]]]]\n", "\t\n", "patterns: [~, ~]\n"}) {
    INFO(yaml);
    const auto r = load(yaml);
    INFO(dump(r));
    CHECK_FALSE(r.ok());
  }
}

TEST_CASE("registry files on disk", "[registry][file]") {
  const auto missing = loadRegistryFile("/nonexistent/keygate-registry.yaml");
  REQUIRE(missing.errors.size() == 1);
  CHECK_THAT(missing.errors[0].message, Contains("cannot read the registry file"));
  CHECK_THAT(missing.errors[0].message, Contains("check the path given to --registry"));
  CHECK(missing.errors[0].file == "/nonexistent/keygate-registry.yaml");

  const auto dir = loadRegistryFile("/tmp");
  REQUIRE(dir.errors.size() == 1);
  CHECK_THAT(dir.errors[0].message, Contains("it is a directory"));

  const auto path = std::filesystem::temp_directory_path() /
                    ("keygate-registry-test-" + std::to_string(::getpid()) + ".yaml");
  {
    std::ofstream out(path);
    out << "patterns:\n" << kEntry;
  }
  const auto r = loadRegistryFile(path.string());
  std::filesystem::remove(path);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].file == path.string());
  CHECK(r.errors[0].str().starts_with(path.string() + ":2:5: patterns[0].ttl: "));
  CHECK(r.registry.file == path.string());
}
