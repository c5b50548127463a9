// hotkey_load: a hot-key GET load for bench/compare.sh MODE=hotkey (issue 8).
//
// N connections (default 50), one GET outstanding on each (pipeline 1). Each request picks its
// key at random: with probability --hot-share (0.9) one of --hot-keys (10) hot keys, otherwise
// one of --cold-keys (100,000) cold keys, uniformly within each set. Keys are --key-format with
// its one %d replaced by the key's index (hot keys 0..H-1, cold keys H..H+C-1). Every reply is
// checked: it must be the bulk string --preload wrote for that key (a wrong value, an error or
// any other reply counts as an error; a nil reply is counted apart, as `nil`).
//
// The run is bounded twice: it stops sending at --requests requests or after --seconds seconds,
// whichever comes first, then waits at most --timeout seconds for the replies in flight.
//
// --preload first writes every key (SET key value PX --px, pipelined on one connection) and
// checks each +OK; --preload-only stops there.
//
// One thread, epoll, plain non-blocking sockets, RESP2; standard library and Linux only, so it
// also builds without CMake: g++ -O2 -std=c++20 bench/hotkey_load.cpp -o hotkey_load
//
// Output (stdout, one line): `requests=... seconds=... ops_per_sec=... errors=... nil=...` and
// more fields (latency percentiles, this process's CPU per request, replies per epoll wake-up),
// or with --json one JSON object. Exit status: 0 every reply was the expected
// value, 3 the run finished but some were not (errors, nil, or replies still missing at the
// end), 1 a connection failed or closed, or the preload was refused, 2 bad usage.
//
//   hotkey_load --port 6379 --preload --requests 300000 --seconds 30 --json

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kReadChunk = 16 * 1024;
constexpr std::size_t kPreloadBatch = 1000;
constexpr std::uint64_t kMaxKeys = 100'000'000;
constexpr std::size_t kMaxValueSize = 1024 * 1024;
constexpr std::int64_t kMaxBulkLen = 512LL * 1024 * 1024;
constexpr int kMaxReplyDepth = 16;
// Latency histogram: 1 us buckets up to 100 ms; slower replies share the last bucket.
constexpr std::size_t kLatencyBuckets = 100'000;

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 50;
  std::uint64_t hotKeys = 10;
  double hotShare = 0.9;
  std::uint64_t coldKeys = 100'000;
  std::size_t valueSize = 64;
  std::string keyFormat = "cpq:{tenant-bench}:catalog:offering:o%d:catalog-v2026-01";
  std::uint64_t requests = 300'000;
  double seconds = 60;
  double timeout = 10;
  bool preload = false;
  bool preloadOnly = false;
  std::uint64_t px = 3'600'000;
  std::uint64_t seed = 1;
  bool json = false;
};

void usage(std::FILE* out) {
  std::fputs(
      "Usage: hotkey_load --port PORT [options]\n"
      "  --host HOST          [127.0.0.1]\n"
      "  --port PORT          Redis, or a proxy in front of it\n"
      "  --connections N      connections, one GET in flight on each [50]\n"
      "  --hot-keys N         hot keys [10]\n"
      "  --hot-share F        share of requests on the hot keys, 0..1 [0.9]\n"
      "  --cold-keys N        cold keys [100000]\n"
      "  --value-size BYTES   value size written by --preload and expected back [64]\n"
      "  --key-format FMT     key names, one %d for the index (%% for a literal %)\n"
      "                       [cpq:{tenant-bench}:catalog:offering:o%d:catalog-v2026-01]\n"
      "  --requests N         stop sending after N requests (1..10^10) [300000]\n"
      "  --seconds S          stop sending after S seconds (0 < S <= 3600) [60]\n"
      "  --timeout S          wait at most S seconds for connect, preload replies and the\n"
      "                       replies in flight at the end [10]\n"
      "  --preload            first SET every key (PX --px), pipelined on one connection\n"
      "  --preload-only       only that\n"
      "  --px MS              the PX of the preload's SETs; 0: none [3600000]\n"
      "  --seed N             random seed [1]\n"
      "  --json               one JSON object instead of a key=value line\n",
      out);
}

