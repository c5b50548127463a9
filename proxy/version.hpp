#pragma once

namespace keygate::proxy {
// From project(VERSION ...) in the top-level CMakeLists.txt, the one place it is set.
inline constexpr const char* kVersion = KEYGATE_VERSION;
}  // namespace keygate::proxy
