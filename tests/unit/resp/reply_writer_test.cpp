#include "proxy/resp/reply_writer.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace std::string_literals;
using keygate::resp::Protocol;
namespace resp = keygate::resp;

namespace {

constexpr Protocol kR2 = Protocol::kResp2;
constexpr Protocol kR3 = Protocol::kResp3;

template <typename Fn>
std::string written(Fn fn) {
  std::string out = "pre";  // appenders append: what was there stays
  fn(out);
  REQUIRE(out.substr(0, 3) == "pre");
  return out.substr(3);
}

}  // namespace

TEST_CASE("reply writer: protocol-independent types", "[resp][writer]") {
  CHECK(written([](auto& o) { resp::appendSimple(o, "OK"); }) == "+OK\r\n");
  CHECK(written([](auto& o) { resp::appendSimple(o, ""); }) == "+\r\n");
  CHECK(written([](auto& o) { resp::appendError(o, "ERR bad"); }) == "-ERR bad\r\n");
  CHECK(written([](auto& o) { resp::appendError(o, "ERR a\r\nb\nc\r"); }) == "-ERR a  b c \r\n");
  CHECK(written([](auto& o) { resp::appendInteger(o, 0); }) == ":0\r\n");
  CHECK(written([](auto& o) { resp::appendInteger(o, -17); }) == ":-17\r\n");
  CHECK(written([](auto& o) { resp::appendInteger(o, INT64_MIN); }) == ":-9223372036854775808\r\n");
  CHECK(written([](auto& o) { resp::appendInteger(o, INT64_MAX); }) == ":9223372036854775807\r\n");
  CHECK(written([](auto& o) { resp::appendBulk(o, "hello"); }) == "$5\r\nhello\r\n");
  CHECK(written([](auto& o) { resp::appendBulk(o, ""); }) == "$0\r\n\r\n");
  CHECK(written([](auto& o) { resp::appendBulk(o, "a\r\n\0b"s); }) == "$5\r\na\r\n\0b\r\n"s);
  CHECK(written([](auto& o) { resp::appendArrayHeader(o, 0); }) == "*0\r\n");
  CHECK(written([](auto& o) { resp::appendArrayHeader(o, 12345); }) == "*12345\r\n");
}

TEST_CASE("reply writer: RESP2 and RESP3 variants", "[resp][writer]") {
  CHECK(written([](auto& o) { resp::appendNull(o, kR2); }) == "$-1\r\n");
  CHECK(written([](auto& o) { resp::appendNull(o, kR3); }) == "_\r\n");
  CHECK(written([](auto& o) { resp::appendNullArray(o, kR2); }) == "*-1\r\n");
  CHECK(written([](auto& o) { resp::appendNullArray(o, kR3); }) == "_\r\n");
  CHECK(written([](auto& o) { resp::appendMapHeader(o, 3, kR2); }) == "*6\r\n");
  CHECK(written([](auto& o) { resp::appendMapHeader(o, 3, kR3); }) == "%3\r\n");
  CHECK(written([](auto& o) { resp::appendSetHeader(o, 2, kR2); }) == "*2\r\n");
  CHECK(written([](auto& o) { resp::appendSetHeader(o, 2, kR3); }) == "~2\r\n");
  CHECK(written([](auto& o) { resp::appendPushHeader(o, 3, kR2); }) == "*3\r\n");
  CHECK(written([](auto& o) { resp::appendPushHeader(o, 3, kR3); }) == ">3\r\n");
  CHECK(written([](auto& o) { resp::appendBool(o, true, kR2); }) == ":1\r\n");
  CHECK(written([](auto& o) { resp::appendBool(o, false, kR2); }) == ":0\r\n");
  CHECK(written([](auto& o) { resp::appendBool(o, true, kR3); }) == "#t\r\n");
  CHECK(written([](auto& o) { resp::appendBool(o, false, kR3); }) == "#f\r\n");
  CHECK(written([](auto& o) { resp::appendVerbatim(o, "txt", "Some string", kR3); }) ==
        "=15\r\ntxt:Some string\r\n");
  CHECK(written([](auto& o) { resp::appendVerbatim(o, "mkd", "", kR3); }) == "=4\r\nmkd:\r\n");
  CHECK(written([](auto& o) { resp::appendVerbatim(o, "markdown", "x", kR3); }) ==
        "=5\r\ntxt:x\r\n");
  CHECK(written([](auto& o) { resp::appendVerbatim(o, "txt", "Some string", kR2); }) ==
        "$11\r\nSome string\r\n");
}

