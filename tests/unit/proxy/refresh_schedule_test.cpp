#include "proxy/refresh_schedule.hpp"

#include <catch2/catch.hpp>

using keygate::proxy::RefreshSchedule;
using namespace std::chrono_literals;

namespace {
const RefreshSchedule::TimePoint t0 = RefreshSchedule::TimePoint{} + 1000s;
RefreshSchedule schedule() {
  return RefreshSchedule({10s, 1s, 8s});
}
}  // namespace

TEST_CASE("the first fetch is due at once, then every interval") {
  auto s = schedule();
  CHECK(s.due(t0));
  s.started(t0);
  CHECK_FALSE(s.due(t0));  // one fetch at a time
  s.finished(t0 + 50ms, true);
  CHECK(s.next() == t0 + 50ms + 10s);
  CHECK_FALSE(s.due(t0 + 5s));
  CHECK(s.due(t0 + 50ms + 10s));
}

TEST_CASE("an early request waits for the minimum gap since the last start") {
  auto s = schedule();
  s.started(t0);
  s.finished(t0 + 10ms, true);
  s.requestEarly(t0 + 200ms);  // a MOVED right after a fetch
  CHECK(s.next() == t0 + 1s);
  s.requestEarly(t0 + 300ms);  // a storm of MOVEDs changes nothing
  CHECK(s.next() == t0 + 1s);
  s.started(t0 + 1s);
  s.finished(t0 + 1s + 10ms, true);
  s.requestEarly(t0 + 5s);  // long after: at once
  CHECK(s.next() == t0 + 5s);
}

TEST_CASE("an early request during a fetch schedules one more right after it") {
  auto s = schedule();
  s.started(t0);
  s.requestEarly(t0 + 100ms);
  s.finished(t0 + 300ms, true);
  CHECK(s.next() == t0 + 1s);  // minGap from the start of the fetch that may have been stale
  s.started(t0 + 1s);
  s.finished(t0 + 1s + 100ms, true);
  CHECK(s.next() == t0 + 1s + 100ms + 10s);  // back to the interval
}

TEST_CASE("failures back off up to the maximum and reset on success") {
  auto s = schedule();
  auto now = t0;
  const std::chrono::milliseconds expected[] = {1s, 2s, 4s, 8s, 8s};
  for (auto wait : expected) {
    s.started(now);
    s.finished(now, false);
    CHECK(s.next() == now + wait);
    now = s.next();
  }
  s.started(now);
  s.finished(now, true);
  CHECK(s.next() == now + 10s);
  s.started(s.next());
  s.finished(s.next(), false);
  CHECK(s.next() - (now + 10s) == 1s);  // the backoff starts over
}

TEST_CASE("an early request does not defer a fetch that is already due sooner") {
  auto s = schedule();
  s.started(t0);
  s.finished(t0, false);  // next at t0 + 1s
  s.requestEarly(t0 + 500ms);
  CHECK(s.next() == t0 + 1s);
}
