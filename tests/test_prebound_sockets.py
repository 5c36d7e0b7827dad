"""``sockets=[...]``: listening sockets the caller bound (TCP v4/v6, Unix) are served
as they are, with their own backlog; maitre serves duplicates of their descriptors,
so the caller's sockets stay open, and usable (blocking mode included) after stop."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import tempfile
import threading

import pytest

import maitre
from conftest import parse_one, read_until_close

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="sockets= needs Unix")


def app(environ, start_response):
    body = json.dumps({k: environ[k] for k in ("REMOTE_ADDR", "REMOTE_PORT", "SERVER_PORT")}).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


@contextlib.contextmanager
def running(**options):
    server = maitre.create_server(app, **options)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(5)
        assert not thread.is_alive()


def request(family, address) -> dict:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(address)
        s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        response, _ = parse_one(read_until_close(s, timeout=5), eof=True)
    assert response.status == 200
    return json.loads(response.body)


def nonblocking(sock: socket.socket) -> bool:
    return bool(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)


def still_usable(sock: socket.socket) -> None:
    """The caller's socket is open, blocking as it was, and still accepts."""
    assert sock.fileno() != -1
    assert not nonblocking(sock), "maitre left O_NONBLOCK set on the caller's socket"
    with socket.socket(sock.family, socket.SOCK_STREAM) as c:
        c.connect(sock.getsockname())
        sock.settimeout(5)
        conn, _ = sock.accept()
        conn.close()
        sock.settimeout(None)


@pytest.fixture
def sock_dir():
    path = tempfile.mkdtemp(prefix="mt-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_tcp_v4_v6_and_unix_sockets_are_served_and_stay_the_callers(sock_dir):
    v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    v4.bind(("127.0.0.1", 0))
    v4.listen(5)  # its own backlog: maitre does not listen() again
    sockets = [v4]
    if socket.has_ipv6:
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            v6.bind(("::1", 0))
            v6.listen(5)
            sockets.append(v6)
        except OSError:
            v6.close()
    path = os.path.join(sock_dir, "pre.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)  # bound, not listening: maitre listens with backlog
    sockets.append(unix)
    try:
        with running(sockets=sockets) as server:
            listen = server.effective_listen
            assert listen[0] == ("127.0.0.1", v4.getsockname()[1])
            assert listen[-1] == ("unix", path)
            got = request(socket.AF_INET, v4.getsockname())
            assert got["REMOTE_ADDR"] == "127.0.0.1"
            assert got["SERVER_PORT"] == str(v4.getsockname()[1])
            if len(sockets) == 3:
                got = request(socket.AF_INET6, sockets[1].getsockname()[:2])
                assert got["REMOTE_ADDR"] == "::1"
            got = request(socket.AF_UNIX, path)
            assert (got["REMOTE_ADDR"], got["SERVER_PORT"]) == ("localhost", path)
        for sock in sockets:
            still_usable(sock)
    finally:
        for sock in sockets:
            sock.close()


def test_a_socket_can_be_served_again_after_stop():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    try:
        for _ in range(2):
            with running(sockets=[sock]):
                assert request(socket.AF_INET, sock.getsockname())["REMOTE_ADDR"] == "127.0.0.1"
            still_usable(sock)
    finally:
        sock.close()


def test_a_nonblocking_socket_stays_nonblocking():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    sock.setblocking(False)
    try:
        with running(sockets=[sock]):
            request(socket.AF_INET, sock.getsockname())
        assert nonblocking(sock)
    finally:
        sock.close()


def test_a_server_never_run_leaves_the_socket_alone():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    try:
        maitre.create_server(app, sockets=[sock]).close()
        still_usable(sock)
    finally:
        sock.close()


def test_a_closed_socket_is_refused():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.close()
    with pytest.raises(ValueError, match="closed"):
        maitre.create_server(app, sockets=[sock])
