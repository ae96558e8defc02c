"""The Rust `zookeeper-client` crate (0.11.2, crates.io, with its `tokio`
runtime feature) against the server: the scenario binary of the separate cargo
project compat-tests/rust-zk-client (built once per session into
<repo>/target/rust-zk-client) runs against a fresh server of each kind.

It connects two sessions and goes through create (persistent, ephemeral,
persistent/ephemeral sequential, container, TTL; NodeExists, NoNode,
NoChildrenForEphemerals), mkdir, list/get_children, count_descendants_number,
list_ephemerals, get/set_data with versions (BadVersion), check_stat, get_acl,
sync, one-shot watches (data, exists, children, deletion: the event comes
after the OTHER session's write), persistent and persistent recursive watches
(addWatch) and their removal (removeWatches), multi (MultiWriter: check,
create, set, delete; a failing one applies nothing; CheckWriter), multi read
(MultiReader), the crate's Curator-compatible lock recipe contended by both
sessions, a session close dropping its ephemerals (watched from the other
session), and deletes (BadVersion, NotEmpty, NoNode).

It prints one line per step, built only from what is deterministic on any
correct server (no session ids, zxids or times; ephemeral owners as
self/other/none).  EXPECTED is what it printed against the real ZooKeeper
3.8.0 (Debian's jars); re-validate with
`COMPAT_ZK_TARGETS=zookeeper pytest test_rust_zk_client.py`.

ZooKeeper 3.8.0 facts this pins:
  * a create inside a multi answers without a stat (the crate reports an
    invalid Stat, all -1: ZOOKEEPER-4026, fixed in 3.8.2), while setData in a
    multi has its stat;
  * the sequence suffix is the parent's cversion (`seq-0000000001` after one
    ephemeral child);
  * watch notifications carry no zxid (a 3.9 feature), so `zxid=none`;
  * a child watch on a node that is deleted fires NodeDeleted.
"""

import subprocess

import pytest

from compat_util import build_rust_scenario


@pytest.fixture(scope="session")
def zk_scenario_binary():
    return build_rust_scenario("rust-zk-client", "zk-client-scenario")


