// GCC 12 reports a false -Wmaybe-uninitialized inside <regex>'s std::function members at -O2
// (GCC bug 105562 and friends); it is about the library's code, not ours.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "policies/key_pattern.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <regex>

#include "policies/simple_regex.hpp"

namespace keygate::policies {

namespace detail {
// A registry regex: SimpleRegex when the pattern is in its subset (no allocation per match),
// else std::regex.
struct CompiledRegex {
  std::optional<SimpleRegex> simple;
  std::regex re;  // only when !simple
};
}  // namespace detail
namespace {

// Character classes, one bit each, looked up per byte.
enum : std::uint8_t { kDigit = 1, kHexDigit = 2, kNameStart = 4, kNameChar = 8 };

constexpr std::array<std::uint8_t, 256> makeClasses() {
  std::array<std::uint8_t, 256> t{};
  for (int c = '0'; c <= '9'; ++c)
    t[c] = kDigit | kHexDigit | kNameChar;
  for (int c = 'a'; c <= 'z'; ++c)
    t[c] = kNameStart | kNameChar;
  for (int c = 'A'; c <= 'Z'; ++c)
    t[c] = kNameStart | kNameChar;
  for (int c = 'a'; c <= 'f'; ++c)
    t[c] |= kHexDigit;
  for (int c = 'A'; c <= 'F'; ++c)
    t[c] |= kHexDigit;
  t['_'] = kNameStart | kNameChar;
  return t;
}
constexpr auto kClasses = makeClasses();

inline bool is(char c, std::uint8_t cls) {
  return (kClasses[static_cast<unsigned char>(c)] & cls);
}

std::string col(std::size_t offset) {
  return "column " + std::to_string(offset + 1) + ": ";
}

// Splits `key` at ':' into exactly `n` parts; false when the count differs.
bool splitExactly(std::string_view key, std::size_t n,
                  std::array<std::string_view, kMaxSegments>& parts) {
  std::size_t count = 0;
  std::size_t start = 0;
  while (true) {
    const auto colon = key.find(':', start);
    if (count == n) return false;
    if (colon == std::string_view::npos) {
      parts[count++] = key.substr(start);
      return count == n;
    }
    parts[count++] = key.substr(start, colon - start);
    start = colon + 1;
  }
}

}  // namespace

std::optional<std::string_view> findCapture(const Captures& captures, std::string_view name) {
  for (const auto& c : captures) {
    if (c.name == name) return c.value;
  }
  return std::nullopt;
}

std::optional<KeyPattern> KeyPattern::parse(std::string_view text, std::string* error) {
  auto fail = [&](std::size_t offset, std::string message) -> std::optional<KeyPattern> {
    if (error) *error = col(offset) + message;
    return std::nullopt;
  };
  if (text.empty()) return fail(0, "the pattern is empty; write the key as it appears in Redis");
  if (text.size() > kMaxPatternBytes) {
    return fail(kMaxPatternBytes, "the pattern is longer than " + std::to_string(kMaxPatternBytes) +
                                      " bytes; shorten it");
  }

  KeyPattern p;
  p.text_ = std::string(text);
  bool seenVariable = false;
  bool lastWasVariable = false;  // no literal byte since the last variable (in this segment)
  detail::Segment seg;
  seg.rawBegin = 0;
  std::string* lit = &seg.prefix;  // where the next literal byte goes

  auto finishSegment = [&](std::size_t rawEnd) {
    seg.rawEnd = static_cast<std::uint32_t>(rawEnd);
    seg.minSize = seg.prefix.size();
    for (std::size_t k = 0; k < seg.vars.size(); ++k) {
      seg.minSize += seg.lits[k].size() + (p.vars_[seg.vars[k]].type == VarType::kUuid ? 36 : 1);
    }
    p.segments_.push_back(std::move(seg));
    seg = detail::Segment{};
    seg.rawBegin = static_cast<std::uint32_t>(rawEnd + 1);
    lit = &seg.prefix;
    lastWasVariable = false;
  };

  std::size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\\' && i + 1 < text.size() && (text[i + 1] == '<' || text[i + 1] == '>')) {
      lit->push_back(text[i + 1]);
      if (!seenVariable) p.literalPrefix_.push_back(text[i + 1]);
      lastWasVariable = false;
      i += 2;
      continue;
    }
    if (c == '>') {
      return fail(i, "'>' without a variable before it; write \\> for a literal '>'");
    }
    if (c == ':') {
      if (p.segments_.size() + 1 >= kMaxSegments) {
        return fail(i, "the pattern has more than " + std::to_string(kMaxSegments) +
                           " ':'-separated segments; shorten it");
      }
      if (!seenVariable) p.literalPrefix_.push_back(c);
      finishSegment(i);
      ++i;
      continue;
    }
    if (c != '<') {
      lit->push_back(c);
      if (!seenVariable) p.literalPrefix_.push_back(c);
      lastWasVariable = false;
      ++i;
      continue;
    }

