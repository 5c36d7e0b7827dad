"""`header_timeout` (issue 14): no client holds a connection slot or a thread by
sending slowly. A request head must arrive whole within it (from accept, or from
the first byte of a later request), and a body the app asked for with 100
Continue must start within it."""

from __future__ import annotations

import threading
import time

import pytest

import maitre
from conftest import Conn, connect, ping, read_until_close, simple_app, wait_for

CONTINUE_LINE = b"HTTP/1.1 100 Continue\r\n\r\n"


def test_trickled_heads_get_408_and_are_closed(serve):
    """50 clients sending a head one byte at a time are all answered 408 and closed
    after header_timeout, while a normal client is served meanwhile."""
    s = serve(simple_app(b"ok"), header_timeout=1, connection_limit=200)
    head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    socks = [connect(s.port, timeout=10) for _ in range(50)]
    stop = threading.Event()

    def trickle():
        for i in range(len(head)):
            if stop.is_set():
                return
            for sock in socks:
                try:
                    sock.send(head[i : i + 1])
                except OSError:
                    pass
            time.sleep(0.05)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    started = time.monotonic()
    try:
        ping(s.port)  # others are served meanwhile
        replies = [read_until_close(sock, timeout=10) for sock in socks]
    finally:
        stop.set()
        for sock in socks:
            sock.close()
    assert time.monotonic() - started < 5, "header_timeout=1 should close them within seconds"
    for reply in replies:
        assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), reply[:80]
    counted = lambda: s.server.stats()["connections"]["closed_by_header_timeout"]  # noqa: E731
    assert wait_for(lambda: counted() == 50, 3), counted()


def test_a_connection_that_sends_nothing_is_closed(serve):
    s = serve(simple_app(b"ok"), header_timeout=1)
    sock = connect(s.port, timeout=10)
    started = time.monotonic()
    assert read_until_close(sock, timeout=5) == b""
    assert 0.9 < time.monotonic() - started < 3
    sock.close()


def test_an_idle_kept_alive_connection_is_left_to_channel_timeout(serve):
    """After a response, waiting for the next request is idling, not a slow head."""
    s = serve(simple_app(b"ok"), header_timeout=1)
    with Conn(s.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().body == b"ok"
        c.read_nothing_for(2.5)
        c.assert_open()


def test_a_body_asked_for_that_never_starts_frees_the_thread(serve):
    """threads=1, channel_timeout=120: the app's read fails after header_timeout,
    the client gets 400, and the only thread serves the next request."""
    seen: list = []

    def app(environ, start_response):
        try:
            seen.append(environ["wsgi.input"].read())
        except OSError as exc:
            seen.append(exc)
            raise
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    s = serve(app, threads=1, header_timeout=1)
    sock = connect(s.port, timeout=10)
    sock.sendall(
        b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    assert wait_for(lambda: seen, 4), "the worker still waits for the body"
    assert isinstance(seen[0], OSError) and "header_timeout" in str(seen[0])
    reply = read_until_close(sock, timeout=5)
    assert reply.startswith(CONTINUE_LINE) and b"HTTP/1.1 400 " in reply, reply
    sock.close()
    ping(s.port)


def test_header_timeout_is_validated():
    with pytest.raises(ValueError, match="header_timeout"):
        maitre.create_server(simple_app(), host="127.0.0.1", port=0, header_timeout=0)
