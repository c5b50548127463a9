#pragma once

// TLS contexts (Asio SSL over OpenSSL 3) built once at start-up from the config: one client
// context for every connection to Redis (upstream.tls), one server context for the listener
// (tls). Errors come back as text for the start-up log; nothing here throws.

#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "config/config.hpp"

namespace keygate::proxy {

namespace asio = boost::asio;

// Null with `error` set when a file cannot be loaded.
std::shared_ptr<asio::ssl::context> makeUpstreamTlsContext(const config::UpstreamTlsConfig& tls,
                                                           std::string& error);
std::shared_ptr<asio::ssl::context> makeListenerTlsContext(const config::ClientTlsConfig& tls,
                                                           std::string& error);

// A connection's byte stream: its TCP socket, or TLS over it once enableTls() was called. Client
// sessions and upstream connections read and write through it, so neither branches on TLS.
class SocketStream {
 public:
  using Tls = asio::ssl::stream<asio::ip::tcp::socket&>;

  explicit SocketStream(asio::ip::tcp::socket& socket) : socket_(socket) {}

  // Wraps the socket in TLS (before the handshake); returns the TLS stream to configure.
  Tls& enableTls(asio::ssl::context& context) {
    tls_ = std::make_unique<Tls>(socket_, context);
    return *tls_;
  }

  template <typename Buffer, typename Handler>
  void readSome(const Buffer& buffer, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffer, std::forward<Handler>(handler));
    } else {
      socket_.async_read_some(buffer, std::forward<Handler>(handler));
    }
  }

  template <typename Buffer, typename Handler>
  void write(const Buffer& buffer, Handler&& handler) {
    if (tls_) {
      asio::async_write(*tls_, buffer, std::forward<Handler>(handler));
    } else {
      asio::async_write(socket_, buffer, std::forward<Handler>(handler));
    }
  }

  bool plain() const { return !tls_; }

  // Plain TCP: reads what the kernel holds now, without waiting (MSG_DONTWAIT, whatever the
  // socket's mode) and without an asynchronous operation; see ReadinessPoller for why. Returns
  // what recv() did: bytes, 0 at end of stream, or -errno (readResult() makes sense of it).
  int readNow(asio::mutable_buffer buffer) {
    const ssize_t n = ::recv(socket_.native_handle(), buffer.data(), buffer.size(), MSG_DONTWAIT);
    return n >= 0 ? static_cast<int>(n) : -errno;
  }

  // A recv() `result` (bytes, 0 or -errno) into `buffer_size` bytes, as a read's outcome: the
  // bytes read; `ec` eof at end of stream (as async_read_some reports it), would_block when there
  // was nothing, another error; `drained` when the read left the receive queue empty (a short
  // read, or nothing to read), so that only an edge-triggered readiness event can say there is
  // more. An interrupted call reads nothing and leaves `ec` clear and `drained` unset.
  static std::size_t readResult(int result, std::size_t buffer_size, boost::system::error_code& ec,
                                bool& drained) {
    if (result > 0) {
      ec.clear();
      drained = static_cast<std::size_t>(result) < buffer_size;
      return static_cast<std::size_t>(result);
    }
    ec = result == 0 ? boost::system::error_code(asio::error::eof) : errorOf(result);
    drained = ec == asio::error::would_block;
    return 0;
  }

  // What a send() `result` (bytes or -errno) says: bytes sent, `ec` would_block when none could
  // be, or another error.
  static std::size_t sendResult(int result, boost::system::error_code& ec) {
    if (result >= 0) {
      ec.clear();
      return static_cast<std::size_t>(result);
    }
    ec = errorOf(result);
    return 0;
  }

  // A system call's -errno as an error: would_block for EAGAIN, none for EINTR (nothing was
  // done), the errno otherwise.
  static boost::system::error_code errorOf(int result) {
    if (result == -EAGAIN || result == -EWOULDBLOCK) return asio::error::would_block;
    if (result == -EINTR) return {};
    return {-result, boost::system::system_category()};
  }

  int nativeHandle() { return socket_.native_handle(); }

  // Plain TCP on a socket in non-blocking mode: sends what the kernel takes now, without an
  // asynchronous operation (no handler to schedule and run). Returns the bytes sent; `ec` is
  // would_block when none could be. TLS: sends nothing (0, no error): use write().
  std::size_t writeNow(std::string_view bytes, boost::system::error_code& ec) {
    if (tls_) return 0;
    return socket_.send(asio::buffer(bytes.data(), bytes.size()), 0, ec);
  }

  // The peer closed the connection (TLS: also without a close_notify).
  static bool closedByPeer(const boost::system::error_code& ec) {
    return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
  }

 private:
  asio::ip::tcp::socket& socket_;
  std::unique_ptr<Tls> tls_;
};

}  // namespace keygate::proxy
