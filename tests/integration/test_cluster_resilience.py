#!/usr/bin/python3
"""keygate in front of a real 3+3 Redis Cluster while the cluster changes under traffic, with a
plain (not cluster-aware) redis-py client:

* a slot resharded step by step while two client threads write and read it (and other slots)
  through keygate: ASK while the slot is MIGRATING/IMPORTING, MOVED after SETSLOT NODE, no
  client error, no wrong value, every key on the new owner afterwards;
* a multi-key request that meets TRYAGAIN (its keys split between source and target) is
  retried by keygate until the slot settles, instead of failing;
* a master SIGKILLed while writer/reader threads do SET-then-GET of unique values: never a
  wrong value; errors only for the dead master's slots (and CLUSTERDOWN, which Redis answers
  for every slot until the replica takes over) and only until shortly after its replica is
  promoted (the measured window is printed to stderr);
* after a failover keygate learns the new master from a topology refresh alone: the first
  requests for the failed master's slots go straight to the new master, without a MOVED.

Redirect and refresh counts come from keygate's /metrics on its admin port.
"""

import re
import sys
import threading
import time
import traceback
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import redis

import cluster_harness as ch
import keygate_harness as h

REDIRECTS = "keygate_cluster_redirects_total"
REFRESHES = "keygate_cluster_topology_refreshes_total"
CHANGES = "keygate_cluster_topology_changes_total"   # fetched maps that route a slot elsewhere

MetricKey = h.MetricKey


