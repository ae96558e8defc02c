"""Helpers for the black-box ZooKeeper compatibility tests: the ZkServer handle
(kazoo clients, zkCli.sh, the C client cli_mt, four-letter words), raw kazoo
requests for the opcodes kazoo 2.11 has no API for (containers, TTL nodes,
getEphemerals, getAllChildrenNumber), and the normalisation of what
legitimately differs between two ZooKeeper servers (zxids, timestamps,
session ids) in the CLIs' output.

Client-side noise removed from zkCli.sh output (`ZkServer.zkcli`):
  * stderr: SLF4J's "no binding" banner lines (`SLF4J: ...`) and, should a
    logging backend be on the classpath, log4j/slf4j log lines;
  * stdout: the banner lines `Connecting to HOST:PORT`, `Welcome to
    ZooKeeper!`, `JLine support is disabled`;
  * stdout: the default watcher's output.  zkCli prints every WatchedEvent as
    "\\nWATCHER::" and "\\nWatchedEvent state:S type:T path:P" (one
    println each).  Both are removed from the text; the WatchedEvent lines
    are returned separately in `.events` (minus the session's own connection
    event `state:SyncConnected type:None path:null`), because zkCli's event
    thread prints them whenever they arrive: between two commands' output or
    even in the middle of a line.
Nothing else is touched: blank lines that belong to a command (e.g. `get` of
a node with empty data prints an empty line) stay.
"""

import os
import queue
import re
import signal
import socket
import struct
import subprocess
import time
from collections import namedtuple

from kazoo.protocol.serialization import (Connect, Create, Exists, int_struct, read_string, reply_header_struct,
                                          stat_struct, write_buffer, write_string)
from kazoo.protocol.states import ZnodeStat
from kazoo.security import OPEN_ACL_UNSAFE

from compat_util import stop_process_group

DEFAULT_TIMEOUT = 15

JAVA = os.environ.get("JAVA", "java")
# The Debian zookeeper.jar's manifest Class-Path pulls in its dependencies;
# slf4j-simple (libslf4j-java, a dependency of libzookeeper-java) makes the
# server log to stderr, i.e. into the per-test log file.
ZOOKEEPER_CLASSPATH = os.environ.get(
    "ZOOKEEPER_CLASSPATH", "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar")
ZKCLI_BIN = os.environ.get("ZKCLI_BIN", "/usr/share/zookeeper/bin/zkCli.sh")
CLI_MT_BIN = os.environ.get("CLI_MT_BIN", "/usr/lib/zookeeper/bin/cli_mt")
# zkCli.sh appends $CLIENT_JVMFLAGS to its java command line: a small, quickly
# starting client JVM.
ZKCLI_JVMFLAGS = os.environ.get("ZKCLI_JVMFLAGS", "-Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1")


class CliResult(namedtuple("CliResult", "rc out err")):
    """(rc, stdout, stderr) of a CLI run after normalisation; `.events` holds
    the watch events zkCli printed (see the module doc)."""

    events = ()


