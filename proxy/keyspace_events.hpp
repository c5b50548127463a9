#pragma once

// Evictions and expiries per key pattern, from Redis keyspace notifications (issue 6).

#include <prometheus/metric_family.h>

#include <vector>

#include "proxy/worker.hpp"

namespace keygate::proxy {

// keygate_pattern_evictions_total, keygate_pattern_expirations_total,
// keygate_keyspace_notifications_enabled{node}.
void appendKeyspaceFamilies(const ServerContext& context,
                            std::vector<prometheus::MetricFamily>& out);

}  // namespace keygate::proxy
