// Test tool: fetches a cluster's slot map with keygate's TopologyFetch and prints it, so the
// integration tests can compare it with what the real cluster says.
//
//   topology_probe HOST:PORT[,HOST:PORT...]
//
// Output, one line per master in address order: "master HOST:PORT slots N replicas R",
// then "covered N". On failure: "error: ..." on stderr and exit status 1.

#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "proxy/topology.hpp"

int main(int argc, char** argv) {
  using namespace keygate;
  if (argc != 2) {
    std::fprintf(stderr, "usage: topology_probe HOST:PORT[,HOST:PORT...]\n");
    return 2;
  }
  std::vector<config::HostPort> seeds;
  std::string list = argv[1];
  for (std::size_t start = 0; start <= list.size();) {
    const auto comma = list.find(',', start);
    const auto item =
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    auto seed = config::parseHostPort(item);
    if (!seed) {
      std::fprintf(stderr, "error: bad seed '%s'\n", item.c_str());
      return 2;
    }
    seeds.push_back(*seed);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  boost::asio::io_context io;
  proxy::WorkerStats stats;
  proxy::UpstreamSettings settings;
  settings.connectTimeout = std::chrono::milliseconds(1000);
  auto fetch = std::make_shared<proxy::TopologyFetch>(io, seeds, settings, stats);
  int status = 1;
  fetch->start([&](std::shared_ptr<const proxy::SlotMap> map, const std::string& error) {
    if (!map) {
      std::fprintf(stderr, "error: %s\n", error.c_str());
      return;
    }
    std::map<std::string, std::pair<int, std::size_t>> masters;  // address -> slots, replicas
    for (std::uint32_t slot = 0; slot < proxy::kClusterSlots; ++slot) {
      const auto index = map->masterIndex(static_cast<std::uint16_t>(slot));
      if (index == proxy::SlotMap::kNoNode) continue;
      auto& entry = masters[map->masters()[index].address()];
      ++entry.first;
      entry.second = map->replicasOf(index).size();
    }
    for (const auto& [address, entry] : masters) {
      std::printf("master %s slots %d replicas %zu\n", address.c_str(), entry.first, entry.second);
    }
    std::printf("covered %zu\n", proxy::kClusterSlots - map->uncoveredSlots());
    status = 0;
  });
  io.run();
  return status;
}
