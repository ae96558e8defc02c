"""A differential test: ZooKeeper 3.8.0 and Conclave, side by side, run the same
seeded random sequence of requests from two raw sessions, and must produce the
same transcript: every reply's error code and decoded body, and every watch
notification, in the order each session receives them.

The requests: creates of every mode but TTL (persistent, ephemeral, sequential,
ephemeral sequential, container), deletes and setData with versions,
exists/getData/getChildren/getChildren2 with and without watches, multi of
creates, deletes, setData and checks, getAllChildrenNumber, getEphemerals,
addWatch (persistent and recursive), check/removeWatches, setACL (world, digest,
auth, empty) and getACL, addauth, sync; now and then one session closes and a
new one takes its place (its ephemerals and watches go). All on a handful of
paths, so that most requests meet state the others made.

A second, wider generator adds what the first leaves out: createContainer,
createTTL and create2 with TTL modes (ZooKeeper runs with extended types on),
multi with every create op and odd flags (ZooKeeper re-types a create inside a
multi by its flags), multiRead, whoAmI, setWatches and setWatches2 at the
session's own last zxid, the built-in nodes and odd or invalid paths ("", "/",
"//s", "/s/", "/s/./a", a NUL) everywhere. It never sends a createTTL with a
non-TTL mode and a negative TTL: ZooKeeper 3.8.0 accepts that request and its
SyncThread then dies on the transaction (the server stops, and the transaction
in its log stops it again at every restart).

Two more generators aim at one area each: ACLs (every provider's scheme, of
which ZooKeeper's default configuration has ip and digest only; odd perms; ip
ids as its IPv4-only parser reads them; addauth and whoAmI, whose identities
come in its hash set's order), and quotas (limits and stats nodes made and
changed by hand, with the texts its StatsTrack parses, and the changes under
them it counts). A children generator adds and removes many children under a
few parents in every way, with sessions ending now and then: getChildren and
getEphemerals lists are compared as they come (ZooKeeper's hash sets' order).
A gate generator aims at who hears which watch event: nodes readable by
everyone or by one digest user only, every kind of watch, and multis that
change one path several times in one zxid. A sessions generator moves sessions
between connections: a connection dropped and its session reattached (its
watches stay behind, its ephemerals stay), an attempt with a wrong password
(ZooKeeper closes the session's current connection all the same), a closed
session's reattach (expired), a session abandoned for a new one.

Every generator also runs pipelined: a session sends up to six requests before
it reads their replies, which must come in their places among the watch events
(ZooKeeper sends an event as it applies the change: after the replies of the
requests before it, before the reply of the write that caused it).

What legitimately differs is normalised: zxids are replaced by their rank
among all zxids the transcript shows (ZooKeeper also spends zxids on sessions
and failed writes); times are left out; session ids become the session's name.

Where ZooKeeper is not deterministic, the seeds here avoid it (each seed below
gives the same transcript run after run). Found with 100 extra seeds (7000-7099)
of every generator, plain and pipelined: ZooKeeper 3.8.0 checks a request
pipelined right behind a setACL against the node's OLD ACL until that setACL has
been applied (the PrepRequestProcessor's ChangeRecord for a setACL copies the
node's stat, not its new ACL), so a create, setData or delete the new ACL
forbids (or the old one forbade) is let through or refused depending on timing,
and a create that is let through may then meet NodeExists instead of NoAuth.
Seeds that show it: pipe-acl 7032, 7086, 7095, 7096; pipe-basic 7035, 7061, 7062;
pipe-wide 7052, 7088; pipe-gate 4, 5 and many more (on 7052 ZooKeeper's root cversion
came out 2 higher). Seeds 2000-2001, 3000-3039 and 4000-4029 of every generator,
plain and pipelined (pipe-gate left out), and of the sessions generator met it five
times and showed nothing else: pipe-acl 3006, 3032, 4002, 4018, and pipe-wide 2001,
where a setACL right behind a setACL passed ZooKeeper's ACL check on the old ACL and
met BadVersion, and Conclave answers NoAuth. Run five times each, ZooKeeper gave two
different transcripts of 7086, 7095 and 7061, Conclave one; Conclave always answers
as ZooKeeper does once the setACL is applied.
"""

import random
import struct

import pytest

from conftest import _start_zk
from zk_util import RawSession, parse_notification

I = struct.Struct(">i")
STAT = struct.Struct(">qqqqiiiqiiq")


def s_(b):
    return I.pack(len(b)) + b


WORLD = I.pack(1) + I.pack(31) + s_(b"world") + s_(b"anyone")
PATHS = [b"/s", b"/s/a", b"/s/b", b"/s/a/x", b"/s/b/y", b"/t", b"/t/c"]


