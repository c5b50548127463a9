#include "policies/registry_policy.hpp"

#include <catch2/catch.hpp>
#include <deque>
#include <string>
#include <vector>

#include "proxy/resp/reply_writer.hpp"

using namespace keygate;
using namespace keygate::policies;
using std::chrono::milliseconds;

namespace {

// A random source that returns what the test says (clamped to the bound it is asked for).
class FixedRandom final : public RandomSource {
 public:
  explicit FixedRandom(std::deque<std::uint64_t> values) : values_(std::move(values)) {}
  std::uint64_t upTo(std::uint64_t bound) override {
    lastBound = bound;
    if (values_.empty()) return 0;
    const auto v = values_.front();
    values_.pop_front();
    return std::min(v, bound);
  }
  std::uint64_t lastBound = 0;

 private:
  std::deque<std::uint64_t> values_;
};

config::PatternEntry pattern(std::string text, milliseconds ttl = milliseconds(0),
                             milliseconds jitter = milliseconds(0)) {
  config::PatternEntry e;
  e.pattern = std::move(text);
  e.owner = "test";
  e.purpose = "test";
  if (ttl.count() > 0) {
    e.ttl.present = true;
    e.ttl.defaultTtl = ttl;
    e.ttl.jitter = jitter;
  } else {
    e.authority = true;
  }
  return e;
}

std::shared_ptr<const CompiledRegistry> compile(config::Registry r) {
  r.file = "test.yaml";
  std::vector<config::ConfigError> errors;
  auto c = CompiledRegistry::compile(std::move(r), &errors);
  INFO((errors.empty() ? std::string() : errors.front().str()));
  REQUIRE(c);
  return c;
}

struct Harness {
  std::shared_ptr<const CompiledRegistry> registry;
  FixedRandom random{{}};
  EvaluateScratch scratch;
  Decision decision;
  RequestContext context;

  const Decision& run(std::vector<std::string_view> argv) {
    const auto& table = commands::CommandTable::redis70();
    const auto* top = table.find(argv[0]);
    REQUIRE(top != nullptr);
    const auto* info = top;
    if (top->isContainer() && argv.size() >= 2) {
      bool unknown = false;
      if (const auto* sub = table.resolve(argv, &unknown)) info = sub;
    }
    evaluate(*registry, *info, *top, argv, context, random, scratch, decision);
    return decision;
  }
};

config::Registry basicRegistry() {
  config::Registry r;
  r.denyCommands = config::defaultDenyCommands();
  r.patterns.push_back(pattern("cpq:{tenant-<tenant>}:preview:quote-<quoteId>:rev-<rev:int>",
                               milliseconds(300000), milliseconds(30000)));
  r.patterns.push_back(pattern("cpq:{tenant-<tenant>}:lock:quote-<quoteId>"));
  r.patterns.back().authority = true;
  r.patterns.back().ttl.present = true;
  r.patterns.back().ttl.defaultTtl = milliseconds(10000);
  r.patterns.back().ttl.missing = config::MissingTtl::kReject;
  r.patterns.back().ttl.tooLong = config::TooLongTtl::kReject;
  r.patterns.push_back(pattern("cpq:global:flags"));
  r.patterns.back().maxValueBytes = 16;
  auto channel = pattern("cpq:{tenant-<tenant>}:events:catalog");
  channel.kind = config::PatternKind::kChannel;
  r.patterns.push_back(channel);
  return r;
}

}  // namespace

TEST_CASE("registered keys pass; unknown keys are refused with their shape and closest pattern") {
  Harness h;
  h.registry = compile(basicRegistry());
  auto& d = h.run({"GET", "cpq:{tenant-acme}:preview:quote-q1:rev-3"});
  CHECK_FALSE(d.refuse);
  CHECK(d.pattern == 0);
  auto& u = h.run({"GET", "cpq:{tenant-acme}:preview:quote-q1:rev-x"});
  REQUIRE(u.refuse);
  CHECK(u.reason == Reason::kUnknownKey);
  CHECK(u.error.starts_with("KEYUNKNOWN "));
  CHECK(u.error.find("cpq:{tenant-acme}:preview:quote-q1:rev-x") != std::string::npos);
  CHECK(u.error.find("cpq:{tenant-<tenant>}:preview:quote-<quoteId>:rev-<rev:int>") !=
        std::string::npos);
  // Every key of a multi-key command is checked.
  CHECK(h.run({"MGET", "cpq:global:flags", "nope"}).refuse);
  // Keyless commands have nothing to check.
  CHECK_FALSE(h.run({"PING"}).refuse);
}

