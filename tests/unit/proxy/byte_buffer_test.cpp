#include "proxy/byte_buffer.hpp"

#include <catch2/catch.hpp>
#include <cstring>
#include <string>

using keygate::proxy::ByteBuffer;

namespace {
void put(ByteBuffer& b, std::string_view s) {
  auto span = b.prepare(s.size());
  REQUIRE(span.size() >= s.size());
  std::memcpy(span.data(), s.data(), s.size());
  b.commit(s.size());
}
}  // namespace

TEST_CASE("ByteBuffer keeps bytes in order across prepare, commit and consume") {
  ByteBuffer b;
  CHECK(b.empty());
  put(b, "hello ");
  put(b, "world");
  CHECK(b.readable() == "hello world");
  b.consume(6);
  CHECK(b.readable() == "world");
  put(b, "!");
  CHECK(b.readable() == "world!");
  b.consume(6);
  CHECK(b.empty());
  CHECK(b.size() == 0);
}

TEST_CASE("ByteBuffer compacts instead of growing when the front has been consumed") {
  ByteBuffer b(4096);
  std::string chunk(3000, 'a');
  put(b, chunk);
  b.consume(2990);
  const auto cap = b.capacity();
  put(b, std::string(3000, 'b'));
  CHECK(b.capacity() == cap);
  CHECK(b.size() == 3010);
  CHECK(b.readable().substr(0, 10) == std::string(10, 'a'));
  CHECK(b.readable().substr(10) == std::string(3000, 'b'));
}

TEST_CASE("ByteBuffer grows to a checked total and releases it once empty") {
  ByteBuffer b;
  put(b, "$10485760\r\n");
  b.reserveTotal(10 * 1024 * 1024 + 13);
  CHECK(b.capacity() >= 10 * 1024 * 1024 + 13);
  CHECK(b.readable() == "$10485760\r\n");
  b.consume(b.size());
  b.shrinkIfEmpty(16 * 1024);
  CHECK(b.capacity() <= 16 * 1024);
}

TEST_CASE("ByteBuffer does not shrink while it still holds bytes") {
  ByteBuffer b;
  b.reserveTotal(1 << 20);
  put(b, "x");
  const auto cap = b.capacity();
  b.shrinkIfEmpty(1024);
  CHECK(b.capacity() == cap);
  CHECK(b.readable() == "x");
}
