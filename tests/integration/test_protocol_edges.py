#!/usr/bin/python3
"""Edge cases of the proxy core's connection handling that real clients run into:
protocol switches with replies still owed, and subscribers that stop reading."""

import socket
import time

import keygate_harness as h


class HelloWhileBlockedTest(h.KeygateTestCase):
    def test_hello3_pipelined_behind_a_blocking_command(self):
        # BLPOP is answered on the client's dedicated RESP2 connection; HELLO 3 pipelined behind
        # it must wait for that reply, and what follows must come in RESP3.
        c = self.keygate.client(timeout=h.scaled(10))
        self.addCleanup(c.close)
        c.send_many([("BLPOP", "hw:empty", "1"), ("HELLO", "3"), ("HSET", "hw:h", "f", "v"),
                     ("HGETALL", "hw:h"), ("HGETALL", "hw:none")])
        self.assertEqual(c.read_raw(), b"*-1\r\n")  # RESP2 null array: asked before HELLO 3
        hello = c.read_raw()
        self.assertTrue(hello.startswith(b"%7\r\n"), hello)
        self.assertEqual(c.read_raw(), b":1\r\n")
        self.assertEqual(c.read_raw(), b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n")
        self.assertEqual(c.read_raw(), b"%0\r\n")

    def test_hello2_back_after_pipelined_shared_requests(self):
        c = self.keygate.client(timeout=h.scaled(10))
        self.addCleanup(c.close)
        self.assertTrue(c.call_raw("HELLO", "3").startswith(b"%7\r\n"))
        c.send_many([("HSET", "hw:h2", "a", "1"), ("HGETALL", "hw:h2"), ("HELLO", "2"),
                     ("HGETALL", "hw:h2")])
        self.assertEqual(c.read_raw(), b":1\r\n")
        self.assertEqual(c.read_raw(), b"%1\r\n$1\r\na\r\n$1\r\n1\r\n")
        self.assertTrue(c.read_raw().startswith(b"*14\r\n"))
        self.assertEqual(c.read_raw(), b"*2\r\n$1\r\na\r\n$1\r\n1\r\n")


class RefusedInsideMultiTest(h.KeygateTestCase):
    def test_a_command_keygate_refuses_aborts_the_transaction(self):
        # Redis aborts EXEC when a command is refused while queueing; keygate's own refusals
        # (here SELECT 1 and MONITOR) must do the same, not let EXEC run the rest.
        c = self.keygate.client(timeout=h.scaled(10))
        self.addCleanup(c.close)
        self.assertEqual(c.call_raw("MULTI"), b"+OK\r\n")
        self.assertEqual(c.call_raw("SET", "multi:k", "v"), b"+QUEUED\r\n")
        refused = c.call_raw("SELECT", "1")
        self.assertTrue(refused.startswith(b"-ERR keygate: only database 0"), refused)
        self.assertTrue(c.call_raw("MONITOR").startswith(b"-UNSUPPORTED"))
        self.assertTrue(c.call_raw("EXEC").startswith(b"-EXECABORT"))
        self.assertEqual(c.call_raw("GET", "multi:k"), b"$-1\r\n")
        # The connection is usable and transactions work again.
        self.assertEqual(c.call_raw("MULTI"), b"+OK\r\n")
        self.assertEqual(c.call_raw("SET", "multi:k", "v"), b"+QUEUED\r\n")
        self.assertEqual(c.call_raw("EXEC"), b"*1\r\n+OK\r\n")


class SlowSubscriberTest(h.KeygateTestCase):
    keygate_config = "limits:\n  maxClientOutputBytes: 64KiB\n"

    def test_subscriber_that_never_reads_is_disconnected(self):
        sub = socket.create_connection((h.HOST, self.keygate.port), timeout=h.scaled(10))
        self.addCleanup(sub.close)
        sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sub.sendall(h.encode_command("SUBSCRIBE", "slow:ch"))
        confirmation = b"*3\r\n$9\r\nsubscribe\r\n$7\r\nslow:ch\r\n:1\r\n"
        got = b""
        while len(got) < len(confirmation):
            chunk = sub.recv(len(confirmation) - len(got))
            self.assertTrue(chunk, "subscriber closed before its confirmation")
            got += chunk
        self.assertEqual(got, confirmation)

        pub = self.keygate.client(timeout=h.scaled(10))
        self.addCleanup(pub.close)
        payload = "x" * 4096
        receivers = []
        # 4 KiB messages; the subscriber reads nothing. Once more than 2 x 64 KiB are queued for
        # it (beyond what the kernel buffers hold), keygate drops it and Redis sees no
        # subscriber left. Bounded: at most 20,000 messages (80 MiB) or the time bound.
        deadline = time.monotonic() + h.scaled(60)
        for _ in range(20000):
            receivers.append(pub.call("PUBLISH", "slow:ch", payload))
            if receivers[-1] == 0 or time.monotonic() > deadline:
                break
        self.assertEqual(receivers[0], 1)
        self.assertEqual(receivers[-1], 0, "keygate kept buffering for a subscriber that "
                         "does not read")
        # The publisher's own connection is unaffected.
        self.assertEqual(pub.call("PING"), "PONG")


if __name__ == "__main__":
    h.main()
