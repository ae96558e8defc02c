"""ZooKeeper's four-letter words (4lw) on the client port: the word is sent
on a fresh connection, the server answers and closes it (ZkServer.four).

ruok is checked exactly.  The monitoring words (srvr, stat, conf, envi, mntr,
cons, wchs, wchc, wchp, isro, dirs, dump, srst, crst) are checked by
STRUCTURE: their lines and keys in ZooKeeper 3.8.0's format, numbers as
numbers, and values by relation to the test's own actions (a node created
-> the node count grows by one, a client connected -> one more connection,
Zxid == the last write's zxid, the listed session == the kazoo client's).
ZooKeeper 3.8.0's own bookkeeping is asserted too: "Node count" /
zk_znode_count count the root twice (a fresh server says 5), and the 4lw
connection itself is one of the "Connections", listed in stat/cons as
`[0](queued=0,recved=1,sent=0)`.  wchs/wchc/wchp leave child watches out --
test_watch_words asserts that, and that a connection whose watches all fired
stays counted.  After `crst` a connection shows `lop=NA`, no lcxid and
`lzxid=0xffffffffffffffff`; gtmk/stmk read and set the trace mask (306 at
start).

Settings: the fixture's servers run with every word enabled (ZooKeeper:
`4lw.commands.whitelist=*`); test_whitelist starts one with
@pytest.mark.zk_config(four_letter_whitelist="ruok,srvr") -- zoo.cfg
`4lw.commands.whitelist=ruok,srvr` on ZooKeeper, `--zk-4lw-whitelist
ruok,srvr` on conclave.  An unknown word is read by ZooKeeper as a request
length: the connection is closed without an answer.
"""

import re
import struct
import threading
import time

import pytest

from zk_util import RawSession

NUM = r"-?\d+(\.\d+)?"
VERSION_LINE = re.compile(r"^Zookeeper version: \d+\.\d+\.\d+\S*(, built on .*)?$")
CLIENT_LINE = re.compile(r"^ /127\.0\.0\.1:\d+\[\d\]\(queued=\d+,recved=\d+,sent=\d+\)$")


def kv_lines(text, sep):
    """[(key, value)] of `key<sep>value` lines; asserts every line has one."""
    assert text.endswith("\n"), text
    out = []
    for line in text.splitlines():
        assert sep in line, (line, text)
        k, v = line.split(sep, 1)
        out.append((k, v))
    return out


def srvr_fields(text):
    """The lines of srvr (and the tail of stat) as a dict, asserting their
    order and format."""
    lines = text.splitlines()
    assert VERSION_LINE.match(lines[0]), lines[0]
    keys = [l.split(":", 1)[0] for l in lines[1:]]
    assert keys == ["Latency min/avg/max", "Received", "Sent", "Connections", "Outstanding", "Zxid",
                    "Mode", "Node count"], text
    d = {k: l.split(": ", 1)[1] for k, l in zip(keys, lines[1:])}
    assert re.fullmatch(rf"{NUM}/{NUM}/{NUM}", d["Latency min/avg/max"]), d
    for k in ("Received", "Sent", "Connections", "Outstanding", "Node count"):
        assert re.fullmatch(r"\d+", d[k]), (k, d)
    assert re.fullmatch(r"0x[0-9a-f]+", d["Zxid"]), d
    return d


def settle(zk, connections):
    """srvr's fields once the server has `connections` connections (counting
    srvr's own): the fixture's readiness probe closed its session just before
    the test, and both servers drop a closed connection a moment later."""
    deadline = time.monotonic() + 5
    while True:
        d = srvr_fields(zk.four("srvr"))
        if int(d["Connections"]) == connections or time.monotonic() > deadline:
            return d
        time.sleep(0.05)


def test_ruok(zk):
    assert zk.four("ruok") == "imok"


def tree_size(c, path="/"):
    """The znodes at and under path, as a client sees them."""
    return 1 + sum(tree_size(c, path.rstrip("/") + "/" + k) for k in c.get_children(path))


