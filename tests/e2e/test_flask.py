"""A real Flask application served by maitre over real sockets on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import sys
import time

import pytest

flask = pytest.importorskip("flask")
requests = pytest.importorskip("requests")
from werkzeug.exceptions import InternalServerError, NotFound  # noqa: E402

from conftest import Conn, connect, parse_responses, ping, split_head, wait_for  # noqa: E402

from . import flask_app  # noqa: E402
from .conftest import url  # noqa: E402

HELLO = b"hello from flask\n"
TEXT = "text/plain; charset=utf-8"
MAITRE_500 = (
    b"Internal Server Error\r\n\r\nThe server encountered an unexpected internal server error\r\n"
)


def assert_server_headers(headers) -> None:
    assert headers["Server"] == "maitre"
    assert headers["Date"].endswith(" GMT")


# --------------------------------------------------------------------------- basics


def test_plain_text(serve, session):
    s = serve(flask_app.app)
    r = session.get(url(s, "/"))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == TEXT
    assert r.headers["Content-Length"] == str(len(HELLO))
    assert "Transfer-Encoding" not in r.headers
    assert_server_headers(r.headers)
    assert r.content == HELLO


def test_head_has_headers_but_no_body(serve):
    s = serve(flask_app.app)
    with Conn(s.port) as c:
        c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response("HEAD")
        assert r.status == 200
        assert r.header("Content-Length") == str(len(HELLO))
        assert r.header("Content-Type") == TEXT
        assert r.body == b""
        # no stray body bytes: the next request on the connection parses cleanly
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == HELLO


def test_json_round_trip(serve, session):
    s = serve(flask_app.app)
    payload = {"name": "maître d'hôtel", "numbers": [1, 2.5, -3], "nested": {"ok": True, "none": None}}
    body = json.dumps(payload).encode()
    r = session.post(url(s, "/json"), data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Content-Length"] == str(len(r.content))
    assert r.json() == {
        "received": payload,
        "content_length": len(body),
        "content_type": "application/json",
    }


def test_json_chunked_request_body(serve, session):
    """A chunked request body reaches Flask de-chunked, with CONTENT_LENGTH set."""
    s = serve(flask_app.app)
    payload = {"items": list(range(200)), "text": "x" * 3000}
    body = json.dumps(payload).encode()
    pieces = [body[i : i + 700] for i in range(0, len(body), 700)]
    r = session.post(url(s, "/json"), data=iter(pieces), headers={"Content-Type": "application/json"})
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 200
    assert r.json() == {
        "received": payload,
        "content_length": len(body),
        "content_type": "application/json",
    }


def test_form_post(serve, session):
    s = serve(flask_app.app)
    r = session.post(
        url(s, "/form"),
        params={"q": "search term"},
        data={"a": "1", "b": ["x", "y"], "unicode": "café ☕", "empty": ""},
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {
        "fields": {"a": ["1"], "b": ["x", "y"], "unicode": ["café ☕"], "empty": [""]},
        "query": "search term",
    }


def test_multipart_upload_spooled_to_disk(serve, session):
    """A ~2 MB upload, far past inbuf_overflow, so the server spools it to a temp file."""
    s = serve(flask_app.app, inbuf_overflow=65536)
    data = random.Random(20240601).randbytes(2 * 1024 * 1024 + 123)
    r = session.post(
        url(s, "/upload"),
        files={
            "file": ("big.bin", data, "application/octet-stream"),
            "extra": ("small.txt", b"tiny", "text/plain"),
        },
        data={"note": "two megabytes"},
    )
    assert int(r.request.headers["Content-Length"]) > 2 * 1024 * 1024
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {
        "filename": "big.bin",
        "content_type": "application/octet-stream",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": "two megabytes",
        "other_files": ["extra"],
    }
    ping(s.port)


# --------------------------------------------------------------------------- streaming


def expected_stream(name: str) -> list:
    return [b"stream for " + name.encode() + b"\n"] + list(flask_app.STREAM_PARTS)


def test_streaming_response_is_chunked_and_complete(serve):
    s = serve(flask_app.app)
    with Conn(s.port) as c:
        c.send(b"GET /stream?name=alice HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.header("Content-Type") == TEXT
        assert r.header("Transfer-Encoding") == "chunked"
        assert not r.has_header("Content-Length")
        assert r.chunked
        # every item the generator yielded is one chunk, in order
        assert r.chunks == expected_stream("alice")
        assert r.body == b"".join(expected_stream("alice"))
        c.assert_open()


def test_streaming_response_via_requests(serve, session):
    s = serve(flask_app.app)
    with session.get(url(s, "/stream?name=bob"), stream=True) as r:
        assert r.status_code == 200
        assert r.headers["Transfer-Encoding"] == "chunked"
        received = b"".join(r.iter_content(chunk_size=None))
    assert received == b"".join(expected_stream("bob"))


def test_streaming_first_chunk_arrives_before_the_rest_is_produced(serve):
    """The generator blocks after its first item until the client has that item."""
    flask_app.STREAM_GATE.clear()
    flask_app.STREAM_GATE_RESULTS.clear()
    s = serve(flask_app.app)
    sock = connect(s.port, timeout=5)
    try:
        sock.sendall(b"GET /stream?name=carol&gate=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        first = b"stream for carol\n"
        wanted = b"%x\r\n" % len(first) + first + b"\r\n"
        buf = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in buf or not buf.split(b"\r\n\r\n", 1)[1].startswith(wanted):
            assert time.monotonic() < deadline, f"first chunk did not arrive: {buf!r}"
            chunk = sock.recv(65536)
            assert chunk, f"connection closed early: {buf!r}"
            buf += chunk
        head, rest = split_head(buf)
        assert head.status == 200 and head.header("Transfer-Encoding") == "chunked"
        assert rest == wanted  # nothing past the first chunk yet: the app is blocked
        flask_app.STREAM_GATE.set()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        sock.close()
        flask_app.STREAM_GATE.clear()
    (r,), leftover = parse_responses(buf)
    assert leftover == b""
    assert r.chunks == expected_stream("carol")
    assert flask_app.STREAM_GATE_RESULTS == [True]


def test_streaming_failure_mid_body_breaks_off_and_server_keeps_serving(serve):
    s = serve(flask_app.app)
    with Conn(s.port) as c:
        c.send(b"GET /stream-fail HTTP/1.1\r\nHost: t\r\n\r\n")
        deadline = time.monotonic() + 5
        while not c.eof:
            assert time.monotonic() < deadline, "connection not closed after a failed stream"
            c._fill(deadline)
        head, rest = split_head(c.buf)
        assert head.status == 200
        assert head.header("Transfer-Encoding") == "chunked"
        # the first chunk went out, the terminating 0-chunk never did
        assert rest == b"b\r\nfirst part\n\r\n"
    ping(s.port)


# --------------------------------------------------------------------------- redirects, errors


def test_redirect(serve, session):
    s = serve(flask_app.app)
    r = session.get(url(s, "/redirect"), allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == "/"
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Content-Length"] == str(len(r.content))
    assert b'<a href="/">/</a>' in r.content
    followed = session.get(url(s, "/redirect"))
    assert followed.status_code == 200
    assert [h.status_code for h in followed.history] == [302]
    assert followed.content == HELLO


def test_404(serve, session):
    s = serve(flask_app.app)
    r = session.get(url(s, "/no/such/page"))
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.content == NotFound().get_body().encode()
    assert r.headers["Content-Length"] == str(len(r.content))


@pytest.mark.parametrize("path", ["/abort", "/boom"])
def test_500_from_flask_then_keeps_serving_on_same_connection(serve, path):
    """abort(500) and an exception in a view: Flask renders the 500 page itself."""
    s = serve(flask_app.app)
    conn = http.client.HTTPConnection(s.host, s.port, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        assert r.status == 500
        assert r.getheader("Content-Type") == "text/html; charset=utf-8"
        assert body == InternalServerError().get_body().encode()
        assert r.getheader("Content-Length") == str(len(body))
        assert not r.will_close  # Flask produced the response: the connection stays usable
        sock = conn.sock
        conn.request("GET", "/")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == HELLO
        assert conn.sock is sock
    finally:
        conn.close()


@pytest.mark.parametrize("expose", [False, True])
def test_exception_propagated_to_server_gets_500(serve, session, expose):
    """PROPAGATE_EXCEPTIONS: the exception reaches maitre, which answers 500 itself."""
    s = serve(flask_app.propagating_app, expose_tracebacks=expose)
    r = session.get(url(s, "/boom"))
    assert r.status_code == 500
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["Connection"] == "close"
    assert r.headers["Content-Length"] == str(len(r.content))
    assert_server_headers(r.headers)
    if expose:
        assert r.content.startswith(b"Internal Server Error\r\n\r\nTraceback (most recent call last):")
        assert b"RuntimeError: propagated to the server" in r.content
    else:
        assert r.content == MAITRE_500
    r = session.get(url(s, "/"))
    assert r.status_code == 200 and r.content == b"still here\n"
    assert wait_for(lambda: s.server.stats()["requests"]["app_errors"] == 1)


# --------------------------------------------------------------------------- request data


def test_request_headers_and_remote_addr(serve):
    s = serve(flask_app.app)
    conn = http.client.HTTPConnection(s.host, s.port, timeout=5)
    try:
        conn.connect()
        client_port = conn.sock.getsockname()[1]
        conn.putrequest("GET", "/headers?a=1&a=2&b=%C3%A9", skip_accept_encoding=True)
        conn.putheader("X-Custom", "custom value")
        conn.putheader("X-Multi", "one")
        conn.putheader("X-Multi", "two")
        conn.putheader("User-Agent", "e2e-agent/1.0")
        conn.endheaders()
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status == 200
    assert r.getheader("Content-Type") == "application/json"
    assert json.loads(body) == {
        "x_custom": "custom value",
        "x_multi": "one, two",
        "user_agent": "e2e-agent/1.0",
        "host": f"127.0.0.1:{s.port}",
        "remote_addr": "127.0.0.1",
        "remote_port": str(client_port),
        "scheme": "http",
        "method": "GET",
        "server_software": "maitre",
        "query": {"a": ["1", "2"], "b": ["é"]},
    }


def test_keep_alive_mixed_requests_on_one_connection(serve):
    s = serve(flask_app.app)
    conn = http.client.HTTPConnection(s.host, s.port, timeout=5)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, HELLO)
        sock = conn.sock
        body = json.dumps({"k": "v"})
        conn.request("POST", "/json", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200
        assert json.loads(r.read()) == {
            "received": {"k": "v"},
            "content_length": len(body),
            "content_type": "application/json",
        }
        conn.request("GET", "/stream?name=dave")
        r = conn.getresponse()
        assert r.status == 200 and r.chunked
        assert r.read() == b"".join(expected_stream("dave"))
        conn.request("GET", "/missing")
        r = conn.getresponse()
        assert r.status == 404 and r.read() == NotFound().get_body().encode()
        conn.request("GET", "/")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, HELLO)
        assert conn.sock is sock
    finally:
        conn.close()
    assert wait_for(lambda: s.server.stats()["requests"]["total"] >= 5)


# --------------------------------------------------------------------------- url_prefix


def test_url_prefix_sets_script_root_and_url_for(serve, session):
    s = serve(flask_app.app, url_prefix="/app")
    r = session.get(url(s, "/app/where?x=1"))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    base = f"http://127.0.0.1:{s.port}"
    assert r.json() == {
        "script_root": "/app",
        "path": "/where",
        "full_path": "/where?x=1",
        "url_for": "/app/where",
        "url_for_external": f"{base}/app/where",
        "base_url": f"{base}/app/where",
        "url_root": f"{base}/app/",
    }


def test_url_prefix_redirect_and_root(serve, session):
    s = serve(flask_app.app, url_prefix="/app")
    r = session.get(url(s, "/app/redirect"), allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == "/app/"
    r = session.get(url(s, "/app/redirect"))
    assert r.status_code == 200 and r.content == HELLO
    assert r.url == url(s, "/app/")


# --------------------------------------------------------------------------- subprocess


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_maitre_serve_subprocess_serves_flask_and_stops_on_sigterm(serve_process):
    p = serve_process("tests.e2e.flask_app:app", "--threads=2")
    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        assert r.status == 200
        assert r.getheader("Content-Type") == TEXT
        assert r.getheader("Server") == "maitre"
        assert r.read() == HELLO
        conn.request(
            "POST", "/json", body=b'{"via": "subprocess"}', headers={"Content-Type": "application/json"}
        )
        r = conn.getresponse()
        assert r.status == 200
        assert json.loads(r.read())["received"] == {"via": "subprocess"}
    finally:
        conn.close()
    code = p.terminate()
    assert code == 0, p.output
    assert f"Serving on http://127.0.0.1:{p.port}" in p.output


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_json_body_with_expect_100_continue(serve, framing):
    """100 Continue reaches the client and the JSON body the app; a chunked body is
    read before the app runs, so it arrives with its de-chunked length."""
    s = serve(flask_app.app)
    body = json.dumps({"expect": "continue", "pad": "p" * 4000}).encode()
    if framing == "length":
        framing_header, wire = f"Content-Length: {len(body)}", body
    else:
        framing_header = "Transfer-Encoding: chunked"
        pieces = [body[i : i + 999] for i in range(0, len(body), 999)]
        wire = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"
    with Conn(s.port, timeout=5) as c:
        c.send(
            (
                "POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                f"Expect: 100-continue\r\n{framing_header}\r\n\r\n"
            ).encode()
        )
        interim = c.read_response()
        assert interim.status == 100, interim
        c.send(wire)
        r = c.read_response()
        assert r.status == 200, r
        data = json.loads(r.body)
        assert data["received"] == json.loads(body)
        assert data["content_type"] == "application/json"
        assert data["content_length"] == len(body)
        c.assert_open()
