#include "proxy/resp/reply_reader.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "proxy/resp/reply_scanner.hpp"

using namespace std::string_literals;
using keygate::resp::Element;
using keygate::resp::ReplyReader;

namespace {

// An element in a form that is easy to write down in a test: type, text, integer, null.
struct Flat {
  char type;
  std::string text;
  std::int64_t integer;
  bool isNull;

  bool operator==(const Flat&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Flat& f) {
  return os << "{'" << f.type << "' \"" << f.text << "\" " << f.integer
            << (f.isNull ? " null}" : "}");
}

// Reads every element of `frame`; `complete` tells whether the walk reached the end.
std::vector<Flat> readAll(std::string_view frame, bool* complete = nullptr) {
  ReplyReader reader(frame);
  std::vector<Flat> out;
  while (auto e = reader.next()) {
    out.push_back(Flat{e->type, std::string(e->text), e->integer, e->isNull});
  }
  if (complete != nullptr) *complete = reader.offset() == frame.size();
  return out;
}

}  // namespace

TEST_CASE("reply reader: scalars", "[resp][reader]") {
  CHECK(readAll("+OK\r\n") == std::vector<Flat>{{'+', "OK", 0, false}});
  CHECK(readAll("-ERR no\r\n") == std::vector<Flat>{{'-', "ERR no", 0, false}});
  CHECK(readAll(":-42\r\n") == std::vector<Flat>{{':', "", -42, false}});
  CHECK(readAll("$5\r\nhe\r\no\r\n") == std::vector<Flat>{{'$', "he\r\no", 0, false}});
  CHECK(readAll("$0\r\n\r\n") == std::vector<Flat>{{'$', "", 0, false}});
  CHECK(readAll("$-1\r\n") == std::vector<Flat>{{'$', "", -1, true}});
  CHECK(readAll("*-1\r\n") == std::vector<Flat>{{'*', "", -1, true}});
  CHECK(readAll("_\r\n") == std::vector<Flat>{{'_', "", -1, true}});
  CHECK(readAll("#t\r\n") == std::vector<Flat>{{'#', "t", 1, false}});
  CHECK(readAll("#f\r\n") == std::vector<Flat>{{'#', "f", 0, false}});
  CHECK(readAll(",1.5\r\n") == std::vector<Flat>{{',', "1.5", 0, false}});
  CHECK(readAll("(123456789012345678901234567890\r\n") ==
        std::vector<Flat>{{'(', "123456789012345678901234567890", 0, false}});
  CHECK(readAll("!8\r\nERR oops\r\n") == std::vector<Flat>{{'!', "ERR oops", 0, false}});
  CHECK(readAll("=8\r\ntxt:info\r\n") == std::vector<Flat>{{'=', "txt:info", 0, false}});
}

TEST_CASE("reply reader: aggregates depth first", "[resp][reader]") {
  const std::string frame = "*3\r\n$3\r\nfoo\r\n%1\r\n+k\r\n*2\r\n:1\r\n:2\r\n~0\r\n";
  bool complete = false;
  const auto elements = readAll(frame, &complete);
  CHECK(complete);
  CHECK(elements == std::vector<Flat>{{'*', "", 3, false},
                                      {'$', "foo", 0, false},
                                      {'%', "", 1, false},
                                      {'+', "k", 0, false},
                                      {'*', "", 2, false},
                                      {':', "", 1, false},
                                      {':', "", 2, false},
                                      {'~', "", 0, false}});
}

TEST_CASE("reply reader: push and attribute", "[resp][reader]") {
  const std::string frame = "|1\r\n+ttl\r\n:10\r\n>3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n";
  bool complete = false;
  CHECK(readAll(frame, &complete) == std::vector<Flat>{{'|', "", 1, false},
                                                       {'+', "ttl", 0, false},
                                                       {':', "", 10, false},
                                                       {'>', "", 3, false},
                                                       {'$', "subscribe", 0, false},
                                                       {'$', "ch", 0, false},
                                                       {':', "", 1, false}});
  CHECK(complete);
}

TEST_CASE("reply reader: views point into the frame", "[resp][reader]") {
  const std::string frame = "*1\r\n$3\r\nabc\r\n";
  ReplyReader reader(frame);
  REQUIRE(reader.next().has_value());
  CHECK(reader.offset() == 4);
  const auto bulk = reader.next();
  REQUIRE(bulk.has_value());
  CHECK(bulk->text.data() == frame.data() + 8);
  CHECK(reader.offset() == frame.size());
  CHECK_FALSE(reader.next().has_value());
  CHECK_FALSE(reader.next().has_value());
}

TEST_CASE("reply reader: malformed or truncated input ends the walk", "[resp][reader]") {
  const std::vector<std::string> bad = {"",
                                        "+OK",
                                        "+OK\r",
                                        "+OK\rx",
                                        ":x\r\n",
                                        ":\r\n",
                                        "$5\r\nab",
                                        "$5\r\nabcde",
                                        "$5\r\nabcdeXY",
                                        "$-2\r\n",
                                        "$x\r\n",
                                        "*-2\r\n",
                                        "%-1\r\n",
                                        "?\r\n",
                                        "#x\r\n",
                                        "\0\r\n"s,
                                        "$9223372036854775807\r\n",
                                        "$3\r\nab\r\n"};
  for (const auto& input : bad) {
    INFO(input);
    ReplyReader reader(input);
    CHECK_FALSE(reader.next().has_value());
    CHECK(reader.offset() == 0);
  }
  // A good element before a bad one is still returned.
  bool complete = true;
  CHECK(readAll("*2\r\n:1\r\n$4\r\nab", &complete) ==
        std::vector<Flat>{{'*', "", 2, false}, {':', "", 1, false}});
  CHECK_FALSE(complete);
}

TEST_CASE("reply reader: everything the scanner frames reads to its end", "[resp][reader]") {
  const std::string stream =
      "+OK\r\n-ERR x\r\n:1\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n_\r\n#t\r\n,inf\r\n(7\r\n!1\r\nE\r\n"
      "=5\r\ntxt:a\r\n%1\r\n+a\r\n*1\r\n~1\r\n>0\r\n|1\r\n+a\r\n+b\r\n:5\r\n";
  keygate::resp::ReplyScanner scanner(keygate::resp::Limits{});
  std::string_view rest = stream;
  int frames = 0;
  while (!rest.empty()) {
    const auto r = scanner.scan(rest);
    REQUIRE(r.status == keygate::resp::ScanStatus::kOk);
    bool complete = false;
    readAll(rest.substr(0, r.consumed), &complete);
    CHECK(complete);
    rest.remove_prefix(r.consumed);
    ++frames;
  }
  CHECK(frames == 14);
}