class Session:
    """A raw session (zk_util.RawSession) that logs what it hears into a transcript."""

    def __init__(self, port, name, session_id=0, passwd=b"\0" * 16):
        self.raw = RawSession("127.0.0.1", port, 30000, session_id, passwd, io_timeout=10)
        self.session_id = self.raw.session_id
        self.name = name
        self.xid = 0
        self.last_zxid = 0

    def call(self, op, body, log):
        """Sends one request; notifications that come first go to `log`; returns (err, body)."""
        self.xid += 1
        self.raw.send(self.xid, op, body)
        while True:
            xid, _zxid, err, reply = self.raw.read()
            if xid == -1:
                log.append((self.name, "event") + tuple(parse_notification(reply)))
                continue
            assert xid == self.xid
            self.last_zxid = max(self.last_zxid, _zxid)
            return err, reply

    def close(self):
        self.raw.drop()


def _string(b, at):
    n = I.unpack_from(b, at)[0]
    at += 4
    return (None, at) if n < 0 else (b[at:at + n].decode(errors="replace"), at + n)


class Transcript:
    def __init__(self):
        self.entries = []
        self.zxids = set()
        self.sessions = {0: 0}

    def stat(self, b, at):
        czxid, mzxid, _ctime, _mtime, ver, cver, aver, owner, dlen, nch, pzxid = STAT.unpack_from(b, at)
        self.zxids.update([czxid, mzxid, pzxid])
        owner = self.sessions.get(owner, "?")
        return ("stat", ("z", czxid), ("z", mzxid), ver, cver, aver, owner, dlen, nch, ("z", pzxid)), at + STAT.size

    def strings(self, b, at):
        """A list of strings, in the server's order (getChildren's is ZooKeeper's hash set's)."""
        n = I.unpack_from(b, at)[0]
        at += 4
        out = []
        for _ in range(max(n, 0)):
            v, at = _string(b, at)
            out.append(v)
        return tuple(out), at

    def decode(self, op, err, b):
        if err != 0:
            return ()
        if op == 1 or op == 9:
            return (_string(b, 0)[0],)
        if op in (15, 19, 21):
            path, at = _string(b, 0)
            return (path, self.stat(b, at)[0])
        if op == 107:
            return (b.hex(),)
        if op in (14, 22):
            return self.multi_results(b)
        if op in (3, 5, 7):
            return (self.stat(b, 0)[0],)
        if op == 4:
            data, at = _string(b, 0)
            return (data, self.stat(b, at)[0])
        if op in (8, 12):
            kids, at = self.strings(b, 0)
            return (kids, self.stat(b, at)[0]) if op == 12 else (kids,)
        if op == 103:
            return (self.strings(b, 0)[0],)
        if op == 104:
            return (I.unpack_from(b, 0)[0],)
        if op == 6:
            n, at, acl = I.unpack_from(b, 0)[0], 4, []
            for _ in range(n):
                perms = I.unpack_from(b, at)[0]
                scheme, at = _string(b, at + 4)
                ident, at = _string(b, at)
                acl.append((perms, scheme, ident))
            return (tuple(acl), self.stat(b, at)[0])
        return ()

    def multi_results(self, b):
        """A MultiResponse (multi) or its read twin (multiRead): per op a header and its result."""
        out, at = [], 0
        while True:
            typ, done, _err = struct.unpack_from(">i?i", b, at)
            at += 9
            if done:
                return tuple(out)
            if typ == -1:
                out.append(("error", I.unpack_from(b, at)[0]))
                at += 4
            elif typ == 1:
                path, at = _string(b, at)
                out.append(("create", path))
            elif typ == 15:
                path, at = _string(b, at)
                st, at = self.stat(b, at)
                out.append(("create2", path, st))
            elif typ == 5:
                st, at = self.stat(b, at)
                out.append(("setData", st))
            elif typ == 4:
                data, at = _string(b, at)
                st, at = self.stat(b, at)
                out.append((data, st))
            elif typ == 8:
                kids, at = self.strings(b, at)
                out.append(kids)
            else:
                out.append((typ,))  # delete, check: no body

    def normalized(self):
        rank = {z: i for i, z in enumerate(sorted(self.zxids))}

        def norm(x):
            if isinstance(x, tuple):
                if len(x) == 2 and x[0] == "z":
                    return f"z{rank[x[1]]}"
                return tuple(norm(y) for y in x)
            return x
        return [norm(e) for e in self.entries]


