#pragma once

// Request deadlines of one worker. Every request sent to Redis under an endpoint profile gets
// an entry; when its time comes the target (the client session) is asked whether the request
// is still unanswered, and if so answers it as the profile says (fail open or closed).
//
// Cheap per request: deadlines are "now + budget" and budgets are few (one per profile), so
// each budget has its own FIFO lane, already in deadline order: adding is a push_back, and one
// timer serves all lanes. Entries are not removed when their request is answered; they are
// dropped when their time comes (a request is answered long before that, normally). The timer
// fires at most once per `kResolution`, so under load expired entries are handled in batches
// and a deadline is acted on at most that late.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <queue>
#include <vector>

namespace keygate::proxy {

namespace asio = boost::asio;

class UpstreamConnection;

class DeadlineTarget {
 public:
  virtual ~DeadlineTarget() = default;
  // The deadline of request `tag` has come. True when it was still unanswered (it has now
  // been answered by keygate): the connection it was sent on is told of the timeout.
  virtual bool onDeadline(std::uint64_t tag) = 0;
};

class DeadlineQueue {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::microseconds kResolution{1000};

  explicit DeadlineQueue(asio::io_context& io);

  // Calls target->onDeadline(tag) at now + budget (budget > 0). `conn`: where the request
  // went (told by noteTimeout() when the request timed out), may be null.
  void add(Clock::time_point now, std::chrono::milliseconds budget,
           std::shared_ptr<DeadlineTarget> target, std::uint64_t tag,
           const std::shared_ptr<UpstreamConnection>& conn);

  // The same at an arbitrary time (kept in a heap: for the odd deadline, not per request).
  void addAt(Clock::time_point at, std::shared_ptr<DeadlineTarget> target, std::uint64_t tag);

  // Drops every entry (shutdown).
  void clear();
  std::size_t size() const;

 private:
  struct Entry {
    Clock::time_point at;
    std::shared_ptr<DeadlineTarget> target;
    std::uint64_t tag = 0;
    std::weak_ptr<UpstreamConnection> conn;
    bool operator>(const Entry& other) const { return at > other.at; }
  };
  struct Lane {
    std::chrono::milliseconds budget{0};
    std::deque<Entry> entries;
  };
  // Budgets beyond this many distinct ones (blocking commands' own timeouts) share a heap.
  static constexpr std::size_t kMaxLanes = 16;

  void arm(Clock::time_point at);
  void onTimer();
  void expire(Entry& entry);

  asio::steady_timer timer_;
  bool armed_ = false;
  Clock::time_point armedAt_{};
  std::vector<Lane> lanes_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> others_;
};

}  // namespace keygate::proxy
