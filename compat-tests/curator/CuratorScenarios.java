/*
 * Apache Curator 5.4 (Debian's libcurator-*-java) scenarios against a
 * ZooKeeper-protocol server:
 *
 *     java -cp CLASSES:CURATOR_JARS CuratorScenarios HOST:PORT SCENARIO
 *
 * SCENARIO is one of basic, transaction, cache, leader, mutex, atomic, queue
 * (see SCENARIOS below), or one of CuratorRecipes.SCENARIOS (CuratorRecipes.java,
 * which uses the helpers here), or ZkRecipes.SCENARIOS (ZooKeeper's own recipes).  Each prints one line per step on stdout, built only
 * from what is deterministic on any correct server: data, versions, child
 * counts, error codes, relations between zxids ("mzxid>czxid=true"),
 * ephemeral owners as self/other/none -- never a session id, zxid or time.
 * compat-tests/test_zk_curator.py compiles this file once per session and
 * compares the lines exactly with what the real ZooKeeper 3.8.0 printed.
 *
 * Exit status: 0 after "done"; 1 on an unexpected exception (its line starts
 * with "ERROR", the stack trace goes to stderr); 3 when the watchdog fires.
 */

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Pattern;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.api.CuratorEvent;
import org.apache.curator.framework.api.transaction.CuratorOp;
import org.apache.curator.framework.api.transaction.CuratorTransactionResult;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.cache.ChildData;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.cache.NodeCache;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderLatchListener;
import org.apache.curator.framework.recipes.leader.Participant;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.queue.DistributedQueue;
import org.apache.curator.framework.recipes.queue.QueueBuilder;
import org.apache.curator.framework.recipes.queue.QueueConsumer;
import org.apache.curator.framework.recipes.queue.QueueSerializer;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.RetryNTimes;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.Stat;

public class CuratorScenarios {
    static final String[] SCENARIOS = {"basic", "transaction", "cache", "leader", "mutex", "atomic", "queue"};
    static final int WAIT_S = 15;

    static String hosts;
    static final List<AutoCloseable> toClose = new ArrayList<>();

    // ------------------------------------------------------------------ output helpers

    static synchronized void p(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static String s(byte[] b) {
        return b == null ? "null" : new String(b, StandardCharsets.UTF_8);
    }

    static byte[] b(String v) {
        return v.getBytes(StandardCharsets.UTF_8);
    }

    static long sessionId(CuratorFramework c) throws Exception {
        return c.getZookeeperClient().getZooKeeper().getSessionId();
    }

    /** A Stat without zxids, times and session ids; the owner relative to client c. */
    static String stat(Stat st, CuratorFramework c) throws Exception {
        if (st == null) {
            return "null";
        }
        long owner = st.getEphemeralOwner();
        String who = owner == 0 ? "none" : owner == sessionId(c) ? "self" : "other";
        return "version=" + st.getVersion() + " cversion=" + st.getCversion() + " aversion=" + st.getAversion()
                + " owner=" + who + " dataLength=" + st.getDataLength() + " numChildren=" + st.getNumChildren();
    }

    static String err(Throwable e) {
        if (e instanceof KeeperException) {
            return "KeeperException." + ((KeeperException) e).code();
        }
        return e.getClass().getSimpleName();
    }

    /** An ACL list as "scheme:id perms=N;" for each entry. */
    static String acls(List<ACL> acl) {
        StringBuilder sb = new StringBuilder();
        for (ACL a : acl) {
            sb.append(a.getId().getScheme()).append(':').append(a.getId().getId()).append(" perms=")
                    .append(a.getPerms()).append(';');
        }
        return sb.toString();
    }

    static List<String> sorted(List<String> l) {
        List<String> out = new ArrayList<>(l);
        Collections.sort(out);
        return out;
    }

    /** Children of a node, 0 if it is gone (an empty container may be reaped any time). */
    static int childCount(CuratorFramework c, String path) throws Exception {
        try {
            return c.getChildren().forPath(path).size();
        } catch (KeeperException.NoNodeException e) {
            return 0;
        }
    }

    /** childCount once it equals want, or after WAIT_S (background deletes take a moment). */
    static int awaitChildCount(CuratorFramework c, String path, int want) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
        int n;
        while ((n = childCount(c, path)) != want && System.nanoTime() < deadline) {
            Thread.sleep(50);
        }
        return n;
    }

