#include "policies/simple_regex.hpp"

#include <bit>
#include <vector>

// Two passes. The parser turns the pattern into a small tree (nodes in a vector, children as
// index lists), following libstdc++'s ECMAScript grammar (bits/regex_scanner.tcc,
// bits/regex_compiler.tcc) wherever the subset is concerned, so that it accepts a pattern
// only when std::regex would and means the same by it. The emitter then walks the tree and
// builds the position automaton, instantiating a counted repeat's body once per copy.

namespace keygate::policies {

namespace {

// A set of bytes, one bit each.
struct ByteSet {
  std::array<std::uint64_t, 4> w{};
  void add(unsigned b) { w[b >> 6] |= std::uint64_t{1} << (b & 63); }
  bool has(unsigned b) const { return (w[b >> 6] >> (b & 63)) & 1; }
  void addRange(unsigned lo, unsigned hi) {
    for (unsigned b = lo; b <= hi; ++b)
      add(b);
  }
  void addAll(const ByteSet& o) {
    for (std::size_t i = 0; i < 4; ++i)
      w[i] |= o.w[i];
  }
  void flip() {
    for (auto& x : w)
      x = ~x;
  }
};

// The C-locale classes of \d, \w and \s (libstdc++ regex_traits::lookup_classname with the
// classic ctype<char> table: nothing at or above 0x80 is a digit, alnum or space).
ByteSet classSet(char letter) {
  ByteSet s;
  switch (letter | 0x20) {
    case 'd':
      s.addRange('0', '9');
      break;
    case 'w':
      s.addRange('0', '9');
      s.addRange('A', 'Z');
      s.addRange('a', 'z');
      s.add('_');
      break;
    case 's':
      s.add(' ');
      s.addRange('\t', '\r');  // \t \n \v \f \r
      break;
    default:
      break;
  }
  if (letter >= 'A' && letter <= 'Z') s.flip();
  return s;
}

bool isClassLetter(char c) {
  return c == 'd' || c == 'D' || c == 'w' || c == 'W' || c == 's' || c == 'S';
}

// The byte of a control escape (\n \r \t \f \v), or -1.
int controlEscape(char c) {
  switch (c) {
    case 'n':
      return '\n';
    case 'r':
      return '\r';
    case 't':
      return '\t';
    case 'f':
      return '\f';
    case 'v':
      return '\v';
    default:
      return -1;
  }
}

// Identity escapes we accept: ASCII punctuation and space. libstdc++ also takes letters it
// does not know (\a is 'a', \e is 'e'), which ECMAScript forbids; those are left to std::regex.
bool isIdentityEscape(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u < 0x20 || u > 0x7e) return false;
  return !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
}

bool isQuantifierStart(char c) {
  return c == '*' || c == '+' || c == '?' || c == '{';
}

struct Node {
  enum Kind : std::uint8_t { kSet, kConcat, kAlt, kRepeat };
  Kind kind = kConcat;
  int set = -1;           // kSet: index into sets
  std::vector<int> kids;  // kConcat, kAlt: children; kRepeat: the body
  int min = 0;            // kRepeat
  int max = 0;            // kRepeat; -1 = unbounded
};

}  // namespace

class SimpleRegexBuilder {
 public:
  explicit SimpleRegexBuilder(std::string_view p) : p_(p) {}

  std::optional<SimpleRegex> build() {
    for (char c : p_) {
      if (c == '\0') return std::nullopt;
    }
    // '^' is an assertion in libstdc++: it takes no quantifier ("^*" does not compile).
    if (!p_.empty() && p_[0] == '^') {
      ++i_;
      if (i_ < p_.size() && isQuantifierStart(p_[i_])) return std::nullopt;
    }
    const int root = disjunction();
    if (root < 0 || i_ != p_.size()) return std::nullopt;
    Frag f;
    if (!emit(root, f)) return std::nullopt;
    re_.first_ = f.first;
    re_.last_ = f.last;
    re_.nullable_ = f.nullable;
    re_.positions_ = static_cast<std::uint8_t>(positions_);
    return re_;
  }

 private:
  // ---- parsing --------------------------------------------------------------------------

