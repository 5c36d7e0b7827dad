"""A soak (issue 14): mixed requests against a maitre subprocess, reporting the
server's RSS, threads and open descriptors after a warm-up and at the end.

    python tests/soak.py --requests 1000000      # the full soak, a few minutes

Per ten requests: four plaintext and two streamed responses and two 64 KiB
posts on keep-alive connections, one bad request, one disconnect (alternately
mid-request with a reset, and mid-response). tests/test_soak.py runs a short form.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
import threading
import time
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from conftest import HOST, Conn, Spawned, connect, parse_responses, raw  # noqa: E402

POST_BODY = os.urandom(64 * 1024)
POST_SHA = hashlib.sha256(POST_BODY).hexdigest()
STREAM = [b"s" * 8192] * 8
MIX = ["plain", "stream", "post", "plain", "bad", "plain", "stream", "post", "plain", "disconnect"]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/post":
        body = hashlib.sha256(environ["wsgi.input"].read()).hexdigest().encode()
    elif path in ("/stream", "/big"):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return iter(STREAM * (64 if path == "/big" else 1))
    else:
        body = b"Hello, World!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def figures(pid: int) -> Dict[str, int]:
    """The server's resident memory (KiB), threads and open descriptors."""
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.split()[0] if value.split() else ""
    return {
        "rss_kib": int(status["VmRSS"]),
        "threads": int(status["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def disconnect(port: int, n: int) -> None:
    sock = connect(port)
    if n % 2:
        sock.sendall(b"POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n" + POST_BODY[:1000])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    else:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.recv(4096)
    sock.close()


def client(port: int, count: int, start: int, failures: List[str]) -> None:
    conn = None
    for n in range(start, start + count):
        kind = MIX[n % len(MIX)]
        try:
            if kind == "bad":
                (r,), _ = parse_responses(raw(port, b"GET /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                                                    b"Content-Length: 2\r\n\r\nx", timeout=10))
                assert r.status == 400, r
                continue
            if kind == "disconnect":
                disconnect(port, n // len(MIX))
                continue
            if conn is None or conn.eof:
                conn = Conn(port, timeout=10)
            if kind == "post":
                conn.send(b"POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n" + POST_BODY)
                r = conn.read_response()
                assert r.status == 200 and r.body.decode() == POST_SHA, r
            else:
                conn.send(f"GET /{kind} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                r = conn.read_response()
                assert r.status == 200, r
                assert r.body == (b"".join(STREAM) if kind == "stream" else b"Hello, World!"), r
        except (AssertionError, OSError) as e:
            failures.append(f"{kind} #{n}: {e!r}"[:300])
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()


def load(port: int, total: int, clients: int) -> List[str]:
    """Send ``total`` mixed requests from ``clients`` threads; the failures."""
    failures: List[str] = []
    share = total // clients
    threads = [
        threading.Thread(target=client, args=(port, share + (total % clients if i == 0 else 0), i * share, failures))
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


class Server:
    """maitre serving this module's ``app`` in a subprocess."""

    def __init__(self, threads: int = 4) -> None:
        env = {"PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = Spawned(
            [sys.executable, "-m", "maitre", f"--listen={HOST}:0", f"--threads={threads}", "soak:app"],
            env=env,
        ).wait_serving()
        self.proc = self.process.proc
        self.port = self.process.port

    def settle(self, seconds: float = 5.0) -> None:
        """Wait until the server holds only its listening descriptors again
        (closed connections are released within the loop's next turns)."""
        deadline = time.monotonic() + seconds
        base = figures(self.proc.pid)["fds"]
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = figures(self.proc.pid)["fds"]
            if now == base:
                return
            base = now

    def stop(self) -> str:
        """SIGTERM (failing, after a SIGKILL, if it does not exit); its output."""
        self.process.terminate()
        return self.process.output


def soak(total: int, clients: int, warmup: int = 5000) -> Dict[str, object]:
    server = Server()
    try:
        failures = load(server.port, warmup, clients)
        server.settle()
        start = figures(server.proc.pid)
        began = time.monotonic()
        failures += load(server.port, total, clients)
        took = time.monotonic() - began
        server.settle()
        end = figures(server.proc.pid)
    finally:
        log = server.stop()
    return {"start": start, "end": end, "seconds": took, "failures": failures, "log": log}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    result = soak(args.requests, args.clients)
    print(f"{args.requests} requests from {args.clients} clients in {result['seconds']:.0f} s "
          f"({args.requests / result['seconds']:.0f}/s), {len(result['failures'])} failures")
    for key in ("rss_kib", "threads", "fds"):
        print(f"  {key:8} start {result['start'][key]:>8}  end {result['end'][key]:>8}")
    for failure in result["failures"][:20]:
        print("  failure:", failure)
    sys.exit(1 if result["failures"] else 0)


if __name__ == "__main__":
    main()
