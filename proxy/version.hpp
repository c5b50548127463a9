#pragma once

namespace keygate::proxy {
inline constexpr const char* kVersion = "0.1.0";
}  // namespace keygate::proxy
