#!/usr/bin/env bash
# Makes pgo/link-order.txt anew: the order in which the server's functions are laid out when the
# release binary is linked (scripts/rustc-pgo.sh hands it to the linker; why and what it gains:
# pgo/README.md). scripts/pgo.sh runs it after making the profile; alone, it uses the committed
# profile.
#
#   bash scripts/link-order.sh
#
# The order: first every function a started server runs until it idles (its start, one etcd
# request, one four-letter word, 2 s of idle timers), as two records see them: the counts of an
# instrumented build (our code and the registry crates) and callgrind's calls in the release
# build (std's precompiled code too, under the names the release build has), sorted by name.
# Only names the release binary has are kept; every other function keeps the linker's order
# after them.
# Needs llvm-profdata of rustc's LLVM and valgrind (installed from Debian if missing and running
# as root). Takes ~5 minutes on 2 cores (two builds of the server). Afterwards a release build
# must link again to use it: `touch src/main.rs` (cargo does not watch the file).
set -euo pipefail
cd "$(dirname "$0")/.."
profdata=$(bash scripts/llvm-profdata.sh)
if ! command -v valgrind >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        apt-get install -y valgrind >/dev/null
    else
        echo "link-order.sh: needs valgrind (Debian: apt-get install valgrind)" >&2
        exit 1
    fi
fi

. scripts/pgo-lib.sh

# The instrumented build as scripts/pgo.sh makes it; symbol names do not depend on the profile,
# so both builds name each function alike.
build_instrumented
cargo build --release --bin conclave --bin conclave-bench
server=$(readlink -f "$root/target/release/conclave")

idle_run() { # command...: a server's start, one etcd request, one ruok, 2 s idle, SIGTERM
    start_server "$@"
    { exec 3<>"/dev/tcp/127.0.0.1/$zk" && printf ruok >&3 && timeout 5 cat <&3 >/dev/null; } || true
    exec 3<&-
    sleep 2
    stop_server
}

echo "link-order.sh: the instrumented server's start" >&2
LLVM_PROFILE_FILE="$work/idle-%p.profraw" idle_run target/pgo-gen/release/conclave
"$profdata" merge -sparse -o "$work/idle.profdata" "$work"/idle-*.profraw
# A profile names an internal function "<codegen unit>;<symbol>".
"$profdata" show --all-functions "$work/idle.profdata" | sed -n 's/^  \([^ ].*\):$/\1/p' |
    sed 's/^[^;]*;//' >"$work/idle-counted.txt"

echo "link-order.sh: the release server's start under callgrind" >&2
idle_run valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" --dump-instr=no \
    --compress-strings=no --compress-pos=no --demangle=no "$server"

nm "$server" | awk '$2 ~ /^[tT]$/ {print $3}' >"$work/symbols.txt"
python3 - "$server" "$work/callgrind.out" "$work/symbols.txt" "$work/idle-counted.txt" \
    >"$work/link-order.txt" <<'PY'
import sys

server, callgrind, symbols, counted = sys.argv[1:]
have = set(open(symbols).read().split())
# callgrind's functions in the server binary: "fn=" lines (a function that ran) and "cfn="
# lines (a call's target), in the object of the last "ob=", or of a "cob=" just before a "cfn=".
called, ob, cob = [], None, None
for line in open(callgrind, errors="replace"):
    key, _, value = line.rstrip("\n").partition("=")
    if key == "ob":
        ob = value
    elif key == "fn" and ob == server:
        called.append(value)
    elif key == "cob":
        cob = value
    elif key == "cfn":
        if (cob or ob) == server:
            called.append(value)
        cob = None
# Sorted: the order inside the group hardly matters (it is the group's pages that count), and
# callgrind lists functions in the order the threads happened to run them, so a list made again
# differs only where the set does.
for name in sorted(have.intersection(called + [line.strip() for line in open(counted)])):
    print(name)
PY
mv "$work/link-order.txt" pgo/link-order.txt
echo "link-order.sh: wrote pgo/link-order.txt ($(wc -l <pgo/link-order.txt) functions)" >&2
