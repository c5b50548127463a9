#!/usr/bin/python3
"""The near cache and request coalescing in cluster mode (issue 8, docs/near-cache.md), against a
real 3-master + 3-replica Redis Cluster (cluster_harness.py). Every upstream effect is counted by
the node itself (`INFO commandstats` after `CONFIG RESETSTAT`, both sent directly to that node,
never through keygate); keygate's own view is read from its admin endpoint (/metrics).

1. Invalidation across masters: one near-cache pattern, three tenants whose hash tags land on the
   three different masters (chosen with key_slot). Each key is SET through keygate and read twice
   (the fill); a third GET is a near-cache hit (keygate_near_cache_hits_total +1) and reaches no
   node (the owning master's `cmdstat_get` stays 0). Then each key is SET directly on its owning
   master: keygate_near_cache_invalidations_total rises by exactly 3 (bounded wait), and every
   GET through keygate returns the new values.
2. Tracking connections: keygate_near_cache_tracking{node="host:port"} is 1 for each of the three
   masters, and CLIENT LIST on each master shows exactly one of keygate's connections (matched by
   keygate's own sockets in /proc) with the tracking flags `t` and `B` (BCAST); replicas have
   none (fills read masters only, so only masters are tracked).
3. Coalescing: 10 connections GET one key of a `coalesce: true` pattern while its master is
   stopped (SIGSTOP by PID; SIGCONT always follows): keygate_coalesced_requests_total rises by 9,
   after SIGCONT all 10 get the value, and the master executed exactly one GET.
4. `--threads 2`: with the key's value cached on both workers (keygate_near_cache_entries == 2:
   one entry per worker, the only key of its pattern), a SET through keygate on a fresh connection
   followed by a GET on another fresh connection returns the new value, 20 times. keygate hands
   accepted connections to its workers round robin (Server::onAccept), so consecutive fresh
   connections alternate workers: the iterations cover the GET on the other worker (writer and
   reader opened one after the other, in both orders) and on the SET's own worker (one
   connection opened in between). Around each SET + GET (scraped before the SET and after the
   GET, nothing in between) the pattern's counters show the GET as a near-cache miss (hits +0,
   misses +1) and the SET's entries dropped on both workers (invalidations +2 or more).

keygate runs with `--threads 1` (the near cache and the flight table are per worker thread)
except in 4. Near-cache ttl 60 s: within a test only an invalidation can change an entry.

The cluster runs with `cluster-node-timeout` 5 s (as test_cluster_endpoints.py): a master paused
for well under a second in 3 is never flagged PFAIL/FAIL, so no failover interferes.
"""

import os
import signal
import sys
import time
from contextlib import contextmanager
from typing import Dict, List, Set

import cluster_harness as ch
import keygate_harness as h
from test_near_cache import commandstat_calls, get_at_once, metric_sum

# --------------------------------------------------------------------------------------------
# Registry (the style of test_near_cache.py)
# --------------------------------------------------------------------------------------------

P_NEAR = "cpq:{tenant-<tenant>}:catalog:offering:<offeringId>:v<version:int>"
P_COAL = "cpq:{tenant-<tenant>}:catalog:coalesced:<offeringId>"

NEAR_TTL_S = 60          # long: within a test only an invalidation can change an entry
OPEN_MS = 2000           # near-open: generous, nothing here waits on it
SLOW_MS = 10000          # slow-closed: requests that must outlive a SIGSTOP of a master
NODE_TIMEOUT_MS = 5000   # a short pause never gets a master flagged PFAIL/FAIL
N_COALESCE = 10
ITERATIONS = 20

ENDPOINTS = f"""\
version: 1
mode: enforce
defaults:
  endpoint: near-open
endpoints:
  - name: near-open
    timeout: {OPEN_MS}ms
    onFailure: open
    breaker: {{enabled: false}}
    description: cluster near cache tests, fail open
  - name: slow-closed
    timeout: {SLOW_MS}ms
    onFailure: closed
    breaker: {{enabled: false}}
    description: cluster coalescing tests, outlive a pause of a master
"""


def pattern_entry(pattern: str, endpoint: str, extra: str = "") -> str:
    return (f'  - pattern: "{pattern}"\n'
            f"    owner: integration-tests\n"
            f"    purpose: cluster near cache and coalescing tests\n"
            f"    authority: false\n"
            f"    containsPII: false\n"
            f'    failureBehavior: {{endpoint: {endpoint}, description: "read the source"}}\n'
            f"    ttl: {{default: 1h, max: 2h}}\n" + extra)