def test_srvr(zk):
    d0 = settle(zk, 1)
    assert (d0["Mode"], d0["Outstanding"]) == ("standalone", "0")
    c = zk.kazoo()
    c.create("/a", b"x")
    c.create("/e", ephemeral=True)
    d = srvr_fields(zk.four("srvr"))
    assert int(d["Node count"]) == int(d0["Node count"]) + 2
    assert int(d["Connections"]) == int(d0["Connections"]) + 1
    assert int(d["Received"]) > int(d0["Received"]) and int(d["Sent"]) > int(d0["Sent"])
    # the zxid of the last committed transaction
    assert int(d["Zxid"], 16) == c.exists("/e").czxid
    c.delete("/a")
    d = srvr_fields(zk.four("srvr"))
    assert int(d["Node count"]) == int(d0["Node count"]) + 1
    # the root counts twice; the word's own connection is one of the connections
    assert int(d["Node count"]) == tree_size(c) + 1
    assert int(d["Connections"]) == 2


def test_stat(zk):
    c = zk.kazoo()
    before = int(settle(zk, 2)["Node count"])
    c.create("/a")
    text = zk.four("stat")
    head, tail = text.split("\n\n", 1)
    lines = head.splitlines()
    assert VERSION_LINE.match(lines[0])
    assert lines[1] == "Clients:"
    clients = lines[2:]
    assert all(CLIENT_LINE.match(l) for l in clients), clients
    d = srvr_fields(lines[0] + "\n" + tail)
    # one line per connection: the kazoo client and this one
    assert len(clients) == int(d["Connections"]) == 2
    assert sum(bool(re.fullmatch(r" /127\.0\.0\.1:\d+\[0\]\(queued=0,recved=1,sent=0\)", l))
               for l in clients) == 1, clients
    assert (d["Mode"], int(d["Node count"])) == ("standalone", before + 1)


def test_conf(zk):
    pairs = kv_lines(zk.four("conf"), "=")
    assert [k for k, _ in pairs] == [
        "clientPort", "secureClientPort", "dataDir", "dataDirSize", "dataLogDir", "dataLogSize",
        "tickTime", "maxClientCnxns", "minSessionTimeout", "maxSessionTimeout",
        "clientPortListenBacklog", "serverId"]
    d = dict(pairs)
    assert (d["clientPort"], d["secureClientPort"], d["tickTime"], d["minSessionTimeout"],
            d["maxSessionTimeout"], d["serverId"]) == (str(zk.port), "-1", "2000", "4000", "40000", "0")
    for k in ("dataDirSize", "dataLogSize", "maxClientCnxns", "clientPortListenBacklog"):
        assert re.fullmatch(r"-?\d+", d[k]), (k, d[k])


ENVI_KEYS = ["zookeeper.version", "host.name", "java.version", "java.vendor", "java.home",
             "java.class.path", "java.library.path", "java.io.tmpdir", "java.compiler", "os.name",
             "os.arch", "os.version", "user.name", "user.home", "user.dir", "os.memory.free",
             "os.memory.max", "os.memory.total"]


def test_envi(zk):
    text = zk.four("envi")
    assert text.startswith("Environment:\n")
    pairs = kv_lines(text.split("\n", 1)[1], "=")
    keys = [k for k, _ in pairs]
    # ZooKeeper's keys (the java.* ones describe its JVM) in its order
    host_keys = ["zookeeper.version", "host.name", "os.name", "os.arch", "os.version", "user.name",
                 "user.home", "user.dir"]
    assert [k for k in keys if k in host_keys] == host_keys, keys
    assert all(k in ENVI_KEYS for k in keys), keys
    d = dict(pairs)
    assert re.match(r"\d+\.\d+\.\d+", d["zookeeper.version"]), d["zookeeper.version"]
    for k in ("os.memory.free", "os.memory.max", "os.memory.total"):
        if k in d:
            assert re.fullmatch(r"\d+MB", d[k]), (k, d[k])
    # kazoo's server_version() parses zookeeper.version out of envi
    assert zk.kazoo().server_version()[:2] >= (3, 5)


