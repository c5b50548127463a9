#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace keygate::proxy {

// Counters owned by one worker thread. Only the owner writes (relaxed, uncontended); the admin
// thread reads them when Prometheus scrapes, summing across workers.
struct WorkerStats {
  using Counter = std::atomic<std::uint64_t>;

  Counter connectionsAccepted{0};
  Counter connectionsClosed{0};
  Counter commands{0};               // requests parsed from clients
  Counter commandsLocal{0};          // answered by keygate itself
  Counter commandsUnknown{0};        // refused: not a Redis 7.0 command
  Counter commandsUnsupported{0};    // refused: cannot work through a proxy
  Counter commandsArityErrors{0};    // refused: wrong number of arguments
  Counter protocolErrors{0};         // malformed client input; connection closed
  Counter backpressurePauses{0};     // client reads paused for output or pipeline limits
  Counter slowSubscribersClosed{0};  // subscribers closed for not reading their messages
  Counter upstreamConnects{0};       // successful upstream handshakes
  Counter upstreamConnectFailures{0};
  Counter upstreamDisconnects{0};    // established upstream connections lost
  Counter upstreamErrorsReplied{0};  // requests answered with UNAVAILABLE
  Counter upstreamTimeoutCloses{0};  // connections closed after timeoutsBeforeReconnect
  Counter lateReplies{0};            // replies dropped: keygate had answered at the deadline
  Counter deferredSends{0};          // upstream writes held behind a deep batch (deferSendsAbove)
  Counter dedicatedConnections{0};   // dedicated upstream connections opened
  Counter bytesFromClients{0};
  Counter bytesToClients{0};
  // cluster mode
  Counter clusterMoved{0};               // MOVED replies followed
  Counter clusterAsk{0};                 // ASK replies followed
  Counter clusterRetries{0};             // TRYAGAIN / CLUSTERDOWN retried
  Counter clusterRedirectsExhausted{0};  // redirect limit reached; the error went to the client
  Counter clusterCrossSlot{0};           // refused: keys in several slots
  Counter clusterSplits{0};              // multi-key commands split by slot
  Counter clusterFanouts{0};             // keyless commands sent to every master
  // key registry (indexes: policies::Reason)
  static constexpr std::size_t kRegistryReasons = 9;
  std::array<Counter, kRegistryReasons> registryRefused{};  // requests refused, by reason
  std::array<Counter, kRegistryReasons> registryAudited{};  // violations let through (audit)
  Counter ttlInjected{0};    // TTLs added (SET ... PX, hidden PEXPIRE NX)
  Counter ttlClamped{0};     // TTLs lowered to the pattern's max
  Counter keysRewritten{0};  // legacy keys rewritten onto their canonical pattern
  // downstream ACL (policies/acl.hpp)
  Counter aclAuthOk{0};             // AUTH / HELLO AUTH accepted
  Counter aclAuthFailed{0};         // wrong user or password
  Counter aclNoAuth{0};             // refused: not authenticated yet
  Counter aclCommandDenied{0};      // refused: command not in the user's rules
  Counter tlsHandshakeFailures{0};  // client connections closed: TLS handshake failed

  // endpoint profiles, by metric id (ServerContext::endpointNames)
  static constexpr std::size_t kMaxEndpoints = 256;
  struct EndpointCounters {
    Counter requests{0};         // requests sent (or answered) under the profile
    Counter timeouts{0};         // answered by keygate at the deadline
    Counter failures{0};         // Redis unavailable: refused, reset, LOADING, BUSY, ...
    Counter failOpen{0};         // failures answered in the shape of a miss
    Counter failClosed{0};       // failures answered with an error
    Counter breakerRejected{0};  // answered at once because the breaker was open
    Counter retries{0};          // idempotent reads sent again after a failure
    Counter breakerOpens{0};     // breakers (node x profile) that opened
    std::atomic<std::int64_t> breakersOpen{0};  // breakers open or half-open now
  };
  std::array<EndpointCounters, kMaxEndpoints> endpoints{};

  static void add(Counter& c, std::uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

}  // namespace keygate::proxy
