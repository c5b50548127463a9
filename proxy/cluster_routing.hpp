#pragma once

// Where a command goes in cluster mode (docs/cluster.md has the table). Pure: the
// session asks, then sends; tests call it with argv alone.
//
//   kSlot        every key in one slot: that slot's master
//   kSplit       MGET / MSET / DEL / UNLINK / EXISTS / TOUCH across slots: one part per slot
//   kCrossSlot   any other command whose keys span slots: refused with Redis' CROSSSLOT error
//   kAllMasters  SCRIPT LOAD|EXISTS|FLUSH, FUNCTION LOAD|DELETE|FLUSH|RESTORE, FLUSHALL, FLUSHDB,
//                DBSIZE, KEYS: every master, replies merged
//   kScan        SCAN: one master at a time, the cursor says which
//   kRandom      RANDOMKEY: every master, starting at a random one; the first key found
//   kKeyless     anything else without keys: one master, the same for a client's whole session

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "proxy/commands/command_table.hpp"
#include "proxy/multikey.hpp"

namespace keygate::proxy {

enum class ClusterRoute : std::uint8_t {
  kSlot,
  kSplit,
  kCrossSlot,
  kAllMasters,
  kScan,
  kRandom,
  kKeyless,
};

struct ClusterRouting {
  ClusterRoute route = ClusterRoute::kKeyless;
  std::uint16_t slot = 0;             // kSlot
  MergeKind merge = MergeKind::kSum;  // kSplit, kAllMasters
};

// `info` is the resolved row (subcommand rows for containers); `keys` is scratch space.
ClusterRouting routeInCluster(const commands::CommandInfo& info,
                              std::span<const std::string_view> argv,
                              std::vector<commands::KeyRef>& keys);

// The slot all keys of argv share: true and `slot` set, or false when they span slots. No keys:
// true with `*hasKeys` false.
bool commonSlot(const commands::CommandInfo& info, std::span<const std::string_view> argv,
                std::vector<commands::KeyRef>& keys, std::uint16_t* slot, bool* hasKeys);

// SCAN cursors through keygate: the top byte is the master's position in scan order, the rest
// that master's own cursor.
inline constexpr unsigned kScanNodeShift = 56;
inline constexpr std::uint64_t kScanCursorMask = (std::uint64_t{1} << kScanNodeShift) - 1;

}  // namespace keygate::proxy
