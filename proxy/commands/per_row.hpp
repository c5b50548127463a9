#pragma once

// Values derived from each row of the Redis 7.0 command table, computed once for the whole table
// and then found by the row's position: a range check and a load or two per request, instead of
// string comparisons or a search by name. The table is immutable, so a row's address says which
// row it is.
//
//   Special classify(const CommandInfo& row);          // the derivation, for any row
//   PerRow<Special, &classify>::of(top)                // the table's value, or classify(top)
//
// Rows outside the Redis 7.0 table (subcommands, a test's own CommandInfo) get Compute(row).

#include <atomic>
#include <cstdint>
#include <vector>

#include "proxy/commands/command_table.hpp"

namespace keygate::commands {

// Where the rows of CommandTable::redis70().all() lie.
class Redis70Rows {
 public:
  // Position of `row` in CommandTable::redis70().all(); count() or more for any other row (the
  // unsigned distance of a row that lies before the table wraps around past the end too).
  static std::size_t indexOf(const CommandInfo& row) {
    const Bounds& b = bounds();
    return (reinterpret_cast<std::uintptr_t>(&row) - b.begin) / sizeof(CommandInfo);
  }
  static std::size_t count() { return bounds().count; }

 private:
  struct Bounds {
    std::uintptr_t begin = 0;
    std::size_t count = 0;
  };
  static const Bounds& bounds() {
    const Bounds* b = known_.load(std::memory_order_acquire);
    if (b == nullptr) [[unlikely]]
      b = find();
    return *b;
  }
  [[gnu::noinline, gnu::cold]] static const Bounds* find() {
    static const Bounds found = [] {
      const auto rows = CommandTable::redis70().all();
      return Bounds{reinterpret_cast<std::uintptr_t>(rows.data()), rows.size()};
    }();
    known_.store(&found, std::memory_order_release);
    return &found;
  }
  // Null until first used. A plain load, not a function-local static's guarded initialisation,
  // which would make the compiler save registers on every lookup.
  static inline std::atomic<const Bounds*> known_{nullptr};
};

template <typename T, T (*Compute)(const CommandInfo&)>
class PerRow {
 public:
  static T of(const CommandInfo& row) {
    const std::vector<T>* values = built_.load(std::memory_order_acquire);
    if (values == nullptr) [[unlikely]]
      values = build();
    const std::size_t index = Redis70Rows::indexOf(row);
    if (index < values->size()) [[likely]]
      return (*values)[index];
    return other(row);
  }

 private:
  // Out of line, so that the lookup's fast path saves no registers for them.
  [[gnu::noinline, gnu::cold]] static const std::vector<T>* build() {
    static const std::vector<T> values = [] {
      std::vector<T> v;
      const auto rows = CommandTable::redis70().all();
      v.reserve(rows.size());
      for (const CommandInfo& row : rows)
        v.push_back(Compute(row));
      return v;
    }();
    built_.store(&values, std::memory_order_release);
    return &values;
  }
  [[gnu::noinline]] static T other(const CommandInfo& row) { return Compute(row); }

  static inline std::atomic<const std::vector<T>*> built_{nullptr};  // as Redis70Rows::known_
};

}  // namespace keygate::commands
