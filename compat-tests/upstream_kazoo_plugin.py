"""pytest plugin loaded (``-p upstream_kazoo_plugin``) into the run of kazoo 2.11.0's
OWN test suite (the ``kazoo/tests`` package that ships in kazoo's wheel) by
test_upstream_kazoo.py.  It changes no test, only the environment the upstream
suite was written for (a 3-member ZooKeeper ensemble that kazoo's harness starts
itself from ZOOKEEPER_PATH / ZOOKEEPER_CLASSPATH, see kazoo/testing/harness.py):

* ``kazoo.testing.harness.get_global_cluster()`` -- what KazooTestHarness.cluster,
  KazooTestCase.tearDownClass and everything else in the harness asks for the
  cluster -- returns ONE server of the kind named by UPSTREAM_KAZOO_TARGET:

    zookeeper  the real ZooKeeper (Debian's 3.8.0 jars, ZOOKEEPER_CLASSPATH),
               standalone: ``java ... org.apache.zookeeper.server.ZooKeeperServerMain
               zoo.cfg`` with a generated zoo.cfg (see _zoo_cfg)
    conclave   CONCLAVE_BIN with its etcd flags on two ports of its own plus
               ``--zk-listen 127.0.0.1:PORT --zk-tick-time 2000`` (plus
               ``--zk-sasl-users`` for ZOOKEEPER_JAAS_AUTH=digest, see below, and the
               words of CONCLAVE_ZK_FLAGS, if set)

  The object behaves like upstream's ZookeeperCluster / ManagedZooKeeper (the
  parts the tests touch): iterating it gives one server with ``address``,
  ``client_port``, ``running``, ``run()`` (start; keeps the data of an earlier
  run), ``stop()`` (SIGTERM, data kept), ``reset()`` / ``destroy()`` (stop and
  wipe the data), ``get_logs()``; the cluster's ``start()`` runs it and waits
  until it is ready (ruok answers imok and a session handshake succeeds)
  instead of upstream's fixed 2 s sleep; ``terminate()`` destroys it (upstream
  calls that in every KazooTestCase.tearDownClass, so each test class gets a
  fresh, empty server, as upstream).  The client port (and conclave's etcd
  ports) are chosen once per run and kept across restarts, so a client that
  saw the server go away finds it again at the same address.
  ``get_ssl_client_configuration()`` raises: no TLS port is served.

  SASL, as upstream's harness: ZooKeeper always gets the SASL auth provider
  (``authProvider.1=...SASLAuthenticationProvider``) and a JAAS file
  (``-Djava.security.auth.login.config``), empty unless ZOOKEEPER_JAAS_AUTH is
  set when the cluster is asked for (test_sasl.py sets it in setUp):
  ``digest`` gives the DigestLoginModule with users super and jaasuser,
  ``gssapi`` the Krb5LoginModule with the test KDC's keytab for
  zookeeper/127.0.0.1@KAZOOTEST.ORG (plus -Djava.security.krb5.conf).  When the
  variable changes, the server is destroyed and a new one made, as upstream
  ("Config change detected").  Conclave gets the same digest users as
  ``--zk-sasl-users super:super_secret,jaasuser:jaas_password`` (its mirror of the
  JAAS file's user_<name> lines, see _conclave_sasl_flags), and for ``gssapi``
  the same server keytab as ``--zk-sasl-keytab`` (KRB5_CONFIG in its environment).
  The test KDC (MIT krb5kdc, like kazoo's init_krb5.sh: realm KAZOOTEST.ORG,
  keytabs and krb5.conf in UPSTREAM_KAZOO_WORKDIR/kerberos = KRB5_TEST_ENV)
  runs only when TestSASLGSSAPIAuthentication is selected.
  ZOOKEEPER_LOCAL_SESSION_RO (only TestReadOnlyMode, deselected) is ignored.

* test_build.py alone runs with CI=true and ZOOKEEPER_VERSION=3.8.0, as on
  kazoo's CI: it checks that the server reports that version; every other test
  runs with CI unset, so upstream asks the server its version (``envi``).

* kazoo's test-only dependencies (pyOpenSSL, pyjks, objgraph, eventlet,
  gevent, pure-sasl, kerberos) come from compat-tests/requirements.txt; none
  is stood in for.

* When UPSTREAM_KAZOO_RESULTS names a file, the outcome of every test is written
  there as JSON at the end of the run: {nodeid: {"outcome": "passed" | "failed" |
  "skipped", "message": the failure's last "E ..." lines / the skip reason}}
  (a setup or teardown error counts as failed).

The server's output goes to UPSTREAM_KAZOO_WORKDIR/<kind>.log (all its runs, one
after another); its data lives in UPSTREAM_KAZOO_WORKDIR/<kind>-data; while it
runs, its pid (also its process group: it has a session of its own) is in
UPSTREAM_KAZOO_WORKDIR/<kind>.pid, and the KDC's in kdc.pid (its log: kdc.log
and kerberos/krb5kdc/), for test_upstream_kazoo.py to clean up after a run that
had to be killed.
"""

