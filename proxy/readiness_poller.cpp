#include "proxy/readiness_poller.hpp"

#include <unistd.h>

#include <cerrno>

namespace keygate::proxy {

asio::execution_context::id ReadinessPoller::id;

namespace {
constexpr std::uint64_t tokenOf(std::uint32_t index, std::uint32_t generation) {
  return (static_cast<std::uint64_t>(generation) << 32) | (static_cast<std::uint64_t>(index) + 1);
}
}  // namespace

ReadinessPoller::ReadinessPoller(asio::io_context& io)
    : asio::execution_context::service(io), set_(io), batch_(std::make_unique<SocketBatch>(false)) {
  const int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return;
  boost::system::error_code ec;
  set_.assign(fd, ec);
  if (ec) ::close(fd);
}

ReadinessPoller::~ReadinessPoller() = default;

void ReadinessPoller::shutdown() {
  // The io_context is going away: its pending operations are destroyed, never run.
  boost::system::error_code ignored;
  set_.close(ignored);
  entries_.clear();
  free_.clear();
  live_ = 0;
}

ReadinessPoller::Token ReadinessPoller::add(int fd, Reader& reader) {
  if (!set_.is_open()) return 0;
  std::uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    index = static_cast<std::uint32_t>(entries_.size());
    entries_.emplace_back();
  }
  Entry& entry = entries_[index];
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = tokenOf(index, entry.generation);
  if (::epoll_ctl(set_.native_handle(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    free_.push_back(index);
    return 0;
  }
  entry.reader = &reader;
  entry.fd = fd;
  ++live_;
  arm();
  return ev.data.u64;
}

const ReadinessPoller::Entry* ReadinessPoller::find(Token token) const {
  const auto index = static_cast<std::uint32_t>((token & 0xffffffffu) - 1);  // 0 -> past the end
  if (index >= entries_.size()) return nullptr;
  const Entry& entry = entries_[index];
  if (entry.reader == nullptr || tokenOf(index, entry.generation) != token) return nullptr;
  return &entry;
}

void ReadinessPoller::remove(Token token, int fd) {
  const Entry* found = find(token);
  if (found == nullptr) return;
  const auto index = static_cast<std::uint32_t>(found - entries_.data());
  Entry& entry = entries_[index];
  if (set_.is_open() && fd >= 0) {
    epoll_event ev{};  // (a non-null event for kernels before 2.6.9)
    ::epoll_ctl(set_.native_handle(), EPOLL_CTL_DEL, fd, &ev);
  }
  entry.reader = nullptr;
  entry.fd = -1;
  ++entry.generation;  // events already harvested for it no longer match
  free_.push_back(index);
  // Nothing left to watch: the wait goes too, so that an io_context with no other work stops
  // (io_context::run() returns), as it would once the last socket's read completed.
  if (--live_ == 0 && armed_) {
    boost::system::error_code ignored;
    set_.cancel(ignored);
  }
}

void ReadinessPoller::arm() {
  if (armed_ || live_ == 0 || !set_.is_open()) return;
  armed_ = true;
  set_.async_wait(asio::posix::stream_descriptor::wait_read,
                  [this](const boost::system::error_code& ec) {
                    armed_ = false;
                    // Cancelled when the last socket went (re-armed if one came since), or the
                    // set is closed (shutdown(): arm() does nothing).
                    if (!ec) dispatch();
                    arm();
                  });
}

void ReadinessPoller::dispatch() {
  // A full batch may leave more: take a few, then let the rest of the event loop run.
  for (int round = 0; round < 4; ++round) {
    const int n = ::epoll_wait(set_.native_handle(), events_.data(), kMaxEvents, 0);
    if (n <= 0) return;  // none, or EINTR: the set stays readable and wakes us again
    // Every reported socket's read in one batch, then their owners told, in event order. The
    // lookup is repeated for each result: an owner told earlier may have removed others (whose
    // reads completed before any owner ran: their buffers were still theirs).
    for (int i = 0; i < n; ++i) {
      const Token token = events_[static_cast<std::size_t>(i)].data.u64;
      if (const Entry* entry = find(token)) {
        const asio::mutable_buffer buffer = entry->reader->readBuffer();
        if (buffer.size() > 0) batch_->recv(entry->fd, buffer.data(), buffer.size(), token);
      }
    }
    batch_->run([this](Token token, int result) {
      if (const Entry* entry = find(token)) entry->reader->readDone(result);
    });
    if (n < kMaxEvents) return;
  }
}

}  // namespace keygate::proxy
