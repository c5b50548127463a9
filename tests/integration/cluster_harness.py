"""Redis Cluster fixture for keygate's integration tests and benchmarks (issue 3, item 8).

Builds on ``keygate_harness`` (processes, RESP client, bounded waits, timeout scale) and adds:

* ``RedisCluster``: a real cluster of ``masters`` x (1 + ``replicas_per_master``) redis-server
  processes on free loopback ports (port and port+10000 for the cluster bus both free), created
  with ``redis-cli --cluster create``, with a short ``cluster-node-timeout``. ``start()`` returns
  once every node says ``cluster_state:ok``, all 16384 slots are assigned, every node sees the
  same topology and every replica's link to its master is up. Stopped by PID (SIGTERM, bounded
  wait, SIGKILL), also as a context manager when the body raises.
* Live topology (``masters()``, ``replicas()``, ``node_for_key()``) read with CLUSTER NODES;
  ``key_slot()`` is CRC16 with hash tags as the Redis Cluster spec defines it.
* Fault and resharding tools: ``kill_master()`` + ``wait_for_failover()``, ``restart_node()``,
  ``ensure_healthy()``, and ``migrate_slot()`` / ``SlotMigration`` doing the
  IMPORTING/MIGRATING/MIGRATE/SETSLOT NODE steps one by one with hooks between them.
* ``KeygateClusterTestCase``: ``KeygateTestCase`` with one cluster per class (healed and flushed
  before every test) and, when ``start_keygate`` is set, a keygate in ``upstream.mode: cluster``.

Every wait is bounded polling (``keygate_harness.wait_until``) scaled by the harness' timeout
scale; nothing is killed by name.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

import keygate_harness as h

HOST = h.HOST
SLOTS = 16384
BUS_PORT_OFFSET = 10000

# --------------------------------------------------------------------------------------------
# Timing: the harness' scale, also usable without a keygate binary (benchmarks of Redis alone)
# --------------------------------------------------------------------------------------------


def scaled(seconds: float) -> float:
    try:
        return h.scaled(seconds)
    except RuntimeError:  # KEYGATE_BIN not set: no keygate involved, no sanitizer slowdown
        env = os.environ.get("KEYGATE_TEST_TIMEOUT_SCALE")
        return seconds * (float(env) if env else 1.0)


# --------------------------------------------------------------------------------------------
# Key -> slot (Redis Cluster spec: CRC16/XMODEM of the key or of its hash tag, mod 16384)
# --------------------------------------------------------------------------------------------


def _crc16_table() -> List[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def hash_tag(key: Union[str, bytes]) -> bytes:
    """The part of `key` that is hashed: the bytes between the first '{' and the first '}'
    after it, if that is not empty; otherwise the whole key."""
    k = key.encode() if isinstance(key, str) else bytes(key)
    start = k.find(b"{")
    if start >= 0:
        end = k.find(b"}", start + 1)
        if end > start + 1:
            return k[start + 1:end]
    return k


def key_slot(key: Union[str, bytes]) -> int:
    return crc16(hash_tag(key)) % SLOTS


# --------------------------------------------------------------------------------------------
# Ports: both the client port P and the bus port P+10000 must be free, and both below the
# kernel's ephemeral range (32768+) like the harness' ports, so client sockets never hold them.
# --------------------------------------------------------------------------------------------

_PORT_LOW, _PORT_HIGH = 10000, 15000  # bus ports 20000..24999, below keygate_harness' range
_rng = random.Random(os.getpid() ^ int(time.time() * 1000) ^ 0x5EED)
_handed_out: set = set()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def cluster_free_port() -> int:
    """A port P such that P and P+10000 are both free now and not handed out earlier."""
    for _ in range(1000):
        port = _rng.randrange(_PORT_LOW, _PORT_HIGH)
        if port in _handed_out or port + BUS_PORT_OFFSET in _handed_out:
            continue
        if _bindable(port) and _bindable(port + BUS_PORT_OFFSET):
            _handed_out.update((port, port + BUS_PORT_OFFSET))
            return port
    raise h.StartupError("no free port pair (P, P+10000) found for a cluster node")


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _text(reply: object, what: str) -> str:
    if isinstance(reply, h.ErrorReply):
        raise AssertionError(f"{what}: error reply {reply!r}")
    if isinstance(reply, (bytes, bytearray)):
        return bytes(reply).decode("utf-8", "replace")
    if isinstance(reply, str):
        return str(reply)
    raise AssertionError(f"{what}: unexpected reply {reply!r}")


def parse_info(text: str) -> Dict[str, str]:
    """`field:value` lines of INFO / CLUSTER INFO into a dict."""
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


class ClusterNode(h.ManagedProcess):
    """One redis-server in cluster mode: its own data dir (with nodes.conf), a fixed port once
    started, so it can be restarted in place."""

    def __init__(self, workdir: str, index: int, node_timeout_ms: int,
                 extra_args: Sequence[str] = ()):
        super().__init__(f"node{index}", workdir)
        self.index = index
        self.port = 0
        self.node_timeout_ms = node_timeout_ms
        self.extra_args = list(extra_args)
        self.datadir = os.path.join(workdir, self.name)

    def command_line(self) -> List[str]:
        return [h.redis_server_bin(), "--port", str(self.port), "--bind", HOST,
                "--save", "", "--appendonly", "no", "--dir", self.datadir,
                "--daemonize", "no", "--protected-mode", "no", "--loglevel", "notice",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                # Stable topology for tests: a replica never wanders to another master, and a
                # replica may always take over however long it was disconnected.
                "--cluster-allow-replica-migration", "no",
                "--cluster-replica-validity-factor", "0",
                # Replicas sync at once instead of after the default 5 s diskless delay.
                "--repl-diskless-sync-delay", "0",
                # SIGTERM: do not wait up to 10 s for replicas that are being stopped too.
                "--shutdown-timeout", "0",
                ] + self.extra_args

    def launch(self) -> None:
        """Spawns on a fresh port pair (no waiting)."""
        os.makedirs(self.datadir, exist_ok=True)
        conf = os.path.join(self.datadir, "nodes.conf")
        if os.path.exists(conf):  # left by an attempt that lost its port: start as a new node
            os.unlink(conf)
        self.port = cluster_free_port()
        self._spawn(self.command_line())

    def relaunch(self) -> None:
        """Spawns again on the same port with the same nodes.conf (restart in place)."""
        self._spawn(self.command_line())

    def wait_ready(self, timeout: float) -> str:
        return h._wait_ready(self, self.port, timeout)

    def client(self, timeout: float = 10.0) -> h.RespConnection:
        return h.RespConnection(self.port, timeout=timeout, connect_timeout=min(timeout, 5.0))

    def call(self, *args, timeout: float = 10.0) -> object:
        with self.client(timeout) as c:
            return c.call(*args)


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of CLUSTER NODES as seen by some node, plus our process for that port."""

    node_id: str
    host: str
    port: int
    bus_port: int
    flags: FrozenSet[str]
    master_id: Optional[str]
    config_epoch: int
    link_state: str
    slots: Tuple[Tuple[int, int], ...]
    pid: Optional[int] = field(default=None, compare=False)  # of our process, when read
    process: Optional[ClusterNode] = field(default=None, compare=False, repr=False)

    @property
    def role(self) -> str:
        if "master" in self.flags:
            return "master"
        if "slave" in self.flags:
            return "replica"
        return "unknown"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})

    def owns(self, slot: int) -> bool:
        return any(a <= slot <= b for a, b in self.slots)

    def slot_count(self) -> int:
        return sum(b - a + 1 for a, b in self.slots)

    def client(self, timeout: float = 10.0) -> h.RespConnection:
        return h.RespConnection(self.port, host=self.host, timeout=timeout,
                                connect_timeout=min(timeout, 5.0))

    def call(self, *args, timeout: float = 10.0) -> object:
        with self.client(timeout) as c:
            return c.call(*args)


