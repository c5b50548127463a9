#include "proxy/resp/request_parser.hpp"

// Request parsing mirrors what redis-server 7 accepts (networking.c processMultibulkBuffer /
// processInlineBuffer, sds.c sdssplitargs), so a client sees the same errors through keygate as
// against Redis itself. Deliberate differences, all of them stricter:
//   - header lines and bulks must end in CR LF (Redis only checks that a byte follows the CR);
//   - a line that is over the limit is an error whether or not its terminator has arrived yet,
//     so the outcome never depends on how the bytes were split into reads;
//   - a bulk header that does not start with '$' is reported as soon as its first byte arrives.
//
// Resumption: pos_ is how far the current request is validated, lineScanned_ how far the line
// being read was searched for its terminator, and bulkLen_ the length of the bulk whose data is
// awaited. A resumed call continues from there, so every input byte is looked at about once.
//
// Fast path: most requests arrive whole, with plain lengths (`$16`: no sign, no leading zero).
// parseWhole() reads those in one pass, parsing each length as its line is scanned and writing
// the argument views straight into the Request. readPlainLength() accepts only lines that the
// exact path (findHeaderEnd + parseRedisInteger) reads to the same value, and parseWhole() only
// requests that parseMultibulk() would accept as they are, so whatever it leaves (an incomplete
// request, an error, an unusual form) gets the same result as before from the exact path.

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>

#include "proxy/resp/reply_integer.hpp"

namespace keygate::resp {
namespace {

constexpr std::string_view kErrMultibulkLength = "Protocol error: invalid multibulk length";
constexpr std::string_view kErrBulkLength = "Protocol error: invalid bulk length";
constexpr std::string_view kErrInlineTooBig = "Protocol error: too big inline request";
constexpr std::string_view kErrMbulkCountTooBig = "Protocol error: too big mbulk count string";
constexpr std::string_view kErrBulkCountTooBig = "Protocol error: too big bulk count string";
constexpr std::string_view kErrUnbalancedQuotes = "Protocol error: unbalanced quotes in request";

// "Protocol error: expected '$', got 'X'" for every byte X, built at compile time so that, like
// every other message, it is a view of static storage.
constexpr std::string_view kExpectedDollarHead = "Protocol error: expected '$', got '";
constexpr std::size_t kExpectedDollarSize = kExpectedDollarHead.size() + 2;
using ExpectedDollarTable = std::array<std::array<char, kExpectedDollarSize>, 256>;

constexpr ExpectedDollarTable makeExpectedDollarTable() {
  ExpectedDollarTable table{};
  for (std::size_t b = 0; b < table.size(); ++b) {
    auto& msg = table[b];
    std::size_t i = 0;
    for (char c : kExpectedDollarHead)
      msg[i++] = c;
    auto got = static_cast<char>(static_cast<unsigned char>(b));
    // Redis replaces CR and LF in error replies with spaces; do it here so the message is safe
    // to write as a RESP error line as it is.
    if (got == '\r' || got == '\n') got = ' ';
    msg[i++] = got;
    msg[i] = '\'';
  }
  return table;
}

constexpr ExpectedDollarTable kExpectedDollar = makeExpectedDollarTable();

std::string_view expectedDollarError(char got) {
  const auto& msg = kExpectedDollar[static_cast<unsigned char>(got)];
  return {msg.data(), msg.size()};
}

// Accepts exactly the integers Redis' string2ll accepts: an optional '-', no '+', no spaces, no
// leading zeros (except "0" itself), fewer than 21 characters, within int64.
bool parseRedisInteger(std::string_view s, std::int64_t& value) {
  if (s.empty() || s.size() > 20) return false;
  if (s == "0") {
    value = 0;
    return true;
  }
  bool negative = false;
  std::size_t i = 0;
  if (s[0] == '-') {
    negative = true;
    i = 1;
  }
  if (i == s.size() || s[i] < '1' || s[i] > '9') return false;
  std::uint64_t v = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - digit) / 10) return false;
    v = v * 10 + digit;
  }
  constexpr auto kMaxPositive = static_cast<std::uint64_t>(INT64_MAX);
  if (negative) {
    if (v > kMaxPositive + 1) return false;
    value = v == kMaxPositive + 1 ? INT64_MIN : -static_cast<std::int64_t>(v);
  } else {
    if (v > kMaxPositive) return false;
    value = static_cast<std::int64_t>(v);
  }
  return true;
}

// The longest plain length line up to its CR: the type byte and the digits.
constexpr std::size_t kMaxPlainLine = 1 + detail::kMaxPlainDigits;

