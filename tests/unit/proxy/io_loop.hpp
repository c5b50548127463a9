#pragma once

// Driving an io_context from a test, one handler at a time, with no sleeps.

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>

namespace keygate::proxy::test {

// Runs the io_context until `done` or a generous bound; returns whether `done` came.
inline bool runUntil(boost::asio::io_context& io, const std::function<bool()>& done) {
  using namespace std::chrono_literals;
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (!done() && std::chrono::steady_clock::now() < until) {
    io.restart();
    io.run_one_for(10ms);
  }
  return done();
}

// Runs every handler that is ready now (and the reactor, without blocking), a few times over.
// Socket writes are attempted at once, so what a handler would write has been written when
// this returns.
inline void settle(boost::asio::io_context& io) {
  for (int i = 0; i < 5; ++i) {
    io.restart();
    io.poll();
  }
}

}  // namespace keygate::proxy::test
