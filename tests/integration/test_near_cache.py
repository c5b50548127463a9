#!/usr/bin/python3
"""Request coalescing and the near cache (issue 8, SPEC section 8), against real redis-servers.
Every upstream effect is counted by Redis itself (`INFO commandstats` after `CONFIG RESETSTAT`,
both sent directly to Redis, never through keygate); keygate's own view is read from its admin
endpoint (/metrics, /hotkeys).

1. A hit is served locally: a GET (and an HGETALL, RESP2 and RESP3, byte-identical to Redis' own
   replies) of a cached key sends nothing to Redis and counts one near-cache hit; nil and empty
   replies are never cached (every read of an absent key reaches Redis).
2. Invalidation (near-cache ttl 60 s, so nothing else can change an entry within the test): a SET,
   DEL or FLUSHALL sent directly to Redis is reported by CLIENT TRACKING, and from then on every
   GET through keygate returns the new value / nil; a SET through keygate from another connection
   drops the entry at once.
3. The TTL bounds staleness when invalidations are lost: keygate's upstream is a loopback TCP
   forwarder that withholds every invalidation message Redis sends; the old value is served (the
   block works) while the entry lives, and never again after the near-cache ttl (2 s) + margin.
4. Coalescing: 20 connections GET one key of a `coalesce: true` pattern while Redis is stopped
   (SIGSTOP); keygate counts 19 coalesced requests, and after SIGCONT all 20 get the value from
   exactly one upstream GET. Without `coalesce`: 20 GETs.
5. Redis paused with a fail-open endpoint: a near-cached key is still served (well under the
   budget); keys not in the near cache get the fail-open nil at the budget.
6. /hotkeys marks a near-cached hot key `"nearCache": true`, a hot key that is not cached false.
7. containsPII + nearCache without allowPII: keygate refuses to start (exit 2, the rule named) and
   `keygate check` fails; with allowPII: true it starts and caches.

keygates run with `--threads 1` (the near cache and the flight table are per worker thread).
redis-py 4.3 (Debian 12) has no RESP3 (`protocol=3` came in 5.0), so RESP3 is spoken over
keygate_harness.RespConnection after HELLO 3.
"""

import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from typing import Callable, List, Optional, Tuple

import keygate_harness as h
from endpoint_timing import EPS, MARGIN

# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

P_NEAR = "cpq:{tenant-<tenant>}:catalog:offering:<offeringId>:v<version:int>"
P_PLAIN = "cpq:{tenant-<tenant>}:quote:workspace:<quoteId>"
P_COAL = "cpq:{tenant-<tenant>}:catalog:coalesced:<offeringId>"
P_UNCOAL = "cpq:{tenant-<tenant>}:pricing:uncoalesced:<id>"
P_PII = "cpq:{tenant-<tenant>}:customer:profile:<customerId>"

NEAR_TTL_S = 60          # long: within a test only an invalidation can change an entry
SHORT_NEAR_TTL_S = 2     # the TTL-bound test
OPEN_MS = 300            # near-open: the fail-open budget
SLOW_MS = 10000          # slow-closed: requests that must outlive a SIGSTOP of Redis

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
    description: near cache tests, fail open
  - name: slow-closed
    timeout: {SLOW_MS}ms
    onFailure: closed
    breaker: {{enabled: false}}
    description: coalescing tests, outlive a pause of Redis