def parse_cluster_nodes(text: str, processes: Optional[Dict[int, ClusterNode]] = None
                        ) -> List[ClusterNodeInfo]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        node_id, addr, flags, master, _ping, _pong, epoch, link = parts[:8]
        addr = addr.split(",", 1)[0]            # ip:port@cport[,hostname]
        hostport, _, bus = addr.partition("@")
        host, _, port = hostport.rpartition(":")
        slots = []
        for s in parts[8:]:
            if s.startswith("["):              # [slot->-id] migrating / [slot-<-id] importing
                continue
            a, _, b = s.partition("-")
            slots.append((int(a), int(b) if b else int(a)))
        port_i = int(port) if port else 0
        proc = (processes or {}).get(port_i)
        out.append(ClusterNodeInfo(
            node_id=node_id, host=host or HOST, port=port_i, bus_port=int(bus or 0),
            flags=frozenset(flags.split(",")), master_id=None if master == "-" else master,
            config_epoch=int(epoch), link_state=link, slots=tuple(sorted(slots)),
            pid=proc.pid if proc is not None and proc.proc is not None else None,
            process=proc))
    return out


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------

NodeRef = Union[ClusterNodeInfo, ClusterNode]


class RedisCluster:
    """A real Redis Cluster on loopback. See the module docstring; typical use:

        with RedisCluster(workdir) as cluster:      # started; stopped by PID on exit
            node = cluster.node_for_key("user:1")
            node.call("SET", "user:1", "x")
    """

    def __init__(self, workdir: str, masters: int = 3, replicas_per_master: int = 1,
                 node_timeout_ms: int = 1000, extra_args: Sequence[str] = ()):
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.workdir = workdir
        self.masters_count = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        self.extra_args = list(extra_args)
        total = masters * (1 + replicas_per_master)
        self.processes: List[ClusterNode] = [
            ClusterNode(workdir, i, node_timeout_ms, extra_args) for i in range(total)]
        self.create_output = ""
        self._kills: Dict[str, Tuple[float, Tuple[str, ...]]] = {}
        self.last_failover: Dict[str, float] = {}

    # -- lifecycle
    def start(self, timeout: Optional[float] = None) -> "RedisCluster":
        timeout = timeout if timeout is not None else scaled(60)
        os.makedirs(self.workdir, exist_ok=True)
        try:
            self._start_processes()
            self._create(timeout)
            self.wait_healthy(timeout)
        except BaseException:
            self.dump_logs()
            self.stop()
            raise
        return self

    def _start_processes(self) -> None:
        for n in self.processes:
            n.launch()
        for n in self.processes:
            for attempt in range(5):
                state = n.wait_ready(scaled(15))
                if state == "ok":
                    break
                n.stop(5)
                if state == "exited" and "Address already in use" in n.log_text() and attempt < 4:
                    n.launch()  # someone took the port (or its bus port) since we checked
                    continue
                raise h.StartupError(f"cluster node {n.name} did not come up on port {n.port} "
                                     f"({state}).\ncommand: {' '.join(n.args)}\n--- log ---\n"
                                     f"{n.log_tail()}")

    def _create(self, timeout: float) -> None:
        args = [h.tool_bin("redis-cli"), "--cluster", "create",
                *[f"{HOST}:{n.port}" for n in self.processes],
                "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        try:
            res = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True,
                                 timeout=timeout, preexec_fn=h._die_with_parent)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode("utf-8", "replace")
            raise h.StartupError(f"redis-cli --cluster create took over {timeout:.0f}s\n{out}")
        self.create_output = (res.stdout + res.stderr).decode("utf-8", "replace")
        if res.returncode != 0 or "[OK] All 16384 slots covered" not in self.create_output:
            raise h.StartupError(f"redis-cli --cluster create failed (exit {res.returncode}):\n"
                                 f"command: {' '.join(args)}\n{self.create_output}")

    def stop(self, timeout: Optional[float] = None) -> List[str]:
        """SIGTERM to every running node at once, then a bounded wait per node, SIGKILL after.
        Returns the names of nodes that had to be killed. Safe to call more than once."""
        timeout = timeout if timeout is not None else scaled(15)
        for n in self.processes:
            n.signal(signal.SIGTERM)
        killed = []
        for n in self.processes:
            if n.proc is not None and n.stop(timeout) is None and n.returncode is None:
                killed.append(n.name)
        return killed

    def __enter__(self) -> "RedisCluster":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.dump_logs()
        self.stop()

    def pids(self) -> List[int]:
        return [n.pid for n in self.processes if n.proc is not None]

    def process_for(self, node: NodeRef) -> ClusterNode:
        if isinstance(node, ClusterNode):
            return node
        for n in self.processes:
            if n.port == node.port:
                return n
        raise KeyError(f"no process of this cluster on port {node.port}")

    # -- logs
    def log_tails(self, max_lines: int = 40) -> str:
        parts = []
        for n in self.processes:
            if n.proc is None:
                continue
            state = "running" if n.running() else f"exited {n.proc.returncode}"
            parts.append(f"===== {n.name} (pid {n.pid}, port {n.port}, {state}) =====\n"
                         f"{n.log_tail(max_lines)}")
        if self.create_output:
            parts.append(f"===== redis-cli --cluster create =====\n{self.create_output}")
        return "\n".join(parts)

    def dump_logs(self, stream=None, max_lines: int = 40) -> None:
        stream = stream or sys.stderr
        stream.write(f"\n{self.log_tails(max_lines)}\n===== end of cluster node logs =====\n")
        stream.flush()

    # -- topology (live)
    def _by_port(self) -> Dict[int, ClusterNode]:
        return {n.port: n for n in self.processes}

    def topology(self, via: Optional[NodeRef] = None) -> List[ClusterNodeInfo]:
        """All nodes as `via` (default: the first running node that answers) sees them."""
        candidates = [self.process_for(via)] if via is not None else \
            [n for n in self.processes if n.running()]
        errors = []
        for n in candidates:
            try:
                text = _text(n.call("CLUSTER", "NODES", timeout=scaled(5)), "CLUSTER NODES")
                return parse_cluster_nodes(text, self._by_port())
            except (OSError, ConnectionError, h.ProtocolViolation, AssertionError) as exc:
                errors.append(f"{n.name}: {exc!r}")
        raise AssertionError(f"no cluster node answered CLUSTER NODES: {errors}")

    def nodes(self) -> List[ClusterNodeInfo]:
        return self.topology()

    def masters(self) -> List[ClusterNodeInfo]:
        """Masters not marked failed, by port."""
        return sorted((n for n in self.topology() if n.role == "master" and not n.failed),
                      key=lambda n: n.port)

    def replicas(self) -> List[ClusterNodeInfo]:
        return sorted((n for n in self.topology() if n.role == "replica" and not n.failed),
                      key=lambda n: n.port)

    def replicas_of(self, master: NodeRef) -> List[ClusterNodeInfo]:
        master_id = self.node_id(master)
        return [n for n in self.replicas() if n.master_id == master_id]

    def node_id(self, node: NodeRef) -> str:
        if isinstance(node, ClusterNodeInfo):
            return node.node_id
        return _text(self.process_for(node).call("CLUSTER", "MYID"), "CLUSTER MYID")

    def seeds(self) -> List[str]:
        """Every node's address, "127.0.0.1:port" (all of them: any is a valid seed)."""
        return [f"{HOST}:{n.port}" for n in self.processes]

    def node_for_slot(self, slot: int) -> ClusterNodeInfo:
        for n in self.masters():
            if n.owns(slot):
                return n
        raise AssertionError(f"no master owns slot {slot}")

    def node_for_key(self, key: Union[str, bytes]) -> ClusterNodeInfo:
        return self.node_for_slot(key_slot(key))

    # -- health
    def health_problems(self) -> List[str]:
        """Empty when the cluster is as started: every node up with cluster_state:ok, all slots
        assigned and ok, the same topology seen by all, `masters` masters each with
        `replicas_per_master` replicas whose link is up, no node flagged failed."""
        problems: List[str] = []
        views: Dict[str, List[ClusterNodeInfo]] = {}
        total = len(self.processes)
        for n in self.processes:
            if not n.running():
                problems.append(f"{n.name} (port {n.port}) is not running")
                continue
            try:
                with n.client(timeout=scaled(5)) as c:
                    info = parse_info(_text(c.call("CLUSTER", "INFO"), "CLUSTER INFO"))
                    view = parse_cluster_nodes(_text(c.call("CLUSTER", "NODES"), "CLUSTER NODES"))
                    repl = parse_info(_text(c.call("INFO", "replication"), "INFO"))
                    slots = c.call("CLUSTER", "SLOTS")
            except (OSError, ConnectionError, h.ProtocolViolation, AssertionError) as exc:
                problems.append(f"{n.name}: {exc!r}")
                continue
            # What clients (and keygate's topology fetch) read: CLUSTER SLOTS leaves out a
            # replica until the node has heard it is in sync, some gossip after CLUSTER NODES
            # already lists it (a restarted master that rejoined as a replica).
            if not isinstance(slots, list):
                problems.append(f"{n.name}: CLUSTER SLOTS answered {slots!r}")
            else:
                for entry in slots:
                    if isinstance(entry, list) and len(entry) - 3 != self.replicas_per_master:
                        problems.append(f"{n.name}: CLUSTER SLOTS lists {len(entry) - 3} "
                                        f"replicas for slots {entry[0]}-{entry[1]} "
                                        f"(want {self.replicas_per_master})")
            for k, want in (("cluster_state", "ok"), ("cluster_slots_assigned", str(SLOTS)),
                            ("cluster_slots_ok", str(SLOTS)),
                            ("cluster_known_nodes", str(total))):
                if info.get(k) != want:
                    problems.append(f"{n.name}: {k}:{info.get(k)} (want {want})")
            for e in view:
                if e.failed:
                    problems.append(f"{n.name} sees {e.address} as {','.join(sorted(e.flags))}")
            if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                problems.append(f"{n.name}: master_link_status:{repl.get('master_link_status')}")
            views[n.name] = view
        if not views:
            return problems
        shapes = {name: sorted((e.node_id, e.role, e.master_id, e.slots) for e in v)
                  for name, v in views.items()}
        if len({repr(s) for s in shapes.values()}) > 1:
            problems.append("nodes disagree about the topology")
        view = next(iter(views.values()))
        masters = [e for e in view if e.role == "master" and e.slots]
        if len(masters) != self.masters_count:
            problems.append(f"{len(masters)} masters with slots (want {self.masters_count})")
        if sum(m.slot_count() for m in masters) != SLOTS:
            problems.append("slots not all owned")
        for m in masters:
            reps = [e for e in view if e.master_id == m.node_id]
            if len(reps) != self.replicas_per_master:
                problems.append(f"master {m.address} has {len(reps)} replicas "
                                f"(want {self.replicas_per_master})")
        return problems

    def wait_healthy(self, timeout: Optional[float] = None) -> None:
        timeout = timeout if timeout is not None else scaled(60)
        last: List[str] = []

        def healthy() -> bool:
            last[:] = self.health_problems()
            return not last

        try:
            h.wait_until(healthy, timeout, message="a healthy cluster")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; still: {last}") from None

    def ensure_healthy(self, timeout: Optional[float] = None) -> None:
        """Restarts nodes that are not running (a killed master comes back as a replica of its
        successor) and waits until the cluster is healthy again."""
        for n in self.processes:
            if n.proc is not None and not n.running():
                self.restart_node(n)
        self.wait_healthy(timeout)

    # -- faults
    def kill_node(self, node: NodeRef, sig: int = signal.SIGKILL) -> ClusterNode:
        proc = self.process_for(node)
        proc.signal(sig)
        if proc.wait(scaled(10)) is None:
            raise AssertionError(f"{proc.name} (pid {proc.pid}) survived signal {sig}")
        return proc

    def kill_master(self, node: NodeRef) -> ClusterNodeInfo:
        """SIGKILLs a master's process (by PID). Returns the master as it was before the kill;
        pass that to wait_for_failover()."""
        topo = self.topology()
        port = node.port
        info = next((e for e in topo if e.port == port), None)
        if info is None or info.role != "master":
            raise AssertionError(f"{HOST}:{port} is not a master: {info}")
        replicas = tuple(e.node_id for e in topo if e.master_id == info.node_id and not e.failed)
        self._kills[info.node_id] = (time.monotonic(), replicas)
        self.kill_node(info)
        return info

    def wait_for_failover(self, old_master: ClusterNodeInfo,
                          timeout: Optional[float] = None) -> ClusterNodeInfo:
        """Waits until one of `old_master`'s replicas is a master owning its slots, as every
        running node sees it, and every running node says cluster_state:ok. Returns the new
        master. `last_failover` gets `promoted` (the replica saw itself master) and `ok`
        (everyone agreed, state ok), in seconds since kill_master()."""
        timeout = timeout if timeout is not None else scaled(30)
        killed_at, replica_ids = self._kills.get(old_master.node_id, (time.monotonic(), ()))
        if not replica_ids:
            replica_ids = tuple(e.node_id for e in self.topology()
                                if e.master_id == old_master.node_id)
        want_slots = old_master.slots
        promoted_at: List[float] = []
        last: List[str] = []
        result: List[ClusterNodeInfo] = []

        def done() -> bool:
            problems: List[str] = []
            chosen = set()
            found: Optional[ClusterNodeInfo] = None
            for n in self.processes:
                if not n.running():
                    continue
                try:
                    with n.client(timeout=scaled(5)) as c:
                        info = parse_info(_text(c.call("CLUSTER", "INFO"), "CLUSTER INFO"))
                        view = parse_cluster_nodes(
                            _text(c.call("CLUSTER", "NODES"), "CLUSTER NODES"), self._by_port())
                except (OSError, ConnectionError, h.ProtocolViolation, AssertionError) as exc:
                    problems.append(f"{n.name}: {exc!r}")
                    continue
                if info.get("cluster_state") != "ok":
                    problems.append(f"{n.name}: cluster_state:{info.get('cluster_state')}")
                new = [e for e in view if e.node_id in replica_ids and e.role == "master"
                       and not e.failed and e.slots == want_slots]
                if not new:
                    problems.append(f"{n.name}: no replica of {old_master.address} is master yet")
                    continue
                if "myself" in new[0].flags and not promoted_at:
                    promoted_at.append(time.monotonic())
                chosen.add(new[0].node_id)
                found = new[0]
            if len(chosen) > 1:
                problems.append(f"nodes disagree about the new master: {chosen}")
            last[:] = problems
            if not problems and found is not None:
                result.append(found)
                return True
            return False

        try:
            h.wait_until(done, timeout, message=f"failover of {old_master.address}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; still: {last}") from None
        now = time.monotonic()
        self.last_failover = {"promoted": (promoted_at[0] if promoted_at else now) - killed_at,
                              "ok": now - killed_at}
        return result[0]

    def restart_node(self, node: NodeRef, timeout: Optional[float] = None) -> ClusterNode:
        """Starts a stopped node again on its port with its nodes.conf (empty dataset: no
        persistence). It rejoins; a former master becomes a replica of its successor. Does not
        wait for the cluster to settle (see wait_healthy)."""
        proc = self.process_for(node)
        if proc.running():
            raise AssertionError(f"{proc.name} is still running")
        proc.relaunch()
        state = proc.wait_ready(timeout if timeout is not None else scaled(15))
        if state != "ok":
            raise h.StartupError(f"{proc.name} did not restart on port {proc.port} ({state})\n"
                                 f"{proc.log_tail()}")
        return proc

    # -- data
    def flushall(self) -> None:
        """FLUSHALL on every master, then WAIT until its replicas have it too (bounded)."""
        topo = self.topology()
        for m in topo:
            if m.role != "master" or m.failed:
                continue
            n_replicas = sum(1 for e in topo if e.master_id == m.node_id and not e.failed)
            with m.client(timeout=scaled(15)) as c:
                reply = c.call("FLUSHALL")
                if reply != "OK":
                    raise AssertionError(f"FLUSHALL on {m.address}: {reply!r}")
                if n_replicas:
                    acked = c.call("WAIT", n_replicas, int(scaled(10) * 1000))
                    if not isinstance(acked, int) or acked < n_replicas:
                        raise AssertionError(f"WAIT after FLUSHALL on {m.address}: {acked!r}")

    # -- resharding
    def migration(self, slot: int, src: NodeRef, dst: NodeRef) -> "SlotMigration":
        return SlotMigration(self, slot, self._info(src), self._info(dst))

    def migrate_slot(self, slot: int, src: NodeRef, dst: NodeRef, keys_batch: int = 10,
                     on_step: Optional[Callable[[str, "SlotMigration"], None]] = None) -> int:
        """Moves `slot` from `src` to `dst` the way `redis-cli --cluster reshard` does, calling
        `on_step(step, migration)` after each step: "importing" (dst IMPORTING), "migrating"
        (src MIGRATING), "batch" (after each MIGRATE of up to `keys_batch` keys; the keys are in
        `migration.last_batch`), "keys_moved" (src holds none of the slot's keys; SETSLOT NODE
        not yet sent), "done" (every node sees dst as the owner). Returns the number of keys
        moved."""
        step = on_step or (lambda _name, _m: None)
        m = self.migration(slot, src, dst)
        m.set_importing()
        step("importing", m)
        m.set_migrating()
        step("migrating", m)
        for _ in range(1_000_000):
            if not m.move_keys(keys_batch):
                break
            step("batch", m)
        step("keys_moved", m)
        m.set_node()
        m.wait_settled()
        step("done", m)
        return m.moved

    def _info(self, node: NodeRef) -> ClusterNodeInfo:
        if isinstance(node, ClusterNodeInfo):
            return node
        port = node.port
        for e in self.topology():
            if e.port == port:
                return e
        raise KeyError(f"port {port} not in the cluster")

    # -- keygate
    def keygate_config(self, extra_yaml: Optional[str] = None) -> str:
        """keygate YAML for this cluster: `upstream: {mode: cluster, seeds: [...]}` plus
        `extra_yaml` (other top-level sections; it must not contain `upstream:`)."""
        seeds = ", ".join(f'"{s}"' for s in self.seeds())
        text = f"upstream:\n  mode: cluster\n  seeds: [{seeds}]\n"
        if extra_yaml:
            text += extra_yaml if extra_yaml.endswith("\n") else extra_yaml + "\n"
        return text


