#!/usr/bin/python3
"""Evictions and expiries per pattern from Redis keyspace notifications (issue 6 item 2,
docs/observability.md), against real redis-servers; every number keygate reports is compared with
what Redis itself says (INFO stats evicted_keys / expired_keys, EXISTS read directly).

1. Standalone, Redis with `notify-keyspace-events Exe`, `maxmemory 2mb`, `allkeys-lru`, and a
   registry of three patterns: keygate subscribes (PUBSUB NUMSUB on Redis, counted as a pubsub
   client), reports the node as enabled; large values written to `evict:*` through keygate until
   Redis evicts give keygate_pattern_evictions_total{pattern="evict:<id>"} equal to Redis'
   evicted_keys delta minus the `keep:*` keys Redis evicted, which are exactly what
   {pattern="keep:<id>"} counts; keys set with PX 50 are counted as expirations of their pattern
   (written directly to Redis and matching no pattern: "(unregistered)"); a killed subscription
   (CLIENT KILL TYPE pubsub) is re-established and counts again.
2. Redis with notifications off (the default): keygate_keyspace_notifications_enabled is 0 for
   the node, the warning naming the CONFIG SET is logged once, Redis' config is left as it was;
   after an operator's CONFIG SET the gauge turns 1 (health check) and events count.
3. CONFIG refused by an ACL (keygate's Redis user has -config): keygate subscribes anyway, warns
   once, the gauge is absent until both kinds of event were seen, then 1; counting works.
4. Cluster (3 masters, 1 replica each, every node `Exe` / `maxmemory` / `allkeys-lru`):
   keygate subscribes to every master and to no replica; evictions on several masters are all
   counted; after a failover the promoted replica is subscribed and the old master (gone) is no
   longer reported.
"""

import os
import shutil
import tempfile
from typing import Dict, List, Optional

import cluster_harness as ch
import keygate_harness as h

EVICTIONS = "keygate_pattern_evictions_total"
EXPIRATIONS = "keygate_pattern_expirations_total"
ENABLED = "keygate_keyspace_notifications_enabled"
UNREGISTERED = "(unregistered)"
EVICT = "evict:<id>"
KEEP = "keep:<id>"
SESSION = "session:<id>"
CHANNELS = ("__keyevent@0__:evicted", "__keyevent@0__:expired")
WARNING = "Redis does not publish"
UNREADABLE = "cannot read notify-keyspace-events"

REGISTRY = """\
version: 1
patterns:
  - pattern: "evict:<id>"
    owner: integration-tests
    purpose: large values written until Redis evicts
    authority: false
    ttl: {default: 3600s, max: 7200s}
  - pattern: "keep:<id>"
    owner: integration-tests
    purpose: a few small keys written first
    authority: true
  - pattern: "session:<id>"
    owner: integration-tests
    purpose: keys that expire within milliseconds
    authority: false
    ttl: {default: 10s, max: 60s}
"""

EVICTING_REDIS = ["--notify-keyspace-events", "Exe", "--maxmemory", "2mb",
                  "--maxmemory-policy", "allkeys-lru"]
VALUE = "x" * 8192


def write_registry(workdir: str) -> str:
    path = os.path.join(workdir, "registry.yaml")
    with open(path, "w") as f:
        f.write(REGISTRY)
    return path


def info_stat(conn: h.RespConnection, field: str) -> int:
    for line in conn.call("INFO", "stats").decode().splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":", 1)[1])
    raise AssertionError(f"{field} not in INFO stats")


def numsub(conn: h.RespConnection) -> Dict[str, int]:
    reply = conn.call("PUBSUB", "NUMSUB", *CHANNELS)
    return {reply[i].decode(): reply[i + 1] for i in range(0, len(reply), 2)}


def counters(admin_port: int, name: str) -> Dict[str, float]:
    """{pattern: value} of one per-pattern family."""
    out: Dict[str, float] = {}
    for (metric, labels), value in h.admin_metrics(admin_port).items():
        if metric == name:
            out[dict(labels)["pattern"]] = value
    return out


def gauge(admin_port: int, node: str) -> Optional[float]:
    return h.metric(h.admin_metrics(admin_port), ENABLED, node=node)


def delta(now: Dict[str, float], before: Dict[str, float], pattern: str) -> float:
    return now.get(pattern, 0.0) - before.get(pattern, 0.0)


