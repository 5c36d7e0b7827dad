"""Request bodies past ``inbuf_overflow``, which the loop moves from the socket
to a temporary file (on Linux without passing through its own memory), read
back by the app: every byte in place, whatever the timing of the client's
sends, the framing, the pipelining and the sizes the app reads in; and a body
the file refuses fails alone, leaving nothing behind for the next."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import textwrap
import threading
import time

import maitre
import pytest

from conftest import Conn, connect, parse_responses, read_until_close, recv_until

MiB = 1 << 20
OVERFLOW = 64 * 1024
# Odd sizes, so reads end everywhere relative to the loop's blocks.
SIZES = [65537, 1, 4095, 300_001, 7, 65536]


def pattern(n: int, seed: int = 0) -> bytes:
    """Bytes with a prime period, shifted by ``seed``: a block moved, lost,
    repeated or taken from another body changes the digest."""
    p = bytes((i * 7 + seed) % 251 for i in range(251))
    return (p * (n // len(p) + 2))[: n]


def lines(n: int) -> bytes:
    """About ``n`` bytes of lines of varied lengths, one without a newline at the end."""
    out = []
    size = 0
    i = 0
    while size < n:
        line = b"%07d " % i + b"y" * (i * 37 % 3001) + (b"\r\n" if i % 5 == 0 else b"\n")
        out.append(line)
        size += len(line)
        i += 1
    out.append(b"no newline at the end")
    return b"".join(out)


def digest(pieces) -> str:
    """sha256 over the pieces and their boundaries."""
    h = hashlib.sha256()
    for piece in pieces:
        h.update(b"%d:" % len(piece))
        h.update(piece)
    return h.hexdigest()


def deleted_files() -> set:
    """The anonymous files this process holds open, by what procfs calls them
    (`O_TMPFILE` files and unlinked ones end in "(deleted)")."""
    names = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.endswith("(deleted)"):
            names.add(target)
    return names


def app(environ, start_response):
    """Reads the body as PATH_INFO says and answers with its length and digest."""
    inp = environ["wsgi.input"]
    mode = environ["PATH_INFO"]
    if mode == "/odd":
        pieces = []
        i = 0
        while True:
            block = inp.read(SIZES[i % len(SIZES)])
            i += 1
            if not block:
                break
            pieces.append(block)
        data = b"".join(pieces)
        answer = {"len": len(data), "sha": hashlib.sha256(data).hexdigest()}
    elif mode == "/files":
        data = inp.read()
        answer = {"len": len(data), "sha": hashlib.sha256(data).hexdigest(),
                  "files": sorted(deleted_files())}
    else:
        if mode == "/readline":
            pieces = list(iter(inp.readline, b""))
        elif mode == "/readlines":
            pieces = inp.readlines()
        elif mode == "/iter":
            pieces = list(inp)
        else:  # /mixed: a read of an odd size, then a line, in turn
            pieces = []
            i = 0
            while True:
                piece = inp.read(SIZES[i % len(SIZES)]) if i % 2 else inp.readline()
                i += 1
                if not piece:
                    break
                pieces.append(piece)
        answer = {"len": sum(map(len, pieces)), "sha": digest(pieces)}
    body = json.dumps(answer).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def chunked(body: bytes, piece: int = 100_003) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + piece]), body[i:i + piece])
                   for i in range(0, len(body), piece))
    return out + b"0\r\n\r\n"


def request(path: str, body: bytes, is_chunked: bool = False) -> bytes:
    framing = "Transfer-Encoding: chunked" if is_chunked else f"Content-Length: {len(body)}"
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n".encode()
    return head + (chunked(body) if is_chunked else body)


def whole(body: bytes) -> dict:
    return {"len": len(body), "sha": hashlib.sha256(body).hexdigest()}


@pytest.mark.parametrize("is_chunked", [False, True], ids=["content-length", "chunked"])
def test_upload_sent_in_bursts_arrives_whole(serve, is_chunked):
    """Pauses between sends empty the socket mid-body (a short read each
    time), down to a one-byte burst; the app reads in odd sizes."""
    s = serve(app, inbuf_overflow=OVERFLOW)
    body = pattern(3 * MiB + 12345)
    data = request("/odd", body, is_chunked)
    head_end = data.index(b"\r\n\r\n") + 4
    cuts = [head_end + 100_000, head_end + 100_001, head_end + 2 * MiB, len(data) - 3]
    with Conn(s.port, timeout=10) as c:
        start = 0
        for cut in cuts + [len(data)]:
            c.send(data[start:cut])
            start = cut
            time.sleep(0.1)
        r = c.read_response()
    assert r.status == 200, r
    assert json.loads(r.body) == whole(body)


def test_pipelined_uploads_keep_their_own_bytes(serve):
    """Bodies past the spool threshold followed at once by the next request:
    the loop takes each body's bytes and not one more."""
    s = serve(app, inbuf_overflow=OVERFLOW)
    bodies = [pattern(MiB + 1, seed=1), pattern(700_000, seed=2), pattern(2 * MiB, seed=3),
              pattern(OVERFLOW + 1, seed=4)]
    data = (request("/odd", bodies[0]) + request("/odd", bodies[1], is_chunked=True)
            + request("/odd", bodies[2]) + request("/odd", bodies[3])
            + b"GET /__ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    sock = connect(s.port, timeout=10)
    try:
        sock.sendall(data)
        responses, rest = parse_responses(read_until_close(sock, timeout=10))
    finally:
        sock.close()
    assert rest == b""
    assert [r.status for r in responses] == [200] * 5
    assert [json.loads(r.body) for r in responses[:4]] == [whole(b) for b in bodies]
    assert responses[4].body == b"pong"


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no unix sockets")
def test_uploads_past_the_spool_over_a_unix_socket():
    """The same over a Unix socket, which the loop splices from too."""
    sock_dir = tempfile.mkdtemp(prefix="mt-", dir="/tmp")  # short: sun_path
    path = os.path.join(sock_dir, "up.sock")
    server = maitre.create_server(app, unix_socket=path, inbuf_overflow=OVERFLOW)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        bodies = [pattern(3 * MiB, seed=5), pattern(MiB + 7, seed=6)]
        data = (request("/odd", bodies[0]) + request("/odd", bodies[1])
                + b"GET /odd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(data)
            responses, rest = parse_responses(read_until_close(s, timeout=10))
    finally:
        server.close()
        thread.join(5)
        shutil.rmtree(sock_dir, ignore_errors=True)
    assert rest == b""
    assert [json.loads(r.body) for r in responses] == [whole(b) for b in bodies] + [whole(b"")]


@pytest.mark.parametrize("mode", ["/readline", "/readlines", "/iter", "/mixed"])
@pytest.mark.parametrize("is_chunked", [False, True], ids=["content-length", "chunked"])
def test_lines_of_a_spooled_body(serve, mode, is_chunked):
    """Lines, and lines mixed with reads of odd sizes, of a body several times
    the threshold and the loop's block: each piece exactly as sent."""
    s = serve(app, inbuf_overflow=OVERFLOW)
    body = lines(2 * MiB)
    if mode == "/mixed":
        expected = []
        rest = body
        i = 0
        while rest:
            if i % 2:
                n = SIZES[i % len(SIZES)]
            else:
                nl = rest.find(b"\n")
                n = len(rest) if nl < 0 else nl + 1
            expected.append(rest[:n])
            rest = rest[n:]
            i += 1
    else:
        expected = body.splitlines(keepends=True)
    with Conn(s.port, timeout=10) as c:
        c.send(request(mode, body, is_chunked))
        r = c.read_response()
    assert r.status == 200, r
    assert json.loads(r.body) == {"len": len(body), "sha": digest(expected)}


# The pool of spool files is the process's: a fresh server process sees only its own.
POOLING_SERVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    import maitre
    from test_upload_spool import app

    maitre.serve(app, host="127.0.0.1", port=int(sys.argv[1]), inbuf_overflow=65536,
                 cleanup_interval=int(sys.argv[2]), threads=2)
    """
)

needs_procfs = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"),
                                  reason="lists the server's open files with procfs")


def pooling_server(spawn, cleanup_interval: int):
    return spawn(
        [sys.executable, "-c", POOLING_SERVER, "0", str(cleanup_interval),
         os.path.dirname(os.path.abspath(__file__))],
    ).wait_serving()


@needs_procfs
def test_a_reused_spool_file_gives_each_body_its_own_bytes(spawn):
    """Spool files are reused, and hold the old body past a new one's end: a
    smaller body after a bigger one, after one cut off half way, is read
    exactly, by size, by lines and to the end, from the same file."""
    server = pooling_server(spawn, 30)
    big = pattern(3 * MiB, seed=1)
    with Conn(server.port, timeout=10) as c:
        c.send(request("/files", big))
        first = json.loads(c.read_response().body)
    assert {k: first[k] for k in ("len", "sha")} == whole(big)
    assert len(first["files"]) == 1, first["files"]
    # The worker gives the file back just after it answers.
    time.sleep(0.3)
    # A client gone half way through its body leaves its bytes in the file too.
    sock = connect(server.port, timeout=10)
    sock.sendall(request("/files", pattern(2 * MiB, seed=2))[: MiB])
    time.sleep(0.3)
    sock.close()
    time.sleep(0.3)
    body = lines(MiB)
    expected = body.splitlines(keepends=True)
    with Conn(server.port, timeout=10) as c:
        c.send(request("/readline", body))
        assert json.loads(c.read_response().body) == {"len": len(body), "sha": digest(expected)}
        time.sleep(0.3)
        small = pattern(OVERFLOW + 1, seed=3)
        c.send(request("/odd", small))
        assert json.loads(c.read_response().body) == whole(small)
        time.sleep(0.3)
        c.send(request("/files", small))
        last = json.loads(c.read_response().body)
    assert {k: last[k] for k in ("len", "sha")} == whole(small)
    assert last["files"] == first["files"], "a new spool file was made"


@needs_procfs
def test_a_spool_file_no_body_used_for_a_cleanup_interval_is_closed(spawn):
    """A quiet server does not keep its spool files: once no body used one
    for a whole cleanup_interval, a worker closes it."""
    server = pooling_server(spawn, 1)
    with Conn(server.port, timeout=10) as c:
        c.send(request("/files", pattern(MiB)))
        assert len(json.loads(c.read_response().body)["files"]) == 1
        deadline = time.monotonic() + 5
        while True:
            c.send(b"GET /files HTTP/1.1\r\nHost: t\r\n\r\n")
            files = json.loads(c.read_response().body)["files"]
            if not files or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert files == []


REFUSING_SERVER = textwrap.dedent(
    """
    import resource, sys
    sys.path.insert(0, sys.argv[3])
    import maitre
    from test_upload_spool import app

    # Writes past this size fail with EFBIG (Python ignores SIGXFSZ): a full
    # disk, for this process only.
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    maitre.serve(app, host="127.0.0.1", port=int(sys.argv[1]), inbuf_overflow=65536, threads=2)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_body_the_file_refuses_fails_alone(spawn):
    """A body the temporary file stops taking half way is a 500; what the
    loop had already taken from the socket for it must not reach the next
    body, which arrives whole."""
    limit = MiB
    server = spawn(
        [sys.executable, "-c", REFUSING_SERVER, "0", str(limit),
         os.path.dirname(os.path.abspath(__file__))],
    ).wait_serving()
    for round_ in range(3):
        too_big = pattern(4 * MiB, seed=round_)
        sock = connect(server.port, timeout=10)
        try:
            try:
                sock.sendall(request("/odd", too_big))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and closed before taking it all
            got = recv_until(sock, lambda d: b"\r\n\r\n" in d, timeout=10)
        finally:
            sock.close()
        assert got.startswith(b"HTTP/1.1 500 "), got[:200]
        fits = pattern(limit - 4096, seed=10 + round_)
        with Conn(server.port, timeout=10) as c:
            c.send(request("/odd", fits))
            r = c.read_response()
        assert r.status == 200, r
        assert json.loads(r.body) == whole(fits)
    server.terminate()
    assert "cannot write a temporary file" in server.output, server.output
