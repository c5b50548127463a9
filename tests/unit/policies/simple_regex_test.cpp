// GCC 12 reports a false -Wmaybe-uninitialized inside <regex>'s std::function members at -O2
// (see key_pattern.cpp); std::regex is the oracle here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "policies/simple_regex.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "../resp/alloc_counter.hpp"

using keygate::policies::SimpleRegex;

namespace {

SimpleRegex must(std::string_view pattern) {
  INFO("pattern /" << std::string(pattern) << "/");
  auto re = SimpleRegex::compile(pattern);
  REQUIRE(re);
  return *re;
}

bool matches(std::string_view pattern, std::string_view text) {
  return must(pattern).fullMatch(text);
}

// The oracle: how key_pattern.cpp builds and runs a registry regex.
std::optional<std::regex> stdCompile(const std::string& pattern) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error&) {
    return std::nullopt;
  }
}

// Printable form of a test string for failure messages.
std::string show(std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\' && c != '"') {
      out += c;
    } else {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out + "\"";
}

// Checks SimpleRegex against std::regex_match on every text; returns how many matched.
std::size_t agreeOn(const std::string& pattern, const std::vector<std::string>& texts) {
  const auto simple = SimpleRegex::compile(pattern);
  REQUIRE(simple);
  const auto oracle = stdCompile(pattern);
  INFO("pattern /" << pattern << "/");
  // Whatever SimpleRegex accepts, std::regex must accept too (the lead keeps std::regex for
  // the error messages of invalid patterns).
  REQUIRE(oracle);
  std::size_t hits = 0;
  for (const auto& t : texts) {
    const bool expected = std::regex_match(t, *oracle);
    if (simple->fullMatch(t) != expected) {
      FAIL("pattern /" << pattern << "/ text " << show(t) << ": std::regex_match says "
                       << expected);
    }
    hits += expected ? 1 : 0;
  }
  return hits;
}

// Every string over `alphabet` of length 0..maxLen.
void allStrings(const std::string& alphabet, std::size_t maxLen, std::vector<std::string>& out) {
  std::vector<std::string> level{""};
  out.push_back("");
  for (std::size_t len = 1; len <= maxLen; ++len) {
    std::vector<std::string> next;
    for (const auto& s : level) {
      for (char c : alphabet)
        next.push_back(s + c);
    }
    out.insert(out.end(), next.begin(), next.end());
    level = std::move(next);
  }
}

// `s` with 1..3 random single-byte edits (replace, insert, delete) from `alphabet`.
std::string mutate(std::string s, const std::string& alphabet, std::mt19937& rng) {
  const int edits = 1 + static_cast<int>(rng() % 3);
  for (int e = 0; e < edits; ++e) {
    const char c = alphabet[rng() % alphabet.size()];
    const auto op = rng() % 3;
    if (op == 0 && !s.empty()) {
      s[rng() % s.size()] = c;
    } else if (op == 1 || s.empty()) {
      s.insert(s.begin() + static_cast<std::ptrdiff_t>(rng() % (s.size() + 1)), c);
    } else {
      s.erase(s.begin() + static_cast<std::ptrdiff_t>(rng() % s.size()));
    }
  }
  return s;
}

}  // namespace

// ---- features -------------------------------------------------------------------------------

TEST_CASE("simple regex: literals and the registry's catalog version") {
  const auto re = must("v[0-9]{4}-[0-9]{2}");
  CHECK(re.fullMatch("v2026-01"));
  CHECK_FALSE(re.fullMatch("v2026-1"));
  CHECK_FALSE(re.fullMatch("v2026-011"));
  CHECK_FALSE(re.fullMatch("x2026-01"));
  CHECK_FALSE(re.fullMatch("v2026-01 "));
  CHECK_FALSE(re.fullMatch(""));
  CHECK(re.positions() == 8);
  CHECK(matches("abc", "abc"));
  CHECK_FALSE(matches("abc", "ab"));
  CHECK_FALSE(matches("abc", "abcd"));
  CHECK(matches("", ""));
  CHECK_FALSE(matches("", "a"));
  CHECK(matches("a-b", "a-b"));
  CHECK(matches("(?:\xc3\xa9)+", "\xc3\xa9\xc3\xa9"));  // UTF-8 bytes are literal bytes
  CHECK(matches("\xc3\xa9+", "\xc3\xa9\xa9"));          // a quantifier takes one byte
  CHECK(matches("a]}", "a]}"));                         // lone ']' and '}' are literal
}

