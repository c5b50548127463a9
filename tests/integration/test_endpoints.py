#!/usr/bin/python3
"""Endpoint profiles (SPEC.md section 5, docs/endpoints.md): what keygate answers when Redis is
slow or down, against a real redis-server that the test pauses (SIGSTOP; SIGCONT always follows,
also in cleanup) or kills (SIGKILL, then restarted on the same port), and a fake upstream (a
listening socket that accepts and closes every connection, counting them) for the breaker.

Checks:

* The documented table, row by row (docs/endpoints.md "The table", policies::missClasses()):
  representative commands of every command class, under an `open` and a `closed` profile, with
  Redis slow and Redis down, in RESP2 and RESP3 (after HELLO 3). Each reply is compared byte for
  byte, and timed: slow -> at the budget (not before, at most budget + margin), down -> at once.
  With Redis healthy, every fail-open read reply equals what Redis itself answers for a missing
  key, and nothing in the table is refused by the registry (so the failure tests test failures).
* Reply order in a pipeline mixing a local reply (PING), fail-open, fail-closed and late replies;
  late replies are dropped (keygate_upstream_late_replies_total) and never reach a later request;
  fewer than `upstream.timeoutsBeforeReconnect` timeouts in a row keep the upstream connection,
  more close it (keygate_upstream_timeout_closes_total).
* Profile selection: CLIENT SETNAME (exact, prefix, longest prefix, HELLO 3 SETNAME, cleared name)
  over the pattern's profile; the strictest of several patterns' profiles (closed over open, then
  the shorter timeout); defaults.endpoint for keyless commands and patterns naming no profile.
* Breaker: with Redis down, once `consecutiveFailures` failed, requests are answered at once
  without connection attempts (counted by the fake upstream) and counted as breaker rejections;
  traffic resumes once a real Redis is back; with Redis paused, replies come at once (not after
  the budget) while the breaker is open, and Redis gets requests again after `openFor`.
* Retries: an idempotent read whose upstream connection is reset (CLIENT KILL TYPE normal, sent
  directly to Redis while the read is in flight) gets the real value, and
  keygate_endpoint_retries_total grows; writes hit by the same reset are never retried.

Every keygate here runs with `--threads 1`: breakers and counters are per worker thread.
"""

import os
import re
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence, Tuple

import keygate_harness as h
from endpoint_timing import EPS, MARGIN, DeadlineAssertions

# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

# EPS, MARGIN, IMMEDIATE and the deadline assertions: endpoint_timing.py.
# keygate reconnects a failed upstream in the background, backing off from 100 ms, doubling up to
# 2 s (proxy/worker.cpp kFirstBackoff / kMaxBackoff).
MAX_RECONNECT_BACKOFF = 2.0

# --------------------------------------------------------------------------------------------
# The registry: profiles and the patterns that name them
# --------------------------------------------------------------------------------------------

TABLE_MS = 400        # t-open, t-closed: the table
DEFAULT_MS = 300      # dflt: defaults.endpoint
SHORT_MS = 150        # short-open, short-closed: the late-reply pipeline, strictest selection
SEL_EXACT_MS = 200
SEL_PREFIX_MS = 210
SEL_LONG_MS = 220
SEL_OPEN_MS = 230
LONG_MS = 3000        # long-open: a request that must outlive a pause
BRK_MS = 1000         # brk-closed, brk-open
BRK_FAILURES = 3
BRK_OPEN_FOR_MS = 1000
RETRY_MS = 2000       # r-closed, r-open

REGISTRY = f"""\
version: 1
mode: enforce
defaults:
  endpoint: dflt
endpoints:
  - name: t-open
    timeout: {TABLE_MS}ms
    onFailure: open
    breaker: {{enabled: false}}
    description: the table, fail open
  - name: t-closed
    timeout: {TABLE_MS}ms
    onFailure: closed
    breaker: {{enabled: false}}
  - name: dflt
    timeout: {DEFAULT_MS}ms
    onFailure: closed
    breaker: {{enabled: false}}
  - name: short-open
    timeout: {SHORT_MS}ms
    onFailure: open
    breaker: {{enabled: false}}
  - name: short-closed
    timeout: {SHORT_MS}ms
    onFailure: closed
    breaker: {{enabled: false}}
  - name: long-open
    timeout: {LONG_MS}ms
    onFailure: open
    breaker: {{enabled: false}}
  - name: sel-exact
    clients: ["svc/exact"]
    timeout: {SEL_EXACT_MS}ms
    onFailure: closed
    breaker: {{enabled: false}}
  - name: sel-prefix
    clients: ["svc/*"]
    timeout: {SEL_PREFIX_MS}ms
    onFailure: closed
    breaker: {{enabled: false}}
  - name: sel-long
    clients: ["svc/long/*"]
    timeout: {SEL_LONG_MS}ms
    onFailure: closed
    breaker: {{enabled: false}}
  - name: sel-open
    clients: ["viewer/*"]
    timeout: {SEL_OPEN_MS}ms
    onFailure: open
    breaker: {{enabled: false}}
  - name: brk-closed
    timeout: {BRK_MS}ms
    onFailure: closed
    breaker: {{consecutiveFailures: {BRK_FAILURES}, openFor: {BRK_OPEN_FOR_MS}ms}}
  - name: brk-open
    timeout: {BRK_MS}ms
    onFailure: open
    breaker: {{consecutiveFailures: {BRK_FAILURES}, openFor: {BRK_OPEN_FOR_MS}ms}}
  - name: r-closed
    timeout: {RETRY_MS}ms
    onFailure: closed
    retries: {{attempts: 2, backoff: 5ms, jitter: 5ms}}
    breaker: {{enabled: false}}
  - name: r-open
    timeout: {RETRY_MS}ms
    onFailure: open
    retries: {{attempts: 2, backoff: 5ms, jitter: 5ms}}
    breaker: {{enabled: false}}
patterns:
"""
# (pattern, authority, profile or None for a text-only failureBehavior)
PATTERNS = [
    ("o:<id>", False, "t-open"),        # cache keys, the table's open column
    ("c:<id>", False, "t-closed"),      # cache keys, the table's closed column
    ("ol:<id>", True, "t-open"),        # locks (authority: true) under the open profile
    ("cl:<id>", True, "t-closed"),      # locks under the closed profile
    ("os:<id>", False, "short-open"),
    ("cs:<id>", False, "short-closed"),
    ("lo:<id>", False, "long-open"),
    ("plain:<id>", False, None),        # names no profile: defaults.endpoint
    ("b:<id>", False, "brk-closed"),
    ("bo:<id>", False, "brk-open"),
    ("r:<id>", False, "r-closed"),
    ("ro:<id>", False, "r-open"),
]
for _pattern, _authority, _profile in PATTERNS:
    REGISTRY += (f'  - pattern: "{_pattern}"\n'
                 f"    owner: integration-tests\n"
                 f"    purpose: endpoint profile tests\n"
                 f"    authority: {'true' if _authority else 'false'}\n")
    if not _authority:
        REGISTRY += '    ttl: {exempt: "test keys, flushed before every test"}\n'
    if _profile is None:
        REGISTRY += "    failureBehavior: read from the source\n"
    else:
        REGISTRY += f'    failureBehavior: {{endpoint: {_profile}, description: "test"}}\n'

REGISTRY_FILE = "endpoints-registry.yaml"

# --------------------------------------------------------------------------------------------
# The documented table (docs/endpoints.md, policies::missClasses())
# --------------------------------------------------------------------------------------------

