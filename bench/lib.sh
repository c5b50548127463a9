# shellcheck shell=bash
# Shared helpers for the keygate load scripts (bench/compare.sh, bench/memory.sh).
# Sourced, not executed. Every process started here is recorded by PID and stopped by
# that PID in bench_cleanup (installed as an EXIT trap by bench_init); nothing is ever
# stopped by name.

# Debian's interpreter: the python3 first on PATH may be a separate build.
BENCH_PY=${BENCH_PY:-/usr/bin/python3}
BENCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

BENCH_PIDS=()
BENCH_TMP=""

bench_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bench_die() { bench_log "error: $*"; exit 1; }

bench_init() {
    BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/keygate-bench.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # 1,000 client sockets plus the proxy's own; raise the soft limit if we may.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

bench_cleanup() {
    local pid i
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${BENCH_PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
    done
    for pid in "${BENCH_PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
    if [[ -n $BENCH_TMP && -d $BENCH_TMP && -z ${BENCH_KEEP_TMP:-} ]]; then
        rm -rf "$BENCH_TMP"
    elif [[ -n $BENCH_TMP ]]; then
        bench_log "kept $BENCH_TMP"
    fi
}

bench_require() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || bench_die "missing '$c' (apt-get install redis-server redis-tools nutcracker)"
    done
    [[ -x $BENCH_PY ]] || bench_die "missing $BENCH_PY"
}

# A free loopback TCP port (the kernel picks one; small race until the server binds it).
bench_free_port() {
    "$BENCH_PY" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# bench_wait_pong PORT [SECONDS]: until a PING on PORT answers PONG.
bench_wait_pong() {
    local port=$1 secs=${2:-10} i
    for ((i = 0; i < secs * 10; i++)); do
        [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null) == PONG ]] && return 0
        sleep 0.1
    done
    return 1
}

bench_alive() { kill -0 "$1" 2>/dev/null; }

# CPU time (user + system, all threads) of PID in clock ticks.
bench_cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    # comm (field 2) may contain spaces; fields after ") " start at field 3 (state).
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo $(( ${12} + ${13} ))
}
# shellcheck disable=SC2034  # used by the sourcing scripts
BENCH_CLK_TCK=$(getconf CLK_TCK)

# CPU ticks of this shell plus its waited-for children (redis-benchmark, redis-cli, ...).
bench_self_ticks() {
    local stat
    stat=$(cat "/proc/$$/stat")
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo $(( ${12} + ${13} + ${14} + ${15} ))
}

# Busy CPU ticks of the whole machine (all CPUs) and the number of ticks elapsed x CPUs.
bench_machine_busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
bench_machine_all_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

# Context switches of all threads of PID: "VOLUNTARY INVOLUNTARY". A voluntary switch is
# the process going to sleep (waiting for I/O), so per request it shows how well it batches.
bench_ctxsw() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2} END {print v + 0, n + 0}'
}

# VmRSS / VmHWM of PID in KiB.
bench_rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
bench_hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# bench_start_redis -> sets REDIS_PORT, REDIS_PID
bench_start_redis() {
    REDIS_PORT=$(bench_free_port)
    local dir=$BENCH_TMP/redis
    mkdir -p "$dir"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir" --logfile "$dir/redis.log" --daemonize no --protected-mode no \
        >/dev/null 2>&1 &
    REDIS_PID=$!
    BENCH_PIDS+=("$REDIS_PID")
    bench_wait_pong "$REDIS_PORT" 10 || bench_die "redis-server did not start (see $dir/redis.log)"
    bench_log "redis-server pid $REDIS_PID on 127.0.0.1:$REDIS_PORT"
}

