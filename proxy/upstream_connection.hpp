#pragma once

// One TCP connection from a worker to Redis.
//
//   shared:    many client sessions pipeline requests into it; a FIFO pairs each reply with
//              the session (ReplySink) and tag that asked. Replies come back in send order.
//   dedicated: owned by one session for MULTI/WATCH, (P|S)SUBSCRIBE and blocking commands;
//              every reply frame goes to that session, which knows how many frames each
//              request produces (pub/sub confirmations, pushes).
//
// The connection performs its handshake (AUTH, HELLO <proto>) before anything queued, so
// callers may send while it is still connecting. When it fails, every request waiting on it is
// told (onFailure) at once; it never reconnects itself: the worker replaces it.
//
// Deferred sends (shared connections, settings.deferSendsAbove): requests parsed in one turn of
// the event loop leave in one write. Beyond that, while Redis is busy with a deep batch (more
// than deferSendsAbove requests written and unanswered), new requests wait in keygate for that
// batch's replies instead of following it in small writes: each of those writes would cost
// Redis a wake-up, a read and a reply write, and on a machine whose CPUs the client, keygate and
// Redis share, those are the throughput. A held request waits at most until the replies of the
// requests ahead of it arrive, which Redis answers first anyway (docs/benchmarks.md).

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/byte_buffer.hpp"
#include "proxy/readiness_poller.hpp"
#include "proxy/resp/limits.hpp"
#include "proxy/resp/reply_scanner.hpp"
#include "proxy/resp/reply_writer.hpp"
#include "proxy/ring_queue.hpp"
#include "proxy/stats.hpp"
#include "proxy/tls.hpp"

namespace keygate::proxy {

namespace asio = boost::asio;

// Receives replies for requests sent on an upstream connection.
class ReplySink {
 public:
  // Tag of every frame from a dedicated connection (its owner tracks what each frame answers).
  static constexpr std::uint64_t kStreamTag = ~std::uint64_t{0};

