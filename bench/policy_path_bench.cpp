// The per-request policy work of keygate's request path, one function at a time: the registry
// decision (policies::evaluate) for redis-benchmark's SET and GET, the fail-open reply lookup
// (policies::missReplyOf, done for every read and, under an open endpoint profile, every write)
// and the special-command classification (proxy::specialOf, twice per request).
//
// The registry is the one `POLICIES=1 bench/compare.sh` gives keygate: bench/gen_registry.py
// --generated 1000 --ttl-default 1h --ttl-jitter 5m --max-value-bytes 1KiB (the example's
// patterns, 1,000 generated ones and key:<n:int>), written to a temporary file by that script
// and loaded through the config loader, as keygate loads it. $POLICY_BENCH_REGISTRY names a
// registry file to use instead.
//
//   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DKEYGATE_BUILD_BENCH=ON
//   cmake --build build-bench -j2 --target policy_path_bench
//   build-bench/bench/policy_path_bench
//
// Instructions per operation (deterministic, unlike ns on a shared machine): `--loop CASE N`
// runs one case N times without Google Benchmark, so under callgrind the difference between two
// runs (N = 1000 and N = 11000, say) divided by 10,000 is the cost of one operation:
//
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null
//       build-bench/bench/policy_path_bench --loop evaluate_set 1000    (one command; the
//       total is the "Collected" line)
//
// CASE is one of: evaluate_set, evaluate_get, miss_get, miss_set, special_get, special_set.

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/registry.hpp"
#include "policies/fail_open.hpp"
#include "policies/registry_policy.hpp"
#include "proxy/commands/command_table.hpp"
#include "proxy/special_commands.hpp"

#ifndef KEYGATE_SOURCE_DIR
#error "KEYGATE_SOURCE_DIR must name the source tree (bench/CMakeLists.txt sets it)"
#endif

namespace {

using namespace keygate;

// keygate's worker uses a xorshift generator too; the value does not change the work done.
class XorShift final : public policies::RandomSource {
 public:
  std::uint64_t upTo(std::uint64_t bound) override {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return bound == UINT64_MAX ? state_ : state_ % (bound + 1);
  }

 private:
  std::uint64_t state_ = 0x9e3779b97f4a7c15ULL;
};

std::shared_ptr<const policies::CompiledRegistry> loadRegistry() {
  std::string path;
  std::string temp;
  if (const char* given = std::getenv("POLICY_BENCH_REGISTRY"); given != nullptr && *given) {
    path = given;
  } else {
    char name[] = "/tmp/policy_path_bench-XXXXXX";
    const int fd = mkstemp(name);
    if (fd < 0) {
      std::perror("policy_path_bench: mkstemp");
      std::exit(2);
    }
    close(fd);
    temp = path = name;
    const std::string command = "/usr/bin/python3 " KEYGATE_SOURCE_DIR
                                "/bench/gen_registry.py --generated 1000 --ttl-default 1h "
                                "--ttl-jitter 5m --max-value-bytes 1KiB -o " +
                                path;
    if (std::system(command.c_str()) != 0) {
      std::fprintf(stderr, "policy_path_bench: '%s' failed\n", command.c_str());
      std::exit(2);
    }
  }
  auto loaded = config::loadRegistryFile(path);
  if (!temp.empty()) std::remove(temp.c_str());
  if (!loaded.ok()) {
    std::fprintf(stderr, "policy_path_bench: %s\n", loaded.errors.front().str().c_str());
    std::exit(2);
  }
  std::vector<config::ConfigError> errors;
  auto compiled = policies::CompiledRegistry::compile(std::move(loaded.registry), &errors);
  if (!compiled) {
    std::fprintf(stderr, "policy_path_bench: %s\n", errors.front().str().c_str());
    std::exit(2);
  }
  return compiled;
}

struct Fixture {
  std::shared_ptr<const policies::CompiledRegistry> registry = loadRegistry();
  const commands::CommandInfo* get = commands::CommandTable::redis70().find("get");
  const commands::CommandInfo* set = commands::CommandTable::redis70().find("set");
  std::string value = std::string(64, 'x');
  std::vector<std::string_view> setArgs{"SET", "key:123", value};
  std::vector<std::string_view> getArgs{"GET", "key:123"};
  policies::RequestContext context;
  XorShift random;
  policies::EvaluateScratch scratch;
  policies::Decision decision;