    // A variable: <name>, <name:type> or <name:/regex/>.
    const std::size_t open = i;
    std::size_t j = i + 1;
    if (j >= text.size()) {
      return fail(open,
                  "'<' starts a variable that is never closed; add '>' (or write \\< for "
                  "a literal '<')");
    }
    if (!is(text[j], kNameStart)) {
      if (text[j] == '>') return fail(open, "empty variable name '<>'; write <name>");
      return fail(j, std::string("a variable name must start with a letter or '_', not '") +
                         text[j] + "' (write \\< for a literal '<')");
    }
    while (j < text.size() && is(text[j], kNameChar))
      ++j;
    const std::string_view name = text.substr(open + 1, j - open - 1);
    if (j >= text.size()) {
      return fail(open, "variable '<" + std::string(name) + "' is never closed; add '>'");
    }
    detail::Variable v;
    v.nameOffset = static_cast<std::uint32_t>(open + 1);
    v.nameSize = static_cast<std::uint32_t>(name.size());
    if (text[j] == ':') {
      const std::size_t typeAt = j + 1;
      if (typeAt < text.size() && text[typeAt] == '/') {
        const auto end = text.find("/>", typeAt + 1);
        if (end == std::string_view::npos) {
          return fail(typeAt, "the regex of variable '" + std::string(name) +
                                  "' is never closed; end it with '/>'");
        }
        v.regexText = std::string(text.substr(typeAt + 1, end - typeAt - 1));
        if (v.regexText.empty()) {
          return fail(typeAt, "the regex of variable '" + std::string(name) +
                                  "' is empty; write e.g. <" + std::string(name) +
                                  ":/[a-z]+/> or drop the type");
        }
        try {
          auto compiled = std::make_shared<detail::CompiledRegex>();
          // SimpleRegex accepts only patterns std::regex accepts (simple_regex_test), so the
          // error messages below stay std::regex's.
          compiled->simple = SimpleRegex::compile(v.regexText);
          if (!compiled->simple) compiled->re = std::regex(v.regexText, std::regex::ECMAScript);
          v.regex = std::move(compiled);
        } catch (const std::regex_error& e) {
          return fail(typeAt + 1, "invalid regex /" + v.regexText + "/ for variable '" +
                                      std::string(name) + "': " + e.what());
        }
        v.type = VarType::kRegex;
        p.hasRegex_ = true;
        j = end + 2;
      } else {
        std::size_t k = typeAt;
        while (k < text.size() && is(text[k], kNameChar))
          ++k;
        const std::string_view type = text.substr(typeAt, k - typeAt);
        if (k >= text.size()) {
          return fail(open, "variable '<" + std::string(name) + ":" + std::string(type) +
                                "' is never closed; add '>'");
        }
        if (text[k] != '>') {
          return fail(k, std::string("unexpected '") + text[k] + "' in the type of variable '" +
                             std::string(name) + "'; write <" + std::string(name) +
                             ":int>, :hex>, :uuid>, :any> or :/regex/>");
        }
        if (type == "any") {
          v.type = VarType::kAny;
        } else if (type == "int") {
          v.type = VarType::kInt;
        } else if (type == "hex") {
          v.type = VarType::kHex;
        } else if (type == "uuid") {
          v.type = VarType::kUuid;
        } else {
          return fail(typeAt, "unknown type '" + std::string(type) + "' for variable '" +
                                  std::string(name) + "'; use int, hex, uuid, any or /regex/");
        }
        j = k + 1;
      }
      if (name == kTenantVariable && v.type != VarType::kAny) {
        return fail(open + 1, "the reserved variable <tenant> takes no type; write <tenant>");
      }
    } else if (text[j] == '>') {
      ++j;
    } else {
      return fail(j, std::string("unexpected '") + text[j] + "' in variable '<" +
                         std::string(name) +
                         "'; names are letters, digits and '_', then '>' or ':type>'");
    }
    for (std::size_t k = 0; k < p.vars_.size(); ++k) {
      if (p.variableName(k) == name) {
        return fail(open + 1, "variable '" + std::string(name) +
                                  "' appears twice; give each variable its own name");
      }
    }
    if (lastWasVariable) {
      return fail(open, "variable '" + std::string(name) +
                            "' directly follows another variable, so where one ends is "
                            "ambiguous; put literal text between them");
    }
    seg.vars.push_back(static_cast<std::uint32_t>(p.vars_.size()));
    seg.lits.emplace_back();
    lit = &seg.lits.back();
    p.vars_.push_back(std::move(v));
    seenVariable = true;
    lastWasVariable = true;
    i = j;
  }
  finishSegment(text.size());
  return p;
}

