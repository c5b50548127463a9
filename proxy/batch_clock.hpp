#pragma once

// One clock reading per batch of I/O. A client's read may carry dozens of pipelined requests
// and an upstream read hundreds of replies; stamping each of them with its own
// steady_clock::now() cost two clock reads per request, about 4% of keygate's CPU at pipeline
// 16 on a paravirtualised machine. Inside a BatchClock::Scope (the handling of one read) every
// request is stamped with the time the read was handled, as redis-server stamps a command with
// its event loop's cached time; outside one, now() reads the clock.

#include <chrono>
#include <cstdint>

namespace keygate::proxy {

class BatchClock {
 public:
  using Clock = std::chrono::steady_clock;

  static Clock::time_point now() { return depth_ > 0 ? batchNow_ : Clock::now(); }

  // Reads the clock once, unless an enclosing scope (the same batch) already did.
  class Scope {
   public:
    Scope() {
      if (depth_++ == 0) batchNow_ = Clock::now();
    }
    ~Scope() { --depth_; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
  };

 private:
  // Per thread: a worker's batches never interleave with another worker's.
  static inline thread_local std::uint32_t depth_ = 0;
  static inline thread_local Clock::time_point batchNow_{};
};

}  // namespace keygate::proxy
