#include "policies/hot_keys.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <unordered_map>

#include "policies/key_hash.hpp"

namespace keygate::policies {

namespace {

constexpr unsigned kAllBits = 64;
constexpr std::uint64_t kNoCount = ~std::uint64_t{0};

std::uint64_t halve(std::uint64_t value, unsigned times) {
  return times >= kAllBits ? 0 : value >> times;
}

// Highest count first; equal counts by key, so that snapshots are deterministic.
bool hotter(const HotKey& a, const HotKey& b) {
  return a.count != b.count ? a.count > b.count : a.key < b.key;
}

// Copies `key` into an entry's buffer. A buffer that must grow is replaced by one rounded up
// to 32 bytes rather than doubled (std::string's growth), so a key buffer never holds much
// more than the longest key it held: at most kMaxTrackedKeyBytes + 24 rounded up.
void assignKey(std::string& buffer, std::string_view key) {
  if (key.size() > buffer.capacity()) {
    std::string grown;
    grown.reserve((key.size() + 31) / 32 * 32);
    buffer = std::move(grown);
  }
  buffer.assign(key);
}

}  // namespace

void trackedKeyForm(std::string_view key, std::string& out) {
  if (key.size() <= kMaxTrackedKeyBytes) {
    out.assign(key);
    return;
  }
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, key.size()).ptr;
  out.assign(key.substr(0, kMaxTrackedKeyBytes));
  out.append("...(");
  out.append(digits, end);
  out.append(" bytes)");
}

HotKeys::HotKeys(std::size_t capacity, Clock::duration window, unsigned maxSampleShift)
    : capacity_(std::clamp<std::size_t>(capacity, 1, kMaxCapacity)),
      window_(window),
      maxShift_(std::min(maxSampleShift, kMaxSampleShift)) {}

// The slow path of sample(): this request is sampled. Its weight is 2^gapShift_, the inverse of
// the probability the gap that ends here was drawn with (so a key's recorded weight stays an
// unbiased estimate of its requests while the rate changes). Then the rate for the next gap.
std::uint64_t HotKeys::nextSample(Clock::time_point now) {
  const std::uint64_t weight = std::uint64_t{1} << gapShift_;
  if (now >= periodEnd_) {
    if (periodEnd_ == Clock::time_point::min()) {
      periodEnd_ = now + kSamplePeriod;
    } else {
      // Idle periods count as periods without requests.
      const auto periods = static_cast<std::uint64_t>(1 + (now - periodEnd_) / kSamplePeriod);
      const std::uint64_t perPeriod = periodWeight_ / periods;
      unsigned shift = 0;
      while (shift < maxShift_ && (perPeriod >> (shift + 1)) >= kSamplesPerPeriod)
        ++shift;
      shift_ = shift;
      periodEnd_ += static_cast<Clock::duration::rep>(periods) * kSamplePeriod;
    }
    periodWeight_ = 0;
    periodSamples_ = 0;
  }
  periodWeight_ += weight;
  if (++periodSamples_ >= 2 * kSamplesPerPeriod && shift_ < maxShift_) {
    ++shift_;  // a burst: halve the rate now rather than at the end of the period
    periodSamples_ = 0;
  }
  gapShift_ = shift_;
  if (shift_ == 0) {
    countdown_ = 1;
  } else {
    // Geometric gap (independent Bernoulli(2^-s) trials): 1 + floor(ln(u) / ln(1 - 2^-s)),
    // u uniform in (0, 1], from splitmix64.
    rng_ += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = rng_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    const double u = (static_cast<double>(z >> 11) + 1.0) * 0x1.0p-53;
    if (gapScaleShift_ != shift_) {
      gapScaleShift_ = shift_;
      gapScale_ = 1.0 / std::log1p(-std::ldexp(1.0, -static_cast<int>(shift_)));
    }
    const double gap = std::floor(std::log(u) * gapScale_);
    // Capped far beyond any plausible gap (u is at least 2^-53).
    countdown_ = 1 + static_cast<std::uint64_t>(std::min(gap, 1e15));
  }
  return weight;
}

