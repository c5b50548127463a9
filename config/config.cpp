// YAML file -> Config. The loader walks the document once against a static schema (one table of
// fields per section), reports every problem it meets instead of stopping at the first, then runs
// the checks that span several keys (cluster seeds, a listener that would forward to itself, ...).
// yaml-cpp's exceptions are caught here; none leave the module.

#include "config/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string_view>
#include <system_error>

#include "config/values.hpp"
#include "config/yaml_reader.hpp"

namespace keygate::config {

using std::chrono::milliseconds;

std::string HostPort::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::string ConfigError::str() const {
  std::string out = file;
  if (line > 0) {
    if (!out.empty()) out += ":";
    out += std::to_string(line) + ":" + std::to_string(column);
  }
  if (!out.empty()) out += ": ";
  if (!path.empty()) out += path + ": ";
  return out + message;
}

std::optional<HostPort> parseHostPort(const std::string& text) {
  return parseAddress(text).value;
}

namespace {

constexpr milliseconds kMinConnectTimeout{1};
constexpr milliseconds kMaxConnectTimeout = std::chrono::minutes(10);
constexpr milliseconds kMaxDrainTimeout = std::chrono::hours(1);
constexpr std::uint64_t kMiB = 1024ull * 1024;
constexpr std::uint64_t kGiB = 1024ull * kMiB;

class Loader;

using Field = FieldOf<Loader>;
using Section = SectionOf<Loader>;

// A rule spanning several keys. `involved` lists their paths in order of blame: the error is
// reported at the first one that appears in the file (or on the command line).
struct Problem {
  std::vector<std::string_view> involved;
  std::string message;
};

std::vector<Problem> crossCheck(const Config& c,
                                const std::function<bool(std::string_view)>& explicitlySet) {
  std::vector<Problem> problems;
  const bool cluster = c.upstream.mode == UpstreamMode::kCluster;
  if (cluster && c.upstream.seeds.empty()) {
    problems.push_back({{"upstream.seeds", "upstream.mode"},
                        "cluster mode needs at least one seed; list cluster nodes in "
                        "upstream.seeds, e.g. seeds: [10.0.0.1:6379, 10.0.0.2:6379]"});
  }
  if (!cluster && !c.upstream.seeds.empty()) {
    problems.push_back({{"upstream.seeds", "upstream.mode"},
                        "seeds are only used in cluster mode; set upstream.mode: cluster, or "
                        "remove seeds and use upstream.address"});
  }
  if (!cluster && explicitlySet("upstream.readFrom")) {
    problems.push_back({{"upstream.readFrom", "upstream.mode"},
                        "readFrom chooses between a cluster master and its replicas; it needs "
                        "upstream.mode: cluster (remove it for a standalone upstream)"});
  }
  if (cluster && explicitlySet("upstream.address")) {
    problems.push_back({{"upstream.address", "upstream.mode"},
                        "cluster mode finds its nodes through upstream.seeds and has no use for "
                        "address; move this address into upstream.seeds"});
  }
  if (!c.upstream.username.empty() && c.upstream.password.empty()) {
    problems.push_back({{"upstream.username", "upstream.password"},
                        "an upstream ACL username needs upstream.password as well; set the "
                        "password, or remove the username to use the default user"});
  }
  if (c.tls.enabled && (c.tls.certFile.empty() || c.tls.keyFile.empty())) {
    problems.push_back({{"tls.enabled", "tls.certFile", "tls.keyFile"},
                        "client TLS needs tls.certFile and tls.keyFile (PEM), e.g. certFile: "
                        "/etc/keygate/tls/tls.crt, keyFile: /etc/keygate/tls/tls.key"});
  }
  if (c.upstream.tls.certFile.empty() != c.upstream.tls.keyFile.empty()) {
    problems.push_back({{"upstream.tls.certFile", "upstream.tls.keyFile"},
                        "a client certificate for Redis needs both upstream.tls.certFile and "
                        "upstream.tls.keyFile; give both, or neither"});
  }
  if (!c.adminTokenFile.empty() && !c.admin) {
    problems.push_back({{"admin.tokenFile", "admin"},
                        "admin.tokenFile guards the admin listener, and none is configured; "
                        "set admin.listen, or remove tokenFile"});
  }
  if (c.metricsListen && (sameLocalEndpoint(*c.metricsListen, c.listen) ||
                          (c.admin && sameLocalEndpoint(*c.metricsListen, *c.admin)))) {
    problems.push_back({{"admin.metricsListen", "listen"},
                        "admin.metricsListen " + c.metricsListen->str() +
                            " collides with another listener; give /metrics its own port"});
  }
  if (c.registryMode && c.registryPath.empty()) {
    problems.push_back({{"registryMode", "registry"},
                        "registryMode sets the mode of the key registry, and none is "
                        "configured; set registry: FILE (or --registry FILE), or remove it"});
  }
  if (c.acl.enabled() && !c.tenant.empty()) {
    problems.push_back({{"tenant", "acl.users"},
                        "with acl.users, tenants are bound per user (acl.users[].tenant); "
                        "remove the listener-wide tenant"});
  }
  if (c.admin && sameLocalEndpoint(*c.admin, c.listen)) {
    problems.push_back({{"admin", "listen"},
                        "admin address " + c.admin->str() + " collides with listen " +
                            c.listen.str() + "; give the admin HTTP listener its own port"});
  }
  if (!cluster && reachesListener(c.upstream.address, c.listen)) {
    problems.push_back({{"upstream.address", "listen"},
                        "upstream.address " + c.upstream.address.str() +
                            " is keygate's own listen address " + c.listen.str() +
                            ", so keygate would forward to itself; point it at Redis"});
  }
  if (cluster) {
    for (const auto& seed : c.upstream.seeds) {
      if (reachesListener(seed, c.listen)) {
        problems.push_back({{"upstream.seeds", "listen"},
                            "seed " + seed.str() + " is keygate's own listen address " +
                                c.listen.str() + "; list Redis Cluster nodes only"});
      }
    }
  }
  return problems;
}

class Loader : public YamlReader {
 public:
  Loader(const std::string& file, LoadResult& out) : YamlReader(file, out.errors), out_(out) {}

