#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "config/registry.hpp"
#include "policies/key_hash.hpp"
#include "policies/registry_policy.hpp"
#include "proxy/audit_command.hpp"
#include "proxy/resp/reply_reader.hpp"
#include "proxy/resp/reply_writer.hpp"

using namespace keygate;
using namespace keygate::proxy;
using namespace std::chrono_literals;

namespace {

const AuditTime t0 = AuditTime{} + 1000s;

std::shared_ptr<const policies::CompiledRegistry> compile(std::string_view yaml) {
  auto loaded = config::loadRegistryText(yaml, "r.yaml");
  INFO((loaded.errors.empty() ? std::string() : loaded.errors.front().str()));
  REQUIRE(loaded.ok());
  std::vector<config::ConfigError> errors;
  auto compiled = policies::CompiledRegistry::compile(std::move(loaded.registry), &errors);
  INFO((errors.empty() ? std::string() : errors.front().str()));
  REQUIRE(compiled);
  return compiled;
}

// 0 item (cache, TTL 60s..120s), 1 lock (authority, TTL), 2 flag (authority, no TTL),
// 3 forever (cache, exempt), 4 session (PII), 5 price (commercially sensitive), 6 a channel;
// legacy keys "olditem-<id>" are rewritten onto item:<id>.
constexpr std::string_view kRegistry = R"(version: 1
patterns:
  - pattern: "item:<id>"
    owner: catalog
    purpose: t
    authority: false
    ttl: {default: 60s, max: 120s}
  - pattern: "lock:<id>"
    owner: orders
    purpose: t
    authority: true
    ttl: {default: 10s}
  - pattern: "flag:<name>"
    owner: ops
    purpose: t
    authority: true
  - pattern: "forever:<id>"
    owner: ops
    purpose: t
    authority: false
    ttl: {exempt: "reference data, rebuilt by hand"}
  - pattern: "session:<id>"
    owner: identity
    purpose: t
    authority: false
    containsPII: true
    ttl: {default: 30m}
  - pattern: "price:<id>"
    owner: pricing
    purpose: t
    authority: false
    containsCommerciallySensitiveData: true
    ttl: {default: 5m}
  - pattern: "events:<id>"
    kind: channel
    owner: ops
    purpose: t
    authority: false
rewrites:
  - from: "olditem-<id>"
    to: "item:<id>"
)";

// --- a tiny JSON well-formedness checker (no JSON library among the dependencies) -----------

struct JsonCheck {
  std::string_view s;
  std::size_t i = 0;
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r'))
      ++i;
  }
  bool lit(std::string_view w) {
    if (s.substr(i, w.size()) != w) return false;
    i += w.size();
    return true;
  }
  bool str() {
    if (i >= s.size() || s[i] != '"') return false;
    for (++i; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c == '"') {
        ++i;
        return true;
      }
      if (c < 0x20 || c >= 0x7f) return false;  // keygate escapes everything else
      if (c == '\\') ++i;
    }
    return false;
  }
  bool num() {
    const std::size_t start = i;
    if (i < s.size() && s[i] == '-') ++i;
    while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
      ++i;
    return i > start;
  }
  bool value() {
    ws();
    if (i >= s.size()) return false;
    bool ok = false;
    if (s[i] == '{') {
      ++i;
      ws();
      if (i < s.size() && s[i] == '}') {
        ++i;
        return true;
      }
      do {
        ws();
        if (!str()) return false;
        ws();
        if (!lit(":")) return false;
        if (!value()) return false;
        ws();
      } while (lit(","));
      ok = lit("}");
    } else if (s[i] == '[') {
      ++i;
      ws();
      if (i < s.size() && s[i] == ']') {
        ++i;
        return true;
      }
      do {
        if (!value()) return false;
        ws();
      } while (lit(","));
      ok = lit("]");
    } else if (s[i] == '"') {
      ok = str();
    } else {
      ok = lit("true") || lit("false") || lit("null") || num();
    }
    return ok;
  }
  bool document() {
    if (!value()) return false;
    ws();
    return i == s.size();
  }
};

bool wellFormedJson(std::string_view text) {
  JsonCheck c{text};
  return c.document();
}

// --- fakes ----------------------------------------------------------------------------------

class FakeClock final : public AuditClock {
 public:
  AuditTime now() override { return now_; }
  void sleepUntil(AuditTime when) override {
    if (when > now_) now_ = when;
  }
  void advance(AuditTime::duration d) { now_ += d; }

 private:
  AuditTime now_ = t0;
};

struct FakeKey {
  std::string name;
  std::int64_t pttl = -1;
  std::uint64_t bytes = 64;
};

// A node whose SCAN walks a fixed key list (the cursor is an offset), with PTTL and MEMORY
// USAGE answered from the list. Each exchange takes `latency` on the fake clock. Records the
// time each SCAN was sent and each reply received.
class FakeNode final : public AuditConnection {
 public:
  FakeNode(FakeClock& clock, std::vector<FakeKey> keys) : clock_(clock), keys_(std::move(keys)) {}

