"""etcdctl (v3) against the server: put / get / del / txn.

Every expected value below was taken from a real etcd (3.4.23 server and
etcdctl); ids, raft terms and timestamps are normalised by compat_util.
A fresh server starts at revision 1, so the first write is revision 2.
"""

from compat_util import b64, client_logs, error_of, jl, strip_logs

HDR = {"cluster_id": "<cluster_id>", "member_id": "<member_id>", "raft_term": "<raft_term>"}


def hdr(rev):
    return dict(HDR, revision=rev)


def kv(key, value, create, mod, version, lease=None):
    d = {"key": b64(key), "create_revision": create, "mod_revision": mod, "version": version}
    if lease is not None:
        d["lease"] = lease
    if value != "":
        d["value"] = b64(value)
    return d


def fill(server, pairs):
    for k, v in pairs:
        server.ok("put", k, v)


ABCD = [("k/a", "va"), ("k/b", "vb"), ("k/c", "vc"), ("k/d", "vd"), ("k0", "x"), ("l", "y")]


# --------------------------------------------------------------------------- put


def test_put_and_get(server):
    assert server.etcdctl("put", "foo", "bar") == (0, "OK\n", "")
    assert server.etcdctl("get", "foo") == (0, "foo\nbar\n", "")
    # a missing key prints nothing and still succeeds
    assert server.etcdctl("get", "nope") == (0, "", "")


def test_get_json_fresh_server_revisions(server):
    # a fresh server is at revision 1; the first put makes revision 2
    assert jl(server.ok("get", "x", "-w", "json")) == {"header": hdr(1)}
    server.ok("put", "foo", "bar")
    assert jl(server.ok("get", "foo", "-w", "json")) == {
        "header": hdr(2), "kvs": [kv("foo", "bar", 2, 2, 1)], "count": 1}
    server.ok("put", "foo", "baz")
    assert jl(server.ok("get", "foo", "-w", "json")) == {
        "header": hdr(3), "kvs": [kv("foo", "baz", 2, 3, 2)], "count": 1}


def test_put_prev_kv(server):
    assert server.etcdctl("put", "a", "1") == (0, "OK\n", "")
    assert server.etcdctl("put", "a", "2", "--prev-kv") == (0, "OK\na\n1\n", "")
    assert jl(server.ok("put", "a", "3", "--prev-kv", "-w", "json")) == {
        "header": hdr(4), "prev_kv": kv("a", "2", 2, 3, 2)}
    # --prev-kv on a new key: no prev_kv at all
    assert server.etcdctl("put", "new", "v", "--prev-kv") == (0, "OK\n", "")
    assert jl(server.ok("put", "new2", "v", "--prev-kv", "-w", "json")) == {"header": hdr(6)}


def test_put_json_and_fields(server):
    assert jl(server.ok("put", "a", "1", "-w", "json")) == {"header": hdr(2)}
    out = server.ok("put", "a", "2", "-w", "fields")
    lines = out.splitlines()
    assert [l.split(" : ")[0] for l in lines] == ['"ClusterID"', '"MemberID"', '"Revision"', '"RaftTerm"']
    assert lines[2] == '"Revision" : 3'


def test_put_value_from_stdin_and_odd_keys(server):
    assert server.etcdctl("put", "c", input="from stdin") == (0, "OK\n", "")
    assert server.etcdctl("get", "c") == (0, "c\nfrom stdin\n", "")
    assert server.etcdctl("put", "--", "-dash", "val") == (0, "OK\n", "")
    assert server.etcdctl("get", "--", "-dash") == (0, "-dash\nval\n", "")
    assert server.etcdctl("put", "sp ace", "v with space") == (0, "OK\n", "")
    assert jl(server.ok("get", "sp ace", "-w", "json"))["kvs"] == [kv("sp ace", "v with space", 4, 4, 1)]
    # empty value is allowed
    assert server.etcdctl("put", "empty", "") == (0, "OK\n", "")
    assert server.etcdctl("get", "empty") == (0, "empty\n\n", "")
    assert jl(server.ok("get", "empty", "-w", "json"))["kvs"] == [kv("empty", "", 5, 5, 1)]
    # --hex output
    assert server.etcdctl("get", "--hex", "c") == (0, "\\x63\n" + "".join("\\x%02x" % b for b in b"from stdin") + "\n", "")


