#include "proxy/topology_refresher.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "proxy/worker.hpp"

namespace keygate::proxy {

namespace {
// Two fetches a second at most: after a failover the new master is known within 0.5 s of its
// promotion, and a cluster in trouble sees at most one CLUSTER SLOTS per 0.5 s per keygate.
constexpr RefreshSchedule::Duration kMinGap{500};
}  // namespace

TopologyRefresher::TopologyRefresher(asio::io_context& io, ServerContext& context, Publish publish)
    : io_(io),
      context_(context),
      publish_(std::move(publish)),
      schedule_(RefreshSchedule::Settings{context.config.upstream.topologyRefreshInterval, kMinGap,
                                          RefreshSchedule::Duration{10000}}),
      timer_(io) {}

void TopologyRefresher::start() {
  arm();
}

void TopologyRefresher::stop() {
  stopped_ = true;
  timer_.cancel();
}

void TopologyRefresher::requestEarly() {
  asio::post(io_, [this] {
    if (stopped_) return;
    schedule_.requestEarly(RefreshSchedule::Clock::now());
    arm();
  });
}

void TopologyRefresher::arm() {
  if (stopped_ || schedule_.inFlight()) return;
  timer_.expires_at(schedule_.next());
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    if (schedule_.due(RefreshSchedule::Clock::now())) {
      fetch();
    } else {
      arm();
    }
  });
}

std::vector<config::HostPort> TopologyRefresher::seeds() const {
  // Nodes of the current map first (masters, then replicas: after a failover the old master is
  // gone and a replica knows the news), then the configured seeds, each once.
  std::vector<config::HostPort> out;
  auto add = [&out](const std::string& host, std::uint16_t port) {
    config::HostPort hp{host, port};
    if (std::find(out.begin(), out.end(), hp) == out.end()) out.push_back(std::move(hp));
  };
  if (current_) {
    for (const auto& m : current_->masters())
      add(m.host, m.port);
    for (std::uint16_t i = 0; i < current_->masters().size(); ++i) {
      for (const auto& r : current_->replicasOf(i))
        add(r.host, r.port);
    }
  }
  for (const auto& s : context_.config.upstream.seeds)
    add(s.host, s.port);
  return out;
}

void TopologyRefresher::fetch() {
  schedule_.started(RefreshSchedule::Clock::now());
  fetch_ = std::make_shared<TopologyFetch>(io_, seeds(), context_.upstream, stats_);
  fetch_->start([this](std::shared_ptr<const SlotMap> map, const std::string& error) {
    onFetched(std::move(map), error);
  });
}

void TopologyRefresher::onFetched(std::shared_ptr<const SlotMap> map, const std::string& error) {
  fetch_.reset();
  const auto now = RefreshSchedule::Clock::now();
  schedule_.finished(now, map != nullptr);
  auto log = spdlog::get("upstream");
  if (!map) {
    context_.topologyRefreshFailures.fetch_add(1, std::memory_order_relaxed);
    if (error != lastError_) log->warn("cluster slot map: no node answered ({})", error);
    lastError_ = error;
  } else {
    context_.topologyRefreshes.fetch_add(1, std::memory_order_relaxed);
    lastError_.clear();
    const bool changed = !current_ || !current_->sameRouting(*map);
    if (changed) {
      context_.topologyChanges.fetch_add(1, std::memory_order_relaxed);
      log->info("cluster slot map: {} masters, {} slots not served{}", map->masters().size(),
                map->uncoveredSlots(), current_ ? " (routing changed)" : "");
    }
    current_ = std::move(map);
    context_.slotMapLoaded.store(true, std::memory_order_relaxed);
    if (!stopped_) publish_(current_);
  }
  arm();
}

}  // namespace keygate::proxy
