#include "proxy/cluster_routing.hpp"

#include <catch2/catch.hpp>
#include <string_view>
#include <vector>

#include "proxy/slot_map.hpp"

using namespace keygate::proxy;
using keygate::commands::CommandTable;

namespace {

ClusterRouting route(std::vector<std::string_view> argv) {
  const auto& table = CommandTable::redis70();
  const auto* info = table.find(argv[0]);
  REQUIRE(info != nullptr);
  if (info->isContainer() && argv.size() >= 2) {
    bool unknown = false;
    if (const auto* sub = table.resolve(argv, &unknown)) info = sub;
  }
  std::vector<keygate::commands::KeyRef> keys;
  return routeInCluster(*info, argv, keys);
}

}  // namespace

TEST_CASE("keyed commands route by the slot of their keys, hash tags included") {
  auto r = route({"GET", "user:1"});
  CHECK(r.route == ClusterRoute::kSlot);
  CHECK(r.slot == keyHashSlot("user:1"));
  r = route({"RENAME", "{u1}a", "{u1}b"});
  CHECK(r.route == ClusterRoute::kSlot);
  CHECK(r.slot == keyHashSlot("u1"));
  r = route({"EVAL", "return 1", "2", "{x}1", "{x}2", "arg"});
  CHECK(r.route == ClusterRoute::kSlot);
  CHECK(r.slot == keyHashSlot("x"));
  // Shard channels route like keys.
  r = route({"SPUBLISH", "orders", "hello"});
  CHECK(r.route == ClusterRoute::kSlot);
  CHECK(r.slot == keyHashSlot("orders"));
}

TEST_CASE("keys in several slots: split the six splittable commands, refuse the rest") {
  // "a" and "b" hash to different slots.
  REQUIRE(keyHashSlot("a") != keyHashSlot("b"));
  for (auto name : {"MGET", "DEL", "UNLINK", "EXISTS", "TOUCH"}) {
    CHECK(route({name, "a", "b"}).route == ClusterRoute::kSplit);
  }
  auto r = route({"MSET", "a", "1", "b", "2"});
  CHECK(r.route == ClusterRoute::kSplit);
  CHECK(r.merge == MergeKind::kAllOk);
  CHECK(route({"MGET", "a", "b"}).merge == MergeKind::kValues);
  CHECK(route({"MSETNX", "a", "1", "b", "2"}).route == ClusterRoute::kCrossSlot);
  CHECK(route({"SUNION", "a", "b"}).route == ClusterRoute::kCrossSlot);
  CHECK(route({"RENAME", "a", "b"}).route == ClusterRoute::kCrossSlot);
  CHECK(route({"BLPOP", "a", "b", "0"}).route == ClusterRoute::kCrossSlot);
  CHECK(route({"EVAL", "return 1", "2", "a", "b"}).route == ClusterRoute::kCrossSlot);
  // All in one slot: no split needed.
  CHECK(route({"MGET", "{t}a", "{t}b"}).route == ClusterRoute::kSlot);
}

TEST_CASE("keyless commands: fan-outs, SCAN, RANDOMKEY, and one master for the rest") {
  auto r = route({"SCRIPT", "LOAD", "return 1"});
  CHECK(r.route == ClusterRoute::kAllMasters);
  CHECK(r.merge == MergeKind::kFirst);
  CHECK(route({"SCRIPT", "EXISTS", "abc"}).merge == MergeKind::kAndArray);
  CHECK(route({"SCRIPT", "FLUSH"}).merge == MergeKind::kAllOk);
  CHECK(route({"FUNCTION", "LOAD", "#!lua name=x\n"}).merge == MergeKind::kFirst);
  CHECK(route({"FUNCTION", "DELETE", "x"}).route == ClusterRoute::kAllMasters);
  CHECK(route({"FUNCTION", "FLUSH"}).route == ClusterRoute::kAllMasters);
  CHECK(route({"FLUSHALL"}).merge == MergeKind::kAllOk);
  CHECK(route({"FLUSHDB", "ASYNC"}).route == ClusterRoute::kAllMasters);
  CHECK(route({"DBSIZE"}).merge == MergeKind::kSum);
  CHECK(route({"KEYS", "*"}).merge == MergeKind::kConcat);
  CHECK(route({"SCAN", "0"}).route == ClusterRoute::kScan);
  CHECK(route({"RANDOMKEY"}).route == ClusterRoute::kRandom);
  CHECK(route({"RANDOMKEY"}).merge == MergeKind::kNonNil);
  for (auto argv : std::vector<std::vector<std::string_view>>{
           {"PUBLISH", "ch", "m"}, {"TIME"}, {"EVAL", "return 1", "0"}, {"FUNCTION", "LIST"}}) {
    INFO(argv[0]);
    CHECK(route(argv).route == ClusterRoute::kKeyless);
  }
}

TEST_CASE("SCAN cursor layout leaves 56 bits to the node's own cursor") {
  CHECK(kScanCursorMask == 0x00ffffffffffffffULL);
  CHECK((std::uint64_t{2} << kScanNodeShift) >> kScanNodeShift == 2);
}
