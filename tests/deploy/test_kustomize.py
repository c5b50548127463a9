"""`kubectl kustomize deploy/overlays/example` renders, and renders a sidecar deployment that is
wired the way keygate needs (issue 7, item 5).

Rendered with every kubectl deploy_common.kubectls() finds: the one on PATH and, when the one on
PATH is newer, Debian 12's kubernetes-client (kubectl 1.20 with kustomize v2.0.3), which
`scripts/deps.sh deploy` unpacks into .tools/debian-kubectl/. Both must render the same
objects. Checked on each rendering:

- the app container with REDIS_URL redis://127.0.0.1:6379 and the keygate sidecar with the
  overlay's image; keygate listens on 127.0.0.1:6379 only (config; no containerPort 6379),
  admin 9180 and metrics 9181 as named ports;
- readiness /readyz and liveness /healthz httpGet on the admin port;
- the registry ConfigMap (fixed name, the same bytes as config/examples/cpq-registry.yaml)
  mounted as a directory without subPath at the directory of the config's `registry:` path;
- the ACL Secret (user: "sha256:<hex>" for every configured user) mounted where
  acl.passwordsFile points; every file the config names lies in a mounted volume; secrets
  not rendered are the documented ones;
- runAsNonRoot, uid 10001, readOnlyRootFilesystem, no privilege escalation, capabilities
  drop ALL, seccomp RuntimeDefault, requests and limits on every container, /tmp an emptyDir;
- terminationGracePeriodSeconds > preStop pause + shutdown.drainTimeout (from the config);
- the PodMonitor (port metrics, honorLabels, selects the pods) and the PrometheusRule
  (the generated file, unchanged);
- the registry passes `keygate check` (KEYGATE_BIN).

    KEYGATE_BIN=build/proxy/keygate /usr/bin/python3 -B tests/deploy/test_kustomize.py
"""

import base64
import copy
import hashlib
import os
import re
import sys
import tempfile
import unittest

import yaml  # python3-yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_common as dc  # noqa: E402

OVERLAY = dc.repo_path("deploy", "overlays", "example")
REGISTRY_SOURCE = dc.repo_path("config", "examples", "cpq-registry.yaml")
REGISTRY_COPY = dc.repo_path("deploy", "base", "registry", "cpq-registry.yaml")
# Secrets the example expects to exist already (credentials are not kept in git); each must be
# documented in deploy/README.md with the command that creates it.
OUT_OF_BAND_SECRETS = {"keygate-upstream", "keygate-upstream-tls", "keygate-admin-token"}
# Deprecation warnings kustomize v5 prints for the fields the v2.0.3 of Debian's kubectl needs.
KNOWN_WARNINGS = re.compile(
    r"^# Warning: '(bases|patchesStrategicMerge)' is deprecated\. Please use '(resources|patches)' "
    r"instead\. Run 'kustomize edit fix' to update your Kustomization automatically\.$")
