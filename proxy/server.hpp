#pragma once

// The process: an acceptor and the admin endpoint on the main thread, client sessions on worker
// threads. Accepted connections are handed to workers round-robin. SIGTERM/SIGINT drain:
// stop accepting, let every session finish what it has in flight, close; whatever is still
// open at the drain deadline is closed anyway.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <vector>

#include "proxy/worker.hpp"

namespace keygate::proxy {

class AdminServer;
class KeyspaceEvents;
class TopologyRefresher;
class RegistryWatcher;

class Server {
 public:
  explicit Server(ServerContext& context);
  ~Server();

  // The key registry loaded at start-up (config.registryPath); reloaded from then on.
  void setRegistry(std::shared_ptr<const policies::CompiledRegistry> registry);
  // Binds the listeners; false (with the reason logged) if a port cannot be bound.
  bool open();
  // Runs until shut down; returns the process exit code.
  int run();

  std::size_t workerCount() const { return workers_.size(); }
  const Worker& worker(std::size_t i) const { return *workers_[i]; }

 private:
  void startAccept();
  void waitForReloadSignal();
  void onAccept(const boost::system::error_code& ec, asio::ip::tcp::socket socket);
  void beginShutdown(int signal);
  void pollDrain();
  void finish();

  ServerContext& context_;
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  asio::signal_set signals_;
  asio::steady_timer acceptRetry_;
  asio::steady_timer drainTimer_;
  std::chrono::steady_clock::time_point drainDeadline_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::size_t nextWorker_ = 0;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<AdminServer> metrics_;          // admin.metricsListen: /metrics only
  std::unique_ptr<TopologyRefresher> refresher_;  // cluster mode
  std::unique_ptr<RegistryWatcher> registryWatcher_;
  asio::signal_set reloadSignal_;
  std::unique_ptr<KeyspaceEvents> keyspaceEvents_;  // evictions / expiries per pattern
  bool shuttingDown_ = false;
};

}  // namespace keygate::proxy
