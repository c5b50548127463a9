#!/usr/bin/python3
"""redis-py (Debian python3-redis) through keygate: pipelines, transactions, pub/sub, blocking
commands, big values and many concurrent connections."""

import os
import threading
import time

import redis

import keygate_harness as h


class RedisPyTest(h.KeygateTestCase):

    def client(self, **kwargs) -> redis.Redis:
        kwargs.setdefault("socket_timeout", h.scaled(30))
        kwargs.setdefault("socket_connect_timeout", h.scaled(10))
        r = redis.Redis(host=h.HOST, port=self.keygate.port, **kwargs)
        self.addCleanup(r.close)
        return r

    def test_pipeline_10000(self):
        r = self.client()
        n = 10000
        pipe = r.pipeline(transaction=False)
        expected = []
        for i in range(n):
            kind = i % 4
            if kind == 0:
                pipe.set(f"p:{i}", f"v{i}")
                expected.append(True)
            elif kind == 1:
                pipe.get(f"p:{i - 1}")
                expected.append(f"v{i - 1}".encode())
            elif kind == 2:
                pipe.incr("p:counter")
                expected.append(i // 4 + 1)
            else:
                pipe.rpush("p:list", i)
                expected.append(i // 4 + 1)
        results = pipe.execute()
        self.assertEqual(len(results), n)
        for i, (got, want) in enumerate(zip(results, expected)):
            if got != want:
                self.fail(f"pipeline reply {i}: got {got!r}, expected {want!r}")
        self.assertEqual(r.llen("p:list"), n // 4)
        self.assertEqual(r.lrange("p:list", 0, 2), [b"3", b"7", b"11"])

    def test_multi_exec(self):
        r = self.client()
        pipe = r.pipeline(transaction=True)
        pipe.set("tx:a", "1").incr("tx:a").get("tx:a").lpush("tx:l", "x", "y").lrange("tx:l", 0, -1)
        self.assertEqual(pipe.execute(), [True, 2, b"2", 2, [b"y", b"x"]])

        # A command error inside EXEC is reported in its slot, the others still run.
        pipe = r.pipeline(transaction=True)
        pipe.set("tx:s", "str").incr("tx:s").set("tx:after", "ok")
        results = pipe.execute(raise_on_error=False)
        self.assertEqual(results[0], True)
        self.assertIsInstance(results[1], redis.ResponseError)
        self.assertEqual(results[2], True)
        self.assertEqual(r.get("tx:after"), b"ok")

        # DISCARD leaves nothing behind and the connection is usable afterwards.
        # (raw connection: redis-py's SET callback turns +QUEUED into False)
        conn = self.kg()
        self.assertEqual(conn.call("MULTI"), "OK")
        self.assertEqual(conn.call("SET", "tx:discarded", "1"), "QUEUED")
        self.assertEqual(conn.call("DISCARD"), "OK")
        self.assertIsNone(conn.call("GET", "tx:discarded"))
        self.assertEqual(conn.call("PING"), "PONG")

    def test_watch(self):
        r = self.client()
        other = self.client()
        r.set("w:key", 10)

        # Unmodified watched key: the transaction commits.
        with r.pipeline() as pipe:
            pipe.watch("w:key")
            value = int(pipe.get("w:key"))
            pipe.multi()
            pipe.set("w:key", value + 1)
            self.assertEqual(pipe.execute(), [True])
        self.assertEqual(r.get("w:key"), b"11")

        # Another connection modifies the watched key between WATCH and EXEC: WatchError.
        with r.pipeline() as pipe:
            pipe.watch("w:key")
            value = int(pipe.get("w:key"))
            self.assertEqual(other.set("w:key", 100), True)
            pipe.multi()
            pipe.set("w:key", value + 1)
            with self.assertRaises(redis.WatchError):
                pipe.execute()
        self.assertEqual(r.get("w:key"), b"100")

        # UNWATCH after a modification: the transaction commits again.
        with r.pipeline() as pipe:
            pipe.watch("w:key")
            other.set("w:key", 5)
            pipe.unwatch()
            pipe.multi()
            pipe.incr("w:key")
            self.assertEqual(pipe.execute(), [6])

        # The connections still work normally.
        self.assertEqual(r.incr("w:key"), 7)
        self.assertEqual(other.get("w:key"), b"7")

    def _next_message(self, p, timeout=10.0):
        deadline = time.monotonic() + h.scaled(timeout)
        while time.monotonic() < deadline:
            msg = p.get_message(timeout=0.2)
            if msg is not None:
                return msg
        self.fail("no pub/sub message within %.0fs" % h.scaled(timeout))

    def test_pubsub(self):
        r = self.client()
        publisher = self.client()
        p = r.pubsub()
        self.addCleanup(p.close)

        p.subscribe("ch:one", "ch:two")
        p.psubscribe("news.*")
        confirmations = [self._next_message(p) for _ in range(3)]
        self.assertEqual([(m["type"], m["channel"], m["data"]) for m in confirmations],
                         [("subscribe", b"ch:one", 1), ("subscribe", b"ch:two", 2),
                          ("psubscribe", b"news.*", 3)])

        sent = []
        for i in range(100):
            channel = ("ch:one", "ch:two", "news.tech")[i % 3]
            payload = f"message-{i}"
            self.assertEqual(publisher.publish(channel, payload), 1)
            sent.append((channel.encode(), payload.encode()))
        received = []
        for _ in sent:
            m = self._next_message(p)
            self.assertIn(m["type"], ("message", "pmessage"), m)
            if m["type"] == "pmessage":
                self.assertEqual(m["pattern"], b"news.*")
            received.append((m["channel"], m["data"]))
        self.assertEqual(received, sent)

        # PING in subscribed mode (redis-py health checks use it).
        p.ping()
        pong = self._next_message(p)
        self.assertEqual(pong["type"], "pong", pong)

        p.unsubscribe()
        p.punsubscribe()
        left = [self._next_message(p) for _ in range(3)]
        self.assertEqual(sorted((m["type"], m["channel"]) for m in left),
                         [("punsubscribe", b"news.*"), ("unsubscribe", b"ch:one"),
                          ("unsubscribe", b"ch:two")])
        self.assertEqual(left[-1]["data"], 0)
        self.assertEqual(p.get_message(timeout=0.1), None)

        # Same connection, back to normal commands.
        conn = p.connection
        self.assertIsNotNone(conn)
        conn.send_command("SET", "after:pubsub", "yes")
        self.assertEqual(conn.read_response(), b"OK")
        conn.send_command("GET", "after:pubsub")
        self.assertEqual(conn.read_response(), b"yes")
        conn.send_command("PING")
        self.assertEqual(conn.read_response(), b"PONG")
        # Messages published now are not delivered to it any more.
        self.assertEqual(publisher.publish("ch:one", "late"), 0)

    def test_blpop_answered_by_concurrent_lpush(self):
        r = self.client()
        pusher = self.client()
        result = {}

        def pop():
            try:
                result["value"] = r.blpop(["bl:queue"], timeout=int(h.scaled(20)))
            except Exception as exc:  # reported below
                result["error"] = exc

        t = threading.Thread(target=pop, daemon=True)
        t.start()
        self.wait_blocked_clients(1)
        self.assertEqual(pusher.lpush("bl:queue", "job-1"), 1)
        t.join(h.scaled(20))
        self.assertFalse(t.is_alive(), "BLPOP did not return after LPUSH")
        self.assertNotIn("error", result)
        self.assertEqual(result["value"], (b"bl:queue", b"job-1"))
        # The blocking connection is usable afterwards; the list is empty now.
        self.assertEqual(r.llen("bl:queue"), 0)
        self.assertEqual(r.set("bl:after", "1"), True)

    def test_blpop_timeout_returns_none(self):
        r = self.client()
        start = time.monotonic()
        self.assertIsNone(r.blpop(["bl:empty"], timeout=1))
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertEqual(r.ping(), True)
        # Other connections were never stalled by the blocked one.
        other = self.client()
        done = {}

        def pop():
            done["v"] = r.brpop(["bl:empty2"], timeout=2)

        t = threading.Thread(target=pop, daemon=True)
        t.start()
        self.wait_blocked_clients(1)
        t0 = time.monotonic()
        for i in range(50):
            self.assertEqual(other.set(f"nb:{i}", i), True)
        self.assertLess(time.monotonic() - t0, h.scaled(1.5), "commands stalled behind a blocked client")
        t.join(h.scaled(20))
        self.assertFalse(t.is_alive())
        self.assertIsNone(done["v"])

    def test_10mb_values(self):
        r = self.client(socket_timeout=h.scaled(60))
        value = os.urandom(10 * 1024 * 1024)
        self.assertTrue(r.set("big:0", value))
        got = r.get("big:0")
        self.assertEqual(len(got), len(value))
        self.assertTrue(got == value, "10 MB value came back different")
        self.assertEqual(self.direct(timeout=60).call("STRLEN", "big:0"), len(value))

        values = [os.urandom(10 * 1024 * 1024) for _ in range(3)]
        pipe = r.pipeline(transaction=False)
        for i, v in enumerate(values):
            pipe.set(f"big:{i + 1}", v)
        for i in range(3):
            pipe.get(f"big:{i + 1}")
        results = pipe.execute()
        self.assertEqual(results[:3], [True, True, True])
        for i, v in enumerate(values):
            self.assertTrue(results[3 + i] == v, f"pipelined 10 MB value {i} differs")

    def test_200_concurrent_connections(self):
        n_clients, rounds = 200, 150
        barrier = threading.Barrier(n_clients, timeout=h.scaled(60))
        errors = []
        lock = threading.Lock()

        def worker(idx: int):
            try:
                r = redis.Redis(host=h.HOST, port=self.keygate.port,
                                socket_timeout=h.scaled(60), socket_connect_timeout=h.scaled(20),
                                single_connection_client=True)
                try:
                    r.ping()
                    barrier.wait()  # all 200 connections are open at once from here on
                    for j in range(rounds):
                        key = f"c:{idx}:{j % 10}"
                        value = f"{idx}-{j}"
                        if r.set(key, value) is not True:
                            raise AssertionError(f"SET {key} failed")
                        got = r.get(key)
                        if got != value.encode():
                            raise AssertionError(f"client {idx} round {j}: GET {key} = {got!r}, "
                                                 f"expected {value!r}")
                    if r.incrby(f"c:{idx}:count", rounds) != rounds:
                        raise AssertionError(f"client {idx}: INCRBY wrong")
                finally:
                    r.close()
            except Exception as exc:
                with lock:
                    errors.append(f"client {idx}: {exc!r}")
                barrier.abort()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True)
                   for i in range(n_clients)]
        start = time.monotonic()
        for t in threads:
            t.start()
        deadline = time.monotonic() + h.scaled(180)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = sum(t.is_alive() for t in threads)
        print(f"{n_clients} clients x {rounds * 2 + 2} commands: {time.monotonic() - start:.1f}s")
        self.assertEqual(alive, 0, f"{alive} client threads still running")
        self.assertEqual(errors[:5], [], f"{len(errors)} clients failed")
        d = self.direct()
        self.assertEqual(d.call("DBSIZE"), n_clients * 11)
        self.assertEqual(d.call("GET", "c:199:9"), f"199-{rounds - 1}".encode())


if __name__ == "__main__":
    h.main()
