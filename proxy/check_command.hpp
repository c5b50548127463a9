#pragma once

// `keygate check FILE`: lints a key registry (exit 0 when valid, 1 when not) and prints, per
// pattern, its TTL contract, size limit, cardinality and memory budget (seed 3.3:
// maxExpectedCardinality x (value size + per-key overhead + key size)), with a warning past
// defaults.memoryBudget.

#include <iosfwd>
#include <string>

namespace keygate::proxy {

int runCheckCommand(const std::string& path, std::ostream& out, std::ostream& err);

}  // namespace keygate::proxy
