#!/usr/bin/python3
"""Generates proxy/commands/command_table_data.cpp from a real redis-server's COMMAND INFO.

The script starts its own redis-server (no persistence, loopback only, temp dir), reads
`COMMAND INFO` over a plain socket (RESP2, parsed here: no client library needed), stops the
server by PID and writes one C++ row per command and subcommand, sorted by name, so two runs
against the same redis-server produce the same bytes.

Usage:
  tools/gen_command_table.py                 # regenerate the checked-in file
  tools/gen_command_table.py --check         # exit 1 if the checked-in file is stale
  tools/gen_command_table.py --redis-server /path/to/redis-server --output /tmp/x.cpp

Anything COMMAND INFO reports that this script does not know (a new command flag, ACL
category, key-spec flag or type, tip) is an error: the table must not silently drop meaning.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(REPO_ROOT, "proxy", "commands", "command_table_data.cpp")
SCRIPT_NAME = "tools/gen_command_table.py"
EXPECTED_MAJOR_MINOR = "7.0"

# COMMAND INFO flag -> C++ Flag enumerator (proxy/commands/command_table.hpp).
COMMAND_FLAGS = {
    "readonly": "kRead",
    "write": "kWrite",
    "admin": "kAdmin",
    "blocking": "kBlocking",
    "pubsub": "kPubSub",
    "denyoom": "kDenyOom",
    "noscript": "kNoScript",
    "fast": "kFast",
    "movablekeys": "kMovableKeys",
    "no_multi": "kNoMulti",
    "loading": "kLoading",
    "stale": "kStale",
    "no_auth": "kNoAuth",
    "may_replicate": "kMayReplicate",
    "allow_busy": "kAllowBusy",
    "no_mandatory_keys": "kNoMandatoryKeys",
    "skip_monitor": "kSkipMonitor",
    "skip_slowlog": "kSkipSlowlog",
    "asking": "kAsking",
    "no_async_loading": "kNoAsyncLoading",
}
# Output order of flags (the enum's bit order), so rows are stable.
FLAG_ORDER = [
    "kRead", "kWrite", "kAdmin", "kBlocking", "kPubSub", "kDenyOom", "kNoScript", "kFast",
    "kMovableKeys", "kNoMulti", "kLoading", "kStale", "kNoAuth", "kMayReplicate", "kAllowBusy",
    "kNoMandatoryKeys", "kSkipMonitor", "kSkipSlowlog", "kAsking", "kNoAsyncLoading",
]

# Commands that block the connection although Redis 7.0 does not put them in @blocking:
# WAIT holds the reply until replicas acknowledge or the timeout expires, which matters to a
# proxy exactly like BLPOP does (the upstream connection is busy for that long).
EXTRA_BLOCKING = {"wait"}

ACL_CATEGORIES = {
    "@keyspace": "kAclKeyspace",
    "@read": "kAclRead",
    "@write": "kAclWrite",
    "@set": "kAclSet",
    "@sortedset": "kAclSortedSet",
    "@list": "kAclList",
    "@hash": "kAclHash",
    "@string": "kAclString",
    "@bitmap": "kAclBitmap",
    "@hyperloglog": "kAclHyperLogLog",
    "@geo": "kAclGeo",
    "@stream": "kAclStream",
    "@pubsub": "kAclPubSub",
    "@admin": "kAclAdmin",
    "@fast": "kAclFast",
    "@slow": "kAclSlow",
    "@blocking": "kAclBlocking",
    "@dangerous": "kAclDangerous",
    "@connection": "kAclConnection",
    "@transaction": "kAclTransaction",
    "@scripting": "kAclScripting",
}
ACL_ORDER = list(ACL_CATEGORIES.values())

TIPS = {
    "nondeterministic_output": "kTipNondeterministicOutput",
    "nondeterministic_output_order": "kTipNondeterministicOutputOrder",
    "request_policy:all_nodes": "kTipRequestAllNodes",
    "request_policy:all_shards": "kTipRequestAllShards",
    "request_policy:multi_shard": "kTipRequestMultiShard",
    "request_policy:special": "kTipRequestSpecial",
    "response_policy:one_succeeded": "kTipResponseOneSucceeded",
    "response_policy:all_succeeded": "kTipResponseAllSucceeded",
    "response_policy:agg_logical_and": "kTipResponseAggLogicalAnd",
    "response_policy:agg_logical_or": "kTipResponseAggLogicalOr",
    "response_policy:agg_min": "kTipResponseAggMin",
    "response_policy:agg_max": "kTipResponseAggMax",
    "response_policy:agg_sum": "kTipResponseAggSum",
    "response_policy:special": "kTipResponseSpecial",
}
TIP_ORDER = list(TIPS.values())

KEY_FLAGS = {
    "RO": "kKeyRO",
    "RW": "kKeyRW",
    "OW": "kKeyOW",
    "RM": "kKeyRM",
    "access": "kKeyAccess",
    "update": "kKeyUpdate",
    "insert": "kKeyInsert",
    "delete": "kKeyDelete",
    "not_key": "kKeyNotKey",
    "incomplete": "kKeyIncomplete",
    "variable_flags": "kKeyVariableFlags",
}
KEY_FLAG_ORDER = list(KEY_FLAGS.values())

# Commands whose key specs cannot find the keys (or their exact flags) on their own. Redis
# resolves these with a per-command "getkeys" procedure; key_extraction.cpp has the same ones.
# The generator fails if a command with an unknown / incomplete / variable-flags spec is
# missing here, or if an entry here no longer needs it.
KEYS_PROCS = {
    "sort": "kSort",
    "sort_ro": "kSortRo",
    "migrate": "kMigrate",
    "set": "kSet",
    "bitfield": "kBitfield",
}


class GeneratorError(Exception):
    pass


# --- redis-server lifecycle -------------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A throwaway redis-server: loopback only, no persistence, own temp dir; stopped by PID."""

    def __init__(self, binary):
        self.binary = binary
        self.proc = None
        self.port = None
        self.tmp = None

    def __enter__(self):
        if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            raise GeneratorError("redis-server not found at %s (use --redis-server)" %
                                 self.binary)
        self.tmp = tempfile.TemporaryDirectory(prefix="keygate-gen-")
        try:
            return self._start()
        except BaseException:
            self._stop()
            self.tmp.cleanup()
            raise

    def _start(self):
        last_log = ""
        for _ in range(5):  # the free port may be taken between probe and bind: retry
            self.port = free_port()
            log_path = os.path.join(self.tmp.name, "redis.log")
            args = [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.tmp.name,
                "--daemonize", "no", "--logfile", log_path,
            ]
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready(log_path):
                return self
            last_log = self._read(log_path)
            self._stop()
        raise GeneratorError("redis-server did not start:\n" + last_log)

    def __exit__(self, *exc):
        self._stop()
        self.tmp.cleanup()
        return False

    @staticmethod
    def _read(path):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _wait_ready(self, log_path):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with RespConnection(self.port) as conn:
                    if conn.call("PING") == "PONG":
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _stop(self):
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