class ZkServer:
    """One running server that speaks the ZooKeeper protocol (the real
    ZooKeeper or conclave) on 127.0.0.1:port."""

    def __init__(self, kind, port, proc, log_path, data_dir, workdir, relaunch=None):
        self.kind = kind
        # (launch() -> Popen on the same argv, port and data dir; ready() -> bool), for restart()
        self._relaunch = relaunch
        self.host = "127.0.0.1"
        self.port = port
        self.hosts = f"{self.host}:{port}"
        self.proc = proc
        self.log_path = log_path
        self.data_dir = data_dir
        self.workdir = workdir
        self._clients = []

    def __repr__(self):
        return f"<{self.kind} zk at {self.hosts}>"

    # ------------------------------------------------------------------ kazoo

    def kazoo(self, start=True, **kw):
        """A started KazooClient on this server (stopped and closed at
        teardown).  Session timeout 10 s unless `timeout=` is given; no
        connection/command retries, so a misbehaving server fails a test."""
        from kazoo.client import KazooClient
        kw.setdefault("timeout", 10.0)
        c = KazooClient(hosts=self.hosts, **kw)
        self._clients.append(c)
        if start:
            c.start(timeout=DEFAULT_TIMEOUT)
        return c

    # ------------------------------------------------------------------ zkCli.sh

    def zkcli(self, *commands, merge=False, close=True, timeout=60):
        """Run zkCli.sh -server HOST:PORT once, feeding `commands` one a line
        on stdin (zkCli reads stdin line by line when JLine is not on its
        classpath, as with Debian's package), and return a CliResult.

        rc is zkCli's exit code, which in this mode is the exit code of the
        LAST command (0 ok, 1 a KeeperException / CLI error, 127 an unknown
        command).  With merge=True stderr goes into the same pipe as stdout
        (zkCli flushes each println, so the interleaving is the real one) and
        `err` is ""; zkCli prints e.g. "Created /x" and all errors on stderr.

        close=True appends `quit`, which closes the session (and keeps the
        last command's exit code).  At end of input zkCli just exits, and its
        session -- with its ephemerals -- would live on until it times out.
        """
        env = _zkcli_env()
        text = "".join(c + "\n" for c in commands + (("quit",) if close else ()))
        cp = subprocess.run([ZKCLI_BIN, "-server", self.hosts], input=text.encode(),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                            env=env, timeout=timeout, start_new_session=True)
        out, events = clean_zkcli_stdout(cp.stdout.decode("utf-8", "replace"))
        err = "" if merge else clean_java_stderr(cp.stderr.decode("utf-8", "replace"))
        if merge:
            out = clean_java_stderr(out)
        res = CliResult(cp.returncode, out, err)
        res.events = events
        return res

    def zkcli_command(self, *args, timeout=60):
        """zkCli.sh in its one-command mode, as scripts use it: `zkCli.sh -server
        HOST:PORT ARGS...` runs the one command and exits.  Returns a CliResult with
        stdout and stderr merged in their real order (log lines and the banner
        dropped)."""
        env = _zkcli_env()
        cp = subprocess.run([ZKCLI_BIN, "-server", self.hosts] + list(args), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=timeout,
                            start_new_session=True)
        out, events = clean_zkcli_stdout(cp.stdout.decode("utf-8", "replace"))
        res = CliResult(cp.returncode, clean_java_stderr(out), "")
        res.events = events
        return res

    def zkcli_ok(self, *commands):
        """zkcli(..., merge=True) that requires rc 0; returns the output."""
        r = self.zkcli(*commands, merge=True)
        assert r.rc == 0, (commands, r)
        return r.out

    # ------------------------------------------------------------------ C client

    def cli_mt(self, command, timeout=DEFAULT_TIMEOUT):
        """Run the C client's shell (cli_mt from zookeeper-bin) in batch mode,
        `cli_mt -h HOST:PORT -c COMMAND`: it connects, issues the one
        (asynchronous) command, prints the completion on stderr and exits 0
        when it arrives (it always exits 0).  Returns CliResult with
        stderr normalised by norm_cli_mt().  Only commands with a completion
        work this way (not `exists`, `wexists`, `myid`, `addauth`)."""
        env = dict(os.environ, TZ="UTC")
        cp = subprocess.run([CLI_MT_BIN, "-h", self.hosts, "-c", command],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, timeout=timeout, start_new_session=True)
        return CliResult(cp.returncode, cp.stdout.decode("utf-8", "replace"),
                         norm_cli_mt(cp.stderr.decode("utf-8", "replace")))

    # ------------------------------------------------------------------ 4lw

    def four(self, word, timeout=5):
        """Send a four-letter word on a fresh connection and return the whole
        answer (the server closes the connection after it)."""
        return four_letter_word(self.host, self.port, word, timeout)

    # ------------------------------------------------------------------ teardown

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError as e:
            return f"(no log: {e})"

    def restart(self, down_s=0.0, timeout_s=60, kill=False):
        """Stop the server (SIGTERM to its process group, or SIGKILL with
        kill=True: a crash; its data stays), wait `down_s`, and start it again
        with the same command line on the same port and data dir; returns once it
        answers ruok again.  Clients handed out stay: they see the connection
        drop and reconnect by themselves."""
        launch, ready = self._relaunch
        if kill and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        stop_process_group(self.proc)
        time.sleep(down_s)
        self.proc = launch()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if ready():
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.kind} did not come back after a restart (exit={self.proc.poll()}); "
                             f"log tail:\n{self.log_tail(3000)}")

    def stop(self):
        for c in self._clients:
            try:
                c.stop()
                c.close()
            except Exception:
                pass
        self._clients = []
        stop_process_group(self.proc, self.data_dir)