  void load(const std::string& yaml);

  Config& config() { return out_.config; }

  void readSeeds(const Entry& e);
  void readSection(const Entry& e, const Section& section);
  // A file path; relative paths are taken from the config file's directory, so a config and
  // the files it names move together. `emptyHint` follows "an empty path; " when it is empty.
  std::optional<std::string> readPath(
      const Entry& e, std::string_view emptyHint = "give a file, or remove the key");
  void readRules(const Entry& e, std::vector<AclRule>& out);
  void readUsers(const Entry& e);
  AclUserConfig& user() { return *user_; }

 private:
  void runCrossChecks();
  // Secrets named by the config (upstream.passwordFile, admin.tokenFile, acl.passwordsFile).
  void readSecrets();
  void readPasswords();

  AclUserConfig* user_ = nullptr;

  LoadResult& out_;
};

// ---- schema -------------------------------------------------------------------------------

constexpr Field kLogFields[] = {
    {"level",
     [](Loader& l, const Entry& e) {
       if (auto i = l.readChoice(e, kLogLevels, "log level")) {
         l.config().logLevel = std::string(kLogLevels[*i]);
       }
     }},
    {"format",
     [](Loader& l, const Entry& e) {
       if (auto i = l.readChoice(e, kLogFormats, "log format")) {
         l.config().logFormat = *i == 0 ? LogFormat::kText : LogFormat::kJson;
       }
     }},
};

constexpr Field kUpstreamTlsFields[] = {
    {"enabled",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readBool(e)) l.config().upstream.tls.enabled = *v;
     }},
    {"caFile",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readPath(e)) l.config().upstream.tls.caFile = *v;
     }},
    {"certFile",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readPath(e)) l.config().upstream.tls.certFile = *v;
     }},
    {"keyFile",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readPath(e)) l.config().upstream.tls.keyFile = *v;
     }},
    {"serverName",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readString(e)) l.config().upstream.tls.serverName = *v;
     }},
    {"verify",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readBool(e)) l.config().upstream.tls.verify = *v;
     }},
};

constexpr Section kUpstreamTlsSection{"tls", kUpstreamTlsFields,
                                      "e.g. tls: {enabled: true, caFile: /etc/keygate/tls/ca.crt}"};

