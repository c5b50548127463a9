#include "proxy/commands/command_table.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/commands/command_table_data.hpp"

namespace keygate::commands {
namespace {

const CommandTable& table() {
  return CommandTable::redis70();
}

const CommandInfo& row(std::string_view name) {
  const CommandInfo* info = table().find(name);
  INFO("command " << name);
  REQUIRE(info != nullptr);
  return *info;
}

const CommandInfo* resolveArgv(std::vector<std::string_view> argv, bool* unknownSub = nullptr) {
  return table().resolve(argv, unknownSub);
}

TEST_CASE("table holds every Redis 7.0 command the generator saw", "[table]") {
  const GeneratedTable& gen = generatedCommandTable();
  CHECK(gen.redisVersion.substr(0, 4) == "7.0.");
  CHECK(table().size() >= 230);
  CHECK(table().size() == gen.commandCount);
  CHECK(table().all().size() == gen.commandCount);

  std::size_t subs = 0;
  std::string_view previous;
  for (const CommandInfo& info : table().all()) {
    INFO(info.name);
    CHECK(previous < info.name);  // sorted, unique
    previous = info.name;
    CHECK(info.arity != 0);
    for (char c : info.name)
      CHECK_FALSE((c >= 'A' && c <= 'Z'));
    CHECK(table().find(info.name) == &info);
    std::string_view previousSub;
    for (const CommandInfo& sub : info.subcommands) {
      INFO(sub.name);
      ++subs;
      CHECK(sub.name.substr(0, info.name.size() + 1) == std::string(info.name) + "|");
      CHECK(previousSub < sub.name);
      previousSub = sub.name;
      CHECK(table().findSubcommand(info, sub.name.substr(info.name.size() + 1)) == &sub);
      CHECK(sub.subcommands.empty());  // Redis 7.0 nests one level only
    }
  }
  CHECK(subs == gen.subcommandCount);
  CHECK(subs >= 100);
}

TEST_CASE("lookups are case-insensitive", "[table]") {
  const CommandInfo* get = table().find("get");
  REQUIRE(get != nullptr);
  CHECK(get->name == "get");
  CHECK(table().find("GET") == get);
  CHECK(table().find("gEt") == get);
  CHECK(table().find("GEORADIUSBYMEMBER_RO") == table().find("georadiusbymember_ro"));
  CHECK(table().find("Client") != nullptr);
}

TEST_CASE("unknown commands are nullptr", "[table]") {
  CHECK(table().find("") == nullptr);
  CHECK(table().find("nosuchcommand") == nullptr);
  CHECK(table().find("ge") == nullptr);
  CHECK(table().find("gets") == nullptr);
  CHECK(table().find("get ") == nullptr);
  CHECK(table().find(std::string_view("get\0", 4)) == nullptr);
  CHECK(table().find("g\xc3\xa9t") == nullptr);
  CHECK(table().find(std::string(1 << 20, 'a')) == nullptr);
  // Subcommand rows are not top-level commands.
  CHECK(table().find("client|setname") == nullptr);
  CHECK(table().find("config|get") == nullptr);
}

TEST_CASE("arity", "[table]") {
  CHECK(row("get").arity == 2);
  CHECK(row("set").arity == -3);
  CHECK(row("ping").arity == -1);
  CHECK(row("mset").arity == -3);
  CHECK(arityOk(row("get"), 2));
  CHECK_FALSE(arityOk(row("get"), 1));
  CHECK_FALSE(arityOk(row("get"), 3));
  CHECK(arityOk(row("set"), 3));
  CHECK(arityOk(row("set"), 7));
  CHECK_FALSE(arityOk(row("set"), 2));
  const CommandInfo* configSet = resolveArgv({"CONFIG", "SET", "a", "b"});
  REQUIRE(configSet != nullptr);
  CHECK(configSet->arity == -4);  // counts CONFIG itself
}

TEST_CASE("command flags", "[table]") {
  const CommandInfo& get = row("get");
  CHECK(get.has(kRead));
  CHECK(get.has(kFast));
  CHECK_FALSE(get.has(kWrite));
  CHECK_FALSE(get.has(kBlocking));
  CHECK(get.inCategory(kAclString));

  const CommandInfo& set = row("set");
  CHECK(set.has(kWrite));
  CHECK(set.has(kDenyOom));
  CHECK_FALSE(set.has(kRead));
  CHECK(set.keysProc == KeysProc::kSet);

  CHECK(row("blpop").has(kBlocking));
  CHECK(row("blmpop").has(kBlocking));
  CHECK(row("xread").has(kBlocking));
  CHECK(row("wait").has(kBlocking));  // not @blocking in 7.0, but it holds the connection
  CHECK_FALSE(row("lpop").has(kBlocking));

  CHECK(row("subscribe").has(kPubSub));
  CHECK(row("publish").has(kPubSub));
  CHECK(row("ssubscribe").has(kPubSub));
  const CommandInfo* channels = resolveArgv({"pubsub", "channels"});
  REQUIRE(channels != nullptr);
  CHECK(channels->has(kPubSub));
  CHECK_FALSE(row("get").has(kPubSub));

  CHECK(row("eval").has(kNoMandatoryKeys));
  CHECK(row("eval").has(kMovableKeys));
  CHECK(row("multi").has(kNoScript));
  CHECK(row("auth").has(kNoAuth));
  CHECK(row("flushall").has(kWrite));
  CHECK(row("flushall").inCategory(kAclDangerous));
  CHECK(row("randomkey").hasTip(kTipNondeterministicOutput));
  CHECK(row("keys").hasTip(kTipNondeterministicOutputOrder));
  CHECK_FALSE(row("get").hasTip(kTipNondeterministicOutput));

  // Every row that touches keys says how it uses them.
  for (const CommandInfo& info : table().all()) {
    for (const KeySpec& spec : info.keySpecs) {
      INFO(info.name);
      CHECK((spec.flags & (kKeyRO | kKeyRW | kKeyOW | kKeyRM | kKeyNotKey)) != 0);
    }
  }
}

TEST_CASE("key specs are recorded fully", "[table]") {
  const CommandInfo& xread = row("xread");
  REQUIRE(xread.keySpecs.size() == 1);
  const KeySpec& s = xread.keySpecs[0];
  CHECK(s.begin == KeySpec::Begin::kKeyword);
  CHECK(s.keyword == "STREAMS");
  CHECK(s.startFrom == 1);
  CHECK(s.find == KeySpec::Find::kRange);
  CHECK(s.lastKey == -1);
  CHECK(s.keyStep == 1);
  CHECK(s.limit == 2);
  CHECK(s.flags == (kKeyRO | kKeyAccess));

  const CommandInfo& eval = row("eval");
  REQUIRE(eval.keySpecs.size() == 1);
  CHECK(eval.keySpecs[0].begin == KeySpec::Begin::kIndex);
  CHECK(eval.keySpecs[0].index == 2);
  CHECK(eval.keySpecs[0].find == KeySpec::Find::kKeynum);
  CHECK(eval.keySpecs[0].keyNumIdx == 0);
  CHECK(eval.keySpecs[0].firstKey == 1);

  const CommandInfo& migrate = row("migrate");
  REQUIRE(migrate.keySpecs.size() == 2);
  CHECK(migrate.keySpecs[1].keyword == "KEYS");
  CHECK(migrate.keySpecs[1].startFrom == -2);
  CHECK((migrate.keySpecs[1].flags & kKeyIncomplete) != 0);

  CHECK(row("mset").keySpecs[0].keyStep == 2);
  CHECK(row("spublish").keySpecs[0].flags == kKeyNotKey);
  CHECK(row("ping").keySpecs.empty());

  CHECK(mayAccessUndeclaredKeys(row("sort")));
  CHECK(mayAccessUndeclaredKeys(row("sort_ro")));
  CHECK_FALSE(mayAccessUndeclaredKeys(row("migrate")));  // resolved by its keys procedure
  CHECK_FALSE(mayAccessUndeclaredKeys(row("get")));
}

TEST_CASE("resolve picks the subcommand row of container commands", "[table]") {
  bool unknownSub = true;
  const CommandInfo* configSet = resolveArgv({"CONFIG", "SET", "maxmemory", "1mb"}, &unknownSub);
  REQUIRE(configSet != nullptr);
  CHECK(configSet->name == "config|set");
  CHECK_FALSE(unknownSub);
  CHECK(configSet->has(kAdmin));
  CHECK(resolveArgv({"config", "set", "a", "b"}) == configSet);
  CHECK(resolveArgv({"cOnFiG", "SeT", "a", "b"}) == configSet);

  const CommandInfo* config = table().find("config");
  REQUIRE(config != nullptr);
  CHECK(config->isContainer());
  CHECK(table().findSubcommand(*config, "GET") == resolveArgv({"config", "get", "x"}));
  CHECK(table().findSubcommand(*config, "bogus") == nullptr);
  CHECK(table().findSubcommand(row("get"), "set") == nullptr);

  const CommandInfo* encoding = resolveArgv({"OBJECT", "ENCODING", "k"});
  REQUIRE(encoding != nullptr);
  CHECK(encoding->name == "object|encoding");

  // A container alone resolves to itself; its arity then refuses it, as Redis does.
  unknownSub = true;
  CHECK(resolveArgv({"config"}, &unknownSub) == config);
  CHECK_FALSE(unknownSub);
  CHECK_FALSE(arityOk(*config, 1));

  // Unknown subcommand: nullptr, and the flag says why.
  CHECK(resolveArgv({"config", "bogus"}, &unknownSub) == nullptr);
  CHECK(unknownSub);
  CHECK(resolveArgv({"config", "set|x"}, &unknownSub) == nullptr);
  CHECK(unknownSub);
  CHECK(resolveArgv({"config", ""}, &unknownSub) == nullptr);
  CHECK(unknownSub);

  // Plain commands ignore argv[1].
  CHECK(resolveArgv({"get", "set"}, &unknownSub) == table().find("get"));
  CHECK_FALSE(unknownSub);
  CHECK(resolveArgv({"nosuch", "x"}, &unknownSub) == nullptr);
  CHECK_FALSE(unknownSub);
  CHECK(resolveArgv({}, &unknownSub) == nullptr);
  CHECK_FALSE(unknownSub);
  CHECK(resolveArgv({"client|setname", "x"}) == nullptr);
}

TEST_CASE("a table can be built over custom rows", "[table]") {
  static constexpr KeySpec kSpec[] = {{.begin = KeySpec::Begin::kIndex,
                                       .index = 1,
                                       .find = KeySpec::Find::kRange,
                                       .lastKey = 0,
                                       .flags = kKeyRO}};
  static constexpr CommandInfo kSubs[] = {{.name = "box|open", .arity = 2}};
  static constexpr CommandInfo kRows[] = {
      {.name = "box", .arity = -2, .subcommands = kSubs},
      {.name = "peek", .arity = 2, .flags = kRead, .keySpecs = kSpec},
      {.name = "peek", .arity = 3},  // duplicate: the first row wins
  };
  CommandTable custom(kRows);
  CHECK(custom.size() == 3);
  REQUIRE(custom.find("PEEK") != nullptr);
  CHECK(custom.find("PEEK")->arity == 2);
  std::vector<std::string_view> argv{"box", "OPEN"};
  CHECK(custom.resolve(argv) == &kSubs[0]);
  CHECK(custom.find("get") == nullptr);
}

}  // namespace
}  // namespace keygate::commands
