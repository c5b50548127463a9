// Commands keygate answers itself, as Redis would answer them on a connection of its own.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <chrono>

#include "proxy/client_session.hpp"
#include "proxy/special_commands.hpp"
#include "proxy/version.hpp"
#include "proxy/worker.hpp"

namespace keygate::proxy {

namespace {

bool parseInt(std::string_view text, long long& out) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

// Redis refuses client names and library attributes with spaces or control characters.
bool validClientString(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '!' && c <= '~'; });
}

constexpr std::string_view kBadName =
    "ERR Client names cannot contain spaces, newlines or special characters.";

}  // namespace

ClientSession::Step ClientSession::handlePing(Args args) {
  WorkerStats::add(worker_.stats().commandsLocal);
  if (args.size() > 2) {
    replyError("ERR wrong number of arguments for 'ping' command");
  } else if (args.size() == 2) {
    scratch_.clear();
    resp::appendBulk(scratch_, args[1]);
    replyLocal(scratch_);
  } else {
    replyLocal("+PONG\r\n");
  }
  return Step::kNext;
}

ClientSession::Step ClientSession::handleEcho(Args args) {
  WorkerStats::add(worker_.stats().commandsLocal);
  scratch_.clear();
  resp::appendBulk(scratch_, args[1]);
  replyLocal(scratch_);
  return Step::kNext;
}

ClientSession::Step ClientSession::handleSelect(Args args, std::string_view raw) {
  long long db = 0;
  if (!parseInt(args[1], db)) {
    return refuse("ERR value is not an integer or out of range");
  }
  if (db != 0) {
    return refuse(
        "ERR keygate: only database 0 is available through keygate (Redis Cluster has only "
        "database 0); use key prefixes instead of databases");
  }
  if (inMulti_) return forwardDedicated(raw, Expect{});
  WorkerStats::add(worker_.stats().commandsLocal);
  replyLocal("+OK\r\n");
  return Step::kNext;
}

void ClientSession::writeHelloReply(int proto) {
  const auto p = proto == 3 ? resp::Protocol::kResp3 : resp::Protocol::kResp2;
  resp::appendMapHeader(scratch_, 7, p);
  resp::appendBulk(scratch_, "server");
  resp::appendBulk(scratch_, "redis");
  resp::appendBulk(scratch_, "version");
  resp::appendBulk(scratch_, worker_.upstreamVersion());
  resp::appendBulk(scratch_, "proto");
  resp::appendInteger(scratch_, proto);
  resp::appendBulk(scratch_, "id");
  resp::appendInteger(scratch_, static_cast<std::int64_t>(id_));
  resp::appendBulk(scratch_, "mode");
  resp::appendBulk(scratch_, "standalone");
  resp::appendBulk(scratch_, "role");
  resp::appendBulk(scratch_, "master");
  resp::appendBulk(scratch_, "modules");
  resp::appendArrayHeader(scratch_, 0);
}

ClientSession::Step ClientSession::handleHello(Args args) {
  int proto = proto_ == resp::Protocol::kResp3 ? 3 : 2;
  if (args.size() >= 2) {
    long long requested = 0;
    if (!parseInt(args[1], requested)) {
      replyError("ERR Protocol version is not an integer or out of range");
      return Step::kNext;
    }
    if (requested < 2 || requested > 3) {
      replyError("NOPROTO unsupported protocol version");
      return Step::kNext;
    }
    proto = static_cast<int>(requested);
  }
  std::string_view user, password, name;
  bool haveAuth = false, haveName = false;
  for (std::size_t i = 2; i < args.size(); ++i) {
    const bool more = args.size() - i - 1;
    if (equalsNoCase(args[i], "auth") && args.size() - i - 1 >= 2) {
      user = args[i + 1];
      password = args[i + 2];
      haveAuth = true;
      i += 2;
    } else if (equalsNoCase(args[i], "setname") && more) {
      name = args[i + 1];
      haveName = true;
      i += 1;
    } else {
      replyError("ERR Syntax error in HELLO option '" + std::string(args[i].substr(0, 128)) + "'");
      return Step::kNext;
    }
  }
  if (haveName && !validClientString(name)) {
    replyError(kBadName);
    return Step::kNext;
  }
  const bool switching = (proto == 3) != (proto_ == resp::Protocol::kResp3);
  // Replies still owed were asked for in the old protocol, on connections speaking it.
  if (switching && routeInflight_ > 0 && !dedicatedActive()) return Step::kWaitRoute;
  if (switching && dedicatedActive()) {
    replyError(
        "ERR keygate: HELLO cannot change the protocol during WATCH or a subscription; "
        "finish them first");
    return Step::kNext;
  }
  if (worker_.context().acl) {
    if (haveAuth) {
      if (!aclAuthenticate(user, password)) return Step::kNext;
      haveAuth = false;  // checked by keygate; Redis never sees the client's credentials
    } else if (aclUser_ == nullptr) {
      WorkerStats::add(worker_.stats().aclNoAuth);
      replyError(
          "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
          "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
          "select the RESP protocol version at the same time");
      return Step::kNext;
    }
  }
  if (haveAuth) {
    // Checked by Redis itself, on this client's own connection so the shared ones keep their
    // identity. (Downstream ACL users arrive with the security work.)
    Expect expect;
    expect.kind = ExpectKind::kHelloAuth;
    expect.helloProto = proto;
    expect.helloName = haveName ? std::string(name) : std::string();
    scratch_.clear();
    resp::appendCommand(scratch_, {"AUTH", user, password});
    return forwardDedicated(scratch_, std::move(expect));
  }
  WorkerStats::add(worker_.stats().commandsLocal);
  if (haveName) name_ = std::string(name);
  proto_ = proto == 3 ? resp::Protocol::kResp3 : resp::Protocol::kResp2;
  scratch_.clear();
  writeHelloReply(proto);
  replyLocal(scratch_);
  return Step::kNext;
}

