"""No lost data (issue 14): large uploads (Content-Length and chunked) and a large
download arrive intact (sha256), through a fast client and a rate-limited one.

The normal suite runs a short form; the 1 GiB runs are marked ``long``
(``pytest --run-long tests/test_large_data.py``) and print their timings.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from typing import Iterator, Optional

import pytest

from conftest import connect, parse_responses, read_until_close, recv_until, split_head

MiB = 1 << 20
GiB = 1 << 30
PIECE = 256 * 1024
# Random, so a misplaced or repeated piece changes the digest; each piece is
# this block rotated by its index, so pieces differ from one another too.
BLOCK = os.urandom(PIECE)


def pieces(total: int) -> Iterator[bytes]:
    sent = 0
    i = 0
    while sent < total:
        turn = (i * 4099) % PIECE
        piece = (BLOCK[turn:] + BLOCK[:turn])[: total - sent]
        yield piece
        sent += len(piece)
        i += 1


def digest(total: int) -> str:
    h = hashlib.sha256()
    for piece in pieces(total):
        h.update(piece)
    return h.hexdigest()


def app(environ, start_response):
    """POST: the length and sha256 of the body read. GET /blob?n=N: N bytes of ``pieces``."""
    if environ["REQUEST_METHOD"] == "POST":
        h = hashlib.sha256()
        n = 0
        stream = environ["wsgi.input"]
        while True:
            data = stream.read(MiB)
            if not data:
                break
            n += len(data)
            h.update(data)
        body = f"{n} {h.hexdigest()}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    total = int(environ["QUERY_STRING"].split("=")[1])
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(total))])
    return pieces(total)


class Throttle:
    """Holds a client to ``rate`` bytes per second (None: as fast as it goes)."""

    def __init__(self, rate: Optional[float]) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.done = 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.rate:
            ahead = self.done / self.rate - (time.monotonic() - self.start)
            if ahead > 0:
                time.sleep(ahead)


def client(port: int, slow: bool) -> socket.socket:
    sock = connect(port, timeout=30)
    if slow:
        # Small buffers, so the server meets a full window rather than a deep one.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    return sock


SLOW_RATE = 32 * MiB  # bytes/s, in pieces of 16 KiB
SLOW_PIECE = 16384


def upload(port: int, total: int, chunked: bool, slow: bool) -> None:
    sock = client(port, slow)
    throttle = Throttle(SLOW_RATE if slow else None)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    sock.sendall(f"POST /sha HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{framing}\r\n\r\n".encode())
    for piece in pieces(total):
        parts = [piece[i : i + SLOW_PIECE] for i in range(0, len(piece), SLOW_PIECE)] if slow else [piece]
        for part in parts:
            if chunked:
                part = b"%x\r\n%s\r\n" % (len(part), part)
            sock.sendall(part)
            throttle(len(part))
    if chunked:
        sock.sendall(b"0\r\n\r\n")
    (r,), rest = parse_responses(read_until_close(sock, timeout=60))
    sock.close()
    assert r.status == 200 and rest == b"", r
    assert r.body.decode() == f"{total} {digest(total)}"


def download(port: int, total: int, slow: bool) -> None:
    sock = client(port, slow)
    throttle = Throttle(SLOW_RATE if slow else None)
    sock.sendall(f"GET /blob?n={total} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    data = recv_until(sock, lambda d: b"\r\n\r\n" in d)
    r, first = split_head(data)
    assert r.status == 200 and r.header("Content-Length") == str(total), r
    h = hashlib.sha256(first)
    got = len(first)
    size = SLOW_PIECE if slow else 4 * MiB
    while True:
        chunk = sock.recv(size)
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
        throttle(len(chunk))
    sock.close()
    assert got == total
    assert h.hexdigest() == digest(total)


CASES = [
    pytest.param("upload", False, id="upload-content-length"),
    pytest.param("upload", True, id="upload-chunked"),
    pytest.param("download", None, id="download"),
]


def run(serve, what: str, chunked: Optional[bool], slow: bool, total: int) -> float:
    s = serve(app, max_request_body_size=2 * GiB)
    began = time.monotonic()
    if what == "upload":
        upload(s.port, total, bool(chunked), slow)
    else:
        download(s.port, total, slow)
    return time.monotonic() - began


@pytest.mark.parametrize("slow", [False, True], ids=["fast", "slow"])
@pytest.mark.parametrize("what,chunked", CASES)
def test_large_body_intact(serve, what, chunked, slow):
    """Short form: 64 MiB fast, 8 MiB through the rate-limited client."""
    run(serve, what, chunked, slow, 8 * MiB if slow else 64 * MiB)


@pytest.mark.long
@pytest.mark.timeout(900)
@pytest.mark.parametrize("slow", [False, True], ids=["fast", "slow"])
@pytest.mark.parametrize("what,chunked", CASES)
def test_one_gib_intact(serve, what, chunked, slow):
    took = run(serve, what, chunked, slow, GiB)
    print(f"\n1 GiB {what}{' chunked' if chunked else ''} {'slow' if slow else 'fast'}: "
          f"{took:.1f} s, {GiB / MiB / took:.0f} MiB/s")
