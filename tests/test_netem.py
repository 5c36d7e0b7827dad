"""A real network, simulated (issue 14): 100 concurrent clients in a network
namespace reach the server across a veth pair shaped by ``tc netem`` (50 ms
delay, 1% loss, reordering) and each gets intact bodies.

Needs root, iproute2 and the kernel's netem qdisc; skipped with the reason
otherwise. The namespace (and with it the veth pair) is removed even on failure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

NETEM = ["delay", "50ms", "10ms", "loss", "1%", "reorder", "25%", "50%"]
CLIENTS = 100
# Each client: two requests on one keep-alive connection, checked by sha256.
CLIENT = r"""
import hashlib, socket, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
failures = []

def read_response(sock, buf):
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise EOFError("closed before the head")
        buf += data
    head, _, buf = buf.partition(b"\r\n\r\n")
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(buf) < length:
        data = sock.recv(65536)
        if not data:
            raise EOFError("closed mid-body")
        buf += data
    return head, buf[:length], buf[length:]

def one(i):
    try:
        sock = socket.create_connection((host, port), timeout=40)
        body = bytes([i % 256]) * 65536
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n" + body)
        head, got, rest = read_response(sock, b"")
        assert head.startswith(b"HTTP/1.1 200") and hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
        sock.sendall(b"GET /blob HTTP/1.1\r\nHost: t\r\n\r\n")
        head, got, rest = read_response(sock, rest)
        assert head.startswith(b"HTTP/1.1 200") and hashlib.sha256(got).hexdigest() == sys.argv[4], "blob differs"
        sock.close()
    except Exception as e:
        failures.append(f"client {i}: {e!r}")

threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
print("\n".join(failures) or "ok")
sys.exit(1 if failures else 0)
"""

BLOB = os.urandom(256 * 1024)


def app(environ, start_response):
    body = environ["wsgi.input"].read() if environ["REQUEST_METHOD"] == "POST" else BLOB
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=10)


@pytest.fixture
def shaped_link():
    """A namespace joined to this one by a veth pair, netem on both ends:
    yields (namespace, host-side address)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for ip netns")
    if not (shutil.which("ip") and shutil.which("tc")):
        pytest.skip("needs iproute2 (ip, tc)")
    tag = f"mf{os.getpid() % 100000}"
    ns, outside, inside = f"{tag}ns", f"{tag}a", f"{tag}b"
    net = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    setup = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", outside, "type", "veth", "peer", "name", inside],
        ["ip", "link", "set", inside, "netns", ns],
        ["ip", "addr", "add", f"{net}.1/24", "dev", outside],
        ["ip", "link", "set", outside, "up"],
        ["ip", "-n", ns, "addr", "add", f"{net}.2/24", "dev", inside],
        ["ip", "-n", ns, "link", "set", inside, "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        ["tc", "qdisc", "add", "dev", outside, "root", "netem", *NETEM],
        ["tc", "-n", ns, "qdisc", "add", "dev", inside, "root", "netem", *NETEM],
    ]
    try:
        for step in setup:
            done = sh(*step)
            if done.returncode != 0:
                reason = f"{' '.join(step)}: {done.stderr.strip()}"
                if step[0] == "tc":
                    pytest.skip(f"no netem in this kernel ({reason})")
                pytest.fail(reason)
        yield ns, f"{net}.1"
    finally:
        # Deleting the namespace deletes the veth pair with it; the host side
        # too, should the move into the namespace have failed.
        sh("ip", "netns", "del", ns)
        sh("ip", "link", "del", outside)


@pytest.mark.timeout(90)
def test_clients_across_a_lossy_delayed_reordering_link(serve, shaped_link):
    ns, host = shaped_link
    s = serve(app, host=host, threads=8)
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, host, str(s.port), str(CLIENTS),
         hashlib.sha256(BLOB).hexdigest()],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
