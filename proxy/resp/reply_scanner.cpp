#include "proxy/resp/reply_scanner.hpp"

// The scanner walks a reply element by element, keeping an explicit stack of open aggregates
// (how many elements each still expects) instead of recursing, so that a partial reply can be
// resumed exactly where the previous call stopped: pos_ is the offset of the next element,
// bulkLen_ the length of a bulk whose header was read but whose data has not arrived, and
// lineScanned_ how far the current line was already searched for its CR.
//
// Attributes (`|`) annotate the element after them and are not elements of their parent: an
// attribute level popped off the stack does not count toward the enclosing aggregate, and a
// top-level attribute is framed together with the reply it precedes. ScanResult::type is the
// type of that reply, never '|'.
//
// Not supported (redis-server never sends them): RESP3 streamed strings and aggregates (`$?`,
// `*?`, `;`, `.`) are reported as errors.
//
// Fast paths: most replies are one small element (`$3\r\nxxx\r\n`, `+OK`, `:1`) or a RESP2
// array of them (MGET, LRANGE), whole in the buffer. frameSimple() frames such an element in one
// go, with plain lengths read as they are scanned (detail::readPlainDigits), and scan() and
// scanArray() use it before any state is kept. It accepts only what the general walk accepts,
// with the same end, and leaves everything else to it: unusual forms, other types, incomplete or
// malformed input. scanArray() hands over the state the walk would have had at that element, so
// nothing is scanned twice and the results never depend on which path ran.

#include <algorithm>
#include <cstring>

#include "proxy/resp/reply_integer.hpp"

namespace keygate::resp {
namespace {

constexpr std::string_view kErrType = "Protocol error: invalid reply type byte";
constexpr std::string_view kErrBulkLength = "Protocol error: invalid bulk length in reply";
constexpr std::string_view kErrBulkTooBig = "Protocol error: bulk reply over the size limit";
constexpr std::string_view kErrAggregateLength = "Protocol error: invalid aggregate length";
constexpr std::string_view kErrTooManyElements =
    "Protocol error: aggregate reply over the element limit";
constexpr std::string_view kErrTooDeep = "Protocol error: reply nested too deep";
constexpr std::string_view kErrCrlf = "Protocol error: expected CRLF in reply";
constexpr std::string_view kErrLineTooLong = "Protocol error: reply line too long";
constexpr std::string_view kErrInteger = "Protocol error: invalid integer reply";
constexpr std::string_view kErrNull = "Protocol error: invalid null reply";
constexpr std::string_view kErrBoolean = "Protocol error: invalid boolean reply";
constexpr std::string_view kErrDouble = "Protocol error: invalid double reply";
constexpr std::string_view kErrBigNumber = "Protocol error: invalid big number reply";

// Longest content of a line holding a number, boolean or null; anything longer is not one.
constexpr std::size_t kShortLine = 32;

enum class LineStatus : std::uint8_t { kFound, kIncomplete, kError };

// Finds the CR LF ending the line whose type byte is at `start` and whose content may be at most
// `limit` bytes long. `scanned` carries how far earlier calls searched.
LineStatus findLineEnd(std::string_view in, std::size_t start, std::size_t limit,
                       std::size_t& scanned, std::size_t& cr, std::string_view& error) {
  const std::size_t avail = in.size() - start;
  const std::size_t span = limit < SIZE_MAX - 2 ? limit + 2 : SIZE_MAX;
  const std::size_t windowEnd = avail > span ? start + span : in.size();
  const std::size_t from = std::max(scanned, start + 1);
  if (from < windowEnd) {
    const void* hit = std::memchr(in.data() + from, '\r', windowEnd - from);
    if (hit != nullptr) {
      cr = static_cast<std::size_t>(static_cast<const char*>(hit) - in.data());
      scanned = cr;
      if (cr + 1 >= in.size()) return LineStatus::kIncomplete;
      if (in[cr + 1] != '\n') {
        error = kErrCrlf;
        return LineStatus::kError;
      }
      return LineStatus::kFound;
    }
  }
  scanned = windowEnd;
  if (avail >= span) {
    error = kErrLineTooLong;
    return LineStatus::kError;
  }
  return LineStatus::kIncomplete;
}

bool isKnownType(char t) {
  switch (t) {
    case '+':
    case '-':
    case ':':
    case '$':
    case '*':
    case '_':
    case '#':
    case ',':
    case '(':
    case '!':
    case '=':
    case '%':
    case '~':
    case '>':
    case '|':
      return true;
    default:
      return false;
  }
}

bool allDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool validBigNumber(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return allDigits(s);
}

bool validDouble(std::string_view s) {
  std::string_view magnitude = s;
  if (!magnitude.empty() && (magnitude[0] == '-' || magnitude[0] == '+')) {
    magnitude.remove_prefix(1);
  }
  if (magnitude == "inf" || magnitude == "nan") return true;
  if (magnitude.empty()) return false;
  return std::all_of(magnitude.begin(), magnitude.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+';
  });
}

bool isAggregate(char t) {
  return t == '*' || t == '%' || t == '~' || t == '>' || t == '|';
}

// Simple strings and errors longer than this are left to the exact path, which finds their end
// with memchr.
constexpr std::size_t kShortText = 32;

// Frames, in one go, the element at `start` when it is one of the forms nearly every reply is
// made of, written the usual way and complete in `in`: a bulk string with a plain length, the
// null bulk `$-1`, an integer of at most 18 digits, a short simple string or error. Returns the
// offset just past it; returns 0 for anything else (other types, aggregates, unusual forms,
// incomplete or malformed input), which the exact path then scans. It accepts only what the
// exact path accepts, with the same end, so the result does not depend on which path ran.
// Always inlined: a call would cost about as much as framing a small element.
[[gnu::always_inline]] inline std::size_t frameSimple(std::string_view in, std::size_t start,
                                                      const Limits& limits) {
  const char* const line = in.data() + start;
  const char* const end = in.data() + in.size();
  const char type = *line;
  std::uint64_t value = 0;
  if (type == '$') {
    const char* const data = detail::readPlainDigits(line + 1, end, value);
    if (data == nullptr) {
      const bool null =
          end - line >= 5 && line[1] == '-' && line[2] == '1' && detail::isCrlf(line + 3);
      return null ? start + 5 : 0;  // RESP2 null bulk
    }
    // No overflow: value < 10^18.
    if (value > limits.maxBulkBytes || static_cast<std::uint64_t>(end - data) < value + 2 ||
        !detail::isCrlf(data + value)) {
      return 0;
    }
    return static_cast<std::size_t>(data + value + 2 - in.data());
  }
  if (type == ':') {
    const char* digits = line + 1;
    if (digits != end && *digits == '-') ++digits;
    const char* const next = detail::readPlainDigits(digits, end, value);
    return next == nullptr ? 0 : static_cast<std::size_t>(next - in.data());
  }
  if (type == '+' || type == '-') {
    // The first CR must start the CR LF, and the text must be within the bulk limit.
    const std::size_t avail = in.size() - start;
    const std::size_t stop = avail < kShortText ? avail : kShortText;
    for (std::size_t i = 1; i < stop; ++i) {
      if (line[i] != '\r') continue;
      if (i + 1 == avail || line[i + 1] != '\n' || i - 1 > limits.maxBulkBytes) return 0;
      return start + i + 2;
    }
  }
  return 0;
}

}  // namespace

