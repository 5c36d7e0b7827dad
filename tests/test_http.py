"""HTTP/1.1 protocol rules (RFC 9112), checked with raw bytes over real sockets.

Each test asserts exact status, headers, body bytes and whether the connection closed.
"""

from __future__ import annotations

import email.utils
import os
import socket
import threading
import time
from datetime import datetime, timezone

import pytest

from conftest import (
    Conn,
    echo_app,
    parse_one,
    parse_responses,
    ping,
    raw,
    read_until_close,
    simple_app,
    split_head,
)


def req(method="GET", path="/", version="HTTP/1.1", headers=(), body=b"") -> bytes:
    lines = [f"{method} {path} {version}"]
    if version == "HTTP/1.1":
        lines.append("Host: test")
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def assert_bad_request(port, data: bytes, status: int = 400) -> None:
    """The server answers ``status`` and closes the connection; then still serves others."""
    out = raw(port, data)
    responses, rest = parse_responses(out)
    assert len(responses) == 1, f"expected exactly one response, got {out!r}"
    r = responses[0]
    assert r.status == status, r
    assert rest == b""
    # it closed (raw() returned on EOF); a fresh connection is still served
    ping(port)


# ----------------------------------------------------------------- persistence


def test_http11_keep_alive_by_default(serve):
    s = serve(echo_app)
    with Conn(s.port) as c:
        c.send(req("GET", "/first"))
        r1 = c.read_response()
        assert r1.status == 200
        assert r1.header("X-Path") == "/first"
        assert "close" not in r1.connection_tokens()
        c.send(req("GET", "/second"))
        r2 = c.read_response()
        assert r2.status == 200
        assert r2.header("X-Path") == "/second"
        assert r2.body == b""
        c.assert_open()


def test_http10_closes_by_default(serve):
    s = serve(simple_app(b"hello"))
    out = raw(s.port, b"GET / HTTP/1.0\r\n\r\n")
    (r,), rest = parse_responses(out)
    assert r.status == 200
    assert r.body == b"hello"
    assert r.header("Content-Length") == "5"
    assert "keep-alive" not in r.connection_tokens()
    assert rest == b""


def test_http10_keep_alive_opt_in(serve):
    s = serve(simple_app(b"hello"))
    with Conn(s.port) as c:
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"hello"
        assert r.header("Content-Length") == "5"
        assert r.header("Connection") is not None
        assert r.header("Connection").lower() == "keep-alive"
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"hello"
        assert r.header("Connection").lower() == "keep-alive"
        # a plain 1.0 request on the same connection: answered, then closed
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.body == b"hello"
        c.assert_closed()


@pytest.mark.parametrize("connection", ["", "Connection: keep-alive\r\n"])
def test_http10_generator_without_length_is_close_delimited(serve, connection):
    """HTTP/1.0 has no chunking: an unknown length ends with the connection,
    even when the client asked for keep-alive."""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"hello"
        yield b"world"

    s = serve(app)
    out = raw(s.port, f"GET / HTTP/1.0\r\n{connection}\r\n".encode())
    r, body = split_head(out)
    assert r.status == 200
    assert not r.has_header("Content-Length")
    assert not r.has_header("Transfer-Encoding")
    assert "keep-alive" not in r.connection_tokens()
    assert body == b"helloworld"


def test_half_closed_client_gets_its_response_then_the_close(serve):
    """A client may shut down its sending side right after the request: it still
    gets the response, and the server closes at once instead of holding the
    connection until channel_timeout."""
    s = serve(simple_app())
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
        sock.sendall(req("GET", "/"))
        sock.shutdown(socket.SHUT_WR)
        data = read_until_close(sock, timeout=2)  # fails if the server holds it open
    r, used = parse_one(data)
    assert r.status == 200
    assert used == len(data)


def test_client_connection_close(serve):
    s = serve(echo_app)
    with Conn(s.port) as c:
        c.send(req("GET", "/x", headers=["Connection: close"]))
        r = c.read_response()
        assert r.status == 200
        assert r.header("X-Path") == "/x"
        assert "close" in r.connection_tokens()
        c.assert_closed()


