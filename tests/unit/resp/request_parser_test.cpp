#include "proxy/resp/request_parser.hpp"

#include <catch2/catch.hpp>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "alloc_counter.hpp"
#include "proxy/resp/reply_writer.hpp"
#include "split_invariance.hpp"

using namespace std::string_literals;
using keygate::resp::Limits;
using keygate::resp::ParseResult;
using keygate::resp::ParseStatus;
using keygate::resp::Request;
using keygate::resp::RequestParser;

namespace {

using Args = std::vector<std::string>;

// One parse() outcome, copied out of the buffer so it can be compared after the buffer changed.
struct Outcome {
  ParseStatus status = ParseStatus::kIncomplete;
  std::size_t consumed = 0;
  Args args;
  std::string raw;
  bool isInline = false;
  std::string error;

  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  os << "{status=" << static_cast<int>(o.status) << " consumed=" << o.consumed
     << " inline=" << o.isInline << " args=[";
  for (const auto& a : o.args)
    os << '"' << a << "\" ";
  return os << "] error=\"" << o.error << "\"}";
}

// Everything a stream of bytes parsed into: each request in order (an error ends the list), and
// how many bytes were left unconsumed at the end.
struct StreamOutcome {
  std::vector<Outcome> requests;
  std::size_t leftover = 0;

