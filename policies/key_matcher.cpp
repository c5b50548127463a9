#include "policies/key_matcher.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <tuple>

namespace keygate::policies {
namespace {

constexpr std::uint64_t kNoHash = 0;  // hashBytes() never returns it (see below)

std::uint32_t load32(const char* p) {
  std::uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

// The n < 8 bytes at p as one word, with fixed-size loads only (a memcpy of a variable size is a
// library call): two overlapping 4-byte loads, or for n < 4 the first, middle and last byte.
// Together with n it determines the bytes.
std::uint64_t shortWord(const char* p, std::size_t n) {
  if (n >= 4) return load32(p) | (static_cast<std::uint64_t>(load32(p + n - 4)) << 32);
  if (n == 0) return 0;
  return static_cast<unsigned char>(p[0]) | (static_cast<unsigned char>(p[n / 2]) << 8) |
         (static_cast<std::uint64_t>(static_cast<unsigned char>(p[n - 1])) << 16);
}

// Whether the n bytes at a and b are equal; inline for the short texts of key segments.
bool sameBytes(const char* a, const char* b, std::size_t n) {
  if (n <= 8) {
    if (n < 4) return n == 0 || shortWord(a, n) == shortWord(b, n);
    return load32(a) == load32(b) && load32(a + n - 4) == load32(b + n - 4);
  }
  return std::memcmp(a, b, n) == 0;
}

std::uint64_t hashBytes(std::string_view s) {
  std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ s.size();
  const char* p = s.data();
  std::size_t n = s.size();
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  h = (h ^ shortWord(p, n)) * 0x94d049bb133111ebULL;
  const std::uint64_t result = h ^ (h >> 32);
  return result == kNoHash ? 1 : result;
}

// The hash of a literal edge: the segment's hash (computed once per segment) and the node.
std::uint64_t edgeHash(std::uint32_t node, std::uint64_t segmentHash) {
  return segmentHash ^ ((static_cast<std::uint64_t>(node) + 1) * 0x9e3779b97f4a7c15ULL);
}

// ---- Overlap analysis: segments as automata over byte classes -------------------------------

struct ByteSet {
  std::array<std::uint64_t, 4> w{};
  void set(unsigned char c) { w[c >> 6] |= 1ULL << (c & 63); }
  bool has(unsigned char c) const { return (w[c >> 6] >> (c & 63)) & 1; }
  bool empty() const { return !(w[0] | w[1] | w[2] | w[3]); }
  ByteSet operator&(const ByteSet& o) const {
    ByteSet r;
    for (int i = 0; i < 4; ++i)
      r.w[i] = w[i] & o.w[i];
    return r;
  }
};

ByteSet rangeSet(std::string_view ranges) {  // pairs of inclusive bounds: "09afAF"
  ByteSet s;
  for (std::size_t i = 0; i + 1 < ranges.size(); i += 2) {
    for (int c = static_cast<unsigned char>(ranges[i]);
         c <= static_cast<unsigned char>(ranges[i + 1]); ++c) {
      s.set(static_cast<unsigned char>(c));
    }
  }
  return s;
}

const ByteSet kAnySet = [] {
  ByteSet s;
  for (int c = 0; c < 256; ++c) {
    if (c != ':') s.set(static_cast<unsigned char>(c));
  }
  return s;
}();
const ByteSet kDigitSet = rangeSet("09");
const ByteSet kHexSet = rangeSet("09afAF");

// Bytes in the order example keys prefer them: digits (so "a:<x>" vs "a:<y:int>" shows "a:1"),
// letters, then punctuation, then anything.
const std::array<unsigned char, 256> kExampleOrder = [] {
  std::array<unsigned char, 256> order{};
  std::array<bool, 256> used{};
  std::size_t n = 0;
  auto add = [&](int c) {
    if (!used[c]) {
      used[c] = true;
      order[n++] = static_cast<unsigned char>(c);
    }
  };
  add('1');
  for (int c = '0'; c <= '9'; ++c)
    add(c);
  for (int c = 'a'; c <= 'z'; ++c)
    add(c);
  for (int c = 'A'; c <= 'Z'; ++c)
    add(c);
  for (int c = 0x21; c < 0x7f; ++c)
    add(c);
  for (int c = 0; c < 256; ++c)
    add(c);
  return order;
}();

unsigned char exampleByte(const ByteSet& s) {
  for (unsigned char c : kExampleOrder) {
    if (s.has(c)) return c;
  }
  return 0;
}

// A segment as a chain of steps; the state after a step with `loop` may repeat that step's class
// (a variable is one class, then any more of it).
struct Step {
  ByteSet cls;
  bool loop = false;
};

std::vector<Step> stepsOf(const KeyPattern& p, std::size_t segment, bool* approximate) {
  const auto& s = p.segment(segment);
  std::vector<Step> steps;
  auto literal = [&](const std::string& text) {
    for (char c : text) {
      Step st;
      st.cls.set(static_cast<unsigned char>(c));
      steps.push_back(st);
    }
  };
  literal(s.prefix);
  for (std::size_t k = 0; k < s.vars.size(); ++k) {
    const auto& v = p.variable(s.vars[k]);
    switch (v.type) {
      case VarType::kRegex:
        *approximate = true;
        steps.push_back({kAnySet, true});
        break;
      case VarType::kAny:
        steps.push_back({kAnySet, true});
        break;
      case VarType::kInt:
        steps.push_back({kDigitSet, true});
        break;
      case VarType::kHex:
        steps.push_back({kHexSet, true});
        break;
      case VarType::kUuid:
        for (int i = 0; i < 36; ++i) {
          if (i == 8 || i == 13 || i == 18 || i == 23) {
            Step dash;
            dash.cls.set('-');
            steps.push_back(dash);
          } else {
            steps.push_back({kHexSet, false});
          }
        }
        break;
    }
    literal(s.lits[k]);
  }
  return steps;
}

bool compatibleAffixes(std::string_view a, std::string_view b, bool suffix) {
  const auto n = std::min(a.size(), b.size());
  return suffix ? a.substr(a.size() - n) == b.substr(b.size() - n)
                : a.substr(0, n) == b.substr(0, n);
}

// Whether segment `sa` of `a` and segment `sb` of `b` have a run in common; the shortest such run
// goes to *example. *approximate is set when a regex was treated as any run.
bool intersect(const KeyPattern& a, std::size_t sa, const KeyPattern& b, std::size_t sb,
               std::string* example, bool* approximate) {
  const auto& x = a.segment(sa);
  const auto& y = b.segment(sb);
  if (!compatibleAffixes(x.prefix, y.prefix, false)) return false;
  const std::string& xs = x.literal() ? x.prefix : x.lits.back();
  const std::string& ys = y.literal() ? y.prefix : y.lits.back();
  if (!compatibleAffixes(xs, ys, true)) return false;

  bool approx = false;
  const auto s1 = stepsOf(a, sa, &approx);
  const auto s2 = stepsOf(b, sb, &approx);
  const std::size_t m1 = s1.size(), m2 = s2.size();
  const std::size_t width = m2 + 1;
  const std::size_t states = (m1 + 1) * width;
  constexpr std::size_t kNone = SIZE_MAX;
  std::vector<std::size_t> parent(states, kNone);
  std::vector<unsigned char> via(states, 0);
  std::vector<std::size_t> queue;
  queue.reserve(states);
  parent[0] = 0;
  queue.push_back(0);
  const std::size_t goal = m1 * width + m2;
  auto moves = [](const std::vector<Step>& st, std::size_t at,
                  std::array<std::pair<const ByteSet*, std::size_t>, 2>& out) {
    std::size_t n = 0;
    if (at < st.size()) out[n++] = {&st[at].cls, at + 1};
    if (at > 0 && st[at - 1].loop) out[n++] = {&st[at - 1].cls, at};
    return n;
  };
  for (std::size_t qi = 0; qi < queue.size() && parent[goal] == kNone; ++qi) {
    const std::size_t state = queue[qi];
    const std::size_t i = state / width, j = state % width;
    std::array<std::pair<const ByteSet*, std::size_t>, 2> ma, mb;
    const auto na = moves(s1, i, ma);
    const auto nb = moves(s2, j, mb);
    for (std::size_t u = 0; u < na; ++u) {
      for (std::size_t v = 0; v < nb; ++v) {
        const std::size_t next = ma[u].second * width + mb[v].second;
        if (parent[next] != kNone) continue;
        const ByteSet both = *ma[u].first & *mb[v].first;
        if (both.empty()) continue;
        parent[next] = state;
        via[next] = exampleByte(both);
        queue.push_back(next);
      }
    }
  }
  if (parent[goal] == kNone) return false;
  std::string run;
  for (std::size_t st = goal; st != 0; st = parent[st])
    run.push_back(static_cast<char>(via[st]));
  std::reverse(run.begin(), run.end());
  *example = std::move(run);
  if (approx) *approximate = true;
  return true;
}

// Splits `key` at ':' into at most `limit` parts; returns the count, or limit + 1 when more.
// Scans 8 bytes at a time (keys are mostly short segments, where a memchr call per segment
// costs more than the scan).
std::size_t splitKey(std::string_view key, std::string_view* parts, std::size_t limit) {
  constexpr std::uint64_t kColons = 0x3a3a3a3a3a3a3a3aULL;
  constexpr std::uint64_t kLow7 = 0x7f7f7f7f7f7f7f7fULL;
  const char* data = key.data();
  const std::size_t size = key.size();
  std::size_t count = 0;
  std::size_t start = 0;
  auto colonAt = [&](std::size_t at) {
    if (count == limit) return false;
    parts[count++] = std::string_view(data + start, at - start);
    start = at + 1;
    return true;
  };
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, data + i, 8);
    const std::uint64_t t = w ^ kColons;                        // zero bytes where ':' was
    std::uint64_t zero = ~(((t & kLow7) + kLow7) | t | kLow7);  // 0x80 exactly in those bytes
    while (zero) {
      if (!colonAt(i + static_cast<std::size_t>(__builtin_ctzll(zero)) / 8)) return limit + 1;
      zero &= zero - 1;
    }
  }
  for (; i < size; ++i) {
    if (data[i] == ':' && !colonAt(i)) return limit + 1;
  }
  if (count == limit) return limit + 1;
  parts[count++] = std::string_view(data + start, size - start);
  return count;
}

bool isUuidText(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < 36; ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

bool isAsciiAlnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool isAsciiDigit(char c) {
  return c >= '0' && c <= '9';
}

std::string shapeToken(std::string_view t) {
  std::size_t letters = 0;
  while (letters < t.size() && !isAsciiDigit(t[letters]))
    ++letters;
  if (letters == t.size()) return std::string(t);  // a word: keep it
  std::size_t digitsEnd = letters;
  while (digitsEnd < t.size() && isAsciiDigit(t[digitsEnd]))
    ++digitsEnd;
  if (digitsEnd == t.size()) return std::string(t.substr(0, letters)) + "<int>";  // q100, v2
  const bool hex = t.size() >= 8 && std::all_of(t.begin(), t.end(), [](char c) {
                     return std::isxdigit(static_cast<unsigned char>(c)) != 0;
                   });
  return hex ? "<hex>" : "<?>";
}

}  // namespace

// ---- Build --------------------------------------------------------------------------------------

std::int32_t KeyMatcher::findExact(std::uint32_t node, std::uint64_t hash,
                                   std::string_view text) const {
  if (exact_.empty()) return -1;
  const std::uint64_t h = edgeHash(node, hash);
  const std::size_t mask = exact_.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& s = exact_[i];
    if (s.node == UINT32_MAX) return -1;
    if (s.hash == h && s.node == node && s.textSize == text.size() &&
        sameBytes(arena_.data() + s.textOffset, text.data(), text.size())) {
      return static_cast<std::int32_t>(s.child);
    }
  }
}

