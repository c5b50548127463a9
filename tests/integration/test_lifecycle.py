#!/usr/bin/python3
"""Connection limit, graceful shutdown (drain) on SIGTERM/SIGINT, and the admin HTTP endpoints."""

import signal
import socket
import time
import urllib.error
import urllib.request

import keygate_harness as h

MAX_CLIENTS_ERROR = b"-ERR max number of clients reached\r\n"


def try_session(port: int, timeout: float):
    """Connects and returns ("refused"|"closed"|"pong"|"error:<reply>"). Reads before writing, so
    a greeting error sent at accept time is not lost to a reset caused by our own write."""
    try:
        s = socket.create_connection((h.HOST, port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused", b""
    except OSError as exc:
        return f"connect failed: {exc!r}", b""
    with s:
        s.settimeout(min(0.5, timeout))
        data = b""
        try:
            data = s.recv(4096)
            if not data:
                return "closed", b""
        except socket.timeout:
            pass
        except ConnectionResetError:
            return "closed", b""
        if data:
            return "greeting", data
        try:
            s.settimeout(timeout)
            s.sendall(b"PING\r\n")
            data = s.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            return "closed", b""
        except socket.timeout:
            return "no reply", b""
        if not data:
            return "closed", b""
        return ("pong" if data == b"+PONG\r\n" else "reply"), data


class MaxClientsTest(h.KeygateTestCase):
    keygate_config = "limits:\n  maxClients: 5\n"

    def open_working_connection(self) -> h.RespConnection:
        """A connection that answered PING. Retries while the harness' readiness probes (already
        closed by us) may still count against the limit inside keygate."""
        def attempt():
            c = self.keygate.client(timeout=h.scaled(5))
            try:
                if c.call("PING") == "PONG":
                    return c
            except (ConnectionError, OSError):
                pass
            c.close()
            return None
        c = h.wait_until(attempt, h.scaled(10), message="a connection that answers PING")
        self.addCleanup(c.close)
        return c

    def test_sixth_connection_is_refused(self):
        conns = [self.open_working_connection() for _ in range(5)]
        state, data = try_session(self.keygate.port, h.scaled(5))
        self.assertIn(state, ("greeting", "reply"), f"6th connection: {state} {data!r}")
        self.assertEqual(data, MAX_CLIENTS_ERROR)

        # The refused connection is closed by keygate.
        s = socket.create_connection((h.HOST, self.keygate.port), timeout=h.scaled(5))
        with s:
            buf = b""
            deadline = time.monotonic() + h.scaled(5)
            closed = False
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                buf += chunk
            self.assertTrue(closed, f"over-limit connection left open (got {buf!r})")
            self.assertEqual(buf, MAX_CLIENTS_ERROR)

        # The five are unaffected.
        for i, c in enumerate(conns):
            self.assertEqual(c.call("SET", f"mc:{i}", i), "OK")
        # Closing one frees a slot (bounded wait: keygate notices the close asynchronously).
        conns[0].close()
        h.wait_until(lambda: try_session(self.keygate.port, 1.0)[0] == "pong", h.scaled(10),
                     message="a free slot after closing one of five connections")


class ShutdownTest(h.KeygateTestCase):
    """Each test runs its own keygate and stops it itself."""

    @staticmethod
    def send_signal(kg: h.KeygateProcess, sig=signal.SIGTERM) -> float:
        t0 = time.monotonic()
        kg.signal(sig)
        return t0

    def assert_exits_cleanly(self, kg: h.KeygateProcess, t0: float, within: float):
        code = kg.wait(within)
        elapsed = time.monotonic() - t0
        if code is None:
            kg.stop(5)
            self.fail(f"keygate still running {within:.1f}s after the signal\n{kg.log_tail()}")
        self.assertEqual(code, 0, f"keygate exit code {code}\n{kg.log_tail()}")
        report = kg.sanitizer_report()
        self.assertIsNone(report, report)
        return elapsed

    def test_sigterm_drains_in_flight_requests(self):
        drain = 8.0
        kg = self.start_private_keygate(config=f"shutdown:\n  drainTimeout: {int(drain)}s\n")
        big = bytes(range(256)) * 2048  # 512 KiB
        self.assertEqual(self.direct().call("SET", "drain:big", big), "OK")

        # In flight #1: a BLPOP that Redis answers with nil after 2 seconds.
        a = h.RespConnection(kg.port, timeout=h.scaled(20))
        self.addCleanup(a.close)
        blpop_sent = time.monotonic()
        a.send("BLPOP", "drain:q", "2")
        self.wait_blocked_clients(1)

        # In flight #2: a pipeline with 8 MiB of replies that the client reads slowly, ending in
        # an INCR, so once Redis has counted it keygate has read the whole pipeline.
        b = h.RespConnection(kg.port, timeout=h.scaled(20))
        self.addCleanup(b.close)
        b.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        n_gets = 16
        b.send_many([("GET", "drain:big")] * n_gets + [("INCR", "drain:done")])
        d = self.direct()
        h.wait_until(lambda: d.call("GET", "drain:done") == b"1", h.scaled(10),
                     message="the pipeline to reach Redis")

        t0 = self.send_signal(kg)

        # New connections are refused while draining.
        def refused():
            state, data = try_session(kg.port, 1.0)
            return state in ("refused", "closed") or (state == "greeting" and data.startswith(b"-"))
        h.wait_until(refused, h.scaled(3), message="new connections to be refused after SIGTERM")

        # The slow reader gets every reply, byte-exact.
        for i in range(n_gets):
            reply = b.read()
            self.assertTrue(reply == big, f"GET #{i} during drain: {len(reply or b'')} bytes")
            time.sleep(0.05)  # a slow client: keygate must keep writing while draining
        self.assertEqual(b.read(), 1)

        # BLPOP's reply (nil, after its 2 s timeout) arrives.
        self.assertEqual(a.read_raw(), b"*-1\r\n")
        self.assertGreaterEqual(time.monotonic() - blpop_sent, 1.9)

        a.close()
        b.close()
        elapsed = self.assert_exits_cleanly(kg, t0, drain + h.scaled(3))
        print(f"keygate exited {elapsed:.2f}s after SIGTERM (drain deadline {drain:.0f}s)")

    def test_sigterm_with_only_a_blocked_client(self):
        kg = self.start_private_keygate(config="shutdown:\n  drainTimeout: 8s\n")
        a = h.RespConnection(kg.port, timeout=h.scaled(20))
        self.addCleanup(a.close)
        sent = time.monotonic()
        a.send("BLPOP", "drain:q1", "1")
        self.wait_blocked_clients(1)
        t0 = self.send_signal(kg)
        try:
            reply = a.read_raw()
        except ConnectionError:
            self.fail("connection closed during drain before BLPOP (timeout 1) was answered\n"
                      + kg.log_tail())
        self.assertEqual(reply, b"*-1\r\n")
        self.assertGreaterEqual(time.monotonic() - sent, 0.9)
        a.close()
        self.assert_exits_cleanly(kg, t0, 8 + h.scaled(3))

    def test_drain_deadline_bounds_shutdown(self):
        drain = 1.0
        kg = self.start_private_keygate(config="shutdown:\n  drainTimeout: 1000ms\n")
        a = h.RespConnection(kg.port, timeout=h.scaled(20))
        self.addCleanup(a.close)
        a.send("BLPOP", "drain:forever", "0")  # never answered
        self.wait_blocked_clients(1)
        t0 = self.send_signal(kg)
        elapsed = self.assert_exits_cleanly(kg, t0, drain + h.scaled(4))
        print(f"keygate exited {elapsed:.2f}s after SIGTERM with a request stuck "
              f"(drain deadline {drain:.0f}s)")
        self.assertTrue(a.wait_closed(h.scaled(5)), "client connection left open after exit")

    def test_sigint_idle_exits_promptly(self):
        kg = self.start_private_keygate()
        with kg.client() as c:
            self.assertEqual(c.call("SET", "x", "1"), "OK")
        t0 = self.send_signal(kg, signal.SIGINT)
        elapsed = self.assert_exits_cleanly(kg, t0, h.scaled(5))
        print(f"idle keygate exited {elapsed:.2f}s after SIGINT")


def http_get(port: int, path: str, timeout: float):
    try:
        with urllib.request.urlopen(f"http://{h.HOST}:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class AdminHttpTest(h.KeygateTestCase):

    def test_health_ready_metrics(self):
        # A Redis of our own, so we can stop it and watch /readyz turn 503.
        redis2 = h.RedisServer(self.workdir, name="redis-admin")
        self.addCleanup(redis2.stop, 10)
        redis2.start()
        admin = h.free_port()
        kg = self.start_private_keygate(extra_args=["--admin", f"{h.HOST}:{admin}"],
                                        upstream_port=redis2.port)
        with kg.client() as c:
            self.assertEqual(c.call("SET", "a", "1"), "OK")

        def status(path):
            return http_get(admin, path, h.scaled(5))

        code, body = h.wait_until(lambda: status("/healthz")[0] == 200 and status("/healthz"),
                                  h.scaled(10), message="/healthz 200")
        self.assertEqual(body.strip(), b"ok")
        h.wait_until(lambda: status("/readyz")[0] == 200, h.scaled(10), message="/readyz 200")
        code, body = status("/metrics")
        self.assertEqual(code, 200)
        self.assertIn(b"# TYPE", body)
        self.assertEqual(status("/no-such-endpoint")[0], 404)

        redis2.stop(10)
        h.wait_until(lambda: status("/readyz")[0] == 503, h.scaled(15),
                     message="/readyz 503 once Redis is down")
        self.assertEqual(status("/healthz")[0], 200, "liveness must not depend on Redis")

        kg_code = kg.stop(h.scaled(20))
        self.assertEqual(kg_code, 0, kg.log_tail())
        self.assertIsNone(kg.sanitizer_report())


if __name__ == "__main__":
    h.main()
