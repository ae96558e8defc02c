"""etcdctl compaction, endpoint *, member list, defrag, alarm, lock, elect.
Expected output taken from a real etcd 3.4.23."""

import json
import re
import struct

from compat_util import error_of, jl, strip_logs, wait_until

HDR = {"cluster_id": "<cluster_id>", "member_id": "<member_id>", "raft_term": "<raft_term>"}


def hdr(rev):
    return dict(HDR, revision=rev)


COMPACTED = "rpc error: code = OutOfRange desc = etcdserver: mvcc: required revision has been compacted"
FUTURE = "rpc error: code = OutOfRange desc = etcdserver: mvcc: required revision is a future revision"

# --------------------------------------------------------------------------- compaction


def test_compaction_and_compacted_reads(server):
    for v in "12345":
        server.ok("put", "foo", v)          # revs 2..6
    assert server.etcdctl("compaction", "4") == (0, "compacted revision 4\n", "")
    rc, out, err = server.etcdctl("get", "foo", "--rev=3")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: mvcc: required revision has been compacted\n")
    assert error_of(err) == COMPACTED
    # the compaction revision itself is still readable
    assert server.etcdctl("get", "foo", "--rev=4") == (0, "foo\n3\n", "")
    assert server.etcdctl("get", "foo", "--rev=5") == (0, "foo\n4\n", "")
    assert server.etcdctl("get", "foo") == (0, "foo\n5\n", "")
    # compaction does not create a revision
    assert jl(server.ok("get", "foo", "-w", "json"))["header"] == hdr(6)
    # compacting again at or below the compacted revision
    for rev in ("4", "3", "0"):
        rc, out, err = server.etcdctl("compaction", rev)
        assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: mvcc: required revision has been compacted\n"), rev
        assert error_of(err) == COMPACTED
    # compacting the future
    rc, out, err = server.etcdctl("compaction", "7")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: mvcc: required revision is a future revision\n")
    assert error_of(err) == FUTURE
    # compacting at the current revision is allowed (--physical waits for it)
    assert server.etcdctl("compaction", "6", "--physical") == (0, "compacted revision 6\n", "")
    rc, out, err = server.etcdctl("get", "foo", "--rev=5")
    assert (rc, strip_logs(err)) == (1, "Error: etcdserver: mvcc: required revision has been compacted\n")
    assert server.etcdctl("get", "foo", "--rev=6") == (0, "foo\n5\n", "")


def test_compaction_at_zero_on_a_fresh_store(server):
    # etcd's compaction revision starts below every revision: 0 is accepted once, then it is
    # the compacted revision like any other
    d = jl(server.ok("endpoint", "hashkv", "-w", "json"))
    assert d[0]["HashKV"]["compact_revision"] == -1
    assert server.etcdctl("compaction", "0") == (0, "compacted revision 0\n", "")
    d = jl(server.ok("endpoint", "hashkv", "-w", "json"))
    assert "compact_revision" not in d[0]["HashKV"]  # 0: omitted, as zero fields are
    rc, out, err = server.etcdctl("compaction", "0")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: mvcc: required revision has been compacted\n")
    server.ok("put", "a", "1")
    assert server.etcdctl("get", "a", "--rev=1") == (0, "", "")
    assert server.etcdctl("compaction", "2") == (0, "compacted revision 2\n", "")


def test_compaction_keeps_deleted_history_semantics(server):
    server.ok("put", "a", "1")   # 2
    server.ok("put", "b", "1")   # 3
    server.ok("del", "a")        # 4
    server.ok("put", "c", "1")   # 5
    assert server.etcdctl("compaction", "4", "--physical") == (0, "compacted revision 4\n", "")
    assert server.etcdctl("get", "", "--prefix", "--rev=4") == (0, "b\n1\n", "")
    assert server.etcdctl("get", "", "--prefix", "--keys-only") == (0, "b\n\nc\n\n", "")
    # versions / create revisions of surviving keys are untouched
    d = jl(server.ok("get", "b", "-w", "json"))
    assert d["kvs"][0]["create_revision"] == 3 and d["kvs"][0]["version"] == 1
    d = jl(server.ok("endpoint", "hashkv", "-w", "json"))
    assert d[0]["HashKV"]["compact_revision"] == 4
    assert d[0]["HashKV"]["header"] == hdr(5)


