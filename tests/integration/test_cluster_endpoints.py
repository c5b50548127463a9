#!/usr/bin/python3
"""Endpoint profiles in cluster mode (docs/endpoints.md "Cluster mode"), against a real 3+3 Redis
Cluster with one master paused (SIGSTOP; SIGCONT always follows, also in cleanup) or killed
(SIGKILL, then a replica promoted and the node restarted by the harness):

1. Breakers are per node x profile x worker thread: with one master paused, GETs for its keys
   time out at the profile's budget (`open`: nil; `closed`: `-TIMEOUT`), then, once the breaker
   opened, are answered at once (nil / the breaker's `-UNAVAILABLE` naming that master), while
   GETs under the same profiles for keys on the other two masters return their values at normal
   speed, also while the paused master's requests are waiting. keygate_endpoint_breakers_open
   is exactly 1 per profile used (the paused node's, `--threads 1`). After SIGCONT the paused
   master's keys are served again once `openFor` has passed (not before, and within a margin).
2. MGET across slots with one master paused: under `open` the healthy masters' keys get their
   values and the paused master's keys nil, in key order (RESP2 and RESP3), at the budget;
   under `closed` the whole reply is the `-TIMEOUT` error; EXISTS across slots under `open`
   counts only the healthy masters' keys; DEL across slots (a write) gets the error even under
   `open`; an MGET that avoids the paused master is answered at once.
3. A master SIGKILLed: its keys fail at once (`open`: nil; `closed`: `-UNAVAILABLE ... a cluster
   node ...` naming its address), far below the 2 s budget, while the other masters' keys work,
   MGET / EXISTS across slots combine per part at once; after its replica is promoted
   (`CLUSTER FAILOVER FORCE`, see below) keygate's topology refresh brings the slots back, with
   the data written before the kill; the harness then restarts the old master as a replica.

The endpoint counters (keygate_endpoint_*_total) are checked per request: a split request whose
parts on the failed master fail counts once, like the one reply its client gets.

Timing and the cluster's own failure detection: the class' cluster runs with
`cluster-node-timeout` 5 s, so a paused master is never flagged PFAIL/FAIL by the other nodes
(nor is the killed one before its replica is promoted): no automatic failover interferes with
the timing tests, and no node answers CLUSTERDOWN for the healthy masters' slots (with full
coverage required, a master flagged FAIL makes every node refuse every slot until its replica
takes over). Pauses last about half a second, a tenth of that. Test 3 therefore promotes the
dead master's replica itself with `CLUSTER FAILOVER FORCE` (sent to the replica, which is what
an operator does for an unreachable master): an election that does not wait for the node
timeout.

keygate runs with `--threads 1` (breakers and counters are per worker thread) and
`upstream.timeoutsBeforeReconnect: 0`, so the timeouts of these tests never replace the shared
connection to the paused master (that behaviour is tested in test_endpoints.py).
"""

import os
import re
import signal
import sys
import time
from contextlib import contextmanager
from typing import Dict, List, Sequence, Tuple

import cluster_harness as ch
import keygate_harness as h
from endpoint_timing import EPS, MARGIN, DeadlineAssertions

# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

# EPS, MARGIN, IMMEDIATE and the deadline assertions: endpoint_timing.py.
# A breaker's `openFor` has passed: the next request probes Redis. Our polling interval, the
# probe's round trip and ASan fit in this.
RECOVERY_MARGIN = h.scaled(0.5)

# Pauses here last about half a second; the other nodes flag a master PFAIL only after this much
# silence. Longer would slow the gossip that ensure_healthy() waits for (a node pings each peer
# at least every node-timeout / 2).
NODE_TIMEOUT_MS = 5000

BRK_MS = 500            # brk-open / brk-closed: test 1
BRK_FAILURES = 3
BRK_OPEN_FOR_MS = 1500
SPLIT_MS = 300          # split-open / split-closed: test 2 (breaker disabled)
DEAD_MS = 2000          # dead-open / dead-closed: test 3 (breaker disabled)

# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------

