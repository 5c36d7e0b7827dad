"""Nothing leaks: after a server has served (and refused) many connections and
stopped, the process has the file descriptors and threads it had before."""

from __future__ import annotations

import gc
import http.client
import os
import socket
import sys
import threading
import time

import pytest

import maitre

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts /proc/self/fd and /proc/self/task"
)


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def app(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok:", body]


def settle(check, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def run_one_server() -> None:
    server = maitre.create_server(app, host="127.0.0.1", port=0, threads=3, inbuf_overflow=10)
    port = server.effective_port
    t = threading.Thread(target=server.run)
    t.start()
    for i in range(30):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("POST", "/", body=b"x" * 100)  # spooled to a temp file
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"ok:" + b"x" * 100)
        if i % 2:
            c.close()  # the other half leave an idle keep-alive connection behind
    c.close()
    for garbage in (b"BAD\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(garbage)
            assert s.recv(100).startswith(b"HTTP/1.1 400")
    server.close()
    t.join(5)
    assert not t.is_alive()


def steady(count, timeout=5.0) -> int:
    """``count()`` once it has stopped falling: threads that earlier tests left
    behind may still be on their way out."""
    last = count()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = count()
        if now >= last:
            return now
        last = now
    return last


def test_no_fd_or_thread_leak_after_stop():
    run_one_server()  # first use opens what stays open by design (log handlers, ...)
    gc.collect()
    before_fds, before_threads = steady(fds), steady(os_threads)
    for _ in range(3):
        run_one_server()
    gc.collect()
    assert settle(lambda: os_threads() <= before_threads), (before_threads, os_threads())
    assert settle(lambda: fds() <= before_fds), (before_fds, fds())
