#include "proxy/client_session.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <random>

#include "proxy/batch_clock.hpp"
#include "proxy/resp/reply_reader.hpp"
#include "proxy/special_commands.hpp"
#include "proxy/worker.hpp"

namespace keygate::proxy {

namespace {

constexpr std::size_t kReadChunk = 4096;
constexpr std::size_t kIdleBufferKeep = 16 * 1024;

std::string endpointText(const asio::ip::tcp::socket& socket, bool remote) {
  boost::system::error_code ec;
  auto ep = remote ? socket.remote_endpoint(ec) : socket.local_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

// XREAD and XREADGROUP block only with a BLOCK option before STREAMS.
bool xreadBlocks(std::span<const std::string_view> args) {
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (equalsNoCase(args[i], "streams")) return false;
    if (equalsNoCase(args[i], "block")) return true;
  }
  return false;
}

static_assert(WorkerStats::kRegistryReasons == static_cast<std::size_t>(policies::Reason::kCount));

constexpr std::string_view kCrossSlotError =
    "CROSSSLOT Keys in request don't hash to the same slot";

// Replies nobody waits for (the +OK to an ASKING keygate sends before a redirected request).
class IgnoreReply final : public ReplySink {
 public:
  void onReply(std::uint64_t, std::string_view) override {}
  void onFailure(std::uint64_t, std::string_view) override {}
};

const std::shared_ptr<ReplySink>& ignoreReply() {
  static const std::shared_ptr<ReplySink> sink = std::make_shared<IgnoreReply>();
  return sink;
}

// A reply a cluster node sends when the request belongs elsewhere or cannot run yet.
bool isClusterRedirect(std::string_view frame) {
  if (frame.size() < 5 || frame[0] != '-') return false;
  const std::string_view text = frame.substr(1);
  return text.starts_with("MOVED ") || text.starts_with("ASK ") || text.starts_with("TRYAGAIN") ||
         text.starts_with("CLUSTERDOWN");
}

bool sameNode(const UpstreamConnection& conn, const ClusterNode& node) {
  return conn.settings().port == node.port && conn.settings().host == node.host;
}

// Redis is there but cannot serve the request now: an endpoint failure (docs/endpoints.md),
// answered as the profile says. (BUSYKEY and BUSYGROUP are ordinary errors.)
bool isUnavailableReply(std::string_view frame) {
  if (frame.size() < 5 || frame[0] != '-') return false;
  const std::string_view text = frame.substr(1);
  return text.starts_with("LOADING") || text.starts_with("BUSY ") ||
         text.starts_with("MASTERDOWN") || text.starts_with("CLUSTERDOWN") ||
         text.starts_with("TRYAGAIN");
}

// How long a blocking command may wait in Redis by its own arguments; nullopt: forever (0) or
// unknown (Redis will refuse it).
std::optional<std::chrono::milliseconds> blockingWait(const commands::CommandInfo& info,
                                                      std::span<const std::string_view> args) {
  const std::string_view name = info.name;
  auto seconds = [](std::string_view text) -> std::optional<std::chrono::milliseconds> {
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || !(value > 0) || value > 1e9) {
      return std::nullopt;
    }
    return std::chrono::milliseconds(static_cast<std::int64_t>(value * 1000.0) + 1);
  };
  auto millis = [](std::string_view text) -> std::optional<std::chrono::milliseconds> {
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value <= 0) return std::nullopt;
    return std::chrono::milliseconds(value);
  };
  if (name == "blpop" || name == "brpop" || name == "bzpopmin" || name == "bzpopmax" ||
      name == "brpoplpush" || name == "blmove") {
    return seconds(args.back());
  }
  if (name == "blmpop" || name == "bzmpop")
    return args.size() > 1 ? seconds(args[1]) : std::nullopt;
  if (name == "wait") return args.size() > 2 ? millis(args[2]) : std::nullopt;
  if (name == "xread" || name == "xreadgroup") {
    for (std::size_t i = 1; i + 1 < args.size(); ++i) {
      if (equalsNoCase(args[i], "block")) return millis(args[i + 1]);
    }
  }
  return std::nullopt;
}

}  // namespace

// One multi-part request in cluster mode (a multi-key command split by slot, or a keyless one
// sent to every master): the parts' replies are merged into the client's one slot. A part that
// fails (node down, breaker open, deadline) is answered as the endpoint profile says: under
// `open`, MGET gets nils for that part's keys only.
class ClientSession::Fanout final : public ReplySink, public std::enable_shared_from_this<Fanout> {
 public:
  struct Part {
    std::string request;  // kept for redirects (split parts only)
    std::uint16_t keySlot = 0;
    std::uint8_t redirects = 0;
    bool byNode = false;   // sent to one named master: never redirected
    bool fed = false;      // the merger has this part's answer (a reply or a failure's)
    bool settled = false;  // Redis answered or the send failed: nothing more will come
    std::uint32_t keys = 0;
    Breaker* breaker = nullptr;
  };

  Fanout(std::shared_ptr<ClientSession> owner, std::uint64_t clientSeq, ReplyMerger merge)
      : session(std::move(owner)), seq(clientSeq), merger(std::move(merge)) {}

  void onReply(std::uint64_t tag, std::string_view frame) override {
    session->onPartReply(shared_from_this(), tag, frame);
  }
  void onFailure(std::uint64_t tag, std::string_view reason) override {
    if (session->closed_) return;
    session->onPartFailure(shared_from_this(), tag, Failure::kUnavailable, reason);
  }

  std::shared_ptr<ClientSession> session;
  std::uint64_t seq;
  ReplyMerger merger;
  std::vector<Part> parts;
  std::size_t outstanding = 0;  // parts not settled
  bool done = false;            // the client's slot is answered
  EndpointRuntime* endpoint = nullptr;
  policies::MissReply miss;
  bool counted = false;            // the request's failure is in the endpoint metrics
  std::vector<Breaker*> reported;  // breakers told this request's outcome
};

ClientSession::ClientSession(Worker& worker, asio::ip::tcp::socket socket, std::uint64_t id)
    : worker_(worker),
      socket_(std::move(socket)),
      id_(id),
      in_(0),
      parser_(worker.limits()),
      cluster_(worker.clusterMode()),
      keylessSlot_(static_cast<std::uint16_t>(id % kClusterSlots)) {
  peer_ = endpointText(socket_, true);
  local_ = endpointText(socket_, false);
}

ClientSession::~ClientSession() {
  if (dedicated_) dedicated_->setOwner(nullptr);
}

void ClientSession::start() {
  boost::system::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  socket_.non_blocking(true, ignored);  // flushOutput's writeNow must never block
  if (const auto& tls = worker_.context().listenerTls) {
    handshaking_ = true;
    stream_.enableTls(*tls).async_handshake(
        asio::ssl::stream_base::server,
        [self = shared_from_this()](const boost::system::error_code& ec) {
          self->handshaking_ = false;
          if (self->closed_) return;
          if (ec) {
            WorkerStats::add(self->worker_.stats().tlsHandshakeFailures);
            spdlog::get("client")->debug("client {} ({}): TLS handshake: {}", self->id_,
                                         self->peer_, ec.message());
            self->close();
            return;
          }
          self->startRead();
        });
    return;
  }
  polled_.start(worker_.io(), socket_.native_handle(), *this);
  startRead();
}

// ---------------------------------------------------------------------------------------------
// Reading and parsing

void ClientSession::startRead() {
  if (reading_ || closing_ || closed_ || paused_ || handshaking_) return;
  if (!polled_.active()) {  // TLS
    reading_ = true;
    auto span = in_.prepare(kReadChunk);
    stream_.readSome(asio::buffer(span.data(), span.size()),
                     [self = shared_from_this()](const boost::system::error_code& ec,
                                                 std::size_t n) { self->onRead(ec, n); });
    return;
  }
  if (!readable_) return;  // the poller reads when the next bytes arrive
  // The last read filled the buffer, or reading resumes after a pause: there may be more. Read
  // on a turn of its own, so that one busy client cannot starve the others.
  reading_ = true;
  asio::post(worker_.io(), [self = shared_from_this()] { self->readNow(); });
}

asio::mutable_buffer ClientSession::readBuffer() {
  readable_ = true;
  if (reading_ || closing_ || closed_ || paused_ || handshaking_) return {};
  reading_ = true;
  return prepareRead();
}

asio::mutable_buffer ClientSession::prepareRead() {
  auto span = in_.prepare(kReadChunk);
  readSize_ = span.size();
  return asio::buffer(span.data(), span.size());
}

void ClientSession::readNow() {
  if (closed_ || closing_ || paused_) {
    reading_ = false;
    return;
  }
  readDone(stream_.readNow(prepareRead()));
}

void ClientSession::readDone(int result) {
  auto self = shared_from_this();  // reading may close us
  boost::system::error_code ec;
  bool drained = false;
  const std::size_t n = SocketStream::readResult(result, readSize_, ec, drained);
  if (drained) readable_ = false;
  if (ec == asio::error::would_block) {
    reading_ = false;
    return;
  }
  onRead(ec, n);
}

void ClientSession::onRead(const boost::system::error_code& ec, std::size_t n) {
  reading_ = false;
  if (closed_) return;
  if (ec) {
    if (SocketStream::closedByPeer(ec)) {
      // The client finished sending (or we shut reading down to drain): answer what it asked.
      closing_ = true;
      finishIfDone();
    } else {
      close();
    }
    return;
  }
  in_.commit(n);
  WorkerStats::add(worker_.stats().bytesFromClients, n);
  processInput();
}

bool ClientSession::mustPause() const {
  const auto& limits = worker_.clientLimits();
  return slots_.size() >= limits.maxPipelinedRequests ||
         outputBytes() >= limits.maxClientOutputBytes;
}

