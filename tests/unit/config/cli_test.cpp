// Command line: both flag forms, usage errors, --help/--version, and overrides validated with the
// file's rules.

#include <catch2/catch.hpp>
#include <vector>

#include "config/config.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using namespace keygate::config;

namespace {

CliResult parse(std::vector<const char*> args) {
  args.insert(args.begin(), "keygate");
  return parseCommandLine(static_cast<int>(args.size()), args.data());
}

}  // namespace

TEST_CASE("no flags: run with nothing overridden", "[config][cli]") {
  const auto r = parse({});
  CHECK(r.errors.empty());
  CHECK(r.options.action == CliAction::kRun);
  CHECK_FALSE(r.options.configPath);
  CHECK_FALSE(r.options.overrides.listen);
  CHECK_FALSE(r.options.overrides.threads);

  const auto none = parseCommandLine(0, nullptr);
  CHECK(none.errors.empty());
  CHECK(none.options.action == CliAction::kRun);
}

TEST_CASE("every flag in both forms", "[config][cli]") {
  const auto separate = parse({"--config", "/etc/keygate.yaml", "--listen", "0.0.0.0:6379",
                               "--upstream", "redis:6379", "--admin", "127.0.0.1:9180", "--threads",
                               "4", "--log-level", "debug", "--log-format", "json"});
  const auto joined =
      parse({"--config=/etc/keygate.yaml", "--listen=0.0.0.0:6379", "--upstream=redis:6379",
             "--admin=127.0.0.1:9180", "--threads=4", "--log-level=debug", "--log-format=json"});
  for (const auto* r : {&separate, &joined}) {
    CHECK(r->errors.empty());
    CHECK(r->options.action == CliAction::kRun);
    CHECK(r->options.configPath == "/etc/keygate.yaml");
    const auto& o = r->options.overrides;
    CHECK(o.listen == "0.0.0.0:6379");
    CHECK(o.upstream == "redis:6379");
    CHECK(o.admin == "127.0.0.1:9180");
    CHECK(o.threads == "4");
    CHECK(o.logLevel == "debug");
    CHECK(o.logFormat == "json");
  }
}

TEST_CASE("values keep '=' and may start with a single dash", "[config][cli]") {
  const auto r = parse({"--config=/tmp/a=b.yaml", "--threads", "-1"});
  CHECK(r.errors.empty());
  CHECK(r.options.configPath == "/tmp/a=b.yaml");
  CHECK(r.options.overrides.threads == "-1");  // rejected later by applyOverrides, with a range
}

TEST_CASE("a flag given twice keeps the last value", "[config][cli]") {
  const auto r = parse({"--threads", "1", "--threads=2"});
  CHECK(r.errors.empty());
  CHECK(r.options.overrides.threads == "2");
}

TEST_CASE("unknown flags are errors named by the flag", "[config][cli]") {
  // The value after an unknown flag belongs to the same mistake and is not reported again.
  const auto r = parse({"--lisen", "127.0.0.1:1", "--bogus=1", "-x", "--threads", "2"});
  REQUIRE(r.errors.size() == 3);
  CHECK(r.errors[0].path == "--lisen");
  CHECK(r.errors[0].line == 0);
  CHECK(r.errors[0].message == "unknown flag '--lisen'; did you mean '--listen'?");
  CHECK(r.errors[1].path == "--bogus");
  CHECK(r.errors[1].message == "unknown flag '--bogus'; run keygate --help for the list of flags");
  CHECK(r.errors[2].path == "-x");
  CHECK(r.options.overrides.threads == "2");
  CHECK(r.errors[0].str() == "--lisen: unknown flag '--lisen'; did you mean '--listen'?");

  const auto underscore = parse({"--log_level=info"});
  REQUIRE(underscore.errors.size() == 1);
  CHECK(underscore.errors[0].message == "unknown flag '--log_level'; did you mean '--log-level'?");
}

