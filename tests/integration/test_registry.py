#!/usr/bin/python3
"""The key registry (issue 4) enforced by keygate on every request, against real Redis, in
standalone mode (one redis-server) and in cluster mode (a real 3-master cluster); every effect is
proved by reading Redis directly, never through keygate.

A small registry written by the test (not the example): a TTL-bound cache (default 300s + up to
30s jitter, max 600s, clamp), a 1 KiB size-limited pattern, a lock (missing: reject, tooLong:
reject), a pattern in `mode: audit`, an authority pattern without a TTL (not TTL-bound), a
tenant-scoped canonical pattern with a rewrite from a legacy shape, and a pub/sub channel. keygate
runs with `tenant: acme`, an admin address (for /metrics) and `registry:` in its config (relative
to the config file in standalone mode, absolute in cluster mode).

Checks: injected TTLs (SET ... PX and hidden PEXPIRE NX behind HSET/LPUSH/SADD/INCR/MSET) within
[default, default + jitter] and actually jittered, no hidden reply ever reaching the client;
clamping, TTLTOOLONG, TTLREQUIRED, TTLPERSIST, VALUETOOLARGE, KEYUNKNOWN (nothing reaches Redis:
INFO commandstats), audit mode forwarding and counting (pattern override and global `mode:
audit`), rewrites onto the canonical key with the connection's tenant, CROSSTENANT, DENIED
commands, MULTI/EXEC (EXEC reply holds only the client's results, TTL set after; a refusal aborts
with EXECABORT), channels (CHANNELUNKNOWN, delivery through keygate), `keygate check` output and
exit codes, and startup with an invalid registry (exit 2, errors printed). Also: hidden commands
on RESP3 and dedicated (WATCH) connections, RESTORE's TTL, and that PSUBSCRIBE on a tenant-bound
connection does not deliver another tenant's channel.
"""

import os
import re
import shutil
import tempfile
import time
import unittest
from typing import Dict, List, Tuple

import cluster_harness as ch
import keygate_harness as h

# --------------------------------------------------------------------------------------------
# The test registry
# --------------------------------------------------------------------------------------------

CACHE_DEFAULT_MS = 300_000
CACHE_JITTER_MS = 30_000
CACHE_MAX_MS = 600_000
OFFERING_DEFAULT_MS = 120_000
OFFERING_JITTER_MS = 15_000
AUDIT_DEFAULT_MS = 60_000
SMALL_LIMIT = 1024
TENANT = "acme"
CHANNEL = "cpq:{tenant-acme}:invalidate:catalog"
CACHE_PATTERN = "cache:item:<id>"

REGISTRY_BODY = """\
defaults:
  maxValueBytes: 64KiB
patterns:
  - pattern: "cache:item:<id>"
    owner: integration-tests
    purpose: a TTL-bound cache
    authority: false
    ttl: {default: 300s, jitter: 30s, max: 600s}
  - pattern: "blob:<id>"
    owner: integration-tests
    purpose: values of at most 1 KiB
    authority: false
    maxValueBytes: 1KiB
    ttl: {default: 60s, max: 120s}
  - pattern: "lock:<id>"
    owner: integration-tests
    purpose: a lock that must carry a short TTL
    authority: true
    ttl: {default: 10s, max: 30s, missing: reject, tooLong: reject}
  - pattern: "audit:<id>"
    owner: integration-tests
    purpose: a new rule rolled out in audit mode
    authority: false
    maxValueBytes: 1KiB
    ttl: {default: 60s, jitter: 10s, max: 120s}
    mode: audit
  - pattern: "truth:<id>"
    owner: integration-tests
    purpose: authority data without a TTL policy (not TTL-bound)
    authority: true
  - pattern: "cpq:{tenant-<tenant>}:offering:<offeringId>:current"
    owner: integration-tests
    purpose: the canonical shape legacy offering keys are rewritten onto
    authority: false
    ttl: {default: 120s, jitter: 15s, max: 300s}
  - pattern: "cpq:{tenant-<tenant>}:invalidate:catalog"
    kind: channel
    owner: integration-tests
    purpose: cache invalidation fanout
    authority: false
    maxValueBytes: 1KiB
rewrites:
  - from: "catalog:offering-<offeringId>"
    to: "cpq:{tenant-<tenant>}:offering:<offeringId>:current"
"""

REGISTRY = "version: 1\nmode: enforce\n" + REGISTRY_BODY
AUDIT_REGISTRY = "version: 1\nmode: audit\n" + REGISTRY_BODY

EXAMPLE_REGISTRY = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "..", "..", "config", "examples",
                                                 "cpq-registry.yaml"))

AUDITED = "keygate_registry_audited_total"
REFUSED = "keygate_registry_refused_total"
# file:line:col: yaml.path: message
ERROR_LINE = re.compile(
    r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): (?P<msg>.+)$")


def reason_metric(admin_port: int, name: str, reason: str) -> float:
    m = h.admin_metrics(admin_port)
    key = (name, (("reason", reason),))
    if key not in m:
        raise AssertionError(f'{name}{{reason="{reason}"}} is not in keygate /metrics')
    return m[key]


def commandstat_calls(conn: h.RespConnection, command: str) -> int:
    info = conn.call("INFO", "commandstats")
    for line in info.decode().splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            fields = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].split(","))
            return int(fields["calls"])
    return 0


def is_error(reply: object, code: str) -> bool:
    return isinstance(reply, h.ErrorReply) and reply.split(" ", 1)[0] == code


