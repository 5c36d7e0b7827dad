"""``workers=N``: N forked processes share the listening sockets; the parent
replaces a worker that dies and stops them all cleanly on SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sys
import textwrap
import time

import pytest

from conftest import Spawned, alive

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need fork")

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from maitre import serve

    def app(environ, start_response):
        body = json.dumps({"pid": os.getpid(),
                           "multiprocess": environ["wsgi.multiprocess"]}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    serve(app, listen=sys.argv[1], workers=2, threads=2)
    """
)


def get(port: int) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/", headers={"Connection": "close"})
    r = c.getresponse()
    assert r.status == 200
    data = json.loads(r.read())
    c.close()
    return data


@pytest.fixture
def cluster(spawn) -> Spawned:
    """The server on port 0, in a session of its own (the spawn fixture SIGKILLs its
    whole process group, so no worker outlives a failed test), once it answers and
    both workers have started (and said so)."""
    server = spawn([sys.executable, "-c", SCRIPT, "127.0.0.1:0"]).wait_serving()
    get(server.port)
    server.wait_for(r"Started worker process", count=2)
    return server


def started(server: Spawned) -> list:
    return [int(m.group(1)) for m in server.matches(r"Started worker process (\d+)")]


def test_two_workers_serve_and_stop_cleanly(cluster):
    workers = started(cluster)
    assert len(workers) == 2
    # Which worker accepts is up to the scheduler: under load one may take many
    # connections in a row, so keep asking (on new connections) for a while.
    seen = set()
    deadline = time.monotonic() + 30
    while seen != set(workers):
        assert time.monotonic() < deadline, f"only {seen} of {workers} answered in 30 s"
        data = get(cluster.port)
        assert data["multiprocess"] is True
        assert data["pid"] in workers, "the parent only supervises"
        seen.add(data["pid"])
        time.sleep(0.01)
    assert cluster.terminate(10) == 0, cluster.output
    deadline = time.monotonic() + 2
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its parent"
        time.sleep(0.05)


def test_a_dead_worker_is_replaced_without_losing_requests(cluster):
    first, second = started(cluster)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while len(started(cluster)) < 3:
        get(cluster.port)  # the survivor keeps answering meanwhile
        assert time.monotonic() < deadline, cluster.output
        time.sleep(0.05)
    replacement = started(cluster)[2]
    assert "was killed by signal SIGKILL; starting a new one" in cluster.output
    pids = {get(cluster.port)["pid"] for _ in range(200)}
    assert first not in pids
    assert pids <= {second, replacement}
    cluster.send_signal(signal.SIGINT)
    assert cluster.wait_exit(10) == 0, cluster.output


def keep_alive_pids(port: int, count: int) -> list:
    """Opens ``count`` connections at once, then asks each which worker serves it."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    try:
        pids = []
        for s in socks:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in socks:
            data = b""
            while not data.endswith(b"}"):
                chunk = s.recv(4096)
                assert chunk, data
                data += chunk
            pids.append(json.loads(data.split(b"\r\n\r\n", 1)[1])["pid"])
        return pids
    finally:
        for s in socks:
            s.close()


def both_serve(server: Spawned) -> None:
    deadline = time.monotonic() + 30
    while {get(server.port)["pid"] for _ in range(4)} != set(started(server)):
        assert time.monotonic() < deadline


def test_a_burst_of_connections_is_shared_by_the_workers(cluster):
    """Every worker is woken for new connections on the shared socket and the first
    to run took the whole burst (50 of wrk's 50 connections to one worker of two);
    now a worker leaves connections to a sibling holding fewer."""
    both_serve(cluster)
    pids = keep_alive_pids(cluster.port, 40)
    counts = sorted(pids.count(pid) for pid in set(pids))
    assert len(counts) == 2 and counts[0] >= 10, f"connections per worker: {counts}"


def test_a_stopped_worker_does_not_hold_connections_back(cluster):
    """A worker leaves connections to a sibling holding fewer, but not for long when the
    sibling takes none: stopped, the other worker serves them all."""
    both_serve(cluster)
    stopped, running = started(cluster)
    os.kill(stopped, signal.SIGSTOP)
    try:
        time.sleep(0.2)  # SIGSTOP takes effect asynchronously
        assert keep_alive_pids(cluster.port, 20) == [running] * 20
    finally:
        os.kill(stopped, signal.SIGCONT)
