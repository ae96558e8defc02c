"""Apache Curator 5.4 (Debian's libcurator-framework-java, -recipes-java,
-client-java) against the server: compat-tests/curator/CuratorScenarios.java,
compiled once per session with javac, runs one scenario per test in its own
JVM against a fresh server of each kind (the `zk` fixture).

Scenarios: basic CuratorFramework calls (create with container parents,
get/setData with Stat and versions, checkExists, getChildren, sequential,
ephemeral and protected nodes, background callbacks, deletingChildrenIfNeeded,
container reaping), transactions (transaction().forOperations, its
background flavour, inTransaction()), NodeCache and CuratorCache (the latter
uses a persistent recursive watch, addWatch), LeaderLatch, InterProcessMutex,
DistributedAtomicLong and DistributedQueue.

The program prints one line per step, built only from what is deterministic on
any correct server (no session ids, zxids or times).  The expected lines below
are what it printed against the real ZooKeeper 3.8.0 (Debian's jars);
re-validate with `COMPAT_ZK_TARGETS=zookeeper pytest test_zk_curator.py`.
"""

import glob
import os
import shutil
import subprocess

import pytest

from zk_util import JAVA

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "curator", "CuratorScenarios.java")

# The Debian jars' manifests carry their Class-Path (guava, slf4j-api,
# zookeeper-jute, jackson, netty ...), so these are enough.  slf4j-simple makes
# Curator's and the ZooKeeper client's warnings readable on stderr.
CURATOR_JARS = [f"/usr/share/java/{j}.jar" for j in (
    "curator-recipes", "curator-framework", "curator-client", "zookeeper")]
LOG_JARS = ["/usr/share/java/slf4j-simple.jar"]
JVM_FLAGS = ["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]

SCENARIO_TIMEOUT = 150  # the program's own watchdog fires after 100 s


@pytest.fixture(scope="session")
def curator_classes(tmp_path_factory):
    """javac CuratorScenarios.java once per session; returns the class dir."""
    missing = [j for j in CURATOR_JARS if not os.path.exists(j)]
    if missing:
        pytest.fail(f"missing {missing}: apt-get install libcurator-framework-java libcurator-recipes-java "
                    "libcurator-client-java libzookeeper-java (scripts/test.sh does)", pytrace=False)
    javac = shutil.which("javac") or os.path.join(os.path.dirname(os.path.realpath(shutil.which(JAVA) or JAVA)), "javac")
    if not os.path.exists(javac):
        pytest.fail("javac not found (a JDK is needed: Debian's openjdk-17-jdk-headless)", pytrace=False)
    out = tmp_path_factory.mktemp("curator-classes")
    cp = subprocess.run([javac, "-Xlint:all,-path", "-d", str(out), "-cp", ":".join(CURATOR_JARS), SOURCE],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=300)
    if cp.returncode != 0 or not glob.glob(str(out / "CuratorScenarios*.class")):
        pytest.fail("javac CuratorScenarios.java failed:\n" + cp.stdout.decode("utf-8", "replace"), pytrace=False)
    return str(out)


def run_scenario(classes, zk, scenario):
    """Run one scenario; returns (rc, stdout lines, stderr)."""
    argv = [JAVA] + JVM_FLAGS + ["-cp", ":".join([classes] + CURATOR_JARS + LOG_JARS),
                                 "CuratorScenarios", zk.hosts, scenario]
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH")}
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                        env=env, timeout=SCENARIO_TIMEOUT, start_new_session=True)
    return cp.returncode, cp.stdout.decode("utf-8", "replace").splitlines(), cp.stderr.decode("utf-8", "replace")


# A persistent node's stat, for brevity: data version, cversion, data length, children.
def st(version=0, cversion=0, length=0, children=0, owner="none", aversion=0):
    return (f"version={version} cversion={cversion} aversion={aversion} owner={owner} "
            f"dataLength={length} numChildren={children}")