MNTR_KEYS = ["zk_version", "zk_server_state", "zk_ephemerals_count", "zk_num_alive_connections",
             "zk_avg_latency", "zk_max_latency", "zk_min_latency", "zk_outstanding_requests",
             "zk_znode_count", "zk_global_sessions", "zk_watch_count", "zk_packets_received",
             "zk_packets_sent", "zk_approximate_data_size", "zk_open_file_descriptor_count",
             "zk_max_file_descriptor_count", "zk_uptime", "zk_non_mtls_remote_conn_count",
             "zk_last_client_response_size", "zk_max_client_response_size", "zk_connection_drop_probability",
             "zk_auth_failed_count", "zk_local_sessions", "zk_outstanding_tls_handshake",
             "zk_min_client_response_size", "zk_non_mtls_local_conn_count"]


def mntr(zk):
    pairs = kv_lines(zk.four("mntr"), "\t")
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), keys
    for k in MNTR_KEYS:
        assert k in keys, k
    d = dict(pairs)
    for k, v in d.items():
        assert re.fullmatch(r"zk_\w+", k), k
        if k not in ("zk_version", "zk_server_state"):
            assert re.fullmatch(NUM, v), (k, v)
    assert re.match(r"\d+\.\d+\.\d+", d["zk_version"])
    return d


def test_mntr(zk):
    settle(zk, 1)  # the readiness probe's connection gone, as zk_num_alive_connections counts below
    d0 = mntr(zk)
    assert (d0["zk_server_state"], d0["zk_ephemerals_count"], d0["zk_global_sessions"],
            d0["zk_watch_count"], d0["zk_outstanding_requests"]) == ("standalone", "0", "0", "0", "0")
    a = zk.kazoo()
    b = zk.kazoo()
    a.create("/p")
    a.create("/p/e1", ephemeral=True)
    b.create("/e2", ephemeral=True)
    a.get("/p", watch=lambda e: None)
    b.exists("/nope", watch=lambda e: None)
    a.get_children("/p", watch=lambda e: None)
    d = mntr(zk)
    # zk_watch_count counts data, exist and child watches
    assert (d["zk_server_state"], d["zk_ephemerals_count"], d["zk_global_sessions"], d["zk_watch_count"],
            d["zk_outstanding_requests"]) == ("standalone", "2", "2", "3", "0")
    assert int(d["zk_znode_count"]) == int(d0["zk_znode_count"]) + 3
    assert int(d["zk_num_alive_connections"]) == int(d0["zk_num_alive_connections"]) + 2
    assert int(d["zk_packets_received"]) > int(d0["zk_packets_received"])
    # The running sum of every znode's path (in Java's UTF-16 units) and data length.
    assert int(d["zk_approximate_data_size"]) == int(d0["zk_approximate_data_size"]) + len("/p/p/e1/e2")
    a.create("/\u00e9\u4e2d", b"xyz")  # 5 bytes of UTF-8, 3 UTF-16 units
    a.set("/p", b"12345")
    a.delete("/e2")
    d2 = mntr(zk)
    assert int(d2["zk_approximate_data_size"]) == int(d["zk_approximate_data_size"]) + 3 + 3 + 5 - 3


def response_sizes(d):
    return tuple(d[f"zk_{k}_client_response_size"] for k in ("last", "min", "max"))


