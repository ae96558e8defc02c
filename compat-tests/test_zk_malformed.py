"""Requests no well-behaved client sends: bodies that do not decode, op codes the
server does not know, odd paths and fields. Each is answered exactly as
ZooKeeper 3.8.0 answers it, on a raw socket (zk_util.RawSession).

ZooKeeper's rules, from its source and checked here against the server:
- A request whose header decodes but whose body does not is answered
  MarshallingError (-5) by the request processor that decodes it, and the
  connection goes on. Only auth and SASL packets are decoded as they arrive:
  a bad one, or a header shorter than 8 bytes, closes the connection.
- An op code it does not know is answered Unimplemented (-6), and then the
  connection is closed (the session stays).
- jute reads a negative vector count as an empty vector (-1 as null, which
  some requests dereference), but refuses a negative string or buffer length;
  Java decodes bad UTF-8 to U+FFFD instead of failing.
- A null path where the server dereferences it is a MarshallingError; a read of
  the empty path "" finds the root (the DataTree keeps it under "" too).
- deleteContainer from a client always answers BadArguments: 3.8.0 takes the
  whole packet (header included) as the path.

Every expected value was taken from ZooKeeper 3.8.0 (standalone, default
settings), except where a comment says otherwise.
"""

import random
import struct

import pytest

from kazoo.protocol.serialization import Create, Delete, Exists, GetData
from kazoo.security import OPEN_ACL_UNSAFE

from zk_util import RawSession

I = struct.Struct(">i")
Q = struct.Struct(">q")
NULL = I.pack(-1)

MARSHALLING, UNIMPLEMENTED, BAD_ARGUMENTS = -5, -6, -8
NO_NODE, NODE_EXISTS, INVALID_ACL, NO_WATCHER, RECONFIG_DISABLED = -101, -110, -114, -121, -123

OP = dict(create=1, delete=2, exists=3, getData=4, setData=5, getACL=6, setACL=7, getChildren=8,
          sync=9, getChildren2=12, check=13, multi=14, create2=15, reconfig=16, checkWatches=17,
          removeWatches=18, createContainer=19, deleteContainer=20, multiRead=22, auth=100,
          setWatches=101, sasl=102, getEphemerals=103, getAllChildrenNumber=104, setWatches2=105,
          addWatch=106, whoAmI=107)


def s_(b):
    """A jute ustring/buffer: length, bytes."""
    return I.pack(len(b)) + b


WORLD = I.pack(1) + I.pack(31) + s_(b"world") + s_(b"anyone")
BAD_ACL = I.pack(1) + I.pack(31) + s_(b"world") + s_(b"nobody")


def multi(*ops):
    """MultiHeader {type, done=false, err=-1} + body per op, then the end marker."""
    out = b""
    for op, body in ops:
        out += struct.pack(">i?i", op, False, -1) + body
    return out + struct.pack(">i?i", -1, True, -1)


def outcome(s, replies):
    """Up to `replies` answers as (xid, err), skipping watch notifications;
    "closed" if the server closes the connection first."""
    got = []
    try:
        while len(got) < replies:
            xid, _zxid, err, _body = s.read()
            if xid != -1:
                got.append((xid, err))
    except (ConnectionError, OSError):
        got.append("closed")
    return got


def ask(zk, op, body, then_exists=True):
    """A fresh session sends one request (xid 1), then, if `then_exists`, a
    well-formed exists("/") (xid 2) to show whether the connection survived."""
    s = RawSession(zk.host, zk.port, 10000)
    try:
        s.send(1, op, body)
        if then_exists:
            s.send(2, OP["exists"], Exists("/", False).serialize())
        return outcome(s, 2 if then_exists else 1)
    finally:
        s.close_session()


