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

#include "tests/unit/config/registry_checks.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using namespace keygate::config;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

namespace {

constexpr auto load = &testing::loadRegistry;
constexpr auto dump = &testing::dumpErrors<RegistryLoadResult>;
constexpr auto onlyError = &testing::onlyRegistryError;

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

  // Sections that do not exist are unknown keys like any other.
  const auto tenants = onlyError("patterns: []\ntenants: {}\n", 2, 1, "tenants");
  CHECK_THAT(tenants.message,
             Contains("remove it, or use one of: version, mode, defaults, denyCommands, "
                      "patterns, rewrites, endpoints."));

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
       "memoryBudget, endpoint, got a single value; indent its keys below it"},
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
      {22, 12, "endpoints"},  // a mapping, not a list
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

// ---- endpoint profiles -----------------------------------------------------------------------

namespace {

// The start of a file whose endpoints[0] is a valid profile on lines 3 to 5; the next line is
// line 6, a key of the profile at column 5.
const std::string kProfileHead =
    "patterns: []\n"
    "endpoints:\n"
    "  - name: p\n"
    "    timeout: 30ms\n"
    "    onFailure: open\n";

}  // namespace

TEST_CASE("the shipped example's endpoint profiles", "[registry][endpoints][example]") {
  const auto r = loadRegistryFile(KEYGATE_EXAMPLE_REGISTRY);
  INFO(dump(r));
  REQUIRE(r.ok());
  const Registry& reg = r.registry;
  const auto profile = [&](std::string_view name) -> const EndpointProfile& {
    for (const auto& p : reg.endpoints) {
      if (p.name == name) return p;
    }
    FAIL("no endpoint profile " << name);
    return reg.endpoints.front();
  };
  const auto selects = [&](std::string_view client) -> std::string {
    for (const auto& p : reg.endpoints) {
      for (const auto& c : p.clients) {
        if (c == client) return p.name;
      }
    }
    return {};
  };
  REQUIRE(reg.endpoints.size() >= 7);
  CHECK(reg.defaults.endpoint == "internal-read");
  CHECK(reg.defaults.endpointPos.line > 0);
  CHECK(profile("internal-read").onFailure == OnFailure::kOpen);

  // Seed 11.2, 11.3, 16.2.
  const auto& catalog = profile("catalog-view");
  CHECK(catalog.timeout == milliseconds(30));
  CHECK(catalog.onFailure == OnFailure::kOpen);
  CHECK(catalog.retries.attempts == 1);
  CHECK(profile("price-preview").onFailure == OnFailure::kOpen);
  CHECK(profile("quote-submit").onFailure == OnFailure::kOpen);
  CHECK(profile("quote-workspace").timeout == milliseconds(80));
  CHECK(profile("order-create").onFailure == OnFailure::kClosed);
  CHECK(profile("rate-limit-public").onFailure == OnFailure::kClosed);
  CHECK(profile("rate-limit-public").timeout <= milliseconds(10));
  CHECK(profile("worklist-view").onFailure == OnFailure::kOpen);
  CHECK(profile("admin").onFailure == OnFailure::kClosed);
  CHECK(selects("catalog-service/view") == "catalog-view");
  CHECK(selects("catalog-service/*") == "catalog-view");
  CHECK(selects("quote-service/submit-quote") == "quote-submit");
  CHECK(selects("quote-service/*") == "quote-workspace");
  CHECK(selects("order-service/create-order") == "order-create");
  CHECK(selects("api-gateway/public-api") == "rate-limit-public");

  for (const auto& p : reg.endpoints) {
    INFO(p.name);
    CHECK(p.pos.line > 0);
    CHECK(p.clients.size() == p.clientPositions.size());
    CHECK_FALSE(p.description.empty());
  }
  // Patterns name the profile that fits their failureBehavior and keep its text.
  std::size_t named = 0;
  for (const auto& p : reg.patterns) {
    INFO(p.pattern);
    CHECK_FALSE(p.failureBehavior.empty());
    if (p.endpoint.empty()) continue;
    ++named;
    CHECK(p.endpointPos.line > p.pos.line);
    CHECK_FALSE(profile(p.endpoint).name.empty());
  }
  CHECK(named >= 8);
  for (const auto& p : reg.patterns) {
    if (p.pattern.find(":idempotency:") != std::string::npos) {
      CHECK(p.endpoint == "order-create");
      CHECK(p.failureBehavior ==
            "fall back to the PostgreSQL idempotency check (slower, still correct)");
    }
    if (p.pattern.find(":lock:") != std::string::npos) CHECK(p.endpoint == "quote-submit");
    if (p.pattern.find(":session:") != std::string::npos) {
      CHECK(p.endpoint.empty());  // the free-text form
      CHECK(p.failureBehavior == "the user is asked to sign in again");
    }
  }
}

