#!/usr/bin/env bash
# The one command that runs the whole test suite on a fresh Debian machine:
#
#   1. installs (only if missing) etcd-server etcd-client protobuf-compiler
#      libprotobuf-dev python3-venv zookeeper zookeeper-bin
#      default-jre-headless from Debian's packages (ZooKeeper 3.8.0: its jars
#      for the reference server, zkCli.sh, and the C client's cli_mt), and
#      default-jdk-headless libcurator-framework-java libcurator-recipes-java
#      libcurator-client-java (Apache Curator 5.4 for test_zk_curator.py,
#      which compiles compat-tests/curator/*.java with javac),
#      and krb5-kdc krb5-admin-server krb5-user libkrb5-dev python3-dev (the
#      upstream kazoo suite's SASL/GSSAPI tests: a throw-away KDC, and the
#      `kerberos` PyPI module, which builds from source);
#   2. creates the Python venv target/venv with compat-tests/requirements.txt,
#      and downloads python-etcd3 0.12.0's sdist (for its own test suite) into
#      target/upstream/ with the venv's pip;
#   3. cargo build (debug) and cargo test;
#   4. pytest compat-tests/ against the servers named in COMPAT_TARGETS
#      (default "conclave,etcd": target/debug/conclave and the real etcd);
#      the ZooKeeper suite (test_zk_*.py) against those in COMPAT_ZK_TARGETS
#      (default "conclave,zookeeper": conclave with --zk-listen, and the real
#      ZooKeeper 3.8.0 started standalone from its jars, not as a service).
#      test_rust_etcd_client.py builds the separate cargo project
#      compat-tests/rust-client (the etcd-client crate; needs protoc) into
#      target/rust-client, even with SKIP_CARGO=1; test_rust_zk_client.py
#      likewise builds compat-tests/rust-zk-client (the zookeeper-client
#      crate) into target/rust-zk-client, and test_zk_node_client.py runs
#      `npm ci` of compat-tests/node (node-zookeeper-client, from the npm
#      registry) into target/node-client, with Debian's nodejs and npm
#      installed first if `node` or `npm` is missing.
#
# Exits non-zero if anything fails.  Extra arguments go to pytest, e.g.
#   scripts/test.sh -k watch -x        (paths are relative to compat-tests/)
# Knobs (environment):
#   COMPAT_TARGETS=etcd   run the compat suite against the real etcd only
#   COMPAT_ZK_TARGETS=zookeeper
#                         run the ZooKeeper suite against the real ZooKeeper only
#                         (e.g. scripts/test.sh test_zk_kazoo.py test_zk_cli.py test_zk_4lw.py)
#   SKIP_CARGO=1          skip cargo build / cargo test (e.g. to re-validate
#                         the suite against etcd while the server is in flux)
#   CONCLAVE_BIN=path     the conclave binary (default target/debug/conclave)
#   COMPAT_JOBS=N         pytest workers (default 2; 1 runs the files one after another)
set -euo pipefail

cd "$(dirname "$0")/.."
REPO="$(pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------- system packages
# gcc + libc6-dev: the C compiler that builds mimalloc (the server's allocator) and links Rust.
PKGS=(gcc libc6-dev etcd-server etcd-client protobuf-compiler libprotobuf-dev python3-venv
      zookeeper zookeeper-bin default-jre-headless
      default-jdk-headless libcurator-framework-java libcurator-recipes-java libcurator-client-java
      krb5-kdc krb5-admin-server krb5-user libkrb5-dev python3-dev)
