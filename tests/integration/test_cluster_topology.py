#!/usr/bin/python3
"""keygate's cluster topology fetch (proxy/topology.cpp) against a real 3+3 cluster, through the
test tool topology_probe: the slot map it builds must be the cluster's, from any seed that
answers, and must follow a failover."""

import os
import socket
import subprocess

import cluster_harness as ch
import keygate_harness as h


def probe_bin() -> str:
    path = os.environ.get("KEYGATE_TOPOLOGY_PROBE", "")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError("KEYGATE_TOPOLOGY_PROBE is not set to the topology_probe binary")
    return path


def run_probe(seeds):
    return subprocess.run([probe_bin(), ",".join(seeds)], capture_output=True, text=True,
                          timeout=h.scaled(30))


def closed_port() -> int:
    # A port nothing listens on: bind, note it, close.
    with socket.socket() as s:
        s.bind((h.HOST, 0))
        return s.getsockname()[1]


def parse(stdout: str):
    masters = {}
    covered = None
    for line in stdout.splitlines():
        parts = line.split()
        if parts[0] == "master":
            masters[parts[1]] = (int(parts[3]), int(parts[5]))
        elif parts[0] == "covered":
            covered = int(parts[1])
    return masters, covered


class TopologyFetchTest(ch.KeygateClusterTestCase):
    def expected(self):
        return {m.address: (m.slot_count(), len(self.cluster.replicas_of(m)))
                for m in self.cluster.masters()}

    def test_slot_map_is_the_clusters(self):
        result = run_probe(self.cluster.seeds()[:1])
        self.assertEqual(result.returncode, 0, result.stderr)
        masters, covered = parse(result.stdout)
        self.assertEqual(covered, 16384)
        self.assertEqual(masters, self.expected())

    def test_unreachable_seeds_are_skipped(self):
        seeds = [f"{h.HOST}:{closed_port()}", f"{h.HOST}:{closed_port()}",
                 self.cluster.seeds()[-1]]
        result = run_probe(seeds)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(parse(result.stdout)[0], self.expected())

    def test_a_seed_that_never_answers_is_given_up(self):
        # Accepts connections (the kernel completes the handshake) but never replies.
        with socket.socket() as silent:
            silent.bind((h.HOST, 0))
            silent.listen(16)
            seeds = [f"{h.HOST}:{silent.getsockname()[1]}", self.cluster.seeds()[0]]
            result = run_probe(seeds)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(parse(result.stdout)[0], self.expected())

    def test_no_seed_answers(self):
        result = run_probe([f"{h.HOST}:{closed_port()}"])
        self.assertEqual(result.returncode, 1)
        self.assertIn("error:", result.stderr)
        self.assertIn("refused", result.stderr.lower())

    def test_follows_a_failover(self):
        victim = self.cluster.masters()[0]
        old = self.cluster.kill_master(victim)
        promoted = self.cluster.wait_for_failover(old)
        # The dead master is listed first: the fetch must move on and see the new owner.
        seeds = [old.address] + [m.address for m in self.cluster.masters()]
        result = run_probe(seeds)
        self.assertEqual(result.returncode, 0, result.stderr)
        masters, covered = parse(result.stdout)
        self.assertEqual(covered, 16384)
        self.assertIn(promoted.address, masters)
        self.assertNotIn(old.address, masters)
        self.assertEqual(masters[promoted.address][0], old.slot_count())


class NotAClusterTest(h.KeygateTestCase):
    def test_standalone_redis_is_an_error(self):
        result = run_probe([f"{h.HOST}:{self.redis.port}"])
        self.assertEqual(result.returncode, 1)
        self.assertIn("cluster support disabled", result.stderr)


if __name__ == "__main__":
    h.main()
