#include "policies/big_keys.hpp"

#include <algorithm>
#include <unordered_map>

#include "policies/hot_keys.hpp"

namespace keygate::policies {

namespace {

bool bigger(const BigKeys::Entry& a, const BigKeys::Entry& b) {
  if (a.bytes != b.bytes) return a.bytes > b.bytes;
  if (a.when != b.when) return a.when > b.when;
  return a.key < b.key;
}

}  // namespace

BigKeys::BigKeys(std::size_t capacity, Clock::duration window)
    : capacity_(std::clamp<std::size_t>(capacity, 1, kMaxCapacity)), window_(window) {}

bool BigKeys::expired(const Entry& entry, Clock::time_point now) const {
  return window_ > Clock::duration::zero() && now - entry.when >= window_;
}

void BigKeys::clear() {
  entries_ = std::vector<Entry>();
  trackedKey_ = std::string();
  refresh();
}

void BigKeys::dropExpired(Clock::time_point now) {
  std::erase_if(entries_, [&](const Entry& entry) { return expired(entry, now); });
}

void BigKeys::refresh() {
  full_ = entries_.size() >= capacity_;
  minBytes_ = 0;
  oldestExpiry_ = Clock::time_point::max();
  if (entries_.empty()) return;
  minBytes_ = entries_.front().bytes;
  auto oldest = entries_.front().when;
  for (const Entry& entry : entries_) {
    minBytes_ = std::min(minBytes_, entry.bytes);
    oldest = std::min(oldest, entry.when);
  }
  if (window_ > Clock::duration::zero()) oldestExpiry_ = oldest + window_;
}

void BigKeys::insert(std::string_view key, std::uint64_t bytes, Clock::time_point now) {
  if (now >= oldestExpiry_) dropExpired(now);
  if (key.size() > kMaxTrackedKeyBytes) {
    trackedKeyForm(key, trackedKey_);
    key = trackedKey_;
  }
  const auto same = std::find_if(entries_.begin(), entries_.end(),
                                 [key](const Entry& entry) { return entry.key == key; });
  if (same != entries_.end()) {
    // The key's biggest write in the window stands; a smaller later one does not replace it.
    if (bytes >= same->bytes) {
      same->bytes = bytes;
      same->when = now;
    }
  } else if (entries_.size() < capacity_) {
    if (entries_.capacity() == 0) entries_.reserve(capacity_);
    entries_.push_back(Entry{std::string(key), bytes, now});
  } else {
    // Full: the new write replaces the smallest entry (the oldest of equal ones), if bigger.
    const auto smallest =
        std::min_element(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
          return a.bytes != b.bytes ? a.bytes < b.bytes : a.when < b.when;
        });
    if (bytes <= smallest->bytes) {
      refresh();
      return;
    }
    smallest->key.assign(key);
    smallest->bytes = bytes;
    smallest->when = now;
  }
  refresh();
}

std::vector<BigKeys::Entry> BigKeys::snapshot(Clock::time_point now) const {
  std::vector<Entry> out;
  out.reserve(entries_.size());
  for (const Entry& entry : entries_) {
    if (!expired(entry, now)) out.push_back(entry);
  }
  std::sort(out.begin(), out.end(), bigger);
  return out;
}

std::vector<BigKeys::Entry> BigKeys::merge(std::span<const std::vector<Entry>> snapshots,
                                           std::size_t n) {
  std::unordered_map<std::string_view, std::size_t> index;
  std::vector<Entry> out;
  for (const auto& snapshot : snapshots) {
    for (const Entry& entry : snapshot) {
      const auto [it, inserted] = index.try_emplace(entry.key, out.size());
      if (inserted) {
        out.push_back(entry);
      } else if (bigger(entry, out[it->second])) {
        out[it->second].bytes = entry.bytes;
        out[it->second].when = entry.when;
      }
    }
  }
  const auto top = std::min(n, out.size());
  std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(top), out.end(), bigger);
  out.resize(top);
  return out;
}

}  // namespace keygate::policies
