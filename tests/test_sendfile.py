"""`wsgi.file_wrapper` over a regular file: the event loop sends the file
itself (sendfile on Linux, a read loop elsewhere and to loopback clients)
while the worker goes on (issue 18). Offsets, declared lengths, HEAD and
keep-alive must come out as if the app had iterated the file, both ways."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import socket
import sys
import time

import pytest

import conftest
from conftest import Conn, connect, parse_responses, raw, read_until_close, wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Windows iterates the file in Python")

SIZE = 3 * 1024 * 1024 + 17


def lan_address():
    """This machine's own address on its default route, if it has one (a UDP
    connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(ip).is_loopback else ip


@pytest.fixture(params=["loopback", "lan"])
def host(request, monkeypatch):
    """Where server and client meet: a loopback client gets the file copied
    through memory, a client on another address (this machine's own, here)
    gets it by sendfile."""
    if request.param == "loopback":
        return conftest.HOST
    ip = lan_address()
    if ip is None:
        pytest.skip("no address but loopback")
    monkeypatch.setattr(conftest, "HOST", ip)  # where connect() goes
    return ip


@pytest.fixture
def data_file(tmp_path):
    data = bytes(i % 251 for i in range(SIZE))
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def file_app(path, *, seek=0, length=None, opened=None):
    def app(environ, start_response):
        f = open(path, "rb")
        if opened is not None:
            opened.append(f)
        f.seek(seek)
        headers = [("Content-Type", "application/octet-stream")]
        if length is not None:
            headers.append(("Content-Length", str(length)))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 4096)

    return app


def test_whole_file_with_computed_length_and_keep_alive(serve, host, data_file):
    path, data = data_file
    opened: list = []
    s = serve(file_app(path, opened=opened), host=host)
    with Conn(s.port, timeout=10) as c:
        for _ in range(2):
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            r = c.read_response()
            assert r.status == 200
            assert r.header("Content-Length") == str(SIZE)
            assert r.body == data
        c.assert_open()
    assert wait_for(lambda: all(f.closed for f in opened)), "the app's file was not closed"


def test_the_files_current_position_is_honoured(serve, host, data_file):
    path, data = data_file
    s = serve(file_app(path, seek=1000), host=host)
    with Conn(s.port, timeout=10) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.header("Content-Length") == str(SIZE - 1000)
        assert r.body == data[1000:]


def test_a_declared_shorter_length_sends_exactly_that(serve, host, data_file):
    path, data = data_file
    s = serve(file_app(path, seek=5, length=70000), host=host)
    with Conn(s.port, timeout=10) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        for _ in range(2):  # pipelined: the second response starts right after the first
            r = c.read_response()
            assert r.body == data[5:70005]
        c.assert_open()


def test_a_declared_longer_length_sends_the_file_then_closes(serve, host, data_file):
    path, data = data_file
    s = serve(file_app(path, length=SIZE + 100), host=host)
    out = raw(s.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", timeout=10)
    head, _, body = out.partition(b"\r\n\r\n")
    assert f"Content-Length: {SIZE + 100}".encode() in head
    assert body == data, "all the file, then the connection closes"


def test_head_sends_no_body(serve, host, data_file):
    path, _ = data_file
    s = serve(file_app(path), host=host)
    with Conn(s.port) as c:
        c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response(method="HEAD")
        assert (r.status, r.header("Content-Length"), r.body) == (200, str(SIZE), b"")
        c.assert_open()


def test_the_worker_is_free_while_the_file_goes_out(serve, host, tmp_path):
    """threads=1: a client that has not read a file bigger than the socket buffers
    and outbuf_high_watermark (the worker iterating it would wait) does not hold
    the only thread."""
    big = bytes(i % 253 for i in range(1 << 20)) * 48
    path = tmp_path / "big.bin"
    path.write_bytes(big)
    s = serve(file_app(path), host=host, threads=1)
    slow = connect(s.port, timeout=10)
    slow.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    time.sleep(0.3)
    started = time.monotonic()
    data2 = raw(s.port, b"GET /__ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert b"pong" in data2 and time.monotonic() - started < 2
    got = read_until_close(slow, timeout=20)
    slow.close()
    (r,), _ = parse_responses(got)
    assert r.body == big


def test_filelike_objects_that_are_not_regular_files_are_iterated(serve, host, tmp_path):
    """A BytesIO, or a text file (its reads are str: the app's error, a 500)."""
    (tmp_path / "t.txt").write_text("text")

    def app(environ, start_response):
        start_response("200 OK", [])
        if environ["PATH_INFO"] == "/text":
            return environ["wsgi.file_wrapper"](open(tmp_path / "t.txt"))
        return environ["wsgi.file_wrapper"](io.BytesIO(b"in memory"), 3)

    s = serve(app, host=host)
    with Conn(s.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert (r.body, r.chunks) == (b"in memory", [b"in ", b"mem", b"ory"])
    (r,), _ = parse_responses(raw(s.port, b"GET /text HTTP/1.1\r\nHost: t\r\n\r\n"))
    assert r.status == 500



def test_a_slow_reader_gets_every_byte_of_a_big_range(serve, host, tmp_path):
    """Many times the socket buffers, read 16 KiB at a time with pauses that
    let the socket fill: every write cut short resumes at the right byte, and
    the connection then serves the next request."""
    big = bytes(i % 239 for i in range(1 << 20)) * 24
    path = tmp_path / "big.bin"
    path.write_bytes(big)
    want = big[777 : 777 + 20_000_003]
    s = serve(file_app(path, seek=777, length=len(want)), host=host)
    with Conn(s.port, timeout=30) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += c.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 200 ") and f"Content-Length: {len(want)}".encode() in head
        digest, got, buf = hashlib.sha256(), 0, bytearray(16384)
        while got < len(want):
            if got % (4 << 20) < len(buf):
                time.sleep(0.05)
            n = c.sock.recv_into(buf, min(len(buf), len(want) - got))
            assert n, f"closed after {got} bytes"
            digest.update(buf[:n])
            got += n
        assert digest.digest() == hashlib.sha256(want).digest()
        c.send(b"GET /__ping HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().body == b"pong"
