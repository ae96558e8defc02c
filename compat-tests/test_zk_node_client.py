"""node-zookeeper-client (npm 1.1.3, pure JavaScript) against the server:
compat-tests/node/zk_scenarios.js, with the package installed once per session
by `npm ci` into <repo>/target/node-client, runs one scenario per test in its
own `node` process against a fresh server of each kind (the `zk` fixture).

Why this client: it is a third, independent implementation of the protocol
(its own jute codec, not the Java or C client's), and it speaks the pre-3.4
handshake: its ConnectRequest has no read-only flag, so the ConnectResponse
must come without one too, as ZooKeeper answers an old client.

Scenarios: basic (create in every mode it knows, get/setData with versions,
exists, getChildren in the server's order, sequential names, errors, remove,
mkdirp, listSubTreeBFS, removeRecursive, ACLs with setACL versions, digest
auth and an `auth` ACL, transactions that succeed and fail), watches (exists,
data and child watches fired by another session, one-shot, the same watcher
on two reads, a session close deleting an ephemeral) and lock (the
ephemeral-sequential lock recipe node applications write by hand, contended by
three sessions, one holder's session closing).

The program prints one line per step, built only from what is deterministic on
any correct server (no session ids, zxids or times).  EXPECTED is what it
printed against the real ZooKeeper 3.8.0 (Debian's jars); re-validate with
`COMPAT_ZK_TARGETS=zookeeper pytest test_zk_node_client.py`.
"""

import hashlib
import os
import shutil
import subprocess

import pytest

from compat_util import check_scenario_output

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PACKAGE = os.path.join(HERE, "node")
SCRIPT = os.path.join(PACKAGE, "zk_scenarios.js")

SCENARIO_TIMEOUT = 150  # the program's own watchdog fires after 100 s


