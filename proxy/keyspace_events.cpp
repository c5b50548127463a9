#include "proxy/keyspace_events.hpp"

#include <prometheus/client_metric.h>
#include <prometheus/metric_type.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>

#include "proxy/resp/reply_reader.hpp"
#include "proxy/resp/reply_writer.hpp"
#include "proxy/upstream_connection.hpp"

namespace keygate::proxy {

namespace {

constexpr std::string_view kNotifyParameter = "notify-keyspace-events";
// Reconnect backoff: doubling from the first to the second.
constexpr std::chrono::milliseconds kMinBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};
// SUBSCRIBE refused (an ACL without the channels): retrying soon would only fill the ACL log.
constexpr std::chrono::milliseconds kRefusedRetry{60000};
// A command (CONFIG GET or PING) every interval; no reply by the next one: reconnect. This is
// also how soon an operator's CONFIG SET shows in keygate_keyspace_notifications_enabled.
constexpr std::chrono::seconds kHealthInterval{15};

std::shared_ptr<spdlog::logger> logger() {
  auto log = spdlog::get("upstream");
  return log ? log : spdlog::default_logger();
}

bool has(std::string_view flags, char c) {
  return flags.find(c) != std::string_view::npos;
}

// Whether `flags` publish the keyevent channel of event class `c` ('e' evicted, 'x' expired).
bool publishes(std::string_view flags, char c) {
  return has(flags, 'E') && (has(flags, 'A') || has(flags, c));
}

std::string printable(std::string_view text) {
  std::string out;
  for (const char c : text.substr(0, 200))
    out += (c == '\r' || c == '\n') ? ' ' : c;
  return out;
}

}  // namespace

// --- Pure parts -----------------------------------------------------------------------------

KeyEvent keyEventOf(std::string_view channel) {
  constexpr std::string_view kPrefix = "__keyevent@";
  if (!channel.starts_with(kPrefix)) return KeyEvent::kNone;
  channel.remove_prefix(kPrefix.size());
  std::size_t digits = 0;
  while (digits < channel.size() && channel[digits] >= '0' && channel[digits] <= '9')
    ++digits;
  if (digits == 0) return KeyEvent::kNone;
  channel.remove_prefix(digits);
  if (!channel.starts_with("__:")) return KeyEvent::kNone;
  channel.remove_prefix(3);
  if (channel == "evicted") return KeyEvent::kEvicted;
  if (channel == "expired") return KeyEvent::kExpired;
  return KeyEvent::kNone;
}

bool notificationsCoverEvents(std::string_view flags) {
  return publishes(flags, 'e') && publishes(flags, 'x');
}

std::string suggestedNotifyFlags(std::string_view flags) {
  std::string out(flags);
  if (!has(flags, 'E')) out += 'E';
  if (!has(flags, 'A')) {
    if (!has(flags, 'x')) out += 'x';
    if (!has(flags, 'e')) out += 'e';
  }
  return out;
}

PubSubFrame decodePubSubFrame(std::string_view frame) {
  PubSubFrame out;
  resp::ReplyReader reader(frame);
  const auto header = reader.next();
  if (!header || (header->type != '>' && header->type != '*') || header->integer < 1) return out;
  const bool push = header->type == '>';
  const auto kind = reader.next();
  if (!kind || (kind->type != '$' && kind->type != '+')) {
    if (push) out.kind = PubSubFrame::Kind::kOtherPubSub;
    return out;
  }
  auto text = [&reader]() -> std::optional<std::string_view> {
    const auto e = reader.next();
    if (!e || (e->type != '$' && e->type != '+') || e->isNull) return std::nullopt;
    return e->text;
  };
  if (kind->text == "message" && header->integer == 3) {
    const auto channel = text();
    const auto payload = text();
    if (channel && payload) {
      out.kind = PubSubFrame::Kind::kMessage;
      out.channel = *channel;
      out.payload = *payload;
      return out;
    }
  } else if (kind->text == "subscribe" && header->integer == 3) {
    const auto channel = text();
    const auto count = reader.next();
    if (channel && count && count->type == ':') {
      out.kind = PubSubFrame::Kind::kSubscribed;
      out.channel = *channel;
      return out;
    }
  }
  // Any other push is pub/sub traffic (or a push keygate never asked for); in RESP2, only the
  // pub/sub words make an array one (a command's reply is any other array).
  static constexpr std::string_view kPubSubWords[] = {"message",  "subscribe",  "unsubscribe",
                                                      "pmessage", "psubscribe", "punsubscribe",
                                                      "smessage", "ssubscribe", "sunsubscribe"};
  if (push || std::find(std::begin(kPubSubWords), std::end(kPubSubWords), kind->text) !=
                  std::end(kPubSubWords)) {
    out.kind = PubSubFrame::Kind::kOtherPubSub;
  }
  return out;
}

