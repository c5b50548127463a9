// Key registry matching speed (issue 4: at least 2 million matches/s on one core with 1,000
// patterns). The registry is generated, deterministic and overlap-free, shaped like the CPQ/OMS
// example registry:
//
//   cpq:{tenant-<tenant>}:pricing:preview-<id>:rev-<rev:int>:policy-<policy>
//   oms:{tenant-<tenant>}:order:line-<id:uuid>:v3
//   cat:{tenant-<tenant>}:catalog:offering:<id:int>
//
// Keys: three matching keys per pattern (random values of each variable's type) and one
// non-matching key per pattern (unknown capability, a value of the wrong type, an extra or a
// missing segment), shuffled: 75% hits, 25% misses.
//
//   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DKEYGATE_BUILD_TESTS=OFF
//         -DKEYGATE_BUILD_BENCH=ON   (one command)
//   cmake --build build-bench -j2 --target registry_match_bench
//   build-bench/bench/registry_match_bench

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "policies/key_matcher.hpp"

namespace {

using keygate::policies::Captures;
using keygate::policies::KeyMatcher;
using keygate::policies::KeyPattern;
using keygate::policies::PatternProblem;
using keygate::policies::VarType;

constexpr std::size_t kPatterns = 1000;

const std::vector<std::string> kServices = {"cpq", "oms", "cat", "bill", "inv"};
const std::vector<std::string> kCapabilities = {
    "pricing",  "catalog",  "quote",    "order",     "lock",     "idem",     "ratelimit",
    "worklist", "session",  "cart",     "approval",  "discount", "contract", "asset",
    "invoice",  "payment",  "shipment", "inventory", "bundle",   "rule",     "promotion",
    "tax",      "currency", "account",  "contact",   "product",  "offering", "subscription",
    "usage",    "billing",  "credit",   "refund",    "fulfil",   "reserve",  "allocation",
    "forecast", "margin",   "channel",  "partner",   "audit"};
const std::vector<std::string> kResources = {
    "preview",  "offering", "active",    "workspace", "summary", "line",   "rule",
    "snapshot", "draft",    "published", "pointer",   "bucket",  "token",  "entry",
    "index",    "view",     "state",     "header",    "detail",  "totals", "history",
    "config",   "status",   "queue",     "member"};

struct Generated {
  std::vector<std::string> patterns;
  std::vector<std::string> keys;
  std::size_t hits = 0;
};

std::string randomValue(std::mt19937_64& rng, VarType type) {
  static const char kHex[] = "0123456789abcdef";
  static const char kAlnum[] = "abcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string v;
  switch (type) {
    case VarType::kInt:
      v = std::to_string(rng() % 100000);
      break;
    case VarType::kHex:
      for (int i = 0; i < 12; ++i)
        v.push_back(kHex[rng() % 16]);
      break;
    case VarType::kUuid:
      for (int i = 0; i < 36; ++i) {
        v.push_back(i == 8 || i == 13 || i == 18 || i == 23 ? '-' : kHex[rng() % 16]);
      }
      break;
    case VarType::kRegex:  // every regex below accepts [a-z]{2,8}[0-9]
      for (int i = 0, n = 2 + static_cast<int>(rng() % 6); i < n; ++i) {
        v.push_back(static_cast<char>('a' + rng() % 26));
      }
      v.push_back(static_cast<char>('0' + rng() % 10));
      break;
    case VarType::kAny:
      v.push_back('q');
      for (int i = 0, n = 3 + static_cast<int>(rng() % 10); i < n; ++i) {
        v.push_back(kAlnum[rng() % (sizeof(kAlnum) - 1)]);
      }
      break;
  }
  return v;
}

Generated generate() {
  std::mt19937_64 rng(20260701);
  Generated g;
  // Unique (service, capability, resource) triples keep the patterns disjoint.
  std::vector<std::size_t> triples(kServices.size() * kCapabilities.size() * kResources.size());
  for (std::size_t i = 0; i < triples.size(); ++i)
    triples[i] = i;
  std::shuffle(triples.begin(), triples.end(), rng);
  const char* kTypes[] = {"", "", "", ":int", ":int", ":hex", ":uuid", ":/[a-z]+[0-9]/"};
  for (std::size_t i = 0; i < kPatterns; ++i) {
    const std::size_t t = triples[i];
    const auto& service = kServices[t % kServices.size()];
    const auto& capability = kCapabilities[(t / kServices.size()) % kCapabilities.size()];
    const auto& resource = kResources[t / (kServices.size() * kCapabilities.size())];
    std::string p = service + ":{tenant-<tenant>}:" + capability + ":";
    const std::string type = kTypes[rng() % (i % 20 == 0 ? 8 : 7)];  // 1 in 20 may be a regex
    switch (rng() % 4) {
      case 0:  // preview-<id>
        p += resource + "-<id" + type + ">";
        break;
      case 1:  // offering:<id>
        p += resource + ":<id" + type + ">";
        break;
      case 2:  // line-<id>-x
        p += resource + "-<id" + type + ">-x";
        break;
      default:  // a literal resource: active pointer, snapshot, ...
        p += resource;
        break;
    }
    switch (rng() % 5) {
      case 0:
        p += ":rev-<rev:int>:policy-<policy>";
        break;
      case 1:
        p += ":v" + std::to_string(rng() % 9 + 1);
        break;
      case 2:
        p += ":<version:int>";
        break;
      default:
        break;
    }
    g.patterns.push_back(std::move(p));
  }

  std::vector<std::string> misses;
  for (const auto& text : g.patterns) {
    const auto pattern = KeyPattern::parse(text, nullptr);
    if (!pattern) continue;
    std::string key;
    for (int n = 0; n < 3; ++n) {
      Captures vars;
      std::vector<std::string> values;
      const auto names = pattern->variableNames();
      values.reserve(names.size());
      for (const auto name : names) {
        values.push_back(randomValue(rng, pattern->variableType(name)));
        vars.push_back({name, values.back()});
      }
      if (pattern->expand(vars, key, nullptr)) g.keys.push_back(key);
    }
    std::string miss = key;
    const auto colon = text.find(":int>");
    switch (colon != std::string::npos ? rng() % 4 : rng() % 3) {
      case 0: {  // unknown capability
        const auto a = miss.find(':', miss.find(':') + 1);
        const auto b = miss.find(':', a + 1);
        miss.replace(a + 1, b - a - 1, "unknowncap");
        break;
      }
      case 1:
        miss += ":extra";
        break;
      case 2:
        miss.resize(miss.rfind(':'));
        break;
      default: {  // a value of the wrong type: the pattern with that `:int` dropped
        std::string relaxed = text;
        relaxed.erase(colon, 4);
        const auto loose = KeyPattern::parse(relaxed, nullptr);
        Captures vars;
        std::vector<std::string> values;
        const auto names = loose->variableNames();
        values.reserve(names.size());
        for (const auto name : names) {
          const bool wrong = loose->variableType(name) == VarType::kAny &&
                             pattern->variableType(name) == VarType::kInt;
          values.push_back(wrong ? "n/a" : randomValue(rng, loose->variableType(name)));
          vars.push_back({name, values.back()});
        }
        loose->expand(vars, miss, nullptr);
        break;
      }
    }
    misses.push_back(std::move(miss));
  }
  g.hits = g.keys.size();
  g.keys.insert(g.keys.end(), misses.begin(), misses.end());
  std::shuffle(g.keys.begin(), g.keys.end(), rng);
  return g;
}

const Generated& data() {
  static const Generated g = generate();
  return g;
}

const KeyMatcher& matcher() {
  static const KeyMatcher m = [] {
    std::vector<PatternProblem> problems;
    auto built = KeyMatcher::build(data().patterns, &problems);
    for (const auto& p : problems)
      std::fprintf(stderr, "problem: %s\n", p.message.c_str());
    // Sanity: the trie agrees with trying every pattern in turn, on every key.
    std::size_t disagreements = 0;
    for (const auto& key : data().keys) {
      int linear = -1;
      for (std::size_t p = 0; p < built.size() && linear < 0; ++p) {
        if (built.pattern(p).match(key)) linear = static_cast<int>(p);
      }
      if (built.match(key) != linear && ++disagreements <= 5) {
        std::fprintf(stderr, "disagreement on '%s'\n", key.c_str());
      }
    }
    if (disagreements) std::fprintf(stderr, "%zu disagreements\n", disagreements);
    return built;
  }();
  return m;
}

void setCounters(benchmark::State& state, std::size_t found) {
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["hit_ratio"] = static_cast<double>(found) /
                                static_cast<double>(std::max<std::int64_t>(1, state.iterations()));
}

// The proxy's call: the pattern index and the captures (a reused vector).
void BM_MatchWithCaptures(benchmark::State& state) {
  const auto& keys = data().keys;
  const auto& m = matcher();
  Captures captures;
  captures.reserve(16);
  std::size_t i = 0, found = 0;
  for (auto _ : state) {
    const int index = m.match(keys[i], &captures);
    found += index >= 0;
    benchmark::DoNotOptimize(index);
    if (++i == keys.size()) i = 0;
  }
  setCounters(state, found);
}
BENCHMARK(BM_MatchWithCaptures);

void BM_MatchIndexOnly(benchmark::State& state) {
  const auto& keys = data().keys;
  const auto& m = matcher();
  std::size_t i = 0, found = 0;
  for (auto _ : state) {
    const int index = m.match(keys[i]);
    found += index >= 0;
    benchmark::DoNotOptimize(index);
    if (++i == keys.size()) i = 0;
  }
  setCounters(state, found);
}
BENCHMARK(BM_MatchIndexOnly);

// For scale: trying every pattern in turn (what the trie avoids).
void BM_LinearScanBaseline(benchmark::State& state) {
  const auto& keys = data().keys;
  const auto& m = matcher();
  std::size_t i = 0, found = 0;
  for (auto _ : state) {
    int index = -1;
    for (std::size_t p = 0; p < m.size() && index < 0; ++p) {
      if (m.parsed(p) && m.pattern(p).match(keys[i])) index = static_cast<int>(p);
    }
    found += index >= 0;
    benchmark::DoNotOptimize(index);
    if (++i == keys.size()) i = 0;
  }
  setCounters(state, found);
}
BENCHMARK(BM_LinearScanBaseline);

// Compiling the registry, with the full pairwise overlap proof (a hot reload pays this).
void BM_Build1000(benchmark::State& state) {
  const auto& patterns = data().patterns;
  std::size_t problems = 0;
  for (auto _ : state) {
    std::vector<PatternProblem> found;
    auto m = KeyMatcher::build(patterns, &found);
    problems += found.size();
    benchmark::DoNotOptimize(m);
  }
  state.counters["problems"] = static_cast<double>(problems);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * patterns.size()));
}
BENCHMARK(BM_Build1000)->Unit(benchmark::kMillisecond);

}  // namespace
