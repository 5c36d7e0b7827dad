"""Regression tests for the engine defects of issue 13 (threads held, panics,
wrong bytes on the wire, unbounded resources). Each test names its item and
fails on the engine before the fix.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import pytest

from conftest import Conn, connect, parse_responses, raw, read_until_close, wait_for

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def ping_within(port: int, seconds: float) -> None:
    """A fresh connection is answered within ``seconds``: a worker is free."""
    data = raw(port, b"GET /__ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", seconds)
    (r,), _ = parse_responses(data)
    assert (r.status, r.body) == (200, b"pong"), r


def reading_app(seen: list):
    """Reads the whole body; records what the read raised or returned."""

    def app(environ, start_response):
        try:
            body = environ["wsgi.input"].read()
            seen.append(body)
        except Exception as exc:  # what the app sees is the point
            seen.append(exc)
            raise
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    return app


UPLOAD = (
    b"POST /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
    b"Content-Length: 100\r\n\r\n"
)


# ----------------------------------------------------------------- item 1


@pytest.mark.parametrize("how", ["close", "half-close"])
def test_item1_aborted_upload_frees_the_worker_at_once(serve, how):
    """Issue 13 item 1: a client that reads 100 Continue, sends part of the body
    and closes pinned the worker forever; now the app's read raises OSError and
    the only thread is free at once."""
    seen: list = []
    s = serve(reading_app(seen), threads=1)
    sock = connect(s.port)
    sock.sendall(UPLOAD)
    assert sock.recv(len(CONTINUE)) == CONTINUE
    sock.sendall(b"x" * 10)
    if how == "close":
        sock.close()
    else:
        sock.shutdown(1)  # SHUT_WR: a FIN, still reading
    assert wait_for(lambda: seen, 3), "the app's read never returned"
    assert isinstance(seen[0], OSError), seen
    ping_within(s.port, 3)
    if how == "half-close":
        data = read_until_close(sock)
        assert data.startswith(b"HTTP/1.1 400 "), data
        sock.close()


def test_item1_silent_uploader_is_timed_out(serve):
    """Issue 13 item 1: a client that goes silent after 100 Continue is held to
    channel_timeout; closing it wakes the worker with an OSError."""
    seen: list = []
    s = serve(reading_app(seen), threads=1, channel_timeout=1, cleanup_interval=1)
    sock = connect(s.port)
    sock.sendall(UPLOAD)
    assert sock.recv(len(CONTINUE)) == CONTINUE
    sock.sendall(b"x" * 10)
    assert wait_for(lambda: seen, 6), "the worker is still waiting for the body"
    assert isinstance(seen[0], OSError), seen
    ping_within(s.port, 3)
    sock.close()


def test_item1_fin_before_the_app_reads_frees_the_worker(serve):
    """Issue 13 item 1: the client closes before the app asks for its deferred
    body; the app's later read must fail, not wait."""
    seen: list = []
    inner = reading_app(seen)

    def app(environ, start_response):
        time.sleep(0.3)  # the client is gone by now
        return inner(environ, start_response)

    s = serve(app, threads=1)
    sock = connect(s.port)
    sock.sendall(UPLOAD)
    sock.close()
    assert wait_for(lambda: seen, 3), "the app's read never returned"
    assert isinstance(seen[0], OSError), seen
    ping_within(s.port, 3)


def test_item1_client_that_never_reads_a_stream_frees_the_worker(serve):
    """Issue 13 item 1: a client that never reads a streamed response held the
    worker on outbuf_high_watermark forever; channel_timeout now frees it and
    the app's iterable is closed."""
    closed = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [])

        def stream():
            try:
                while True:
                    yield b"z" * 65536
            finally:
                closed.set()

        return stream()

    s = serve(
        app,
        threads=1,
        channel_timeout=1,
        cleanup_interval=1,
        outbuf_high_watermark=1 << 20,
        outbuf_overflow=1 << 20,
    )
    sock = connect(s.port)
    sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
    sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    assert closed.wait(8), "the worker is still blocked on the watermark"
    ping_within(s.port, 3)
    sock.close()


