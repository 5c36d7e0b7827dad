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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/", headers={"Connection": "close"})
    r = c.getresponse()
    assert r.status == 200
    data = json.loads(r.read())
    c.close()
    return data


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def cluster(tmp_path):
    port = free_port()
    log = open(tmp_path / "stderr.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, f"127.0.0.1:{port}"], stderr=log, text=True
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            get(port)
            break
        except OSError:
            assert proc.poll() is None, open(log.name).read()
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.1)

    def workers() -> list:
        text = open(log.name).read()
        return [int(p) for p in re.findall(r"Started worker process (\d+)", text)]

    yield proc, port, workers, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_two_workers_serve_and_stop_cleanly(cluster):
    proc, port, workers, log = cluster
    seen = set()
    for _ in range(300):
        data = get(port)
        assert data["multiprocess"] is True
        seen.add(data["pid"])
        if len(seen) == 2:
            break
    started = workers()
    assert len(started) == 2
    assert seen == set(started), "both workers accept from the shared socket"
    assert proc.pid not in seen, "the parent only supervises"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, open(log.name).read()
    time.sleep(0.2)
    assert not any(alive(pid) for pid in started), "a worker outlived its parent"


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
