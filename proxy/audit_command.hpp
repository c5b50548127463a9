#pragma once

// `keygate audit`: walks a live Redis with SCAN at a bounded rate and holds what it finds
// against the key registry (SPEC.md section 6, docs/audit.md): keys per pattern, keys without
// a TTL on TTL-bound patterns, orphan keys that match no pattern, and the biggest keys.
//
//   --upstream HOST:PORT                 one node
//   --cluster SEED,... --CLUSTER SLOTS->  every master (replicas are never scanned)
//        |
//        v  per node, one batch at a time:
//   ScanPacer::nextSend() --sleep--> SCAN cursor COUNT n --> n keys
//        pipelined: PTTL key (every key), MEMORY USAGE key (every Nth key)
//        AuditTally::add(key, pttl, bytes)      classification and samples: pure
//        |
//        v
//   AuditReport --> writeAuditTable() (stdout) | writeAuditJson() (--json, --json-file)
//
// Everything but the sockets is pure and driven through two seams, AuditConnection and
// AuditClock, so unit tests run the SCAN loop against a fake node on a fake clock. Control
// plane only: blocking sockets, one request batch in flight, never KEYS.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"

namespace keygate::policies {
class CompiledRegistry;
}

namespace keygate::proxy {

using AuditTime = std::chrono::steady_clock::time_point;

// ---------------------------------------------------------------------------------------------
// Command line

struct AuditOptions {
  std::vector<config::HostPort> seeds;  // --cluster
  std::optional<config::HostPort> upstream;
  std::string registryPath;
  std::uint64_t rate = 1000;       // keys per second, whole audit
  std::uint64_t count = 100;       // SCAN COUNT
  std::uint64_t sampleMemory = 1;  // MEMORY USAGE for every Nth key; 0: never
  std::uint64_t top = 10;          // biggest keys listed
  std::uint64_t samples = 10;      // no-TTL and orphan keys listed (each)
  bool json = false;               // JSON on stdout instead of the table
  std::string jsonFile;            // JSON to this file (the table still goes to stdout)
  bool failOnFindings = false;     // exit 1 when there are no-TTL or orphan keys
  std::string username;
  std::string passwordFile;
  std::chrono::milliseconds timeout{10000};  // connect, and each reply
  bool help = false;
};

struct AuditArgs {
  AuditOptions options;
  std::string error;  // non-empty: a usage error (exit 2)
};

// Parses the arguments after `audit`.
AuditArgs parseAuditArgs(std::span<const std::string_view> args);
std::string auditUsage();

// ---------------------------------------------------------------------------------------------
// Rate bound

// Paces SCAN batches so that the keys scanned in any one second never exceed `rate`, the
// first second included. Two rules, both checked before each SCAN is sent:
//
//   spacing  a SCAN goes out no sooner than reservation/rate after the previous reply came
//            back: at most rate/count SCAN calls in any second, measured where Redis runs
//            them (the reply came after Redis ran the previous one, the next is sent before
//            Redis runs it);
//   window   the keys of the replies received in the last second plus the reservation must
//            fit in `rate`: else wait until enough of them are more than a second old.
//
// The reservation is the `count` given (the audit passes COUNT plus headroom for the few keys
// more a SCAN may return), or the largest batch seen so far when a reply was larger still;
// only such a first, larger batch can overshoot, by its excess. Pure: the caller passes every time.
class ScanPacer {
 public:
  ScanPacer(std::uint64_t rate, std::uint64_t count);

  // The earliest time, not before `now`, at which the next SCAN may be sent.
  AuditTime nextSend(AuditTime now) const;
  // A SCAN's reply carrying `keys` keys arrived at `received`.
  void record(AuditTime received, std::uint64_t keys);

  std::uint64_t rate() const { return rate_; }
  std::uint64_t reservation() const { return reservation_; }
  // Most keys received within any one second so far.
  std::uint64_t peakWindowKeys() const { return peak_; }

 private:
  struct Batch {
    AuditTime received;
    std::uint64_t keys;
  };

  std::uint64_t rate_;
  std::uint64_t reservation_;
  std::deque<Batch> window_;  // batches received within a second of the last one
  std::uint64_t windowKeys_ = 0;
  std::optional<AuditTime> lastReceived_;
  std::uint64_t peak_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Classification and report

enum class KeyFinding : std::uint8_t {
  kOk,        // a registered key, TTL as its pattern wants
  kNoTtl,     // a registered key without a TTL on a TTL-bound pattern
  kOrphan,    // matches no key pattern (a channel pattern's name counts as none)
  kVanished,  // gone between SCAN and PTTL (expired or deleted): not counted anywhere else
};

struct KeyClass {
  int pattern = -1;  // registry pattern index, -1: none
  KeyFinding finding = KeyFinding::kOrphan;
  bool hashed = false;       // the pattern is containsPII / containsCommerciallySensitiveData
  bool ttlAboveMax = false;  // a TTL longer than the pattern's ttl.max
};

// `pttl` as PTTL answers: milliseconds left, -1 no TTL, -2 no such key.
KeyClass classifyKey(const policies::CompiledRegistry& registry, std::string_view key,
                     std::int64_t pttl);

struct AuditKeySample {
  std::string key;  // stableKeyHash(key) when `hashed`
  bool hashed = false;
  int pattern = -1;
  std::int64_t pttl = -1;
  std::uint64_t bytes = 0;  // biggest keys only
  int closest = -1;         // orphans: the pattern closest to the key, -1 none
  // Orphans of a legacy shape that the registry's rewrites map onto a pattern: that pattern
  // (the key was written around keygate, which would have rewritten it), else -1.
  int rewriteTo = -1;
};

struct AuditPatternStats {
  int pattern = -1;
  std::uint64_t keys = 0;
  std::uint64_t withoutTtl = 0;   // PTTL -1, whatever the pattern's contract
  std::uint64_t noTtl = 0;        // withoutTtl on a TTL-bound pattern: a finding
  std::uint64_t ttlAboveMax = 0;  // written around keygate with a longer TTL than ttl.max
  std::uint64_t measured = 0;     // keys measured with MEMORY USAGE
  std::uint64_t measuredBytes = 0;
  // measuredBytes scaled to all of the pattern's keys (0 when none was measured).
  std::uint64_t estimatedBytes() const;
};

struct AuditNodeResult {
  std::string address;
  std::uint64_t keys = 0;       // keys SCAN returned on this node
  std::uint64_t scanCalls = 0;  // SCAN commands sent to it
};

struct AuditReport {
  std::string registryPath;
  std::string registryHash;
  bool cluster = false;
  std::vector<AuditNodeResult> nodes;
  std::uint64_t rate = 0;
  std::uint64_t count = 0;
  std::uint64_t sampleMemory = 0;
  double elapsedSeconds = 0;
  std::uint64_t peakKeysInOneSecond = 0;