namespace {

// Whether `run` matches a regex variable's regex (out of line: the other types are a loop).
[[gnu::noinline]] bool regexFits(const detail::Variable& v, std::string_view run) {
  if (run.size() > kMaxRegexRun) return false;
  if (v.regex->simple) return v.regex->simple->fullMatch(run);
  // std::regex reports resource exhaustion by throwing; the length cap keeps its recursion
  // shallow, and this guard turns anything left into "no match" rather than an unwinding
  // request path.
  try {
    return std::regex_match(run.begin(), run.end(), v.regex->re);
  } catch (...) {
    return false;
  }
}

// Whether a run of a key segment (never holding ':') fits `v`.
inline bool fitsRun(const detail::Variable& v, std::string_view run) {
  if (v.type == VarType::kRegex) return !run.empty() && regexFits(v, run);
  return detail::fitsPlain(v.type, run);
}

}  // namespace

bool KeyPattern::fits(const detail::Variable& v, std::string_view value) const {
  return value.find(':') == std::string_view::npos && fitsRun(v, value);
}

// Matches vars[k..] and their following literals against `rest` (the segment after the prefix).
bool KeyPattern::matchRest(const detail::Segment& s, std::size_t k, std::string_view rest,
                           Captures* captures) const {
  const auto& v = vars_[s.vars[k]];
  const std::string& after = s.lits[k];
  const bool last = k + 1 == s.vars.size();
  if (last) {
    // `after` is the suffix, already checked by the caller.
    const auto run = rest.substr(0, rest.size() - after.size());
    if (!fitsRun(v, run)) return false;
    if (captures) captures->push_back({variableName(s.vars[k]), run});
    return true;
  }
  // `after` is non-empty (no two variables in a row): try each place it occurs.
  std::size_t from = 1;
  while (true) {
    const auto at = rest.find(after, from);
    if (at == std::string_view::npos) return false;
    const auto run = rest.substr(0, at);
    if (fitsRun(v, run)) {
      const auto mark = captures ? captures->size() : 0;
      if (captures) captures->push_back({variableName(s.vars[k]), run});
      if (matchRest(s, k + 1, rest.substr(at + after.size()), captures)) return true;
      if (captures) captures->resize(mark);
    } else if (v.type == VarType::kInt || v.type == VarType::kHex) {
      return false;  // a longer run holds the same offending byte
    }
    if (v.type == VarType::kUuid && at >= 36) return false;
    from = at + 1;
  }
}

