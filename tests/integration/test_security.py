#!/usr/bin/env python3
"""Security (issue 7, SPEC.md section 7): downstream ACL users, upstream ACL AUTH, TLS to Redis
and from clients, and the admin port's bearer token and separate metrics listener.

Every refusal is checked twice: the client gets a clear error, and Redis never saw the
command (its INFO commandstats, reset before, has no call of it).
"""

import hashlib
import os
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis  # noqa: E402  (python3-redis, Debian)

from keygate_harness import (HOST, KeygateTestCase, ManagedProcess, free_port,  # noqa: E402
                             keygate_bin, main, redis_server_bin, run_keygate_cli, scaled,
                             wait_until)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REGISTRY = os.path.join(REPO, "config", "examples", "cpq-registry.yaml")
# Selects the example registry's `admin` endpoint profile (clients: keygate-ops/*).
ADMIN_CLIENT_NAME = "keygate-ops/security-test"

QUOTE_KEY = "cpq:{tenant-acme}:quote:workspace:quote-1:user-2"
OTHER_TENANT_KEY = "cpq:{tenant-globex}:quote:workspace:quote-1:user-2"
CATALOG_KEY = "cpq:{tenant-acme}:catalog:active"


def sha256_line(user: str, password: str) -> str:
    return f'{user}: "sha256:{hashlib.sha256(password.encode()).hexdigest()}"\n'


def write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


def commandstats(port: int, password=None, username=None) -> dict:
    r = redis.Redis(host=HOST, port=port, username=username, password=password,
                    socket_timeout=scaled(10))
    try:
        return {k: v["calls"] for k, v in r.info("commandstats").items()}
    finally:
        r.close()


