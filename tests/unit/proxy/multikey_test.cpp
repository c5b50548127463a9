#include "proxy/multikey.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "proxy/slot_map.hpp"

using namespace keygate::proxy;

namespace {
// Test slots: the first letter of the key picks the slot, so tests control the grouping.
std::uint16_t firstLetterSlot(std::string_view key) {
  return key.empty() ? 0 : static_cast<std::uint16_t>(key[0]);
}

std::string cmd(std::vector<std::string_view> args) {
  std::string out;
  keygate::resp::appendCommand(out, args);
  return out;
}
}  // namespace

TEST_CASE("only the six splittable commands split") {
  CHECK(splitKindOf("mget") == MergeKind::kValues);
  CHECK(splitKindOf("mset") == MergeKind::kAllOk);
  for (auto name : {"del", "unlink", "exists", "touch"})
    CHECK(splitKindOf(name) == MergeKind::kSum);
  CHECK_FALSE(splitKindOf("msetnx"));  // all-or-nothing: cannot be split honestly
  CHECK_FALSE(splitKindOf("sunionstore"));
  CHECK_FALSE(splitKindOf("get"));
}

TEST_CASE("MGET splits by slot and merges values back in key order") {
  std::vector<std::string_view> argv{"MGET", "a1", "b1", "a2", "c1", "b2"};
  auto plan = splitBySlot(MergeKind::kValues, argv, firstLetterSlot);
  REQUIRE(plan.parts.size() == 3);
  CHECK(plan.keyCount == 5);
  CHECK(plan.parts[0].request == cmd({"MGET", "a1", "a2"}));
  CHECK(plan.parts[1].request == cmd({"MGET", "b1", "b2"}));
  CHECK(plan.parts[2].request == cmd({"MGET", "c1"}));
  CHECK(plan.parts[0].keyOrder == std::vector<std::uint32_t>{0, 2});
  CHECK(plan.parts[1].keyOrder == std::vector<std::uint32_t>{1, 4});

  ReplyMerger merger(plan);
  // Parts answer in any order; nils and values keep their place.
  CHECK_FALSE(merger.add(2, "*1\r\n$2\r\nC1\r\n"));
  CHECK_FALSE(merger.add(0, "*2\r\n$2\r\nA1\r\n$-1\r\n"));
  CHECK(merger.add(1, "*2\r\n$0\r\n\r\n$2\r\nB2\r\n"));
  CHECK(merger.result() == "*5\r\n$2\r\nA1\r\n$0\r\n\r\n$-1\r\n$2\r\nC1\r\n$2\r\nB2\r\n");
}

TEST_CASE("RESP3 nulls inside MGET parts are kept as sent") {
  std::vector<std::string_view> argv{"mget", "a", "b"};
  auto plan = splitBySlot(MergeKind::kValues, argv, firstLetterSlot);
  ReplyMerger merger(plan);
  merger.add(0, "*1\r\n_\r\n");
  REQUIRE(merger.add(1, "*1\r\n$1\r\nx\r\n"));
  CHECK(merger.result() == "*2\r\n_\r\n$1\r\nx\r\n");
}

TEST_CASE("MSET keeps each key with its value and answers OK when every part did") {
  std::vector<std::string_view> argv{"MSET", "a1", "v1", "b1", "v2", "a2", "v3"};
  auto plan = splitBySlot(MergeKind::kAllOk, argv, firstLetterSlot);
  REQUIRE(plan.parts.size() == 2);
  CHECK(plan.parts[0].request == cmd({"MSET", "a1", "v1", "a2", "v3"}));
  CHECK(plan.parts[1].request == cmd({"MSET", "b1", "v2"}));
  ReplyMerger ok(plan);
  ok.add(1, "+OK\r\n");
  REQUIRE(ok.add(0, "+OK\r\n"));
  CHECK(ok.result() == "+OK\r\n");
}

TEST_CASE("counts are summed; an error from any part is the reply") {
  std::vector<std::string_view> argv{"DEL", "a", "b", "c", "a"};
  auto plan = splitBySlot(MergeKind::kSum, argv, firstLetterSlot);
  REQUIRE(plan.parts.size() == 3);
  CHECK(plan.parts[0].request == cmd({"DEL", "a", "a"}));
  ReplyMerger sum(plan);
  sum.add(0, ":1\r\n");
  sum.add(1, ":0\r\n");
  REQUIRE(sum.add(2, ":1\r\n"));
  CHECK(sum.result() == ":2\r\n");

  ReplyMerger failing(plan);
  failing.add(2, "-MOVED 3 127.0.0.1:7002\r\n");
  failing.add(0, ":1\r\n");
  REQUIRE(failing.add(1, "-TRYAGAIN Multiple keys request during rehashing of slot\r\n"));
  CHECK(failing.result() == "-TRYAGAIN Multiple keys request during rehashing of slot\r\n");
}