ClientSession::Step ClientSession::handleAuth(Args args, std::string_view raw) {
  if (args.size() > 3) {
    replyError("ERR syntax error");
    return Step::kNext;
  }
  if (worker_.context().acl) {
    // keygate's own users: checked here, never sent to Redis (its connections keep keygate's
    // upstream identity).
    if (inMulti_) {
      return refuse("ERR keygate: AUTH inside MULTI is not supported; authenticate before MULTI");
    }
    const bool legacy = args.size() == 2;  // AUTH password: the user named "default"
    if (aclAuthenticate(legacy ? std::string_view("default") : args[1], args.back())) {
      replyLocal("+OK\r\n");
    }
    return Step::kNext;
  }
  Expect expect;
  expect.kind = ExpectKind::kAuth;
  return forwardDedicated(raw, std::move(expect));
}

ClientSession::Step ClientSession::handleReset(std::string_view raw) {
  WorkerStats::add(worker_.stats().commandsLocal);
  aclUser_ = nullptr;  // as in Redis: RESET logs the connection out
  name_.clear();
  libName_.clear();
  libVersion_.clear();
  proto_ = resp::Protocol::kResp2;
  if (dedicated_ && (dedicatedActive() || !expects_.empty())) {
    // Redis must leave MULTI, forget watches and unsubscribe on the connection that holds them.
    Expect expect;
    expect.kind = ExpectKind::kReset;
    const Step step = forwardDedicated(raw, std::move(expect));
    if (step == Step::kNext) resetPending_ = true;
    return step;
  }
  clearConnectionState();
  replyLocal("+RESET\r\n");
  return Step::kNext;
}

