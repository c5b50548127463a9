#!/usr/bin/python3
"""Memory bounds: a client that pipelines without reading (backpressure), idle RSS, and RSS with
1,000 idle client connections. Figures are printed for docs/benchmarks.md.

Bounds (documented in README.md here): keygate's VmRSS stays under 100 MB while a client pushes
1,000,000 SETs without reading, and while it pipelines GETs with 160 MB of replies; 1,000 idle
connections add less than 20 MB.
"""

import os
import select
import socket
import threading
import time

import keygate_harness as h

MB = 1024 * 1024
RSS_BOUND_KIB = 100 * 1024
# What a flood may add to keygate's own idle RSS. The absolute bound above applies to
# unsanitized builds; an ASan Debug build's idle RSS is mostly the sanitizer's and the binary's
# own (about 90 MB, and it grows with the code), so there only the growth is measured.
RSS_GROWTH_BOUND_KIB = 40 * 1024
IDLE_CONNECTIONS_BOUND_KIB = 20 * 1024


def check_rss(test: "h.KeygateTestCase", idle_kib: int, max_kib: int) -> None:
    test.assertLess(max_kib - idle_kib, RSS_GROWTH_BOUND_KIB,
                    f"keygate RSS grew by {(max_kib - idle_kib) / 1024:.1f} MB over its idle "
                    f"{idle_kib / 1024:.1f} MB (bound {RSS_GROWTH_BOUND_KIB // 1024} MB)")
    if not h.keygate_is_sanitized():
        test.assertLess(max_kib, RSS_BOUND_KIB,
                        f"keygate RSS {max_kib / 1024:.1f} MB exceeds the 100 MB bound")


def rss_env():
    """ASan keeps freed memory in a 256 MB quarantine by default, which would show up in RSS
    without being keygate's. Shrink it for the keygate processes these tests measure; the rest
    of the suite keeps the default. Ignored by a binary built without ASan."""
    base = os.environ.get("ASAN_OPTIONS", "")
    extra = "quarantine_size_mb=4:thread_local_quarantine_size_kb=256"
    return {"ASAN_OPTIONS": f"{base}:{extra}" if base else extra}


