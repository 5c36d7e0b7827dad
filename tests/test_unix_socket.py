"""Unix domain sockets: ``unix_socket`` (+ ``unix_socket_perms``) and ``unix:`` entries
in ``listen``, served with the environ waitress gives, beside TCP, with worker
processes; a stale socket file is replaced, a live server's is not taken."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import textwrap
import threading
import time

import pytest

import maitre
from conftest import get, parse_one, read_until_close, wait_for

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")

ADDRESS_KEYS = ("REMOTE_ADDR", "REMOTE_HOST", "REMOTE_PORT", "SERVER_NAME", "SERVER_PORT", "HTTP_HOST")


def environ_app(environ, start_response):
    body = json.dumps({k: environ.get(k) for k in ADDRESS_KEYS + ("PATH_INFO",)}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def sock_dir():
    # Short: a socket path must fit in sun_path (about 100 bytes).
    path = tempfile.mkdtemp(prefix="mt-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running(app, **options):
    server = maitre.create_server(app, **options)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(5)
        assert not thread.is_alive(), "run() did not return after close()"


def unix_request(path: str, request: bytes = b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(request)
        data = read_until_close(s, timeout=10)
    response, _ = parse_one(data, eof=True)
    return response


def waitress_environ(path: str, request: bytes) -> dict:
    """The same request to waitress on its own unix socket."""
    import waitress.server

    server = waitress.server.create_server(environ_app, unix_socket=path)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        return json.loads(unix_request(path, request).body)
    finally:
        server.close()
        thread.join(5)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /a HTTP/1.1\r\nHost: example.com:81\r\nConnection: close\r\n\r\n",
        b"GET /b HTTP/1.0\r\n\r\n",
    ],
    ids=["http11-host", "http10-no-host"],
)
def test_unix_socket_environ_is_waitress_s(sock_dir, request_bytes):
    path = os.path.join(sock_dir, "app.sock")
    with running(environ_app, unix_socket=path, server_name="waitress.invalid") as server:
        assert server.effective_listen == [("unix", path)]
        assert (server.effective_host, server.effective_port) == ("unix", path)
        r = unix_request(path, request_bytes)
    assert r.status == 200
    got = json.loads(r.body)
    assert got["REMOTE_ADDR"] == got["REMOTE_HOST"] == "localhost"
    assert got["REMOTE_PORT"] == "None"
    assert got["SERVER_PORT"] == path
    os.unlink(path)
    assert got == waitress_environ(path, request_bytes)


@pytest.mark.parametrize("perms, expected", [(None, 0o600), ("660", 0o660), ("0777", 0o777), (0o640, 0o640)])
def test_socket_file_has_the_permissions_asked(sock_dir, perms, expected):
    path = os.path.join(sock_dir, "perm.sock")
    options = {} if perms is None else {"unix_socket_perms": perms}
    old = os.umask(0o077)  # chmod after bind: the umask does not decide
    try:
        server = maitre.create_server(environ_app, unix_socket=path, **options)
    finally:
        os.umask(old)
    try:
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == expected
    finally:
        server.close()


def test_a_stale_socket_file_is_replaced(sock_dir):
    path = os.path.join(sock_dir, "stale.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.listen(1)
    dead.close()  # a server that died: its file stays, nobody listens
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with running(environ_app, unix_socket=path):
        r = unix_request(path)
    assert r.status == 200
    assert json.loads(r.body)["PATH_INFO"] == "/"


def test_a_live_servers_socket_is_refused_and_it_keeps_serving(sock_dir):
    path = os.path.join(sock_dir, "live.sock")
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(path)
    live.listen(8)
    try:
        with pytest.raises(OSError) as info:
            maitre.create_server(environ_app, unix_socket=path)
        assert info.value.errno == errno.EADDRINUSE
        assert path in str(info.value)
        # Still the live server's socket: a client reaches it.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)
            live.settimeout(2)
            while True:  # the first accepted may be maitre's probe
                conn, _ = live.accept()
                with conn:
                    conn.settimeout(0.2)
                    c.sendall(b"x")
                    try:
                        if conn.recv(1) == b"x":
                            break
                    except socket.timeout:
                        continue
    finally:
        live.close()


def test_a_live_maitre_keeps_its_socket_against_a_second_one(sock_dir):
    path = os.path.join(sock_dir, "twice.sock")
    with running(environ_app, unix_socket=path):
        with pytest.raises(OSError) as info:
            maitre.create_server(environ_app, unix_socket=path)
        assert info.value.errno == errno.EADDRINUSE
        assert unix_request(path).status == 200


def test_listen_combines_tcp_and_unix_entries(sock_dir):
    a, b = os.path.join(sock_dir, "a.sock"), os.path.join(sock_dir, "b.sock")
    with running(environ_app, listen=f"unix:{a} 127.0.0.1:0 unix:{b}", unix_socket_perms="660") as server:
        listen = server.effective_listen
        assert listen[0] == ("unix", a) and listen[2] == ("unix", b)
        host, port = listen[1]
        assert host == "127.0.0.1" and port > 0
        for path in (a, b):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
            assert json.loads(unix_request(path).body)["SERVER_PORT"] == path
        tcp = json.loads(get(port).body)
        assert tcp["REMOTE_ADDR"] == "127.0.0.1" and tcp["SERVER_PORT"] == str(port)


def test_print_listen_names_the_unix_socket_as_waitress(sock_dir, caplog):
    path = os.path.join(sock_dir, "p.sock")
    server = maitre.create_server(environ_app, unix_socket=path)
    try:
        with caplog.at_level("INFO", logger="maitre"):
            server.print_listen("Serving on http://{}:{}")
        assert f"Serving on http://unix:{path}" in caplog.text
    finally:
        server.close()


def test_file_wrapper_response_over_a_unix_socket(sock_dir):
    """The loop's sendfile path takes unix sockets too."""
    data = bytes(range(256)) * 12_000  # 3 MB, more than a socket buffer
    src = os.path.join(sock_dir, "data.bin")
    with open(src, "wb") as f:
        f.write(data)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(data)))])
        return environ["wsgi.file_wrapper"](open(src, "rb"), 65536)

    path = os.path.join(sock_dir, "file.sock")
    with running(app, unix_socket=path):
        r = unix_request(path)
    assert r.status == 200
    assert r.body == data


