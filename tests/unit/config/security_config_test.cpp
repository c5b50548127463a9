// The security keys of the process config (issue 7): acl users and their password-hash file,
// upstream passwordFile and TLS, listener TLS, and the admin section (token, metrics port).

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/config.hpp"
#include "tests/unit/config/load_checks.hpp"

using namespace keygate::config;

namespace {

// A temp directory with files; removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char pattern[] = "/tmp/keygate-secconf-XXXXXX";
    path = mkdtemp(pattern);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
};

const std::string kHashA(64, 'a');
const std::string kHashB = std::string(63, 'b') + "0";

std::string dump(const LoadResult& r) {
  return testing::dumpErrors(r);
}

}  // namespace

TEST_CASE("acl users load with their hashes from the passwords file", "[config][security]") {
  TempDir dir;
  dir.write("passwords.yaml", "svc: \"sha256:" + kHashA + "\"\nops: [\"sha256:" + kHashA +
                                  "\", \"sha256:" + kHashB + "\"]\n");
  const auto config = dir.write("keygate.yaml",
                                "acl:\n"
                                "  passwordsFile: passwords.yaml\n"
                                "  users:\n"
                                "    - name: svc\n"
                                "      commands: [\"@read\", \"-keys\"]\n"
                                "      patterns: [\"cpq:*\"]\n"
                                "      tenant: acme\n"
                                "    - {name: ops, commands: [ping], patterns: [\"*\"]}\n");
  const auto r = loadFromFile(config);
  INFO(dump(r));
  REQUIRE(r.ok());
  const auto& acl = r.config.acl;
  CHECK(acl.enabled());
  CHECK(acl.passwordsFile == (dir.path / "passwords.yaml").string());  // relative to the config
  REQUIRE(acl.users.size() == 2);
  CHECK(acl.users[0].name == "svc");
  CHECK(acl.users[0].tenant == "acme");
  REQUIRE(acl.users[0].commands.size() == 2);
  CHECK(acl.users[0].commands[1].text == "-keys");
  CHECK(acl.users[0].commands[1].line == 5);
  CHECK(acl.users[0].passwordHashes == std::vector<std::string>{kHashA});
  CHECK(acl.users[1].passwordHashes == std::vector<std::string>{kHashA, kHashB});
}

TEST_CASE("acl mistakes are reported with file, line and a fix", "[config][security]") {
  TempDir dir;
  dir.write("passwords.yaml", "svc: \"sha256:" + kHashA + "\"\nbad: \"md5:1234\"\n");
  const auto config = dir.write("keygate.yaml",
                                "acl:\n"
                                "  passwordsFile: passwords.yaml\n"
                                "  users:\n"
                                "    - name: svc\n"
                                "      commands: [get]\n"
                                "      patterns: [\"*\"]\n"
                                "    - name: svc\n"
                                "      commands: [get]\n"
                                "      patterns: [\"*\"]\n"
                                "    - name: nohash\n"
                                "      commands: [get]\n"
                                "      patterns: [\"*\"]\n"
                                "    - name: incomplete\n"
                                "      comands: [get]\n");
  const auto r = loadFromFile(config);
  const std::string all = dump(r);
  INFO(all);
  CHECK_FALSE(r.ok());
  CHECK_THAT(all, Catch::Contains("passwords.yaml:2:6: bad: not a password hash"));
  CHECK_THAT(all, Catch::Contains("user 'svc' is defined twice"));
  CHECK_THAT(all, Catch::Contains("user 'nohash' (line 10) has no password hash"));
  CHECK_THAT(all, Catch::Contains("keygate.yaml:14:7: acl.users[3].comands: unknown key"));
  CHECK_THAT(all, Catch::Contains("user has no 'patterns'"));
  CHECK(all.find("md5:1234") == std::string::npos);  // a secret's value is never echoed
}

