#include "proxy/upstream_connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "tests/unit/proxy/io_loop.hpp"

namespace keygate::proxy {
namespace {

using namespace std::chrono_literals;

// Plays Redis on a loopback port with plain non-blocking socket calls: the test decides when
// it reads what keygate wrote and when it answers.
class FakeRedis {
 public:
  FakeRedis() {
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    REQUIRE(listen_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(listen_, 4) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
  }
  ~FakeRedis() {
    for (int fd : {listen_, conn_})
      if (fd >= 0) ::close(fd);
  }
  FakeRedis(const FakeRedis&) = delete;
  FakeRedis& operator=(const FakeRedis&) = delete;

  bool accepted() {
    if (conn_ < 0) conn_ = ::accept4(listen_, nullptr, nullptr, SOCK_NONBLOCK);
    return conn_ >= 0;
  }
  // Everything keygate has written so far and not yet taken.
  std::string take() {
    char buf[64 * 1024];
    for (;;) {
      const ssize_t n = ::recv(conn_, buf, sizeof buf, 0);
      if (n <= 0) break;
      got_.append(buf, static_cast<std::size_t>(n));
    }
    return std::exchange(got_, {});
  }
  void send(std::string_view bytes) const {
    REQUIRE(::send(conn_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
  }
  void hangUp() {
    ::close(conn_);
    conn_ = -1;
  }

  std::uint16_t port = 0;

 private:
  int listen_ = -1;
  int conn_ = -1;
  std::string got_;
};

class RecordingSink final : public ReplySink {
 public:
  void onReply(std::uint64_t tag, std::string_view frame) override {
    replies.emplace_back(tag, std::string(frame));
  }
  void onFailure(std::uint64_t tag, std::string_view) override { failed.push_back(tag); }
  std::vector<std::pair<std::uint64_t, std::string>> replies;
  std::vector<std::uint64_t> failed;
};

using test::runUntil;
using test::settle;

std::string command(std::string_view name, std::string_view arg) {
  std::string out;
  resp::appendCommand(out, {name, arg});
  return out;
}

// A shared connection to the fake, past its handshake.
struct Connected {
  explicit Connected(std::uint32_t deferSendsAbove) {
    UpstreamSettings settings;
    settings.host = "127.0.0.1";
    settings.port = redis.port;
    settings.deferSendsAbove = deferSendsAbove;
    conn = std::make_shared<UpstreamConnection>(io, settings, resp::Protocol::kResp2,
                                                UpstreamConnection::Kind::kShared, stats);
    conn->start();
    REQUIRE(runUntil(io, [&] { return redis.accepted(); }));
    std::string hello;
    REQUIRE(runUntil(io, [&] {
      hello += redis.take();
      return hello == command("HELLO", "2");
    }));
    redis.send("+OK\r\n");
    REQUIRE(runUntil(io, [&] { return conn->state() == UpstreamConnection::State::kReady; }));
  }
  ~Connected() {
    conn->close("test over");
    settle(io);  // handlers holding the connection run before the io_context goes
  }

  void get(std::uint64_t tag) { conn->send(command("GET", key(tag)), sink, tag); }
  static std::string key(std::uint64_t tag) { return "k" + std::to_string(tag); }
  static std::string gets(std::uint64_t from, std::uint64_t to) {
    std::string out;
    for (auto t = from; t <= to; ++t)
      out += command("GET", key(t));
    return out;
  }
  // Requests 1..n sent, and received by the fake.
  void written(std::uint64_t n) {
    for (std::uint64_t t = 1; t <= n; ++t)
      get(t);
    REQUIRE(redisGets(gets(1, n)));
  }
  // Waits until the fake has been sent exactly `expected` (in one or more reads).
  bool redisGets(const std::string& expected) {
    std::string got;
    const bool whole = runUntil(io, [&] {
      got += redis.take();
      return got.size() >= expected.size();
    });
    return whole && got == expected;
  }

  boost::asio::io_context io;
  FakeRedis redis;
  WorkerStats stats;
  std::shared_ptr<RecordingSink> sink = std::make_shared<RecordingSink>();
  std::shared_ptr<UpstreamConnection> conn;
};

TEST_CASE("upstream: requests parsed in one turn leave in one write") {
  Connected c(128);
  for (std::uint64_t t = 1; t <= 3; ++t)
    c.get(t);
  settle(c.io);
  CHECK(c.redis.take() == Connected::gets(1, 3));
}

TEST_CASE("upstream: past deferSendsAbove awaiting replies, new requests wait for them") {
  Connected c(2);
  c.written(3);
  CHECK(c.conn->inflight() == 3);

  // Three await their replies, more than 2: these two are held.
  c.get(4);
  settle(c.io);
  c.get(5);
  settle(c.io);
  CHECK(c.redis.take().empty());
  CHECK(c.stats.deferredSends == 1);  // one held write, whatever it holds

  // One reply leaves two awaiting: both held requests leave, together.
  c.redis.send("$2\r\nv1\r\n");
  REQUIRE(runUntil(c.io, [&] { return c.sink->replies.size() == 1; }));
  settle(c.io);
  CHECK(c.redis.take() == Connected::gets(4, 5));

  c.redis.send("$2\r\nv2\r\n$2\r\nv3\r\n$2\r\nv4\r\n$-1\r\n");
  REQUIRE(runUntil(c.io, [&] { return c.sink->replies.size() == 5; }));
  const std::vector<std::pair<std::uint64_t, std::string>> want = {{1, "$2\r\nv1\r\n"},
                                                                   {2, "$2\r\nv2\r\n"},
                                                                   {3, "$2\r\nv3\r\n"},
                                                                   {4, "$2\r\nv4\r\n"},
                                                                   {5, "$-1\r\n"}};
  CHECK(c.sink->replies == want);
  CHECK(c.sink->failed.empty());
}

TEST_CASE("upstream: deferSendsAbove 0 never holds a request") {
  Connected c(0);
  c.written(3);
  c.get(4);
  settle(c.io);
  CHECK(c.redis.take() == Connected::gets(4, 4));
  CHECK(c.stats.deferredSends == 0);
}

TEST_CASE("upstream: held requests past 256 KiB go out without waiting") {
  Connected c(1);
  c.written(2);
  c.get(3);
  settle(c.io);
  CHECK(c.redis.take().empty());
  std::string set;
  const std::string value(300 * 1024, 'x');
  resp::appendCommand(set, {"SET", "big", value});
  c.conn->send(set, c.sink, 4);
  CHECK(c.redisGets(Connected::gets(3, 3) + set));
}

TEST_CASE("upstream: requests held when the connection fails are told at once") {
  Connected c(1);
  c.written(2);
  c.get(3);
  c.get(4);
  settle(c.io);
  CHECK(c.redis.take().empty());
  c.redis.hangUp();
  REQUIRE(runUntil(c.io, [&] { return c.sink->failed.size() == 4; }));
  CHECK(c.sink->failed == std::vector<std::uint64_t>{1, 2, 3, 4});
  CHECK(c.conn->failed());
}

}  // namespace
}  // namespace keygate::proxy