"""


def pattern_entry(pattern: str, endpoint: str, extra: str = "", pii: bool = False) -> str:
    return (f'  - pattern: "{pattern}"\n'
            f"    owner: integration-tests\n"
            f"    purpose: near cache and coalescing tests\n"
            f"    authority: false\n"
            f"    containsPII: {'true' if pii else 'false'}\n"
            f'    failureBehavior: {{endpoint: {endpoint}, description: "read the source"}}\n'
            f"    ttl: {{default: 1h, max: 2h}}\n" + extra)


def registry(near_ttl_s: int = NEAR_TTL_S) -> str:
    return (ENDPOINTS + "patterns:\n"
            + pattern_entry(P_NEAR, "near-open",
                            "    coalesce: true\n"
                            f"    nearCache: {{ttl: {near_ttl_s}s, maxBytes: 1MiB, "
                            "maxEntries: 1000}\n")
            + pattern_entry(P_PLAIN, "near-open")
            + pattern_entry(P_COAL, "slow-closed", "    coalesce: true\n")
            + pattern_entry(P_UNCOAL, "slow-closed"))


def pii_registry(allow: Optional[bool]) -> str:
    near = "    nearCache:\n      ttl: 30s\n      maxEntries: 100\n"
    if allow is not None:
        near += f"      allowPII: {'true' if allow else 'false'}\n"
    return ENDPOINTS + "patterns:\n" + pattern_entry(P_PII, "near-open", near, pii=True)


def near_key(tenant: str, offering: str, version: int = 1) -> str:
    return f"cpq:{{tenant-{tenant}}}:catalog:offering:{offering}:v{version}"


def plain_key(tenant: str, quote: str) -> str:
    return f"cpq:{{tenant-{tenant}}}:quote:workspace:{quote}"


def coal_key(tenant: str, offering: str) -> str:
    return f"cpq:{{tenant-{tenant}}}:catalog:coalesced:{offering}"


def uncoal_key(tenant: str, ident: str) -> str:
    return f"cpq:{{tenant-{tenant}}}:pricing:uncoalesced:{ident}"


def pii_key(tenant: str, customer: str) -> str:
    return f"cpq:{{tenant-{tenant}}}:customer:profile:{customer}"


HITS = "keygate_near_cache_hits_total"
MISSES = "keygate_near_cache_misses_total"
INVALIDATIONS = "keygate_near_cache_invalidations_total"
EXPIRATIONS = "keygate_near_cache_expirations_total"
ENTRIES = "keygate_near_cache_entries"
FLUSHES = "keygate_near_cache_flushes_total"
TRACKING = "keygate_near_cache_tracking"
COALESCED = "keygate_coalesced_requests_total"

# file:line:col: yaml.path: message
ERROR_LINE = re.compile(
    r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): (?P<msg>.+)$", re.M)

# --------------------------------------------------------------------------------------------
# Helpers: metrics, Redis, processes
# --------------------------------------------------------------------------------------------


def registry_keygate_args(cls) -> List[str]:
    """Writes registry() into a directory removed with test class `cls`, gives `cls` an admin
    port, and returns keygate's arguments: `--threads 1`, that admin port, the registry."""
    import shutil
    import tempfile
    cls.regdir = tempfile.mkdtemp(prefix=f"keygate-it-{cls.__name__}-registry-")
    cls.addClassCleanup(shutil.rmtree, cls.regdir, True)
    path = os.path.join(cls.regdir, "registry.yaml")
    with open(path, "w") as f:
        f.write(registry())
    cls.admin_port = h.free_port()
    return ["--threads", "1", "--admin", f"{h.HOST}:{cls.admin_port}", "--registry", path]


def get_at_once(test, conns: List[h.RespConnection], key: str, paused,
                on_sent: Callable[[], None]) -> List[object]:
    """Every connection in `conns` GETs `key` at once inside `paused` (a context manager that
    keeps Redis stopped); `on_sent()` runs, still inside it, once every GET was written. Fails
    `test` on a connection error or an unanswered GET; returns the replies in `conns` order."""
    replies: List[object] = [None] * len(conns)
    errors: List[str] = []
    sent = threading.Semaphore(0)

    def worker(i: int) -> None:
        try:
            conns[i].send("GET", key)
            sent.release()
            replies[i] = conns[i].read()
        except Exception as exc:  # reported below
            errors.append(f"connection {i}: {exc!r}")
            sent.release()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(len(conns))]
    with paused:
        for t in threads:
            t.start()
        for _ in conns:
            test.assertTrue(sent.acquire(timeout=h.scaled(5)), "GET not sent")
        on_sent()
    for t in threads:
        t.join(timeout=h.scaled(15))
    test.assertFalse([t for t in threads if t.is_alive()], "GETs not answered")
    test.assertFalse(errors, errors)
    return replies


