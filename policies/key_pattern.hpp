#pragma once

// Registry key patterns (SPEC.md section 3). WYSIWYG: a pattern looks like the key on the wire;
// `<name>` is a variable matching one non-empty run of bytes without ':'; everything else is
// literal, braces included (the Redis hash tag stays visible):
//
//   cpq:{tenant-<tenant>}:pricing:preview:quote-<quoteId>:rev-<rev:int>:policy-<policy>
//
// Variable types: `<name>` (or `<name:any>`) any run without ':'; `<name:int>` ASCII digits;
// `<name:hex>` [0-9a-fA-F]; `<name:uuid>` 8-4-4-4-12 hex digits; `<name:/regex/>` an ECMAScript
// regex the whole run must match (still without ':'; the regex ends at the first "/>", and
// never matches a run longer than kMaxRegexRun bytes). `<tenant>` is the reserved tenant
// variable and takes no type. `\<` and `\>` are literal angle brackets; every other byte,
// backslashes included, is literal. A lone `>` is an error (write `\>`).
//
// Because no variable matches ':', a pattern is a sequence of ':'-separated segments and matches
// only keys with the same number of segments; KeyMatcher (key_matcher.hpp) relies on that.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keygate::policies {

// One `name=value` of a matched key. `name` views into the KeyPattern (valid while it lives and
// is not moved), `value` into the matched key.
struct Capture {
  std::string_view name;
  std::string_view value;
};
using Captures = std::vector<Capture>;

// The value of `name` in `captures`, or nullopt.
std::optional<std::string_view> findCapture(const Captures& captures, std::string_view name);

inline constexpr std::string_view kTenantVariable = "tenant";
inline constexpr std::size_t kMaxSegments = 64;    // per pattern (':'-separated parts)
inline constexpr std::size_t kMaxRegexRun = 1024;  // std::regex recurses per byte
inline constexpr std::size_t kMaxPatternBytes = 4096;

enum class VarType : std::uint8_t { kAny, kInt, kHex, kUuid, kRegex };

// Parsed structure, exposed for KeyMatcher (trie and overlap analysis). Not a stable API.
namespace detail {

struct CompiledRegex;  // a std::regex, kept out of this header (key_pattern.cpp)

struct Variable {
  std::uint32_t nameOffset = 0;  // into KeyPattern::text()
  std::uint32_t nameSize = 0;
  VarType type = VarType::kAny;
  std::shared_ptr<const CompiledRegex> regex;  // kRegex only; shared: copies stay cheap
  std::string regexText;                       // kRegex only, without the slashes
};

// One ':'-separated part of a pattern: literal pieces and variables, never two variables in a
// row. Stored as prefix, then (variable, literal)* with the last literal being the suffix:
//   prefix <v0> lit0 <v1> lit1 ... <vn> suffix     (lits[i] follows vars[i]; lits.back() = suffix)
struct Segment {
  std::string prefix;               // whole segment when vars is empty
  std::vector<std::uint32_t> vars;  // indexes into KeyPattern's variables
  std::vector<std::string> lits;    // lits.size() == vars.size()
  std::uint32_t rawBegin = 0;  // [rawBegin, rawEnd) in text(): identical raw text, same segment
  std::uint32_t rawEnd = 0;
  std::size_t minSize = 0;  // shortest run this segment can match
  bool literal() const { return vars.empty(); }
};

// Whether `run` (which holds no ':') fits a variable of type `type`, for every type but kRegex
// (false): non-empty, and ASCII digits for kInt, [0-9a-fA-F] for kHex, 8-4-4-4-12 hex digits
// for kUuid. Inline for KeyMatcher's hot loop; KeyPattern checks variables with it too.
inline bool fitsPlain(VarType type, std::string_view run) {
  const auto digit = [](char c) { return static_cast<unsigned char>(c - '0') < 10; };
  // c | 0x20 folds 'A'-'F' onto 'a'-'f' (and no other byte onto them).
  const auto hex = [&](char c) {
    return digit(c) || static_cast<unsigned char>((c | 0x20) - 'a') < 6;
  };
  if (run.empty()) return false;
  switch (type) {
    case VarType::kAny:
      return true;
    case VarType::kInt:
      for (const char c : run) {
        if (!digit(c)) return false;
      }
      return true;
    case VarType::kHex:
      for (const char c : run) {
        if (!hex(c)) return false;
      }
      return true;
    case VarType::kUuid:
      if (run.size() != 36) return false;
      for (std::size_t i = 0; i < 36; ++i) {
        if (i == 8 || i == 13 || i == 18 || i == 23 ? run[i] != '-' : !hex(run[i])) return false;
      }
      return true;
    case VarType::kRegex:
      break;
  }
  return false;
}

}  // namespace detail

class KeyPattern {
 public:
  // An empty pattern: no text, no variables, matches no key. Real ones come from parse().
  KeyPattern() = default;

  // Parses `text`; on a syntax error returns nullopt and sets *error (when given) to a sentence
  // starting with "column N:" (1-based, in `text`) that says what is wrong and how to fix it.
  static std::optional<KeyPattern> parse(std::string_view text, std::string* error);

  const std::string& text() const { return text_; }

  // Whether `key` matches the whole pattern. `captures`, when given, is cleared and, on a match,
  // holds every variable in pattern order. No allocation unless `captures` must grow or a regex
  // variable runs.
  bool match(std::string_view key, Captures* captures = nullptr) const;

  bool hasVariable(std::string_view name) const;
  std::vector<std::string_view> variableNames() const;
  VarType variableType(std::string_view name) const;  // kAny when there is no such variable

  // Writes the key this pattern describes into `out` (replacing it), each variable taken from
  // `vars` by name (extra entries are ignored). False, with *error set, when a variable has no
  // value or its value is empty, contains ':' or does not fit the variable's type.
  bool expand(const Captures& vars, std::string& out, std::string* error) const;

  // The longest literal text before the first variable, e.g. "cpq:{tenant-"; the whole key for a
  // pattern without variables. Views into this object.
  std::string_view literalPrefix() const { return literalPrefix_; }

  std::size_t segmentCount() const { return segments_.size(); }
  bool hasRegex() const { return hasRegex_; }

  // Segment-level access for KeyMatcher.
  const detail::Segment& segment(std::size_t i) const { return segments_[i]; }
  const detail::Variable& variable(std::size_t i) const { return vars_[i]; }
  std::string_view variableName(std::size_t i) const {
    return std::string_view(text_).substr(vars_[i].nameOffset, vars_[i].nameSize);
  }
  std::string_view rawSegment(std::size_t i) const {
    const auto& s = segments_[i];
    return std::string_view(text_).substr(s.rawBegin, s.rawEnd - s.rawBegin);
  }
  // Whether segment `i` matches `run` (which holds no ':'). Appends captures when given; on
  // failure `captures` is left at the size it had.
  bool matchSegment(std::size_t i, std::string_view run, Captures* captures) const;
  // Whether `value` fits variable `v` (non-empty, no ':', its type).
  bool fits(const detail::Variable& v, std::string_view value) const;

 private:
  bool matchRest(const detail::Segment& s, std::size_t k, std::string_view rest,
                 Captures* captures) const;

  std::string text_;
  std::string literalPrefix_;
  std::vector<detail::Variable> vars_;
  std::vector<detail::Segment> segments_;
  bool hasRegex_ = false;
};

}  // namespace keygate::policies
