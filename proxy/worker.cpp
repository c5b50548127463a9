#include "proxy/worker.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "proxy/client_session.hpp"

namespace keygate::proxy {

namespace {
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{2000};
}  // namespace

Worker::Worker(std::size_t index, ServerContext& context)
    : index_(index), context_(context), io_(1) {
  const std::size_t perProto =
      std::max<std::uint32_t>(1, context_.config.upstream.connectionsPerWorker);
  for (auto& p : pools_)
    p.resize(perProto);
}

Worker::~Worker() {
  join();
}

void Worker::start() {
  // The RESP2 pool connects now, so readiness reflects Redis before the first client arrives.
  asio::post(io_, [this] {
    auto& p = pool(resp::Protocol::kResp2);
    for (std::size_t i = 0; i < p.size(); ++i)
      connectShared(resp::Protocol::kResp2, i);
  });
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(io_);
    io_.run();
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::stop() {
  io_.stop();
}

std::string Worker::upstreamVersion() const {
  return upstreamVersion_.empty() ? std::string("7.0.0") : upstreamVersion_;
}

void Worker::adopt(asio::ip::tcp::socket::native_handle_type fd) {
  asio::post(io_, [this, fd] {
    asio::ip::tcp::socket socket(io_);
    boost::system::error_code ec;
    socket.assign(asio::ip::tcp::v4(), fd, ec);
    if (ec) {
      ::close(fd);
      context_.activeClients.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
    const auto id = context_.nextClientId.fetch_add(1, std::memory_order_relaxed);
    auto session = std::make_shared<ClientSession>(*this, std::move(socket), id);
    sessions_.emplace(id, session);
    WorkerStats::add(stats_.connectionsAccepted);
    session->start();
    if (draining_) session->beginDrain();
  });
}

void Worker::sessionClosed(std::uint64_t id) {
  auto it = sessions_.find(id);
  if (it != sessions_.end()) {
    // Released after this turn: the session may be the caller.
    asio::post(io_, [session = std::move(it->second)] {});
    sessions_.erase(it);
    WorkerStats::add(stats_.connectionsClosed);
    context_.activeClients.fetch_sub(1, std::memory_order_relaxed);
  }
}

std::vector<std::shared_ptr<ClientSession>> Worker::liveSessions() const {
  // A copy: beginDrain() and close() remove sessions from the map while we iterate.
  std::vector<std::shared_ptr<ClientSession>> live;
  live.reserve(sessions_.size());
  for (const auto& [id, session] : sessions_)
    live.push_back(session);
  return live;
}

void Worker::beginDrain() {
  asio::post(io_, [this] {
    draining_ = true;
    for (auto& s : liveSessions())
      s->beginDrain();
  });
}

void Worker::closeAll() {
  asio::post(io_, [this] {
    draining_ = true;
    closingAll_ = true;
    for (auto& s : liveSessions())
      s->close();
    for (auto& p : pools_) {
      for (auto& slot : p) {
        if (slot.retryTimer) slot.retryTimer->cancel();
        if (slot.conn) slot.conn->close("keygate is shutting down");
      }
    }
  });
}

UpstreamConnection& Worker::sharedUpstream(resp::Protocol proto, std::uint64_t sessionId) {
  auto& p = pool(proto);
  const std::size_t slot = p.size() == 1 ? 0 : sessionId % p.size();
  if (!p[slot].conn) connectShared(proto, slot);
  return *p[slot].conn;
}

void Worker::connectShared(resp::Protocol proto, std::size_t slot) {
  auto& entry = pool(proto)[slot];
  entry.conn = std::make_shared<UpstreamConnection>(io_, context_.upstream, proto,
                                                    UpstreamConnection::Kind::kShared, stats_);
  entry.conn->setBatchHook([this] { flushDirty(); });
  entry.conn->start([this, proto, slot](UpstreamConnection& conn, UpstreamConnection::State s) {
    onSharedState(proto, slot, conn, s);
  });
}

void Worker::onSharedState(resp::Protocol proto, std::size_t slot, UpstreamConnection& conn,
                           UpstreamConnection::State state) {
  auto& entry = pool(proto)[slot];
  if (entry.conn.get() != &conn) return;  // an older connection
  if (state == UpstreamConnection::State::kReady) {
    entry.backoff = std::chrono::milliseconds{0};
    if (!conn.serverVersion().empty()) upstreamVersion_ = conn.serverVersion();
    if (proto == resp::Protocol::kResp2) upstreamUp_.store(true, std::memory_order_relaxed);
    spdlog::get("upstream")
        ->info("worker {}: connected to {} (RESP{})", index_, context_.upstream.label(),
               static_cast<int>(proto));
    return;
  }
  if (state != UpstreamConnection::State::kFailed) return;
  if (proto == resp::Protocol::kResp2) upstreamUp_.store(false, std::memory_order_relaxed);
  if (closingAll_) return;  // our own shutdown, not a failure
  entry.backoff =
      entry.backoff.count() == 0 ? kFirstBackoff : std::min(entry.backoff * 2, kMaxBackoff);
  spdlog::get("upstream")
      ->warn("worker {}: upstream {} failed: {}; retrying in {} ms", index_,
             context_.upstream.label(), conn.lastError(), entry.backoff.count());
  if (draining_) return;
  // Until the retry, the failed connection stays in place: requests fail fast instead of piling
  // up behind a connect that is likely to fail again.
  if (!entry.retryTimer) entry.retryTimer = std::make_unique<asio::steady_timer>(io_);
  entry.retryTimer->expires_after(entry.backoff);
  entry.retryTimer->async_wait([this, proto, slot](const boost::system::error_code& ec) {
    if (ec || draining_) return;
    connectShared(proto, slot);
  });
}

std::shared_ptr<UpstreamConnection> Worker::openDedicated(resp::Protocol proto) {
  auto conn = std::make_shared<UpstreamConnection>(io_, context_.upstream, proto,
                                                   UpstreamConnection::Kind::kDedicated, stats_);
  WorkerStats::add(stats_.dedicatedConnections);
  conn->setBatchHook([this] { flushDirty(); });
  conn->start();
  return conn;
}

void Worker::markDirty(std::shared_ptr<ClientSession> session) {
  dirty_.push_back(std::move(session));
}

void Worker::flushDirty() {
  if (dirty_.empty()) return;
  auto batch = std::move(dirty_);
  dirty_.clear();
  for (auto& s : batch)
    s->flushOutput();
  if (dirty_.empty()) {
    batch.clear();
    dirty_.swap(batch);  // keep the capacity
  }
}

}  // namespace keygate::proxy
