"""``workers=N``: N forked processes share the listening sockets; the parent
replaces a worker that dies and stops them all cleanly on SIGTERM."""

from __future__ import annotations

import http.client
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

from conftest import alive

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
def cluster(tmp_path):
    """The server on port 0, in a session of its own: teardown SIGKILLs its whole
    process group, so no worker outlives a failed test."""
    log = open(tmp_path / "stderr.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "127.0.0.1:0"], stderr=log, text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            found = re.search(r"Serving on http://127\.0\.0\.1:(\d+)", open(log.name).read())
            if found:
                port = int(found.group(1))
                break
            assert proc.poll() is None, open(log.name).read()
            assert time.monotonic() < deadline, "the server never logged its port"
            time.sleep(0.05)
        while True:
            try:
                get(port)
                break
            except OSError:
                assert proc.poll() is None, open(log.name).read()
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.1)

        # Both workers have started (and said so) before a test looks.
        while len(_started(log)) < 2:
            assert proc.poll() is None, open(log.name).read()
            assert time.monotonic() < deadline, "the workers never both started"
            time.sleep(0.05)
        yield proc, port, lambda: _started(log), log
    finally:
        # Unless the parent was reaped (its pid, the group's id, may be reused) with
        # no worker of its group left, kill the group.
        if proc.poll() is None or any(_in_group(pid, proc.pid) for pid in _started(log)):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(5)
        log.close()


def _started(log) -> list:
    return [int(p) for p in re.findall(r"Started worker process (\d+)", open(log.name).read())]


def _in_group(pid: int, pgid: int) -> bool:
    try:
        return alive(pid) and os.getpgid(pid) == pgid
    except ProcessLookupError:
        return False


def test_two_workers_serve_and_stop_cleanly(cluster):
    proc, port, workers, log = cluster
    started = workers()
    assert len(started) == 2
    # Which worker accepts is up to the scheduler: under load one may take many
    # connections in a row, so keep asking (on new connections) for a while.
    seen = set()
    deadline = time.monotonic() + 30
    while seen != set(started):
        assert time.monotonic() < deadline, f"only {seen} of {started} answered in 30 s"
        data = get(port)
        assert data["multiprocess"] is True
        assert data["pid"] in started, "the parent only supervises"
        seen.add(data["pid"])
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, open(log.name).read()
    deadline = time.monotonic() + 2
    while any(alive(pid) for pid in started):
        assert time.monotonic() < deadline, "a worker outlived its parent"
        time.sleep(0.05)


def test_a_dead_worker_is_replaced_without_losing_requests(cluster):
    proc, port, workers, log = cluster
    first, second = workers()
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while len(workers()) < 3:
        get(port)  # the survivor keeps answering meanwhile
        assert time.monotonic() < deadline, open(log.name).read()
        time.sleep(0.05)
    replacement = workers()[2]
    assert "was killed by signal SIGKILL; starting a new one" in open(log.name).read()
    pids = {get(port)["pid"] for _ in range(200)}
    assert first not in pids
    assert pids <= {second, replacement}
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0, open(log.name).read()


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


def both_serve(port: int, workers) -> None:
    deadline = time.monotonic() + 30
    while {get(port)["pid"] for _ in range(4)} != set(workers()):
        assert time.monotonic() < deadline


def test_a_burst_of_connections_is_shared_by_the_workers(cluster):
    """Every worker is woken for new connections on the shared socket and the first
    to run took the whole burst (50 of wrk's 50 connections to one worker of two);
    now a worker leaves connections to a sibling holding fewer."""
    proc, port, workers, log = cluster
    both_serve(port, workers)
    pids = keep_alive_pids(port, 40)
    counts = sorted(pids.count(pid) for pid in set(pids))
    assert len(counts) == 2 and counts[0] >= 10, f"connections per worker: {counts}"


def test_a_stopped_worker_does_not_hold_connections_back(cluster):
    """A worker leaves connections to a sibling holding fewer, but not for long when the
    sibling takes none: stopped, the other worker serves them all."""
    proc, port, workers, log = cluster
    both_serve(port, workers)
    stopped, running = workers()
    os.kill(stopped, signal.SIGSTOP)
    try:
        time.sleep(0.2)  # SIGSTOP takes effect asynchronously
        assert keep_alive_pids(port, 20) == [running] * 20
    finally:
        os.kill(stopped, signal.SIGCONT)