void KeyMatcher::growExact() {
  std::vector<Slot> old = std::move(exact_);
  exact_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
  const std::size_t mask = exact_.size() - 1;
  for (const Slot& s : old) {
    if (s.node == UINT32_MAX) continue;
    std::size_t i = s.hash & mask;
    while (exact_[i].node != UINT32_MAX)
      i = (i + 1) & mask;
    exact_[i] = s;
  }
  // Slot positions moved: rebuild each node's list of literal edges.
  for (auto& n : nodes_)
    n.exactChildren.clear();
  for (std::size_t i = 0; i < exact_.size(); ++i) {
    if (exact_[i].node != UINT32_MAX) {
      nodes_[exact_[i].node].exactChildren.push_back(static_cast<std::uint32_t>(i));
    }
  }
}

std::uint32_t KeyMatcher::insertExact(std::uint32_t node, std::uint64_t hash,
                                      std::string_view text) {
  if ((exactUsed_ + 1) * 2 > exact_.size()) growExact();
  const auto child = static_cast<std::uint32_t>(nodes_.size());
  nodes_.emplace_back();
  Slot slot;
  slot.hash = edgeHash(node, hash);
  slot.node = node;
  slot.child = child;
  slot.textOffset = static_cast<std::uint32_t>(arena_.size());
  slot.textSize = static_cast<std::uint32_t>(text.size());
  arena_.append(text);
  const std::size_t mask = exact_.size() - 1;
  std::size_t i = slot.hash & mask;
  while (exact_[i].node != UINT32_MAX)
    i = (i + 1) & mask;
  exact_[i] = slot;
  ++exactUsed_;
  ++nodes_[node].exactCount;
  nodes_[node].exactChildren.push_back(static_cast<std::uint32_t>(i));
  return child;
}

