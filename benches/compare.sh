#!/usr/bin/env bash
# benches/compare.sh: run the same workloads against real etcd and against Conclave, one server
# at a time (for every workload: a fresh etcd, then a fresh Conclave, same flags, free loopback
# ports, empty data dirs), and print a table with both figures and the ratio Conclave/etcd.
# Its ZooKeeper part runs the ZooKeeper workloads against Apache ZooKeeper (Debian's 3.8.0,
# standalone) and Conclave's ZooKeeper port: both up side by side after a warm-up, runs
# alternating between them, and a second table prints the ratios Conclave/ZooKeeper.
#
# Not part of the test suite: run it by hand (see benches/README.md). About 2.5 minutes for the
# etcd part and 8 for the ZooKeeper part on a 2-core machine with the defaults (each tool run is
# capped by RUN_TIMEOUT). It stops every process it starts, also on Ctrl-C.
#
#   benches/compare.sh                 # builds target/release/{conclave,conclave-bench} if missing
#   OPS=5000 benches/compare.sh        # quicker, noisier
#   ONLY=zk benches/compare.sh         # only the ZooKeeper part (ONLY=etcd: only the etcd part)
#
# Environment knobs (defaults in brackets):
#   ETCD_BIN [/usr/bin/etcd]  CONCLAVE_BIN [target/release/conclave]
#   BENCH_BIN [target/release/conclave-bench]
#   OPS [20000] ops per put/range/txn run    SEQ_S [15] time cap of the 1-client put run
#   ETCD_REPEAT [3] runs of put100/range_l/range_s/txn per server, alternating which server goes
#     first (a fresh server each run); each server's best run counts
#   RANGE_KEYS [10000] keys prefilled for the range runs    TXN_KEYS [1000] keys for txn
#   WATCH_PUTS [1000] puts in the watch run (at 100/s)      BIG_KEYS [100000] keys for RSS/disk
#   STARTUP_RUNS [5]   RUN_TIMEOUT [300] s per bench invocation
#   BENCH_TMPDIR [$TMPDIR or /tmp] where data dirs go (same filesystem for both servers)
#   OUT [unset] append every raw JSON result line (tagged with the server) to this file
#   KEEP [unset] keep the work dir (server logs) instead of deleting it
#   ONLY [etcd zk] parts to run: etcd (= put100 put1 range_l range_s txn watch startup mem), zk,
#     or any of those etcd workloads by name
# ZooKeeper part:
#   JAVA_BIN [/usr/bin/java]  ZK_CP [/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar]
#   ZK_JAVA_OPTS [empty, as Debian's /etc/zookeeper/conf_example/environment]
#   ZK_S [4] seconds per run: every run but delete lasts this long on both servers
#   ZK_OPS [60000] nodes each delete run may delete (prefilled; it also ends at ZK_S)
#   ZK_KEYS [10000] prefilled nodes for set/get/exists
#     (Why equal time rather than equal ops: with 60 000 ops per run, Conclave's runs at 64
#     clients lasted 0.3 s against ZooKeeper's 0.6 s, and a 0.3 s run counts the ramp-up of 64
#     sessions and cold caches: Conclave's get at 64 clients measured 172-207k/s in such runs
#     and 220-223k/s in 3 s runs on the same server, ZooKeeper 86-96k against 94-97k.)
#   ZK_WORKLOADS [create set get delete exists get_children lock]  ZK_WARM_S [3] warm-up seconds
#   ZK_REPEAT [2] runs of each configuration per server (the best one counts)

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
CONCLAVE_BIN=${CONCLAVE_BIN:-$ROOT/target/release/conclave}
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/conclave-bench}
OPS=${OPS:-20000}
ETCD_REPEAT=${ETCD_REPEAT:-3}
SEQ_S=${SEQ_S:-15}
RANGE_KEYS=${RANGE_KEYS:-10000}
TXN_KEYS=${TXN_KEYS:-1000}
WATCH_PUTS=${WATCH_PUTS:-1000}
BIG_KEYS=${BIG_KEYS:-100000}
STARTUP_RUNS=${STARTUP_RUNS:-5}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
OUT=${OUT:-}
ONLY=${ONLY:-etcd zk}
SERVERS=(etcd conclave)
ETCD_WORKLOADS="put100 put1 range_l range_s txn watch startup mem"
# ZooKeeper part. The launcher's inputs are exported: `conclave-bench startup` runs it too.
export JAVA_BIN=${JAVA_BIN:-/usr/bin/java}
# zookeeper.jar's manifest Class-Path names its dependencies in /usr/share/java (what Debian's
# zkEnv.sh relies on); slf4j-simple is the logger binding (to stderr, the server log).
export ZK_CP=${ZK_CP:-/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar}
export ZK_JAVA_OPTS=${ZK_JAVA_OPTS:-}
ZK_OPS=${ZK_OPS:-60000}
ZK_S=${ZK_S:-4}
ZK_KEYS=${ZK_KEYS:-10000}
ZK_WARM_S=${ZK_WARM_S:-3}
ZK_REPEAT=${ZK_REPEAT:-2}
ZK_WORKLOADS=${ZK_WORKLOADS:-create set get delete exists get_children lock}
ZK_SERVERS=(zookeeper conclave)