def _request(rng):
    p = rng.choice(PATHS)
    watch = b"\1" if rng.random() < 0.5 else b"\0"
    k = rng.randrange(19)
    if k < 3:
        mode = rng.choice([0, 0, 1, 2, 3, 4])
        return rng.choice([1, 15]), s_(p) + s_(b"v%d" % rng.randrange(5)) + WORLD + I.pack(mode)
    if k == 3:
        return 2, s_(p) + I.pack(rng.choice([-1, -1, 0, 1]))
    if k == 4:
        return 5, s_(p) + s_(b"d" * rng.randrange(4)) + I.pack(rng.choice([-1, -1, 0, 1, 2]))
    if k in (5, 6, 7, 8):
        return {5: 3, 6: 4, 7: 8, 8: 12}[k], s_(p) + watch
    if k == 9:
        return 104, s_(p)
    if k == 10:
        return 103, s_(b"/")
    if k == 11:
        ops = []
        for _ in range(rng.randrange(1, 4)):
            q, t = rng.choice(PATHS), rng.randrange(4)
            if t == 0:
                ops.append((1, s_(q) + s_(b"m") + WORLD + I.pack(rng.choice([0, 1, 2]))))
            elif t == 1:
                ops.append((2, s_(q) + I.pack(-1)))
            elif t == 2:
                ops.append((5, s_(q) + s_(b"mm") + I.pack(-1)))
            else:
                ops.append((13, s_(q) + I.pack(rng.choice([-1, 0, 1]))))
        return 14, _multi(ops)
    if k == 12:
        return 106, s_(p) + I.pack(rng.choice([0, 1]))
    if k == 13:
        return 17, s_(p) + I.pack(rng.choice([1, 2, 3]))
    if k == 14:
        return 18, s_(p) + I.pack(rng.choice([1, 2, 3]))
    if k == 15:
        acl = rng.choice([
            WORLD,
            I.pack(1) + I.pack(rng.choice([1, 31, 17])) + s_(b"digest") + s_(b"u:+kMbbGVkfv0dsDIFV9zA8w6K2eI="),
            I.pack(1) + I.pack(31) + s_(b"auth") + s_(b""),
            I.pack(0),
        ])
        return 7, s_(p) + acl + I.pack(rng.choice([-1, -1, 0, 1]))
    if k == 16:
        return 6, s_(p)
    if k == 17:
        return 9, s_(p)
    return 100, I.pack(0) + s_(b"digest") + s_(rng.choice([b"u:p", b"v:q"]))


WIDE_PATHS = PATHS[:5] + [b"/zookeeper", b"/zookeeper/quota", b"/zookeeper/config", b"/zookeeper/x",
                          b"/", b"", b"/s/", b"//s", b"/s/./a", b"s", b"/\xc3\xa9", b"/s/a\x00b"]
TTLS = [-1, 0, 1, 1000, 10**12, 2**40 + 5]


def _multi(ops):
    return b"".join(struct.pack(">i?i", o, False, -1) + b for o, b in ops) + struct.pack(">i?i", -1, True, -1)


def _create_body(rng, p, modes, ttls=None):
    mode = rng.choice(modes)
    body = s_(p) + s_(b"v%d" % rng.randrange(3)) + WORLD + I.pack(mode)
    if ttls is None:
        return body
    # A non-TTL mode with a negative TTL would stop ZooKeeper (see the module's doc).
    return body + struct.pack(">q", rng.choice(ttls if mode in (5, 6) else [t for t in ttls if t >= 0]))


def _wide_request(rng, session):
    p = rng.choice(WIDE_PATHS)
    k = rng.randrange(16)
    if k == 0:
        return rng.choice([1, 15]), _create_body(rng, p, [0, 1, 2, 3, 4, 5, 6, 7, -1])
    if k == 1:
        return 21, _create_body(rng, p, [0, 1, 2, 3, 4, 5, 6, 7], TTLS)
    if k == 2:
        return 19, _create_body(rng, p, [0, 4, 1, 2, 3, 5])
    if k == 3:
        return 2, s_(p) + I.pack(rng.choice([-1, 0, 1]))
    if k == 4:
        return 5, s_(p) + s_(b"d" * rng.randrange(3)) + I.pack(rng.choice([-1, 0, 1]))
    if k == 5:
        return rng.choice([3, 4, 8, 12]), s_(p) + (b"\1" if rng.random() < .5 else b"\0")
    if k == 6:
        return 22, _multi([(rng.choice([4, 8, 4, 8, 3, 12]), s_(rng.choice(WIDE_PATHS)) + b"\0")
                           for _ in range(rng.randrange(4))])
    if k == 7:
        ops = []
        for _ in range(rng.randrange(4)):
            q, t = rng.choice(WIDE_PATHS), rng.randrange(6)
            if t == 0:
                ops.append((rng.choice([1, 15]), _create_body(rng, q, [0, 1, 2, 3, 4, 5, 6, 7])))
            elif t == 1:
                ops.append((21, _create_body(rng, q, [5, 6, 0, 4, 7], TTLS)))
            elif t == 2:
                ops.append((19, _create_body(rng, q, [4, 0, 2])))
            elif t == 3:
                ops.append((2, s_(q) + I.pack(-1)))
            elif t == 4:
                ops.append((5, s_(q) + s_(b"mm") + I.pack(-1)))
            else:
                ops.append((13, s_(q) + I.pack(rng.choice([-1, 0, 1]))))
        return 14, _multi(ops)
    if k == 8:
        return 107, b""
    if k in (9, 10):
        # At the session's own last zxid, so both servers mean the same moment.
        zxid = rng.choice([session.last_zxid, 0, 2**62])
        lists = [[rng.choice(WIDE_PATHS) for _ in range(rng.randrange(3))] for _ in range(3 if k == 9 else 5)]
        return 101 if k == 9 else 105, struct.pack(">q", zxid) + b"".join(
            I.pack(len(paths)) + b"".join(s_(x) for x in paths) for paths in lists)
    if k == 11:
        return 106, s_(p) + I.pack(rng.choice([0, 1]))
    if k == 12:
        return rng.choice([17, 18]), s_(p) + I.pack(rng.choice([1, 2, 3]))
    if k == 13:
        return rng.choice([104, 103, 9, 6]), s_(p)
    if k == 14:
        acl = rng.choice([WORLD, I.pack(0),
                          I.pack(1) + I.pack(rng.choice([1, 31, 17, 0])) + s_(b"world") + s_(b"anyone")])
        return 7, s_(p) + acl + I.pack(rng.choice([-1, 0]))
    return 4, s_(b"/zookeeper/config") + b"\0"


