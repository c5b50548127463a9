#!/usr/bin/python3
"""RESP3 and RESP2 sessions over raw sockets, compared reply by reply with Redis itself.

Each session (a list of steps) runs once straight against Redis and once through keygate, on a
freshly flushed Redis both times. Every reply must be byte-for-byte what Redis sent, except the
fields of HELLO that legitimately differ (id, version, server) and error texts where only the
error code is compared (marked `err`).
"""

import socket

import keygate_harness as h

# Step kinds:
#   ("cmd", *args)          command on connection A, one reply
#   ("cmdn", n, *args)      command on A that produces n replies (SUBSCRIBE a b -> 2 pushes)
#   ("err", *args)          command on A whose reply must be an error with the same code word
#   ("hello", *args)        HELLO on A, compared field by field
#   ("pub", cmd, ch, msg)   PUBLISH/SPUBLISH on connection B; B's reply, then one push on A
#   ("pubnone", ch, msg)    PUBLISH on B to a channel nobody listens to; B's reply only

DATA_COMMANDS = [
    ("cmd", "SET", "str", "hello"),
    ("cmd", "GET", "str"),
    ("cmd", "GET", "missing"),
    ("cmd", "SET", "str", "world", "GET"),
    ("cmd", "STRLEN", "str"),
    ("err", "INCR", "str"),
    ("cmd", "INCRBYFLOAT", "fl", "1.5"),
    ("cmd", "MSET", "m1", "a", "m2", "b"),
    ("cmd", "MGET", "m1", "missing", "m2"),
    ("cmd", "HSET", "h", "f1", "v1", "f2", "v2", "f3", "3"),
    ("cmd", "HGETALL", "h"),
    ("cmd", "HGETALL", "missing"),
    ("cmd", "HMGET", "h", "f1", "nope"),
    ("cmd", "HGET", "h", "nope"),
    ("cmd", "HINCRBY", "h", "f3", "4"),
    ("cmd", "HKEYS", "h"),
    ("cmd", "SADD", "s", "a", "b", "c"),
    ("cmd", "SMEMBERS", "s"),
    ("cmd", "SMEMBERS", "missing"),
    ("cmd", "SISMEMBER", "s", "a"),
    ("cmd", "SMISMEMBER", "s", "a", "z"),
    ("cmd", "SADD", "s2", "10", "20", "30"),
    ("cmd", "SINTER", "s", "s2"),
    ("cmd", "ZADD", "z", "1.5", "a", "2", "b", "-3.25", "c"),
    ("cmd", "ZSCORE", "z", "a"),
    ("cmd", "ZSCORE", "z", "nope"),
    ("cmd", "ZMSCORE", "z", "a", "nope", "c"),
    ("cmd", "ZRANGE", "z", "0", "-1", "WITHSCORES"),
    ("cmd", "ZINCRBY", "z", "0.5", "a"),
    ("cmd", "ZPOPMIN", "z"),
    ("cmd", "ZRANK", "z", "b"),
    ("cmd", "RPUSH", "l", "a", "b", "c"),
    ("cmd", "LRANGE", "l", "0", "-1"),
    ("cmd", "LPOS", "l", "b"),
    ("cmd", "LPOP", "l", "2"),
    ("err", "LPUSH", "h", "x"),
    ("cmd", "XADD", "st", "1-1", "f", "v"),
    ("cmd", "XADD", "st", "2-1", "g", "w"),
    ("cmd", "XRANGE", "st", "-", "+"),
    ("cmd", "XREAD", "COUNT", "10", "STREAMS", "st", "0"),
    ("cmd", "XLEN", "st"),
    ("cmd", "TYPE", "h"),
    ("cmd", "EXISTS", "h", "s", "missing"),
    ("cmd", "OBJECT", "ENCODING", "h"),
    ("cmd", "EVAL", "return {1,'two',{3,'four'},false}", "0"),
    ("cmd", "EVAL", "return redis.call('HGETALL', KEYS[1])", "1", "h"),
    # Scripts in RESP3 mode produce every RESP3 type (RESP2 clients get them down-converted).
    ("cmd", "EVAL", "redis.setresp(3); return {true, false}", "0"),
    ("cmd", "EVAL", "redis.setresp(3); return {double=3.14}", "0"),
    ("cmd", "EVAL", "redis.setresp(3); return {big_number='123456789012345678901234567890'}", "0"),
    ("cmd", "EVAL", "redis.setresp(3); return {verbatim_string={format='txt', string='hi'}}",
     "0"),
    ("cmd", "EVAL", "redis.setresp(3); return redis.call('HGETALL', KEYS[1])", "1", "h"),
    ("cmd", "BLPOP", "nolist", "0.1"),
    ("cmd", "MULTI"),
    ("cmd", "HGETALL", "h"),
    ("cmd", "ZSCORE", "z", "b"),
    ("cmd", "SMEMBERS", "s"),
    ("cmd", "GET", "missing"),
    ("cmd", "EXEC"),
    ("cmd", "DEL", "str", "missing", "h"),
    ("cmd", "PING"),
    ("cmd", "PING", "payload"),
    ("cmd", "ECHO", "echoed"),
    ("cmd", "CLIENT", "GETNAME"),
    ("cmd", "CLIENT", "SETNAME", "cmp"),
    ("cmd", "CLIENT", "GETNAME"),
    ("cmd", "SELECT", "0"),
    ("cmd", "GETDEL", "m1"),
]

