#include "policies/hyperloglog.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <string>

using keygate::policies::HyperLogLog;

namespace {

void addRange(HyperLogLog& hll, const std::string& prefix, int from, int to) {
  std::string key = prefix;
  for (int i = from; i < to; ++i) {
    key.resize(prefix.size());
    key += std::to_string(i);
    hll.add(key);
  }
}

double relativeError(const HyperLogLog& hll, double truth) {
  return std::abs(hll.estimate() - truth) / truth;
}

}  // namespace

TEST_CASE("hyperloglog: empty estimates 0 and allocates nothing", "[policies][hll]") {
  HyperLogLog hll;
  CHECK(hll.empty());
  CHECK(hll.registers().empty());
  CHECK(hll.estimate() == 0);
  CHECK(hll.precision() == 12);
  CHECK(hll.memoryBytes() < 64);
  hll.add("k");
  CHECK(hll.registers().size() == 4096);
  CHECK(hll.memoryBytes() >= 4096);
  CHECK(hll.estimate() == Approx(1).epsilon(0.01));
}

TEST_CASE("hyperloglog: repeats do not count", "[policies][hll]") {
  HyperLogLog hll;
  for (int round = 0; round < 5; ++round)
    addRange(hll, "cart:", 0, 500);
  CHECK(relativeError(hll, 500) < 0.02);
}

TEST_CASE("hyperloglog: accurate within 3 standard errors", "[policies][hll]") {
  HyperLogLog hll;
  const double sigma = hll.relativeError();
  CHECK(sigma == Approx(1.04 / 64));
  // Cumulative: estimates at 1k, 100k and 1M distinct keys of one stream.
  addRange(hll, "oms:{tenant-7}:order:", 0, 1000);
  CHECK(relativeError(hll, 1000) < 3 * sigma);
  addRange(hll, "oms:{tenant-7}:order:", 1000, 100'000);
  CHECK(relativeError(hll, 100'000) < 3 * sigma);
  addRange(hll, "oms:{tenant-7}:order:", 100'000, 1'000'000);
  CHECK(relativeError(hll, 1'000'000) < 3 * sigma);
}

TEST_CASE("hyperloglog: accurate across the switch from linear counting", "[policies][hll]") {
  // 2.5 m = 10240 for p = 12: the estimates either side of the switch.
  for (const int n : {5'000, 9'000, 12'000, 20'000, 40'000}) {
    HyperLogLog hll;
    addRange(hll, "cat:{tenant-1}:offering:", 0, n);
    INFO("n = " << n << ", estimate " << hll.estimate());
    CHECK(relativeError(hll, n) < 3 * hll.relativeError());
  }
}

TEST_CASE("hyperloglog: other precisions", "[policies][hll]") {
  for (const unsigned p : {4u, 8u, 14u}) {
    HyperLogLog hll(p);
    CHECK(hll.precision() == p);
    CHECK(hll.relativeError() == Approx(1.04 / std::sqrt(1 << p)));
    const int n = 20 << p;  // past the range where the raw estimate runs high (header)
    addRange(hll, "quote:", 0, n);
    INFO("p = " << p << ", estimate " << hll.estimate());
    CHECK(relativeError(hll, n) < 3 * hll.relativeError());
  }
  CHECK(HyperLogLog(1).precision() == HyperLogLog::kMinPrecision);
  CHECK(HyperLogLog(40).precision() == HyperLogLog::kMaxPrecision);
}

TEST_CASE("hyperloglog: merge equals the union", "[policies][hll]") {
  HyperLogLog a, b, all;
  addRange(a, "k:", 0, 60'000);
  addRange(b, "k:", 40'000, 100'000);
  addRange(all, "k:", 0, 100'000);
  REQUIRE(a.merge(b));
  CHECK(std::equal(a.registers().begin(), a.registers().end(), all.registers().begin(),
                   all.registers().end()));
  CHECK(a.estimate() == all.estimate());
  CHECK(relativeError(a, 100'000) < 3 * a.relativeError());

  // Merging an empty sketch changes nothing; merging into an empty one copies.
  HyperLogLog empty, copy;
  const double before = a.estimate();
  CHECK(a.merge(empty));
  CHECK(a.estimate() == before);
  CHECK(copy.merge(a));
  CHECK(copy.estimate() == before);
  CHECK(empty.merge(HyperLogLog()));
  CHECK(empty.empty());
}

TEST_CASE("hyperloglog: merge refuses another precision", "[policies][hll]") {
  HyperLogLog a(12), b(10);
  addRange(a, "k:", 0, 100);
  addRange(b, "k:", 100, 200);
  const double before = a.estimate();
  CHECK_FALSE(a.merge(b));
  CHECK(a.estimate() == before);
}

TEST_CASE("hyperloglog: addHash is add of the key's hash; clear empties", "[policies][hll]") {
  HyperLogLog a, b;
  addRange(a, "x:", 0, 3000);
  for (int i = 0; i < 3000; ++i)
    b.addHash(keygate::policies::keyHash64("x:" + std::to_string(i)));
  CHECK(a.estimate() == b.estimate());
  a.clear();
  CHECK(a.empty());
  CHECK(a.estimate() == 0);
}

TEST_CASE("hyperloglog: reset empties but keeps the registers", "[policies][hll]") {
  HyperLogLog a, fresh;
  addRange(a, "x:", 0, 3000);
  const auto* registers = a.registers().data();
  a.reset();
  CHECK_FALSE(a.empty());
  CHECK(a.registers().data() == registers);  // no reallocation
  CHECK(a.estimate() == 0);
  addRange(a, "y:", 0, 500);
  addRange(fresh, "y:", 0, 500);
  CHECK(a.estimate() == fresh.estimate());
  HyperLogLog never;
  never.reset();  // nothing allocated: stays so
  CHECK(never.empty());
}