TEST_CASE("simple regex: escapes") {
  CHECK(matches(R"(\.\-\\\/\[\]\(\)\{\}\*\+\?\|\^\$)", R"(.-\/[](){}*+?|^$)"));
  CHECK_FALSE(matches(R"(a\.b)", "axb"));
  CHECK(matches(R"(\t\n\r\f\v)", "\t\n\r\f\v"));
  CHECK(matches(R"(a\ b)", "a b"));
}

TEST_CASE("simple regex: \\d \\w \\s and their negations use the C locale") {
  CHECK(matches(R"(\d+)", "0123456789"));
  CHECK_FALSE(matches(R"(\d)", "a"));
  CHECK(matches(R"(\w+)", "azAZ09_"));
  CHECK_FALSE(matches(R"(\w)", "-"));
  CHECK_FALSE(matches(R"(\w)", "\xc3"));
  CHECK(matches(R"(\s+)", " \t\n\v\f\r"));
  CHECK_FALSE(matches(R"(\s)", "\xa0"));
  CHECK(matches(R"(\D\W\S)", "a-x"));
  CHECK(matches(R"(\D\W\S)", "\xff\xff\xff"));
  CHECK_FALSE(matches(R"(\D)", "5"));
  CHECK_FALSE(matches(R"(\W)", "_"));
  CHECK_FALSE(matches(R"(\S)", " "));
}

TEST_CASE("simple regex: dot is any byte but \\n and \\r") {
  const auto re = must("a.c");
  CHECK(re.fullMatch("abc"));
  CHECK(re.fullMatch(std::string("a\0c", 3)));
  CHECK(
      re.fullMatch("a\xe2"
                   "c"));
  CHECK(re.fullMatch("a.c"));
  CHECK_FALSE(re.fullMatch("a\nc"));
  CHECK_FALSE(re.fullMatch("a\rc"));
  CHECK_FALSE(re.fullMatch("ac"));
  // U+2028 is three bytes; each is an ordinary byte to std::regex<char> and to us.
  CHECK(matches("...", "\xe2\x80\xa8"));
}

TEST_CASE("simple regex: bracket classes") {
  CHECK(matches("[a-z0-9_-]+", "ab-9_z"));
  CHECK_FALSE(matches("[a-z0-9_-]", "A"));
  CHECK(matches("[^a-c]", "d"));
  CHECK_FALSE(matches("[^a-c]", "b"));
  CHECK(matches("[^a-c]", "\n"));  // a negated class takes line terminators, unlike '.'
  CHECK(matches(R"([\d\s]+)", "1 2\t3"));
  CHECK(matches(R"([\w.]+)", "a.b_c"));
  CHECK(matches(R"([^\d])", "x"));
  CHECK_FALSE(matches(R"([^\d])", "7"));
  CHECK(matches(R"([^\D])", "7"));
  CHECK(matches(R"([\]\-\\])", "]"));
  CHECK(matches(R"([\]\-\\])", "-"));
  CHECK(matches(R"([\]\-\\])", "\\"));
  CHECK(matches(R"([a\-z])", "-"));
  CHECK_FALSE(matches(R"([a\-z])", "m"));  // an escaped '-' makes no range
  CHECK(matches("[-a]", "-"));
  CHECK(matches("[a-]", "-"));
  CHECK(matches("[a-c-e]", "-"));  // '-' right after a range is literal
  CHECK_FALSE(matches("[a-c-e]", "d"));
  CHECK(matches("[---]", "-"));
  CHECK(matches(R"([\w-])", "-"));
  CHECK(matches("[.*+?(){}|$^]+", ".*+?(){}|$^"));
  CHECK(matches("[[]", "["));
  CHECK(matches(R"([\b])", "\b"));
  CHECK_FALSE(matches("[]", "a"));
  CHECK_FALSE(matches("[]", ""));
  CHECK(matches("[^]", "\n"));
  CHECK_FALSE(matches("[]a]", "a]"));  // ECMAScript: [] matches nothing, then "a]"
}

