#!/usr/bin/python3
"""Commands keygate answers itself, unsupported and unknown commands, protocol errors, inline
commands, and AUTH against a password-protected upstream."""

import keygate_harness as h

UNSUPPORTED = [
    ("MONITOR",),
    ("SYNC",),
    ("PSYNC", "?", "-1"),
    ("CLIENT", "TRACKING", "ON"),
    ("CLIENT", "KILL", "ID", "123456"),
]

PROTOCOL_ERRORS = {
    "invalid multibulk length": b"*abc\r\n",
    "invalid bulk length": b"*1\r\n$x\r\n",
    "expected $": b"*1\r\n:1\r\n",
    "unbalanced quotes": b'SET "a\r\n',
    "bulk over maxBulkBytes (512MiB)": b"*1\r\n$600000000\r\n",
    "array over maxArrayElements (1Mi)": b"*2000000000\r\n",
    "negative bulk length": b"*1\r\n$-5\r\n",
    "inline over maxInlineBytes (64KiB)": b"a" * 70000,
}


class LocalCommandsTest(h.KeygateTestCase):

    def assert_usable(self, c: h.RespConnection, context: str) -> None:
        try:
            self.assertEqual(c.call("PING"), "PONG", context)
            self.assertEqual(c.call("SET", "usable", context), "OK", context)
            self.assertEqual(c.call("GET", "usable"), context.encode(), context)
        except ConnectionError:
            self.fail(f"connection closed after {context}")

    def test_unknown_command(self):
        c = self.kg()
        reply = c.call("FOOBAR", "x", "y")
        self.assertIsInstance(reply, h.ErrorReply)
        self.assertTrue(reply.startswith("ERR unknown command"), reply)
        self.assertIn("FOOBAR", reply.upper())
        self.assert_usable(c, "unknown command")
        # An unknown command in the middle of a pipeline keeps the order of the others.
        c.send_many([("SET", "u", "1"), ("NOSUCHCMD",), ("INCR", "u"), ("PING",)])
        replies = [c.read() for _ in range(4)]
        self.assertEqual(replies[0], "OK")
        self.assertIsInstance(replies[1], h.ErrorReply)
        self.assertEqual(replies[2:], [2, "PONG"])

    def test_protocol_errors_close_the_connection(self):
        for name, raw in PROTOCOL_ERRORS.items():
            with self.subTest(name), self.keygate.client(timeout=h.scaled(10)) as c:
                c.send_raw(raw)
                try:
                    reply = c.read_raw()
                except ConnectionError:
                    self.fail(f"{name}: connection closed without an error reply")
                self.assertTrue(reply.startswith(b"-ERR Protocol error"),
                                f"{name}: {raw[:40]!r} got {reply!r}")
                self.assertTrue(c.wait_closed(h.scaled(5)),
                                f"{name}: connection not closed after the protocol error")
        # Requests before the malformed one are answered first, in order.
        with self.keygate.client(timeout=h.scaled(10)) as c:
            c.send_raw(h.encode_command("SET", "before", "1") + b"PING\r\n*1\r\n:1\r\n")
            self.assertEqual(c.read(), "OK")
            self.assertEqual(c.read(), "PONG")
            self.assertTrue(c.read_raw().startswith(b"-ERR Protocol error"))
            self.assertTrue(c.wait_closed(h.scaled(5)))
        # keygate itself is fine.
        self.assert_usable(self.kg(), "protocol errors on other connections")

    def test_unsupported_commands_keep_connection_open(self):
        c = self.kg()
        for cmd in UNSUPPORTED:
            reply = c.call(*cmd)
            self.assertIsInstance(reply, h.ErrorReply, f"{cmd}: {reply!r}")
            self.assert_usable(c, " ".join(cmd))

    def test_select(self):
        c = self.kg()
        self.assertEqual(c.call("SELECT", "0"), "OK")
        reply = c.call("SELECT", "1")
        self.assertIsInstance(reply, h.ErrorReply, reply)
        self.assertIsInstance(c.call("SELECT", "abc"), h.ErrorReply)
        self.assert_usable(c, "SELECT")
        # Still on db 0: what we wrote is visible in Redis' db 0.
        self.assertEqual(self.direct().call("GET", "usable"), b"SELECT")

    def test_client_name_and_id(self):
        c1, c2 = self.kg(), self.kg()
        self.assertIsNone(c1.call("CLIENT", "GETNAME"))
        self.assertEqual(c1.call("CLIENT", "SETNAME", "quote-service/submit"), "OK")
        self.assertEqual(c1.call("CLIENT", "GETNAME"), b"quote-service/submit")
        self.assertIsNone(c2.call("CLIENT", "GETNAME"), "name leaked to another connection")
        self.assertIsInstance(c1.call("CLIENT", "SETNAME", "has space"), h.ErrorReply)
        self.assertEqual(c1.call("CLIENT", "GETNAME"), b"quote-service/submit")
        id1, id2 = c1.call("CLIENT", "ID"), c2.call("CLIENT", "ID")
        self.assertIsInstance(id1, int)
        self.assertIsInstance(id2, int)
        self.assertGreater(id1, 0)
        self.assertNotEqual(id1, id2)
        self.assertEqual(c1.call("CLIENT", "ID"), id1)
        self.assertEqual(c1.call("CLIENT", "SETINFO", "lib-name", "keygate-tests"), "OK")
        self.assertEqual(c1.call("CLIENT", "SETINFO", "lib-ver", "1.0"), "OK")
        info = c1.call("CLIENT", "INFO")
        self.assertIsInstance(info, bytes)
        self.assertIn(b"name=quote-service/submit", info)
        self.assertEqual(c1.call("CLIENT", "SETNAME", ""), "OK")
        self.assertIsNone(c1.call("CLIENT", "GETNAME"))
        self.assert_usable(c1, "CLIENT")

    def test_ping_echo(self):
        c = self.kg()
        self.assertEqual(c.call_raw("PING"), b"+PONG\r\n")
        self.assertEqual(c.call_raw("PING", "hi"), b"$2\r\nhi\r\n")
        self.assertEqual(c.call_raw("ECHO", "hello world"), b"$11\r\nhello world\r\n")
        self.assertEqual(c.call_raw("ECHO", ""), b"$0\r\n\r\n")
        self.assertIsInstance(c.call("PING", "a", "b"), h.ErrorReply)
        self.assertIsInstance(c.call("ECHO"), h.ErrorReply)
        self.assertEqual(c.call_raw("READWRITE")[:1] in (b"+", b"-"), True)
        self.assertEqual(c.call_raw("READONLY")[:1] in (b"+", b"-"), True)
        self.assert_usable(c, "PING/ECHO/READONLY/READWRITE")

    def test_local_and_forwarded_replies_stay_in_order(self):
        c = self.kg()
        c.send_many([("SET", "o", "1"), ("PING",), ("GET", "o"), ("ECHO", "e1"),
                     ("BLPOP", "no:list", "0.3"), ("PING", "after-blpop"), ("CLIENT", "GETNAME"),
                     ("INCR", "o"), ("SELECT", "0"), ("GET", "o"), ("ECHO", "last")])
        replies = [c.read() for _ in range(11)]
        self.assertEqual(replies, ["OK", "PONG", b"1", b"e1", None, b"after-blpop", None, 2, "OK",
                                   b"2", b"last"])

    def test_info_has_keygate_section(self):
        c = self.kg()
        info = c.call("INFO")
        self.assertIsInstance(info, bytes)
        text = info.decode()
        self.assertTrue("# keygate" in text, f"no '# keygate' section in INFO: {text[:300]!r}")
        self.assertTrue("# Server" in text and "redis_version:" in text,  # forwarded from Redis
                        f"Redis' own INFO sections missing: {text[:300]!r}")
        # RESP3: Redis sends INFO as a verbatim string; keygate's reply has the same type.
        c3 = self.kg()
        self.assertEqual(c3.call_raw("HELLO", "3")[:1], b"%")
        raw = c3.call_raw("INFO")
        with self.redis.client() as d:
            d.call("HELLO", "3")
            direct = d.call_raw("INFO")
        self.assertEqual(raw[:1], direct[:1], f"INFO reply type: keygate {raw[:30]!r}, "
                                              f"Redis {direct[:30]!r}")
        self.assertTrue(b"# keygate" in raw, f"no '# keygate' section in RESP3 INFO: {raw[:300]!r}")
        self.assert_usable(c, "INFO")

    def test_quit(self):
        with self.keygate.client(timeout=h.scaled(10)) as c:
            self.assertEqual(c.call("SET", "q", "1"), "OK")
            self.assertEqual(c.call_raw("QUIT"), b"+OK\r\n")
            self.assertTrue(c.wait_closed(h.scaled(5)), "connection not closed after QUIT")
        # Pipelined: replies before QUIT are delivered, then +OK, then close.
        with self.keygate.client(timeout=h.scaled(10)) as c:
            c.send_many([("INCR", "q"), ("GET", "q"), ("QUIT",), ("INCR", "q")])
            self.assertEqual(c.read(), 2)
            self.assertEqual(c.read(), b"2")
            self.assertEqual(c.read_raw(), b"+OK\r\n")
            self.assertTrue(c.wait_closed(h.scaled(5)))
            self.assertEqual(c.buffered(), b"", "reply after QUIT")
        self.assertEqual(self.direct().call("GET", "q"), b"2", "command after QUIT was executed")

    def test_inline_commands(self):
        c = self.kg()
        c.send_raw(b"PING\r\n")
        self.assertEqual(c.read_raw(), b"+PONG\r\n")
        c.send_raw(b"PING\n")
        self.assertEqual(c.read_raw(), b"+PONG\r\n")
        c.send_raw(b'SET inline "a b c"\r\n')
        self.assertEqual(c.read_raw(), b"+OK\r\n")
        c.send_raw(b"GET inline\r\n")
        self.assertEqual(c.read_raw(), b"$5\r\na b c\r\n")
        c.send_raw(b"ECHO   spaced   \r\n")
        self.assertEqual(c.read_raw(), b"$6\r\nspaced\r\n")
        # Empty lines are skipped, like Redis does (telnet users press enter).
        c.send_raw(b"\r\n\r\nPING\r\n")
        self.assertEqual(c.read_raw(), b"+PONG\r\n")
        # Inline and multibulk mixed in one write; a command split across writes.
        c.send_raw(b"INCR n\r\n" + h.encode_command("INCR", "n") + b"INC")
        self.assertEqual(c.read(), 1)
        self.assertEqual(c.read(), 2)
        c.send_raw(b"R n\r\n")
        self.assertEqual(c.read(), 3)