void ClientSession::processInput() {
  if (processing_ || closed_) return;
  const BatchClock::Scope batch;  // every request of this read is stamped with one clock read
  processing_ = true;
  ++readBatch_;
  while (!in_.empty() && !closing_ && !closed_) {
    if (mustPause()) {
      paused_ = true;
      WorkerStats::add(worker_.stats().backpressurePauses);
      break;
    }
    auto result = parser_.parse(in_.readable(), request_);
    if (result.status == resp::ParseStatus::kIncomplete) {
      // One request may not outgrow limits.maxRequestBytes, however its bulks are sized.
      const std::size_t wanted = std::max(parser_.bytesWanted(), in_.size());
      if (wanted > worker_.clientLimits().maxRequestBytes) {
        result.status = resp::ParseStatus::kError;
        result.error = "Protocol error: request larger than limits.maxRequestBytes";
      } else {
        if (parser_.bytesWanted() > in_.size()) in_.reserveTotal(parser_.bytesWanted());
        break;
      }
    }
    if (result.status == resp::ParseStatus::kError) {
      WorkerStats::add(worker_.stats().protocolErrors);
      spdlog::get("client")->info("client {} ({}): {}; closing", id_, peer_, result.error);
      replyError(std::string("ERR ") + std::string(result.error));
      closing_ = true;
      break;
    }
    if (request_.args.empty()) {  // `*0`, `*-1` or a blank line: Redis ignores them
      in_.consume(result.consumed);
      continue;
    }
    const Step step = handleRequest(request_);
    if (step == Step::kWaitRoute) {
      waitingRoute_ = true;
      paused_ = true;
      rehandling_ = true;  // parsed and handled again once the route is free
      break;
    }
    in_.consume(result.consumed);
    if (step == Step::kStop) {
      closing_ = true;
      break;
    }
  }
  processing_ = false;
  in_.shrinkIfEmpty(kIdleBufferKeep);
  if (!out_.empty() && !closing_ && !paused_) {
    worker_.deferTurnEnd(shared_from_this());  // answered here: written with the turn's others
    return;
  }
  flushOutput();
  if (closing_) {
    finishIfDone();
  } else if (!paused_) {
    startRead();
  }
}

void ClientSession::maybeResume() {
  if (!paused_ || waitingRoute_ || closing_ || closed_ || mustPause()) return;
  paused_ = false;
  // Posted: resuming may send requests, and we may be inside an upstream connection's dispatch.
  asio::post(worker_.io(), [self = shared_from_this()] {
    if (self->in_.empty()) {
      self->startRead();
    } else {
      self->processInput();
    }
  });
}

ClientSession::Step ClientSession::handleRequest(const resp::Request& request) {
  const bool counted = rehandling_;
  rehandling_ = false;
  if (!counted) WorkerStats::add(worker_.stats().commands);
  const Args args(request.args);
  std::string_view raw = request.raw;
  if (request.isInline) {
    scratch_.clear();
    resp::appendCommand(scratch_, args);
    raw = scratch_;
  }
  if (resetPending_) return Step::kWaitRoute;

  const auto& table = commands::CommandTable::redis70();
  const commands::CommandInfo* top = table.find(args[0]);
  if (top == nullptr) {
    WorkerStats::add(worker_.stats().commandsUnknown);
    std::string message = "ERR unknown command '";
    message.append(args[0].substr(0, 128));
    message.append("', with args beginning with: ");
    for (std::size_t i = 1; i < args.size() && message.size() < 256; ++i) {
      message.append("'").append(args[i].substr(0, 128)).append("' ");
    }
    return refuse(message);
  }
  if (!counted) {
    const auto rows = table.all();
    WorkerStats::add(
        worker_.traffic().commands[static_cast<std::size_t>(top - rows.data())].requests);
  }
  const commands::CommandInfo* info = top;
  bool unknownSubcommand = false;
  if (top->isContainer() && args.size() >= 2) {
    info = table.resolve(args, &unknownSubcommand);
    if (info == nullptr) info = top;
  }
  if (unknownSubcommand && specialOf(*top) != Special::kClient) {
    WorkerStats::add(worker_.stats().commandsUnknown);
    std::string container(top->name);
    std::transform(container.begin(), container.end(), container.begin(), ::toupper);
    std::string message = "ERR unknown subcommand '";
    message.append(args[1].substr(0, 128)).append("'. Try ").append(container).append(" HELP.");
    return refuse(message);
  }
  if (!unknownSubcommand && !commands::arityOk(*info, args.size())) {
    WorkerStats::add(worker_.stats().commandsArityErrors);
    std::string message = "ERR wrong number of arguments for '";
    message.append(info->name).append("' command");
    return refuse(message);
  }
  if (worker_.context().acl) {
    Step step = Step::kNext;
    if (aclRefuses(*info, *top, step)) return step;
  }
  hidden_.clear();
  decided_ = nullptr;
  if (const policies::CompiledRegistry* registry = worker_.registry()) {
    return applyRegistry(*registry, args, raw, *info, *top);
  }
  return dispatchCommand(args, raw, *info, top);
}

ClientSession::Step ClientSession::applyRegistry(const policies::CompiledRegistry& registry,
                                                 Args args, std::string_view raw,
                                                 const commands::CommandInfo& info,
                                                 const commands::CommandInfo& top) {
  policies::RequestContext context;
  context.tenant = worker_.context().config.tenant;
  if (aclUser_ != nullptr) {
    context.tenant = aclUser_->tenant;
    context.user = aclUser_->name;
    context.allowedPatterns = aclPatterns(registry);
  }
  policies::evaluate(registry, info, top, args, context, worker_.random(), evalScratch_, decision_);
  auto& stats = worker_.stats();
  for (std::size_t r = 0; r < decision_.audited.size(); ++r) {
    if (decision_.audited[r] > 0) WorkerStats::add(stats.registryAudited[r], decision_.audited[r]);
  }
  if (decision_.refuse) {
    WorkerStats::add(stats.registryRefused[static_cast<std::size_t>(decision_.reason)]);
    WorkerStats::add(worker_.traffic()
                         .patterns[worker_.patternMetricId(decision_.pattern)]
                         .rejects[static_cast<std::size_t>(decision_.reason)]);
    return refuse(decision_.error);
  }
  decided_ = &decision_;
  if (decision_.ttlInjected > 0) WorkerStats::add(stats.ttlInjected, decision_.ttlInjected);
  if (decision_.ttlClamped > 0) WorkerStats::add(stats.ttlClamped, decision_.ttlClamped);
  if (decision_.keysRewritten > 0) WorkerStats::add(stats.keysRewritten, decision_.keysRewritten);
  std::size_t begin = 0;
  for (std::size_t i = 0; i < decision_.hiddenCount; ++i) {
    HiddenCommand h;
    h.request.assign(decision_.hidden, begin, decision_.hiddenEnds[i] - begin);
    begin = decision_.hiddenEnds[i];
    h.slot = cluster_ ? keyHashSlot(decision_.hiddenKeys[i]) : 0;
    hidden_.push_back(std::move(h));
  }
  if (decision_.rewritten) {
    // The request as keygate sends it: canonical keys, a clamped TTL.
    rewrittenArgs_.assign(decision_.args.begin(), decision_.args.end());
    rewrittenRaw_.clear();
    resp::appendCommand(rewrittenRaw_, rewrittenArgs_);
    return dispatchCommand(rewrittenArgs_, rewrittenRaw_, info, &top);
  }
  if (!decision_.appended.empty()) {
    // SET ... PX ttl: the client's bytes behind a new array length, the TTL after them.
    const auto headerEnd = raw.find("\r\n");
    rewrittenRaw_.clear();
    rewrittenRaw_.push_back('*');
    rewrittenRaw_.append(std::to_string(args.size() + decision_.appended.size()));
    rewrittenRaw_.append(raw.substr(headerEnd));
    for (const auto& a : decision_.appended)
      resp::appendBulk(rewrittenRaw_, a);
    return dispatchCommand(args, rewrittenRaw_, info, &top);
  }
  return dispatchCommand(args, raw, info, &top);
}

void ClientSession::sendHidden(UpstreamConnection* conn) {
  // Commands the client never sees (PEXPIRE key ttl NX after a write that created a key),
  // right behind the request on the connection of their key's slot; replies dropped.
  for (const auto& h : hidden_) {
    UpstreamConnection* target = conn;
    if (target == nullptr) target = worker_.masterUpstream(h.slot, proto_, id_);
    if (target != nullptr) target->send(h.request, ignoreReply(), 0);
  }
  hidden_.clear();
}

void ClientSession::sendHiddenDedicated(UpstreamConnection& conn) {
  for (auto& h : hidden_) {
    Expect swallow;
    swallow.kind = ExpectKind::kSwallow;
    expects_.push_back(std::move(swallow));
    conn.sendStream(h.request);
  }
  hidden_.clear();
}

// ---------------------------------------------------------------------------------------------
// Routing

bool ClientSession::dedicatedActive() const {
  return inMulti_ || watching_ || pubsubExpects_ > 0 ||
         (channels_ + patterns_ + shardChannels_) > 0;
}

