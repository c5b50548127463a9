#!/usr/bin/env bash
# Resident memory of keygate (and, for comparison, nutcracker) under these loads:
#   1. idle: started, one PING answered;
#   2. CONNS idle client connections, each having sent one PING and read the reply;
#   3. floods: one client pipelines many commands without reading any reply, while RSS is
#      sampled; then it reads every reply, disconnects, and RSS and a PING are checked.
#      - SET flood: 1,000,000 SETs of 64 B values. Its replies (+OK, 5 MB in all) fit in
#        the kernel's socket buffers, so the proxy need not hold anything back.
#      - GET flood: 1,000,000 GETs of 1 KiB values, about 1 GB of replies: the proxy must
#        stop reading from the client (backpressure) or its memory grows with them.
# All timings are bounded. Prints Markdown tables; progress goes to stderr.
#
# Usage: bench/memory.sh [> results.md]
# Environment (defaults in brackets):
#   TARGETS ["keygate-t1 keygate-t2 nutcracker"]
#   CONNS [1000]                  idle client connections
#   FLOOD_SET [1000000]           SETs in the SET flood (0 skips it)
#   FLOOD_SET_VALUE_SIZE [64]
#   FLOOD_GET [1000000]           GETs in the GET flood (0 skips it)
#   FLOOD_GET_VALUE_SIZE [1024]   size of the values those GETs read
#   FLOOD_SECONDS [60]            at most this long writing without reading
#   STALL_SECONDS [3]             writing stops when the socket accepted nothing this long
#   DRAIN_SECONDS [120]           at most this long reading the replies afterwards
#   RSS_LIMIT_MB [2048]           writing stops early if the proxy's RSS passes this (safety)
#   NC_FLOOD [0]                  commands in nutcracker's floods; 0 skips them. nutcracker
#                                 has no backpressure and keeps ~14 KiB per queued request:
#                                 1,000,000 SETs took it to 13 GiB RSS on the reference machine.
#   KEYGATE, KEYGATE_ARGS         as for bench/compare.sh
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export TARGETS=${TARGETS:-keygate-t1 keygate-t2 nutcracker}
export CONNS=${CONNS:-1000}
export FLOOD_SET=${FLOOD_SET:-1000000}
export FLOOD_SET_VALUE_SIZE=${FLOOD_SET_VALUE_SIZE:-64}
export FLOOD_GET=${FLOOD_GET:-1000000}
export FLOOD_GET_VALUE_SIZE=${FLOOD_GET_VALUE_SIZE:-1024}
export FLOOD_SECONDS=${FLOOD_SECONDS:-60}
export STALL_SECONDS=${STALL_SECONDS:-3}
export DRAIN_SECONDS=${DRAIN_SECONDS:-120}
export RSS_LIMIT_MB=${RSS_LIMIT_MB:-2048}
export NC_FLOOD=${NC_FLOOD:-0}
GET_KEYS=100000  # the GET flood cycles over key:000000000000 .. key:000000099999

bench_require redis-server redis-cli nutcracker timeout
bench_init

if [[ $TARGETS == *keygate* ]] && ! bench_keygate_bin >/dev/null; then
    bench_log "warning: no keygate binary found; running without the keygate targets"
    TARGETS=$(tr ' ' '\n' <<<"$TARGETS" | grep -v '^keygate' | xargs)
fi

cat >"$BENCH_TMP/mem.py" <<'EOF'
"""Drives one proxy (PID, PORT) through the memory loads; prints one JSON object."""
import json, os, select, socket, sys, time

pid, port, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
env = lambda k: int(os.environ[k])
conns = env("CONNS")
flood_s, stall_s, drain_s = env("FLOOD_SECONDS"), env("STALL_SECONDS"), env("DRAIN_SECONDS")
rss_limit_kb = env("RSS_LIMIT_MB") * 1024
nutcracker = name == "nutcracker"
res = {}

def rss_kb():
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None

def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}]   {msg}", file=sys.stderr, flush=True)

def ping(timeout=5.0):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64) == b"+PONG\r\n"
        finally:
            s.close()
    except OSError:
        return False

def settle(seconds=1.0):
    time.sleep(seconds)
    return rss_kb()

class Replies:
    """Counts complete RESP2 replies (simple, error, integer, bulk) in a byte stream."""
    def __init__(self):
        self.buf, self.ok, self.err = bytearray(), 0, 0
    def feed(self, data):
        b = self.buf
        b += data
        pos, n = 0, len(b)
        while pos < n:
            nl = b.find(b"\r\n", pos)
            if nl < 0:
                break
            end = nl + 2
            if b[pos] == 0x24:  # '$'
                size = int(b[pos + 1:nl])
                if size >= 0:
                    end += size + 2
                    if end > n:
                        break
            if b[pos] == 0x2D:  # '-'
                self.err += 1
            else:
                self.ok += 1
            pos = end
        del b[:pos]

