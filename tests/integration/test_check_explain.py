#!/usr/bin/python3
"""`keygate check --explain FILE`: per endpoint profile and per pattern, what the application sees
when Redis is slow and when it is down (the seed's "Redis down behavior documented per
endpoint").

Checks, on the example registry and on a small registry written here (one `open` profile, one
`closed` profile whose breaker opens by failure ratio, and the built-in default in force):
exit codes (0 valid, 1 invalid with only the errors printed, 2 for a bad command line), the lint
output unchanged in front of the explanation, `--explain` before or after the file, the same
output twice, a block for every endpoint (the built-in default marked) and every pattern, the
TIMEOUT text with each profile's own budget, nil for GET under `open`, the fail-closed texts
under `closed`, and a lock's SET NX never answered as a success. Issue 8: each near-cached
pattern's line (ttl, limits, tracking prefix) and coalescing line, the warnings (a near-cache ttl
over the pattern's TTL, defaults.ttl included; coalescing an authority pattern) without a change
of exit code, the near-cache line of --explain, and the near-cache load errors all at once.

Then the texts are held to what a running keygate really answers: against a port nobody listens
on (Redis down: UNAVAILABLE at once, a miss under `open`, a lock's SET NX an error) and against
a real Redis paused with CLIENT PAUSE (Redis slow: TIMEOUT after the profile's budget, then the
breaker's answer once it opens), each reply compared with the line `check --explain` printed,
HOST:PORT and REASON filled in.
"""

import os
import re
import shutil
import socket
import tempfile
import time
import unittest
from typing import Dict, List

import keygate_harness as h

EXAMPLE_REGISTRY = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "..", "..", "config", "examples",
                                                 "cpq-registry.yaml"))

SMALL = """\
version: 1
endpoints:
  - name: cache-view
    clients: ["web/view", "web/*"]
    timeout: 25ms
    onFailure: open
    retries: {attempts: 2, backoff: 1ms, jitter: 2ms}
    breaker: {consecutiveFailures: 4, openFor: 750ms}
    description: "cache view: fall back to the database"
  - name: checkout
    clients: ["shop/checkout"]
    timeout: 300ms
    onFailure: closed
    breaker: {consecutiveFailures: 0, failureRatio: 0.25, window: 40, minRequests: 10, openFor: 2s, halfOpenProbes: 3}
    description: "checkout: fail closed, the service asks PostgreSQL"
patterns:
  - pattern: "item:<id>"
    owner: catalog
    purpose: cached item
    authority: false
    failureBehavior: {endpoint: cache-view, description: "read the item from the database"}
    ttl: {default: 5m}
  - pattern: "lock:order-<id>"
    owner: orders
    purpose: one checkout at a time
    authority: true
    failureBehavior: {endpoint: cache-view, description: "go on without the lock"}
    ttl: {default: 10s}
  - pattern: "idem:<key>"
    owner: orders
    purpose: idempotency
    authority: true
    failureBehavior: {endpoint: checkout, description: "check PostgreSQL"}
    ttl: {default: 1h}
  - pattern: "note:<id>"
    owner: misc
    purpose: no endpoint named
    authority: false
    failureBehavior: "recompute"
    ttl: {default: 1m}
"""

INVALID = """\
version: 1
endpoints:
  - name: fast
    timeout: 5 parsecs
    onFailure: open
patterns:
  - pattern: "item:<id>"
    owner: t
    purpose: p
    authority: false
    failureBehavior: {endpoint: nowhere, description: "x"}
    ttl: {default: 5m}
"""