def test_client_connection_close_ignores_later_pipelined_requests(serve):
    s = serve(echo_app)
    out = raw(s.port, req("GET", "/one", headers=["Connection: close"]) + req("GET", "/two"))
    responses, rest = parse_responses(out)
    assert [r.header("X-Path") for r in responses] == ["/one"]
    assert rest == b""


def test_app_connection_close_header_closes(serve):
    s = serve(simple_app(b"bye", extra=[("Connection", "close")]))
    with Conn(s.port) as c:
        c.send(req("GET", "/"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"bye"
        assert r.header("Connection").lower() == "close"
        c.assert_closed()


def test_pipelined_requests_answered_in_order(serve):
    s = serve(echo_app)
    with Conn(s.port) as c:
        c.send(
            req("GET", "/1")
            + req("POST", "/2", headers=["Content-Length: 5"], body=b"hello")
            + req("GET", "/3?q=x")
        )
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
        assert (r1.status, r1.header("X-Path"), r1.header("X-Method"), r1.body) == (200, "/1", "GET", b"")
        assert (r2.status, r2.header("X-Path"), r2.header("X-Method"), r2.body) == (200, "/2", "POST", b"hello")
        assert (r3.status, r3.header("X-Path"), r3.header("X-Query"), r3.body) == (200, "/3", "q=x", b"")
        c.assert_open()


def test_pipelined_requests_with_slow_first_response_stay_in_order(serve):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            time.sleep(0.3)
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    s = serve(app, threads=4)
    with Conn(s.port) as c:
        c.send(req("GET", "/slow") + req("GET", "/fast1") + req("GET", "/fast2"))
        assert [c.read_response().body for _ in range(3)] == [b"/slow", b"/fast1", b"/fast2"]


# ----------------------------------------------------------------- request bodies


def test_content_length_body(serve):
    s = serve(echo_app)
    with Conn(s.port) as c:
        c.send(req("POST", "/", headers=["Content-Length: 11"], body=b"hello world"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"hello world"
        assert r.header("Content-Length") == "11"
        c.assert_open()


def test_content_length_body_split_across_packets(serve):
    s = serve(echo_app)
    with Conn(s.port) as c:
        c.send(req("POST", "/", headers=["Content-Length: 11"], body=b"hel"))
        time.sleep(0.2)
        c.send(b"lo wo")
        time.sleep(0.2)
        c.send(b"rld" + req("GET", "/next"))
        r = c.read_response()
        assert r.body == b"hello world"
        r = c.read_response()
        assert r.header("X-Path") == "/next"
        assert r.body == b""


@pytest.mark.parametrize("overflow", [524288, 1000], ids=["in-memory", "spooled-to-file"])
@pytest.mark.parametrize("expect", [False, True], ids=["plain", "100-continue"])
def test_large_body_in_pieces_then_pipelined(serve, overflow, expect):
    # A declared-length body in memory is read straight into its buffer; one
    # past inbuf_overflow goes through a temp file. Either way it arrives whole,
    # and the bytes after it are the next request.
    s = serve(echo_app, inbuf_overflow=overflow)
    body = os.urandom(300_000)
    headers = [f"Content-Length: {len(body)}"] + (["Expect: 100-continue"] if expect else [])
    with Conn(s.port) as c:
        c.send(req("POST", "/", headers=headers))
        if expect:
            assert c.read_response().status == 100
        for i in range(0, len(body), 70_000):
            c.send(body[i:i + 70_000])
            time.sleep(0.02)
        c.send(req("GET", "/next"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == body
        r = c.read_response()
        assert r.header("X-Path") == "/next"


def test_content_length_zero(serve):
    s = serve(echo_app)
    with Conn(s.port) as c:
        c.send(req("POST", "/", headers=["Content-Length: 0"]) + req("GET", "/after"))
        r = c.read_response()
        assert r.status == 200 and r.body == b""
        r = c.read_response()
        assert r.header("X-Path") == "/after"


def test_chunked_request_body(serve):
    s = serve(echo_app)
    with Conn(s.port) as c:
        c.send(
            req("POST", "/", headers=["Transfer-Encoding: chunked"])
            + b"5\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\n\r\n"
            + req("GET", "/after")
        )
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"hello world0123456789"
        r = c.read_response()
        assert r.header("X-Path") == "/after"


def test_header_names_and_chunked_case_insensitive(serve):
    s = serve(echo_app)
    with Conn(s.port) as c:
        c.send(
            req("POST", "/a", headers=["content-length: 3"], body=b"abc")
            + req("POST", "/b", headers=["TRANSFER-ENCODING: Chunked"], body=b"3\r\ndef\r\n0\r\n\r\n")
        )
        r = c.read_response()
        assert (r.status, r.body) == (200, b"abc")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"def")


def test_chunked_request_with_extensions_and_trailers(serve):
    s = serve(echo_app)
    with Conn(s.port) as c:
        c.send(
            req("POST", "/", headers=["Transfer-Encoding: chunked"])
            + b"5;name=value\r\nhello\r\n"
            + b"6;a=1;b=\"x y\"\r\n world\r\n"
            + b"0;last\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n"
            + req("GET", "/after")
        )
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"hello world"
        r = c.read_response()
        assert r.status == 200
        assert r.header("X-Path") == "/after"
        c.assert_open()


def test_chunked_request_split_across_packets(serve):
    s = serve(echo_app)
    with Conn(s.port) as c:
        pieces = [
            req("POST", "/", headers=["Transfer-Encoding: chunked"]),
            b"5\r",
            b"\nhel",
            b"lo\r",
            b"\n",
            b"0\r\n",
            b"\r\n",
        ]
        for p in pieces:
            c.send(p)
            time.sleep(0.05)
        r = c.read_response()
        assert r.body == b"hello"
        c.assert_open()


# ----------------------------------------------------------------- 400 + close


def test_both_content_length_and_transfer_encoding(serve):
    s = serve(echo_app)
    assert_bad_request(
        s.port,
        req("POST", "/", headers=["Content-Length: 5", "Transfer-Encoding: chunked"])
        + b"5\r\nhello\r\n0\r\n\r\n",
    )


@pytest.mark.parametrize("value", ["abc", "-1", "1,2", "+5", "5 5", "0x5"])
def test_malformed_content_length(serve, value):
    s = serve(echo_app)
    assert_bad_request(s.port, req("POST", "/", headers=[f"Content-Length: {value}"]) + b"hello")


def test_repeated_content_length_different(serve):
    s = serve(echo_app)
    assert_bad_request(
        s.port, req("POST", "/", headers=["Content-Length: 5", "Content-Length: 6"]) + b"hello!"
    )


def test_repeated_content_length_same(serve):
    s = serve(echo_app)
    assert_bad_request(
        s.port, req("POST", "/", headers=["Content-Length: 5", "Content-Length: 5"]) + b"hello"
    )


@pytest.mark.parametrize("value", ["gzip", "chunked, gzip", "identity"])
def test_transfer_encoding_other_than_chunked(serve, value):
    """A coding maitre does not implement: 501, as from waitress (RFC 9112 §6.1)."""
    s = serve(echo_app)
    assert_bad_request(
        s.port,
        req("POST", "/", headers=[f"Transfer-Encoding: {value}"]) + b"5\r\nhello\r\n0\r\n\r\n",
        501,
    )


def test_bad_chunk_size(serve):
    s = serve(echo_app)
    assert_bad_request(
        s.port, req("POST", "/", headers=["Transfer-Encoding: chunked"]) + b"zz\r\nhello\r\n0\r\n\r\n"
    )


def test_missing_crlf_after_chunk(serve):
    s = serve(echo_app)
    assert_bad_request(
        s.port, req("POST", "/", headers=["Transfer-Encoding: chunked"]) + b"5\r\nhelloXX0\r\n\r\n"
    )


@pytest.mark.parametrize(
    "line",
    [b"GARBAGE\r\n\r\n", b"GET /\r\n\r\n", b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n", b"\x00\x01\x02\xff\r\n\r\n"],
)
def test_garbage_request_line(serve, line):
    s = serve(echo_app)
    assert_bad_request(s.port, line)


def test_whitespace_before_header_colon(serve):
    # RFC 9112 5.1: MUST reject with 400
    s = serve(echo_app)
    assert_bad_request(s.port, b"GET / HTTP/1.1\r\nHost : test\r\n\r\n")


# ----------------------------------------------------------------- Expect: 100-continue


def test_expect_continue_not_sent_when_app_does_not_read(serve):
    def app(environ, start_response):
        body = b"no read"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    s = serve(app)
    with Conn(s.port) as c:
        c.send(req("POST", "/", headers=["Expect: 100-continue", "Content-Length: 5"]))
        r = c.read_response()
        assert r.status == 200, f"first response must be the final one, got {r!r}"
        assert r.body == b"no read"
        assert b"100 Continue" not in r.raw
    ping(s.port)


def test_expect_continue_sent_when_app_reads(serve):
    may_read = threading.Event()
    seen = []

    def app(environ, start_response):
        may_read.wait(5)
        body = environ["wsgi.input"].read()
        seen.append(body)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    s = serve(app)
    with Conn(s.port) as c:
        c.send(req("POST", "/", headers=["Expect: 100-continue", "Content-Length: 5"]))
        # the app has not read wsgi.input yet: nothing may be sent
        c.read_nothing_for(0.5)
        may_read.set()
        assert c.read_bytes(len(b"HTTP/1.1 100 Continue\r\n\r\n")) == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.send(b"hello")
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"hello"
        c.assert_open()
    assert seen == [b"hello"]


# ----------------------------------------------------------------- limits


def test_request_header_too_large_431(serve):
    s = serve(echo_app, max_request_header_size=200)
    with Conn(s.port) as c:
        c.send(req("GET", "/", headers=["X-Big: " + "a" * 500]))
        r = c.read_response()
        assert r.status == 431, r
        c.assert_closed()
    ping(s.port)


def test_request_header_within_limit_ok(serve):
    s = serve(echo_app, max_request_header_size=200)
    with Conn(s.port) as c:
        c.send(req("GET", "/ok", headers=["X-Small: " + "a" * 20]))
        r = c.read_response()
        assert r.status == 200
        assert r.header("X-Path") == "/ok"


def test_request_body_too_large_content_length_413(serve):
    called = []

    def app(environ, start_response):
        called.append(1)
        return echo_app(environ, start_response)

    s = serve(app, max_request_body_size=100)
    with Conn(s.port) as c:
        # declared too large: refused from the head alone, without the body
        c.send(req("POST", "/big", headers=["Content-Length: 1000"]))
        r = c.read_response()
        assert r.status == 413, r
        c.assert_closed()
    assert called == []
    ping(s.port)


def test_request_body_under_limit_ok(serve):
    s = serve(echo_app, max_request_body_size=100)
    with Conn(s.port) as c:
        c.send(req("POST", "/", headers=["Content-Length: 60"], body=b"x" * 60))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"x" * 60


def test_request_body_too_large_chunked_413(serve):
    s = serve(echo_app, max_request_body_size=100)
    with Conn(s.port) as c:
        c.send(
            req("POST", "/big", headers=["Transfer-Encoding: chunked"])
            + b"50\r\n" + b"a" * 80 + b"\r\n"
            + b"50\r\n" + b"b" * 80 + b"\r\n"
            + b"0\r\n\r\n"
        )
        r = c.read_response()
        assert r.status == 413, r
        c.assert_closed()
    ping(s.port)


# ----------------------------------------------------------------- responses


def test_app_content_length_honoured(serve):
    s = serve(simple_app(b"hello"))
    with Conn(s.port) as c:
        c.send(req("GET", "/"))
        r = c.read_response()
        assert r.status == 200
        assert r.header("Content-Length") == "5"
        assert not r.has_header("Transfer-Encoding")
        assert r.body == b"hello"
        c.assert_open()


def test_app_sends_less_than_content_length_closes(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        yield b"abc"

    s = serve(app)
    sock_data = raw(s.port, req("GET", "/"))  # no Connection: close -- the server must close
    r, body = split_head(sock_data)
    assert r.status == 200
    assert r.header("Content-Length") == "10"
    assert body == b"abc"
    ping(s.port)


def test_app_sends_more_than_content_length_truncated(serve):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/ok":
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return iter([b"ab", b"cdef", b"ghi"])

    s = serve(app)
    out = raw(s.port, req("GET", "/more") + req("GET", "/ok", headers=["Connection: close"]))
    r, used = parse_one(out, "GET")
    assert r.status == 200
    assert r.header("Content-Length") == "3"
    assert r.body == b"abc"
    rest = out[used:]
    # either the server closed after the truncated response, or it went on with the
    # next request -- but never an extra byte of the first body.
    if rest:
        (r2,), tail = parse_responses(rest)
        assert r2.status == 200 and r2.body == b"ok"
        assert tail == b""


@pytest.mark.parametrize("kind", [list, tuple])
def test_single_element_result_gets_content_length(serve, kind):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return kind([b"hello world"])

    s = serve(app)
    with Conn(s.port) as c:
        c.send(req("GET", "/"))
        r = c.read_response()
        assert r.status == 200
        assert r.header("Content-Length") == "11"
        assert not r.has_header("Transfer-Encoding")
        assert r.body == b"hello world"
        c.assert_open()


def test_generator_without_length_is_chunked_on_http11(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"hello"

    s = serve(app)
    with Conn(s.port) as c:
        c.send(req("GET", "/"))
        r = c.read_response()
        assert r.status == 200
        assert r.header("Transfer-Encoding") == "chunked"
        assert not r.has_header("Content-Length")
        assert r.raw.endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), r.raw
        assert r.body == b"hello"
        c.assert_reusable_or_closed(r)


def test_chunked_response_keeps_connection_alive(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a"
        yield b"b"

    s = serve(app)
    with Conn(s.port) as c:
        for _ in range(3):
            c.send(req("GET", "/"))
            r = c.read_response()
            assert r.chunked and r.body == b"ab"
            assert "close" not in r.connection_tokens()
        c.assert_open()


def test_generator_chunks_framing_and_empty_items(serve):
    parts = [b"hello", b"", b" ", b"world" * 1000, b"", b"!"]

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        for p in parts:
            yield p

    s = serve(app)
    with Conn(s.port) as c:
        c.send(req("GET", "/"))
        r = c.read_response()
        assert r.chunked
        assert r.body == b"".join(parts)
        # an empty item must not produce a (terminating) zero-size chunk
        assert all(r.chunks), r.chunks
        assert r.raw.endswith(b"\r\n0\r\n\r\n")
        assert r.trailers == []
        c.assert_reusable_or_closed(r)


def test_large_response_content_length(serve):
    body = bytes(range(256)) * 20_000  # ~5 MB

    s = serve(simple_app(body))
    with Conn(s.port, timeout=10) as c:
        c.send(req("GET", "/"))
        r = c.read_response()
        assert r.header("Content-Length") == str(len(body))
        assert r.body == body
        c.assert_open()


def test_large_chunked_response_to_slow_reader(serve):
    piece = bytes(range(256)) * 128  # 32 KiB

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        for i in range(200):
            yield bytes([i % 256]) + piece

    s = serve(app, outbuf_overflow=65536, outbuf_high_watermark=262144)
    with Conn(s.port, timeout=10) as c:
        c.send(req("GET", "/"))
        time.sleep(0.5)  # let the server run into its buffer limits
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"".join(bytes([i % 256]) + piece for i in range(200))
        c.assert_reusable_or_closed(r)


def test_response_header_injection_refused(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2"), ("X-Bad", "a\r\nX-Injected: 1")])
        return [b"ok"]

    s = serve(app)
    out = raw(s.port, req("GET", "/", headers=["Connection: close"]))
    assert b"\r\nX-Injected" not in out
    ping(s.port)


def test_head_has_headers_but_no_body(serve):
    s = serve(simple_app(b"hello"))
    with Conn(s.port) as c:
        c.send(req("HEAD", "/") + req("GET", "/"))
        r = c.read_response("HEAD")
        assert r.status == 200
        assert r.header("Content-Length") == "5"
        assert r.header("Content-Type") == "text/plain"
        # the next response must start right after the head: no body bytes were sent
        r2 = c.read_response("GET")
        assert r2.status == 200
        assert r2.body == b"hello"
        c.assert_open()


def test_head_with_generator_sends_no_chunks(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"hello"
        yield b"world"

    s = serve(app)
    with Conn(s.port) as c:
        c.send(req("HEAD", "/"))
        r = c.read_response("HEAD")
        assert r.status == 200
        # fails if chunk bytes followed the HEAD response's head
        c.assert_reusable_or_closed(r)


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_statuses(serve, status):
    def app(environ, start_response):
        start_response(status, [])
        return iter([])

    s = serve(app)
    with Conn(s.port) as c:
        c.send(req("GET", "/"))
        r = c.read_response()
        assert r.status == int(status[:3])
        assert not r.has_header("Transfer-Encoding")
        if r.status == 204:
            assert not r.has_header("Content-Length")  # RFC 9110 8.6: MUST NOT
        assert r.body == b""
        c.assert_reusable_or_closed(r)  # no stray bytes after the head


def test_date_and_server_headers_default(serve):
    s = serve(simple_app(b"hi"))
    with Conn(s.port) as c:
        c.send(req("GET", "/"))
        r = c.read_response()
    assert r.header("Server") == "maitre"
    date = r.header("Date")
    assert date is not None and date.endswith(" GMT"), date
    parsed = email.utils.parsedate_to_datetime(date)
    assert abs((datetime.now(timezone.utc) - parsed).total_seconds()) < 60


def test_server_header_ident(serve):
    s = serve(simple_app(b"hi"), ident="foo")
    with Conn(s.port) as c:
        c.send(req("GET", "/"))
        r = c.read_response()
    assert r.header("Server") == "foo"
    assert r.has_header("Date")


def test_app_server_header_not_duplicated(serve):
    s = serve(simple_app(b"hi", extra=[("Server", "custom")]))
    with Conn(s.port) as c:
        c.send(req("GET", "/"))
        r = c.read_response()
    assert r.header_all("Server") == ["custom"]


# ----------------------------------------------------------------- app errors


def failing_app(environ, start_response):
    raise RuntimeError("secret-boom-1234")


def test_exception_before_start_response_500(serve):
    s = serve(failing_app)
    out = raw(s.port, req("GET", "/", headers=["Connection: close"]))
    (r,), rest = parse_responses(out)
    assert r.status == 500
    assert b"Internal Server Error" in r.body
    assert b"Traceback" not in r.body
    assert b"secret-boom-1234" not in r.body
    assert rest == b""
    ping(s.port)


def test_exception_before_start_response_500_with_traceback(serve):
    s = serve(failing_app, expose_tracebacks=True)
    out = raw(s.port, req("GET", "/", headers=["Connection: close"]))
    (r,), rest = parse_responses(out)
    assert r.status == 500
    assert b"Internal Server Error" in r.body
    assert b"Traceback" in r.body
    assert b"secret-boom-1234" in r.body
    ping(s.port)


def test_exception_after_start_response_before_body_500(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        raise RuntimeError("late-but-not-sent")

    s = serve(app)
    out = raw(s.port, req("GET", "/", headers=["Connection: close"]))
    (r,), rest = parse_responses(out)
    assert r.status == 500
    assert b"Internal Server Error" in r.body
    ping(s.port)


def test_exception_after_partial_chunked_body_closes(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        time.sleep(0.1)
        raise RuntimeError("mid-body")

    s = serve(app)
    out = raw(s.port, req("GET", "/"))  # keep-alive request: the server must close
    # PEP 3333: a yielded block is transmitted, the app's later failure notwithstanding;
    # the truncated response must not be terminated (no last chunk).
    r, body = split_head(out)
    assert r.status == 200
    assert r.header("Transfer-Encoding") == "chunked"
    assert body == b"7\r\npartial\r\n", body
    ping(s.port)


def test_exception_after_partial_content_length_body_closes(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        yield b"partial"
        time.sleep(0.1)
        raise RuntimeError("mid-body")

    s = serve(app)
    out = raw(s.port, req("GET", "/"))
    r, body = split_head(out)
    assert r.status == 200
    assert r.header("Content-Length") == "100"
    assert body == b"partial", body
    ping(s.port)


def test_exception_in_write_app_after_headers_closes(serve):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial")
        raise RuntimeError("after write")

    s = serve(app)
    out = raw(s.port, req("GET", "/"))
    r, body = split_head(out)
    assert r.status == 200
    assert body == b"7\r\npartial\r\n", body  # written, and not terminated
    ping(s.port)
