"""etcdctl lease *: expected output taken from a real etcd 3.4.23.

Lease ids are the server's choice and are normalised to <lease1>, <lease2>...
(in JSON) or matched by a 16-hex-digit pattern (in text output)."""

import re

from compat_util import b64, error_of, jl, strip_logs, wait_until

HDR = {"cluster_id": "<cluster_id>", "member_id": "<member_id>", "raft_term": "<raft_term>"}

GRANTED = re.compile(r"^lease ([0-9a-f]{16}) granted with TTL\((\d+)s\)\n$")


def grant(server, ttl):
    rc, out, err = server.etcdctl("lease", "grant", str(ttl))
    assert (rc, err) == (0, ""), (rc, out, err)
    m = GRANTED.match(out)
    assert m, out
    return m.group(1), int(m.group(2))


def test_lease_grant_text_and_json(server):
    lid, ttl = grant(server, 100)
    assert ttl == 100
    assert int(lid, 16) > 0
    ids = {}
    # fields of a LeaseGrantResponse printed flat; Error is always ""
    d = jl(server.ok("lease", "grant", "60", "-w", "json"), ids)
    assert d == {**HDR, "revision": 1, "ID": "<lease1>", "TTL": 60, "Error": ""}
    # granting a lease does not create a revision
    assert jl(server.ok("get", "x", "-w", "json")) == {"header": dict(HDR, revision=1)}


def test_lease_ids_are_unique(server):
    ids = {grant(server, 30)[0] for _ in range(5)}
    assert len(ids) == 5


def test_lease_grant_minimum_ttl(server):
    # TTLs below the minimum (ceil(1.5 * election timeout) = 2s with the
    # defaults) are raised to it
    for ttl in ("0", "1", "-5"):
        rc, out, err = server.etcdctl("lease", "grant", "--", ttl)
        assert (rc, err) == (0, "")
        m = GRANTED.match(out)
        assert m and m.group(2) == "2", (ttl, out)
    assert grant(server, 3)[1] == 3


def test_lease_grant_too_large(server):
    rc, out, err = server.etcdctl("lease", "grant", "9000000001")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: failed to grant lease (etcdserver: too large lease TTL)\n")
    assert error_of(err) == "rpc error: code = OutOfRange desc = etcdserver: too large lease TTL"
    assert grant(server, 9000000000)[1] == 9000000000


def test_lease_timetolive_and_keys(server):
    lid, _ = grant(server, 60)
    assert server.etcdctl("put", f"--lease={lid}", "lk1", "v") == (0, "OK\n", "")
    assert server.etcdctl("put", f"--lease={lid}", "lk2", "v") == (0, "OK\n", "")
    rc, out, err = server.etcdctl("lease", "timetolive", lid)
    assert (rc, err) == (0, "")
    m = re.match(rf"^lease {lid} granted with TTL\(60s\), remaining\((\d+)s\)\n$", out)
    assert m and 55 <= int(m.group(1)) <= 59, out
    rc, out, err = server.etcdctl("lease", "timetolive", lid, "--keys")
    m = re.match(rf"^lease {lid} granted with TTL\(60s\), remaining\((\d+)s\), attached keys\(\[(lk1 lk2|lk2 lk1)\]\)\n$", out)
    assert m and 55 <= int(m.group(1)) <= 59, out
    ids = {}
    d = jl(server.ok("lease", "timetolive", lid, "--keys", "-w", "json"), ids)
    assert 55 <= d.pop("ttl") <= 59
    # etcd keeps a lease's keys in a Go map: their order is not defined
    d["keys"] = sorted(d["keys"])
    assert d == {**HDR, "revision": 3, "id": "<lease1>", "granted-ttl": 60, "keys": [b64("lk1"), b64("lk2")]}
    assert ids == {int(lid, 16): "<lease1>"}
    # without --keys the keys are not returned
    d = jl(server.ok("lease", "timetolive", lid, "-w", "json"), ids)
    assert 55 <= d.pop("ttl") <= 59
    assert d == {**HDR, "revision": 3, "id": "<lease1>", "granted-ttl": 60, "keys": None}
    # the KV carries the lease id
    d = jl(server.ok("get", "lk1", "-w", "json"))
    assert d["kvs"][0]["lease"] == int(lid, 16)
    # the remaining TTL is truncated to whole seconds: right after a grant
    # of N it is N-1
    lid2, _ = grant(server, 50)
    d = jl(server.ok("lease", "timetolive", lid2, "-w", "json"))
    assert d["ttl"] in (48, 49) and d["granted-ttl"] == 50