template <typename T>
bool parseNumber(std::string_view text, T& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

bool parseDouble(std::string_view text, double& out) {
  // std::from_chars for double needs GCC 11+, which we have; keep it locale-free.
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Key names: the format split around its one %d, with %% already turned into %.
struct KeyFormat {
  std::string prefix;
  std::string suffix;
};

std::optional<KeyFormat> parseKeyFormat(std::string_view format) {
  KeyFormat out;
  bool seen = false;
  for (std::size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c != '%') {
      (seen ? out.suffix : out.prefix) += c;
      continue;
    }
    if (i + 1 >= format.size()) return std::nullopt;
    const char next = format[++i];
    if (next == '%') {
      (seen ? out.suffix : out.prefix) += '%';
    } else if (next == 'd' && !seen) {
      seen = true;
    } else {
      return std::nullopt;
    }
  }
  if (!seen) return std::nullopt;
  return out;
}

std::optional<Options> parseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&](std::string_view& v) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "hotkey_load: %s needs a value\n", argv[i]);
        return false;
      }
      v = argv[++i];
      return true;
    };
    std::string_view v;
    bool ok = true;
    if (arg == "-h" || arg == "--help") {
      usage(stdout);
      std::exit(0);
    } else if (arg == "--preload") {
      o.preload = true;
    } else if (arg == "--preload-only") {
      o.preload = o.preloadOnly = true;
    } else if (arg == "--json") {
      o.json = true;
    } else if (!value(v)) {
      return std::nullopt;
    } else if (arg == "--host") {
      o.host = std::string(v);
    } else if (arg == "--port") {
      ok = parseNumber(v, o.port) && o.port > 0 && o.port < 65536;
    } else if (arg == "--connections") {
      ok = parseNumber(v, o.connections) && o.connections >= 1 && o.connections <= 10000;
    } else if (arg == "--hot-keys") {
      ok = parseNumber(v, o.hotKeys) && o.hotKeys >= 1;
    } else if (arg == "--hot-share") {
      ok = parseDouble(v, o.hotShare) && o.hotShare >= 0 && o.hotShare <= 1;
    } else if (arg == "--cold-keys") {
      ok = parseNumber(v, o.coldKeys);
    } else if (arg == "--value-size") {
      ok = parseNumber(v, o.valueSize) && o.valueSize >= 1 && o.valueSize <= kMaxValueSize;
    } else if (arg == "--key-format") {
      o.keyFormat = std::string(v);
      ok = parseKeyFormat(v).has_value();
    } else if (arg == "--requests") {
      ok = parseNumber(v, o.requests) && o.requests >= 1 && o.requests <= 10'000'000'000ULL;
    } else if (arg == "--seconds") {
      ok = parseDouble(v, o.seconds) && o.seconds > 0 && o.seconds <= 3600;
    } else if (arg == "--timeout") {
      ok = parseDouble(v, o.timeout) && o.timeout > 0 && o.timeout <= 3600;
    } else if (arg == "--px") {
      ok = parseNumber(v, o.px);
    } else if (arg == "--seed") {
      ok = parseNumber(v, o.seed);
    } else {
      std::fprintf(stderr, "hotkey_load: unknown option %s (see --help)\n", argv[i]);
      return std::nullopt;
    }
    if (!ok) {
      std::fprintf(stderr, "hotkey_load: bad value for %s: '%.*s' (see --help)\n", argv[i - 1],
                   static_cast<int>(v.size()), v.data());
      return std::nullopt;
    }
  }
  if (o.port == 0) {
    std::fputs("hotkey_load: --port is required (see --help)\n", stderr);
    return std::nullopt;
  }
  if (o.hotKeys + o.coldKeys > kMaxKeys) {
    std::fputs("hotkey_load: at most 100,000,000 keys in all\n", stderr);
    return std::nullopt;
  }
  if (o.coldKeys == 0 && o.hotShare < 1) {
    std::fputs("hotkey_load: --cold-keys 0 needs --hot-share 1\n", stderr);
    return std::nullopt;
  }
  return o;
}

