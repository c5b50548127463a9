#include "config/yaml_reader.hpp"

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <utility>

namespace keygate::config {

namespace {

constexpr std::string_view kYamlStrTag = "tag:yaml.org,2002:str";

bool isQuoted(const YAML::Node& scalar) {
  // A quoted "4" is a string in YAML; accepting it as a number would hide a templating mistake.
  const std::string& tag = scalar.Tag();
  return tag == "!" || tag == kYamlStrTag;
}

std::string joinKeys(const std::vector<std::string_view>& keys) {
  std::string out;
  for (const auto k : keys) {
    if (!out.empty()) out += ", ";
    out += k;
  }
  return out;
}

}  // namespace

std::string kindOf(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a single value";
    default:
      return "nothing";
  }
}

void addWithParents(std::set<std::string, std::less<>>& paths, const std::string& path) {
  paths.insert(path);
  for (std::size_t i = path.size(); i-- > 0;) {
    if (path[i] == '.' || path[i] == '[') paths.insert(path.substr(0, i));
  }
}

std::optional<YAML::Node> YamlReader::parse(std::string yaml) {
  text_ = std::move(yaml);
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text_);
  } catch (const YAML::ParserException& e) {
    report(e.mark, "",
           "YAML syntax error: " + e.msg + "; check the indentation, quotes and brackets here");
    return std::nullopt;
  }
  // An empty file, or one holding only comments, has no document.
  if (docs.empty() || docs.front().IsNull()) return YAML::Node(YAML::NodeType::Null);
  for (std::size_t i = 1; i < docs.size(); ++i) {
    if (docs[i].IsNull()) continue;
    report(docs[i].Mark(), "",
           "a second YAML document starts here; keygate reads one document, so merge it into "
           "the first and remove the '---' separator");
  }
  return docs.front();
}

void YamlReader::report(const YAML::Mark& mark, const std::string& path, std::string message) {
  ConfigError error;
  error.file = file_;
  if (!mark.is_null()) {
    error.line = mark.line + 1;
    error.column = mark.column + 1;
  }
  error.path = path;
  error.message = std::move(message);
  errors_.push_back(std::move(error));
  if (!path.empty()) addWithParents(failed_, path);
}

void YamlReader::sortErrors() {
  std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
    const auto key = [](const ConfigError& e) {
      return std::pair(e.line == 0 ? std::numeric_limits<int>::max() : e.line, e.column);
    };
    return key(a) < key(b);
  });
}

YAML::Mark YamlReader::markOf(std::string_view path) const {
  const auto it = located_.find(path);
  return it != located_.end() ? it->second : YAML::Mark::null_mark();
}

std::optional<std::string> YamlReader::keyName(const YAML::Node& map, const YAML::Node& key,
                                               const std::string& prefix,
                                               std::map<std::string, int, std::less<>>& firstLine) {
  if (!key.IsScalar()) {
    const YAML::Mark mark = key.IsNull() ? map.Mark() : key.Mark();
    report(mark, prefix,
           "keys must be plain names, got " + kindOf(key) + "; write 'name: value' pairs");
    return std::nullopt;
  }
  const std::string& name = key.Scalar();
  const auto [first, inserted] = firstLine.emplace(name, key.Mark().line + 1);
  if (!inserted) {
    report(key.Mark(), prefix.empty() ? name : prefix + "." + name,
           "duplicate key '" + name + "' (first set on line " + std::to_string(first->second) +
               "); keep only one of them");
    return std::nullopt;
  }
  return name;
}

void YamlReader::unknownKey(const YAML::Node& key, const std::string& name, const std::string& path,
                            const KeySet& section, const std::vector<KeySet>& others) {
  std::string message = "unknown key '" + name + "'; ";
  if (const auto near = closestMatch(name, section.keys)) {
    report(key.Mark(), path, message + "did you mean '" + std::string(*near) + "'?");
    return;
  }
  // A known key in the wrong section ("address" at the top level) is a common slip.
  for (const KeySet& other : others) {
    if (const auto near = closestMatch(name, other.keys)) {
      std::string where;
      std::string full;
      if (!other.where.empty()) {
        where = other.where;
        full = *near;
      } else if (other.section.empty()) {
        where = "at the top level";
        full = *near;
      } else {
        where = "under '" + std::string(other.section) + ":'";
        full = std::string(other.section) + "." + std::string(*near);
      }
      report(key.Mark(), path,
             message + "did you mean '" + full + "'? That key belongs " + where + ".");
      return;
    }
  }
  report(key.Mark(), path, message + "remove it, or use one of: " + joinKeys(section.keys) + ".");
}

