"""Fixtures for the black-box etcd v3 compatibility suite.

Every test gets a *fresh* server (so revisions are deterministic) of each kind
named in the env var COMPAT_TARGETS (default "conclave,etcd"):

  etcd      /usr/bin/etcd (ETCD_BIN), the reference implementation
  conclave  CONCLAVE_BIN (default <repo>/target/debug/conclave), started with
            exactly the same etcd command-line flags

The expected values in the tests were all taken from the real etcd; run
`COMPAT_TARGETS=etcd pytest compat-tests` to re-validate them.

The ZooKeeper suite (test_zk_*.py) uses the `zk` fixture instead: a fresh
server of each kind named in COMPAT_ZK_TARGETS (default "conclave,zookeeper"),
its ZooKeeper client port on 127.0.0.1:

  zookeeper  the real ZooKeeper (Debian's 3.8.0 jars), standalone:
             `java -cp ZOOKEEPER_CLASSPATH org.apache.zookeeper.server.
             ZooKeeperServerMain zoo.cfg` with a generated zoo.cfg (see
             _zk_cfg) -- NOT the system service
  conclave   CONCLAVE_BIN with the etcd flags above plus
             `--zk-listen 127.0.0.1:PORT --zk-tick-time 2000` (and the words
             of CONCLAVE_ZK_FLAGS, if set; other CONCLAVE_ZK_* variables are
             not passed on, so the environment cannot change its settings)

Per-test server settings come from the marker
`@pytest.mark.zk_config(four_letter_whitelist="ruok,srvr")`: zoo.cfg's
`4lw.commands.whitelist` on ZooKeeper (default `*`), `--zk-4lw-whitelist` on
conclave (flag left out by default); `max_client_cnxns=N`: zoo.cfg's
`maxClientCnxns` on ZooKeeper, `--maxClientCnxns N` on conclave (both
default to 60 per client address).  Both are ready when `ruok` answers
`imok` (a whitelist without ruok: when it answers anything) and a session
handshake then succeeds (that session is closed again at once).  Run
`COMPAT_ZK_TARGETS=zookeeper pytest compat-tests/test_zk_*.py` to re-validate
the expected values against ZooKeeper.
"""

import os
import shlex
import struct
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

from compat_util import Server, free_ports as _free_ports, port_open as _port_open  # noqa: E402
from zk_util import JAVA, ZOOKEEPER_CLASSPATH, RawSession, ZkServer, four_letter_word  # noqa: E402

ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
ETCDCTL_BIN = os.environ.get("ETCDCTL_BIN", "/usr/bin/etcdctl")
CONCLAVE_BIN = os.environ.get("CONCLAVE_BIN", os.path.join(REPO, "target", "debug", "conclave"))
STARTUP_TIMEOUT = float(os.environ.get("COMPAT_STARTUP_TIMEOUT", "20"))


def _kinds(variable, default, known):
    """The server kinds a fixture runs against: a comma list in the environment."""
    kinds = [t.strip() for t in os.environ.get(variable, default).split(",") if t.strip()]
    for k in kinds:
        if k not in known:
            raise pytest.UsageError(f"{variable}: unknown server kind {k!r}")
    return kinds


def _targets():
    return _kinds("COMPAT_TARGETS", "conclave,etcd", ("conclave", "etcd"))


def _zk_targets():
    return _kinds("COMPAT_ZK_TARGETS", "conclave,zookeeper", ("conclave", "zookeeper"))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "zk_config(four_letter_whitelist=..., max_client_cnxns=...): settings for the zk fixture's server")


def pytest_generate_tests(metafunc):
    if "server" in metafunc.fixturenames:
        metafunc.parametrize("server", _targets(), indirect=True)
    if "zk" in metafunc.fixturenames:
        metafunc.parametrize("zk", _zk_targets(), indirect=True)


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
        # Conclave also serves ZooKeeper (default 127.0.0.1:2181); the etcd scenarios take an
        # ephemeral port for it so that servers never collide. etcd ignores the variable, so
        # both servers still get exactly the same flags.
        env["CONCLAVE_ZK_LISTEN"] = "127.0.0.1:0"
        argv = [binary] + _etcd_flags(data_dir, cport, pport)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        log.close()
        srv = Server(kind, cport, pport, data_dir, proc, log_path, ETCDCTL_BIN)
        srv.launch = (argv, env)
        if srv.wait_healthy(STARTUP_TIMEOUT):
            return srv
        srv.stop()
        with open(log_path, "rb") as f:
            tail = f.read()[-3000:].decode("utf-8", "replace")
        last_err = (f"{kind} did not become healthy on 127.0.0.1:{cport} "
                    f"(exit={proc.returncode}); log tail:\n{tail}")
        if proc.returncode is None:
            break  # it ran but never became healthy: not a port race
    pytest.fail(last_err, pytrace=False)


def pytest_runtest_logreport(report):
    """Appends the node id of every failing test to $COMPAT_FAILED_FILE, for scripts/test.sh
    to run those again one at a time after a two-worker run. Under pytest-xdist the controller
    gets every worker's reports; a worker (PYTEST_XDIST_WORKER set, and inherited by the
    upstream suites' pytest subprocesses) records nothing itself."""
    path = os.environ.get("COMPAT_FAILED_FILE")
    if not path or not report.failed or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    with open(path, "a") as f:
        f.write(report.nodeid + "\n")


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


# --------------------------------------------------------------------------- ZooKeeper