# Bodies that do not decode (or ZooKeeper fails to process): MarshallingError, connection kept.
MALFORMED = [
    ("create cut short", OP["create"], s_(b"/m") + s_(b"data")[:5]),
    ("create2 with a string length of 2^31-1", OP["create2"], I.pack(0x7FFFFFFF) + b"/m"),
    ("setData with a negative data length", OP["setData"], s_(b"/") + I.pack(-2) + I.pack(-1)),
    ("getData with no body", OP["getData"], b""),
    ("getChildren2 cut inside the path", OP["getChildren2"], I.pack(5) + b"/zo"),
    ("exists of a null path", OP["exists"], NULL + b"\0"),
    ("getData of a null path", OP["getData"], NULL + b"\0"),
    ("getACL of a null path", OP["getACL"], NULL),
    ("getAllChildrenNumber of a null path", OP["getAllChildrenNumber"], NULL),
    ("create of a null path", OP["create"], NULL + NULL + WORLD + I.pack(0)),
    ("delete of a null path", OP["delete"], NULL + I.pack(-1)),
    ("multi mixing a delete and a getData", OP["multi"],
     multi((OP["delete"], Delete("/m", -1).serialize()), (OP["getData"], GetData("/", False).serialize()))),
    ("multi holding an exists", OP["multi"], multi((OP["exists"], Exists("/", False).serialize()))),
    ("multi cut before its end marker", OP["multi"], multi((OP["delete"], Delete("/m", -1).serialize()))[:-9]),
    ("multiRead holding a delete", OP["multiRead"], multi((OP["delete"], Delete("/m", -1).serialize()))),
    ("multi holding only a getData", OP["multi"], multi((OP["getData"], GetData("/", False).serialize()))),
    ("setWatches cut short", OP["setWatches"], Q.pack(0) + I.pack(0)),
    ("setWatches with a null list", OP["setWatches"], Q.pack(0) + I.pack(0) + NULL + I.pack(0)),
    ("addWatch in an unknown mode", OP["addWatch"], s_(b"/") + I.pack(2)),
    ("checkWatches of an unknown watcher type", OP["checkWatches"], s_(b"/") + I.pack(0)),
    ("removeWatches of an unknown watcher type", OP["removeWatches"], s_(b"/") + I.pack(4)),
    ("checkWatches of a path without '/'", OP["checkWatches"], s_(b"w") + I.pack(1)),
    ("checkWatches of a null path", OP["checkWatches"], NULL + I.pack(1)),
    ("reconfig cut short", OP["reconfig"], s_(b"a") + I.pack(9)),
]