// splitmix64: fast, and good enough to pick keys.
class Random {
 public:
  explicit Random(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t state_;
};

// The keys and their values: key i is prefix + i + suffix; its value is "v<i>:" padded with
// 'x' to the value size (cut to it when shorter), so a reply carrying another key's value is
// caught.
class KeySpace {
 public:
  KeySpace(KeyFormat format, std::size_t valueSize)
      : format_(std::move(format)), valueSize_(valueSize), filler_(valueSize, 'x') {}

  void appendKey(std::string& out, std::uint64_t index) const {
    char digits[24];
    const auto r = std::to_chars(digits, digits + sizeof digits, index);
    out += format_.prefix;
    out.append(digits, r.ptr);
    out += format_.suffix;
  }

  void appendValue(std::string& out, std::uint64_t index) const {
    char tag[32];
    const std::size_t tagLen = valueTag(tag, index);
    const std::size_t start = out.size();
    out.append(tag, std::min(tagLen, valueSize_));
    out.append(filler_, 0, valueSize_ - (out.size() - start));
  }

  bool valueMatches(std::string_view value, std::uint64_t index) const {
    if (value.size() != valueSize_) return false;
    char tag[32];
    const std::size_t tagLen = std::min(valueTag(tag, index), valueSize_);
    return value.compare(0, tagLen, tag, tagLen) == 0 &&
           value.compare(tagLen, std::string_view::npos, filler_.data(), valueSize_ - tagLen) == 0;
  }

  std::size_t valueSize() const { return valueSize_; }

 private:
  static std::size_t valueTag(char (&tag)[32], std::uint64_t index) {
    tag[0] = 'v';
    char* end = std::to_chars(tag + 1, tag + sizeof tag - 1, index).ptr;
    *end++ = ':';
    return static_cast<std::size_t>(end - tag);
  }

  KeyFormat format_;
  std::size_t valueSize_;
  std::string filler_;
};

void appendBulk(std::string& out, std::string_view s) {
  char len[24];
  const auto r = std::to_chars(len, len + sizeof len, s.size());
  out += '$';
  out.append(len, r.ptr);
  out += "\r\n";
  out += s;
  out += "\r\n";
}

// One RESP2 reply at the front of a buffer.
enum class ReplyKind { kIncomplete, kBulk, kNil, kError, kOther, kProtocolError };

struct Reply {
  ReplyKind kind = ReplyKind::kIncomplete;
  std::size_t size = 0;   // bytes of the whole reply
  std::string_view text;  // a bulk string's data, an error's or a simple string's line
};

Reply parseReply(std::string_view buf, std::size_t pos = 0, int depth = 0) {
  Reply r;
  if (pos >= buf.size()) return r;
  if (depth > kMaxReplyDepth) return Reply{ReplyKind::kProtocolError, 0, {}};
  const std::size_t cr = buf.find("\r\n", pos);
  if (cr == std::string_view::npos) return r;
  const char type = buf[pos];
  const std::string_view line = buf.substr(pos + 1, cr - pos - 1);
  const std::size_t afterLine = cr + 2;
  switch (type) {
    case '+':  // a simple string (the preload's +OK)
    case ':':
      return Reply{ReplyKind::kOther, afterLine - pos, line};
    case '-':
      return Reply{ReplyKind::kError, afterLine - pos, line};
    case '$': {
      std::int64_t len = 0;
      if (!parseNumber(line, len) || len < -1 || len > kMaxBulkLen) {
        return Reply{ReplyKind::kProtocolError, 0, {}};
      }
      if (len == -1) return Reply{ReplyKind::kNil, afterLine - pos, {}};
      const auto n = static_cast<std::size_t>(len);
      if (buf.size() < afterLine + n + 2) return r;
      if (buf[afterLine + n] != '\r' || buf[afterLine + n + 1] != '\n') {
        return Reply{ReplyKind::kProtocolError, 0, {}};
      }
      return Reply{ReplyKind::kBulk, afterLine + n + 2 - pos, buf.substr(afterLine, n)};
    }
    case '*': {
      std::int64_t count = 0;
      if (!parseNumber(line, count) || count < -1 || count > kMaxBulkLen) {
        return Reply{ReplyKind::kProtocolError, 0, {}};
      }
      if (count == -1) return Reply{ReplyKind::kNil, afterLine - pos, {}};
      std::size_t at = afterLine;
      for (std::int64_t i = 0; i < count; ++i) {
        const Reply element = parseReply(buf, at, depth + 1);
        if (element.kind == ReplyKind::kIncomplete || element.kind == ReplyKind::kProtocolError) {
          return element;
        }
        at += element.size;
      }
      return Reply{ReplyKind::kOther, at - pos, {}};
    }
    default:
      return Reply{ReplyKind::kProtocolError, 0, {}};
  }
}

double secondsSince(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double>(end - start).count();
}

double cpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// A connected blocking TCP socket (TCP_NODELAY) with send/receive timeouts, or -1.
int connectTo(const Options& o) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(o.port);
  if (const int rc = getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    std::fprintf(stderr, "hotkey_load: %s: %s\n", o.host.c_str(), gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  int lastErrno = 0;
  for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      lastErrno = errno;
      continue;
    }
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(o.timeout);
    tv.tv_usec = static_cast<suseconds_t>((o.timeout - static_cast<double>(tv.tv_sec)) * 1e6);
    // On Linux SO_SNDTIMEO also bounds connect().
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      lastErrno = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) {
    std::fprintf(stderr, "hotkey_load: connect %s:%d: %s\n", o.host.c_str(), o.port,
                 std::strerror(lastErrno));
  }
  return fd;
}