constexpr Field kUpstreamFields[] = {
    {"mode",
     [](Loader& l, const Entry& e) {
       if (auto i = l.readChoice(e, kUpstreamModes, "upstream mode")) {
         l.config().upstream.mode = *i == 0 ? UpstreamMode::kStandalone : UpstreamMode::kCluster;
       }
     }},
    {"address",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readAddress(e)) l.config().upstream.address = *v;
     }},
    {"seeds", [](Loader& l, const Entry& e) { l.readSeeds(e); }},
    {"username",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readString(e)) l.config().upstream.username = *v;
     }},
    {"password",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readString(e)) l.config().upstream.password = *v;
     }},
    {"passwordFile",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readPath(e)) l.config().upstream.passwordFile = *v;
     }},
    {"tls", [](Loader& l, const Entry& e) { l.readSection(e, kUpstreamTlsSection); }},
    {"connectTimeout",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readDuration(e, kMinConnectTimeout, kMaxConnectTimeout)) {
         l.config().upstream.connectTimeout = *v;
       }
     }},
    {"connectionsPerWorker",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readUint(e, 1, 64)) {
         l.config().upstream.connectionsPerWorker = static_cast<std::uint32_t>(*v);
       }
     }},
    {"readFrom",
     [](Loader& l, const Entry& e) {
       if (auto i = l.readChoice(e, kReadFromChoices, "read preference")) {
         l.config().upstream.readFrom = *i == 0 ? ReadFrom::kMaster : ReadFrom::kReplicaPreferred;
       }
     }},
    {"topologyRefreshInterval",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readDuration(e, milliseconds(1000), milliseconds(600000))) {
         l.config().upstream.topologyRefreshInterval = *v;
       }
     }},
    {"timeoutsBeforeReconnect",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readUint(e, 0, 1000000)) {
         l.config().upstream.timeoutsBeforeReconnect = static_cast<std::uint32_t>(*v);
       }
     }},
    {"deferSendsAbove",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readUint(e, 0, 1000000)) {
         l.config().upstream.deferSendsAbove = static_cast<std::uint32_t>(*v);
       }
     }},
};

constexpr Field kLimitsFields[] = {
    {"maxClients",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readUint(e, 1, 1'000'000)) {
         l.config().limits.maxClients = static_cast<std::uint32_t>(*v);
       }
     }},
    {"maxBulkBytes",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readSize(e, 1, 4 * kGiB)) l.config().limits.maxBulkBytes = *v;
     }},
    {"maxArrayElements",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readUint(e, 1, 1ull << 31)) l.config().limits.maxArrayElements = *v;
     }},
    {"maxNestingDepth",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readUint(e, 1, 1024)) {
         l.config().limits.maxNestingDepth = static_cast<std::uint32_t>(*v);
       }
     }},
    {"maxInlineBytes",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readSize(e, 1, 512 * kMiB)) l.config().limits.maxInlineBytes = *v;
     }},
    {"maxClientOutputBytes",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readSize(e, 1, 64 * kGiB)) l.config().limits.maxClientOutputBytes = *v;
     }},
    {"maxRequestBytes",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readSize(e, 1024, 64 * kGiB)) l.config().limits.maxRequestBytes = *v;
     }},
    {"maxPipelinedRequests",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readUint(e, 1, 1'000'000)) {
         l.config().limits.maxPipelinedRequests = static_cast<std::uint32_t>(*v);
       }
     }},
};

constexpr Field kShutdownFields[] = {
    {"drainTimeout",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readDuration(e, milliseconds(0), kMaxDrainTimeout)) {
         l.config().shutdownDrainTimeout = *v;
       }
     }},
};

constexpr Field kObservabilityFields[] = {
    {"keyTracking",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readBool(e)) l.config().keyTracking = *v;
     }},
};

constexpr Field kClientTlsFields[] = {
    {"enabled",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readBool(e)) l.config().tls.enabled = *v;
     }},
    {"certFile",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readPath(e)) l.config().tls.certFile = *v;
     }},
    {"keyFile",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readPath(e)) l.config().tls.keyFile = *v;
     }},
    {"caFile",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readPath(e)) l.config().tls.caFile = *v;
     }},
};

constexpr Field kAdminFields[] = {
    {"listen",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readAddress(e)) l.config().admin = *v;
     }},
    {"tokenFile",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readPath(e)) l.config().adminTokenFile = *v;
     }},
    {"metricsListen",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readAddress(e)) l.config().metricsListen = *v;
     }},
};

