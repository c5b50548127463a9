#!/usr/bin/python3
"""Endpoint profiles under a flapping Redis: a seeded random property test (issue 5).

The promise checked (docs/endpoints.md): whatever Redis does (stalls, drops keygate's connections,
dies and comes back), keygate never fabricates a success-shaped reply. Every non-error reply is
either what Redis returned or a documented miss-shaped fail-open reply, and only where the
request's profile is `open` and, for writes, only on `authority: false` keys.

Setup: redis-server with `appendonly yes`, `appendfsync always` (a write Redis acknowledged
survives SIGKILL + restart on the same port and dir) and keygate (`--threads 2`, admin port) with
a registry of:

  pc:<id>   cache, authority false, profile cache-open   (40ms, open, 1 retry, breaker 3 / 200ms)
  cc:<id>   cache, authority false, profile cache-closed (60ms, closed, breaker 3 / 200ms)
  ph:<id>   hash cache, authority false, profile cache-open
  lk:<id>   locks, authority true, profile cache-open (open, yet writes must fail closed)
  ctr:<id>  counters, authority true, profile cache-open (INCR must fail closed)
  profile strict: selected by client name `prop/strict` (50ms, closed, ratio breaker / 150ms)

Client threads (raw RESP2 and one RESP3 connection; one named `prop/strict`) send random mixes,
alone and in pipelines: SET of a fresh key with a unique token (EX 600), GET, MGET, EXISTS, TTL,
EXPIRE, DEL of a key written first, DEL of a never-written key, HSET of fresh fields + HGETALL,
INCR of shared counters, SET NX EX of a fresh lock key and of contended lock keys; now and then
a pipeline of 20-40, or one sent on a connection then closed unread. Meanwhile the
main thread (processes must be started from it: the harness' PR_SET_PDEATHSIG is per thread)
flaps Redis by PID: SIGSTOP 20-300 ms then SIGCONT, `CLIENT KILL TYPE normal` sent directly,
SIGKILL then restart on the same port after 50-400 ms, with normal periods between; every round
does each at least once.

Checks per reply (tokens name their key, so a reply meant for another request shows):
  * GET / MGET elements: nil or a token sent to that key. Under a closed decision (cc key, or the
    strict client) nil only if no SET of the key had been acknowledged when the request was sent.
  * EXISTS: at most the keys ever written, at least the acknowledged ones under closed.
  * TTL: -2, or 1 up to the largest TTL a request asked for on that key (SET EX 600, EXPIRE
    700..1200; never -1: every key is written with a TTL); not -2 for an acknowledged key
    under closed.
  * SET (cache): OK, an error, or nil only under open. SET NX of a fresh lock key: OK or an
    error, never nil (authority: true never fails open). Contended lock: at most one OK per key.
  * EXPIRE: 0 / 1 / error, 1 only for a written key, never 0 for an acknowledged key under closed
    or on a lock (authority: true).
  * DEL: 1 only for a written key; never 0 for an acknowledged key deleted once (DEL never fails
    open). INCR: an integer >= 1 or an error. HSET (fresh fields): exactly the field count or an
    error. HGETALL: only written pairs; empty or every acknowledged pair (all of them under
    closed).
  * Any other reply type, any error other than TIMEOUT / UNAVAILABLE / LOADING, a connection
    closed by keygate or no reply within 5 s (x scale) is a failure.
After each round, with Redis stable, directly against Redis: every acknowledged SET / lock / HSET
is there with its token, acknowledged DELs left the key absent, contended locks hold their one
winner, counter replies are distinct and at most the final value (and that at most the INCRs
sent); and keygate serves a SET/GET on each profile again within a bounded time.
Finally the admin /metrics must show fail-open and fail-closed answers, timeouts and failures,
and clients must have seen successes, fail-open nils and both TIMEOUT and UNAVAILABLE, so the test
cannot pass vacuously. A summary line is printed. Seed: KEYGATE_PROPERTY_SEED, else random,
printed at the start and in every failure message; KEYGATE_PROPERTY_ROUNDS (default 4) for a soak.
"""

import collections
import os
import random
import shutil
import signal
import socket
import tempfile
import threading
import time
from typing import Dict, List, Optional, Set, Tuple

import keygate_harness as h

ROUNDS = 4
ROUND_SECONDS = 3.5
CLIENT_THREADS = 5
SET_TTL = 600       # EX of every SET
EXPIRE_MIN, EXPIRE_MAX = 700, 1200
TTL_MAX = 1200      # the patterns' max; nothing may report more
ALLOWED_ERRORS = ("TIMEOUT", "UNAVAILABLE", "LOADING")