void ReplyScanner::reset() {
  pos_ = 0;
  stack_.clear();
  type_ = 0;
  wanted_ = 0;
  bulkLen_ = -1;
  lineScanned_ = 0;
}

ScanResult ReplyScanner::fail(std::string_view error) {
  reset();
  return {ScanStatus::kError, 0, 0, error};
}

ScanResult ReplyScanner::complete() {
  const ScanResult result{ScanStatus::kOk, pos_, type_, {}};
  reset();
  return result;
}

bool ReplyScanner::elementDone() {
  while (!stack_.empty()) {
    Level& top = stack_.back();
    if (--top.remaining > 0) return false;
    const bool attribute = top.isAttribute;
    stack_.pop_back();
    // An attribute is not an element of its parent: the element it annotates still follows.
    if (attribute) return false;
  }
  return true;
}

ScanResult ReplyScanner::scan(std::string_view in) {
  // A caller that broke the resume contract (shorter input than before) gets a fresh start
  // rather than reads past the end of its buffer.
  if (in.size() < pos_ || in.size() < lineScanned_) reset();
  wanted_ = 0;
  // Most replies are one simple element, whole in the buffer: no state to keep.
  if (pos_ == 0 && !in.empty()) {
    if (const std::size_t end = frameSimple(in, 0, limits_); end != 0) {
      lineScanned_ = 0;
      return {ScanStatus::kOk, end, in[0], {}};
    }
    if (in[0] == '*') return scanArray(in);
  }
  return scanElements(in);
}

ScanResult ReplyScanner::scanArray(std::string_view in) {
  std::uint64_t count = 0;
  const char* const header = detail::readPlainDigits(in.data() + 1, in.data() + in.size(), count);
  if (header == nullptr || count == 0 || count > limits_.maxArrayElements ||
      limits_.maxNestingDepth == 0) {
    return scanElements(in);
  }
  auto pos = static_cast<std::size_t>(header - in.data());
  std::uint64_t left = count;
  for (; left != 0; --left) {
    const std::size_t end = frameSimple(in, pos, limits_);
    if (end == 0) break;
    pos = end;
  }
  lineScanned_ = 0;
  if (left == 0) return {ScanStatus::kOk, pos, '*', {}};

  // The state scanElements() would have reached by itself at this point.
  type_ = '*';
  pos_ = pos;
  stack_.push_back(Level{static_cast<std::int64_t>(left), false});
  return scanElements(in);
}