bool sendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Reads from a blocking socket until `buf` (from `consumed` on) holds one whole reply.
Reply readReplyBlocking(int fd, std::string& buf, std::size_t& consumed) {
  for (;;) {
    const Reply r = parseReply(std::string_view(buf).substr(consumed));
    if (r.kind != ReplyKind::kIncomplete) return r;
    if (consumed > 0) {
      buf.erase(0, consumed);
      consumed = 0;
    }
    const std::size_t old = buf.size();
    buf.resize(old + kReadChunk);
    const ssize_t n = recv(fd, buf.data() + old, kReadChunk, 0);
    buf.resize(old + (n > 0 ? static_cast<std::size_t>(n) : 0));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Reply{ReplyKind::kProtocolError, 0, {}};
  }
}

// SET every key, kPreloadBatch commands per write, each reply checked for +OK.
bool preload(const Options& o, const KeySpace& keys) {
  const int fd = connectTo(o);
  if (fd < 0) return false;
  const std::uint64_t total = o.hotKeys + o.coldKeys;
  std::string out;
  std::string in;
  std::string key;
  std::string value;
  std::string px = std::to_string(o.px);
  std::size_t consumed = 0;
  bool ok = true;
  for (std::uint64_t first = 0; first < total && ok; first += kPreloadBatch) {
    const std::uint64_t last = std::min<std::uint64_t>(total, first + kPreloadBatch);
    out.clear();
    for (std::uint64_t i = first; i < last; ++i) {
      key.clear();
      value.clear();
      keys.appendKey(key, i);
      keys.appendValue(value, i);
      out += o.px > 0 ? "*5\r\n$3\r\nSET\r\n" : "*3\r\n$3\r\nSET\r\n";
      appendBulk(out, key);
      appendBulk(out, value);
      if (o.px > 0) {
        appendBulk(out, "PX");
        appendBulk(out, px);
      }
    }
    if (!sendAll(fd, out)) {
      std::fprintf(stderr, "hotkey_load: preload: send failed: %s\n", std::strerror(errno));
      ok = false;
      break;
    }
    for (std::uint64_t i = first; i < last; ++i) {
      const Reply r = readReplyBlocking(fd, in, consumed);
      if (r.kind == ReplyKind::kProtocolError) {
        std::fputs("hotkey_load: preload: connection closed, timed out or sent a bad reply\n",
                   stderr);
        ok = false;
        break;
      }
      if (r.kind != ReplyKind::kOther || r.text != "OK") {
        key.clear();
        keys.appendKey(key, i);
        std::fprintf(stderr, "hotkey_load: preload: SET %s -> %.*s\n", key.c_str(),
                     static_cast<int>(std::min<std::size_t>(r.text.size(), 300)), r.text.data());
        ok = false;
      }
      consumed += r.size;
    }
  }
  close(fd);
  return ok;
}

