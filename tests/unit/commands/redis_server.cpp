#include "redis_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace keygate::testing {
namespace {

int freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

bool exited(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) == pid;
}

}  // namespace

std::unique_ptr<RedisServer> RedisServer::start(const std::string& binary, std::string* why) {
  if (::access(binary.c_str(), X_OK) != 0) {
    *why = binary + " is not installed";
    return nullptr;
  }
  std::unique_ptr<RedisServer> server(new RedisServer());
  std::string dirTemplate =
      (std::filesystem::temp_directory_path() / "keygate-test-XXXXXX").string();
  if (::mkdtemp(dirTemplate.data()) == nullptr) {
    *why = "mkdtemp failed";
    return nullptr;
  }
  server->dir_ = dirTemplate;

  // The probed port may be taken before redis-server binds it: retry with another.
  for (int attempt = 0; attempt < 5; ++attempt) {
    server->port_ = freePort();
    const std::string port = std::to_string(server->port_);
    const std::string log = server->dir_ + "/redis.log";
    std::vector<std::string> args{
        binary, "--port", port,         "--bind",      "127.0.0.1", "--save",    "", "--appendonly",
        "no",   "--dir",  server->dir_, "--daemonize", "no",        "--logfile", log};
    std::vector<char*> argv;
    for (std::string& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      *why = "posix_spawn failed";
      return nullptr;
    }
    server->pid_ = pid;

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (exited(pid)) {
        server->pid_ = -1;
        break;
      }
      timeval timeout{1, 0};
      redisContext* c = redisConnectWithTimeout("127.0.0.1", server->port_, timeout);
      if (c != nullptr && c->err == 0) {
        auto* reply = static_cast<redisReply*>(redisCommand(c, "PING"));
        const bool up = reply != nullptr && reply->type == REDIS_REPLY_STATUS;
        if (reply != nullptr) freeReplyObject(reply);
        if (up) {
          server->conn_ = c;
          return server;
        }
      }
      if (c != nullptr) redisFree(c);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    server->stop();
  }
  std::ifstream log(server->dir_ + "/redis.log");
  std::ostringstream text;
  text << log.rdbuf();
  *why = "redis-server did not start; its log:\n" + text.str();
  return nullptr;
}

RedisServer::~RedisServer() {
  stop();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void RedisServer::stop() {
  if (conn_ != nullptr) {
    redisFree(conn_);
    conn_ = nullptr;
  }
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!exited(pid_)) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
}

std::unique_ptr<redisReply, void (*)(void*)> RedisServer::command(
    const std::vector<std::string>& argv) {
  std::vector<const char*> ptrs;
  std::vector<std::size_t> lens;
  for (const std::string& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  void* reply = redisCommandArgv(conn_, static_cast<int>(argv.size()), ptrs.data(), lens.data());
  return {static_cast<redisReply*>(reply), freeReplyObject};
}

}  // namespace keygate::testing