import atexit
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import types

import pytest

from compat_util import free_ports, stop_process_group
from zk_util import four_letter_word

TARGET = os.environ.get("UPSTREAM_KAZOO_TARGET", "")
WORKDIR = os.environ.get("UPSTREAM_KAZOO_WORKDIR") or tempfile.mkdtemp(prefix="upstream-kazoo-")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONCLAVE_BIN = os.environ.get("CONCLAVE_BIN", os.path.join(REPO, "target", "debug", "conclave"))
JAVA = os.environ.get("JAVA", "java")
ZOOKEEPER_CLASSPATH = os.environ.get(
    "ZOOKEEPER_CLASSPATH", "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar")
STARTUP_TIMEOUT = float(os.environ.get("COMPAT_STARTUP_TIMEOUT", "30"))
RESULTS = os.environ.get("UPSTREAM_KAZOO_RESULTS")
TICK_MS = 2000
# the version of Debian's ZooKeeper jars: what upstream's test_build expects the
# server to report (kazoo's CI sets ZOOKEEPER_VERSION to the version it installed)
ZOOKEEPER_VERSION = "3.8.0"
KRB5_REALM = "KAZOOTEST.ORG"

ZK_JVM_FLAGS = [
    "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
    # upstream's ManagedZooKeeper: digest auth packets decoded as UTF-8
    "-Dfile.encoding=UTF-8",
    # TTL nodes (CreateMode.PERSISTENT_WITH_TTL) need ZooKeeper's extended types
    "-Dzookeeper.extendedTypesEnabled=true",
    # the container/TTL reaper: every second, like conclave's default
    "-Dznode.container.checkIntervalMs=1000",
    "-Dzookeeper.admin.enableServer=false",
    "-Dzookeeper.jmx.log4j.disable=true",
    # what upstream's harness gives ZooKeeper >= 3.5: the superuser "super",
    # password "test" (TestReconfig::test_add_remove_observer authenticates as it)
    "-Dzookeeper.DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=",
]


def _zoo_cfg(data_dir, port):
    return "".join(f"{k}={v}\n" for k, v in [
        ("tickTime", TICK_MS),
        ("dataDir", data_dir),
        ("clientPort", port),
        ("clientPortAddress", "127.0.0.1"),
        # upstream's harness: no per-address connection limit (ZooKeeper's
        # default is 60; some lock tests open many clients)
        ("maxClientCnxns", 0),
        # upstream's ManagedZooKeeper always enables the SASL provider; its
        # JAAS "Server" section (java.security.auth.login.config) is empty
        # unless ZOOKEEPER_JAAS_AUTH asks for one (see _jaas_config)
        ("authProvider.1", "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"),
        ("admin.enableServer", "false"),
        ("4lw.commands.whitelist", "*"),
        # upstream's harness adds these two for ZooKeeper >= 3.5
        ("reconfigEnabled", "true"),
        ("localSessionsEnabled", "false"),
        # no fsync per transaction: the tests do not survive a power cut
        ("forceSync", "no"),
    ])


# upstream harness's DigestLoginModule users (test_sasl.py logs in as jaasuser)
DIGEST_USERS = {"super": "super_secret", "jaasuser": "jaas_password"}


