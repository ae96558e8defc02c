"""The python etcd3 client (0.12.0) against the server.  Expected values
taken from a real etcd 3.4.23."""

import queue
import threading
import time

import etcd3
import grpc
import pytest

from etcd3 import events as ev_mod
from etcd3 import exceptions as exc
from etcd3.etcdrpc import rpc_pb2


def test_put_get_delete(server):
    c = server.client()
    assert c.get("foo") == (None, None)
    resp = c.put("foo", "bar")
    assert resp.header.revision == 2
    value, meta = c.get("foo")
    assert value == b"bar"
    assert (meta.key, meta.create_revision, meta.mod_revision, meta.version, meta.lease_id) == (b"foo", 2, 2, 1, 0)
    assert meta.response_header.revision == 2
    prev = c.put("foo", "baz", prev_kv=True)
    assert (prev.prev_kv.key, prev.prev_kv.value, prev.prev_kv.version) == (b"foo", b"bar", 1)
    value, meta = c.get("foo", serializable=True)
    assert (value, meta.version, meta.mod_revision) == (b"baz", 2, 3)
    assert c.delete("foo") is True
    assert c.delete("foo") is False
    resp = c.delete("nothing", prev_kv=True, return_response=True)
    assert resp.deleted == 0 and list(resp.prev_kvs) == [] and resp.header.revision == 4
    # binary keys and values
    c.put(b"\x00\xffkey", b"\x01\x02\x00")
    assert c.get(b"\x00\xffkey")[0] == b"\x01\x02\x00"


def test_prefix_range_and_all(server):
    c = server.client()
    for k, v in [("p/b", "2"), ("p/a", "1"), ("p/c", "3"), ("q", "x"), ("o", "y")]:
        c.put(k, v)
    assert [(v, m.key) for v, m in c.get_prefix("p/")] == [(b"1", b"p/a"), (b"2", b"p/b"), (b"3", b"p/c")]
    assert [m.key for _, m in c.get_prefix("p/", sort_order="descend")] == [b"p/c", b"p/b", b"p/a"]
    assert [m.key for _, m in c.get_prefix("p/", sort_order="ascend", sort_target="create")] == [b"p/b", b"p/a", b"p/c"]
    assert [m.key for _, m in c.get_prefix("p/", sort_order="descend", sort_target="value")] == [b"p/c", b"p/b", b"p/a"]
    assert [(v, m.key) for v, m in c.get_prefix("p/", keys_only=True)] == [(b"", b"p/a"), (b"", b"p/b"), (b"", b"p/c")]
    assert [m.key for _, m in c.get_range("p/b", "q")] == [b"p/b", b"p/c"]
    assert [m.key for _, m in c.get_all()] == [b"o", b"p/a", b"p/b", b"p/c", b"q"]
    resp = c.delete_prefix("p/")
    assert resp.deleted == 3 and resp.header.revision == 7
    assert [m.key for _, m in c.get_all()] == [b"o", b"q"]


def test_range_count_only_limit_and_revision_filters(server):
    c = server.client()
    for i in range(5):
        c.put(f"r/{i}", str(i))   # revs 2..6
    c.put("r/0", "again")         # rev 7
    R = rpc_pb2.RangeRequest
    resp = c.kvstub.Range(R(key=b"r/", range_end=b"r0", count_only=True), timeout=5)
    assert (resp.count, list(resp.kvs), resp.more, resp.header.revision) == (5, [], False, 7)
    resp = c.kvstub.Range(R(key=b"r/", range_end=b"r0", limit=2), timeout=5)
    assert ([kv.key for kv in resp.kvs], resp.more, resp.count) == ([b"r/0", b"r/1"], True, 5)
    resp = c.kvstub.Range(R(key=b"r/", range_end=b"r0", min_mod_revision=4, max_mod_revision=6), timeout=5)
    assert [kv.key for kv in resp.kvs] == [b"r/2", b"r/3", b"r/4"]
    resp = c.kvstub.Range(R(key=b"r/", range_end=b"r0", min_create_revision=6), timeout=5)
    assert [kv.key for kv in resp.kvs] == [b"r/4"]
    resp = c.kvstub.Range(R(key=b"r/", range_end=b"r0", max_create_revision=2), timeout=5)
    assert [(kv.key, kv.value) for kv in resp.kvs] == [(b"r/0", b"again")]
    resp = c.kvstub.Range(R(key=b"r/", range_end=b"r0", revision=3), timeout=5)
    assert [(kv.key, kv.value) for kv in resp.kvs] == [(b"r/0", b"0"), (b"r/1", b"1")]
    # range_end "\0" means "from key"
    resp = c.kvstub.Range(R(key=b"r/3", range_end=b"\x00"), timeout=5)
    assert [kv.key for kv in resp.kvs] == [b"r/3", b"r/4"]


