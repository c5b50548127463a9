#!/usr/bin/python3
"""redis-cli through keygate: plain commands, RESP3 (`redis-cli -3`) map output, `--pipe` mode."""

import subprocess

import keygate_harness as h


class RedisCliTest(h.KeygateTestCase):

    def cli(self, *args, stdin: bytes = None, timeout: float = 30) -> subprocess.CompletedProcess:
        cmd = [h.tool_bin("redis-cli"), "-h", h.HOST, "-p", str(self.keygate.port), *args]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=h.scaled(timeout))
        self.assertEqual(proc.returncode, 0,
                         f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout!r}\n"
                         f"stderr: {proc.stderr!r}")
        return proc

    def test_set_get(self):
        self.assertEqual(self.cli("SET", "a", "b").stdout, b"OK\n")
        self.assertEqual(self.cli("GET", "a").stdout, b"b\n")
        # The value really is in Redis, not only in keygate.
        self.assertEqual(self.direct().call("GET", "a"), b"b")
        self.assertEqual(self.cli("--no-raw", "GET", "nosuchkey").stdout, b"(nil)\n")
        self.assertEqual(self.cli("--no-raw", "INCR", "n").stdout, b"(integer) 1\n")
        self.assertEqual(self.cli("PING").stdout, b"PONG\n")

    def test_resp3_hello_and_map_output(self):
        # redis-cli -3 opens the connection with HELLO 3; an explicit HELLO 3 shows the map.
        out = self.cli("-3", "--no-raw", "HELLO", "3").stdout.decode()
        self.assertRegex(out, r'(?m)^\s*\d+# "server" => ', out)
        self.assertRegex(out, r'(?m)^\s*\d+# "proto" => \(integer\) 3$', out)
        for field in ("version", "id", "mode", "role", "modules"):
            self.assertRegex(out, rf'(?m)^\s*\d+# "{field}" => ', out)

        self.assertEqual(self.cli("HSET", "h", "f1", "v1", "f2", "v2").stdout, b"2\n")
        out = self.cli("-3", "--no-raw", "HGETALL", "h").stdout.decode()
        self.assertEqual(out, '1# "f1" => "v1"\n2# "f2" => "v2"\n')
        out = self.cli("-3", "--no-raw", "ZADD", "z", "1.5", "m").stdout.decode()
        self.assertEqual(out, "(integer) 1\n")
        out = self.cli("-3", "--no-raw", "ZSCORE", "z", "m").stdout.decode()
        self.assertEqual(out, "(double) 1.5\n")
        self.cli("SADD", "s", "x")
        self.assertEqual(self.cli("-3", "--no-raw", "SMEMBERS", "s").stdout, b'1~ "x"\n')
        self.assertEqual(self.cli("-3", "--no-raw", "GET", "nosuchkey").stdout, b"(nil)\n")

    def test_pipe_mode(self):
        n = 5000
        parts = []
        for i in range(n):
            if i % 5 == 4:
                parts.append(h.encode_command("INCR", "pipe:counter"))
            elif i % 5 == 3:
                parts.append(h.encode_command("RPUSH", "pipe:list", f"e{i}"))
            else:
                parts.append(h.encode_command("SET", f"pipe:k:{i}", f"value-{i}"))
        out = self.cli("--pipe", stdin=b"".join(parts), timeout=120).stdout.decode()
        self.assertIn("errors: 0, replies: %d" % n, out, out)
        self.assertIn("Last reply received from server.", out, out)

        d = self.direct()
        self.assertEqual(d.call("GET", "pipe:counter"), b"%d" % (n // 5))
        self.assertEqual(d.call("LLEN", "pipe:list"), n // 5)
        self.assertEqual(d.call("DBSIZE"), n - 2 * (n // 5) + 2)
        self.assertEqual(d.call("GET", "pipe:k:4997"), b"value-4997")
        self.assertEqual(d.call("LINDEX", "pipe:list", 0), b"e3")


if __name__ == "__main__":
    h.main()
