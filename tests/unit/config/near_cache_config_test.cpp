// `coalesce:` and `nearCache:` of a registry pattern (issue 8, config/registry.cpp): the shipped
// example, the defaults, every field, and one test per load error with its exact
// file:line:column, YAML path and the sentence saying how to fix it. What `keygate check` warns
// about (a near-cache ttl over the staleness budget, coalescing on an authority pattern) is in
// tests/unit/policies/registry_policy_test.cpp, next to the compiled rules it reads.

#include <catch2/catch.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "config/registry.hpp"
#include "tests/unit/config/registry_checks.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using namespace keygate::config;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

constexpr auto load = &testing::loadRegistry;
constexpr auto dump = &testing::dumpErrors<RegistryLoadResult>;
constexpr auto onlyError = &testing::onlyRegistryError;

// `patterns:` and a valid cache pattern with a TTL policy, lines 1 to 6; the next line is
// line 7, a key of the entry at column 5.
const std::string kHead =
    "patterns:\n"
    "  - pattern: \"cpq:{tenant-<tenant>}:x:<id>\"\n"
    "    owner: team-x\n"
    "    purpose: test keys\n"
    "    authority: false\n"
    "    ttl: {default: 5m}\n";

// The same entry without its ttl (lines 1 to 5; the next line is line 6).
const std::string kHeadNoTtl =
    "patterns:\n"
    "  - pattern: \"cpq:{tenant-<tenant>}:x:<id>\"\n"
    "    owner: team-x\n"
    "    purpose: test keys\n"
    "    authority: false\n";

}  // namespace

TEST_CASE("the shipped example near-caches the published catalog offering only",
          "[registry][near-cache][example]") {
  const auto r = loadRegistryFile(KEYGATE_EXAMPLE_REGISTRY);
  INFO(dump(r));
  REQUIRE(r.ok());
  const auto& patterns = r.registry.patterns;
  const auto find = [&](std::string_view needle) -> const PatternEntry& {
    for (const auto& p : patterns) {
      if (p.pattern.find(needle) != std::string::npos) return p;
    }
    FAIL("no pattern containing " << needle);
    return patterns.front();
  };

  const auto& offering = find(":catalog:offering:<offeringId>:catalog-");
  CHECK(offering.coalesce);
  CHECK(offering.coalescePos.line > offering.pos.line);
  REQUIRE(offering.nearCache.present);
  CHECK(offering.nearCache.ttl == seconds(30));
  CHECK(offering.nearCache.maxBytes == 16 * 1024 * 1024);
  CHECK(offering.nearCache.maxEntries == 10000);
  CHECK_FALSE(offering.nearCache.allowPII);
  CHECK(offering.nearCache.pos.line > offering.coalescePos.line);
  CHECK(offering.nearCache.pos.column == 5);  // the `nearCache:` key of the entry
  // Well within the staleness budget: the near cache serves at most 30s of a 24h contract.
  CHECK(offering.nearCache.ttl < offering.ttl.defaultTtl);
  CHECK_FALSE(offering.authority);
  CHECK_FALSE(offering.containsPII);

  // The active catalog's offering changes with every publication: never near-cached.
  const auto& current = find(":catalog:offering:<offeringId>:current");
  CHECK_FALSE(current.nearCache.present);
  CHECK_FALSE(current.coalesce);

  const auto& preview = find(":pricing:preview:");
  CHECK(preview.coalesce);
  CHECK_FALSE(preview.nearCache.present);

  std::size_t near = 0, coalesced = 0;
  for (const auto& p : patterns) {
    near += p.nearCache.present ? 1 : 0;
    coalesced += p.coalesce ? 1 : 0;
    if (p.authority) {
      INFO(p.pattern);
      CHECK_FALSE(p.coalesce);
    }
  }
  CHECK(near == 1);
  CHECK(coalesced == 2);
}