ClientSession::Step ClientSession::dispatchCommand(Args args, std::string_view raw,
                                                   const commands::CommandInfo& info,
                                                   const commands::CommandInfo* top) {
  const Special special = specialOf(*top);
  choosePolicy(args, info, *top);
  traffic_.requestBytes = static_cast<std::uint32_t>(std::min<std::size_t>(raw.size(), UINT32_MAX));
  if (decided_ != nullptr && worker_.reads().active()) noteWrites(args, info);
  const bool subscribedResp2 = proto_ == resp::Protocol::kResp2 &&
                               (pubsubExpects_ > 0 || (channels_ + patterns_ + shardChannels_) > 0);
  // Inside MULTI Redis queues commands, and in RESP2 subscribed mode it refuses most of them:
  // there the connection's own answers are the right ones, so local commands go to Redis too.
  const bool redisAnswers = inMulti_ || subscribedResp2;

  switch (special) {
    case Special::kNone:
      break;
    case Special::kPing:
      if (redisAnswers) break;
      return handlePing(args);
    case Special::kEcho:
      if (redisAnswers) break;
      return handleEcho(args);
    case Special::kQuit:
      replyLocal("+OK\r\n");
      return Step::kStop;
    case Special::kHello:
      if (redisAnswers) {
        return refuse(
            "ERR keygate: HELLO is not supported inside MULTI or in RESP2 subscribed "
            "mode; send it before MULTI or SUBSCRIBE");
      }
      return handleHello(args);
    case Special::kSelect:
      return handleSelect(args, raw);
    case Special::kClient:
      if (redisAnswers) break;
      return handleClient(args, raw, info.name == top->name);
    case Special::kReadMode:
      if (redisAnswers) break;
      WorkerStats::add(worker_.stats().commandsLocal);
      replyLocal("+OK\r\n");
      return Step::kNext;
    case Special::kReset:
      return handleReset(raw);
    case Special::kInfo:
      if (redisAnswers) break;
      return handleInfo(args, raw);
    case Special::kAuth:
      if (inMulti_ && !worker_.context().acl) break;
      return handleAuth(args, raw);
    case Special::kMulti: {
      if (cluster_ && inMulti_ && multiDeferred_) {
        replyError("ERR MULTI calls can not be nested");
        return Step::kNext;
      }
      if (cluster_ && !inMulti_ && !dedicatedActive()) {
        // The transaction's node is the one of its first key: MULTI goes out with the first
        // command. Answering it now claims nothing Redis would not say.
        WorkerStats::add(worker_.stats().commandsLocal);
        replyLocal("+OK\r\n");
        inMulti_ = true;
        multiDeferred_ = true;
        txAborted_ = false;
        txSlot_ = -1;
        return Step::kNext;
      }
      const Step step = forwardDedicated(raw, Expect{});
      if (step == Step::kNext) inMulti_ = true;
      return step;
    }
    case Special::kExec:
    case Special::kDiscard: {
      if (!inMulti_ && !dedicatedActive()) break;  // Redis answers "without MULTI"
      if (multiDeferred_) {
        // Nothing reached Redis, so it never saw the MULTI: answer as it would have (a command
        // that could not be queued aborts the transaction, as in Redis).
        WorkerStats::add(worker_.stats().commandsLocal);
        if (special == Special::kDiscard) {
          replyLocal("+OK\r\n");
        } else if (txAborted_) {
          replyError("EXECABORT Transaction discarded because of previous errors.");
        } else {
          replyLocal("*0\r\n");
        }
        clearConnectionState();
        return Step::kNext;
      }
      const bool wasMulti = inMulti_;
      const Step step = forwardDedicated(raw, Expect{});
      if (step == Step::kNext && wasMulti) {
        inMulti_ = false;
        watching_ = false;
        txSlot_ = -1;
        if (special == Special::kExec && !txHidden_.empty() && dedicated_) {
          hidden_ = std::move(txHidden_);
          sendHiddenDedicated(*dedicated_);
        }
        txHidden_.clear();
      }
      return step;
    }
    case Special::kWatch: {
      if (cluster_) return clusterWatch(args, raw, info);
      const Step step = forwardDedicated(raw, Expect{});
      if (step == Step::kNext && !inMulti_) watching_ = true;
      return step;
    }
    case Special::kUnwatch: {
      if (!dedicatedActive() && !(routeKind_ == RouteKind::kDedicated && routeInflight_ > 0)) {
        break;
      }
      if (cluster_ && inMulti_) break;
      const Step step = forwardDedicated(raw, Expect{});
      if (step == Step::kNext && !inMulti_) {
        watching_ = false;
        txSlot_ = -1;
      }
      return step;
    }
    case Special::kSubscribe:
    case Special::kPsubscribe:
    case Special::kSsubscribe:
    case Special::kUnsubscribe:
    case Special::kPunsubscribe:
    case Special::kSunsubscribe: {
      if (cluster_ && inMulti_) break;
      Expect expect;
      if (!inMulti_) {
        const bool all = args.size() == 1;
        expect.kind = all ? ExpectKind::kUnsubscribeAll : ExpectKind::kFrames;
        expect.frames = static_cast<std::uint32_t>(args.size() - 1);
        expect.pubsubKind =
            (special == Special::kPsubscribe || special == Special::kPunsubscribe)   ? 'p'
            : (special == Special::kSsubscribe || special == Special::kSunsubscribe) ? 's'
                                                                                     : 'c';
      }
      if (cluster_ && special == Special::kSsubscribe) {
        // Shard channels live on their slot's master.
        return forwardDedicatedToKeys(args, raw, info, std::move(expect));
      }
      return forwardDedicated(raw, std::move(expect));
    }
    case Special::kBlocking:
      if ((info.name == "xread" || info.name == "xreadgroup") && !xreadBlocks(args)) break;
      if (cluster_) {
        if (inMulti_) break;
        return forwardDedicatedToKeys(args, raw, info, Expect{});
      }
      return forwardDedicated(raw, Expect{});
    case Special::kUnsupported: {
      WorkerStats::add(worker_.stats().commandsUnsupported);
      std::string name(info.name);
      std::transform(name.begin(), name.end(), name.begin(), ::toupper);
      return refuse("UNSUPPORTED keygate: " + name +
                    " cannot work through a proxy that shares its Redis connections; run it "
                    "against Redis directly");
    }
  }
  if (special == Special::kNone && decided_ != nullptr && worker_.reads().active() && !inMulti_ &&
      !dedicatedActive() && !sharedRouteBlocked()) {
    Step step = Step::kNext;
    if (shareRead(args, raw, step)) return step;
  }
  if (cluster_) return dispatchCluster(args, raw, info);
  if (dedicatedActive() || (routeInflight_ > 0 && routeKind_ == RouteKind::kDedicated)) {
    return forwardDedicated(raw, Expect{});
  }
  return forwardShared(raw);
}

bool ClientSession::sharedRouteBlocked() const {
  return routeInflight_ > 0 && (routeKind_ != RouteKind::kShared ||
                                routeEpoch_ != worker_.routeEpoch() || routeProto_ != proto_);
}

void ClientSession::noteSharedSend() {
  routeKind_ = RouteKind::kShared;
  routeEpoch_ = worker_.routeEpoch();
  routeProto_ = proto_;
  ++routeInflight_;
}

ClientSession::Step ClientSession::forwardShared(std::string_view raw, std::uint64_t tagBits) {
  if (cluster_) return sendToSlot(raw, keylessSlot_, tagBits, false);
  if (sharedRouteBlocked()) return Step::kWaitRoute;
  UpstreamConnection& conn = worker_.sharedUpstream(proto_, id_);
  Breaker* breaker = breakerOf(conn);
  if (breaker != nullptr && !worker_.breakerAllows(*breaker)) {
    return failNow(breaker, Failure::kBreakerOpen, {});
  }
  if (conn.failed()) return failNow(breaker, Failure::kUnavailable, conn.lastError());
  const std::uint64_t seq = pushTracked(breaker);
  if (policy_.retriable && tagBits == 0) {
    // Kept for a retry (standalone keeps no other request bytes).
    slots_.back().requestLen = static_cast<std::uint32_t>(raw.size());
    sentLog_.append(raw);
  }
  noteSharedSend();
  conn.send(raw, shared_from_this(), seq | tagBits);
  armDeadline(seq, &conn);
  if (!hidden_.empty()) sendHidden(&conn);
  return Step::kNext;
}

ClientSession::Step ClientSession::forwardDedicated(std::string_view raw, Expect expect,
                                                    const ClusterNode* node) {
  if (routeInflight_ > 0 && (dedicated_ == nullptr || routeKind_ != RouteKind::kDedicated)) {
    return Step::kWaitRoute;
  }
  if (cluster_ && node != nullptr && dedicated_ && !sameNode(*dedicated_, *node)) {
    if (dedicatedActive() && !multiDeferred_) {
      replyError(
          "ERR keygate: this connection holds a WATCH, transaction or subscription on another "
          "cluster node; finish it first (keys of one transaction or watch share one slot)");
      return Step::kNext;
    }
    if (!expects_.empty()) return Step::kWaitRoute;  // the other node answers first
  }
  UpstreamConnection* conn = ensureDedicated(node);
  if (conn == nullptr) {
    if (multiDeferred_) txAborted_ = true;
    if (cluster_ && !dedicated_) {
      replyError(clusterDownError());
    } else {
      WorkerStats::add(worker_.stats().upstreamErrorsReplied);
      replyError(upstreamError(dedicated_ ? dedicated_->lastError() : "cannot connect"));
      dropDedicated();
    }
    return Step::kNext;
  }
  if (multiDeferred_) {
    // The MULTI the client was told OK for goes first; its own +OK was already given.
    multiDeferred_ = false;
    Expect swallow;
    swallow.kind = ExpectKind::kSwallow;
    expects_.push_back(std::move(swallow));
    conn->sendStream("*1\r\n$5\r\nMULTI\r\n");
  }
  const bool timed = expect.kind == ExpectKind::kOne || expect.kind == ExpectKind::kReplace;
  expect.seq = pushTracked(nullptr);
  // Transactions, blocking commands: a reply's shape is the connection's state (QUEUED, ...),
  // so they never fail open; past their budget they get TIMEOUT.
  slots_.back().miss = {};
  const std::uint64_t seq = expect.seq;
  if (expect.kind == ExpectKind::kFrames || expect.kind == ExpectKind::kUnsubscribeAll) {
    ++pubsubExpects_;
  }
  expects_.push_back(std::move(expect));
  routeKind_ = RouteKind::kDedicated;
  ++routeInflight_;
  conn->sendStream(raw);
  if (timed) armDeadline(seq, conn);
  if (!hidden_.empty()) {
    if (inMulti_) {
      // Inside MULTI an extra command would add an element to EXEC's reply: they follow EXEC.
      for (auto& h : hidden_)
        txHidden_.push_back(std::move(h));
      hidden_.clear();
    } else {
      sendHiddenDedicated(*conn);
    }
  }
  return Step::kNext;
}

UpstreamConnection* ClientSession::ensureDedicated(const ClusterNode* node) {
  if (dedicated_ && expects_.empty() &&
      (dedicated_->failed() || dedicated_->protocol() != proto_ ||
       (cluster_ && node != nullptr && !sameNode(*dedicated_, *node)))) {
    dropDedicated();
  }
  if (!dedicated_) {
    const ClusterNode* target = nullptr;
    if (cluster_) {
      target = node != nullptr ? node : masterOf(keylessSlot_);
      if (target == nullptr) return nullptr;  // no slot map yet
    }
    dedicated_ = worker_.openDedicated(proto_, target);
    dedicated_->setOwner(this);
  }
  return dedicated_->failed() ? nullptr : dedicated_.get();
}

void ClientSession::dropDedicated() {
  if (!dedicated_) return;
  auto conn = std::move(dedicated_);
  conn->setOwner(nullptr);
  conn->close("released by the client session");
}

void ClientSession::noteRouteDone() {
  if (routeInflight_ > 0) --routeInflight_;
  if (routeInflight_ == 0 && waitingRoute_) {
    waitingRoute_ = false;
    maybeResume();
  }
}

void ClientSession::clearConnectionState() {
  txHidden_.clear();
  inMulti_ = watching_ = multiDeferred_ = txAborted_ = false;
  txSlot_ = -1;
  channels_ = patterns_ = shardChannels_ = 0;
  pubsubExpects_ = 0;
}

ClientSession::Step ClientSession::refuse(std::string_view error) {
  if (inMulti_) {
    // Redis marks a transaction failed when a command is refused while queueing; so must we,
    // or EXEC would run the rest. An unknown command makes Redis do exactly that, and the
    // client sees keygate's reason instead of Redis' complaint.
    Expect expect;
    expect.kind = ExpectKind::kReplace;
    expect.replacement = "-";
    expect.replacement.append(error);
    expect.replacement.append("\r\n");
    scratch_.clear();
    resp::appendCommand(scratch_, {"KEYGATE.REFUSED"});
    return forwardDedicated(scratch_, std::move(expect));
  }
  replyError(error);
  return Step::kNext;
}

