#pragma once

// keygate's process configuration: validated plain structs. config/ knows nothing of sockets;
// it turns a YAML file plus command-line overrides into a Config, or into a list of errors that
// each carry file:line:column, the YAML path and a sentence saying how to fix it.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace keygate::config {

struct HostPort {
  std::string host;
  std::uint16_t port = 0;
  std::string str() const;  // "host:port" ("[::1]:6379" for IPv6)
  friend bool operator==(const HostPort&, const HostPort&) = default;
};

enum class LogFormat : std::uint8_t { kText, kJson };
enum class UpstreamMode : std::uint8_t { kStandalone, kCluster };
// The key registry's mode (docs/registry.md): enforce refuses violations, audit only counts them.
enum class RegistryMode : std::uint8_t { kEnforce, kAudit };
// Cluster mode: where read-only commands go. replicaPreferred reads may be stale (replication is
// asynchronous) and are not ordered against the client's own writes.
enum class ReadFrom : std::uint8_t { kMaster, kReplicaPreferred };

// TLS from keygate to Redis (Asio SSL over OpenSSL).
struct UpstreamTlsConfig {
  bool enabled = false;
  std::string caFile;    // trusted CAs for Redis's certificate; empty: the system's store
  std::string certFile;  // client certificate (Redis `tls-auth-clients yes`), with keyFile
  std::string keyFile;
  std::string serverName;  // SNI and the name checked in the certificate; empty: each node's host
  bool verify = true;      // false: no certificate check (test set-ups only; logged as a warning)
};

// TLS from clients to keygate's listener (optional; plain TCP when disabled).
struct ClientTlsConfig {
  bool enabled = false;
  std::string certFile;  // keygate's certificate chain (PEM)
  std::string keyFile;   // its private key (PEM)
  std::string caFile;    // set: clients must present a certificate signed by one of these CAs
};

// One rule of a user's command list, with where it was written (the command table lives in
// proxy/, so names are checked when the ACL is compiled, and errors still point at the file).
struct AclRule {
  std::string text;  // "get", "+get", "-flushall", "@read", "-@dangerous", "config|get", "@all"
  int line = 0;
  int column = 0;
};

// A downstream user. Passwords are never in the config: their SHA-256 hashes come from the
// secret file acl.passwordsFile.
struct AclUserConfig {
  std::string name;
  std::vector<AclRule> commands;  // applied in order, as Redis ACL rules; nothing allowed before
  std::vector<AclRule> patterns;  // registry pattern texts; '*' in one matches any run of text
  std::string tenant;             // set: the user's connections are bound to this tenant
  std::vector<std::string> passwordHashes;  // lowercase hex SHA-256, from passwordsFile
  int line = 0;
  int column = 0;
};

struct AclConfig {
  std::string passwordsFile;
  std::vector<AclUserConfig> users;
  bool enabled() const { return !users.empty(); }
};

struct UpstreamConfig {
  UpstreamMode mode = UpstreamMode::kStandalone;
  HostPort address{"127.0.0.1", 6379};  // standalone
  std::vector<HostPort> seeds;          // cluster (issue 3)
  std::string username;                 // upstream ACL user (empty: default user)
  std::string password;                 // empty: no AUTH (or read from passwordFile)
  std::string passwordFile;             // file holding the password (a mounted secret)
  UpstreamTlsConfig tls;
  std::chrono::milliseconds connectTimeout{1000};
  std::uint32_t connectionsPerWorker = 1;  // shared, multiplexed connections per protocol
  ReadFrom readFrom = ReadFrom::kMaster;   // cluster
  // Cluster: slot map fetched this often (and early after MOVED or a node error).
  std::chrono::milliseconds topologyRefreshInterval{10000};
  // A connection is closed and replaced after this many requests in a row got no reply within
  // their endpoint budget (one slow reply never closes it); 0: never.
  std::uint32_t timeoutsBeforeReconnect = 5;
  // Shared connections: while more than this many requests sent await replies, new requests
  // are held and leave in one write with the next read of replies; 0: never held.
  std::uint32_t deferSendsAbove = 128;
};

struct LimitsConfig {
  std::uint32_t maxClients = 10000;
  std::uint64_t maxBulkBytes = 512ull * 1024 * 1024;
  std::uint64_t maxArrayElements = 1024ull * 1024;
  std::uint32_t maxNestingDepth = 64;
  std::uint64_t maxInlineBytes = 64ull * 1024;
  // Largest single request (all its arguments); the unparsed bytes a client may have pending.
  std::uint64_t maxRequestBytes = 1024ull * 1024 * 1024;
  // Stop reading a client while its queued, unsent replies exceed this many bytes.
  std::uint64_t maxClientOutputBytes = 16ull * 1024 * 1024;
  // Stop reading a client while this many of its requests await replies.
  std::uint32_t maxPipelinedRequests = 1024;
};