def _zkcli_env():
    """zkCli.sh's environment: a small client JVM, UTC times, no server JVM flags."""
    env = dict(os.environ)
    env["CLIENT_JVMFLAGS"] = ZKCLI_JVMFLAGS
    env["TZ"] = "UTC"
    env.pop("JVMFLAGS", None)
    return env


def four_letter_word(host, port, word, timeout=5):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word.encode() if isinstance(word, str) else word)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# CLI output normalisation

_BANNER = re.compile(r"^(Connecting to \S+|Welcome to ZooKeeper!|JLine support is (dis|en)abled)$")
_LOG_LINE = re.compile(r"^(SLF4J: |\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d|\[[^\]]+\] (TRACE|DEBUG|INFO|WARN|ERROR) )")
_CONNECT_EVENT = re.compile(r"^WatchedEvent state:\w+ type:None path:null$")


def clean_java_stderr(text):
    """Drop SLF4J banner lines and log lines from a JVM client's output."""
    return "".join(l for l in text.splitlines(keepends=True) if not _LOG_LINE.match(l))


_WATCHER = re.compile(r"\nWATCHER::\n|\n(WatchedEvent state:\w+ type:\w+ path:[^\n]*)\n")


def clean_zkcli_stdout(text):
    """(stdout without banner and watcher output, [WatchedEvent lines]) --
    see the module doc.  zkCli's event thread prints "\\nWATCHER::" and
    "\\nWatchedEvent ..." with one println each (atomic), but it may do so
    in the middle of a line the main thread prints piecewise (`ls` prints
    "[", then each child, then "]"), so they are cut out of the raw text as
    exact substrings, not as lines."""
    events = []

    def cut(m):
        if m.group(1) and not _CONNECT_EVENT.match(m.group(1)):
            events.append(m.group(1))
        return ""

    text = _WATCHER.sub(cut, text)
    keep = [line for line in text.split("\n") if not _BANNER.match(line)]
    return "\n".join(keep), events


# zkCli's StatPrinter: "cZxid = 0x2", "ctime = Tue Dec 01 23:44:34 UTC 2026", ...
_STAT_ZXID = re.compile(r"^(cZxid|mZxid|pZxid) = (0x[0-9a-f]+)$", re.M)
_STAT_TIME = re.compile(r"^(ctime|mtime) = (.+)$", re.M)
_STAT_OWNER = re.compile(r"^ephemeralOwner = (0x[0-9a-f]+)$", re.M)
EPOCH_JAVA = "Thu Jan 01 00:00:00 UTC 1970"


def norm_cli_stat(text):
    """zkCli stat lines with zxids -> <zxid>, times -> <time> and a session
    id -> <session>; the zero values of ZooKeeper's own nodes (0x0, the
    epoch) and `ephemeralOwner = 0x0` of a persistent node stay exact.
    cversion/dataVersion/aclVersion/dataLength/numChildren are untouched."""
    text = _STAT_ZXID.sub(lambda m: m.group(0) if m.group(2) == "0x0" else f"{m.group(1)} = <zxid>", text)
    text = _STAT_TIME.sub(lambda m: m.group(0) if m.group(2) == EPOCH_JAVA else f"{m.group(1)} = <time>", text)
    text = _STAT_OWNER.sub(lambda m: m.group(0) if m.group(1) == "0x0" else "ephemeralOwner = <session>", text)
    return text