// ---------------------------------------------------------------------------------------------
// Endpoint profiles: budgets, fail-open / fail-closed, breakers, retries (docs/endpoints.md)

void ClientSession::choosePolicy(Args args, const commands::CommandInfo& info,
                                 const commands::CommandInfo& top) {
  const auto& set = worker_.endpointSet();
  if (endpointGen_ != worker_.endpointGeneration() || nameFor_ != name_) {
    endpointGen_ = worker_.endpointGeneration();
    nameFor_ = name_;
    nameEndpoint_ = set.forClient(name_);
  }
  traffic_.patternId =
      decided_ != nullptr ? worker_.patternMetricId(decided_->pattern) : kUnregisteredPattern;
  traffic_.key = {};
  if (decided_ != nullptr && decided_->pattern >= 0 && !evalScratch_.keys.empty() &&
      worker_.registry() != nullptr &&
      !worker_.registry()->rules(static_cast<std::size_t>(decided_->pattern)).channel &&
      evalScratch_.keys[0].argIndex < args.size()) {
    traffic_.key = args[evalScratch_.keys[0].argIndex];
  }
  const auto rows = commands::CommandTable::redis70().all();
  traffic_.commandRow = static_cast<std::uint16_t>(&top - rows.data());
  traffic_.write = info.has(commands::kWrite);
  // A read's "no such key" reply: its hit/miss test, and its fail-open answer (cacheWrite only
  // matters for writes, so one lookup serves both).
  const bool read = info.has(commands::kRead) || info.name == "getex";
  const policies::MissReply readMiss =
      read ? policies::missReplyOf(info, args, false) : policies::MissReply{};
  traffic_.absent = readMiss.shape;
  traffic_.valueBytes = 0;
  if (traffic_.write) {
    for (std::size_t i = 2; i < args.size(); ++i)
      traffic_.valueBytes = std::max<std::uint64_t>(traffic_.valueBytes, args[i].size());
  }
  int index = nameEndpoint_;
  if (index < 0 && decided_ != nullptr && decided_->endpoint >= 0) index = decided_->endpoint;
  if (index < 0) index = set.defaultIndex();
  policy_.index = static_cast<std::uint16_t>(index);
  policy_.runtime = &worker_.endpoint(static_cast<std::size_t>(index));
  const policies::Endpoint& profile = policy_.runtime->profile;
  if (!profile.open) {
    policy_.miss = {};
  } else if (read && (!info.has(commands::kWrite) || info.name == "getex")) {
    policy_.miss = readMiss;  // not a write: cacheWrite cannot change the answer
  } else {
    policy_.miss = policies::missReplyOf(info, args, decided_ != nullptr && decided_->cacheOnly);
  }
  policy_.budget = profile.timeout;
  policy_.retriable = false;
  Special special = specialOf(top);
  if (special == Special::kBlocking && (info.name == "xread" || info.name == "xreadgroup") &&
      !xreadBlocks(args)) {
    special = Special::kNone;  // without BLOCK: an ordinary read on the shared connection
  }
  if (special == Special::kBlocking) {
    // Redis may hold it for the command's own timeout; the budget starts after that.
    const auto wait = blockingWait(info, args);
    policy_.budget = wait ? *wait + profile.timeout : std::chrono::milliseconds(0);
    return;
  }
  if (special != Special::kNone && special != Special::kMulti && special != Special::kExec &&
      special != Special::kDiscard && special != Special::kWatch && special != Special::kUnwatch &&
      special != Special::kInfo) {
    policy_.budget = std::chrono::milliseconds(0);  // connection state: never cut short
    return;
  }
  policy_.retriable =
      profile.retries.attempts > 0 && info.has(commands::kRead) && !info.has(commands::kWrite);
}

Breaker* ClientSession::breakerOf(const UpstreamConnection& conn) const {
  return conn.health() != nullptr ? conn.health()->breaker(policy_.index) : nullptr;
}

std::uint64_t ClientSession::pushTracked(Breaker* breaker) {
  const std::uint64_t seq = pushSlot();
  Slot& s = slots_.back();
  s.tracked = true;
  s.sentAt = BatchClock::now();
  s.patternId = traffic_.patternId;
  s.commandRow = traffic_.commandRow;
  s.write = traffic_.write;
  if (s.write) ++inflightWrites_;
  s.absent = traffic_.absent;
  s.endpointMetric = policy_.runtime != nullptr ? policy_.runtime->metricId : 0;
  auto& pattern = worker_.traffic().patterns[traffic_.patternId];
  WorkerStats::add(pattern.requests);
  WorkerStats::add(pattern.requestBytes, traffic_.requestBytes);
  if (traffic_.write) {
    WorkerStats::add(pattern.writes);
    pattern.valueBytes.observe(kValueBounds, traffic_.valueBytes);
  }
  if (!traffic_.key.empty() && worker_.context().config.keyTracking) {
    worker_.recordKey(traffic_.patternId, traffic_.key, traffic_.write, traffic_.valueBytes,
                      s.sentAt);
  }
  if (decided_ != nullptr) {
    if (decided_->ttlInjected > 0) WorkerStats::add(pattern.ttlInjected, decided_->ttlInjected);
    if (decided_->ttlClamped > 0) WorkerStats::add(pattern.ttlClamped, decided_->ttlClamped);
  }
  s.endpoint = policy_.runtime;
  s.endpointIndex = policy_.index;
  s.breaker = breaker;
  s.miss = policy_.miss;
  if (policy_.runtime != nullptr) {
    WorkerStats::add(worker_.stats().endpoints[policy_.runtime->metricId].requests);
    if (policy_.retriable) {
      s.retriesLeft = static_cast<std::uint8_t>(
          std::min<std::uint32_t>(policy_.runtime->profile.retries.attempts, 255));
    }
  }
  return seq;
}

void ClientSession::armDeadline(std::uint64_t seq, UpstreamConnection* conn) {
  if (policy_.budget.count() <= 0) return;
  Slot* s = findSlot(seq);
  if (s == nullptr) return;  // answered already (every part failed at once)
  s->deadline = s->sentAt + policy_.budget;
  if (conn != nullptr) s->conn = conn->weak_from_this();
  // One wake-up per session, at its earliest deadline (not one entry per request: a busy
  // client would keep a budget's worth of them alive). onDeadline re-arms for the next.
  if (wakeAt_ == Clock::time_point{} || s->deadline < wakeAt_) {
    wakeAt_ = s->deadline;
    worker_.deadlines().add(s->sentAt, policy_.budget, shared_from_this(), 0, nullptr);
  }
}

ClientSession::Step ClientSession::failNow(Breaker* breaker, Failure kind,
                                           std::string_view reason) {
  const std::uint64_t seq = pushTracked(breaker);
  if (kind != Failure::kBreakerOpen && breaker != nullptr) worker_.breakerFailure(*breaker);
  answerFailure(seq, kind, reason);
  return Step::kNext;
}

std::string ClientSession::failureReply(const EndpointRuntime* endpoint, policies::MissReply miss,
                                        Failure kind, std::string_view reason,
                                        const Breaker* breaker, bool count) {
  auto& stats = worker_.stats();
  if (endpoint == nullptr) {
    if (count) WorkerStats::add(stats.upstreamErrorsReplied);
    if (kind == Failure::kRedisError) return std::string(reason);
    return "-" + upstreamError(reason) + "\r\n";
  }
  // Counted once per client request (a split request's parts share one count).
  auto& counters = stats.endpoints[endpoint->metricId];
  auto add = [count](WorkerStats::Counter& c) {
    if (count) WorkerStats::add(c);
  };
  if (kind == Failure::kTimeout) {
    add(counters.timeouts);
  } else if (kind == Failure::kBreakerOpen) {
    add(counters.breakerRejected);
  } else {
    add(counters.failures);
  }
  const policies::Endpoint& profile = endpoint->profile;
  std::string out;
  if (profile.open && miss.shape != policies::MissShape::kNone) {
    add(counters.failOpen);
    policies::appendMissReply(out, miss, proto_);
    return out;
  }
  add(counters.failClosed);
  switch (kind) {
    case Failure::kRedisError:
      return std::string(reason);  // what Redis said (LOADING, BUSY, ...)
    case Failure::kTimeout:
      out = "-TIMEOUT keygate: endpoint '" + profile.name + "': no reply from Redis within " +
            std::to_string(profile.timeout.count()) + "ms\r\n";
      return out;
    case Failure::kBreakerOpen:
      out = "-UNAVAILABLE keygate: endpoint '" + profile.name +
            "': circuit breaker open for Redis at " + (breaker ? breaker->node : std::string("?")) +
            " after " + (breaker ? breaker->state.reason() : "failures") +
            "; requests go to Redis again within " +
            std::to_string(profile.breaker.openFor.count()) + "ms\r\n";
      return out;
    case Failure::kUnavailable:
      break;
  }
  add(stats.upstreamErrorsReplied);
  return "-" + upstreamError(reason) + "; endpoint '" + profile.name + "' fails closed\r\n";
}

bool ClientSession::answerFailure(std::uint64_t seq, Failure kind, std::string_view reason) {
  Slot* s = findSlot(seq);
  if (s == nullptr || s->ready) return false;
  const std::string bytes = failureReply(s->endpoint, s->miss, kind, reason, s->breaker);
  completeSlot(seq, bytes);
  markDirty();
  return true;
}

void ClientSession::requestFailed(std::uint64_t seq, Failure kind, std::string_view reason) {
  Slot* s = findSlot(seq);
  if (s == nullptr || s->ready) {
    WorkerStats::add(worker_.stats().lateReplies);
    noteRouteDone();
    return;
  }
  if (s->breaker != nullptr) worker_.breakerFailure(*s->breaker);
  if (s->retriesLeft > 0 && s->requestLen > 0 && scheduleRetry(seq, *s)) return;
  answerFailure(seq, kind, reason);
  noteRouteDone();
}

bool ClientSession::scheduleRetry(std::uint64_t seq, Slot& slot) {
  if (slot.endpoint == nullptr) return false;
  const auto& retries = slot.endpoint->profile.retries;
  auto wait = retries.backoff;
  if (retries.jitter.count() > 0) {
    wait += std::chrono::milliseconds(
        worker_.random().upTo(static_cast<std::uint64_t>(retries.jitter.count())));
  }
  const auto now = std::chrono::steady_clock::now();
  if (slot.deadline != std::chrono::steady_clock::time_point{} && now + wait >= slot.deadline) {
    return false;  // no room left in the budget
  }
  --slot.retriesLeft;
  WorkerStats::add(worker_.stats().endpoints[slot.endpoint->metricId].retries);
  auto timer = std::make_shared<asio::steady_timer>(worker_.io());
  timer->expires_after(wait);
  timer->async_wait([self = shared_from_this(), timer, seq](const boost::system::error_code& ec) {
    if (ec || self->closed_) return;
    self->retry(seq, 0);
  });
  return true;
}