NEAR = """\
defaults:
  ttl: {default: 10s}
patterns:
  - pattern: "cpq:{tenant-<tenant>}:offering:<id>:v<v:int>"
    owner: catalog
    purpose: published offerings
    authority: false
    ttl: {default: 1h}
    coalesce: true
    nearCache: {ttl: 30s, maxBytes: 1MiB, maxEntries: 500}
  - pattern: "cpq:{tenant-<tenant>}:profile:<id>"
    owner: identity
    purpose: user profiles
    authority: false
    containsPII: true
    nearCache: {ttl: 1m, allowPII: true}
  - pattern: "lock:<id>"
    owner: orders
    purpose: one checkout at a time
    authority: true
    coalesce: true
  - pattern: "note:<id>"
    owner: notes
    purpose: notes
    authority: false
"""

NEAR_EVERY_KEY = """\
patterns:
  - pattern: "<region>:catalog:<id>"
    owner: catalog
    purpose: offerings by region
    authority: false
    ttl: {default: 1h}
    nearCache: {ttl: 30s}
  - pattern: "eu-<site>:catalog:item:<id>"
    owner: catalog
    purpose: offerings by site
    authority: false
    ttl: {default: 1h}
    nearCache: {ttl: 30s}
"""

NEAR_BAD = """\
patterns:
  - pattern: "lock:<id>"
    owner: orders
    purpose: one checkout at a time
    authority: true
    nearCache:
      ttl: 2h
  - pattern: "events"
    kind: channel
    owner: o
    purpose: p
    authority: false
    coalesce: true
"""


def run_check(*args: str):
    res = h.run_keygate_cli(["check", *args])
    return res.returncode, res.stdout.decode(), res.stderr.decode()


def blocks(out: str, kind: str) -> Dict[str, List[str]]:
    """`endpoint NAME` / `pattern TEXT` header line -> the lines of its block (header excluded),
    up to the next blank line."""
    result: Dict[str, List[str]] = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith(kind + " "):
            continue
        name = line[len(kind) + 1:].split(" (")[0] if kind == "endpoint" else line[len(kind) + 1:]
        body = []
        for following in lines[i + 1:]:
            if not following.strip():
                break
            body.append(following)
        result[name] = body
    return result


def section(block: List[str], title_prefix: str) -> List[str]:
    """The lines under "  When Redis is slow ..." or "  When Redis is down ..." in a block."""
    start = next(i for i, l in enumerate(block) if l.startswith("  " + title_prefix))
    body = []
    for line in block[start + 1:]:
        if not line.startswith("    "):
            break
        body.append(line)
    return body


FIELD_WIDTH = 14  # labels are padded to this many columns


def value(lines: List[str], label: str) -> List[str]:
    """Values of the aligned `label  value` lines whose label is exactly `label`."""
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped[:FIELD_WIDTH].rstrip() == label and len(stripped) > FIELD_WIDTH \
                and stripped[FIELD_WIDTH - 1] == " ":
            out.append(stripped[FIELD_WIDTH:])
    return out


def example_endpoints() -> Dict[str, str]:
    """name -> timeout text, from the example registry's `endpoints:` section."""
    with open(EXAMPLE_REGISTRY) as f:
        text = f.read()
    section_text = text[text.index("\nendpoints:"):text.index("\npatterns:")]
    names = re.findall(r"^  - name: (\S+)\s*$", section_text, re.M)
    timeouts = re.findall(r"^    timeout: (\S+)\s*$", section_text, re.M)
    assert len(names) == len(timeouts) and names, (names, timeouts)
    return dict(zip(names, timeouts))


def ms(duration: str) -> int:
    m = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert m, duration
    return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60_000}[m.group(2)]


class CheckExplainCliTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keygate-check-explain-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # -- the example registry

    def test_example_registry(self):
        code, plain, _ = run_check(EXAMPLE_REGISTRY)
        self.assertEqual(code, 0, plain)
        code, out, err = run_check("--explain", EXAMPLE_REGISTRY)
        self.assertEqual(code, 0, err)
        self.assertTrue(out.startswith(plain), "the lint output changed under --explain")
        # Flag after the file, and deterministic.
        code2, out2, _ = run_check(EXAMPLE_REGISTRY, "--explain")
        self.assertEqual((code2, out2), (0, out))

        endpoints = blocks(out, "endpoint")
        timeouts = example_endpoints()
        self.assertEqual(sorted(endpoints), sorted(timeouts), out)
        header = [l for l in out.splitlines() if l.startswith("endpoint internal-read")]
        self.assertEqual(header, ["endpoint internal-read (default: defaults.endpoint)"])
        for name, timeout in timeouts.items():
            block = endpoints[name]
            budget = ms(timeout)
            self.assertIn(f"keygate: endpoint '{name}': no reply from Redis within {budget}ms",
                          "\n".join(section(block, "When Redis is slow")), (name, block))
            self.assertTrue(any(l.startswith(f"  When Redis is slow (no reply within {timeout})")
                                for l in block), (name, block))
            self.assertTrue(any(l.startswith("  When Redis is down (connection refused or reset)")
                                for l in block), (name, block))
            for label in ("clients", "budget", "decision", "retries", "breaker", "description"):
                self.assertEqual(len(value(block, label)), 1, (name, label, block))
            self.assertEqual(value(block, "budget"), [f"{timeout} per request, retries included"])

        # open: GET is a miss (nil), in both situations.
        for name in ("catalog-view", "quote-submit", "internal-read"):
            for title in ("When Redis is slow", "When Redis is down"):
                rows = [l for l in section(endpoints[name], title)
                        if l.lstrip().startswith("missing value (GET,")]
                self.assertEqual(len(rows), 1, (name, title))
                self.assertIn("nil", rows[0])
        # closed: every command gets the error, nothing is a miss.
        order = endpoints["order-create"]
        slow = section(order, "When Redis is slow")
        down = section(order, "When Redis is down")
        self.assertEqual(value(slow, "every command"),
                         ["-TIMEOUT keygate: endpoint 'order-create': no reply from Redis within "
                          "100ms"])
        self.assertEqual(value(down, "every command"),
                         ["-UNAVAILABLE keygate: Redis at HOST:PORT is unavailable (REASON); "
                          "endpoint 'order-create' fails closed"])
        self.assertEqual(value(slow, "breaker open"),
                         ["-UNAVAILABLE keygate: endpoint 'order-create': circuit breaker open for "
                          "Redis at HOST:PORT after consecutive failures; requests go to Redis "
                          "again within 500ms"])
        self.assertEqual(value(down, "breaker open"),
                         ["-UNAVAILABLE keygate: "
                          "endpoint 'order-create': circuit breaker open for Redis at HOST:PORT "
                          "after consecutive failures; requests go to Redis again within 500ms"])
        self.assertFalse(any("nil" in l for l in slow + down), order)
        self.assertTrue(value(slow, "app waits")[0].startswith("100ms (the budget)"))
        self.assertTrue(value(down, "app waits")[0].startswith("none: "))
        # The breaker turned off: no breaker answer at all.
        self.assertEqual(value(endpoints["admin"], "breaker"),
                         ["off: never opens, every request goes to Redis"])
        self.assertFalse(any("circuit breaker open" in l for l in endpoints["admin"]))

        patterns = blocks(out, "pattern")
        with open(EXAMPLE_REGISTRY) as f:
            expected = re.findall(r'^\s*- pattern: "(.*)"\s*$', f.read(), re.M)
        self.assertEqual(sorted(patterns), sorted(expected), out)
        for p, block in patterns.items():
            for label in ("owner", "authority", "endpoint", "on failure"):
                self.assertEqual(len(value(block, label)), 1, (p, label, block))
            self.assertEqual(len([l for l in block if l.startswith("  slow/down: ")]), 1, (p, block))
        lock = patterns["cpq:{tenant-<tenant>}:lock:quote-<quoteId>:<operation>"]
        self.assertEqual(value(lock, "endpoint")[0].split(" ")[0], "quote-submit")
        summary = next(l for l in lock if l.startswith("  slow/down: "))
        writes = summary[summary.index("writes -> "):]
        self.assertTrue(writes.startswith("writes -> error"), summary)
        self.assertIn("SET NX never answers OK", writes)
        session = patterns["cpq:{tenant-<tenant>}:session:<sessionId:uuid>"]
        self.assertTrue(value(session, "endpoint")[0].startswith("internal-read (the registry's "
                                                                 "default"), session)
        catalog = patterns["cpq:{tenant-<tenant>}:catalog:active"]
        self.assertIn("reads -> miss (nil for GET",
                      next(l for l in catalog if l.startswith("  slow/down: ")))

    # -- a small registry: one open profile, one closed, the built-in default

    def test_small_registry(self):
        path = self.write("small.yaml", SMALL)
        code, out, err = run_check(path, "--explain")
        self.assertEqual(code, 0, err)
        endpoints = blocks(out, "endpoint")
        self.assertEqual(list(endpoints), ["cache-view", "checkout", "default"], out)
        self.assertIn("endpoint default (built-in default: the file names no default profile)",
                      out.splitlines())

        view = endpoints["cache-view"]
        self.assertEqual(value(view, "clients"), ["exact web/view; prefix web/*"])
        self.assertEqual(value(view, "decision")[0].split(":")[0], "open")
        self.assertEqual(value(view, "breaker"),
                         ["opens after 4 consecutive failures; open for 750ms, then 1 probe "
                          "request"])
        self.assertIn("up to 2 extra tries", value(view, "retries")[0])
        self.assertEqual(value(view, "description"), ["cache view: fall back to the database"])
        slow = section(view, "When Redis is slow")
        down = section(view, "When Redis is down")
        self.assertEqual(value(slow, "fails closed"),
                         ["-TIMEOUT keygate: endpoint 'cache-view': no reply from Redis within "
                          "25ms"])
        self.assertEqual(value(down, "fails closed"),
                         ["-UNAVAILABLE keygate: Redis at HOST:PORT is unavailable (REASON); "
                          "endpoint 'cache-view' fails closed"])
        for rows in (slow, down):
            get = [l for l in rows if l.lstrip().startswith("missing value (GET,")]
            self.assertEqual(len(get), 1, rows)
            self.assertRegex(get[0], r"\)\s+nil: RESP2 \$-1, RESP3 _$")
            sets = [l for l in rows if l.lstrip().startswith("cache writes: SET (")]
            self.assertEqual(len(sets), 1, rows)
            self.assertIn("only on authority:false patterns: nil", sets[0])
            self.assertIn("never OK", sets[0])
            dels = [l for l in rows if l.lstrip().startswith("writes that never fail open")]
            self.assertRegex(dels[0], r"fails closed: -(TIMEOUT|UNAVAILABLE)$")
        # The class rows line up in one column.
        rows = [l for l in slow if l.startswith("      ")]
        self.assertGreaterEqual(len(rows), 10)
        columns = {len(re.match(r"^(\s+\S.*?\)\s+)", l).group(1)) for l in rows}
        self.assertEqual(len(columns), 1, rows)

        checkout = endpoints["checkout"]
        self.assertEqual(value(checkout, "decision"), ["closed: an error"])
        self.assertEqual(value(checkout, "clients"), ["exact shop/checkout"])
        self.assertEqual(value(checkout, "breaker"),
                         ["opens after 25% failures over the last 40 requests (at least 10 seen); "
                          "open for 2s, then 3 probe requests"])
        slow = section(checkout, "When Redis is slow")
        down = section(checkout, "When Redis is down")
        self.assertEqual(value(slow, "every command"),
                         ["-TIMEOUT keygate: endpoint 'checkout': no reply from Redis within "
                          "300ms"])
        self.assertEqual(value(down, "every command"),
                         ["-UNAVAILABLE keygate: Redis at HOST:PORT is unavailable (REASON); "
                          "endpoint 'checkout' fails closed"])
        self.assertEqual(value(slow, "breaker open"),
                         ["-UNAVAILABLE keygate: endpoint 'checkout': circuit breaker open for "
                          "Redis at HOST:PORT after failure ratio; requests go to Redis again "
                          "within 2000ms"])
        self.assertFalse(any("by command class" in l or "nil" in l for l in checkout), checkout)

        builtin = endpoints["default"]
        self.assertEqual(value(builtin, "budget"), ["1s per request, retries included"])
        self.assertIn("-TIMEOUT keygate: endpoint 'default': no reply from Redis within 1000ms",
                      value(section(builtin, "When Redis is slow"), "every command"))

        patterns = blocks(out, "pattern")
        self.assertEqual(list(patterns), ["item:<id>", "lock:order-<id>", "idem:<key>",
                                          "note:<id>"])

        def summary(p: str) -> str:
            return next(l for l in patterns[p] if l.startswith("  slow/down: "))

        self.assertTrue(value(patterns["item:<id>"], "endpoint")[0].startswith(
            "cache-view (its failureBehavior, open, 25ms)"))
        self.assertIn("writes -> nil for SET (never OK)", summary("item:<id>"))
        self.assertIn("reads -> miss (nil for GET", summary("lock:order-<id>"))
        self.assertRegex(summary("lock:order-<id>"), r"writes -> error .*SET NX never answers OK")
        self.assertNotIn("writes -> nil", summary("lock:order-<id>"))
        self.assertEqual(value(patterns["lock:order-<id>"], "authority"),
                         ["true (Redis holds the truth: writes never fail open)"])
        self.assertEqual(value(patterns["idem:<key>"], "on failure"), ["check PostgreSQL"])
        self.assertIn("reads -> error", summary("idem:<key>"))
        self.assertTrue(value(patterns["note:<id>"], "endpoint")[0].startswith(
            "default (the built-in default, closed, 1s)"))
        self.assertIn("writes -> error", summary("note:<id>"))

    # -- issue 8: near cache and coalescing

    def lint_block(self, out: str, pattern: str) -> List[str]:
        """The lines under `pattern` in the lint part (before the total)."""
        lines = out[:out.index("\ntotal memory budget ")].splitlines()
        i = lines.index(pattern)
        block = []
        for line in lines[i + 1:]:
            if not line.startswith("  "):
                break
            block.append(line)
        return block

    def test_near_cache_and_coalescing(self):
        path = self.write("near.yaml", NEAR)
        code, plain, err = run_check(path)
        self.assertEqual(code, 0, err)  # warnings do not change the exit code
        offering = self.lint_block(plain, "cpq:{tenant-<tenant>}:offering:<id>:v<v:int>")
        self.assertIn("  near cache ttl 30s, maxBytes 1MiB, maxEntries 500 per keygate process "
                      "(split across its workers); tracking prefix cpq:{tenant-<tenant>}:offering:",
                      offering)
        self.assertIn("  coalesce: identical reads of a key in flight at the same time on one "
                      "worker share one Redis request", offering)
        self.assertFalse(any("WARNING" in l for l in offering), offering)
        # defaults.ttl (10s) is the budget of a pattern without a ttl of its own.
        stale = self.lint_block(plain, "cpq:{tenant-<tenant>}:profile:<id>")
        self.assertIn("  near cache ttl 1m, maxBytes 16MiB, maxEntries 10000 per keygate process "
                      "(split across its workers); tracking prefix cpq:{tenant-<tenant>}:profile:; "
                      "holds PII (allowPII: true)", stale)
        self.assertIn("  WARNING: the near cache may serve a value up to 1m old, longer than the "
                      "pattern's TTL 10s (its staleness budget); lower nearCache.ttl to at most 10s",
                      stale)
        lock = self.lint_block(plain, "lock:<id>")
        self.assertFalse(any(l.startswith("  near cache") for l in lock), lock)
        self.assertEqual(len([l for l in lock if l.startswith("  WARNING: coalesce on an authority: "
                                                              "true pattern: a read joining one "
                                                              "already in flight can see a value "
                                                              "from just before it was sent")]),
                         1, lock)
        plainest = self.lint_block(plain, "note:<id>")
        self.assertFalse(any("near cache" in l or "coalesce" in l or "WARNING" in l
                             for l in plainest), plainest)
        self.assertIn("(2 warnings)", plain)

        code, out, err = run_check("--explain", path)
        self.assertEqual(code, 0, err)
        self.assertTrue(out.startswith(plain))
        patterns = blocks(out, "pattern")
        self.assertEqual(value(patterns["cpq:{tenant-<tenant>}:offering:<id>:v<v:int>"],
                               "near cache"),
                         ["reads of near-cached keys are answered from keygate's memory, also while "
                          "Redis is slow or down, each entry for at most 30s after it was read from "
                          "Redis (within the pattern's TTL 1h, its staleness budget); other reads "
                          "as below"])
        self.assertIn("(longer than the pattern's TTL 10s, its staleness budget)",
                      value(patterns["cpq:{tenant-<tenant>}:profile:<id>"], "near cache")[0])
        for p in ("lock:<id>", "note:<id>"):
            self.assertEqual(value(patterns[p], "near cache"), [], patterns[p])

        # The example registry near-caches the published offering only.
        code, example, err = run_check(EXAMPLE_REGISTRY)
        self.assertEqual(code, 0, err)
        near = [l for l in example.splitlines() if l.startswith("  near cache ")]
        self.assertEqual(len(near), 1, example)
        self.assertIn("tracking prefix cpq:{tenant-<tenant>}:catalog:offering:", near[0])
        self.assertIn("  near cache ttl 30s,", self.lint_block(
            example, "cpq:{tenant-<tenant>}:catalog:offering:<offeringId>:catalog-"
                     "<catalogVersion:/v[0-9]{4}-[0-9]{2}/>")[3])
        self.assertEqual(len([l for l in example.splitlines() if l.startswith("  coalesce: ")]), 2)

    def test_near_cache_empty_tracking_prefix(self):
        path = self.write("near-every-key.yaml", NEAR_EVERY_KEY)
        code, out, err = run_check(path)
        self.assertEqual(code, 0, err)
        every = self.lint_block(out, "<region>:catalog:<id>")
        self.assertTrue(any(l.startswith("  near cache ttl 30s,") and
                            l.endswith("tracking prefix (empty: every key)") for l in every), every)
        self.assertIn("  WARNING: the near cache's tracking prefix is empty (the pattern starts "
                      "with a variable): Redis reports every write to any key to every keygate; "
                      "put a literal before the first variable", every)
        site = self.lint_block(out, "eu-<site>:catalog:item:<id>")
        self.assertTrue(any(l.endswith("tracking prefix eu-") for l in site), site)
        self.assertFalse(any("WARNING" in l for l in site), site)
        self.assertIn("(1 warning)", out)

    def test_near_cache_load_errors(self):
        path = self.write("near-bad.yaml", NEAR_BAD)
        code, out, err = run_check(path)
        self.assertEqual(code, 1, err)
        self.assertEqual(out, "")
        found = re.findall(re.escape(path) + r":(\d+):(\d+): (\S+): (.*)", err)
        # Every error at once: the lock has neither a TTL policy nor may it be near-cached.
        self.assertEqual([(int(l), int(c), p) for l, c, p, _ in found],
                         [(6, 5, "patterns[0].nearCache"), (6, 5, "patterns[0].nearCache"),
                          (7, 12, "patterns[0].nearCache.ttl"),
                          (13, 15, "patterns[1].coalesce")], err)
        self.assertIn("this pattern has authority: true", found[0][3])
        self.assertIn("a near cache needs a TTL policy", found[1][3])
        self.assertIn("over the maximum 1h", found[2][3])
        self.assertIn("no reads to coalesce", found[3][3])
        self.assertIn("4 registry errors", err)

    # -- errors

    def test_invalid_registry_prints_only_errors(self):
        path = self.write("bad.yaml", INVALID)
        code, out, err = run_check("--explain", path)
        self.assertEqual(code, 1, err)
        self.assertEqual(out, "", "an invalid registry must print nothing but its errors")
        self.assertRegex(err, re.escape(path) + r":\d+:\d+: endpoints\[0\]\.timeout: ")
        self.assertNotIn("When Redis is", err)
        code_plain, out_plain, err_plain = run_check(path)
        self.assertEqual((code_plain, out_plain, err_plain), (code, out, err))

    def test_command_line(self):
        for args in ([], ["--explain"], ["--explain", "a.yaml", "b.yaml"], ["--bogus", "a.yaml"]):
            code, out, err = run_check(*args)
            self.assertEqual(code, 2, (args, out, err))
            self.assertIn("usage: keygate check [--explain] REGISTRY.yaml", err)
        res = h.run_keygate_cli(["--help"])
        self.assertEqual(res.returncode, 0)
        self.assertIn("keygate check [--explain] FILE", res.stdout.decode())