# Fields kustomize v2.0.3 knows (strict: any other key is an error there).
V2_KUSTOMIZATION_FIELDS = {
    "apiVersion", "kind", "namespace", "namePrefix", "nameSuffix", "commonLabels",
    "commonAnnotations", "resources", "bases", "configMapGenerator", "secretGenerator",
    "generatorOptions", "patchesStrategicMerge", "patchesJson6902", "images", "vars", "crds",
    "configurations",
}
HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def overlay_kustomization():
    with open(os.path.join(OVERLAY, "kustomization.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def render(kubectl, path=OVERLAY):
    out = dc.run([kubectl, "kustomize", path], timeout=120)
    return out


def strip_hash(name):
    return HASH_SUFFIX.sub("", name)


def normalized(docs):
    """Objects with generated name suffixes removed and Secret data decoded, for comparing two
    kustomize versions' output (their hashes and base64 line wrapping differ)."""
    result = []
    text = yaml.safe_dump(docs)
    for name in set(re.findall(r"\b[a-z0-9-]+-[a-z0-9]{10}\b", text)):
        text = text.replace(name, strip_hash(name))
    for doc in yaml.safe_load(text):
        doc = copy.deepcopy(doc)
        if doc["kind"] == "Secret":
            doc["data"] = {k: base64.b64decode("".join(v.split())).decode()
                           for k, v in doc.get("data", {}).items()}
        meta = doc.get("metadata", {})
        for key in ("labels", "annotations"):
            if meta.get(key) == {}:
                del meta[key]  # v2.0.3 writes empty maps for replaced generators
        result.append(doc)
    return sorted(result, key=lambda d: (d["kind"], d["metadata"]["name"]))


class Rendering:
    """One kubectl's rendering of the example overlay, indexed."""

    def __init__(self, label, kubectl):
        self.label = label
        out = render(kubectl)
        if out.returncode != 0:
            raise AssertionError(f"{label}: kubectl kustomize failed ({out.returncode}):\n"
                                 f"{out.stderr}")
        self.stderr = out.stderr
        self.docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        self.by_kind = {}
        for d in self.docs:
            self.by_kind.setdefault(d["kind"], []).append(d)

    def one(self, kind, name=None, prefix=None):
        found = [d for d in self.by_kind.get(kind, [])
                 if (name is None or d["metadata"]["name"] == name)
                 and (prefix is None or strip_hash(d["metadata"]["name"]) == prefix)]
        if len(found) != 1:
            raise AssertionError(f"{self.label}: expected one {kind} "
                                 f"{name or prefix or ''}, found {len(found)}")
        return found[0]


def container(pod, name):
    found = [c for c in pod["containers"] if c["name"] == name]
    if len(found) != 1:
        raise AssertionError(f"container {name}: found {len(found)}")
    return found[0]


def port_number(c, port):
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
    if len(named) != 1:
        raise AssertionError(f"port {port!r} is not a named port of {c['name']}")
    return named[0]


def host_port(text):
    host, _, port = str(text).rpartition(":")
    return host, int(port)


class KustomizeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.kubectls = dc.kubectls()
        cls.renderings = []
        cls.render_errors = []
        for label, path in cls.kubectls:
            try:
                cls.renderings.append(Rendering(f"{label} ({path})", path))
            except AssertionError as e:
                cls.render_errors.append(str(e))

    def each(self):
        """The renderings, failing when there is none (or one failed)."""
        self.assertTrue(self.kubectls, f"no kubectl found: {dc.INSTALL_HINT}")
        self.assertEqual(self.render_errors, [])
        return self.renderings

    # --- rendering ------------------------------------------------------------------------------
    def test_renders_with_each_kubectl(self):
        renderings = self.each()
        for r in renderings:
            kinds = sorted(d["kind"] for d in r.docs)
            self.assertEqual(kinds, ["ConfigMap", "ConfigMap", "Deployment", "PodMonitor",
                                     "PrometheusRule", "Secret", "Secret"], r.label)
            namespace = overlay_kustomization()["namespace"]
            for d in r.docs:
                self.assertEqual(d["metadata"].get("namespace"), namespace,
                                 f"{r.label}: {d['kind']} {d['metadata']['name']}")
            # Nothing on stderr but the known deprecation notes of kustomize v5.
            for line in r.stderr.splitlines():
                if line.strip():
                    self.assertRegex(line.strip(), KNOWN_WARNINGS, r.label)

    def test_debian_kubectl_renders_too(self):
        # The kubectl Debian 12 ships (kustomize v2.0.3) is among the renderers: either on PATH
        # or unpacked by scripts/deps.sh deploy next to a newer one.
        self.each()
        self.assertTrue(any(dc.is_debian_kubectl(path) for _, path in self.kubectls),
                        f"Debian's kubectl 1.20 not found; {dc.INSTALL_HINT}")

    def test_every_kubectl_renders_the_same_objects(self):
        renderings = self.each()
        first = normalized(renderings[0].docs)
        for r in renderings[1:]:
            self.assertEqual(normalized(r.docs), first, f"{renderings[0].label} vs {r.label}")

    def test_kustomizations_stay_compatible_with_kustomize_v2(self):
        # Whatever kubectl CI has, the files keep to what Debian's kubectl understands.
        for root, _, files in os.walk(dc.repo_path("deploy")):
            if "kustomization.yaml" not in files:
                continue
            path = os.path.join(root, "kustomization.yaml")
            with open(path, encoding="utf-8") as f:
                k = yaml.safe_load(f)
            self.assertEqual(set(k) - V2_KUSTOMIZATION_FIELDS, set(), path)
            for entry in k.get("resources", []):
                self.assertTrue(os.path.isfile(os.path.join(root, entry)),
                                f"{path}: resources entry {entry} is not a file (v2: use bases)")
            for entry in k.get("bases", []):
                self.assertTrue(os.path.isdir(os.path.join(root, entry)), f"{path}: {entry}")
            for gen in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
                self.assertEqual(set(gen) - {"name", "namespace", "behavior", "files",
                                             "literals", "env", "type"}, set(),
                                 f"{path}: generator {gen.get('name')}")

    # --- the sidecar ------------------------------------------------------------------------------
    def keygate_config(self, r):
        cm = r.one("ConfigMap", prefix="keygate-config")
        self.assertRegex(cm["metadata"]["name"], HASH_SUFFIX,
                         "keygate-config keeps its hash suffix, so a config change rolls pods")
        self.assertEqual(list(cm["data"]), ["keygate.yaml"])
        return cm, yaml.safe_load(cm["data"]["keygate.yaml"])

    def pod(self, r):
        return r.one("Deployment")["spec"]["template"]["spec"]

    def mounts(self, c, pod):
        """{mountPath: (volume, mount)} of container c."""
        volumes = {v["name"]: v for v in pod["volumes"]}
        return {m["mountPath"]: (volumes[m["name"]], m) for m in c.get("volumeMounts", [])}

    def test_sidecar_and_app(self):
        overlay = overlay_kustomization()
        images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in overlay["images"]}
        for r in self.each():
            pod = self.pod(r)
            keygate = container(pod, "keygate")
            self.assertEqual(keygate["image"], images["keygate"], r.label)
            app = container(pod, "app")
            env = {e["name"]: e for e in app["env"]}
            self.assertEqual(env["REDIS_URL"]["value"], "redis://127.0.0.1:6379")
            cm, config = self.keygate_config(r)
            # keygate reads the ConfigMap's file.
            args = keygate.get("command", []) + keygate.get("args", [])
            self.assertIn("--config", args)
            config_path = args[args.index("--config") + 1]
            mounts = self.mounts(keygate, pod)
            volume, mount = mounts[os.path.dirname(config_path)]
            self.assertEqual(volume["configMap"]["name"], cm["metadata"]["name"])
            self.assertNotIn("subPath", mount)
            self.assertEqual(os.path.basename(config_path), "keygate.yaml")

    def test_ports(self):
        for r in self.each():
            pod = self.pod(r)
            keygate = container(pod, "keygate")
            _, config = self.keygate_config(r)
            # Clients: loopback only, the port of the app's REDIS_URL.
            self.assertEqual(host_port(config["listen"]), ("127.0.0.1", 6379))
            ports = {p["name"]: p["containerPort"] for p in keygate["ports"]}
            self.assertEqual(ports, {"admin": 9180, "metrics": 9181}, r.label)
            for c in pod["containers"]:
                self.assertNotIn(6379, [p["containerPort"] for p in c.get("ports", [])],
                                 "6379 is loopback-only: no containerPort for it")
            # Admin and metrics listeners on the ports the pod declares, reachable by the kubelet
            # and Prometheus.
            self.assertEqual(host_port(config["admin"]["listen"]), ("0.0.0.0", 9180))
            self.assertEqual(host_port(config["admin"]["metricsListen"]), ("0.0.0.0", 9181))

    def test_probes(self):
        for r in self.each():
            keygate = container(self.pod(r), "keygate")
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = keygate[probe]["httpGet"]
                self.assertEqual(get["path"], path, f"{r.label}: {probe}")
                self.assertEqual(port_number(keygate, get["port"]), 9180, f"{r.label}: {probe}")
                self.assertNotIn("httpHeaders", get, "probes need no token")

    def test_registry_configmap_mounted_as_directory(self):
        with open(REGISTRY_SOURCE, encoding="utf-8") as f:
            source = f.read()
        with open(REGISTRY_COPY, encoding="utf-8") as f:
            self.assertEqual(f.read(), source,
                             "deploy/base/registry/cpq-registry.yaml differs from "
                             "config/examples/cpq-registry.yaml: cp the latter over the former")
        for r in self.each():
            pod = self.pod(r)
            _, config = self.keygate_config(r)
            registry_path = config["registry"]
            self.assertTrue(registry_path.startswith("/"), registry_path)
            cm = r.one("ConfigMap", name="keygate-registry")  # no hash suffix: updated in place
            self.assertEqual(cm["data"][os.path.basename(registry_path)], source)
            mounts = self.mounts(container(pod, "keygate"), pod)
            volume, mount = mounts[os.path.dirname(registry_path)]
            self.assertEqual(volume["configMap"]["name"], "keygate-registry")
            self.assertNotIn("subPath", mount, "subPath mounts never see ConfigMap updates")
            self.assertNotIn("items", volume["configMap"])
            # No other mount hides the registry directory or a file inside it.
            for c in pod["containers"]:
                for m in c.get("volumeMounts", []):
                    if m["name"] != volume["name"]:
                        self.assertFalse(m["mountPath"].startswith(os.path.dirname(registry_path)),
                                         m)

    def test_registry_passes_keygate_check(self):
        binary = dc.keygate_bin()
        self.assertIsNotNone(binary, "KEYGATE_BIN (the built keygate) is not set or not executable")
        r = self.each()[0]
        cm = r.one("ConfigMap", name="keygate-registry")
        with tempfile.TemporaryDirectory() as tmp:
            for key, text in cm["data"].items():
                path = os.path.join(tmp, key)
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
                out = dc.run([binary, "check", path], timeout=120)
                self.assertEqual(out.returncode, 0,
                                 f"keygate check {key}:\n{out.stdout}{out.stderr}")

    def test_acl_secret(self):
        overlay = overlay_kustomization()
        for r in self.each():
            pod = self.pod(r)
            _, config = self.keygate_config(r)
            passwords_file = config["acl"]["passwordsFile"]
            secret = r.one("Secret", prefix="keygate-acl")
            mounts = self.mounts(container(pod, "keygate"), pod)
            volume, mount = mounts[os.path.dirname(passwords_file)]
            self.assertEqual(os.path.dirname(passwords_file), "/etc/keygate/acl")
            self.assertEqual(volume["secret"]["secretName"], secret["metadata"]["name"])
            self.assertNotIn("subPath", mount)
            encoded = secret["data"][os.path.basename(passwords_file)]
            data = base64.b64decode("".join(encoded.split()))
            hashes = yaml.safe_load(data)
            self.assertIsInstance(hashes, dict)
            for user, value in hashes.items():
                self.assertRegex(str(value), r"^sha256:[0-9a-f]{64}$", user)
            users = config["acl"]["users"]
            self.assertTrue(users)
            for user in users:
                self.assertIn(user["name"], hashes, f"no password hash for ACL user {user['name']}")
                self.assertTrue(user["commands"] and user["patterns"], user)
            # The example app's password (its own Secret) matches its hash.
            literals = [g for g in overlay["secretGenerator"] if g["name"] == "quote-service-redis"]
            password = dict(l.split("=", 1) for l in literals[0]["literals"])["password"]
            app = container(pod, "app")
            env = {e["name"]: e for e in app["env"]}
            self.assertIn(env["REDIS_USERNAME"]["value"], hashes)
            self.assertEqual(hashes[env["REDIS_USERNAME"]["value"]],
                             "sha256:" + hashlib.sha256(password.encode()).hexdigest())
            self.assertEqual(strip_hash(env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]),
                             "quote-service-redis")

    def test_config_keys(self):
        # The keys of the sidecar config (checked as text: the rendered file is not loaded by
        # keygate here).
        for r in self.each():
            _, config = self.keygate_config(r)
            self.assertEqual(set(config["admin"]), {"listen", "tokenFile", "metricsListen"})
            up = config["upstream"]
            self.assertEqual(up["mode"], "cluster")
            self.assertTrue(up["seeds"])
            for seed in up["seeds"]:
                self.assertGreater(host_port(seed)[1], 0)
            self.assertTrue(up["username"])
            self.assertNotIn("password", up, "the upstream password comes from passwordFile")
            self.assertTrue(up["tls"]["enabled"])
            self.assertEqual(set(config["acl"]), {"passwordsFile", "users"})
            for user in config["acl"]["users"]:
                self.assertLessEqual(set(user), {"name", "commands", "patterns", "tenant"})
            parse = dc.parse_duration_ms(config["shutdown"]["drainTimeout"])
            self.assertGreater(parse, 0)

    def test_files_the_config_names_are_mounted(self):
        for r in self.each():
            pod = self.pod(r)
            _, config = self.keygate_config(r)
            mounts = self.mounts(container(pod, "keygate"), pod)
            rendered = {d["metadata"]["name"] for d in r.docs}
            files = [config["registry"], config["acl"]["passwordsFile"],
                     config["admin"]["tokenFile"], config["upstream"]["passwordFile"],
                     config["upstream"]["tls"]["caFile"]]
            for path in files:
                self.assertIn(os.path.dirname(path), mounts, f"{path}: directory not mounted")
                volume, _ = mounts[os.path.dirname(path)]
                source = volume.get("secret", {}).get("secretName") or volume["configMap"]["name"]
                if source not in rendered:
                    self.assertIn(source, OUT_OF_BAND_SECRETS,
                                  f"{path}: {source} is neither rendered nor a documented secret")
            readme = dc.read_text("deploy", "README.md")
            for name in OUT_OF_BAND_SECRETS:
                self.assertRegex(readme, rf"kubectl[^\n]*create secret generic {name}\b",
                                 f"deploy/README.md does not say how to create {name}")
            # Every volume is used, and every secret or ConfigMap volume is accounted for.
            used = {m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
            for v in pod["volumes"]:
                self.assertIn(v["name"], used)
                source = v.get("secret", {}).get("secretName") or v.get("configMap", {}).get("name")
                if source:
                    self.assertTrue(source in rendered or source in OUT_OF_BAND_SECRETS, source)

    # --- hardening ----------------------------------------------------------------------------
    def test_security_context(self):
        for r in self.each():
            pod = self.pod(r)
            pod_sc = pod.get("securityContext", {})
            for c in pod["containers"] + pod.get("initContainers", []):
                sc = c.get("securityContext", {})

                def effective(key):
                    return sc.get(key, pod_sc.get(key))

                self.assertIs(effective("runAsNonRoot"), True, c["name"])
                self.assertIs(sc.get("readOnlyRootFilesystem"), True, c["name"])
                self.assertIs(sc.get("allowPrivilegeEscalation"), False, c["name"])
                self.assertIn("ALL", sc.get("capabilities", {}).get("drop", []), c["name"])
                self.assertEqual(sc.get("capabilities", {}).get("add", []), [], c["name"])
                self.assertEqual((effective("seccompProfile") or {}).get("type"), "RuntimeDefault")
                self.assertNotEqual(sc.get("privileged"), True)
                if c["name"] == "keygate":
                    self.assertEqual(effective("runAsUser"), 10001)
            self.assertIs(pod.get("automountServiceAccountToken"), False)
            self.assertFalse(pod.get("hostNetwork", False))
            # /tmp is the only writable place keygate needs: an emptyDir.
            volume, _ = self.mounts(container(pod, "keygate"), pod)["/tmp"]
            self.assertIn("emptyDir", volume)

    def test_resources_on_every_container(self):
        for r in self.each():
            pod = self.pod(r)
            for c in pod["containers"] + pod.get("initContainers", []):
                res = c.get("resources", {})
                for kind in ("requests", "limits"):
                    for resource in ("cpu", "memory"):
                        self.assertIn(resource, res.get(kind, {}),
                                      f"{c['name']}: {kind}.{resource}")
            _, config = self.keygate_config(r)
            # Workers pinned to the CPU the sidecar gets (0 would be one per core of the node).
            self.assertGreater(config.get("threads", 0), 0)

    def test_grace_period_exceeds_drain_deadline(self):
        for r in self.each():
            pod = self.pod(r)
            _, config = self.keygate_config(r)
            drain_ms = dc.parse_duration_ms(config["shutdown"]["drainTimeout"])
            keygate = container(pod, "keygate")
            pre_stop_ms = 0
            command = keygate.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
            if command:
                self.assertEqual(command[0], "sleep", command)
                pre_stop_ms = int(command[1]) * 1000
            grace_ms = pod["terminationGracePeriodSeconds"] * 1000
            self.assertGreater(
                grace_ms, pre_stop_ms + drain_ms,
                f"grace {grace_ms}ms <= preStop {pre_stop_ms}ms + drain {drain_ms}ms")

    # --- monitoring ------------------------------------------------------------------------------
    def test_pod_monitor(self):
        for r in self.each():
            pm = r.one("PodMonitor")
            endpoints = pm["spec"]["podMetricsEndpoints"]
            self.assertEqual(len(endpoints), 1)
            self.assertEqual(endpoints[0]["port"], "metrics")
            self.assertIs(endpoints[0]["honorLabels"], True,
                          "keygate's `endpoint` label would become exported_endpoint")
            self.assertEqual(endpoints[0].get("path", "/metrics"), "/metrics")
            deployment = r.one("Deployment")
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            for key, value in pm["spec"]["selector"]["matchLabels"].items():
                self.assertEqual(labels.get(key), value, "the PodMonitor does not select the pods")
            port_number(container(deployment["spec"]["template"]["spec"], "keygate"), "metrics")

    def test_prometheus_rule(self):
        with open(dc.repo_path("deploy", "prometheus", "keygate-prometheusrule.yaml"),
                  encoding="utf-8") as f:
            generated = yaml.safe_load(f)
        for r in self.each():
            rule = r.one("PrometheusRule")
            self.assertEqual(rule["spec"], generated["spec"])
            self.assertTrue(rule["spec"]["groups"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