TEST_CASE("every endpoint field is read", "[registry][endpoints][load]") {
  const auto r = load(R"(version: 1
defaults:
  endpoint: internal-read
endpoints:
  - name: catalog-view
    clients: ["catalog-service/view", "catalog-service/*"]
    timeout: 30ms
    onFailure: open
    retries: {attempts: 2, backoff: 4ms, jitter: 6ms}
    breaker:
      enabled: true
      consecutiveFailures: 7
      failureRatio: 0.25
      window: 200
      minRequests: 50
      openFor: 2s
      halfOpenProbes: 3
    description: "view catalog: fall back to catalog-service"
  - name: internal-read
    timeout: 100ms
    onFailure: closed
  - {name: default, timeout: 60s, onFailure: closed, breaker: {enabled: false,
                                                     consecutiveFailures: 0}}
patterns:
  - pattern: "cpq:{tenant-<tenant>}:a:<id>"
    owner: o
    purpose: p
    authority: false
    ttl: {default: 5m}
    failureBehavior: {endpoint: catalog-view, description: "read through to catalog-service"}
  - pattern: "cpq:{tenant-<tenant>}:b:<id>"
    owner: o
    purpose: p
    authority: true
    failureBehavior: "proceed without the lock"
  - pattern: "cpq:{tenant-<tenant>}:c:<id>"
    owner: o
    purpose: p
    authority: true
    failureBehavior:
      endpoint: default
)");
  INFO(dump(r));
  REQUIRE(r.ok());
  const Registry& reg = r.registry;
  CHECK(reg.defaults.endpoint == "internal-read");
  CHECK(reg.defaults.endpointPos.line == 3);
  CHECK(reg.defaults.endpointPos.column == 13);
  REQUIRE(reg.endpoints.size() == 3);

  const EndpointProfile& c = reg.endpoints[0];
  CHECK(c.name == "catalog-view");
  CHECK(c.pos.line == 5);
  CHECK(c.pos.column == 11);
  CHECK(c.clients == std::vector<std::string>{"catalog-service/view", "catalog-service/*"});
  REQUIRE(c.clientPositions.size() == 2);
  CHECK(c.clientPositions[0].line == 6);
  CHECK(c.clientPositions[0].column == 15);
  CHECK(c.clientPositions[1].line == 6);
  CHECK(c.clientPositions[1].column == 39);
  CHECK(c.timeout == milliseconds(30));
  CHECK(c.onFailure == OnFailure::kOpen);
  CHECK(c.retries.attempts == 2);
  CHECK(c.retries.backoff == milliseconds(4));
  CHECK(c.retries.jitter == milliseconds(6));
  CHECK(c.breaker.enabled);
  CHECK(c.breaker.consecutiveFailures == 7);
  CHECK(c.breaker.failureRatio == 0.25);
  CHECK(c.breaker.window == 200);
  CHECK(c.breaker.minRequests == 50);
  CHECK(c.breaker.openFor == seconds(2));
  CHECK(c.breaker.halfOpenProbes == 3);
  CHECK(c.description == "view catalog: fall back to catalog-service");

  // Left out: no clients, the documented retry and breaker defaults.
  const EndpointProfile& i = reg.endpoints[1];
  const RetryPolicy retries;
  const BreakerPolicy breaker;
  CHECK(i.name == "internal-read");
  CHECK(i.pos.line == 19);
  CHECK(i.clients.empty());
  CHECK(i.clientPositions.empty());
  CHECK(i.timeout == milliseconds(100));
  CHECK(i.onFailure == OnFailure::kClosed);
  CHECK(i.retries.attempts == 0);
  CHECK(i.retries.attempts == retries.attempts);
  CHECK(i.retries.backoff == milliseconds(2));
  CHECK(i.retries.jitter == milliseconds(3));
  CHECK(i.breaker.enabled);
  CHECK(i.breaker.consecutiveFailures == 5);
  CHECK(i.breaker.failureRatio == 0);
  CHECK(i.breaker.window == breaker.window);
  CHECK(i.breaker.minRequests == breaker.minRequests);
  CHECK(i.breaker.openFor == seconds(1));
  CHECK(i.breaker.halfOpenProbes == 1);
  CHECK(i.description.empty());

  // A profile may be named "default"; a disabled breaker needs no threshold.
  const EndpointProfile& d = reg.endpoints[2];
  CHECK(d.name == "default");
  CHECK(d.pos.line == 22);
  CHECK(d.pos.column == 12);
  CHECK(d.timeout == seconds(60));
  CHECK_FALSE(d.breaker.enabled);
  CHECK(d.breaker.consecutiveFailures == 0);

  // failureBehavior: the map form, the text form, the map form without a description.
  REQUIRE(reg.patterns.size() == 3);
  CHECK(reg.patterns[0].endpoint == "catalog-view");
  CHECK(reg.patterns[0].failureBehavior == "read through to catalog-service");
  CHECK(reg.patterns[0].endpointPos.line == 30);
  CHECK(reg.patterns[0].endpointPos.column == 33);
  CHECK(reg.patterns[1].endpoint.empty());
  CHECK(reg.patterns[1].endpointPos.line == 0);
  CHECK(reg.patterns[1].failureBehavior == "proceed without the lock");
  CHECK(reg.patterns[2].endpoint == "default");
  CHECK(reg.patterns[2].failureBehavior.empty());
  CHECK(reg.patterns[2].endpointPos.line == 41);
  CHECK(reg.patterns[2].endpointPos.column == 17);
}

