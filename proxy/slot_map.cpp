#include "proxy/slot_map.hpp"

#include <algorithm>

#include "proxy/resp/reply_reader.hpp"

namespace keygate::proxy {

namespace {

// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection, table driven,
// eight bytes per step ("slicing by 8"). The CRC is linear, so the CRC after eight bytes is the
// XOR of each byte's contribution: kCrc[k][b] is the CRC of byte b followed by k zero bytes, and
// the current CRC's two bytes fold into the first two. One byte per step, each step waiting on
// the last, was 6% of keygate's time at cluster GET pipeline 16 (keys of ~16 bytes).
using CrcTables = std::array<std::array<std::uint16_t, 256>, 8>;

constexpr CrcTables makeCrcTables() {
  CrcTables t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint16_t crc = static_cast<std::uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    t[0][i] = crc;
  }
  for (std::size_t k = 1; k < t.size(); ++k) {
    for (std::uint32_t i = 0; i < 256; ++i) {
      const std::uint16_t prev = t[k - 1][i];  // one more zero byte after it
      t[k][i] = static_cast<std::uint16_t>((prev << 8) ^ t[0][prev >> 8]);
    }
  }
  return t;
}

constexpr CrcTables kCrc = makeCrcTables();

bool parsePort(std::int64_t value, std::uint16_t& port) {
  if (value <= 0 || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

}  // namespace

std::uint16_t crc16(std::string_view data) {
  std::uint16_t crc = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t n = data.size();
  for (; n >= 8; n -= 8, p += 8) {
    crc = static_cast<std::uint16_t>(kCrc[7][(crc >> 8) ^ p[0]] ^ kCrc[6][(crc & 0xff) ^ p[1]] ^
                                     kCrc[5][p[2]] ^ kCrc[4][p[3]] ^ kCrc[3][p[4]] ^ kCrc[2][p[5]] ^
                                     kCrc[1][p[6]] ^ kCrc[0][p[7]]);
  }
  for (; n > 0; --n, ++p) {
    crc = static_cast<std::uint16_t>((crc << 8) ^ kCrc[0][(crc >> 8) ^ *p]);
  }
  return crc;
}

std::uint16_t keyHashSlot(std::string_view key) {
  const auto open = key.find('{');
  if (open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    // `{}` (nothing inside) does not make a hash tag: the whole key is hashed.
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return crc16(key) & (kClusterSlots - 1);
}

std::optional<Redirect> parseRedirect(std::string_view frame) {
  Redirect r;
  if (frame.starts_with("-MOVED ")) {
    r.kind = Redirect::Kind::kMoved;
    frame.remove_prefix(7);
  } else if (frame.starts_with("-ASK ")) {
    r.kind = Redirect::Kind::kAsk;
    frame.remove_prefix(5);
  } else {
    return std::nullopt;
  }
  if (!frame.ends_with("\r\n")) return std::nullopt;
  frame.remove_suffix(2);
  const auto space = frame.find(' ');
  if (space == std::string_view::npos || space == 0) return std::nullopt;
  std::uint32_t slot = 0;
  for (const char c : frame.substr(0, space)) {
    if (c < '0' || c > '9') return std::nullopt;
    slot = slot * 10 + static_cast<std::uint32_t>(c - '0');
    if (slot >= kClusterSlots) return std::nullopt;
  }
  r.slot = static_cast<std::uint16_t>(slot);
  const std::string_view endpoint = frame.substr(space + 1);
  // host:port, split at the last colon (IPv6 addresses come without brackets).
  const auto colon = endpoint.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == endpoint.size()) return std::nullopt;
  std::uint32_t port = 0;
  for (const char c : endpoint.substr(colon + 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + static_cast<std::uint32_t>(c - '0');
    if (port > 65535) return std::nullopt;
  }
  if (port == 0) return std::nullopt;
  r.node.host = std::string(endpoint.substr(0, colon));
  if (r.node.host == "?") r.node.host.clear();
  r.node.port = static_cast<std::uint16_t>(port);
  return r;
}

std::size_t SlotMap::uncoveredSlots() const {
  return static_cast<std::size_t>(std::count(master_.begin(), master_.end(), kNoNode));
}

std::uint16_t SlotMap::internMaster(const ClusterNode& node) {
  for (std::size_t i = 0; i < masters_.size(); ++i) {
    if (masters_[i] == node) return static_cast<std::uint16_t>(i);
  }
  masters_.push_back(node);
  replicas_.emplace_back();
  return static_cast<std::uint16_t>(masters_.size() - 1);
}

SlotMap SlotMap::withSlotMovedTo(std::uint16_t slot, const ClusterNode& node) const {
  SlotMap copy = *this;
  copy.master_[slot & (kClusterSlots - 1)] = copy.internMaster(node);
  return copy;
}

std::optional<SlotMap> SlotMap::fromClusterSlots(std::string_view frame, std::string_view seedHost,
                                                 std::string* error) {
  auto fail = [error](std::string message) -> std::optional<SlotMap> {
    if (error != nullptr) *error = std::move(message);
    return std::nullopt;
  };
  SlotMap map;
  map.master_.fill(kNoNode);
  resp::ReplyReader reader(frame);
  auto top = reader.next();
  if (!top || top->type != '*' || top->isNull) {
    return fail("CLUSTER SLOTS did not answer an array");
  }
  // Each range: [start, end, master, replica...], a node being [host, port, id, metadata...].
  auto readNode = [&](ClusterNode& node) -> bool {
    auto header = reader.next();
    if (!header || header->type != '*' || header->integer < 2) return false;
    const std::int64_t fields = header->integer;
    auto host = reader.next();
    auto port = reader.next();
    if (!host || !port || port->type != ':' || !parsePort(port->integer, node.port)) return false;
    node.host =
        host->isNull || host->text.empty() ? std::string(seedHost) : std::string(host->text);
    for (std::int64_t f = 2; f < fields; ++f) {
      auto field = reader.next();
      if (!field) return false;
      if (f == 2 && (field->type == '$' || field->type == '+')) node.id = std::string(field->text);
      // Redis 7 adds a map of networking metadata (hostname, ...): skip its elements.
      if (field->type == '*' || field->type == '%') {
        const std::int64_t children = field->type == '%' ? field->integer * 2 : field->integer;
        for (std::int64_t c = 0; c < children; ++c) {
          auto child = reader.next();
          if (!child) return false;
        }
      }
    }
    return true;
  };
  for (std::int64_t r = 0; r < top->integer; ++r) {
    auto range = reader.next();
    if (!range || range->type != '*' || range->integer < 3) {
      return fail("CLUSTER SLOTS: a slot range is not [start, end, master, ...]");
    }
    auto start = reader.next();
    auto end = reader.next();
    if (!start || !end || start->type != ':' || end->type != ':' || start->integer < 0 ||
        end->integer >= kClusterSlots || start->integer > end->integer) {
      return fail("CLUSTER SLOTS: bad slot range");
    }
    ClusterNode master;
    if (!readNode(master)) return fail("CLUSTER SLOTS: bad master entry");
    const std::uint16_t index = map.internMaster(master);
    for (std::int64_t n = 3; n < range->integer; ++n) {
      ClusterNode replica;
      if (!readNode(replica)) return fail("CLUSTER SLOTS: bad replica entry");
      auto& replicas = map.replicas_[index];
      if (std::find(replicas.begin(), replicas.end(), replica) == replicas.end()) {
        replicas.push_back(std::move(replica));
      }
    }
    for (std::int64_t s = start->integer; s <= end->integer; ++s) {
      map.master_[static_cast<std::size_t>(s)] = index;
    }
  }
  return map;
}

bool SlotMap::sameRouting(const SlotMap& other) const {
  for (std::size_t slot = 0; slot < kClusterSlots; ++slot) {
    const auto a = master_[slot];
    const auto b = other.master_[slot];
    if ((a == kNoNode) != (b == kNoNode)) return false;
    if (a != kNoNode && !(masters_[a] == other.masters_[b])) return false;
  }
  return true;
}

std::vector<std::uint16_t> SlotMap::mastersBySlot() const {
  std::vector<std::uint16_t> order;
  std::vector<bool> seen(masters_.size(), false);
  for (std::size_t slot = 0; slot < kClusterSlots; ++slot) {
    const auto m = master_[slot];
    if (m != kNoNode && !seen[m]) {
      seen[m] = true;
      order.push_back(m);
    }
  }
  for (std::uint16_t m = 0; m < masters_.size(); ++m) {
    if (!seen[m]) order.push_back(m);
  }
  return order;
}

}  // namespace keygate::proxy
