"""A real Django project served by maitre over real sockets on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import random
import sys

import pytest

django = pytest.importorskip("django")
requests = pytest.importorskip("requests")

from conftest import Conn, parse_responses, ping, raw, wait_for  # noqa: E402

from . import django_app  # noqa: E402
from .conftest import url  # noqa: E402
from django.views.defaults import ERROR_PAGE_TEMPLATE  # noqa: E402

HELLO = b"hello from django\n"
SERVER_ERROR_PAGE = (ERROR_PAGE_TEMPLATE % {"title": "Server Error (500)", "details": ""}).encode()
NOT_FOUND_PAGE = (
    ERROR_PAGE_TEMPLATE
    % {"title": "Not Found", "details": "The requested resource was not found on this server."}
).encode()
HTML = "text/html; charset=utf-8"


def assert_server_headers(headers) -> None:
    assert headers["Server"] == "maitre"
    assert headers["Date"].endswith(" GMT")


def finished_count() -> int:
    return len(django_app.FINISHED)


# --------------------------------------------------------------------------- basics


def test_plain_http_response(serve, session):
    s = serve(django_app.application)
    r = session.get(url(s, "/"))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain"
    assert r.headers["Content-Length"] == str(len(HELLO))  # set by CommonMiddleware
    assert "Transfer-Encoding" not in r.headers
    assert_server_headers(r.headers)
    assert r.content == HELLO


def test_json_response(serve, session):
    s = serve(django_app.application)
    r = session.get(url(s, "/json"))
    expected = {"framework": "django", "numbers": [1, 2, 3], "unicode": "señor"}
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Content-Length"] == str(len(r.content))
    assert r.content == json.dumps(expected).encode()
    assert r.json() == expected


def test_head_request_has_no_body(serve):
    s = serve(django_app.application)
    with Conn(s.port) as c:
        c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response("HEAD")
        assert r.status == 200
        assert r.header("Content-Type") == "text/plain"
        assert r.header("Content-Length") == str(len(HELLO))
        assert r.body == b""
        # the connection carries on with no stray body bytes in the way
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == HELLO


def test_post_form_csrf_exempt(serve, session):
    s = serve(django_app.application)
    r = session.post(
        url(s, "/form"),
        params={"q": "find me"},
        data={"a": "1", "b": ["x", "y"], "unicode": "naïve ✓", "empty": ""},
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {
        "fields": {"a": ["1"], "b": ["x", "y"], "unicode": ["naïve ✓"], "empty": [""]},
        "query": "find me",
    }


PAYLOAD = {"user": "zoë", "scores": list(range(300)), "blob": "q" * 5000, "ok": True}
PAYLOAD_BYTES = json.dumps(PAYLOAD).encode()
JSON_TYPE = {"Content-Type": "application/json"}
# What /echo-json answers for PAYLOAD, however the body was framed: Django sees
# the de-chunked body, its CONTENT_LENGTH, and no Transfer-Encoding.
ECHOED = {
    "received": PAYLOAD,
    "body_length": len(PAYLOAD_BYTES),
    "content_length": str(len(PAYLOAD_BYTES)),
    "transfer_encoding": None,
    "content_type": "application/json",
}


def test_json_body_with_content_length(serve, session):
    s = serve(django_app.application)
    r = session.post(url(s, "/echo-json"), data=PAYLOAD_BYTES, headers=JSON_TYPE)
    assert r.request.headers["Content-Length"] == str(len(PAYLOAD_BYTES))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == ECHOED


def test_json_body_chunked_transfer_encoding(serve, session):
    """Django reads CONTENT_LENGTH only; maitre de-chunks the body and sets it."""
    s = serve(django_app.application)
    pieces = [PAYLOAD_BYTES[i : i + 1000] for i in range(0, len(PAYLOAD_BYTES), 1000)]
    r = session.post(url(s, "/echo-json"), data=iter(pieces), headers=JSON_TYPE)
    assert r.request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in r.request.headers
    assert r.status_code == 200
    assert r.json() == ECHOED


def _chunked(data: bytes, size: int = 1000) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        piece = data[i : i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def _post_with_expect(port: int, framing_header: str, body: bytes):
    with Conn(port, timeout=5) as c:
        c.send(
            (
                "POST /echo-json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                f"Expect: 100-continue\r\n{framing_header}\r\n\r\n"
            ).encode()
        )
        interim = c.read_response()
        assert interim.status == 100, interim
        c.send(body)
        return c.read_response()


@pytest.mark.parametrize(
    "framing, wire",
    [
        (f"Content-Length: {len(PAYLOAD_BYTES)}", PAYLOAD_BYTES),
        ("Transfer-Encoding: chunked", _chunked(PAYLOAD_BYTES)),
    ],
    ids=["length", "chunked"],
)
def test_json_body_with_expect_100_continue(serve, framing, wire):
    """100 Continue goes out and the body reaches the view. A chunked body cannot
    wait for the app (Django reads CONTENT_LENGTH only): maitre reads it first and
    hands it over with its de-chunked length."""
    s = serve(django_app.application)
    r = _post_with_expect(s.port, framing, wire)
    assert r.status == 200, r
    assert json.loads(r.body) == ECHOED


# --------------------------------------------------------------------------- streaming, files


def test_streaming_http_response(serve):
    s = serve(django_app.application)
    before = finished_count()
    with Conn(s.port) as c:
        c.send(b"GET /stream?name=eve HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.header("Content-Type") == "text/plain"
        assert r.header("Transfer-Encoding") == "chunked"
        assert not r.has_header("Content-Length")
        assert r.chunked
        expected = [b"streaming for eve\n"] + django_app.STREAM_PARTS
        assert r.chunks == expected
        assert r.body == b"".join(expected)
        c.assert_open()
    # the server called close() on the response: Django's request_finished fired
    assert wait_for(lambda: finished_count() >= before + 1)


def _recording(app, seen: list):
    def wrapper(environ, start_response):
        result = app(environ, start_response)
        seen.append(isinstance(result, environ["wsgi.file_wrapper"]))
        return result

    return wrapper


def test_file_response_uses_file_wrapper_and_is_byte_exact(serve, session, tmp_path, monkeypatch):
    data = random.Random(7).randbytes(300_000 + 7)
    target = tmp_path / "payload.bin"
    target.write_bytes(data)
    monkeypatch.setattr(django_app, "DOWNLOAD", str(target))
    django_app.OPENED_FILES.clear()
    seen: list = []
    s = serve(_recording(django_app.application, seen))
    r = session.get(url(s, "/download"))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["Content-Disposition"] == 'attachment; filename="data.bin"'
    assert "Transfer-Encoding" not in r.headers
    assert r.content == data
    assert seen == [True], "Django did not hand the file to wsgi.file_wrapper"
    (opened,) = django_app.OPENED_FILES
    assert wait_for(lambda: opened.closed), "the file was not closed after the response"


def test_file_response_head(serve, tmp_path, monkeypatch):
    data = b"0123456789" * 1000
    target = tmp_path / "small.bin"
    target.write_bytes(data)
    monkeypatch.setattr(django_app, "DOWNLOAD", str(target))
    django_app.OPENED_FILES.clear()
    s = serve(django_app.application)
    with Conn(s.port) as c:
        c.send(b"HEAD /download HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response("HEAD")
        assert r.status == 200
        assert r.header("Content-Length") == str(len(data))
        assert r.body == b""
        c.send(b"GET /download HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == data
    assert wait_for(lambda: all(f.closed for f in django_app.OPENED_FILES))
    assert len(django_app.OPENED_FILES) == 2


# --------------------------------------------------------------------------- errors


def test_view_exception_gives_500_and_server_keeps_serving(serve):
    s = serve(django_app.application)
    conn = http.client.HTTPConnection(s.host, s.port, timeout=5)
    try:
        conn.request("GET", "/boom")
        r = conn.getresponse()
        body = r.read()
        assert r.status == 500
        assert r.getheader("Content-Type") == HTML
        assert r.getheader("Content-Length") == str(len(body))
        assert body == SERVER_ERROR_PAGE
        sock = conn.sock
        conn.request("GET", "/")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, HELLO)
        assert conn.sock is sock  # Django answered the 500 itself: keep-alive holds
    finally:
        conn.close()
    ping(s.port)


def test_404(serve, session):
    s = serve(django_app.application)
    r = session.get(url(s, "/does/not/exist"))
    assert r.status_code == 404
    assert r.headers["Content-Type"] == HTML
    assert r.headers["Content-Length"] == str(len(r.content))
    assert r.content == NOT_FOUND_PAGE


def test_405_from_view(serve, session):
    s = serve(django_app.application)
    r = session.get(url(s, "/form"))
    assert r.status_code == 405
    assert r.headers["Allow"] == "POST"
    assert r.headers["Content-Length"] == "0"
    assert r.content == b""


# --------------------------------------------------------------------------- request meta


def test_remote_addr_host_and_headers(serve):
    s = serve(django_app.application)
    conn = http.client.HTTPConnection(s.host, s.port, timeout=5)
    try:
        conn.request("GET", "/meta", headers={"User-Agent": "e2e/django", "X-Custom": "yes"})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200
        assert r.getheader("Content-Type") == "application/json"
        base = f"http://127.0.0.1:{s.port}"
        assert json.loads(body) == {
            "remote_addr": "127.0.0.1",
            "host": f"127.0.0.1:{s.port}",
            "script_name": "",
            "path": "/meta",
            "path_info": "/meta",
            "reverse": "/meta",
            "absolute": f"{base}/meta",
            "method": "GET",
            "is_secure": False,
            "server_port": str(s.port),
            "user_agent": "e2e/django",
            "x_custom": "yes",
        }
    finally:
        conn.close()


def test_get_host_uses_host_header(serve):
    s = serve(django_app.application)
    data = raw(
        s.port,
        b"GET /meta HTTP/1.1\r\nHost: www.example.com:8443\r\nConnection: close\r\n\r\n",
    )
    (r,), rest = parse_responses(data)
    assert rest == b""
    assert r.status == 200
    meta = json.loads(r.body)
    assert meta["host"] == "www.example.com:8443"
    assert meta["absolute"] == "http://www.example.com:8443/meta"


def test_url_prefix_sets_script_name_and_reverse(serve, session):
    s = serve(django_app.application, url_prefix="/app")
    r = session.get(url(s, "/app/meta"))
    assert r.status_code == 200
    base = f"http://127.0.0.1:{s.port}"
    meta = r.json()
    assert meta["script_name"] == "/app"
    assert meta["path"] == "/app/meta"
    assert meta["path_info"] == "/meta"
    assert meta["reverse"] == "/app/meta"
    assert meta["absolute"] == f"{base}/app/meta"
    r = session.get(url(s, "/app/"))
    assert r.status_code == 200 and r.content == HELLO


def test_request_finished_fires_once_per_request(serve):
    s = serve(django_app.application)
    before = finished_count()
    conn = http.client.HTTPConnection(s.host, s.port, timeout=5)
    try:
        for path in ("/", "/json", "/boom", "/nope"):
            conn.request("GET", path)
            conn.getresponse().read()
    finally:
        conn.close()
    assert wait_for(lambda: finished_count() == before + 4), finished_count() - before


# --------------------------------------------------------------------------- subprocess


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_python_m_maitre_subprocess_serves_django_and_stops_on_sigterm(serve_process):
    p = serve_process(
        "tests.e2e.django_app:application",
        "--threads=2",
        "--url-prefix=/site",
        command=[sys.executable, "-m", "maitre"],
    )
    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
    try:
        conn.request("GET", "/site/")
        r = conn.getresponse()
        assert r.status == 200
        assert r.getheader("Server") == "maitre"
        assert r.read() == HELLO
        conn.request("GET", "/site/meta")
        r = conn.getresponse()
        assert r.status == 200
        assert json.loads(r.read())["reverse"] == "/site/meta"
    finally:
        conn.close()
    code = p.terminate()
    assert code == 0, p.output
    assert f"Serving on http://127.0.0.1:{p.port}" in p.output
