#!/usr/bin/env bash
# benches/compare.sh: run the same workloads against real etcd and against Conclave, one server
# at a time (for every workload: a fresh etcd, then a fresh Conclave, same flags, free loopback
# ports, empty data dirs), and print a table with both figures and the ratio Conclave/etcd.
#
# Not part of the test suite: run it by hand (see benches/README.md). About 1.5 minutes on a
# 2-core machine with the defaults (each tool run is capped by RUN_TIMEOUT). It stops every process it starts, also on Ctrl-C.
#
#   benches/compare.sh                 # builds target/release/{conclave,conclave-bench} if missing
#   OPS=5000 benches/compare.sh        # quicker, noisier
#
# Environment knobs (defaults in brackets):
#   ETCD_BIN [/usr/bin/etcd]  CONCLAVE_BIN [target/release/conclave]
#   BENCH_BIN [target/release/conclave-bench]
#   OPS [20000] ops per put/range/txn run    SEQ_S [15] time cap of the 1-client put run
#   RANGE_KEYS [10000] keys prefilled for the range runs    TXN_KEYS [1000] keys for txn
#   WATCH_PUTS [1000] puts in the watch run (at 100/s)      BIG_KEYS [100000] keys for RSS/disk
#   STARTUP_RUNS [5]   RUN_TIMEOUT [300] s per bench invocation
#   BENCH_TMPDIR [$TMPDIR or /tmp] where data dirs go (same filesystem for both servers)
#   OUT [unset] append every raw JSON result line (tagged with the server) to this file
#   KEEP [unset] keep the work dir (server logs) instead of deleting it
#   ONLY [unset] space-separated subset of: put100 put1 range_l range_s txn watch startup mem

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
CONCLAVE_BIN=${CONCLAVE_BIN:-$ROOT/target/release/conclave}
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/conclave-bench}
OPS=${OPS:-20000}
SEQ_S=${SEQ_S:-15}
RANGE_KEYS=${RANGE_KEYS:-10000}
TXN_KEYS=${TXN_KEYS:-1000}
WATCH_PUTS=${WATCH_PUTS:-1000}
BIG_KEYS=${BIG_KEYS:-100000}
STARTUP_RUNS=${STARTUP_RUNS:-5}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
OUT=${OUT:-}
ONLY=${ONLY:-put100 put1 range_l range_s txn watch startup mem}
SERVERS=(etcd conclave)

if [[ ! -x $CONCLAVE_BIN || ! -x $BENCH_BIN ]]; then
    echo "compare: building release binaries (cargo build --release --bin conclave --bin conclave-bench)" >&2
    (cd "$ROOT" && cargo build --release --bin conclave --bin conclave-bench) || exit 1
fi
for b in "$ETCD_BIN" "$CONCLAVE_BIN" "$BENCH_BIN"; do
    [[ -x $b ]] || { echo "compare: $b is missing or not executable" >&2; exit 1; }
done

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/conclave-compare.XXXXXX") || exit 1
SERVER_PID=""
SERVER_DATA=""
SERVER_EP=""
SERVER_LOG=""
BENCH_PID=""
SEQ=0
LAST_JSON=""
declare -A RES=()
WARNINGS=()

# ---------------------------------------------------------------------------------------------
# process handling

alive() { # pid: true while the process exists and is not a zombie
    local st
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [[ -n $st && $st != Z ]]
}

stop_pid() { # pid: SIGTERM, SIGKILL after 10 s, then reap
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        echo "compare: pid $pid ignored SIGTERM for 10 s, killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    [[ -n ${KEEP:-} || -z $SERVER_DATA ]] || rm -rf "$SERVER_DATA"
}

cleanup() {
    trap - EXIT INT TERM HUP
    if [[ -n $BENCH_PID ]]; then stop_pid "$BENCH_PID"; BENCH_PID=""; fi
    stop_server
    if [[ -n ${KEEP:-} ]]; then
        echo "compare: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'echo "compare: interrupted" >&2; exit 130' INT TERM HUP

server_bin() {
    case $1 in
    etcd) echo "$ETCD_BIN" ;;
    conclave) echo "$CONCLAVE_BIN" ;;
    esac
}

# The exact same flags for both servers ({PORT} etc. are for `conclave-bench startup`).
server_args() { # client-port peer-port data-dir -> ARGS
    ARGS=(--name default --data-dir "$3"
        --listen-client-urls "http://127.0.0.1:$1" --advertise-client-urls "http://127.0.0.1:$1"
        --listen-peer-urls "http://127.0.0.1:$2" --initial-advertise-peer-urls "http://127.0.0.1:$2"
        --initial-cluster "default=http://127.0.0.1:$2")
}