NotifyConfigReply parseNotifyConfigReply(std::string_view frame) {
  NotifyConfigReply out;
  resp::ReplyReader reader(frame);
  const auto header = reader.next();
  if (!header) return out;
  if (header->type == '-' || header->type == '!') {
    out.status = NotifyConfigReply::Status::kRefused;
    out.error = printable(header->text);
    return out;
  }
  if (header->type != '%' && header->type != '*') return out;
  bool nextIsValue = false;
  while (const auto e = reader.next()) {
    const bool isText = (e->type == '$' || e->type == '+') && !e->isNull;
    if (nextIsValue) {
      if (!isText) return out;
      out.status = NotifyConfigReply::Status::kValue;
      out.value = std::string(e->text);
      return out;
    }
    nextIsValue = isText && e->text == kNotifyParameter;
  }
  return out;
}

// --- Metrics --------------------------------------------------------------------------------

void appendKeyspaceFamilies(const ServerContext& context,
                            std::vector<prometheus::MetricFamily>& out) {
  // Every pattern id ever interned (bounded by the registries loaded, and by kMaxPatternIds),
  // zeros included: a series that exists before its first event makes increase() see it.
  const std::size_t ids = std::min({context.patternNames.count(), context.patternEvictions.size(),
                                    context.patternExpirations.size()});
  auto perPattern = [&](std::string name, std::string help,
                        const std::vector<std::atomic<std::uint64_t>>& values) {
    prometheus::MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = prometheus::MetricType::Counter;
    for (std::size_t id = 0; id < ids; ++id) {
      prometheus::ClientMetric m;
      m.label = {{"pattern", context.patternNames.name(id)}};
      m.counter.value = static_cast<double>(values[id].load(std::memory_order_relaxed));
      f.metric.push_back(std::move(m));
    }
    out.push_back(std::move(f));
  };
  perPattern("keygate_pattern_evictions_total",
             "Keys Redis evicted (maxmemory), by pattern, from keyspace notifications of every "
             "master (each keygate counts the whole cluster's)",
             context.patternEvictions);
  perPattern("keygate_pattern_expirations_total",
             "Keys Redis expired (TTL), by pattern, from keyspace notifications of every master "
             "(each keygate counts the whole cluster's)",
             context.patternExpirations);

  prometheus::MetricFamily enabled;
  enabled.name = "keygate_keyspace_notifications_enabled";
  enabled.help =
      "1 when the node's notify-keyspace-events publishes evicted and expired key events, 0 "
      "when not (absent: unknown, CONFIG GET refused)";
  enabled.type = prometheus::MetricType::Gauge;
  {
    std::lock_guard lock(context.keyspaceMutex);
    for (const auto& [node, on] : context.keyspaceNotifications) {
      prometheus::ClientMetric m;
      m.label = {{"node", node}};
      m.gauge.value = on ? 1 : 0;
      enabled.metric.push_back(std::move(m));
    }
  }
  out.push_back(std::move(enabled));
}

// --- One node's subscription ----------------------------------------------------------------

