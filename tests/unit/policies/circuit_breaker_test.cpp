#include "policies/circuit_breaker.hpp"

#include <catch2/catch.hpp>
#include <chrono>

using keygate::config::BreakerPolicy;
using keygate::policies::CircuitBreaker;
using namespace std::chrono_literals;

namespace {

using State = CircuitBreaker::State;
using TimePoint = CircuitBreaker::Clock::time_point;

const TimePoint kT0 = TimePoint{} + 1000s;

BreakerPolicy consecutive(std::uint32_t n, std::chrono::milliseconds openFor = 1000ms,
                          std::uint32_t probes = 1) {
  BreakerPolicy p;
  p.consecutiveFailures = n;
  p.failureRatio = 0;
  p.openFor = openFor;
  p.halfOpenProbes = probes;
  return p;
}

BreakerPolicy ratio(double r, std::uint32_t window, std::uint32_t minRequests) {
  BreakerPolicy p;
  p.consecutiveFailures = 0;
  p.failureRatio = r;
  p.window = window;
  p.minRequests = minRequests;
  p.openFor = 1000ms;
  return p;
}

// `n` requests let through and failed at `now`.
void fail(CircuitBreaker& b, int n, TimePoint now) {
  for (int i = 0; i < n; ++i) {
    REQUIRE(b.allow(now));
    b.onFailure(now);
  }
}

void succeed(CircuitBreaker& b, int n, TimePoint now) {
  for (int i = 0; i < n; ++i) {
    REQUIRE(b.allow(now));
    b.onSuccess(now);
  }
}

// Opens `b` (policy: consecutive(n)) at `now`.
void openBy(CircuitBreaker& b, std::uint32_t n, TimePoint now) {
  fail(b, static_cast<int>(n), now);
  REQUIRE(b.state() == State::kOpen);
}

}  // namespace

TEST_CASE("circuit breaker: closed lets everything through", "[policies][breaker]") {
  CircuitBreaker b(consecutive(3));
  CHECK(b.closed());
  CHECK(b.state() == State::kClosed);
  CHECK(b.opens() == 0);
  succeed(b, 100, kT0);
  CHECK(b.closed());
  CHECK(b.consecutiveFailures() == 0);
}

TEST_CASE("circuit breaker: opens after consecutive failures", "[policies][breaker]") {
  CircuitBreaker b(consecutive(3));
  fail(b, 2, kT0);
  CHECK(b.closed());
  CHECK(b.consecutiveFailures() == 2);

  SECTION("a success in between resets the count") {
    succeed(b, 1, kT0);
    CHECK(b.consecutiveFailures() == 0);
    fail(b, 2, kT0);
    CHECK(b.closed());
    fail(b, 1, kT0);
    CHECK(b.state() == State::kOpen);
  }
  SECTION("the third opens it") {
    fail(b, 1, kT0 + 5ms);
    CHECK(b.state() == State::kOpen);
    CHECK_FALSE(b.closed());
    CHECK(b.openedAt() == kT0 + 5ms);
    CHECK(b.opens() == 1);
    CHECK(std::string(b.reason()) == "consecutive failures");
    CHECK_FALSE(b.allow(kT0 + 5ms));
  }
}

TEST_CASE("circuit breaker: consecutiveFailures 0 never opens by count", "[policies][breaker]") {
  CircuitBreaker b(consecutive(0));
  fail(b, 1000, kT0);
  CHECK(b.closed());
}

TEST_CASE("circuit breaker: stays open for openFor, then half-opens", "[policies][breaker]") {
  CircuitBreaker b(consecutive(2, 500ms));
  openBy(b, 2, kT0);
  CHECK_FALSE(b.allow(kT0));
  CHECK_FALSE(b.allow(kT0 + 499ms));
  CHECK(b.state() == State::kOpen);
  CHECK(b.openFor() == 500ms);

  CHECK(b.allow(kT0 + 500ms));  // the probe
  CHECK(b.state() == State::kHalfOpen);
  CHECK_FALSE(b.allow(kT0 + 500ms));  // one probe per round
  CHECK_FALSE(b.allow(kT0 + 900ms));

  SECTION("the probe succeeds: closed, counters reset") {
    b.onSuccess(kT0 + 510ms);
    CHECK(b.closed());
    CHECK(b.consecutiveFailures() == 0);
    CHECK(b.allow(kT0 + 510ms));
    fail(b, 1, kT0 + 520ms);
    CHECK(b.closed());  // 1 of 2: the count started again
    fail(b, 1, kT0 + 530ms);
    CHECK(b.state() == State::kOpen);
    CHECK(b.opens() == 2);
  }
  SECTION("the probe fails: open again from now") {
    b.onFailure(kT0 + 600ms);
    CHECK(b.state() == State::kOpen);
    CHECK(b.openedAt() == kT0 + 600ms);
    CHECK(b.opens() == 2);
    CHECK_FALSE(b.allow(kT0 + 1099ms));
    CHECK(b.allow(kT0 + 1100ms));
    CHECK(b.state() == State::kHalfOpen);
  }
}

