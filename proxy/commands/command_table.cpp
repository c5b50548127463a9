#include "proxy/commands/command_table.hpp"

#include <algorithm>
#include <bit>

#include "proxy/commands/command_table_data.hpp"

namespace keygate::commands {
namespace {

// Every request does one lookup, so names are hashed and compared in place, ASCII
// case-insensitively (as Redis does), without building a lowercase copy.

constexpr char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr std::uint32_t kFnvOffset = 2166136261u;
constexpr std::uint32_t kFnvPrime = 16777619u;

constexpr std::uint32_t hashMore(std::uint32_t h, std::string_view s) {
  for (char c : s) {
    h = (h ^ static_cast<unsigned char>(lower(c))) * kFnvPrime;
  }
  return h;
}

// FNV-1a mixes its low bits poorly; the table index uses the low bits.
constexpr std::uint32_t finish(std::uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  return h;
}

// `stored` is already lowercase.
bool equalsLower(std::string_view stored, std::string_view name) {
  if (stored.size() != name.size()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (stored[i] != lower(name[i])) return false;
  }
  return true;
}

// `stored` == container + "|" + sub, case-insensitively.
bool equalsLowerPair(std::string_view stored, std::string_view container, std::string_view sub) {
  if (stored.size() != container.size() + 1 + sub.size()) return false;
  return stored[container.size()] == '|' &&
         equalsLower(stored.substr(0, container.size()), container) &&
         equalsLower(stored.substr(container.size() + 1), sub);
}

std::size_t slotCountFor(std::size_t entries) {
  // Load factor <= 1/2 keeps linear probes short; at least 16 slots.
  return std::bit_ceil(std::max<std::size_t>(16, entries * 2));
}

}  // namespace

const CommandTable& CommandTable::redis70() {
  static const CommandTable table(generatedCommandTable().commands);
  return table;
}

CommandTable::CommandTable(std::span<const CommandInfo> rows) : rows_(rows) {
  std::size_t subCount = 0;
  for (const CommandInfo& row : rows)
    subCount += row.subcommands.size();
  commands_.resize(slotCountFor(rows.size()));
  subcommands_.resize(slotCountFor(subCount));
  for (const CommandInfo& row : rows) {
    insert(commands_, row);
    maxNameLength_ = std::max(maxNameLength_, row.name.size());
    for (const CommandInfo& sub : row.subcommands) {
      insert(subcommands_, sub);
      maxSubNameLength_ = std::max(maxSubNameLength_, sub.name.size());
    }
  }
}

void CommandTable::insert(std::vector<Slot>& slots, const CommandInfo& info) {
  const std::uint32_t h = finish(hashMore(kFnvOffset, info.name));
  const std::size_t mask = slots.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    Slot& slot = slots[i];
    if (slot.info == nullptr) {
      slot = Slot{&info, h};
      return;
    }
    if (slot.hash == h && equalsLower(slot.info->name, info.name)) return;  // first one wins
  }
}

const CommandInfo* CommandTable::find(std::string_view name) const {
  if (name.size() > maxNameLength_) return nullptr;
  const std::uint32_t h = finish(hashMore(kFnvOffset, name));
  const std::size_t mask = commands_.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& slot = commands_[i];
    if (slot.info == nullptr) return nullptr;
    if (slot.hash == h && equalsLower(slot.info->name, name)) return slot.info;
  }
}

const CommandInfo* CommandTable::findSubcommand(const CommandInfo& container,
                                                std::string_view sub) const {
  if (container.subcommands.empty()) return nullptr;
  if (container.name.size() + 1 + sub.size() > maxSubNameLength_) return nullptr;
  const std::uint32_t h =
      finish(hashMore(hashMore(hashMore(kFnvOffset, container.name), "|"), sub));
  const std::size_t mask = subcommands_.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& slot = subcommands_[i];
    if (slot.info == nullptr) return nullptr;
    if (slot.hash == h && equalsLowerPair(slot.info->name, container.name, sub)) {
      return slot.info;
    }
  }
}

const CommandInfo* CommandTable::resolve(std::span<const std::string_view> argv,
                                         bool* unknownSubcommand) const {
  if (unknownSubcommand != nullptr) *unknownSubcommand = false;
  if (argv.empty()) return nullptr;
  const CommandInfo* info = find(argv[0]);
  if (info == nullptr || !info->isContainer() || argv.size() < 2) return info;
  const CommandInfo* sub = findSubcommand(*info, argv[1]);
  if (sub == nullptr && unknownSubcommand != nullptr) *unknownSubcommand = true;
  return sub;
}

std::size_t CommandTable::size() const {
  return rows_.size();
}

std::span<const CommandInfo> CommandTable::all() const {
  return rows_;
}

}  // namespace keygate::commands