KeyMatcher::Edge KeyMatcher::makeEdge(std::size_t index, std::size_t segment, std::uint32_t child) {
  Edge e;
  e.pattern = static_cast<std::uint32_t>(index);
  e.segment = static_cast<std::uint32_t>(segment);
  e.child = child;
  const KeyPattern& p = *patterns_[index];
  const auto& s = p.segment(segment);
  if (s.vars.size() != 1 || p.variable(s.vars[0]).type == VarType::kRegex) return e;
  e.plain = true;
  e.type = p.variable(s.vars[0]).type;
  e.var = s.vars[0];
  e.minSize = static_cast<std::uint32_t>(s.minSize);
  e.prefixOffset = static_cast<std::uint32_t>(arena_.size());
  e.prefixSize = static_cast<std::uint32_t>(s.prefix.size());
  arena_.append(s.prefix);
  e.suffixOffset = static_cast<std::uint32_t>(arena_.size());
  e.suffixSize = static_cast<std::uint32_t>(s.lits.back().size());
  arena_.append(s.lits.back());
  return e;
}

void KeyMatcher::insert(std::size_t index) {
  const KeyPattern& p = *patterns_[index];
  const std::size_t count = p.segmentCount();
  if (roots_.size() <= count) roots_.resize(count + 1, -1);
  if (roots_[count] < 0) {
    roots_[count] = static_cast<std::int32_t>(nodes_.size());
    nodes_.emplace_back();
  }
  auto node = static_cast<std::uint32_t>(roots_[count]);
  for (std::size_t d = 0; d < count; ++d) {
    const auto& seg = p.segment(d);
    if (seg.literal()) {
      const auto h = hashBytes(seg.prefix);
      const auto child = findExact(node, h, seg.prefix);
      node = child >= 0 ? static_cast<std::uint32_t>(child) : insertExact(node, h, seg.prefix);
      continue;
    }
    const auto raw = p.rawSegment(d);
    std::int64_t next = -1;
    for (const Edge& e : nodes_[node].others) {
      if (patterns_[e.pattern]->rawSegment(e.segment) == raw) {
        next = e.child;
        break;
      }
    }
    if (next < 0) {
      next = static_cast<std::int64_t>(nodes_.size());
      nodes_.emplace_back();
      nodes_[node].others.push_back(makeEdge(index, d, static_cast<std::uint32_t>(next)));
    }
    node = static_cast<std::uint32_t>(next);
  }
  if (nodes_[node].terminal < 0) nodes_[node].terminal = static_cast<std::int32_t>(index);
}

