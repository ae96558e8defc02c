"""ZooKeeper client API scenarios through kazoo 2.11.0 (the python client),
plus raw requests (zk_util) for the opcodes kazoo has no API for.

Every expected value below was taken from the real ZooKeeper 3.8.0
(standalone, tickTime 2000).  What legitimately differs between two servers
-- zxids, timestamps, session ids and passwords, the order of children in a
getChildren reply (ZooKeeper keeps them in a HashSet) -- is compared by
relation (mzxid > czxid, ephemeralOwner == the client's session id, sorted
children ...), never by value.

ZooKeeper facts pinned here that a reimplementation easily gets wrong:
  * cversion as clients see it is 2 * creates - numChildren, i.e. creates +
    deletes of children, while the sequence suffix of a sequential create is
    the number of creates only (deletes do not advance it).  On a fresh
    server "/" has cversion -1 and /zookeeper -2 (their children were added
    without a create).
  * a txn (multi) that fails answers every op: RolledBackError (code 0) for
    the ops before the failing one, its own error, RuntimeInconsistency for
    the ops after it; nothing is applied.
  * getACL needs READ or ADMIN; without ADMIN, digest ids come back with the
    hash replaced by "x" ("user:x").
  * containers and TTL nodes report ephemeralOwner 0.
"""

import queue
import threading
import time

import pytest
from kazoo.exceptions import (AuthFailedError, BadArgumentsError, BadVersionError, InvalidACLError,
                              NoAuthError, NoChildrenForEphemeralsError, NodeExistsError, NoNodeError,
                              NotEmptyError, ReconfigDisabledError)
from kazoo.protocol.serialization import Create2
from kazoo.protocol.states import EventType, KazooState
from kazoo.security import (ACL, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, Id, Permissions, make_acl,
                            make_digest_acl, make_digest_acl_credential)

from zk_util import (EPHEMERAL, PERSISTENT_WITH_TTL, CreateTTLRequest, Events, call, create_container,
                     create_ttl, ev, get_all_children_number, get_ephemerals, wait_until)

WORLD_ALL = [ACL(Permissions.ALL, Id("world", "anyone"))]


def outcome(results):
    """A txn's results with exceptions (which do not compare equal) replaced
    by their class names."""
    return [type(r).__name__ if isinstance(r, Exception) else r for r in results]


def now_ms():
    return time.time() * 1000


# --------------------------------------------------------------------------- fresh server


def test_fresh_server_tree(zk):
    c = zk.kazoo()
    assert c.get_children("/") == ["zookeeper"]
    assert sorted(c.get_children("/zookeeper")) == ["config", "quota"]
    data, st = c.get("/")
    assert data == b""
    # ZooKeeper's own nodes: zero zxids and times; "/" and /zookeeper report
    # cversion 2*0 - numChildren (their children were never "created")
    assert st._asdict() == dict(czxid=0, mzxid=0, ctime=0, mtime=0, version=0, cversion=-1, aversion=0,
                                ephemeralOwner=0, dataLength=0, numChildren=1, pzxid=0)
    assert c.get("/zookeeper")[1]._asdict() == dict(
        czxid=0, mzxid=0, ctime=0, mtime=0, version=0, cversion=-2, aversion=0,
        ephemeralOwner=0, dataLength=0, numChildren=2, pzxid=0)
    assert c.get("/zookeeper/quota") == (b"", c.exists("/zookeeper/quota"))
    assert c.exists("/zookeeper/quota").numChildren == 0
    assert c.get_acls("/")[0] == WORLD_ALL
    assert c.get_acls("/zookeeper")[0] == WORLD_ALL
    assert c.get_acls("/zookeeper/quota")[0] == WORLD_ALL


def test_zookeeper_config_node_standalone(zk):
    c = zk.kazoo()
    # standalone: empty config, read-only ACL, aversion -1
    data, st = c.get("/zookeeper/config")
    assert data == b""
    assert st._asdict() == dict(czxid=0, mzxid=0, ctime=0, mtime=0, version=0, cversion=0, aversion=-1,
                                ephemeralOwner=0, dataLength=0, numChildren=0, pzxid=0)
    acl, _ = c.get_acls("/zookeeper/config")
    assert acl == [ACL(Permissions.READ, Id("world", "anyone"))]
    with pytest.raises(NoAuthError):
        c.set("/zookeeper/config", b"x")
    # dynamic reconfiguration is off (reconfigEnabled=false)
    with pytest.raises(ReconfigDisabledError):
        c.reconfig(joining="server.2=127.0.0.1:2888:3888;2181", leaving=None, new_members=None)
    with pytest.raises(ReconfigDisabledError):
        c.reconfig(joining=None, leaving="1", new_members=None)


def test_zookeeper_subtree_is_protected(zk):
    c = zk.kazoo()
    for p in ("/", "/zookeeper", "/zookeeper/quota"):
        with pytest.raises(BadArgumentsError):
            c.delete(p)
    with pytest.raises(NodeExistsError):
        c.create("/")
    # but a child of /zookeeper may be created
    assert c.create("/zookeeper/mine") == "/zookeeper/mine"
    assert sorted(c.get_children("/zookeeper")) == ["config", "mine", "quota"]


def test_server_version_ruok_and_sync(zk):
    c = zk.kazoo()
    # kazoo parses zookeeper.version from the `envi` four-letter word
    v = c.server_version()
    assert isinstance(v, tuple) and len(v) >= 3 and v >= (3, 5, 0), v
    assert c.command(b"ruok") == "imok"
    c.create("/s", b"v")
    assert c.sync("/s") == "/s"
    # sync does not check that the path exists
    assert c.sync("/nope") == "/nope"


# --------------------------------------------------------------------------- create / get / set / delete


