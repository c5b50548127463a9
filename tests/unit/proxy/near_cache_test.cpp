// NearCache: lookups by protocol and request bytes, invalidation by key, LRU within a pattern's
// limits, expiry at the TTL, gauges that match the contents.

#include "proxy/near_cache.hpp"

#include <catch2/catch.hpp>
#include <string>

#include "proxy/commands/command_table.hpp"
#include "proxy/read_sharing.hpp"

using keygate::proxy::NearCache;
using keygate::resp::Protocol;
using namespace std::chrono_literals;

namespace {

std::string getRequest(const std::string& key) {
  return "*2\r\n$3\r\nGET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n";
}
std::string bulk(const std::string& value) {
  return "$" + std::to_string(value.size()) + "\r\n" + value + "\r\n";
}
std::uint64_t load(const NearCache::Counter& c) {
  return c.load();
}

}  // namespace

TEST_CASE("near cache: a stored reply is found by protocol and request bytes", "[near_cache]") {
  NearCache cache(8);
  const auto t0 = NearCache::Clock::time_point{} + 1h;
  cache.configure(1, {30s, 1 << 20, 100});
  REQUIRE(cache.enabled(1));
  REQUIRE_FALSE(cache.enabled(2));

  cache.store(1, Protocol::kResp2, "k1", getRequest("k1"), bulk("v1"), t0);
  const std::string* hit = cache.find(Protocol::kResp2, getRequest("k1"), t0 + 1s);
  REQUIRE(hit != nullptr);
  CHECK(*hit == bulk("v1"));
  // RESP3 replies differ (maps, sets): never answered from a RESP2 entry.
  CHECK(cache.find(Protocol::kResp3, getRequest("k1"), t0) == nullptr);
  CHECK(cache.find(Protocol::kResp2, getRequest("k2"), t0) == nullptr);
  // A disabled pattern stores nothing.
  cache.store(2, Protocol::kResp2, "k2", getRequest("k2"), bulk("v2"), t0);
  CHECK(cache.find(Protocol::kResp2, getRequest("k2"), t0) == nullptr);

  // Replacing an entry keeps one.
  cache.store(1, Protocol::kResp2, "k1", getRequest("k1"), bulk("v1b"), t0);
  CHECK(*cache.find(Protocol::kResp2, getRequest("k1"), t0) == bulk("v1b"));
  CHECK(cache.size() == 1);
  CHECK(load(cache.stats(1).entries) == 1);
  const std::uint64_t cost =
      getRequest("k1").size() + 2 + bulk("v1b").size() + NearCache::kEntryOverhead;
  CHECK(load(cache.stats(1).bytes) == cost);
}

TEST_CASE("near cache: invalidating a key drops every request of it", "[near_cache]") {
  NearCache cache(8);
  const auto t0 = NearCache::Clock::time_point{} + 1h;
  cache.configure(3, {30s, 1 << 20, 100});
  const std::string hget = "*3\r\n$4\r\nHGET\r\n$1\r\nh\r\n$1\r\nf\r\n";
  const std::string hgetall = "*2\r\n$7\r\nHGETALL\r\n$1\r\nh\r\n";
  cache.store(3, Protocol::kResp2, "h", hget, bulk("x"), t0);
  cache.store(3, Protocol::kResp2, "h", hgetall, "*2\r\n$1\r\nf\r\n$1\r\nx\r\n", t0);
  cache.store(3, Protocol::kResp3, "h", hgetall, "%1\r\n$1\r\nf\r\n$1\r\nx\r\n", t0);
  cache.store(3, Protocol::kResp2, "other", getRequest("other"), bulk("o"), t0);
  REQUIRE(cache.size() == 4);
  CHECK(cache.containsKey("h"));

  SECTION("the key's head entry erased first keeps the others reachable by key") {
    // LRU eviction of the first-stored entry of "h", then invalidation of the rest.
    cache.configure(3, {30s, 1 << 20, 3});
    CHECK(cache.size() == 3);
    CHECK(cache.find(Protocol::kResp2, hget, t0) == nullptr);
    CHECK(cache.invalidate("h") == 2);
  }
  SECTION("all of them at once") {
    CHECK(cache.invalidate("h") == 3);
    CHECK(load(cache.stats(3).invalidations) == 3);
  }
  CHECK_FALSE(cache.containsKey("h"));
  CHECK(cache.find(Protocol::kResp2, hgetall, t0) == nullptr);
  CHECK(cache.find(Protocol::kResp3, hgetall, t0) == nullptr);
  CHECK(cache.find(Protocol::kResp2, getRequest("other"), t0) != nullptr);
  CHECK(cache.invalidate("h") == 0);
  CHECK(load(cache.stats(3).entries) == 1);
}

