// Cross-checks extractKeys against a real redis-server's COMMAND GETKEYSANDFLAGS, for every row
// of the table (argv synthesized around each row's arity and key specs) and for hand-written
// argvs that exercise keywords, numkeys and the per-command keys procedures.

#include <catch2/catch.hpp>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/commands/command_table.hpp"
#include "proxy/commands/command_table_data.hpp"
#include "redis_server.hpp"

namespace keygate::commands {
namespace {

using Argv = std::vector<std::string>;

struct Key {
  std::string name;
  std::set<std::string> flags;
  bool operator==(const Key&) const = default;
};

std::set<std::string> flagNames(std::uint32_t flags) {
  static constexpr std::pair<KeyFlag, std::string_view> kNames[] = {
      {kKeyRO, "RO"},
      {kKeyRW, "RW"},
      {kKeyOW, "OW"},
      {kKeyRM, "RM"},
      {kKeyAccess, "access"},
      {kKeyUpdate, "update"},
      {kKeyInsert, "insert"},
      {kKeyDelete, "delete"},
      {kKeyNotKey, "not_key"},
      {kKeyIncomplete, "incomplete"},
      {kKeyVariableFlags, "variable_flags"},
  };
  std::set<std::string> out;
  for (const auto& [bit, name] : kNames) {
    if ((flags & bit) != 0) out.emplace(name);
  }
  return out;
}

std::string show(const Argv& argv) {
  std::ostringstream s;
  for (const std::string& a : argv)
    s << '"' << a << "\" ";
  return s.str();
}

std::string show(const std::vector<Key>& keys) {
  std::ostringstream s;
  for (const Key& k : keys) {
    s << k.name << '[';
    for (const std::string& f : k.flags)
      s << f << ' ';
    s << "] ";
  }
  return s.str();
}

bool specStartsBeyondArgv(const CommandInfo& info, std::size_t argc) {
  for (const KeySpec& spec : info.keySpecs) {
    if (spec.begin == KeySpec::Begin::kIndex && static_cast<std::size_t>(spec.index) >= argc) {
      return true;
    }
  }
  return false;
}

class CrossCheck {
 public:
  explicit CrossCheck(testing::RedisServer& server) : server_(server) {}

  // Compares one argv; returns false if nothing could be compared (redis-server rejected the
  // arity, or argv is a bare command name, which COMMAND GETKEYSANDFLAGS cannot take).
  bool compare(const Argv& argv) {
    std::vector<std::string_view> views(argv.begin(), argv.end());
    const CommandInfo* info = CommandTable::redis70().resolve(views);
    INFO("argv: " << show(argv));
    REQUIRE(info != nullptr);

    std::vector<KeyRef> refs;
    const KeyStatus status = extractKeys(*info, views, refs);
    std::vector<Key> ours;
    for (const KeyRef& r : refs)
      ours.push_back(Key{argv.at(r.argIndex), flagNames(r.flags)});

    Argv request{"COMMAND", "GETKEYSANDFLAGS"};
    request.insert(request.end(), argv.begin(), argv.end());
    auto reply = server_.command(request);
    REQUIRE(reply != nullptr);
    INFO("ours: " << show(ours) << (status == KeyStatus::kOk ? "(ok)" : "(bad numkeys)"));

    if (reply->type == REDIS_REPLY_ARRAY) {
      std::vector<Key> theirs;
      for (std::size_t i = 0; i < reply->elements; ++i) {
        const redisReply* pair = reply->element[i];
        REQUIRE(pair->type == REDIS_REPLY_ARRAY);
        REQUIRE(pair->elements == 2);
        Key k{std::string(pair->element[0]->str, pair->element[0]->len), {}};
        for (std::size_t f = 0; f < pair->element[1]->elements; ++f) {
          k.flags.emplace(pair->element[1]->element[f]->str, pair->element[1]->element[f]->len);
        }
        theirs.push_back(std::move(k));
      }
      INFO("redis: " << show(theirs));
      if (status == KeyStatus::kBadNumKeys) {
        // EVAL / FCALL with a bad numkeys: Redis finds no keys and, as zero keys are fine for
        // them (no_mandatory_keys), answers an empty list; the command itself then fails.
        CHECK(info->has(kNoMandatoryKeys));
        CHECK(theirs.empty());
        ++agreedWithoutKeys_;
        return true;
      }
      CHECK(ours == theirs);
      ++agreedWithKeys_;
      return true;
    }

    REQUIRE(reply->type == REDIS_REPLY_ERROR);
    const std::string error(reply->str, reply->len);
    INFO("redis: " << error);
    if (error.find("Invalid number of arguments") != std::string::npos) {
      ++arityRejected_;
      return false;
    }
    if (argv.size() == 1 && error.find("wrong number of arguments") != std::string::npos) {
      return false;  // COMMAND GETKEYSANDFLAGS needs at least one argument after the name
    }
    if (error.find("has no key arguments") != std::string::npos) {
      CHECK(status == KeyStatus::kOk);
      CHECK(ours.empty());
    } else {
      // "Invalid arguments specified for command": Redis found no valid keys (bad numkeys,
      // missing keyword arguments, ...) and the command itself would fail.
      CHECK(error.find("Invalid arguments specified") != std::string::npos);
      if (!ours.empty()) {
        // The one deliberate difference: Redis drops every key when one spec falls outside
        // argv (PFMERGE dest, without sources); extractKeys keeps the other specs' keys.
        CHECK(specStartsBeyondArgv(*info, argv.size()));
        ++keptWhereRedisDropped_;
      }
    }
    ++agreedWithoutKeys_;
    return true;
  }

