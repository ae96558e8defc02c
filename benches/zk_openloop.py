#!/usr/bin/env python3
"""Writers that pause between writes, against any ZooKeeper endpoint (Conclave's or Apache's).

    python3 benches/zk_openloop.py HOST PORT WRITERS THINK_MS SECONDS

Each writer is a thread with its own session (raw wire protocol, standard library only): it
creates /olN, then repeats: sleep an exponentially distributed time of mean THINK_MS, setData
/olN (100 bytes, version -1), wait for the reply. Prints the count and the latency
percentiles (send to reply) over all writers. Why: conclave-bench's clients write back to back
(closed loop), which is what group commit is tuned for; a configuration store's writers mostly
write now and then, and a batching rule that waits for writers to come back can cost them
(benches/README.md, December 6, night 2). Not part of the test suite.
"""
import random
import socket
import struct
import sys
import threading
import time


def frame(body):
    return struct.pack(">i", len(body)) + body


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("server closed the connection")
        out += chunk
    return out


def recv_frame(sock):
    (n,) = struct.unpack(">i", recv_exact(sock, 4))
    return recv_exact(sock, n)


def zk_string(s):
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def connect(host, port):
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # ConnectRequest: protocol 0, last zxid 0, timeout 30 s, session 0, 16-byte password
    sock.sendall(frame(struct.pack(">iqiq", 0, 0, 30000, 0) + struct.pack(">i", 16) + b"\0" * 16))
    recv_frame(sock)
    return sock


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    writers, think_ms, seconds = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    latencies, errors, lock = [], [], threading.Lock()

    def writer(i):
        sock = connect(host, port)
        path = "/ol%d" % i
        world_anyone = struct.pack(">i", 1) + struct.pack(">i", 31) + zk_string("world") + zk_string("anyone")
        # create (op 1), persistent; NodeExists from an earlier run is fine
        sock.sendall(frame(struct.pack(">ii", 1, 1) + zk_string(path) + struct.pack(">i", 1) + b"x" + world_anyone + struct.pack(">i", 0)))
        recv_frame(sock)
        xid, mine, end = 2, [], time.time() + seconds
        while time.time() < end:
            time.sleep(random.expovariate(1000.0 / think_ms))
            t0 = time.perf_counter()
            sock.sendall(frame(struct.pack(">ii", xid, 5) + zk_string(path) + struct.pack(">i", 100) + b"v" * 100 + struct.pack(">i", -1)))
            reply = recv_frame(sock)
            mine.append(time.perf_counter() - t0)
            err = struct.unpack(">iqi", reply[:16])[2]
            if err != 0:
                with lock:
                    errors.append(err)
            xid += 1
        sock.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    n = len(latencies)
    if n == 0:
        print("no writes")
        return 2
    pct = lambda p: latencies[min(n - 1, int(n * p))] * 1e6
    print("writers %d think %.1f ms: %d sets, latency us p50 %.0f p90 %.0f p99 %.0f mean %.0f; %d errors"
          % (writers, think_ms, n, pct(0.5), pct(0.9), pct(0.99), sum(latencies) / n * 1e6, len(errors)))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
