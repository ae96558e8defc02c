"""etcdctl snapshot save / status / restore: the snapshot is etcd's bbolt file, so a Conclave
snapshot restores into a real etcd (a migration path), and the restored etcd serves the same
keys, values, leases and revision."""

import os
import re
import subprocess
import time

from conftest import _free_ports


def _fill(server):
    for i in range(30):
        server.ok("put", f"snap/{i:02d}", f"value-{i}")
    server.ok("del", "snap/05")
    server.ok("put", "snap/01", "changed")


def test_snapshot_save_and_status(server, tmp_path):
    _fill(server)
    path = str(tmp_path / "snap.db")
    rc, out, err = server.etcdctl("snapshot", "save", path)
    assert (rc, out) == (0, f"Snapshot saved at {path}\n")
    # The file ends with the SHA-256 of what precedes it, as etcd sends it.
    size = os.path.getsize(path)
    assert size % 512 == 32
    rc, out, err = server.etcdctl("snapshot", "status", path, "-w", "json")
    assert rc == 0, err
    st = __import__("json").loads(out)
    assert st["revision"] == 33
    assert st["totalKey"] >= 32, "every kept revision of the key bucket is counted"


def test_snapshot_restores_into_real_etcd(server, tmp_path):
    _fill(server)
    lease_out = server.ok("lease", "grant", "900")
    lease_id = re.match(r"lease ([0-9a-f]+) granted", lease_out).group(1)
    server.ok("put", "snap/leased", "v", f"--lease={lease_id}")
    path = str(tmp_path / "snap.db")
    assert server.etcdctl("snapshot", "save", path)[0] == 0
    data = str(tmp_path / "restored")
    client, peer = _free_ports(2)
    peer_url = f"http://127.0.0.1:{peer}"
    env = dict(os.environ, ETCDCTL_API="3")
    r = subprocess.run(["etcdctl", "snapshot", "restore", path, "--data-dir", data, "--name", "default",
                        "--initial-cluster", f"default={peer_url}", "--initial-advertise-peer-urls", peer_url],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    etcd = subprocess.Popen(["/usr/bin/etcd", "--name", "default", "--data-dir", data,
                             "--listen-client-urls", f"http://127.0.0.1:{client}",
                             "--advertise-client-urls", f"http://127.0.0.1:{client}",
                             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                             "--initial-cluster", f"default={peer_url}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def ctl(*args):
            return subprocess.run(["etcdctl", f"--endpoints=127.0.0.1:{client}", *args], env=env,
                                  capture_output=True, text=True, timeout=20)
        deadline = time.time() + 20
        while ctl("endpoint", "health").returncode != 0:
            assert time.time() < deadline, "restored etcd did not come up"
            time.sleep(0.2)
        ours = server.ok("get", "snap/", "--prefix", "-w", "fields")
        theirs = ctl("get", "snap/", "--prefix", "-w", "fields").stdout
        strip = lambda s: [l for l in s.splitlines() if not re.match(r'"(ClusterID|MemberID|RaftTerm|Lease)"', l)]
        assert strip(theirs) == strip(ours), "the restored etcd serves the same keys, values and revisions"
        assert lease_id in ctl("lease", "list").stdout
    finally:
        etcd.kill()
        etcd.wait()
