"""Helpers shared by the compatibility tests: the Server handle, background
etcdctl processes with line reading under a timeout, free ports and stopping a
server's process group, the build of the Rust scenario crates, and the
normalisation of values that legitimately differ between two servers
(cluster/member ids, raft term/index, lease ids, db size, timestamps)."""

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

DEFAULT_TIMEOUT = 15


def _etcdctl_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    return env


class BackgroundProc:
    """A subprocess whose stdout is read line by line on a thread."""

    def __init__(self, argv, env, stdin=False):
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self._lines = queue.Queue()
        self._pushback = []
        self._stderr = []
        self._out_thread = threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines), daemon=True)
        self._err_thread = threading.Thread(target=self._pump_err, daemon=True)
        self._out_thread.start()
        self._err_thread.start()

    @staticmethod
    def _pump(stream, q):
        for raw in iter(stream.readline, b""):
            q.put(raw.decode("utf-8", "replace").rstrip("\n"))
        q.put(None)

    def _pump_err(self):
        for raw in iter(self.proc.stderr.readline, b""):
            self._stderr.append(raw.decode("utf-8", "replace"))

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def close_stdin(self):
        self.proc.stdin.close()

    def read_line(self, timeout=DEFAULT_TIMEOUT):
        """Next stdout line; AssertionError on timeout or EOF."""
        if self._pushback:
            line = self._pushback.pop()
            if line is None:
                self._pushback.append(None)
                raise AssertionError(f"EOF from {self.argv} (rc={self.proc.poll()}); "
                                     f"stderr: {''.join(self._stderr)!r}")
            return line
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"timed out after {timeout}s waiting for output of {self.argv}; "
                                 f"stderr so far: {''.join(self._stderr)!r}")
        if line is None:
            self._pushback.append(None)
            raise AssertionError(f"EOF from {self.argv} (rc={self.proc.poll()}); "
                                 f"stderr: {''.join(self._stderr)!r}")
        return line

    def read_lines(self, n, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        return [self.read_line(max(0.01, deadline - time.monotonic())) for _ in range(n)]

    def no_more_output(self, wait=0.3):
        """True if no stdout line (nor EOF) arrives within `wait` seconds."""
        if self._pushback:
            return False
        try:
            line = self._lines.get(timeout=wait)
        except queue.Empty:
            return True
        self._pushback.append(line)
        return False

    def wait(self, timeout=DEFAULT_TIMEOUT):
        """Wait for exit; returns (rc, remaining stdout lines, stderr)."""
        rc = self.proc.wait(timeout=timeout)
        self._out_thread.join(timeout)
        self._err_thread.join(timeout)
        rest = [l for l in reversed(self._pushback) if l is not None]
        self._pushback = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                break
            rest.append(line)
        return rc, rest, "".join(self._stderr)

    @property
    def stderr(self):
        return "".join(self._stderr)

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def interrupt(self):
        """SIGINT, like Ctrl-C."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (all bound at once, so none repeats)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def stop_process_group(proc, data_dir=None, grace_s=10):
    """Stops a server started in its own session (SIGTERM to its group, SIGKILL after
    `grace_s`) and removes its data dir, if one is given."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    if data_dir is not None:
        shutil.rmtree(data_dir, ignore_errors=True)


def check_scenario_output(program, scenario, kind, rc, lines, err, expected):
    """For the scenario programs (Curator, node): prints what `program` printed for
    `scenario` on the server `kind` (pytest shows it when the test fails), then
    asserts it is `expected` line for line and that the program exited 0."""
    print(f"--- {program} {scenario} on {kind} (exit {rc}):")
    print("\n".join(lines))
    if err.strip():
        print("--- its stderr (client warnings):\n" + err[-8000:])
    assert lines == expected, f"{program} {scenario}: the output differs from ZooKeeper's on {kind}"
    assert rc == 0


def build_rust_scenario(crate, binary, hint=""):
    """Builds the scenario program of compat-tests/<crate> (its own Cargo project, its own
    target dir under target/) and returns the binary's path; fails the test with cargo's
    output if the build fails."""
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.path.join(os.path.dirname(here), "target", crate)
    found = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    if not os.path.exists(found):
        pytest.fail(f"cargo not found (needed to build compat-tests/{crate})", pytrace=False)
    env = dict(os.environ)
    env.pop("CARGO_TARGET_DIR", None)
    cp = subprocess.run([found, "build", "--quiet", "--manifest-path", os.path.join(here, crate, "Cargo.toml"),
                         "--target-dir", target],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        env=env, timeout=1500)
    if cp.returncode != 0:
        pytest.fail(f"cargo build of compat-tests/{crate} failed{hint}:\n"
                    + cp.stdout.decode("utf-8", "replace")[-6000:], pytrace=False)
    return os.path.join(target, "debug", binary)


def port_open(port):
    """True if something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Server:
    def __init__(self, kind, port, peer_port, data_dir, proc, log_path, etcdctl_bin):
        self.kind = kind
        self.port = port
        self.peer_port = peer_port
        self.endpoint = f"127.0.0.1:{port}"
        self.url = f"http://127.0.0.1:{port}"
        self.peer_url = f"http://127.0.0.1:{peer_port}"
        self.data_dir = data_dir
        self.proc = proc
        self.log_path = log_path
        self.etcdctl_bin = etcdctl_bin
        self._bg = []

    def __repr__(self):
        return f"<{self.kind} at {self.endpoint}>"

    def _argv(self, args, endpoint=None):
        return [self.etcdctl_bin, f"--endpoints={endpoint or self.endpoint}"] + [str(a) for a in args]

    def etcdctl(self, *args, input=None, check=False, timeout=DEFAULT_TIMEOUT, endpoint=None):
        """Run etcdctl (against `endpoint` if given, e.g. the server's URL); returns
        (returncode, stdout, stderr) as text."""
        cp = subprocess.run(self._argv(args, endpoint), input=input.encode() if isinstance(input, str) else input,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_etcdctl_env(), timeout=timeout)
        out = cp.stdout.decode("utf-8", "replace")
        err = cp.stderr.decode("utf-8", "replace")
        if check and cp.returncode != 0:
            raise AssertionError(f"etcdctl {' '.join(map(str, args))} failed rc={cp.returncode}\n"
                                 f"stdout: {out!r}\nstderr: {err!r}")
        return cp.returncode, out, err

    def etcdctl_raw(self, *args, input=None, timeout=DEFAULT_TIMEOUT):
        """Like etcdctl() but stdout is bytes (for -w protobuf)."""
        cp = subprocess.run(self._argv(args), input=input, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_etcdctl_env(), timeout=timeout)
        return cp.returncode, cp.stdout, cp.stderr.decode("utf-8", "replace")

    def ok(self, *args, input=None, endpoint=None):
        """Run etcdctl, require rc 0 and an empty (log-free) stderr; return stdout."""
        rc, out, err = self.etcdctl(*args, input=input, endpoint=endpoint)
        assert (rc, strip_logs(err)) == (0, ""), (args, rc, out, err)
        return out

    def etcdctl_bg(self, *args, stdin=False):
        """Start etcdctl in the background (killed at teardown)."""
        p = BackgroundProc(self._argv(args), _etcdctl_env(), stdin=stdin)
        self._bg.append(p)
        return p

    def client(self, **kw):
        """A python etcd3 client (closed at teardown); unary calls time out
        after 10 s so that a misbehaving server fails a test, not hangs it."""
        import etcd3
        kw.setdefault("timeout", 10)
        c = etcd3.client(host="127.0.0.1", port=self.port, **kw)
        self._bg.append(c)
        return c

    def wait_healthy(self, timeout_s):
        """True once `etcdctl endpoint health` succeeds; False if the process exits
        or `timeout_s` passes first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if port_open(self.port):
                rc, _, _ = self.etcdctl("--dial-timeout=1s", "--command-timeout=1s", "endpoint", "health")
                if rc == 0:
                    return True
            time.sleep(0.05)
        return False

    def restart(self, timeout_s=30):
        """Stops the server (SIGTERM) and starts it again with the same flags and data
        directory, on the same ports; waits until it is healthy."""
        argv, env = self.launch
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        assert self.wait_healthy(timeout_s), f"{self.kind} did not come back after a restart"

    def stop(self):
        for p in self._bg:
            try:
                if isinstance(p, BackgroundProc):
                    p.kill()
                else:
                    p.close()
            except Exception:
                pass
        self._bg = []
        stop_process_group(self.proc, self.data_dir)


# ---------------------------------------------------------------------------
# normalisation

def strip_logs(stderr):
    """stderr without the client's JSON log lines ({"level":...})."""
    return "".join(l for l in stderr.splitlines(keepends=True) if not l.startswith('{"level"'))


def client_logs(stderr):
    """The client's JSON log lines reduced to what the server decides:
    (level, msg, error) -- the error holds the gRPC code and description."""
    out = []
    for l in stderr.splitlines():
        if l.startswith('{"level"'):
            d = json.loads(l)
            out.append((d.get("level"), d.get("msg"), d.get("error")))
    return out


def error_of(stderr):
    """The gRPC error text the client logged, e.g.
    'rpc error: code = OutOfRange desc = etcdserver: mvcc: ...'."""
    logs = client_logs(stderr)
    return logs[-1][2] if logs else None


# JSON headers printed by etcdctl: the ids and raft term differ per server.
_HEADER_KEYS = {"cluster_id", "member_id", "raft_term"}


def norm_json(obj, lease_ids=None):
    """Recursively replace server identity values with placeholders.

    lease_ids: dict {real_id: placeholder} filled in first-seen order, used
    for keys named ID/id/lease where the value is a lease id."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in _HEADER_KEYS and isinstance(v, int):
                out[k] = f"<{k}>"
            elif k in ("dbSize", "dbSizeInUse", "raftIndex", "raftAppliedIndex", "raftTerm") and isinstance(v, int):
                out[k] = f"<{k}>"
            elif k in ("leader",) and isinstance(v, int):
                out[k] = "<member_id>"
            elif lease_ids is not None and k in ("ID", "id", "lease") and isinstance(v, int) and v != 0:
                out[k] = lease_ids.setdefault(v, f"<lease{len(lease_ids) + 1}>")
            else:
                out[k] = norm_json(v, lease_ids)
        return out
    if isinstance(obj, list):
        return [norm_json(v, lease_ids) for v in obj]
    return obj


def jl(text, lease_ids=None):
    """Parse etcdctl -w json output (one document) and normalise it."""
    return norm_json(json.loads(text), lease_ids)


def jlines(text, lease_ids=None):
    """Parse several concatenated JSON documents (watch -w json prints one per
    line) and normalise each."""
    dec = json.JSONDecoder()
    i, docs = 0, []
    text = text.strip()
    while i < len(text):
        obj, j = dec.raw_decode(text, i)
        docs.append(norm_json(obj, lease_ids))
        i = j
        while i < len(text) and text[i] in " \r\n\t":
            i += 1
    return docs


_HEX_LEASE = re.compile(r"\b[0-9a-f]{16}\b")


def norm_hex_ids(text, mapping=None):
    """Replace 16-hex-digit ids (lease ids, member ids) by <id1>, <id2>... in
    first-seen order."""
    mapping = {} if mapping is None else mapping

    def rep(m):
        return mapping.setdefault(m.group(0), f"<id{len(mapping) + 1}>")

    return _HEX_LEASE.sub(rep, text)


def b64(s):
    import base64
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def wait_until(pred, timeout=DEFAULT_TIMEOUT, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