missing=()
# node + npm for test_zk_node_client.py (npm ci of compat-tests/node); only when the commands
# are missing, since a machine may carry another build of Node.js that bundles npm
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    missing+=(nodejs npm)
fi
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    # etcd-server's maintainer scripts would start the system etcd service;
    # the tests start their own etcd (and ZooKeeper), so keep services from
    # starting during the install (only if no policy is in place already).
    policy_added=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        policy_added=1
    fi
    cleanup_policy() { if [ -n "$policy_added" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; policy_added=""; fi; }
    trap cleanup_policy EXIT
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    cleanup_policy
    trap - EXIT
fi
for b in /usr/bin/etcd /usr/bin/etcdctl protoc java javac /usr/share/zookeeper/bin/zkCli.sh \
         /usr/lib/zookeeper/bin/cli_mt; do
    command -v "$b" >/dev/null || { echo "missing $b after install" >&2; exit 1; }
done
# the ZooKeeper server's classpath (compat-tests/zk_util.py ZOOKEEPER_CLASSPATH)
# and Curator's (compat-tests/test_zk_curator.py CURATOR_JARS)
for f in /usr/share/java/zookeeper.jar /usr/share/java/slf4j-simple.jar \
         /usr/share/java/curator-framework.jar /usr/share/java/curator-recipes.jar \
         /usr/share/java/curator-client.jar /usr/share/java/zookeeper-recipes-lock.jar \
         /usr/share/java/zookeeper-recipes-queue.jar /usr/share/java/zookeeper-recipes-election.jar; do
    [ -f "$f" ] || { echo "missing $f after install" >&2; exit 1; }
done

# ---------------------------------------------------------------- python venv
VENV="$REPO/target/venv"
REQ="$REPO/compat-tests/requirements.txt"
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    log "creating venv $VENV"
    rm -rf "$VENV"
    mkdir -p "$REPO/target"
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "pip install -r compat-tests/requirements.txt"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
    echo "$want" > "$stamp"
fi
# etcd3 0.12's generated code needs the pure-python protobuf runtime
export PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python

# ---------------------------------------------------------------- upstream python-etcd3 tests
# compat-tests/test_upstream_python_etcd3.py runs python-etcd3 0.12.0's own test
# suite, which ships only in its sdist on PyPI.
UPSTREAM="$REPO/target/upstream"
if [ ! -f "$UPSTREAM/etcd3-0.12.0/tests/test_etcd3.py" ]; then
    log "pip download etcd3==0.12.0 sdist (upstream tests) into target/upstream"
    mkdir -p "$UPSTREAM"
    "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
        --no-binary :all: -d "$UPSTREAM" etcd3==0.12.0
    rm -rf "$UPSTREAM/etcd3-0.12.0"
    tar -xzf "$UPSTREAM/etcd3-0.12.0.tar.gz" -C "$UPSTREAM"
    [ -f "$UPSTREAM/etcd3-0.12.0/tests/test_etcd3.py" ] || {
        echo "the etcd3 0.12.0 sdist has no tests/test_etcd3.py" >&2; exit 1; }
fi

# ---------------------------------------------------------------- rust
if [ "${SKIP_CARGO:-}" != 1 ]; then
    log "cargo build"
    cargo build
    log "cargo test"
    # A bound, so a test that hangs fails this run in minutes instead of eating CI's whole
    # limit (Rust's test harness has no per-test timeout; the compat suite has pytest-timeout).
    # timeout signals its whole process group: cargo and the test binary it runs.
    timeout -k 30 "${CARGO_TEST_TIMEOUT_S:-1200}" cargo test
fi

# ---------------------------------------------------------------- compat suite
export COMPAT_TARGETS="${COMPAT_TARGETS:-conclave,etcd}"
export COMPAT_ZK_TARGETS="${COMPAT_ZK_TARGETS:-conclave,zookeeper}"
export CONCLAVE_BIN="${CONCLAVE_BIN:-$REPO/target/debug/conclave}"
log "pytest compat-tests (targets: $COMPAT_TARGETS; ZooKeeper suite: $COMPAT_ZK_TARGETS)"
cd "$REPO/compat-tests"
# Two pytest workers (pytest-xdist), each taking whole files (a file's module-scoped servers and
# builds stay in one worker): most scenarios wait on servers, sessions and timers, not on the
# CPU, so two at a time took the suite from ~19 to ~11 minutes on the 2-core CI machine.
# COMPAT_JOBS=1 runs one file after another as before (-n 0: no workers at all).
jobs="${COMPAT_JOBS:-2}"
if [ "$jobs" = 1 ]; then jobs=0; fi
# A few tests that fail beside another worker are run once more, alone (the log keeps the first
# run's FAILED lines and names them again below): a scenario that fails only while another one
# loads the two cores has a timing race, in the test or in a server, to be found and fixed, and
# such runs showed real ones (see compat-tests/README.md); more than five failures are not
# retried, and a test that fails alone fails the run.
failed_file="$REPO/target/compat-failed.txt"
rm -f "$failed_file"
rc=0
COMPAT_FAILED_FILE="$failed_file" "$VENV/bin/python" -m pytest -n "$jobs" --dist loadfile "$@" || rc=$?
if [ "$rc" = 1 ] && [ "$jobs" != 0 ] && [ -s "$failed_file" ]; then
    mapfile -t failed < <(sort -u "$failed_file")
    if ((${#failed[@]} <= 5)); then
        log "pytest: ${#failed[@]} failed beside another worker; again, one at a time: ${failed[*]}"
        rc=0
        "$VENV/bin/python" -m pytest -n 0 "${failed[@]}" || rc=$?
    fi
fi
exit "$rc"