REGISTRY = (ENDPOINTS + "patterns:\n"
            + pattern_entry(P_NEAR, "near-open",
                            "    coalesce: true\n"
                            f"    nearCache: {{ttl: {NEAR_TTL_S}s, maxBytes: 1MiB, "
                            "maxEntries: 1000}\n")
            + pattern_entry(P_COAL, "slow-closed", "    coalesce: true\n"))


def near_key(tenant: str, offering: str, version: int = 1) -> str:
    return f"cpq:{{tenant-{tenant}}}:catalog:offering:{offering}:v{version}"


def coal_key(tenant: str, offering: str) -> str:
    return f"cpq:{{tenant-{tenant}}}:catalog:coalesced:{offering}"


HITS = "keygate_near_cache_hits_total"
MISSES = "keygate_near_cache_misses_total"
INVALIDATIONS = "keygate_near_cache_invalidations_total"
ENTRIES = "keygate_near_cache_entries"
TRACKING = "keygate_near_cache_tracking"
COALESCED = "keygate_coalesced_requests_total"

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def client_list(conn: h.RespConnection) -> List[Dict[str, str]]:
    text = conn.call("CLIENT", "LIST")
    out = []
    for line in text.decode().splitlines():
        fields = {}
        for part in line.split(" "):
            if "=" in part:
                k, v = part.split("=", 1)
                fields[k] = v
        if fields:
            out.append(fields)
    return out


