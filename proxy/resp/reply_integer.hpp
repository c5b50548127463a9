#pragma once

// Internal to the codec: the integer grammar of reply lines (`:n`, `$len`, `*count`, ...):
// optional sign, then up to 19 decimal digits, within int64. Shared by ReplyScanner, which
// validates frames, and ReplyReader, which walks frames the scanner accepted.

#include <cstdint>
#include <string_view>

namespace keygate::resp::detail {

inline bool parseReplyInteger(std::string_view s, std::int64_t& value) {
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || s.size() > 19) return false;
  std::uint64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  constexpr auto kMax = static_cast<std::uint64_t>(INT64_MAX);
  if (v > kMax + (negative ? 1 : 0)) return false;
  value = negative ? (v == kMax + 1 ? INT64_MIN : -static_cast<std::int64_t>(v))
                   : static_cast<std::int64_t>(v);
  return true;
}

}  // namespace keygate::resp::detail
