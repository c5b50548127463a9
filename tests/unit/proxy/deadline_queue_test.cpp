#include "proxy/deadline_queue.hpp"

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <memory>
#include <set>
#include <vector>

namespace keygate::proxy {
namespace {

using Clock = DeadlineQueue::Clock;
using std::chrono::milliseconds;

// Records when each tag's deadline came, and says "still unanswered" for the tags listed.
class Recorder final : public DeadlineTarget {
 public:
  bool onDeadline(std::uint64_t tag) override {
    fired.push_back({tag, Clock::now()});
    return pending.count(tag) != 0;
  }
  struct Fired {
    std::uint64_t tag;
    Clock::time_point at;
  };
  std::vector<Fired> fired;
  std::set<std::uint64_t> pending;
};

TEST_CASE("deadlines fire no earlier than their time, each once, earliest first") {
  boost::asio::io_context io;
  DeadlineQueue queue(io);
  auto target = std::make_shared<Recorder>();
  const auto start = Clock::now();
  // Two budgets (two lanes) interleaved, plus odd budgets beyond the lanes' limit.
  std::vector<std::pair<std::uint64_t, milliseconds>> added;
  for (std::uint64_t i = 0; i < 40; ++i) {
    const milliseconds budget = i % 2 == 0 ? milliseconds(30) : milliseconds(5);
    queue.add(start, budget, target, i, nullptr);
    added.emplace_back(i, budget);
  }
  for (std::uint64_t i = 0; i < 20; ++i) {
    const milliseconds budget(40 + static_cast<int>(i));  // 20 distinct budgets: some in the heap
    queue.add(start, budget, target, 100 + i, nullptr);
    added.emplace_back(100 + i, budget);
  }
  REQUIRE(queue.size() == 60);
  io.run_for(std::chrono::seconds(5));  // returns as soon as nothing is left to wait for
  REQUIRE(target->fired.size() == 60);
  REQUIRE(queue.size() == 0);
  std::set<std::uint64_t> seen;
  for (const auto& f : target->fired) {
    REQUIRE(seen.insert(f.tag).second);
    milliseconds budget{0};
    for (const auto& [tag, b] : added) {
      if (tag == f.tag) budget = b;
    }
    REQUIRE(f.at >= start + budget);
  }
  // Every 5 ms deadline comes before every 30 ms one.
  std::size_t lastShort = 0, firstLong = SIZE_MAX;
  for (std::size_t i = 0; i < target->fired.size(); ++i) {
    const auto tag = target->fired[i].tag;
    if (tag < 40 && tag % 2 == 1) lastShort = i;
    if (tag < 40 && tag % 2 == 0) firstLong = std::min(firstLong, i);
  }
  REQUIRE(lastShort < firstLong);
}

TEST_CASE("an earlier deadline added later re-arms the timer") {
  boost::asio::io_context io;
  DeadlineQueue queue(io);
  auto target = std::make_shared<Recorder>();
  const auto start = Clock::now();
  queue.add(start, milliseconds(2000), target, 1, nullptr);
  queue.add(start, milliseconds(10), target, 2, nullptr);
  // Handlers run one at a time (the cancelled wait for the long deadline is one of them).
  while (target->fired.empty() && Clock::now() < start + milliseconds(1500))
    io.run_one_for(milliseconds(100));
  REQUIRE(target->fired.size() == 1);
  CHECK(target->fired[0].tag == 2);
  // Well before the long one: the short deadline did not wait for the first timer.
  CHECK(target->fired[0].at < start + milliseconds(1500));
  queue.clear();
  REQUIRE(queue.size() == 0);
}

TEST_CASE("a target is kept alive until its deadline, then released") {
  boost::asio::io_context io;
  DeadlineQueue queue(io);
  std::weak_ptr<Recorder> weak;
  {
    auto target = std::make_shared<Recorder>();
    weak = target;
    queue.add(Clock::now(), milliseconds(1), target, 7, nullptr);
  }
  REQUIRE_FALSE(weak.expired());
  io.run_for(std::chrono::seconds(5));
  REQUIRE(weak.expired());
}

}  // namespace
}  // namespace keygate::proxy
