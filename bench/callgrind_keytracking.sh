#!/usr/bin/env bash
# Deterministic cost of key tracking (issue 6): instructions per request of keygate under a
# fixed redis-benchmark load, counted by valgrind's callgrind, with
# `observability.keyTracking` on and off, for one or more keygate binaries (e.g. before and
# after a change). Instruction counts do not depend on the machine's load, so they compare
# changes that the throughput runs of compare.sh cannot separate from noise.
#
#   bench/callgrind_keytracking.sh > /tmp/callgrind.md
#   KEYGATES="before=/tmp/old/keygate after=build-release/proxy/keygate" bench/callgrind_keytracking.sh
#
# For each binary and each setting, keygate (--threads 1, the bench/gen_registry.py registry
# that compare.sh POLICIES=1 uses, so every SET is matched, size-checked and gets PX injected)
# runs under `valgrind --tool=callgrind`; a warm-up load runs first, the counters are zeroed
# (callgrind_control -z), the measured load runs, the counters are dumped (callgrind_control -d).
# Reported: instructions (Ir) of the measured load per request, all of keygate's threads, and
# the inclusive Ir of Worker::recordKey per request (callgrind_annotate --inclusive=yes).
#
# Variables:
#   KEYGATES ["current=<keygate binary as compare.sh finds it>"]  NAME=PATH ...
#   TESTS [set get]       redis-benchmark -t, one measured load each
#   N [100000]            requests of the measured load (the warm-up: N / 5)
#   PIPELINE [16]         -P
#   CLIENTS [50]          -c
#   KEYSPACE [100000]     -r
#   VALUE_SIZE [64]       -d
#   KEEP                  directory to copy the callgrind output files to
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TESTS=${TESTS:-set get}
N=${N:-100000}
PIPELINE=${PIPELINE:-16}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
VALUE_SIZE=${VALUE_SIZE:-64}

bench_require redis-server redis-benchmark redis-cli valgrind callgrind_control callgrind_annotate timeout
bench_init
if [[ -z ${KEYGATES:-} ]]; then
    KEYGATES="current=$(bench_keygate_bin)" || bench_die "no keygate binary (set KEYGATES or KEYGATE)"
fi

REGISTRY=$BENCH_TMP/registry.yaml
"$BENCH_PY" "$BENCH_REPO/bench/gen_registry.py" -o "$REGISTRY" --ttl-default 1h --ttl-jitter 5m \
    --max-value-bytes 1KiB >/dev/null || bench_die "bench/gen_registry.py failed"
for setting in on off; do
    v=true
    [[ $setting == off ]] && v=false
    printf 'observability:\n  keyTracking: %s\n' "$v" >"$BENCH_TMP/tracking-$setting.yaml"
done
bench_start_redis
redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$CLIENTS" -n "$KEYSPACE" -d "$VALUE_SIZE" \
    -r "$KEYSPACE" -P 16 -t set -q >/dev/null 2>&1 || bench_die "populating Redis failed"

# total Ir of a callgrind output file; inclusive Ir of recordKey in it
ir_total() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }
ir_record_key() {
    callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
        awk '/Worker::recordKey/ && !found {gsub(",", "", $1); print $1; found = 1}' || true
}

RESULTS=()
for spec in $KEYGATES; do
    name=${spec%%=*} bin=${spec#*=}
    [[ -x $bin ]] || bench_die "not executable: $bin"
    for setting in on off; do
        for test in $TESTS; do
            dir=$BENCH_TMP/$name-$setting-$test
            mkdir -p "$dir"
            port=$(bench_free_port) admin=$(bench_free_port)
            valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
                "$bin" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$REDIS_PORT" --threads 1 \
                --admin "127.0.0.1:$admin" --log-level warn --registry "$REGISTRY" \
                --config "$BENCH_TMP/tracking-$setting.yaml" >"$dir/keygate.log" 2>&1 &
            pid=$!
            BENCH_PIDS+=("$pid")
            bench_wait_pong "$port" 120 || bench_die "keygate under valgrind did not answer (see $dir/keygate.log)"
            bench=(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -d "$VALUE_SIZE" -r "$KEYSPACE"
                -P "$PIPELINE" -t "$test" -q)
            timeout 600 "${bench[@]}" -n $((N / 5)) >"$dir/warmup.txt" 2>&1 || bench_die "warm-up failed: $(tail -2 "$dir/warmup.txt")"
            callgrind_control -z "$pid" >/dev/null
            timeout 900 "${bench[@]}" -n "$N" >"$dir/load.txt" 2>&1 || bench_die "load failed: $(tail -2 "$dir/load.txt")"
            callgrind_control -d "$pid" >/dev/null
            kill -TERM "$pid"
            wait "$pid" 2>/dev/null || true
            # callgrind_control -d wrote part 1 (the measured load); cg.out is the rest, to exit.
            dump=$dir/cg.out.1
            [[ -s $dump ]] || bench_die "no callgrind dump in $dir"
            total=$(ir_total "$dump")
            rk=$(ir_record_key "$dump")
            [[ -n ${KEEP:-} ]] && { mkdir -p "$KEEP"; cp "$dump" "$KEEP/callgrind.$name-$setting-$test"; }
            line=$(awk -v n="$N" -v t="$total" -v r="${rk:-0}" -v name="$name" -v s="$setting" -v test="$test" \
                'BEGIN {printf "| %s | %s | %s | %.0f | %.0f |", name, toupper(test), s, t / n, r / n}')
            RESULTS+=("$line")
            bench_log "$line"
        done
    done
done

echo "## Key tracking: keygate instructions per request (callgrind)"
echo
bench_machine_info
echo "- load: redis-benchmark -c $CLIENTS -r $KEYSPACE -d $VALUE_SIZE -P $PIPELINE, warm-up $((N / 5)) then $N requests measured; keygate --threads 1 with the bench/gen_registry.py registry (PX injected on every SET)"
for spec in $KEYGATES; do echo "- ${spec%%=*}: \`${spec#*=}\`"; done
echo
echo "| keygate | test | keyTracking | Ir per request | of which Worker::recordKey |"
echo "|---|---|---|---:|---:|"
printf '%s\n' "${RESULTS[@]}"