start_server() { # name
    local ports p q
    ports=$("$BENCH_BIN" free-ports --count 2) || return 1
    read -r p q <<<"$ports"
    SEQ=$((SEQ + 1))
    SERVER_DATA=$WORK/$1-$SEQ.data
    SERVER_LOG=$WORK/$1-$SEQ.log
    server_args "$p" "$q" "$SERVER_DATA"
    "$(server_bin "$1")" "${ARGS[@]}" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    SERVER_EP=127.0.0.1:$p
    if ! "$BENCH_BIN" --endpoints "$SERVER_EP" ping --wait-s 30 >/dev/null; then
        echo "compare: $1 did not start serving; log tail:" >&2
        tail -n 20 "$SERVER_LOG" >&2
        WARNINGS+=("$1 failed to start (run $SEQ)")
        stop_server
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# running the load generator

jget() { # json key
    sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1" | tr -d '"'
}

bench() { # server-label bench-args... : runs conclave-bench, sets LAST_JSON
    local who=$1 out rc line
    shift
    out=$WORK/bench.out
    LAST_JSON=""
    timeout "$RUN_TIMEOUT" "$BENCH_BIN" "$@" >"$out" 2>&1 &
    BENCH_PID=$!
    wait "$BENCH_PID"
    rc=$?
    BENCH_PID=""
    while IFS= read -r line; do
        if [[ $line == \{* ]]; then
            LAST_JSON=$line
        else
            printf '  %-8s %s\n' "$who" "$line" >&2
        fi
    done <"$out"
    if [[ -n $OUT && -n $LAST_JSON ]]; then
        printf '{"server":"%s",%s\n' "$who" "${LAST_JSON#\{}" >>"$OUT"
    fi
    if [[ $rc -ne 0 || -z $LAST_JSON ]]; then
        WARNINGS+=("$who: conclave-bench $* exited $rc")
        return 1
    fi
    local errs
    errs=$(jget "$LAST_JSON" errors)
    if [[ -n $errs && $errs != 0 ]]; then
        WARNINGS+=("$who: $(jget "$LAST_JSON" workload) had $errs errors")
    fi
    return 0
}

res() { # metric server value
    RES[$1|$2]=$3
}

# Load workloads against a fresh server: name, metric prefix, bench args...
load_run() {
    local s=$1 m=$2
    shift 2
    start_server "$s" || return 1
    if bench "$s" --endpoints "$SERVER_EP" "$@"; then
        res "$m.tput" "$s" "$(jget "$LAST_JSON" ops_per_s)"
        res "$m.p50" "$s" "$(jget "$LAST_JSON" p50_ms)"
        res "$m.p99" "$s" "$(jget "$LAST_JSON" p99_ms)"
    fi
    stop_server
}

wl_put100() { load_run "$1" put100 --clients 100 --conns 10 --total "$OPS" put; }
wl_put1() { load_run "$1" put1 --clients 1 --conns 1 --total "$OPS" --duration-s "$SEQ_S" put; }
wl_range_l() { load_run "$1" range_l --clients 100 --conns 10 --total "$OPS" range --consistency l --prefill "$RANGE_KEYS"; }
wl_range_s() { load_run "$1" range_s --clients 100 --conns 10 --total "$OPS" range --consistency s --prefill "$RANGE_KEYS"; }
wl_txn() { load_run "$1" txn --clients 100 --conns 10 --total "$OPS" --key-space "$TXN_KEYS" txn --prefill "$TXN_KEYS"; }
wl_watch() {
    load_run "$1" watch --conns 10 --total "$WATCH_PUTS" watch-latency --watchers 100 --streams 10 --rate 100
}

wl_startup() {
    local bin
    bin=$(server_bin "$1")
    server_args '{PORT}' '{PEER_PORT}' '{DATA}'
    # TMPDIR: the tool's temp data dirs go under $WORK (removed by cleanup whatever happens).
    if TMPDIR=$WORK bench "$1" startup --runs "$STARTUP_RUNS" --bin "$bin" -- "${ARGS[@]}"; then
        res startup.ms "$1" "$(jget "$LAST_JSON" median_ms)"
    fi
}

wl_mem() {
    local s=$1 kb
    start_server "$s" || return 1
    sleep 2
    if bench "$s" rss --pid "$SERVER_PID"; then
        res rss.idle "$s" "$(jget "$LAST_JSON" rss_kb)"
    fi
    if bench "$s" --endpoints "$SERVER_EP" --clients 100 --conns 10 --total "$BIG_KEYS" \
        --key-space "$BIG_KEYS" --val-size 256 put --sequential; then
        res big.tput "$s" "$(jget "$LAST_JSON" ops_per_s)"
        sleep 2
        if bench "$s" rss --pid "$SERVER_PID"; then
            res rss.big "$s" "$(jget "$LAST_JSON" rss_kb)"
        fi
        kb=$(du -sk "$SERVER_DATA" | cut -f1)
        printf '  %-8s du -sk data dir: %s kB\n' "$s" "$kb" >&2
        res disk.big "$s" "$kb"
    fi
    stop_server
}

# ---------------------------------------------------------------------------------------------
# main

echo "compare: etcd $("$ETCD_BIN" --version 2>/dev/null | sed -n 's/^etcd Version: //p') vs conclave" \
    "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')," \
    "$(nproc) cores, data in $WORK" >&2
echo "compare: OPS=$OPS SEQ_S=$SEQ_S RANGE_KEYS=$RANGE_KEYS TXN_KEYS=$TXN_KEYS WATCH_PUTS=$WATCH_PUTS" \
    "BIG_KEYS=$BIG_KEYS STARTUP_RUNS=$STARTUP_RUNS" >&2

for w in $ONLY; do
    if ! declare -F "wl_$w" >/dev/null; then
        echo "compare: unknown workload '$w' in ONLY" >&2
        exit 2
    fi
    echo "== $w" >&2
    for s in "${SERVERS[@]}"; do
        "wl_$w" "$s"
    done
done

# ---------------------------------------------------------------------------------------------
# table

# metric|label|unit|better ; unit: ops (ops/s), ms, mb (value in kB shown as MiB)
ROWS=(
    "put100.tput|put, 100 clients / 10 conns|ops|higher"
    "put100.p99|put, 100 clients / 10 conns, p99|ms|lower"
    "put1.tput|put, 1 client / 1 conn|ops|higher"
    "put1.p50|put, 1 client / 1 conn, p50|ms|lower"
    "range_l.tput|range linearizable, 100 clients|ops|higher"
    "range_l.p99|range linearizable, 100 clients, p99|ms|lower"
    "range_s.tput|range serializable, 100 clients|ops|higher"
    "range_s.p99|range serializable, 100 clients, p99|ms|lower"
    "txn.tput|txn (cmp mod>0, put), 100 clients|ops|higher"
    "txn.p99|txn, 100 clients, p99|ms|lower"
    "watch.p50|watch put->event p50, 100 watchers, 100 puts/s|ms|lower"
    "watch.p99|watch put->event p99, 100 watchers, 100 puts/s|ms|lower"
    "startup.ms|start to serving, empty dir (median of $STARTUP_RUNS)|ms|lower"
    "rss.idle|idle RSS|mb|lower"
    "big.tput|put $BIG_KEYS keys x 256 B, 100 clients|ops|higher"
    "rss.big|RSS after $BIG_KEYS keys x 256 B|mb|lower"
    "disk.big|data dir (du -sk) after $BIG_KEYS keys x 256 B|mb|lower"
)

fmt() { # unit value
    [[ -n $2 ]] || { echo "-"; return; }
    case $1 in
    ops) awk -v v="$2" 'BEGIN { printf "%.0f/s", v }' ;;
    ms) awk -v v="$2" 'BEGIN { printf "%.2f ms", v }' ;;
    mb) awk -v v="$2" 'BEGIN { printf "%.1f MiB", v / 1024 }' ;;
    esac
}

ratio() { # conclave etcd
    [[ -n $1 && -n $2 ]] || { echo "-"; return; }
    awk -v c="$1" -v e="$2" 'BEGIN { if (e + 0 == 0) print "n/a"; else printf "%.2f", c / e }'
}

echo
printf '%-54s %14s %14s %9s  %s\n' "measurement" "etcd" "conclave" "c/etcd" "better"
printf '%-54s %14s %14s %9s  %s\n' "-----------" "----" "--------" "------" "------"
for row in "${ROWS[@]}"; do
    IFS='|' read -r m label unit better <<<"$row"
    e=${RES[$m|etcd]:-}
    c=${RES[$m|conclave]:-}
    [[ -n $e || -n $c ]] || continue
    printf '%-54s %14s %14s %9s  %s\n' "$label" "$(fmt "$unit" "$e")" "$(fmt "$unit" "$c")" \
        "$(ratio "$c" "$e")" "$better"
done
echo "(ratio = conclave / etcd; throughput: higher is better, latency/memory/disk: lower is better)"
if ((${#WARNINGS[@]})); then
    echo
    echo "warnings:"
    printf '  %s\n' "${WARNINGS[@]}"
fi
echo "compare: done in ${SECONDS}s" >&2
