#include "proxy/topology.hpp"

#include <boost/asio/post.hpp>

#include "proxy/resp/reply_writer.hpp"

namespace keygate::proxy {

TopologyFetch::TopologyFetch(asio::io_context& io, std::vector<config::HostPort> seeds,
                             UpstreamSettings settings, WorkerStats& stats)
    : io_(io),
      seeds_(std::move(seeds)),
      settings_(std::move(settings)),
      stats_(stats),
      deadline_(io) {}

void TopologyFetch::start(Done done) {
  done_ = std::move(done);
  tryNext();
}

void TopologyFetch::tryNext() {
  // A new attempt number first: closing the previous connection reports its request as failed,
  // and that report must read as stale.
  ++attempt_;
  if (conn_) {
    auto old = std::move(conn_);
    old->close("topology fetch moved on");
  }
  if (next_ >= seeds_.size()) {
    finish(nullptr);
    return;
  }
  const auto& seed = seeds_[next_++];
  UpstreamSettings settings = settings_;
  settings.host = seed.host;
  settings.port = seed.port;
  conn_ = std::make_shared<UpstreamConnection>(io_, settings, resp::Protocol::kResp2,
                                               UpstreamConnection::Kind::kShared, stats_);
  conn_->start();
  std::string request;
  resp::appendCommand(request, {"CLUSTER", "SLOTS"});
  conn_->send(request, shared_from_this(), attempt_);
  // A seed that accepts but never answers must not stall the fetch: connect plus one reply.
  deadline_.expires_after(2 * settings_.connectTimeout);
  deadline_.async_wait(
      [self = shared_from_this(), attempt = attempt_](const boost::system::error_code& ec) {
        if (ec || attempt != self->attempt_ || !self->done_) return;
        self->lastError_ =
            "no CLUSTER SLOTS reply from " + self->seeds_[self->next_ - 1].str() + " in time";
        self->tryNext();
      });
}

void TopologyFetch::onReply(std::uint64_t tag, std::string_view frame) {
  if (tag != attempt_ || !done_) return;
  const std::string& seedHost = seeds_[next_ - 1].host;
  std::string error;
  auto map = SlotMap::fromClusterSlots(frame, seedHost, &error);
  if (map && map->masters().empty()) error = "CLUSTER SLOTS listed no slots";
  if (!map || map->masters().empty()) {
    if (!frame.empty() && frame[0] == '-') error = std::string(frame.substr(1, frame.size() - 3));
    lastError_ = seeds_[next_ - 1].str() + ": " + error;
    tryNext();
    return;
  }
  finish(std::make_shared<const SlotMap>(std::move(*map)));
}

void TopologyFetch::onFailure(std::uint64_t tag, std::string_view reason) {
  if (tag != attempt_ || !done_) return;
  lastError_ = seeds_[next_ - 1].str() + ": " + std::string(reason);
  // Not from inside the connection's own failure handling: post the next attempt.
  asio::post(io_, [self = shared_from_this()] {
    if (self->done_) self->tryNext();
  });
}

void TopologyFetch::finish(std::shared_ptr<const SlotMap> map) {
  auto done = std::move(done_);
  done_ = nullptr;  // from here on, late reports from the connection are ignored
  deadline_.cancel();
  if (conn_) {
    auto old = std::move(conn_);
    old->close("topology fetch done");
  }
  if (done) done(std::move(map), lastError_);
}

}  // namespace keygate::proxy