void ClientSession::retry(std::uint64_t seq, std::uint64_t tagBits) {
  Slot* s = findSlot(seq);
  if (s == nullptr || s->ready) {
    noteRouteDone();  // answered meanwhile (deadline): the route count was kept for the retry
    maybeResume();
    return;
  }
  UpstreamConnection* conn = cluster_ ? worker_.masterUpstream(s->keySlot, proto_, id_)
                                      : &worker_.sharedUpstream(proto_, id_);
  if (conn == nullptr || conn->failed()) {
    requestFailed(seq, Failure::kUnavailable,
                  conn != nullptr ? std::string_view(conn->lastError())
                                  : std::string_view("no cluster node serves the slot"));
    flushOutput();
    return;
  }
  Breaker* breaker =
      conn->health() != nullptr ? conn->health()->breaker(s->endpointIndex) : nullptr;
  if (breaker != nullptr && !worker_.breakerAllows(*breaker)) {
    s->breaker = breaker;
    answerFailure(seq, Failure::kBreakerOpen, {});
    noteRouteDone();
    flushOutput();
    return;
  }
  s->breaker = breaker;
  conn->send(requestOf(*s), shared_from_this(), seq | tagBits);
}

bool ClientSession::onDeadline(std::uint64_t) {
  if (closed_) return false;
  const auto now = Clock::now();
  if (wakeAt_ != Clock::time_point{} && wakeAt_ <= now) wakeAt_ = {};
  // Every unanswered request whose budget has run out, in request order; then wake up again
  // at the earliest deadline left.
  Clock::time_point next{};
  for (std::uint64_t seq = headSeq_; seq < nextSeq_; ++seq) {
    Slot* s = findSlot(seq);
    if (s == nullptr || s->ready || s->deadline == Clock::time_point{}) continue;
    if (s->deadline > now) {
      if (next == Clock::time_point{} || s->deadline < next) next = s->deadline;
      continue;
    }
    if (s->fanout) {
      expireFanout(std::shared_ptr<Fanout>(s->fanout));  // the parts' nodes are not blamed
      continue;
    }
    if (s->breaker != nullptr) worker_.breakerFailure(*s->breaker);
    auto conn = s->conn.lock();
    answerFailure(seq, Failure::kTimeout, {});
    if (conn) conn->noteTimeout();  // may close it: its requests fail now, in order
    if (closed_) return false;
  }
  if (next != Clock::time_point{} && (wakeAt_ == Clock::time_point{} || next < wakeAt_)) {
    wakeAt_ = next;
    worker_.deadlines().addAt(next, shared_from_this(), 0);
  }
  flushOutput();
  maybeResume();
  return false;
}

// Traffic metrics

namespace {

// Is `reply` Redis's "no such key" answer of this shape (RESP2 or RESP3)?
bool isAbsentReply(policies::MissShape shape, std::string_view reply) {
  using policies::MissShape;
  switch (shape) {
    case MissShape::kNil:
    case MissShape::kNullArray:
      return reply == "$-1\r\n" || reply == "_\r\n" || reply == "*-1\r\n";
    case MissShape::kEmptyString:
      return reply == "$0\r\n\r\n";
    case MissShape::kZero:
      return reply == ":0\r\n";
    case MissShape::kMinusTwo:
      return reply == ":-2\r\n";
    case MissShape::kEmptyArray:
    case MissShape::kEmptyMap:
    case MissShape::kEmptySet:
      return reply == "*0\r\n" || reply == "%0\r\n" || reply == "~0\r\n";
    case MissShape::kNoneType:
      return reply == "+none\r\n";
    case MissShape::kEmptyScan:
      return reply.ends_with("\r\n*0\r\n") && reply.starts_with("*2\r\n$1\r\n0\r\n");
    case MissShape::kNils:
    case MissShape::kZeros:
    case MissShape::kNone:
      return false;
  }
  return false;
}

// Whether Redis' reply to a shareable read may be kept in the near cache: a value, never an
// error or an "absent" answer, and not a per-element array (MGET, HMGET: nils inside).
bool storableReply(policies::MissShape shape, std::string_view reply) {
  if (reply.empty() || reply[0] == '-' || reply[0] == '!') return false;
  if (shape == policies::MissShape::kNils || shape == policies::MissShape::kZeros) return false;
  return !isAbsentReply(shape, reply);
}

}  // namespace

void ClientSession::recordCompletion(const Slot& slot, std::string_view reply) {
  auto& traffic = worker_.traffic();
  const auto elapsed = BatchClock::now() - slot.sentAt;
  auto& pattern = traffic.patterns[slot.patternId];
  WorkerStats::add(pattern.replyBytes, reply.size());
  observeDuration(pattern.duration, elapsed);
  observeDuration(traffic.commands[slot.commandRow].duration, elapsed);
  if (slot.endpoint != nullptr) observeDuration(traffic.endpoints[slot.endpointMetric], elapsed);
  if (slot.absent == policies::MissShape::kNone || reply.empty() || reply[0] == '-') return;
  if (slot.absent == policies::MissShape::kNils || slot.absent == policies::MissShape::kZeros) {
    // MGET, HMGET, SMISMEMBER: each element is a hit or a miss.
    resp::ReplyReader reader(reply);
    auto header = reader.next();
    if (!header || header->type != '*') return;
    std::uint64_t hits = 0, misses = 0;
    for (std::int64_t i = 0; i < header->integer; ++i) {
      auto element = reader.next();
      if (!element) break;
      const bool absent = element->isNull || (element->type == ':' && element->integer == 0);
      ++(absent ? misses : hits);
    }
    if (hits > 0) WorkerStats::add(pattern.hits, hits);
    if (misses > 0) WorkerStats::add(pattern.misses, misses);
    return;
  }
  WorkerStats::add(isAbsentReply(slot.absent, reply) ? pattern.misses : pattern.hits);
}

// Fan-out parts

bool ClientSession::sendPart(const std::shared_ptr<Fanout>& fan, std::size_t index,
                             UpstreamConnection& conn, std::string_view request) {
  auto& part = fan->parts[index];
  part.breaker = breakerOf(conn);
  if (part.breaker != nullptr && !worker_.breakerAllows(*part.breaker)) {
    part.settled = true;
    --fan->outstanding;
    feedPart(fan, index,
             failureReply(fan->endpoint, partMiss(*fan, index), Failure::kBreakerOpen, {},
                          part.breaker, countFailure(*fan)));
    return false;
  }
  conn.send(request, fan, index);
  return true;
}

void ClientSession::feedPart(const std::shared_ptr<Fanout>& fan, std::size_t index,
                             std::string_view bytes) {
  auto& part = fan->parts[index];
  if (part.fed || fan->done) return;
  part.fed = true;
  if (!fan->merger.add(index, bytes)) return;
  fan->done = true;
  completeSlot(fan->seq, fan->merger.result());
  markDirty();
}

std::chrono::steady_clock::time_point ClientSession::fanDeadline(const Fanout& fan) {
  const Slot* slot = findSlot(fan.seq);
  return slot != nullptr ? slot->deadline : std::chrono::steady_clock::time_point{};
}

void ClientSession::reportPart(Fanout& fan, Breaker* breaker, bool failure) {
  // A node's breaker hears one outcome per client request, however many of the request's
  // slots that node serves.
  if (breaker == nullptr ||
      std::find(fan.reported.begin(), fan.reported.end(), breaker) != fan.reported.end()) {
    return;
  }
  fan.reported.push_back(breaker);
  if (failure) {
    worker_.breakerFailure(*breaker);
  } else {
    worker_.breakerSuccess(*breaker);
  }
}

bool ClientSession::countFailure(Fanout& fan) {
  const bool first = !fan.counted;
  fan.counted = true;
  return first;
}

policies::MissReply ClientSession::partMiss(const Fanout& fan, std::size_t index) {
  policies::MissReply miss = fan.miss;
  if (miss.shape == policies::MissShape::kNils) miss.count = fan.parts[index].keys;
  return miss;
}

void ClientSession::settlePart(const std::shared_ptr<Fanout>& fan) {
  if (fan->outstanding > 0 && --fan->outstanding == 0) {
    noteRouteDone();
    maybeResume();
  }
}

void ClientSession::onPartFailure(const std::shared_ptr<Fanout>& fan, std::uint64_t index,
                                  Failure kind, std::string_view reason) {
  if (closed_ || index >= fan->parts.size()) return;
  auto& part = fan->parts[index];
  if (part.settled) return;
  part.settled = true;
  reportPart(*fan, part.breaker, true);
  if (!part.fed && !fan->done) {
    feedPart(fan, index,
             failureReply(fan->endpoint, partMiss(*fan, index), kind, reason, part.breaker,
                          countFailure(*fan)));
  }
  settlePart(fan);
}

void ClientSession::expireFanout(const std::shared_ptr<Fanout>& fan) {
  if (fan->done) return;
  for (std::size_t i = 0; i < fan->parts.size() && !fan->done; ++i) {
    auto& part = fan->parts[i];
    if (part.fed) continue;
    reportPart(*fan, part.breaker, true);
    feedPart(fan, i,
             failureReply(fan->endpoint, partMiss(*fan, i), Failure::kTimeout, {}, part.breaker,
                          countFailure(*fan)));
  }
}

// ---------------------------------------------------------------------------------------------
// Cluster mode

const ClusterNode* ClientSession::masterOf(std::uint16_t slot) const {
  const SlotMap* map = worker_.slotMap();
  return map == nullptr ? nullptr : map->masterFor(slot);
}

std::string ClientSession::clusterDownError() const {
  if (worker_.slotMap() == nullptr) {
    return "CLUSTERDOWN keygate: no cluster slot map yet (no seed node has answered)";
  }
  return "CLUSTERDOWN Hash slot not served";
}

ClientSession::Step ClientSession::refuseCrossSlot() {
  WorkerStats::add(worker_.stats().clusterCrossSlot);
  return refuse(kCrossSlotError);
}

ClientSession::Step ClientSession::dispatchCluster(Args args, std::string_view raw,
                                                   const commands::CommandInfo& info) {
  if (inMulti_) return forwardInTransaction(args, raw, info);
  const bool subscribed = pubsubExpects_ > 0 || (channels_ + patterns_ + shardChannels_) > 0;
  // RESP2 subscribed mode: Redis answers (mostly refuses) on the subscribed connection. A
  // RESP3 subscriber, or a client holding only a WATCH, sends other commands the usual way.
  if (subscribed && proto_ == resp::Protocol::kResp2) return forwardDedicated(raw, Expect{});
  return forwardCluster(args, raw, info);
}

