#include "policies/key_pattern.hpp"

#include <catch2/catch.hpp>
#include <string>

using namespace keygate::policies;

namespace {

KeyPattern must(std::string_view text) {
  std::string error;
  auto p = KeyPattern::parse(text, &error);
  INFO(error);
  REQUIRE(p);
  return std::move(*p);
}

// The parse error for `text` (which must not parse).
std::string errorOf(std::string_view text) {
  std::string error;
  const auto p = KeyPattern::parse(text, &error);
  REQUIRE_FALSE(p);
  return error;
}

std::string captured(const Captures& c) {
  std::string out;
  for (const auto& [name, value] : c) {
    if (!out.empty()) out += ' ';
    out += std::string(name) + "=" + std::string(value);
  }
  return out;
}

}  // namespace

TEST_CASE("the SPEC example matches its key and captures every variable") {
  const auto p =
      must("cpq:{tenant-<tenant>}:pricing:preview:quote-<quoteId>:rev-<rev:int>:policy-<policy>");
  Captures c;
  REQUIRE(p.match("cpq:{tenant-acme}:pricing:preview:quote-q100:rev-3:policy-v2026-07", &c));
  CHECK(captured(c) == "tenant=acme quoteId=q100 rev=3 policy=v2026-07");
  CHECK(p.segmentCount() == 7);
  CHECK(p.literalPrefix() == "cpq:{tenant-");
  CHECK(p.hasVariable("tenant"));
  CHECK(p.hasVariable("rev"));
  CHECK_FALSE(p.hasVariable("quote"));
  CHECK(p.variableNames() == std::vector<std::string_view>{"tenant", "quoteId", "rev", "policy"});
  CHECK(p.variableType("rev") == VarType::kInt);
  CHECK(p.text() ==
        "cpq:{tenant-<tenant>}:pricing:preview:quote-<quoteId>:rev-<rev:int>:policy-<policy>");

  CHECK_FALSE(p.match("cpq:{tenant-acme}:pricing:preview:quote-q100:rev-x3:policy-v2026-07"));
  CHECK_FALSE(p.match("cpq:tenant-acme:pricing:preview:quote-q100:rev-3:policy-v2026-07"));
  CHECK_FALSE(p.match("cpq:{tenant-}:pricing:preview:quote-q100:rev-3:policy-v2026-07"));
}

TEST_CASE("braces are literal: the Redis hash tag stays visible") {
  const auto p = must("cart:{<user>}:items");
  Captures c;
  CHECK(p.match("cart:{u1}:items", &c));
  CHECK(captured(c) == "user=u1");
  CHECK_FALSE(p.match("cart:u1:items"));
  CHECK_FALSE(p.match("cart:{u1:items"));
  CHECK(must("a:{b}:c").match("a:{b}:c"));
  CHECK(must("{x}").literalPrefix() == "{x}");
}

TEST_CASE("keys with extra or missing segments never match") {
  const auto p = must("a:<x>:c");
  CHECK(p.match("a:b:c"));
  CHECK_FALSE(p.match("a:b:c:d"));
  CHECK_FALSE(p.match("a:b"));
  CHECK_FALSE(p.match("a:b:c:"));
  CHECK_FALSE(p.match(":a:b:c"));
  CHECK_FALSE(p.match("a:b:x:c"));  // <x> never spans ':'
  CHECK_FALSE(p.match(""));
  CHECK(must("a::b").match("a::b"));
  CHECK_FALSE(must("a::b").match("a:b"));
}