TEST_CASE("positional arguments are errors", "[config][cli]") {
  const auto r = parse({"keygate.yaml"});
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].message ==
        "unexpected argument 'keygate.yaml'; keygate takes only flags, run keygate --help for the "
        "list");
  CHECK(parse({"-"}).errors.size() == 1);
}

TEST_CASE("missing values are errors named by the flag", "[config][cli]") {
  SECTION("at the end") {
    const auto r = parse({"--listen"});
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].path == "--listen");
    CHECK(r.errors[0].message ==
          "missing value; write --listen HOST:PORT, e.g. --listen 127.0.0.1:6380");
    CHECK_FALSE(r.options.overrides.listen);
  }
  SECTION("followed by another flag, which still counts") {
    const auto r = parse({"--config", "--threads", "4"});
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].path == "--config");
    CHECK(r.options.overrides.threads == "4");
  }
  SECTION("empty after '='") {
    const auto r = parse({"--log-level="});
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].path == "--log-level");
    CHECK_THAT(r.errors[0].message, Contains("e.g. --log-level info"));
  }
  SECTION("empty as the next argument") {
    const auto r = parse({"--admin", ""});
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].path == "--admin");
  }
}

TEST_CASE("help and version flags", "[config][cli]") {
  CHECK(parse({"-h"}).options.action == CliAction::kHelp);
  CHECK(parse({"--help"}).options.action == CliAction::kHelp);
  CHECK(parse({"-V"}).options.action == CliAction::kVersion);
  CHECK(parse({"--version"}).options.action == CliAction::kVersion);
  CHECK(parse({"--version", "--help"}).options.action == CliAction::kHelp);
  CHECK(parse({"--help", "--version"}).options.action == CliAction::kHelp);

  const auto withValue = parse({"--help=yes"});
  REQUIRE(withValue.errors.size() == 1);
  CHECK(withValue.errors[0].path == "--help");
  CHECK(withValue.errors[0].message == "takes no value; write --help alone");

  // Help still comes with the usage errors so the caller can show both.
  const auto mixed = parse({"--bogus", "-h"});
  CHECK(mixed.options.action == CliAction::kHelp);
  CHECK(mixed.errors.size() == 1);
}

TEST_CASE("usage lists every flag", "[config][cli]") {
  const std::string text = usage();
  for (const char* flag :
       {"--config FILE", "--listen HOST:PORT", "--upstream HOST:PORT", "--cluster HOST:PORT,...",
        "--admin HOST:PORT", "--registry FILE", "--registry-mode MODE", "--threads N",
        "--log-level LEVEL", "--log-format FORMAT", "-h, --help", "-V, --version"}) {
    CHECK_THAT(text, Contains(flag));
  }
  CHECK_THAT(text, StartsWith("Usage: keygate"));
  CHECK_THAT(text, Contains("config/README.md"));
  // The subcommand is dispatched in main.cpp, before flag parsing; usage() still names it.
  CHECK_THAT(text, Contains("keygate check [--explain] FILE"));
}

TEST_CASE("overrides are applied over the file", "[config][overrides]") {
  auto result = loadFromString("threads: 2\nlog:\n  level: warn\n", "f.yaml");
  REQUIRE(result.ok());
  Overrides o;
  o.listen = "0.0.0.0:7000";
  o.upstream = "[::1]:6379";
  o.admin = ":9180";
  o.threads = "8";
  o.logLevel = "debug";
  o.logFormat = "json";
  applyOverrides(o, result);
  INFO((result.errors.empty() ? "" : result.errors[0].str()));
  REQUIRE(result.ok());
  CHECK(result.config.listen == HostPort{"0.0.0.0", 7000});
  CHECK(result.config.upstream.address == HostPort{"::1", 6379});
  CHECK(result.config.admin == HostPort{"127.0.0.1", 9180});
  CHECK(result.config.threads == 8);
  CHECK(result.config.logLevel == "debug");
  CHECK(result.config.logFormat == LogFormat::kJson);
}