TEST_CASE("users need a passwords file", "[config][security]") {
  const auto r = loadFromString(
      "acl:\n  users:\n    - {name: svc, commands: [get], patterns: [\"*\"]}\n", "t.yaml");
  INFO(dump(r));
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].path == "acl.users");
  CHECK_THAT(r.errors[0].message, Catch::Contains("acl.passwordsFile"));
}

TEST_CASE("upstream password file, TLS and listener TLS load", "[config][security]") {
  TempDir dir;
  dir.write("pw", "s3cret\n");
  const auto config = dir.write("keygate.yaml",
                                "upstream:\n"
                                "  username: keygate\n"
                                "  passwordFile: pw\n"
                                "  tls: {enabled: true, caFile: /ca.crt, certFile: /c.crt, "
                                "keyFile: /c.key, serverName: redis.svc, verify: false}\n"
                                "tls: {enabled: true, certFile: /s.crt, keyFile: /s.key, "
                                "caFile: /clients.crt}\n");
  const auto r = loadFromFile(config);
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.config.upstream.password == "s3cret");  // trailing newline removed
  CHECK(r.config.upstream.tls.enabled);
  CHECK(r.config.upstream.tls.caFile == "/ca.crt");
  CHECK(r.config.upstream.tls.serverName == "redis.svc");
  CHECK_FALSE(r.config.upstream.tls.verify);
  CHECK(r.config.tls.enabled);
  CHECK(r.config.tls.caFile == "/clients.crt");
}

TEST_CASE("TLS and secret files are checked", "[config][security]") {
  const auto r = loadFromString(
      "upstream: {password: x, passwordFile: /nonexistent/pw, tls: {certFile: /c.crt}}\n"
      "tls: {enabled: true}\n",
      "t.yaml");
  const std::string all = dump(r);
  INFO(all);
  CHECK_THAT(all, Catch::Contains("upstream.password and upstream.passwordFile both"));
  CHECK_THAT(all, Catch::Contains("needs both upstream.tls.certFile and upstream.tls.keyFile"));
  CHECK_THAT(all, Catch::Contains("client TLS needs tls.certFile and tls.keyFile"));
  const auto missing = loadFromString("upstream: {passwordFile: /nonexistent/pw}\n", "t.yaml");
  REQUIRE(missing.errors.size() == 1);
  CHECK(missing.errors[0].line == 1);
  CHECK_THAT(missing.errors[0].message, Catch::Contains("cannot read '/nonexistent/pw'"));
}

TEST_CASE("admin is an address or a section with a token and a metrics port",
          "[config][security]") {
  TempDir dir;
  dir.write("token", "abc123\n");
  const auto plain = loadFromString("admin: 127.0.0.1:9180\n", "t.yaml");
  REQUIRE(plain.ok());
  CHECK(plain.config.admin == HostPort{"127.0.0.1", 9180});
  CHECK(plain.config.adminToken.empty());
  const auto config = dir.write("keygate.yaml",
                                "admin:\n"
                                "  listen: 0.0.0.0:9180\n"
                                "  tokenFile: token\n"
                                "  metricsListen: 0.0.0.0:9181\n");
  const auto r = loadFromFile(config);
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.config.admin == HostPort{"0.0.0.0", 9180});
  CHECK(r.config.adminToken == "abc123");
  CHECK(r.config.metricsListen == HostPort{"0.0.0.0", 9181});
  const auto clash = loadFromString(
      "listen: 127.0.0.1:6380\nadmin: {listen: 127.0.0.1:9180, metricsListen: 127.0.0.1:9180}\n",
      "t.yaml");
  CHECK_THAT(dump(clash), Catch::Contains("admin.metricsListen 127.0.0.1:9180 collides"));
  const auto tokenOnly =
      loadFromString("admin: {tokenFile: " + (dir.path / "token").string() + "}\n", "t.yaml");
  CHECK_THAT(dump(tokenOnly), Catch::Contains("none is configured"));
}
