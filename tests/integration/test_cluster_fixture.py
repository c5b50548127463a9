#!/usr/bin/python3
"""The Redis Cluster fixture (cluster_harness.py) itself: topology, key -> slot, routing by
hand, failover, slot migration with ASK/MOVED, and that stopping leaves no process behind."""

import contextlib
import io
import os
import random
import shutil
import socket
import tempfile
import unittest

import cluster_harness as ch
import keygate_harness as h


def _alive(pid: int) -> bool:
    """True while /proc/PID exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _refused(port: int) -> bool:
    try:
        with socket.create_connection((h.HOST, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def _flat_map(items) -> dict:
    """RESP2 flattened map [k1, v1, k2, v2, ...] -> dict with str keys."""
    return {k.decode(): v for k, v in zip(items[::2], items[1::2])}


class ClusterFixtureTest(ch.KeygateClusterTestCase):
    def test_topology_three_masters_three_replicas_all_slots(self):
        masters, replicas = self.cluster.masters(), self.cluster.replicas()
        self.assertEqual(len(masters), 3, masters)
        self.assertEqual(len(replicas), 3, replicas)
        master_ids = {m.node_id for m in masters}
        self.assertEqual(sorted(r.master_id for r in replicas), sorted(master_ids))
        # Every node: a distinct live process, bus on port+10000, its own ROLE agrees.
        everyone = masters + replicas
        self.assertEqual(len({n.pid for n in everyone}), 6)
        self.assertEqual(sorted(n.port for n in everyone),
                         sorted(int(s.rsplit(":", 1)[1]) for s in self.cluster.seeds()))
        for n in everyone:
            self.assertTrue(_alive(n.pid), n)
            self.assertEqual(n.bus_port, n.port + 10000)
            self.assertEqual(n.host, "127.0.0.1")
            self.assertEqual(n.call("ROLE")[0], b"master" if n.role == "master" else b"slave")
        # The masters' ranges cover 0..16383 exactly once.
        ranges = sorted(r for m in masters for r in m.slots)
        self.assertEqual(ranges[0][0], 0)
        self.assertEqual(ranges[-1][1], 16383)
        for (_, end), (start, _) in zip(ranges, ranges[1:]):
            self.assertEqual(start, end + 1, ranges)
        # CLUSTER SHARDS (asked of every node) says the same as CLUSTER NODES.
        want = {m.node_id: [x for r in m.slots for x in r] for m in masters}
        for n in everyone:
            got = {}
            for shard in n.call("CLUSTER", "SHARDS"):
                shard = _flat_map(shard)
                nodes = [_flat_map(x) for x in shard["nodes"]]
                primary = [x for x in nodes if x["role"] == b"master"]
                self.assertEqual(len(primary), 1, nodes)
                self.assertEqual(len(nodes), 2, nodes)
                got[primary[0]["id"].decode()] = list(shard["slots"])
            self.assertEqual(got, want, f"CLUSTER SHARDS on {n.address}")

    def test_key_slot_matches_cluster_keyslot(self):
        # Spec examples: only the first {...} with something inside counts.
        self.assertEqual(ch.key_slot("123456789"), 0x31C3 % 16384)  # CRC16/XMODEM check value
        self.assertEqual(ch.key_slot("{user1000}.following"), ch.key_slot("user1000"))
        self.assertEqual(ch.key_slot("{user1000}.following"), ch.key_slot("{user1000}.followers"))
        self.assertEqual(ch.hash_tag("foo{}{bar}"), b"foo{}{bar}")
        self.assertEqual(ch.hash_tag("foo{{bar}}zap"), b"{bar")
        self.assertEqual(ch.hash_tag("foo{bar}{zap}"), b"bar")
        self.assertEqual(ch.hash_tag("{}x"), b"{}x")
        self.assertEqual(ch.hash_tag("x{y"), b"x{y")
        self.assertEqual(ch.hash_tag("x}y{z}"), b"z")
        keys = [b"{user1000}.following", b"{user1000}.followers", b"foo{}{bar}", b"foo{{bar}}zap",
                b"{}x", b"foo{bar}{zap}", b"{", b"}", b"{}", b"{{}}", b"", b"a", b"123456789",
                "ключ{тег}".encode(), b"\x00\xff{\x01}\x80"]
        rng = random.Random(1234)
        alphabet = b"ab{}\x00\xff:x"
        for i in range(3000):
            if i % 3 == 0:
                keys.append(f"key:{i}".encode())
            else:
                keys.append(bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))))
        c = self.node_conn(self.cluster.masters()[0])
        c.send_many([("CLUSTER", "KEYSLOT", k) for k in keys])
        mismatches = []
        for k in keys:
            want = c.read()
            if want != ch.key_slot(k):
                mismatches.append((k, want, ch.key_slot(k)))
        self.assertEqual(mismatches, [])

    def test_write_and_read_through_the_owning_node(self):
        masters = self.cluster.masters()
        by_port = {m.port: m for m in masters}
        conns = {m.port: self.node_conn(m) for m in masters}
        used = set()
        for i in range(300):
            key = f"fx:rw:{i}"
            owner = self.cluster.node_for_key(key)
            used.add(owner.port)
            c = conns[owner.port]
            self.assertEqual(c.call("SET", key, f"v{i}"), "OK")
            self.assertEqual(c.call("GET", key), f"v{i}".encode())
            # Any other master redirects to the owner.
            other = conns[next(p for p in by_port if p != owner.port)]
            self.assertEqual(other.call("GET", key),
                             f"MOVED {ch.key_slot(key)} {owner.address}")
        self.assertEqual(used, set(by_port), "300 keys should land on all three masters")
        # A hash tag keeps keys together, so a multi-key command works on the owner.
        owner = self.cluster.node_for_key("{fx:tag}")
        c = conns[owner.port]
        self.assertEqual(c.call("MSET", "{fx:tag}a", "1", "{fx:tag}b", "2"), "OK")
        self.assertEqual(c.call("MGET", "{fx:tag}a", "{fx:tag}b"), [b"1", b"2"])
        self.assertTrue(str(c.call("MGET", "fx:rw:1", "fx:rw:2")).startswith("CROSSSLOT"))

    def test_kill_master_and_wait_for_failover(self):
        victim = self.cluster.masters()[1]
        replica = self.cluster.replicas_of(victim)
        self.assertEqual(len(replica), 1)
        keys = []
        for i in range(5000):
            if len(keys) == 50:
                break
            if self.cluster.node_for_slot(ch.key_slot(f"fx:fo:{i}")).port == victim.port:
                keys.append(f"fx:fo:{i}")
        self.assertEqual(len(keys), 50)
        with victim.client(timeout=h.scaled(10)) as c:
            for k in keys:
                self.assertEqual(c.call("SET", k, k + ":v"), "OK")
            self.assertEqual(c.call("WAIT", 1, int(h.scaled(10) * 1000)), 1)
        old = self.cluster.kill_master(victim)
        self.assertFalse(_alive(old.pid))
        new = self.cluster.wait_for_failover(old, timeout=h.scaled(30))
        times = self.cluster.last_failover
        print(f"\n[failover] node-timeout {self.cluster.node_timeout_ms} ms: replica promoted "
              f"{times['promoted']:.2f} s after SIGKILL, all nodes cluster_state:ok and agreeing "
              f"{times['ok']:.2f} s after", flush=True)
        self.assertEqual(new.node_id, replica[0].node_id)
        self.assertEqual(new.slots, old.slots)
        self.assertLess(times["ok"], h.scaled(30))
        for k in keys:
            self.assertEqual(self.cluster.node_for_key(k).node_id, new.node_id)
            self.assertEqual(new.call("GET", k), (k + ":v").encode())
        # restart_node/ensure_healthy: the old master comes back as the new master's replica.
        self.cluster.ensure_healthy()
        back = [n for n in self.cluster.replicas() if n.port == old.port]
        self.assertEqual(len(back), 1)
        self.assertEqual(back[0].node_id, old.node_id)
        self.assertEqual(back[0].master_id, new.node_id)
        self.assertNotEqual(back[0].pid, old.pid)

    def test_migrate_slot_ask_then_moved(self):
        keys = [f"{{fx:mig}}:{i}" for i in range(10)]
        slot = ch.key_slot(keys[0])
        src = self.cluster.node_for_slot(slot)
        dst = next(m for m in self.cluster.masters() if m.node_id != src.node_id)
        s, d = self.node_conn(src), self.node_conn(dst)
        for k in keys:
            self.assertEqual(s.call("SET", k, k + ":v"), "OK")
        seen = []

        def on_step(step, m):
            seen.append(step)
            if step == "migrating":
                # Nothing moved yet: src still serves existing keys; a missing key is sent to dst
                # with ASK; dst without ASKING redirects back to the owner with MOVED.
                self.assertEqual(s.call("GET", keys[0]), (keys[0] + ":v").encode())
                self.assertEqual(s.call("GET", "{fx:mig}:absent"), f"ASK {slot} {dst.address}")
                self.assertEqual(d.call("GET", keys[0]), f"MOVED {slot} {src.address}")
            elif step == "batch" and seen.count("batch") == 1:
                moved = [k.decode() for k in m.last_batch]
                self.assertEqual(len(moved), 3)
                left = [k for k in keys if k not in moved]
                for k in moved:
                    self.assertEqual(s.call("GET", k), f"ASK {slot} {dst.address}")
                    self.assertEqual(d.call("GET", k), f"MOVED {slot} {src.address}")
                    self.assertEqual(d.call("ASKING"), "OK")
                    self.assertEqual(d.call("GET", k), (k + ":v").encode())
                self.assertEqual(s.call("GET", left[0]), (left[0] + ":v").encode())
                self.assertEqual(m.keys_left(), 7)
            elif step == "keys_moved":
                self.assertEqual(m.keys_left(), 0)

        moved = self.cluster.migrate_slot(slot, src, dst, keys_batch=3, on_step=on_step)
        self.assertEqual(moved, 10)
        self.assertEqual(seen, ["importing", "migrating", "batch", "batch", "batch", "batch",
                                "keys_moved", "done"])
        self.assertEqual(self.cluster.node_for_slot(slot).node_id, dst.node_id)
        for k in keys:
            self.assertEqual(s.call("GET", k), f"MOVED {slot} {dst.address}")
            self.assertEqual(d.call("GET", k), (k + ":v").encode())
        # Every node, replicas included, now sends the slot to dst.
        for n in self.cluster.masters() + self.cluster.replicas():
            if n.node_id != dst.node_id:
                self.assertEqual(n.call("GET", keys[0]), f"MOVED {slot} {dst.address}", n)
        self.cluster.wait_healthy()

    def test_flushall_empties_every_node(self):
        for i in range(100):
            k = f"fx:fl:{i}"
            self.assertEqual(self.cluster.node_for_key(k).call("SET", k, "x"), "OK")
        self.cluster.flushall()
        for n in self.cluster.masters() + self.cluster.replicas():
            self.assertEqual(n.call("DBSIZE"), 0, n)


class FixtureLifecycleTest(unittest.TestCase):
    def test_context_manager_stops_every_process_also_on_error(self):
        workdir = tempfile.mkdtemp(prefix="keygate-it-cluster-lifecycle-")
        self.addCleanup(shutil.rmtree, workdir, True)
        captured = io.StringIO()
        pids, ports = [], []
        with self.assertRaisesRegex(RuntimeError, "boom"), contextlib.redirect_stderr(captured):
            with ch.RedisCluster(workdir) as cluster:
                pids, ports = cluster.pids(), [n.port for n in cluster.processes]
                self.assertEqual(len(pids), 6)
                self.assertTrue(all(_alive(p) for p in pids))
                self.assertEqual(cluster.health_problems(), [])
                raise RuntimeError("boom")
        self.assertTrue(pids)
        self.assertEqual([p for p in pids if _alive(p)], [], "processes left after stop()")
        for p in pids:
            with self.assertRaises(ProcessLookupError):
                os.kill(p, 0)
        self.assertEqual([p for p in ports if not _refused(p)], [])
        # On error the node logs were printed (tail), and every node exited on SIGTERM.
        self.assertIn("===== node5", captured.getvalue())
        self.assertEqual([n.returncode for n in cluster.processes], [0] * 6)
        self.assertEqual(cluster.stop(), [])  # idempotent


if __name__ == "__main__":
    h.main()
