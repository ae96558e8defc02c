"""The ZooKeeper wire protocol below the client libraries, with a raw
socket client (zk_util.RawSession, kazoo's serializers for the bodies):
session handshake and timeout negotiation, session expiry and resumption,
pings, numeric error codes, reply-header zxids, the order of a watch
notification and the reply of the write that triggered it, and SetWatches
(what a reconnecting Java client sends to get back its watches).

Every expected value was taken from ZooKeeper 3.8.0 (standalone, tickTime
2000 ms, so session timeouts are clamped to [4000, 40000] ms).
"""

import time

import pytest

from kazoo.protocol.serialization import (Create, Delete, Exists, GetChildren, GetData, SetData, int_struct, read_string,
                                          write_string)
from kazoo.protocol.states import EventType
from kazoo.security import OPEN_ACL_UNSAFE, READ_ACL_UNSAFE

from zk_util import Events, RawSession, ev, parse_notification, resume_dropped_session

# WatcherEvent type / state codes
CREATED, DELETED, CHANGED, CHILD = 1, 2, 3, 4
SYNC_CONNECTED = 3
PING_XID, OP_PING = -2, 11


def test_session_timeout_negotiation(zk):
    # tickTime 2000: the server clamps the requested timeout to [2, 20] ticks
    for asked, got in [(1000, 4000), (0, 4000), (3999, 4000), (4000, 4000), (5000, 5000),
                       (10000, 10000), (40000, 40000), (120000, 40000)]:
        s = RawSession(zk.host, zk.port, asked)
        try:
            assert (asked, s.negotiated_timeout) == (asked, got)
            assert s.session_id != 0 and len(s.passwd) == 16
        finally:
            s.close_session()


def test_session_expiry_removes_ephemerals(zk):
    watcher = zk.kazoo()
    s = RawSession(zk.host, zk.port, 4000)
    assert s.request(Create("/crashed", b"", OPEN_ACL_UNSAFE, 1))[1:] == (0, "/crashed")
    assert watcher.exists("/crashed").ephemeralOwner == s.session_id
    events = Events()
    watcher.exists("/crashed", watch=events)
    s.drop()  # a crashed client: the socket goes, the session stays
    t0 = time.monotonic()
    time.sleep(1.0)
    assert watcher.exists("/crashed") is not None  # still within the 4 s timeout
    assert events.next(timeout=15) == ev(EventType.DELETED, "/crashed")
    assert time.monotonic() - t0 >= 3.0
    assert watcher.exists("/crashed") is None


def test_session_resume_and_bad_password(zk):
    # a wrong password is refused, the right one resumes the session and its ephemerals
    again = resume_dropped_session(zk, "/e")
    sid, pw = again.session_id, again.passwd
    again.close_session()
    c = zk.kazoo()
    assert c.exists("/e") is None
    # a closed session cannot be resumed
    dead = RawSession(zk.host, zk.port, 10000, sid, pw)
    assert (dead.negotiated_timeout, dead.session_id) == (0, 0)
    dead.drop()


def test_a_reattached_session_lives_by_the_timeout_it_reattached_with(zk):
    # ZooKeeper touches a session with its current connection's negotiated timeout: a
    # session created with 4 s and reattached asking 40 s outlives 4 s of silence, one
    # created with 40 s and reattached asking 4 s does not.
    watcher = zk.kazoo()
    held = {}
    for path, first, second in [("/longer", 4000, 40000), ("/shorter", 40000, 4000)]:
        s = RawSession(zk.host, zk.port, first)
        assert s.request(Create(path, b"", OPEN_ACL_UNSAFE, 1))[1:] == (0, path)
        s.drop()
        again = RawSession(zk.host, zk.port, second, s.session_id, s.passwd)
        assert (again.session_id, again.negotiated_timeout) == (s.session_id, second)
        assert again.request(Exists(path, False))[1] == 0
        held[path] = again
    for again in held.values():
        again.drop()
    # ZooKeeper expires a session within a tick (2 s) after its timeout.
    deadline = time.monotonic() + 15
    while watcher.exists("/shorter") is not None:
        assert time.monotonic() < deadline, "the session reattached with 4 s did not expire"
        time.sleep(0.2)
    time.sleep(2.5)
    assert watcher.exists("/longer") is not None
    longer = held["/longer"]
    resumed = RawSession(zk.host, zk.port, 40000, longer.session_id, longer.passwd)
    assert resumed.negotiated_timeout == 40000
    resumed.close_session()