// The length line as nearly every client writes it: `<type byte><digits>\r\n`, `line` pointing
// at the type byte, with 1 to kMaxPlainDigits digits and no leading zero except in "0" itself.
// Returns the byte after its LF and sets `value`; returns nullptr for anything else (a sign, a
// leading zero, more digits, a missing or bad terminator), which the exact path then reads the
// way Redis does. The caller checks the line limit: a plain line is at most kMaxPlainLine bytes
// long up to its CR.
[[gnu::always_inline]] inline const char* readPlainLength(const char* line, const char* end,
                                                          std::uint64_t& value) {
  const char* const digits = line + 1;
  const char* const next = detail::readPlainDigits(digits, end, value);
  // Two or more digits and a leading zero ("$03"): Redis refuses it, and the exact path says so.
  if (next == nullptr || (*digits == '0' && next - digits > 3)) return nullptr;
  return next;
}

// One complete argument `$<plain length>\r\n<bytes>\r\n` at `p` of at most `maxBulk` bytes:
// returns the byte after it and sets `arg`, or returns nullptr for anything else.
[[gnu::always_inline]] inline const char* readPlainBulk(const char* p, const char* end,
                                                        std::size_t maxBulk,
                                                        std::string_view& arg) {
  if (p == end || *p != '$') return nullptr;
  std::uint64_t len = 0;
  const char* const bytes = readPlainLength(p, end, len);
  if (bytes == nullptr || len > maxBulk) return nullptr;
  // No overflow: len < 10^18.
  if (static_cast<std::uint64_t>(end - bytes) < len + 2 || !detail::isCrlf(bytes + len))
    return nullptr;
  arg = std::string_view(bytes, len);
  return bytes + len + 2;
}

// The usual request: whole in `in`, every length plain, within the limits. Parses it in one pass
// and returns its size, with `out` holding it; returns 0 for anything else, which the exact path
// then parses (`out` may have been changed, nothing else was).
// Flattened so that push_back() is inlined too: it is called once per argument.
[[gnu::flatten]] std::size_t parseWhole(std::string_view in, const Limits& limits, Request& out) {
  if (limits.maxInlineBytes < kMaxPlainLine) return 0;
  const char* const begin = in.data();
  const char* const end = begin + in.size();
  std::uint64_t count = 0;
  const char* p = readPlainLength(begin, end, count);
  if (p == nullptr || count == 0 || count > INT_MAX || count > limits.maxArrayElements) return 0;
  out.clear();
  const std::size_t maxBulk = limits.maxBulkBytes;
  for (std::uint64_t left = count; left != 0; --left) {
    std::string_view arg;
    p = readPlainBulk(p, end, maxBulk, arg);
    if (p == nullptr) return 0;
    out.args.push_back(arg);
  }
  const auto size = static_cast<std::size_t>(p - begin);
  out.raw = std::string_view(begin, size);
  return size;
}

enum class LineStatus : std::uint8_t { kFound, kIncomplete, kTooLong, kBadTerminator };

// Looks for the byte `terminator` ending the line that starts at `start`. The terminator may sit
// at most `limit` bytes after `start` (Redis gives up on a line once more than `limit` bytes are
// buffered without one). `scanned` carries how far earlier calls searched; `end` receives the
// terminator's offset.
LineStatus findLineEnd(std::string_view in, std::size_t start, std::size_t limit, char terminator,
                       std::size_t& scanned, std::size_t& end) {
  const std::size_t avail = in.size() - start;
  const std::size_t windowEnd = avail > limit ? start + limit + 1 : in.size();
  const std::size_t from = std::max(scanned, start);
  if (from < windowEnd) {
    const void* hit = std::memchr(in.data() + from, terminator, windowEnd - from);
    if (hit != nullptr) {
      end = static_cast<std::size_t>(static_cast<const char*>(hit) - in.data());
      scanned = end;
      return LineStatus::kFound;
    }
  }
  scanned = windowEnd;
  return avail > limit ? LineStatus::kTooLong : LineStatus::kIncomplete;
}

// Header lines end in CR LF; finds the CR and checks the LF after it.
LineStatus findHeaderEnd(std::string_view in, std::size_t start, std::size_t limit,
                         std::size_t& scanned, std::size_t& cr) {
  const LineStatus st = findLineEnd(in, start, limit, '\r', scanned, cr);
  if (st != LineStatus::kFound) return st;
  if (cr + 1 >= in.size()) return LineStatus::kIncomplete;
  return in[cr + 1] == '\n' ? LineStatus::kFound : LineStatus::kBadTerminator;
}