TEST_CASE("audit mode forwards violations and counts them") {
  auto r = basicRegistry();
  r.mode = config::RegistryMode::kAudit;
  Harness h;
  h.registry = compile(r);
  auto& d = h.run({"GET", "legacy:key"});
  CHECK_FALSE(d.refuse);
  CHECK(d.audited[static_cast<std::size_t>(Reason::kUnknownKey)] == 1);
}

TEST_CASE("a pattern in audit mode is not changed: no TTL injected, oversize let through") {
  auto r = basicRegistry();
  r.patterns[0].mode = config::RegistryMode::kAudit;
  Harness h;
  h.registry = compile(r);
  auto& d = h.run({"SET", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "v"});
  CHECK_FALSE(d.refuse);
  CHECK_FALSE(d.rewritten);
  CHECK(d.ttlInjected == 0);
}

TEST_CASE("SET without a TTL gets default + uniform jitter from the random source") {
  Harness h;
  h.registry = compile(basicRegistry());
  h.random = FixedRandom({12345});
  auto& d = h.run({"SET", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "v"});
  CHECK_FALSE(d.rewritten);            // appended, the client's bytes are kept
  CHECK(h.random.lastBound == 30000);  // jitter range [0, 30 s]
  REQUIRE(d.appended.size() == 2);
  CHECK(d.appended[0] == "PX");
  CHECK(d.appended[1] == std::to_string(300000 + 12345));
  CHECK(d.ttlInjected == 1);
  SECTION("the jitter never exceeds its bound") {
    h.random = FixedRandom({1'000'000});
    auto& e = h.run({"SET", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "v"});
    CHECK(e.appended[1] == std::to_string(300000 + 30000));
  }
  SECTION("with a rewritten key, the whole request is rewritten") {
    auto r = basicRegistry();
    r.rewrites.push_back({"old:<quoteId>:<rev:int>",
                          "cpq:{tenant-<tenant>}:preview:quote-<quoteId>:rev-<rev:int>",
                          {},
                          {}});
    h.registry = compile(r);
    h.context.tenant = "acme";
    auto& e = h.run({"SET", "old:q1:3", "v"});
    REQUIRE(e.rewritten);
    CHECK(e.args == std::vector<std::string>{"SET", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "v",
                                             "PX", std::to_string(300000)});
  }
}

TEST_CASE("TTL too long: clamped by default, refused when the pattern says reject") {
  Harness h;
  h.registry = compile(basicRegistry());
  auto& d = h.run({"SET", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "v", "EX", "86400"});
  REQUIRE(d.rewritten);
  CHECK(d.args[4] == "330");  // max = default + jitter = 330 s
  CHECK(d.ttlClamped == 1);
  auto& e = h.run({"EXPIRE", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "100"});
  CHECK_FALSE(e.rewritten);
  auto& p = h.run({"PEXPIRE", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "999999999"});
  REQUIRE(p.rewritten);
  CHECK(p.args[2] == "330000");
  auto& lock = h.run({"SET", "cpq:{tenant-acme}:lock:quote-q1", "me", "NX", "PX", "60000"});
  REQUIRE(lock.refuse);
  CHECK(lock.error.starts_with("TTLTOOLONG "));
  SECTION("EXPIREAT is judged relative to now") {
    h.context.now = std::chrono::system_clock::time_point(std::chrono::seconds(1'000'000));
    auto& at = h.run({"EXPIREAT", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "1000100"});
    CHECK_FALSE(at.rewritten);
    auto& far = h.run({"EXPIREAT", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "2000000"});
    REQUIRE(far.rewritten);
    CHECK(far.args[2] == "1000330");
  }
}

