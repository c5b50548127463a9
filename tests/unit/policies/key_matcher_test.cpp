#include "policies/key_matcher.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <random>
#include <string>

using namespace keygate::policies;

namespace {

KeyMatcher buildClean(const std::vector<std::string>& patterns) {
  std::vector<PatternProblem> problems;
  auto m = KeyMatcher::build(patterns, &problems);
  for (const auto& p : problems)
    INFO(p.message);
  CHECK(problems.empty());
  return m;
}

// The problems of {a, b} (a is index 0).
std::vector<PatternProblem> problemsOf(const std::string& a, const std::string& b) {
  std::vector<PatternProblem> problems;
  KeyMatcher::build({a, b}, &problems);
  return problems;
}

bool overlap(const std::string& a, const std::string& b) {
  const auto problems = problemsOf(a, b);
  for (const auto& p : problems) {
    INFO(p.message);
    CHECK(p.index == 1);
    CHECK(p.other == 0);
  }
  return !problems.empty();
}

std::string captured(const Captures& c) {
  std::string out;
  for (const auto& [name, value] : c) {
    if (!out.empty()) out += ' ';
    out += std::string(name) + "=" + std::string(value);
  }
  return out;
}

const std::vector<std::string> kRegistry = {
    "cpq:{tenant-<tenant>}:pricing:preview:quote-<quoteId>:rev-<rev:int>:policy-<policy>",
    "cpq:{tenant-<tenant>}:catalog:offering-<offeringId>:v<version:int>",
    "cpq:{tenant-<tenant>}:catalog:active",
    "cpq:{tenant-<tenant>}:quote:<quoteId:uuid>:workspace",
    "cpq:{tenant-<tenant>}:idem:<key:hex>",
    "cpq:{tenant-<tenant>}:lock:quote-<quoteId>:submit",
    "cpq:{tenant-<tenant>}:ratelimit:<client>:<window:int>",
    "oms:{tenant-<tenant>}:worklist:<queue:/[a-z]+/>",
    "session:<sid:hex>",
    "cpq:{tenant-<tenant>}:catalog:offering-<offeringId>:draft",
};

}  // namespace

TEST_CASE("the matcher finds the one pattern of a key and its captures") {
  const auto m = buildClean(kRegistry);
  REQUIRE(m.size() == kRegistry.size());
  Captures c;
  CHECK(m.match("cpq:{tenant-acme}:pricing:preview:quote-q100:rev-3:policy-v2026-07", &c) == 0);
  CHECK(captured(c) == "tenant=acme quoteId=q100 rev=3 policy=v2026-07");
  CHECK(m.match("cpq:{tenant-acme}:catalog:offering-o7:v12", &c) == 1);
  CHECK(captured(c) == "tenant=acme offeringId=o7 version=12");
  CHECK(m.match("cpq:{tenant-acme}:catalog:offering-o7:draft", &c) == 9);
  CHECK(captured(c) == "tenant=acme offeringId=o7");
  CHECK(m.match("cpq:{tenant-acme}:catalog:active", &c) == 2);
  CHECK(captured(c) == "tenant=acme");
  CHECK(m.match("cpq:{tenant-acme}:quote:123e4567-e89b-12d3-a456-426614174000:workspace") == 3);
  CHECK(m.match("cpq:{tenant-acme}:idem:00ff") == 4);
  CHECK(m.match("cpq:{tenant-acme}:lock:quote-q1:submit") == 5);
  CHECK(m.match("cpq:{tenant-acme}:ratelimit:web:1700000000") == 6);
  CHECK(m.match("oms:{tenant-acme}:worklist:approvals") == 7);
  CHECK(m.match("session:abc123") == 8);
  CHECK(m.match("session:abc123", nullptr) == 8);

  CHECK(m.match("cpq:{tenant-acme}:catalog:offering-o7:vX", &c) == -1);
  CHECK(c.empty());
  CHECK(m.match("cpq:{tenant-acme}:catalog:active:extra") == -1);
  CHECK(m.match("cpq:{tenant-acme}:catalog") == -1);
  CHECK(m.match("cpq:{tenant-acme}:idem:xyz") == -1);
  CHECK(m.match("oms:{tenant-acme}:worklist:Approvals") == -1);
  CHECK(m.match("session") == -1);
  CHECK(m.match("") == -1);
  CHECK(m.match(std::string(200, ':')) == -1);  // more segments than any pattern
  CHECK(m.match("unknown:key") == -1);
}

