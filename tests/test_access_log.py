"""The access log (``access_log``, ``access_log_format``) over real sockets: one record
per request on the logger ``maitre.access``, formatted in Rust."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import maitre
from conftest import connect, raw, wait_for

ACCESS = "maitre.access"


def hello(environ, start_response):
    body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Out", "yes")])
    return [body]


def lines(caplog) -> list:
    return [r.getMessage() for r in caplog.records if r.name == ACCESS]


def one_line(caplog) -> str:
    assert wait_for(lambda: lines(caplog)), "no access log record"
    [line] = lines(caplog)
    return line


def test_combined_format_has_every_field(serve, caplog):
    with caplog.at_level(logging.INFO, logger=ACCESS):
        r = serve(hello, access_log=True)
        reply = raw(r.port, b"GET /a/b%20c?x=1&y=2 HTTP/1.1\r\nHost: h\r\n"
                            b"Referer: http://ref.example/page\r\nUser-Agent: agent/1.0 \"x\"\r\n"
                            b"Connection: close\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200 ")
        line = one_line(caplog)
    record = next(r for r in caplog.records if r.name == ACCESS)
    assert record.levelno == logging.INFO
    # A quote from the client is escaped: it cannot end the field early.
    assert re.fullmatch(
        r'127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
        r'"GET /a/b%20c\?x=1&y=2 HTTP/1\.1" 200 5 "http://ref\.example/page" '
        r'"agent/1\.0 \\"x\\""',
        line,
    ), line


def test_combined_format_dashes_what_is_missing(serve, caplog):
    def empty(environ, start_response):
        start_response("204 No Content", [])
        return []

    with caplog.at_level(logging.INFO, logger=ACCESS):
        r = serve(empty, access_log=True)
        raw(r.port, b"DELETE /x HTTP/1.0\r\n\r\n")
        line = one_line(caplog)
    assert line.endswith('"DELETE /x HTTP/1.0" 204 - "-" "-"'), line


def test_custom_format_with_queue_wait_and_app_time(serve, caplog):
    def slow(environ, start_response):
        time.sleep(0.2)
        start_response("201 Created", [("X-Out", "made"), ("Content-Length", "2")])
        return [b"ok"]

    fmt = ("%(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %({x-in}i)s %({X-Out}o)s %(p)s "
           "W=%(W)s A=%(A)s D=%(D)s L=%(L)s 100%%")
    with caplog.at_level(logging.INFO, logger=ACCESS):
        # One thread, two requests at once: the second waits for the first.
        r = serve(slow, access_log=True, access_log_format=fmt, threads=1)
        request = b"POST /p?k=v HTTP/1.1\r\nHost: h\r\nX-In: in\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        clients = [threading.Thread(target=raw, args=(r.port, request)) for _ in range(2)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        assert wait_for(lambda: len(lines(caplog)) == 2)
    parsed = []
    for line in lines(caplog):
        m = re.fullmatch(r"POST /p k=v HTTP/1\.1 201 2 in made <\d+> "
                         r"W=(\d+) A=(\d+) D=(\d+) L=(\d+\.\d{6}) 100%", line)
        assert m, line
        parsed.append([int(m[1]), int(m[2]), int(m[3]), float(m[4])])
    for wait, app, total, seconds in parsed:
        assert app >= 190_000  # µs in the app: it slept 0.2 s
        assert total >= wait + app - 1_000  # the whole is at least its parts
        assert abs(seconds * 1e6 - total) < 2
    # One of the two waited for the other's 0.2 s in the app.
    assert max(w for w, *_ in parsed) >= 100_000, parsed


def test_trusted_proxy_forwarded_address_is_logged(serve, caplog):
    with caplog.at_level(logging.INFO, logger=ACCESS):
        r = serve(hello, access_log=True, access_log_format="%(h)s %(s)s",
                  trusted_proxy="127.0.0.1", trusted_proxy_headers="x-forwarded-for")
        raw(r.port, b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.7\r\n"
                    b"Connection: close\r\n\r\n")
        assert wait_for(lambda: len(lines(caplog)) == 1)
        raw(r.port, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert wait_for(lambda: len(lines(caplog)) == 2)
    assert lines(caplog) == ["203.0.113.7 200", "127.0.0.1 200"]


def test_untrusted_forwarding_header_is_not_logged_as_the_client(serve, caplog):
    with caplog.at_level(logging.INFO, logger=ACCESS):
        r = serve(hello, access_log=True, access_log_format="%(h)s")
        raw(r.port, b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.7\r\n"
                    b"Connection: close\r\n\r\n")
        assert one_line(caplog) == "127.0.0.1"


def test_app_error_is_logged_as_500(serve, caplog):
    def broken(environ, start_response):
        raise RuntimeError("boom")

    with caplog.at_level(logging.INFO, logger=ACCESS):
        r = serve(broken, access_log=True, access_log_format='"%(r)s" %(s)s %(b)s')
        reply = raw(r.port, b"GET /boom HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        # The bytes of the error body maitre sent in the app's place.
        assert one_line(caplog) == f'"GET /boom HTTP/1.1" 500 {content_length(reply)}'


def test_off_by_default_logs_nothing(serve, caplog):
    with caplog.at_level(logging.DEBUG, logger=ACCESS):
        r = serve(hello)
        reply = raw(r.port, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200 ")
        time.sleep(0.2)
    assert lines(caplog) == []


def test_unknown_atom_is_an_error_at_start():
    with pytest.raises(ValueError, match=r"unknown atom %\(Z\)s"):
        maitre.create_server(hello, host="127.0.0.1", port=0, access_log=True,
                             access_log_format="%(h)s %(Z)s")


REFUSED_FORMAT = '%(h)s "%(r)s" %(m)s %(U)s %(H)s %(s)s %(B)s %(b)s "%(a)s"'


def content_length(reply: bytes) -> int:
    return int(re.search(rb"\r\nContent-Length: (\d+)\r\n", reply)[1])


@pytest.mark.parametrize(
    "sent, status, logged, agent",
    [
        # Not HTTP at all: the first line as sent, escaped; no method, path or protocol.
        (b"\x16\x03\x01\x02\x00 junk\r\n\r\n", 400, r'"\x16\x03\x01\x02\x00 junk" - - -', "-"),
        # A head that parses but breaks a rule: its request line, its words.
        (b"GET /nohost?x=1 HTTP/1.1\r\nUser-Agent: ua\r\n\r\n", 400,
         '"GET /nohost?x=1 HTTP/1.1" GET /nohost HTTP/1.1', "-"),
        (b"GET /h HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n", 431,
         '"GET /h HTTP/1.1" GET /h HTTP/1.1', "-"),
        # Too long a line: as much of it as max_request_line allows.
        (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414,
         '"GET /' + "a" * 195 + '" - - -', "-"),
        (b"POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
         '"POST /t HTTP/1.1" POST /t HTTP/1.1', "-"),
        # Refused once the head was whole: the parsed head, headers included.
        (b"POST /big HTTP/1.1\r\nHost: h\r\nUser-Agent: big/1\r\nContent-Length: 99\r\n\r\n", 413,
         '"POST /big HTTP/1.1" POST /big HTTP/1.1', "big/1"),
        (b"POST /chunk HTTP/1.1\r\nHost: h\r\nUser-Agent: ch/1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
         400, '"POST /chunk HTTP/1.1" POST /chunk HTTP/1.1', "ch/1"),
        (b"POST /len HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1e\r\n"
         + b"x" * 30 + b"\r\n0\r\n\r\n", 413, '"POST /len HTTP/1.1" POST /len HTTP/1.1', "-"),
    ],
)
def test_a_request_the_loop_refuses_gets_one_line(serve, caplog, sent, status, logged, agent):
    with caplog.at_level(logging.INFO, logger=ACCESS):
        r = serve(hello, access_log=True, access_log_format=REFUSED_FORMAT,
                  max_request_line=200, max_request_header_size=1024, max_request_body_size=20)
        reply = raw(r.port, sent)
        assert reply.startswith(b"HTTP/1.1 %d " % status), reply
        line = one_line(caplog)
    size = content_length(reply)
    assert line == f'127.0.0.1 {logged} {status} {size} {size} "{agent}"'


def test_a_head_that_times_out_gets_a_408_line(serve, caplog):
    with caplog.at_level(logging.INFO, logger=ACCESS):
        r = serve(hello, access_log=True, access_log_format=REFUSED_FORMAT, header_timeout=1)
        reply = raw(r.port, b"GET /slow HTTP/1.1\r\nHost: h\r\n", timeout=5)
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        line = one_line(caplog)
    size = content_length(reply)
    assert line == f'127.0.0.1 "GET /slow HTTP/1.1" GET /slow HTTP/1.1 408 {size} {size} "-"'


def test_refused_and_served_requests_each_get_one_line(serve, caplog):
    with caplog.at_level(logging.INFO, logger=ACCESS):
        r = serve(hello, access_log=True, access_log_format='"%(r)s" %(s)s')
        for _ in range(3):
            raw(r.port, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            raw(r.port, b"BAD\r\n\r\n")
        # Pipelined: a good request, then a bad one on the same connection.
        raw(r.port, b"GET /p HTTP/1.1\r\nHost: h\r\n\r\nGET /q HTTP/1.1\r\n\r\n")
        assert wait_for(lambda: len(lines(caplog)) == 8), lines(caplog)
        time.sleep(0.2)
    assert sorted(lines(caplog)) == sorted(
        ['"GET / HTTP/1.1" 200', '"BAD" 400'] * 3
        + ['"GET /p HTTP/1.1" 200', '"GET /q HTTP/1.1" 400'])


def test_refused_requests_log_nothing_with_the_access_log_off(serve, caplog):
    with caplog.at_level(logging.DEBUG, logger=ACCESS):
        r = serve(hello, max_request_body_size=1)
        assert raw(r.port, b"BAD\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert raw(r.port, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n").startswith(
            b"HTTP/1.1 413 ")
        time.sleep(0.3)
    assert lines(caplog) == []


def test_refused_lines_wait_for_a_free_thread_not_the_loop(serve, caplog):
    """The loop answers bad requests while the only worker thread is busy in the app;
    their lines are written once the thread is free."""
    release = threading.Event()

    def slow(environ, start_response):
        release.wait(10)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    with caplog.at_level(logging.INFO, logger=ACCESS):
        r = serve(slow, access_log=True, access_log_format='"%(r)s" %(s)s', threads=1)
        busy = threading.Thread(
            target=raw, args=(r.port, b"GET /slow HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
        busy.start()
        try:
            assert wait_for(lambda: r.server.stats()["requests"]["in_app"] == 1)
            for i in range(5):
                assert raw(r.port, b"BAD%d\r\n\r\n" % i).startswith(b"HTTP/1.1 400 ")
            assert lines(caplog) == []
        finally:
            release.set()
            busy.join()
        assert wait_for(lambda: len(lines(caplog)) == 6), lines(caplog)
    assert sorted(lines(caplog)) == ['"BAD0" 400', '"BAD1" 400', '"BAD2" 400', '"BAD3" 400',
                                     '"BAD4" 400', '"GET /slow HTTP/1.1" 200']


GARBAGE_CLIENT = textwrap.dedent(
    """
    import socket, sys, time
    time.sleep(0.5)  # the test's thread holds the GIL by then
    took = []
    for _ in range(20):
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as sock:
            sock.sendall(b"GARBAGE\\r\\n\\r\\n")
            reply = sock.recv(100)
        took.append(time.monotonic() - start)
        assert reply.startswith(b"HTTP/1.1 400 "), reply
    print(max(took))
    """
)


def test_the_loop_answers_garbage_while_python_holds_the_gil(serve, caplog):
    """Bad requests are answered (and their lines queued) without the GIL: a client in
    another process gets its 400s while a thread here keeps the GIL for 3 s."""
    with caplog.at_level(logging.INFO, logger=ACCESS):
        r = serve(hello, access_log=True, access_log_format='"%(r)s" %(s)s')
        # pyo3-log reads a logger's level with the GIL on the first record after a
        # start (the loop's debug line for a bad request), then caches it: once.
        assert raw(r.port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        client = subprocess.Popen([sys.executable, "-c", GARBAGE_CLIENT, str(r.port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(10.0)  # no other thread gets the GIL while this one spins
        try:
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                pass
        finally:
            sys.setswitchinterval(interval)
        out, err = client.communicate(timeout=30)
        assert client.returncode == 0, err
        assert float(out) < 1.0, out  # the slowest of the 20 replies, in seconds
        assert wait_for(lambda: len(lines(caplog)) == 21)
    assert set(lines(caplog)) == {'"GARBAGE" 400'}


def test_refused_lines_past_the_queue_are_counted_and_reported(serve, caplog):
    """While every thread is busy, at most 1024 refused requests' lines wait; the rest
    are dropped, and a warning says how many once a thread is free."""
    release = threading.Event()

    def slow(environ, start_response):
        release.wait(30)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    with caplog.at_level(logging.INFO):
        r = serve(slow, access_log=True, access_log_format="%(s)s", threads=1)
        busy = threading.Thread(
            target=raw, args=(r.port, b"GET /slow HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
        busy.start()
        try:
            assert wait_for(lambda: r.server.stats()["requests"]["in_app"] == 1)
            for _ in range(1024 + 30):
                with connect(r.port) as sock:
                    sock.sendall(b"BAD\r\n\r\n")
                    assert sock.recv(20).startswith(b"HTTP/1.1 400 ")
            assert wait_for(lambda: r.server.stats()["requests"]["bad_requests"] == 1054)
        finally:
            release.set()
            busy.join()
        assert wait_for(lambda: len(lines(caplog)) == 1025), len(lines(caplog))
    assert lines(caplog).count("400") == 1024
    [warning] = [rec.getMessage() for rec in caplog.records
                 if rec.name == "maitre" and "access log line(s)" in rec.getMessage()]
    assert warning.startswith("30 access log line(s) for requests the server refused"), warning