class KeyspaceChecks:
    """Helpers shared by the standalone classes (one Redis, one keygate with an admin port)."""

    admin_port = 0

    @classmethod
    def configure(cls, registry: bool = True) -> None:
        """Before KeygateTestCase.setUpClass: an admin port and, optionally, the registry."""
        cls.regdir = tempfile.mkdtemp(prefix=f"keygate-it-{cls.__name__}-registry-")
        cls.addClassCleanup(shutil.rmtree, cls.regdir, True)
        cls.admin_port = h.free_port()
        cls.keygate_args = ["--admin", f"{h.HOST}:{cls.admin_port}"]
        if registry:
            cls.keygate_args += ["--registry", write_registry(cls.regdir)]

    @property
    def node(self) -> str:
        return f"{h.HOST}:{self.redis.port}"

    def wait_subscribed(self, conn: h.RespConnection) -> None:
        h.wait_until(lambda: numsub(conn) == {c: 1 for c in CHANNELS}, h.scaled(10),
                     message="keygate subscribed to both keyevent channels")

    def log_count(self, text: str) -> int:
        return self.keygate.log_text().count(text)


class StandaloneKeyspaceEventsTest(KeyspaceChecks, h.KeygateTestCase):
    redis_args = EVICTING_REDIS

    @classmethod
    def setUpClass(cls) -> None:
        cls.configure()
        super().setUpClass()

    def test_subscribed_and_enabled(self):
        d = self.direct()
        self.wait_subscribed(d)
        h.wait_until(lambda: gauge(self.admin_port, self.node) == 1, h.scaled(10),
                     message=f"{ENABLED}{{node={self.node!r}}} == 1")
        # A pubsub client for Redis (its client-output-buffer-limit class), over RESP3.
        clients = d.call("CLIENT", "LIST", "TYPE", "pubsub").decode().splitlines()
        self.assertEqual(len(clients), 1, clients)
        self.assertIn("resp=3", clients[0])
        self.assertIn("sub=2", clients[0])
        self.assertEqual(self.log_count(WARNING), 0)

    def test_evictions_attributed_to_their_pattern(self):
        d = self.direct()
        self.wait_subscribed(d)
        c = self.kg()
        evictions0 = counters(self.admin_port, EVICTIONS)
        evicted0 = info_stat(d, "evicted_keys")
        keep = [f"keep:{i}" for i in range(20)]
        c.send_many([("SET", k, "small") for k in keep])
        self.assertEqual([c.read() for _ in keep], ["OK"] * len(keep))
        written = 0
        while info_stat(d, "evicted_keys") - evicted0 < 300:
            self.assertLess(written, 20000, "Redis never evicted (maxmemory 2mb?)")
            batch = [("SET", f"evict:{written + i}", VALUE) for i in range(50)]
            c.send_many(batch)
            replies = [c.read() for _ in batch]
            self.assertEqual(replies, ["OK"] * len(batch), "writes under maxmemory")
            written += len(batch)
        # Redis 7 may go on evicting in the background after the last write: compare once
        # Redis' count holds still across a read of keygate's.
        seen: Dict[str, float] = {}

        def settled() -> bool:
            # Redis' count read before and after everything else: equal, and nothing was
            # evicted in between, so keygate's counters and the missing keep:* keys describe
            # the same moment (a background eviction between them was a flaky mismatch).
            first = info_stat(d, "evicted_keys") - evicted0
            now = counters(self.admin_port, EVICTIONS)
            seen.clear()
            seen.update({p: delta(now, evictions0, p) for p in (EVICT, KEEP, UNREGISTERED)})
            seen["keep:* missing"] = sum(1 for k in keep if d.call("EXISTS", k) == 0)
            seen["redis"] = info_stat(d, "evicted_keys") - evicted0
            return first == seen["redis"] == seen[EVICT] + seen[KEEP] + seen[UNREGISTERED]

        try:
            h.wait_until(settled, h.scaled(10), message="keygate counting every eviction")
        except AssertionError:
            raise AssertionError(f"Redis evicted / keygate counted: {seen}") from None
        self.assertEqual(seen[KEEP], seen["keep:* missing"], seen)
        self.assertEqual(seen[UNREGISTERED], 0, seen)
        self.assertGreaterEqual(seen[EVICT], 250, seen)

    def test_expirations_attributed_to_their_pattern(self):
        d = self.direct()
        self.wait_subscribed(d)
        c = self.kg()
        expirations0 = counters(self.admin_port, EXPIRATIONS)
        expired0 = info_stat(d, "expired_keys")
        sessions = [f"session:{i}" for i in range(30)]
        c.send_many([("SET", k, "v", "PX", "50") for k in sessions])
        self.assertEqual([c.read() for _ in sessions], ["OK"] * len(sessions))
        # Unregistered keys can only be written around keygate.
        for i in range(5):
            self.assertEqual(d.call("SET", f"other:{i}", "v", "PX", "50"), "OK")
        got: Dict[str, float] = {}

        def all_counted() -> bool:
            now = counters(self.admin_port, EXPIRATIONS)
            got.update({p: delta(now, expirations0, p)
                        for p in (SESSION, EVICT, KEEP, UNREGISTERED)})
            return got[SESSION] >= 30 and got[UNREGISTERED] >= 5

        # Redis expires keys actively ~10 times a second, sampling; 35 keys go within seconds.
        try:
            h.wait_until(all_counted, h.scaled(15), message="keygate counting the expirations")
        except AssertionError:
            raise AssertionError(f"Redis expired {info_stat(d, 'expired_keys') - expired0} "
                                 f"keys, keygate counted {got}") from None
        self.assertEqual(got, {SESSION: 30, EVICT: 0, KEEP: 0, UNREGISTERED: 5})
        self.assertEqual(info_stat(d, "expired_keys") - expired0, 35)

    def test_resubscribes_after_its_connection_is_killed(self):
        d = self.direct()
        self.wait_subscribed(d)
        self.assertGreaterEqual(d.call("CLIENT", "KILL", "TYPE", "pubsub"), 1)
        self.wait_subscribed(d)
        h.wait_until(lambda: self.log_count("subscribed again on") >= 1, h.scaled(5),
                     message="the re-subscription logged")
        expirations0 = counters(self.admin_port, EXPIRATIONS)
        c = self.kg()
        self.assertEqual(c.call("SET", "session:after-kill", "v", "PX", "20"), "OK")
        h.wait_until(lambda: delta(counters(self.admin_port, EXPIRATIONS), expirations0,
                                   SESSION) == 1, h.scaled(10),
                     message="an expiration counted on the new subscription")


