// libFuzzer target for RequestParser. Besides "does not crash" it checks the properties the
// proxy relies on:
//   - consumed never exceeds the input; kOk consumes something, kIncomplete and kError nothing;
//   - the same bytes give the same requests whole, split at one point, and one byte at a time
//     (resumption is exact, and state is kept as offsets so a reallocated buffer is fine);
//   - bytesWanted() is 0 or more than what is buffered, and never more than the request needs;
//   - a multibulk request re-encoded from its arguments is byte-for-byte its `raw`;
//   - inline arguments quoted back with \xHH escapes parse to the same arguments;
//   - argument views point into the input or the request's own storage.
// The input is plain RESP (so seeds stay readable); a hash of it picks the split point and
// whether the limits are the defaults or tiny ones.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "proxy/resp/reply_writer.hpp"
#include "proxy/resp/request_parser.hpp"

namespace {

using keygate::fuzz::fnv1a;
using keygate::fuzz::within;

using keygate::resp::Limits;
using keygate::resp::ParseResult;
using keygate::resp::ParseStatus;
using keygate::resp::Request;
using keygate::resp::RequestParser;

struct Outcome {
  ParseStatus status;
  std::size_t consumed;
  std::vector<std::string> args;
  std::string raw;
  bool isInline;
  std::string_view error;

  bool operator==(const Outcome&) const = default;
};

struct Run {
  std::vector<Outcome> outcomes;
  std::size_t leftover = 0;

  bool operator==(const Run&) const = default;
};

void checkRequest(std::string_view buf, const ParseResult& r, const Request& req) {
  FUZZ_CHECK(r.consumed > 0 && r.consumed <= buf.size());
  if (req.isInline) {
    FUZZ_CHECK(req.raw.empty());
    FUZZ_CHECK(buf[0] != '*');
    FUZZ_CHECK(buf[r.consumed - 1] == '\n');
    FUZZ_CHECK(req.inlineStorage.size() <= r.consumed);
    for (std::string_view a : req.args) {
      FUZZ_CHECK(within(a, buf.substr(0, r.consumed)) || within(a, req.inlineStorage));
    }
    // Quote every argument back, byte by byte, and parse the line again.
    static const char kHex[] = "0123456789abcdef";
    std::string line;
    for (std::string_view a : req.args) {
      line += '"';
      for (char c : a) {
        const auto b = static_cast<unsigned char>(c);
        line += "\\x";
        line += kHex[b >> 4];
        line += kHex[b & 15];
      }
      line += "\" ";
    }
    line += "\r\n";
    Limits unlimited;
    unlimited.maxInlineBytes = line.size();
    RequestParser again(unlimited);
    Request req2;
    const ParseResult r2 = again.parse(line, req2);
    FUZZ_CHECK(r2.status == ParseStatus::kOk && r2.consumed == line.size());
    FUZZ_CHECK(req2.args == req.args);
  } else {
    FUZZ_CHECK(buf[0] == '*');
    FUZZ_CHECK(req.raw.data() == buf.data() && req.raw.size() == r.consumed);
    std::size_t payload = 0;
    for (std::string_view a : req.args) {
      FUZZ_CHECK(within(a, req.raw));
      payload += a.size();
    }
    FUZZ_CHECK(payload < req.raw.size());
    if (!req.args.empty()) {
      std::string encoded;
      keygate::resp::appendCommand(encoded, req.args);
      FUZZ_CHECK(encoded == req.raw);
    }
  }
}

// Feeds `input` in pieces ending at `cuts` to one parser, keeping a connection-like buffer that
// is reallocated on every read and loses complete requests from its front.
Run feed(std::string_view input, std::vector<std::size_t> cuts, const Limits& limits) {
  RequestParser parser(limits);
  Request req;
  Run run;
  std::string buf;
  std::size_t prev = 0;
  std::size_t wantedMax = 0;  // largest bytesWanted() seen for the current request
  cuts.push_back(input.size());
  for (std::size_t cut : cuts) {
    std::string grown;
    grown.reserve(buf.size() + (cut - prev) + 1);
    grown.append(buf);
    grown.append(input.substr(prev, cut - prev));
    buf.swap(grown);
    prev = cut;
    for (;;) {
      const ParseResult r = parser.parse(buf, req);
      FUZZ_CHECK(r.consumed <= buf.size());
      if (r.status == ParseStatus::kIncomplete) {
        FUZZ_CHECK(r.consumed == 0 && r.error.empty());
        const std::size_t wanted = parser.bytesWanted();
        FUZZ_CHECK(wanted == 0 || wanted > buf.size());
        FUZZ_CHECK(wanted == 0 || wanted - buf.size() <= limits.maxBulkBytes + 2);
        if (wanted > wantedMax) wantedMax = wanted;
        break;
      }
      Outcome o{r.status, r.consumed, {}, {}, false, r.error};
      if (r.status == ParseStatus::kError) {
        FUZZ_CHECK(r.consumed == 0);
        FUZZ_CHECK(r.error.substr(0, 16) == "Protocol error: ");
        run.outcomes.push_back(o);
        return run;
      }
      checkRequest(buf, r, req);
      FUZZ_CHECK(wantedMax <= r.consumed);
      wantedMax = 0;
      for (std::string_view a : req.args)
        o.args.emplace_back(a);
      o.raw = std::string(req.raw);
      o.isInline = req.isInline;
      run.outcomes.push_back(std::move(o));
      buf.erase(0, r.consumed);
    }
  }
  run.leftover = buf.size();
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::uint64_t h = fnv1a(input);

  Limits limits;
  if (h & 1) {
    limits.maxBulkBytes = 16;
    limits.maxArrayElements = 6;
    limits.maxInlineBytes = 24;
  }

  const Run whole = feed(input, {}, limits);
  FUZZ_CHECK(whole.leftover <= input.size());

  if (size > 1) {
    const std::size_t split = (h >> 8) % (size - 1) + 1;
    FUZZ_CHECK(feed(input, {split}, limits) == whole);
  }
  if (size <= 2048) {
    std::vector<std::size_t> everyByte;
    for (std::size_t k = 1; k < size; ++k)
      everyByte.push_back(k);
    FUZZ_CHECK(feed(input, everyByte, limits) == whole);
  }
  return 0;
}
