#include "proxy/keyspace_events.hpp"

#include <catch2/catch.hpp>
#include <string>

#include "config/registry.hpp"
#include "proxy/resp/reply_writer.hpp"

using namespace keygate;
using namespace keygate::proxy;

namespace {

std::string push(std::initializer_list<std::string_view> parts, char type = '>') {
  std::string out = type + std::to_string(parts.size()) + "\r\n";
  for (const auto p : parts)
    resp::appendBulk(out, p);
  return out;
}

std::shared_ptr<const policies::CompiledRegistry> compile(std::string_view yaml) {
  auto loaded = config::loadRegistryText(yaml, "r.yaml");
  INFO((loaded.errors.empty() ? std::string() : loaded.errors.front().str()));
  REQUIRE(loaded.ok());
  std::vector<config::ConfigError> errors;
  auto compiled = policies::CompiledRegistry::compile(std::move(loaded.registry), &errors);
  INFO((errors.empty() ? std::string() : errors.front().str()));
  REQUIRE(compiled);
  return compiled;
}

constexpr std::string_view kRegistry = R"(version: 1
patterns:
  - pattern: "evict:<id>"
    owner: t
    purpose: t
    authority: false
    ttl: {default: 60s}
  - pattern: "keep:<id>"
    owner: t
    purpose: t
    authority: true
  - pattern: "chan:<id>"
    kind: channel
    owner: t
    purpose: t
    authority: false
)";

std::uint64_t value(const std::vector<std::atomic<std::uint64_t>>& v, std::size_t id) {
  return v[id].load();
}

}  // namespace

TEST_CASE("keyspace events: notify-keyspace-events values: both keyevents need E and x+e or A") {
  CHECK_FALSE(notificationsCoverEvents(""));
  CHECK_FALSE(notificationsCoverEvents("Ex"));   // expiries only
  CHECK_FALSE(notificationsCoverEvents("Ee"));   // evictions only
  CHECK_FALSE(notificationsCoverEvents("Kxe"));  // keyspace channels, not keyevent
  CHECK_FALSE(notificationsCoverEvents("Egx"));  // no evictions
  CHECK_FALSE(notificationsCoverEvents("AK"));   // every class, keyspace channels only
  CHECK(notificationsCoverEvents("KEA"));
  CHECK(notificationsCoverEvents("AKE"));  // how CONFIG GET prints "KEA"
  CHECK(notificationsCoverEvents("Exe"));
  CHECK(notificationsCoverEvents("xeE"));
  CHECK(notificationsCoverEvents("gxeKE"));
  // Case matters: 'e' is evicted, 'E' keyevent.
  CHECK_FALSE(notificationsCoverEvents("ex"));
  CHECK_FALSE(notificationsCoverEvents("EX"));
}

TEST_CASE(
    "keyspace events: the suggested CONFIG SET value keeps what is on and adds what is missing") {
  CHECK(suggestedNotifyFlags("") == "Exe");
  CHECK(suggestedNotifyFlags("Ex") == "Exe");
  CHECK(suggestedNotifyFlags("Egx") == "Egxe");
  CHECK(suggestedNotifyFlags("Kg") == "KgExe");
  CHECK(suggestedNotifyFlags("AK") == "AKE");
  for (const std::string_view flags : {"", "Ex", "Egx", "Kg", "AK", "KEA", "e"})
    CHECK(notificationsCoverEvents(suggestedNotifyFlags(flags)));
}

TEST_CASE("keyspace events: keyevent channels name the event") {
  CHECK(keyEventOf("__keyevent@0__:evicted") == KeyEvent::kEvicted);
  CHECK(keyEventOf("__keyevent@0__:expired") == KeyEvent::kExpired);
  CHECK(keyEventOf("__keyevent@12__:expired") == KeyEvent::kExpired);
  CHECK(keyEventOf("__keyevent@0__:del") == KeyEvent::kNone);
  CHECK(keyEventOf("__keyspace@0__:evicted") == KeyEvent::kNone);
  CHECK(keyEventOf("__keyevent@__:evicted") == KeyEvent::kNone);
  CHECK(keyEventOf("__keyevent@0__:evictedx") == KeyEvent::kNone);
  CHECK(keyEventOf("__keyevent@0_:evicted") == KeyEvent::kNone);
  CHECK(keyEventOf("") == KeyEvent::kNone);
}

