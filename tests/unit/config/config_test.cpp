// YAML loading: defaults, a full file, strictness (unknown keys, bad values, wrong types), error
// positions and order, syntax errors, checks across keys, files on disk, the shipped example.

#include "config/config.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "tests/unit/config/load_checks.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using namespace keygate::config;
using std::chrono::milliseconds;

namespace {

LoadResult load(const std::string& yaml) {
  return loadFromString(yaml, "t.yaml");
}

std::string dump(const LoadResult& r) {
  return testing::dumpErrors(r);
}

// Loads `yaml` and expects exactly one error at `line`:`column` on `path`.
ConfigError onlyError(const std::string& yaml, int line, int column, const std::string& path) {
  return testing::expectOnlyError(load, "t.yaml", yaml, line, column, path);
}

void checkDefaults(const Config& c) {
  const Config d;
  CHECK(c.listen == HostPort{"127.0.0.1", 6380});
  CHECK_FALSE(c.admin);
  CHECK(c.threads == 0);
  CHECK(c.logLevel == "info");
  CHECK(c.logFormat == LogFormat::kText);
  CHECK(c.upstream.mode == UpstreamMode::kStandalone);
  CHECK(c.upstream.address == HostPort{"127.0.0.1", 6379});
  CHECK(c.upstream.seeds.empty());
  CHECK(c.upstream.username.empty());
  CHECK(c.upstream.password.empty());
  CHECK(c.upstream.connectTimeout == milliseconds(1000));
  CHECK(c.upstream.connectionsPerWorker == 1);
  CHECK(c.upstream.deferSendsAbove == 128);
  CHECK(c.limits.maxClients == d.limits.maxClients);
  CHECK(c.limits.maxBulkBytes == d.limits.maxBulkBytes);
  CHECK(c.limits.maxArrayElements == d.limits.maxArrayElements);
  CHECK(c.limits.maxNestingDepth == d.limits.maxNestingDepth);
  CHECK(c.limits.maxInlineBytes == d.limits.maxInlineBytes);
  CHECK(c.limits.maxClientOutputBytes == d.limits.maxClientOutputBytes);
  CHECK(c.limits.maxPipelinedRequests == d.limits.maxPipelinedRequests);
  CHECK(c.shutdownDrainTimeout == milliseconds(10'000));
}

}  // namespace

TEST_CASE("empty files and comment-only files give the defaults", "[config][load]") {
  for (const char* yaml : {"", "\n\n", "# only\n  # comments\n", "---\n", "---\n...\n", "~\n",
                           "log:\nupstream:\n  # everything commented out\n"}) {
    INFO(yaml);
    const auto r = load(yaml);
    INFO(dump(r));
    REQUIRE(r.ok());
    checkDefaults(r.config);
    CHECK(r.config.sourcePath == "t.yaml");
  }
}

TEST_CASE("a full valid file sets every field", "[config][load]") {
  const auto r = load(R"(# every key
listen: 0.0.0.0:6379
admin: "[::1]:9180"
threads: 4
log:
  level: debug
  format: json
upstream:
  mode: standalone
  address: redis.default.svc:6379
  username: keygate
  password: "s3cret: #1"
  connectTimeout: 250ms
  connectionsPerWorker: 2
  deferSendsAbove: 0
limits:
  maxClients: 5000
  maxBulkBytes: 64MiB
  maxArrayElements: 100000
  maxNestingDepth: 16
  maxInlineBytes: 16KiB
  maxRequestBytes: 256MiB
  maxClientOutputBytes: 8MB
  maxPipelinedRequests: 512
shutdown:
  drainTimeout: 2m
)");
  INFO(dump(r));
  REQUIRE(r.ok());
  const Config& c = r.config;
  CHECK(c.listen == HostPort{"0.0.0.0", 6379});
  REQUIRE(c.admin);
  CHECK(*c.admin == HostPort{"::1", 9180});
  CHECK(c.threads == 4);
  CHECK(c.logLevel == "debug");
  CHECK(c.logFormat == LogFormat::kJson);
  CHECK(c.upstream.mode == UpstreamMode::kStandalone);
  CHECK(c.upstream.address == HostPort{"redis.default.svc", 6379});
  CHECK(c.upstream.username == "keygate");
  CHECK(c.upstream.password == "s3cret: #1");
  CHECK(c.upstream.connectTimeout == milliseconds(250));
  CHECK(c.upstream.connectionsPerWorker == 2);
  CHECK(c.upstream.deferSendsAbove == 0);
  CHECK(c.limits.maxClients == 5000);
  CHECK(c.limits.maxBulkBytes == 64ull * 1024 * 1024);
  CHECK(c.limits.maxArrayElements == 100000);
  CHECK(c.limits.maxNestingDepth == 16);
  CHECK(c.limits.maxInlineBytes == 16 * 1024);
  CHECK(c.limits.maxRequestBytes == 256ull * 1024 * 1024);
  CHECK(c.limits.maxClientOutputBytes == 8'000'000);
  CHECK(c.limits.maxPipelinedRequests == 512);
  CHECK(c.shutdownDrainTimeout == milliseconds(120'000));
}

TEST_CASE("flow style and range edges load", "[config][load]") {
  const auto r = load(
      "log: {level: off, format: text}\n"
      "threads: 256\n"
      "upstream: {mode: cluster, seeds: [10.0.0.1:7000, \"[::1]:7001\", redis-2:7002],"
      " connectionsPerWorker: 64, connectTimeout: 10m}\n"
      "limits: {maxBulkBytes: 4GiB, maxArrayElements: 2147483648, maxNestingDepth: 1024,"
      " maxClients: 1000000, maxPipelinedRequests: 1, maxInlineBytes: 1, maxClientOutputBytes: "
      "64GiB}\n"
      "shutdown: {drainTimeout: 0ms}\n");
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.config.logLevel == "off");
  CHECK(r.config.threads == 256);
  CHECK(r.config.upstream.mode == UpstreamMode::kCluster);
  REQUIRE(r.config.upstream.seeds.size() == 3);
  CHECK(r.config.upstream.seeds[1] == HostPort{"::1", 7001});
  CHECK(r.config.upstream.connectTimeout == milliseconds(600'000));
  CHECK(r.config.limits.maxBulkBytes == 4ull << 30);
  CHECK(r.config.limits.maxArrayElements == 1ull << 31);
  CHECK(r.config.limits.maxClientOutputBytes == 64ull << 30);
  CHECK(r.config.shutdownDrainTimeout == milliseconds(0));
}

TEST_CASE("each key rejects bad values at the value's position", "[config][load]") {
  struct Case {
    const char* yaml;
    int line;
    int column;
    const char* path;
    const char* why;
  };
  const Case cases[] = {
      {"listen: 127.0.0.1\n", 1, 9, "listen", "has no port"},
      {"listen: 127.0.0.1:70000\n", 1, 9, "listen", "port 70000 is out of range"},
      {"listen: [a, b]\n", 1, 9, "listen",
       "expected a HOST:PORT address such as 127.0.0.1:6380, got a list"},
      {"admin: ::1:9000\n", 1, 8, "admin", "write it as [::1]:9000"},
      {"admin:\n", 1, 1, "admin", "missing value; expected a HOST:PORT address"},
      {"threads: 300\n", 1, 10, "threads",
       "must be between 0 and 256, got 300; use 0 for one worker per core"},
      {"threads: -1\n", 1, 10, "threads", "must be between 0 and 256, got -1"},
      {"threads: four\n", 1, 10, "threads", "expected a whole number such as 4"},
      {"threads: 2.5\n", 1, 10, "threads", "expected a whole number such as 4"},
      {"threads: \"4\"\n", 1, 10, "threads", "got the quoted string \"4\"; remove the quotes"},
      {"threads: {a: 1}\n", 1, 10, "threads", "got a mapping; write a single value"},
      {"threads:\n", 1, 1, "threads", "missing value; expected a whole number from 0 to 256"},
      {"log:\n  level: verbose\n", 2, 10, "log.level", "unknown log level 'verbose'; use trace"},
      {"log:\n  level: INFO\n", 2, 10, "log.level", "did you mean 'info'?"},
      {"log:\n  format: yaml\n", 2, 11, "log.format",
       "unknown log format 'yaml'; use text or json"},
      {"log: debug\n", 1, 6, "log",
       "'log' is a section with the keys level, format, got a single value"},
      {"upstream: [a]\n", 1, 11, "upstream", "'upstream' is a section"},
      {"upstream:\n  mode: sentinel\n", 2, 9, "upstream.mode",
       "unknown upstream mode 'sentinel'; use standalone or cluster"},
      {"upstream:\n  address: redis\n", 2, 12, "upstream.address", "'redis' has no port"},
      {"upstream:\n  seeds: 10.0.0.1:6379\n", 2, 10, "upstream.seeds",
       "expected a list of HOST:PORT addresses"},
      {"upstream:\n  mode: cluster\n  seeds:\n", 3, 3, "upstream.seeds", "got nothing"},
      {"upstream:\n  username: [a]\n", 2, 13, "upstream.username", "expected a string"},
      {"upstream:\n  password: {x: 1}\n", 2, 13, "upstream.password", "expected a string"},
      {"upstream:\n  connectTimeout: 5\n", 2, 19, "upstream.connectTimeout",
       "duration needs a unit, e.g. 500ms or 10s"},
      {"upstream:\n  connectTimeout: 0ms\n", 2, 19, "upstream.connectTimeout",
       "must be between 1ms and 10m, got 0ms"},
      {"upstream:\n  connectTimeout: 1h\n", 2, 19, "upstream.connectTimeout",
       "must be between 1ms and 10m"},
      {"upstream:\n  connectionsPerWorker: 0\n", 2, 25, "upstream.connectionsPerWorker",
       "must be between 1 and 64, got 0"},
      {"upstream:\n  connectionsPerWorker: 65\n", 2, 25, "upstream.connectionsPerWorker",
       "must be between 1 and 64"},
      {"upstream:\n  deferSendsAbove: \"8\"\n", 2, 20, "upstream.deferSendsAbove",
       "remove the quotes"},
      {"upstream:\n  deferSendsAbove: 1000001\n", 2, 20, "upstream.deferSendsAbove",
       "must be between 0 and 1000000"},
      {"limits:\n  maxClients: 0\n", 2, 15, "limits.maxClients", "must be between 1 and 1000000"},
      {"limits:\n  maxClients: 1000001\n", 2, 15, "limits.maxClients",
       "must be between 1 and 1000000"},
      {"limits:\n  maxBulkBytes: 5GiB\n", 2, 17, "limits.maxBulkBytes",
       "must be between 1B and 4GiB, got 5GiB"},
      {"limits:\n  maxBulkBytes: 0\n", 2, 17, "limits.maxBulkBytes", "must be between 1B and 4GiB"},
      {"limits:\n  maxBulkBytes: 64kb\n", 2, 17, "limits.maxBulkBytes", "unknown size unit 'kb'"},
      {"limits:\n  maxArrayElements: 2147483649\n", 2, 21, "limits.maxArrayElements",
       "must be between 1 and 2147483648"},
      {"limits:\n  maxArrayElements: 1MiB\n", 2, 21, "limits.maxArrayElements",
       "expected a whole number"},
      {"limits:\n  maxNestingDepth: 1025\n", 2, 20, "limits.maxNestingDepth",
       "must be between 1 and 1024"},
      {"limits:\n  maxRequestBytes: 1KB\n", 2, 20, "limits.maxRequestBytes", "1KiB"},
      {"limits:\n  maxInlineBytes: 1GiB\n", 2, 19, "limits.maxInlineBytes",
       "must be between 1B and 512MiB"},
      {"limits:\n  maxClientOutputBytes: 65GiB\n", 2, 25, "limits.maxClientOutputBytes",
       "must be between 1B and 64GiB"},
      {"limits:\n  maxClientOutputBytes: lots\n", 2, 25, "limits.maxClientOutputBytes",
       "'lots' is not a size"},
      {"limits:\n  maxPipelinedRequests: 0\n", 2, 25, "limits.maxPipelinedRequests",
       "must be between 1 and 1000000"},
      {"shutdown:\n  drainTimeout: 2h\n", 2, 17, "shutdown.drainTimeout",
       "must be between 0ms and 1h, got 2h"},
      {"shutdown:\n  drainTimeout: 30\n", 2, 17, "shutdown.drainTimeout", "duration needs a unit"},
      {"shutdown: 10s\n", 1, 11, "shutdown", "e.g. shutdown: {drainTimeout: 10s}"},
  };
  for (const auto& c : cases) {
    const auto e = onlyError(c.yaml, c.line, c.column, c.path);
    CHECK_THAT(e.message, Contains(c.why));
  }
}

TEST_CASE("a bad value keeps the default and never echoes the password", "[config][load]") {
  const auto r = load("threads: 999\nupstream:\n  password: [hunter2]\n");
  REQUIRE(r.errors.size() == 2);
  CHECK(r.config.threads == 0);
  for (const auto& e : r.errors)
    CHECK(e.str().find("hunter2") == std::string::npos);
}

TEST_CASE("unknown keys are errors with a suggestion and an exact position", "[config][load]") {
  const auto e = onlyError("listen: 127.0.0.1:6380\nlisen: 127.0.0.1:6381\n", 2, 1, "lisen");
  CHECK(e.message == "unknown key 'lisen'; did you mean 'listen'?");
  CHECK(e.str() == "t.yaml:2:1: lisen: unknown key 'lisen'; did you mean 'listen'?");

  const auto nested =
      onlyError("upstream:\n  address: 127.0.0.1:6379\n    # comment\n  conectTimeout: 1s\n", 4, 3,
                "upstream.conectTimeout");
  CHECK(nested.message == "unknown key 'conectTimeout'; did you mean 'connectTimeout'?");

  const auto deep = onlyError("log:\n  level: info\n  fromat: json\n", 3, 3, "log.fromat");
  CHECK(deep.message == "unknown key 'fromat'; did you mean 'format'?");

  const auto flow =
      onlyError("limits: {maxClients: 10, maxClient: 5}\n", 1, 26, "limits.maxClient");
  CHECK(flow.message == "unknown key 'maxClient'; did you mean 'maxClients'?");

  const auto snake =
      onlyError("upstream:\n  connect_timeout: 1s\n", 2, 3, "upstream.connect_timeout");
  CHECK(snake.message == "unknown key 'connect_timeout'; did you mean 'connectTimeout'?");
}

TEST_CASE("unknown keys far from any sibling point to the right section", "[config][load]") {
  const auto misplaced = onlyError("address: 10.0.0.1:6379\n", 1, 1, "address");
  CHECK(misplaced.message ==
        "unknown key 'address'; did you mean 'upstream.address'? That key belongs under "
        "'upstream:'.");

  const auto upward = onlyError("upstream:\n  threads: 4\n", 2, 3, "upstream.threads");
  CHECK(upward.message ==
        "unknown key 'threads'; did you mean 'threads'? That key belongs at the top level.");

  const auto nothing = onlyError("shutdown:\n  grace: 5s\n", 2, 3, "shutdown.grace");
  CHECK(nothing.message == "unknown key 'grace'; remove it, or use one of: drainTimeout.");

  const auto top = onlyError("zzz: true\n", 1, 1, "zzz");
  CHECK_THAT(
      top.message,
      Contains(
          "remove it, or use one of: listen, admin, tls, acl, threads, ioUring, log, upstream, "
          "limits, shutdown, observability, registry, registryMode, tenant."));
}

TEST_CASE("duplicate keys, odd keys and extra documents are errors", "[config][load]") {
  const auto dup = onlyError("threads: 1\nlog: {}\nthreads: 2\n", 3, 1, "threads");
  CHECK(dup.message == "duplicate key 'threads' (first set on line 1); keep only one of them");

  const auto listKey = onlyError("[a, b]: 1\n", 1, 1, "");
  CHECK_THAT(listKey.message, Contains("keys must be plain names, got a list"));

  const auto docs = onlyError("threads: 1\n---\nthreads: 2\n", 3, 1, "");
  CHECK_THAT(docs.message, Contains("a second YAML document starts here"));
}

TEST_CASE("a top level that is not a mapping is one error", "[config][load]") {
  const auto list = onlyError("- listen: 1\n- threads: 2\n", 1, 1, "");
  CHECK_THAT(list.message, StartsWith("the top level must be a mapping"));
  CHECK_THAT(list.message, Contains("got a list"));
  const auto scalar = onlyError("hello\n", 1, 1, "");
  CHECK_THAT(scalar.message, Contains("got a single value"));
}

TEST_CASE("YAML syntax errors become one error with yaml-cpp's mark", "[config][load]") {
  const auto flow = onlyError("listen: [127.0.0.1:6380\nthreads: 2\n", 2, 8, "");
  CHECK_THAT(flow.message, StartsWith("YAML syntax error: end of sequence flow not found"));
  CHECK_THAT(flow.message, Contains("check the indentation, quotes and brackets"));
  CHECK_THAT(flow.str(), StartsWith("t.yaml:2:8: YAML syntax error"));

  const auto indent = onlyError("threads: 1\n  log: 2\n", 2, 6, "");
  CHECK_THAT(indent.message, Contains("illegal map value"));

  const auto eof = onlyError("upstream:\n  password: \"abc", 2, 17, "");  // yaml-cpp marks the EOF
  CHECK_THAT(eof.message, Contains("YAML syntax error"));
}

TEST_CASE("an unclosed quote is an error, not a value that eats the rest", "[config][load]") {
  // yaml-cpp 0.7 accepts these when the file ends in a newline; the loader does not.
  const auto dq =
      onlyError("upstream:\n  password: \"abc\nthreads: 1\n", 2, 13, "upstream.password");
  CHECK_THAT(dq.message, Contains("has no closing quote"));
  onlyError("listen: '127.0.0.1:1\n", 1, 9, "listen");
  // Escaped and doubled quotes are not closing quotes...
  onlyError("upstream:\n  password: \"a\\\"b\n", 2, 13, "upstream.password");
  onlyError("upstream:\n  password: 'it''s\n", 2, 13, "upstream.password");
  // ...and properly closed values with them load.
  const auto ok = load("upstream:\n  password: \"a\\\"b\"\n  username: 'it''s'\n");
  INFO(dump(ok));
  REQUIRE(ok.ok());
  CHECK(ok.config.upstream.password == "a\"b");
  CHECK(ok.config.upstream.username == "it's");
}

TEST_CASE("all errors are reported at once, in file order", "[config][load]") {
  const auto r = load(R"(threads: 300
log:
  level: verbose
  colour: true
upstream:
  mode: cluster
  seeds: []
  connectTimeout: 10
limits:
  maxBulkBytes: 5GiB
  maxPipeline: 10
listn: :6380
)");
  INFO(dump(r));
  struct Expect {
    int line;
    int column;
    const char* path;
  };
  const Expect expected[] = {
      {1, 10, "threads"},
      {3, 10, "log.level"},
      {4, 3, "log.colour"},
      {7, 10, "upstream.seeds"},
      {8, 19, "upstream.connectTimeout"},
      {10, 17, "limits.maxBulkBytes"},
      {11, 3, "limits.maxPipeline"},
      {12, 1, "listn"},
  };
  REQUIRE(r.errors.size() == std::size(expected));
  for (std::size_t i = 0; i < std::size(expected); ++i) {
    INFO(i);
    CHECK(r.errors[i].line == expected[i].line);
    CHECK(r.errors[i].column == expected[i].column);
    CHECK(r.errors[i].path == expected[i].path);
    CHECK_FALSE(r.errors[i].message.empty());
  }
  CHECK_THAT(r.errors[3].message, Contains("cluster mode needs at least one seed"));
  // A truncated key name is matched by prefix.
  CHECK(r.errors[6].message == "unknown key 'maxPipeline'; did you mean 'maxPipelinedRequests'?");
  CHECK(r.errors[7].message == "unknown key 'listn'; did you mean 'listen'?");
}

TEST_CASE("cluster mode and seeds", "[config][load][cross]") {
  SECTION("cluster with seeds") {
    const auto r = load(
        "upstream:\n  mode: cluster\n  seeds:\n    - 10.0.0.1:7000\n    - "
        "\"[2001:db8::5]:7001\"\n");
    INFO(dump(r));
    REQUIRE(r.ok());
    REQUIRE(r.config.upstream.seeds.size() == 2);
    CHECK(r.config.upstream.seeds[0] == HostPort{"10.0.0.1", 7000});
    CHECK(r.config.upstream.seeds[1] == HostPort{"2001:db8::5", 7001});
  }
  SECTION("cluster without seeds blames the mode") {
    const auto e = onlyError("upstream:\n  mode: cluster\n", 2, 9, "upstream.mode");
    CHECK_THAT(e.message, Contains("cluster mode needs at least one seed"));
  }
  SECTION("cluster with an empty seed list blames the list") {
    onlyError("upstream:\n  seeds: []\n  mode: cluster\n", 2, 10, "upstream.seeds");
  }
  SECTION("a bad seed has an indexed path") {
    const auto e =
        onlyError("upstream:\n  mode: cluster\n  seeds:\n    - 10.0.0.1:7000\n    - 10.0.0.2:0\n",
                  5, 7, "upstream.seeds[1]");
    CHECK_THAT(e.message, Contains("port 0 is out of range"));
  }
  SECTION("a duplicate seed") {
    const auto e = onlyError("upstream:\n  mode: cluster\n  seeds: [a:1, b:2, a:1]\n", 3, 21,
                             "upstream.seeds[2]");
    CHECK(e.message == "seed a:1 is listed twice; list each node once");
  }
  SECTION("seeds in standalone mode") {
    const auto e = onlyError("upstream:\n  seeds: [a:1]\n", 2, 10, "upstream.seeds");
    CHECK_THAT(e.message, Contains("seeds are only used in cluster mode"));
  }
  SECTION("an address in cluster mode") {
    const auto e = onlyError("upstream:\n  mode: cluster\n  address: a:1\n  seeds: [b:2]\n", 3, 12,
                             "upstream.address");
    CHECK_THAT(e.message, Contains("move this address into upstream.seeds"));
  }
}

TEST_CASE("checks across keys", "[config][load][cross]") {
  SECTION("username without password") {
    const auto e = onlyError("upstream:\n  username: app\n", 2, 13, "upstream.username");
    CHECK_THAT(e.message, Contains("needs upstream.password as well"));
  }
  SECTION("password alone is fine") {
    CHECK(load("upstream:\n  password: pw\n").ok());
  }
  SECTION("admin on the listen address") {
    const auto e = onlyError("listen: 0.0.0.0:7000\nadmin: 127.0.0.1:7000\n", 2, 8, "admin");
    CHECK(e.message ==
          "admin address 127.0.0.1:7000 collides with listen 0.0.0.0:7000; give the admin HTTP "
          "listener its own port");
  }
  SECTION("upstream pointing at keygate itself") {
    const auto e = onlyError("upstream:\n  address: localhost:6380\n", 2, 12, "upstream.address");
    CHECK_THAT(e.message, Contains("keygate would forward to itself"));
  }
  SECTION("listen moved onto the default upstream blames listen") {
    const auto e = onlyError("listen: :6379\n", 1, 9, "listen");
    CHECK_THAT(e.message, Contains("keygate would forward to itself"));
  }
  SECTION("a remote upstream on the same port as a wildcard listener is fine") {
    const auto r = load("listen: 0.0.0.0:6379\nupstream:\n  address: redis.default.svc:6379\n");
    INFO(dump(r));
    CHECK(r.ok());
  }
  SECTION("a seed pointing at keygate itself") {
    const auto e = onlyError("upstream:\n  mode: cluster\n  seeds: [127.0.0.1:6380]\n", 3, 10,
                             "upstream.seeds");
    CHECK_THAT(e.message, Contains("is keygate's own listen address"));
  }
  SECTION("no cross-check is judged on a value that was already wrong") {
    // listen is invalid, so the default listen address must not produce a second error.
    const auto e =
        onlyError("listen: nope\nupstream:\n  address: 127.0.0.1:6380\n", 1, 9, "listen");
    CHECK_THAT(e.message, Contains("has no port"));
  }
}

TEST_CASE("ConfigError::str formats", "[config][load]") {
  CHECK(ConfigError{"f.yaml", 3, 7, "upstream.address", "bad"}.str() ==
        "f.yaml:3:7: upstream.address: bad");
  CHECK(ConfigError{"f.yaml", 3, 7, "", "syntax"}.str() == "f.yaml:3:7: syntax");
  CHECK(ConfigError{"", 0, 0, "--threads", "bad"}.str() == "--threads: bad");
  CHECK(ConfigError{"f.yaml", 0, 0, "", "unreadable"}.str() == "f.yaml: unreadable");
  CHECK(ConfigError{"", 2, 1, "listen", "bad"}.str() == "2:1: listen: bad");
}

TEST_CASE("loadFromFile reads files and reports unreadable ones", "[config][load][file]") {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("keygate-config-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path good = dir / "good.yaml";
  std::ofstream(good) << "threads: 3\nlog:\n  format: json\n";
  const fs::path bad = dir / "bad.yaml";
  std::ofstream(bad) << "threads: 3\nthread: 4\n";

  SECTION("a valid file") {
    const auto r = loadFromFile(good.string());
    INFO(dump(r));
    REQUIRE(r.ok());
    CHECK(r.config.threads == 3);
    CHECK(r.config.logFormat == LogFormat::kJson);
    CHECK(r.config.sourcePath == good.string());
  }
  SECTION("errors carry the file name") {
    const auto r = loadFromFile(bad.string());
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].str() ==
          bad.string() + ":2:1: thread: unknown key 'thread'; did you mean 'threads'?");
  }
  SECTION("a missing file is one error") {
    const auto missing = (dir / "missing.yaml").string();
    const auto r = loadFromFile(missing);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].file == missing);
    CHECK(r.errors[0].line == 0);
    CHECK_THAT(r.errors[0].message, Contains("cannot read the configuration file"));
    CHECK_THAT(r.errors[0].message, Contains("No such file or directory"));
    CHECK_THAT(r.errors[0].message, Contains("check the path given to --config"));
  }
  SECTION("a directory is one error") {
    const auto r = loadFromFile(dir.string());
    REQUIRE(r.errors.size() == 1);
    CHECK_THAT(r.errors[0].message, Contains("it is a directory"));
  }
  fs::remove_all(dir);
}

TEST_CASE("the shipped example file loads with zero errors", "[config][load][example]") {
  const auto r = loadFromFile(KEYGATE_EXAMPLE_CONFIG);
  INFO(dump(r));
  REQUIRE(r.ok());
  // The example documents a sidecar: every interface on the Redis port, a remote Redis.
  CHECK(r.config.listen == HostPort{"0.0.0.0", 6379});
  CHECK(r.config.admin.has_value());
  CHECK(r.config.upstream.mode == UpstreamMode::kStandalone);
}

TEST_CASE("the reference and the example mention every key", "[config][docs]") {
  const auto slurp = [](const char* path) {
    std::ifstream in(path);
    REQUIRE(in);
    return std::string{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  };
  const std::string readme = slurp(KEYGATE_CONFIG_README);
  const std::string example = slurp(KEYGATE_EXAMPLE_CONFIG);
  // Keep in step with the schema tables in config/config.cpp.
  const char* paths[] = {"listen",
                         "admin",
                         "threads",
                         "log.level",
                         "log.format",
                         "upstream.mode",
                         "upstream.address",
                         "upstream.seeds",
                         "upstream.username",
                         "upstream.password",
                         "upstream.connectTimeout",
                         "upstream.connectionsPerWorker",
                         "upstream.deferSendsAbove",
                         "limits.maxClients",
                         "limits.maxBulkBytes",
                         "limits.maxArrayElements",
                         "limits.maxNestingDepth",
                         "limits.maxInlineBytes",
                         "limits.maxClientOutputBytes",
                         "limits.maxPipelinedRequests",
                         "shutdown.drainTimeout"};
  for (const std::string path : paths) {
    INFO(path);
    CHECK(readme.find("`" + path + "`") != std::string::npos);
    const std::string key = path.substr(path.rfind('.') + 1);
    CHECK(example.find(key + ":") != std::string::npos);
  }
  for (const char* flag : {"--config", "--listen", "--upstream", "--admin", "--threads",
                           "--log-level", "--log-format", "--help", "--version"}) {
    CHECK(readme.find(flag) != std::string::npos);
  }
}

TEST_CASE("ioUring is a boolean, on by default", "[config][load]") {
  using keygate::config::loadFromString;
  CHECK(loadFromString("listen: 127.0.0.1:6380\n", "t.yaml").config.ioUring);
  auto off = loadFromString("ioUring: false\n", "t.yaml");
  REQUIRE(off.ok());
  CHECK_FALSE(off.config.ioUring);
  auto bad = loadFromString("threads: 1\nioUring: maybe\n", "t.yaml");
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].line == 2);
  CHECK(bad.errors[0].path == "ioUring");
}

TEST_CASE("observability.keyTracking is a boolean, on by default", "[config][load]") {
  using keygate::config::loadFromString;
  CHECK(loadFromString("listen: 127.0.0.1:6380\n", "t.yaml").config.keyTracking);
  auto off = loadFromString("observability: {keyTracking: false}\n", "t.yaml");
  REQUIRE(off.ok());
  CHECK_FALSE(off.config.keyTracking);
  auto bad = loadFromString("observability:\n  keyTracking: sometimes\n", "t.yaml");
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].line == 2);
  CHECK(bad.errors[0].path == "observability.keyTracking");
}

