#include "policies/fail_open.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "proxy/commands/per_row.hpp"

// Each rule below was checked against redis-server 7.0 for a key that does not exist, in RESP2
// and RESP3. Where Redis parses arguments before it looks the key up (LRANGE's indexes, LPOS's
// options, ZRANGE's BYSCORE bounds, ...) a malformed request answers an error, so its miss
// would claim something Redis did not say: such requests get kNone and fail closed. Some
// checks are stricter than Redis 7.0 (which answers BITCOUNT nokey a b with 0, and takes a
// scan cursor of "-1"): a malformed request has no business getting a fabricated answer.

namespace keygate::policies {
namespace {

using Args = std::span<const std::string_view>;

// What missReplyOf does with a command: the miss shape, after its argument checks.
enum class Rule : std::uint8_t {
  // reads
  kNil,          // fixed arity, no arguments to check
  kLindex,       // nil; index an integer
  kGetex,        // nil; a write Redis answers like GET (its options checked)
  kGeodist,      // nil; optional unit
  kLpos,         // nil, or empty array with COUNT
  kSrandmember,  // nil, or empty array with a count
  kHrandfield,   // same, plus WITHVALUES
  kZrandmember,  // same, plus WITHSCORES
  kGetrange,     // empty string; two integers
  kLcs,          // empty string, 0 with LEN, fails closed with IDX
  kZero,         // fixed arity or a plain key list
  kZcount,       // 0; score bounds
  kZlexcount,    // 0; lex bounds
  kInterCard,    // SINTERCARD / ZINTERCARD: 0; numkeys, LIMIT
  kBitcount,     // 0; optional range and unit
  kGetbit,       // 0; bit offset
  kMinusTwo,     // TTL and friends
  kEmptyArray,   // HKEYS / HVALS
  kLrange,       // empty array; two integers
  kZrange,       // ZRANGE with BYSCORE / BYLEX / REV / LIMIT / WITHSCORES
  kZrevrange,    // by rank, reversed
  kZrangeByScore,
  kZrevrangeByScore,
  kZrangeByLex,
  kZrevrangeByLex,
  kZdiff,        // numkeys, WITHSCORES
  kZinterUnion,  // numkeys, WEIGHTS, AGGREGATE, WITHSCORES
  kXrange,
  kXrevrange,
  kSortRo,       // empty array without BY / GET
  kEmptyMap,     // HGETALL
  kEmptySet,     // SMEMBERS, SINTER, SUNION, SDIFF
  kNilsPerKey,   // MGET
  kNilsPerArg,   // HMGET, ZMSCORE, GEOHASH: one per argument after the key
  kZerosPerArg,  // SMISMEMBER
  kBitfieldRo,   // one 0 per GET
  kNoneType,     // TYPE
  kScan,         // HSCAN, SSCAN, ZSCAN
  kXread,        // null array without BLOCK
  // writes: only when every key is on a cache pattern
  kSet,            // nil, unless GET without XX (that nil would mean "set")
  kSetnx,          // SETNX, HSETNX: 0
  kMsetnx,         // 0; key / value pairs
  kExpireSeconds,  // EXPIRE, EXPIREAT: 0
  kExpireMillis,   // PEXPIRE, PEXPIREAT: 0
};

// The cache writes come last (see kRuleCount below).
bool isCacheWriteRule(Rule r) {
  return r >= Rule::kSet;
}
constexpr std::size_t kRuleCount = static_cast<std::size_t>(Rule::kExpireMillis) + 1;

struct Entry {
  std::string_view name;  // as in the command table: lowercase
  Rule rule;
};

// Sorted by name (checked below) for a binary search: no allocation, no static initialisation.
constexpr auto kEntries = std::to_array<Entry>({
    {"bitcount", Rule::kBitcount},
    {"bitfield_ro", Rule::kBitfieldRo},
    {"dump", Rule::kNil},
    {"exists", Rule::kZero},
    {"expire", Rule::kExpireSeconds},
    {"expireat", Rule::kExpireSeconds},
    {"expiretime", Rule::kMinusTwo},
    {"geodist", Rule::kGeodist},
    {"geohash", Rule::kNilsPerArg},
    {"get", Rule::kNil},
    {"getbit", Rule::kGetbit},
    {"getex", Rule::kGetex},
    {"getrange", Rule::kGetrange},
    {"hexists", Rule::kZero},
    {"hget", Rule::kNil},
    {"hgetall", Rule::kEmptyMap},
    {"hkeys", Rule::kEmptyArray},
    {"hlen", Rule::kZero},
    {"hmget", Rule::kNilsPerArg},
    {"hrandfield", Rule::kHrandfield},
    {"hscan", Rule::kScan},
    {"hsetnx", Rule::kSetnx},
    {"hstrlen", Rule::kZero},
    {"hvals", Rule::kEmptyArray},
    {"lcs", Rule::kLcs},
    {"lindex", Rule::kLindex},
    {"llen", Rule::kZero},
    {"lpos", Rule::kLpos},
    {"lrange", Rule::kLrange},
    {"mget", Rule::kNilsPerKey},
    {"msetnx", Rule::kMsetnx},
    {"pexpire", Rule::kExpireMillis},
    {"pexpireat", Rule::kExpireMillis},
    {"pexpiretime", Rule::kMinusTwo},
    {"pfcount", Rule::kZero},
    {"pttl", Rule::kMinusTwo},
    {"scard", Rule::kZero},
    {"sdiff", Rule::kEmptySet},
    {"set", Rule::kSet},
    {"setnx", Rule::kSetnx},
    {"sinter", Rule::kEmptySet},
    {"sintercard", Rule::kInterCard},
    {"sismember", Rule::kZero},
    {"smembers", Rule::kEmptySet},
    {"smismember", Rule::kZerosPerArg},
    {"sort_ro", Rule::kSortRo},
    {"srandmember", Rule::kSrandmember},
    {"sscan", Rule::kScan},
    {"strlen", Rule::kZero},
    {"substr", Rule::kGetrange},
    {"sunion", Rule::kEmptySet},
    {"touch", Rule::kZero},
    {"ttl", Rule::kMinusTwo},
    {"type", Rule::kNoneType},
    {"xlen", Rule::kZero},
    {"xrange", Rule::kXrange},
    {"xread", Rule::kXread},
    {"xrevrange", Rule::kXrevrange},
    {"zcard", Rule::kZero},
    {"zcount", Rule::kZcount},
    {"zdiff", Rule::kZdiff},
    {"zinter", Rule::kZinterUnion},
    {"zintercard", Rule::kInterCard},
    {"zlexcount", Rule::kZlexcount},
    {"zmscore", Rule::kNilsPerArg},
    {"zrandmember", Rule::kZrandmember},
    {"zrange", Rule::kZrange},
    {"zrangebylex", Rule::kZrangeByLex},
    {"zrangebyscore", Rule::kZrangeByScore},
    {"zrank", Rule::kNil},
    {"zrevrange", Rule::kZrevrange},
    {"zrevrangebylex", Rule::kZrevrangeByLex},
    {"zrevrangebyscore", Rule::kZrevrangeByScore},
    {"zrevrank", Rule::kNil},
    {"zscan", Rule::kScan},
    {"zscore", Rule::kNil},
    {"zunion", Rule::kZinterUnion},
});
static_assert(std::ranges::is_sorted(kEntries, {}, &Entry::name));
static_assert(std::ranges::adjacent_find(kEntries, {}, &Entry::name) == kEntries.end());

const Entry* findEntry(std::string_view name) {
  const auto it = std::ranges::lower_bound(kEntries, name, {}, &Entry::name);
  return it != kEntries.end() && it->name == name ? &*it : nullptr;
}

// What missReplyOf does with a command table row before looking at the arguments: the row's rule,
// or kClosed when every request of it fails closed (not in the table, or a write the table does
// not list as a cache write: defensive).
constexpr std::uint8_t kClosed = 0xff;
static_assert(kRuleCount < kClosed);

std::uint8_t rowRule(const commands::CommandInfo& info) {
  const Entry* entry = findEntry(info.name);
  if (entry == nullptr) return kClosed;
  if (!isCacheWriteRule(entry->rule) && info.has(commands::kWrite) && entry->rule != Rule::kGetex) {
    return kClosed;
  }
  return static_cast<std::uint8_t>(entry->rule);
}

// ---------------------------------------------------------------------------------------------
// Argument syntax, as Redis parses it (or stricter)

// ASCII case-insensitive comparison with a lowercase word.
bool is(std::string_view arg, std::string_view lowerWord) {
  if (arg.size() != lowerWord.size()) return false;
  for (std::size_t i = 0; i < arg.size(); ++i) {
    const char c = arg[i] >= 'A' && arg[i] <= 'Z' ? static_cast<char>(arg[i] + 32) : arg[i];
    if (c != lowerWord[i]) return false;
  }
  return true;
}

// Redis's string2ll: an optional '-', no '+', no leading zeros, no "-0", within int64.
bool parseInt(std::string_view s, std::int64_t& value) {
  if (s.empty() || s.size() > 20) return false;
  if (s == "0") {
    value = 0;
    return true;
  }
  std::size_t i = 0;
  const bool negative = s[0] == '-';
  if (negative) ++i;
  if (i == s.size() || s[i] < '1' || s[i] > '9') return false;
  std::uint64_t acc = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    const auto digit = static_cast<std::uint64_t>(s[i] - '0');
    if (acc > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return false;
    acc = acc * 10 + digit;
  }
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (negative) {
    if (acc > kMax + 1) return false;
    value = acc == kMax + 1 ? std::numeric_limits<std::int64_t>::min()
                            : -static_cast<std::int64_t>(acc);
  } else {
    if (acc > kMax) return false;
    value = static_cast<std::int64_t>(acc);
  }
  return true;
}

bool isInt(std::string_view s) {
  std::int64_t v = 0;
  return parseInt(s, v);
}

// An integer in [lo, hi].
bool isIntIn(std::string_view s, std::int64_t lo, std::int64_t hi) {
  std::int64_t v = 0;
  return parseInt(s, v) && v >= lo && v <= hi;
}

// Decimal digits only, within uint64 (stream IDs, scan cursors). Redis also takes what strtoull
// takes ("+5", " 5", "-1"); those fail closed here.
bool parseUint(std::string_view s, std::uint64_t& value) {
  if (s.empty() || s.size() > 20) return false;
  std::uint64_t acc = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (acc > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return false;
    acc = acc * 10 + digit;
  }
  value = acc;
  return true;
}

// Redis's getDoubleFromObject / zslParseRange: strtod over the whole argument, no leading
// space, not NaN ("inf", "+inf", "-inf", "1e3", "0x10" are numbers). Out-of-range values and
// arguments of 64 bytes or more fail closed.
bool isDouble(std::string_view s) {
  constexpr std::size_t kMaxLength = 64;
  if (s.empty() || s.size() >= kMaxLength) return false;
  if (s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r')) return false;
  char buf[kMaxLength];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(buf, &end);
  if (end != buf + s.size() || std::isnan(v)) return false;  // also catches an embedded NUL
  return errno != ERANGE;
}

// A ZRANGEBYSCORE / ZCOUNT bound: a number, or '(' and a number.
bool isScoreBound(std::string_view s) {
  return !s.empty() && isDouble(s[0] == '(' ? s.substr(1) : s);
}

// A ZRANGEBYLEX / ZLEXCOUNT bound: "+", "-", or '(' / '[' and a string.
bool isLexBound(std::string_view s) {
  return s == "+" || s == "-" || (!s.empty() && (s[0] == '(' || s[0] == '['));
}

// ---------------------------------------------------------------------------------------------
// Per-command checks. Each returns false when Redis would answer an error (or might).

constexpr std::int64_t kLongMax = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMaxBitOffset = (std::int64_t{1} << 32) - 1;  // proto-max-bulk-len 512MB
// Expire times far beyond any real use (Redis refuses some values near the int64 range, which
// depend on its clock): 10^15 s, 10^18 ms.
constexpr std::int64_t kMaxExpireSeconds = 1'000'000'000'000'000;
constexpr std::int64_t kMaxExpireMillis = 1'000'000'000'000'000'000;

// LPOS key element [RANK r] [COUNT n] [MAXLEN m]. `*count`: COUNT was given.
bool lposOk(Args a, bool* count) {
  for (std::size_t j = 3; j < a.size(); j += 2) {
    if (j + 1 >= a.size()) return false;
    const std::string_view opt = a[j];
    const std::string_view arg = a[j + 1];
    if (is(opt, "rank")) {
      std::int64_t v = 0;
      if (!parseInt(arg, v) || v == 0 || v == std::numeric_limits<std::int64_t>::min()) {
        return false;
      }
    } else if (is(opt, "count")) {
      if (!isIntIn(arg, 0, kLongMax)) return false;
      *count = true;
    } else if (is(opt, "maxlen")) {
      if (!isIntIn(arg, 0, kLongMax)) return false;
    } else {
      return false;
    }
  }
  return true;
}

// SRANDMEMBER key [count]; HRANDFIELD key [count [WITHVALUES]]; ZRANDMEMBER ... WITHSCORES.
// Returns the shape, kNone for a request Redis refuses.
MissShape randShape(Args a, std::string_view withWord) {
  if (a.size() == 2) return MissShape::kNil;
  if (a.size() == 3)
    return isIntIn(a[2], -kLongMax, kLongMax) ? MissShape::kEmptyArray : MissShape::kNone;
  if (a.size() == 4 && !withWord.empty() && is(a[3], withWord) &&
      isIntIn(a[2], -kLongMax / 2, kLongMax / 2)) {
    return MissShape::kEmptyArray;
  }
  return MissShape::kNone;
}

// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN].
MissShape lcsShape(Args a) {
  bool len = false;
  bool idx = false;
  for (std::size_t j = 3; j < a.size(); ++j) {
    if (is(a[j], "idx")) {
      idx = true;
    } else if (is(a[j], "len")) {
      len = true;
    } else if (is(a[j], "withmatchlen")) {
      // only shapes the IDX reply
    } else if (is(a[j], "minmatchlen") && j + 1 < a.size()) {
      if (!isInt(a[++j])) return MissShape::kNone;
    } else {
      return MissShape::kNone;
    }
  }
  if (idx) return MissShape::kNone;  // a map with "matches" and "len": no shape of its own
  return len ? MissShape::kZero : MissShape::kEmptyString;
}

// BITCOUNT key [start end [BYTE | BIT]].
bool bitcountOk(Args a) {
  if (a.size() == 2) return true;
  if (a.size() != 4 && a.size() != 5) return false;
  if (!isInt(a[2]) || !isInt(a[3])) return false;
  return a.size() == 4 || is(a[4], "byte") || is(a[4], "bit");
}

// numkeys at a[1], then the keys; returns the index after the keys, or 0 when Redis refuses.
std::size_t afterKeys(Args a) {
  std::int64_t n = 0;
  if (a.size() < 2 || !parseInt(a[1], n) || n < 1) return 0;
  if (static_cast<std::uint64_t>(n) > a.size() - 2) return 0;
  return 2 + static_cast<std::size_t>(n);
}

// SINTERCARD / ZINTERCARD numkeys key... [LIMIT n].
bool interCardOk(Args a) {
  std::size_t j = afterKeys(a);
  if (j == 0) return false;
  for (; j < a.size(); j += 2) {
    if (!is(a[j], "limit") || j + 1 >= a.size() || !isIntIn(a[j + 1], 0, kLongMax)) return false;
  }
  return true;
}

// ZDIFF numkeys key... [WITHSCORES]; ZINTER / ZUNION also [WEIGHTS w...] [AGGREGATE how].
bool zsetOpOk(Args a, bool diff) {
  std::size_t j = afterKeys(a);
  if (j == 0) return false;
  const std::size_t keys = j - 2;
  while (j < a.size()) {
    const std::size_t remaining = a.size() - j;
    if (!diff && remaining >= keys + 1 && is(a[j], "weights")) {
      for (std::size_t i = 1; i <= keys; ++i) {
        if (!isDouble(a[j + i])) return false;
      }
      j += keys + 1;
    } else if (!diff && remaining >= 2 && is(a[j], "aggregate")) {
      const std::string_view how = a[j + 1];
      if (!is(how, "sum") && !is(how, "min") && !is(how, "max")) return false;
      j += 2;
    } else if (is(a[j], "withscores")) {
      ++j;
    } else {
      return false;
    }
  }
  return true;
}

enum class RangeBy : std::uint8_t { kAny, kRank, kScore, kLex };

// Redis's zrangeGenericCommand: key at a[1], the range at a[2] and a[3], options after.
// `by` kAny: ZRANGE, which takes BYSCORE / BYLEX / REV; otherwise the command fixes both.
bool zrangeOk(Args a, RangeBy by) {
  if (a.size() < 4) return false;
  const bool flexible = by == RangeBy::kAny;
  bool rev = false;
  bool limit = false;
  bool withscores = false;
  for (std::size_t j = 4; j < a.size(); ++j) {
    const std::size_t left = a.size() - j - 1;
    if (is(a[j], "withscores")) {
      withscores = true;
    } else if (is(a[j], "limit") && left >= 2) {
      if (!isInt(a[j + 1]) || !isInt(a[j + 2])) return false;
      limit = true;
      j += 2;
    } else if (flexible && !rev && is(a[j], "rev")) {
      rev = true;
    } else if (by == RangeBy::kAny && is(a[j], "bylex")) {
      by = RangeBy::kLex;
    } else if (by == RangeBy::kAny && is(a[j], "byscore")) {
      by = RangeBy::kScore;
    } else {
      return false;
    }
  }
  if (by == RangeBy::kAny) by = RangeBy::kRank;
  if (limit && by == RangeBy::kRank) return false;
  if (withscores && by == RangeBy::kLex) return false;
  switch (by) {
    case RangeBy::kScore:
      return isScoreBound(a[2]) && isScoreBound(a[3]);
    case RangeBy::kLex:
      return isLexBound(a[2]) && isLexBound(a[3]);
    case RangeBy::kAny:
    case RangeBy::kRank:
      break;
  }
  return isInt(a[2]) && isInt(a[3]);
}

struct StreamId {
  std::uint64_t ms = 0;
  std::uint64_t seq = 0;
};

// "ms" or "ms-seq"; a missing seq is `missingSeq`.
bool parseStreamId(std::string_view s, std::uint64_t missingSeq, StreamId& id) {
  const std::size_t dash = s.find('-');
  if (dash == std::string_view::npos) {
    id.seq = missingSeq;
    return parseUint(s, id.ms);
  }
  return parseUint(s.substr(0, dash), id.ms) && parseUint(s.substr(dash + 1), id.seq);
}

// An XRANGE bound: "-", "+", an ID, or '(' and an ID that has a neighbour on its inner side.
bool isRangeBound(std::string_view s, bool start) {
  constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
  if (s == "-" || s == "+") return true;
  StreamId id;
  if (s.size() > 1 && s[0] == '(') {
    if (!parseStreamId(s.substr(1), start ? 0 : kMax, id)) return false;
    return start ? !(id.ms == kMax && id.seq == kMax) : !(id.ms == 0 && id.seq == 0);
  }
  return parseStreamId(s, start ? 0 : kMax, id);
}

// XRANGE key start end [COUNT n]; XREVRANGE key end start [COUNT n].
bool xrangeOk(Args a, bool rev) {
  if (a.size() < 4) return false;
  if (!isRangeBound(a[rev ? 3 : 2], true) || !isRangeBound(a[rev ? 2 : 3], false)) return false;
  for (std::size_t j = 4; j < a.size(); j += 2) {
    if (!is(a[j], "count") || j + 1 >= a.size() || !isInt(a[j + 1])) return false;
  }
  return true;
}

// XREAD [COUNT n] STREAMS key... id... without BLOCK (Redis would wait: no shape).
bool xreadOk(Args a) {
  for (std::size_t i = 1; i + 1 < a.size(); ++i) {
    if (is(a[i], "count")) {
      if (!isInt(a[++i])) return false;
    } else if (is(a[i], "streams")) {
      const std::size_t rest = a.size() - i - 1;
      if (rest % 2 != 0) return false;
      StreamId id;
      for (std::size_t j = i + 1 + rest / 2; j < a.size(); ++j) {
        if (a[j] != "$" && !parseStreamId(a[j], 0, id)) return false;
      }
      return true;
    } else {
      return false;  // BLOCK, or what XREAD does not take
    }
  }
  return false;
}

// SORT_RO key [LIMIT offset count] [ASC | DESC] [ALPHA]. BY and GET fail closed: in a cluster
// Redis refuses patterns that may reach other slots, and their keys are not the request's.
bool sortRoOk(Args a) {
  for (std::size_t j = 2; j < a.size(); ++j) {
    if (is(a[j], "asc") || is(a[j], "desc") || is(a[j], "alpha")) continue;
    if (is(a[j], "limit") && j + 2 < a.size() && isInt(a[j + 1]) && isInt(a[j + 2])) {
      j += 2;
      continue;
    }
    return false;
  }
  return true;
}

// BITFIELD_RO key [GET type offset]...; returns the number of GETs, or -1.
std::int64_t bitfieldRoGets(Args a) {
  if ((a.size() - 2) % 3 != 0) return -1;
  for (std::size_t j = 2; j < a.size(); j += 3) {
    if (!is(a[j], "get")) return -1;
    const std::string_view type = a[j + 1];
    if (type.size() < 2) return -1;
    const bool isSigned = type[0] == 'i' || type[0] == 'I';
    if (!isSigned && type[0] != 'u' && type[0] != 'U') return -1;
    std::int64_t bits = 0;
    if (!parseInt(type.substr(1), bits) || bits < 1 || bits > (isSigned ? 64 : 63)) return -1;
    std::string_view offset = a[j + 2];
    const bool byType = !offset.empty() && offset[0] == '#';
    if (byType) offset.remove_prefix(1);
    std::int64_t at = 0;
    if (!parseInt(offset, at) || at < 0 || at > kMaxBitOffset) return -1;
    if (byType && at * bits > kMaxBitOffset) return -1;
  }
  return static_cast<std::int64_t>((a.size() - 2) / 3);
}

enum class Expire : std::uint8_t { kNone, kEx, kPx, kExAt, kPxAt };

Expire expireOption(std::string_view opt) {
  if (is(opt, "ex")) return Expire::kEx;
  if (is(opt, "px")) return Expire::kPx;
  if (is(opt, "exat")) return Expire::kExAt;
  if (is(opt, "pxat")) return Expire::kPxAt;
  return Expire::kNone;
}

// EX / PX / EXAT / PXAT values of SET and GETEX: positive, and not absurdly far.
bool isExpireValue(Expire kind, std::string_view value) {
  const bool seconds = kind == Expire::kEx || kind == Expire::kExAt;
  return isIntIn(value, 1, seconds ? kMaxExpireSeconds : kMaxExpireMillis);
}

// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT t | PXAT t | KEEPTTL], as Redis's
// parseExtendedStringArgumentsOrReply takes them (an option may repeat, NX and XX exclude each
// other, and so do KEEPTTL and the different expire options).
MissShape setShape(Args a) {
  bool nx = false;
  bool xx = false;
  bool get = false;
  bool keepTtl = false;
  Expire expire = Expire::kNone;
  for (std::size_t j = 3; j < a.size(); ++j) {
    const std::string_view opt = a[j];
    const Expire kind = expireOption(opt);
    if (is(opt, "nx") && !xx) {
      nx = true;
    } else if (is(opt, "xx") && !nx) {
      xx = true;
    } else if (is(opt, "get")) {
      get = true;
    } else if (is(opt, "keepttl") && expire == Expire::kNone) {
      keepTtl = true;
    } else if (kind != Expire::kNone && !keepTtl && (expire == Expire::kNone || expire == kind) &&
               j + 1 < a.size()) {
      expire = kind;
      if (!isExpireValue(kind, a[++j])) return MissShape::kNone;
    } else {
      return MissShape::kNone;
    }
  }
  // With GET, nil is the old value of a key that did not exist: the SET happened (with NX: the
  // lock was taken). Only XX GET's nil means "not set".
  if (get && !xx) return MissShape::kNone;
  return MissShape::kNil;
}

// GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST].
bool getexOk(Args a) {
  if (a.size() == 2) return true;
  if (a.size() == 3) return is(a[2], "persist");
  const Expire kind = expireOption(a[2]);
  return a.size() == 4 && kind != Expire::kNone && isExpireValue(kind, a[3]);
}

// EXPIRE key t [NX | XX | GT | LT] (and PEXPIRE, EXPIREAT, PEXPIREAT).
bool expireOk(Args a, std::int64_t maxAbs) {
  if (!isIntIn(a[2], -maxAbs, maxAbs)) return false;
  bool nx = false;
  bool xx = false;
  bool gt = false;
  bool lt = false;
  for (std::size_t j = 3; j < a.size(); ++j) {
    if (is(a[j], "nx")) {
      nx = true;
    } else if (is(a[j], "xx")) {
      xx = true;
    } else if (is(a[j], "gt")) {
      gt = true;
    } else if (is(a[j], "lt")) {
      lt = true;
    } else {
      return false;
    }
  }
  return !(nx && (xx || gt || lt)) && !(gt && lt);
}

MissReply shaped(MissShape shape, std::size_t count = 0) {
  if (shape == MissShape::kNone || count > std::numeric_limits<std::uint32_t>::max()) return {};
  return MissReply{shape, static_cast<std::uint32_t>(count)};
}

MissShape when(bool ok, MissShape shape) {
  return ok ? shape : MissShape::kNone;
}

// Out of line: missReplyOf answers the rules without argument checks itself (kFixedShape).
[[gnu::noinline]] MissReply apply(Rule rule, Args a) {
  switch (rule) {
    case Rule::kNil:
      return shaped(MissShape::kNil);
    case Rule::kLindex:
      return shaped(when(isInt(a[2]), MissShape::kNil));
    case Rule::kGetex:
      return shaped(when(getexOk(a), MissShape::kNil));
    case Rule::kGeodist:
      return shaped(when(a.size() == 4 || (a.size() == 5 && (is(a[4], "m") || is(a[4], "km") ||
                                                             is(a[4], "ft") || is(a[4], "mi"))),
                         MissShape::kNil));
    case Rule::kLpos: {
      bool count = false;
      if (!lposOk(a, &count)) return {};
      return shaped(count ? MissShape::kEmptyArray : MissShape::kNil);
    }
    case Rule::kSrandmember:
      return shaped(randShape(a, {}));
    case Rule::kHrandfield:
      return shaped(randShape(a, "withvalues"));
    case Rule::kZrandmember:
      return shaped(randShape(a, "withscores"));
    case Rule::kGetrange:
      return shaped(when(isInt(a[2]) && isInt(a[3]), MissShape::kEmptyString));
    case Rule::kLcs:
      return shaped(lcsShape(a));
    case Rule::kZero:
      return shaped(MissShape::kZero);
    case Rule::kZcount:
      return shaped(when(isScoreBound(a[2]) && isScoreBound(a[3]), MissShape::kZero));
    case Rule::kZlexcount:
      return shaped(when(isLexBound(a[2]) && isLexBound(a[3]), MissShape::kZero));
    case Rule::kInterCard:
      return shaped(when(interCardOk(a), MissShape::kZero));
    case Rule::kBitcount:
      return shaped(when(bitcountOk(a), MissShape::kZero));
    case Rule::kGetbit:
      return shaped(when(isIntIn(a[2], 0, kMaxBitOffset), MissShape::kZero));
    case Rule::kMinusTwo:
      return shaped(MissShape::kMinusTwo);
    case Rule::kEmptyArray:
      return shaped(MissShape::kEmptyArray);
    case Rule::kLrange:
      return shaped(when(isInt(a[2]) && isInt(a[3]), MissShape::kEmptyArray));
    case Rule::kZrange:
      return shaped(when(zrangeOk(a, RangeBy::kAny), MissShape::kEmptyArray));
    case Rule::kZrevrange:
      return shaped(when(zrangeOk(a, RangeBy::kRank), MissShape::kEmptyArray));
    case Rule::kZrangeByScore:
    case Rule::kZrevrangeByScore:
      return shaped(when(zrangeOk(a, RangeBy::kScore), MissShape::kEmptyArray));
    case Rule::kZrangeByLex:
    case Rule::kZrevrangeByLex:
      return shaped(when(zrangeOk(a, RangeBy::kLex), MissShape::kEmptyArray));
    case Rule::kZdiff:
      return shaped(when(zsetOpOk(a, true), MissShape::kEmptyArray));
    case Rule::kZinterUnion:
      return shaped(when(zsetOpOk(a, false), MissShape::kEmptyArray));
    case Rule::kXrange:
      return shaped(when(xrangeOk(a, false), MissShape::kEmptyArray));
    case Rule::kXrevrange:
      return shaped(when(xrangeOk(a, true), MissShape::kEmptyArray));
    case Rule::kSortRo:
      return shaped(when(sortRoOk(a), MissShape::kEmptyArray));
    case Rule::kEmptyMap:
      return shaped(MissShape::kEmptyMap);
    case Rule::kEmptySet:
      return shaped(MissShape::kEmptySet);
    case Rule::kNilsPerKey:
      return shaped(MissShape::kNils, a.size() - 1);
    case Rule::kNilsPerArg:
      return shaped(MissShape::kNils, a.size() - 2);
    case Rule::kZerosPerArg:
      return shaped(MissShape::kZeros, a.size() - 2);
    case Rule::kBitfieldRo: {
      const std::int64_t gets = bitfieldRoGets(a);
      if (gets < 0) return {};
      return shaped(MissShape::kZeros, static_cast<std::size_t>(gets));
    }
    case Rule::kNoneType:
      return shaped(MissShape::kNoneType);
    case Rule::kScan: {
      std::uint64_t cursor = 0;
      return shaped(when(parseUint(a[2], cursor), MissShape::kEmptyScan));
    }
    case Rule::kXread:
      return shaped(when(xreadOk(a), MissShape::kNullArray));
    case Rule::kSet:
      return shaped(setShape(a));
    case Rule::kSetnx:
      return shaped(MissShape::kZero);
    case Rule::kMsetnx:
      return shaped(when((a.size() - 1) % 2 == 0, MissShape::kZero));
    case Rule::kExpireSeconds:
      return shaped(when(expireOk(a, kMaxExpireSeconds), MissShape::kZero));
    case Rule::kExpireMillis:
      return shaped(when(expireOk(a, kMaxExpireMillis), MissShape::kZero));
  }
  return {};
}

// The documented classes, in the order docs/endpoints.md lists them. Command names are
// comma-separated; an entry may qualify its command ("LPOS without COUNT"); entries in lower
// case are prose. The unit tests check every entry against missReplyOf, and every command
// missReplyOf answers against this list.
constexpr auto kClasses = std::to_array<MissClass>({
    {"missing value",
     "GET, GETEX, HGET, LINDEX, ZSCORE, ZRANK, ZREVRANK, DUMP, GEODIST, LPOS without COUNT, "
     "SRANDMEMBER without count, HRANDFIELD without count, ZRANDMEMBER without count",
     "nil: RESP2 $-1, RESP3 _", false},
    {"substring of a missing string", "GETRANGE, SUBSTR, LCS", "empty string: $0", false},
    {"counts and membership",
     "EXISTS, TOUCH, HEXISTS, SISMEMBER, STRLEN, HSTRLEN, HLEN, LLEN, SCARD, ZCARD, XLEN, "
     "ZCOUNT, ZLEXCOUNT, SINTERCARD, ZINTERCARD, BITCOUNT, GETBIT, PFCOUNT, LCS with LEN",
     "zero: :0", false},
    {"time to live", "TTL, PTTL, EXPIRETIME, PEXPIRETIME", "-2 (no such key): :-2", false},
    {"ranges and lists",
     "LRANGE, HKEYS, HVALS, ZRANGE, ZREVRANGE, ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZRANGEBYLEX, "
     "ZREVRANGEBYLEX, ZDIFF, ZINTER, ZUNION, XRANGE, XREVRANGE, SORT_RO without BY or GET, "
     "LPOS with COUNT, SRANDMEMBER with count, HRANDFIELD with count, ZRANDMEMBER with count",
     "empty array: *0", false},
    {"whole hash", "HGETALL", "empty map: RESP2 *0, RESP3 %0", false},
    {"sets", "SMEMBERS, SINTER, SUNION, SDIFF", "empty set: RESP2 *0, RESP3 ~0", false},
    {"several values", "MGET, HMGET, ZMSCORE, GEOHASH",
     "array of nils, one per key, field or member: *N of $-1 (RESP3: of _)", false},
    {"several memberships", "SMISMEMBER, BITFIELD_RO",
     "array of zeros, one per member (BITFIELD_RO: per GET): *N of :0", false},
    {"type", "TYPE", "none: +none", false},
    {"scan of a key", "HSCAN, SSCAN, ZSCAN", "cursor 0, no elements: *2 $1 0 *0", false},
    {"stream read", "XREAD without BLOCK", "null array: RESP2 *-1, RESP3 _", false},
    {"cache writes: SET", "SET, SET NX, SET XX, SET XX GET",
     "nil, as for a SET NX / XX that did not set (never OK: a lock is never taken): RESP2 $-1, "
     "RESP3 _",
     true},
    {"cache writes: conditional", "SETNX, HSETNX, MSETNX, EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT",
     "zero (not set): :0", true},
    {"writes that never fail open",
     "DEL, UNLINK, GETDEL, GETSET, SET GET, SET NX GET, SETEX, PSETEX, MSET, INCR, INCRBY, "
     "DECR, APPEND, HSET, HDEL, HINCRBY, LPUSH, RPUSH, LPOP, SADD, SREM, ZADD, ZREM, XADD, "
     "PERSIST, and every other write",
     "fails closed (TIMEOUT / UNAVAILABLE)", true},
    {"everything else",
     "KEYS, SCAN, RANDOMKEY, DBSIZE, OBJECT ENCODING, MEMORY USAGE, BITPOS, GEOPOS, GEOSEARCH, "
     "GEORADIUS_RO, XPENDING, XINFO STREAM, XREAD with BLOCK, LCS with IDX, "
     "SORT_RO with BY or GET, EVAL_RO, FCALL_RO, and every malformed request",
     "fails closed (TIMEOUT / UNAVAILABLE)", false},
});

// The shape of the rules that take no argument checks (kNone for the others), so that the common
// requests (GET, EXISTS, TTL, ...) are answered without apply()'s big switch and stack frame.
constexpr auto kFixedShape = [] {
  std::array<MissShape, kRuleCount> t{};
  t[static_cast<std::size_t>(Rule::kNil)] = MissShape::kNil;
  t[static_cast<std::size_t>(Rule::kZero)] = MissShape::kZero;
  t[static_cast<std::size_t>(Rule::kMinusTwo)] = MissShape::kMinusTwo;
  t[static_cast<std::size_t>(Rule::kEmptyArray)] = MissShape::kEmptyArray;
  t[static_cast<std::size_t>(Rule::kEmptyMap)] = MissShape::kEmptyMap;
  t[static_cast<std::size_t>(Rule::kEmptySet)] = MissShape::kEmptySet;
  t[static_cast<std::size_t>(Rule::kNoneType)] = MissShape::kNoneType;
  t[static_cast<std::size_t>(Rule::kSetnx)] = MissShape::kZero;
  return t;
}();

// missReplyOf once the row's rowRule is known.
MissReply replyOf(std::uint8_t r, const commands::CommandInfo& info, Args argv, bool cacheWrite) {
  if (r == kClosed || argv.empty() || !commands::arityOk(info, argv.size())) return {};
  const auto rule = static_cast<Rule>(r);
  if (isCacheWriteRule(rule) && !cacheWrite) return {};
  const MissShape fixed = kFixedShape[r];
  if (fixed != MissShape::kNone) return MissReply{fixed, 0};
  return apply(rule, argv);
}

}  // namespace

MissReply missReplyOf(const commands::CommandInfo& info, std::span<const std::string_view> argv,
                      bool cacheWrite) {
  // The row's rule: a range check and a load for the rows of the Redis 7.0 table.
  return replyOf(commands::PerRow<std::uint8_t, &rowRule>::of(info), info, argv, cacheWrite);
}

void appendMissReply(std::string& out, MissReply reply, resp::Protocol proto) {
  switch (reply.shape) {
    case MissShape::kNone:
      return;
    case MissShape::kNil:
      resp::appendNull(out, proto);
      return;
    case MissShape::kNullArray:
      resp::appendNullArray(out, proto);
      return;
    case MissShape::kEmptyString:
      resp::appendBulk(out, {});
      return;
    case MissShape::kZero:
      resp::appendInteger(out, 0);
      return;
    case MissShape::kMinusTwo:
      resp::appendInteger(out, -2);
      return;
    case MissShape::kEmptyArray:
      resp::appendArrayHeader(out, 0);
      return;
    case MissShape::kEmptyMap:
      resp::appendMapHeader(out, 0, proto);
      return;
    case MissShape::kEmptySet:
      resp::appendSetHeader(out, 0, proto);
      return;
    case MissShape::kNils:
    case MissShape::kZeros: {
      const std::string_view element = reply.shape == MissShape::kZeros ? std::string_view(":0\r\n")
                                       : proto == resp::Protocol::kResp3
                                           ? std::string_view("_\r\n")
                                           : std::string_view("$-1\r\n");
      resp::appendArrayHeader(out, reply.count);
      out.reserve(out.size() + element.size() * reply.count);
      for (std::uint32_t i = 0; i < reply.count; ++i)
        out.append(element);
      return;
    }
    case MissShape::kNoneType:
      resp::appendSimple(out, "none");
      return;
    case MissShape::kEmptyScan:
      out.append("*2\r\n$1\r\n0\r\n*0\r\n");
      return;
  }
}

std::span<const MissClass> missClasses() {
  return kClasses;
}

}  // namespace keygate::policies