def test_mntr_response_sizes(zk):
    """zk_{last,min,max}_client_response_size: the frames of replies and
    notifications, without the length prefix; not the connect response, not a
    word's text; -1 until the first, and again after srst."""
    # The fixture's readiness check opened and closed a session: its close reply, 16.
    assert response_sizes(mntr(zk)) == ("16", "16", "16")
    assert zk.four("srst") == "Server stats reset.\n"
    d = mntr(zk)
    assert response_sizes(d) == ("-1", "-1", "-1")
    assert (d["zk_auth_failed_count"], d["zk_local_sessions"], d["zk_outstanding_tls_handshake"],
            d["zk_connection_drop_probability"]) == ("0", "0", "0", "0.0")
    c = zk.kazoo()
    assert response_sizes(mntr(zk)) == ("-1", "-1", "-1")
    c.create("/m", b"x" * 1000)  # reply: header 16 + path (4 + 2) = 22
    c.get("/m")  # reply: header 16 + data (4 + 1000) + Stat 68 = 1088
    last, smallest, largest = response_sizes(mntr(zk))
    # a ping's reply (a bare header, 16) may come in between on a slow machine
    assert largest == "1088" and last in ("1088", "16") and smallest in ("22", "16"), (last, smallest, largest)
    seen = threading.Event()
    c.get("/m", watch=lambda e: seen.set())
    c2 = zk.kazoo()
    c2.set("/m", b"y")  # c's notification: header 16 + event (4 + 4 + 4 + 2) = 30
    assert seen.wait(10)
    assert response_sizes(mntr(zk))[2] == "1088"
    assert zk.four("srst") == "Server stats reset.\n"
    assert response_sizes(mntr(zk)) == ("-1", "-1", "-1")
    c.exists("/m")  # reply: header 16 + Stat 68 = 84
    last, smallest, largest = response_sizes(mntr(zk))
    assert largest == "84" and last in ("84", "16") and smallest in ("84", "16"), (last, smallest, largest)


def test_cons(zk):
    c = zk.kazoo()
    c.create("/a")
    settle(zk, 2)
    text = zk.four("cons")
    assert text.endswith("\n\n")
    lines = text[:-2].split("\n")
    assert all(re.fullmatch(r" /127\.0\.0\.1:\d+\[\d\]\(.*\)", l) for l in lines), lines
    mine = [l for l in lines if "sid=" in l]
    assert len(mine) == 1, lines
    # the other one is this word's own connection, sessionless
    assert re.fullmatch(r" /127\.0\.0\.1:\d+\[0\]\(queued=0,recved=1,sent=0\)",
                        [l for l in lines if l != mine[0]][0]), lines
    assert len(lines) == 2, lines
    m = re.fullmatch(r" /127\.0\.0\.1:\d+\[\d\]\((.*)\)", mine[0])
    fields = dict(f.split("=", 1) for f in m.group(1).split(","))
    assert list(fields) == ["queued", "recved", "sent", "sid", "lop", "est", "to", "lcxid", "lzxid",
                            "lresp", "llat", "minlat", "avglat", "maxlat"]
    assert int(fields["sid"], 16) == c.client_id[0]
    assert fields["to"] == "10000"  # the negotiated session timeout
    assert fields["lop"] == "CREA"  # the last operation was a create
    assert int(fields["lzxid"], 16) == c.exists("/a").czxid
    for k in ("queued", "recved", "sent", "est", "lresp", "llat", "minlat", "avglat", "maxlat"):
        assert re.fullmatch(r"\d+", fields[k]), (k, fields[k])


def _cons_of(zk, session_id):
    """cons's fields for one session's connection."""
    for line in zk.four("cons").splitlines():
        m = re.fullmatch(r" /127\.0\.0\.1:\d+\[\d\]\((.*)\)", line)
        if m and f"sid=0x{session_id:x}," in line:
            return dict(f.split("=", 1) for f in m.group(1).split(","))
    raise AssertionError(f"no connection of 0x{session_id:x}")


def _cons_once_sent(zk, session_id, sent):
    """cons's fields once the connection counts `sent` packets sent: ZooKeeper counts a packet
    in its selector thread after the write, so a client can read the packet first (seen in a
    loaded CI run: the count one short)."""
    deadline = time.monotonic() + 5
    while True:
        fields = _cons_of(zk, session_id)
        if int(fields["sent"]) >= sent or time.monotonic() > deadline:
            return fields
        time.sleep(0.01)


def _cons_settled(zk, session_id):
    """cons's fields once its sent count holds still for 20 ms (see `_cons_once_sent`)."""
    deadline = time.monotonic() + 5
    fields = _cons_of(zk, session_id)
    while time.monotonic() < deadline:
        time.sleep(0.02)
        again = _cons_of(zk, session_id)
        if again["sent"] == fields["sent"]:
            return again
        fields = again
    return fields