TEST_CASE("match backtracks from a literal branch to a variable branch") {
  // "a:b:<x>:d" shares the literal "b" with nothing else; "a:<y>:c:e" has a variable there.
  const auto m = buildClean({"a:b:c:d", "a:<y>:c:e"});
  Captures c;
  CHECK(m.match("a:b:c:e", &c) == 1);
  CHECK(captured(c) == "y=b");
  CHECK(m.match("a:b:c:d", &c) == 0);
  CHECK(c.empty());
}

TEST_CASE("an empty matcher and one built without a problems list") {
  const auto empty = KeyMatcher::build({}, nullptr);
  CHECK(empty.size() == 0);
  CHECK(empty.match("a") == -1);
  CHECK(empty.closest("a") == -1);
  const KeyMatcher none;
  CHECK(none.match("a") == -1);
  const auto m = KeyMatcher::build({"a:<x>", "a:<y:int>"}, nullptr);  // overlapping, unreported
  CHECK(m.match("a:1") == 0);
}

TEST_CASE("syntax errors are problems, and the other patterns still match") {
  std::vector<PatternProblem> problems;
  const auto m = KeyMatcher::build({"a:<x>", "b:<y", "c:<z:int>"}, &problems);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].index == 1);
  CHECK(problems[0].other == SIZE_MAX);
  CHECK(problems[0].message == "pattern 'b:<y': column 3: variable '<y' is never closed; add '>'");
  CHECK_FALSE(m.parsed(1));
  CHECK(m.pattern(1).text().empty());  // an empty pattern, safe to ask
  CHECK_FALSE(m.pattern(1).hasVariable("y"));
  CHECK_FALSE(m.pattern(1).match("b:1"));
  CHECK_FALSE(m.pattern(1).match(""));
  CHECK(m.parsed(2));
  CHECK(m.pattern(2).text() == "c:<z:int>");
  CHECK(m.match("a:1") == 0);
  CHECK(m.match("b:1") == -1);
  CHECK(m.match("c:1") == 2);
}

TEST_CASE("overlaps: exact for literal, any, int, hex and uuid") {
  SECTION("the message names both patterns and an example key") {
    const auto problems = problemsOf("a:<x>", "a:<y:int>");
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].index == 1);
    CHECK(problems[0].other == 0);
    CHECK_FALSE(problems[0].uncertain);
    CHECK(problems[0].message ==
          "patterns 'a:<x>' and 'a:<y:int>' both match 'a:1'; make one of them more specific");
  }
  SECTION("positive") {
    CHECK(overlap("a:b", "a:b"));                  // the same pattern twice
    CHECK(overlap("a:<x>", "a:<y>"));              // same shape, other names
    CHECK(overlap("a:<x>", "a:b"));                // variable vs literal
    CHECK(overlap("a:b", "a:<x>"));                // literal vs variable
    CHECK(overlap("a:<x:int>", "a:<y:hex>"));      // digits are hex
    CHECK(overlap("q-<x>", "<y>-1"));              // prefix vs suffix
    CHECK(overlap("v<x:int>", "<y>1"));            // both match v1
    CHECK(overlap("a-<x>-b", "a-<y>"));            // a-1-b
    CHECK(overlap("a:<x>:c", "<y>:b:<z>"));        // a:b:c
    CHECK(overlap("o-<id:uuid>", "o-<x>"));        // any run includes a uuid
    CHECK(overlap("o-<id:uuid>", "<x>-<y:hex>"));  // the uuid's last group
    CHECK(overlap("k:<a:int>.<b>", "k:<c>.<d:int>"));
  }
  SECTION("negative") {
    CHECK_FALSE(overlap("a:<x>", "a:<y>:c"));  // different segment counts never overlap
    CHECK_FALSE(overlap("a:<x>", "a"));
    CHECK_FALSE(overlap("a:<x>", "b:<x>"));
    CHECK_FALSE(overlap("a:<x:int>", "a:b"));  // literal that is not an int
    CHECK_FALSE(overlap("a:b", "a:<x:int>"));
    CHECK_FALSE(overlap("a:<x:int>", "a:v<y>"));  // int never starts with 'v'
    CHECK_FALSE(overlap("a:<x:int>", "a:<y:int>x"));
    CHECK_FALSE(overlap("a:<x:hex>", "a:<y:hex>-z"));
    CHECK_FALSE(overlap("q-<x>", "p-<x>"));
    CHECK_FALSE(overlap("<x>-a", "<x>-b"));
    CHECK_FALSE(overlap("o-<id:uuid>", "o-<x:hex>"));  // '-' is not hex
    CHECK_FALSE(overlap("o-<id:uuid>", "o-<x:int>"));
    CHECK_FALSE(overlap("o-<id:uuid>:x", "o-<id:uuid>:y"));
    CHECK_FALSE(overlap("{tenant-<tenant>}:a", "{tenant-<tenant>}:b"));
    CHECK_FALSE(overlap("a\\<b", "a\\>b"));
  }
}