    static <T> T poll(BlockingQueue<T> q, String what) throws InterruptedException {
        T v = q.poll(WAIT_S, TimeUnit.SECONDS);
        if (v == null) {
            throw new IllegalStateException("timed out after " + WAIT_S + " s waiting for " + what);
        }
        return v;
    }

    static CuratorFramework client() throws Exception {
        return start(builder());
    }

    /** The builder every client here starts from. */
    static CuratorFrameworkFactory.Builder builder() {
        return CuratorFrameworkFactory.builder()
                .connectString(hosts)
                .sessionTimeoutMs(10000)
                .connectionTimeoutMs(10000)
                .retryPolicy(new RetryNTimes(3, 100))
                // Curator's default node data is this machine's IP address
                .defaultData(new byte[0]);
    }

    /** Builds and starts a client, closed at exit; returns once it is connected. */
    static CuratorFramework start(CuratorFrameworkFactory.Builder builder) throws Exception {
        CuratorFramework c = builder.build();
        toClose.add(c);
        c.start();
        if (!c.blockUntilConnected(WAIT_S, TimeUnit.SECONDS)) {
            throw new IllegalStateException("not connected within " + WAIT_S + " s");
        }
        return c;
    }

    // ------------------------------------------------------------------ basic

    static void basic() throws Exception {
        CuratorFramework c = client();
        p("connected: " + c.getZookeeperClient().isConnected());

        String path = c.create().creatingParentContainersIfNeeded().forPath("/cur/basic/a/b", b("v1"));
        p("create with parents: " + path);
        p("exists /cur: " + stat(c.checkExists().forPath("/cur"), c));
        p("exists /cur/basic/a: " + stat(c.checkExists().forPath("/cur/basic/a"), c));
        p("exists missing: " + stat(c.checkExists().forPath("/cur/nope"), c));

        Stat st = new Stat();
        byte[] data = c.getData().storingStatIn(st).forPath(path);
        p("getData: " + s(data) + " " + stat(st, c));
        long czxid = st.getCzxid();

        Stat set1 = c.setData().withVersion(0).forPath(path, b("v2"));
        p("setData version 0: " + stat(set1, c) + " mzxid>czxid=" + (set1.getMzxid() > czxid));
        try {
            c.setData().withVersion(0).forPath(path, b("stale"));
            p("setData stale version: ok?!");
        } catch (Exception e) {
            p("setData stale version: " + err(e));
        }
        Stat set2 = c.setData().forPath(path, b("v3"));
        p("setData any version: " + stat(set2, c) + " mzxid grew=" + (set2.getMzxid() > set1.getMzxid()));
        Stat st2 = new Stat();
        p("getData: " + s(c.getData().storingStatIn(st2).forPath(path)) + " version=" + st2.getVersion()
                + " same czxid=" + (st2.getCzxid() == czxid));

        c.create().forPath("/cur/basic/list");
        for (String n : new String[] {"c", "a", "b"}) {
            c.create().forPath("/cur/basic/list/" + n, b(n));
        }
        p("getChildren (sorted): " + sorted(c.getChildren().forPath("/cur/basic/list")));
        Stat lst = new Stat();
        c.getChildren().storingStatIn(lst).forPath("/cur/basic/list");
        p("getChildren stat: " + stat(lst, c));
        String seq = c.create().withMode(CreateMode.PERSISTENT_SEQUENTIAL).forPath("/cur/basic/list/s-", b("s"));
        p("persistent sequential: " + seq);
        try {
            c.create().forPath("/cur/basic/list/a");
            p("create existing: ok?!");
        } catch (Exception e) {
            p("create existing: " + err(e));
        }
        try {
            c.create().forPath("/cur/nope/child");
            p("create without parent: ok?!");
        } catch (Exception e) {
            p("create without parent: " + err(e));
        }
        String orSet = c.create().orSetData().forPath("/cur/basic/list/a", b("a2"));
        p("create orSetData existing: " + orSet + " -> " + s(c.getData().forPath("/cur/basic/list/a")));

        String eph = c.create().withMode(CreateMode.EPHEMERAL).forPath("/cur/basic/eph", b("e"));
        p("ephemeral: " + eph + " " + stat(c.checkExists().forPath(eph), c));
        try {
            c.create().forPath("/cur/basic/eph/child");
            p("child of ephemeral: ok?!");
        } catch (Exception e) {
            p("child of ephemeral: " + err(e));
        }
        String prot = c.create().withProtection().withMode(CreateMode.EPHEMERAL_SEQUENTIAL)
                .forPath("/cur/basic/prot-", b("p"));
        p("protected ephemeral sequential matches: "
                + Pattern.matches("/cur/basic/_c_[0-9a-f-]{36}-prot-\\d{10}", prot));

        // background (asynchronous) operations with a callback
        BlockingQueue<CuratorEvent> events = new LinkedBlockingQueue<>();
        c.create().inBackground((cl, ev) -> events.add(ev)).forPath("/cur/basic/bg", b("bg"));
        CuratorEvent ev = poll(events, "background create");
        p("background create: " + ev.getType() + " rc=" + ev.getResultCode() + " path=" + ev.getPath()
                + " name=" + ev.getName());
        c.getData().inBackground((cl, e2) -> events.add(e2)).forPath("/cur/basic/bg");
        ev = poll(events, "background getData");
        p("background getData: " + ev.getType() + " rc=" + ev.getResultCode() + " data=" + s(ev.getData())
                + " " + stat(ev.getStat(), c));
        c.getData().inBackground((cl, e2) -> events.add(e2)).forPath("/cur/basic/missing");
        ev = poll(events, "background getData of a missing node");
        p("background getData missing: " + ev.getType() + " rc=" + ev.getResultCode());

        p("getACL: " + acls(c.getACL().forPath(path)));

        try {
            c.delete().withVersion(5).forPath("/cur/basic/list/b");
            p("delete wrong version: ok?!");
        } catch (Exception e) {
            p("delete wrong version: " + err(e));
        }
        try {
            c.delete().forPath("/cur/basic/list");
            p("delete non-empty: ok?!");
        } catch (Exception e) {
            p("delete non-empty: " + err(e));
        }
        c.delete().deletingChildrenIfNeeded().forPath("/cur/basic/list");
        p("delete deletingChildrenIfNeeded: exists=" + stat(c.checkExists().forPath("/cur/basic/list"), c));
        try {
            c.delete().forPath("/cur/basic/list");
            p("delete missing: ok?!");
        } catch (Exception e) {
            p("delete missing: " + err(e));
        }
        c.delete().quietly().forPath("/cur/basic/list");
        p("delete quietly missing: ok");
        c.sync().forPath("/cur");
        p("sync: ok");

        // the parents made by creatingParentContainersIfNeeded are containers: once
        // their last child is gone the server removes them (ZooKeeper's container
        // reaper runs every second with the fixture's settings)
        c.create().creatingParentContainersIfNeeded().forPath("/cur/reap/x/y");
        c.delete().forPath("/cur/reap/x/y");
        boolean reaped = false;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
        while (System.nanoTime() < deadline) {
            if (c.checkExists().forPath("/cur/reap/x") == null) {
                reaped = true;
                break;
            }
            Thread.sleep(100);
        }
        p("empty container parent reaped: " + reaped);
        p("non-empty container kept: " + (c.checkExists().forPath("/cur/basic/a") != null));
    }

