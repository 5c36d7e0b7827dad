"""Output buffering against slow clients: ``outbuf_high_watermark`` makes the app
wait, ``outbuf_overflow`` moves pending output to a temporary file; neither may
lose or reorder a byte."""

from __future__ import annotations

import socket
import time

from conftest import HOST, parse_one, raw, recv_until

CHUNK = 64 * 1024


def counting_app(chunks: int, produced: list):
    def app(environ, start_response):
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(chunks * CHUNK))],
        )

        def body():
            for i in range(chunks):
                produced.append(i)
                yield bytes([i % 251]) * CHUNK

        return body()

    return app


def expected(chunks: int) -> bytes:
    return b"".join(bytes([i % 251]) * CHUNK for i in range(chunks))


def read_response(sock: socket.socket, total: int, pause: float = 0.0) -> bytes:
    data = b""
    while True:
        try:
            parse_one(data)
            break
        except Exception:
            pass
        piece = sock.recv(256 * 1024)
        if not piece:
            break
        data += piece
        if pause:
            time.sleep(pause)
    resp, _ = parse_one(data)
    assert len(resp.body) == total
    return resp.body


def test_high_watermark_makes_the_app_wait_for_a_slow_client(serve):
    produced: list = []
    chunks = 200  # 12.5 MiB, far more than the socket buffers hold
    srv = serve(counting_app(chunks, produced), outbuf_high_watermark=CHUNK * 2)
    with socket.create_connection((HOST, srv.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)  # the client reads nothing
        stalled_at = len(produced)
        assert stalled_at < chunks / 2, f"the app produced {stalled_at} chunks with nobody reading"
        sock.settimeout(10)
        body = read_response(sock, chunks * CHUNK)
    assert len(produced) == chunks
    assert body == expected(chunks)


def test_output_past_outbuf_overflow_spills_to_disk_in_order(serve):
    produced: list = []
    chunks = 40  # 2.5 MiB buffered well past a 10 kB outbuf_overflow
    srv = serve(counting_app(chunks, produced), outbuf_overflow=10_000)
    with socket.create_connection((HOST, srv.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)  # let the app run ahead of the client
        sock.settimeout(10)
        body = read_response(sock, chunks * CHUNK, pause=0.001)
        # The connection is still usable afterwards.
        sock.sendall(b"GET /__ping HTTP/1.1\r\nHost: x\r\n\r\n")
        recv_until(sock, lambda data: b"pong" in data)
    assert body == expected(chunks)


def test_large_chunks_keep_their_framing(serve):
    """Chunks of 16 KiB and more are written from the app's own bytes objects:
    chunked framing, declared lengths and HEAD must come out as for small ones."""
    big = [bytes([65 + i]) * (20_000 + i) for i in range(3)]

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/chunked":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return iter(big)
        if environ["PATH_INFO"] == "/short":  # declares less than it sends
            start_response("200 OK", [("Content-Length", "30000")])
            return big
        start_response("200 OK", [("Content-Type", "text/plain")])
        return big

    srv = serve(app)
    with socket.create_connection((HOST, srv.port), timeout=5) as sock:
        sock.sendall(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
        data = recv_until(sock, lambda data: data.endswith(b"0\r\n\r\n"))
        resp, used = parse_one(data)
        assert resp.chunks == big
        assert used == len(data)

        sock.sendall(b"GET /list HTTP/1.1\r\nHost: x\r\n\r\n")
        body = read_response(sock, sum(map(len, big)))
        assert body == b"".join(big)

        sock.sendall(b"HEAD /list HTTP/1.1\r\nHost: x\r\n\r\n")
        head = recv_until(sock, lambda head: b"\r\n\r\n" in head)
        assert head.endswith(b"\r\n\r\n"), "no body bytes after a HEAD response"
        assert b"Content-Length: %d\r\n" % sum(map(len, big)) in head

    data = raw(srv.port, b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == b"".join(big)[:30000], "never more than the declared length"