TEST_CASE("coalesce and nearCache default to off; nearCache's limits have defaults",
          "[registry][near-cache][load]") {
  const auto plain = load(kHead);
  INFO(dump(plain));
  REQUIRE(plain.ok());
  const PatternEntry& p = plain.registry.patterns.at(0);
  CHECK_FALSE(p.coalesce);
  CHECK(p.coalescePos.line == 0);
  CHECK_FALSE(p.nearCache.present);
  CHECK(p.nearCache.ttl == milliseconds(0));

  const auto r = load(kHead + "    coalesce: true\n    nearCache: {ttl: 30s}\n");
  INFO(dump(r));
  REQUIRE(r.ok());
  const PatternEntry& e = r.registry.patterns.at(0);
  CHECK(e.coalesce);
  CHECK(e.coalescePos.line == 7);
  CHECK(e.coalescePos.column == 15);
  REQUIRE(e.nearCache.present);
  CHECK(e.nearCache.ttl == seconds(30));
  CHECK(e.nearCache.maxBytes == 16ull * 1024 * 1024);
  CHECK(e.nearCache.maxEntries == 10000);
  CHECK_FALSE(e.nearCache.allowPII);
  CHECK(e.nearCache.pos.line == 8);
  CHECK(e.nearCache.pos.column == 5);

  // coalesce: false is the default, written out.
  const auto off = load(kHead + "    coalesce: false\n");
  INFO(dump(off));
  REQUIRE(off.ok());
  CHECK_FALSE(off.registry.patterns.at(0).coalesce);
}

TEST_CASE("every nearCache field is read, range ends included", "[registry][near-cache][load]") {
  const auto r = load(
      "patterns:\n"
      "  - pattern: \"cpq:{tenant-<tenant>}:a:<id>\"\n"
      "    owner: o\n"
      "    purpose: p\n"
      "    authority: false\n"
      "    containsPII: true\n"
      "    ttl: {default: 5m}\n"
      "    nearCache:\n"
      "      ttl: 10ms\n"
      "      maxBytes: 1KiB\n"
      "      maxEntries: 1\n"
      "      allowPII: true\n"
      "  - pattern: \"cpq:{tenant-<tenant>}:b:<id>\"\n"
      "    owner: o\n"
      "    purpose: p\n"
      "    authority: false\n"
      "    ttl: {default: 2h}\n"
      "    nearCache: {ttl: 1h, maxBytes: 4GiB, maxEntries: 10000000}\n"
      "  - pattern: \"cpq:{tenant-<tenant>}:c:<id>\"\n"
      "    owner: o\n"
      "    purpose: p\n"
      "    authority: false\n"
      "    ttl: {default: 2h}\n"
      "    nearCache: {ttl: 250ms, maxBytes: 65536, maxEntries: 500, allowPII: false}\n");
  INFO(dump(r));
  REQUIRE(r.ok());
  const auto& a = r.registry.patterns.at(0).nearCache;
  CHECK(a.present);
  CHECK(a.ttl == milliseconds(10));
  CHECK(a.maxBytes == 1024);
  CHECK(a.maxEntries == 1);
  CHECK(a.allowPII);
  CHECK(a.pos.line == 8);
  const auto& b = r.registry.patterns.at(1).nearCache;
  CHECK(b.ttl == hours(1));
  CHECK(b.maxBytes == 4ull * 1024 * 1024 * 1024);
  CHECK(b.maxEntries == 10'000'000);
  CHECK_FALSE(b.allowPII);
  const auto& c = r.registry.patterns.at(2).nearCache;
  CHECK(c.ttl == milliseconds(250));
  CHECK(c.maxBytes == 65536);
  CHECK(c.maxEntries == 500);
  CHECK_FALSE(c.allowPII);
}

