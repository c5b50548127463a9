#include "proxy/socket_batch.hpp"

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace keygate::proxy {

namespace {

constexpr int kRecvFlags = MSG_DONTWAIT;
constexpr int kSendFlags = MSG_DONTWAIT | MSG_NOSIGNAL;

int resultOf(ssize_t n) {
  return n >= 0 ? static_cast<int>(n) : -errno;
}

}  // namespace

SocketBatch::SocketBatch(bool useRing) {
  if (!useRing) return;
  auto ring = std::make_unique<io_uring>();
  io_uring_params params{};
  // Every entry submitted even when one fails to start (5.18); completions posted without
  // interrupting the task (5.19). Older kernels refuse the flags: then without them.
  params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
  int rc = io_uring_queue_init_params(kEntries, ring.get(), &params);
  if (rc == -EINVAL) {
    params = io_uring_params{};
    rc = io_uring_queue_init_params(kEntries, ring.get(), &params);
  }
  if (rc != 0) return;  // no io_uring here (ENOSYS), or not for us (EPERM: seccomp, sysctl)
  // A ring without socket send and receive (Linux 5.1-5.5) is no use: every operation would
  // fail with EINVAL.
  io_uring_probe* probe = io_uring_get_probe_ring(ring.get());
  const bool usable = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_SEND) &&
                      io_uring_opcode_supported(probe, IORING_OP_RECV);
  if (probe != nullptr) io_uring_free_probe(probe);
  if (!usable) {
    io_uring_queue_exit(ring.get());
    return;
  }
  ring_ = std::move(ring);
}

SocketBatch::~SocketBatch() {
  if (ring_) io_uring_queue_exit(ring_.get());
}

int SocketBatch::now(const Operation& op) {
  ++systemCalls_;
  const ssize_t n = op.send ? ::send(op.fd, op.data, op.size, kSendFlags)
                            : ::recv(op.fd, op.data, op.size, kRecvFlags);
  return resultOf(n);
}

void SocketBatch::add(const Operation& op) {
  ++operations_;
  // Full: its results wait in results_ for run(). (The ring may fail doing that.)
  if (ring_ && queued_ == kEntries) complete();
  if (!ring_) {
    results_.push_back(Result{op.cookie, now(op)});
    return;
  }
  ops_[queued_++] = op;
}

void SocketBatch::recv(int fd, void* data, std::size_t size, std::uint64_t cookie) {
  add(Operation{cookie, data, size, fd, false});
}

void SocketBatch::send(int fd, const void* data, std::size_t size, std::uint64_t cookie) {
  add(Operation{cookie, const_cast<void*>(data), size, fd, true});
}

void SocketBatch::complete() {
  if (queued_ == 0) return;
  if (queued_ == 1) {
    // One operation: the plain call costs less than a submission (a lone client's turn).
    results_.push_back(Result{ops_[0].cookie, now(ops_[0])});
    queued_ = 0;
    return;
  }
  std::fill_n(finished_.begin(), queued_, false);
  for (unsigned slot = 0; slot < queued_; ++slot) {
    const Operation& op = ops_[slot];
    // The queue is empty here and holds kEntries: there is always an entry. (Were there not,
    // nothing of this round has gone in yet.)
    io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
    if (sqe == nullptr) {
      dropRing(0);
      return;
    }
    if (op.send) {
      io_uring_prep_send(sqe, op.fd, op.data, op.size, kSendFlags);
    } else {
      io_uring_prep_recv(sqe, op.fd, op.data, op.size, kRecvFlags);
    }
    // The entry carries its place in ops_: a ring that fails can still account for each one.
    io_uring_sqe_set_data64(sqe, slot);
  }
  unsigned submitted = 0;
  // EINTR and EAGAIN (the kernel short of memory for a moment) are worth a few more tries.
  for (int attempt = 0; submitted < queued_ && attempt < 16; ++attempt) {
    ++systemCalls_;
    const int rc = io_uring_submit(ring_.get());
    if (rc > 0) {
      submitted += static_cast<unsigned>(rc);
    } else if (rc != -EINTR && rc != -EAGAIN) {
      break;
    }
  }
  unsigned completed = 0;
  while (completed < submitted) {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_peek_cqe(ring_.get(), &cqe) != 0) {
      // Not finished inside the submit call (it should have: MSG_DONTWAIT). Wait for it: no
      // buffer may be written to after run() returns.
      ++systemCalls_;
      const int rc = io_uring_wait_cqe(ring_.get(), &cqe);
      if (rc == -EINTR) continue;
      if (rc != 0) break;
    }
    const std::uint64_t slot = io_uring_cqe_get_data64(cqe);
    if (slot < queued_ && !finished_[slot]) {
      finished_[slot] = true;
      results_.push_back(Result{ops_[slot].cookie, cqe->res});
      ++completed;
    }
    io_uring_cqe_seen(ring_.get(), cqe);
  }
  if (submitted == queued_ && completed == submitted) {
    queued_ = 0;
    return;
  }
  dropRing(submitted);
}

void SocketBatch::dropRing(unsigned submitted) {
  // The ring failed (it does not once set up, short of the kernel running out of memory). The
  // entries it never took are made as plain system calls; one it took and never finished is
  // reported failed (its connection closes). From now on, plain system calls.
  for (unsigned slot = 0; slot < queued_; ++slot) {
    if (finished_[slot]) continue;
    results_.push_back(Result{ops_[slot].cookie, slot >= submitted ? now(ops_[slot]) : -EIO});
  }
  queued_ = 0;
  io_uring_queue_exit(ring_.get());
  ring_.reset();
}

}  // namespace keygate::proxy
