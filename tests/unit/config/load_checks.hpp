#pragma once

// Checks shared by the config and registry loader tests: both loaders return a result with
// `errors` (ConfigError) and ok().

#include <catch2/catch.hpp>
#include <sstream>
#include <string>

#include "config/config.hpp"

namespace keygate::config::testing {

// All errors of a load result, one per line, for failure messages.
template <typename Result>
std::string dumpErrors(const Result& r) {
  std::ostringstream out;
  for (const auto& e : r.errors)
    out << e.str() << "\n";
  return out.str();
}

// Loads `yaml` with `load` and expects exactly one error, in `file` at `line`:`column` on
// `path`; returns it for checks on its message.
template <typename Load>
ConfigError expectOnlyError(Load load, const std::string& file, const std::string& yaml, int line,
                            int column, const std::string& path) {
  const auto r = load(yaml);
  INFO(yaml);
  INFO(dumpErrors(r));
  REQUIRE(r.errors.size() == 1);
  const auto& e = r.errors.front();
  CHECK(e.file == file);
  CHECK(e.line == line);
  CHECK(e.column == column);
  CHECK(e.path == path);
  CHECK_FALSE(r.ok());
  return e;
}

}  // namespace keygate::config::testing
