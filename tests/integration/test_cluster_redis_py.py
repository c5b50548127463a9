#!/usr/bin/python3
"""redis-py (Debian python3-redis, a plain `redis.Redis`, not a cluster client) through keygate
in cluster mode, in front of a real 3 master + 3 replica cluster: the scripts of
test_redis_py.py (pipelines, WATCH, BLPOP, 10 MB values, 200 connections) run unchanged, plus
cluster versions of the ones whose keys or replies depend on a single Redis (MULTI/EXEC with
hash tags in one slot, pub/sub), and a 10,000-command pipeline of multi-key commands across all
masters checked reply by reply and then on the nodes themselves."""

import os
import shutil
import tempfile
import threading
from typing import Dict, List

import redis

import cluster_harness as ch
import keygate_harness as h
# The module, not its class: a TestCase class bound to a module-level name here would run here.
import test_redis_py as standalone


class ClusterDirect:
    """What `self.direct()` is for the standalone scripts, for a cluster: a command whose first
    argument is a key goes straight to the master owning the key's slot; DBSIZE is the sum over
    the masters."""

    def __init__(self, cluster: ch.RedisCluster, timeout: float):
        self.cluster = cluster
        self.timeout = timeout
        self.conns: Dict[int, h.RespConnection] = {}

    def _conn(self, node: ch.ClusterNodeInfo) -> h.RespConnection:
        if node.port not in self.conns:
            self.conns[node.port] = h.RespConnection(node.port, timeout=self.timeout)
        return self.conns[node.port]

    def call(self, *args) -> object:
        name = str(args[0]).upper()
        if name == "DBSIZE":
            return sum(self._conn(m).call("DBSIZE") for m in self.cluster.masters())
        if len(args) < 2:
            raise AssertionError(f"ClusterDirect cannot route {name}: no key")
        return self._conn(self.cluster.node_for_key(args[1])).call(*args)

    def close(self) -> None:
        for c in self.conns.values():
            c.close()


# The scripts pipeline 10 MB values: under ASan, with other tests sharing the CPUs, one of them
# can take longer than the built-in 1 s endpoint budget. An audit-mode registry (everything is
# forwarded unchanged, as without a registry) whose default profile allows 30 s.
REGISTRY = """\
version: 1
mode: audit
defaults:
  endpoint: scripts
endpoints:
  - name: scripts
    timeout: 30s
    onFailure: closed
    description: redis-py scripts with 10 MB values
patterns:
  - pattern: "crp:<id>"
    owner: integration-tests
    purpose: a registry that only sets the endpoint budget
    authority: true
"""