# --- minimal RESP2 client ---------------------------------------------------------------------


class RespError(Exception):
    pass


class RespConnection:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.sock.makefile("rb")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.reader.close()
        self.sock.close()
        return False

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a.encode() if isinstance(a, str) else a
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))
        reply = self._read()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def _read(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise GeneratorError("connection closed by redis-server")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body.decode()
        if kind == b"-":
            return RespError(body.decode())
        if kind == b":":
            return int(body)
        if kind == b"$":
            n = int(body)
            if n < 0:
                return None
            data = self.reader.read(n + 2)
            return data[:-2].decode()
        if kind == b"*":
            n = int(body)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise GeneratorError("unexpected RESP reply: %r" % line)


# --- COMMAND INFO -> model --------------------------------------------------------------------


def pairs(flat):
    """RESP2 maps arrive as flat [k1, v1, k2, v2, ...] lists."""
    if len(flat) % 2:
        raise GeneratorError("odd map length: %r" % (flat,))
    return dict(zip(flat[0::2], flat[1::2]))


def map_names(names, table, what, owner):
    out = set()
    for n in names:
        if n not in table:
            raise GeneratorError("%s: unknown %s %r (teach %s about it)" %
                                 (owner, what, n, SCRIPT_NAME))
        out.add(table[n])
    return out


def parse_key_spec(raw, owner):
    spec = pairs(raw)
    bs = pairs(spec["begin_search"])
    fk = pairs(spec["find_keys"])
    ks = {"flags": map_names(spec.get("flags", []), KEY_FLAGS, "key-spec flag", owner)}
    bs_spec = pairs(bs["spec"]) if bs["spec"] else {}
    fk_spec = pairs(fk["spec"]) if fk["spec"] else {}
    if bs["type"] == "index":
        ks["begin"] = ("kIndex", {"index": bs_spec["index"]})
    elif bs["type"] == "keyword":
        ks["begin"] = ("kKeyword", {"keyword": bs_spec["keyword"],
                                    "startFrom": bs_spec["startfrom"]})
    elif bs["type"] == "unknown":
        ks["begin"] = ("kUnknown", {})
    else:
        raise GeneratorError("%s: unknown begin_search type %r" % (owner, bs["type"]))
    if fk["type"] == "range":
        ks["find"] = ("kRange", {"lastKey": fk_spec["lastkey"], "keyStep": fk_spec["keystep"],
                                 "limit": fk_spec["limit"]})
    elif fk["type"] == "keynum":
        ks["find"] = ("kKeynum", {"keyNumIdx": fk_spec["keynumidx"],
                                  "firstKey": fk_spec["firstkey"],
                                  "keyStep": fk_spec["keystep"]})
    elif fk["type"] == "unknown":
        ks["find"] = ("kUnknown", {})
    else:
        raise GeneratorError("%s: unknown find_keys type %r" % (owner, fk["type"]))
    return ks


def parse_command(raw):
    # [name, arity, flags, first, last, step, acl categories, tips, key specs, subcommands]
    if len(raw) < 10:
        raise GeneratorError("COMMAND INFO row too short (not redis >= 7.0?): %r" % (raw,))
    name = raw[0].lower()
    flags = map_names(raw[2], COMMAND_FLAGS, "command flag", name)
    cats = map_names(raw[6], ACL_CATEGORIES, "ACL category", name)
    tips = map_names(raw[7], TIPS, "tip", name)
    if "@blocking" in raw[6] or name in EXTRA_BLOCKING:
        flags.add("kBlocking")
    if "@pubsub" in raw[6]:
        flags.add("kPubSub")
    specs = [parse_key_spec(s, name) for s in raw[8]]
    subs = sorted((parse_command(s) for s in raw[9]), key=lambda c: c["name"])
    for s in subs:
        if not s["name"].startswith(name + "|"):
            raise GeneratorError("subcommand %r not under %r" % (s["name"], name))
    return {"name": name, "arity": raw[1], "flags": flags, "cats": cats, "tips": tips,
            "specs": specs, "subs": subs}


def needs_keys_proc(cmd):
    for s in cmd["specs"]:
        if s["begin"][0] == "kUnknown" or s["find"][0] == "kUnknown":
            return True
        if s["flags"] & {"kKeyIncomplete", "kKeyVariableFlags"}:
            return True
    return False


def check_keys_procs(commands):
    every = commands + [s for c in commands for s in c["subs"]]
    by_name = {c["name"]: c for c in every}
    for c in every:
        if needs_keys_proc(c) and c["name"] not in KEYS_PROCS:
            raise GeneratorError("%s: key specs are incomplete; add a keys procedure "
                                 "(KEYS_PROCS here and key_extraction.cpp)" % c["name"])
    for n in KEYS_PROCS:
        if n not in by_name:
            raise GeneratorError("KEYS_PROCS names %r, which redis-server does not have" % n)
        if not needs_keys_proc(by_name[n]):
            raise GeneratorError("%s: key specs are complete now; drop it from KEYS_PROCS" % n)


# --- C++ emission -----------------------------------------------------------------------------


def ident(name):
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name) if p)


