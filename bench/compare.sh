#!/usr/bin/env bash
# Side-by-side throughput/latency of direct Redis, nutcracker (twemproxy) and keygate.
#
# Starts its own redis-server, nutcracker and two keygates (--threads 1 and 2) on free
# loopback ports, runs redis-benchmark against each in interleaved rounds
# (direct, nutcracker, keygate-t1, keygate-t2, direct, ...) and prints Markdown tables of
# medians: requests/s, ratio to direct, p50/p99 latency and CPU time per request.
# Only ratios measured within one run are meaningful; absolute numbers move between runs.
#
# MODE=cluster instead starts a Redis Cluster (3 masters + 3 replicas) and compares
# `redis-benchmark --cluster` against the cluster (cluster-direct) with plain redis-benchmark
# through keygate --cluster (keygate-t1, keygate-t2); ratios are to cluster-direct.
#
# MODE=hotkey instead runs bench/hotkey_load (90% of GETs on 10 hot keys, the rest on 100,000
# cold ones, 50 connections, pipeline 1) against direct Redis and keygate with and without its
# near cache (issue 8), and reports throughput, keygate's CPU per request and the near cache's
# hit ratio; its own variables are listed in bench/README.md.
#
# Usage: bench/compare.sh [> results.md]      (progress goes to stderr)
#        MODE=cluster bench/compare.sh [> results.md]
#        MODE=hotkey bench/compare.sh [> results.md]
# Environment (defaults in brackets):
#   MODE [standalone]     standalone: one redis-server; cluster: a 3+3 Redis Cluster;
#                         hotkey: the hot-key GET load above (one redis-server)
#   ROUNDS [5]            interleaved rounds; medians are taken over them
#   N_P1 [600000]         requests per run at pipeline 1 (200000 when CLIENT_THREADS is 1 or empty)
#   N_P16 [4000000]       requests per run at pipeline 16 (1000000 when CLIENT_THREADS is 1 or
#                         empty; N_P<k> for any PIPELINES entry)
#   VALUE_SIZES ["64"]    value sizes in bytes, e.g. "64 1024"
#   PIPELINES ["1 16"]    redis-benchmark -P values
#   TESTS ["set get"]     redis-benchmark -t tests, in this order each round; also `setpx`:
#                         `SET key:__rand_int__ <value> PX $SETPX_MS` to every target (a SET with
#                         its own TTL: what POLICIES=1 makes of every SET through keygate)
#   SETPX_MS [3600000]    the PX of setpx
#   CLIENTS [50]          redis-benchmark -c
#   KEYSPACE [100000]     redis-benchmark -r; all keys are written before the GET runs
#   TARGETS ["direct nutcracker keygate-t1 keygate-t2"; cluster: "cluster-direct keygate-t1 keygate-t2"]
#   CLIENT_THREADS [2; cluster: 1]  redis-benchmark --threads for every target (empty: none,
#                         so --cluster uses one thread per master and plain runs none). One
#                         client thread is the bottleneck at pipeline 1 in standalone mode (it
#                         kept its CPU 90-95% busy behind both proxies), so two are the default.
#                         With two or more, redis-benchmark ends a run on a 250 ms timer tick:
#                         the longer default runs keep that rounding under ~2.5%.
#   KEYGATE               keygate binary [build-release/proxy/keygate, else build-bench/...]
#   KEYGATE_BASE          a second keygate binary for A/B within one run: any keygate target
#                         name with @base appended (keygate-t1@base, keygate-t1-near@base) runs
#                         it, e.g. TARGETS="direct keygate-t1 keygate-t1@base"
#   KEYGATE_ARGS          extra keygate arguments, e.g. "--config config/example.yaml"
#   POLICIES [0]          1: keygate enforces a registry with every policy on (issue 4): the
#                         example's patterns + POLICIES_GENERATED generated ones + key:<n:int>
#                         (TTL injected, size limit), written by bench/gen_registry.py, checked
#                         with `keygate check`, passed as --registry; afterwards the TTLs the
#                         SETs left in Redis and keygate's policy counters are reported
#   POLICIES_GENERATED [1000]  generated patterns in that registry
#   RUN_TIMEOUT [300]     seconds before one redis-benchmark run is abandoned
#   RAW                   file to copy the raw per-run results (TSV) to
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-5}
VALUE_SIZES=${VALUE_SIZES:-64}
PIPELINES=${PIPELINES:-1 16}
TESTS=${TESTS:-set get}
SETPX_MS=${SETPX_MS:-3600000}
CLIENTS=${CLIENTS:-50}
KEYSPACE=${KEYSPACE:-100000}
MODE=${MODE:-standalone}
case $MODE in
    standalone) BASE=direct DEFAULT_TARGETS="direct nutcracker keygate-t1 keygate-t2" ;;
    cluster) BASE=cluster-direct DEFAULT_TARGETS="cluster-direct keygate-t1 keygate-t2" ;;
    hotkey) BASE=direct DEFAULT_TARGETS="direct keygate-t1-plain keygate-t1 keygate-t1-near keygate-t2 keygate-t2-near" ;;
    *) echo "MODE must be standalone, cluster or hotkey, not '$MODE'" >&2; exit 2 ;;
esac
TARGETS=${TARGETS:-$DEFAULT_TARGETS}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
# redis-benchmark --cluster runs one thread per master unless told; on 2 CPUs that is slower
# than one thread, and plain redis-benchmark has none. The same --threads for all targets keeps
# the client side alike; why two in standalone mode, and the longer runs then: CLIENT_THREADS
# above.
if [[ $MODE == cluster ]]; then CLIENT_THREADS=${CLIENT_THREADS-1}; else CLIENT_THREADS=${CLIENT_THREADS-2}; fi
if [[ -n $CLIENT_THREADS ]] && ((CLIENT_THREADS > 1)); then
    N_P1=${N_P1:-600000} N_P16=${N_P16:-4000000}
else
    N_P1=${N_P1:-200000} N_P16=${N_P16:-1000000}
fi

if [[ $MODE == cluster || $MODE == hotkey ]]; then
    BENCH_INFO_NUTCRACKER=0
    bench_require redis-server redis-benchmark redis-cli timeout
else
    bench_require redis-server redis-benchmark redis-cli nutcracker timeout
fi
bench_init

if [[ $TARGETS == *keygate* ]] && ! bench_keygate_bin >/dev/null; then
    bench_log "warning: no keygate binary found; running without the keygate targets"
    TARGETS=$(tr ' ' '\n' <<<"$TARGETS" | grep -v '^keygate' | xargs)
fi
if [[ $MODE == cluster && $TARGETS == *keygate* ]]; then
    # A build from before cluster routing refuses --cluster; measure cluster-direct alone then.
    probe=$(timeout -k 2 5 "$(bench_keygate_bin)" --cluster 127.0.0.1:1 --listen "127.0.0.1:$(bench_free_port)" \
        --admin "127.0.0.1:$(bench_free_port)" 2>&1 || true)
    if [[ $probe == *"not available in this build"* ]]; then
        bench_log "warning: $(bench_keygate_bin) has no cluster mode yet; running without the keygate targets"
        TARGETS=$(tr ' ' '\n' <<<"$TARGETS" | grep -v '^keygate' | xargs)
    fi