REGISTRY = """\
version: 1
defaults:
  endpoint: cache-closed
endpoints:
  - name: cache-open
    timeout: 40ms
    onFailure: open
    retries: {attempts: 1, backoff: 2ms, jitter: 3ms}
    breaker: {consecutiveFailures: 3, openFor: 200ms}
  - name: cache-closed
    timeout: 60ms
    onFailure: closed
    breaker: {consecutiveFailures: 3, openFor: 200ms}
  - name: strict
    clients: ["prop/strict"]
    timeout: 50ms
    onFailure: closed
    breaker: {consecutiveFailures: 0, failureRatio: 0.5, window: 20, minRequests: 5, openFor: 150ms}
patterns:
  - pattern: "pc:<id>"
    owner: integration-tests
    purpose: cache read through, fails open
    authority: false
    ttl: {default: 10m, max: 20m}
    failureBehavior: {endpoint: cache-open, description: read the source}
  - pattern: "cc:<id>"
    owner: integration-tests
    purpose: cache whose callers must know Redis was not asked
    authority: false
    ttl: {default: 10m, max: 20m}
    failureBehavior: {endpoint: cache-closed, description: report the outage}
  - pattern: "ph:<id>"
    owner: integration-tests
    purpose: hash cache, fails open
    authority: false
    ttl: {default: 10m, max: 20m}
    failureBehavior: {endpoint: cache-open, description: read the source}
  - pattern: "lk:<id>"
    owner: integration-tests
    purpose: locks on an open profile; writes must still fail closed
    authority: true
    ttl: {default: 10m, max: 20m, missing: reject}
    failureBehavior: {endpoint: cache-open, description: retry later}
  - pattern: "ctr:<id>"
    owner: integration-tests
    purpose: counters on an open profile; INCR must still fail closed
    authority: true
    ttl: {default: 10m, max: 20m}
    failureBehavior: {endpoint: cache-open, description: retry later}
"""


def error_code(reply: object) -> Optional[str]:
    if isinstance(reply, h.ErrorReply):
        return reply.split(" ", 1)[0]
    return None


def kind_of(reply: object) -> str:
    code = error_code(reply)
    if code is not None:
        return "err:" + code
    if reply is None:
        return "nil"
    if isinstance(reply, h.SimpleString):
        return "status"
    if isinstance(reply, bool):
        return "bool"
    if isinstance(reply, int):
        return "int"
    if isinstance(reply, bytes):
        return "bulk"
    if isinstance(reply, h.Map):
        return "map"
    if isinstance(reply, list):
        return "array"
    return type(reply).__name__


def hash_pairs(reply: object) -> Optional[Set[Tuple[bytes, bytes]]]:
    """HGETALL reply (RESP2 flat array or RESP3 map) -> set of pairs, None if malformed."""
    if isinstance(reply, h.Map):
        pairs = list(reply)
    elif isinstance(reply, list) and len(reply) % 2 == 0:
        pairs = list(zip(reply[0::2], reply[1::2]))
    else:
        return None
    if not all(isinstance(f, bytes) and isinstance(v, bytes) for f, v in pairs):
        return None
    return set(pairs)