TEST_CASE("registryMode is enforce or audit, unset by default, and needs a registry",
          "[config][load][cross]") {
  using keygate::config::loadFromString;
  using keygate::config::RegistryMode;
  CHECK_FALSE(loadFromString("registry: r.yaml\n", "t.yaml").config.registryMode);
  auto audit = loadFromString("registry: r.yaml\nregistryMode: audit\n", "t.yaml");
  REQUIRE(audit.ok());
  CHECK(audit.config.registryMode == RegistryMode::kAudit);
  auto enforce = loadFromString("registry: r.yaml\nregistryMode: enforce\n", "t.yaml");
  REQUIRE(enforce.ok());
  CHECK(enforce.config.registryMode == RegistryMode::kEnforce);

  auto bad = loadFromString("registry: r.yaml\nregistryMode: strict\n", "t.yaml");
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].line == 2);
  CHECK(bad.errors[0].column == 15);
  CHECK(bad.errors[0].path == "registryMode");
  CHECK_THAT(bad.errors[0].message, Contains("enforce or audit"));

  auto alone = loadFromString("registryMode: audit\n", "t.yaml");
  REQUIRE(alone.errors.size() == 1);
  CHECK(alone.errors[0].path == "registryMode");
  CHECK_THAT(alone.errors[0].message, Contains("none is configured"));
}