  std::uint64_t keys = 0;        // every key SCAN returned
  std::uint64_t registered = 0;  // matched a key pattern (no-TTL ones included)
  std::uint64_t noTtl = 0;
  std::uint64_t orphans = 0;
  std::uint64_t legacyOrphans = 0;  // orphans matching a rewrite's `from` shape
  std::uint64_t vanished = 0;
  std::uint64_t measured = 0;
  std::string memoryError;                  // MEMORY USAGE refused: measuring stopped there
  std::vector<AuditPatternStats> patterns;  // every key pattern, registry order
  AuditPatternStats orphanStats;            // the orphans' keys / TTLs / memory
  std::vector<AuditKeySample> noTtlSamples;
  std::vector<AuditKeySample> orphanSamples;
  std::vector<std::pair<std::string, std::uint64_t>> orphanShapes;  // most keys first
  std::uint64_t orphanShapesOther = 0;  // orphans whose shape was not tracked
  std::vector<AuditKeySample> biggest;  // largest first

  std::uint64_t findings() const { return noTtl + orphans; }
  double keysPerSecond() const;
};

struct AuditLimits {
  std::size_t samples = 10;          // no-TTL and orphan samples, each
  std::size_t top = 10;              // biggest keys
  std::size_t shapes = 10;           // orphan shapes listed
  std::size_t trackedShapes = 1024;  // distinct orphan shapes counted (memory bound)
};

// Accumulates keys into a report. Memory is bounded by the limits, not by the keyspace.
class AuditTally {
 public:
  AuditTally(const policies::CompiledRegistry& registry, AuditLimits limits);

  // `bytes`: MEMORY USAGE when the key was measured.
  void add(std::string_view key, std::int64_t pttl, std::optional<std::uint64_t> bytes);

  std::uint64_t keysSeen() const { return report_.keys; }
  void setMemoryError(std::string error) { report_.memoryError = std::move(error); }
  bool memoryRefused() const { return !report_.memoryError.empty(); }

  // The report so far, biggest keys and orphan shapes sorted; run metadata left for the caller.
  AuditReport report() const;

 private:
  const policies::CompiledRegistry& registry_;
  AuditLimits limits_;
  AuditReport report_;
  std::vector<AuditKeySample> biggestHeap_;  // min-heap on bytes, at most limits_.top
  std::unordered_map<std::string, std::uint64_t> shapes_;
};

void writeAuditJson(const AuditReport& report, const policies::CompiledRegistry& registry,
                    std::ostream& out);
void writeAuditTable(const AuditReport& report, const policies::CompiledRegistry& registry,
                     std::ostream& out);

// ---------------------------------------------------------------------------------------------
// The SCAN loop, over seams

// One Redis node, request/reply, blocking.
class AuditConnection {
 public:
  virtual ~AuditConnection() = default;
  // Sends `requests` (RESP commands) and reads `replies` complete reply frames into `frames`
  // (cleared first). False with `error` when the node fails, times out or breaks protocol.
  virtual bool exchange(const std::string& requests, std::size_t replies,
                        std::vector<std::string>& frames, std::string& error) = 0;
};

class AuditClock {
 public:
  virtual ~AuditClock() = default;
  virtual AuditTime now() = 0;
  virtual void sleepUntil(AuditTime when) = 0;
};

struct AuditScanSettings {
  std::uint64_t count = 100;
  std::uint64_t sampleMemory = 1;  // 0: never
};

// Scans one node from cursor 0 until SCAN returns cursor 0. Each SCAN waits for the pacer;
// after it, PTTL for every key and MEMORY USAGE for every sampleMemory-th key seen by `tally`
// go out in one pipeline. `progress`, when given, is called after each batch. False with
// `error` when the node fails or answers an error (a refused MEMORY USAGE only stops the
// measuring, recorded in the tally).
using AuditProgress = std::function<void(const AuditNodeResult& node)>;
bool scanNode(AuditConnection& conn, AuditClock& clock, ScanPacer& pacer,
              const AuditScanSettings& settings, AuditTally& tally, AuditNodeResult& node,
              std::string& error, const AuditProgress& progress = {});

// ---------------------------------------------------------------------------------------------

// `keygate audit ...` (the arguments after `audit`). Exit status: 0 the audit ran (findings
// are in the report), 1 with --fail-on-findings when there were no-TTL or orphan keys, 2 for a
// usage, registry or connection error (a message on `err`).
int runAuditCommand(std::span<const std::string_view> args, std::ostream& out, std::ostream& err);

}  // namespace keygate::proxy
