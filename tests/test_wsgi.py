"""WSGI (PEP 3333) behaviour over real sockets: environ, wsgi.input, start_response,
write(), close(), file_wrapper, and wsgiref's validator."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import socket
import threading
import time
from wsgiref.validate import validator

import pytest

from conftest import Conn, connect, get, parse_responses, ping, raw, split_head, wait_for


def req(method="GET", path="/", headers=(), body=b"", version="HTTP/1.1") -> bytes:
    lines = [f"{method} {path} {version}"]
    if version == "HTTP/1.1" and not any(h.lower().startswith("host:") for h in headers):
        lines.append("Host: test")
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_response(start_response, data, status="200 OK"):
    body = json.dumps(data).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def environ_app(environ, start_response):
    """Describe the environ: str values as is, others by repr/type."""
    out = {}
    for key, value in environ.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, (bool, int)):
            out[key] = value
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = "<%s>" % type(value).__name__
    out["__types__"] = {k: type(v).__name__ for k, v in environ.items()}
    out["__environ_type__"] = type(environ).__name__
    out["__body__"] = environ["wsgi.input"].read().decode("latin-1")
    return json_response(start_response, out)


def fetch_environ(port, data: bytes) -> dict:
    with Conn(port) as c:
        local_port = c.sock.getsockname()[1]
        c.send(data)
        r = c.read_response()
    assert r.status == 200, r
    env = json.loads(r.body)
    env["__client_port__"] = local_port
    return env


# ----------------------------------------------------------------- environ


def test_environ_basic_keys(serve):
    s = serve(environ_app)
    env = fetch_environ(
        s.port,
        req(
            "POST",
            "/some/path?x=1&y=%20z&e=caf%C3%A9",
            headers=[
                "Host: example.com:8080",
                "Content-Type: text/plain; charset=utf-8",
                "Content-Length: 3",
                "User-Agent: maitre-tests",
                "X-Custom: a",
                "X-Custom: b",
                "Accept: text/html",
            ],
            body=b"abc",
        ),
    )
    assert env["__environ_type__"] == "dict"
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/some/path"
    assert env["QUERY_STRING"] == "x=1&y=%20z&e=caf%C3%A9"
    assert env["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert env["CONTENT_LENGTH"] == "3"
    assert env["SERVER_NAME"] == "maitre.invalid"
    assert env["SERVER_PORT"] == str(s.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(env["__client_port__"])
    assert env["HTTP_HOST"] == "example.com:8080"
    assert env["HTTP_USER_AGENT"] == "maitre-tests"
    assert env["HTTP_ACCEPT"] == "text/html"
    assert env["HTTP_X_CUSTOM"] == "a, b"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert env["__body__"] == "abc"
    assert env["wsgi.url_scheme"] == "http"
    # no placeholder of the base environ is left unset
    assert "NoneType" not in env["__types__"].values(), env["__types__"]
    # every CGI-style key (no dot) holds a native str
    for key, type_name in env["__types__"].items():
        if "." not in key:
            assert type_name == "str", (key, type_name)


@pytest.mark.parametrize("ident", ["maitre", None])
def test_environ_of_a_plain_get_has_exactly_the_pep_3333_keys(serve, ident):
    """The base environ is grown with spare keys, added and removed (room for headers in
    each request's copy): none of them may reach the app, with or without SERVER_SOFTWARE."""
    s = serve(environ_app, ident=ident)
    with Conn(s.port) as c:
        for _ in range(2):  # the second request's copy too
            c.send(req(headers=["Host: h"]))
            r = c.read_response()
            assert r.status == 200, r
            keys = set(json.loads(r.body)) - {"__types__", "__environ_type__", "__body__"}
            expected = {
                "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_URI",
                "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_HOST",
                "REMOTE_PORT", "HTTP_HOST", "wsgi.version", "wsgi.url_scheme", "wsgi.input",
                "wsgi.errors", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once",
                "wsgi.input_terminated", "wsgi.file_wrapper",
            } | ({"SERVER_SOFTWARE"} if ident else set())
            assert keys == expected


def test_environ_remote_port_is_each_connections_own(serve):
    """Peer strings are cached per worker on the peer's port (256 slots): two
    clients whose ports share a slot, and a client that comes back, each see
    their own REMOTE_PORT."""

    def app(environ, start_response):
        body = f"{environ['REMOTE_ADDR']}:{environ['REMOTE_PORT']}:{environ['SERVER_PORT']}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    s = serve(app, threads=1)

    def bound_pair():
        for _ in range(50):
            a = socket.socket()
            a.bind(("127.0.0.1", 0))
            b = socket.socket()
            try:
                b.bind(("127.0.0.1", a.getsockname()[1] + 256))
                return a, b
            except OSError:
                a.close()
                b.close()
        pytest.skip("no free pair of ports 256 apart")

    a, b = bound_pair()
    with a, b:
        for sock in (a, b):
            sock.settimeout(3)
            sock.connect(("127.0.0.1", s.port))
        for sock in (a, b, a, b):
            sock.sendall(req("GET", "/"))
            r, body = split_head(sock.recv(4096))
            assert r.status == 200
            assert body == f"127.0.0.1:{sock.getsockname()[1]}:{s.port}".encode()


def test_bodyless_requests_read_nothing_between_bodies(serve):
    """Body-less requests share one empty stream per worker: every way of
    reading it gives nothing, and it never leaks into a request with a body."""

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        got = [stream.read(), stream.read(5), stream.readline(), stream.readlines(), list(stream)]
        body = repr(got).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    s = serve(app, threads=1)
    empty = repr([b"", b"", b"", [], []]).encode()
    with Conn(s.port) as c:
        for method, body in [("GET", b""), ("POST", b"ab\ncd"), ("GET", b""), ("POST", b"")]:
            headers = [f"Content-Length: {len(body)}"] if method == "POST" else []
            c.send(req(method, "/", headers=headers, body=body))
            r = c.read_response()
            assert r.status == 200
            if body:
                assert r.body == repr([b"ab\ncd", b"", b"", [], []]).encode()
            else:
                assert r.body == empty


def test_environ_get_without_body(serve):
    s = serve(environ_app)
    env = fetch_environ(s.port, req("GET", "/"))
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/"
    assert env["QUERY_STRING"] == ""
    assert env.get("CONTENT_LENGTH", "") in ("", "0")
    assert env["__body__"] == ""


def test_environ_http10_protocol(serve):
    s = serve(environ_app)
    out = raw(s.port, b"GET /x HTTP/1.0\r\n\r\n")
    (r,), _ = parse_responses(out)
    env = json.loads(r.body)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["PATH_INFO"] == "/x"


def test_environ_common_and_rare_headers_any_case_and_repeated(serve):
    # Common names use per-worker cached keys; the rest are built per request.
    # Proxy headers are kept only without clearing (waitress 3 clears them by default).
    s = serve(environ_app, clear_untrusted_proxy_headers=False)
    env = fetch_environ(s.port, req("PROPFIND", "/", headers=[
        "HOST: h", "accept: a", "ACCEPT: b", "X-Forwarded-For: 1.2.3.4", "x-rare-one: r",
        "Cookie: c=1", "cookie: d=2",
    ]))
    assert env["REQUEST_METHOD"] == "PROPFIND"
    assert env["HTTP_HOST"] == "h"
    assert env["HTTP_ACCEPT"] == "a, b"
    assert env["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"
    assert env["HTTP_X_RARE_ONE"] == "r"
    assert env["HTTP_COOKIE"] == "c=1, d=2"
    assert env["__types__"]["HTTP_HOST"] == "str"


def test_environ_header_names_with_underscore_dropped(serve):
    s = serve(environ_app)
    env = fetch_environ(s.port, req("GET", "/", headers=["X_Under: evil", "X-Under: good", "X-Ok_Not: no"]))
    assert env["HTTP_X_UNDER"] == "good"
    assert not [k for k in env if k.startswith("HTTP_X_OK")]


def test_environ_path_percent_decoded_latin1(serve):
    s = serve(environ_app)
    env = fetch_environ(s.port, req("GET", "/caf%C3%A9?q=caf%C3%A9"))
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9"  # 'cafÃ©': the UTF-8 bytes as latin-1
    assert env["QUERY_STRING"] == "q=caf%C3%A9"


def test_environ_path_encoded_slash_and_space(serve):
    s = serve(environ_app)
    env = fetch_environ(s.port, req("GET", "/a%2Fb/c%20d"))
    assert env["PATH_INFO"] == "/a/b/c d"


def test_environ_absolute_form_target(serve):
    s = serve(environ_app)
    env = fetch_environ(s.port, req("GET", "http://example.com/abs/path?q=1"))
    assert env["PATH_INFO"] == "/abs/path"
    assert env["QUERY_STRING"] == "q=1"


def test_environ_server_name_option(serve):
    s = serve(environ_app, server_name="example.org")
    env = fetch_environ(s.port, req("GET", "/"))
    assert env["SERVER_NAME"] == "example.org"


def test_environ_url_prefix(serve):
    s = serve(environ_app, url_prefix="/app")
    env = fetch_environ(s.port, req("GET", "/app/foo/bar?x=1"))
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == "/foo/bar"
    assert env["QUERY_STRING"] == "x=1"
    env = fetch_environ(s.port, req("GET", "/app"))
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == ""


def test_environ_url_scheme(serve):
    s = serve(environ_app, url_scheme="https")
    env = fetch_environ(s.port, req("GET", "/"))
    assert env["wsgi.url_scheme"] == "https"


def test_environ_wsgi_keys(serve):
    checks = {}

    def app(environ, start_response):
        checks["version"] = environ["wsgi.version"]
        checks["multithread"] = environ["wsgi.multithread"]
        checks["multiprocess"] = environ["wsgi.multiprocess"]
        checks["run_once"] = environ["wsgi.run_once"]
        checks["input_terminated"] = environ.get("wsgi.input_terminated")
        checks["url_scheme"] = environ["wsgi.url_scheme"]
        errors = environ["wsgi.errors"]
        errors.write("maitre-test: a line to wsgi.errors\n")
        errors.writelines(["maitre-test: more\n"])
        errors.flush()
        checks["errors_ok"] = True
        checks["file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
        checks["input_read"] = callable(environ["wsgi.input"].read)
        return json_response(start_response, {})

    s = serve(app)
    r = get(s.port, "/")
    assert r.status == 200
    assert checks == {
        "version": (1, 0),
        "multithread": True,
        "multiprocess": False,
        "run_once": False,
        "input_terminated": True,
        "url_scheme": "http",
        "errors_ok": True,
        "file_wrapper": True,
        "input_read": True,
    }


# ----------------------------------------------------------------- file_wrapper


@pytest.mark.parametrize("with_length", [True, False])
def test_file_wrapper(serve, tmp_path, with_length):
    content = os.urandom(300_000)
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    opened = []

    def app(environ, start_response):
        f = open(path, "rb")
        opened.append(f)
        headers = [("Content-Type", "application/octet-stream")]
        if with_length:
            headers.append(("Content-Length", str(len(content))))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 8192)

    s = serve(app)
    with Conn(s.port, timeout=5) as c:
        c.send(req("GET", "/file"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == content
        if with_length:
            assert r.header("Content-Length") == str(len(content))
        c.assert_reusable_or_closed(r)
    assert wait_for(lambda: opened and opened[0].closed), "file_wrapper did not close the file"


def test_file_wrapper_with_filelike_without_fileno(serve):
    content = b"0123456789" * 5000

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(content)))])
        return environ["wsgi.file_wrapper"](io.BytesIO(content), 4096)

    s = serve(app)
    r = get(s.port, "/")
    assert r.status == 200
    assert r.body == content


