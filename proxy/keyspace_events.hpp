#pragma once

// Evictions and expiries per key pattern, from Redis keyspace notifications (SPEC.md section 6,
// issue 6 item 2).
//
//   Redis master --SUBSCRIBE __keyevent@0__:evicted / :expired--> Subscription (one per node)
//        |  message: the key                                        |
//        |                                                          v
//        |                            registry keys().match(key) -> pattern index -> metric id
//        |                                                          |
//        |                     context.patternEvictions[id] / patternExpirations[id] (relaxed)
//        |
//        +--CONFIG GET notify-keyspace-events (on connect, then every health check)
//                         -> context.keyspaceNotifications["host:port"] (1/0)
//
// Everything runs on the server's main io_context; workers never see it. Standalone: one
// subscription to the upstream. Cluster: one per master of the current slot map (replicas do
// not evict or expire on their own; they apply the master's DELs), re-planned on every map the
// topology refresher publishes.
//
// Each subscription is an UpstreamConnection in dedicated mode speaking RESP3, so that the
// subscribed connection can still run commands: CONFIG GET is repeated every health-check
// interval, which both notices an operator turning notifications on or off and proves the link
// alive (no reply in time: reconnect). When CONFIG GET is refused (ACL, renamed command,
// managed services), PING does the health check and the node's state stays unknown until both
// kinds of event have been seen on it.
//
// keygate never changes Redis' configuration: when notifications are off it says so, once per
// node, naming the CONFIG SET an operator could run.

#include <prometheus/metric_family.h>

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policies/registry_policy.hpp"
#include "proxy/slot_map.hpp"
#include "proxy/stats.hpp"
#include "proxy/worker.hpp"

namespace keygate::proxy {

// keygate_pattern_evictions_total, keygate_pattern_expirations_total,
// keygate_keyspace_notifications_enabled{node}.
void appendKeyspaceFamilies(const ServerContext& context,
                            std::vector<prometheus::MetricFamily>& out);

// --- Pure parts (unit-tested) ---------------------------------------------------------------

// The channels keygate subscribes to (database 0: the only one keygate serves).
inline constexpr std::string_view kEvictedChannel = "__keyevent@0__:evicted";
inline constexpr std::string_view kExpiredChannel = "__keyevent@0__:expired";

enum class KeyEvent : std::uint8_t { kNone, kEvicted, kExpired };

// The event a keyevent channel carries: "__keyevent@<db>__:evicted" -> kEvicted, ... :expired
// -> kExpired, anything else kNone.
KeyEvent keyEventOf(std::string_view channel);

// Whether a notify-keyspace-events value makes Redis publish both events keygate counts: 'E'
// (keyevent channels) and either 'A' (every class) or both 'x' (expired) and 'e' (evicted).
bool notificationsCoverEvents(std::string_view flags);

// The value an operator could set to get both events while keeping every class already on:
// `flags` plus whichever of 'E', 'x', 'e' it lacks ("" -> "Exe", "Kg" -> "KgExe").
std::string suggestedNotifyFlags(std::string_view flags);

// One frame from a subscribed connection (RESP3 push or RESP2 array).
struct PubSubFrame {
  enum class Kind : std::uint8_t {
    kMessage,      // "message" channel payload
    kSubscribed,   // "subscribe" channel count
    kOtherPubSub,  // any other pub/sub push (unsubscribe, pmessage, ...)
    kNotPubSub,    // a command's reply
  };
  Kind kind = Kind::kNotPubSub;
  std::string_view channel;  // views into the frame
  std::string_view payload;
};
PubSubFrame decodePubSubFrame(std::string_view frame);

// A reply to CONFIG GET notify-keyspace-events (RESP3 map or RESP2 array).
struct NotifyConfigReply {
  enum class Status : std::uint8_t {
    kValue,    // `value` holds the flags
    kRefused,  // an error reply (`error` holds its text): ACL, renamed command, ...
    kMissing,  // a well-formed reply without the parameter
  };
  Status status = Status::kMissing;
  std::string value;
  std::string error;
};
NotifyConfigReply parseNotifyConfigReply(std::string_view frame);

// --- The subscriber -------------------------------------------------------------------------

class KeyspaceEvents {
 public:
  KeyspaceEvents(asio::io_context& io, ServerContext& context);
  ~KeyspaceEvents();

  KeyspaceEvents(const KeyspaceEvents&) = delete;
  KeyspaceEvents& operator=(const KeyspaceEvents&) = delete;

  // Standalone: subscribes to the upstream. Cluster: nothing until the first onSlotMap().
  void start();
  // Closes every subscription; nothing runs after this (idempotent).
  void stop();

  // The registry that attributes keys to patterns (null: every key counts as unregistered).
  // Main thread: Server::setRegistry and every reload publish.
  void setRegistry(std::shared_ptr<const policies::CompiledRegistry> registry);
  // Cluster: subscribes to masters new in `map`, drops nodes that are no longer masters.
  void onSlotMap(const std::shared_ptr<const SlotMap>& map);

  // Counts one event for `key` (what a message does; public for tests).
  void count(KeyEvent event, std::string_view key);

  // Nodes subscribed (or being connected / reconnected to), by "host:port".
  std::vector<std::string> nodes() const;

 private:
  class Subscription;
  friend class Subscription;

  void subscribe(const std::string& address, UpstreamSettings settings);
  void setNodeState(const std::string& address, std::optional<bool> enabled);

  asio::io_context& io_;
  ServerContext& context_;
  std::shared_ptr<const policies::CompiledRegistry> registry_;
  std::vector<std::uint16_t> patternIds_;  // registry pattern index -> metric id
  std::map<std::string, std::shared_ptr<Subscription>> subscriptions_;
  WorkerStats stats_;  // the subscriptions' connection counters (not client traffic)
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace keygate::proxy
