#include "proxy/slot_map.hpp"

#include <catch2/catch.hpp>
#include <string>

#include "proxy/resp/reply_writer.hpp"

using namespace keygate::proxy;
namespace resp = keygate::resp;

TEST_CASE("crc16 is CRC16-CCITT XMODEM as the Redis Cluster spec defines it") {
  CHECK(crc16("123456789") == 0x31C3);  // the spec's check value
  CHECK(crc16("") == 0);
}

TEST_CASE("crc16 eight bytes at a time equals the bit-by-bit definition at every length") {
  // The definition: shift each bit through polynomial 0x1021, most significant first.
  auto reference = [](std::string_view data) {
    std::uint16_t crc = 0;
    for (const char c : data) {
      crc = static_cast<std::uint16_t>(crc ^ (static_cast<std::uint8_t>(c) << 8));
      for (int bit = 0; bit < 8; ++bit)
        crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
  };
  std::string data;
  std::uint32_t x = 12345;
  for (std::size_t len = 0; len <= 70; ++len) {
    for (int round = 0; round < 20; ++round) {
      data.resize(len);
      for (char& c : data) {
        x = x * 1103515245u + 12345u;  // a fixed pseudo-random sequence: every byte value
        c = static_cast<char>(x >> 16);
      }
      INFO("length " << len);
      REQUIRE(crc16(data) == reference(data));
    }
  }
}

TEST_CASE("key hash slots match redis-server's CLUSTER KEYSLOT") {
  // Values from `CLUSTER KEYSLOT` of redis-server 7.0.
  CHECK(keyHashSlot("foo") == 12182);
  CHECK(keyHashSlot("bar") == 5061);
  CHECK(keyHashSlot("somekey") == 11058);
  CHECK(keyHashSlot("") == 0);
}

TEST_CASE("hash tags: the first {...} with content decides the slot") {
  CHECK(keyHashSlot("{user1000}.following") == keyHashSlot("user1000"));
  CHECK(keyHashSlot("{user1000}.followers") == keyHashSlot("{user1000}.following"));
  CHECK(keyHashSlot("foo{}{bar}") == crc16("foo{}{bar}") % kClusterSlots);  // empty tag: whole key
  CHECK(keyHashSlot("foo{{bar}}zap") == keyHashSlot("{bar"));
  CHECK(keyHashSlot("foo{bar}{zap}") == keyHashSlot("bar"));
  CHECK(keyHashSlot("{}x") == crc16("{}x") % kClusterSlots);
  CHECK(keyHashSlot("no-close{tag") == crc16("no-close{tag") % kClusterSlots);
  CHECK(keyHashSlot("cpq:{tenant-acme}:pricing:preview:quote-q100") == keyHashSlot("tenant-acme"));
}

namespace {
void node(std::string& out, std::string_view host, int port, std::string_view id) {
  resp::appendArrayHeader(out, 4);
  resp::appendBulk(out, host);
  resp::appendInteger(out, port);
  resp::appendBulk(out, id);
  resp::appendArrayHeader(out, 0);  // Redis 7 networking metadata
}
}  // namespace

TEST_CASE("SlotMap parses a CLUSTER SLOTS reply with replicas and metadata") {
  std::string frame;
  resp::appendArrayHeader(frame, 3);
  resp::appendArrayHeader(frame, 4);
  resp::appendInteger(frame, 0);
  resp::appendInteger(frame, 5460);
  node(frame, "127.0.0.1", 7000, "a");
  node(frame, "127.0.0.1", 7003, "d");
  resp::appendArrayHeader(frame, 3);
  resp::appendInteger(frame, 5461);
  resp::appendInteger(frame, 10922);
  node(frame, "", 7001, "b");  // empty host: the node we asked
  resp::appendArrayHeader(frame, 3);
  resp::appendInteger(frame, 10923);
  resp::appendInteger(frame, 16383);
  node(frame, "127.0.0.1", 7002, "c");

  std::string error;
  auto map = SlotMap::fromClusterSlots(frame, "10.1.2.3", &error);
  INFO(error);
  REQUIRE(map);
  CHECK(map->uncoveredSlots() == 0);
  REQUIRE(map->masters().size() == 3);
  CHECK(map->masterFor(0)->port == 7000);
  CHECK(map->masterFor(0)->id == "a");
  CHECK(map->masterFor(5460)->port == 7000);
  CHECK(map->masterFor(5461)->address() == "10.1.2.3:7001");
  CHECK(map->masterFor(16383)->port == 7002);
  REQUIRE(map->replicasOf(map->masterIndex(0)).size() == 1);
  CHECK(map->replicasOf(map->masterIndex(0))[0].port == 7003);
  CHECK(map->replicasOf(map->masterIndex(16383)).empty());

  auto moved = map->withSlotMovedTo(100, ClusterNode{"127.0.0.1", 7002, ""});
  CHECK(moved.masterFor(100)->port == 7002);
  CHECK(moved.masterFor(101)->port == 7000);
  CHECK(moved.masters().size() == 3);
  auto added = map->withSlotMovedTo(5, ClusterNode{"127.0.0.1", 7010, ""});
  CHECK(added.masters().size() == 4);
  CHECK(added.masterFor(5)->port == 7010);
  CHECK(map->masterFor(5)->port == 7000);  // snapshots are immutable
}

TEST_CASE("SlotMap reports gaps and rejects malformed replies") {
  std::string partial;
  resp::appendArrayHeader(partial, 1);
  resp::appendArrayHeader(partial, 3);
  resp::appendInteger(partial, 0);
  resp::appendInteger(partial, 99);
  node(partial, "127.0.0.1", 7000, "a");
  auto map = SlotMap::fromClusterSlots(partial, "127.0.0.1", nullptr);
  REQUIRE(map);
  CHECK(map->uncoveredSlots() == kClusterSlots - 100);
  CHECK(map->masterFor(100) == nullptr);

  std::string error;
  CHECK_FALSE(SlotMap::fromClusterSlots("-ERR This instance has cluster support disabled\r\n", "h",
                                        &error));
  CHECK(error.find("array") != std::string::npos);
  std::string badRange;
  resp::appendArrayHeader(badRange, 1);
  resp::appendArrayHeader(badRange, 3);
  resp::appendInteger(badRange, 10);
  resp::appendInteger(badRange, 16384);
  node(badRange, "127.0.0.1", 7000, "a");
  CHECK_FALSE(SlotMap::fromClusterSlots(badRange, "h", &error));
  std::string badPort;
  resp::appendArrayHeader(badPort, 1);
  resp::appendArrayHeader(badPort, 3);
  resp::appendInteger(badPort, 0);
  resp::appendInteger(badPort, 1);
  node(badPort, "127.0.0.1", 70000, "a");
  CHECK_FALSE(SlotMap::fromClusterSlots(badPort, "h", &error));
}

TEST_CASE("MOVED and ASK redirects are parsed; anything else is not a redirect") {
  auto moved = parseRedirect("-MOVED 3999 127.0.0.1:6381\r\n");
  REQUIRE(moved);
  CHECK(moved->kind == Redirect::Kind::kMoved);
  CHECK(moved->slot == 3999);
  CHECK(moved->node.address() == "127.0.0.1:6381");
  auto ask = parseRedirect("-ASK 16383 redis-2.redis.svc:7000\r\n");
  REQUIRE(ask);
  CHECK(ask->kind == Redirect::Kind::kAsk);
  CHECK(ask->slot == 16383);
  CHECK(ask->node.host == "redis-2.redis.svc");
  auto v6 = parseRedirect("-MOVED 1 ::1:7001\r\n");
  REQUIRE(v6);
  CHECK(v6->node.host == "::1");
  CHECK(v6->node.port == 7001);
  auto unknownHost = parseRedirect("-MOVED 7 :7002\r\n");
  REQUIRE(unknownHost);
  CHECK(unknownHost->node.host.empty());

  CHECK_FALSE(parseRedirect("-MOVED 16384 127.0.0.1:1\r\n"));
  CHECK_FALSE(parseRedirect("-MOVED x 127.0.0.1:1\r\n"));
  CHECK_FALSE(parseRedirect("-MOVED 1 127.0.0.1:\r\n"));
  CHECK_FALSE(parseRedirect("-MOVED 1 127.0.0.1:70000\r\n"));
  CHECK_FALSE(parseRedirect("-MOVED 1 127.0.0.1:1"));
  CHECK_FALSE(parseRedirect("-ERR MOVED 1 127.0.0.1:1\r\n"));
  CHECK_FALSE(parseRedirect("-TRYAGAIN Multiple keys request during rehashing of slot\r\n"));
  CHECK_FALSE(parseRedirect("+OK\r\n"));
}

TEST_CASE("sameRouting compares slot owners; mastersBySlot orders by the lowest slot") {
  // Two masters: B serves 0-8191, A serves 8192-16383.
  std::string reply = "*2\r\n";
  auto range = [&](int lo, int hi, std::string_view host, int port) {
    reply += "*3\r\n:" + std::to_string(lo) + "\r\n:" + std::to_string(hi) + "\r\n";
    reply += "*2\r\n$" + std::to_string(host.size()) + "\r\n" + std::string(host) +
             "\r\n:" + std::to_string(port) + "\r\n";
  };
  range(8192, 16383, "10.0.0.1", 7000);
  range(0, 8191, "10.0.0.2", 7001);
  std::string error;
  auto map = SlotMap::fromClusterSlots(reply, "10.0.0.9", &error);
  REQUIRE(map);
  const auto order = map->mastersBySlot();
  REQUIRE(order.size() == 2);
  CHECK(map->masters()[order[0]].port == 7001);
  CHECK(map->masters()[order[1]].port == 7000);
  CHECK(map->sameRouting(*map));
  ClusterNode other{"10.0.0.3", 7002, ""};
  const auto moved = map->withSlotMovedTo(5, other);
  CHECK_FALSE(map->sameRouting(moved));
  CHECK_FALSE(moved.sameRouting(*map));
  CHECK(moved.sameRouting(map->withSlotMovedTo(5, other)));
}