def test_put_empty_key_is_rejected(server):
    rc, out, err = server.etcdctl("put", "", "x")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: key is not provided\n")
    assert error_of(err) == "rpc error: code = InvalidArgument desc = etcdserver: key is not provided"
    assert client_logs(err) == [("warn", "retrying of unary invoker failed",
                                 "rpc error: code = InvalidArgument desc = etcdserver: key is not provided")]
    # nothing was written
    assert jl(server.ok("get", "", "--from-key", "-w", "json")) == {"header": hdr(1)}


def test_put_ignore_value_and_ignore_lease(server):
    server.ok("put", "a", "1")
    # --ignore-value keeps the value (and prev_kv shows it)
    assert server.etcdctl("put", "a", "--ignore-value", "--prev-kv") == (0, "OK\na\n1\n", "")
    assert jl(server.ok("get", "a", "-w", "json"))["kvs"] == [kv("a", "1", 2, 3, 2)]
    # ...but the key must exist
    rc, out, err = server.etcdctl("put", "b", "--ignore-value")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: key not found\n")
    assert error_of(err) == "rpc error: code = InvalidArgument desc = etcdserver: key not found"
    rc, out, err = server.etcdctl("put", "b", "v", "--ignore-lease")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: key not found\n")
    assert error_of(err) == "rpc error: code = InvalidArgument desc = etcdserver: key not found"
    # --ignore-lease on an existing key without lease is fine
    assert server.etcdctl("put", "a", "2", "--ignore-lease") == (0, "OK\n", "")
    assert server.etcdctl("get", "a") == (0, "a\n2\n", "")


def test_put_with_unknown_lease(server):
    rc, out, err = server.etcdctl("put", "--lease=1234", "x", "y")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: requested lease not found\n")
    assert error_of(err) == "rpc error: code = NotFound desc = etcdserver: requested lease not found"


# --------------------------------------------------------------------------- get


def test_get_prefix_range_from_key(server):
    fill(server, ABCD)
    assert server.etcdctl("get", "k/", "--prefix") == (0, "k/a\nva\nk/b\nvb\nk/c\nvc\nk/d\nvd\n", "")
    # [k/a, k/c)
    assert server.etcdctl("get", "k/a", "k/c") == (0, "k/a\nva\nk/b\nvb\n", "")
    assert server.etcdctl("get", "k/b", "--from-key") == (0, "k/b\nvb\nk/c\nvc\nk/d\nvd\nk0\nx\nl\ny\n", "")
    # all keys
    assert server.etcdctl("get", "", "--prefix", "--keys-only") == (0, "k/a\n\nk/b\n\nk/c\n\nk/d\n\nk0\n\nl\n\n", "")
    assert server.etcdctl("get", "", "--from-key", "--print-value-only") == (0, "va\nvb\nvc\nvd\nx\ny\n", "")
    # empty ranges
    assert server.etcdctl("get", "k/c", "k/a") == (0, "", "")
    assert server.etcdctl("get", "zz", "--prefix") == (0, "", "")