  int add(Node n) {
    nodes_.push_back(std::move(n));
    return static_cast<int>(nodes_.size()) - 1;
  }
  int addSet(const ByteSet& s) {
    sets_.push_back(s);
    Node n;
    n.kind = Node::kSet;
    n.set = static_cast<int>(sets_.size()) - 1;
    return add(std::move(n));
  }
  bool atEnd() const { return i_ >= p_.size(); }

  int disjunction() {
    Node alt;
    alt.kind = Node::kAlt;
    while (true) {
      const int a = alternative();
      if (a < 0) return -1;
      alt.kids.push_back(a);
      if (atEnd() || p_[i_] != '|') break;
      ++i_;
    }
    if (alt.kids.size() == 1) return alt.kids[0];
    return add(std::move(alt));
  }

  int alternative() {
    Node seq;
    seq.kind = Node::kConcat;
    while (!atEnd() && p_[i_] != '|' && p_[i_] != ')') {
      const int t = term();
      if (t < 0) return -1;
      seq.kids.push_back(t);
    }
    return add(std::move(seq));
  }

  int term() {
    // '$' only as the pattern's last byte, outside groups: it asserts the end, which a full
    // match reaches anyway.
    if (p_[i_] == '$') {
      if (i_ + 1 != p_.size() || depth_ != 0) return -1;
      ++i_;
      Node empty;
      return add(std::move(empty));
    }
    const int a = atom();
    if (a < 0 || atEnd()) return a;
    Node rep;
    rep.kind = Node::kRepeat;
    rep.kids.push_back(a);
    switch (p_[i_]) {
      case '*':
        rep.min = 0;
        rep.max = -1;
        ++i_;
        break;
      case '+':
        rep.min = 1;
        rep.max = -1;
        ++i_;
        break;
      case '?':
        rep.min = 0;
        rep.max = 1;
        ++i_;
        break;
      case '{':
        ++i_;
        if (!braces(rep.min, rep.max)) return -1;
        break;
      default:
        return a;
    }
    if (!atEnd() && p_[i_] == '?') ++i_;  // lazy: same answer for a full match
    // libstdc++ takes "a**" as (a*)*; ECMAScript forbids it. Leave it to std::regex.
    if (!atEnd() && isQuantifierStart(p_[i_])) return -1;
    return add(std::move(rep));
  }

  // After '{': n}, n,} or n,m} with decimal digits only (libstdc++ _M_scan_in_brace).
  bool braces(int& min, int& max) {
    if (!number(min)) return false;
    if (atEnd()) return false;
    if (p_[i_] == ',') {
      ++i_;
      if (!atEnd() && p_[i_] >= '0' && p_[i_] <= '9') {
        if (!number(max) || max < min) return false;
      } else {
        max = -1;
      }
    } else {
      max = min;
    }
    if (atEnd() || p_[i_] != '}') return false;
    ++i_;
    return true;
  }

  bool number(int& out) {
    if (atEnd() || p_[i_] < '0' || p_[i_] > '9') return false;
    long v = 0;
    while (!atEnd() && p_[i_] >= '0' && p_[i_] <= '9') {
      v = v * 10 + (p_[i_] - '0');
      if (v > SimpleRegex::kMaxCount) return false;
      ++i_;
    }
    out = static_cast<int>(v);
    return true;
  }

  int atom() {
    const char c = p_[i_];
    switch (c) {
      case '.': {
        ++i_;
        ByteSet s;
        s.flip();
        s.w[0] &= ~((std::uint64_t{1} << '\n') | (std::uint64_t{1} << '\r'));
        return addSet(s);
      }
      case '(': {
        ++i_;
        if (!atEnd() && p_[i_] == '?') {
          if (i_ + 1 >= p_.size() || p_[i_ + 1] != ':') return -1;  // lookahead and the like
          i_ += 2;
        }
        if (++depth_ > SimpleRegex::kMaxDepth) return -1;
        const int d = disjunction();
        --depth_;
        if (d < 0 || atEnd() || p_[i_] != ')') return -1;
        ++i_;
        return d;
      }
      case '[':
        ++i_;
        return bracket();
      case '\\': {
        ++i_;
        if (atEnd()) return -1;
        const char e = p_[i_++];
        ByteSet s;
        if (isClassLetter(e)) return addSet(classSet(e));
        if (const int b = controlEscape(e); b >= 0) {
          s.add(static_cast<unsigned>(b));
          return addSet(s);
        }
        if (!isIdentityEscape(e)) return -1;
        s.add(static_cast<unsigned char>(e));
        return addSet(s);
      }
      case ')':
      case '*':
      case '+':
      case '?':
      case '{':
      case '|':
      case '^':
      case '$':
        return -1;
      default: {  // ']' and '}' included: ordinary characters in libstdc++
        ++i_;
        ByteSet s;
        s.add(static_cast<unsigned char>(c));
        return addSet(s);
      }
    }
  }

