#include "config/values.hpp"

#include <algorithm>
#include <limits>
#include <vector>

namespace keygate::config {
namespace {

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = kKiB * 1024;
constexpr std::uint64_t kGiB = kMiB * 1024;
constexpr std::uint64_t kTiB = kGiB * 1024;

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isHexDigit(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool isAlnum(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string quoted(std::string_view text) {
  return "'" + std::string(text) + "'";
}

// Splits "123abc" into the leading digits and the rest.
std::pair<std::string_view, std::string_view> splitNumber(std::string_view text) {
  std::size_t n = 0;
  while (n < text.size() && isDigit(text[n]))
    ++n;
  return {text.substr(0, n), text.substr(n)};
}

// Accumulates decimal digits; false on overflow.
bool digitsToUint(std::string_view digits, std::uint64_t& out) {
  std::uint64_t v = 0;
  for (char c : digits) {
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

bool looksNegativeNumber(std::string_view text) {
  return text.size() > 1 && text.front() == '-' && isDigit(text[1]);
}

bool looksFractional(std::string_view rest) {
  return rest.size() > 1 && rest.front() == '.';
}

bool isIpv4(std::string_view s) {
  int parts = 0;
  while (true) {
    const auto dot = s.find('.');
    const auto part = s.substr(0, dot);
    if (part.empty() || part.size() > 3 || !std::all_of(part.begin(), part.end(), isDigit)) {
      return false;
    }
    std::uint64_t v = 0;
    if (!digitsToUint(part, v) || v > 255) return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    s.remove_prefix(dot + 1);
  }
  return parts == 4;
}

// Counts the ':'-separated groups of `part`; the last one may be a dotted quad (two groups).
bool countIpv6Groups(std::string_view part, bool allowIpv4Tail, int& groups) {
  groups = 0;
  if (part.empty()) return true;
  while (true) {
    const auto colon = part.find(':');
    const auto group = part.substr(0, colon);
    const bool last = colon == std::string_view::npos;
    if (last && allowIpv4Tail && group.find('.') != std::string_view::npos) {
      if (!isIpv4(group)) return false;
      groups += 2;
      return true;
    }
    if (group.empty() || group.size() > 4 || !std::all_of(group.begin(), group.end(), isHexDigit)) {
      return false;
    }
    ++groups;
    if (last) return true;
    part.remove_prefix(colon + 1);
  }
}

bool isIpv6(std::string_view s) {
  if (const auto pct = s.find('%'); pct != std::string_view::npos) {
    const auto zone = s.substr(pct + 1);
    const bool zoneOk = !zone.empty() && std::all_of(zone.begin(), zone.end(), [](char c) {
      return isAlnum(c) || c == '_' || c == '-' || c == '.';
    });
    if (!zoneOk) return false;
    s = s.substr(0, pct);
  }
  const auto gap = s.find("::");
  if (gap == std::string_view::npos) {
    int groups = 0;
    return countIpv6Groups(s, true, groups) && groups == 8;
  }
  if (s.find("::", gap + 1) != std::string_view::npos) return false;
  int left = 0;
  int right = 0;
  return countIpv6Groups(s.substr(0, gap), false, left) &&
         countIpv6Groups(s.substr(gap + 2), true, right) && left + right <= 7;
}

bool isHostname(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  if (s.back() == '.') s.remove_suffix(1);  // fully qualified "redis.svc."
  while (true) {
    const auto dot = s.find('.');
    const auto label = s.substr(0, dot);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    const bool ok = std::all_of(label.begin(), label.end(),
                                [](char c) { return isAlnum(c) || c == '-' || c == '_'; });
    if (!ok) return false;
    if (dot == std::string_view::npos) return true;
    s.remove_prefix(dot + 1);
  }
}

// Unifies spellings so "Connect_Timeout" compares equal to "connectTimeout".
std::string normalizeKey(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '_' || c == '-') continue;
    out.push_back((c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c);
  }
  return out;
}

bool isWildcardHost(std::string_view host) {
  return host == "0.0.0.0" || host == "::";
}

bool isLoopbackHost(std::string_view host) {
  return host == "localhost" || host == "::1" || host.starts_with("127.");
}

// "localhost" names the loopback address in either family.
bool sameHost(std::string_view a, std::string_view b) {
  if (a == b) return true;
  if (a == "localhost") std::swap(a, b);
  return b == "localhost" && (a == "127.0.0.1" || a == "::1");
}

std::string joinChoices(std::span<const std::string_view> choices) {
  std::string out;
  for (std::size_t i = 0; i < choices.size(); ++i) {
    if (i > 0) out += (i + 1 == choices.size()) ? " or " : ", ";
    out += choices[i];
  }
  return out;
}

}  // namespace

Parsed<std::uint64_t> parseUnsigned(std::string_view text) {
  using P = Parsed<std::uint64_t>;
  if (text.empty()) return P::fail("expected a whole number, got nothing");
  if (looksNegativeNumber(text)) {
    return P::fail("expected a whole number of zero or more, got " + std::string(text));
  }
  const auto [digits, rest] = splitNumber(text);
  if (digits.empty() || !rest.empty()) {
    return P::fail("expected a whole number such as 4, got " + quoted(text) +
                   "; write plain decimal digits");
  }
  std::uint64_t v = 0;
  if (!digitsToUint(digits, v)) return P::fail(std::string(text) + " is far too large");
  return P::ok(v);
}

Parsed<std::uint64_t> parseUnsignedIn(std::string_view text, std::uint64_t min, std::uint64_t max,
                                      std::string_view hint) {
  using P = Parsed<std::uint64_t>;
  auto parsed = parseUnsigned(text);
  const bool negative =
      looksNegativeNumber(text) && std::all_of(text.begin() + 1, text.end(), isDigit);
  if (!parsed && !negative) return parsed;
  if (negative || *parsed.value < min || *parsed.value > max) {
    std::string why = "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                      ", got " + std::string(text);
    if (!hint.empty()) why += "; " + std::string(hint);
    return P::fail(std::move(why));
  }
  return parsed;
}

Parsed<std::chrono::milliseconds> parseDuration(std::string_view text) {
  using P = Parsed<std::chrono::milliseconds>;
  constexpr std::string_view kHow = "write a whole number followed by ms, s, m or h, e.g. 500ms";
  if (text.empty()) return P::fail("expected a duration, got nothing; " + std::string(kHow));
  if (looksNegativeNumber(text))
    return P::fail("a duration cannot be negative; " + std::string(kHow));
  const auto [digits, unit] = splitNumber(text);
  if (digits.empty()) {
    return P::fail(quoted(text) + " is not a duration; " + std::string(kHow));
  }
  if (unit.empty()) return P::fail("duration needs a unit, e.g. 500ms or 10s");
  if (looksFractional(unit)) {
    return P::fail("durations are whole numbers; write " + quoted(text) +
                   " in a smaller unit, e.g. 1500ms instead of 1.5s");
  }
  std::uint64_t factor = 0;
  if (unit == "ms") {
    factor = 1;
  } else if (unit == "s") {
    factor = 1000;
  } else if (unit == "m") {
    factor = 60 * 1000;
  } else if (unit == "h") {
    factor = 60 * 60 * 1000;
  } else {
    return P::fail("unknown duration unit " + quoted(unit) + " in " + quoted(text) +
                   "; use ms, s, m or h, e.g. 500ms or 10s");
  }
  std::uint64_t n = 0;
  // Cap well below what milliseconds::rep holds: no sane timeout is a million hours.
  constexpr std::uint64_t kMaxMs = 1'000'000ull * 60 * 60 * 1000;
  if (!digitsToUint(digits, n) || n > kMaxMs / factor) {
    return P::fail(quoted(text) + " is far too long a duration");
  }
  return P::ok(std::chrono::milliseconds(static_cast<std::int64_t>(n * factor)));
}

Parsed<std::chrono::milliseconds> parseDurationIn(std::string_view text,
                                                  std::chrono::milliseconds min,
                                                  std::chrono::milliseconds max) {
  auto parsed = parseDuration(text);
  if (parsed && (*parsed.value < min || *parsed.value > max)) {
    return Parsed<std::chrono::milliseconds>::fail("must be between " + formatDuration(min) +
                                                   " and " + formatDuration(max) + ", got " +
                                                   std::string(text));
  }
  return parsed;
}

Parsed<std::uint64_t> parseSize(std::string_view text) {
  using P = Parsed<std::uint64_t>;
  constexpr std::string_view kUnits =
      "use B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000), e.g. 64KiB";
  if (text.empty()) return P::fail("expected a size, got nothing; " + std::string(kUnits));
  if (looksNegativeNumber(text)) return P::fail("a size cannot be negative");
  const auto [digits, unit] = splitNumber(text);
  if (digits.empty()) {
    return P::fail(quoted(text) + " is not a size; write a whole number of bytes or " +
                   "a number with a unit; " + std::string(kUnits));
  }
  if (looksFractional(unit)) {
    return P::fail("sizes are whole numbers; write " + quoted(text) +
                   " in a smaller unit, e.g. 1536MiB instead of 1.5GiB");
  }
  struct Unit {
    std::string_view name;
    std::uint64_t factor;
  };
  static constexpr std::array<Unit, 10> kTable = {{{"", 1},
                                                   {"B", 1},
                                                   {"KiB", kKiB},
                                                   {"MiB", kMiB},
                                                   {"GiB", kGiB},
                                                   {"TiB", kTiB},
                                                   {"KB", 1000},
                                                   {"MB", 1000 * 1000},
                                                   {"GB", 1000 * 1000 * 1000},
                                                   {"TB", 1000ull * 1000 * 1000 * 1000}}};
  const auto it =
      std::find_if(kTable.begin(), kTable.end(), [u = unit](const Unit& e) { return e.name == u; });
  if (it == kTable.end()) {
    return P::fail("unknown size unit " + quoted(unit) + " in " + quoted(text) + "; " +
                   std::string(kUnits));
  }
  std::uint64_t n = 0;
  if (!digitsToUint(digits, n) || n > std::numeric_limits<std::uint64_t>::max() / it->factor) {
    return P::fail(quoted(text) + " is far too large a size");
  }
  return P::ok(n * it->factor);
}

Parsed<std::uint64_t> parseSizeIn(std::string_view text, std::uint64_t min, std::uint64_t max) {
  auto parsed = parseSize(text);
  if (parsed && (*parsed.value < min || *parsed.value > max)) {
    return Parsed<std::uint64_t>::fail("must be between " + formatSize(min) + " and " +
                                       formatSize(max) + ", got " + std::string(text));
  }
  return parsed;
}

Parsed<HostPort> parseAddress(std::string_view text) {
  using P = Parsed<HostPort>;
  constexpr std::string_view kHow = "write HOST:PORT, e.g. 127.0.0.1:6380, [::1]:6380 or :6380";
  if (text.empty()) return P::fail("expected an address, got nothing; " + std::string(kHow));
  std::string_view host;
  std::string_view port;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      return P::fail(quoted(text) + " opens '[' without a closing ']'; write IPv6 as [::1]:6380");
    }
    host = text.substr(1, close - 1);
    const auto rest = text.substr(close + 1);
    if (rest.empty()) {
      return P::fail(quoted(text) + " has no port; write [" + std::string(host) + "]:6380");
    }
    if (rest.front() != ':') {
      return P::fail(quoted(text) + " needs ':' right after ']'; write [::1]:6380");
    }
    port = rest.substr(1);
    if (!isIpv6(host)) {
      return P::fail(quoted(host) + " is not an IPv6 address; only IPv6 goes inside [ ]");
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return P::fail(quoted(text) + " has no port; write " + std::string(text) + ":6380");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return P::fail(quoted(text) + " looks like IPv6 without brackets; write it as [" +
                     std::string(host) + "]:" + std::string(port));
    }
    if (host.empty()) {
      host = "127.0.0.1";
    } else if (std::all_of(host.begin(), host.end(), [](char c) { return isDigit(c) || c == '.'; })
                   ? !isIpv4(host)
                   : !isHostname(host)) {
      return P::fail(quoted(host) + " is not a valid IPv4 address or host name; " +
                     std::string(kHow));
    }
  }
  if (port.empty()) {
    return P::fail(quoted(text) + " has no port after ':'; " + std::string(kHow));
  }
  if (!std::all_of(port.begin(), port.end(), isDigit)) {
    return P::fail("port " + quoted(port) + " is not a number; " + std::string(kHow));
  }
  std::uint64_t n = 0;
  if (port.size() > 5 || !digitsToUint(port, n) || n < 1 || n > 65535) {
    return P::fail("port " + std::string(port) + " is out of range; use a port from 1 to 65535");
  }
  return P::ok(HostPort{std::string(host), static_cast<std::uint16_t>(n)});
}

Parsed<std::size_t> parseChoice(std::string_view text, std::span<const std::string_view> choices,
                                std::string_view noun) {
  using P = Parsed<std::size_t>;
  for (std::size_t i = 0; i < choices.size(); ++i) {
    if (choices[i] == text) return P::ok(i);
  }
  std::string why = "unknown " + std::string(noun) + " " + quoted(text) + "; ";
  if (const auto near = closestMatch(text, choices)) {
    why += "did you mean " + quoted(*near) + "? Use ";
  } else {
    why += "use ";
  }
  why += joinChoices(choices);
  return P::fail(std::move(why));
}

std::string formatSize(std::uint64_t bytes) {
  struct Unit {
    std::uint64_t factor;
    std::string_view name;
  };
  static constexpr std::array<Unit, 4> kUnits = {
      {{kTiB, "TiB"}, {kGiB, "GiB"}, {kMiB, "MiB"}, {kKiB, "KiB"}}};
  for (const auto& u : kUnits) {
    if (bytes >= u.factor && bytes % u.factor == 0) {
      return std::to_string(bytes / u.factor) + std::string(u.name);
    }
  }
  return std::to_string(bytes) + "B";
}

std::string formatDuration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms != 0) {
    if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
    if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  }
  return std::to_string(ms) + "ms";
}