def test_cons_counts_a_watch_event_as_sent_and_a_refused_write_as_na(zk):
    """A watch event is a packet sent, as a reply is; a write ZooKeeper refuses becomes an
    error transaction, answered before the operation is named: lop=NA. Raw sessions, so no
    ping moves the counts."""
    def s_(b):
        return struct.pack(">i", len(b)) + b
    world = struct.pack(">ii", 1, 31) + s_(b"world") + s_(b"anyone")
    create = s_(b"/a") + s_(b"") + world + struct.pack(">i", 0)
    s = RawSession("127.0.0.1", zk.port, 30000)
    t = RawSession("127.0.0.1", zk.port, 30000)
    try:
        s.send(1, 1, create)
        assert s.read()[2] == 0
        s.send(2, 4, s_(b"/a") + b"\1")  # getData, watching
        assert s.read()[2] == 0
        f1 = _cons_settled(zk, s.session_id)
        assert f1["lop"] == "GETD"
        t.send(1, 5, s_(b"/a") + s_(b"x") + struct.pack(">i", -1))
        assert t.read()[2] == 0
        assert s.read()[0] == -1, "the NodeDataChanged event"
        f2 = _cons_once_sent(zk, s.session_id, int(f1["sent"]) + 1)
        assert (int(f2["sent"]), f2["lop"], f2["recved"]) == (int(f1["sent"]) + 1, "GETD", f1["recved"])
        s.send(3, 1, create)
        assert s.read()[2] == -110  # NodeExists
        f3 = _cons_once_sent(zk, s.session_id, int(f2["sent"]) + 1)
        assert (int(f3["sent"]), f3["lop"], f3["lcxid"]) == (int(f2["sent"]) + 1, "NA", "0x3")
        s.send(4, 3, s_(b"/nope") + b"\0")  # a read that fails keeps its name
        assert s.read()[2] == -101
        assert _cons_of(zk, s.session_id)["lop"] == "EXIS"
    finally:
        s.drop()
        t.drop()


def test_srvr_counts_every_packet_a_connection_reads_and_writes(zk):
    """Received and Sent count each word's own connection (its word and its answer), a
    session's ConnectRequest and ConnectResponse, and every request and reply; a refused
    reattach's answer too."""
    def counts():
        d = srvr_fields(zk.four("srvr"))
        return int(d["Received"]), int(d["Sent"])
    r0, s0 = counts()
    s = RawSession("127.0.0.1", zk.port, 30000)
    r1, s1 = counts()
    assert (r1 - r0, s1 - s0) == (2, 2), "the srvr and the handshake"
    s.send(1, 3, struct.pack(">i", 1) + b"/\0")  # exists /
    assert s.read()[2] == 0
    r2, s2 = counts()
    assert (r2 - r1, s2 - s1) == (2, 2)
    # A reattach with a wrong password is answered (session 0) and closed.
    bad = RawSession("127.0.0.1", zk.port, 30000, session_id=s.session_id, passwd=b"x" * 16)
    assert bad.session_id == 0
    bad.drop()
    r3, s3 = counts()
    assert (r3 - r2, s3 - s2) == (2, 2)
    s.drop()