# ONLY -> the etcd workloads to run and whether to run the ZooKeeper part.
RUN=()
RUN_ZK=""
for w in $ONLY; do
    case $w in
    etcd) read -ra ws <<<"$ETCD_WORKLOADS"; RUN+=("${ws[@]}") ;;
    zk) RUN_ZK=1 ;;
    *)
        if [[ " $ETCD_WORKLOADS " != *" $w "* ]]; then
            echo "compare: unknown workload '$w' in ONLY (etcd, zk, or one of: $ETCD_WORKLOADS)" >&2
            exit 2
        fi
        RUN+=("$w")
        ;;
    esac
done
for w in $ZK_WORKLOADS; do
    case $w in
    create | set | get | delete | exists | get_children | lock) ;;
    *) echo "compare: unknown workload '$w' in ZK_WORKLOADS" >&2; exit 2 ;;
    esac
done

if [[ ! -x $CONCLAVE_BIN || ! -x $BENCH_BIN ]]; then
    echo "compare: building release binaries (cargo build --release --bin conclave --bin conclave-bench)" >&2
    (cd "$ROOT" && cargo build --release --bin conclave --bin conclave-bench) || exit 1
fi
NEED=("$CONCLAVE_BIN" "$BENCH_BIN")
if ((${#RUN[@]})); then NEED+=("$ETCD_BIN"); fi
if [[ -n $RUN_ZK ]]; then NEED+=("$JAVA_BIN"); fi
for b in "${NEED[@]}"; do
    [[ -x $b ]] || { echo "compare: $b is missing or not executable" >&2; exit 1; }
done
if [[ -n $RUN_ZK && ! -r ${ZK_CP%%:*} ]]; then
    echo "compare: ${ZK_CP%%:*} is missing (Debian package zookeeper)" >&2
    exit 1
fi

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
# The ZooKeeper part's servers (both up at once): name -> pid, host:port, data dir, log.
declare -A ZPID=() ZEP=() ZDATA=() ZLOG=()

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
    for s in "${!ZPID[@]}"; do zk_stop "$s"; done
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
    local ports p q z
    ports=$("$BENCH_BIN" free-ports --count 3) || return 1
    read -r p q z <<<"$ports"
    SEQ=$((SEQ + 1))
    SERVER_DATA=$WORK/$1-$SEQ.data
    SERVER_LOG=$WORK/$1-$SEQ.log
    server_args "$p" "$q" "$SERVER_DATA"
    # Conclave also serves ZooKeeper, on 127.0.0.1:2181 by default, and does not start if that
    # port is taken: give it a free one through its environment (the flags stay etcd's).
    CONCLAVE_ZK_LISTEN=127.0.0.1:$z "$(server_bin "$1")" "${ARGS[@]}" >"$SERVER_LOG" 2>&1 &
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

# Load workloads against a fresh server: name, metric prefix, bench args... A server's best
# run (highest ops/s, with that run's latencies) is kept when a workload runs more than once.
load_run() {
    local s=$1 m=$2 t
    shift 2
    start_server "$s" || return 1
    if bench "$s" --endpoints "$SERVER_EP" "$@"; then
        t=$(jget "$LAST_JSON" ops_per_s)
        if [[ -z ${RES[$m.tput|$s]:-} ]] || awk -v a="$t" -v b="${RES[$m.tput|$s]}" 'BEGIN { exit !(a > b) }'; then
            res "$m.tput" "$s" "$t"
            res "$m.p50" "$s" "$(jget "$LAST_JSON" p50_ms)"
            res "$m.p99" "$s" "$(jget "$LAST_JSON" p99_ms)"
        fi
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
    # CONCLAVE_ZK_LISTEN: as in start_server (the runs are one after the other: one port will do).
    if TMPDIR=$WORK CONCLAVE_ZK_LISTEN=127.0.0.1:$("$BENCH_BIN" free-ports --count 1) \
        bench "$1" startup --runs "$STARTUP_RUNS" --bin "$bin" -- "${ARGS[@]}"; then
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
# ZooKeeper part

# The ZooKeeper launcher: `bash -c "$ZK_LAUNCH" zk PORT DATADIR` writes DATADIR.cfg and execs
# the JVM (so the pid is the JVM's): standalone, Debian's ZooKeeper jars, not its service.
export ZK_LAUNCH='mkdir -p "$2" && cat >"$2.cfg" <<CFG || exit 1
tickTime=2000
dataDir=$2
clientPort=$1
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=*
CFG
exec "$JAVA_BIN" $ZK_JAVA_OPTS -cp "$ZK_CP" org.apache.zookeeper.server.ZooKeeperServerMain "$2.cfg"'

ruok() { # port: true once the server answers the four-letter word ruok with imok
    local r
    r=$( { exec 3<>"/dev/tcp/127.0.0.1/$1" && printf ruok >&3 && timeout 2 cat <&3; } 2>/dev/null)
    [[ $r == imok ]]
}

# Starts ZooKeeper, or Conclave with the etcd part's flags plus --zk-listen, and waits for
# ruok -> imok; sets ZPID, ZEP (the ZooKeeper host:port), ZDATA, ZLOG of the name.
zk_start() { # name
    local ports p q z i
    ports=$("$BENCH_BIN" free-ports --count 3) || return 1
    read -r p q z <<<"$ports"
    SEQ=$((SEQ + 1))
    ZDATA[$1]=$WORK/$1-$SEQ.data
    ZLOG[$1]=$WORK/$1-$SEQ.log
    case $1 in
    zookeeper) bash -c "$ZK_LAUNCH" zk "$z" "${ZDATA[$1]}" >"${ZLOG[$1]}" 2>&1 & ;;
    conclave)
        server_args "$p" "$q" "${ZDATA[$1]}"
        # maxClientCnxns 0 as ZooKeeper's zoo.cfg above: 64 clients come from one address
        "$CONCLAVE_BIN" "${ARGS[@]}" --zk-listen "127.0.0.1:$z" --maxClientCnxns 0 >"${ZLOG[$1]}" 2>&1 &
        ;;
    esac
    ZPID[$1]=$!
    ZEP[$1]=127.0.0.1:$z
    for ((i = 0; i < 600; i++)); do
        ruok "$z" && return 0
        alive "${ZPID[$1]}" || break
        sleep 0.05
    done
    echo "compare: $1 did not answer ruok; log tail:" >&2
    tail -n 20 "${ZLOG[$1]}" >&2
    WARNINGS+=("$1 failed to start (run $SEQ)")
    zk_stop "$1"
    return 1
}

zk_stop() { # name
    [[ -n ${ZPID[$1]:-} ]] || return 0
    stop_pid "${ZPID[$1]}"
    unset "ZPID[$1]"
    [[ -n ${KEEP:-} || -z ${ZDATA[$1]:-} ]] || rm -rf "${ZDATA[$1]}" "${ZDATA[$1]}.cfg"
}

zk_configs() { # workload -> "CLIENTSxINFLIGHT ..."
    case $1 in
    set | get) echo "1x1 16x1 64x1 16x16" ;;
    *) echo "1x1 16x1 64x1" ;;
    esac
}