    // ------------------------------------------------------------------ transaction

    static String txResult(CuratorTransactionResult r, CuratorFramework c) throws Exception {
        return r.getType() + " " + r.getForPath() + " -> " + r.getResultPath() + " stat=" + stat(r.getResultStat(), c)
                + " error=" + r.getError();
    }

    static void transaction() throws Exception {
        CuratorFramework c = client();
        c.create().creatingParentsIfNeeded().forPath("/cur/txn", b("0"));

        List<CuratorOp> ops = new ArrayList<>();
        ops.add(c.transactionOp().check().withVersion(0).forPath("/cur/txn"));
        ops.add(c.transactionOp().create().forPath("/cur/txn/a", b("a")));
        ops.add(c.transactionOp().create().withMode(CreateMode.PERSISTENT_SEQUENTIAL).forPath("/cur/txn/s-", b("s")));
        ops.add(c.transactionOp().setData().withVersion(0).forPath("/cur/txn", b("1")));
        ops.add(c.transactionOp().create().withMode(CreateMode.EPHEMERAL).forPath("/cur/txn/e", b("e")));
        ops.add(c.transactionOp().delete().forPath("/cur/txn/a"));
        List<CuratorTransactionResult> res = c.transaction().forOperations(ops);
        p("forOperations: " + res.size() + " results");
        for (CuratorTransactionResult r : res) {
            p("  " + txResult(r, c));
        }
        Stat st = new Stat();
        p("after txn: data=" + s(c.getData().storingStatIn(st).forPath("/cur/txn")) + " " + stat(st, c));
        p("after txn: children=" + sorted(c.getChildren().forPath("/cur/txn")));
        p("after txn: ephemeral " + stat(c.checkExists().forPath("/cur/txn/e"), c));

        // a failing transaction applies nothing
        List<CuratorOp> bad = new ArrayList<>();
        bad.add(c.transactionOp().create().forPath("/cur/txn/b", b("b")));
        bad.add(c.transactionOp().setData().withVersion(0).forPath("/cur/txn", b("stale")));
        bad.add(c.transactionOp().create().forPath("/cur/txn/c", b("c")));
        try {
            List<CuratorTransactionResult> r2 = c.transaction().forOperations(bad);
            p("failing forOperations: returned " + r2.size() + " results");
            for (CuratorTransactionResult r : r2) {
                p("  " + txResult(r, c));
            }
        } catch (KeeperException e) {
            StringBuilder codes = new StringBuilder();
            List<OpResult> results = e.getResults();
            if (results != null) {
                for (OpResult r : results) {
                    codes.append(r instanceof OpResult.ErrorResult ? ((OpResult.ErrorResult) r).getErr() : 999)
                            .append(' ');
                }
            }
            p("failing forOperations: " + err(e) + " results=[" + codes.toString().trim() + "]");
        }
        p("after failed txn: /cur/txn/b " + stat(c.checkExists().forPath("/cur/txn/b"), c) + ", data="
                + s(c.getData().forPath("/cur/txn")));

        try {
            List<CuratorOp> bad2 = new ArrayList<>();
            bad2.add(c.transactionOp().check().withVersion(7).forPath("/cur/txn"));
            bad2.add(c.transactionOp().delete().forPath("/cur/txn/e"));
            c.transaction().forOperations(bad2);
            p("failing check: ok?!");
        } catch (Exception e) {
            p("failing check: " + err(e));
        }

        // the background flavour reports per-op errors instead of throwing
        BlockingQueue<CuratorEvent> events = new LinkedBlockingQueue<>();
        List<CuratorOp> bad3 = new ArrayList<>();
        bad3.add(c.transactionOp().create().forPath("/cur/txn/d", b("d")));
        bad3.add(c.transactionOp().delete().forPath("/cur/txn/missing"));
        c.transaction().inBackground((cl, ev) -> events.add(ev)).forOperations(bad3);
        CuratorEvent ev = poll(events, "background transaction");
        p("background failing txn: " + ev.getType() + " rc=" + ev.getResultCode());
        if (ev.getOpResults() != null) {
            for (CuratorTransactionResult r : ev.getOpResults()) {
                p("  " + r.getType() + " " + r.getForPath() + " error=" + r.getError());
            }
        }

        // the Curator 2/3 API (deprecated in 5, still there)
        @SuppressWarnings("deprecation")
        Collection<CuratorTransactionResult> old = c.inTransaction()
                .create().forPath("/cur/txn2", b("x"))
                .and().create().withMode(CreateMode.PERSISTENT_SEQUENTIAL).forPath("/cur/txn2/q-", b("q"))
                .and().setData().forPath("/cur/txn2", b("y"))
                .and().check().withVersion(1).forPath("/cur/txn2")
                .and().commit();
        p("inTransaction: " + old.size() + " results");
        for (CuratorTransactionResult r : old) {
            p("  " + txResult(r, c));
        }
        Stat st2 = new Stat();
        p("after inTransaction: data=" + s(c.getData().storingStatIn(st2).forPath("/cur/txn2")) + " " + stat(st2, c));
    }

