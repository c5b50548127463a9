#pragma once

// A throwaway redis-server for tests: loopback only, a free port, its own temp dir, no
// persistence. Started with posix_spawn, stopped by PID (SIGTERM, then SIGKILL) on destruction.

#include <hiredis/hiredis.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace keygate::testing {

class RedisServer {
 public:
  // Starts `binary`; nullptr (with the reason in *why) if it is missing or does not come up.
  static std::unique_ptr<RedisServer> start(const std::string& binary, std::string* why);

  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }

  // Sends argv as one command on the test's connection; the reply is owned by the caller.
  std::unique_ptr<redisReply, void (*)(void*)> command(const std::vector<std::string>& argv);

 private:
  RedisServer() = default;
  void stop();

  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
  redisContext* conn_ = nullptr;
};

}  // namespace keygate::testing
