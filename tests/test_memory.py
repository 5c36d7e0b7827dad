"""Memory a server holds for big streamed responses (issue 18): bounded by
`outbuf_overflow` per connection, however many fresh chunks the app makes.
The server runs in a subprocess so its peak RSS (VmHWM) is its own."""

from __future__ import annotations

import socket
import sys
import textwrap
import threading

import pytest

from conftest import HOST

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

CHUNK = 65536
CHUNKS = 1024  # 64 MiB per response
CONNECTIONS = 16

SERVER = textwrap.dedent(
    f"""
    import sys
    import maitre

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str({CHUNK * CHUNKS}))])
        # A fresh object per chunk, as a file read or a generator makes them.
        return (bytes([i % 251]) * {CHUNK} for i in range({CHUNKS}))

    server = maitre.create_server(app, host="127.0.0.1", port=0, threads={CONNECTIONS})
    print(server.effective_port, flush=True)
    server.run()
    """
)


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def fetch(port: int, results: list) -> None:
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        got = 0
        while True:
            data = sock.recv(CHUNK)
            if not data:
                break
            got += len(data)
        results.append(got)


def test_streamed_fresh_chunks_stay_within_outbuf_overflow_per_connection(spawn):
    """Issue 18: 16 connections streaming fresh 64 KiB chunks held every chunk
    until a worker's next job (1.5 GB for 100 MiB responses); now at most about
    `outbuf_overflow` (1 MiB) per connection is in memory."""
    server = spawn([sys.executable, "-c", SERVER])
    port = int(server.wait_for(r"^(\d+)$").group(1))
    pid = server.proc.pid
    fetch(port, [])  # warm up: imports, threads, arenas
    baseline = peak_rss(pid)
    results: list = []
    clients = [threading.Thread(target=fetch, args=(port, results)) for _ in range(CONNECTIONS)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(60)
    assert len(results) == CONNECTIONS
    assert all(n > CHUNK * CHUNKS for n in results), results
    grown = peak_rss(pid) - baseline
    assert grown < 64 << 20, f"peak RSS grew by {grown >> 20} MiB for {CONNECTIONS} streams"
