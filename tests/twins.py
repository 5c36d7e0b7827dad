"""Differential testing against waitress: the same raw request to a real waitress server
and to maitre, both serving :func:`environ_app`, and their answers side by side.

* ``twin_servers`` (fixture/factory): ``twin_servers(**options) -> (maitre_port,
  waitress_port)``: both on 127.0.0.1 with the same options (waitress is skipped, port
  ``None``, when it is not installed).
* :func:`exchange` sends one raw request and returns an :class:`Answer`: the status, and
  for a 200 the environ's string values, with the two values that differ between any two
  servers by nature (the client's port, the server's port) replaced by placeholders.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pytest

from conftest import Conn, parse_responses

try:
    import waitress.server as waitress_server
except ImportError:  # pragma: no cover - waitress is in the test extra
    waitress_server = None

CLIENT_PORT = "<client port>"
SERVER_PORT = "<server port>"


def environ_app(environ, start_response):
    """Every str value of the environ, as JSON."""
    keys = {k: v for k, v in environ.items() if isinstance(v, str)}
    keys["__keys__"] = sorted(environ)
    body = json.dumps(keys).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


@dataclass
class Answer:
    status: int
    body: bytes
    env: Dict[str, str] = field(default_factory=dict)
    #: every environ key, str or not
    keys: List[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Optional[str]:
        return self.env.get(key)


def exchange(port: int, data: bytes, timeout: float = 5.0) -> Answer:
    """One raw request on a fresh connection; the first response to it."""
    with Conn(port, timeout) as c:
        client_port = str(c.sock.getsockname()[1])
        c.send(data)
        method = data.split(b" ", 1)[0].decode("latin-1")
        r = c.read_response(method)
    answer = Answer(status=r.status, body=r.body)
    if r.status == 200 and method != "HEAD":
        env = json.loads(r.body)
        answer.keys = env.pop("__keys__")
        for key, value in env.items():
            if value == client_port and key == "REMOTE_PORT":
                value = CLIENT_PORT
            elif value == str(port) and key == "SERVER_PORT":
                value = SERVER_PORT
            answer.env[key] = value
    return answer


def start_waitress(app, **options):
    """A real waitress server on 127.0.0.1, running in a daemon thread."""
    server = waitress_server.create_server(app, host="127.0.0.1", port=0, **options)
    closing = threading.Event()

    def run() -> None:
        try:
            server.run()
        except OSError:
            # close() from another thread can pull a socket from under select().
            if not closing.is_set():
                raise

    def close() -> None:
        closing.set()
        server.close()

    thread = threading.Thread(target=run, name="waitress-twin", daemon=True)
    thread.start()
    server.stop = close
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