def test_get_limit(server):
    fill(server, ABCD)
    assert server.etcdctl("get", "k/", "--prefix", "--limit", "2") == (0, "k/a\nva\nk/b\nvb\n", "")
    assert jl(server.ok("get", "k/", "--prefix", "--limit=2", "-w", "json")) == {
        "header": hdr(7),
        "kvs": [kv("k/a", "va", 2, 2, 1), kv("k/b", "vb", 3, 3, 1)],
        "more": True, "count": 4}
    # limit equal to the number of keys: more is false (omitted)
    assert jl(server.ok("get", "k/", "--prefix", "--limit=4", "-w", "json")) == {
        "header": hdr(7),
        "kvs": [kv("k/a", "va", 2, 2, 1), kv("k/b", "vb", 3, 3, 1), kv("k/c", "vc", 4, 4, 1),
                kv("k/d", "vd", 5, 5, 1)],
        "count": 4}


def test_get_sort_and_order(server):
    fill(server, [("s/b", "3"), ("s/a", "2"), ("s/c", "1")])
    server.ok("put", "s/a", "4")  # s/a: version 2, mod 5
    P = ("get", "s/", "--prefix", "--keys-only")

    def keys(*extra):
        rc, out, err = server.etcdctl(*P, *extra)
        assert (rc, err) == (0, "")
        return [l for l in out.splitlines() if l]

    assert keys() == ["s/a", "s/b", "s/c"]
    assert keys("--order=DESCEND") == ["s/c", "s/b", "s/a"]
    assert keys("--order=ASCEND") == ["s/a", "s/b", "s/c"]
    assert keys("--sort-by=KEY") == ["s/a", "s/b", "s/c"]
    assert keys("--sort-by=KEY", "--order=DESCEND") == ["s/c", "s/b", "s/a"]
    assert keys("--sort-by=VALUE") == ["s/c", "s/b", "s/a"]
    assert keys("--sort-by=VALUE", "--order=DESCEND") == ["s/a", "s/b", "s/c"]
    assert keys("--sort-by=CREATE") == ["s/b", "s/a", "s/c"]
    assert keys("--sort-by=CREATE", "--order=DESCEND") == ["s/c", "s/a", "s/b"]
    assert keys("--sort-by=MODIFY") == ["s/b", "s/c", "s/a"]
    assert keys("--sort-by=MODIFY", "--order=DESCEND") == ["s/a", "s/c", "s/b"]
    assert keys("--sort-by=VERSION", "--order=DESCEND")[0] == "s/a"
    # sort is applied before the limit
    assert keys("--sort-by=MODIFY", "--order=DESCEND", "--limit=1") == ["s/a"]
    assert keys("--sort-by=VALUE", "--limit=2") == ["s/c", "s/b"]
    rc, out, _ = server.etcdctl("get", "s/", "--prefix", "--sort-by=VALUE", "--order=DESCEND")
    assert (rc, out) == (0, "s/a\n4\ns/b\n3\ns/c\n1\n")
    assert jl(server.ok("get", "s/", "--prefix", "--sort-by=MODIFY", "--order=DESCEND",
                        "--limit=1", "-w", "json")) == {
        "header": hdr(5), "kvs": [kv("s/a", "4", 3, 5, 2)], "more": True, "count": 3}


def test_get_rev(server):
    server.ok("put", "a", "1")  # rev 2
    server.ok("put", "a", "2")  # rev 3
    server.ok("put", "b", "x")  # rev 4
    server.ok("del", "a")       # rev 5
    assert server.etcdctl("get", "a", "--rev=2") == (0, "a\n1\n", "")
    assert server.etcdctl("get", "a", "--rev=3") == (0, "a\n2\n", "")
    assert server.etcdctl("get", "a", "--rev=5") == (0, "", "")
    assert server.etcdctl("get", "a") == (0, "", "")
    assert server.etcdctl("get", "a", "--rev=1") == (0, "", "")
    assert server.etcdctl("get", "", "--prefix", "--rev=4") == (0, "a\n2\nb\nx\n", "")
    # the header revision is the current one, not the requested one
    assert jl(server.ok("get", "a", "--rev=2", "-w", "json")) == {
        "header": hdr(5), "kvs": [kv("a", "1", 2, 2, 1)], "count": 1}