fi
[[ -n $TARGETS ]] || bench_die "no targets left to run"

# ---------------------------------------------------------------------------------------------
# MODE=hotkey (issue 8): bench/hotkey_load against direct Redis and keygates with and without
# the near cache, in interleaved rounds. This part runs to its end and exits; the rest of the
# script is the redis-benchmark modes. See bench/README.md.
# ---------------------------------------------------------------------------------------------
if [[ $MODE == hotkey ]]; then
    HOT_KEYS=${HOT_KEYS:-10}
    HOT_SHARE=${HOT_SHARE:-0.9}
    COLD_KEYS=${COLD_KEYS:-100000}
    HOT_REQUESTS=${HOT_REQUESTS:-300000}
    HOT_SECONDS=${HOT_SECONDS:-30}
    HOT_VALUE_SIZE=${HOT_VALUE_SIZE:-64}
    HOT_PX=${HOT_PX:-3600000}
    HOT_REGISTRY=${HOT_REGISTRY:-$BENCH_REPO/bench/hotkey-registry.yaml}
    ((ROUNDS >= 3)) || bench_log "warning: ROUNDS=$ROUNDS; a median needs at least 3"
    [[ " ${KEYGATE_ARGS:-} " != *" --registry "* ]] || bench_die "MODE=hotkey passes its own --registry; KEYGATE_ARGS has one"
    LOAD=$(bench_hotkey_load_bin) || bench_die "could not build bench/hotkey_load.cpp (set HOTKEY_LOAD=...)"
    LOAD_ARGS=(--connections "$CLIENTS" --hot-keys "$HOT_KEYS" --hot-share "$HOT_SHARE"
        --cold-keys "$COLD_KEYS" --value-size "$HOT_VALUE_SIZE" --timeout 10)
    # HOT_KEY_FORMAT: another key shape (HOT_REGISTRY must then register it).
    [[ -n ${HOT_KEY_FORMAT:-} ]] && LOAD_ARGS+=(--key-format "$HOT_KEY_FORMAT")

    # The registries: HOT_REGISTRY as is (-near), without its nearCache: line (coalescing only),
    # and without its coalesce: line too (-plain).
    if ! grep -q '^ *nearCache:' "$HOT_REGISTRY" || ! grep -q '^ *coalesce:' "$HOT_REGISTRY"; then
        bench_die "$HOT_REGISTRY needs a one-line nearCache: and a coalesce: entry (see bench/hotkey-registry.yaml)"
    fi
    cp "$HOT_REGISTRY" "$BENCH_TMP/near.yaml"
    sed '/^ *nearCache:/d' "$HOT_REGISTRY" >"$BENCH_TMP/coalesce.yaml"
    sed '/^ *nearCache:/d; /^ *coalesce:/d' "$HOT_REGISTRY" >"$BENCH_TMP/plain.yaml"
    declare -A VARIANT THREADS PORT PID ADMIN DEAD CHECKED
    for t in $TARGETS; do
        if [[ $t == direct ]]; then continue; fi
        [[ $t =~ ^keygate-t([0-9]+)(-near|-plain)?(@base)?$ ]] ||
            bench_die "unknown target '$t' for MODE=hotkey (direct, keygate-tN, keygate-tN-near, keygate-tN-plain; each also with @base)"
        THREADS[$t]=${BASH_REMATCH[1]}
        case ${BASH_REMATCH[2]} in -near) VARIANT[$t]=near ;; -plain) VARIANT[$t]=plain ;; *) VARIANT[$t]=coalesce ;; esac
        v=${VARIANT[$t]}
        [[ -n ${CHECKED[$v]:-} ]] && continue
        timeout 60 "$(bench_keygate_bin)" check "$BENCH_TMP/$v.yaml" >"$BENCH_TMP/check-$v.txt" 2>&1 ||
            bench_die "keygate check refused the registry of $t ($v): $(grep -iE 'error|unknown' "$BENCH_TMP/check-$v.txt" | head -3 | tr '\n' ' ')(a build without the near cache: TARGETS=\"direct keygate-t1-plain\")"
        CHECKED[$v]=1
    done

    bench_start_redis
    bench_log "preloading $((HOT_KEYS + COLD_KEYS)) keys ($HOT_VALUE_SIZE B values, PX $HOT_PX) into redis-server"
    timeout "$RUN_TIMEOUT" "$LOAD" --port "$REDIS_PORT" "${LOAD_ARGS[@]}" --px "$HOT_PX" --preload-only >&2 ||
        bench_die "the preload failed"
    dbsize=$(timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" DBSIZE | tr -d '\r')
    ((dbsize == HOT_KEYS + COLD_KEYS)) || bench_die "redis-server holds $dbsize keys after the preload, not $((HOT_KEYS + COLD_KEYS))"
    for t in $TARGETS; do
        if [[ $t == direct ]]; then
            PORT[$t]=$REDIS_PORT PID[$t]=$REDIS_PID
            continue
        fi
        KEYGATE_ARGS="${KEYGATE_ARGS:-} --registry $BENCH_TMP/${VARIANT[$t]}.yaml" \
            bench_start_keygate "$t" "${THREADS[$t]}" "$REDIS_PORT"
        PORT[$t]=$KG_PORT PID[$t]=$KG_PID ADMIN[$t]=$KG_ADMIN_PORT
    done

    NEAR_METRICS=(keygate_near_cache_hits_total keygate_near_cache_misses_total keygate_coalesced_requests_total)
    RESULTS=$BENCH_TMP/results.tsv
    printf 'target\tround\trequests\tseconds\tops\terrors\tnil\tp50_ms\tp99_ms\tproxy_cpu_us\tredis_cpu_us\tclient_cpu_us\tredis_gets\tnear_hits\tnear_misses\tcoalesced\thot_share\tper_wakeup\tother_pct\tidle_pct\tstatus\n' >"$RESULTS"

    # hot_us_per_request TICKS REQUESTS: CPU microseconds per request ("" without requests).
    hot_us_per_request() {
        awk -v d="$1" -v n="$2" -v t="$BENCH_CLK_TCK" 'BEGIN {if (n > 0) printf "%.3f", d * 1e6 / t / n}'
    }

    # hot_run_one TARGET ROUND: one hotkey_load run, one result line. The CPU windows (proxy,
    # redis-server, machine) enclose the load run only; /metrics and INFO are read outside them.
    hot_run_one() {
        local target=$1 round=$2 pid=${PID[$1]} admin=${ADMIN[$1]:-} status=ok rc=0
        local out=$BENCH_TMP/run.out err=$BENCH_TMP/run.err
        local m0="0 0 0" m1="0 0 0" g0 g1 c0 c1 r0 r1 s0 s1 b0 b1 a0 a1
        if [[ -n ${DEAD[$target]:-} ]]; then
            printf '%s\t%s\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\tdead\n' "$target" "$round" >>"$RESULTS"
            return
        fi
        [[ -n $admin ]] && m0=$(bench_metric_sum "$admin" "${NEAR_METRICS[@]}")
        g0=$(bench_redis_calls "$REDIS_PORT" get)
        c0=$(bench_cpu_ticks "$pid") r0=$(bench_cpu_ticks "$REDIS_PID")
        b0=$(bench_machine_busy_ticks) a0=$(bench_machine_all_ticks) s0=$(bench_self_ticks)
        # The same seed for every target of a round: the same key sequence behind each.
        timeout "$RUN_TIMEOUT" "$LOAD" --port "${PORT[$target]}" "${LOAD_ARGS[@]}" --seed "$round" \
            --requests "$HOT_REQUESTS" --seconds "$HOT_SECONDS" >"$out" 2>"$err" || rc=$?
        s1=$(bench_self_ticks) b1=$(bench_machine_busy_ticks) a1=$(bench_machine_all_ticks)
        c1=$(bench_cpu_ticks "$pid") r1=$(bench_cpu_ticks "$REDIS_PID")
        g1=$(bench_redis_calls "$REDIS_PORT" get)
        [[ -n $admin ]] && m1=$(bench_metric_sum "$admin" "${NEAR_METRICS[@]}")
        declare -A R=()
        local kv
        for kv in $(tail -1 "$out"); do R[${kv%%=*}]=${kv#*=}; done
        if ((rc == 124)); then
            status=timeout
        elif ((rc == 3)); then
            status=errors # finished, but not every reply was the expected value
        elif ((rc != 0)) || [[ -z ${R[requests]:-} ]]; then
            status="failed(rc=$rc)"
        fi
        if ! bench_alive "$pid"; then
            status=crashed DEAD[$target]=1
            bench_log "ERROR: $target (pid $pid) is gone"
        fi
        [[ $status == ok ]] || bench_log "  $target: $status: $(head -3 "$err" | tr '\n' ' ')"
        local n=${R[requests]:-0} h0 h1 mi0 mi1 co0 co1
        read -r h0 mi0 co0 <<<"$m0"
        read -r h1 mi1 co1 <<<"$m1"
        local proxy_us="" redis_us client_us other idle ours gets
        [[ $target == direct ]] || proxy_us=$(hot_us_per_request $((c1 - c0)) "$n")
        redis_us=$(hot_us_per_request $((r1 - r0)) "$n")
        gets=$(awk -v d=$((g1 - g0)) -v n="$n" 'BEGIN {if (n > 0) printf "%.4f", d / n}')
        idle=$(awk -v b=$((b1 - b0)) -v a=$((a1 - a0)) 'BEGIN {printf "%.1f", a ? (a - b) * 100 / a : 0}')
        ours=$(((r1 - r0) + (s1 - s0)))
        [[ $target == direct ]] || ours=$((ours + c1 - c0))
        other=$(awk -v b=$((b1 - b0)) -v o="$ours" -v a=$((a1 - a0)) 'BEGIN {f = a ? (b - o) * 100 / a : 0; printf "%.1f", f < 0 ? 0 : f}')
        client_us=${R[client_cpu_us]:-}
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
            "$target" "$round" "$n" "${R[seconds]:-}" "${R[ops_per_sec]:-}" "${R[errors]:-}" "${R[nil]:-}" \
            "${R[p50_ms]:-}" "${R[p99_ms]:-}" "$proxy_us" "$redis_us" "$client_us" "$gets" \
            $((h1 - h0)) $((mi1 - mi0)) $((co1 - co0)) "${R[hot_share]:-}" "${R[replies_per_wakeup]:-}" "$other" "$idle" "$status" >>"$RESULTS"
        bench_log "  $(printf '%-17s %8s ops/s  p99 %6s ms  keygate %6s us/req  redis GETs/req %6s  %s' \
            "$target" "${R[ops_per_sec]:--}" "${R[p99_ms]:--}" "${proxy_us:--}" "$gets" "$status")"
    }

    START=$(date +%s)
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
    for ((round = 1; round <= ROUNDS; round++)); do
        # BENCH_WAIT_WHILE=FILE: hold each round while FILE exists (the machine is lent out).
        [[ -n ${BENCH_WAIT_WHILE:-} ]] && { bench_wait_while "$BENCH_WAIT_WHILE" || true; }
        bench_log "hot keys, round $round/$ROUNDS"
        for t in $TARGETS; do hot_run_one "$t" "$round"; done
    done
    ELAPSED=$(($(date +%s) - START))
    LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
    if [[ -n ${RAW:-} ]]; then cp "$RESULTS" "$RAW"; fi

    # Each keygate's near cache after the last round, from its /metrics.
    FINAL_LINES=()
    for t in $TARGETS; do
        # A -plain registry has neither near cache nor coalescing: no such metrics to show.
        [[ -n ${ADMIN[$t]:-} && -z ${DEAD[$t]:-} && ${VARIANT[$t]} != plain ]] || continue
        # (Not `| grep -q`: grep leaving early kills the writer, which pipefail reports.)
        metrics=$(bench_keygate_metrics "${ADMIN[$t]}" 2>/dev/null || true)
        if [[ $metrics != *keygate_coalesced_requests_total* ]]; then
            FINAL_LINES+=("- $t: no near-cache or coalescing metrics in its /metrics")
            continue
        fi
        read -r hits misses inval evict expired entries bytes flushes coalesced < <(bench_metric_sum "${ADMIN[$t]}" \
            keygate_near_cache_hits_total keygate_near_cache_misses_total keygate_near_cache_invalidations_total \
            keygate_near_cache_evictions_total keygate_near_cache_expirations_total keygate_near_cache_entries \
            keygate_near_cache_bytes keygate_near_cache_flushes_total keygate_coalesced_requests_total)
        if [[ ${VARIANT[$t]} == coalesce ]]; then
            FINAL_LINES+=("- $t after the last round (/metrics): $coalesced coalesced requests")
            continue
        fi
        ratio=$(awk -v h="$hits" -v m="$misses" 'BEGIN {if (h + m > 0) printf "%.2f%%", h * 100 / (h + m); else print "-"}')
        FINAL_LINES+=("- $t after the last round (/metrics): near cache $hits hits, $misses misses (hit ratio $ratio), $entries entries, $bytes bytes, $evict evictions, $expired expirations, $inval invalidations, $flushes flushes; $coalesced coalesced requests")
    done

    echo "## Hot keys: direct Redis vs keygate with and without the near cache"
    echo
    bench_machine_info
    echo "- load: \`bench/hotkey_load ${LOAD_ARGS[*]} --requests $HOT_REQUESTS --seconds $HOT_SECONDS --seed <round>\` (one GET in flight per connection; every reply checked against the preloaded value), keys preloaded straight into redis-server with \`PX $HOT_PX\`; $ROUNDS interleaved rounds, ${ELAPSED}s in all"
    echo "- registry: \`${HOT_REGISTRY#"$BENCH_REPO"/}\` as is for \`-near\` targets (near cache + coalescing), without its \`nearCache:\` line for \`keygate-tN\` (coalescing only), without \`coalesce:\` too for \`-plain\`: $(grep -m1 '^ *nearCache:' "$HOT_REGISTRY" | sed 's/^ *//')"
    for t in $TARGETS; do
        [[ $t == direct ]] || echo "- $t: \`$(sed "s|$BENCH_REPO/||; s|$BENCH_TMP/|\$TMP/|g; s|127.0.0.1:[0-9]*|127.0.0.1:PORT|g" "$BENCH_TMP/$t/cmdline")\`"
    done
    printf '%s\n' "${FINAL_LINES[@]}"
    echo "- load average at start: $LOAD_START, at end: $LOAD_END; all processes on the same $(nproc) CPUs, unpinned"
    echo

    "$BENCH_PY" - "$RESULTS" <<'PYEOF'
import csv, re, statistics, sys

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None
def fmt(v, spec):
    return "-" if v is None else format(v, spec)

targets = list(dict.fromkeys(r["target"] for r in rows))
by = {}
for r in rows:
    by.setdefault(r["target"], {})[r["round"]] = r
direct = by.get("direct", {})

def ratio_to_direct(t):
    runs = by.get(t, {})
    return med(num(r["ops"]) / num(direct[k]["ops"]) for k, r in runs.items()
               if k in direct and num(r["ops"]) and num(direct[k]["ops"]))
def hit_ratio(r):
    h, m = num(r["near_hits"]) or 0, num(r["near_misses"]) or 0
    return h / (h + m) if h + m > 0 else None
def per_k(r, field):
    n = num(r["requests"])
    v = num(r[field])
    return v * 1000 / n if n and v is not None else None

print("Medians over rounds. `x direct` is the median of per-round ratios (target ops/s over direct "
      "ops/s in the same round). CPU is user+system time per request: keygate's (all threads, "
      "`/proc/PID/stat` around the run), redis-server's, and hotkey_load's own (`client`). "
      "`Redis GETs/req` is how many GETs redis-server ran per request sent (`INFO commandstats`): "
      "1 without a near cache or coalescing. `near hits` is keygate_near_cache_hits_total over "
      "hits + misses in the run (from /metrics); `coalesced` is keygate_coalesced_requests_total "
      "per 1,000 requests. `replies/wake-up` is how many replies hotkey_load got per epoll_wait "
      "that returned (how much the server batches its replies; fewer means more client CPU per "
      "request). Rounds in which other processes used more than 10% of the CPU are named "
      "in `notes`; they are still counted.")
print()
print("| target | ops/s | x direct | p50 ms | p99 ms | keygate CPU us/req | redis CPU us/req | client CPU us/req | Redis GETs/req | near hits | coalesced /1k | replies/wake-up | ops/s per round | notes |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
for t in targets:
    runs = by[t]
    ordered = [runs[k] for k in sorted(runs, key=int)]
    ops = med(num(r["ops"]) for r in ordered)
    ratio = 1.0 if t == "direct" else ratio_to_direct(t)
    hits = med(hit_ratio(r) for r in ordered)
    coal = med(per_k(r, "coalesced") for r in ordered)
    notes = []
    bad = [r["status"] for r in ordered if r["status"] != "ok"]
    if bad:
        notes.append(f"{len(bad)} run(s) {','.join(sorted(set(bad)))}")
    errors = sum(int(num(r["errors"]) or 0) for r in ordered)
    nils = sum(int(num(r["nil"]) or 0) for r in ordered)
    if errors or nils:
        notes.append(f"{errors} wrong/error replies, {nils} nil")
    shares = [num(r["hot_share"]) for r in ordered if num(r["hot_share"]) is not None]
    if shares and any(abs(s - shares[0]) > 0.01 for s in shares):
        notes.append("hot share varies: " + " ".join(f"{s:.3f}" for s in shares))
    noisy = [r["round"] for r in ordered if (num(r["other_pct"]) or 0) > 10]
    if noisy:
        notes.append(f"round(s) {','.join(noisy)} disturbed: other processes used >10% CPU")
    per = " ".join("-" if num(r["ops"]) is None else f"{num(r['ops'])/1000:.1f}k" for r in ordered)
    print(f"| {t} | {fmt(ops, ',.0f')} | {fmt(ratio, '.2f')} | {fmt(med(num(r['p50_ms']) for r in ordered), '.3f')} | "
          f"{fmt(med(num(r['p99_ms']) for r in ordered), '.3f')} | "
          f"{'' if t == 'direct' else fmt(med(num(r['proxy_cpu_us']) for r in ordered), '.2f')} | "
          f"{fmt(med(num(r['redis_cpu_us']) for r in ordered), '.2f')} | "
          f"{fmt(med(num(r['client_cpu_us']) for r in ordered), '.2f')} | "
          f"{fmt(med(num(r['redis_gets']) for r in ordered), '.3f')} | "
          f"{'-' if hits is None else format(hits * 100, '.1f') + '%'} | "
          f"{'' if t == 'direct' else fmt(coal, '.0f')} | "
          f"{fmt(med(num(r['per_wakeup']) for r in ordered), '.1f')} | {per} | {'; '.join(notes)} |")
print()

# keygate-tN (no near cache) next to keygate-tN-near, per thread count.
pairs = []
for t in targets:
    m = re.fullmatch(r"keygate-t(\d+)-near", t)
    if m:
        pairs.append((m.group(1), f"keygate-t{m.group(1)}", t))
if pairs:
    print("### The near cache on and off")
    print()
    print("`with / without` is the median of per-round ratios of the two keygates' ops/s; "
          "the goal (issue 8) is keygate with the near cache above direct Redis.")
    print()
    print("| threads | without: x direct | without: keygate CPU us/req | with: x direct | with: keygate CPU us/req | with / without | with near cache above direct |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for n, off, on in pairs:
        off_runs, on_runs = by.get(off, {}), by.get(on, {})
        wo = med(num(r["ops"]) / num(off_runs[k]["ops"]) for k, r in on_runs.items()
                 if k in off_runs and num(r["ops"]) and num(off_runs[k]["ops"]))
        r_on = ratio_to_direct(on)
        above = "-" if r_on is None else ("yes" if r_on > 1 else "**no**")
        print(f"| {n} | {fmt(ratio_to_direct(off), '.2f') if off_runs else '(not run)'} | "
              f"{fmt(med(num(r['proxy_cpu_us']) for r in off_runs.values()), '.2f') if off_runs else '-'} | "
              f"{fmt(r_on, '.2f')} | {fmt(med(num(r['proxy_cpu_us']) for r in on_runs.values()), '.2f')} | "
              f"{fmt(wo, '.2f')} | {above} ({fmt(r_on, '.2f')}x) |")
    print()
PYEOF
    exit 0
fi

# POLICIES=1: every keygate target enforces the generated registry (see bench/README.md).
POLICIES=${POLICIES:-0}
POLICIES_GENERATED=${POLICIES_GENERATED:-1000}
POLICY_TTL_DEFAULT_MS=3600000 POLICY_TTL_JITTER_MS=300000 # gen_registry.py: 1h + up to 5m
POLICY_MAX_VALUE=1024
REGISTRY=""
if [[ $POLICIES == 1 && $TARGETS == *keygate* ]]; then
    for size in $VALUE_SIZES; do ((size > POLICY_MAX_VALUE)) && POLICY_MAX_VALUE=$size; done
    REGISTRY=$BENCH_TMP/registry.yaml
    POLICY_MAX_VALUE_TEXT=${POLICY_MAX_VALUE}B
    ((POLICY_MAX_VALUE == 1024)) && POLICY_MAX_VALUE_TEXT=1KiB
    "$BENCH_PY" "$BENCH_REPO/bench/gen_registry.py" -o "$REGISTRY" --generated "$POLICIES_GENERATED" \
        --ttl-default 1h --ttl-jitter 5m --max-value-bytes "$POLICY_MAX_VALUE_TEXT" ||
        bench_die "bench/gen_registry.py failed"
    timeout 60 "$(bench_keygate_bin)" check "$REGISTRY" >"$BENCH_TMP/registry-check.txt" 2>&1 ||
        bench_die "keygate check refused the generated registry: $(grep -v '^ ' "$BENCH_TMP/registry-check.txt" | grep -i error | head -3)"
    REGISTRY_PATTERNS=$(grep -c '^  - pattern:' "$REGISTRY")
    KEYGATE_ARGS="${KEYGATE_ARGS:-} --registry $REGISTRY"
    bench_log "policies on: $REGISTRY_PATTERNS patterns in $REGISTRY (keygate check: ok)"
elif [[ $POLICIES != 0 && $POLICIES != 1 ]]; then
    bench_die "POLICIES must be 0 or 1, not '$POLICIES'"
fi

declare -A PORT PID DEAD ADMIN
if [[ $MODE == cluster ]]; then
    bench_start_cluster 3 1 # sets REDIS_PORT/REDIS_PID to the first master's
    REDIS_PIDS=("${CLUSTER_PIDS[@]}") STAT_PORTS=("${CLUSTER_MASTER_PORTS[@]}")
else
    bench_start_redis
    REDIS_PIDS=("$REDIS_PID") STAT_PORTS=("$REDIS_PORT")
fi
for t in $TARGETS; do
    case $MODE:$t in
        standalone:direct) PORT[$t]=$REDIS_PORT PID[$t]=$REDIS_PID ;;
        standalone:nutcracker)
            bench_start_nutcracker "$REDIS_PORT"
            PORT[$t]=$NC_PORT PID[$t]=$NC_PID ;;
        # keygate-t1-notrack / keygate-t2-notrack: the same with observability.keyTracking off
        # (a --config file that says only that), to price key tracking within one run.
        *:keygate-t[12]-notrack | *:keygate-t[12]-notrack@base)
            [[ $MODE == standalone ]] || bench_die "$t: MODE=standalone only"
            [[ " ${KEYGATE_ARGS:-} " != *" --config "* ]] || bench_die "$t adds its own --config; KEYGATE_ARGS has one"
            printf 'observability:\n  keyTracking: false\n' >"$BENCH_TMP/notrack.yaml"
            KEYGATE_ARGS="${KEYGATE_ARGS:-} --config $BENCH_TMP/notrack.yaml" \
                bench_start_keygate "$t" "${t:9:1}" "$REDIS_PORT"
            PORT[$t]=$KG_PORT PID[$t]=$KG_PID ADMIN[$t]=$KG_ADMIN_PORT ;;
        standalone:keygate-t*)
            bench_start_keygate "$t" "$(bench_threads_of "$t")" "$REDIS_PORT"
            PORT[$t]=$KG_PORT PID[$t]=$KG_PID ADMIN[$t]=$KG_ADMIN_PORT ;;
        # redis-benchmark --cluster connects to every master itself; PID is the first master's
        # (liveness only: no proxy CPU is reported for the baseline).
        cluster:cluster-direct) PORT[$t]=$REDIS_PORT PID[$t]=$REDIS_PID ;;
        cluster:keygate-t*)
            bench_start_keygate_cluster "$t" "$(bench_threads_of "$t")"
            PORT[$t]=$KG_PORT PID[$t]=$KG_PID ADMIN[$t]=$KG_ADMIN_PORT ;;
        *) bench_die "unknown target '$t' for MODE=$MODE" ;;
    esac