TEST_CASE("nearCache values out of range or of the wrong kind are errors at the value",
          "[registry][near-cache][errors]") {
  struct Case {
    std::string yaml;  // after kHead: line 7
    int column;
    const char* path;
    std::vector<const char*> says;  // what is wrong, and how to fix it
  };
  const Case cases[] = {
      {"    nearCache: {ttl: 5ms}\n",
       22,
       "patterns[0].nearCache.ttl",
       {"a near-cache ttl of 5ms is under the minimum 10ms", "give at least 10ms, e.g. ttl: 30s"}},
      {"    nearCache: {ttl: 0ms}\n",
       22,
       "patterns[0].nearCache.ttl",
       {"under the minimum 10ms", "or remove nearCache"}},
      {"    nearCache: {ttl: 2h}\n",
       22,
       "patterns[0].nearCache.ttl",
       {"a near-cache ttl of 2h is over the maximum 1h",
        "how long a value may be served after an invalidation is lost", "give at most 1h"}},
      {"    nearCache: {ttl: 30}\n", 22, "patterns[0].nearCache.ttl", {"unit"}},
      {"    nearCache: {ttl: [30s]}\n",
       22,
       "patterns[0].nearCache.ttl",
       {"got a list; write a single value"}},
      {"    nearCache: {ttl: 30s, maxBytes: 512B}\n",
       37,
       "patterns[0].nearCache.maxBytes",
       {"a near cache of 512B is under the minimum 1KiB",
        "give at least 1KiB, e.g. maxBytes: 16MiB"}},
      {"    nearCache: {ttl: 30s, maxBytes: 8GiB}\n",
       37,
       "patterns[0].nearCache.maxBytes",
       {"a near cache of 8GiB is over the maximum 4GiB per keygate process", "give at most 4GiB"}},
      {"    nearCache: {ttl: 30s, maxBytes: 16mb}\n",
       37,
       "patterns[0].nearCache.maxBytes",
       {"16mb"}},
      {"    nearCache: {ttl: 30s, maxEntries: 0}\n",
       39,
       "patterns[0].nearCache.maxEntries",
       {"must be between 1 and 10000000, got 0", "e.g. maxEntries: 10000"}},
      {"    nearCache: {ttl: 30s, maxEntries: 20000000}\n",
       39,
       "patterns[0].nearCache.maxEntries",
       {"must be between 1 and 10000000, got 20000000"}},
      {"    nearCache: {ttl: 30s, maxEntries: \"100\"}\n",
       39,
       "patterns[0].nearCache.maxEntries",
       {"remove the quotes"}},
      {"    nearCache: {ttl: 30s, allowPII: yes}\n",
       37,
       "patterns[0].nearCache.allowPII",
       {"expected true or false, got 'yes'; write true or false"}},
      {"    coalesce: yes\n",
       15,
       "patterns[0].coalesce",
       {"expected true or false, got 'yes'; write true or false"}},
      {"    coalesce: \"true\"\n", 15, "patterns[0].coalesce", {"remove the quotes"}},
      // The section itself of the wrong kind.
      {"    nearCache: true\n",
       16,
       "patterns[0].nearCache",
       {"nearCache is a section with the keys ttl, maxBytes, maxEntries, allowPII, got a single "
        "value; write nearCache: {ttl: 30s}"}},
      {"    nearCache: 30s\n",
       16,
       "patterns[0].nearCache",
       {"got a single value; write nearCache: {ttl: 30s}"}},
      {"    nearCache: 2m\n", 16, "patterns[0].nearCache", {"write nearCache: {ttl: 2m}"}},
      {"    nearCache: [ttl, 30s]\n", 16, "patterns[0].nearCache", {"got a list; write"}},
  };
  for (const auto& c : cases) {
    const auto e = onlyError(kHead + c.yaml, 7, c.column, c.path);
    for (const char* s : c.says) {
      CHECK_THAT(e.message, Contains(s));
    }
  }
}

