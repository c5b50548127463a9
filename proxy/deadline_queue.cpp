#include "proxy/deadline_queue.hpp"

#include <algorithm>

#include "proxy/upstream_connection.hpp"

namespace keygate::proxy {

DeadlineQueue::DeadlineQueue(asio::io_context& io) : timer_(io) {}

void DeadlineQueue::add(Clock::time_point now, std::chrono::milliseconds budget,
                        std::shared_ptr<DeadlineTarget> target, std::uint64_t tag,
                        const std::shared_ptr<UpstreamConnection>& conn) {
  Entry entry{now + budget, std::move(target), tag, conn};
  const Clock::time_point at = entry.at;
  Lane* lane = nullptr;
  for (auto& l : lanes_) {
    if (l.budget == budget) {
      lane = &l;
      break;
    }
  }
  if (lane == nullptr && lanes_.size() < kMaxLanes) {
    lanes_.push_back(Lane{budget, {}});
    lane = &lanes_.back();
  }
  if (lane != nullptr) {
    lane->entries.push_back(std::move(entry));
  } else {
    others_.push(std::move(entry));
  }
  arm(at);
}

void DeadlineQueue::addAt(Clock::time_point at, std::shared_ptr<DeadlineTarget> target,
                          std::uint64_t tag) {
  others_.push(Entry{at, std::move(target), tag, {}});
  arm(at);
}

void DeadlineQueue::arm(Clock::time_point at) {
  // A timer already due no later than this (within the resolution) will handle it.
  if (armed_ && armedAt_ <= at + kResolution) return;
  armed_ = true;
  armedAt_ = at;
  timer_.expires_at(at);  // cancels a later wait; its handler sees operation_aborted
  timer_.async_wait([this, at](const boost::system::error_code& ec) {
    if (ec || !armed_ || armedAt_ != at) return;
    armed_ = false;
    onTimer();
  });
}

void DeadlineQueue::expire(Entry& entry) {
  auto target = std::move(entry.target);
  if (target->onDeadline(entry.tag)) {
    if (auto conn = entry.conn.lock()) conn->noteTimeout();
  }
}

void DeadlineQueue::onTimer() {
  const Clock::time_point now = Clock::now();
  Clock::time_point next = Clock::time_point::max();
  // By index: a target may add entries (and lanes) while it is told of its deadline.
  for (std::size_t i = 0; i < lanes_.size(); ++i) {
    while (!lanes_[i].entries.empty() && lanes_[i].entries.front().at <= now) {
      Entry entry = std::move(lanes_[i].entries.front());
      lanes_[i].entries.pop_front();
      expire(entry);
    }
    if (!lanes_[i].entries.empty()) next = std::min(next, lanes_[i].entries.front().at);
  }
  while (!others_.empty() && others_.top().at <= now) {
    Entry entry = others_.top();
    others_.pop();
    expire(entry);
  }
  if (!others_.empty()) next = std::min(next, others_.top().at);
  // Expiring may have added entries (and armed the timer); otherwise wait for the next one,
  // no sooner than the resolution so a busy lane is handled in batches.
  if (next != Clock::time_point::max()) arm(std::max(next, now + kResolution));
}

void DeadlineQueue::clear() {
  lanes_.clear();
  others_ = {};
  armed_ = false;
  timer_.cancel();
}

std::size_t DeadlineQueue::size() const {
  std::size_t n = others_.size();
  for (const auto& l : lanes_)
    n += l.entries.size();
  return n;
}

}  // namespace keygate::proxy