TEST_CASE("overlaps involving regex variables") {
  SECTION("regex vs literal is decided exactly") {
    CHECK(overlap("v:<x:/[0-9]+/>", "v:12"));
    CHECK_FALSE(overlap("v:<x:/[0-9]+/>", "v:ab"));
    CHECK_FALSE(overlap("v:ab", "v:<x:/[0-9]+/>"));
  }
  SECTION("a real overlap found with a regex is certain when both match the example") {
    const auto problems = problemsOf("v:<x:/.+/>", "v:<y>");
    REQUIRE(problems.size() == 1);
    CHECK_FALSE(problems[0].uncertain);
    CHECK(problems[0].message ==
          "patterns 'v:<x:/.+/>' and 'v:<y>' both match 'v:1'; make one of them more specific");
  }
  SECTION("otherwise it is reported as 'may both match' (sound, maybe a false alarm)") {
    const auto problems = problemsOf("v:<x:/[a-z]+/>", "v:<y:/[0-9]+/>");
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].uncertain);
    CHECK(problems[0].message ==
          "patterns 'v:<x:/[a-z]+/>' and 'v:<y:/[0-9]+/>' may both match the same key (regex "
          "variables are compared as any run without ':', e.g. 'v:1'); make one of them more "
          "specific");
  }
  SECTION("literal parts still separate regex patterns") {
    CHECK_FALSE(overlap("a:<x:/.+/>", "b:<x:/.+/>"));
    CHECK_FALSE(overlap("a-<x:/.+/>", "b-<x:/.+/>"));
  }
}

TEST_CASE("every overlapping pair is reported on the later pattern") {
  std::vector<PatternProblem> problems;
  KeyMatcher::build({"a:<x>", "a:b", "c", "a:<y:int>", "c"}, &problems);
  std::vector<std::pair<std::size_t, std::size_t>> pairs;
  for (const auto& p : problems)
    pairs.emplace_back(p.index, p.other);
  std::sort(pairs.begin(), pairs.end());
  CHECK(pairs == std::vector<std::pair<std::size_t, std::size_t>>{{1, 0}, {3, 0}, {4, 2}});
}

TEST_CASE("overlap detection agrees with brute force on random small patterns") {
  // Patterns over a tiny alphabet, keys enumerated exhaustively up to a length: a pair overlaps
  // iff some key matches both (all key shapes the patterns can match are short here).
  std::mt19937 rng(42);
  const std::vector<std::string> pieces = {"a", "1", "-", "<v>", "<v:int>", "<v:hex>", "a1"};
  auto randomPattern = [&] {
    std::string p;
    const int n = 1 + static_cast<int>(rng() % 3);
    bool var = false;
    for (int i = 0; i < n; ++i) {
      auto piece = pieces[rng() % pieces.size()];
      if (piece[0] == '<') {
        if (var) continue;
        piece.insert(2, std::to_string(i));
        var = true;
      } else {
        var = false;
      }
      p += piece;
    }
    return p;
  };
  std::vector<std::string> keys;
  const std::string alphabet = "a1-f";
  keys.push_back("");
  for (std::size_t len = 1; len <= 5; ++len) {
    const auto before = keys.size();
    for (std::size_t i = 0; i < before; ++i) {
      if (keys[i].size() != len - 1) continue;
      for (char c : alphabet)
        keys.push_back(keys[i] + c);
    }
  }
  int checked = 0;
  for (int round = 0; round < 400; ++round) {
    const auto a = randomPattern();
    const auto b = randomPattern();
    const auto pa = KeyPattern::parse(a, nullptr);
    const auto pb = KeyPattern::parse(b, nullptr);
    if (!pa || !pb) continue;
    bool brute = false;
    for (const auto& k : keys) {
      if (!k.empty() && pa->match(k) && pb->match(k)) {
        brute = true;
        break;
      }
    }
    const auto problems = problemsOf(a, b);
    INFO(a << " vs " << b);
    CHECK(brute == !problems.empty());
    ++checked;
  }
  CHECK(checked > 300);
}