def test_watch_words(zk):
    a = zk.kazoo()
    b = zk.kazoo()
    a.create("/a")
    a.get("/a", watch=lambda e: None)
    a.exists("/missing", watch=lambda e: None)
    b.get("/a", watch=lambda e: None)
    # child watches are left out of all three words
    b.get_children("/a", watch=lambda e: None)
    sa, sb = f"0x{a.client_id[0]:x}", f"0x{b.client_id[0]:x}"
    assert zk.four("wchs") == "2 connections watching 2 paths\nTotal watches:3\n"
    assert parse_watch_listing(zk.four("wchc")) == {sa: ["/a", "/missing"], sb: ["/a"]}
    assert parse_watch_listing(zk.four("wchp")) == {"/a": sorted([sa, sb]), "/missing": [sa]}
    # fired watches are gone, but a connection that had one stays listed,
    # with no paths, until it closes
    b.set("/a", b"x")
    assert zk.four("wchs") == "2 connections watching 1 paths\nTotal watches:1\n"
    assert parse_watch_listing(zk.four("wchc")) == {sa: ["/missing"], sb: []}
    assert parse_watch_listing(zk.four("wchp")) == {"/missing": [sa]}
    a.create("/missing")
    assert zk.four("wchs") == "2 connections watching 0 paths\nTotal watches:0\n"
    assert zk.four("wchp") == "\n"
    b.stop()
    b.close()
    # the server drops b's connection as it closes (after its closeSession reply)
    want = "1 connections watching 0 paths\nTotal watches:0\n"
    deadline = time.monotonic() + 5
    while zk.four("wchs") != want and time.monotonic() < deadline:
        time.sleep(0.05)
    assert zk.four("wchs") == want
    assert zk.four("wchc") == f"{sa}\n\n"


def test_wchc_and_wchp_list_paths_in_zookeepers_hash_order(zk):
    """ZooKeeper prints a connection's watched paths (wchc) and the watched paths (wchp) in
    the iteration order of its Java HashSet / HashMap: by hash bucket, then by insertion;
    20 paths also make the table grow once. (The order was printed by Java's HashSet.)"""
    c = zk.kazoo()
    paths = ["/b", "/a", "/c", "/s/a/x", "/s"] + [f"/n{i}" for i in range(15)]
    for p in paths:
        c.exists(p, watch=lambda e: None)
    java = "/s/a/x /s /n11 /n10 /n0 /a /n1 /b /n2 /c /n3 /n4 /n14 /n5 /n13 /n6 /n12 /n7 /n8 /n9".split()
    sid = f"0x{c.client_id[0]:x}"
    assert zk.four("wchc") == f"{sid}\n" + "".join(f"\t{p}\n" for p in java) + "\n"
    assert zk.four("wchp") == "".join(f"{p}\n\t{sid}\n" for p in java) + "\n"


def parse_watch_listing(text):
    """wchc / wchp: blocks of "key\\n\\tvalue\\n..." ending with a blank line;
    block and value order is the server's hash order, so both are sorted."""
    assert text.endswith("\n\n"), text
    out, key = {}, None
    for line in text[:-2].split("\n"):
        if line.startswith("\t"):
            out[key].append(line[1:])
        else:
            key = line
            out[key] = []
    return {k: sorted(v) for k, v in out.items()}


def test_wchs_without_watches(zk):
    assert zk.four("wchs") == "0 connections watching 0 paths\nTotal watches:0\n"
    assert zk.four("wchc") == "\n"
    assert zk.four("wchp") == "\n"


def test_isro_dirs(zk):
    assert zk.four("isro") == "rw"
    assert re.fullmatch(r"datadir_size: \d+\nlogdir_size: \d+\n", zk.four("dirs"))


def test_resets(zk):
    c = zk.kazoo()
    for i in range(5):
        c.create(f"/n{i}")
    assert zk.four("srst") == "Server stats reset.\n"
    d = srvr_fields(zk.four("srvr"))
    # at most this srvr itself has been counted since
    lat = [float(x) for x in d["Latency min/avg/max"].split("/")]
    assert lat == [0, 0, 0] and int(d["Received"]) <= 1 and int(d["Sent"]) <= 1, d
    assert zk.four("crst") == "Connection stats reset.\n"
    line = [l for l in zk.four("cons").splitlines() if "sid=" in l][0]
    # the last operation is forgotten too: no lcxid, lzxid -1, lresp 0
    assert re.fullmatch(
        r" /127\.0\.0\.1:\d+\[1\]\(queued=0,recved=0,sent=0,sid=0x[0-9a-f]+,lop=NA,est=\d+,to=10000,"
        r"lzxid=0xffffffffffffffff,lresp=0,llat=0,minlat=0,avglat=0,maxlat=0\)", line), line
    c.create("/after")
    line = [l for l in zk.four("cons").splitlines() if "sid=" in l][0]
    assert ",lop=CREA," in line and ",lcxid=0x" in line, line