# ----------------------------------------------------------------- wsgi.input


def make_body(big: bool) -> bytes:
    lines = [b"first line\n", b"\n", b"third: " + b"x" * 100 + b"\n", b"crlf line\r\n"]
    if big:
        for i in range(2000):
            lines.append(b"line %05d " % i + b"y" * (i % 97) + b"\n")
        lines.append(b"long:" + b"z" * 70_000 + b"\n")
    lines.append(b"no newline at end")
    return b"".join(lines)


def input_app(environ, start_response):
    inp = environ["wsgi.input"]
    mode = environ["PATH_INFO"]
    out: dict = {}
    if mode == "/read":
        out["data"] = inp.read()
        out["after"] = inp.read()
    elif mode == "/read_n":
        parts = []
        while True:
            part = inp.read(1000)
            assert len(part) <= 1000
            if not part:
                break
            parts.append(part)
        out["data"] = b"".join(parts)
        out["count"] = len(parts)
        out["after"] = inp.read(10)
    elif mode == "/read_mixed":
        a = inp.read(5)
        line = inp.readline()
        rest = inp.read()
        out["data"] = [a, line, rest]
    elif mode == "/readline":
        lines = []
        while True:
            line = inp.readline()
            if not line:
                break
            lines.append(line)
        out["data"] = lines
    elif mode == "/readline_hint":
        lines = []
        while True:
            line = inp.readline(7)
            assert len(line) <= 7
            if not line:
                break
            lines.append(line)
        out["data"] = lines
    elif mode == "/readlines":
        out["data"] = inp.readlines()
    elif mode == "/iter":
        out["data"] = [line for line in inp]
    else:
        raise AssertionError(mode)

    def enc(v):
        if isinstance(v, bytes):
            return v.decode("latin-1")
        if isinstance(v, list):
            return [enc(x) for x in v]
        return v

    return json_response(start_response, {k: enc(v) for k, v in out.items()})


