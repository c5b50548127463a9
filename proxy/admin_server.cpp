#include "proxy/admin_server.hpp"

#include <openssl/crypto.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "proxy/listener.hpp"
#include "proxy/sketch_report.hpp"

namespace keygate::proxy {

namespace {

constexpr std::size_t kMaxRequestBytes = 8192;

std::string httpResponse(int status, std::string_view reason, std::string_view contentType,
                         std::string_view body) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  out += "Content-Type: " + std::string(contentType) + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "Connection: close\r\n\r\n";
  out += body;
  return out;
}

// The value of header `name` (case-insensitive) in `head`, or empty.
std::string_view headerValue(std::string_view head, std::string_view name) {
  std::size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    const std::size_t start = pos + 2;
    const std::size_t end = head.find("\r\n", start);
    const std::string_view line =
        head.substr(start, (end == std::string_view::npos ? head.size() : end) - start);
    const auto colon = line.find(':');
    if (colon == name.size() &&
        std::equal(name.begin(), name.end(), line.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
        value.remove_suffix(1);
      return value;
    }
    pos = end;
  }
  return {};
}

bool tokenMatches(std::string_view authorization, const std::string& token) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() != kBearer.size() + token.size()) return false;
  if (authorization.substr(0, kBearer.size()) != kBearer) return false;
  return CRYPTO_memcmp(authorization.data() + kBearer.size(), token.data(), token.size()) == 0;
}

class AdminConnection : public std::enable_shared_from_this<AdminConnection> {
 public:
  AdminConnection(asio::ip::tcp::socket socket, const AdminServer& server)
      : socket_(std::move(socket)), server_(server), buffer_(kMaxRequestBytes) {}

  void start() {
    asio::async_read_until(socket_, buffer_, "\r\n\r\n",
                           [self = shared_from_this()](const boost::system::error_code& ec,
                                                       std::size_t n) { self->onRequest(ec, n); });
  }

 private:
  void onRequest(const boost::system::error_code& ec, std::size_t n) {
    std::string response;
    if (ec) {
      if (ec != asio::error::not_found) return;  // peer went away
      response = httpResponse(431, "Request Header Fields Too Large", "text/plain", "too large\n");
    } else {
      std::string head(asio::buffers_begin(buffer_.data()),
                       asio::buffers_begin(buffer_.data()) + n);
      const auto lineEnd = head.find("\r\n");
      const std::string_view line(head.data(), lineEnd);
      const auto sp1 = line.find(' ');
      const auto sp2 = line.find(' ', sp1 == std::string_view::npos ? 0 : sp1 + 1);
      if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) {
        response = httpResponse(400, "Bad Request", "text/plain", "bad request\n");
      } else {
        response = server_.respond(line.substr(0, sp1), line.substr(sp1 + 1, sp2 - sp1 - 1),
                                   headerValue(head, "Authorization"));
      }
    }
    response_ = std::move(response);
    asio::async_write(socket_, asio::buffer(response_),
                      [self = shared_from_this()](const boost::system::error_code&, std::size_t) {
                        boost::system::error_code ignored;
                        self->socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
                      });
  }

  asio::ip::tcp::socket socket_;
  const AdminServer& server_;
  asio::streambuf buffer_;
  std::string response_;
};

}  // namespace

AdminServer::AdminServer(asio::io_context& io, const ServerContext& context,
                         const std::vector<std::unique_ptr<Worker>>& workers, Role role)
    : io_(io),
      context_(context),
      role_(role),
      workers_(workers),
      acceptor_(io),
      collector_(std::make_shared<ProxyCollector>(context, workers)),
      registry_(std::make_shared<prometheus::Registry>()) {}

bool AdminServer::open(const config::HostPort& address) {
  if (const auto ec = openListener(acceptor_, address)) {
    spdlog::get("admin")->error("cannot listen on admin address {}: {}", address.str(),
                                ec.message());
    return false;
  }
  return true;
}

