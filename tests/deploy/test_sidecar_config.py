"""The configs shipped in deploy/ load and behave in the real keygate (KEYGATE_BIN).

- The example overlay's sidecar config, as `kubectl kustomize` renders it into the ConfigMap,
  with the files its Secrets and ConfigMaps would mount (registry, ACL hashes from the rendered
  Secret, an admin token, an upstream password, a CA made here with openssl) written into a
  temporary directory in place of /etc/keygate/. Only the listen addresses (loopback, free
  ports instead of 0.0.0.0:9180/9181 and 127.0.0.1:6379) and the seeds (a closed loopback port:
  there is no Redis Cluster here) are changed. keygate must start; /healthz 200 and /readyz 503
  (no slot map) without a token; /metrics on the metrics port without a token; other admin
  paths only with the bearer token; clients must AUTH, the example app's password (from its
  rendered Secret) is accepted, a wrong one refused; its ACL patterns admit the quote keys and
  refuse another pattern and another tenant; SIGTERM exits 0.
- The container image's default config (deploy/docker/keygate.yaml), with its listeners moved
  to loopback ports, the registry at the repository's copy of the image path, and --upstream
  given as a Docker user would: keygate starts and serves /healthz and /metrics.

    KEYGATE_BIN=build/proxy/keygate /usr/bin/python3 -B tests/deploy/test_sidecar_config.py
"""

import base64
import os
import re
import secrets
import shutil
import sys
import tempfile
import unittest
import urllib.error
import urllib.request

import yaml  # python3-yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import deploy_common as dc  # noqa: E402
import keygate_harness as kh  # noqa: E402

OVERLAY = dc.repo_path("deploy", "overlays", "example")