REGISTRY = f"""\
version: 1
mode: enforce
defaults:
  endpoint: dflt
endpoints:
  - name: dflt
    timeout: 1s
    onFailure: closed
    breaker: {{enabled: false}}
  - name: brk-open
    timeout: {BRK_MS}ms
    onFailure: open
    breaker: {{consecutiveFailures: {BRK_FAILURES}, openFor: {BRK_OPEN_FOR_MS}ms}}
    description: per-node breaker, fail open
  - name: brk-closed
    timeout: {BRK_MS}ms
    onFailure: closed
    breaker: {{consecutiveFailures: {BRK_FAILURES}, openFor: {BRK_OPEN_FOR_MS}ms}}
  - name: split-open
    timeout: {SPLIT_MS}ms
    onFailure: open
    breaker: {{enabled: false}}
  - name: split-closed
    timeout: {SPLIT_MS}ms
    onFailure: closed
    breaker: {{enabled: false}}
  - name: dead-open
    timeout: {DEAD_MS}ms
    onFailure: open
    breaker: {{enabled: false}}
  - name: dead-closed
    timeout: {DEAD_MS}ms
    onFailure: closed
    breaker: {{enabled: false}}
patterns:
"""
PATTERNS = [("bo", "brk-open"), ("bc", "brk-closed"), ("so", "split-open"),
            ("sc", "split-closed"), ("do", "dead-open"), ("dc", "dead-closed")]
for _prefix, _profile in PATTERNS:
    REGISTRY += (f'  - pattern: "{_prefix}:<id>"\n'
                 f"    owner: integration-tests\n"
                 f"    purpose: cluster endpoint profile tests\n"
                 f"    authority: false\n"
                 f'    ttl: {{exempt: "test keys, flushed before every test"}}\n'
                 f'    failureBehavior: {{endpoint: {_profile}, description: "test"}}\n')
PROFILES = [p for _, p in PATTERNS]

NIL2 = b"$-1\r\n"
NIL3 = b"_\r\n"


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def array(items: Sequence[bytes]) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(items)


def timeout_reply(profile: str, ms: int) -> bytes:
    return (f"-TIMEOUT keygate: endpoint '{profile}': no reply from Redis within {ms}ms\r\n"
            .encode())


def breaker_reply(profile: str, node: ch.ClusterNodeInfo, open_for_ms: int) -> bytes:
    return (f"-UNAVAILABLE keygate: endpoint '{profile}': circuit breaker open for Redis at "
            f"{node.host}:{node.port} after consecutive failures; requests go to Redis again "
            f"within {open_for_ms}ms\r\n").encode()


def unavailable_pattern(profile: str, node: ch.ClusterNodeInfo) -> "re.Pattern[bytes]":
    # docs/endpoints.md: in cluster mode the node is "a cluster node" and its address is in the
    # reason; the socket's reason itself varies (refused, reset, closed).
    return re.compile(rb"-UNAVAILABLE keygate: Redis at a cluster node is unavailable \(%s:%d: "
                      rb"[^\r\n]+\); endpoint '%s' fails closed\r\n\Z"
                      % (re.escape(node.host.encode()), node.port, profile.encode()))


def log(text: str) -> None:
    sys.stderr.write(f"[timing] {text}\n")
    sys.stderr.flush()


def resume(proc: ch.ClusterNode) -> None:
    """SIGCONT to a node we paused, if it still runs (harmless when it is not stopped)."""
    if proc.running():
        try:
            proc.proc.send_signal(signal.SIGCONT)
        except ProcessLookupError:
            pass


