# Sourced by scripts/pgo.sh and scripts/link-order.sh: a scratch directory ($work) and the pid of
# the server a script runs ($pid, empty when none runs), both cleaned up when the script exits.
work=$(mktemp -d)
pid=""
cleanup() {
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