def http_get(port, path, token=None, timeout=5.0):
    """(status, body) of GET http://127.0.0.1:port/path."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


class Keygate(kh.ManagedProcess):
    """keygate started with --config FILE (plus extra flags); free ports chosen by the caller."""

    def start(self, args, admin_port, timeout):
        self._spawn([dc.keygate_bin()] + args)

        def healthy():
            if not self.running():
                raise RuntimeError("exited")
            return http_get(admin_port, "/healthz", timeout=1.0)[0] == 200

        try:
            kh.wait_until(healthy, timeout, message=f"/healthz on {admin_port}")
        except RuntimeError:
            return False
        return True


class SidecarConfigTest(unittest.TestCase):
    def setUp(self):
        self.binary = dc.keygate_bin()
        self.assertIsNotNone(self.binary,
                             "KEYGATE_BIN (the built keygate) is not set or not executable")
        self.tmp = tempfile.mkdtemp(prefix="keygate-deploy-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def launch(self, make_config, extra_args=()):
        """Writes the config make_config(ports) returns and starts keygate on free loopback
        ports, retrying when another process took a port first. Returns (keygate, ports)."""
        for attempt in range(4):
            ports = {name: kh.free_port() for name in ("client", "admin", "metrics", "closed")}
            if len(set(ports.values())) < len(ports):
                continue
            path = os.path.join(self.tmp, f"keygate-{attempt}.yaml")
            with open(path, "w", encoding="utf-8") as f:
                yaml.safe_dump(make_config(ports), f)
            keygate = Keygate(f"keygate-{attempt}", self.tmp)
            args = ["--config", path] + [a.format(**ports) for a in extra_args]
            if keygate.start(args, ports["admin"], kh.scaled(30)):
                self.addCleanup(keygate.stop, kh.scaled(20))
                return keygate, ports
            keygate.stop(kh.scaled(10))
            log = keygate.log_text()
            if not re.search(r"(?i)address already in use", log):
                self.fail(f"keygate did not start with {path}:\n{keygate.log_tail()}")
        self.fail("keygate: no free ports found")

    def stop_cleanly(self, keygate, drain_ms):
        code = keygate.stop(kh.scaled(drain_ms / 1000 + 10))
        self.assertEqual(code, 0, f"keygate exit status after SIGTERM:\n{keygate.log_tail()}")
        self.assertIsNone(keygate.sanitizer_report())

    # --- the example overlay's sidecar config ------------------------------------------------
    def rendered(self):
        kubectls = dc.kubectls()
        self.assertTrue(kubectls, f"no kubectl found: {dc.INSTALL_HINT}")
        out = dc.run([kubectls[0][1], "kustomize", OVERLAY], timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]

        def one(kind, prefix):
            found = [d for d in docs if d["kind"] == kind
                     and re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"]) == prefix]
            self.assertEqual(len(found), 1, f"{kind} {prefix}")
            return found[0]

        def decoded(secret):
            return {k: base64.b64decode("".join(v.split())).decode()
                    for k, v in secret["data"].items()}

        return {
            "config": one("ConfigMap", "keygate-config")["data"]["keygate.yaml"],
            "registry": one("ConfigMap", "keygate-registry")["data"],
            "acl": decoded(one("Secret", "keygate-acl")),
            "app": decoded(one("Secret", "quote-service-redis")),
        }

    def write_mounts(self, rendered):
        """The files the pod's volumes would hold, under <tmp>/etc/keygate/. Returns the token."""
        root = os.path.join(self.tmp, "etc", "keygate")
        token = secrets.token_hex(16)
        files = {f"registry/{k}": v for k, v in rendered["registry"].items()}
        files.update({f"acl/{k}": v for k, v in rendered["acl"].items()})
        files["admin/token"] = token + "\n"
        files["upstream/password"] = "upstream-password-unused-here\n"
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
                f.write(text)
        os.makedirs(os.path.join(root, "tls"), exist_ok=True)
        openssl = shutil.which("openssl")
        self.assertIsNotNone(openssl, "openssl not found: apt-get install openssl "
                                      "(scripts/deps.sh deploy)")
        out = dc.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                      "-subj", "/CN=keygate-deploy-test-ca",
                      "-keyout", os.path.join(self.tmp, "ca.key"),
                      "-out", os.path.join(root, "tls", "ca.crt")], timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        return root, token

    def test_example_sidecar_config_runs(self):
        rendered = self.rendered()
        root, token = self.write_mounts(rendered)
        original = yaml.safe_load(rendered["config"])
        self.assertIn("/etc/keygate/", rendered["config"])
        moved = rendered["config"].replace("/etc/keygate/", root + "/")

        def make_config(ports):
            config = yaml.safe_load(moved)
            config["listen"] = f"127.0.0.1:{ports['client']}"
            config["admin"]["listen"] = f"127.0.0.1:{ports['admin']}"
            config["admin"]["metricsListen"] = f"127.0.0.1:{ports['metrics']}"
            config["upstream"]["seeds"] = [f"127.0.0.1:{ports['closed']}"]
            return config

        keygate, ports = self.launch(make_config)

        # Probes need no token; no Redis Cluster answers, so keygate is alive but not ready.
        self.assertEqual(http_get(ports["admin"], "/healthz")[0], 200)
        status, body = http_get(ports["admin"], "/readyz")
        self.assertEqual(status, 503, body)
        # /metrics for the PodMonitor: the metrics port, no token.
        status, body = http_get(ports["metrics"], "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("keygate_ready", body)
        # Everything else on the admin port only with the token from the secret file.
        self.assertIn(http_get(ports["admin"], "/registry")[0], (401, 403))
        self.assertIn(http_get(ports["admin"], "/metrics", token="wrong")[0], (401, 403))
        self.assertEqual(http_get(ports["admin"], "/registry", token=token)[0], 200)

        # Clients: AUTH as the example application with the password from its own Secret.
        user = original["acl"]["users"][0]
        with kh.RespConnection(ports["client"], timeout=kh.scaled(10)) as c:
            reply = c.call("PING")
            self.assertIsInstance(reply, kh.ErrorReply)
            self.assertTrue(reply.startswith("NOAUTH"), reply)
            reply = c.call("AUTH", user["name"], "not-the-password")
            self.assertIsInstance(reply, kh.ErrorReply)
            self.assertTrue(reply.startswith("WRONGPASS"), reply)
            self.assertEqual(c.call("AUTH", user["name"], rendered["app"]["password"]), "OK")
            self.assertEqual(c.call("PING"), "PONG")
            tenant = user["tenant"]
            # A registry pattern outside the user's patterns, and another tenant: refused by
            # keygate itself (nothing would reach Redis).
            reply = c.call("GET", f"cpq:{{tenant-{tenant}}}:catalog:active")
            self.assertIsInstance(reply, kh.ErrorReply)
            self.assertTrue(reply.startswith("NOPERM"), reply)
            reply = c.call("GET", "cpq:{tenant-someone-else}:quote:workspace:quote-1:user-2")
            self.assertIsInstance(reply, kh.ErrorReply)
            self.assertTrue(reply.startswith("CROSSTENANT"), reply)
            # Its own quote keys pass the ACL (and then meet the missing cluster: whatever the
            # endpoint's failure answer is, it is not an ACL refusal).
            for key in (f"cpq:{{tenant-{tenant}}}:quote:workspace:quote-1:user-2",
                        f"cpq:{{tenant-{tenant}}}:pricing:preview:quote-1:rev-2:policy-p1"):
                reply = c.call("GET", key)
                if isinstance(reply, kh.ErrorReply):
                    self.assertFalse(reply.startswith(("NOPERM", "CROSSTENANT", "KEYUNKNOWN")),
                                     f"{key}: {reply}")
        self.stop_cleanly(keygate, dc.parse_duration_ms(original["shutdown"]["drainTimeout"]))

    # --- the image's default config ------------------------------------------------------------
    def test_image_default_config_runs(self):
        text = dc.read_text("deploy", "docker", "keygate.yaml")
        default = yaml.safe_load(text)
        image_examples = "/etc/keygate/examples/"  # COPY config/examples/ there (Dockerfile)
        self.assertTrue(default["registry"].startswith(image_examples))

        def make_config(ports):
            config = yaml.safe_load(text)
            config["listen"] = f"127.0.0.1:{ports['client']}"
            config["admin"]["listen"] = f"127.0.0.1:{ports['admin']}"
            config["admin"]["metricsListen"] = f"127.0.0.1:{ports['metrics']}"
            config["registry"] = dc.repo_path(
                "config", "examples", default["registry"][len(image_examples):])
            return config

        # As `docker run keygate --upstream HOST:PORT` would.
        keygate, ports = self.launch(make_config, ["--upstream", "127.0.0.1:{closed}"])
        self.assertEqual(http_get(ports["admin"], "/healthz")[0], 200)
        status, body = http_get(ports["metrics"], "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("keygate_ready", body)
        with kh.RespConnection(ports["client"], timeout=kh.scaled(10)) as c:
            reply = c.call("SET", "not-a-registered-key", "v")
            self.assertIsInstance(reply, kh.ErrorReply)
            self.assertTrue(reply.startswith("KEYUNKNOWN"), reply)
        self.stop_cleanly(keygate, dc.parse_duration_ms(default["shutdown"]["drainTimeout"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
