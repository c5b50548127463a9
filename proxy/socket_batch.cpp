#include "proxy/socket_batch.hpp"

#include <liburing.h>
#include <sys/socket.h>

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
  if (rc == 0) ring_ = std::move(ring);
}

SocketBatch::~SocketBatch() {
  if (ring_) io_uring_queue_exit(ring_.get());
}

io_uring_sqe* SocketBatch::nextEntry() {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) {
    complete();  // the queue is full: its results wait in results_ for run()
    if (!ring_) return nullptr;
    sqe = io_uring_get_sqe(ring_.get());
  }
  return sqe;
}

void SocketBatch::recv(int fd, void* data, std::size_t size, std::uint64_t cookie) {
  ++operations_;
  io_uring_sqe* sqe = ring_ ? nextEntry() : nullptr;
  if (sqe == nullptr) {
    ++systemCalls_;
    results_.push_back(Result{cookie, resultOf(::recv(fd, data, size, kRecvFlags))});
    return;
  }
  io_uring_prep_recv(sqe, fd, data, size, kRecvFlags);
  track(sqe, cookie);
}

void SocketBatch::send(int fd, const void* data, std::size_t size, std::uint64_t cookie) {
  ++operations_;
  io_uring_sqe* sqe = ring_ ? nextEntry() : nullptr;
  if (sqe == nullptr) {
    ++systemCalls_;
    results_.push_back(Result{cookie, resultOf(::send(fd, data, size, kSendFlags))});
    return;
  }
  io_uring_prep_send(sqe, fd, data, size, kSendFlags);
  track(sqe, cookie);
}

void SocketBatch::track(io_uring_sqe* sqe, std::uint64_t cookie) {
  // The entry carries its place in cookies_, so that the operations a failed ring never
  // finished can still be reported.
  io_uring_sqe_set_data64(sqe, queued_);
  cookies_[queued_] = cookie;
  finished_[queued_] = false;
  ++queued_;
}

void SocketBatch::complete() {
  if (queued_ == 0) return;
  unsigned submitted = 0;
  while (submitted < queued_) {
    ++systemCalls_;
    const int rc = io_uring_submit(ring_.get());
    if (rc > 0) {
      submitted += static_cast<unsigned>(rc);
    } else if (rc != -EINTR && rc != -EAGAIN) {
      break;  // nothing more will go in; see below
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
      results_.push_back(Result{cookies_[slot], cqe->res});
      ++completed;
    }
    io_uring_cqe_seen(ring_.get(), cqe);
  }
  if (submitted == queued_ && completed == submitted) {
    queued_ = 0;
    return;
  }
  // The ring itself failed (it does not once set up, short of the kernel running out of memory).
  // Its unfinished operations are reported as failed, and from now on plain system calls.
  for (unsigned slot = 0; slot < queued_; ++slot) {
    if (!finished_[slot]) results_.push_back(Result{cookies_[slot], -EIO});
  }
  io_uring_queue_exit(ring_.get());
  ring_.reset();
  queued_ = 0;
}

}  // namespace keygate::proxy
