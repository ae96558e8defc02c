"""The Rust `etcd-client` crate (0.21.1, crates.io) against the server: the
scenario binary of the separate cargo project compat-tests/rust-client (built
once per session into <repo>/target/rust-client) runs against a fresh server of
each kind.  It checks every step itself against what etcd 3.4.23 answers and
prints one line per step; the output must be identical on both kinds.

The --with-lock step runs etcd-client's lock()/unlock(), which use the v3lock gRPC
service (v3lockpb.Lock).
"""

import subprocess

import pytest

from compat_util import build_rust_scenario

_outputs = {}  # output of the kinds whose run passed, for the direct comparison


@pytest.fixture(scope="session")
def scenario_binary():
    return build_rust_scenario("rust-client", "etcd-client-scenario", " (protoc is needed: Debian's protobuf-compiler)")


# the first run may include the cold build of etcd-client and tonic (minutes on 2 cores)
@pytest.mark.timeout(1800)
def test_rust_etcd_client_scenario(scenario_binary, server):
    cp = subprocess.run([scenario_binary, "--with-lock", server.endpoint], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        stdin=subprocess.DEVNULL, timeout=180)
    out = cp.stdout.decode("utf-8", "replace")
    err = cp.stderr.decode("utf-8", "replace")
    lines = out.splitlines()
    print(out)
    failing = [line for line in lines if not line.startswith("ok ")]
    assert cp.returncode == 0, (f"etcd-client scenario exited {cp.returncode} on {server.kind}:\n"
                                + "\n".join(failing) + (f"\nstderr: {err}" if err else ""))
    assert lines[-1] == "all steps passed"
    # every kind that passed in this session printed exactly the same lines
    for other, theirs in _outputs.items():
        assert lines == theirs, f"etcd-client output differs between {other} and {server.kind}"
    _outputs[server.kind] = lines