TEST_CASE("simple regex: quantifiers") {
  CHECK(matches(R"(\d{3,5})", "123"));
  CHECK(matches(R"(\d{3,5})", "12345"));
  CHECK_FALSE(matches(R"(\d{3,5})", "12"));
  CHECK_FALSE(matches(R"(\d{3,5})", "123456"));
  CHECK(matches("a{2,}", "aaaaa"));
  CHECK_FALSE(matches("a{2,}", "a"));
  CHECK(matches("a{0}b", "b"));
  CHECK(matches("a{0,0}", ""));
  CHECK(matches("ab?c", "ac"));
  CHECK(matches("ab?c", "abc"));
  CHECK(matches("ab*c", "abbbc"));
  CHECK_FALSE(matches("ab+c", "ac"));
  CHECK(matches("a*?b", "aab"));
  CHECK(matches("a+?", "aaa"));
  CHECK(matches("a??", ""));
  CHECK(matches("a{1,3}?b", "aaab"));
  CHECK(matches("[a-z][a-z0-9-]{0,62}", "a" + std::string(62, '9')));
  CHECK_FALSE(matches("[a-z][a-z0-9-]{0,62}", "a" + std::string(63, '9')));
  CHECK(must("[a-z][a-z0-9-]{0,62}").positions() == 63);
}

TEST_CASE("simple regex: groups and alternation") {
  CHECK(matches("(draft|published)-[0-9]+", "draft-1"));
  CHECK(matches("(draft|published)-[0-9]+", "published-42"));
  CHECK_FALSE(matches("(draft|published)-[0-9]+", "drafted-1"));
  CHECK(matches("(ab|a)*b", "aabab"));
  CHECK_FALSE(matches("(ab|a)*b", "aba"));
  CHECK(matches("(?:ab){2}", "abab"));
  CHECK(matches("((a|b)c)+", "acbc"));
  CHECK(matches("(a|)", ""));
  CHECK(matches("(a|)", "a"));
  CHECK(matches("|a", ""));
  CHECK(matches("a|", ""));
  CHECK(matches("()", ""));
  CHECK(matches("(?:)*a", "a"));
  CHECK(matches("(a*)*b", "aaab"));
  CHECK(matches("x(?:y|z(?:w|v))*", "xyzwzvy"));
}

TEST_CASE("simple regex: ^ first and $ last are no-ops for a full match") {
  CHECK(matches("^abc$", "abc"));
  CHECK(matches("^$", ""));
  CHECK(matches("^a|b$", "b"));
  CHECK(matches("a|$", ""));
  CHECK(matches(R"(a\$)", "a$"));
  CHECK(matches(R"(a\\$)", "a\\"));
}

TEST_CASE("simple regex: patterns outside the subset give nullopt") {
  const char* rejected[] = {
      R"((a)\1)",   // backreference
      R"(\0)",      // NUL escape
      R"(a\b)",     // word boundary
      R"(\Ba)",     //
      "(?=a)a",     // lookahead
      "(?!a)b",     //
      "(?<n>a)",    // named group (std::regex rejects it too)
      R"(\x41)",    // hex, unicode, control escapes
      R"(\u0041)",  //
      R"(\cA)",     //
      R"(\a)",      // identity escape of a letter (libstdc++ takes it as 'a')
      R"(\k)",      //
      "[[:alpha:]]",
      "[[.a.]]",
      "[[=a=]]",   // POSIX classes
      "[a-\xc3]",  // range with a byte >= 0x80
      "[z-a]",     // reversed range
      R"([\w-a])",
      R"([a-\d])",  // class as a range end
      R"([\B])",    //
      "a**",
      "a+*",
      "a?+",
      "a{2}{3}",
      "a*??",  // stacked quantifiers
      "*a",
      "+",
      "?",
      "{2}",
      "a|*b",
      "(*)",  // nothing to repeat
      "a{",
      "a{2",
      "a{,2}",
      "a{2,1}",
      "a{x}",
      "a{ 2}",  // bad braces
      "a{65}",
      "a{0,65}",
      "a{99999999999999999999}",  // counts over kMaxCount
      "^*",
      "^?a",  // quantified assertion
      "a^",
      "a$b",
      "(a$)",
      "(^a)",  // anchors elsewhere
      "(a",
      "a)",
      "(?:a",
      "[a",
      "[",
      "[^",
      "a\\",              // unbalanced
      "[a-z0-9]{0,64}a",  // 65 positions
  };
  for (const char* p : rejected) {
    INFO("pattern /" << p << "/");
    CHECK_FALSE(SimpleRegex::compile(p));
  }
  CHECK_FALSE(SimpleRegex::compile(std::string("a\0b", 3)));
  // Work without positions is bounded too.
  CHECK_FALSE(SimpleRegex::compile("(((((){64}){64}){64}){64})"));
  // Right at the limits.
  CHECK(SimpleRegex::compile("[a-z0-9]{0,63}a"));
  CHECK(SimpleRegex::compile("a{64}"));
  const auto nested = [](std::size_t depth) {
    return std::string(depth, '(') + "a" + std::string(depth, ')');
  };
  CHECK(SimpleRegex::compile(nested(SimpleRegex::kMaxDepth)));
  CHECK_FALSE(SimpleRegex::compile(nested(SimpleRegex::kMaxDepth + 1)));
}

