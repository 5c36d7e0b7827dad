"""What an app or a configuration moved from waitress relies on: REQUEST_URI, waitress's
answer to a lowercase method, the option values waitress accepts, bind errors with their
errno, and log_socket_errors. The same raw requests sent to both servers are in
test_differential.py.
"""

from __future__ import annotations

import errno
import logging
import socket
import time

import pytest

import maitre
from conftest import Conn, connect, parse_responses, raw, wait_for
from twins import environ_app, exchange, req


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