def test_grpc_error_codes(server):
    c = server.client()
    c.put("a", "1")
    with pytest.raises(grpc.RpcError) as ei:
        c.kvstub.Range(rpc_pb2.RangeRequest(key=b"a", revision=100), timeout=5)
    assert ei.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert ei.value.details() == "etcdserver: mvcc: required revision is a future revision"
    with pytest.raises(grpc.RpcError) as ei:
        c.kvstub.Put(rpc_pb2.PutRequest(key=b"", value=b"x"), timeout=5)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.details() == "etcdserver: key is not provided"
    with pytest.raises(grpc.RpcError) as ei:
        c.kvstub.Range(rpc_pb2.RangeRequest(key=b""), timeout=5)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.details() == "etcdserver: key is not provided"
    with pytest.raises(grpc.RpcError) as ei:
        c.kvstub.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b""), timeout=5)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.details() == "etcdserver: key is not provided"
    with pytest.raises(grpc.RpcError) as ei:
        c.leasestub.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=999), timeout=5)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    assert ei.value.details() == "etcdserver: requested lease not found"
    c.compact(2)
    with pytest.raises(grpc.RpcError) as ei:
        c.kvstub.Range(rpc_pb2.RangeRequest(key=b"a", revision=1), timeout=5)
    assert ei.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert ei.value.details() == "etcdserver: mvcc: required revision has been compacted"


def test_replace_and_put_if_not_exists(server):
    c = server.client()
    assert c.put_if_not_exists("k", "v1") is True
    assert c.put_if_not_exists("k", "v2") is False
    assert c.get("k")[0] == b"v1"
    assert c.replace("k", "wrong", "v3") is False
    assert c.replace("k", "v1", "v3") is True
    assert c.get("k")[0] == b"v3"


def test_transactions(server):
    c = server.client()
    c.put("t/a", "1")   # 2
    c.put("t/b", "2")   # 3
    t = c.transactions
    ok, responses = c.transaction(
        compare=[t.value("t/a") == "1", t.version("t/b") > 0, t.mod("t/b") == 3, t.create("t/a") < 3],
        success=[t.put("t/c", "3"), t.get("t/a"), t.delete("t/b")],
        failure=[t.put("t/failed", "x")])
    assert ok is True
    assert len(responses) == 3
    assert responses[0].response_put.header.revision == 4
    assert [(v, m.key, m.mod_revision) for v, m in responses[1]] == [(b"1", b"t/a", 2)]
    assert responses[2].response_delete_range.deleted == 1
    assert c.get("t/c")[0] == b"3" and c.get("t/b") == (None, None)
    ok, responses = c.transaction(
        compare=[t.value("t/a") != "1"],
        success=[t.put("t/x", "x")],
        failure=[t.get("t/c"), t.put("t/failed", "y")])
    assert ok is False
    assert [(v, m.key) for v, m in responses[0]] == [(b"3", b"t/c")]
    assert c.get("t/failed")[0] == b"y"
    assert c.get("t/x") == (None, None)
    # the whole txn is one revision
    assert c.get("t/failed")[1].mod_revision == 5
    # a txn with a nested txn (gRPC level)
    inner = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"t/n", value=b"n"))])
    resp = c.kvstub.Txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_txn=inner)]), timeout=5)
    assert resp.succeeded and resp.responses[0].response_txn.succeeded
    assert resp.responses[0].response_txn.responses[0].response_put.header.revision == 6
    assert c.get("t/n")[0] == b"n"


