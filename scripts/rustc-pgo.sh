#!/bin/sh
# rustc with profile-guided optimisation (cargo's build.rustc-wrapper, set in .cargo/config.toml).
# Adds the committed profile of the benchmark workloads (pgo/README.md) to every rustc call on
# x86-64 Linux whose LLVM can read it; otherwise rustc runs as it is. A wrapper and not
# `rustflags`: rustc runs in each package's own directory, so the profile's path must be absolute.
# (Under `cargo clippy` the first argument is clippy-driver, which reports rustc's version.)
pgo="$(cd "$(dirname "$0")/.." && pwd)/pgo"
# Only optimised builds (opt-level 2, 3, s or z: the release profile) use the profile. The dev
# profile's dependencies build at opt-level 1, where a profile buys the tests nothing, and the
# test binaries then do not change with the profile. (Build time: one clean `cargo build` took
# 4m07 with it and 3m10 without, but CI's clean builds took 3m17-3m22 either way: no claim.)
optimised=""
server_bin=""
name=""
prev=""
for a in "$@"; do
    case "$prev$a" in
        -Copt-level=[23sz] | "-C opt-level="[23sz]) optimised=1 ;;
        "--crate-name conclave") name=1 ;;
        "--crate-type bin") [ -n "$name" ] && server_bin=1 ;;
    esac
    case "$a" in
        -C | --crate-name | --crate-type) prev="$a " ;;
        *) prev="" ;;
    esac
done
if [ -n "$optimised" ] && [ -f "$pgo/conclave.profdata" ] && [ "$(uname -sm)" = "Linux x86_64" ]; then
    # The profile's format is that of the LLVM that wrote it (pgo/llvm-major); an older LLVM
    # (this crate's minimum Rust, 1.90, has LLVM 20) refuses it and would fail the build.
    need=$(cat "$pgo/llvm-major" 2>/dev/null || echo 999)
    have=$("$1" -vV 2>/dev/null | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
    if [ -n "$have" ] && [ "$have" -ge "$need" ]; then
        # -no-pgo-warn-mismatch: functions changed since the profile was made get no profile,
        #   and no warning each. -disable-icp: no indirect-call promotion, which inlined the
        #   hottest tasks' poll functions into tokio's worker loop (a 270 KiB stack frame,
        #   +0.5 MiB idle RSS).
        # The server binary's link also gets the committed function order (pgo/link-order.txt):
        #   the code its start and idle timers run comes first, so that the pages a started
        #   server maps hold little else (idle RSS; pgo/README.md).
        #   An LLVM this new means rustc >= 1.95, whose default linker here is LLD, which knows
        #   the flag; names the build no longer has are skipped without a warning.
        if [ -n "$server_bin" ] && [ -f "$pgo/link-order.txt" ]; then
            set -- "$@" "-Clink-arg=-Wl,--symbol-ordering-file=$pgo/link-order.txt" \
                -Clink-arg=-Wl,--no-warn-symbol-ordering
        fi
        exec "$@" "-Cprofile-use=$pgo/conclave.profdata" -Cllvm-args=-no-pgo-warn-mismatch -Cllvm-args=-disable-icp
    fi
fi
exec "$@"