TEST_CASE("near cache: least recently used entries go first, per pattern", "[near_cache]") {
  NearCache cache(8);
  const auto t0 = NearCache::Clock::time_point{} + 1h;
  cache.configure(1, {30s, 1 << 20, 3});
  cache.configure(2, {30s, 1 << 20, 3});
  for (const char* k : {"a", "b", "c"})
    cache.store(1, Protocol::kResp2, k, getRequest(k), bulk(k), t0);
  cache.store(2, Protocol::kResp2, "z", getRequest("z"), bulk("z"), t0);
  // "a" used again: "b" is now the least recently used.
  REQUIRE(cache.find(Protocol::kResp2, getRequest("a"), t0) != nullptr);
  cache.store(1, Protocol::kResp2, "d", getRequest("d"), bulk("d"), t0);
  CHECK(cache.find(Protocol::kResp2, getRequest("b"), t0) == nullptr);
  CHECK(cache.find(Protocol::kResp2, getRequest("a"), t0) != nullptr);
  CHECK(cache.find(Protocol::kResp2, getRequest("c"), t0) != nullptr);
  CHECK(cache.find(Protocol::kResp2, getRequest("d"), t0) != nullptr);
  CHECK(cache.find(Protocol::kResp2, getRequest("z"), t0) != nullptr);  // other pattern kept
  CHECK(load(cache.stats(1).evictions) == 1);
  CHECK(load(cache.stats(1).entries) == 3);

  SECTION("maxBytes") {
    const std::uint64_t one =
        getRequest("e").size() + 1 + bulk(std::string(100, 'e')).size() + NearCache::kEntryOverhead;
    cache.configure(1, {30s, 2 * one, 100});  // shrinking evicts at once
    CHECK(load(cache.stats(1).bytes) <= 2 * one);
    cache.store(1, Protocol::kResp2, "e", getRequest("e"), bulk(std::string(100, 'e')), t0);
    cache.store(1, Protocol::kResp2, "f", getRequest("f"), bulk(std::string(100, 'f')), t0);
    CHECK(load(cache.stats(1).entries) == 2);
    CHECK(load(cache.stats(1).bytes) == 2 * one);
    // A value bigger than the pattern's whole budget is not stored, and evicts nothing.
    cache.store(1, Protocol::kResp2, "g", getRequest("g"), bulk(std::string(3 * one, 'g')), t0);
    CHECK(cache.find(Protocol::kResp2, getRequest("g"), t0) == nullptr);
    CHECK(load(cache.stats(1).entries) == 2);
  }
  SECTION("disabling a pattern drops its entries") {
    cache.configure(1, {});
    CHECK_FALSE(cache.enabled(1));
    CHECK(load(cache.stats(1).entries) == 0);
    CHECK(load(cache.stats(1).bytes) == 0);
    CHECK(cache.size() == 1);
  }
}

TEST_CASE("near cache: entries are never served at or past their TTL", "[near_cache]") {
  NearCache cache(8);
  const auto t0 = NearCache::Clock::time_point{} + 1h;
  cache.configure(1, {2s, 1 << 20, 100});
  cache.store(1, Protocol::kResp2, "a", getRequest("a"), bulk("a"), t0);
  cache.store(1, Protocol::kResp2, "b", getRequest("b"), bulk("b"), t0 + 1s);
  CHECK(cache.find(Protocol::kResp2, getRequest("a"), t0 + 1999ms) != nullptr);
  CHECK(cache.find(Protocol::kResp2, getRequest("a"), t0 + 2s) == nullptr);
  CHECK(load(cache.stats(1).expirations) == 1);
  // The sweep drops what nobody asked for any more, oldest first, and stops at a live one.
  cache.store(1, Protocol::kResp2, "c", getRequest("c"), bulk("c"), t0 + 2s);
  cache.expire(t0 + 3s);
  CHECK(cache.size() == 1);
  CHECK(cache.find(Protocol::kResp2, getRequest("c"), t0 + 3s) != nullptr);
  cache.expire(t0 + 10s);
  CHECK(cache.size() == 0);
  CHECK(load(cache.stats(1).expirations) == 3);
  CHECK(load(cache.stats(1).bytes) == 0);
}

TEST_CASE("near cache: flush drops everything, counted as invalidations", "[near_cache]") {
  NearCache cache(8);
  const auto t0 = NearCache::Clock::time_point{} + 1h;
  cache.configure(1, {30s, 1 << 20, 100});
  cache.configure(4, {30s, 1 << 20, 100});
  cache.store(1, Protocol::kResp2, "a", getRequest("a"), bulk("a"), t0);
  cache.store(4, Protocol::kResp3, "b", getRequest("b"), bulk("b"), t0);
  cache.flush();
  CHECK(cache.size() == 0);
  CHECK_FALSE(cache.containsKey("a"));
  CHECK(load(cache.stats(1).invalidations) == 1);
  CHECK(load(cache.stats(4).invalidations) == 1);
  // Usable afterwards.
  cache.store(1, Protocol::kResp2, "a", getRequest("a"), bulk("a2"), t0);
  CHECK(*cache.find(Protocol::kResp2, getRequest("a"), t0) == bulk("a2"));
}

TEST_CASE("shareable reads: values only, never time- or chance-dependent", "[near_cache]") {
  const auto& table = keygate::commands::CommandTable::redis70();
  const auto rows = table.all();
  auto shareable = [&](std::string_view name) {
    const auto* info = table.find(name);
    REQUIRE(info != nullptr);
    return keygate::proxy::isShareableRead(static_cast<std::size_t>(info - rows.data()));
  };
  for (const char* yes : {"get", "hget", "hgetall", "mget", "lrange", "smembers", "zscore"})
    CHECK(shareable(yes));
  for (const char* no : {"ttl", "pttl", "srandmember", "hrandfield", "zrandmember", "spop", "getex",
                         "getdel", "scan", "hscan", "object", "set", "incr"})
    CHECK_FALSE(shareable(no));
}