def write_file(path: str, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


# --------------------------------------------------------------------------------------------
# The checks, shared by the standalone and the cluster class
# --------------------------------------------------------------------------------------------


class RegistryChecks:
    """Test methods for both modes. A class provides `redis_for(key)` (a direct connection to the
    Redis holding `key`), `all_redis()` (direct connections to every master) and `admin_port`."""

    admin_port = 0

    # -- helpers
    def setUp(self) -> None:
        super().setUp()
        self._conns: Dict[int, h.RespConnection] = {}

    def assert_ok(self, reply: object, what: str) -> None:
        self.assertEqual(reply, "OK", f"{what}: {reply!r}")

    def assert_error(self, reply: object, code: str, what: str) -> None:
        self.assertTrue(is_error(reply, code),
                        f"{what}: expected an error starting {code}, got {reply!r}")

    def pttl(self, key: str) -> int:
        return self.redis_for(key).call("PTTL", key)

    def exists_anywhere(self, key: str) -> bool:
        return any(c.call("EXISTS", key) == 1 for c in self.all_redis())

    def assert_absent(self, key: str, what: str) -> None:
        self.assertFalse(self.exists_anywhere(key), f"{what}: {key!r} is in Redis")

    def sum_commandstat(self, command: str) -> int:
        return sum(commandstat_calls(c, command) for c in self.all_redis())

    def wait_pttl_set(self, key: str) -> int:
        """PTTL read directly, waiting (bounded) while it is -1: a hidden PEXPIRE is sent behind
        the client's command, so its reply may reach the client first."""
        got: List[int] = []

        def has_ttl() -> bool:
            got[:] = [self.pttl(key)]
            return got[0] != -1

        try:
            h.wait_until(has_ttl, h.scaled(3), message=f"a TTL on {key!r}")
        except AssertionError:
            raise AssertionError(f"{key!r}: PTTL read directly stayed {got[0] if got else '?'} "
                                 f"(no TTL injected)") from None
        return got[0]

    def assert_ttl_within(self, key: str, low_ms: int, high_ms: int, sent_at: float,
                          hidden: bool = False) -> int:
        ttl = self.wait_pttl_set(key) if hidden else self.pttl(key)
        elapsed_ms = int((time.monotonic() - sent_at) * 1000) + 2
        self.assertGreaterEqual(ttl, low_ms - elapsed_ms,
                                f"{key!r}: PTTL {ttl} below {low_ms} ms (minus {elapsed_ms} ms "
                                f"elapsed)")
        self.assertLessEqual(ttl, high_ms, f"{key!r}: PTTL {ttl} above {high_ms} ms")
        return ttl

    def assert_clean_socket(self, c: h.RespConnection) -> None:
        """No reply left over (a hidden command's reply would answer this PING)."""
        self.assertEqual(c.call("PING"), "PONG", "an extra reply was left on the connection")
        self.assertEqual(c.buffered(), b"", "bytes left on the connection after PING")

    def audited(self, reason: str) -> float:
        return reason_metric(self.admin_port, AUDITED, reason)

    def refused(self, reason: str) -> float:
        return reason_metric(self.admin_port, REFUSED, reason)

    def keys_on_every_redis(self, prefix: str, per_redis: int = 1) -> List[str]:
        """Keys `prefix<i>` covering every master (standalone: the first `per_redis`)."""
        return [f"{prefix}{i}" for i in range(per_redis)]

    # -- TTL injection
    def test_set_injects_jittered_ttl(self):
        c = self.kg()
        keys = [f"cache:item:set-{i}" for i in range(50)]
        t0 = time.monotonic()
        c.send_many([("SET", k, f"v{i}") for i, k in enumerate(keys)])
        replies = [c.read() for _ in keys]
        self.assertEqual(replies, ["OK"] * len(keys))
        ttls = [self.assert_ttl_within(k, CACHE_DEFAULT_MS, CACHE_DEFAULT_MS + CACHE_JITTER_MS,
                                       t0) for k in keys]
        for k in keys[:3]:
            self.assertEqual(self.redis_for(k).call("GET", k), f"v{keys.index(k)}".encode())
        self.assertGreater(len(set(ttls)), 1, f"all 50 injected TTLs equal: {ttls[0]}")
        # 50 uniform draws over 30 s span well over 5 s unless jitter is not applied.
        self.assertGreater(max(ttls) - min(ttls), 5000,
                           f"injected TTLs span only {max(ttls) - min(ttls)} ms: {sorted(ttls)}")
        self.assert_clean_socket(c)

    def test_hidden_expire_behind_key_creating_writes(self):
        c = self.kg()
        mset_keys = self.keys_on_every_redis("cache:item:mset-", 2)
        mset_args = []
        for i, k in enumerate(mset_keys):
            mset_args += [k, f"m{i}"]
        cmds = [("HSET", "cache:item:hash", "f", "v"),
                ("LPUSH", "cache:item:list", "a"),
                ("SADD", "cache:item:set", "a"),
                ("INCR", "cache:item:counter"),
                ("MSET", *mset_args),
                ("PING",)]
        t0 = time.monotonic()
        c.send_many(cmds)
        replies = [c.read() for _ in cmds]
        self.assertEqual(replies, [1, 1, 1, 1, "OK", "PONG"],
                         "the client must see only its own commands' replies, in order")
        self.assert_clean_socket(c)
        created = ["cache:item:hash", "cache:item:list", "cache:item:set", "cache:item:counter",
                   *mset_keys]
        ttls = [self.assert_ttl_within(k, CACHE_DEFAULT_MS, CACHE_DEFAULT_MS + CACHE_JITTER_MS,
                                       t0, hidden=True) for k in created]
        self.assertEqual(self.redis_for("cache:item:counter").call("GET", "cache:item:counter"),
                         b"1")
        # The same, one command at a time (no pipelining to hide a stray reply behind).
        for i in range(20):
            key = f"cache:item:h{i}"
            t1 = time.monotonic()
            self.assertEqual(c.call("HSET", key, "f", str(i)), 1)
            self.assertEqual(c.call("PING"), "PONG", f"after HSET {key}")
            ttls.append(self.assert_ttl_within(
                key, CACHE_DEFAULT_MS, CACHE_DEFAULT_MS + CACHE_JITTER_MS, t1, hidden=True))
        self.assertGreater(max(ttls) - min(ttls), 3000,
                           f"hidden PEXPIRE TTLs are not jittered: {sorted(ttls)}")

    def test_hidden_expire_on_resp3_and_dedicated_connections(self):
        bounds = (CACHE_DEFAULT_MS, CACHE_DEFAULT_MS + CACHE_JITTER_MS)
        # RESP3 shared connection.
        c3 = self.kg()
        hello = c3.call("HELLO", "3")
        self.assertIsInstance(hello, h.Map, f"HELLO 3: {hello!r}")
        t0 = time.monotonic()
        c3.send_many([("HSET", "cache:item:r3", "f", "v"), ("SADD", "cache:item:r3s", "a"),
                      ("PING",)])
        self.assertEqual([c3.read(), c3.read(), c3.read()], [1, 1, "PONG"])
        self.assert_clean_socket(c3)
        for k in ("cache:item:r3", "cache:item:r3s"):
            self.assert_ttl_within(k, *bounds, t0, hidden=True)
        # A client holding a WATCH writes on its dedicated connection (one hash tag: in
        # cluster mode the WATCH pins the slot).
        c = self.kg()
        self.assertEqual(c.call("WATCH", "cache:item:{w}1"), "OK")
        t1 = time.monotonic()
        self.assertEqual(c.call("HSET", "cache:item:{w}2", "f", "v"), 1)
        self.assert_clean_socket(c)
        self.assert_ttl_within("cache:item:{w}2", *bounds, t1, hidden=True)
        self.assertEqual(c.call("MULTI"), "OK")
        self.assertEqual(c.call("LPUSH", "cache:item:{w}3", "a"), "QUEUED")
        self.assertEqual(c.call("EXEC"), [1])
        self.assert_clean_socket(c)
        self.assert_ttl_within("cache:item:{w}3", *bounds, t1, hidden=True)
        # DISCARD drops the queued write and its hidden command alike.
        self.assertEqual(c.call("MULTI"), "OK")
        self.assertEqual(c.call("HSET", "cache:item:d", "f", "v"), "QUEUED")
        self.assertEqual(c.call("DISCARD"), "OK")
        self.assert_clean_socket(c)
        self.assert_absent("cache:item:d", "DISCARD")

    def test_restore_ttl_clamped(self):
        # RESTORE's TTL argument is a TTL a writer sets, like SET EX (docs: ttl.max "the
        # longest TTL a writer may set").
        c = self.kg()
        src = self.redis_for("truth:dump")
        self.assertEqual(src.call("SET", "truth:dump", "v"), "OK")
        payload = src.call("DUMP", "truth:dump")
        t0 = time.monotonic()
        self.assertEqual(c.call("RESTORE", "cache:item:rs0", 0, payload), "OK")
        self.assertEqual(c.call("PING"), "PONG")
        self.assert_ttl_within("cache:item:rs0", CACHE_DEFAULT_MS,
                               CACHE_DEFAULT_MS + CACHE_JITTER_MS, t0, hidden=True)
        r = c.call("RESTORE", "cache:item:rs1", 86_400_000, payload)
        self.assertTrue(r == "OK" or is_error(r, "TTLTOOLONG"), f"RESTORE with 1d TTL: {r!r}")
        if r == "OK":
            self.assert_ttl_within("cache:item:rs1", CACHE_MAX_MS, CACHE_MAX_MS, t0)

    def test_pattern_subscribe_keeps_tenants_apart(self):
        # A connection bound to tenant acme must not receive another tenant's channel, whether
        # keygate refuses PSUBSCRIBE or filters what it delivers.
        sub = self.kg(timeout=5)
        r = sub.call("PSUBSCRIBE", "*")
        if isinstance(r, h.ErrorReply):
            return  # refused: nothing to leak
        self.assertEqual(r, [b"psubscribe", b"*", 1])
        foreign = "cpq:{tenant-globex}:invalidate:catalog"
        for d in self.all_redis():
            d.call("PUBLISH", foreign, "globex-secret")
            d.call("PUBLISH", CHANNEL, "marker")
        got = []
        while sum(1 for m in got if m[-1] == b"marker") < len(self.all_redis()):
            got.append(sub.read())
        leaked = [m for m in got if m[2] == foreign.encode()]
        self.assertEqual(leaked, [], "a connection bound to tenant acme received tenant "
                                     f"globex's channel through PSUBSCRIBE *: {leaked[:1]}")

    def test_hidden_expire_is_nx_and_not_for_untracked_patterns(self):
        c = self.kg()
        self.assertEqual(c.call("HSET", "cache:item:nx", "f", "v"), 1)
        self.wait_pttl_set("cache:item:nx")
        self.assertEqual(c.call("PEXPIRE", "cache:item:nx", 50_000), 1)
        t0 = time.monotonic()
        self.assertEqual(c.call("HSET", "cache:item:nx", "g", "w"), 1)
        self.assertEqual(c.call("PING"), "PONG")
        # A later hidden PEXPIRE ... NX must not replace the TTL the writer chose.
        self.assert_ttl_within("cache:item:nx", 45_000, 50_000, t0)
        time.sleep(0.05)  # give a (wrong) non-NX PEXPIRE time to land before re-reading
        self.assertLessEqual(self.pttl("cache:item:nx"), 50_000)
        # A pattern with no TTL policy gets no TTL.
        self.assertEqual(c.call("HSET", "truth:1", "f", "v"), 1)
        self.assertEqual(c.call("SET", "truth:2", "v"), "OK")
        self.assertEqual(c.call("PING"), "PONG")
        self.assertEqual(self.pttl("truth:1"), -1)
        self.assertEqual(self.pttl("truth:2"), -1)

    def test_ttl_clamped_to_max(self):
        c = self.kg()
        t0 = time.monotonic()
        self.assert_ok(c.call("SET", "cache:item:long", "v", "EX", 86400), "SET EX 86400")
        self.assertEqual(c.call("SET", "cache:item:longpx", "v", "PX", 86_400_000), "OK")
        self.assertEqual(c.call("SETEX", "cache:item:setex", 86400, "v"), "OK")
        self.assertEqual(c.call("SET", "cache:item:exp", "v", "EX", 100), "OK")
        self.assertEqual(c.call("EXPIRE", "cache:item:exp", 86400), 1)
        for k in ("cache:item:long", "cache:item:longpx", "cache:item:setex", "cache:item:exp"):
            self.assert_ttl_within(k, CACHE_MAX_MS, CACHE_MAX_MS, t0)
        # A TTL under max is left alone (not replaced by the default).
        t1 = time.monotonic()
        self.assertEqual(c.call("SET", "cache:item:short", "v", "EX", 100), "OK")
        self.assert_ttl_within("cache:item:short", 100_000, 100_000, t1)

    def test_lock_ttl_rules(self):
        c = self.kg()
        r = c.call("SET", "lock:1", "owner", "EX", 86400)
        self.assert_error(r, "TTLTOOLONG", "SET lock EX 86400")
        self.assertIn("lock:1", r)
        self.assert_absent("lock:1", "TTLTOOLONG")
        r = c.call("SET", "lock:1", "owner")
        self.assert_error(r, "TTLREQUIRED", "SET lock without TTL")
        self.assert_absent("lock:1", "TTLREQUIRED")
        self.assert_error(c.call("HSET", "lock:2", "f", "v"), "TTLREQUIRED", "HSET lock")
        self.assert_absent("lock:2", "TTLREQUIRED (HSET)")
        t0 = time.monotonic()
        self.assertEqual(c.call("SET", "lock:3", "owner", "EX", 20, "NX"), "OK")
        self.assert_ttl_within("lock:3", 20_000, 20_000, t0)
        self.assert_clean_socket(c)

    def test_persist_refused_on_ttl_bound_keys(self):
        c = self.kg()
        self.assertEqual(c.call("SET", "cache:item:p", "v"), "OK")
        r = c.call("PERSIST", "cache:item:p")
        self.assert_error(r, "TTLPERSIST", "PERSIST")
        self.assertGreater(self.pttl("cache:item:p"), 0, "TTL gone after a refused PERSIST")
        self.assert_error(c.call("GETEX", "cache:item:p", "PERSIST"), "TTLPERSIST",
                          "GETEX PERSIST")
        self.assertGreater(self.pttl("cache:item:p"), 0, "TTL gone after GETEX PERSIST")
        # Not TTL-bound: PERSIST is Redis' business.
        self.assertEqual(c.call("SET", "truth:p", "v", "EX", 100), "OK")
        self.assertEqual(c.call("PERSIST", "truth:p"), 1)
        self.assertEqual(self.pttl("truth:p"), -1)

    # -- sizes
    def test_value_too_large(self):
        c = self.kg()
        big = "x" * (SMALL_LIMIT + 1)
        r = c.call("SET", "blob:big", big)
        self.assert_error(r, "VALUETOOLARGE", "SET of 1025 bytes")
        self.assertIn("blob:<id>", r)
        self.assert_absent("blob:big", "VALUETOOLARGE")
        self.assert_error(c.call("HSET", "blob:h", "f", big), "VALUETOOLARGE", "HSET")
        self.assert_absent("blob:h", "VALUETOOLARGE (HSET)")
        keys = self.keys_on_every_redis("blob:m", 1)
        args = []
        for k in keys:
            args += [k, "small"]
        args[-1] = big
        self.assert_error(c.call("MSET", *args), "VALUETOOLARGE", "MSET with one big value")
        for k in keys:
            self.assert_absent(k, "VALUETOOLARGE (MSET: nothing written)")
        exact = "y" * SMALL_LIMIT
        self.assertEqual(c.call("SET", "blob:exact", exact), "OK")
        self.assertEqual(self.redis_for("blob:exact").call("GET", "blob:exact"), exact.encode())
        self.assert_clean_socket(c)

    # -- unknown keys
    def test_unknown_key_never_reaches_redis(self):
        c = self.kg()
        refused0 = self.refused("unknown_key")
        sets0 = self.sum_commandstat("set")
        gets0 = self.sum_commandstat("get")
        r = c.call("SET", "cache:items:42", "v")
        self.assert_error(r, "KEYUNKNOWN", "SET of an unregistered key")
        self.assertIn("cache:items:42", r, "the error names the key")
        self.assertIn(CACHE_PATTERN, r, "the error names the closest pattern")
        self.assert_error(c.call("GET", "nosuch:thing"), "KEYUNKNOWN", "GET unregistered key")
        self.assertEqual(self.sum_commandstat("set"), sets0, "the refused SET reached Redis")
        self.assertEqual(self.sum_commandstat("get"), gets0, "the refused GET reached Redis")
        self.assert_absent("cache:items:42", "KEYUNKNOWN")
        self.assertEqual(self.refused("unknown_key") - refused0, 2)
        self.assert_clean_socket(c)

    # -- audit mode
    def test_audit_pattern_forwards_and_counts(self):
        c = self.kg()
        too_large0 = self.audited("value_too_large")
        too_long0 = self.audited("ttl_too_long")
        big = "z" * (SMALL_LIMIT * 2)
        self.assertEqual(c.call("SET", "audit:big", big, "EX", 60), "OK")
        self.assertEqual(self.redis_for("audit:big").call("STRLEN", "audit:big"), len(big))
        self.assertEqual(self.audited("value_too_large") - too_large0, 1)
        # No TTL injected in audit mode: forwarded unchanged.
        self.assertEqual(c.call("SET", "audit:nottl", "v"), "OK")
        self.assertEqual(self.pttl("audit:nottl"), -1, "audit mode must not inject a TTL")
        # A too-long TTL is not clamped, only counted.
        t0 = time.monotonic()
        self.assertEqual(c.call("SET", "audit:long", "v", "EX", 86400), "OK")
        self.assert_ttl_within("audit:long", 86_400_000, 86_400_000, t0)
        self.assertEqual(self.audited("ttl_too_long") - too_long0, 1)

    # -- rewrites and tenants
    def test_rewrite_lands_on_canonical_key(self):
        c = self.kg()
        legacy = "catalog:offering-o42"
        canonical = f"cpq:{{tenant-{TENANT}}}:offering:o42:current"
        t0 = time.monotonic()
        self.assertEqual(c.call("SET", legacy, "offer"), "OK")
        self.assertEqual(self.redis_for(canonical).call("GET", canonical), b"offer",
                         "the legacy write did not land on the canonical key")
        self.assert_absent(legacy, "rewrite")
        self.assert_ttl_within(canonical, OFFERING_DEFAULT_MS,
                               OFFERING_DEFAULT_MS + OFFERING_JITTER_MS, t0)
        self.assertEqual(c.call("GET", legacy), b"offer", "a legacy read is rewritten too")
        self.assertEqual(c.call("GET", canonical), b"offer")

    def test_cross_tenant_refused(self):
        c = self.kg()
        own = f"cpq:{{tenant-{TENANT}}}:offering:o1:current"
        other = "cpq:{tenant-globex}:offering:o1:current"
        self.assertEqual(c.call("SET", own, "v"), "OK")
        r = c.call("SET", other, "v")
        self.assert_error(r, "CROSSTENANT", "SET of another tenant's key")
        self.assertIn("globex", r)
        self.assert_absent(other, "CROSSTENANT")
        self.assert_error(c.call("GET", other), "CROSSTENANT", "GET of another tenant's key")
        self.assert_error(c.call("PUBLISH", "cpq:{tenant-globex}:invalidate:catalog", "m"),
                          "CROSSTENANT", "PUBLISH to another tenant's channel")

    # -- denied commands
    def test_denied_commands(self):
        c = self.kg()
        keys = self.keys_on_every_redis("cache:item:keep-", 1)
        for k in keys:
            self.assertEqual(c.call("SET", k, "v"), "OK")
        for cmd in (("KEYS", "*"), ("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "maxmemory")):
            self.assert_error(c.call(*cmd), "DENIED", " ".join(cmd))
        for k in keys:
            self.assertEqual(self.redis_for(k).call("EXISTS", k), 1, f"{k} gone after DENIED")
        self.assert_clean_socket(c)

    # -- transactions
    def test_multi_exec_hidden_expire_after_exec(self):
        c = self.kg()
        self.assertEqual(c.call("MULTI"), "OK")
        self.assertEqual(c.call("HSET", "cache:item:tx", "f", "v"), "QUEUED")
        self.assertEqual(c.call("SADD", "cache:item:tx", "a"), "QUEUED")  # WRONGTYPE at EXEC
        self.assertEqual(c.call("HGET", "cache:item:tx", "f"), "QUEUED")
        t0 = time.monotonic()
        r = c.call("EXEC")
        self.assertIsInstance(r, list, f"EXEC: {r!r}")
        self.assertEqual(len(r), 3, f"EXEC reply must hold exactly the 3 queued results: {r!r}")
        self.assertEqual(r[0], 1)
        self.assertTrue(is_error(r[1], "WRONGTYPE"), r)
        self.assertEqual(r[2], b"v")
        self.assert_clean_socket(c)
        self.assert_ttl_within("cache:item:tx", CACHE_DEFAULT_MS,
                               CACHE_DEFAULT_MS + CACHE_JITTER_MS, t0, hidden=True)
        # Works again right after (the hidden command's reply is not taken for the next one).
        self.assertEqual(c.call("HGET", "cache:item:tx", "f"), b"v")

    def test_multi_with_refused_key_aborts(self):
        c = self.kg()
        sets0 = self.sum_commandstat("set")
        self.assertEqual(c.call("MULTI"), "OK")
        self.assertEqual(c.call("SET", "cache:item:txa", "v"), "QUEUED")
        self.assert_error(c.call("SET", "nosuch:tx", "v"), "KEYUNKNOWN", "SET unknown in MULTI")
        r = c.call("EXEC")
        self.assert_error(r, "EXECABORT", "EXEC after a refused command")
        self.assert_absent("cache:item:txa", "EXECABORT")
        self.assert_absent("nosuch:tx", "EXECABORT")
        self.assertEqual(self.sum_commandstat("set"), sets0, "a SET of the aborted MULTI ran")
        self.assert_clean_socket(c)
        # The refused command first in the transaction.
        self.assertEqual(c.call("MULTI"), "OK")
        self.assert_error(c.call("SET", "nosuch:tx", "v"), "KEYUNKNOWN", "first in MULTI")
        self.assertEqual(c.call("SET", "cache:item:txb", "v"), "QUEUED")
        self.assert_error(c.call("EXEC"), "EXECABORT", "EXEC (refusal first)")
        self.assert_absent("cache:item:txb", "EXECABORT (refusal first)")
        # Other refusals abort too.
        self.assertEqual(c.call("MULTI"), "OK")
        self.assert_error(c.call("SET", "blob:txc", "x" * 2000), "VALUETOOLARGE", "in MULTI")
        self.assert_error(c.call("EXEC"), "EXECABORT", "EXEC after VALUETOOLARGE")
        self.assert_clean_socket(c)

    # -- channels
    def test_channels(self):
        sub = self.kg()
        pub = self.kg()
        self.assertEqual(sub.call("SUBSCRIBE", CHANNEL), [b"subscribe", CHANNEL.encode(), 1])
        r = pub.call("PUBLISH", CHANNEL, "flush")
        self.assertIsInstance(r, int, f"PUBLISH to a registered channel: {r!r}")
        self.check_publish_count(r)
        self.assertEqual(sub.read(), [b"message", CHANNEL.encode(), b"flush"])
        self.assert_error(pub.call("PUBLISH", "nosuch:channel", "m"), "CHANNELUNKNOWN",
                          "PUBLISH unregistered")
        self.assert_error(pub.call("SUBSCRIBE", "nosuch:channel"), "CHANNELUNKNOWN",
                          "SUBSCRIBE unregistered")
        # A key pattern is not a channel.
        self.assert_error(pub.call("PUBLISH", "cache:item:1", "m"), "CHANNELUNKNOWN",
                          "PUBLISH to a key pattern")
        self.assertEqual(pub.call("PING"), "PONG")
        self.assertEqual(sub.call("PING"), [b"pong", b""])

    def check_publish_count(self, receivers: int) -> None:
        self.assertEqual(receivers, 1)

    def test_channel_message_size(self):
        # docs/registry.md: a channel's maxValueBytes is "the largest message".
        pub = self.kg()
        r = pub.call("PUBLISH", CHANNEL, "m" * (SMALL_LIMIT + 1))
        self.assert_error(r, "VALUETOOLARGE", "PUBLISH of 1025 bytes to a 1 KiB channel")


def registry_config(admin_port: int, registry_path: str, extra: str = "") -> str:
    return (f"admin: {h.HOST}:{admin_port}\n"
            f"tenant: {TENANT}\n"
            f"registry: {registry_path}\n" + extra)


# --------------------------------------------------------------------------------------------
# Standalone
# --------------------------------------------------------------------------------------------


class StandaloneRegistryTest(RegistryChecks, h.KeygateTestCase):
    """keygate with `registry: registry/registry.yaml` (relative to its config file)."""

    @classmethod
    def setUpClass(cls) -> None:
        # KeygateTestCase.setUpClass, with the registry written into the class workdir before
        # keygate starts (the base class creates the workdir and starts keygate in one go).
        cls.workdir = tempfile.mkdtemp(prefix=f"keygate-it-{cls.__name__}-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.redis = h.RedisServer(cls.workdir)
        cls.addClassCleanup(cls.redis.stop, 10)
        cls.redis.start()
        write_file(os.path.join(cls.workdir, "registry", "registry.yaml"), REGISTRY)
        cls.admin_port = h.free_port()
        cls.keygate_config = registry_config(cls.admin_port, "registry/registry.yaml")
        cls.keygate = h.KeygateProcess(cls.workdir, cls.redis.port, config=cls.keygate_config)
        cls.addClassCleanup(cls._stop_keygate_checked)
        cls.keygate.start()

    def redis_for(self, key: str) -> h.RespConnection:
        if 0 not in self._conns:
            self._conns[0] = self.direct()
        return self._conns[0]

    def all_redis(self) -> List[h.RespConnection]:
        return [self.redis_for("")]

    # -- standalone only: global audit mode, no tenant, --registry
    def test_global_audit_mode_forwards_unknown_keys(self):
        path = write_file(os.path.join(self.workdir, "registry-audit", "registry.yaml"),
                          AUDIT_REGISTRY)
        admin = h.free_port()
        kg = self.start_private_keygate(config=f"admin: {h.HOST}:{admin}\n",
                                        extra_args=["--registry", path])
        with kg.client(timeout=h.scaled(10)) as c:
            before = reason_metric(admin, AUDITED, "unknown_key")
            self.assertEqual(c.call("SET", "nosuch:key", "v"), "OK")
            self.assertEqual(self.redis_for("").call("GET", "nosuch:key"), b"v")
            self.assertEqual(reason_metric(admin, AUDITED, "unknown_key") - before, 1)
            # Other rules are only counted too.
            big0 = reason_metric(admin, AUDITED, "value_too_large")
            self.assertEqual(c.call("SET", "blob:1", "x" * 2000), "OK")
            self.assertEqual(self.redis_for("").call("STRLEN", "blob:1"), 2000)
            self.assertEqual(reason_metric(admin, AUDITED, "value_too_large") - big0, 1)
            self.assertEqual(c.call("SET", "lock:1", "v"), "OK")
            self.assertEqual(self.redis_for("").call("PTTL", "lock:1"), -1)
            # Not bound to a tenant: any tenant's keys are reachable.
            self.assertEqual(c.call("SET", "cpq:{tenant-globex}:offering:o1:current", "v"), "OK")
            self.assertEqual(c.call("PING"), "PONG")

    def test_registry_mode_overrides_the_file_across_reloads(self):
        # An enforcing file run in audit mode by --registry-mode (as ./scripts/run does with the
        # example registry): forwarded and counted, no TTL injected, and still so after a reload.
        path = write_file(os.path.join(self.workdir, "registry-mode", "registry.yaml"), REGISTRY)
        admin = h.free_port()
        kg = self.start_private_keygate(config=f"admin: {h.HOST}:{admin}\nregistry: {path}\n",
                                        extra_args=["--registry-mode", "audit"])
        direct = self.redis_for("")
        with kg.client(timeout=h.scaled(10)) as c:
            unknown0 = reason_metric(admin, AUDITED, "unknown_key")
            refused0 = reason_metric(admin, REFUSED, "unknown_key")
            self.assertEqual(c.call("SET", "mode:a", "b"), "OK")
            self.assertEqual(c.call("GET", "mode:a"), b"b")
            self.assertEqual(direct.call("GET", "mode:a"), b"b")
            self.assertEqual(c.call("SET", "cache:item:mode1", "v"), "OK")
            self.assertEqual(direct.call("PTTL", "cache:item:mode1"), -1,
                             "audit mode must forward the write unchanged")
            self.assertEqual(c.call("SET", "lock:mode1", "v"), "OK", "ttl.missing: reject audited")
            self.assertEqual(reason_metric(admin, AUDITED, "unknown_key") - unknown0, 2)
            self.assertEqual(reason_metric(admin, REFUSED, "unknown_key") - refused0, 0)

            reloads0 = h.metric(h.admin_metrics(admin), "keygate_registry_reloads_total")
            write_file(path, REGISTRY.replace("mode: enforce\n", "mode: enforce\n"
                                              "denyCommands: [RANDOMKEY]\n"))
            deadline = time.monotonic() + h.scaled(10)
            while (h.metric(h.admin_metrics(admin), "keygate_registry_reloads_total") == reloads0
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            self.assertGreater(h.metric(h.admin_metrics(admin), "keygate_registry_reloads_total"),
                               reloads0, "the changed file was not reloaded")
            self.assertEqual(c.call("SET", "mode:after-reload", "v"), "OK",
                             "--registry-mode audit lost on reload")
            denied0 = reason_metric(admin, AUDITED, "denied")
            self.assertFalse(isinstance(c.call("RANDOMKEY"), h.ErrorReply), "RANDOMKEY refused")
            self.assertEqual(reason_metric(admin, AUDITED, "denied") - denied0, 1,
                             "the reloaded file's denyCommands apply, audited")
            self.assertEqual(reason_metric(admin, AUDITED, "unknown_key") - unknown0, 3)

        # The flag wins over the config file's registryMode, in the other direction too.
        admin2 = h.free_port()
        kg2 = self.start_private_keygate(
            config=f"admin: {h.HOST}:{admin2}\nregistry: {path}\nregistryMode: audit\n",
            extra_args=["--registry-mode", "enforce"], name="keygate-registry-mode-enforce")
        with kg2.client(timeout=h.scaled(10)) as c:
            self.assert_error(c.call("SET", "mode:b", "v"), "KEYUNKNOWN", "--registry-mode enforce")
            self.assert_absent("mode:b", "KEYUNKNOWN")

    def test_enforce_without_tenant(self):
        admin = h.free_port()
        kg = self.start_private_keygate(
            config=f"admin: {h.HOST}:{admin}\nregistry: registry/registry.yaml\n")
        with kg.client(timeout=h.scaled(10)) as c:
            for tenant in ("acme", "globex"):
                key = f"cpq:{{tenant-{tenant}}}:offering:o1:current"
                self.assertEqual(c.call("SET", key, tenant), "OK", key)
                self.assertEqual(self.redis_for("").call("GET", key), tenant.encode())
            self.assert_error(c.call("SET", "nosuch:key", "v"), "KEYUNKNOWN", "enforce mode")
            self.assert_absent("nosuch:key", "KEYUNKNOWN")


# --------------------------------------------------------------------------------------------
# Cluster
# --------------------------------------------------------------------------------------------


class ClusterRegistryTest(RegistryChecks, ch.KeygateClusterTestCase):
    """keygate in cluster mode with `registry: /abs/path` in its config, in front of a
    3-master cluster (no replicas: nothing here fails over)."""

    start_keygate = False  # started below, once the registry file is in the workdir
    cluster_replicas_per_master = 0

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # workdir + cluster
        path = write_file(os.path.join(cls.workdir, "registry", "registry.yaml"), REGISTRY)
        cls.admin_port = h.free_port()
        cls.keygate_config = registry_config(cls.admin_port, path)
        cls.keygate = h.KeygateProcess(cls.workdir, None,
                                       config=cls.cluster.keygate_config(cls.keygate_config))
        cls.addClassCleanup(cls._stop_keygate_checked)
        cls.keygate.start()

    def setUp(self) -> None:
        super().setUp()
        self.masters = self.cluster.masters()
        self.assertEqual(len(self.masters), 3)

    def master_for(self, key: str) -> ch.ClusterNodeInfo:
        slot = ch.key_slot(key)
        for m in self.masters:
            if m.owns(slot):
                return m
        raise AssertionError(f"no master owns slot {slot}")

    def redis_for(self, key: str) -> h.RespConnection:
        m = self.master_for(key)
        if m.port not in self._conns:
            self._conns[m.port] = self.node_conn(m)
        return self._conns[m.port]

    def all_redis(self) -> List[h.RespConnection]:
        return [self.redis_for_node(m) for m in self.masters]

    def redis_for_node(self, m: ch.ClusterNodeInfo) -> h.RespConnection:
        if m.port not in self._conns:
            self._conns[m.port] = self.node_conn(m)
        return self._conns[m.port]

    def keys_on_every_redis(self, prefix: str, per_redis: int = 1) -> List[str]:
        want = {m.port: per_redis for m in self.masters}
        keys = []
        for i in range(100000):
            k = f"{prefix}{i}"
            port = self.master_for(k).port
            if want[port] > 0:
                want[port] -= 1
                keys.append(k)
            if not any(want.values()):
                return keys
        raise AssertionError("no keys found for every master")

    def check_publish_count(self, receivers: int) -> None:
        # Cluster PUBLISH counts the receivers on the node it was sent to only.
        self.assertIn(receivers, (0, 1))

    def moved_redirects(self) -> float:
        return h.admin_metrics(self.admin_port).get(
            ("keygate_cluster_redirects_total", (("kind", "moved"),)), 0.0)

    def test_rewrite_routes_by_canonical_slot(self):
        canonical_node = self.master_for(f"cpq:{{tenant-{TENANT}}}:offering:x:current")
        legacy = None
        for i in range(1000):
            k = f"catalog:offering-r{i}"
            if self.master_for(k).port != canonical_node.port:
                legacy = (k, f"r{i}")
                break
        self.assertIsNotNone(legacy)
        moved0 = self.moved_redirects()
        c = self.kg()
        key, oid = legacy
        canonical = f"cpq:{{tenant-{TENANT}}}:offering:{oid}:current"
        self.assertEqual(c.call("SET", key, "v"), "OK")
        self.assertEqual(self.redis_for_node(canonical_node).call("GET", canonical), b"v")
        self.assert_absent(key, "rewrite")
        self.assertEqual(self.moved_redirects(), moved0,
                         "the rewritten request was routed by the legacy key's slot (MOVED)")


# --------------------------------------------------------------------------------------------
# keygate check and startup (no Redis needed beyond a port)
# --------------------------------------------------------------------------------------------

BAD_DURATION = """\
version: 1
patterns:
  - pattern: "cache:item:<id>"
    owner: t
    purpose: p
    authority: false
    ttl: {default: 5 minutes, jitter: 30s}
"""

OVERLAP = """\
version: 1
patterns:
  - pattern: "cache:item:<id>"
    owner: t
    purpose: p
    authority: false
    ttl: {default: 5m, jitter: 30s}
  - pattern: "cache:<kind>:<id:int>"
    owner: t
    purpose: p
    authority: true
"""

BOTH = """\
version: 1
patterns:
  - pattern: "cache:item:<id>"
    owner: t
    purpose: p
    authority: false
    ttl: {default: 5m, jitter: 30s}
  - pattern: "cache:<kind>:<id:int>"
    owner: t
    purpose: p
    authority: true
  - pattern: "other:<id>"
    owner: t
    purpose: p
    authority: false
    ttl: {default: 10 parsecs}
"""


class RegistryCliTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keygate-registry-cli-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name: str, text: str) -> str:
        return write_file(os.path.join(self.dir, name), text)

    def errors_of(self, stderr: str, path: str) -> List[re.Match]:
        out = []
        for line in stderr.splitlines():
            m = ERROR_LINE.match(line)
            if m and m.group("file") == path:
                out.append(m)
        return out

    def position_of(self, text: str, needle: str, occurrence: int = 0) -> Tuple[int, int]:
        """1-based (line, column) of `needle` in `text`."""
        pos = -1
        for _ in range(occurrence + 1):
            pos = text.index(needle, pos + 1)
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        return line, col

    def test_check_example_registry(self):
        res = h.run_keygate_cli(["check", EXAMPLE_REGISTRY])
        out = res.stdout.decode()
        self.assertEqual(res.returncode, 0, f"keygate check of the example: {res.stderr!r}\n{out}")
        with open(EXAMPLE_REGISTRY) as f:
            patterns = re.findall(r'^\s*- pattern: "(.*)"\s*$', f.read(), re.M)
        self.assertGreaterEqual(len(patterns), 10)
        lines = out.splitlines()
        self.assertIn(f"{len(patterns)} patterns", lines[0])
        for p in patterns:
            self.assertIn(p, lines, f"no line for pattern {p!r} in:\n{out}")
            i = lines.index(p)
            block = lines[i + 1:i + 4]
            self.assertTrue(block[0].startswith("  owner "), (p, block))
            self.assertTrue(block[1].startswith("  ttl "), (p, block))
        lock = "cpq:{tenant-<tenant>}:lock:quote-<quoteId>:<operation>"
        i = lines.index(lock)
        self.assertEqual(lines[i + 2], "  ttl 10s, max 30s; missing: reject, too long: reject")
        self.assertIn("cardinality 10000 keys", lines[i + 3])
        self.assertRegex(out, r"total memory budget ")

    def test_check_bad_duration(self):
        path = self.write("bad.yaml", BAD_DURATION)
        res = h.run_keygate_cli(["check", path])
        err = res.stderr.decode()
        self.assertEqual(res.returncode, 1, err)
        errors = self.errors_of(err, path)
        self.assertEqual(len(errors), 1, err)
        line, col = self.position_of(BAD_DURATION, "5 minutes")
        self.assertEqual((int(errors[0]["line"]), int(errors[0]["col"])), (line, col), err)
        self.assertEqual(errors[0]["path"], "patterns[0].ttl.default")

    def test_check_overlapping_patterns(self):
        path = self.write("overlap.yaml", OVERLAP)
        res = h.run_keygate_cli(["check", path])
        err = res.stderr.decode()
        self.assertEqual(res.returncode, 1, err)
        errors = self.errors_of(err, path)
        self.assertEqual(len(errors), 1, err)
        line, _ = self.position_of(OVERLAP, '"cache:<kind>:<id:int>"')
        self.assertEqual(int(errors[0]["line"]), line, err)
        self.assertEqual(errors[0]["path"], "patterns[1].pattern")
        self.assertIn("cache:item:<id>", errors[0]["msg"])

    def test_check_reports_all_errors_at_once(self):
        # Issue 4: "two patterns that can match the same key: every error reported at once".
        path = self.write("both.yaml", BOTH)
        res = h.run_keygate_cli(["check", path])
        err = res.stderr.decode()
        self.assertEqual(res.returncode, 1, err)
        paths = [m["path"] for m in self.errors_of(err, path)]
        self.assertIn("patterns[2].ttl.default", paths, err)
        self.assertIn("patterns[1].pattern", paths,
                      f"the overlap is not reported together with the bad duration:\n{err}")

    def test_startup_with_invalid_registry_exits_2(self):
        bad = self.write("registry/bad.yaml", BAD_DURATION)
        port = h.free_port()
        # Through the config file (relative path) ...
        config = self.write("keygate.yaml", "registry: registry/bad.yaml\n")
        res = h.run_keygate_cli(["--listen", f"{h.HOST}:{port}", "--upstream", f"{h.HOST}:1",
                                 "--config", config])
        err = res.stderr.decode() + res.stdout.decode()
        self.assertEqual(res.returncode, 2, err)
        errors = self.errors_of(err, bad)
        self.assertEqual(len(errors), 1, err)
        self.assertEqual(errors[0]["path"], "patterns[0].ttl.default")
        # ... and through --registry.
        overlap = self.write("overlap.yaml", OVERLAP)
        res = h.run_keygate_cli(["--listen", f"{h.HOST}:{port}", "--upstream", f"{h.HOST}:1",
                                 "--registry", overlap])
        err = res.stderr.decode() + res.stdout.decode()
        self.assertEqual(res.returncode, 2, err)
        self.assertEqual([m["path"] for m in self.errors_of(err, overlap)],
                         ["patterns[1].pattern"], err)
        # A missing file.
        res = h.run_keygate_cli(["--listen", f"{h.HOST}:{port}", "--upstream", f"{h.HOST}:1",
                                 "--registry", os.path.join(self.dir, "missing.yaml")])
        self.assertEqual(res.returncode, 2, res.stderr)
        self.assertIn("missing.yaml", res.stderr.decode())


if __name__ == "__main__":
    h.main()
