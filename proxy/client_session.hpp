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

#include "proxy/byte_buffer.hpp"
#include "proxy/commands/command_table.hpp"
#include "proxy/resp/reply_writer.hpp"
#include "proxy/resp/request_parser.hpp"
#include "proxy/upstream_connection.hpp"

namespace keygate::proxy {

class Worker;

class ClientSession final : public ReplySink, public std::enable_shared_from_this<ClientSession> {
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

  void onReply(std::uint64_t tag, std::string_view frame) override;
  void onFailure(std::uint64_t tag, std::string_view reason) override;

  std::uint64_t id() const { return id_; }

 private:
  using Args = std::span<const std::string_view>;
  // Shared-connection tags carry the slot sequence; this bit asks for the INFO rewrite.
  static constexpr std::uint64_t kInfoTagBit = std::uint64_t{1} << 62;

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
  };

  struct Slot {
    bool ready = false;
    std::string data;
  };

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

  // reading and parsing
  void startRead();
  void onRead(const boost::system::error_code& ec, std::size_t n);
  void processInput();
  bool mustPause() const;
  void maybeResume();
  Step handleRequest(const resp::Request& request);
  Step dispatchCommand(Args args, std::string_view raw, const commands::CommandInfo& info,
                       const commands::CommandInfo* top);

  // local commands (local_commands.cpp)
  Step handlePing(Args args);
  Step handleEcho(Args args);
  Step handleHello(Args args);
  Step handleClient(Args args, std::string_view raw, bool unknownSubcommand);
  Step handleSelect(Args args, std::string_view raw);
  Step handleInfo(Args args, std::string_view raw);
  Step handleReset(std::string_view raw);
  Step handleAuth(Args args, std::string_view raw);
  void writeHelloReply(int proto);
  void appendKeygateInfo(std::string& out) const;
  Step refuse(std::string_view error);

  // routing
  // `tagBits` (kInfoTagBit) asks for a reply rewrite when the reply arrives.
  Step forwardShared(std::string_view raw, std::uint64_t tagBits = 0);
  Step forwardDedicated(std::string_view raw, Expect expect);
  bool dedicatedActive() const;
  UpstreamConnection* ensureDedicated();
  void dropDedicated();
  void onDedicatedFrame(std::string_view frame);
  bool isPubsubMessage(std::string_view frame, bool* confirmation);
  void trackConfirmation(std::string_view frame);
  void noteRouteDone();

  // replies
  std::uint64_t pushSlot();
  void completeSlot(std::uint64_t seq, std::string_view bytes);
  void replyLocal(std::string_view bytes);
  void replyError(std::string_view message);
  void appendOut(std::string_view bytes);
  void onWritten(const boost::system::error_code& ec);
  std::size_t outputBytes() const { return out_.size() + writing_.size() + storedBytes_; }
  void finishIfDone();
  std::string rewriteInfoReply(std::string_view frame) const;
  std::string upstreamError(std::string_view reason) const;

  Worker& worker_;
  asio::ip::tcp::socket socket_;
  const std::uint64_t id_;
  std::string peer_;
  std::string local_;

  ByteBuffer in_;
  resp::RequestParser parser_;
  resp::Request request_;
  std::string scratch_;  // local replies and re-encoded inline commands

  std::deque<Slot> slots_;
  std::uint64_t headSeq_ = 0;
  std::uint64_t nextSeq_ = 0;
  std::size_t storedBytes_ = 0;
  std::string out_;
  std::string writing_;
  bool writeInFlight_ = false;
  bool reading_ = false;
  bool paused_ = false;
  bool processing_ = false;
  bool closing_ = false;  // no more requests; close when all replies are written
  bool closed_ = false;
  bool dirty_ = false;

  // The upstream connection this client's in-flight requests are on, and how many.
  const void* route_ = nullptr;
  std::uint32_t routeInflight_ = 0;
  bool waitingRoute_ = false;

  std::shared_ptr<UpstreamConnection> dedicated_;
  std::deque<Expect> expects_;

  // Connection state as Redis would keep it.
  resp::Protocol proto_ = resp::Protocol::kResp2;
  std::string name_;
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
