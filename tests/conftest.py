"""Shared fixtures and helpers: real servers on 127.0.0.1 and raw-socket HTTP tools.

* ``serve(app, **options)`` (fixture/factory): ``maitre.create_server(app,
  host="127.0.0.1", port=0, **options)``, ``server.run()`` in a daemon thread,
  returns a :class:`Running` (``.host``, ``.port``, ``.server``).  On teardown every
  server is closed and its thread must stop within a few seconds.
  Every app is wrapped so that ``GET /__ping`` answers ``200 pong`` -- used by
  :func:`ping` to prove the server still serves after an error.
* ``raw(port, data, timeout)``: send raw bytes, read until the server closes.
* ``recv_until(sock, done, timeout)``: read until ``done(data)``, failing on EOF/timeout.
* :class:`Conn`: a persistent raw connection that reads one response at a time.
* ``spawn(argv, ...)`` (fixture/factory): a :class:`Spawned` server subprocess in
  its own process group, its output captured; ``.wait_serving()`` takes the port it
  bound to port 0 from its "Serving on http://host:port" line.  On teardown each
  process group is killed.
* :func:`parse_responses` / :func:`parse_one`: a strict HTTP/1.1 response parser
  (status line, headers, body by Content-Length / chunked / close) that splits a
  byte stream holding several pipelined responses.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import pytest

import maitre

HOST = "127.0.0.1"
STOP_TIMEOUT = 5.0


# ----------------------------------------------------------------- long tests


def pytest_addoption(parser) -> None:
    parser.addoption("--run-long", action="store_true", help="also run tests marked long (or MAITRE_RUN_LONG=1)")


def pytest_collection_modifyitems(config, items) -> None:
    """``long`` tests (full-size data, soaks) run only when asked: they take minutes."""
    if config.getoption("--run-long") or os.environ.get("MAITRE_RUN_LONG") == "1":
        return
    skip = pytest.mark.skip(reason="long: run with --run-long or MAITRE_RUN_LONG=1")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


# --------------------------------------------------------------------------- server


class Running:
    """A server running in a background thread."""

    def __init__(self, server, thread: threading.Thread, errors: list) -> None:
        self.server = server
        self.thread = thread
        self.errors = errors
        self.host, self.port = server.effective_listen[0]

    @property
    def addr(self) -> Tuple[str, int]:
        return (self.host, self.port)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self.server.close()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"server.run() did not return within {timeout}s of close()"
        assert not self.errors, f"server.run() raised: {self.errors!r}"


def with_ping(app: Callable) -> Callable:
    """Route ``/__ping`` (anywhere under SCRIPT_NAME) to a fixed 200 response."""

    def wrapper(environ, start_response):
        if environ.get("PATH_INFO") == "/__ping":
            body = b"pong"
            start_response(
                "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
            )
            return [body]
        return app(environ, start_response)

    return wrapper


@pytest.fixture
def serve():
    """Factory: ``serve(app, host=HOST, **options) -> Running``; servers are stopped on teardown."""
    running: List[Running] = []

    def _serve(app: Callable, *, ping: bool = True, host: str = HOST, **options) -> Running:
        server = maitre.create_server(with_ping(app) if ping else app, host=host, port=0, **options)
        errors: list = []

        def target() -> None:
            try:
                server.run()
            except BaseException as exc:  # pragma: no cover - reported at teardown
                errors.append(exc)

        thread = threading.Thread(target=target, name="maitre-test-server", daemon=True)
        thread.start()
        r = Running(server, thread, errors)
        running.append(r)
        return r

    yield _serve
    problems = []
    for r in running:
        r.server.close()
    for r in running:
        r.thread.join(STOP_TIMEOUT)
        if r.thread.is_alive():
            problems.append(f"server on port {r.port}: run() did not return within {STOP_TIMEOUT}s")
        if r.errors:
            problems.append(f"server on port {r.port}: run() raised {r.errors!r}")
    assert not problems, "; ".join(problems)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


# ------------------------------------------------------------ servers in a subprocess

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING = re.compile(r"Serving on http://([0-9.]+):([0-9]+)")


class Spawned:
    """A command (a server) in its own process group, its output (stdout and stderr)
    collected line by line; ``stdin=True`` gives it a pipe to write to, ``pass_fds``
    descriptors it inherits (as :class:`subprocess.Popen`'s)."""

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Optional[str] = REPO_ROOT,
        env: Optional[Dict[str, str]] = None,
        stdin: bool = False,
        pass_fds: Sequence[int] = (),
    ) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            pass_fds=pass_fds,
            # a new session: the group holds every process it starts (workers, a reloader)
            start_new_session=True,
        )
        self.host = HOST
        self.port = 0
        self._lines: List[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def matches(self, pattern: "Union[str, re.Pattern[str]]") -> List["re.Match[str]"]:
        """Every output line so far that matches ``pattern`` (a regex)."""
        pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        with self._changed:
            return [m for m in map(pattern.search, self._lines) if m]

    def wait_for(
        self, pattern: "Union[str, re.Pattern[str]]", count: int = 1, timeout: float = 20.0
    ) -> "re.Match[str]":
        """The ``count``-th output line matching ``pattern``; fails if the process exits first."""
        pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = self.matches(pattern)
                if len(matches) >= count:
                    return matches[count - 1]
                if not self._reader.is_alive():
                    pytest.fail(f"{self.argv} exited ({self.proc.poll()}) before printing "
                                f"{pattern.pattern!r}:\n{''.join(self._lines)}")
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{self.argv} did not print {pattern.pattern!r} within "
                                f"{timeout}s:\n{''.join(self._lines)}")
                self._changed.wait(left)

    def wait_serving(self, count: int = 1) -> "Spawned":
        """Wait for the ``count``-th ``Serving on`` line and take its address.  The
        socket listens by then: connections made at once are served when the server runs."""
        match = self.wait_for(SERVING, count)
        self.host, self.port = match.group(1), int(match.group(2))
        return self

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def send_signal(self, signum: int) -> None:
        """A signal to the process alone (as a service manager or a terminal sends it)."""
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit by itself; return its exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.argv} did not exit within {timeout}s:\n{self.output}")
        self._reader.join(5)
        return code

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM to the process alone; its exit code."""
        self.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL the whole group, leader gone or not: no stray server survives."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self._reader.join(5)


@pytest.fixture
def spawn():
    """``spawn(argv, cwd=REPO_ROOT, env=None, stdin=False, pass_fds=())``: start a :class:`Spawned`;
    its process group is killed on teardown."""
    started: List[Spawned] = []

    def _spawn(argv: Sequence[str], **kw) -> Spawned:
        process = Spawned(argv, **kw)
        started.append(process)
        return process

    yield _spawn
    for process in started:
        process.kill()


# --------------------------------------------------------------------------- parser


class IncompleteResponse(Exception):
    pass


class Response:
    def __init__(self) -> None:
        self.version = ""
        self.status = 0
        self.reason = ""
        self.headers: List[Tuple[str, str]] = []
        self.body = b""
        self.chunked = False
        self.chunks: List[bytes] = []  # chunk payloads, as framed on the wire
        self.trailers: List[Tuple[str, str]] = []
        self.close_delimited = False
        self.raw = b""  # every byte of this response, head and body
        self.head = b""  # status line + headers + blank line

    def header(self, name: str) -> Optional[str]:
        values = self.header_all(name)
        if not values:
            return None
        assert len(values) == 1, f"header {name!r} sent {len(values)} times: {values!r}"
        return values[0]

    def header_all(self, name: str) -> List[str]:
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def has_header(self, name: str) -> bool:
        return bool(self.header_all(name))

    def connection_tokens(self) -> List[str]:
        tokens: List[str] = []
        for value in self.header_all("Connection"):
            tokens.extend(t.strip().lower() for t in value.split(",") if t.strip())
        return tokens

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers!r} body={self.body[:200]!r}>"


def _parse_headers(block: bytes) -> List[Tuple[str, str]]:
    headers = []
    for line in block.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise ValueError(f"obsolete line folding in response: {line!r}")
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ValueError(f"malformed header line: {line!r}")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return headers


def parse_one(data: bytes, method: str = "GET", eof: bool = False) -> Tuple[Response, int]:
    """Parse one response at the start of ``data``; return (response, bytes consumed).

    Raises :class:`IncompleteResponse` if more bytes are needed (a close-delimited
    body is complete only when ``eof`` is true), ``ValueError`` if malformed.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if eof and data:
            raise ValueError(f"truncated response head: {data!r}")
        raise IncompleteResponse()
    head = data[: end + 4]
    status_line, _, header_block = data[:end].partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise ValueError(f"malformed status line: {status_line!r}")
    r = Response()
    r.version = parts[0].decode("ascii")
    if r.version not in ("HTTP/1.0", "HTTP/1.1"):
        raise ValueError(f"unexpected version in status line: {status_line!r}")
    r.status = int(parts[1])
    r.reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
    r.headers = _parse_headers(header_block)
    r.head = head
    pos = end + 4

    no_body = method.upper() == "HEAD" or 100 <= r.status < 200 or r.status in (204, 304)
    te = ", ".join(r.header_all("Transfer-Encoding")).lower()
    cls = r.header_all("Content-Length")
    if no_body:
        pass
    elif te:
        if [t.strip() for t in te.split(",")] != ["chunked"]:
            raise ValueError(f"unexpected response Transfer-Encoding: {te!r}")
        if cls:
            raise ValueError("response has both Content-Length and Transfer-Encoding")
        r.chunked = True
        body = []
        while True:
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                if eof:
                    raise ValueError(f"truncated chunked body: {data[pos:]!r}")
                raise IncompleteResponse()
            size_text = data[pos:line_end]
            if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                raise ValueError(f"bad chunk size line: {size_text!r}")
            size = int(size_text, 16)
            pos = line_end + 2
            if size == 0:
                # trailers, then an empty line
                while True:
                    line_end = data.find(b"\r\n", pos)
                    if line_end < 0:
                        if eof:
                            raise ValueError("truncated chunked trailer")
                        raise IncompleteResponse()
                    line = data[pos:line_end]
                    pos = line_end + 2
                    if not line:
                        break
                    r.trailers.extend(_parse_headers(line))
                break
            if len(data) < pos + size + 2:
                if eof:
                    raise ValueError("truncated chunk")
                raise IncompleteResponse()
            chunk = data[pos : pos + size]
            if data[pos + size : pos + size + 2] != b"\r\n":
                raise ValueError(f"chunk not followed by CRLF: {data[pos + size : pos + size + 2]!r}")
            body.append(chunk)
            pos += size + 2
        r.chunks = body
        r.body = b"".join(body)
    elif cls:
        if len(cls) != 1 or not cls[0].isdigit():
            raise ValueError(f"bad response Content-Length: {cls!r}")
        n = int(cls[0])
        if len(data) < pos + n:
            if eof:
                raise ValueError(f"response body shorter than Content-Length {n}: {data[pos:]!r}")
            raise IncompleteResponse()
        r.body = data[pos : pos + n]
        pos += n
    else:
        if not eof:
            raise IncompleteResponse()
        r.close_delimited = True
        r.body = data[pos:]
        pos = len(data)
    r.raw = data[:pos]
    return r, pos