    // ------------------------------------------------------------------ caches

    static String child(ChildData d) {
        if (d == null) {
            return "null";
        }
        return d.getPath() + "=" + s(d.getData()) + (d.getStat() != null ? " version=" + d.getStat().getVersion() : "");
    }

    @SuppressWarnings("deprecation")
    static void cache() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();

        // NodeCache (plain watches: exists/getData)
        c1.create().forPath("/cur", new byte[0]);
        NodeCache nc = new NodeCache(c1, "/cur/nc");
        toClose.add(nc);
        BlockingQueue<String> ncEvents = new LinkedBlockingQueue<>();
        nc.getListenable().addListener(() -> ncEvents.add(child(nc.getCurrentData())));
        nc.start(true);
        p("NodeCache initial: " + child(nc.getCurrentData()));
        c2.create().forPath("/cur/nc", b("a"));
        p("NodeCache after create: " + poll(ncEvents, "NodeCache create event"));
        c2.setData().forPath("/cur/nc", b("b"));
        p("NodeCache after setData: " + poll(ncEvents, "NodeCache change event"));
        c2.delete().forPath("/cur/nc");
        p("NodeCache after delete: " + poll(ncEvents, "NodeCache delete event"));
        nc.close();

        // CuratorCache (a persistent recursive watch: addWatch)
        c1.create().forPath("/cur/cc", b("root"));
        c1.create().forPath("/cur/cc/pre", b("p"));
        BlockingQueue<String> ccEvents = new LinkedBlockingQueue<>();
        CuratorCache cc = CuratorCache.build(c1, "/cur/cc");
        toClose.add(cc);
        cc.listenable().addListener(CuratorCacheListener.builder()
                .forCreates(d -> ccEvents.add("created " + child(d)))
                .forChanges((o, n) -> ccEvents.add("changed " + child(o) + " -> " + child(n)))
                .forDeletes(d -> ccEvents.add("deleted " + child(d)))
                .forInitialized(() -> ccEvents.add("initialized"))
                .build());
        cc.start();
        for (int i = 0; i < 3; i++) {
            p("CuratorCache: " + poll(ccEvents, "CuratorCache initial events"));
        }
        c2.setData().forPath("/cur/cc/pre", b("p2"));
        p("CuratorCache: " + poll(ccEvents, "CuratorCache change"));
        c2.create().forPath("/cur/cc/new", b("n"));
        p("CuratorCache: " + poll(ccEvents, "CuratorCache create"));
        c2.create().forPath("/cur/cc/new/deep", b("d"));
        p("CuratorCache: " + poll(ccEvents, "CuratorCache deep create"));
        c2.setData().forPath("/cur/cc", b("root2"));
        p("CuratorCache: " + poll(ccEvents, "CuratorCache root change"));
        c2.delete().forPath("/cur/cc/new/deep");
        p("CuratorCache: " + poll(ccEvents, "CuratorCache deep delete"));
        c2.delete().forPath("/cur/cc/pre");
        p("CuratorCache: " + poll(ccEvents, "CuratorCache delete"));
        List<String> paths = new ArrayList<>();
        cc.stream().forEach(d -> paths.add(child(d)));
        Collections.sort(paths);
        p("CuratorCache contents: " + paths);
        String extra = ccEvents.poll(300, TimeUnit.MILLISECONDS);
        p("CuratorCache no further events: " + (extra == null ? "true" : extra));
        cc.close();
    }

    // ------------------------------------------------------------------ leader latch

    static String participants(LeaderLatch l) throws Exception {
        StringBuilder sb = new StringBuilder();
        for (Participant p : l.getParticipants()) {
            sb.append(p.getId()).append(p.isLeader() ? "(leader)" : "").append(' ');
        }
        return sb.toString().trim();
    }

    static void leader() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();
        BlockingQueue<String> events = new LinkedBlockingQueue<>();
        LeaderLatch l1 = new LeaderLatch(c1, "/cur/leader", "p1");
        LeaderLatch l2 = new LeaderLatch(c2, "/cur/leader", "p2");
        toClose.add(l2);
        toClose.add(l1);
        for (LeaderLatch l : new LeaderLatch[] {l1, l2}) {
            String id = l.getId();
            l.addListener(new LeaderLatchListener() {
                public void isLeader() {
                    events.add(id + " isLeader");
                }

                public void notLeader() {
                    events.add(id + " notLeader");
                }
            });
        }
        l1.start();
        p("p1 await: " + l1.await(WAIT_S, TimeUnit.SECONDS));
        p("event: " + poll(events, "p1 isLeader"));
        l2.start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
        while (l1.getParticipants().size() < 2 && System.nanoTime() < deadline) {
            Thread.sleep(50);
        }
        p("p2 await 500ms: " + l2.await(500, TimeUnit.MILLISECONDS));
        p("hasLeadership: p1=" + l1.hasLeadership() + " p2=" + l2.hasLeadership());
        p("leader seen by p2: " + l2.getLeader().getId());
        p("participants: " + participants(l2));
        p("latch nodes: " + c1.getChildren().forPath("/cur/leader").size());
        p("state: p1=" + l1.getState() + " p2=" + l2.getState());

        l1.close();
        p("p2 await after p1 closed: " + l2.await(WAIT_S, TimeUnit.SECONDS));
        p("event: " + poll(events, "p2 isLeader"));
        p("hasLeadership: p1=" + l1.hasLeadership() + " p2=" + l2.hasLeadership());
        p("leader seen by p2: " + l2.getLeader().getId());
        p("participants: " + participants(l2));
        p("state: p1=" + l1.getState() + " p2=" + l2.getState());
        // close() deletes the latch node in the background
        p("latch nodes after p1 closed: " + awaitChildCount(c1, "/cur/leader", 1));
        l2.close();
        p("latch nodes after p2 closed: " + awaitChildCount(c1, "/cur/leader", 0));
        String extra = events.poll(300, TimeUnit.MILLISECONDS);
        p("no further listener events: " + (extra == null ? "true" : extra));
    }

    // ------------------------------------------------------------------ mutex

    static void mutex() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();
        InterProcessMutex m1 = new InterProcessMutex(c1, "/cur/lock");
        InterProcessMutex m2 = new InterProcessMutex(c2, "/cur/lock");

        p("m1 acquire: " + m1.acquire(WAIT_S, TimeUnit.SECONDS));
        p("m1 acquire again (reentrant): " + m1.acquire(WAIT_S, TimeUnit.SECONDS));
        p("m1 held: " + m1.isAcquiredInThisProcess() + " by this thread: " + m1.isOwnedByCurrentThread());
        p("participant nodes: " + m1.getParticipantNodes().size());
        p("m2 acquire 300ms while m1 holds: " + m2.acquire(300, TimeUnit.MILLISECONDS));
        m1.release();
        p("m1 released once, still held: " + m1.isAcquiredInThisProcess());
        p("m2 acquire 300ms while m1 holds once: " + m2.acquire(300, TimeUnit.MILLISECONDS));
        m1.release();
        p("m1 released twice, held: " + m1.isAcquiredInThisProcess());
        p("m2 acquire: " + m2.acquire(WAIT_S, TimeUnit.SECONDS));
        p("m1 acquire 300ms while m2 holds: " + m1.acquire(300, TimeUnit.MILLISECONDS));
        m2.release();
        try {
            m2.release();
            p("release when not held: ok?!");
        } catch (Exception e) {
            p("release when not held: " + err(e));
        }

        // two clients contend: never two holders at once, no increment lost
        final int rounds = 15;
        final AtomicInteger inside = new AtomicInteger();
        final AtomicInteger overlaps = new AtomicInteger();
        final int[] counter = {0};
        final List<Throwable> failures = Collections.synchronizedList(new ArrayList<>());
        List<Thread> threads = new ArrayList<>();
        for (InterProcessMutex m : new InterProcessMutex[] {m1, m2}) {
            Thread t = new Thread(() -> {
                try {
                    for (int i = 0; i < rounds; i++) {
                        if (!m.acquire(WAIT_S, TimeUnit.SECONDS)) {
                            throw new IllegalStateException("acquire timed out");
                        }
                        try {
                            if (inside.incrementAndGet() != 1) {
                                overlaps.incrementAndGet();
                            }
                            int v = counter[0];
                            Thread.sleep(2);
                            counter[0] = v + 1;
                            inside.decrementAndGet();
                        } finally {
                            m.release();
                        }
                    }
                } catch (Throwable e) {
                    failures.add(e);
                }
            });
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            t.join(TimeUnit.SECONDS.toMillis(60));
        }
        p("contention: failures=" + failures.size() + " overlaps=" + overlaps.get() + " counter=" + counter[0]);
        for (Throwable e : failures) {
            e.printStackTrace();
        }
        p("lock nodes left: " + childCount(c1, "/cur/lock"));

        // a holder's session ends: its lock node goes, the waiter gets the lock
        CuratorFramework c3 = client();
        InterProcessMutex m3 = new InterProcessMutex(c3, "/cur/lock");
        p("m3 acquire: " + m3.acquire(WAIT_S, TimeUnit.SECONDS));
        BlockingQueue<Boolean> got = new LinkedBlockingQueue<>();
        Thread waiter = new Thread(() -> {
            try {
                got.add(m1.acquire(WAIT_S, TimeUnit.SECONDS));
            } catch (Exception e) {
                e.printStackTrace();
                got.add(false);
            }
        });
        waiter.start();
        Thread.sleep(300);
        p("m1 waiting while m3 holds: " + got.isEmpty());
        c3.close();
        p("m1 acquire after m3's session closed: " + poll(got, "m1 acquire"));
    }

    // ------------------------------------------------------------------ atomic long

    static String av(AtomicValue<Long> v) {
        return "succeeded=" + v.succeeded() + " pre=" + v.preValue() + " post=" + v.postValue();
    }

    static void atomic() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();
        DistributedAtomicLong a1 = new DistributedAtomicLong(c1, "/cur/counter", new RetryNTimes(1000, 1));
        DistributedAtomicLong a2 = new DistributedAtomicLong(c2, "/cur/counter", new RetryNTimes(1000, 1));

        p("get before any write: " + av(a1.get()));
        p("a1 initialize 5: " + a1.initialize(5L));
        p("a2 initialize 7: " + a2.initialize(7L));
        p("a2 get: " + av(a2.get()));

        final int rounds = 25;
        final AtomicInteger ok = new AtomicInteger();
        final List<Throwable> failures = Collections.synchronizedList(new ArrayList<>());
        List<Thread> threads = new ArrayList<>();
        for (DistributedAtomicLong a : new DistributedAtomicLong[] {a1, a2}) {
            Thread t = new Thread(() -> {
                try {
                    for (int i = 0; i < rounds; i++) {
                        AtomicValue<Long> v = a.increment();
                        if (v.succeeded() && v.postValue() == v.preValue() + 1) {
                            ok.incrementAndGet();
                        }
                    }
                } catch (Throwable e) {
                    failures.add(e);
                }
            });
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            t.join(TimeUnit.SECONDS.toMillis(60));
        }
        for (Throwable e : failures) {
            e.printStackTrace();
        }
        p("concurrent increments: ok=" + ok.get() + " failures=" + failures.size());
        p("a1 get: " + av(a1.get()));
        p("a1 compareAndSet 55->100: " + av(a1.compareAndSet(55L, 100L)));
        p("a2 compareAndSet 55->1: " + av(a2.compareAndSet(55L, 1L)));
        p("a2 add 5: " + av(a2.add(5L)));
        p("a1 subtract 10: " + av(a1.subtract(10L)));
        p("a2 decrement: " + av(a2.decrement()));
        p("a1 trySet 0: " + av(a1.trySet(0L)));
        a2.forceSet(42L);
        p("a1 get after a2 forceSet 42: " + av(a1.get()));
        Stat st = new Stat();
        byte[] raw = c1.getData().storingStatIn(st).forPath("/cur/counter");
        p("node: length=" + raw.length + " value=" + java.nio.ByteBuffer.wrap(raw).getLong() + " " + stat(st, c1));
    }

    // ------------------------------------------------------------------ queue

    static final QueueSerializer<String> STRINGS = new QueueSerializer<String>() {
        public byte[] serialize(String item) {
            return b(item);
        }

        public String deserialize(byte[] bytes) {
            return s(bytes);
        }
    };

    static void queue() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();
        final int n = 12;

        DistributedQueue<String> producer = QueueBuilder.builder(c2, null, STRINGS, "/cur/queue")
                .putInBackground(false).buildQueue();
        toClose.add(producer);
        producer.start();
        for (int i = 0; i < n / 2; i++) {
            producer.put("item-" + i);
        }
        p("items queued before the consumer starts: " + c1.getChildren().forPath("/cur/queue").size());

        BlockingQueue<String> received = new LinkedBlockingQueue<>();
        QueueConsumer<String> consumer = new QueueConsumer<String>() {
            public void consumeMessage(String message) {
                received.add(message);
            }

            public void stateChanged(CuratorFramework client, ConnectionState newState) {
            }
        };
        DistributedQueue<String> queue = QueueBuilder.builder(c1, consumer, STRINGS, "/cur/queue").buildQueue();
        toClose.add(queue);
        queue.start();
        List<String> got = new ArrayList<>();
        for (int i = 0; i < n / 2; i++) {
            got.add(poll(received, "queue item " + i));
        }
        p("received: " + String.join(",", got));
        got.clear();
        for (int i = n / 2; i < n; i++) {
            producer.put("item-" + i);
        }
        for (int i = n / 2; i < n; i++) {
            got.add(poll(received, "queue item " + i));
        }
        p("received while running: " + String.join(",", got));
        p("items left in the queue: " + awaitChildCount(c1, "/cur/queue", 0));
        String extra = received.poll(300, TimeUnit.MILLISECONDS);
        p("nothing received twice: " + (extra == null ? "true" : extra));
    }

    // ------------------------------------------------------------------ main

    public static void main(String[] args) {
        if (args.length != 2) {
            System.err.println("usage: CuratorScenarios HOST:PORT " + String.join("|", SCENARIOS) + "|"
                    + String.join("|", CuratorRecipes.SCENARIOS) + "|" + String.join("|", ZkRecipes.SCENARIOS));
            System.exit(2);
        }
        hosts = args[0];
        String scenario = args[1];
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(TimeUnit.SECONDS.toMillis(100));
            } catch (InterruptedException e) {
                return;
            }
            p("TIMEOUT: watchdog fired after 100 s");
            for (java.util.Map.Entry<Thread, StackTraceElement[]> e : Thread.getAllStackTraces().entrySet()) {
                System.err.println("thread " + e.getKey().getName());
                for (StackTraceElement el : e.getValue()) {
                    System.err.println("    at " + el);
                }
            }
            Runtime.getRuntime().halt(3);
        });
        watchdog.setDaemon(true);
        watchdog.start();
        int rc = 0;
        try {
            switch (scenario) {
                case "basic": basic(); break;
                case "transaction": transaction(); break;
                case "cache": cache(); break;
                case "leader": leader(); break;
                case "mutex": mutex(); break;
                case "atomic": atomic(); break;
                case "queue": queue(); break;
                default:
                    if (!CuratorRecipes.run(scenario) && !ZkRecipes.runZk(scenario)) {
                        System.err.println("unknown scenario " + scenario);
                        System.exit(2);
                    }
            }
            p("done");
        } catch (Throwable e) {
            p("ERROR " + err(e) + ": " + e.getMessage());
            e.printStackTrace();
            rc = 1;
        }
        for (int i = toClose.size() - 1; i >= 0; i--) {
            try {
                toClose.get(i).close();
            } catch (Throwable e) {
                // already closed, or the server went away: nothing to report
            }
        }
        System.exit(rc);
    }
}
