/*
 * ZooKeeper's own recipes (Debian's libzookeeper-java ships them as
 * zookeeper-recipes-lock.jar, -queue.jar and -election.jar: WriteLock,
 * DistributedQueue, LeaderElectionSupport), on the plain ZooKeeper client,
 * run by CuratorScenarios' main as the scenario "zk-recipes" with the same
 * output rules (see CuratorScenarios.java).
 */

import java.util.ArrayList;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.Watcher.Event.KeeperState;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.recipes.leader.LeaderElectionSupport;
import org.apache.zookeeper.recipes.lock.LockListener;
import org.apache.zookeeper.recipes.lock.WriteLock;
import org.apache.zookeeper.recipes.queue.DistributedQueue;

public class ZkRecipes extends CuratorRecipes {
    static final String[] SCENARIOS = {"zk-recipes"};

    static boolean runZk(String scenario) throws Exception {
        if (!scenario.equals("zk-recipes")) {
            return false;
        }
        writeLock();
        distributedQueue();
        election();
        return true;
    }

    /** A plain ZooKeeper handle, connected; closed at exit. */
    static ZooKeeper zk() throws Exception {
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(hosts, 10000, e -> {
            if (e.getState() == KeeperState.SyncConnected) {
                connected.countDown();
            }
        });
        toClose.add(zk);
        if (!connected.await(WAIT_S, TimeUnit.SECONDS)) {
            throw new IllegalStateException("not connected within " + WAIT_S + " s");
        }
        return zk;
    }

    static LockListener listener(String id, BlockingQueue<String> events) {
        return new LockListener() {
            public void lockAcquired() {
                events.add(id + " acquired");
            }

            public void lockReleased() {
                events.add(id + " released");
            }
        };
    }

    // ------------------------------------------------------------------ WriteLock