TEST_CASE("keyspace events: pub/sub frames: messages, confirmations and command replies") {
  SECTION("a RESP3 message push carries the key, binary-safe") {
    const std::string key("evict:\r\n\0x", 10);
    const auto frame = push({"message", "__keyevent@0__:evicted", key});
    const auto f = decodePubSubFrame(frame);
    CHECK(f.kind == PubSubFrame::Kind::kMessage);
    CHECK(f.channel == "__keyevent@0__:evicted");
    CHECK(f.payload == key);
  }
  SECTION("the same as a RESP2 array") {
    const auto frame = push({"message", "__keyevent@0__:expired", "k:1"}, '*');
    const auto f = decodePubSubFrame(frame);  // views into `frame`: keep it alive
    CHECK(f.kind == PubSubFrame::Kind::kMessage);
    CHECK(f.payload == "k:1");
  }
  SECTION("an empty key") {
    const auto frame = push({"message", "__keyevent@0__:expired", ""});
    const auto f = decodePubSubFrame(frame);
    CHECK(f.kind == PubSubFrame::Kind::kMessage);
    CHECK(f.payload.empty());
  }
  SECTION("subscribe confirmations") {
    const std::string frame = ">3\r\n$9\r\nsubscribe\r\n$22\r\n__keyevent@0__:evicted\r\n:1\r\n";
    const auto f = decodePubSubFrame(frame);
    CHECK(f.kind == PubSubFrame::Kind::kSubscribed);
    CHECK(f.channel == "__keyevent@0__:evicted");
  }
  SECTION("other pushes are pub/sub but not counted") {
    CHECK(decodePubSubFrame(">3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n").kind ==
          PubSubFrame::Kind::kOtherPubSub);
    CHECK(decodePubSubFrame(push({"pmessage", "p*", "pc", "x"})).kind ==
          PubSubFrame::Kind::kOtherPubSub);
    CHECK(decodePubSubFrame(push({"invalidate", "x"})).kind == PubSubFrame::Kind::kOtherPubSub);
    // A malformed message push (wrong arity) is not a message.
    CHECK(decodePubSubFrame(push({"message", "__keyevent@0__:evicted"})).kind ==
          PubSubFrame::Kind::kOtherPubSub);
  }
  SECTION("command replies are not pub/sub") {
    CHECK(decodePubSubFrame("+PONG\r\n").kind == PubSubFrame::Kind::kNotPubSub);
    CHECK(decodePubSubFrame("-NOPERM no\r\n").kind == PubSubFrame::Kind::kNotPubSub);
    CHECK(decodePubSubFrame("%1\r\n$22\r\nnotify-keyspace-events\r\n$0\r\n\r\n").kind ==
          PubSubFrame::Kind::kNotPubSub);
    CHECK(decodePubSubFrame(push({"notify-keyspace-events", "xE"}, '*')).kind ==
          PubSubFrame::Kind::kNotPubSub);
    // RESP2 PING in subscribed mode.
    CHECK(decodePubSubFrame(push({"pong", ""}, '*')).kind == PubSubFrame::Kind::kNotPubSub);
  }
  SECTION("malformed frames are no message") {
    CHECK(decodePubSubFrame("").kind == PubSubFrame::Kind::kNotPubSub);
    CHECK(decodePubSubFrame("*3\r\n$7\r\nmessage\r\n").kind != PubSubFrame::Kind::kMessage);
    CHECK(decodePubSubFrame(">3\r\n$7\r\nmessage\r\n$99\r\nshort\r\n").kind !=
          PubSubFrame::Kind::kMessage);
    CHECK(decodePubSubFrame(">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n").kind !=
          PubSubFrame::Kind::kSubscribed);
  }
}