def parse_responses(
    data: bytes, methods: Optional[Sequence[str]] = None, eof: bool = True
) -> Tuple[List[Response], bytes]:
    """Split ``data`` into responses; return (responses, unparsed rest).

    ``methods`` gives the request method of each *final* response (HEAD has no
    body); interim 1xx responses do not consume an entry.  Without ``methods``
    everything is treated as GET.  Parsing stops at the first incomplete response.
    """
    responses: List[Response] = []
    pos = 0
    index = 0
    while pos < len(data):
        method = methods[index] if methods and index < len(methods) else "GET"
        try:
            r, used = parse_one(data[pos:], method, eof=eof)
        except IncompleteResponse:
            break
        responses.append(r)
        pos += used
        if not 100 <= r.status < 200:
            index += 1
    return responses, data[pos:]


def split_head(data: bytes) -> Tuple[Response, bytes]:
    """Parse just the head of the response in ``data``; return (head-only response, the rest)."""
    end = data.find(b"\r\n\r\n")
    assert end >= 0, f"no complete response head in {data!r}"
    r, _ = parse_one(data[: end + 4], "HEAD")
    return r, data[end + 4 :]


# --------------------------------------------------------------------------- sockets


def connect(port: int, timeout: float = 3.0) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_close(sock: socket.socket, timeout: float = 3.0, initial: bytes = b"") -> bytes:
    """Read until EOF; fail if the peer does not close within ``timeout`` seconds."""
    data = bytearray(initial)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"server did not close the connection within {timeout}s; got {bytes(data)!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