# One measured run; keeps the server's best (highest ops/s) run of the repetitions.
zk_bench() { # server metric-prefix clients inflight args...
    local s=$1 m=$2 n=$3 f=$4 t best
    shift 4
    if bench "$s" --endpoints "${ZEP[$s]}" --clients "$n" "$@" --inflight "$f"; then
        t=$(jget "$LAST_JSON" ops_per_s)
        best=${RES[$m.tput|$s]:-}
        if [[ -z $best ]] || awk -v t="$t" -v b="$best" 'BEGIN { exit !(t + 0 > b + 0) }'; then
            res "$m.tput" "$s" "$t"
            res "$m.p50" "$s" "$(jget "$LAST_JSON" p50_ms)"
            res "$m.p99" "$s" "$(jget "$LAST_JSON" p99_ms)"
            # The lock recipe's hand-off (means in µs, shown in ms): see `zk lock` in README.
            local k v
            for k in delete event_to_acquired; do
                v=$(jget "$LAST_JSON" "$k")
                if [[ -n $v && $v != null ]]; then
                    res "$m.$k" "$s" "$(awk -v u="$v" 'BEGIN { printf "%.3f", u / 1000 }')"
                fi
            done
        fi
    fi
}

# One run of workload w at cfg (repetition r) on server s, each on its own parent znode. The
# nodes of set/get/exists/get-children are prefilled by the first repetition and reused.
zk_run() { # server workload cfg repetition
    local s=$1 w=$2 cfg=$3 r=$4 n f pre=()
    n=${cfg%x*}
    f=${cfg#*x}
    ((r > 1)) && pre=(--prefill 0)
    # Every run but delete lasts ZK_S seconds on either server (no op count: see ZK_S above).
    case $w in
    set | get | exists)
        zk_bench "$s" "zk.$w.$cfg" "$n" "$f" --duration-s "$ZK_S" \
            --key-space "$ZK_KEYS" zk "$w" --root "/b-$w-$cfg" "${pre[@]}" ;;
    get_children)
        zk_bench "$s" "zk.$w.$cfg" "$n" "$f" --duration-s "$ZK_S" \
            zk get-children --root "/b-$w-$cfg" "${pre[@]}" ;;
    lock)
        zk_bench "$s" "zk.$w.$cfg" "$n" "$f" --duration-s "$ZK_S" \
            zk lock --lock-root "/b-$w-$cfg" ;;
    create)
        zk_bench "$s" "zk.$w.$cfg" "$n" "$f" --duration-s "$ZK_S" \
            zk "$w" --root "/b-$w-$cfg-$r" ;;
    delete)
        # Deletes run out of nodes: ZK_OPS are prefilled and each is deleted once.
        zk_bench "$s" "zk.$w.$cfg" "$n" "$f" --total "$ZK_OPS" --duration-s "$ZK_S" \
            zk "$w" --root "/b-$w-$cfg-$r" ;;
    esac
}

