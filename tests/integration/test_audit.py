#!/usr/bin/python3
"""`keygate audit` (docs/audit.md) against real redis-servers, with the example registry
config/examples/cpq-registry.yaml.

1. Standalone Redis seeded directly (not through keygate) with keys of every kind: registered
   keys with a TTL, a registered key of a TTL-bound pattern without one, one with a TTL above its
   pattern's max, orphans that match no pattern (one named like a channel pattern), a ~1 MiB
   value on a registered pattern, a PII (session) key, a commercially sensitive (pricing) key and
   a legacy-shaped orphan that the registry's rewrites would have mapped onto a pattern.
   `--json`: every count exact (per pattern, no-TTL, orphans, total == DBSIZE), orphan and no-TTL
   samples named, the 1 MiB key first among the biggest, PII / sensitive keys only as
   `sha1:` + the first 16 hex digits of SHA-1, never in clear in stdout or stderr (JSON and
   table); `--json-file` next to the table; exit 1 with --fail-on-findings only when there are
   findings; `--sample-memory 0`; exit 2 for usage errors, an invalid registry and a refused
   connection; AUTH through `--password-file` (right password 0, wrong 2); Redis never saw KEYS.
2. Rate: 3,000 keys, `--rate 1000 --count 100`, while INFO commandstats is polled every ~50 ms:
   the audit takes >= 2 s, the SCAN calls it reports equal Redis's cmdstat_scan delta, any two
   polls at most one second apart (first sent to last received) saw at most rate/count + 1 SCAN
   calls, the reported peak keys in one second stays <= 1000, and the average keys/s stays
   within what a 1000-keys-per-second window allows.
3. Cluster, 3 masters + 3 replicas, seeded on every master, the audit given a replica and a master
   as seeds: every master scanned exactly once (its SCAN calls and keys as Redis counts them),
   no replica scanned (cmdstat_scan delta 0), total keys == sum of the masters' DBSIZE.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import cluster_harness as ch
import keygate_harness as h

EXAMPLE_REGISTRY = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "..", "..", "config", "examples",
                                                 "cpq-registry.yaml"))

# Patterns of the example registry used here.
P_ACTIVE = "cpq:{tenant-<tenant>}:catalog:active"
P_CURRENT = "cpq:{tenant-<tenant>}:catalog:offering:<offeringId>:current"
P_OFFERING = ("cpq:{tenant-<tenant>}:catalog:offering:<offeringId>:catalog-"
              "<catalogVersion:/v[0-9]{4}-[0-9]{2}/>")
P_SESSION = "cpq:{tenant-<tenant>}:session:<sessionId:uuid>"
P_PREVIEW = ("cpq:{tenant-<tenant>}:pricing:preview:quote-<quoteId>:rev-<rev:int>:"
             "policy-<policyVersion>")
P_LOCK = "cpq:{tenant-<tenant>}:lock:quote-<quoteId>:<operation>"

SESSION_ID = str(uuid.UUID(int=0x5E55_1010_0000_4000_8000_00000000A11C))
KEY_SESSION = f"cpq:{{tenant-acme}}:session:{SESSION_ID}"  # PII, no TTL
KEY_PREVIEW = "cpq:{tenant-acme}:pricing:preview:quote-q77:rev-3:policy-p2026"  # sensitive
KEY_BIG = "cpq:{tenant-acme}:catalog:offering:o-big:catalog-v2026-07"
KEY_NO_TTL = "cpq:{tenant-acme}:catalog:offering:o-stale:current"
KEY_TOO_LONG = "cpq:{tenant-globex}:catalog:active"  # EX 3600, max 1m
KEY_LOCK = "cpq:{tenant-acme}:lock:quote-q77:submit"
KEY_LEGACY = "catalog:offering-o17"  # the registry's rewrites map this shape onto P_CURRENT
ORPHANS = ["legacy:cart:42", "tmp-debug-dump", "cpq:{tenant-acme}:invalidate:catalog", KEY_LEGACY]
ACTIVE_TENANTS = [f"t{i}" for i in range(5)]
CURRENT_KEYS = 12


def stable_hash(key: str) -> str:
    return "sha1:" + hashlib.sha1(key.encode()).hexdigest()[:16]


def audit_bin() -> List[str]:
    return [h.keygate_bin(), "audit"]


def run_audit(args: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(audit_bin() + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=h.scaled(timeout),
                          preexec_fn=h._die_with_parent)


def no_sanitizer_report(test: unittest.TestCase, proc: subprocess.CompletedProcess) -> None:
    report = h.SANITIZER_PATTERNS.search(proc.stderr or b"")
    test.assertIsNone(report, f"sanitizer report from keygate audit:\n"
                              f"{proc.stderr.decode('utf-8', 'replace')}")


def info_fields(conn: h.RespConnection, section: str) -> Dict[str, str]:
    text = conn.call("INFO", section)
    if isinstance(text, bytes):
        text = text.decode()
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out


def command_calls(conn: h.RespConnection, command: str) -> int:
    stats = info_fields(conn, "commandstats").get(f"cmdstat_{command}")
    if stats is None:
        return 0
    for part in stats.split(","):
        k, v = part.split("=", 1)
        if k == "calls":
            return int(v)
    raise AssertionError(f"no calls= in cmdstat_{command}: {stats}")


def pattern_row(report: dict, pattern: str) -> dict:
    rows = [p for p in report["patterns"] if p["pattern"] == pattern]
    if len(rows) != 1:
        raise AssertionError(f"pattern {pattern!r} appears {len(rows)} times in the report")
    return rows[0]


class AuditStandaloneTest(unittest.TestCase):
    """One redis-server per class, flushed and seeded per test."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.workdir = tempfile.mkdtemp(prefix="keygate-it-audit-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.redis = h.RedisServer(cls.workdir)
        cls.addClassCleanup(cls.redis.stop, 10)
        cls.redis.start()
        cls.upstream = f"{h.HOST}:{cls.redis.port}"

    def setUp(self) -> None:
        self.redis.flushall()
        self.conn = self.redis.client(timeout=h.scaled(20))
        self.addCleanup(self.conn.close)

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        outcome = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            sys.stderr.write(f"\n===== redis output =====\n{self.redis.log_tail(60)}\n")
        return outcome

    # -- seeding
    def seed_every_kind(self) -> int:
        c = self.conn
        commands = []
        for t in ACTIVE_TENANTS:  # registered, with a TTL inside the contract
            commands.append(("SET", f"cpq:{{tenant-{t}}}:catalog:active", "v2026-07", "EX", "30"))
        for i in range(CURRENT_KEYS):
            commands.append(("SET", f"cpq:{{tenant-acme}}:catalog:offering:o{i}:current",
                             "x" * 100, "PX", "100000"))
        commands.append(("SET", KEY_NO_TTL, "stale"))  # TTL-bound pattern, no TTL
        commands.append(("SET", KEY_TOO_LONG, "v2026-07", "EX", "3600"))
        commands.append(("SET", KEY_BIG, "B" * (1024 * 1024), "EX", "3600"))
        commands.append(("SET", KEY_SESSION, "S" * 20000))  # PII, no TTL
        commands.append(("SET", KEY_PREVIEW, "P" * 40000, "EX", "300"))
        commands.append(("SET", KEY_LOCK, "owner-1", "PX", "10000"))
        for k in ORPHANS:
            commands.append(("SET", k, "orphan"))
        c.send_many(commands)
        for cmd in commands:
            self.assertEqual(c.read(), "OK", cmd[1])
        dbsize = c.call("DBSIZE")
        self.assertEqual(dbsize, len(commands))
        return dbsize

    def audit_json(self, *extra: str) -> Tuple[dict, subprocess.CompletedProcess]:
        proc = run_audit(["--upstream", self.upstream, "--registry", EXAMPLE_REGISTRY, "--json",
                          *extra])
        no_sanitizer_report(self, proc)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode("utf-8", "replace"))
        return json.loads(proc.stdout), proc

    # -- tests
    def test_every_kind_of_key_reported_exactly(self) -> None:
        keys_before = command_calls(self.conn, "keys")
        scans_before = command_calls(self.conn, "scan")
        dbsize = self.seed_every_kind()
        report, proc = self.audit_json("--rate", "100000")
        self.assertEqual(report["mode"], "standalone")
        self.assertEqual([n["address"] for n in report["nodes"]], [self.upstream])
        totals = report["totals"]
        self.assertEqual(totals["keys"], dbsize)
        self.assertEqual(report["nodes"][0]["keys"], dbsize)
        self.assertEqual(totals["vanished"], 0)
        self.assertEqual(totals["orphans"], len(ORPHANS))
        self.assertEqual(totals["registered"], dbsize - len(ORPHANS))
        self.assertEqual(totals["noTtl"], 2)  # KEY_NO_TTL and the session
        self.assertEqual(totals["findings"], 2 + len(ORPHANS))
        self.assertEqual(totals["measured"], dbsize)  # --sample-memory defaults to every key

        active = pattern_row(report, P_ACTIVE)
        self.assertEqual(active["keys"], len(ACTIVE_TENANTS) + 1)
        self.assertEqual(active["noTtl"], 0)
        self.assertEqual(active["ttlAboveMax"], 1)  # KEY_TOO_LONG
        self.assertTrue(active["ttlBound"])
        current = pattern_row(report, P_CURRENT)
        self.assertEqual(current["keys"], CURRENT_KEYS + 1)
        self.assertEqual(current["noTtl"], 1)
        self.assertEqual(current["withoutTtl"], 1)
        self.assertEqual(current["ttlAboveMax"], 0)
        self.assertEqual(pattern_row(report, P_OFFERING)["keys"], 1)
        session = pattern_row(report, P_SESSION)
        self.assertEqual((session["keys"], session["noTtl"], session["hashed"]), (1, 1, True))
        preview = pattern_row(report, P_PREVIEW)
        self.assertEqual((preview["keys"], preview["noTtl"], preview["hashed"]), (1, 0, True))
        self.assertEqual(pattern_row(report, P_LOCK)["keys"], 1)
        self.assertEqual(sum(p["keys"] for p in report["patterns"]), totals["registered"])
        # Channel patterns are not key patterns.
        self.assertNotIn("cpq:{tenant-<tenant>}:invalidate:catalog",
                         [p["pattern"] for p in report["patterns"]])

        no_ttl = {s["key"]: s for s in report["noTtl"]["samples"]}
        self.assertEqual(set(no_ttl), {KEY_NO_TTL, stable_hash(KEY_SESSION)})
        self.assertEqual(no_ttl[KEY_NO_TTL]["pattern"], P_CURRENT)
        self.assertFalse(no_ttl[KEY_NO_TTL]["hashed"])
        self.assertTrue(no_ttl[stable_hash(KEY_SESSION)]["hashed"])
        self.assertEqual(no_ttl[stable_hash(KEY_SESSION)]["pattern"], P_SESSION)

        orphans = report["orphans"]
        self.assertEqual(orphans["count"], len(ORPHANS))
        self.assertEqual(sorted(s["key"] for s in orphans["samples"]), sorted(ORPHANS))
        self.assertEqual(orphans["withoutTtl"], len(ORPHANS))
        self.assertEqual(orphans["legacy"], 1)
        rewrites = {s["key"]: s["rewriteTo"] for s in orphans["samples"]}
        self.assertEqual(rewrites.pop(KEY_LEGACY), P_CURRENT)
        self.assertEqual(set(rewrites.values()), {None})
        self.assertEqual(sum(s["keys"] for s in orphans["shapes"]) + orphans["otherShapes"],
                         len(ORPHANS))

        biggest = report["biggest"]
        self.assertEqual(len(biggest), 10)
        self.assertEqual(biggest[0]["key"], KEY_BIG)
        self.assertEqual(biggest[0]["pattern"], P_OFFERING)
        self.assertGreaterEqual(biggest[0]["bytes"], 1024 * 1024)
        self.assertFalse(biggest[0]["hashed"])
        # Then the 40 KB sensitive preview and the 20 KB session, hashed.
        self.assertEqual(biggest[1]["key"], stable_hash(KEY_PREVIEW))
        self.assertTrue(biggest[1]["hashed"])
        self.assertEqual(biggest[2]["key"], stable_hash(KEY_SESSION))
        self.assertEqual(biggest[2]["pttlMs"], -1)
        self.assertEqual([b["bytes"] for b in biggest],
                         sorted((b["bytes"] for b in biggest), reverse=True))

        out = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
        for secret in (KEY_SESSION, SESSION_ID, KEY_PREVIEW, "quote-q77:rev-3"):
            self.assertNotIn(secret, out)
        self.assertEqual(command_calls(self.conn, "keys"), keys_before)  # never KEYS
        self.assertEqual(command_calls(self.conn, "scan") - scans_before, report["scanCalls"])

    def test_table_and_json_file(self) -> None:
        dbsize = self.seed_every_kind()
        json_path = os.path.join(self.workdir, "audit.json")
        proc = run_audit(["--upstream", self.upstream, "--registry", EXAMPLE_REGISTRY,
                          "--rate", "100000", "--json-file", json_path])
        no_sanitizer_report(self, proc)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode("utf-8", "replace"))
        table = proc.stdout.decode("utf-8", "replace")
        self.assertIn(f"keygate audit of {self.upstream}\n", table)
        self.assertIn(f"scanned {dbsize} keys in ", table)
        self.assertIn(f"keys without a TTL on TTL-bound patterns: 2\n", table)
        self.assertIn(f"  {KEY_NO_TTL}  ({P_CURRENT})\n", table)
        self.assertIn(f"  {stable_hash(KEY_SESSION)}  ({P_SESSION})\n", table)
        self.assertIn(f"orphan keys (match no pattern): {len(ORPHANS)}, 1 of a legacy shape the "
                      f"registry rewrites (written around keygate)\n", table)
        self.assertIn(f"  {KEY_LEGACY}  (no TTL; legacy shape keygate rewrites to {P_CURRENT})\n",
                      table)
        for k in ORPHANS:
            self.assertIn(f"  {k}  (no TTL", table)
        self.assertIn(f"  {KEY_BIG}  ({P_OFFERING}; ", table)
        self.assertIn(f"findings: {2 + len(ORPHANS)} (2 without TTL, {len(ORPHANS)} orphans)",
                      table)
        rows = [line for line in table.splitlines() if line.endswith(f"  {P_CURRENT}")]
        self.assertEqual(len(rows), 1, table)
        self.assertEqual(rows[0].split()[:3], [str(CURRENT_KEYS + 1), "1", "0"])
        for secret in (KEY_SESSION, SESSION_ID, KEY_PREVIEW):
            self.assertNotIn(secret, table)
        with open(json_path) as f:
            report = json.load(f)
        self.assertEqual(report["totals"]["keys"], dbsize)
        self.assertEqual(report["biggest"][0]["key"], KEY_BIG)

    def test_fail_on_findings_and_sample_memory(self) -> None:
        # Only clean keys: exit 0 even with --fail-on-findings.
        for t in ACTIVE_TENANTS:
            self.assertEqual(self.conn.call("SET", f"cpq:{{tenant-{t}}}:catalog:active", "v",
                                            "EX", "30"), "OK")
        args = ["--upstream", self.upstream, "--registry", EXAMPLE_REGISTRY, "--rate", "100000"]
        proc = run_audit(args + ["--fail-on-findings"])
        no_sanitizer_report(self, proc)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode("utf-8", "replace"))
        self.assertIn(b"findings: 0 (0 without TTL, 0 orphans)", proc.stdout)
        # One orphan: exit 1 with the flag, 0 without.
        self.assertEqual(self.conn.call("SET", "legacy:cart:1", "x"), "OK")
        proc = run_audit(args + ["--fail-on-findings", "--json"])
        self.assertEqual(proc.returncode, 1, proc.stderr.decode("utf-8", "replace"))
        self.assertEqual(json.loads(proc.stdout)["totals"]["orphans"], 1)
        proc = run_audit(args + ["--sample-memory", "0", "--json"])
        self.assertEqual(proc.returncode, 0)
        report = json.loads(proc.stdout)
        self.assertEqual(report["totals"]["measured"], 0)
        self.assertEqual(report["biggest"], [])
        self.assertEqual(report["totals"]["keys"], len(ACTIVE_TENANTS) + 1)

    def test_errors_exit_2_with_a_message(self) -> None:
        proc = run_audit(["--registry", EXAMPLE_REGISTRY])
        self.assertEqual(proc.returncode, 2)
        self.assertIn(b"--upstream HOST:PORT", proc.stderr)
        self.assertIn(b"usage: keygate audit", proc.stderr)
        proc = run_audit(["--upstream", self.upstream, "--registry", EXAMPLE_REGISTRY,
                          "--rate", "10", "--count", "100"])
        self.assertEqual(proc.returncode, 2)
        self.assertIn(b"--count 100 is above --rate 10", proc.stderr)
        bad = os.path.join(self.workdir, "bad.yaml")
        with open(bad, "w") as f:
            f.write("version: 1\npatterns:\n  - pattern: \"a:<id>\"\n    owner: x\n")
        proc = run_audit(["--upstream", self.upstream, "--registry", bad])
        self.assertEqual(proc.returncode, 2)
        self.assertIn(b"bad.yaml:", proc.stderr)
        self.assertIn(b"nothing was audited", proc.stderr)
        closed = h.free_port()
        proc = run_audit(["--upstream", f"{h.HOST}:{closed}", "--registry", EXAMPLE_REGISTRY])
        self.assertEqual(proc.returncode, 2)
        self.assertIn(f"cannot connect to Redis at {h.HOST}:{closed}".encode(), proc.stderr)
        proc = run_audit(["--upstream", "no-such-host.invalid:6379", "--registry",
                          EXAMPLE_REGISTRY])
        self.assertEqual(proc.returncode, 2)
        self.assertIn(b"cannot resolve 'no-such-host.invalid'", proc.stderr)
        proc = run_audit(["--cluster", self.upstream, "--registry", EXAMPLE_REGISTRY])
        self.assertEqual(proc.returncode, 2)  # not a cluster
        self.assertIn(b"CLUSTER SLOTS refused", proc.stderr)
        no_sanitizer_report(self, proc)

    def test_auth_with_password_file(self) -> None:
        secured = h.RedisServer(self.workdir, name="redis-auth", password="s3cret-pw")
        self.addCleanup(secured.stop, 10)
        secured.start()
        with secured.client() as c:
            self.assertEqual(c.call("SET", "legacy:x", "1"), "OK")
        good = os.path.join(self.workdir, "pw-good")
        with open(good, "w") as f:
            f.write("s3cret-pw\n")
        wrong = os.path.join(self.workdir, "pw-wrong")
        with open(wrong, "w") as f:
            f.write("nope\n")
        base = ["--upstream", f"{h.HOST}:{secured.port}", "--registry", EXAMPLE_REGISTRY,
                "--json"]
        proc = run_audit(base + ["--password-file", good])
        self.assertEqual(proc.returncode, 0, proc.stderr.decode("utf-8", "replace"))
        self.assertEqual(json.loads(proc.stdout)["totals"]["orphans"], 1)
        proc = run_audit(base + ["--password-file", wrong])
        self.assertEqual(proc.returncode, 2)
        self.assertIn(b"AUTH refused by Redis", proc.stderr)
        proc = run_audit(base + ["--username", "default", "--password-file", good])
        self.assertEqual(proc.returncode, 0, proc.stderr.decode("utf-8", "replace"))
        proc = run_audit(base)  # no password: NOAUTH on SCAN
        self.assertEqual(proc.returncode, 2)
        self.assertIn(b"NOAUTH", proc.stderr)

    def test_rate_bound(self) -> None:
        total = 3000
        rate, count = 1000, 100
        batch = []
        for i in range(total):
            batch.append(("SET", f"cpq:{{tenant-t{i % 50}}}:catalog:offering:o{i}:current", "v",
                          "EX", "600"))
        self.conn.send_many(batch)
        for _ in batch:
            self.assertEqual(self.conn.read(), "OK")
        scan_before = command_calls(self.conn, "scan")
        poll = self.redis.client(timeout=h.scaled(10))
        self.addCleanup(poll.close)
        samples: List[Tuple[float, float, int]] = []  # (sent, received, cmdstat_scan calls)
        started = time.monotonic()
        proc = subprocess.Popen(
            audit_bin() + ["--upstream", self.upstream, "--registry", EXAMPLE_REGISTRY,
                           "--json", "--rate", str(rate), "--count", str(count)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=h._die_with_parent)
        deadline = started + h.scaled(40)
        try:
            while proc.poll() is None:
                self.assertLess(time.monotonic(), deadline, "keygate audit did not finish")
                sent = time.monotonic()
                calls = command_calls(poll, "scan")
                samples.append((sent, time.monotonic(), calls - scan_before))
                time.sleep(0.05)
            stdout, stderr = proc.communicate(timeout=h.scaled(10))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        wall = time.monotonic() - started
        self.assertEqual(proc.returncode, 0, stderr.decode("utf-8", "replace"))
        self.assertIsNone(h.SANITIZER_PATTERNS.search(stderr), stderr.decode("utf-8", "replace"))
        report = json.loads(stdout)
        self.assertEqual(report["totals"]["keys"], total)
        scans = command_calls(self.conn, "scan") - scan_before
        self.assertEqual(report["scanCalls"], scans)
        self.assertGreaterEqual(scans, total // count)
        # 3,000 keys at 1,000 per second, the first second counted: at least 2 s.
        self.assertGreaterEqual(report["elapsedSeconds"], 2.0)
        self.assertGreaterEqual(wall, 2.0)
        self.assertLessEqual(report["peakKeysInOneSecond"], rate)
        # The average over the run: a one-second window bound allows `rate` keys per started
        # second, so rate * (elapsed + 1) in all.
        self.assertLessEqual(total, rate * (report["elapsedSeconds"] + 1))
        self.assertLessEqual(report["keysPerSecond"],
                             rate * (report["elapsedSeconds"] + 1) / report["elapsedSeconds"])
        # Redis's own count of SCAN calls, polled: within any second at most rate/count (+1 for
        # a window whose ends both land on a call).
        self.assertGreater(len(samples), 20, "too few commandstats polls")
        worst = 0
        for i, (sent_i, _, calls_i) in enumerate(samples):
            for _, recv_j, calls_j in samples[i + 1:]:
                if recv_j - sent_i > 1.0:
                    break
                worst = max(worst, calls_j - calls_i)
        print(f"\n[rate] {total} keys, {scans} SCAN calls in {report['elapsedSeconds']:.2f} s "
              f"({report['keysPerSecond']:.0f} keys/s, peak {report['peakKeysInOneSecond']} in "
              f"one second); at most {worst} SCAN calls seen by Redis within one second over "
              f"{len(samples)} polls", file=sys.stderr)
        self.assertLessEqual(worst, rate // count + 1)
        self.assertGreaterEqual(worst, rate // count // 2)  # the polls did see whole seconds


class AuditClusterTest(ch.KeygateClusterTestCase):
    """3 masters + 3 replicas; no keygate proxy needed: the audit talks to the nodes itself."""

    def test_every_master_once_no_replica(self) -> None:
        masters = self.cluster.masters()
        replicas = self.cluster.replicas()
        self.assertEqual((len(masters), len(replicas)), (3, 3))
        # Seed through each key's owner, spread over many slots (one hash tag per tenant).
        per_master: Dict[str, List[Tuple[str, ...]]] = {m.address: [] for m in masters}
        for i in range(600):
            key = f"cpq:{{tenant-t{i % 97}}}:catalog:offering:o{i}:current"
            per_master[self.cluster.node_for_key(key).address].append(
                ("SET", key, "v", "EX", "600"))
        orphan = "legacy:cluster:1"
        per_master[self.cluster.node_for_key(orphan).address].append(("SET", orphan, "x"))
        for m in masters:
            self.assertGreater(len(per_master[m.address]), 50, "keys not spread over masters")
            c = self.node_conn(m)
            c.send_many(per_master[m.address])
            for cmd in per_master[m.address]:
                self.assertEqual(c.read(), "OK", cmd[1])
        scans_before = {}
        for n in masters + replicas:
            scans_before[n.address] = command_calls(self.node_conn(n), "scan")
        dbsize = {m.address: self.node_conn(m).call("DBSIZE") for m in masters}
        self.assertEqual(sum(dbsize.values()), 601)

        seeds = f"{replicas[0].address},{masters[0].address}"
        proc = run_audit(["--cluster", seeds, "--registry", EXAMPLE_REGISTRY, "--json",
                          "--rate", "100000", "--count", "50"])
        no_sanitizer_report(self, proc)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode("utf-8", "replace"))
        report = json.loads(proc.stdout)
        self.assertEqual(report["mode"], "cluster")
        addresses = [n["address"] for n in report["nodes"]]
        self.assertEqual(sorted(addresses), sorted(m.address for m in masters))  # each once
        self.assertEqual(report["totals"]["keys"], sum(dbsize.values()))
        self.assertEqual(report["totals"]["orphans"], 1)
        self.assertEqual(report["orphans"]["samples"][0]["key"], orphan)
        self.assertEqual(pattern_row(report, P_CURRENT)["keys"], 600)
        for node in report["nodes"]:
            self.assertEqual(node["keys"], dbsize[node["address"]], node)
        for m in masters:
            delta = command_calls(self.node_conn(m), "scan") - scans_before[m.address]
            reported = [n for n in report["nodes"] if n["address"] == m.address][0]
            self.assertEqual(delta, reported["scanCalls"], m.address)
            self.assertGreater(delta, 0)
        for r in replicas:
            self.assertEqual(command_calls(self.node_conn(r), "scan") - scans_before[r.address],
                             0, f"replica {r.address} was scanned")


if __name__ == "__main__":
    h.main()