@pytest.fixture(scope="session")
def node_modules():
    """`npm ci` of compat-tests/node/package-lock.json into target/node-client (again only
    when the lock file changes); returns its node_modules directory."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are needed (scripts/test.sh installs Debian's nodejs and npm)", pytrace=False)
    target = os.path.join(REPO, "target", "node-client")
    os.makedirs(target, exist_ok=True)
    stamp = os.path.join(target, ".package-lock.sha256")
    with open(os.path.join(PACKAGE, "package-lock.json"), "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    modules = os.path.join(target, "node_modules")
    if os.path.isdir(modules) and os.path.exists(stamp):
        with open(stamp) as f:
            if f.read() == want:
                return modules
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(os.path.join(PACKAGE, name), os.path.join(target, name))
    cp = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=target,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=600)
    if cp.returncode != 0:
        pytest.fail("npm ci in target/node-client failed:\n" + cp.stdout.decode("utf-8", "replace")[-4000:],
                    pytrace=False)
    with open(stamp, "w") as f:
        f.write(want)
    return modules


def run_scenario(modules, zk, scenario):
    """Run one scenario; returns (rc, stdout lines, stderr)."""
    env = dict(os.environ, NODE_PATH=modules)
    cp = subprocess.run([shutil.which("node"), SCRIPT, zk.hosts, scenario], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, timeout=SCENARIO_TIMEOUT,
                        start_new_session=True)
    return cp.returncode, cp.stdout.decode("utf-8", "replace").splitlines(), cp.stderr.decode("utf-8", "replace")


EXPECTED = {
    "basic": [
        # the children in ZooKeeper's HashSet order; sequence numbers from the parent's cversion
        # (5 children before the first); the client's removeRecursive lists the subtree with its
        # own listSubTreeBFS, which stops one level short here, so the delete meets NOT_EMPTY;
        # a transaction's results are op codes (1 create, 13 check, 5 setData, 2 delete)
        "state: SYNC_CONNECTED timeout: 10000",
        "create: /nzk",
        "getData: root version=0 cversion=0 aversion=0 owner=none dataLength=4 numChildren=0",
        "setData version 0: version=1 cversion=0 aversion=0 owner=none dataLength=2 numChildren=0 mzxid>czxid=true",
        "setData stale version: BAD_VERSION",
        "setData any version: version=2 cversion=0 aversion=0 owner=none dataLength=2 numChildren=0",
        "exists: version=2 cversion=0 aversion=0 owner=none dataLength=2 numChildren=0",
        "exists missing: null",
        "getData missing: NO_NODE",
        "getChildren: delta,bravo,echo,alpha,charlie"
        " version=2 cversion=5 aversion=0 owner=none dataLength=2 numChildren=5",
        "sequential: /nzk/s-0000000005 /nzk/s-0000000006",
        "ephemeral: /nzk/e version=0 cversion=0 aversion=0 owner=self dataLength=1 numChildren=0",
        "child of an ephemeral: NO_CHILDREN_FOR_EPHEMERALS",
        "ephemeral sequential: /nzk/es-0000000008",
        "create existing: NODE_EXISTS",
        "create without parent: NO_NODE",
        "create bad path: client refused: Node path must start with / character.",
        "remove wrong version: BAD_VERSION",
        "remove non-empty: NOT_EMPTY",
        "remove: OK",
        "remove missing: NO_NODE",
        "mkdirp: /nzk/deep/er/path",
        "listSubTreeBFS: /nzk/deep,/nzk/deep/er",
        "removeRecursive: NOT_EMPTY",
        "after removeRecursive: version=0 cversion=1 aversion=0 owner=none dataLength=1 numChildren=1",
        "getACL: world:anyone perms=31 aversion=0",
        "setACL version 0: version=0 cversion=0 aversion=1 owner=none dataLength=5 numChildren=0",
        "setACL stale version: NO_AUTH",
        "setData on a read-only node: NO_AUTH",
        "auth ACL: digest:alice:aYXlLOpEooaV1cRAvUL1fp9Qt7E= perms=31",
        "other client getData: NO_AUTH",
        "invalid ACL: INVALID_ACL",
        "transaction: 1:/nzk/t 1:/nzk/t/q-0000000000 13 5:version=1 2",
        "failing transaction: BAD_VERSION",
        "after the failing transaction: /nzk/u null",
        "children at the end: bravo,mine,s-0000000006,deep,es-0000000008,t,e,delta,echo,s-0000000005"
        " version=2 cversion=14 aversion=0 owner=none dataLength=2 numChildren=10",
        "done",
    ],
    "watches": [
        "exists watch on a missing node: null",
        "event: NODE_CREATED /nzw/a",
        "event: NODE_DATA_CHANGED /nzw/a",
        "one-shot, nothing more: none",
        "event: NODE_CHILDREN_CHANGED /nzw",
        "events of a delete: NODE_DELETED /nzw/a, NODE_CHILDREN_CHANGED /nzw",
        "one watcher, two reads: NODE_DATA_CHANGED /nzw/b; then none",
        "own write: NODE_DATA_CHANGED /nzw/b version=2",
        "owner closed: NODE_DELETED /nzw/eph, NODE_CHILDREN_CHANGED /nzw",
        "ephemeral after close: null",
        "done",
    ],
    "lock": [
        "c1 holds: /nzl/lock-0000000000 waited: 0",
        "c2 waiting: true",
        "c3 waiting: true",
        "lock nodes: 3",
        "c2 holds: /nzl/lock-0000000001",
        "c3 holds after c2 closed: /nzl/lock-0000000002",
        "contention: rounds=15 overlaps=0 nodes left=0",
        "done",
    ],
}


@pytest.mark.timeout(SCENARIO_TIMEOUT + 600)  # + the session's one npm ci
@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_node_zk_client_scenario(node_modules, zk, scenario):
    rc, lines, err = run_scenario(node_modules, zk, scenario)
    check_scenario_output("zk_scenarios.js", scenario, zk.kind, rc, lines, err, EXPECTED[scenario])