  std::size_t agreedWithKeys() const { return agreedWithKeys_; }
  std::size_t agreedWithoutKeys() const { return agreedWithoutKeys_; }
  std::size_t arityRejected() const { return arityRejected_; }
  std::size_t keptWhereRedisDropped() const { return keptWhereRedisDropped_; }

 private:
  testing::RedisServer& server_;
  std::size_t agreedWithKeys_ = 0;
  std::size_t agreedWithoutKeys_ = 0;
  std::size_t arityRejected_ = 0;
  std::size_t keptWhereRedisDropped_ = 0;
};

std::unique_ptr<testing::RedisServer> startServer() {
  std::string why;
  auto server = testing::RedisServer::start("/usr/bin/redis-server", &why);
  if (server == nullptr) WARN("live cross-check skipped: " << why);
  return server;
}

// Argvs for one row: the name (and subcommand name), then distinct placeholders, for each
// allowed argc up to a few beyond the minimum; variants put numbers where numkeys are read and
// the spec keywords at every position, so keyword searches are exercised both ways.
std::vector<Argv> synthesize(const CommandInfo& info) {
  Argv prefix;
  std::string_view name = info.name;
  for (std::size_t bar = name.find('|'); bar != std::string_view::npos; bar = name.find('|')) {
    prefix.emplace_back(name.substr(0, bar));
    name.remove_prefix(bar + 1);
  }
  prefix.emplace_back(name);

  std::vector<std::size_t> sizes;
  if (info.arity > 0) {
    sizes.push_back(static_cast<std::size_t>(info.arity));
  } else {
    for (std::size_t n = static_cast<std::size_t>(-info.arity);
         n <= static_cast<std::size_t>(-info.arity) + 5; ++n) {
      sizes.push_back(n);
    }
  }

  std::vector<Argv> out;
  for (std::size_t argc : sizes) {
    if (argc < prefix.size()) continue;
    Argv base = prefix;
    for (std::size_t i = prefix.size(); i < argc; ++i)
      base.push_back("t" + std::to_string(i));
    out.push_back(base);
    for (const KeySpec& spec : info.keySpecs) {
      if (spec.begin == KeySpec::Begin::kIndex && spec.find == KeySpec::Find::kKeynum) {
        const std::size_t at = static_cast<std::size_t>(spec.index + spec.keyNumIdx);
        if (at >= argc) continue;
        for (std::size_t n = 0; n <= argc; ++n) {
          Argv v = base;
          v[at] = std::to_string(n);
          out.push_back(std::move(v));
        }
      }
      if (spec.begin == KeySpec::Begin::kKeyword) {
        for (std::size_t at = 1; at < argc; ++at) {
          Argv v = base;
          v[at] = std::string(spec.keyword);
          out.push_back(std::move(v));
        }
      }
    }
  }
  return out;
}

TEST_CASE("the live server is the version the table was generated from", "[live]") {
  auto server = startServer();
  if (server == nullptr) return;
  auto count = server->command({"COMMAND", "COUNT"});
  REQUIRE(count != nullptr);
  REQUIRE(count->type == REDIS_REPLY_INTEGER);
  CHECK(static_cast<std::size_t>(count->integer) == CommandTable::redis70().size());

  // And it knows every row of the table, subcommands included.
  for (const CommandInfo& info : CommandTable::redis70().all()) {
    auto reply = server->command({"COMMAND", "INFO", std::string(info.name)});
    REQUIRE(reply != nullptr);
    REQUIRE(reply->type == REDIS_REPLY_ARRAY);
    REQUIRE(reply->elements == 1);
    INFO(info.name);
    CHECK(reply->element[0]->type == REDIS_REPLY_ARRAY);
  }
}

TEST_CASE("extractKeys agrees with COMMAND GETKEYSANDFLAGS on every row", "[live]") {
  auto server = startServer();
  if (server == nullptr) return;
  CrossCheck check(*server);
  std::size_t rows = 0;
  for (const CommandInfo& top : CommandTable::redis70().all()) {
    std::vector<const CommandInfo*> infos;
    if (top.isContainer()) {
      for (const CommandInfo& sub : top.subcommands)
        infos.push_back(&sub);
    } else {
      infos.push_back(&top);
    }
    for (const CommandInfo* info : infos) {
      ++rows;
      std::size_t compared = 0;
      for (const Argv& argv : synthesize(*info))
        compared += check.compare(argv) ? 1 : 0;
      INFO(info->name);
      CHECK((compared > 0 || info->arity == 1));
    }
  }
  CHECK(rows >= 330);
  CHECK(check.arityRejected() == 0);
  CHECK(check.agreedWithKeys() >= 1000);
  CHECK(check.keptWhereRedisDropped() <= 1);  // PFMERGE dest
}

TEST_CASE("extractKeys agrees with COMMAND GETKEYSANDFLAGS on sample commands", "[live]") {
  auto server = startServer();
  if (server == nullptr) return;
  CrossCheck check(*server);
  const std::vector<Argv> samples{
      {"GET", "k"},
      {"set", "k", "v", "EX", "10"},
      {"set", "k", "v", "GET"},
      {"set", "k", "v", "get", "NX"},
      {"MSET", "a", "1", "b", "2", "c", "3"},
      {"MGET", "a", "b", "c"},
      {"DEL", "a", "b"},
      {"BLPOP", "l1", "l2", "0"},
      {"EVAL", "return 1", "2", "k1", "k2", "arg"},
      {"EVAL", "return 1", "0"},
      {"EVAL", "return 1", "0", "arg"},
      {"EVAL", "return 1", "5", "k1"},
      {"EVAL", "return 1", "-1", "k1"},
      {"EVALSHA", "abc", "1", "k"},
      {"EVALSHA_RO", "abc", "2", "k", "l"},
      {"FCALL", "fn", "1", "k", "arg"},
      {"FCALL_RO", "fn", "0"},
      {"ZUNIONSTORE", "dest", "2", "a", "b", "WEIGHTS", "1", "2"},
      {"ZUNIONSTORE", "dest", "3", "a", "b"},
      {"ZINTERSTORE", "dest", "1", "a", "AGGREGATE", "MAX"},
      {"ZUNION", "2", "a", "b", "WITHSCORES"},
      {"ZDIFF", "1", "a"},
      {"XREAD", "STREAMS", "s1", "0"},
      {"XREAD", "COUNT", "2", "BLOCK", "0", "STREAMS", "s1", "s2", "0", "$"},
      {"XREAD", "STREAMS", "streams", "0"},
      {"XREADGROUP", "GROUP", "g", "c", "STREAMS", "s1", ">"},
      {"XREADGROUP", "GROUP", "streams", "c", "COUNT", "1", "NOACK", "STREAMS", "s1", "s2", ">",
       ">"},
      {"MIGRATE", "host", "6379", "k", "0", "1000"},
      {"MIGRATE", "host", "6379", "k", "0", "1000", "COPY", "REPLACE"},
      {"MIGRATE", "host", "6379", "", "0", "1000", "KEYS", "a", "b", "c"},
      {"MIGRATE", "h", "1", "", "0", "10", "COPY", "AUTH", "pw", "KEYS", "a"},
      {"MIGRATE", "h", "1", "", "0", "10", "AUTH", "KEYS", "KEYS", "a", "b"},
      {"MIGRATE", "h", "1", "", "0", "10", "AUTH2", "u", "KEYS", "KEYS", "a"},
      {"MIGRATE", "h", "1", "k", "0", "10", "KEYS", "a"},
      {"MIGRATE", "h", "1", "k", "0", "10", "KEYS"},
      {"MIGRATE", "h", "1", "", "0", "10", "COPY", "KEYS"},
      {"LMPOP", "2", "l1", "l2", "LEFT", "COUNT", "3"},
      {"BLMPOP", "0.5", "2", "l1", "l2", "RIGHT"},
      {"ZMPOP", "1", "z", "MIN"},
      {"BZMPOP", "0", "3", "a", "b", "c", "MAX"},
      {"SORT", "list"},
      {"SORT", "list", "STORE", "dst"},
      {"SORT", "list", "BY", "w_*", "LIMIT", "0", "10", "GET", "#", "STORE", "dst"},
      {"SORT", "list", "BY", "store", "GET", "store", "ALPHA"},
      {"SORT", "list", "STORE", "d1", "STORE", "d2"},
      {"SORT", "list", "STORE"},
      {"SORT_RO", "list", "BY", "w_*", "GET", "#"},
      {"GEORADIUS", "geo", "15", "37", "200", "km", "ASC", "STORE", "dst"},
      {"GEORADIUS", "geo", "15", "37", "200", "km", "STOREDIST", "dd"},
      {"GEORADIUS", "geo", "15", "37", "200", "km", "STORE", "a", "STOREDIST", "b"},
      {"GEORADIUSBYMEMBER", "geo", "m", "200", "km", "STORE", "dst"},
      {"GEORADIUS_RO", "geo", "15", "37", "200", "km", "WITHDIST"},
      {"GEOSEARCHSTORE", "dst", "src", "FROMMEMBER", "m", "BYRADIUS", "1", "km"},
      {"OBJECT", "ENCODING", "k"},
      {"MEMORY", "USAGE", "k", "SAMPLES", "5"},
      {"XINFO", "STREAM", "s", "FULL"},
      {"BITOP", "AND", "dest", "s1", "s2"},
      {"BITFIELD", "b", "GET", "u8", "0"},
      {"BITFIELD", "b", "GET", "u8", "0", "OVERFLOW", "SAT", "GET", "i4", "1"},
      {"BITFIELD", "b", "INCRBY", "u8", "0", "1"},
      {"BITFIELD_RO", "b", "GET", "u8", "0"},
      {"LMOVE", "src", "dst", "LEFT", "RIGHT"},
      {"RENAME", "old", "new"},
      {"SINTERCARD", "2", "s1", "s2", "LIMIT", "5"},
      {"SINTERCARD", "3", "s1", "s2"},
      {"PING"},
      {"PUBLISH", "ch", "msg"},
      {"SPUBLISH", "ch", "msg"},
      {"SSUBSCRIBE", "a", "b"},
      {"CONFIG", "SET", "maxmemory", "1mb"},
  };
  for (const Argv& argv : samples) {
    if (argv.size() > 1) CHECK(check.compare(argv));
  }
  CHECK(check.agreedWithKeys() >= 50);
}

}  // namespace
}  // namespace keygate::commands