def cpp_string(s):
    if not re.fullmatch(r"[\x20-\x7e]*", s) or '"' in s or "\\" in s:
        raise GeneratorError("unexpected characters in %r" % s)
    return '"%s"' % s


def bits(names, order):
    ordered = [n for n in order if n in names]
    return " | ".join(ordered) if ordered else "0"


def emit_key_spec(s):
    begin_kind, begin = s["begin"]
    find_kind, find = s["find"]
    parts = [".begin = KeySpec::Begin::%s" % begin_kind]
    if begin_kind == "kIndex":
        parts.append(".index = %d" % begin["index"])
    elif begin_kind == "kKeyword":
        parts.append(".keyword = %s" % cpp_string(begin["keyword"]))
        parts.append(".startFrom = %d" % begin["startFrom"])
    parts.append(".find = KeySpec::Find::%s" % find_kind)
    if find_kind == "kRange":
        parts.append(".lastKey = %d" % find["lastKey"])
        parts.append(".keyStep = %d" % find["keyStep"])
        parts.append(".limit = %d" % find["limit"])
    elif find_kind == "kKeynum":
        parts.append(".keyStep = %d" % find["keyStep"])
        parts.append(".keyNumIdx = %d" % find["keyNumIdx"])
        parts.append(".firstKey = %d" % find["firstKey"])
    parts.append(".flags = %s" % bits(s["flags"], KEY_FLAG_ORDER))
    return "{" + ", ".join(parts) + "},"