TEST_CASE("missing TTL with missing: reject is refused; PERSIST and GETEX PERSIST are refused") {
  Harness h;
  h.registry = compile(basicRegistry());
  auto& d = h.run({"SET", "cpq:{tenant-acme}:lock:quote-q1", "me", "NX"});
  REQUIRE(d.refuse);
  CHECK(d.error.starts_with("TTLREQUIRED "));
  CHECK(h.run({"SET", "cpq:{tenant-acme}:lock:quote-q1", "me", "NX", "PX", "5000"}).refuse ==
        false);
  CHECK(h.run({"PERSIST", "cpq:{tenant-acme}:preview:quote-q1:rev-3"})
            .error.starts_with("TTLPERSIST "));
  CHECK(h.run({"GETEX", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "PERSIST"})
            .error.starts_with("TTLPERSIST "));
  // Keys without a TTL contract may be persisted.
  CHECK_FALSE(h.run({"PERSIST", "cpq:global:flags"}).refuse);
}

TEST_CASE("writes that create keys without a TTL argument get a hidden PEXPIRE NX") {
  Harness h;
  h.registry = compile(basicRegistry());
  h.random = FixedRandom({7, 8});
  auto& d = h.run({"HSET", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "f", "v"});
  CHECK_FALSE(d.refuse);
  CHECK_FALSE(d.rewritten);
  REQUIRE(d.hiddenCount == 1);
  std::string expected;
  resp::appendCommand(expected, {"PEXPIRE", "cpq:{tenant-acme}:preview:quote-q1:rev-3",
                                 std::to_string(300007), "NX"});
  CHECK(d.hidden == expected);
  CHECK(d.hiddenEnds == std::vector<std::uint32_t>{static_cast<std::uint32_t>(expected.size())});
  // Reads and deletes create nothing.
  CHECK(h.run({"HGETALL", "cpq:{tenant-acme}:preview:quote-q1:rev-3"}).hiddenCount == 0);
  CHECK(h.run({"DEL", "cpq:{tenant-acme}:preview:quote-q1:rev-3"}).hiddenCount == 0);
  // A write to a pattern with missing: reject is refused instead.
  CHECK(h.run({"INCR", "cpq:{tenant-acme}:lock:quote-q1"}).error.starts_with("TTLREQUIRED "));
  // MSET: one per key.
  auto& m = h.run({"MSET", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "a",
                   "cpq:{tenant-acme}:preview:quote-q2:rev-1", "b"});
  CHECK(m.hiddenCount == 2);
  CHECK(m.hiddenKeys[1] == "cpq:{tenant-acme}:preview:quote-q2:rev-1");
  // SET KEEPTTL keeps an existing TTL and gives a new key one.
  auto& k = h.run({"SET", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "v", "KEEPTTL"});
  CHECK_FALSE(k.rewritten);
  CHECK(k.hiddenCount == 1);
}

TEST_CASE("values over maxValueBytes are refused before forwarding") {
  Harness h;
  h.registry = compile(basicRegistry());
  CHECK_FALSE(h.run({"SET", "cpq:global:flags", "0123456789abcdef"}).refuse);
  auto& d = h.run({"SET", "cpq:global:flags", "0123456789abcdefX"});
  REQUIRE(d.refuse);
  CHECK(d.error.starts_with("VALUETOOLARGE "));
  CHECK(d.error.find("17 bytes") != std::string::npos);
  CHECK(d.error.find("16") != std::string::npos);
  // MSET judges each value by its own key's pattern.
  CHECK_FALSE(h.run({"MSET", "cpq:{tenant-acme}:preview:quote-q1:rev-3", std::string(100, 'x'),
                     "cpq:global:flags", "ok"})
                  .refuse);
  // Reads are not size-checked.
  CHECK_FALSE(h.run({"GET", "cpq:global:flags"}).refuse);
}