def test_trace_mask_words(zk):
    assert zk.four("gtmk") == "306"  # ZooTrace's default text trace level
    assert zk.four(b"stmk" + (123).to_bytes(8, "big")) == "123"
    assert zk.four("gtmk") == "123"
    # without its 8-byte mask, stmk is closed without an answer
    assert zk.four("stmk") == ""
    assert zk.four("gtmk") == "123"
    # nothing queued, no digests kept: both answer nothing
    assert zk.four("reqs") == ""
    assert zk.four("hash") == ""


DATE = r"\w{3} \w{3} \d{2} \d{2}:\d{2}:\d{2} \w+ \d{4}"


def expiry_sets(text, what):
    """ExpiryQueue.dump: "<what> Sets (n)/(m):", then per set "k expire at
    <java.util.Date>:" and k tab-indented elements; returns the sets' elements."""
    lines = text.splitlines()
    m = re.fullmatch(rf"{what} Sets \((\d+)\)/\((\d+)\):", lines[0])
    assert m, lines[0]
    sets, i = [], 1
    for _ in range(int(m.group(1))):
        head = re.fullmatch(rf"(\d+) expire at {DATE}:", lines[i])
        assert head, lines[i]
        k = int(head.group(1))
        sets.append([line[1:] for line in lines[i + 1:i + 1 + k]])
        assert all(line.startswith("\t") for line in lines[i + 1:i + 1 + k]), lines[i:i + 1 + k]
        i += 1 + k
    assert sum(map(len, sets)) == int(m.group(2))
    return sets, lines[i:]


def test_dump(zk):
    c = zk.kazoo()
    c.create("/p")
    c.create("/p/e", ephemeral=True)
    d = zk.kazoo()
    text = zk.four("dump")
    sid, other = f"0x{c.client_id[0]:x}", f"0x{d.client_id[0]:x}"
    assert text.startswith("SessionTracker dump:\n")
    sessions, rest = expiry_sets(text[len("SessionTracker dump:\n"):], "Session")
    assert sorted(e for s in sessions for e in s) == sorted([sid, other])
    assert "\n".join(rest).startswith(
        f"ephemeral nodes dump:\nSessions with Ephemerals (1):\n{sid}:\n\t/p/e\nConnections dump")
    conns, rest = expiry_sets(text[text.index("Connections dump:\n") + len("Connections dump:\n"):],
                              "Connections")
    listed = [e for s in conns for e in s]
    for session in (sid, other):
        assert any(re.fullmatch(rf"ip: /127\.0\.0\.1:\d+ sessionId: {session}", e) for e in listed), listed
    assert all(re.fullmatch(r"ip: /127\.0\.0\.1:\d+ sessionId: 0x[0-9a-f]+", e) for e in listed), listed
    assert rest == []
    # A session whose last ephemeral is gone is still listed, with none: ZooKeeper keeps its
    # (empty) set until the session ends.
    c.delete("/p/e")
    text = zk.four("dump")
    assert f"ephemeral nodes dump:\nSessions with Ephemerals (1):\n{sid}:\nConnections dump" in text, text


def test_unknown_word_closes_connection(zk):
    # not a known word: read as a request length (0x78787878, too large), so
    # the connection is closed without an answer
    assert zk.four("xxxx") == ""
    assert zk.four("ruok") == "imok"


@pytest.mark.zk_config(four_letter_whitelist="ruok,srvr")
def test_whitelist(zk):
    assert zk.four("ruok") == "imok"
    assert srvr_fields(zk.four("srvr"))["Mode"] == "standalone"
    for word in ("stat", "conf", "envi", "mntr", "cons", "wchs", "wchc", "wchp", "isro", "dirs", "dump",
                 "crst", "srst", "gtmk"):
        assert zk.four(word) == f"{word} is not executed because it is not in the whitelist.\n"
    # the client protocol is unaffected
    c = zk.kazoo()
    assert c.create("/a") == "/a"
