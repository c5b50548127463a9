#include "proxy/server.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <csignal>

#include "proxy/admin_server.hpp"
#include "proxy/keyspace_events.hpp"
#include "proxy/listener.hpp"
#include "proxy/registry_watcher.hpp"
#include "proxy/topology_refresher.hpp"
#include "proxy/version.hpp"

namespace keygate::proxy {

namespace {
constexpr std::string_view kMaxClientsReply = "-ERR max number of clients reached\r\n";
}

Server::Server(ServerContext& context)
    : context_(context),
      io_(1),
      acceptor_(io_),
      signals_(io_, SIGTERM, SIGINT),
      acceptRetry_(io_),
      drainTimer_(io_),
      reloadSignal_(io_),
      keyspaceEvents_(std::make_unique<KeyspaceEvents>(io_, context_)) {
  std::uint32_t threads = context_.config.threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (std::uint32_t i = 0; i < threads; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, context_));
  }
  context_.workerCount = threads;
  context_.broadcastKeyWrite = [this](std::size_t from, std::string_view key) {
    for (auto& w : workers_) {
      if (w->index() != from) w->postKeyChanged(std::string(key));
    }
  };
  if (context_.config.upstream.mode == config::UpstreamMode::kCluster) {
    refresher_ = std::make_unique<TopologyRefresher>(io_, context_,
                                                     [this](std::shared_ptr<const SlotMap> map) {
                                                       keyspaceEvents_->onSlotMap(map);
                                                       for (auto& w : workers_)
                                                         w->installSlotMap(map);
                                                     });
    context_.requestTopologyRefresh = [refresher = refresher_.get()] { refresher->requestEarly(); };
  }
}

Server::~Server() {
  for (auto& w : workers_) {
    w->stop();
    w->join();
  }
}

void Server::setRegistry(std::shared_ptr<const policies::CompiledRegistry> registry) {
  for (auto& w : workers_)
    w->installRegistry(registry);
  keyspaceEvents_->setRegistry(registry);
  registryWatcher_ = std::make_unique<RegistryWatcher>(
      io_, context_, [this](std::shared_ptr<const policies::CompiledRegistry> fresh) {
        for (auto& w : workers_)
          w->installRegistry(fresh);
        keyspaceEvents_->setRegistry(fresh);
      });
  registryWatcher_->setInitial(std::move(registry));
  context_.reloadRegistry = [watcher = registryWatcher_.get()] {
    return watcher->reload("POST /reload");
  };
}

bool Server::open() {
  auto log = spdlog::get("main");
  const auto& listen = context_.config.listen;
  if (const auto ec = openListener(acceptor_, listen)) {
    log->error("cannot listen on {}: {}", listen.str(), ec.message());
    return false;
  }
  if (context_.config.admin) {
    admin_ = std::make_unique<AdminServer>(io_, context_, workers_);
    if (!admin_->open(*context_.config.admin)) return false;
  }
  if (context_.config.metricsListen) {
    metrics_ =
        std::make_unique<AdminServer>(io_, context_, workers_, AdminServer::Role::kMetricsOnly);
    if (!metrics_->open(*context_.config.metricsListen)) return false;
  }
  return true;
}

int Server::run() {
  auto log = spdlog::get("main");
  std::signal(SIGPIPE, SIG_IGN);
  for (auto& w : workers_)
    w->start();
  signals_.async_wait([this](const boost::system::error_code& ec, int signal) {
    if (!ec) beginShutdown(signal);
  });
  startAccept();
  if (registryWatcher_) {
    registryWatcher_->start();
    reloadSignal_.add(SIGHUP);
    waitForReloadSignal();
  }
  if (admin_) admin_->start();
  if (metrics_) metrics_->start();
  keyspaceEvents_->start();
  std::string upstream = context_.upstream.label();
  if (refresher_) {
    refresher_->start();
    upstream = "cluster via";
    for (const auto& seed : context_.config.upstream.seeds)
      upstream += " " + seed.str();
  }
  const char* socketCalls =
      workers_.empty() || workers_.front()->socketCallsBatched() ? "batched with io_uring"
      : context_.config.ioUring ? "one system call each (io_uring unavailable)"
                                : "one system call each (ioUring: false)";
  log->info("keygate {} listening on {}, upstream {} ({} worker thread{}, socket calls {})",
            kVersion, context_.config.listen.str(), upstream, workers_.size(),
            workers_.size() == 1 ? "" : "s", socketCalls);
  io_.run();
  for (auto& w : workers_) {
    w->stop();
    w->join();
  }
  log->info("keygate stopped");
  return 0;
}

