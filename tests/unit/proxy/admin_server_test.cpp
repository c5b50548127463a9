#include "proxy/admin_server.hpp"

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <memory>
#include <vector>

#include "proxy/worker.hpp"

using namespace keygate::proxy;

namespace {
struct Fixture {
  ServerContext context;
  std::vector<std::unique_ptr<Worker>> workers;
  boost::asio::io_context io;
  Fixture() {
    context.upstream.host = "127.0.0.1";
    context.upstream.port = 6379;
    workers.push_back(std::make_unique<Worker>(0, context));
  }
};
}  // namespace

TEST_CASE("admin /healthz answers ok") {
  Fixture f;
  AdminServer admin(f.io, f.context, f.workers);
  auto r = admin.respond("GET", "/healthz");
  CHECK(r.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(r.find("\r\n\r\nok\n") != std::string::npos);
}

TEST_CASE("admin /readyz is 503 until an upstream connection is ready, and while draining") {
  Fixture f;
  AdminServer admin(f.io, f.context, f.workers);
  auto r = admin.respond("GET", "/readyz");
  CHECK(r.rfind("HTTP/1.1 503", 0) == 0);
  CHECK(r.find("127.0.0.1:6379") != std::string::npos);
  f.context.draining = true;
  CHECK(admin.respond("GET", "/readyz").find("draining") != std::string::npos);
}

TEST_CASE("admin /metrics serves the Prometheus text format with the core metrics") {
  Fixture f;
  f.context.activeClients = 3;
  WorkerStats::add(f.workers[0]->stats().commands, 42);
  WorkerStats::add(f.workers[0]->stats().commandsUnknown, 2);
  AdminServer admin(f.io, f.context, f.workers);
  auto r = admin.respond("GET", "/metrics?x=1");
  CHECK(r.rfind("HTTP/1.1 200 OK", 0) == 0);
  CHECK(r.find("text/plain; version=0.0.4") != std::string::npos);
  CHECK(r.find("keygate_client_connections 3") != std::string::npos);
  CHECK(r.find("keygate_commands_total 42") != std::string::npos);
  CHECK(r.find("keygate_commands_refused_total{reason=\"unknown_command\"} 2") !=
        std::string::npos);
  CHECK(r.find("# TYPE keygate_upstream_up gauge") != std::string::npos);
}

TEST_CASE("admin refuses other methods and unknown paths") {
  Fixture f;
  AdminServer admin(f.io, f.context, f.workers);
  CHECK(admin.respond("POST", "/metrics").rfind("HTTP/1.1 405", 0) == 0);
  CHECK(admin.respond("GET", "/nope").rfind("HTTP/1.1 404", 0) == 0);
}