@pytest.mark.parametrize("name,op,body", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_body_that_does_not_decode_is_a_marshalling_error(zk, name, op, body):
    assert ask(zk, op, body) == [(1, MARSHALLING), (2, 0)]


# Well-formed but odd requests: what each one answers; the connection is kept.
ODD = [
    ("setWatches with negative vector counts (read as empty)", OP["setWatches"],
     Q.pack(0) + I.pack(-2) + I.pack(-100) + I.pack(-3), 0),
    ("setWatches2 with negative vector counts", OP["setWatches2"], Q.pack(0) + I.pack(-3) * 5, 0),
    ("getChildren with bytes after the body", OP["getChildren"], s_(b"/") + b"\0" + b"\x12\x34\x56", 0),
    ("getData of the empty path (the root)", OP["getData"], s_(b"") + b"\0", 0),
    ("exists of the empty path (the root)", OP["exists"], s_(b"") + b"\0", 0),
    ("getChildren2 of the empty path (the root)", OP["getChildren2"], s_(b"") + b"\0", 0),
    ("getData of a path that is not UTF-8", OP["getData"], s_(b"/\xff") + b"\0", NO_NODE),
    ("create of a path that is not UTF-8", OP["create"], s_(b"/\xff") + NULL + WORLD + I.pack(0), BAD_ARGUMENTS),
    ("create: a bad ACL is found before a bad name", OP["create"], s_(b"/\xff") + NULL + BAD_ACL + I.pack(0),
     INVALID_ACL),
    ("create: a missing parent is found before a bad name", OP["create"],
     s_(b"/no-such-parent//b") + NULL + WORLD + I.pack(0), NO_NODE),
    ("create of a path ending in '/' under a missing parent", OP["create"],
     s_(b"/no-such-parent/") + NULL + WORLD + I.pack(0), NO_NODE),
    ("create of a path ending in '/' under the root", OP["create"], s_(b"//") + NULL + WORLD + I.pack(0),
     BAD_ARGUMENTS),
    ("setData of a null path", OP["setData"], NULL + NULL + I.pack(-1), BAD_ARGUMENTS),
    ("removeWatches of a null path", OP["removeWatches"], NULL + I.pack(1), NO_WATCHER),
    ("checkWatches of the empty path", OP["checkWatches"], s_(b"") + I.pack(1), NO_WATCHER),
    ("deleteContainer of anything", OP["deleteContainer"], s_(b"/zookeeper"), BAD_ARGUMENTS),
    ("deleteContainer with no body", OP["deleteContainer"], b"", BAD_ARGUMENTS),
    ("reconfig on a standalone server", OP["reconfig"], NULL + NULL + s_(b"server.1=x") + Q.pack(-1),
     RECONFIG_DISABLED),
]


@pytest.mark.parametrize("name,op,body,err", ODD, ids=[o[0] for o in ODD])
def test_odd_requests_are_answered_as_zookeeper_does(zk, name, op, body, err):
    assert ask(zk, op, body) == [(1, err), (2, 0)]


def test_delete_container_never_deletes(zk):
    s = RawSession(zk.host, zk.port, 10000)
    try:
        assert s.request(Create("/c", b"", OPEN_ACL_UNSAFE, 4))[1] == 0  # an empty container
        s.send(7, OP["deleteContainer"], s_(b"/c"))
        assert outcome(s, 1) == [(7, BAD_ARGUMENTS)]
        assert s.request(Exists("/c", False))[1] == 0
    finally:
        s.close_session()


def _multi_errors(body):
    """The per-op error codes of a failed multi's reply (each op: header
    {type -1, done false, err} and ErrorResult {err}; then the end marker)."""
    errs, at = [], 0
    while True:
        typ, done, err = struct.unpack_from(">i?i", body, at)
        at += 9
        if done:
            return errs
        assert typ == -1, body.hex()
        errs.append(err)
        at += 4


@pytest.mark.parametrize("first_op,first,expected", [
    # a create of a path without '/': BadArguments at op 1
    (OP["create"], s_(b"bad") + NULL + WORLD + I.pack(0), [BAD_ARGUMENTS, -2]),
    # a setData of a missing node: NoNode at op 1
    (OP["setData"], s_(b"/no-such-node") + s_(b"x") + I.pack(-1), [NO_NODE, -2]),
    # a good create: it would have worked (0), then op 2 fails
    (OP["create"], s_(b"/fine") + NULL + WORLD + I.pack(0), [0, BAD_ARGUMENTS]),
], ids=["bad path first", "missing node first", "good op first"])
def test_a_multi_reports_its_first_failing_op_even_before_unknown_create_flags(zk, first_op, first, expected):
    # op 2 is a create with mode flags 99, which CreateMode.fromFlag refuses (BadArguments);
    # ZooKeeper still evaluates op 1 first. The rest of a failed multi is RuntimeInconsistency (-2).
    body = multi((first_op, first), (OP["create"], s_(b"/other") + NULL + WORLD + I.pack(99)))
    s = RawSession(zk.host, zk.port, 10000)
    try:
        s.send(1, OP["multi"], body)
        xid, _zxid, err, reply = s.read()
        assert (xid, err) == (1, 0)
        assert _multi_errors(reply) == expected
        assert s.request(Exists("/fine", False))[1] == NO_NODE  # nothing of it was applied
    finally:
        s.close_session()


def test_sync_of_a_null_path_echoes_null(zk):
    s = RawSession(zk.host, zk.port, 10000)
    try:
        s.send(3, OP["sync"], NULL)
        xid, _zxid, err, body = s.read()
        assert (xid, err, body) == (3, 0, NULL)
    finally:
        s.close_session()


def test_auth_answers_with_the_request_xid(zk):
    # Clients send auth with xid -4 and get -4 back; the server echoes whatever came.
    s = RawSession(zk.host, zk.port, 10000)
    try:
        s.send(7, OP["auth"], I.pack(0) + s_(b"digest") + s_(b"u:p"))
        assert outcome(s, 1) == [(7, 0)]
        s.send(8, OP["auth"], I.pack(0) + s_(b"no-such-scheme") + s_(b"x"))
        assert outcome(s, 2) == [(8, -115), "closed"]  # AuthFailed, then the connection closes
    finally:
        s.drop()


CLOSING = [
    ("header shorter than 8 bytes", None, b"\0\0\0\x01\0\0"),
    ("auth cut short", OP["auth"], I.pack(0) + s_(b"digest")[:5]),
    ("SASL with a null token", OP["sasl"], NULL),
    ("SASL cut short", OP["sasl"], I.pack(9) + b"abc"),
]


@pytest.mark.parametrize("name,op,body", CLOSING, ids=[c[0] for c in CLOSING])
def test_a_bad_header_auth_or_sasl_packet_closes_the_connection(zk, name, op, body):
    s = RawSession(zk.host, zk.port, 10000)
    try:
        if op is None:
            s._send(body)  # the whole packet, header included
        else:
            s.send(1, op, body)
        assert outcome(s, 1) == ["closed"]
    finally:
        s.drop()


@pytest.mark.parametrize("op", [0, 10, 23, 99, 108, 1000, -1])
def test_an_unknown_op_is_unimplemented_and_closes_the_connection_not_the_session(zk, op):
    s = RawSession(zk.host, zk.port, 10000)
    sid, passwd = s.session_id, s.passwd
    try:
        s.send(1, op, b"\0\0\0\x01/")
        assert outcome(s, 2) == [(1, UNIMPLEMENTED), "closed"]
    finally:
        s.drop()
    # the session is still there: the client may come back to it
    again = RawSession(zk.host, zk.port, 10000, session_id=sid, passwd=passwd)
    try:
        assert again.negotiated_timeout > 0 and again.session_id == sid
    finally:
        again.close_session()


def _mutations(seed, n):
    """`n` (op, body) pairs: well-formed bodies of most ops, cut, extended,
    with flipped bytes or overwritten ints, or random bytes."""
    rng = random.Random(seed)
    bodies = [
        (OP["create"], Create("/r", b"d", OPEN_ACL_UNSAFE, 0).serialize()),
        (OP["create2"], Create("/r2", b"d", OPEN_ACL_UNSAFE, 3).serialize()),
        (OP["delete"], Delete("/r", -1).serialize()),
        (OP["exists"], Exists("/", True).serialize()),
        (OP["getData"], GetData("/", False).serialize()),
        (OP["setData"], s_(b"/r") + s_(b"x") + I.pack(-1)),
        (OP["getACL"], s_(b"/")),
        (OP["setACL"], s_(b"/r") + WORLD + I.pack(-1)),
        (OP["getChildren"], s_(b"/") + b"\x01"),
        (OP["getChildren2"], s_(b"/") + b"\0"),
        (OP["sync"], s_(b"/")),
        (OP["multi"], multi((OP["create"], Create("/rm", b"", OPEN_ACL_UNSAFE, 0).serialize()),
                            (OP["delete"], Delete("/rm", -1).serialize()))),
        (OP["multiRead"], multi((OP["getData"], GetData("/", False).serialize()))),
        (OP["getEphemerals"], s_(b"/")),
        (OP["getAllChildrenNumber"], s_(b"/")),
        (OP["addWatch"], s_(b"/") + I.pack(1)),
        (OP["removeWatches"], s_(b"/") + I.pack(3)),
        (OP["setWatches2"], Q.pack(0) + I.pack(1) + s_(b"/") + I.pack(0) * 4),
        (OP["whoAmI"], b""),
        (OP["createContainer"], Create("/rc", b"", OPEN_ACL_UNSAFE, 4).serialize()),
        (OP["deleteContainer"], s_(b"/rc")),
    ]
    for _ in range(n):
        op, body = rng.choice(bodies)
        body = bytearray(body)
        k = rng.randrange(5)
        if k == 0 and body:
            body = body[:rng.randrange(len(body))]
        elif k == 1:
            body += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
        elif k == 2 and body:
            for _ in range(rng.randrange(1, 4)):
                body[rng.randrange(len(body))] = rng.randrange(256)
        elif k == 3 and len(body) >= 4:
            at = rng.randrange(len(body) - 3)
            body[at:at + 4] = I.pack(rng.choice([-2, -1, 0x7FFFFFFF, 0x100000, 65536, -100000]))
        else:
            body = bytearray(rng.randrange(256) for _ in range(rng.randrange(40)))
        yield op, bytes(body)


# What a mutated request may be answered with (ZooKeeper 3.8.0 answered each of
# these 300 with one of them; the test holds both servers to the same set).
KNOWN_ERRORS = {0, MARSHALLING, BAD_ARGUMENTS, NO_NODE, -102, -103, NODE_EXISTS, -111, -112, INVALID_ACL,
                NO_WATCHER, RECONFIG_DISABLED}


def test_random_bad_requests_never_hurt_the_server(zk):
    for op, body in _mutations(seed=4, n=300):
        got = ask(zk, op, body)
        # Either answered (with an error ZooKeeper gives) and still serving, or closed.
        assert len(got) == 2 and got[1] == (2, 0), (op, body.hex(), got)
        assert got[0][0] == 1 and got[0][1] in KNOWN_ERRORS, (op, body.hex(), got)
    assert zk.four("ruok") == "imok"
    kz = zk.kazoo()
    kz.create("/after-the-storm", b"ok")
    assert kz.get("/after-the-storm")[0] == b"ok"
