"""Strict request framing (issue 13, items 11-13), checked with raw bytes over real sockets.

A refused request must get the exact status, never reach the app, and close the
connection; the valid neighbour of each refused form must still reach the app
with the right body.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from conftest import Conn, connect, parse_responses, ping, raw, read_until_close


class Recorder:
    """A WSGI app that echoes the body and records every call it gets."""

    def __init__(self) -> None:
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read()
        x_headers = sum(1 for k in environ if k.startswith("HTTP_X_"))
        with self.lock:
            self.calls.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], body, x_headers))
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
        )
        return [body]


def refused(port: int, data: bytes, status: int) -> None:
    """``data`` gets exactly one ``status`` response and the connection closes."""
    out = raw(port, data)
    responses, rest = parse_responses(out)
    assert len(responses) == 1, f"expected one response, got {out!r}"
    assert responses[0].status == status, responses[0]
    assert rest == b""


def served(port: int, data: bytes, body: bytes) -> None:
    """``data`` reaches the app, whose echo of the body is ``body``; the connection stays open."""
    with Conn(port) as c:
        c.send(data)
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == body
        c.assert_open()


def chunked_post(chunks: bytes, path: str = "/echo") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + chunks


# --------------------------------------------------------------- item 11: bare LF in the head


@pytest.mark.parametrize(
    "head",
    [
        b"POST /echo HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc",
        b"POST /echo HTTP/1.1\r\nHost: x\nContent-Length: 3\r\n\r\nabc",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\nabc",
        b"POST /echo HTTP/1.1\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        b"\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    ],
)
def test_bare_lf_in_request_head_is_400(serve, head):
    """issue 13 item 11: a request head with bare-LF line endings reached the app (a
    proxy that splits lines on CRLF only would frame it differently)."""
    app = Recorder()
    s = serve(app)
    refused(s.port, head, 400)
    assert app.calls == []
    served(s.port, head.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), b"abc")
    assert app.calls == [("POST", "/echo", b"abc", 0)]


# --------------------------------------------------------------- item 11: chunk-size line


@pytest.mark.parametrize(
    "bad, good",
    [
        (b"3 junk", b"3 ;junk"),
        (b"3 1", b"3;1"),
        (b"3;\x00", b"3;x"),
        (b"3;a=", b'3;a=""'),
        (b"6;5 xt=1", b"6;5;xt=1"),
        (b"3 ", b"3"),
        (b"3;", b"3;a"),
        (b"3;a=b c", b"3;a=b;c"),
        (b'3;a="unterminated', b'3;a="terminated"'),
        (b'3;a="x"y', b'3;a="x";y'),
        (b"3;a=b\x7f", b"3;a=b"),
        (b"3;a b", b"3;a=b"),
        (b"3;=b", b"3;a=b"),
    ],
)
def test_chunk_size_line_follows_rfc9112(serve, bad, good):
    """issue 13 item 11: the chunk-size line accepted anything after a space or tab
    (``3 junk``, ``3 1``, ``3;\\x00``, ``3;a=``, ``6;5 xt=1``); waitress answers 400."""
    app = Recorder()
    s = serve(app)
    size = int(bad[:1], 16)
    data = b"x" * size
    refused(s.port, chunked_post(bad + b"\r\n" + data + b"\r\n0\r\n\r\n"), 400)
    assert app.calls == []
    served(s.port, chunked_post(good + b"\r\n" + data + b"\r\n0\r\n\r\n"), data)
    assert app.calls == [("POST", "/echo", data, 0)]


def test_valid_chunk_extensions_still_reach_the_app(serve):
    """issue 13 item 11: the strict chunk-ext grammar (BWS, token names, token or
    quoted-string values) still accepts every valid form, and refuses a bad last chunk."""
    app = Recorder()
    s = serve(app)
    chunks = (
        b"3;a=b\r\nabc\r\n"
        b'3 ; a = "q\\"x"\r\ndef\r\n'
        b"3;a;b=c\r\nghi\r\n"
        b"A\t;\tn=v\r\n0123456789\r\n"
        b"a;!#$%&'*+-.^_`|~=ok\r\n0123456789\r\n"
        b'1;q="\xe9 \\\xff"\r\nZ\r\n'
        b"000;end=1\r\nX-Trailer: yes\r\n\r\n"
    )
    body = b"abcdefghi" + b"0123456789" * 2 + b"Z"
    served(s.port, chunked_post(chunks), body)
    assert app.calls == [("POST", "/echo", body, 0)]
    refused(s.port, chunked_post(b"0 junk\r\n\r\n"), 400)
    refused(s.port, chunked_post(b"0\r\nNo colon\r\n\r\n"), 400)
    assert len(app.calls) == 1


# --------------------------------------------------------------- item 12: header count


@pytest.mark.parametrize("count", [129, 500])
def test_many_headers_within_size_limit_are_served(serve, count):
    """issue 13 item 12: more than 128 header fields got 431 whatever
    max_request_header_size said (waitress serves 500 headers)."""
    app = Recorder()
    s = serve(app, max_request_header_size=16384)
    headers = "".join(f"X-H{i}: v\r\n" for i in range(count)).encode()
    request = b"POST /many HTTP/1.1\r\nHost: x\r\n" + headers + b"Content-Length: 2\r\n\r\nok"
    assert len(request) < 16384
    served(s.port, request, b"ok")
    assert app.calls == [("POST", "/many", b"ok", count)]
    # The size limit still applies to a head with many small headers.
    small = serve(app, max_request_header_size=len(request) - 10)
    refused(small.port, request, 431)
    assert len(app.calls) == 1


# --------------------------------------------------------------- item 13: empty lines


def test_many_empty_lines_before_request_line_are_400(serve):
    """issue 13 item 13: empty lines before a request line were unbounded; a few
    are ignored (RFC 9112 §2.2), more get 400 and a close."""
    app = Recorder()
    s = serve(app)
    request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    served(s.port, b"\r\n\r\n" + request, b"abc")
    assert len(app.calls) == 1
    refused(s.port, b"\r\n" * 100 + request, 400)
    # Refused before the request line arrives: the empty lines alone are enough.
    with Conn(s.port) as c:
        c.send(b"\r\n" * 100)
        r = c.read_response()
        assert r.status == 400, r
        c.assert_closed()
    assert len(app.calls) == 1


def test_endless_crlf_stream_is_refused_and_others_served(serve):
    """issue 13 item 13: a stream of b"\\r\\n" was kept and rescanned after every read
    (quadratic CPU on the loop thread, memory held, other connections slowed)."""
    app = Recorder()
    s = serve(app)
    flood = connect(s.port, timeout=10.0)
    errors = []

    def send_flood() -> None:
        try:
            flood.sendall(b"\r\n" * 1_000_000)
        except OSError as exc:  # the server may close before all of it is sent
            errors.append(exc)

    sender = threading.Thread(target=send_flood, daemon=True)
    start = time.monotonic()
    sender.start()
    try:
        ping(s.port)  # another connection is served meanwhile
        out = read_until_close(flood, timeout=5.0)
        (r,), rest = parse_responses(out)
        assert r.status == 400, r
        assert rest == b""
        assert time.monotonic() - start < 5.0
        ping(s.port)
        sender.join(10.0)
        assert not sender.is_alive(), "the server neither read nor dropped the flood"
    finally:
        try:
            flood.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        flood.close()
    assert app.calls == []