def post_input(port, mode, body, chunked=False):
    if chunked:
        framed = b""
        for i in range(0, len(body), 3000):
            piece = body[i : i + 3000]
            framed += b"%x\r\n" % len(piece) + piece + b"\r\n"
        framed += b"0\r\n\r\n"
        data = req("POST", mode, headers=["Transfer-Encoding: chunked"], body=framed)
    else:
        data = req("POST", mode, headers=[f"Content-Length: {len(body)}"], body=body)
    with Conn(port, timeout=10) as c:
        c.send(data)
        r = c.read_response()
    assert r.status == 200, r
    return json.loads(r.body)


def lat(b: bytes) -> str:
    return b.decode("latin-1")


@pytest.mark.parametrize("big", [False, True], ids=["small", "spooled"])
@pytest.mark.parametrize("chunked", [False, True], ids=["cl", "chunked"])
def test_input_read(serve, big, chunked):
    s = serve(input_app, inbuf_overflow=1024)
    body = make_body(big)
    out = post_input(s.port, "/read", body, chunked)
    assert out["data"] == lat(body)
    assert out["after"] == ""


@pytest.mark.parametrize("big", [False, True], ids=["small", "spooled"])
def test_input_read_n(serve, big):
    s = serve(input_app, inbuf_overflow=1024)
    body = make_body(big)
    out = post_input(s.port, "/read_n", body)
    assert out["data"] == lat(body)
    assert out["after"] == ""