class SlotMigration:
    """The steps of moving one slot, for tests that act between them (ASK/MOVED)."""

    def __init__(self, cluster: RedisCluster, slot: int, src: ClusterNodeInfo,
                 dst: ClusterNodeInfo):
        if src.node_id == dst.node_id:
            raise ValueError("source and destination are the same node")
        self.cluster = cluster
        self.slot = slot
        self.src = src
        self.dst = dst
        self.moved = 0
        self.last_batch: List[bytes] = []

    @staticmethod
    def _ok(reply: object, what: str) -> None:
        if reply != "OK":
            raise AssertionError(f"{what}: {reply!r}")

    def set_importing(self) -> None:
        self._ok(self.dst.call("CLUSTER", "SETSLOT", self.slot, "IMPORTING", self.src.node_id),
                 f"SETSLOT {self.slot} IMPORTING on {self.dst.address}")

    def set_migrating(self) -> None:
        self._ok(self.src.call("CLUSTER", "SETSLOT", self.slot, "MIGRATING", self.dst.node_id),
                 f"SETSLOT {self.slot} MIGRATING on {self.src.address}")

    def keys_left(self) -> int:
        n = self.src.call("CLUSTER", "COUNTKEYSINSLOT", self.slot)
        if not isinstance(n, int):
            raise AssertionError(f"COUNTKEYSINSLOT: {n!r}")
        return n

    def move_keys(self, count: int = 10) -> List[bytes]:
        """MIGRATEs up to `count` of the slot's keys still on src; returns them (empty: none
        left)."""
        keys = self.src.call("CLUSTER", "GETKEYSINSLOT", self.slot, count)
        if not isinstance(keys, list):
            raise AssertionError(f"GETKEYSINSLOT: {keys!r}")
        self.last_batch = list(keys)
        if not keys:
            return []
        reply = self.src.call("MIGRATE", self.dst.host, self.dst.port, "", 0,
                              int(scaled(10) * 1000), "KEYS", *keys, timeout=scaled(20))
        if reply not in ("OK", "NOKEY"):
            raise AssertionError(f"MIGRATE {len(keys)} keys of slot {self.slot}: {reply!r}")
        self.moved += len(keys)
        return list(keys)

    def set_node(self) -> None:
        """SETSLOT NODE dst on dst, then src, then the other masters (as redis-cli does)."""
        self._ok(self.dst.call("CLUSTER", "SETSLOT", self.slot, "NODE", self.dst.node_id),
                 f"SETSLOT {self.slot} NODE on {self.dst.address}")
        self._ok(self.src.call("CLUSTER", "SETSLOT", self.slot, "NODE", self.dst.node_id),
                 f"SETSLOT {self.slot} NODE on {self.src.address}")
        for m in self.cluster.masters():
            if m.node_id in (self.src.node_id, self.dst.node_id):
                continue
            m.call("CLUSTER", "SETSLOT", self.slot, "NODE", self.dst.node_id)  # gossip also does

    def cancel(self) -> None:
        """Clears MIGRATING/IMPORTING (keys already moved stay on dst)."""
        for n in (self.src, self.dst):
            self._ok(n.call("CLUSTER", "SETSLOT", self.slot, "STABLE"),
                     f"SETSLOT {self.slot} STABLE on {n.address}")

    def wait_settled(self, timeout: Optional[float] = None) -> None:
        """Until every running node sees dst as the slot's only owner."""
        cluster = self.cluster

        def settled() -> bool:
            for n in cluster.processes:
                if not n.running():
                    continue
                owners = [e.node_id for e in cluster.topology(via=n) if e.owns(self.slot)]
                if owners != [self.dst.node_id]:
                    return False
            return True

        h.wait_until(settled, timeout if timeout is not None else scaled(20),
                     message=f"all nodes to see slot {self.slot} on {self.dst.address}")


