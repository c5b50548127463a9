#include "proxy/stream_log.hpp"

#include <catch2/catch.hpp>
#include <string>

using keygate::proxy::StreamLog;

TEST_CASE("stream log entries keep their offsets when the front is dropped") {
  StreamLog log;
  CHECK(log.empty());
  CHECK(log.end() == 0);
  const std::uint64_t a = log.append("aaaa");
  const std::uint64_t b = log.append("bb");
  const std::uint64_t c = log.append("cccccc");
  CHECK(a == 0);
  CHECK(b == 4);
  CHECK(c == 6);
  CHECK(log.end() == 12);
  CHECK(log.view(b, 2) == "bb");

  CHECK(log.bytesBefore(c) == 6);
  log.dropBefore(c);
  CHECK(log.size() == 6);
  CHECK(log.bytesBefore(c) == 0);
  CHECK(log.view(c, 6) == "cccccc");  // the same offset after the drop
  CHECK(log.append("d") == 12);
  CHECK(log.view(12, 1) == "d");
}

TEST_CASE("stream log clear and release go on from the same offset") {
  StreamLog log;
  log.append(std::string(100, 'x'));
  log.clear(16);
  CHECK(log.empty());
  CHECK(log.end() == 100);
  CHECK(log.append("y") == 100);
  CHECK(log.view(100, 1) == "y");
  log.release();
  CHECK(log.empty());
  CHECK(log.append("z") == 101);
  CHECK(log.view(101, 1) == "z");
}
