#pragma once

// Fetches a Redis Cluster slot map: asks the seeds in turn for CLUSTER SLOTS over an ordinary
// UpstreamConnection (same handshake as the data path, nothing blocks) and hands the parsed,
// immutable SlotMap to a callback. One fetch per object; the refresher that schedules fetches
// (periodic, on MOVED, on node errors) builds on it.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "proxy/slot_map.hpp"
#include "proxy/stats.hpp"
#include "proxy/upstream_connection.hpp"

namespace keygate::proxy {

class TopologyFetch final : public ReplySink, public std::enable_shared_from_this<TopologyFetch> {
 public:
  // `map` is null when no seed answered; `error` then says why (the last seed's reason).
  using Done = std::function<void(std::shared_ptr<const SlotMap> map, const std::string& error)>;

  // `settings` supplies AUTH, timeouts and limits; its host and port are replaced per seed.
  TopologyFetch(asio::io_context& io, std::vector<config::HostPort> seeds,
                UpstreamSettings settings, WorkerStats& stats);

  // Starts with the first seed; `done` runs exactly once, on the io_context's thread.
  void start(Done done);

  void onReply(std::uint64_t tag, std::string_view frame) override;
  void onFailure(std::uint64_t tag, std::string_view reason) override;

 private:
  void tryNext();
  void finish(std::shared_ptr<const SlotMap> map);

  asio::io_context& io_;
  std::vector<config::HostPort> seeds_;
  UpstreamSettings settings_;
  WorkerStats& stats_;
  asio::steady_timer deadline_;
  std::size_t next_ = 0;
  std::uint64_t attempt_ = 0;  // tag of the request in flight; stale replies are ignored
  std::shared_ptr<UpstreamConnection> conn_;
  std::string lastError_;
  Done done_;
};

}  // namespace keygate::proxy