ClientSession::Step ClientSession::forwardCluster(Args args, std::string_view raw,
                                                  const commands::CommandInfo& info) {
  const ClusterRouting routing = routeInCluster(info, args, keys_);
  switch (routing.route) {
    case ClusterRoute::kSlot: {
      const bool replica =
          worker_.context().config.upstream.readFrom == config::ReadFrom::kReplicaPreferred &&
          info.has(commands::kRead) && !info.has(commands::kWrite);
      return sendToSlot(raw, routing.slot, 0, replica);
    }
    case ClusterRoute::kKeyless:
      return sendToSlot(raw, keylessSlot_, 0, false);
    case ClusterRoute::kRandom:
      return forwardAllMasters(raw, routing.merge);
    case ClusterRoute::kCrossSlot:
      return refuseCrossSlot();
    case ClusterRoute::kSplit:
      return forwardSplit(args, routing.merge);
    case ClusterRoute::kAllMasters:
      return forwardAllMasters(raw, routing.merge);
    case ClusterRoute::kScan:
      return forwardScan(args);
  }
  return refuseCrossSlot();
}

ClientSession::Step ClientSession::forwardInTransaction(Args args, std::string_view raw,
                                                        const commands::CommandInfo& info) {
  // All keys of a transaction live in one slot, as Redis Cluster requires of MULTI/EXEC.
  std::uint16_t slot = 0;
  bool hasKeys = false;
  if (!commonSlot(info, args, keys_, &slot, &hasKeys)) return refuseCrossSlot();
  const ClusterNode* node = nullptr;
  if (hasKeys) {
    if (txSlot_ >= 0 && slot != static_cast<std::uint16_t>(txSlot_)) return refuseCrossSlot();
    node = masterOf(slot);
    if (node == nullptr) return refuse(clusterDownError());
    if (!multiDeferred_ && dedicated_ && !sameNode(*dedicated_, *node)) return refuseCrossSlot();
    txSlot_ = slot;
  }
  return forwardDedicated(raw, Expect{}, node);
}

ClientSession::Step ClientSession::clusterWatch(Args args, std::string_view raw,
                                                const commands::CommandInfo& info) {
  if (inMulti_) return forwardInTransaction(args, raw, info);  // Redis answers its error
  std::uint16_t slot = 0;
  bool hasKeys = false;
  if (!commonSlot(info, args, keys_, &slot, &hasKeys)) return refuseCrossSlot();
  if (watching_ && txSlot_ >= 0 && slot != static_cast<std::uint16_t>(txSlot_)) {
    return refuseCrossSlot();
  }
  const ClusterNode* node = masterOf(slot);
  if (node == nullptr) {
    replyError(clusterDownError());
    return Step::kNext;
  }
  const Step step = forwardDedicated(raw, Expect{}, node);
  if (step == Step::kNext && dedicated_) {
    watching_ = true;
    txSlot_ = slot;
  }
  return step;
}

ClientSession::Step ClientSession::forwardDedicatedToKeys(Args args, std::string_view raw,
                                                          const commands::CommandInfo& info,
                                                          Expect expect) {
  std::uint16_t slot = 0;
  bool hasKeys = false;
  if (!commonSlot(info, args, keys_, &slot, &hasKeys)) return refuseCrossSlot();
  const ClusterNode* node = nullptr;
  if (hasKeys) {
    node = masterOf(slot);
    if (node == nullptr) {
      replyError(clusterDownError());
      return Step::kNext;
    }
  }
  return forwardDedicated(raw, std::move(expect), node);
}

ClientSession::Step ClientSession::sendToSlot(std::string_view raw, std::uint16_t slot,
                                              std::uint64_t tagBits, bool replica) {
  if (sharedRouteBlocked()) return Step::kWaitRoute;
  UpstreamConnection* conn = replica ? worker_.replicaUpstream(slot, proto_, id_) : nullptr;
  if (conn == nullptr) conn = worker_.masterUpstream(slot, proto_, id_);
  if (conn == nullptr) {
    return failNow(nullptr, Failure::kRedisError, "-" + clusterDownError() + "\r\n");
  }
  Breaker* breaker = breakerOf(*conn);
  if (breaker != nullptr && !worker_.breakerAllows(*breaker)) {
    return failNow(breaker, Failure::kBreakerOpen, {});
  }
  if (conn->failed()) {
    // The node is down (its connection waits out a backoff): maybe a failover is under way.
    worker_.requestTopologyRefresh();
    return failNow(breaker, Failure::kUnavailable, conn->lastError());
  }
  const std::uint64_t seq = pushTracked(breaker);
  Slot& s = slots_.back();
  s.keySlot = slot;
  s.requestLen = static_cast<std::uint32_t>(raw.size());
  if (tagBits != 0) s.retriesLeft = 0;
  sentLog_.append(raw);
  noteSharedSend();
  conn->send(raw, shared_from_this(), seq | tagBits);
  armDeadline(seq, conn);
  if (!hidden_.empty()) sendHidden(conn);
  return Step::kNext;
}

ClientSession::Step ClientSession::forwardSplit(Args args, MergeKind merge) {
  if (sharedRouteBlocked()) return Step::kWaitRoute;
  if (worker_.slotMap() == nullptr) {
    return failNow(nullptr, Failure::kRedisError, "-" + clusterDownError() + "\r\n");
  }
  WorkerStats::add(worker_.stats().clusterSplits);
  SplitPlan plan = splitBySlot(merge, args, &keyHashSlot);
  const std::uint64_t seq = pushTracked(nullptr);
  auto fan = std::make_shared<Fanout>(shared_from_this(), seq, ReplyMerger(plan));
  fan->endpoint = policy_.runtime;
  fan->miss = policy_.miss;
  fan->parts.resize(plan.parts.size());
  fan->outstanding = plan.parts.size();
  for (std::size_t i = 0; i < plan.parts.size(); ++i) {
    fan->parts[i].request = std::move(plan.parts[i].request);
    fan->parts[i].keySlot = plan.parts[i].slot;
    fan->parts[i].keys = static_cast<std::uint32_t>(plan.parts[i].keyOrder.size());
  }
  slots_.back().fanout = fan;
  noteSharedSend();
  for (std::size_t i = 0; i < fan->parts.size(); ++i) {
    UpstreamConnection* conn = worker_.masterUpstream(fan->parts[i].keySlot, proto_, id_);
    if (conn == nullptr) {
      onPartFailure(fan, i, Failure::kRedisError, "-" + clusterDownError() + "\r\n");
    } else {
      sendPart(fan, i, *conn, fan->parts[i].request);
    }
  }
  armDeadline(seq, nullptr);
  if (!hidden_.empty()) sendHidden(nullptr);  // each by its key's slot, behind its part
  return Step::kNext;
}

ClientSession::Step ClientSession::forwardAllMasters(std::string_view raw, MergeKind merge) {
  if (sharedRouteBlocked()) return Step::kWaitRoute;
  const SlotMap* map = worker_.slotMap();
  if (map == nullptr) {
    return failNow(nullptr, Failure::kRedisError, "-" + clusterDownError() + "\r\n");
  }
  WorkerStats::add(worker_.stats().clusterFanouts);
  auto masters = map->masters();  // a copy: sending may not change it, but be sure
  if (merge == MergeKind::kNonNil && masters.size() > 1) {
    // RANDOMKEY: the first master asked with a key answers, so start at a random one.
    thread_local std::minstd_rand random(std::random_device{}());
    std::rotate(masters.begin(), masters.begin() + random() % masters.size(), masters.end());
  }
  const std::uint64_t seq = pushTracked(nullptr);
  auto fan = std::make_shared<Fanout>(shared_from_this(), seq, ReplyMerger(merge, masters.size()));
  fan->endpoint = policy_.runtime;
  fan->miss = policy_.miss;
  fan->parts.resize(masters.size());
  fan->outstanding = masters.size();
  for (auto& part : fan->parts)
    part.byNode = true;
  slots_.back().fanout = fan;
  noteSharedSend();
  for (std::size_t i = 0; i < masters.size(); ++i)
    sendPart(fan, i, worker_.nodeUpstream(masters[i], proto_, id_), raw);
  armDeadline(seq, nullptr);
  return Step::kNext;
}

ClientSession::Step ClientSession::forwardScan(Args args) {
  if (sharedRouteBlocked()) return Step::kWaitRoute;
  const SlotMap* map = worker_.slotMap();
  if (map == nullptr) {
    return failNow(nullptr, Failure::kRedisError, "-" + clusterDownError() + "\r\n");
  }
  std::uint64_t cursor = 0;
  const auto text = args[1];
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), cursor);
  if (ec != std::errc() || end != text.data() + text.size()) {
    replyError("ERR invalid cursor");
    return Step::kNext;
  }
  const auto& order = worker_.scanOrder();
  const std::uint64_t position = cursor >> kScanNodeShift;
  if (position >= order.size()) {
    // A cursor from before the cluster shrank: the scan is over.
    replyLocal(proto_ == resp::Protocol::kResp3 ? "*2\r\n$1\r\n0\r\n*0\r\n"
                                                : "*2\r\n$1\r\n0\r\n*0\r\n");
    return Step::kNext;
  }
  std::vector<std::string_view> nodeArgs(args.begin(), args.end());
  const std::string nodeCursor = std::to_string(cursor & kScanCursorMask);
  nodeArgs[1] = nodeCursor;
  std::string request;
  resp::appendCommand(request, nodeArgs);
  const ClusterNode node = map->masters()[order[position]];
  UpstreamConnection& conn = worker_.nodeUpstream(node, proto_, id_);
  Breaker* breaker = breakerOf(conn);
  if (breaker != nullptr && !worker_.breakerAllows(*breaker)) {
    return failNow(breaker, Failure::kBreakerOpen, {});
  }
  if (conn.failed()) return failNow(breaker, Failure::kUnavailable, conn.lastError());
  const std::uint64_t seq = pushTracked(breaker);
  slots_.back().scanNode = static_cast<std::uint8_t>(position);
  slots_.back().retriesLeft = 0;
  noteSharedSend();
  conn.send(request, shared_from_this(), seq | kScanTagBit);
  armDeadline(seq, &conn);
  return Step::kNext;
}

