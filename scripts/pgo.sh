#!/usr/bin/env bash
# Makes pgo/conclave.profdata anew: the profile every build on x86-64 Linux optimises with
# (scripts/rustc-pgo.sh; why and what it gains: pgo/README.md).
#
#   bash scripts/pgo.sh
#
# 1. builds an instrumented server (target/pgo-gen; the wrapper is bypassed, so no old profile
#    goes in) and the load generator;
# 2. runs the server on free loopback ports with the benchmark workloads of benches/compare.sh
#    (etcd put, range, txn, watch; ZooKeeper set, get, exists, create, delete, get-children, the
#    lock recipe, at 1, 16 and 64 clients), then stops it with SIGTERM so it writes its counts;
# 3. merges them with llvm-profdata of rustc's LLVM version (installs Debian's llvm-N if absent
#    and running as root), keeping only functions that ran (-sparse), and records that version
#    in pgo/llvm-major;
# 4. makes pgo/link-order.txt anew with that profile (scripts/link-order.sh).
# Takes ~10 minutes on 2 cores. Afterwards `cargo clean` before building for a benchmark: cargo
# notices the new profile for this crate, not for the registry crates built with the old one.
set -euo pipefail
cd "$(dirname "$0")/.."

major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
profdata=$(bash scripts/llvm-profdata.sh)

. scripts/pgo-lib.sh

echo "pgo.sh: instrumented build" >&2
build_instrumented
cargo build --release --bin conclave-bench
LLVM_PROFILE_FILE="$work/server-%p.profraw" start_server target/pgo-gen/release/conclave

echo "pgo.sh: training" >&2
E=(--endpoints "127.0.0.1:$client")
Z=(--endpoints "127.0.0.1:$zk")
run() { "$bench" "$@" >/dev/null; }
run "${E[@]}" --clients 100 --conns 10 --total 40000 put
run "${E[@]}" --clients 1 --conns 1 --total 3000 put
run "${E[@]}" --clients 100 --conns 10 --total 40000 range --consistency l --prefill 5000
run "${E[@]}" --clients 100 --conns 10 --total 40000 range --consistency s --prefill 5000
run "${E[@]}" --clients 100 --conns 10 --total 30000 --key-space 1000 txn --prefill 1000
run "${E[@]}" --conns 10 --total 500 watch-latency --watchers 100 --streams 10 --rate 200
for c in 1 16 64; do
    run "${Z[@]}" --clients $c --total 20000 --key-space 5000 zk set --root "/pgo-set-$c"
    run "${Z[@]}" --clients $c --total 20000 --key-space 5000 zk get --root "/pgo-get-$c"
    run "${Z[@]}" --clients $c --total 20000 --key-space 5000 zk exists --root "/pgo-exists-$c"
    run "${Z[@]}" --clients $c --total 20000 zk create --root "/pgo-create-$c"
    run "${Z[@]}" --clients $c --total 20000 --key-space 5000 zk delete --root "/pgo-delete-$c"
    run "${Z[@]}" --clients $c --total 20000 --key-space 100 zk get-children --root "/pgo-children-$c"
    run "${Z[@]}" --clients $c --total 2000 zk lock
done
run "${Z[@]}" --clients 16 --total 40000 --key-space 5000 zk set --inflight 16 --root /pgo-set-pipelined

stop_server
"$profdata" merge -sparse -o pgo/conclave.profdata "$work"/server-*.profraw
# The profile's format is this LLVM's: scripts/rustc-pgo.sh uses it only with an LLVM as new.
echo "$major" >pgo/llvm-major
echo "pgo.sh: wrote pgo/conclave.profdata ($(stat -c %s pgo/conclave.profdata) bytes)" >&2
bash scripts/link-order.sh
echo "pgo.sh: done; cargo clean before a benchmark build" >&2