void HotKeys::allocate() {
  entries_.reserve(capacity_);
  // Unused nodes (and one past the last) count kNoCount, so that siftDown() may always look
  // at two children.
  heap_.assign(capacity_ + 1, Node{kNoCount, 0});
  // At most a quarter full, so that probes and the moves of an erase are short.
  slots_.assign(std::bit_ceil(std::max<std::size_t>(4 * capacity_, 8)), Slot{0, 0});
  slotMask_ = static_cast<std::uint32_t>(slots_.size() - 1);
}

void HotKeys::clear() {
  entries_ = std::vector<Entry>();
  heap_ = std::vector<Node>();
  slots_ = std::vector<Slot>();
  slotMask_ = 0;
  longKey_ = std::string();
  evictions_ = 0;
  epoch_ = {};
  nextDecay_ = Clock::time_point::min();
  countdown_ = 1;
  gapShift_ = shift_ = 0;
  periodSamples_ = periodWeight_ = 0;
  periodEnd_ = Clock::time_point::min();
}

void HotKeys::record(std::string_view key, std::uint64_t hash, std::uint64_t weight,
                     Clock::time_point now) {
  if (weight == 0) return;
  if (now >= nextDecay_) decay(now);
  if (slots_.empty()) allocate();
  if (key.size() > kMaxTrackedKeyBytes) {
    trackedKeyForm(key, longKey_);
    key = longKey_;
    hash = keyHash64(key);
  }
  const auto tag = static_cast<std::uint32_t>(hash);

  // The common case: the key is tracked.
  for (std::uint32_t i = tag & slotMask_; slots_[i].entry != 0; i = (i + 1) & slotMask_) {
    if (slots_[i].tag != tag) continue;
    const std::uint32_t index = slots_[i].entry - 1;
    if (entries_[index].key != key) continue;
    const std::size_t pos = entries_[index].heapPos;
    heap_[pos].count += weight;
    siftDown(pos);
    return;
  }

  if (entries_.size() < capacity_) {
    const auto index = static_cast<std::uint32_t>(entries_.size());
    Entry& entry = entries_.emplace_back();  // reserved: no reallocation
    assignKey(entry.key, key);
    entry.tag = tag;
    insertSlot(tag, index);
    heap_[index] = Node{weight, index};
    entry.heapPos = index;
    siftUp(index);
    return;
  }

  // Take over the entry with the smallest count: the new key may have had up to that many.
  const Node smallest = heap_.front();
  Entry& entry = entries_[smallest.entry];
  eraseSlot(entry.tag, smallest.entry);
  assignKey(entry.key, key);  // reuses the buffer when the key fits
  entry.tag = tag;
  entry.error = smallest.count;
  insertSlot(tag, smallest.entry);
  heap_.front().count = smallest.count + weight;
  siftDown(0);
  ++evictions_;
}

void HotKeys::decay(Clock::time_point now) {
  if (window_ <= Clock::duration::zero()) {
    nextDecay_ = Clock::time_point::max();
    return;
  }
  if (nextDecay_ == Clock::time_point::min()) {  // the first record starts the first window
    epoch_ = now;
    nextDecay_ = now + window_;
    return;
  }
  const unsigned times = pendingHalvings(now);
  epoch_ += (now - epoch_) / window_ * window_;
  nextDecay_ = epoch_ + window_;
  // Halving keeps the order, so the heap stays a heap.
  for (std::size_t i = 0; i < entries_.size(); ++i)
    heap_[i].count = halve(heap_[i].count, times);
  for (Entry& entry : entries_)
    entry.error = halve(entry.error, times);
}

unsigned HotKeys::pendingHalvings(Clock::time_point now) const {
  if (window_ <= Clock::duration::zero() || nextDecay_ == Clock::time_point::min() ||
      now < nextDecay_) {
    return 0;
  }
  const auto windows = (now - epoch_) / window_;
  return windows >= kAllBits ? kAllBits : static_cast<unsigned>(windows);
}

void HotKeys::place(std::size_t pos, Node node) {
  heap_[pos] = node;
  entries_[node.entry].heapPos = static_cast<std::uint32_t>(pos);
}