TEST_CASE("a nearCache section needs a ttl, and only the keys it knows",
          "[registry][near-cache][errors]") {
  const auto missing =
      onlyError(kHead + "    nearCache: {maxBytes: 1MiB}\n", 7, 5, "patterns[0].nearCache.ttl");
  CHECK(missing.message ==
        "missing 'ttl'; a near cache needs the longest time an entry may be served, which bounds "
        "how stale an answer can be when an invalidation is lost, e.g. nearCache: {ttl: 30s}");
  // An empty mapping, and a block mapping (reported at the nearCache key, not the next line).
  onlyError(kHead + "    nearCache: {}\n", 7, 5, "patterns[0].nearCache.ttl");
  onlyError(kHead + "    nearCache:\n      maxEntries: 5\n", 7, 5, "patterns[0].nearCache.ttl");

  const auto empty = onlyError(kHead + "    nearCache:\n", 7, 5, "patterns[0].nearCache");
  CHECK_THAT(empty.message, StartsWith("missing value; write nearCache: {ttl: 30s}"));
  CHECK_THAT(empty.message, Contains("or remove the nearCache key"));

  const auto unknown = onlyError(kHead + "    nearCache: {ttl: 30s, maxEntires: 100}\n", 7, 27,
                                 "patterns[0].nearCache.maxEntires");
  CHECK(unknown.message == "unknown key 'maxEntires'; did you mean 'maxEntries'?");
  const auto far = onlyError(kHead + "    nearCache: {ttl: 30s, shards: 4}\n", 7, 27,
                             "patterns[0].nearCache.shards");
  CHECK(far.message ==
        "unknown key 'shards'; remove it, or use one of: ttl, maxBytes, maxEntries, allowPII.");
  const auto dup = onlyError(kHead + "    nearCache:\n      ttl: 30s\n      ttl: 1m\n", 9, 7,
                             "patterns[0].nearCache.ttl");
  CHECK_THAT(dup.message, Contains("duplicate key 'ttl' (first set on line 8)"));

  // Slips at the pattern level point at the right key.
  const auto nearcache =
      onlyError(kHead + "    nearcache: {ttl: 30s}\n", 7, 5, "patterns[0].nearcache");
  CHECK(nearcache.message == "unknown key 'nearcache'; did you mean 'nearCache'?");
  const auto coalesced = onlyError(kHead + "    coalesced: true\n", 7, 5, "patterns[0].coalesced");
  CHECK(coalesced.message == "unknown key 'coalesced'; did you mean 'coalesce'?");
  const auto misplaced = onlyError(kHead + "    allowPII: true\n", 7, 5, "patterns[0].allowPII");
  CHECK(misplaced.message ==
        "unknown key 'allowPII'; did you mean 'nearCache.allowPII'? That key belongs under "
        "'nearCache:'.");
}

TEST_CASE("no near cache on an authority pattern", "[registry][near-cache][errors]") {
  const std::string yaml =
      "patterns:\n"
      "  - pattern: \"cpq:{tenant-<tenant>}:lock:<id>\"\n"
      "    owner: o\n"
      "    purpose: p\n"
      "    authority: true\n"
      "    ttl: {default: 10s}\n"
      "    nearCache:\n"
      "      ttl: 1s\n";
  const auto e = onlyError(yaml, 7, 5, "patterns[0].nearCache");
  CHECK_THAT(e.message, StartsWith("a near cache keeps copies of values in keygate's memory, and "
                                   "this pattern has authority: true"));
  CHECK_THAT(e.message, Contains("a copy could answer after the truth changed"));
  CHECK_THAT(e.message, Contains("; remove nearCache, or set authority: false"));

  // Coalescing an authority pattern loads (keygate check warns about it).
  const auto coalesced = load(
      "patterns:\n  - {pattern: \"l:<id>\", owner: o, purpose: p, authority: true, coalesce: "
      "true}\n");
  INFO(dump(coalesced));
  CHECK(coalesced.ok());

  // A bad authority value is reported once, not again here.
  const auto bad = onlyError(
      "patterns:\n  - {pattern: \"l:<id>\", owner: o, purpose: p, authority: yes, ttl: {default: "
      "1m}, nearCache: {ttl: 1s}}\n",
      2, 58, "patterns[0].authority");
  CHECK_THAT(bad.message, Contains("got 'yes'"));
}

