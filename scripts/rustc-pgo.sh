#!/bin/sh
# rustc with profile-guided optimisation (cargo's build.rustc-wrapper, set in .cargo/config.toml).
# Adds the committed profile of the benchmark workloads (pgo/README.md) to every rustc call on
# x86-64 Linux; elsewhere, or without the profile, rustc runs as it is. A wrapper and not
# `rustflags`: rustc runs in each package's own directory, so the profile's path must be absolute.
# (Under `cargo clippy` the first argument is clippy-driver; the flags suit it the same way.)
profile="$(cd "$(dirname "$0")/.." && pwd)/pgo/conclave.profdata"
if [ -f "$profile" ] && [ "$(uname -sm)" = "Linux x86_64" ]; then
    # -no-pgo-warn-mismatch: functions changed since the profile was made get no profile, and no
    #   warning each. -disable-icp: no indirect-call promotion, which inlined the hottest tasks'
    #   poll functions into tokio's worker loop (a 270 KiB stack frame, +0.5 MiB idle RSS).
    exec "$@" "-Cprofile-use=$profile" -Cllvm-args=-no-pgo-warn-mismatch -Cllvm-args=-disable-icp
fi
exec "$@"
