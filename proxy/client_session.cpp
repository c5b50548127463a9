#include "proxy/client_session.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

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

}  // namespace

ClientSession::ClientSession(Worker& worker, asio::ip::tcp::socket socket, std::uint64_t id)
    : worker_(worker), socket_(std::move(socket)), id_(id), in_(0), parser_(worker.limits()) {
  peer_ = endpointText(socket_, true);
  local_ = endpointText(socket_, false);
}

ClientSession::~ClientSession() {
  if (dedicated_) dedicated_->setOwner(nullptr);
}

void ClientSession::start() {
  boost::system::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  startRead();
}

// ---------------------------------------------------------------------------------------------
// Reading and parsing

void ClientSession::startRead() {
  if (reading_ || closing_ || closed_ || paused_) return;
  reading_ = true;
  auto span = in_.prepare(kReadChunk);
  socket_.async_read_some(asio::buffer(span.data(), span.size()),
                          [self = shared_from_this()](const boost::system::error_code& ec,
                                                      std::size_t n) { self->onRead(ec, n); });
}

void ClientSession::onRead(const boost::system::error_code& ec, std::size_t n) {
  reading_ = false;
  if (closed_) return;
  if (ec) {
    if (ec == asio::error::eof) {
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
  processing_ = true;
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
  WorkerStats::add(worker_.stats().commands);
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
  return dispatchCommand(args, raw, *info, top);
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
      if (inMulti_) break;
      return handleAuth(args, raw);
    case Special::kMulti: {
      const Step step = forwardDedicated(raw, Expect{});
      if (step == Step::kNext) inMulti_ = true;
      return step;
    }
    case Special::kExec:
    case Special::kDiscard: {
      if (!inMulti_ && !dedicatedActive()) break;  // Redis answers "without MULTI"
      const bool wasMulti = inMulti_;
      const Step step = forwardDedicated(raw, Expect{});
      if (step == Step::kNext && wasMulti) {
        inMulti_ = false;
        watching_ = false;
      }
      return step;
    }
    case Special::kWatch: {
      const Step step = forwardDedicated(raw, Expect{});
      if (step == Step::kNext && !inMulti_) watching_ = true;
      return step;
    }
    case Special::kUnwatch: {
      if (!dedicatedActive() && !(route_ == dedicated_.get() && routeInflight_ > 0)) break;
      const Step step = forwardDedicated(raw, Expect{});
      if (step == Step::kNext && !inMulti_) watching_ = false;
      return step;
    }
    case Special::kSubscribe:
    case Special::kPsubscribe:
    case Special::kSsubscribe:
    case Special::kUnsubscribe:
    case Special::kPunsubscribe:
    case Special::kSunsubscribe: {
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
      const Step step = forwardDedicated(raw, std::move(expect));
      return step;
    }
    case Special::kBlocking:
      if ((info.name == "xread" || info.name == "xreadgroup") && !xreadBlocks(args)) break;
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
  if (dedicatedActive() ||
      (routeInflight_ > 0 && route_ != nullptr && route_ == dedicated_.get())) {
    return forwardDedicated(raw, Expect{});
  }
  return forwardShared(raw);
}

ClientSession::Step ClientSession::forwardShared(std::string_view raw, std::uint64_t tagBits) {
  UpstreamConnection& conn = worker_.sharedUpstream(proto_, id_);
  if (routeInflight_ > 0 && route_ != &conn) return Step::kWaitRoute;
  if (conn.failed()) {
    WorkerStats::add(worker_.stats().upstreamErrorsReplied);
    replyError(upstreamError(conn.lastError()));
    return Step::kNext;
  }
  const std::uint64_t seq = pushSlot();
  route_ = &conn;
  ++routeInflight_;
  conn.send(raw, shared_from_this(), seq | tagBits);
  return Step::kNext;
}

ClientSession::Step ClientSession::forwardDedicated(std::string_view raw, Expect expect) {
  if (routeInflight_ > 0 && (dedicated_ == nullptr || route_ != dedicated_.get())) {
    return Step::kWaitRoute;
  }
  UpstreamConnection* conn = ensureDedicated();
  if (conn == nullptr) {
    WorkerStats::add(worker_.stats().upstreamErrorsReplied);
    replyError(upstreamError(dedicated_ ? dedicated_->lastError() : "cannot connect"));
    dropDedicated();
    return Step::kNext;
  }
  expect.seq = pushSlot();
  if (expect.kind == ExpectKind::kFrames || expect.kind == ExpectKind::kUnsubscribeAll) {
    ++pubsubExpects_;
  }
  expects_.push_back(std::move(expect));
  route_ = conn;
  ++routeInflight_;
  conn->sendStream(raw);
  return Step::kNext;
}

UpstreamConnection* ClientSession::ensureDedicated() {
  if (dedicated_ && (dedicated_->failed() || dedicated_->protocol() != proto_) &&
      expects_.empty()) {
    dropDedicated();
  }
  if (!dedicated_) {
    dedicated_ = worker_.openDedicated(proto_);
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
// Replies from upstream

void ClientSession::onReply(std::uint64_t tag, std::string_view frame) {
  if (closed_) return;
  if (tag == kStreamTag) {
    onDedicatedFrame(frame);
  } else if ((tag & kInfoTagBit) != 0) {
    completeSlot(tag & ~kInfoTagBit, rewriteInfoReply(frame));
    noteRouteDone();
  } else {
    completeSlot(tag, frame);
    noteRouteDone();
  }
  if (!dirty_) {
    dirty_ = true;
    worker_.markDirty(shared_from_this());
  }
  maybeResume();
}

void ClientSession::onFailure(std::uint64_t tag, std::string_view reason) {
  if (closed_) return;
  WorkerStats::add(worker_.stats().upstreamErrorsReplied);
  const std::string error = "-" + upstreamError(reason) + "\r\n";
  if (tag != kStreamTag) {
    completeSlot(tag & ~kInfoTagBit, error);
    noteRouteDone();
  } else {
    // The dedicated connection is gone, and with it any transaction, watch or subscription.
    const bool hadState = dedicatedActive() || resetPending_;
    auto pending = std::move(expects_);
    expects_.clear();
    for (auto& e : pending) {
      completeSlot(e.seq, error);
      noteRouteDone();
    }
    pubsubExpects_ = 0;
    inMulti_ = watching_ = false;
    channels_ = patterns_ = shardChannels_ = 0;
    resetPending_ = false;
    if (dedicated_) dedicated_->setOwner(nullptr);
    dedicated_.reset();
    if (hadState) {
      // The client believes it is inside MULTI or subscribed; continuing on another connection
      // would run its commands outside that state. Closing is what a lost Redis link looks like.
      closing_ = true;
    }
  }
  if (!dirty_) {
    dirty_ = true;
    worker_.markDirty(shared_from_this());
  }
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
    inMulti_ = watching_ = false;
    channels_ = patterns_ = shardChannels_ = 0;
    pubsubExpects_ = 0;
    dropDedicated();
    routeInflight_ = 1;  // noteRouteDone below brings it to zero
  }
  noteRouteDone();
}

std::string ClientSession::upstreamError(std::string_view reason) const {
  std::string message = "UNAVAILABLE keygate: Redis at ";
  message.append(worker_.context().upstream.label());
  message.append(" is unavailable (");
  message.append(reason);
  message.append(")");
  return message;
}

// ---------------------------------------------------------------------------------------------
// Reply ordering and writing

std::uint64_t ClientSession::pushSlot() {
  slots_.emplace_back();
  return nextSeq_++;
}

void ClientSession::completeSlot(std::uint64_t seq, std::string_view bytes) {
  if (closed_ || seq < headSeq_) return;
  const std::uint64_t index = seq - headSeq_;
  if (index >= slots_.size()) return;
  if (index != 0) {
    Slot& slot = slots_[index];
    slot.data.assign(bytes);
    slot.ready = true;
    storedBytes_ += slot.data.size();
    return;
  }
  appendOut(bytes);
  slots_.pop_front();
  ++headSeq_;
  while (!slots_.empty() && slots_.front().ready) {
    storedBytes_ -= slots_.front().data.size();
    appendOut(slots_.front().data);
    slots_.pop_front();
    ++headSeq_;
  }
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

void ClientSession::flushOutput() {
  dirty_ = false;
  if (writeInFlight_ || out_.empty() || closed_) return;
  writing_.swap(out_);
  writeInFlight_ = true;
  asio::async_write(socket_, asio::buffer(writing_),
                    [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                      self->onWritten(ec);
                    });
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
  if (closing_) {
    finishIfDone();
  } else {
    maybeResume();
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
  boost::system::error_code ignored;
  socket_.close(ignored);
  slots_.clear();
  expects_.clear();
  storedBytes_ = 0;
  if (dedicated_) {
    dedicated_->setOwner(nullptr);
    dedicated_->close("client disconnected");
    dedicated_.reset();
  }
  worker_.sessionClosed(id_);
}

}  // namespace keygate::proxy
