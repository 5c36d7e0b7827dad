"""A rolling restart behind a real HAProxy (issue 14): two maitre backends, a steady
load of keep-alive and new connections, each backend restarted in turn with
SIGTERM; every request must get a complete 200. HAProxy (Debian's `haproxy`) is
installed by the fixture when missing and the test runs as root."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import HOST, Spawned

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="HAProxy and signals")

TOTAL = 20_000
CLIENTS = 8

BACKEND = textwrap.dedent(
    """
    import os, sys, time
    import maitre

    def app(environ, start_response):
        time.sleep(0.002)  # requests are in flight when the stop comes
        body = b"ok %d %s" % (os.getpid(), environ["PATH_INFO"].encode())
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    maitre.serve(app, listen=sys.argv[1], graceful_timeout=10, threads=4)
    """
)


@pytest.fixture(scope="module")
def haproxy_bin() -> str:
    path = shutil.which("haproxy")
    if path is None and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "haproxy"], capture_output=True, timeout=300)
        if shutil.which("haproxy") is None:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
            subprocess.run(["apt-get", "install", "-y", "-qq", "haproxy"], capture_output=True, timeout=300)
        path = shutil.which("haproxy")
    if path is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    return path


def backend(spawn, listen: str) -> Spawned:
    return spawn([sys.executable, "-c", BACKEND, listen]).wait_serving()


def free_port() -> int:
    # HAProxy's own frontend: it cannot be told to bind port 0 and report it.
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def haproxy_config(front: int, backends: list) -> str:
    servers = "\n".join(
        f"    server b{i} {HOST}:{b.port} check inter 200ms fall 1 rise 1"
        for i, b in enumerate(backends)
    )
    return textwrap.dedent(
        f"""
        global
            maxconn 1000
        defaults
            mode http
            timeout connect 2s
            timeout client 30s
            timeout server 30s
            # Only connection attempts are retried (and sent to the other backend):
            # a request a backend took must be answered by it, drain or not.
            retries 3
            option redispatch 1
            option http-server-close
        frontend web
            bind {HOST}:{front}
            default_backend app
        backend app
            balance roundrobin
            option httpchk GET /health
        """
    ) + servers + "\n"


def client(port: int, keep_alive: bool, quota: list, failures: list, done: list, lock) -> None:
    conn = None
    while True:
        with lock:
            if quota[0] <= 0:
                break
            quota[0] -= 1
            n = quota[0]
        path = f"/r{n}"
        try:
            if conn is None:
                conn = http.client.HTTPConnection(HOST, port, timeout=10)
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            if r.status != 200 or not body.endswith(path.encode()):
                failures.append((path, r.status, body[:60]))
            if not keep_alive or r.will_close:
                conn.close()
                conn = None
        except Exception as exc:  # every failure counts, whatever it is
            failures.append((path, repr(exc)))
            if conn is not None:
                conn.close()
            conn = None
        with lock:
            done[0] += 1
    if conn is not None:
        conn.close()


def test_rolling_restart_loses_no_request(haproxy_bin, tmp_path, spawn):
    backends = [backend(spawn, f"{HOST}:0") for _ in range(2)]
    front = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_config(front, backends))
    proxy = spawn([haproxy_bin, "-db", "-f", str(cfg)])
    deadline = time.monotonic() + 10
    while True:
        try:
            c = http.client.HTTPConnection(HOST, front, timeout=2)
            c.request("GET", "/warm")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        assert proxy.proc.poll() is None, proxy.output
        assert time.monotonic() < deadline, "HAProxy never answered"
        time.sleep(0.1)
    quota, done, failures, lock = [TOTAL], [0], [], threading.Lock()
    threads = [
        threading.Thread(target=client, args=(front, i % 2 == 0, quota, failures, done, lock))
        for i in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    restarted = 0
    for i, b in enumerate(list(backends)):
        # Clients that all died would never get there: fail, do not hang.
        deadline = time.monotonic() + 120
        while done[0] < (i + 1) * TOTAL // 3:
            assert any(t.is_alive() for t in threads), f"the clients stopped at {done[0]}"
            assert time.monotonic() < deadline, f"{done[0]} of {TOTAL} done after 120 s"
            time.sleep(0.01)
        assert b.terminate(20) == 0, b.output
        backends[i] = backend(spawn, f"{HOST}:{b.port}")  # same port: HAProxy's config
        restarted += 1
        time.sleep(0.5)  # HAProxy's health check sees it up again
    for t in threads:
        t.join(120)
    assert restarted == 2
    assert done[0] == TOTAL
    assert failures == [], f"{len(failures)} of {TOTAL} failed, e.g. {failures[:5]}"