ClientSession::Step ClientSession::handleClient(Args args, std::string_view raw,
                                                bool unknownSubcommand) {
  if (args.size() < 2) {
    replyError("ERR wrong number of arguments for 'client' command");
    return Step::kNext;
  }
  const std::string_view sub = args[1];
  auto arity = [&](std::size_t n, std::string_view full) {
    if (args.size() == n) return true;
    replyError("ERR wrong number of arguments for '" + std::string(full) + "' command");
    return false;
  };
  if (equalsNoCase(sub, "setname")) {
    WorkerStats::add(worker_.stats().commandsLocal);
    if (!arity(3, "client|setname")) return Step::kNext;
    if (!validClientString(args[2])) {
      replyError(kBadName);
      return Step::kNext;
    }
    name_ = std::string(args[2]);
    replyLocal("+OK\r\n");
    return Step::kNext;
  }
  if (equalsNoCase(sub, "getname")) {
    WorkerStats::add(worker_.stats().commandsLocal);
    if (!arity(2, "client|getname")) return Step::kNext;
    scratch_.clear();
    if (name_.empty()) {
      resp::appendNull(scratch_, proto_);
    } else {
      resp::appendBulk(scratch_, name_);
    }
    replyLocal(scratch_);
    return Step::kNext;
  }
  if (equalsNoCase(sub, "id")) {
    WorkerStats::add(worker_.stats().commandsLocal);
    if (!arity(2, "client|id")) return Step::kNext;
    scratch_.clear();
    resp::appendInteger(scratch_, static_cast<std::int64_t>(id_));
    replyLocal(scratch_);
    return Step::kNext;
  }
  if (equalsNoCase(sub, "setinfo")) {
    // Redis 7.2's CLIENT SETINFO: libraries send it on connect; kept per connection.
    WorkerStats::add(worker_.stats().commandsLocal);
    if (!arity(4, "client|setinfo")) return Step::kNext;
    if (!validClientString(args[3])) {
      replyError("ERR lib-name and lib-ver cannot contain spaces, newlines or special characters.");
      return Step::kNext;
    }
    if (equalsNoCase(args[2], "lib-name")) {
      libName_ = std::string(args[3]);
    } else if (equalsNoCase(args[2], "lib-ver")) {
      libVersion_ = std::string(args[3]);
    } else {
      replyError("ERR Unrecognized option '" + std::string(args[2].substr(0, 128)) + "'");
      return Step::kNext;
    }
    replyLocal("+OK\r\n");
    return Step::kNext;
  }
  if (equalsNoCase(sub, "info")) {
    WorkerStats::add(worker_.stats().commandsLocal);
    if (!arity(2, "client|info")) return Step::kNext;
    std::string line = "id=" + std::to_string(id_) + " addr=" + peer_ + " laddr=" + local_ +
                       " name=" + name_ + " db=0 multi=" + (inMulti_ ? "1" : "-1") +
                       " sub=" + std::to_string(channels_ + shardChannels_) +
                       " psub=" + std::to_string(patterns_) +
                       " resp=" + (proto_ == resp::Protocol::kResp3 ? "3" : "2") +
                       " lib-name=" + libName_ + " lib-ver=" + libVersion_ + "\n";
    scratch_.clear();
    resp::appendVerbatim(scratch_, "txt", line, proto_);
    replyLocal(scratch_);
    return Step::kNext;
  }
  if (unknownSubcommand) {
    WorkerStats::add(worker_.stats().commandsUnknown);
    replyError("ERR unknown subcommand '" + std::string(sub.substr(0, 128)) +
               "'. Try CLIENT HELP.");
    return Step::kNext;
  }
  static constexpr std::string_view kForwarded[] = {"help", "list", "pause", "unpause"};
  for (auto name : kForwarded) {
    if (equalsNoCase(sub, name)) {
      if (dedicatedActive()) return forwardDedicated(raw, Expect{});
      return forwardShared(raw);
    }
  }
  // KILL, TRACKING, REPLY, NO-EVICT, UNBLOCK, CACHING, GETREDIR, ...: they act on a
  // connection, and the client's commands do not have one connection of their own here.
  WorkerStats::add(worker_.stats().commandsUnsupported);
  std::string upper(sub);
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  replyError("UNSUPPORTED keygate: CLIENT " + upper +
             " acts on a Redis connection, and keygate shares its connections between clients; "
             "run it against Redis directly");
  return Step::kNext;
}

void ClientSession::appendKeygateInfo(std::string& out) const {
  const auto& ctx = worker_.context();
  const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now() - ctx.startedAt)
                          .count();
  out.append("# keygate\r\n");
  out.append("keygate_version:").append(kVersion).append("\r\n");
  out.append("keygate_uptime_in_seconds:").append(std::to_string(uptime)).append("\r\n");
  if (cluster_) {
    std::string seeds;
    for (const auto& seed : ctx.config.upstream.seeds)
      seeds.append(seeds.empty() ? "" : ",").append(seed.str());
    out.append("keygate_upstream:").append(seeds).append("\r\n");
    out.append("keygate_upstream_mode:cluster\r\n");
    const SlotMap* map = worker_.slotMap();
    out.append("keygate_cluster_masters:")
        .append(std::to_string(map != nullptr ? map->masters().size() : 0))
        .append("\r\n");
  } else {
    out.append("keygate_upstream:").append(ctx.upstream.label()).append("\r\n");
    out.append("keygate_upstream_mode:standalone\r\n");
  }
  out.append("keygate_connected_clients:")
      .append(std::to_string(ctx.activeClients.load(std::memory_order_relaxed)))
      .append("\r\n");
  out.append("keygate_worker:").append(std::to_string(worker_.index())).append("\r\n");
  out.append("keygate_client_id:").append(std::to_string(id_)).append("\r\n");
  out.append("keygate_client_resp:")
      .append(proto_ == resp::Protocol::kResp3 ? "3" : "2")
      .append("\r\n");
}

