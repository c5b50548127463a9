#pragma once

// spdlog setup: one named logger per module ("main", "client", "upstream", "admin"), all to
// stderr, as text or one JSON object per line. Log lines never contain keys' values.

#include <string>

#include "config/config.hpp"

namespace keygate::proxy {

// Returns false if `level` is not a spdlog level name (config validation normally catches it).
bool setupLogging(const std::string& level, config::LogFormat format);

}  // namespace keygate::proxy
