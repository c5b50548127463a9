#include "proxy/socket_batch.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <map>
#include <string>
#include <vector>

namespace keygate::proxy {
namespace {

// A connected pair of non-blocking stream sockets; closes what is still open.
struct Pair {
  Pair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fd) == 0); }
  ~Pair() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  int fd[2] = {-1, -1};
};

// Runs `batch` and returns its results by cookie; every cookie must come exactly once.
std::map<std::uint64_t, int> runAll(SocketBatch& batch) {
  std::map<std::uint64_t, int> results;
  batch.run([&](std::uint64_t cookie, int result) {
    CHECK(results.count(cookie) == 0);
    results[cookie] = result;
  });
  return results;
}

bool ringWanted() {
  const bool ring = GENERATE(true, false);
  return ring;
}

TEST_CASE("SocketBatch: sends and reads of many sockets, each result to its cookie") {
  const bool ring = ringWanted();
  SocketBatch batch(ring);
  // The machines keygate is built and tested on allow io_uring (no seccomp filter; Linux 6.1);
  // where it is refused (a container's default seccomp profile), this is the first to fail.
  INFO("io_uring requested: " << ring);
  REQUIRE(batch.ringActive() == ring);

  std::vector<Pair> pairs(20);
  std::vector<std::string> messages;
  for (std::size_t i = 0; i < pairs.size(); ++i)
    messages.push_back("message " + std::to_string(i) + std::string(i * 10, 'x'));
  for (std::size_t i = 0; i < pairs.size(); ++i)
    batch.send(pairs[i].fd[1], messages[i].data(), messages[i].size(), 100 + i);
  auto sent = runAll(batch);
  REQUIRE(sent.size() == pairs.size());
  for (std::size_t i = 0; i < pairs.size(); ++i)
    CHECK(sent[100 + i] == static_cast<int>(messages[i].size()));

  std::vector<std::string> buffers(pairs.size(), std::string(4096, '\0'));
  for (std::size_t i = 0; i < pairs.size(); ++i)
    batch.recv(pairs[i].fd[0], buffers[i].data(), buffers[i].size(), i);
  auto got = runAll(batch);
  REQUIRE(got.size() == pairs.size());
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    REQUIRE(got[i] == static_cast<int>(messages[i].size()));
    CHECK(buffers[i].substr(0, messages[i].size()) == messages[i]);
  }
  // The point of the ring: twenty sends in one system call, twenty reads in another.
  CHECK(batch.operations() == 2 * pairs.size());
  if (ring) {
    CHECK(batch.systemCalls() == 2);
  } else {
    CHECK(batch.systemCalls() == 2 * pairs.size());
  }
}

TEST_CASE("SocketBatch: nothing to read is -EAGAIN at once, end of stream 0, a gone peer -EPIPE") {
  SocketBatch batch(ringWanted());
  Pair empty, ended, gone;
  ::close(ended.fd[1]);
  ended.fd[1] = -1;
  ::close(gone.fd[0]);
  gone.fd[0] = -1;
  char a[16], b[16];
  batch.recv(empty.fd[0], a, sizeof a, 1);
  batch.recv(ended.fd[0], b, sizeof b, 2);
  batch.send(gone.fd[1], "x", 1, 3);  // MSG_NOSIGNAL: an error, not a SIGPIPE
  auto results = runAll(batch);
  REQUIRE(results.size() == 3);
  CHECK((results[1] == -EAGAIN || results[1] == -EWOULDBLOCK));
  CHECK(results[2] == 0);
  CHECK(results[3] == -EPIPE);
}

TEST_CASE("SocketBatch: a full socket takes part of a send and then says -EAGAIN") {
  SocketBatch batch(ringWanted());
  Pair p, q;                            // two sockets: a batch of one is a plain call
  const std::string big(8 << 20, 'z');  // far more than a socket buffer
  batch.send(p.fd[1], big.data(), big.size(), 1);
  batch.send(q.fd[1], big.data(), big.size(), 2);
  auto first = runAll(batch);
  REQUIRE(first.size() == 2);
  for (const auto& [cookie, result] : first) {
    CHECK(result > 0);
    CHECK(result < static_cast<int>(big.size()));
  }
  batch.send(p.fd[1], big.data(), big.size(), 3);
  batch.send(q.fd[1], big.data(), big.size(), 4);
  auto second = runAll(batch);
  REQUIRE(second.size() == 2);
  for (const auto& [cookie, result] : second)
    CHECK((result == -EAGAIN || result == -EWOULDBLOCK));
}

TEST_CASE("SocketBatch: a lone operation is one plain system call, ring or not") {
  SocketBatch batch(ringWanted());
  Pair p;
  batch.send(p.fd[1], "ping", 4, 7);
  auto results = runAll(batch);
  REQUIRE(results.size() == 1);
  CHECK(results[7] == 4);
  CHECK(batch.systemCalls() == 1);
}

TEST_CASE("SocketBatch: more operations than the ring holds, all completed and reported") {
  SocketBatch batch(ringWanted());
  std::vector<Pair> pairs(300);  // the ring has 256 entries
  std::vector<char> bytes(pairs.size());
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    bytes[i] = static_cast<char>('a' + i % 26);
    batch.send(pairs[i].fd[1], &bytes[i], 1, i);
  }
  auto sent = runAll(batch);
  REQUIRE(sent.size() == pairs.size());
  for (const auto& [cookie, result] : sent)
    CHECK(result == 1);
  std::vector<char> read(pairs.size(), 0);
  for (std::size_t i = 0; i < pairs.size(); ++i)
    batch.recv(pairs[i].fd[0], &read[i], 1, i);
  auto got = runAll(batch);
  REQUIRE(got.size() == pairs.size());
  CHECK(read == bytes);
}

TEST_CASE("SocketBatch: a result's handler may run a batch of its own") {
  SocketBatch batch(ringWanted());
  Pair a, b;
  char buf[8];
  batch.send(a.fd[1], "1", 1, 1);
  batch.send(b.fd[1], "2", 1, 2);
  std::vector<std::uint64_t> outer, inner;
  batch.run([&](std::uint64_t cookie, int result) {
    CHECK(result == 1);
    outer.push_back(cookie);
    if (cookie == 1) {
      batch.recv(a.fd[0], buf, sizeof buf, 10);
      batch.run([&](std::uint64_t c, int r) {
        CHECK(r == 1);
        inner.push_back(c);
      });
    }
  });
  CHECK(outer == std::vector<std::uint64_t>{1, 2});
  CHECK(inner == std::vector<std::uint64_t>{10});
  CHECK(buf[0] == '1');
}

TEST_CASE("SocketBatch: run() with nothing queued does nothing") {
  SocketBatch batch(ringWanted());
  int calls = 0;
  batch.run([&](std::uint64_t, int) { ++calls; });
  CHECK(calls == 0);
  CHECK(batch.systemCalls() == 0);
}

}  // namespace
}  // namespace keygate::proxy