NIL = (b"$-1\r\n", b"_\r\n")
EMPTY_STRING = (b"$0\r\n\r\n", b"$0\r\n\r\n")
ZERO = (b":0\r\n", b":0\r\n")
MINUS_TWO = (b":-2\r\n", b":-2\r\n")
EMPTY_ARRAY = (b"*0\r\n", b"*0\r\n")
EMPTY_MAP = (b"*0\r\n", b"%0\r\n")
EMPTY_SET = (b"*0\r\n", b"~0\r\n")
NONE_TYPE = (b"+none\r\n", b"+none\r\n")
EMPTY_SCAN = (b"*2\r\n$1\r\n0\r\n*0\r\n", b"*2\r\n$1\r\n0\r\n*0\r\n")
NULL_ARRAY = (b"*-1\r\n", b"_\r\n")
CLOSED = None  # fails closed under either decision


def nils(n: int) -> Tuple[bytes, bytes]:
    return (b"*%d\r\n" % n + b"$-1\r\n" * n, b"*%d\r\n" % n + b"_\r\n" * n)


def zeros(n: int) -> Tuple[bytes, bytes]:
    return (b"*%d\r\n" % n + b":0\r\n" * n,) * 2


# (class, command with {p} = the cache prefix and {l} = the lock prefix of the column, reply
# under `open` as (RESP2, RESP3) or CLOSED, is a write). Keys never exist: Redis is flushed before
# every test, and the healthy baseline checks the read rows against Redis' own miss replies.
TABLE: List[Tuple[str, Tuple[str, ...], Optional[Tuple[bytes, bytes]], bool]] = [
    ("missing value", ("GET", "{p}:str"), NIL, False),
    ("missing value", ("get", "{p}:str"), NIL, False),  # names are case-insensitive
    ("missing value", ("GETEX", "{p}:str", "EX", "100"), NIL, False),
    ("missing value", ("GETEX", "{l}:lk"), NIL, False),  # like GET, whatever the authority
    ("missing value", ("HGET", "{p}:h", "f"), NIL, False),
    ("missing value", ("LINDEX", "{p}:l", "0"), NIL, False),
    ("missing value", ("ZSCORE", "{p}:z", "m"), NIL, False),
    ("missing value", ("ZRANK", "{p}:z", "m"), NIL, False),
    ("missing value", ("DUMP", "{p}:str"), NIL, False),
    ("missing value", ("LPOS", "{p}:l", "e"), NIL, False),
    ("missing value", ("SRANDMEMBER", "{p}:s"), NIL, False),
    ("substring of a missing string", ("GETRANGE", "{p}:str", "0", "10"), EMPTY_STRING, False),
    ("substring of a missing string", ("LCS", "{p}:a", "{p}:b"), EMPTY_STRING, False),
    ("counts and membership", ("EXISTS", "{p}:a", "{p}:b"), ZERO, False),
    ("counts and membership", ("TOUCH", "{p}:a"), ZERO, False),
    ("counts and membership", ("HEXISTS", "{p}:h", "f"), ZERO, False),
    ("counts and membership", ("SISMEMBER", "{p}:s", "m"), ZERO, False),
    ("counts and membership", ("STRLEN", "{p}:str"), ZERO, False),
    ("counts and membership", ("HLEN", "{p}:h"), ZERO, False),
    ("counts and membership", ("LLEN", "{p}:l"), ZERO, False),
    ("counts and membership", ("SCARD", "{p}:s"), ZERO, False),
    ("counts and membership", ("ZCARD", "{p}:z"), ZERO, False),
    ("counts and membership", ("XLEN", "{p}:x"), ZERO, False),
    ("counts and membership", ("ZCOUNT", "{p}:z", "-inf", "+inf"), ZERO, False),
    ("counts and membership", ("BITCOUNT", "{p}:str"), ZERO, False),
    ("counts and membership", ("GETBIT", "{p}:str", "7"), ZERO, False),
    ("counts and membership", ("PFCOUNT", "{p}:hll"), ZERO, False),
    ("counts and membership", ("LCS", "{p}:a", "{p}:b", "LEN"), ZERO, False),
    ("time to live", ("TTL", "{p}:str"), MINUS_TWO, False),
    ("time to live", ("PTTL", "{p}:str"), MINUS_TWO, False),
    ("time to live", ("EXPIRETIME", "{p}:str"), MINUS_TWO, False),
    ("time to live", ("PEXPIRETIME", "{p}:str"), MINUS_TWO, False),
    ("ranges and lists", ("LRANGE", "{p}:l", "0", "-1"), EMPTY_ARRAY, False),
    ("ranges and lists", ("HKEYS", "{p}:h"), EMPTY_ARRAY, False),
    ("ranges and lists", ("HVALS", "{p}:h"), EMPTY_ARRAY, False),
    ("ranges and lists", ("ZRANGE", "{p}:z", "0", "-1", "WITHSCORES"), EMPTY_ARRAY, False),
    ("ranges and lists", ("ZREVRANGE", "{p}:z", "0", "-1"), EMPTY_ARRAY, False),
    ("ranges and lists", ("ZRANGEBYSCORE", "{p}:z", "-inf", "+inf"), EMPTY_ARRAY, False),
    ("ranges and lists", ("ZRANGEBYLEX", "{p}:z", "-", "+"), EMPTY_ARRAY, False),
    ("ranges and lists", ("XRANGE", "{p}:x", "-", "+"), EMPTY_ARRAY, False),
    ("ranges and lists", ("XREVRANGE", "{p}:x", "+", "-"), EMPTY_ARRAY, False),
    ("ranges and lists", ("SORT_RO", "{p}:l"), EMPTY_ARRAY, False),
    ("ranges and lists", ("LPOS", "{p}:l", "e", "COUNT", "0"), EMPTY_ARRAY, False),
    ("ranges and lists", ("SRANDMEMBER", "{p}:s", "3"), EMPTY_ARRAY, False),
    ("ranges and lists", ("HRANDFIELD", "{p}:h", "2", "WITHVALUES"), EMPTY_ARRAY, False),
    ("whole hash", ("HGETALL", "{p}:h"), EMPTY_MAP, False),
    ("sets", ("SMEMBERS", "{p}:s"), EMPTY_SET, False),
    ("sets", ("SINTER", "{p}:s", "{p}:s2"), EMPTY_SET, False),
    ("sets", ("SUNION", "{p}:s", "{p}:s2"), EMPTY_SET, False),
    ("sets", ("SDIFF", "{p}:s", "{p}:s2"), EMPTY_SET, False),
    ("several values", ("MGET", "{p}:a", "{p}:b", "{p}:c"), nils(3), False),
    ("several values", ("MGET", "{p}:a"), nils(1), False),
    ("several values", ("HMGET", "{p}:h", "f1", "f2"), nils(2), False),
    ("several values", ("ZMSCORE", "{p}:z", "a", "b", "c"), nils(3), False),
    ("several values", ("GEOHASH", "{p}:g", "m1", "m2"), nils(2), False),
    ("several memberships", ("SMISMEMBER", "{p}:s", "a", "b", "c"), zeros(3), False),
    ("several memberships", ("BITFIELD_RO", "{p}:str", "GET", "u8", "0", "GET", "u8", "8"),
     zeros(2), False),
    ("type", ("TYPE", "{p}:str"), NONE_TYPE, False),
    ("scan of a key", ("HSCAN", "{p}:h", "0"), EMPTY_SCAN, False),
    ("scan of a key", ("SSCAN", "{p}:s", "0", "MATCH", "*"), EMPTY_SCAN, False),
    ("scan of a key", ("ZSCAN", "{p}:z", "0", "COUNT", "10"), EMPTY_SCAN, False),
    ("stream read", ("XREAD", "COUNT", "1", "STREAMS", "{p}:x", "0"), NULL_ARRAY, False),
    # Everything else: no miss shape (reads that still fail closed under `open`).
    ("everything else", ("OBJECT", "ENCODING", "{p}:str"), CLOSED, False),
    ("everything else", ("MEMORY", "USAGE", "{p}:str"), CLOSED, False),
    ("everything else", ("BITPOS", "{p}:str", "1"), CLOSED, False),
    ("everything else", ("GEOPOS", "{p}:g", "m"), CLOSED, False),
    ("everything else", ("XINFO", "STREAM", "{p}:x"), CLOSED, False),
    ("everything else", ("LCS", "{p}:a", "{p}:b", "IDX"), CLOSED, False),
    ("everything else", ("EVAL_RO", "return 1", "1", "{p}:a"), CLOSED, False),
    ("everything else", ("LRANGE", "{p}:l", "a", "b"), CLOSED, False),  # malformed
    ("everything else", ("GETEX", "{p}:str", "EX", "0"), CLOSED, False),  # malformed
    ("everything else", ("HSCAN", "{p}:h", "-1"), CLOSED, False),  # malformed cursor
    # Cache writes: SET answers nil ("not set", never OK), on authority: false keys only.
    ("cache writes: SET", ("SET", "{p}:w", "v"), NIL, True),
    ("cache writes: SET", ("SET", "{p}:w", "v", "NX"), NIL, True),
    ("cache writes: SET", ("SET", "{p}:w", "v", "XX"), NIL, True),
    ("cache writes: SET", ("SET", "{p}:w", "v", "XX", "GET"), NIL, True),
    ("cache writes: SET", ("SET", "{p}:w", "v", "EX", "100"), NIL, True),
    ("cache writes: SET", ("SET", "{p}:w", "v", "PX", "100000", "NX"), NIL, True),
    ("cache writes: SET", ("SET", "{l}:lk", "owner-1", "NX", "EX", "10"), CLOSED, True),  # a lock
    ("cache writes: SET", ("SET", "{l}:lk", "v"), CLOSED, True),
    ("cache writes: SET", ("SET", "{p}:w", "v", "NX", "XX"), CLOSED, True),  # malformed
    ("cache writes: conditional", ("SETNX", "{p}:w", "v"), ZERO, True),
    ("cache writes: conditional", ("HSETNX", "{p}:h", "f", "v"), ZERO, True),
    ("cache writes: conditional", ("MSETNX", "{p}:a", "v", "{p}:b", "v"), ZERO, True),
    ("cache writes: conditional", ("EXPIRE", "{p}:w", "100"), ZERO, True),
    ("cache writes: conditional", ("PEXPIRE", "{p}:w", "100000", "NX"), ZERO, True),
    ("cache writes: conditional", ("EXPIREAT", "{p}:w", "4102444800", "GT"), ZERO, True),
    ("cache writes: conditional", ("PEXPIREAT", "{p}:w", "4102444800000"), ZERO, True),
    ("cache writes: conditional", ("SETNX", "{l}:lk", "v"), CLOSED, True),  # a lock
    ("cache writes: conditional", ("EXPIRE", "{l}:lk", "10"), CLOSED, True),
    ("cache writes: conditional", ("EXPIRE", "{p}:w", "10", "NX", "GT"), CLOSED, True),
    ("writes that never fail open", ("DEL", "{p}:w"), CLOSED, True),
    ("writes that never fail open", ("UNLINK", "{p}:w"), CLOSED, True),
    ("writes that never fail open", ("GETDEL", "{p}:w"), CLOSED, True),
    ("writes that never fail open", ("GETSET", "{p}:w", "v"), CLOSED, True),
    ("writes that never fail open", ("SET", "{p}:w", "v", "GET"), CLOSED, True),
    ("writes that never fail open", ("SET", "{p}:w", "v", "NX", "GET"), CLOSED, True),
    ("writes that never fail open", ("SETEX", "{p}:w", "100", "v"), CLOSED, True),
    ("writes that never fail open", ("PSETEX", "{p}:w", "100000", "v"), CLOSED, True),
    ("writes that never fail open", ("MSET", "{p}:a", "v", "{p}:b", "v"), CLOSED, True),
    ("writes that never fail open", ("INCR", "{p}:n"), CLOSED, True),
    ("writes that never fail open", ("INCRBY", "{p}:n", "2"), CLOSED, True),
    ("writes that never fail open", ("DECR", "{p}:n"), CLOSED, True),
    ("writes that never fail open", ("APPEND", "{p}:w", "v"), CLOSED, True),
    ("writes that never fail open", ("HSET", "{p}:h", "f", "v"), CLOSED, True),
    ("writes that never fail open", ("HDEL", "{p}:h", "f"), CLOSED, True),
    ("writes that never fail open", ("HINCRBY", "{p}:h", "f", "1"), CLOSED, True),
    ("writes that never fail open", ("LPUSH", "{p}:l", "e"), CLOSED, True),
    ("writes that never fail open", ("RPUSH", "{p}:l", "e"), CLOSED, True),
    ("writes that never fail open", ("LPOP", "{p}:l"), CLOSED, True),
    ("writes that never fail open", ("SADD", "{p}:s", "m"), CLOSED, True),
    ("writes that never fail open", ("SREM", "{p}:s", "m"), CLOSED, True),
    ("writes that never fail open", ("ZADD", "{p}:z", "1", "m"), CLOSED, True),
    ("writes that never fail open", ("ZREM", "{p}:z", "m"), CLOSED, True),
    ("writes that never fail open", ("XADD", "{p}:x", "*", "f", "v"), CLOSED, True),
    ("writes that never fail open", ("PERSIST", "{p}:w"), CLOSED, True),
]