def test_request_errors_raw(zk):
    # the numeric error codes of the wire protocol
    s = RawSession(zk.host, zk.port, 10000)
    try:
        assert s.request(Create("/a", b"x", OPEN_ACL_UNSAFE, 0))[1:] == (0, "/a")
        assert s.request(Create("/a", b"x", OPEN_ACL_UNSAFE, 0))[1:] == (-110, None)  # NodeExists
        assert s.request(GetData("/nope", False))[1:] == (-101, None)  # NoNode
        assert s.request(SetData("/a", b"y", 5))[1:] == (-103, None)  # BadVersion
        s.request(Create("/a/b", b"", OPEN_ACL_UNSAFE, 0))
        assert s.request(Delete("/a", -1))[1:] == (-111, None)  # NotEmpty
        s.request(Create("/e", b"", OPEN_ACL_UNSAFE, 1))
        assert s.request(Create("/e/x", b"", OPEN_ACL_UNSAFE, 0))[1:] == (-108, None)  # NoChildrenForEphemerals
        assert s.request(Create("/r", b"", READ_ACL_UNSAFE, 0))[1] == 0
        assert s.request(SetData("/r", b"y", -1))[1:] == (-102, None)  # NoAuth
        assert s.request(Create("/bad", b"", [], 0))[1:] == (-114, None)  # InvalidACL: empty list
        # an exists of a missing node is an error reply with no body
        assert s.request(Exists("/nope", False))[1:] == (-101, None)
    finally:
        s.close_session()


def test_reply_zxids(zk):
    s = RawSession(zk.host, zk.port, 10000)
    try:
        z1, _, _ = s.request(Create("/a", b"", OPEN_ACL_UNSAFE, 0))
        zr, _, (_, st) = s.request(GetData("/a", False))
        # a write's reply carries its own zxid; a read's the last committed one
        assert st.czxid == z1 == zr
        z2, _, _ = s.request(Create("/b", b"", OPEN_ACL_UNSAFE, 0))
        assert z2 > z1
    finally:
        s.close_session()


def test_pipelined_reads_see_exactly_the_writes_sent_before_them(zk):
    # A session's requests run strictly in order: a getData pipelined between two setData
    # shows the first write and not the second, although both were sent before any reply.
    s = RawSession(zk.host, zk.port, 10000)
    try:
        s.request(Create("/pipe", b"", OPEN_ACL_UNSAFE, 0))
        n = 100
        for i in range(n):
            s.send(1000 + 2 * i, SetData.type, SetData("/pipe", b"v%d" % i, i).serialize())
            s.send(1001 + 2 * i, GetData.type, GetData("/pipe", False).serialize())
        for i in range(n):
            xid, set_zxid, err, _ = s.read()
            assert (xid, err) == (1000 + 2 * i, 0)
            xid, get_zxid, err, body = s.read()
            assert (xid, err) == (1001 + 2 * i, 0)
            data, stat = GetData("/pipe", False).deserialize(body, 0)
            assert (data, stat.version, stat.mzxid) == (b"v%d" % i, i + 1, set_zxid)
            assert get_zxid == set_zxid
    finally:
        s.close_session()


def test_pings_keep_an_idle_session_alive(zk):
    watcher = zk.kazoo()
    s = RawSession(zk.host, zk.port, 4000)
    s.request(Create("/alive", b"", OPEN_ACL_UNSAFE, 1))
    # 7 s > the 4 s timeout, with a ping (xid -2, opcode 11) every second
    for _ in range(7):
        time.sleep(1.0)
        s.send(PING_XID, OP_PING)
        xid, zxid, err, body = s.read()
        assert (xid, err, body) == (PING_XID, 0, b"")
    assert watcher.exists("/alive").ephemeralOwner == s.session_id
    s.close_session()
    assert watcher.exists("/alive") is None


