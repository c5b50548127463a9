#pragma once

// Incremental parser for client requests: RESP2 multibulk (`*N\r\n$len\r\n...`) and inline
// commands (`GET k\r\n`). It never throws, never allocates from a length it has not checked
// against Limits, and can be resumed: after kIncomplete, call parse() again with the same
// unconsumed prefix plus whatever has arrived since; work already done is not repeated.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/resp/limits.hpp"

namespace keygate::resp {

enum class ParseStatus : std::uint8_t {
  kOk,          // one request parsed; ParseResult::consumed bytes belong to it
  kIncomplete,  // need more bytes; nothing consumed
  kError,       // malformed or over a limit; reply "-ERR <error>" and close, as Redis does
};

struct ParseResult {
  ParseStatus status = ParseStatus::kIncomplete;
  std::size_t consumed = 0;
  // For kError: a Redis-style message such as "Protocol error: invalid bulk length".
  // Points at static storage.
  std::string_view error;
};

// One parsed request. Lifetime: `args` and `raw` point into the input passed to parse() (or, for
// inline commands whose quoting was rewritten, into the Request's own storage); they are valid
// until the caller changes that input buffer or parses the next request into the same object.
struct Request {
  std::vector<std::string_view> args;  // empty for an empty request (`*0`, blank line): skip it
  std::string_view raw;                // exact bytes of a multibulk request; empty when inline
  bool isInline = false;
  std::string inlineStorage;  // backing bytes for unescaped inline arguments

  void clear() {
    args.clear();
    raw = {};
    isInline = false;
    inlineStorage.clear();
  }
};

class RequestParser {
 public:
  explicit RequestParser(const Limits& limits) : limits_(limits) {}

  // Parses at most one request from the front of `input`, which must start at the first byte not
  // yet consumed. On kOk, `out` holds the request and `consumed` its length in bytes; on any
  // other status its contents are unspecified.
  ParseResult parse(std::string_view input, Request& out);

  // When the last parse() returned kIncomplete: how many bytes of input the current request needs
  // at least (already checked against the limits), so the caller can reserve once. 0 if unknown.
  std::size_t bytesWanted() const { return wanted_; }

  // Forget any partial progress (e.g. after the caller discarded its buffer).
  void reset();

 private:
  ParseResult parseInline(std::string_view input, Request& out);
  ParseResult parseMultibulk(std::string_view input, Request& out);
  ParseResult finish(std::string_view input, Request& out);
  ParseResult fail(std::string_view error);

  // Capacity reserved for the argument spans of one request before its arguments arrive.
  static constexpr std::size_t kInitialArgCapacity = 16;

  Limits limits_;
  // Resumable state, relative to the start of the current request.
  std::size_t pos_ = 0;             // bytes of the current request already validated
  std::int64_t argsExpected_ = -1;  // -1: header not parsed yet
  std::int64_t bulkLen_ = -1;       // length of the bulk whose data is awaited; -1: none
  std::size_t lineScanned_ = 0;     // the line being read was searched up to here
  std::vector<std::pair<std::size_t, std::size_t>> spans_;  // (offset, length) of parsed args
  std::size_t wanted_ = 0;
};

}  // namespace keygate::resp