TEST_CASE("a part that answers in the wrong shape is an error, not a wrong value") {
  std::vector<std::string_view> argv{"MGET", "a1", "a2", "b1"};
  auto plan = splitBySlot(MergeKind::kValues, argv, firstLetterSlot);
  ReplyMerger merger(plan);
  merger.add(0, "*1\r\n$1\r\nx\r\n");  // two keys asked, one value
  REQUIRE(merger.add(1, "*1\r\n$1\r\ny\r\n"));
  CHECK(merger.result().rfind("-ERR keygate:", 0) == 0);

  std::vector<std::string_view> del{"EXISTS", "a", "b"};
  auto sumPlan = splitBySlot(MergeKind::kSum, del, firstLetterSlot);
  ReplyMerger sum(sumPlan);
  sum.add(0, "+OK\r\n");
  REQUIRE(sum.add(1, ":1\r\n"));
  CHECK(sum.result().rfind("-ERR keygate:", 0) == 0);
}

TEST_CASE("real cluster slots group hash-tagged keys together") {
  std::vector<std::string_view> argv{"MGET", "{u1}.a", "{u1}.b", "{u2}.a"};
  auto plan = splitBySlot(MergeKind::kValues, argv, keyHashSlot);
  REQUIRE(plan.parts.size() == 2);
  CHECK(plan.parts[0].slot == keyHashSlot("u1"));
  CHECK(plan.parts[0].keyOrder.size() == 2);
}

TEST_CASE("fan-out merges: first reply, AND of arrays, concatenation, all OK") {
  SECTION("kFirst answers the first part's reply once every part succeeded") {
    ReplyMerger m(MergeKind::kFirst, 3);
    CHECK_FALSE(m.add(1, "$3\r\nabc\r\n"));
    CHECK_FALSE(m.add(0, "$3\r\nabc\r\n"));
    CHECK(m.add(2, "$3\r\nabc\r\n"));
    CHECK(m.result() == "$3\r\nabc\r\n");
  }
  SECTION("kFirst passes on an error from any part") {
    ReplyMerger m(MergeKind::kFirst, 2);
    m.add(0, "$3\r\nabc\r\n");
    CHECK(m.add(1, "-ERR Library 'x' already exists\r\n"));
    CHECK(m.result() == "-ERR Library 'x' already exists\r\n");
  }
  SECTION("kAndArray says 1 only where every node says 1") {
    ReplyMerger m(MergeKind::kAndArray, 3);
    m.add(0, "*3\r\n:1\r\n:1\r\n:0\r\n");
    m.add(1, "*3\r\n:1\r\n:0\r\n:0\r\n");
    CHECK(m.add(2, "*3\r\n:1\r\n:1\r\n:1\r\n"));
    CHECK(m.result() == "*3\r\n:1\r\n:0\r\n:0\r\n");
  }
  SECTION("kAndArray refuses arrays of different lengths") {
    ReplyMerger m(MergeKind::kAndArray, 2);
    m.add(0, "*2\r\n:1\r\n:1\r\n");
    m.add(1, "*1\r\n:1\r\n");
    CHECK(m.result().starts_with("-ERR keygate"));
  }
  SECTION("kConcat joins arrays in part order, RESP3 sets too") {
    ReplyMerger m(MergeKind::kConcat, 3);
    m.add(2, "*1\r\n$1\r\nc\r\n");
    m.add(0, "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
    CHECK(m.add(1, "*0\r\n"));
    const auto r = m.result();
    CHECK(r.starts_with("*3\r\n"));
    CHECK(r.size() == std::string("*3\r\n$1\r\nc\r\n$1\r\na\r\n$1\r\nb\r\n").size());
  }
  SECTION("kAllOk and kSum for fan-outs") {
    ReplyMerger ok(MergeKind::kAllOk, 2);
    ok.add(0, "+OK\r\n");
    CHECK(ok.add(1, "+OK\r\n"));
    CHECK(ok.result() == "+OK\r\n");
    ReplyMerger sum(MergeKind::kSum, 3);
    sum.add(0, ":3\r\n");
    sum.add(1, ":0\r\n");
    CHECK(sum.add(2, ":39\r\n"));
    CHECK(sum.result() == ":42\r\n");
  }
}

TEST_CASE("kNonNil answers the first part that found something") {
  ReplyMerger m(MergeKind::kNonNil, 3);
  m.add(0, "$-1\r\n");
  m.add(2, "$2\r\nk9\r\n");
  CHECK(m.add(1, "$2\r\nk1\r\n"));
  CHECK(m.result() == "$2\r\nk1\r\n");
  ReplyMerger empty(MergeKind::kNonNil, 2);
  empty.add(0, "_\r\n");
  CHECK(empty.add(1, "_\r\n"));
  CHECK(empty.result() == "_\r\n");
}