// A dedicated RESP3 connection to one node: CONFIG GET, SUBSCRIBE, then messages, with a
// health-check command every kHealthInterval. Reconnects (with backoff) until stopped. Timer
// handlers hold a reference, so a subscription dropped by onSlotMap lives until they ran.
class KeyspaceEvents::Subscription final : public ReplySink,
                                           public std::enable_shared_from_this<Subscription> {
 public:
  Subscription(KeyspaceEvents& owner, std::string address, UpstreamSettings settings)
      : owner_(owner),
        address_(std::move(address)),
        settings_(std::move(settings)),
        retryTimer_(owner.io_),
        healthTimer_(owner.io_) {}

  void start() { connect(); }

  void stop() {
    stopped_ = true;
    retryTimer_.cancel();
    healthTimer_.cancel();
    if (conn_) {
      conn_->setOwner(nullptr);
      conn_->close("keyspace events: subscription closed");
      conn_.reset();
    }
  }

  void onReply(std::uint64_t, std::string_view frame) override {
    if (stopped_ || !conn_) return;
    const PubSubFrame f = decodePubSubFrame(frame);
    switch (f.kind) {
      case PubSubFrame::Kind::kMessage:
        onMessage(keyEventOf(f.channel), f.payload);
        return;
      case PubSubFrame::Kind::kSubscribed:
        if (++confirmations_ == 2) onSubscribed();
        return;
      case PubSubFrame::Kind::kOtherPubSub:
        return;
      case PubSubFrame::Kind::kNotPubSub:
        break;
    }
    if (pending_.empty()) {
      // Only CONFIG GET and the health checks have replies; SUBSCRIBE answers with pushes,
      // unless it is refused.
      const char type = frame.empty() ? 0 : frame[0];
      if (confirmations_ < 2 && (type == '-' || type == '!')) {
        onSubscribeRefused(frame);
      } else {
        conn_->close("keyspace events: a reply from Redis with no command waiting");
      }
      return;
    }
    const Pending what = pending_.front();
    pending_.pop_front();
    if (what == Pending::kConfig) onConfigReply(frame);
    // A PING's reply, whatever it is, proves the link alive.
  }

  void onFailure(std::uint64_t, std::string_view reason) override {
    if (stopped_) return;
    ++generation_;
    healthTimer_.cancel();
    conn_.reset();
    auto log = logger();
    if (!down_) {
      down_ = true;
      log->warn(
          "keyspace events: no subscription on {} ({}); reconnecting, evictions and expiries "
          "there are not counted meanwhile",
          address_, reason);
    } else {
      log->debug("keyspace events: reconnecting to {} failed: {}", address_, reason);
    }
    backoff_ = refused_                ? kRefusedRetry
               : backoff_.count() == 0 ? kMinBackoff
                                       : std::min(backoff_ * 2, kMaxBackoff);
    refused_ = false;
    retryTimer_.expires_after(backoff_);
    retryTimer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec && !self->stopped_) self->connect();
    });
  }

 private:
  enum class Pending : std::uint8_t { kConfig, kPing };

  void connect() {
    ++generation_;
    pending_.clear();
    confirmations_ = 0;
    conn_ =
        std::make_shared<UpstreamConnection>(owner_.io_, settings_, resp::Protocol::kResp3,
                                             UpstreamConnection::Kind::kDedicated, owner_.stats_);
    conn_->setOwner(this);
    conn_->start();
    // Both go out behind the handshake; the CONFIG GET reply arrives before the confirmations.
    std::string out;
    resp::appendCommand(out, {"CONFIG", "GET", kNotifyParameter});
    pending_.push_back(Pending::kConfig);
    resp::appendCommand(out, {"SUBSCRIBE", kEvictedChannel, kExpiredChannel});
    conn_->sendStream(out);
  }

  void onSubscribed() {
    backoff_ = std::chrono::milliseconds(0);
    if (down_) {
      down_ = false;
      logger()->info("keyspace events: subscribed again on {}", address_);
    } else {
      logger()->debug("keyspace events: subscribed on {}", address_);
    }
    armHealthCheck();
  }

  void onSubscribeRefused(std::string_view frame) {
    const std::string error = printable(frame.substr(1, frame.find('\r') - 1));
    logger()->error(
        "keyspace events: SUBSCRIBE {} {} refused by {}: {}; evictions and expiries there are "
        "not counted (keygate's Redis user needs access to these channels); retrying every {} s",
        kEvictedChannel, kExpiredChannel, address_, error, kRefusedRetry.count() / 1000);
    refused_ = true;
    down_ = true;  // onFailure logs nothing more
    conn_->close("SUBSCRIBE refused: " + error);
  }

  void armHealthCheck() {
    healthTimer_.expires_after(kHealthInterval);
    healthTimer_.async_wait(
        [self = shared_from_this(), generation = generation_](const boost::system::error_code& ec) {
          if (!ec && !self->stopped_ && generation == self->generation_) self->healthCheck();
        });
  }

  void healthCheck() {
    if (!conn_) return;
    if (!pending_.empty()) {
      conn_->close("no reply to a health check within " + std::to_string(kHealthInterval.count()) +
                   " s");
      return;
    }
    std::string out;
    if (configReadable_) {
      resp::appendCommand(out, {"CONFIG", "GET", kNotifyParameter});
      pending_.push_back(Pending::kConfig);
    } else {
      // A refused CONFIG GET would add an ACL log entry every interval.
      resp::appendCommand(out, {"PING"});
      pending_.push_back(Pending::kPing);
    }
    conn_->sendStream(out);
    armHealthCheck();
  }

  void onConfigReply(std::string_view frame) {
    const NotifyConfigReply reply = parseNotifyConfigReply(frame);
    auto log = logger();
    if (reply.status != NotifyConfigReply::Status::kValue) {
      configReadable_ = false;
      if (!warnedUnreadable_) {
        warnedUnreadable_ = true;
        log->warn(
            "keyspace events: cannot read notify-keyspace-events on {} ({}); subscribing "
            "anyway. If evictions and expiries must be counted, make sure it contains 'E' and "
            "'x' and 'e' (or 'A'); keygate_keyspace_notifications_enabled{{node=\"{}\"}} stays "
            "absent until both kinds of event were seen there",
            address_,
            reply.status == NotifyConfigReply::Status::kRefused ? reply.error : "no such parameter",
            address_);
      }
      return;
    }
    configReadable_ = true;
    const bool on = notificationsCoverEvents(reply.value);
    if (enabled_ != on) {
      if (!on) {
        const bool evictions = publishes(reply.value, 'e');
        const bool expiries = publishes(reply.value, 'x');
        const char* missing = !evictions && !expiries ? "evictions and expiries"
                              : !evictions            ? "evictions"
                                                      : "expiries";
        log->warn(
            "keyspace events: notify-keyspace-events is \"{}\" on {}: Redis does not publish "
            "{}, so keygate cannot count them by pattern. keygate never changes Redis' "
            "configuration; an operator can run: CONFIG SET notify-keyspace-events {} (on "
            "every master, and in the config file to survive a restart)",
            reply.value, address_, missing, suggestedNotifyFlags(reply.value));
      } else if (enabled_.has_value()) {
        log->info("keyspace events: notify-keyspace-events is \"{}\" on {} now; counting",
                  reply.value, address_);
      }
    }
    enabled_ = on;
    owner_.setNodeState(address_, on);
  }

  void onMessage(KeyEvent event, std::string_view key) {
    if (event == KeyEvent::kNone) return;
    owner_.count(event, key);
    if (enabled_.has_value() || configReadable_) return;
    // CONFIG GET refused: both kinds of event arriving prove notifications on.
    seen_ |= event == KeyEvent::kEvicted ? 1 : 2;
    if (seen_ == 3) {
      enabled_ = true;
      owner_.setNodeState(address_, true);
    }
  }

  KeyspaceEvents& owner_;
  const std::string address_;
  const UpstreamSettings settings_;
  std::shared_ptr<UpstreamConnection> conn_;
  asio::steady_timer retryTimer_;
  asio::steady_timer healthTimer_;
  std::chrono::milliseconds backoff_{0};
  std::deque<Pending> pending_;   // replies still expected (not pushes), in order
  std::uint64_t generation_ = 0;  // per connection: health checks of an old one do nothing
  int confirmations_ = 0;         // SUBSCRIBE confirmations on this connection (2: done)
  bool configReadable_ = true;    // false while CONFIG GET is refused (health checks PING)
  std::optional<bool> enabled_;   // the node's state as last known; nullopt: unknown
  std::uint8_t seen_ = 0;         // kinds of event seen while unknown: 1 evicted, 2 expired
  bool warnedUnreadable_ = false;
  bool down_ = false;  // lost (logged) and not subscribed again yet
  bool refused_ = false;
  bool stopped_ = false;
};