TEST_CASE("endpoints may be empty or left out", "[registry][endpoints][load]") {
  for (const char* yaml :
       {"patterns: []\n", "patterns: []\nendpoints: []\n", "patterns: []\nendpoints:\n"}) {
    const auto r = load(yaml);
    INFO(yaml);
    INFO(dump(r));
    REQUIRE(r.ok());
    CHECK(r.registry.endpoints.empty());
    CHECK(r.registry.defaults.endpoint.empty());
    CHECK(r.registry.defaults.endpointPos.line == 0);
  }
  // Valid edges.
  for (const char* extra : {
           "    retries: {attempts: 5, backoff: 20ms, jitter: 9ms}\n",   // 29ms < 30ms
           "    retries: {attempts: 0, backoff: 30ms, jitter: 30ms}\n",  // no retry, no sum
           "    breaker: {failureRatio: 1}\n",
           "    breaker: {failureRatio: 1.0, consecutiveFailures: 0}\n",
           "    breaker: {failureRatio: .5, consecutiveFailures: 0}\n",
           "    breaker: {window: 1, minRequests: 1, openFor: 10ms, halfOpenProbes: 1000}\n",
           "    breaker: {window: 100000, minRequests: 100000, openFor: 10m}\n",
           "    breaker: {consecutiveFailures: 1000000}\n",
           "    breaker: {enabled: false, consecutiveFailures: 0, failureRatio: 0}\n",
           "    clients: []\n",
           "    clients:\n",
           "    clients: [\"a\", \"a*\", \"b/*\", \"x!~:#{}\"]\n",
           "    description: \"\"\n",
       }) {
    const auto r = load(kProfileHead + extra);
    INFO(extra);
    INFO(dump(r));
    CHECK(r.ok());
  }
  const auto longest =
      load("patterns: []\nendpoints:\n  - {name: " + std::string(64, 'n') +
           ", timeout: 1ms, onFailure: open, clients: [" + std::string(128, 'c') + "]}\n");
  INFO(dump(longest));
  CHECK(longest.ok());
}