def test_get_future_rev_is_an_error(server):
    server.ok("put", "a", "1")
    rc, out, err = server.etcdctl("get", "a", "--rev=100")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: mvcc: required revision is a future revision\n")
    assert error_of(err) == "rpc error: code = OutOfRange desc = etcdserver: mvcc: required revision is a future revision"
    # the current revision itself is fine, current+1 is not
    assert server.etcdctl("get", "a", "--rev=2") == (0, "a\n1\n", "")
    rc, out, err = server.etcdctl("get", "a", "--rev=3")
    assert rc == 1 and "future revision" in err


def test_get_output_formats(server):
    fill(server, ABCD)
    assert server.etcdctl("get", "k/a", "--consistency=s") == (0, "k/a\nva\n", "")
    assert jl(server.ok("get", "k/", "--prefix", "--consistency=s", "-w", "json"))["count"] == 4
    out = server.ok("get", "k/a", "-w", "fields")
    lines = [l for l in out.splitlines()]
    assert lines[0].startswith('"ClusterID" : ') and lines[1].startswith('"MemberID" : ')
    assert lines[3].startswith('"RaftTerm" : ')
    assert lines[2] == '"Revision" : 7'
    assert lines[4:] == ['"Key" : "k/a"', '"CreateRevision" : 2', '"ModRevision" : 2', '"Version" : 1',
                         '"Value" : "va"', '"Lease" : 0', '"More" : false', '"Count" : 1']
    out = server.ok("get", "zzz", "-w", "fields").splitlines()
    assert out[2:] == ['"Revision" : 7', out[3], '"More" : false', '"Count" : 0']
    assert jl(server.ok("get", "zzz", "-w", "json")) == {"header": hdr(7)}
    # table is not supported for get (client side, exit code 4)
    rc, out, err = server.etcdctl("get", "k/a", "-w", "table")
    assert (rc, out, err) == (4, "", "Error: table not supported as output format\n")


def test_get_protobuf_output(server):
    from etcd3.etcdrpc import rpc_pb2
    fill(server, ABCD)
    rc, out, err = server.etcdctl_raw("get", "k/", "--prefix", "--limit=3", "-w", "protobuf")
    assert (rc, err) == (0, "")
    resp = rpc_pb2.RangeResponse()
    resp.ParseFromString(out)
    assert resp.header.revision == 7 and resp.header.cluster_id != 0 and resp.header.member_id != 0
    assert resp.header.raft_term >= 1
    assert [(k.key, k.value, k.create_revision, k.mod_revision, k.version) for k in resp.kvs] == [
        (b"k/a", b"va", 2, 2, 1), (b"k/b", b"vb", 3, 3, 1), (b"k/c", b"vc", 4, 4, 1)]
    assert resp.more is True and resp.count == 4


def test_get_keys_only_json_has_no_values(server):
    fill(server, ABCD)
    assert jl(server.ok("get", "k/a", "k/c", "--keys-only", "-w", "json")) == {
        "header": hdr(7), "kvs": [kv("k/a", "", 2, 2, 1), kv("k/b", "", 3, 3, 1)], "count": 2}


# --------------------------------------------------------------------------- del


def test_del(server):
    fill(server, ABCD)
    assert server.etcdctl("del", "k/a") == (0, "1\n", "")
    assert server.etcdctl("del", "k/a") == (0, "0\n", "")
    assert server.etcdctl("del", "nothing") == (0, "0\n", "")
    # a delete of nothing does not create a revision
    assert jl(server.ok("del", "nothing", "-w", "json")) == {"header": hdr(8)}
    assert server.etcdctl("del", "k/", "--prefix") == (0, "3\n", "")
    assert jl(server.ok("get", "", "--prefix", "-w", "json"))["header"] == hdr(9)
    assert server.etcdctl("get", "", "--prefix") == (0, "k0\nx\nl\ny\n", "")


