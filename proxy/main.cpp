// keygate: a sidecar RESP proxy that enforces the platform's Redis discipline.

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "proxy/audit_command.hpp"
#include "proxy/check_command.hpp"
#include "proxy/logging.hpp"
#include "proxy/registry_watcher.hpp"
#include "proxy/server.hpp"
#include "proxy/tls.hpp"
#include "proxy/version.hpp"

namespace {

using keygate::config::ConfigError;

void printErrors(const std::vector<ConfigError>& errors) {
  for (const auto& e : errors)
    std::cerr << e.str() << "\n";
  std::cerr << errors.size() << " configuration error" << (errors.size() == 1 ? "" : "s")
            << "; keygate did not start\n";
}

// Upstream host names are resolved once at start-up; the data path only sees addresses.
bool resolveHost(std::string& host) {
  namespace asio = boost::asio;
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  if (!ec) return true;
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  auto results = resolver.resolve(host, "", ec);
  if (ec || results.empty()) return false;
  host = results.begin()->endpoint().address().to_string();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  namespace config = keygate::config;
  namespace proxy = keygate::proxy;

  if (argc >= 2 && std::string_view(argv[1]) == "audit") {
    const std::vector<std::string_view> args(argv + 2, argv + argc);
    return proxy::runAuditCommand(args, std::cout, std::cerr);
  }
  if (argc >= 2 && std::string_view(argv[1]) == "check") {
    // `check [--explain] FILE`, the flag before or after the file.
    bool explain = false;
    std::vector<std::string> files;
    bool usageError = false;
    for (int i = 2; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (arg == "--explain") {
        explain = true;
      } else if (arg.starts_with("-") && arg.size() > 1) {
        usageError = true;
      } else {
        files.emplace_back(arg);
      }
    }
    if (usageError || files.size() != 1) {
      std::cerr << "usage: keygate check [--explain] REGISTRY.yaml\n";
      return 2;
    }
    return proxy::runCheckCommand(files.front(), std::cout, std::cerr, explain);
  }
  auto cli = config::parseCommandLine(argc, argv);
  if (!cli.errors.empty()) {
    for (const auto& e : cli.errors)
      std::cerr << e.str() << "\n";
    std::cerr << config::usage();
    return 2;
  }
  if (cli.options.action == config::CliAction::kHelp) {
    std::cout << config::usage();
    return 0;
  }
  if (cli.options.action == config::CliAction::kVersion) {
    std::cout << "keygate " << proxy::kVersion << "\n";
    return 0;
  }

  config::LoadResult loaded;
  if (cli.options.configPath) {
    loaded = config::loadFromFile(*cli.options.configPath);
  }
  config::applyOverrides(cli.options.overrides, loaded);
  if (!loaded.ok()) {
    printErrors(loaded.errors);
    return 2;
  }
  const config::Config& cfg = loaded.config;
  proxy::setupLogging(cfg.logLevel, cfg.logFormat);

  proxy::ServerContext context;
  context.config = cfg;
  context.upstream.host = cfg.upstream.address.host;
  context.upstream.port = cfg.upstream.address.port;
  context.upstream.username = cfg.upstream.username;
  context.upstream.password = cfg.upstream.password;
  context.upstream.connectTimeout = cfg.upstream.connectTimeout;
  if (cfg.upstream.tls.enabled) {
    std::string error;
    context.upstream.tls = proxy::makeUpstreamTlsContext(cfg.upstream.tls, error);
    if (!context.upstream.tls) {
      spdlog::get("main")->error("upstream.tls: {}", error);
      return 2;
    }
    context.upstream.tlsServerName = cfg.upstream.tls.serverName;
    context.upstream.tlsVerify = cfg.upstream.tls.verify;
    if (!cfg.upstream.tls.verify) {
      spdlog::get("main")->warn(
          "upstream.tls.verify is false: Redis's certificate is not checked, so anyone on the "
          "path can impersonate it; use this only for tests");
    }
  }
  if (cfg.tls.enabled) {
    std::string error;
    context.listenerTls = proxy::makeListenerTlsContext(cfg.tls, error);
    if (!context.listenerTls) {
      spdlog::get("main")->error("tls: {}", error);
      return 2;
    }
  }
  context.upstream.timeoutsBeforeReconnect = cfg.upstream.timeoutsBeforeReconnect;
  context.upstream.deferSendsAbove = cfg.upstream.deferSendsAbove;
  context.limits.maxBulkBytes = cfg.limits.maxBulkBytes;
  context.limits.maxArrayElements = cfg.limits.maxArrayElements;
  context.limits.maxNestingDepth = cfg.limits.maxNestingDepth;
  context.limits.maxInlineBytes = cfg.limits.maxInlineBytes;
  context.upstream.limits = context.limits;
  // Cluster nodes are resolved when connected to (they may announce host names).
  if (cfg.upstream.mode == config::UpstreamMode::kStandalone &&
      !resolveHost(context.upstream.host)) {
    spdlog::get("main")->error("cannot resolve upstream host '{}'", cfg.upstream.address.host);
    return 2;
  }
  // Listeners bind addresses: a name such as `localhost` is resolved here, once.
  if (!resolveHost(context.config.listen.host)) {
    spdlog::get("main")->error("cannot resolve listen host '{}'", cfg.listen.host);
    return 2;
  }
  if (context.config.admin && !resolveHost(context.config.admin->host)) {
    spdlog::get("main")->error("cannot resolve admin host '{}'", cfg.admin->host);
    return 2;
  }
  std::shared_ptr<const keygate::policies::CompiledRegistry> registry;
  if (!cfg.registryPath.empty()) {
    std::vector<config::ConfigError> errors;
    registry = proxy::loadCompiledRegistry(cfg.registryPath, &errors, nullptr, cfg.registryMode);
    if (!registry) {
      for (const auto& e : errors)
        std::cerr << e.str() << "\n";
      std::cerr << errors.size() << " registry error" << (errors.size() == 1 ? "" : "s")
                << "; keygate did not start\n";
      return 2;
    }
    const bool audit = registry->source().mode == config::RegistryMode::kAudit;
    spdlog::get("main")->info("registry {}: {} patterns, {} mode{}", cfg.registryPath,
                              registry->patternCount(), audit ? "audit" : "enforce",
                              cfg.registryMode ? " (set by registryMode / --registry-mode)" : "");
  }

  if (cfg.acl.enabled()) {
    std::vector<config::ConfigError> errors;
    context.acl = keygate::policies::Acl::compile(cfg.acl, cfg.sourcePath, &errors);
    for (const auto& user : cfg.acl.users) {
      const bool everyPattern = user.patterns.size() == 1 && user.patterns[0].text == "*";
      if (!registry && !everyPattern) {
        errors.push_back({cfg.sourcePath, user.line, user.column, "acl.users",
                          "user '" + user.name +
                              "' lists registry patterns, and no registry is configured; set "
                              "registry: FILE, or give the user patterns: [\"*\"]"});
      }
    }
    if (!context.acl || !errors.empty()) {
      printErrors(errors);
      return 2;
    }
    for (const auto& user : context.acl->users()) {
      if (!registry) break;
      for (const auto& rule : keygate::policies::Acl::unmatchedRules(user, *registry)) {
        spdlog::get("main")->warn("acl user '{}': pattern rule '{}' matches no registry pattern",
                                  user.name, rule);
      }
    }
    spdlog::get("main")->info("acl: {} user(s); clients must AUTH", context.acl->users().size());
  }

  proxy::Server server(context);
  if (registry) server.setRegistry(std::move(registry));
  if (!server.open()) return 1;
  return server.run();
}
