#pragma once

// Incremental framer for replies from Redis: every RESP2 and RESP3 type (simple string, error,
// integer, bulk, array, null, boolean, double, big number, bulk error, verbatim string, map,
// set, attribute, push). It only finds where one complete reply ends so the bytes can be
// forwarded as they came; it never copies and never throws. Resumable like RequestParser.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "proxy/resp/limits.hpp"

namespace keygate::resp {

enum class ScanStatus : std::uint8_t { kOk, kIncomplete, kError };

struct ScanResult {
  ScanStatus status = ScanStatus::kIncomplete;
  std::size_t consumed = 0;  // kOk: length of the complete frame at the front of the input
  char type = 0;             // kOk: first byte of the frame ('+', '-', ':', '$', '*', '>', ...);
                             // for a frame led by attributes, the type of the reply after them
  std::string_view error;    // kError: static message
};

class ReplyScanner {
 public:
  explicit ReplyScanner(const Limits& limits) : limits_(limits) {}

  // Scans one complete reply frame at the front of `input` (an attribute frame `|` is part of
  // the reply it precedes). After kIncomplete, call again with the same prefix plus more bytes.
  ScanResult scan(std::string_view input);

  // Minimum total bytes the current frame needs, when known (after kIncomplete); else 0.
  std::size_t bytesWanted() const { return wanted_; }

  void reset();

 private:
  struct Level {
    std::int64_t remaining;  // elements still expected (maps and attributes: 2 per pair)
    bool isAttribute;
  };

  // The general walk, element by element, resumable at any byte; scan() frames the usual
  // single-element reply itself and leaves everything else to this.
  ScanResult scanElements(std::string_view input);
  // A fresh reply that starts with '*': a RESP2 array of simple elements (MGET, LRANGE, ...) is
  // framed in one loop; at the first element that is not simple or not complete, the state is
  // set up as scanElements() would have it there, and it goes on.
  ScanResult scanArray(std::string_view input);
  ScanResult fail(std::string_view error);
  ScanResult complete();
  // Records that an element ended at pos_; true when that completed the whole frame.
  bool elementDone();

  Limits limits_;
  std::size_t pos_ = 0;       // bytes of the current frame already scanned
  std::vector<Level> stack_;  // open aggregates, outermost first
  char type_ = 0;             // type of the reply (after any attribute)
  std::size_t wanted_ = 0;
  std::int64_t bulkLen_ = -1;    // length of the bulk whose data is awaited; -1: none
  std::size_t lineScanned_ = 0;  // the line being read was searched up to here
};

}  // namespace keygate::resp