# The columns: the key prefixes whose patterns name each profile.
COLUMNS = {"open": ("t-open", "o", "ol"), "closed": ("t-closed", "c", "cl")}

# Replies keygate gives instead of forwarding (a registry refusal, a local error): a table
# command answered like this would not be testing failures at all.
KEYGATE_REFUSAL = re.compile(
    rb"^-(KEYUNKNOWN|DENIED|TTL[A-Z]+|VALUETOOLARGE|CROSSTENANT|UNSUPPORTED|TIMEOUT|UNAVAILABLE"
    rb"|ERR unknown command|ERR wrong number)")


def table_command(template: Sequence[str], column: str) -> Tuple[str, ...]:
    _, prefix, lock = COLUMNS[column]
    return tuple(a.replace("{p}", prefix).replace("{l}", lock) for a in template)


def timeout_reply(profile: str, ms: int) -> bytes:
    return (f"-TIMEOUT keygate: endpoint '{profile}': no reply from Redis within {ms}ms\r\n"
            .encode())


def unavailable_pattern(profile: str, port: int) -> "re.Pattern[bytes]":
    # The reason is the socket's ("Connection refused", "Connection reset by peer", "connection
    # closed by Redis"): any, but only one line.
    return re.compile(rb"-UNAVAILABLE keygate: Redis at 127\.0\.0\.1:%d is unavailable "
                      rb"\([^)\r\n]+\); endpoint '%s' fails closed\r\n\Z"
                      % (port, profile.encode()))


def breaker_reply(profile: str, port: int, open_for_ms: int) -> bytes:
    return (f"-UNAVAILABLE keygate: endpoint '{profile}': circuit breaker open for Redis at "
            f"127.0.0.1:{port} after consecutive failures; requests go to Redis again within "
            f"{open_for_ms}ms\r\n").encode()