TEST_CASE("simple regex: fullMatch allocates nothing") {
  const auto re = must("(draft|published)-[0-9]+|v[0-9]{4}-[0-9]{2}");
  const std::string text = "published-" + std::string(5000, '7');
  keygate::resp::test::AllocationProbe probe;
  bool all = re.fullMatch(text) && re.fullMatch("v2026-01") && !re.fullMatch("draft-");
  CHECK(all);
  CHECK(probe.total() == 0);
}

// ---- differential against std::regex_match -----------------------------------------------

TEST_CASE("simple regex: agrees with std::regex_match on the registry-style patterns") {
  struct Case {
    const char* pattern;
    std::vector<std::string> examples;  // texts that match (seeds for mutations)
  };
  const std::vector<Case> cases = {
      {"v[0-9]{4}-[0-9]{2}", {"v2026-01", "v0000-99"}},
      {"[a-z][a-z0-9-]{0,62}", {"a", "abc-9", "z" + std::string(62, '-')}},
      {"(draft|published)-[0-9]+", {"draft-1", "published-42"}},
      {R"(\d{3,5})", {"123", "1234", "12345"}},
      {"(ab|a)*b", {"b", "abab", "aab"}},
      {"(a|)", {"", "a"}},
      {"(a|)+b", {"b", "aab"}},
      {"(|a)*b", {"b", "ab"}},
      {"((a|b)c)*", {"", "acbc"}},
      {"(?:a(?:b|c)?)+", {"a", "abac"}},
      {"((a)|b)*", {"", "abba"}},
      {"(a*)*", {"", "aaa"}},
      {"(a*)+b", {"b", "aab"}},
      {"(a|b*)*c", {"c", "abbac"}},
      {"(a*b*)*", {"", "abba"}},
      {"(a?){3}", {"", "aaa"}},
      {"(a|ab)(c|bcd)(d*)", {"abcd", "ac", "abcdd"}},
      {"(a|b|)*(c|)", {"", "abc", "c"}},
      {"a*", {"", "aaaa"}},
      {"a+?b", {"ab", "aaab"}},
      {"a??b", {"b", "ab"}},
      {"a{2,}", {"aa", "aaaa"}},
      {"a{1,3}?b", {"ab", "aaab"}},
      {"(ab){2}", {"abab"}},
      {"(ab){1,}", {"ab", "ababab"}},
      {"(a|bc){0,3}", {"", "abca", "bcbcbc"}},
      {"x{0}", {""}},
      {"x{0,0}y", {"y"}},
      {"(?:)*a", {"a"}},
      {"()", {""}},
      {"[^a-c]+", {"xyz", "d\n"}},
      {R"([\w-]+)", {"a-b_9"}},
      {R"([\d\s]*)", {"1 2\t3", ""}},
      {R"(\w+\.\w+)", {"a.b", "ab_9.c"}},
      {R"(\D\W\S)", {"a-x"}},
      {".+", {"ab", "a b"}},
      {"a.c", {"abc", "a-c"}},
      {".*x.*", {"x", "axb"}},
      {"[a-]", {"a", "-"}},
      {"[-a]", {"a", "-"}},
      {"[a-c-e]", {"a", "-", "e"}},
      {"[---]", {"-"}},
      {"[--0]", {"-", "0", "."}},
      {"[a-z-0-9]", {"-", "5", "q"}},
      {"[]", {}},
      {"[^]", {"a", "\n"}},
      {"[]a]", {"a]"}},
      {"^abc$", {"abc"}},
      {"^$", {""}},
      {"^a|b$", {"a", "b"}},
      {"a|$", {"a", ""}},
      {R"(\^\$\.\*\+\?\(\)\[\]\{\}\|\\\/\-)", {R"(^$.*+?()[]{}|\/-)"}},
      {"a]}", {"a]}"}},
      {R"(\t\n)", {"\t\n"}},
      {R"([\n\r]+)", {"\n\r"}},
      {R"([\]\-\\]+)", {"]-\\"}},
      {R"([\b]a)", {"\ba"}},
      {"[0-9a-f]{8}-[0-9a-f]{4}", {"deadbeef-0a1b"}},
      {R"((?:v|V)[0-9]+(?:\.[0-9]+){0,2})", {"v1", "V1.2", "v10.2.33"}},
      {"(en|fr|de)(-[A-Z]{2})?", {"en", "fr-CA"}},
      {R"([A-Z]{2,3}-\d+)", {"AB-1", "ABC-123"}},
      {"q[0-9]+|quote-[a-z]+", {"q1", "quote-ab"}},
      {R"([^\d]+)", {"ab", "-"}},
      {R"([^\w\s])", {"-", "."}},
      {R"(\s+)", {" ", "\t\n"}},
      {"\xc3\xa9+", {"\xc3\xa9", "\xc3\xa9\xa9"}},
      {"(?:\xc3\xa9)+", {"\xc3\xa9", "\xc3\xa9\xc3\xa9"}},
      {"[\xc3\xa9]x", {"\xc3x", "\xa9x"}},
      {R"(tenant-[a-z0-9]{1,16}|t\d+)", {"tenant-acme", "t7"}},
  };
  std::mt19937 rng(20260117);
  std::size_t hits = 0;
  std::size_t total = 0;
  for (const auto& c : cases) {
    // Alphabet: the pattern's bytes, its examples' bytes, and a few that classes care about.
    std::set<char> bytes(std::string_view(c.pattern).begin(), std::string_view(c.pattern).end());
    for (const auto& e : c.examples)
      bytes.insert(e.begin(), e.end());
    for (char b : std::string_view("a0-_Z \t\n\v\f\r\x80\xff", 14))
      bytes.insert(b);
    bytes.insert('\0');
    const std::string alphabet(bytes.begin(), bytes.end());
    std::vector<std::string> texts(c.examples.begin(), c.examples.end());
    // Short strings over a few of its bytes, exhaustively.
    std::string small;
    for (char b : alphabet) {
      if (small.size() < 6 && std::string_view(c.pattern).find(b) != std::string_view::npos &&
          std::string_view("()[]{}*+?|\\^$").find(b) == std::string_view::npos)
        small += b;
    }
    small += '-';
    allStrings(small, 4, texts);
    // Random strings over the whole alphabet.
    for (int k = 0; k < 300; ++k) {
      std::string s(rng() % 10, ' ');
      for (auto& ch : s)
        ch = alphabet[rng() % alphabet.size()];
      texts.push_back(std::move(s));
    }
    // Mutations of matching strings, and of their mutations.
    for (const auto& e : c.examples) {
      for (int k = 0; k < 100; ++k) {
        auto m = mutate(e, alphabet, rng);
        texts.push_back(mutate(m, alphabet, rng));
        texts.push_back(std::move(m));
      }
    }
    hits += agreeOn(c.pattern, texts);
    total += texts.size();
  }
  INFO("texts " << total << ", matching " << hits);
  CHECK(cases.size() >= 60);
  CHECK(total > 50000);
  CHECK(hits > 5000);  // the comparison is not all "no"
}

