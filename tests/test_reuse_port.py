"""``reuse_port=True`` with ``workers=N`` (Linux): each worker serves its own listening
socket of a ``SO_REUSEPORT`` group the parent bound before fork, and the parent's
``stats()`` shows each worker's socket and queue."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import maitre
from conftest import alive, connect, read_until_close, wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reuse_port is Linux only"
)

# The parent prints its effective port and metrics port, then answers each line on
# stdin with its stats() as JSON. GET /slow sleeps 0.5 s; every response says which
# process served it.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading, time
    import maitre

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            time.sleep(0.5)
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    options = dict(listen="127.0.0.1:0", workers=2, threads=2, reuse_port=True,
                   metrics="127.0.0.1:0")
    options.update(json.loads(sys.argv[1]))
    server = maitre.create_server(app, **options)
    print(json.dumps([server.effective_listen, server.effective_metrics[1]]), flush=True)

    def answer():
        for _ in sys.stdin:
            print(json.dumps(server.stats()), flush=True)

    threading.Thread(target=answer, daemon=True).start()
    server.run()
    """
)


class Cluster:
    def __init__(self, **options) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, json.dumps(options)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # stderr is pytest's: shown with a failure, and never a full pipe blocking the server
        listen, self.metrics_port = json.loads(self.proc.stdout.readline())
        assert len(listen) == 1, f"one address, however many sockets: {listen}"
        self.port = listen[0][1]
        assert wait_for(lambda: len(self.stats()["workers"]) == 2, timeout=20)
        # Both have started serving (a worker counts in stats() just before its loop runs).
        seen = set()
        deadline = time.monotonic() + 20
        while len(seen) < 2:
            assert time.monotonic() < deadline, f"only {seen} answered"
            with connect(self.port) as s:
                request(s)
                seen.add(int(response(s)))

    def stats(self) -> dict:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def pids(self) -> dict:
        """Worker slot -> pid, from the parent's stats."""
        return {w["worker"]: w["pid"] for w in self.stats()["workers"]}

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            f.close()


@pytest.fixture
def cluster():
    c = Cluster()
    try:
        yield c
    finally:
        c.close()


def request(sock: socket.socket, path: str = "/") -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())


