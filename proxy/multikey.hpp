#pragma once

// Multi-key commands across Redis Cluster slots: MGET, MSET, DEL, UNLINK, EXISTS and TOUCH are
// split into one request per slot and their replies merged back into the one reply the client
// asked for, in its key order. (Like cluster-aware clients, a split MSET is not atomic across
// slots; each slot's part is.)

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/resp/reply_writer.hpp"

namespace keygate::proxy {

enum class MergeKind : std::uint8_t {
  kValues,    // MGET: one value per key, in the client's key order
  kSum,       // DEL, UNLINK, EXISTS, TOUCH, DBSIZE: integers added up
  kAllOk,     // MSET, FLUSHALL, SCRIPT FLUSH, ...: +OK when every part said OK
  kFirst,     // SCRIPT LOAD, FUNCTION LOAD: every part must succeed; the first part's reply
  kAndArray,  // SCRIPT EXISTS: arrays of 0/1, element-wise AND (1 only where every node has it)
  kConcat,    // KEYS: arrays concatenated in part order
  kNonNil,    // RANDOMKEY: the first part's reply that is not nil (nil if all are)
};

// The merge kind of a command keygate splits by slot (`name` lowercase), or nullopt.
std::optional<MergeKind> splitKindOf(std::string_view name);

struct SplitPart {
  std::uint16_t slot = 0;
  std::string request;                  // this slot's command, RESP multibulk
  std::vector<std::uint32_t> keyOrder;  // position in the client's key list of each key here
};

struct SplitPlan {
  MergeKind kind = MergeKind::kSum;
  std::size_t keyCount = 0;
  std::vector<SplitPart> parts;  // in order of each slot's first key
};

using SlotFunction = std::uint16_t (*)(std::string_view key);

// Groups argv (argv[0] the command; MSET: key value pairs) into one request per slot.
SplitPlan splitBySlot(MergeKind kind, std::span<const std::string_view> argv, SlotFunction slotOf);

class ReplyMerger {
 public:
  explicit ReplyMerger(const SplitPlan& plan);
  // A fan-out of one request to `parts` nodes (kSum, kAllOk, kFirst, kAndArray, kConcat).
  ReplyMerger(MergeKind kind, std::size_t parts);

  // Records the reply frame of plan.parts[index]. True once every part has answered.
  bool add(std::size_t index, std::string_view frame);
  bool complete() const { return answered_ == expected_; }

  // The merged reply. An error from any part becomes the reply (the first part's, in plan
  // order), since the client cannot be told which keys failed.
  std::string result() const;

 private:
  MergeKind kind_;
  std::size_t expected_;
  std::size_t answered_ = 0;
  std::vector<std::vector<std::uint32_t>> keyOrders_;
  // kValues: each key's value frame; kFirst: part 0's reply; kNonNil: each part's reply
  std::vector<std::string> values_;
  std::vector<std::int64_t> flags_;  // kAndArray
  bool haveFlags_ = false;
  std::size_t concatCount_ = 0;  // kConcat: elements so far
  std::string concat_;           // kConcat: element frames
  std::int64_t sum_ = 0;
  std::size_t errorPart_ = SIZE_MAX;
  std::string error_;
};

}  // namespace keygate::proxy