# 1. idle
res["ping_ok_start"] = ping()
res["idle_kb"] = settle()
log(f"idle RSS {res['idle_kb']} KiB")

# 2. idle connections
socks, failed, t0 = [], 0, time.monotonic()
for i in range(conns):
    if time.monotonic() - t0 > 60:
        failed += conns - i
        break
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        if s.recv(64) != b"+PONG\r\n":
            failed += 1
    except OSError:
        failed += 1
res["conns_failed"] = failed
res["conns_kb"] = max(settle(), settle())
log(f"{len(socks)} connections ({failed} failed): RSS {res['conns_kb']} KiB")
for s in socks:
    s.close()
res["after_conns_kb"] = settle(2.0)
log(f"after closing them: RSS {res['after_conns_kb']} KiB")

# 3. floods
def flood(kind, count, vsize):
    """One client writes `count` commands without reading, then reads every reply."""
    r = {"kind": kind, "count": count, "value_size": vsize}
    if count <= 0:
        r["skipped"] = True
        return r
    value = b"x" * vsize
    if kind == "SET":  # own key names, so the GET flood's values stay as they are
        def commands(start, n):
            return b"".join(b"*3\r\n$3\r\nSET\r\n$16\r\nfls:%012d\r\n$%d\r\n%s\r\n" % (i % 100000, vsize, value)
                            for i in range(start, start + n))
    else:
        def commands(start, n):
            return b"".join(b"*2\r\n$3\r\nGET\r\n$16\r\nkey:%012d\r\n" % (i % 100000)
                            for i in range(start, start + n))
    chunk = 10000
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setblocking(False)
    made, buf, sent = 0, b"", 0
    base = rss_kb() or 0
    peak, t0 = base, time.monotonic()
    last_progress, how = t0, "all written"
    while True:
        now = time.monotonic()
        if not buf:
            if made >= count:
                break
            n = min(chunk, count - made)
            buf, made = commands(made, n), made + n
        if now - t0 > flood_s:
            how = f"time limit ({flood_s} s)"
            break
        if now - last_progress > stall_s:
            how = "stalled"
            break
        _, w, _ = select.select([], [s], [], 0.02)
        if w:
            try:
                k = s.send(buf)
                buf, sent, last_progress = buf[k:], sent + k, now
            except BlockingIOError:
                pass
            except OSError as e:
                how = f"connection error: {e}"
                break
        rss = rss_kb()
        if rss is not None:
            peak = max(peak, rss)
            if rss > rss_limit_kb:
                how = "RSS limit"
                break
    per_cmd = len(commands(0, 1))
    written = made - (len(buf) + per_cmd - 1) // per_cmd if buf else made
    r.update(written=written, bytes=sent, how=how, write_s=round(time.monotonic() - t0, 1))
    for _ in range(10):  # a little more sampling after writing stopped
        time.sleep(0.05)
        rss = rss_kb()
        if rss is not None:
            peak = max(peak, rss)
    r["base_kb"], r["peak_kb"] = base, peak
    log(f"{kind} flood: {written:,} of {count:,} written ({sent:,} B, {how}) in {r['write_s']} s, "
        f"peak RSS {peak} KiB")
    # Read every reply, writing the rest as the socket accepts it.
    replies, closed, t1, dpeak = Replies(), None, time.monotonic(), rss_kb() or 0
    while replies.ok + replies.err < count and time.monotonic() - t1 < drain_s and not how.startswith("conn"):
        if not buf and made < count:
            n = min(chunk, count - made)
            buf, made = commands(made, n), made + n
        rd, w, _ = select.select([s], [s] if buf else [], [], 0.1)
        if w:
            try:
                buf = buf[s.send(buf):]
            except BlockingIOError:
                pass
        if rd:
            try:
                data = s.recv(1 << 20)
            except BlockingIOError:
                data = None
            except OSError as e:
                closed = str(e)
                break
            if data == b"":
                closed = "closed by proxy"
                break
            if data:
                replies.feed(data)
        rss = rss_kb()
        if rss is not None:
            dpeak = max(dpeak, rss)
    r.update(replies=replies.ok, errors=replies.err, drain_s=round(time.monotonic() - t1, 1),
             closed=closed, drain_peak_kb=dpeak)
    s.close()
    r["after_kb"] = settle(2.0)
    log(f"{kind} flood: read {replies.ok:,} replies, {replies.err:,} errors in {r['drain_s']} s"
        f"{', ' + closed if closed else ''}; RSS after disconnect {r['after_kb']} KiB")
    return r

nc_flood = env("NC_FLOOD")
res["floods"] = [
    flood("SET", nc_flood if nutcracker else env("FLOOD_SET"), env("FLOOD_SET_VALUE_SIZE")),
    flood("GET", nc_flood if nutcracker else env("FLOOD_GET"), env("FLOOD_GET_VALUE_SIZE")),
]
res["ping_ok_end"] = ping()
log(f"PING afterwards: {'ok' if res['ping_ok_end'] else 'FAILED'}")
print(json.dumps(res))
EOF