def explain_lines(path: str) -> Dict[str, Dict[str, List[str]]]:
    code, out, err = run_check("--explain", path)
    assert code == 0, err
    return {name: {"slow": section(b, "When Redis is slow"), "down": section(b, "When Redis is down")}
            for name, b in blocks(out, "endpoint").items()}


def as_reply_pattern(text: str, address: str) -> str:
    """A printed error line as a regex for the reply keygate really sends."""
    body = re.escape(text[1:]).replace(re.escape("HOST:PORT"), re.escape(address))
    return "^" + body.replace(re.escape("REASON"), r"[^)]+") + "$"


class ExplainMatchesDownRedisTest(unittest.TestCase):
    """keygate in front of a port nobody listens on: the replies are the printed ones."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keygate-check-explain-down-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.registry = os.path.join(self.dir, "small.yaml")
        with open(self.registry, "w") as f:
            f.write(SMALL)
        # A port that refuses connections: bound, never listened on, kept for the whole test.
        self.dead = socket.socket()
        self.dead.bind((h.HOST, 0))
        self.addCleanup(self.dead.close)
        self.dead_port = self.dead.getsockname()[1]
        self.keygate = h.KeygateProcess(self.dir, self.dead_port,
                                        extra_args=["--registry", self.registry, "--threads", "1",
                                                    "--log-level", "error"])
        self.addCleanup(self.keygate.check_clean_exit)
        self.keygate.start()

    def test_down_replies(self):
        explained = explain_lines(self.registry)
        address = f"{h.HOST}:{self.dead_port}"
        with self.keygate.client(timeout=h.scaled(10)) as c:
            self.assertEqual(c.call("CLIENT", "SETNAME", "shop/checkout"), "OK")
            reply = c.call("GET", "idem:1")
            self.assertIsInstance(reply, h.ErrorReply)
            self.assertRegex(reply, as_reply_pattern(
                value(explained["checkout"]["down"], "every command")[0], address))
            # open: GET is nil, a cache SET NX is nil (not set), a lock's SET NX is an error.
            self.assertEqual(c.call("CLIENT", "SETNAME", "web/view"), "OK")
            self.assertIsNone(c.call("GET", "item:1"))
            self.assertIsNone(c.call("SET", "item:1", "v", "NX"))
            reply = c.call("SET", "lock:order-1", "owner", "NX", "PX", "5000")
            self.assertIsInstance(reply, h.ErrorReply)
            self.assertRegex(reply, as_reply_pattern(
                value(explained["cache-view"]["down"], "fails closed")[0], address))
        # The built-in default (no client name, a pattern that names no profile): while the
        # connection is refused every request gets the printed UNAVAILABLE text at once; once
        # its breaker has opened (5 failures in a row) the printed breaker text, also at once.
        unavailable = as_reply_pattern(value(explained["default"]["down"], "every command")[0],
                                       address)
        breaker = as_reply_pattern(value(explained["default"]["down"], "breaker open")[0], address)
        with self.keygate.client(timeout=h.scaled(10)) as c:
            replies = [c.call("GET", "note:1") for _ in range(12)]
        for reply in replies:
            self.assertIsInstance(reply, h.ErrorReply)
        kinds = ["breaker" if re.search(breaker, r) else
                 "unavailable" if re.search(unavailable, r) else r for r in replies]
        self.assertEqual(kinds[0], "unavailable", replies)
        self.assertIn("breaker", kinds, replies)
        first = kinds.index("breaker")
        self.assertEqual(set(kinds[:first]), {"unavailable"}, replies)
        self.assertEqual(set(kinds[first:]), {"breaker"}, replies)


class ExplainMatchesSlowRedisTest(h.KeygateTestCase):
    """A real Redis held by CLIENT PAUSE: the TIMEOUT reply is the printed one, after the budget."""

    @classmethod
    def setUpClass(cls):
        cls.registry_dir = tempfile.mkdtemp(prefix="keygate-check-explain-slow-")
        cls.addClassCleanup(shutil.rmtree, cls.registry_dir, True)
        cls.registry = os.path.join(cls.registry_dir, "small.yaml")
        with open(cls.registry, "w") as f:
            f.write(SMALL)
        cls.keygate_args = ["--registry", cls.registry, "--threads", "1"]
        super().setUpClass()

    def test_slow_replies(self):
        explained = explain_lines(self.registry)
        c = self.kg()
        self.assertEqual(c.call("CLIENT", "SETNAME", "shop/checkout"), "OK")
        self.assertIsNone(c.call("GET", "idem:1"))  # Redis answers: nothing to explain yet
        pause_ms = 1500
        with self.direct() as d:
            self.assertEqual(d.call("CLIENT", "PAUSE", str(pause_ms), "ALL"), "OK")
        try:
            started = time.monotonic()
            reply = c.call("GET", "idem:1")
            waited = time.monotonic() - started
            self.assertIsInstance(reply, h.ErrorReply)
            self.assertEqual("-" + reply,
                             value(explained["checkout"]["slow"], "every command")[0])
            # The budget is 300ms: well after it started, well before the pause ends.
            self.assertGreaterEqual(waited, 0.28, waited)
            self.assertLess(waited, pause_ms / 1000 - 0.2, waited)
            # open: the budget (25ms) runs out and GET is nil; a DEL fails closed with the
            # printed TIMEOUT text until the 4th failure in a row opens the breaker, then with
            # the printed breaker text, at once.
            self.assertEqual(c.call("CLIENT", "SETNAME", "web/view"), "OK")
            self.assertIsNone(c.call("GET", "item:2"))
            view = explained["cache-view"]["slow"]
            timeout_text = value(view, "fails closed")[0]
            prefix = "the same misses; what fails closed gets "
            breaker_line = value(view, "breaker open")[0]
            self.assertTrue(breaker_line.startswith(prefix), breaker_line)
            address = f"{h.HOST}:{self.redis.port}"
            breaker_text = as_reply_pattern(breaker_line[len(prefix):], address)
            replies = []
            for _ in range(6):
                started = time.monotonic()
                replies.append((c.call("DEL", "item:3"), time.monotonic() - started))
            self.assertEqual(["-" + r for r, _ in replies[:3]], [timeout_text] * 3, replies)
            self.assertRegex(replies[3][0], breaker_text, replies)
            self.assertTrue(all(re.match(breaker_text, r) for r, _ in replies[3:]), replies)
            # "none while the breaker is open": well under the 25ms budget, even with ASan.
            self.assertLess(min(t for _, t in replies[3:]), 0.025, replies)
        finally:
            with self.direct() as d:
                d.call("CLIENT", "UNPAUSE")


if __name__ == "__main__":
    h.main()
