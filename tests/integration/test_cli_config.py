#!/usr/bin/python3
"""keygate's command line and config file: --help/--version, strict validation with every error
reported as file:line:col: path: message, exit code 2, and a full valid config accepted."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

import keygate_harness as h

# Each error line: (1-based line, YAML path, expected column or None when either the key's or
# the value's column is acceptable). Lines not listed are valid.
INVALID_CONFIG = """\
listen: 127.0.0.1:6380
threads: many
bogusKey: 1
log:
  level: loud
  format: xml
upstream:
  mode: standalone
  address: "127.0.0.1:notaport"
  connectTimeout: 5 parsecs
limits:
  maxClients: -3
  maxBulkBytes: 16 MiBs
  maxNestingDepthh: 3
shutdown:
  drainTimeout: soon
"""
INVALID_CONFIG_ERRORS = [
    (2, "threads", None),
    (3, "bogusKey", 1),
    (5, "log.level", None),
    (6, "log.format", None),
    (9, "upstream.address", None),
    (10, "upstream.connectTimeout", None),
    (12, "limits.maxClients", None),
    (13, "limits.maxBulkBytes", None),
    (14, "limits.maxNestingDepthh", 3),
    (16, "shutdown.drainTimeout", None),
]

FULL_CONFIG = """\
listen: 127.0.0.1:6380
threads: 2
log:
  level: info
  format: json
upstream:
  mode: standalone
  address: 127.0.0.1:6379
  connectTimeout: 500ms
  connectionsPerWorker: 2
limits:
  maxClients: 1000
  maxBulkBytes: 16MiB
  maxArrayElements: 100000
  maxNestingDepth: 16
  maxInlineBytes: 64KiB
  maxClientOutputBytes: 8MiB
  maxPipelinedRequests: 512
shutdown:
  drainTimeout: 5s
