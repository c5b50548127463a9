#pragma once

// Redis Cluster key slots and the slot map.
//
// keyHashSlot() is CRC16 (XMODEM) of the key, or of its hash tag (the first `{...}` with at
// least one byte inside), modulo 16384, as the Cluster spec defines it. A SlotMap is an
// immutable snapshot of which node serves each slot, built from a CLUSTER SLOTS reply; the
// topology code publishes new snapshots and requests capture one.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keygate::proxy {

inline constexpr std::uint16_t kClusterSlots = 16384;

std::uint16_t crc16(std::string_view data);
std::uint16_t keyHashSlot(std::string_view key);

struct ClusterNode {
  std::string host;  // IP, or a hostname when the cluster announces hostnames
  std::uint16_t port = 0;
  std::string id;  // node id, empty when the reply does not carry it
  std::string address() const { return host + ":" + std::to_string(port); }
  friend bool operator==(const ClusterNode& a, const ClusterNode& b) {
    return a.host == b.host && a.port == b.port;
  }
};

// A cluster redirect error: `-MOVED <slot> <host>:<port>` or `-ASK <slot> <host>:<port>`.
struct Redirect {
  enum class Kind : std::uint8_t { kMoved, kAsk };
  Kind kind = Kind::kMoved;
  std::uint16_t slot = 0;
  ClusterNode node;  // host empty when Redis did not know it (`:port`): use the node asked
};

// Parses a reply frame; nullopt unless it is a well-formed MOVED or ASK error.
std::optional<Redirect> parseRedirect(std::string_view frame);

class SlotMap {
 public:
  static constexpr std::uint16_t kNoNode = 0xffff;

  // Parses a complete CLUSTER SLOTS reply frame (RESP2 or RESP3). `seedHost` replaces an empty
  // host, which Redis sends for the node that answered when it does not know its own address.
  static std::optional<SlotMap> fromClusterSlots(std::string_view frame, std::string_view seedHost,
                                                 std::string* error);

  // Index into masters() of the node serving `slot`, or kNoNode if no node serves it.
  std::uint16_t masterIndex(std::uint16_t slot) const { return master_[slot]; }
  const ClusterNode* masterFor(std::uint16_t slot) const {
    const auto i = master_[slot];
    return i == kNoNode ? nullptr : &masters_[i];
  }
  const std::vector<ClusterNode>& replicasOf(std::uint16_t masterIdx) const {
    return replicas_[masterIdx];
  }
  const std::vector<ClusterNode>& masters() const { return masters_; }
  // Slots no node serves (a cluster that is not fully covered still routes the rest).
  std::size_t uncoveredSlots() const;

  // True when both maps send every slot to the same master address (replicas may differ).
  bool sameRouting(const SlotMap& other) const;
  // Master indexes ordered by the lowest slot each serves (masters serving no slot last). A
  // failover keeps a shard's slots, so this order is stable across failovers.
  std::vector<std::uint16_t> mastersBySlot() const;

  // Returns a copy in which `slot` is served by `node` (what a MOVED reply says), adding the
  // node as a master if it is new.
  SlotMap withSlotMovedTo(std::uint16_t slot, const ClusterNode& node) const;

 private:
  std::uint16_t internMaster(const ClusterNode& node);

  std::array<std::uint16_t, kClusterSlots> master_{};
  std::vector<ClusterNode> masters_;
  std::vector<std::vector<ClusterNode>> replicas_;
};

}  // namespace keygate::proxy