constexpr Field kAclUserFields[] = {
    {"name",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readString(e)) l.user().name = *v;
     }},
    {"commands", [](Loader& l, const Entry& e) { l.readRules(e, l.user().commands); }},
    {"patterns", [](Loader& l, const Entry& e) { l.readRules(e, l.user().patterns); }},
    {"tenant",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readString(e)) l.user().tenant = *v;
     }},
};

constexpr Field kAclFields[] = {
    {"passwordsFile",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readPath(e)) l.config().acl.passwordsFile = *v;
     }},
    {"users", [](Loader& l, const Entry& e) { l.readUsers(e); }},
};

constexpr Section kLogSection{"log", kLogFields, "e.g. log: {level: info, format: json}"};
constexpr Section kClientTlsSection{
    "tls", kClientTlsFields,
    "e.g. tls: {enabled: true, certFile: /etc/keygate/tls/tls.crt, keyFile: "
    "/etc/keygate/tls/tls.key}"};
constexpr Section kAdminSection{"admin", kAdminFields,
                                "e.g. admin: {listen: 127.0.0.1:9180, tokenFile: "
                                "/etc/keygate/admin/token, metricsListen: 0.0.0.0:9181}"};
constexpr Section kAclUserSection{
    "users", kAclUserFields,
    "e.g. - {name: quote-service, commands: [\"@read\", \"@write\"], patterns: [\"quote:*\"]}",
    "in each entry of 'acl.users:'"};
constexpr Section kAclSection{"acl", kAclFields,
                              "e.g. acl: {passwordsFile: /etc/keygate/acl/passwords.yaml, users: "
                              "[...]}"};
constexpr Section kObservabilitySection{"observability", kObservabilityFields,
                                        "e.g. observability: {keyTracking: false}"};
constexpr Section kUpstreamSection{"upstream", kUpstreamFields,
                                   "e.g. upstream: {address: 127.0.0.1:6379}"};
constexpr Section kLimitsSection{"limits", kLimitsFields, "e.g. limits: {maxClients: 10000}"};
constexpr Section kShutdownSection{"shutdown", kShutdownFields,
                                   "e.g. shutdown: {drainTimeout: 10s}"};

constexpr Field kTopFields[] = {
    {"listen",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readAddress(e)) l.config().listen = *v;
     }},
    {"admin",
     [](Loader& l, const Entry& e) {
       // HOST:PORT, or a section with listen, tokenFile and metricsListen.
       if (e.value.IsMap()) {
         l.readSection(e, kAdminSection);
       } else if (auto v = l.readAddress(e)) {
         l.config().admin = *v;
       }
     }},
    {"tls", [](Loader& l, const Entry& e) { l.readSection(e, kClientTlsSection); }},
    {"acl", [](Loader& l, const Entry& e) { l.readSection(e, kAclSection); }},
    {"threads",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readUint(e, 0, kMaxThreads, kThreadsHint)) {
         l.config().threads = static_cast<std::uint32_t>(*v);
       }
     }},
    {"ioUring",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readBool(e)) l.config().ioUring = *v;
     }},
    {"log", [](Loader& l, const Entry& e) { l.readSection(e, kLogSection); }},
    {"upstream", [](Loader& l, const Entry& e) { l.readSection(e, kUpstreamSection); }},
    {"limits", [](Loader& l, const Entry& e) { l.readSection(e, kLimitsSection); }},
    {"shutdown", [](Loader& l, const Entry& e) { l.readSection(e, kShutdownSection); }},
    {"observability", [](Loader& l, const Entry& e) { l.readSection(e, kObservabilitySection); }},
    {"registry",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readPath(e,
                               "give the key registry file, e.g. registry: "
                               "/etc/keygate/registry/registry.yaml, or remove the key")) {
         l.config().registryPath = *v;
       }
     }},
    {"registryMode",
     [](Loader& l, const Entry& e) {
       if (auto i = l.readChoice(e, kRegistryModes, "registry mode")) {
         l.config().registryMode = *i == 0 ? RegistryMode::kEnforce : RegistryMode::kAudit;
       }
     }},
    {"tenant",
     [](Loader& l, const Entry& e) {
       if (auto v = l.readString(e)) l.config().tenant = *v;
     }},
};

constexpr Section kTopSection{"", kTopFields, "e.g. listen: 127.0.0.1:6380"};

constexpr const Section* kAllSections[] = {
    &kTopSection,      &kLogSection,           &kUpstreamSection,    &kLimitsSection,
    &kShutdownSection, &kObservabilitySection, &kUpstreamTlsSection, &kClientTlsSection,
    &kAdminSection,    &kAclSection,           &kAclUserSection};