TEST_CASE("a connection bound to a tenant touches only that tenant's keys and channels") {
  Harness h;
  h.registry = compile(basicRegistry());
  h.context.tenant = "acme";
  CHECK_FALSE(h.run({"GET", "cpq:{tenant-acme}:preview:quote-q1:rev-3"}).refuse);
  auto& d = h.run({"GET", "cpq:{tenant-globex}:preview:quote-q1:rev-3"});
  REQUIRE(d.refuse);
  CHECK(d.error.starts_with("CROSSTENANT "));
  CHECK(h.run({"PUBLISH", "cpq:{tenant-globex}:events:catalog", "x"})
            .error.starts_with("CROSSTENANT "));
  // Global keys are allowed.
  CHECK_FALSE(h.run({"GET", "cpq:global:flags"}).refuse);
  // Commands that list the keyspace would show other tenants' keys.
  CHECK(h.run({"SCAN", "0"}).error.starts_with("CROSSTENANT "));
  CHECK(h.run({"RANDOMKEY"}).error.starts_with("CROSSTENANT "));
  CHECK(h.run({"PSUBSCRIBE", "*"}).error.starts_with("CROSSTENANT "));
  h.context.tenant = "";
  CHECK_FALSE(h.run({"SCAN", "0"}).refuse);
  CHECK_FALSE(h.run({"PSUBSCRIBE", "*"}).refuse);
}

TEST_CASE("channels must be registered as kind: channel; keys may not use channel patterns") {
  Harness h;
  h.registry = compile(basicRegistry());
  CHECK_FALSE(h.run({"PUBLISH", "cpq:{tenant-acme}:events:catalog", "x"}).refuse);
  CHECK_FALSE(h.run({"SUBSCRIBE", "cpq:{tenant-acme}:events:catalog"}).refuse);
  CHECK(h.run({"SUBSCRIBE", "random-channel"}).error.starts_with("CHANNELUNKNOWN "));
  CHECK(h.run({"GET", "cpq:{tenant-acme}:events:catalog"}).error.starts_with("KEYUNKNOWN "));
}

TEST_CASE("denied commands: the built-in list and the registry's own") {
  Harness h;
  h.registry = compile(basicRegistry());
  CHECK(h.run({"KEYS", "*"}).error.starts_with("DENIED "));
  CHECK(h.run({"FLUSHALL"}).error.starts_with("DENIED "));
  CHECK(h.run({"CONFIG", "GET", "maxmemory"}).error.starts_with("DENIED "));
  CHECK(h.run({"SCRIPT", "FLUSH"}).error.starts_with("DENIED "));
  CHECK_FALSE(h.run({"SCRIPT", "LOAD", "return 1"}).refuse);
  auto r = basicRegistry();
  r.denyCommands = {"DBSIZE"};
  h.registry = compile(r);
  CHECK(h.run({"DBSIZE"}).error.starts_with("DENIED "));
  CHECK_FALSE(h.run({"KEYS", "*"}).refuse);
}

TEST_CASE("rewrites land legacy keys on their canonical pattern, with the connection's tenant") {
  auto r = basicRegistry();
  r.rewrites.push_back(
      {"legacy:lock-<quoteId>", "cpq:{tenant-<tenant>}:lock:quote-<quoteId>", {}, {}});
  Harness h;
  h.registry = compile(r);
  h.context.tenant = "acme";
  auto& d = h.run({"SET", "legacy:lock-q9", "me", "PX", "5000"});
  CHECK_FALSE(d.refuse);
  REQUIRE(d.rewritten);
  CHECK(d.args[1] == "cpq:{tenant-acme}:lock:quote-q9");
  CHECK(d.keysRewritten == 1);
  SECTION("a rewrite target that is not a registered pattern is a load error") {
    auto bad = basicRegistry();
    bad.rewrites.push_back({"legacy:<x>", "cpq:nowhere:<x>", {3, 5}, {3, 20}});
    bad.file = "r.yaml";
    std::vector<config::ConfigError> errors;
    CHECK_FALSE(CompiledRegistry::compile(bad, &errors));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].path == "rewrites[0].to");
    CHECK(errors[0].line == 3);
    CHECK(errors[0].column == 20);
  }
}

TEST_CASE("overlapping patterns are load errors at the pattern's position") {
  auto r = basicRegistry();
  r.patterns.push_back(pattern("cpq:{tenant-<t>}:preview:quote-<q>:rev-<r>", milliseconds(1000)));
  r.patterns.back().pos = {42, 14};
  r.file = "r.yaml";
  std::vector<config::ConfigError> errors;
  CHECK_FALSE(CompiledRegistry::compile(r, &errors));
  REQUIRE_FALSE(errors.empty());
  bool found = false;
  for (const auto& e : errors)
    found = found || (e.line == 42 || e.path.find("patterns[") == 0);
  CHECK(found);
}

// ---- issue 8: coalescing, the near cache and its tracking prefixes ---------------------------

