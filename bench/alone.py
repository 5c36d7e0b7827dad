"""The "app alone" row of the flask and django cases (run by bench/run.py): the case's app
called in a loop in this one process, with no server and no sockets, so that a server's req/s
can be read as a share of what the app alone can do on the same core.

    python alone.py --app flask_json [--path /] [--warmup 2] [--duration 5]

Every call gets a copy of the environ maitre builds for wrk's request (captured once from a
real request to a maitre server in this process, stopped before the loop) with a fresh
wsgi.input; the body is iterated and closed as a server does. Prints one JSON line: the
first response's status and body, calls, seconds, CPU seconds and peak RSS of the measured
loop.
"""

import argparse
import io
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apps  # noqa: E402
from maitre import create_server  # noqa: E402


def maitre_environ(path):
    """The environ maitre passes for `GET path` with wrk's one header (Host)."""
    seen = {}

    def capture(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    server = create_server(capture, host="127.0.0.1", port=0, threads=1)
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.effective_port)) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.effective_port}"
                      "\r\n\r\n".encode())
            while b"\r\n\r\n" not in s.recv(4096):
                pass
    finally:
        server.close()
        thread.join()
    return seen


def peak_rss():
    """VmHWM, as run.py reads it for the servers. Not ru_maxrss: Linux carries that over
    exec from the forked parent, so it would count run.py's own memory."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def caller(app, template):
    """One call as a server makes it: a copy of `template` with a fresh wsgi.input, the
    body iterated (its chunks appended to `keep` unless that is None) and closed."""
    status = []

    def start_response(line, headers, exc_info=None):
        status[:] = [line]
        return None  # the write() callable: the apps here never call it

    def call(keep):
        environ = template.copy()
        environ["wsgi.input"] = io.BytesIO()
        body = app(environ, start_response)
        try:
            for chunk in body:
                if keep is not None:
                    keep.append(chunk)
        finally:
            if hasattr(body, "close"):
                body.close()

    call.status = status
    return call


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--app", required=True, help="attribute of bench/apps.py")
    p.add_argument("--path", default="/")
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--duration", type=float, default=5)
    a = p.parse_args()
    call = caller(getattr(apps, a.app), maitre_environ(a.path))

    def loop(seconds):
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            call(None)
            calls += 1
        return calls, time.perf_counter() - t0

    first = []
    call(first)
    out = {"status": int(call.status[0].split()[0]), "body": b"".join(first).decode("latin-1")}
    loop(a.warmup)
    cpu0 = time.process_time()
    out["calls"], out["seconds"] = loop(a.duration)
    out["cpu_seconds"] = time.process_time() - cpu0
    out["peak_rss"] = peak_rss()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
