#include "proxy/special_commands.hpp"

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

Special specialOf(const commands::CommandInfo& top) {
  // Built once from the immutable table; indexed by row position, so a lookup is one load.
  static const std::vector<Special> kByRow = [] {
    const auto rows = commands::CommandTable::redis70().all();
    std::vector<Special> v(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i)
      v[i] = classifyByName(rows[i]);
    return v;
  }();
  const auto rows = commands::CommandTable::redis70().all();
  if (&top >= rows.data() && &top < rows.data() + rows.size()) {
    return kByRow[static_cast<std::size_t>(&top - rows.data())];
  }
  return classifyByName(top);
}

}  // namespace keygate::proxy