// ---- loader -------------------------------------------------------------------------------

void Loader::load(const std::string& yaml) {
  const auto document = parse(yaml);
  // An empty file, or one holding only comments, has no document: every default applies.
  if (!document || document->IsNull()) return;
  const YAML::Node& root = *document;
  if (!root.IsMap()) {
    report(root.Mark(), "",
           "the top level must be a mapping of keys such as 'listen:' and 'upstream:', got " +
               kindOf(root) + "; see config/keygate.example.yaml");
    return;
  }
  walkMap(*this, root, "", kTopSection, std::span<const Section* const>(kAllSections));
  readSecrets();
  runCrossChecks();
  sortErrors();
}

void Loader::readSeeds(const Entry& e) {
  constexpr std::string_view kExpected =
      "a list of HOST:PORT addresses, e.g. [10.0.0.1:6379, 10.0.0.2:6379]";
  if (!e.value.IsSequence()) {
    const std::string got = e.value.IsNull() ? "nothing" : kindOf(e.value);
    report(e.at(), e.path, "expected " + std::string(kExpected) + ", got " + got);
    return;
  }
  std::vector<HostPort> seeds;
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    const YAML::Node item = e.value[i];
    const YAML::Mark itemMark = item.IsNull() ? e.at() : item.Mark();
    const Entry entry{itemMark, item, e.path + "[" + std::to_string(i) + "]"};
    const auto seed = readAddress(entry);
    if (!seed) continue;
    if (std::find(seeds.begin(), seeds.end(), *seed) != seeds.end()) {
      report(entry.at(), entry.path,
             "seed " + seed->str() + " is listed twice; list each node once");
      continue;
    }
    seeds.push_back(*seed);
  }
  config().upstream.seeds = std::move(seeds);
}

std::optional<std::string> Loader::readPath(const Entry& e, std::string_view emptyHint) {
  auto v = readString(e);
  if (!v) return std::nullopt;
  if (v->empty()) {
    report(e.at(), e.path, "an empty path; " + std::string(emptyHint));
    return std::nullopt;
  }
  if (v->front() != '/' && file().find('/') != std::string::npos) {
    return file().substr(0, file().rfind('/') + 1) + *v;
  }
  return v;
}

void Loader::readRules(const Entry& e, std::vector<AclRule>& out) {
  if (!e.value.IsSequence()) {
    const std::string got = e.value.IsNull() ? "nothing" : kindOf(e.value);
    report(e.at(), e.path,
           "expected a list, e.g. [\"@read\", \"@write\", \"-flushall\"] for commands or "
           "[\"cpq:{tenant-<tenant>}:quote:*\"] for patterns, got " +
               got);
    return;
  }
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    const YAML::Node item = e.value[i];
    const Entry entry{item.IsNull() ? e.at() : item.Mark(), item,
                      e.path + "[" + std::to_string(i) + "]"};
    auto text = readString(entry);
    if (!text) continue;
    if (text->empty()) {
      report(entry.at(), entry.path, "an empty entry; remove it");
      continue;
    }
    const YAML::Mark at = entry.at();
    out.push_back(
        {std::move(*text), at.is_null() ? 0 : at.line + 1, at.is_null() ? 0 : at.column + 1});
  }
}