// yaml-cpp 0.7 accepts a quoted scalar whose closing quote is missing when the file ends in a
// newline: the value silently runs to the end of the file and swallows every key after it.
bool YamlReader::unterminatedQuote(const YAML::Node& scalar) const {
  if (scalar.Tag() != "!") return false;
  const YAML::Mark mark = scalar.Mark();
  if (mark.is_null() || mark.pos < 0 || static_cast<std::size_t>(mark.pos) >= text_.size()) {
    return false;
  }
  const char quote = text_[static_cast<std::size_t>(mark.pos)];
  if (quote != '"' && quote != '\'') return false;
  for (std::size_t i = static_cast<std::size_t>(mark.pos) + 1; i < text_.size(); ++i) {
    const char c = text_[i];
    if (quote == '"' && c == '\\') {
      ++i;  // an escaped character, possibly a quote
    } else if (c == quote) {
      if (quote == '\'' && i + 1 < text_.size() && text_[i + 1] == '\'') {
        ++i;  // '' is a single quote inside a single-quoted scalar
        continue;
      }
      return false;
    }
  }
  return true;
}

std::optional<std::string> YamlReader::scalarOf(const Entry& e, std::string_view expected) {
  if (!e.value.IsDefined() || e.value.IsNull()) {
    report(e.at(), e.path, "missing value; expected " + std::string(expected));
    return std::nullopt;
  }
  if (!e.value.IsScalar()) {
    report(e.at(), e.path,
           "expected " + std::string(expected) + ", got " + kindOf(e.value) +
               "; write a single value");
    return std::nullopt;
  }
  if (unterminatedQuote(e.value)) {
    report(e.at(), e.path,
           "YAML syntax error: this quoted value has no closing quote, so it runs to the end of "
           "the file; add the closing quote");
    return std::nullopt;
  }
  return e.value.Scalar();
}

std::optional<std::string> YamlReader::readString(const Entry& e) {
  return scalarOf(e, "a string (quote it if it contains ':' or '#')");
}

std::optional<std::uint64_t> YamlReader::readUint(const Entry& e, std::uint64_t min,
                                                  std::uint64_t max, std::string_view hint) {
  const std::string expected =
      "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  const auto text = scalarOf(e, expected);
  if (!text) return std::nullopt;
  if (isQuoted(e.value)) {
    report(e.at(), e.path,
           "expected " + expected + ", got the quoted string \"" + *text + "\"; remove the quotes");
    return std::nullopt;
  }
  return take(e, parseUnsignedIn(*text, min, max, hint));
}

std::optional<std::uint64_t> YamlReader::readSize(const Entry& e, std::uint64_t min,
                                                  std::uint64_t max) {
  const auto text = scalarOf(e, "a size such as 65536, 64KiB or 16MiB");
  if (!text) return std::nullopt;
  return take(e, parseSizeIn(*text, min, max));
}

std::optional<std::chrono::milliseconds> YamlReader::readDuration(const Entry& e,
                                                                  std::chrono::milliseconds min,
                                                                  std::chrono::milliseconds max) {
  const auto text = scalarOf(e, "a duration such as 500ms or 10s");
  if (!text) return std::nullopt;
  return take(e, parseDurationIn(*text, min, max));
}

std::optional<HostPort> YamlReader::readAddress(const Entry& e) {
  const auto text = scalarOf(e, "a HOST:PORT address such as 127.0.0.1:6380");
  if (!text) return std::nullopt;
  return take(e, parseAddress(*text));
}

std::optional<std::size_t> YamlReader::readChoice(const Entry& e,
                                                  std::span<const std::string_view> choices,
                                                  std::string_view noun) {
  std::string expected = "one of";
  for (const auto c : choices)
    expected += " " + std::string(c);
  const auto text = scalarOf(e, expected);
  if (!text) return std::nullopt;
  return take(e, parseChoice(*text, choices, noun));
}

std::optional<bool> YamlReader::readBool(const Entry& e) {
  const auto text = scalarOf(e, "true or false");
  if (!text) return std::nullopt;
  if (isQuoted(e.value)) {
    report(e.at(), e.path,
           "expected true or false, got the quoted string \"" + *text + "\"; remove the quotes");
    return std::nullopt;
  }
  if (*text == "true" || *text == "True" || *text == "TRUE") return true;
  if (*text == "false" || *text == "False" || *text == "FALSE") return false;
  report(e.at(), e.path, "expected true or false, got '" + *text + "'; write true or false");
  return std::nullopt;
}

std::optional<std::string> readTextFile(const std::string& path, std::string& text) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return "it is a directory";
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::generic_category().message(errno);
  text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) return "read failed";
  return std::nullopt;
}

}  // namespace keygate::config