    static void writeLock() throws Exception {
        ZooKeeper z1 = zk();
        ZooKeeper z2 = zk();
        ZooKeeper z3 = zk();
        z1.create("/zkr", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        // one queue per lock: two sessions' events have no order between them
        BlockingQueue<String> q1 = new LinkedBlockingQueue<>();
        BlockingQueue<String> q2 = new LinkedBlockingQueue<>();
        BlockingQueue<String> q3 = new LinkedBlockingQueue<>();
        WriteLock l1 = new WriteLock(z1, "/zkr/lock", ZooDefs.Ids.OPEN_ACL_UNSAFE, listener("l1", q1));
        WriteLock l2 = new WriteLock(z2, "/zkr/lock", ZooDefs.Ids.OPEN_ACL_UNSAFE, listener("l2", q2));
        WriteLock l3 = new WriteLock(z3, "/zkr/lock", ZooDefs.Ids.OPEN_ACL_UNSAFE, listener("l3", q3));

        p("WriteLock l1 lock: " + l1.lock() + " owner: " + l1.isOwner());
        p("WriteLock " + poll(q1, "l1 acquired"));
        p("WriteLock l2 lock: " + l2.lock() + " owner: " + l2.isOwner());
        p("WriteLock l3 lock: " + l3.lock() + " owner: " + l3.isOwner());
        p("WriteLock nodes: " + z1.getChildren("/zkr/lock", false).size());
        l1.unlock();
        p("WriteLock " + poll(q1, "l1 released"));
        p("WriteLock " + poll(q2, "l2 acquired") + " owner: " + l2.isOwner());
        p("WriteLock l3 still waiting: " + q3.isEmpty());
        z2.close();  // the holder's session ends: its node goes, the next in line gets the lock
        p("WriteLock " + poll(q3, "l3 acquired after l2's session closed") + " owner: " + l3.isOwner());
        l3.unlock();
        p("WriteLock " + poll(q3, "l3 released"));
        p("WriteLock nodes left: " + z1.getChildren("/zkr/lock", false).size());
    }

    // ------------------------------------------------------------------ DistributedQueue

    static void distributedQueue() throws Exception {
        ZooKeeper z1 = zk();
        ZooKeeper z2 = zk();
        DistributedQueue consumer = new DistributedQueue(z1, "/zkr/queue", ZooDefs.Ids.OPEN_ACL_UNSAFE);
        DistributedQueue producer = new DistributedQueue(z2, "/zkr/queue", ZooDefs.Ids.OPEN_ACL_UNSAFE);
        p("DistributedQueue peek, no queue yet: " + s(consumer.peek()));
        p("DistributedQueue poll, no queue yet: " + s(consumer.poll()));
        try {
            consumer.element();
            p("DistributedQueue element, no queue yet: ok?!");
        } catch (NoSuchElementException e) {
            p("DistributedQueue element, no queue yet: NoSuchElementException");
        }
        for (String item : new String[] {"a", "b", "c"}) {
            producer.offer(b(item));  // makes the queue's node on the first offer
        }
        p("DistributedQueue nodes: " + sorted(z1.getChildren("/zkr/queue", false)));
        p("DistributedQueue peek: " + s(consumer.peek()));
        p("DistributedQueue remove: " + s(consumer.remove()));
        p("DistributedQueue poll: " + s(consumer.poll()));
        p("DistributedQueue element: " + s(consumer.element()));
        p("DistributedQueue take: " + s(consumer.take()));
        Future<Object> taker = spawn(() -> s(consumer.take()));
        Thread.sleep(100);
        p("DistributedQueue take waits on an empty queue: " + !taker.isDone());
        producer.offer(b("d"));
        p("DistributedQueue take after an offer: " + result(taker, "take"));
        p("DistributedQueue poll, empty: " + s(consumer.poll()));
        p("DistributedQueue nodes left: " + z1.getChildren("/zkr/queue", false).size());
    }

    // ------------------------------------------------------------------ LeaderElectionSupport

    static LeaderElectionSupport candidate(ZooKeeper zk, String host, BlockingQueue<String> events) {
        LeaderElectionSupport e = new LeaderElectionSupport();
        e.setZooKeeper(zk);
        e.setRootNodeName("/zkr/election");
        e.setHostName(host);
        e.addListener(ev -> events.add(ev.toString()));
        return e;
    }

    static String drain(BlockingQueue<String> q, String last) throws Exception {
        List<String> got = new ArrayList<>();
        String e;
        do {
            e = poll(q, last);
            got.add(e);
        } while (!e.equals(last));
        return String.join(" ", got);
    }

    static void election() throws Exception {
        ZooKeeper z1 = zk();
        ZooKeeper z2 = zk();
        z1.create("/zkr/election", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        BlockingQueue<String> q1 = new LinkedBlockingQueue<>();
        BlockingQueue<String> q2 = new LinkedBlockingQueue<>();
        LeaderElectionSupport e1 = candidate(z1, "h1", q1);
        LeaderElectionSupport e2 = candidate(z2, "h2", q2);
        // Each candidate reports DETERMINE_COMPLETE before it acts on what it determined: wait
        // for the last event of each step, so the next step cannot interleave with it.
        e1.start();
        p("LeaderElectionSupport h1: " + drain(q1, "ELECTED_COMPLETE"));
        e2.start();
        p("LeaderElectionSupport h2: " + drain(q2, "READY_COMPLETE"));
        p("LeaderElectionSupport leader seen by h2: " + e2.getLeaderHostName());
        e1.stop();
        p("LeaderElectionSupport h1: " + drain(q1, "STOP_COMPLETE"));
        p("LeaderElectionSupport h2: " + drain(q2, "ELECTED_COMPLETE"));
        p("LeaderElectionSupport leader seen by h2: " + e2.getLeaderHostName());
        e2.stop();
        p("LeaderElectionSupport h2: " + drain(q2, "STOP_COMPLETE"));
        p("LeaderElectionSupport leader: " + e2.getLeaderHostName());
        p("LeaderElectionSupport offers left: " + z1.getChildren("/zkr/election", false).size());
    }
}