EXPECTED = """\
connect a: state=SyncConnected session_timeout_ms=10000
connect b: state=SyncConnected distinct session=true
create /rz: ok version=0 cversion=0 aversion=0 owner=none dataLength=4 numChildren=0 seq=-1
create /rz again: err NodeExists
create without parent: err NoNode
create ephemeral: ok version=0 cversion=0 aversion=0 owner=self dataLength=1 numChildren=0
check_stat ephemeral from b: ok version=0 cversion=0 aversion=0 owner=other dataLength=1 numChildren=0
create child of ephemeral: err NoChildrenForEphemerals
create persistent sequential: ok seq=0000000001 version=0 cversion=0 aversion=0 owner=none dataLength=2 numChildren=0
create persistent sequential: ok seq=0000000002 version=0 cversion=0 aversion=0 owner=none dataLength=2 numChildren=0
create ephemeral sequential: ok seq=0000000003 version=0 cversion=0 aversion=0 owner=self dataLength=0 numChildren=0
create container: ok seq=-1 version=0 cversion=0 aversion=0 owner=none dataLength=1 numChildren=0
create ttl: ok seq=-1 version=0 cversion=0 aversion=0 owner=none dataLength=1 numChildren=0
mkdir /rz/dir/x/y: ok
list_children /rz: ok ["box", "dir", "eph", "eseq-0000000003", "seq-0000000001", "seq-0000000002", "ttl"]
get_children /rz: ok 7 version=0 cversion=7 aversion=0 owner=none dataLength=4 numChildren=7
list_children missing: err NoNode
count_descendants_number /rz: ok 9
list_ephemerals /rz from a: ok ["/rz/eph", "/rz/eseq-0000000003"]
list_ephemerals / from b: ok []
get_data /rz: ok root version=0 cversion=7 aversion=0 owner=none dataLength=4 numChildren=7
set_data version 0: ok version=1 cversion=7 aversion=0 owner=none dataLength=2 numChildren=7 mzxid>czxid=true
set_data stale version: err BadVersion
set_data any version: ok version=2 cversion=7 aversion=0 owner=none dataLength=2 numChildren=7
set_data missing: err NoNode
get_data /rz from b: ok v2 version=2 same czxid=true
get_data missing: err NoNode
check_stat /rz: ok version=2 cversion=7 aversion=0 owner=none dataLength=2 numChildren=7
check_stat missing: ok None
get_acl /rz: ok ["world:anyone=ALL"] version=2 cversion=7 aversion=0 owner=none dataLength=2 numChildren=7
sync /rz: ok
watch data: got v2 ; b set_data ok version=3
  event: NodeDataChanged path=/rz state=SyncConnected zxid=none
watch exists: stat None ; b create ok
  event: NodeCreated path=/rz/new state=SyncConnected zxid=none
watch children: 8 children ; b create ok
  event: NodeChildrenChanged path=/rz state=SyncConnected zxid=none
watch deletion: b delete ok
  event: NodeDeleted path=/rz/new state=SyncConnected zxid=none
child watch on a deleted node: b delete ok
  event: NodeDeleted path=/rz/kid state=SyncConnected zxid=none
watch persistent /rz/pw: ok
  event: NodeCreated path=/rz/pw state=SyncConnected zxid=none
  event: NodeChildrenChanged path=/rz/pw state=SyncConnected zxid=none
  event: NodeDataChanged path=/rz/pw state=SyncConnected zxid=none
  event: NodeChildrenChanged path=/rz/pw state=SyncConnected zxid=none
  remove: ok
watch persistent recursive /rz/tree: ok
  event: NodeCreated path=/rz/tree state=SyncConnected zxid=none
  event: NodeCreated path=/rz/tree/x state=SyncConnected zxid=none
  event: NodeCreated path=/rz/tree/x/y state=SyncConnected zxid=none
  event: NodeDataChanged path=/rz/tree/x/y state=SyncConnected zxid=none
  event: NodeDeleted path=/rz/tree/x/y state=SyncConnected zxid=none
  remove: ok
version of /rz before multi: 3
multi: ok 6 results
  Check
  Create /rz/m1 version=-1 cversion=-1 aversion=-1 owner=none dataLength=0 numChildren=0
  Create /rz/ms-0000000012 version=-1 cversion=-1 aversion=-1 owner=none dataLength=0 numChildren=0
  SetData version=1 cversion=0 aversion=0 owner=none dataLength=2 numChildren=0
  Create /rz/me version=-1 cversion=-1 aversion=-1 owner=none dataLength=0 numChildren=0
  Delete
failing multi: err OperationFailed { index: 1, source: BadVersion }
after failing multi: /rz/m2 ok None
empty multi: ok []
check writer with a wrong version: err CheckFailed { source: BadVersion }
multi read: ok 3 results
  Data m2 version=1 cversion=0 aversion=0 owner=none dataLength=2 numChildren=0
  Children ["x"]
  Error NoNode
a lock: ok /rz/locks/_c_<uuid>-lock-0000000000
b lock blocked while a holds it: true
lock nodes: ok 2
b lock after a released: ok /rz/locks/_c_<uuid>-lock-0000000001
b lock node: ok b version=0 cversion=0 aversion=0 owner=self dataLength=1 numChildren=0
lock nodes after both released: 0
list_ephemerals / from b: ok []
list_ephemerals / from a: ok ["/rz/eseq-0000000003", "/rz/me"]
b watches a's ephemeral: version=0 cversion=0 aversion=0 owner=other dataLength=0 numChildren=0
  a dropped: state Closed
  event: NodeDeleted path=/rz/me state=SyncConnected zxid=none
children of /rz after a's session closed: ok ["box", "dir", "locks", "m1", "ms-0000000012", "pw", "seq-0000000001", "seq-0000000002", "tree", "ttl"]
delete wrong version: err BadVersion
delete non-empty: err NotEmpty
delete right version: ok
delete missing: err NoNode
delete the tree (13 nodes): failures []
check_stat /rz after delete: ok None
list_children /: ok ["zookeeper"]
all steps done
"""


# the first run may include the cold build of zookeeper-client and tokio (minutes on 2 cores)
@pytest.mark.timeout(1800)
def test_rust_zk_client_scenario(zk_scenario_binary, zk):
    cp = subprocess.run([zk_scenario_binary, zk.hosts], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        stdin=subprocess.DEVNULL, timeout=180)
    out = cp.stdout.decode("utf-8", "replace")
    err = cp.stderr.decode("utf-8", "replace")
    print(out)
    if err.strip():
        print("--- stderr:\n" + err[-6000:])
    assert out.splitlines() == EXPECTED.splitlines(), \
        f"zookeeper-client output on {zk.kind} differs from ZooKeeper's"
    assert cp.returncode == 0