def test_lease_timetolive_unknown(server):
    # ids are printed as %016x
    assert server.etcdctl("lease", "timetolive", "1234") == (0, "lease 0000000000001234 already expired\n", "")
    assert server.etcdctl("lease", "timetolive", "7bcdef0123456789") == (
        0, "lease 7bcdef0123456789 already expired\n", "")
    d = jl(server.ok("lease", "timetolive", "1234", "--keys", "-w", "json"))
    assert d == {**HDR, "revision": 1, "id": 4660, "ttl": -1, "granted-ttl": 0, "keys": None}


def test_lease_list(server):
    assert server.etcdctl("lease", "list") == (0, "found 0 leases\n", "")
    a, _ = grant(server, 100)
    b, _ = grant(server, 60)
    rc, out, err = server.etcdctl("lease", "list")
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    # order is not defined (etcd walks a Go map)
    assert lines[0] == "found 2 leases" and sorted(lines[1:]) == sorted([a, b])
    d = jl(server.ok("lease", "list", "-w", "json"))
    assert sorted(l["id"] for l in d.pop("leases")) == sorted([int(a, 16), int(b, 16)])
    assert d == {**HDR, "revision": 1}
    server.ok("lease", "revoke", a)
    assert server.etcdctl("lease", "list") == (0, f"found 1 leases\n{b}\n", "")


def test_lease_keep_alive_once(server):
    lid, _ = grant(server, 60)
    assert server.etcdctl("lease", "keep-alive", "--once", lid) == (
        0, f"lease {lid} keepalived with TTL(60)\n", "")
    ids = {}
    assert jl(server.ok("lease", "keep-alive", "--once", lid, "-w", "json"), ids) == {
        **HDR, "revision": 1, "ID": "<lease1>", "TTL": 60}
    # the keep-alive refreshed the TTL
    d = jl(server.ok("lease", "timetolive", lid, "-w", "json"))
    assert d["ttl"] in (58, 59)


def test_lease_keep_alive_unknown(server):
    rc, out, err = server.etcdctl("lease", "keep-alive", "--once", "1234")
    assert (rc, out, strip_logs(err)) == (2, "", "Error: etcdserver: requested lease not found\n")
    assert error_of(err) is None  # a stream error: no unary retry log
    # without --once: the keep-alive channel closes at once
    assert server.etcdctl("lease", "keep-alive", "1234") == (0, "lease 0000000000001234 expired or revoked.\n", "")


def test_lease_keep_alive_stream(server):
    lid, _ = grant(server, 3)
    w = server.etcdctl_bg("lease", "keep-alive", lid)
    # the client sends a keep-alive every TTL/3 seconds
    assert w.read_lines(2, timeout=10) == [f"lease {lid} keepalived with TTL(3)"] * 2
    server.ok("lease", "revoke", lid)
    assert w.read_line(timeout=10) == f"lease {lid} expired or revoked."
    rc, rest, err = w.wait()
    assert (rc, rest, strip_logs(err)) == (0, [], "")


def test_lease_revoke(server):
    lid, _ = grant(server, 60)
    server.ok("put", f"--lease={lid}", "lk1", "v")   # rev 2
    server.ok("put", f"--lease={lid}", "lk2", "v")   # rev 3
    server.ok("put", "plain", "v")                   # rev 4
    assert server.etcdctl("lease", "revoke", lid) == (0, f"lease {lid} revoked\n", "")
    # the attached keys were deleted in one revision
    assert server.etcdctl("get", "", "--prefix") == (0, "plain\nv\n", "")
    assert jl(server.ok("get", "x", "-w", "json")) == {"header": dict(HDR, revision=5)}
    assert server.etcdctl("lease", "timetolive", lid) == (0, f"lease {lid} already expired\n", "")
    # revoking an unknown (or already revoked) lease
    rc, out, err = server.etcdctl("lease", "revoke", lid)
    assert (rc, out, strip_logs(err)) == (1, "", "Error: failed to revoke lease (etcdserver: requested lease not found)\n")
    assert error_of(err) == "rpc error: code = NotFound desc = etcdserver: requested lease not found"
    rc, out, err = server.etcdctl("lease", "revoke", "1234")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: failed to revoke lease (etcdserver: requested lease not found)\n")