@pytest.mark.parametrize("big", [False, True], ids=["small", "spooled"])
def test_input_read_mixed_with_readline(serve, big):
    s = serve(input_app, inbuf_overflow=1024)
    body = make_body(big)
    out = post_input(s.port, "/read_mixed", body)
    assert out["data"] == [lat(body[:5]), " line\n", lat(body[len(b"first line\n"):])]


@pytest.mark.parametrize("big", [False, True], ids=["small", "spooled"])
@pytest.mark.parametrize("mode", ["/readline", "/readlines", "/iter"])
def test_input_lines(serve, big, mode):
    s = serve(input_app, inbuf_overflow=1024)
    body = make_body(big)
    out = post_input(s.port, mode, body)
    assert out["data"] == [lat(x) for x in body.splitlines(keepends=True)]


def test_input_readline_size_hint(serve):
    s = serve(input_app)
    body = b"abcdefghij\nxy\n\nend"
    out = post_input(s.port, "/readline_hint", body)
    assert "".join(out["data"]) == lat(body)
    assert out["data"] == ["abcdefg", "hij\n", "xy\n", "\n", "end"]


def test_input_read_past_content_length_does_not_block(serve):
    """Reading more than CONTENT_LENGTH returns what there is, then b'' (input_terminated)."""

    def app(environ, start_response):
        data = environ["wsgi.input"].read(100000)
        more = environ["wsgi.input"].read(100000)
        return json_response(start_response, {"data": data.decode(), "more": more.decode()})

    s = serve(app)
    with Conn(s.port) as c:
        c.send(req("POST", "/", headers=["Content-Length: 5"], body=b"hello"))
        r = c.read_response()
        assert json.loads(r.body) == {"data": "hello", "more": ""}
        c.assert_open()