# Both servers up side by side (the idle one waits), idle RSS, a warm-up of each (the JVM's
# JIT), then every workload at every configuration, alternating the two servers run by run (so
# both see the same machine, on a shared machine), ZK_REPEAT times, then RSS after the runs.
zk_part() {
    local s w cfg r i=0 order
    for s in "${ZK_SERVERS[@]}"; do
        zk_start "$s" # on failure, the other one still runs (its rows show "-" for this one)
    done
    sleep 2
    for s in "${!ZPID[@]}"; do
        if bench "$s" rss --pid "${ZPID[$s]}"; then
            res zk.rss.idle "$s" "$(jget "$LAST_JSON" rss_kb)"
        fi
    done
    # Warm-up, not recorded: a prefill of $ZK_KEYS creates, sets, a contended lock.
    for s in "${!ZPID[@]}"; do
        bench "$s" --endpoints "${ZEP[$s]}" --clients 16 --duration-s "$ZK_WARM_S" --key-space "$ZK_KEYS" \
            zk set --inflight 16 --root /warm
        bench "$s" --endpoints "${ZEP[$s]}" --clients 16 --duration-s 1 zk lock --lock-root /warm-lock
    done
    for w in $ZK_WORKLOADS; do
        for cfg in $(zk_configs "$w"); do
            for ((r = 1; r <= ZK_REPEAT; r++)); do
                # Alternate which server goes first.
                if ((i++ % 2 == 0)); then order=(zookeeper conclave); else order=(conclave zookeeper); fi
                for s in "${order[@]}"; do
                    [[ -n ${ZPID[$s]:-} ]] && zk_run "$s" "$w" "$cfg" "$r"
                done
            done
        done
    done
    sleep 2
    for s in "${!ZPID[@]}"; do
        if bench "$s" rss --pid "${ZPID[$s]}"; then
            res zk.rss.after "$s" "$(jget "$LAST_JSON" rss_kb)"
        fi
        printf '  %-8s du -sk data dir: %s kB\n' "$s" "$(du -sk "${ZDATA[$s]}" | cut -f1)" >&2
        zk_stop "$s"
    done
}