def log(text: str) -> None:
    sys.stderr.write(f"[timing] {text}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# Processes, sockets, metrics
# --------------------------------------------------------------------------------------------


def redis_rx_queues(redis_port: int) -> Dict[int, int]:
    """Bytes waiting unread in Redis' receive queue, per established client connection (client
    port -> bytes), from /proc/net/tcp (all connections here are IPv4 loopback)."""
    out: Dict[int, int] = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if local_port == redis_port and fields[3] == "01":  # ESTABLISHED
                out[remote_port] = int(fields[4].split(":")[1], 16)
    return out


def start_redis_on_port(workdir: str, name: str, port: int) -> h.RedisServer:
    """A redis-server on a given port (the harness picks free ports; these tests need one that a
    killed Redis or a fake upstream held before)."""
    return h.RedisServer(workdir, name=name).start_on_port(port)


def restart_redis(redis: h.RedisServer) -> None:
    """Starts a stopped RedisServer again with the same command line (same port)."""
    if redis.running():
        return
    state = redis.restart()
    if state != "ok":
        raise AssertionError(f"redis-server did not come back on port {redis.port} ({state}):\n"
                             f"{redis.log_tail()}")


def kill_redis(redis: h.RedisServer) -> None:
    """SIGKILL (by PID): Redis is gone at once, its sockets reset."""
    assert redis.proc is not None
    if redis.proc.poll() is None:
        redis.proc.send_signal(signal.SIGCONT)  # a paused process dies as well, but be explicit
        redis.proc.kill()
    redis.proc.wait(timeout=h.scaled(10))


def resume(proc) -> None:
    """SIGCONT to a process we paused, if it still runs (harmless when it is not stopped)."""
    if proc is not None and proc.poll() is None:
        try:
            proc.send_signal(signal.SIGCONT)
        except ProcessLookupError:
            pass


def collect_replies(pending: List[Tuple[h.RespConnection, float]], deadline: float
                    ) -> List[Tuple[Optional[bytes], float]]:
    """One reply from each connection, read concurrently, each timed when its last byte arrives
    (seconds since its own send time t0), so that a late or missing reply on one connection
    does not delay the reading, or inflate the timing, of the others. A connection with no
    complete reply by `deadline` gives (None, elapsed at the deadline)."""
    results: List[Tuple[Optional[bytes], float]] = [(None, 0.0)] * len(pending)
    sel = selectors.DefaultSelector()
    try:
        for i, (conn, _) in enumerate(pending):
            conn.sock.setblocking(False)
            sel.register(conn.sock, selectors.EVENT_READ, i)
        left = len(pending)
        while left and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
                i = key.data
                conn, t0 = pending[i]
                try:
                    chunk = conn.sock.recv(1 << 16)
                except BlockingIOError:
                    continue
                now = time.monotonic()
                if chunk:
                    conn.buf += chunk
                try:
                    _, end = h.parse_reply(conn.buf, conn.pos)
                except h.Incomplete:
                    if chunk:
                        continue
                    end = None  # closed without a whole reply
                if end is not None:
                    results[i] = (bytes(conn.buf[conn.pos:end]), now - t0)
                    conn.pos = end
                else:
                    results[i] = (None, now - t0)
                sel.unregister(conn.sock)
                left -= 1
        now = time.monotonic()
        for i, (conn, t0) in enumerate(pending):
            if results[i][0] is None and results[i][1] == 0.0:
                results[i] = (None, now - t0)
    finally:
        sel.close()
        for conn, _ in pending:
            try:
                conn.sock.setblocking(True)
                conn.sock.settimeout(h.scaled(10))
            except OSError:
                pass
    return results


class AcceptAndClose:
    """A fake upstream: accepts every connection and closes it at once, counting them. The accept
    loop runs in a thread, polls a stop flag every 50 ms and ends after `lifetime` at the latest."""

    def __init__(self, port: int, lifetime: float = 120.0):
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((h.HOST, port))
        self.sock.listen(128)
        self.sock.settimeout(0.05)
        self._accepts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime
        self._thread = threading.Thread(target=self._run, name=f"fake-upstream-{port}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._accepts += 1
            conn.close()

    @property
    def accepts(self) -> int:
        with self._lock:
            return self._accepts

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------


class EndpointProfilesTest(DeadlineAssertions, h.KeygateTestCase):
    """One Redis and one keygate (the registry above, `--threads 1`,
    `upstream.timeoutsBeforeReconnect: 0` so that the table's hundreds of simultaneous timeouts
    never close the shared upstream connection) for the table and the selection tests; the late-reply, breaker and
    retry tests start keygates (and Redis) of their own."""

    admin_port = 0
    registry_path = ""

    @classmethod
    def setUpClass(cls) -> None:
        # KeygateTestCase.setUpClass, with the registry written into the class workdir first.
        cls.workdir = tempfile.mkdtemp(prefix=f"keygate-it-{cls.__name__}-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.registry_path = os.path.join(cls.workdir, REGISTRY_FILE)
        with open(cls.registry_path, "w") as f:
            f.write(REGISTRY)
        cls.redis = h.RedisServer(cls.workdir)
        cls.addClassCleanup(cls.redis.stop, 10)
        cls.redis.start()
        cls.admin_port = h.free_port()
        cls.keygate = h.KeygateProcess(
            cls.workdir, cls.redis.port, extra_args=["--threads", "1"],
            config=cls.config(cls.admin_port, "upstream:\n  timeoutsBeforeReconnect: 0\n"))
        cls.addClassCleanup(cls._stop_keygate_checked)
        cls.keygate.start()

    @classmethod
    def config(cls, admin_port: int, extra: str = "") -> str:
        return f"admin: {h.HOST}:{admin_port}\nregistry: {cls.registry_path}\n" + extra

    def setUp(self) -> None:
        # A test that failed half-way may have left the class Redis paused or killed.
        resume(self.redis.proc)
        restart_redis(self.redis)
        super().setUp()

    # -- helpers
    @contextmanager
    def paused(self, redis: Optional[h.RedisServer] = None):
        """Redis SIGSTOPped for the body; SIGCONT after it, and in cleanup whatever happens."""
        proc = (redis or self.redis).proc
        self.addCleanup(resume, proc)
        proc.send_signal(signal.SIGSTOP)
        try:
            yield proc
        finally:
            resume(proc)

    def metrics(self, admin: Optional[int] = None) -> Dict[h.MetricKey, float]:
        return h.admin_metrics(admin or self.admin_port)

    def ep(self, m: Dict[h.MetricKey, float], name: str, endpoint: str) -> float:
        v = h.metric(m, name, endpoint=endpoint)
        self.assertIsNotNone(v, f'{name}{{endpoint="{endpoint}"}} is not in keygate /metrics')
        return v

    def plain(self, m: Dict[h.MetricKey, float], name: str) -> float:
        v = h.metric(m, name)
        self.assertIsNotNone(v, f"{name} is not in keygate /metrics")
        return v

    def connect(self, kg: Optional[h.KeygateProcess] = None, resp3: bool = False,
                name: Optional[str] = None) -> h.RespConnection:
        c = (kg or self.keygate).client(timeout=h.scaled(10))
        self.addCleanup(c.close)
        if resp3:
            hello = c.call("HELLO", "3") if name is None else c.call("HELLO", "3", "SETNAME", name)
            self.assertIsInstance(hello, h.Map, f"HELLO 3: {hello!r}")
        elif name is not None:
            self.assertEqual(c.call("CLIENT", "SETNAME", name), "OK")
        return c

    def wait_served(self, key: str, value: bytes, kg: Optional[h.KeygateProcess] = None,
                    resp3: bool = False, timeout: float = 10.0) -> float:
        """Waits (bounded) until GET `key` through keygate returns `value`, on fresh connections
        (a fail-open nil is not the value). Returns the seconds it took."""
        kg = kg or self.keygate
        t0 = time.monotonic()

        def served() -> bool:
            with h.RespConnection(kg.port, timeout=h.scaled(3)) as c:
                if resp3:
                    c.call("HELLO", "3")
                return c.call("GET", key) == value

        h.wait_until(served, h.scaled(timeout), interval=0.01,
                     message=f"GET {key} through keygate to return {value!r}")
        return time.monotonic() - t0

    def send_pipelines(self, batches: List[Tuple[h.RespConnection, List[Tuple[str, ...]]]]
                       ) -> List[List[Tuple[bytes, float]]]:
        """Writes each batch in one write on its connection (all batches first), then reads every
        reply: [(raw bytes, seconds since its batch was sent)]."""
        sent = []
        for conn, commands in batches:
            sent.append(time.monotonic())
            conn.send_many(commands)
        out = []
        for (conn, commands), t0 in zip(batches, sent):
            replies = []
            for _ in commands:
                raw = conn.read_raw()
                replies.append((raw, time.monotonic() - t0))
            out.append(replies)
        return out

    # ----------------------------------------------------------------------------------------
    # 1. The table, row by row
    # ----------------------------------------------------------------------------------------

    def table_commands(self, column: str, writes: Optional[bool] = None) -> List[tuple]:
        return [(row, table_command(cmd, column), reply, write) for row, cmd, reply, write in TABLE
                if writes is None or write == writes]

    def test_table_baseline_matches_redis_miss(self):
        """Redis healthy, every key missing: each read row's fail-open reply is exactly what
        Redis answers for a missing key (RESP2 and RESP3), and nothing in the table is refused
        by keygate itself (registry, command table), so the failure tests below test failures."""
        for resp3 in (False, True):
            proto = "RESP3" if resp3 else "RESP2"
            for column in COLUMNS:
                for writes in (False, True):
                    self.redis.flushall()
                    c = self.connect(resp3=resp3)
                    rows = self.table_commands(column, writes)
                    [replies] = self.send_pipelines([(c, [cmd for _, cmd, _, _ in rows])])
                    for (row, cmd, expected, write), (raw, _) in zip(rows, replies):
                        with self.subTest(proto=proto, column=column, row=row, command=cmd):
                            self.assertIsNone(KEYGATE_REFUSAL.match(raw),
                                              f"{cmd} with Redis healthy: {raw!r}")
                            if expected is not None and not write:
                                self.assertEqual(raw, expected[1 if resp3 else 0],
                                                 f"{cmd}: the fail-open reply of the table is "
                                                 f"not Redis' own reply for a missing key")

    def expected_failure(self, column: str, expected: Optional[Tuple[bytes, bytes]], resp3: bool,
                         slow: bool) -> object:
        """Bytes, or a compiled pattern for UNAVAILABLE (its reason text varies)."""
        profile = COLUMNS[column][0]
        if column == "open" and expected is not None:
            return expected[1 if resp3 else 0]
        if slow:
            return timeout_reply(profile, TABLE_MS)
        return unavailable_pattern(profile, self.redis.port)

    def check_reply(self, raw: bytes, want: object, what: str) -> None:
        if isinstance(want, bytes):
            self.assertEqual(raw, want, what)
        else:
            self.assertRegex(raw, want, what)

    def run_table(self, slow: bool) -> None:
        # Every row on a connection of its own, per column and protocol: one reply that never
        # comes fails its own row only, instead of holding back the replies behind it (replies
        # are kept in order). Connections, and keygate's RESP2 and RESP3 upstream connections,
        # are all set up before Redis fails.
        cases = []
        for column in COLUMNS:
            for resp3 in (False, True):
                warm = self.connect(resp3=resp3)
                self.assertEqual(warm.call("GET", table_command(("{p}:warm",), column)[0]), None)
                for row, cmd, expected, _ in TABLE:
                    c = self.connect(resp3=resp3)
                    cases.append((column, resp3, row, table_command(cmd, column), expected, c))
        mode = "slow" if slow else "down"
        # Replies at the deadline come by budget + margin; immediate ones well before that.
        wait_for = TABLE_MS / 1000.0 + MARGIN + 0.05
        def send_all() -> List[Tuple[Optional[bytes], float]]:
            pending = []
            for *_, cmd, _, c in cases:
                pending.append((c, time.monotonic()))
                c.send(*cmd)
            return collect_replies(pending, pending[-1][1] + wait_for)

        if slow:
            with self.paused():
                results = send_all()
        else:
            kill_redis(self.redis)
            try:
                results = send_all()
            finally:
                restart_redis(self.redis)
        answered = [e for raw, e in results if raw is not None]
        log(f"table, Redis {mode}: {len(answered)} of {len(cases)} requests answered, between "
            f"{min(answered, default=0) * 1000:.1f} and {max(answered, default=0) * 1000:.1f} ms "
            f"(budget {TABLE_MS} ms)")
        for (column, resp3, row, cmd, expected, _), (raw, elapsed) in zip(cases, results):
            proto = "RESP3" if resp3 else "RESP2"
            with self.subTest(mode=mode, proto=proto, column=column, row=row, command=cmd):
                what = f"{' '.join(cmd)} ({proto}, {column} profile, Redis {mode})"
                self.assertIsNotNone(raw, f"{what}: no reply within {wait_for * 1000:.0f} ms")
                self.check_reply(raw, self.expected_failure(column, expected, resp3, slow), what)
                if slow:
                    self.assert_at_deadline(elapsed, TABLE_MS, what)
                else:
                    self.assert_immediate(elapsed, what)
        # Redis back (resumed, or restarted on the same port): both upstream protocols serve again.
        with self.redis.client() as d:
            d.call("SET", "o:after", "back")
        took = self.wait_served("o:after", b"back", timeout=15)
        self.wait_served("o:after", b"back", resp3=True, timeout=15)
        log(f"table, Redis {mode}: keygate served again {took * 1000:.0f} ms after Redis was back")

    def test_table_redis_slow(self):
        """Redis paused: every row at the budget, the miss shape under `open`, -TIMEOUT under
        `closed` (and for rows that have no miss shape)."""
        self.run_table(slow=True)

    def test_table_redis_down(self):
        """Redis killed: every row at once, the miss shape under `open`, -UNAVAILABLE under
        `closed` (and for rows that have no miss shape)."""
        self.run_table(slow=False)

    # ----------------------------------------------------------------------------------------
    # 3. Profile selection
    # ----------------------------------------------------------------------------------------

    def test_profile_selection(self):
        """Redis paused, so that each request's answer (and its timing) names its profile."""
        cases = [
            # (what, client name or None, RESP3, command, expected reply, budget ms, profile)
            ("pattern's profile (closed)", None, False, ("GET", "c:k"),
             timeout_reply("t-closed", TABLE_MS), TABLE_MS, "t-closed"),
            ("pattern's profile (open)", None, False, ("GET", "o:k"), NIL[0], TABLE_MS, "t-open"),
            ("exact client name over the pattern's open profile", "svc/exact", False,
             ("GET", "o:k"), timeout_reply("sel-exact", SEL_EXACT_MS), SEL_EXACT_MS, "sel-exact"),
            ("client name by prefix", "svc/other", False, ("GET", "o:k"),
             timeout_reply("sel-prefix", SEL_PREFIX_MS), SEL_PREFIX_MS, "sel-prefix"),
            ("the longest prefix wins", "svc/long/x", False, ("GET", "o:k"),
             timeout_reply("sel-long", SEL_LONG_MS), SEL_LONG_MS, "sel-long"),
            ("client name's open profile over the pattern's closed one", "viewer/a", False,
             ("GET", "c:k"), NIL[0], SEL_OPEN_MS, "sel-open"),
            ("client name over several patterns", "viewer/a", False, ("MGET", "c:k", "cs:k"),
             nils(2)[0], SEL_OPEN_MS, "sel-open"),
            ("HELLO 3 SETNAME", "svc/exact", True, ("GET", "o:k"),
             timeout_reply("sel-exact", SEL_EXACT_MS), SEL_EXACT_MS, "sel-exact"),
            ("a name no profile lists: the pattern's", "nobody/at-all", False, ("GET", "c:k"),
             timeout_reply("t-closed", TABLE_MS), TABLE_MS, "t-closed"),
            ("closed beats open", None, False, ("MGET", "o:k", "c:k"),
             timeout_reply("t-closed", TABLE_MS), TABLE_MS, "t-closed"),
            ("closed beats a shorter open", None, False, ("MGET", "os:k", "c:k"),
             timeout_reply("t-closed", TABLE_MS), TABLE_MS, "t-closed"),
            ("the shorter of two closed", None, False, ("MGET", "c:k", "cs:k"),
             timeout_reply("short-closed", SHORT_MS), SHORT_MS, "short-closed"),
            ("the shorter of two open", None, False, ("MGET", "o:k", "os:k"), nils(2)[0],
             SHORT_MS, "short-open"),
            ("a pattern naming no profile: defaults.endpoint", None, False, ("GET", "plain:k"),
             timeout_reply("dflt", DEFAULT_MS), DEFAULT_MS, "dflt"),
            ("no key at all: defaults.endpoint", None, False, ("DBSIZE",),
             timeout_reply("dflt", DEFAULT_MS), DEFAULT_MS, "dflt"),
        ]
        conns = [self.connect(resp3=resp3, name=name) for _, name, resp3, _, _, _, _ in cases]
        # A name set and then cleared selects nothing.
        cleared = self.connect(name="svc/exact")
        self.assertEqual(cleared.call("CLIENT", "SETNAME", ""), "OK")
        cases.append(("a cleared client name: the pattern's", "", False, ("GET", "o:k"),
                      NIL[0], TABLE_MS, "t-open"))
        conns.append(cleared)
        for c in conns:  # each connection (and keygate's RESP3 upstream) in use before the pause
            self.assertEqual(c.call("GET", "o:warm"), None)
        timings = []
        with self.paused():
            for (what, name, resp3, cmd, want, budget_ms, profile), c in zip(cases, conns):
                before = self.ep(self.metrics(), "keygate_endpoint_requests_total", profile)
                raw, elapsed = self.timed_call(c, *cmd)
                after = self.ep(self.metrics(), "keygate_endpoint_requests_total", profile)
                timings.append(f"{profile} {elapsed * 1000:.0f}ms")
                with self.subTest(case=what, name=name, command=cmd):
                    self.assertEqual(raw, want, f"{what}: {cmd} from client {name!r}")
                    self.assert_at_deadline(elapsed, budget_ms, f"{what}: {cmd}")
                    self.assertEqual(after - before, 1,
                                     f"{what}: keygate_endpoint_requests_total{{endpoint="
                                     f"\"{profile}\"}} grew by {after - before}, not 1")
        log("selection: " + ", ".join(timings))

    # ----------------------------------------------------------------------------------------
    # 2. Order in a pipeline, late replies, timeoutsBeforeReconnect
    # ----------------------------------------------------------------------------------------

    def late_reply_keygate(self) -> Tuple[h.KeygateProcess, int]:
        admin = h.free_port()
        # upstream.timeoutsBeforeReconnect left at its default (5).
        kg = self.start_private_keygate(config=self.config(admin), extra_args=["--threads", "1"])
        return kg, admin

    def test_pipeline_order_and_late_replies(self):
        kg, admin = self.late_reply_keygate()
        d = self.direct()
        for k, v in (("os:k1", "v1"), ("os:k2", "v2"), ("cs:k", "vc"), ("lo:k3", "v3")):
            self.assertEqual(d.call("SET", k, v), "OK")
        c = self.connect(kg)
        self.assertEqual(c.call_raw("GET", "os:k1"), b"$2\r\nv1\r\n")
        m0 = self.metrics(admin)
        pipeline = [("GET", "os:k1"), ("PING",), ("GET", "cs:k"), ("SET", "os:w", "x"),
                    ("GET", "os:k2")]
        expected = [NIL[0], b"+PONG\r\n", timeout_reply("short-closed", SHORT_MS), NIL[0],
                    NIL[0]]
        with self.paused():
            [replies] = self.send_pipelines([(c, pipeline)])
            # A request sent while the late replies are still owed: its own reply, not theirs.
            t0 = time.monotonic()
            c.send("GET", "lo:k3")
        late_get = c.read_raw()
        late_get_elapsed = time.monotonic() - t0
        for cmd, want, (raw, elapsed) in zip(pipeline, expected, replies):
            with self.subTest(command=cmd):
                self.assertEqual(raw, want, f"{cmd} in the pipeline")
                # PING is answered by keygate, but after the GET before it: order is kept.
                self.assert_at_deadline(elapsed, SHORT_MS, f"{cmd} in the pipeline")
        log("pipeline with Redis paused: " + ", ".join(
            f"{cmd[0]} {e * 1000:.0f}ms" for cmd, (_, e) in zip(pipeline, replies)))
        self.assertEqual(late_get, b"$2\r\nv3\r\n",
                         "GET lo:k3 sent after the timed-out pipeline, Redis resumed: not its "
                         "own value (a late reply delivered to a later request?)")
        self.assertLess(late_get_elapsed, LONG_MS / 1000.0, "GET lo:k3 timed out")
        # The same connection keeps working, each reply for its own request.
        for key, value in (("os:k1", b"v1"), ("os:k2", b"v2"), ("cs:k", b"vc")):
            self.assertEqual(c.call_raw("GET", key), b"$2\r\n" + value + b"\r\n", key)
        self.assertEqual(c.call_raw("PING"), b"+PONG\r\n")
        self.assertEqual(c.buffered(), b"", "bytes left over on the client connection")
        m1 = self.metrics(admin)
        late = self.plain(m1, "keygate_upstream_late_replies_total") - \
            self.plain(m0, "keygate_upstream_late_replies_total")
        self.assertEqual(late, 4, "keygate_upstream_late_replies_total: the 4 requests answered "
                                  "at their deadline each got a late reply from Redis")
        # Four timeouts in a row, fewer than timeoutsBeforeReconnect (5): the connection stays.
        for name in ("keygate_upstream_timeout_closes_total", "keygate_upstream_disconnects_total"):
            self.assertEqual(self.plain(m1, name) - self.plain(m0, name), 0, name)
        self.assertEqual(self.ep(m1, "keygate_endpoint_timeouts_total", "short-open") -
                         self.ep(m0, "keygate_endpoint_timeouts_total", "short-open"), 3)
        self.assertEqual(self.ep(m1, "keygate_endpoint_fail_open_total", "short-open") -
                         self.ep(m0, "keygate_endpoint_fail_open_total", "short-open"), 3)
        self.assertEqual(self.ep(m1, "keygate_endpoint_fail_closed_total", "short-closed") -
                         self.ep(m0, "keygate_endpoint_fail_closed_total", "short-closed"), 1)

    def test_timeouts_before_reconnect(self):
        """More than upstream.timeoutsBeforeReconnect (default 5) timeouts in a row close the
        shared upstream connection; keygate reconnects and serves again once Redis answers."""
        kg, admin = self.late_reply_keygate()
        d = self.direct()
        self.assertEqual(d.call("SET", "os:k1", "v1"), "OK")
        c = self.connect(kg)
        self.assertEqual(c.call_raw("GET", "os:k1"), b"$2\r\nv1\r\n")
        m0 = self.metrics(admin)
        with self.paused():
            [replies] = self.send_pipelines([(c, [("GET", f"os:t{i}") for i in range(7)])])
            m1 = self.metrics(admin)
        for i, (raw, elapsed) in enumerate(replies):
            with self.subTest(request=i):
                self.assertEqual(raw, NIL[0])
                self.assertLessEqual(elapsed, SHORT_MS / 1000.0 + MARGIN)
        self.assertEqual(self.plain(m1, "keygate_upstream_timeout_closes_total") -
                         self.plain(m0, "keygate_upstream_timeout_closes_total"), 1,
                         "7 timeouts in a row with timeoutsBeforeReconnect 5: one close")
        took = self.wait_served("os:k1", b"v1", kg=kg)
        log(f"timeoutsBeforeReconnect: served again {took * 1000:.0f} ms after Redis resumed")

    # ----------------------------------------------------------------------------------------
    # 4. Breaker
    # ----------------------------------------------------------------------------------------

    def test_breaker_redis_down_no_network(self):
        port = h.free_port()
        fake = AcceptAndClose(port)
        self.addCleanup(fake.stop)
        admin = h.free_port()
        kg = self.start_private_keygate(config=self.config(admin), extra_args=["--threads", "1"],
                                        upstream_port=port)
        c = self.connect(kg)
        closed_down = unavailable_pattern("brk-closed", port)
        # consecutiveFailures failures, each answered at once (refused / reset, not a timeout).
        for i in range(BRK_FAILURES):
            raw, elapsed = self.timed_call(c, "GET", "b:1")
            self.assertRegex(raw, closed_down, f"failure {i + 1} of brk-closed")
            self.assert_immediate(elapsed, f"failure {i + 1} (Redis down)")
            raw, elapsed = self.timed_call(c, "GET", "bo:1")
            self.assertEqual(raw, NIL[0], f"failure {i + 1} of brk-open")
            self.assert_immediate(elapsed, f"failure {i + 1} (Redis down)")
        m0 = self.metrics(admin)
        for profile in ("brk-closed", "brk-open"):
            self.assertEqual(self.ep(m0, "keygate_endpoint_breaker_opens_total", profile), 1,
                             f"{profile}: breaker opened after {BRK_FAILURES} failures")
            self.assertEqual(self.ep(m0, "keygate_endpoint_breakers_open", profile), 1, profile)
        # N requests while the breaker is open.
        n = 200
        accepts0 = fake.accepts
        commands = [("GET", f"b:{i}") if i % 2 == 0 else ("GET", f"bo:{i}") for i in range(n)]
        [replies] = self.send_pipelines([(c, commands)])
        accepts1 = fake.accepts
        m1 = self.metrics(admin)
        burst = max(e for _, e in replies)
        log(f"breaker, Redis down: {n} requests answered within {burst * 1000:.1f} ms, "
            f"{accepts1 - accepts0} connection attempts meanwhile")
        with self.subTest(check="at once"):
            self.assert_immediate(burst, f"{n} requests with the breaker open")
        with self.subTest(check="no network"):
            # keygate keeps reconnecting in the background (100 ms doubling to 2 s) whatever
            # the breaker does: allow those few attempts; N requests must not add any.
            self.assertLessEqual(accepts1 - accepts0, 3,
                                 f"{n} requests with the breaker open made "
                                 f"{accepts1 - accepts0} connection attempts")
        rejected = {p: self.ep(m1, "keygate_endpoint_breaker_rejected_total", p) -
                    self.ep(m0, "keygate_endpoint_breaker_rejected_total", p)
                    for p in ("brk-closed", "brk-open")}
        failures = {p: self.ep(m1, "keygate_endpoint_failures_total", p) -
                    self.ep(m0, "keygate_endpoint_failures_total", p)
                    for p in ("brk-closed", "brk-open")}
        breaker_closed = breaker_reply("brk-closed", port, BRK_OPEN_FOR_MS)
        closed_replies = [raw for (cmd, (raw, _)) in zip(commands, replies) if cmd[1][:2] == "b:"]
        open_replies = [raw for (cmd, (raw, _)) in zip(commands, replies) if cmd[1][:2] == "bo"]
        with self.subTest(check="fail-open replies"):
            self.assertEqual(set(open_replies), {NIL[0]})
        with self.subTest(check="breaker_rejected metric"):
            # "about N": the breaker half-opens after openFor (1 s); a probe may slip in.
            for profile in rejected:
                self.assertGreaterEqual(rejected[profile], n // 2 - 2,
                                        f"keygate_endpoint_breaker_rejected_total{{endpoint="
                                        f"\"{profile}\"}} grew by {rejected[profile]} for "
                                        f"{n // 2} requests sent while its breaker was open "
                                        f"(failures_total grew by {failures[profile]})")
        with self.subTest(check="breaker reply"):
            answered_by_breaker = sum(1 for raw in closed_replies if raw == breaker_closed)
            self.assertGreaterEqual(answered_by_breaker, n // 2 - 2,
                                    f"only {answered_by_breaker} of {n // 2} brk-closed replies "
                                    f"were the breaker's ({breaker_closed!r}); first: "
                                    f"{closed_replies[0]!r}")
        with self.subTest(check="no failures counted while open"):
            for profile in failures:
                self.assertLessEqual(failures[profile], 2, f"keygate_endpoint_failures_total"
                                                           f"{{endpoint=\"{profile}\"}}")
        # A real Redis on that port: traffic resumes. Bound: the breaker's openFor, plus
        # keygate's reconnect backoff (at most 2 s) that may still be running when Redis comes
        # up, plus the margin.
        fake.stop()
        r = start_redis_on_port(self.workdir, "redis-breaker", port)
        self.addCleanup(r.stop, 10)
        with r.client() as d:
            d.call("SET", "b:1", "back")
            d.call("SET", "bo:1", "back")
        took = self.wait_served("b:1", b"back", kg=kg, timeout=10)
        log(f"breaker: real replies again {took * 1000:.0f} ms after Redis came up "
            f"(openFor {BRK_OPEN_FOR_MS} ms)")
        self.assertLessEqual(took, BRK_OPEN_FOR_MS / 1000.0 + MAX_RECONNECT_BACKOFF + MARGIN)
        self.wait_served("bo:1", b"back", kg=kg, timeout=10)
        h.wait_until(lambda: all(
            self.ep(self.metrics(admin), "keygate_endpoint_breakers_open", p) == 0
            for p in ("brk-closed", "brk-open")), h.scaled(5), message="breakers closed again")

    def test_breaker_redis_paused_answers_at_once(self):
        admin = h.free_port()
        kg = self.start_private_keygate(
            config=self.config(admin, "upstream:\n  timeoutsBeforeReconnect: 0\n"),
            extra_args=["--threads", "1"])
        d = self.direct()
        d.call("SET", "b:1", "v")
        d.call("SET", "bo:1", "v")
        c = self.connect(kg)
        self.assertEqual(c.call_raw("GET", "b:1"), b"$1\r\nv\r\n")
        self.assertEqual(c.call_raw("GET", "bo:1"), b"$1\r\nv\r\n")
        m0 = self.metrics(admin)
        commands = [("GET", "b:1")] * BRK_FAILURES + [("GET", "bo:1")] * BRK_FAILURES
        with self.paused():
            sent_at = time.monotonic()
            [replies] = self.send_pipelines([(c, commands)])
            opened_at = time.monotonic()  # the deadlines (and the breakers' opening) were before
            for cmd, (raw, elapsed) in zip(commands, replies):
                want = timeout_reply("brk-closed", BRK_MS) if cmd[1] == "b:1" else NIL[0]
                self.assertEqual(raw, want, cmd)
                self.assert_at_deadline(elapsed, BRK_MS, f"{cmd} before the breaker opened")
            m1 = self.metrics(admin)
            for profile in ("brk-closed", "brk-open"):
                self.assertEqual(self.ep(m1, "keygate_endpoint_breaker_opens_total", profile) -
                                 self.ep(m0, "keygate_endpoint_breaker_opens_total", profile), 1,
                                 profile)
            # Breaker open: answered at once, not after the budget.
            raw_c, el_c = self.timed_call(c, "GET", "b:1")
            raw_o, el_o = self.timed_call(c, "GET", "bo:1")
            m2 = self.metrics(admin)
        log(f"breaker, Redis paused: {BRK_FAILURES} timeouts at "
            f"{replies[0][1] * 1000:.0f} ms, then {el_c * 1000:.1f} / {el_o * 1000:.1f} ms")
        self.assertEqual(raw_c, breaker_reply("brk-closed", self.redis.port, BRK_OPEN_FOR_MS))
        self.assert_immediate(el_c, "GET b:1 with the breaker open")
        self.assertEqual(raw_o, NIL[0])
        self.assert_immediate(el_o, "GET bo:1 with the breaker open")
        for profile in ("brk-closed", "brk-open"):
            self.assertEqual(self.ep(m2, "keygate_endpoint_breaker_rejected_total", profile) -
                             self.ep(m1, "keygate_endpoint_breaker_rejected_total", profile), 1,
                             profile)
        # Redis answers again (resumed just now): the breaker still answers until openFor has
        # passed, then lets a probe through and closes.
        if time.monotonic() - opened_at < BRK_OPEN_FOR_MS / 1000.0 - 0.2:
            raw, elapsed = self.timed_call(c, "GET", "b:1")
            self.assertEqual(raw, breaker_reply("brk-closed", self.redis.port, BRK_OPEN_FOR_MS),
                             "within openFor the breaker still answers")
        t0 = time.monotonic()
        deadline = t0 + h.scaled(10)
        while True:
            raw = c.call_raw("GET", "b:1")
            if raw == b"$1\r\nv\r\n":
                break
            self.assertEqual(raw, breaker_reply("brk-closed", self.redis.port, BRK_OPEN_FOR_MS))
            self.assertLess(time.monotonic(), deadline, "the breaker never closed again")
            time.sleep(0.005)
        resumed = time.monotonic()
        log(f"breaker: Redis got requests again {(resumed - opened_at) * 1000:.0f} ms after the "
            f"breaker opened (openFor {BRK_OPEN_FOR_MS} ms)")
        # Not before openFor has passed since the breaker opened (at the deadlines, which were
        # at least the budget after sent_at), and not much later.
        self.assertGreaterEqual(resumed - (sent_at + BRK_MS / 1000.0),
                                BRK_OPEN_FOR_MS / 1000.0 - EPS,
                                "Redis got a request before the breaker's openFor had passed")
        self.assertLessEqual(resumed - opened_at, BRK_OPEN_FOR_MS / 1000.0 + MARGIN)
        self.assertEqual(c.call_raw("GET", "bo:1"), b"$1\r\nv\r\n")

    # ----------------------------------------------------------------------------------------
    # 5. Retries
    # ----------------------------------------------------------------------------------------

    def retry_setup(self) -> Tuple[h.RedisServer, h.KeygateProcess, int]:
        # A Redis of its own: CLIENT KILL TYPE normal resets every client connection.
        r = h.RedisServer(self.workdir, name=f"redis-{self._testMethodName}")
        self.addCleanup(r.stop, 10)
        r.start()
        admin = h.free_port()
        kg = self.start_private_keygate(config=self.config(admin), extra_args=["--threads", "1"],
                                        upstream_port=r.port)
        return r, kg, admin

    def reset_while_in_flight(self, r: h.RedisServer, c: h.RespConnection, *command
                              ) -> Tuple[bytes, float]:
        """Sends `command` through keygate while Redis is paused, with a CLIENT KILL TYPE normal
        queued ahead of it on a direct connection; resumes Redis. Redis handles both in one
        event-loop turn, so keygate's request is never answered: its connection is closed (after
        executing it, or before reading it) and keygate sees the reset with the request in
        flight. Both bytes are seen waiting in Redis' receive queues before Redis resumes."""
        killer = r.client(timeout=h.scaled(10))
        self.addCleanup(killer.close)
        killer_port = killer.sock.getsockname()[1]
        with self.paused(r):
            killer.send("CLIENT", "KILL", "TYPE", "normal")
            h.wait_until(lambda: redis_rx_queues(r.port).get(killer_port, 0) > 0, h.scaled(5),
                         interval=0.002, message="CLIENT KILL waiting in Redis' socket")
            t0 = time.monotonic()
            c.send(*command)
            h.wait_until(lambda: any(q > 0 for p, q in redis_rx_queues(r.port).items()
                                     if p != killer_port), h.scaled(5), interval=0.002,
                         message=f"keygate's {command[0]} waiting in Redis' socket")
        raw = c.read_raw()
        return raw, time.monotonic() - t0

    def test_read_retried_after_reset(self):
        r, kg, admin = self.retry_setup()
        with r.client() as d:
            d.call("SET", "r:1", "real")
            d.call("SET", "ro:1", "real-open")
        c = self.connect(kg)
        for key, value, profile in (("r:1", b"real", "r-closed"),
                                    ("ro:1", b"real-open", "r-open")):
            self.assertEqual(c.call("GET", key), value)
            m0 = self.metrics(admin)
            raw, elapsed = self.reset_while_in_flight(r, c, "GET", key)
            m1 = self.metrics(admin)
            log(f"retry: GET {key} after a reset answered in {elapsed * 1000:.1f} ms")
            retries = self.ep(m1, "keygate_endpoint_retries_total", profile) - \
                self.ep(m0, "keygate_endpoint_retries_total", profile)
            disconnects = self.plain(m1, "keygate_upstream_disconnects_total") - \
                self.plain(m0, "keygate_upstream_disconnects_total")
            self.assertGreaterEqual(disconnects, 1, "keygate's upstream connection was not reset")
            self.assertEqual(raw, b"$%d\r\n%s\r\n" % (len(value), value),
                             f"GET {key} ({profile}, retries: 2) hit by a reset")
            self.assertIn(retries, (1, 2), f"keygate_endpoint_retries_total{{endpoint="
                                           f"\"{profile}\"}}")
            self.assertLess(elapsed, RETRY_MS / 1000.0)
            self.assertEqual(self.ep(m1, "keygate_endpoint_failures_total", profile) -
                             self.ep(m0, "keygate_endpoint_failures_total", profile), 0,
                             "the retried read was answered, not failed")

    def test_writes_never_retried(self):
        r, kg, admin = self.retry_setup()
        c = self.connect(kg)
        self.assertEqual(c.call("GET", "r:warm"), None)
        cases = [
            # (command, profile, expected reply: the profile's failure answer)
            (("SET", "r:w", "x"), "r-closed", unavailable_pattern("r-closed", r.port)),
            (("INCR", "r:n"), "r-closed", unavailable_pattern("r-closed", r.port)),
            (("SET", "ro:w", "x"), "r-open", NIL[0]),  # a cache SET under open: nil
            (("INCR", "ro:n"), "r-open", unavailable_pattern("r-open", r.port)),
        ]
        for cmd, profile, want in cases:
            with self.subTest(command=cmd):
                # The upstream connection (re-opened after the previous reset) answers first.
                self.assertEqual(c.call("GET", "r:warm"), None)
                m0 = self.metrics(admin)
                raw, elapsed = self.reset_while_in_flight(r, c, *cmd)
                m1 = self.metrics(admin)
                self.check_reply(raw, want, f"{cmd} hit by a reset ({profile})")
                self.assert_immediate(elapsed, f"{cmd} hit by a reset", limit=h.scaled(0.5))
                self.assertEqual(self.ep(m1, "keygate_endpoint_retries_total", profile) -
                                 self.ep(m0, "keygate_endpoint_retries_total", profile), 0,
                                 f"{cmd}: a write was retried")
                if cmd[0] == "INCR":
                    # Redis may have run it once before the kill; a retry would make it 2.
                    with r.client() as d:
                        self.assertIn(d.call("GET", cmd[1]), (None, b"1"), cmd)


if __name__ == "__main__":
    h.main()