def emit_row(c, names):
    parts = [
        ".name = %s" % cpp_string(c["name"]),
        ".arity = %d" % c["arity"],
        ".flags = %s" % bits(c["flags"], FLAG_ORDER),
    ]
    if c["specs"]:
        parts.append(".keySpecs = %s" % names["keys"][c["name"]])
    if c["subs"]:
        parts.append(".subcommands = %s" % names["subs"][c["name"]])
    parts.append(".aclCategories = %s" % bits(c["cats"], ACL_ORDER))
    if c["tips"]:
        parts.append(".tips = %s" % bits(c["tips"], TIP_ORDER))
    if c["name"] in KEYS_PROCS:
        parts.append(".keysProc = KeysProc::%s" % KEYS_PROCS[c["name"]])
    return "{" + ", ".join(parts) + "},"


def unique_names(commands, prefix):
    seen = {}
    out = {}
    for c in commands:
        base = prefix + ident(c["name"])
        n = base
        i = 2
        while n in seen:
            n = "%s%d" % (base, i)
            i += 1
        seen[n] = c["name"]
        out[c["name"]] = n
    return out


def render(commands, version):
    every = []
    for c in commands:
        every.extend(c["subs"])
        every.append(c)
    names = {
        "keys": unique_names([c for c in every if c["specs"]], "kKeys"),
        "subs": unique_names([c for c in commands if c["subs"]], "kSub"),
    }
    nsubs = sum(len(c["subs"]) for c in commands)
    out = []
    w = out.append
    w("// GENERATED FILE - DO NOT EDIT.")
    w("// Generated by %s from redis-server %s (`COMMAND INFO`)." % (SCRIPT_NAME, version))
    w("// %d commands, %d subcommands. Regenerate: see proxy/commands/README.md." %
      (len(commands), nsubs))
    w("")
    w('#include "proxy/commands/command_table_data.hpp"')
    w("")
    w("namespace keygate::commands {")
    w("namespace {")
    w("")
    w("// Key specs, in the order Redis evaluates them.")
    for c in sorted(every, key=lambda x: x["name"]):
        if not c["specs"]:
            continue
        w("constexpr KeySpec %s[] = {" % names["keys"][c["name"]])
        for s in c["specs"]:
            w(emit_key_spec(s))
        w("};")
    w("")
    w("// Subcommands of container commands, sorted by name.")
    for c in commands:
        if not c["subs"]:
            continue
        w("constexpr CommandInfo %s[] = {" % names["subs"][c["name"]])
        for s in c["subs"]:
            w(emit_row(s, names))
        w("};")
    w("")
    w("// Top-level commands, sorted by name.")
    w("constexpr CommandInfo kCommands[] = {")
    for c in commands:
        w(emit_row(c, names))
    w("};")
    w("")
    w("}  // namespace")
    w("")
    w("const GeneratedTable& generatedCommandTable() {")
    w("  static constexpr GeneratedTable kTable{")
    w("      .commands = kCommands,")
    w("      .redisVersion = %s," % cpp_string(version))
    w("      .commandCount = %d," % len(commands))
    w("      .subcommandCount = %d," % nsubs)
    w("  };")
    w("  return kTable;")
    w("}")
    w("")
    w("}  // namespace keygate::commands")
    return "\n".join(out) + "\n"


