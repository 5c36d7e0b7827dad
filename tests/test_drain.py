"""A graceful drain (issue 14): on a stop, requests already received finish with
`Connection: close`, idle connections close at once (a fresh one may still send
its request for a second), `graceful_timeout` bounds the
wait, and systemd hears READY=1 and STOPPING=1."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from conftest import Conn, simple_app, wait_for


def test_a_response_that_starts_during_the_drain_closes_its_connection(serve):
    entered, release = threading.Event(), threading.Event()

    def app(environ, start_response):
        entered.set()
        release.wait(5)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"done"]

    s = serve(app, graceful_timeout=10)
    with Conn(s.port) as c, Conn(s.port) as idle:
        idle.send(b"GET /__ping HTTP/1.1\r\nHost: t\r\n\r\n")
        assert idle.read_response().status == 200
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert entered.wait(3)
        s.server.close()
        idle.assert_closed()  # idle keep-alive connections close at once
        release.set()
        r = c.read_response()
        assert (r.status, r.body) == (200, b"done")
        assert r.connection_tokens() == ["close"], r.headers
        c.assert_closed()
    s.thread.join(5)
    assert not s.thread.is_alive()


def test_a_fresh_connection_at_the_stop_may_still_send_its_request(serve):
    """A proxy writes its request just after the handshake: a connection accepted
    before the stop that has sent nothing yet (or half a head) is not closed under
    it, but gets its one request served; an idle keep-alive connection closes."""
    s = serve(simple_app(), graceful_timeout=10)
    with Conn(s.port) as fresh, Conn(s.port) as partial, Conn(s.port) as idle:
        idle.send(b"GET /__ping HTTP/1.1\r\nHost: t\r\n\r\n")
        assert idle.read_response().status == 200
        partial.send(b"GET /half HTTP/1.1\r\nHo")
        assert wait_for(lambda: s.server.stats()["connections"]["open"] == 3)
        s.server.close()
        idle.assert_closed()
        time.sleep(0.2)
        fresh.send(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n")
        partial.send(b"st: t\r\n\r\n")
        for c in (fresh, partial):
            r = c.read_response()
            assert r.status == 200, r
            assert r.connection_tokens() == ["close"], r.headers
            c.assert_closed()
    s.thread.join(5)
    assert not s.thread.is_alive()


def test_a_fresh_connection_that_sends_nothing_holds_the_stop_one_second(serve):
    s = serve(simple_app(), graceful_timeout=10)
    with Conn(s.port) as silent:
        assert wait_for(lambda: s.server.stats()["connections"]["open"] == 1)
        t0 = time.monotonic()
        s.server.close()
        silent.assert_closed()
        s.thread.join(5)
        assert not s.thread.is_alive()
        assert 0.9 < time.monotonic() - t0 < 3.5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the accept queue")
def test_connections_queued_in_the_kernel_at_the_stop_are_served(serve):
    """Clients that connected before the stop and sent a request, still in the listen
    backlog (here: past connection_limit), get their response instead of a reset."""
    release = threading.Event()

    def app(environ, start_response):
        release.wait(5)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"done"]

    s = serve(app, connection_limit=1, threads=1, graceful_timeout=10)
    conns = [Conn(s.port) for _ in range(4)]
    try:
        for c in conns:
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert wait_for(lambda: s.server.stats()["listeners"][0]["queue_length"] == 3)
        s.server.close()
        # The next one is refused: the socket closed once the queue was taken.
        assert wait_for(lambda: refused(s.port))
        release.set()
        for c in conns:
            r = c.read_response()
            assert (r.status, r.body) == (200, b"done")
            assert r.connection_tokens() == ["close"], r.headers
            c.assert_closed()
    finally:
        release.set()
        for c in conns:
            c.close()
    s.thread.join(5)
    assert not s.thread.is_alive()


def refused(port: int) -> bool:
    """No listener any more: refused, or reset when the handshake was under way
    as the listener closed (a full backlog drops a SYN rather than resets it)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    return False


def test_graceful_timeout_bounds_the_drain(serve):
    release = threading.Event()

    def app(environ, start_response):
        release.wait(10)
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    s = serve(app, graceful_timeout=1)
    try:
        with Conn(s.port) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.3)
            started = time.monotonic()
            s.server.close()
            s.thread.join(5)
            assert not s.thread.is_alive()
            assert 0.9 < time.monotonic() - started < 3.5
    finally:
        release.set()


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX") or sys.platform == "win32", reason="unix sockets")
def test_systemd_hears_ready_and_stopping(serve, tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    try:
        s = serve(simple_app(b"ok"))
        assert listener.recv(100) == b"READY=1"
        s.server.close()
        assert listener.recv(100) == b"STOPPING=1"
        assert wait_for(lambda: not s.thread.is_alive(), 5)
    finally:
        listener.close()


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX") or sys.platform == "win32", reason="fork/exec fds")
def test_systemd_socket_activation_serves_the_passed_socket(spawn):
    """LISTEN_FDS/LISTEN_PID: the socket systemd bound (descriptor 3) is served,
    not the host/port the command line names."""
    import http.client
    import textwrap

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    script = textwrap.dedent(
        """
        import os, maitre
        def app(environ, start_response):
            body = b"activated %d" % os.getpid()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
        assert "LISTEN_FDS" in os.environ
        maitre.serve(app, host="127.0.0.1", port=1)  # port 1: never bound if fd 3 is used
        """
    )
    fd = listener.fileno()
    try:
        # The shell puts the socket on descriptor 3, as systemd does (bash: dash takes
        # one-digit descriptors only), and names itself LISTEN_PID before it becomes
        # the server.
        server = spawn(
            ["bash", "-c", 'LISTEN_PID=$$ exec "$0" -c "$1" 3<&"$2"', sys.executable, script, str(fd)],
            env={"LISTEN_FDS": "1"}, pass_fds=(fd,),
        ).wait_serving()
        assert server.port == port
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/")
        body = c.getresponse().read()
        c.close()
        assert body == b"activated %d" % server.proc.pid
        assert server.terminate(10) == 0, server.output
    finally:
        listener.close()
    assert "systemd passed" in server.output