TEST_CASE("variable types") {
  SECTION("any: a non-empty run without ':'") {
    const auto p = must("k:<v>");
    CHECK(p.match("k:x"));
    CHECK(p.match("k:{weird} run!"));
    CHECK_FALSE(p.match("k:"));
    CHECK_FALSE(p.match("k:a:b"));
    CHECK(must("k:<v:any>").match("k:x"));
  }
  SECTION("int: ASCII digits") {
    const auto p = must("k:<v:int>");
    CHECK(p.match("k:0"));
    CHECK(p.match("k:0012345678901234567890"));
    CHECK_FALSE(p.match("k:-1"));
    CHECK_FALSE(p.match("k:1.5"));
    CHECK_FALSE(p.match("k:12a"));
    CHECK_FALSE(p.match("k:"));
  }
  SECTION("hex") {
    const auto p = must("k:<v:hex>");
    CHECK(p.match("k:deadBEEF09"));
    CHECK_FALSE(p.match("k:0x1f"));
    CHECK_FALSE(p.match("k:g"));
  }
  SECTION("uuid: 8-4-4-4-12 hex") {
    const auto p = must("order-<id:uuid>");
    CHECK(p.match("order-123e4567-e89b-12d3-a456-426614174000"));
    CHECK(p.match("order-123E4567-E89B-12D3-A456-426614174000"));
    CHECK_FALSE(p.match("order-123e4567e89b12d3a456426614174000"));
    CHECK_FALSE(p.match("order-123e4567-e89b-12d3-a456-42661417400"));
    CHECK_FALSE(p.match("order-123e4567-e89b-12d3-a456-4266141740000"));
    CHECK_FALSE(p.match("order-123e4567-e89b-12d3-a456-42661417400g"));
    const auto q = must("o-<id:uuid>-x");
    CHECK(q.match("o-123e4567-e89b-12d3-a456-426614174000-x"));
  }
  SECTION("regex: the whole run must match") {
    const auto p = must("cat:offering-<id>:v<version:/[0-9]+(\\.[0-9]+)?/>");
    Captures c;
    CHECK(p.match("cat:offering-o1:v2.10", &c));
    CHECK(captured(c) == "id=o1 version=2.10");
    CHECK_FALSE(p.match("cat:offering-o1:v2.x"));
    CHECK_FALSE(p.match("cat:offering-o1:vx2"));  // whole run, not a search
    // A regex may contain ':' and '>' (it ends at "/>"), yet never matches across segments.
    const auto q = must("k:<v:/(?:a|b)>?/>");
    CHECK(q.match("k:a>"));
    CHECK(q.match("k:b"));
    CHECK_FALSE(q.match("k:c"));
    const auto colon = must("k:<v:/.+/>");
    CHECK_FALSE(colon.match("k:a:b"));
    CHECK(colon.match("k:ab"));
  }
  SECTION("a regex never matches a run longer than kMaxRegexRun") {
    const auto p = must("k:<v:/a+/>");
    CHECK(p.match("k:" + std::string(kMaxRegexRun, 'a')));
    CHECK_FALSE(p.match("k:" + std::string(kMaxRegexRun + 1, 'a')));
  }
}

TEST_CASE("several variables in one segment: backtracking inside the segment") {
  const auto p = must("quote-<id>-<rev:int>-x");
  Captures c;
  REQUIRE(p.match("quote-a-b-7-x", &c));
  CHECK(captured(c) == "id=a-b rev=7");
  REQUIRE(p.match("quote-1-2-x", &c));
  CHECK(captured(c) == "id=1 rev=2");
  CHECK_FALSE(p.match("quote-a-b-x"));
  CHECK_FALSE(p.match("quote--1-x", &c));
  CHECK(c.empty());  // cleared on a failed match

  const auto q = must("<a:int>.<b:hex>.<c>");
  REQUIRE(q.match("12.ff.x.y", &c));
  CHECK(captured(c) == "a=12 b=ff c=x.y");
  CHECK_FALSE(q.match("1x.ff.z"));
}

TEST_CASE("escaped angle brackets are literal") {
  const auto p = must("a\\<b\\>:<x>");
  CHECK(p.match("a<b>:1"));
  CHECK_FALSE(p.match("a\\<b\\>:1"));
  CHECK(p.literalPrefix() == "a<b>:");
  CHECK(must("a\\b").match("a\\b"));  // other backslashes are literal
}

TEST_CASE("captures name views stay valid after the pattern is moved") {
  std::optional<KeyPattern> p = must("a:<x>");
  const KeyPattern moved = std::move(*p);
  p.reset();
  Captures c;
  REQUIRE(moved.match("a:1", &c));
  CHECK(c[0].name == "x");
  CHECK(findCapture(c, "x") == std::string_view("1"));
  CHECK_FALSE(findCapture(c, "y"));
}