# --------------------------------------------------------------------------- endpoint


def test_endpoint_health(server):
    rc, out, err = server.etcdctl("endpoint", "health")
    # the simple output goes to stderr
    assert (rc, out) == (0, "")
    assert re.match(rf"^{re.escape(server.endpoint)} is healthy: successfully committed proposal: took = [0-9.]+[µm]?s\n$", err), err
    rc, out, err = server.etcdctl("endpoint", "health", "-w", "json")
    assert (rc, err) == (0, "")
    d = __import__("json").loads(out)
    assert len(d) == 1 and set(d[0]) == {"endpoint", "health", "took"}
    assert d[0]["endpoint"] == server.endpoint and d[0]["health"] is True
    rc, out, err = server.etcdctl("endpoint", "health", "-w", "table")
    assert rc == 0 and "| " + server.endpoint + " |   true |" in out
    # health checks do not write anything
    assert jl(server.ok("get", "health", "-w", "json")) == {"header": hdr(1)}


def test_endpoint_status(server):
    server.ok("put", "a", "1")
    d = __import__("json").loads(server.ok("endpoint", "status", "-w", "json"))
    assert len(d) == 1 and d[0]["Endpoint"] == server.endpoint
    st = d[0]["Status"]
    h = st["header"]
    assert set(st) == {"header", "version", "dbSize", "leader", "raftIndex", "raftTerm",
                       "raftAppliedIndex", "dbSizeInUse"}, st
    assert h["revision"] == 2 and h["cluster_id"] > 0 and h["member_id"] > 0
    # a single member is its own leader
    assert st["leader"] == h["member_id"]
    assert st["raftTerm"] == h["raft_term"] >= 1
    assert re.match(r"^3\.[45]\.\d+$", st["version"]), st["version"]
    assert st["dbSize"] > 0 and 0 < st["dbSizeInUse"] <= st["dbSize"]
    assert st["raftIndex"] >= st["raftAppliedIndex"] > 0
    # simple: endpoint, id, version, db size, is leader, is learner, raft term,
    # raft index, raft applied index, errors
    out = server.ok("endpoint", "status")
    m = re.match(rf"^{re.escape(server.endpoint)}, ([0-9a-f]+), (3\.[45]\.\d+), ([0-9.]+ [kMG]?B), true, false, (\d+), (\d+), (\d+), \n$", out)
    assert m, out
    assert int(m.group(1), 16) == h["member_id"]
    lines = server.ok("endpoint", "status", "-w", "table").splitlines()
    assert [c.strip() for c in lines[1].split("|")[1:-1]] == [
        "ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER", "RAFT TERM", "RAFT INDEX",
        "RAFT APPLIED INDEX", "ERRORS"]
    cells = [c.strip() for c in lines[3].split("|")[1:-1]]
    assert cells[0] == server.endpoint and cells[1] == m.group(1)
    assert cells[4:6] == ["true", "false"] and cells[9] == ""


def _crc32c(data):
    table = _crc32c.table
    if table is None:
        table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            table.append(c)
        _crc32c.table = table
    c = 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


_crc32c.table = None


def _expected_hash(entries):
    """etcd's HashKV without compaction: crc32c over the bucket name "key" and
    then, in revision order, each revision key (8-byte BE main, '_', 8-byte BE
    sub, plus 't' for a tombstone) followed by the marshalled mvccpb.KeyValue
    (a tombstone stores only the key)."""
    from etcd3.etcdrpc import kv_pb2
    data = b"key"
    for (main, sub, tomb), kvargs in entries:
        data += struct.pack(">Q", main) + b"_" + struct.pack(">Q", sub) + (b"t" if tomb else b"")
        data += kv_pb2.KeyValue(**kvargs).SerializeToString()
    return _crc32c(data)