# --------------------------------------------------------------------------------------------
# unittest base class
# --------------------------------------------------------------------------------------------


class KeygateClusterTestCase(h.KeygateTestCase):
    """One Redis Cluster per test class (healed and flushed before each test) and, with
    `start_keygate = True`, one keygate in front of it (`--config` with
    `upstream: {mode: cluster, seeds: [...]}`), checked for a clean exit at the end like
    KeygateTestCase's.

    Subclasses may set `cluster_masters`, `cluster_replicas_per_master`,
    `cluster_node_timeout_ms`, `cluster_args` (extra redis-server args), `start_keygate`,
    `keygate_config` (extra YAML sections, no `upstream:`), `keygate_args`, `keygate_env`.
    """

    cluster_masters: int = 3
    cluster_replicas_per_master: int = 1
    cluster_node_timeout_ms: int = 1000
    cluster_args: Sequence[str] = ()
    start_keygate: bool = False

    cluster: RedisCluster
    keygate: Optional[h.KeygateProcess] = None  # type: ignore[assignment]

    @classmethod
    def setUpClass(cls) -> None:
        cls.workdir = tempfile.mkdtemp(prefix=f"keygate-it-{cls.__name__}-")
        cls.addClassCleanup(shutil.rmtree, cls.workdir, True)
        cls.keygate = None
        cls.cluster = RedisCluster(cls.workdir, masters=cls.cluster_masters,
                                   replicas_per_master=cls.cluster_replicas_per_master,
                                   node_timeout_ms=cls.cluster_node_timeout_ms,
                                   extra_args=cls.cluster_args)
        cls.addClassCleanup(cls.cluster.stop)
        cls.cluster.start()
        if cls.start_keygate:
            cls.keygate = h.KeygateProcess(cls.workdir, None,
                                           config=cls.cluster.keygate_config(cls.keygate_config),
                                           extra_args=cls.keygate_args,
                                           env_overrides=cls.keygate_env)
            cls.addClassCleanup(cls._stop_keygate_checked)
            cls.keygate.start()

    @classmethod
    def _stop_keygate_checked(cls) -> None:
        if cls.keygate is not None and cls.keygate.proc is not None:
            cls.keygate.check_clean_exit()

    def setUp(self) -> None:
        if self.keygate is not None and not self.keygate.running():
            self.fail("keygate is not running (crashed in an earlier test?)\n"
                      + self.keygate.log_tail())
        self.cluster.ensure_healthy()
        self.cluster.flushall()

    def dump_logs(self) -> None:
        super().dump_logs()  # keygate and private keygates, if any
        sys.stderr.write(f"\n===== cluster node logs for {self.id()} =====\n")
        self.cluster.dump_logs(sys.stderr)

    # -- helpers for tests
    def kg(self, timeout: float = 10.0) -> h.RespConnection:
        if self.keygate is None:
            raise AssertionError("no keygate in this class (set start_keygate = True)")
        return super().kg(timeout)

    def direct(self, timeout: float = 10.0) -> h.RespConnection:
        raise AssertionError("no single Redis in a cluster test: use node_conn(node), e.g. "
                             "self.node_conn(self.cluster.node_for_key(key))")

    def node_conn(self, node: NodeRef, timeout: float = 10.0) -> h.RespConnection:
        """A raw connection straight to one cluster node, closed at the end of the test."""
        c = h.RespConnection(node.port, timeout=scaled(timeout))
        self.addCleanup(c.close)
        return c

    def start_private_keygate(self, config: Optional[str] = None, extra_args: Sequence[str] = (),
                              name: Optional[str] = None, wait_ready: bool = True,
                              env_overrides: Optional[dict] = None,
                              upstream_port: Optional[int] = -1) -> h.KeygateProcess:
        """Another keygate for this test only, by default in cluster mode in front of this
        class' cluster (`config` = extra YAML sections)."""
        if upstream_port == -1:
            config, upstream_port = self.cluster.keygate_config(config), None
        return super().start_private_keygate(config=config, extra_args=extra_args, name=name,
                                             wait_ready=wait_ready, env_overrides=env_overrides,
                                             upstream_port=upstream_port)