def test_notification_precedes_reply_of_the_triggering_write(zk):
    s = RawSession(zk.host, zk.port, 10000)
    try:
        s.request(Create("/w", b"0", OPEN_ACL_UNSAFE, 0))
        s.request(Create("/p", b"", OPEN_ACL_UNSAFE, 0))
        s.request(GetData("/w", True))
        s.request(GetChildren("/p", True))
        s.request(Exists("/later", True))
        # the watch event comes on the connection BEFORE the write's reply
        assert s.request(SetData("/w", b"1", -1))[1] == 0
        assert s.notifications == [(CHANGED, SYNC_CONNECTED, "/w")]
        assert s.request(Create("/p/c", b"", OPEN_ACL_UNSAFE, 0))[1] == 0
        assert s.notifications[1:] == [(CHILD, SYNC_CONNECTED, "/p")]
        assert s.request(Create("/later", b"", OPEN_ACL_UNSAFE, 0))[1] == 0
        assert s.notifications[2:] == [(CREATED, SYNC_CONNECTED, "/later")]
        # one-shot: a second write notifies nobody
        s.request(SetData("/w", b"2", -1))
        assert len(s.notifications) == 3
    finally:
        s.close_session()


def test_set_watches_after_reconnect(zk):
    other = zk.kazoo()
    for p in ("/changed", "/same", "/deleted", "/p", "/q"):
        other.create(p)
    s = RawSession(zk.host, zk.port, 10000)
    last_zxid, _, _ = s.request(GetData("/same", False))
    sid, pw = s.session_id, s.passwd
    s.drop()
    # while the client is away: changes it would have been watching
    other.set("/changed", b"x")
    other.delete("/deleted")
    other.create("/appeared")
    other.create("/p/child")
    s = RawSession(zk.host, zk.port, 10000, sid, pw)
    try:
        assert s.session_id == sid
        # SetWatches (xid -8): the server fires at once every watch whose node
        # changed after relativeZxid, then answers; the others are set
        notes = s.set_watches(last_zxid, data=["/changed", "/same", "/deleted"],
                              exist=["/appeared", "/still-missing"], child=["/p", "/q"])
        assert sorted(notes) == sorted([(CHANGED, SYNC_CONNECTED, "/changed"),
                                        (DELETED, SYNC_CONNECTED, "/deleted"),
                                        (CREATED, SYNC_CONNECTED, "/appeared"),
                                        (CHILD, SYNC_CONNECTED, "/p")])
        # the unchanged ones are armed now
        other.set("/same", b"y")
        other.create("/still-missing")
        other.create("/q/x")
        s.request(Exists("/", False))  # a round trip, so the events are in
        assert sorted(s.notifications) == sorted([(CHANGED, SYNC_CONNECTED, "/same"),
                                                  (CREATED, SYNC_CONNECTED, "/still-missing"),
                                                  (CHILD, SYNC_CONNECTED, "/q")])
    finally:
        s.close_session()


@pytest.mark.zk_config(max_client_cnxns=3)
def test_max_client_cnxns_per_address(zk):
    # zoo.cfg's maxClientCnxns counts the open connections of one client
    # address: one more is closed by the server before any answer; a place
    # freed by a closed connection can be taken again.
    def connect_when_free():
        deadline = time.monotonic() + 10
        while True:
            try:
                return RawSession(zk.host, zk.port, 10000, io_timeout=5)
            except OSError:
                # a connection closed just before (the fixture's readiness
                # probe, or below) is noticed by the server a moment later
                assert time.monotonic() < deadline, "no place freed by a closed connection"
                time.sleep(0.1)

    sessions = []
    try:
        for _ in range(3):
            sessions.append(connect_when_free())
        assert all(s.negotiated_timeout > 0 for s in sessions)
        with pytest.raises(OSError):
            # ConnectionError (EOF or reset) is an OSError too
            RawSession(zk.host, zk.port, 10000, io_timeout=5)
        sessions.pop().close_session()
        sessions.append(connect_when_free())
        assert sessions[-1].negotiated_timeout > 0
    finally:
        for s in sessions:
            s.close_session()