ACL_PATHS = [b"/s", b"/s/a", b"/s/b", b"/t", b"/s/a/x", b"/zookeeper", b"/zookeeper/quota", b"/"]
ACL_IDS = [(b"world", b"anyone"), (b"world", b"nobody"), (b"ip", b"127.0.0.1"), (b"ip", b"127.0.0.0/8"),
           (b"ip", b"10.0.0.1"), (b"ip", b"127.0.0.1/33"), (b"ip", b"bad"), (b"ip", b"::1"), (b"ip", b"0.0.0.0/0"),
           (b"ip", b"127.000.0.+1"), (b"digest", b"u:+kMbbGVkfv0dsDIFV9zA8w6K2eI="), (b"digest", b"u"),
           (b"digest", b"v:x"), (b"auth", b""), (b"auth", b"x"), (b"super", b"x"), (b"x509", b"CN=a"), (b"sasl", b"u")]


def _acl(rng):
    n = rng.choice([0, 1, 1, 1, 2])
    return I.pack(n) + b"".join(
        I.pack(rng.choice([31, 1, 2, 4, 8, 16, 0, 3, 17, 30, 32, -1, 63])) + s_(scheme) + s_(ident)
        for scheme, ident in (rng.choice(ACL_IDS) for _ in range(n)))


def _acl_request(rng, _session):
    """ACLs of every provider (ZooKeeper's default has ip and digest only), odd perms, addauth."""
    p = rng.choice(ACL_PATHS)
    k = rng.randrange(12)
    if k < 3:
        return rng.choice([1, 15]), s_(p) + s_(b"v") + _acl(rng) + I.pack(rng.choice([0, 0, 1, 2]))
    if k == 3:
        return 7, s_(p) + _acl(rng) + I.pack(rng.choice([-1, -1, 0, 1]))
    if k in (4, 5, 6):
        return {4: (6, s_(p)), 5: (2, s_(p) + I.pack(-1)), 6: (5, s_(p) + s_(b"d") + I.pack(-1))}[k]
    if k == 7:
        return rng.choice([3, 4, 8, 12]), s_(p) + (b"\1" if rng.random() < .5 else b"\0")
    if k == 8:
        # Schemes without a provider fail and close the connection: not sent here.
        scheme, cred = rng.choice([(b"digest", b"u:p"), (b"digest", b"v:q"), (b"digest", b"u:wrong"),
                                   (b"digest", b"nocolon"), (b"ip", b"1.2.3.4"), (b"digest", b"")])
        return 100, I.pack(0) + s_(scheme) + s_(cred)
    if k == 9:
        return 107, b""
    if k == 10:
        ops = [(1, s_(rng.choice(ACL_PATHS)) + s_(b"m") + _acl(rng) + I.pack(0)),
               (5, s_(rng.choice(ACL_PATHS)) + s_(b"m") + I.pack(-1)),
               (2, s_(rng.choice(ACL_PATHS)) + I.pack(-1)),
               (13, s_(rng.choice(ACL_PATHS)) + I.pack(-1))]
        rng.shuffle(ops)
        return 14, _multi(ops[:rng.randrange(1, 4)])
    return rng.choice([104, 103, 9]), s_(p)


QUOTA_PATHS = [b"/s", b"/s/a", b"/s/b", b"/s/a/x", b"/t"] + [
    b"/zookeeper/quota" + q + leaf for q in (b"/s", b"/s/a", b"/t") for leaf in (b"", b"/zookeeper_limits", b"/zookeeper_stats")]