def _jaas(jaas_auth):
    """What upstream's harness.get_global_cluster() gives ZooKeeper for
    ZOOKEEPER_JAAS_AUTH: (the JAAS file's text, extra JVM system properties)."""
    if jaas_auth == "digest":
        users = "".join(f'\n    user_{u}="{p}"' for u, p in DIGEST_USERS.items())
        return ("Server {\n"
                "    org.apache.zookeeper.server.auth.DigestLoginModule required"
                f"{users};\n"
                "};\n"), []
    if jaas_auth == "gssapi":
        # the test KDC's server keytab (_start_kdc, like kazoo's init_krb5.sh)
        krb5_dir = os.environ.get("KRB5_TEST_ENV", "")
        return ("Server {\n"
                "  com.sun.security.auth.module.Krb5LoginModule required\n"
                "  debug=true\n"
                "  isInitiator=false\n"
                "  useKeyTab=true\n"
                f'  keyTab="{krb5_dir}/server.keytab"\n'
                "  storeKey=true\n"
                "  useTicketCache=false\n"
                f'  principal="zookeeper/127.0.0.1@{KRB5_REALM}";\n'
                "};\n"), [f"-Djava.security.krb5.conf={os.environ.get('KRB5_CONFIG', '')}",
                           "-Dsun.security.krb5.debug=true"]
    return "", []


def _conclave_sasl_flags(jaas_auth):
    """Conclave's flags for ZOOKEEPER_JAAS_AUTH: the users _jaas gives ZooKeeper's
    DigestLoginModule, as --zk-sasl-users (its mirror of user_<name>="<password>"),
    or the keytab it gives the Krb5LoginModule, as --zk-sasl-keytab."""
    if jaas_auth == "digest":
        return ["--zk-sasl-users", ",".join(f"{u}:{p}" for u, p in DIGEST_USERS.items())]
    if jaas_auth == "gssapi":
        # the Krb5LoginModule's keyTab (_jaas); its principal is the keytab's only one
        return ["--zk-sasl-keytab", os.path.join(os.environ.get("KRB5_TEST_ENV", ""), "server.keytab")]
    return []


