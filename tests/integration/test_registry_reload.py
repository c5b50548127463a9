"""Registry hot reload under load (issue 4 acceptance).

redis-benchmark (`-t set,get`, keys `key:<12 digits>`) runs through keygate while the registry
file is replaced 100 times, valid and invalid versions alternating, the way a ConfigMap update or
an editor does it (a new file renamed over the old one; a `..data` symlink swapped to a new
timestamped directory). Checked: redis-benchmark completes every run with no error reply (it exits
at the first one), Redis' own command and error counters agree, keygate refused nothing but the
CONFIG GET redis-benchmark sends at start, every key it wrote carries a TTL of a *valid* version,
the reload counters grew, and the rules in force afterwards are the last valid file's. Then SIGHUP
and `POST /reload` each apply a new file, and `POST /reload` of an invalid file answers 422 and
keeps the rules.

The TTL default is what makes the version in force observable: valid versions inject
1000 s + i, the last one 7777 s (+ 2 s jitter); invalid versions carry TTLs of 9000 s and more,
so a key with such a TTL would mean an invalid file was put in force.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
from typing import Dict, List, Optional, Tuple

import keygate_harness as h

SECOND_MS = 1000
LAST_DEFAULT_S = 7777       # the distinctive TTL default of the last valid version
LAST_JITTER_S = 2
LAST_MAX_VALUE = 100        # its maxValueBytes: a 200-byte SET is refused, a 50-byte one not
INVALID_TTL_FLOOR_S = 9000  # every invalid version's TTLs are at least this
TTL_SLACK_MS = 15 * SECOND_MS  # PTTL counts down between the write and the read (ASan, load)

KEYSPACE = 10000
BENCH_N = 30000  # per run, per test (SET and GET): ~1 s through the ASan build


def entry(pattern: str, ttl: str, max_value: str = "1KiB", extra: str = "") -> str:
    return (f'  - pattern: "{pattern}"\n'
            f"    owner: benchmark\n"
            f"    purpose: redis-benchmark keys for the reload test\n"
            f"    authority: false\n"
            f"    maxValueBytes: {max_value}\n"
            f"    ttl: {ttl}\n{extra}")


# Patterns of other shapes, so a version is more than one line and reloads compile something.
OTHER_PATTERNS = "".join(
    entry(f"app{i}:{{tenant-<tenant>}}:item:<id:int>", "{default: 5m, jitter: 30s}")
    for i in range(20))


def valid_registry(default_s: int, jitter_ms: int = 500, max_value: str = "1KiB") -> str:
    return ("version: 1\nmode: enforce\npatterns:\n"
            + entry("key:<n:int>", f"{{default: {default_s}s, jitter: {jitter_ms}ms}}", max_value)
            + OTHER_PATTERNS)


def invalid_registry(kind: int) -> str:
    """Seven kinds of broken file, each with TTLs >= INVALID_TTL_FLOOR_S where it has any."""
    ttl = INVALID_TTL_FLOOR_S + 100 * kind
    head = "version: 1\nmode: enforce\npatterns:\n"
    kind %= 7
    if kind == 0:  # a bad duration
        return head + entry("key:<n:int>", f"{{default: {ttl}s, jitter: 5x}}") + OTHER_PATTERNS
    if kind == 1:  # two patterns that can match the same key (a compile-time error)
        return (head + entry("key:<n:int>", f"{{default: {ttl}s}}")
                + entry("key:<m>", f"{{default: {ttl}s}}") + OTHER_PATTERNS)
    if kind == 2:  # jitter not under default
        return head + entry("key:<n:int>", f"{{default: {ttl}s, jitter: {ttl}s}}") + OTHER_PATTERNS
    if kind == 3:  # a misspelt key
        return (head + entry("key:<n:int>", f"{{default: {ttl}s}}").replace("owner:", "ownr:")
                + OTHER_PATTERNS)
    if kind == 4:  # a cache pattern without a TTL contract
        return head + entry("key:<n:int>", f"{{default: {ttl}s}}").replace(
            f"    ttl: {{default: {ttl}s}}\n", "") + OTHER_PATTERNS
    if kind == 5:  # empty (a truncated write or a failed mount)
        return ""
    return head + entry("key:<n:int>", f"{{default: {ttl}s") + OTHER_PATTERNS  # YAML syntax


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def atomic_write(path: str, text: str) -> None:
    """Writes a temp file in the same directory and renames it over `path` (as editors do)."""
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".registry-", suffix=".tmp", dir=d)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ConfigMapDir:
    """A Kubernetes ConfigMap volume: FILE -> ..data/FILE, ..data -> ..<timestamp>/.

    `update()` does what the kubelet's atomic writer does: writes a new timestamped directory,
    points a `..data_tmp` symlink at it, renames that over `..data` and removes the old one.
    """

    def __init__(self, root: str, name: str = "registry.yaml"):
        self.root = root
        self.name = name
        self.seq = 0
        self.current: Optional[str] = None
        os.makedirs(root, exist_ok=True)

    @property
    def path(self) -> str:
        return os.path.join(self.root, self.name)

    def update(self, text: str) -> None:
        self.seq += 1
        stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{os.getpid()}_{self.seq:04d}"
        new_dir = os.path.join(self.root, stamp)
        os.mkdir(new_dir)
        with open(os.path.join(new_dir, self.name), "w") as f:
            f.write(text)
        tmp_link = os.path.join(self.root, "..data_tmp")
        os.symlink(stamp, tmp_link)
        os.replace(tmp_link, os.path.join(self.root, "..data"))
        if not os.path.islink(self.path):
            os.symlink(os.path.join("..data", self.name), self.path)
        if self.current:
            shutil.rmtree(os.path.join(self.root, self.current))
        self.current = stamp


def http_request(port: int, method: str, path: str, timeout: float) -> Tuple[int, str]:
    conn = http.client.HTTPConnection(h.HOST, port, timeout=timeout)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def value(m: Dict[h.MetricKey, float], name: str, default: Optional[float] = None) -> float:
    """An unlabelled sample; missing is an error unless a default is given."""
    v = h.metric(m, name)
    if v is None:
        if default is None:
            raise AssertionError(f"{name} is not in keygate /metrics")
        return default
    return v


def refusals_other_than_denied(m: Dict[h.MetricKey, float]) -> Dict[h.MetricKey, float]:
    return {k: v for k, v in m.items()
            if k[0] == "keygate_registry_refused_total" and ("reason", "denied") not in k[1]
            and v}


def redis_info(conn: h.RespConnection, section: str) -> Dict[str, str]:
    text = conn.call("INFO", section).decode()
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def cmdstat_calls(stats: Dict[str, str], command: str) -> Dict[str, int]:
    raw = stats.get(f"cmdstat_{command}", "")
    return {k: int(float(v)) for k, v in re.findall(r"(\w+)=([0-9.]+)", raw)}


class BenchmarkLoop:
    """Runs bounded redis-benchmark runs back to back until stopped (at least `min_runs`)."""

    def __init__(self, port: int, n: int = BENCH_N, min_runs: int = 1):
        self.port = port
        self.n = n
        self.min_runs = min_runs
        self.stop = threading.Event()
        self.runs: List[subprocess.CompletedProcess] = []
        self.exception: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="redis-benchmark", daemon=True)

    def start(self) -> "BenchmarkLoop":
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self.stop.is_set() or len(self.runs) < self.min_runs:
                self.runs.append(subprocess.run(
                    [h.tool_bin("redis-benchmark"), "-h", h.HOST, "-p", str(self.port),
                     "-t", "set,get", "-n", str(self.n), "-r", str(KEYSPACE), "-c", "20",
                     "-P", "4", "--csv"],
                    stdin=subprocess.DEVNULL, capture_output=True, timeout=h.scaled(90)))
                if self.runs[-1].returncode != 0:
                    return  # it exits at the first error reply; nothing to gain from more runs
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.exception = exc

    def finish(self, test: unittest.TestCase) -> int:
        """Stops after the current run; asserts every run was clean. Returns the runs' count."""
        self.stop.set()
        self.thread.join(h.scaled(120))
        test.assertFalse(self.thread.is_alive(), "redis-benchmark loop did not finish in time")
        if self.exception is not None:
            raise self.exception
        test.assertGreaterEqual(len(self.runs), self.min_runs)
        for i, r in enumerate(self.runs):
            out, err = r.stdout.decode(), r.stderr.decode()
            detail = f"run {i + 1}/{len(self.runs)}: rc={r.returncode}\n{out}\n{err}"
            # redis-benchmark 7.0 exits 1 at the first error reply, printing "Error from server".
            self.assert_no_errors(test, out + err, detail)
            test.assertEqual(r.returncode, 0, detail)
            rows = {line.split(",")[0].strip('"') for line in out.splitlines()[1:] if line}
            test.assertEqual(rows, {"SET", "GET"}, detail)
        return len(self.runs)

    @staticmethod
    def assert_no_errors(test: unittest.TestCase, text: str, detail: str) -> None:
        errors = [line for line in text.splitlines()
                  if re.search(r"(?i)error", line) and "Could not fetch server CONFIG" not in line]
        test.assertEqual(errors, [], detail)


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