# Stats texts ZooKeeper's StatsTrack can parse (one it cannot stops ZooKeeper 3.8.0's SyncThread).
QUOTA_DATA = [b"", b"count=2,bytes=10", b"count=-1,bytes=5", b"count=1,bytes=-1", b"count=0,bytes=0",
              b"bytes=3;count=1", b"count=1,bytes=2,countHardLimit=5", b"count==4,bytes=1"]


def _quota_request(rng, _session):
    """Quota nodes made and changed by hand, and the changes under them that ZooKeeper counts."""
    p = rng.choice(QUOTA_PATHS)
    k = rng.randrange(9)
    if k < 3:
        return rng.choice([1, 15]), s_(p) + s_(rng.choice(QUOTA_DATA)) + WORLD + I.pack(rng.choice([0, 0, 1, 2]))
    if k == 3:
        return 2, s_(p) + I.pack(-1)
    if k == 4:
        return 5, s_(p) + s_(rng.choice(QUOTA_DATA)) + I.pack(-1)
    if k == 5:
        return 4, s_(p) + (b"\1" if rng.random() < .5 else b"\0")
    if k == 6:
        return rng.choice([8, 12]), s_(p) + b"\1"
    if k == 7:
        ops = [(1, s_(rng.choice(QUOTA_PATHS)) + s_(rng.choice(QUOTA_DATA)) + WORLD + I.pack(0)),
               (5, s_(rng.choice(QUOTA_PATHS)) + s_(rng.choice(QUOTA_DATA)) + I.pack(-1)),
               (2, s_(rng.choice(QUOTA_PATHS)) + I.pack(-1))]
        rng.shuffle(ops)
        return 14, _multi(ops[:rng.randrange(1, 4)])
    return 104, s_(p)


# Names for the children generator: nine that share a bucket of a 16-bucket table (the ninth
# makes ZooKeeper's HashMap double its table early, as a table under 64 buckets does instead of
# making a tree of a long bucket), at most three per bucket of 64 (nine in one bucket of 64 or
# more would become a tree, whose order is not modelled), and some plain ones.
CHILD_NAMES = [b"a6", b"aF", b"aV", b"af", b"av", b"b7", b"bG", b"bW", b"bg"] + [b"k%d" % i for i in range(14)] + [
    b"zookeeper", b"\xc3\xa9", b"lock-"]
CHILD_PARENTS = [b"/q", b"/q/r", b"/"]


def _child(rng):
    parent = rng.choice(CHILD_PARENTS)
    return (b"" if parent == b"/" else parent) + b"/" + rng.choice(CHILD_NAMES)


def _child_create(rng, data):
    return s_(_child(rng)) + s_(data) + WORLD + I.pack(rng.choice([0, 0, 1, 2, 3]))


def _children_request(rng, _session):
    """Many children under a few parents, added and removed in every way (one by one,
    sequential, ephemeral, several in one multi in any order): getChildren lists them in
    ZooKeeper's hash set order, which depends on the order they were added in and on how
    large the set ever grew; getEphemerals lists a session's in its own set's order."""
    k = rng.randrange(11)
    if k < 3:
        return rng.choice([1, 15]), _child_create(rng, b"v")
    if k == 10:
        # Persistent and recursive watches see every child event, a closed session's
        # deletions among them, in their order.
        return 106, s_(rng.choice(CHILD_PARENTS)) + I.pack(rng.choice([0, 1]))
    if k == 3:
        return 2, s_(_child(rng)) + I.pack(-1)
    if k == 4:
        ops = [(1, _child_create(rng, b"m")) for _ in range(rng.randrange(1, 6))]
        ops += [(2, s_(_child(rng)) + I.pack(-1)) for _ in range(rng.randrange(2))]
        rng.shuffle(ops)
        return 14, _multi(ops)
    if k == 5:
        return 22, _multi([(rng.choice([8, 12]), s_(rng.choice(CHILD_PARENTS)) + b"\0") for _ in range(2)])
    if k == 6:
        return 103, s_(rng.choice([b"/", b"/q", b""]))
    if k == 7:
        return 1, s_(rng.choice(CHILD_PARENTS[:2])) + s_(b"") + WORLD + I.pack(0)
    return rng.choice([8, 12]), s_(rng.choice(CHILD_PARENTS)) + rng.choice([b"\0", b"\1"])


GATE_PATHS = [b"/w", b"/w/a", b"/w/b", b"/w/a/x", b"/w/a/y"]
DIGEST_U = s_(b"digest") + s_(b"u:+kMbbGVkfv0dsDIFV9zA8w6K2eI=")  # u:p
GATE_ACLS = [WORLD, I.pack(1) + I.pack(31) + DIGEST_U, I.pack(1) + I.pack(1) + s_(b"world") + s_(b"anyone"),
             I.pack(2) + I.pack(30) + s_(b"world") + s_(b"anyone") + I.pack(31) + DIGEST_U]


