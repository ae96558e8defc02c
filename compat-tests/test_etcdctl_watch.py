"""etcdctl watch: run as a subprocess, drive writes, read its stdout with a
timeout.  Expected output taken from a real etcd 3.4.23."""


from compat_util import b64, jlines, strip_logs

HDR = {"cluster_id": "<cluster_id>", "member_id": "<member_id>", "raft_term": "<raft_term>"}


def hdr(rev):
    return dict(HDR, revision=rev)


def wresp(rev, events, compact=0, canceled=False):
    """A WatchResponse as etcdctl -w json prints it."""
    h = hdr(rev) if rev else dict(HDR)
    d = {"Header": h, "Events": events, "CompactRevision": compact, "Canceled": canceled, "Created": False}
    return d


def put_ev(key, value, create, mod, version, prev=None):
    kv = {"key": b64(key), "create_revision": create, "mod_revision": mod, "version": version}
    if value:
        kv["value"] = b64(value)
    ev = {"kv": kv}
    if prev is not None:
        ev["prev_kv"] = prev
    return ev


def del_ev(key, mod, prev=None):
    ev = {"type": 1, "kv": {"key": b64(key), "mod_revision": mod}}
    if prev is not None:
        ev["prev_kv"] = prev
    return ev


def kvd(key, value, create, mod, version):
    d = {"key": b64(key), "create_revision": create, "mod_revision": mod, "version": version}
    if value:
        d["value"] = b64(value)
    return d


def drain_sync(server, w, key):
    """Make sure watcher `w` (simple output, no --prev-kv, watching `key`) is
    registered: put `key` until its events show up, then consume them.  The
    watcher sees a suffix of the sync puts, ending with the last one."""
    import time
    deadline = time.monotonic() + 15
    n = 0
    while True:
        server.ok("put", key, f"sync{n}")
        n += 1
        if not w.no_more_output(0.2):
            break
        assert time.monotonic() < deadline, f"watch never delivered an event; stderr={w.stderr!r}"
    while True:
        ev = w.read_lines(3)
        assert ev[0] == "PUT" and ev[1] == key and ev[2].startswith("sync"), ev
        if ev[2] == f"sync{n - 1}":
            return n


def test_watch_prefix_live(server):
    w = server.etcdctl_bg("watch", "w/", "--prefix")
    drain_sync(server, w, "w/sync")
    server.ok("put", "w/a", "1")
    server.ok("put", "other", "x")  # outside the prefix
    server.ok("put", "w/b", "2")
    server.ok("put", "w/a", "3")
    server.ok("del", "w/a")
    server.ok("del", "w/", "--prefix")
    assert w.read_lines(3 * 6) == [
        "PUT", "w/a", "1",
        "PUT", "w/b", "2",
        "PUT", "w/a", "3",
        "DELETE", "w/a", "",
        # a range delete yields one event per key, in key order
        "DELETE", "w/b", "",
        "DELETE", "w/sync", "",
    ]
    assert w.no_more_output(0.3)


def test_watch_single_key_ignores_others(server):
    w = server.etcdctl_bg("watch", "k")
    drain_sync(server, w, "k")
    server.ok("put", "k2", "no")
    server.ok("put", "j", "no")
    server.ok("put", "k", "yes")
    assert w.read_lines(3) == ["PUT", "k", "yes"]
    assert w.no_more_output(0.3)


def test_watch_rev_replays_history(server):
    server.ok("put", "w1", "a")    # 2
    server.ok("put", "w1", "b")    # 3
    server.ok("put", "w2", "c")    # 4
    server.ok("del", "w1")         # 5
    w = server.etcdctl_bg("watch", "w1", "--rev=1")
    assert w.read_lines(9) == ["PUT", "w1", "a", "PUT", "w1", "b", "DELETE", "w1", ""]
    # and it keeps going live
    server.ok("put", "w1", "d")    # 6
    assert w.read_lines(3) == ["PUT", "w1", "d"]
    w.kill()
    # from a later revision only
    w = server.etcdctl_bg("watch", "w1", "--rev=3")
    assert w.read_lines(9) == ["PUT", "w1", "b", "DELETE", "w1", "", "PUT", "w1", "d"]
    assert w.no_more_output(0.3)


def test_watch_rev_json_groups_history_in_one_response(server):
    server.ok("put", "w1", "a")    # 2
    server.ok("put", "w1", "b")    # 3
    server.ok("put", "w2", "c")    # 4
    server.ok("del", "w1")         # 5
    w = server.etcdctl_bg("watch", "w1", "--rev=1", "-w", "json")
    # past events are delivered together in one WatchResponse whose header
    # holds the current revision
    assert jlines(w.read_line()) == [wresp(5, [
        put_ev("w1", "a", 2, 2, 1),
        put_ev("w1", "b", 2, 3, 2),
        del_ev("w1", 5),
    ])]
    server.ok("put", "w2", "x")    # 6
    server.ok("put", "w1", "new")  # 7
    assert jlines(w.read_line()) == [wresp(7, [put_ev("w1", "new", 7, 7, 1)])]


