#include "proxy/registry_watcher.hpp"

#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <filesystem>

#include "proxy/worker.hpp"

namespace keygate::proxy {

std::shared_ptr<const policies::CompiledRegistry> loadCompiledRegistry(
    const std::string& path, std::vector<config::ConfigError>* errors, const std::string* text,
    std::optional<config::RegistryMode> mode) {
  auto loaded =
      text != nullptr ? config::loadRegistryText(*text, path) : config::loadRegistryFile(path);
  if (mode) loaded.registry.mode = *mode;
  // Patterns are compiled even when the file has other errors, so one run reports every
  // mistake (a bad duration and an overlap together), in file order.
  std::vector<config::ConfigError> compileErrors;
  auto compiled = policies::CompiledRegistry::compile(std::move(loaded.registry), &compileErrors);
  if (loaded.ok()) {
    errors->insert(errors->end(), compileErrors.begin(), compileErrors.end());
    return compiled;
  }
  std::vector<config::ConfigError> all = std::move(loaded.errors);
  for (auto& e : compileErrors) {
    const bool duplicate = std::any_of(
        all.begin(), all.end(), [&](const config::ConfigError& a) { return a.path == e.path; });
    if (!duplicate) all.push_back(std::move(e));
  }
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    const int la = a.line == 0 ? INT32_MAX : a.line, lb = b.line == 0 ? INT32_MAX : b.line;
    return la != lb ? la < lb : a.column < b.column;
  });
  errors->insert(errors->end(), all.begin(), all.end());
  return nullptr;
}

RegistryWatcher::RegistryWatcher(asio::io_context& io, ServerContext& context, Publish publish)
    : io_(io),
      context_(context),
      publish_(std::move(publish)),
      path_(context.config.registryPath),
      inotify_(io),
      buffer_(16 * 1024) {}

RegistryWatcher::~RegistryWatcher() {
  stop();
}

void RegistryWatcher::setInitial(std::shared_ptr<const policies::CompiledRegistry> registry) {
  current_ = std::move(registry);
  context_.registryPatterns.store(current_ ? current_->patternCount() : 0);
  if (current_) context_.setRegistryInfo(current_->source().version, current_->hash());
}

bool RegistryWatcher::start() {
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    spdlog::get("main")->warn(
        "registry: inotify unavailable ({}); reload with SIGHUP or "
        "POST /reload",
        std::strerror(errno));
    return false;
  }
  std::string dir = std::filesystem::path(path_).parent_path().string();
  if (dir.empty()) dir = ".";
  // The directory, not the file: a ConfigMap update replaces a symlink, an editor renames a
  // new file over the old one; both leave a watch on the file itself pointing at nothing.
  watch_ = ::inotify_add_watch(
      fd, dir.c_str(),
      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_ATTRIB);
  if (watch_ < 0) {
    spdlog::get("main")->warn(
        "registry: cannot watch {} ({}); reload with SIGHUP or "
        "POST /reload",
        dir, std::strerror(errno));
    ::close(fd);
    return false;
  }
  inotify_.assign(fd);
  readEvents();
  return true;
}

void RegistryWatcher::stop() {
  boost::system::error_code ignored;
  inotify_.close(ignored);
}

void RegistryWatcher::readEvents() {
  inotify_.async_read_some(
      asio::buffer(buffer_), [this](const boost::system::error_code& ec, std::size_t n) {
        if (ec) return;  // closed at shutdown
        // Only events about the registry file itself, or the `..data` symlink a ConfigMap
        // update swaps, matter: an editor's swap file or the next version's temp file must
        // not re-read (and re-count) a file that has not changed.
        const std::string base = std::filesystem::path(path_).filename().string();
        bool relevant = false;
        for (std::size_t offset = 0; offset + sizeof(inotify_event) <= n;) {
          const auto* event = reinterpret_cast<const inotify_event*>(buffer_.data() + offset);
          const std::string_view name =
              event->len > 0 ? std::string_view(event->name) : std::string_view();
          relevant = relevant || name == base || name == "..data" || name.empty();
          offset += sizeof(inotify_event) + event->len;
        }
        if (relevant) reloadIfChanged();
        readEvents();
      });
}

void RegistryWatcher::reloadIfChanged() {
  // The same bytes as the last attempt: nothing to do (a valid file is in force already, an
  // invalid one was reported and counted once).
  std::string text;
  if (!config::readTextFile(path_, text)) {
    const std::size_t digest = std::hash<std::string>{}(text);
    if (haveDigest_ && digest == lastDigest_) return;
    haveDigest_ = true;
    lastDigest_ = digest;
    // Exactly these bytes: the file may be replaced again before a second read, and then one
    // version would be counted under another's digest (and a refused one counted twice).
    reload("file changed", &text);
    return;
  }
  haveDigest_ = false;  // gone or unreadable (mid-swap): report it, and retry on the next event
  reload("file changed");
}

std::string RegistryWatcher::reload(std::string_view why, const std::string* text) {
  auto log = spdlog::get("main");
  std::vector<config::ConfigError> errors;
  auto fresh = loadCompiledRegistry(path_, &errors, text, context_.config.registryMode);
  if (!fresh) {
    context_.registryReloadFailures.fetch_add(1, std::memory_order_relaxed);
    log->error("registry {} ({}): {} error{}; the rules in force stay as they were", path_, why,
               errors.size(), errors.size() == 1 ? "" : "s");
    for (const auto& e : errors)
      log->error("  {}", e.str());
    return "invalid: " + std::to_string(errors.size()) + " error(s), previous registry kept" +
           (errors.empty() ? std::string() : "; first: " + errors.front().str());
  }
  if (current_ && current_->hash() == fresh->hash()) {
    return "unchanged: " + fresh->hash();
  }
  context_.registryReloads.fetch_add(1, std::memory_order_relaxed);
  context_.registryPatterns.store(fresh->patternCount());
  context_.setRegistryInfo(fresh->source().version, fresh->hash());
  log->info("registry {} ({}): {} patterns, hash {}", path_, why, fresh->patternCount(),
            fresh->hash());
  current_ = fresh;
  publish_(std::move(fresh));
  return "reloaded: " + current_->hash();
}

}  // namespace keygate::proxy