# bench_start_nutcracker UPSTREAM_PORT -> sets NC_PORT, NC_PID
bench_start_nutcracker() {
    local upstream=$1 dir=$BENCH_TMP/nutcracker
    mkdir -p "$dir"
    NC_PORT=$(bench_free_port)
    local stats_port
    stats_port=$(bench_free_port)
    cat >"$dir/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$NC_PORT
  redis: true
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: false
  server_connections: 1
  preconnect: true
  servers:
    - 127.0.0.1:$upstream:1
EOF
    nutcracker -c "$dir/nutcracker.yml" -o "$dir/nutcracker.log" -p "$dir/nutcracker.pid" \
        -a 127.0.0.1 -s "$stats_port" -v 4 >/dev/null 2>&1 &
    NC_PID=$!
    BENCH_PIDS+=("$NC_PID")
    bench_wait_pong "$NC_PORT" 10 || bench_die "nutcracker did not start (see $dir/nutcracker.log)"
    bench_log "nutcracker pid $NC_PID on 127.0.0.1:$NC_PORT"
}

# The keygate binary: $KEYGATE, else the Release build, else build-bench.
bench_keygate_bin() {
    local c
    for c in "${KEYGATE:-}" "$BENCH_REPO/build-release/proxy/keygate" "$BENCH_REPO/build-bench/proxy/keygate"; do
        [[ -n $c && -x $c ]] && { echo "$c"; return 0; }
    done
    return 1
}

# bench_threads_of TARGET: N of keygate-tN, keygate-tN@base (dies on anything else).
bench_threads_of() {
    [[ $1 =~ ^keygate-t([0-9]+)(@base)?$ ]] || bench_die "unknown target '$1'"
    echo "${BASH_REMATCH[1]}"
}

# bench_start_keygate NAME THREADS UPSTREAM_PORT -> sets KG_PORT, KG_PID, KG_ADMIN_PORT (empty
# for a binary without --admin)
# Extra arguments from $KEYGATE_ARGS (e.g. "--config config/example.yaml").
# With BENCH_KG_UPSTREAM_ARGS set, those replace "--upstream 127.0.0.1:UPSTREAM_PORT".
bench_start_keygate() {
    local name=$1 threads=$2 upstream=$3 bin dir=$BENCH_TMP/$1
    # A target named ...@base runs $KEYGATE_BASE: another build, A/B in the same run.
    if [[ $name == *@base ]]; then
        bin=${KEYGATE_BASE:-}
        [[ -n $bin && -x $bin ]] || bench_die "$name: set KEYGATE_BASE to an executable keygate"
    else
        bin=$(bench_keygate_bin) || bench_die "no keygate binary (set KEYGATE=...)"
    fi
    mkdir -p "$dir"
    KG_PORT=$(bench_free_port)
    local args=(--listen "127.0.0.1:$KG_PORT")
    # BENCH_KG_UPSTREAM_ARGS replaces --upstream (bench_start_keygate_cluster: --cluster ...).
    # shellcheck disable=SC2206
    if [[ -n ${BENCH_KG_UPSTREAM_ARGS:-} ]]; then args+=($BENCH_KG_UPSTREAM_ARGS); else args+=(--upstream "127.0.0.1:$upstream"); fi
    args+=(--threads "$threads")
    local help
    help=$(timeout 5 "$bin" --help 2>&1 || true)
    # Own admin port, so that two instances never collide on a default one.
    KG_ADMIN_PORT=""
    if [[ $help == *--admin* ]]; then
        KG_ADMIN_PORT=$(bench_free_port)
        args+=(--admin "127.0.0.1:$KG_ADMIN_PORT")
    fi
    [[ $help == *--log-level* ]] && args+=(--log-level "${KEYGATE_LOG_LEVEL:-warn}")
    # shellcheck disable=SC2206
    args+=(${KEYGATE_ARGS:-})
    echo "$bin ${args[*]}" >"$dir/cmdline"
    "$bin" "${args[@]}" >"$dir/keygate.log" 2>&1 &
    KG_PID=$!
    BENCH_PIDS+=("$KG_PID")
    bench_wait_pong "$KG_PORT" 15 || bench_die "keygate ($name) did not answer PING (see $dir/keygate.log: $(tail -3 "$dir/keygate.log" 2>/dev/null))"
    bench_log "keygate $name pid $KG_PID on 127.0.0.1:$KG_PORT ($(cat "$dir/cmdline"))"
}