// Measured on uniform keys (every record evicts and sifts from the root to a leaf): the
// branch-free child choice makes this a third faster than the branchy loop; a 4-ary heap (half
// the levels) was no faster.
void HotKeys::siftDown(std::size_t pos) {
  const Node node = heap_[pos];
  const std::size_t size = entries_.size();
  for (;;) {
    std::size_t child = 2 * pos + 1;
    if (child >= size) break;
    // Without a branch: which child is smaller is a coin toss when counts are close.
    child += heap_[child + 1].count < heap_[child].count;
    if (heap_[child].count >= node.count) break;
    place(pos, heap_[child]);
    pos = child;
  }
  place(pos, node);
}

void HotKeys::siftUp(std::size_t pos) {
  const Node node = heap_[pos];
  while (pos > 0) {
    const std::size_t parent = (pos - 1) / 2;
    if (heap_[parent].count <= node.count) break;
    place(pos, heap_[parent]);
    pos = parent;
  }
  place(pos, node);
}

void HotKeys::insertSlot(std::uint32_t tag, std::uint32_t entry) {
  std::uint32_t i = tag & slotMask_;
  while (slots_[i].entry != 0)
    i = (i + 1) & slotMask_;
  slots_[i] = Slot{tag, entry + 1};
}

// Linear probing without tombstones: the slots after the hole that may move back into it
// (their home is not between the hole and them) do, so probes stay as short as at insertion.
void HotKeys::eraseSlot(std::uint32_t tag, std::uint32_t entry) {
  std::uint32_t hole = tag & slotMask_;
  while (slots_[hole].entry != entry + 1)
    hole = (hole + 1) & slotMask_;
  for (std::uint32_t j = (hole + 1) & slotMask_; slots_[j].entry != 0; j = (j + 1) & slotMask_) {
    const std::uint32_t home = slots_[j].tag & slotMask_;
    if (((j - home) & slotMask_) >= ((j - hole) & slotMask_)) {
      slots_[hole] = slots_[j];
      hole = j;
    }
  }
  slots_[hole] = Slot{0, 0};
}

std::vector<HotKey> HotKeys::snapshot(std::size_t n, Clock::time_point now) const {
  const unsigned times = pendingHalvings(now);
  std::vector<Node> live;
  live.reserve(entries_.size());
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    if (halve(heap_[i].count, times) != 0) live.push_back(heap_[i]);
  }
  const auto top = std::min(n, live.size());
  std::partial_sort(live.begin(), live.begin() + static_cast<std::ptrdiff_t>(top), live.end(),
                    [this](const Node& a, const Node& b) {
                      if (a.count != b.count) return a.count > b.count;
                      return entries_[a.entry].key < entries_[b.entry].key;
                    });
  std::vector<HotKey> out;
  out.reserve(top);
  for (std::size_t i = 0; i < top; ++i) {
    const Entry& entry = entries_[live[i].entry];
    out.push_back(HotKey{entry.key, halve(live[i].count, times), halve(entry.error, times)});
  }
  return out;
}

std::vector<HotKey> HotKeys::merge(std::span<const std::vector<HotKey>> snapshots, std::size_t n) {
  std::unordered_map<std::string_view, std::size_t> index;
  std::vector<HotKey> out;
  for (const auto& snapshot : snapshots) {
    for (const HotKey& hot : snapshot) {
      const auto [it, inserted] = index.try_emplace(hot.key, out.size());
      if (inserted) {
        out.push_back(hot);
      } else {
        out[it->second].count += hot.count;
        out[it->second].errorBound += hot.errorBound;
      }
    }
  }
  const auto top = std::min(n, out.size());
  std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(top), out.end(), hotter);
  out.resize(top);
  return out;
}

std::size_t HotKeys::memoryBytes() const {
  const std::size_t inline_capacity = std::string().capacity();
  std::size_t bytes = entries_.capacity() * sizeof(Entry) + heap_.capacity() * sizeof(Node) +
                      slots_.capacity() * sizeof(Slot);
  for (const Entry& entry : entries_) {
    if (entry.key.capacity() > inline_capacity) bytes += entry.key.capacity() + 1;
  }
  if (longKey_.capacity() > inline_capacity) bytes += longKey_.capacity() + 1;
  return bytes;
}

}  // namespace keygate::policies