def metric_sum(admin_port: int, name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels` (absent: 0)."""
    total = 0.0
    for (n, lbl), value in h.admin_metrics(admin_port).items():
        if n == name:
            d = dict(lbl)
            if all(d.get(k) == v for k, v in labels.items()):
                total += value
    return total


def commandstat_calls(conn: h.RespConnection, command: str) -> int:
    info = conn.call("INFO", "commandstats")
    for line in info.decode().splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            fields = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].split(","))
            return int(fields["calls"])
    return 0


def resume(proc) -> None:
    """SIGCONT to a process we paused, if it still runs (harmless when it is not stopped)."""
    if proc is not None and proc.poll() is None:
        try:
            proc.send_signal(signal.SIGCONT)
        except ProcessLookupError:
            pass


def redis_rx_bytes(redis_port: int) -> int:
    """Bytes waiting unread in Redis' receive queues (all established connections to it), from
    /proc/net/tcp (every connection here is IPv4 loopback)."""
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == redis_port and fields[3] == "01":  # ESTABLISHED
                total += int(fields[4].split(":")[1], 16)
    return total


def admin_get(admin_port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://{h.HOST}:{admin_port}{path}",
                                timeout=h.scaled(5)) as resp:
        return resp.read().decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------
# A TCP forwarder that withholds Redis' invalidation messages
# --------------------------------------------------------------------------------------------


def is_invalidation(reply: object) -> bool:
    """A client-side-caching invalidation: RESP3 push `>2 invalidate [keys]|null`, or (RESP2
    REDIRECT mode, or RESP3 pub/sub) a message on channel __redis__:invalidate."""
    if not isinstance(reply, list) or not reply:
        return False
    if isinstance(reply, h.Push) and reply[0] == b"invalidate":
        return True
    return (len(reply) >= 3 and reply[0] == b"message"
            and reply[1] == b"__redis__:invalidate")


class _Link:
    def __init__(self, client: socket.socket, server: socket.socket):
        self.client = client
        self.server = server
        self.tracking = False
        self._closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for s in (self.client, self.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


class InvalidationHoldingForwarder:
    """Loopback TCP forwarder for keygate's upstream connections. Every connection is forwarded
    both ways, byte for byte, except that invalidation messages from Redis (see
    is_invalidation) are held back, never delivered: keygate then never learns of a change.
    Everything else (HELLO and CLIENT TRACKING replies, health-check PONGs, data replies) flows,
    so keygate's tracking connection stays healthy and its prefixes confirmed. Connections whose
    client->server stream carried "TRACKING" are counted. Threads: one accept loop (polls a stop
    flag every 50 ms, ends after `lifetime`), two per connection (blocking, woken by shutdown
    in stop())."""

    def __init__(self, target_port: int, lifetime: float = 300.0):
        self.target_port = target_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        for _ in range(50):
            self.port = h.free_port()
            try:
                self.sock.bind((h.HOST, self.port))
                break
            except OSError:
                continue
        else:
            raise RuntimeError("forwarder: no free port")
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self._lock = threading.Lock()
        self._links: List[_Link] = []
        self._threads: List[threading.Thread] = []
        self.held: List[bytes] = []
        self.tracking_connections = 0
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime
        self._start(self._accept_loop, "forwarder-accept")

    def _start(self, target: Callable, name: str, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def held_count(self) -> int:
        with self._lock:
            return len(self.held)

    def tracking_count(self) -> int:
        with self._lock:
            return self.tracking_connections

    def _accept_loop(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                client, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection((h.HOST, self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)
            link = _Link(client, server)
            with self._lock:
                if self._stop.is_set():
                    link.close()
                    return
                self._links.append(link)
            self._start(self._client_to_server, "forwarder-c2s", link)
            self._start(self._server_to_client, "forwarder-s2c", link)

    def _client_to_server(self, link: _Link) -> None:
        tail = b""
        try:
            while True:
                data = link.client.recv(1 << 16)
                if not data:
                    break
                if not link.tracking and b"tracking" in (tail + data).lower():
                    link.tracking = True
                    with self._lock:
                        self.tracking_connections += 1
                tail = data[-8:]
                link.server.sendall(data)
        except OSError:
            pass
        link.close()

    def _server_to_client(self, link: _Link) -> None:
        buf = bytearray()
        pos = 0
        try:
            while True:
                data = link.server.recv(1 << 16)
                if not data:
                    break
                buf += data
                while True:
                    try:
                        value, end = h.parse_reply(buf, pos)
                    except h.Incomplete:
                        break
                    raw = bytes(buf[pos:end])
                    pos = end
                    if is_invalidation(value):
                        with self._lock:
                            self.held.append(raw)
                    else:
                        link.client.sendall(raw)
                if pos:
                    del buf[:pos]
                    pos = 0
        except (OSError, h.ProtocolViolation, ValueError):
            pass
        link.close()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            links = list(self._links)
            threads = list(self._threads)
        for link in links:
            link.close()
        for t in threads:
            t.join(timeout=5)


# --------------------------------------------------------------------------------------------
# Shared test helpers
# --------------------------------------------------------------------------------------------


class NearCacheChecks:
    """Mixed into a KeygateTestCase whose keygate has an admin port `admin_port`."""

    admin_port = 0

    def m(self, name: str, **labels: str) -> float:
        return metric_sum(self.admin_port, name, **labels)

    def resetstat(self) -> h.RespConnection:
        d = self.direct()
        self.assertEqual(d.call("CONFIG", "RESETSTAT"), "OK")
        return d

    def cache(self, conn: h.RespConnection, key: str, expected: object,
              command: str = "GET", pattern: str = P_NEAR, timeout: float = 5.0) -> None:
        """Precondition: reads `key` through keygate until a read is answered from the near
        cache (the pattern's hit counter rises), every reply equal to `expected`. The first reads
        of a new tracking prefix are not stored (the prefix is not yet confirmed by Redis), so
        the number of reads it takes is not part of any check."""
        wrong: List[object] = []

        def hit() -> bool:
            before = self.m(HITS, pattern=pattern)
            reply = conn.call(command, key)
            if reply != expected:
                wrong.append(reply)
                return True  # stop polling; fails below
            return self.m(HITS, pattern=pattern) > before

        h.wait_until(hit, h.scaled(timeout), interval=0.02,
                     message=f"{command} {key!r} to be served from the near cache")
        self.assertFalse(wrong, f"{command} {key} through keygate: {wrong[:1]!r}, "
                                f"expected {expected!r}")

    def set_via_keygate(self, conn: h.RespConnection, key: str, value: str) -> None:
        self.assertEqual(conn.call("SET", key, value), "OK", f"SET {key} through keygate")


# --------------------------------------------------------------------------------------------
# 1, 2, 6, 7: hits, invalidation, /hotkeys, PII
# --------------------------------------------------------------------------------------------


class NearCacheTest(NearCacheChecks, h.KeygateTestCase):
    """One Redis, one keygate (`--threads 1`, the registry above with a 60 s near-cache ttl)."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.keygate_args = registry_keygate_args(cls)
        super().setUpClass()

    # -- 1. hits
    def test_get_hit_served_locally(self):
        c = self.kg()
        # Warm the tenant's tracking prefix with another key, so that the key under test is
        # cached by its first read (a read sent before Redis confirmed the prefix is not).
        warm = near_key("acme", "warm")
        self.set_via_keygate(c, warm, "warm")
        self.cache(c, warm, b"warm")

        key = near_key("acme", "o1", 3)
        self.set_via_keygate(c, key, "offering one")
        misses0, hits0 = self.m(MISSES, pattern=P_NEAR), self.m(HITS, pattern=P_NEAR)
        self.assertEqual(c.call("GET", key), b"offering one")
        self.assertEqual(self.m(MISSES, pattern=P_NEAR) - misses0, 1,
                         "the first GET is a near-cache miss that went to Redis")
        self.assertEqual(self.m(HITS, pattern=P_NEAR), hits0)
        d = self.resetstat()
        self.assertEqual(c.call("GET", key), b"offering one")
        self.assertEqual(commandstat_calls(d, "get"), 0,
                         "the second GET of a cached key reached Redis")
        self.assertEqual(self.m(HITS, pattern=P_NEAR) - hits0, 1,
                         f"{HITS}{{pattern={P_NEAR!r}}} after one hit")
        # Another connection of the same worker is served from the same cache.
        other = self.kg()
        self.assertEqual(other.call("GET", key), b"offering one")
        self.assertEqual(commandstat_calls(d, "get"), 0)
        self.assertEqual(self.m(HITS, pattern=P_NEAR) - hits0, 2)
        self.assertGreaterEqual(self.m(ENTRIES, pattern=P_NEAR), 2, ENTRIES)

    def test_hgetall_hit_resp2_and_resp3(self):
        c2 = self.kg()
        c3 = self.kg()
        self.assertIsInstance(c3.call("HELLO", "3"), h.Map)
        key = near_key("acme", "hash1", 7)
        self.assertEqual(c2.call("HSET", key, "name", "Fibre 1G", "price", "49.90"), 2)
        # Redis' own replies, in both protocols (read before RESETSTAT).
        d2 = self.direct()
        d3 = self.direct()
        self.assertIsInstance(d3.call("HELLO", "3"), h.Map)
        want2 = d2.call_raw("HGETALL", key)
        want3 = d3.call_raw("HGETALL", key)
        self.assertTrue(want2.startswith(b"*4\r\n"), want2)
        self.assertTrue(want3.startswith(b"%2\r\n"), want3)
        fields = [(b"name", b"Fibre 1G"), (b"price", b"49.90")]
        # Cache it for each protocol (a RESP3 client must get a map, a RESP2 client an array,
        # whoever filled the entry).
        self.cache(c2, key, [f for pair in fields for f in pair], command="HGETALL")
        self.cache(c3, key, h.Map(fields), command="HGETALL")
        d = self.resetstat()
        hits0 = self.m(HITS, pattern=P_NEAR)
        for _ in range(3):
            self.assertEqual(c3.call_raw("HGETALL", key), want3, "RESP3 HGETALL from the cache")
            self.assertEqual(c2.call_raw("HGETALL", key), want2, "RESP2 HGETALL from the cache")
        self.assertEqual(commandstat_calls(d, "hgetall"), 0,
                         "HGETALL of a cached hash reached Redis")
        self.assertEqual(self.m(HITS, pattern=P_NEAR) - hits0, 6)

    def test_nil_and_empty_replies_not_cached(self):
        c = self.kg()
        warm = near_key("acme", "warm")
        self.set_via_keygate(c, warm, "warm")
        self.cache(c, warm, b"warm")  # the prefix is confirmed: absence is the only reason
        absent = near_key("acme", "absent", 1)
        absent_hash = near_key("acme", "absent-hash", 1)
        d = self.resetstat()
        hits0 = self.m(HITS, pattern=P_NEAR)
        for _ in range(2):
            self.assertIsNone(c.call("GET", absent))
            self.assertEqual(c.call("HGETALL", absent_hash), [])
        self.assertEqual(commandstat_calls(d, "get"), 2, "a nil GET reply was cached")
        self.assertEqual(commandstat_calls(d, "hgetall"), 2, "an empty HGETALL reply was cached")
        self.assertEqual(self.m(HITS, pattern=P_NEAR), hits0)
        # Written afterwards, the key is read from Redis (no cached absence).
        self.set_via_keygate(c, absent, "now here")
        self.assertEqual(c.call("GET", absent), b"now here")

    def test_other_patterns_not_cached(self):
        c = self.kg()
        key = plain_key("acme", "q1")
        self.set_via_keygate(c, key, "workspace")
        d = self.resetstat()
        for _ in range(5):
            self.assertEqual(c.call("GET", key), b"workspace")
        self.assertEqual(commandstat_calls(d, "get"), 5,
                         "GETs of a pattern without nearCache were not all sent to Redis")
        self.assertEqual(self.m(HITS, pattern=P_PLAIN), 0)

    # -- 2. invalidation
    def assert_served_after_invalidation(self, conn: h.RespConnection, key: str,
                                         new: Optional[bytes], inv0: float) -> None:
        h.wait_until(lambda: self.m(INVALIDATIONS, pattern=P_NEAR) > inv0, h.scaled(5),
                     message=f"{INVALIDATIONS}{{pattern={P_NEAR!r}}} to rise")
        replies = [conn.call("GET", key) for _ in range(50)]
        stale = [i for i, r in enumerate(replies) if r != new]
        self.assertFalse(stale, f"after the invalidation, GETs {stale[:10]} of 50 returned "
                                f"{replies[stale[0]] if stale else None!r}, not {new!r}")

    def test_invalidation_by_direct_set(self):
        c = self.kg()
        key = near_key("acme", "inv-set", 1)
        self.set_via_keygate(c, key, "old")
        self.cache(c, key, b"old")
        inv0 = self.m(INVALIDATIONS, pattern=P_NEAR)
        hits_before = self.m(HITS, pattern=P_NEAR)
        d = self.direct()
        self.assertEqual(d.call("SET", key, "new", "EX", "3600"), "OK")
        self.assert_served_after_invalidation(c, key, b"new", inv0)
        # The new value is cached again (the entry refilled after the invalidation).
        self.assertGreater(self.m(HITS, pattern=P_NEAR), hits_before,
                           "the new value was never served from the near cache")

    def test_invalidation_by_direct_del(self):
        c = self.kg()
        key = near_key("acme", "inv-del", 1)
        self.set_via_keygate(c, key, "doomed")
        self.cache(c, key, b"doomed")
        inv0 = self.m(INVALIDATIONS, pattern=P_NEAR)
        self.assertEqual(self.direct().call("DEL", key), 1)
        self.assert_served_after_invalidation(c, key, None, inv0)

    def test_invalidation_by_write_through_keygate(self):
        reader = self.kg()
        writer = self.kg()
        key = near_key("acme", "inv-kg", 2)
        self.set_via_keygate(writer, key, "v1")
        self.cache(reader, key, b"v1")
        inv0 = self.m(INVALIDATIONS, pattern=P_NEAR)
        self.set_via_keygate(writer, key, "v2")
        # Dropped when the write went through keygate: no waiting for Redis' message.
        self.assertEqual(reader.call("GET", key), b"v2",
                         "GET right after a SET through keygate (another connection)")
        replies = [reader.call("GET", key) for _ in range(50)]
        self.assertEqual(replies, [b"v2"] * 50)
        self.assertGreater(self.m(INVALIDATIONS, pattern=P_NEAR), inv0)
        # HSET on a cached hash, and DEL, likewise.
        hkey = near_key("acme", "inv-kg-hash", 2)
        self.assertEqual(writer.call("HSET", hkey, "f", "1"), 1)
        self.cache(reader, hkey, [b"f", b"1"], command="HGETALL")
        self.assertEqual(writer.call("HSET", hkey, "f", "2"), 0)
        self.assertEqual(reader.call("HGETALL", hkey), [b"f", b"2"])
        self.assertEqual(writer.call("DEL", hkey), 1)
        self.assertEqual(reader.call("HGETALL", hkey), [])

    def test_flushall_in_redis_drops_entries(self):
        c = self.kg()
        keys = [near_key("acme", f"flush{i}", 1) for i in range(3)]
        for k in keys:
            self.set_via_keygate(c, k, "before flush")
            self.cache(c, k, b"before flush")
        self.assertGreaterEqual(self.m(ENTRIES, pattern=P_NEAR), 3)
        flushes0 = self.m(FLUSHES)
        # Sent directly: keygate's registry denies FLUSHALL (built-in denyCommands) anyway.
        self.assertEqual(self.direct().call("FLUSHALL"), "OK")
        h.wait_until(lambda: self.m(FLUSHES) > flushes0, h.scaled(5),
                     message=f"{FLUSHES} to rise after FLUSHALL in Redis")
        for k in keys:
            replies = [c.call("GET", k) for _ in range(50)]
            self.assertEqual(replies, [None] * 50, f"GET {k} after FLUSHALL in Redis")
        self.assertEqual(self.m(ENTRIES, pattern=P_NEAR), 0,
                         f"{ENTRIES} after FLUSHALL (nil replies are not cached)")

    # -- 6. /hotkeys
    def test_hotkeys_mark_near_cached_keys(self):
        c = self.kg()
        hot = near_key("acme", "hot", 9)
        cold = near_key("acme", "hot-absent", 9)  # hot too, but absent: never cached
        self.set_via_keygate(c, hot, "hot offering")
        self.cache(c, hot, b"hot offering")
        seen: List[dict] = []

        def entries(doc: dict, key: str) -> List[dict]:
            out = [e for e in doc.get("top", []) if e.get("key") == key]
            for p in doc.get("patterns", []):
                out += [e for e in p.get("keys", []) if e.get("key") == key]
            return out

        wrong: List[object] = []

        def listed() -> bool:
            batch = [("GET", hot)] * 200 + [("GET", cold)] * 100
            c.send_many(batch)
            replies = [c.read() for _ in batch]
            if replies != [b"hot offering"] * 200 + [None] * 100:
                wrong[:] = [r for r in replies if r not in (b"hot offering", None)][:1] or \
                    ["replies out of place"]
                return True
            doc = json.loads(admin_get(self.admin_port, "/hotkeys"))
            seen[:] = [doc]
            return bool(entries(doc, hot)) and bool(entries(doc, cold))

        try:
            h.wait_until(listed, h.scaled(15), interval=0.05,
                         message="both keys in /hotkeys")
        except AssertionError:
            self.fail(f"/hotkeys does not list {hot!r} and {cold!r}: {seen[:1]}")
        self.assertFalse(wrong, f"GETs of the hot keys: {wrong}")
        doc = seen[0]
        for e in entries(doc, hot):
            self.assertIs(e.get("nearCache"), True, f"/hotkeys entry of the cached key: {e}")
        for e in entries(doc, cold):
            self.assertIs(e.get("nearCache"), False,
                          f"/hotkeys entry of a near-cache pattern's key not in the cache: {e}")

    # -- 7. PII
    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_pii_pattern_needs_allow_pii(self):
        for allow in (None, False):
            path = self.write(f"pii-{allow}.yaml", pii_registry(allow))
            res = h.run_keygate_cli(["--listen", f"{h.HOST}:{h.free_port()}",
                                     "--upstream", f"{h.HOST}:{self.redis.port}",
                                     "--admin", f"{h.HOST}:{h.free_port()}",
                                     "--threads", "1", "--registry", path])
            out = res.stderr.decode() + res.stdout.decode()
            self.assertEqual(res.returncode, 2, f"allowPII={allow}: keygate started or failed "
                                                f"otherwise:\n{out}")
            errors = [m for m in ERROR_LINE.finditer(out) if m["file"] == path]
            self.assertEqual(len(errors), 1, f"allowPII={allow}: one error expected:\n{out}")
            self.assertTrue(errors[0]["path"].startswith("patterns[0]."),
                            f"the error's YAML path: {errors[0]['path']}")
            self.assertIn("allowPII", errors[0]["msg"], out)
            res = h.run_keygate_cli(["check", path])
            self.assertEqual(res.returncode, 1, f"keygate check, allowPII={allow}: "
                                                f"{res.stdout!r} {res.stderr!r}")
            self.assertIn("allowPII", res.stderr.decode())

        path = self.write("pii-allowed.yaml", pii_registry(True))
        res = h.run_keygate_cli(["check", path])
        self.assertEqual(res.returncode, 0, f"keygate check, allowPII: true: "
                                            f"{res.stdout!r} {res.stderr!r}")
        admin = h.free_port()
        kg = self.start_private_keygate(extra_args=["--threads", "1", "--admin",
                                                    f"{h.HOST}:{admin}", "--registry", path])
        c = h.RespConnection(kg.port, timeout=h.scaled(10))
        self.addCleanup(c.close)
        key = pii_key("acme", "c1")
        self.set_via_keygate(c, key, "Jane Doe")
        wrong: List[object] = []

        def hit() -> bool:
            before = metric_sum(admin, HITS, pattern=P_PII)
            reply = c.call("GET", key)
            if reply != b"Jane Doe":
                wrong.append(reply)
                return True
            return metric_sum(admin, HITS, pattern=P_PII) > before

        h.wait_until(hit, h.scaled(5), message="the allowPII pattern's key served from the "
                                               "near cache")
        self.assertFalse(wrong, f"GET {key}: {wrong[:1]!r}")
        self.assertTrue(kg.running())
        code = kg.stop(h.scaled(20))
        self.assertEqual(code, 0, kg.log_tail())
        self.assertIsNone(kg.sanitizer_report())


# --------------------------------------------------------------------------------------------
# 3. The TTL bounds staleness when invalidations are lost
# --------------------------------------------------------------------------------------------


class BlockedInvalidationTest(NearCacheChecks, h.KeygateTestCase):
    """keygate -> InvalidationHoldingForwarder -> Redis; near-cache ttl 2 s."""

    @classmethod
    def setUpClass(cls) -> None:
        import shutil
        import tempfile
        cls.workdir = tempfile.mkdtemp(prefix=f"keygate-it-{cls.__name__}-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        path = os.path.join(cls.workdir, "registry.yaml")
        with open(path, "w") as f:
            f.write(registry(SHORT_NEAR_TTL_S))
        cls.redis = h.RedisServer(cls.workdir)
        cls.addClassCleanup(cls.redis.stop, 10)
        cls.redis.start()
        cls.forwarder = InvalidationHoldingForwarder(cls.redis.port)
        cls.addClassCleanup(cls.forwarder.stop)
        cls.admin_port = h.free_port()
        cls.keygate = h.KeygateProcess(
            cls.workdir, cls.forwarder.port,
            extra_args=["--threads", "1", "--admin", f"{h.HOST}:{cls.admin_port}",
                        "--registry", path])
        cls.addClassCleanup(cls._stop_keygate_checked)
        cls.keygate.start()

    def test_stale_value_never_served_after_ttl(self):
        ttl = float(SHORT_NEAR_TTL_S)
        c = self.kg()
        warm = near_key("acme", "warm")
        self.set_via_keygate(c, warm, "warm")
        self.cache(c, warm, b"warm")  # the prefix is confirmed through the forwarder
        self.assertGreaterEqual(self.forwarder.tracking_count(), 1,
                                "no upstream connection of keygate sent CLIENT TRACKING")

        key = near_key("acme", "stale", 5)
        self.set_via_keygate(c, key, "old")
        hits0 = self.m(HITS, pattern=P_NEAR)
        exp0 = self.m(EXPIRATIONS, pattern=P_NEAR)
        fill_sent = time.monotonic()
        self.assertEqual(c.call("GET", key), b"old")
        fill_done = time.monotonic()
        self.assertEqual(c.call("GET", key), b"old")
        self.assertEqual(self.m(HITS, pattern=P_NEAR) - hits0, 1,
                         "the key was not cached by its first GET (the prefix was confirmed)")

        held0 = self.forwarder.held_count()
        self.assertEqual(self.direct().call("SET", key, "new", "EX", "3600"), "OK")
        h.wait_until(lambda: self.forwarder.held_count() > held0, h.scaled(2),
                     message="Redis' invalidation message reaching the forwarder")

        # Until the entry's ttl runs out (counted from before the fill was sent, minus 50 ms
        # of clock slack) the old value is served: the invalidation really is lost.
        old_until = fill_sent + ttl - 0.05
        new_by = fill_done + ttl + h.scaled(0.5)
        timeline: List[Tuple[float, object]] = []
        deadline = time.monotonic() + h.scaled(10)
        while time.monotonic() < deadline and len(timeline) < 2000:
            reply = c.call("GET", key)
            timeline.append((time.monotonic(), reply))
            if reply == b"new":
                break
            time.sleep(0.01)
        early = [(t, r) for t, r in timeline if t < old_until]
        wrong = [(round(t - fill_sent, 3), r) for t, r in early if r != b"old"]
        self.assertFalse(wrong, f"within the near-cache ttl with the invalidation held, keygate "
                                f"answered (s after the fill, reply): {wrong[:5]} instead of "
                                f"the cached b'old' (was the entry not cached, or the "
                                f"invalidation not blocked?)")
        self.assertGreaterEqual(len(early), 3,
                                f"too few GETs before the ttl ran out ({len(early)}, the first "
                                f"{timeline[0][0] - fill_sent if timeline else 0:.2f}s after "
                                f"the fill): the machine is too slow to show the blocked "
                                f"invalidation")
        self.assertTrue(timeline and timeline[-1][1] == b"new",
                        f"GET never returned the new value within 10 s of its change; last "
                        f"replies {timeline[-3:]}")
        first_new = timeline[-1][0]
        self.assertLessEqual(first_new, new_by,
                             f"the old value was served until {first_new - fill_done:.2f}s "
                             f"after the fill, beyond the near-cache ttl {ttl}s + "
                             f"{h.scaled(0.5):.1f}s")
        bad = [r for _, r in timeline if r not in (b"old", b"new")]
        self.assertFalse(bad, f"unexpected replies: {bad[:5]}")
        # Never the old value again.
        after: List[object] = []
        until = time.monotonic() + 1.0
        while time.monotonic() < until and len(after) < 500:
            after.append(c.call("GET", key))
        self.assertEqual(after, [b"new"] * len(after),
                         "the old value came back after the new one was served")
        self.assertGreater(self.m(EXPIRATIONS, pattern=P_NEAR), exp0,
                           f"{EXPIRATIONS} did not count the entry dropped at its ttl")
        sys.stderr.write(f"[near-cache] old value served until "
                         f"{max(t for t, r in timeline if r == b'old') - fill_done:.2f}s after "
                         f"the fill, new from {first_new - fill_done:.2f}s (ttl {ttl:.0f}s); "
                         f"{self.forwarder.held_count()} invalidation(s) held\n")


# --------------------------------------------------------------------------------------------
# 4, 5: coalescing, and a paused Redis
# --------------------------------------------------------------------------------------------


class PausedRedisTest(NearCacheChecks, h.KeygateTestCase):
    """One Redis (SIGSTOPped by PID by the tests, SIGCONT always follows), one keygate
    (`--threads 1`, near-cache ttl 60 s)."""

    N = 20

    @classmethod
    def setUpClass(cls) -> None:
        cls.keygate_args = registry_keygate_args(cls)
        super().setUpClass()

    def setUp(self) -> None:
        resume(self.redis.proc)  # a test that failed half-way
        super().setUp()

    @contextmanager
    def paused(self):
        proc = self.redis.proc
        self.addCleanup(resume, proc)
        proc.send_signal(signal.SIGSTOP)
        try:
            yield proc
        finally:
            resume(proc)

    def concurrent_gets(self, key: str, on_sent: Callable[[], None]
                        ) -> Tuple[List[object], int]:
        """N connections GET `key` at once while Redis is stopped; `on_sent()` runs (Redis still
        stopped) once every GET was written. Returns the N replies and Redis' `get` calls."""
        conns = [self.kg(timeout=30) for _ in range(self.N)]
        for conn in conns:
            self.assertEqual(conn.call("PING"), "PONG")
        d = self.resetstat()
        replies = get_at_once(self, conns, key, self.paused(), on_sent)
        return replies, commandstat_calls(d, "get")

    # -- 4. coalescing
    def test_concurrent_gets_coalesced(self):
        key = coal_key("acme", "c1")
        self.assertEqual(self.direct().call("SET", key, "shared value"), "OK")
        coalesced0 = self.m(COALESCED, pattern=P_COAL)
        got: List[float] = []

        def all_joined() -> None:
            def joined() -> bool:
                got[:] = [self.m(COALESCED, pattern=P_COAL) - coalesced0]
                return got[0] >= self.N - 1
            try:
                h.wait_until(joined, h.scaled(3),
                             message=f"{COALESCED}{{pattern={P_COAL!r}}} +{self.N - 1}")
            except AssertionError:
                raise AssertionError(f"{COALESCED} rose by {got[0] if got else '?'} while "
                                     f"{self.N} identical GETs waited on a stopped Redis, "
                                     f"not {self.N - 1}") from None

        replies, gets = self.concurrent_gets(key, all_joined)
        self.assertEqual(replies, [b"shared value"] * self.N)
        self.assertEqual(gets, 1, f"Redis executed {gets} GETs for {self.N} coalesced ones")
        self.assertEqual(self.m(COALESCED, pattern=P_COAL) - coalesced0, self.N - 1)
        # Coalescing is not caching: the next GET goes to Redis again.
        d = self.resetstat()
        self.assertEqual(self.kg().call("GET", key), b"shared value")
        self.assertEqual(commandstat_calls(d, "get"), 1)

    def test_no_coalescing_without_flag(self):
        key = uncoal_key("acme", "u1")
        self.assertEqual(self.direct().call("SET", key, "own value"), "OK")
        coalesced0 = self.m(COALESCED)
        need = self.N * len(h.encode_command("GET", key))

        def all_forwarded() -> None:
            # Every GET is waiting in Redis' receive queue (Redis is stopped).
            h.wait_until(lambda: redis_rx_bytes(self.redis.port) >= need, h.scaled(3),
                         message=f"{self.N} GETs queued at the stopped Redis")

        replies, gets = self.concurrent_gets(key, all_forwarded)
        self.assertEqual(replies, [b"own value"] * self.N)
        self.assertEqual(gets, self.N, "GETs of a pattern without coalesce were merged")
        self.assertEqual(self.m(COALESCED), coalesced0)

    # -- 5. a paused Redis with a fail-open endpoint
    def test_paused_redis_near_cached_keys_served(self):
        c = self.kg()
        cached = near_key("acme", "paused", 1)
        uncached = near_key("acme", "paused-not-cached", 1)
        other = plain_key("acme", "paused")
        self.set_via_keygate(c, cached, "cached value")
        self.set_via_keygate(c, uncached, "not cached")
        self.set_via_keygate(c, other, "other value")
        self.cache(c, cached, b"cached value")
        # The tracking connection is up (an earlier test's pause may have had it reconnect,
        # which flushes the near cache): cache again after it is, then nothing drops the entry.
        node = f"{h.HOST}:{self.redis.port}"
        h.wait_until(lambda: self.m(TRACKING, node=node) == 1, h.scaled(5),
                     message=f"{TRACKING}{{node={node!r}}} == 1")
        self.cache(c, cached, b"cached value")
        fast = OPEN_MS / 1000.0 / 2
        with self.paused():
            for _ in range(5):
                t0 = time.monotonic()
                reply = c.call_raw("GET", cached)
                took = time.monotonic() - t0
                self.assertEqual(reply, b"$12\r\ncached value\r\n",
                                 "near-cached key with Redis stopped")
                self.assertLess(took, fast, f"near-cached GET took {took * 1000:.0f} ms with "
                                            f"Redis stopped (budget {OPEN_MS} ms)")
            for key in (other, uncached):
                t0 = time.monotonic()
                reply = c.call_raw("GET", key)
                took = time.monotonic() - t0
                self.assertEqual(reply, b"$-1\r\n", f"fail-open GET {key} with Redis stopped")
                self.assertGreaterEqual(took, OPEN_MS / 1000.0 - EPS,
                                        f"GET {key}: fail-open nil before the budget")
                self.assertLessEqual(took, OPEN_MS / 1000.0 + MARGIN,
                                     f"GET {key}: fail-open nil after {took * 1000:.0f} ms, "
                                     f"budget {OPEN_MS} ms + {MARGIN * 1000:.0f} ms")
            # Still served, after the fail-open replies.
            t0 = time.monotonic()
            self.assertEqual(c.call("GET", cached), b"cached value")
            self.assertLess(time.monotonic() - t0, fast)
        # Redis back: the other keys are served again.
        h.wait_until(lambda: c.call("GET", other) == b"other value", h.scaled(10),
                     message="GET of the other key after SIGCONT")


if __name__ == "__main__":
    h.main()