bool KeyPattern::matchSegment(std::size_t i, std::string_view run, Captures* captures) const {
  const auto& s = segments_[i];
  if (s.vars.empty()) return run == s.prefix;
  if (run.size() < s.minSize) return false;
  // minSize covers the prefix and the suffix: both comparisons stay inside `run`.
  const std::string& suffix = s.lits.back();
  const std::size_t prefixSize = s.prefix.size();
  const std::size_t suffixSize = suffix.size();
  if (prefixSize != 0 && std::memcmp(run.data(), s.prefix.data(), prefixSize) != 0) return false;
  if (suffixSize != 0 &&
      std::memcmp(run.data() + run.size() - suffixSize, suffix.data(), suffixSize) != 0) {
    return false;
  }
  if (s.vars.size() == 1) {
    // One variable between the prefix and the suffix (the common case): what lies between them.
    const std::string_view value = run.substr(prefixSize, run.size() - prefixSize - suffixSize);
    if (!fitsRun(vars_[s.vars[0]], value)) return false;
    if (captures) captures->push_back({variableName(s.vars[0]), value});
    return true;
  }
  return matchRest(s, 0, run.substr(prefixSize), captures);
}

bool KeyPattern::match(std::string_view key, Captures* captures) const {
  if (captures) captures->clear();
  std::array<std::string_view, kMaxSegments> parts;
  if (!splitExactly(key, segments_.size(), parts)) return false;
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    if (!matchSegment(i, parts[i], captures)) {
      if (captures) captures->clear();
      return false;
    }
  }
  return true;
}

bool KeyPattern::hasVariable(std::string_view name) const {
  for (std::size_t k = 0; k < vars_.size(); ++k) {
    if (variableName(k) == name) return true;
  }
  return false;
}

std::vector<std::string_view> KeyPattern::variableNames() const {
  std::vector<std::string_view> names;
  names.reserve(vars_.size());
  for (std::size_t k = 0; k < vars_.size(); ++k)
    names.push_back(variableName(k));
  return names;
}

VarType KeyPattern::variableType(std::string_view name) const {
  for (std::size_t k = 0; k < vars_.size(); ++k) {
    if (variableName(k) == name) return vars_[k].type;
  }
  return VarType::kAny;
}

bool KeyPattern::expand(const Captures& vars, std::string& out, std::string* error) const {
  auto fail = [&](std::string message) {
    if (error) *error = std::move(message);
    return false;
  };
  static constexpr const char* kTypeNames[] = {"any", "int", "hex", "uuid", "regex"};
  out.clear();
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    const auto& s = segments_[i];
    if (i > 0) out.push_back(':');
    out += s.prefix;
    for (std::size_t k = 0; k < s.vars.size(); ++k) {
      const auto& v = vars_[s.vars[k]];
      const auto name = variableName(s.vars[k]);
      const auto value = findCapture(vars, name);
      if (!value) {
        return fail("pattern '" + text_ + "': variable <" + std::string(name) +
                    "> has no value; supply it from the key or the connection");
      }
      if (!fits(v, *value)) {
        std::string why;
        if (value->empty()) {
          why = "is empty";
        } else if (value->find(':') != std::string_view::npos) {
          why = "contains ':'";
        } else if (v.type == VarType::kRegex) {
          why = "does not match /" + v.regexText + "/";
        } else {
          why = std::string("is not of type ") + kTypeNames[static_cast<int>(v.type)];
        }
        return fail("pattern '" + text_ + "': value '" + std::string(*value) + "' for <" +
                    std::string(name) + "> " + why);
      }
      out += *value;
      out += s.lits[k];
    }
  }
  return true;
}

}  // namespace keygate::policies