TEST_CASE("a near cache needs an effective TTL policy", "[registry][near-cache][ttl][errors]") {
  // An exempt TTL: no staleness budget.
  const auto exempt = onlyError(kHeadNoTtl +
                                    "    ttl: {exempt: \"rebuilt on deploy\"}\n"
                                    "    nearCache: {ttl: 30s}\n",
                                7, 5, "patterns[0].nearCache");
  CHECK(exempt.message ==
        "a near cache needs a TTL policy, the staleness budget its ttl is judged against; this "
        "pattern's ttl is exempt, so its keys have no staleness budget; give the pattern a ttl, "
        "e.g. ttl: {default: 24h, jitter: 1h}, or set defaults.ttl, or remove nearCache");
  // defaults.ttl does not help an exempt pattern.
  onlyError("defaults:\n  ttl: {default: 10m}\n" + kHeadNoTtl +
                "    ttl: {exempt: \"rebuilt on deploy\"}\n    nearCache: {ttl: 30s}\n",
            9, 5, "patterns[0].nearCache");

  // No ttl and no defaults.ttl. On an authority pattern (which may go without a TTL) this is
  // its own error, next to the authority one.
  const auto r = load(
      "patterns:\n"
      "  - pattern: \"l:<id>\"\n"
      "    owner: o\n"
      "    purpose: p\n"
      "    authority: true\n"
      "    nearCache: {ttl: 1s}\n");
  INFO(dump(r));
  REQUIRE(r.errors.size() == 2);
  for (const auto& e : r.errors) {
    CHECK(e.line == 6);
    CHECK(e.column == 5);
    CHECK(e.path == "patterns[0].nearCache");
  }
  const bool ttlError = r.errors[0].message.find(
                            "this pattern has no ttl and defaults has no "
                            "ttl either") != std::string::npos ||
                        r.errors[1].message.find(
                            "this pattern has no ttl and defaults has no "
                            "ttl either") != std::string::npos;
  CHECK(ttlError);

  // A cache pattern without any TTL already gets "a cache pattern needs a TTL contract"; the
  // near cache adds no second error for the same fix.
  const auto cache = onlyError(kHeadNoTtl + "    nearCache: {ttl: 30s}\n", 2, 5, "patterns[0].ttl");
  CHECK_THAT(cache.message, StartsWith("a cache pattern needs a TTL contract"));

  // defaults.ttl is the pattern's policy, written before or after the patterns.
  for (const std::string& yaml :
       {"defaults:\n  ttl: {default: 10m}\n" + kHeadNoTtl + "    nearCache: {ttl: 30s}\n",
        kHeadNoTtl + "    nearCache: {ttl: 30s}\ndefaults:\n  ttl: {default: 10m}\n"}) {
    const auto ok = load(yaml);
    INFO(yaml);
    INFO(dump(ok));
    CHECK(ok.ok());
  }
  // An authority pattern covered by defaults.ttl still may not be near-cached: one error.
  const auto covered = onlyError(
      "defaults:\n  ttl: {default: 10m}\npatterns:\n"
      "  - {pattern: \"l:<id>\", owner: o, purpose: p, authority: true, nearCache: {ttl: 1s}}\n",
      4, 64, "patterns[0].nearCache");
  CHECK_THAT(covered.message, Contains("authority: true"));

  // A bad defaults.ttl or own ttl is reported once, not again at the near cache.
  onlyError(kHeadNoTtl + "    nearCache: {ttl: 30s}\ndefaults:\n  ttl: {default: 5x}\n", 8, 18,
            "defaults.ttl.default");
  onlyError(kHeadNoTtl + "    ttl: {default: 0s}\n    nearCache: {ttl: 30s}\n", 6, 20,
            "patterns[0].ttl.default");
}