def test_create_get_stat(zk):
    c = zk.kazoo()
    before = now_ms()
    assert c.create("/a", b"hello") == "/a"
    data, st = c.get("/a")
    assert data == b"hello"
    assert (st.version, st.cversion, st.aversion, st.dataLength, st.numChildren, st.ephemeralOwner) == \
        (0, 0, 0, 5, 0, 0)
    assert st.czxid == st.mzxid == st.pzxid > 0
    assert st.ctime == st.mtime
    assert before - 60_000 < st.ctime < now_ms() + 60_000
    assert c.exists("/a") == st
    assert c.exists("/nope") is None
    # create2 (include_data) answers the same stat
    path, st2 = c.create("/b", b"", include_data=True)
    assert path == "/b"
    assert st2 == c.exists("/b")
    assert st2.czxid > st.czxid and st2.dataLength == 0


def test_set_versions(zk):
    c = zk.kazoo()
    c.create("/a", b"v0")
    _, st0 = c.get("/a")
    st1 = c.set("/a", b"v1")
    assert st1.version == 1 and st1.dataLength == 2
    assert st1.mzxid > st0.mzxid and st1.czxid == st0.czxid and st1.ctime == st0.ctime
    assert st1.mtime >= st0.mtime
    assert st1.pzxid == st0.pzxid  # data changes do not touch pzxid
    st2 = c.set("/a", b"longer value", version=1)
    assert (st2.version, st2.dataLength) == (2, 12)
    with pytest.raises(BadVersionError):
        c.set("/a", b"x", version=1)
    with pytest.raises(BadVersionError):
        c.set("/a", b"x", version=7)
    # version -1 matches any version; setting the same data still bumps it
    assert c.set("/a", b"longer value", version=-1).version == 3
    assert c.get("/a") == (b"longer value", c.exists("/a"))
    with pytest.raises(NoNodeError):
        c.set("/nope", b"x")


def test_delete_versions(zk):
    c = zk.kazoo()
    c.create("/a", b"x")
    c.set("/a", b"y")
    with pytest.raises(BadVersionError):
        c.delete("/a", version=0)
    assert c.exists("/a").version == 1
    c.delete("/a", version=1)
    assert c.exists("/a") is None
    with pytest.raises(NoNodeError):
        c.delete("/a")
    with pytest.raises(NoNodeError):
        c.get("/a")
    # a recreated node starts over at version 0 with a new czxid
    c.create("/b")
    old = c.exists("/b")
    c.set("/b", b"1")
    c.delete("/b")
    c.create("/b", b"again")
    new = c.exists("/b")
    assert new.version == 0 and new.czxid > old.czxid


def test_create_errors(zk):
    c = zk.kazoo()
    c.create("/a")
    with pytest.raises(NodeExistsError):
        c.create("/a", b"other")
    with pytest.raises(NoNodeError):
        c.create("/missing/child")
    assert c.create("/x/y/z", b"deep", makepath=True) == "/x/y/z"
    assert c.get("/x/y/z")[0] == b"deep"
    assert c.get("/x/y")[0] == b""


def test_delete_not_empty(zk):
    c = zk.kazoo()
    c.create("/p")
    c.create("/p/c")
    with pytest.raises(NotEmptyError):
        c.delete("/p")
    c.delete("/p/c")
    c.delete("/p")
    assert c.get_children("/") == ["zookeeper"]


def test_delete_recursive(zk):
    c = zk.kazoo()
    for p in ("/t/a/1", "/t/a/2", "/t/b", "/t/c/d/e"):
        c.create(p, makepath=True)
    c.delete("/t", recursive=True)
    assert c.exists("/t") is None


def test_data_values(zk):
    c = zk.kazoo()
    every_byte = bytes(range(256)) * 4
    c.create("/bin", every_byte)
    assert c.get("/bin")[0] == every_byte
    assert c.exists("/bin").dataLength == 1024
    big = b"z" * 500_000
    c.create("/big", big)
    assert c.get("/big")[0] == big
    c.create("/empty", b"")
    assert c.get("/empty")[0] == b""
    assert c.exists("/empty").dataLength == 0
    c.create("/unicode-\u00fc\u4e2d", "\u00e9t\u00e9".encode())
    assert "unicode-\u00fc\u4e2d" in c.get_children("/")
    assert c.get("/unicode-\u00fc\u4e2d")[0] == "\u00e9t\u00e9".encode()


# --------------------------------------------------------------------------- children, cversion, pzxid


def test_get_children_and_parent_stat(zk):
    c = zk.kazoo()
    c.create("/p", b"parent")
    _, p0 = c.get("/p")
    for name in ("c", "a", "b"):
        c.create(f"/p/{name}", name.encode())
    assert sorted(c.get_children("/p")) == ["a", "b", "c"]
    assert c.get_children("/p/a") == []
    with pytest.raises(NoNodeError):
        c.get_children("/nope")
    children, st = c.get_children("/p", include_data=True)
    assert sorted(children) == ["a", "b", "c"]
    assert (st.numChildren, st.cversion, st.version, st.dataLength) == (3, 3, 0, 6)
    # pzxid = zxid of the last child change; mzxid is untouched by children
    assert st.pzxid == c.exists("/p/b").czxid > p0.pzxid
    assert st.mzxid == p0.mzxid
    # a child's data change does not count as a children change
    c.set("/p/a", b"changed")
    assert c.exists("/p") == st
    # a delete counts: cversion +1, pzxid = the delete's zxid
    c.delete("/p/c")
    st2 = c.exists("/p")
    assert (st2.numChildren, st2.cversion) == (2, 4)
    assert st2.pzxid > c.exists("/p/a").mzxid


def test_cversion_counts_creates_and_deletes(zk):
    c = zk.kazoo()
    c.create("/p")
    for i in range(5):
        c.create(f"/p/n{i}")
    for i in range(3):
        c.delete(f"/p/n{i}")
    st = c.exists("/p")
    assert (st.cversion, st.numChildren) == (8, 2)
    # a failed create (exists) and a failed delete do not count
    with pytest.raises(NodeExistsError):
        c.create("/p/n4")
    with pytest.raises(NoNodeError):
        c.delete("/p/n0")
    assert c.exists("/p").cversion == 8