TEST_CASE("unset overrides leave the file alone", "[config][overrides]") {
  auto result = loadFromString("threads: 2\n", "f.yaml");
  applyOverrides(Overrides{}, result);
  CHECK(result.ok());
  CHECK(result.config.threads == 2);
}

TEST_CASE("overrides are validated with the file's rules", "[config][overrides]") {
  auto result = loadFromString("", "f.yaml");
  Overrides o;
  o.listen = "127.0.0.1";
  o.upstream = "redis:0";
  o.admin = "::1:9180";
  o.threads = "300";
  o.logLevel = "verbose";
  o.logFormat = "yaml";
  applyOverrides(o, result);
  REQUIRE(result.errors.size() == 6);
  const char* paths[] = {"--listen",  "--upstream",  "--admin",
                         "--threads", "--log-level", "--log-format"};
  for (std::size_t i = 0; i < 6; ++i) {
    CHECK(result.errors[i].path == paths[i]);
    CHECK(result.errors[i].line == 0);
    CHECK(result.errors[i].file.empty());
  }
  CHECK(result.errors[0].message == "'127.0.0.1' has no port; write 127.0.0.1:6380");
  CHECK(result.errors[3].str() ==
        "--threads: must be between 0 and 256, got 300; use 0 for one worker per core");
  CHECK_THAT(result.errors[4].message, StartsWith("unknown log level 'verbose'"));
  // Nothing invalid was applied.
  CHECK(result.config.threads == 0);
  CHECK(result.config.listen == HostPort{"127.0.0.1", 6380});
  CHECK_FALSE(result.config.admin);

  auto negative = loadFromString("", "f.yaml");
  Overrides n;
  n.threads = "-1";
  applyOverrides(n, negative);
  REQUIRE(negative.errors.size() == 1);
  CHECK(negative.errors[0].message ==
        "must be between 0 and 256, got -1; use 0 for one worker per core");
}

TEST_CASE("the upstream flag replaces the seeds in cluster mode", "[config][overrides]") {
  auto result = loadFromString("upstream:\n  mode: cluster\n  seeds: [a:1, b:2]\n", "f.yaml");
  REQUIRE(result.ok());
  Overrides o;
  o.upstream = "c:3";
  applyOverrides(o, result);
  REQUIRE(result.ok());
  REQUIRE(result.config.upstream.seeds.size() == 1);
  CHECK(result.config.upstream.seeds[0] == HostPort{"c", 3});
}

TEST_CASE("the cluster flag sets cluster mode and its seeds", "[config][overrides]") {
  const auto cli = parse({"--cluster=10.0.0.1:7000,10.0.0.2:7001"});
  REQUIRE(cli.errors.empty());
  REQUIRE(cli.options.overrides.cluster == "10.0.0.1:7000,10.0.0.2:7001");

  auto result = loadFromString("upstream:\n  address: 127.0.0.1:6379\n", "f.yaml");
  REQUIRE(result.ok());
  applyOverrides(cli.options.overrides, result);
  INFO((result.errors.empty() ? "" : result.errors[0].str()));
  REQUIRE(result.ok());
  CHECK(result.config.upstream.mode == UpstreamMode::kCluster);
  REQUIRE(result.config.upstream.seeds.size() == 2);
  CHECK(result.config.upstream.seeds[0] == HostPort{"10.0.0.1", 7000});
  CHECK(result.config.upstream.seeds[1] == HostPort{"10.0.0.2", 7001});

  auto single = loadFromString("", "f.yaml");
  Overrides one;
  one.cluster = "redis-0.redis:6379,redis-0.redis:6379";  // a repeated seed counts once
  applyOverrides(one, single);
  REQUIRE(single.ok());
  CHECK(single.config.upstream.seeds == std::vector<HostPort>{{"redis-0.redis", 6379}});
}