std::string ClientSession::rewriteScanReply(std::uint8_t position, std::string_view frame) const {
  resp::ReplyReader reader(frame);
  auto header = reader.next();
  if (!header || header->type != '*' || header->integer != 2) return std::string(frame);
  auto cursorItem = reader.next();
  if (!cursorItem || cursorItem->type != '$') return std::string(frame);
  const std::string_view rest = frame.substr(reader.offset());
  std::uint64_t nodeCursor = 0;
  const auto text = cursorItem->text;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), nodeCursor);
  if (ec != std::errc() || end != text.data() + text.size() || nodeCursor > kScanCursorMask) {
    return "-ERR keygate: a cluster node answered SCAN with a cursor keygate cannot carry\r\n";
  }
  std::uint64_t next = 0;
  if (nodeCursor != 0) {
    next = (std::uint64_t{position} << kScanNodeShift) | nodeCursor;
  } else if (position + 1u < worker_.scanOrder().size()) {
    next = std::uint64_t{position + 1u} << kScanNodeShift;  // this master is done: the next
  }
  std::string out = "*2\r\n";
  resp::appendBulk(out, std::to_string(next));
  out.append(rest);
  return out;
}

bool ClientSession::followRedirect(std::string_view frame, std::string_view request,
                                   std::uint16_t keySlot, std::uint8_t& redirects,
                                   const std::shared_ptr<ReplySink>& sink, std::uint64_t tag,
                                   std::chrono::steady_clock::time_point deadline) {
  if (redirects >= kMaxRedirects) {
    WorkerStats::add(worker_.stats().clusterRedirectsExhausted);
    return false;
  }
  ++redirects;
  if (auto redirect = parseRedirect(frame)) {
    ClusterNode node = redirect->node;
    if (node.host.empty()) {
      // `:port`: the node does not know its address; it shares the host of the one we asked.
      const ClusterNode* current = masterOf(keySlot);
      node.host = current != nullptr ? current->host : worker_.context().upstream.host;
    }
    UpstreamConnection& conn = worker_.nodeUpstream(node, proto_, id_);
    if (redirect->kind == Redirect::Kind::kMoved) {
      worker_.noteMoved(redirect->slot, node);
    } else {
      WorkerStats::add(worker_.stats().clusterAsk);
      // ASKING applies to the next command on the connection: nothing can come in between.
      conn.send("*1\r\n$6\r\nASKING\r\n", ignoreReply(), 0);
    }
    conn.send(request, sink, tag);
    return true;
  }
  // TRYAGAIN (a multi-key request during a migration) or CLUSTERDOWN (a failover in progress):
  // the same request again after a short, growing pause.
  const auto wait = std::min(std::chrono::milliseconds(25) * (1 << (redirects - 1)),
                             std::chrono::milliseconds(500));
  if (deadline != std::chrono::steady_clock::time_point{} &&
      std::chrono::steady_clock::now() + wait >= deadline) {
    // Retrying would outlast the endpoint's budget: the client hears what Redis said now.
    WorkerStats::add(worker_.stats().clusterRedirectsExhausted);
    return false;
  }
  WorkerStats::add(worker_.stats().clusterRetries);
  auto timer = std::make_shared<asio::steady_timer>(worker_.io());
  timer->expires_after(wait);
  timer->async_wait([self = shared_from_this(), timer, request = std::string(request), keySlot,
                     sink, tag](const boost::system::error_code& ec) {
    if (ec || self->closed_) return;
    self->resend(request, keySlot, sink, tag);
  });
  return true;
}

void ClientSession::resend(std::string_view request, std::uint16_t keySlot,
                           const std::shared_ptr<ReplySink>& sink, std::uint64_t tag) {
  UpstreamConnection* conn = worker_.masterUpstream(keySlot, proto_, id_);
  if (conn == nullptr) {
    sink->onFailure(tag, "no cluster node serves the slot");
    return;
  }
  conn->send(request, sink, tag);
}

void ClientSession::onPartReply(const std::shared_ptr<Fanout>& fan, std::uint64_t index,
                                std::string_view frame) {
  if (closed_ || index >= fan->parts.size()) return;
  auto& part = fan->parts[index];
  if (part.settled) return;
  if (!fan->done && !part.byNode && isClusterRedirect(frame) &&
      followRedirect(frame, part.request, part.keySlot, part.redirects, fan, index,
                     fanDeadline(*fan))) {
    return;
  }
  if (part.fed || fan->done) {
    part.settled = true;
    WorkerStats::add(worker_.stats().lateReplies);
    settlePart(fan);
    return;
  }
  if (isUnavailableReply(frame)) {
    onPartFailure(fan, index, Failure::kRedisError, frame);
    return;
  }
  part.settled = true;
  reportPart(*fan, part.breaker, false);
  feedPart(fan, index, frame);
  settlePart(fan);
}

// ---------------------------------------------------------------------------------------------
// Replies from upstream

void ClientSession::onReply(std::uint64_t tag, std::string_view frame) {
  if (closed_) return;
  if (tag == kStreamTag) {
    onDedicatedFrame(frame);
  } else {
    const std::uint64_t seq = tag & ~kTagBits;
    Slot* slot = findSlot(seq);
    if (slot == nullptr || slot->ready) {
      // keygate answered it at its deadline; Redis' reply is dropped, in order.
      WorkerStats::add(worker_.stats().lateReplies);
      noteRouteDone();
      maybeResume();
      return;
    }
    if (cluster_ && isClusterRedirect(frame) && slot->requestLen > 0 &&
        followRedirect(frame, requestOf(*slot), slot->keySlot, slot->redirects, shared_from_this(),
                       tag, slot->deadline)) {
      return;  // the answer comes from the node the request was sent on to
    }
    if (isUnavailableReply(frame)) {
      requestFailed(seq, Failure::kRedisError, frame);
      markDirty();
      maybeResume();
      return;
    }
    if (slot->breaker != nullptr) worker_.breakerSuccess(*slot->breaker);
    if ((tag & kInfoTagBit) != 0) {
      completeSlot(seq, rewriteInfoReply(frame));
    } else if ((tag & kScanTagBit) != 0) {
      completeSlot(seq, rewriteScanReply(slot->scanNode, frame));
    } else {
      if (slot->flightLeader && storableReply(slot->absent, frame)) {
        worker_.reads().store(slot->flight, frame);
      }
      completeSlot(seq, frame);
    }
    noteRouteDone();
  }
  markDirty();
  maybeResume();
}

void ClientSession::markDirty() {
  if (!dirty_) {
    dirty_ = true;
    worker_.markDirty(shared_from_this());
  }
}

ClientSession::Slot* ClientSession::findSlot(std::uint64_t seq) {
  if (seq < headSeq_ || seq - headSeq_ >= slots_.size()) return nullptr;
  return &slots_[seq - headSeq_];
}

std::string_view ClientSession::requestOf(const Slot& slot) const {
  return sentLog_.view(slot.requestAt, slot.requestLen);
}

void ClientSession::trimSentLog() {
  if (slots_.empty()) {
    sentLog_.clear(kIdleBufferKeep);
    return;
  }
  // Every slot notes where the log ended when it was pushed, so the head's mark bounds what
  // unanswered requests still need. Erasing moves the rest: do it once enough is dead.
  const std::uint64_t needed = slots_.front().requestAt;
  const std::size_t dead = sentLog_.bytesBefore(needed);
  if (dead >= kIdleBufferKeep && dead * 2 >= sentLog_.size()) sentLog_.dropBefore(needed);
}

void ClientSession::onFailure(std::uint64_t tag, std::string_view reason) {
  if (closed_) return;
  if (tag != kStreamTag) {
    requestFailed(tag & ~kTagBits, Failure::kUnavailable, reason);
  } else {
    WorkerStats::add(worker_.stats().upstreamErrorsReplied);
    const std::string error = "-" + upstreamError(reason) + "\r\n";
    // The dedicated connection is gone, and with it any transaction, watch or subscription.
    const bool hadState = dedicatedActive() || resetPending_;
    auto pending = std::move(expects_);
    expects_.clear();
    for (auto& e : pending) {
      if (e.kind == ExpectKind::kSwallow) continue;
      completeSlot(e.seq, error);
      noteRouteDone();
    }
    clearConnectionState();
    resetPending_ = false;
    if (dedicated_) dedicated_->setOwner(nullptr);
    dedicated_.reset();
    if (hadState) {
      // The client believes it is inside MULTI or subscribed; continuing on another connection
      // would run its commands outside that state. Closing is what a lost Redis link looks like.
      closing_ = true;
    }
  }
  markDirty();
  if (closing_) {
    finishIfDone();
  } else {
    maybeResume();
  }
}

bool ClientSession::isPubsubMessage(std::string_view frame, bool* confirmation) {
  *confirmation = false;
  const char type = frame.empty() ? 0 : frame[0];
  const bool push = type == '>';
  if (!push && !(type == '*' && proto_ == resp::Protocol::kResp2 &&
                 (pubsubExpects_ > 0 || (channels_ + patterns_ + shardChannels_) > 0))) {
    return false;
  }
  resp::ReplyReader reader(frame);
  auto header = reader.next();
  if (!header || header->integer < 2) return push;
  auto first = reader.next();
  if (!first || (first->type != '$' && first->type != '+')) return push;
  const std::string_view kind = first->text;
  if (kind == "message" || kind == "pmessage" || kind == "smessage") return true;
  if (kind == "subscribe" || kind == "psubscribe" || kind == "ssubscribe" ||
      kind == "unsubscribe" || kind == "punsubscribe" || kind == "sunsubscribe") {
    *confirmation = true;
    return false;
  }
  return push;  // other pushes (e.g. invalidate) are out of band; other arrays are replies
}

void ClientSession::trackConfirmation(std::string_view frame) {
  resp::ReplyReader reader(frame);
  auto header = reader.next();
  auto kind = reader.next();
  auto channel = reader.next();
  auto count = reader.next();
  if (!header || !kind || !channel || !count || count->type != ':') return;
  const std::int64_t n = count->integer;
  const std::string_view k = kind->text;
  if (k == "subscribe" || k == "unsubscribe") {
    channels_ = std::max<std::int64_t>(0, n - patterns_);
  } else if (k == "psubscribe" || k == "punsubscribe") {
    patterns_ = std::max<std::int64_t>(0, n - channels_);
  } else {
    shardChannels_ = std::max<std::int64_t>(0, n);
  }
}