  bool exchange(const std::string& requests, std::size_t replies, std::vector<std::string>& frames,
                std::string& error) override {
    frames.clear();
    if (failAfterScans >= 0 && scanSent.size() >= static_cast<std::size_t>(failAfterScans)) {
      error = "connection reset";
      return false;
    }
    resp::ReplyReader reader(requests);
    std::vector<std::string> argv;
    while (auto head = reader.next()) {
      REQUIRE(head->type == '*');
      argv.clear();
      for (std::int64_t a = 0; a < head->integer; ++a) {
        auto arg = reader.next();
        REQUIRE(arg);
        argv.emplace_back(arg->text);
      }
      frames.push_back(answer(argv));
    }
    REQUIRE(frames.size() == replies);
    clock_.advance(latency);
    if (argv.front() == "SCAN") scanReceived.push_back(clock_.now());
    return true;
  }

  std::string answer(const std::vector<std::string>& argv) {
    std::string out;
    const std::string& cmd = argv.front();
    if (cmd == "SCAN") {
      scanSent.push_back(clock_.now());
      if (!scanError.empty()) {
        resp::appendError(out, scanError);
        return out;
      }
      REQUIRE(argv.size() == 4);
      REQUIRE(argv[2] == "COUNT");
      std::size_t from = std::stoul(argv[1]);
      std::size_t n = std::stoul(argv[3]);
      if (!extra.empty()) {
        n += extra.front();
        extra.erase(extra.begin());
      }
      const std::size_t to = std::min(keys_.size(), from + n);
      resp::appendArrayHeader(out, 2);
      resp::appendBulk(out, to >= keys_.size() ? "0" : std::to_string(to));
      resp::appendArrayHeader(out, to - from);
      for (std::size_t k = from; k < to; ++k)
        resp::appendBulk(out, keys_[k].name);
      batches.push_back(to - from);
      return out;
    }
    const FakeKey* key = nullptr;
    for (const auto& k : keys_) {
      if (k.name == argv.back()) key = &k;
    }
    REQUIRE(key != nullptr);
    if (cmd == "PTTL") {
      ++pttlCalls;
      if (!pttlError.empty()) {
        resp::appendError(out, pttlError);
      } else {
        resp::appendInteger(out, key->pttl);
      }
      return out;
    }
    if (cmd == "MEMORY") {
      REQUIRE(argv.size() == 3);
      REQUIRE(argv[1] == "USAGE");
      measured.push_back(key->name);
      if (!memoryError.empty()) {
        resp::appendError(out, memoryError);
      } else if (key->pttl == -2) {
        resp::appendNull(out, resp::Protocol::kResp2);
      } else {
        resp::appendInteger(out, static_cast<std::int64_t>(key->bytes));
      }
      return out;
    }
    FAIL("unexpected command " << cmd);
    return out;
  }

  AuditTime::duration latency = 2ms;
  std::vector<std::size_t> extra;  // keys added to successive SCAN replies beyond COUNT
  std::string scanError;
  std::string pttlError;
  std::string memoryError;
  int failAfterScans = -1;
  std::vector<AuditTime> scanSent;
  std::vector<AuditTime> scanReceived;
  std::vector<std::size_t> batches;
  std::vector<std::string> measured;
  std::size_t pttlCalls = 0;

 private:
  FakeClock& clock_;
  std::vector<FakeKey> keys_;
};

