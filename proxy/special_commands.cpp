#include "proxy/special_commands.hpp"

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/commands/per_row.hpp"

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

Special specialOf(const commands::CommandInfo& top) {
  return commands::PerRow<Special, &classifyByName>::of(top);
}

}  // namespace keygate::proxy
