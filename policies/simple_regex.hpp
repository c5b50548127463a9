#pragma once

// An allocation-free, exception-free full-match engine for the short regexes of registry
// variables (`<name:/regex/>`, key_pattern.hpp). std::regex_match costs thousands of
// instructions and several heap allocations per call; this costs a table lookup and a few bit
// operations per byte.
//
// compile() accepts a subset of ECMAScript syntax and answers, for every pattern it accepts,
// exactly what std::regex_match(text, std::regex(pattern, std::regex::ECMAScript)) answers with
// libstdc++ (g++ 12) in the "C" global locale (keygate never changes it). Anything outside the
// subset gives nullopt and the caller keeps std::regex. The subset:
//
//   literal bytes (any byte but NUL and the specials ^ $ \ . * + ? ( ) [ ] { } |; a lone
//     ']' or '}' is literal, as in libstdc++)
//   \ + ASCII punctuation or space (identity escape), \n \r \t \f \v
//   \d \D \w \W \s \S      C-locale classes: [0-9], [0-9A-Za-z_], [ \t\n\v\f\r]; the negated
//                          forms include every byte >= 0x80
//   .                      any byte but '\n' and '\r' (ECMAScript's other line terminators,
//                          U+2028/U+2029, are multi-byte in UTF-8, and std::regex<char> sees
//                          bytes, so their bytes match '.')
//   [...] [^...]           bytes, ranges of ASCII bytes, the escapes above, \b (backspace),
//                          \d \w \s \D \W \S; '-' first, last or right after a range is
//                          literal; [] matches nothing, [^] any byte
//   ? * + {n} {n,} {n,m}   greedy or lazy (same answer for a full match), counts <= 64
//   ( ) (?: )              groups (nothing is captured)
//   |                      alternation, empty alternatives included
//   ^ as the first byte, $ as the last byte (no-ops for a full match)
//
// Not accepted (nullopt): backreferences, \0, \b \B outside brackets, lookahead, \c \x \u,
// identity escapes of letters or digits, [[:class:]] [[.x.]] [[=x=]], ranges with bytes
// >= 0x80, stacked quantifiers (a**), ^ or $ anywhere else, nesting deeper than 32, and
// patterns needing more than kMaxPositions byte-matching positions (each copy of a counted
// repeat counts: [a-z0-9]{0,62} needs 62).
//
// The engine is a Glushkov (position) automaton: the epsilon-free form of a Thompson NFA, one
// state per byte-matching position of the pattern, so a state set is one std::uint64_t. A
// match step is `next = (union of follow[p] for p in current) & byteMask[byte]`.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace keygate::policies {

class SimpleRegex {
 public:
  static constexpr std::size_t kMaxPositions = 64;
  static constexpr int kMaxCount = 64;  // largest n or m accepted in {n}, {n,}, {n,m}
  static constexpr int kMaxDepth = 32;  // group nesting

  // The compiled form of `pattern` (ECMAScript syntax, the subset above), or std::nullopt when
  // it uses anything outside the subset or is too big (the caller then keeps std::regex).
  // Allocates while compiling; never throws except std::bad_alloc.
  static std::optional<SimpleRegex> compile(std::string_view pattern);

  // Whether the WHOLE text matches (std::regex_match semantics). No allocation, no exceptions,
  // time linear in text.size() x positions.
  bool fullMatch(std::string_view text) const noexcept;

  // Byte-matching positions (automaton states) the pattern compiled to.
  std::size_t positions() const { return positions_; }

 private:
  friend class SimpleRegexBuilder;  // simple_regex.cpp
  SimpleRegex() = default;

  std::array<std::uint64_t, 256> byteMask_{};          // positions that accept each byte
  std::array<std::uint64_t, kMaxPositions> follow_{};  // positions that may come next
  std::uint64_t first_ = 0;                            // positions that may match the first byte
  std::uint64_t last_ = 0;                             // positions that may match the last byte
  bool nullable_ = false;                              // whether the empty text matches
  std::uint8_t positions_ = 0;
};

}  // namespace keygate::policies
