#pragma once

// Keeps the cluster slot map current (cluster mode). Lives on the main io_context: fetches at
// start-up, every upstream.topologyRefreshInterval, and early when a worker saw a MOVED reply
// or a node error, as RefreshSchedule allows (never within 1 s of the previous fetch, backing
// off while fetches fail). Each map is an immutable snapshot handed to every worker.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>

#include "proxy/refresh_schedule.hpp"
#include "proxy/slot_map.hpp"
#include "proxy/stats.hpp"
#include "proxy/topology.hpp"

namespace keygate::proxy {

struct ServerContext;

class TopologyRefresher {
 public:
  using Publish = std::function<void(std::shared_ptr<const SlotMap>)>;

  TopologyRefresher(asio::io_context& io, ServerContext& context, Publish publish);

  void start();
  void stop();
  // Thread-safe: something suggests the map is stale.
  void requestEarly();

 private:
  void arm();
  void fetch();
  void onFetched(std::shared_ptr<const SlotMap> map, const std::string& error);
  std::vector<config::HostPort> seeds() const;

  asio::io_context& io_;
  ServerContext& context_;
  Publish publish_;
  RefreshSchedule schedule_;
  asio::steady_timer timer_;
  WorkerStats stats_;  // the fetch connections' own counters (not client traffic)
  std::shared_ptr<TopologyFetch> fetch_;
  std::shared_ptr<const SlotMap> current_;
  std::string lastError_;
  bool stopped_ = false;
};

}  // namespace keygate::proxy