void Loader::readUsers(const Entry& e) {
  if (!e.value.IsDefined() || e.value.IsNull()) return;
  if (!e.value.IsSequence()) {
    report(e.at(), e.path,
           "expected a list of users, one '- ' entry each, got " + kindOf(e.value) + "; " +
               std::string(kAclUserSection.example));
    return;
  }
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    const YAML::Node item = e.value[i];
    const Entry entry{item.IsNull() ? e.at() : item.Mark(), item,
                      e.path + "[" + std::to_string(i) + "]"};
    if (!item.IsMap()) {
      report(entry.at(), entry.path,
             "each user is a mapping, got " + kindOf(item) + "; " +
                 std::string(kAclUserSection.example));
      continue;
    }
    AclUserConfig u;
    const YAML::Mark at = entry.at();
    u.line = at.is_null() ? 0 : at.line + 1;
    u.column = at.is_null() ? 0 : at.column + 1;
    user_ = &u;
    walkMap(*this, item, entry.path, kAclUserSection,
            std::span<const Section* const>(kAllSections));
    user_ = nullptr;
    const auto missing = [&](std::string_view key, std::string_view how) {
      report(at, entry.path, "user has no '" + std::string(key) + "'; " + std::string(how));
    };
    bool ok = true;
    if (u.name.empty()) {
      missing("name", "give the user a name, e.g. name: quote-service");
      ok = false;
    }
    if (!isSet(entry.path + ".commands")) {
      missing("commands", "list what it may run, e.g. commands: [\"@read\", \"@write\"]");
      ok = false;
    }
    if (!isSet(entry.path + ".patterns")) {
      missing("patterns",
              "list the registry patterns it may touch, e.g. patterns: [\"cpq:*\"], or [\"*\"] "
              "for every pattern");
      ok = false;
    }
    for (const auto& other : config().acl.users) {
      if (!u.name.empty() && other.name == u.name) {
        report(at, entry.path + ".name",
               "user '" + u.name + "' is defined twice (first on line " +
                   std::to_string(other.line) + "); define each user once");
        ok = false;
      }
    }
    if (ok) config().acl.users.push_back(std::move(u));
  }
}

namespace {

bool isSha256Hex(std::string_view hex) {
  return hex.size() == 64 && std::all_of(hex.begin(), hex.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string trimTrailingSpace(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' ||
                           text.back() == '\t')) {
    text.pop_back();
  }
  return text;
}

}  // namespace

void Loader::readSecrets() {
  const auto readSecret = [this](const std::string& path, std::string_view key, std::string& out) {
    if (path.empty() || hasFailed(key)) return;
    std::string text;
    if (auto why = readTextFile(path, text)) {
      report(markOf(key), std::string(key),
             "cannot read '" + path + "': " + *why +
                 "; check the path and that the secret is "
                 "mounted");
      return;
    }
    out = trimTrailingSpace(std::move(text));
    if (out.empty()) {
      report(markOf(key), std::string(key), "'" + path + "' is empty; it must hold the secret");
    }
  };
  auto& c = config();
  if (!c.upstream.passwordFile.empty() && !c.upstream.password.empty()) {
    report(markOf("upstream.passwordFile"), "upstream.passwordFile",
           "upstream.password and upstream.passwordFile both give the password; keep one "
           "(passwordFile, for a mounted secret)");
  } else {
    readSecret(c.upstream.passwordFile, "upstream.passwordFile", c.upstream.password);
  }
  readSecret(c.adminTokenFile, "admin.tokenFile", c.adminToken);
  if (c.acl.enabled() || !c.acl.passwordsFile.empty()) readPasswords();
}

void Loader::readPasswords() {
  auto& acl = config().acl;
  if (acl.passwordsFile.empty()) {
    if (!hasFailed("acl.passwordsFile")) {
      report(markOf("acl.users"), "acl.users",
             "users need acl.passwordsFile, the secret file with their password hashes, e.g. "
             "passwordsFile: /etc/keygate/acl/passwords.yaml");
    }
    return;
  }
  std::string text;
  if (auto why = readTextFile(acl.passwordsFile, text)) {
    report(markOf("acl.passwordsFile"), "acl.passwordsFile",
           "cannot read '" + acl.passwordsFile + "': " + *why +
               "; check the path and that the secret is mounted");
    return;
  }
  // Its own reader: errors name the secret file, line and column (never a hash's value).
  YamlReader secrets(acl.passwordsFile, out_.errors);
  const auto document = secrets.parse(text);
  if (!document) return;
  constexpr std::string_view kFormat =
      "each line is 'user: \"sha256:<64 lowercase hex digits>\"' (a list of them during a "
      "rotation); make one with: printf %s 'PASSWORD' | sha256sum";
  std::map<std::string, std::vector<std::string>, std::less<>> hashes;
  if (!document->IsNull()) {
    if (!document->IsMap()) {
      secrets.report(document->Mark(), "", "expected a mapping of users; " + std::string(kFormat));
      return;
    }
    for (const auto& kv : *document) {
      if (!kv.first.IsScalar()) {
        secrets.report(kv.first.Mark(), "",
                       "user names must be plain names; " + std::string(kFormat));
        continue;
      }
      const std::string name = kv.first.Scalar();
      std::vector<YAML::Node> items;
      if (kv.second.IsSequence()) {
        for (const auto& item : kv.second)
          items.push_back(item);
      } else {
        items.push_back(kv.second);
      }
      for (const auto& item : items) {
        const std::string value = item.IsScalar() ? item.Scalar() : std::string();
        const std::string_view hex =
            std::string_view(value).substr(value.rfind("sha256:", 0) == 0 ? 7 : value.size());
        if (!isSha256Hex(hex)) {
          secrets.report(item.IsNull() ? kv.first.Mark() : item.Mark(), name,
                         "not a password hash; " + std::string(kFormat));
          continue;
        }
        hashes[name].emplace_back(hex);
      }
    }
  }
  for (auto& user : acl.users) {
    const auto it = hashes.find(user.name);
    if (it == hashes.end()) {
      report(YAML::Mark::null_mark(), "acl.users",
             "user '" + user.name + "' (line " + std::to_string(user.line) +
                 ") has no password hash in " + acl.passwordsFile + "; add '" + user.name +
                 ": \"sha256:...\"' to it");
      continue;
    }
    user.passwordHashes = it->second;
  }
}

