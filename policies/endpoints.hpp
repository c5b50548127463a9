#pragma once

// Endpoint profiles compiled for the request path (SPEC.md section 5, docs/endpoints.md). A
// request's profile: the one its client's name selects (CLIENT SETNAME, exact or by prefix),
// else the strictest of the profiles its keys' patterns name in failureBehavior, else the
// registry's default. "Strictest": closed over open, then the shorter timeout.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/registry.hpp"

namespace keygate::policies {

struct Endpoint {
  std::string name;
  std::chrono::milliseconds timeout{1000};
  bool open = false;  // onFailure: open
  config::RetryPolicy retries;
  config::BreakerPolicy breaker;
  std::string description;
  bool builtin = false;  // the built-in default, not from the file
};

class EndpointSet {
 public:
  // The profiles of a loaded registry (the loader has checked names and references), with the
  // built-in default appended when the file names no default.
  static EndpointSet build(const config::Registry& registry);
  // Only the built-in default (keygate runs without a registry).
  static const EndpointSet& builtinOnly();

  const std::vector<Endpoint>& all() const { return endpoints_; }
  const Endpoint& at(std::size_t i) const { return endpoints_[i]; }
  std::size_t size() const { return endpoints_.size(); }
  std::uint16_t defaultIndex() const { return default_; }
  // Index of the profile named `name`, or -1.
  int find(std::string_view name) const;
  // The profile a client name selects: an exact entry, else the longest prefix entry; -1: none.
  int forClient(std::string_view clientName) const;
  // The stricter of two profile indices (-1 is "none": the other wins).
  int stricter(int a, int b) const;

 private:
  std::vector<Endpoint> endpoints_;
  std::uint16_t default_ = 0;
  std::unordered_map<std::string, int> exact_;
  std::vector<std::pair<std::string, int>> prefixes_;  // longest first
};

// 1s budget, onFailure closed, no retries, breaker after 5 failures in a row, open for 1s.
const Endpoint& builtinEndpoint();

}  // namespace keygate::policies
