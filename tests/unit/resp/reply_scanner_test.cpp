#include "proxy/resp/reply_scanner.hpp"

#include <catch2/catch.hpp>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "alloc_counter.hpp"
#include "split_invariance.hpp"

using namespace std::string_literals;
using keygate::resp::Limits;
using keygate::resp::ReplyScanner;
using keygate::resp::ScanResult;
using keygate::resp::ScanStatus;

namespace {

struct Frame {
  ScanStatus status = ScanStatus::kIncomplete;
  std::string bytes;  // kOk: the frame
  char type = 0;
  std::string error;

  bool operator==(const Frame&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Frame& f) {
  return os << "{status=" << static_cast<int>(f.status) << " type='" << f.type << "' bytes=\""
            << f.bytes << "\" error=\"" << f.error << "\"}";
}

struct StreamOutcome {
  std::vector<Frame> frames;  // an error ends the list
  std::size_t leftover = 0;

  bool operator==(const StreamOutcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const StreamOutcome& s) {
  for (const auto& f : s.frames)
    os << f << '\n';
  return os << "leftover=" << s.leftover;
}

// Feeds `stream` to one scanner in chunks ending at `cuts`, dropping complete frames from the
// front and reallocating the buffer on every read, as a connection would.
StreamOutcome feed(std::string_view stream, std::vector<std::size_t> cuts,
                   const Limits& limits = {}) {
  ReplyScanner scanner(limits);
  StreamOutcome result;
  std::string buf;
  std::size_t prev = 0;
  cuts.push_back(stream.size());
  for (std::size_t cut : cuts) {
    std::string grown;
    grown.reserve(buf.size() + (cut - prev) + 1);
    grown.append(buf);
    grown.append(stream.substr(prev, cut - prev));
    buf.swap(grown);
    prev = cut;
    for (;;) {
      const ScanResult r = scanner.scan(buf);
      REQUIRE(r.consumed <= buf.size());
      if (r.status == ScanStatus::kIncomplete) {
        REQUIRE(r.consumed == 0);
        const std::size_t wanted = scanner.bytesWanted();
        REQUIRE((wanted == 0 || wanted > buf.size()));
        break;
      }
      Frame f;
      f.status = r.status;
      if (r.status == ScanStatus::kError) {
        REQUIRE(r.consumed == 0);
        REQUIRE(!r.error.empty());
        f.error = std::string(r.error);
        result.frames.push_back(f);
        return result;
      }
      REQUIRE(r.consumed > 0);
      f.bytes = buf.substr(0, r.consumed);
      f.type = r.type;
      result.frames.push_back(f);
      buf.erase(0, r.consumed);
    }
  }
  result.leftover = buf.size();
  return result;
}

StreamOutcome feedWhole(std::string_view stream, const Limits& limits = {}) {
  return feed(stream, {}, limits);
}

void checkSplitInvariance(std::string_view stream, const Limits& limits = {}) {
  keygate::resp::test::checkSplitInvariance(stream,
                                            [&](std::string_view s, std::vector<std::size_t> cuts) {
                                              return feed(s, std::move(cuts), limits);
                                            });
}

struct Case {
  std::string input;
  char type;
};

std::string nested(int depth, const std::string& leaf) {
  std::string s;
  for (int i = 0; i < depth; ++i)
    s += "*1\r\n";
  return s + leaf;
}

std::vector<Case> validCorpus() {
  std::string bigArray = "*1000\r\n";
  for (int i = 0; i < 1000; ++i)
    bigArray += ":" + std::to_string(i) + "\r\n";
  return {
      {"+OK\r\n", '+'},
      {"+\r\n", '+'},
      {"-ERR unknown command 'FOO'\r\n", '-'},
      {"-ERR a\nb\r\n", '-'},  // a bare LF does not end a line
      {":0\r\n", ':'},
      {":-9223372036854775808\r\n", ':'},
      {":+12\r\n", ':'},
      {"$5\r\nhello\r\n", '$'},
      {"$0\r\n\r\n", '$'},
      {"$4\r\na\r\nb\r\n", '$'},
      {"$3\r\n\0\xff\r\r\n"s, '$'},
      {"$-1\r\n", '$'},
      {"*-1\r\n", '*'},
      {"*0\r\n", '*'},
      {"*2\r\n$3\r\nfoo\r\n:1\r\n", '*'},
      {"*3\r\n*2\r\n:1\r\n:2\r\n*0\r\n*1\r\n$-1\r\n", '*'},
      {"*2\r\n*-1\r\n$-1\r\n", '*'},
      {"_\r\n", '_'},
      {"#t\r\n", '#'},
      {"#f\r\n", '#'},
      {",3.14\r\n", ','},
      {",-1.5e-10\r\n", ','},
      {",inf\r\n", ','},
      {",-inf\r\n", ','},
      {",nan\r\n", ','},
      {",10\r\n", ','},
      {"(3492890328409238509324850943850943825024385\r\n", '('},
      {"(-12\r\n", '('},
      {"!21\r\nSYNTAX invalid syntax\r\n", '!'},
      {"=15\r\ntxt:Some string\r\n", '='},
      {"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n", '%'},
      {"%0\r\n", '%'},
      {"~3\r\n:1\r\n:2\r\n:3\r\n", '~'},
      {"~0\r\n", '~'},
      {">3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n", '>'},
      {"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
       "*2\r\n:2039123\r\n:9543892\r\n",
       '*'},
      {"|0\r\n+OK\r\n", '+'},
      {"|1\r\n+a\r\n+b\r\n|1\r\n+c\r\n+d\r\n:7\r\n", ':'},
      {"*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n", '*'},
      {"*1\r\n|1\r\n*1\r\n:1\r\n%1\r\n+k\r\n+v\r\n+x\r\n", '*'},
      {"%1\r\n*2\r\n:1\r\n:2\r\n~1\r\n#t\r\n", '%'},
      {nested(63, ":1\r\n"), '*'},
      {nested(64, "*0\r\n"), '*'},
      {nested(63, "|1\r\n+a\r\n+b\r\n:1\r\n"), '*'},
      {"$3000\r\n" + std::string(3000, 'z') + "\r\n", '$'},
      {"+" + std::string(2000, 's') + "\r\n", '+'},
      {bigArray, '*'},
      // Forms the one-pass framing leaves to the exact path, and those around its edges.
      {"$03\r\nabc\r\n", '$'},
      {"$-01\r\n", '$'},
      {"$-0\r\n\r\n", '$'},
      {":007\r\n", ':'},
      {":-0\r\n", ':'},
      {":123456789012345678\r\n", ':'},
      {":1234567890123456789\r\n", ':'},
      {"$10\r\n0123456789\r\n", '$'},
      {"$100\r\n" + std::string(100, 'h') + "\r\n", '$'},
      {"+" + std::string(29, 'a') + "\r\n", '+'},
      {"+" + std::string(30, 'b') + "\r\n", '+'},
      {"-" + std::string(31, 'c') + "\r\n", '-'},
      {"*03\r\n:1\r\n:2\r\n:3\r\n", '*'},
      {"*3\r\n$1\r\na\r\n$-1\r\n+" + std::string(40, 'd') + "\r\n", '*'},
      {"*4\r\n:1\r\n*2\r\n$1\r\na\r\n:2\r\n#t\r\n$1\r\nb\r\n", '*'},
      {"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", '*'},
      {"*1\r\n*1\r\n$3\r\nabc\r\n", '*'},
  };
}

std::vector<std::pair<std::string, std::string>> errorCorpus() {
  return {
      {"?\r\n", "Protocol error: invalid reply type byte"},
      {"\0\r\n"s, "Protocol error: invalid reply type byte"},
      {"*1\r\nx\r\n", "Protocol error: invalid reply type byte"},
      {"$abc\r\n", "Protocol error: invalid bulk length in reply"},
      {"$\r\n", "Protocol error: invalid bulk length in reply"},
      {"$-2\r\n", "Protocol error: invalid bulk length in reply"},
      {"$+3\r\nabc\r\n", "Protocol error: invalid bulk length in reply"},
      {"=-1\r\n", "Protocol error: invalid bulk length in reply"},
      {"!-1\r\n", "Protocol error: invalid bulk length in reply"},
      {"$3\r\nabcde", "Protocol error: expected CRLF in reply"},
      {"$3\r\nabc\n\r", "Protocol error: expected CRLF in reply"},
      {"+OK\rX", "Protocol error: expected CRLF in reply"},
      {"*1\r\n:1\rX", "Protocol error: expected CRLF in reply"},
      {"*-2\r\n", "Protocol error: invalid aggregate length"},
      {"%-1\r\n", "Protocol error: invalid aggregate length"},
      {">-1\r\n", "Protocol error: invalid aggregate length"},
      {"*x\r\n", "Protocol error: invalid aggregate length"},
      {"*?\r\n", "Protocol error: invalid aggregate length"},
      {"$?\r\n", "Protocol error: invalid bulk length in reply"},
      {":abc\r\n", "Protocol error: invalid integer reply"},
      {":\r\n", "Protocol error: invalid integer reply"},
      {":9223372036854775808\r\n", "Protocol error: invalid integer reply"},
      {"#x\r\n", "Protocol error: invalid boolean reply"},
      {"#\r\n", "Protocol error: invalid boolean reply"},
      {"_x\r\n", "Protocol error: invalid null reply"},
      {",\r\n", "Protocol error: invalid double reply"},
      {",abc\r\n", "Protocol error: invalid double reply"},
      {"(\r\n", "Protocol error: invalid big number reply"},
      {"(12a\r\n", "Protocol error: invalid big number reply"},
      {":" + std::string(33, '1'), "Protocol error: reply line too long"},
      {"*" + std::string(40, '1') + "\r\n", "Protocol error: reply line too long"},
      {nested(65, ":1\r\n"), "Protocol error: reply nested too deep"},
      {nested(64, "|1\r\n+a\r\n+b\r\n:1\r\n"), "Protocol error: reply nested too deep"},
      {"*1048577\r\n", "Protocol error: aggregate reply over the element limit"},
      {"%524289\r\n", "Protocol error: aggregate reply over the element limit"},
      {"|524289\r\n", "Protocol error: aggregate reply over the element limit"},
      {"$536870913\r\n", "Protocol error: bulk reply over the size limit"},
      {"*2\r\n+OK\r\n-ERR\rx", "Protocol error: expected CRLF in reply"},
      {"$3\r\nabc\rX", "Protocol error: expected CRLF in reply"},
      {"$3\n\nabc\r\n", "Protocol error: invalid bulk length in reply"},
      {":-\r\n", "Protocol error: invalid integer reply"},
      {":1-\r\n", "Protocol error: invalid integer reply"},
      {":99999999999999999999\r\n", "Protocol error: invalid integer reply"},
      {"*2\r\n$1\r\na\r\n:x\r\n", "Protocol error: invalid integer reply"},
      {"*2\r\n:1\r\n?\r\n", "Protocol error: invalid reply type byte"},
      {"*1\r\n+OK\rX", "Protocol error: expected CRLF in reply"},
      {"*1\r\n$2\r\nabc\r\n", "Protocol error: expected CRLF in reply"},
      {"*+1\r\n:1\r\n", "Protocol error: invalid aggregate length"},
  };
}

}  // namespace

TEST_CASE("reply scanner: frames every type", "[resp][scanner]") {
  for (const auto& c : validCorpus()) {
    INFO(c.input);
    const StreamOutcome whole = feedWhole(c.input);
    REQUIRE(whole.frames.size() == 1);
    CHECK(whole.frames[0].status == ScanStatus::kOk);
    CHECK(whole.frames[0].bytes == c.input);
    CHECK(whole.frames[0].type == c.type);
    CHECK(whole.leftover == 0);
  }
}

TEST_CASE("reply scanner: malformed and over-limit replies", "[resp][scanner]") {
  for (const auto& [input, message] : errorCorpus()) {
    INFO(input);
    const StreamOutcome whole = feedWhole(input);
    REQUIRE(whole.frames.size() == 1);
    CHECK(whole.frames[0].status == ScanStatus::kError);
    CHECK(whole.frames[0].error == message);
  }
}

TEST_CASE("reply scanner: split at every byte gives the whole-input result", "[resp][scanner]") {
  std::string all;
  for (const auto& c : validCorpus()) {
    INFO(c.input);
    if (c.input.size() < 1000) checkSplitInvariance(c.input);
    all += c.input;
  }
  for (const auto& [input, message] : errorCorpus()) {
    INFO(input);
    checkSplitInvariance(input);
  }
  const StreamOutcome whole = feedWhole(all);
  CHECK(whole.frames.size() == validCorpus().size());
  CHECK(whole.leftover == 0);
  checkSplitInvariance(all);
}

TEST_CASE("reply scanner: configured limits", "[resp][scanner]") {
  Limits limits;
  limits.maxBulkBytes = 5;
  limits.maxArrayElements = 4;
  limits.maxNestingDepth = 2;
  CHECK(feedWhole("$5\r\nhello\r\n", limits).frames.at(0).status == ScanStatus::kOk);
  CHECK(feedWhole("$6\r\nhello!\r\n", limits).frames.at(0).error ==
        "Protocol error: bulk reply over the size limit");
  CHECK(feedWhole("+hello\r\n", limits).frames.at(0).status == ScanStatus::kOk);
  CHECK(feedWhole("+hello!\r\n", limits).frames.at(0).error ==
        "Protocol error: reply line too long");
  CHECK(feedWhole("+hello!", limits).frames.at(0).error == "Protocol error: reply line too long");
  CHECK(feedWhole("+hello", limits).frames.empty());
  CHECK(feedWhole("*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n", limits).frames.at(0).status == ScanStatus::kOk);
  CHECK(feedWhole("*5\r\n", limits).frames.at(0).error ==
        "Protocol error: aggregate reply over the element limit");
  CHECK(feedWhole("%2\r\n:1\r\n:2\r\n:3\r\n:4\r\n", limits).frames.at(0).status == ScanStatus::kOk);
  CHECK(feedWhole("%3\r\n", limits).frames.at(0).error ==
        "Protocol error: aggregate reply over the element limit");
  CHECK(feedWhole("*1\r\n*1\r\n:1\r\n", limits).frames.at(0).status == ScanStatus::kOk);
  CHECK(feedWhole("*1\r\n*1\r\n*1\r\n:1\r\n", limits).frames.at(0).error ==
        "Protocol error: reply nested too deep");
  // Empty aggregates open no level.
  CHECK(feedWhole("*1\r\n*1\r\n*0\r\n", limits).frames.at(0).status == ScanStatus::kOk);
  // The one-pass framing of arrays and simple elements keeps every limit too.
  CHECK(feedWhole("*4\r\n$5\r\nhello\r\n:1\r\n+a\r\n$-1\r\n", limits).frames.at(0).status ==
        ScanStatus::kOk);
  CHECK(feedWhole("*2\r\n$5\r\nhello\r\n$6\r\nhello!\r\n", limits).frames.at(0).error ==
        "Protocol error: bulk reply over the size limit");
  CHECK(feedWhole("*1\r\n+hello!\r\n", limits).frames.at(0).error ==
        "Protocol error: reply line too long");
  Limits flat;
  flat.maxNestingDepth = 0;
  CHECK(feedWhole("*1\r\n:1\r\n", flat).frames.at(0).error ==
        "Protocol error: reply nested too deep");
  CHECK(feedWhole("*0\r\n", flat).frames.at(0).status == ScanStatus::kOk);
  CHECK(feedWhole(":1\r\n", flat).frames.at(0).status == ScanStatus::kOk);
  Limits noText;
  noText.maxBulkBytes = 0;
  CHECK(feedWhole("+\r\n", noText).frames.at(0).status == ScanStatus::kOk);
  CHECK(feedWhole("+a\r\n", noText).frames.at(0).error == "Protocol error: reply line too long");
  CHECK(feedWhole("$0\r\n\r\n", noText).frames.at(0).status == ScanStatus::kOk);
}

TEST_CASE("reply scanner: announced counts allocate nothing", "[resp][scanner]") {
  ReplyScanner scanner(Limits{});
  keygate::resp::test::AllocationProbe probe;
  const ScanResult r = scanner.scan("*1048576\r\n$400000000\r\n");
  const std::size_t largest = probe.largest();
  CHECK(r.status == ScanStatus::kIncomplete);
  CHECK(scanner.bytesWanted() == 22 + 400000000 + 2);
  CHECK(largest < 4096);
}

TEST_CASE("reply scanner: 100k elements arriving in small reads", "[resp][scanner]") {
  std::string reply = "*100000\r\n";
  for (int i = 0; i < 100000; ++i)
    reply += (i % 2 == 0) ? "$3\r\nabc\r\n" : ":42\r\n";
  ReplyScanner scanner(Limits{});
  std::size_t have = 0;
  std::size_t calls = 0;
  ScanResult r;
  for (;;) {
    have = std::min(reply.size(), have + 7);
    r = scanner.scan(std::string_view(reply).substr(0, have));
    ++calls;
    if (r.status != ScanStatus::kIncomplete) break;
    REQUIRE(have < reply.size());
  }
  REQUIRE(r.status == ScanStatus::kOk);
  CHECK(r.consumed == reply.size());
  CHECK(r.type == '*');
  CHECK(calls == (reply.size() + 6) / 7);
}

TEST_CASE("reply scanner: big bulk reports the bytes wanted", "[resp][scanner]") {
  const std::string reply = "$1048576\r\n" + std::string(1024 * 1024, 'q') + "\r\n";
  ReplyScanner scanner(Limits{});
  for (std::size_t have = 4096; have < reply.size(); have += 4096) {
    REQUIRE(scanner.scan(std::string_view(reply).substr(0, have)).status ==
            ScanStatus::kIncomplete);
    REQUIRE(scanner.bytesWanted() == reply.size());
  }
  const ScanResult r = scanner.scan(reply);
  REQUIRE(r.status == ScanStatus::kOk);
  CHECK(r.consumed == reply.size());
}

TEST_CASE("reply scanner: pipelined replies in random reads", "[resp][scanner]") {
  std::mt19937 rng(777);
  const auto corpus = validCorpus();
  std::string stream;
  std::vector<Frame> expected;
  for (int i = 0; i < 3000; ++i) {
    const Case& c = corpus[rng() % corpus.size()];
    stream += c.input;
    expected.push_back(Frame{ScanStatus::kOk, c.input, c.type, {}});
  }
  const StreamOutcome whole = feedWhole(stream);
  CHECK(whole.leftover == 0);
  REQUIRE(whole.frames == expected);
  for (int round = 0; round < 5; ++round) {
    std::vector<std::size_t> cuts;
    for (std::size_t at = rng() % 64 + 1; at < stream.size();
         at += rng() % (round * 900 + 32) + 1) {
      cuts.push_back(at);
    }
    INFO("round " << round);
    REQUIRE(feed(stream, cuts) == whole);
  }
}

TEST_CASE("reply scanner: reset and a shorter input start over", "[resp][scanner]") {
  ReplyScanner scanner(Limits{});
  REQUIRE(scanner.scan("*2\r\n:1\r\n$5\r\nab").status == ScanStatus::kIncomplete);
  REQUIRE(scanner.bytesWanted() == 19);
  scanner.reset();
  CHECK(scanner.bytesWanted() == 0);
  ScanResult r = scanner.scan("+OK\r\n");
  CHECK(r.status == ScanStatus::kOk);
  CHECK(r.consumed == 5);

  REQUIRE(scanner.scan("*2\r\n:1\r\n$5\r\nab").status == ScanStatus::kIncomplete);
  r = scanner.scan(":7\r\n");
  CHECK(r.status == ScanStatus::kOk);
  CHECK(r.type == ':');
  CHECK(r.consumed == 4);
}

TEST_CASE("reply scanner: an array cut anywhere resumes where the one-pass framing stopped",
          "[resp][scanner]") {
  // The first read holds all of an MGET reply but its last k bytes: the one-pass framing stops
  // at the element that is not complete and hands its state to the general walk.
  const std::string reply = "*4\r\n$3\r\nabc\r\n:12\r\n$-1\r\n+OK\r\n";
  for (std::size_t k = 1; k < reply.size(); ++k) {
    INFO("missing " << k);
    ReplyScanner scanner(Limits{});
    REQUIRE(scanner.scan(std::string_view(reply).substr(0, reply.size() - k)).status ==
            ScanStatus::kIncomplete);
    const std::string moved(reply);
    const ScanResult r = scanner.scan(moved);
    REQUIRE(r.status == ScanStatus::kOk);
    CHECK(r.consumed == reply.size());
    CHECK(r.type == '*');
  }
}

TEST_CASE("reply scanner: mutated replies give the same result however they are split",
          "[resp][scanner]") {
  // Whole, a reply goes through the one-pass framing; fed a byte at a time, through the general
  // walk. One changed, dropped or added byte must not make them disagree.
  const std::vector<std::string> bases = {
      "$3\r\nxxx\r\n",
      "+OK\r\n",
      ":-12\r\n",
      "*3\r\n$1\r\na\r\n:1\r\n$-1\r\n",
      "*2\r\n*1\r\n+a\r\n%1\r\n:1\r\n#t\r\n",
      "-ERR wrong\r\n$0\r\n\r\n",
  };
  const std::string bytes = "\r\n0123456789-+$*:%|_#x \0"s;
  keygate::resp::test::forEachMutation(bases, bytes, 2424, 600,
                                       [](const std::string& s) { checkSplitInvariance(s); });
}
