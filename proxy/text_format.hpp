#pragma once

// Human-readable figures for the command-line reports (keygate check, keygate audit).

#include <cstdio>
#include <string>

namespace keygate::proxy {

// "512 B", "1.5 KiB", "3.0 MiB", ... (1024-based, one decimal above bytes).
inline std::string bytesText(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

}  // namespace keygate::proxy
