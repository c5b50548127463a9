"""Harness for keygate's integration tests: real redis-server, real keygate, real clients.

What it gives a test:

* ``RedisServer`` and ``KeygateProcess``: start a process on a free loopback port, wait (bounded)
  until it accepts and answers PING, capture its output to a file, stop it by PID (SIGTERM, bounded
  wait, then SIGKILL). Children also get PR_SET_PDEATHSIG so a test runner killed by ctest's
  timeout never leaves them behind. Nothing here ever kills by name.
* ``RespConnection``: a raw-socket RESP2/RESP3 client that returns either the exact bytes of one
  reply (for byte-for-byte comparisons with Redis) or a parsed, typed value.
* ``KeygateTestCase``: a unittest base class with one redis-server and one keygate per class,
  Redis flushed (directly, not through keygate) before every test, keygate's stderr printed when a
  test fails, and a check at the end that keygate exits 0 on SIGTERM with no sanitizer report.
* ``wait_until``: bounded polling for a condition (no sleep-and-hope).

Environment: KEYGATE_BIN (required: the keygate binary, set by CMake), REDIS_SERVER (optional),
KEYGATE_TEST_TIMEOUT_SCALE (optional float, multiplies every wait bound; default 1, raised
automatically to 2 when keygate is built with sanitizers).
"""

from __future__ import annotations

import collections
import ctypes
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

HOST = "127.0.0.1"


def _raise_nofile_limit(wanted: int = 65536) -> None:
    # Debian's default soft limit is 1024 descriptors; the memory test holds 1,000 client sockets
    # and keygate (which inherits this limit) needs one per client plus its own.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


_raise_nofile_limit()

# --------------------------------------------------------------------------------------------
# Binaries and timing
# --------------------------------------------------------------------------------------------


def keygate_bin() -> str:
    path = os.environ.get("KEYGATE_BIN", "")
    if not path:
        raise RuntimeError("KEYGATE_BIN is not set (ctest sets it to the keygate target's path)")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"KEYGATE_BIN={path} is not an executable file")
    return path


def redis_server_bin() -> str:
    path = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(path, os.X_OK):
        raise RuntimeError("redis-server not found (install Debian package redis-server)")
    return path


def tool_bin(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{name} not found (install Debian package redis-tools)")
    return path


_sanitized_cache: Optional[bool] = None


def keygate_is_sanitized() -> bool:
    """True when the keygate binary was built with ASan (it is then 2-3x slower and bigger)."""
    global _sanitized_cache
    if _sanitized_cache is None:
        found = False
        try:
            with open(keygate_bin(), "rb") as f:
                data = f.read()
            found = b"AddressSanitizer" in data or b"__asan_init" in data
        except OSError:
            pass
        _sanitized_cache = found
    return _sanitized_cache


def timeout_scale() -> float:
    env = os.environ.get("KEYGATE_TEST_TIMEOUT_SCALE")
    if env:
        return float(env)
    return 2.0 if keygate_is_sanitized() else 1.0


def scaled(seconds: float) -> float:
    return seconds * timeout_scale()


def wait_until(condition: Callable[[], object], timeout: float, interval: float = 0.02,
               message: str = "condition") -> object:
    """Polls `condition` until it returns a truthy value or `timeout` seconds pass.

    Returns the truthy value; raises AssertionError naming `message` on timeout. The interval
    grows gently so long waits do not spin.
    """
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (OSError, ValueError, AssertionError) as exc:  # not ready yet
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message}{extra}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.25)


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------

# Server ports are taken below the kernel's ephemeral range (32768+ on Linux) so that the many
# client sockets the tests open can never be holding the port we picked.
# Below the kernel's ephemeral range (32768+), and above cluster_harness' nodes (10000..14999)
# and their cluster bus ports (node + 10000: 20000..24999), which tests running in parallel
# may be binding at the same moment.
_PORT_LOW, _PORT_HIGH = 25000, 32000
_rng = random.Random(os.getpid() ^ int(time.time() * 1000))
# Ports this process handed out most recently. A caller often asks for two ports before it binds
# either (keygate's listen and admin ports): both are free at the time, so without this memory
# the second call can return the first port again and the two listeners collide.
_RECENT_LIMIT = 2000
_recent: "collections.deque[int]" = collections.deque()
_recent_set: set = set()


