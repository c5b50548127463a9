#include "proxy/audit_command.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <ostream>
#include <sstream>
#include <thread>

#include "config/values.hpp"
#include "policies/key_hash.hpp"
#include "policies/registry_policy.hpp"
#include "proxy/registry_watcher.hpp"
#include "proxy/resp/reply_reader.hpp"
#include "proxy/resp/reply_scanner.hpp"
#include "proxy/resp/reply_writer.hpp"
#include "proxy/sketch_report.hpp"
#include "proxy/slot_map.hpp"
#include "proxy/text_format.hpp"

namespace keygate::proxy {

namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kMaxRate = 10'000'000;
constexpr std::uint64_t kMaxCount = 100'000;
constexpr std::uint64_t kMaxListed = 10'000;
constexpr auto kProgressEvery = 10s;

constexpr std::array<std::string_view, 15> kFlags = {
    "--cluster",          "--upstream", "--registry",      "--rate",    "--count",
    "--sample-memory",    "--top",      "--samples",       "--json",    "--json-file",
    "--fail-on-findings", "--username", "--password-file", "--timeout", "--help"};

std::string flagHint(std::string_view flag) {
  const auto close = config::closestMatch(flag, kFlags);
  return close ? " (did you mean " + std::string(*close) + "?)" : std::string();
}

// ---------------------------------------------------------------------------------------------
// Formatting

std::string fixed(double v, int decimals) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// A key for a terminal: control bytes, bytes outside ASCII and '\' escaped, at most ~200 bytes.
std::string printable(std::string_view key) {
  constexpr std::size_t kMax = 200;
  std::string out;
  for (std::size_t i = 0; i < key.size(); ++i) {
    if (out.size() >= kMax) {
      out += "...(" + std::to_string(key.size()) + " bytes)";
      break;
    }
    const auto c = static_cast<unsigned char>(key[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

std::string ttlText(std::int64_t pttl) {
  if (pttl < 0) return "no TTL";
  if (pttl >= 86'400'000) return fixed(static_cast<double>(pttl) / 86'400'000, 1) + "d";
  if (pttl >= 3'600'000) return fixed(static_cast<double>(pttl) / 3'600'000, 1) + "h";
  if (pttl >= 60'000) return fixed(static_cast<double>(pttl) / 60'000, 1) + "m";
  return fixed(static_cast<double>(pttl) / 1000, 1) + "s";
}

const std::string& patternName(const policies::CompiledRegistry& registry, int index) {
  return registry.rules(static_cast<std::size_t>(index)).entry->pattern;
}

std::string jsonPattern(const policies::CompiledRegistry& registry, int index) {
  return index < 0 ? "null" : jsonString(patternName(registry, index));
}

std::string padLeft(std::string s, std::size_t width) {
  if (s.size() < width) s.insert(0, width - s.size(), ' ');
  return s;
}

// ---------------------------------------------------------------------------------------------
// Replies

bool isError(const std::string& frame) {
  return !frame.empty() && (frame[0] == '-' || frame[0] == '!');
}

std::string errorText(const std::string& frame) {
  resp::ReplyReader reader(frame);
  const auto e = reader.next();
  return e ? std::string(e->text) : frame;
}

// SCAN's reply: [cursor, [key, ...]].
bool parseScanReply(const std::string& frame, std::string& cursor, std::vector<std::string>& keys,
                    std::string& error) {
  keys.clear();
  if (isError(frame)) {
    error = "refused: " + errorText(frame);
    return false;
  }
  resp::ReplyReader reader(frame);
  const auto top = reader.next();
  const auto next = reader.next();
  const auto list = reader.next();
  if (!top || top->type != '*' || top->integer != 2 || !next ||
      (next->type != '$' && next->type != '+') || next->isNull || !list || list->type != '*' ||
      list->isNull) {
    error = "unexpected reply (not [cursor, [keys]])";
    return false;
  }
  cursor = std::string(next->text);
  keys.reserve(static_cast<std::size_t>(list->integer));
  for (std::int64_t i = 0; i < list->integer; ++i) {
    const auto key = reader.next();
    if (!key || (key->type != '$' && key->type != '+') || key->isNull) {
      error = "unexpected element in the key list";
      return false;
    }
    keys.emplace_back(key->text);
  }
  if (cursor.empty() ||
      !std::all_of(cursor.begin(), cursor.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    error = "cursor is not a number";
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Sockets

class SocketConnection final : public AuditConnection {
 public:
  SocketConnection(std::string address, std::chrono::milliseconds timeout)
      : address_(std::move(address)), timeout_(timeout), scanner_(resp::Limits{}) {}
  ~SocketConnection() override {
    if (fd_ >= 0) ::close(fd_);
  }
  SocketConnection(const SocketConnection&) = delete;
  SocketConnection& operator=(const SocketConnection&) = delete;

  // Resolves `host` (names included) and connects to the first address that accepts.
  bool open(const std::string& host, std::uint16_t port, std::string& error) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
    if (rc != 0) {
      error = "cannot resolve '" + host + "': " + ::gai_strerror(rc);
      return false;
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, &::freeaddrinfo);
    error = "no address";
    for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
      const int fd =
          ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) {
        error = std::strerror(errno);
        continue;
      }
      if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
        error = std::strerror(errno);
        ::close(fd);
        continue;
      }
      pollfd p{fd, POLLOUT, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(timeout_.count()));
      int soError = 0;
      socklen_t len = sizeof soError;
      if (ready <= 0) {
        error = ready == 0 ? "connect timed out after " + std::to_string(timeout_.count()) + "ms"
                           : std::strerror(errno);
        ::close(fd);
        continue;
      }
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len) != 0 || soError != 0) {
        error = std::strerror(soError != 0 ? soError : errno);
        ::close(fd);
        continue;
      }
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fd_ = fd;
      return true;
    }
    error = "cannot connect to Redis at " + address_ + ": " + error;
    return false;
  }

  bool exchange(const std::string& requests, std::size_t replies, std::vector<std::string>& frames,
                std::string& error) override {
    frames.clear();
    std::size_t sent = 0;
    char chunk[64 * 1024];
    while (frames.size() < replies || sent < requests.size()) {
      pollfd p{fd_, static_cast<short>(POLLIN | (sent < requests.size() ? POLLOUT : 0)), 0};
      // The timeout is for silence: any progress restarts it.
      const int ready = ::poll(&p, 1, static_cast<int>(timeout_.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) {
        error = ready == 0 ? "Redis at " + address_ + " did not answer within " +
                                 std::to_string(timeout_.count()) + "ms"
                           : "poll: " + std::string(std::strerror(errno));
        return false;
      }
      if ((p.revents & POLLOUT) != 0 && sent < requests.size()) {
        const ssize_t n = ::send(fd_, requests.data() + sent, requests.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
          sent += static_cast<std::size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          error = "write to Redis at " + address_ + ": " + std::strerror(errno);
          return false;
        }
      }
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
        if (n == 0) {
          error = "Redis at " + address_ + " closed the connection";
          return false;
        }
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
          error = "read from Redis at " + address_ + ": " + std::strerror(errno);
          return false;
        }
        buffer_.append(chunk, static_cast<std::size_t>(n));
        std::size_t pos = 0;
        while (frames.size() < replies) {
          const auto r = scanner_.scan(std::string_view(buffer_).substr(pos));
          if (r.status == resp::ScanStatus::kIncomplete) break;
          if (r.status == resp::ScanStatus::kError) {
            error = "bad reply from Redis at " + address_ + ": " + std::string(r.error);
            return false;
          }
          frames.push_back(buffer_.substr(pos, r.consumed));
          pos += r.consumed;
        }
        buffer_.erase(0, pos);
      }
    }
    return true;
  }

 private:
  std::string address_;
  std::chrono::milliseconds timeout_;
  resp::ReplyScanner scanner_;
  std::string buffer_;  // bytes of replies not yet complete
  int fd_ = -1;
};

class SteadyClock final : public AuditClock {
 public:
  AuditTime now() override { return std::chrono::steady_clock::now(); }
  void sleepUntil(AuditTime when) override { std::this_thread::sleep_until(when); }
};

struct Credentials {
  std::string username;
  std::string password;  // empty: no AUTH
};

// Connects and authenticates; names the connection so that CLIENT LIST shows the audit.
std::unique_ptr<SocketConnection> connectNode(const config::HostPort& node,
                                              const Credentials& credentials,
                                              std::chrono::milliseconds timeout,
                                              std::string& error) {
  auto conn = std::make_unique<SocketConnection>(node.str(), timeout);
  if (!conn->open(node.host, node.port, error)) return nullptr;
  std::string request;
  std::size_t replies = 1;
  if (!credentials.password.empty()) {
    if (credentials.username.empty()) {
      resp::appendCommand(request, {"AUTH", credentials.password});
    } else {
      resp::appendCommand(request, {"AUTH", credentials.username, credentials.password});
    }
    ++replies;
  }
  resp::appendCommand(request, {"CLIENT", "SETNAME", "keygate-audit"});
  std::vector<std::string> frames;
  if (!conn->exchange(request, replies, frames, error)) return nullptr;
  if (!credentials.password.empty() && isError(frames[0])) {
    error = "AUTH refused by Redis at " + node.str() + ": " + errorText(frames[0]);
    return nullptr;
  }
  // CLIENT SETNAME may be refused by an ACL: the audit does not need it.
  return conn;
}

// The masters of a cluster, from the first seed that answers CLUSTER SLOTS.
bool discoverMasters(const std::vector<config::HostPort>& seeds, const Credentials& credentials,
                     std::chrono::milliseconds timeout, std::vector<config::HostPort>& masters,
                     std::size_t& uncovered, std::string& error) {
  std::string last;
  for (const auto& seed : seeds) {
    std::string why;
    auto conn = connectNode(seed, credentials, timeout, why);
    if (!conn) {
      last = why;
      continue;
    }
    std::string request;
    resp::appendCommand(request, {"CLUSTER", "SLOTS"});
    std::vector<std::string> frames;
    if (!conn->exchange(request, 1, frames, why)) {
      last = why;
      continue;
    }
    if (isError(frames[0])) {
      last = "CLUSTER SLOTS refused by " + seed.str() + ": " + errorText(frames[0]);
      continue;
    }
    auto map = SlotMap::fromClusterSlots(frames[0], seed.host, &why);
    if (!map) {
      last = "CLUSTER SLOTS from " + seed.str() + ": " + why;
      continue;
    }
    if (map->masters().empty()) {
      last = seed.str() + " reports no master serving any slot";
      continue;
    }
    masters.clear();
    for (const auto index : map->mastersBySlot()) {
      const auto& m = map->masters()[index];
      masters.push_back(config::HostPort{m.host, m.port});
    }
    uncovered = map->uncoveredSlots();
    return true;
  }
  error = "no cluster seed answered CLUSTER SLOTS; last error: " + last;
  return false;
}

bool readPasswordFile(const std::string& path, std::string& password, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read --password-file " + path + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  password = text.str();
  // One line: a trailing newline (an editor's, or `echo`'s) is not part of the password.
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) {
    password.pop_back();
  }
  if (password.empty()) {
    error = "--password-file " + path + " is empty";
    return false;
  }
  if (password.find('\n') != std::string::npos) {
    error = "--password-file " + path + " has more than one line; put only the password in it";
    return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Command line

std::string auditUsage() {
  return "usage: keygate audit (--upstream HOST:PORT | --cluster HOST:PORT[,HOST:PORT...])\n"
         "                     --registry FILE [--rate KEYS_PER_SEC] [--count N]\n"
         "                     [--sample-memory N] [--top N] [--samples N]\n"
         "                     [--json] [--json-file FILE] [--fail-on-findings]\n"
         "                     [--username NAME] [--password-file FILE] [--timeout DURATION]\n"
         "\n"
         "Walks every master with SCAN (never KEYS) at most --rate keys per second (default\n"
         "1000; --count is the SCAN COUNT, default 100) and reports, against the registry: keys\n"
         "per pattern, keys without a TTL on TTL-bound patterns, orphan keys that match no\n"
         "pattern, and the biggest keys (MEMORY USAGE of every Nth key, --sample-memory N,\n"
         "default 1 = every key, 0 = none). --json prints JSON instead of the table;\n"
         "--json-file FILE writes it to FILE as well as the table to stdout. Exit status: 0 the\n"
         "audit ran, 1 findings with --fail-on-findings, 2 usage, registry or connection\n"
         "error. docs/audit.md.\n";
}

AuditArgs parseAuditArgs(std::span<const std::string_view> args) {
  AuditArgs result;
  AuditOptions& o = result.options;
  auto fail = [&](std::string message) {
    if (result.error.empty()) result.error = std::move(message);
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view flag = args[i];
    std::optional<std::string_view> inline_;
    if (flag.starts_with("--")) {
      if (const auto eq = flag.find('='); eq != std::string_view::npos) {
        inline_ = flag.substr(eq + 1);
        flag = flag.substr(0, eq);
      }
    }
    auto value = [&]() -> std::optional<std::string_view> {
      if (inline_) return inline_;
      if (i + 1 < args.size()) return args[++i];
      fail(std::string(flag) + " needs a value");
      return std::nullopt;
    };
    auto number = [&](std::uint64_t& out, std::uint64_t min, std::uint64_t max) {
      const auto v = value();
      if (!v) return;
      const auto parsed = config::parseUnsignedIn(*v, min, max);
      if (!parsed) {
        fail(std::string(flag) + " " + std::string(*v) + ": " + parsed.error);
        return;
      }
      out = *parsed.value;
    };
    auto boolean = [&](bool& out) {
      if (inline_) {
        fail(std::string(flag) + " takes no value");
        return;
      }
      out = true;
    };
    if (flag == "--help" || flag == "-h") {
      o.help = true;
    } else if (flag == "--upstream") {
      if (const auto v = value()) {
        const auto parsed = config::parseAddress(*v);
        if (!parsed) {
          fail("--upstream " + std::string(*v) + ": " + parsed.error);
        } else {
          o.upstream = *parsed.value;
        }
      }
    } else if (flag == "--cluster") {
      if (const auto v = value()) {
        std::string_view list = *v;
        while (true) {
          const auto comma = list.find(',');
          const std::string_view item = list.substr(0, comma);
          const auto parsed = config::parseAddress(item);
          if (!parsed) {
            fail("--cluster " + std::string(item) + ": " + parsed.error);
            break;
          }
          o.seeds.push_back(*parsed.value);
          if (comma == std::string_view::npos) break;
          list.remove_prefix(comma + 1);
        }
      }
    } else if (flag == "--registry") {
      if (const auto v = value()) o.registryPath = std::string(*v);
    } else if (flag == "--rate") {
      number(o.rate, 1, kMaxRate);
    } else if (flag == "--count") {
      number(o.count, 1, kMaxCount);
    } else if (flag == "--sample-memory") {
      number(o.sampleMemory, 0, UINT32_MAX);
    } else if (flag == "--top") {
      number(o.top, 0, kMaxListed);
    } else if (flag == "--samples") {
      number(o.samples, 0, kMaxListed);
    } else if (flag == "--json") {
      boolean(o.json);
    } else if (flag == "--json-file") {
      if (const auto v = value()) o.jsonFile = std::string(*v);
    } else if (flag == "--fail-on-findings") {
      boolean(o.failOnFindings);
    } else if (flag == "--username") {
      if (const auto v = value()) o.username = std::string(*v);
    } else if (flag == "--password-file") {
      if (const auto v = value()) o.passwordFile = std::string(*v);
    } else if (flag == "--timeout") {
      if (const auto v = value()) {
        const auto parsed = config::parseDurationIn(*v, 1ms, std::chrono::minutes(10));
        if (!parsed) {
          fail("--timeout " + std::string(*v) + ": " + parsed.error);
        } else {
          o.timeout = *parsed.value;
        }
      }
    } else {
      fail("unknown argument '" + std::string(args[i]) + "'" + flagHint(flag));
    }
  }
  if (o.help || !result.error.empty()) return result;
  if (o.upstream && !o.seeds.empty()) {
    fail("give either --upstream (one Redis) or --cluster (a Redis Cluster), not both");
  } else if (!o.upstream && o.seeds.empty()) {
    fail(
        "say what to audit: --upstream HOST:PORT (one Redis) or --cluster HOST:PORT,... "
        "(every master of a Redis Cluster)");
  } else if (o.registryPath.empty()) {
    fail("--registry FILE is required: the audit holds the keys against it");
  } else if (o.count > o.rate) {
    fail("--count " + std::to_string(o.count) + " is above --rate " + std::to_string(o.rate) +
         ": one SCAN would already return more keys than a second allows; lower --count");
  } else if (!o.username.empty() && o.passwordFile.empty()) {
    fail("--username needs --password-file (AUTH takes both)");
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// ScanPacer

namespace {

AuditTime::duration spacingFor(std::uint64_t keys, std::uint64_t rate) {
  const std::uint64_t ns = (keys * 1'000'000'000ull + rate - 1) / rate;
  return std::chrono::duration_cast<AuditTime::duration>(std::chrono::nanoseconds(ns));
}

}  // namespace

ScanPacer::ScanPacer(std::uint64_t rate, std::uint64_t count)
    : rate_(std::max<std::uint64_t>(rate, 1)), reservation_(std::max<std::uint64_t>(count, 1)) {}

AuditTime ScanPacer::nextSend(AuditTime now) const {
  if (!lastReceived_) return now;
  AuditTime at = std::max(now, *lastReceived_ + spacingFor(reservation_, rate_));
  // A batch larger than the rate can never fit a window: it waits for an empty one.
  const std::uint64_t need = std::min(reservation_, rate_);
  std::uint64_t inWindow = windowKeys_;
  for (const Batch& b : window_) {
    if (inWindow + need <= rate_) break;
    inWindow -= b.keys;
    // Out of the window (t - 1s, t] once t >= received + 1s.
    at = std::max(at, b.received + 1s);
  }
  return at;
}

void ScanPacer::record(AuditTime received, std::uint64_t keys) {
  lastReceived_ = received;
  reservation_ = std::max(reservation_, keys);
  window_.push_back(Batch{received, keys});
  windowKeys_ += keys;
  while (!window_.empty() && window_.front().received + 1s <= received) {
    windowKeys_ -= window_.front().keys;
    window_.pop_front();
  }
  peak_ = std::max(peak_, windowKeys_);
}

// ---------------------------------------------------------------------------------------------
// Classification and tally

KeyClass classifyKey(const policies::CompiledRegistry& registry, std::string_view key,
                     std::int64_t pttl) {
  KeyClass c;
  int p = registry.keys().match(key);
  // keygate refuses a key shaped like a channel pattern (KEYUNKNOWN): such a key is an orphan.
  if (p >= 0 && registry.rules(static_cast<std::size_t>(p)).channel) p = -1;
  c.pattern = p;
  if (p >= 0) {
    const auto& rules = registry.rules(static_cast<std::size_t>(p));
    c.hashed = rules.entry->containsPII || rules.entry->containsCommerciallySensitiveData;
    c.ttlAboveMax =
        rules.ttlBound && pttl >= 0 && rules.ttlMax.count() > 0 && pttl > rules.ttlMax.count();
    c.finding = rules.ttlBound && pttl == -1 ? KeyFinding::kNoTtl : KeyFinding::kOk;
  }
  if (pttl == -2) c.finding = KeyFinding::kVanished;
  return c;
}

std::uint64_t AuditPatternStats::estimatedBytes() const {
  if (measured == 0) return 0;
  const long double perKey =
      static_cast<long double>(measuredBytes) / static_cast<long double>(measured);
  return static_cast<std::uint64_t>(perKey * static_cast<long double>(keys) + 0.5L);
}

double AuditReport::keysPerSecond() const {
  return elapsedSeconds > 0 ? static_cast<double>(keys) / elapsedSeconds : 0;
}

AuditTally::AuditTally(const policies::CompiledRegistry& registry, AuditLimits limits)
    : registry_(registry), limits_(limits) {
  report_.patterns.resize(registry.patternCount());
  for (std::size_t i = 0; i < registry.patternCount(); ++i) {
    report_.patterns[i].pattern = static_cast<int>(i);
  }
}

namespace {

bool smallerFirst(const AuditKeySample& a, const AuditKeySample& b) {
  // A min-heap on bytes: the root is the smallest of the biggest.
  return a.bytes != b.bytes ? a.bytes > b.bytes : a.key < b.key;
}

}  // namespace

void AuditTally::add(std::string_view key, std::int64_t pttl, std::optional<std::uint64_t> bytes) {
  ++report_.keys;
  const KeyClass c = classifyKey(registry_, key, pttl);
  if (c.finding == KeyFinding::kVanished) {
    ++report_.vanished;
    return;
  }
  AuditPatternStats& stats =
      c.pattern >= 0 ? report_.patterns[static_cast<std::size_t>(c.pattern)] : report_.orphanStats;
  ++stats.keys;
  if (pttl == -1) ++stats.withoutTtl;
  if (c.ttlAboveMax) ++stats.ttlAboveMax;
  auto shown = [&] { return c.hashed ? policies::stableKeyHash(key) : std::string(key); };
  if (bytes) {
    ++stats.measured;
    stats.measuredBytes += *bytes;
    ++report_.measured;
    if (limits_.top > 0 &&
        (biggestHeap_.size() < limits_.top || *bytes > biggestHeap_.front().bytes)) {
      AuditKeySample s;
      s.key = shown();
      s.hashed = c.hashed;
      s.pattern = c.pattern;
      s.pttl = pttl;
      s.bytes = *bytes;
      if (biggestHeap_.size() == limits_.top) {
        std::pop_heap(biggestHeap_.begin(), biggestHeap_.end(), smallerFirst);
        biggestHeap_.back() = std::move(s);
      } else {
        biggestHeap_.push_back(std::move(s));
      }
      std::push_heap(biggestHeap_.begin(), biggestHeap_.end(), smallerFirst);
    }
  }
  if (c.finding == KeyFinding::kNoTtl) {
    ++stats.noTtl;
    ++report_.noTtl;
    if (report_.noTtlSamples.size() < limits_.samples) {
      AuditKeySample s;
      s.key = shown();
      s.hashed = c.hashed;
      s.pattern = c.pattern;
      s.pttl = pttl;
      report_.noTtlSamples.push_back(std::move(s));
    }
  }
  if (c.pattern >= 0) {
    ++report_.registered;
    return;
  }
  ++report_.orphans;
  const int rewrite = registry_.rewriteFrom().match(key);
  if (rewrite >= 0) ++report_.legacyOrphans;
  if (report_.orphanSamples.size() < limits_.samples) {
    AuditKeySample s;
    s.key = std::string(key);
    s.pttl = pttl;
    if (rewrite >= 0) {
      s.rewriteTo =
          static_cast<int>(registry_.rewrites()[static_cast<std::size_t>(rewrite)].target);
    } else {
      s.closest = registry_.keys().closest(key);
      // closest() may name a channel pattern: it is no home for a key.
      if (s.closest >= 0 && registry_.rules(static_cast<std::size_t>(s.closest)).channel) {
        s.closest = -1;
      }
    }
    report_.orphanSamples.push_back(std::move(s));
  }
  std::string shape = registry_.keys().shapeOf(key);
  if (auto it = shapes_.find(shape); it != shapes_.end()) {
    ++it->second;
  } else if (shapes_.size() < limits_.trackedShapes) {
    shapes_.emplace(std::move(shape), 1);
  }
}

AuditReport AuditTally::report() const {
  AuditReport out = report_;
  out.patterns.clear();
  for (const auto& p : report_.patterns) {
    if (!registry_.rules(static_cast<std::size_t>(p.pattern)).channel) out.patterns.push_back(p);
  }
  out.biggest = biggestHeap_;
  std::sort(out.biggest.begin(), out.biggest.end(), smallerFirst);
  out.orphanShapes.assign(shapes_.begin(), shapes_.end());
  std::sort(out.orphanShapes.begin(), out.orphanShapes.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (out.orphanShapes.size() > limits_.shapes) out.orphanShapes.resize(limits_.shapes);
  std::uint64_t listed = 0;
  for (const auto& s : out.orphanShapes)
    listed += s.second;
  out.orphanShapesOther = out.orphans - listed;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Output

void writeAuditJson(const AuditReport& r, const policies::CompiledRegistry& registry,
                    std::ostream& out) {
  const auto n = [](std::uint64_t v) { return std::to_string(v); };
  std::string j = "{\"version\":1";
  j += ",\"registry\":{\"path\":" + jsonString(r.registryPath) +
       ",\"hash\":" + jsonString(r.registryHash) + "}";
  j += ",\"mode\":" + std::string(r.cluster ? "\"cluster\"" : "\"standalone\"");
  j += ",\"nodes\":[";
  std::uint64_t scanCalls = 0;
  for (std::size_t i = 0; i < r.nodes.size(); ++i) {
    const auto& node = r.nodes[i];
    scanCalls += node.scanCalls;
    j += (i ? "," : "") + std::string("{\"address\":") + jsonString(node.address) +
         ",\"keys\":" + n(node.keys) + ",\"scanCalls\":" + n(node.scanCalls) + "}";
  }
  j += "]";
  j += ",\"options\":{\"rate\":" + n(r.rate) + ",\"count\":" + n(r.count) +
       ",\"sampleMemory\":" + n(r.sampleMemory) + "}";
  j += ",\"elapsedSeconds\":" + fixed(r.elapsedSeconds, 3);
  j += ",\"keysPerSecond\":" + fixed(r.keysPerSecond(), 1);
  j += ",\"peakKeysInOneSecond\":" + n(r.peakKeysInOneSecond);
  j += ",\"scanCalls\":" + n(scanCalls);
  j += ",\"totals\":{\"keys\":" + n(r.keys) + ",\"registered\":" + n(r.registered) +
       ",\"noTtl\":" + n(r.noTtl) + ",\"orphans\":" + n(r.orphans) +
       ",\"vanished\":" + n(r.vanished) + ",\"measured\":" + n(r.measured) +
       ",\"findings\":" + n(r.findings()) + "}";
  j += ",\"memoryError\":" + (r.memoryError.empty() ? "null" : jsonString(r.memoryError));
  j += ",\"patterns\":[";
  for (std::size_t i = 0; i < r.patterns.size(); ++i) {
    const auto& p = r.patterns[i];
    const auto& rules = registry.rules(static_cast<std::size_t>(p.pattern));
    const bool hashed = rules.entry->containsPII || rules.entry->containsCommerciallySensitiveData;
    j += (i ? "," : "") + std::string("{\"pattern\":") + jsonString(rules.entry->pattern) +
         ",\"owner\":" + jsonString(rules.entry->owner) +
         ",\"ttlBound\":" + (rules.ttlBound ? "true" : "false") +
         ",\"ttlMaxMs\":" + (rules.ttlBound ? std::to_string(rules.ttlMax.count()) : "null") +
         ",\"hashed\":" + (hashed ? "true" : "false") + ",\"keys\":" + n(p.keys) +
         ",\"withoutTtl\":" + n(p.withoutTtl) + ",\"noTtl\":" + n(p.noTtl) +
         ",\"ttlAboveMax\":" + n(p.ttlAboveMax) + ",\"measured\":" + n(p.measured) +
         ",\"measuredBytes\":" + n(p.measuredBytes) +
         ",\"estimatedBytes\":" + n(p.estimatedBytes()) + "}";
  }
  j += "]";
  j += ",\"noTtl\":{\"count\":" + n(r.noTtl) + ",\"samples\":[";
  for (std::size_t i = 0; i < r.noTtlSamples.size(); ++i) {
    const auto& s = r.noTtlSamples[i];
    j += (i ? "," : "") + std::string("{\"key\":") + jsonString(s.key) +
         ",\"hashed\":" + (s.hashed ? "true" : "false") +
         ",\"pattern\":" + jsonPattern(registry, s.pattern) + "}";
  }
  j += "]}";
  const auto& o = r.orphanStats;
  j += ",\"orphans\":{\"count\":" + n(r.orphans) + ",\"legacy\":" + n(r.legacyOrphans) +
       ",\"withoutTtl\":" + n(o.withoutTtl) + ",\"measured\":" + n(o.measured) +
       ",\"measuredBytes\":" + n(o.measuredBytes) + ",\"estimatedBytes\":" + n(o.estimatedBytes()) +
       ",\"samples\":[";
  for (std::size_t i = 0; i < r.orphanSamples.size(); ++i) {
    const auto& s = r.orphanSamples[i];
    j += (i ? "," : "") + std::string("{\"key\":") + jsonString(s.key) +
         ",\"pttlMs\":" + std::to_string(s.pttl) +
         ",\"closestPattern\":" + jsonPattern(registry, s.closest) +
         ",\"rewriteTo\":" + jsonPattern(registry, s.rewriteTo) + "}";
  }
  j += "],\"shapes\":[";
  for (std::size_t i = 0; i < r.orphanShapes.size(); ++i) {
    j += (i ? "," : "") + std::string("{\"shape\":") + jsonString(r.orphanShapes[i].first) +
         ",\"keys\":" + n(r.orphanShapes[i].second) + "}";
  }
  j += "],\"otherShapes\":" + n(r.orphanShapesOther) + "}";
  j += ",\"biggest\":[";
  for (std::size_t i = 0; i < r.biggest.size(); ++i) {
    const auto& s = r.biggest[i];
    j += (i ? "," : "") + std::string("{\"key\":") + jsonString(s.key) +
         ",\"hashed\":" + (s.hashed ? "true" : "false") +
         ",\"pattern\":" + jsonPattern(registry, s.pattern) + ",\"bytes\":" + n(s.bytes) +
         ",\"pttlMs\":" + std::to_string(s.pttl) + "}";
  }
  j += "]}\n";
  out << j;
}

void writeAuditTable(const AuditReport& r, const policies::CompiledRegistry& registry,
                     std::ostream& out) {
  std::uint64_t scanCalls = 0;
  for (const auto& node : r.nodes)
    scanCalls += node.scanCalls;
  out << "keygate audit of ";
  if (r.cluster) {
    out << "a Redis Cluster, " << r.nodes.size() << " master" << (r.nodes.size() == 1 ? "" : "s")
        << ":";
    for (const auto& node : r.nodes)
      out << " " << node.address << " (" << node.keys << " keys)";
    out << "\n";
  } else {
    out << (r.nodes.empty() ? std::string("?") : r.nodes.front().address) << "\n";
  }
  out << "registry " << r.registryPath << " (hash " << r.registryHash << ")\n";
  out << "scanned " << r.keys << " keys in " << fixed(r.elapsedSeconds, 2)
      << " s: " << fixed(r.keysPerSecond(), 0) << " keys/s, at most " << r.peakKeysInOneSecond
      << " in any one second (--rate " << r.rate << ", --count " << r.count << ", " << scanCalls
      << " SCAN calls)\n\n";

  constexpr std::size_t kNum = 10;
  out << padLeft("KEYS", kNum) << padLeft("NO TTL", kNum) << padLeft("TTL>MAX", kNum)
      << padLeft("MEASURED", kNum) << padLeft("EST. MEMORY", 13) << "  PATTERN\n";
  auto row = [&](const AuditPatternStats& p, bool ttlBound, const std::string& name) {
    out << padLeft(std::to_string(p.keys), kNum)
        << padLeft(ttlBound ? std::to_string(p.noTtl) : std::string("-"), kNum)
        << padLeft(ttlBound ? std::to_string(p.ttlAboveMax) : std::string("-"), kNum)
        << padLeft(std::to_string(p.measured), kNum)
        << padLeft(p.measured > 0 ? bytesText(static_cast<double>(p.estimatedBytes()))
                                  : std::string("-"),
                   13)
        << "  " << name << "\n";
  };
  for (const auto& p : r.patterns) {
    const auto& rules = registry.rules(static_cast<std::size_t>(p.pattern));
    row(p, rules.ttlBound, rules.entry->pattern);
  }
  row(r.orphanStats, false, "(orphans: match no pattern)");
  out << "(NO TTL and TTL>MAX: '-' for patterns without a TTL contract: authority keys without "
         "one, or ttl.exempt)\n";
  if (r.vanished > 0) {
    out << r.vanished << " key" << (r.vanished == 1 ? "" : "s")
        << " vanished between SCAN and PTTL (expired, deleted or moved): not counted above\n";
  }

  out << "\nkeys without a TTL on TTL-bound patterns: " << r.noTtl << "\n";
  for (const auto& s : r.noTtlSamples) {
    out << "  " << printable(s.key) << "  (" << patternName(registry, s.pattern) << ")\n";
  }
  if (r.noTtl > r.noTtlSamples.size()) {
    out << "  ... and " << r.noTtl - r.noTtlSamples.size() << " more\n";
  }

  out << "\norphan keys (match no pattern): " << r.orphans;
  if (r.legacyOrphans > 0) {
    out << ", " << r.legacyOrphans << " of a legacy shape the registry rewrites (written around "
        << "keygate)";
  }
  out << "\n";
  for (const auto& s : r.orphanSamples) {
    out << "  " << printable(s.key) << "  (" << ttlText(s.pttl);
    if (s.rewriteTo >= 0) {
      out << "; legacy shape keygate rewrites to " << patternName(registry, s.rewriteTo);
    } else if (s.closest >= 0) {
      out << "; closest pattern " << patternName(registry, s.closest);
    }
    out << ")\n";
  }
  if (r.orphans > r.orphanSamples.size()) {
    out << "  ... and " << r.orphans - r.orphanSamples.size() << " more\n";
  }
  if (!r.orphanShapes.empty()) {
    out << "  by shape:\n";
    for (const auto& [shape, keys] : r.orphanShapes)
      out << padLeft(std::to_string(keys), 12) << "  " << shape << "\n";
    if (r.orphanShapesOther > 0) {
      out << padLeft(std::to_string(r.orphanShapesOther), 12) << "  (other shapes)\n";
    }
  }

  out << "\nbiggest keys (MEMORY USAGE, ";
  if (r.sampleMemory == 0) {
    out << "not measured: --sample-memory 0)\n";
  } else {
    out << (r.sampleMemory == 1 ? std::string("every key")
                                : "every " + std::to_string(r.sampleMemory) + "th key")
        << " measured, " << r.measured << " in all)\n";
  }
  if (!r.memoryError.empty()) {
    out << "  MEMORY USAGE refused by Redis, measuring stopped: " << r.memoryError << "\n";
  }
  for (const auto& s : r.biggest) {
    out << padLeft(bytesText(static_cast<double>(s.bytes)), 12) << "  " << printable(s.key) << "  ("
        << (s.pattern >= 0 ? patternName(registry, s.pattern) : std::string("orphan")) << "; "
        << ttlText(s.pttl) << ")\n";
  }
  out << "\nfindings: " << r.findings() << " (" << r.noTtl << " without TTL, " << r.orphans
      << " orphan" << (r.orphans == 1 ? "" : "s") << ")";
  out << "; keys of containsPII / containsCommerciallySensitiveData patterns are shown as "
         "sha1: hashes\n";
}

// ---------------------------------------------------------------------------------------------
// The SCAN loop

bool scanNode(AuditConnection& conn, AuditClock& clock, ScanPacer& pacer,
              const AuditScanSettings& settings, AuditTally& tally, AuditNodeResult& node,
              std::string& error, const AuditProgress& progress) {
  const std::string count = std::to_string(settings.count);
  std::string cursor = "0";
  std::string request;
  std::vector<std::string> frames;
  std::vector<std::string> keys;
  std::vector<char> measure;
  do {
    clock.sleepUntil(pacer.nextSend(clock.now()));
    request.clear();
    resp::appendCommand(request, {"SCAN", cursor, "COUNT", count});
    ++node.scanCalls;
    if (!conn.exchange(request, 1, frames, error)) return false;
    const AuditTime received = clock.now();
    std::string why;
    if (!parseScanReply(frames[0], cursor, keys, why)) {
      error = "SCAN on " + node.address + ": " + why;
      return false;
    }
    pacer.record(received, keys.size());
    node.keys += keys.size();
    if (keys.empty()) continue;

    request.clear();
    measure.assign(keys.size(), 0);
    std::size_t replies = 0;
    const std::uint64_t seen = tally.keysSeen();
    for (std::size_t i = 0; i < keys.size(); ++i) {
      resp::appendCommand(request, {"PTTL", keys[i]});
      ++replies;
      if (settings.sampleMemory > 0 && !tally.memoryRefused() &&
          (seen + i) % settings.sampleMemory == 0) {
        resp::appendCommand(request, {"MEMORY", "USAGE", keys[i]});
        measure[i] = 1;
        ++replies;
      }
    }
    if (!conn.exchange(request, replies, frames, error)) return false;
    std::size_t f = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::string& ttlFrame = frames[f++];
      std::int64_t pttl = -2;
      if (isError(ttlFrame)) {
        const std::string text = errorText(ttlFrame);
        // The key's slot moved to another master between SCAN and PTTL (resharding).
        if (!text.starts_with("MOVED ") && !text.starts_with("ASK ")) {
          error = "PTTL refused by Redis at " + node.address + ": " + text;
          return false;
        }
      } else {
        resp::ReplyReader reader(ttlFrame);
        const auto e = reader.next();
        if (!e || e->type != ':') {
          error = "PTTL on " + node.address + ": unexpected reply";
          return false;
        }
        pttl = e->integer;
      }
      std::optional<std::uint64_t> bytes;
      if (measure[i] != 0) {
        const std::string& memFrame = frames[f++];
        if (isError(memFrame)) {
          if (!tally.memoryRefused()) tally.setMemoryError(errorText(memFrame));
        } else {
          resp::ReplyReader reader(memFrame);
          const auto e = reader.next();
          if (e && e->type == ':' && e->integer >= 0) {
            bytes = static_cast<std::uint64_t>(e->integer);
          }
          // nil: the key is gone; PTTL already said so or will be -2 next time.
        }
      }
      tally.add(keys[i], pttl, pttl == -2 ? std::nullopt : bytes);
    }
    if (progress) progress(node);
  } while (cursor != "0");
  return true;
}

// ---------------------------------------------------------------------------------------------

int runAuditCommand(std::span<const std::string_view> args, std::ostream& out, std::ostream& err) {
  const AuditArgs parsed = parseAuditArgs(args);
  if (!parsed.error.empty()) {
    err << "keygate audit: " << parsed.error << "\n" << auditUsage();
    return 2;
  }
  const AuditOptions& o = parsed.options;
  if (o.help) {
    out << auditUsage();
    return 0;
  }
  std::vector<config::ConfigError> errors;
  const auto registry = loadCompiledRegistry(o.registryPath, &errors);
  if (!registry) {
    for (const auto& e : errors)
      err << e.str() << "\n";
    err << "keygate audit: " << errors.size() << " registry error"
        << (errors.size() == 1 ? "" : "s") << " in " << o.registryPath << "; nothing was audited\n";
    return 2;
  }
  Credentials credentials;
  credentials.username = o.username;
  if (!o.passwordFile.empty()) {
    std::string why;
    if (!readPasswordFile(o.passwordFile, credentials.password, why)) {
      err << "keygate audit: " << why << "\n";
      return 2;
    }
  }

  std::vector<config::HostPort> nodes;
  if (o.upstream) {
    nodes.push_back(*o.upstream);
  } else {
    std::size_t uncovered = 0;
    std::string why;
    if (!discoverMasters(o.seeds, credentials, o.timeout, nodes, uncovered, why)) {
      err << "keygate audit: " << why << "\n";
      return 2;
    }
    if (uncovered > 0) {
      err << "keygate audit: warning: " << uncovered
          << " slots are served by no master; keys in them cannot be audited\n";
    }
  }

  AuditLimits limits;
  limits.samples = o.samples;
  limits.top = o.top;
  AuditTally tally(*registry, limits);
  // SCAN finishes the hash bucket it is in (and, while Redis rehashes, the matching buckets
  // of both tables), so a reply may carry a few keys more than COUNT. The pacer reserves that
  // headroom from the first SCAN on, so even the first oversized reply stays within --rate
  // (seen: 102 keys for COUNT 100, which without it pushed one second to 1,002 of 1,000).
  const std::uint64_t headroom = std::max<std::uint64_t>(16, o.count / 4);
  ScanPacer pacer(o.rate, std::min<std::uint64_t>(o.count + headroom, o.rate));
  SteadyClock clock;
  AuditScanSettings settings;
  settings.count = o.count;
  settings.sampleMemory = o.sampleMemory;
  std::vector<AuditNodeResult> results;
  const AuditTime started = clock.now();
  AuditTime nextProgress = started + kProgressEvery;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    AuditNodeResult node;
    node.address = nodes[i].str();
    std::string why;
    auto conn = connectNode(nodes[i], credentials, o.timeout, why);
    if (!conn) {
      err << "keygate audit: " << why << "\n";
      return 2;
    }
    const auto progress = [&](const AuditNodeResult& n) {
      const AuditTime now = clock.now();
      if (now < nextProgress) return;
      nextProgress = now + kProgressEvery;
      const double seconds = std::chrono::duration<double>(now - started).count();
      err << "keygate audit: " << tally.keysSeen() << " keys in " << fixed(seconds, 0) << " s ("
          << fixed(seconds > 0 ? static_cast<double>(tally.keysSeen()) / seconds : 0, 0)
          << " keys/s); node " << i + 1 << "/" << nodes.size() << " " << n.address << ": " << n.keys
          << " keys\n";
    };
    if (!scanNode(*conn, clock, pacer, settings, tally, node, why, progress)) {
      err << "keygate audit: " << why << "; the audit stopped after " << tally.keysSeen()
          << " keys\n";
      return 2;
    }
    results.push_back(std::move(node));
  }
  AuditReport report = tally.report();
  report.registryPath = o.registryPath;
  report.registryHash = registry->hash();
  report.cluster = !o.seeds.empty();
  report.nodes = std::move(results);
  report.rate = o.rate;
  report.count = o.count;
  report.sampleMemory = o.sampleMemory;
  report.elapsedSeconds = std::chrono::duration<double>(clock.now() - started).count();
  report.peakKeysInOneSecond = pacer.peakWindowKeys();

  if (!o.jsonFile.empty()) {
    std::ofstream file(o.jsonFile, std::ios::binary | std::ios::trunc);
    if (file) writeAuditJson(report, *registry, file);
    if (!file || !file.flush()) {
      err << "keygate audit: cannot write --json-file " << o.jsonFile << "\n";
      return 2;
    }
  }
  if (o.json) {
    writeAuditJson(report, *registry, out);
  } else {
    writeAuditTable(report, *registry, out);
  }
  out.flush();
  if (!report.memoryError.empty()) {
    err << "keygate audit: warning: MEMORY USAGE refused by Redis (" << report.memoryError
        << "); biggest keys are from the keys measured before\n";
  }
  return o.failOnFindings && report.findings() > 0 ? 1 : 0;
}

}  // namespace keygate::proxy