TEST_CASE("circuit breaker: several probes must all succeed", "[policies][breaker]") {
  CircuitBreaker b(consecutive(1, 100ms, 3));
  openBy(b, 1, kT0);
  const TimePoint t = kT0 + 100ms;
  CHECK(b.allow(t));
  CHECK(b.allow(t));
  CHECK(b.allow(t));
  CHECK_FALSE(b.allow(t));

  SECTION("all three succeed") {
    b.onSuccess(t);
    b.onSuccess(t);
    CHECK(b.state() == State::kHalfOpen);
    b.onSuccess(t);
    CHECK(b.closed());
  }
  SECTION("the last one fails") {
    b.onSuccess(t);
    b.onSuccess(t);
    b.onFailure(t + 1ms);
    CHECK(b.state() == State::kOpen);
    CHECK(b.openedAt() == t + 1ms);
  }
  SECTION("stray successes do not count beyond the probes sent") {
    CircuitBreaker c(consecutive(1, 100ms, 2));
    openBy(c, 1, kT0);
    CHECK(c.allow(t));  // one probe out
    c.onSuccess(t);
    c.onSuccess(t);  // a reply to a request sent before the breaker opened
    CHECK(c.state() == State::kHalfOpen);
    CHECK(c.allow(t));
    c.onSuccess(t);
    CHECK(c.closed());
  }
}

TEST_CASE("circuit breaker: outcomes while open are ignored", "[policies][breaker]") {
  CircuitBreaker b(consecutive(1, 100ms));
  openBy(b, 1, kT0);
  b.onSuccess(kT0 + 10ms);  // replies to requests sent before it opened
  CHECK(b.state() == State::kOpen);
  b.onFailure(kT0 + 50ms);
  CHECK(b.state() == State::kOpen);
  CHECK(b.openedAt() == kT0);  // not pushed back
  CHECK(b.opens() == 1);
  CHECK(b.allow(kT0 + 100ms));
}

TEST_CASE("circuit breaker: a round whose probes are lost restarts", "[policies][breaker]") {
  CircuitBreaker b(consecutive(1, 200ms, 2));
  openBy(b, 1, kT0);
  const TimePoint round = kT0 + 200ms;
  CHECK(b.allow(round));
  CHECK(b.allow(round));
  // No outcome ever comes back (the clients went away).
  CHECK_FALSE(b.allow(round + 100ms));
  CHECK_FALSE(b.allow(round + 199ms));
  CHECK(b.allow(round + 200ms));  // a new round
  CHECK(b.allow(round + 201ms));
  CHECK_FALSE(b.allow(round + 202ms));
  CHECK(b.state() == State::kHalfOpen);
  CHECK(b.opens() == 1);

  SECTION("the new round's probes close it") {
    b.onSuccess(round + 210ms);
    b.onSuccess(round + 211ms);
    CHECK(b.closed());
  }
  SECTION("a long silence restarts once, not for every request") {
    const TimePoint later = round + 10s;
    CHECK(b.allow(later));
    CHECK(b.allow(later));
    CHECK_FALSE(b.allow(later));
    CHECK_FALSE(b.allow(later + 199ms));
    CHECK(b.allow(later + 200ms));
  }
}

TEST_CASE("circuit breaker: failure ratio", "[policies][breaker]") {
  SECTION("not before minRequests") {
    CircuitBreaker b(ratio(0.5, 100, 20));
    fail(b, 19, kT0);
    CHECK(b.closed());
    fail(b, 1, kT0);
    CHECK(b.state() == State::kOpen);
    CHECK(std::string(b.reason()) == "failure ratio");
  }
  SECTION("opens when the ratio is reached, not below") {
    CircuitBreaker b(ratio(0.6, 100, 20));
    for (int i = 0; i < 20; ++i) {
      succeed(b, 2, kT0);
      fail(b, 2, kT0);
    }
    CHECK(b.closed());  // 40 of 80: 50%
    fail(b, 19, kT0);   // 59 of 99
    CHECK(b.closed());
    fail(b, 1, kT0);  // 60 of 100
    CHECK(b.state() == State::kOpen);
  }
  SECTION("only failures open it") {
    CircuitBreaker b(ratio(0.1, 100, 10));
    fail(b, 1, kT0);
    succeed(b, 8, kT0);
    CHECK(b.closed());   // 1 of 9 ...
    succeed(b, 1, kT0);  // ... then 1 of 10 after a success: judged at the next failure
    CHECK(b.closed());
    fail(b, 1, kT0);  // 2 of 11
    CHECK(b.state() == State::kOpen);
  }
  SECTION("old requests weigh less: the counts halve at the window") {
    CircuitBreaker b(ratio(0.5, 10, 4));
    fail(b, 3, kT0);
    succeed(b, 7, kT0);  // 3 failures of 10 requests
    succeed(b, 5, kT0);  // halved to 1 of 5, then 1 of 10
    succeed(b, 1, kT0);  // halved to 0 of 5, then 0 of 6
    CHECK(b.closed());
    // Without the halving this would be 3 + 4 of 20: 35%. With it, 4 of 10.
    fail(b, 4, kT0);
    CHECK(b.closed());
    fail(b, 1, kT0);  // halved to 2 of 5, then 3 of 6: 50%
    CHECK(b.state() == State::kOpen);
  }
  SECTION("the ratio is counted again after it closes") {
    CircuitBreaker b(ratio(0.5, 100, 4));
    fail(b, 4, kT0);
    REQUIRE(b.state() == State::kOpen);
    CHECK(b.allow(kT0 + 1s));
    b.onSuccess(kT0 + 1s);
    REQUIRE(b.closed());
    succeed(b, 2, kT0 + 2s);
    fail(b, 1, kT0 + 2s);  // 1 of 3: minRequests not reached
    CHECK(b.closed());
    fail(b, 1, kT0 + 2s);  // 2 of 4
    CHECK(b.state() == State::kOpen);
  }
}