def test_item1_stopping_server_does_not_invite_a_deferred_body(serve):
    """Issue 13 item 1: a stop must wake a worker that would wait for a body;
    the app's read fails at once and the server stops well before its drain
    deadline (graceful_timeout=30)."""
    seen: list = []
    inner = reading_app(seen)
    entered = threading.Event()

    def app(environ, start_response):
        entered.set()
        time.sleep(0.5)  # the stop arrives before the app reads
        return inner(environ, start_response)

    s = serve(app, threads=1, graceful_timeout=30)
    sock = connect(s.port)
    sock.sendall(UPLOAD)
    assert entered.wait(3)
    started = time.monotonic()
    s.stop(timeout=5)
    assert time.monotonic() - started < 5
    assert isinstance(seen[0], OSError), seen
    data = read_until_close(sock)
    assert CONTINUE not in data, data
    assert data.startswith(b"HTTP/1.1 503 "), data
    sock.close()


# ----------------------------------------------------------------- item 2


def test_item2_write_from_another_thread_does_not_kill_the_worker(serve, caplog):
    """Issue 13 item 2: the app's own thread blocks in write() on a slow client
    while the worker iterates the result: the worker panicked (Already borrowed)
    and died for good. Now it is an app error; the worker lives on."""
    started = threading.Event()
    outcome: list = []

    def app(environ, start_response):
        write = start_response("200 OK", [])

        def writer():
            started.set()
            try:
                for _ in range(64):
                    write(b"w" * (1 << 20))  # blocks: the client does not read
            except Exception as exc:
                outcome.append(exc)

        threading.Thread(target=writer, daemon=True).start()
        started.wait(2)
        time.sleep(0.3)

        def rest():
            yield b"tail"

        return rest()

    s = serve(app, threads=1, outbuf_high_watermark=1 << 20, outbuf_overflow=1 << 20)
    sock = connect(s.port)
    sock.sendall(b"GET /w HTTP/1.1\r\nHost: t\r\n\r\n")
    with caplog.at_level(logging.ERROR, logger="maitre"):
        for _ in range(3):  # the one worker answers, again and again
            ping_within(s.port, 3)
    # The broken-off connection closes; the writer thread is told so.
    read_until_close(sock, timeout=5)
    sock.close()
    assert wait_for(lambda: outcome, 5), "write() in the app's thread never returned"
    assert isinstance(outcome[0], OSError), outcome
    assert "another thread" in caplog.text


# ----------------------------------------------------------------- item 7


def test_item7a_close_raising_after_a_complete_response_cuts_nothing(serve, caplog):
    """Issue 13 item 7a: close() raising after a complete response sent an abort
    after the end, cutting the next pipelined response."""

    class Body:
        def __iter__(self):
            yield b"first"

        def close(self):
            raise RuntimeError("close failed")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "5")])
        if environ["PATH_INFO"] == "/one":
            return Body()
        return [b"other"]

    s = serve(app)
    with caplog.at_level(logging.ERROR, logger="maitre"):
        with Conn(s.port) as c:
            c.send(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n")
            r1 = c.read_response()
            r2 = c.read_response()
            assert (r1.status, r1.body) == (200, b"first")
            assert (r2.status, r2.body) == (200, b"other")
            c.assert_open()
        # Logged by the first request's worker after its response went out.
        assert wait_for(lambda: "close failed" in caplog.text), caplog.text


def test_item7b_write_after_the_end_is_refused_and_never_on_the_wire(serve):
    """Issue 13 item 7b: write() called after the response ended put a chunk
    between two responses; now it raises and nothing reaches the wire."""
    go = threading.Event()
    outcome: list = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/one":
            write = start_response("200 OK", [])

            def late():
                go.wait(3)
                try:
                    write(b"INJECTED")
                    outcome.append("accepted")
                except Exception as exc:
                    outcome.append(exc)

            threading.Thread(target=late, daemon=True).start()
            return [b"one"]
        start_response("200 OK", [])
        go.set()
        wait_for(lambda: outcome, 3)

        def stream():
            yield b"tw"
            yield b"o"

        return stream()

    s = serve(app)
    with Conn(s.port) as c:
        c.send(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n")
        r1 = c.read_response()
        r2 = c.read_response()
        assert (r1.status, r1.body) == (200, b"one")
        assert (r2.status, r2.body, r2.chunks) == (200, b"two", [b"tw", b"o"])
        assert b"INJECTED" not in r1.raw + r2.raw
        c.assert_open()
    assert isinstance(outcome[0], RuntimeError), outcome


def test_item7c_no_100_continue_inside_a_started_response(serve):
    """Issue 13 item 7c: reading a deferred body after the response started sent
    `HTTP/1.1 100 Continue` inside the chunked body."""

    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"first;")
        return [environ["wsgi.input"].read()]

    s = serve(app)
    with Conn(s.port) as c:
        c.send(
            b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            b"Content-Length: 3\r\n\r\n"
        )
        assert wait_for(lambda: c._fill(time.monotonic() + 0.05) and b"first;" in c.buf, 3)
        c.send(b"abc")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"first;abc"), r
        assert b"100 Continue" not in r.raw
        c.assert_open()


