#include "policies/endpoints.hpp"

#include <algorithm>

namespace keygate::policies {

const Endpoint& builtinEndpoint() {
  static const Endpoint endpoint = [] {
    Endpoint e;
    e.name = "default";
    e.timeout = std::chrono::milliseconds(1000);
    e.open = false;
    e.description = "built-in default: 1s budget, fails closed";
    e.builtin = true;
    return e;
  }();
  return endpoint;
}

EndpointSet EndpointSet::build(const config::Registry& registry) {
  EndpointSet set;
  for (const auto& p : registry.endpoints) {
    Endpoint e;
    e.name = p.name;
    e.timeout = p.timeout;
    e.open = p.onFailure == config::OnFailure::kOpen;
    e.retries = p.retries;
    e.breaker = p.breaker;
    e.description = p.description;
    const int index = static_cast<int>(set.endpoints_.size());
    for (const auto& client : p.clients) {
      if (!client.empty() && client.back() == '*') {
        set.prefixes_.emplace_back(client.substr(0, client.size() - 1), index);
      } else {
        set.exact_.emplace(client, index);
      }
    }
    set.endpoints_.push_back(std::move(e));
  }
  std::stable_sort(set.prefixes_.begin(), set.prefixes_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  int chosen = -1;
  if (!registry.defaults.endpoint.empty()) chosen = set.find(registry.defaults.endpoint);
  if (chosen < 0) chosen = set.find("default");
  if (chosen < 0) {
    chosen = static_cast<int>(set.endpoints_.size());
    set.endpoints_.push_back(builtinEndpoint());
  }
  set.default_ = static_cast<std::uint16_t>(chosen);
  return set;
}

const EndpointSet& EndpointSet::builtinOnly() {
  static const EndpointSet set = [] {
    EndpointSet s;
    s.endpoints_.push_back(builtinEndpoint());
    return s;
  }();
  return set;
}

int EndpointSet::find(std::string_view name) const {
  for (std::size_t i = 0; i < endpoints_.size(); ++i) {
    if (endpoints_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

int EndpointSet::forClient(std::string_view clientName) const {
  if (clientName.empty()) return -1;
  if (!exact_.empty()) {
    auto it = exact_.find(std::string(clientName));
    if (it != exact_.end()) return it->second;
  }
  for (const auto& [prefix, index] : prefixes_) {
    if (clientName.starts_with(prefix)) return index;
  }
  return -1;
}

int EndpointSet::stricter(int a, int b) const {
  if (a < 0) return b;
  if (b < 0 || a == b) return a;
  const Endpoint& x = endpoints_[static_cast<std::size_t>(a)];
  const Endpoint& y = endpoints_[static_cast<std::size_t>(b)];
  if (x.open != y.open) return x.open ? b : a;
  if (x.timeout != y.timeout) return x.timeout < y.timeout ? a : b;
  return std::min(a, b);
}

}  // namespace keygate::policies