// A length line (`*count` or `$len`) at `start`, read fast when it is plain and exactly as Redis
// does otherwise. kFound sets `value` to the integer and `next` to the offset past the line;
// kBadTerminator also stands for content that is not an integer Redis accepts.
struct LengthLine {
  LineStatus status = LineStatus::kIncomplete;
  std::int64_t value = 0;
  std::size_t next = 0;
};

LengthLine readLengthLine(std::string_view in, std::size_t start, std::size_t limit,
                          std::size_t& scanned) {
  LengthLine line;
  std::uint64_t plain = 0;
  const char* const end = in.data() + in.size();
  const char* const next =
      limit >= kMaxPlainLine ? readPlainLength(in.data() + start, end, plain) : nullptr;
  if (next != nullptr) {
    line.status = LineStatus::kFound;
    line.value = static_cast<std::int64_t>(plain);
    line.next = static_cast<std::size_t>(next - in.data());
    scanned = 0;
    return line;
  }
  std::size_t cr = 0;
  line.status = findHeaderEnd(in, start, limit, scanned, cr);
  if (line.status != LineStatus::kFound) return line;
  if (!parseRedisInteger(in.substr(start + 1, cr - start - 1), line.value)) {
    line.status = LineStatus::kBadTerminator;
    return line;
  }
  scanned = 0;
  line.next = cr + 2;
  return line;
}

// isspace() in the C locale, which is what sdssplitargs skips between arguments.
bool isBlank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// What ends an unquoted argument in sdssplitargs (note: not \v or \f).
bool endsToken(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

bool isHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

// Splits an inline command line like sdssplitargs. Arguments without quotes are views of `line`;
// quoted ones are unescaped into out.inlineStorage, reserved up front to the line's size (the
// unescaped text is never longer than its source) so earlier views stay valid.
bool splitInline(std::string_view line, Request& out) {
  const std::size_t n = line.size();
  std::size_t i = 0;
  for (;;) {
    while (i < n && isBlank(line[i]))
      ++i;
    if (i == n) return true;

    const std::size_t start = i;
    while (i < n && !endsToken(line[i]) && line[i] != '"' && line[i] != '\'')
      ++i;
    if (i == n || endsToken(line[i])) {
      out.args.push_back(line.substr(start, i - start));
      continue;
    }

    // A quote: this argument needs unescaping.
    std::string& storage = out.inlineStorage;
    if (storage.capacity() < n) storage.reserve(n);
    const std::size_t tokenStart = storage.size();
    storage.append(line.data() + start, i - start);
    bool done = false;
    while (!done) {
      if (i == n) break;  // end of the line outside quotes ends the argument
      const char c = line[i];
      if (endsToken(c)) {
        done = true;
      } else if (c == '"') {
        ++i;
        for (;;) {
          if (i == n) return false;
          const char q = line[i];
          if (q == '\\' && i + 3 < n && line[i + 1] == 'x' && isHexDigit(line[i + 2]) &&
              isHexDigit(line[i + 3])) {
            storage.push_back(
                static_cast<char>(hexValue(line[i + 2]) * 16 + hexValue(line[i + 3])));
            i += 4;
          } else if (q == '\\' && i + 1 < n) {
            char e = line[i + 1];
            switch (e) {
              case 'n':
                e = '\n';
                break;
              case 'r':
                e = '\r';
                break;
              case 't':
                e = '\t';
                break;
              case 'b':
                e = '\b';
                break;
              case 'a':
                e = '\a';
                break;
              default:
                break;
            }
            storage.push_back(e);
            i += 2;
          } else if (q == '"') {
            // The closing quote must be followed by a blank or the end of the line.
            if (i + 1 < n && !isBlank(line[i + 1])) return false;
            ++i;
            done = true;
            break;
          } else {
            storage.push_back(q);
            ++i;
          }
        }
      } else if (c == '\'') {
        ++i;
        for (;;) {
          if (i == n) return false;
          const char q = line[i];
          if (q == '\\' && i + 1 < n && line[i + 1] == '\'') {
            storage.push_back('\'');
            i += 2;
          } else if (q == '\'') {
            if (i + 1 < n && !isBlank(line[i + 1])) return false;
            ++i;
            done = true;
            break;
          } else {
            storage.push_back(q);
            ++i;
          }
        }
      } else {
        storage.push_back(c);
        ++i;
      }
    }
    out.args.emplace_back(storage.data() + tokenStart, storage.size() - tokenStart);
  }
}

}  // namespace

ParseResult RequestParser::parse(std::string_view input, Request& out) {
  // A caller that broke the resume contract (shorter input than before) gets a fresh start
  // rather than reads past the end of its buffer.
  if (input.size() < pos_ || input.size() < lineScanned_) reset();
  wanted_ = 0;
  if (input.empty()) return {};
  if (input[0] != '*') return parseInline(input, out);
  if (argsExpected_ < 0) {
    if (const std::size_t size = parseWhole(input, limits_, out); size != 0) {
      lineScanned_ = 0;
      return {ParseStatus::kOk, size, {}};
    }
  }
  return parseMultibulk(input, out);
}

