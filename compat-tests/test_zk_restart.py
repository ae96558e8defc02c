"""A server restart under live clients (SIGTERM, then the same command line on
the same port and data dir: zk_util.ZkServer.restart), run against both kinds.

What a user restarting one server in a test rig relies on, as ZooKeeper 3.8.0
does it (every expectation below held against it first):
  * a session outlives the restart: its client reconnects with its id and
    password and keeps the session and its ephemerals, and the watches it
    sends again in a SetWatches fire for what changed while it was away;
  * a session whose client never comes back still expires, a session timeout
    after the server is up again, not at once, and its ephemerals go then;
  * data, Stats, sequence counters and the zxid order carry over;
  * after a crash (SIGKILL) every write that was acknowledged is there;
  * kazoo's recipes (ChildrenWatch, DataWatch, a held Lock) carry on.
"""

import threading
import time

import pytest
from kazoo.exceptions import LockTimeout
from kazoo.protocol.serialization import Create, Exists, GetData
from kazoo.protocol.states import EventType, KazooState
from kazoo.retry import KazooRetry
from kazoo.security import OPEN_ACL_UNSAFE

from zk_util import Events, RawSession, ev, resume_dropped_session, wait_until

EPHEMERAL = 1
# WatcherEvent type / state codes
CHANGED, CHILD, SYNC_CONNECTED = 3, 4, 3


def _client(zk):
    # reconnect quickly and for as long as it takes: the server is away for a moment only
    return zk.kazoo(connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=0.5))


def test_a_session_and_its_ephemerals_outlive_a_restart(zk):
    c = _client(zk)
    states = []
    c.add_listener(states.append)
    sid = c.client_id[0]
    c.create("/r/eph", b"e", ephemeral=True, makepath=True)

    zk.restart()
    wait_until(lambda: states[-1:] == [KazooState.CONNECTED], what="the client to reconnect")
    assert states == [KazooState.SUSPENDED, KazooState.CONNECTED]  # never LOST
    assert c.client_id[0] == sid

    other = zk.kazoo()
    assert other.exists("/r/eph").ephemeralOwner == sid
    c.stop()
    assert other.exists("/r/eph") is None


def test_watches_come_back_through_set_watches_after_a_restart(zk):
    # (kazoo drops its one-shot watches when the connection goes; the Java and C
    # clients send them again in a SetWatches: what this does by hand)
    other = zk.kazoo()
    for p in ("/w", "/w/changed", "/w/same"):
        other.create(p)
    s = RawSession(zk.host, zk.port, 10000)
    last_zxid, _, _ = s.request(GetData("/w/same", False))
    sid, pw = s.session_id, s.passwd
    s.drop()
    zk.restart()
    other.set("/w/changed", b"x")  # a change made while the client was away
    s = RawSession(zk.host, zk.port, 10000, sid, pw)
    try:
        assert s.session_id == sid
        notes = s.set_watches(last_zxid, data=["/w/changed", "/w/same"], child=["/w"])
        assert notes == [(CHANGED, SYNC_CONNECTED, "/w/changed")]
        other.set("/w/same", b"y")
        other.create("/w/new")
        s.request(Exists("/", False))  # a round trip, so the events are in
        assert sorted(s.notifications) == sorted([(CHANGED, SYNC_CONNECTED, "/w/same"),
                                                  (CHILD, SYNC_CONNECTED, "/w")])
    finally:
        s.close_session()


def test_a_session_resumes_after_a_restart_with_its_password_only(zk):
    again = resume_dropped_session(zk, "/resume", between=zk.restart)
    again.close_session()
    assert zk.kazoo().exists("/resume") is None


