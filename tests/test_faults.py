"""Faults (issue 14): clients that disconnect at any point, an app that never returns.

A client going away is no error: the app's iterable is closed, its thread is
freed, and the log hears of it above DEBUG only as waitress says it -- at INFO,
"Client disconnected while serving ...", when the app was serving it and
``log_socket_errors`` is on (the default); with it off, nothing above DEBUG.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time

import pytest

from conftest import connect, get, ping, recv_until, wait_for

RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


def hang_up(sock: socket.socket, reset: bool) -> None:
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
    sock.close()


def loud(caplog):
    """maitre's records above DEBUG."""
    return [r for r in caplog.records if r.name == "maitre" and r.levelno > logging.DEBUG]


def assert_quiet(caplog, log_socket_errors: bool, serving: str) -> list:
    """Nothing above DEBUG but, with ``log_socket_errors``, waitress's INFO
    "Client disconnected while serving" naming the request; those records."""
    above = loud(caplog)
    messages = [r.getMessage() for r in above]
    if not log_socket_errors:
        assert not above, messages
    assert {r.levelno for r in above} <= {logging.INFO}, messages
    assert all(m.startswith(f"Client disconnected while serving {serving}") for m in messages), messages
    return above


class Tracked:
    """An app's response iterable recording its close() and how far it got."""

    def __init__(self, chunks, closed: list) -> None:
        self.chunks = chunks
        self.closed = closed
        self.sent = 0

    def __iter__(self):
        for chunk in self.chunks:
            self.sent += 1
            yield chunk

    def close(self) -> None:
        self.closed.append(self.sent)


# ------------------------------------------------------------- mid-request

