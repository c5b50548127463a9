#pragma once

// The registry loader under test, as the registry tests call it: text loaded as file "r.yaml".

#include <string>

#include "config/registry.hpp"
#include "tests/unit/config/load_checks.hpp"

namespace keygate::config::testing {

inline RegistryLoadResult loadRegistry(const std::string& yaml) {
  return loadRegistryText(yaml, "r.yaml");
}

// Loads `yaml` and expects exactly one error at `line`:`column` on `path`.
inline ConfigError onlyRegistryError(const std::string& yaml, int line, int column,
                                     const std::string& path) {
  return expectOnlyError(loadRegistry, "r.yaml", yaml, line, column, path);
}

}  // namespace keygate::config::testing
