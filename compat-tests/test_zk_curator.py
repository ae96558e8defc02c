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
DistributedAtomicLong and DistributedQueue; and from CuratorRecipes.java:
LeaderSelector, InterProcessSemaphoreV2, InterProcessSemaphoreMutex,
InterProcessMultiLock, InterProcessReadWriteLock, DistributedBarrier,
DistributedDoubleBarrier, SharedCount, PersistentNode, PersistentTtlNode,
GroupMember, PathChildrenCache, TreeCache, the priority, id and delay queues,
and the watchers() API (addWatch, checkWatches, removeWatches); and from
ZkRecipes.java, ZooKeeper's own recipe jars (zookeeper-recipes-lock, -queue,
-election from libzookeeper-java): WriteLock, DistributedQueue and
LeaderElectionSupport on the plain ZooKeeper client.  The scenario `restart`
restarts the server in its middle (it prints RESTART; run_scenario restarts the
server and answers on its stdin).

The program prints one line per step, built only from what is deterministic on
any correct server (no session ids, zxids or times).  The expected lines below
are what it printed against the real ZooKeeper 3.8.0 (Debian's jars);
re-validate with `COMPAT_ZK_TARGETS=zookeeper pytest test_zk_curator.py`.
"""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading

import pytest

from compat_util import check_scenario_output
from zk_util import JAVA

HERE = os.path.dirname(os.path.abspath(__file__))
# CuratorScenarios.java holds main, the helpers and the first scenarios;
# CuratorRecipes.java the rest of the recipes.
SOURCES = sorted(glob.glob(os.path.join(HERE, "curator", "*.java")))

# The Debian jars' manifests carry their Class-Path (guava, slf4j-api,
# zookeeper-jute, jackson, netty ...), so these are enough.  slf4j-simple makes
# Curator's and the ZooKeeper client's warnings readable on stderr.
CURATOR_JARS = [f"/usr/share/java/{j}.jar" for j in (
    "curator-recipes", "curator-framework", "curator-client", "zookeeper",
    # ZooKeeper's own recipes (ZkRecipes.java), from libzookeeper-java like zookeeper.jar
    "zookeeper-recipes-lock", "zookeeper-recipes-queue", "zookeeper-recipes-election")]
LOG_JARS = ["/usr/share/java/slf4j-simple.jar"]
JVM_FLAGS = ["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]

SCENARIO_TIMEOUT = 150  # the program's own watchdog fires after 100 s


@pytest.fixture(scope="session")
def curator_classes(tmp_path_factory):
    """javac curator/*.java once per session; returns the class dir."""
    missing = [j for j in CURATOR_JARS if not os.path.exists(j)]
    if missing:
        pytest.fail(f"missing {missing}: apt-get install libcurator-framework-java libcurator-recipes-java "
                    "libcurator-client-java libzookeeper-java (scripts/test.sh does)", pytrace=False)
    javac = shutil.which("javac") or os.path.join(os.path.dirname(os.path.realpath(shutil.which(JAVA) or JAVA)), "javac")
    if not os.path.exists(javac):
        pytest.fail("javac not found (a JDK is needed: Debian's openjdk-17-jdk-headless)", pytrace=False)
    out = tmp_path_factory.mktemp("curator-classes")
    cp = subprocess.run([javac, "-Xlint:all,-path", "-d", str(out), "-cp", ":".join(CURATOR_JARS)] + SOURCES,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=300)
    if cp.returncode != 0 or not glob.glob(str(out / "CuratorScenarios*.class")):
        pytest.fail("javac curator/*.java failed:\n" + cp.stdout.decode("utf-8", "replace"), pytrace=False)
    return str(out)


def run_scenario(classes, zk, scenario):
    """Run one scenario; returns (rc, stdout lines, stderr).  A line RESTART from the
    program is not output: the server is restarted (zk.restart()) and the program told
    so by a line on its stdin."""
    argv = [JAVA] + JVM_FLAGS + ["-cp", ":".join([classes] + CURATOR_JARS + LOG_JARS),
                                 "CuratorScenarios", zk.hosts, scenario]
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH")}
    # stderr to a file: a pipe nobody reads while the program runs could fill up and stall it
    with tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err_file, stdin=subprocess.PIPE,
                                env=env, start_new_session=True)
        # the program's own watchdog ends it after 100 s; this one covers a hung JVM
        killer = threading.Timer(SCENARIO_TIMEOUT, lambda: os.killpg(proc.pid, signal.SIGKILL))
        killer.start()
        lines = []
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line == "RESTART":
                    zk.restart()
                    proc.stdin.write(b"restarted\n")
                    proc.stdin.flush()
                else:
                    lines.append(line)
            rc = proc.wait()
        finally:
            killer.cancel()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        err_file.seek(0)
        return rc, lines, err_file.read().decode("utf-8", "replace")


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
    "selector": [
        # LeaderSelector with autoRequeue: a leader that gives up queues again behind the other;
        # interruptLeadership() and close() interrupt takeLeadership, which then gives the lock up
        "event: s1 leader",
        "participants: s1(leader) s2",
        "hasLeadership: s1=true s2=false",
        "leader seen by s2: s1",
        "event: s1 relinquished",
        "event: s2 leader",
        "participants: s2(leader) s1",
        "event: s2 relinquished",
        "event: s1 leader",
        "event: s1 interrupted",
        "event: s2 leader",
        "event: s2 interrupted",
        "event: s1 leader",
        "participants: s1(leader)",
        "event: s1 interrupted",
        "lock nodes left: 0",
        "further events: none",
        "done",
    ],
    "semaphore": [
        # InterProcessSemaphoreV2, InterProcessSemaphoreMutex (not reentrant), InterProcessMultiLock
        "s1 acquire 2 of 2: 2 leases",
        "participant nodes: 2",
        "s2 acquire 300ms with none left: null",
        "s2 acquire after s1 returned one: true",
        "participant nodes: 2",
        "lease nodes left: 0",
        "contention: [ok, ok, ok, ok, ok, ok] at most 3 at once: true",
        "m1 acquire: true",
        "m1 acquire again 300ms (not reentrant): false",
        "m2 acquire 300ms: false",
        "m2 acquire after m1 released: true",
        "multi acquire: true",
        "b acquire 300ms while multi holds: false",
        "b acquire after multi released: true",
        "multi acquire 300ms while b is held: false",
        "a left free after the failed multi acquire: true",
        "lock nodes left: a=0 b=0",
        "done",
    ],
    "rwlock": [
        # InterProcessReadWriteLock: readers share, a writer waits for them, its holder may downgrade
        "a read: true",
        "b read while a reads: true",
        "lock nodes: 2",
        "w write 300ms while two read: false",
        "writer waiting while b reads: true",
        "writer acquired: true",
        "a read 300ms while w writes: false",
        "release by a thread that does not hold it: IllegalMonitorStateException",
        "writer takes the read lock too: true",
        "writer released the write lock",
        "a read while w only reads: true",
        "lock nodes: 2",
        "writer: done",
        "lock nodes left: 0",
        "done",
    ],
    "barrier": [
        # DistributedBarrier, and DistributedDoubleBarrier with 3 members (its "ready" node goes too)
        "wait on an unset barrier: true",
        "wait 300ms on a set barrier: false",
        "waiter still waiting: true",
        "waiter after removeBarrier: true",
        "barrier node: false",
        "entered with 2 of 3 there: false",
        "enter: [true, true, true]",
        "children once all entered: [<id>, <id>, <id>, ready]",
        "leave: [true, true, true]",
        "children once all left: []",
        "done",
    ],
    "sharedcount": [
        # SharedCount: seeded once, versioned sets, the other instance's listener
        "counts after start (the first seed wins): 7 7",
        "version: 0",
        "reader saw 10",
        "trySetCount with a stale version: false",
        "trySetCount with the current version: true",
        "reader saw 12",
        "reader: 12 version 2",
        "node: length=4 value=12 version=2 cversion=0 aversion=0 owner=none dataLength=4 numChildren=0",
        "further reader events: none",
        "done",
    ],
    "nodes": [
        # PersistentNode (made again when deleted; a protected sequential one keeps its name),
        # PersistentTtlNode (a container with a TTL child touched every TTL/2; reaped once closed),
        # GroupMember (a PersistentNode plus a CuratorCache of the group)
        "created: true at /cur/pn",
        "stat: version=0 cversion=0 aversion=0 owner=self dataLength=1 numChildren=0",
        "made again after a delete: true",
        "data: x",
        "data after setData: true",
        "gone after close: true",
        "sequential: [/cur/pns/_c_<id>-m-0000000000]",
        "made again: true",
        "children: [_c_<id>-m-0000000000]",
        "actual path: [/cur/pns/_c_<id>-m-0000000000]",
        "ttl node created: true",
        "ttl node data: t",
        "ttl node's touch child made: true",
        "touch child: version=0 cversion=0 aversion=0 owner=none dataLength=0 numChildren=0",
        "still there after its TTL while touched: true",
        "gone after close (TTL child expired, container reaped): true",
        "m1 sees both: true [m1=d1, m2=d2]",
        "m1 sees m2's new data: true [m1=d1, m2=d2b]",
        "m1 sees m2 leave: true [m1=d1]",
        "done",
    ],
    "childcache": [
        # PathChildrenCache's initial events follow getChildren, i.e. the parent's HashSet order;
        # TreeCache loads breadth first over one connection's in-order replies
        "PathChildrenCache: CHILD_ADDED /cur/pc/delta=delta version=0",
        "PathChildrenCache: CHILD_ADDED /cur/pc/bravo=bravo version=0",
        "PathChildrenCache: CHILD_ADDED /cur/pc/echo=echo version=0",
        "PathChildrenCache: CHILD_ADDED /cur/pc/alpha=alpha version=0",
        "PathChildrenCache: CHILD_ADDED /cur/pc/charlie=charlie version=0",
        "PathChildrenCache: INITIALIZED with 5",
        "PathChildrenCache: CHILD_ADDED /cur/pc/foxtrot=f version=0",
        "PathChildrenCache: CHILD_UPDATED /cur/pc/bravo=b2 version=1",
        "PathChildrenCache: CHILD_REMOVED /cur/pc/alpha=alpha version=0",
        "PathChildrenCache current data: "
        "[/cur/pc/bravo=b2 version=1, /cur/pc/charlie=charlie version=0, /cur/pc/delta=delta version=0, "
        "/cur/pc/echo=echo version=0, /cur/pc/foxtrot=f version=0]",
        "PathChildrenCache further events: none",
        "TreeCache: NODE_ADDED /cur/tc=tc version=1",
        "TreeCache: NODE_ADDED /cur/tc/x= version=0",
        "TreeCache: NODE_ADDED /cur/tc/y=y version=0",
        "TreeCache: NODE_ADDED /cur/tc/x/x1=x1 version=0",
        "TreeCache: INITIALIZED",
        "TreeCache: NODE_ADDED /cur/tc/y/y1=y1 version=0",
        "TreeCache: NODE_UPDATED /cur/tc/x/x1=x1b version=1",
        "TreeCache: NODE_REMOVED /cur/tc/x/x1=x1b version=1",
        "TreeCache: NODE_REMOVED /cur/tc/x= version=0",
        "TreeCache children of root: [y]",
        "TreeCache further events: none",
        "done",
    ],
    "queues": [
        # DistributedPriorityQueue (lowest priority first), DistributedIdQueue, DistributedDelayQueue
        "priority queue, in order: [p-2-3, p1-1, p1-5, p3-2, p4-4, p5-0]",
        "priority queue left: 0",
        "id queue: removed by id-a: 2",
        "id queue: removed by id-missing: 0",
        "id queue received: [second]",
        "id queue left: 0",
        "delay queue, in order: [now, sooner, later] not before the last's time: true",
        "delay queue left: 0",
        "further items: none",
        "done",
    ],
    "framework": [
        # digest auth and ACLs (CREATOR_ALL_ACL, a versioned setACL to read-only), TTL nodes (expired
        # only once childless), idempotent create/setData/delete, createContainers, getConfig, and a
        # session closed through another handle: SUSPENDED, LOST, then a new session
        "alice getACL: digest:alice:aYXlLOpEooaV1cRAvUL1fp9Qt7E= perms=31;",
        "anon getData: KeeperException.NOAUTH",
        "anon exists: version=0 cversion=0 aversion=0 owner=none dataLength=1 numChildren=0",
        "anon getACL: KeeperException.NOAUTH",
        "anon setACL: KeeperException.NOAUTH",
        "alice setACL version 0: version=0 cversion=0 aversion=1 owner=none dataLength=1 numChildren=0",
        "alice setACL stale version: KeeperException.NOAUTH",
        "anon getData now: s acl world:anyone perms=1;",
        "anon setData now: KeeperException.NOAUTH",
        "alice setData now: KeeperException.NOAUTH",
        "anon create child: KeeperException.NOAUTH",
        "anon delete: ok",
        "alice create with an unknown scheme: KeeperException.INVALIDACL",
        "ttl node: version=0 cversion=0 aversion=0 owner=none dataLength=1 numChildren=0",
        "ttl node expires: true",
        "ttl node with a child kept: true",
        "then expires once childless: true",
        "ttl out of range: IllegalArgumentException",
        "idempotent create again, same data: ok",
        "idempotent create again, other data: KeeperException.NODEEXISTS",
        "idempotent setData version 0: version=1 cversion=0 aversion=0 owner=none dataLength=1 numChildren=0",
        "idempotent setData version 0 again: ok",
        "idempotent setData version 0, other data: KeeperException.BADVERSION",
        "idempotent delete: ok",
        "idempotent delete again: ok",
        "createContainers: version=0 cversion=0 aversion=0 owner=none dataLength=0 numChildren=0",
        "a container that never had children stays: true",
        "both reaped once emptied: true",
        "getConfig: '' version=0 cversion=0 aversion=-1 owner=none dataLength=0 numChildren=0",
        "killer: SyncConnected same session: true",
        "ephemeral gone with the session: true",
        "victim state: SUSPENDED",
        "victim state: LOST",
        "victim state: RECONNECTED",
        "victim has a new session: true",
        "victim works: version=0 cversion=12 aversion=0 owner=none dataLength=0 numChildren=0",
        "further states: none",
        "done",
    ],
    "zk-recipes": [
        # ZooKeeper's own recipe jars on the plain client: WriteLock (a holder's session closing
        # hands the lock on), DistributedQueue (qn- sequential nodes), LeaderElectionSupport
        "WriteLock l1 lock: true owner: true",
        "WriteLock l1 acquired",
        "WriteLock l2 lock: false owner: false",
        "WriteLock l3 lock: false owner: false",
        "WriteLock nodes: 3",
        "WriteLock l1 released",
        "WriteLock l2 acquired owner: true",
        "WriteLock l3 still waiting: true",
        "WriteLock l3 acquired owner: true",
        "WriteLock l3 released",
        "WriteLock nodes left: 0",
        "DistributedQueue peek, no queue yet: null",
        "DistributedQueue poll, no queue yet: null",
        "DistributedQueue element, no queue yet: NoSuchElementException",
        "DistributedQueue nodes: [qn-0000000000, qn-0000000001, qn-0000000002]",
        "DistributedQueue peek: a",
        "DistributedQueue remove: a",
        "DistributedQueue poll: b",
        "DistributedQueue element: c",
        "DistributedQueue take: c",
        "DistributedQueue take waits on an empty queue: true",
        "DistributedQueue take after an offer: d",
        "DistributedQueue poll, empty: null",
        "DistributedQueue nodes left: 0",
        "LeaderElectionSupport h1: START OFFER_START OFFER_COMPLETE DETERMINE_START DETERMINE_COMPLETE ELECTED_START ELECTED_COMPLETE",
        "LeaderElectionSupport h2: START OFFER_START OFFER_COMPLETE DETERMINE_START DETERMINE_COMPLETE READY_START READY_COMPLETE",
        "LeaderElectionSupport leader seen by h2: h1",
        "LeaderElectionSupport h1: STOP_START STOP_COMPLETE",
        "LeaderElectionSupport h2: DETERMINE_START DETERMINE_COMPLETE ELECTED_START ELECTED_COMPLETE",
        "LeaderElectionSupport leader seen by h2: h2",
        "LeaderElectionSupport h2: STOP_START STOP_COMPLETE",
        "LeaderElectionSupport leader: null",
        "LeaderElectionSupport offers left: 0",
        "done",
    ],
    "restart": [
        # the server restarted under a connected client (the program prints RESTART, the test
        # restarts the server): the same session, its ephemeral and its lock kept; NodeCache's
        # data watch and CuratorCache's recursive watch sent again by the Java client
        # (SetWatches / SetWatches2) and firing
        "m1 acquire: true",
        "c1 state: SUSPENDED",
        "c1 state: RECONNECTED",
        "same session: true",
        "ephemeral kept: version=0 cversion=0 aversion=0 owner=self dataLength=1 numChildren=0",
        "NodeCache after the restart: /cur/rs/n=1 version=1",
        "CuratorCache after the restart: changed /cur/rs/n=1 version=1",
        "CuratorCache after the restart: created /cur/rs/new=x version=0",
        "m1 still holds: true, m2 acquire 300ms: false",
        "m2 acquire once m1 released: true",
        "further states: none",
        "done",
    ],
    "watchers": [
        # the framework's watchers() API: addWatch (persistent, recursive), checkWatches (a given
        # watcher: op 17) and removeWatches (removeAll: op 18); a local removal sends nothing
        "persistent: NodeDataChanged /cur/w",
        "persistent: NodeDataChanged /cur/w",
        "persistent: NodeChildrenChanged /cur/w",
        "persistent, grandchild created: none",
        "removed: PersistentWatchRemoved /cur/w",
        "after removal: none",
        "remove again: KeeperException.NOWATCHER",
        "remove again quietly: ok",
        "recursive: NodeCreated /cur/w/k/deep2",
        "recursive: NodeDataChanged /cur/w/k/deep2",
        "recursive: NodeDeleted /cur/w/k/deep2",
        "removeAll: PersistentWatchRemoved /cur/w",
        "children watch removed: ChildWatchRemoved /cur/w",
        "after a child create: none",
        "data watch still there: NodeDataChanged /cur/w; then none",
        "remove a fired data watch: KeeperException.NOWATCHER",
        "removed locally: DataWatchRemoved /cur/w",
        "after a local removal: none",
        "done",
    ],
}


@pytest.mark.timeout(SCENARIO_TIMEOUT + 180)  # + the session's one javac run
@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_curator_scenario(curator_classes, zk, scenario):
    rc, lines, err = run_scenario(curator_classes, zk, scenario)
    check_scenario_output("CuratorScenarios", scenario, zk.kind, rc, lines, err, EXPECTED[scenario])
