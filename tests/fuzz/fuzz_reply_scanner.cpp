// libFuzzer target for ReplyScanner and ReplyReader (and, through re-encoding, reply_writer).
// Properties checked on top of "does not crash":
//   - consumed never exceeds the input; kOk consumes something, kIncomplete and kError nothing;
//   - the same bytes give the same frames whole, split at one point, and one byte at a time;
//   - bytesWanted() is 0 or more than what is buffered;
//   - every frame re-scans alone to itself with the same type, and a proper prefix of it is
//     incomplete (never an error, never a shorter frame);
//   - ReplyReader walks every frame the scanner accepted to its exact end, never reading outside
//     it, and the elements it returns form exactly one reply within the limits;
//   - the elements written back with the reply_writer functions give the same elements again;
//   - ReplyReader on arbitrary bytes stays inside them and always makes progress.
// The input is plain RESP; a hash of it picks the split point and the limits.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "proxy/resp/reply_reader.hpp"
#include "proxy/resp/reply_scanner.hpp"
#include "proxy/resp/reply_writer.hpp"

namespace {

using keygate::fuzz::fnv1a;
using keygate::fuzz::within;

using keygate::resp::Element;
using keygate::resp::Limits;
using keygate::resp::Protocol;
using keygate::resp::ReplyReader;
using keygate::resp::ReplyScanner;
using keygate::resp::ScanResult;
using keygate::resp::ScanStatus;

struct Frame {
  ScanStatus status;
  std::string bytes;
  char type;
  std::string_view error;

  bool operator==(const Frame&) const = default;
};

struct Run {
  std::vector<Frame> frames;
  std::size_t leftover = 0;

  bool operator==(const Run&) const = default;
};

struct Flat {
  char type;
  std::string text;
  std::int64_t integer;
  bool isNull;