def response(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """The body of a 200 response; the server closes after it (Connection: close)."""
    data = read_until_close(sock, timeout=timeout)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
    return data.split(b"\r\n\r\n", 1)[1]


def test_both_workers_take_connections_on_their_own_sockets(cluster):
    assert cluster.port != 0, "port 0 gave a real port"
    served = []
    for _ in range(64):
        with connect(cluster.port) as s:
            request(s)
            served.append(int(response(s)))
    pids = cluster.pids()
    assert set(served) == set(pids.values()), f"each worker served some: {served}"
    stats = cluster.stats()
    by_worker = {w["worker"]: w["connections"]["accepted"] for w in stats["workers"]}
    assert all(n > 0 for n in by_worker.values()), by_worker
    # The 64, and the fixture's own until both workers had answered.
    assert sum(by_worker.values()) == stats["connections"]["accepted"] >= 64
    assert sum(w["requests"]["total"] for w in stats["workers"]) == stats["requests"]["total"]
    # One listener per worker on the one address, labelled, each with its own queue.
    listeners = sorted(stats["listeners"], key=lambda l: l["worker"])
    assert [(l["worker"], l["address"], l["kind"]) for l in listeners] == [
        (0, f"127.0.0.1:{cluster.port}", "tcp"), (1, f"127.0.0.1:{cluster.port}", "tcp")]
    assert all(l["backlog_requested"] == 1024 and l["queue_length"] == 0 for l in listeners)
    assert [l["drops"] for l in listeners] == [0, 0]  # each socket's own kernel count
    # Each worker's own view (its /stats, from whichever worker answers) shows its
    # socket only.
    for _ in range(6):
        with connect(cluster.metrics_port) as s:
            request(s, "/stats")
            own = json.loads(response(s))
        slot = next(w["worker"] for w in own["workers"] if w["pid"] == own["pid"])
        assert [l["worker"] for l in own["listeners"]] == [slot]
    # And /metrics labels the listener with its worker.
    with connect(cluster.metrics_port) as s:
        request(s, "/metrics")
        text = response(s).decode()
    found = re.findall(r'^maitre_listen_queue_length\{listener="127\.0\.0\.1:(\d+)",'
                       r'worker="(\d)"\} 0$', text, re.M)
    assert len(found) == 1 and found[0][0] == str(cluster.port), text
    drops = re.findall(r'^maitre_listen_drops_total\{listener="127\.0\.0\.1:(\d+)",'
                       r'worker="(\d)"\} 0$', text, re.M)
    assert drops == found, text


def stopped(pid: int) -> bool:
    """Every thread of ``pid`` is stopped (SIGSTOP takes effect asynchronously)."""
    tasks = os.listdir(f"/proc/{pid}/task")
    states = []
    for tid in tasks:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            states.append(f.read().rsplit(")", 1)[1].split()[0])
    return all(state == "T" for state in states)


def test_a_dead_workers_queue_waits_for_its_replacement(cluster):
    """A worker that stops accepting keeps its share of new connections in its own
    queue; the parent holds its socket, so when the worker dies the queue is not reset
    but served by the replacement (bound in each worker, the kernel would reset it)."""
    pids = cluster.pids()
    os.kill(pids[0], signal.SIGSTOP)
    assert wait_for(lambda: stopped(pids[0])), "SIGSTOP did not take"
    socks = []
    try:
        for _ in range(40):
            s = connect(cluster.port, timeout=10)
            request(s)
            socks.append(s)
        def queued() -> dict:
            return {l["worker"]: l["queue_length"] for l in cluster.stats()["listeners"]}

        # The live worker may take a moment to accept its share.
        assert wait_for(lambda: queued()[0] > 0 and queued()[1] == 0), queued()
        counts = queued()
    finally:
        os.kill(pids[0], signal.SIGKILL)
    assert wait_for(lambda: set(cluster.pids()) == {0, 1} and cluster.pids()[0] != pids[0],
                    timeout=10)
    replacement = cluster.pids()[0]
    served = [int(response(s)) for s in socks]
    for s in socks:
        s.close()
    assert served.count(replacement) == counts[0], (counts, served)
    assert set(served) == {replacement, pids[1]}


def test_sigterm_finishes_in_flight_requests_on_every_worker(cluster):
    pids = cluster.pids()
    socks = []
    # Slow requests until both workers run one.
    deadline = time.monotonic() + 10
    while not all(w["requests"]["in_app"] for w in cluster.stats()["workers"]):
        assert time.monotonic() < deadline, cluster.stats()["workers"]
        s = connect(cluster.port)
        request(s, "/slow")
        socks.append(s)
        time.sleep(0.02)
    cluster.proc.send_signal(signal.SIGTERM)
    served = {int(response(s)) for s in socks}
    assert served == set(pids.values())
    assert cluster.proc.wait(10) == 0
    assert wait_for(lambda: not any(alive(p) for p in pids.values()), timeout=5)


def test_sigterm_serves_the_connections_queued_on_every_workers_socket():
    """At a stop each worker takes what the kernel queued on its own socket and serves
    it; left there, it would be reset when the parent closes the sockets."""
    cluster = Cluster(threads=1, connection_limit=1)
    socks = []
    try:
        pids = cluster.pids()
        for _ in range(12):
            s = connect(cluster.port, timeout=15)
            request(s, "/slow")
            socks.append(s)

        def queued() -> int:
            return sum(l["queue_length"] for l in cluster.stats()["listeners"])

        # Each worker holds one connection (its connection_limit): the rest queue.
        assert wait_for(lambda: queued() >= 10, timeout=5), cluster.stats()["listeners"]
        cluster.proc.send_signal(signal.SIGTERM)
        served = [int(response(s, timeout=15)) for s in socks]
        assert len(served) == 12 and set(served) <= set(pids.values()), served
        assert cluster.proc.wait(15) == 0
    finally:
        for s in socks:
            s.close()
        cluster.close()


def test_a_port_in_use_fails_at_start():
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen(1)
    # Another SO_REUSEPORT listener of this user: binding with SO_REUSEPORT alone would
    # join its group and silently split its traffic.
    group = socket.socket()
    group.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    group.bind(("127.0.0.1", 0))
    group.listen(1)
    try:
        for taken in (plain, group):
            port = taken.getsockname()[1]
            with pytest.raises(OSError) as info:
                maitre.create_server(lambda e, s: [], listen=f"127.0.0.1:{port}", workers=2,
                                     reuse_port=True)
            assert info.value.errno == errno.EADDRINUSE
            assert f"could not listen on 127.0.0.1:{port}" in str(info.value)
    finally:
        plain.close()
        group.close()


def test_port_zero_binds_every_workers_socket_on_one_real_port():
    server = maitre.create_server(lambda e, s: [], listen="127.0.0.1:0 [::1]:0", workers=3,
                                  reuse_port=True)
    try:
        listen = server.effective_listen
        assert [host for host, _ in listen] == ["127.0.0.1", "::1"]
        assert all(port != 0 for _, port in listen)
        listeners = server.stats()["listeners"]
        assert [(l["address"], l["worker"]) for l in listeners] == [
            (f"127.0.0.1:{listen[0][1]}", w) for w in range(3)
        ] + [(f"[::1]:{listen[1][1]}", w) for w in range(3)]
    finally:
        server._listeners.close()
