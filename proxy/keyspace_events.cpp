#include "proxy/keyspace_events.hpp"

namespace keygate::proxy {

// Not subscribed yet: no series.
void appendKeyspaceFamilies(const ServerContext&, std::vector<prometheus::MetricFamily>&) {}

}  // namespace keygate::proxy
