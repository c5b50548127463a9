#include "proxy/resp/reply_reader.hpp"

// Elements are stored in depth-first order already (an aggregate's header precedes its
// children), so the walk is a plain left-to-right read of one element at a time: no stack.
// Every length is checked against what is left of the frame before it is used, so malformed or
// truncated input ends the walk instead of reading past the end. It accepts at least everything
// ReplyScanner accepts.

#include <cstring>

#include "proxy/resp/reply_integer.hpp"

namespace keygate::resp {

std::optional<Element> ReplyReader::next() {
  if (pos_ >= data_.size()) return std::nullopt;
  const void* hit = std::memchr(data_.data() + pos_, '\r', data_.size() - pos_);
  if (hit == nullptr) return std::nullopt;
  const auto cr = static_cast<std::size_t>(static_cast<const char*>(hit) - data_.data());
  if (cr + 1 >= data_.size() || data_[cr + 1] != '\n') return std::nullopt;
  const std::string_view line = data_.substr(pos_ + 1, cr - pos_ - 1);
  std::size_t next = cr + 2;

  Element e;
  e.type = data_[pos_];
  switch (e.type) {
    case '+':
    case '-':
    case ',':
    case '(':
      e.text = line;
      break;
    case ':':
      if (!detail::parseReplyInteger(line, e.integer)) return std::nullopt;
      break;
    case '#':
      if (line != "t" && line != "f") return std::nullopt;
      e.text = line;
      e.integer = line == "t" ? 1 : 0;
      break;
    case '_':
      e.isNull = true;
      e.integer = -1;
      break;
    case '$':
    case '=':
    case '!': {
      std::int64_t len = 0;
      if (!detail::parseReplyInteger(line, len)) return std::nullopt;
      if (len == -1 && e.type == '$') {
        e.isNull = true;
        e.integer = -1;
        break;
      }
      const std::size_t left = data_.size() - next;
      if (len < 0 || left < 2 || static_cast<std::uint64_t>(len) > left - 2) return std::nullopt;
      const auto n = static_cast<std::size_t>(len);
      if (data_[next + n] != '\r' || data_[next + n + 1] != '\n') return std::nullopt;
      e.text = data_.substr(next, n);
      next += n + 2;
      break;
    }
    case '*':
    case '%':
    case '~':
    case '>':
    case '|':
      if (!detail::parseReplyInteger(line, e.integer)) return std::nullopt;
      if (e.integer == -1 && e.type == '*') {
        e.isNull = true;
        break;
      }
      if (e.integer < 0) return std::nullopt;
      break;
    default:
      return std::nullopt;
  }
  pos_ = next;
  return e;
}

}  // namespace keygate::resp