struct Connection {
  int fd = -1;
  // Received bytes are in[begin, end); the vector only grows when a reply does not fit.
  std::vector<char> in = std::vector<char>(kReadChunk);
  std::size_t begin = 0;
  std::size_t end = 0;
  std::string out;  // bytes not yet written (a short write)
  bool wantWrite = false;
  std::uint64_t key = 0;
  bool waiting = false;
  Clock::time_point sentAt;
};

struct Results {
  std::uint64_t sent = 0;
  std::uint64_t completed = 0;
  std::uint64_t errors = 0;      // error replies, wrong values, other replies, lost replies
  std::uint64_t mismatches = 0;  // of which: a bulk string that is not the key's value
  std::uint64_t nils = 0;
  std::uint64_t lost = 0;  // of errors: no reply by the end of --timeout
  std::uint64_t hot = 0;
  // epoll_wait calls that returned events: completed / wakeups is how many replies this client
  // gets per wake-up, i.e. how much the server batches its replies.
  std::uint64_t wakeups = 0;
  std::string firstError;
  std::vector<std::uint64_t> latency = std::vector<std::uint64_t>(kLatencyBuckets + 1, 0);
  double seconds = 0;
  double cpuSeconds = 0;
};

class Load {
 public:
  Load(const Options& o, const KeySpace& keys) : o_(o), keys_(keys), random_(o.seed) {}

  ~Load() {
    for (Connection& c : conns_) {
      if (c.fd >= 0) close(c.fd);
    }
    if (epoll_ >= 0) close(epoll_);
  }