def test_del_prev_kv(server):
    fill(server, ABCD)
    assert server.etcdctl("del", "k/a", "--prev-kv") == (0, "1\nk/a\nva\n", "")
    assert server.etcdctl("del", "k/", "--prefix", "--prev-kv") == (0, "3\nk/b\nvb\nk/c\nvc\nk/d\nvd\n", "")
    assert jl(server.ok("del", "k0", "--prev-kv", "-w", "json")) == {
        "header": hdr(10), "deleted": 1, "prev_kvs": [kv("k0", "x", 6, 6, 1)]}


def test_del_from_key_and_range(server):
    fill(server, ABCD)
    assert server.etcdctl("del", "k/b", "k/d") == (0, "2\n", "")
    assert jl(server.ok("del", "k0", "--from-key", "-w", "json")) == {"header": hdr(9), "deleted": 2}
    assert server.etcdctl("get", "", "--prefix", "--keys-only") == (0, "k/a\n\nk/d\n\n", "")
    # recreated keys start a new lifetime (create_revision, version 1)
    server.ok("put", "k/b", "again")
    assert jl(server.ok("get", "k/b", "-w", "json"))["kvs"] == [kv("k/b", "again", 10, 10, 1)]
    # --from-key with the empty key deletes everything
    assert server.etcdctl("del", "", "--from-key") == (0, "3\n", "")
    assert server.etcdctl("get", "", "--prefix") == (0, "", "")


# --------------------------------------------------------------------------- txn


def test_txn_success_branch(server):
    server.ok("put", "t1", "v1")
    txn = 'value("t1") = "v1"\n\nput t2 yes\nget t1\n\nput t2 no\n\n'
    assert server.etcdctl("txn", input=txn) == (0, "SUCCESS\n\nOK\n\nt1\nv1\n", "")
    assert server.etcdctl("get", "t2") == (0, "t2\nyes\n", "")


def test_txn_failure_branch(server):
    server.ok("put", "t1", "v1")
    txn = 'value("t1") = "zz"\n\nput t2 yes\n\nput t2 no\nget t1\n\n'
    assert server.etcdctl("txn", input=txn) == (0, "FAILURE\n\nOK\n\nt1\nv1\n", "")
    assert server.etcdctl("get", "t2") == (0, "t2\nno\n", "")


def test_txn_json(server):
    server.ok("put", "t1", "v1")  # rev 2
    server.ok("put", "t2", "x")   # rev 3
    txn = 'value("t1") = "zz"\n\nput t2 yes\n\nput t2 no\nget t2\n\n'
    # sub-response headers carry only the revision
    assert jl(server.ok("txn", "-w", "json", input=txn)) == {
        "header": hdr(4),
        "responses": [
            {"Response": {"ResponsePut": {"header": {"revision": 4}}}},
            {"Response": {"ResponseRange": {"header": {"revision": 4},
                                            "kvs": [kv("t2", "no", 3, 4, 2)], "count": 1}}},
        ]}
    txn = 'value("t1") = "v1"\n\ndel t2\nput t3 z\n\n\n'
    assert jl(server.ok("txn", "-w", "json", input=txn)) == {
        "header": hdr(5), "succeeded": True,
        "responses": [
            {"Response": {"ResponseDeleteRange": {"header": {"revision": 5}, "deleted": 1}}},
            {"Response": {"ResponsePut": {"header": {"revision": 5}}}},
        ]}
    # one txn is one revision, however many writes it holds
    # a read-only txn does not bump the revision
    txn = 'version("t3") = "1"\n\nget t3\n\n\n'
    assert jl(server.ok("txn", "-w", "json", input=txn)) == {
        "header": hdr(5), "succeeded": True,
        "responses": [{"Response": {"ResponseRange": {"header": {"revision": 5},
                                                      "kvs": [kv("t3", "z", 5, 5, 1)], "count": 1}}}]}