def test_many_children(zk):
    c = zk.kazoo()
    c.create("/many")
    t = c.transaction()
    for i in range(200):
        t.create(f"/many/k{i:03d}", str(i).encode())
    assert len(t.commit()) == 200
    kids = c.get_children("/many")
    assert sorted(kids) == [f"k{i:03d}" for i in range(200)]
    st = c.exists("/many")
    assert (st.numChildren, st.cversion) == (200, 200)
    assert get_all_children_number(c, "/many") == 200


# --------------------------------------------------------------------------- sequential


def test_sequential_suffix_from_parent_create_count(zk):
    c = zk.kazoo()
    c.create("/p")
    c.create("/p/a")
    c.create("/p/b")
    # two creates under /p so far: the next sequence number is 2
    assert c.create("/p/s", sequence=True) == "/p/s0000000002"
    assert c.create("/p/s", b"data", sequence=True) == "/p/s0000000003"
    assert c.create("/p/other-", sequence=True) == "/p/other-0000000004"
    assert c.get("/p/s0000000003")[0] == b"data"


def test_sequential_numbering_ignores_deletes(zk):
    c = zk.kazoo()
    c.create("/p")
    c.create("/p/a")
    c.create("/p/b")
    c.delete("/p/a")
    c.delete("/p/b")
    # the client-visible cversion is 4 (2 creates + 2 deletes) ...
    assert c.exists("/p").cversion == 4
    # ... but the suffix counts creates only
    assert c.create("/p/s", sequence=True) == "/p/s0000000002"
    assert c.exists("/p").cversion == 5  # 2 * 3 creates - 1 child
    c.delete("/p/s0000000002")
    assert c.create("/p/s", sequence=True) == "/p/s0000000003"


def test_sequential_at_root_of_fresh_server(zk):
    c = zk.kazoo()
    # "/" has cversion -1 but no create so far: the first suffix is 0
    assert c.create("/s", sequence=True) == "/s0000000000"
    assert c.exists("/").cversion == 0
    assert c.create("/s", sequence=True) == "/s0000000001"


def test_sequential_with_path_ending_in_slash(zk):
    c = zk.kazoo()
    c.create("/p")
    # kazoo keeps the trailing "/" of a sequential path: the name is all digits
    assert c.create("/p/", sequence=True) == "/p/0000000000"
    assert c.get_children("/p") == ["0000000000"]


def test_sequence_counters_are_per_parent(zk):
    c = zk.kazoo()
    c.create("/x")
    c.create("/y")
    assert c.create("/x/n", sequence=True) == "/x/n0000000000"
    assert c.create("/y/n", sequence=True) == "/y/n0000000000"
    assert c.create("/x/n", sequence=True) == "/x/n0000000001"
    # a second client shares the counter
    d = zk.kazoo()
    assert d.create("/x/n", sequence=True) == "/x/n0000000002"


def test_sequence_suffix_formatting_past_ten(zk):
    c = zk.kazoo()
    c.create("/p")
    t = c.transaction()
    for _ in range(12):
        t.create("/p/n", sequence=True)
    names = t.commit()
    assert names == [f"/p/n{i:010d}" for i in range(12)]
    assert names[-1] == "/p/n0000000011"


# --------------------------------------------------------------------------- ephemerals and sessions


