"""One store, both views: znodes written over the ZooKeeper protocol are etcd keys under /zk/,
readable and watchable with etcdctl; a ZooKeeper session is an etcd lease; etcd writes into
/zk/ are refused (they would bypass the tree's invariants: parent counts, Stat metadata).

Conclave only: neither reference server has the other protocol. What each side sees of its
own protocol is proven against the references by the other test files.
"""

import json
import os
import subprocess
import tempfile
import time

import pytest

from compat_util import BackgroundProc, Server, _etcdctl_env
from conftest import CONCLAVE_BIN, ETCDCTL_BIN, _etcd_flags, _free_ports, _port_open
from zk_util import ZkServer, four_letter_word

REFUSED = ("conclave: keys under /zk/ are ZooKeeper znodes; change them through the ZooKeeper protocol")


@pytest.fixture
def both(tmp_path):
    """Conclave with its etcd port (a compat_util.Server) and its ZooKeeper port (a
    zk_util.ZkServer), one process."""
    yield from _both(tmp_path, [])


# A space quota a test can pass with a few ZooKeeper writes (a fresh store is ~72 KiB).
QUOTA_BYTES = 4_000_000


@pytest.fixture
def capped(tmp_path):
    """`both`, with --quota-backend-bytes QUOTA_BYTES."""
    yield from _both(tmp_path, ["--quota-backend-bytes", str(QUOTA_BYTES)])