  // One token inside [...] (libstdc++ _M_scan_in_bracket + _M_eat_escape_ecma).
  struct Tok {
    enum Kind : std::uint8_t { kFail, kEnd, kDash, kChar, kClass } kind = kFail;
    unsigned char ch = 0;
    char cls = 0;
  };

  Tok bracketToken() {
    Tok t;
    if (atEnd()) return t;
    const char c = p_[i_++];
    if (c == '-') {
      t.kind = Tok::kDash;
    } else if (c == ']') {
      t.kind = Tok::kEnd;
    } else if (c == '[') {
      // [[:alpha:]], [[.x.]] and [[=x=]] are POSIX classes libstdc++ also takes here.
      if (atEnd() || p_[i_] == ':' || p_[i_] == '.' || p_[i_] == '=') return t;
      t.kind = Tok::kChar;
      t.ch = '[';
    } else if (c == '\\') {
      if (atEnd()) return t;
      const char e = p_[i_++];
      if (isClassLetter(e)) {
        t.kind = Tok::kClass;
        t.cls = e;
      } else if (e == 'b') {  // backspace inside brackets
        t.kind = Tok::kChar;
        t.ch = '\b';
      } else if (const int b = controlEscape(e); b >= 0) {
        t.kind = Tok::kChar;
        t.ch = static_cast<unsigned char>(b);
      } else if (isIdentityEscape(e)) {
        t.kind = Tok::kChar;
        t.ch = static_cast<unsigned char>(e);
      }
    } else {
      t.kind = Tok::kChar;
      t.ch = static_cast<unsigned char>(c);
    }
    return t;
  }

  // After '[': the body and ']' (libstdc++ _M_insert_bracket_matcher / _M_expression_term,
  // ECMAScript branch). `last` is the pending single byte that may still start a range.
  int bracket() {
    bool negate = false;
    if (!atEnd() && p_[i_] == '^') {
      negate = true;
      ++i_;
    }
    enum class Last : std::uint8_t { kNone, kChar, kClass };
    Last last = Last::kNone;
    unsigned char lastCh = 0;
    ByteSet set;

    auto pushChar = [&](unsigned char ch) {
      if (last == Last::kChar) set.add(lastCh);
      last = Last::kChar;
      lastCh = ch;
    };
    // libstdc++ compares range ends as (signed) char; with ASCII ends that is the byte order.
    auto range = [&](unsigned char lo, unsigned char hi) {
      if (lo >= 0x80 || hi >= 0x80 || lo > hi) return false;
      set.addRange(lo, hi);
      last = Last::kNone;
      return true;
    };

    {
      const std::size_t mark = i_;
      const Tok t = bracketToken();
      if (t.kind == Tok::kChar) {
        last = Last::kChar;
        lastCh = t.ch;
      } else if (t.kind == Tok::kDash) {
        last = Last::kChar;
        lastCh = '-';
      } else {
        i_ = mark;
      }
    }
    while (true) {
      const Tok t = bracketToken();
      if (t.kind == Tok::kEnd) break;
      if (t.kind == Tok::kFail) return -1;
      if (t.kind == Tok::kChar) {
        pushChar(t.ch);
      } else if (t.kind == Tok::kClass) {
        if (last == Last::kChar) set.add(lastCh);
        last = Last::kClass;
        set.addAll(classSet(t.cls));
      } else {  // '-'
        const std::size_t mark = i_;
        const Tok u = bracketToken();
        if (u.kind == Tok::kEnd) {
          pushChar('-');
          break;
        }
        if (last == Last::kClass) return -1;  // [\w-a]
        if (last == Last::kChar) {
          if (u.kind == Tok::kChar) {
            if (!range(lastCh, u.ch)) return -1;
          } else if (u.kind == Tok::kDash) {
            if (!range(lastCh, '-')) return -1;
          } else {
            return -1;  // [a-\d]
          }
        } else {
          i_ = mark;  // a '-' right after a range is literal
          pushChar('-');
        }
      }
    }
    if (last == Last::kChar) set.add(lastCh);
    if (negate) set.flip();
    return addSet(set);
  }