zk_startup() { # server
    local s=$1 bin
    case $s in
    zookeeper)
        bin=/bin/bash
        ARGS=(-c "$ZK_LAUNCH" zk '{PORT}' '{DATA}')
        ;;
    conclave)
        bin=$CONCLAVE_BIN
        server_args '{PORT2}' '{PEER_PORT}' '{DATA}'
        ARGS+=(--zk-listen '127.0.0.1:{PORT}')
        ;;
    esac
    if TMPDIR=$WORK bench "$s" startup --probe zk --runs "$STARTUP_RUNS" --bin "$bin" -- "${ARGS[@]}"; then
        res zk.startup.ms "$s" "$(jget "$LAST_JSON" median_ms)"
    fi
}

# ---------------------------------------------------------------------------------------------
# main

CONCLAVE_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')
if ((${#RUN[@]})); then
    echo "compare: etcd $("$ETCD_BIN" --version 2>/dev/null | sed -n 's/^etcd Version: //p') vs conclave" \
        "$CONCLAVE_REV, $(nproc) cores, data in $WORK" >&2
    echo "compare: OPS=$OPS ETCD_REPEAT=$ETCD_REPEAT SEQ_S=$SEQ_S RANGE_KEYS=$RANGE_KEYS TXN_KEYS=$TXN_KEYS WATCH_PUTS=$WATCH_PUTS" \
        "BIG_KEYS=$BIG_KEYS STARTUP_RUNS=$STARTUP_RUNS" >&2
fi

# The throughput workloads run ETCD_REPEAT times per server, alternating which server goes
# first: these machines are shared, and a neighbour's load moves one run's figure by up to 2x;
# the best of a few runs close in time is what each server can do (as in the ZooKeeper part).
REPEATED=" put100 range_l range_s txn "
for w in "${RUN[@]}"; do
    echo "== $w" >&2
    reps=1
    [[ $REPEATED == *" $w "* ]] && reps=$ETCD_REPEAT
    for ((r = 1; r <= reps; r++)); do
        order=("${SERVERS[@]}")
        ((r % 2 == 0)) && order=("${SERVERS[1]}" "${SERVERS[0]}")
        for s in "${order[@]}"; do
            "wl_$w" "$s"
        done
    done
done

if [[ -n $RUN_ZK ]]; then
    ZK_VERSION=$("$JAVA_BIN" -cp "$ZK_CP" org.apache.zookeeper.version.VersionInfoMain 2>/dev/null |
        sed -n 's/^Apache ZooKeeper, version \([^ ]*\).*/\1/p')
    echo "compare: ZooKeeper ${ZK_VERSION:-?} vs conclave $CONCLAVE_REV, $(nproc) cores, data in $WORK" >&2
    echo "compare: ZK_OPS=$ZK_OPS ZK_S=$ZK_S ZK_KEYS=$ZK_KEYS ZK_WARM_S=$ZK_WARM_S STARTUP_RUNS=$STARTUP_RUNS" \
        "ZK_REPEAT=$ZK_REPEAT ZK_WORKLOADS=\"$ZK_WORKLOADS\"" >&2
    echo "== zk: zookeeper and conclave side by side, runs alternating" >&2
    zk_part
    echo "== zk: startup" >&2
    for s in "${ZK_SERVERS[@]}"; do
        zk_startup "$s"
    done
fi

# ---------------------------------------------------------------------------------------------
# tables

fmt() { # unit value
    [[ -n $2 ]] || { echo "-"; return; }
    case $1 in
    ops) awk -v v="$2" 'BEGIN { printf "%.0f/s", v }' ;;
    ms) awk -v v="$2" 'BEGIN { printf "%.2f ms", v }' ;;
    mb) awk -v v="$2" 'BEGIN { printf "%.1f MiB", v / 1024 }' ;;
    esac
}