class RssSampler:
    """Samples a process' VmRSS every few milliseconds in a background thread."""

    def __init__(self, proc: h.ManagedProcess, interval: float = 0.02):
        self.proc, self.interval = proc, interval
        self.max_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.max_kib = max(self.max_kib, self.proc.rss_kib())
                self.samples += 1
            except (OSError, RuntimeError, ValueError):
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def flood(port: int, commands, stall_limit: float, time_limit: float, sndbuf=None, rcvbuf=None):
    """Sends encoded commands from the iterable `commands` as fast as the socket takes them,
    never reading. Stops when everything is sent, when send() would block for more than
    `stall_limit` seconds (the peer stopped reading), or after `time_limit`.
    Returns (socket, number of complete commands sent, stalled?)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if sndbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((h.HOST, port))
    s.setblocking(False)
    it = iter(commands)
    sent = 0
    stalled = False
    chunk, ends, off, idx = b"", [], 0, 0
    end_time = time.monotonic() + time_limit
    last_progress = time.monotonic()
    exhausted = False
    while True:
        if off == len(chunk):
            if exhausted:
                break
            parts, ends, total = [], [], 0
            for _ in range(5000):
                try:
                    cmd = next(it)
                except StopIteration:
                    exhausted = True
                    break
                parts.append(cmd)
                total += len(cmd)
                ends.append(total)
            chunk, off, idx = b"".join(parts), 0, 0
            if not chunk:
                break
        now = time.monotonic()
        if now > end_time:
            break
        _, writable, _ = select.select([], [s], [], 0.1)
        if writable:
            try:
                n = s.send(memoryview(chunk)[off:off + 256 * 1024])
            except BlockingIOError:
                n = 0
            if n:
                off += n
                last_progress = time.monotonic()
                while idx < len(ends) and ends[idx] <= off:
                    idx += 1
                    sent += 1
        if time.monotonic() - last_progress > stall_limit:
            stalled = True
            break
    s.setblocking(True)
    return s, sent, stalled


def read_repeated(sock: socket.socket, unit: bytes, count: int, timeout: float) -> None:
    """Reads exactly count*len(unit) bytes and checks they are `unit` repeated."""
    total, got, L = len(unit) * count, 0, len(unit)
    deadline = time.monotonic() + timeout
    while got < total:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out reading replies: {got // L} of {count} received")
        sock.settimeout(left)
        chunk = sock.recv(min(4 * MB, total - got))
        if not chunk:
            raise AssertionError(f"connection closed after {got // L} of {count} replies")
        phase = got % L
        reps = (phase + len(chunk)) // L + 1
        expected = (unit * reps)[phase:phase + len(chunk)]
        if chunk != expected:
            i = next(k for k in range(len(chunk)) if chunk[k] != expected[k])
            raise AssertionError(f"reply stream differs at reply {(got + i) // L}: "
                                 f"{chunk[max(0, i - 20):i + 40]!r}")
        got += len(chunk)


class BackpressureTest(h.KeygateTestCase):
    keygate_env = rss_env()

    def test_million_sets_without_reading(self):
        n = 1_000_000
        idle = self.keygate.rss_kib()
        with RssSampler(self.keygate) as sampler:
            commands = (b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(k), k)
                        for k in (b"k:%d" % i for i in range(n)))
            t0 = time.monotonic()
            sock, sent, stalled = flood(self.keygate.port, commands, stall_limit=3.0,
                                        time_limit=h.scaled(150), rcvbuf=128 * 1024)
            send_time = time.monotonic() - t0
            send_max = sampler.max_kib
            with sock:
                read_repeated(sock, b"+OK\r\n", sent, h.scaled(150))
                # Nothing more: no duplicate or stray replies.
                sock.settimeout(0.3)
                try:
                    extra = sock.recv(100)
                except socket.timeout:
                    extra = b""
                self.assertEqual(extra, b"")
        print(f"\n1,000,000 SETs without reading: sent {sent} in {send_time:.1f}s "
              f"({'send blocked: keygate stopped reading' if stalled else 'all sent'}); "
              f"RSS idle {idle / 1024:.1f} MB, max while sending {send_max / 1024:.1f} MB, "
              f"max overall {sampler.max_kib / 1024:.1f} MB ({sampler.samples} samples)")
        self.assertGreater(sent, 100_000, "the flood barely started")
        check_rss(self, idle, sampler.max_kib)
        self.assertEqual(self.direct().call("DBSIZE"), sent)


class OutputLimitTest(h.KeygateTestCase):
    """The configured limits bound what keygate buffers for a client that does not read."""

    MAX_OUTPUT = 4 * MB
    MAX_PIPELINED = 256
    keygate_config = (f"limits:\n  maxClientOutputBytes: 4MiB\n"
                      f"  maxPipelinedRequests: {MAX_PIPELINED}\n")
    keygate_env = rss_env()

    def test_unread_replies_stop_reading(self):
        # 10,000 GETs of a 16 KiB value = 160 MB of replies the client does not read. keygate
        # must stop reading once its unsent replies pass maxClientOutputBytes; replies to requests
        # it already forwarded (at most maxPipelinedRequests) may still arrive. So Redis sees at
        # most (maxClientOutputBytes + socket buffers) / 16 KiB + maxPipelinedRequests GETs until
        # the client reads.
        value = os.urandom(16 * 1024)
        idle = self.keygate.rss_kib()
        d = self.direct()
        self.assertEqual(d.call("SET", "bp:big", value), "OK")
        d.call("CONFIG", "RESETSTAT")
        n = 10_000
        get = h.encode_command("GET", "bp:big")

        def get_calls():
            stats = d.call("INFO", "commandstats").decode()
            for line in stats.splitlines():
                if line.startswith("cmdstat_get:"):
                    return int(line.split("calls=")[1].split(",")[0])
            return 0

        with RssSampler(self.keygate) as sampler:
            sock, sent, stalled = flood(self.keygate.port, (get for _ in range(n)),
                                        stall_limit=3.0, time_limit=h.scaled(60),
                                        sndbuf=64 * 1024, rcvbuf=128 * 1024)
            with sock:
                # Wait (bounded) until Redis' GET count stops moving: keygate stopped forwarding.
                history = []

                def settled():
                    history.append((time.monotonic(), get_calls()))
                    recent = [c for t, c in history if t >= history[-1][0] - 1.0]
                    return history[-1][0] - history[0][0] >= 1.0 and len(set(recent)) == 1 \
                        and recent[-1] > 0
                h.wait_until(settled, h.scaled(30), interval=0.1,
                             message="Redis' GET count to settle while the client does not read")
                plateau = history[-1][1]
                paused_max = sampler.max_kib
                read_repeated(sock, b"$%d\r\n%s\r\n" % (len(value), value), sent, h.scaled(120))
        # Loopback socket buffers: keygate's send buffer (tcp_wmem max 4 MiB) plus the client's
        # small receive buffer; 8 MiB of slack covers both with the kernel's doubling.
        socket_slack = 8 * MB
        bound = (self.MAX_OUTPUT + socket_slack) // len(value) + self.MAX_PIPELINED
        print(f"\nGET flood without reading (maxClientOutputBytes {self.MAX_OUTPUT // MB}MiB, "
              f"maxPipelinedRequests {self.MAX_PIPELINED}): {sent} GETs sent ({'send blocked' if stalled else 'all sent'}), "
              f"Redis executed {plateau} (bound {bound}) while the client did not read "
              f"({plateau * len(value) / MB:.1f} MB of replies); RSS max while paused "
              f"{paused_max / 1024:.1f} MB, overall {sampler.max_kib / 1024:.1f} MB")
        self.assertEqual(sent, n)
        self.assertLessEqual(plateau, bound, "keygate kept reading although the client read "
                                             f"nothing ({plateau} of {n} GETs reached Redis)")
        check_rss(self, idle, sampler.max_kib)
        self.assertEqual(get_calls(), n)


class IdleConnectionsTest(h.KeygateTestCase):
    keygate_env = rss_env()

    def test_rss_with_1000_idle_connections(self):
        n = 1000
        with self.keygate.client() as c:  # warm up worker and upstream connections
            for i in range(100):
                c.call("SET", f"w:{i}", i)
        idle = self.keygate.rss_kib()
        conns = []
        try:
            for i in range(n):
                c = h.RespConnection(self.keygate.port, timeout=h.scaled(10))
                conns.append(c)
                c.send("PING")
            for c in conns:
                self.assertEqual(c.read(), "PONG")
            with_conns = self.keygate.rss_kib()
        finally:
            for c in conns:
                c.close()
        added = with_conns - idle
        print(f"\nkeygate RSS idle: {idle / 1024:.1f} MB; with {n} idle connections: "
              f"{with_conns / 1024:.1f} MB (+{added / 1024:.1f} MB, "
              f"{added * 1024 / n / 1024:.1f} KiB per connection)"
              f"{' [ASan build]' if h.keygate_is_sanitized() else ''}")
        self.assertLess(added, IDLE_CONNECTIONS_BOUND_KIB,
                        f"{n} idle connections added {added / 1024:.1f} MB (bound 20 MB)")


if __name__ == "__main__":
    h.main()
