#pragma once

// Commands the proxy core treats specially (answered locally, routed to a dedicated connection,
// or refused because they cannot work through a proxy). Everything else is forwarded as is.

#include <cstdint>

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

// Classification of a top-level command row of CommandTable::redis70().
Special specialOf(const commands::CommandInfo& top);

}  // namespace keygate::proxy