def test_a_session_left_behind_expires_a_timeout_after_the_restart(zk):
    s = RawSession(zk.host, zk.port, 4000)  # the shortest timeout: 2 ticks of 2000 ms
    assert s.request(Create("/left", b"", OPEN_ACL_UNSAFE, EPHEMERAL))[1:] == (0, "/left")
    s.drop()  # a crashed client: the socket goes, the session stays
    time.sleep(2.0)  # half its timeout gone before the server stops
    zk.restart(down_s=1.0)
    up = time.monotonic()
    watcher = zk.kazoo()
    events = Events()
    assert watcher.exists("/left", watch=events) is not None  # the timeout restarts with the server
    assert events.next(timeout=20) == ev(EventType.DELETED, "/left")
    # expired a whole timeout after the server came back, not by the deadline it had before
    assert time.monotonic() - up >= 2.5
    assert watcher.exists("/left") is None


def test_data_stats_sequences_and_zxids_carry_over(zk):
    c = _client(zk)
    c.create("/d/seq-", b"", sequence=True, makepath=True)
    c.create("/d/seq-", b"", sequence=True)
    c.set("/d", b"parent")
    c.create("/d/gone")
    c.delete("/d/gone")
    before_data, before = c.get("/d")
    kids_before = sorted(c.get_children("/d"))

    zk.restart()
    wait_until(lambda: c.connected, what="the client to reconnect")
    after_data, after = c.get("/d")
    assert (after_data, after) == (before_data, before)
    assert sorted(c.get_children("/d")) == kids_before
    # the next sequence number counts the parent's creates (3 so far), which kept counting
    assert c.create("/d/seq-", b"", sequence=True) == "/d/seq-0000000003"
    st = c.set("/d", b"again")
    assert st.mzxid > before.mzxid and st.version == before.version + 1


def test_every_acknowledged_write_survives_a_kill_9(zk):
    c = _client(zk)
    c.create("/k")
    acked = []
    stop = threading.Event()

    def writer():
        # one create at a time: each is acknowledged only once it is durable
        i = 0
        while not stop.is_set():
            try:
                c.create(f"/k/n{i:06d}", b"x")
            except Exception:
                return  # the connection went with the server
            acked.append(i)
            i += 1

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    wait_until(lambda: len(acked) >= 200, what="200 acknowledged creates")
    zk.restart(kill=True)
    stop.set()
    t.join(timeout=30)
    assert not t.is_alive()
    wait_until(lambda: c.connected, what="the client to reconnect")
    present = set(c.get_children("/k"))
    missing = [i for i in acked if f"n{i:06d}" not in present]
    assert not missing, f"{len(missing)} acknowledged creates lost, first {missing[:5]}"
    # beyond them at most the one create that was in flight when the server died
    assert len(present) - len(acked) in (0, 1)


def test_kazoo_recipes_carry_on_across_a_restart(zk):
    # kazoo's watch recipes read again when the connection is back, and its lock
    # stays held: its node is an ephemeral of the session, which survives
    c = _client(zk)
    c.ensure_path("/kr")
    children, data = [], []
    c.ChildrenWatch("/kr", lambda ch: children.append(sorted(ch)))
    c.DataWatch("/kr", lambda d, st: data.append(d))
    lock = c.Lock("/kr-lock", "holder")
    assert lock.acquire(timeout=10)
    wait_until(lambda: children == [[]] and data == [b""], what="the recipes' first reads")

    zk.restart()
    wait_until(lambda: c.connected, what="the client to reconnect")
    other = zk.kazoo()
    other.create("/kr/a")
    other.set("/kr", b"x")
    wait_until(lambda: children[-1:] == [["a"]], what="ChildrenWatch to see /kr/a")
    wait_until(lambda: data[-1:] == [b"x"], what="DataWatch to see the new data")
    assert lock.is_acquired
    contender = other.Lock("/kr-lock", "contender")
    with pytest.raises(LockTimeout):
        contender.acquire(timeout=0.5)
    assert other.Lock("/kr-lock").contenders() == ["holder"]
    lock.release()
    assert contender.acquire(timeout=10)
    contender.release()