std::size_t editDistance(std::string_view a, std::string_view b) {
  // Three rolling rows: the transposition case looks two rows back.
  std::vector<std::size_t> prev2(b.size() + 1);
  std::vector<std::size_t> prev(b.size() + 1);
  std::vector<std::size_t> cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        cur[j] = std::min(cur[j], prev2[j - 2] + 1);
      }
    }
    std::swap(prev2, prev);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::optional<std::string_view> closestMatch(std::string_view word,
                                             std::span<const std::string_view> candidates) {
  const std::string w = normalizeKey(word);
  std::optional<std::string_view> best;
  std::size_t bestDistance = std::numeric_limits<std::size_t>::max();
  for (const auto candidate : candidates) {
    const std::string c = normalizeKey(candidate);
    const std::size_t d = editDistance(w, c);
    // Allow about one typo per three characters, so "lg" does not suggest "off".
    const std::size_t allowed = std::clamp<std::size_t>(c.size() / 3, 1, 3);
    if (d <= allowed && d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  if (best) return best;
  // A truncated or extended name ("maxPipeline", "warning") is many edits away from the one
  // meant but still obvious. Both must be long enough for the prefix to mean something.
  std::size_t bestGap = std::numeric_limits<std::size_t>::max();
  for (const auto candidate : candidates) {
    const std::string c = normalizeKey(candidate);
    if (std::min(c.size(), w.size()) < 4) continue;
    if (!c.starts_with(w) && !w.starts_with(c)) continue;
    const std::size_t gap = c.size() > w.size() ? c.size() - w.size() : w.size() - c.size();
    if (gap < bestGap) {
      best = candidate;
      bestGap = gap;
    }
  }
  return best;
}

bool sameLocalEndpoint(const HostPort& a, const HostPort& b) {
  if (a.port != b.port) return false;
  return sameHost(a.host, b.host) || isWildcardHost(a.host) || isWildcardHost(b.host);
}

bool reachesListener(const HostPort& target, const HostPort& listener) {
  if (target.port != listener.port) return false;
  if (sameHost(target.host, listener.host)) return true;
  if (isWildcardHost(listener.host)) {
    return isLoopbackHost(target.host) || isWildcardHost(target.host);
  }
  return isWildcardHost(target.host) && isLoopbackHost(listener.host);
}

}  // namespace keygate::config
