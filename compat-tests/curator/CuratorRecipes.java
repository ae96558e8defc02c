/*
 * More of Apache Curator 5.4's recipes, run by CuratorScenarios' main:
 *
 *     java -cp CLASSES:CURATOR_JARS CuratorScenarios HOST:PORT SCENARIO
 *
 * with SCENARIO one of CuratorRecipes.SCENARIOS: LeaderSelector; the
 * semaphores and InterProcessMultiLock; InterProcessReadWriteLock; the two
 * barriers; SharedCount; PersistentNode, PersistentTtlNode and GroupMember;
 * PathChildrenCache and TreeCache; the priority, id and delay queues; and
 * the framework's watchers() API (addWatch, checkWatches, removeWatches);
 * and the rest of the framework's calls: ACLs with digest auth, TTL nodes,
 * idempotent writes, createContainers, getConfig, and a session expired
 * under a client's feet.
 *
 * Same rules as CuratorScenarios (whose output helpers these use): one line
 * per step, built only from what any correct server makes deterministic, and
 * compared by compat-tests/test_zk_curator.py with what the real ZooKeeper
 * 3.8.0 printed.  Where a recipe's own threads race (semaphore contention,
 * member views filled in the background), a step waits for the state it
 * prints rather than sleeping, so the line does not depend on timing.
 */

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.FutureTask;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Pattern;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.recipes.barriers.DistributedBarrier;
import org.apache.curator.framework.recipes.barriers.DistributedDoubleBarrier;
import org.apache.curator.framework.recipes.cache.ChildData;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.cache.NodeCache;
import org.apache.curator.framework.recipes.cache.PathChildrenCache;
import org.apache.curator.framework.recipes.cache.PathChildrenCacheEvent;
import org.apache.curator.framework.recipes.cache.TreeCache;
import org.apache.curator.framework.recipes.leader.LeaderSelector;
import org.apache.curator.framework.recipes.leader.LeaderSelectorListenerAdapter;
import org.apache.curator.framework.recipes.leader.Participant;
import org.apache.curator.framework.recipes.locks.InterProcessMultiLock;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessReadWriteLock;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreMutex;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import org.apache.curator.framework.recipes.nodes.GroupMember;
import org.apache.curator.framework.recipes.nodes.PersistentNode;
import org.apache.curator.framework.recipes.nodes.PersistentTtlNode;
import org.apache.curator.framework.recipes.queue.DistributedDelayQueue;
import org.apache.curator.framework.recipes.queue.DistributedIdQueue;
import org.apache.curator.framework.recipes.queue.DistributedPriorityQueue;
import org.apache.curator.framework.recipes.queue.QueueBuilder;
import org.apache.curator.framework.recipes.queue.QueueConsumer;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.framework.recipes.shared.SharedCountListener;
import org.apache.curator.framework.recipes.shared.SharedCountReader;
import org.apache.curator.framework.recipes.shared.VersionedValue;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.Watcher.WatcherType;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.Id;
import org.apache.zookeeper.data.Stat;

public class CuratorRecipes extends CuratorScenarios {
    static final String[] SCENARIOS = {
        "selector", "semaphore", "rwlock", "barrier", "sharedcount", "nodes", "childcache", "queues", "watchers",
        "framework", "restart"};

    /** Runs a scenario of this file; false if the name is not one of them. */
    static boolean run(String scenario) throws Exception {
        switch (scenario) {
            case "selector": selector(); return true;
            case "semaphore": semaphore(); return true;
            case "rwlock": rwlock(); return true;
            case "barrier": barrier(); return true;
            case "sharedcount": sharedcount(); return true;
            case "nodes": nodes(); return true;
            case "childcache": childcache(); return true;
            case "queues": queues(); return true;
            case "watchers": watchers(); return true;
            case "framework": framework(); return true;
            case "restart": restart(); return true;
            default: return false;
        }
    }

    // ------------------------------------------------------------------ helpers