def recv_until(sock: socket.socket, done: Callable[[bytes], bool], timeout: float = 5.0,
               initial: bytes = b"") -> bytes:
    """Read until ``done(data)``; fail on EOF or after ``timeout`` seconds instead of hanging."""
    data = initial
    deadline = time.monotonic() + timeout
    while not done(data):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no complete reply within {timeout}s; got {data!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            raise AssertionError(f"connection closed early; got {data!r}")
        data += chunk
    return data


def raw(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    """Send ``data`` on a fresh connection and return every byte until the server closes.

    Fails if the server does not close within ``timeout`` seconds.
    """
    sock = connect(port, timeout)
    try:
        if data:
            sock.sendall(data)
        return read_until_close(sock, timeout)
    finally:
        sock.close()


class Conn:
    """A persistent raw connection reading one response at a time."""

    def __init__(self, port: int, timeout: float = 3.0) -> None:
        self.port = port
        self.timeout = timeout
        self.sock = connect(port, timeout)
        self.buf = b""
        self.eof = False

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Receive more bytes; False on timeout.  Sets ``eof`` on EOF/reset."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk
        return True

    def read_response(self, method: str = "GET", timeout: Optional[float] = None) -> Response:
        """Read exactly one response (interim 1xx responses count as one)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                r, used = parse_one(self.buf, method, eof=self.eof)
            except IncompleteResponse:
                if self.eof:
                    raise AssertionError(f"connection closed before a complete response; got {self.buf!r}")
                if not self._fill(deadline):
                    raise AssertionError(
                        f"no complete response within {timeout or self.timeout}s; got {self.buf!r}"
                    )
                continue
            self.buf = self.buf[used:]
            return r

    def read_bytes(self, n: int, timeout: Optional[float] = None) -> bytes:
        """Read exactly ``n`` bytes (fails on timeout or EOF)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            if self.eof:
                raise AssertionError(f"EOF after {self.buf!r}, wanted {n} bytes")
            if not self._fill(deadline):
                raise AssertionError(f"timeout waiting for {n} bytes; got {self.buf!r}")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_nothing_for(self, seconds: float) -> None:
        """Assert that no byte arrives (and the connection stays open) for ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._fill(deadline):
                break
            assert not self.buf and not self.eof, (
                f"expected silence for {seconds}s, got {self.buf!r} (eof={self.eof})"
            )
        assert not self.buf and not self.eof, f"expected silence, got {self.buf!r} (eof={self.eof})"

    def assert_closed(self, timeout: float = 3.0) -> None:
        """Assert the server closes the connection (with no further bytes) within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            assert not self.buf, f"unexpected bytes before close: {self.buf!r}"
            if not self._fill(deadline):
                raise AssertionError(f"server did not close the connection within {timeout}s")
        assert not self.buf, f"unexpected bytes before close: {self.buf!r}"

    def assert_reusable_or_closed(self, r: Response) -> None:
        """After ``r``: if it announced ``Connection: close`` the server must close with no
        further bytes; otherwise the connection must answer another request cleanly
        (stray body bytes after ``r`` would break the next response's parse)."""
        if "close" in r.connection_tokens():
            self.assert_closed()
        else:
            self.assert_open()

    def assert_open(self, path: str = "/__ping") -> Response:
        """Prove the connection is still usable: a ping request gets its answer on it."""
        assert not self.eof, "connection was closed"
        self.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        r = self.read_response()
        assert r.status == 200, r
        return r


def ping(port: int, path: str = "/__ping") -> None:
    """A fresh connection gets ``200 pong``: the server is still serving."""
    data = raw(port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    (r,), rest = parse_responses(data)
    assert r.status == 200, r
    assert r.body == b"pong", r
    assert rest == b""


def get(port: int, path: str = "/", headers: str = "", timeout: float = 3.0) -> Response:
    """One ``GET`` with ``Connection: close`` on a fresh connection; the parsed response."""
    data = raw(
        port,
        f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n".encode("latin-1"),
        timeout,
    )
    (r,), rest = parse_responses(data)
    assert rest == b"", rest
    return r


# --------------------------------------------------------------------------- apps


def simple_app(body: bytes = b"hello", status: str = "200 OK", extra: Sequence = ()) -> Callable:
    def app(environ, start_response):
        start_response(
            status,
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))] + list(extra),
        )
        return [body]

    return app


def echo_app(environ, start_response):
    """Echo the request body; X-Path / X-Method / X-Query describe the request."""
    body = environ["wsgi.input"].read()
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(body))),
            ("X-Path", environ["PATH_INFO"].encode("latin-1").decode("latin-1")),
            ("X-Method", environ["REQUEST_METHOD"]),
            ("X-Query", environ.get("QUERY_STRING", "")),
        ],
    )
    return [body]


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
