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

# bench_start_keygate NAME THREADS UPSTREAM_PORT -> sets KG_PORT, KG_PID
# Extra arguments from $KEYGATE_ARGS (e.g. "--config config/example.yaml").
bench_start_keygate() {
    local name=$1 threads=$2 upstream=$3 bin dir=$BENCH_TMP/$1
    bin=$(bench_keygate_bin) || bench_die "no keygate binary (set KEYGATE=...)"
    mkdir -p "$dir"
    KG_PORT=$(bench_free_port)
    local args=(--listen "127.0.0.1:$KG_PORT" --upstream "127.0.0.1:$upstream" --threads "$threads")
    local help
    help=$(timeout 5 "$bin" --help 2>&1 || true)
    # Own admin port, so that two instances never collide on a default one.
    [[ $help == *--admin* ]] && args+=(--admin "127.0.0.1:$(bench_free_port)")
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

bench_machine_info() {
    local rev dirty
    rev=$(git -C "$BENCH_REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
    dirty=$(git -C "$BENCH_REPO" status --porcelain 2>/dev/null | head -1)
    [[ -n $dirty ]] && rev="$rev (working tree modified)"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
    echo "- kernel: $(uname -sr)"
    echo "- git rev: $rev"
    echo "- $(redis-server --version | awk '{print $1, $2, $3}'), $(redis-benchmark --version 2>/dev/null | head -1), $(nutcracker --version 2>&1 | head -1 | sed 's/This is //')"
    local bin
    if bin=$(bench_keygate_bin); then
        echo "- keygate: ${bin#"$BENCH_REPO"/} ($(timeout 5 "$bin" --version 2>/dev/null | head -1 || true))"
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
