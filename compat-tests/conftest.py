"""Fixtures for the black-box etcd v3 compatibility suite.

Every test gets a *fresh* server (so revisions are deterministic) of each kind
named in the env var COMPAT_TARGETS (default "conclave,etcd"):

  etcd      /usr/bin/etcd (ETCD_BIN), the reference implementation
  conclave  CONCLAVE_BIN (default <repo>/target/debug/conclave), started with
            exactly the same etcd command-line flags

The expected values in the tests were all taken from the real etcd; run
`COMPAT_TARGETS=etcd pytest compat-tests` to re-validate them.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

# gRPC (Python and Go) honour proxy variables; the servers are on loopback.
for _v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(_v, None)
os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

from compat_util import Server  # noqa: E402

ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
ETCDCTL_BIN = os.environ.get("ETCDCTL_BIN", "/usr/bin/etcdctl")
CONCLAVE_BIN = os.environ.get("CONCLAVE_BIN", os.path.join(REPO, "target", "debug", "conclave"))
STARTUP_TIMEOUT = float(os.environ.get("COMPAT_STARTUP_TIMEOUT", "20"))


def _targets():
    raw = os.environ.get("COMPAT_TARGETS", "conclave,etcd")
    kinds = [t.strip() for t in raw.split(",") if t.strip()]
    for k in kinds:
        if k not in ("conclave", "etcd"):
            raise pytest.UsageError(f"COMPAT_TARGETS: unknown server kind {k!r}")
    return kinds


def pytest_generate_tests(metafunc):
    if "server" in metafunc.fixturenames:
        metafunc.parametrize("server", _targets(), indirect=True)


def _free_ports(n):
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _etcd_flags(data_dir, cport, pport):
    client = f"http://127.0.0.1:{cport}"
    peer = f"http://127.0.0.1:{pport}"
    return [
        "--name", "default",
        "--data-dir", data_dir,
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"default={peer}",
    ]


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _start(kind, workdir):
    if kind == "etcd":
        binary = ETCD_BIN
    else:
        binary = CONCLAVE_BIN
    if not os.path.exists(binary):
        pytest.fail(f"{kind} binary not found at {binary} (build it or set "
                    f"{'ETCD_BIN' if kind == 'etcd' else 'CONCLAVE_BIN'})", pytrace=False)
    last_err = None
    for _attempt in range(3):  # retry on a (rare) port race
        data_dir = tempfile.mkdtemp(prefix="data-", dir=workdir)
        cport, pport = _free_ports(2)
        log_path = os.path.join(workdir, f"{kind}-{cport}.log")
        log = open(log_path, "wb")
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("ETCD_") or k.startswith("ETCDCTL_"):
                del env[k]
        proc = subprocess.Popen([binary] + _etcd_flags(data_dir, cport, pport),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        log.close()
        srv = Server(kind, cport, pport, data_dir, proc, log_path, ETCDCTL_BIN)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _port_open(cport):
                rc, _, _ = srv.etcdctl("--dial-timeout=1s", "--command-timeout=1s",
                                       "endpoint", "health")
                if rc == 0:
                    return srv
            time.sleep(0.05)
        srv.stop()
        with open(log_path, "rb") as f:
            tail = f.read()[-3000:].decode("utf-8", "replace")
        last_err = (f"{kind} did not become healthy on 127.0.0.1:{cport} "
                    f"(exit={proc.returncode}); log tail:\n{tail}")
        if proc.returncode is None:
            break  # it ran but never became healthy: not a port race
    pytest.fail(last_err, pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def server(request, tmp_path):
    srv = _start(request.param, str(tmp_path))
    try:
        yield srv
    finally:
        srv.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            # shown under "Captured stdout teardown" of the failing test
            with open(srv.log_path, "rb") as f:
                tail = f.read()[-4000:].decode("utf-8", "replace")
            print(f"--- last lines of the {srv.kind} server log ({srv.log_path}):\n{tail}")
