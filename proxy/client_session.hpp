#pragma once

// One client connection. The request path, left to right:
//
//   socket --read--> ByteBuffer --RequestParser--> Request (args are views into the buffer)
//        --> CommandTable row (arity, flags) --> local command? --> answer in place
//        --> route: shared upstream (pipelined with other clients) or this session's dedicated
//            upstream (MULTI/WATCH, pub/sub, blocking commands, AUTH checks)
//        --> UpstreamConnection FIFO --> reply frame --> slot in `slots_` (request order)
//        --> completed prefix of `slots_` appended to `out_` --> socket
//
// Replies always leave in request order: every request takes a slot when it is parsed, local
// answers fill their slot at once, upstream answers when they arrive, and only the completed
// prefix is written. A client's requests are in flight on at most one upstream connection at a
// time; switching connections waits until the previous one has answered, so a command never
// overtakes an earlier one from the same client.
//
// Backpressure: reading stops while the client has maxPipelinedRequests replies outstanding or
// more than maxClientOutputBytes of replies it has not read; it resumes as they drain.

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "policies/acl.hpp"
#include "policies/fail_open.hpp"
#include "policies/registry_policy.hpp"
#include "proxy/byte_buffer.hpp"
#include "proxy/cluster_routing.hpp"
#include "proxy/commands/command_table.hpp"
#include "proxy/deadline_queue.hpp"
#include "proxy/node_health.hpp"
#include "proxy/readiness_poller.hpp"
#include "proxy/resp/reply_writer.hpp"
#include "proxy/resp/request_parser.hpp"
#include "proxy/ring_queue.hpp"
#include "proxy/slot_map.hpp"
#include "proxy/stream_log.hpp"
#include "proxy/tls.hpp"
#include "proxy/upstream_connection.hpp"

