#pragma once

// `keygate check [--explain] FILE`: lints a key registry (exit 0 when valid, 1 when not) and
// prints, per pattern, its TTL contract, size limit, cardinality and memory budget (seed 3.3:
// maxExpectedCardinality x (value size + per-key overhead + key size)), with a warning past
// defaults.memoryBudget. With --explain it then prints what applications see when Redis is slow
// and when it is down (seed: "Redis down behavior documented per endpoint"): per endpoint
// profile, and per pattern; an invalid file prints only its errors.

#include <iosfwd>
#include <string>

namespace keygate::policies {
class CompiledRegistry;
}

namespace keygate::proxy {

int runCheckCommand(const std::string& path, std::ostream& out, std::ostream& err,
                    bool explain = false);

// The --explain part alone: plain text, aligned, and a function of the registry only (no
// clock, no environment), so the same file always explains the same way. The error texts are
// those of ClientSession::failureReply with the Redis address shown as HOST:PORT.
void writeFailureExplanation(const policies::CompiledRegistry& registry, std::ostream& out);

}  // namespace keygate::proxy