class Recorder:
    """What client threads saw, shared with the test thread under a lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0                  # commands answered as expected
        self.ok_victim = 0           # of which for keys in a failed master's slots
        self.ok_victim_since_error = 0
        self.errors: List[Tuple[float, str, bool, str]] = []   # (time, key, victim slot?, what)
        self.wrong: List[str] = []   # answers that were neither right nor an error
        self.crash: Optional[str] = None  # an exception in the test's own thread code
        self.uncertain = set()       # keys whose value is unknown after an error

    def good(self, n: int = 1, victim: bool = False) -> None:
        with self.lock:
            self.ok += n
            if victim:
                self.ok_victim += n
                self.ok_victim_since_error += n

    def error(self, key: str, what: str, victim: bool = False, keys: Sequence[str] = ()) -> None:
        with self.lock:
            self.errors.append((time.monotonic(), key, victim, what))
            self.ok_victim_since_error = 0
            self.uncertain.update(keys or (key,))

    def bad(self, what: str) -> None:
        with self.lock:
            self.wrong.append(what)

    def ops(self) -> int:
        with self.lock:
            return self.ok + len(self.errors) + len(self.wrong)

    def summary(self) -> str:
        with self.lock:
            errs = [f"{key}: {what}" for _, key, _, what in self.errors[:5]]
            return (f"ok={self.ok} errors={len(self.errors)} wrong={len(self.wrong)} "
                    f"first errors={errs} first wrong={self.wrong[:5]} crash={self.crash}")


class ClientThread(threading.Thread):
    """Runs `body(i)` for i = 1, 2, ... until stopped, `max_rounds` or `seconds` pass."""

    def __init__(self, name: str, rec: Recorder, body, max_rounds: int, seconds: float):
        super().__init__(name=name, daemon=True)
        self.rec = rec
        self.body = body
        self.max_rounds = max_rounds
        self.deadline = time.monotonic() + seconds
        self.stop_event = threading.Event()
        self.rounds = 0

    def run(self) -> None:
        try:
            while (not self.stop_event.is_set() and self.rounds < self.max_rounds
                   and time.monotonic() < self.deadline):
                self.rounds += 1
                self.body(self.rounds)
        except BaseException:  # a bug in the test body, not a client error
            self.rec.crash = traceback.format_exc()

    def finish(self, timeout: float) -> None:
        self.stop_event.set()
        self.join(timeout)


class ClusterResilienceTest(ch.KeygateClusterTestCase):
    start_keygate = True
    admin_port = 0

    @classmethod
    def setUpClass(cls) -> None:
        cls.admin_port = h.free_port()
        cls.keygate_config = f"admin: {h.HOST}:{cls.admin_port}\n"
        super().setUpClass()

    # -- helpers
    def kg_redis(self, socket_timeout: float = 30.0, **kwargs) -> redis.Redis:
        """A plain redis-py client of keygate (created on the test thread, closed at the end)."""
        r = redis.Redis(host=h.HOST, port=self.keygate.port,
                        socket_timeout=socket_timeout,
                        socket_connect_timeout=kwargs.pop("socket_connect_timeout",
                                                          h.scaled(10)),
                        **kwargs)
        self.addCleanup(r.close)
        return r

    def metrics(self) -> Dict[MetricKey, float]:
        return h.admin_metrics(self.admin_port)

    def metric(self, name: str, **labels: str) -> Optional[float]:
        return h.metric(self.metrics(), name, **labels)

    def redirects(self) -> Tuple[Optional[float], Optional[float]]:
        m = self.metrics()
        return (m.get((REDIRECTS, (("kind", "ask"),))), m.get((REDIRECTS, (("kind", "moved"),))))

    def tag_on(self, node: ch.ClusterNodeInfo, prefix: str) -> str:
        """A hash tag whose slot `node` owns."""
        for i in range(100000):
            tag = f"{prefix}{i}"
            if node.owns(ch.key_slot(tag)):
                return tag
        raise AssertionError(f"no tag for {node.address}")

    def keys_on_each_master(self, prefix: str, per_master: int,
                            avoid_slot: int = -1) -> List[str]:
        masters = self.cluster.masters()
        picked: Dict[str, List[str]] = {m.node_id: [] for m in masters}
        for i in range(100000):
            key = f"{prefix}{i}"
            slot = ch.key_slot(key)
            if slot == avoid_slot:
                continue
            owner = next(m for m in masters if m.owns(slot))
            if len(picked[owner.node_id]) < per_master:
                picked[owner.node_id].append(key)
            if all(len(v) == per_master for v in picked.values()):
                break
        # interleave, so consecutive keys sit on different masters
        return [k for group in zip(*picked.values()) for k in group]

    def restore_slot(self, slot: int, owner: ch.ClusterNodeInfo) -> None:
        """Cleanup: clear MIGRATING/IMPORTING left by a failure half-way, then move the slot back
        to `owner` if it moved."""
        for m in self.cluster.masters():
            m.call("CLUSTER", "SETSLOT", slot, "STABLE")
        now = self.cluster.node_for_slot(slot)
        if now.node_id != owner.node_id:
            self.cluster.migrate_slot(slot, now, owner, keys_batch=200)

    # -- tests
    def test_reshard_under_traffic_ask_then_moved_no_client_error(self):
        masters = self.cluster.masters()
        src, dst = masters[0], masters[1]
        tag = self.tag_on(src, "rs")
        slot = ch.key_slot(tag)
        token = uuid.uuid4().hex[:8]
        # 150 keys the clients only read, so the slot migrates in 15 batches of 10.
        static = {f"{{{tag}}}:s:{i}": f"static-{i}-{token}".encode() for i in range(150)}
        t1_slot = [f"{{{tag}}}:t1:{i}" for i in range(10)]
        t2_slot = [f"{{{tag}}}:t2:{i}" for i in range(8)]
        others = self.keys_on_each_master("rs:o:", 8, avoid_slot=slot)
        t1_other, t2_other = others[:12], others[12:]
        src_conn = self.node_conn(src)
        src_conn.send_many([("SET", k, v) for k, v in static.items()])
        for _ in static:
            self.assertEqual(src_conn.read(), "OK")
        self.addCleanup(self.restore_slot, slot, src)

        ask0, moved0 = self.redirects()
        exhausted0 = self.metric(REDIRECTS, kind="exhausted") or 0
        self.assertIsNotNone(ask0, f'{REDIRECTS}{{kind="ask"}} not in keygate /metrics')
        self.assertIsNotNone(moved0, f'{REDIRECTS}{{kind="moved"}} not in keygate /metrics')

        rec = Recorder()
        expected: Dict[str, Optional[bytes]] = {}   # keys the threads wrote -> value now
        static_keys = list(static)

        # Thread 1: SET-then-GET of unique values, mostly in the slot, and GETs of static keys.
        r1 = self.kg_redis(socket_timeout=h.scaled(20))

        def single_key_round(i: int) -> None:
            kind = i % 4
            if kind == 3:
                key = static_keys[i % len(static_keys)]
                try:
                    got = r1.get(key)
                except redis.RedisError as exc:
                    rec.error(key, f"GET: {exc!r}")
                    return
                if got != static[key]:
                    rec.bad(f"GET {key} = {got!r}, expected {static[key]!r}")
                else:
                    rec.good()
                return
            key = t1_other[i % len(t1_other)] if kind == 2 else t1_slot[i % len(t1_slot)]
            value = f"{key}#{i}#{token}".encode()
            try:
                ok = r1.set(key, value)
            except redis.RedisError as exc:
                rec.error(key, f"SET: {exc!r}")
                return
            if ok is not True:
                rec.bad(f"SET {key}: {ok!r}")
                return
            expected[key] = value
            try:
                got = r1.get(key)
            except redis.RedisError as exc:
                rec.error(key, f"GET: {exc!r}")
                return
            if got != value:
                rec.bad(f"GET {key} = {got!r} just after SET {value!r}")
            else:
                rec.good(2)

        # Thread 2: MSET / MGET / DEL / EXISTS spanning the slot and the other masters. Each
        # command has one key in the migrating slot: several new keys of a slot being migrated
        # would get TRYAGAIN from Redis until the migration ends (see the TRYAGAIN test).
        r2 = self.kg_redis(socket_timeout=h.scaled(20))

        def multi_key_round(i: int) -> None:
            a = t2_slot[i % len(t2_slot)]
            o1, o2 = t2_other[i % len(t2_other)], t2_other[(i + 5) % len(t2_other)]
            s = static_keys[(i * 7) % len(static_keys)]
            phase = i % 3
            try:
                if phase == 0:
                    values = {a: f"{a}#{i}#{token}".encode(), o1: f"{o1}#{i}".encode(),
                              o2: f"{o2}#{i}".encode()}
                    ok = r2.mset(values)
                    if ok is not True:
                        rec.bad(f"MSET {list(values)}: {ok!r}")
                        return
                    expected.update(values)
                    rec.good()
                elif phase == 1:
                    want = [expected.get(o1), expected.get(a), expected.get(o2)]
                    got = r2.mget([o1, a, o2])
                    if got != want:
                        rec.bad(f"MGET {[o1, a, o2]} = {got!r}, expected {want!r}")
                        return
                    want = [static[s], expected.get(o1)]
                    got = r2.mget([s, o1])
                    if got != want:
                        rec.bad(f"MGET {[s, o1]} = {got!r}, expected {want!r}")
                        return
                    rec.good(2)
                else:
                    want_n = sum(expected.get(k) is not None for k in (a, o1))
                    n = r2.delete(a, o1)
                    if n != want_n:
                        rec.bad(f"DEL {a} {o1} = {n!r}, expected {want_n}")
                        return
                    expected[a] = expected[o1] = None
                    want_n = int(expected.get(o2) is not None)
                    n = r2.exists(a, o2)
                    if n != want_n:
                        rec.bad(f"EXISTS {a} {o2} = {n!r}, expected {want_n}")
                        return
                    rec.good(2)
            except redis.RedisError as exc:
                rec.error(a, f"round {i} phase {phase}: {exc!r}", keys=(a, o1, o2))

        probe = self.kg_redis(socket_timeout=h.scaled(20), single_connection_client=True)
        probes: Dict[str, int] = {}
        problems: List[str] = []
        steps: List[str] = []

        threads = [ClientThread("single-key", rec, single_key_round, 1_000_000, h.scaled(120)),
                   ClientThread("multi-key", rec, multi_key_round, 1_000_000, h.scaled(120))]

        def wait_traffic(n: int, why: str) -> None:
            """Both threads complete `n` more rounds, so every migration state sees traffic."""
            if problems and problems[-1].startswith("traffic stalled"):
                return  # already reported; do not wait again at every step
            targets = [t.rounds + n for t in threads]
            try:
                h.wait_until(lambda: all(t.rounds >= want or not t.is_alive()
                                         for t, want in zip(threads, targets)),
                             h.scaled(15), message=f"{n} client rounds {why}")
            except AssertionError as exc:
                problems.append(f"traffic stalled: {exc}")

        def check_probe(what: str, call, want) -> None:
            try:
                got = call()
            except redis.RedisError as exc:
                problems.append(f"{what}: {exc!r}")
                return
            if got != want:
                problems.append(f"{what} = {got!r}, expected {want!r}")
            probes[what.split()[0]] = probes.get(what.split()[0], 0) + 1

        def on_step(step: str, m: ch.SlotMigration) -> None:
            steps.append(step)
            wait_traffic(10, f"after step {step}")
            if step == "migrating":
                # Nothing moved yet: served by src; a missing key gets ASK from src.
                k = static_keys[0]
                check_probe(f"GET {k} (src)", lambda: probe.get(k), static[k])
                check_probe("GET-ASK missing key",
                            lambda: probe.get(f"{{{tag}}}:absent"), None)
            elif step == "batch":
                moved = [k.decode() for k in m.last_batch if k.decode() in static]
                if moved:
                    # All on dst now: src answers ASK, keygate asks dst with ASKING.
                    check_probe(f"MGET-ASK {len(moved)} moved keys",
                                lambda: probe.mget(moved), [static[k] for k in moved])
                    check_probe(f"GET-ASK {moved[0]}", lambda: probe.get(moved[0]),
                                static[moved[0]])
            elif step == "done":
                # Everyone says dst owns the slot; keygate's map still says src: MOVED.
                k = static_keys[-1]
                check_probe(f"GET-MOVED {k}", lambda: probe.get(k), static[k])

        started = time.monotonic()
        for t in threads:
            t.start()
        wait_traffic(20, "before the migration")
        moved_keys = self.cluster.migrate_slot(slot, src, dst, keys_batch=10, on_step=on_step)
        wait_traffic(50, "after the migration")  # and the MOVED path under client traffic
        for t in threads:
            t.finish(h.scaled(30))
        elapsed = time.monotonic() - started
        ask1, moved1 = self.redirects()
        sys.stderr.write(f"\n[reshard] slot {slot} {src.address} -> {dst.address}: "
                         f"{moved_keys} keys moved, {elapsed:.1f} s, client rounds "
                         f"{[t.rounds for t in threads]}, {rec.summary()}; keygate redirects "
                         f"ask +{(ask1 or 0) - ask0:.0f} moved +{(moved1 or 0) - moved0:.0f}; "
                         f"probes {probes}\n")

        self.assertEqual([t.name for t in threads if t.is_alive()], [], "client threads hang")
        self.assertIsNone(rec.crash, rec.crash)
        self.assertEqual(rec.wrong, [], "wrong values through keygate during the reshard")
        self.assertEqual([f"{k}: {w}" for _, k, _, w in rec.errors], [],
                         "client errors through keygate during the reshard")
        self.assertEqual(problems, [])
        self.assertEqual(steps[:2] + steps[-2:], ["importing", "migrating", "keys_moved", "done"])
        self.assertGreaterEqual(steps.count("batch"), 15)
        self.assertGreaterEqual(moved_keys, len(static))
        self.assertGreater(rec.ok, 200, "too little traffic to mean anything")
        self.assertGreater(ask1, ask0, "no ASK redirect was counted by keygate")
        self.assertGreater(moved1, moved0, "no MOVED redirect was counted by keygate")
        self.assertEqual((self.metric(REDIRECTS, kind="exhausted") or 0) - exhausted0, 0,
                         "keygate gave up on a redirect chain")

        # Every key of the slot is on dst now, with the value last written through keygate.
        self.assertEqual(self.cluster.node_for_slot(slot).node_id, dst.node_id)
        d = self.node_conn(dst)
        slot_keys = static_keys + t1_slot + t2_slot
        want = [static[k] if k in static else expected.get(k) for k in slot_keys]
        d.send_many([("GET", k) for k in slot_keys])
        got = [d.read() for _ in slot_keys]
        diff = [(k, g, w) for k, g, w in zip(slot_keys, got, want) if g != w]
        self.assertEqual(diff, [], "keys on the new owner differ from what was written")
        self.assertEqual(d.call("CLUSTER", "COUNTKEYSINSLOT", slot),
                         sum(w is not None for w in want))
        self.assertEqual(self.node_conn(src).call("CLUSTER", "COUNTKEYSINSLOT", slot), 0)
        for k in t1_other + t2_other:
            self.assertEqual(self.cluster.node_for_key(k).call("GET", k), expected.get(k), k)

    def test_multikey_request_survives_tryagain_until_the_slot_settles(self):
        masters = self.cluster.masters()
        src, dst = masters[1], masters[2]
        tag = self.tag_on(src, "ta")
        slot = ch.key_slot(tag)
        keys = [f"{{{tag}}}:a", f"{{{tag}}}:b", f"{{{tag}}}:c"]
        s = self.node_conn(src)
        for k in keys:
            self.assertEqual(s.call("SET", k, k + "=v"), "OK")
        r = self.kg_redis(socket_timeout=h.scaled(30))
        self.assertEqual(r.mget(keys), [(k + "=v").encode() for k in keys])  # route known

        m = self.cluster.migration(slot, src, dst)
        self.addCleanup(self.restore_slot, slot, src)
        m.set_importing()
        m.set_migrating()
        self.assertEqual(len(m.move_keys(1)), 1)
        # Keys split between src and dst: Redis answers a multi-key request TRYAGAIN.
        self.assertTrue(str(s.call("MGET", *keys)).startswith("TRYAGAIN"))

        def tryagain_count() -> int:
            text = s.call("INFO", "errorstats").decode()
            found = re.search(r"errorstat_TRYAGAIN:count=(\d+)", text)
            return int(found.group(1)) if found else 0

        before = tryagain_count()
        retries = self.metric(REDIRECTS, kind="retry")
        result: Dict[str, object] = {}

        def read():
            try:
                result["value"] = r.mget(keys)
            except redis.RedisError as exc:
                result["error"] = exc

        t = threading.Thread(target=read, daemon=True)
        t.start()
        # keygate has met TRYAGAIN (so it is retrying or has given up); only now let the slot
        # settle: the rest of the keys move, then SETSLOT NODE.
        h.wait_until(lambda: tryagain_count() > before or not t.is_alive(), h.scaled(10),
                     message="src to answer keygate's MGET with TRYAGAIN")
        self.assertGreater(tryagain_count(), before, f"keygate's MGET never met TRYAGAIN: {result}")
        while m.move_keys(10):
            pass
        m.set_node()
        m.wait_settled()
        t.join(h.scaled(30))
        self.assertFalse(t.is_alive(), "MGET did not return")
        self.assertNotIn("error", result, "keygate passed TRYAGAIN (or another error) to the "
                                          "client instead of retrying until the slot settled")
        self.assertEqual(result["value"], [(k + "=v").encode() for k in keys])
        self.assertEqual(r.mget(keys), [(k + "=v").encode() for k in keys])
        if retries is not None:
            self.assertGreater(self.metric(REDIRECTS, kind="retry"), retries,
                               'keygate_cluster_redirects_total{kind="retry"} did not grow')

    def test_failover_under_traffic_no_wrong_value_and_errors_stop(self):
        masters = self.cluster.masters()
        victim = masters[1]
        token = uuid.uuid4().hex[:8]
        rec = Recorder()
        clients = [self.kg_redis(socket_timeout=h.scaled(2), socket_connect_timeout=h.scaled(2))
                   for _ in range(2)]
        m0 = self.metrics()

        def round_for(tid: int, r: redis.Redis):
            def body(i: int) -> None:
                # A new key every round, so the only right answer to the GET is this value:
                # anything else would be another request's reply.
                key = f"fo:{tid}:{i}"
                victim_slot = victim.owns(ch.key_slot(key))
                value = f"{key}={token}".encode()
                try:
                    ok = r.set(key, value)
                except redis.RedisError as exc:
                    rec.error(key, f"SET: {exc!r}", victim_slot)
                    # The SET may or may not have been applied: nothing or this value is right.
                    try:
                        got = r.get(key)
                    except redis.RedisError as exc2:
                        rec.error(key, f"GET after failed SET: {exc2!r}", victim_slot)
                        return
                    if got not in (None, value):
                        rec.bad(f"GET {key} = {got!r} after a failed SET of {value!r}")
                    return
                if ok is not True:
                    rec.bad(f"SET {key}: {ok!r}")
                    return
                try:
                    got = r.get(key)
                except redis.RedisError as exc:
                    rec.error(key, f"GET: {exc!r}", victim_slot)
                    return
                if got != value:
                    rec.bad(f"GET {key} = {got!r} just after SET {value!r} answered OK")
                else:
                    rec.good(2, victim_slot)
            return body

        threads = [ClientThread(f"writer-reader-{i}", rec, round_for(i, r), 1_000_000,
                                h.scaled(90)) for i, r in enumerate(clients)]
        for t in threads:
            t.start()
        self.addCleanup(lambda: [t.finish(h.scaled(10)) for t in threads])
        h.wait_until(lambda: rec.ok_victim >= 100 and rec.ok >= 300 or rec.crash, h.scaled(20),
                     message="warm-up traffic on all masters")
        self.assertEqual(rec.errors, [], "errors before the failover")

        self.addCleanup(self.cluster.ensure_healthy)
        with rec.lock:
            rec.ok_victim_since_error = 0  # "errors stopped" counts from the kill on
        killed_at = time.monotonic()
        old = self.cluster.kill_master(victim)
        new = self.cluster.wait_for_failover(old)
        promoted_at = killed_at + self.cluster.last_failover["promoted"]
        ok_at = killed_at + self.cluster.last_failover["ok"]
        limit = promoted_at + h.scaled(15)

        def settled() -> bool:
            with rec.lock:
                last = rec.errors[-1][0] if rec.errors else promoted_at
                return (rec.ok_victim_since_error >= 50 and time.monotonic() - last >= 1.0
                        and time.monotonic() >= promoted_at + 1.0)

        settle_error = None
        try:
            h.wait_until(lambda: settled() or rec.crash, max(1.0, limit - time.monotonic()) + 2.0,
                         message="errors to stop and the failed master's slots to serve again")
        except AssertionError as exc:
            settle_error = str(exc)
        for t in threads:
            t.finish(h.scaled(10))
        m1 = self.metrics()

        errs = list(rec.errors)
        victim_errs = [e for e in errs if e[2]]
        other_errs = [e for e in errs if not e[2]]
        # While the dead master is marked FAIL and not yet replaced, every node answers
        # CLUSTERDOWN for every slot (cluster-require-full-coverage, Redis' default). keygate
        # retries it for a while; what outlasts that reaches the client, also for keys of the
        # healthy masters. Any other error for those keys would be keygate's own doing.
        other_down = [e for e in other_errs if "CLUSTERDOWN" in e[3]]
        lines = [f"\n[failover] SIGKILL {old.address}; replica {new.address} promoted "
                 f"{promoted_at - killed_at:.2f} s after the kill (polled), cluster ok after "
                 f"{ok_at - killed_at:.2f} s"]
        if errs:
            first, last = errs[0][0], errs[-1][0]
            lines.append(f"[failover] client errors: {len(errs)} ({len(victim_errs)} for the "
                         f"failed master's slots, {len(other_errs)} for others of which "
                         f"{len(other_down)} CLUSTERDOWN); first "
                         f"+{first - killed_at:.2f} s after the kill, last "
                         f"+{last - killed_at:.2f} s after the kill = "
                         f"{last - promoted_at:+.2f} s relative to promotion; error window "
                         f"{last - first:.2f} s")
            lines.append(f"[failover] first errors: {[f'{k}: {w}' for _, k, _, w in errs[:3]]}")
            lines.append(f"[failover] last error: {errs[-1][1]}: {errs[-1][3]}")
            if other_down:
                lines.append(f"[failover] CLUSTERDOWN reached clients for healthy masters' keys "
                             f"+{other_down[0][0] - killed_at:.2f} .. "
                             f"+{other_down[-1][0] - killed_at:.2f} s after the kill")
        else:
            lines.append("[failover] no client errors at all")
        def grew(name: str, **labels: str) -> str:
            key = (name, tuple(sorted(labels.items())))
            return f"+{m1.get(key, 0) - m0.get(key, 0):.0f}"

        lines.append(f"[failover] client commands answered right: {rec.ok} "
                     f"({rec.ok_victim} on the failed master's slots); wrong: {len(rec.wrong)}; "
                     f"keygate topology refreshes {grew(REFRESHES)}, changes {grew(CHANGES)}, "
                     f"redirects moved {grew(REDIRECTS, kind='moved')} retry "
                     f"{grew(REDIRECTS, kind='retry')} exhausted "
                     f"{grew(REDIRECTS, kind='exhausted')}")
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()

        self.assertEqual([t.name for t in threads if t.is_alive()], [], "client threads hang")
        self.assertIsNone(rec.crash, rec.crash)
        self.assertEqual(rec.wrong, [], "a GET returned a value that was not the one just SET")
        late = [f"+{t - promoted_at:.2f}s {k}: {w}" for t, k, _, w in errs if t > limit]
        self.assertEqual(late, [], f"errors later than {h.scaled(15):.0f} s after the promotion")
        self.assertIsNone(settle_error, settle_error)
        self.assertEqual([f"{k}: {w}" for _, k, _, w in other_errs if "CLUSTERDOWN" not in w],
                         [], "requests for healthy masters failed during the failover")

        # The failed master's slots serve through keygate again, from the promoted replica.
        r = self.kg_redis(socket_timeout=h.scaled(10))
        keys = [k for k in (f"fo:after:{i}" for i in range(3000))
                if old.owns(ch.key_slot(k))][:200]
        self.assertEqual(len(keys), 200)
        for k in keys:
            self.assertTrue(r.set(k, k + "=after"), k)
            self.assertEqual(r.get(k), (k + "=after").encode(), k)
        n = self.node_conn(new)
        self.assertEqual(n.call("GET", keys[-1]), (keys[-1] + "=after").encode())

    def test_failover_new_master_learned_by_refresh_without_moved(self):
        start = self.metrics()
        for name in (REFRESHES, CHANGES):
            if (name, ()) not in start:
                self.skipTest(f"{name} is not in keygate's /metrics")
        self.assertIn((REDIRECTS, (("kind", "moved"),)), start,
                      f'{REDIRECTS}{{kind="moved"}} not in keygate /metrics')
        r = self.kg_redis(socket_timeout=h.scaled(10))
        # keygate talks to every master before the failover.
        for k in self.keys_on_each_master("tr:warm:", 10):
            self.assertTrue(r.set(k, "1"))
        victim = self.cluster.masters()[0]
        changes = self.metric(CHANGES)
        moved = self.metric(REDIRECTS, kind="moved")
        self.addCleanup(self.cluster.ensure_healthy)
        killed_at = time.monotonic()
        old = self.cluster.kill_master(victim)
        new = self.cluster.wait_for_failover(old)
        # No client traffic at all: keygate must notice on its own (lost connection to the dead
        # node, periodic refresh) and fetch a map that routes the slots to the new master. The
        # failover is the only topology change in this test.
        h.wait_until(lambda: self.metric(CHANGES) > changes, h.scaled(15),
                     message="keygate to fetch a slot map with the new master")
        learned = time.monotonic() - killed_at
        sys.stderr.write(f"\n[refresh] no traffic: keygate's slot map changed within "
                         f"{learned:.2f} s of the SIGKILL (promotion after "
                         f"{self.cluster.last_failover['promoted']:.2f} s), "
                         f"{self.metric(REFRESHES) - start[(REFRESHES, ())]:.0f} refreshes\n")
        keys = [k for k in (f"tr:after:{i}" for i in range(3000))
                if old.owns(ch.key_slot(k))][:100]
        for k in keys:
            self.assertTrue(r.set(k, k + "=v"), k)
            self.assertEqual(r.get(k), (k + "=v").encode(), k)
        self.assertEqual(self.metric(REDIRECTS, kind="moved"), moved,
                         "keygate needed MOVED although its refreshed map had the new master")
        self.assertEqual(self.node_conn(new).call("GET", keys[0]), (keys[0] + "=v").encode())

if __name__ == "__main__":
    h.main()
