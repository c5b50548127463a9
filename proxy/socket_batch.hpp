#pragma once

// Socket reads and writes of one event-loop turn, made together: every recv() and send() queued
// is submitted with one io_uring_enter, and each completes inside that call (MSG_DONTWAIT: a
// socket with nothing to read, or no room, answers -EAGAIN at once instead of waiting).
//
// Why: on the VMs keygate runs on, entering the kernel costs 1-1.5 us, as much as the work of a
// small send. At pipeline 1 every client request is one recv and one send, so a turn that serves
// twenty clients made forty system calls; batched it makes two. (bench/ and docs/benchmarks.md:
// "Batched socket calls".) Redis itself makes one call per socket per request, so this is what
// lets a proxy in front of it keep up.
//
// A batch of one operation is the plain system call (cheaper than a submission: a lone client).
// Synchronous by design: run() returns only once every queued operation has completed, so no
// buffer is touched by the kernel after run(), and callers need no completion bookkeeping. When
// io_uring cannot be set up (old kernel, a seccomp profile that forbids it, `ioUring: false`),
// each operation is the plain system call, made when it is queued; results are delivered by
// run() all the same.
//
// One per io_context (owned by its ReadinessPoller); used only from that io_context's thread.
// Between the first operation queued and run(), nothing may run that could run another batch
// (it would take the first one's results): queue, then run, nothing else in between.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

struct io_uring;

namespace keygate::proxy {

class SocketBatch {
 public:
  // `useRing` false: plain system calls only.
  explicit SocketBatch(bool useRing = true);
  ~SocketBatch();
  SocketBatch(const SocketBatch&) = delete;
  SocketBatch& operator=(const SocketBatch&) = delete;

  // True when operations go through io_uring.
  bool ringActive() const { return ring_ != nullptr; }

  // Queue recv(fd, data, size, MSG_DONTWAIT) and send(fd, data, size, MSG_DONTWAIT |
  // MSG_NOSIGNAL). The buffer must stay valid until run() returns. At most one send per socket
  // per batch: two could complete out of order.
  void recv(int fd, void* data, std::size_t size, std::uint64_t cookie);
  void send(int fd, const void* data, std::size_t size, std::uint64_t cookie);

  // Completes everything queued, then calls done(cookie, result) once per operation, result as
  // the system call would return it: bytes, 0 (end of stream), or -errno. `done` may queue and
  // run further batches.
  template <typename Done>
  void run(Done&& done) {
    complete();
    if (results_.empty()) return;
    std::vector<Result> batch;
    batch.swap(results_);
    for (const Result& r : batch)
      done(r.cookie, r.result);
    batch.clear();
    if (results_.empty()) results_.swap(batch);  // keep the capacity
  }

  // Counters, for tests and benchmarks: operations made, and system calls they took.
  std::uint64_t operations() const { return operations_; }
  std::uint64_t systemCalls() const { return systemCalls_; }

 private:
  struct Result {
    std::uint64_t cookie;
    int result;
  };
  struct Operation {
    std::uint64_t cookie = 0;
    void* data = nullptr;
    std::size_t size = 0;
    int fd = -1;
    bool send = false;
  };
  static constexpr unsigned kEntries = 256;

  void add(const Operation& op);
  // The operation as a plain system call; its result.
  int now(const Operation& op);
  // Submits what is queued and collects every completion into results_.
  void complete();
  // After the ring failed with the first `submitted` entries of ops_ taken: the results of the
  // unfinished ones, and no ring from now on.
  void dropRing(unsigned submitted);

  std::unique_ptr<io_uring> ring_;
  unsigned queued_ = 0;  // entries filled since the last complete()
  std::array<Operation, kEntries> ops_{};
  std::array<bool, kEntries> finished_{};
  std::vector<Result> results_;
  std::uint64_t operations_ = 0;
  std::uint64_t systemCalls_ = 0;
};

}  // namespace keygate::proxy