def test_txn_compare_targets(server):
    server.ok("put", "c", "v")   # rev 2
    server.ok("put", "c", "w")   # rev 3, version 2, create 2
    cases = [
        ('mod("c") = "3"', "SUCCESS"),
        ('mod("c") > "3"', "FAILURE"),
        ('mod("c") < "4"', "SUCCESS"),
        ('create("c") = "2"', "SUCCESS"),
        ('create("c") > "2"', "FAILURE"),
        ('version("c") = "2"', "SUCCESS"),
        ('version("c") < "2"', "FAILURE"),
        ('value("c") > "v"', "SUCCESS"),
        ('value("c") < "w"', "FAILURE"),
        ('value("c") != "w"', "FAILURE"),
        # a missing key has version/create/mod 0 and compares against them
        ('version("missing") = "0"', "SUCCESS"),
        ('create("missing") = "0"', "SUCCESS"),
        ('mod("missing") < "1"', "SUCCESS"),
        # a value compare on a missing key fails
        ('value("missing") = ""', "FAILURE"),
        ('value("missing") != "x"', "FAILURE"),
    ]
    for cmp, want in cases:
        assert server.etcdctl("txn", input=cmp + "\n\n\n\n") == (0, want + "\n", ""), cmp
    # several compares are ANDed
    assert server.etcdctl("txn", input='mod("c") = "3"\nversion("c") = "1"\n\n\n\n') == (0, "FAILURE\n", "")
    assert server.etcdctl("txn", input='mod("c") = "3"\nversion("c") = "2"\n\n\n\n') == (0, "SUCCESS\n", "")
    # none of these wrote anything
    assert jl(server.ok("get", "c", "-w", "json"))["header"] == hdr(3)


def test_txn_compare_on_range(server):
    fill(server, [("r/a", "1"), ("r/b", "2")])
    # etcdctl has no syntax for a range compare; use the gRPC API via python etcd3 stubs
    from etcd3.etcdrpc import rpc_pb2
    c = server.client()
    cmp = rpc_pb2.Compare(result=rpc_pb2.Compare.GREATER, target=rpc_pb2.Compare.VERSION,
                          key=b"r/", range_end=b"r0", version=0)
    resp = c.kvstub.Txn(rpc_pb2.TxnRequest(compare=[cmp]), timeout=5)
    assert resp.succeeded is True
    cmp = rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.VALUE,
                          key=b"r/", range_end=b"r0", value=b"1")
    resp = c.kvstub.Txn(rpc_pb2.TxnRequest(compare=[cmp]), timeout=5)
    assert resp.succeeded is False
    # every key in the range must satisfy the compare
    cmp = rpc_pb2.Compare(result=rpc_pb2.Compare.LESS, target=rpc_pb2.Compare.VALUE,
                          key=b"r/", range_end=b"r0", value=b"3")
    assert c.kvstub.Txn(rpc_pb2.TxnRequest(compare=[cmp]), timeout=5).succeeded is True
    # an empty range: a VALUE compare is false, the others compare against a
    # zero KeyValue (version/create/mod 0)
    cmp = rpc_pb2.Compare(result=rpc_pb2.Compare.NOT_EQUAL, target=rpc_pb2.Compare.VALUE,
                          key=b"x/", range_end=b"x0", value=b"nothing")
    assert c.kvstub.Txn(rpc_pb2.TxnRequest(compare=[cmp]), timeout=5).succeeded is False
    cmp = rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.VERSION,
                          key=b"x/", range_end=b"x0", version=0)
    assert c.kvstub.Txn(rpc_pb2.TxnRequest(compare=[cmp]), timeout=5).succeeded is True
    # lease compare (etcdctl 3.4 crashes on lease("k") syntax, so gRPC only)
    lease = c.lease(60)
    c.put("r/l", "x", lease=lease)
    cmp = rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.LEASE, key=b"r/l", lease=lease.id)
    assert c.kvstub.Txn(rpc_pb2.TxnRequest(compare=[cmp]), timeout=5).succeeded is True
    cmp = rpc_pb2.Compare(result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.LEASE, key=b"r/a", lease=0)
    assert c.kvstub.Txn(rpc_pb2.TxnRequest(compare=[cmp]), timeout=5).succeeded is True