ParseResult RequestParser::fail(std::string_view error) {
  reset();
  return {ParseStatus::kError, 0, error};
}

ParseResult RequestParser::parseMultibulk(std::string_view in, Request& out) {
  if (argsExpected_ < 0) {
    const LengthLine header = readLengthLine(in, 0, limits_.maxInlineBytes, lineScanned_);
    switch (header.status) {
      case LineStatus::kFound:
        break;
      case LineStatus::kIncomplete:
        return {};
      case LineStatus::kTooLong:
        return fail(kErrMbulkCountTooBig);
      case LineStatus::kBadTerminator:
        return fail(kErrMultibulkLength);
    }
    const std::int64_t count = header.value;
    if (count > INT_MAX ||
        (count > 0 && static_cast<std::uint64_t>(count) > limits_.maxArrayElements)) {
      return fail(kErrMultibulkLength);
    }
    pos_ = header.next;
    spans_.clear();
    // Redis runs `*0` and `*-1` as nothing at all: an empty request for the caller to skip.
    if (count <= 0) return finish(in, out);
    argsExpected_ = count;
    // The count is the client's claim; the vector grows as arguments really arrive.
    spans_.reserve(std::min<std::size_t>(static_cast<std::size_t>(count), kInitialArgCapacity));
  }

  const auto expected = static_cast<std::size_t>(argsExpected_);
  while (spans_.size() < expected) {
    if (bulkLen_ < 0) {
      if (pos_ >= in.size()) return {};
      if (in[pos_] != '$') return fail(expectedDollarError(in[pos_]));
      const LengthLine header = readLengthLine(in, pos_, limits_.maxInlineBytes, lineScanned_);
      switch (header.status) {
        case LineStatus::kFound:
          break;
        case LineStatus::kIncomplete:
          return {};
        case LineStatus::kTooLong:
          return fail(kErrBulkCountTooBig);
        case LineStatus::kBadTerminator:
          return fail(kErrBulkLength);
      }
      if (header.value < 0 || static_cast<std::uint64_t>(header.value) > limits_.maxBulkBytes) {
        return fail(kErrBulkLength);
      }
      pos_ = header.next;
      bulkLen_ = header.value;
    }
    // No overflow: bulkLen_ < 2^63 and pos_ is bounded by the input size.
    const std::size_t end = pos_ + static_cast<std::size_t>(bulkLen_) + 2;
    if (in.size() < end) {
      wanted_ = end;
      return {};
    }
    if (in[end - 2] != '\r' || in[end - 1] != '\n') return fail(kErrBulkLength);
    spans_.emplace_back(pos_, static_cast<std::size_t>(bulkLen_));
    pos_ = end;
    bulkLen_ = -1;
  }
  return finish(in, out);
}

ParseResult RequestParser::finish(std::string_view in, Request& out) {
  out.clear();
  for (const auto& [offset, length] : spans_)
    out.args.push_back(in.substr(offset, length));
  out.raw = in.substr(0, pos_);
  const ParseResult result{ParseStatus::kOk, pos_, {}};
  reset();
  return result;
}

ParseResult RequestParser::parseInline(std::string_view in, Request& out) {
  std::size_t newline = 0;
  switch (findLineEnd(in, 0, limits_.maxInlineBytes, '\n', lineScanned_, newline)) {
    case LineStatus::kFound:
      break;
    case LineStatus::kIncomplete:
      return {};
    case LineStatus::kTooLong:
    case LineStatus::kBadTerminator:
      return fail(kErrInlineTooBig);
  }
  std::string_view line = in.substr(0, newline);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // sdssplitargs reads the line as a C string: nothing after a NUL byte exists for Redis.
  if (const void* nul = std::memchr(line.data(), '\0', line.size()); nul != nullptr) {
    line = line.substr(0, static_cast<std::size_t>(static_cast<const char*>(nul) - line.data()));
  }
  out.clear();
  out.isInline = true;
  if (!splitInline(line, out)) {
    out.clear();
    return fail(kErrUnbalancedQuotes);
  }
  reset();
  return {ParseStatus::kOk, newline + 1, {}};
}

void RequestParser::reset() {
  pos_ = 0;
  argsExpected_ = -1;
  bulkLen_ = -1;
  lineScanned_ = 0;
  spans_.clear();
  wanted_ = 0;
}

}  // namespace keygate::resp
