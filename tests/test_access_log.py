"""The access log (``access_log``, ``access_log_format``) over real sockets: one record
per request on the logger ``maitre.access``, formatted in Rust."""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest

import maitre
from conftest import raw, wait_for

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
        r = serve(broken, access_log=True, access_log_format='"%(r)s" %(s)s')
        raw(r.port, b"GET /boom HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert one_line(caplog) == '"GET /boom HTTP/1.1" 500'


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