  // false: a connection failed or closed (the message is printed).
  bool run(Results& res) {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) return fail("epoll_create1");
    conns_.resize(static_cast<std::size_t>(o_.connections));
    for (std::size_t i = 0; i < conns_.size(); ++i) {
      Connection& c = conns_[i];
      c.fd = connectTo(o_);
      if (c.fd < 0) return false;
      if (fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK) != 0) return fail("fcntl");
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      if (epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev) != 0) return fail("epoll_ctl");
    }
    const double cpu0 = cpuSeconds();
    start_ = Clock::now();
    stopAt_ = start_ + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(o_.seconds));
    Clock::time_point lastReply = start_;
    for (std::size_t i = 0; i < conns_.size(); ++i) {
      if (!sendNext(i, res, start_)) return false;
    }
    std::vector<epoll_event> events(256);
    std::optional<Clock::time_point> drainUntil;
    for (;;) {
      if (inFlight_ == 0) break;
      const Clock::time_point now = Clock::now();
      if (!drainUntil && (stopping_ || now >= stopAt_)) {
        stopping_ = true;
        drainUntil = now + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(o_.timeout));
      }
      if (drainUntil && now >= *drainUntil) {
        res.lost += inFlight_;
        res.errors += inFlight_;
        if (res.firstError.empty()) res.firstError = "replies still missing at the end";
        break;
      }
      const int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), 50);
      if (n < 0 && errno != EINTR) return fail("epoll_wait");
      if (n > 0) ++res.wakeups;
      for (int e = 0; e < n; ++e) {
        const std::size_t i = events[static_cast<std::size_t>(e)].data.u64;
        const std::uint32_t what = events[static_cast<std::size_t>(e)].events;
        if ((what & EPOLLOUT) != 0 && !flush(i)) return false;
        if ((what & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0 && !readReplies(i, res, lastReply)) {
          return false;
        }
      }
    }
    res.seconds = secondsSince(start_, res.completed > 0 ? lastReply : Clock::now());
    res.cpuSeconds = cpuSeconds() - cpu0;
    return true;
  }

 private:
  bool fail(const char* what) {
    std::fprintf(stderr, "hotkey_load: %s: %s\n", what, std::strerror(errno));
    return false;
  }

  std::uint64_t pickKey(Results& res) {
    const std::uint64_t r = random_.next();
    // The top 53 bits as a uniform double in [0, 1).
    const double u = static_cast<double>(r >> 11) * 0x1.0p-53;
    const std::uint64_t r2 = random_.next();
    if (u < o_.hotShare) {
      ++res.hot;
      return r2 % o_.hotKeys;
    }
    return o_.hotKeys + r2 % o_.coldKeys;
  }

  // Sends connection i's next GET, unless the run is over.
  bool sendNext(std::size_t i, Results& res, Clock::time_point now) {
    if (stopping_ || res.sent >= o_.requests || now >= stopAt_) {
      stopping_ = true;
      return true;
    }
    Connection& c = conns_[i];
    c.key = pickKey(res);
    key_.clear();
    keys_.appendKey(key_, c.key);
    c.out += "*2\r\n$3\r\nGET\r\n";
    appendBulk(c.out, key_);
    c.waiting = true;
    c.sentAt = now;
    ++res.sent;
    ++inFlight_;
    return flush(i);
  }

  bool flush(std::size_t i) {
    Connection& c = conns_[i];
    std::size_t done = 0;
    while (done < c.out.size()) {
      const ssize_t n = send(c.fd, c.out.data() + done, c.out.size() - done, MSG_NOSIGNAL);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return fail("send");
    }
    c.out.erase(0, done);
    // Watch for writability only while a short write left bytes behind.
    if (c.out.empty() == c.wantWrite) {
      c.wantWrite = !c.out.empty();
      epoll_event ev{};
      ev.events = EPOLLIN | (c.wantWrite ? static_cast<std::uint32_t>(EPOLLOUT) : 0U);
      ev.data.u64 = i;
      if (epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev) != 0) return fail("epoll_ctl");
    }
    return true;
  }

  bool readReplies(std::size_t i, Results& res, Clock::time_point& lastReply) {
    Connection& c = conns_[i];
    for (;;) {
      if (c.end == c.in.size()) {
        if (c.begin > 0) {
          std::memmove(c.in.data(), c.in.data() + c.begin, c.end - c.begin);
          c.end -= c.begin;
          c.begin = 0;
        } else {
          c.in.resize(c.in.size() * 2);
        }
      }
      const std::size_t room = c.in.size() - c.end;
      const ssize_t n = recv(c.fd, c.in.data() + c.end, room, 0);
      if (n > 0) {
        c.end += static_cast<std::size_t>(n);
        // A short read emptied the socket: no need for a recv that says EAGAIN.
        if (static_cast<std::size_t>(n) < room) break;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n == 0) {
        std::fprintf(stderr, "hotkey_load: connection %zu closed by the server\n", i);
        return false;
      }
      return fail("recv");
    }
    for (;;) {
      const Reply r = parseReply(std::string_view(c.in.data() + c.begin, c.end - c.begin));
      if (r.kind == ReplyKind::kIncomplete) break;
      if (r.kind == ReplyKind::kProtocolError) {
        std::fprintf(stderr, "hotkey_load: connection %zu: not RESP2\n", i);
        return false;
      }
      if (!c.waiting) {
        std::fprintf(stderr, "hotkey_load: connection %zu: a reply nobody asked for\n", i);
        return false;
      }
      const Clock::time_point now = Clock::now();
      record(c, r, res, now);
      c.begin += r.size;
      c.waiting = false;
      --inFlight_;
      ++res.completed;
      lastReply = now;
      if (!sendNext(i, res, now)) return false;
    }
    if (c.begin == c.end) c.begin = c.end = 0;
    return true;
  }

  void record(const Connection& c, const Reply& r, Results& res, Clock::time_point now) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - c.sentAt).count();
    ++res.latency[std::min<std::size_t>(static_cast<std::size_t>(std::max<long long>(us, 0)),
                                        kLatencyBuckets)];
    switch (r.kind) {
      case ReplyKind::kBulk:
        if (keys_.valueMatches(r.text, c.key)) return;
        ++res.mismatches;
        noteError(res, "a value that is not the key's", c.key);
        break;
      case ReplyKind::kNil:
        ++res.nils;
        return;
      case ReplyKind::kError:
        noteError(res, r.text, c.key);
        break;
      default:
        noteError(res, "a reply that is not a bulk string", c.key);
        break;
    }
    ++res.errors;
  }

  void noteError(Results& res, std::string_view what, std::uint64_t key) {
    if (!res.firstError.empty()) return;
    key_.clear();
    keys_.appendKey(key_, key);
    res.firstError = "GET " + key_ + ": " + std::string(what.substr(0, 300));
  }

  const Options& o_;
  const KeySpace& keys_;
  Random random_;
  int epoll_ = -1;
  std::vector<Connection> conns_;
  std::uint64_t inFlight_ = 0;
  bool stopping_ = false;
  Clock::time_point start_;
  Clock::time_point stopAt_;
  std::string key_;
};

