#!/usr/bin/python3
"""redis-benchmark through keygate: the default test list and a pipelined GET/SET run.

These are correctness runs (every test completes, no error lines, every line has a rate), not
performance measurements; bench/compare.sh measures performance.
"""

import re
import subprocess
import time

import keygate_harness as h

# redis-benchmark 7.0's default test list as printed with -q.
DEFAULT_TESTS = [
    "PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP", "RPOP", "SADD",
    "HSET", "SPOP", "ZADD", "ZPOPMIN", "LPUSH (needed to benchmark LRANGE)",
    "LRANGE_100 (first 100 elements)", "LRANGE_300 (first 300 elements)",
    "LRANGE_500 (first 500 elements)", "LRANGE_600 (first 600 elements)", "MSET (10 keys)",
]

RESULT_LINE = re.compile(r"^(?P<name>[A-Z0-9_]+(?: \([^)]*\))?): (?P<rate>[0-9.]+) requests per second")
PROGRESS_LINE = re.compile(r"^\S.*: rps=[0-9.nan-]+ \(overall: .*\) avg_msec=")
ERROR_LINE = re.compile(r"(?i)error|\bERR\b|could not|warning|refused|reset|timeout|unexpected")


def parse_output(text: str):
    """Splits redis-benchmark -q output (progress lines end in \\r) into results and others."""
    results, others = {}, []
    for raw in re.split(r"[\r\n]+", text):
        line = raw.strip()
        if not line:
            continue
        m = RESULT_LINE.match(line)
        if m:
            results.setdefault(m.group("name"), []).append(float(m.group("rate")))
        elif not PROGRESS_LINE.match(line):
            others.append(line)
    return results, others


class RedisBenchmarkTest(h.KeygateTestCase):

    # How keygate says it makes its socket calls (config `ioUring`): its startup log line and
    # the workers the metric counts. The test machines allow io_uring, so the default is the
    # batched path, on both workers.
    extra_config = ""
    socket_calls = "socket calls batched with io_uring"
    io_uring_workers = 2
    keygate_args = ("--threads", "2")

    @classmethod
    def setUpClass(cls) -> None:
        cls.admin_port = h.free_port()
        cls.keygate_config = f"admin: {h.HOST}:{cls.admin_port}\n{cls.extra_config}"
        super().setUpClass()

    def test_startup_log_and_metric_name_the_socket_calls(self):
        h.wait_until(lambda: "listening on" in self.keygate.log_text(), h.scaled(10),
                     message="keygate's startup log line")
        self.assertIn(self.socket_calls, self.keygate.log_text())
        metrics = h.admin_metrics(self.admin_port)
        self.assertEqual(h.metric(metrics, "keygate_io_uring_workers"), self.io_uring_workers)

    def benchmark(self, *args, timeout: float) -> str:
        cmd = [h.tool_bin("redis-benchmark"), "-h", h.HOST, "-p", str(self.keygate.port), "-q",
               *args]
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=h.scaled(timeout))
        except subprocess.TimeoutExpired as exc:
            self.fail(f"{' '.join(cmd)} did not finish in {h.scaled(timeout):.0f}s "
                      f"(a lost reply stalls it)\npartial output: {exc.stdout!r}")
        out = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
        print(f"{' '.join(cmd)}: {time.monotonic() - start:.1f}s")
        self.assertEqual(proc.returncode, 0, f"redis-benchmark exited {proc.returncode}\n{out}")
        return out

    def check(self, out: str, expected_names):
        results, others = parse_output(out)
        for name, rates in sorted(results.items()):
            print(f"  {name}: {rates[0]:.0f} requests/s")
        errors = [line for line in others if ERROR_LINE.search(line)]
        self.assertEqual(errors, [], f"error lines in redis-benchmark output:\n{out}")
        if others:
            print("other output lines:", others)
        self.assertEqual(sorted(results), sorted(expected_names), f"test list differs:\n{out}")
        for name, rates in results.items():
            self.assertEqual(len(rates), 1, f"{name} reported twice:\n{out}")
            self.assertGreater(rates[0], 0, f"{name} has no rate:\n{out}")

    def test_default_test_list(self):
        out = self.benchmark("-n", "20000", timeout=400)
        self.check(out, DEFAULT_TESTS)
        # The data really went to Redis: the benchmark's counter holds one INCR per request.
        self.assertEqual(self.direct().call("GET", "counter:__rand_int__"), b"20000")

    def test_pipelined_get_set(self):
        out = self.benchmark("-n", "20000", "-P", "16", "-t", "get,set", timeout=200)
        self.check(out, ["SET", "GET"])
        # SET writes a 3-byte value (-d default) under key:__rand_int__ (-r not given).
        self.assertEqual(len(self.direct().call("GET", "key:__rand_int__")), 3)


class RedisBenchmarkPlainSystemCallsTest(RedisBenchmarkTest):
    """The same runs with `ioUring: false`: one system call per socket read and write, the
    path keygate takes by itself where a seccomp profile refuses io_uring."""

    extra_config = "ioUring: false\n"
    socket_calls = "socket calls one system call each (ioUring: false)"
    io_uring_workers = 0


if __name__ == "__main__":
    h.main()
