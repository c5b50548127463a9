// Value grammar shared by the file and the flags: durations, sizes, numbers, host:port, and the
// "did you mean" matcher.

#include "config/values.hpp"

#include <catch2/catch.hpp>

using Catch::Matchers::Contains;
using namespace keygate::config;
using std::chrono::milliseconds;

TEST_CASE("durations need a unit and parse to milliseconds", "[config][values]") {
  struct Good {
    const char* text;
    std::int64_t ms;
  };
  const Good good[] = {{"250ms", 250},    {"0ms", 0},       {"10s", 10'000}, {"2m", 120'000},
                       {"1h", 3'600'000}, {"1500ms", 1500}, {"007s", 7000},  {"24h", 86'400'000}};
  for (const auto& g : good) {
    INFO(g.text);
    const auto p = parseDuration(g.text);
    REQUIRE(p);
    CHECK(p.value->count() == g.ms);
    CHECK(p.error.empty());
  }

  struct Bad {
    const char* text;
    const char* why;
  };
  const Bad bad[] = {
      {"10", "duration needs a unit, e.g. 500ms or 10s"},
      {"0", "duration needs a unit, e.g. 500ms or 10s"},
      {"", "expected a duration, got nothing"},
      {"ms", "is not a duration"},
      {"1.5s", "e.g. 1500ms instead of 1.5s"},
      {"-1s", "cannot be negative"},
      {"10sec", "unknown duration unit 'sec'"},
      {"10 s", "unknown duration unit ' s'"},
      {"10S", "unknown duration unit 'S'"},
      {"s10", "is not a duration"},
      {"99999999999999999999h", "far too long"},
      {"2000000h", "far too long"},
  };
  for (const auto& b : bad) {
    INFO(b.text);
    const auto p = parseDuration(b.text);
    REQUIRE_FALSE(p);
    CHECK_THAT(p.error, Contains(b.why));
  }
  // The bare-number error is the documented sentence, exactly.
  CHECK(parseDuration("30").error == "duration needs a unit, e.g. 500ms or 10s");
}