namespace {

KeyPattern parsed(std::string_view text) {
  std::string why;
  auto p = KeyPattern::parse(text, &why);
  INFO(why);
  REQUIRE(p);
  return std::move(*p);
}

// trackingPrefix of `key`, which must match `text`; and a view into the key itself.
std::string prefixOf(std::string_view text, std::string_view key) {
  const KeyPattern p = parsed(text);
  INFO(text << " / " << key);
  REQUIRE(p.match(key));
  const std::string_view prefix = trackingPrefix(p, key);
  CHECK(prefix.data() == key.data());
  CHECK(key.starts_with(prefix));
  return std::string(prefix);
}

// Compiles a registry file's text (the loader and the compiler, as keygate does).
std::shared_ptr<const CompiledRegistry> compileText(const std::string& yaml) {
  auto loaded = config::loadRegistryText(yaml, "r.yaml");
  std::string errors;
  for (const auto& e : loaded.errors)
    errors += e.str() + "\n";
  INFO(errors);
  REQUIRE(loaded.ok());
  return compile(std::move(loaded.registry));
}

}  // namespace

TEST_CASE("trackingPrefix: the key up to the first variable other than <tenant>", "[near-cache]") {
  // <tenant> first, in a hash tag: per tenant.
  const std::string_view offering = "cpq:{tenant-<tenant>}:catalog:offering:<offeringId>:v<v:int>";
  CHECK(prefixOf(offering, "cpq:{tenant-acme}:catalog:offering:o1:v3") ==
        "cpq:{tenant-acme}:catalog:offering:");
  CHECK(prefixOf(offering, "cpq:{tenant-globex}:catalog:offering:o2:v14") ==
        "cpq:{tenant-globex}:catalog:offering:");
  CHECK(trackingPrefixTemplate(parsed(offering)) == "cpq:{tenant-<tenant>}:catalog:offering:");

  // <tenant> in the middle: the literal text after it, up to the next variable, is kept.
  CHECK(prefixOf("app:orders:<tenant>:order-<id:int>", "app:orders:acme:order-7") ==
        "app:orders:acme:order-");
  CHECK(trackingPrefixTemplate(parsed("app:orders:<tenant>:order-<id:int>")) ==
        "app:orders:<tenant>:order-");

  // <tenant> and the variable in one segment: where <tenant>'s value ends is the matcher's.
  CHECK(prefixOf("x:{t-<tenant>}-<id>:y", "x:{t-acme}-42:y") == "x:{t-acme}-");
  CHECK(prefixOf("x:{t-<tenant>}-<id>:y", "x:{t-a}-b}-42:y") == "x:{t-a}-");
  CHECK(trackingPrefixTemplate(parsed("x:{t-<tenant>}-<id>:y")) == "x:{t-<tenant>}-");

  // No variable, or only <tenant>: the whole key.
  CHECK(prefixOf("a:b", "a:b") == "a:b");
  CHECK(trackingPrefixTemplate(parsed("a:b")) == "a:b");
  CHECK(prefixOf("cpq:{tenant-<tenant>}:config", "cpq:{tenant-acme}:config") ==
        "cpq:{tenant-acme}:config");
  CHECK(trackingPrefixTemplate(parsed("cpq:{tenant-<tenant>}:config")) ==
        "cpq:{tenant-<tenant>}:config");

  // One variable; and a variable first, which covers every key (an empty prefix).
  CHECK(prefixOf("cat:<id>", "cat:7") == "cat:");
  CHECK(prefixOf("<id>:x", "7:x").empty());
  CHECK(trackingPrefixTemplate(parsed("<id>:x")).empty());

  // Regex variables are variables like the others.
  const std::string_view versioned =
      "cpq:{tenant-<tenant>}:catalog:offering:<offeringId>:catalog-<catalogVersion:/v[0-9]{4}-"
      "[0-9]{2}/>";
  CHECK(prefixOf(versioned, "cpq:{tenant-acme}:catalog:offering:o1:catalog-v2026-01") ==
        "cpq:{tenant-acme}:catalog:offering:");
  CHECK(prefixOf("feed:<v:/v[0-9]+/>:items", "feed:v12:items") == "feed:");
  CHECK(trackingPrefixTemplate(parsed("feed:<v:/v[0-9]+/>:items")) == "feed:");
  CHECK(prefixOf("feed:{t-<tenant>}:items-<v:/v[0-9]+/>", "feed:{t-acme}:items-v1") ==
        "feed:{t-acme}:items-");

  // Escaped angle brackets are literal text: the key has '<', the template keeps the escape.
  CHECK(prefixOf("tag:\\<b\\>:<id>", "tag:<b>:9") == "tag:<b>:");
  CHECK(trackingPrefixTemplate(parsed("tag:\\<b\\>:<id>")) == "tag:\\<b\\>:");
  CHECK(prefixOf("t:a\\<-<id>", "t:a<-5") == "t:a<-");
  CHECK(prefixOf("t:{<tenant>}\\<<id>", "t:{acme}<5") == "t:{acme}<");

  // A key that does not match (fewer segments) gives the whole key, never bytes past its end.
  const KeyPattern p = parsed(offering);
  CHECK(trackingPrefix(p, "cpq:{tenant-acme}") == "cpq:{tenant-acme}");
  CHECK(trackingPrefix(p, "").empty());
}

