"""Temporary files: the request-body spool past ``inbuf_overflow`` and the
response spill past ``outbuf_overflow``. Each test runs ``maitre.serve`` in a
subprocess, since ``TMPDIR`` is read from the server's environment."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import HOST, Spawned, parse_one

BIG = 21 * 1024 * 1024

SERVER_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import maitre

    # A pattern with a prime period: a block moved, lost or repeated shows.
    PATTERN = bytes(range(251))

    def body(n):
        whole = PATTERN * (n // len(PATTERN) + 1)
        return [whole[i:min(i + 1048576, n)] for i in range(0, n, 1048576)]

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/echo":
            data = environ["wsgi.input"].read()
            answer = json.dumps({"len": len(data), "sha": hashlib.sha256(data).hexdigest()})
            pieces = [answer.encode() + b"\\n"] + body(int(environ.get("QUERY_STRING") or 0))
        else:
            pieces = body(int(environ["PATH_INFO"].lstrip("/")))
        size = sum(map(len, pieces))
        start_response("200 OK", [("Content-Length", str(size))])
        return pieces

    maitre.serve(app, host="127.0.0.1", port=int(sys.argv[1]), **json.loads(sys.argv[2]))
    """
)


def pattern(n: int) -> bytes:
    p = bytes(range(251))
    return (p * (n // len(p) + 1))[:n]


@pytest.fixture
def server(spawn):
    """``server(env, **options)``: SERVER_SCRIPT with ``env`` added to its environment
    (``TMPDIR`` is read there), once it serves."""

    def start(env: dict, **options) -> Spawned:
        argv = [sys.executable, "-c", SERVER_SCRIPT, "0", json.dumps(options)]
        return spawn(argv, env=env).wait_serving()

    return start


def connect_small(s: Spawned) -> socket.socket:
    """A connection with a small receive window: output piles up in the server."""
    sock = socket.create_connection((HOST, s.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return sock


def read_response(sock: socket.socket, pause: float = 0.0):
    """Reads one Content-Length response; waits `pause` seconds first so
    output piles up in the server."""
    time.sleep(pause)
    data = bytearray()
    need = None
    while need is None or len(data) < need:
        chunk = sock.recv(1 << 20)
        if not chunk:
            head, _, body = bytes(data).partition(b"\r\n\r\n")
            raise AssertionError(f"closed after {len(body)} body bytes; head {head[:300]!r}")
        data += chunk
        end = data.find(b"\r\n\r\n")
        if need is None and end >= 0:
            for line in bytes(data[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    need = end + 4 + int(value)
    return parse_one(bytes(data))[0]


def test_spill_file_that_cannot_be_created_keeps_the_response_whole(server, tmp_path):
    """issue 13 item 16: a spill file that cannot be created truncated the
    response (3.9 of 21 MB) with only a DEBUG line; now the output stays in
    memory, the response is complete, and one WARNING names the directory."""
    missing = tmp_path / "no-such-dir"
    s = server({"TMPDIR": str(missing)}, outbuf_overflow=64 * 1024)
    with connect_small(s) as sock:
        sock.sendall(f"GET /{BIG} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        resp = read_response(sock, pause=0.5)
        assert resp.status == 200
        assert len(resp.body) == BIG
        assert resp.body == pattern(BIG)
        # The connection still serves.
        sock.sendall(b"GET /10 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock).body == pattern(10)
    line = s.wait_for("WARNING").string
    assert str(missing) in line, line
    assert "No such file or directory" in line, line
    assert s.output.count("WARNING") == 1, s.output


def test_body_spool_that_cannot_be_created_is_a_500_and_a_warning(server, tmp_path):
    """issue 13 item 16: a request body past inbuf_overflow that cannot be
    spooled to disk was refused with only a DEBUG line; the 500 stays, and a
    WARNING now names the directory and the error."""
    missing = tmp_path / "no-such-dir"
    s = server({"TMPDIR": str(missing)}, inbuf_overflow=1024)
    body = b"x" * 100_000
    with connect_small(s) as sock:
        sock.sendall(
            f"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        )
        resp = read_response(sock)
        assert resp.status == 500
    line = s.wait_for("WARNING").string
    assert str(missing) in line, line


SLOW_UNLINK_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Holds every unlink under $SLOW_UNLINK_DIR for 300 ms: the window between
   creating a temporary file and unlinking it, made wide enough to look in. */
static void slow(const char *path) {
    const char *dir = getenv("SLOW_UNLINK_DIR");
    if (dir && strncmp(path, dir, strlen(dir)) == 0)
        usleep(300000);
}

int unlink(const char *path) {
    int (*real)(const char *) = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
    slow(path);
    return real(path);
}

int unlinkat(int fd, const char *path, int flags) {
    int (*real)(int, const char *, int) = (int (*)(int, const char *, int))dlsym(RTLD_NEXT, "unlinkat");
    slow(path);
    return real(fd, path, flags);
}
"""


@pytest.fixture
def slow_unlink(tmp_path):
    """A preload library that widens the create-then-unlink window."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if sys.platform != "linux" or cc is None:
        pytest.skip("needs Linux and a C compiler for the LD_PRELOAD shim")
    src = tmp_path / "slow_unlink.c"
    src.write_text(SLOW_UNLINK_C)
    lib = tmp_path / "slow_unlink.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True)
    return lib


def exposed_files(directory) -> list:
    """Files in `directory` that someone other than their owner could open."""
    found = []
    for name in os.listdir(directory):
        try:
            st = os.stat(os.path.join(directory, name))
        except FileNotFoundError:
            continue
        if st.st_mode & 0o077:
            found.append((name, stat.filemode(st.st_mode)))
    return found


def watch(directory, stop: threading.Event, seen: list) -> None:
    while not stop.is_set():
        seen.extend(exposed_files(directory))
        time.sleep(0.005)


def test_spooled_body_and_spilled_response_are_never_readable_by_others(
    server, tmp_path, slow_unlink
):
    """issue 13 item 17: request-body and spill files were created 0666 minus
    umask under a predictable name and unlinked only afterwards, so another
    local user could open one in that window and read the body. The temp dir
    is watched throughout (the window held open by a slow unlink): no file of
    ours in it may be readable by anyone but its owner."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)
    s = server(
        {"TMPDIR": str(tmp), "LD_PRELOAD": str(slow_unlink), "SLOW_UNLINK_DIR": str(tmp)},
        inbuf_overflow=1024,
        outbuf_overflow=64 * 1024,
    )
    body = os.urandom(2 * 1024 * 1024)
    size = 8 * 1024 * 1024
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=watch, args=(tmp, stop, seen), daemon=True)
    watcher.start()
    try:
        with connect_small(s) as sock:
            head = f"POST /echo?{size} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
            sock.sendall(head.encode() + body[:100_000])
            time.sleep(0.5)  # the body is spooling to disk now
            sock.sendall(body[100_000:])
            resp = read_response(sock, pause=0.5)  # and the response spilling
    finally:
        stop.set()
        watcher.join(5)
    answer, _, rest = resp.body.partition(b"\n")
    assert json.loads(answer) == {"len": len(body), "sha": hashlib.sha256(body).hexdigest()}
    assert rest == pattern(size)
    assert not seen, f"temporary files readable by others: {sorted(set(seen))}"
    assert os.listdir(tmp) == [], "nothing is left behind"
