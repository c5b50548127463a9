#pragma once

// A circuit breaker for one endpoint profile towards one Redis node, on one worker thread (no
// locks). Closed: every request goes to Redis. After `consecutiveFailures` failures in a row,
// or a failure ratio over the last `window` requests, it opens: requests are answered at once
// (fail-open or fail-closed, as the profile says) without touching the network. After
// `openFor` it half-opens and lets `halfOpenProbes` requests through: when all succeed it
// closes, when one fails it opens again. A half-open round whose outcomes never come back (the
// client went away) is restarted after another `openFor`.
//
// Time is passed in, so tests drive it; allow() needs no clock while the breaker is closed,
// which is all the request path pays in the common case.

#include <chrono>
#include <cstdint>

#include "config/registry.hpp"

namespace keygate::policies {

class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  enum class State : std::uint8_t { kClosed, kOpen, kHalfOpen };

  explicit CircuitBreaker(const config::BreakerPolicy& policy = {});

  // New settings (a registry reload); the state is kept.
  void configure(const config::BreakerPolicy& policy);

  // True while closed: the request may go without reading the clock.
  bool closed() const { return state_ == State::kClosed; }
  // May a request go to Redis at `now`? Open: no until openFor has passed, then half-open.
  // Half-open: yes for the first halfOpenProbes requests of the round. A request let through
  // must report its outcome (onSuccess / onFailure).
  bool allow(Clock::time_point now);

  void onSuccess(Clock::time_point now);
  void onFailure(Clock::time_point now);

  State state() const { return state_; }
  std::uint32_t consecutiveFailures() const { return consecutive_; }
  // When the breaker opened last (valid while open or half-open).
  Clock::time_point openedAt() const { return openedAt_; }
  std::chrono::milliseconds openFor() const { return policy_.openFor; }
  std::uint64_t opens() const { return opens_; }  // times it opened, ever
  // Why it opened last: "5 consecutive failures" or "60% of the last 100 requests failed".
  const char* reason() const { return byRatio_ ? "failure ratio" : "consecutive failures"; }

 private:
  void open(Clock::time_point now, bool byRatio);
  void record(bool failure);

  config::BreakerPolicy policy_;
  State state_ = State::kClosed;
  std::uint32_t consecutive_ = 0;
  // Ratio over roughly the last `window` requests: both counts are halved when they reach it.
  std::uint32_t requests_ = 0;
  std::uint32_t failures_ = 0;
  Clock::time_point openedAt_{};
  std::uint32_t probesSent_ = 0;
  std::uint32_t probesOk_ = 0;
  std::uint64_t opens_ = 0;
  bool byRatio_ = false;
};

}  // namespace keygate::policies