def _both(tmp_path, extra_args):
    workdir = str(tmp_path)
    data_dir = tempfile.mkdtemp(prefix="data-", dir=workdir)
    cport, pport, zport = _free_ports(3)
    log_path = os.path.join(workdir, "conclave.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([CONCLAVE_BIN] + _etcd_flags(data_dir, cport, pport) + ["--zk-listen", f"127.0.0.1:{zport}"]
                                + extra_args,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    etcd = Server("conclave", cport, pport, data_dir, proc, log_path, ETCDCTL_BIN)
    zk = ZkServer("conclave", zport, proc, log_path, data_dir, workdir)
    deadline = time.monotonic() + 20
    while not (_port_open(zport) and four_letter_word("127.0.0.1", zport, "ruok") == "imok"):
        assert time.monotonic() < deadline and proc.poll() is None, open(log_path).read()
        time.sleep(0.05)
    try:
        yield etcd, zk
    finally:
        zk.stop()
        etcd.stop()


def test_zkcli_value_is_read_by_etcdctl(both):
    etcd, zk = both
    r = zk.zkcli("create /cfg v1", "set /cfg v2", "create /cfg/child c")
    assert r.rc == 0, r
    assert etcd.ok("get", "/zk/cfg") == "/zk/cfg\nv2\n"
    assert etcd.ok("get", "--prefix", "/zk/", "--keys-only") == "/zk/cfg\n\n/zk/cfg/child\n\n"
    # zxid == revision, and ZooKeeper's version is etcd's version - 1.
    c = zk.kazoo()
    _, st = c.get("/cfg")
    kv = json.loads(etcd.ok("get", "/zk/cfg", "-w", "json"))["kvs"][0]
    assert (kv["create_revision"], kv["mod_revision"], kv["version"]) == (st.czxid, st.mzxid, st.version + 1)


def test_etcd_writes_into_znodes_are_refused(both):
    etcd, zk = both
    zk.kazoo().create("/app", b"x")
    for args in (["put", "/zk/app", "y"], ["put", "/zk/new", "y"], ["del", "/zk/app"], ["del", "--prefix", "/zk/"],
                 ["del", "", "--from-key"]):
        rc, out, err = etcd.etcdctl(*args)
        assert rc == 1 and REFUSED in err, (args, rc, out, err)
    rc, out, err = etcd.etcdctl("txn", input='value("/zk/app") = "x"\n\nput /zk/app z\n\n\n')
    assert rc == 1 and REFUSED in err, (rc, out, err)
    assert zk.kazoo().get("/app")[0] == b"x"
    # Outside /zk/ etcd is etcd, and a range that holds no znode may still be deleted.
    etcd.ok("put", "/zkx", "1")
    assert etcd.ok("del", "/zkx") == "1\n"


def test_etcd_watch_sees_zookeeper_writes(both):
    etcd, zk = both
    w = etcd.etcdctl_bg("watch", "--prefix", "/zk/")
    time.sleep(0.5)
    c = zk.kazoo()
    c.create("/w", b"1")
    c.set("/w", b"2")
    c.delete("/w")
    assert w.read_lines(9) == ["PUT", "/zk/w", "1", "PUT", "/zk/w", "2", "DELETE", "/zk/w", ""]


def test_session_is_a_lease(both):
    etcd, zk = both
    c = zk.kazoo()
    c.create("/e", b"", ephemeral=True)
    sid = c.client_id[0]
    leases = etcd.ok("lease", "list")
    assert f"{sid:x}" in leases, leases
    kv = json.loads(etcd.ok("get", "/zk/e", "-w", "json"))["kvs"][0]
    assert kv["lease"] == sid
    # Revoking the lease through etcd ends the session: its ephemeral goes.
    # etcdctl prints the id as 16 hex digits.
    assert etcd.ok("lease", "revoke", f"{sid:x}") == f"lease {sid:016x} revoked\n"
    other = zk.kazoo()
    assert other.exists("/e") is None
    assert etcd.ok("get", "/zk/e") == ""


def test_zookeeper_writes_past_the_space_quota_raise_nospace_and_are_refused(capped):
    """etcd's space quota holds for ZooKeeper writes too: a setData that finds the backend over
    --quota-backend-bytes raises NOSPACE (etcdctl sees the alarm) and is refused with
    QuotaExceeded (-125, what ZooKeeper answers past an enforced quota), as every create and
    setData is until the alarm is disarmed, while etcd puts get etcd's own error. Reads,
    deletes and new sessions still work: a ZooKeeper client needs a session to free space."""
    from kazoo.exceptions import QuotaExceededError
    etcd, zk = capped
    c = zk.kazoo()
    c.create("/big", b"")
    blob = b"x" * 500_000
    refused_at = None
    for i in range(40):  # history keeps every value: the file passes 4 MB within ~16 sets
        try:
            c.set("/big", blob)
        except QuotaExceededError:
            refused_at = i
            break
    assert refused_at is not None and refused_at >= 4, refused_at
    rc, out, err = etcd.etcdctl("alarm", "list")
    assert rc == 0 and out.endswith(" alarm:NOSPACE \n"), (rc, out, err)
    assert c.get("/big")[1].version == refused_at, "the refused set changed nothing"
    with pytest.raises(QuotaExceededError):
        c.create("/c", b"1")
    with pytest.raises(QuotaExceededError):
        c.set("/big", b"", version=123)  # the quota is checked before the version, as ZooKeeper does
    rc, out, err = etcd.etcdctl("put", "a", "b")
    assert rc == 1 and "database space exceeded" in err, (rc, out, err)
    c2 = zk.kazoo()
    assert c2.exists("/big") is not None
    with pytest.raises(QuotaExceededError):
        c2.create("/e", b"", ephemeral=True)
    c2.delete("/big")
    assert c.exists("/big") is None

    # etcd's way out: compact the history, defragment the file, disarm the alarm.
    rev = json.loads(etcd.ok("endpoint", "status", "-w", "json"))[0]["Status"]["header"]["revision"]
    etcd.ok("compaction", str(rev))
    etcd.ok("defrag")
    assert json.loads(etcd.ok("endpoint", "status", "-w", "json"))[0]["Status"]["dbSize"] < QUOTA_BYTES
    etcd.ok("alarm", "disarm")
    c.create("/c", b"1")
    c.set("/c", b"2")
    assert c.get("/c")[0] == b"2"