def test_unread_body_is_skipped_for_next_request(serve):
    def app(environ, start_response):
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    s = serve(app)
    with Conn(s.port) as c:
        c.send(
            req("POST", "/a", headers=["Content-Length: 10"], body=b"0123456789")
            + req("POST", "/b", headers=["Transfer-Encoding: chunked"], body=b"3\r\nabc\r\n0\r\n\r\n")
            + req("GET", "/c")
        )
        assert [c.read_response().body for _ in range(3)] == [b"/a", b"/b", b"/c"]


# ----------------------------------------------------------------- start_response


def test_start_response_twice_without_exc_info_raises(serve):
    seen = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        try:
            start_response("201 Created", [("Content-Type", "text/plain")])
        except AssertionError as exc:
            seen.append(exc)
        return [b"first"]

    s = serve(app)
    r = get(s.port, "/")
    assert r.status == 200
    assert r.body == b"first"
    assert len(seen) == 1 and isinstance(seen[0], AssertionError)


def test_start_response_exc_info_before_headers_sent_replaces(serve):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "text/plain"), ("Content-Length", "6"), ("X-Second", "2")],
                sys.exc_info(),
            )
        return [b"sorry!"]

    s = serve(app)
    r = get(s.port, "/")
    assert r.status == 503
    assert r.reason == "Service Unavailable"
    assert r.body == b"sorry!"
    assert r.header("X-Second") == "2"
    assert not r.has_header("X-First")
    ping(s.port)


def test_start_response_exc_info_after_headers_sent_reraises(serve):
    seen = []
    done = threading.Event()

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial")
        try:
            raise KeyError("original")
        except KeyError as original:
            try:
                start_response("500 Error", [("Content-Type", "text/plain")], sys.exc_info())
            except BaseException as exc:
                seen.append(exc is original)
                done.set()
                raise
            seen.append("did not raise")
            done.set()
            return [b"should not be sent"]

    s = serve(app)
    out = raw(s.port, req("GET", "/"))  # the connection must be closed
    assert done.wait(3)
    assert seen == [True]
    r, body = split_head(out)
    assert r.status == 200
    assert body == b"7\r\npartial\r\n", body  # written, not terminated, nothing more
    ping(s.port)


def test_status_and_header_values_go_out_as_latin1(serve):
    def app(environ, start_response):
        start_response("200 Ça va", [("Content-Length", "2"), ("X-Name", "café")])
        return [b"ok"]

    s = serve(app)
    out = raw(s.port, req("GET", "/", headers=["Connection: close"]))
    assert out.startswith(b"HTTP/1.1 200 \xc7a va\r\n"), out
    assert b"\r\nX-Name: caf\xe9\r\n" in out, out
    assert out.endswith(b"\r\n\r\nok")


def test_header_value_beyond_latin1_is_refused(serve):
    seen = []

    def app(environ, start_response):
        try:
            start_response("200 OK", [("X-Price", "5 €")])
        except ValueError as exc:
            seen.append(str(exc))
            raise
        return [b"not sent"]

    s = serve(app)
    r = get(s.port, "/")
    assert r.status == 500
    assert b"not sent" not in r.body
    assert len(seen) == 1 and "X-Price" in seen[0] and "latin-1" in seen[0], seen
    ping(s.port)