# bench_keygate_metrics ADMIN_PORT: keygate's /metrics as "name value" lines, comments dropped.
bench_keygate_metrics() {
    "$BENCH_PY" - "$1" <<'PYEOF'
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5) as r:
    for line in r.read().decode().splitlines():
        if line and not line.startswith("#"):
            print(line)
PYEOF
}

# (`sed -n 1p`, not `head -1`: head exits after one line, and a writer of more lines then dies
# of SIGPIPE, which `set -o pipefail` turns into the script's exit at the very end of a run.)
bench_machine_info() {
    local rev dirty
    rev=$(git -C "$BENCH_REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
    dirty=$(git -C "$BENCH_REPO" status --porcelain 2>/dev/null | sed -n 1p)
    [[ -n $dirty ]] && rev="$rev (working tree modified)"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
    echo "- kernel: $(uname -sr)"
    echo "- git rev: $rev"
    local versions
    versions="$(redis-server --version | awk '{print $1, $2, $3}'), $(redis-benchmark --version 2>/dev/null | sed -n 1p)"
    # BENCH_INFO_NUTCRACKER=0: a run without nutcracker (compare.sh MODE=cluster).
    [[ ${BENCH_INFO_NUTCRACKER:-1} == 0 ]] || versions+=", $(nutcracker --version 2>&1 | sed -n '1s/This is //p')"
    echo "- $versions"
    local bin
    if bin=$(bench_keygate_bin); then
        echo "- keygate: ${bin#"$BENCH_REPO"/} ($(timeout 5 "$bin" --version 2>/dev/null | sed -n 1p || true))"
    fi
}

# bench_populate KEYS SIZE: writes key:000000000000 .. key:<KEYS-1> (the names redis-benchmark -r
# uses) with SIZE-byte values straight to redis-server, so every benchmark GET hits.
bench_populate() {
    "$BENCH_PY" - "$1" "$2" <<'EOF' | redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --pipe >/dev/null
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
value = b"x" * size
out = sys.stdout.buffer
for i in range(n):
    key = b"key:%012d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, size, value))
EOF
}

# ---------------------------------------------------------------------------------------------
# Redis Cluster (compare.sh MODE=cluster)
# ---------------------------------------------------------------------------------------------

# Set by bench_start_cluster: every node's port and PID (same order), the masters' ports and
# PIDs, and the seed list for keygate --cluster ("127.0.0.1:P,127.0.0.1:P,...").
CLUSTER_PORTS=()
CLUSTER_PIDS=()
CLUSTER_MASTER_PORTS=()
CLUSTER_MASTER_PIDS=()
CLUSTER_SEEDS=""

# bench_cluster_free_port [TAKEN...]: a port P such that P and P+10000 (the cluster bus port)
# are both free now and neither is among TAKEN. P is drawn from 10000-19999, so both stay below
# the kernel's ephemeral range (32768+) and no client socket holds them by chance.
bench_cluster_free_port() {
    "$BENCH_PY" - "$@" <<'PYEOF'
import random, socket, sys
taken = {int(a) for a in sys.argv[1:]}
def bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
for _ in range(2000):
    p = random.randrange(10000, 20000)
    if p in taken or p + 10000 in taken or p - 10000 in taken:
        continue
    if bindable(p) and bindable(p + 10000):
        print(p)
        sys.exit(0)
sys.exit("no free port pair (P, P+10000)")
PYEOF
}

# bench_cluster_info PORT FIELD -> the value of FIELD in CLUSTER INFO of the node on PORT.
bench_cluster_info() {
    timeout 2 redis-cli -h 127.0.0.1 -p "$1" CLUSTER INFO 2>/dev/null | tr -d '\r' |
        awk -F: -v f="$2" '$1 == f {print $2}'
}

# bench_cluster_ready MASTERS: every node says cluster_state:ok, knows all nodes, sees all
# 16384 slots served and MASTERS masters owning them with every other node their replica,
# and every replica's link to its master is up.
bench_cluster_ready() {
    local masters=$1 port role link n=${#CLUSTER_PORTS[@]} view
    for port in "${CLUSTER_PORTS[@]}"; do
        [[ $(bench_cluster_info "$port" cluster_state) == ok ]] || return 1
        [[ $(bench_cluster_info "$port" cluster_slots_ok) == 16384 ]] || return 1
        [[ $(bench_cluster_info "$port" cluster_known_nodes) == "$n" ]] || return 1
        view=$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" CLUSTER NODES 2>/dev/null | tr -d '\r' |
            awk '$3 ~ /master/ && NF > 8 {m++} $3 ~ /slave/ {r++} END {print m + 0, r + 0}')
        [[ $view == "$masters $((n - masters))" ]] || return 1
        role=$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" INFO replication 2>/dev/null | tr -d '\r' |
            awk -F: '$1 == "role" {print $2}')
        if [[ $role == slave ]]; then
            link=$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" INFO replication 2>/dev/null | tr -d '\r' |
                awk -F: '$1 == "master_link_status" {print $2}')
            [[ $link == up ]] || return 1
        elif [[ $role != master ]]; then
            return 1
        fi
    done
}