  // Checks once that the cases do what keygate does for redis-benchmark's requests.
  Fixture() {
    evaluateSet();
    if (decision.refuse || decision.appended.size() != 2 || decision.appended[0] != "PX" ||
        decision.pattern < 0 || !decision.cacheOnly) {
      std::fprintf(stderr, "policy_path_bench: SET key:123 was not given a TTL: %s\n",
                   decision.error.c_str());
      std::exit(2);
    }
    evaluateGet();
    if (decision.refuse || decision.pattern < 0 || !decision.appended.empty()) {
      std::fprintf(stderr, "policy_path_bench: GET key:123 was refused: %s\n",
                   decision.error.c_str());
      std::exit(2);
    }
    if (missGet().shape != policies::MissShape::kNil ||
        missSet().shape != policies::MissShape::kNil ||
        proxy::specialOf(*get) != proxy::Special::kNone ||
        proxy::specialOf(*set) != proxy::Special::kNone) {
      std::fprintf(stderr, "policy_path_bench: unexpected miss reply or special command\n");
      std::exit(2);
    }
  }

  void evaluateSet() {
    policies::evaluate(*registry, *set, *set, setArgs, context, random, scratch, decision);
  }
  void evaluateGet() {
    policies::evaluate(*registry, *get, *get, getArgs, context, random, scratch, decision);
  }
  policies::MissReply missGet() const { return policies::missReplyOf(*get, getArgs, false); }
  policies::MissReply missSet() const { return policies::missReplyOf(*set, setArgs, true); }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void BM_EvaluateSet(benchmark::State& state) {
  auto& f = fixture();
  for (auto _ : state) {
    f.evaluateSet();
    benchmark::DoNotOptimize(f.decision);
  }
}
BENCHMARK(BM_EvaluateSet);

void BM_EvaluateGet(benchmark::State& state) {
  auto& f = fixture();
  for (auto _ : state) {
    f.evaluateGet();
    benchmark::DoNotOptimize(f.decision);
  }
}
BENCHMARK(BM_EvaluateGet);

void BM_MissReplyGet(benchmark::State& state) {
  auto& f = fixture();
  for (auto _ : state)
    benchmark::DoNotOptimize(f.missGet());
}
BENCHMARK(BM_MissReplyGet);

void BM_MissReplySet(benchmark::State& state) {
  auto& f = fixture();
  for (auto _ : state)
    benchmark::DoNotOptimize(f.missSet());
}
BENCHMARK(BM_MissReplySet);

void BM_SpecialOfGet(benchmark::State& state) {
  auto& f = fixture();
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.get);
    benchmark::DoNotOptimize(proxy::specialOf(*f.get));
  }
}
BENCHMARK(BM_SpecialOfGet);

void BM_SpecialOfSet(benchmark::State& state) {
  auto& f = fixture();
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.set);
    benchmark::DoNotOptimize(proxy::specialOf(*f.set));
  }
}
BENCHMARK(BM_SpecialOfSet);

// `--loop CASE N`: see the top of the file.
int loop(std::string_view name, long n) {
  static constexpr std::string_view kCases[] = {"evaluate_set", "evaluate_get", "miss_get",
                                                "miss_set",     "special_get",  "special_set"};
  int which = -1;
  for (int c = 0; c < 6; ++c) {
    if (name == kCases[c]) which = c;
  }
  if (which < 0) {
    std::fprintf(stderr, "policy_path_bench: unknown case '%.*s'\n", static_cast<int>(name.size()),
                 name.data());
    return 2;
  }
  auto& f = fixture();
  for (long i = 0; i < n; ++i) {
    switch (which) {
      case 0:
        f.evaluateSet();
        break;
      case 1:
        f.evaluateGet();
        break;
      case 2:
        benchmark::DoNotOptimize(f.missGet());
        break;
      case 3:
        benchmark::DoNotOptimize(f.missSet());
        break;
      case 4:
        benchmark::DoNotOptimize(f.get);
        benchmark::DoNotOptimize(proxy::specialOf(*f.get));
        break;
      default:
        benchmark::DoNotOptimize(f.set);
        benchmark::DoNotOptimize(proxy::specialOf(*f.set));
        break;
    }
    benchmark::ClobberMemory();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "--loop") == 0) {
    return loop(argv[2], std::strtol(argv[3], nullptr, 10));
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