ZK_TICK_MS = 2000
ZK_JVM_FLAGS = [
    "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
    # TTL nodes (CreateMode.PERSISTENT_WITH_TTL) need ZooKeeper's extended types
    "-Dzookeeper.extendedTypesEnabled=true",
    # the container/TTL reaper runs every 60 s by default; the tests wait <= 15 s
    "-Dznode.container.checkIntervalMs=1000",
    "-Dzookeeper.admin.enableServer=false",
    "-Dzookeeper.jmx.log4j.disable=true",
]


def _zk_cfg(data_dir, port, whitelist, extra=()):
    return "".join(f"{k}={v}\n" for k, v in list(extra) + [
        ("tickTime", ZK_TICK_MS),
        ("dataDir", data_dir),
        ("clientPort", port),
        ("clientPortAddress", "127.0.0.1"),
        ("admin.enableServer", "false"),
        ("4lw.commands.whitelist", whitelist),
        # no fsync per transaction: the tests do not survive a power cut
        ("forceSync", "no"),
    ])


def _zk_ready(port, whitelist):
    try:
        ans = four_letter_word("127.0.0.1", port, "ruok", timeout=1)
    except OSError:
        return False
    ruok_allowed = whitelist == "*" or "ruok" in [w.strip() for w in whitelist.split(",")]
    if not (ans == "imok" if ruok_allowed else ans != ""):
        return False
    # ZooKeeper answers ruok a moment before it serves sessions ("ZooKeeperServer
    # not running"): also require a session handshake (then closed again).
    try:
        s = RawSession("127.0.0.1", port, 10000, io_timeout=2)
    except (OSError, ValueError, struct.error):
        return False
    s.close_session()
    return s.negotiated_timeout > 0


def _start_zk(kind, workdir, config):
    whitelist = config.get("four_letter_whitelist")
    if kind == "conclave" and not os.path.exists(CONCLAVE_BIN):
        pytest.fail(f"conclave binary not found at {CONCLAVE_BIN} (build it or set CONCLAVE_BIN)",
                    pytrace=False)
    last_err = None
    for _attempt in range(3):  # retry on a (rare) port race
        data_dir = tempfile.mkdtemp(prefix="zkdata-", dir=workdir)
        if kind == "zookeeper":
            (zkport,) = _free_ports(1)
            cfg = os.path.join(data_dir, "zoo.cfg")
            with open(cfg, "w") as f:
                extra = []
                if "max_client_cnxns" in config:
                    extra.append(("maxClientCnxns", config["max_client_cnxns"]))
                f.write(_zk_cfg(data_dir, zkport, whitelist or "*", extra))
            # A later -D of the same property wins over ZK_JVM_FLAGS' one.
            reaper = ([f"-Dznode.container.checkIntervalMs={config['container_check_ms']}"]
                      if "container_check_ms" in config else [])
            argv = [JAVA] + ZK_JVM_FLAGS + reaper + ["-cp", ZOOKEEPER_CLASSPATH,
                                                     "org.apache.zookeeper.server.ZooKeeperServerMain", cfg]
        else:
            cport, pport, zkport = _free_ports(3)
            argv = [CONCLAVE_BIN] + _etcd_flags(data_dir, cport, pport) + [
                "--zk-listen", f"127.0.0.1:{zkport}", "--zk-tick-time", str(ZK_TICK_MS)]
            if whitelist is not None:
                argv += ["--zk-4lw-whitelist", whitelist]
            if "max_client_cnxns" in config:
                argv += ["--maxClientCnxns", str(config["max_client_cnxns"])]
            if "container_check_ms" in config:
                argv += ["--zk-container-check-interval", str(config["container_check_ms"])]
            argv += shlex.split(os.environ.get("CONCLAVE_ZK_FLAGS", ""))
        log_path = os.path.join(workdir, f"{kind}-zk-{zkport}.log")
        # no stray settings from the environment: etcd's, conclave's ZooKeeper
        # ones (CONCLAVE_ZK_FLAGS is the way to add flags), zkEnv's JVM flags
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith(("ETCD_", "ETCDCTL_", "CONCLAVE_ZK_")) or k in ("JVMFLAGS", "SERVER_JVMFLAGS"))}

        def launch(argv=argv, env=env, data_dir=data_dir, log_path=log_path):
            # appends, so a restarted server's log follows the first run's
            with open(log_path, "ab") as log:
                return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, cwd=data_dir, start_new_session=True)

        def ready(zkport=zkport):
            return _port_open(zkport) and _zk_ready(zkport, whitelist or "*")

        proc = launch()
        zk = ZkServer(kind, zkport, proc, log_path, data_dir, workdir, relaunch=(launch, ready))
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if ready():
                return zk
            time.sleep(0.05)
        tail = zk.log_tail(3000)
        zk.stop()
        last_err = (f"{kind} did not answer ruok on 127.0.0.1:{zkport} "
                    f"(exit={proc.returncode}); log tail:\n{tail}")
        if proc.returncode is None:
            break  # it ran but never became ready: not a port race
    pytest.fail(last_err, pytrace=False)


@pytest.fixture
def zk(request, tmp_path):
    """A fresh ZooKeeper-protocol server (zk_util.ZkServer), stopped at
    teardown together with every client it handed out."""
    marker = request.node.get_closest_marker("zk_config")
    config = dict(marker.kwargs) if marker else {}
    srv = _start_zk(request.param, str(tmp_path), config)
    try:
        yield srv
    finally:
        srv.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            # shown under "Captured stdout teardown" of the failing test
            print(f"--- last lines of the {srv.kind} server log ({srv.log_path}):\n{srv.log_tail()}")
