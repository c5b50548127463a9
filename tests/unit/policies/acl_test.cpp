#include "policies/acl.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "policies/registry_policy.hpp"

using namespace keygate;
using namespace keygate::policies;

namespace {

const commands::CommandInfo& row(std::string_view name) {
  const auto* info = commands::CommandTable::redis70().find(name);
  REQUIRE(info != nullptr);
  return *info;
}

const commands::CommandInfo& subRow(std::string_view name, std::string_view sub) {
  const auto& top = row(name);
  const auto* info = commands::CommandTable::redis70().findSubcommand(top, sub);
  REQUIRE(info != nullptr);
  return *info;
}

std::string hex(const PasswordHash& h) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : h) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

config::AclUserConfig user(std::string name, std::vector<std::string> commands,
                           std::vector<std::string> patterns = {"*"}) {
  config::AclUserConfig u;
  u.name = std::move(name);
  int line = 10;
  for (auto& c : commands)
    u.commands.push_back({std::move(c), line++, 7});
  for (auto& p : patterns)
    u.patterns.push_back({std::move(p), line++, 7});
  return u;
}

std::shared_ptr<const Acl> compileOk(config::AclConfig config) {
  std::vector<config::ConfigError> errors;
  auto acl = Acl::compile(config, "keygate.yaml", &errors);
  INFO((errors.empty() ? std::string() : errors.front().str()));
  REQUIRE(acl);
  return acl;
}

}  // namespace

