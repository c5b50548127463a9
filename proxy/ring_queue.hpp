#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace keygate::proxy {

// A FIFO over one power-of-two array, for the per-request queues of the data path (a client's
// slots, a connection's in-flight list): push at the back, pop at the front, and index from
// the front, with no allocation once the array is big enough (std::deque allocates a block
// every few elements of a large T, and its indexing is a division). A popped element is reset
// to T{} at once, so whatever it owned (a shared_ptr, a string's buffer) is released when it
// leaves the queue, not when its cell is reused. The array is given back when the queue
// empties past `keep` cells, so one burst does not pin its memory for the connection's life.
template <typename T>
class RingQueue {
 public:
  explicit RingQueue(std::size_t keep = 64) : keep_(keep) {}
  RingQueue(const RingQueue&) = delete;
  RingQueue& operator=(const RingQueue&) = delete;
  // The moved-from queue is empty. (No move assignment: nothing needs one.)
  RingQueue(RingQueue&& other) noexcept
      : cells_(std::move(other.cells_)),
        head_(std::exchange(other.head_, 0)),
        size_(std::exchange(other.size_, 0)),
        mask_(std::exchange(other.mask_, 0)),
        keep_(other.keep_) {
    other.cells_.clear();
  }

  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return cells_.size(); }

  T& front() { return cells_[head_]; }
  const T& front() const { return cells_[head_]; }
  T& back() { return cells_[(head_ + size_ - 1) & mask_]; }
  const T& back() const { return cells_[(head_ + size_ - 1) & mask_]; }
  // i-th from the front; i < size().
  T& operator[](std::size_t i) { return cells_[(head_ + i) & mask_]; }
  const T& operator[](std::size_t i) const { return cells_[(head_ + i) & mask_]; }

  // A default-constructed element at the back.
  T& emplace_back() {
    if (size_ == cells_.size()) grow();
    T& cell = cells_[(head_ + size_) & mask_];
    ++size_;
    return cell;
  }
  void push_back(T value) { emplace_back() = std::move(value); }

  void pop_front() {
    T& cell = cells_[head_];
    std::destroy_at(&cell);  // cheaper than assigning a T{} (a temporary built, moved, destroyed)
    std::construct_at(&cell);
    head_ = (head_ + 1) & mask_;
    if (--size_ == 0) reset();
  }

  void clear() {
    while (size_ > 0)
      pop_front();  // the last one gives the array back (reset())
  }

 private:
  void grow() {
    std::vector<T> bigger(cells_.empty() ? 8 : cells_.size() * 2);
    for (std::size_t i = 0; i < size_; ++i)
      bigger[i] = std::move((*this)[i]);
    cells_.swap(bigger);
    head_ = 0;
    mask_ = cells_.size() - 1;
  }
  void reset() {
    head_ = 0;
    if (cells_.size() > keep_) {
      std::vector<T>().swap(cells_);
      mask_ = 0;
    }
  }

  std::vector<T> cells_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
  std::size_t mask_ = 0;
  const std::size_t keep_;
};

}  // namespace keygate::proxy
