#include "proxy/ring_queue.hpp"

#include <catch2/catch.hpp>
#include <deque>
#include <memory>
#include <string>

using keygate::proxy::RingQueue;

TEST_CASE("RingQueue is a FIFO with indexing from the front, across wrap-around and growth") {
  RingQueue<int> q;
  std::deque<int> model;  // the reference
  int next = 0;
  // Pushes and pops in an uneven rhythm so the head wraps at every capacity it grows through.
  for (int round = 0; round < 200; ++round) {
    const int pushes = 1 + round % 7;
    for (int i = 0; i < pushes; ++i) {
      q.push_back(next);
      model.push_back(next);
      ++next;
    }
    const int pops = round % 5;
    for (int i = 0; i < pops && !model.empty(); ++i) {
      REQUIRE(q.front() == model.front());
      q.pop_front();
      model.pop_front();
    }
    REQUIRE(q.size() == model.size());
    REQUIRE(q.empty() == model.empty());
    for (std::size_t i = 0; i < model.size(); ++i)
      REQUIRE(q[i] == model[i]);
    if (!model.empty()) REQUIRE(q.back() == model.back());
  }
  CHECK((q.capacity() & (q.capacity() - 1)) == 0);  // a power of two
}

TEST_CASE("RingQueue emplace_back hands out a default element, also in a reused cell") {
  struct Cell {
    int value = 7;
    std::string text;
  };
  RingQueue<Cell> q;
  for (int i = 0; i < 20; ++i) {
    Cell& c = q.emplace_back();
    CHECK(c.value == 7);
    CHECK(c.text.empty());
    c.value = i;
    c.text = "request " + std::to_string(i);
    if (i % 2 == 1) q.pop_front();
  }
  CHECK(q.size() == 10);
  CHECK(q.front().value == 10);
  CHECK(q.front().text == "request 10");
}

TEST_CASE("RingQueue releases what a popped element owned at once") {
  RingQueue<std::shared_ptr<int>> q;
  auto owned = std::make_shared<int>(1);
  q.push_back(owned);
  q.push_back(std::make_shared<int>(2));
  CHECK(owned.use_count() == 2);
  q.pop_front();
  CHECK(owned.use_count() == 1);  // not held by the cell until it is reused
  q.clear();
  CHECK(q.empty());
}

TEST_CASE("RingQueue gives its array back when it empties past `keep` cells") {
  RingQueue<int> q(16);
  for (int i = 0; i < 8; ++i)
    q.push_back(i);
  while (!q.empty())
    q.pop_front();
  CHECK(q.capacity() == 8);  // within keep: kept for the next requests

  for (int i = 0; i < 100; ++i)
    q.push_back(i);
  CHECK(q.capacity() == 128);
  q.pop_front();
  CHECK(q.capacity() == 128);  // not while anything is queued
  while (!q.empty())
    q.pop_front();
  CHECK(q.capacity() == 0);

  for (int i = 0; i < 100; ++i)
    q.push_back(i);
  q.clear();
  CHECK(q.capacity() == 0);
  q.push_back(5);
  CHECK(q.front() == 5);
}