def _call(s, xid, op, body):
    """One raw request on a RawSession: its reply's error code (notifications kept)."""
    s.send(xid, op, body)
    while True:
        rxid, _zxid, err, body = s.read()
        if rxid == -1:
            s.notifications.append(parse_notification(body))
            continue
        assert rxid == xid
        return err


def _path_body(path, *ints):
    return int_struct.pack(len(path)) + path.encode() + b"".join(int_struct.pack(i) for i in ints)


OP_CHECK_WATCHES, OP_REMOVE_WATCHES, OP_ADD_WATCH = 17, 18, 106
CHILDREN, DATA, ANY = 1, 2, 3
PERSISTENT_RECURSIVE = 1


def test_check_watches_as_zookeeper_3_8_answers_it(zk):
    # ZooKeeper 3.8.0's WatchManager.containsWatcher answers for ANY session's watch on the
    # path (it tests the path's watcher set, not the asker); a recursive watch sits in the
    # child table too; removeWatches removes only the asker's own.
    a = RawSession(zk.host, zk.port, 10000)
    b = RawSession(zk.host, zk.port, 10000)
    try:
        assert _call(a, 1, OP_ADD_WATCH, _path_body("/cw", PERSISTENT_RECURSIVE)) == 0
        assert _call(a, 2, OP_CHECK_WATCHES, _path_body("/cw", CHILDREN)) == 0
        assert _call(b, 1, OP_CHECK_WATCHES, _path_body("/cw", DATA)) == 0  # a's watch
        assert _call(b, 2, OP_REMOVE_WATCHES, _path_body("/cw", ANY)) == -121  # not b's
        assert _call(a, 3, OP_REMOVE_WATCHES, _path_body("/cw", CHILDREN)) == 0
        assert _call(a, 4, OP_CHECK_WATCHES, _path_body("/cw", CHILDREN)) == -121
        assert _call(a, 5, OP_CHECK_WATCHES, _path_body("/cw", DATA)) == 0
        assert _call(a, 6, OP_REMOVE_WATCHES, _path_body("/cw", DATA)) == 0
        assert _call(b, 3, OP_CHECK_WATCHES, _path_body("/cw", ANY)) == -121
    finally:
        a.close_session()
        b.close_session()


def test_who_am_i_lists_many_identities_in_zookeepers_order(zk):
    """whoAmI lists a connection's identities as ZooKeeper's ConcurrentHashMap-backed set
    iterates them: the twelfth doubles its table, which reverses part of a bucket's chain.
    Expected order taken from ZooKeeper 3.8.0."""
    s = RawSession(zk.host, zk.port, 10000)
    try:
        for i in range(13):
            assert _call(s, i + 1, 100, int_struct.pack(0) + write_string("digest") + write_string(f"x{i}:pw")) == 0
        s.send(100, 107, b"")
        while True:
            xid, _zxid, err, body = s.read()
            if xid == 100:
                break
        assert err == 0
        count, at, users = int_struct.unpack_from(body, 0)[0], 4, []
        for _ in range(count):
            scheme, at = read_string(body, at)
            ident, at = read_string(body, at)
            users.append(ident if scheme == "ip" else ident.split(":")[0])
        assert users == ["x5", "x6", "x0", "x9", "127.0.0.1", "x1", "x4", "x3", "x8", "x12", "x2", "x11", "x10",
                         "x7"]
    finally:
        s.close_session()


PERSISTENT = 0