TEST_CASE("bad endpoint fields are errors at the value", "[registry][endpoints][errors]") {
  struct Case {
    std::string yaml;
    int line, column;
    const char* path;
    const char* why;
  };
  const std::string nameLine = "patterns: []\nendpoints:\n  - name: ";
  const std::string rest = "\n    timeout: 30ms\n    onFailure: open\n";
  const Case cases[] = {
      // name: line 3, value at column 11
      {nameLine + "\"catalog view\"" + rest, 3, 11, "endpoints[0].name",
       "'catalog view' is not a profile name; use letters, digits, '.', '_', '/' and '-' only, "
       "e.g. name: catalog-view"},
      {nameLine + "\"a:b\"" + rest, 3, 11, "endpoints[0].name", "is not a profile name"},
      {nameLine + std::string(65, 'n') + rest, 3, 11, "endpoints[0].name",
       "a profile name has at most 64 characters, this one has 65; shorten it"},
      {nameLine + "\"\"" + rest, 3, 11, "endpoints[0].name",
       "must not be empty; e.g. name: catalog-view"},
      {nameLine + "[a]" + rest, 3, 11, "endpoints[0].name", "got a list"},
      // timeout: line 4, column 14; onFailure: line 5, column 16
      {"patterns: []\nendpoints:\n  - name: p\n    timeout: 0ms\n    onFailure: open\n", 4, 14,
       "endpoints[0].timeout", "must be between 1ms and 1m, got 0ms"},
      {"patterns: []\nendpoints:\n  - name: p\n    timeout: 61s\n    onFailure: open\n", 4, 14,
       "endpoints[0].timeout", "must be between 1ms and 1m, got 61s"},
      {"patterns: []\nendpoints:\n  - name: p\n    timeout: 30\n    onFailure: open\n", 4, 14,
       "endpoints[0].timeout", "duration needs a unit"},
      {"patterns: []\nendpoints:\n  - name: p\n    timeout: 30ms\n    onFailure: fail-open\n", 5,
       16, "endpoints[0].onFailure", "unknown failure decision 'fail-open'"},
      {"patterns: []\nendpoints:\n  - name: p\n    timeout: 30ms\n    onFailure: true\n", 5, 16,
       "endpoints[0].onFailure", "closed"},
      // retries: line 6, the mapping at column 14
      {kProfileHead + "    retries: {attempts: 6}\n", 6, 25, "endpoints[0].retries.attempts",
       "must be between 0 and 5, got 6; each retry spends budget and load on a struggling Redis"},
      {kProfileHead + "    retries: {backoff: 31ms}\n", 6, 24, "endpoints[0].retries.backoff",
       "backoff 31ms is longer than the timeout 30ms, the budget a retry has to fit in; lower "
       "backoff"},
      {kProfileHead + "    retries: {jitter: 40ms}\n", 6, 23, "endpoints[0].retries.jitter",
       "jitter 40ms is longer than the timeout 30ms"},
      {kProfileHead + "    retries: {backoff: 2m}\n", 6, 24, "endpoints[0].retries.backoff",
       "must be between 0ms and 1m, got 2m"},
      {kProfileHead + "    retries: {attempts: 2, backoff: 20ms, jitter: 10ms}\n", 6, 14,
       "endpoints[0].retries",
       "backoff + jitter (30ms) leave no room for a retry inside the timeout 30ms; keep their sum "
       "under the timeout (a tenth of it is typical), or set attempts: 0"},
      {kProfileHead + "    retries: 3\n", 6, 14, "endpoints[0].retries",
       "'retries' is a section with the keys attempts, backoff, jitter, got a single value; e.g. "
       "retries: {attempts: 1, backoff: 2ms, jitter: 3ms}"},
      {kProfileHead + "    retries:\n", 6, 5, "endpoints[0].retries",
       "missing value; e.g. retries: {attempts: 1, backoff: 2ms, jitter: 3ms}, or remove the "
       "retries key for the defaults"},
      {kProfileHead + "    retries: {attempts: 1, delay: 2ms}\n", 6, 28,
       "endpoints[0].retries.delay", "unknown key 'delay'"},
      // breaker: line 6, the mapping at column 14
      {kProfileHead + "    breaker: {failureRatio: 1.5}\n", 6, 29,
       "endpoints[0].breaker.failureRatio", "must be between 0 and 1, got 1.5; write a number"},
      {kProfileHead + "    breaker: {failureRatio: -0.1}\n", 6, 29,
       "endpoints[0].breaker.failureRatio", "must be between 0 and 1, got -0.1"},
      {kProfileHead + "    breaker: {failureRatio: 50%}\n", 6, 29,
       "endpoints[0].breaker.failureRatio", "a ratio, not a percentage: write 0.5 for 50%"},
      {kProfileHead + "    breaker: {failureRatio: \"0.5\"}\n", 6, 29,
       "endpoints[0].breaker.failureRatio",
       "expected a ratio from 0 to 1, got the quoted string \"0.5\"; remove the quotes"},
      {kProfileHead + "    breaker: {failureRatio: half}\n", 6, 29,
       "endpoints[0].breaker.failureRatio",
       "'half' is not a ratio; write a number from 0 to 1, e.g. failureRatio: 0.5"},
      {kProfileHead + "    breaker: {failureRatio: 1e-1}\n", 6, 29,
       "endpoints[0].breaker.failureRatio", "'1e-1' is not a ratio"},
      {kProfileHead + "    breaker: {failureRatio: .nan}\n", 6, 29,
       "endpoints[0].breaker.failureRatio", "is not a ratio"},
      {kProfileHead + "    breaker: {window: 0}\n", 6, 23, "endpoints[0].breaker.window",
       "must be between 1 and 100000, got 0"},
      {kProfileHead + "    breaker: {minRequests: 200}\n", 6, 28,
       "endpoints[0].breaker.minRequests",
       "minRequests 200 is more than window 100, so the failure ratio could never be judged; "
       "keep minRequests at most window"},
      {kProfileHead + "    breaker: {window: 10}\n", 6, 23, "endpoints[0].breaker.window",
       "minRequests 20 (the default) is more than window 10"},
      {kProfileHead + "    breaker: {minRequests: 0}\n", 6, 28, "endpoints[0].breaker.minRequests",
       "must be between 1 and 100000, got 0"},
      {kProfileHead + "    breaker: {openFor: 5ms}\n", 6, 24, "endpoints[0].breaker.openFor",
       "must be between 10ms and 10m, got 5ms"},
      {kProfileHead + "    breaker: {openFor: 11m}\n", 6, 24, "endpoints[0].breaker.openFor",
       "must be between 10ms and 10m, got 11m"},
      {kProfileHead + "    breaker: {halfOpenProbes: 0}\n", 6, 31,
       "endpoints[0].breaker.halfOpenProbes", "must be between 1 and 1000, got 0"},
      {kProfileHead + "    breaker: {halfOpenProbes: 1001}\n", 6, 31,
       "endpoints[0].breaker.halfOpenProbes", "must be between 1 and 1000, got 1001"},
      {kProfileHead + "    breaker: {consecutiveFailures: 1000001}\n", 6, 36,
       "endpoints[0].breaker.consecutiveFailures",
       "must be between 0 and 1000000, got 1000001; use 0 to open by failureRatio only"},
      {kProfileHead + "    breaker: {consecutiveFailures: 0}\n", 6, 36,
       "endpoints[0].breaker.consecutiveFailures",
       "the breaker could never open: consecutiveFailures and failureRatio are both 0; set "
       "enabled: false or a threshold, e.g. consecutiveFailures: 5 or failureRatio: 0.5"},
      {kProfileHead + "    breaker: {enabled: yes}\n", 6, 24, "endpoints[0].breaker.enabled",
       "expected true or false, got 'yes'"},
      {kProfileHead + "    breaker: [1]\n", 6, 14, "endpoints[0].breaker",
       "'breaker' is a section with the keys enabled, consecutiveFailures, failureRatio, "
       "window, minRequests, openFor, halfOpenProbes, got a list"},
      // clients: line 6, the list at column 14, its first item at column 15
      {kProfileHead + "    clients: catalog-service/view\n", 6, 14, "endpoints[0].clients",
       "expected a list of client names, got a single value; write clients: "
       "[\"catalog-service/view\"]"},
      {kProfileHead + "    clients: {a: b}\n", 6, 14, "endpoints[0].clients",
       "got a mapping; write clients: [\"catalog-service/view\", \"catalog-service/*\"]"},
      {kProfileHead + "    clients: [\"\"]\n", 6, 15, "endpoints[0].clients[0]",
       "a client name cannot be empty; write the name the service sets with CLIENT SETNAME"},
      {kProfileHead + "    clients: [\"catalog service\"]\n", 6, 15, "endpoints[0].clients[0]",
       "'catalog service' cannot be a client name: Redis refuses spaces, newlines and "
       "characters outside printable ASCII in CLIENT SETNAME"},
      {kProfileHead + "    clients: [\"a\\tb\"]\n", 6, 15, "endpoints[0].clients[0]",
       "cannot be a client name"},
      {kProfileHead + "    clients: [\"quote-*/view\"]\n", 6, 15, "endpoints[0].clients[0]",
       "'*' may only end a client name, where it makes the entry a prefix"},
      {kProfileHead + "    clients: [\"a**\"]\n", 6, 15, "endpoints[0].clients[0]",
       "remove the inner '*'"},
      {kProfileHead + "    clients: [\"*\"]\n", 6, 15, "endpoints[0].clients[0]",
       "a '*' alone would select this profile for every client, ahead of every pattern's "
       "failureBehavior endpoint; to give requests a profile when nothing else does, set "
       "defaults.endpoint instead"},
      {kProfileHead + "    clients: [" + std::string(129, 'c') + "]\n", 6, 15,
       "endpoints[0].clients[0]", "a client name has at most 128 characters, this one has 129"},
      {kProfileHead + "    clients: [[a]]\n", 6, 15, "endpoints[0].clients[0]",
       "expected a string (quote it if it contains ':' or '#'), got a list"},
      {kProfileHead + "    clients: [x, x]\n", 6, 18, "endpoints[0].clients[1]",
       "the client 'x' is listed twice (first on line 6); list each client once"},
      {kProfileHead + "    clients: [\"x/*\", \"x/*\"]\n", 6, 22, "endpoints[0].clients[1]",
       "the prefix 'x/*' is listed twice (first on line 6)"},
      // other keys of the profile
      {kProfileHead + "    description: [a]\n", 6, 18, "endpoints[0].description",
       "expected a string"},
      {kProfileHead + "    timeot: 1s\n", 6, 5, "endpoints[0].timeot",
       "unknown key 'timeot'; did you mean 'timeout'?"},
      {kProfileHead + "    jitter: 1ms\n", 6, 5, "endpoints[0].jitter",
       "unknown key 'jitter'; did you mean 'retries.jitter'? That key belongs under 'retries:'."},
      {kProfileHead + "    openFor: 1s\n", 6, 5, "endpoints[0].openFor",
       "did you mean 'breaker.openFor'? That key belongs under 'breaker:'."},
      {kProfileHead + "    name: q\n", 6, 5, "endpoints[0].name",
       "duplicate key 'name' (first set on line 3); keep only one of them"},
      // the list itself
      {"patterns: []\nendpoints: {}\n", 2, 12, "endpoints",
       "expected a list of endpoint profiles, one '- ' entry each, got a mapping; e.g. - {name: "
       "catalog-view, clients: [\"catalog-service/*\"], timeout: 30ms, onFailure: open}"},
      {"patterns: []\nendpoints: catalog-view\n", 2, 12, "endpoints", "got a single value"},
      {"patterns: []\nendpoints:\n  - catalog-view\n", 3, 5, "endpoints[0]",
       "each entry of endpoints is a mapping, got a single value"},
      // where endpoint keys do not belong
      {"patterns: []\ntimeout: 30ms\n", 2, 1, "timeout",
       "did you mean 'timeout'? That key belongs in each entry of 'endpoints:'."},
      {"patterns: []\ndefaults: {endpoints: x}\n", 2, 12, "defaults.endpoints",
       "unknown key 'endpoints'; did you mean 'endpoint'?"},
  };
  for (const auto& c : cases) {
    const auto e = onlyError(c.yaml, c.line, c.column, c.path);
    CHECK_THAT(e.message, Contains(c.why));
  }
}