EXPECTED = {
    "basic": [
        "connected: true",
        "create with parents: /cur/basic/a/b",
        # creatingParentContainersIfNeeded: /cur and /cur/basic/a are containers
        "exists /cur: " + st(cversion=1, children=1),
        "exists /cur/basic/a: " + st(cversion=1, children=1),
        "exists missing: null",
        "getData: v1 " + st(length=2),
        "setData version 0: " + st(version=1, length=2) + " mzxid>czxid=true",
        "setData stale version: KeeperException.BADVERSION",
        "setData any version: " + st(version=2, length=2) + " mzxid grew=true",
        "getData: v3 version=2 same czxid=true",
        "getChildren (sorted): [a, b, c]",
        "getChildren stat: " + st(cversion=3, children=3),
        # the sequence number is the parent's cversion
        "persistent sequential: /cur/basic/list/s-0000000003",
        "create existing: KeeperException.NODEEXISTS",
        "create without parent: KeeperException.NONODE",
        "create orSetData existing: /cur/basic/list/a -> a2",
        "ephemeral: /cur/basic/eph " + st(length=1, owner="self"),
        "child of ephemeral: KeeperException.NOCHILDRENFOREPHEMERALS",
        "protected ephemeral sequential matches: true",
        "background create: CREATE rc=0 path=/cur/basic/bg name=/cur/basic/bg",
        "background getData: GET_DATA rc=0 data=bg " + st(length=2),
        "background getData missing: GET_DATA rc=-101",
        "getACL: world:anyone perms=31;",
        "delete wrong version: KeeperException.BADVERSION",
        "delete non-empty: KeeperException.NOTEMPTY",
        "delete deletingChildrenIfNeeded: exists=null",
        "delete missing: KeeperException.NONODE",
        "delete quietly missing: ok",
        "sync: ok",
        "empty container parent reaped: true",
        "non-empty container kept: true",
        "done",
    ],
    "transaction": [
        "forOperations: 6 results",
        # Curator's transaction create is OpCode.create: no stat in the result
        "  CHECK /cur/txn -> null stat=null error=0",
        "  CREATE /cur/txn/a -> /cur/txn/a stat=null error=0",
        "  CREATE /cur/txn/s- -> /cur/txn/s-0000000001 stat=null error=0",
        "  SET_DATA /cur/txn -> null stat=" + st(version=1, cversion=2, length=1, children=2) + " error=0",
        "  CREATE /cur/txn/e -> /cur/txn/e stat=null error=0",
        "  DELETE /cur/txn/a -> null stat=null error=0",
        "after txn: data=1 " + st(version=1, cversion=4, length=1, children=2),
        "after txn: children=[e, s-0000000001]",
        "after txn: ephemeral " + st(length=1, owner="self"),
        # ops before the failing one: 0 (rolled back), then its error, then RuntimeInconsistency (-2)
        "failing forOperations: KeeperException.BADVERSION results=[0 -103 -2]",
        "after failed txn: /cur/txn/b null, data=1",
        "failing check: KeeperException.BADVERSION",
        "background failing txn: TRANSACTION rc=-101",
        "  CREATE /cur/txn/d error=0",
        "  DELETE /cur/txn/missing error=-101",
        "inTransaction: 4 results",
        "  CREATE /cur/txn2 -> /cur/txn2 stat=null error=0",
        "  CREATE /cur/txn2/q- -> /cur/txn2/q-0000000000 stat=null error=0",
        "  SET_DATA /cur/txn2 -> null stat=" + st(version=1, cversion=1, length=1, children=1) + " error=0",
        "  CHECK /cur/txn2 -> null stat=null error=0",
        "after inTransaction: data=y " + st(version=1, cversion=1, length=1, children=1),
        "done",
    ],
    "cache": [
        "NodeCache initial: null",
        "NodeCache after create: /cur/nc=a version=0",
        "NodeCache after setData: /cur/nc=b version=1",
        "NodeCache after delete: null",
        "CuratorCache: created /cur/cc=root version=0",
        "CuratorCache: created /cur/cc/pre=p version=0",
        "CuratorCache: initialized",
        "CuratorCache: changed /cur/cc/pre=p version=0 -> /cur/cc/pre=p2 version=1",
        "CuratorCache: created /cur/cc/new=n version=0",
        "CuratorCache: created /cur/cc/new/deep=d version=0",
        "CuratorCache: changed /cur/cc=root version=0 -> /cur/cc=root2 version=1",
        "CuratorCache: deleted /cur/cc/new/deep=d version=0",
        "CuratorCache: deleted /cur/cc/pre=p2 version=1",
        "CuratorCache contents: [/cur/cc/new=n version=0, /cur/cc=root2 version=1]",
        "CuratorCache no further events: true",
        "done",
    ],
    "leader": [
        "p1 await: true",
        "event: p1 isLeader",
        "p2 await 500ms: false",
        "hasLeadership: p1=true p2=false",
        "leader seen by p2: p1",
        "participants: p1(leader) p2",
        "latch nodes: 2",
        "state: p1=STARTED p2=STARTED",
        "p2 await after p1 closed: true",
        "event: p2 isLeader",
        "hasLeadership: p1=false p2=true",
        "leader seen by p2: p2",
        "participants: p2(leader)",
        "state: p1=CLOSED p2=STARTED",
        "latch nodes after p1 closed: 1",
        "latch nodes after p2 closed: 0",
        "no further listener events: true",
        "done",
    ],
    "mutex": [
        "m1 acquire: true",
        "m1 acquire again (reentrant): true",
        "m1 held: true by this thread: true",
        "participant nodes: 1",
        "m2 acquire 300ms while m1 holds: false",
        "m1 released once, still held: true",
        "m2 acquire 300ms while m1 holds once: false",
        "m1 released twice, held: false",
        "m2 acquire: true",
        "m1 acquire 300ms while m2 holds: false",
        "release when not held: IllegalMonitorStateException",
        "contention: failures=0 overlaps=0 counter=30",
        "lock nodes left: 0",
        "m3 acquire: true",
        "m1 waiting while m3 holds: true",
        "m1 acquire after m3's session closed: true",
        "done",
    ],
    "atomic": [
        "get before any write: succeeded=true pre=0 post=0",
        "a1 initialize 5: true",
        "a2 initialize 7: false",
        "a2 get: succeeded=true pre=5 post=5",
        "concurrent increments: ok=50 failures=0",
        "a1 get: succeeded=true pre=55 post=55",
        "a1 compareAndSet 55->100: succeeded=true pre=55 post=100",
        "a2 compareAndSet 55->1: succeeded=false pre=100 post=0",
        "a2 add 5: succeeded=true pre=100 post=105",
        "a1 subtract 10: succeeded=true pre=105 post=95",
        "a2 decrement: succeeded=true pre=95 post=94",
        "a1 trySet 0: succeeded=true pre=94 post=0",
        "a1 get after a2 forceSet 42: succeeded=true pre=42 post=42",
        # one create + 50 increments + 5 updates + forceSet; failed CAS rounds write nothing
        "node: length=8 value=42 " + st(version=56, length=8),
        "done",
    ],
    "queue": [
        "items queued before the consumer starts: 6",
        "received: item-0,item-1,item-2,item-3,item-4,item-5",
        "received while running: item-6,item-7,item-8,item-9,item-10,item-11",
        "items left in the queue: 0",
        "nothing received twice: true",
        "done",
    ],
}


@pytest.mark.timeout(SCENARIO_TIMEOUT + 180)  # + the session's one javac run
@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_curator_scenario(curator_classes, zk, scenario):
    rc, lines, err = run_scenario(curator_classes, zk, scenario)
    print(f"--- CuratorScenarios {scenario} on {zk.kind} (exit {rc}):")
    print("\n".join(lines))
    if err.strip():
        print("--- its stderr (Curator / ZooKeeper client warnings):\n" + err[-8000:])
    assert lines == EXPECTED[scenario], f"Curator {scenario} output differs from ZooKeeper's on {zk.kind}"
    assert rc == 0
