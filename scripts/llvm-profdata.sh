#!/usr/bin/env bash
# Prints the path of the llvm-profdata that matches rustc's LLVM (a profile's format is that of
# the LLVM that wrote it). Installs Debian's llvm-N if it is missing and this runs as root.
# Used by scripts/pgo.sh and scripts/link-order.sh.
set -euo pipefail
major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
for p in "llvm-profdata-$major" "/usr/lib/llvm-$major/bin/llvm-profdata"; do
    if command -v "$p" >/dev/null 2>&1; then
        command -v "$p"
        exit 0
    fi
done
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y "llvm-$major" >/dev/null
    echo "/usr/lib/llvm-$major/bin/llvm-profdata"
else
    echo "needs llvm-profdata of LLVM $major (Debian: apt-get install llvm-$major)" >&2
    exit 1
fi