class ClusterEndpointsTest(DeadlineAssertions, ch.KeygateClusterTestCase):
    cluster_node_timeout_ms = NODE_TIMEOUT_MS
    admin_port = 0
    maxDiff = None

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # the cluster (start_keygate is False: our keygate is below)
        registry_path = os.path.join(cls.workdir, "cluster-endpoints-registry.yaml")
        with open(registry_path, "w") as f:
            f.write(REGISTRY)
        cls.admin_port = h.free_port()
        seeds = ", ".join(f'"{s}"' for s in cls.cluster.seeds())
        config = (f"upstream:\n  mode: cluster\n  seeds: [{seeds}]\n"
                  f"  timeoutsBeforeReconnect: 0\n"
                  f"admin: {h.HOST}:{cls.admin_port}\nregistry: {registry_path}\n")
        cls.keygate = h.KeygateProcess(cls.workdir, None, config=config,
                                       extra_args=["--threads", "1"])
        cls.addClassCleanup(cls._stop_keygate_checked)
        cls.keygate.start()

    def setUp(self) -> None:
        for n in self.cluster.processes:  # a test that failed half-way may have left one paused
            resume(n)
        super().setUp()

    # -- helpers
    @contextmanager
    def paused(self, node: ch.ClusterNodeInfo):
        """The node SIGSTOPped for the body (yields the pause time); SIGCONT after it, and in
        cleanup whatever happens."""
        proc = self.cluster.process_for(node)
        self.addCleanup(resume, proc)
        t0 = time.monotonic()
        proc.signal(signal.SIGSTOP)
        try:
            yield t0
        finally:
            resume(proc)
            log(f"{node.address} paused for {(time.monotonic() - t0) * 1000:.0f} ms "
                f"(cluster-node-timeout {NODE_TIMEOUT_MS} ms)")

    def connect(self, resp3: bool = False) -> h.RespConnection:
        c = self.keygate.client(timeout=h.scaled(10))
        self.addCleanup(c.close)
        if resp3:
            self.assertIsInstance(c.call("HELLO", "3"), h.Map)
        return c

    def metrics(self) -> Dict[h.MetricKey, float]:
        return h.admin_metrics(self.admin_port)

    def ep(self, m: Dict[h.MetricKey, float], name: str, endpoint: str) -> float:
        v = h.metric(m, name, endpoint=endpoint)
        self.assertIsNotNone(v, f'{name}{{endpoint="{endpoint}"}} is not in keygate /metrics')
        return v

    def delta(self, m0, m1, name: str, endpoint: str) -> float:
        return self.ep(m1, name, endpoint) - self.ep(m0, name, endpoint)

    def counts(self, m0, m1, endpoint: str) -> Dict[str, int]:
        """The endpoint's counters, grown from m0 to m1."""
        return {n: int(self.delta(m0, m1, f"keygate_endpoint_{n}", endpoint))
                for n in ("requests_total", "timeouts_total", "failures_total", "fail_open_total",
                          "fail_closed_total", "breaker_rejected_total")}

    def keys_on(self, prefix: str, node: ch.ClusterNodeInfo, n: int,
                skip: Sequence[str] = ()) -> List[str]:
        """`n` keys `prefix:<i>` in slots `node` owns, each in its own slot."""
        out: List[str] = []
        slots = set()
        for i in range(200000):
            key = f"{prefix}:{i}"
            slot = ch.key_slot(key)
            if node.owns(slot) and slot not in slots and key not in skip:
                out.append(key)
                slots.add(slot)
                if len(out) == n:
                    return out
        raise AssertionError(f"no {n} keys {prefix}:* on {node.address}")

    def write_direct(self, values: Dict[str, bytes]) -> None:
        """SET each key on its master directly, then WAIT until the master's replicas have it."""
        by_node: Dict[str, Tuple[ch.ClusterNodeInfo, List[Tuple[str, bytes]]]] = {}
        for k, v in values.items():
            node = self.cluster.node_for_key(k)
            by_node.setdefault(node.node_id, (node, []))[1].append((k, v))
        for node, items in by_node.values():
            c = self.node_conn(node)
            c.send_many([("SET", k, v) for k, v in items])
            for k, _ in items:
                self.assertEqual(c.read(), "OK", f"SET {k} on {node.address}")
            n_replicas = len(self.cluster.replicas_of(node))
            acked = c.call("WAIT", n_replicas, int(h.scaled(10) * 1000))
            self.assertEqual(acked, n_replicas, f"WAIT on {node.address}")

    def check_healthy_gets(self, conn: h.RespConnection, values: Dict[str, bytes],
                           what: str) -> float:
        """GET of each key: its value, at once. Returns the slowest, in seconds."""
        slowest = 0.0
        for key, value in values.items():
            raw, el = self.timed_call(conn, "GET", key)
            self.assertEqual(raw, bulk(value), f"GET {key} ({what})")
            self.assert_immediate(el, f"GET {key} ({what})")
            slowest = max(slowest, el)
        return slowest

    # ----------------------------------------------------------------------------------------
    # 1. Per-node breakers
    # ----------------------------------------------------------------------------------------

    def test_1_per_node_breaker_fails_only_the_paused_masters_slots(self):
        masters = self.cluster.masters()
        self.assertEqual(len(masters), 3)
        victim, healthy = masters[0], masters[1:]
        victim_key = {p: self.keys_on(p, victim, 1)[0] for p in ("bo", "bc")}
        healthy_values: Dict[str, bytes] = {}
        for p in ("bo", "bc"):
            for m in healthy:
                for k in self.keys_on(p, m, 2):
                    healthy_values[k] = f"value-of-{k}".encode()
        victim_values = {k: f"value-of-{k}".encode() for k in victim_key.values()}
        self.write_direct({**healthy_values, **victim_values})
        c = self.connect()
        # Baseline: everything served (this also opens keygate's connections to every master).
        self.check_healthy_gets(c, {**healthy_values, **victim_values}, "cluster healthy")

        m0 = self.metrics()
        for p in ("brk-open", "brk-closed"):
            self.assertEqual(self.ep(m0, "keygate_endpoint_breakers_open", p), 0, p)
        with self.paused(victim) as paused_at:
            # BRK_FAILURES GETs of each profile's paused key, each on its own connection, all
            # sent now: they wait out the budget together.
            pending: List[Tuple[str, h.RespConnection, float]] = []
            for p in ("bo", "bc"):
                for _ in range(BRK_FAILURES):
                    conn = self.connect()
                    pending.append((p, conn, time.monotonic()))
                    conn.send("GET", victim_key[p])
            last_send = time.monotonic()
            # Meanwhile the other masters' keys, same profiles: values at normal speed.
            slow_wait = self.check_healthy_gets(c, healthy_values,
                                                "other masters, while the paused one's wait")
            healthy_done = time.monotonic()
            self.assertLess(healthy_done, last_send + BRK_MS / 1000.0,
                            "the other masters' GETs were held up by the paused master's")
            # The paused master's GETs, each at its deadline.
            at_deadline = []
            for p, conn, t0 in pending:
                raw = conn.read_raw()
                el = time.monotonic() - t0
                at_deadline.append(el)
                with self.subTest(phase="timing out", key=victim_key[p]):
                    if p == "bo":
                        self.assertEqual(raw, NIL2)
                    else:
                        self.assertEqual(raw, timeout_reply("brk-closed", BRK_MS))
                    self.assert_at_deadline(el, BRK_MS, f"GET {victim_key[p]}, master paused")
            opened_seen = time.monotonic()  # the breakers opened at the last deadline, before

            m1 = self.metrics()
            for p in ("brk-open", "brk-closed"):
                with self.subTest(phase="breaker opened", profile=p):
                    self.assertEqual(self.delta(m0, m1, "keygate_endpoint_timeouts_total", p),
                                     BRK_FAILURES)
                    self.assertEqual(self.delta(m0, m1, "keygate_endpoint_breaker_opens_total",
                                                p), 1)
                    self.assertEqual(self.ep(m1, "keygate_endpoint_breakers_open", p), 1,
                                     "exactly one breaker (the paused node's) open")
                    self.assertEqual(self.delta(m0, m1, "keygate_endpoint_breaker_rejected_total",
                                                p), 0)
            self.assertEqual(self.delta(m0, m1, "keygate_endpoint_fail_open_total", "brk-open"),
                             BRK_FAILURES)
            self.assertEqual(self.delta(m0, m1, "keygate_endpoint_fail_closed_total",
                                        "brk-closed"), BRK_FAILURES)
            for p in PROFILES:
                if p not in ("brk-open", "brk-closed"):
                    self.assertEqual(self.ep(m1, "keygate_endpoint_breakers_open", p), 0, p)

            # Breakers open: the paused master's keys are answered at once, without the budget.
            rejected = 4
            broken = []
            for _ in range(rejected):
                raw_o, el_o = self.timed_call(c, "GET", victim_key["bo"])
                raw_c, el_c = self.timed_call(c, "GET", victim_key["bc"])
                broken += [el_o, el_c]
                self.assertEqual(raw_o, NIL2, "brk-open with its breaker open")
                self.assertEqual(raw_c, breaker_reply("brk-closed", victim, BRK_OPEN_FOR_MS),
                                 "brk-closed with its breaker open")
                self.assert_immediate(el_o, f"GET {victim_key['bo']} with the breaker open")
                self.assert_immediate(el_c, f"GET {victim_key['bc']} with the breaker open")
            # ... and the other masters' keys still get their values, at normal speed.
            slow_open = self.check_healthy_gets(c, healthy_values,
                                                "other masters, paused one's breakers open")
            m2 = self.metrics()
            for p in ("brk-open", "brk-closed"):
                with self.subTest(phase="breaker open", profile=p):
                    self.assertEqual(self.delta(m1, m2, "keygate_endpoint_breaker_rejected_total",
                                                p), rejected)
                    self.assertEqual(self.delta(m1, m2, "keygate_endpoint_timeouts_total", p), 0)
                    self.assertEqual(self.ep(m2, "keygate_endpoint_breakers_open", p), 1)
            # Redis answers again now; within openFor the breakers still answer for it.
        resumed_at = time.monotonic()
        if resumed_at - opened_seen < BRK_OPEN_FOR_MS / 1000.0 - MARGIN:
            raw, el = self.timed_call(c, "GET", victim_key["bc"])
            self.assertEqual(raw, breaker_reply("brk-closed", victim, BRK_OPEN_FOR_MS),
                             "within openFor the breaker answers, though the master is back")
            self.assert_immediate(el, "GET with the breaker open, master resumed")

        # Served again once openFor has passed: the next request probes, succeeds, closes it.
        served_at: Dict[str, float] = {}
        limit = opened_seen + BRK_OPEN_FOR_MS / 1000.0 + RECOVERY_MARGIN

        def served() -> bool:
            for p in ("bo", "bc"):
                if p not in served_at and \
                        c.call_raw("GET", victim_key[p]) == bulk(victim_values[victim_key[p]]):
                    served_at[p] = time.monotonic()
            return len(served_at) == 2

        h.wait_until(served, limit - time.monotonic() + h.scaled(5), interval=0.01,
                     message="the paused master's keys to be served again")
        for p in ("bo", "bc"):
            with self.subTest(phase="recovery", key=victim_key[p]):
                # The breaker opened at the last deadline: at least BRK_MS after the last send.
                self.assertGreaterEqual(served_at[p], last_send + (BRK_MS + BRK_OPEN_FOR_MS)
                                        / 1000.0 - EPS, "served before openFor had passed")
                self.assertLessEqual(served_at[p], limit,
                                     f"served {(served_at[p] - opened_seen) * 1000:.0f} ms after "
                                     f"the breaker opened (openFor {BRK_OPEN_FOR_MS} ms + "
                                     f"{RECOVERY_MARGIN * 1000:.0f} ms)")
        h.wait_until(lambda: all(self.ep(self.metrics(), "keygate_endpoint_breakers_open", p) == 0
                                 for p in ("brk-open", "brk-closed")),
                     h.scaled(5), message="the breakers closed again (gauge 0)")
        self.check_healthy_gets(c, {**healthy_values, **victim_values}, "after recovery")
        log(f"per-node breaker: paused master's GETs answered at {min(at_deadline) * 1000:.0f}.."
            f"{max(at_deadline) * 1000:.0f} ms (budget {BRK_MS} ms); with the breaker open "
            f"{max(broken) * 1000:.1f} ms at most; other masters' GETs {slow_wait * 1000:.1f} ms "
            f"at most while the paused master's waited, {slow_open * 1000:.1f} ms with its "
            f"breakers open; paused {(resumed_at - paused_at) * 1000:.0f} ms; served again "
            + ", ".join(f"{p} {(t - opened_seen) * 1000:.0f} ms" for p, t in served_at.items())
            + f" after the breakers opened (openFor {BRK_OPEN_FOR_MS} ms), "
            + ", ".join(f"{p} {(t - resumed_at) * 1000:.0f} ms" for p, t in served_at.items())
            + " after SIGCONT")

    # ----------------------------------------------------------------------------------------
    # 2. Split MGET / EXISTS / DEL with one master paused
    # ----------------------------------------------------------------------------------------

    def test_2_split_requests_fail_per_part_with_one_master_paused(self):
        masters = self.cluster.masters()
        victim, healthy = masters[1], [masters[0], masters[2]]
        ids: Dict[str, List[str]] = {}   # prefix -> keys in MGET order
        existing: Dict[str, bytes] = {}
        victim_keys = set()
        for p in ("so", "sc"):
            v = self.keys_on(p, victim, 2)
            a = self.keys_on(p, healthy[0], 3)
            b = self.keys_on(p, healthy[1], 3)
            # The third key of each healthy master is never written: a real miss.
            # Paused master's keys first, in the middle and last (repeated).
            ids[p] = [v[0], a[0], b[0], v[1], a[1], a[2], b[1], b[2], v[0]]
            victim_keys.update(v)
            for k in v + a[:2] + b[:2]:
                existing[k] = f"value-of-{k}".encode()
        self.write_direct(existing)
        dels = self.keys_on("so", victim, 1, skip=ids["so"]) + \
            self.keys_on("so", healthy[0], 1, skip=ids["so"]) + \
            self.keys_on("so", healthy[1], 1, skip=ids["so"])
        self.write_direct({k: b"to-delete" for k in dels})
        healthy_only = [k for k in ids["so"] if k not in victim_keys]
        victim_slots = {ch.key_slot(k) for k in ids["so"] if k in victim_keys}

        def full(keys: Sequence[str], nil: bytes = NIL2, fail_victim: bool = False) -> bytes:
            return array([nil if k not in existing or (fail_victim and k in victim_keys)
                          else bulk(existing[k]) for k in keys])

        c = self.connect()
        self.assertEqual(c.call_raw("MGET", *ids["so"]), full(ids["so"]), "baseline MGET")
        self.assertEqual(c.call_raw("MGET", *ids["sc"]), full(ids["sc"]), "baseline MGET")
        n_exist = sum(1 for k in ids["so"] if k in existing)
        self.assertEqual(c.call("EXISTS", *ids["so"]), n_exist, "baseline EXISTS")
        n_exist_healthy = sum(1 for k in ids["so"] if k in existing and k not in victim_keys)
        conns = {name: self.connect(resp3=(name == "mget-open-resp3"))
                 for name in ("mget-open", "mget-open-resp3", "mget-closed", "exists-open",
                              "del-open")}
        requests = {"mget-open": ("MGET", *ids["so"]), "mget-open-resp3": ("MGET", *ids["so"]),
                    "mget-closed": ("MGET", *ids["sc"]), "exists-open": ("EXISTS", *ids["so"]),
                    "del-open": ("DEL", *dels)}
        expected = {"mget-open": full(ids["so"], NIL2, True),
                    "mget-open-resp3": full(ids["so"], NIL3, True),
                    "mget-closed": timeout_reply("split-closed", SPLIT_MS),
                    "exists-open": b":%d\r\n" % n_exist_healthy,
                    "del-open": timeout_reply("split-open", SPLIT_MS)}
        m0 = self.metrics()
        with self.paused(victim):
            sent: Dict[str, float] = {}
            for name, conn in conns.items():
                sent[name] = time.monotonic()
                conn.send(*requests[name])
            # An MGET across the healthy masters only: at once, while the others wait.
            raw, el_healthy = self.timed_call(c, "MGET", *healthy_only)
            self.assertEqual(raw, full(healthy_only), "MGET avoiding the paused master")
            self.assert_immediate(el_healthy, "MGET avoiding the paused master")
            elapsed: Dict[str, float] = {}
            for name, conn in conns.items():
                raw = conn.read_raw()
                elapsed[name] = time.monotonic() - sent[name]
                with self.subTest(request=name):
                    self.assertEqual(raw, expected[name], f"{requests[name]}")
                    self.assert_at_deadline(elapsed[name], SPLIT_MS, name)
        m1 = self.metrics()
        log("split requests, one master paused: " +
            ", ".join(f"{n} {e * 1000:.0f} ms" for n, e in elapsed.items()) +
            f" (budget {SPLIT_MS} ms); MGET avoiding it {el_healthy * 1000:.1f} ms")
        # Counted per request, as README's metrics reference says (fail_open_total: "how many
        # requests fell back to their source"), however many of a request's slots failed.
        with self.subTest(endpoint="split-open"):
            self.assertEqual(self.counts(m0, m1, "split-open"),
                             {"requests_total": 5, "timeouts_total": 4, "failures_total": 0,
                              "fail_open_total": 3, "fail_closed_total": 1,
                              "breaker_rejected_total": 0},
                             "split-open: MGET x3 (one avoiding the paused master), EXISTS, DEL; "
                             f"the failing ones had {len(victim_slots)} of the paused master's "
                             "slots each (DEL: 1)")
        with self.subTest(endpoint="split-closed"):
            self.assertEqual(self.counts(m0, m1, "split-closed"),
                             {"requests_total": 1, "timeouts_total": 1, "failures_total": 0,
                              "fail_open_total": 0, "fail_closed_total": 1,
                              "breaker_rejected_total": 0},
                             f"split-closed: one MGET, {len(victim_slots)} of its slots on the "
                             f"paused master")
        # Resumed: everything served again (no breaker in these profiles).
        h.wait_until(lambda: c.call_raw("MGET", *ids["so"]) == full(ids["so"]), h.scaled(5),
                     message="MGET across all masters served again after SIGCONT")
        self.assertEqual(c.call_raw("MGET", *ids["sc"]), full(ids["sc"]))
        self.assertEqual(c.call("EXISTS", *ids["so"]), n_exist)

    # ----------------------------------------------------------------------------------------
    # 3. A dead master
    # ----------------------------------------------------------------------------------------

    def test_3_dead_master_fails_at_once_until_failover(self):
        masters = self.cluster.masters()
        victim, healthy = masters[2], masters[:2]
        values: Dict[str, bytes] = {}
        order: Dict[str, List[str]] = {}
        vkey: Dict[str, str] = {}
        for p in ("do", "dc"):
            v = self.keys_on(p, victim, 2)
            a = self.keys_on(p, healthy[0], 2)
            b = self.keys_on(p, healthy[1], 2)
            vkey[p] = v[0]
            order[p] = [a[0], v[0], b[0], a[1], v[1], b[1]]
            for k in order[p]:
                values[k] = f"value-of-{k}".encode()
        self.write_direct(values)  # replicated (WAIT) before the kill: the replica has them
        victim_keys = {k for k in values if self.cluster.node_for_key(k).node_id ==
                       victim.node_id}
        healthy_values = {k: v for k, v in values.items() if k not in victim_keys}

        def mget(p: str, fail_victim: bool) -> bytes:
            return array([NIL2 if fail_victim and k in victim_keys else bulk(values[k])
                          for k in order[p]])

        c = self.connect()
        self.check_healthy_gets(c, values, "cluster healthy")
        self.assertEqual(c.call_raw("MGET", *order["do"]), mget("do", False))
        replica = self.cluster.replicas_of(victim)
        self.assertEqual(len(replica), 1, f"replicas of {victim.address}")

        m0 = self.metrics()
        self.addCleanup(self.cluster.ensure_healthy)
        old = self.cluster.kill_master(victim)
        killed_at = time.monotonic()
        closed_re = unavailable_pattern("dead-closed", victim)
        immediate: List[float] = []
        for i in range(5):
            with self.subTest(round=i):
                raw, el = self.timed_call(c, "GET", vkey["do"])
                self.assertEqual(raw, NIL2, "dead-open, master dead")
                self.assert_immediate(el, f"GET {vkey['do']}, master dead")
                immediate.append(el)
                raw, el = self.timed_call(c, "GET", vkey["dc"])
                self.assertRegex(raw, closed_re, "dead-closed, master dead")
                self.assert_immediate(el, f"GET {vkey['dc']}, master dead")
                immediate.append(el)
        slow_healthy = self.check_healthy_gets(c, healthy_values, "other masters, one dead")
        raw, el_mget = self.timed_call(c, "MGET", *order["do"])
        self.assertEqual(raw, mget("do", True), "MGET under dead-open: nils for the dead one's")
        self.assert_immediate(el_mget, "MGET under dead-open, a master dead")
        raw, el = self.timed_call(c, "MGET", *order["dc"])
        self.assertRegex(raw, closed_re, "MGET under dead-closed: the whole reply is the error")
        self.assert_immediate(el, "MGET under dead-closed, a master dead")
        raw, el = self.timed_call(c, "EXISTS", *order["do"])
        self.assertEqual(raw, b":%d\r\n" % sum(1 for k in order["do"] if k not in victim_keys),
                         "EXISTS under dead-open counts the live masters' keys")
        self.assert_immediate(el, "EXISTS under dead-open, a master dead")
        m1 = self.metrics()
        # Counted per request (see test 2): nothing waited for the budget; 5 GETs + MGET +
        # EXISTS failed under dead-open, 5 GETs + MGET under dead-closed; the 4 GETs of each
        # profile for the live masters' keys are requests too.
        with self.subTest(endpoint="dead-open"):
            self.assertEqual(self.counts(m0, m1, "dead-open"),
                             {"requests_total": 11, "timeouts_total": 0, "failures_total": 7,
                              "fail_open_total": 7, "fail_closed_total": 0,
                              "breaker_rejected_total": 0},
                             "dead-open: 5 GETs, MGET and EXISTS for the dead master (2 of its "
                             "slots in each split request), 4 GETs for the live ones")
        with self.subTest(endpoint="dead-closed"):
            self.assertEqual(self.counts(m0, m1, "dead-closed"),
                             {"requests_total": 10, "timeouts_total": 0, "failures_total": 6,
                              "fail_open_total": 0, "fail_closed_total": 6,
                              "breaker_rejected_total": 0},
                             "dead-closed: 5 GETs and MGET for the dead master (2 of its slots in "
                             "the MGET), 4 GETs for the live ones")
        for p in ("dead-open", "dead-closed"):
            self.assertEqual(self.ep(m1, "keygate_endpoint_breakers_open", p), 0, p)
        dead_phase = time.monotonic() - killed_at

        # The replica takes over; keygate's topology refresh brings the slots back.
        reply = replica[0].call("CLUSTER", "FAILOVER", "FORCE")
        self.assertEqual(reply, "OK", f"CLUSTER FAILOVER FORCE on {replica[0].address}")
        new = self.cluster.wait_for_failover(old)
        promoted_at = killed_at + self.cluster.last_failover["promoted"]
        ok_at = killed_at + self.cluster.last_failover["ok"]
        served_at: Dict[str, float] = {}

        def served() -> bool:
            for p in ("do", "dc"):
                if p not in served_at and c.call_raw("GET", vkey[p]) == bulk(values[vkey[p]]):
                    served_at[p] = time.monotonic()
            return len(served_at) == 2

        h.wait_until(served, h.scaled(15), interval=0.02,
                     message=f"the dead master's slots served by {new.address} through keygate")
        self.assertEqual(c.call_raw("MGET", *order["do"]), mget("do", False))
        self.assertEqual(c.call_raw("MGET", *order["dc"]), mget("dc", False))
        self.check_healthy_gets(c, values, "after the failover")
        log(f"dead master: its keys failed in {max(immediate) * 1000:.1f} ms at most (budget "
            f"{DEAD_MS} ms), other masters' GETs {slow_healthy * 1000:.1f} ms at most, split MGET "
            f"{el_mget * 1000:.1f} ms; failover FORCE sent {dead_phase:.2f} s after the kill, "
            f"replica promoted at {promoted_at - killed_at:.2f} s, all nodes ok at "
            f"{ok_at - killed_at:.2f} s; served again through keygate "
            + ", ".join(f"{p} {t - promoted_at:.2f} s" for p, t in served_at.items())
            + " after the promotion")
        # The harness restarts the old master; it rejoins as the new master's replica.
        t0 = time.monotonic()
        self.cluster.ensure_healthy()
        self.assertEqual(self.cluster.node_for_key(vkey["do"]).node_id, new.node_id)
        self.check_healthy_gets(c, values, "after the old master rejoined as a replica")
        log(f"dead master: cluster healthy again {time.monotonic() - t0:.2f} s after the restart")


if __name__ == "__main__":
    h.main()