    /** Waits up to WAIT_S for cond; returns its last value. */
    static boolean until(Callable<Boolean> cond) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
        while (!cond.call()) {
            if (System.nanoTime() > deadline) {
                return false;
            }
            Thread.sleep(20);
        }
        return true;
    }

    /** Runs task on a thread of its own (a second process, as far as a lock is concerned). */
    static Future<Object> spawn(Callable<Object> task) {
        FutureTask<Object> f = new FutureTask<>(task);
        Thread t = new Thread(f);
        t.setDaemon(true);
        t.start();
        return f;
    }

    /** A spawned task's result, or "ERROR ..." if it threw. */
    static String result(Future<Object> f, String what) throws Exception {
        try {
            return String.valueOf(f.get(WAIT_S, TimeUnit.SECONDS));
        } catch (TimeoutException e) {
            throw new IllegalStateException("timed out after " + WAIT_S + " s waiting for " + what);
        } catch (ExecutionException e) {
            return "ERROR " + err(e.getCause());
        }
    }

    /** Whatever is already in q, after a short quiet period: "none" if nothing. */
    static String rest(BlockingQueue<String> q) throws InterruptedException {
        List<String> extra = new ArrayList<>();
        String e;
        while ((e = q.poll(300, TimeUnit.MILLISECONDS)) != null) {
            extra.add(e);
        }
        return extra.isEmpty() ? "none" : String.join(", ", extra);
    }

    static boolean exists(CuratorFramework c, String path) throws Exception {
        return c.checkExists().forPath(path) != null;
    }

    // ------------------------------------------------------------------ LeaderSelector

    static LeaderSelector selector(CuratorFramework c, String id, BlockingQueue<String> events, Semaphore release) {
        LeaderSelector s = new LeaderSelector(c, "/cur/selector", new LeaderSelectorListenerAdapter() {
            @Override
            public void takeLeadership(CuratorFramework client) {
                events.add(id + " leader");
                try {
                    release.acquire();
                    events.add(id + " relinquished");
                } catch (InterruptedException e) {
                    // interruptLeadership() or close(); returning gives the lock up
                    events.add(id + " interrupted");
                }
            }
        });
        s.setId(id);
        s.autoRequeue();
        return s;
    }

    static String participants(LeaderSelector s) throws Exception {
        List<String> out = new ArrayList<>();
        for (Participant p : s.getParticipants()) {
            out.add(p.getId() + (p.isLeader() ? "(leader)" : ""));
        }
        return String.join(" ", out);
    }

    static void selector() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();
        BlockingQueue<String> events = new LinkedBlockingQueue<>();
        Semaphore release1 = new Semaphore(0);
        Semaphore release2 = new Semaphore(0);
        LeaderSelector s1 = selector(c1, "s1", events, release1);
        LeaderSelector s2 = selector(c2, "s2", events, release2);

        s1.start();
        p("event: " + poll(events, "s1 leader"));
        s2.start();
        until(() -> s1.getParticipants().size() == 2);
        p("participants: " + participants(s2));
        p("hasLeadership: s1=" + s1.hasLeadership() + " s2=" + s2.hasLeadership());
        p("leader seen by s2: " + s2.getLeader().getId());

        // autoRequeue: whoever gives leadership up queues again behind the other
        release1.release();
        p("event: " + poll(events, "s1 relinquished"));
        p("event: " + poll(events, "s2 leader"));
        until(() -> s2.getParticipants().size() == 2);
        p("participants: " + participants(s1));
        release2.release();
        p("event: " + poll(events, "s2 relinquished"));
        p("event: " + poll(events, "s1 leader"));

        s1.interruptLeadership();
        p("event: " + poll(events, "s1 interrupted"));
        p("event: " + poll(events, "s2 leader"));
        s2.close();
        p("event: " + poll(events, "s2 interrupted"));
        p("event: " + poll(events, "s1 leader"));
        until(() -> s1.getParticipants().size() == 1);
        p("participants: " + participants(s1));
        s1.close();
        p("event: " + poll(events, "s1 interrupted"));
        p("lock nodes left: " + awaitChildCount(c1, "/cur/selector", 0));
        p("further events: " + rest(events));
    }

    // ------------------------------------------------------------------ semaphores, multi-lock

    static void semaphore() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();

        InterProcessSemaphoreV2 s1 = new InterProcessSemaphoreV2(c1, "/cur/sem", 2);
        InterProcessSemaphoreV2 s2 = new InterProcessSemaphoreV2(c2, "/cur/sem", 2);
        Collection<Lease> two = s1.acquire(2, WAIT_S, TimeUnit.SECONDS);
        p("s1 acquire 2 of 2: " + (two == null ? "null" : two.size() + " leases"));
        p("participant nodes: " + s1.getParticipantNodes().size());
        p("s2 acquire 300ms with none left: " + s2.acquire(300, TimeUnit.MILLISECONDS));
        List<Lease> held = new ArrayList<>(two);
        s1.returnLease(held.remove(0));
        Lease l2 = s2.acquire(WAIT_S, TimeUnit.SECONDS);
        p("s2 acquire after s1 returned one: " + (l2 != null));
        p("participant nodes: " + s2.getParticipantNodes().size());
        s1.returnAll(held);
        s2.returnLease(l2);
        p("lease nodes left: " + awaitChildCount(c1, "/cur/sem/leases", 0));

        // 6 threads on two clients, 3 leases: never more than 3 holders at once
        InterProcessSemaphoreV2[] sems = {
            new InterProcessSemaphoreV2(c1, "/cur/sem3", 3), new InterProcessSemaphoreV2(c2, "/cur/sem3", 3)};
        AtomicInteger holders = new AtomicInteger();
        AtomicInteger most = new AtomicInteger();
        List<Future<Object>> workers = new ArrayList<>();
        for (int t = 0; t < 6; t++) {
            InterProcessSemaphoreV2 sem = sems[t % 2];
            workers.add(spawn(() -> {
                for (int i = 0; i < 4; i++) {
                    Lease lease = sem.acquire(WAIT_S, TimeUnit.SECONDS);
                    if (lease == null) {
                        return "timed out";
                    }
                    most.accumulateAndGet(holders.incrementAndGet(), Math::max);
                    Thread.sleep(2);
                    holders.decrementAndGet();
                    sem.returnLease(lease);
                }
                return "ok";
            }));
        }
        List<String> outcomes = new ArrayList<>();
        for (Future<Object> w : workers) {
            outcomes.add(result(w, "a semaphore worker"));
        }
        p("contention: " + outcomes + " at most 3 at once: " + (most.get() <= 3));

        // InterProcessSemaphoreMutex: a lock that is not reentrant
        InterProcessSemaphoreMutex m1 = new InterProcessSemaphoreMutex(c1, "/cur/smutex");
        InterProcessSemaphoreMutex m2 = new InterProcessSemaphoreMutex(c2, "/cur/smutex");
        p("m1 acquire: " + m1.acquire(WAIT_S, TimeUnit.SECONDS));
        p("m1 acquire again 300ms (not reentrant): " + m1.acquire(300, TimeUnit.MILLISECONDS));
        p("m2 acquire 300ms: " + m2.acquire(300, TimeUnit.MILLISECONDS));
        m1.release();
        p("m2 acquire after m1 released: " + m2.acquire(WAIT_S, TimeUnit.SECONDS));
        m2.release();

        // InterProcessMultiLock: all of its locks or none
        InterProcessMultiLock multi = new InterProcessMultiLock(c1, java.util.Arrays.asList("/cur/ml/a", "/cur/ml/b"));
        InterProcessMutex b = new InterProcessMutex(c2, "/cur/ml/b");
        p("multi acquire: " + multi.acquire(WAIT_S, TimeUnit.SECONDS));
        p("b acquire 300ms while multi holds: " + b.acquire(300, TimeUnit.MILLISECONDS));
        multi.release();
        p("b acquire after multi released: " + b.acquire(WAIT_S, TimeUnit.SECONDS));
        p("multi acquire 300ms while b is held: " + multi.acquire(300, TimeUnit.MILLISECONDS));
        p("a left free after the failed multi acquire: "
                + (awaitChildCount(c1, "/cur/ml/a", 0) == 0));
        b.release();
        p("lock nodes left: a=" + awaitChildCount(c1, "/cur/ml/a", 0) + " b=" + awaitChildCount(c1, "/cur/ml/b", 0));
    }

    // ------------------------------------------------------------------ read/write lock

    static void rwlock() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();
        InterProcessReadWriteLock a = new InterProcessReadWriteLock(c1, "/cur/rw");
        InterProcessReadWriteLock bb = new InterProcessReadWriteLock(c2, "/cur/rw");
        InterProcessReadWriteLock w = new InterProcessReadWriteLock(c2, "/cur/rw");

        p("a read: " + a.readLock().acquire(WAIT_S, TimeUnit.SECONDS));
        p("b read while a reads: " + bb.readLock().acquire(WAIT_S, TimeUnit.SECONDS));
        p("lock nodes: " + childCount(c1, "/cur/rw"));
        p("w write 300ms while two read: " + w.writeLock().acquire(300, TimeUnit.MILLISECONDS));

        // A lock belongs to the thread that took it: the writer lives on a thread of its own.
        Semaphore go = new Semaphore(0);
        BlockingQueue<String> wlog = new LinkedBlockingQueue<>();
        Future<Object> writer = spawn(() -> {
            wlog.add("writer acquired: " + w.writeLock().acquire(WAIT_S, TimeUnit.SECONDS));
            go.acquire();
            // a downgrade: the write lock's holder takes the read lock, then gives the write lock up
            wlog.add("writer takes the read lock too: " + w.readLock().acquire(WAIT_S, TimeUnit.SECONDS));
            w.writeLock().release();
            wlog.add("writer released the write lock");
            go.acquire();
            w.readLock().release();
            return "done";
        });
        until(() -> childCount(c1, "/cur/rw") == 3);
        a.readLock().release();
        Thread.sleep(100);
        p("writer waiting while b reads: " + wlog.isEmpty());
        bb.readLock().release();
        p(poll(wlog, "the writer"));
        p("a read 300ms while w writes: " + a.readLock().acquire(300, TimeUnit.MILLISECONDS));
        p("release by a thread that does not hold it: " + quietly(() -> w.writeLock().release()));
        go.release();
        p(poll(wlog, "the downgrade"));
        p(poll(wlog, "the write lock's release"));
        p("a read while w only reads: " + a.readLock().acquire(WAIT_S, TimeUnit.SECONDS));
        p("lock nodes: " + childCount(c1, "/cur/rw"));
        go.release();
        p("writer: " + result(writer, "the writer's end"));
        a.readLock().release();
        p("lock nodes left: " + awaitChildCount(c1, "/cur/rw", 0));
    }

    // ------------------------------------------------------------------ barriers

    static void barrier() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();
        DistributedBarrier b1 = new DistributedBarrier(c1, "/cur/barrier");
        DistributedBarrier b2 = new DistributedBarrier(c2, "/cur/barrier");
        p("wait on an unset barrier: " + b2.waitOnBarrier(300, TimeUnit.MILLISECONDS));
        b1.setBarrier();
        p("wait 300ms on a set barrier: " + b2.waitOnBarrier(300, TimeUnit.MILLISECONDS));
        Future<Object> waiter = spawn(() -> b2.waitOnBarrier(WAIT_S, TimeUnit.SECONDS));
        Thread.sleep(100);
        p("waiter still waiting: " + !waiter.isDone());
        b1.removeBarrier();
        p("waiter after removeBarrier: " + result(waiter, "the barrier waiter"));
        p("barrier node: " + exists(c1, "/cur/barrier"));

        // DistributedDoubleBarrier: nobody enters until all 3 have come, nobody leaves until all go
        CuratorFramework[] clients = {c1, c2, c1};
        List<DistributedDoubleBarrier> members = new ArrayList<>();
        for (CuratorFramework c : clients) {
            members.add(new DistributedDoubleBarrier(c, "/cur/double", 3));
        }
        List<Future<Object>> entering = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            DistributedDoubleBarrier m = members.get(i);
            entering.add(spawn(() -> m.enter(WAIT_S, TimeUnit.SECONDS)));
        }
        until(() -> childCount(c1, "/cur/double") == 2);
        Thread.sleep(100);
        p("entered with 2 of 3 there: " + (entering.get(0).isDone() || entering.get(1).isDone()));
        entering.add(spawn(() -> members.get(2).enter(WAIT_S, TimeUnit.SECONDS)));
        List<String> entered = new ArrayList<>();
        for (Future<Object> f : entering) {
            entered.add(result(f, "enter"));
        }
        p("enter: " + entered);
        p("children once all entered: " + sorted(names(c1.getChildren().forPath("/cur/double"))));
        List<Future<Object>> leaving = new ArrayList<>();
        for (DistributedDoubleBarrier m : members) {
            leaving.add(spawn(() -> m.leave(WAIT_S, TimeUnit.SECONDS)));
        }
        List<String> left = new ArrayList<>();
        for (Future<Object> f : leaving) {
            left.add(result(f, "leave"));
        }
        p("leave: " + left);
        p("children once all left: " + sorted(names(c1.getChildren().forPath("/cur/double"))));
    }

    /** Child names with their random parts (Curator's UUIDs) replaced by "<id>". */
    static List<String> names(List<String> children) {
        List<String> out = new ArrayList<>();
        Pattern uuid = Pattern.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");
        for (String c : children) {
            out.add(uuid.matcher(c).replaceAll("<id>"));
        }
        return out;
    }

    // ------------------------------------------------------------------ SharedCount

    static void sharedcount() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();
        BlockingQueue<String> seen = new LinkedBlockingQueue<>();
        SharedCount reader = new SharedCount(c1, "/cur/count", 7);
        SharedCount writer = new SharedCount(c2, "/cur/count", 99);
        toClose.add(reader);
        toClose.add(writer);
        reader.addListener(new SharedCountListener() {
            public void countHasChanged(SharedCountReader r, int newCount) {
                seen.add("reader saw " + newCount);
            }

            public void stateChanged(CuratorFramework client, ConnectionState newState) {
            }
        });
        reader.start();
        writer.start();
        p("counts after start (the first seed wins): " + reader.getCount() + " " + writer.getCount());
        VersionedValue<Integer> v0 = writer.getVersionedValue();
        p("version: " + v0.getVersion());
        writer.setCount(10);
        p(poll(seen, "the reader's first change"));
        p("trySetCount with a stale version: " + writer.trySetCount(v0, 11));
        p("trySetCount with the current version: " + writer.trySetCount(writer.getVersionedValue(), 12));
        p(poll(seen, "the reader's second change"));
        p("reader: " + reader.getCount() + " version " + reader.getVersionedValue().getVersion());
        Stat st = new Stat();
        byte[] raw = c1.getData().storingStatIn(st).forPath("/cur/count");
        p("node: length=" + raw.length + " value=" + java.nio.ByteBuffer.wrap(raw).getInt() + " " + stat(st, c1));
        p("further reader events: " + rest(seen));
    }

    // ------------------------------------------------------------------ persistent nodes, group membership

    static void nodes() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();

        PersistentNode pn = new PersistentNode(c1, CreateMode.EPHEMERAL, false, "/cur/pn", b("x"));
        toClose.add(pn);
        pn.start();
        p("created: " + pn.waitForInitialCreate(WAIT_S, TimeUnit.SECONDS) + " at " + pn.getActualPath());
        p("stat: " + stat(c1.checkExists().forPath("/cur/pn"), c1));
        c2.delete().forPath("/cur/pn");
        p("made again after a delete: " + until(() -> exists(c2, "/cur/pn")));
        p("data: " + s(c2.getData().forPath("/cur/pn")));
        pn.setData(b("y"));  // written in the background
        p("data after setData: " + until(() -> "y".equals(s(c2.getData().forPath("/cur/pn")))));
        pn.close();
        p("gone after close: " + until(() -> !exists(c2, "/cur/pn")));

        // protected ephemeral sequential: the name keeps its protection prefix, the number moves on
        PersistentNode seq = new PersistentNode(c1, CreateMode.EPHEMERAL_SEQUENTIAL, true, "/cur/pns/m-", b("s"));
        toClose.add(seq);
        seq.start();
        seq.waitForInitialCreate(WAIT_S, TimeUnit.SECONDS);
        String first = seq.getActualPath();
        p("sequential: " + names(Collections.singletonList(first)));
        c2.delete().forPath(first);
        p("made again: " + until(() -> childCount(c2, "/cur/pns") == 1));
        p("children: " + names(c2.getChildren().forPath("/cur/pns")));
        p("actual path: " + names(Collections.singletonList(String.valueOf(seq.getActualPath()))));
        seq.close();

        // PersistentTtlNode: a container whose TTL child is touched while the node lives
        PersistentTtlNode ttl = new PersistentTtlNode(c1, "/cur/ttl", 2000, b("t"));
        toClose.add(ttl);
        ttl.start();
        p("ttl node created: " + ttl.waitForInitialCreate(WAIT_S, TimeUnit.SECONDS));
        p("ttl node data: " + s(c2.getData().forPath("/cur/ttl")));
        // the first touch comes after half the TTL
        p("ttl node's touch child made: "
                + until(() -> c2.getChildren().forPath("/cur/ttl").equals(Collections.singletonList("touch"))));
        p("touch child: " + stat(c2.checkExists().forPath("/cur/ttl/touch"), c2));
        Thread.sleep(3000);
        p("still there after its TTL while touched: " + exists(c2, "/cur/ttl"));
        ttl.close();
        p("gone after close (TTL child expired, container reaped): " + until(() -> !exists(c2, "/cur/ttl")));

        // GroupMember
        GroupMember m1 = new GroupMember(c1, "/cur/group", "m1", b("d1"));
        GroupMember m2 = new GroupMember(c2, "/cur/group", "m2", b("d2"));
        toClose.add(m1);
        toClose.add(m2);
        m1.start();
        m2.start();
        p("m1 sees both: " + until(() -> m1.getCurrentMembers().size() == 2) + " " + members(m1));
        m2.setThisData(b("d2b"));
        p("m1 sees m2's new data: " + until(() -> "d2b".equals(s(m1.getCurrentMembers().get("m2"))))
                + " " + members(m1));
        m2.close();
        p("m1 sees m2 leave: " + until(() -> m1.getCurrentMembers().size() == 1) + " " + members(m1));
    }

    static String members(GroupMember m) {
        List<String> out = new ArrayList<>();
        for (Map.Entry<String, byte[]> e : m.getCurrentMembers().entrySet()) {
            out.add(e.getKey() + "=" + s(e.getValue()));
        }
        Collections.sort(out);
        return out.toString();
    }

    // ------------------------------------------------------------------ PathChildrenCache, TreeCache

    @SuppressWarnings("deprecation")
    static void childcache() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();
        // names whose HashSet order (the server's getChildren order) is neither sorted nor
        // creation order: the initial events come in that order
        c1.create().creatingParentsIfNeeded().forPath("/cur/pc", b("root"));
        for (String n : new String[] {"delta", "alpha", "charlie", "bravo", "echo"}) {
            c1.create().forPath("/cur/pc/" + n, b(n));
        }
        BlockingQueue<String> events = new LinkedBlockingQueue<>();
        PathChildrenCache pcc = new PathChildrenCache(c1, "/cur/pc", true);
        toClose.add(pcc);
        pcc.getListenable().addListener((client, e) -> events.add(e.getType()
                + (e.getData() != null ? " " + child(e.getData()) : "")
                + (e.getType() == PathChildrenCacheEvent.Type.INITIALIZED
                        ? " with " + e.getInitialData().size() : "")));
        pcc.start(PathChildrenCache.StartMode.POST_INITIALIZED_EVENT);
        for (int i = 0; i < 6; i++) {
            p("PathChildrenCache: " + poll(events, "PathChildrenCache initial events"));
        }
        c2.create().forPath("/cur/pc/foxtrot", b("f"));
        p("PathChildrenCache: " + poll(events, "child added"));
        c2.setData().forPath("/cur/pc/bravo", b("b2"));
        p("PathChildrenCache: " + poll(events, "child updated"));
        c2.delete().forPath("/cur/pc/alpha");
        p("PathChildrenCache: " + poll(events, "child removed"));
        c2.setData().forPath("/cur/pc", b("root2"));
        List<String> current = new ArrayList<>();
        for (ChildData d : pcc.getCurrentData()) {
            current.add(child(d));
        }
        p("PathChildrenCache current data: " + current);
        p("PathChildrenCache further events: " + rest(events));
        pcc.close();

        c1.create().creatingParentsIfNeeded().forPath("/cur/tc/x/x1", b("x1"));
        c1.create().forPath("/cur/tc/y", b("y"));
        c1.setData().forPath("/cur/tc", b("tc"));
        BlockingQueue<String> tevents = new LinkedBlockingQueue<>();
        TreeCache tc = TreeCache.newBuilder(c1, "/cur/tc").build();
        toClose.add(tc);
        tc.getListenable().addListener((client, e) -> {
            if (e.getType().name().startsWith("CONNECTION")) {
                return;
            }
            tevents.add(e.getType() + (e.getData() != null ? " " + child(e.getData()) : ""));
        });
        tc.start();
        for (int i = 0; i < 5; i++) {
            p("TreeCache: " + poll(tevents, "TreeCache initial events"));
        }
        c2.create().forPath("/cur/tc/y/y1", b("y1"));
        p("TreeCache: " + poll(tevents, "deep create"));
        c2.setData().forPath("/cur/tc/x/x1", b("x1b"));
        p("TreeCache: " + poll(tevents, "deep update"));
        c2.delete().deletingChildrenIfNeeded().forPath("/cur/tc/x");
        p("TreeCache: " + poll(tevents, "subtree removal 1"));
        p("TreeCache: " + poll(tevents, "subtree removal 2"));
        p("TreeCache children of root: " + sorted(new ArrayList<>(tc.getCurrentChildren("/cur/tc").keySet())));
        p("TreeCache further events: " + rest(tevents));
        tc.close();
    }

    // ------------------------------------------------------------------ priority, id and delay queues

    static QueueConsumer<String> into(BlockingQueue<String> q) {
        return new QueueConsumer<String>() {
            public void consumeMessage(String message) {
                q.add(message);
            }

            public void stateChanged(CuratorFramework client, ConnectionState newState) {
            }
        };
    }

    static List<String> take(BlockingQueue<String> q, int n, String what) throws Exception {
        List<String> got = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            got.add(poll(q, what + " " + i));
        }
        return got;
    }

    static void queues() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();

        DistributedPriorityQueue<String> pput = QueueBuilder.builder(c2, null, STRINGS, "/cur/pq")
                .putInBackground(false).buildPriorityQueue(0);
        toClose.add(pput);
        pput.start();
        int[] priorities = {5, 1, 3, -2, 4, 1};
        for (int i = 0; i < priorities.length; i++) {
            pput.put("p" + priorities[i] + "-" + i, priorities[i]);
        }
        BlockingQueue<String> got = new LinkedBlockingQueue<>();
        DistributedPriorityQueue<String> pq = QueueBuilder.builder(c1, into(got), STRINGS, "/cur/pq")
                .buildPriorityQueue(0);
        toClose.add(pq);
        pq.start();
        p("priority queue, in order: " + take(got, priorities.length, "priority item"));
        p("priority queue left: " + awaitChildCount(c1, "/cur/pq", 0));

        DistributedIdQueue<String> iput = QueueBuilder.builder(c2, null, STRINGS, "/cur/iq")
                .putInBackground(false).buildIdQueue();
        toClose.add(iput);
        iput.start();
        iput.put("first", "id-a");
        iput.put("second", "id-b");
        iput.put("third", "id-a");
        p("id queue: removed by id-a: " + iput.remove("id-a"));
        p("id queue: removed by id-missing: " + iput.remove("id-missing"));
        DistributedIdQueue<String> iq = QueueBuilder.builder(c1, into(got), STRINGS, "/cur/iq").buildIdQueue();
        toClose.add(iq);
        iq.start();
        p("id queue received: " + take(got, 1, "id item"));
        p("id queue left: " + awaitChildCount(c1, "/cur/iq", 0));

        DistributedDelayQueue<String> dq = QueueBuilder.builder(c1, into(got), STRINGS, "/cur/dq")
                .putInBackground(false).buildDelayQueue();
        toClose.add(dq);
        dq.start();
        long now = System.currentTimeMillis();
        dq.put("later", now + 1200);
        dq.put("sooner", now + 400);
        dq.put("now", now);
        List<String> delayed = take(got, 3, "delayed item");
        long took = System.currentTimeMillis() - now;
        p("delay queue, in order: " + delayed + " not before the last's time: " + (took >= 1200));
        p("delay queue left: " + awaitChildCount(c1, "/cur/dq", 0));
        p("further items: " + rest(got));
    }

    // ------------------------------------------------------------------ watchers()
    // addWatch, checkWatches (a given watcher), removeWatches (all of a path's)

    static void watchers() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();
        BlockingQueue<String> events = new LinkedBlockingQueue<>();
        Watcher w = e -> events.add(e.getType() + " " + e.getPath());
        c1.create().creatingParentsIfNeeded().forPath("/cur/w/child", b("c"));

        c1.watchers().add().withMode(AddWatchMode.PERSISTENT).usingWatcher(w).forPath("/cur/w");
        c2.setData().forPath("/cur/w", b("1"));
        p("persistent: " + poll(events, "first change"));
        c2.setData().forPath("/cur/w", b("2"));
        p("persistent: " + poll(events, "second change"));
        c2.create().forPath("/cur/w/k", b("k"));
        p("persistent: " + poll(events, "child change"));
        c2.create().forPath("/cur/w/k/deep", b("d"));
        p("persistent, grandchild created: " + rest(events));
        c1.watchers().remove(w).forPath("/cur/w");
        p("removed: " + rest(events));
        c2.setData().forPath("/cur/w", b("3"));
        p("after removal: " + rest(events));
        try {
            c1.watchers().remove(w).forPath("/cur/w");
            p("remove again: ok?!");
        } catch (Exception e) {
            p("remove again: " + err(e));
        }
        p("remove again quietly: " + quietly(() -> c1.watchers().remove(w).quietly().forPath("/cur/w")));

        c1.watchers().add().withMode(AddWatchMode.PERSISTENT_RECURSIVE).usingWatcher(w).forPath("/cur/w");
        c2.create().forPath("/cur/w/k/deep2", b("d"));
        p("recursive: " + poll(events, "deep create"));
        c2.setData().forPath("/cur/w/k/deep2", b("e"));
        p("recursive: " + poll(events, "deep change"));
        c2.delete().forPath("/cur/w/k/deep2");
        p("recursive: " + poll(events, "deep delete"));
        c1.watchers().removeAll().forPath("/cur/w");
        p("removeAll: " + rest(events));

        // one-shot watches, removed by type
        c1.checkExists().usingWatcher(w).forPath("/cur/w");
        c1.getChildren().usingWatcher(w).forPath("/cur/w");
        c1.watchers().remove(w).ofType(WatcherType.Children).forPath("/cur/w");
        p("children watch removed: " + rest(events));
        c2.create().forPath("/cur/w/k2", b("k"));
        p("after a child create: " + rest(events));
        c2.setData().forPath("/cur/w", b("4"));
        p("data watch still there: " + poll(events, "data change") + "; then " + rest(events));
        try {
            c1.watchers().remove(w).ofType(WatcherType.Data).forPath("/cur/w");
            p("remove a fired data watch: ok?!");
        } catch (Exception e) {
            p("remove a fired data watch: " + err(e));
        }
        c1.getData().usingWatcher(w).forPath("/cur/w");
        c1.watchers().remove(w).locally().forPath("/cur/w");
        p("removed locally: " + rest(events));
        c2.setData().forPath("/cur/w", b("5"));
        p("after a local removal: " + rest(events));
    }

    // ------------------------------------------------------------------ the framework's other calls

    static void framework() throws Exception {
        CuratorFramework alice = start(builder().authorization("digest", b("alice:secret")));
        CuratorFramework anon = client();

        // ACLs: a node only its creator may touch, then opened for reading
        alice.create().creatingParentsIfNeeded().withACL(ZooDefs.Ids.CREATOR_ALL_ACL)
                .forPath("/cur/fw/secret", b("s"));
        String secret = "/cur/fw/secret";
        p("alice getACL: " + acls(alice.getACL().forPath(secret)));
        p("anon getData: " + quietly(() -> anon.getData().forPath(secret)));
        p("anon exists: " + stat(anon.checkExists().forPath(secret), anon));
        p("anon getACL: " + quietly(() -> anon.getACL().forPath(secret)));
        p("anon setACL: " + quietly(() -> anon.setACL().withACL(ZooDefs.Ids.OPEN_ACL_UNSAFE).forPath(secret)));
        List<ACL> readOnly = Collections.singletonList(new ACL(ZooDefs.Perms.READ, ZooDefs.Ids.ANYONE_ID_UNSAFE));
        p("alice setACL version 0: " + stat(alice.setACL().withVersion(0).withACL(readOnly).forPath(secret), alice));
        p("alice setACL stale version: "
                + quietly(() -> alice.setACL().withVersion(0).withACL(readOnly).forPath(secret)));
        p("anon getData now: " + s(anon.getData().forPath(secret)) + " acl " + acls(anon.getACL().forPath(secret)));
        p("anon setData now: " + quietly(() -> anon.setData().forPath(secret, b("x"))));
        p("alice setData now: " + quietly(() -> alice.setData().forPath(secret, b("x"))));
        p("anon create child: " + quietly(() -> anon.create().forPath(secret + "/c")));
        p("anon delete: " + quietly(() -> anon.delete().forPath(secret)));
        List<ACL> unknownScheme = Collections.singletonList(new ACL(ZooDefs.Perms.ALL, new Id("nope", "x")));
        p("alice create with an unknown scheme: "
                + quietly(() -> alice.create().withACL(unknownScheme).forPath("/cur/fw/bad")));

        // TTL nodes: gone after their TTL once childless
        alice.create().withTtl(1000).withMode(CreateMode.PERSISTENT_WITH_TTL).forPath("/cur/fw/ttl", b("t"));
        p("ttl node: " + stat(anon.checkExists().forPath("/cur/fw/ttl"), anon));
        alice.create().withTtl(1000).withMode(CreateMode.PERSISTENT_WITH_TTL).forPath("/cur/fw/ttlp", b("t"));
        alice.create().forPath("/cur/fw/ttlp/child");
        p("ttl node expires: " + until(() -> !exists(anon, "/cur/fw/ttl")));
        p("ttl node with a child kept: " + exists(anon, "/cur/fw/ttlp"));
        alice.delete().forPath("/cur/fw/ttlp/child");
        p("then expires once childless: " + until(() -> !exists(anon, "/cur/fw/ttlp")));
        p("ttl out of range: " + quietly(() -> alice.create().withTtl(0).withMode(CreateMode.PERSISTENT_WITH_TTL)
                .forPath("/cur/fw/ttl0")));

        // idempotent writes
        String idem = "/cur/fw/idem";
        alice.create().idempotent().forPath(idem, b("i"));
        p("idempotent create again, same data: " + quietly(() -> alice.create().idempotent().forPath(idem, b("i"))));
        p("idempotent create again, other data: " + quietly(() -> alice.create().idempotent().forPath(idem, b("j"))));
        Stat set0 = alice.setData().idempotent().withVersion(0).forPath(idem, b("k"));
        p("idempotent setData version 0: " + stat(set0, alice));
        p("idempotent setData version 0 again: "
                + quietly(() -> alice.setData().idempotent().withVersion(0).forPath(idem, b("k"))));
        p("idempotent setData version 0, other data: "
                + quietly(() -> alice.setData().idempotent().withVersion(0).forPath(idem, b("l"))));
        p("idempotent delete: " + quietly(() -> alice.delete().idempotent().forPath(idem)));
        p("idempotent delete again: " + quietly(() -> alice.delete().idempotent().forPath(idem)));

        // createContainers: every missing part a container; reaped once emptied
        anon.createContainers("/cur/fw/cont/inner");
        p("createContainers: " + stat(anon.checkExists().forPath("/cur/fw/cont/inner"), anon));
        Thread.sleep(1500);
        p("a container that never had children stays: " + exists(anon, "/cur/fw/cont/inner"));
        anon.create().forPath("/cur/fw/cont/inner/x");
        anon.delete().forPath("/cur/fw/cont/inner/x");
        p("both reaped once emptied: " + until(() -> !exists(anon, "/cur/fw/cont")));

        Stat cst = new Stat();
        byte[] config = anon.getConfig().storingStatIn(cst).forEnsemble();
        p("getConfig: '" + s(config) + "' " + stat(cst, anon));

        // a session closed by another handle with its id and password: the client's next
        // contact finds it gone, Curator reports LOST and makes a new session
        CuratorFramework victim = client();
        BlockingQueue<String> states = new LinkedBlockingQueue<>();
        victim.getConnectionStateListenable().addListener((cl, st) -> {
            // CONNECTED: the first connection's, delivered on Curator's thread whenever it runs
            if (st != ConnectionState.CONNECTED) {
                states.add(st.toString());
            }
        });
        victim.create().withMode(CreateMode.EPHEMERAL).forPath("/cur/fw/eph");
        ZooKeeper zk = victim.getZookeeperClient().getZooKeeper();
        long oldSession = zk.getSessionId();
        BlockingQueue<String> killerStates = new LinkedBlockingQueue<>();
        ZooKeeper killer = new ZooKeeper(hosts, 10000, e -> killerStates.add(String.valueOf(e.getState())),
                oldSession, zk.getSessionPasswd());
        p("killer: " + poll(killerStates, "the killer's connection") + " same session: "
                + (killer.getSessionId() == oldSession));
        killer.close();
        p("ephemeral gone with the session: " + until(() -> !exists(anon, "/cur/fw/eph")));
        for (int i = 0; i < 3; i++) {
            p("victim state: " + poll(states, "the victim's connection state " + i));
        }
        p("victim has a new session: "
                + (victim.getZookeeperClient().getZooKeeper().getSessionId() != oldSession));
        p("victim works: " + stat(victim.checkExists().forPath("/cur/fw"), victim));
        p("further states: " + rest(states));
    }

    // ------------------------------------------------------------------ across a server restart

    static void restart() throws Exception {
        CuratorFramework c1 = client();
        CuratorFramework c2 = client();
        BlockingQueue<String> states = new LinkedBlockingQueue<>();
        c1.getConnectionStateListenable().addListener((cl, st) -> {
            if (st != ConnectionState.CONNECTED) {  // see framework()
                states.add(st.toString());
            }
        });
        long session = sessionId(c1);
        c1.create().creatingParentsIfNeeded().forPath("/cur/rs/n", b("0"));
        c1.create().withMode(CreateMode.EPHEMERAL).forPath("/cur/rs/eph", b("e"));

        BlockingQueue<String> ncEvents = new LinkedBlockingQueue<>();
        @SuppressWarnings("deprecation")
        NodeCache nc = new NodeCache(c1, "/cur/rs/n");
        toClose.add(nc);
        nc.getListenable().addListener(() -> ncEvents.add(child(nc.getCurrentData())));
        nc.start(true);
        BlockingQueue<String> ccEvents = new LinkedBlockingQueue<>();
        CuratorCache cc = CuratorCache.build(c1, "/cur/rs");
        toClose.add(cc);
        cc.listenable().addListener(CuratorCacheListener.builder()
                .forCreates(d -> ccEvents.add("created " + child(d)))
                .forChanges((o, n) -> ccEvents.add("changed " + child(n)))
                .forDeletes(d -> ccEvents.add("deleted " + child(d)))
                .forInitialized(() -> ccEvents.add("initialized"))
                .build());
        cc.start();
        for (int i = 0; i < 4; i++) {
            poll(ccEvents, "CuratorCache initial events");
        }
        InterProcessMutex m1 = new InterProcessMutex(c1, "/cur/rs-lock");
        InterProcessMutex m2 = new InterProcessMutex(c2, "/cur/rs-lock");
        p("m1 acquire: " + m1.acquire(WAIT_S, TimeUnit.SECONDS));

        p("RESTART");
        if (new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)).readLine() == null) {
            throw new IllegalStateException("stdin closed before the restart was done");
        }
        p("c1 state: " + poll(states, "SUSPENDED"));
        p("c1 state: " + poll(states, "RECONNECTED"));
        p("same session: " + (sessionId(c1) == session));
        p("ephemeral kept: " + stat(c2.checkExists().forPath("/cur/rs/eph"), c1));

        // the Java client sent its watches again (SetWatches / SetWatches2): the caches go on
        c2.setData().forPath("/cur/rs/n", b("1"));
        p("NodeCache after the restart: " + poll(ncEvents, "NodeCache change"));
        p("CuratorCache after the restart: " + poll(ccEvents, "CuratorCache change"));
        c2.create().forPath("/cur/rs/new", b("x"));
        p("CuratorCache after the restart: " + poll(ccEvents, "CuratorCache create"));
        p("m1 still holds: " + m1.isAcquiredInThisProcess() + ", m2 acquire 300ms: "
                + m2.acquire(300, TimeUnit.MILLISECONDS));
        m1.release();
        p("m2 acquire once m1 released: " + m2.acquire(WAIT_S, TimeUnit.SECONDS));
        m2.release();
        p("further states: " + rest(states));
    }

    interface Call {
        void run() throws Exception;
    }

    static String quietly(Call c) {
        try {
            c.run();
            return "ok";
        } catch (Exception e) {
            return err(e);
        }
    }
}
