#pragma once

// Commands the proxy core treats specially (answered locally, routed to a dedicated connection,
// or refused because they cannot work through a proxy). Everything else is forwarded as is.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/commands/command_table.hpp"

namespace keygate::proxy {

enum class Special : std::uint8_t {
  kNone,
  // answered by keygate
  kPing,
  kEcho,
  kQuit,
  kHello,
  kSelect,
  kClient,
  kReadMode,  // READONLY / READWRITE
  kReset,
  kInfo,
  // checked against Redis on the client's dedicated connection
  kAuth,
  // connection state: need the client's own upstream connection while it lasts
  kMulti,
  kExec,
  kDiscard,
  kWatch,
  kUnwatch,
  kSubscribe,
  kPsubscribe,
  kSsubscribe,
  kUnsubscribe,
  kPunsubscribe,
  kSunsubscribe,
  kBlocking,  // may block: BLPOP, BLMOVE, WAIT, XREAD/XREADGROUP with BLOCK, ...
  // cannot work through a proxy that shares upstream connections
  kUnsupported,
};

// ASCII case-insensitive comparison for command names and options (argv is not NUL-terminated).
inline bool equalsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] + 32) : a[i];
    const char y = b[i] >= 'A' && b[i] <= 'Z' ? static_cast<char>(b[i] + 32) : b[i];
    if (x != y) return false;
  }
  return true;
}

// Classification of a top-level command row of CommandTable::redis70().
Special specialOf(const commands::CommandInfo& top);

}  // namespace keygate::proxy