void AdminServer::start() {
  boost::system::error_code ec;
  const auto local = acceptor_.local_endpoint(ec);
  const std::string where =
      ec ? "?" : local.address().to_string() + ":" + std::to_string(local.port());
  if (role_ == Role::kMetricsOnly) {
    spdlog::get("admin")->info("metrics endpoint on {} (/metrics only, no token)", where);
  } else {
    spdlog::get("admin")->info(
        "admin endpoint on {} (/metrics, /healthz, /readyz, /hotkeys, /bigkeys, /registry, "
        "POST /reload){}",
        where,
        context_.config.adminToken.empty() ? ""
                                           : "; bearer token required but on "
                                             "/healthz and /readyz");
  }
  accept();
}

void AdminServer::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

void AdminServer::accept() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) std::make_shared<AdminConnection>(std::move(socket), *this)->start();
    accept();
  });
}

std::string AdminServer::respond(std::string_view method, std::string_view target,
                                 std::string_view authorization) const {
  const auto query = target.find('?');
  if (query != std::string_view::npos) target = target.substr(0, query);
  if (role_ == Role::kMetricsOnly) {
    if (target != "/metrics") {
      return httpResponse(404, "Not Found", "text/plain",
                          "this port serves /metrics only; the admin port has the rest\n");
    }
  } else if (!context_.config.adminToken.empty() && target != "/healthz" && target != "/readyz" &&
             !tokenMatches(authorization, context_.config.adminToken)) {
    std::string out = httpResponse(401, "Unauthorized", "text/plain",
                                   "this admin path needs Authorization: Bearer <token> "
                                   "(admin.tokenFile)\n");
    out.insert(out.find("\r\n") + 2, "WWW-Authenticate: Bearer realm=\"keygate\"\r\n");
    return out;
  }
  if (target == "/reload") {
    if (method != "POST") {
      return httpResponse(405, "Method Not Allowed", "text/plain", "use POST /reload\n");
    }
    if (!context_.reloadRegistry) {
      return httpResponse(404, "Not Found", "text/plain",
                          "no key registry configured (set registry: in the config)\n");
    }
    const std::string result = context_.reloadRegistry();
    const bool ok = !result.starts_with("invalid");
    return httpResponse(ok ? 200 : 422, ok ? "OK" : "Unprocessable Entity", "text/plain",
                        result + "\n");
  }
  if (method != "GET" && method != "HEAD") {
    return httpResponse(405, "Method Not Allowed", "text/plain", "use GET\n");
  }
  if (target == "/healthz") {
    return httpResponse(200, "OK", "text/plain", "ok\n");
  }
  if (target == "/readyz") {
    bool up = false;
    for (const auto& w : workers_)
      up = up || w->upstreamUp();
    if (context_.draining.load()) {
      return httpResponse(503, "Service Unavailable", "text/plain", "draining\n");
    }
    if (!up && context_.config.upstream.mode == config::UpstreamMode::kCluster) {
      return httpResponse(503, "Service Unavailable", "text/plain",
                          "no cluster slot map covering all 16384 slots yet\n");
    }
    if (!up) {
      return httpResponse(503, "Service Unavailable", "text/plain",
                          "upstream " + context_.upstream.label() + " not reachable\n");
    }
    return httpResponse(200, "OK", "text/plain", "ready\n");
  }
  if (target == "/hotkeys" || target == "/bigkeys" || target == "/registry") {
    const auto report = collectSketches(context_, workers_, std::chrono::milliseconds(1000));
    const std::string body = target == "/hotkeys"   ? hotKeysJson(report, 20)
                             : target == "/bigkeys" ? bigKeysJson(report)
                                                    : registryJson(context_, report);
    return httpResponse(200, "OK", "application/json", body);
  }
  if (target == "/metrics") {
    auto families = collector_->Collect();
    auto more = registry_->Collect();
    families.insert(families.end(), more.begin(), more.end());
    prometheus::TextSerializer serializer;
    return httpResponse(200, "OK", "text/plain; version=0.0.4; charset=utf-8",
                        serializer.Serialize(families));
  }
  return httpResponse(
      404, "Not Found", "text/plain",
      "not found; try /metrics, /healthz, /readyz, /hotkeys, /bigkeys, /registry or "
      "POST /reload\n");
}

}  // namespace keygate::proxy