class Model:
    """What the clients sent and what keygate acknowledged, shared by all client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempted: Dict[str, Set[bytes]] = collections.defaultdict(set)  # SET sent
        self.acked: Dict[str, bytes] = {}            # SET (or lock SET NX) answered OK
        self.readable: List[str] = []                # string keys with a SET sent
        self.deletable: List[str] = []               # "d" keys acknowledged, not yet DEL'd
        self.del_sent: Set[str] = set()
        self.del_acked: Set[str] = set()             # DEL answered 1
        self.hash_attempted: Dict[str, Set[Tuple[bytes, bytes]]] = collections.defaultdict(set)
        self.hash_acked: Dict[str, Set[Tuple[bytes, bytes]]] = collections.defaultdict(set)
        self.hash_keys: List[str] = []
        self.ttl_asked: Dict[str, int] = {}          # key -> largest TTL a request asked for
        self.incr_sent: Dict[str, int] = collections.Counter()
        self.incr_replies: Dict[str, List[Tuple[int, str]]] = collections.defaultdict(list)
        self.fresh_locks: Dict[str, bytes] = {}      # fresh lock key -> token answered OK
        self.contended_ok: Dict[str, List[bytes]] = collections.defaultdict(list)


class Op:
    __slots__ = ("kind", "argv", "keys", "decision", "acked", "hash_acked", "extra")

    def __init__(self, kind: str, argv: List[str], keys: List[str], decision: str,
                 acked: Optional[Dict[str, bytes]] = None, hash_acked=None, extra=None):
        self.kind = kind
        self.argv = argv
        self.keys = keys
        self.decision = decision
        self.acked = acked or {}
        self.hash_acked = hash_acked
        self.extra = extra


class ClientThread(threading.Thread):
    def __init__(self, test: "EndpointPropertyTest", tid: int, rnd: int, seed: int,
                 model: Model, stop: threading.Event, strict: bool, resp3: bool):
        super().__init__(name=f"client-{tid}", daemon=True)
        self.t = test
        self.tid = tid
        self.rnd = rnd
        self.rng = random.Random(seed)
        self.model = model
        self.stop_event = stop
        self.strict = strict
        self.resp3 = resp3
        self.n = 0
        self.conn: Optional[h.RespConnection] = None
        self.requests = 0
        self.abandoned = 0
        self.replies: Dict[str, int] = collections.Counter()  # "op reply-kind" -> count
        self.violations: List[dict] = []
        self.crash: Optional[str] = None

    # -- names
    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}:r{self.rnd}-t{self.tid}-{self.n}"

    def token(self, key: str) -> str:
        self.n += 1
        return f"{key}|tok-{self.tid}-{self.n}"

    def decision(self, keys: List[str]) -> str:
        if self.strict or any(k.startswith("cc:") for k in keys):
            return "closed"
        return "open"

    # -- connection
    def connect(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = h.RespConnection(self.t.keygate.port, timeout=h.scaled(5))
        if self.resp3:
            hello = self.conn.call("HELLO", "3")
            assert isinstance(hello, h.Map), f"HELLO 3: {hello!r}"
        if self.strict:
            r = self.conn.call("CLIENT", "SETNAME", "prop/strict")
            assert r == "OK", f"CLIENT SETNAME: {r!r}"

    def violation(self, op: Op, reply: object, why: str) -> None:
        self.violations.append({"round": self.rnd, "thread": self.tid, "strict": self.strict,
                                "resp3": self.resp3, "decision": op.decision,
                                "command": " ".join(op.argv), "keys": list(op.keys),
                                "reply": reply, "why": why, "at": time.monotonic()})

    # -- generating operations (model updates that must precede the send happen here)
    def pick_readable(self) -> Optional[str]:
        m = self.model
        with m.lock:
            if not m.readable:
                return None
            return self.rng.choice(m.readable[-400:])

    def pick_read_key(self) -> str:
        r = self.rng.random()
        if r < 0.12:
            return self.fresh(self.rng.choice(["pc", "cc"])) + "-none"
        key = self.pick_readable()
        return key if key is not None else self.fresh("pc") + "-none"

    def snapshot(self, keys: List[str]) -> Dict[str, bytes]:
        m = self.model
        with m.lock:
            return {k: m.acked[k] for k in keys if k in m.acked and k not in m.del_sent}

    def gen(self) -> Op:
        m = self.model
        rng = self.rng
        x = rng.random()
        if x < 0.20:  # SET of a fresh cache key
            prefix = rng.choice(["pc", "pc", "cc"])
            key = self.fresh(prefix) + ("-d" if rng.random() < 0.3 else "")
            tok = self.token(key)
            with m.lock:
                m.attempted[key].add(tok.encode())
                m.ttl_asked[key] = SET_TTL
                m.readable.append(key)
            return Op("set", ["SET", key, tok, "EX", str(SET_TTL)], [key], self.decision([key]),
                      extra=tok.encode())
        if x < 0.36:
            key = self.pick_read_key()
            return Op("get", ["GET", key], [key], self.decision([key]), self.snapshot([key]))
        if x < 0.46:
            keys = [self.pick_read_key() for _ in range(rng.randint(2, 6))]
            return Op("mget", ["MGET", *keys], keys, self.decision(keys), self.snapshot(keys))
        if x < 0.52:
            keys = list(dict.fromkeys(self.pick_read_key() for _ in range(rng.randint(1, 3))))
            return Op("exists", ["EXISTS", *keys], keys, self.decision(keys), self.snapshot(keys))
        if x < 0.57:
            key = self.pick_read_key()
            return Op("ttl", ["TTL", key], [key], self.decision([key]), self.snapshot([key]))
        if x < 0.61:
            key = self.pick_read_key()
            secs = rng.randint(EXPIRE_MIN, EXPIRE_MAX)
            with m.lock:
                if key in m.ttl_asked:
                    m.ttl_asked[key] = max(m.ttl_asked[key], secs)
            return Op("expire", ["EXPIRE", key, str(secs)], [key], self.decision([key]),
                      self.snapshot([key]))
        if x < 0.66:  # DEL of a key written (and acknowledged) first, once
            with m.lock:
                key = None
                if m.deletable:
                    key = m.deletable.pop(rng.randrange(len(m.deletable)))
                    m.del_sent.add(key)
            if key is None or rng.random() < 0.15:
                if key is not None:
                    with m.lock:  # not sent after all: put it back
                        m.del_sent.discard(key)
                        m.deletable.append(key)
                key = self.fresh(rng.choice(["pc", "cc"])) + "-none"
                return Op("del-none", ["DEL", key], [key], self.decision([key]))
            return Op("del", ["DEL", key], [key], self.decision([key]))
        if x < 0.73:  # HSET of fresh fields, to a new or an existing hash
            with m.lock:
                key = rng.choice(m.hash_keys[-100:]) if m.hash_keys and rng.random() < 0.6 \
                    else None
            if key is None:
                key = self.fresh("ph")
                with m.lock:
                    m.hash_keys.append(key)
            nf = rng.randint(1, 3)
            pairs = []
            for _ in range(nf):
                self.n += 1
                f = f"f{self.tid}-{self.n}"
                pairs.append((f.encode(), f"{key}|{f}".encode()))
            with m.lock:
                m.hash_attempted[key].update(pairs)
            argv = ["HSET", key]
            for f, v in pairs:
                argv += [f.decode(), v.decode()]
            return Op("hset", argv, [key], self.decision([key]), extra=pairs)
        if x < 0.79:
            with m.lock:
                key = rng.choice(m.hash_keys[-100:]) if m.hash_keys else None
                snap = set(m.hash_acked.get(key, ())) if key else set()
            if key is None or rng.random() < 0.1:
                key = self.fresh("ph") + "-none"
                snap = set()
            return Op("hgetall", ["HGETALL", key], [key], self.decision([key]), hash_acked=snap)
        if x < 0.87:
            key = f"ctr:r{self.rnd}-{rng.randrange(3)}"
            with m.lock:
                m.incr_sent[key] += 1
            return Op("incr", ["INCR", key], [key], self.decision([key]))
        if x < 0.93:  # a fresh lock: nobody else ever asks for it
            key = self.fresh("lk")
            tok = self.token(key)
            with m.lock:
                m.attempted[key].add(tok.encode())
                m.ttl_asked[key] = SET_TTL
                m.readable.append(key)
            return Op("lock", ["SET", key, tok, "NX", "EX", str(SET_TTL)], [key],
                      self.decision([key]), extra=tok.encode())
        key = f"lk:r{self.rnd}-c{rng.randrange(6)}"  # contended by every thread
        tok = self.token(key)
        with m.lock:
            first = key not in m.attempted
            m.attempted[key].add(tok.encode())
            m.ttl_asked.setdefault(key, SET_TTL)
            if first:
                m.readable.append(key)
        return Op("clock", ["SET", key, tok, "NX", "EX", str(SET_TTL)], [key],
                  self.decision([key]), extra=tok.encode())

    # -- checking
    def check(self, op: Op, reply: object) -> None:
        m = self.model
        kind = kind_of(reply)
        code = error_code(reply)
        self.replies[f"{op.kind} {kind}" + (f"/{op.decision}" if code else "")] += 1
        if code is not None:
            if code not in ALLOWED_ERRORS:
                self.violation(op, reply, f"unexpected error code {code}")
            elif op.decision == "open" and op.kind in ("get", "mget", "exists", "ttl",
                                                          "hgetall"):
                # A read under `open` whose Redis failed (timeout, refused, reset, LOADING,
                # breaker) gets the miss, not an error (docs/endpoints.md).
                self.violation(op, reply, "read under an open profile failed closed")
            return
        getattr(self, "check_" + op.kind.replace("-", "_"))(op, reply)

    def value_ok(self, op: Op, key: str, value: object, what: str) -> None:
        m = self.model
        if value is None:
            if op.decision == "closed" and key in op.acked and key not in m.del_sent:
                self.violation(op, value, f"{what}: nil under a closed decision for {key}, "
                                          f"whose SET of {op.acked[key]!r} was acknowledged")
            return
        if not isinstance(value, bytes):
            self.violation(op, value, f"{what}: not a bulk string")
            return
        with m.lock:
            written = value in m.attempted.get(key, ())
        if not written:
            self.violation(op, value, f"{what}: {value!r} was never written to {key}")

    def check_get(self, op: Op, reply: object) -> None:
        self.value_ok(op, op.keys[0], reply, "GET")

    def check_mget(self, op: Op, reply: object) -> None:
        if not isinstance(reply, list) or isinstance(reply, h.Map) or len(reply) != len(op.keys):
            self.violation(op, reply, f"MGET: not an array of {len(op.keys)}")
            return
        for i, (k, v) in enumerate(zip(op.keys, reply)):
            self.value_ok(op, k, v, f"MGET element {i}")

    def check_exists(self, op: Op, reply: object) -> None:
        m = self.model
        if not isinstance(reply, int) or isinstance(reply, bool):
            self.violation(op, reply, "EXISTS: not an integer")
            return
        with m.lock:
            written = sum(1 for k in op.keys if m.attempted.get(k))
        must = sum(1 for k in op.keys if k in op.acked and k not in m.del_sent)
        if reply < 0 or reply > written:
            self.violation(op, reply, f"EXISTS: {reply}, but only {written} of the keys were "
                                      f"ever written")
        elif op.decision == "closed" and reply < must:
            self.violation(op, reply, f"EXISTS: {reply} under a closed decision, but {must} of "
                                      f"the keys were acknowledged")

    def check_ttl(self, op: Op, reply: object) -> None:
        m = self.model
        key = op.keys[0]
        if not isinstance(reply, int) or isinstance(reply, bool):
            self.violation(op, reply, "TTL: not an integer")
        elif reply == -2:
            if op.decision == "closed" and key in op.acked and key not in m.del_sent:
                self.violation(op, reply, "TTL -2 under a closed decision for an acknowledged "
                                          "key")
        elif not 1 <= reply <= TTL_MAX:
            self.violation(op, reply, f"TTL outside -2 and 1..{TTL_MAX}")
        else:
            with m.lock:
                asked = m.ttl_asked.get(key)
            if asked is None:
                self.violation(op, reply, "TTL of a key never written")
            elif reply > asked:
                self.violation(op, reply, f"TTL above the {asked}s any request asked for")

    def check_expire(self, op: Op, reply: object) -> None:
        m = self.model
        key = op.keys[0]
        if reply not in (0, 1) or isinstance(reply, bool) or not isinstance(reply, int):
            self.violation(op, reply, "EXPIRE: not 0 or 1")
            return
        with m.lock:
            written = bool(m.attempted.get(key))
        if reply == 1 and not written:
            self.violation(op, reply, "EXPIRE 1 on a key never written")
        if reply == 0 and key in op.acked and key not in m.del_sent:
            if op.decision == "closed":
                self.violation(op, reply, "EXPIRE 0 under a closed decision for an "
                                          "acknowledged key")
            elif key.startswith("lk:"):
                self.violation(op, reply, "EXPIRE 0 on an acknowledged lock (authority: true "
                                          "writes never fail open)")

    def check_set(self, op: Op, reply: object) -> None:
        m = self.model
        key = op.keys[0]
        if reply == "OK" and isinstance(reply, h.SimpleString):
            with m.lock:
                m.acked[key] = op.extra
                if key.endswith("-d"):
                    m.deletable.append(key)
        elif reply is None:
            if op.decision == "closed":
                self.violation(op, reply, "SET answered nil (fail-open) under a closed decision")
        else:
            self.violation(op, reply, "SET: neither OK, nil nor an error")

    def check_lock(self, op: Op, reply: object) -> None:
        m = self.model
        if reply == "OK" and isinstance(reply, h.SimpleString):
            with m.lock:
                m.acked[op.keys[0]] = op.extra
                m.fresh_locks[op.keys[0]] = op.extra
        elif reply is None:
            self.violation(op, reply, "SET NX of a fresh lock key answered nil: Redis would "
                                      "have set it, so this is a fabricated 'not acquired' "
                                      "(authority: true never fails open)")
        else:
            self.violation(op, reply, "lock SET NX: neither OK nor an error")

    def check_clock(self, op: Op, reply: object) -> None:
        m = self.model
        if reply == "OK" and isinstance(reply, h.SimpleString):
            with m.lock:
                m.contended_ok[op.keys[0]].append(op.extra)
                if len(m.contended_ok[op.keys[0]]) > 1:
                    self.violation(op, reply, f"second OK for lock {op.keys[0]}: "
                                              f"{m.contended_ok[op.keys[0]]!r}")
        elif reply is not None:
            self.violation(op, reply, "contended SET NX: neither OK, nil nor an error")

    def check_del(self, op: Op, reply: object) -> None:
        m = self.model
        if reply == 1 and isinstance(reply, int) and not isinstance(reply, bool):
            with m.lock:
                m.del_acked.add(op.keys[0])
        elif reply == 0 and isinstance(reply, int) and not isinstance(reply, bool):
            self.violation(op, reply, "DEL 0 of a key whose SET was acknowledged and that was "
                                      "deleted only by this DEL (DEL never fails open)")
        else:
            self.violation(op, reply, "DEL: not 0, 1 or an error")

    def check_del_none(self, op: Op, reply: object) -> None:
        if reply != 0 or not isinstance(reply, int) or isinstance(reply, bool):
            self.violation(op, reply, "DEL of a key never written: not 0")

    def check_hset(self, op: Op, reply: object) -> None:
        m = self.model
        pairs = op.extra
        if isinstance(reply, int) and not isinstance(reply, bool) and reply == len(pairs):
            with m.lock:
                m.hash_acked[op.keys[0]].update(pairs)
        else:
            self.violation(op, reply, f"HSET of {len(pairs)} fresh fields: not {len(pairs)}")

    def check_hgetall(self, op: Op, reply: object) -> None:
        m = self.model
        key = op.keys[0]
        if self.resp3 and reply is not None and not isinstance(reply, h.Map):
            self.violation(op, reply, "HGETALL on RESP3: not a map")
            return
        got = hash_pairs(reply)
        if got is None:
            self.violation(op, reply, "HGETALL: malformed")
            return
        with m.lock:
            written = set(m.hash_attempted.get(key, ()))
        stray = got - written
        if stray:
            self.violation(op, reply, f"HGETALL: pairs never written to {key}: "
                                      f"{sorted(stray)[:3]!r}")
        missing = op.hash_acked - got
        if missing and (got or op.decision == "closed"):
            self.violation(op, reply, f"HGETALL: {len(missing)} acknowledged pairs missing "
                                      f"(e.g. {sorted(missing)[:2]!r})")

    def check_incr(self, op: Op, reply: object) -> None:
        m = self.model
        if isinstance(reply, int) and not isinstance(reply, bool) and reply >= 1:
            with m.lock:
                m.incr_replies[op.keys[0]].append((reply, f"t{self.tid}"))
        else:
            self.violation(op, reply, "INCR: not an integer >= 1 nor an error (authority: "
                                      "true never fails open)")

    # -- the loop
    def run(self) -> None:
        try:
            self.connect()
            while not self.stop_event.is_set():
                x = self.rng.random()
                n = 1 if x < 0.6 else self.rng.randint(2, 8) if x < 0.96 \
                    else self.rng.randint(20, 40)
                ops = [self.gen() for _ in range(n)]
                self.requests += n
                if self.rng.random() < 0.01:
                    # Walk away with the pipeline in flight (its outcome stays unknown: only
                    # what was recorded before sending counts), then come back.
                    try:
                        self.conn.send_many([op.argv for op in ops])
                    except OSError as exc:
                        self.violation(ops[0], f"<{exc!r}>", "keygate closed or reset the "
                                       "client connection (sending)")
                    self.abandoned += n
                    self.connect()
                    continue
                try:
                    self.conn.send_many([op.argv for op in ops])
                    replies = [self.conn.read() for _ in ops]
                except socket.timeout:
                    self.violation(ops[0], "<no reply>", f"no reply within {h.scaled(5):.0f}s "
                                   f"to a pipeline of {n} (first shown): keygate hung")
                    self.connect()
                    continue
                except (ConnectionError, OSError) as exc:
                    self.violation(ops[0], f"<{exc!r}>", "keygate closed or reset the client "
                                   f"connection (pipeline of {n}, first shown)")
                    self.connect()
                    continue
                for op, reply in zip(ops, replies):
                    self.check(op, reply)
                if self.rng.random() < 0.5:
                    time.sleep(self.rng.uniform(0, 0.002))
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            import traceback
            self.crash = f"{exc!r}\n{traceback.format_exc()}"
        finally:
            if self.conn is not None:
                self.conn.close()


class EndpointPropertyTest(h.KeygateTestCase):
    redis_args = ("--appendonly", "yes", "--appendfsync", "always")
    keygate_args = ("--threads", "2")

    @classmethod
    def setUpClass(cls) -> None:
        cls.workdir = tempfile.mkdtemp(prefix=f"keygate-it-{cls.__name__}-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.redis = h.RedisServer(cls.workdir, extra_args=cls.redis_args)
        cls.addClassCleanup(cls.redis.stop, 10)
        cls.addClassCleanup(cls._redis_continue)  # runs before stop: SIGCONT if left stopped
        cls.redis.start()
        with open(os.path.join(cls.workdir, "registry.yaml"), "w") as f:
            f.write(REGISTRY)
        cls.addClassCleanup(cls._stop_keygate_checked)
        for attempt in range(4):
            # The harness retries a taken listen port; a taken admin port is retried here.
            cls.admin_port = h.free_port()
            cls.keygate_config = (f"admin: {h.HOST}:{cls.admin_port}\n"
                                  f"registry: registry.yaml\n")
            cls.keygate = h.KeygateProcess(cls.workdir, cls.redis.port,
                                           config=cls.keygate_config, extra_args=cls.keygate_args)
            try:
                cls.keygate.start()
                return
            except h.StartupError as exc:
                if "admin address" not in str(exc) or attempt == 3:
                    raise

    @classmethod
    def _redis_continue(cls) -> None:
        if cls.redis.running():
            try:
                cls.redis.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass

    # -- Redis flapping (main thread only: PR_SET_PDEATHSIG is tied to the forking thread)
    def redis_up(self) -> bool:
        return h.ping_ok(self.redis.port, timeout=0.5)

    def restart_redis(self) -> None:
        """Starts redis-server again with the same arguments (port, dir, AOF)."""
        state = self.redis.restart(retry_until=time.monotonic() + h.scaled(20))
        if state != "ok":
            raise AssertionError(f"redis-server did not come back on port {self.redis.port} "
                                 f"({state})\n{self.redis.log_tail(60)}")

    def ensure_redis(self) -> None:
        """Redis running, continued, answering PONG (dataset loaded)."""
        self._redis_continue()
        if not self.redis.running():
            self.restart_redis()
        h.wait_until(self.redis_up, h.scaled(20), message="Redis answering PING")

    def flap(self, rng: random.Random, seconds: float, flaps: Dict[str, int],
             log: List[str]) -> None:
        t0 = time.monotonic()
        deadline = t0 + seconds
        forced = ["stop", "kill-clients", "sigkill"]
        rng.shuffle(forced)
        while time.monotonic() < deadline or forced:
            time.sleep(rng.uniform(0.1, 0.45))  # normal operation
            kind = forced.pop() if forced else rng.choice(
                ["stop", "stop", "kill-clients", "sigkill", "normal"])
            at = time.monotonic() - t0
            if kind == "stop":
                pause = rng.uniform(0.02, 0.3)
                self.redis.proc.send_signal(signal.SIGSTOP)
                try:
                    time.sleep(pause)
                finally:
                    self.redis.proc.send_signal(signal.SIGCONT)
                log.append(f"{at:.2f}s SIGSTOP {pause * 1000:.0f}ms")
            elif kind == "kill-clients":
                with self.redis.client(timeout=h.scaled(5)) as c:
                    killed = c.call("CLIENT", "KILL", "TYPE", "normal")
                log.append(f"{at:.2f}s CLIENT KILL TYPE normal -> {killed!r}")
            elif kind == "sigkill":
                down = rng.uniform(0.05, 0.4)
                old = self.redis.pid
                self.redis.proc.send_signal(signal.SIGKILL)
                self.redis.proc.wait(timeout=10)
                time.sleep(down)
                t1 = time.monotonic()
                self.restart_redis()
                log.append(f"{at:.2f}s SIGKILL pid {old}, down {down * 1000:.0f}ms, back "
                           f"(pid {self.redis.pid}) after {time.monotonic() - t1:.2f}s more")
            else:
                log.append(f"{at:.2f}s normal")
            flaps[kind] += 1

    # -- checks directly against Redis once it is stable
    def final_checks(self, model: Model, rnd: int, notes: List[str]) -> List[str]:
        """Problems found directly in Redis; `notes` gets what is outside this test's promise."""
        bad: List[str] = []
        with self.redis.client(timeout=h.scaled(10)) as r:
            for key, tok in sorted(model.acked.items()):
                if key.startswith("lk:") and key not in model.fresh_locks:
                    continue  # contended locks: below
                if key in model.del_sent:
                    if key in model.del_acked and r.call("EXISTS", key) != 0:
                        bad.append(f"{key}: DEL answered 1, but the key is in Redis: "
                                   f"{r.call('GET', key)!r}")
                    continue
                got = r.call("GET", key)
                if got != tok:
                    bad.append(f"{key}: SET of {tok!r} was answered OK, Redis has {got!r}")
                    continue
                ttl = r.call("TTL", key)
                if not 1 <= ttl <= model.ttl_asked.get(key, TTL_MAX):
                    bad.append(f"{key}: TTL {ttl} in Redis (asked for at most "
                               f"{model.ttl_asked.get(key)})")
            for key, oks in sorted(model.contended_ok.items()):
                got = r.call("GET", key)
                if len(oks) > 1:
                    bad.append(f"{key}: {len(oks)} clients were told they hold the lock: {oks!r}; "
                               f"Redis has {got!r}")
                elif oks and got != oks[0]:
                    bad.append(f"{key}: lock SET NX of {oks[0]!r} answered OK, Redis has {got!r}")
                if got is not None and got not in model.attempted[key]:
                    bad.append(f"{key}: Redis holds {got!r}, never sent")
            for key, pairs in sorted(model.hash_acked.items()):
                got = hash_pairs(r.call("HGETALL", key)) or set()
                missing = pairs - got
                if missing:
                    bad.append(f"{key}: {len(missing)} acknowledged HSET pairs not in Redis "
                               f"(e.g. {sorted(missing)[:2]!r})")
                if pairs and r.call("TTL", key) == -1:
                    notes.append(f"{key}: hash on a TTL-bound pattern has no TTL in Redis "
                                 f"(the hidden EXPIRE NX behind HSET was lost)")
            for key, replies in sorted(model.incr_replies.items()):
                final = r.call("GET", key)
                final = int(final) if final is not None else 0
                values = [v for v, _ in replies]
                dups = [v for v, c in collections.Counter(values).items() if c > 1]
                if dups:
                    bad.append(f"{key}: INCR replies repeated {sorted(dups)[:5]} (from "
                               f"{[t for v, t in replies if v in dups][:6]})")
                if values and max(values) > final:
                    bad.append(f"{key}: INCR answered {max(values)}, Redis ends at {final}")
                if final and r.call("TTL", key) == -1:
                    notes.append(f"{key}: counter on a TTL-bound pattern has no TTL in Redis "
                                 f"(the hidden EXPIRE NX behind INCR was lost)")
                if final > model.incr_sent[key]:
                    bad.append(f"{key}: Redis ends at {final}, only {model.incr_sent[key]} INCRs "
                               f"sent")
        return bad

    def describe_in_redis(self, keys: List[str]) -> str:
        out = []
        try:
            with self.redis.client(timeout=h.scaled(5)) as r:
                for k in keys[:6]:
                    t = r.call("TYPE", k)
                    if t == "string":
                        v = r.call("GET", k)
                    elif t == "hash":
                        v = r.call("HGETALL", k)
                    else:
                        v = None
                    out.append(f"{k}: {t} {v!r} ttl={r.call('TTL', k)}")
        except (OSError, ConnectionError) as exc:
            out.append(f"<Redis not readable: {exc!r}>")
        return "; ".join(out)

    def wait_keygate_serves(self, rnd: int) -> float:
        """After the flaps, keygate answers from Redis again (breakers closed) in bounded time."""
        t0 = time.monotonic()
        with self.keygate.client(timeout=h.scaled(5)) as c:
            def served() -> bool:
                for prefix in ("pc", "cc"):
                    key = f"{prefix}:r{rnd}-probe"
                    if c.call("SET", key, "probe", "EX", str(SET_TTL)) != "OK":
                        return False
                    if c.call("GET", key) != b"probe":
                        return False
                return True
            h.wait_until(served, h.scaled(10), message="keygate serving SET/GET after the flaps")
        return time.monotonic() - t0

    def test_never_fabricates_success(self):
        env_seed = os.environ.get("KEYGATE_PROPERTY_SEED")
        seed = int(env_seed) if env_seed else random.SystemRandom().randrange(1, 2 ** 31)
        print(f"\n[endpoint-property] seed {seed} (rerun with KEYGATE_PROPERTY_SEED={seed})",
              flush=True)
        rounds = int(os.environ.get("KEYGATE_PROPERTY_ROUNDS", ROUNDS))  # more for a soak
        rng = random.Random(seed)
        metrics0 = h.admin_metrics(self.admin_port)
        flaps: Dict[str, int] = collections.Counter()
        replies: Dict[str, int] = collections.Counter()
        requests = 0
        abandoned = 0
        violations: List[dict] = []
        final_bad: List[str] = []
        flap_log: List[str] = []
        recover_times: List[float] = []
        notes: List[str] = []
        started = time.monotonic()
        try:
            for rnd in range(rounds):
                model = Model()
                stop = threading.Event()
                clients = [ClientThread(self, tid, rnd, rng.randrange(2 ** 62), model, stop,
                                        strict=(tid == 0), resp3=(tid == 1))
                           for tid in range(CLIENT_THREADS)]
                for c in clients:
                    c.start()
                round_log: List[str] = []
                try:
                    self.flap(rng, ROUND_SECONDS, flaps, round_log)
                finally:
                    self.ensure_redis()
                    stop.set()
                    for c in clients:
                        c.join(timeout=h.scaled(15))
                flap_log.append(f"round {rnd}: " + " | ".join(round_log))
                for c in clients:
                    self.assertFalse(c.is_alive(), f"seed {seed}: client {c.tid} did not stop")
                    self.assertIsNone(c.crash, f"seed {seed}: client {c.tid} crashed: {c.crash}")
                    requests += c.requests
                    abandoned += c.abandoned
                    replies.update(c.replies)
                    for v in c.violations:
                        v["in_redis"] = self.describe_in_redis(v["keys"])
                        violations.append(v)
                self.assertTrue(self.keygate.running(),
                                f"seed {seed}: keygate exited during round {rnd}\n"
                                + self.keygate.log_tail())
                final_bad += [f"round {rnd}: {b}"
                              for b in self.final_checks(model, rnd, notes)]
                recover_times.append(self.wait_keygate_serves(rnd))
        finally:
            self.ensure_redis()
        elapsed = time.monotonic() - started
        metrics1 = h.admin_metrics(self.admin_port)

        def delta(name: str, endpoint: Optional[str] = None) -> float:
            total = 0.0
            for (n, labels), v in metrics1.items():
                if n != name or (endpoint and ("endpoint", endpoint) not in labels):
                    continue
                total += v - metrics0.get((n, labels), 0.0)
            return total

        by_kind: Dict[str, int] = collections.Counter()
        for k, n in replies.items():
            by_kind[k.split(" ", 1)[1].split("/")[0]] += n
        set_nil = replies.get("set nil", 0)
        summary = (
            f"[endpoint-property] seed {seed}: {elapsed:.1f}s, {rounds} rounds, "
            f"{requests} requests ({abandoned} left unread on closed connections);"
            f" replies {dict(sorted(by_kind.items()))}; SET fail-open nils {set_nil}; "
            f"flaps {dict(sorted(flaps.items()))}; keygate /metrics: "
            f"fail_open {delta('keygate_endpoint_fail_open_total'):.0f} "
            f"fail_closed {delta('keygate_endpoint_fail_closed_total'):.0f} "
            f"timeouts {delta('keygate_endpoint_timeouts_total'):.0f} "
            f"failures {delta('keygate_endpoint_failures_total'):.0f} "
            f"breaker_rejected {delta('keygate_endpoint_breaker_rejected_total'):.0f} "
            f"breaker_opens {delta('keygate_endpoint_breaker_opens_total'):.0f} "
            f"retries {delta('keygate_endpoint_retries_total'):.0f} "
            f"late_replies {delta('keygate_upstream_late_replies_total'):.0f}; "
            f"recovered in {max(recover_times):.2f}s at most; "
            f"violations {len(violations)}, end-state problems {len(final_bad)}")
        print(summary, flush=True)
        print("[endpoint-property] per command: "
              + ", ".join(f"{k}={n}" for k, n in sorted(replies.items())), flush=True)
        for note in notes[:20]:
            print(f"[endpoint-property] note (not asserted here): {note}", flush=True)

        if violations or final_bad:
            lines = [f"seed {seed} (KEYGATE_PROPERTY_SEED={seed}): {len(violations)} bad replies, "
                     f"{len(final_bad)} end-state problems"]
            for v in violations[:25]:
                lines.append(f"  round {v['round']} thread {v['thread']}"
                             f"{' strict' if v['strict'] else ''}{' resp3' if v['resp3'] else ''}"
                             f" ({v['decision']}): {v['command'][:160]} -> {v['reply']!r:.200}: "
                             f"{v['why']}; in Redis now: {v['in_redis']}")
            for b in final_bad[:25]:
                lines.append("  end state: " + b)
            lines.append("flaps: " + "\n       ".join(flap_log))
            self.fail("\n".join(lines))

        # Not vacuous: failures happened, both decisions answered, and Redis served requests.
        def at_least(what: str, value: float) -> None:
            self.assertGreater(value, 0, f"seed {seed}: no {what} during the run\n{summary}")

        at_least("fail-open answer in /metrics (cache-open)",
                 delta("keygate_endpoint_fail_open_total", "cache-open"))
        at_least("fail-closed answer in /metrics (cache-closed)",
                 delta("keygate_endpoint_fail_closed_total", "cache-closed"))
        at_least("fail-closed answer in /metrics (strict)",
                 delta("keygate_endpoint_fail_closed_total", "strict"))
        at_least("timeout in /metrics", delta("keygate_endpoint_timeouts_total"))
        at_least("failure (refused/reset) in /metrics", delta("keygate_endpoint_failures_total"))
        at_least("SET answered OK", replies.get("set status", 0))
        at_least("SET answered nil (fail-open)", set_nil)
        at_least("GET answered with a value", replies.get("get bulk", 0))
        at_least("INCR answered", replies.get("incr int", 0))
        at_least("lock acquired", replies.get("lock status", 0))
        at_least("TIMEOUT error seen by a client", by_kind.get("err:TIMEOUT", 0))
        at_least("UNAVAILABLE error seen by a client", by_kind.get("err:UNAVAILABLE", 0))
        for kind in ("stop", "kill-clients", "sigkill"):
            self.assertGreaterEqual(flaps.get(kind, 0), rounds, f"seed {seed}: flaps {flaps}")


if __name__ == "__main__":
    h.main()