def clang_format(text, path):
    exe = shutil.which("clang-format")
    if exe is None:
        print("warning: clang-format not found; output left unformatted", file=sys.stderr)
        return text
    # --assume-filename makes clang-format pick up the repository's .clang-format.
    res = subprocess.run([exe, "--style=file", "--assume-filename=" + path],
                         input=text.encode(), stdout=subprocess.PIPE, check=True, cwd=REPO_ROOT)
    return res.stdout.decode()


# --- main -------------------------------------------------------------------------------------


def fetch(binary):
    with RedisServer(binary) as server, RespConnection(server.port) as conn:
        info = conn.call("INFO", "server")
        m = re.search(r"^redis_version:(\S+)", info, re.M)
        if not m:
            raise GeneratorError("INFO server has no redis_version")
        version = m.group(1)
        count = conn.call("COMMAND", "COUNT")
        rows = conn.call("COMMAND", "INFO")
    if len(rows) != count:
        raise GeneratorError("COMMAND INFO returned %d rows, COMMAND COUNT says %d" %
                             (len(rows), count))
    return version, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis-server", default="/usr/bin/redis-server")
    ap.add_argument("--output", default=DEFAULT_OUTPUT)
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if --output differs from what would be written")
    ap.add_argument("--allow-any-version", action="store_true",
                    help="accept a redis-server that is not %s.x" % EXPECTED_MAJOR_MINOR)
    args = ap.parse_args()

    try:
        version, rows = fetch(args.redis_server)
        if not version.startswith(EXPECTED_MAJOR_MINOR + ".") and not args.allow_any_version:
            raise GeneratorError("redis-server is %s, the table is for %s.x" %
                                 (version, EXPECTED_MAJOR_MINOR))
        commands = sorted((parse_command(r) for r in rows), key=lambda c: c["name"])
        names = [c["name"] for c in commands]
        if len(set(names)) != len(names):
            raise GeneratorError("duplicate command names")
        check_keys_procs(commands)
        text = clang_format(render(commands, version), args.output)
    except (GeneratorError, RespError, OSError, subprocess.CalledProcessError) as e:
        print("gen_command_table: error: %s" % e, file=sys.stderr)
        return 2

    if args.check:
        try:
            with open(args.output, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            print("%s is stale; run %s" % (args.output, SCRIPT_NAME), file=sys.stderr)
            return 1
        return 0

    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, args.output)
    nsubs = sum(len(c["subs"]) for c in commands)
    print("wrote %s: %d commands, %d subcommands (redis %s)" %
          (os.path.relpath(args.output), len(commands), nsubs, version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