TEST_CASE("1,000 registry-like patterns build fast and without overlaps") {
  std::vector<std::string> patterns;
  for (int i = 0; i < 1000; ++i) {
    patterns.push_back("cpq:{tenant-<tenant>}:cap" + std::to_string(i % 40) + ":res" +
                       std::to_string(i / 40) + ":item-<id" + ":int>:v" + std::to_string(i % 7));
    patterns.push_back("oms:{tenant-<tenant>}:svc" + std::to_string(i) + ":<x>-<y:hex>");
  }
  patterns.resize(1000);
  const auto start = std::chrono::steady_clock::now();
  std::vector<PatternProblem> problems;
  const auto m = KeyMatcher::build(patterns, &problems);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(problems.empty());
  CHECK(elapsed < std::chrono::milliseconds(500));
  CHECK(m.match("cpq:{tenant-t}:cap3:res0:item-9:v3") == 6);
  CHECK(m.match("oms:{tenant-t}:svc1:a-b-ff") == 3);
}

TEST_CASE("shapeOf shows variable-looking parts generically") {
  const auto m = buildClean(kRegistry);
  CHECK(m.shapeOf("cpq:{tenant-acme}:quote:42") == "cpq:{tenant-acme}:quote:<int>");
  CHECK(m.shapeOf("cpq:{tenant-acme}:quote-q100:rev-3") ==
        "cpq:{tenant-acme}:quote-q<int>:rev-<int>");
  CHECK(m.shapeOf("cpq:{tenant-acme}:quote:a1b2c3x") == "cpq:{tenant-acme}:quote:<?>");
  CHECK(m.shapeOf("o:123e4567-e89b-12d3-a456-426614174000") == "o:<uuid>");
  CHECK(m.shapeOf("idem:9f8a7b6c5d") == "idem:<hex>");
  CHECK(m.shapeOf("a\r\nb") == "a\\x0d\\x0ab");
  CHECK(m.shapeOf("") == "");
  CHECK(m.shapeOf("a::b:") == "a::b:");
  const auto longShape = m.shapeOf(std::string(1000, 'x'));
  CHECK(longShape.size() <= 203);
  CHECK(longShape.ends_with("..."));
}

TEST_CASE("closest names the pattern with the most in common") {
  const auto m = buildClean(kRegistry);
  // Wrong type in the last segment: everything else matches pattern 1.
  CHECK(m.closest("cpq:{tenant-acme}:catalog:offering-o7:vX") == 1);
  // Unknown capability: shares two segments with many; the first of those wins the tie.
  CHECK(m.closest("cpq:{tenant-acme}:pricing:preview:quote-q1") == 0);
  CHECK(m.closest("cpq:{tenant-acme}:lock:quote-q1") == 5);
  CHECK(m.closest("session:zz") == 8);
  CHECK(m.closest("sess") == 8);  // characters of the first segment in common
  CHECK(m.closest("zzz") == -1);
  CHECK(m.closest("") == -1);
}

TEST_CASE("a moved matcher keeps matching, and capture names view into it") {
  auto built = buildClean({"a:<x>", "b\\<<y:hex>\\>:c", "q:item-<id>-<rev:int>-x"});
  const KeyMatcher m = std::move(built);
  Captures c;
  CHECK(m.match("a:1", &c) == 0);
  CHECK(captured(c) == "x=1");
  CHECK(m.match("b<ff>:c", &c) == 1);
  CHECK(captured(c) == "y=ff");
  CHECK(m.match("q:item-a-b-2-x", &c) == 2);
  CHECK(captured(c) == "id=a-b rev=2");
  CHECK(m.match("q:item-a-b-x", &c) == -1);
}