TEST_CASE("a profile needs name, timeout and onFailure", "[registry][endpoints][errors]") {
  const auto r = load("patterns: []\nendpoints:\n  - description: x\n  - {name: a}\n");
  INFO(dump(r));
  REQUIRE(r.errors.size() == 5);
  CHECK(r.errors[0].str() ==
        "r.yaml:3:5: endpoints[0].name: missing 'name'; every profile needs a unique name that "
        "patterns and defaults.endpoint refer to, e.g. name: catalog-view");
  CHECK(r.errors[1].str() ==
        "r.yaml:3:5: endpoints[0].timeout: missing 'timeout'; give the Redis budget of one "
        "request, after which it fails open or closed, e.g. timeout: 30ms (a cache lookup, seed "
        "16.2)");
  CHECK(r.errors[2].line == 3);
  CHECK(r.errors[2].column == 5);
  CHECK(r.errors[2].path == "endpoints[0].onFailure");
  CHECK_THAT(r.errors[2].message,
             StartsWith("missing 'onFailure'; state what a request gets when Redis does not "
                        "answer in time: open"));
  CHECK(r.errors[3].line == 4);
  CHECK(r.errors[3].column == 5);
  CHECK(r.errors[3].path == "endpoints[1].timeout");
  CHECK(r.errors[4].path == "endpoints[1].onFailure");
}

