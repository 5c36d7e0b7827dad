#!/usr/bin/env python3
"""Hold N idle keep-alive connections to a server (run by bench/run.py for `idle5000`).

    python idle.py --port P [--count 5000] [--deadline 30]

Opens --count connections (at most --concurrency being set up at a time), sends one
`GET / HTTP/1.1` on each and reads its response, then leaves them idle. Gives up on
whatever is not answered --deadline seconds after starting (bounded time, whatever the
server does). Prints one JSON line when done opening:

    {"requested": 5000, "answered": 5000, "kept": 5000, "open": 5000, "failures": {...},
     "seconds": 1.2, "nofile": 20000}

(answered: complete responses; kept: those not answered with `Connection: close`, which
the helper closes as any client would; open: kept ones the server has not closed since)

then reads commands on stdin, one per line:

    check   -> {"open": N}: how many of the answered connections the server still holds
               (a connection the server closed reads as EOF)
    (EOF)   -> close everything and exit

Standard library only; raises its own RLIMIT_NOFILE to the hard limit.
"""

import argparse
import json
import selectors
import socket
import sys
import time
from rlimit import raise_nofile


def response_complete(buf):
    """(complete, close): complete once `buf` holds a whole response with a Content-Length
    body (or no body); close if the server said `Connection: close`."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False, False
    length = 0
    close = False
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip() or 0)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    return len(buf) >= end + 4 + length, close


def open_connections(host, port, count, concurrency, deadline):
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    answered = []
    failures = {}

    def fail(kind, sock):
        failures[kind] = failures.get(kind, 0) + 1
        try:
            sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    started = 0
    pending = 0
    answered_count = 0
    t0 = time.monotonic()
    stop_opening = False
    while (started < count and not stop_opening) or pending:
        left = deadline - (time.monotonic() - t0)
        if left <= 0:
            break
        while pending < concurrency and started < count and not stop_opening:
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as e:  # EMFILE: out of descriptors here, not in the server
                failures[f"socket(): {e.strerror}"] = count - started
                stop_opening = True
                break
            s.setblocking(False)
            err = s.connect_ex((host, port))
            started += 1
            if err not in (0, 115):  # EINPROGRESS
                failures[f"connect: errno {err}"] = failures.get(f"connect: errno {err}", 0) + 1
                s.close()
                continue
            sel.register(s, selectors.EVENT_WRITE, {"phase": "connect", "buf": b""})
            pending += 1
        for key, _ in sel.select(timeout=min(0.5, max(left, 0.01))):
            s, d = key.fileobj, key.data
            if d["phase"] == "connect":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(f"connect: errno {err}", s)
                    pending -= 1
                    continue
                try:
                    s.send(request)
                except OSError as e:
                    fail(f"send: {e.strerror}", s)
                    pending -= 1
                    continue
                d["phase"] = "read"
                sel.modify(s, selectors.EVENT_READ, d)
                continue
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                fail(f"recv: {e.strerror}", s)
                pending -= 1
                continue
            if not chunk:
                fail("closed before responding", s)
                pending -= 1
                continue
            d["buf"] += chunk
            complete, close = response_complete(d["buf"])
            if complete:
                pending -= 1
                answered_count += 1
                if close:
                    # As any client would: the server said it closes this connection.
                    fail("answered with Connection: close", s)
                else:
                    sel.unregister(s)
                    answered.append(s)
    # Whatever is still being set up when time runs out is a failure.
    for key in list(sel.get_map().values()):
        fail("no response before the deadline" if key.data["phase"] == "read"
             else "not connected before the deadline", key.fileobj)
    if started < count and not stop_opening:
        failures["not attempted before the deadline"] = count - started
    sel.close()
    return answered, answered_count, failures, time.monotonic() - t0


def still_open(socks):
    """How many of `socks` the server has not closed (EOF or error = closed)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    closed = 0
    for key, _ in sel.select(timeout=0):
        try:
            if key.fileobj.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    sel.close()
    return len(socks) - closed


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=200,
                   help="connections being set up at once (default 200)")
    p.add_argument("--deadline", type=float, default=30.0,
                   help="seconds after which unanswered connections are given up (default 30)")
    a = p.parse_args()
    nofile = raise_nofile()
    socks, answered, failures, seconds = open_connections(a.host, a.port, a.count,
                                                          a.concurrency, a.deadline)
    print(json.dumps({"requested": a.count, "answered": answered, "kept": len(socks),
                      "open": still_open(socks),
                      "failures": failures, "seconds": round(seconds, 3), "nofile": nofile}),
          flush=True)
    for line in sys.stdin:
        if line.strip() == "check":
            print(json.dumps({"open": still_open(socks)}), flush=True)
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