def parse_cli_stat(text):
    """{name: int} of the stat lines in zkCli output (zxids/owner parsed from
    hex); times are left out.  For relation checks (mZxid > cZxid ...)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+) = (.*)$", line)
        if not m or m.group(1) in ("ctime", "mtime"):
            continue
        k, v = m.groups()
        try:
            out[k] = int(v, 16) if v.startswith("0x") else int(v)
        except ValueError:
            pass
    return out


STAT_KEYS = ["cZxid", "ctime", "mZxid", "mtime", "pZxid", "cversion", "dataVersion",
             "aclVersion", "ephemeralOwner", "dataLength", "numChildren"]


def cli_stat(cversion=0, version=0, aversion=0, owner=False, length=0, children=0, system=False):
    """The normalised text of a zkCli stat block with the given exact values
    (owner=True: an ephemeral node; system=True: one of ZooKeeper's own nodes,
    zero zxids/times)."""
    z = "0x0" if system else "<zxid>"
    t = EPOCH_JAVA if system else "<time>"
    return (f"cZxid = {z}\nctime = {t}\nmZxid = {z}\nmtime = {t}\npZxid = {z}\n"
            f"cversion = {cversion}\ndataVersion = {version}\naclVersion = {aversion}\n"
            f"ephemeralOwner = {'<session>' if owner else '0x0'}\n"
            f"dataLength = {length}\nnumChildren = {children}\n")


# cli_mt (C client shell) -- its output all goes to stderr.
_MT_DROP = re.compile(r"^(Batch mode: .*|Watcher SESSION_EVENT state = CONNECTED_STATE"
                      r"|Got a new session id: 0x[0-9a-f]+|time = -?\d+ msec"
                      r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+:\d+\(0x[0-9a-f]+\):ZOO_\w+@.*)$")


def norm_cli_mt(text):
    """cli_mt stderr without its connection chatter (batch-mode echo, the
    session event and new session id, `time = N msec` timings, C client log
    lines), with zxids -> <zxid>, times -> <time>, an owner -> <session>."""
    lines = [l for l in text.split("\n") if not _MT_DROP.match(l)]
    text = "\n".join(lines)
    text = re.sub(r"(\t(?:ctime = |mtime=))(.+)", lambda m: m.group(1) + (
        m.group(2) if m.group(2).startswith("Thu Jan  1 00:00:00 1970") else "<time>"), text)
    text = re.sub(r"(\t[cm]zxid=)([0-9a-f]+)", lambda m: m.group(1) + (
        m.group(2) if m.group(2) == "0" else "<zxid>"), text)
    text = re.sub(r"(\tephemeralOwner = )([0-9a-f]+)", lambda m: m.group(1) + (
        m.group(2) if m.group(2) == "0" else "<session>"), text)
    return text


# ---------------------------------------------------------------------------
# Raw requests for opcodes kazoo 2.11 has no API for.  Each is a kazoo
# request object (type = opcode, serialize(), deserialize()) sent with
# client._call() like kazoo's own; errors come back as kazoo's exceptions.

# org.apache.zookeeper.CreateMode flag values
PERSISTENT, EPHEMERAL, PERSISTENT_SEQUENTIAL, EPHEMERAL_SEQUENTIAL = 0, 1, 2, 3
CONTAINER, PERSISTENT_WITH_TTL, PERSISTENT_SEQUENTIAL_WITH_TTL = 4, 5, 6


def _write_create_body(path, data, acl, flags):
    b = bytearray()
    b.extend(write_string(path))
    b.extend(write_buffer(data))
    b.extend(int_struct.pack(len(acl)))
    for a in acl:
        b.extend(int_struct.pack(a.perms) + write_string(a.id.scheme) + write_string(a.id.id))
    b.extend(int_struct.pack(flags))
    return b


def _read_create2_response(buf, offset):
    path, offset = read_string(buf, offset)
    return path, ZnodeStat._make(stat_struct.unpack_from(buf, offset))


class CreateContainerRequest(namedtuple("CreateContainerRequest", "path data acl flags")):
    """OpCode.createContainer (19): CreateRequest body; answer Create2Response."""
    type = 19

    def serialize(self):
        return _write_create_body(self.path, self.data, self.acl, self.flags)

    @classmethod
    def deserialize(cls, buf, offset):
        return _read_create2_response(buf, offset)


class CreateTTLRequest(namedtuple("CreateTTLRequest", "path data acl flags ttl")):
    """OpCode.createTTL (21): CreateRequest body + long ttl (ms); answer Create2Response."""
    type = 21

    def serialize(self):
        b = _write_create_body(self.path, self.data, self.acl, self.flags)
        b.extend(int(self.ttl).to_bytes(8, "big", signed=True))
        return b

    @classmethod
    def deserialize(cls, buf, offset):
        return _read_create2_response(buf, offset)


class GetEphemeralsRequest(namedtuple("GetEphemeralsRequest", "prefix")):
    """OpCode.getEphemerals (103): string prefixPath; answer vector<ustring>."""
    type = 103

    def serialize(self):
        return write_string(self.prefix)

    @classmethod
    def deserialize(cls, buf, offset):
        n = int_struct.unpack_from(buf, offset)[0]
        offset += int_struct.size
        out = []
        for _ in range(max(n, 0)):
            s, offset = read_string(buf, offset)
            out.append(s)
        return out


class GetAllChildrenNumberRequest(namedtuple("GetAllChildrenNumberRequest", "path")):
    """OpCode.getAllChildrenNumber (104): string path; answer int."""
    type = 104

    def serialize(self):
        return write_string(self.path)

    @classmethod
    def deserialize(cls, buf, offset):
        return int_struct.unpack_from(buf, offset)[0]


def call(client, request):
    """Send a raw request on a kazoo client and wait for its answer."""
    result = client.handler.async_result()
    client._call(request, result)
    return result.get(timeout=DEFAULT_TIMEOUT)


def _acl(client, acl):
    from kazoo.security import OPEN_ACL_UNSAFE
    return acl or client.default_acl or OPEN_ACL_UNSAFE


def create_container(client, path, value=b"", acl=None):
    """create(path, CreateMode.CONTAINER) -> (path, ZnodeStat)."""
    return call(client, CreateContainerRequest(path, value, _acl(client, acl), CONTAINER))


def create_ttl(client, path, ttl_ms, value=b"", acl=None, sequence=False):
    """create(path, PERSISTENT[_SEQUENTIAL]_WITH_TTL, ttl) -> (path, ZnodeStat)."""
    flags = PERSISTENT_SEQUENTIAL_WITH_TTL if sequence else PERSISTENT_WITH_TTL
    return call(client, CreateTTLRequest(path, value, _acl(client, acl), flags, ttl_ms))


def get_ephemerals(client, prefix="/"):
    return call(client, GetEphemeralsRequest(prefix))


def get_all_children_number(client, path):
    return call(client, GetAllChildrenNumberRequest(path))


class RawSession:
    """A bare-bones ZooKeeper client on one socket, for what kazoo hides or
    cannot do: the negotiated session timeout of the ConnectResponse, and
    dropping a connection WITHOUT closing the session (a crashed client),
    so that the server has to expire it.  Requests are kazoo request objects
    (kazoo.protocol.serialization), sent one at a time."""

    def __init__(self, host, port, timeout_ms, session_id=0, passwd=b"\0" * 16, io_timeout=DEFAULT_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=io_timeout)
        self._xid = 0
        self._send(Connect(0, 0, timeout_ms, session_id, passwd, False).serialize())
        resp, _ = Connect.deserialize(self._recv(), 0)
        self.negotiated_timeout = resp.time_out  # ms; 0 = session expired/invalid
        self.session_id = resp.session_id
        self.passwd = resp.passwd
        self.notifications = []

    def _send(self, body):
        self.sock.sendall(int_struct.pack(len(body)) + bytes(body))

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        return buf

    def _recv(self):
        (n,) = int_struct.unpack(self._recv_exact(4))
        return self._recv_exact(n)

    def send(self, xid, op, body=b""):
        """Send one packet: xid, opcode, body bytes."""
        self._send(int_struct.pack(xid) + int_struct.pack(op) + bytes(body))

    def read(self):
        """Next packet from the server: (xid, zxid, err, body bytes).
        xid -1 is a watch notification (body: int type, int state, path),
        -2 a ping reply."""
        buf = self._recv()
        xid, zxid, err = reply_header_struct.unpack_from(buf, 0)
        return xid, zxid, err, buf[reply_header_struct.size:]

    def request(self, req):
        """Send one request; returns (zxid, err, result) where result is
        req.deserialize() of the body (None on an error or an empty body).
        Watch notifications (xid -1) that arrive first are collected in
        self.notifications as (type, state, path)."""
        self._xid += 1
        self.send(self._xid, req.type, req.serialize())
        while True:
            xid, zxid, err, body = self.read()
            if xid == -1:
                self.notifications.append(parse_notification(body))
                continue
            assert xid == self._xid, (xid, self._xid)
            result = None
            if err == 0 and body and hasattr(req, "deserialize"):
                result = req.deserialize(body, 0)
            return zxid, err, result

    def set_watches(self, relative_zxid, data=(), exist=(), child=()):
        """SetWatches (xid -8, op 101), as a reconnecting Java client sends it: the
        server fires at once every watch whose node changed after relative_zxid
        and sets the others, then answers.  Returns the notifications that came
        before the answer, as (type, state, path); asserts the answer is OK."""
        self.send(-8, 101, set_watches_body(relative_zxid, data, exist, child))
        notes = []
        while True:
            xid, zxid, err, body = self.read()
            if xid != -1:
                break
            notes.append(parse_notification(body))
        assert (xid, err, body) == (-8, 0, b""), (xid, err, body)
        return notes

    def close_session(self):
        """OpCode.closeSession (-11): ends the session (ephemerals go now)."""
        from kazoo.protocol.serialization import Close
        self._xid += 1
        self._send(int_struct.pack(self._xid) + int_struct.pack(Close.type))
        try:
            self._recv()
        except (ConnectionError, OSError):
            pass
        self.drop()

    def drop(self):
        """Close the socket without closing the session."""
        try:
            self.sock.close()
        except OSError:
            pass


def resume_dropped_session(zk, path, between=lambda: None):
    """A session that made the ephemeral `path` is dropped without closing (a
    crashed client), `between()` runs (e.g. zk.restart), then: a wrong password
    gets timeout 0 / session 0 (and the server closes that connection), the right
    one resumes the session on a new connection with its ephemeral.  Returns the
    resumed RawSession."""
    s = RawSession(zk.host, zk.port, 10000)
    assert s.request(Create(path, b"", OPEN_ACL_UNSAFE, 1))[1:] == (0, path)
    sid, pw = s.session_id, s.passwd
    s.drop()
    between()
    bad = RawSession(zk.host, zk.port, 10000, sid, bytes(16))
    assert (bad.negotiated_timeout, bad.session_id) == (0, 0)
    bad.drop()
    again = RawSession(zk.host, zk.port, 10000, sid, pw)
    assert (again.session_id, again.negotiated_timeout) == (sid, 10000)
    zxid, err, st = again.request(Exists(path, False))
    assert err == 0 and st.ephemeralOwner == sid
    return again


def parse_notification(body):
    """WatcherEvent: (int type, int state, ustring path)."""
    typ, state = struct.unpack_from("!ii", body, 0)
    path, _ = read_string(body, 8)
    return typ, state, path


def write_string_vector(items):
    b = bytearray(int_struct.pack(len(items)))
    for it in items:
        b.extend(write_string(it))
    return b


def set_watches_body(relative_zxid, data=(), exist=(), child=()):
    """OpCode.setWatches (101) body: long relativeZxid, vector<ustring>
    dataWatches, existWatches, childWatches."""
    return (struct.pack("!q", relative_zxid) + write_string_vector(list(data))
            + write_string_vector(list(exist)) + write_string_vector(list(child)))


class Events:
    """A kazoo watch callback that records the WatchedEvents it gets."""

    def __init__(self):
        self.q = queue.Queue()

    def __call__(self, event):
        self.q.put(event)

    def next(self, timeout=10):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no watch event within {timeout}s")

    def none(self, wait=0.5):
        """Assert that no event arrives within `wait` seconds."""
        try:
            ev = self.q.get(timeout=wait)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected watch event {ev}")


def ev(type_, path):
    """The WatchedEvent kazoo delivers for a watch that fired on a live session."""
    from kazoo.protocol.states import KeeperState, WatchedEvent
    return WatchedEvent(type_, KeeperState.CONNECTED, path)


def wait_until(pred, timeout=DEFAULT_TIMEOUT, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