def _gate_request(rng, _session):
    """Watch events and who may hear them: a few nodes whose ACLs let everyone, one digest
    user or nobody but that user READ, one-shot, persistent and recursive watches, and
    multis that change one path several times (each op's event is checked against the ACL
    of the node that op saw)."""
    p = rng.choice(GATE_PATHS)
    k = rng.randrange(12)
    if k < 2:
        return rng.choice([1, 15]), s_(p) + s_(b"v") + rng.choice(GATE_ACLS) + I.pack(rng.choice([0, 0, 1, 2, 3]))
    if k == 2:
        return 2, s_(p) + I.pack(-1)
    if k == 3:
        return 5, s_(p) + s_(b"d") + I.pack(-1)
    if k == 4:
        return 7, s_(p) + rng.choice(GATE_ACLS) + I.pack(-1)
    if k in (5, 6):
        ops = []
        for _ in range(rng.randrange(1, 5)):
            q, t = rng.choice(GATE_PATHS), rng.randrange(4)
            if t == 0:
                ops.append((1, s_(q) + s_(b"m") + rng.choice(GATE_ACLS) + I.pack(rng.choice([0, 0, 1]))))
            elif t == 1:
                ops.append((2, s_(q) + I.pack(-1)))
            elif t == 2:
                ops.append((5, s_(q) + s_(b"mm") + I.pack(-1)))
            else:
                ops.append((13, s_(q) + I.pack(-1)))
        return 14, _multi(ops)
    if k == 7:
        return rng.choice([3, 4, 8, 12]), s_(p) + b"\1"
    if k == 8:
        return 106, s_(p) + I.pack(rng.choice([0, 1]))
    if k == 9:
        if rng.random() < 0.3:
            return 100, I.pack(0) + s_(b"digest") + s_(rng.choice([b"u:p", b"v:q"]))
        return 18, s_(p) + I.pack(rng.choice([1, 2, 3]))
    if k == 10:
        return 9, s_(p)
    return rng.choice([6, 104]), s_(p)


SESSION_PATHS = [b"/e", b"/e/a", b"/e/b", b"/e/a/x", b"/f"]


def _paths_lists(rng, count):
    lists = [[rng.choice(SESSION_PATHS) for _ in range(rng.randrange(3))] for _ in range(count)]
    return b"".join(I.pack(len(x)) + b"".join(s_(y) for y in x) for x in lists)


def _session_request(rng, session):
    """The requests of the sessions generator: ephemerals and watches to leave behind or
    take along, and setWatches / setWatches2 as a reattached client sends them."""
    p = rng.choice(SESSION_PATHS)
    k = rng.randrange(14)
    if k < 3:
        return rng.choice([1, 15]), s_(p) + s_(b"v") + WORLD + I.pack(rng.choice([0, 1, 1, 2, 3]))
    if k == 3:
        return 2, s_(p) + I.pack(-1)
    if k == 4:
        return 5, s_(p) + s_(b"d") + I.pack(-1)
    if k in (5, 6):
        return rng.choice([3, 4, 8, 12]), s_(p) + b"\1"
    if k == 7:
        return 106, s_(p) + I.pack(rng.choice([0, 1]))
    if k in (8, 9):
        zxid = rng.choice([session.last_zxid, session.last_zxid, 0])
        return (105, struct.pack(">q", zxid) + _paths_lists(rng, 5)) if k == 8 else (
            101, struct.pack(">q", zxid) + _paths_lists(rng, 3))
    if k == 10:
        return 103, s_(rng.choice([b"/", b"/e"]))
    if k == 11:
        return rng.choice([17, 18]), s_(p) + I.pack(rng.choice([1, 2, 3]))
    if k == 12:
        ops = [(1, s_(rng.choice(SESSION_PATHS)) + s_(b"m") + WORLD + I.pack(rng.choice([0, 1])))
               for _ in range(rng.randrange(1, 3))]
        ops += [(2, s_(rng.choice(SESSION_PATHS)) + I.pack(-1)) for _ in range(rng.randrange(2))]
        rng.shuffle(ops)
        return 14, _multi(ops)
    return 9, s_(p)


def _heard_after(session):
    """What a connection the server should have closed gives: "eof" once it ends (after any
    bytes of watch events queued for it before; read within 3 s), "open" if it does not end.
    Why not tell the events apart: whether ZooKeeper writes a watch event queued for the old
    connection before it closes it depends on its threads' timing (seed 8 of the sessions test
    saw "eof" once under CI load where it sees the event first otherwise); a client whose
    session moved gets its watches' events on the new connection either way."""
    session.raw.sock.settimeout(3)
    try:
        while session.raw.sock.recv(4096):
            pass
        return "eof"
    except TimeoutError:
        return "open"
    except OSError:
        return "error"


