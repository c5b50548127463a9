#pragma once

// Interface of the generated command_table_data.cpp (tools/gen_command_table.py).

#include <cstddef>
#include <span>
#include <string_view>

#include "proxy/commands/command_table.hpp"

namespace keygate::commands {

struct GeneratedTable {
  std::span<const CommandInfo> commands;  // top-level rows, sorted by name
  std::string_view redisVersion;          // redis-server the table was generated from
  std::size_t commandCount = 0;           // COMMAND COUNT of that server
  std::size_t subcommandCount = 0;        // subcommand rows in total
};

// The rows generated from redis-server 7.0's COMMAND INFO. Static storage; never changes.
const GeneratedTable& generatedCommandTable();

}  // namespace keygate::commands