TEST_CASE("keyspace events: CONFIG GET notify-keyspace-events replies") {
  using Status = NotifyConfigReply::Status;
  SECTION("RESP3 map") {
    const auto r = parseNotifyConfigReply("%1\r\n$22\r\nnotify-keyspace-events\r\n$3\r\nAKE\r\n");
    CHECK(r.status == Status::kValue);
    CHECK(r.value == "AKE");
  }
  SECTION("RESP2 array, empty value (the default: off)") {
    const auto r = parseNotifyConfigReply("*2\r\n$22\r\nnotify-keyspace-events\r\n$0\r\n\r\n");
    CHECK(r.status == Status::kValue);
    CHECK(r.value.empty());
  }
  SECTION("refused: ACL or a renamed command") {
    const auto r = parseNotifyConfigReply(
        "-NOPERM this user has no permissions to run the 'config|get' command\r\n");
    CHECK(r.status == Status::kRefused);
    CHECK(r.error.starts_with("NOPERM"));
    CHECK(parseNotifyConfigReply("-ERR unknown command 'CONFIG'\r\n").status == Status::kRefused);
  }
  SECTION("no such parameter, or not a config reply") {
    CHECK(parseNotifyConfigReply("%0\r\n").status == Status::kMissing);
    CHECK(parseNotifyConfigReply("*0\r\n").status == Status::kMissing);
    CHECK(parseNotifyConfigReply("+OK\r\n").status == Status::kMissing);
    CHECK(parseNotifyConfigReply("").status == Status::kMissing);
  }
}