namespace {

// A random pattern from the subset's grammar over atoms that hit the alphabet "ab0-\n".
// libstdc++ backtracks, exponentially in the text for loops inside loops, so a group that
// contains an unbounded quantifier gets only bounded ones itself; *loops is set when the
// pattern has an unbounded quantifier.
std::string randomPattern(std::mt19937& rng, int depth, bool* loops) {
  static const char* kAtoms[] = {"a",     "b",     "0",     "-",     ".",     R"(\d)",   R"(\w)",
                                 R"(\s)", R"(\D)", "[ab]",  "[^a]",  "[a-c]", "[-a]",    R"([\d-])",
                                 "[^]",   "[]",    R"(\-)", R"(\n)", "[a-]",  R"([^\w])"};
  static const char* kBounded[] = {"", "", "", "?", "{2}", "{0,2}", "{0}", "??", "{1,2}?"};
  static const char* kUnbounded[] = {"*", "+", "{1,}", "*?", "{2,}"};
  std::string out;
  *loops = false;
  const int alts = rng() % 4 == 0 ? 2 : 1;
  for (int a = 0; a < alts; ++a) {
    if (a > 0) out += '|';
    const int terms = static_cast<int>(rng() % 4);
    for (int t = 0; t < terms; ++t) {
      bool inner = false;
      if (depth < 2 && rng() % 4 == 0) {
        out += rng() % 2 ? "(" : "(?:";
        out += randomPattern(rng, depth + 1, &inner);
        out += ')';
      } else {
        out += kAtoms[rng() % std::size(kAtoms)];
      }
      if (!inner && rng() % 3 == 0) {
        out += kUnbounded[rng() % std::size(kUnbounded)];
        *loops = true;
      } else {
        out += kBounded[rng() % std::size(kBounded)];
      }
      *loops = *loops || inner;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("simple regex: agrees with std::regex on random patterns") {
  std::mt19937 rng(7);
  std::vector<std::string> texts;
  // Short texts: libstdc++ backtracks, exponentially in the text for nested loops.
  allStrings("ab0-\n", 4, texts);  // 781 texts
  for (int k = 0; k < 200; ++k) {
    std::string s(5 + rng() % 2, ' ');
    for (auto& ch : s)
      ch = "ab0-\nc_"[rng() % 7];
    texts.push_back(std::move(s));
  }
  int compared = 0;
  for (int k = 0; k < 250; ++k) {
    bool loops = false;
    std::string p = randomPattern(rng, 0, &loops);
    if (rng() % 5 == 0) p = "^" + p;
    if (rng() % 5 == 0) p += "$";
    if (!SimpleRegex::compile(p)) continue;
    agreeOn(p, texts);
    ++compared;
  }
  CHECK(compared > 200);
}

TEST_CASE("simple regex: whatever it accepts, std::regex accepts (random byte soup)") {
  // Short strings of syntax characters: SimpleRegex must never accept a pattern std::regex
  // rejects, and must agree on the ones both accept.
  const std::string soup = R"(ab-0()[]{}|*+?^$\.,:=dDwWsSbBn2)";
  std::mt19937 rng(99);
  std::vector<std::string> texts;
  allStrings("ab-0\n", 3, texts);
  int accepted = 0;
  for (int k = 0; k < 4000; ++k) {
    std::string p(1 + rng() % 7, ' ');
    for (auto& ch : p)
      ch = soup[rng() % soup.size()];
    const auto simple = SimpleRegex::compile(p);
    if (!simple) continue;
    ++accepted;
    agreeOn(p, texts);
  }
  CHECK(accepted > 300);
}

TEST_CASE("simple regex: cost of v[0-9]{4}-[0-9]{2} against std::regex_match (not asserted)") {
  const auto simple = must("v[0-9]{4}-[0-9]{2}");
  const std::regex oracle("v[0-9]{4}-[0-9]{2}", std::regex::ECMAScript);
  const std::string text = "v2026-01";
  constexpr int kRounds = 20000;
  using Clock = std::chrono::steady_clock;
  int a = 0;
  int b = 0;
  const auto t0 = Clock::now();
  for (int k = 0; k < kRounds; ++k)
    a += simple.fullMatch(text) ? 1 : 0;
  const auto t1 = Clock::now();
  for (int k = 0; k < kRounds; ++k)
    b += std::regex_match(text, oracle) ? 1 : 0;
  const auto t2 = Clock::now();
  const auto ns = [](auto d) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count() / kRounds;
  };
  WARN("fullMatch: " << ns(t1 - t0) << " ns/call, std::regex_match: " << ns(t2 - t1)
                     << " ns/call (this build's flags; see the report for callgrind counts)");
  CHECK(a == kRounds);
  CHECK(b == kRounds);
}