class UpstreamAuthTest(h.KeygateTestCase):
    """Redis with requirepass; keygate authenticates its own upstream connections."""

    redis_password = "s3cret-pass"
    keygate_config = "upstream:\n  password: s3cret-pass\n"

    def test_auth_checked_against_upstream(self):
        c = self.kg()
        wrong = c.call("AUTH", "wrong-password")
        self.assertIsInstance(wrong, h.ErrorReply)
        self.assertIn("WRONGPASS", wrong)
        self.assertEqual(c.call("PING"), "PONG")
        self.assertEqual(c.call("AUTH", "s3cret-pass"), "OK")
        self.assertEqual(c.call("AUTH", "default", "s3cret-pass"), "OK")
        self.assertIsInstance(c.call("AUTH", "default", "nope"), h.ErrorReply)
        self.assertEqual(c.call("SET", "authed", "1"), "OK")
        self.assertEqual(self.direct().call("GET", "authed"), b"1")

    def test_hello_with_auth(self):
        c = self.kg()
        bad = c.call("HELLO", "3", "AUTH", "default", "nope")
        self.assertIsInstance(bad, h.ErrorReply)
        self.assertIn("WRONGPASS", bad)
        good = c.call_raw("HELLO", "3", "AUTH", "default", "s3cret-pass", "SETNAME", "app")
        self.assertTrue(good.startswith(b"%"), good)
        self.assertEqual(h.parse_reply(good)[0].to_dict()[b"proto"], 3)
        self.assertEqual(c.call_raw("CLIENT", "GETNAME"), b"$3\r\napp\r\n")
        self.assertEqual(c.call_raw("GET", "missing"), b"_\r\n")


if __name__ == "__main__":
    h.main()