ScanResult ReplyScanner::scanElements(std::string_view in) {
  for (;;) {
    if (bulkLen_ >= 0) {
      // No overflow: bulkLen_ < 2^63 and pos_ is bounded by the input size.
      const std::size_t end = pos_ + static_cast<std::size_t>(bulkLen_) + 2;
      if (in.size() < end) {
        wanted_ = end;
        return {};
      }
      if (in[end - 2] != '\r' || in[end - 1] != '\n') return fail(kErrCrlf);
      pos_ = end;
      bulkLen_ = -1;
      if (elementDone()) return complete();
      continue;
    }

    if (pos_ >= in.size()) return {};
    // The elements of an aggregate: simple ones in one go, as above.
    if (!stack_.empty()) {
      if (const std::size_t end = frameSimple(in, pos_, limits_); end != 0) {
        pos_ = end;
        lineScanned_ = 0;
        if (elementDone()) return complete();
        continue;
      }
    }
    const char t = in[pos_];
    if (!isKnownType(t)) return fail(kErrType);

    std::int64_t n = 0;
    std::string_view content;
    // A length or count line with plain digits (`$16`, `*10`) is read as it is scanned; its
    // value is the one parseReplyInteger() would give.
    const bool lengthLine = t == '$' || t == '=' || t == '!' || isAggregate(t);
    std::uint64_t plainValue = 0;
    const char* const plainEnd =
        lengthLine
            ? detail::readPlainDigits(in.data() + pos_ + 1, in.data() + in.size(), plainValue)
            : nullptr;
    if (plainEnd != nullptr) {
      n = static_cast<std::int64_t>(plainValue);
      if (stack_.empty() && t != '|') type_ = t;
      pos_ = static_cast<std::size_t>(plainEnd - in.data());
      lineScanned_ = 0;
    } else {
      const bool textLine = t == '+' || t == '-' || t == ',' || t == '(';
      const std::size_t limit = textLine ? limits_.maxBulkBytes : kShortLine;
      std::size_t cr = 0;
      std::string_view error;
      switch (findLineEnd(in, pos_, limit, lineScanned_, cr, error)) {
        case LineStatus::kFound:
          break;
        case LineStatus::kIncomplete:
          return {};
        case LineStatus::kError:
          return fail(error);
      }
      content = in.substr(pos_ + 1, cr - pos_ - 1);
      if (stack_.empty() && t != '|') type_ = t;
      pos_ = cr + 2;
      lineScanned_ = 0;
    }

    switch (t) {
      case '+':
      case '-':
        break;
      case ':':
        if (!detail::parseReplyInteger(content, n)) return fail(kErrInteger);
        break;
      case '(':
        if (!validBigNumber(content)) return fail(kErrBigNumber);
        break;
      case ',':
        if (!validDouble(content)) return fail(kErrDouble);
        break;
      case '#':
        if (content != "t" && content != "f") return fail(kErrBoolean);
        break;
      case '_':
        if (!content.empty()) return fail(kErrNull);
        break;
      case '$':
      case '=':
      case '!':
        if (plainEnd == nullptr && (!detail::parseReplyInteger(content, n) || content[0] == '+')) {
          return fail(kErrBulkLength);
        }
        if (n == -1 && t == '$') break;  // RESP2 null bulk
        if (n < 0) return fail(kErrBulkLength);
        if (static_cast<std::uint64_t>(n) > limits_.maxBulkBytes) return fail(kErrBulkTooBig);
        bulkLen_ = n;
        continue;
      default: {  // aggregates: * % ~ > |
        if (plainEnd == nullptr && (!detail::parseReplyInteger(content, n) || content[0] == '+')) {
          return fail(kErrAggregateLength);
        }
        if (n == -1 && t == '*') break;  // RESP2 null array
        if (n < 0) return fail(kErrAggregateLength);
        const bool pairs = t == '%' || t == '|';
        const auto count = static_cast<std::uint64_t>(n);
        if (count > limits_.maxArrayElements || (pairs && count * 2 > limits_.maxArrayElements)) {
          return fail(kErrTooManyElements);
        }
        if (count == 0) {
          if (t == '|') continue;  // an empty attribute annotates the next element
          break;
        }
        if (stack_.size() >= limits_.maxNestingDepth) return fail(kErrTooDeep);
        stack_.push_back(Level{pairs ? n * 2 : n, t == '|'});
        continue;
      }
    }
    if (elementDone()) return complete();
  }
}

}  // namespace keygate::resp