namespace keygate::proxy {

class Worker;
struct EndpointRuntime;

class ClientSession final : public ReplySink,
                            public DeadlineTarget,
                            public ReadinessPoller::Reader,
                            public std::enable_shared_from_this<ClientSession> {
 public:
  ClientSession(Worker& worker, asio::ip::tcp::socket socket, std::uint64_t id);
  ~ClientSession() override;

  void start();
  // Stop reading; close once every outstanding reply has been written.
  void beginDrain();
  // Close now.
  void close();
  // Write whatever replies are ready (called by the worker after an upstream batch).
  void flushOutput();
  // The same, with other clients' writes in one batch (Worker::flushSessions): queues the send
  // and returns true, and then flushDone() gets its result; or returns false, having done
  // nothing else: then flushOutput() (nothing to write, a write in flight, TLS, or already
  // queued in this batch).
  bool queueFlush(SocketBatch& batch, std::uint64_t cookie);
  // Cluster mode (Worker::flushDirty asks only then): true while the replies ready to write are
  // only part of what the client sent in one read and the rest is still being answered by other
  // masters. Writing them now would wake the client once per master instead of once per pipeline;
  // the next reply marks it dirty again.
  bool holdPartialBatch();
  void flushDone(int result);
  // After Worker::deferTurnEnd: read the next requests (or finish closing).
  void resumeReading();

  void onReply(std::uint64_t tag, std::string_view frame) override;
  void onFailure(std::uint64_t tag, std::string_view reason) override;
  bool onDeadline(std::uint64_t tag) override;
  asio::mutable_buffer readBuffer() override;
  void readDone(int result) override;

  std::uint64_t id() const { return id_; }

  // Coalescing (proxy/read_sharing.hpp). The flight request `seq` waited on was answered with
  // `reply`; or its leader went away and this request is to be sent itself (false: it needs
  // nothing any more).
  void flightDone(std::uint64_t seq, std::string_view reply);
  bool leadFlight(std::uint64_t seq);

 private:
  using Args = std::span<const std::string_view>;
  // Shared-connection tags carry the slot sequence; these bits ask for a reply rewrite.
  static constexpr std::uint64_t kInfoTagBit = std::uint64_t{1} << 62;
  static constexpr std::uint64_t kScanTagBit = std::uint64_t{1} << 61;  // cluster SCAN cursor
  static constexpr std::uint64_t kTagBits = kInfoTagBit | kScanTagBit;
  // Cluster: MOVED / ASK / TRYAGAIN / CLUSTERDOWN followed per request before the error is
  // passed on. Retries wait 25, 50, 100, 200, 400, then 500 ms: about 3.3 s in all, longer than
  // a failover keeps a cluster answering CLUSTERDOWN (node timeout + election).
  static constexpr std::uint8_t kMaxRedirects = 10;

  class Fanout;

  // What handling a request decided.
  enum class Step : std::uint8_t {
    kNext,       // done with this request, parse the next
    kWaitRoute,  // not consumed: wait until the other upstream connection has answered
    kStop,       // stop reading (QUIT, protocol error, fatal state loss)
  };

  // How a request sent on the dedicated connection is answered (pub/sub confirmations come as
  // one frame per channel; some replies are rewritten by keygate).
  enum class ExpectKind : std::uint8_t {
    kOne,             // one frame
    kFrames,          // `frames` confirmation frames
    kUnsubscribeAll,  // confirmations until no subscription of `pubsubKind` is left
    kHelloAuth,       // AUTH reply; on +OK answer HELLO `helloProto`
    kAuth,            // AUTH reply, passed through; on +OK the session is authenticated
    kReplace,         // one frame, answered with `replacement` instead
    kReset,           // RESET's reply; then the dedicated connection is released
    kSwallow,         // cluster: the reply to a MULTI keygate sent late; no client slot
  };

  // Why a request gets no answer from Redis (docs/endpoints.md).
  enum class Failure : std::uint8_t {
    kTimeout,      // no reply within the endpoint's budget
    kUnavailable,  // connection refused, reset or failed; no node for the slot
    kBreakerOpen,  // the circuit breaker towards the node is open: not sent at all
    kRedisError,   // Redis answered LOADING, BUSY, MASTERDOWN, CLUSTERDOWN or TRYAGAIN
  };

  struct Slot {
    bool ready = false;
    std::uint8_t redirects = 0;    // cluster: redirects and retries followed so far
    std::uint8_t scanNode = 0;     // cluster SCAN: position in scan order of the master asked
    std::uint16_t keySlot = 0;     // cluster: the hash slot the request was routed by
    std::uint32_t requestLen = 0;  // cluster: the request's bytes in sentLog_, kept until
    std::uint64_t requestAt = 0;   //          answered (for redirects); 0 length: none kept
    std::uint64_t parkedAt = 0;    // the reply, once ready (out of order): its offset in the
    std::size_t parkedLen = 0;     //   parked_ stream, and its length
    // Endpoint profile (null: not sent to Redis under one, e.g. answered locally).
    EndpointRuntime* endpoint = nullptr;
    Breaker* breaker = nullptr;       // told the outcome
    policies::MissReply miss;         // what a failure answers under `onFailure: open`
    std::uint16_t endpointIndex = 0;  // in the endpoint set in force when it was sent
    std::uint8_t retriesLeft = 0;     // idempotent reads: resends left after a failure
    std::chrono::steady_clock::time_point deadline{};  // retries must fit before it
    std::shared_ptr<Fanout> fanout;  // cluster: the parts of a split or fanned-out request
    // Traffic metrics (proxy/traffic_stats.hpp), recorded when the slot is answered.
    bool tracked = false;
    std::uint16_t patternId = 0;
    std::uint16_t commandRow = 0;
    std::uint16_t endpointMetric = 0;
    policies::MissShape absent = policies::MissShape::kNone;  // reads: the "no such key" reply
    std::chrono::steady_clock::time_point sentAt{};
    std::weak_ptr<UpstreamConnection> conn;  // told of a timeout (timeoutsBeforeReconnect)
    bool write = false;                      // counted in inflightWrites_
    // Coalescing / near-cache fill (ReadSharing): the flight this request leads or waits on.
    bool flightLeader = false;
    std::uint64_t flight = 0;
    std::uint32_t readBatch = 0;  // processInput() call that parsed it (holdPartialBatch)
  };

  // Which kind of upstream connection the client's in-flight requests are on.
  // kFlight: waiting on another client's identical read (ReadSharing); nothing else is sent
  // until it is answered, since that read may go out on another connection than this client's.
  enum class RouteKind : std::uint8_t { kNone, kShared, kDedicated, kFlight };

  struct Expect {
    std::uint64_t seq = 0;
    ExpectKind kind = ExpectKind::kOne;
    std::uint32_t frames = 0;
    char pubsubKind = 0;  // 'c' channels, 'p' patterns, 's' shard channels
    int helloProto = 0;
    std::string helloName;
    std::string accumulated;
    std::string replacement;
  };

  // The endpoint profile of the request being dispatched (choosePolicy).
  struct RequestPolicy {
    std::uint16_t index = 0;
    EndpointRuntime* runtime = nullptr;
    policies::MissReply miss;
    std::chrono::milliseconds budget{0};  // 0: no deadline (subscriptions, BLPOP ... 0)
    bool retriable = false;               // an idempotent read under a profile with retries
  };

  // endpoint profiles (docs/endpoints.md)
  void choosePolicy(Args args, const commands::CommandInfo& info, const commands::CommandInfo& top);
  // A slot for a request sent to Redis under the current policy; `breaker` hears the outcome.
  std::uint64_t pushTracked(Breaker* breaker);
  void armDeadline(std::uint64_t seq, UpstreamConnection* conn);
  Breaker* breakerOf(const UpstreamConnection& conn) const;
  // Answers a request that cannot go to Redis now (breaker open, connection down) as its
  // profile says, without sending it.
  Step failNow(Breaker* breaker, Failure kind, std::string_view reason);
  // A request's failure: tells the breaker, retries an idempotent read while the budget
  // allows, else answers as the profile says. False: the slot was already answered.
  void requestFailed(std::uint64_t seq, Failure kind, std::string_view reason);
  bool scheduleRetry(std::uint64_t seq, Slot& slot);
  void retry(std::uint64_t seq, std::uint64_t tagBits);
  bool answerFailure(std::uint64_t seq, Failure kind, std::string_view reason);
  std::string failureReply(const EndpointRuntime* endpoint, policies::MissReply miss, Failure kind,
                           std::string_view reason, const Breaker* breaker, bool count = true);
  void onPartFailure(const std::shared_ptr<Fanout>& fan, std::uint64_t index, Failure kind,
                     std::string_view reason);
  void feedPart(const std::shared_ptr<Fanout>& fan, std::size_t index, std::string_view bytes);
  void settlePart(const std::shared_ptr<Fanout>& fan);
  void reportPart(Fanout& fan, Breaker* breaker, bool failure);
  bool countFailure(Fanout& fan);
  static policies::MissReply partMiss(const Fanout& fan, std::size_t index);
  std::chrono::steady_clock::time_point fanDeadline(const Fanout& fan);
  void expireFanout(const std::shared_ptr<Fanout>& fan);
  // A split or fanned-out part to `conn`; false when it was answered at once (breaker open).
  bool sendPart(const std::shared_ptr<Fanout>& fan, std::size_t index, UpstreamConnection& conn,
                std::string_view request);

  // reading and parsing
  void startRead();
  void readNow();
  asio::mutable_buffer prepareRead();
  void onRead(const boost::system::error_code& ec, std::size_t n);
  // After a send of out_ (flushOutput, flushDone): `n` bytes went, `ec` says why not more.
  void sent(std::size_t n, const boost::system::error_code& ec);
  void processInput();
  bool mustPause() const;
  void maybeResume();
  Step handleRequest(const resp::Request& request);
  Step dispatchCommand(Args args, std::string_view raw, const commands::CommandInfo& info,
                       const commands::CommandInfo* top);
  // The key registry's verdict (policies/registry_policy.hpp), then dispatchCommand.
  Step applyRegistry(const policies::CompiledRegistry& registry, Args args, std::string_view raw,
                     const commands::CommandInfo& info, const commands::CommandInfo& top);
  void sendHidden(UpstreamConnection* conn);
  // Near cache and coalescing (docs/near-cache.md): answers a shareable read from the near
  // cache, joins an identical read in flight, or sends it as a flight others may join. False:
  // the request takes the ordinary path.
  bool shareRead(Args args, std::string_view raw, Step& step);
  // A write (or anything not read-only) to keys of near-cache / coalesce patterns.
  void noteWrites(Args args, const commands::CommandInfo& info);
  void sendHiddenDedicated(UpstreamConnection& conn);

  // local commands (local_commands.cpp)
  Step handlePing(Args args);
  Step handleEcho(Args args);
  Step handleHello(Args args);
  Step handleClient(Args args, std::string_view raw, bool unknownSubcommand);
  Step handleSelect(Args args, std::string_view raw);
  Step handleInfo(Args args, std::string_view raw);
  Step handleReset(std::string_view raw);
  Step handleAuth(Args args, std::string_view raw);
  // ACL: refuses a request the connection's user may not run (or any before AUTH). True with
  // `step` set when refused.
  bool aclRefuses(const commands::CommandInfo& info, const commands::CommandInfo& top, Step& step);
  // AUTH user password against the ACL; replies with an error and returns false on failure.
  bool aclAuthenticate(std::string_view user, std::string_view password);
  const std::vector<std::uint8_t>* aclPatterns(const policies::CompiledRegistry& registry);
  void writeHelloReply(int proto);
  void appendKeygateInfo(std::string& out) const;
  Step refuse(std::string_view error);

  // routing
  // A keyless request on a shared connection (cluster: the session's keyless master).
  // `tagBits` (kInfoTagBit) asks for a reply rewrite when the reply arrives.
  Step forwardShared(std::string_view raw, std::uint64_t tagBits = 0);
  // `node` (cluster): the node the dedicated connection must reach; null: the one it has, or the
  // session's keyless master.
  Step forwardDedicated(std::string_view raw, Expect expect, const ClusterNode* node = nullptr);
  bool dedicatedActive() const;
  bool sharedRouteBlocked() const;
  void noteSharedSend();
  UpstreamConnection* ensureDedicated(const ClusterNode* node);
  void dropDedicated();
  void onDedicatedFrame(std::string_view frame);
  bool isPubsubMessage(std::string_view frame, bool* confirmation);
  void trackConfirmation(std::string_view frame);
  void noteRouteDone();
  void clearConnectionState();

  // cluster mode (cluster_routing.hpp says where each command goes)
  Step dispatchCluster(Args args, std::string_view raw, const commands::CommandInfo& info);
  Step forwardCluster(Args args, std::string_view raw, const commands::CommandInfo& info);
  Step forwardInTransaction(Args args, std::string_view raw, const commands::CommandInfo& info);
  Step clusterWatch(Args args, std::string_view raw, const commands::CommandInfo& info);
  // On the dedicated connection to the master of argv's keys (blocking commands, SSUBSCRIBE);
  // keys in several slots: CROSSSLOT; no keys: the connection the session has.
  Step forwardDedicatedToKeys(Args args, std::string_view raw, const commands::CommandInfo& info,
                              Expect expect);
  Step sendToSlot(std::string_view raw, std::uint16_t slot, std::uint64_t tagBits, bool replica);
  Step forwardSplit(Args args, MergeKind merge);
  Step forwardAllMasters(std::string_view raw, MergeKind merge);
  Step forwardScan(Args args);
  Step refuseCrossSlot();
  const ClusterNode* masterOf(std::uint16_t slot) const;
  bool followRedirect(std::string_view frame, std::string_view request, std::uint16_t keySlot,
                      std::uint8_t& redirects, const std::shared_ptr<ReplySink>& sink,
                      std::uint64_t tag, std::chrono::steady_clock::time_point deadline);
  void resend(std::string_view request, std::uint16_t keySlot,
              const std::shared_ptr<ReplySink>& sink, std::uint64_t tag);
  void onPartReply(const std::shared_ptr<Fanout>& fan, std::uint64_t index, std::string_view frame);
  std::string rewriteScanReply(std::uint8_t node, std::string_view frame) const;
  Slot* findSlot(std::uint64_t seq);
  std::string_view requestOf(const Slot& slot) const;
  void trimSentLog();
  void markDirty();

  // replies
  std::uint64_t pushSlot();
  void completeSlot(std::uint64_t seq, std::string_view bytes);
  void replyLocal(std::string_view bytes);
  void replyError(std::string_view message);
  void appendOut(std::string_view bytes);
  void onWritten(const boost::system::error_code& ec);
  // After a write completed (at once or asynchronously): finish closing, or resume reading.
  void outputWritten();
  std::size_t outputBytes() const { return out_.size() + writing_.size() + storedBytes_; }
  void finishIfDone();
  std::string rewriteInfoReply(std::string_view frame) const;
  std::string upstreamError(std::string_view reason) const;
  std::string clusterDownError() const;

  Worker& worker_;
  asio::ip::tcp::socket socket_;
  // Reads and writes: socket_, or listener TLS (ServerContext::listenerTls) over it.
  SocketStream stream_{socket_};
  bool handshaking_ = false;
  const std::uint64_t id_;
  std::string peer_;
  std::string local_;

  ByteBuffer in_;
  resp::RequestParser parser_;
  resp::Request request_;
  std::string scratch_;  // local replies and re-encoded inline commands

  // Key registry: per-request scratch, the request as rewritten, hidden commands to send
  // behind it (and, inside MULTI, behind EXEC).
  struct HiddenCommand {
    std::string request;
    std::uint16_t slot = 0;
  };
  policies::EvaluateScratch evalScratch_;
  policies::Decision decision_;
  std::vector<std::string_view> rewrittenArgs_;
  std::string rewrittenRaw_;
  std::vector<HiddenCommand> hidden_;
  std::vector<HiddenCommand> txHidden_;
  const policies::Decision* decided_ = nullptr;  // this request's registry decision, if any
  RequestPolicy policy_;
  using Clock = std::chrono::steady_clock;
  // When this session's wake-up in the worker's DeadlineQueue is due ({}: none pending).
  Clock::time_point wakeAt_{};
  // This request's traffic labels (set by choosePolicy, copied into its slot).
  struct RequestTraffic {
    std::uint16_t patternId = 0;
    std::uint16_t commandRow = 0;
    policies::MissShape absent = policies::MissShape::kNone;
    bool write = false;
    std::uint32_t requestBytes = 0;
    std::uint64_t valueBytes = 0;  // writes: the largest argument that is not a key
    std::string_view key;          // the first key, when it matched a key pattern
  };
  RequestTraffic traffic_;
  bool rehandling_ = false;  // the request being handled waited for its route: counted already
  void recordCompletion(const Slot& slot, std::string_view reply);
  void trimParked();
  // The profile the client's name selects, for the endpoint set of generation endpointGen_.
  int nameEndpoint_ = -1;
  std::string nameFor_;
  std::uint64_t endpointGen_ = ~std::uint64_t{0};

  RingQueue<Slot> slots_;
  // Cluster: the bytes of requests still unanswered, in send order (Slot::requestAt).
  StreamLog sentLog_;
  std::uint64_t headSeq_ = 0;
  std::uint64_t nextSeq_ = 0;
  std::uint32_t inflightWrites_ = 0;  // unanswered writes: no near-cache hit may overtake one
  std::size_t storedBytes_ = 0;       // bytes of parked replies still to be written
  // Replies that arrived before an earlier request's (cluster: another master answered first),
  // in arrival order (Slot::parkedAt). Emptied whenever nothing parked is left, trimmed of the
  // written prefix otherwise (trimParked).
  StreamLog parked_;
  std::size_t parkedTrimAt_ = 0;  // trimParked looks again once parked_ is this large
  std::string out_;
  std::uint32_t readBatch_ = 0;  // processInput() calls so far
  std::uint32_t outBatch_ = 0;   // readBatch of the last reply appended to out_
  std::string writing_;
  bool writeInFlight_ = false;
  bool reading_ = false;  // a read is posted or in flight
  // Plain TCP: the worker's poller watches the socket (polled_), and readable_ says whether it
  // may hold data; when it does not, the next read waits for the poller's readBuffer().
  ReadinessPoller::Registration polled_;
  std::size_t readSize_ = 0;  // of the buffer the read in progress fills
  bool readable_ = true;
  bool flushQueued_ = false;  // out_ is in a SocketBatch being run
  bool paused_ = false;
  bool processing_ = false;
  bool closing_ = false;  // no more requests; close when all replies are written
  bool closed_ = false;
  bool dirty_ = false;

  // What this client's in-flight requests are on, and how many. Shared requests keep their
  // order per slot as long as the worker's routing (epoch) and the protocol stay the same;
  // when either changes, or between shared and dedicated, new requests wait for the old ones.
  RouteKind routeKind_ = RouteKind::kNone;
  std::uint32_t routeInflight_ = 0;
  std::uint64_t routeEpoch_ = 0;
  resp::Protocol routeProto_ = resp::Protocol::kResp2;
  bool waitingRoute_ = false;

  // cluster mode
  const bool cluster_;
  const std::uint16_t keylessSlot_;  // keyless commands go to this slot's master
  std::vector<commands::KeyRef> keys_;
  bool multiDeferred_ = false;  // MULTI answered, not yet sent: it goes with the first command
  bool txAborted_ = false;      // a command of the deferred transaction could not be queued
  std::int32_t txSlot_ = -1;    // the slot of this client's WATCH / transaction keys

  std::shared_ptr<UpstreamConnection> dedicated_;
  std::deque<Expect> expects_;

  // Connection state as Redis would keep it.
  resp::Protocol proto_ = resp::Protocol::kResp2;
  std::string name_;
  // ACL (ServerContext::acl): the user this connection authenticated as (null: none yet), and
  // its allowed registry patterns for the registry generation they were computed for.
  const policies::Acl::User* aclUser_ = nullptr;
  std::vector<std::uint8_t> aclPatterns_;
  const policies::CompiledRegistry* aclPatternsFor_ = nullptr;
  std::uint64_t aclPatternsGeneration_ = ~std::uint64_t{0};
  std::string libName_;
  std::string libVersion_;
  bool inMulti_ = false;
  bool watching_ = false;
  std::int64_t channels_ = 0;
  std::int64_t patterns_ = 0;
  std::int64_t shardChannels_ = 0;
  std::uint32_t pubsubExpects_ = 0;
  bool resetPending_ = false;

  friend class SessionTestPeer;
};

}  // namespace keygate::proxy