def test_start_response_returns_write_and_status_reason_kept(serve):
    def app(environ, start_response):
        start_response("299 Custom Reason Here", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return []

    s = serve(app)
    r = get(s.port, "/")
    assert r.status == 299
    assert r.reason == "Custom Reason Here"


# ----------------------------------------------------------------- write()


def test_write_callable_output_in_body(serve):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"hello ")
        write(b"")
        write(b"big" * 10000)
        return [b" world"]

    s = serve(app)
    with Conn(s.port) as c:
        c.send(req("GET", "/"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"hello " + b"big" * 10000 + b" world"
        c.assert_reusable_or_closed(r)


def test_write_callable_with_content_length(serve):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
        write(b"hello")
        return [b" ", b"world"]

    s = serve(app)
    with Conn(s.port) as c:
        c.send(req("GET", "/") + req("GET", "/"))
        for _ in range(2):
            r = c.read_response()
            assert r.header("Content-Length") == "11"
            assert r.body == b"hello world"


# ----------------------------------------------------------------- close()


class ClosingResult:
    def __init__(self, chunks, log):
        self.chunks = chunks
        self.log = log
        self.produced = 0

    def __iter__(self):
        for c in self.chunks:
            self.produced += 1
            yield c

    def close(self):
        self.log.append(("close", self.produced))


def test_result_close_called_on_success(serve):
    log = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ClosingResult([b"a", b"b", b"c"], log)

    s = serve(app)
    r = get(s.port, "/")
    assert r.body == b"abc"
    assert wait_for(lambda: log == [("close", 3)]), log


def test_result_close_called_on_error_during_iteration(serve):
    log = []

    class Failing(ClosingResult):
        def __iter__(self):
            yield b"x"
            raise RuntimeError("mid-iteration")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Failing([], log)

    s = serve(app)
    raw(s.port, req("GET", "/"))
    assert wait_for(lambda: len(log) == 1), log
    ping(s.port)


def test_result_close_called_for_head(serve):
    log = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ClosingResult([b"a", b"b"], log)

    s = serve(app)
    with Conn(s.port) as c:
        c.send(req("HEAD", "/"))
        r = c.read_response("HEAD")
        assert r.status == 200
    assert wait_for(lambda: len(log) == 1), log


def test_result_close_called_when_client_disconnects(serve):
    log = []
    chunk = b"x" * 65536
    total_chunks = 16384  # 1 GiB if nobody stops the iteration

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return ClosingResult([chunk] * total_chunks, log)

    s = serve(app)
    sock = connect(s.port)
    sock.sendall(req("GET", "/"))
    got = b""
    while b"\r\n\r\n" not in got:
        data = sock.recv(65536)
        assert data, "closed before the head"
        got += data
    sock.close()  # mid-response
    assert wait_for(lambda: len(log) == 1, timeout=5), f"close() not called: {log}"
    assert log[0][1] < total_chunks, "the iteration was not stopped after the client left"
    ping(s.port)


# ----------------------------------------------------------------- validator


def test_wsgiref_validator(serve, caplog):
    problems = []

    def inner(environ, start_response):
        if environ["REQUEST_METHOD"] == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        else:
            body = b"got " + environ["PATH_INFO"].encode("latin-1")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    validated = validator(inner)

    class Guard:
        """Record any AssertionError the validator raises, wherever it happens."""

        def __init__(self, environ, start_response):
            try:
                self.result = validated(environ, start_response)
            except BaseException as exc:
                problems.append(repr(exc))
                raise

        def __iter__(self):
            try:
                for x in self.result:
                    yield x
            except BaseException as exc:
                problems.append(repr(exc))
                raise

        def close(self):
            try:
                self.result.close()
            except BaseException as exc:
                problems.append(repr(exc))
                raise

    s = serve(Guard)
    with caplog.at_level(logging.WARNING):
        with Conn(s.port) as c:
            c.send(req("GET", "/v?x=1"))
            r = c.read_response()
            assert r.status == 200, r
            assert r.body == b"got /v"
            c.send(req("POST", "/v", headers=["Content-Type: text/plain", "Content-Length: 4"], body=b"data"))
            r = c.read_response()
            assert r.status == 200, r
            assert r.body == b"data"
        time.sleep(0.2)
    assert problems == []
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert errors == [], [rec.getMessage() for rec in errors]


# ----------------------------------------------------------------- declared length complete


def test_a_response_is_sent_whole_once_its_declared_length_is_written(serve):
    """The last byte of a declared Content-Length ends the response at once: the
    client has it while the app is still running (its iterable not yet exhausted)."""
    release = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "5")])

        def body():
            yield b"hello"
            release.wait(5)  # the response is complete before this returns

        return body()

    s = serve(app)
    try:
        with Conn(s.port) as c:
            c.send(req("GET", "/"))
            r = c.read_response(timeout=2)
            assert (r.status, r.body) == (200, b"hello")
            c.assert_open()  # kept alive, and another worker answers meanwhile
    finally:
        release.set()


def test_body_past_the_declared_length_is_dropped_and_logged(serve, caplog):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "5")])
        return iter([b"hello", b" and more"])

    s = serve(app)
    with caplog.at_level(logging.ERROR, logger="maitre"):
        with Conn(s.port) as c:
            c.send(req("GET", "/"))
            r = c.read_response()
            assert (r.status, r.body) == (200, b"hello")
            c.assert_open()
        assert wait_for(lambda: "past its Content-Length" in caplog.text), caplog.text