double percentileMs(const std::vector<std::uint64_t>& hist, std::uint64_t total, double q) {
  if (total == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total - 1));
  std::uint64_t seen = 0;
  for (std::size_t us = 0; us < hist.size(); ++us) {
    seen += hist[us];
    if (seen > rank) return static_cast<double>(us) / 1000.0;
  }
  return static_cast<double>(hist.size() - 1) / 1000.0;
}

std::string jsonString(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20 || u >= 0x7f) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", u);
      out += esc;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

void report(const Options& o, const Results& res) {
  const double ops = res.seconds > 0 ? static_cast<double>(res.completed) / res.seconds : 0;
  const double hotShare =
      res.sent > 0 ? static_cast<double>(res.hot) / static_cast<double>(res.sent) : 0;
  const double cpuUs =
      res.completed > 0 ? res.cpuSeconds * 1e6 / static_cast<double>(res.completed) : 0;
  const double p50 = percentileMs(res.latency, res.completed, 0.50);
  const double p99 = percentileMs(res.latency, res.completed, 0.99);
  const double p999 = percentileMs(res.latency, res.completed, 0.999);
  const double perWakeup =
      res.wakeups > 0 ? static_cast<double>(res.completed) / static_cast<double>(res.wakeups) : 0;
  if (o.json) {
    std::printf(
        "{\"target\": %s, \"connections\": %d, \"requests\": %llu, \"seconds\": %.3f, "
        "\"ops_per_sec\": %.0f, \"errors\": %llu, \"mismatches\": %llu, \"nil\": %llu, "
        "\"lost\": %llu, \"hot_share\": %.4f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
        "\"p999_ms\": %.3f, \"client_cpu_us\": %.3f, \"replies_per_wakeup\": %.2f, "
        "\"first_error\": %s}\n",
        jsonString(o.host + ":" + std::to_string(o.port)).c_str(), o.connections,
        static_cast<unsigned long long>(res.completed), res.seconds, ops,
        static_cast<unsigned long long>(res.errors),
        static_cast<unsigned long long>(res.mismatches), static_cast<unsigned long long>(res.nils),
        static_cast<unsigned long long>(res.lost), hotShare, p50, p99, p999, cpuUs, perWakeup,
        jsonString(res.firstError).c_str());
  } else {
    std::printf(
        "requests=%llu seconds=%.3f ops_per_sec=%.0f errors=%llu mismatches=%llu nil=%llu "
        "lost=%llu hot_share=%.4f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f client_cpu_us=%.3f "
        "replies_per_wakeup=%.2f\n",
        static_cast<unsigned long long>(res.completed), res.seconds, ops,
        static_cast<unsigned long long>(res.errors),
        static_cast<unsigned long long>(res.mismatches), static_cast<unsigned long long>(res.nils),
        static_cast<unsigned long long>(res.lost), hotShare, p50, p99, p999, cpuUs, perWakeup);
    if (!res.firstError.empty()) {
      std::fprintf(stderr, "hotkey_load: first error: %s\n", res.firstError.c_str());
    }
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<Options> options = parseOptions(argc, argv);
  if (!options) return 2;
  const Options& o = *options;
  const std::optional<KeyFormat> format = parseKeyFormat(o.keyFormat);
  if (!format) return 2;
  const KeySpace keys(*format, o.valueSize);

  if (o.preload) {
    const Clock::time_point t0 = Clock::now();
    if (!preload(o, keys)) return 1;
    std::fprintf(stderr, "hotkey_load: preloaded %llu keys in %.1f s\n",
                 static_cast<unsigned long long>(o.hotKeys + o.coldKeys),
                 secondsSince(t0, Clock::now()));
    if (o.preloadOnly) return 0;
  }

  Results res;
  Load load(o, keys);
  if (!load.run(res)) {
    report(o, res);
    return 1;
  }
  report(o, res);
  return res.errors == 0 && res.nils == 0 ? 0 : 3;
}
