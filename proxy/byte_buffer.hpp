#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

namespace keygate::proxy {

// A contiguous read buffer: bytes arrive at the back (prepare/commit), are consumed from the
// front. Views returned by readable() stay valid until the next prepare() or consume().
// Capacity only grows to what a caller asks for, and callers only ask for sizes they have
// already checked against the protocol limits.
class ByteBuffer {
 public:
  explicit ByteBuffer(std::size_t initial = 0) { reserveTotal(initial); }

  std::string_view readable() const { return {data_.get() + begin_, end_ - begin_}; }
  std::size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  std::size_t capacity() const { return capacity_; }

  // Returns at least `minFree` writable bytes at the back, compacting or growing as needed.
  std::span<char> prepare(std::size_t minFree) {
    if (capacity_ - end_ < minFree) {
      if (begin_ > 0 && capacity_ - size() >= minFree) {
        compact();
      } else {
        grow(size() + minFree);
      }
    }
    return {data_.get() + end_, capacity_ - end_};
  }

  void commit(std::size_t n) { end_ += n; }

  void consume(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }

  // Makes room for a request or reply of `total` bytes starting at the front.
  void reserveTotal(std::size_t total) {
    if (total > capacity_ - begin_) {
      if (total <= capacity_) {
        compact();
      } else {
        grow(total);
      }
    }
  }

  // Releases a large buffer once it is empty again, so one big value does not pin memory.
  void shrinkIfEmpty(std::size_t keep) {
    if (empty() && capacity_ > keep) {
      data_.reset();
      capacity_ = 0;
      reserveTotal(keep);
    }
  }

 private:
  void compact() {
    if (begin_ == 0) return;
    std::memmove(data_.get(), data_.get() + begin_, size());
    end_ -= begin_;
    begin_ = 0;
  }

  void grow(std::size_t needed) {
    std::size_t cap = capacity_ == 0 ? 4096 : capacity_;
    while (cap < needed)
      cap *= 2;
    // Doubling may overshoot a checked size by up to 2x; cap at `needed` for big ones.
    if (cap > needed && needed > (std::size_t{1} << 20)) cap = needed;
    auto fresh = std::make_unique_for_overwrite<char[]>(cap);
    if (size() > 0) std::memcpy(fresh.get(), data_.get() + begin_, size());
    end_ -= begin_;
    begin_ = 0;
    data_ = std::move(fresh);
    capacity_ = cap;
  }

  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace keygate::proxy
