#include "proxy/special_commands.hpp"

#include <catch2/catch.hpp>

#include "proxy/commands/command_table.hpp"

using keygate::commands::CommandTable;
using keygate::proxy::Special;
using keygate::proxy::specialOf;

namespace {
Special of(std::string_view name) {
  const auto* info = CommandTable::redis70().find(name);
  REQUIRE(info != nullptr);
  return specialOf(*info);
}
}  // namespace

TEST_CASE("local commands are recognised") {
  CHECK(of("PING") == Special::kPing);
  CHECK(of("echo") == Special::kEcho);
  CHECK(of("QUIT") == Special::kQuit);
  CHECK(of("hello") == Special::kHello);
  CHECK(of("select") == Special::kSelect);
  CHECK(of("client") == Special::kClient);
  CHECK(of("readonly") == Special::kReadMode);
  CHECK(of("readwrite") == Special::kReadMode);
  CHECK(of("info") == Special::kInfo);
  CHECK(of("reset") == Special::kReset);
}

TEST_CASE("stateful commands need a dedicated connection") {
  CHECK(of("multi") == Special::kMulti);
  CHECK(of("exec") == Special::kExec);
  CHECK(of("discard") == Special::kDiscard);
  CHECK(of("watch") == Special::kWatch);
  CHECK(of("unwatch") == Special::kUnwatch);
  CHECK(of("subscribe") == Special::kSubscribe);
  CHECK(of("psubscribe") == Special::kPsubscribe);
  CHECK(of("ssubscribe") == Special::kSsubscribe);
  CHECK(of("unsubscribe") == Special::kUnsubscribe);
  CHECK(of("punsubscribe") == Special::kPunsubscribe);
  CHECK(of("sunsubscribe") == Special::kSunsubscribe);
}

TEST_CASE("every blocking command of Redis 7.0 is routed as blocking") {
  for (auto name : {"blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax",
                    "bzmpop", "xread", "xreadgroup", "wait"}) {
    INFO(name);
    CHECK(of(name) == Special::kBlocking);
  }
}

TEST_CASE("connection-hijacking commands are unsupported, plain commands are forwarded") {
  CHECK(of("monitor") == Special::kUnsupported);
  CHECK(of("sync") == Special::kUnsupported);
  CHECK(of("psync") == Special::kUnsupported);
  CHECK(of("get") == Special::kNone);
  CHECK(of("set") == Special::kNone);
  CHECK(of("mget") == Special::kNone);
  CHECK(of("publish") == Special::kNone);
  CHECK(of("lpop") == Special::kNone);
}

TEST_CASE("a row that is not the table's own is classified by its name") {
  // specialOf indexes the table's rows by address; a copy (a test's own row, say) lies outside.
  for (auto name : {"ping", "client", "subscribe", "wait", "blpop", "monitor", "get", "set"}) {
    INFO(name);
    const auto copy = *CommandTable::redis70().find(name);
    CHECK(specialOf(copy) == of(name));
  }
}