// --- KeyspaceEvents -------------------------------------------------------------------------

KeyspaceEvents::KeyspaceEvents(asio::io_context& io, ServerContext& context)
    : io_(io), context_(context) {}

KeyspaceEvents::~KeyspaceEvents() {
  stop();
}

void KeyspaceEvents::start() {
  if (stopped_ || context_.config.upstream.mode == config::UpstreamMode::kCluster) return;
  subscribe(context_.upstream.label(), context_.upstream);
}

void KeyspaceEvents::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& [address, subscription] : subscriptions_)
    subscription->stop();
  subscriptions_.clear();
}

void KeyspaceEvents::setRegistry(std::shared_ptr<const policies::CompiledRegistry> registry) {
  registry_ = std::move(registry);
  patternIds_.clear();
  if (!registry_) return;
  patternIds_.reserve(registry_->patternCount());
  for (std::size_t i = 0; i < registry_->patternCount(); ++i) {
    const auto& rules = registry_->rules(i);
    // A key that only a channel pattern matches is no registered key (as for requests).
    patternIds_.push_back(rules.channel ? kUnregisteredPattern
                                        : context_.patternNames.intern(rules.entry->pattern));
  }
}

void KeyspaceEvents::onSlotMap(const std::shared_ptr<const SlotMap>& map) {
  if (stopped_ || !map) return;
  std::map<std::string, const ClusterNode*> masters;
  for (const auto& node : map->masters())
    masters.emplace(node.address(), &node);
  for (auto it = subscriptions_.begin(); it != subscriptions_.end();) {
    if (masters.contains(it->first)) {
      ++it;
      continue;
    }
    logger()->info("keyspace events: {} is no longer a master; unsubscribed", it->first);
    it->second->stop();
    setNodeState(it->first, std::nullopt);
    it = subscriptions_.erase(it);
  }
  for (const auto& [address, node] : masters) {
    if (subscriptions_.contains(address)) continue;
    UpstreamSettings settings = context_.upstream;
    settings.host = node->host;
    settings.port = node->port;
    settings.readOnly = false;
    settings.labelErrors = true;
    subscribe(address, std::move(settings));
  }
}