def _session_handshake(port, timeout=2.0):
    """A ConnectRequest (protocol 0, timeout 10 s, new session) answered with a
    positive negotiated timeout; the session is closed again at once.
    ZooKeeper answers ruok a moment before it serves sessions."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        body = struct.pack(">iqiqi", 0, 0, 10000, 0, 16) + b"\0" * 16 + b"\0"
        s.sendall(struct.pack(">i", len(body)) + body)

        def recv_exact(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            return buf

        (n,) = struct.unpack(">i", recv_exact(4))
        resp = recv_exact(n)
        _proto, negotiated = struct.unpack_from(">ii", resp, 0)
        if negotiated <= 0:
            return False
        close = struct.pack(">ii", 1, -11)  # xid 1, OpCode.closeSession
        s.sendall(struct.pack(">i", len(close)) + close)
        try:
            recv_exact(4)
        except (ConnectionError, OSError):
            pass
        return True


def _ready(port):
    try:
        return four_letter_word("127.0.0.1", port, "ruok", timeout=1.0) == "imok" and _session_handshake(port)
    except (OSError, ValueError, struct.error):
        return False


ServerInfo = types.SimpleNamespace


class SingleServer:
    """One server speaking the ZooKeeper protocol on 127.0.0.1, shaped like
    kazoo.testing.common.ManagedZooKeeper."""

    def __init__(self, kind, workdir, jaas_auth=None):
        if kind not in ("conclave", "zookeeper"):
            raise RuntimeError(f"UPSTREAM_KAZOO_TARGET must be conclave or zookeeper, not {kind!r}")
        self.kind = kind
        self.jaas_auth = jaas_auth
        self.host = "127.0.0.1"
        self.workdir = workdir
        self.data_dir = os.path.join(workdir, f"{kind}-data")
        self.log_path = os.path.join(workdir, f"{kind}.log")
        self.pid_path = os.path.join(workdir, f"{kind}.pid")
        self.process = None
        self._running = False
        self._pick_ports()

    def _pick_ports(self):
        if self.kind == "zookeeper":
            (self.zk_port,) = free_ports(1)
            self.etcd_ports = ()
        else:
            cport, pport, self.zk_port = free_ports(3)
            self.etcd_ports = (cport, pport)
        self.server_info = ServerInfo(server_id=1, client_port=self.zk_port, secure_client_port=None,
                                      election_port=None, leader_port=None, admin_port=None,
                                      peer_type="participant")

    # -- ManagedZooKeeper's interface
    @property
    def address(self):
        return f"{self.host}:{self.zk_port}"

    @property
    def secure_address(self):
        return self.address  # no TLS port; TestSSLClient is deselected

    @property
    def client_port(self):
        return self.zk_port

    @property
    def secure_client_port(self):
        return None

    @property
    def running(self):
        return self._running

    def _argv(self):
        if self.kind == "zookeeper":
            cfg = os.path.join(self.data_dir, "zoo.cfg")
            with open(cfg, "w") as f:
                f.write(_zoo_cfg(self.data_dir, self.zk_port))
            jaas_text, jaas_props = _jaas(self.jaas_auth)
            jaas_path = os.path.join(self.data_dir, "jaas.conf")
            with open(jaas_path, "w") as f:
                f.write(jaas_text)
            return ([JAVA] + ZK_JVM_FLAGS
                    + [f"-Djava.security.auth.login.config={jaas_path}"] + jaas_props
                    + ["-cp", ZOOKEEPER_CLASSPATH, "org.apache.zookeeper.server.ZooKeeperServerMain", cfg])
        cport, pport = self.etcd_ports
        client, peer = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}"
        return [CONCLAVE_BIN,
                "--data-dir", self.data_dir,
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"default={peer}",
                "--zk-listen", f"127.0.0.1:{self.zk_port}", "--zk-tick-time", str(TICK_MS),
                # as the zoo.cfg above: no per-address connection limit
                "--maxClientCnxns", "0",
                ] + _conclave_sasl_flags(self.jaas_auth) + shlex.split(os.environ.get("CONCLAVE_ZK_FLAGS", ""))

    def run(self):
        if self._running:
            return
        fresh = not os.path.isdir(self.data_dir)
        last_err = None
        for _attempt in range(3):
            os.makedirs(self.data_dir, exist_ok=True)
            argv = self._argv()
            env = {k: v for k, v in os.environ.items()
                   if not (k.startswith(("ETCD_", "ETCDCTL_")) or k in ("JVMFLAGS", "SERVER_JVMFLAGS"))}
            with open(self.log_path, "ab") as log:
                log.write(f"\n===== {time.strftime('%H:%M:%S')} start {shlex.join(argv)}\n".encode())
                log.flush()
                self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, env=env, cwd=self.data_dir,
                                                start_new_session=True)
            with open(self.pid_path, "w") as f:
                f.write(f"{self.process.pid}\n")
            self._running = True
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while time.monotonic() < deadline and self.process.poll() is None:
                if _ready(self.zk_port):
                    return
                time.sleep(0.05)
            exit_code = self.process.poll()
            self.stop()
            last_err = (f"{self.kind} did not become ready on {self.address} (exit={exit_code}); "
                        f"log tail:\n{''.join(self.get_logs(40))}")
            if exit_code is None or not fresh:
                break  # it ran but never became ready, or it must keep its port: not a port race
            shutil.rmtree(self.data_dir, True)
            self._pick_ports()
        raise RuntimeError(last_err)

    def stop(self):
        if not self._running:
            return
        self._running = False
        proc, self.process = self.process, None
        try:
            if proc is not None:
                stop_process_group(proc, grace_s=15)
        finally:
            try:
                os.unlink(self.pid_path)
            except OSError:
                pass

    def reset(self):
        self.stop()
        shutil.rmtree(self.data_dir, True)

    def destroy(self):
        self.reset()

    def get_logs(self, num_lines=100):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read()[-200_000:].decode("utf-8", "replace").splitlines(keepends=True)
        except OSError:
            return []
        return lines[-num_lines:]


class SingleServerCluster:
    """kazoo.testing.common.ZookeeperCluster with one member."""

    def __init__(self, kind, workdir, jaas_auth=None):
        self.jaas_auth = jaas_auth
        self._servers = [SingleServer(kind, workdir, jaas_auth)]

    def __getitem__(self, k):
        return self._servers[k]

    def __iter__(self):
        return iter(self._servers)

    def __len__(self):
        return len(self._servers)

    def start(self):
        for s in self._servers:
            s.run()

    def stop(self):
        for s in self._servers:
            s.stop()

    def terminate(self):
        for s in self._servers:
            s.destroy()

    def reset(self):
        for s in self._servers:
            s.reset()

    def get_logs(self):
        return [line for s in self._servers for line in s.get_logs()]

    def get_ssl_client_configuration(self):
        raise RuntimeError("no TLS in the single-server setup of test_upstream_kazoo.py")


_CLUSTER = None


def get_global_cluster():
    """As upstream's: the cluster for the current ZOOKEEPER_JAAS_AUTH; when that
    changed (test_sasl.py sets it in setUp and pops it in tearDown), the old
    server is destroyed and a new one made ("Config change detected")."""
    global _CLUSTER
    jaas_auth = os.environ.get("ZOOKEEPER_JAAS_AUTH") or None
    if _CLUSTER is not None and _CLUSTER.jaas_auth != jaas_auth:
        _CLUSTER.terminate()
        _CLUSTER = None
    if _CLUSTER is None:
        _CLUSTER = SingleServerCluster(TARGET, WORKDIR, jaas_auth)
    return _CLUSTER


def _terminate_cluster():
    if _CLUSTER is not None:
        _CLUSTER.terminate()


atexit.register(_terminate_cluster)


# -- the test KDC for test_sasl.py::TestSASLGSSAPIAuthentication

_KDC = None
KDC_PID_PATH = os.path.join(WORKDIR, "kdc.pid")


def _sbin(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def _start_kdc():
    """What kazoo's CI does around its suite (init_krb5.sh, run by tox's "sasl"
    environment): a throw-away MIT Kerberos KDC for the realm KAZOOTEST.ORG on a
    port of 127.0.0.1, principals client@ and zookeeper/127.0.0.1@ with their
    keytabs in KRB5_TEST_ENV, and KRB5_CONFIG pointing at its krb5.conf.  The
    tickets of the tests' kinit go to a cache of its own (KRB5CCNAME).  Returns
    None, or why there is no KDC (the Kerberos tools are not installed)."""
    global _KDC
    tools = {name: _sbin(name) for name in ("krb5kdc", "kdb5_util", "kadmin.local", "kinit")}
    missing = sorted(name for name, path in tools.items() if not path)
    if missing:
        return f"no {', '.join(missing)} (Debian: krb5-kdc krb5-admin-server krb5-user)"
    base = os.path.join(WORKDIR, "kerberos")
    kdc_dir = os.path.join(base, "krb5kdc")
    shutil.rmtree(base, True)
    os.makedirs(kdc_dir)
    (port,) = free_ports(1)
    conf_path = os.path.join(base, "krb5.conf")
    with open(conf_path, "w") as f:
        f.write(f"""[logging]
 default = FILE:{kdc_dir}/krb5libs.log
 kdc = FILE:{kdc_dir}/krb5kdc.log
 admin_server = FILE:{kdc_dir}/kadmind.log

