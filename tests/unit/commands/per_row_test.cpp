#include "proxy/commands/per_row.hpp"

#include <catch2/catch.hpp>
#include <string_view>

namespace keygate::commands {
namespace {

// Counts its calls, so that the test can tell a table lookup from a computation.
int gComputed = 0;
std::size_t nameLength(const CommandInfo& row) {
  ++gComputed;
  return row.name.size();
}
using NameLength = PerRow<std::size_t, &nameLength>;

TEST_CASE("PerRow: every row of the Redis 7.0 table gets its value from the table built once") {
  const auto rows = CommandTable::redis70().all();
  REQUIRE(Redis70Rows::count() == rows.size());
  gComputed = 0;
  CHECK(NameLength::of(rows[0]) == rows[0].name.size());  // builds the table: one call per row
  CHECK(gComputed == static_cast<int>(rows.size()));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CHECK(Redis70Rows::indexOf(rows[i]) == i);
    CHECK(NameLength::of(rows[i]) == rows[i].name.size());
  }
  CHECK(gComputed == static_cast<int>(rows.size()));  // no further computation
}

TEST_CASE("PerRow: rows outside the table (subcommands, other tables) are computed") {
  const auto& table = CommandTable::redis70();
  const CommandInfo* client = table.find("client");
  REQUIRE(client != nullptr);
  const CommandInfo* setname = table.findSubcommand(*client, "setname");
  REQUIRE(setname != nullptr);
  (void)NameLength::of(*client);  // the table is built
  gComputed = 0;
  CHECK(Redis70Rows::indexOf(*setname) >= Redis70Rows::count());
  CHECK(NameLength::of(*setname) == std::string_view("client|setname").size());
  CHECK(gComputed == 1);

  // Rows elsewhere in memory (the stack, static storage), on either side of the table.
  const CommandInfo before{"a-row-of-a-test"};
  static const CommandInfo after{"another"};
  CHECK(NameLength::of(before) == before.name.size());
  CHECK(NameLength::of(after) == after.name.size());
  CHECK(gComputed == 3);
}

}  // namespace
}  // namespace keygate::commands