# bench_start_cluster [MASTERS [REPLICAS_PER_MASTER]] (default 3 and 1): a Redis Cluster of
# redis-server processes (no persistence) on free loopback port pairs, created with
# `redis-cli --cluster create`; returns once bench_cluster_ready. Sets CLUSTER_* above and, for
# the helpers that take one Redis, REDIS_PORT/REDIS_PID to the first master's.
bench_start_cluster() {
    local masters=${1:-3} replicas=${2:-1} total i port dir pid addrs=() taken=()
    total=$((masters * (1 + replicas)))
    CLUSTER_PORTS=() CLUSTER_PIDS=() CLUSTER_MASTER_PORTS=() CLUSTER_MASTER_PIDS=()
    for ((i = 0; i < total; i++)); do
        port=$(bench_cluster_free_port "${taken[@]}") || bench_die "no free port pair for a cluster node"
        taken+=("$port")
        dir=$BENCH_TMP/cluster/node$i
        mkdir -p "$dir"
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$dir" --logfile "$dir/redis.log" --daemonize no --protected-mode no \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
            --cluster-allow-replica-migration no --repl-diskless-sync-delay 0 --shutdown-timeout 0 \
            >/dev/null 2>&1 &
        pid=$!
        BENCH_PIDS+=("$pid")
        CLUSTER_PORTS+=("$port") CLUSTER_PIDS+=("$pid")
        addrs+=("127.0.0.1:$port")
    done
    for ((i = 0; i < total; i++)); do
        bench_wait_pong "${CLUSTER_PORTS[i]}" 10 ||
            bench_die "cluster node $i did not start (see $BENCH_TMP/cluster/node$i/redis.log)"
    done
    timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$replicas" --cluster-yes \
        >"$BENCH_TMP/cluster/create.log" 2>&1 ||
        bench_die "redis-cli --cluster create failed: $(tail -5 "$BENCH_TMP/cluster/create.log" | tr '\n' ' ')"
    for ((i = 0; i < 600; i++)); do
        bench_cluster_ready "$masters" && break
        sleep 0.1
    done
    bench_cluster_ready "$masters" || bench_die "the cluster did not reach cluster_state:ok on every node within 60 s"
    # Masters from the cluster's own view (redis-cli picks which nodes become replicas).
    local masters_up
    masters_up=$(timeout 2 redis-cli -h 127.0.0.1 -p "${CLUSTER_PORTS[0]}" CLUSTER NODES | tr -d '\r' |
        awk '$3 ~ /master/ && NF > 8 {split($2, a, "[:@]"); print a[2]}' | sort -n)
    for port in $masters_up; do
        for ((i = 0; i < total; i++)); do
            [[ ${CLUSTER_PORTS[i]} == "$port" ]] && CLUSTER_MASTER_PIDS+=("${CLUSTER_PIDS[i]}")
        done
        CLUSTER_MASTER_PORTS+=("$port")
    done
    ((${#CLUSTER_MASTER_PORTS[@]} == masters)) || bench_die "expected $masters masters, the cluster has: $masters_up"
    CLUSTER_SEEDS=$(printf '127.0.0.1:%s,' "${CLUSTER_MASTER_PORTS[@]}")
    CLUSTER_SEEDS=${CLUSTER_SEEDS%,}
    REDIS_PORT=${CLUSTER_MASTER_PORTS[0]} REDIS_PID=${CLUSTER_MASTER_PIDS[0]}
    bench_log "redis cluster: $masters masters (${CLUSTER_MASTER_PORTS[*]}) + $((total - masters)) replicas, pids ${CLUSTER_PIDS[*]}"
}

# bench_cluster_populate KEYS SIZE [PREFIX...]: for every PREFIX (default "key:") writes
# PREFIX000000000000 .. PREFIX<KEYS-1> (12 digits: the names redis-benchmark -r uses) with
# SIZE-byte values, each straight to the master that owns its slot (CRC16 of the key or of its
# hash tag, as the cluster spec says), streamed through one `redis-cli --pipe` per master.
# "key:" are plain redis-benchmark's keys (through keygate); redis-benchmark --cluster's are
# "key:{TAG}:" (see bench_cluster_benchmark_prefixes).
bench_cluster_populate() {
    local n=$1 size=$2 dir=$BENCH_TMP/populate
    shift 2
    (($# > 0)) || set -- "key:"
    mkdir -p "$dir"
    timeout 5 redis-cli -h 127.0.0.1 -p "${CLUSTER_MASTER_PORTS[0]}" CLUSTER NODES | tr -d '\r' >"$dir/nodes"
    "$BENCH_PY" - "$n" "$size" "$dir/nodes" "$@" <<'PYEOF' || bench_die "populating the cluster failed"
import subprocess, sys
n, size, nodes = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
prefixes = [p.encode() for p in sys.argv[4:]]
table = []
for byte in range(256):
    crc = byte << 8
    for _ in range(8):
        crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
    table.append(crc & 0xFFFF)
def slot(key):
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    crc = 0
    for b in key:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ b) & 0xFF]
    return crc % 16384
owner = [None] * 16384
for line in open(nodes):
    f = line.split()
    if len(f) < 9 or "master" not in f[2]:
        continue
    port = f[1].split("@")[0].rsplit(":", 1)[1]
    for r in f[8:]:
        if r.startswith("["):  # a slot being migrated
            continue
        lo, _, hi = r.partition("-")
        for s in range(int(lo), int(hi or lo) + 1):
            owner[s] = port
if None in owner:
    sys.exit("slot %d has no master" % owner.index(None))
pipes = {p: subprocess.Popen(["redis-cli", "-h", "127.0.0.1", "-p", p, "--pipe"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL) for p in sorted(set(owner))}
value = b"x" * size
for prefix in prefixes:
    for i in range(n):
        key = b"%s%012d" % (prefix, i)
        pipes[owner[slot(key)]].stdin.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, size, value))
failed = False
for p in pipes.values():
    p.stdin.close()
    failed |= p.wait() != 0
sys.exit(1 if failed else 0)
PYEOF
}

# bench_cluster_benchmark_prefixes: the key prefixes "key:{TAG}:" that `redis-benchmark
# --cluster` uses against this cluster, found by letting it write a few keys and reading them
# back. (redis-benchmark 7.0 puts all of a master's requests under one hash tag, the tag of
# one slot of that master, not a random slot per request; the GET miss count in compare.sh's
# table shows if that ever changes.)
bench_cluster_benchmark_prefixes() {
    local port
    timeout 30 redis-benchmark --cluster -h 127.0.0.1 -p "${CLUSTER_MASTER_PORTS[0]}" \
        -c "${#CLUSTER_MASTER_PORTS[@]}" -n 300 -r 1 -d 1 -t set -q >/dev/null 2>&1 ||
        bench_die "redis-benchmark --cluster did not run against the cluster"
    for port in "${CLUSTER_MASTER_PORTS[@]}"; do
        timeout 10 redis-cli -h 127.0.0.1 -p "$port" --scan --pattern 'key:{*}*:000000000000'
    done | sed 's/[0-9]*$//' | sort -u
}

# bench_cluster_dbsize: keys in the cluster (sum of DBSIZE over the masters).
bench_cluster_dbsize() {
    local port sum=0 n
    for port in "${CLUSTER_MASTER_PORTS[@]}"; do
        n=$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" DBSIZE | tr -d '\r')
        sum=$((sum + n))
    done
    echo "$sum"
}

# bench_start_keygate_cluster NAME THREADS -> sets KG_PORT, KG_PID: keygate in front of the
# cluster started by bench_start_cluster (--cluster with every master as a seed), otherwise
# as bench_start_keygate.
bench_start_keygate_cluster() {
    BENCH_KG_UPSTREAM_ARGS="--cluster $CLUSTER_SEEDS" bench_start_keygate "$1" "$2" ""
}

# ---------------------------------------------------------------------------------------------
# Hot keys (compare.sh MODE=hotkey, issue 8)
# ---------------------------------------------------------------------------------------------

# bench_hotkey_load_bin: the hot-key load generator: $HOTKEY_LOAD, else a CMake build's
# (build-release, build-bench: -DKEYGATE_BUILD_BENCH=ON), else bench/hotkey_load.cpp compiled
# into $BENCH_TMP (one file, standard library only).
bench_hotkey_load_bin() {
    local c src=$BENCH_REPO/bench/hotkey_load.cpp
    for c in "${HOTKEY_LOAD:-}" "$BENCH_REPO/build-release/bench/hotkey_load" "$BENCH_REPO/build-bench/bench/hotkey_load"; do
        # A build older than the source would measure old code; compile a fresh one then.
        [[ -n $c && -x $c && ( -n ${HOTKEY_LOAD:-} || ! $src -nt $c ) ]] && { echo "$c"; return 0; }
    done
    c=$BENCH_TMP/hotkey_load
    if [[ ! -x $c ]]; then
        bench_log "compiling bench/hotkey_load.cpp into \$TMP (set HOTKEY_LOAD to use a build of your own)"
        "${CXX:-c++}" -O2 -std=c++20 -o "$c" "$src" >&2 || return 1
    fi
    echo "$c"
}

# bench_metric_sum ADMIN_PORT NAME...: for each NAME, the sum of keygate's /metrics samples of
# that name over all their labels (0 when absent), space-separated.
bench_metric_sum() {
    local port=$1
    shift
    bench_keygate_metrics "$port" 2>/dev/null | awk -v names="$*" '
        BEGIN { n = split(names, want, " "); for (i = 1; i <= n; i++) sum[want[i]] = 0 }
        { name = $1; sub(/\{.*/, "", name); if (name in sum) sum[name] += $NF }
        END { for (i = 1; i <= n; i++) printf "%s%.0f", (i > 1 ? " " : ""), sum[want[i]]; print "" }'
}

# bench_redis_calls PORT COMMAND: how many times redis-server on PORT has run COMMAND (lower
# case, from INFO commandstats; 0 before the first).
bench_redis_calls() {
    timeout 5 redis-cli -h 127.0.0.1 -p "$1" INFO commandstats 2>/dev/null | tr -d '\r' |
        awk -F'[:=,]' -v c="cmdstat_$2" '$1 == c {print $3; found = 1} END {if (!found) print 0}'
}

# bench_wait_while FILE [MAX_SECONDS]: returns once FILE does not exist (someone else needs the
# machine while it does), or after MAX_SECONDS (default 3600) with status 1.
bench_wait_while() {
    local file=$1 max=${2:-3600} waited=0
    [[ -e $file ]] || return 0
    bench_log "waiting while $file exists (at most ${max}s)"
    while [[ -e $file ]]; do
        ((waited >= max)) && { bench_log "warning: $file still exists after ${max}s; going on"; return 1; }
        sleep 5
        waited=$((waited + 5))
    done
    bench_log "$file is gone after ${waited}s"
}