TEST_CASE("keyspace events: events are attributed to the registry pattern of their key") {
  ServerContext context;
  asio::io_context io;
  KeyspaceEvents events(io, context);

  // Without a registry every key is unregistered.
  events.count(KeyEvent::kEvicted, "evict:1");
  CHECK(value(context.patternEvictions, kUnregisteredPattern) == 1);

  events.setRegistry(compile(kRegistry));
  const auto evictId = context.patternNames.intern("evict:<id>");
  const auto keepId = context.patternNames.intern("keep:<id>");
  REQUIRE(evictId != kUnregisteredPattern);
  REQUIRE(keepId != evictId);

  events.count(KeyEvent::kEvicted, "evict:1");
  events.count(KeyEvent::kEvicted, "evict:2");
  events.count(KeyEvent::kExpired, "evict:3");
  events.count(KeyEvent::kEvicted, "keep:9");
  events.count(KeyEvent::kEvicted, "nomatch:1");
  events.count(KeyEvent::kExpired, "chan:1");  // only a channel pattern matches: no key pattern
  events.count(KeyEvent::kNone, "evict:4");
  CHECK(value(context.patternEvictions, evictId) == 2);
  CHECK(value(context.patternExpirations, evictId) == 1);
  CHECK(value(context.patternEvictions, keepId) == 1);
  CHECK(value(context.patternExpirations, keepId) == 0);
  CHECK(value(context.patternEvictions, kUnregisteredPattern) == 2);
  CHECK(value(context.patternExpirations, kUnregisteredPattern) == 1);

  SECTION("a reload that drops a pattern keeps its id and counts its keys as unregistered") {
    events.setRegistry(compile(R"(version: 1
patterns:
  - pattern: "keep:<id>"
    owner: t
    purpose: t
    authority: true
)"));
    events.count(KeyEvent::kEvicted, "evict:5");
    events.count(KeyEvent::kEvicted, "keep:5");
    CHECK(value(context.patternEvictions, evictId) == 2);
    CHECK(value(context.patternEvictions, keepId) == 2);
    CHECK(value(context.patternEvictions, kUnregisteredPattern) == 3);
  }

  SECTION("the metric families") {
    {
      std::lock_guard lock(context.keyspaceMutex);
      context.keyspaceNotifications["10.0.0.1:6379"] = true;
      context.keyspaceNotifications["10.0.0.2:6379"] = false;
    }
    std::vector<prometheus::MetricFamily> out;
    appendKeyspaceFamilies(context, out);
    REQUIRE(out.size() == 3);
    CHECK(out[0].name == "keygate_pattern_evictions_total");
    CHECK(out[1].name == "keygate_pattern_expirations_total");
    CHECK(out[2].name == "keygate_keyspace_notifications_enabled");
    auto sample = [](const prometheus::MetricFamily& f, const std::string& label) {
      for (const auto& m : f.metric) {
        if (m.label.size() == 1 && m.label[0].value == label)
          return f.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
      }
      return -1.0;
    };
    CHECK(out[0].metric.size() == context.patternNames.count());
    CHECK(sample(out[0], "evict:<id>") == 2);
    CHECK(sample(out[0], "keep:<id>") == 1);
    CHECK(sample(out[0], "(unregistered)") == 2);
    CHECK(sample(out[1], "evict:<id>") == 1);
    CHECK(sample(out[1], "keep:<id>") == 0);
    CHECK(sample(out[2], "10.0.0.1:6379") == 1);
    CHECK(sample(out[2], "10.0.0.2:6379") == 0);
    CHECK(out[2].metric.size() == 2);
  }
}

TEST_CASE("keyspace events: cluster: one subscription per master, following the slot map") {
  ServerContext context;
  context.config.upstream.mode = config::UpstreamMode::kCluster;
  asio::io_context io;
  KeyspaceEvents events(io, context);
  events.start();  // cluster: nothing before a slot map
  CHECK(events.nodes().empty());

  auto slots = [](std::initializer_list<std::pair<const char*, int>> masters) {
    // CLUSTER SLOTS: one range per master.
    std::string frame = "*" + std::to_string(masters.size()) + "\r\n";
    int start = 0;
    const int per = kClusterSlots / static_cast<int>(masters.size());
    std::size_t i = 0;
    for (const auto& [host, port] : masters) {
      const int end = ++i == masters.size() ? kClusterSlots - 1 : start + per - 1;
      frame += "*3\r\n:" + std::to_string(start) + "\r\n:" + std::to_string(end) + "\r\n";
      frame += "*2\r\n";
      resp::appendBulk(frame, host);
      frame += ":" + std::to_string(port) + "\r\n";
      start = end + 1;
    }
    std::string error;
    auto map = SlotMap::fromClusterSlots(frame, "127.0.0.1", &error);
    INFO(error);
    REQUIRE(map);
    return std::make_shared<const SlotMap>(std::move(*map));
  };
  // Ports nobody listens on: the subscriptions only try to connect (the io_context never runs).
  events.onSlotMap(slots({{"127.0.0.1", 1}, {"127.0.0.1", 2}}));
  CHECK(events.nodes() == std::vector<std::string>{"127.0.0.1:1", "127.0.0.1:2"});
  {
    std::lock_guard lock(context.keyspaceMutex);
    context.keyspaceNotifications["127.0.0.1:1"] = true;
  }
  events.onSlotMap(slots({{"127.0.0.1", 2}, {"127.0.0.1", 3}}));
  CHECK(events.nodes() == std::vector<std::string>{"127.0.0.1:2", "127.0.0.1:3"});
  {
    std::lock_guard lock(context.keyspaceMutex);
    CHECK_FALSE(context.keyspaceNotifications.contains("127.0.0.1:1"));  // no longer a master
  }
  events.stop();
  CHECK(events.nodes().empty());
  events.onSlotMap(slots({{"127.0.0.1", 4}}));  // after stop: nothing
  CHECK(events.nodes().empty());
}
