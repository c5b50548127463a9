#include "proxy/tls.hpp"

namespace keygate::proxy {

namespace {

// TLS 1.2 or newer only; no compression (CRIME), no renegotiation from clients.
void harden(asio::ssl::context& context) {
  boost::system::error_code ignored;
  context.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                          asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                          asio::ssl::context::no_tlsv1_1 | asio::ssl::context::no_compression,
                      ignored);
  SSL_CTX_set_options(context.native_handle(), SSL_OP_NO_RENEGOTIATION);
}

bool loadKeyPair(asio::ssl::context& context, const std::string& certFile,
                 const std::string& keyFile, std::string& error) {
  boost::system::error_code ec;
  context.use_certificate_chain_file(certFile, ec);
  if (ec) {
    error = "cannot load certificate '" + certFile + "': " + ec.message();
    return false;
  }
  context.use_private_key_file(keyFile, asio::ssl::context::pem, ec);
  if (ec) {
    error = "cannot load private key '" + keyFile + "': " + ec.message();
    return false;
  }
  if (SSL_CTX_check_private_key(context.native_handle()) != 1) {
    error = "private key '" + keyFile + "' does not match certificate '" + certFile + "'";
    return false;
  }
  return true;
}

}  // namespace

std::shared_ptr<asio::ssl::context> makeUpstreamTlsContext(const config::UpstreamTlsConfig& tls,
                                                           std::string& error) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  harden(*context);
  boost::system::error_code ec;
  if (tls.caFile.empty()) {
    context->set_default_verify_paths(ec);
  } else {
    context->load_verify_file(tls.caFile, ec);
  }
  if (ec) {
    error = "cannot load CA certificates" +
            (tls.caFile.empty() ? std::string(" (system store)") : " '" + tls.caFile + "'") + ": " +
            ec.message();
    return nullptr;
  }
  if (!tls.certFile.empty() && !loadKeyPair(*context, tls.certFile, tls.keyFile, error)) {
    return nullptr;
  }
  return context;
}

std::shared_ptr<asio::ssl::context> makeListenerTlsContext(const config::ClientTlsConfig& tls,
                                                           std::string& error) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  harden(*context);
  if (!loadKeyPair(*context, tls.certFile, tls.keyFile, error)) return nullptr;
  if (!tls.caFile.empty()) {
    boost::system::error_code ec;
    context->load_verify_file(tls.caFile, ec);
    if (ec) {
      error = "cannot load client CA certificates '" + tls.caFile + "': " + ec.message();
      return nullptr;
    }
    context->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, ec);
  }
  return context;
}

}  // namespace keygate::proxy