void Loader::readSection(const Entry& e, const Section& section) {
  // A section whose keys are all commented out is empty, not wrong: its defaults apply.
  if (!e.value.IsDefined() || e.value.IsNull()) return;
  if (!e.value.IsMap()) {
    report(e.at(), e.path,
           "'" + std::string(section.name) + "' is a section with the keys " +
               joinNames(section.fields) + ", got " + kindOf(e.value) +
               "; indent its keys below it, " + std::string(section.example));
    return;
  }
  walkMap(*this, e.value, e.path, section, std::span<const Section* const>(kAllSections));
}

void Loader::runCrossChecks() {
  const auto isSetHere = [this](std::string_view path) { return isSet(path); };
  for (auto& problem : crossCheck(out_.config, isSetHere)) {
    const bool dependsOnBadValue = std::any_of(problem.involved.begin(), problem.involved.end(),
                                               [this](std::string_view p) { return hasFailed(p); });
    if (dependsOnBadValue) continue;
    const auto blamed = std::find_if(problem.involved.begin(), problem.involved.end(), isSetHere);
    const std::string path(blamed != problem.involved.end() ? *blamed : problem.involved.front());
    report(markOf(path), path, std::move(problem.message));
  }
}

LoadResult internalError(const std::string& file, std::string_view what) {
  LoadResult result;
  result.config.sourcePath = file;
  result.errors.push_back(
      {file, 0, 0, "", "internal error while loading the configuration: " + std::string(what)});
  return result;
}

}  // namespace

LoadResult loadFromString(const std::string& yaml, const std::string& fileName) {
  try {
    LoadResult result;
    result.config.sourcePath = fileName;
    Loader(fileName, result).load(yaml);
    return result;
  } catch (const std::exception& e) {
    return internalError(fileName, e.what());
  } catch (...) {
    return internalError(fileName, "unknown exception");
  }
}

LoadResult loadFromFile(const std::string& path) {
  try {
    const auto unreadable = [&](const std::string& why) {
      LoadResult result;
      result.config.sourcePath = path;
      result.errors.push_back({path, 0, 0, "",
                               "cannot read the configuration file: " + why +
                                   "; check the path given to --config and its permissions"});
      return result;
    };
    std::string text;
    if (auto why = readTextFile(path, text)) return unreadable(*why);
    return loadFromString(text, path);
  } catch (const std::exception& e) {
    return internalError(path, e.what());
  } catch (...) {
    return internalError(path, "unknown exception");
  }
}

