#include "proxy/special_commands.hpp"

#include <atomic>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace keygate::proxy {

namespace {

Special classifyByName(const commands::CommandInfo& info) {
  static constexpr std::pair<std::string_view, Special> kNamed[] = {
      {"ping", Special::kPing},
      {"echo", Special::kEcho},
      {"quit", Special::kQuit},
      {"hello", Special::kHello},
      {"select", Special::kSelect},
      {"client", Special::kClient},
      {"readonly", Special::kReadMode},
      {"readwrite", Special::kReadMode},
      {"reset", Special::kReset},
      {"info", Special::kInfo},
      {"auth", Special::kAuth},
      {"multi", Special::kMulti},
      {"exec", Special::kExec},
      {"discard", Special::kDiscard},
      {"watch", Special::kWatch},
      {"unwatch", Special::kUnwatch},
      {"subscribe", Special::kSubscribe},
      {"psubscribe", Special::kPsubscribe},
      {"ssubscribe", Special::kSsubscribe},
      {"unsubscribe", Special::kUnsubscribe},
      {"punsubscribe", Special::kPunsubscribe},
      {"sunsubscribe", Special::kSunsubscribe},
      {"wait", Special::kBlocking},
      // Replication and monitoring take over the connection; the shared one cannot be given.
      {"monitor", Special::kUnsupported},
      {"sync", Special::kUnsupported},
      {"psync", Special::kUnsupported},
      {"replconf", Special::kUnsupported},
  };
  for (const auto& [name, special] : kNamed) {
    if (info.name == name) return special;
  }
  if (info.has(commands::kBlocking)) return Special::kBlocking;
  return Special::kNone;
}

}  // namespace

namespace {

// The classification of every row of the Redis 7.0 table, with the table's bounds.
struct ByRow {
  std::uintptr_t begin = 0;
  std::size_t size = 0;
  std::vector<Special> special;
};

// The table once built; null before the first lookup. Checked with a plain load instead of a
// function-local static, whose guarded initialisation makes the compiler save registers on the
// fast path too.
std::atomic<const ByRow*> gByRow{nullptr};

[[gnu::noinline, gnu::cold]] const ByRow* buildByRow() {
  static const ByRow table = [] {
    const auto rows = commands::CommandTable::redis70().all();
    ByRow t{reinterpret_cast<std::uintptr_t>(rows.data()), rows.size(),
            std::vector<Special>(rows.size())};
    for (std::size_t i = 0; i < rows.size(); ++i)
      t.special[i] = classifyByName(rows[i]);
    return t;
  }();
  gByRow.store(&table, std::memory_order_release);
  return &table;
}

}  // namespace

Special specialOf(const commands::CommandInfo& top) {
  // Built once from the immutable table: a lookup is a range check and one load (no string
  // comparisons, no call to CommandTable::redis70() per request).
  const ByRow* byRow = gByRow.load(std::memory_order_acquire);
  if (byRow == nullptr) [[unlikely]]
    byRow = buildByRow();
  // Unsigned distance: a row outside the table (a subcommand, a test's own CommandInfo) gives an
  // index past the end, also when it lies before the table.
  const std::size_t index =
      (reinterpret_cast<std::uintptr_t>(&top) - byRow->begin) / sizeof(commands::CommandInfo);
  if (index < byRow->size) return byRow->special[index];
  return classifyByName(top);
}

}  // namespace keygate::proxy