TEST_CASE("duration ranges name both bounds", "[config][values]") {
  CHECK(*parseDurationIn("5s", milliseconds(1), milliseconds(600'000)).value == milliseconds(5000));
  const auto p = parseDurationIn("11m", milliseconds(1), milliseconds(600'000));
  REQUIRE_FALSE(p);
  CHECK(p.error == "must be between 1ms and 10m, got 11m");
  CHECK_FALSE(parseDurationIn("0ms", milliseconds(1), milliseconds(10)));
}

TEST_CASE("sizes accept bytes and binary or decimal units", "[config][values]") {
  struct Good {
    const char* text;
    std::uint64_t bytes;
  };
  const Good good[] = {
      {"0", 0},
      {"4096", 4096},
      {"512B", 512},
      {"64KiB", 64ull * 1024},
      {"16MiB", 16ull * 1024 * 1024},
      {"1GiB", 1024ull * 1024 * 1024},
      {"4GiB", 4ull * 1024 * 1024 * 1024},
      {"1TiB", 1024ull * 1024 * 1024 * 1024},
      {"64KB", 64'000},
      {"16MB", 16'000'000},
      {"1GB", 1'000'000'000},
      {"2TB", 2'000'000'000'000},
      {"18446744073709551615", 18446744073709551615ull},
  };
  for (const auto& g : good) {
    INFO(g.text);
    const auto p = parseSize(g.text);
    REQUIRE(p);
    CHECK(*p.value == g.bytes);
  }

  struct Bad {
    const char* text;
    const char* why;
  };
  const Bad bad[] = {
      {"64kb", "unknown size unit 'kb'"},     {"64k", "unknown size unit 'k'"},
      {"64 KiB", "unknown size unit ' KiB'"}, {"1.5GiB", "e.g. 1536MiB instead of 1.5GiB"},
      {"-1", "cannot be negative"},           {"KiB", "is not a size"},
      {"", "expected a size, got nothing"},   {"18446744073709551616", "far too large"},
      {"20000000TiB", "far too large"},
  };
  for (const auto& b : bad) {
    INFO(b.text);
    const auto p = parseSize(b.text);
    REQUIRE_FALSE(p);
    CHECK_THAT(p.error, Contains(b.why));
  }
  CHECK_THAT(parseSize("1x").error, Contains("use B, KiB, MiB, GiB, TiB"));
}

TEST_CASE("size ranges and formatting", "[config][values]") {
  constexpr std::uint64_t kGiB = 1024ull * 1024 * 1024;
  CHECK(*parseSizeIn("4GiB", 1, 4 * kGiB).value == 4 * kGiB);
  const auto p = parseSizeIn("5GiB", 1, 4 * kGiB);
  REQUIRE_FALSE(p);
  CHECK(p.error == "must be between 1B and 4GiB, got 5GiB");
  CHECK_FALSE(parseSizeIn("0", 1, 10));

  CHECK(formatSize(0) == "0B");
  CHECK(formatSize(1000) == "1000B");
  CHECK(formatSize(65536) == "64KiB");
  CHECK(formatSize(1536ull * 1024 * 1024) == "1536MiB");
  CHECK(formatDuration(milliseconds(0)) == "0ms");
  CHECK(formatDuration(milliseconds(1500)) == "1500ms");
  CHECK(formatDuration(milliseconds(120'000)) == "2m");
  CHECK(formatDuration(milliseconds(7'200'000)) == "2h");
}

TEST_CASE("whole numbers and their ranges", "[config][values]") {
  CHECK(*parseUnsigned("0").value == 0);
  CHECK(*parseUnsigned("256").value == 256);
  CHECK_THAT(parseUnsigned("").error, Contains("got nothing"));
  CHECK_THAT(parseUnsigned("4.0").error, Contains("write plain decimal digits"));
  CHECK_THAT(parseUnsigned("0x10").error, Contains("write plain decimal digits"));
  CHECK_THAT(parseUnsigned("1_000").error, Contains("write plain decimal digits"));
  CHECK_THAT(parseUnsigned("99999999999999999999").error, Contains("far too large"));

  CHECK(parseUnsignedIn("300", 0, 256, "use 0 for one worker per core").error ==
        "must be between 0 and 256, got 300; use 0 for one worker per core");
  // A negative number is a range problem, not a syntax problem.
  CHECK(parseUnsignedIn("-1", 0, 256).error == "must be between 0 and 256, got -1");
  CHECK(parseUnsignedIn("0", 1, 64).error == "must be between 1 and 64, got 0");
  CHECK(*parseUnsignedIn("64", 1, 64).value == 64);
}

TEST_CASE("host:port table", "[config][values]") {
  struct Good {
    const char* text;
    const char* host;
    std::uint16_t port;
  };
  const Good good[] = {
      {"127.0.0.1:6380", "127.0.0.1", 6380},
      {"[::1]:6380", "::1", 6380},
      {"localhost:6380", "localhost", 6380},
      {":6380", "127.0.0.1", 6380},
      {"0.0.0.0:1", "0.0.0.0", 1},
      {"redis:65535", "redis", 65535},
      {"redis-0.redis.default.svc.cluster.local:6379", "redis-0.redis.default.svc.cluster.local",
       6379},
      {"redis.svc.:6379", "redis.svc.", 6379},
      {"[2001:db8::1]:7000", "2001:db8::1", 7000},
      {"[::]:6380", "::", 6380},
      {"[fe80::1%eth0]:6379", "fe80::1%eth0", 6379},
      {"[::ffff:10.0.0.1]:6379", "::ffff:10.0.0.1", 6379},
      {"[1:2:3:4:5:6:7:8]:1", "1:2:3:4:5:6:7:8", 1},
      {"10.0.0.1:06379", "10.0.0.1", 6379},
  };
  for (const auto& g : good) {
    INFO(g.text);
    const auto p = parseAddress(g.text);
    REQUIRE(p);
    CHECK(p.value->host == g.host);
    CHECK(p.value->port == g.port);
    CHECK(parseHostPort(g.text) == p.value);
  }

  struct Bad {
    const char* text;
    const char* why;
  };
  const Bad bad[] = {
      {"", "got nothing"},
      {"127.0.0.1", "has no port"},
      {"localhost", "write localhost:6380"},
      {"127.0.0.1:", "has no port after ':'"},
      {":", "has no port after ':'"},
      {"127.0.0.1:0", "port 0 is out of range; use a port from 1 to 65535"},
      {"127.0.0.1:65536", "port 65536 is out of range"},
      {"127.0.0.1:99999999", "out of range"},
      {"127.0.0.1:abc", "port 'abc' is not a number"},
      {"127.0.0.1:-1", "port '-1' is not a number"},
      {"::1:6380", "looks like IPv6 without brackets; write it as [::1]:6380"},
      {"[::1]6380", "needs ':' right after ']'"},
      {"[::1]", "has no port"},
      {"[::1:6380", "without a closing ']'"},
      {"[localhost]:1", "'localhost' is not an IPv6 address"},
      {"[1::2::3]:1", "is not an IPv6 address"},
      {"[1:2:3:4:5:6:7:8:9]:1", "is not an IPv6 address"},
      {"[12345::1]:1", "is not an IPv6 address"},
      {"[]:1", "is not an IPv6 address"},
      {"256.0.0.1:1", "'256.0.0.1' is not a valid IPv4 address or host name"},
      {"1.2.3:1", "is not a valid IPv4 address"},
      {"-bad-:1", "is not a valid IPv4 address or host name"},
      {"has space:1", "is not a valid IPv4 address or host name"},
      {"a..b:1", "is not a valid IPv4 address or host name"},
  };
  for (const auto& b : bad) {
    INFO(b.text);
    const auto p = parseAddress(b.text);
    REQUIRE_FALSE(p);
    CHECK_THAT(p.error, Contains(b.why));
    CHECK_FALSE(parseHostPort(b.text));
  }
}

TEST_CASE("HostPort::str brackets IPv6 and round-trips", "[config][values]") {
  CHECK(HostPort{"127.0.0.1", 6380}.str() == "127.0.0.1:6380");
  CHECK(HostPort{"::1", 6380}.str() == "[::1]:6380");
  CHECK(HostPort{"localhost", 1}.str() == "localhost:1");
  for (const char* text : {"127.0.0.1:6380", "[::1]:6380", "[2001:db8::1]:7000", "redis:6379"}) {
    CHECK(parseHostPort(text)->str() == text);
  }
}

TEST_CASE("choices suggest the closest spelling", "[config][values]") {
  CHECK(*parseChoice("warn", kLogLevels, "log level").value == 3);
  const auto p = parseChoice("infoo", kLogLevels, "log level");
  REQUIRE_FALSE(p);
  CHECK(p.error ==
        "unknown log level 'infoo'; did you mean 'info'? Use trace, debug, info, warn, error, "
        "critical or off");
  CHECK(parseChoice("INFO", kLogLevels, "log level").error.find("did you mean 'info'?") !=
        std::string::npos);
  CHECK(parseChoice("verbose", kLogLevels, "log level").error.find("did you mean") ==
        std::string::npos);
  CHECK(parseChoice("warning", kLogLevels, "log level").error.find("did you mean 'warn'?") !=
        std::string::npos);
  CHECK(parseChoice("verbose", kLogLevels, "log level").error ==
        "unknown log level 'verbose'; use trace, debug, info, warn, error, critical or off");
}

TEST_CASE("edit distance and closest match", "[config][values]") {
  CHECK(editDistance("", "") == 0);
  CHECK(editDistance("", "abc") == 3);
  CHECK(editDistance("kitten", "sitting") == 3);
  CHECK(editDistance("ab", "ba") == 1);  // a transposition is one edit
  CHECK(editDistance("listen", "lsiten") == 1);

  constexpr std::string_view keys[] = {"listen", "admin", "threads", "connectTimeout", "log"};
  CHECK(closestMatch("lisen", keys) == "listen");
  CHECK(closestMatch("Listen", keys) == "listen");
  CHECK(closestMatch("connect_timeout", keys) == "connectTimeout");
  CHECK(closestMatch("conectTimout", keys) == "connectTimeout");
  CHECK(closestMatch("treads", keys) == "threads");
  CHECK(closestMatch("lg", keys) == "log");
  CHECK_FALSE(closestMatch("xyz", keys));
  CHECK_FALSE(closestMatch("upstream", keys));
  CHECK(closestMatch("threadsCount", keys) == "threads");
  CHECK(closestMatch("connect", keys) == "connectTimeout");
  CHECK_FALSE(closestMatch("adm", keys));  // too short to be a prefix match
}

TEST_CASE("local endpoint overlap", "[config][values]") {
  const HostPort loop{"127.0.0.1", 6380};
  CHECK(sameLocalEndpoint(loop, loop));
  CHECK(sameLocalEndpoint(loop, {"0.0.0.0", 6380}));
  CHECK(sameLocalEndpoint({"localhost", 6380}, loop));
  CHECK_FALSE(sameLocalEndpoint(loop, {"127.0.0.1", 6381}));
  CHECK_FALSE(sameLocalEndpoint(loop, {"10.0.0.5", 6380}));

  CHECK(reachesListener(loop, loop));
  CHECK(reachesListener({"localhost", 6380}, loop));
  CHECK(reachesListener(loop, {"0.0.0.0", 6380}));
  CHECK(reachesListener({"0.0.0.0", 6380}, loop));
  // A sidecar listening on every interface forwards to a remote Redis on the same port.
  CHECK_FALSE(reachesListener({"redis.default.svc", 6380}, {"0.0.0.0", 6380}));
  CHECK_FALSE(reachesListener({"10.0.0.7", 6380}, {"0.0.0.0", 6380}));
}
