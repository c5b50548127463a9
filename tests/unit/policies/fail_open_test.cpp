#include "policies/fail_open.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <initializer_list>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using keygate::commands::CommandInfo;
using keygate::commands::CommandTable;
using keygate::policies::appendMissReply;
using keygate::policies::MissClass;
using keygate::policies::missClasses;
using keygate::policies::MissReply;
using keygate::policies::missReplyOf;
using keygate::policies::MissShape;
using keygate::resp::Protocol;

namespace {

using Argv = std::vector<std::string_view>;

const CommandInfo& rowOf(const Argv& argv) {
  const CommandInfo* info = CommandTable::redis70().resolve(argv);
  INFO("command: " << argv.front());
  REQUIRE(info != nullptr);
  return *info;
}

MissReply miss(std::initializer_list<std::string_view> args, bool cacheWrite = false) {
  const Argv argv(args);
  return missReplyOf(rowOf(argv), argv, cacheWrite);
}

MissShape shape(std::initializer_list<std::string_view> args, bool cacheWrite = false) {
  return miss(args, cacheWrite).shape;
}

std::string bytes(MissReply reply, Protocol proto) {
  std::string out;
  appendMissReply(out, reply, proto);
  return out;
}

// The reply bytes of a request that fails open, in RESP2 / RESP3.
std::string resp2(std::initializer_list<std::string_view> args, bool cacheWrite = false) {
  return bytes(miss(args, cacheWrite), Protocol::kResp2);
}
std::string resp3(std::initializer_list<std::string_view> args, bool cacheWrite = false) {
  return bytes(miss(args, cacheWrite), Protocol::kResp3);
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ')
    s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ')
    s.remove_suffix(1);
  return s;
}

// The command entries of a MissClass: comma-separated, prose (lower case) left out.
std::vector<std::string> entriesOf(const MissClass& c) {
  std::vector<std::string> out;
  std::string_view rest = c.commands;
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    if (!item.empty() && !(item[0] >= 'a' && item[0] <= 'z')) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Bytes

TEST_CASE("fail-open: the bytes of every shape, RESP2 and RESP3", "[policies][fail-open]") {
  struct Case {
    MissReply reply;
    std::string_view resp2;
    std::string_view resp3;
  };
  const Case cases[] = {
      {{MissShape::kNone, 0}, "", ""},
      {{MissShape::kNil, 0}, "$-1\r\n", "_\r\n"},
      {{MissShape::kNullArray, 0}, "*-1\r\n", "_\r\n"},
      {{MissShape::kEmptyString, 0}, "$0\r\n\r\n", "$0\r\n\r\n"},
      {{MissShape::kZero, 0}, ":0\r\n", ":0\r\n"},
      {{MissShape::kMinusTwo, 0}, ":-2\r\n", ":-2\r\n"},
      {{MissShape::kEmptyArray, 0}, "*0\r\n", "*0\r\n"},
      {{MissShape::kEmptyMap, 0}, "*0\r\n", "%0\r\n"},
      {{MissShape::kEmptySet, 0}, "*0\r\n", "~0\r\n"},
      {{MissShape::kNils, 3}, "*3\r\n$-1\r\n$-1\r\n$-1\r\n", "*3\r\n_\r\n_\r\n_\r\n"},
      {{MissShape::kNils, 0}, "*0\r\n", "*0\r\n"},
      {{MissShape::kZeros, 2}, "*2\r\n:0\r\n:0\r\n", "*2\r\n:0\r\n:0\r\n"},
      {{MissShape::kNoneType, 0}, "+none\r\n", "+none\r\n"},
      {{MissShape::kEmptyScan, 0}, "*2\r\n$1\r\n0\r\n*0\r\n", "*2\r\n$1\r\n0\r\n*0\r\n"},
  };
  for (const auto& c : cases) {
    INFO("shape " << static_cast<int>(c.reply.shape) << " count " << c.reply.count);
    CHECK(bytes(c.reply, Protocol::kResp2) == c.resp2);
    CHECK(bytes(c.reply, Protocol::kResp3) == c.resp3);
  }
}

TEST_CASE("fail-open: appends after what the buffer holds", "[policies][fail-open]") {
  std::string out = "+OK\r\n";
  appendMissReply(out, {MissShape::kNil, 0}, Protocol::kResp2);
  appendMissReply(out, {MissShape::kNone, 0}, Protocol::kResp2);
  appendMissReply(out, {MissShape::kZero, 0}, Protocol::kResp3);
  CHECK(out == "+OK\r\n$-1\r\n:0\r\n");
}

// ---------------------------------------------------------------------------------------------
// Reads

TEST_CASE("fail-open: single values are nil", "[policies][fail-open]") {
  for (const auto& args :
       {Argv{"GET", "k"}, Argv{"get", "k"}, Argv{"GeT", "k"}, Argv{"HGET", "k", "f"},
        Argv{"LINDEX", "k", "-1"}, Argv{"ZSCORE", "k", "m"}, Argv{"ZRANK", "k", "m"},
        Argv{"ZREVRANK", "k", "m"}, Argv{"DUMP", "k"}, Argv{"GEODIST", "k", "a", "b"},
        Argv{"GEODIST", "k", "a", "b", "Mi"}, Argv{"LPOS", "k", "e"},
        Argv{"LPOS", "k", "e", "rank", "-2", "MAXLEN", "9"}, Argv{"SRANDMEMBER", "k"},
        Argv{"HRANDFIELD", "k"}, Argv{"ZRANDMEMBER", "k"}, Argv{"GETEX", "k"},
        Argv{"GETEX", "k", "persist"}, Argv{"GETEX", "k", "PX", "100"}}) {
    INFO(args[0] << " ... (" << args.size() << " args)");
    const MissReply r = missReplyOf(rowOf(args), args, false);
    CHECK(r.shape == MissShape::kNil);
    CHECK(bytes(r, Protocol::kResp2) == "$-1\r\n");
    CHECK(bytes(r, Protocol::kResp3) == "_\r\n");
  }
}

TEST_CASE("fail-open: GETEX answers as a read, whatever cacheWrite says", "[policies][fail-open]") {
  CHECK(shape({"GETEX", "k", "EX", "60"}, false) == MissShape::kNil);
  CHECK(shape({"GETEX", "k", "EX", "60"}, true) == MissShape::kNil);
  // Requests Redis refuses fail closed.
  CHECK(shape({"GETEX", "k", "EX"}) == MissShape::kNone);
  CHECK(shape({"GETEX", "k", "EX", "0"}) == MissShape::kNone);
  CHECK(shape({"GETEX", "k", "EX", "x"}) == MissShape::kNone);
  CHECK(shape({"GETEX", "k", "EX", "1", "PX", "2"}) == MissShape::kNone);
  CHECK(shape({"GETEX", "k", "PERSIST", "EX", "2"}) == MissShape::kNone);
  CHECK(shape({"GETEX", "k", "KEEPTTL"}) == MissShape::kNone);
}

TEST_CASE("fail-open: substrings are empty strings", "[policies][fail-open]") {
  CHECK(resp2({"GETRANGE", "k", "0", "-1"}) == "$0\r\n\r\n");
  CHECK(resp3({"SUBSTR", "k", "0", "-1"}) == "$0\r\n\r\n");
  CHECK(shape({"GETRANGE", "k", "a", "b"}) == MissShape::kNone);
  CHECK(shape({"LCS", "a", "b"}) == MissShape::kEmptyString);
  CHECK(shape({"LCS", "a", "b", "withmatchlen", "MINMATCHLEN", "-3"}) == MissShape::kEmptyString);
  CHECK(shape({"LCS", "a", "b", "len"}) == MissShape::kZero);
  CHECK(shape({"LCS", "a", "b", "IDX"}) == MissShape::kNone);  // a map: no shape
  CHECK(shape({"LCS", "a", "b", "LEN", "IDX"}) == MissShape::kNone);
  CHECK(shape({"LCS", "a", "b", "MINMATCHLEN"}) == MissShape::kNone);
  CHECK(shape({"LCS", "a", "b", "MINMATCHLEN", "x"}) == MissShape::kNone);
  CHECK(shape({"LCS", "a", "b", "foo"}) == MissShape::kNone);
}

TEST_CASE("fail-open: counts and membership are 0", "[policies][fail-open]") {
  for (const auto& args : {Argv{"EXISTS", "a"},
                           Argv{"EXISTS", "a", "b", "c"},
                           Argv{"TOUCH", "a", "b"},
                           Argv{"HEXISTS", "k", "f"},
                           Argv{"SISMEMBER", "k", "m"},
                           Argv{"STRLEN", "k"},
                           Argv{"HSTRLEN", "k", "f"},
                           Argv{"HLEN", "k"},
                           Argv{"LLEN", "k"},
                           Argv{"SCARD", "k"},
                           Argv{"ZCARD", "k"},
                           Argv{"XLEN", "k"},
                           Argv{"PFCOUNT", "a", "b"},
                           Argv{"ZCOUNT", "k", "-inf", "+inf"},
                           Argv{"ZCOUNT", "k", "(1.5", "1e3"},
                           Argv{"ZCOUNT", "k", "inf", "-infinity"},
                           Argv{"ZLEXCOUNT", "k", "-", "+"},
                           Argv{"ZLEXCOUNT", "k", "[a", "(b"},
                           Argv{"SINTERCARD", "2", "a", "b"},
                           Argv{"SINTERCARD", "1", "a", "limit", "0"},
                           Argv{"ZINTERCARD", "1", "a"},
                           Argv{"BITCOUNT", "k"},
                           Argv{"BITCOUNT", "k", "0", "-1"},
                           Argv{"BITCOUNT", "k", "0", "-1", "bit"},
                           Argv{"BITCOUNT", "k", "0", "-1", "BYTE"},
                           Argv{"GETBIT", "k", "0"},
                           Argv{"GETBIT", "k", "4294967295"}}) {
    INFO(args[0] << " ... (" << args.size() << " args)");
    const MissReply r = missReplyOf(rowOf(args), args, false);
    CHECK(r.shape == MissShape::kZero);
    CHECK(bytes(r, Protocol::kResp2) == ":0\r\n");
    CHECK(bytes(r, Protocol::kResp3) == ":0\r\n");
  }
  // Arguments Redis refuses.
  CHECK(shape({"ZCOUNT", "k", "(1", "x"}) == MissShape::kNone);
  CHECK(shape({"ZCOUNT", "k", "nan", "1"}) == MissShape::kNone);
  CHECK(shape({"ZCOUNT", "k", " 1", "2"}) == MissShape::kNone);
  CHECK(shape({"ZLEXCOUNT", "k", "a", "b"}) == MissShape::kNone);
  CHECK(shape({"SINTERCARD", "0", "a"}) == MissShape::kNone);
  CHECK(shape({"SINTERCARD", "3", "a", "b"}) == MissShape::kNone);
  CHECK(shape({"SINTERCARD", "1", "a", "LIMIT", "-1"}) == MissShape::kNone);
  CHECK(shape({"SINTERCARD", "1", "a", "LIMIT"}) == MissShape::kNone);
  CHECK(shape({"SINTERCARD", "1", "a", "foo"}) == MissShape::kNone);
  CHECK(shape({"BITCOUNT", "k", "0"}) == MissShape::kNone);
  CHECK(shape({"BITCOUNT", "k", "a", "b"}) == MissShape::kNone);
  CHECK(shape({"BITCOUNT", "k", "0", "1", "foo"}) == MissShape::kNone);
  CHECK(shape({"GETBIT", "k", "-1"}) == MissShape::kNone);
  CHECK(shape({"GETBIT", "k", "4294967296"}) == MissShape::kNone);
  // BITPOS answers -1 or 0 depending on the bit asked for: no shape.
  CHECK(shape({"BITPOS", "k", "0"}) == MissShape::kNone);
  CHECK(shape({"BITPOS", "k", "1"}) == MissShape::kNone);
}

TEST_CASE("fail-open: TTLs are -2", "[policies][fail-open]") {
  for (const auto* name : {"TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "ttl"}) {
    INFO(name);
    CHECK(resp2({name, "k"}) == ":-2\r\n");
    CHECK(resp3({name, "k"}) == ":-2\r\n");
  }
}

TEST_CASE("fail-open: ranges and lists are empty arrays", "[policies][fail-open]") {
  for (const auto& args : {
           Argv{"LRANGE", "k", "0", "-1"},
           Argv{"HKEYS", "k"},
           Argv{"HVALS", "k"},
           Argv{"ZRANGE", "k", "0", "-1"},
           Argv{"ZRANGE", "k", "0", "-1", "REV", "WITHSCORES"},
           Argv{"ZRANGE", "k", "(1", "+inf", "BYSCORE", "REV", "LIMIT", "0", "10"},
           Argv{"ZRANGE", "k", "[a", "(b", "bylex", "limit", "0", "-1"},
           Argv{"ZREVRANGE", "k", "0", "-1", "WITHSCORES"},
           Argv{"ZRANGEBYSCORE", "k", "-inf", "+inf", "WITHSCORES", "LIMIT", "0", "1"},
           Argv{"ZREVRANGEBYSCORE", "k", "+inf", "-inf"},
           Argv{"ZRANGEBYLEX", "k", "-", "+"},
           Argv{"ZREVRANGEBYLEX", "k", "+", "-", "LIMIT", "1", "2"},
           Argv{"ZDIFF", "1", "k"},
           Argv{"ZDIFF", "2", "a", "b", "WITHSCORES"},
           Argv{"ZINTER", "2", "a", "b", "WEIGHTS", "1", "2.5", "AGGREGATE", "max", "WITHSCORES"},
           Argv{"ZUNION", "1", "a"},
           Argv{"XRANGE", "k", "-", "+"},
           Argv{"XRANGE", "k", "-", "+", "COUNT", "2"},
           Argv{"XRANGE", "k", "(1-0", "+"},
           Argv{"XRANGE", "k", "18446744073709551615-18446744073709551615", "+"},
           Argv{"XREVRANGE", "k", "+", "-"},
           Argv{"XREVRANGE", "k", "(5", "1-1", "count", "-1"},
           Argv{"SORT_RO", "k"},
           Argv{"SORT_RO", "k", "ALPHA", "DESC", "LIMIT", "0", "1"},
           Argv{"LPOS", "k", "e", "COUNT", "0"},
           Argv{"LPOS", "k", "e", "RANK", "1", "COUNT", "5"},
           Argv{"SRANDMEMBER", "k", "3"},
           Argv{"SRANDMEMBER", "k", "-9223372036854775807"},
           Argv{"HRANDFIELD", "k", "2"},
           Argv{"HRANDFIELD", "k", "-2", "WITHVALUES"},
           Argv{"ZRANDMEMBER", "k", "2", "withscores"},
       }) {
    INFO(args[0] << " ... (" << args.size() << " args)");
    const MissReply r = missReplyOf(rowOf(args), args, false);
    CHECK(r.shape == MissShape::kEmptyArray);
    CHECK(bytes(r, Protocol::kResp2) == "*0\r\n");
    CHECK(bytes(r, Protocol::kResp3) == "*0\r\n");
  }
}

TEST_CASE("fail-open: ranges Redis refuses fail closed", "[policies][fail-open]") {
  for (const auto& args : {
           Argv{"LRANGE", "k", "a", "b"},
           Argv{"LRANGE", "k", "01", "2"},
           Argv{"ZRANGE", "k", "a", "b"},
           Argv{"ZRANGE", "k", "0", "-1", "LIMIT", "0", "1"},
           Argv{"ZRANGE", "k", "[a", "+", "BYLEX", "WITHSCORES"},
           Argv{"ZRANGE", "k", "0", "-1", "BYSCORE", "BYLEX"},
           Argv{"ZRANGE", "k", "0", "1", "REV", "REV"},
           Argv{"ZRANGE", "k", "a", "b", "BYSCORE"},
           Argv{"ZRANGEBYSCORE", "k", "-inf", "+inf", "LIMIT", "0"},
           Argv{"ZRANGEBYSCORE", "k", "0", "1", "REV"},
           Argv{"ZRANGEBYLEX", "k", "-", "+", "WITHSCORES"},
           Argv{"ZREVRANGE", "k", "0", "-1", "BYSCORE"},
           Argv{"ZDIFF", "0", "k"},
           Argv{"ZDIFF", "1", "k", "WEIGHTS", "1"},
           Argv{"ZUNION", "2", "k"},
           Argv{"ZUNION", "1", "k", "WEIGHTS", "x"},
           Argv{"ZINTER", "1", "k", "AGGREGATE", "avg"},
           Argv{"XRANGE", "k", "a", "b"},
           Argv{"XRANGE", "k", "(-", "+"},
           Argv{"XRANGE", "k", "18446744073709551616", "+"},
           Argv{"XRANGE", "k", "(18446744073709551615-18446744073709551615", "+"},
           Argv{"XRANGE", "k", "-", "(0-0"},
           Argv{"XRANGE", "k", "-", "+", "COUNT"},
           Argv{"XRANGE", "k", "1-", "+"},
           Argv{"SORT_RO", "k", "LIMIT", "0"},
           Argv{"SORT_RO", "k", "STORE", "x"},
           Argv{"SORT_RO", "k", "BY", "w_*"},
           Argv{"SORT_RO", "k", "GET", "#"},
           Argv{"LPOS", "k", "e", "RANK", "0"},
           Argv{"LPOS", "k", "e", "COUNT", "-1"},
           Argv{"LPOS", "k", "e", "MAXLEN", "-1"},
           Argv{"LPOS", "k", "e", "COUNT"},
           Argv{"LPOS", "k", "e", "FOO", "1"},
           Argv{"SRANDMEMBER", "k", "x"},
           Argv{"SRANDMEMBER", "k", "1", "2"},
           Argv{"HRANDFIELD", "k", "2", "foo"},
           Argv{"HRANDFIELD", "k", "2", "WITHSCORES"},
           Argv{"HRANDFIELD", "k", "-9223372036854775808"},
           Argv{"HRANDFIELD", "k", "9223372036854775807", "WITHVALUES"},
           Argv{"ZRANDMEMBER", "k", "2", "WITHVALUES"},
       }) {
    INFO(args[0] << " ... (" << args.size() << " args)");
    CHECK(missReplyOf(rowOf(args), args, false).shape == MissShape::kNone);
  }
}

TEST_CASE("fail-open: HGETALL is an empty map, sets are empty sets", "[policies][fail-open]") {
  CHECK(resp2({"HGETALL", "k"}) == "*0\r\n");
  CHECK(resp3({"HGETALL", "k"}) == "%0\r\n");
  for (const auto& args : {Argv{"SMEMBERS", "k"}, Argv{"SINTER", "a", "b"}, Argv{"SUNION", "a"},
                           Argv{"SDIFF", "a", "b", "c"}}) {
    INFO(args[0]);
    const MissReply r = missReplyOf(rowOf(args), args, false);
    CHECK(r.shape == MissShape::kEmptySet);
    CHECK(bytes(r, Protocol::kResp2) == "*0\r\n");
    CHECK(bytes(r, Protocol::kResp3) == "~0\r\n");
  }
}

TEST_CASE("fail-open: MGET and friends get one nil per key", "[policies][fail-open]") {
  CHECK(miss({"MGET", "a"}).count == 1);
  CHECK(resp2({"MGET", "a"}) == "*1\r\n$-1\r\n");
  CHECK(resp2({"MGET", "a", "b", "c"}) == "*3\r\n$-1\r\n$-1\r\n$-1\r\n");
  CHECK(resp3({"MGET", "a", "b", "c"}) == "*3\r\n_\r\n_\r\n_\r\n");
  CHECK(miss({"mget", "a", "b", "c", "d", "e"}).count == 5);

  // Fields and members: one per argument after the key.
  CHECK(miss({"HMGET", "k", "f"}).shape == MissShape::kNils);
  CHECK(miss({"HMGET", "k", "f", "g"}).count == 2);
  CHECK(resp3({"HMGET", "k", "f", "g"}) == "*2\r\n_\r\n_\r\n");
  CHECK(resp2({"ZMSCORE", "k", "a", "b"}) == "*2\r\n$-1\r\n$-1\r\n");
  CHECK(resp2({"GEOHASH", "k", "a", "b", "c"}) == "*3\r\n$-1\r\n$-1\r\n$-1\r\n");
  CHECK(resp2({"GEOHASH", "k"}) == "*0\r\n");  // as Redis answers it

  // A large MGET: the count is the number of keys.
  std::vector<std::string> keys;
  for (int i = 0; i < 1000; ++i)
    keys.push_back("key" + std::to_string(i));
  Argv argv{"MGET"};
  for (const auto& k : keys)
    argv.emplace_back(k);
  const MissReply r = missReplyOf(rowOf(argv), argv, false);
  CHECK(r.shape == MissShape::kNils);
  CHECK(r.count == 1000);
  const std::string out = bytes(r, Protocol::kResp2);
  CHECK(out.starts_with("*1000\r\n$-1\r\n"));
  CHECK(out.size() == 7 + 1000 * 5);
}

TEST_CASE("fail-open: SMISMEMBER and BITFIELD_RO get one 0 per member", "[policies][fail-open]") {
  CHECK(resp2({"SMISMEMBER", "k", "a", "b", "c"}) == "*3\r\n:0\r\n:0\r\n:0\r\n");
  CHECK(resp3({"SMISMEMBER", "k", "a"}) == "*1\r\n:0\r\n");
  CHECK(resp2({"BITFIELD_RO", "k", "GET", "u8", "0", "get", "I5", "#3"}) == "*2\r\n:0\r\n:0\r\n");
  CHECK(resp2({"BITFIELD_RO", "k"}) == "*0\r\n");
  CHECK(shape({"BITFIELD_RO", "k", "GET", "i64", "0"}) == MissShape::kZeros);
  CHECK(shape({"BITFIELD_RO", "k", "GET", "u64", "0"}) == MissShape::kNone);
  CHECK(shape({"BITFIELD_RO", "k", "GET", "u0", "0"}) == MissShape::kNone);
  CHECK(shape({"BITFIELD_RO", "k", "GET", "u8", "-1"}) == MissShape::kNone);
  CHECK(shape({"BITFIELD_RO", "k", "GET", "u8"}) == MissShape::kNone);
  CHECK(shape({"BITFIELD_RO", "k", "SET", "u8", "0", "1"}) == MissShape::kNone);
  CHECK(shape({"BITFIELD_RO", "k", "GET", "u8", "#4294967295"}) == MissShape::kNone);
}

TEST_CASE("fail-open: TYPE, scans and XREAD", "[policies][fail-open]") {
  CHECK(resp2({"TYPE", "k"}) == "+none\r\n");
  CHECK(resp3({"TYPE", "k"}) == "+none\r\n");

  for (const auto* name : {"HSCAN", "SSCAN", "ZSCAN"}) {
    INFO(name);
    CHECK(resp2({name, "k", "0"}) == "*2\r\n$1\r\n0\r\n*0\r\n");
    CHECK(resp3({name, "k", "1234", "MATCH", "a*", "COUNT", "10"}) == "*2\r\n$1\r\n0\r\n*0\r\n");
    CHECK(shape({name, "k", "x"}) == MissShape::kNone);
    CHECK(shape({name, "k", "-1"}) == MissShape::kNone);
  }

  CHECK(resp2({"XREAD", "STREAMS", "k", "0"}) == "*-1\r\n");
  CHECK(resp3({"XREAD", "STREAMS", "k", "0"}) == "_\r\n");
  CHECK(shape({"XREAD", "COUNT", "2", "STREAMS", "a", "b", "0", "$"}) == MissShape::kNullArray);
  CHECK(shape({"xread", "count", "-1", "streams", "a", "1-2"}) == MissShape::kNullArray);
  // BLOCK waits in Redis: no shape.
  CHECK(shape({"XREAD", "BLOCK", "0", "STREAMS", "k", "$"}) == MissShape::kNone);
  CHECK(shape({"XREAD", "COUNT", "1", "BLOCK", "100", "STREAMS", "k", "$"}) == MissShape::kNone);
  // Malformed.
  CHECK(shape({"XREAD", "STREAMS", "a", "b", "0"}) == MissShape::kNone);
  CHECK(shape({"XREAD", "STREAMS", "k", "+"}) == MissShape::kNone);
  CHECK(shape({"XREAD", "STREAMS", "k", "x"}) == MissShape::kNone);
  CHECK(shape({"XREAD", "COUNT", "x", "STREAMS", "k", "0"}) == MissShape::kNone);
  CHECK(shape({"XREAD", "k", "0", "STREAMS"}) == MissShape::kNone);
}

TEST_CASE("fail-open: keyless, admin and other commands fail closed", "[policies][fail-open]") {
  for (const auto& args : {
           Argv{"KEYS", "*"},
           Argv{"SCAN", "0"},
           Argv{"RANDOMKEY"},
           Argv{"DBSIZE"},
           Argv{"PING"},
           Argv{"INFO"},
           Argv{"CONFIG", "GET", "maxmemory"},
           Argv{"OBJECT", "ENCODING", "k"},
           Argv{"OBJECT", "FREQ", "k"},
           Argv{"MEMORY", "USAGE", "k"},
           Argv{"GEOPOS", "k", "a"},
           Argv{"GEOSEARCH", "k", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km"},
           Argv{"GEORADIUS_RO", "k", "0", "0", "1", "km"},
           Argv{"XPENDING", "k", "g"},
           Argv{"XINFO", "STREAM", "k"},
           Argv{"EVAL_RO", "return 1", "0"},
           Argv{"FCALL_RO", "f", "0"},
           Argv{"BLPOP", "k", "0"},
           Argv{"WAIT", "1", "0"},
           Argv{"SUBSCRIBE", "c"},
           Argv{"MULTI"},
           Argv{"FLUSHALL"},
       }) {
    INFO(args[0]);
    CHECK(missReplyOf(rowOf(args), args, false).shape == MissShape::kNone);
    CHECK(missReplyOf(rowOf(args), args, true).shape == MissShape::kNone);
  }
}

TEST_CASE("fail-open: wrong arity fails closed", "[policies][fail-open]") {
  const CommandTable& table = CommandTable::redis70();
  const CommandInfo& get = *table.find("get");
  CHECK(missReplyOf(get, Argv{"GET"}, false).shape == MissShape::kNone);
  CHECK(missReplyOf(get, Argv{"GET", "a", "b"}, false).shape == MissShape::kNone);
  CHECK(missReplyOf(get, Argv{}, false).shape == MissShape::kNone);
  const CommandInfo& mget = *table.find("mget");
  CHECK(missReplyOf(mget, Argv{"MGET"}, false).shape == MissShape::kNone);
  const CommandInfo& zrank = *table.find("zrank");
  CHECK(missReplyOf(zrank, Argv{"ZRANK", "k", "m", "WITHSCORE"}, false).shape == MissShape::kNone);
}

// ---------------------------------------------------------------------------------------------
// Writes

TEST_CASE("fail-open: writes fail open only on cache patterns", "[policies][fail-open]") {
  for (const auto& args : {
           Argv{"SET", "k", "v"},
           Argv{"SET", "k", "v", "EX", "60"},
           Argv{"SET", "k", "v", "NX"},
           Argv{"SETNX", "k", "v"},
           Argv{"HSETNX", "k", "f", "v"},
           Argv{"MSETNX", "a", "1", "b", "2"},
           Argv{"EXPIRE", "k", "60"},
           Argv{"PEXPIRE", "k", "60000"},
           Argv{"EXPIREAT", "k", "1700000000"},
           Argv{"PEXPIREAT", "k", "1700000000000"},
       }) {
    INFO(args[0] << " ... (" << args.size() << " args)");
    CHECK(missReplyOf(rowOf(args), args, false).shape == MissShape::kNone);
    CHECK(missReplyOf(rowOf(args), args, true).shape != MissShape::kNone);
  }
}

TEST_CASE("fail-open: SET on a cache pattern answers nil, whatever its options",
          "[policies][fail-open]") {
  for (const auto& args : {
           Argv{"SET", "k", "v"}, Argv{"set", "k", "v"}, Argv{"SET", "k", "v", "EX", "60"},
           Argv{"SET", "k", "v", "px", "1500"}, Argv{"SET", "k", "v", "EXAT", "1700000000"},
           Argv{"SET", "k", "v", "PXAT", "1700000000000"}, Argv{"SET", "k", "v", "NX"},
           Argv{"SET", "k", "v", "nx", "EX", "10"}, Argv{"SET", "k", "v", "XX"},
           Argv{"SET", "k", "v", "XX", "KEEPTTL"}, Argv{"SET", "k", "v", "KEEPTTL"},
           Argv{"SET", "k", "v", "XX", "GET"}, Argv{"SET", "k", "v", "get", "xx", "EX", "5"},
           Argv{"SET", "k", "v", "EX", "10", "EX", "20"},  // Redis takes the last
       }) {
    INFO("SET ... (" << args.size() << " args)");
    const MissReply r = missReplyOf(rowOf(args), args, true);
    CHECK(r.shape == MissShape::kNil);
    CHECK(bytes(r, Protocol::kResp2) == "$-1\r\n");
    CHECK(bytes(r, Protocol::kResp3) == "_\r\n");
  }
  // Options Redis refuses.
  for (const auto& args : {
           Argv{"SET", "k", "v", "NX", "XX"},
           Argv{"SET", "k", "v", "EX", "0"},
           Argv{"SET", "k", "v", "EX", "-1"},
           Argv{"SET", "k", "v", "EX", "x"},
           Argv{"SET", "k", "v", "EX"},
           Argv{"SET", "k", "v", "PX", "10", "KEEPTTL"},
           Argv{"SET", "k", "v", "KEEPTTL", "EX", "10"},
           Argv{"SET", "k", "v", "EX", "10", "PX", "10"},
           Argv{"SET", "k", "v", "PERSIST"},
           Argv{"SET", "k", "v", "foo"},
           Argv{"SET", "k", "v", "EX", "99999999999999999999"},
       }) {
    INFO("SET ... (" << args.size() << " args)");
    CHECK(missReplyOf(rowOf(args), args, true).shape == MissShape::kNone);
  }
}

TEST_CASE("fail-open: a lock's SET NX is never answered as acquired", "[policies][fail-open]") {
  for (const auto& args : {
           Argv{"SET", "lock", "owner", "NX"},
           Argv{"SET", "lock", "owner", "NX", "PX", "30000"},
           Argv{"SET", "lock", "owner", "EX", "30", "NX"},
           Argv{"SET", "lock", "owner", "NX", "GET"},
           Argv{"SET", "lock", "owner", "GET", "NX", "PX", "30000"},
           Argv{"SETNX", "lock", "owner"},
           Argv{"HSETNX", "lock", "f", "owner"},
           Argv{"MSETNX", "lock1", "a", "lock2", "b"},
       }) {
    for (const bool cacheWrite : {false, true}) {
      INFO(args[0] << " ... (" << args.size() << " args), cacheWrite " << cacheWrite);
      const MissReply r = missReplyOf(rowOf(args), args, cacheWrite);
      for (const Protocol p : {Protocol::kResp2, Protocol::kResp3}) {
        const std::string out = bytes(r, p);
        CHECK(out != "+OK\r\n");
        CHECK(out != ":1\r\n");
        // With GET, Redis's nil means "there was no old value, and it is set now".
        if (args.size() > 4 && (args[4] == "GET" || args[3] == "GET")) CHECK(out.empty());
        CHECK((out.empty() || out == "$-1\r\n" || out == "_\r\n" || out == ":0\r\n"));
      }
    }
  }
  // SET ... GET without XX: the nil would say the write happened.
  CHECK(shape({"SET", "k", "v", "GET"}, true) == MissShape::kNone);
  CHECK(shape({"SET", "k", "v", "NX", "GET"}, true) == MissShape::kNone);
  CHECK(shape({"SET", "k", "v", "GET", "EX", "10"}, true) == MissShape::kNone);
}

TEST_CASE("fail-open: conditional cache writes answer 0", "[policies][fail-open]") {
  CHECK(resp2({"SETNX", "k", "v"}, true) == ":0\r\n");
  CHECK(resp3({"HSETNX", "k", "f", "v"}, true) == ":0\r\n");
  CHECK(resp2({"MSETNX", "a", "1"}, true) == ":0\r\n");
  CHECK(resp2({"MSETNX", "a", "1", "b", "2", "c", "3"}, true) == ":0\r\n");
  CHECK(shape({"MSETNX", "a", "1", "b"}, true) == MissShape::kNone);

  for (const auto* name : {"EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "expire"}) {
    INFO(name);
    CHECK(resp2({name, "k", "100"}, true) == ":0\r\n");
    CHECK(resp3({name, "k", "-5"}, true) == ":0\r\n");
    CHECK(shape({name, "k", "100", "NX"}, true) == MissShape::kZero);
    CHECK(shape({name, "k", "100", "xx", "gt"}, true) == MissShape::kZero);
    CHECK(shape({name, "k", "100", "LT"}, true) == MissShape::kZero);
    CHECK(shape({name, "k", "100", "NX", "GT"}, true) == MissShape::kNone);
    CHECK(shape({name, "k", "100", "NX", "XX"}, true) == MissShape::kNone);
    CHECK(shape({name, "k", "100", "GT", "LT"}, true) == MissShape::kNone);
    CHECK(shape({name, "k", "100", "FOO"}, true) == MissShape::kNone);
    CHECK(shape({name, "k", "x"}, true) == MissShape::kNone);
    CHECK(shape({name, "k", "9223372036854775807"}, true) == MissShape::kNone);
  }
}

TEST_CASE("fail-open: every other write fails closed", "[policies][fail-open]") {
  for (const auto& args : {
           Argv{"DEL", "k"},
           Argv{"UNLINK", "k"},
           Argv{"GETDEL", "k"},
           Argv{"GETSET", "k", "v"},
           Argv{"SETEX", "k", "10", "v"},
           Argv{"PSETEX", "k", "100", "v"},
           Argv{"MSET", "a", "1"},
           Argv{"INCR", "k"},
           Argv{"INCRBY", "k", "2"},
           Argv{"DECR", "k"},
           Argv{"APPEND", "k", "v"},
           Argv{"SETRANGE", "k", "0", "v"},
           Argv{"HSET", "k", "f", "v"},
           Argv{"HDEL", "k", "f"},
           Argv{"HINCRBY", "k", "f", "1"},
           Argv{"LPUSH", "k", "v"},
           Argv{"RPUSH", "k", "v"},
           Argv{"LPOP", "k"},
           Argv{"SADD", "k", "m"},
           Argv{"SREM", "k", "m"},
           Argv{"SPOP", "k"},
           Argv{"ZADD", "k", "1", "m"},
           Argv{"ZREM", "k", "m"},
           Argv{"XADD", "k", "*", "f", "v"},
           Argv{"PERSIST", "k"},
           Argv{"RENAME", "a", "b"},
           Argv{"COPY", "a", "b"},
           Argv{"SORT", "k"},
           Argv{"PFADD", "k", "a"},
           Argv{"BITFIELD", "k", "GET", "u8", "0"},
           Argv{"ZRANGESTORE", "d", "k", "0", "-1"},
           Argv{"XREADGROUP", "GROUP", "g", "c", "STREAMS", "k", ">"},
       }) {
    INFO(args[0]);
    CHECK(missReplyOf(rowOf(args), args, false).shape == MissShape::kNone);
    CHECK(missReplyOf(rowOf(args), args, true).shape == MissShape::kNone);
  }
}

TEST_CASE("fail-open: no write other than GETEX fails open without cacheWrite",
          "[policies][fail-open]") {
  // Every row of the table, with arguments of every small count: writes answer nothing unless
  // the request is on cache patterns (GETEX excepted: it answers like GET).
  const CommandTable& table = CommandTable::redis70();
  for (const CommandInfo& top : table.all()) {
    const auto check = [](const CommandInfo& info, std::string_view name) {
      if (!info.has(keygate::commands::kWrite) || info.name == "getex") return;
      for (std::size_t n = 1; n <= 8; ++n) {
        for (const std::string_view filler : {"1", "0", "NX", "XX"}) {
          Argv argv(n, filler);
          argv[0] = name;
          INFO(info.name << " with " << n << " args of " << filler);
          CHECK(missReplyOf(info, argv, false).shape == MissShape::kNone);
        }
      }
    };
    check(top, top.name);
    for (const CommandInfo& sub : top.subcommands)
      check(sub, top.name);
  }
}

// ---------------------------------------------------------------------------------------------
// The documented table

namespace {

// Example requests for every entry of missClasses(): the docs cannot name a command these
// tests do not check.
const std::map<std::string, Argv>& examples() {
  static const std::map<std::string, Argv> kExamples = {
      {"GET", {"GET", "k"}},
      {"GETEX", {"GETEX", "k", "EX", "10"}},
      {"HGET", {"HGET", "k", "f"}},
      {"LINDEX", {"LINDEX", "k", "0"}},
      {"ZSCORE", {"ZSCORE", "k", "m"}},
      {"ZRANK", {"ZRANK", "k", "m"}},
      {"ZREVRANK", {"ZREVRANK", "k", "m"}},
      {"DUMP", {"DUMP", "k"}},
      {"GEODIST", {"GEODIST", "k", "a", "b", "km"}},
      {"LPOS without COUNT", {"LPOS", "k", "e", "RANK", "-1"}},
      {"SRANDMEMBER without count", {"SRANDMEMBER", "k"}},
      {"HRANDFIELD without count", {"HRANDFIELD", "k"}},
      {"ZRANDMEMBER without count", {"ZRANDMEMBER", "k"}},
      {"GETRANGE", {"GETRANGE", "k", "0", "-1"}},
      {"SUBSTR", {"SUBSTR", "k", "0", "-1"}},
      {"LCS", {"LCS", "a", "b"}},
      {"EXISTS", {"EXISTS", "a", "b"}},
      {"TOUCH", {"TOUCH", "a"}},
      {"HEXISTS", {"HEXISTS", "k", "f"}},
      {"SISMEMBER", {"SISMEMBER", "k", "m"}},
      {"STRLEN", {"STRLEN", "k"}},
      {"HSTRLEN", {"HSTRLEN", "k", "f"}},
      {"HLEN", {"HLEN", "k"}},
      {"LLEN", {"LLEN", "k"}},
      {"SCARD", {"SCARD", "k"}},
      {"ZCARD", {"ZCARD", "k"}},
      {"XLEN", {"XLEN", "k"}},
      {"ZCOUNT", {"ZCOUNT", "k", "-inf", "(5"}},
      {"ZLEXCOUNT", {"ZLEXCOUNT", "k", "[a", "+"}},
      {"SINTERCARD", {"SINTERCARD", "2", "a", "b", "LIMIT", "10"}},
      {"ZINTERCARD", {"ZINTERCARD", "1", "a"}},
      {"BITCOUNT", {"BITCOUNT", "k", "0", "-1", "BIT"}},
      {"GETBIT", {"GETBIT", "k", "7"}},
      {"PFCOUNT", {"PFCOUNT", "a", "b"}},
      {"LCS with LEN", {"LCS", "a", "b", "LEN"}},
      {"TTL", {"TTL", "k"}},
      {"PTTL", {"PTTL", "k"}},
      {"EXPIRETIME", {"EXPIRETIME", "k"}},
      {"PEXPIRETIME", {"PEXPIRETIME", "k"}},
      {"LRANGE", {"LRANGE", "k", "0", "-1"}},
      {"HKEYS", {"HKEYS", "k"}},
      {"HVALS", {"HVALS", "k"}},
      {"ZRANGE", {"ZRANGE", "k", "(1", "+inf", "BYSCORE", "LIMIT", "0", "10", "WITHSCORES"}},
      {"ZREVRANGE", {"ZREVRANGE", "k", "0", "-1", "WITHSCORES"}},
      {"ZRANGEBYSCORE", {"ZRANGEBYSCORE", "k", "-inf", "+inf", "WITHSCORES", "LIMIT", "0", "5"}},
      {"ZREVRANGEBYSCORE", {"ZREVRANGEBYSCORE", "k", "+inf", "-inf"}},
      {"ZRANGEBYLEX", {"ZRANGEBYLEX", "k", "-", "+", "LIMIT", "0", "5"}},
      {"ZREVRANGEBYLEX", {"ZREVRANGEBYLEX", "k", "+", "-"}},
      {"ZDIFF", {"ZDIFF", "2", "a", "b", "WITHSCORES"}},
      {"ZINTER", {"ZINTER", "2", "a", "b", "WEIGHTS", "1", "2", "AGGREGATE", "MIN"}},
      {"ZUNION", {"ZUNION", "1", "a"}},
      {"XRANGE", {"XRANGE", "k", "-", "+", "COUNT", "10"}},
      {"XREVRANGE", {"XREVRANGE", "k", "+", "(1-0"}},
      {"SORT_RO without BY or GET", {"SORT_RO", "k", "LIMIT", "0", "10", "DESC", "ALPHA"}},
      {"LPOS with COUNT", {"LPOS", "k", "e", "COUNT", "0"}},
      {"SRANDMEMBER with count", {"SRANDMEMBER", "k", "-5"}},
      {"HRANDFIELD with count", {"HRANDFIELD", "k", "3", "WITHVALUES"}},
      {"ZRANDMEMBER with count", {"ZRANDMEMBER", "k", "3", "WITHSCORES"}},
      {"HGETALL", {"HGETALL", "k"}},
      {"SMEMBERS", {"SMEMBERS", "k"}},
      {"SINTER", {"SINTER", "a", "b"}},
      {"SUNION", {"SUNION", "a", "b"}},
      {"SDIFF", {"SDIFF", "a", "b"}},
      {"MGET", {"MGET", "a", "b", "c"}},
      {"HMGET", {"HMGET", "k", "f", "g"}},
      {"ZMSCORE", {"ZMSCORE", "k", "a", "b"}},
      {"GEOHASH", {"GEOHASH", "k", "a"}},
      {"SMISMEMBER", {"SMISMEMBER", "k", "a", "b"}},
      {"BITFIELD_RO", {"BITFIELD_RO", "k", "GET", "u8", "0", "GET", "i16", "#1"}},
      {"TYPE", {"TYPE", "k"}},
      {"HSCAN", {"HSCAN", "k", "0", "MATCH", "*", "COUNT", "10"}},
      {"SSCAN", {"SSCAN", "k", "0"}},
      {"ZSCAN", {"ZSCAN", "k", "0"}},
      {"XREAD without BLOCK", {"XREAD", "COUNT", "10", "STREAMS", "a", "b", "0", "$"}},
      {"SET", {"SET", "k", "v", "EX", "60"}},
      {"SET NX", {"SET", "lock", "v", "NX", "PX", "30000"}},
      {"SET XX", {"SET", "k", "v", "XX", "KEEPTTL"}},
      {"SET XX GET", {"SET", "k", "v", "XX", "GET"}},
      {"SETNX", {"SETNX", "k", "v"}},
      {"HSETNX", {"HSETNX", "k", "f", "v"}},
      {"MSETNX", {"MSETNX", "a", "1", "b", "2"}},
      {"EXPIRE", {"EXPIRE", "k", "60", "NX"}},
      {"PEXPIRE", {"PEXPIRE", "k", "60000"}},
      {"EXPIREAT", {"EXPIREAT", "k", "1700000000"}},
      {"PEXPIREAT", {"PEXPIREAT", "k", "1700000000000", "GT"}},
      {"DEL", {"DEL", "k"}},
      {"UNLINK", {"UNLINK", "a", "b"}},
      {"GETDEL", {"GETDEL", "k"}},
      {"GETSET", {"GETSET", "k", "v"}},
      {"SET GET", {"SET", "k", "v", "GET"}},
      {"SET NX GET", {"SET", "k", "v", "NX", "GET"}},
      {"SETEX", {"SETEX", "k", "10", "v"}},
      {"PSETEX", {"PSETEX", "k", "100", "v"}},
      {"MSET", {"MSET", "a", "1"}},
      {"INCR", {"INCR", "k"}},
      {"INCRBY", {"INCRBY", "k", "2"}},
      {"DECR", {"DECR", "k"}},
      {"APPEND", {"APPEND", "k", "v"}},
      {"HSET", {"HSET", "k", "f", "v"}},
      {"HDEL", {"HDEL", "k", "f"}},
      {"HINCRBY", {"HINCRBY", "k", "f", "1"}},
      {"LPUSH", {"LPUSH", "k", "v"}},
      {"RPUSH", {"RPUSH", "k", "v"}},
      {"LPOP", {"LPOP", "k"}},
      {"SADD", {"SADD", "k", "m"}},
      {"SREM", {"SREM", "k", "m"}},
      {"ZADD", {"ZADD", "k", "1", "m"}},
      {"ZREM", {"ZREM", "k", "m"}},
      {"XADD", {"XADD", "k", "*", "f", "v"}},
      {"PERSIST", {"PERSIST", "k"}},
      {"KEYS", {"KEYS", "*"}},
      {"SCAN", {"SCAN", "0"}},
      {"RANDOMKEY", {"RANDOMKEY"}},
      {"DBSIZE", {"DBSIZE"}},
      {"OBJECT ENCODING", {"OBJECT", "ENCODING", "k"}},
      {"MEMORY USAGE", {"MEMORY", "USAGE", "k"}},
      {"BITPOS", {"BITPOS", "k", "0"}},
      {"GEOPOS", {"GEOPOS", "k", "a"}},
      {"GEOSEARCH", {"GEOSEARCH", "k", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km"}},
      {"GEORADIUS_RO", {"GEORADIUS_RO", "k", "0", "0", "1", "km"}},
      {"XPENDING", {"XPENDING", "k", "g"}},
      {"XINFO STREAM", {"XINFO", "STREAM", "k"}},
      {"XREAD with BLOCK", {"XREAD", "BLOCK", "0", "STREAMS", "k", "$"}},
      {"LCS with IDX", {"LCS", "a", "b", "IDX"}},
      {"SORT_RO with BY or GET", {"SORT_RO", "k", "BY", "w_*"}},
      {"EVAL_RO", {"EVAL_RO", "return 1", "0"}},
      {"FCALL_RO", {"FCALL_RO", "f", "0"}},
  };
  return kExamples;
}

// The shape each documented class promises, by class name.
MissShape promised(std::string_view className) {
  static const std::map<std::string_view, MissShape> kPromised = {
      {"missing value", MissShape::kNil},
      {"substring of a missing string", MissShape::kEmptyString},
      {"counts and membership", MissShape::kZero},
      {"time to live", MissShape::kMinusTwo},
      {"ranges and lists", MissShape::kEmptyArray},
      {"whole hash", MissShape::kEmptyMap},
      {"sets", MissShape::kEmptySet},
      {"several values", MissShape::kNils},
      {"several memberships", MissShape::kZeros},
      {"type", MissShape::kNoneType},
      {"scan of a key", MissShape::kEmptyScan},
      {"stream read", MissShape::kNullArray},
      {"cache writes: SET", MissShape::kNil},
      {"cache writes: conditional", MissShape::kZero},
      {"writes that never fail open", MissShape::kNone},
      {"everything else", MissShape::kNone},
  };
  const auto it = kPromised.find(className);
  INFO("class: " << className);
  REQUIRE(it != kPromised.end());
  return it->second;
}

// Bytes as the docs spell them: CR LF as a space.
std::string spelled(MissReply r, Protocol p) {
  std::string out;
  for (const char c : bytes(r, p)) {
    if (c == '\r') continue;
    out.push_back(c == '\n' ? ' ' : c);
  }
  return std::string(trim(out));
}

}  // namespace

TEST_CASE("fail-open: the documented table, row by row", "[policies][fail-open]") {
  const auto classes = missClasses();
  REQUIRE(classes.size() == 16);
  std::size_t entries = 0;
  for (const MissClass& c : classes) {
    const MissShape expected = promised(c.name);
    INFO("class: " << c.name);
    // The reply column names the bytes.
    if (expected == MissShape::kNone) {
      CHECK(std::string_view(c.reply).find("fails closed") != std::string_view::npos);
    } else if (expected == MissShape::kNils) {
      CHECK(std::string_view(c.reply).find("$-1") != std::string_view::npos);
      CHECK(std::string_view(c.reply).find('_') != std::string_view::npos);
    } else if (expected == MissShape::kZeros) {
      CHECK(std::string_view(c.reply).find(":0") != std::string_view::npos);
    } else {
      for (const Protocol p : {Protocol::kResp2, Protocol::kResp3}) {
        const std::string b = spelled({expected, 0}, p);
        INFO("bytes " << b);
        CHECK(std::string_view(c.reply).find(b) != std::string_view::npos);
      }
    }

    const auto items = entriesOf(c);
    CHECK_FALSE(items.empty());
    for (const std::string& item : items) {
      ++entries;
      INFO("entry: " << item);
      const auto it = examples().find(item);
      REQUIRE(it != examples().end());
      const Argv& argv = it->second;
      const CommandInfo& info = rowOf(argv);
      const bool isWrite = info.has(keygate::commands::kWrite) && info.name != "getex";
      if (expected != MissShape::kNone) CHECK(isWrite == c.write);
      if (c.write) CHECK(isWrite);
      const MissReply open = missReplyOf(info, argv, true);
      const MissReply closed = missReplyOf(info, argv, false);
      CHECK(open.shape == expected);
      if (c.write) {
        CHECK(closed.shape == MissShape::kNone);  // writes fail open on cache patterns only
      } else {
        CHECK(closed.shape == expected);
      }
    }
  }
  CHECK(entries == examples().size());  // no example left over: every one is documented
}

TEST_CASE("fail-open: every command that fails open is in the documented table",
          "[policies][fail-open]") {
  // First words of the entries of classes that fail open.
  std::vector<std::string> documented;
  for (const MissClass& c : missClasses()) {
    if (promised(c.name) == MissShape::kNone) continue;
    for (const std::string& item : entriesOf(c)) {
      documented.push_back(item.substr(0, item.find(' ')));
    }
  }
  const auto isDocumented = [&](const std::string& name) {
    return std::find(documented.begin(), documented.end(), name) != documented.end();
  };
  std::size_t failingOpen = 0;
  const CommandTable& table = CommandTable::redis70();
  const auto check = [&](const CommandInfo& info, std::string_view topName) {
    const std::size_t minArgs = static_cast<std::size_t>(info.arity < 0 ? -info.arity : info.arity);
    for (std::size_t n = std::max<std::size_t>(minArgs, 1); n <= minArgs + 2; ++n) {
      for (const std::string_view filler : {"1", "0", "-1"}) {
        Argv argv(n, filler);
        argv[0] = topName;
        if (info.name.find('|') != std::string_view::npos && n > 1) {
          argv[1] = info.name.substr(info.name.find('|') + 1);
        }
        if (missReplyOf(info, argv, true).shape == MissShape::kNone) continue;
        ++failingOpen;
        INFO(info.name << " with " << n << " args of " << filler);
        CHECK(isDocumented(upper(topName)));
      }
    }
  };
  for (const CommandInfo& top : table.all()) {
    check(top, top.name);
    for (const CommandInfo& sub : top.subcommands)
      check(sub, top.name);
  }
  CHECK(failingOpen > 50);
}

TEST_CASE("fail-open: any arguments, never out of bounds", "[policies][fail-open]") {
  // Sanitizer builds catch a read past argv; the shapes must stay plausible.
  const std::vector<std::string_view> tokens = {
      "0",
      "1",
      "-1",
      "#3",
      "u8",
      "i64",
      "GET",
      "get",
      "COUNT",
      "limit",
      "RANK",
      "streams",
      "STREAMS",
      "$",
      "-",
      "+",
      "(1",
      "[a",
      "(",
      "withscores",
      "WITHVALUES",
      "NX",
      "xx",
      "EX",
      "px",
      "KEEPTTL",
      "IDX",
      "len",
      "BY",
      "inf",
      "nan",
      "byscore",
      "BYLEX",
      "rev",
      "weights",
      "AGGREGATE",
      "sum",
      "BLOCK",
      "persist",
      "GT",
      "lt",
      "minmatchlen",
      "MAXLEN",
      "alpha",
      "k",
      "",
      "1-1",
      "9223372036854775807",
      "-9223372036854775808",
      "99999999999999999999",
      "18446744073709551615-0",
  };
  std::mt19937 rng(20240607);
  std::uniform_int_distribution<std::size_t> pick(0, tokens.size() - 1);
  std::uniform_int_distribution<std::size_t> length(1, 9);
  const CommandTable& table = CommandTable::redis70();
  std::size_t answered = 0;
  const auto fuzz = [&](const CommandInfo& info, std::string_view topName) {
    for (int round = 0; round < 300; ++round) {
      Argv argv(length(rng));
      for (auto& a : argv)
        a = tokens[pick(rng)];
      argv[0] = topName;
      for (const bool cacheWrite : {false, true}) {
        const MissReply r = missReplyOf(info, argv, cacheWrite);
        if (r.shape != MissShape::kNone) ++answered;
        if (r.shape == MissShape::kNils || r.shape == MissShape::kZeros) {
          CHECK(r.count < argv.size());
        }
        std::string out;
        appendMissReply(out, r, Protocol::kResp3);
        CHECK(out.empty() == (r.shape == MissShape::kNone));
      }
    }
  };
  for (const CommandInfo& top : table.all()) {
    fuzz(top, top.name);
    for (const CommandInfo& sub : top.subcommands)
      fuzz(sub, top.name);
  }
  CHECK(answered > 0);
}

TEST_CASE("fail-open: a row that is not the table's own gets the same reply",
          "[policies][fail-open]") {
  // missReplyOf indexes the table's rows by address; a copy lies outside, and is looked up by
  // name.
  const std::vector<Argv> requests = {
      {"GET", "k"},
      {"SET", "k", "v"},
      {"SET", "k", "v", "NX", "GET"},
      {"MGET", "a", "b"},
      {"DEL", "k"},
      {"GETEX", "k", "PX", "10"},
      {"HSETNX", "h", "f", "v"},
      {"LRANGE", "k", "0", "x"},
      {"TTL", "k"},
      {"PING"},
      {"INCR", "k"},
      {"GET"},
  };
  for (const auto& argv : requests) {
    const CommandInfo* row = CommandTable::redis70().find(argv.front());
    REQUIRE(row != nullptr);
    const CommandInfo copy = *row;
    for (const bool cacheWrite : {false, true}) {
      INFO(argv.front() << " " << argv.size() << " cacheWrite " << cacheWrite);
      const MissReply a = missReplyOf(*row, argv, cacheWrite);
      const MissReply b = missReplyOf(copy, argv, cacheWrite);
      CHECK(a.shape == b.shape);
      CHECK(a.count == b.count);
    }
  }
}