ClientSession::Step ClientSession::handleInfo(Args args, std::string_view raw) {
  bool wantKeygate = args.size() == 1;
  bool onlyKeygate = args.size() > 1;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const bool isKeygate = equalsNoCase(args[i], "keygate");
    if (isKeygate || equalsNoCase(args[i], "all") || equalsNoCase(args[i], "everything") ||
        equalsNoCase(args[i], "default")) {
      wantKeygate = true;
    }
    if (!isKeygate) onlyKeygate = false;
  }
  if (onlyKeygate) {
    WorkerStats::add(worker_.stats().commandsLocal);
    std::string text;
    appendKeygateInfo(text);
    scratch_.clear();
    resp::appendVerbatim(scratch_, "txt", text, proto_);
    replyLocal(scratch_);
    return Step::kNext;
  }
  if (!wantKeygate || dedicatedActive()) {
    if (dedicatedActive()) return forwardDedicated(raw, Expect{});
    return forwardShared(raw);
  }
  return forwardShared(raw, kInfoTagBit);
}

std::string ClientSession::rewriteInfoReply(std::string_view frame) const {
  // INFO answers one bulk string (RESP2) or verbatim string (RESP3, "txt:" prefix).
  if (frame.size() < 4 || (frame[0] != '$' && frame[0] != '=')) return std::string(frame);
  const auto headerEnd = frame.find("\r\n");
  if (headerEnd == std::string_view::npos) return std::string(frame);
  std::string_view body = frame.substr(headerEnd + 2);
  if (body.size() < 2) return std::string(frame);
  body.remove_suffix(2);
  std::string text;
  std::string_view format = "txt";
  if (frame[0] == '=' && body.size() >= 4) {
    format = body.substr(0, 3);
    body.remove_prefix(4);
  }
  text.reserve(body.size() + 512);
  text.append(body);
  text.append("\r\n");
  appendKeygateInfo(text);
  std::string out;
  if (frame[0] == '=') {
    resp::appendVerbatim(out, format, text, resp::Protocol::kResp3);
  } else {
    resp::appendBulk(out, text);
  }
  return out;
}

bool ClientSession::aclRefuses(const commands::CommandInfo& info, const commands::CommandInfo& top,
                               Step& step) {
  if (aclUser_ == nullptr) {
    if (policies::Acl::isLoginCommand(top)) return false;
    WorkerStats::add(worker_.stats().aclNoAuth);
    step = refuse("NOAUTH Authentication required.");
    return true;
  }
  if (policies::Acl::commandAllowed(*aclUser_, info, top)) return false;
  WorkerStats::add(worker_.stats().aclCommandDenied);
  std::string name(info.name);
  std::replace(name.begin(), name.end(), '|', ' ');
  step = refuse("NOPERM User " + aclUser_->name + " has no permissions to run the '" + name +
                "' command");
  return true;
}

bool ClientSession::aclAuthenticate(std::string_view user, std::string_view password) {
  const policies::Acl::User* found = worker_.context().acl->authenticate(user, password);
  if (found == nullptr) {
    WorkerStats::add(worker_.stats().aclAuthFailed);
    // At most one line per second per worker: a password-guessing client cannot flood the
    // log. Never the password; the user name is capped.
    static thread_local std::chrono::steady_clock::time_point lastLog{};
    static thread_local std::uint64_t suppressed = 0;
    const auto now = std::chrono::steady_clock::now();
    if (now - lastLog >= std::chrono::seconds(1)) {
      spdlog::get("client")->warn(
          "client {} ({}): AUTH failed for user '{}'{}", id_, peer_, user.substr(0, 64),
          suppressed > 0 ? " (" + std::to_string(suppressed) + " more failures not logged)"
                         : std::string());
      lastLog = now;
      suppressed = 0;
    } else {
      ++suppressed;
    }
    replyError("WRONGPASS invalid username-password pair or user is disabled.");
    return false;
  }
  WorkerStats::add(worker_.stats().aclAuthOk);
  aclUser_ = found;
  aclPatternsFor_ = nullptr;
  return true;
}

const std::vector<std::uint8_t>* ClientSession::aclPatterns(
    const policies::CompiledRegistry& registry) {
  if (aclPatternsFor_ != &registry || aclPatternsGeneration_ != worker_.endpointGeneration()) {
    aclPatterns_ = policies::Acl::allowedPatterns(*aclUser_, registry);
    aclPatternsFor_ = &registry;
    aclPatternsGeneration_ = worker_.endpointGeneration();
  }
  return &aclPatterns_;
}

}  // namespace keygate::proxy