void KeyMatcher::findOverlaps(std::size_t index, std::vector<PatternProblem>* problems) const {
  const KeyPattern& p = *patterns_[index];
  const std::size_t count = p.segmentCount();
  if (roots_.size() <= count || roots_[count] < 0) return;
  std::vector<std::string> example(count);  // the common run found at each depth so far

  auto report = [&](std::size_t other, bool uncertain) {
    std::string key;
    for (std::size_t d = 0; d < count; ++d) {
      if (d) key.push_back(':');
      key += example[d];
    }
    const KeyPattern& q = *patterns_[other];
    if (uncertain && q.match(key) && p.match(key)) uncertain = false;
    PatternProblem problem{index, other, {}, uncertain};
    if (uncertain) {
      problem.message = "patterns '" + q.text() + "' and '" + p.text() +
                        "' may both match the same key (regex variables are compared as any run "
                        "without ':', e.g. '" +
                        key + "'); make one of them more specific";
    } else {
      problem.message = "patterns '" + q.text() + "' and '" + p.text() + "' both match '" + key +
                        "'; make one of them more specific";
    }
    problems->push_back(std::move(problem));
  };

  auto visit = [&](auto& self, std::uint32_t node, std::size_t depth, bool uncertain) -> void {
    const Node& n = nodes_[node];
    if (depth == count) {
      if (n.terminal >= 0) report(static_cast<std::size_t>(n.terminal), uncertain);
      return;
    }
    const auto& seg = p.segment(depth);
    if (seg.literal()) {
      const auto child = findExact(node, hashBytes(seg.prefix), seg.prefix);
      if (child >= 0) {
        example[depth] = seg.prefix;
        self(self, static_cast<std::uint32_t>(child), depth + 1, uncertain);
      }
      for (const Edge& e : n.others) {
        if (patterns_[e.pattern]->matchSegment(e.segment, seg.prefix, nullptr)) {
          example[depth] = seg.prefix;
          self(self, e.child, depth + 1, uncertain);
        }
      }
      return;
    }
    for (const std::uint32_t slot : n.exactChildren) {
      const Slot& s = exact_[slot];
      const std::string_view text(arena_.data() + s.textOffset, s.textSize);
      if (p.matchSegment(depth, text, nullptr)) {
        example[depth] = std::string(text);
        self(self, s.child, depth + 1, uncertain);
      }
    }
    for (const Edge& e : n.others) {
      std::string run;
      bool approximate = false;
      if (intersect(p, depth, *patterns_[e.pattern], e.segment, &run, &approximate)) {
        example[depth] = std::move(run);
        self(self, e.child, depth + 1, uncertain || approximate);
      }
    }
  };
  visit(visit, static_cast<std::uint32_t>(roots_[count]), 0, false);
}