def _run_sessions(port, seed, n):
    """Two sessions, A and B, whose connections come and go (see the module's doc)."""
    rng = random.Random(seed)
    t = Transcript()
    live = {"A": Session(port, "A"), "B": Session(port, "B")}
    t.sessions.update({s.session_id: name for name, s in live.items()})
    log = t.entries
    abandoned = []

    def reattach(name, s, heard=None):
        # While the old connection is still open: ZooKeeper closes it before it answers
        # (after a drop on the client's side, its sessionMap may forget the new connection:
        # the old one's late close removes the session's entry, whichever connection it
        # names, so a later wrong password closes the new connection or not by timing).
        again = Session(port, name, s.session_id, s.raw.passwd)
        again.last_zxid = s.last_zxid
        live[name] = again
        heard = heard or _heard_after(s)
        s.close()
        return again, heard

    def fresh(name, i):
        s = live[name] = Session(port, name)
        t.sessions[s.session_id] = f"{name}{i}"

    try:
        for i in range(n):
            name = rng.choice("AB")
            s = live[name]
            r = rng.random()
            if r < 0.06:
                # The client gives up on its connection (no closeSession) and reattaches the
                # session on a new one; the server closes the old one.
                again, heard = reattach(name, s)
                log.append((name, i, "reattach", again.raw.negotiated_timeout, again.session_id == s.session_id,
                            again.raw.passwd == s.raw.passwd, heard))
            elif r < 0.08:
                # Another connection offers the session's id with a wrong password: refused,
                # and (as ZooKeeper does) the session's own connection is closed: reattach.
                bad = Session(port, name + "?", s.session_id, bytes(16))
                log.append((name, i, "wrong password", bad.raw.negotiated_timeout, bad.session_id,
                            bad.raw.passwd.hex(), _heard_after(bad)))
                bad.close()
                again, heard = reattach(name, s, _heard_after(s))
                log.append((name, i, "reattach", again.raw.negotiated_timeout, heard))
            elif r < 0.10:
                # The session closes; reattaching it finds it expired.
                s.call(-11, b"", log)
                s.close()
                dead = Session(port, name + "x", s.session_id, s.raw.passwd)
                log.append((name, i, "closed, reattach", dead.raw.negotiated_timeout, dead.session_id,
                            _heard_after(dead)))
                dead.close()
                fresh(name, i)
            elif r < 0.11:
                # The connection drops and a new session takes over (the old one lingers
                # with its ephemerals, past the end of the run).
                s.close()
                abandoned.append(s)
                fresh(name, i)
                log.append((name, i, "abandoned"))
            else:
                op, body = _session_request(rng, s)
                err, reply = s.call(op, body, log)
                log.append((name, i, op, err, t.decode(op, err, reply)))
    finally:
        for s in live.values():
            s.close()
    return t.normalized()


def _run(port, seed, n, generator=None, closes=None):
    """`closes`: whether session B now and then closes and a new one takes its place (by
    default only with the basic generator)."""
    closes = generator is None if closes is None else closes
    rng = random.Random(seed)
    t = Transcript()
    a, b = Session(port, "A"), Session(port, "B")
    t.sessions.update({a.session_id: "A", b.session_id: "B"})
    log = t.entries
    try:
        for i in range(n):
            if closes and rng.random() < (0.01 if generator is None else 0.03):
                b.call(-11, b"", log)
                b.close()
                log.append(("B", i, "closed"))
                b = Session(port, "B")
                t.sessions[b.session_id] = f"B{i}"
                continue
            s = a if rng.random() < 0.5 else b
            op, body = generator(rng, s) if generator else _request(rng)
            err, reply = s.call(op, body, log)
            log.append((s.name, i, op, err, t.decode(op, err, reply)))
    finally:
        a.close()
        b.close()
    return t.normalized()


def _run_pipelined(port, seed, n, generator):
    """As `_run`, but a session sends one to six requests back to back before it reads their
    replies: each reply must come in its place among the watch events (ZooKeeper sends an
    event as it applies the change, between the replies of the requests before and after it).
    An auth request goes alone: ZooKeeper answers it as it arrives, racing its pipeline."""
    rng = random.Random(seed)
    t = Transcript()
    a, b = Session(port, "A"), Session(port, "B")
    t.sessions.update({a.session_id: "A", b.session_id: "B"})
    log = t.entries
    sent_total = 0
    try:
        while sent_total < n:
            s = a if rng.random() < 0.5 else b
            sent = []
            for _ in range(rng.randrange(1, 7)):
                op, body = generator(rng, s)
                if op == 100 and sent:
                    break
                s.xid += 1
                s.raw.send(s.xid, op, body)
                sent.append((s.xid, op))
                sent_total += 1
                if op == 100:
                    break
            for want_xid, op in sent:
                while True:
                    xid, zxid, err, reply = s.raw.read()
                    if xid == -1:
                        log.append((s.name, "event") + tuple(parse_notification(reply)))
                        continue
                    assert xid == want_xid, f"{s.name}: reply to xid {xid} where {want_xid} was due"
                    s.last_zxid = max(s.last_zxid, zxid)
                    log.append((s.name, op, err, t.decode(op, err, reply)))
                    break
    finally:
        a.close()
        b.close()
    return t.normalized()


