#pragma once

// Read readiness for plain-TCP sockets, watched the way Redis' own event loop does it: each
// socket is added once to an edge-triggered epoll set of this io_context's, a socket is read only
// after that set said it has data, and a read that leaves the socket empty waits for the next
// event without another system call.
//
// Why not async_read_some: Asio 1.18 tries every read at once, including the one after a read
// that emptied the socket, which on a request/reply connection nearly always fails with EAGAIN;
// and async_wait re-arms its descriptor with epoll_ctl each time. Either way one system call per
// client batch (per request at pipeline 1) that does nothing, at 1-1.5 us each on the VMs keygate
// runs on. Here the set's own readiness is one async_wait per turn of the event loop, shared by
// every socket that became readable in it.
//
// One per io_context (an Asio service); used only from the thread that runs that io_context.

#include <sys/epoll.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdint>
#include <memory>
#include <vector>

#include "proxy/socket_batch.hpp"

namespace keygate::proxy {

namespace asio = boost::asio;

class ReadinessPoller final : public asio::execution_context::service {
 public:
  static asio::execution_context::id id;

  // The owner of a watched socket. When the set reports the socket (data, end of stream, or an
  // error), the poller reads for it, together with the other sockets reported in the same batch
  // (one system call for all of them: SocketBatch): readBuffer() says where to, readDone() gets
  // what recv() returned (bytes, 0 at end of stream, or -errno).
  class Reader {
   public:
    // Empty: not now (the owner remembers that its socket is readable and reads later).
    virtual asio::mutable_buffer readBuffer() = 0;
    virtual void readDone(int result) = 0;

   protected:
    ~Reader() = default;
  };

  // Names one registration; 0 is "none". A token outlives its registration harmlessly: events
  // still queued for a removed one are dropped.
  using Token = std::uint64_t;

  explicit ReadinessPoller(asio::io_context& io);
  ~ReadinessPoller() override;
  ReadinessPoller(const ReadinessPoller&) = delete;
  ReadinessPoller& operator=(const ReadinessPoller&) = delete;

  static ReadinessPoller& of(asio::io_context& io) {
    return asio::use_service<ReadinessPoller>(io);
  }

  // Watches `fd` until remove(). Returns 0 when it cannot (no epoll set): the caller then reads
  // with Asio's own operations. `reader` must call remove() before it goes away.
  Token add(int fd, Reader& reader);
  void remove(Token token, int fd);

  std::size_t watched() const { return live_; }

  // This io_context's batch of socket calls (also used for clients' writes, by Worker).
  SocketBatch& batch() { return *batch_; }
  // Plain system calls (the default: control-plane io_contexts never touch io_uring) or
  // io_uring where the kernel allows it (workers, config `ioUring`). Before any socket joins.
  void useRing(bool use) {
    if (use != batch_->ringActive()) batch_ = std::make_unique<SocketBatch>(use);
  }

  // One socket's membership: start() joins the poller of an io_context, stop() (or the
  // destructor) leaves it. Declare it after the socket it watches, so that it is destroyed
  // first: the socket's descriptor must still be open when it leaves the set.
  class Registration {
   public:
    Registration() = default;
    ~Registration() { stop(); }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

    // False when the socket cannot be watched: the owner reads with Asio's operations then.
    bool start(asio::io_context& io, int fd, Reader& reader) {
      poller_ = &ReadinessPoller::of(io);
      token_ = poller_->add(fd, reader);
      if (token_ == 0) poller_ = nullptr;
      fd_ = fd;
      return active();
    }
    void stop() {
      if (poller_ == nullptr) return;
      poller_->remove(token_, fd_);
      poller_ = nullptr;
    }
    bool active() const { return poller_ != nullptr; }

   private:
    ReadinessPoller* poller_ = nullptr;
    Token token_ = 0;
    int fd_ = -1;
  };

 private:
  struct Entry {
    Reader* reader = nullptr;
    int fd = -1;
    std::uint32_t generation = 0;
  };
  static constexpr int kMaxEvents = 128;

  void shutdown() override;
  // The live entry `token` names, or null (removed since, or after shutdown()).
  const Entry* find(Token token) const;
  void arm();
  void dispatch();

  asio::posix::stream_descriptor set_;  // the epoll set, itself watched by the io_context
  std::vector<Entry> entries_;
  std::vector<std::uint32_t> free_;
  std::size_t live_ = 0;
  bool armed_ = false;
  std::array<epoll_event, kMaxEvents> events_{};
  std::unique_ptr<SocketBatch> batch_;
};

}  // namespace keygate::proxy