done

redis_stat() { # redis_stat FIELD -> value from INFO stats, summed over the (master) nodes
    local port v sum=0
    for port in "${STAT_PORTS[@]}"; do
        v=$(redis-cli -h 127.0.0.1 -p "$port" INFO stats | tr -d '\r' | awk -F: -v f="$1" '$1 == f {print $2}')
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
redis_ticks() { # CPU ticks of all redis-server processes (every cluster node, replicas too)
    local pid sum=0
    for pid in "${REDIS_PIDS[@]}"; do sum=$((sum + $(bench_cpu_ticks "$pid"))); done
    echo "$sum"
}
redis_vcsw() { # voluntary context switches of all redis-server processes
    local pid v sum=0
    for pid in "${REDIS_PIDS[@]}"; do
        read -r v _ < <(bench_ctxsw "$pid")
        sum=$((sum + v))
    done
    echo "$sum"
}

RESULTS=$BENCH_TMP/results.tsv
printf 'size\tpipeline\ttest\ttarget\tround\tn\trps\tavg_ms\tp50_ms\tp95_ms\tp99_ms\tmax_ms\tproxy_cpu_us\tredis_cpu_us\tclient_cpu_us\tidle_pct\tother_pct\tproxy_vcsw_k\tproxy_icsw_k\tredis_vcsw_k\tmisses\tstatus\n' >"$RESULTS"

# run_one TARGET SIZE PIPELINE TEST ROUND: one redis-benchmark run, one result line.
run_one() {
    local target=$1 size=$2 p=$3 test=$4 round=$5
    local n_var="N_P$p" n port=${PORT[$1]} pid=${PID[$1]}
    n=${!n_var:-$N_P1}
    local out=$BENCH_TMP/run.out err=$BENCH_TMP/run.err status=ok rc=0
    local c0 r0 m0 c1 r1 m1 s0 s1 b0 b1 a0 a1 pv0 pi0 rv0 pv1 pi1 rv1
    if [[ -n ${DEAD[$target]:-} ]]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\tdead\n' "$size" "$p" "$test" "$target" "$round" "$n" >>"$RESULTS"
        return
    fi
    m0=$(redis_stat keyspace_misses)
    c0=$(bench_cpu_ticks "$pid")
    r0=$(redis_ticks)
    read -r pv0 pi0 < <(bench_ctxsw "$pid")
    rv0=$(redis_vcsw)
    local extra=()
    [[ $target == cluster-direct ]] && extra+=(--cluster)
    [[ -n $CLIENT_THREADS ]] && extra+=(--threads "$CLIENT_THREADS")
    b0=$(bench_machine_busy_ticks) a0=$(bench_machine_all_ticks) s0=$(bench_self_ticks)
    # setpx: a SET that carries its own TTL (what keygate's TTL injection makes of a plain SET),
    # sent alike to every target, so Redis does the same work behind each of them.
    local what=(-t "$test") row="^\"$test\","
    if [[ $test == setpx ]]; then
        what=(SET "key:__rand_int__" "$(head -c "$size" /dev/zero | tr '\0' x)" PX "$SETPX_MS")
        row='^"SET key:__rand_int__ '
    fi
    timeout "$RUN_TIMEOUT" redis-benchmark "${extra[@]}" -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$n" \
        -d "$size" -r "$KEYSPACE" -P "$p" --csv "${what[@]}" >"$out" 2>"$err" || rc=$?
    s1=$(bench_self_ticks) b1=$(bench_machine_busy_ticks) a1=$(bench_machine_all_ticks)
    c1=$(bench_cpu_ticks "$pid")
    read -r pv1 pi1 < <(bench_ctxsw "$pid")
    rv1=$(redis_vcsw)
    r1=$(redis_ticks)
    m1=$(redis_stat keyspace_misses)
    local line
    line=$(grep -i "$row" "$out" | tail -1 | tr -d '"' || true)
    if ((rc == 124)); then
        status=timeout
    elif ((rc != 0)) || [[ -z $line ]]; then
        status="failed(rc=$rc)"
    fi
    if ! bench_alive "$pid"; then
        status=crashed DEAD[$target]=1
        bench_log "ERROR: $target (pid $pid) is gone"
    fi
    [[ $status == ok ]] || { bench_log "  $target $test P$p: $status: $(grep -v 'Could not fetch server CONFIG' "$err" | head -3 | tr '\n' ' ')"; line=""; }
    local rps avg p50 p95 p99 max
    IFS=, read -r _ rps avg _ p50 p95 p99 max <<<"${line:-x,,,,,,,}"
    local cpu_us redis_us client_us idle other ours pvk pik rvk
    pvk=$(awk -v d=$((pv1 - pv0)) -v n="$n" 'BEGIN {printf "%.2f", d * 1000 / n}')
    pik=$(awk -v d=$((pi1 - pi0)) -v n="$n" 'BEGIN {printf "%.2f", d * 1000 / n}')
    rvk=$(awk -v d=$((rv1 - rv0)) -v n="$n" 'BEGIN {printf "%.2f", d * 1000 / n}')
    cpu_us=$(awk -v d=$((c1 - c0)) -v t="$BENCH_CLK_TCK" -v n="$n" 'BEGIN {printf "%.3f", d * 1e6 / t / n}')
    redis_us=$(awk -v d=$((r1 - r0)) -v t="$BENCH_CLK_TCK" -v n="$n" 'BEGIN {printf "%.3f", d * 1e6 / t / n}')
    # redis-benchmark's CPU: this shell's waited-for children, measured around the run.
    client_us=$(awk -v d=$((s1 - s0)) -v t="$BENCH_CLK_TCK" -v n="$n" 'BEGIN {printf "%.3f", d * 1e6 / t / n}')
    idle=$(awk -v b=$((b1 - b0)) -v a=$((a1 - a0)) 'BEGIN {printf "%.1f", a ? (a - b) * 100 / a : 0}')
    # CPU used by processes not ours during the run (noise from the rest of the machine).
    ours=$(((r1 - r0) + (s1 - s0)))
    [[ $pid == "$REDIS_PID" ]] || ours=$((ours + c1 - c0))
    other=$(awk -v b=$((b1 - b0)) -v o="$ours" -v a=$((a1 - a0)) 'BEGIN {f = a ? (b - o) * 100 / a : 0; printf "%.1f", f < 0 ? 0 : f}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$size" "$p" "$test" "$target" "$round" "$n" "$rps" "$avg" "$p50" "$p95" "$p99" "$max" \
        "$cpu_us" "$redis_us" "$client_us" "$idle" "$other" "$pvk" "$pik" "$rvk" "$((m1 - m0))" "$status" >>"$RESULTS"
    bench_log "  $(printf '%-11s %-3s P%-2s %5sB: %10s req/s  p50 %6s  p99 %6s ms  cpu %s us/req  %s' \
        "$target" "$test" "$p" "$size" "${rps:--}" "${p50:--}" "${p99:--}" "$cpu_us" "$status")"
}

START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# Foreign CPU use during the run: machine busy time minus ours (servers and benchmark).
own_ticks() {
    local sum t
    sum=$(bench_self_ticks)
    for t in "${!PID[@]}"; do
        [[ $t == "$BASE" ]] || sum=$((sum + $(bench_cpu_ticks "${PID[$t]}")))
    done
    echo $((sum + $(redis_ticks)))
}
# Cluster: plain redis-benchmark (through keygate) uses keys key:NNN over all slots;
# redis-benchmark --cluster uses key:{TAG}:NNN with one TAG per master. Both are written.
CLUSTER_PREFIXES=()
if [[ $MODE == cluster ]]; then
    CLUSTER_PREFIXES=("key:")
    if [[ " $TARGETS " == *" cluster-direct "* ]]; then
        mapfile -t -O 1 CLUSTER_PREFIXES < <(bench_cluster_benchmark_prefixes)
        bench_log "redis-benchmark --cluster key prefixes: ${CLUSTER_PREFIXES[*]:1}"
    fi
fi
OWN0=$(own_ticks) BUSY0=$(bench_machine_busy_ticks) ALL0=$(bench_machine_all_ticks)
for size in $VALUE_SIZES; do
    if [[ $MODE == cluster ]]; then
        bench_log "populating $KEYSPACE keys x ${#CLUSTER_PREFIXES[@]} prefixes (${CLUSTER_PREFIXES[*]}) with $size B values"
        bench_cluster_populate "$KEYSPACE" "$size" "${CLUSTER_PREFIXES[@]}"
        bench_log "the cluster holds $(bench_cluster_dbsize) keys"
    else
        bench_log "populating $KEYSPACE keys with $size B values"
        bench_populate "$KEYSPACE" "$size"
    fi
    for ((round = 1; round <= ROUNDS; round++)); do
        bench_log "value size $size B, round $round/$ROUNDS"
        for p in $PIPELINES; do
            for test in $TESTS; do
                for t in $TARGETS; do
                    run_one "$t" "$size" "$p" "$test" "$round"
                done
            done
        done
    done
done
ELAPSED=$(($(date +%s) - START))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
OWN1=$(own_ticks) BUSY1=$(bench_machine_busy_ticks) ALL1=$(bench_machine_all_ticks)
FOREIGN=$(awk -v b=$((BUSY1 - BUSY0)) -v o=$((OWN1 - OWN0)) -v a=$((ALL1 - ALL0)) \
    'BEGIN {f = (b - o) / a * 100; if (f < 0) f = 0; printf "%.0f%%", f}')
if [[ -n ${RAW:-} ]]; then cp "$RESULTS" "$RAW"; fi

# POLICIES=1: did the policies act? TTLs of a sample of the benchmark's keys, read straight
# from Redis (the last SET run of the last round wrote them; through keygate unless TARGETS was
# reordered), one probe SET per keygate target (its TTL, and a value over the limit refused),
# and keygate's counters.
POLICY_LINES=()
if [[ -n $REGISTRY ]]; then
    cli=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")
    [[ $MODE == cluster ]] && cli+=(-c)
    last_setter=$(awk -F'\t' '$3 ~ /^set/ && $22 == "ok" {t = $4 " (" $3 ")"} END {print t}' "$RESULTS")
    sample=$("$BENCH_PY" -c 'import random, sys
n = int(sys.argv[1]); rng = random.Random(1)
for k in sorted(rng.sample(range(n), min(1000, n))): print("PTTL key:%012d" % k)' "$KEYSPACE" |
        timeout 60 "${cli[@]}" 2>/dev/null | awk -v hi=$((POLICY_TTL_DEFAULT_MS + POLICY_TTL_JITTER_MS)) \
            '{n++} $1 > 0 && $1 <= hi {ok++} $1 == -1 {none++} END {printf "%d %d %d", n, ok, none}')
    read -r s_n s_ok s_none <<<"$sample"
    POLICY_LINES+=("- policies: TTLs in Redis after the run: ${s_ok:-0} of ${s_n:-0} sampled keys \`key:...\` have a PTTL in (0, 65m] (the 1h + 5m policy), ${s_none:-0} none; the last SET run was ${last_setter:-?}'s")
    for t in $TARGETS; do
        [[ $t == keygate-t* && -z ${DEAD[$t]:-} ]] || continue
        probe_n=${t:9:1}
        [[ $t == *-notrack* ]] && probe_n=$((probe_n + 2))
        [[ $t == *@base ]] && probe_n=$((probe_n + 4))
        probe="key:$(printf '%012d' $((999999999000 + probe_n)))"
        r_set=$(timeout 10 redis-cli -h 127.0.0.1 -p "${PORT[$t]}" SET "$probe" v 2>&1 | tr -d '\r')
        r_ttl=$(timeout 10 "${cli[@]}" PTTL "$probe" 2>&1 | tr -d '\r')
        r_big=$(head -c $((POLICY_MAX_VALUE + 1)) /dev/zero | tr '\0' x |
            timeout 10 redis-cli -h 127.0.0.1 -p "${PORT[$t]}" -x SET "${probe}9" 2>&1 | tr -d '\r' | cut -d' ' -f1)
        counters=""
        if [[ -n ${ADMIN[$t]:-} ]]; then
            counters=$(bench_keygate_metrics "${ADMIN[$t]}" 2>/dev/null | awk '
                $1 == "keygate_registry_patterns" {p = $2}
                $1 == "keygate_ttl_injected_total" {i = $2}
                $1 ~ /^keygate_registry_refused_total/ && $2 > 0 {
                    why = $1; sub(/.*reason="/, "", why); sub(/".*/, "", why)
                    r = r (r ? ", " : "") why " " $2 }
                END {printf "%.0f patterns in force, %.0f TTLs injected, refused: %s", p, i, r ? r : "none"}')
        fi
        POLICY_LINES+=("- policies, $t: probe \`SET $probe v\` -> $r_set, PTTL $r_ttl ms (policy: $POLICY_TTL_DEFAULT_MS..$((POLICY_TTL_DEFAULT_MS + POLICY_TTL_JITTER_MS))); a $((POLICY_MAX_VALUE + 1))-byte value -> ${r_big:-?}; $counters")
    done
fi

if [[ $MODE == cluster ]]; then
    echo "## redis-benchmark: Redis Cluster direct vs keygate in cluster mode"
else
    echo "## redis-benchmark: direct Redis vs nutcracker vs keygate"
fi
echo
bench_machine_info
echo "- load: redis-benchmark -c $CLIENTS -r $KEYSPACE --csv${CLIENT_THREADS:+ --threads $CLIENT_THREADS}, -t {$(xargs <<<"$TESTS" | tr ' ' ',')}, -P {$(xargs <<<"$PIPELINES" | tr ' ' ',')}, $(for p in $PIPELINES; do v="N_P$p"; printf -- '-n %s at P%s, ' "${!v:-$N_P1}" "$p"; done)$ROUNDS interleaved rounds, ${ELAPSED}s in all"
for t in $TARGETS; do
    if [[ $t == keygate-t* ]]; then echo "- $t: \`$(sed "s|$BENCH_REPO/||; s|$BENCH_TMP/|\$TMP/|g; s|127.0.0.1:[0-9]*|127.0.0.1:PORT|g" "$BENCH_TMP/$t/cmdline")\`"; fi
done
if [[ -n $REGISTRY ]]; then
    echo "- policies on (POLICIES=1): \`--registry \$TMP/registry.yaml\` from \`bench/gen_registry.py --generated $POLICIES_GENERATED\`: $REGISTRY_PATTERNS patterns (config/examples/cpq-registry.yaml's, $POLICIES_GENERATED generated, \`key:<n:int>\` with \`ttl: {default: 1h, jitter: 5m}\`, \`maxValueBytes: $POLICY_MAX_VALUE_TEXT\`), accepted by \`keygate check\`; every SET through keygate gets \`PX\` injected"
    printf '%s\n' "${POLICY_LINES[@]}"
fi
echo "- other processes on the machine used $FOREIGN of its CPU time during the run (load average at start: $LOAD_START, at end: $LOAD_END; the benchmark itself keeps about 2 CPUs busy)"
if [[ $MODE == cluster ]]; then
    echo "- cluster: ${#CLUSTER_MASTER_PORTS[@]} masters + $((${#CLUSTER_PORTS[@]} - ${#CLUSTER_MASTER_PORTS[@]})) replicas (redis-server, no persistence, cluster-node-timeout 5000), created with \`redis-cli --cluster create --cluster-replicas 1\`; all processes on the same $(nproc) CPUs, unpinned"
    echo "- cluster-direct: \`redis-benchmark --cluster\` (clients spread over the masters; each master's requests under one hash tag: keys ${CLUSTER_PREFIXES[*]:1}...); keygate targets: plain redis-benchmark, keys key:NNN over all slots; both key spaces written before the first round; redis CPU and context switches count all $((${#CLUSTER_PORTS[@]})) nodes, replicas included"
else
    echo "- nutcracker: one pool, server_connections 1, preconnect, single-threaded; all processes on the same $(nproc) CPUs, unpinned"
fi
echo

"$BENCH_PY" - "$RESULTS" "$MODE" "$BASE" <<'EOF'
import csv, statistics, sys

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
mode, base = sys.argv[2], sys.argv[3]
def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None
def fmt(v, spec):
    return "-" if v is None else format(v, spec)

targets = list(dict.fromkeys(r["target"] for r in rows))
groups = list(dict.fromkeys((r["size"], r["pipeline"], r["test"]) for r in rows))
by = {}
for r in rows:
    by.setdefault((r["size"], r["pipeline"], r["test"], r["target"]), {})[r["round"]] = r

if mode == "cluster":
    print("Medians over rounds. `x cluster-direct` is the median of per-round ratios (target req/s "
          "over cluster-direct req/s measured in the same round). `+p99` is the median p99 added "
          "over cluster-direct in the same round. CPU is user+system time per request of the proxy "
          "(all threads), of all redis-server nodes together (replicas included) and of "
          "redis-benchmark (`client`); `CPU idle` is the share of the machine's CPU time left idle "
          "during the run. Rounds in which other processes used more than 10% of the CPU are named "
          "in `notes`; they are still counted.")
else:
    print("Medians over rounds. `x direct` is the median of per-round ratios (target req/s over "
          "direct req/s measured in the same round); so is `x nutcracker` below. `+p99` is the median "
          "p99 added over direct in the same round. CPU is user+system time per request of the proxy "
          "(all threads), of redis-server and of redis-benchmark (`client`); `CPU idle` is the share "
          "of the machine's CPU time left idle during the run. Rounds in which other processes "
          "used more than 10% of the CPU are named in `notes`; they are still counted.")
print()
checks = []
cluster_checks = []
for size in dict.fromkeys(g[0] for g in groups):
    print(f"### {size} B values")
    print()
    print(f"| test | P | target | req/s | x {base} | p50 ms | p99 ms | +p99 ms | proxy CPU us/req | redis CPU us/req | client CPU us/req | CPU idle % | req/s per round | notes |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for (s, p, test) in groups:
        if s != size:
            continue
        direct = by.get((s, p, test, base), {})
        for t in targets:
            runs = by.get((s, p, test, t), {})
            ordered = [runs[k] for k in sorted(runs, key=int)]
            rps = med(num(r["rps"]) for r in ordered)
            ratios = []
            for k, r in runs.items():
                d = direct.get(k)
                if d and num(d["rps"]) and num(r["rps"]):
                    ratios.append(num(r["rps"]) / num(d["rps"]))
            ratio = med(ratios)
            p50 = med(num(r["p50_ms"]) for r in ordered)
            p99 = med(num(r["p99_ms"]) for r in ordered)
            dp99 = med(num(r["p99_ms"]) - num(direct[k]["p99_ms"]) for k, r in runs.items()
                       if k in direct and num(r["p99_ms"]) is not None and num(direct[k]["p99_ms"]) is not None)
            cpu = None if t == base else med(num(r["proxy_cpu_us"]) for r in ordered)
            rcpu = med(num(r["redis_cpu_us"]) for r in ordered)
            ccpu = med(num(r["client_cpu_us"]) for r in ordered)
            idle = med(num(r["idle_pct"]) for r in ordered)
            per = " ".join("-" if num(r["rps"]) is None else f"{num(r['rps'])/1000:.0f}k" for r in ordered)
            notes = []
            bad = [r["status"] for r in ordered if r["status"] != "ok"]
            if bad:
                notes.append(f"{len(bad)} run(s) {','.join(sorted(set(bad)))}")
            misses = sum(int(r["misses"] or 0) for r in ordered)
            noisy = [r["round"] for r in ordered if (num(r["other_pct"]) or 0) > 10]
            if noisy:
                notes.append(f"round(s) {','.join(noisy)} disturbed: other processes used >10% CPU")
            if test.lower() == "get" and misses:
                notes.append(f"{misses} GET misses")
            print(f"| {test.upper()} | {p} | {t} | {fmt(rps, ',.0f')} | "
                  f"{'1.00' if t == base else fmt(ratio, '.2f')} | {fmt(p50, '.3f')} | {fmt(p99, '.3f')} | "
                  f"{'' if t == base else fmt(dp99, '+.3f')} | {'' if t == base else fmt(cpu, '.2f')} | "
                  f"{fmt(rcpu, '.2f')} | {fmt(ccpu, '.2f')} | {fmt(idle, '.0f')} | {per} | {'; '.join(notes)} |")
            if mode == "cluster" and t.startswith("keygate"):
                cluster_checks.append((f"{test.upper()} P{p} {s} B", t, p, ratio, len(ratios)))
            if mode == "standalone" and t == "keygate-t1":
                nc = by.get((s, p, test, "nutcracker"), {})
                nc_ratio = med(num(r["rps"]) / num(nc[k]["rps"]) for k, r in runs.items()
                               if k in nc and num(r["rps"]) and num(nc[k]["rps"]))
                nc_dp99 = med(num(r["p99_ms"]) - num(direct[k]["p99_ms"]) for k, r in nc.items()
                              if k in direct and num(r["p99_ms"]) is not None and num(direct[k]["p99_ms"]) is not None)
                goal = 0.85 if p == "1" else 0.8
                checks.append((f"{test.upper()} P{p} {s} B", nc_ratio, ratio, goal, dp99, nc_dp99))
    print()

print("### Scheduling: context switches per 1,000 requests (medians)")
print()
print("A voluntary switch is a process going to sleep to wait for I/O: fewer per request means "
      "bigger batches per read/write. Involuntary ones are preemptions (more runnable threads than CPUs).")
print()
print("| value size | test | P | target | proxy voluntary | proxy involuntary | redis-server voluntary |"
      if mode == "standalone" else
      "| value size | test | P | target | proxy voluntary | proxy involuntary | redis-server voluntary (all nodes) |")
print("|---:|---|---:|---|---:|---:|---:|")
for (s, p, test) in groups:
    for t in targets:
        ordered = list(by.get((s, p, test, t), {}).values())
        pv = None if t == base else med(num(r["proxy_vcsw_k"]) for r in ordered)
        pi = None if t == base else med(num(r["proxy_icsw_k"]) for r in ordered)
        rv = med(num(r["redis_vcsw_k"]) for r in ordered)
        print(f"| {s} | {test.upper()} | {p} | {t} | {'' if t == base else fmt(pv, '.1f')} | "
              f"{'' if t == base else fmt(pi, '.1f')} | {fmt(rv, '.1f')} |")
print()

if checks:
    print("### Targets for keygate --threads 1 (issue 2, SPEC section 9)")
    print()
    print("| row | above nutcracker | >= goal x direct | added p99 below nutcracker's |")
    print("|---|---|---|---|")
    def yn(ok):
        return "-" if ok is None else ("yes" if ok else "**no**")
    for name, nc_ratio, ratio, goal, dp99, nc_dp99 in checks:
        above = None if nc_ratio is None else nc_ratio > 1
        detail = "" if nc_ratio is None else f" ({nc_ratio:.2f}x nutcracker)"
        meets = None if ratio is None else ratio >= goal
        lat = None if dp99 is None or nc_dp99 is None else dp99 < nc_dp99
        print(f"| {name} | {yn(above)}{detail} | {yn(meets)} ({fmt(ratio, '.2f')} vs {goal}) | "
              f"{yn(lat)} ({fmt(dp99, '+.3f')} vs {fmt(nc_dp99, '+.3f')} ms) |")
    print()

# Every keygate target against nutcracker (e.g. with and without key tracking, side by side).
kg_targets = [t for t in targets if t.startswith("keygate")]
if mode == "standalone" and "nutcracker" in targets and len(kg_targets) > 1:
    print("### keygate targets x nutcracker (medians of per-round ratios)")
    print()
    print("| row | " + " | ".join(kg_targets) + " |")
    print("|---|" + "---:|" * len(kg_targets))
    for (s, p, test) in groups:
        nc = by.get((s, p, test, "nutcracker"), {})
        cells = []
        for t in kg_targets:
            runs = by.get((s, p, test, t), {})
            r = med(num(x["rps"]) / num(nc[k]["rps"]) for k, x in runs.items()
                    if k in nc and num(x["rps"]) and num(nc[k]["rps"]))
            cpu = med(num(x["proxy_cpu_us"]) for x in runs.values())
            cells.append(f"{fmt(r, '.2f')} ({fmt(cpu, '.2f')} us/req)")
        print(f"| {test.upper()} P{p} {s} B | " + " | ".join(cells) + " |")
    print()

if cluster_checks:
    print("### Goal: keygate at least 0.8x cluster-direct at pipeline 16 (issue 3)")
    print()
    print("| row | target | x cluster-direct | rounds | goal met |")
    print("|---|---|---:|---:|---|")
    for name, t, p, ratio, nrounds in cluster_checks:
        if p == "16":
            met = "-" if ratio is None else ("yes" if ratio >= 0.8 else "**no**")
        else:
            met = "(no goal at P" + p + ")"
        print(f"| {name} | {t} | {fmt(ratio, '.3f')} | {nrounds} | {met} |")
    print()
EOF