TEST_CASE("parse errors name the column and the fix") {
  CHECK(errorOf("") == "column 1: the pattern is empty; write the key as it appears in Redis");
  CHECK(errorOf("a:<x") == "column 3: variable '<x' is never closed; add '>'");
  CHECK(errorOf("a:<") ==
        "column 3: '<' starts a variable that is never closed; add '>' (or write \\< for a "
        "literal '<')");
  CHECK(errorOf("a:<>") == "column 3: empty variable name '<>'; write <name>");
  CHECK(errorOf("a:<1x>") ==
        "column 4: a variable name must start with a letter or '_', not '1' (write \\< for a "
        "literal '<')");
  CHECK(errorOf("a:< x>").starts_with("column 4: a variable name must start"));
  CHECK(errorOf("a:<x-y>") ==
        "column 5: unexpected '-' in variable '<x'; names are letters, digits and '_', then '>' "
        "or ':type>'");
  CHECK(errorOf("a:<x:integer>") ==
        "column 6: unknown type 'integer' for variable 'x'; use int, hex, uuid, any or /regex/");
  CHECK(errorOf("a:<x:>").starts_with("column 6: unknown type ''"));
  CHECK(errorOf("a:<x:int") == "column 3: variable '<x:int' is never closed; add '>'");
  CHECK(errorOf("a:<x:int-y>").starts_with("column 9: unexpected '-' in the type of variable"));
  CHECK(errorOf("a:<x:/[0-9]+>") ==
        "column 6: the regex of variable 'x' is never closed; end it with '/>'");
  CHECK(errorOf("a:<x://>").starts_with("column 6: the regex of variable 'x' is empty"));
  CHECK(errorOf("a:<x:/[0-9/>").starts_with("column 7: invalid regex /[0-9/ for variable 'x': "));
  CHECK(errorOf("a:<x>:<x:int>") ==
        "column 8: variable 'x' appears twice; give each variable its own name");
  CHECK(errorOf("a:<x><y>") ==
        "column 6: variable 'y' directly follows another variable, so where one ends is "
        "ambiguous; put literal text between them");
  CHECK(errorOf("a:<x:int><y:int>").starts_with("column 10: variable 'y' directly follows"));
  CHECK(errorOf("a:b>c") ==
        "column 4: '>' without a variable before it; write \\> for a literal "
        "'>'");
  CHECK(errorOf("{tenant-<tenant:int>}") ==
        "column 10: the reserved variable <tenant> takes no type; write <tenant>");
  CHECK(errorOf(std::string(kMaxPatternBytes + 1, 'a'))
            .starts_with("column 4097: the pattern is "
                         "longer than"));
  std::string many;
  for (std::size_t i = 0; i < kMaxSegments; ++i)
    many += "s:";
  CHECK(errorOf(many).find("more than 64 ':'-separated segments") != std::string::npos);

  // Not errors: variables separated by a literal, or by ':'; an escaped '<' next to a variable.
  CHECK(KeyPattern::parse("<a>-<b>", nullptr));
  CHECK(KeyPattern::parse("<a>:<b>", nullptr));
  CHECK(KeyPattern::parse("\\<<a>\\>", nullptr));
  CHECK_FALSE(KeyPattern::parse("<a><b>", nullptr));  // a null error pointer is fine
}

TEST_CASE("expand fills variables and checks each value against its type") {
  const auto p = must("cpq:{tenant-<tenant>}:quote-<quoteId>:rev-<rev:int>");
  std::string out, error;
  const Captures vars{{"quoteId", "q1"}, {"tenant", "acme"}, {"rev", "12"}, {"unused", "x"}};
  REQUIRE(p.expand(vars, out, &error));
  CHECK(out == "cpq:{tenant-acme}:quote-q1:rev-12");
  CHECK(p.match(out));

  CHECK_FALSE(p.expand({{"quoteId", "q1"}, {"rev", "12"}}, out, &error));
  CHECK(error ==
        "pattern 'cpq:{tenant-<tenant>}:quote-<quoteId>:rev-<rev:int>': variable "
        "<tenant> has no value; supply it from the key or the connection");
  CHECK_FALSE(p.expand({{"quoteId", "q1"}, {"tenant", "acme"}, {"rev", "x"}}, out, &error));
  CHECK(error.ends_with("value 'x' for <rev> is not of type int"));
  CHECK_FALSE(p.expand({{"quoteId", "a:b"}, {"tenant", "acme"}, {"rev", "1"}}, out, &error));
  CHECK(error.ends_with("value 'a:b' for <quoteId> contains ':'"));
  CHECK_FALSE(p.expand({{"quoteId", ""}, {"tenant", "acme"}, {"rev", "1"}}, out, &error));
  CHECK(error.ends_with("value '' for <quoteId> is empty"));

  const auto r = must("v<version:/[0-9]+/>\\<x\\>");
  REQUIRE(r.expand({{"version", "3"}}, out, &error));
  CHECK(out == "v3<x>");
  CHECK_FALSE(r.expand({{"version", "3a"}}, out, &error));
  CHECK(error.ends_with("value '3a' for <version> does not match /[0-9]+/"));
  CHECK_FALSE(must("<u:uuid>").expand({{"u", "123"}}, out, nullptr));
  CHECK(must("plain:key").expand({}, out, nullptr));
  CHECK(out == "plain:key");
}

TEST_CASE("literalPrefix stops at the first variable") {
  CHECK(must("cpq:{tenant-<tenant>}:x").literalPrefix() == "cpq:{tenant-");
  CHECK(must("<a>:b").literalPrefix().empty());
  CHECK(must("a:b:c").literalPrefix() == "a:b:c");
}