TEST_CASE("the matcher agrees with matching every pattern in turn") {
  const auto m = buildClean(kRegistry);
  const std::vector<std::string> keys = {
      "cpq:{tenant-acme}:pricing:preview:quote-q100:rev-3:policy-v2026-07",
      "cpq:{tenant-acme}:pricing:preview:quote-q100:rev-3x:policy-v2026-07",
      "cpq:{tenant-a}:catalog:offering-o:v1",
      "cpq:{tenant-a}:catalog:offering-:v1",
      "cpq:{tenant-a}:catalog:offering-o:draft",
      "cpq:{tenant-a}:catalog:active",
      "cpq:{tenant-a}:catalog:passive",
      "cpq:{tenant-a}:idem:AbC",
      "cpq:{tenant-a}:ratelimit::1",
      "oms:{tenant-a}:worklist:x",
      "oms:{tenant-a}:worklist:x1",
      "session:",
      "session:0",
  };
  for (const auto& key : keys) {
    int expected = -1;
    for (std::size_t i = 0; i < m.size() && expected < 0; ++i) {
      if (m.pattern(i).match(key)) expected = static_cast<int>(i);
    }
    INFO(key);
    CHECK(m.match(key) == expected);
  }
}

TEST_CASE("match backtracks past a variable branch and drops its captures") {
  // At the second segment both variable branches match "x-1"; only the second one's third
  // segment matches "d", so the walk comes back up and the first branch's capture goes.
  const auto m = buildClean({"a:x-<p>:c", "a:<q>:d", "a:x-<r:int>:<s:int>"});
  Captures c;
  CHECK(m.match("a:x-1:d", &c) == 1);
  CHECK(captured(c) == "q=x-1");
  CHECK(m.match("a:x-1:c", &c) == 0);
  CHECK(captured(c) == "p=1");
  CHECK(m.match("a:x-1:2", &c) == 2);
  CHECK(captured(c) == "r=1 s=2");
  CHECK(m.match("a:x-1:e", &c) == -1);
  CHECK(c.empty());
  CHECK(m.match("a:x-1:d") == 1);  // without captures too
}

TEST_CASE("literal segments of every length are told apart byte by byte") {
  // The trie's literal edges are hashed and compared in word-sized pieces: check every length up
  // to 20 and a difference at every position.
  std::vector<std::string> patterns;
  for (std::size_t n = 1; n <= 20; ++n) {
    std::string text;
    for (std::size_t i = 0; i < n; ++i)
      text.push_back(static_cast<char>('a' + i));
    patterns.push_back("k:" + text);
  }
  patterns.push_back("k:");
  const auto m = buildClean(patterns);
  CHECK(m.match("k:") == 20);
  for (std::size_t n = 1; n <= 20; ++n) {
    const std::string text = patterns[n - 1].substr(2);
    INFO(text);
    CHECK(m.match("k:" + text) == static_cast<int>(n - 1));
    for (std::size_t i = 0; i < n; ++i) {
      std::string other = text;
      other[i] = 'Z';
      INFO(other);
      CHECK(m.match("k:" + other) == -1);
    }
  }
}

TEST_CASE("int, hex and uuid variables take exactly their bytes") {
  const auto m = buildClean({"i:p<x:int>s", "h:p<x:hex>s", "u:<x:uuid>", "a:p<x>s"});
  for (int b = 1; b < 256; ++b) {
    const char c = static_cast<char>(b);
    if (c == ':') continue;
    INFO(b);
    const bool digit = b >= '0' && b <= '9';
    const bool hex = digit || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F');
    CHECK((m.match(std::string("i:p1") + c + "2s") == 0) == digit);
    CHECK((m.match(std::string("h:p") + c + "s") == 1) == hex);
    std::string uuid = "0123abcd-4567-89ef-ABCD-0123456789ab";
    uuid[0] = c;
    CHECK((m.match("u:" + uuid) == 2) == hex);
    uuid[0] = '0';
    uuid[8] = c;
    CHECK((m.match("u:" + uuid) == 2) == (c == '-'));
    CHECK(m.match(std::string("a:p") + c + "s") == 3);
  }
  CHECK(m.match("i:ps") == -1);  // a variable's value is never empty
  CHECK(m.match("h:ps") == -1);
  CHECK(m.match("a:ps") == -1);
  CHECK(m.match("u:0123abcd-4567-89ef-ABCD-0123456789a") == -1);
  CHECK(m.match("u:0123abcd-4567-89ef-ABCD-0123456789abc") == -1);
}