KeyMatcher KeyMatcher::build(const std::vector<std::string>& patterns,
                             std::vector<PatternProblem>* problems) {
  KeyMatcher m;
  m.patterns_.resize(patterns.size());
  std::vector<PatternProblem> local;
  auto* out = problems ? problems : &local;
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    std::string error;
    m.patterns_[i] = KeyPattern::parse(patterns[i], &error);
    if (!m.patterns_[i]) {
      out->push_back({i, SIZE_MAX, "pattern '" + patterns[i] + "': " + error});
      continue;
    }
    m.findOverlaps(i, out);
    m.insert(i);
  }
  return m;
}

const KeyPattern& KeyMatcher::pattern(std::size_t index) const {
  static const KeyPattern kEmpty;
  return patterns_[index] ? *patterns_[index] : kEmpty;
}

// ---- Match --------------------------------------------------------------------------------------

// KeyPattern::matchSegment for a plain edge.
inline bool KeyMatcher::matchPlain(const Edge& e, std::string_view part, Captures* captures) const {
  if (part.size() < e.minSize) return false;  // minSize covers the prefix and the suffix
  const char* p = part.data();
  if (!sameBytes(p, arena_.data() + e.prefixOffset, e.prefixSize) ||
      !sameBytes(p + part.size() - e.suffixSize, arena_.data() + e.suffixOffset, e.suffixSize)) {
    return false;
  }
  const std::string_view value(p + e.prefixSize, part.size() - e.prefixSize - e.suffixSize);
  if (!detail::fitsPlain(e.type, value)) return false;
  if (captures) captures->push_back({patterns_[e.pattern]->variableName(e.var), value});
  return true;
}

std::int32_t KeyMatcher::walk(std::uint32_t root, const std::string_view* parts, std::size_t count,
                              Captures* captures) const {
  // One frame per depth: the node, and the next way down from it to try (0: none tried yet, 1:
  // the literal edge was, k + 1: others[k] is next); mark: the size of `captures` when the walk
  // reached the node, restored when it comes back up to try another way. Left uninitialised: a
  // frame is written before it is read.
  struct Frame {
    std::uint32_t node;
    std::uint32_t next;
    std::size_t mark;
  };
  Frame stack[kMaxSegments + 1];
  // A segment's hash, computed when a node with literal edges first needs it (bit d of `hashed`:
  // hashes[d] is set); it depends on the segment only, so backtracking reuses it.
  static_assert(kMaxSegments <= 64);
  std::uint64_t hashes[kMaxSegments];
  std::uint64_t hashed = 0;
  std::size_t depth = 0;
  stack[0].node = root;
  stack[0].next = 0;
  while (true) {
    Frame& f = stack[depth];
    const Node& n = nodes_[f.node];
    std::int64_t child = -1;
    if (depth == count) {
      if (n.terminal >= 0) return n.terminal;
    } else {
      const std::string_view part = parts[depth];
      if (f.next == 0) {
        f.next = 1;
        f.mark = captures ? captures->size() : 0;
        if (n.exactCount) {
          if ((hashed >> depth & 1) == 0) {
            hashes[depth] = hashBytes(part);
            hashed |= std::uint64_t{1} << depth;
          }
          child = findExact(f.node, hashes[depth], part);
        }
      }
      while (child < 0 && f.next <= n.others.size()) {
        const Edge& e = n.others[f.next - 1];
        ++f.next;
        // matchSegment leaves `captures` as it was when it fails.
        if (e.plain ? matchPlain(e, part, captures)
                    : patterns_[e.pattern]->matchSegment(e.segment, part, captures)) {
          child = e.child;
        }
      }
    }
    if (child >= 0) {
      Frame& down = stack[++depth];
      down.node = static_cast<std::uint32_t>(child);
      down.next = 0;
      continue;
    }
    // Nothing (more) below this frame: back up to its parent, undoing the parent's edge.
    if (depth == 0) return -1;
    --depth;
    if (captures) captures->resize(stack[depth].mark);
  }
}

