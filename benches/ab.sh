#!/usr/bin/env bash
# benches/ab.sh: two (or more) Conclave builds side by side on the ZooKeeper workloads, in
# interleaved rounds, each run on a fresh server; prints one line per run with the throughput,
# the p50, the server's CPU per operation (from /proc) and, for the lock recipe, its phases.
#
# Why interleaved and fresh: on the 2-core benchmark VM a run moves by ±20 % from one minute to
# the next, so a change is only believed when it wins pair after pair, and the CPU per
# operation (which the noise moves less than the throughput) agrees (benches/README.md).
#
#   benches/ab.sh ROUNDS "BIN_A BIN_B ..." "WORKLOAD:CLIENTS ..."
#   benches/ab.sh 3 "/tmp/old/conclave target/release/conclave" "set:16 set:64 lock:16"
#
# Environment: BENCH_BIN [target/release/conclave-bench]  OPS [60000] ops per run (cap)
#   DUR [4] seconds per run (cap)  WARM_S [1] seconds of sets at 16 clients before each run
#   BENCH_TMPDIR [$TMPDIR or /tmp] where the data dirs go.
# Not part of the test suite. It stops every server it starts, also on Ctrl-C.

set -uo pipefail

if [ $# -ne 3 ]; then
    sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
ROUNDS=$1
read -ra BINS <<<"$2"
read -ra CASES <<<"$3"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/conclave-bench}
OPS=${OPS:-60000}
DUR=${DUR:-4}
WARM_S=${WARM_S:-1}
WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/conclave-ab.XXXXXX")
PID=""

cleanup() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for r in $(seq 1 "$ROUNDS"); do
    for c in "${CASES[@]}"; do
        wl=${c%%:*}
        n=${c##*:}
        for b in "${BINS[@]}"; do
            ports=$("$BENCH_BIN" free-ports --count 3) || exit 1
            read -r cport pport zport <<<"$ports"
            rm -rf "$WORK/data"
            # maxClientCnxns 0: every client of a run comes from 127.0.0.1, as in compare.sh.
            "$b" --data-dir "$WORK/data" --listen-client-urls "http://127.0.0.1:$cport" \
                --advertise-client-urls "http://127.0.0.1:$cport" --listen-peer-urls "http://127.0.0.1:$pport" \
                --zk-listen "127.0.0.1:$zport" --zk-max-client-cnxns 0 >"$WORK/server.log" 2>&1 &
            PID=$!
            for _ in $(seq 100); do
                (echo >"/dev/tcp/127.0.0.1/$zport") 2>/dev/null && break
                sleep 0.05
            done
            # The warm-up's nodes under a root of their own: under the default one a create run
            # would meet them (10 000 NodeExists errors counted as operations).
            "$BENCH_BIN" --endpoints "127.0.0.1:$zport" --clients 16 --duration-s "$WARM_S" --total 100000000 \
                zk --root /warm set >/dev/null 2>&1
            t0=$(cpu_ticks "$PID")
            line=$("$BENCH_BIN" --endpoints "127.0.0.1:$zport" --clients "$n" --total "$OPS" --duration-s "$DUR" \
                zk "$wl" 2>&1 | grep '^{"workload' | tail -1)
            t1=$(cpu_ticks "$PID")
            kill "$PID"
            wait "$PID" 2>/dev/null
            PID=""
            python3 - "$line" "$t0" "$t1" "$(getconf CLK_TCK)" "r$r $c $(basename "$b")" <<'PY'
import json, sys
line, t0, t1, hz, label = sys.argv[1:]
try:
    j = json.loads(line)
except ValueError:
    print(f"{label} FAILED (no result line; see the server log)")
    sys.exit(0)
ops = max(j["ops"], 1)
cpu_us = (float(t1) - float(t0)) / float(hz) * 1e6 / ops
phases = j.get("lock_phase_mean_us")
extra = " " + " ".join(f"{k}={v}us" for k, v in phases.items()) if phases else ""
print(f"{label}: {j['ops_per_s']:.0f} ops/s p50 {j['p50_ms']:.3f} ms server {cpu_us:.1f} us/op "
      f"errors {j['errors']}{extra}")
PY
        done
    done
done
