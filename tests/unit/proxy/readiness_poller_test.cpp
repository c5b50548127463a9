#include "proxy/readiness_poller.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "proxy/tls.hpp"
#include "tests/unit/proxy/io_loop.hpp"

namespace keygate::proxy {
namespace {

using namespace std::chrono_literals;

// A connected pair of stream sockets; closes what is still open.
struct Pair {
  Pair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd) == 0); }
  ~Pair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  void send(std::string_view bytes) const {
    REQUIRE(::write(fd[1], bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  }
  int fd[2] = {-1, -1};
};

// Reads what the poller reads for it into `got`; `told` counts the reads, `last` is the last
// result.
class Recorder final : public ReadinessPoller::Reader {
 public:
  boost::asio::mutable_buffer readBuffer() override { return boost::asio::buffer(buf); }
  void readDone(int result) override {
    ++told;
    last = result;
    if (result > 0) got.append(buf, static_cast<std::size_t>(result));
    if (then) then();
  }
  int told = 0;
  int last = 0;
  std::string got;
  std::function<void()> then;

 private:
  char buf[256];
};

using test::runUntil;
using test::settle;

TEST_CASE("poller: a reader is told when its socket has data, and not before") {
  boost::asio::io_context io;
  auto& poller = ReadinessPoller::of(io);
  // Reads made one by one (the default) and batched through io_uring (workers).
  const bool ring = GENERATE(false, true);
  poller.useRing(ring);
  REQUIRE(poller.batch().ringActive() == ring);
  Pair p;
  Recorder r;
  const auto token = poller.add(p.fd[0], r);
  REQUIRE(token != 0);
  CHECK(poller.watched() == 1);
  settle(io);
  CHECK(r.told == 0);

  p.send("hello");
  REQUIRE(runUntil(io, [&] { return r.told == 1; }));
  CHECK(r.got == "hello");
  settle(io);
  CHECK(r.told == 1);  // a short read drained it: no further event

  p.send("hello");
  REQUIRE(runUntil(io, [&] { return r.told == 2; }));
  CHECK(r.got == "hellohello");
  poller.remove(token, p.fd[0]);
  CHECK(poller.watched() == 0);
  p.send("late");
  settle(io);
  CHECK(r.told == 2);
}

TEST_CASE("poller: end of stream is reported") {
  boost::asio::io_context io;
  auto& poller = ReadinessPoller::of(io);
  Pair p;
  Recorder r;
  const auto token = poller.add(p.fd[0], r);
  ::close(p.fd[1]);
  p.fd[1] = -1;
  REQUIRE(runUntil(io, [&] { return r.told >= 1; }));
  CHECK(r.last == 0);  // recv()'s end of stream
  poller.remove(token, p.fd[0]);
}

TEST_CASE("poller: a reader removed while a batch is dispatched is not told from it") {
  boost::asio::io_context io;
  auto& poller = ReadinessPoller::of(io);
  Pair a, b;
  Recorder ra, rb;
  ReadinessPoller::Token ta = 0, tb = 0;
  // Whichever is told first removes the other, whose event is already in the same batch.
  ra.then = [&] { poller.remove(tb, b.fd[0]); };
  rb.then = [&] { poller.remove(ta, a.fd[0]); };
  ta = poller.add(a.fd[0], ra);
  tb = poller.add(b.fd[0], rb);
  a.send("x");
  b.send("y");
  REQUIRE(runUntil(io, [&] { return ra.told + rb.told >= 1; }));
  settle(io);
  CHECK(ra.told + rb.told == 1);
  CHECK(poller.watched() == 1);
}

TEST_CASE("poller: a stale token neither removes nor reaches the registration reusing its slot") {
  boost::asio::io_context io;
  auto& poller = ReadinessPoller::of(io);
  Pair a, b;
  Recorder ra, rb;
  const auto ta = poller.add(a.fd[0], ra);
  poller.remove(ta, a.fd[0]);
  const auto tb = poller.add(b.fd[0], rb);
  REQUIRE(tb != 0);
  CHECK(tb != ta);
  poller.remove(ta, a.fd[0]);  // stale: a no-op
  CHECK(poller.watched() == 1);
  b.send("x");
  REQUIRE(runUntil(io, [&] { return rb.told == 1; }));
  a.send("y");
  settle(io);
  CHECK(ra.told == 0);
  poller.remove(tb, b.fd[0]);
}

TEST_CASE("poller: with nothing left to watch, the io_context runs out of work") {
  boost::asio::io_context io;
  auto& poller = ReadinessPoller::of(io);
  Pair p;
  Recorder r;
  const auto token = poller.add(p.fd[0], r);
  settle(io);  // the set's wait is pending now
  poller.remove(token, p.fd[0]);
  io.restart();
  const auto start = std::chrono::steady_clock::now();
  io.run_for(20s);  // returns at once unless something still waits
  CHECK(std::chrono::steady_clock::now() - start < 10s);

  // And a socket added after that is watched again.
  Recorder r2;
  const auto token2 = poller.add(p.fd[0], r2);
  p.send("x");
  REQUIRE(runUntil(io, [&] { return r2.told == 1; }));
  poller.remove(token2, p.fd[0]);
}

TEST_CASE("SocketStream::readNow and readResult: short reads drain, full reads do not, eof") {
  namespace ip = boost::asio::ip;
  boost::asio::io_context io;
  ip::tcp::acceptor acceptor(io, ip::tcp::endpoint(ip::make_address("127.0.0.1"), 0));
  ip::tcp::socket client(io), server(io);
  client.connect(acceptor.local_endpoint());
  acceptor.accept(server);
  SocketStream stream(server);
  REQUIRE(stream.plain());

  char buf[4096];
  boost::system::error_code ec;
  bool drained = false;
  const auto read = [&] {
    return SocketStream::readResult(stream.readNow(boost::asio::buffer(buf)), sizeof buf, ec,
                                    drained);
  };
  CHECK(read() == 0);
  CHECK(ec == boost::asio::error::would_block);
  CHECK(drained);

  boost::asio::write(client, boost::asio::buffer(std::string(10, 'a')));
  std::size_t got = 0;
  // Loopback delivers within the send; a bound guards a slow machine all the same.
  for (int i = 0; i < 500 && got == 0; ++i) {
    got = read();
    if (got == 0) std::this_thread::sleep_for(1ms);
  }
  CHECK(got == 10);
  CHECK(!ec);
  CHECK(drained);

  boost::asio::write(client, boost::asio::buffer(std::string(6000, 'b')));
  std::size_t total = 0;
  bool sawFull = false;
  for (int i = 0; i < 500 && total < 6000; ++i) {
    const std::size_t n = read();
    if (n == sizeof buf) {
      sawFull = true;
      CHECK(!drained);
    }
    total += n;
    if (n == 0) std::this_thread::sleep_for(1ms);
  }
  CHECK(total == 6000);
  CHECK(sawFull);

  client.close();
  std::size_t n = 1;
  for (int i = 0; i < 500 && ec != boost::asio::error::eof; ++i) {
    n = read();
    if (ec == boost::asio::error::would_block) std::this_thread::sleep_for(1ms);
  }
  CHECK(ec == boost::asio::error::eof);
  CHECK(n == 0);
}

}  // namespace
}  // namespace keygate::proxy