def test_maintenance_calls_with_url_endpoints(server):
    """An endpoint written as a URL, and --cluster (which reads the members' client URLs):
    etcdctl 3.4 dials each such endpoint for the Maintenance calls with the whole URL as the
    HTTP/2 :authority, which etcd accepts."""
    def _at_url(*args):
        return server.ok(*args, endpoint=server.url)

    server.ok("put", "a", "1")
    status = rf"^{re.escape(server.url)}, [0-9a-f]+, 3\.[45]\.\d+, [^\n]*\n$"
    assert re.match(status, _at_url("endpoint", "status"))
    assert re.match(status, _at_url("endpoint", "status", "--cluster"))
    h = server.ok("endpoint", "hashkv").split(", ")[1]
    assert _at_url("endpoint", "hashkv") == f"{server.url}, {h}"
    assert _at_url("endpoint", "hashkv", "--cluster") == f"{server.url}, {h}"
    done = f"Finished defragmenting etcd member[{server.url}]\n"
    assert _at_url("defrag") == done
    assert _at_url("defrag", "--cluster") == done
    assert _at_url("get", "a") == "a\n1\n"


def test_endpoint_hashkv(server):
    d = jl(server.ok("endpoint", "hashkv", "-w", "json"))
    assert d == [{"Endpoint": server.endpoint, "HashKV": {
        "header": hdr(1), "hash": _expected_hash([]), "compact_revision": -1}}]
    assert _expected_hash([]) == 1084519789
    server.ok("put", "a", "1")                                  # 2
    server.ok("put", "b", "2")                                  # 3
    server.ok("txn", input="\nput c 3\nput d 4\n\n\n")          # 4 (subs 0, 1)
    server.ok("del", "a")                                       # 5
    entries = [
        ((2, 0, False), dict(key=b"a", create_revision=2, mod_revision=2, version=1, value=b"1")),
        ((3, 0, False), dict(key=b"b", create_revision=3, mod_revision=3, version=1, value=b"2")),
        ((4, 0, False), dict(key=b"c", create_revision=4, mod_revision=4, version=1, value=b"3")),
        ((4, 1, False), dict(key=b"d", create_revision=4, mod_revision=4, version=1, value=b"4")),
        ((5, 0, True), dict(key=b"a")),
    ]
    assert _expected_hash(entries) == 3371320365
    assert server.etcdctl("endpoint", "hashkv") == (0, f"{server.endpoint}, 3371320365\n", "")
    assert server.etcdctl("endpoint", "hashkv", "--rev=2") == (0, f"{server.endpoint}, 2587454935\n", "")
    assert _expected_hash(entries[:1]) == 2587454935
    d = jl(server.ok("endpoint", "hashkv", "--rev=3", "-w", "json"))
    assert d == [{"Endpoint": server.endpoint, "HashKV": {
        "header": hdr(5), "hash": _expected_hash(entries[:2]), "compact_revision": -1}}]
    rc, out, err = server.etcdctl("endpoint", "hashkv", "--rev=100")
    assert (rc, out) == (1, "")
    assert strip_logs(err) == (f"Failed to get the hash of endpoint {server.endpoint} "
                               "(etcdserver: mvcc: required revision is a future revision)\n"
                               "Error: etcdserver: mvcc: required revision is a future revision\n")
    assert error_of(err) == FUTURE


# --------------------------------------------------------------------------- member / maintenance