TEST_CASE("sha256 matches the known test vector", "[acl]") {
  CHECK(hex(sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hex(sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("glob patterns match pattern texts", "[acl]") {
  CHECK(globMatch("*", ""));
  CHECK(globMatch("*", "cpq:{tenant-<tenant>}:quote:<id>"));
  CHECK(globMatch("cpq:{tenant-<tenant>}:quote:*", "cpq:{tenant-<tenant>}:quote:workspace:<id>"));
  CHECK_FALSE(globMatch("cpq:{tenant-<tenant>}:quote:*", "cpq:{tenant-<tenant>}:catalog:active"));
  CHECK(globMatch("*:lock:*", "cpq:{tenant-<tenant>}:lock:quote-<quoteId>:<operation>"));
  CHECK(globMatch("exact", "exact"));
  CHECK_FALSE(globMatch("exact", "exact2"));
  CHECK_FALSE(globMatch("a*b", "acbd"));
  CHECK(globMatch("a**b", "ab"));
  // Linear, not exponential: a long text against many stars finishes at once.
  CHECK_FALSE(globMatch("*a*a*a*a*a*a*a*a*b", std::string(5000, 'a')));
}

TEST_CASE("command rules apply in order, as Redis ACL rules do", "[acl]") {
  config::AclConfig config;
  config.users.push_back(user("svc", {"@read", "set", "-keys", "config|get"}));
  config.users.push_back(user("admin", {"@all", "-@dangerous"}));
  config.users.push_back(user("none", {}));
  auto acl = compileOk(config);
  const auto& svc = acl->users()[0];
  const auto allowed = [&](const Acl::User& u, std::string_view name) {
    return Acl::commandAllowed(u, row(name), row(name));
  };
  CHECK(allowed(svc, "get"));
  CHECK(allowed(svc, "mget"));
  CHECK(allowed(svc, "set"));
  CHECK_FALSE(allowed(svc, "keys"));  // @read, then taken away
  CHECK_FALSE(allowed(svc, "del"));
  CHECK_FALSE(allowed(svc, "flushall"));
  CHECK(Acl::commandAllowed(svc, subRow("config", "get"), row("config")));
  CHECK_FALSE(Acl::commandAllowed(svc, subRow("config", "set"), row("config")));

  const auto& admin = acl->users()[1];
  CHECK(allowed(admin, "get"));
  CHECK(allowed(admin, "del"));
  CHECK_FALSE(allowed(admin, "flushall"));  // @dangerous
  CHECK_FALSE(allowed(admin, "keys"));      // @dangerous too

  // Logging in and out is always possible.
  const auto& none = acl->users()[2];
  for (const char* name : {"auth", "hello", "quit", "reset"})
    CHECK(allowed(none, name));
  CHECK_FALSE(allowed(none, "ping"));
}

TEST_CASE("a container rule covers its subcommands", "[acl]") {
  config::AclConfig config;
  config.users.push_back(user("svc", {"client", "-client|kill"}));
  auto acl = compileOk(config);
  const auto& u = acl->users()[0];
  CHECK(Acl::commandAllowed(u, subRow("client", "setname"), row("client")));
  CHECK_FALSE(Acl::commandAllowed(u, subRow("client", "kill"), row("client")));
}

TEST_CASE("unknown commands and categories are errors at their position", "[acl]") {
  config::AclConfig config;
  config.users.push_back(user("svc", {"@read", "gett", "@nosuch", "config|nosuch", "+get"}));
  std::vector<config::ConfigError> errors;
  CHECK_FALSE(Acl::compile(config, "keygate.yaml", &errors));
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].file == "keygate.yaml");
  CHECK(errors[0].line == 11);
  CHECK(errors[0].path == "acl.users[0].commands[1]");
  CHECK_THAT(errors[0].message, Catch::Contains("unknown command 'gett'"));
  CHECK_THAT(errors[1].message, Catch::Contains("unknown ACL category '@nosuch'"));
  CHECK_THAT(errors[1].message, Catch::Contains("@read"));
  CHECK_THAT(errors[2].message, Catch::Contains("no such subcommand"));
}

TEST_CASE("authentication checks user and password against every hash", "[acl]") {
  config::AclConfig config;
  auto u = user("svc", {"get"});
  u.passwordHashes = {hex(sha256("old")), hex(sha256("new"))};
  config.users.push_back(u);
  auto other = user("other", {"get"});
  other.passwordHashes = {hex(sha256("theirs"))};
  config.users.push_back(other);
  auto acl = compileOk(config);
  REQUIRE(acl->authenticate("svc", "old") != nullptr);
  CHECK(acl->authenticate("svc", "old")->name == "svc");
  CHECK(acl->authenticate("svc", "new") != nullptr);
  CHECK(acl->authenticate("svc", "theirs") == nullptr);
  CHECK(acl->authenticate("svc", "") == nullptr);
  CHECK(acl->authenticate("nobody", "old") == nullptr);
  CHECK(acl->authenticate("other", "theirs") == &acl->users()[1]);
}

namespace {

config::PatternEntry entry(std::string text) {
  config::PatternEntry e;
  e.pattern = std::move(text);
  e.owner = "test";
  e.purpose = "test";
  e.authority = true;
  return e;
}

std::shared_ptr<const CompiledRegistry> registry(config::RegistryMode mode) {
  config::Registry r;
  r.file = "registry.yaml";
  r.mode = mode;
  r.patterns.push_back(entry("cpq:{tenant-<tenant>}:quote:<quoteId>"));
  r.patterns.push_back(entry("cpq:{tenant-<tenant>}:catalog:active"));
  auto ch = entry("cpq:{tenant-<tenant>}:invalidate:catalog");
  ch.kind = config::PatternKind::kChannel;
  r.patterns.push_back(ch);
  std::vector<config::ConfigError> errors;
  auto c = CompiledRegistry::compile(std::move(r), &errors);
  INFO((errors.empty() ? std::string() : errors.front().str()));
  REQUIRE(c);
  return c;
}

struct Eval {
  std::shared_ptr<const CompiledRegistry> reg;
  std::vector<std::uint8_t> allowed;
  EvaluateScratch scratch;
  Decision decision;

  struct NoRandom final : RandomSource {
    std::uint64_t upTo(std::uint64_t) override { return 0; }
  } random;

  const Decision& run(std::vector<std::string_view> argv) {
    RequestContext context;
    context.user = "svc";
    context.allowedPatterns = &allowed;
    const auto& top = row(argv[0]);
    evaluate(*reg, top, top, argv, context, random, scratch, decision);
    return decision;
  }
};

}  // namespace

TEST_CASE("keys and channels outside a user's patterns are refused, in audit mode too", "[acl]") {
  config::AclConfig config;
  config.users.push_back(user("svc", {"@all"}, {"cpq:{tenant-<tenant>}:quote:*"}));
  auto acl = compileOk(config);
  for (auto mode : {config::RegistryMode::kEnforce, config::RegistryMode::kAudit}) {
    Eval e;
    e.reg = registry(mode);
    e.allowed = Acl::allowedPatterns(acl->users()[0], *e.reg);
    CHECK(e.allowed == std::vector<std::uint8_t>{1, 0, 0});
    CHECK_FALSE(e.run({"get", "cpq:{tenant-a}:quote:q1"}).refuse);
    const auto& d = e.run({"mget", "cpq:{tenant-a}:quote:q1", "cpq:{tenant-a}:catalog:active"});
    REQUIRE(d.refuse);
    CHECK(d.reason == Reason::kNoPermission);
    CHECK_THAT(d.error, Catch::StartsWith("NOPERM keygate: user 'svc' has no permissions to "
                                          "access the key 'cpq:{tenant-a}:catalog:active'"));
    CHECK(e.run({"publish", "cpq:{tenant-a}:invalidate:catalog", "x"}).reason ==
          Reason::kNoPermission);
    // Unregistered: KEYUNKNOWN when enforcing; audit lets unknown keys through, the ACL not.
    const auto& unknown = e.run({"get", "nope"});
    REQUIRE(unknown.refuse);
    CHECK(unknown.reason ==
          (mode == config::RegistryMode::kEnforce ? Reason::kUnknownKey : Reason::kNoPermission));
  }
  CHECK(reasonName(Reason::kNoPermission) == "no_permission");
}

TEST_CASE("pattern rules that cover nothing are reported", "[acl]") {
  config::AclConfig config;
  config.users.push_back(user("svc", {"get"}, {"cpq:*:quote:*", "typo:*"}));
  auto acl = compileOk(config);
  auto reg = registry(config::RegistryMode::kEnforce);
  CHECK(Acl::unmatchedRules(acl->users()[0], *reg) == std::vector<std::string>{"typo:*"});
}