[libdefaults]
 dns_lookup_realm = false
 ticket_lifetime = 24h
 renew_lifetime = 7d
 forwardable = true
 rdns = false
 default_realm = {KRB5_REALM}

[realms]
 {KRB5_REALM} = {{
  database_name = {kdc_dir}/principal
  admin_keytab = FILE:{kdc_dir}/kadm5.keytab
  key_stash_file = {kdc_dir}/stash
  kdc_listen = 127.0.0.1:{port}
  kdc_tcp_listen = 127.0.0.1:{port}
  kdc = 127.0.0.1:{port}
  default_domain = kazootest.org
 }}

[domain_realm]
 .kazootest.org = {KRB5_REALM}
 kazootest.org = {KRB5_REALM}
""")
    env = dict(os.environ, KRB5_CONFIG=conf_path, KRB5_KDC_PROFILE=conf_path)
    log_path = os.path.join(WORKDIR, "kdc.log")

    def run(argv, stdin):
        with open(log_path, "ab") as log:
            log.write(f"\n===== {shlex.join(argv)}\n".encode())
            log.flush()
            subprocess.run(argv, input=stdin.encode(), stdout=log, stderr=subprocess.STDOUT,
                           env=env, check=True, timeout=60)

    run([tools["kdb5_util"], "create", "-s"], "passwd123\npasswd123\n")
    run([tools["kadmin.local"]],
        f"add_principal -randkey client@{KRB5_REALM}\n"
        f"ktadd -k {base}/client.keytab -norandkey client@{KRB5_REALM}\n"
        f"add_principal -randkey zookeeper/127.0.0.1@{KRB5_REALM}\n"
        f"ktadd -k {base}/server.keytab -norandkey zookeeper/127.0.0.1@{KRB5_REALM}\n"
        "quit\n")
    with open(log_path, "ab") as log:
        _KDC = subprocess.Popen([tools["krb5kdc"], "-n", "-P", os.path.join(kdc_dir, "kdc.pid"),
                                 "-p", str(port), "-r", KRB5_REALM],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    with open(KDC_PID_PATH, "w") as f:
        f.write(f"{_KDC.pid}\n")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if _KDC.poll() is not None or time.monotonic() > deadline:
                _stop_kdc()
                raise RuntimeError(f"the test KDC did not start on 127.0.0.1:{port}; see {log_path}")
            time.sleep(0.05)
    os.environ.update({
        "KRB5_TEST_ENV": base,
        "KRB5_CONFIG": conf_path,
        "KRB5CCNAME": "FILE:" + os.path.join(base, "ccache"),
    })
    return None


def _stop_kdc():
    global _KDC
    kdc, _KDC = _KDC, None
    if kdc is None:
        return
    if kdc.poll() is None:
        os.killpg(kdc.pid, signal.SIGTERM)
        try:
            kdc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(kdc.pid, signal.SIGKILL)
            kdc.wait()
    try:
        os.unlink(KDC_PID_PATH)
    except OSError:
        pass


atexit.register(_stop_kdc)


def pytest_configure(config):
    if not TARGET:
        return
    import kazoo.testing.harness as harness

    harness.get_global_cluster = get_global_cluster


GSSAPI_CLASS = "kazoo/tests/test_sasl.py::TestSASLGSSAPIAuthentication::"


def pytest_collection_modifyitems(session, config, items):
    # the KDC only when the GSSAPI tests run (not for a retry of other tests)
    if TARGET and any(item.nodeid.startswith(GSSAPI_CLASS) for item in items):
        why_not = _start_kdc()
        if why_not:
            sys.stderr.write(f"upstream_kazoo_plugin: no test KDC: {why_not}\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """test_build.py checks only on CI (CI set) that the server reports the
    ZooKeeper version CI installed (ZOOKEEPER_VERSION): given to that test alone,
    so that every other test keeps asking the server for its version (envi)
    instead of trusting ZOOKEEPER_VERSION (kazoo.tests.util.CI_ZK_VERSION)."""
    if not (TARGET and item.nodeid.startswith("kazoo/tests/test_build.py::")):
        yield
        return
    saved = {k: os.environ.get(k) for k in ("CI", "ZOOKEEPER_VERSION")}
    os.environ.update({"CI": "true", "ZOOKEEPER_VERSION": ZOOKEEPER_VERSION})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pytest_unconfigure(config):
    _terminate_cluster()
    _stop_kdc()


# -- outcomes for test_upstream_kazoo.py

_results = {}


def _message(report):
    if report.skipped:
        lr = report.longrepr
        reason = str(lr[2] if isinstance(lr, tuple) and len(lr) == 3 else lr)
        return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason
    text = report.longreprtext or ""
    errs = [line for line in text.splitlines() if line.startswith("E ")]
    return "\n".join(errs[:12]) if errs else "\n".join(text.splitlines()[-12:])


def pytest_runtest_logreport(report):
    if not RESULTS:
        return
    cur = _results.get(report.nodeid)
    if report.failed:
        if cur is None or cur["outcome"] != "failed":
            msg = _message(report)
            if report.when != "call":
                msg = f"[{report.when}] {msg}"
            _results[report.nodeid] = {"outcome": "failed", "message": msg}
    elif report.skipped:
        if cur is None:
            _results[report.nodeid] = {"outcome": "skipped", "message": _message(report)}
    elif report.when == "call" and cur is None:
        _results[report.nodeid] = {"outcome": "passed", "message": ""}


def pytest_sessionfinish(session, exitstatus):
    if RESULTS:
        with open(RESULTS, "w") as f:
            json.dump(_results, f, indent=1, sort_keys=True)