class RegistryReloadTest(h.KeygateTestCase):
    registry_dir: str
    registry_path: str
    admin_port: int

    @classmethod
    def setUpClass(cls) -> None:
        cls.registry_dir = tempfile.mkdtemp(prefix="keygate-it-registry-")
        cls.addClassCleanup(shutil.rmtree, cls.registry_dir, True)
        cls.registry_path = os.path.join(cls.registry_dir, "registry.yaml")
        atomic_write(cls.registry_path, valid_registry(900))
        cls.admin_port = h.free_port()
        cls.keygate_config = (f"threads: 2\nadmin: {h.HOST}:{cls.admin_port}\n"
                              f"registry: {cls.registry_path}\n")
        super().setUpClass()

    # SETs this test sent through keygate (for the commandstats comparison).
    probe_sets = 0

    # -- helpers
    def ttl_of_new_write(self, kg_port: int, key: str, value: bytes = b"v") -> object:
        """SETs `key` through keygate without a TTL, returns its PTTL read straight from Redis."""
        with h.RespConnection(kg_port, timeout=h.scaled(10)) as c:
            reply = c.call("SET", key, value)
        if reply != "OK":
            return reply
        self.probe_sets += 1
        with self.redis.client(timeout=h.scaled(10)) as r:
            return r.call("PTTL", key)

    def wait_ttl_default(self, kg_port: int, default_s: int, jitter_ms: int,
                         what: str) -> int:
        lo, hi = default_s * SECOND_MS - TTL_SLACK_MS, default_s * SECOND_MS + jitter_ms
        seen = []

        def in_force() -> bool:
            t = self.ttl_of_new_write(kg_port, "key:000000099999")
            seen.append(t)
            return isinstance(t, int) and lo <= t <= hi

        h.wait_until(in_force, h.scaled(10),
                     message=f"{what}: PTTL of a new write in [{lo}, {hi}] ms (last seen: "
                             f"{seen[-3:]})")
        return seen[-1]

    def check_benchmark_keys(self, allowed_ms: List[Tuple[int, int]]) -> int:
        """Every key:* in Redis has a PTTL within one of `allowed_ms`; returns how many keys."""
        r = self.direct(timeout=30)
        keys: List[bytes] = []
        cursor = b"0"
        for _ in range(10000):
            cursor, batch = r.call("SCAN", cursor, "MATCH", "key:*", "COUNT", "1000")
            keys += batch
            if cursor == b"0":
                break
        r.send_many([("PTTL", k) for k in keys])
        bad = []
        for k in keys:
            t = r.read()
            if not any(lo <= t <= hi for lo, hi in allowed_ms):
                bad.append((k.decode(), t))
        self.assertEqual(bad[:20], [], f"{len(bad)} of {len(keys)} benchmark keys have a PTTL "
                                       f"outside {allowed_ms} (-1: no TTL)")
        return len(keys)

    def run_reloads_under_load(self, kg_port: int, admin_port: int, write, versions: int,
                               pause: float) -> None:
        """The common body: redis-benchmark through `kg_port` while `write(text)` puts
        `versions` versions in place, invalid first, alternating, the last valid (7777 s)."""
        direct = self.direct()
        self.assertEqual(direct.call("CONFIG", "RESETSTAT"), "OK")
        self.probe_sets = 0
        m0 = h.admin_metrics(admin_port)
        bench = BenchmarkLoop(kg_port, min_runs=2).start()
        try:
            # Wait until redis-benchmark's SETs reach Redis, so the writes overlap the load.
            h.wait_until(lambda: cmdstat_calls(redis_info(direct, "commandstats"),
                                               "set").get("calls", 0) > 1000,
                         h.scaled(20), message="redis-benchmark SETs reaching Redis")
            written: List[str] = []
            writer_error: List[BaseException] = []

            def writer() -> None:
                try:
                    for i in range(versions):
                        if i == versions - 1:
                            text, kind = valid_registry(LAST_DEFAULT_S, LAST_JITTER_S * SECOND_MS,
                                                        f"{LAST_MAX_VALUE}B"), "last valid"
                        elif i % 2 == 0:
                            text, kind = invalid_registry(i // 2), "invalid"
                        else:
                            text, kind = valid_registry(1000 + i), "valid"
                        write(text)
                        written.append(kind)
                        time.sleep(pause)
                except BaseException as exc:  # noqa: BLE001
                    writer_error.append(exc)

            t = threading.Thread(target=writer, name="registry-writer", daemon=True)
            started = time.monotonic()
            t.start()
            t.join(h.scaled(60))
            self.assertFalse(t.is_alive(), "the registry writer did not finish in time")
            if writer_error:
                raise writer_error[0]
            write_seconds = time.monotonic() - started
            self.assertEqual(len(written), versions)
            # The loop only ends early when a run fails; finish() then says why.
            load_throughout = bench.thread.is_alive()
        finally:
            bench.stop.set()
        runs = bench.finish(self)
        self.assertTrue(load_throughout, "redis-benchmark stopped before the last write")
        invalid = written.count("invalid")

        # The rules in force are the last valid file's: its TTL...
        ttl = self.wait_ttl_default(kg_port, LAST_DEFAULT_S, LAST_JITTER_S * SECOND_MS,
                                    "after the last write")

        # Counters: failures for the invalid versions, reloads for the valid ones.
        m1 = h.admin_metrics(admin_port)
        failures = (value(m1, "keygate_registry_reload_failures_total")
                    - value(m0, "keygate_registry_reload_failures_total"))
        reloads = (value(m1, "keygate_registry_reloads_total")
                   - value(m0, "keygate_registry_reloads_total"))
        print(f"\n  {versions} versions ({invalid} invalid) in {write_seconds:.1f}s under "
              f"{runs} redis-benchmark runs of {BENCH_N} SET + {BENCH_N} GET: reloads "
              f"+{reloads:.0f}, failures +{failures:.0f}; PTTL after the last write {ttl} ms",
              flush=True)
        self.assertGreaterEqual(reloads, 1)
        self.assertLessEqual(reloads, versions - invalid)
        self.assertGreaterEqual(failures, 1)
        self.assertEqual(value(m1, "keygate_registry_patterns"), 21)
        # Nothing refused but redis-benchmark's CONFIG GET at start (a default-denied command).
        self.assertEqual(refusals_other_than_denied(m1), refusals_other_than_denied(m0))
        self.assertEqual(value(m1, "keygate_upstream_unavailable_replies_total", 0),
                         value(m0, "keygate_upstream_unavailable_replies_total", 0))

        # ...and its size limit.
        with h.RespConnection(kg_port, timeout=h.scaled(10)) as c:
            big = c.call("SET", "key:000000088888", b"x" * (2 * LAST_MAX_VALUE))
            small = c.call("SET", "key:000000088889", b"x" * (LAST_MAX_VALUE // 2))
        self.probe_sets += 1  # the small one (the big one never reaches Redis)
        self.assertIsInstance(big, h.ErrorReply)
        self.assertTrue(big.startswith("VALUETOOLARGE"), big)
        self.assertEqual(small, "OK")
        self.assertEqual(direct.call("EXISTS", "key:000000088888"), 0)

        # Redis saw exactly the benchmark's requests (plus this test's SETs), and no error.
        stats = redis_info(direct, "commandstats")
        sets, gets = cmdstat_calls(stats, "set"), cmdstat_calls(stats, "get")
        self.assertEqual(sets.get("calls"), runs * BENCH_N + self.probe_sets,
                         stats.get("cmdstat_set"))
        self.assertEqual(gets.get("calls"), runs * BENCH_N, stats.get("cmdstat_get"))
        for s in (sets, gets):
            self.assertEqual(s.get("failed_calls", 0), 0, stats)
            self.assertEqual(s.get("rejected_calls", 0), 0, stats)
        self.assertEqual(redis_info(direct, "errorstats"), {})
        self.assertEqual(redis_info(direct, "stats").get("total_error_replies"), "0")

        # Every key written carries a TTL of a valid version: 1000..1099 s while the versions
        # alternated, 7777 s after the last one; never none (-1), never an invalid one's 9000+.
        n = self.check_benchmark_keys([
            (1, (1000 + versions) * SECOND_MS + 500),
            (LAST_DEFAULT_S * SECOND_MS - 2 * TTL_SLACK_MS,
             (LAST_DEFAULT_S + LAST_JITTER_S) * SECOND_MS)])
        self.assertGreater(n, KEYSPACE // 2)

        # At most one failure per invalid version (fewer when inotify events coalesce): another
        # event in the directory (the next version's temp file or timestamped directory being
        # created) that makes keygate re-read an invalid file it has already refused is not a
        # new failure, and should not log that file's errors again.
        self.assertLessEqual(failures, invalid,
                             f"{failures:.0f} reload failures counted for {invalid} invalid "
                             f"versions: the same invalid file was refused more than once")

    def test_1_reload_under_load_file_renamed(self) -> None:
        """100 versions renamed over the registry file while redis-benchmark runs."""
        self.run_reloads_under_load(self.keygate.port, self.admin_port,
                                    lambda text: atomic_write(self.registry_path, text),
                                    versions=100, pause=0.02)

    def test_2_reload_under_load_configmap_symlink_swap(self) -> None:
        """40 versions swapped in as a ConfigMap update does (..data symlink) under load."""
        cm = ConfigMapDir(tempfile.mkdtemp(prefix="configmap-", dir=self.workdir))
        cm.update(valid_registry(950))
        self.assertTrue(os.path.islink(cm.path))
        admin = h.free_port()
        kg = self.start_private_keygate(
            config=f"threads: 2\nadmin: {h.HOST}:{admin}\nregistry: {cm.path}\n",
            name="keygate-configmap")
        self.wait_ttl_default(kg.port, 950, 500, "initial ConfigMap version")
        self.run_reloads_under_load(kg.port, admin, cm.update, versions=40, pause=0.03)
        kg.check_clean_exit()

    def test_3_sighup_and_post_reload(self) -> None:
        """SIGHUP and POST /reload apply a new file; POST /reload of a bad one answers 422.

        The registry path is a symlink into a directory keygate does not watch, so only the
        explicit triggers can pick a change up.
        """
        real_dir = tempfile.mkdtemp(prefix="unwatched-", dir=self.workdir)
        real = os.path.join(real_dir, "registry.yaml")
        atomic_write(real, valid_registry(1200))
        link_dir = tempfile.mkdtemp(prefix="watched-", dir=self.workdir)
        link = os.path.join(link_dir, "registry.yaml")
        os.symlink(real, link)
        admin = h.free_port()
        kg = self.start_private_keygate(
            config=f"threads: 2\nadmin: {h.HOST}:{admin}\nregistry: {link}\n",
            name="keygate-sighup")
        self.wait_ttl_default(kg.port, 1200, 500, "initial version")
        m0 = h.admin_metrics(admin)

        # A change in the unwatched directory is not picked up by itself (keygate watches the
        # directory of the configured path; this test relies on that to isolate SIGHUP)...
        atomic_write(real, valid_registry(1300))
        time.sleep(0.3)
        t = self.ttl_of_new_write(kg.port, "key:000000077777")
        self.assertTrue(1200 * SECOND_MS - TTL_SLACK_MS <= t <= 1200 * SECOND_MS + 500,
                        f"precondition: a change outside the watched directory was applied "
                        f"without a trigger (PTTL {t})")
        # ...SIGHUP applies it.
        kg.signal(signal.SIGHUP)
        self.wait_ttl_default(kg.port, 1300, 500, "after SIGHUP")

        # POST /reload applies the next one and says so.
        atomic_write(real, valid_registry(1400))
        status, body = http_request(admin, "POST", "/reload", h.scaled(10))
        self.assertEqual(status, 200, body)
        self.assertTrue(body.startswith("reloaded: "), body)
        self.wait_ttl_default(kg.port, 1400, 500, "after POST /reload")
        # The same content again: 200, unchanged.
        status, body = http_request(admin, "POST", "/reload", h.scaled(10))
        self.assertEqual((status, body.split(":")[0]), (200, "unchanged"), body)
        # GET /reload is not a reload.
        status, _ = http_request(admin, "GET", "/reload", h.scaled(10))
        self.assertEqual(status, 405)

        # An invalid file: 422 naming the error, rules unchanged; SIGHUP likewise keeps them.
        atomic_write(real, invalid_registry(0))
        status, body = http_request(admin, "POST", "/reload", h.scaled(10))
        self.assertEqual(status, 422, body)
        self.assertTrue(body.startswith("invalid: "), body)
        self.assertIn("ttl.jitter", body)
        kg.signal(signal.SIGHUP)
        h.wait_until(lambda: value(h.admin_metrics(admin), "keygate_registry_reload_failures_total")
                     >= value(m0, "keygate_registry_reload_failures_total") + 2,
                     h.scaled(5), message="two reload failures counted")
        self.wait_ttl_default(kg.port, 1400, 500, "after the invalid file")
        atomic_write(real, invalid_registry(1))  # overlapping patterns
        status, body = http_request(admin, "POST", "/reload", h.scaled(10))
        self.assertEqual(status, 422, body)
        self.assertTrue(kg.running())
        self.wait_ttl_default(kg.port, 1400, 500, "after the overlapping file")

        m1 = h.admin_metrics(admin)
        self.assertEqual(value(m1, "keygate_registry_reloads_total")
                         - value(m0, "keygate_registry_reloads_total"), 2)
        self.assertEqual(value(m1, "keygate_registry_reload_failures_total")
                         - value(m0, "keygate_registry_reload_failures_total"), 3)
        log = kg.log_text()
        self.assertIn("(SIGHUP)", log)
        self.assertIn("(POST /reload)", log)
        self.assertIn("the rules in force stay as they were", log)
        kg.check_clean_exit()


if __name__ == "__main__":
    h.main()
