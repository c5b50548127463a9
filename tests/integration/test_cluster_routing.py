#!/usr/bin/python3
"""keygate in cluster mode (issue 3) in front of a real 3 master + 3 replica Redis Cluster, with
raw RESP: every command family is routed to the master of its key's slot (checked by reading the
key straight from that master), MGET/MSET/DEL/UNLINK/EXISTS/TOUCH are split by slot and merged,
other cross-slot multi-key commands get CROSSSLOT, keyless commands fan out (SCRIPT, FUNCTION,
FLUSHALL/FLUSHDB, DBSIZE, KEYS, RANDOMKEY), SCAN visits every master exactly once, transactions
are pinned to their slot, pub/sub (also sharded) and blocking commands work, a 10,000-command
pipeline keeps its order, and RESP3 maps come through. Keys are chosen so that each check covers
all three masters."""

import collections
import hashlib
import random
import re
import threading
import time
import uuid
from typing import Dict, Iterable, List, Sequence, Tuple

import cluster_harness as ch
import keygate_harness as h

CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot"

KGLIB = ("#!lua name=kglib\n"
         "redis.register_function('kgget', function(keys, args) "
         "return redis.call('GET', keys[1]) end)")


def flat_to_dict(items) -> dict:
    """RESP2 [k1, v1, k2, v2, ...] -> {k1: v1, ...}."""
    if not isinstance(items, list):
        raise AssertionError(f"expected a flat array, got {items!r}")
    return dict(zip(items[::2], items[1::2]))