TEST_CASE("profile names and client names are unique", "[registry][endpoints][errors]") {
  const auto r = load(R"(patterns: []
endpoints:
  - name: a
    clients: ["svc/x", "svc/*"]
    timeout: 30ms
    onFailure: open
  - name: b
    clients: ["svc/y", "svc/x", "svc/*", "svc/y/*"]
    timeout: 30ms
    onFailure: open
  - name: a
    timeout: 1s
    onFailure: closed
)");
  INFO(dump(r));
  REQUIRE(r.errors.size() == 3);
  CHECK(r.errors[0].str() ==
        "r.yaml:8:24: endpoints[1].clients[1]: the client 'svc/x' already selects profile 'a' "
        "(line 4); a client name selects one profile, remove it from one of the two");
  CHECK(r.errors[1].str() ==
        "r.yaml:8:33: endpoints[1].clients[2]: the prefix 'svc/*' already selects profile 'a' "
        "(line 4); a client name selects one profile, remove it from one of the two");
  CHECK(r.errors[2].str() ==
        "r.yaml:11:11: endpoints[2].name: the same name as endpoints[0] (line 3); profile names "
        "are unique, rename one or merge the two profiles");
  // The other clients are kept: an exact name and a longer prefix under another profile's.
  REQUIRE(r.registry.endpoints.size() == 3);
  CHECK(r.registry.endpoints[1].clients == std::vector<std::string>{"svc/y", "svc/y/*"});
  REQUIRE(r.registry.endpoints[1].clientPositions.size() == 2);
  CHECK(r.registry.endpoints[1].clientPositions[1].column == 42);

  // The same text as an exact name and as a prefix of another profile is allowed.
  const auto exactAndPrefix = load(
      "patterns: []\nendpoints:\n  - {name: a, clients: [svc], timeout: 1s, onFailure: open}\n"
      "  - {name: b, clients: [\"svc*\"], timeout: 1s, onFailure: open}\n");
  INFO(dump(exactAndPrefix));
  CHECK(exactAndPrefix.ok());
  // Names are case-sensitive.
  const auto cases = load(
      "patterns: []\nendpoints:\n  - {name: a, clients: [Svc], timeout: 1s, onFailure: open}\n"
      "  - {name: A, clients: [svc], timeout: 1s, onFailure: open}\n");
  INFO(dump(cases));
  CHECK(cases.ok());
}

