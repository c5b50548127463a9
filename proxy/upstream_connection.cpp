#include "proxy/upstream_connection.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/write.hpp>

#include "proxy/batch_clock.hpp"
#include "proxy/resp/reply_reader.hpp"

namespace keygate::proxy {

namespace {
constexpr std::size_t kMaxReadChunk = 1024 * 1024;
// Buffer kept when idle: a shared connection carries many clients' pipelines and reuses its
// buffers batch after batch; a dedicated one (one client) gives big ones back.
constexpr std::size_t kSharedBufferKeep = kMaxReadChunk + 64 * 1024;
constexpr std::size_t kDedicatedBufferKeep = 64 * 1024;
// Held requests past this many bytes go out anyway: holding is for many small requests.
constexpr std::size_t kMaxHeldBytes = 256 * 1024;
}  // namespace

UpstreamConnection::UpstreamConnection(asio::io_context& io, const UpstreamSettings& settings,
                                       resp::Protocol proto, Kind kind, WorkerStats& stats)
    : io_(io),
      settings_(settings),
      proto_(proto),
      kind_(kind),
      stats_(stats),
      socket_(io),
      connectTimer_(io),
      resolver_(io),
      scanner_(settings.limits) {}

UpstreamConnection::~UpstreamConnection() = default;

void UpstreamConnection::start(StateCallback onState) {
  onState_ = std::move(onState);

  // Handshake first: everything callers queue while we connect goes out behind it.
  std::string handshake;
  if (!settings_.password.empty()) {
    if (settings_.username.empty()) {
      resp::appendCommand(handshake, {"AUTH", settings_.password});
    } else {
      resp::appendCommand(handshake, {"AUTH", settings_.username, settings_.password});
    }
    handshake_.push_back(HandshakeStep::kAuth);
  }
  resp::appendCommand(handshake, {"HELLO", proto_ == resp::Protocol::kResp3 ? "3" : "2"});
  handshake_.push_back(HandshakeStep::kHello);
  if (settings_.readOnly) {
    resp::appendCommand(handshake, {"READONLY"});
    handshake_.push_back(HandshakeStep::kReadOnly);
  }
  out_.insert(0, handshake);

  connectTimer_.expires_after(settings_.connectTimeout);
  connectTimer_.async_wait([self = shared_from_this()](const boost::system::error_code& tec) {
    if (!tec && self->state_ == State::kConnecting) {
      self->fail("connect timeout");
    }
  });
  boost::system::error_code ec;
  auto address = asio::ip::make_address(settings_.host, ec);
  if (!ec) {
    connect(asio::ip::tcp::resolver::results_type::create(
        asio::ip::tcp::endpoint(address, settings_.port), settings_.host,
        std::to_string(settings_.port)));
    return;
  }
  // A host name (Redis 7 cluster nodes may announce one): resolved here, on the worker's
  // io_context, bounded by the same connect timeout; every address is tried in turn.
  resolver_.async_resolve(
      settings_.host, std::to_string(settings_.port),
      [self = shared_from_this()](const boost::system::error_code& rec,
                                  asio::ip::tcp::resolver::results_type r) {
        if (self->state_ != State::kConnecting) return;
        if (rec) {
          self->fail("cannot resolve " + self->settings_.host + ": " + rec.message());
          return;
        }
        self->connect(r);
      });
}

void UpstreamConnection::connect(const asio::ip::tcp::resolver::results_type& endpoints) {
  asio::async_connect(
      socket_, endpoints,
      [self = shared_from_this()](const boost::system::error_code& cec,
                                  const asio::ip::tcp::endpoint&) { self->onConnected(cec); });
}

void UpstreamConnection::onConnected(const boost::system::error_code& ec) {
  if (state_ == State::kFailed) return;
  if (ec) {
    fail(ec.message());
    return;
  }
  boost::system::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  if (!settings_.tls) {
    onTransportReady();
    return;
  }
  // TLS: handshake inside the connect timeout, then the RESP handshake as over plain TCP.
  SocketStream::Tls& tls = stream_.enableTls(*settings_.tls);
  const std::string& name =
      settings_.tlsServerName.empty() ? settings_.host : settings_.tlsServerName;
  // SNI only for a name: RFC 6066 forbids an IP address there.
  boost::system::error_code notAddress;
  asio::ip::make_address(name, notAddress);
  if (notAddress) SSL_set_tlsext_host_name(tls.native_handle(), name.c_str());
  if (settings_.tlsVerify) {
    tls.set_verify_mode(asio::ssl::verify_peer);
    tls.set_verify_callback(asio::ssl::host_name_verification(name));
  } else {
    tls.set_verify_mode(asio::ssl::verify_none);
  }
  tls.async_handshake(asio::ssl::stream_base::client,
                      [self = shared_from_this()](const boost::system::error_code& hec) {
                        if (self->state_ == State::kFailed) return;
                        if (hec) {
                          self->fail("TLS handshake failed: " + hec.message());
                          return;
                        }
                        self->onTransportReady();
                      });
}

void UpstreamConnection::onTransportReady() {
  connected_ = true;
  if (stream_.plain()) polled_.start(io_, socket_.native_handle(), *this);
  startRead();
  flush();
}

void UpstreamConnection::send(std::string_view request, std::shared_ptr<ReplySink> sink,
                              std::uint64_t tag) {
  if (state_ == State::kFailed) {
    sink->onFailure(tag, lastError_);
    return;
  }
  out_.append(request);
  fifo_.push_back(Inflight{std::move(sink), tag});
  ++unwritten_;
  scheduleFlush();
}

void UpstreamConnection::sendStream(std::string_view request) {
  if (state_ == State::kFailed) return;
  out_.append(request);
  scheduleFlush();
}

void UpstreamConnection::scheduleFlush() {
  if (flushScheduled_ || writeInFlight_) return;
  flushScheduled_ = true;
  // Deferred so that every request parsed in this event-loop turn, from any client, leaves in
  // one write: that batching is what lets one connection carry many clients cheaply.
  asio::post(io_, [self = shared_from_this()] {
    self->flushScheduled_ = false;
    self->flush();
  });
}

void UpstreamConnection::flush() {
  if (writeInFlight_ || out_.empty() || state_ == State::kFailed) return;
  if (!connected_) return;  // the handshake and everything behind it go out once connected
  if (holdForReplies()) {   // the replies of what is in flight flush it (onRead)
    if (!holding_) WorkerStats::add(stats_.deferredSends);
    holding_ = true;
    return;
  }
  holding_ = false;
  unwritten_ = 0;
  writing_.swap(out_);
  writeInFlight_ = true;
  auto onWritten = [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
    self->writeInFlight_ = false;
    if (ec) {
      self->fail(ec.message());
      return;
    }
    self->writing_.clear();
    if (self->writing_.capacity() > self->idleKeep()) {
      std::string().swap(self->writing_);
    }
    self->flush();
  };
  stream_.write(asio::buffer(writing_), std::move(onWritten));
}

bool UpstreamConnection::holdForReplies() const {
  const std::size_t awaiting = fifo_.size() - unwritten_;
  return kind_ == Kind::kShared && settings_.deferSendsAbove > 0 && handshake_.empty() &&
         awaiting > settings_.deferSendsAbove && out_.size() < kMaxHeldBytes;
}

std::size_t UpstreamConnection::idleKeep() const {
  return kind_ == Kind::kShared ? kSharedBufferKeep : kDedicatedBufferKeep;
}

asio::mutable_buffer UpstreamConnection::prepareRead() {
  std::size_t want = readChunk_;
  if (scanner_.bytesWanted() > in_.size()) {
    want = std::max(want, scanner_.bytesWanted() - in_.size());
  }
  auto span = in_.prepare(want);
  lastReadSize_ = span.size();
  return asio::buffer(span.data(), span.size());
}

void UpstreamConnection::startRead() {
  if (!polled_.active()) {  // TLS
    auto onRead = [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
      self->onRead(ec, n);
    };
    stream_.readSome(prepareRead(), std::move(onRead));
    return;
  }
  if (!readable_ || readPosted_) return;  // else the poller reads when Redis sends more
  // The last read filled the buffer: Redis may have more queued. Read on a turn of its own.
  readPosted_ = true;
  asio::post(io_, [self = shared_from_this()] {
    self->readPosted_ = false;
    self->readNow();
  });
}

asio::mutable_buffer UpstreamConnection::readBuffer() {
  readable_ = true;
  if (readPosted_ || state_ == State::kFailed) return {};
  return prepareRead();
}

void UpstreamConnection::readNow() {
  if (state_ == State::kFailed) return;
  readDone(stream_.readNow(prepareRead()));
}

void UpstreamConnection::readDone(int result) {
  auto self = shared_from_this();  // a sink told of a reply may drop its last reference to us
  if (state_ == State::kFailed) return;
  boost::system::error_code ec;
  bool drained = false;
  const std::size_t n = SocketStream::readResult(result, lastReadSize_, ec, drained);
  if (drained) readable_ = false;
  if (ec == asio::error::would_block) return;
  onRead(ec, n);
}

void UpstreamConnection::onRead(const boost::system::error_code& ec, std::size_t n) {
  if (state_ == State::kFailed) return;
  if (ec) {
    fail(SocketStream::closedByPeer(ec) ? "connection closed by Redis" : ec.message());
    return;
  }
  // A read that filled the buffer means Redis has more queued: read bigger next time, so one
  // read carries a whole pipelined batch and each client gets its replies in one write.
  if (n == lastReadSize_ && readChunk_ < kMaxReadChunk) readChunk_ *= 2;
  in_.commit(n);
  // Keep this connection alive while sinks run: a sink may close it.
  auto self = shared_from_this();
  const BatchClock::Scope batch;  // the replies of one read complete at one clock read
  while (!in_.empty()) {
    auto result = scanner_.scan(in_.readable());
    if (result.status == resp::ScanStatus::kIncomplete) break;
    if (result.status == resp::ScanStatus::kError) {
      fail(std::string("protocol error from Redis: ") + std::string(result.error));
      return;
    }
    dispatch(in_.readable().substr(0, result.consumed));
    if (state_ == State::kFailed) {
      if (batchHook_) batchHook_();
      return;
    }
    in_.consume(result.consumed);
  }
  flush();  // what was held while these replies' requests were in flight, unless still held
  if (batchHook_) batchHook_();
  in_.shrinkIfEmpty(idleKeep());
  if (in_.capacity() < readChunk_) readChunk_ = std::max<std::size_t>(16 * 1024, in_.capacity());
  startRead();
}

void UpstreamConnection::dispatch(std::string_view frame) {
  if (!handshake_.empty()) {
    if (!handleHandshakeReply(frame)) return;
    handshake_.pop_front();
    if (handshake_.empty()) setState(State::kReady);
    return;
  }
  if (kind_ == Kind::kDedicated) {
    timeoutsInARow_ = 0;
    if (owner_ != nullptr) owner_->onReply(ReplySink::kStreamTag, frame);
    return;
  }
  if (fifo_.empty()) {
    fail("unexpected reply from Redis with no request waiting");
    return;
  }
  const Inflight entry = std::move(fifo_.front());
  fifo_.pop_front();
  timeoutsInARow_ = 0;
  entry.sink->onReply(entry.tag, frame);
}

bool UpstreamConnection::handleHandshakeReply(std::string_view frame) {
  const char type = frame.empty() ? 0 : frame[0];
  const HandshakeStep step = handshake_.front();
  if (type == '-' || type == '!') {
    std::string text(frame.substr(1));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
      text.pop_back();
    const char* what = step == HandshakeStep::kHello      ? "HELLO refused by Redis: "
                       : step == HandshakeStep::kReadOnly ? "READONLY refused by Redis: "
                                                          : "AUTH refused by Redis: ";
    fail(what + text);
    return false;
  }
  if (step == HandshakeStep::kHello) {
    // HELLO answers a map (RESP3) or a flat array (RESP2) of field/value pairs.
    resp::ReplyReader reader(frame);
    auto header = reader.next();
    if (header && (header->type == '%' || header->type == '*')) {
      bool nextIsVersion = false;
      while (auto element = reader.next()) {
        if (nextIsVersion) {
          serverVersion_ = std::string(element->text);
          break;
        }
        nextIsVersion =
            (element->type == '$' || element->type == '+') && element->text == "version";
      }
    }
  }
  return true;
}

void UpstreamConnection::close(std::string_view reason) {
  fail(reason);
}

void UpstreamConnection::noteTimeout() {
  if (state_ == State::kFailed || settings_.timeoutsBeforeReconnect == 0) return;
  if (++timeoutsInARow_ < settings_.timeoutsBeforeReconnect) return;
  WorkerStats::add(stats_.upstreamTimeoutCloses);
  fail(std::to_string(timeoutsInARow_) +
       " requests in a row got no reply within their budget; reconnecting");
}

void UpstreamConnection::fail(std::string_view reason) {
  if (state_ == State::kFailed) return;
  auto self = shared_from_this();  // sinks told below may drop their last reference to us
  const bool wasReady = state_ == State::kReady;
  lastError_ =
      settings_.labelErrors ? settings_.label() + ": " + std::string(reason) : std::string(reason);
  boost::system::error_code ignored;
  connectTimer_.cancel();
  resolver_.cancel();
  polled_.stop();
  socket_.close(ignored);
  if (wasReady) {
    WorkerStats::add(stats_.upstreamDisconnects);
  } else {
    WorkerStats::add(stats_.upstreamConnectFailures);
  }
  setState(State::kFailed);
  // Every waiting request is told now, not at its timeout: Redis being down is known at once.
  auto waiting = std::move(fifo_);
  for (std::size_t i = 0; i < waiting.size(); ++i)
    waiting[i].sink->onFailure(waiting[i].tag, lastError_);
  if (kind_ == Kind::kDedicated && owner_ != nullptr)
    owner_->onFailure(ReplySink::kStreamTag, lastError_);
  out_.clear();
  unwritten_ = 0;
  holding_ = false;
  if (batchHook_) batchHook_();
}

void UpstreamConnection::setState(State s) {
  state_ = s;
  if (s == State::kReady) {
    everReady_ = true;
    boost::system::error_code ignored;
    connectTimer_.cancel();
    WorkerStats::add(stats_.upstreamConnects);
  }
  if (onState_) {
    auto callback = onState_;
    callback(*this, s);
  }
}

}  // namespace keygate::proxy