def local_ports_to(pid: int, remote_port: int) -> Set[int]:
    """Local ports of process `pid`'s established IPv4 connections to 127.0.0.1:`remote_port`
    (its socket inodes from /proc/PID/fd matched in /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] != "01" or fields[9] not in inodes:  # ESTABLISHED, keygate's
                continue
            if int(fields[2].rsplit(":", 1)[1], 16) == remote_port:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def resume(proc: ch.ClusterNode) -> None:
    """SIGCONT to a node we paused, if it still runs (harmless when it is not stopped)."""
    if proc.running():
        try:
            proc.proc.send_signal(signal.SIGCONT)
        except ProcessLookupError:
            pass


def log(text: str) -> None:
    sys.stderr.write(f"[cluster-near-cache] {text}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


class ClusterNearCacheTest(ch.KeygateClusterTestCase):
    """One 3+3 cluster, one keygate (`--threads 1`) in cluster mode with the registry above;
    test 4 starts a private `--threads 2` keygate."""

    cluster_node_timeout_ms = NODE_TIMEOUT_MS
    admin_port = 0
    registry_path = ""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # the cluster (start_keygate is False: our keygate is below)
        cls.registry_path = os.path.join(cls.workdir, "cluster-near-cache-registry.yaml")
        with open(cls.registry_path, "w") as f:
            f.write(REGISTRY)
        cls.admin_port = h.free_port()
        cls.keygate = h.KeygateProcess(cls.workdir, None,
                                       config=cls.config_for(cls.admin_port),
                                       extra_args=["--threads", "1"])
        cls.addClassCleanup(cls._stop_keygate_checked)
        cls.keygate.start()

    @classmethod
    def config_for(cls, admin_port: int) -> str:
        seeds = ", ".join(f'"{s}"' for s in cls.cluster.seeds())
        return (f"upstream:\n  mode: cluster\n  seeds: [{seeds}]\n"
                f"admin: {h.HOST}:{admin_port}\nregistry: {cls.registry_path}\n")

    def setUp(self) -> None:
        for n in self.cluster.processes:  # a test that failed half-way may have left one paused
            resume(n)
        super().setUp()

    # -- helpers
    def m(self, name: str, admin_port: int = 0, **labels: str) -> float:
        return metric_sum(admin_port or self.admin_port, name, **labels)

    def tenants_by_master(self) -> Dict[str, ch.ClusterNodeInfo]:
        """One tenant per master: tenant name -> the master owning its hash tag's slot."""
        masters = self.cluster.masters()
        self.assertEqual(len(masters), 3, f"masters: {masters}")
        found: Dict[str, ch.ClusterNodeInfo] = {}
        for i in range(10000):
            tenant = f"t{i}"
            owner = self.cluster.node_for_slot(ch.key_slot(f"tenant-{tenant}"))
            if owner.node_id not in {m.node_id for m in found.values()}:
                found[tenant] = owner
                if len(found) == len(masters):
                    return found
        raise AssertionError("no tenant hash tag found for every master")

    def cache(self, conn: h.RespConnection, key: str, expected: bytes, admin_port: int = 0,
              timeout: float = 5.0) -> None:
        """Precondition: GETs `key` through keygate until one is answered from the near cache
        (the pattern's hit counter rises), every reply `expected`. The first reads of a new
        tracking prefix are not stored (the prefix is not yet confirmed by every master), so the
        number of reads it takes is not part of any check."""
        wrong: List[object] = []

        def hit() -> bool:
            before = self.m(HITS, admin_port, pattern=P_NEAR)
            reply = conn.call("GET", key)
            if reply != expected:
                wrong.append(reply)
                return True  # stop polling; fails below
            return self.m(HITS, admin_port, pattern=P_NEAR) > before

        h.wait_until(hit, h.scaled(timeout), message=f"GET {key!r} served from the near cache")
        self.assertFalse(wrong, f"GET {key} through keygate: {wrong[:1]!r}, expected "
                                f"{expected!r}")

    def set_via(self, conn: h.RespConnection, key: str, value: str) -> None:
        self.assertEqual(conn.call("SET", key, value), "OK", f"SET {key} through keygate")

    @contextmanager
    def paused(self, node: ch.ClusterNodeInfo):
        """The node SIGSTOPped (by PID) for the body; SIGCONT after it, and in cleanup whatever
        happens."""
        proc = self.cluster.process_for(node)
        self.addCleanup(resume, proc)
        t0 = time.monotonic()
        proc.signal(signal.SIGSTOP)
        try:
            yield proc
        finally:
            resume(proc)
            log(f"{node.address} paused for {(time.monotonic() - t0) * 1000:.0f} ms "
                f"(cluster-node-timeout {NODE_TIMEOUT_MS} ms)")

    # ----------------------------------------------------------------------------------------
    # 1. Invalidation across masters
    # ----------------------------------------------------------------------------------------

    def test_1_invalidation_from_every_master(self):
        tenants = self.tenants_by_master()
        c = self.kg()
        # Precondition: each tenant's tracking prefix confirmed by every master (warm key).
        for tenant in tenants:
            warm = near_key(tenant, "warm")
            self.set_via(c, warm, "warm")
            self.cache(c, warm, b"warm")

        keys = {tenant: near_key(tenant, "o1", 3) for tenant in tenants}
        for tenant, key in keys.items():
            owner = tenants[tenant]
            self.assertEqual(self.cluster.node_for_key(key).node_id, owner.node_id)
            old = f"old-{tenant}"
            self.set_via(c, key, old)
            for _ in range(2):  # the fill
                self.assertEqual(c.call("GET", key), old.encode(), f"GET {key} (fill)")
            d = self.node_conn(owner)
            self.assertEqual(d.call("CONFIG", "RESETSTAT"), "OK")
            hits0 = self.m(HITS, pattern=P_NEAR)
            self.assertEqual(c.call("GET", key), old.encode(), f"third GET {key}")
            self.assertEqual(self.m(HITS, pattern=P_NEAR) - hits0, 1,
                             f"the third GET of {key} (master {owner.address}) was not a "
                             f"near-cache hit")
            self.assertEqual(commandstat_calls(d, "get"), 0,
                             f"the third GET of {key} reached its master {owner.address}")

        inv0 = self.m(INVALIDATIONS, pattern=P_NEAR)
        for tenant, key in keys.items():
            d = self.node_conn(tenants[tenant])
            self.assertEqual(d.call("SET", key, f"new-{tenant}", "EX", "3600"), "OK",
                             f"SET {key} directly on {tenants[tenant].address}")
        got: List[float] = [0.0]

        def three() -> bool:
            got[0] = self.m(INVALIDATIONS, pattern=P_NEAR) - inv0
            return got[0] >= 3

        try:
            h.wait_until(three, h.scaled(5), message=f"{INVALIDATIONS} +3")
        except AssertionError:
            self.fail(f"{INVALIDATIONS}{{pattern={P_NEAR!r}}} rose by {got[0]:.0f}, not 3, "
                      f"after a direct SET of one cached key on each of the three masters")
        self.assertEqual(self.m(INVALIDATIONS, pattern=P_NEAR) - inv0, 3,
                         f"{INVALIDATIONS} for three dropped entries")
        for tenant, key in keys.items():
            replies = [c.call("GET", key) for _ in range(20)]
            stale = [i for i, r in enumerate(replies) if r != f"new-{tenant}".encode()]
            self.assertFalse(stale, f"after the invalidation from {tenants[tenant].address}, "
                                    f"GETs {stale[:10]} of 20 of {key} returned "
                                    f"{replies[stale[0]] if stale else None!r}")

    # ----------------------------------------------------------------------------------------
    # 2. One tracking connection per master
    # ----------------------------------------------------------------------------------------

    def test_2_tracking_connection_on_every_master(self):
        tenants = self.tenants_by_master()
        c = self.kg()
        for tenant in tenants:  # every master confirmed these prefixes
            warm = near_key(tenant, "warm")
            self.set_via(c, warm, "warm")
            self.cache(c, warm, b"warm")
        masters = self.cluster.masters()
        for m in masters:
            node = f"{m.host}:{m.port}"
            h.wait_until(lambda: self.m(TRACKING, node=node) == 1, h.scaled(5),
                         message=f"{TRACKING}{{node={node!r}}} == 1")
        samples = {dict(lbl).get("node"): v for (n, lbl), v in
                   h.admin_metrics(self.admin_port).items() if n == TRACKING}
        self.assertEqual(samples, {f"{m.host}:{m.port}": 1.0 for m in masters},
                         f"{TRACKING}: one sample per master, each 1")

        pid = self.keygate.pid
        last: Dict[str, object] = {}

        def tracking_clients(node: ch.ClusterNodeInfo) -> List[Dict[str, str]]:
            ports = local_ports_to(pid, node.port)
            with node.client(timeout=h.scaled(5)) as conn:
                clients = client_list(conn)
            mine = [cl for cl in clients
                    if cl.get("addr", "").rpartition(":")[2].isdigit()
                    and int(cl["addr"].rpartition(":")[2]) in ports]
            last[node.address] = {"keygate_ports": sorted(ports), "keygate_clients": mine}
            return [cl for cl in mine if "t" in cl.get("flags", "")]

        for m in masters:
            try:
                h.wait_until(lambda: len(tracking_clients(m)) == 1, h.scaled(5),
                             message=f"one tracking connection of keygate on {m.address}")
            except AssertionError:
                self.fail(f"CLIENT LIST on master {m.address}: keygate's connections "
                          f"{last.get(m.address)}; want exactly one with flags containing 't'")
            (cl,) = tracking_clients(m)
            self.assertIn("B", cl.get("flags", ""), f"tracking client not in BCAST mode: {cl}")
        for r in self.cluster.replicas():
            self.assertEqual(tracking_clients(r), [],
                             f"keygate has a tracking connection on replica {r.address}: "
                             f"{last.get(r.address)}")

    # ----------------------------------------------------------------------------------------
    # 3. Coalescing while a master is stopped
    # ----------------------------------------------------------------------------------------

    def test_3_coalescing_on_a_stopped_master(self):
        tenants = self.tenants_by_master()
        tenant, owner = next(iter(tenants.items()))
        key = coal_key(tenant, "c1")
        d = self.node_conn(owner)
        self.assertEqual(d.call("SET", key, "shared value"), "OK")
        # keygate's connection to the master is up (the GET before the pause goes through it).
        first = self.kg()
        self.assertEqual(first.call("GET", key), b"shared value")
        conns = [self.kg(timeout=30) for _ in range(N_COALESCE)]
        for conn in conns:
            self.assertEqual(conn.call("PING"), "PONG")
        self.assertEqual(d.call("CONFIG", "RESETSTAT"), "OK")
        coalesced0 = self.m(COALESCED, pattern=P_COAL)
        got: List[float] = [0.0]
        joined_ok = [False]

        def all_joined() -> None:
            def joined() -> bool:
                got[0] = self.m(COALESCED, pattern=P_COAL) - coalesced0
                return got[0] >= N_COALESCE - 1

            try:
                h.wait_until(joined, h.scaled(3),
                             message=f"{COALESCED}{{pattern={P_COAL!r}}} +{N_COALESCE - 1}")
                joined_ok[0] = True
            except AssertionError:
                pass

        replies = get_at_once(self, conns, key, self.paused(owner), all_joined)
        self.assertTrue(joined_ok[0], f"{COALESCED} rose by {got[0]:.0f} while {N_COALESCE} "
                                   f"identical GETs waited on the stopped master "
                                   f"{owner.address}, not {N_COALESCE - 1}")
        self.assertEqual(replies, [b"shared value"] * N_COALESCE)
        gets = commandstat_calls(d, "get")
        self.assertEqual(gets, 1, f"master {owner.address} executed {gets} GETs for "
                                  f"{N_COALESCE} coalesced ones")
        self.assertEqual(self.m(COALESCED, pattern=P_COAL) - coalesced0, N_COALESCE - 1)

    # ----------------------------------------------------------------------------------------
    # 4. Two workers: a write through keygate is seen by the next read on any connection
    # ----------------------------------------------------------------------------------------

    def test_4_two_workers_read_your_write(self):
        admin = h.free_port()
        kg = self.start_private_keygate(
            config=(f"admin: {h.HOST}:{admin}\nregistry: {self.registry_path}\n"),
            extra_args=["--threads", "2"])
        key = near_key(next(iter(self.tenants_by_master())), "rw", 1)
        fresh: List[h.RespConnection] = []

        def connect() -> h.RespConnection:
            conn = kg.client(timeout=h.scaled(10))
            fresh.append(conn)
            self.addCleanup(conn.close)
            return conn

        def close_all() -> None:
            for conn in fresh:
                conn.close()
            fresh.clear()

        self.set_via(connect(), key, "v0")
        # The key is the only one of its pattern in this keygate: entries == 2 means one entry
        # on each worker.
        fill_conns: List[int] = []

        def fill_both(value: bytes) -> None:
            """Precondition: GETs on fresh connections until each worker has `value` cached."""
            wrong: List[object] = []
            opened = [0]

            def both() -> bool:
                conn = connect()
                opened[0] += 1
                for _ in range(2):
                    reply = conn.call("GET", key)
                    if reply != value:
                        wrong.append(reply)
                        return True
                conn.close()
                return self.m(ENTRIES, admin, pattern=P_NEAR) == 2

            h.wait_until(both, h.scaled(10), message=f"{key} cached on both workers")
            self.assertFalse(wrong, f"GET {key} before the write: {wrong[:1]!r}, expected "
                                    f"{value!r}")
            fill_conns.append(opened[0])

        hits0 = self.m(HITS, admin, pattern=P_NEAR)
        failures: List[str] = []
        for i in range(1, ITERATIONS + 1):
            fill_both(f"v{i - 1}".encode())
            close_all()
            new = f"v{i}"
            shape = ("writer, reader", "reader, writer", "writer, spacer, reader")[i % 3]
            if shape == "writer, reader":
                writer, reader = connect(), connect()
            elif shape == "reader, writer":
                reader = connect()
                writer = connect()
            else:
                writer = connect()
                self.assertEqual(connect().call("PING"), "PONG")
                reader = connect()
            self.assertEqual(reader.call("PING"), "PONG")  # registered with its worker
            m0 = h.admin_metrics(admin)
            self.set_via(writer, key, new)
            reply = reader.call("GET", key)
            m1 = h.admin_metrics(admin)
            if reply != new.encode():
                failures.append(f"iteration {i} ({shape}): GET returned {reply!r}, not "
                                f"{new!r}")
            grown = {name: (h.metric(m1, name, pattern=P_NEAR) or 0)
                     - (h.metric(m0, name, pattern=P_NEAR) or 0)
                     for name in (HITS, MISSES, INVALIDATIONS)}
            # The write dropped the entry on both workers; the GET went to Redis.
            if grown[HITS] != 0 or grown[MISSES] != 1 or grown[INVALIDATIONS] < 2:
                failures.append(f"iteration {i} ({shape}): counters grew by {grown} (want "
                                f"hits 0, misses 1, invalidations >= 2)")
            close_all()
        self.assertFalse(failures, f"{len(failures)} of {ITERATIONS} GETs on another "
                                   f"connection right after a SET through keygate: "
                                   f"{failures}")
        self.assertGreater(self.m(HITS, admin, pattern=P_NEAR), hits0)
        log(f"--threads 2: fresh connections to cache the value on both workers per iteration: "
            f"{fill_conns}")
        code = kg.stop(h.scaled(20))
        self.assertEqual(code, 0, kg.log_tail())
        self.assertIsNone(kg.sanitizer_report())


if __name__ == "__main__":
    h.main()