void ClientSession::onDedicatedFrame(std::string_view frame) {
  bool confirmation = false;
  if (isPubsubMessage(frame, &confirmation)) {
    // Out of band: Redis wrote it after every reply it had sent us before, all of which this
    // client has already been given, so it goes out now, ahead of replies still to come.
    appendOut(frame);
    if (outputBytes() > 2 * worker_.clientLimits().maxClientOutputBytes) {
      // A subscriber that does not read its messages: Redis drops such clients
      // (client-output-buffer-limit pubsub) rather than buffer without end, and so do we.
      WorkerStats::add(worker_.stats().slowSubscribersClosed);
      spdlog::get("client")->warn(
          "client {} ({}): subscriber has {} bytes of unread messages (over 2 x "
          "limits.maxClientOutputBytes); closing",
          id_, peer_, outputBytes());
      close();
    }
    return;
  }
  if (confirmation) trackConfirmation(frame);
  if (expects_.empty()) {
    spdlog::get("client")->warn("client {}: dropping an unexpected frame from Redis", id_);
    return;
  }
  Expect& e = expects_.front();
  const bool isError = !frame.empty() && (frame[0] == '-' || frame[0] == '!');
  if (e.kind == ExpectKind::kSwallow) {
    if (isError) {
      spdlog::get("client")->warn("client {}: Redis refused the transaction's MULTI: {}", id_,
                                  frame.substr(1, frame.size() > 3 ? frame.size() - 3 : 0));
    }
    expects_.pop_front();
    return;
  }
  std::string_view answer;
  bool done = true;
  switch (e.kind) {
    case ExpectKind::kOne:
    case ExpectKind::kAuth:
      answer = frame;
      break;
    case ExpectKind::kReplace:
      answer = e.replacement;
      break;
    case ExpectKind::kFrames:
      if (isError) {
        answer = frame;
        break;
      }
      e.accumulated.append(frame);
      done = --e.frames == 0;
      answer = e.accumulated;
      break;
    case ExpectKind::kUnsubscribeAll: {
      if (isError || !confirmation) {
        answer = frame;
        break;
      }
      e.accumulated.append(frame);
      const std::int64_t left = e.pubsubKind == 'p'   ? patterns_
                                : e.pubsubKind == 's' ? shardChannels_
                                                      : channels_;
      done = left == 0;
      answer = e.accumulated;
      break;
    }
    case ExpectKind::kHelloAuth:
      if (!frame.empty() && frame[0] == '+') {
        if (!e.helloName.empty()) name_ = e.helloName;
        proto_ = e.helloProto == 3 ? resp::Protocol::kResp3 : resp::Protocol::kResp2;
        scratch_.clear();
        writeHelloReply(e.helloProto);
        e.accumulated = scratch_;
        answer = e.accumulated;
      } else {
        answer = frame;
      }
      break;
    case ExpectKind::kReset:
    case ExpectKind::kSwallow:
      answer = frame;
      break;
  }
  if (!done) return;
  const ExpectKind kind = e.kind;
  const std::uint64_t seq = e.seq;
  completeSlot(seq, answer);
  expects_.pop_front();
  if (kind == ExpectKind::kFrames || kind == ExpectKind::kUnsubscribeAll) --pubsubExpects_;
  if (kind == ExpectKind::kReset) {
    resetPending_ = false;
    clearConnectionState();
    dropDedicated();
    routeInflight_ = 1;  // noteRouteDone below brings it to zero
  }
  noteRouteDone();
}

std::string ClientSession::upstreamError(std::string_view reason) const {
  std::string message = "UNAVAILABLE keygate: Redis at ";
  // Cluster: the reason names the node (UpstreamSettings::labelErrors).
  message.append(cluster_ ? std::string("a cluster node") : worker_.context().upstream.label());
  message.append(" is unavailable (");
  message.append(reason);
  message.append(")");
  return message;
}

// ---------------------------------------------------------------------------------------------
// Reply ordering and writing

std::uint64_t ClientSession::pushSlot() {
  Slot& slot = slots_.emplace_back();
  slot.requestAt = sentLog_.end();
  slot.readBatch = readBatch_;
  return nextSeq_++;
}

void ClientSession::completeSlot(std::uint64_t seq, std::string_view bytes) {
  if (closed_ || seq < headSeq_) return;
  const std::uint64_t index = seq - headSeq_;
  if (index >= slots_.size()) return;
  if (slots_[index].ready) return;  // answered at its deadline; a late reply is dropped
  {
    Slot& slot = slots_[index];
    if (slot.write && inflightWrites_ > 0) --inflightWrites_;
    if (slot.flight != 0) {
      const std::uint64_t flight = slot.flight;
      slot.flight = 0;
      // Its waiters get the same answer, whatever it is (same endpoint profile).
      if (slot.flightLeader) worker_.reads().finish(flight, bytes);
    }
  }
  if (slots_[index].tracked) recordCompletion(slots_[index], bytes);
  if (index != 0) {
    Slot& slot = slots_[index];
    slot.parkedAt = parked_.append(bytes);
    slot.parkedLen = bytes.size();
    slot.ready = true;
    storedBytes_ += bytes.size();
    return;
  }
  appendOut(bytes);
  outBatch_ = slots_.front().readBatch;
  slots_.pop_front();
  ++headSeq_;
  bool unparked = false;
  while (!slots_.empty() && slots_.front().ready) {
    const Slot& next = slots_.front();
    storedBytes_ -= next.parkedLen;
    appendOut(parked_.view(next.parkedAt, next.parkedLen));
    outBatch_ = next.readBatch;
    unparked = true;
    slots_.pop_front();
    ++headSeq_;
  }
  if (unparked) trimParked();
  if (!sentLog_.empty()) trimSentLog();
}

void ClientSession::trimParked() {
  if (storedBytes_ == 0) {
    parked_.clear(kIdleBufferKeep);
    parkedTrimAt_ = 0;
    return;
  }
  // Still some parked: once at least half the buffer is written bytes, drop those before the
  // oldest reply left (parked in arrival order, not request order: found by a scan). Written
  // bytes behind it stay; look again when the buffer has doubled. Each byte is moved a bounded
  // number of times, however long the pipeline.
  constexpr std::size_t kSlack = 64 * 1024;
  const std::size_t written = parked_.size() - storedBytes_;
  if (written < kSlack || written < storedBytes_ || parked_.size() < parkedTrimAt_) return;
  std::uint64_t oldest = parked_.end();
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].ready) oldest = std::min(oldest, slots_[i].parkedAt);
  }
  parked_.dropBefore(oldest);
  parkedTrimAt_ = 2 * parked_.size();
}

void ClientSession::replyLocal(std::string_view bytes) {
  if (slots_.empty()) {
    appendOut(bytes);
    return;
  }
  completeSlot(pushSlot(), bytes);
}

void ClientSession::replyError(std::string_view message) {
  std::string line;
  resp::appendError(line, message);
  replyLocal(line);
}

void ClientSession::appendOut(std::string_view bytes) {
  out_.append(bytes);
}

void ClientSession::resumeReading() {
  if (closed_) return;
  if (closing_) {
    finishIfDone();
  } else if (!paused_) {
    startRead();
  }
}

void ClientSession::flushOutput() {
  dirty_ = false;
  if (writeInFlight_ || flushQueued_ || out_.empty() || closed_) return;
  boost::system::error_code ec;
  // Most replies fit the socket's buffer: sent here, without an asynchronous write.
  const std::size_t n = handshaking_ ? 0 : stream_.writeNow(out_, ec);
  sent(n, ec);
}

bool ClientSession::holdPartialBatch() {
  // Bounded: a pipeline with more reply bytes than this is written as it comes.
  constexpr std::size_t kHoldBytes = 64 * 1024;
  if (slots_.empty() || slots_.front().ready || out_.empty()) return false;
  if (slots_.front().readBatch != outBatch_ || out_.size() >= kHoldBytes) return false;
  dirty_ = false;
  return true;
}

bool ClientSession::queueFlush(SocketBatch& batch, std::uint64_t cookie) {
  if (flushQueued_ || handshaking_ || !stream_.plain()) return false;
  if (writeInFlight_ || out_.empty() || closed_) return false;
  dirty_ = false;
  flushQueued_ = true;
  batch.send(stream_.nativeHandle(), out_.data(), out_.size(), cookie);
  return true;
}

void ClientSession::flushDone(int result) {
  flushQueued_ = false;
  if (closed_) return;
  boost::system::error_code ec;
  sent(SocketStream::sendResult(result, ec), ec);
}

void ClientSession::sent(std::size_t n, const boost::system::error_code& ec) {
  if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
    close();
    return;
  }
  if (n > 0) {
    WorkerStats::add(worker_.stats().bytesToClients, n);
    if (n == out_.size()) {
      out_.clear();
      if (out_.capacity() > kIdleBufferKeep) std::string().swap(out_);
      outputWritten();
      return;
    }
    out_.erase(0, n);
  }
  // The rest when the socket has room again.
  writing_.swap(out_);
  writeInFlight_ = true;
  auto onWritten = [self = shared_from_this()](const boost::system::error_code& error,
                                               std::size_t) { self->onWritten(error); };
  stream_.write(asio::buffer(writing_), std::move(onWritten));
}

void ClientSession::onWritten(const boost::system::error_code& ec) {
  writeInFlight_ = false;
  if (closed_) return;
  if (ec) {
    close();
    return;
  }
  WorkerStats::add(worker_.stats().bytesToClients, writing_.size());
  writing_.clear();
  if (writing_.capacity() > kIdleBufferKeep) std::string().swap(writing_);
  if (out_.capacity() > kIdleBufferKeep && out_.empty()) std::string().swap(out_);
  flushOutput();
  outputWritten();
}

void ClientSession::outputWritten() {
  if (closing_) {
    finishIfDone();
  } else {
    maybeResume();  // output below the bound again: reading may go on
  }
}

void ClientSession::finishIfDone() {
  if (closed_ || !closing_) return;
  if (!slots_.empty() || !out_.empty() || writeInFlight_) {
    flushOutput();
    return;
  }
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  close();
}

void ClientSession::beginDrain() {
  if (closed_ || closing_) return;
  closing_ = true;
  if (reading_) {
    // Wakes the pending read with end-of-file; replies still owed are written, then we close.
    boost::system::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_receive, ignored);
  }
  finishIfDone();
}

void ClientSession::close() {
  if (closed_) return;
  closed_ = true;
  polled_.stop();
  boost::system::error_code ignored;
  socket_.close(ignored);
  std::vector<std::uint64_t> led;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.flight != 0 && s.flightLeader && !s.ready) led.push_back(s.flight);
  }
  slots_.clear();
  // Clients waiting on this one's reads send them themselves.
  for (const std::uint64_t flight : led)
    worker_.reads().abandon(flight);
  expects_.clear();
  storedBytes_ = 0;
  parked_.release();
  sentLog_.release();
  if (dedicated_) {
    dedicated_->setOwner(nullptr);
    dedicated_->close("client disconnected");
    dedicated_.reset();
  }
  worker_.sessionClosed(id_);
}

}  // namespace keygate::proxy
