#pragma once

// A worker is one thread running one io_context. Client sessions live on exactly one worker for
// their whole life; each worker has its own multiplexed upstream connections, so nothing on the
// request path is shared between threads or locked.

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "proxy/resp/limits.hpp"
#include "proxy/resp/reply_writer.hpp"
#include "proxy/stats.hpp"
#include "proxy/upstream_connection.hpp"

namespace keygate::proxy {

class ClientSession;

// State shared by all workers; everything mutable here is atomic.
struct ServerContext {
  config::Config config;
  UpstreamSettings upstream;
  resp::Limits limits;
  std::chrono::steady_clock::time_point startedAt = std::chrono::steady_clock::now();
  std::atomic<std::uint64_t> nextClientId{1};
  std::atomic<std::uint32_t> activeClients{0};
  std::atomic<std::uint64_t> rejectedMaxClients{0};
  std::atomic<bool> draining{false};
};

class Worker {
 public:
  Worker(std::size_t index, ServerContext& context);
  ~Worker();

  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  void join();
  // Thread-safe: stops the io_context (after drain or at the deadline).
  void stop();

  // Thread-safe: takes ownership of an accepted connection's file descriptor.
  void adopt(asio::ip::tcp::socket::native_handle_type fd);
  // Thread-safe: stop reading from clients, finish what is in flight, then close.
  void beginDrain();
  // Thread-safe: close every client and upstream connection now.
  void closeAll();

  asio::io_context& io() { return io_; }
  ServerContext& context() { return context_; }
  const resp::Limits& limits() const { return context_.limits; }
  const config::LimitsConfig& clientLimits() const { return context_.config.limits; }
  WorkerStats& stats() { return stats_; }
  const WorkerStats& stats() const { return stats_; }
  std::size_t index() const { return index_; }
  bool upstreamUp() const { return upstreamUp_.load(std::memory_order_relaxed); }
  std::string upstreamVersion() const;

  // The shared connection a session with `sessionId` uses for `proto`. It may be failed (the
  // caller then answers UNAVAILABLE at once) or still connecting (requests queue behind the
  // handshake).
  UpstreamConnection& sharedUpstream(resp::Protocol proto, std::uint64_t sessionId);
  std::shared_ptr<UpstreamConnection> openDedicated(resp::Protocol proto);

  // Sessions with replies appended during an upstream read are written once the read's batch
  // has been dispatched, so a pipelined batch leaves in one write per client.
  void markDirty(std::shared_ptr<ClientSession> session);
  void flushDirty();

  void sessionClosed(std::uint64_t id);

 private:
  struct SharedSlot {
    std::shared_ptr<UpstreamConnection> conn;
    std::chrono::milliseconds backoff{0};
    std::unique_ptr<asio::steady_timer> retryTimer;
  };

  std::vector<std::shared_ptr<ClientSession>> liveSessions() const;
  void connectShared(resp::Protocol proto, std::size_t slot);
  void onSharedState(resp::Protocol proto, std::size_t slot, UpstreamConnection& conn,
                     UpstreamConnection::State state);
  std::vector<SharedSlot>& pool(resp::Protocol proto) {
    return pools_[proto == resp::Protocol::kResp3 ? 1 : 0];
  }

  std::size_t index_;
  ServerContext& context_;
  asio::io_context io_;
  std::thread thread_;
  WorkerStats stats_;
  std::array<std::vector<SharedSlot>, 2> pools_;
  // Owns the sessions: one lives until it closes itself (ClientSession::close), even while it
  // only waits for a reply and has no socket operation pending.
  std::unordered_map<std::uint64_t, std::shared_ptr<ClientSession>> sessions_;
  std::vector<std::shared_ptr<ClientSession>> dirty_;
  std::atomic<bool> upstreamUp_{false};
  std::string upstreamVersion_;
  bool draining_ = false;
  bool closingAll_ = false;
};

}  // namespace keygate::proxy
