#include <catch2/catch.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/commands/command_table.hpp"

namespace keygate::commands {
namespace {

struct Extracted {
  KeyStatus status = KeyStatus::kOk;
  std::vector<std::string> keys;     // argv[argIndex] of each KeyRef, in order
  std::vector<std::uint32_t> flags;  // KeyRef::flags, same order
};

Extracted extract(std::vector<std::string_view> argv, std::uint32_t options = 0) {
  const CommandInfo* info = CommandTable::redis70().resolve(argv);
  INFO("argv[0] " << (argv.empty() ? "" : argv[0]));
  REQUIRE(info != nullptr);
  REQUIRE(arityOk(*info, argv.size()));
  std::vector<KeyRef> refs;
  Extracted e;
  e.status = extractKeys(*info, argv, refs, options);
  for (const KeyRef& r : refs) {
    REQUIRE(r.argIndex < argv.size());
    e.keys.emplace_back(argv[r.argIndex]);
    e.flags.push_back(r.flags);
  }
  return e;
}

using Keys = std::vector<std::string>;

Keys keysOf(std::vector<std::string_view> argv) {
  Extracted e = extract(std::move(argv));
  CHECK(e.status == KeyStatus::kOk);
  return e.keys;
}

KeyStatus statusOf(std::vector<std::string_view> argv) {
  Extracted e = extract(std::move(argv));
  CHECK((e.status == KeyStatus::kOk || e.keys.empty()));  // refused commands have no keys
  return e.status;
}

TEST_CASE("single-key commands", "[keys]") {
  CHECK(keysOf({"GET", "k"}) == Keys{"k"});
  CHECK(keysOf({"set", "k", "v"}) == Keys{"k"});
  CHECK(keysOf({"SET", "k", "v", "EX", "10", "NX"}) == Keys{"k"});
  CHECK(keysOf({"incr", "counter"}) == Keys{"counter"});
  CHECK(keysOf({"hset", "h", "f", "v", "f2", "v2"}) == Keys{"h"});
}

TEST_CASE("key flags come from the spec or the keys procedure", "[keys]") {
  CHECK(extract({"get", "k"}).flags == std::vector<std::uint32_t>{kKeyRO | kKeyAccess});
  // SET has variable flags: overwrite, or read-modify-write with GET.
  CHECK(extract({"set", "k", "v"}).flags == std::vector<std::uint32_t>{kKeyOW | kKeyUpdate});
  CHECK(extract({"set", "k", "v", "get"}).flags ==
        std::vector<std::uint32_t>{kKeyRW | kKeyAccess | kKeyUpdate});
  CHECK(extract({"bitfield", "b", "GET", "u8", "0"}).flags ==
        std::vector<std::uint32_t>{kKeyRO | kKeyAccess});
  CHECK(extract({"bitfield", "b", "GET", "u8", "0", "SET", "u8", "0", "1"}).flags ==
        std::vector<std::uint32_t>{kKeyRW | kKeyAccess | kKeyUpdate});
  CHECK(extract({"del", "a"}).flags == std::vector<std::uint32_t>{kKeyRM | kKeyDelete});
}

TEST_CASE("multi-key ranges", "[keys]") {
  CHECK(keysOf({"MSET", "a", "1", "b", "2", "c", "3"}) == Keys{"a", "b", "c"});
  CHECK(keysOf({"msetnx", "a", "1"}) == Keys{"a"});
  CHECK(keysOf({"MGET", "a", "b", "c"}) == Keys{"a", "b", "c"});
  CHECK(keysOf({"DEL", "a"}) == Keys{"a"});
  CHECK(keysOf({"del", "a", "b", "c", "d"}) == Keys{"a", "b", "c", "d"});
  CHECK(keysOf({"unlink", "a", "b"}) == Keys{"a", "b"});
  CHECK(keysOf({"exists", "a", "a"}) == Keys{"a", "a"});
  // BLPOP: keys then a timeout (lastkey -2).
  CHECK(keysOf({"BLPOP", "l1", "l2", "0"}) == Keys{"l1", "l2"});
  CHECK(keysOf({"blpop", "l1", "1.5"}) == Keys{"l1"});
  CHECK(keysOf({"bitop", "AND", "dest", "s1", "s2"}) == Keys{"dest", "s1", "s2"});
  CHECK(extract({"bitop", "AND", "dest", "s1", "s2"}).flags ==
        std::vector<std::uint32_t>{kKeyOW | kKeyUpdate, kKeyRO | kKeyAccess, kKeyRO | kKeyAccess});
  CHECK(keysOf({"lmove", "src", "dst", "LEFT", "RIGHT"}) == Keys{"src", "dst"});
  CHECK(keysOf({"blmove", "src", "dst", "LEFT", "RIGHT", "0"}) == Keys{"src", "dst"});
  CHECK(keysOf({"rename", "old", "new"}) == Keys{"old", "new"});
  CHECK(keysOf({"copy", "a", "b", "REPLACE"}) == Keys{"a", "b"});
  CHECK(keysOf({"smove", "a", "b", "m"}) == Keys{"a", "b"});
  CHECK(keysOf({"sinterstore", "d", "a", "b"}) == Keys{"d", "a", "b"});
}

TEST_CASE("numkeys: EVAL, EVALSHA, FCALL", "[keys]") {
  CHECK(keysOf({"EVAL", "return 1", "2", "k1", "k2", "arg1"}) == Keys{"k1", "k2"});
  CHECK(keysOf({"eval", "return 1", "0"}).empty());
  CHECK(keysOf({"eval", "return 1", "0", "arg"}).empty());
  CHECK(keysOf({"evalsha", "abc", "1", "k", "a", "b"}) == Keys{"k"});
  CHECK(keysOf({"eval_ro", "s", "1", "k"}) == Keys{"k"});
  CHECK(keysOf({"FCALL", "fn", "3", "a", "b", "c"}) == Keys{"a", "b", "c"});
  CHECK(keysOf({"fcall_ro", "fn", "0"}).empty());
  CHECK(extract({"eval", "s", "1", "k"}).flags ==
        std::vector<std::uint32_t>{kKeyRW | kKeyAccess | kKeyUpdate});

  CHECK(statusOf({"eval", "s", "3", "k1", "k2"}) == KeyStatus::kBadNumKeys);  // too many
  CHECK(statusOf({"eval", "s", "-1", "k1"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"eval", "s", "x", "k1"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"eval", "s", "", "k1"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"eval", "s", "01", "k1"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"eval", "s", "+1", "k1"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"eval", "s", " 1", "k1"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"eval", "s", "1 ", "k1"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"eval", "s", "-0", "k1"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({
            "eval",
            "s",
            "1",
        }) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"fcall", "f", "99999999999999999999999999999", "k"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"fcall", "f", "9223372036854775808", "k"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"evalsha", "s", "4294967297", "k"}) == KeyStatus::kBadNumKeys);
}

TEST_CASE("a refused command leaves the output as it was", "[keys]") {
  const CommandInfo* eval = CommandTable::redis70().find("eval");
  REQUIRE(eval != nullptr);
  std::vector<KeyRef> out{{7, 0}};
  std::vector<std::string_view> argv{"eval", "s", "2", "k"};
  CHECK(extractKeys(*eval, argv, out) == KeyStatus::kBadNumKeys);
  REQUIRE(out.size() == 1);
  CHECK(out[0].argIndex == 7);
  // and appends otherwise
  std::vector<std::string_view> ok{"eval", "s", "1", "k"};
  CHECK(extractKeys(*eval, ok, out) == KeyStatus::kOk);
  REQUIRE(out.size() == 2);
  CHECK(out[1].argIndex == 3);
}

TEST_CASE("numkeys after a destination: ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE", "[keys]") {
  CHECK(keysOf({"ZUNIONSTORE", "dest", "2", "a", "b", "WEIGHTS", "1", "2"}) ==
        Keys{"dest", "a", "b"});
  CHECK(keysOf({"zinterstore", "dest", "1", "a"}) == Keys{"dest", "a"});
  CHECK(keysOf({"zdiffstore", "dest", "3", "a", "b", "c"}) == Keys{"dest", "a", "b", "c"});
  CHECK(extract({"zunionstore", "d", "1", "a"}).flags ==
        std::vector<std::uint32_t>{kKeyOW | kKeyUpdate, kKeyRO | kKeyAccess});
  CHECK(statusOf({"zunionstore", "dest", "3", "a", "b"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"zunionstore", "dest", "0", "a"}) == KeyStatus::kBadNumKeys);  // needs a key
  CHECK(statusOf({"zunionstore", "dest", "two", "a", "b"}) == KeyStatus::kBadNumKeys);
}

TEST_CASE("numkeys first: ZUNION, ZINTER, ZDIFF, SINTERCARD, ZINTERCARD", "[keys]") {
  CHECK(keysOf({"ZUNION", "2", "a", "b", "WITHSCORES"}) == Keys{"a", "b"});
  CHECK(keysOf({"zinter", "1", "a"}) == Keys{"a"});
  CHECK(keysOf({"zdiff", "2", "a", "b"}) == Keys{"a", "b"});
  CHECK(keysOf({"SINTERCARD", "2", "s1", "s2", "LIMIT", "5"}) == Keys{"s1", "s2"});
  CHECK(keysOf({"zintercard", "1", "z"}) == Keys{"z"});
  CHECK(statusOf({"sintercard", "3", "s1", "s2"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"sintercard", "0", "s1"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"zunion", "-2", "a", "b"}) == KeyStatus::kBadNumKeys);
}

TEST_CASE("LMPOP, BLMPOP, ZMPOP, BZMPOP", "[keys]") {
  CHECK(keysOf({"LMPOP", "2", "l1", "l2", "LEFT", "COUNT", "3"}) == Keys{"l1", "l2"});
  CHECK(keysOf({"BLMPOP", "0.5", "2", "l1", "l2", "RIGHT"}) == Keys{"l1", "l2"});
  CHECK(keysOf({"ZMPOP", "1", "z", "MIN"}) == Keys{"z"});
  CHECK(keysOf({"bzmpop", "0", "3", "a", "b", "c", "MAX", "COUNT", "1"}) == Keys{"a", "b", "c"});
  CHECK(extract({"lmpop", "1", "l", "LEFT"}).flags ==
        std::vector<std::uint32_t>{kKeyRW | kKeyAccess | kKeyDelete});
  CHECK(statusOf({"lmpop", "5", "l1", "LEFT"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"blmpop", "0", "x", "l1", "LEFT"}) == KeyStatus::kBadNumKeys);
  CHECK(statusOf({"zmpop", "0", "z", "MIN"}) == KeyStatus::kBadNumKeys);
}

TEST_CASE("keyword search: XREAD and XREADGROUP STREAMS", "[keys]") {
  CHECK(keysOf({"XREAD", "STREAMS", "s1", "0"}) == Keys{"s1"});
  CHECK(keysOf({"XREAD", "COUNT", "2", "BLOCK", "0", "streams", "s1", "s2", "0", "$"}) ==
        Keys{"s1", "s2"});
  // Half of what follows STREAMS; the ids are not keys even when they look like one.
  CHECK(keysOf({"xread", "STREAMS", "a", "b", "c", "1-0", "2-0", "3-0"}) == Keys{"a", "b", "c"});
  // A stream named "streams": the first STREAMS is the keyword.
  CHECK(keysOf({"xread", "STREAMS", "streams", "0"}) == Keys{"streams"});
  CHECK(keysOf({"XREADGROUP", "GROUP", "g", "c", "STREAMS", "s1", ">"}) == Keys{"s1"});
  // The group may be called STREAMS: the search starts after GROUP g c.
  CHECK(keysOf({"xreadgroup", "GROUP", "streams", "c", "COUNT", "1", "NOACK", "STREAMS", "s1", "s2",
                ">", ">"}) == Keys{"s1", "s2"});
  CHECK(keysOf({"xreadgroup", "GROUP", "g", "STREAMS", "STREAMS", "s1", ">"}) == Keys{"s1"});
  // No STREAMS, or nothing after it: no keys (Redis rejects the command).
  CHECK(keysOf({"xread", "COUNT", "1", "x"}).empty());
  CHECK(keysOf({"xread", "COUNT", "1", "STREAMS"}).empty());
}

TEST_CASE("keyword search backwards: MIGRATE KEYS", "[keys]") {
  CHECK(keysOf({"MIGRATE", "host", "6379", "k", "0", "1000"}) == Keys{"k"});
  CHECK(keysOf({"migrate", "host", "6379", "k", "0", "1000", "COPY", "REPLACE"}) == Keys{"k"});
  CHECK(keysOf({"MIGRATE", "host", "6379", "", "0", "1000", "KEYS", "a", "b", "c"}) ==
        Keys{"a", "b", "c"});
  CHECK(keysOf({"migrate", "h", "1", "", "0", "10", "COPY", "AUTH", "pw", "keys", "a"}) ==
        Keys{"a"});
  // A password that reads "KEYS" is skipped, as Redis skips it.
  CHECK(keysOf({"migrate", "h", "1", "", "0", "10", "AUTH", "KEYS", "KEYS", "a", "b"}) ==
        Keys{"a", "b"});
  CHECK(keysOf({"migrate", "h", "1", "", "0", "10", "AUTH2", "u", "KEYS", "KEYS", "a"}) ==
        Keys{"a"});
  // KEYS last: the key-spec search (backwards from the next-to-last argument) does not see
  // it, so Redis reports argv[3], whatever it is.
  CHECK(keysOf({"migrate", "h", "1", "k", "0", "10", "KEYS"}) == Keys{"k"});
  CHECK(keysOf({"migrate", "h", "1", "", "0", "10", "COPY", "KEYS"}) == Keys{""});
  // KEYS with a key argument is a syntax error: no keys.
  CHECK(keysOf({"migrate", "h", "1", "k", "0", "10", "KEYS", "a"}).empty());
  CHECK(extract({"migrate", "h", "1", "k", "0", "10"}).flags ==
        std::vector<std::uint32_t>{kKeyRW | kKeyAccess | kKeyDelete});
}

TEST_CASE("SORT and SORT_RO", "[keys]") {
  CHECK(keysOf({"SORT", "list"}) == Keys{"list"});
  CHECK(keysOf({"sort", "list", "ALPHA", "DESC"}) == Keys{"list"});
  CHECK(keysOf({"sort", "list", "STORE", "dst"}) == Keys{"list", "dst"});
  CHECK(keysOf({"sort", "list", "BY", "w_*", "LIMIT", "0", "10", "GET", "#", "STORE", "dst"}) ==
        Keys{"list", "dst"});
  // Option arguments are skipped: a BY pattern or GET pattern called "store" is not STORE.
  CHECK(keysOf({"sort", "list", "BY", "store", "GET", "store", "ALPHA"}) == Keys{"list"});
  CHECK(keysOf({"sort", "list", "LIMIT", "store", "x", "DESC"}) == Keys{"list"});
  // The last STORE wins; STORE without a key is ignored.
  CHECK(keysOf({"sort", "list", "STORE", "d1", "STORE", "d2"}) == Keys{"list", "d2"});
  CHECK(keysOf({"sort", "list", "STORE"}) == Keys{"list"});
  CHECK(extract({"sort", "l", "store", "d"}).flags ==
        std::vector<std::uint32_t>{kKeyRO | kKeyAccess, kKeyOW | kKeyUpdate});
  CHECK(keysOf({"SORT_RO", "list", "BY", "w_*", "GET", "#"}) == Keys{"list"});
}

TEST_CASE("GEORADIUS STORE / STOREDIST", "[keys]") {
  CHECK(keysOf({"GEORADIUS", "geo", "15", "37", "200", "km"}) == Keys{"geo"});
  CHECK(keysOf({"GEORADIUS", "geo", "15", "37", "200", "km", "ASC", "STORE", "dst"}) ==
        Keys{"geo", "dst"});
  CHECK(keysOf({"georadius", "geo", "15", "37", "200", "km", "storedist", "dd"}) ==
        Keys{"geo", "dd"});
  CHECK(keysOf({"georadiusbymember", "geo", "m", "200", "km", "STORE", "dst"}) ==
        Keys{"geo", "dst"});
  CHECK(keysOf({"georadius_ro", "geo", "15", "37", "200", "km", "WITHDIST"}) == Keys{"geo"});
  CHECK(extract({"georadius", "g", "1", "2", "3", "m", "STORE", "d"}).flags ==
        std::vector<std::uint32_t>{kKeyRO | kKeyAccess, kKeyOW | kKeyUpdate});
  CHECK(keysOf({"geosearchstore", "dst", "src", "FROMMEMBER", "m", "BYRADIUS", "1", "km"}) ==
        Keys{"dst", "src"});
}

TEST_CASE("subcommand keys: OBJECT ENCODING, MEMORY USAGE, XINFO STREAM", "[keys]") {
  CHECK(keysOf({"OBJECT", "ENCODING", "k"}) == Keys{"k"});
  CHECK(keysOf({"object", "freq", "k"}) == Keys{"k"});
  CHECK(keysOf({"memory", "usage", "k", "SAMPLES", "5"}) == Keys{"k"});
  CHECK(keysOf({"xinfo", "stream", "s", "FULL"}) == Keys{"s"});
  CHECK(keysOf({"xinfo", "groups", "s"}) == Keys{"s"});
  CHECK(keysOf({"config", "get", "maxmemory"}).empty());
  CHECK(keysOf({"client", "setname", "n"}).empty());
}

TEST_CASE("commands without keys", "[keys]") {
  CHECK(keysOf({"PING"}).empty());
  CHECK(keysOf({"ping", "hello"}).empty());
  CHECK(keysOf({"echo", "k"}).empty());
  CHECK(keysOf({"dbsize"}).empty());
  CHECK(keysOf({"publish", "ch", "msg"}).empty());
  CHECK(keysOf({"subscribe", "a", "b"}).empty());
  CHECK(keysOf({"multi"}).empty());
  CHECK(keysOf({"keys", "*"}).empty());
}

TEST_CASE("shard channels are not keys unless asked for", "[keys]") {
  CHECK(keysOf({"SPUBLISH", "ch", "msg"}).empty());
  CHECK(keysOf({"ssubscribe", "a", "b"}).empty());
  Extracted e = extract({"SPUBLISH", "ch", "msg"}, kIncludeNotKeys);
  CHECK(e.keys == Keys{"ch"});
  CHECK(e.flags == std::vector<std::uint32_t>{kKeyNotKey});
  CHECK(extract({"ssubscribe", "a", "b"}, kIncludeNotKeys).keys == Keys{"a", "b"});
}

TEST_CASE("keys stay inside argv whatever the argv", "[keys]") {
  // Walk every row with argument counts around its arity, with numeric and non-numeric
  // arguments; every KeyRef must index argv (extract() REQUIREs it) and nothing may crash.
  const std::vector<std::string_view> fillers{"1",     "0",  "x",  "STREAMS", "KEYS",
                                              "STORE", "-1", "99", "GET",     "LIMIT"};
  std::vector<const CommandInfo*> rows;
  for (const CommandInfo& info : CommandTable::redis70().all()) {
    rows.push_back(&info);
    for (const CommandInfo& sub : info.subcommands)
      rows.push_back(&sub);
  }
  std::size_t runs = 0;
  for (const CommandInfo* info : rows) {
    const std::size_t minArgc =
        static_cast<std::size_t>(info->arity < 0 ? -info->arity : info->arity);
    for (std::size_t argc = 0; argc <= minArgc + 4; ++argc) {
      for (std::string_view filler : fillers) {
        std::vector<std::string_view> argv(argc, filler);
        std::vector<KeyRef> out;
        const KeyStatus status = extractKeys(*info, argv, out, kIncludeNotKeys);
        ++runs;
        if (status != KeyStatus::kOk) CHECK(out.empty());
        for (const KeyRef& r : out) {
          INFO(info->name << " argc " << argc << " filler " << filler);
          CHECK(r.argIndex >= 1);
          CHECK(r.argIndex < argc);
        }
      }
    }
  }
  CHECK(runs > 3000);
}

}  // namespace
}  // namespace keygate::commands
