#pragma once

// Walks the elements of one complete, already framed reply (see ReplyScanner) without copying.
// Used where keygate must look inside a reply: pub/sub confirmations, handshake replies, INFO.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace keygate::resp {

struct Element {
  char type = 0;             // RESP type byte
  std::string_view text;     // payload of + - $ = ! ( , # _ ; empty for aggregates and nulls
  std::int64_t integer = 0;  // value for ':'; element count for * % ~ > | (maps: pairs); -1 null
  bool isNull = false;       // `_`, `$-1`, `*-1`
};

class ReplyReader {
 public:
  // `frame` must hold complete frames (as produced by ReplyScanner); views point into it.
  explicit ReplyReader(std::string_view frame) : data_(frame) {}

  // Next element in depth-first order (an aggregate's header, then its children).
  // nullopt at the end of input or on malformed input.
  std::optional<Element> next();

  std::size_t offset() const { return pos_; }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
};

}  // namespace keygate::resp