TEST_CASE("reply writer: doubles print like Redis", "[resp][writer]") {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(written([&](auto& o) { resp::appendDouble(o, inf, kR3); }) == ",inf\r\n");
  CHECK(written([&](auto& o) { resp::appendDouble(o, -inf, kR3); }) == ",-inf\r\n");
  CHECK(written([&](auto& o) { resp::appendDouble(o, nan, kR3); }) == ",nan\r\n");
  CHECK(written([&](auto& o) { resp::appendDouble(o, -nan, kR3); }) == ",nan\r\n");
  CHECK(written([](auto& o) { resp::appendDouble(o, 1.5, kR3); }) == ",1.5\r\n");
  CHECK(written([](auto& o) { resp::appendDouble(o, 0.0, kR3); }) == ",0\r\n");
  CHECK(written([](auto& o) { resp::appendDouble(o, -0.0, kR3); }) == ",-0\r\n");
  CHECK(written([](auto& o) { resp::appendDouble(o, 10.0, kR3); }) == ",10\r\n");
  CHECK(written([](auto& o) { resp::appendDouble(o, 0.1, kR3); }) == ",0.10000000000000001\r\n");
  CHECK(written([](auto& o) { resp::appendDouble(o, 3.14, kR3); }) == ",3.1400000000000001\r\n");
  CHECK(written([](auto& o) { resp::appendDouble(o, 1e300, kR3); }) ==
        ",1.0000000000000001e+300\r\n");
  CHECK(written([](auto& o) { resp::appendDouble(o, 1e-5, kR3); }) ==
        ",1.0000000000000001e-05\r\n");
  CHECK(written([](auto& o) { resp::appendDouble(o, 123456789.0, kR3); }) == ",123456789\r\n");

  CHECK(written([&](auto& o) { resp::appendDouble(o, inf, kR2); }) == "$3\r\ninf\r\n");
  CHECK(written([&](auto& o) { resp::appendDouble(o, -inf, kR2); }) == "$4\r\n-inf\r\n");
  CHECK(written([&](auto& o) { resp::appendDouble(o, nan, kR2); }) == "$3\r\nnan\r\n");
  CHECK(written([](auto& o) { resp::appendDouble(o, 0.1, kR2); }) ==
        "$19\r\n0.10000000000000001\r\n");

  // The same text as printf's %.17g, which is what Redis uses.
  for (double v :
       {1.0, -2.5, 1e21, 1e-7, 6.02214076e23, 2.0 / 3.0, -1e-320, 1.7976931348623157e308}) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    INFO(buf);
    CHECK(written([&](auto& o) { resp::appendDouble(o, v, kR3); }) == ","s + buf + "\r\n");
  }
}

TEST_CASE("reply writer: commands", "[resp][writer]") {
  CHECK(written([](auto& o) { resp::appendCommand(o, {"PING"}); }) == "*1\r\n$4\r\nPING\r\n");
  CHECK(written([](auto& o) {
          resp::appendCommand(o, {"SET", "k", ""});
        }) == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
  const std::vector<std::string_view> args = {"HELLO", "3"};
  CHECK(written([&](auto& o) { resp::appendCommand(o, args); }) ==
        "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
  CHECK(written([](auto& o) { resp::appendCommand(o, std::span<const std::string_view>{}); }) ==
        "*0\r\n");
}