# ----------------------------------------------------------------- items 8-10


def test_item8_head_with_an_empty_body_sends_no_content_length(serve):
    """Issue 13 item 8: HEAD answered with [] went out with Content-Length: 0,
    which need not be what GET sends (RFC 9110 §8.6)."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [b"a body"]

    s = serve(app)
    with Conn(s.port) as c:
        c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response(method="HEAD")
        assert r.status == 200
        assert not r.has_header("Content-Length"), r.headers
        assert not r.has_header("Transfer-Encoding"), r.headers
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert (r.header("Content-Length"), r.body) == ("6", b"a body")


def test_item9_conflicting_content_lengths_are_an_app_error(serve, caplog):
    """Issue 13 item 9: two different Content-Length headers from the app were
    passed through; now a 500, logged. The same length twice goes out once."""

    def app(environ, start_response):
        second = "5" if environ["PATH_INFO"] == "/same" else "3"
        start_response("200 OK", [("Content-Length", "5"), ("Content-Length", second)])
        return [b"hello"]

    s = serve(app)
    with caplog.at_level(logging.ERROR, logger="maitre"):
        data = raw(s.port, b"GET /conflict HTTP/1.1\r\nHost: t\r\n\r\n")
    (r,), rest = parse_responses(data)
    assert r.status == 500 and rest == b"", data
    assert "conflicting Content-Length" in caplog.text
    with Conn(s.port) as c:
        c.send(b"GET /same HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.header("Content-Length"), r.body) == (200, "5", b"hello")


@pytest.mark.parametrize("status", ["100 Whatever", "101 Switching Protocols", "102 Processing", "199 X"])
def test_item10_informational_status_from_the_app_is_an_error(serve, status):
    """Issue 13 item 10: a 1xx from the app went out as the final response on a
    kept-alive connection; the client then took the next response as this one's."""

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/info":
            start_response(status, [])
            return [b""]
        start_response("200 OK", [("Content-Length", "4")])
        return [b"next"]

    s = serve(app)
    with Conn(s.port) as c:
        c.send(b"GET /info HTTP/1.1\r\nHost: t\r\n\r\nGET /n HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 500, r
        if "close" in r.connection_tokens():
            c.assert_closed()
        else:
            r2 = c.read_response()
            assert (r2.status, r2.body) == (200, b"next")


# ----------------------------------------------------------------- items 14-15


def test_item14_pipelined_requests_wait_while_output_is_unread(serve):
    """Issue 13 item 14: pipelined requests the client never reads were all run,
    their responses piling up on disk; now requests wait while the unsent output
    is above outbuf_high_watermark, and all are answered once the client reads."""
    calls = []
    body = b"m" * (1 << 20)

    def app(environ, start_response):
        calls.append(1)
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    s = serve(app, outbuf_high_watermark=4 << 20)
    n = 60
    with Conn(s.port, timeout=10) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * n)
        time.sleep(1.5)
        assert len(calls) < 15, f"{len(calls)} of {n} requests ran with nobody reading"
        for _ in range(n):
            r = c.read_response()
            assert r.status == 200 and r.body == body
    assert len(calls) == n


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_item15_a_sent_body_is_released_at_once(serve):
    """Issue 13 item 15: a 200 MiB response stayed in memory after it was sent
    until another request reached that worker."""
    import os

    size = 200 << 20

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(size))])
        return [b"r" * size]

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    s = serve(app, threads=1)
    before = rss()
    sock = connect(s.port, timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    total = 0
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        total += len(chunk)
    sock.close()
    assert total > size
    assert wait_for(lambda: rss() < before + (50 << 20), 3), (
        f"RSS grew by {(rss() - before) >> 20} MiB after the response was sent"
    )
