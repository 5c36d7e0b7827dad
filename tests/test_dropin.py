"""What an app or a configuration moved from waitress relies on: the same environ (keys
and values) for the same raw request, waitress's answers to odd requests, the option
values waitress accepts, bind errors with their errno, and log_socket_errors.

The differential cases send each raw request to maitre and to a real waitress serving the
same app with the same options; the differences maitre keeps on purpose are listed in
``DELIBERATE`` with their reasons (and in the README's "Migrating from waitress").
"""

from __future__ import annotations

import errno
import logging
import socket
import time

import pytest

import maitre
from conftest import Conn, connect, parse_responses, raw, wait_for
from twins import CLIENT_PORT, SERVER_PORT, environ_app, exchange, twin_servers  # noqa: F401

# Environ keys waitress sets that maitre does not, and why.
DELIBERATE = {
    # A waitress extension: a per-request callable, useful only with
    # channel_request_lookahead, which maitre does not implement (no read-ahead).
    "waitress.client_disconnected",
}

# Requests maitre answers differently on purpose: id -> (maitre's status, waitress's, why).
DIFFERENT_STATUS = {
    "raw-utf8-target": (200, 400, "PEP 3333 carries any byte as latin-1; clients that send "
                        "raw UTF-8 paths keep working (waitress's urlsplit needs ASCII)"),
    "asterisk-not-options": (400, 200, "RFC 9112 3.2.4: the asterisk-form is for OPTIONS only"),
    "relative-target": (400, 200, "RFC 9112 3.2: a target in no form its method allows"),
    "authority-not-connect": (400, 200, "RFC 9112 3.2.3: the authority-form is for CONNECT only"),
    "invalid-host": (400, 200, "RFC 9110 7.2: an invalid Host value gets 400"),
    "chunked-twice": (400, 200, "RFC 9112 6.1: chunked is applied once; a proxy may frame "
                      "it differently"),
    "long-request-line": (414, 200, "max_request_line (8190, as gunicorn's most)"),
    "obs-fold": (400, 200, "RFC 9112 5.2: folded lines may be refused, and proxies unfold "
                 "them differently (request smuggling)"),
    "http11-no-host": (400, 200, "RFC 9112 3.2: an HTTP/1.1 request must carry Host"),
}

# Keys whose values must be the same for the same request.
COMPARED = (
    "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REQUEST_URI", "SCRIPT_NAME",
    "SERVER_PROTOCOL", "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "REMOTE_HOST",
    "REMOTE_PORT", "CONTENT_TYPE", "CONTENT_LENGTH", "wsgi.url_scheme",
)

BASE = {"server_name": "srv.invalid", "threads": 2}