class NotificationsOffTest(KeyspaceChecks, h.KeygateTestCase):
    """Redis with its default notify-keyspace-events (empty: off); keygate without a registry."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.configure(registry=False)
        super().setUpClass()

    def test_off_is_a_metric_and_one_warning_and_config_is_left_alone(self):
        d = self.direct()
        h.wait_until(lambda: gauge(self.admin_port, self.node) == 0, h.scaled(10),
                     message=f"{ENABLED}{{node={self.node!r}}} == 0")
        self.wait_subscribed(d)  # subscribed anyway: an operator may turn it on later
        log = self.keygate.log_text()
        self.assertEqual(log.count(WARNING), 1, log)
        self.assertIn("CONFIG SET notify-keyspace-events Exe", log)
        self.assertIn(self.node, log)
        self.assertEqual(d.call("CONFIG", "GET", "notify-keyspace-events"),
                         [b"notify-keyspace-events", b""], "keygate changed Redis' config")
        # An operator turns it on: the next health check (every 15 s) sees it.
        try:
            self.assertEqual(d.call("CONFIG", "SET", "notify-keyspace-events", "Exe"), "OK")
            h.wait_until(lambda: gauge(self.admin_port, self.node) == 1, h.scaled(25),
                         message=f"{ENABLED} == 1 after CONFIG SET")
            before = counters(self.admin_port, EXPIRATIONS)
            self.assertEqual(d.call("SET", "k", "v", "PX", "20"), "OK")
            h.wait_until(lambda: delta(counters(self.admin_port, EXPIRATIONS), before,
                                       UNREGISTERED) == 1, h.scaled(10),
                         message="an expiration counted as (unregistered)")
            self.assertEqual(self.log_count(WARNING), 1, "warned again")
        finally:
            d.call("CONFIG", "SET", "notify-keyspace-events", "")


class ConfigRefusedTest(KeyspaceChecks, h.KeygateTestCase):
    """keygate's Redis user may not run CONFIG (as on some managed services)."""

    redis_args = EVICTING_REDIS + ["--user", "kg", "on", ">kgpass", "~*", "&*", "+@all",
                                   "-config"]
    keygate_config = "upstream:\n  username: kg\n  password: kgpass\n"

    @classmethod
    def setUpClass(cls) -> None:
        cls.configure()
        super().setUpClass()

    def test_unknown_until_both_events_seen(self):
        d = self.direct()
        self.wait_subscribed(d)
        h.wait_until(lambda: self.log_count(UNREADABLE) == 1, h.scaled(10),
                     message="the warning about CONFIG GET")
        self.assertIsNone(gauge(self.admin_port, self.node), "the state is unknown")
        c = self.kg()
        before = counters(self.admin_port, EXPIRATIONS)
        self.assertEqual(c.call("SET", "session:1", "v", "PX", "20"), "OK")
        h.wait_until(lambda: delta(counters(self.admin_port, EXPIRATIONS), before, SESSION) == 1,
                     h.scaled(10), message="an expiration counted")
        self.assertIsNone(gauge(self.admin_port, self.node), "one kind of event proves nothing")
        evicted0 = info_stat(d, "evicted_keys")
        i = 0
        while info_stat(d, "evicted_keys") == evicted0:
            self.assertLess(i, 5000, "Redis never evicted")
            batch = [("SET", f"evict:{i + j}", VALUE) for j in range(50)]
            c.send_many(batch)
            self.assertEqual([c.read() for _ in batch], ["OK"] * len(batch))
            i += len(batch)
        h.wait_until(lambda: gauge(self.admin_port, self.node) == 1, h.scaled(10),
                     message=f"{ENABLED} == 1 once both kinds of event were seen")
        self.assertEqual(self.log_count(UNREADABLE), 1, "warned again")