def _assert_same(reference, conclave):
    for at, (want, got) in enumerate(zip(reference, conclave)):
        assert got == want, f"entry {at}: ZooKeeper {want!r}, Conclave {got!r}; before: {reference[max(0, at - 8):at]}"
    assert len(conclave) == len(reference)


# The container/TTL reaper runs every 10 minutes here, not every second as for the other
# tests: a reap lands between two requests by timing alone (a container left empty, a TTL
# node of 1 ms), so a run that takes longer than a second on a loaded host could see it at
# different points on the two servers (wide seed 9057 did).
QUIET_REAPER = {"container_check_ms": 600000}


@pytest.fixture
def both(tmp_path):
    servers = []
    try:
        for kind in ("zookeeper", "conclave"):
            d = tmp_path / kind
            d.mkdir()
            servers.append(_start_zk(kind, str(d), QUIET_REAPER))
        yield servers
    finally:
        for s in servers:
            s.stop()


# Ten seeds of 300 requests: together they meet every kind of request above many times,
# ACL-gated watch events among them (Debian's ZooKeeper 3.8.0 carries the fix of
# CVE-2024-23944: a session that may not READ a node gets none of its watch events).
@pytest.mark.parametrize("seed", list(range(1, 11)))
def test_the_same_requests_make_the_same_transcript(both, seed):
    reference, conclave = (_run(s.port, seed, 300) for s in both)
    _assert_same(reference, conclave)


# The other generators: twenty seeds of 400 requests of the wider one, ten of 300 for ACLs,
# quotas and watch gates (each found differences that are fixed now).
GENERATORS = {"wide": (_wide_request, 20, 400), "acl": (_acl_request, 10, 300), "quota": (_quota_request, 10, 300),
              "children": (_children_request, 10, 400), "gate": (_gate_request, 10, 300)}


@pytest.mark.parametrize("kind,seed", [(k, seed) for k, (_, seeds, _) in GENERATORS.items()
                                       for seed in range(1, seeds + 1)])
def test_the_same_requests_of_each_kind_make_the_same_transcript(both, kind, seed):
    generator, _, n = GENERATORS[kind]
    # The children generator's sessions also end now and then: their ephemerals go in the
    # order of the session's set, which their parents' child watches see.
    reference, conclave = (_run(s.port, seed, n, generator, closes=kind == "children") for s in both)
    _assert_same(reference, conclave)


# Sessions moving between connections: ten seeds of 300 steps, and one that found a
# reattached connection's checkWatches seeing the old connection's watch (by timing).
@pytest.mark.parametrize("seed", list(range(1, 11)) + [307])
def test_sessions_moving_between_connections_make_the_same_transcript(both, seed):
    reference, conclave = (_run_sessions(s.port, seed, 300) for s in both)
    _assert_same(reference, conclave)


# Seeds beyond the ranges above that once found a difference (fixed since): one revision
# changing a path more than once, each change's event gated by its own node's ACL.
REGRESSIONS = [("basic", 8161), ("wide", 8089), ("gate", 145)]


@pytest.mark.parametrize("kind,seed", REGRESSIONS)
def test_seeds_that_found_differences_make_the_same_transcript(both, kind, seed):
    generator, _, n = GENERATORS.get(kind, (None, 0, 300))
    reference, conclave = (_run(s.port, seed, n, generator, closes=kind == "children") for s in both)
    _assert_same(reference, conclave)


# Every generator again, pipelined: five seeds of 400 requests each.
PIPELINED = {"basic": lambda rng, _session: _request(rng), **{k: g for k, (g, _, _) in GENERATORS.items()}}


# The gate generator's setACLs are frequent: its seeds 4 and 5 meet ZooKeeper's setACL race
# (see the module's doc), so it runs five others.
PIPELINED_SEEDS = {"gate": [1, 2, 3, 6, 7]}


@pytest.mark.parametrize("kind,seed", [(k, seed) for k in PIPELINED for seed in PIPELINED_SEEDS.get(k, range(1, 6))])
def test_pipelined_requests_make_the_same_transcript(both, kind, seed):
    reference, conclave = (_run_pipelined(s.port, seed, 400, PIPELINED[kind]) for s in both)
    _assert_same(reference, conclave)