class ClusterRedisPyTest(ch.KeygateClusterTestCase):
    start_keygate = True

    @classmethod
    def setUpClass(cls) -> None:
        directory = tempfile.mkdtemp(prefix="keygate-cluster-redis-py-")
        path = os.path.join(directory, "registry.yaml")
        with open(path, "w") as f:
            f.write(REGISTRY)
        cls.keygate_config = f"registry: {path}\n"
        try:
            super().setUpClass()
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        cls._registry_dir = directory

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(getattr(cls, "_registry_dir", ""), ignore_errors=True)

    # -- the standalone helpers and scripts, reused as they are
    _s = standalone.RedisPyTest
    client = _s.client
    _next_message = _s._next_message
    test_pipeline_10000 = _s.test_pipeline_10000
    test_watch = _s.test_watch
    test_blpop_answered_by_concurrent_lpush = _s.test_blpop_answered_by_concurrent_lpush
    test_blpop_timeout_returns_none = _s.test_blpop_timeout_returns_none
    test_10mb_values = _s.test_10mb_values
    test_200_concurrent_connections = _s.test_200_concurrent_connections
    del _s

    # -- what those scripts ask of a single Redis, answered by the cluster
    def direct(self, timeout: float = 10.0) -> ClusterDirect:
        d = ClusterDirect(self.cluster, h.scaled(timeout))
        self.addCleanup(d.close)
        return d

    def wait_blocked_clients(self, count: int, timeout: float = 10.0) -> None:
        def blocked() -> bool:
            total = 0
            for m in self.cluster.masters():
                info = ch.parse_info(m.call("INFO", "clients").decode())
                total += int(info["blocked_clients"])
            return total >= count

        h.wait_until(blocked, h.scaled(timeout),
                     message=f"{count} blocked client(s) on the masters")

    # -- cluster versions and additions
    def test_pipeline_10000_multikey_across_all_masters(self):
        r = self.client()
        n = 10000
        model: Dict[str, bytes] = {}
        pipe = r.pipeline(transaction=False)
        expected: List[object] = []

        def key(i: int) -> str:
            return f"pm:{i}"

        for i in range(n):
            kind = i % 8
            if kind == 0:
                pipe.set(key(i), f"v{i}")
                model[key(i)] = f"v{i}".encode()
                expected.append(True)
            elif kind == 1:
                pipe.get(key(i - 1))
                expected.append(model.get(key(i - 1)))
            elif kind == 2:
                values = {key(i): f"m{i}", key(i + 1): f"m{i + 1}", key(i + 2): f"m{i + 2}"}
                pipe.mset(values)
                model.update({k: v.encode() for k, v in values.items()})
                expected.append(True)
            elif kind == 3:
                keys = [key(i - 1), key(i - 3), f"pm:missing:{i}", key(i - 2), key(i - 8)]
                pipe.mget(keys)
                expected.append([model.get(k) for k in keys])
            elif kind == 4:
                keys = [key(i - 2), key(i - 11), f"pm:missing:{i}"]
                pipe.delete(*keys)
                expected.append(sum(model.pop(k, None) is not None for k in keys))
            elif kind == 5:
                keys = [key(i - 3), key(i - 4), key(i - 5), key(i - 5)]
                pipe.exists(*keys)
                expected.append(sum(k in model for k in keys))
            elif kind == 6:
                pipe.incr(f"pm:counter:{i % 3}")
                expected.append(i // 24 + 1)
            else:
                pipe.rpush(f"pm:list:{i % 5}", i)
                expected.append(i // 40 + 1)
        results = pipe.execute(raise_on_error=False)
        self.assertEqual(len(results), n)
        for i, (got, want) in enumerate(zip(results, expected)):
            if got != want:
                self.fail(f"pipeline reply {i} (kind {i % 8}): got {got!r}, expected {want!r}")

        # On the nodes themselves: every key where the cluster says it belongs, nothing else.
        masters = self.cluster.masters()
        sizes = {m.address: m.call("DBSIZE") for m in masters}
        self.assertTrue(all(sizes.values()), f"keys should be on every master: {sizes}")
        self.assertEqual(sum(sizes.values()), len(model) + 3 + 5, sizes)
        d = self.direct()
        sample = sorted(model)[::50]
        for k in sample:
            self.assertEqual(d.call("GET", k), model[k], k)
        self.assertEqual(d.call("LRANGE", "pm:list:2", 0, 2), [b"7", b"47", b"87"])

    def test_multi_exec_in_one_slot(self):
        # test_redis_py's MULTI/EXEC script with its keys in one slot ({tx} hash tag).
        r = self.client()
        pipe = r.pipeline(transaction=True)
        pipe.set("{tx}a", "1").incr("{tx}a").get("{tx}a").lpush("{tx}l", "x", "y")
        pipe.lrange("{tx}l", 0, -1)
        self.assertEqual(pipe.execute(), [True, 2, b"2", 2, [b"y", b"x"]])
        self.assertEqual(self.direct().call("GET", "{tx}a"), b"2")

        # A command error inside EXEC is reported in its slot, the others still run.
        pipe = r.pipeline(transaction=True)
        pipe.set("{tx}s", "str").incr("{tx}s").set("{tx}after", "ok")
        results = pipe.execute(raise_on_error=False)
        self.assertEqual(results[0], True)
        self.assertIsInstance(results[1], redis.ResponseError)
        self.assertEqual(results[2], True)
        self.assertEqual(r.get("{tx}after"), b"ok")

        # DISCARD leaves nothing behind and the connection is usable afterwards.
        conn = self.kg()
        self.assertEqual(conn.call("MULTI"), "OK")
        self.assertEqual(conn.call("SET", "{tx}discarded", "1"), "QUEUED")
        self.assertEqual(conn.call("DISCARD"), "OK")
        self.assertIsNone(conn.call("GET", "{tx}discarded"))
        self.assertEqual(conn.call("PING"), "PONG")

        # Keys of one transaction in different slots: refused, and nothing of it is applied.
        self.assertNotEqual(ch.key_slot("tx:x1"), ch.key_slot("tx:x2"))
        pipe = r.pipeline(transaction=True)
        pipe.set("tx:x1", "1").set("tx:x2", "2")
        with self.assertRaises(redis.ResponseError) as caught:
            pipe.execute()
        self.assertRegex(str(caught.exception), "CROSSSLOT|EXECABORT")
        d = self.direct()
        self.assertIsNone(d.call("GET", "tx:x1"), "a refused transaction was partly applied")
        self.assertIsNone(d.call("GET", "tx:x2"), "a refused transaction was partly applied")
        self.assertEqual(r.set("tx:x1", "later"), True)  # the connection is fine

    def test_watch_multi_exec_hash_tagged_keys(self):
        r = self.client()
        other = self.client()
        keys = ["{acct:7}balance", "{acct:7}history", "{acct:7}version"]
        r.set(keys[0], 100)

        def transfer(amount: int, interfere: bool) -> List[object]:
            with r.pipeline(transaction=True) as pipe:
                pipe.watch(keys[0], keys[2])
                balance = int(pipe.get(keys[0]))
                if interfere:
                    other.incr(keys[2])
                pipe.multi()
                pipe.set(keys[0], balance - amount)
                pipe.rpush(keys[1], f"-{amount}")
                pipe.incr(keys[2])
                return pipe.execute()

        v0 = int(r.get(keys[2]) or 0)
        self.assertEqual(transfer(10, interfere=False), [True, 1, v0 + 1])
        with self.assertRaises(redis.WatchError):
            transfer(20, interfere=True)
        self.assertEqual(r.get(keys[0]), b"90")
        self.assertEqual(transfer(5, interfere=False), [True, 2, v0 + 3])
        d = self.direct()
        self.assertEqual(d.call("GET", keys[0]), b"85")
        self.assertEqual(d.call("LRANGE", keys[1], 0, -1), [b"-10", b"-5"])

    def test_pubsub(self):
        # test_redis_py's pub/sub script. Two things differ in a cluster, by Redis' design: a
        # PUBLISH counts only the subscribers of the node that ran it (here 0 or 1), and
        # messages published through different nodes reach a subscriber over different bus
        # links, so only the order within a channel is guaranteed.
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
        counts = set()
        for i in range(100):
            channel = ("ch:one", "ch:two", "news.tech")[i % 3]
            payload = f"message-{i}"
            counts.add(publisher.publish(channel, payload))
            sent.append((channel.encode(), payload.encode()))
        self.assertLessEqual(counts, {0, 1})
        received = []
        for _ in sent:
            m = self._next_message(p)
            self.assertIn(m["type"], ("message", "pmessage"), m)
            if m["type"] == "pmessage":
                self.assertEqual(m["pattern"], b"news.*")
            received.append((m["channel"], m["data"]))
        self.assertEqual(sorted(received), sorted(sent))
        for channel in (b"ch:one", b"ch:two", b"news.tech"):
            self.assertEqual([x for x in received if x[0] == channel],
                             [x for x in sent if x[0] == channel], channel)

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

        # Same connection, back to normal commands (keys on any master).
        conn = p.connection
        self.assertIsNotNone(conn)
        for i in range(6):
            conn.send_command("SET", f"after:pubsub:{i}", f"yes{i}")
            self.assertEqual(conn.read_response(), b"OK")
            conn.send_command("GET", f"after:pubsub:{i}")
            self.assertEqual(conn.read_response(), f"yes{i}".encode())
        conn.send_command("PING")
        self.assertEqual(conn.read_response(), b"PONG")

        # Nothing more is delivered to it: a second subscriber gets a message published after
        # the unsubscribe; the first connection, which still answers, got none.
        watcher = self.client().pubsub()
        self.addCleanup(watcher.close)
        watcher.subscribe("ch:one")
        self.assertEqual(self._next_message(watcher)["type"], "subscribe")
        publisher.publish("ch:one", "late")
        late = self._next_message(watcher)
        self.assertEqual((late["type"], late["data"]), ("message", b"late"))
        conn.send_command("PING")
        self.assertEqual(conn.read_response(), b"PONG", "a message arrived after UNSUBSCRIBE")

    def test_blpop_on_each_master(self):
        # BLPOP answered by a concurrent LPUSH, for a list on every master in turn.
        masters = self.cluster.masters()
        lists = []
        for m in masters:
            lists.append(next(k for k in (f"bq:{i}" for i in range(1000))
                              if m.owns(ch.key_slot(k))))
        for name in lists:
            r = self.client()
            result: Dict[str, object] = {}

            def pop():
                try:
                    result["value"] = r.blpop([name], timeout=int(h.scaled(20)))
                except Exception as exc:  # reported below
                    result["error"] = exc

            t = threading.Thread(target=pop, daemon=True)
            t.start()
            self.wait_blocked_clients(1)
            owner = self.cluster.node_for_key(name)
            self.assertEqual(int(ch.parse_info(owner.call("INFO", "clients").decode())
                                 ["blocked_clients"]), 1, f"BLPOP {name} not on its owner")
            self.assertEqual(self.client().lpush(name, f"job-{name}"), 1)
            t.join(h.scaled(20))
            self.assertFalse(t.is_alive(), f"BLPOP {name} did not return after LPUSH")
            self.assertNotIn("error", result)
            self.assertEqual(result["value"], (name.encode(), f"job-{name}".encode()))
            self.assertEqual(r.llen(name), 0)


if __name__ == "__main__":
    h.main()