def test_leases_with_keys(server):
    c = server.client()
    lease = c.lease(60)
    assert lease.ttl == 60 and lease.id > 0
    c.put("lk/1", "a", lease=lease)
    c.put("lk/2", "b", lease=lease.id)
    assert c.get("lk/1")[1].lease_id == lease.id
    assert 55 <= lease.remaining_ttl <= 59
    assert lease.granted_ttl == 60
    assert sorted(lease.keys) == [b"lk/1", b"lk/2"]
    resp = list(lease.refresh())
    assert resp[0].TTL == 60 and resp[0].ID == lease.id
    info = c.get_lease_info(lease.id)
    assert (info.ID, info.grantedTTL) == (lease.id, 60)
    lease.revoke()
    assert c.get("lk/1") == (None, None) and c.get("lk/2") == (None, None)
    info = c.get_lease_info(lease.id)
    assert (info.TTL, info.grantedTTL, list(info.keys)) == (-1, 0, [])
    # a lease with a chosen id
    l2 = c.lease(30, lease_id=0x1234)
    assert l2.id == 0x1234
    with pytest.raises(exc.PreconditionFailedError):
        c.lease(30, lease_id=0x1234)
    with pytest.raises(grpc.RpcError) as ei:
        c.leasestub.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30, ID=0x1234), timeout=5)
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert ei.value.details() == "etcdserver: lease already exists"
    resp = c.leasestub.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=5)
    assert [l.ID for l in resp.leases] == [0x1234]


def test_lease_expiry(server):
    c = server.client()
    lease = c.lease(2)
    c.put("exp", "v", lease=lease)
    deadline = time.monotonic() + 10
    while c.get("exp") != (None, None):
        assert time.monotonic() < deadline, "key with an expired lease still present"
        time.sleep(0.1)
    assert lease.remaining_ttl == -1


def _collect(it, n, timeout=10):
    """Read n items from a blocking iterator on a thread, with a timeout."""
    out = queue.Queue()

    def run():
        try:
            for item in it:
                out.put(item)
        except Exception as e:  # noqa: BLE001
            out.put(e)

    threading.Thread(target=run, daemon=True).start()
    items = []
    deadline = time.monotonic() + timeout
    while len(items) < n:
        try:
            items.append(out.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"only {len(items)} of {n} watch items arrived: {items}")
    return items


def test_watch_iterator(server):
    c = server.client()
    events, cancel = c.watch_prefix("w/")
    c.put("w/a", "1")
    c.put("x", "ignored")
    c.put("w/b", "2")
    c.delete("w/a")
    got = _collect(events, 3)
    cancel()
    assert [(type(e).__name__, e.key, e.value) for e in got] == [
        ("PutEvent", b"w/a", b"1"), ("PutEvent", b"w/b", b"2"), ("DeleteEvent", b"w/a", b"")]
    assert [e.mod_revision for e in got] == [2, 4, 5]
    assert got[1].create_revision == 4 and got[1].version == 1


def test_watch_callback_history_and_prev_kv(server):
    c = server.client()
    c.put("k", "1")   # 2
    c.put("k", "2")   # 3
    q = queue.Queue()
    wid = c.add_watch_callback("k", q.put, start_revision=2, prev_kv=True)
    r = q.get(timeout=10)
    assert isinstance(r, etcd3.watch.WatchResponse)
    # history arrives in one response, with the current revision in the header
    assert r.header.revision == 3
    assert [(e.key, e.value, e.mod_revision) for e in r.events] == [(b"k", b"1", 2), (b"k", b"2", 3)]
    assert r.events[1].prev_value == b"1"
    c.delete("k")     # 4
    r = q.get(timeout=10)
    assert isinstance(r.events[0], ev_mod.DeleteEvent)
    assert r.events[0].prev_value == b"2" and r.header.revision == 4
    c.cancel_watch(wid)
    c.put("k", "after cancel")
    with pytest.raises(queue.Empty):
        q.get(timeout=0.5)


def test_watch_once_and_timeout(server):
    c = server.client()
    with pytest.raises(exc.WatchTimedOut):
        c.watch_once("nothing", timeout=0.5)
    t = threading.Timer(0.3, lambda: c.put("once", "v"))
    t.start()
    event = c.watch_once("once", timeout=10)
    t.join()
    assert (event.key, event.value) == (b"once", b"v")