def test_ephemeral_owner_and_vanish_on_close(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    a.create("/e", b"mine", ephemeral=True)
    st = b.exists("/e")
    assert st.ephemeralOwner == a.client_id[0] != b.client_id[0]
    assert st.ephemeralOwner != 0
    assert b.get("/e")[0] == b"mine"
    a.create("/persistent")
    assert b.exists("/persistent").ephemeralOwner == 0
    a.stop()  # closeSession: the ephemerals go at once
    assert b.exists("/e") is None
    assert b.exists("/persistent") is not None
    assert sorted(b.get_children("/")) == ["persistent", "zookeeper"]


def test_quota_counts_out_the_ephemerals_of_an_ended_session(zk):
    # ZooKeeper's killSession deletes each ephemeral through deleteNode, which
    # updates the quota stats as any delete does
    a = zk.kazoo()
    a.create("/eq")
    a.create("/zookeeper/quota/eq/zookeeper_limits", b"count=10,bytes=-1", makepath=True)
    a.create("/zookeeper/quota/eq/zookeeper_stats", b"count=0,bytes=0")
    a.create("/eq/p", b"abc")
    b = zk.kazoo()
    b.create("/eq/e", b"12345", ephemeral=True)
    b.create("/eq/s-", b"xy", ephemeral=True, sequence=True)

    def stats():
        return a.get("/zookeeper/quota/eq/zookeeper_stats")[0]
    assert stats() == b"count=4,bytes=10"
    b.stop()
    assert a.get_children("/eq") == ["p"]
    assert stats() == b"count=2,bytes=3"


def test_quota_stats_are_rewritten_in_place(zk):
    # ZooKeeper's updateCountBytes replaces the stats node's data in place: its
    # version, mzxid and mtime stay as they were, and a data watch on it does
    # not fire
    a = zk.kazoo()
    a.create("/iq")
    a.create("/zookeeper/quota/iq/zookeeper_limits", b"count=10,bytes=-1", makepath=True)
    stats = "/zookeeper/quota/iq/zookeeper_stats"
    a.create(stats, b"count=0,bytes=0")
    data, st = a.get(stats)
    assert data == b"count=1,bytes=0"
    events = []
    a.get(stats, watch=events.append)
    a.create("/iq/x", b"12")
    a.set("/iq/x", b"12345")
    b = zk.kazoo()
    b.create("/iq/e", b"abc", ephemeral=True)
    b.stop()
    data2, st2 = a.get(stats)
    assert data2 == b"count=2,bytes=5"
    assert (st2.version, st2.mzxid, st2.mtime, st2.dataLength) == (st.version, st.mzxid, st.mtime, len(data2))
    a.sync("/")
    assert events == []
    a.set(stats, b"count=7,bytes=7")  # a client's own write is an ordinary one
    assert a.get(stats)[1].version == st.version + 1
    # kazoo runs watch callbacks on its own thread: the event can come a moment after the reply
    wait_until(lambda: events, what="the stats node's data watch")
    assert events[0].type == EventType.CHANGED


def test_quota_stats_are_rewritten_by_a_set_data_that_keeps_the_length(zk):
    # updateQuotaStat runs for every setData under a quota, a diff of 0 bytes too:
    # the text is parsed and written again in StatsTrack's format (found by the
    # differential test's quota generator, seed 7074)
    a = zk.kazoo()
    a.create("/kq", b"abc")
    a.create("/zookeeper/quota/kq/zookeeper_limits", b"count=10,bytes=-1", makepath=True)
    stats = "/zookeeper/quota/kq/zookeeper_stats"
    a.create(stats, b"count=0,bytes=0")
    for written, after in ((b"", b"count=-1,bytes=-1"), (b"bytes=3;count=1", b"count=1,bytes=3")):
        a.set(stats, written)
        st = a.get(stats)[1]
        a.set("/kq", b"xyz")  # same length: no count or bytes change
        data, st2 = a.get(stats)
        assert data == after
        assert (st2.version, st2.mzxid) == (st.version, st.mzxid)


def test_ephemeral_cannot_have_children(zk):
    c = zk.kazoo()
    c.create("/e", ephemeral=True)
    with pytest.raises(NoChildrenForEphemeralsError):
        c.create("/e/child")
    with pytest.raises(NoChildrenForEphemeralsError):
        c.create("/e/child", ephemeral=True)
    with pytest.raises(NoChildrenForEphemeralsError):
        c.create("/e/s", sequence=True)


def test_ephemeral_sequential(zk):
    a = zk.kazoo()
    a.create("/q")
    p1 = a.create("/q/m-", ephemeral=True, sequence=True)
    p2 = a.create("/q/m-", ephemeral=True, sequence=True)
    assert (p1, p2) == ("/q/m-0000000000", "/q/m-0000000001")
    assert a.exists(p1).ephemeralOwner == a.client_id[0]
    a.stop()
    b = zk.kazoo()
    assert b.get_children("/q") == []
    # the deletes at session close counted as children changes
    st = b.exists("/q")
    assert (st.cversion, st.numChildren) == (4, 0)
    assert b.create("/q/m-", sequence=True) == "/q/m-0000000002"


def test_children_and_ephemerals_come_in_zookeepers_order(zk):
    """ZooKeeper lists a node's children as its java.util.HashSet iterates them (by hash
    bucket, then insertion; the table never shrinks), and a session's ephemerals as a clone of
    its set iterates: kazoo hands both over as they come. The lists below are ZooKeeper
    3.8.0's (and a JDK's HashSet's for the same steps)."""
    c = zk.kazoo()
    c.create("/o")
    for i in range(30):
        c.create(f"/o/n{i}")
    c.delete("/o/n3")
    c.delete("/o/n17")
    t = c.transaction()
    for name in ("n3", "\u00e9", "zookeeper"):
        t.create(f"/o/{name}")
    assert all(r == f"/o/{n}" for r, n in zip(t.commit(), ("n3", "\u00e9", "zookeeper")))
    assert c.get_children("/o") == (
        "n0,n1,n2,n3,n4,n5,n6,n7,n8,n9,n10,n12,n11,n14,n13,n16,n15,n18,n19,zookeeper,\u00e9,n21,n20,n23,n22,"
        "n25,n24,n27,n26,n29,n28").split(",")
    # A session that held 20 ephemerals and now holds three lists them as its grown set does.
    a = zk.kazoo()
    c.create("/eph")
    for i in range(20):
        a.create(f"/eph/e{i}", ephemeral=True)
    for i in range(20):
        if i not in (0, 3, 8):
            c.delete(f"/eph/e{i}")
    assert get_ephemerals(a, "/eph") == ["/eph/e8", "/eph/e0", "/eph/e3"]


def test_get_ephemerals(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    a.create("/ab")
    a.create("/ab/e", ephemeral=True)
    a.create("/a1", ephemeral=True)
    a.create("/b1", ephemeral=True)
    b.create("/a2", ephemeral=True)
    # only the caller's own ephemerals; the prefix is a plain string prefix
    assert sorted(get_ephemerals(a, "/")) == ["/a1", "/ab/e", "/b1"]
    assert sorted(get_ephemerals(a, "/a")) == ["/a1", "/ab/e"]
    assert get_ephemerals(a, "/ab/") == ["/ab/e"]
    assert get_ephemerals(a, "/nope") == []
    assert get_ephemerals(b, "/") == ["/a2"]


def test_get_all_children_number(zk):
    c = zk.kazoo()
    # a fresh tree: /zookeeper, /zookeeper/config, /zookeeper/quota
    assert get_all_children_number(c, "/") == 3
    assert get_all_children_number(c, "/zookeeper") == 2
    for p in ("/t/a/1", "/t/a/2", "/t/b"):
        c.create(p, makepath=True)
    assert get_all_children_number(c, "/t") == 4
    assert get_all_children_number(c, "/t/a/1") == 0
    assert get_all_children_number(c, "/") == 8
    with pytest.raises(NoNodeError):
        get_all_children_number(c, "/nope")


# --------------------------------------------------------------------------- transactions


def test_transaction_success(zk):
    c = zk.kazoo()
    c.create("/pre", b"0")
    t = c.transaction()
    t.create("/t", b"new")
    t.set_data("/t", b"changed")
    t.check("/t", 1)
    t.create("/t/seq-", sequence=True)
    t.delete("/pre", version=0)
    t.create("/eph", ephemeral=True)
    results = t.commit()
    assert results[0] == "/t"
    assert results[1].version == 1 and results[1].dataLength == 7
    assert results[2:4] == [True, "/t/seq-0000000000"]
    assert results[4:] == [True, "/eph"]
    assert c.get("/t")[0] == b"changed"
    assert c.exists("/pre") is None
    # one txn, one zxid
    assert c.exists("/t").czxid == c.exists("/t").mzxid == c.exists("/t/seq-0000000000").czxid \
        == c.exists("/eph").czxid
    assert c.exists("/eph").ephemeralOwner == c.client_id[0]


def test_transaction_failure_results_and_rollback(zk):
    c = zk.kazoo()
    c.create("/a", b"x")
    t = c.transaction()
    t.create("/t1")
    t.check("/a", 5)
    t.create("/t2")
    t.set_data("/a", b"y")
    assert outcome(t.commit()) == ["RolledBackError", "BadVersionError", "RuntimeInconsistency",
                                   "RuntimeInconsistency"]
    assert c.exists("/t1") is None and c.exists("/t2") is None
    assert c.get("/a")[0] == b"x" and c.exists("/a").version == 0


# the failing op of each case, and the error ZooKeeper answers for it
TXN_FAILURES = {
    "node-exists": (lambda t: t.create("/a"), "NodeExistsError"),
    "no-node": (lambda t: t.set_data("/nope", b""), "NoNodeError"),
    "not-empty": (lambda t: t.delete("/a"), "NotEmptyError"),
    "ephemeral-parent": (lambda t: t.create("/e/x"), "NoChildrenForEphemeralsError"),
    "bad-version": (lambda t: t.delete("/a/b", version=3), "BadVersionError"),
    "check-missing": (lambda t: t.check("/nope", 0), "NoNodeError"),
}


@pytest.mark.parametrize("case", sorted(TXN_FAILURES))
def test_transaction_error_kinds(zk, case):
    c = zk.kazoo()
    c.create("/a/b", makepath=True)
    c.create("/e", ephemeral=True)
    add_failing_op, want = TXN_FAILURES[case]
    t = c.transaction()
    t.create("/first")
    add_failing_op(t)
    t.delete("/a/b")
    assert outcome(t.commit()) == ["RolledBackError", want, "RuntimeInconsistency"]
    assert c.exists("/first") is None and c.exists("/a/b") is not None


def test_transaction_sees_its_own_earlier_ops(zk):
    c = zk.kazoo()
    t = c.transaction()
    t.create("/p")
    t.create("/p/c")
    t.check("/p/c", 0)
    t.delete("/p/c")
    t.delete("/p")
    t.create("/p", b"again")
    assert t.commit() == ["/p", "/p/c", True, True, True, "/p"]
    st = c.exists("/p")
    assert st.version == 0 and c.get("/p")[0] == b"again"
    # the failing op may be the first one
    t = c.transaction()
    t.check("/nope", 0)
    t.create("/x")
    assert outcome(t.commit()) == ["NoNodeError", "RuntimeInconsistency"]
    # an empty transaction is fine
    assert c.transaction().commit() == []


# --------------------------------------------------------------------------- watches


def test_get_watch_fires_once_on_change(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    a.create("/w", b"0")
    events = Events()
    a.get("/w", watch=events)
    b.set("/w", b"1")
    assert events.next() == ev(EventType.CHANGED, "/w")
    b.set("/w", b"2")  # one-shot: no second event without re-registering
    events.none()
    a.get("/w", watch=events)
    b.delete("/w")
    assert events.next() == ev(EventType.DELETED, "/w")
    events.none()


def test_exists_watch_on_missing_node(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    events = Events()
    assert a.exists("/later", watch=events) is None
    b.create("/other")
    events.none(0.3)
    b.create("/later")
    assert events.next() == ev(EventType.CREATED, "/later")
    assert a.exists("/later", watch=events) is not None
    b.set("/later", b"x")
    assert events.next() == ev(EventType.CHANGED, "/later")
    a.exists("/later", watch=events)
    b.delete("/later")
    assert events.next() == ev(EventType.DELETED, "/later")


def test_children_watch(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    a.create("/p")
    events = Events()
    a.get_children("/p", watch=events)
    b.create("/p/c")
    assert events.next() == ev(EventType.CHILD, "/p")
    a.get_children("/p", watch=events)
    b.set("/p/c", b"data")  # a child's data is not the parent's children
    events.none(0.3)
    b.create("/p/c/grandchild")  # nor are grandchildren
    events.none(0.3)
    b.delete("/p/c/grandchild")
    b.delete("/p/c")
    assert events.next() == ev(EventType.CHILD, "/p")
    a.get_children("/p", watch=events)
    b.delete("/p")  # the watched node itself goes: DELETED, not CHILD
    assert events.next() == ev(EventType.DELETED, "/p")
    events.none()


def test_watch_triggered_by_own_write_and_by_session_close(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    a.create("/p")
    b.create("/p/e", ephemeral=True)
    data_events, child_events = Events(), Events()
    a.get("/p/e", watch=data_events)
    a.get_children("/p", watch=child_events)
    b.stop()
    assert data_events.next() == ev(EventType.DELETED, "/p/e")
    assert child_events.next() == ev(EventType.CHILD, "/p")
    own = Events()
    a.get("/p", watch=own)
    a.set("/p", b"mine")
    assert own.next() == ev(EventType.CHANGED, "/p")


def test_multiple_watch_kinds_on_one_path(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    a.create("/n")
    ex, data, kids = Events(), Events(), Events()
    a.exists("/n", watch=ex)
    a.get("/n", watch=data)
    a.get_children("/n", watch=kids)
    b.delete("/n")
    assert ex.next() == ev(EventType.DELETED, "/n")
    assert data.next() == ev(EventType.DELETED, "/n")
    assert kids.next() == ev(EventType.DELETED, "/n")


def test_transaction_triggers_watches(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    a.create("/p")
    kids, created = Events(), Events()
    a.get_children("/p", watch=kids)
    a.exists("/p/x", watch=created)
    t = b.transaction()
    t.create("/p/x")
    t.create("/p/y")
    t.commit()
    assert kids.next() == ev(EventType.CHILD, "/p")
    assert created.next() == ev(EventType.CREATED, "/p/x")
    kids.none(0.3)  # one event per watch, even for two creates


def test_data_watch_recipe(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    seen = queue.Queue()

    @a.DataWatch("/dw")
    def _watch(data, stat):
        seen.put((data, stat.version if stat else None))

    assert seen.get(timeout=10) == (None, None)
    b.create("/dw", b"one")
    assert seen.get(timeout=10) == (b"one", 0)
    b.set("/dw", b"two")
    assert seen.get(timeout=10) == (b"two", 1)
    b.delete("/dw")
    assert seen.get(timeout=10) == (None, None)


def test_children_watch_recipe(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    a.create("/cw")
    seen = queue.Queue()

    @a.ChildrenWatch("/cw")
    def _watch(children):
        seen.put(sorted(children))

    assert seen.get(timeout=10) == []
    b.create("/cw/x")
    assert seen.get(timeout=10) == ["x"]
    b.create("/cw/y")
    assert seen.get(timeout=10) == ["x", "y"]
    b.delete("/cw/x")
    assert seen.get(timeout=10) == ["y"]


# --------------------------------------------------------------------------- ACLs and auth


def test_acl_default_and_set_acls_aversion(zk):
    c = zk.kazoo()
    c.create("/a")
    acl, st = c.get_acls("/a")
    assert acl == WORLD_ALL and st.aversion == 0
    st1 = c.set_acls("/a", WORLD_ALL)  # the same ACL still counts as a change
    assert (st1.aversion, st1.version, st1.mzxid) == (1, 0, st.mzxid)
    with pytest.raises(BadVersionError):
        c.set_acls("/a", WORLD_ALL, version=0)
    new = [ACL(Permissions.READ | Permissions.WRITE, Id("world", "anyone"))]
    st2 = c.set_acls("/a", new, version=1)
    assert st2.aversion == 2
    assert c.get_acls("/a") == (new, st2)
    # WRITE|READ without ADMIN: the ACL itself can no longer be changed
    with pytest.raises(NoAuthError):
        c.set_acls("/a", WORLD_ALL, version=2)
    c.set("/a", b"allowed")  # WRITE
    with pytest.raises(NoAuthError):
        c.create("/a/child")  # no CREATE
    with pytest.raises(NoNodeError):
        c.get_acls("/nope")
    with pytest.raises(NoNodeError):
        c.set_acls("/nope", WORLD_ALL)


def test_read_only_acl(zk):
    c = zk.kazoo()
    c.create("/ro", b"v", acl=READ_ACL_UNSAFE)
    assert c.get("/ro")[0] == b"v"
    assert c.get_children("/ro") == []
    with pytest.raises(NoAuthError):
        c.set("/ro", b"x")
    with pytest.raises(NoAuthError):
        c.create("/ro/child")
    with pytest.raises(NoAuthError):
        c.set_acls("/ro", WORLD_ALL)
    # deleting a node needs DELETE on its PARENT, not on the node
    c.delete("/ro")
    c.create("/p", acl=[ACL(Permissions.READ | Permissions.CREATE, Id("world", "anyone"))])
    c.create("/p/c")
    with pytest.raises(NoAuthError):
        c.delete("/p/c")


def test_digest_auth(zk):
    owner = zk.kazoo()
    owner.add_auth("digest", "alice:secret")
    acl = make_digest_acl("alice", "secret", all=True)
    assert acl.id.id == make_digest_acl_credential("alice", "secret")
    owner.create("/private", b"hidden", acl=[acl])
    assert owner.get("/private")[0] == b"hidden"
    assert owner.get_acls("/private")[0] == [acl]

    stranger = zk.kazoo()
    with pytest.raises(NoAuthError):
        stranger.get("/private")
    with pytest.raises(NoAuthError):
        stranger.set("/private", b"x")
    with pytest.raises(NoAuthError):
        stranger.get_acls("/private")
    with pytest.raises(NoAuthError):
        stranger.get_children("/private")
    # exists needs no permission
    assert stranger.exists("/private").dataLength == 6
    stranger.add_auth("digest", "alice:wrong")  # accepted, but a different identity
    with pytest.raises(NoAuthError):
        stranger.get("/private")
    stranger.add_auth("digest", "alice:secret")  # identities accumulate
    assert stranger.get("/private")[0] == b"hidden"
    stranger.set("/private", b"shared")
    assert owner.get("/private")[0] == b"shared"


def test_get_acls_hides_digest_hash_without_admin(zk):
    c = zk.kazoo()
    c.add_auth("digest", "u:p")
    full = make_digest_acl("u", "p", read=True)
    c.create("/r", acl=[full, ACL(Permissions.READ, Id("world", "anyone"))])
    redacted = [ACL(Permissions.READ, Id("digest", "u:x")), ACL(Permissions.READ, Id("world", "anyone"))]
    # READ but no ADMIN: the hash is replaced by "x", for everyone
    assert c.get_acls("/r")[0] == redacted
    assert zk.kazoo().get_acls("/r")[0] == redacted
    c.create("/adm", acl=[make_digest_acl("u", "p", all=True)])
    assert c.get_acls("/adm")[0] == [make_digest_acl("u", "p", all=True)]


def test_auth_scheme_acl(zk):
    c = zk.kazoo()
    # "auth" means "the ids this session has authenticated as"; with none: invalid
    with pytest.raises(InvalidACLError):
        c.create("/x", acl=[make_acl("auth", "", all=True)])
    c.add_auth("digest", "bob:pw")
    c.create("/x", acl=[make_acl("auth", "", all=True)])
    assert c.get_acls("/x")[0] == [ACL(Permissions.ALL, Id("digest", make_digest_acl_credential("bob", "pw")))]
    # without ADMIN the stored hash is shown as "x"
    c.create("/y", acl=[make_acl("auth", "", read=True, write=True)])
    assert c.get_acls("/y")[0] == [ACL(Permissions.READ | Permissions.WRITE, Id("digest", "bob:x"))]


def test_ip_acl(zk):
    c = zk.kazoo()
    c.create("/local", b"v", acl=[make_acl("ip", "127.0.0.1", all=True)])
    assert c.get("/local")[0] == b"v"
    c.create("/subnet", b"v", acl=[make_acl("ip", "127.0.0.0/8", read=True)])
    assert c.get("/subnet")[0] == b"v"
    c.create("/elsewhere", b"v", acl=[make_acl("ip", "10.1.2.3", all=True)])
    with pytest.raises(NoAuthError):
        c.get("/elsewhere")


def test_invalid_acls(zk):
    c = zk.kazoo()
    with pytest.raises(InvalidACLError):
        c.create("/x", acl=[make_acl("nosuchscheme", "id", all=True)])
    with pytest.raises(InvalidACLError):
        c.create("/x", acl=[make_acl("digest", "no-colon", all=True)])
    with pytest.raises(InvalidACLError):
        c.create("/x", acl=[make_acl("ip", "not-an-ip", all=True)])
    assert c.exists("/x") is None


def test_unknown_auth_scheme_ends_session(zk):
    c = zk.kazoo()
    states = []
    c.add_listener(states.append)
    with pytest.raises(AuthFailedError):
        c.add_auth("nosuchscheme", "whatever")
    wait_until(lambda: KazooState.LOST in states, what="session LOST after AUTH_FAILED")


# --------------------------------------------------------------------------- containers and TTL nodes


def test_container_reaped_after_last_child_goes(zk):
    c = zk.kazoo()
    path, st = create_container(c, "/cont", b"meta")
    assert path == "/cont"
    # containers look like persistent nodes to clients
    assert (st.ephemeralOwner, st.version, st.dataLength, st.numChildren) == (0, 0, 4, 0)
    assert c.get("/cont") == (b"meta", st)
    create_container(c, "/never-used")  # no child ever: never reaped
    c.create("/cont/child")
    c.create("/cont/e", ephemeral=True)
    with pytest.raises(NodeExistsError):
        create_container(c, "/cont")
    c.delete("/cont/child")
    time.sleep(2.5)  # still has a child: stays
    assert c.exists("/cont") is not None
    c.delete("/cont/e")
    # ZooKeeper: reaper every znode.container.checkIntervalMs (1 s here)
    wait_until(lambda: c.exists("/cont") is None, timeout=15, interval=0.2, what="container reaped")
    assert c.exists("/never-used") is not None


def test_container_with_sequential_children(zk):
    c = zk.kazoo()
    create_container(c, "/lockdir")
    assert c.create("/lockdir/lock-", ephemeral=True, sequence=True) == "/lockdir/lock-0000000000"
    c.stop()
    d = zk.kazoo()
    wait_until(lambda: d.exists("/lockdir") is None, timeout=15, interval=0.2, what="container reaped")


def test_ttl_node_expires(zk):
    c = zk.kazoo()
    path, st = create_ttl(c, "/ttl", 500, b"short-lived")
    assert path == "/ttl"
    assert (st.ephemeralOwner, st.version, st.dataLength) == (0, 0, 11)
    assert c.get("/ttl")[0] == b"short-lived"
    path2, _ = create_ttl(c, "/long", 3_600_000)
    wait_until(lambda: c.exists("/ttl") is None, timeout=15, interval=0.2, what="TTL node expired")
    assert c.exists("/long") is not None


def test_ttl_node_with_children_is_kept(zk):
    c = zk.kazoo()
    create_ttl(c, "/parent", 200)
    c.create("/parent/child")
    create_ttl(c, "/gone", 200)
    wait_until(lambda: c.exists("/gone") is None, timeout=15, interval=0.2, what="TTL node expired")
    assert c.exists("/parent") is not None


def test_ttl_sequential_and_bad_ttls(zk):
    c = zk.kazoo()
    c.create("/p")
    path, _ = create_ttl(c, "/p/t-", 60_000, sequence=True)
    assert path == "/p/t-0000000000"
    # 1 ms .. 2^40-1 ms (the TTL lives in the low 40 bits of ephemeralOwner)
    for bad in (0, -1, 1 << 40):
        with pytest.raises(BadArgumentsError):
            create_ttl(c, "/p/bad", bad)
    assert create_ttl(c, "/p/max", (1 << 40) - 1)[0] == "/p/max"
    # createTTL needs a TTL mode; a TTL mode needs createTTL
    with pytest.raises(BadArgumentsError):
        call(c, CreateTTLRequest("/p/eph", b"", OPEN_ACL_UNSAFE, EPHEMERAL, 1000))
    with pytest.raises(BadArgumentsError):
        call(c, Create2("/p/ttl2", b"", OPEN_ACL_UNSAFE, PERSISTENT_WITH_TTL))
    assert sorted(c.get_children("/p")) == ["max", "t-0000000000"]


# --------------------------------------------------------------------------- kazoo recipes


def test_lock_recipe_two_clients(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    la = a.Lock("/locks/l", "holder-a")
    lb = b.Lock("/locks/l", "holder-b")
    assert la.acquire(timeout=10)
    assert lb.acquire(blocking=False) is False
    assert la.contenders() == ["holder-a"]
    got = threading.Event()

    def contend():
        if lb.acquire(timeout=15):
            got.set()

    t = threading.Thread(target=contend, daemon=True)
    t.start()
    wait_until(lambda: lb.contenders() == ["holder-a", "holder-b"], what="b queued behind a")
    assert not got.is_set()
    la.release()
    assert got.wait(15)
    t.join(5)
    assert la.contenders() == ["holder-b"]
    lb.release()
    assert a.get_children("/locks/l") == []


def test_lock_released_when_holder_session_closes(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    assert a.Lock("/l", "a").acquire(timeout=10)
    lb = b.Lock("/l", "b")
    assert not lb.acquire(blocking=False)
    a.stop()
    assert lb.acquire(timeout=10)
    lb.release()


def test_read_write_locks(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    r1 = a.ReadLock("/rw")
    r2 = b.ReadLock("/rw")
    assert r1.acquire(timeout=10) and r2.acquire(timeout=10)  # readers share
    w = b.WriteLock("/rw")
    assert not w.acquire(blocking=False)
    r1.release()
    r2.release()
    assert w.acquire(timeout=10)
    assert not a.ReadLock("/rw").acquire(blocking=False)
    w.release()


def test_semaphore_recipe(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    c = zk.kazoo()
    sa = a.Semaphore("/sem", "a", max_leases=2)
    sb = b.Semaphore("/sem", "b", max_leases=2)
    sc = c.Semaphore("/sem", "c", max_leases=2)
    assert sa.acquire(timeout=10) and sb.acquire(timeout=10)
    assert sc.acquire(blocking=False) is False
    assert sorted(sa.lease_holders()) == ["a", "b"]
    sa.release()
    assert sc.acquire(timeout=10)
    assert sorted(sb.lease_holders()) == ["b", "c"]
    sb.release()
    sc.release()
    assert sa.lease_holders() == []


def test_election_recipe(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    leaders = queue.Queue()
    stop = {"a": threading.Event(), "b": threading.Event()}

    def lead(name):
        leaders.put(name)
        stop[name].wait(20)

    ea = a.Election("/election", "a")
    ta = threading.Thread(target=ea.run, args=(lead, "a"), daemon=True)
    ta.start()
    assert leaders.get(timeout=10) == "a"
    eb = b.Election("/election", "b")
    tb = threading.Thread(target=eb.run, args=(lead, "b"), daemon=True)
    tb.start()
    wait_until(lambda: ea.contenders() == ["a", "b"], what="b contending")
    assert leaders.empty()
    stop["a"].set()  # a's term ends: b is elected
    assert leaders.get(timeout=10) == "b"
    ta.join(10)
    assert eb.contenders() == ["b"]
    stop["b"].set()
    tb.join(10)


def test_counter_recipe(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    ca = a.Counter("/counter")
    cb = b.Counter("/counter")
    assert ca.value == 0
    ca += 5
    cb -= 2
    assert ca.value == cb.value == 3
    assert a.get("/counter")[0] == b"3"
    # concurrent increments from two clients: versioned sets, none lost
    def bump(counter):
        for _ in range(20):
            counter += 1

    threads = [threading.Thread(target=bump, args=(x,)) for x in (ca, cb)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert ca.value == 43
    assert a.exists("/counter").version == 1 + 1 + 40


def test_queue_recipe(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    q = a.Queue("/queue")
    for v in (b"first", b"second", b"third"):
        q.put(v)
    q.put(b"urgent", priority=1)
    assert len(q) == 4
    qb = b.Queue("/queue")
    assert [qb.get() for _ in range(4)] == [b"urgent", b"first", b"second", b"third"]
    assert qb.get() is None
    assert len(q) == 0


def test_locking_queue_recipe(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    qa = a.LockingQueue("/lq")
    qb = b.LockingQueue("/lq")
    qa.put_all([b"one", b"two"])
    assert qb.get(timeout=10) == b"one"
    assert qb.holds_lock()
    # the other consumer skips the locked entry
    assert qa.get(timeout=10) == b"two"
    qa.release()  # give "two" back
    assert qb.consume()
    assert len(qa) == 1
    assert qb.get(timeout=10) == b"two"
    assert qb.consume()
    assert len(qa) == 0
    assert qa.get(timeout=0.5) is None


def test_barrier_recipe(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    barrier = a.Barrier("/barrier")
    barrier.create()
    waiter = b.Barrier("/barrier")
    assert waiter.wait(timeout=0.5) is False
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", waiter.wait(timeout=15)), daemon=True)
    t.start()
    time.sleep(0.3)
    assert barrier.remove() is True
    t.join(15)
    assert result == {"r": True}
    assert waiter.wait(timeout=0.5) is True  # no barrier: passes at once


def test_double_barrier_recipe(zk):
    clients = [zk.kazoo() for _ in range(2)]
    barriers = [c.DoubleBarrier("/db", 2, identifier=f"p{i}") for i, c in enumerate(clients)]
    entered = []

    def go(i):
        barriers[i].enter()
        entered.append(i)
        barriers[i].leave()

    threads = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(2)]
    threads[0].start()
    time.sleep(0.5)
    assert entered == []  # waits for the second participant
    threads[1].start()
    for t in threads:
        t.join(15)
    assert sorted(entered) == [0, 1]
    assert clients[0].get_children("/db") == []


@pytest.mark.parametrize("kind", ["Party", "ShallowParty"])
def test_party_recipes(zk, kind):
    a = zk.kazoo()
    b = zk.kazoo()
    pa = getattr(a, kind)("/party", "alice")
    pb = getattr(b, kind)("/party", "bob")
    pa.join()
    pb.join()
    assert sorted(pa) == ["alice", "bob"]
    assert len(pb) == 2
    pa.leave()
    assert list(pb) == ["bob"]
    b.stop()  # members are ephemeral
    assert list(pa) == []


def test_tree_cache_recipe(zk):
    from kazoo.recipe.cache import TreeCache, TreeEvent
    a = zk.kazoo()
    b = zk.kazoo()
    b.create("/tc/x", b"1", makepath=True)
    events = queue.Queue()
    cache = TreeCache(a, "/tc")
    cache.listen(lambda e: events.put(e))
    cache.start()
    try:
        while True:
            e = events.get(timeout=10)
            if e.event_type == TreeEvent.INITIALIZED:
                break
        assert sorted(cache.get_children("/tc")) == ["x"]
        assert cache.get_data("/tc/x").data == b"1"
        b.set("/tc/x", b"2")
        b.create("/tc/y/z", b"deep", makepath=True)
        wait_until(lambda: cache.get_data("/tc/x").data == b"2" and cache.get_data("/tc/y/z") is not None
                   and cache.get_data("/tc/y/z").data == b"deep", what="tree cache caught up")
        b.delete("/tc/x")
        wait_until(lambda: cache.get_data("/tc/x") is None, what="tree cache saw the delete")
        assert sorted(cache.get_children("/tc")) == ["y"]
    finally:
        cache.close()
