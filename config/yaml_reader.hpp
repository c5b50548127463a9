#pragma once

// Internal to config/ (it exposes yaml-cpp; never include it from a public header): the strict
// walk over one YAML document shared by the process configuration (config.cpp) and the key
// registry (registry.cpp). A document is read against static tables of fields, one table per
// section. Every problem becomes a ConfigError with file:line:column, the YAML path and a
// sentence saying how to fix it, and reading goes on, so that all errors come out at once.
// Nothing here throws on bad input; yaml-cpp's parser exceptions are caught in parse().

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "config/values.hpp"

namespace keygate::config {

// One `key: value` pair (or list item) being read. `keyMark` stands in for the value's position
// when the value is empty: yaml-cpp marks an empty value at the next token, which is usually on
// the next line.
struct Entry {
  YAML::Mark keyMark;
  YAML::Node value;
  std::string path;

  YAML::Mark at() const { return (value.IsDefined() && !value.IsNull()) ? value.Mark() : keyMark; }
};

// A key of a section and the function that reads its value into the reader's result.
template <typename Reader>
struct FieldOf {
  std::string_view name;
  void (*read)(Reader&, const Entry&);
};

template <typename Reader>
struct SectionOf {
  std::string_view name;  // "" for the top level; names the section in unknown-key hints
  std::span<const FieldOf<Reader>> fields;
  std::string_view example;
  // How an unknown-key hint says where this section's keys belong, when "under 'name:'" does
  // not fit (a list item: "in each entry of 'patterns:'"). Then the hint names the key alone.
  std::string_view where = {};
};

// "a mapping", "a list", "a single value" or "nothing".
std::string kindOf(const YAML::Node& node);

// Records `path` and every enclosing path ("upstream.seeds[1]" -> "upstream.seeds", "upstream").
void addWithParents(std::set<std::string, std::less<>>& paths, const std::string& path);

template <typename Reader>
std::string joinNames(std::span<const FieldOf<Reader>> fields) {
  std::string out;
  for (const auto& f : fields) {
    if (!out.empty()) out += ", ";
    out += f.name;
  }
  return out;
}

class YamlReader {
 public:
  YamlReader(std::string file, std::vector<ConfigError>& errors)
      : file_(std::move(file)), errors_(errors) {}

  // Parses `yaml` and keeps the text for checks yaml-cpp does not make. Reports syntax errors
  // and any second document. Returns the first document (a null node when the text has none:
  // empty or only comments), or nullopt after a syntax error.
  std::optional<YAML::Node> parse(std::string yaml);

  void report(const YAML::Mark& mark, const std::string& path, std::string message);
  // Orders the errors by position; errors without one (rare yaml-cpp null marks) go last.
  void sortErrors();

  // Each reader reports its own error and returns nullopt when the value is unusable.
  std::optional<std::string> readString(const Entry& e);
  std::optional<std::uint64_t> readUint(const Entry& e, std::uint64_t min, std::uint64_t max,
                                        std::string_view hint = {});
  std::optional<std::uint64_t> readSize(const Entry& e, std::uint64_t min, std::uint64_t max);
  std::optional<std::chrono::milliseconds> readDuration(const Entry& e,
                                                        std::chrono::milliseconds min,
                                                        std::chrono::milliseconds max);
  std::optional<HostPort> readAddress(const Entry& e);
  std::optional<std::size_t> readChoice(const Entry& e, std::span<const std::string_view> choices,
                                        std::string_view noun);
  // true or false (also True/TRUE/False/FALSE), unquoted. yes/no/on/off are refused: YAML 1.1
  // and 1.2 disagree on them.
  std::optional<bool> readBool(const Entry& e);
  // The scalar text, or nullopt after reporting that the value is missing or not a scalar.
  std::optional<std::string> scalarOf(const Entry& e, std::string_view expected);

  // Reads every key of `map` (at `prefix`) with the field of `section` of that name. Keys that
  // are not scalars, duplicates and unknown keys are errors; an unknown key gets a did-you-mean
  // hint from `section` or, failing that, from another of `all`.
  template <typename Reader>
  void walkMap(Reader& self, const YAML::Node& map, const std::string& prefix,
               const SectionOf<Reader>& section, std::span<const SectionOf<Reader>* const> all);

  const std::string& file() const { return file_; }
  bool isSet(std::string_view path) const { return located_.contains(path); }
  bool hasFailed(std::string_view path) const { return failed_.contains(path); }
  // Where `path` was set; a null mark when it was not.
  YAML::Mark markOf(std::string_view path) const;

 private:
  struct KeySet {
    std::string_view section;
    std::string_view where;
    std::vector<std::string_view> keys;
  };
  template <typename Reader>
  static KeySet keySetOf(const SectionOf<Reader>& section) {
    KeySet set{section.name, section.where, {}};
    for (const auto& f : section.fields)
      set.keys.push_back(f.name);
    return set;
  }

  // The key's name, or nullopt after reporting a non-scalar or duplicate key.
  std::optional<std::string> keyName(const YAML::Node& map, const YAML::Node& key,
                                     const std::string& prefix,
                                     std::map<std::string, int, std::less<>>& firstLine);
  void unknownKey(const YAML::Node& key, const std::string& name, const std::string& path,
                  const KeySet& section, const std::vector<KeySet>& others);
  bool unterminatedQuote(const YAML::Node& scalar) const;

  template <typename T>
  std::optional<T> take(const Entry& e, Parsed<T> parsed) {
    if (!parsed) report(e.at(), e.path, std::move(parsed.error));
    return std::move(parsed.value);
  }

  std::string file_;
  std::vector<ConfigError>& errors_;
  std::string text_;  // the document, for checks yaml-cpp does not make
  std::map<std::string, YAML::Mark, std::less<>> located_;  // path -> where it was set
  std::set<std::string, std::less<>> failed_;               // paths (and parents) in error
};

template <typename Reader>
void YamlReader::walkMap(Reader& self, const YAML::Node& map, const std::string& prefix,
                         const SectionOf<Reader>& section,
                         std::span<const SectionOf<Reader>* const> all) {
  std::map<std::string, int, std::less<>> firstLine;
  for (auto it = map.begin(); it != map.end(); ++it) {
    // Copies: yaml-cpp's iterator hands out a temporary pair, references to it dangle.
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    const auto name = keyName(map, key, prefix, firstLine);
    if (!name) continue;
    const std::string path = prefix.empty() ? *name : prefix + "." + *name;
    const auto field = std::find_if(section.fields.begin(), section.fields.end(),
                                    [&](const FieldOf<Reader>& f) { return f.name == *name; });
    if (field == section.fields.end()) {
      std::vector<KeySet> others;
      for (const auto* other : all) {
        if (other != &section) others.push_back(keySetOf(*other));
      }
      unknownKey(key, *name, path, keySetOf(section), others);
      continue;
    }
    const Entry entry{key.Mark(), value, path};
    located_.emplace(path, entry.at());
    field->read(self, entry);
  }
}

}  // namespace keygate::config