def test_watch_compacted(server):
    c = server.client()
    for v in "123":
        c.put("c", v)
    c.compact(3)
    q = queue.Queue()
    c.add_watch_callback("c", q.put, start_revision=2)
    r = q.get(timeout=10)
    assert isinstance(r, exc.RevisionCompactedError)
    assert r.compacted_revision == 3


def test_watch_raw_stream_created_and_cancel(server):
    """The raw Watch stream: created response, events, cancel response."""
    c = server.client()
    reqs = queue.Queue()

    def gen():
        while True:
            r = reqs.get()
            if r is None:
                return
            yield r

    from etcd3 import etcdrpc
    stream = etcdrpc.WatchStub(c.channel).Watch(gen(), timeout=15)
    reqs.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"a")))
    r = next(stream)
    assert (r.created, r.canceled, r.watch_id, list(r.events), r.header.revision) == (True, False, 0, [], 1)
    assert r.header.cluster_id != 0 and r.header.member_id != 0
    reqs.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"b", prev_kv=True)))
    r = next(stream)
    assert (r.created, r.watch_id) == (True, 1)
    c.put("a", "1")
    r = next(stream)
    assert (r.watch_id, r.created, [(e.type, e.kv.key, e.kv.value) for e in r.events]) == (0, False, [(0, b"a", b"1")])
    assert r.header.revision == 2
    reqs.put(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=0)))
    r = next(stream)
    assert (r.watch_id, r.canceled, r.created, list(r.events)) == (0, True, False, [])
    c.put("a", "2")
    c.put("b", "x")
    r = next(stream)
    assert (r.watch_id, [(e.kv.key, e.kv.value) for e in r.events]) == (1, [(b"b", b"x")])
    # a compacted start revision: created, then canceled with compact_revision
    c.compact(3)
    reqs.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"a", start_revision=2)))
    r = next(stream)
    assert (r.created, r.watch_id) == (True, 2)
    r = next(stream)
    assert (r.watch_id, r.canceled, r.compact_revision, list(r.events)) == (2, True, 3, [])
    reqs.put(None)
    stream.cancel()


def test_lock(server):
    c = server.client()
    lock = c.lock("res", ttl=10)
    assert lock.acquire(timeout=5) is True
    assert lock.is_acquired()
    value, meta = c.get("/locks/res")
    assert value == lock.uuid and meta.lease_id == lock.lease.id
    other = c.lock("res", ttl=10)
    assert other.acquire(timeout=0.5) is False
    assert lock.release() is True
    assert not lock.is_acquired()
    assert c.get("/locks/res") == (None, None)
    with c.lock("res", ttl=10) as l3:
        assert l3.is_acquired()
    assert c.get("/locks/res") == (None, None)


def test_lock_handover(server):
    c1 = server.client()
    c2 = server.client()
    first = c1.lock("h", ttl=10)
    assert first.acquire(timeout=5)
    result = {}

    def take():
        second = c2.lock("h", ttl=10)
        result["ok"] = second.acquire(timeout=10)
        result["lock"] = second

    t = threading.Thread(target=take)
    t.start()
    time.sleep(0.3)
    assert "ok" not in result
    first.release()
    t.join(15)
    assert result.get("ok") is True and result["lock"].is_acquired()


def test_status_members_maintenance(server):
    c = server.client()
    c.put("a", "1")
    st = c.status()
    assert st.version.startswith("3.")
    assert st.db_size > 0 and st.raft_index > 0 and st.raft_term >= 1
    members = list(c.members)
    assert len(members) == 1
    m = members[0]
    assert m.name == "default"
    assert list(m.peer_urls) == [server.peer_url] and list(m.client_urls) == [server.url]
    assert st.leader.id == m.id
    c.compact(2, physical=True)
    c.defragment()
    assert list(c.list_alarms()) == []
    h = c.maintenancestub.HashKV(rpc_pb2.HashKVRequest(revision=0), timeout=5)
    assert h.compact_revision == 2 and h.header.revision == 2
