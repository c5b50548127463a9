#include "proxy/cluster_routing.hpp"

#include <utility>

#include "proxy/slot_map.hpp"

namespace keygate::proxy {

namespace {

struct FanOut {
  std::string_view name;
  ClusterRoute route;
  MergeKind merge;
};

// Keyless commands that are not sent to one master. Names as in the command table
// (subcommands "container|sub").
constexpr FanOut kFanOut[] = {
    {"script|load", ClusterRoute::kAllMasters, MergeKind::kFirst},
    {"script|exists", ClusterRoute::kAllMasters, MergeKind::kAndArray},
    {"script|flush", ClusterRoute::kAllMasters, MergeKind::kAllOk},
    {"function|load", ClusterRoute::kAllMasters, MergeKind::kFirst},
    {"function|delete", ClusterRoute::kAllMasters, MergeKind::kAllOk},
    {"function|flush", ClusterRoute::kAllMasters, MergeKind::kAllOk},
    {"function|restore", ClusterRoute::kAllMasters, MergeKind::kAllOk},
    {"flushall", ClusterRoute::kAllMasters, MergeKind::kAllOk},
    {"flushdb", ClusterRoute::kAllMasters, MergeKind::kAllOk},
    {"dbsize", ClusterRoute::kAllMasters, MergeKind::kSum},
    {"keys", ClusterRoute::kAllMasters, MergeKind::kConcat},
    {"scan", ClusterRoute::kScan, MergeKind::kSum},
    {"randomkey", ClusterRoute::kRandom, MergeKind::kNonNil},
};

}  // namespace

bool commonSlot(const commands::CommandInfo& info, std::span<const std::string_view> argv,
                std::vector<commands::KeyRef>& keys, std::uint16_t* slot, bool* hasKeys) {
  keys.clear();
  // Shard channels (SPUBLISH, SSUBSCRIBE) are routed like keys; a bad numkeys leaves the keys
  // found so far, and Redis answers the error wherever the command lands.
  commands::extractKeys(info, argv, keys, commands::kIncludeNotKeys);
  *hasKeys = !keys.empty();
  if (keys.empty()) return true;
  const std::uint16_t first = keyHashSlot(argv[keys.front().argIndex]);
  for (std::size_t i = 1; i < keys.size(); ++i) {
    if (keyHashSlot(argv[keys[i].argIndex]) != first) return false;
  }
  *slot = first;
  return true;
}

ClusterRouting routeInCluster(const commands::CommandInfo& info,
                              std::span<const std::string_view> argv,
                              std::vector<commands::KeyRef>& keys) {
  ClusterRouting r;
  bool hasKeys = false;
  if (commonSlot(info, argv, keys, &r.slot, &hasKeys)) {
    if (hasKeys) {
      r.route = ClusterRoute::kSlot;
      return r;
    }
    for (const auto& f : kFanOut) {
      if (f.name == info.name) {
        r.route = f.route;
        r.merge = f.merge;
        return r;
      }
    }
    r.route = ClusterRoute::kKeyless;
    return r;
  }
  if (auto kind = splitKindOf(info.name)) {
    r.route = ClusterRoute::kSplit;
    r.merge = *kind;
    return r;
  }
  r.route = ClusterRoute::kCrossSlot;
  return r;
}

}  // namespace keygate::proxy