def _remember(port: int) -> int:
    _recent.append(port)
    _recent_set.add(port)
    if len(_recent) > _RECENT_LIMIT:
        _recent_set.discard(_recent.popleft())
    return port


def free_port() -> int:
    """A port free now and not handed out by this process among its last _RECENT_LIMIT calls."""
    for _ in range(200):
        port = _rng.randrange(_PORT_LOW, _PORT_HIGH)
        if port in _recent_set:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return _remember(port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Prometheus metrics from keygate's admin port
# --------------------------------------------------------------------------------------------

# A sample line (name, optional {labels}, value) and one label="value" pair in it.
_METRIC_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_METRIC_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')

MetricKey = Tuple[str, Tuple[Tuple[str, str], ...]]


def parse_metrics(text: str) -> Dict[MetricKey, float]:
    """Prometheus text format -> {(name, sorted label pairs): value}."""
    out: Dict[MetricKey, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_SAMPLE.match(line)
        if m:
            labels = tuple(sorted(_METRIC_LABEL.findall(m.group(2) or "")))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def admin_metrics(admin_port: int, timeout: float = 5.0) -> Dict[MetricKey, float]:
    """GET /metrics from keygate's admin listener, parsed."""
    url = f"http://{HOST}:{admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=scaled(timeout)) as resp:
        return parse_metrics(resp.read().decode("utf-8", "replace"))


def metric(metrics: Dict[MetricKey, float], name: str, **labels: str) -> Optional[float]:
    """One sample of `parse_metrics`' result, or None when keygate does not export it."""
    return metrics.get((name, tuple(sorted(labels.items()))))


# --------------------------------------------------------------------------------------------
# RESP client
# --------------------------------------------------------------------------------------------


class Incomplete(Exception):
    """Not enough bytes buffered for a whole reply."""


class ProtocolViolation(Exception):
    """The server sent bytes that are not RESP."""


class SimpleString(str):
    pass


class ErrorReply(str):
    """A RESP error (`-...` or blob error `!...`). A value, not an exception."""


class Double(float):
    pass


class BigNumber(int):
    pass


class Verbatim(bytes):
    fmt: bytes = b""


class Map(list):
    """RESP3 map as an ordered list of (key, value) pairs (keys may be unhashable)."""

    def to_dict(self) -> dict:
        out = {}
        for k, v in self:
            out[_hashable(k)] = v
        return out


class RespSet(list):
    pass


class Push(list):
    pass


class Attributed:
    def __init__(self, attributes: Map, value: object):
        self.attributes = attributes
        self.value = value

    def __repr__(self) -> str:
        return f"Attributed({self.attributes!r}, {self.value!r})"


def _hashable(v: object) -> object:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    return v


def _line(buf: bytes, pos: int) -> Tuple[bytes, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete()
    return bytes(buf[pos:end]), end + 2


def parse_reply(buf: bytes, pos: int = 0) -> Tuple[object, int]:
    """Parses one RESP2/RESP3 reply starting at buf[pos]. Returns (value, end position)."""
    if pos >= len(buf):
        raise Incomplete()
    kind = bytes(buf[pos:pos + 1])
    line, nxt = _line(buf, pos + 1)
    if kind == b"+":
        return SimpleString(line.decode("utf-8", "replace")), nxt
    if kind == b"-":
        return ErrorReply(line.decode("utf-8", "replace")), nxt
    if kind == b":":
        return int(line), nxt
    if kind == b"(":
        return BigNumber(int(line)), nxt
    if kind == b",":
        text = line.decode()
        return Double(float(text)), nxt
    if kind == b"#":
        if line not in (b"t", b"f"):
            raise ProtocolViolation(f"bad boolean {line!r}")
        return line == b"t", nxt
    if kind == b"_":
        if line:
            raise ProtocolViolation(f"bad null {line!r}")
        return None, nxt
    if kind in (b"$", b"!", b"="):
        n = int(line)
        if n < 0:
            if kind != b"$":
                raise ProtocolViolation(f"negative length for {kind!r}")
            return None, nxt
        if len(buf) < nxt + n + 2:
            raise Incomplete()
        data = bytes(buf[nxt:nxt + n])
        if buf[nxt + n:nxt + n + 2] != b"\r\n":
            raise ProtocolViolation("bulk not terminated by CRLF")
        end = nxt + n + 2
        if kind == b"!":
            return ErrorReply(data.decode("utf-8", "replace")), end
        if kind == b"=":
            v = Verbatim(data[4:])
            v.fmt = data[:3]
            return v, end
        return data, end
    if kind in (b"*", b"~", b">", b"%", b"|"):
        n = int(line)
        if n < 0:
            if kind != b"*":
                raise ProtocolViolation(f"negative length for {kind!r}")
            return None, nxt
        pos = nxt
        if kind in (b"%", b"|"):
            pairs = Map()
            for _ in range(n):
                k, pos = parse_reply(buf, pos)
                v, pos = parse_reply(buf, pos)
                pairs.append((k, v))
            if kind == b"|":
                value, pos = parse_reply(buf, pos)
                return Attributed(pairs, value), pos
            return pairs, pos
        items: list = {b"*": list, b"~": RespSet, b">": Push}[kind]()
        for _ in range(n):
            v, pos = parse_reply(buf, pos)
            items.append(v)
        return items, pos
    raise ProtocolViolation(f"unknown RESP type byte {kind!r} at {pos}: {bytes(buf[pos:pos + 40])!r}")


def encode_command(*args) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, (int, float)):
            a = str(a).encode()
        parts.append(b"$%d\r\n" % len(a))
        parts.append(a)
        parts.append(b"\r\n")
    return b"".join(parts)


class RespConnection:
    """Raw RESP client over a blocking socket with a read timeout."""

    def __init__(self, port: int, host: str = HOST, timeout: float = 10.0,
                 connect_timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.closed = False

    # -- sending
    def send(self, *args) -> None:
        self.sock.sendall(encode_command(*args))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_many(self, commands: Iterable[Sequence]) -> None:
        self.sock.sendall(b"".join(encode_command(*c) for c in commands))

    # -- receiving
    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            self.closed = True
            raise ConnectionError("connection closed by peer")
        if self.pos > (1 << 20) and self.pos > len(self.buf) // 2:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += chunk

    def read_raw(self) -> bytes:
        """Returns the exact bytes of the next complete reply (attributes included)."""
        while True:
            try:
                _, end = parse_reply(self.buf, self.pos)
            except Incomplete:
                self._fill()
                continue
            raw = bytes(self.buf[self.pos:end])
            self.pos = end
            return raw

    def read(self) -> object:
        while True:
            try:
                value, end = parse_reply(self.buf, self.pos)
            except Incomplete:
                self._fill()
                continue
            self.pos = end
            return value

    def call(self, *args) -> object:
        self.send(*args)
        return self.read()

    def call_raw(self, *args) -> bytes:
        self.send(*args)
        return self.read_raw()

    def buffered(self) -> bytes:
        return bytes(self.buf[self.pos:])

    def wait_closed(self, timeout: float) -> bool:
        """True if the peer closes (EOF or reset) within `timeout`; unread data is discarded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RespConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ping_ok(port: int, timeout: float = 1.0, password: Optional[str] = None) -> bool:
    """One short connection: optional AUTH, then PING; True on +PONG."""
    try:
        with RespConnection(port, timeout=timeout, connect_timeout=timeout) as c:
            if password is not None:
                if c.call("AUTH", password) != "OK":
                    return False
            return c.call("PING") == "PONG"
    except (OSError, ConnectionError, ProtocolViolation, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel for SIGKILL when the thread that
    # forked us exits (the test runner is killed by a ctest timeout, for example). Processes are
    # only started from the main thread, which lives as long as the runner.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


SANITIZER_PATTERNS = re.compile(
    rb"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer|MemorySanitizer)"
    rb"|runtime error:|SUMMARY: UndefinedBehaviorSanitizer")


class ManagedProcess:
    """A child process with its output in a log file, stopped by PID."""

    def __init__(self, name: str, workdir: str):
        self.name = name
        self.workdir = workdir
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.args: List[str] = []
        self.returncode: Optional[int] = None

    def _spawn(self, args: List[str], env: Optional[dict] = None) -> None:
        self.args = args
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         cwd=self.workdir, env=env, preexec_fn=_die_with_parent)
        finally:
            log.close()
        self.returncode = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> Optional[int]:
        """Waits for exit up to `timeout`; returns the exit code or None if still running."""
        if self.proc is None:
            return self.returncode
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout: float) -> Optional[int]:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code (negative: signal)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.returncode = self.proc.wait(timeout=timeout)
                return self.returncode
            except subprocess.TimeoutExpired:
                sys.stderr.write(f"[harness] {self.name} (pid {self.proc.pid}) did not exit "
                                 f"{timeout:.0f}s after SIGTERM; sending SIGKILL\n")
                self.proc.kill()
                self.proc.wait(timeout=30)
                self.returncode = None  # signals "had to be killed" to callers
                return None
        self.returncode = self.proc.returncode
        return self.returncode

    def log_text(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, max_lines: int = 200) -> str:
        lines = self.log_text().splitlines()
        if len(lines) > max_lines:
            lines = [f"... ({len(lines) - max_lines} earlier lines omitted)"] + lines[-max_lines:]
        return "\n".join(lines)

    def sanitizer_report(self) -> Optional[str]:
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        m = SANITIZER_PATTERNS.search(data)
        if not m:
            return None
        start = max(0, data.rfind(b"\n", 0, max(0, m.start() - 200)))
        return data[start:start + 6000].decode("utf-8", "replace")

    def rss_kib(self) -> int:
        """VmRSS of the process in KiB (from /proc/PID/status)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("VmRSS not found")


def _listens_on(pid: int, port: int) -> bool:
    """True when process `pid` holds the loopback listening socket of `port`. (Another test run
    may have taken a port between free_port() and our bind: then our process exits with
    "address in use" while the other one answers PING.)"""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "0A" and \
                            int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            return True  # no /proc: trust the PING
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    except OSError:
        return False
    return False


def _wait_ready(proc: ManagedProcess, port: int, timeout: float,
                password: Optional[str] = None) -> str:
    """Waits until `proc` answers PING on `port`. Returns "ok", "exited" or "timeout"."""
    deadline = time.monotonic() + timeout
    interval = 0.02
    while time.monotonic() < deadline:
        if not proc.running():
            return "exited"
        if ping_ok(port, timeout=min(1.0, max(0.1, deadline - time.monotonic())),
                   password=password) and _listens_on(proc.pid, port):
            return "ok"
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)
    return "timeout"


class StartupError(AssertionError):
    pass


class RedisServer(ManagedProcess):
    """A throwaway redis-server: loopback only, no persistence, its own temp dir."""

    def __init__(self, workdir: str, name: str = "redis", extra_args: Sequence[str] = (),
                 password: Optional[str] = None):
        super().__init__(name, workdir)
        self.port = 0
        self.extra_args = list(extra_args)
        self.password = password

    def start(self, timeout: Optional[float] = None) -> "RedisServer":
        timeout = timeout if timeout is not None else scaled(15)
        datadir = os.path.join(self.workdir, f"{self.name}-data")
        os.makedirs(datadir, exist_ok=True)
        for attempt in range(5):
            self.port = free_port()
            args = [redis_server_bin(), "--port", str(self.port), "--bind", HOST,
                    "--save", "", "--appendonly", "no", "--dir", datadir,
                    "--daemonize", "no", "--protected-mode", "no", "--loglevel", "notice"]
            if self.password is not None:
                args += ["--requirepass", self.password]
            self._spawn(args + self.extra_args)
            state = _wait_ready(self, self.port, timeout, password=self.password)
            if state == "ok":
                return self
            self.stop(5)
            if state == "exited" and "Address already in use" in self.log_text() and attempt < 4:
                continue
            raise StartupError(f"redis-server did not come up on port {self.port} ({state}).\n"
                               f"command: {' '.join(args)}\n--- log ---\n{self.log_tail()}")
        raise StartupError("redis-server: no free port found")

    def start_on_port(self, port: int, timeout: Optional[float] = None) -> "RedisServer":
        """Starts on a given port (one a killed Redis or a fake upstream held before)."""
        timeout = timeout if timeout is not None else scaled(15)
        datadir = os.path.join(self.workdir, f"{self.name}-data")
        os.makedirs(datadir, exist_ok=True)
        self.port = port
        args = [redis_server_bin(), "--port", str(port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", datadir, "--daemonize", "no",
                "--protected-mode", "no", "--loglevel", "notice"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self._spawn(args + self.extra_args)
        state = _wait_ready(self, port, timeout, password=self.password)
        if state != "ok":
            self.stop(5)
            raise StartupError(f"redis-server did not come up on port {port} ({state}).\n"
                               f"--- log ---\n{self.log_tail()}")
        return self

    def restart(self, timeout: Optional[float] = None, retry_until: Optional[float] = None) -> str:
        """Starts a stopped (or killed) server again with the same command line: same port, same
        dir. Retries while the port is briefly held, until `retry_until` (a monotonic time;
        default: one try). Returns the readiness state ("ok" on success)."""
        timeout = timeout if timeout is not None else scaled(15)
        while True:
            if not self.running():
                self._spawn(list(self.args))
            left = timeout if retry_until is None else max(1.0, retry_until - time.monotonic())
            state = _wait_ready(self, self.port, left, password=self.password)
            if state == "ok" or retry_until is None or time.monotonic() >= retry_until:
                return state
            self.stop(5)
            time.sleep(0.1)

    def client(self, timeout: float = 10.0) -> RespConnection:
        c = RespConnection(self.port, timeout=timeout)
        if self.password is not None:
            assert c.call("AUTH", self.password) == "OK"
        return c

    def flushall(self) -> None:
        with self.client() as c:
            reply = c.call("FLUSHALL")
            if reply != "OK":
                raise AssertionError(f"FLUSHALL on Redis failed: {reply!r}")


class KeygateProcess(ManagedProcess):
    """keygate in front of an upstream, on a free port, stderr captured in `log_path`."""

    def __init__(self, workdir: str, upstream_port: Optional[int], config: Optional[str] = None,
                 extra_args: Sequence[str] = (), name: str = "keygate",
                 env_overrides: Optional[dict] = None, password: Optional[str] = None):
        super().__init__(name, workdir)
        self.port = 0
        # With ACL users configured: the readiness probe logs in with AUTH <password> (the
        # ACL's `default` user) before its PING.
        self.password = password
        self.upstream_port = upstream_port
        self.config = config
        self.extra_args = list(extra_args)
        self.env_overrides = env_overrides or {}
        self.config_path: Optional[str] = None

    def command_line(self) -> List[str]:
        args = [keygate_bin(), "--listen", f"{HOST}:{self.port}"]
        if self.upstream_port is not None:
            args += ["--upstream", f"{HOST}:{self.upstream_port}"]
        if self.config_path:
            args += ["--config", self.config_path]
        return args + self.extra_args

    def start(self, timeout: Optional[float] = None, wait_ready: bool = True) -> "KeygateProcess":
        timeout = timeout if timeout is not None else scaled(30)
        if self.config is not None:
            self.config_path = os.path.join(self.workdir, f"{self.name}.yaml")
            with open(self.config_path, "w") as f:
                f.write(self.config)
        env = dict(os.environ)
        env.update(self.env_overrides)
        for attempt in range(4):
            self.port = free_port()
            args = self.command_line()
            self._spawn(args, env=env)
            if not wait_ready:
                return self
            state = _wait_ready(self, self.port, timeout, password=self.password)
            if state == "ok":
                return self
            self.stop(scaled(10))
            log = self.log_text()
            if state == "exited" and re.search(r"(?i)address already in use|EADDRINUSE", log) \
                    and attempt < 3:
                continue
            raise StartupError(f"keygate did not come up on port {self.port} ({state}).\n"
                               f"command: {' '.join(args)}\n--- keygate output ---\n"
                               f"{self.log_tail()}")
        raise StartupError("keygate: no free port found")

    def client(self, timeout: float = 10.0) -> RespConnection:
        return RespConnection(self.port, timeout=timeout)

    def check_clean_exit(self, timeout: Optional[float] = None) -> None:
        """Stops keygate with SIGTERM; fails unless it exits 0 with no sanitizer report."""
        timeout = timeout if timeout is not None else scaled(20)
        code = self.stop(timeout)
        report = self.sanitizer_report()
        problems = []
        if code is None:
            problems.append(f"did not exit within {timeout:.0f}s of SIGTERM (killed)")
        elif code != 0:
            problems.append(f"exited with code {code} after SIGTERM (expected 0)")
        if report:
            problems.append("sanitizer report in its output:\n" + report)
        if problems:
            raise AssertionError(f"keygate (pid {self.pid}, port {self.port}): "
                                 + "; ".join(problems) + f"\n--- keygate output ---\n"
                                 + self.log_tail())


def run_keygate_cli(args: Sequence[str], timeout: Optional[float] = None,
                    cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    """Runs keygate to completion (for --help, --version, config errors)."""
    timeout = timeout if timeout is not None else scaled(20)
    return subprocess.run([keygate_bin(), *args], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, cwd=cwd, preexec_fn=_die_with_parent)


# --------------------------------------------------------------------------------------------
# unittest base class
# --------------------------------------------------------------------------------------------


class KeygateTestCase(unittest.TestCase):
    """One redis-server + one keygate per test class; Redis flushed before each test.

    Subclasses may set `keygate_config` (YAML text), `keygate_args`, `redis_args`,
    `redis_password`, `keygate_env`.
    """

    keygate_config: Optional[str] = None
    keygate_args: Sequence[str] = ()
    keygate_env: Optional[dict] = None
    redis_args: Sequence[str] = ()
    redis_password: Optional[str] = None
    keygate_password: Optional[str] = None

    workdir: str
    redis: RedisServer
    keygate: KeygateProcess

    @classmethod
    def setUpClass(cls) -> None:
        cls.workdir = tempfile.mkdtemp(prefix=f"keygate-it-{cls.__name__}-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.redis = RedisServer(cls.workdir, extra_args=cls.redis_args,
                                password=cls.redis_password)
        cls.addClassCleanup(cls.redis.stop, 10)
        cls.redis.start()
        cls.keygate = KeygateProcess(cls.workdir, cls.redis.port, config=cls.keygate_config,
                                     extra_args=cls.keygate_args, env_overrides=cls.keygate_env,
                                     password=cls.keygate_password)
        cls.addClassCleanup(cls._stop_keygate_checked)
        cls.keygate.start()

    @classmethod
    def _stop_keygate_checked(cls) -> None:
        # Class cleanups run even when setUpClass failed half-way; only check what started.
        if cls.keygate.proc is not None:
            cls.keygate.check_clean_exit()

    def setUp(self) -> None:
        if not self.keygate.running():
            self.fail("keygate is not running (crashed in an earlier test?)\n"
                      + self.keygate.log_tail())
        self.redis.flushall()

    def run(self, result=None):
        # Print keygate's and Redis' output under a failing test, so ctest --output-on-failure
        # shows why without anyone re-running it.
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        outcome = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            self.dump_logs()
        return outcome

    def dump_logs(self) -> None:
        procs = [getattr(self, "keygate", None), getattr(self, "redis", None)]
        procs += getattr(self, "_extra_procs", [])
        for p in procs:
            if p is None or p.proc is None:
                continue
            sys.stderr.write(f"\n===== {p.name} (pid {p.proc.pid}, port {getattr(p, 'port', '?')})"
                             f" output for {self.id()} =====\n{p.log_tail()}\n"
                             f"===== end of {p.name} output =====\n")
        sys.stderr.flush()

    # -- helpers for tests
    def kg(self, timeout: float = 10.0) -> RespConnection:
        """A raw connection to keygate, closed at the end of the test."""
        c = self.keygate.client(timeout=scaled(timeout))
        self.addCleanup(c.close)
        return c

    def direct(self, timeout: float = 10.0) -> RespConnection:
        """A raw connection straight to Redis, closed at the end of the test."""
        c = self.redis.client(timeout=scaled(timeout))
        self.addCleanup(c.close)
        return c

    def start_private_keygate(self, config: Optional[str] = None, extra_args: Sequence[str] = (),
                              name: Optional[str] = None, wait_ready: bool = True,
                              env_overrides: Optional[dict] = None,
                              upstream_port: Optional[int] = -1) -> KeygateProcess:
        """Another keygate for this test only (stopped and checked at the end of the test)."""
        if not hasattr(self, "_extra_procs"):
            self._extra_procs = []
        name = name or f"keygate-{self._testMethodName}"
        proc = KeygateProcess(self.workdir,
                              self.redis.port if upstream_port == -1 else upstream_port,
                              config=config, extra_args=extra_args, name=name,
                              env_overrides=env_overrides)
        self._extra_procs.append(proc)
        self.addCleanup(proc.stop, scaled(20))
        proc.start(wait_ready=wait_ready)
        return proc

    def redis_info_field(self, section: str, field: str) -> str:
        with self.redis.client() as c:
            info = c.call("INFO", section)
        for line in info.decode().splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
        raise AssertionError(f"{field} not in INFO {section}")

    def wait_blocked_clients(self, count: int, timeout: float = 10.0) -> None:
        wait_until(lambda: int(self.redis_info_field("clients", "blocked_clients")) >= count,
                   scaled(timeout), message=f"{count} blocked client(s) on Redis")


def main() -> None:
    """Entry point for test files: verbose unittest with buffered output off."""
    unittest.main(verbosity=2)