def test_watch_prev_kv(server):
    w = server.etcdctl_bg("watch", "w", "--prefix", "--prev-kv", "--rev=2")
    server.ok("put", "w1", "a")
    server.ok("put", "w1", "b")
    server.ok("put", "w2", "c")
    server.ok("del", "w1")
    server.ok("del", "w", "--prefix")
    assert w.read_lines(3 + 5 + 3 + 5 + 5) == [
        "PUT", "w1", "a",
        "PUT", "w1", "a", "w1", "b",
        "PUT", "w2", "c",
        "DELETE", "w1", "b", "w1", "",
        "DELETE", "w2", "c", "w2", "",
    ]


def test_watch_prev_kv_json(server):
    server.ok("put", "w1", "a")    # 2
    server.ok("put", "w1", "b")    # 3
    server.ok("del", "w1")         # 4
    w = server.etcdctl_bg("watch", "w1", "--prev-kv", "--rev=2", "-w", "json")
    assert jlines(w.read_line()) == [wresp(4, [
        put_ev("w1", "a", 2, 2, 1),
        put_ev("w1", "b", 2, 3, 2, prev=kvd("w1", "a", 2, 2, 1)),
        del_ev("w1", 4, prev=kvd("w1", "b", 2, 3, 2)),
    ])]


def test_watch_json_live_events(server):
    w = server.etcdctl_bg("watch", "w", "--prefix", "-w", "json", "--rev=2")
    server.ok("put", "w1", "a")
    assert jlines(w.read_line()) == [wresp(2, [put_ev("w1", "a", 2, 2, 1)])]
    server.ok("put", "w1", "b")
    assert jlines(w.read_line()) == [wresp(3, [put_ev("w1", "b", 2, 3, 2)])]
    # one txn = one response with all its events
    server.ok("txn", input="\nput w2 x\nput w3 y\ndel w1\n\n\n")
    assert jlines(w.read_line()) == [wresp(4, [
        put_ev("w2", "x", 4, 4, 1), put_ev("w3", "y", 4, 4, 1), del_ev("w1", 4)])]
    server.ok("del", "w", "--prefix")
    assert jlines(w.read_line()) == [wresp(5, [del_ev("w2", 5), del_ev("w3", 5)])]


def test_watch_range_end(server):
    w = server.etcdctl_bg("watch", "b", "d", "--rev=2")
    for k in ["a", "b", "c", "d", "bz"]:
        server.ok("put", k, k.upper())
    assert w.read_lines(9) == ["PUT", "b", "B", "PUT", "c", "C", "PUT", "bz", "BZ"]
    assert w.no_more_output(0.3)


def test_watch_interactive(server):
    server.ok("put", "a", "1")     # 2
    server.ok("put", "a", "2")     # 3
    w = server.etcdctl_bg("watch", "-i", stdin=True)
    w.send("watch a --rev=3\n")
    assert w.read_lines(3) == ["PUT", "a", "2"]
    w.send("watch b --prev-kv --rev=2\n")
    server.ok("put", "b", "x")     # 4
    assert w.read_lines(3) == ["PUT", "b", "x"]
    server.ok("put", "a", "3")     # 5
    assert w.read_lines(3) == ["PUT", "a", "3"]
    server.ok("put", "b", "y")     # 6
    assert w.read_lines(5) == ["PUT", "b", "x", "b", "y"]
    # progress request: all watchers are synced, so a notification with the
    # current revision comes back (etcdctl prints it once per watcher)
    w.send("progress\n")
    assert w.read_lines(2) == ["progress notify: 6", "progress notify: 6"]
    w.close_stdin()
    rc, rest, err = w.wait()
    assert (rc, rest, strip_logs(err)) == (3, [], "Error: Error reading watch request line: EOF\n")


def test_watch_compacted_revision(server):
    server.ok("put", "a", "1")
    server.ok("put", "a", "2")
    server.ok("put", "a", "3")
    assert server.etcdctl("compaction", "3") == (0, "compacted revision 3\n", "")
    rc, out, err = server.etcdctl("watch", "a", "--rev=2", timeout=15)
    assert (rc, out, strip_logs(err)) == (
        5, "", "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
               "Error: watch is canceled by the server\n")
    rc, out, err = server.etcdctl("watch", "a", "--rev=2", "-w", "json", timeout=15)
    assert rc == 5
    # the cancel response carries the compact revision; its header has no revision
    assert jlines(out) == [wresp(0, [], compact=3, canceled=True)]
    # watching from the compaction revision itself is fine
    w = server.etcdctl_bg("watch", "a", "--rev=3")
    assert w.read_lines(6) == ["PUT", "a", "2", "PUT", "a", "3"]


def test_watch_exec_command_env(server):
    server.ok("put", "a", "1")     # 2
    server.ok("put", "a", "2")     # 3
    w = server.etcdctl_bg("watch", "a", "--rev=2", "--", "sh", "-c",
                          'echo "$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_REVISION $ETCD_WATCH_VALUE"')
    # the revision given to the command is the response header's (current)
    # revision, the same for all events of one response
    lines = w.read_lines(8)
    # (the command's output interleaves with etcdctl's at its own pace)
    assert [l for l in lines if not l.startswith('"')] == ["PUT", "a", "1", "PUT", "a", "2"]
    assert [l for l in lines if l.startswith('"')] == ['"PUT" "a" 3 "1"', '"PUT" "a" 3 "2"']
