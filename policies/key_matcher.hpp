#pragma once

// The registry's compiled matcher: which pattern (if any) a key belongs to, in a few lookups.
//
// No variable matches ':', so a key is a sequence of ':'-separated segments and can only match
// patterns with as many segments. Patterns are kept in one trie per segment count, one level per
// segment:
//
//   root[n segments] --"cpq"--> node --"{tenant-<tenant>}"--> node --"pricing"--> ... --> pattern
//                      exact literal segments: one hash probe (node id, segment text)
//                      other segments: a short list of per-segment matchers, each with
//                      backtracking inside the segment only (`quote-<id>-x`)
//
// A match walks the trie depth-first (literal edges first; a loop with its own stack, not
// recursion), so one match costs a hash probe or a short scan per segment, and allocates nothing
// beyond growing `captures`.
//
// build() also proves the registry unambiguous: two patterns overlap when some key matches both,
// i.e. when they have the same segment count and every pair of segments has a common run. That
// is decided exactly for literal, any, int, hex and uuid parts (a product automaton over byte
// classes, which also yields an example key). A regex variable counts as "any run without ':'",
// so overlaps involving regexes may be false alarms and say "may both match"; none are missed.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policies/key_pattern.hpp"

namespace keygate::policies {

struct PatternProblem {
  std::size_t index;             // into the input list
  std::size_t other = SIZE_MAX;  // the earlier pattern it overlaps, SIZE_MAX for a syntax error
  std::string message;
  bool uncertain = false;  // an overlap found only by treating a regex as any run
};

class KeyMatcher {
 public:
  KeyMatcher() = default;

  // Compiles `patterns`. Appends to *problems (when given) every syntax error and every pair of
  // patterns that can match the same key, reported on the later pattern with an example key.
  // With problems, the matcher still matches the patterns that parsed (an input that did not
  // parse never matches; among overlapping patterns the first found wins).
  static KeyMatcher build(const std::vector<std::string>& patterns,
                          std::vector<PatternProblem>* problems);

  // Index (into the input list) of the pattern matching `key`, or -1. `captures`, when given, is
  // cleared and on a match holds the pattern's variables in order (names view into this matcher,
  // values into `key`). Thread-safe (const).
  int match(std::string_view key, Captures* captures = nullptr) const;

  // For refusal messages: `key` with variable-looking parts shown generically: digit runs as
  // <int>, a whole-segment UUID as <uuid>, long hex runs as <hex>, mixed letter/digit tokens as
  // <?>; control and non-ASCII bytes escaped as \xNN, at most ~200 bytes. Safe to put in an
  // error reply.
  std::string shapeOf(std::string_view key) const;

  // Index of the pattern closest to `key` (most leading segments matched, then most leading
  // bytes of the next segment in common with the pattern's literal text there, then the same
  // segment count), or -1 when nothing is in common. Linear in the patterns: for refusals only.
  int closest(std::string_view key) const;

  std::size_t size() const { return patterns_.size(); }
  // Whether input `index` parsed. pattern() of an input that did not parse is an empty
  // KeyPattern (no text, no variables, matches no key).
  bool parsed(std::size_t index) const { return patterns_[index].has_value(); }
  const KeyPattern& pattern(std::size_t index) const;

 private:
  struct Edge {  // a non-literal segment: patterns_[pattern].segment(segment)
    std::uint32_t pattern;
    std::uint32_t segment;
    std::uint32_t child;
    // A segment of one variable of a plain type (any, int, hex, uuid) between two literals, as
    // most are, is matched from these (matchPlain) without a call into its KeyPattern: the
    // literals' text in arena_, the variable (its index in the pattern) and its type.
    bool plain = false;
    VarType type = VarType::kAny;
    std::uint32_t var = 0;
    std::uint32_t minSize = 0;  // prefix, suffix and the variable's shortest value
    std::uint32_t prefixOffset = 0;
    std::uint32_t prefixSize = 0;
    std::uint32_t suffixOffset = 0;
    std::uint32_t suffixSize = 0;
  };
  struct Node {
    std::int32_t terminal = -1;  // pattern index ending here (depth == segment count)
    std::uint32_t exactCount = 0;
    std::vector<Edge> others;
    std::vector<std::uint32_t> exactChildren;  // slots in exact_ (build-time overlap walks)
  };
  struct Slot {  // open addressing table of literal edges: (node, segment text) -> child
    std::uint64_t hash = 0;
    std::uint32_t node = UINT32_MAX;  // UINT32_MAX: empty
    std::uint32_t child = 0;
    std::uint32_t textOffset = 0;  // into arena_
    std::uint32_t textSize = 0;
  };

  std::int32_t findExact(std::uint32_t node, std::uint64_t hash, std::string_view text) const;
  std::uint32_t insertExact(std::uint32_t node, std::uint64_t hash, std::string_view text);
  void growExact();
  void insert(std::size_t index);
  Edge makeEdge(std::size_t index, std::size_t segment, std::uint32_t child);
  bool matchPlain(const Edge& e, std::string_view part, Captures* captures) const;
  void findOverlaps(std::size_t index, std::vector<PatternProblem>* problems) const;
  // The depth-first walk of match() from `root` over the key's `count` segments: the pattern
  // index found, or -1.
  std::int32_t walk(std::uint32_t root, const std::string_view* parts, std::size_t count,
                    Captures* captures) const;

  std::vector<std::optional<KeyPattern>> patterns_;
  std::vector<Node> nodes_;
  std::vector<std::int32_t> roots_;  // by segment count; -1 when no pattern has that many
  std::vector<Slot> exact_;          // power-of-two size
  std::size_t exactUsed_ = 0;
  std::string arena_;
};

}  // namespace keygate::policies