def test_pipelined_requests_and_a_post_body_over_a_unix_socket(sock_dir):
    def echo(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    path = os.path.join(sock_dir, "echo.sock")
    body = b"x" * 100_000
    request = (
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" + body
        + b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    )
    with running(echo, unix_socket=path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(request)
            data = read_until_close(s, timeout=10)
    first, n = parse_one(data)
    second, _ = parse_one(data[n:], eof=True)
    assert (first.status, first.body) == (200, body)
    assert (second.status, second.body) == (200, b"abc")


WORKERS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from maitre import serve

    def app(environ, start_response):
        body = json.dumps({"pid": os.getpid(), "port": environ["SERVER_PORT"]}).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    serve(app, listen=sys.argv[1], workers=2, threads=1)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need fork")
def test_two_workers_share_a_unix_socket_and_a_tcp_port(sock_dir, spawn):
    path = os.path.join(sock_dir, "w.sock")
    server = spawn([sys.executable, "-c", WORKERS_SCRIPT, f"unix:{path} 127.0.0.1:0"]).wait_serving()
    assert wait_for(lambda: os.path.exists(path), timeout=20), "the socket was not made"
    # Which worker accepts is up to the scheduler: keep asking for a while.
    pids = set()
    deadline = time.monotonic() + 30
    while len(pids) < 2 and time.monotonic() < deadline:
        try:
            got = json.loads(unix_request(path).body)
        except OSError:
            time.sleep(0.05)
            continue
        assert got["port"] == path
        pids.add(got["pid"])
        time.sleep(0.01)
    assert len(pids) == 2, f"one worker answered every request: {pids}"
    assert json.loads(get(server.port).body)["port"] == str(server.port)
    assert server.terminate(20) == 0, server.output
