#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace keygate::proxy {

// Bytes appended one entry after another and addressed by stream offset: an entry keeps its
// offset however much of the front has been dropped. ClientSession keeps two: a cluster
// request's bytes until it is answered (for redirects), and the replies that arrived before an
// earlier request's. One buffer instead of one allocation per entry.
class StreamLog {
 public:
  // Offset the next append gets.
  std::uint64_t end() const { return base_ + bytes_.size(); }
  std::size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }

  std::uint64_t append(std::string_view entry) {
    const std::uint64_t at = end();
    bytes_.append(entry);
    return at;
  }
  // `at` must not be before what was dropped.
  std::string_view view(std::uint64_t at, std::size_t length) const {
    return std::string_view(bytes_).substr(at - base_, length);
  }

  // Nothing appended so far is needed any more. A buffer larger than keepCapacity is freed.
  void clear(std::size_t keepCapacity) {
    base_ = end();
    bytes_.clear();
    if (bytes_.capacity() > keepCapacity) std::string().swap(bytes_);
  }
  // Bytes before `at`, which nothing needs any more. Dropping them moves the rest: callers
  // do it only once that is worth it.
  std::size_t bytesBefore(std::uint64_t at) const { return at - base_; }
  void dropBefore(std::uint64_t at) {
    bytes_.erase(0, at - base_);
    base_ = at;
  }
  // Frees the buffer (offsets go on from end()).
  void release() {
    base_ = end();
    std::string().swap(bytes_);
  }

 private:
  std::string bytes_;
  std::uint64_t base_ = 0;
};

}  // namespace keygate::proxy
