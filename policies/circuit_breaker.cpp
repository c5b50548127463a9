#include "policies/circuit_breaker.hpp"

#include <algorithm>
#include <limits>

// States and what moves between them:
//
//   closed ----(consecutive failures, or failure ratio)----> open (openedAt_ = now)
//   open ------(allow() at openedAt_ + openFor)------------> half-open, a round of probes
//   half-open --(every probe of the round succeeded)-------> closed, counters reset
//   half-open --(a probe failed)---------------------------> open (openedAt_ = now)
//   half-open --(round outstanding for another openFor)----> half-open, a new round
//
// A half-open round starts at openedAt_ + openFor. A restarted round moves openedAt_ so that
// this still holds (openedAt_ + openFor is then "when requests went to Redis again").
// With `enabled: false` the breaker never opens; one that was open when a reload disabled it
// lets every request through and closes on the first success.

namespace keygate::policies {

namespace {

std::uint32_t probesPerRound(const config::BreakerPolicy& policy) {
  return std::max<std::uint32_t>(policy.halfOpenProbes, 1);
}

}  // namespace

CircuitBreaker::CircuitBreaker(const config::BreakerPolicy& policy) : policy_(policy) {}

void CircuitBreaker::configure(const config::BreakerPolicy& policy) {
  policy_ = policy;
}

bool CircuitBreaker::allow(Clock::time_point now) {
  if (state_ == State::kClosed || !policy_.enabled) return true;
  const Clock::time_point roundStart = openedAt_ + policy_.openFor;
  if (state_ == State::kOpen) {
    if (now < roundStart) return false;
    state_ = State::kHalfOpen;
    probesSent_ = 0;
    probesOk_ = 0;
  } else if (probesSent_ >= probesPerRound(policy_) && now >= roundStart + policy_.openFor) {
    // The round's outcomes never came back (their clients went away): start another.
    openedAt_ = now - policy_.openFor;
    probesSent_ = 0;
    probesOk_ = 0;
  }
  if (probesSent_ >= probesPerRound(policy_)) return false;
  ++probesSent_;
  return true;
}

void CircuitBreaker::onSuccess(Clock::time_point /*now*/) {
  switch (state_) {
    case State::kClosed:
      consecutive_ = 0;
      if (policy_.enabled) record(false);
      return;
    case State::kOpen:
      if (policy_.enabled) return;  // an answer to a request sent before it opened
      break;
    case State::kHalfOpen:
      if (policy_.enabled) {
        // Count no more successes than probes were let through this round.
        if (probesOk_ < probesSent_) ++probesOk_;
        if (probesOk_ < probesPerRound(policy_)) return;
      }
      break;
  }
  state_ = State::kClosed;
  consecutive_ = 0;
  requests_ = 0;
  failures_ = 0;
  probesSent_ = 0;
  probesOk_ = 0;
}

void CircuitBreaker::onFailure(Clock::time_point now) {
  if (!policy_.enabled) return;
  switch (state_) {
    case State::kOpen:
      return;  // a request sent before it opened
    case State::kHalfOpen:
      open(now, byRatio_);
      return;
    case State::kClosed:
      break;
  }
  if (consecutive_ < std::numeric_limits<std::uint32_t>::max()) ++consecutive_;
  record(true);
  if (policy_.consecutiveFailures > 0 && consecutive_ >= policy_.consecutiveFailures) {
    open(now, false);
    return;
  }
  if (policy_.failureRatio > 0 && requests_ >= policy_.minRequests &&
      static_cast<double>(failures_) / static_cast<double>(requests_) >= policy_.failureRatio) {
    open(now, true);
  }
}

void CircuitBreaker::open(Clock::time_point now, bool byRatio) {
  state_ = State::kOpen;
  openedAt_ = now;
  probesSent_ = 0;
  probesOk_ = 0;
  byRatio_ = byRatio;
  ++opens_;
}

void CircuitBreaker::record(bool failure) {
  // Halve before counting, so the ratio is judged over up to `window` requests (a reload may
  // have made the window smaller than the count).
  const std::uint32_t window =
      policy_.window > 0 ? policy_.window : std::numeric_limits<std::uint32_t>::max();
  while (requests_ >= window) {
    requests_ /= 2;
    failures_ /= 2;
  }
  ++requests_;
  if (failure) ++failures_;
}

}  // namespace keygate::policies