TEST_CASE("compiled rules carry coalesce and the near cache, with the defaults", "[near-cache]") {
  const std::string yaml = R"(patterns:
  - pattern: "cpq:{tenant-<tenant>}:catalog:offering:<offeringId>:v<v:int>"
    owner: o
    purpose: p
    authority: false
    ttl: {default: 24h}
    coalesce: true
    nearCache: {ttl: 30s}
  - pattern: "cpq:{tenant-<tenant>}:preview:<id>"
    owner: o
    purpose: p
    authority: false
    ttl: {default: 5m}
    nearCache: {ttl: 2s, maxBytes: 1MiB, maxEntries: 50}
  - pattern: "cpq:{tenant-<tenant>}:lock:<id>"
    owner: o
    purpose: p
    authority: true
    ttl: {default: 10s}
  - pattern: "cpq:{tenant-<tenant>}:events"
    kind: channel
    owner: o
    purpose: p
    authority: false
)";
  const auto registry = compileText(yaml);
  REQUIRE(registry->patternCount() == 4);
  const auto& offering = registry->rules(0);
  CHECK(offering.coalesce);
  CHECK(offering.nearCache);
  CHECK(offering.nearTtl == std::chrono::seconds(30));
  CHECK(offering.nearMaxBytes == 16ull * 1024 * 1024);
  CHECK(offering.nearMaxEntries == 10000);
  const auto& preview = registry->rules(1);
  CHECK_FALSE(preview.coalesce);
  CHECK(preview.nearCache);
  CHECK(preview.nearTtl == milliseconds(2000));
  CHECK(preview.nearMaxBytes == 1024 * 1024);
  CHECK(preview.nearMaxEntries == 50);
  for (std::size_t i : {2u, 3u}) {
    const auto& r = registry->rules(i);
    INFO(r.entry->pattern);
    CHECK_FALSE(r.coalesce);
    CHECK_FALSE(r.nearCache);
    CHECK(r.nearTtl == milliseconds(0));
    CHECK(r.nearMaxBytes == 0);
    CHECK(r.nearMaxEntries == 0);
  }
  // pattern(i) is the compiled pattern of rules(i).
  for (std::size_t i = 0; i < registry->patternCount(); ++i) {
    CHECK(registry->pattern(i).text() == registry->rules(i).entry->pattern);
  }
  const std::string key = "cpq:{tenant-acme}:catalog:offering:o1:v3";
  const int index = registry->keys().match(key);
  REQUIRE(index == 0);
  CHECK(trackingPrefix(registry->pattern(static_cast<std::size_t>(index)), key) ==
        "cpq:{tenant-acme}:catalog:offering:");
  CHECK(trackingPrefixTemplate(registry->pattern(1)) == "cpq:{tenant-<tenant>}:preview:");

  // A change to them is a change of the rules in force (the hash a reload compares) ...
  const auto replace = [&](std::string_view from, std::string_view to) {
    std::string text = yaml;
    const auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    return compileText(text)->hash();
  };
  CHECK(replace("    coalesce: true\n", "") != registry->hash());
  CHECK(replace("nearCache: {ttl: 30s}", "nearCache: {ttl: 31s}") != registry->hash());
  CHECK(replace("maxEntries: 50", "maxEntries: 51") != registry->hash());
  CHECK(replace("maxBytes: 1MiB", "maxBytes: 2MiB") != registry->hash());
  CHECK(replace("ttl: {default: 5m}\n    nearCache: {ttl: 2s, maxBytes: 1MiB, maxEntries: 50}",
                "ttl: {default: 5m}") != registry->hash());
  // ... while the same rules written differently are not.
  CHECK(replace("nearCache: {ttl: 30s}", "nearCache: {ttl: 30000ms, maxEntries: 10000}") ==
        registry->hash());
  CHECK(replace("    coalesce: true\n", "") ==
        replace("    coalesce: true\n", "    coalesce: false\n"));
}