HEAD = b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n"
REQUESTS = {
    "content-length": HEAD + b"0123456789",
    "chunked": b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n5;x=y\r\nworld\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("log_socket_errors", [True, False])
@pytest.mark.parametrize("kind", sorted(REQUESTS))
def test_disconnect_at_every_offset_of_a_request(serve, caplog, kind, log_socket_errors):
    """Cut off after each byte of the head and body, with a FIN and with a reset:
    the app never sees the torn request, nothing is logged above DEBUG, and
    the server (one thread) still serves."""
    request = REQUESTS[kind]
    calls = []

    def app(environ, start_response):
        calls.append(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    with caplog.at_level(logging.DEBUG, logger="maitre"):
        s = serve(app, threads=1, log_socket_errors=log_socket_errors)
        for offset in range(1, len(request)):
            for reset in (False, True):
                sock = connect(s.port)
                sock.sendall(request[:offset])
                hang_up(sock, reset)
        ping(s.port)
        r = get(s.port, "/check")
        assert r.status == 200
    assert calls == [b""], "the app saw a torn request"
    assert not loud(caplog), [r.getMessage() for r in loud(caplog)]


@pytest.mark.parametrize("log_socket_errors", [True, False])
@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_disconnect_while_the_app_reads_a_deferred_body(serve, caplog, reset, log_socket_errors):
    """With Expect: 100-continue the app is reading the body when the client
    leaves: its read fails, the thread is freed, and the log is quiet."""
    outcome = []

    def app(environ, start_response):
        try:
            environ["wsgi.input"].read()
        except OSError as e:
            outcome.append(e)
            raise
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    with caplog.at_level(logging.DEBUG, logger="maitre"):
        s = serve(app, threads=1, log_socket_errors=log_socket_errors)
        sock = connect(s.port)
        sock.sendall(HEAD.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
        recv_until(sock, lambda d: b"100 Continue\r\n\r\n" in d)
        sock.sendall(b"01234")
        time.sleep(0.05)
        hang_up(sock, reset)
        assert wait_for(lambda: outcome, timeout=5), "the app's read did not fail"
        ping(s.port)
    assert_quiet(caplog, log_socket_errors, "POST /up")


# ------------------------------------------------------------ mid-response

CHUNK = b"x" * 16384


def streaming_app(closed: list, length: bool):
    """A response far larger than the socket buffers: 1 GiB if nobody stops it."""

    def app(environ, start_response):
        headers = [("Content-Type", "application/octet-stream")]
        if length:
            headers.append(("Content-Length", str(len(CHUNK) * 65536)))
        start_response("200 OK", headers)
        return Tracked((CHUNK for _ in range(65536)), closed)

    return app


def read_some(sock: socket.socket, n: int) -> None:
    """Read the head and then at least ``n`` body bytes."""
    data = recv_until(sock, lambda d: b"\r\n\r\n" in d)
    recv_until(sock, lambda d: len(d) - d.index(b"\r\n\r\n") - 4 >= n, initial=data, timeout=10)


@pytest.mark.parametrize("log_socket_errors", [True, False])
@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_disconnect_at_several_points_of_a_response(serve, caplog, length, log_socket_errors):
    """Hang up after the head, after one byte, mid-way and deep into a large
    streamed response: each time close() runs and the only thread is freed;
    the log says it as waitress does, or not at all above DEBUG."""
    closed: list = []
    with caplog.at_level(logging.DEBUG, logger="maitre"):
        s = serve(streaming_app(closed, length), threads=1, log_socket_errors=log_socket_errors)
        points = [0, 1, len(CHUNK) + 7, 4 << 20]
        for i, n in enumerate(points):
            for reset in (False, True):
                sock = connect(s.port)
                sock.sendall(b"GET /stream?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
                read_some(sock, n)
                before = len(closed)
                hang_up(sock, reset)
                assert wait_for(lambda: len(closed) > before, timeout=5), f"close() not run at {n}"
                assert closed[-1] < 65536, "the iteration went on after the client left"
                ping(s.port)  # the only thread is free again
    above = assert_quiet(caplog, log_socket_errors, "GET /stream")
    if log_socket_errors:
        assert above, "waitress tells of a client leaving mid-response at INFO"


def test_a_write_callable_app_is_freed_when_the_client_leaves(serve, caplog):
    """An app pushing its response through write() learns of the disconnect
    (write raises) instead of writing forever."""
    stopped = []

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        try:
            for _ in range(65536):
                write(CHUNK)
        except OSError as e:
            stopped.append(e)
            raise
        return []

    with caplog.at_level(logging.DEBUG, logger="maitre"):
        s = serve(app, threads=1, log_socket_errors=False)
        sock = connect(s.port)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        read_some(sock, 100000)
        hang_up(sock, True)
        assert wait_for(lambda: stopped, timeout=5), "write() never failed"
        ping(s.port)
    assert not loud(caplog), [r.getMessage() for r in loud(caplog)]


# ------------------------------------------------------- an app that hangs


def test_an_app_that_never_returns_is_logged_once_and_others_are_served(serve, caplog):
    """Past channel_timeout the hung request is logged (WARNING) with its
    request line and how long it has run, once; other threads keep serving."""
    release = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/hang":
            release.wait(30)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    def overdue():
        return [r for r in caplog.records if r.name == "maitre" and "over channel_timeout" in r.getMessage()]

    with caplog.at_level(logging.DEBUG, logger="maitre"):
        s = serve(app, threads=2, channel_timeout=1, cleanup_interval=0)
        sock = connect(s.port, timeout=10)
        try:
            sock.sendall(b"GET /hang?why=test HTTP/1.1\r\nHost: t\r\n\r\n")
            assert wait_for(overdue, timeout=5), "the hung app was not logged"
            for _ in range(20):  # the other thread serves meanwhile
                assert get(s.port, "/other").status == 200
            time.sleep(1.5)  # several sweeps later: still once
            (record,) = overdue()
            assert record.levelno == logging.WARNING
            message = record.getMessage()
            assert "GET /hang?why=test" in message
            ran = float(message.split("The app has run ")[1].split("s")[0])
            assert 1.0 <= ran < 4.0, message
        finally:
            release.set()
        data = recv_until(sock, lambda d: d.endswith(b"ok"), timeout=5)
        assert data.startswith(b"HTTP/1.1 200 ")
        sock.close()
