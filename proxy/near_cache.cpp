#include "proxy/near_cache.hpp"

namespace keygate::proxy {

struct NearCache::Entry {
  std::string request;
  std::string key;
  std::string reply;
  resp::Protocol proto = resp::Protocol::kResp2;
  std::uint16_t pattern = 0;
  Clock::time_point expires{};
  Entry* lruPrev = nullptr;
  Entry* lruNext = nullptr;
  Entry* agePrev = nullptr;
  Entry* ageNext = nullptr;
  Entry* keyNext = nullptr;  // the next entry of the same key

  std::uint64_t cost() const { return entryCost(request, key, reply); }
};

namespace {

template <auto Prev, auto Next, typename E, typename L>
void unlink(L& list, E* e) {
  if (e->*Prev != nullptr) {
    (e->*Prev)->*Next = e->*Next;
  } else {
    list.head = e->*Next;
  }
  if (e->*Next != nullptr) {
    (e->*Next)->*Prev = e->*Prev;
  } else {
    list.tail = e->*Prev;
  }
  e->*Prev = e->*Next = nullptr;
}

template <auto Prev, auto Next, typename E, typename L>
void pushFront(L& list, E* e) {
  e->*Prev = nullptr;
  e->*Next = list.head;
  if (list.head != nullptr) list.head->*Prev = e;
  list.head = e;
  if (list.tail == nullptr) list.tail = e;
}

template <auto Prev, auto Next, typename E, typename L>
void pushBack(L& list, E* e) {
  e->*Next = nullptr;
  e->*Prev = list.tail;
  if (list.tail != nullptr) list.tail->*Next = e;
  list.tail = e;
  if (list.head == nullptr) list.head = e;
}

}  // namespace

NearCache::NearCache(std::size_t patternIds) : patterns_(patternIds), stats_(patternIds) {
  for (auto& s : stats_)
    s = std::make_unique<PatternStats>();
}

NearCache::~NearCache() {
  for (auto* map : {&byRequest2_, &byRequest3_}) {
    for (auto& [request, e] : *map)
      delete e;
    map->clear();
  }
}

void NearCache::configure(std::uint16_t pattern, const Limits& limits) {
  if (pattern >= patterns_.size()) return;
  Pattern& p = patterns_[pattern];
  p.limits = limits;
  if (limits.ttl.count() <= 0 || limits.maxEntries == 0 || limits.maxBytes == 0) {
    p.limits = {};
    while (p.lru.tail != nullptr)
      erase(p.lru.tail);
  } else {
    evictFor(p, pattern, 0);
  }
  publish(pattern);
}

const std::string* NearCache::find(resp::Protocol proto, std::string_view request,
                                   Clock::time_point now) {
  auto& map = requests(proto);
  if (map.empty()) return nullptr;
  auto it = map.find(request);
  if (it == map.end()) return nullptr;
  Entry* e = it->second;
  Pattern& p = patterns_[e->pattern];
  if (now >= e->expires) {
    const std::uint16_t pattern = e->pattern;
    WorkerStats::add(stats_[pattern]->expirations);
    erase(e);
    publish(pattern);
    return nullptr;
  }
  if (p.lru.head != e) {
    unlink<&Entry::lruPrev, &Entry::lruNext>(p.lru, e);
    pushFront<&Entry::lruPrev, &Entry::lruNext>(p.lru, e);
  }
  return &e->reply;
}

void NearCache::store(std::uint16_t pattern, resp::Protocol proto, std::string_view key,
                      std::string_view request, std::string_view reply, Clock::time_point now) {
  if (!enabled(pattern)) return;
  Pattern& p = patterns_[pattern];
  const std::uint64_t cost = entryCost(request, key, reply);
  if (cost > p.limits.maxBytes) return;
  auto& map = requests(proto);
  if (auto it = map.find(request); it != map.end()) erase(it->second);
  expirePattern(pattern, now);
  evictFor(p, pattern, cost);

  auto* e = new Entry;
  e->request.assign(request);
  e->key.assign(key);
  e->reply.assign(reply);
  e->proto = proto;
  e->pattern = pattern;
  e->expires = now + p.limits.ttl;
  map.emplace(e->request, e);
  auto [slot, inserted] = byKey_.try_emplace(e->key, e);
  if (!inserted) {
    // Second entry of the key: it goes behind the first, whose string the map key views.
    e->keyNext = slot->second->keyNext;
    slot->second->keyNext = e;
  }
  pushFront<&Entry::lruPrev, &Entry::lruNext>(p.lru, e);
  pushBack<&Entry::agePrev, &Entry::ageNext>(p.byAge, e);
  p.bytes += e->cost();
  ++p.entries;
  ++entryCount_;
  publish(pattern);
}

std::size_t NearCache::invalidate(std::string_view key) {
  if (byKey_.empty()) return 0;
  auto it = byKey_.find(key);
  if (it == byKey_.end()) return 0;
  std::size_t dropped = 0;
  Entry* e = it->second;
  byKey_.erase(it);  // the whole chain goes: release() need not fix the key index
  while (e != nullptr) {
    Entry* next = e->keyNext;
    const std::uint16_t pattern = e->pattern;
    WorkerStats::add(stats_[pattern]->invalidations);
    release(e);
    publish(pattern);
    ++dropped;
    e = next;
  }
  return dropped;
}

void NearCache::flush() {
  for (std::size_t i = 0; i < patterns_.size(); ++i) {
    Pattern& p = patterns_[i];
    if (p.entries == 0) continue;
    WorkerStats::add(stats_[i]->invalidations, p.entries);
    while (p.lru.tail != nullptr)
      erase(p.lru.tail);
    publish(static_cast<std::uint16_t>(i));
  }
}

void NearCache::expire(Clock::time_point now) {
  if (entryCount_ == 0) return;
  for (std::size_t i = 0; i < patterns_.size(); ++i)
    expirePattern(static_cast<std::uint16_t>(i), now);
}

void NearCache::expirePattern(std::uint16_t pattern, Clock::time_point now) {
  Pattern& p = patterns_[pattern];
  if (p.byAge.head == nullptr || p.byAge.head->expires > now) return;
  while (p.byAge.head != nullptr && p.byAge.head->expires <= now) {
    WorkerStats::add(stats_[pattern]->expirations);
    erase(p.byAge.head);
  }
  publish(pattern);
}

bool NearCache::containsKey(std::string_view key) const {
  return byKey_.find(key) != byKey_.end();
}

void NearCache::erase(Entry* e) {
  // Out of the key's chain; the head owns the map key's string, so a new head re-keys it.
  auto it = byKey_.find(e->key);
  if (it != byKey_.end()) {
    if (it->second == e) {
      Entry* next = e->keyNext;
      byKey_.erase(it);
      if (next != nullptr) byKey_.emplace(next->key, next);
    } else {
      for (Entry* x = it->second; x != nullptr; x = x->keyNext) {
        if (x->keyNext == e) {
          x->keyNext = e->keyNext;
          break;
        }
      }
    }
  }
  release(e);
}

void NearCache::release(Entry* e) {
  Pattern& p = patterns_[e->pattern];
  unlink<&Entry::lruPrev, &Entry::lruNext>(p.lru, e);
  unlink<&Entry::agePrev, &Entry::ageNext>(p.byAge, e);
  p.bytes -= e->cost();
  --p.entries;
  --entryCount_;
  requests(e->proto).erase(e->request);
  delete e;
}

void NearCache::evictFor(Pattern& p, std::uint16_t pattern, std::uint64_t bytes) {
  const std::uint64_t extra = bytes > 0 ? 1 : 0;
  while (p.lru.tail != nullptr &&
         (p.entries + extra > p.limits.maxEntries || p.bytes + bytes > p.limits.maxBytes)) {
    WorkerStats::add(stats_[pattern]->evictions);
    erase(p.lru.tail);
  }
}

void NearCache::publish(std::uint16_t pattern) {
  const Pattern& p = patterns_[pattern];
  stats_[pattern]->bytes.store(p.bytes, std::memory_order_relaxed);
  stats_[pattern]->entries.store(p.entries, std::memory_order_relaxed);
}

}  // namespace keygate::proxy