def wait_tcp(proc: ManagedProcess, port: int, timeout: float) -> None:
    """Waits until `proc` accepts TCP connections on `port` (its protocol may need AUTH/TLS)."""
    import socket

    def accepting():
        if not proc.running():
            raise AssertionError(f"{proc.name} exited during start-up:\n{proc.log_tail()}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(accepting, timeout, message=f"{proc.name} listening on {port}")


class AclTest(KeygateTestCase):
    """A keygate with three users in front of a plain Redis."""

    keygate_password = "d-secret"  # the harness' readiness probe logs in as `default`

    @classmethod
    def setUpClass(cls) -> None:
        import tempfile
        cls.secrets = tempfile.mkdtemp(prefix="keygate-acl-")
        write(os.path.join(cls.secrets, "passwords.yaml"),
              sha256_line("quote-service", "q-secret") + sha256_line("default", "d-secret")
              + f'ops: ["sha256:{hashlib.sha256(b"old").hexdigest()}", '
                f'"sha256:{hashlib.sha256(b"new").hexdigest()}"]\n')
        cls.keygate_config = f"""
registry: {REGISTRY}
acl:
  passwordsFile: {cls.secrets}/passwords.yaml
  users:
    - name: quote-service
      commands: ["@read", "@write", "@connection", "-flushall", "-@dangerous"]
      patterns: ["cpq:{{tenant-<tenant>}}:quote:*", "cpq:{{tenant-<tenant>}}:pricing:*"]
      tenant: acme
    - name: default
      commands: ["@all"]
      patterns: ["*"]
    - name: ops
      commands: ["ping", "dbsize", "info"]
      patterns: ["*"]
"""
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        import shutil
        shutil.rmtree(cls.secrets, True)
        super().tearDownClass()

    def reset_stats(self):
        with self.redis.client() as c:
            self.assertEqual(c.call("CONFIG", "RESETSTAT"), "OK")

    def assertNotReachedRedis(self, *commands):
        stats = commandstats(self.redis.port)
        for command in commands:
            self.assertNotIn(f"cmdstat_{command}", stats,
                             f"{command} reached Redis though keygate refused it: {stats}")

    def quote_client(self):
        c = self.kg()
        self.assertEqual(c.call("AUTH", "quote-service", "q-secret"), "OK")
        self.use_admin_profile(c)
        return c

    def use_admin_profile(self, c):
        """Writes whose success a test asserts go under the example registry's admin endpoint
        profile (500 ms, fail closed): its default one answers after 100 ms as configured,
        which a loaded CI machine can exceed."""
        self.assertEqual(c.call("CLIENT", "SETNAME", ADMIN_CLIENT_NAME), "OK")

    # -- who may connect
    def test_unauthenticated_commands_are_refused(self):
        self.reset_stats()
        c = self.kg()
        for command in (("PING",), ("GET", QUOTE_KEY), ("SET", QUOTE_KEY, "v"), ("DBSIZE",)):
            reply = c.call(*command)
            self.assertTrue(str(reply).startswith("NOAUTH Authentication required"),
                            f"{command}: {reply!r}")
        reply = c.call("HELLO", "3")
        self.assertTrue(str(reply).startswith("NOAUTH HELLO must be called"), reply)
        self.assertNotReachedRedis("get", "set", "dbsize", "hello", "auth")

    def test_wrong_password_and_unknown_user(self):
        self.reset_stats()
        c = self.kg()
        for args in (("quote-service", "nope"), ("nobody", "q-secret"), ("q-secret",)):
            reply = c.call("AUTH", *args)
            self.assertEqual(
                reply, "WRONGPASS invalid username-password pair or user is disabled.", args)
        self.assertTrue(str(c.call("GET", QUOTE_KEY)).startswith("NOAUTH"))
        self.assertNotReachedRedis("auth", "get")

    def test_user_with_rotated_passwords(self):
        for password in ("old", "new"):
            c = self.kg()
            self.assertEqual(c.call("AUTH", "ops", password), "OK")
            self.assertEqual(c.call("PING"), "PONG")

    def test_legacy_auth_is_the_default_user(self):
        c = self.kg()
        self.assertEqual(c.call("AUTH", "d-secret"), "OK")
        self.use_admin_profile(c)
        self.assertEqual(c.call("SET", CATALOG_KEY, "v1"), "OK")
        self.assertEqual(c.call("GET", CATALOG_KEY), b"v1")

    def test_hello_auth_and_redis_py(self):
        c = self.kg()
        reply = c.call("HELLO", "3", "AUTH", "quote-service", "q-secret", "SETNAME",
                       ADMIN_CLIENT_NAME)
        self.assertEqual(reply.to_dict()[b"proto"], 3)
        self.assertEqual(c.call("SET", QUOTE_KEY, "v"), "OK")
        bad = self.kg()
        self.assertEqual(bad.call("HELLO", "3", "AUTH", "quote-service", "x"),
                         "WRONGPASS invalid username-password pair or user is disabled.")
        # A real client library with username/password (redis-py sends AUTH user pass).
        r = redis.Redis(host=HOST, port=self.keygate.port, username="quote-service",
                        password="q-secret", socket_timeout=scaled(10))
        self.addCleanup(r.close)
        self.assertEqual(r.get(QUOTE_KEY), b"v")
        wrong = redis.Redis(host=HOST, port=self.keygate.port, username="quote-service",
                            password="wrong", socket_timeout=scaled(10))
        self.addCleanup(wrong.close)
        with self.assertRaises(redis.exceptions.ResponseError) as raised:  # AuthenticationError
            wrong.ping()                                                  # is one, in newer ones
        self.assertIn("WRONGPASS", str(raised.exception))

    # -- what a user may do
    def test_disallowed_command(self):
        c = self.quote_client()
        self.reset_stats()
        self.assertEqual(c.call("FLUSHALL"),
                         "NOPERM User quote-service has no permissions to run the 'flushall' "
                         "command")
        self.assertEqual(c.call("CONFIG", "GET", "maxmemory"),
                         "NOPERM User quote-service has no permissions to run the 'config get' "
                         "command")
        self.assertNotReachedRedis("flushall", "config|get")
        # Allowed ones still work on the same connection.
        self.assertEqual(c.call("SET", QUOTE_KEY, "v"), "OK")

    def test_disallowed_pattern(self):
        with self.direct() as d:
            d.call("SET", CATALOG_KEY, "secret-catalog")
        c = self.quote_client()
        self.reset_stats()
        reply = str(c.call("GET", CATALOG_KEY))
        self.assertTrue(reply.startswith("NOPERM keygate: user 'quote-service' has no "
                                         "permissions to access the key"), reply)
        self.assertIn("cpq:{tenant-<tenant>}:catalog:active", reply)
        reply = str(c.call("MGET", QUOTE_KEY, CATALOG_KEY))
        self.assertTrue(reply.startswith("NOPERM"), reply)
        # An unregistered key is outside every pattern list too.
        reply = str(c.call("GET", "no-such-shape"))
        self.assertTrue(reply.startswith("KEYUNKNOWN") or reply.startswith("NOPERM"), reply)
        self.assertNotReachedRedis("get", "mget")

    def test_cross_tenant_key(self):
        c = self.quote_client()
        self.reset_stats()
        reply = str(c.call("SET", OTHER_TENANT_KEY, "v"))
        self.assertTrue(reply.startswith("CROSSTENANT"), reply)
        self.assertIn("bound to tenant 'acme'", reply)
        reply = str(c.call("SCAN", "0"))  # would list other tenants' keys
        self.assertTrue(reply.startswith("CROSSTENANT"), reply)
        self.assertNotReachedRedis("set", "scan")
        self.assertEqual(c.call("SET", QUOTE_KEY, "v"), "OK")

    def test_reset_logs_out(self):
        c = self.quote_client()
        self.assertEqual(c.call("RESET"), "RESET")
        self.assertTrue(str(c.call("GET", QUOTE_KEY)).startswith("NOAUTH"))


class AclConfigErrorsTest(KeygateTestCase):
    """Mistakes in the ACL config stop keygate at start-up with the file and line."""

    def run_config(self, config: str):
        path = write(os.path.join(self.workdir, "bad.yaml"), config)
        return run_keygate_cli(["--config", path])

    def test_errors_name_file_line_and_fix(self):
        write(os.path.join(self.workdir, "pw.yaml"),
              sha256_line("svc", "x") + 'broken: "md5:abc"\n')
        result = self.run_config(f"""registry: {REGISTRY}
acl:
  passwordsFile: pw.yaml
  users:
    - name: svc
      commands: ["@read", "gett", "@nosuch"]
      patterns: ["*"]
    - name: missing-hash
      commands: ["get"]
      patterns: ["*"]
""")
        err = result.stderr.decode()
        self.assertEqual(result.returncode, 2, err)
        self.assertIn("pw.yaml:2:", err)
        self.assertIn("not a password hash", err)
        self.assertIn("'missing-hash'", err)
        self.assertIn("has no password hash", err)
        self.assertNotIn("md5:abc", err.replace('"md5:abc"', ""))  # the value is not echoed
        ok = write(os.path.join(self.workdir, "pw.yaml"),
                   sha256_line("svc", "x") + sha256_line("missing-hash", "y"))
        self.assertTrue(ok)
        result = self.run_config(f"""registry: {REGISTRY}
acl:
  passwordsFile: pw.yaml
  users:
    - name: svc
      commands: ["@read", "gett", "@nosuch"]
      patterns: ["*"]
""")
        err = result.stderr.decode()
        self.assertEqual(result.returncode, 2, err)
        self.assertRegex(err, r"bad\.yaml:6:\d+: acl\.users\[0\]\.commands\[1\]: unknown command "
                              r"'gett'")
        self.assertRegex(err, r"bad\.yaml:6:\d+: acl\.users\[0\]\.commands\[2\]: unknown ACL "
                              r"category '@nosuch'")

    def test_users_need_a_password_file_and_patterns_need_a_registry(self):
        result = self.run_config("""acl:
  users:
    - name: svc
      commands: ["get"]
      patterns: ["cpq:*"]
""")
        err = result.stderr.decode()
        self.assertEqual(result.returncode, 2, err)
        self.assertIn("acl.passwordsFile", err)


class UpstreamAclAndAdminTokenTest(KeygateTestCase):
    """keygate authenticates to Redis as an ACL user whose password comes from a file; the
    admin port needs a bearer token, and /metrics is also served on its own port."""

    # The default user (the harness' own probes) has a password of its own; keygate must log
    # in as the `keygate` ACL user.
    redis_args = ["--user", "keygate", "on", ">up-secret", "~*", "&*", "+@all"]
    redis_password = "admin-pw"

    @classmethod
    def setUpClass(cls) -> None:
        import tempfile
        cls.secrets = tempfile.mkdtemp(prefix="keygate-up-")
        write(os.path.join(cls.secrets, "password"), "up-secret\n")
        write(os.path.join(cls.secrets, "token"), "t0ken-value\n")
        cls.admin_port = free_port()
        cls.metrics_port = free_port()
        while cls.metrics_port == cls.admin_port:
            cls.metrics_port = free_port()
        cls.keygate_config = f"""
upstream:
  username: keygate
  passwordFile: {cls.secrets}/password
admin:
  listen: {HOST}:{cls.admin_port}
  tokenFile: {cls.secrets}/token
  metricsListen: {HOST}:{cls.metrics_port}
"""
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        import shutil
        shutil.rmtree(cls.secrets, True)
        super().tearDownClass()

    def http(self, port, path, token=None, method="GET"):
        req = urllib.request.Request(f"http://{HOST}:{port}{path}", method=method)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=scaled(10)) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def test_upstream_acl_user(self):
        c = self.kg()
        self.assertEqual(c.call("SET", "k", "v"), "OK")
        self.assertEqual(c.call("GET", "k"), b"v")
        r = redis.Redis(host=HOST, port=self.redis.port, username="keygate",
                        password="up-secret", socket_timeout=scaled(10))
        self.addCleanup(r.close)
        self.assertEqual(r.get("k"), b"v")
        clients = r.client_list()
        self.assertTrue(any(cl.get("user") == "keygate" for cl in clients), clients)
        self.assertFalse(any(cl.get("user") == "default" for cl in clients), clients)

    def test_wrong_upstream_password_is_not_ready(self):
        bad = write(os.path.join(self.workdir, "badpw"), "wrong\n")
        port = free_port()
        kg = self.start_private_keygate(
            config=f"upstream: {{username: keygate, passwordFile: {bad}}}\n"
                   f"admin: {HOST}:{port}\n", name="keygate-badpw")
        wait_until(lambda: self.http(port, "/readyz")[0] == 503, scaled(10),
                   message="readyz 503 with a wrong upstream password")
        c = kg.client()
        self.addCleanup(c.close)
        reply = str(c.call("GET", "k"))
        self.assertTrue(reply.startswith("UNAVAILABLE") or "WRONGPASS" in reply, reply)

    def test_admin_token(self):
        self.assertEqual(self.http(self.admin_port, "/healthz")[0], 200)
        self.assertIn(self.http(self.admin_port, "/readyz")[0], (200, 503))
        for path in ("/metrics", "/hotkeys", "/bigkeys", "/registry"):
            status, body = self.http(self.admin_port, path)
            self.assertEqual(status, 401, path)
            self.assertIn("Bearer", body)
            self.assertEqual(self.http(self.admin_port, path, token="wrong")[0], 401, path)
            self.assertEqual(self.http(self.admin_port, path, token="t0ken-value")[0], 200, path)
        self.assertEqual(self.http(self.admin_port, "/reload", method="POST")[0], 401)

    def test_separate_metrics_listener(self):
        status, body = self.http(self.metrics_port, "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("keygate_acl_auth_total", body)
        for path in ("/hotkeys", "/registry", "/healthz"):
            self.assertEqual(self.http(self.metrics_port, path)[0], 404, path)
        self.assertEqual(self.http(self.metrics_port, "/reload", method="POST")[0], 404)


def make_certs(directory: str) -> dict:
    """A CA, a server certificate for 127.0.0.1 / localhost, and a client certificate."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True,
                       timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=keygate-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    write(os.path.join(directory, "san.ext"),
          "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
            f"{name}.key", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.crt")
    # A second CA that signed nothing here: trusting it must fail the handshake.
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other-ca",
        "-keyout", "other.key", "-out", "other.crt")
    return {n: os.path.join(directory, n) for n in
            ("ca.crt", "server.crt", "server.key", "client.crt", "client.key", "other.crt")}


class TlsTest(KeygateTestCase):
    """TLS to a real redis-server started with --tls-port (client certificates required), and
    TLS from clients to keygate's listener."""

    @classmethod
    def setUpClass(cls) -> None:
        import tempfile
        cls.certdir = tempfile.mkdtemp(prefix="keygate-tls-")
        cls.certs = make_certs(cls.certdir)
        super().setUpClass()  # a plain Redis + keygate (unused), for the harness' bookkeeping
        cls.tls_redis = ManagedProcess("redis-tls", cls.workdir)
        cls.addClassCleanup(cls.tls_redis.stop, 10)
        cls.tls_port = free_port()
        c = cls.certs
        cls.tls_redis._spawn([redis_server_bin(), "--port", "0", "--tls-port", str(cls.tls_port),
                              "--bind", HOST, "--save", "", "--appendonly", "no",
                              "--tls-cert-file", c["server.crt"], "--tls-key-file",
                              c["server.key"], "--tls-ca-cert-file", c["ca.crt"],
                              "--tls-auth-clients", "yes", "--dir", cls.workdir])
        wait_tcp(cls.tls_redis, cls.tls_port, scaled(15))

    @classmethod
    def tearDownClass(cls) -> None:
        import shutil
        shutil.rmtree(cls.certdir, True)
        super().tearDownClass()

    def setUp(self) -> None:
        pass

    def tls_direct(self):
        r = redis.Redis(host=HOST, port=self.tls_port, ssl=True,
                        ssl_ca_certs=self.certs["ca.crt"], ssl_certfile=self.certs["client.crt"],
                        ssl_keyfile=self.certs["client.key"], socket_timeout=scaled(10))
        self.addCleanup(r.close)
        return r

    def tls_keygate(self, ca: str, name: str, extra: str = "", client_cert: bool = True):
        c = self.certs
        cert = (f"    certFile: {c['client.crt']}\n    keyFile: {c['client.key']}\n"
                if client_cert else "")
        return self.start_private_keygate(
            config=f"upstream:\n  address: {HOST}:{self.tls_port}\n  tls:\n    enabled: true\n"
                   f"    caFile: {ca}\n{cert}{extra}",
            name=name, upstream_port=None)

    def test_tls_to_redis(self):
        kg = self.tls_keygate(self.certs["ca.crt"], "keygate-tls")
        c = kg.client()
        self.addCleanup(c.close)
        self.assertEqual(c.call("SET", "tls-key", "over-tls"), "OK")
        self.assertEqual(self.tls_direct().get("tls-key"), b"over-tls")
        self.assertEqual(c.call("GET", "tls-key"), b"over-tls")
        # Pipelined and larger than one TLS record.
        big = b"x" * 100_000
        c.send_many([("SET", f"big{i}", big) for i in range(20)])
        self.assertEqual([c.read() for _ in range(20)], ["OK"] * 20)
        self.assertEqual(c.call("GET", "big7"), big)

    def test_untrusted_redis_certificate_is_refused(self):
        kg = self.tls_keygate(self.certs["other.crt"], "keygate-untrusted")
        c = kg.client()
        self.addCleanup(c.close)
        reply = str(c.call("GET", "tls-key"))
        self.assertTrue(reply.startswith("UNAVAILABLE"), reply)
        wait_until(lambda: "TLS handshake failed" in kg.log_text(), scaled(10),
                   message="a logged TLS handshake failure")

    def test_redis_requires_client_certificate(self):
        kg = self.tls_keygate(self.certs["ca.crt"], "keygate-nocert", client_cert=False)
        c = kg.client()
        self.addCleanup(c.close)
        reply = str(c.call("GET", "tls-key"))
        self.assertTrue(reply.startswith("UNAVAILABLE"), reply)

    def test_tls_from_clients(self):
        c = self.certs
        port = free_port()
        proc = ManagedProcess("keygate-tls-listener", self.workdir)
        config = write(os.path.join(self.workdir, "tls-listener.yaml"),
                       f"listen: {HOST}:{port}\nupstream: {{address: {HOST}:{self.redis.port}}}\n"
                       f"tls:\n  enabled: true\n  certFile: {c['server.crt']}\n"
                       f"  keyFile: {c['server.key']}\n")
        proc._spawn([keygate_bin(), "--config", config])
        self.addCleanup(proc.stop, scaled(20))
        wait_tcp(proc, port, scaled(30))
        r = redis.Redis(host=HOST, port=port, ssl=True, ssl_ca_certs=c["ca.crt"],
                        socket_timeout=scaled(10))
        self.addCleanup(r.close)
        self.assertTrue(r.set("from-tls-client", "v"))
        self.assertEqual(r.get("from-tls-client"), b"v")
        # redis-cli, a real client, over TLS too.
        out = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), "--tls", "--cacert",
                              c["ca.crt"], "GET", "from-tls-client"], capture_output=True,
                             timeout=scaled(20))
        self.assertEqual(out.stdout.strip(), b"v", out)
        # A plain-text client gets nothing it could mistake for an answer.
        import socket
        with socket.create_connection((HOST, port), timeout=scaled(5)) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            self.assertNotIn(b"PONG", data)
        # A client that does not trust keygate's CA refuses the handshake.
        bad = redis.Redis(host=HOST, port=port, ssl=True, ssl_ca_certs=c["other.crt"],
                          socket_timeout=scaled(10))
        with self.assertRaises(redis.exceptions.ConnectionError):
            bad.ping()
        proc.signal(15)
        self.assertEqual(proc.wait(scaled(20)), 0, proc.log_tail())
        self.assertIsNone(proc.sanitizer_report(), proc.log_tail())


if __name__ == "__main__":
    main()
