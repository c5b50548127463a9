#pragma once

// When the cluster topology is fetched again: periodically, and early when something says it
// changed (a MOVED reply, a node connection error), but a fetch never starts sooner than
// `minGap` after the previous one, and failed fetches back off, so a broken cluster is not
// stormed. Pure bookkeeping on time points the caller passes in (tests use made-up times).

#include <algorithm>
#include <chrono>

namespace keygate::proxy {

class RefreshSchedule {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  using Duration = std::chrono::milliseconds;

  struct Settings {
    Duration interval{10000};    // periodic refresh after a successful fetch
    Duration minGap{1000};       // least time between the starts of two fetches
    Duration maxBackoff{10000};  // longest wait after repeated failures
  };

  explicit RefreshSchedule(Settings settings) : settings_(settings) {}

  // When the next fetch should start (the first one: at once).
  TimePoint next() const { return next_; }
  bool due(TimePoint now) const { return !inFlight_ && now >= next_; }
  bool inFlight() const { return inFlight_; }

  // Something suggests the map is stale: fetch as soon as minGap allows.
  void requestEarly(TimePoint now) {
    if (inFlight_) {
      earlyPending_ = true;  // the fetch in flight may predate the change
      return;
    }
    next_ = std::min(next_, std::max(now, lastStart_ + settings_.minGap));
  }

  void started(TimePoint now) {
    inFlight_ = true;
    lastStart_ = now;
  }

  void finished(TimePoint now, bool ok) {
    inFlight_ = false;
    if (ok) {
      backoff_ = Duration{0};
      next_ = now + settings_.interval;
    } else {
      backoff_ =
          backoff_.count() == 0 ? settings_.minGap : std::min(backoff_ * 2, settings_.maxBackoff);
      next_ = now + backoff_;
    }
    if (earlyPending_) {
      earlyPending_ = false;
      next_ = std::min(next_, std::max(now, lastStart_ + settings_.minGap));
    }
  }

 private:
  Settings settings_;
  TimePoint next_{};  // epoch: the first fetch is due at once
  TimePoint lastStart_{};
  Duration backoff_{0};
  bool inFlight_ = false;
  bool earlyPending_ = false;
};

}  // namespace keygate::proxy
