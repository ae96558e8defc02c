# Sourced by scripts/pgo.sh and scripts/link-order.sh, from the repository root: the
# instrumented build both use, a scratch directory ($work), and one server at a time on free
# loopback ports, stopped with SIGTERM (an instrumented build writes its counts then). Whatever
# still runs is stopped, and $work removed, when the script exits.
root=$(pwd)
bench=$root/target/release/conclave-bench # the caller builds it
work=$(mktemp -d)
pid=""
cleanup() {
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The instrumented server, in target/pgo-gen (the wrapper bypassed, so no old profile goes in;
# cargo does nothing if it is up to date).
build_instrumented() {
    RUSTC_WRAPPER="" RUSTFLAGS="-Cprofile-generate=$root/target/pgo-gen/raw" \
        cargo build --release --bin conclave --target-dir target/pgo-gen
}

# start_server command...: the command (a server binary, or a tool and a server binary) with a
# fresh data dir, its ports in $zk and $client; returns once it serves an etcd request.
start_server() {
    read -r zk client peer < <("$bench" free-ports --count 3)
    rm -rf "$work/data"
    "$@" --name pgo --data-dir "$work/data" --listen-client-urls "http://127.0.0.1:$client" \
        --advertise-client-urls "http://127.0.0.1:$client" --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" --zk-listen "127.0.0.1:$zk" --maxClientCnxns 0 \
        >"$work/server.log" 2>&1 &
    pid=$!
    "$bench" --endpoints "127.0.0.1:$client" ping --wait-s 60 >/dev/null
}

stop_server() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=""
}