class ClusterKeyspaceEventsTest(ch.KeygateClusterTestCase):
    """3 masters with a replica each; keygate with `topologyRefreshInterval: 1s`."""

    cluster_replicas_per_master = 1
    cluster_args = ["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru",
                    "--notify-keyspace-events", "Exe"]
    start_keygate = False

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # workdir + cluster
        cls.admin_port = h.free_port()
        extra = (f"admin: {h.HOST}:{cls.admin_port}\n"
                 f"registry: {write_registry(cls.workdir)}\n")
        config = cls.cluster.keygate_config(extra).replace(
            "  mode: cluster\n", "  mode: cluster\n  topologyRefreshInterval: 1s\n")
        cls.keygate = h.KeygateProcess(cls.workdir, None, config=config)
        cls.addClassCleanup(cls._stop_keygate_checked)
        cls.keygate.start()

    def subscribers(self, node: ch.ClusterNodeInfo) -> Dict[str, int]:
        with node.client(timeout=h.scaled(5)) as c:
            return numsub(c)

    def wait_subscriptions(self) -> List[ch.ClusterNodeInfo]:
        """Every master subscribed once (and reported enabled), no replica; returns masters."""
        masters = self.cluster.masters()
        replicas = self.cluster.replicas()
        once = {c: 1 for c in CHANNELS}
        none = {c: 0 for c in CHANNELS}

        def done() -> bool:
            return (all(self.subscribers(m) == once for m in masters)
                    and all(self.subscribers(r) == none for r in replicas)
                    and all(gauge(self.admin_port, m.address) == 1 for m in masters))

        h.wait_until(done, h.scaled(20), message="one subscription per master, none on replicas")
        return masters

    def test_evictions_on_every_master_are_counted(self):
        masters = self.wait_subscriptions()
        conns = {m.port: self.node_conn(m) for m in masters}
        evicted0 = {p: info_stat(c, "evicted_keys") for p, c in conns.items()}
        evictions0 = counters(self.admin_port, EVICTIONS)
        c = self.kg()

        def evicted() -> Dict[int, int]:
            return {p: info_stat(conn, "evicted_keys") - evicted0[p] for p, conn in conns.items()}

        written = 0
        while sum(1 for n in evicted().values() if n >= 50) < 2:
            self.assertLess(written, 30000, f"Redis never evicted enough: {evicted()}")
            batch = [("SET", f"evict:{written + i}", VALUE) for i in range(60)]
            c.send_many(batch)
            self.assertEqual([c.read() for _ in batch], ["OK"] * len(batch))
            written += len(batch)
        total = sum(evicted().values())
        got: List[float] = []

        def counted() -> bool:
            got[:] = [delta(counters(self.admin_port, EVICTIONS), evictions0, EVICT)]
            return got[0] >= total

        try:
            h.wait_until(counted, h.scaled(10), message="every master's evictions counted")
        except AssertionError:
            raise AssertionError(f"masters evicted {evicted()}, keygate counted {got}") from None
        self.assertEqual(got[0], total, f"per master: {evicted()}")

    def test_follows_a_failover(self):
        masters = self.wait_subscriptions()
        old = masters[0]
        self.cluster.kill_master(old)
        new = self.cluster.wait_for_failover(old)
        once = {c: 1 for c in CHANNELS}
        h.wait_until(lambda: self.subscribers(new) == once
                     and gauge(self.admin_port, new.address) == 1
                     and gauge(self.admin_port, old.address) is None,
                     h.scaled(20), message=f"the promoted {new.address} subscribed, "
                                           f"{old.address} forgotten")
        # The old master comes back as a replica: not subscribed again.
        self.cluster.ensure_healthy()
        self.wait_subscriptions()
        before = counters(self.admin_port, EXPIRATIONS)
        c = self.kg()
        keys = [f"session:f{i}" for i in range(30)]
        c.send_many([("SET", k, "v", "PX", "20") for k in keys])
        self.assertEqual([c.read() for _ in keys], ["OK"] * len(keys))
        h.wait_until(lambda: delta(counters(self.admin_port, EXPIRATIONS), before, SESSION)
                     == len(keys), h.scaled(15), message="expirations on every master counted")


if __name__ == "__main__":
    h.main()