  bool operator==(const Flat&) const = default;
};

bool isAggregate(char t) {
  return t == '*' || t == '%' || t == '~' || t == '>' || t == '|';
}

// Reads `frame` with ReplyReader and checks that its elements make up exactly one reply
// (attributes included) that respects `limits`. Returns the elements.
std::vector<Flat> walkFrame(std::string_view frame, const Limits& limits) {
  struct Level {
    std::int64_t remaining;
    bool isAttribute;
  };
  std::vector<Level> stack;
  std::vector<Flat> flat;
  bool done = false;
  ReplyReader reader(frame);
  std::size_t last = 0;
  while (std::optional<Element> e = reader.next()) {
    FUZZ_CHECK(!done);
    FUZZ_CHECK(reader.offset() > last && reader.offset() <= frame.size());
    last = reader.offset();
    FUZZ_CHECK(within(e->text, frame));
    flat.push_back(Flat{e->type, std::string(e->text), e->integer, e->isNull});
    if (e->type == '$' || e->type == '=' || e->type == '!') {
      FUZZ_CHECK(e->text.size() <= limits.maxBulkBytes);
    }
    if (isAggregate(e->type) && !e->isNull) {
      const bool pairs = e->type == '%' || e->type == '|';
      FUZZ_CHECK(e->integer >= 0);
      const auto elements = static_cast<std::uint64_t>(e->integer) * (pairs ? 2 : 1);
      FUZZ_CHECK(elements <= limits.maxArrayElements);
      if (elements > 0) {
        stack.push_back(Level{static_cast<std::int64_t>(elements), e->type == '|'});
        FUZZ_CHECK(stack.size() <= limits.maxNestingDepth);
        continue;
      }
      if (e->type == '|') continue;  // an empty attribute annotates what follows
    }
    // One element complete: close every aggregate it completes.
    done = true;
    while (!stack.empty()) {
      if (--stack.back().remaining > 0) {
        done = false;
        break;
      }
      const bool attribute = stack.back().isAttribute;
      stack.pop_back();
      if (attribute) {
        done = false;
        break;
      }
    }
  }
  FUZZ_CHECK(done);
  FUZZ_CHECK(reader.offset() == frame.size());
  return flat;
}

// Writes the elements back with the reply_writer functions where one exists for the type.
std::string reencode(const std::vector<Flat>& elements) {
  std::string out;
  for (const Flat& e : elements) {
    switch (e.type) {
      case '+':
        keygate::resp::appendSimple(out, e.text);
        break;
      case '-':
        keygate::resp::appendError(out, e.text);
        break;
      case ':':
        keygate::resp::appendInteger(out, e.integer);
        break;
      case '$':
        if (e.isNull) {
          keygate::resp::appendNull(out, Protocol::kResp2);
        } else {
          keygate::resp::appendBulk(out, e.text);
        }
        break;
      case '_':
        keygate::resp::appendNull(out, Protocol::kResp3);
        break;
      case '#':
        keygate::resp::appendBool(out, e.text == "t", Protocol::kResp3);
        break;
      case '*':
        if (e.isNull) {
          keygate::resp::appendNullArray(out, Protocol::kResp2);
        } else {
          keygate::resp::appendArrayHeader(out, static_cast<std::size_t>(e.integer));
        }
        break;
      case '%':
        keygate::resp::appendMapHeader(out, static_cast<std::size_t>(e.integer), Protocol::kResp3);
        break;
      case '~':
        keygate::resp::appendSetHeader(out, static_cast<std::size_t>(e.integer), Protocol::kResp3);
        break;
      case '>':
        keygate::resp::appendPushHeader(out, static_cast<std::size_t>(e.integer), Protocol::kResp3);
        break;
      case '=':
        if (e.text.size() >= 4 && e.text[3] == ':') {
          keygate::resp::appendVerbatim(out, std::string_view(e.text).substr(0, 3),
                                        std::string_view(e.text).substr(4), Protocol::kResp3);
          break;
        }
        [[fallthrough]];
      case '!':
        out += e.type + std::to_string(e.text.size()) + "\r\n" + e.text + "\r\n";
        break;
      case '|':
        out += "|" + std::to_string(e.integer) + "\r\n";
        break;
      default:  // ',' and '(' have no writer taking their text
        out += e.type + e.text + "\r\n";
        break;
    }
  }
  return out;
}

void checkFrame(std::string_view frame, char type, const Limits& limits, std::uint64_t h) {
  {
    ReplyScanner alone(limits);
    const ScanResult r = alone.scan(frame);
    FUZZ_CHECK(r.status == ScanStatus::kOk && r.consumed == frame.size() && r.type == type);
  }
  {
    ReplyScanner prefix(limits);
    const std::size_t cut = frame.size() - 1 - (h % frame.size());
    FUZZ_CHECK(prefix.scan(frame.substr(0, cut)).status == ScanStatus::kIncomplete);
    FUZZ_CHECK(prefix.scan(frame).status == ScanStatus::kOk);
  }
  const std::vector<Flat> elements = walkFrame(frame, limits);
  FUZZ_CHECK(!elements.empty());
  const std::string again = reencode(elements);
  ReplyScanner rescanner(limits);
  const ScanResult r = rescanner.scan(again);
  FUZZ_CHECK(r.status == ScanStatus::kOk && r.consumed == again.size() && r.type == type);
  // appendError turns LF into a space by design (a bare LF is legal inside an error line).
  std::vector<Flat> expected = elements;
  for (Flat& e : expected) {
    if (e.type == '-') std::replace(e.text.begin(), e.text.end(), '\n', ' ');
  }
  FUZZ_CHECK(walkFrame(again, limits) == expected);
}

Run feed(std::string_view input, std::vector<std::size_t> cuts, const Limits& limits,
         std::uint64_t h, bool checkFrames) {
  ReplyScanner scanner(limits);
  Run run;
  std::string buf;
  std::size_t prev = 0;
  cuts.push_back(input.size());
  for (std::size_t cut : cuts) {
    std::string grown;
    grown.reserve(buf.size() + (cut - prev) + 1);
    grown.append(buf);
    grown.append(input.substr(prev, cut - prev));
    buf.swap(grown);
    prev = cut;
    for (;;) {
      const ScanResult r = scanner.scan(buf);
      FUZZ_CHECK(r.consumed <= buf.size());
      if (r.status == ScanStatus::kIncomplete) {
        FUZZ_CHECK(r.consumed == 0 && r.error.empty());
        const std::size_t wanted = scanner.bytesWanted();
        FUZZ_CHECK(wanted == 0 || wanted > buf.size());
        break;
      }
      if (r.status == ScanStatus::kError) {
        FUZZ_CHECK(r.consumed == 0);
        FUZZ_CHECK(r.error.substr(0, 16) == "Protocol error: ");
        run.frames.push_back(Frame{r.status, {}, 0, r.error});
        return run;
      }
      FUZZ_CHECK(r.consumed > 0);
      const std::string_view frame = std::string_view(buf).substr(0, r.consumed);
      if (checkFrames) checkFrame(frame, r.type, limits, h);
      run.frames.push_back(Frame{r.status, std::string(frame), r.type, {}});
      buf.erase(0, r.consumed);
    }
  }
  run.leftover = buf.size();
  return run;
}

// ReplyReader must be safe on anything, not only on scanned frames.
void readArbitrary(std::string_view input) {
  ReplyReader reader(input);
  std::size_t last = 0;
  while (std::optional<Element> e = reader.next()) {
    FUZZ_CHECK(reader.offset() > last && reader.offset() <= input.size());
    FUZZ_CHECK(within(e->text, input.substr(last, reader.offset() - last)));
    last = reader.offset();
  }
  FUZZ_CHECK(reader.offset() == last);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::uint64_t h = fnv1a(input);

  Limits limits;
  if (h & 1) {
    limits.maxBulkBytes = 16;
    limits.maxArrayElements = 6;
    limits.maxNestingDepth = 3;
  }

  readArbitrary(input);
  const Run whole = feed(input, {}, limits, h, true);
  FUZZ_CHECK(whole.leftover <= input.size());
  if (size > 1) {
    const std::size_t split = (h >> 8) % (size - 1) + 1;
    FUZZ_CHECK(feed(input, {split}, limits, h, false) == whole);
  }
  if (size <= 2048) {
    std::vector<std::size_t> everyByte;
    for (std::size_t k = 1; k < size; ++k)
      everyByte.push_back(k);
    FUZZ_CHECK(feed(input, everyByte, limits, h, false) == whole);
  }
  return 0;
}