PUBSUB_STEPS = [
    ("cmdn", 2, "SUBSCRIBE", "ch1", "ch2"),
    ("cmd", "PSUBSCRIBE", "pat.*"),
    ("pub", "PUBLISH", "ch1", "hello"),
    ("pub", "PUBLISH", "pat.x", "world"),
    ("pub", "PUBLISH", "ch2", ""),
    ("pubnone", "nobody", "x"),
    ("pub", "PUBLISH", "ch1", "b" * 70000),
    ("cmd", "PING"),
    ("cmd", "PING", "in-subscribed-mode"),
    ("cmdn", 2, "UNSUBSCRIBE", "ch1", "ch2"),
    ("pub", "PUBLISH", "pat.y", "still-pattern"),
    ("cmd", "PUNSUBSCRIBE", "pat.*"),
    ("pubnone", "ch1", "after-unsubscribe"),
    ("cmd", "SET", "k", "v"),
    ("cmd", "GET", "k"),
]


class RespSessionTest(h.KeygateTestCase):

    def run_session(self, port: int, steps, prologue=()):
        """Runs steps on connections A and B to `port`; returns [(step, raw reply bytes)]."""
        a = h.RespConnection(port, timeout=h.scaled(10))
        b = h.RespConnection(port, timeout=h.scaled(10))
        out = []
        try:
            for step in list(prologue) + list(steps):
                kind = step[0]
                if kind in ("cmd", "err", "hello"):
                    a.send(*step[1:])
                    out.append((step, a.read_raw()))
                elif kind == "cmdn":
                    a.send(*step[2:])
                    out.append((step, b"".join(a.read_raw() for _ in range(step[1]))))
                elif kind == "pub":
                    b.send(step[1], step[2], step[3])
                    out.append((("B",) + step, b.read_raw()))
                    out.append((step, a.read_raw()))
                elif kind == "pubnone":
                    b.send("PUBLISH", step[1], step[2])
                    out.append((("B",) + step, b.read_raw()))
                else:
                    raise ValueError(kind)
            # Nothing may be left over or arrive late on A (a stray message, a duplicate reply).
            a.send("ECHO", "end-of-session")
            out.append((("cmd", "ECHO", "end-of-session"), a.read_raw()))
            a.sock.settimeout(0.2)
            try:
                extra = a.buffered() + a.sock.recv(65536)
            except socket.timeout:
                extra = a.buffered()
            out.append((("trailing bytes on A",), extra))
        finally:
            a.close()
            b.close()
        return out

    def compare(self, steps, prologue=()):
        self.redis.flushall()
        direct = self.run_session(self.redis.port, steps, prologue)
        self.redis.flushall()
        proxied = self.run_session(self.keygate.port, steps, prologue)
        self.assertEqual(len(direct), len(proxied))
        for (step, want), (_, got) in zip(direct, proxied):
            kind = step[0]
            if kind == "hello":
                self.compare_hello(step, want, got)
            elif kind == "err":
                self.assertTrue(want[:1] in (b"-", b"!"), f"{step}: Redis did not error: {want!r}")
                self.assertTrue(got[:1] in (b"-", b"!"),
                                f"{step}: keygate {got!r}, Redis error {want!r}")
                self.assertEqual(got.split(b" ", 1)[0], want.split(b" ", 1)[0],
                                 f"{step}: error code differs: keygate {got!r}, Redis {want!r}")
            elif got != want:
                self.fail(f"reply to {step!r} differs\n  Redis:   {want[:300]!r}\n"
                          f"  keygate: {got[:300]!r}")
        return direct, proxied

    def compare_hello(self, step, want_raw, got_raw):
        want, _ = h.parse_reply(want_raw)
        got, _ = h.parse_reply(got_raw)
        self.assertEqual(type(got), type(want),
                         f"{step}: HELLO reply type differs: {got_raw!r} vs Redis {want_raw!r}")

        def fields(v):
            if isinstance(v, h.Map):
                return {k.decode() if isinstance(k, bytes) else str(k): x for k, x in v}
            it = iter(v)
            return {k.decode() if isinstance(k, bytes) else str(k): x for k, x in zip(it, it)}

        w, g = fields(want), fields(got)
        self.assertEqual(set(g), set(w), f"{step}: HELLO fields differ: {g} vs Redis {w}")
        for name in ("proto", "mode", "role", "modules"):
            self.assertEqual(g[name], w[name], f"{step}: HELLO {name}: {g[name]!r} vs {w[name]!r}")
        self.assertIsInstance(g["id"], int)
        self.assertIsInstance(g["version"], bytes)
        self.assertIsInstance(g["server"], bytes)

    # ---------------------------------------------------------------------------------------

    def test_hello3_is_a_map_with_proto_3(self):
        for port, who in ((self.redis.port, "Redis"), (self.keygate.port, "keygate")):
            self.redis.flushall()
            with h.RespConnection(port, timeout=h.scaled(10)) as c:
                raw = c.call_raw("HELLO", "3")
                self.assertTrue(raw.startswith(b"%"), f"{who}: HELLO 3 reply is not a map: {raw!r}")
                reply = h.parse_reply(raw)[0].to_dict()
                self.assertEqual(reply[b"proto"], 3, f"{who}: {reply}")
                for field in (b"server", b"version", b"id", b"mode", b"role", b"modules"):
                    self.assertIn(field, reply, f"{who}: {reply}")
                self.assertEqual(reply[b"mode"], b"standalone")
                self.assertEqual(reply[b"role"], b"master")
                # Further replies are RESP3 on this connection.
                self.assertEqual(c.call_raw("GET", "missing"), b"_\r\n", who)
                self.assertEqual(c.call_raw("HSET", "hh", "a", "1"), b":1\r\n", who)
                self.assertEqual(c.call_raw("HGETALL", "hh"), b"%1\r\n$1\r\na\r\n$1\r\n1\r\n", who)

    def test_resp3_session_matches_redis(self):
        direct, _ = self.compare(DATA_COMMANDS, prologue=[("hello", "HELLO", "3")])
        # The session really exercises RESP3 types: map, set, double, null, boolean.
        first_bytes = {raw[:1] for _, raw in direct}
        for t in (b"%", b"~", b",", b"_", b"(", b"="):
            self.assertIn(t, first_bytes, f"no RESP3 {t!r} reply in the session")
        self.assertTrue(any(b"#f\r\n" in raw for _, raw in direct), "no RESP3 boolean")

    def test_resp2_session_matches_redis(self):
        self.compare(DATA_COMMANDS)

    def test_resp3_pubsub_pushes_match_redis(self):
        direct, _ = self.compare(PUBSUB_STEPS, prologue=[("hello", "HELLO", "3")])
        pushes = [raw for step, raw in direct if step[0] == "pub"]
        self.assertTrue(all(p.startswith(b">") for p in pushes), pushes)

    def test_resp2_pubsub_matches_redis(self):
        steps = [s for s in PUBSUB_STEPS if s[0] != "cmd" or s[1] not in ("SET", "GET")]
        steps += [("cmd", "SUBSCRIBE", "again"),
                  ("err", "GET", "k"),  # RESP2 allows only (P|S)(UN)SUBSCRIBE/PING/QUIT/RESET
                  ("cmd", "UNSUBSCRIBE", "again"),
                  ("cmd", "SET", "k", "v"),
                  ("cmd", "GET", "k")]
        self.compare(steps)

    def test_resp3_commands_while_subscribed_match_redis(self):
        # RESP3 clients (Lettuce, node-redis 4) may run ordinary commands on a subscribed
        # connection; replies and pushes interleave exactly as Redis sends them.
        steps = [
            ("cmd", "SUBSCRIBE", "ch"),
            ("cmd", "SET", "k", "v"),
            ("pub", "PUBLISH", "ch", "m1"),
            ("cmd", "GET", "k"),
            ("cmd", "HSET", "h", "a", "1"),
            ("cmd", "HGETALL", "h"),
            ("pub", "PUBLISH", "ch", "m2"),
            ("cmd", "UNSUBSCRIBE", "ch"),
            ("cmd", "GET", "k"),
        ]
        self.compare(steps, prologue=[("hello", "HELLO", "3")])

    def test_resp3_sharded_pubsub_matches_redis(self):
        steps = [
            ("cmd", "SSUBSCRIBE", "sch"),
            ("pub", "SPUBLISH", "sch", "sharded-1"),
            ("pub", "SPUBLISH", "sch", "sharded-2"),
            ("cmd", "SUNSUBSCRIBE", "sch"),
            ("cmd", "PING"),
        ]
        self.compare(steps, prologue=[("hello", "HELLO", "3")])

    def test_hello_switches_back_to_resp2(self):
        steps = [("cmd", "HSET", "h", "a", "1"), ("cmd", "HGETALL", "h"),
                 ("hello", "HELLO", "2"),
                 ("cmd", "HGETALL", "h"), ("cmd", "GET", "missing"), ("cmd", "ZADD", "z", "1", "m"),
                 ("cmd", "ZSCORE", "z", "m"),
                 ("hello", "HELLO", "3", "SETNAME", "named"), ("cmd", "CLIENT", "GETNAME"),
                 ("cmd", "HGETALL", "h")]
        self.compare(steps, prologue=[("hello", "HELLO", "3")])

    def test_hello_errors_match_redis(self):
        # Unsupported protocol versions are errors (-NOPROTO) and leave the connection usable.
        steps = [("err", "HELLO", "4"), ("err", "HELLO", "abc"), ("cmd", "GET", "missing"),
                 ("hello", "HELLO")]
        self.compare(steps)


if __name__ == "__main__":
    h.main()