void Server::waitForReloadSignal() {
  reloadSignal_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) return;
    registryWatcher_->reload("SIGHUP");
    waitForReloadSignal();
  });
}

void Server::startAccept() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, asio::ip::tcp::socket socket) {
    onAccept(ec, std::move(socket));
  });
}

void Server::onAccept(const boost::system::error_code& ec, asio::ip::tcp::socket socket) {
  if (shuttingDown_) return;
  if (ec) {
    if (ec == asio::error::operation_aborted) return;
    // Out of descriptors or similar: back off rather than spin on the error.
    spdlog::get("main")->warn("accept failed: {}; retrying in 100 ms", ec.message());
    acceptRetry_.expires_after(std::chrono::milliseconds(100));
    acceptRetry_.async_wait([this](const boost::system::error_code& tec) {
      if (!tec && !shuttingDown_) startAccept();
    });
    return;
  }
  const auto active = context_.activeClients.load(std::memory_order_relaxed);
  if (active >= context_.config.limits.maxClients) {
    context_.rejectedMaxClients.fetch_add(1, std::memory_order_relaxed);
    // Best effort, never blocking the acceptor: a fresh socket's send buffer is empty.
    ::send(socket.native_handle(), kMaxClientsReply.data(), kMaxClientsReply.size(),
           MSG_DONTWAIT | MSG_NOSIGNAL);
    boost::system::error_code ignored;
    socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
  } else {
    context_.activeClients.fetch_add(1, std::memory_order_relaxed);
    auto& worker = *workers_[nextWorker_];
    nextWorker_ = (nextWorker_ + 1) % workers_.size();
    worker.adopt(socket.release());
  }
  startAccept();
}

void Server::beginShutdown(int signal) {
  if (shuttingDown_) return;
  shuttingDown_ = true;
  context_.draining.store(true);
  auto log = spdlog::get("main");
  log->info("signal {}: draining (deadline {} ms)", signal,
            context_.config.shutdownDrainTimeout.count());
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  acceptRetry_.cancel();
  if (admin_) admin_->stop();
  if (metrics_) metrics_->stop();
  for (auto& w : workers_)
    w->beginDrain();
  drainDeadline_ = std::chrono::steady_clock::now() + context_.config.shutdownDrainTimeout;
  // A second signal means "now".
  signals_.async_wait([this](const boost::system::error_code& ec, int) {
    if (!ec) finish();
  });
  pollDrain();
}

void Server::pollDrain() {
  if (context_.activeClients.load() == 0) {
    finish();
    return;
  }
  if (std::chrono::steady_clock::now() >= drainDeadline_) {
    spdlog::get("main")->warn("drain deadline reached with {} client(s) open; closing them",
                              context_.activeClients.load());
    finish();
    return;
  }
  drainTimer_.expires_after(std::chrono::milliseconds(20));
  drainTimer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) pollDrain();
  });
}

void Server::finish() {
  if (refresher_) refresher_->stop();
  keyspaceEvents_->stop();
  if (registryWatcher_) registryWatcher_->stop();
  boost::system::error_code ignored;
  reloadSignal_.cancel(ignored);
  for (auto& w : workers_)
    w->closeAll();
  // closeAll is posted; give each worker one turn to run it, then stop.
  for (auto& w : workers_) {
    asio::post(w->io(), [worker = w.get()] { worker->stop(); });
  }
  for (auto& w : workers_)
    w->join();
  signals_.cancel();
  drainTimer_.cancel();
  io_.stop();
}

}  // namespace keygate::proxy