def test_txn_empty(server):
    assert server.etcdctl("txn", input="\n\n\n") == (0, "SUCCESS\n", "")
    assert jl(server.ok("txn", "-w", "json", input="\n\n\n")) == {"header": hdr(1), "succeeded": True}


def test_txn_del_prev_kv_and_get_options(server):
    fill(server, ABCD)
    txn = '\ndel --prev-kv k/a\nget --prefix k/ --limit=2\nput --prev-kv k0 new\n\n\n'
    assert server.etcdctl("txn", input=txn) == (
        0, "SUCCESS\n\n1\nk/a\nva\n\nk/b\nvb\nk/c\nvc\n\nOK\nk0\nx\n", "")


def test_txn_duplicate_key(server):
    rc, out, err = server.etcdctl("txn", input="\nput a b\nput a c\n\n\n")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: duplicate key given in txn request\n")
    assert error_of(err) == "rpc error: code = InvalidArgument desc = etcdserver: duplicate key given in txn request"
    rc, out, err = server.etcdctl("txn", input='\nput t2 yes\n\nput t2 no\ndel t2\n\n')
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: duplicate key given in txn request\n")
    # a put inside a deleted range also counts
    rc, out, err = server.etcdctl("txn", input="\ndel --prefix a\nput ab c\n\n\n")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: duplicate key given in txn request\n")
    # the same key in the success and the failure branch is fine, and so are two gets
    assert server.etcdctl("txn", input="\nput a b\nget a\nget a\n\nput a c\n\n") == (
        0, "SUCCESS\n\nOK\n\na\nb\n\na\nb\n", "")
    assert jl(server.ok("get", "a", "-w", "json"))["header"] == hdr(2)


def test_txn_too_many_ops(server):
    ops = "".join(f"put k{i} v\n" for i in range(129))
    rc, out, err = server.etcdctl("txn", input="\n" + ops + "\n\n")
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: too many operations in txn request\n")
    assert error_of(err) == "rpc error: code = InvalidArgument desc = etcdserver: too many operations in txn request"
    # 128 (the default --max-txn-ops) is allowed
    ops = "".join(f"put k{i} v\n" for i in range(128))
    rc, out, err = server.etcdctl("txn", input="\n" + ops + "\n\n")
    assert (rc, err) == (0, "")
    assert out == "SUCCESS\n" + "\nOK\n" * 128
    assert jl(server.ok("get", "k", "--prefix", "--limit=1", "-w", "json"))["count"] == 128


def test_txn_bad_input_client_side(server):
    # parse errors are the client's, but pin the exit code
    rc, out, err = server.etcdctl("txn", input='value("a") == "b"\n\n\n\n')
    assert rc != 0 and out == ""


def test_request_too_large(server):
    # --max-request-bytes defaults to 1.5 MiB (1572864)
    assert server.etcdctl("put", "big", input="a" * 1_500_000) == (0, "OK\n", "")
    rc, out, err = server.etcdctl("put", "big", input="b" * 1_600_000)
    assert (rc, out, strip_logs(err)) == (1, "", "Error: etcdserver: request is too large\n")
    assert error_of(err) == "rpc error: code = InvalidArgument desc = etcdserver: request is too large"
    rc, out, err = server.etcdctl("get", "big", "--print-value-only")
    assert (rc, err) == (0, "") and out == "a" * 1_500_000 + "\n"


def test_negative_rev_and_limit_mean_none(server):
    server.ok("put", "a", "1")
    server.ok("put", "a", "2")
    assert server.etcdctl("get", "a", "--rev=-1") == (0, "a\n2\n", "")
    assert server.etcdctl("get", "a", "--limit=-1") == (0, "a\n2\n", "")