TEST_CASE("bad cluster seed lists are errors at the flag", "[config][overrides]") {
  for (const char* list : {"a:1,,b:2", "a:1,", ",a:1", ""}) {
    INFO(list);
    auto result = loadFromString("", "f.yaml");
    Overrides o;
    o.cluster = list;
    applyOverrides(o, result);
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].path == "--cluster");
    CHECK_THAT(result.errors[0].message, StartsWith("empty seed"));
    CHECK(result.config.upstream.mode == UpstreamMode::kStandalone);
  }
  auto badPort = loadFromString("", "f.yaml");
  Overrides p;
  p.cluster = "a:1,b:99999";
  applyOverrides(p, badPort);
  REQUIRE(badPort.errors.size() == 1);
  CHECK_THAT(badPort.errors[0].message, StartsWith("seed 'b:99999': "));

  auto both = loadFromString("", "f.yaml");
  Overrides b;
  b.cluster = "a:1";
  b.upstream = "c:2";
  applyOverrides(b, both);
  REQUIRE_FALSE(both.ok());
  CHECK(both.errors[0].path == "--cluster");
  CHECK_THAT(both.errors[0].message, Contains("not both"));
}

TEST_CASE("the registry-mode flag overrides registryMode and is validated", "[config][overrides]") {
  const auto parsed = parse({"--registry-mode", "audit"});
  REQUIRE(parsed.errors.empty());
  CHECK(parsed.options.overrides.registryMode == "audit");

  auto withFlag = [](const char* yaml, const char* mode) {
    auto result = loadFromString(yaml, "f.yaml");
    Overrides o;
    o.registryMode = mode;
    applyOverrides(o, result);
    return result;
  };
  const auto flagWins = withFlag("registry: r.yaml\nregistryMode: audit\n", "enforce");
  REQUIRE(flagWins.ok());
  CHECK(flagWins.config.registryMode == keygate::config::RegistryMode::kEnforce);

  const auto bad = withFlag("registry: r.yaml\n", "off");
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].path == "--registry-mode");
  CHECK_FALSE(bad.config.registryMode);

  const auto noRegistry = withFlag("", "audit");
  REQUIRE(noRegistry.errors.size() == 1);
  CHECK(noRegistry.errors[0].path == "--registry-mode");
  CHECK_THAT(noRegistry.errors[0].message, Contains("none is configured"));
}

TEST_CASE("overrides are checked against the rest of the config", "[config][overrides]") {
  SECTION("--listen onto the upstream") {
    auto result = loadFromString("upstream:\n  address: 127.0.0.1:7000\n", "f.yaml");
    Overrides o;
    o.listen = "0.0.0.0:7000";
    applyOverrides(o, result);
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].path == "--listen");
    CHECK_THAT(result.errors[0].message, Contains("keygate would forward to itself"));
  }
  SECTION("--admin onto listen") {
    auto result = loadFromString("", "f.yaml");
    Overrides o;
    o.admin = "127.0.0.1:6380";
    applyOverrides(o, result);
    REQUIRE(result.errors.size() == 1);
    CHECK(result.errors[0].path == "--admin");
    CHECK_THAT(result.errors[0].message, Contains("collides with listen"));
  }
  SECTION("a problem the file already had is not reported twice") {
    auto result = loadFromString("upstream:\n  username: app\n", "f.yaml");
    REQUIRE(result.errors.size() == 1);
    Overrides o;
    o.threads = "2";
    o.listen = ":7000";
    applyOverrides(o, result);
    CHECK(result.errors.size() == 1);
  }
  SECTION("no check is judged against a value the file got wrong") {
    auto result = loadFromString("listen: nope\n", "f.yaml");
    REQUIRE(result.errors.size() == 1);
    Overrides o;
    o.upstream = "127.0.0.1:6380";  // the default listen address, but listen was never valid
    applyOverrides(o, result);
    CHECK(result.errors.size() == 1);
  }
  SECTION("an override can fix what the file would have collided with") {
    auto result = loadFromString("admin: 127.0.0.1:9180\n", "f.yaml");
    Overrides o;
    o.listen = "127.0.0.1:9181";
    applyOverrides(o, result);
    CHECK(result.ok());
  }
}