struct Config {
  HostPort listen{"127.0.0.1", 6380};
  std::optional<HostPort> admin;  // unset: no admin HTTP listener
  // admin.tokenFile: every admin path but /healthz and /readyz needs `Authorization: Bearer
  // <token>` (the file's content, trailing whitespace removed). Empty: no token.
  std::string adminTokenFile;
  std::string adminToken;
  // admin.metricsListen: a second listener serving /metrics only, without the token.
  std::optional<HostPort> metricsListen;
  ClientTlsConfig tls;        // listener TLS
  AclConfig acl;              // downstream users; none: clients are not authenticated by keygate
  std::uint32_t threads = 0;  // 0: one worker per core
  // Each worker batches the socket reads and writes of an event-loop turn through io_uring
  // (proxy/socket_batch.hpp); false, or a kernel that refuses io_uring: one system call each.
  bool ioUring = true;
  std::string logLevel = "info";  // trace, debug, info, warn, error, critical, off
  LogFormat logFormat = LogFormat::kText;
  UpstreamConfig upstream;
  LimitsConfig limits;
  std::chrono::milliseconds shutdownDrainTimeout{10000};
  // The key registry file (docs/registry.md); empty: no registry, keys are not checked.
  std::string registryPath;
  // registryMode / --registry-mode: puts the registry in this mode whatever its file's top-level
  // `mode:` says, on every load and reload (a pattern's own `mode:` still applies to it). Unset:
  // the file decides.
  std::optional<RegistryMode> registryMode;
  // The tenant every client connection of the listener is bound to (its keys' <tenant> must
  // be this one); empty: not bound.
  std::string tenant;
  // observability.keyTracking: hot keys, distinct keys written and big values per pattern on
  // every request's first key (/hotkeys, /bigkeys and their metrics). Off: those stay empty;
  // the per-pattern counters and histograms are kept.
  bool keyTracking = true;
  std::string sourcePath;  // file the config came from, empty for built-in defaults
};

struct ConfigError {
  std::string file;
  int line = 0;             // 1-based; 0 when not from a file (command line)
  int column = 0;           // 1-based
  std::string path;         // YAML path such as "upstream.address" or "--threads"
  std::string message;      // what is wrong and how to fix it
  std::string str() const;  // "file:line:col: path: message"
};

// Command-line flags that override the file. Unset optionals leave the file's value.
struct Overrides {
  std::optional<std::string> listen, upstream, admin, threads, logLevel, logFormat, registry,
      registryMode;
  // "HOST:PORT,HOST:PORT,...": sets upstream.mode: cluster with these seeds.
  std::optional<std::string> cluster;
};

enum class CliAction : std::uint8_t { kRun, kHelp, kVersion };

struct CliOptions {
  CliAction action = CliAction::kRun;
  std::optional<std::string> configPath;
  Overrides overrides;
};

struct CliResult {
  CliOptions options;
  std::vector<ConfigError> errors;  // non-empty: usage errors
};

// Parses `keygate [--config FILE] [--listen HOST:PORT] [--upstream HOST:PORT]
// [--cluster HOST:PORT,...] [--admin HOST:PORT] [--registry FILE] [--registry-mode MODE]
// [--threads N] [--log-level LEVEL] [--log-format text|json] [--help] [--version]`.
// Accepts both `--flag value` and `--flag=value`.
CliResult parseCommandLine(int argc, const char* const* argv);
std::string usage();

struct LoadResult {
  Config config;
  std::vector<ConfigError> errors;  // all problems found, in file order; empty means valid
  bool ok() const { return errors.empty(); }
};

// Loads and validates YAML text (strict: unknown keys and bad values are errors).
LoadResult loadFromString(const std::string& yaml, const std::string& fileName);
// Reads `path` and loads it; unreadable files are one error.
LoadResult loadFromFile(const std::string& path);
// Applies flag overrides onto `config`, validating each (errors carry path "--flag").
void applyOverrides(const Overrides& overrides, LoadResult& result);

// Parses "host:port", "[v6]:port" or ":port" (host defaults to 127.0.0.1).
std::optional<HostPort> parseHostPort(const std::string& text);

// Reads a whole file into `text`; on failure the reason ("it is a directory", "No such file
// or directory", ...), for an error that names the file and the flag or key that gave it.
std::optional<std::string> readTextFile(const std::string& path, std::string& text);

}  // namespace keygate::config