  virtual ~ReplySink() = default;
  // A complete reply frame for the request tagged `tag`. `frame` is valid during the call only.
  virtual void onReply(std::uint64_t tag, std::string_view frame) = 0;
  // The request tagged `tag` will get no reply: the connection failed (`reason` says why).
  virtual void onFailure(std::uint64_t tag, std::string_view reason) = 0;
};

struct UpstreamSettings {
  std::string host;
  std::uint16_t port = 0;
  std::string username;
  std::string password;
  std::chrono::milliseconds connectTimeout{1000};
  resp::Limits limits;
  // Cluster replicas: READONLY after the handshake, so they serve reads of their master's slots.
  bool readOnly = false;
  // Cluster: failure reasons start with the node's address (one of many, so say which).
  bool labelErrors = false;
  // Closed (and replaced by the worker) after this many requests in a row got no reply within
  // their budget: the link is likely dead (no RST from a vanished host). 0: never.
  std::uint32_t timeoutsBeforeReconnect = 5;
  // Shared connections: while more than this many requests sent await their replies, requests
  // that come meanwhile are held and leave together, in one write, once a read of replies
  // brings the number at or under it. 0: every turn's requests leave at once.
  std::uint32_t deferSendsAbove = 128;
  // TLS (upstream.tls): the shared client context (null: plain TCP); the name sent as SNI and
  // checked in Redis's certificate (empty: `host`); verify false skips the check.
  std::shared_ptr<asio::ssl::context> tls;
  std::string tlsServerName;
  bool tlsVerify = true;
  std::string label() const { return host + ":" + std::to_string(port); }
};

// The circuit breakers towards one Redis node on one worker: one per endpoint profile, by the
// index of the profile in the registry in force. Owned by the worker and never freed, so
// connections and requests may point at it.
struct NodeHealth;

class UpstreamConnection final : public ReadinessPoller::Reader,
                                 public std::enable_shared_from_this<UpstreamConnection> {
 public:
  enum class Kind : std::uint8_t { kShared, kDedicated };
  enum class State : std::uint8_t { kConnecting, kReady, kFailed };

  // Called once, on the owning worker's thread, when a connection reaches kReady or kFailed.
  using StateCallback = std::function<void(UpstreamConnection&, State)>;

  UpstreamConnection(asio::io_context& io, const UpstreamSettings& settings, resp::Protocol proto,
                     Kind kind, WorkerStats& stats);
  ~UpstreamConnection();

  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  void start(StateCallback onState = {});

  // Queues one request (complete RESP bytes). Shared: the reply goes to sink->onReply(tag).
  void send(std::string_view request, std::shared_ptr<ReplySink> sink, std::uint64_t tag);

  // Dedicated: queues bytes whose reply frames all go to the owner (see setOwner).
  void sendStream(std::string_view request);
  // Dedicated: the sink for every frame (tag 0). Raw pointer: the owner detaches before dying.
  void setOwner(ReplySink* owner) { owner_ = owner; }
  // Runs after each read's frames have all been dispatched (the worker flushes client output).
  void setBatchHook(std::function<void()> hook) { batchHook_ = std::move(hook); }

  // Closes the socket; waiting requests get onFailure(reason).
  void close(std::string_view reason);

  // A request sent here was answered by keygate because its budget ran out (its reply, when
  // it comes, is dropped by the session). Too many in a row close the connection.
  void noteTimeout();

  void setHealth(NodeHealth* health) { health_ = health; }
  NodeHealth* health() const { return health_; }
  // The connection completed its handshake at some point (it is not a failed connect).
  bool everReady() const { return everReady_; }

  State state() const { return state_; }
  bool failed() const { return state_ == State::kFailed; }
  resp::Protocol protocol() const { return proto_; }
  std::size_t inflight() const { return fifo_.size(); }
  const UpstreamSettings& settings() const { return settings_; }
  // Redis version reported by the upstream's HELLO reply, empty until known.
  const std::string& serverVersion() const { return serverVersion_; }
  const std::string& lastError() const { return lastError_; }

 private:
  struct Inflight {
    std::shared_ptr<ReplySink> sink;
    std::uint64_t tag = 0;
  };

  enum class HandshakeStep : std::uint8_t { kAuth, kHello, kReadOnly };

  void connect(const asio::ip::tcp::resolver::results_type& endpoints);
  void onConnected(const boost::system::error_code& ec);
  void onTransportReady();
  void startRead();
  asio::mutable_buffer prepareRead();
  void readNow();
  asio::mutable_buffer readBuffer() override;
  void readDone(int result) override;
  std::size_t idleKeep() const;
  void onRead(const boost::system::error_code& ec, std::size_t n);
  void dispatch(std::string_view frame);
  bool handleHandshakeReply(std::string_view frame);
  void scheduleFlush();
  void flush();
  bool holdForReplies() const;
  void fail(std::string_view reason);
  void setState(State s);

  asio::io_context& io_;
  UpstreamSettings settings_;
  resp::Protocol proto_;
  Kind kind_;
  WorkerStats& stats_;
  asio::ip::tcp::socket socket_;
  // Reads and writes: socket_, or TLS over it when settings_.tls is set.
  SocketStream stream_{socket_};
  asio::steady_timer connectTimer_;
  asio::ip::tcp::resolver resolver_;
  State state_ = State::kConnecting;
  StateCallback onState_;

  std::string out_;            // queued, not yet written
  std::string writing_;        // being written
  std::size_t unwritten_ = 0;  // requests in out_: the last ones in fifo_
  bool holding_ = false;       // out_ waits for replies (deferSendsAbove)
  bool connected_ = false;
  bool writeInFlight_ = false;
  bool flushScheduled_ = false;

  ByteBuffer in_;
  std::size_t readChunk_ = 16 * 1024;
  std::size_t lastReadSize_ = 0;
  // Plain TCP: read when the io_context's poller says so (see ClientSession).
  ReadinessPoller::Registration polled_;
  bool readable_ = true;
  bool readPosted_ = false;
  resp::ReplyScanner scanner_;
  RingQueue<Inflight> fifo_;
  std::deque<HandshakeStep> handshake_;  // replies still expected, in order
  ReplySink* owner_ = nullptr;
  std::function<void()> batchHook_;
  std::string serverVersion_;
  std::string lastError_;
  NodeHealth* health_ = nullptr;
  std::uint32_t timeoutsInARow_ = 0;
  bool everReady_ = false;
};

}  // namespace keygate::proxy