void KeyspaceEvents::count(KeyEvent event, std::string_view key) {
  std::uint16_t id = kUnregisteredPattern;
  if (registry_) {
    const int index = registry_->keys().match(key, nullptr);
    if (index >= 0 && static_cast<std::size_t>(index) < patternIds_.size())
      id = patternIds_[static_cast<std::size_t>(index)];
  }
  auto& counters =
      event == KeyEvent::kEvicted ? context_.patternEvictions : context_.patternExpirations;
  if (event != KeyEvent::kNone && id < counters.size())
    counters[id].fetch_add(1, std::memory_order_relaxed);
}

std::vector<std::string> KeyspaceEvents::nodes() const {
  std::vector<std::string> out;
  for (const auto& [address, subscription] : subscriptions_)
    out.push_back(address);
  return out;
}

void KeyspaceEvents::subscribe(const std::string& address, UpstreamSettings settings) {
  auto subscription = std::make_shared<Subscription>(*this, address, std::move(settings));
  subscriptions_.emplace(address, subscription);
  subscription->start();
}

void KeyspaceEvents::setNodeState(const std::string& address, std::optional<bool> enabled) {
  std::lock_guard lock(context_.keyspaceMutex);
  if (enabled) {
    context_.keyspaceNotifications[address] = *enabled;
  } else {
    context_.keyspaceNotifications.erase(address);
  }
}

}  // namespace keygate::proxy