TEST_CASE("keygate check's warnings: staleness budget and coalescing an authority pattern",
          "[near-cache]") {
  const auto registry = compileText(R"(defaults:
  ttl: {default: 10s}
patterns:
  - pattern: "a:<id>"
    owner: o
    purpose: p
    authority: false
    ttl: {default: 5m}
    nearCache: {ttl: 1h}
  - pattern: "b:<id>"
    owner: o
    purpose: p
    authority: false
    ttl: {default: 5m}
    nearCache: {ttl: 5m}
    coalesce: true
  - pattern: "c:<id>"
    owner: o
    purpose: p
    authority: false
    nearCache: {ttl: 30s}
  - pattern: "d:<id>"
    owner: o
    purpose: p
    authority: true
    coalesce: true
  - pattern: "e:<id>"
    owner: o
    purpose: p
    authority: false
)");
  // Over the pattern's own TTL.
  CHECK(cachingWarnings(registry->rules(0)) ==
        std::vector<std::string>{
            "the near cache may serve a value up to 1h old, longer than the pattern's TTL 5m "
            "(its staleness budget); lower nearCache.ttl to at most 5m"});
  // Equal to it, and coalescing a cache pattern: nothing to say.
  CHECK(cachingWarnings(registry->rules(1)).empty());
  // The budget of a pattern without a ttl of its own is defaults.ttl.
  CHECK(cachingWarnings(registry->rules(2)) ==
        std::vector<std::string>{
            "the near cache may serve a value up to 30s old, longer than the pattern's TTL 10s "
            "(its staleness budget); lower nearCache.ttl to at most 10s"});
  // Coalescing an authority pattern.
  const auto authority = cachingWarnings(registry->rules(3));
  REQUIRE(authority.size() == 1);
  CHECK(authority[0] ==
        "coalesce on an authority: true pattern: a read joining one already in flight can see a "
        "value from just before it was sent (a lock or a counter read a moment late); remove "
        "coalesce unless every reader of these keys accepts that");
  CHECK(cachingWarnings(registry->rules(4)).empty());
}

TEST_CASE("a command row that is not the table's own is evaluated by its name") {
  // evaluate() looks a command's TTL and channel handling up by the row's address in the table;
  // a copy of a row lies outside it and is looked up by name, with the same result.
  Harness h;
  h.registry = compile(basicRegistry());
  h.random = FixedRandom({7});
  auto run = [&](std::vector<std::string_view> argv) -> const Decision& {
    const commands::CommandInfo copy = *commands::CommandTable::redis70().find(argv[0]);
    evaluate(*h.registry, copy, copy, argv, h.context, h.random, h.scratch, h.decision);
    return h.decision;
  };
  const auto& set = run({"SET", "cpq:{tenant-acme}:preview:quote-q1:rev-3", "v"});
  CHECK_FALSE(set.refuse);
  REQUIRE(set.appended.size() == 2);
  CHECK(set.appended[0] == "PX");
  CHECK(set.appended[1] == std::to_string(300000 + 7));
  CHECK(run({"MSET", "cpq:global:flags", std::string(17, 'x')}).reason == Reason::kValueTooLarge);
  CHECK(run({"PUBLISH", "cpq:nope", "x"}).reason == Reason::kUnknownChannel);
  h.context.tenant = "acme";
  CHECK(run({"SCAN", "0"}).reason == Reason::kCrossTenant);
  CHECK(run({"PSUBSCRIBE", "*"}).reason == Reason::kCrossTenant);
}