def test_member_list(server):
    host_peer = f"http://127.0.0.1:{server.peer_port}"
    rc, out, err = server.etcdctl("member", "list")
    assert (rc, err) == (0, "")
    m = re.match(rf"^([0-9a-f]+), started, default, {host_peer}, {server.url}, false\n$", out)
    assert m, out
    mid = int(m.group(1), 16)
    raw = __import__("json").loads(server.ok("member", "list", "-w", "json"))
    assert raw["header"]["member_id"] == mid
    # the Cluster service's header carries no revision
    assert set(raw["header"]) == {"cluster_id", "member_id", "raft_term"}
    assert jl(server.ok("member", "list", "-w", "json")) == {
        "header": HDR,
        "members": [{"ID": mid, "name": "default", "peerURLs": [host_peer], "clientURLs": [server.url]}]}
    out = server.ok("member", "list", "-w", "table")
    assert f"| {m.group(1)} | started | default | {host_peer} | {server.url} |      false |" in out


def test_move_leader(server):
    mid = server.ok("member", "list").split(",")[0]
    assert server.etcdctl("move-leader", mid) == (0, f"Leadership transferred from {mid} to {mid}\n", "")
    rc, out, err = server.etcdctl("move-leader", "1")
    assert (rc, out) == (1, "")
    assert err.endswith("Error: etcdserver: bad leader transferee\n"), err


def test_raft_term_of_a_fresh_and_a_restarted_server(server):
    # etcd elects its first leader in term 2 (term 1 holds the bootstrap entries) and a
    # restarted node campaigns again, in the next term; a write's header shows the same term.
    def term():
        # json.loads, not jl: jl masks the terms
        st = json.loads(server.ok("endpoint", "status", "-w", "json"))[0]["Status"]
        put = json.loads(server.ok("put", "t", "v", "-w", "json"))
        assert put["header"]["raft_term"] == st["raftTerm"]
        return st["raftTerm"]

    assert term() == 2
    server.restart()
    assert term() == 3
    server.restart()
    assert term() == 4
    assert server.ok("get", "t", "--print-value-only") == "v\n"


def test_defrag_and_alarm(server):
    assert server.etcdctl("defrag") == (0, f"Finished defragmenting etcd member[{server.endpoint}]\n", "")
    assert server.etcdctl("alarm", "list") == (0, "", "")
    assert server.etcdctl("alarm", "disarm") == (0, "", "")
    server.ok("put", "a", "b")
    assert server.etcdctl("get", "a") == (0, "a\nb\n", "")


def test_defrag_gives_back_what_compaction_freed(server):
    """etcd's recovery from a full backend: compaction frees history inside the file, defrag
    rewrites the file without it (dbSize falls, the data stays)."""
    def size():
        return json.loads(server.ok("endpoint", "status", "-w", "json"))[0]["Status"]["dbSize"]
    value = "v" * 100_000
    for i in range(40):
        server.ok("put", "k", value)
    full = size()
    rev = json.loads(server.ok("get", "k", "-w", "json"))["header"]["revision"]
    assert server.etcdctl("compaction", str(rev)) == (0, f"compacted revision {rev}\n", "")
    assert server.etcdctl("defrag") == (0, f"Finished defragmenting etcd member[{server.endpoint}]\n", "")
    assert size() < full / 2, (size(), full)
    assert server.ok("get", "k", "--print-value-only") == value + "\n"
    server.ok("put", "k2", "after")
    assert server.ok("get", "k2", "--print-value-only") == "after\n"


# --------------------------------------------------------------------------- lock / elect