RESULTS=$BENCH_TMP/memory.jsonl
bench_start_redis
# Values for the GET flood, written straight to redis-server.
bench_populate "$GET_KEYS" "$FLOOD_GET_VALUE_SIZE"
for t in $TARGETS; do
    case $t in
        nutcracker) bench_start_nutcracker "$REDIS_PORT"; port=$NC_PORT pid=$NC_PID ;;
        keygate-t*) bench_start_keygate "$t" "${t#keygate-t}" "$REDIS_PORT"; port=$KG_PORT pid=$KG_PID ;;
        *) bench_die "unknown target '$t'" ;;
    esac
    bench_log "$t (pid $pid)"
    json=$(timeout $((2 * (FLOOD_SECONDS + DRAIN_SECONDS) + 180)) "$BENCH_PY" "$BENCH_TMP/mem.py" "$pid" "$port" "$t") || {
        bench_log "ERROR: measurement of $t failed or timed out (alive: $(bench_alive "$pid" && echo yes || echo no))"
        json='{}'
    }
    alive=false
    bench_alive "$pid" && alive=true
    hwm=$(bench_hwm_kb "$pid")
    printf '{"target": "%s", "alive": %s, "hwm_kb": %s, "data": %s}\n' "$t" "$alive" "${hwm:-null}" "$json" >>"$RESULTS"
    # Each target is measured alone: stop this one now.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do bench_alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done

echo "## Memory (RSS) of keygate and nutcracker"
echo
bench_machine_info
echo "- RSS is VmRSS from /proc/PID/status; during floods it is sampled every ~20 ms. HWM is VmHWM (peak RSS since start) when the target is stopped."
echo "- floods: one client writes without reading for at most ${FLOOD_SECONDS} s, stopping when the socket has accepted nothing for ${STALL_SECONDS} s (the proxy stopped reading) or RSS passes ${RSS_LIMIT_MB} MiB; then it reads all replies (at most ${DRAIN_SECONDS} s) and disconnects."
echo
"$BENCH_PY" - "$RESULTS" <<'EOF'
import json, os, sys
conns = int(os.environ["CONNS"])
def mb(kb):
    return "-" if kb is None else f"{kb / 1024:.1f}"
rows = [json.loads(line) for line in open(sys.argv[1])]

print("### Idle and idle connections")
print()
print(f"| target | idle RSS MiB | with {conns:,} idle connections MiB | added per 1,000 connections MiB | "
      "after they closed MiB | peak RSS over the whole run (VmHWM) MiB | notes |")
print("|---|---:|---:|---:|---:|---:|---|")
for r in rows:
    d = r["data"]
    notes = []
    if not r["alive"]:
        notes.append("**process died**")
    if d.get("conns_failed"):
        notes.append(f"{d['conns_failed']} connections failed")
    if d and not d.get("ping_ok_start"):
        notes.append("first PING failed")
    if d and not d.get("ping_ok_end"):
        notes.append("**PING failed after the floods**")
    added = None
    if d.get("conns_kb") is not None and d.get("idle_kb") is not None and conns:
        added = (d["conns_kb"] - d["idle_kb"]) * 1000 / conns
    print(f"| {r['target']} | {mb(d.get('idle_kb'))} | {mb(d.get('conns_kb'))} | {mb(added)} | "
          f"{mb(d.get('after_conns_kb'))} | {mb(r.get('hwm_kb'))} | {'; '.join(notes)} |")
print()

print("### One client pipelining without reading")
print()
print("| target | flood | written before writing stopped | why it stopped | RSS before MiB | peak RSS while writing MiB | "
      "replies then read | peak RSS while reading MiB | RSS after disconnect MiB | notes |")
print("|---|---|---:|---|---:|---:|---|---:|---:|---|")
for r in rows:
    for f in r["data"].get("floods", []):
        what = f"{f['count']:,} {f['kind']} ({f['value_size']} B values)"
        if f.get("skipped"):
            print(f"| {r['target']} | {what} | | skipped | | | | | | |")
            continue
        notes = []
        if f.get("closed"):
            notes.append(f"connection: {f['closed']}")
        if f.get("errors"):
            notes.append(f"{f['errors']:,} error replies")
        if f["replies"] + f["errors"] < f["count"]:
            notes.append(f"**{f['count'] - f['replies'] - f['errors']:,} replies missing**")
        print(f"| {r['target']} | {what} | {f['written']:,} ({f['bytes'] / 1e6:.1f} MB) in {f['write_s']} s | {f['how']} | "
              f"{mb(f['base_kb'])} | {mb(f['peak_kb'])} | {f['replies']:,} in {f['drain_s']} s | "
              f"{mb(f['drain_peak_kb'])} | {mb(f['after_kb'])} | {'; '.join(notes)} |")
print()
EOF