int KeyMatcher::match(std::string_view key, Captures* captures) const {
  if (captures) captures->clear();
  if (roots_.empty()) return -1;
  // Left uninitialised (a std::array of string_views would zero 1 KiB per match): splitKey
  // writes the first `count` entries, and only those are read.
  union Parts {
    Parts() {}
    std::string_view at[kMaxSegments];
  } parts;
  const std::size_t limit = roots_.size() - 1;
  const std::size_t count = splitKey(key, parts.at, limit);
  if (count > limit || roots_[count] < 0) return -1;
  const std::int32_t found =
      walk(static_cast<std::uint32_t>(roots_[count]), parts.at, count, captures);
  if (found < 0 && captures) captures->clear();
  return found;
}

// ---- Refusal helpers ----------------------------------------------------------------------------

std::string KeyMatcher::shapeOf(std::string_view key) const {
  constexpr std::size_t kMaxShape = 200;
  std::string out;
  std::size_t start = 0;
  while (start <= key.size() && out.size() < kMaxShape) {
    auto colon = key.find(':', start);
    if (colon == std::string_view::npos) colon = key.size();
    const auto seg = key.substr(start, colon - start);
    if (start > 0) out.push_back(':');
    if (isUuidText(seg)) {
      out += "<uuid>";
    } else {
      for (std::size_t i = 0; i < seg.size() && out.size() < kMaxShape;) {
        if (isAsciiAlnum(seg[i])) {
          std::size_t j = i;
          while (j < seg.size() && isAsciiAlnum(seg[j]))
            ++j;
          out += shapeToken(seg.substr(i, j - i));
          i = j;
          continue;
        }
        const auto c = static_cast<unsigned char>(seg[i]);
        if (c < 0x20 || c >= 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\x";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.push_back(static_cast<char>(c));
        }
        ++i;
      }
    }
    start = colon + 1;
  }
  if (out.size() >= kMaxShape || start <= key.size()) {
    out.resize(std::min(out.size(), kMaxShape));
    out += "...";
  }
  return out;
}

int KeyMatcher::closest(std::string_view key) const {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const auto colon = key.find(':', start);
    if (colon == std::string_view::npos) {
      parts.push_back(key.substr(start));
      break;
    }
    parts.push_back(key.substr(start, colon - start));
    start = colon + 1;
  }
  int best = -1;
  std::tuple<std::size_t, std::size_t, bool> bestScore{0, 0, false};
  for (std::size_t i = 0; i < patterns_.size(); ++i) {
    if (!patterns_[i]) continue;
    const KeyPattern& p = *patterns_[i];
    const std::size_t common = std::min(parts.size(), p.segmentCount());
    std::size_t d = 0;
    while (d < common && p.matchSegment(d, parts[d], nullptr))
      ++d;
    std::size_t chars = 0;
    if (d < common) {
      const std::string_view lit = p.segment(d).prefix;
      const std::string_view part = parts[d];
      while (chars < lit.size() && chars < part.size() && lit[chars] == part[chars])
        ++chars;
    }
    if (d == 0 && chars == 0) continue;
    const std::tuple<std::size_t, std::size_t, bool> score{d, chars,
                                                           parts.size() == p.segmentCount()};
    if (best < 0 || score > bestScore) {
      best = static_cast<int>(i);
      bestScore = score;
    }
  }
  return best;
}

}  // namespace keygate::policies