def req(line: str, *headers: str, body: bytes = b"") -> bytes:
    version = line.rsplit(" ", 1)[-1]
    lines = [line]
    if version == "HTTP/1.1" and not any(h.lower().startswith("host:") for h in headers):
        lines.append("Host: example.test")
    lines += list(headers) + ["Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


REQUESTS = [
    pytest.param({}, req("GET / HTTP/1.1"), id="root"),
    pytest.param({}, req("GET /a/b?x=1&y=2 HTTP/1.1"), id="query"),
    pytest.param({}, req("GET /a%20b/%C3%A9?q=%20 HTTP/1.1"), id="percent"),
    pytest.param({}, req("GET /a%2Fb%zz HTTP/1.1"), id="encoded-slash-bad-escape"),
    pytest.param({}, req("GET //a//b?x HTTP/1.1"), id="leading-slashes"),
    pytest.param({}, req("GET /%2F%2Fa HTTP/1.1"), id="encoded-leading-slashes"),
    pytest.param({}, req("GET /a#frag HTTP/1.1"), id="fragment"),
    pytest.param({}, req("GET /a?q=1#frag HTTP/1.1"), id="query-fragment"),
    pytest.param({}, req("GET /a#f?x=1 HTTP/1.1"), id="question-mark-in-fragment"),
    pytest.param({}, req("GET //a#f?x HTTP/1.1"), id="slashes-fragment"),
    pytest.param({}, req("GET /? HTTP/1.1"), id="empty-query"),
    pytest.param({}, req("GET http://example.com/p?q=1 HTTP/1.1"), id="absolute-form"),
    pytest.param({}, req("GET http://example.com HTTP/1.1"), id="absolute-form-no-path"),
    pytest.param({}, req("GET http://example.com?q HTTP/1.1"), id="absolute-form-query"),
    pytest.param({}, req("OPTIONS * HTTP/1.1"), id="asterisk"),
    pytest.param({}, req("HEAD / HTTP/1.1"), id="head"),
    pytest.param({}, req("PROPFIND /dav HTTP/1.1"), id="extension-method"),
    pytest.param({}, req("M-SEARCH /upnp HTTP/1.1"), id="method-with-dash"),
    pytest.param({}, req("M-SEARCH * HTTP/1.1"), id="asterisk-not-options"),
    pytest.param({}, req("GET foo HTTP/1.1"), id="relative-target"),
    pytest.param({}, req("GET example.test:80 HTTP/1.1"), id="authority-not-connect"),
    pytest.param({}, req("GET / HTTP/1.1", "Host: a b"), id="invalid-host"),
    pytest.param({}, req("POST /p HTTP/1.1", "Transfer-Encoding: chunked, chunked",
                         body=b"5\r\nhello\r\n0\r\n\r\n"), id="chunked-twice"),
    pytest.param({}, req("GET /" + "a" * 8200 + " HTTP/1.1"), id="long-request-line"),
    pytest.param({}, req("get / HTTP/1.1"), id="lowercase-method-400"),
    pytest.param({}, req("Get / HTTP/1.1"), id="mixed-case-method-400"),
    pytest.param({}, req("POST /p HTTP/1.1", "Content-Type: text/plain", "Content-Length: 5",
                         body=b"hello"), id="post-length"),
    pytest.param({}, req("POST /p HTTP/1.1", "Transfer-Encoding: chunked",
                         body=b"5\r\nhello\r\n0\r\n\r\n"), id="post-chunked"),
    pytest.param({}, req("GET / HTTP/1.0"), id="http10-no-host"),
    pytest.param({}, req("GET / HTTP/1.1", "Accept: a", "accept: b", "ACCEPT: c"),
                 id="repeated-header"),
    pytest.param({}, req("GET / HTTP/1.1", "X_Under: 1", "X-Dash: 2"), id="underscore-dropped"),
    pytest.param({}, req("GET / HTTP/1.1", "X-Empty:", "X-Spaces:   v  "), id="empty-and-padded"),
    pytest.param({}, req("GET / HTTP/1.1", "X-Latin: caf\xe9"), id="latin1-value"),
    pytest.param({}, req("GET / HTTP/1.1", "Cookie: a=1", "Cookie: b=2"), id="cookies"),
    pytest.param({}, req("GET / HTTP/1.1", "X-Forwarded-For: 1.2.3.4", "Forwarded: for=x"),
                 id="proxy-headers-cleared"),
    pytest.param({}, req("GET / HTTP/1.1", "Content-Type: application/json"), id="content-type"),
    pytest.param({"url_prefix": "/app"}, req("GET /app/x?q HTTP/1.1"), id="prefix-path"),
    pytest.param({"url_prefix": "/app"}, req("GET /app HTTP/1.1"), id="prefix-exact"),
    pytest.param({"url_prefix": "/app"}, req("GET /application HTTP/1.1"), id="prefix-longer"),
    pytest.param({"url_prefix": "/app"}, req("GET /other HTTP/1.1"), id="prefix-outside"),
    pytest.param({"url_scheme": "https"}, req("GET / HTTP/1.1"), id="url-scheme"),
    pytest.param({"trusted_proxy": "127.0.0.1", "trusted_proxy_headers": "x-forwarded-for"},
                 req("GET / HTTP/1.1", "X-Forwarded-For: 192.0.2.1"), id="proxied"),
    pytest.param({}, b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                 id="raw-utf8-target"),
    pytest.param({}, req("POST / HTTP/1.1", "Transfer-Encoding: gzip"),
                 id="unknown-transfer-coding"),
    pytest.param({}, req("GET / HTTP/1.1", "X-A: 1", " folded"), id="obs-fold"),
    pytest.param({}, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", id="http11-no-host"),
]


@pytest.mark.parametrize("options, data", REQUESTS)
def test_same_environ_as_waitress(request, twin_servers, options, data):
    maitre_port, waitress_port = twin_servers(**BASE, **options)
    if waitress_port is None:
        pytest.skip("waitress is not installed")
    got = exchange(maitre_port, data)
    twin = exchange(waitress_port, data)
    different = DIFFERENT_STATUS.get(request.node.callspec.id)
    if different:
        assert (got.status, twin.status) == different[:2]
        return
    assert got.status == twin.status, (got.body, twin.body)
    if got.status != 200:
        return
    assert set(got.keys) == set(twin.keys) - DELIBERATE
    for key in COMPARED:
        assert got[key] == twin[key], (key, got.env, twin.env)
    http = sorted(k for k in twin.env if k.startswith("HTTP_"))
    assert sorted(k for k in got.env if k.startswith("HTTP_")) == http
    for key in http:
        assert got[key] == twin[key], key


def test_request_uri_and_fragment(serve):
    s = serve(environ_app)
    got = exchange(s.port, req("GET /a%20b?x=1#frag HTTP/1.1"))
    assert got.status == 200
    assert (got["PATH_INFO"], got["QUERY_STRING"], got["REQUEST_URI"]) == (
        "/a b", "x=1", "/a%20b?x=1#frag",
    )
    plain = exchange(s.port, req("GET /plain HTTP/1.1"))
    assert (plain["PATH_INFO"], plain["REQUEST_URI"]) == ("/plain", "/plain")


def test_lowercase_method_is_400_and_app_not_called(serve):
    calls = []

    def app(environ, start_response):
        calls.append(environ["REQUEST_METHOD"])
        return environ_app(environ, start_response)

    s = serve(app, ping=False)
    (r,), rest = parse_responses(raw(s.port, b"get / HTTP/1.1\r\nHost: h\r\n\r\n"))
    assert r.status == 400
    assert b"malformed HTTP method" in r.body
    assert calls == [] and rest == b""


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "options",
    [
        {"backlog": 0},
        {"backlog": -1},
        {"channel_timeout": 0},
        {"cleanup_interval": 0},
        {"max_request_body_size": -1},
        {"ident": 123},
        {"expose_tracebacks": "nope"},
        {"channel_request_lookahead": 3},
        {"send_bytes": 0},
        {"inbuf_overflow": -1, "outbuf_overflow": -1},
        {"log_socket_errors": "false"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_waitress_values_start_and_serve(serve, options):
    s = serve(environ_app, **options)
    got = exchange(s.port, req("GET / HTTP/1.1"))
    assert got.status == 200
    assert got["PATH_INFO"] == "/"


def test_ident_number_is_the_server_header(serve):
    s = serve(environ_app, ident=123)
    (r,), _ = parse_responses(raw(s.port, req("GET / HTTP/1.1")))
    assert r.header("Server") == "123"


def test_max_request_body_size_minus_one_refuses_every_body(serve):
    s = serve(environ_app, max_request_body_size=-1)
    (r,), _ = parse_responses(raw(s.port, req("POST / HTTP/1.1", "Content-Length: 1", body=b"x")))
    assert r.status == 413
    (r,), _ = parse_responses(raw(s.port, req("GET / HTTP/1.1")))
    assert r.status == 200


def test_channel_timeout_zero_closes_idle_connections_at_the_sweep(serve):
    s = serve(environ_app, channel_timeout=0, cleanup_interval=0)
    with Conn(s.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert c.read_response().status == 200
        c.assert_closed(timeout=3.0)


@pytest.mark.parametrize("options", [{"threads": 0}, {"connection_limit": 0}, {"recv_bytes": 0}])
def test_values_that_cannot_work_are_refused(options):
    name = next(iter(options))
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        maitre.create_server(environ_app, host="127.0.0.1", port=0, **options)


# --------------------------------------------------------------------------- bind errors


def test_bind_failure_has_its_errno():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as info:
            maitre.create_server(environ_app, host="127.0.0.1", port=port)
        assert info.value.errno == errno.EADDRINUSE
        assert f"127.0.0.1:{port}" in str(info.value)
    finally:
        taken.close()


# --------------------------------------------------------------------------- socket errors


def big_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (b"x" * 65536 for _ in range(1024))  # 64 MiB, far more than socket buffers


def reset_mid_response(port: int) -> None:
    """Request a large response, read a little, then close with a reset (SO_LINGER 0)."""
    sock = connect(port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    sock.recv(1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def maitre_records(caplog):
    return [r for r in caplog.records if r.name == "maitre"]


def test_client_reset_logged_at_info_as_waitress_does(serve, caplog):
    """waitress treats a reset as the client leaving, not a "Socket error": it
    says at INFO that the client disconnected while it was serving the path."""
    with caplog.at_level(logging.DEBUG, logger="maitre"):
        s = serve(big_app)
        reset_mid_response(s.port)
        assert wait_for(lambda: [r for r in maitre_records(caplog) if r.levelno > logging.DEBUG], timeout=5)
    loud = [(r.levelno, r.getMessage()) for r in maitre_records(caplog) if r.levelno > logging.DEBUG]
    assert loud == [(logging.INFO, "Client disconnected while serving GET /")]


def test_client_reset_quiet_when_log_socket_errors_is_false(serve, caplog):
    with caplog.at_level(logging.DEBUG, logger="maitre"):
        s = serve(big_app, log_socket_errors=False)
        reset_mid_response(s.port)
        assert wait_for(lambda: maitre_records(caplog), timeout=5)
        time.sleep(0.1)
    assert {r.levelno for r in maitre_records(caplog)} == {logging.DEBUG}