std::vector<FakeKey> itemKeys(std::size_t n) {
  std::vector<FakeKey> keys;
  for (std::size_t i = 0; i < n; ++i)
    keys.push_back({"item:" + std::to_string(i), 60'000, 100 + i});
  return keys;
}

// For every pair of batches i <= j that Redis may have run within one second of each other
// (batch j sent less than a second after batch i's reply), the keys of batches i..j.
std::uint64_t worstWindow(const std::vector<AuditTime>& sent,
                          const std::vector<AuditTime>& received,
                          const std::vector<std::size_t>& keys, std::size_t* calls = nullptr) {
  std::uint64_t worst = 0;
  std::size_t worstCalls = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    std::uint64_t sum = 0;
    for (std::size_t j = i; j < keys.size() && sent[j] - received[i] < 1s; ++j) {
      sum += keys[j];
      worst = std::max(worst, sum);
      worstCalls = std::max(worstCalls, j - i + 1);
    }
  }
  if (calls != nullptr) *calls = worstCalls;
  return worst;
}

std::string argvError(std::vector<std::string_view> args) {
  return parseAuditArgs(args).error;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ScanPacer

TEST_CASE("audit pacer: the first SCAN goes at once and counts in the first second") {
  ScanPacer pacer(100, 100);
  CHECK(pacer.nextSend(t0) == t0);
  pacer.record(t0 + 1ms, 100);
  // A whole second's worth came back at t0 + 1ms: nothing more until that is a second old.
  CHECK(pacer.nextSend(t0 + 1ms) == t0 + 1ms + 1s);
  CHECK(pacer.nextSend(t0 + 500ms) == t0 + 1ms + 1s);
  CHECK(pacer.nextSend(t0 + 3s) == t0 + 3s);  // never before now
  CHECK(pacer.peakWindowKeys() == 100);
}

TEST_CASE("audit pacer: SCANs are spaced count/rate apart, measured from the last reply") {
  ScanPacer pacer(1000, 100);
  pacer.record(t0, 100);
  CHECK(pacer.nextSend(t0) == t0 + 100ms);
  pacer.record(t0 + 100ms + 3ms, 40);  // a short batch still costs a whole spacing
  CHECK(pacer.nextSend(t0 + 103ms) == t0 + 203ms);
}

TEST_CASE("audit pacer: the window waits for old batches to leave it") {
  // Spacing alone (100 keys every 400 ms) would let 300 keys into 800 ms.
  ScanPacer pacer(250, 100);
  pacer.record(t0, 100);
  CHECK(pacer.nextSend(t0) == t0 + 400ms);
  pacer.record(t0 + 400ms, 100);
  // 200 keys within the last second: the next 100 fit once the first batch is a second old.
  CHECK(pacer.nextSend(t0 + 400ms) == t0 + 1s);
  pacer.record(t0 + 1s, 100);
  CHECK(pacer.nextSend(t0 + 1s) == t0 + 1400ms);
  CHECK(pacer.peakWindowKeys() == 200);
}

TEST_CASE("audit pacer: a batch larger than COUNT raises the reservation") {
  ScanPacer pacer(1000, 100);
  pacer.record(t0, 130);
  CHECK(pacer.reservation() == 130);
  CHECK(pacer.nextSend(t0) == t0 + 130ms);
  pacer.record(t0 + 200ms, 90);
  CHECK(pacer.reservation() == 130);  // the largest so far, not the last
}

TEST_CASE("audit pacer: no one-second window ever holds more than the rate (fake clock)") {
  for (const std::uint32_t seed : {1u, 2u, 3u, 42u, 2026u}) {
    std::mt19937 rng(seed);
    const std::uint64_t rate = std::uniform_int_distribution<std::uint64_t>(50, 5000)(rng);
    const std::uint64_t count = std::uniform_int_distribution<std::uint64_t>(1, rate)(rng);
    INFO("seed " << seed << " rate " << rate << " count " << count);
    ScanPacer pacer(rate, count);
    AuditTime now = t0;
    std::vector<AuditTime> sent, received;
    std::vector<std::size_t> keys;
    for (int b = 0; b < 400; ++b) {
      const AuditTime at = pacer.nextSend(now);
      REQUIRE(at >= now);
      // Redis returns up to COUNT keys (fewer near the end of a table, or sparse buckets).
      const std::size_t n = std::uniform_int_distribution<std::size_t>(0, count)(rng);
      const auto latency =
          std::chrono::microseconds(std::uniform_int_distribution<int>(50, 80'000)(rng));
      sent.push_back(at);
      received.push_back(at + latency);
      keys.push_back(n);
      pacer.record(at + latency, n);
      // The caller then pipelines PTTL / MEMORY USAGE, which takes time too.
      now = at + latency +
            std::chrono::microseconds(std::uniform_int_distribution<int>(0, 30'000)(rng));
    }
    std::size_t calls = 0;
    CHECK(worstWindow(sent, received, keys, &calls) <= rate);
    CHECK(calls <= (rate + count - 1) / count);
    CHECK(pacer.peakWindowKeys() <= rate);
  }
}

TEST_CASE("audit pacer: after one oversized batch the bound holds again") {
  ScanPacer pacer(1000, 100);
  AuditTime now = t0;
  std::vector<AuditTime> sent, received;
  std::vector<std::size_t> keys;
  for (int b = 0; b < 100; ++b) {
    const AuditTime at = pacer.nextSend(now);
    const std::size_t n = b == 3 ? 140 : 100 + static_cast<std::size_t>(b % 7);
    sent.push_back(at);
    received.push_back(at + 1ms);
    keys.push_back(n);
    pacer.record(at + 1ms, n);
    now = at + 1ms;
  }
  // Windows starting after the oversized batch (index 3) stay within the rate.
  const std::vector<AuditTime> s(sent.begin() + 4, sent.end()),
      r(received.begin() + 4, received.end());
  const std::vector<std::size_t> k(keys.begin() + 4, keys.end());
  CHECK(worstWindow(s, r, k) <= 1000);
}

// ---------------------------------------------------------------------------------------------
// The SCAN loop against a fake node

TEST_CASE("audit scan: every key visited once, PTTL for each, paced before every SCAN") {
  const auto registry = compile(kRegistry);
  FakeClock clock;
  FakeNode node(clock, itemKeys(350));
  ScanPacer pacer(100, 50);
  AuditTally tally(*registry, AuditLimits{});
  AuditNodeResult result;
  result.address = "fake:1";
  std::string error;
  std::size_t progressCalls = 0;
  REQUIRE(scanNode(node, clock, pacer, AuditScanSettings{50, 1}, tally, result, error,
                   [&](const AuditNodeResult&) { ++progressCalls; }));
  CHECK(error.empty());
  CHECK(result.keys == 350);
  CHECK(result.scanCalls == node.scanSent.size());
  CHECK(result.scanCalls == 7);
  CHECK(progressCalls == 7);
  CHECK(node.pttlCalls == 350);
  CHECK(node.measured.size() == 350);
  const auto report = tally.report();
  CHECK(report.keys == 350);
  CHECK(report.patterns[0].keys == 350);
  // 350 keys at 100 keys/s: the first 100 at once, then 100 per second: well over 2.5 s.
  CHECK(clock.now() - t0 >= 3s);
  CHECK(clock.now() - t0 < 3100ms);  // and not slower than that: 7 SCANs, 500 ms apart
  CHECK(worstWindow(node.scanSent, node.scanReceived, node.batches) <= 100);
  for (std::size_t i = 1; i < node.scanSent.size(); ++i) {
    CHECK(node.scanSent[i] - node.scanReceived[i - 1] >= 500ms);  // 50 keys at 100/s
  }
}

TEST_CASE("audit scan: the rate is shared by the nodes of one audit") {
  const auto registry = compile(kRegistry);
  FakeClock clock;
  FakeNode a(clock, itemKeys(100));
  FakeNode b(clock, itemKeys(100));
  ScanPacer pacer(100, 100);
  AuditTally tally(*registry, AuditLimits{});
  AuditNodeResult ra, rb;
  std::string error;
  REQUIRE(scanNode(a, clock, pacer, AuditScanSettings{100, 0}, tally, ra, error));
  const AuditTime firstDone = a.scanReceived.back();
  REQUIRE(scanNode(b, clock, pacer, AuditScanSettings{100, 0}, tally, rb, error));
  CHECK(b.scanSent.front() >= firstDone + 1s);
  CHECK(tally.report().keys == 200);
  CHECK(a.measured.empty());  // --sample-memory 0
}

TEST_CASE("audit scan: MEMORY USAGE for every Nth key only") {
  const auto registry = compile(kRegistry);
  FakeClock clock;
  FakeNode node(clock, itemKeys(95));
  ScanPacer pacer(1000, 10);
  AuditTally tally(*registry, AuditLimits{});
  AuditNodeResult result;
  std::string error;
  REQUIRE(scanNode(node, clock, pacer, AuditScanSettings{10, 7}, tally, result, error));
  // Keys 0, 7, 14, ... 91: counted across batches, not per batch.
  REQUIRE(node.measured.size() == 14);
  CHECK(node.measured[1] == "item:7");
  CHECK(node.measured[13] == "item:91");
  const auto report = tally.report();
  CHECK(report.measured == 14);
  CHECK(report.patterns[0].measured == 14);
  CHECK(report.patterns[0].measuredBytes ==
        14 * 100 + (0 + 7 + 14 + 21 + 28 + 35 + 42 + 49 + 56 + 63 + 70 + 77 + 84 + 91));
}

TEST_CASE("audit scan: a refused MEMORY USAGE stops measuring, the audit goes on") {
  const auto registry = compile(kRegistry);
  FakeClock clock;
  FakeNode node(clock, itemKeys(30));
  node.memoryError = "NOPERM this user has no permissions to run the 'memory' command";
  ScanPacer pacer(1000, 10);
  AuditTally tally(*registry, AuditLimits{});
  AuditNodeResult result;
  std::string error;
  REQUIRE(scanNode(node, clock, pacer, AuditScanSettings{10, 1}, tally, result, error));
  CHECK(node.measured.size() == 10);  // the first batch's, then no more
  const auto report = tally.report();
  CHECK(report.keys == 30);
  CHECK(report.measured == 0);
  CHECK(report.memoryError.starts_with("NOPERM"));
}

TEST_CASE("audit scan: errors stop the node with a message") {
  const auto registry = compile(kRegistry);
  FakeClock clock;
  ScanPacer pacer(1000, 10);
  AuditTally tally(*registry, AuditLimits{});
  AuditNodeResult result;
  result.address = "10.0.0.1:6379";
  std::string error;
  SECTION("SCAN refused") {
    FakeNode node(clock, itemKeys(30));
    node.scanError = "NOPERM no scan for you";
    CHECK_FALSE(scanNode(node, clock, pacer, AuditScanSettings{10, 1}, tally, result, error));
    CHECK(error == "SCAN on 10.0.0.1:6379: refused: NOPERM no scan for you");
  }
  SECTION("PTTL refused") {
    FakeNode node(clock, itemKeys(30));
    node.pttlError = "NOPERM no pttl";
    CHECK_FALSE(scanNode(node, clock, pacer, AuditScanSettings{10, 1}, tally, result, error));
    CHECK(error == "PTTL refused by Redis at 10.0.0.1:6379: NOPERM no pttl");
  }
  SECTION("connection lost") {
    FakeNode node(clock, itemKeys(30));
    node.failAfterScans = 2;
    CHECK_FALSE(scanNode(node, clock, pacer, AuditScanSettings{10, 0}, tally, result, error));
    CHECK(error == "connection reset");
  }
  SECTION("a key whose slot moved away is counted as vanished") {
    FakeNode node(clock, itemKeys(30));
    node.pttlError = "MOVED 1234 10.0.0.2:6379";
    REQUIRE(scanNode(node, clock, pacer, AuditScanSettings{10, 1}, tally, result, error));
    const auto report = tally.report();
    CHECK(report.keys == 30);
    CHECK(report.vanished == 30);
    CHECK(report.registered == 0);
  }
}

TEST_CASE("audit scan: an oversized SCAN reply is charged in full") {
  const auto registry = compile(kRegistry);
  FakeClock clock;
  FakeNode node(clock, itemKeys(1000));
  node.extra = {30};  // the first reply has 130 keys for COUNT 100
  ScanPacer pacer(500, 100);
  AuditTally tally(*registry, AuditLimits{});
  AuditNodeResult result;
  std::string error;
  REQUIRE(scanNode(node, clock, pacer, AuditScanSettings{100, 0}, tally, result, error));
  CHECK(result.keys == 1000);
  CHECK(pacer.reservation() == 130);
  CHECK(pacer.peakWindowKeys() <= 500);
  const std::vector<AuditTime> s(node.scanSent.begin() + 1, node.scanSent.end());
  const std::vector<AuditTime> r(node.scanReceived.begin() + 1, node.scanReceived.end());
  const std::vector<std::size_t> k(node.batches.begin() + 1, node.batches.end());
  CHECK(worstWindow(s, r, k) <= 500);
}

// ---------------------------------------------------------------------------------------------
// Classification

TEST_CASE("audit classify: registered, no TTL, exempt, orphan, vanished, channel names") {
  const auto registry = compile(kRegistry);
  auto c = classifyKey(*registry, "item:1", 30'000);
  CHECK(c.pattern == 0);
  CHECK(c.finding == KeyFinding::kOk);
  CHECK_FALSE(c.hashed);
  CHECK_FALSE(c.ttlAboveMax);

  c = classifyKey(*registry, "item:1", -1);
  CHECK(c.finding == KeyFinding::kNoTtl);

  c = classifyKey(*registry, "item:1", 121'000);  // above ttl.max 120s
  CHECK(c.finding == KeyFinding::kOk);
  CHECK(c.ttlAboveMax);

  c = classifyKey(*registry, "lock:q1", -1);  // authority with a TTL policy: still TTL-bound
  CHECK(c.pattern == 1);
  CHECK(c.finding == KeyFinding::kNoTtl);

  c = classifyKey(*registry, "flag:beta", -1);  // authority without a TTL policy
  CHECK(c.pattern == 2);
  CHECK(c.finding == KeyFinding::kOk);

  c = classifyKey(*registry, "forever:x", -1);  // ttl.exempt
  CHECK(c.pattern == 3);
  CHECK(c.finding == KeyFinding::kOk);

  c = classifyKey(*registry, "session:abc", -1);
  CHECK(c.pattern == 4);
  CHECK(c.hashed);
  CHECK(c.finding == KeyFinding::kNoTtl);
  CHECK(classifyKey(*registry, "price:p1", 1000).hashed);

  c = classifyKey(*registry, "legacy:42", -1);
  CHECK(c.pattern == -1);
  CHECK(c.finding == KeyFinding::kOrphan);

  c = classifyKey(*registry, "events:x", -1);  // a key named like a channel
  CHECK(c.pattern == -1);
  CHECK(c.finding == KeyFinding::kOrphan);

  CHECK(classifyKey(*registry, "item:1", -2).finding == KeyFinding::kVanished);
  CHECK(classifyKey(*registry, "legacy:1", -2).finding == KeyFinding::kVanished);
}

// ---------------------------------------------------------------------------------------------
// Tally and output

namespace {

AuditReport sampleReport(const policies::CompiledRegistry& registry, AuditLimits limits = {}) {
  AuditTally tally(registry, limits);
  for (int i = 0; i < 20; ++i)
    tally.add("item:" + std::to_string(i), 50'000, 200);
  tally.add("item:nottl", -1, 300);
  tally.add("item:big", 90'000, 1'048'700);
  tally.add("item:long", 500'000, std::nullopt);
  tally.add("flag:beta", -1, 80);
  tally.add("forever:ref", -1, 90);
  tally.add("session:user-alice@example.com", -1, 5000);
  tally.add("session:bob", 60'000, 700'000);
  tally.add("price:secret-deal", -1, std::nullopt);
  tally.add("legacy:1", -1, 50);
  tally.add("legacy:2", 1000, 60);
  tally.add("legacy:3", -1, std::nullopt);
  tally.add("tmp\r\nx", -1, 10);
  tally.add("events:oops", -1, std::nullopt);
  tally.add("item:gone", -2, std::nullopt);
  AuditReport r = tally.report();
  r.registryPath = "r.yaml";
  r.registryHash = registry.hash();
  r.nodes = {{"127.0.0.1:7000", 30, 3}, {"127.0.0.1:7001", 5, 1}};
  r.cluster = true;
  r.rate = 1000;
  r.count = 100;
  r.sampleMemory = 1;
  r.elapsedSeconds = 0.5;
  r.peakKeysInOneSecond = 35;
  return r;
}

}  // namespace

TEST_CASE("audit tally: counts per pattern, findings, samples and biggest keys") {
  const auto registry = compile(kRegistry);
  const auto r = sampleReport(*registry);
  CHECK(r.keys == 34);
  CHECK(r.vanished == 1);
  CHECK(r.registered == 28);
  CHECK(r.orphans == 5);
  CHECK(r.noTtl == 3);  // item:nottl, session:alice, price:secret-deal
  CHECK(r.findings() == 8);
  REQUIRE(r.patterns.size() == 6);  // the channel pattern is not a key pattern
  CHECK(r.patterns[0].keys == 23);
  CHECK(r.patterns[0].withoutTtl == 1);
  CHECK(r.patterns[0].noTtl == 1);
  CHECK(r.patterns[0].ttlAboveMax == 1);
  CHECK(r.patterns[0].measured == 22);
  CHECK(r.patterns[2].keys == 1);  // flag: no TTL, no contract, no finding
  CHECK(r.patterns[2].withoutTtl == 1);
  CHECK(r.patterns[2].noTtl == 0);
  CHECK(r.patterns[3].noTtl == 0);  // exempt
  CHECK(r.orphanStats.keys == 5);
  CHECK(r.orphanStats.withoutTtl == 4);

  REQUIRE(r.biggest.size() == 10);
  CHECK(r.biggest[0].key == "item:big");
  CHECK(r.biggest[0].bytes == 1'048'700);
  CHECK(r.biggest[1].key == policies::stableKeyHash("session:bob"));
  CHECK(r.biggest[1].hashed);
  CHECK(r.biggest[2].key == policies::stableKeyHash("session:user-alice@example.com"));
  for (std::size_t i = 1; i < r.biggest.size(); ++i)
    CHECK(r.biggest[i - 1].bytes >= r.biggest[i].bytes);

  REQUIRE(r.noTtlSamples.size() == 3);
  CHECK(r.noTtlSamples[0].key == "item:nottl");
  CHECK_FALSE(r.noTtlSamples[0].hashed);
  CHECK(r.noTtlSamples[1].key == policies::stableKeyHash("session:user-alice@example.com"));
  CHECK(r.noTtlSamples[1].pattern == 4);
  CHECK(r.noTtlSamples[2].key == policies::stableKeyHash("price:secret-deal"));

  REQUIRE(r.orphanSamples.size() == 5);
  CHECK(r.orphanSamples[0].key == "legacy:1");
  CHECK(r.orphanSamples[4].key == "events:oops");
  CHECK(r.orphanSamples[4].closest != 6);  // never a channel pattern as a key's home
  REQUIRE_FALSE(r.orphanShapes.empty());
  CHECK(r.orphanShapes[0] == std::pair<std::string, std::uint64_t>{"legacy:<int>", 3});
  CHECK(r.orphanShapesOther == 0);
}

TEST_CASE("audit tally: an orphan of a legacy shape names the pattern it is rewritten to") {
  const auto registry = compile(kRegistry);
  AuditTally tally(*registry, AuditLimits{});
  tally.add("olditem-5", -1, 40);
  tally.add("stray:1", -1, 40);
  AuditReport r = tally.report();
  CHECK(r.orphans == 2);
  CHECK(r.legacyOrphans == 1);
  REQUIRE(r.orphanSamples.size() == 2);
  CHECK(r.orphanSamples[0].rewriteTo == 0);
  CHECK(r.orphanSamples[0].closest == -1);
  CHECK(r.orphanSamples[1].rewriteTo == -1);
  std::ostringstream json, table;
  writeAuditJson(r, *registry, json);
  writeAuditTable(r, *registry, table);
  CHECK(wellFormedJson(json.str()));
  CHECK(json.str().find("\"orphans\":{\"count\":2,\"legacy\":1,") != std::string::npos);
  CHECK(json.str().find("{\"key\":\"olditem-5\",\"pttlMs\":-1,\"closestPattern\":null,"
                        "\"rewriteTo\":\"item:<id>\"}") != std::string::npos);
  CHECK(table.str().find("orphan keys (match no pattern): 2, 1 of a legacy shape") !=
        std::string::npos);
  CHECK(table.str().find("  olditem-5  (no TTL; legacy shape keygate rewrites to item:<id>)") !=
        std::string::npos);
}

TEST_CASE("audit tally: memory stays bounded by the limits") {
  const auto registry = compile(kRegistry);
  AuditLimits limits;
  limits.samples = 2;
  limits.top = 3;
  limits.shapes = 2;
  limits.trackedShapes = 4;
  AuditTally tally(*registry, limits);
  for (int i = 0; i < 1000; ++i) {
    tally.add("item:" + std::to_string(i), -1, static_cast<std::uint64_t>(i));
    tally.add("orphan" + std::to_string(i % 10) + "x:" + std::string(i % 7 + 1, 'a'), -1, 1);
  }
  const auto r = tally.report();
  CHECK(r.noTtlSamples.size() == 2);
  CHECK(r.orphanSamples.size() == 2);
  REQUIRE(r.biggest.size() == 3);
  CHECK(r.biggest[0].key == "item:999");
  CHECK(r.biggest[2].key == "item:997");
  CHECK(r.orphanShapes.size() == 2);
  std::uint64_t listed = 0;
  for (const auto& s : r.orphanShapes)
    listed += s.second;
  CHECK(listed + r.orphanShapesOther == 1000);
  CHECK(r.orphanShapesOther > 0);
}

TEST_CASE("audit output: JSON shape, PII and sensitive keys only as hashes") {
  const auto registry = compile(kRegistry);
  const auto r = sampleReport(*registry);
  std::ostringstream json;
  writeAuditJson(r, *registry, json);
  const std::string j = json.str();
  INFO(j);
  CHECK(wellFormedJson(j));
  for (const std::string_view field :
       {"\"version\":1", "\"mode\":\"cluster\"", "\"elapsedSeconds\":0.500",
        "\"keysPerSecond\":68.0", "\"peakKeysInOneSecond\":35", "\"scanCalls\":4",
        "\"options\":{\"rate\":1000,\"count\":100,\"sampleMemory\":1}",
        "{\"address\":\"127.0.0.1:7000\",\"keys\":30,\"scanCalls\":3}",
        "\"totals\":{\"keys\":34,\"registered\":28,\"noTtl\":3,\"orphans\":5,\"vanished\":1,"
        "\"measured\":29,\"findings\":8}",
        "\"memoryError\":null",
        "{\"pattern\":\"item:<id>\",\"owner\":\"catalog\",\"ttlBound\":true,\"ttlMaxMs\":120000,"
        "\"hashed\":false,\"keys\":23,\"withoutTtl\":1,\"noTtl\":1,\"ttlAboveMax\":1,",
        "{\"pattern\":\"flag:<name>\",\"owner\":\"ops\",\"ttlBound\":false,\"ttlMaxMs\":null,",
        "{\"key\":\"item:nottl\",\"hashed\":false,\"pattern\":\"item:<id>\"}",
        "\"orphans\":{\"count\":5,\"legacy\":0,\"withoutTtl\":4,",
        "{\"key\":\"legacy:1\",\"pttlMs\":-1,\"closestPattern\":",
        "{\"key\":\"tmp\\u000d\\u000ax\",\"pttlMs\":-1,", "{\"shape\":\"legacy:<int>\",\"keys\":3}",
        "\"biggest\":[{\"key\":\"item:big\",\"hashed\":false,\"pattern\":\"item:<id>\","
        "\"bytes\":1048700,\"pttlMs\":90000}"}) {
    CHECK(j.find(field) != std::string::npos);
  }
  const std::string alice = policies::stableKeyHash("session:user-alice@example.com");
  CHECK(j.find("{\"key\":\"" + alice + "\",\"hashed\":true,\"pattern\":\"session:<id>\"}") !=
        std::string::npos);
  // Never in clear, anywhere.
  CHECK(j.find("alice") == std::string::npos);
  CHECK(j.find("session:bob") == std::string::npos);
  CHECK(j.find("secret-deal") == std::string::npos);
  // No channel pattern among the key patterns.
  CHECK(j.find("\"pattern\":\"events:<id>\",\"owner\"") == std::string::npos);
}

TEST_CASE("audit output: the table lists every key pattern, findings and hashes") {
  const auto registry = compile(kRegistry);
  const auto r = sampleReport(*registry);
  std::ostringstream table;
  writeAuditTable(r, *registry, table);
  const std::string t = table.str();
  INFO(t);
  CHECK(t.find("keygate audit of a Redis Cluster, 2 masters: 127.0.0.1:7000 (30 keys)") !=
        std::string::npos);
  CHECK(t.find("scanned 34 keys in 0.50 s: 68 keys/s, at most 35 in any one second (--rate "
               "1000, --count 100, 4 SCAN calls)") != std::string::npos);
  for (const std::string_view p :
       {"  item:<id>\n", "  lock:<id>\n", "  flag:<name>\n", "  forever:<id>\n", "  session:<id>\n",
        "  price:<id>\n", "  (orphans: match no pattern)\n"}) {
    CHECK(t.find(p) != std::string::npos);
  }
  CHECK(t.find("events:<id>") == std::string::npos);
  // item:<id>: 23 keys, 1 without TTL, 1 above max, 22 measured.
  CHECK(t.find("        23         1         1        22") != std::string::npos);
  // flag:<name> has no TTL contract: '-' instead of counts.
  CHECK(t.find("         1         -         -         1") != std::string::npos);
  CHECK(t.find("keys without a TTL on TTL-bound patterns: 3\n  item:nottl  (item:<id>)") !=
        std::string::npos);
  CHECK(t.find(policies::stableKeyHash("price:secret-deal") + "  (price:<id>)") !=
        std::string::npos);
  CHECK(t.find("orphan keys (match no pattern): 5\n  legacy:1  (no TTL") != std::string::npos);
  CHECK(t.find("  tmp\\x0d\\x0ax  (no TTL") != std::string::npos);
  CHECK(t.find("           3  legacy:<int>") != std::string::npos);
  CHECK(t.find("     1.0 MiB  item:big  (item:<id>; 1.5m)") != std::string::npos);
  CHECK(t.find("1 key vanished between SCAN and PTTL") != std::string::npos);
  CHECK(t.find("findings: 8 (3 without TTL, 5 orphans)") != std::string::npos);
  CHECK(t.find("alice") == std::string::npos);
  CHECK(t.find("session:bob") == std::string::npos);
  CHECK(t.find("secret-deal") == std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Command line

TEST_CASE("audit args: defaults and every flag") {
  const std::vector<std::string_view> args = {"--cluster",
                                              "10.0.0.1:7000,redis-b:7001",
                                              "--registry=r.yaml",
                                              "--rate",
                                              "500",
                                              "--count",
                                              "50",
                                              "--sample-memory",
                                              "10",
                                              "--top",
                                              "5",
                                              "--samples=3",
                                              "--json",
                                              "--json-file",
                                              "out.json",
                                              "--fail-on-findings",
                                              "--username",
                                              "audit",
                                              "--password-file",
                                              "/run/pw",
                                              "--timeout",
                                              "2s"};
  const auto parsed = parseAuditArgs(args);
  REQUIRE(parsed.error.empty());
  const auto& o = parsed.options;
  REQUIRE(o.seeds.size() == 2);
  CHECK(o.seeds[1].host == "redis-b");
  CHECK(o.seeds[1].port == 7001);
  CHECK_FALSE(o.upstream);
  CHECK(o.registryPath == "r.yaml");
  CHECK(o.rate == 500);
  CHECK(o.count == 50);
  CHECK(o.sampleMemory == 10);
  CHECK(o.top == 5);
  CHECK(o.samples == 3);
  CHECK(o.json);
  CHECK(o.jsonFile == "out.json");
  CHECK(o.failOnFindings);
  CHECK(o.username == "audit");
  CHECK(o.passwordFile == "/run/pw");
  CHECK(o.timeout == 2s);

  const std::vector<std::string_view> minimal = {"--upstream", "127.0.0.1:6379", "--registry",
                                                 "r.yaml"};
  const auto d = parseAuditArgs(minimal).options;
  CHECK(d.rate == 1000);
  CHECK(d.count == 100);
  CHECK(d.sampleMemory == 1);
  CHECK(d.top == 10);
  CHECK(d.samples == 10);
  CHECK_FALSE(d.json);
  CHECK_FALSE(d.failOnFindings);
}

TEST_CASE("audit args: usage errors say what to do") {
  CHECK(argvError({"--registry", "r.yaml"}).find("--upstream HOST:PORT") != std::string::npos);
  CHECK(argvError({"--upstream", "a:1", "--cluster", "b:2", "--registry", "r"}).find("not both") !=
        std::string::npos);
  CHECK(argvError({"--upstream", "a:1"}).find("--registry FILE is required") != std::string::npos);
  CHECK(argvError({"--upstream", "a:1", "--registry", "r", "--rate", "10", "--count", "100"})
            .find("--count 100 is above --rate 10") != std::string::npos);
  CHECK(argvError({"--upstream", "a:1", "--registry", "r", "--rate", "0"}).starts_with("--rate 0"));
  CHECK(argvError({"--upstream", "a:1", "--registry", "r", "--rate", "1k"}).starts_with("--rate"));
  CHECK(argvError({"--upstream", "nope", "--registry", "r"}).starts_with("--upstream nope"));
  CHECK(argvError({"--upstream", "a:1", "--registry", "r", "--json=yes"}) ==
        "--json takes no value");
  CHECK(argvError({"--upstream", "a:1", "--registry"}) == "--registry needs a value");
  CHECK(argvError({"--upstream", "a:1", "--registry", "r", "--sample-memroy", "3"}) ==
        "unknown argument '--sample-memroy' (did you mean --sample-memory?)");
  CHECK(argvError({"--upstream", "a:1", "--registry", "r", "--username", "u"})
            .find("--password-file") != std::string::npos);
  CHECK(argvError({"--upstream", "a:1", "--registry", "r", "--timeout", "5"})
            .starts_with("--timeout 5"));
  CHECK(parseAuditArgs(std::vector<std::string_view>{"--help"}).options.help);
}

TEST_CASE("audit command: usage and registry errors exit 2 before touching Redis") {
  std::ostringstream out, err;
  CHECK(runAuditCommand(std::vector<std::string_view>{"--bogus"}, out, err) == 2);
  CHECK(err.str().find("unknown argument '--bogus'") != std::string::npos);
  CHECK(err.str().find("usage: keygate audit") != std::string::npos);
  std::ostringstream out2, err2;
  CHECK(runAuditCommand(std::vector<std::string_view>{"--upstream", "127.0.0.1:1", "--registry",
                                                      "/nonexistent/registry.yaml"},
                        out2, err2) == 2);
  CHECK(err2.str().find("nothing was audited") != std::string::npos);
  std::ostringstream out3, err3;
  CHECK(runAuditCommand(std::vector<std::string_view>{"--help"}, out3, err3) == 0);
  CHECK(out3.str().starts_with("usage: keygate audit"));
}