def test_each_change_of_a_node_in_one_txn_gates_its_event_by_its_own_acl(zk):
    """A watch event goes only to a session that may READ the node (CVE-2024-23944, fixed in
    Debian's 3.8.0). When one txn deletes a node and creates it again, the NodeDeleted is
    checked against the ACL the old node had and the NodeCreated against the new node's,
    although both carry the same zxid (found by the differential test, seed 8161)."""
    from kazoo.security import make_acl, make_digest_acl_credential
    owner = zk.kazoo(auth_data=[("digest", "u:p")])
    secret = [make_acl("digest", make_digest_acl_credential("u", "p"), all=True)]
    owner.create("/g")
    owner.create("/g/y", b"old", acl=secret)
    watcher = RawSession(zk.host, zk.port, 10000)
    try:
        assert _call(watcher, 1, OP_ADD_WATCH, _path_body("/g", PERSISTENT_RECURSIVE)) == 0
        assert _call(watcher, 2, OP_ADD_WATCH, _path_body("/g/y", PERSISTENT)) == 0

        def heard(*changes):
            for change in changes:
                change()
            # Every event of those changes comes before this reply.
            assert _call(watcher, 3, OP_ADD_WATCH, _path_body("/elsewhere", PERSISTENT)) == 0
            got, watcher.notifications[:] = list(watcher.notifications), []
            return [(typ, path) for (typ, _state, path) in got]

        def replace(acl):
            t = owner.transaction()
            t.delete("/g/y")
            t.create("/g/y", b"new", acl=acl)
            assert t.commit() == [True, "/g/y"]

        # The old node is secret, the new one open: only its creation is heard (once: the
        # persistent watch on the node and the recursive one on its parent are one session's).
        assert heard(lambda: replace(OPEN_ACL_UNSAFE)) == [(CREATED, "/g/y")]
        # The old node is open, the new one secret: only the deletion is heard.
        assert heard(lambda: replace(secret)) == [(DELETED, "/g/y")]
        # Secret then secret, and a change of the secret node: nothing.
        assert heard(lambda: replace(secret), lambda: owner.set("/g/y", b"changed")) == []
        # Open then open: both.
        owner.set_acls("/g/y", OPEN_ACL_UNSAFE)
        assert heard(lambda: replace(OPEN_ACL_UNSAFE)) == [(DELETED, "/g/y"), (CREATED, "/g/y")]
        # Three changes of one path in one txn, each heard or not by its own node's ACL
        # (differential test, gate generator seed 145).
        owner.set_acls("/g/y", secret)
        t = owner.transaction()
        t.delete("/g/y")
        t.create("/g/y", b"brief", acl=OPEN_ACL_UNSAFE)
        t.delete("/g/y")
        assert heard(lambda: t.commit()) == [(CREATED, "/g/y"), (DELETED, "/g/y")]
    finally:
        watcher.close_session()


@pytest.mark.zk_config(four_letter_whitelist="*")
def test_a_recursive_watch_counts_in_both_tables(zk):
    s = RawSession(zk.host, zk.port, 10000)
    try:
        assert _call(s, 1, OP_ADD_WATCH, _path_body("/rw", PERSISTENT_RECURSIVE)) == 0
        mntr = dict(line.split("\t", 1) for line in zk.four("mntr").splitlines() if "\t" in line)
        assert mntr["zk_watch_count"] == "2"
        assert zk.four("wchs").strip().splitlines()[-1] == "Total watches:1"  # the data table
    finally:
        s.close_session()


def test_a_closed_sessions_ephemerals_go_in_zookeepers_order(zk):
    # ZooKeeper deletes them in the order of a java.util.HashSet clone of their paths; a
    # watcher of each sees the NodeDeleted events in that order (taken from ZooKeeper 3.8.0).
    watcher = RawSession(zk.host, zk.port, 10000)
    owner = RawSession(zk.host, zk.port, 10000)
    try:
        watcher.request(Create("/o", b"", OPEN_ACL_UNSAFE, 0))
        for name in ["lock-1", "lock-2", "x", "member", "zz9"]:
            assert owner.request(Create(f"/o/{name}", b"", OPEN_ACL_UNSAFE, 1))[1] == 0
            watcher.request(Exists(f"/o/{name}", True))
        owner.close_session()
        watcher.request(Exists("/", False))  # the events all come before this reply
        deleted = [path for (typ, _state, path) in watcher.notifications if typ == DELETED]
        assert deleted == ["/o/lock-2", "/o/lock-1", "/o/member", "/o/zz9", "/o/x"]
    finally:
        watcher.close_session()