TEST_CASE("personal data is near-cached only with allowPII: true",
          "[registry][near-cache][errors]") {
  const std::string pii = kHead + "    containsPII: true\n";  // the next line is line 8
  const auto e = onlyError(pii + "    nearCache: {ttl: 30s}\n", 8, 5, "patterns[0].nearCache");
  CHECK(e.message ==
        "this pattern has containsPII: true, and a near cache would keep personal data in every "
        "keygate's memory, outside Redis and its access controls; write allowPII: true in "
        "nearCache if that was decided (say why in purpose), or remove nearCache");
  // allowPII: false written out: reported at that value.
  onlyError(pii + "    nearCache: {ttl: 30s, allowPII: false}\n", 8, 37,
            "patterns[0].nearCache.allowPII");
  // containsPII after nearCache in the entry: the same rule.
  onlyError(kHead + "    nearCache: {ttl: 30s}\n    containsPII: true\n", 7, 5,
            "patterns[0].nearCache");

  const auto allowed = load(pii + "    nearCache: {ttl: 30s, allowPII: true}\n");
  INFO(dump(allowed));
  REQUIRE(allowed.ok());
  CHECK(allowed.registry.patterns.at(0).nearCache.allowPII);
  // allowPII on a pattern without PII is harmless.
  const auto harmless = load(kHead + "    nearCache: {ttl: 30s, allowPII: true}\n");
  INFO(dump(harmless));
  CHECK(harmless.ok());
}

TEST_CASE("channels are neither near-cached nor coalesced", "[registry][near-cache][errors]") {
  const std::string channel =
      "patterns:\n"
      "  - pattern: \"cpq:{tenant-<tenant>}:invalidate:catalog\"\n"
      "    kind: channel\n"
      "    owner: o\n"
      "    purpose: p\n"
      "    authority: false\n";  // the next line is line 7
  const auto near =
      onlyError(channel + "    nearCache: {ttl: 30s}\n", 7, 5, "patterns[0].nearCache");
  CHECK(near.message ==
        "a pub/sub channel stores nothing in Redis, so there is nothing to near-cache; remove "
        "nearCache from this entry (or set kind: key if it describes keys)");
  const auto coalesce = onlyError(channel + "    coalesce: true\n", 7, 15, "patterns[0].coalesce");
  CHECK(coalesce.message ==
        "a pub/sub channel has no reads to coalesce; remove coalesce from this entry (or set "
        "kind: key if it describes keys)");
  onlyError(channel + "    coalesce: false\n", 7, 15, "patterns[0].coalesce");
}

TEST_CASE("near-cache mistakes are all reported at once, in file order",
          "[registry][near-cache][errors]") {
  const auto r = load(R"(patterns:
  - pattern: "cpq:{tenant-<tenant>}:a:<id>"
    owner: o
    purpose: p
    authority: true
    ttl: {default: 1m}
    coalesce: true
    nearCache: {ttl: 2h, maxBytes: 1B}
  - pattern: "cpq:{tenant-<tenant>}:b:<id>"
    owner: o
    purpose: p
    authority: false
    containsPII: true
    ttl: {exempt: "static"}
    nearCache:
      ttl: 30s
      maxEntrys: 5
  - pattern: "cpq:{tenant-<tenant>}:c"
    kind: channel
    owner: o
    purpose: p
    authority: false
    coalesce: true
)");
  INFO(dump(r));
  const std::vector<std::tuple<int, int, std::string, std::string>> expected = {
      {8, 5, "patterns[0].nearCache", "authority: true"},
      {8, 22, "patterns[0].nearCache.ttl", "over the maximum 1h"},
      {8, 36, "patterns[0].nearCache.maxBytes", "under the minimum 1KiB"},
      {15, 5, "patterns[1].nearCache", "containsPII: true"},
      {15, 5, "patterns[1].nearCache", "ttl is exempt"},
      {17, 7, "patterns[1].nearCache.maxEntrys", "did you mean 'maxEntries'?"},
      {23, 15, "patterns[2].coalesce", "no reads to coalesce"},
  };
  REQUIRE(r.errors.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& [line, column, path, says] = expected[i];
    INFO(i);
    CHECK(r.errors[i].file == "r.yaml");
    CHECK(r.errors[i].line == line);
    CHECK(r.errors[i].column == column);
    CHECK(r.errors[i].path == path);
    CHECK_THAT(r.errors[i].message, Contains(says));
  }
}