def test_lease_revoke_json_and_empty_lease(server):
    lid, _ = grant(server, 60)
    # revoking a lease without keys does not create a revision
    assert jl(server.ok("lease", "revoke", lid, "-w", "json")) == {"header": dict(HDR, revision=1)}
    lid, _ = grant(server, 60)
    server.ok("put", f"--lease={lid}", "k", "v")
    assert jl(server.ok("lease", "revoke", lid, "-w", "json")) == {"header": dict(HDR, revision=3)}


def test_lease_revoke_deletes_keys_seen_by_watch(server):
    lid, _ = grant(server, 60)
    server.ok("put", f"--lease={lid}", "a", "1")   # 2
    server.ok("put", f"--lease={lid}", "b", "2")   # 3
    server.ok("lease", "revoke", lid)              # 4
    w = server.etcdctl_bg("watch", "", "--prefix", "--rev=2", "-w", "json")
    from compat_util import jlines
    # the keys of a revoked lease are deleted in key order, in one revision
    assert jlines(w.read_line()) == [{
        "Header": dict(HDR, revision=4),
        "Events": [
            {"kv": {"key": b64("a"), "create_revision": 2, "mod_revision": 2, "version": 1,
                    "value": b64("1"), "lease": int(lid, 16)}},
            {"kv": {"key": b64("b"), "create_revision": 3, "mod_revision": 3, "version": 1,
                    "value": b64("2"), "lease": int(lid, 16)}},
            {"type": 1, "kv": {"key": b64("a"), "mod_revision": 4}},
            {"type": 1, "kv": {"key": b64("b"), "mod_revision": 4}},
        ],
        "CompactRevision": 0, "Canceled": False, "Created": False}]


def test_lease_expiry_deletes_keys(server):
    lid, ttl = grant(server, 2)
    server.ok("put", f"--lease={lid}", "ek", "v")
    server.ok("put", "keep", "v")
    assert server.etcdctl("get", "ek") == (0, "ek\nv\n", "")
    wait_until(lambda: server.etcdctl("get", "ek") == (0, "", ""), timeout=10, what="lease expiry")
    assert server.etcdctl("get", "keep") == (0, "keep\nv\n", "")
    d = jl(server.ok("lease", "timetolive", lid, "--keys", "-w", "json"))
    assert (d["ttl"], d["granted-ttl"], d["keys"]) == (-1, 0, None)
    # expiry is a revoke: one deletion revision
    assert jl(server.ok("get", "x", "-w", "json"))["header"]["revision"] == 4
    rc, out, err = server.etcdctl("put", f"--lease={lid}", "ek", "again")
    assert (rc, strip_logs(err)) == (1, "Error: etcdserver: requested lease not found\n")


def test_put_moves_key_between_leases(server):
    a, _ = grant(server, 60)
    b, _ = grant(server, 60)
    server.ok("put", f"--lease={a}", "k", "1")
    server.ok("put", f"--lease={b}", "k", "2")
    assert re.search(r"attached keys\(\[\]\)", server.ok("lease", "timetolive", a, "--keys"))
    assert re.search(r"attached keys\(\[k\]\)", server.ok("lease", "timetolive", b, "--keys"))
    # a put without --lease detaches the key
    server.ok("put", "k", "3")
    assert re.search(r"attached keys\(\[\]\)", server.ok("lease", "timetolive", b, "--keys"))
    server.ok("lease", "revoke", b)
    assert server.etcdctl("get", "k") == (0, "k\n3\n", "")
    # --ignore-lease keeps the current lease
    server.ok("put", f"--lease={a}", "k", "4")
    server.ok("put", "k", "5", "--ignore-lease")
    assert jl(server.ok("get", "k", "-w", "json"))["kvs"][0]["lease"] == int(a, 16)
    server.ok("lease", "revoke", a)
    assert server.etcdctl("get", "k") == (0, "", "")