TEST_CASE("at most 64 endpoint profiles", "[registry][endpoints][errors]") {
  const auto profiles = [](int n) {
    std::string yaml = "patterns: []\nendpoints:\n";
    for (int i = 0; i < n; ++i) {
      yaml += "  - {name: p" + std::to_string(i) + ", timeout: 1s, onFailure: open}\n";
    }
    return yaml;
  };
  const auto full = load(profiles(64));
  INFO(dump(full));
  CHECK(full.ok());
  CHECK(full.registry.endpoints.size() == 64);
  const auto e = onlyError(profiles(66), 67, 5, "endpoints[64]");
  CHECK(e.message ==
        "the registry has 66 endpoint profiles, more than 64 (each worker keeps a breaker per "
        "profile and Redis node); merge profiles that share a timeout and decision, and select "
        "them with client prefixes such as \"quote-service/*\"");
}

TEST_CASE("failureBehavior is text or {endpoint, description}", "[registry][endpoints]") {
  const std::string head = "patterns:\n" + kCacheEntry;  // the next line is line 7
  const std::string profiles =
      "endpoints:\n  - {name: catalog-view, timeout: 30ms, onFailure: open}\n";
  // Both forms, with the profile defined after the patterns.
  const auto text = load(head + "    failureBehavior: read through; slower\n" + profiles);
  INFO(dump(text));
  REQUIRE(text.ok());
  CHECK(text.registry.patterns[0].failureBehavior == "read through; slower");
  CHECK(text.registry.patterns[0].endpoint.empty());
  const auto map =
      load(head + "    failureBehavior: {endpoint: catalog-view, description: x}\n" + profiles);
  INFO(dump(map));
  REQUIRE(map.ok());
  CHECK(map.registry.patterns[0].failureBehavior == "x");
  CHECK(map.registry.patterns[0].endpoint == "catalog-view");
  CHECK(map.registry.patterns[0].endpointPos.line == 7);
  CHECK(map.registry.patterns[0].endpointPos.column == 33);
  const auto empty = load(head + "    failureBehavior: \"\"\n");
  INFO(dump(empty));
  CHECK(empty.ok());

  struct Case {
    std::string yaml;
    int line, column;
    const char* path;
    const char* why;
  };
  const Case cases[] = {
      {head + "    failureBehavior: {description: x}\n" + profiles, 7, 22,
       "patterns[0].failureBehavior.endpoint",
       "missing 'endpoint'; the mapping form of failureBehavior names the endpoint profile of "
       "requests on these keys, e.g. failureBehavior: {endpoint: catalog-view, description: "
       "\"read through to catalog-service\"}; for text alone write failureBehavior: \"...\""},
      {head + "    failureBehavior: {}\n" + profiles, 7, 22, "patterns[0].failureBehavior.endpoint",
       "missing 'endpoint'"},
      {head + "    failureBehavior: [a, b]\n" + profiles, 7, 22, "patterns[0].failureBehavior",
       "expected text, or a mapping {endpoint: <profile>, description: <text>}, got a list"},
      {head + "    failureBehavior:\n" + profiles, 7, 5, "patterns[0].failureBehavior",
       "missing value; expected a string"},
      {head + "    failureBehavior: {endpoint: catalog-view, descripton: y}\n" + profiles, 7, 47,
       "patterns[0].failureBehavior.descripton", "did you mean 'description'?"},
      {head + "    failureBehavior: {endpoint: \"\"}\n" + profiles, 7, 33,
       "patterns[0].failureBehavior.endpoint", "must not be empty; e.g. endpoint: catalog-view"},
      {head + "    failureBehavior: {endpoint: catalog-view, description: [x]}\n" + profiles, 7, 60,
       "patterns[0].failureBehavior.description", "expected a string"},
      // An endpoint key on the pattern itself belongs in failureBehavior.
      {head + "    endpoint: catalog-view\n" + profiles, 7, 5, "patterns[0].endpoint",
       "unknown key 'endpoint'; did you mean 'failureBehavior.endpoint'? That key belongs under "
       "'failureBehavior:'."},
      // A ttl key on a pattern is still ttl's, not retries'.
      {head + "    jitter: 1s\n", 7, 5, "patterns[0].jitter", "did you mean 'ttl.jitter'?"},
  };
  for (const auto& c : cases) {
    const auto e = onlyError(c.yaml, c.line, c.column, c.path);
    CHECK_THAT(e.message, Contains(c.why));
  }
}

