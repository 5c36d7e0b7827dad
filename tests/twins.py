"""Differential testing against waitress: the same raw request to a real waitress server
and to maitre, both serving :func:`environ_app`, and their answers side by side.

* ``twin_servers`` (fixture/factory): ``twin_servers(**options) -> (maitre_port,
  waitress_port)``: both on 127.0.0.1 with the same options (waitress is skipped, port
  ``None``, when it is not installed).
* :func:`exchange` sends one raw request and returns an :class:`Answer`: the status, and
  for a 200 the environ's string values, with the two values that differ between any two
  servers by nature (the client's port, the server's port) replaced by placeholders.
* :func:`converse` sends raw requests (pipelined, or in parts) and then a probe request on
  the same connection, and returns a :class:`Transcript`: every response's status and
  framing, its :class:`Answer`, and whether the connection stayed open for the probe.
"""

from __future__ import annotations

import json
import select
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs

import pytest

from conftest import STOP_TIMEOUT, Conn, Response, connect, parse_one, read_until_close

try:
    import waitress.server as waitress_server
except ImportError:  # pragma: no cover - waitress is in the test extra
    waitress_server = None

CLIENT_PORT = "<client port>"
SERVER_PORT = "<server port>"


def req(line: str, *headers: str, body: bytes = b"", close: bool = True) -> bytes:
    """A raw request: ``Host`` added for HTTP/1.1 unless given, ``Connection: close`` unless
    ``close`` is false."""
    version = line.rsplit(" ", 1)[-1]
    lines = [line]
    if version == "HTTP/1.1" and not any(h.lower().startswith("host:") for h in headers):
        lines.append("Host: example.test")
    lines += list(headers) + (["Connection: close"] if close else [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def environ_app(environ, start_response):
    """Every str value of the environ and the request body, as JSON.

    The query chooses the response: ``status=N``, and ``frame=`` how the body is handed to
    the server: ``length`` (default; one item and a Content-Length), ``one`` (one item, no
    Content-Length), ``list`` (two items, no Content-Length), ``gen`` (a generator of two
    items, no Content-Length). 1xx, 204 and 304 have an empty body.
    """
    keys = {k: v for k, v in environ.items() if isinstance(v, str)}
    keys["__keys__"] = sorted(environ)
    keys["__body__"] = environ["wsgi.input"].read().decode("latin-1")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    code = int(query.get("status", ["200"])[0])
    frame = query.get("frame", ["length"])[0]
    body = b"" if code < 200 or code in (204, 304) else json.dumps(keys).encode("utf-8")
    headers = [("Content-Type", "application/json")]
    if frame == "length":
        headers.append(("Content-Length", str(len(body))))
    start_response(f"{code} {HTTPStatus(code).phrase}", headers)
    if frame == "gen":
        return (part for part in (body[:10], body[10:]))
    if frame == "list":
        return [body[:10], body[10:]]
    return [body]


@dataclass
class Answer:
    status: int
    body: bytes
    env: Dict[str, str] = field(default_factory=dict)
    #: every environ key, str or not
    keys: List[str] = field(default_factory=list)
    #: the request body as the app read it
    request_body: Optional[str] = None

    def __getitem__(self, key: str) -> Optional[str]:
        return self.env.get(key)


def exchange(port: int, data: bytes, timeout: float = 5.0) -> Answer:
    """One raw request on a fresh connection; the first response to it."""
    with Conn(port, timeout) as c:
        client_port = str(c.sock.getsockname()[1])
        c.send(data)
        method = data.split(b" ", 1)[0].decode("latin-1")
        r = c.read_response(method)
    return answer(r, method, port, client_port)


def answer(r: Response, method: str, port: int, client_port: str) -> Answer:
    """``r`` with, for a 200 from :func:`environ_app`, its environ (ports as placeholders)."""
    got = Answer(status=r.status, body=r.body)
    if r.status == 200 and method != "HEAD":
        env = json.loads(r.body)
        got.keys = env.pop("__keys__")
        got.request_body = env.pop("__body__")
        for key, value in env.items():
            if value == client_port and key == "REMOTE_PORT":
                value = CLIENT_PORT
            elif value == str(port) and key == "SERVER_PORT":
                value = SERVER_PORT
            got.env[key] = value
    return got


# Sent after the requests under test, pipelined: answered only if the connection is still open.
PROBE = b"GET /?probe HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
# Between the parts of a request, the longest wait for the server to answer the first part
# (with a 100 Continue) before the next is sent anyway.
PAUSE = 0.5


@dataclass
class Reply:
    status: int
    #: how the body was delimited: length, chunked, close (by closing the connection),
    #: or none (1xx, 204, 304, HEAD: the head's framing headers, if any, in brackets)
    framing: str
    #: the response said Connection: close
    close: bool
    answer: Answer

    def __str__(self) -> str:
        return f"{self.status} {self.framing}" + (" close" if self.close else "")


@dataclass
class Transcript:
    replies: List[Reply]
    #: the probe sent after the requests was answered: the server kept the connection open
    probe: bool

    def __str__(self) -> str:
        """Status, framing and closing in one line, e.g. ``200 length, 200 chunked; open``."""
        return ", ".join(map(str, self.replies)) + ("; open" if self.probe else "; closed")


def framing(r: Response, method: str) -> str:
    declared = "chunked" if r.has_header("Transfer-Encoding") else (
        "length" if r.has_header("Content-Length") else "")
    if r.status < 200 or r.status in (204, 304) or method == "HEAD":
        return f"none[{declared}]" if declared else "none"
    return "close" if r.close_delimited else declared


def converse(port: int, parts: Tuple[bytes, ...], methods: Tuple[str, ...] = (),
             timeout: float = 3.0) -> Transcript:
    """Send ``parts`` on one connection (before each but the first, waiting up to :data:`PAUSE`
    for the server to send something), then :data:`PROBE`;
    read until the server closes. ``methods`` names the method of each final response
    where it matters (HEAD)."""
    sock = connect(port, timeout)
    try:
        client_port = str(sock.getsockname()[1])
        try:
            for i, part in enumerate(parts + (PROBE,)):
                if i and part is not PROBE:
                    select.select([sock], [], [], PAUSE)
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed early: what was answered is still to be read
        data = read_until_close(sock, timeout)
    finally:
        sock.close()
    replies, final, pos = [], 0, 0
    while pos < len(data):
        method = methods[final] if final < len(methods) else "GET"
        r, used = parse_one(data[pos:], method, eof=True)
        shape = framing(r, method)
        if method == "HEAD" and pos + used < len(data) and not data.startswith(b"HTTP/", pos + used):
            # A body sent after a HEAD response (waitress does): read it as a GET's.
            r, used = parse_one(data[pos:], "GET", eof=True)
            shape += "+body"
        pos += used
        replies.append(Reply(r.status, shape, "close" in r.connection_tokens(),
                             answer(r, method, port, client_port)))
        final += r.status >= 200
    probe = bool(replies) and replies[-1].answer["HTTP_HOST"] == "probe"
    return Transcript(replies[:-1] if probe else replies, probe)


def start_waitress(app, **options):
    """A real waitress server on 127.0.0.1, running in a daemon thread; ``stop()`` closes
    it and ends its threads."""
    # The loop's select() timeout (default 1 s) bounds how long stop() waits for the loop
    # thread: closing from another thread does not wake select(). It changes no answer.
    server = waitress_server.create_server(app, host="127.0.0.1", port=0,
                                           asyncore_loop_timeout=0.05, **options)
    closing = threading.Event()

    def run() -> None:
        try:
            server.run()
        except OSError:
            # close() from another thread can pull a socket from under select().
            if not closing.is_set():
                raise

    def stop() -> None:
        closing.set()
        server.close()
        # waitress's run() stops its task threads only on SystemExit or KeyboardInterrupt:
        # stop them here, or later tests would inherit them (test_resources counts threads).
        server.task_dispatcher.shutdown()
        thread.join(STOP_TIMEOUT)

    thread = threading.Thread(target=run, name="waitress-twin", daemon=True)
    thread.start()
    server.stop = stop
    return server


@pytest.fixture
def twin_servers(serve):
    servers = []

    def _start(**options) -> Tuple[int, Optional[int]]:
        port = serve(environ_app, ping=False, **options).port
        if waitress_server is None:
            return port, None
        twin = start_waitress(environ_app, **options)
        servers.append(twin)
        return port, twin.effective_port

    yield _start
    for twin in servers:
        twin.stop()
