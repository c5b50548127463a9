#pragma once

// Keeps the key registry current (SPEC.md section 3, hot reload). Lives on the main thread:
// watches the registry file's directory with inotify (a Kubernetes ConfigMap update swaps a
// `..data` symlink there; an editor renames or rewrites the file), and reloads on SIGHUP and on
// POST /reload. Every reload validates the whole file and compiles it; only a valid registry
// replaces the one in force, by handing each worker a new immutable snapshot. An invalid file
// keeps the old rules, logs every error and is counted, so no request fails because of it.

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "policies/registry_policy.hpp"

namespace keygate::proxy {

namespace asio = boost::asio;
struct ServerContext;

// Loads and compiles a registry file; null with `errors` filled when it is not valid. `text`:
// the file's bytes, already read (errors still name `path`). `mode`: the config's registryMode,
// which replaces the file's top-level mode.
std::shared_ptr<const policies::CompiledRegistry> loadCompiledRegistry(
    const std::string& path, std::vector<config::ConfigError>* errors,
    const std::string* text = nullptr, std::optional<config::RegistryMode> mode = std::nullopt);

class RegistryWatcher {
 public:
  using Publish = std::function<void(std::shared_ptr<const policies::CompiledRegistry>)>;

  RegistryWatcher(asio::io_context& io, ServerContext& context, Publish publish);
  ~RegistryWatcher();

  // The registry loaded at start-up (the caller refuses to start without one).
  void setInitial(std::shared_ptr<const policies::CompiledRegistry> registry);
  // Starts watching the directory; false (logged) if inotify is unavailable (SIGHUP and
  // /reload still work).
  bool start();
  void stop();
  // Reloads now; returns a one-line account ("reloaded: ...", "unchanged: ...", "invalid: ...").
  std::string reload(std::string_view why, const std::string* text = nullptr);

 private:
  void readEvents();
  void reloadIfChanged();

  asio::io_context& io_;
  ServerContext& context_;
  Publish publish_;
  std::string path_;
  asio::posix::stream_descriptor inotify_;
  int watch_ = -1;
  std::vector<char> buffer_;
  std::shared_ptr<const policies::CompiledRegistry> current_;
  bool haveDigest_ = false;
  std::size_t lastDigest_ = 0;  // of the bytes last read because the file changed
};

}  // namespace keygate::proxy