  bool operator==(const StreamOutcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const StreamOutcome& s) {
  for (const auto& r : s.requests)
    os << r << '\n';
  return os << "leftover=" << s.leftover;
}

Outcome toOutcome(const ParseResult& r, const Request& req) {
  Outcome o;
  o.status = r.status;
  o.consumed = r.consumed;
  o.error = std::string(r.error);
  if (r.status == ParseStatus::kOk) {
    for (auto a : req.args)
      o.args.emplace_back(a);
    o.raw = std::string(req.raw);
    o.isInline = req.isInline;
  }
  return o;
}

// Feeds `stream` to one parser the way a connection would: bytes arrive in chunks ending at
// `cuts`, complete requests are dropped from the front of the buffer, and the buffer is
// reallocated on every read so the parser cannot rely on addresses staying the same.
StreamOutcome feed(std::string_view stream, std::vector<std::size_t> cuts,
                   const Limits& limits = {}) {
  RequestParser parser(limits);
  Request req;
  StreamOutcome result;
  std::string buf;
  std::size_t prev = 0;
  cuts.push_back(stream.size());
  for (std::size_t cut : cuts) {
    std::string grown;
    grown.reserve(buf.size() + (cut - prev) + 1);
    grown.append(buf);
    grown.append(stream.substr(prev, cut - prev));
    buf.swap(grown);
    prev = cut;
    for (;;) {
      const ParseResult r = parser.parse(buf, req);
      REQUIRE(r.consumed <= buf.size());
      if (r.status == ParseStatus::kIncomplete) {
        REQUIRE(r.consumed == 0);
        const std::size_t wanted = parser.bytesWanted();
        REQUIRE((wanted == 0 || wanted > buf.size()));
        break;
      }
      result.requests.push_back(toOutcome(r, req));
      if (r.status == ParseStatus::kError) {
        REQUIRE(r.consumed == 0);
        REQUIRE(!r.error.empty());
        return result;
      }
      REQUIRE(r.consumed > 0);
      if (!req.isInline) REQUIRE(req.raw == std::string_view(buf).substr(0, r.consumed));
      buf.erase(0, r.consumed);
    }
  }
  result.leftover = buf.size();
  return result;
}

StreamOutcome feedWhole(std::string_view stream, const Limits& limits = {}) {
  return feed(stream, {}, limits);
}

void checkSplitInvariance(std::string_view stream, const Limits& limits = {}) {
  keygate::resp::test::checkSplitInvariance(stream,
                                            [&](std::string_view s, std::vector<std::size_t> cuts) {
                                              return feed(s, std::move(cuts), limits);
                                            });
}

Outcome ok(Args args, std::string raw, std::size_t consumed) {
  Outcome o;
  o.status = ParseStatus::kOk;
  o.consumed = consumed;
  o.args = std::move(args);
  o.raw = std::move(raw);
  return o;
}

Outcome okMultibulk(const std::string& input, Args args) {
  return ok(std::move(args), input, input.size());
}

Outcome okInline(const std::string& input, Args args) {
  Outcome o = ok(std::move(args), "", input.size());
  o.isInline = true;
  return o;
}

Outcome error(const std::string& message) {
  Outcome o;
  o.status = ParseStatus::kError;
  o.error = message;
  return o;
}

std::string encode(const Args& args) {
  std::vector<std::string_view> views(args.begin(), args.end());
  std::string out;
  keygate::resp::appendCommand(out, views);
  return out;
}

struct Case {
  std::string input;
  Outcome expected;
};

std::vector<Case> validCorpus() {
  std::vector<Case> cases;
  auto multibulk = [&](Args args) {
    const std::string input = encode(args);
    cases.push_back({input, okMultibulk(input, std::move(args))});
  };
  auto inlineCmd = [&](const std::string& input, Args args) {
    cases.push_back({input, okInline(input, std::move(args))});
  };
  multibulk({"PING"});
  multibulk({"SET", "key", "value"});
  multibulk({"GET", ""});
  multibulk({"SET", "k", "a\r\nb"});
  multibulk({"SET", "bin", "\0\xff\r\n$*"s});
  multibulk({"SET", "big", std::string(3000, 'x')});
  multibulk({"MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6", "g", "7"});
  // Lengths around the one- and two-digit shortcuts of the one-pass path, and more arguments
  // than the 16 the argument vector starts with.
  multibulk({"SET", "k", std::string(9, 'a')});
  multibulk({"SET", "k", std::string(10, 'b')});
  multibulk({"SET", "k", std::string(99, 'c')});
  multibulk({"SET", "k", std::string(100, 'd')});
  multibulk({"DEL", "k1",  "k2",  "k3",  "k4",  "k5",  "k6",  "k7",  "k8",  "k9", "k10",
             "k11", "k12", "k13", "k14", "k15", "k16", "k17", "k18", "k19", "k20"});
  cases.push_back({"*0\r\n", okMultibulk("*0\r\n", {})});
  cases.push_back({"*-1\r\n", okMultibulk("*-1\r\n", {})});
  cases.push_back({"*-7\r\n", okMultibulk("*-7\r\n", {})});

  inlineCmd("PING\r\n", {"PING"});
  inlineCmd("GET key\n", {"GET", "key"});
  inlineCmd("  SET   a \t b  \r\n", {"SET", "a", "b"});
  inlineCmd("\r\n", {});
  inlineCmd("\n", {});
  inlineCmd("   \t \r\n", {});
  inlineCmd("SET \"hello world\" 'it is'\r\n", {"SET", "hello world", "it is"});
  inlineCmd("SET k \"\\x41\\x7a\\n\\r\\t\\b\\a\\\\\\\"\"\r\n", {"SET", "k", "Az\n\r\t\b\a\\\""});
  inlineCmd("SET k \"\\xZZ\\q\"\r\n", {"SET", "k", "xZZq"});
  inlineCmd("SET k 'a\\'b' 'c\\nd'\r\n", {"SET", "k", "a'b", "c\\nd"});
  inlineCmd("SET k \"\" ''\r\n", {"SET", "k", "", ""});
  inlineCmd("ab\"c d\" e\r\n", {"abc d", "e"});
  inlineCmd("SET \"a\"\t'b'\r\n", {"SET", "a", "b"});
  inlineCmd("GET a\0b c\r\n"s, {"GET", "a"});
  inlineCmd("\vGET\vx\r\n", {"GET\vx"});
  inlineCmd("GET a\r\r\n", {"GET", "a"});
  inlineCmd("SET k \xff\xfe\r\n", {"SET", "k", "\xff\xfe"});
  inlineCmd("$3\r\n", {"$3"});
  return cases;
}

std::vector<Case> errorCorpus() {
  const std::string mbulk = "Protocol error: invalid multibulk length";
  const std::string bulk = "Protocol error: invalid bulk length";
  const std::string quotes = "Protocol error: unbalanced quotes in request";
  return {
      {"*abc\r\n", error(mbulk)},
      {"*\r\n", error(mbulk)},
      {"*+1\r\n", error(mbulk)},
      {"*01\r\n", error(mbulk)},
      {"* 1\r\n", error(mbulk)},
      {"*-0\r\n", error(mbulk)},
      {"*1 \r\n", error(mbulk)},
      {"*1\rx", error(mbulk)},
      {"*2147483648\r\n", error(mbulk)},
      {"*99999999999999999999999\r\n", error(mbulk)},
      {"*1\r\nx", error("Protocol error: expected '$', got 'x'")},
      {"*1\r\n:1\r\n", error("Protocol error: expected '$', got ':'")},
      {"*1\r\n\r\n", error("Protocol error: expected '$', got ' '")},
      {"*2\r\n$1\r\na\r\n*1\r\n", error("Protocol error: expected '$', got '*'")},
      {"*1\r\n$-1\r\n", error(bulk)},
      {"*1\r\n$abc\r\n", error(bulk)},
      {"*1\r\n$+1\r\na\r\n", error(bulk)},
      {"*1\r\n$01\r\na\r\n", error(bulk)},
      {"*1\r\n$\r\n", error(bulk)},
      {"*1\r\n$9999999999\r\n", error(bulk)},
      {"*1\r\n$3\rxabc\r\n", error(bulk)},
      {"*1\r\n$3\r\nabcXY", error(bulk)},
      {"*1\r\n$3\r\nabc\rX", error(bulk)},
      {"*1\r\n$3\r\nabc\n\r", error(bulk)},
      // Lines the one-pass path leaves to the exact one: leading zeros, signs, many digits.
      {"*00\r\n", error(mbulk)},
      {"*0000000000000000001\r\n", error(mbulk)},
      {"*1234567890123456789\r\n", error(mbulk)},
      {"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n", error(bulk)},
      {"*2\r\n$3\r\nGET\r\n$-0\r\n", error(bulk)},
      {"*1\r\n$00\r\n\r\n", error(bulk)},
      {"*1\r\n$000000000000000003\r\nabc\r\n", error(bulk)},
      {"*1\r\n$1234567890123456789\r\n", error(bulk)},
      {"*1\r\n$99999999999999999999999\r\n", error(bulk)},
      {"*1\r\n$3\n\nabc\r\n", error(bulk)},
      {"*2\r\n$3\r\nGET\r\n$1\r\nk\r\r", error(bulk)},
      {"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n:1\r\n", error("Protocol error: expected '$', got ':'")},
      {"SET k \"abc\r\n", error(quotes)},
      {"SET k 'abc\r\n", error(quotes)},
      {"SET k \"a\"b\r\n", error(quotes)},
      {"SET k 'a'b\r\n", error(quotes)},
      {"SET k \"abc\\\"\r\n", error(quotes)},
      {"SET k \"abc\\\r\n", error(quotes)},
      {"SET k 'ab\\'\r\n", error(quotes)},
      {"\"unterminated\0\"\r\n"s, error(quotes)},
  };
}

}  // namespace

TEST_CASE("request parser: every valid request parses as expected", "[resp][request]") {
  for (const auto& c : validCorpus()) {
    INFO(c.input);
    const StreamOutcome whole = feedWhole(c.input);
    REQUIRE(whole.requests.size() == 1);
    CHECK(whole.requests[0] == c.expected);
    CHECK(whole.leftover == 0);
  }
}

TEST_CASE("request parser: every error is reported like Redis", "[resp][request]") {
  for (const auto& c : errorCorpus()) {
    INFO(c.input);
    const StreamOutcome whole = feedWhole(c.input);
    REQUIRE(whole.requests.size() == 1);
    CHECK(whole.requests[0] == c.expected);
  }
}

TEST_CASE("request parser: split at every byte gives the whole-input result", "[resp][request]") {
  std::string all;
  for (const auto& c : validCorpus()) {
    INFO(c.input);
    checkSplitInvariance(c.input);
    all += c.input;
  }
  for (const auto& c : errorCorpus()) {
    INFO(c.input);
    checkSplitInvariance(c.input);
  }
  // The whole corpus as one pipeline: requests of every kind back to back.
  const StreamOutcome whole = feedWhole(all);
  CHECK(whole.requests.size() == validCorpus().size());
  CHECK(whole.leftover == 0);
  checkSplitInvariance(all);
}

TEST_CASE("request parser: incomplete input consumes nothing", "[resp][request]") {
  RequestParser parser(Limits{});
  Request req;
  const std::string full = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
  for (std::size_t n = 0; n < full.size(); ++n) {
    const ParseResult r = parser.parse(std::string_view(full).substr(0, n), req);
    CHECK(r.status == ParseStatus::kIncomplete);
    CHECK(r.consumed == 0);
  }
  const ParseResult r = parser.parse(full, req);
  REQUIRE(r.status == ParseStatus::kOk);
  CHECK(r.consumed == full.size());
  CHECK(req.args == std::vector<std::string_view>{"GET", "k"});
  CHECK_FALSE(req.isInline);
}

TEST_CASE("request parser: inline arguments point into the input or the request's storage",
          "[resp][request]") {
  RequestParser parser(Limits{});
  Request req;
  const std::string input = "SET plain \"quo ted\" 'x'\r\n";
  const ParseResult r = parser.parse(input, req);
  REQUIRE(r.status == ParseStatus::kOk);
  REQUIRE(req.args.size() == 4);
  REQUIRE(req.isInline);
  CHECK(req.raw.empty());
  auto inside = [](std::string_view part, std::string_view whole) {
    return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
  };
  CHECK(inside(req.args[0], input));
  CHECK(inside(req.args[1], input));
  CHECK(inside(req.args[2], req.inlineStorage));
  CHECK(inside(req.args[3], req.inlineStorage));
  CHECK(req.args[2] == "quo ted");
  CHECK(req.args[3] == "x");
}

TEST_CASE("request parser: a reused request keeps its capacity", "[resp][request]") {
  RequestParser parser(Limits{});
  Request req;
  const std::string big = encode({"MSET", "a", "1", "b", "2", "c", "3", "d", "4"});
  REQUIRE(parser.parse(big, req).status == ParseStatus::kOk);
  const std::size_t capacity = req.args.capacity();
  REQUIRE(capacity >= 9);
  REQUIRE(parser.parse("*1\r\n$4\r\nPING\r\n", req).status == ParseStatus::kOk);
  CHECK(req.args.size() == 1);
  CHECK(req.args.capacity() == capacity);
}

TEST_CASE("request parser: over-long header and inline lines", "[resp][request]") {
  Limits limits;
  limits.maxInlineBytes = 8;

  SECTION("inline: up to the limit without a newline is still incomplete") {
    CHECK(feedWhole("12345678", limits).requests.empty());
    CHECK(feedWhole("12345678\n", limits).requests.at(0).args == Args{"12345678"});
    CHECK(feedWhole("1234567\r\n", limits).requests.at(0).args == Args{"1234567"});
    const Outcome tooBig = error("Protocol error: too big inline request");
    CHECK(feedWhole("123456789", limits).requests.at(0) == tooBig);
    CHECK(feedWhole("123456789\n", limits).requests.at(0) == tooBig);
    checkSplitInvariance("123456789\n", limits);
    checkSplitInvariance("12345678\n", limits);
  }
  SECTION("multibulk count line") {
    const Outcome tooBig = error("Protocol error: too big mbulk count string");
    CHECK(feedWhole("*0000000", limits).requests.empty());
    CHECK(feedWhole("*00000000", limits).requests.at(0) == tooBig);
    CHECK(feedWhole("*00000000\r\n", limits).requests.at(0) == tooBig);
    CHECK(feedWhole("*000000\r\n", limits).requests.at(0) ==
          error("Protocol error: invalid multibulk length"));
    checkSplitInvariance("*00000000\r\n", limits);
  }
  SECTION("bulk count line") {
    const Outcome tooBig = error("Protocol error: too big bulk count string");
    CHECK(feedWhole("*1\r\n$0000000", limits).requests.empty());
    CHECK(feedWhole("*1\r\n$00000000", limits).requests.at(0) == tooBig);
    checkSplitInvariance("*1\r\n$00000000\r\n", limits);
  }
  SECTION("Redis' default of 64 KiB") {
    const Limits defaults;
    CHECK(feedWhole(std::string(64 * 1024, 'a'), defaults).requests.empty());
    CHECK(feedWhole(std::string(64 * 1024 + 1, 'a'), defaults).requests.at(0) ==
          error("Protocol error: too big inline request"));
    CHECK(feedWhole("*" + std::string(64 * 1024 + 1, '1'), defaults).requests.at(0) ==
          error("Protocol error: too big mbulk count string"));
    CHECK(feedWhole("*1\r\n$" + std::string(64 * 1024 + 1, '1'), defaults).requests.at(0) ==
          error("Protocol error: too big bulk count string"));
  }
}

TEST_CASE("request parser: limits are checked before anything is allocated", "[resp][request]") {
  Limits limits;
  limits.maxArrayElements = 1024 * 1024;
  limits.maxBulkBytes = 512u * 1024 * 1024;
  RequestParser parser(limits);
  Request req;

  SECTION("array count over the limit fails at once") {
    keygate::resp::test::AllocationProbe probe;
    const ParseResult r = parser.parse("*2000000000\r\n", req);
    const std::size_t allocated = probe.total();
    CHECK(r.status == ParseStatus::kError);
    CHECK(r.error == "Protocol error: invalid multibulk length");
    CHECK(allocated == 0);
  }
  SECTION("array count just over the limit") {
    const ParseResult r = parser.parse("*1048577\r\n", req);
    CHECK(r.status == ParseStatus::kError);
    CHECK(r.error == "Protocol error: invalid multibulk length");
  }
  SECTION("an allowed but large count does not size the argument vector") {
    keygate::resp::test::AllocationProbe probe;
    const ParseResult r = parser.parse("*1048576\r\n$3\r\nSET\r\n", req);
    const std::size_t largest = probe.largest();
    CHECK(r.status == ParseStatus::kIncomplete);
    CHECK(largest < 4096);
  }
  SECTION("bulk length over the limit fails at once") {
    keygate::resp::test::AllocationProbe probe;
    const ParseResult r = parser.parse("*1\r\n$9999999999\r\n", req);
    const std::size_t largest = probe.largest();
    CHECK(r.status == ParseStatus::kError);
    CHECK(r.error == "Protocol error: invalid bulk length");
    CHECK(largest < 4096);
  }
  SECTION("an allowed but large bulk reserves nothing itself, and reports the bytes wanted") {
    keygate::resp::test::AllocationProbe probe;
    const std::string head = "*1\r\n$400000000\r\n";
    const ParseResult r = parser.parse(head, req);
    const std::size_t largest = probe.largest();
    CHECK(r.status == ParseStatus::kIncomplete);
    CHECK(parser.bytesWanted() == head.size() + 400000000 + 2);
    CHECK(largest < 4096);
  }
  SECTION("a small configured bulk limit") {
    Limits small;
    small.maxBulkBytes = 10;
    RequestParser p(small);
    CHECK(p.parse("*1\r\n$10\r\n", req).status == ParseStatus::kIncomplete);
    p.reset();
    CHECK(p.parse("*1\r\n$11\r\n", req).error == "Protocol error: invalid bulk length");
  }
}

TEST_CASE("request parser: 10 MB bulk arriving in 4 KB reads", "[resp][request]") {
  const std::size_t size = 10u * 1024 * 1024;
  std::string value(size, 'v');
  for (std::size_t i = 0; i < size; i += 997)
    value[i] = static_cast<char>('a' + i % 26);
  const std::string input = encode({"SET", "big", value});

  RequestParser parser(Limits{});
  Request req;
  std::size_t calls = 0;
  std::size_t have = 0;
  ParseResult r;
  for (;;) {
    have = std::min(input.size(), have + 4096);
    r = parser.parse(std::string_view(input).substr(0, have), req);
    ++calls;
    if (r.status != ParseStatus::kIncomplete) break;
    REQUIRE(have < input.size());
    // Once the header of the big bulk has been read, the caller knows the total to reserve.
    if (have >= 32) REQUIRE(parser.bytesWanted() == input.size());
  }
  REQUIRE(r.status == ParseStatus::kOk);
  CHECK(r.consumed == input.size());
  CHECK(calls == (input.size() + 4095) / 4096);
  REQUIRE(req.args.size() == 3);
  CHECK(req.args[2] == value);
  CHECK(req.args[2].data() == input.data() + input.size() - size - 2);  // a view, not a copy
}

TEST_CASE("request parser: pipeline of thousands of requests in random reads", "[resp][request]") {
  std::mt19937 rng(12345);
  std::string stream;
  std::vector<Outcome> expected;
  for (int i = 0; i < 5000; ++i) {
    const std::string key = "key:" + std::to_string(i);
    switch (rng() % 5) {
      case 0: {
        const std::string in = encode({"GET", key});
        stream += in;
        expected.push_back(okMultibulk(in, {"GET", key}));
        break;
      }
      case 1: {
        const std::string v(rng() % 300, static_cast<char>('a' + i % 26));
        const std::string in = encode({"SET", key, v, "EX", "10"});
        stream += in;
        expected.push_back(okMultibulk(in, {"SET", key, v, "EX", "10"}));
        break;
      }
      case 2: {
        const std::string in = "GET " + key + "\r\n";
        stream += in;
        expected.push_back(okInline(in, {"GET", key}));
        break;
      }
      case 3: {
        const std::string in = "SET " + key + " \"a b\\x21\"\r\n";
        stream += in;
        expected.push_back(okInline(in, {"SET", key, "a b!"}));
        break;
      }
      default: {
        stream += "*0\r\n";
        expected.push_back(okMultibulk("*0\r\n", {}));
        break;
      }
    }
  }
  const StreamOutcome whole = feedWhole(stream);
  CHECK(whole.leftover == 0);
  REQUIRE(whole.requests.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i)
    REQUIRE(whole.requests[i] == expected[i]);

  for (int round = 0; round < 5; ++round) {
    std::vector<std::size_t> cuts;
    for (std::size_t at = rng() % 64 + 1; at < stream.size();
         at += rng() % (round * 700 + 64) + 1) {
      cuts.push_back(at);
    }
    INFO("round " << round);
    REQUIRE(feed(stream, cuts) == whole);
  }
}

TEST_CASE("request parser: reset forgets partial progress", "[resp][request]") {
  RequestParser parser(Limits{});
  Request req;
  REQUIRE(parser.parse("*2\r\n$3\r\nGET\r\n$5\r\nab", req).status == ParseStatus::kIncomplete);
  REQUIRE(parser.bytesWanted() > 0);
  parser.reset();
  CHECK(parser.bytesWanted() == 0);
  const ParseResult r = parser.parse("PING\r\n", req);
  REQUIRE(r.status == ParseStatus::kOk);
  CHECK(req.args == std::vector<std::string_view>{"PING"});
  CHECK(req.isInline);
}

TEST_CASE("request parser: a shorter input than last time restarts instead of overreading",
          "[resp][request]") {
  RequestParser parser(Limits{});
  Request req;
  REQUIRE(parser.parse("*2\r\n$3\r\nGET\r\n$5\r\nab", req).status == ParseStatus::kIncomplete);
  const ParseResult r = parser.parse("*1\r\n", req);
  CHECK(r.status == ParseStatus::kIncomplete);
  const ParseResult r2 = parser.parse("*1\r\n$4\r\nPING\r\n", req);
  REQUIRE(r2.status == ParseStatus::kOk);
  CHECK(req.args == std::vector<std::string_view>{"PING"});
}

TEST_CASE("request parser: limits hold on the one-pass path", "[resp][request]") {
  // Every request below is whole in the buffer, so the one-pass path sees it first.
  Limits limits;
  limits.maxBulkBytes = 10;
  limits.maxArrayElements = 3;
  CHECK(feedWhole("*1\r\n$10\r\n0123456789\r\n", limits).requests.at(0).args == Args{"0123456789"});
  CHECK(feedWhole("*1\r\n$11\r\n01234567890\r\n", limits).requests.at(0) ==
        error("Protocol error: invalid bulk length"));
  CHECK(feedWhole("*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", limits).requests.at(0).args ==
        Args{"a", "b", "c"});
  CHECK(feedWhole("*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n", limits).requests.at(0) ==
        error("Protocol error: invalid multibulk length"));

  // Line limits shorter than the longest plain line: the exact path does all the work.
  Limits tiny;
  tiny.maxInlineBytes = 3;
  CHECK(feedWhole("*2\r\n$3\r\nGET\r\n$2\r\nab\r\n", tiny).requests.at(0).args ==
        Args{"GET", "ab"});
  CHECK(feedWhole("*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n", tiny).requests.at(0).args ==
        Args{"GET", "0123456789"});
  CHECK(feedWhole("*2\r\n$3\r\nGET\r\n$100\r\n" + std::string(100, 'x') + "\r\n", tiny)
            .requests.at(0) == error("Protocol error: too big bulk count string"));
  checkSplitInvariance("*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n", tiny);
}

TEST_CASE("request parser: a request cut anywhere resumes where the one-pass path stopped",
          "[resp][request]") {
  // The first read holds all of a request but its last k bytes; the one-pass path gives up on it
  // and the resumable path goes on. Both reads together must give the request.
  const std::string input = encode({"SET", "key:000000012345", std::string(64, 'v')});
  for (std::size_t k = 1; k < input.size(); ++k) {
    INFO("missing " << k);
    RequestParser parser(Limits{});
    Request req;
    const std::string_view whole(input);
    REQUIRE(parser.parse(whole.substr(0, input.size() - k), req).status ==
            ParseStatus::kIncomplete);
    const std::string moved(input);  // a reallocated buffer: views of the first read are stale
    const ParseResult r = parser.parse(moved, req);
    REQUIRE(r.status == ParseStatus::kOk);
    CHECK(r.consumed == input.size());
    CHECK(req.args ==
          std::vector<std::string_view>{"SET", "key:000000012345",
                                        std::string_view(moved).substr(moved.size() - 66, 64)});
    CHECK(req.raw.data() == moved.data());
  }
}

TEST_CASE("request parser: mutated requests give the same result however they are split",
          "[resp][request]") {
  // Whole, a request goes through the one-pass path; fed a byte at a time, through the
  // resumable one. One changed, dropped or added byte at a random place must not make them
  // disagree: same requests, same errors, same bytes left over.
  const std::vector<std::string> bases = {
      encode({"GET", "key:000000012345"}),
      encode({"SET", "k", "0123456789"}),
      encode({"MGET", "a", "bb", "ccc"}) + encode({"PING"}),
      "*1\r\n$0\r\n\r\n",
  };
  const std::string bytes = "\r\n0123456789-+$*:x \0"s;
  keygate::resp::test::forEachMutation(bases, bytes, 4242, 600,
                                       [](const std::string& s) { checkSplitInvariance(s); });
}