ratio() { # conclave other
    [[ -n $1 && -n $2 ]] || { echo "-"; return; }
    awk -v c="$1" -v e="$2" 'BEGIN { if (e + 0 == 0) print "n/a"; else printf "%.2f", c / e }'
}

goal() { # ratio goal (empty, >=X or <=X) -> empty, ">=X met" or ">=X MISSED"
    [[ -n $2 && $1 != - && $1 != n/a ]] || return 0
    awk -v r="$1" -v op="${2:0:2}" -v x="${2:2}" 'BEGIN {
        ok = (op == ">=") ? (r + 0 >= x + 0) : (r + 0 <= x + 0); printf "%s%s %s", op, x, ok ? "met" : "MISSED" }'
}

table() { # other-server rows... (a row: metric|label|unit|better[|goal])
    local other=$1 row m label unit better g o c r any=""
    shift
    for row in "$@"; do
        IFS='|' read -r m label unit better g <<<"$row"
        if [[ -n ${RES[$m|$other]:-} || -n ${RES[$m|conclave]:-} ]]; then any=1; fi
    done
    [[ -n $any ]] || return 0
    echo
    printf '%-54s %14s %14s %9s  %-7s %s\n' "measurement" "$other" "conclave" "c/$other" "better" "goal"
    printf '%-54s %14s %14s %9s  %-7s %s\n' "-----------" "----" "--------" "------" "------" "----"
    for row in "$@"; do
        IFS='|' read -r m label unit better g <<<"$row"
        o=${RES[$m|$other]:-}
        c=${RES[$m|conclave]:-}
        [[ -n $o || -n $c ]] || continue
        r=$(ratio "$c" "$o")
        printf '%-54s %14s %14s %9s  %-7s %s\n' "$label" "$(fmt "$unit" "$o")" "$(fmt "$unit" "$c")" \
            "$r" "$better" "$(goal "$r" "$g")"
    done
    echo "(ratio = conclave / $other; throughput: higher is better, latency/memory/disk: lower is better)"
}

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
table etcd "${ROWS[@]}"

# The ZooKeeper rows. Goals: >= 2x ZooKeeper's throughput on set, create, get and the lock recipe
# at 16 and 64 clients; idle RSS <= 1/5 of ZooKeeper's.
ZK_ROWS=()
for w in $ZK_WORKLOADS; do
    for cfg in $(zk_configs "$w"); do
        n=${cfg%x*}
        f=${cfg#*x}
        g=""
        case $w:$n in create:16 | create:64 | set:16 | set:64 | get:16 | get:64 | lock:16 | lock:64) g=">=2" ;; esac
        c="$n clients"
        if [[ $n == 1 ]]; then c="1 client"; fi
        if [[ $w == lock ]]; then
            label="zk lock acquire+release, $c"
        else
            label="zk ${w//_/-}, $c x $f in flight"
        fi
        ZK_ROWS+=("zk.$w.$cfg.tput|$label|ops|higher|$g")
        if [[ $cfg == 1x1 ]]; then ZK_ROWS+=("zk.$w.$cfg.p50|  ${w//_/-} p50, 1 client|ms|lower"); fi
        if [[ $cfg == 64x1 ]]; then ZK_ROWS+=("zk.$w.$cfg.p99|  ${w//_/-} p99, 64 clients|ms|lower"); fi
        if [[ $w == lock && $n != 1 ]]; then
            ZK_ROWS+=("zk.$w.$cfg.delete|  lock: delete round trip (mean), $c|ms|lower"
                "zk.$w.$cfg.event_to_acquired|  lock: event to holding it (mean), $c|ms|lower")
        fi
    done
done
ZK_ROWS+=(
    "zk.startup.ms|zk start to serving a session (median of $STARTUP_RUNS)|ms|lower"
    "zk.rss.idle|zk idle RSS (ZooKeeper: its JVM)|mb|lower|<=0.2"
    "zk.rss.after|zk RSS after all the ZooKeeper runs|mb|lower"
)
table zookeeper "${ZK_ROWS[@]}"

if ((${#WARNINGS[@]})); then
    echo
    echo "warnings:"
    printf '  %s\n' "${WARNINGS[@]}"
fi
echo "compare: done in ${SECONDS}s" >&2