  // ---- emitting -------------------------------------------------------------------------

  struct Frag {
    std::uint64_t first = 0;
    std::uint64_t last = 0;
    bool nullable = true;
  };

  void link(std::uint64_t from, std::uint64_t to) {
    for (; from != 0; from &= from - 1)
      re_.follow_[static_cast<std::size_t>(std::countr_zero(from))] |= to;
  }

  // a := a b
  void concat(Frag& a, const Frag& b) {
    link(a.last, b.first);
    a.first |= a.nullable ? b.first : 0;
    a.last = b.last | (b.nullable ? a.last : 0);
    a.nullable = a.nullable && b.nullable;
  }

  bool emit(int n, Frag& out) {
    // Nested counted repeats of empty bodies, e.g. ((){64}){64}, cost work but no positions.
    if (++work_ > kMaxWork) return false;
    const Node& node = nodes_[static_cast<std::size_t>(n)];
    out = Frag{};
    switch (node.kind) {
      case Node::kSet: {
        if (positions_ >= SimpleRegex::kMaxPositions) return false;
        const std::size_t p = positions_++;
        const std::uint64_t bit = std::uint64_t{1} << p;
        const ByteSet& s = sets_[static_cast<std::size_t>(node.set)];
        for (unsigned b = 0; b < 256; ++b) {
          if (s.has(b)) re_.byteMask_[b] |= bit;
        }
        out.first = out.last = bit;
        out.nullable = false;
        return true;
      }
      case Node::kConcat:
        for (int k : node.kids) {
          Frag f;
          if (!emit(k, f)) return false;
          concat(out, f);
        }
        return true;
      case Node::kAlt:
        out.nullable = false;
        for (int k : node.kids) {
          Frag f;
          if (!emit(k, f)) return false;
          out.first |= f.first;
          out.last |= f.last;
          out.nullable = out.nullable || f.nullable;
        }
        return true;
      case Node::kRepeat: {
        const int body = node.kids[0];
        // Mandatory copies; with no upper bound the last of them loops (a{2,} = a a+).
        const int plain = node.max < 0 && node.min > 0 ? node.min - 1 : node.min;
        for (int k = 0; k < plain; ++k) {
          Frag f;
          if (!emit(body, f)) return false;
          concat(out, f);
        }
        if (node.max < 0) {
          Frag f;
          if (!emit(body, f)) return false;
          link(f.last, f.first);
          if (node.min == 0) f.nullable = true;
          concat(out, f);
        } else {
          for (int k = node.min; k < node.max; ++k) {  // a{2,4} = a a a? a?
            Frag f;
            if (!emit(body, f)) return false;
            f.nullable = true;
            concat(out, f);
          }
        }
        return true;
      }
    }
    return false;
  }

  static constexpr long kMaxWork = 100000;

  std::string_view p_;
  std::size_t i_ = 0;
  int depth_ = 0;
  std::vector<Node> nodes_;
  std::vector<ByteSet> sets_;
  SimpleRegex re_;
  std::size_t positions_ = 0;
  long work_ = 0;
};

std::optional<SimpleRegex> SimpleRegex::compile(std::string_view pattern) {
  return SimpleRegexBuilder(pattern).build();
}

bool SimpleRegex::fullMatch(std::string_view text) const noexcept {
  if (text.empty()) return nullable_;
  const auto* it = reinterpret_cast<const unsigned char*>(text.data());
  const auto* const end = it + text.size();
  std::uint64_t cur = first_ & byteMask_[*it];
  for (++it; it != end; ++it) {
    if (cur == 0) return false;
    std::uint64_t reach = 0;
    for (std::uint64_t s = cur; s != 0; s &= s - 1)
      reach |= follow_[static_cast<std::size_t>(std::countr_zero(s))];
    cur = reach & byteMask_[*it];
  }
  return (cur & last_) != 0;
}

}  // namespace keygate::policies