def test_lock(server):
    holder = server.etcdctl_bg("lock", "mylock")
    key = holder.read_line()
    assert re.match(r"^mylock/[0-9a-f]+$", key), key
    assert holder.read_line() == ""
    lease = int(key.split("/")[1], 16)
    d = jl(server.ok("get", "mylock", "--prefix", "-w", "json"))
    assert d["count"] == 1
    kv = d["kvs"][0]
    assert kv["key"] == __import__("base64").b64encode(key.encode()).decode()
    assert kv["lease"] == lease and "value" not in kv and kv["version"] == 1
    # a second locker queues behind the first (its key exists, it waits)
    waiter = server.etcdctl_bg("lock", "mylock", "--", "sh", "-c", 'echo "got $ETCD_LOCK_KEY"')
    wait_until(lambda: jl(server.ok("get", "mylock", "--prefix", "-w", "json")).get("count") == 2,
               what="second lock key")
    assert waiter.no_more_output(0.5)
    holder.interrupt()   # Ctrl-C: the session lease is revoked
    line = waiter.read_line()
    assert re.match(r"^got mylock/[0-9a-f]+$", line) and line != "got " + key, line
    rc, rest, err = waiter.wait()
    assert (rc, rest, strip_logs(err)) == (0, [], "")
    wait_until(lambda: server.etcdctl("get", "mylock", "--prefix") == (0, "", ""), what="lock keys gone")


def test_lock_exec_exit_status_and_ttl_expiry(server):
    rc, out, err = server.etcdctl("lock", "l", "--", "sh", "-c", "exit 3")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: exit status 3\n")
    # a holder that dies without unlocking keeps the lock until its lease expires
    holder = server.etcdctl_bg("lock", "--ttl=2", "l")
    assert re.match(r"^l/[0-9a-f]+$", holder.read_line())
    holder.kill()
    rc, out, err = server.etcdctl("lock", "l", "echo", "after expiry", timeout=20)
    assert (rc, out, strip_logs(err)) == (0, "after expiry\n", "")


def test_elect(server):
    c1 = server.etcdctl_bg("elect", "myel", "p1")
    k1, v1 = c1.read_lines(2)
    assert re.match(r"^myel/[0-9a-f]+$", k1) and v1 == "p1"
    c2 = server.etcdctl_bg("elect", "myel", "p2")
    wait_until(lambda: jl(server.ok("get", "myel", "--prefix", "-w", "json")).get("count") == 2,
               what="second candidate key")
    # the proposal is stored as the value of the candidate's key
    rc, out, _ = server.etcdctl("get", "myel", "--prefix")
    lines = out.splitlines()
    assert lines[:2] == [k1, "p1"] and lines[3] == "p2"
    k2 = lines[2]
    obs = server.etcdctl_bg("elect", "-l", "myel")
    assert obs.read_lines(2) == [k1, "p1"]
    assert c2.no_more_output(0.3)
    c1.interrupt()       # resign
    assert c2.read_lines(2) == [k2, "p2"]
    assert obs.read_lines(2) == [k2, "p2"]
    rc, rest, err = c1.wait()
    assert rc == 0


def test_nospace_alarm_caps_writes(server):
    """An alarm raised through the API (as python-etcd3's create_alarm does) shows in
    `alarm list` and `endpoint status`, refuses puts, and `alarm disarm` clears it."""
    import etcd3
    host, port = server.endpoint.rsplit(":", 1)
    client = etcd3.client(host=host, port=int(port))
    try:
        alarms = client.create_alarm()
        assert [(a.member_id, a.alarm_type) for a in alarms] == [(0, 1)]
        assert server.etcdctl("alarm", "list") == (0, "alarm:NOSPACE \n", "")
        st = jl(server.ok("endpoint", "status", "-w", "json"))[0]["Status"]
        assert st["errors"] == ["alarm:NOSPACE "]
        rc, out, err = server.etcdctl("put", "a", "b")
        assert (rc, out) == (1, "")
        assert strip_logs(err) == "Error: etcdserver: mvcc: database space exceeded\n"
        assert server.etcdctl("get", "a") == (0, "", "")
        assert server.etcdctl("alarm", "disarm") == (0, "alarm:NOSPACE \n", "")
        assert server.etcdctl("alarm", "list") == (0, "", "")
        server.ok("put", "a", "b")
    finally:
        client.close()
