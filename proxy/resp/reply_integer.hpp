#pragma once

// Internal to the codec: the integer grammar of reply lines (`:n`, `$len`, `*count`, ...):
// optional sign, then up to 19 decimal digits, within int64. Shared by ReplyScanner, which
// validates frames, and ReplyReader, which walks frames the scanner accepted. Also the fast
// reader of plain digit lines shared by ReplyScanner and RequestParser.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace keygate::resp::detail {

// Value of a decimal digit, or something over 9 for any other byte.
inline unsigned digitValue(char c) {
  return static_cast<unsigned>(static_cast<unsigned char>(c)) - unsigned{'0'};
}

// Whether p[0], p[1] are CR LF: one 16-bit compare instead of two byte compares.
inline bool isCrlf(const char* p) {
  constexpr std::uint16_t kCrlf = std::endian::native == std::endian::little ? 0x0a0d : 0x0d0a;
  std::uint16_t pair = 0;
  std::memcpy(&pair, p, sizeof pair);
  return pair == kCrlf;
}

// Most digits readPlainDigits() takes: below 10^18 < 2^63, so no overflow is possible.
constexpr std::size_t kMaxPlainDigits = 18;

// The end of a length or integer line as almost every peer writes it: 1 to kMaxPlainDigits
// decimal digits at `p`, then CR LF. Returns the byte after the LF and sets `value`; returns
// nullptr for anything else (no digit, more digits, any other byte, too few bytes), which the
// callers then read with their exact rules. Reads nothing at or past `end`. Always inlined: it
// is most of the work of framing a small element, and a call would cost as much again.
[[gnu::always_inline]] inline const char* readPlainDigits(const char* p, const char* end,
                                                          std::uint64_t& value) {
  // One or two digits (command names, most keys and values, small integers) without the loop.
  const std::ptrdiff_t avail = end - p;
  if (avail >= 3) {
    const unsigned first = digitValue(p[0]);
    if (first <= 9) {
      if (isCrlf(p + 1)) {
        value = first;
        return p + 3;
      }
      const unsigned second = digitValue(p[1]);
      if (second <= 9 && avail >= 4 && isCrlf(p + 2)) {
        value = first * 10 + second;
        return p + 4;
      }
    }
  }
  const char* const stop =
      static_cast<std::size_t>(avail) > kMaxPlainDigits ? p + kMaxPlainDigits : end;
  const char* q = p;
  std::uint64_t v = 0;
  for (; q < stop; ++q) {
    const unsigned digit = digitValue(*q);
    if (digit > 9) break;
    v = v * 10 + digit;
  }
  if (q == p || end - q < 2 || !isCrlf(q)) return nullptr;
  value = v;
  return q + 2;
}

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