TEST_CASE("references to endpoint profiles must name one", "[registry][endpoints][errors]") {
  // Written before the profiles: references are checked once the whole file is read.
  const auto r = load(R"(defaults:
  endpoint: nope
patterns:
  - pattern: "a:<id>"
    owner: o
    purpose: p
    authority: true
    failureBehavior: {endpoint: catalog-vew}
endpoints:
  - {name: catalog-view, timeout: 30ms, onFailure: open}
  - {name: quote-submit, timeout: 50ms, onFailure: open}
)");
  INFO(dump(r));
  REQUIRE(r.errors.size() == 2);
  CHECK(r.errors[0].str() ==
        "r.yaml:2:13: defaults.endpoint: 'nope' names no endpoint profile; the profiles are: "
        "catalog-view, quote-submit (add a profile named 'nope' under endpoints: if it is a new "
        "one)");
  CHECK(r.errors[1].str() ==
        "r.yaml:8:33: patterns[0].failureBehavior.endpoint: 'catalog-vew' names no endpoint "
        "profile; did you mean 'catalog-view'? the profiles are: catalog-view, quote-submit (add "
        "a profile named 'catalog-vew' under endpoints: if it is a new one)");

  // Without profiles at all (no endpoints key, or an empty list).
  for (const std::string tail : {"", "endpoints: []\n"}) {
    const auto none = onlyError(
        "patterns:\n  - {pattern: a, owner: o, purpose: p, authority: true, failureBehavior: "
        "{endpoint: x}}\n" +
            tail,
        2, 85, "patterns[0].failureBehavior.endpoint");
    CHECK(none.message ==
          "'x' names no endpoint profile: the registry has none; add one under endpoints: with "
          "name: x, timeout and onFailure, or remove this reference");
    const auto noDefault = onlyError("patterns: []\ndefaults: {endpoint: internal-read}\n" + tail,
                                     2, 22, "defaults.endpoint");
    CHECK_THAT(noDefault.message, Contains("'internal-read' names no endpoint profile"));
  }
  const auto emptyDefault =
      onlyError("patterns: []\ndefaults: {endpoint: \"\"}\n", 2, 22, "defaults.endpoint");
  CHECK_THAT(emptyDefault.message, Contains("must not be empty; e.g. endpoint: internal-read"));

  // A profile whose name could not be read hides no follow-up error on its references.
  const auto badName = onlyError(
      "patterns: []\ndefaults: {endpoint: \"a b\"}\nendpoints:\n"
      "  - {name: \"a b\", timeout: 1s, onFailure: open}\n",
      4, 12, "endpoints[0].name");
  CHECK_THAT(badName.message, Contains("is not a profile name"));
  const auto notList = onlyError("patterns: []\ndefaults: {endpoint: a}\nendpoints: {name: a}\n", 3,
                                 12, "endpoints");
  CHECK_THAT(notList.message, Contains("expected a list of endpoint profiles"));
  // A profile with other mistakes still answers to its name.
  const auto badTimeout = onlyError(
      "patterns: []\ndefaults: {endpoint: a}\nendpoints:\n"
      "  - {name: a, timeout: 0ms, onFailure: open}\n",
      4, 24, "endpoints[0].timeout");
  CHECK_THAT(badTimeout.message, Contains("must be between 1ms and 1m"));
  // A duplicate name still resolves.
  const auto dup = onlyError(
      "patterns: []\ndefaults: {endpoint: a}\nendpoints:\n"
      "  - {name: a, timeout: 1s, onFailure: open}\n"
      "  - {name: a, timeout: 1s, onFailure: open}\n",
      5, 12, "endpoints[1].name");
  CHECK_THAT(dup.message, Contains("the same name as endpoints[0] (line 4)"));
}

TEST_CASE("hostile input never throws and ends in errors", "[registry][errors]") {
  for (const char* yaml :
       {"patterns: &a [*a]\n", "patterns:\n  - &x {pattern: a}\n  - *x\n", "? [a]\n: b\n",
        "patterns: !!binary AAAA\n", "patterns:\n  - pattern: !custom a\n", "{{{{{{{{\n",
        "patterns:\n  - {pattern: a, owner: o, purpose: p, authority: true, ttl: {exempt: [1]}}\n",
        "patterns: [[[[]]]]\n", "\t\n", "patterns: [~, ~]\n", "patterns: []\nendpoints: &e [*e]\n",
        "patterns: []\nendpoints: [~]\n",
        "patterns: []\nendpoints: [{name: a, timeout: 1s, onFailure: open, breaker: &b {x: *b}}]\n",
        "patterns: []\nendpoints: [{name: a, timeout: 1s, onFailure: open, clients: &c [*c]}]\n",
        "patterns:\n  - {pattern: a, owner: o, purpose: p, authority: true, failureBehavior: &f "
        "{endpoint: *f}}\n"}) {
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
