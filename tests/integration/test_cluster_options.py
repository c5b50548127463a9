#!/usr/bin/python3
"""Cluster-mode options against a real 3+3 cluster: `upstream.readFrom: replicaPreferred`
(reads served by replicas over READONLY connections, writes by masters) and nodes that announce
host names instead of IPs (`cluster-announce-hostname` + `cluster-preferred-endpoint-type
hostname`, as Kubernetes set-ups do)."""

import subprocess

import cluster_harness as ch
import keygate_harness as h


def commandstat_calls(node, command: str) -> int:
    info = node.call("INFO", "commandstats").decode()
    for line in info.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            fields = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
            return int(fields["calls"])
    return 0


class ClusterOptionsTest(ch.KeygateClusterTestCase):
    start_keygate = False

    def cluster_keygate(self, upstream_extra: str = "", seeds=None):
        seeds = seeds or self.cluster.seeds()
        text = "upstream:\n  mode: cluster\n  seeds: [" + ", ".join(f'"{s}"' for s in seeds)
        text += "]\n" + upstream_extra
        return h.KeygateTestCase.start_private_keygate(self, config=text, upstream_port=None)

    def keys_per_master(self, prefix: str):
        """One key per master: {master port: key}."""
        found = {}
        for i in range(10_000):
            key = f"{prefix}:{i}"
            port = self.cluster.node_for_key(key).port
            found.setdefault(port, key)
            if len(found) == len(self.cluster.masters()):
                return found
        raise AssertionError("no key for some master")

    def test_replica_preferred_reads_from_replicas_and_writes_to_masters(self):
        kg = self.cluster_keygate("  readFrom: replicaPreferred\n")
        keys = self.keys_per_master("rf")
        masters = {m.port: m for m in self.cluster.masters()}
        with kg.client() as c:
            for port, key in keys.items():
                self.assertEqual(c.call("SET", key, f"v-{port}"), "OK")
            # Replication is asynchronous: wait until every replica has its master's key.
            for port, key in keys.items():
                for r in self.cluster.replicas_of(masters[port]):
                    h.wait_until(lambda r=r, key=key, port=port:
                                 self._replica_has(r, key, f"v-{port}"),
                                 h.scaled(10), message=f"{key} on replica {r.address}")
            before_m = {p: commandstat_calls(m, "get") for p, m in masters.items()}
            before_r = {p: sum(commandstat_calls(r, "get")
                               for r in self.cluster.replicas_of(m))
                        for p, m in masters.items()}
            for _ in range(20):
                for port, key in keys.items():
                    self.assertEqual(c.call("GET", key), f"v-{port}".encode())
            for port, m in masters.items():
                replicas = self.cluster.replicas_of(m)
                got_r = sum(commandstat_calls(r, "get") for r in replicas) - before_r[port]
                got_m = commandstat_calls(m, "get") - before_m[port]
                self.assertEqual(got_r, 20, f"GETs served by replicas of {m.address}")
                self.assertEqual(got_m, 0, f"GETs served by master {m.address}")
            # Writes still go to the masters (a replica would answer MOVED or READONLY).
            for port, key in keys.items():
                self.assertEqual(c.call("INCR", key + ":n"), 1)

    @staticmethod
    def _replica_has(replica, key, value) -> bool:
        with replica.client() as rc:
            rc.call("READONLY")
            return rc.call("GET", key) == value.encode()

    def test_read_from_is_refused_in_standalone_mode(self):
        cfg = f"{self.workdir}/readfrom.yaml"
        with open(cfg, "w") as f:
            f.write("upstream:\n  readFrom: replicaPreferred\n")
        done = subprocess.run([h.keygate_bin(), "--config", cfg], capture_output=True,
                              text=True, timeout=h.scaled(10))
        self.assertEqual(done.returncode, 2)
        self.assertIn("upstream.readFrom", done.stderr)
        self.assertIn("cluster", done.stderr)

    def test_nodes_announced_by_hostname_are_resolved(self):
        nodes = self.cluster.nodes()
        try:
            for n in nodes:
                self.assertEqual(n.call("CONFIG", "SET", "cluster-announce-hostname",
                                        "localhost"), "OK")
                self.assertEqual(n.call("CONFIG", "SET", "cluster-preferred-endpoint-type",
                                        "hostname"), "OK")

            def hostnames_everywhere() -> bool:
                for n in nodes:
                    for entry in n.call("CLUSTER", "SLOTS"):
                        for node in entry[2:]:
                            if node[0] != b"localhost":
                                return False
                return True

            h.wait_until(hostnames_everywhere, h.scaled(15),
                         message="every node to list the others by host name")
            # Seeds given by name too.
            seeds = [f"localhost:{n.port}" for n in self.cluster.masters()]
            kg = self.cluster_keygate(seeds=seeds)
            keys = self.keys_per_master("hn")
            with kg.client() as c:
                for port, key in keys.items():
                    self.assertEqual(c.call("SET", key, str(port)), "OK")
                    self.assertEqual(c.call("GET", key), str(port).encode())
            for port, key in keys.items():
                with self.node_conn(self.cluster.node_for_key(key)) as d:
                    self.assertEqual(d.call("GET", key), str(port).encode())
        finally:
            for n in nodes:
                n.call("CONFIG", "SET", "cluster-preferred-endpoint-type", "ip")
                n.call("CONFIG", "SET", "cluster-announce-hostname", "")


if __name__ == "__main__":
    h.main()
