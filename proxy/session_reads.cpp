// A session's side of coalescing and the near cache (proxy/read_sharing.hpp,
// docs/near-cache.md): which reads are shared, and the ordering rules that keep a client's own
// writes visible to its later reads.

#include "proxy/batch_clock.hpp"
#include "proxy/client_session.hpp"
#include "proxy/commands/command_table.hpp"
#include "proxy/slot_map.hpp"
#include "proxy/worker.hpp"

namespace keygate::proxy {

void ClientSession::noteWrites(Args args, const commands::CommandInfo& info) {
  if (info.has(commands::kRead) && !info.has(commands::kWrite)) return;
  const policies::CompiledRegistry* registry = worker_.registry();
  if (registry == nullptr) return;
  // Dropped before the write is sent: no later read on this worker is answered from before it.
  for (std::size_t i = 0; i < evalScratch_.keys.size() && i < evalScratch_.patterns.size(); ++i) {
    const int pattern = evalScratch_.patterns[i];
    if (pattern < 0 || evalScratch_.keys[i].argIndex >= args.size()) continue;
    const auto& rules = registry->rules(static_cast<std::size_t>(pattern));
    if (rules.nearCache || rules.coalesce) {
      worker_.reads().keyWritten(args[evalScratch_.keys[i].argIndex]);
    }
  }
}

bool ClientSession::shareRead(Args args, std::string_view raw, Step& step) {
  const policies::CompiledRegistry* registry = worker_.registry();
  if (registry == nullptr || decided_->pattern < 0 || evalScratch_.keys.size() != 1 ||
      evalScratch_.keys[0].argIndex >= args.size() || !isShareableRead(traffic_.commandRow)) {
    return false;
  }
  const auto patternIndex = static_cast<std::size_t>(decided_->pattern);
  const auto& rules = registry->rules(patternIndex);
  if (!rules.nearCache && !rules.coalesce) return false;
  const std::string_view key = args[evalScratch_.keys[0].argIndex];
  ReadSharing& reads = worker_.reads();
  auto& counters = worker_.traffic().patterns[traffic_.patternId];

  if (rules.nearCache) {
    // Not while a write of this client is unanswered: its read must see that write.
    if (inflightWrites_ == 0) {
      if (const std::string* cached = reads.cache().find(proto_, raw, BatchClock::now())) {
        WorkerStats::add(counters.nearHits);
        const std::uint64_t seq = pushTracked(nullptr);
        completeSlot(seq, *cached);
        step = Step::kNext;
        return true;
      }
    }
    WorkerStats::add(counters.nearMisses);
  }

  // Joining: only a client with nothing else in flight, so that no request of its own that came
  // before could be overtaken (the flight went out before this client's earlier writes); and
  // its next requests wait for the flight (kFlight), which may be on another connection.
  if (rules.coalesce && slots_.empty() && routeInflight_ == 0) {
    if (const std::uint64_t flight = reads.findJoinable(proto_, policy_.index, raw)) {
      const std::uint64_t seq = pushTracked(nullptr);
      Slot& s = slots_.back();
      s.flight = flight;
      s.keySlot = cluster_ ? keyHashSlot(key) : 0;
      s.requestLen = static_cast<std::uint32_t>(raw.size());  // sent itself if the leader leaves
      sentLog_.append(raw);
      routeKind_ = RouteKind::kFlight;
      ++routeInflight_;
      armDeadline(seq, nullptr);
      reads.join(flight, shared_from_this(), seq);
      WorkerStats::add(counters.coalesced);
      step = Step::kNext;
      return true;
    }
  }

  const bool fill = rules.nearCache && reads.fillAllowed(policies::trackingPrefix(
                                           registry->pattern(patternIndex), key));
  if (!rules.coalesce && !fill) return false;
  // Fills and flights read from the master: a replica may not have applied a write whose
  // invalidation already arrived.
  const std::uint64_t before = nextSeq_;
  step = cluster_ ? sendToSlot(raw, keyHashSlot(key), 0, false) : forwardShared(raw);
  if (step != Step::kNext || nextSeq_ == before) return true;
  const std::uint64_t seq = nextSeq_ - 1;
  Slot* s = findSlot(seq);
  if (s == nullptr || s->ready) return true;  // answered at once (breaker open, node down)
  s->flight = reads.start(shared_from_this(), seq, proto_, policy_.index, raw, key,
                          traffic_.patternId, rules.coalesce, fill);
  s->flightLeader = true;
  return true;
}

void ClientSession::flightDone(std::uint64_t seq, std::string_view reply) {
  if (closed_) return;
  Slot* s = findSlot(seq);
  if (s != nullptr && !s->ready) {
    s->flight = 0;
    completeSlot(seq, reply);
  }
  noteRouteDone();  // the count it took when it joined
  markDirty();
  maybeResume();
}

bool ClientSession::leadFlight(std::uint64_t seq) {
  if (closed_) return false;
  Slot* s = findSlot(seq);
  if (s == nullptr || s->ready) {
    noteRouteDone();
    maybeResume();
    return false;
  }
  s->flightLeader = true;
  retry(seq, 0);  // sends requestOf(slot) on its connection, or answers it as a failure
  return true;
}

}  // namespace keygate::proxy
