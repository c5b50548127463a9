// RESP codec cost per request: RequestParser on the client side, ReplyScanner on the upstream
// side, with the shapes `redis-benchmark -t get,set -P 16` sends and Redis answers.
//
//   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DKEYGATE_BUILD_TESTS=OFF
//         -DKEYGATE_BUILD_BENCH=ON   (one command)
//   cmake --build build-bench -j2 --target resp_codec_bench
//   build-bench/bench/resp_codec_bench
//
// The machine is noisy; for a deterministic count, run one benchmark under callgrind and divide
// the inclusive cost of RequestParser::parse or ReplyScanner::scan by its call count:
//
//   valgrind --tool=callgrind --callgrind-out-file=cg.out build-bench/bench/resp_codec_bench
//       --benchmark_filter='BM_ParseGet$' --benchmark_min_time=0.01
//   callgrind_annotate --inclusive=yes --tree=caller cg.out | grep -A3 'RequestParser::parse'

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/resp/limits.hpp"
#include "proxy/resp/reply_scanner.hpp"
#include "proxy/resp/request_parser.hpp"

namespace {

using keygate::resp::Limits;
using keygate::resp::ParseResult;
using keygate::resp::ParseStatus;
using keygate::resp::ReplyScanner;
using keygate::resp::Request;
using keygate::resp::RequestParser;
using keygate::resp::ScanResult;
using keygate::resp::ScanStatus;

constexpr std::string_view kGet = "*2\r\n$3\r\nGET\r\n$16\r\nkey:000000012345\r\n";
constexpr std::string_view kInlineGet = "GET key:000000012345\r\n";

std::string set64() {
  return "*3\r\n$3\r\nSET\r\n$16\r\nkey:000000012345\r\n$64\r\n" + std::string(64, 'v') + "\r\n";
}

std::string repeated(std::string_view one, int times) {
  std::string out;
  for (int i = 0; i < times; ++i)
    out += one;
  return out;
}

// A benchmark that got a wrong answer measures nothing: stop loudly.
void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "resp_codec_bench: %s\n", what);
    std::abort();
  }
}

// Parses every request in `input`, as ClientSession does: the buffer loses each request from its
// front, and one Request is reused.
void parseAll(benchmark::State& state, std::string_view input, std::size_t requests) {
  RequestParser parser{Limits{}};
  Request req;
  for (auto _ : state) {
    std::string_view rest = input;
    while (!rest.empty()) {
      const ParseResult r = parser.parse(rest, req);
      if (r.status != ParseStatus::kOk) {
        state.SkipWithError("parse failed");
        break;
      }
      benchmark::DoNotOptimize(req.args.data());
      rest.remove_prefix(r.consumed);
    }
  }
  require(parser.parse(input, req).status == ParseStatus::kOk, "parse failed");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * requests));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * input.size()));
}

void BM_ParseGet(benchmark::State& state) {
  parseAll(state, kGet, 1);
}
BENCHMARK(BM_ParseGet);

void BM_ParseSet64(benchmark::State& state) {
  const std::string input = set64();
  parseAll(state, input, 1);
}
BENCHMARK(BM_ParseSet64);

void BM_ParsePipeline16(benchmark::State& state) {
  const std::string input = repeated(kGet, 16);
  parseAll(state, input, 16);
}
BENCHMARK(BM_ParsePipeline16);

void BM_ParseInlineGet(benchmark::State& state) {
  parseAll(state, kInlineGet, 1);
}
BENCHMARK(BM_ParseInlineGet);

// The slow path: a GET whose key arrives in a second read, so the first call is incomplete and
// the second resumes.
void BM_ParseGetInTwoReads(benchmark::State& state) {
  RequestParser parser{Limits{}};
  Request req;
  const std::string_view first = kGet.substr(0, kGet.size() - 9);
  for (auto _ : state) {
    const ParseResult a = parser.parse(first, req);
    const ParseResult b = parser.parse(kGet, req);
    if (a.status != ParseStatus::kIncomplete || b.status != ParseStatus::kOk) {
      state.SkipWithError("parse failed");
    }
    benchmark::DoNotOptimize(req.args.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_ParseGetInTwoReads);

// Frames every reply in `input`, as UpstreamConnection does.
void scanAll(benchmark::State& state, std::string_view input, std::size_t replies) {
  ReplyScanner scanner{Limits{}};
  for (auto _ : state) {
    std::string_view rest = input;
    while (!rest.empty()) {
      const ScanResult r = scanner.scan(rest);
      if (r.status != ScanStatus::kOk) {
        state.SkipWithError("scan failed");
        break;
      }
      benchmark::DoNotOptimize(r.type);
      rest.remove_prefix(r.consumed);
    }
  }
  require(scanner.scan(input).status == ScanStatus::kOk, "scan failed");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * replies));
}

void BM_ScanBulk3(benchmark::State& state) {
  scanAll(state, "$3\r\nxxx\r\n", 1);
}
BENCHMARK(BM_ScanBulk3);

void BM_ScanOk(benchmark::State& state) {
  scanAll(state, "+OK\r\n", 1);
}
BENCHMARK(BM_ScanOk);

void BM_ScanInteger(benchmark::State& state) {
  scanAll(state, ":1\r\n", 1);
}
BENCHMARK(BM_ScanInteger);

// An MGET of ten 3-byte values.
void BM_ScanArray10(benchmark::State& state) {
  const std::string input = "*10\r\n" + repeated("$3\r\nxxx\r\n", 10);
  scanAll(state, input, 1);
}
BENCHMARK(BM_ScanArray10);

void BM_ScanPipeline16(benchmark::State& state) {
  const std::string input = repeated("$3\r\nxxx\r\n", 16);
  scanAll(state, input, 16);
}
BENCHMARK(BM_ScanPipeline16);

// The slow path: a bulk whose data arrives in a second read.
void BM_ScanBulk3InTwoReads(benchmark::State& state) {
  ReplyScanner scanner{Limits{}};
  constexpr std::string_view kReply = "$3\r\nxxx\r\n";
  for (auto _ : state) {
    const ScanResult a = scanner.scan(kReply.substr(0, 5));
    const ScanResult b = scanner.scan(kReply);
    if (a.status != ScanStatus::kIncomplete || b.status != ScanStatus::kOk) {
      state.SkipWithError("scan failed");
    }
    benchmark::DoNotOptimize(b.consumed);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_ScanBulk3InTwoReads);

}  // namespace