"""


class CliTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="keygate-cli-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_cli(self, *args):
        try:
            proc = h.run_keygate_cli(args, timeout=h.scaled(10), cwd=self.dir)
        except subprocess.TimeoutExpired as exc:
            self.fail(f"keygate {' '.join(args)} still running after {exc.timeout:.0f}s "
                      f"(expected it to exit)\nstderr: {exc.stderr!r}")
        return proc.returncode, proc.stdout.decode("utf-8", "replace"), \
            proc.stderr.decode("utf-8", "replace")

    def assert_no_sanitizer_report(self, stderr: str):
        self.assertIsNone(h.SANITIZER_PATTERNS.search(stderr.encode()), stderr)

    def test_help(self):
        code, out, err = self.run_cli("--help")
        self.assertEqual(code, 0, err)
        for flag in ("--config", "--listen", "--upstream", "--admin", "--threads", "--log-level",
                     "--log-format", "--help", "--version"):
            self.assertIn(flag, out, f"--help does not mention {flag}:\n{out}")
        self.assert_no_sanitizer_report(err)

    def test_version(self):
        code, out, err = self.run_cli("--version")
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"\d+\.\d+\.\d+")
        self.assert_no_sanitizer_report(err)

    def test_invalid_config_reports_every_error_with_position(self):
        path = self.write("bad.yaml", INVALID_CONFIG)
        code, out, err = self.run_cli("--config", path)
        self.assertEqual(code, 2, f"exit code {code}, expected 2\nstderr:\n{err}")
        lines = INVALID_CONFIG.splitlines()
        reported = []
        for line_no, yaml_path, column in INVALID_CONFIG_ERRORS:
            pattern = re.compile(rf"^{re.escape(path)}:{line_no}:(\d+): {re.escape(yaml_path)}: \S",
                                 re.M)
            m = pattern.search(err)
            self.assertIsNotNone(m, f"no '{path}:{line_no}:COL: {yaml_path}: ...' error "
                                    f"(line {line_no}: {lines[line_no - 1]!r})\nstderr:\n{err}")
            col = int(m.group(1))
            text = lines[line_no - 1]
            key_col = len(text) - len(text.lstrip()) + 1
            value_col = text.index(":") + 2 + 1 if ": " in text else key_col
            if column is not None:
                self.assertEqual(col, column, f"column of error on line {line_no}:\n{err}")
            else:
                self.assertIn(col, (key_col, value_col),
                              f"column {col} on line {line_no} points at neither the key "
                              f"({key_col}) nor the value ({value_col}):\n{err}")
            reported.append((m.start(), line_no))
        # All errors at once, in file order.
        self.assertEqual([ln for _, ln in sorted(reported)], [ln for ln, _, _ in
                                                               INVALID_CONFIG_ERRORS], err)
        self.assert_no_sanitizer_report(err)

    def test_yaml_syntax_error(self):
        path = self.write("syntax.yaml", "listen: 127.0.0.1:6380\nlimits: [unclosed\n")
        code, out, err = self.run_cli("--config", path)
        self.assertEqual(code, 2, err)
        self.assertRegex(err, rf"(?m)^{re.escape(path)}:\d+:\d+: ", err)
        self.assert_no_sanitizer_report(err)

    def test_wrong_types(self):
        path = self.write("types.yaml", "limits: 5\nlog: [level]\nthreads: [1, 2]\n")
        code, out, err = self.run_cli("--config", path)
        self.assertEqual(code, 2, err)
        for line_no, yaml_path in ((1, "limits"), (2, "log"), (3, "threads")):
            self.assertRegex(err, rf"(?m)^{re.escape(path)}:{line_no}:\d+: {yaml_path}: \S", err)
        self.assert_no_sanitizer_report(err)

    def test_missing_config_file(self):
        path = os.path.join(self.dir, "does-not-exist.yaml")
        code, out, err = self.run_cli("--config", path)
        self.assertEqual(code, 2, err)
        self.assertIn(path, err)
        self.assert_no_sanitizer_report(err)

    def test_bad_flags(self):
        for args, mention in ((["--threads", "abc"], "--threads"),
                              (["--log-format", "xml"], "--log-format"),
                              (["--log-level", "loud"], "--log-level"),
                              (["--listen", "nohostport"], "--listen"),
                              (["--upstream", "127.0.0.1:99999"], "--upstream"),
                              (["--no-such-flag"], "--no-such-flag"),
                              (["--config"], "--config")):
            with self.subTest(args=args):
                code, out, err = self.run_cli(*args)
                self.assertEqual(code, 2, f"{args}: exit {code}\nstdout: {out}\nstderr: {err}")
                self.assertIn(mention, err)
                self.assert_no_sanitizer_report(err)

    def test_flags_checked_together_with_file(self):
        path = self.write("bad2.yaml", "threads: many\n")
        code, out, err = self.run_cli("--config", path, "--log-format", "xml")
        self.assertEqual(code, 2, err)
        self.assertRegex(err, rf"(?m)^{re.escape(path)}:1:\d+: threads: \S")
        self.assertIn("--log-format", err)


class FullConfigTest(h.KeygateTestCase):
    """Every documented key accepted; flags (--listen, --upstream from the harness) override."""

    keygate_config = FULL_CONFIG

    def test_runs_with_full_config(self):
        c = self.kg()
        self.assertEqual(c.call("SET", "cfg", "ok"), "OK")
        self.assertEqual(self.direct().call("GET", "cfg"), b"ok")
        c.send_many([("INCR", "n")] * 600)  # more than maxPipelinedRequests
        self.assertEqual([c.read() for _ in range(600)], list(range(1, 601)))

    def test_max_bulk_bytes_from_config(self):
        # maxBulkBytes: 16MiB -> a 20 MiB bulk is a protocol error, refused before buffering.
        with self.keygate.client(timeout=h.scaled(10)) as c:
            c.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (20 * 1024 * 1024))
            reply = c.read_raw()
            self.assertTrue(reply.startswith(b"-ERR Protocol error"), reply)
            self.assertTrue(c.wait_closed(h.scaled(5)))
        # Just under the limit works.
        with self.keygate.client(timeout=h.scaled(30)) as c:
            value = b"v" * (15 * 1024 * 1024)
            self.assertEqual(c.call("SET", "k", value), "OK")
            self.assertTrue(c.call("GET", "k") == value)

    def test_json_log_format(self):
        log = self.keygate.log_text().strip().splitlines()
        self.assertTrue(log, "keygate logged nothing at startup")
        self.assertTrue(log[0].lstrip().startswith("{"), f"log.format json, got: {log[0]!r}")


if __name__ == "__main__":
    h.main()
