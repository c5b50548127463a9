// How much a server's per-client system calls cost on this machine, and how much submitting
// them in one batch through io_uring would save (a measurement for planning, not part of
// keygate; see docs/benchmarks.md, "System calls are the cost").
//
// 50 TCP connections on loopback inside one process. Each round every client sends a GET
// (37 bytes), the server side reads each request and answers 71 bytes, every client reads its
// reply. The server side runs either as one recv() and one send() per client, as keygate and
// redis-server do, or as 100 io_uring requests (recv linked to send, per client) submitted with
// one io_uring_enter. Reported: CPU time (user + system, getrusage) of the server side and of the
// client side per request, alternating the two modes twice.
//
// Not built by CMake: a standalone measurement (keygate itself batches through
// proxy/socket_batch.hpp, with the same liburing-dev).
//   g++ -O2 -std=c++20 -o /tmp/syscall_batching bench/syscall_batching.cpp -luring
//   /tmp/syscall_batching [ROUNDS, default 4000]
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr int kClients = 50;
constexpr std::size_t kBuffer = 4096;

double cpuSeconds() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

bool fail(const char* what) {
  std::perror(what);
  return false;
}

// kClients connected pairs on 127.0.0.1, TCP_NODELAY on both ends.
bool connectPairs(std::vector<int>& clients, std::vector<int>& servers) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listener, 128) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return fail("listen");
  }
  const int one = 1;
  for (int i = 0; i < kClients; ++i) {
    const int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      return fail("connect");
    }
    const int s = accept(listener, nullptr, nullptr);
    if (s < 0) return fail("accept");
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    clients.push_back(c);
    servers.push_back(s);
  }
  close(listener);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 4000;
  if (rounds <= 0 || rounds > 1000000) {
    std::fprintf(stderr, "usage: %s [ROUNDS (1..1000000), default 4000]\n", argv[0]);
    return 2;
  }
  std::vector<int> clients, servers;
  if (!connectPairs(clients, servers)) return 1;
  io_uring ring{};
  if (const int rc = io_uring_queue_init(4 * kClients, &ring, 0); rc < 0) {
    std::fprintf(stderr, "io_uring_queue_init: %s\n", std::strerror(-rc));
    return 1;
  }
  static const char kRequest[] = "*2\r\n$3\r\nGET\r\n$16\r\nkey:000000012345\r\n";
  char reply[71];
  std::memset(reply, 'x', sizeof reply);
  std::vector<char> in(kClients * kBuffer);
  char clientBuf[kBuffer];

  for (int mode = 0; mode < 4; ++mode) {
    const bool batched = mode % 2 == 1;
    double client = 0, server = 0;
    for (int r = 0; r < rounds; ++r) {
      const double t0 = cpuSeconds();
      for (const int c : clients)
        if (send(c, kRequest, sizeof kRequest - 1, 0) != sizeof kRequest - 1) return fail("send");
      const double t1 = cpuSeconds();
      if (!batched) {
        for (int i = 0; i < kClients; ++i) {
          if (recv(servers[i], &in[i * kBuffer], kBuffer, 0) <= 0) return fail("recv");
          if (send(servers[i], reply, sizeof reply, 0) != sizeof reply) return fail("send");
        }
      } else {
        for (int i = 0; i < kClients; ++i) {
          io_uring_sqe* sqe = io_uring_get_sqe(&ring);
          io_uring_prep_recv(sqe, servers[i], &in[i * kBuffer], kBuffer, 0);
          sqe->flags |= IOSQE_IO_LINK;
          sqe = io_uring_get_sqe(&ring);
          io_uring_prep_send(sqe, servers[i], reply, sizeof reply, 0);
        }
        if (io_uring_submit_and_wait(&ring, 2 * kClients) < 0) return fail("io_uring_submit");
        io_uring_cqe* cqe = nullptr;
        unsigned head = 0, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
          if (cqe->res <= 0) {
            std::fprintf(stderr, "io_uring request failed: %d\n", cqe->res);
            return 1;
          }
          ++seen;
        }
        io_uring_cq_advance(&ring, seen);
      }
      const double t2 = cpuSeconds();
      for (const int c : clients)
        if (recv(c, clientBuf, sizeof clientBuf, 0) <= 0) return fail("recv");
      const double t3 = cpuSeconds();
      client += (t1 - t0) + (t3 - t2);
      server += t2 - t1;
    }
    const double requests = static_cast<double>(rounds) * kClients;
    std::printf("%-28s server CPU %.2f us per request, client CPU %.2f us per request\n",
                batched ? "io_uring, one enter/round:" : "recv() + send() per client:",
                server / requests * 1e6, client / requests * 1e6);
  }
  io_uring_queue_exit(&ring);
  return 0;
}