TEST_CASE("circuit breaker: count and ratio together", "[policies][breaker]") {
  BreakerPolicy p = ratio(0.9, 100, 10);
  p.consecutiveFailures = 3;
  CircuitBreaker b(p);
  fail(b, 3, kT0);
  CHECK(b.state() == State::kOpen);
  CHECK(std::string(b.reason()) == "consecutive failures");
}

TEST_CASE("circuit breaker: disabled never opens", "[policies][breaker]") {
  BreakerPolicy p = consecutive(1);
  p.failureRatio = 0.1;
  p.minRequests = 1;
  p.enabled = false;
  CircuitBreaker b(p);
  fail(b, 1000, kT0);
  CHECK(b.closed());
  CHECK(b.opens() == 0);
}

TEST_CASE("circuit breaker: configure keeps the state and applies new thresholds",
          "[policies][breaker]") {
  SECTION("a closed breaker keeps its count") {
    CircuitBreaker b(consecutive(5));
    fail(b, 3, kT0);
    b.configure(consecutive(4));
    CHECK(b.consecutiveFailures() == 3);
    CHECK(b.closed());
    fail(b, 1, kT0);
    CHECK(b.state() == State::kOpen);
  }
  SECTION("an open breaker stays open, for the new openFor") {
    CircuitBreaker b(consecutive(1, 1000ms));
    openBy(b, 1, kT0);
    b.configure(consecutive(1, 200ms));
    CHECK(b.state() == State::kOpen);
    CHECK(b.openFor() == 200ms);
    CHECK_FALSE(b.allow(kT0 + 199ms));
    CHECK(b.allow(kT0 + 200ms));
  }
  SECTION("more probes per round") {
    CircuitBreaker b(consecutive(1, 100ms, 1));
    openBy(b, 1, kT0);
    CHECK(b.allow(kT0 + 100ms));
    b.configure(consecutive(1, 100ms, 2));
    CHECK(b.allow(kT0 + 100ms));
    CHECK_FALSE(b.allow(kT0 + 100ms));
    b.onSuccess(kT0 + 101ms);
    CHECK(b.state() == State::kHalfOpen);
    b.onSuccess(kT0 + 101ms);
    CHECK(b.closed());
  }
  SECTION("disabling an open breaker lets requests through; a success closes it") {
    CircuitBreaker b(consecutive(1, 10s));
    openBy(b, 1, kT0);
    BreakerPolicy off = consecutive(1, 10s);
    off.enabled = false;
    b.configure(off);
    CHECK(b.allow(kT0 + 1ms));
    CHECK(b.allow(kT0 + 1ms));
    b.onFailure(kT0 + 2ms);
    CHECK_FALSE(b.closed());
    CHECK(b.opens() == 1);
    b.onSuccess(kT0 + 3ms);
    CHECK(b.closed());
    fail(b, 10, kT0 + 4ms);
    CHECK(b.closed());
  }
  SECTION("enabling it again") {
    BreakerPolicy off = consecutive(2);
    off.enabled = false;
    CircuitBreaker b(off);
    fail(b, 10, kT0);
    CHECK(b.closed());
    b.configure(consecutive(2));
    fail(b, 1, kT0);
    CHECK(b.closed());
    fail(b, 1, kT0);
    CHECK(b.state() == State::kOpen);
  }
}

TEST_CASE("circuit breaker: defaults", "[policies][breaker]") {
  CircuitBreaker b;  // 5 in a row, open for 1s, one probe
  fail(b, 4, kT0);
  CHECK(b.closed());
  fail(b, 1, kT0);
  CHECK(b.state() == State::kOpen);
  CHECK_FALSE(b.allow(kT0 + 999ms));
  CHECK(b.allow(kT0 + 1s));
  CHECK_FALSE(b.allow(kT0 + 1s));
}