void applyOverrides(const Overrides& overrides, LoadResult& result) {
  try {
    Config& c = result.config;
    // Config paths already wrong in the file: no cross-check is judged against their defaults.
    std::set<std::string, std::less<>> failedInFile;
    for (const auto& e : result.errors) {
      if (!e.path.empty()) addWithParents(failedInFile, e.path);
    }
    std::map<std::string_view, std::string_view> flagOf;  // config path -> flag that set it
    const auto fail = [&](std::string flag, std::string message) {
      result.errors.push_back({"", 0, 0, std::move(flag), std::move(message)});
    };
    if (overrides.listen) {
      if (auto v = parseAddress(*overrides.listen)) {
        c.listen = *v.value;
        flagOf["listen"] = "--listen";
      } else {
        fail("--listen", v.error);
      }
    }
    if (overrides.cluster) {
      if (overrides.upstream) {
        fail("--cluster",
             "--cluster and --upstream both name the upstream; give --cluster HOST:PORT,... for "
             "Redis Cluster or --upstream HOST:PORT for one Redis, not both");
      } else {
        std::vector<HostPort> seeds;
        bool valid = true;
        std::string_view list = *overrides.cluster;
        while (valid) {
          const auto comma = list.find(',');
          const std::string item(list.substr(0, comma));
          if (item.empty()) {
            fail("--cluster", "empty seed in '" + *overrides.cluster +
                                  "'; separate seeds with single commas, e.g. "
                                  "--cluster 10.0.0.1:6379,10.0.0.2:6379");
            valid = false;
          } else if (auto v = parseAddress(item)) {
            if (std::find(seeds.begin(), seeds.end(), *v.value) == seeds.end()) {
              seeds.push_back(*v.value);
            }
          } else {
            fail("--cluster", "seed '" + item + "': " + v.error);
            valid = false;
          }
          if (comma == std::string_view::npos) break;
          list.remove_prefix(comma + 1);
        }
        if (valid) {
          c.upstream.mode = UpstreamMode::kCluster;
          c.upstream.seeds = std::move(seeds);
          flagOf["upstream.seeds"] = "--cluster";
          flagOf["upstream.mode"] = "--cluster";
        }
      }
    }
    if (overrides.upstream) {
      if (auto v = parseAddress(*overrides.upstream)) {
        // In cluster mode the one address given on the command line is the seed.
        if (c.upstream.mode == UpstreamMode::kCluster) {
          c.upstream.seeds = {*v.value};
          flagOf["upstream.seeds"] = "--upstream";
        } else {
          c.upstream.address = *v.value;
          flagOf["upstream.address"] = "--upstream";
        }
      } else {
        fail("--upstream", v.error);
      }
    }
    if (overrides.admin) {
      if (auto v = parseAddress(*overrides.admin)) {
        c.admin = *v.value;
        flagOf["admin"] = "--admin";
      } else {
        fail("--admin", v.error);
      }
    }
    if (overrides.registry) {
      if (overrides.registry->empty()) {
        fail("--registry", "an empty path; give the key registry file");
      } else {
        c.registryPath = *overrides.registry;
      }
    }
    if (overrides.registryMode) {
      if (auto v = parseChoice(*overrides.registryMode, kRegistryModes, "registry mode")) {
        c.registryMode = *v.value == 0 ? RegistryMode::kEnforce : RegistryMode::kAudit;
        flagOf["registryMode"] = "--registry-mode";
      } else {
        fail("--registry-mode", v.error);
      }
    }
    if (overrides.threads) {
      if (auto v = parseUnsignedIn(*overrides.threads, 0, kMaxThreads, kThreadsHint)) {
        c.threads = static_cast<std::uint32_t>(*v.value);
      } else {
        fail("--threads", v.error);
      }
    }
    if (overrides.logLevel) {
      if (auto v = parseChoice(*overrides.logLevel, kLogLevels, "log level")) {
        c.logLevel = std::string(kLogLevels[*v.value]);
      } else {
        fail("--log-level", v.error);
      }
    }
    if (overrides.logFormat) {
      if (auto v = parseChoice(*overrides.logFormat, kLogFormats, "log format")) {
        c.logFormat = *v.value == 0 ? LogFormat::kText : LogFormat::kJson;
      } else {
        fail("--log-format", v.error);
      }
    }
    if (flagOf.empty()) return;
    // Problems the file alone already had were reported by the loader; report only those a
    // flag is part of, at that flag.
    for (auto& problem : crossCheck(c, [](std::string_view) { return false; })) {
      const bool dependsOnBadValue =
          std::any_of(problem.involved.begin(), problem.involved.end(),
                      [&](std::string_view p) { return failedInFile.contains(p); });
      if (dependsOnBadValue) continue;
      const auto blamed = std::find_if(problem.involved.begin(), problem.involved.end(),
                                       [&](std::string_view p) { return flagOf.contains(p); });
      if (blamed == problem.involved.end()) continue;
      fail(std::string(flagOf[*blamed]), std::move(problem.message));
    }
  } catch (const std::exception& e) {
    result.errors.push_back(
        {"", 0, 0, "", "internal error while applying flags: " + std::string(e.what())});
  } catch (...) {
    result.errors.push_back({"", 0, 0, "", "internal error while applying flags"});
  }
}

}  // namespace keygate::config