class ClusterRoutingTest(ch.KeygateClusterTestCase):
    start_keygate = True

    # ----------------------------------------------------------------------------------------
    # helpers
    # ----------------------------------------------------------------------------------------

    def setUp(self) -> None:
        super().setUp()
        # Nothing in this file changes the topology, so one read per test is enough.
        self.masters = self.cluster.masters()
        self.assertEqual(len(self.masters), 3, self.masters)
        self._direct: Dict[int, h.RespConnection] = {}
        self._redirects_before = self.redirect_counts()

    def tearDown(self) -> None:
        # Every test here runs on a stable cluster, so every test also checks that keygate never
        # leaned on a redirect (skipped when the test body already failed, to keep one report).
        outcome = getattr(self, "_outcome", None)
        if outcome is None or getattr(outcome, "success", True):
            self.assert_no_redirects()
        super().tearDown()

    def redirect_counts(self) -> Dict[str, int]:
        """MOVED and ASK error replies each node has sent so far (Redis' INFO errorstats)."""
        out: Dict[str, int] = {}
        for n in self.cluster.processes:
            if not n.running():
                continue
            text = n.call("INFO", "errorstats", timeout=h.scaled(5)).decode()
            for kind in ("MOVED", "ASK"):
                m = re.search(rf"errorstat_{kind}:count=(\d+)", text)
                out[f"{kind} from {n.name} (port {n.port})"] = int(m.group(1)) if m else 0
        return out

    def assert_no_redirects(self) -> None:
        """On a stable cluster keygate sends every keyed command straight to the slot's master:
        no node has answered MOVED or ASK since the test began (a keygate that sent commands to
        the wrong node and followed the redirects would still return the right values)."""
        after = self.redirect_counts()
        grown = {k: after[k] - self._redirects_before.get(k, 0) for k in after
                 if after[k] != self._redirects_before.get(k, 0)}
        self.assertEqual(grown, {}, "keygate sent commands to nodes that do not own the slot")

    def owner(self, key) -> ch.ClusterNodeInfo:
        slot = ch.key_slot(key)
        for m in self.masters:
            if m.owns(slot):
                return m
        raise AssertionError(f"no master owns slot {slot} of {key!r}")

    def owner_index(self, key) -> int:
        return self.masters.index(self.owner(key))

    def on_node(self, node: ch.ClusterNodeInfo) -> h.RespConnection:
        """A direct connection to `node`, one per test and node."""
        c = self._direct.get(node.port)
        if c is None:
            c = self._direct[node.port] = self.node_conn(node)
        return c

    def on(self, key) -> h.RespConnection:
        """A direct connection to the master that owns `key` (as the cluster itself says)."""
        owner = self.owner(key)
        self.assertEqual(self.cluster.node_for_key(key).port, owner.port)
        return self.on_node(owner)

    def keys_per_master(self, prefix: str, per_master: int = 1) -> List[List[str]]:
        """[[keys on masters[0]], [keys on masters[1]], [keys on masters[2]]], `per_master` each,
        all in distinct slots."""
        out: List[List[str]] = [[] for _ in self.masters]
        slots = set()
        for i in range(100000):
            if all(len(x) >= per_master for x in out):
                return out
            key = f"{prefix}:{i}"
            idx = self.owner_index(key)
            if len(out[idx]) < per_master and ch.key_slot(key) not in slots:
                out[idx].append(key)
                slots.add(ch.key_slot(key))
        raise AssertionError(f"could not spread {prefix} keys over the masters")

    def key_each_master(self, prefix: str) -> List[str]:
        """One key per master, masters[0] first."""
        return [ks[0] for ks in self.keys_per_master(prefix)]

    def tag_each_master(self, prefix: str) -> List[str]:
        """One hash tag `{...}` per master, masters[0] first."""
        return ["{" + k + "}" for k in self.key_each_master(prefix)]

    def interleaved(self, prefix: str, per_master: int) -> List[str]:
        """Keys alternating over the three masters: m0, m1, m2, m0, m1, m2, ..."""
        groups = self.keys_per_master(prefix, per_master)
        return [groups[j][i] for i in range(per_master) for j in range(len(groups))]

    def write_direct(self, pairs: Dict[str, object]) -> None:
        """SETs each key straight on its master (pipelined per master)."""
        by_node: Dict[int, List[Tuple[str, object]]] = collections.defaultdict(list)
        for k, v in pairs.items():
            by_node[self.owner(k).port].append((k, v))
        for m in self.masters:
            items = by_node.get(m.port, [])
            if not items:
                continue
            c = self.on_node(m)
            c.send_many([("SET", k, v) for k, v in items])
            for k, _ in items:
                reply = c.read()
                self.assertEqual(reply, "OK", f"direct SET {k} on {m.address}")

    def direct_get_all(self, keys: Sequence[str]) -> Dict[str, object]:
        """GET of each key straight from its master (pipelined per master)."""
        by_node: Dict[int, List[str]] = collections.defaultdict(list)
        for k in keys:
            by_node[self.owner(k).port].append(k)
        out: Dict[str, object] = {}
        for m in self.masters:
            ks = by_node.get(m.port, [])
            if not ks:
                continue
            c = self.on_node(m)
            c.send_many([("GET", k) for k in ks])
            for k in ks:
                out[k] = c.read()
        return out

    def direct_dbsizes(self) -> List[int]:
        return [self.on_node(m).call("DBSIZE") for m in self.masters]

    def blocked_clients(self, node: ch.ClusterNodeInfo) -> int:
        info = ch.parse_info(self.on_node(node).call("INFO", "clients").decode())
        return int(info["blocked_clients"])

    def wait_blocked(self, node: ch.ClusterNodeInfo, count: int) -> None:
        h.wait_until(lambda: self.blocked_clients(node) >= count, h.scaled(10),
                     message=f"{count} blocked client(s) on {node.address}")

    def assert_ok(self, reply, what: str = "") -> None:
        self.assertIsInstance(reply, h.SimpleString, f"{what}: {reply!r}")
        self.assertEqual(reply, "OK", what)

    def assert_crossslot(self, reply, what: str) -> None:
        self.assertIsInstance(reply, h.ErrorReply, f"{what}: expected CROSSSLOT, got {reply!r}")
        self.assertEqual(reply, CROSSSLOT, what)

    def scan_all(self, c: h.RespConnection, *options, max_calls: int = 20000
                 ) -> Tuple[List[bytes], int]:
        """The plain client loop: SCAN cursor [options] until the cursor is 0. Returns every key
        returned (duplicates kept) and the number of SCAN calls."""
        keys: List[bytes] = []
        cursor = b"0"
        deadline = time.monotonic() + h.scaled(60)
        for calls in range(1, max_calls + 1):
            reply = c.call("SCAN", cursor, *options)
            self.assertIsInstance(reply, list, f"SCAN {cursor!r} {options}: {reply!r}")
            self.assertEqual(len(reply), 2, f"SCAN {cursor!r}: {reply!r}")
            cursor, batch = reply
            self.assertIsInstance(cursor, bytes, f"SCAN cursor {cursor!r}")
            self.assertTrue(cursor.isdigit(), f"SCAN cursor is not a decimal number: {cursor!r}")
            # Clients such as go-redis keep the cursor in a uint64.
            self.assertLess(int(cursor), 2 ** 64, f"SCAN cursor does not fit 64 bits: {cursor!r}")
            self.assertIsInstance(batch, list, f"SCAN batch {batch!r}")
            keys.extend(batch)
            if int(cursor) == 0:
                return keys, calls
            self.assertLess(time.monotonic(), deadline, "SCAN loop took over 60 s")
        self.fail(f"SCAN did not return cursor 0 within {max_calls} calls")

    def assert_exactly_once(self, got: List[bytes], want: Iterable[str], what: str) -> None:
        want_b = {k.encode() for k in want}
        dups = [k for k, n in collections.Counter(got).items() if n > 1]
        self.assertEqual(dups[:10], [], f"{what}: {len(dups)} keys returned more than once")
        missing = want_b - set(got)
        extra = set(got) - want_b
        self.assertEqual((sorted(missing)[:10], sorted(extra)[:10]), ([], []),
                         f"{what}: {len(missing)} missing, {len(extra)} unexpected keys")
        self.assertEqual(len(got), len(want_b), what)

    # ----------------------------------------------------------------------------------------
    # 1. each command family goes to the master of its key's slot
    # ----------------------------------------------------------------------------------------

    def test_strings_route_to_slot_master(self):
        kg = self.kg()
        for i, key in enumerate(self.key_each_master("rt:str")):
            d = self.on(key)
            self.assert_ok(kg.call("SET", key, f"v{i}"), f"SET {key}")
            self.assertEqual(d.call("GET", key), f"v{i}".encode(), f"{key} on its master")
            self.assertEqual(kg.call("GET", key), f"v{i}".encode())
            self.assertEqual(kg.call("APPEND", key, "-tail"), len(f"v{i}-tail"))
            self.assertEqual(d.call("GET", key), f"v{i}-tail".encode())
            self.assertEqual(kg.call("GETEX", key, "EX", 100), f"v{i}-tail".encode())
            self.assertTrue(0 < d.call("TTL", key) <= 100, f"GETEX set no TTL on {key}")
            ctr = key + ":ctr"
            self.assertEqual(kg.call("INCR", ctr), 1)
            self.assertEqual(kg.call("INCR", ctr), 2)
            self.assertEqual(self.on(ctr).call("GET", ctr), b"2")
            sx = key + ":setex"
            self.assert_ok(kg.call("SETEX", sx, 100, "sv"), f"SETEX {sx}")
            self.assertEqual(self.on(sx).call("GET", sx), b"sv")
            self.assertTrue(0 < self.on(sx).call("TTL", sx) <= 100)
            self.assertIsNone(kg.call("GET", key + ":missing"))

    def test_hashes_route_to_slot_master(self):
        kg = self.kg()
        for i, key in enumerate(self.key_each_master("rt:hash")):
            self.assertEqual(kg.call("HSET", key, "f1", f"a{i}", "f2", "b"), 2)
            self.assertEqual(kg.call("HINCRBY", key, "n", 5), 5)
            self.assertEqual(kg.call("HGET", key, "f1"), f"a{i}".encode())
            want = {b"f1": f"a{i}".encode(), b"f2": b"b", b"n": b"5"}
            self.assertEqual(flat_to_dict(kg.call("HGETALL", key)), want)
            self.assertEqual(flat_to_dict(self.on(key).call("HGETALL", key)), want)
            self.assertEqual(kg.call("HDEL", key, "f2"), 1)
            self.assertEqual(self.on(key).call("HEXISTS", key, "f2"), 0)

    def test_lists_route_to_slot_master(self):
        kg = self.kg()
        for i, key in enumerate(self.key_each_master("rt:list")):
            self.assertEqual(kg.call("RPUSH", key, "a", "b", "c"), 3)
            self.assertEqual(kg.call("LPUSH", key, f"z{i}"), 4)
            self.assertEqual(kg.call("LRANGE", key, 0, -1), [f"z{i}".encode(), b"a", b"b", b"c"])
            self.assertEqual(kg.call("RPOP", key), b"c")
            self.assertEqual(self.on(key).call("LRANGE", key, 0, -1),
                             [f"z{i}".encode(), b"a", b"b"])

    def test_sets_route_to_slot_master(self):
        kg = self.kg()
        for i, key in enumerate(self.key_each_master("rt:set")):
            self.assertEqual(kg.call("SADD", key, "a", "b", f"m{i}"), 3)
            self.assertEqual(kg.call("SISMEMBER", key, f"m{i}"), 1)
            self.assertEqual(kg.call("SREM", key, "b"), 1)
            self.assertEqual(sorted(kg.call("SMEMBERS", key)), [b"a", f"m{i}".encode()])
            self.assertEqual(sorted(self.on(key).call("SMEMBERS", key)), [b"a", f"m{i}".encode()])

    def test_sorted_sets_route_to_slot_master(self):
        kg = self.kg()
        for i, key in enumerate(self.key_each_master("rt:zset")):
            self.assertEqual(kg.call("ZADD", key, 1, "a", 2, "b", 3, f"c{i}"), 3)
            self.assertEqual(kg.call("ZINCRBY", key, 10, "a"), b"11")
            self.assertEqual(kg.call("ZSCORE", key, "b"), b"2")
            want = [b"b", b"2", f"c{i}".encode(), b"3", b"a", b"11"]
            self.assertEqual(kg.call("ZRANGE", key, 0, -1, "WITHSCORES"), want)
            self.assertEqual(self.on(key).call("ZRANGE", key, 0, -1, "WITHSCORES"), want)

    def test_streams_route_to_slot_master(self):
        kg = self.kg()
        for i, key in enumerate(self.key_each_master("rt:stream")):
            id1 = kg.call("XADD", key, "*", "f", f"v{i}")
            self.assertIsInstance(id1, bytes, f"XADD {key}: {id1!r}")
            id2 = kg.call("XADD", key, "*", "g", "w")
            self.assertIsInstance(id2, bytes, f"XADD {key}: {id2!r}")
            entries = [[id1, [b"f", f"v{i}".encode()]], [id2, [b"g", b"w"]]]
            self.assertEqual(kg.call("XRANGE", key, "-", "+"), entries)
            self.assertEqual(kg.call("XREAD", "COUNT", 10, "STREAMS", key, "0"),
                             [[key.encode(), entries]])
            self.assertEqual(kg.call("XLEN", key), 2)
            self.assertEqual(self.on(key).call("XRANGE", key, "-", "+"), entries)

    def test_hyperloglog_routes_to_slot_master(self):
        kg = self.kg()
        for key in self.key_each_master("rt:hll"):
            self.assertEqual(kg.call("PFADD", key, "a", "b", "c"), 1)
            self.assertEqual(kg.call("PFADD", key, "a"), 0)
            self.assertEqual(kg.call("PFCOUNT", key), 3)
            self.assertEqual(self.on(key).call("PFCOUNT", key), 3)
            self.assertTrue(self.on(key).call("GET", key).startswith(b"HYLL"))

    def test_bitmaps_route_to_slot_master(self):
        kg = self.kg()
        for key in self.key_each_master("rt:bit"):
            self.assertEqual(kg.call("SETBIT", key, 7, 1), 0)
            self.assertEqual(kg.call("SETBIT", key, 9, 1), 0)
            self.assertEqual(kg.call("GETBIT", key, 7), 1)
            self.assertEqual(kg.call("BITCOUNT", key), 2)
            self.assertEqual(kg.call("BITPOS", key, 1), 7)
            self.assertEqual(self.on(key).call("GET", key), b"\x01\x40")

    def test_geo_routes_to_slot_master(self):
        kg = self.kg()
        for key in self.key_each_master("rt:geo"):
            self.assertEqual(kg.call("GEOADD", key, "13.361389", "38.115556", "Palermo",
                                     "15.087269", "37.502669", "Catania"), 2)
            dist = kg.call("GEODIST", key, "Palermo", "Catania", "km")
            self.assertIsInstance(dist, bytes, f"GEODIST {key}: {dist!r}")
            self.assertAlmostEqual(float(dist), 166.2742, places=3)
            self.assertEqual(kg.call("GEOSEARCH", key, "FROMLONLAT", 15, 37, "BYRADIUS", 200, "km",
                                     "ASC"), [b"Catania", b"Palermo"])
            self.assertEqual(self.on(key).call("ZCARD", key), 2)
            self.assertEqual(self.on(key).call("GEOPOS", key, "Palermo")[0][0][:6], b"13.361")

    def test_expire_ttl_persist_route_to_slot_master(self):
        kg = self.kg()
        for key in self.key_each_master("rt:ttl"):
            d = self.on(key)
            self.assert_ok(kg.call("SET", key, "v"))
            self.assertEqual(kg.call("TTL", key), -1)
            self.assertEqual(kg.call("EXPIRE", key, 100), 1)
            self.assertTrue(0 < kg.call("TTL", key) <= 100)
            self.assertTrue(0 < d.call("TTL", key) <= 100, f"EXPIRE did not reach {key}'s master")
            self.assertTrue(0 < kg.call("PTTL", key) <= 100000)
            self.assertEqual(kg.call("PERSIST", key), 1)
            self.assertEqual(d.call("TTL", key), -1)
            self.assertEqual(kg.call("PEXPIRE", key, 100000), 1)
            self.assertTrue(0 < d.call("PTTL", key) <= 100000)
            self.assertEqual(kg.call("EXPIRE", key + ":missing", 100), 0)
            self.assertEqual(kg.call("TTL", key + ":missing"), -2)

    def test_eval_and_evalsha_with_numkeys_route_to_slot_master(self):
        kg = self.kg()
        body = f"return redis.call('SET', KEYS[1], ARGV[1]) -- {uuid.uuid4().hex}"
        sha = hashlib.sha1(body.encode()).hexdigest()
        # EVALSHA needs the script on the key's master: load it there directly (SCRIPT LOAD
        # through keygate is checked on its own below).
        for m in self.masters:
            self.assertEqual(self.on_node(m).call("SCRIPT", "LOAD", body), sha.encode())
        for i, key in enumerate(self.key_each_master("rt:eval")):
            self.assert_ok(kg.call("EVAL", body, 1, key, f"e{i}"), f"EVAL on {key}")
            self.assertEqual(self.on(key).call("GET", key), f"e{i}".encode())
            self.assert_ok(kg.call("EVALSHA", sha, 1, key, f"s{i}"), f"EVALSHA on {key}")
            self.assertEqual(self.on(key).call("GET", key), f"s{i}".encode())
            self.assertEqual(kg.call("EVAL_RO", "return redis.call('GET', KEYS[1])", 1, key),
                             f"s{i}".encode())

    def test_rename_copy_smove_lmove_within_one_slot(self):
        kg = self.kg()
        for i, tag in enumerate(self.tag_each_master("rt:tag")):
            a, b = f"{tag}a", f"{tag}b"
            d = self.on(a)
            self.assert_ok(kg.call("SET", a, f"v{i}"))
            self.assert_ok(kg.call("RENAME", a, b), f"RENAME {a} {b}")
            self.assertEqual(d.call("EXISTS", a), 0)
            self.assertEqual(d.call("GET", b), f"v{i}".encode())
            self.assertEqual(kg.call("RENAMENX", b, a), 1)
            self.assertEqual(d.call("GET", a), f"v{i}".encode())
            self.assertEqual(kg.call("COPY", a, f"{tag}copy"), 1)
            self.assertEqual(d.call("GET", f"{tag}copy"), f"v{i}".encode())
            self.assertEqual(kg.call("SADD", f"{tag}s1", "m", "n"), 2)
            self.assertEqual(kg.call("SMOVE", f"{tag}s1", f"{tag}s2", "m"), 1)
            self.assertEqual(d.call("SMEMBERS", f"{tag}s2"), [b"m"])
            self.assertEqual(d.call("SMEMBERS", f"{tag}s1"), [b"n"])
            self.assertEqual(kg.call("RPUSH", f"{tag}l1", "x", "y"), 2)
            self.assertEqual(kg.call("LMOVE", f"{tag}l1", f"{tag}l2", "LEFT", "RIGHT"), b"x")
            self.assertEqual(d.call("LRANGE", f"{tag}l2", 0, -1), [b"x"])
            self.assertEqual(d.call("LRANGE", f"{tag}l1", 0, -1), [b"y"])

    # ----------------------------------------------------------------------------------------
    # 2. MGET / MSET / DEL / UNLINK / EXISTS / TOUCH split by slot and merged
    # ----------------------------------------------------------------------------------------

    def test_mset_mget_across_all_masters(self):
        kg = self.kg()
        keys = self.interleaved("mk:a", 3)
        args = []
        for i, k in enumerate(keys):
            args += [k, f"v{i}"]
        self.assert_ok(kg.call("MSET", *args), "MSET across 3 masters")
        got = self.direct_get_all(keys)
        self.assertEqual(got, {k: f"v{i}".encode() for i, k in enumerate(keys)})
        missing = self.interleaved("mk:missing", 1)
        query = [missing[0], keys[0], keys[4], missing[1], keys[8], keys[0], missing[2], keys[2]]
        want = [None, b"v0", b"v4", None, b"v8", b"v0", None, b"v2"]
        self.assertEqual(kg.call("MGET", *query), want)
        self.assertEqual(kg.call("MGET", *missing), [None, None, None])
        self.assertEqual(kg.call("MGET", *reversed(keys)),
                         [f"v{i}".encode() for i in reversed(range(len(keys)))])

    def test_del_unlink_exists_touch_across_all_masters(self):
        kg = self.kg()
        keys = self.interleaved("mk:b", 2)      # 6 keys, 2 on each master
        missing = self.interleaved("mk:none", 1)
        self.write_direct({k: "x" for k in keys})
        self.assertEqual(kg.call("EXISTS", *keys), 6)
        # Repeated keys are counted each time, as Redis does.
        self.assertEqual(kg.call("EXISTS", keys[0], keys[0], keys[1], missing[0], keys[5],
                                 keys[5], keys[5]), 6)
        self.assertEqual(kg.call("EXISTS", *missing), 0)
        self.assertEqual(kg.call("TOUCH", *keys, *missing), 6)
        self.assertEqual(kg.call("DEL", keys[0], missing[1], keys[1], keys[2]), 3)
        got = self.direct_get_all(keys)
        self.assertEqual([got[k] for k in keys], [None, None, None, b"x", b"x", b"x"])
        self.assertEqual(kg.call("UNLINK", keys[3], keys[4], keys[5], missing[2], keys[0]), 3)
        self.assertEqual(self.direct_dbsizes(), [0, 0, 0])
        self.assertEqual(kg.call("DEL", *keys), 0)

    def test_multikey_with_hundreds_of_keys(self):
        kg = self.kg()
        keys = self.interleaved("mk:many", 200)   # 600 keys
        values = {k: f"val-{i}-{'x' * (i % 50)}" for i, k in enumerate(keys)}
        args = [x for k in keys for x in (k, values[k])]
        self.assert_ok(kg.call("MSET", *args), "MSET of 600 keys")
        got = self.direct_get_all(keys)
        self.assertEqual(got, {k: v.encode() for k, v in values.items()})
        self.assertEqual(sum(self.direct_dbsizes()), 600)
        self.assertTrue(all(n >= 200 for n in self.direct_dbsizes()), self.direct_dbsizes())
        missing = [f"mk:many:absent:{i}" for i in range(60)]
        query, want = [], []
        for i, k in enumerate(keys):
            query.append(k)
            want.append(values[k].encode())
            if i % 10 == 0:
                query.append(missing[i // 10])
                want.append(None)
        self.assertEqual(kg.call("MGET", *query), want)
        self.assertEqual(kg.call("EXISTS", *query), 600)
        self.assertEqual(kg.call("TOUCH", *keys), 600)
        self.assertEqual(kg.call("DEL", *keys[:300], *missing), 300)
        self.assertEqual(kg.call("UNLINK", *keys), 300)
        self.assertEqual(self.direct_dbsizes(), [0, 0, 0])

    def test_mget_interleaved_in_a_pipeline(self):
        kg = self.kg()
        keys = self.interleaved("mk:pipe", 4)     # 12 keys over the masters
        rng = random.Random(7)
        model: Dict[str, bytes] = {}
        commands, expected = [], []
        for i in range(300):
            op = i % 6
            if op == 0:
                k = rng.choice(keys)
                commands.append(("SET", k, f"p{i}"))
                model[k] = f"p{i}".encode()
                expected.append("OK")
            elif op in (1, 4):
                ks = rng.sample(keys, rng.randrange(2, 9))
                commands.append(("MGET", *ks))
                expected.append([model.get(k) for k in ks])
            elif op == 2:
                k = rng.choice(keys)
                commands.append(("GET", k))
                expected.append(model.get(k))
            elif op == 3:
                ks = rng.sample(keys, 3)
                commands.append(("MSET", *[x for k in ks for x in (k, f"m{i}")]))
                for k in ks:
                    model[k] = f"m{i}".encode()
                expected.append("OK")
            else:
                ks = rng.sample(keys, 2)
                commands.append(("DEL", *ks))
                expected.append(sum(1 for k in ks if model.pop(k, None) is not None))
        kg.send_many(commands)
        for i, (cmd, want) in enumerate(zip(commands, expected)):
            got = kg.read()
            self.assertEqual(got, want, f"reply {i} to {cmd!r}")
        got = self.direct_get_all(keys)
        self.assertEqual(got, {k: model.get(k) for k in keys})

    # ----------------------------------------------------------------------------------------
    # 3. CROSSSLOT for other multi-key commands
    # ----------------------------------------------------------------------------------------

    def _crossslot_cases(self, a: str, b: str, c: str) -> List[Tuple[str, ...]]:
        lua2 = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('SET', KEYS[2], ARGV[2])"
        return [
            ("SUNION", a, b),
            ("SINTER", a, b),
            ("SDIFF", a, b),
            ("SUNIONSTORE", c, a, b),
            ("SINTERSTORE", c, a, b),
            ("SMOVE", a, b, "m1"),
            ("RENAME", a, b),
            ("RENAMENX", a, b),
            ("COPY", a, b),
            ("MSETNX", a, "1", b, "2"),
            ("RPOPLPUSH", a, b),
            ("LMOVE", a, b, "LEFT", "RIGHT"),
            ("BLPOP", a, b, "1"),
            ("BRPOPLPUSH", a, b, "1"),
            ("ZUNIONSTORE", c, 2, a, b),
            ("PFMERGE", c, a, b),
            ("PFCOUNT", a, b),
            ("EVAL", lua2, 2, a, b, "1", "2"),
            ("XREAD", "COUNT", 1, "STREAMS", a, b, "0", "0"),
        ]

    def _check_crossslot(self, a: str, b: str, c: str) -> None:
        kg = self.kg()
        # Give the source keys some data so that a wrongly forwarded command would have an effect.
        self.assertEqual(self.on(a).call("SADD", a, "m1", "m2"), 2)
        for cmd in self._crossslot_cases(a, b, c):
            self.assert_crossslot(kg.call(*cmd), f"{cmd[0]} {a} {b}")
        # Nothing was applied: a still holds its set, b and c do not exist.
        self.assertEqual(sorted(self.on(a).call("SMEMBERS", a)), [b"m1", b"m2"])
        self.assertEqual(self.on(b).call("EXISTS", b), 0)
        self.assertEqual(self.on(c).call("EXISTS", c), 0)
        # Lists and strings: RPOPLPUSH/MSETNX left nothing behind.
        la, lb = a + ":l", b + ":l"
        if ch.key_slot(la) != ch.key_slot(lb):
            self.assertEqual(kg.call("RPUSH", la, "x"), 1)
            self.assert_crossslot(kg.call("RPOPLPUSH", la, lb), "RPOPLPUSH lists")
            self.assertEqual(self.on(la).call("LRANGE", la, 0, -1), [b"x"])
            self.assertEqual(self.on(lb).call("EXISTS", lb), 0)
        self.assertEqual(kg.call("PING"), "PONG", "connection usable after CROSSSLOT")

    def test_crossslot_keys_on_different_masters(self):
        a, b, c = self.key_each_master("cs:x")
        self._check_crossslot(a, b, c)

    def test_crossslot_keys_on_the_same_master_in_different_slots(self):
        a, b, c = self.keys_per_master("cs:same", 3)[1]
        self.assertEqual(len({ch.key_slot(k) for k in (a, b, c)}), 3)
        self._check_crossslot(a, b, c)

    def test_same_commands_with_one_hash_tag_work(self):
        kg = self.kg()
        for tag in ["{u1}"] + self.tag_each_master("cs:tag"):
            a, b, c = f"{tag}a", f"{tag}b", f"{tag}c"
            d = self.on(a)
            self.assertEqual(kg.call("SADD", a, "m1", "m2"), 2)
            self.assertEqual(kg.call("SADD", b, "m2", "m3"), 2)
            self.assertEqual(sorted(kg.call("SUNION", a, b)), [b"m1", b"m2", b"m3"])
            self.assertEqual(kg.call("SINTERSTORE", c, a, b), 1)
            self.assertEqual(d.call("SMEMBERS", c), [b"m2"])
            self.assertEqual(kg.call("DEL", a, b, c), 3)
            self.assertEqual(kg.call("MSETNX", a, "1", b, "2"), 1)
            self.assertEqual(d.call("MGET", a, b), [b"1", b"2"])
            self.assertEqual(kg.call("MSETNX", a, "x", c, "y"), 0)
            self.assertEqual(d.call("EXISTS", c), 0)
            self.assert_ok(kg.call("RENAME", a, c))
            self.assertEqual(d.call("MGET", a, c), [None, b"1"])
            lua2 = ("redis.call('SET', KEYS[1], ARGV[1]); "
                    "return redis.call('SET', KEYS[2], ARGV[2])")
            self.assert_ok(kg.call("EVAL", lua2, 2, a, b, "e1", "e2"), f"EVAL 2 keys in {tag}")
            self.assertEqual(d.call("MGET", a, b), [b"e1", b"e2"])
            self.assertEqual(kg.call("DEL", a, b, c), 3)
            self.assertEqual(kg.call("RPUSH", a, "x", "y"), 2)
            self.assertEqual(kg.call("RPOPLPUSH", a, b), b"y")
            self.assertEqual(d.call("LRANGE", b, 0, -1), [b"y"])
            self.assertEqual(kg.call("BLPOP", c, a, 1), [a.encode(), b"x"])
            self.assertEqual(d.call("EXISTS", a), 0)

    # ----------------------------------------------------------------------------------------
    # 4. keyless commands
    # ----------------------------------------------------------------------------------------

    def test_script_load_exists_flush_on_every_master(self):
        kg = self.kg()
        body = f"return redis.call('GET', KEYS[1]) -- {uuid.uuid4().hex}"
        sha = hashlib.sha1(body.encode()).hexdigest()
        other = hashlib.sha1(b"never loaded " + uuid.uuid4().bytes).hexdigest()
        self.assertEqual(kg.call("SCRIPT", "EXISTS", sha), [0])
        self.assertEqual(kg.call("SCRIPT", "LOAD", body), sha.encode())
        for m in self.masters:
            self.assertEqual(self.on_node(m).call("SCRIPT", "EXISTS", sha), [1],
                             f"SCRIPT LOAD did not reach {m.address}")
        self.assertEqual(kg.call("SCRIPT", "EXISTS", sha, other), [1, 0])
        keys = self.key_each_master("ks:script")
        self.write_direct({k: f"v{i}" for i, k in enumerate(keys)})
        for i, k in enumerate(keys):
            self.assertEqual(kg.call("EVALSHA", sha, 1, k), f"v{i}".encode(),
                             f"EVALSHA on a key of master {i}")
        self.assert_ok(kg.call("SCRIPT", "FLUSH"))
        for m in self.masters:
            self.assertEqual(self.on_node(m).call("SCRIPT", "EXISTS", sha), [0],
                             f"SCRIPT FLUSH did not reach {m.address}")
        self.assertEqual(kg.call("SCRIPT", "EXISTS", sha), [0])
        for k in keys:
            reply = kg.call("EVALSHA", sha, 1, k)
            self.assertIsInstance(reply, h.ErrorReply, f"EVALSHA after SCRIPT FLUSH: {reply!r}")
            self.assertTrue(reply.startswith("NOSCRIPT"), reply)

    def test_script_exists_is_1_only_when_loaded_on_every_master(self):
        # A script on one master only would make EVALSHA fail for keys of the others, so SCRIPT
        # EXISTS must not say it is there.
        kg = self.kg()
        body = f"return 1 -- {uuid.uuid4().hex}"
        sha = hashlib.sha1(body.encode()).hexdigest()
        for m in self.masters:
            self.assertEqual(self.on_node(m).call("SCRIPT", "LOAD", body), sha.encode())
            loaded_everywhere = m is self.masters[-1]
            self.assertEqual(kg.call("SCRIPT", "EXISTS", sha), [1 if loaded_everywhere else 0],
                             f"loaded up to {m.address}")

    def test_function_load_fcall_delete_flush_on_every_master(self):
        kg = self.kg()

        def flush_functions():
            for m in self.cluster.masters():
                with m.client(timeout=h.scaled(10)) as c:
                    c.call("FUNCTION", "FLUSH")

        flush_functions()
        self.addCleanup(flush_functions)
        keys = self.key_each_master("ks:fn")
        self.write_direct({k: f"f{i}" for i, k in enumerate(keys)})

        def libs_on(m) -> List[bytes]:
            return [flat_to_dict(lib)[b"library_name"]
                    for lib in self.on_node(m).call("FUNCTION", "LIST")]

        self.assertEqual(kg.call("FUNCTION", "LOAD", KGLIB), b"kglib")
        for m in self.masters:
            self.assertEqual(libs_on(m), [b"kglib"], f"FUNCTION LOAD did not reach {m.address}")
        for i, k in enumerate(keys):
            self.assertEqual(kg.call("FCALL", "kgget", 1, k), f"f{i}".encode(),
                             f"FCALL on a key of master {i}")
        self.assert_ok(kg.call("FUNCTION", "DELETE", "kglib"), "FUNCTION DELETE")
        for m in self.masters:
            self.assertEqual(libs_on(m), [], f"FUNCTION DELETE did not reach {m.address}")
        for k in keys:
            reply = kg.call("FCALL", "kgget", 1, k)
            self.assertIsInstance(reply, h.ErrorReply, f"FCALL after FUNCTION DELETE: {reply!r}")
        self.assertEqual(kg.call("FUNCTION", "LOAD", KGLIB), b"kglib")
        self.assertEqual(kg.call("FCALL", "kgget", 1, keys[2]), b"f2")
        self.assert_ok(kg.call("FUNCTION", "FLUSH"), "FUNCTION FLUSH")
        for m in self.masters:
            self.assertEqual(libs_on(m), [], f"FUNCTION FLUSH did not reach {m.address}")
        for k in keys:
            reply = kg.call("FCALL", "kgget", 1, k)
            self.assertIsInstance(reply, h.ErrorReply, f"FCALL after FUNCTION FLUSH: {reply!r}")

    def test_flushall_and_flushdb_empty_every_master(self):
        kg = self.kg()
        for cmd in (("FLUSHALL",), ("FLUSHDB",)):
            keys = self.interleaved("ks:flush", 5)
            self.write_direct({k: "v" for k in keys})
            self.assertEqual(self.direct_dbsizes(), [5, 5, 5])
            self.assert_ok(kg.call(*cmd), cmd[0])
            self.assertEqual(self.direct_dbsizes(), [0, 0, 0], f"{cmd[0]} through keygate")

    def test_dbsize_is_the_sum_over_masters(self):
        kg = self.kg()
        self.assertEqual(kg.call("DBSIZE"), 0)
        groups = self.keys_per_master("ks:dbsize", 40)
        pairs = {}
        for i, n in enumerate((3, 17, 40)):      # uneven, so a single master's count is wrong
            pairs.update({k: "v" for k in groups[i][:n]})
        self.write_direct(pairs)
        sizes = self.direct_dbsizes()
        self.assertEqual(sizes, [3, 17, 40])
        self.assertEqual(kg.call("DBSIZE"), sum(sizes))

    def test_keys_is_the_union_over_masters(self):
        kg = self.kg()
        self.assertEqual(kg.call("KEYS", "*"), [])
        keys = self.interleaved("ks:keys", 10)
        others = self.interleaved("ks:other", 3)
        self.write_direct({k: "v" for k in keys + others})
        got = kg.call("KEYS", "*")
        self.assertEqual(sorted(got), sorted(k.encode() for k in keys + others))
        got = kg.call("KEYS", "ks:keys:*")
        self.assertEqual(sorted(got), sorted(k.encode() for k in keys))

    def test_randomkey_returns_an_existing_key(self):
        kg = self.kg()
        self.assertIsNone(kg.call("RANDOMKEY"), "RANDOMKEY on an empty cluster")
        # Keys on one master only, each master in turn: RANDOMKEY must still find one.
        for i, group in enumerate(self.keys_per_master("ks:rand", 4)):
            self.cluster.flushall()
            self.write_direct({k: "v" for k in group})
            for _ in range(6):
                got = kg.call("RANDOMKEY")
                self.assertIn(got, [k.encode() for k in group],
                              f"RANDOMKEY with keys only on master {i} ({self.masters[i].address})")
        self.cluster.flushall()
        keys = self.interleaved("ks:rand2", 3)
        self.write_direct({k: "v" for k in keys})
        for _ in range(10):
            self.assertIn(kg.call("RANDOMKEY"), [k.encode() for k in keys])
        self.cluster.flushall()
        self.assertIsNone(kg.call("RANDOMKEY"), "RANDOMKEY after FLUSHALL")

    # ----------------------------------------------------------------------------------------
    # 5. SCAN over every master
    # ----------------------------------------------------------------------------------------

    def test_scan_visits_every_key_exactly_once(self):
        keys = [f"scan:k:{i}" for i in range(3000)]
        self.write_direct({k: "v" for k in keys})
        sizes = self.direct_dbsizes()
        self.assertTrue(all(n > 800 for n in sizes), sizes)
        got, calls = self.scan_all(self.kg())
        self.assert_exactly_once(got, keys, f"SCAN loop ({calls} calls)")

    def test_scan_empty_cluster(self):
        got, _ = self.scan_all(self.kg())
        self.assertEqual(got, [])
        got, _ = self.scan_all(self.kg(), "MATCH", "*", "COUNT", 1000)
        self.assertEqual(got, [])

    def test_scan_count_1000(self):
        keys = [f"scan:c:{i}" for i in range(3000)]
        self.write_direct({k: "v" for k in keys})
        got, calls = self.scan_all(self.kg(), "COUNT", 1000)
        self.assert_exactly_once(got, keys, f"SCAN COUNT 1000 ({calls} calls)")
        # About 1,000 keys per master: COUNT 1000 takes a handful of calls (the default COUNT of
        # 10 would need hundreds), so the option really reaches Redis.
        self.assertLessEqual(calls, 30, "COUNT 1000 was not passed on")

    def test_scan_match(self):
        a = [f"scan:a:{i}" for i in range(1500)]
        b = [f"scan:b:{i}" for i in range(1500)]
        self.write_direct({k: "v" for k in a + b})
        got, calls = self.scan_all(self.kg(), "MATCH", "scan:a:*")
        self.assert_exactly_once(got, a, f"SCAN MATCH ({calls} calls)")
        got, calls = self.scan_all(self.kg(), "MATCH", "scan:b:1*", "COUNT", 500)
        self.assert_exactly_once(got, [k for k in b if k.startswith("scan:b:1")],
                                 f"SCAN MATCH COUNT 500 ({calls} calls)")

    def test_scan_type(self):
        strings = [f"scan:s:{i}" for i in range(1000)]
        hashes = [f"scan:h:{i}" for i in range(1000)]
        lists = [f"scan:l:{i}" for i in range(200)]
        self.write_direct({k: "v" for k in strings})
        by_node: Dict[int, List[Tuple]] = collections.defaultdict(list)
        for k in hashes:
            by_node[self.owner(k).port].append(("HSET", k, "f", "v"))
        for k in lists:
            by_node[self.owner(k).port].append(("RPUSH", k, "x"))
        for m in self.masters:
            c = self.on_node(m)
            c.send_many(by_node[m.port])
            for cmd in by_node[m.port]:
                self.assertEqual(c.read(), 1, cmd)
        got, calls = self.scan_all(self.kg(), "TYPE", "hash")
        self.assert_exactly_once(got, hashes, f"SCAN TYPE hash ({calls} calls)")
        got, calls = self.scan_all(self.kg(), "MATCH", "scan:l:1*", "TYPE", "list", "COUNT", 100)
        self.assert_exactly_once(got, [k for k in lists if k.startswith("scan:l:1")],
                                 f"SCAN MATCH TYPE list ({calls} calls)")
        got, calls = self.scan_all(self.kg(), "TYPE", "string", "COUNT", 1000)
        self.assert_exactly_once(got, strings, f"SCAN TYPE string ({calls} calls)")

    # ----------------------------------------------------------------------------------------
    # 6. PING, ECHO, INFO
    # ----------------------------------------------------------------------------------------

    def test_ping_echo_info(self):
        kg = self.kg()
        reply = kg.call("PING")
        self.assertIsInstance(reply, h.SimpleString)
        self.assertEqual(reply, "PONG")
        self.assertEqual(kg.call("PING", "hello"), b"hello")
        self.assertEqual(kg.call("ECHO", "cluster"), b"cluster")
        info = kg.call("INFO")
        self.assertIsInstance(info, bytes, f"INFO: {info!r}")
        self.assertIn(b"# keygate", info)
        self.assertIn(b"redis_version:", info)
        self.assertIn(b"# Server", info)

    # ----------------------------------------------------------------------------------------
    # 7. transactions
    # ----------------------------------------------------------------------------------------

    def test_watch_multi_exec_on_every_master(self):
        kg = self.kg()
        for i, key in enumerate(self.key_each_master("tx:w")):
            self.assert_ok(kg.call("WATCH", key), f"WATCH {key}")
            self.assert_ok(kg.call("MULTI"))
            self.assertEqual(kg.call("SET", key, f"t{i}"), "QUEUED")
            self.assertEqual(kg.call("EXEC"), ["OK"], f"EXEC on master {i}")
            self.assertEqual(self.on(key).call("GET", key), f"t{i}".encode())

    def test_watch_conflict_aborts_exec_on_every_master(self):
        kg = self.kg()
        for i, key in enumerate(self.key_each_master("tx:c")):
            d = self.on(key)
            # A direct write between WATCH and MULTI ...
            self.assert_ok(kg.call("WATCH", key))
            self.assert_ok(d.call("SET", key, "direct-1"))
            self.assert_ok(kg.call("MULTI"))
            self.assertEqual(kg.call("SET", key, "mine"), "QUEUED")
            self.assertIsNone(kg.call("EXEC"), f"EXEC after a concurrent write (master {i})")
            self.assertEqual(d.call("GET", key), b"direct-1")
            # ... and between queuing and EXEC.
            self.assert_ok(kg.call("WATCH", key))
            self.assert_ok(kg.call("MULTI"))
            self.assertEqual(kg.call("SET", key, "mine"), "QUEUED")
            self.assert_ok(d.call("SET", key, "direct-2"))
            self.assertIsNone(kg.call("EXEC"), f"EXEC after a concurrent write (master {i})")
            self.assertEqual(d.call("GET", key), b"direct-2")
            # Without a conflict the same WATCH commits.
            self.assert_ok(kg.call("WATCH", key))
            self.assert_ok(kg.call("MULTI"))
            self.assertEqual(kg.call("SET", key, "mine"), "QUEUED")
            self.assertEqual(kg.call("EXEC"), ["OK"])
            self.assertEqual(d.call("GET", key), b"mine")

    def test_multi_exec_one_hash_tag_on_every_master(self):
        kg = self.kg()
        for i, tag in enumerate(["{t}"] + self.tag_each_master("tx:tag")):
            a, b = f"{tag}a", f"{tag}b"
            self.assert_ok(kg.call("MULTI"))
            self.assertEqual(kg.call("SET", a, "1"), "QUEUED")
            self.assertEqual(kg.call("INCR", b), "QUEUED")
            self.assertEqual(kg.call("EXEC"), ["OK", 1], f"MULTI with {tag}")
            self.assertEqual(self.on(a).call("MGET", a, b), [b"1", b"1"])

    def _check_crossslot_in_multi(self, a: str, other: str) -> None:
        kg = self.kg()
        self.assertNotEqual(ch.key_slot(a), ch.key_slot(other))
        self.assert_ok(kg.call("MULTI"))
        self.assertEqual(kg.call("SET", a, "1"), "QUEUED")
        self.assert_crossslot(kg.call("SET", other, "2"), f"SET {other} inside MULTI on {a}")
        self.assertEqual(kg.call("INCR", a), "QUEUED")
        reply = kg.call("EXEC")
        self.assertIsInstance(reply, h.ErrorReply, f"EXEC after CROSSSLOT: {reply!r}")
        self.assertTrue(reply.startswith("EXECABORT"), reply)
        self.assertEqual(self.on(a).call("EXISTS", a), 0, "transaction partly applied")
        self.assertEqual(self.on(other).call("EXISTS", other), 0, "transaction partly applied")
        # No longer in MULTI: commands run at once, on any slot.
        self.assert_ok(kg.call("SET", other, "after"))
        self.assertEqual(self.on(other).call("GET", other), b"after")
        self.assert_ok(kg.call("SET", a, "after"))
        self.assertEqual(self.on(a).call("GET", a), b"after")

    def test_multi_key_of_another_master_is_crossslot_and_aborts(self):
        tags = self.tag_each_master("tx:x")
        self._check_crossslot_in_multi(f"{tags[1]}a", f"{tags[2]}b")

    def test_multi_key_of_another_slot_on_the_same_master_is_crossslot_and_aborts(self):
        a, other = self.keys_per_master("tx:same", 2)[2]
        self._check_crossslot_in_multi(a, other)

    def test_empty_multi_exec_and_discard(self):
        kg = self.kg()
        self.assert_ok(kg.call("MULTI"))
        self.assertEqual(kg.call("EXEC"), [])
        self.assert_ok(kg.call("MULTI"))
        self.assert_ok(kg.call("DISCARD"))
        key = self.key_each_master("tx:d")[1]
        self.assert_ok(kg.call("MULTI"))
        self.assertEqual(kg.call("SET", key, "never"), "QUEUED")
        self.assert_ok(kg.call("DISCARD"))
        self.assertEqual(self.on(key).call("EXISTS", key), 0)
        self.assertIsNone(kg.call("GET", key))
        reply = kg.call("EXEC")
        self.assertIsInstance(reply, h.ErrorReply, f"EXEC without MULTI: {reply!r}")

    # ----------------------------------------------------------------------------------------
    # 8. pub/sub
    # ----------------------------------------------------------------------------------------

    def test_subscribe_receives_from_keygate_and_every_master(self):
        sub, pub = self.kg(), self.kg()
        self.assertEqual(sub.call("SUBSCRIBE", "kg:news"), [b"subscribe", b"kg:news", 1])
        self.assertIsInstance(pub.call("PUBLISH", "kg:news", "via-keygate"), int)
        self.assertEqual(sub.read(), [b"message", b"kg:news", b"via-keygate"])
        for m in self.masters:
            sent = self.on_node(m).call("PUBLISH", "kg:news", f"direct-{m.port}")
            self.assertIsInstance(sent, int, f"PUBLISH on {m.address}: {sent!r}")
            self.assertEqual(sub.read(), [b"message", b"kg:news", f"direct-{m.port}".encode()],
                             f"PUBLISH sent to {m.address}")

    def test_psubscribe_receives_from_keygate_and_every_master(self):
        sub, pub = self.kg(), self.kg()
        self.assertEqual(sub.call("PSUBSCRIBE", "kg:p.*"), [b"psubscribe", b"kg:p.*", 1])
        self.assertIsInstance(pub.call("PUBLISH", "kg:p.one", "via-keygate"), int)
        self.assertEqual(sub.read(), [b"pmessage", b"kg:p.*", b"kg:p.one", b"via-keygate"])
        for m in self.masters:
            ch_name = f"kg:p.{m.port}"
            self.assertIsInstance(self.on_node(m).call("PUBLISH", ch_name, "direct"), int)
            self.assertEqual(sub.read(), [b"pmessage", b"kg:p.*", ch_name.encode(), b"direct"],
                             f"PUBLISH sent to {m.address}")

    def test_ssubscribe_receives_spublish_on_every_master(self):
        for tag in ["{s}"] + self.tag_each_master("ps:s"):
            chan = f"{tag}ch"
            owner = self.owner(chan)
            sub, pub = self.kg(), self.kg()
            self.assertEqual(sub.call("SSUBSCRIBE", chan), [b"ssubscribe", chan.encode(), 1])
            self.assertIsInstance(pub.call("SPUBLISH", chan, "via-keygate"), int)
            self.assertEqual(sub.read(), [b"smessage", chan.encode(), b"via-keygate"],
                             f"SPUBLISH {chan} through keygate")
            self.assertIsInstance(self.on_node(owner).call("SPUBLISH", chan, "direct"), int)
            self.assertEqual(sub.read(), [b"smessage", chan.encode(), b"direct"],
                             f"SPUBLISH {chan} sent to its master {owner.address}")

    # ----------------------------------------------------------------------------------------
    # 9. blocking commands
    # ----------------------------------------------------------------------------------------

    def test_blpop_answered_by_lpush_on_every_master(self):
        for i, key in enumerate(self.key_each_master("bl:pop")):
            owner = self.owner(key)
            before = self.blocked_clients(owner)
            blocker, pusher = self.kg(), self.kg()
            blocker.send("BLPOP", key, 5)
            self.wait_blocked(owner, before + 1)   # blocked on the key's own master
            self.assertEqual(pusher.call("LPUSH", key, f"v{i}"), 1)
            self.assertEqual(blocker.read(), [key.encode(), f"v{i}".encode()], f"master {i}")
            self.assertEqual(self.on(key).call("EXISTS", key), 0)
            self.assertEqual(blocker.call("PING"), "PONG")

    def test_blpop_timeout_returns_nil(self):
        key = self.key_each_master("bl:t")[2]
        self.assertIsNone(self.kg().call("BLPOP", key, "0.2"))

    def test_brpoplpush_and_blmove_within_one_slot(self):
        for i, tag in enumerate(self.tag_each_master("bl:mv")):
            src, dst = f"{tag}src", f"{tag}dst"
            owner = self.owner(src)
            for cmd in (("BRPOPLPUSH", src, dst, 5), ("BLMOVE", src, dst, "LEFT", "RIGHT", 5)):
                before = self.blocked_clients(owner)
                blocker, pusher = self.kg(), self.kg()
                blocker.send(*cmd)
                self.wait_blocked(owner, before + 1)
                self.assertEqual(pusher.call("LPUSH", src, f"{cmd[0]}-{i}"), 1)
                self.assertEqual(blocker.read(), f"{cmd[0]}-{i}".encode(), f"{cmd[0]} master {i}")
            self.assertEqual(self.on(dst).call("LRANGE", dst, 0, -1),
                             [f"BRPOPLPUSH-{i}".encode(), f"BLMOVE-{i}".encode()])
            self.assertEqual(self.on(src).call("EXISTS", src), 0)

    def test_xread_block_answered_by_xadd(self):
        for i, key in enumerate(self.key_each_master("bl:xs")):
            owner = self.owner(key)
            before = self.blocked_clients(owner)
            reader, writer = self.kg(), self.kg()
            reader.send("XREAD", "BLOCK", 5000, "STREAMS", key, "$")
            self.wait_blocked(owner, before + 1)
            xid = writer.call("XADD", key, "*", "f", f"v{i}")
            self.assertIsInstance(xid, bytes, f"XADD: {xid!r}")
            self.assertEqual(reader.read(), [[key.encode(), [[xid, [b"f", f"v{i}".encode()]]]]])
            self.assertEqual(self.on(key).call("XLEN", key), 1)

    # ----------------------------------------------------------------------------------------
    # 10. a big pipeline
    # ----------------------------------------------------------------------------------------

    def test_pipeline_10000_mixed_set_get(self):
        kg = self.kg(timeout=60)
        rng = random.Random(20240611)
        keys = [f"pl:{i}" for i in range(500)]
        model: Dict[str, bytes] = {}
        commands, expected = [], []
        for i in range(10000):
            k = rng.choice(keys)
            if rng.random() < 0.5:
                v = f"v{i}-{rng.randrange(1 << 30)}"
                commands.append(("SET", k, v))
                model[k] = v.encode()
                expected.append("OK")
            else:
                commands.append(("GET", k))
                expected.append(model.get(k))
        payload = b"".join(h.encode_command(*c) for c in commands)
        errors: List[BaseException] = []

        def sender():
            try:
                kg.send_raw(payload)         # one send; replies are read meanwhile below
            except BaseException as exc:     # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        mismatches = []
        for i, want in enumerate(expected):
            got = kg.read()
            if got != want and len(mismatches) < 10:
                mismatches.append((i, commands[i], want, got))
        t.join(h.scaled(30))
        self.assertFalse(t.is_alive(), "sender still blocked")
        self.assertEqual(errors, [])
        self.assertEqual(mismatches, [], "pipeline replies out of order or wrong")
        self.assertEqual(kg.buffered(), b"", "extra bytes after 10,000 replies")
        got = self.direct_get_all(list(model))
        self.assertEqual(got, model)
        self.assertEqual(len({self.owner_index(k) for k in model}), 3)

    # ----------------------------------------------------------------------------------------
    # 11. RESP3
    # ----------------------------------------------------------------------------------------

    def test_resp3_hgetall_is_a_map_on_every_master(self):
        kg = self.kg()
        hello = kg.call("HELLO", 3)
        self.assertIsInstance(hello, h.Map, f"HELLO 3: {hello!r}")
        self.assertEqual(hello.to_dict().get(b"proto"), 3)
        for i, key in enumerate(self.key_each_master("r3:h")):
            self.assertEqual(kg.call("HSET", key, "f1", f"v{i}", "f2", "w"), 2)
            got = kg.call("HGETALL", key)
            self.assertIsInstance(got, h.Map, f"HGETALL on master {i}: {got!r}")
            self.assertEqual(got.to_dict(), {b"f1": f"v{i}".encode(), b"f2": b"w"})
            self.assertEqual(flat_to_dict(self.on(key).call("HGETALL", key)),
                             {b"f1": f"v{i}".encode(), b"f2": b"w"})
        empty = kg.call("HGETALL", "r3:h:missing")
        self.assertIsInstance(empty, h.Map)
        self.assertEqual(list(empty), [])

    def test_resp3_mget_across_masters_uses_resp3_nulls(self):
        kg = self.kg()
        self.assertIsInstance(kg.call("HELLO", 3), h.Map)
        keys = self.interleaved("r3:m", 2)
        self.write_direct({k: f"v{i}" for i, k in enumerate(keys)})
        missing = self.interleaved("r3:none", 1)
        query = [keys[0], missing[0], keys[1], missing[1], keys[2], missing[2], keys[5]]
        raw = kg.call_raw("MGET", *query)
        self.assertEqual(h.parse_reply(raw)[0], [b"v0", None, b"v1", None, b"v2", None, b"v5"])
        self.assertEqual(raw.count(b"_\r\n"), 3, f"RESP3 nulls expected: {raw!r}")
        self.assertNotIn(b"$-1\r\n", raw, f"RESP2 null inside a RESP3 reply: {raw!r}")


if __name__ == "__main__":
    h.main()
