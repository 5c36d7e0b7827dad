"""Differential test: the same raw requests sent to maitre and to a real waitress serving
the same app (:func:`twins.environ_app`) with the same options, on one connection each,
followed by a pipelined probe request.

Compared: every response's status, its framing (Content-Length, chunked, close-delimited,
none) and ``Connection: close``; whether the connection stays open for the probe; the body
after de-framing (it must be the app's whole JSON); and, for each 200, the environ (keys,
values, the request body as the app read it).

The differences maitre keeps on purpose are in ``DIFFERENT`` (what each server does, and
why) and ``DELIBERATE_KEYS``; each is a row of the README's "Migrating from waitress".
"""

from __future__ import annotations

import functools

import pytest

from twins import converse, req, twin_servers  # noqa: F401

ka = functools.partial(req, close=False)  # a keep-alive request

# Environ keys waitress sets that maitre does not, and why.
DELIBERATE_KEYS = {
    # A waitress extension: a per-request callable, useful only with
    # channel_request_lookahead, which maitre does not implement (no read-ahead).
    "waitress.client_disconnected",
}

NO_LENGTH = ("an HTTP/1.1 response without Content-Length is chunked by both; waitress then "
             "closes the connection, maitre keeps it: the chunked framing ends the body exactly")
LIST_LENGTH = ("maitre computes Content-Length for a list or tuple body of several items "
               "(waitress only for one item), so the connection stays reusable")
HEAD_BODY = ("waitress sends the app's body after a HEAD response, which the client reads as "
             "the start of the next response; RFC 9110 9.3.2: a HEAD response has no body")
SMUGGLING = ("RFC 9112 6.1/6.3: framing the client and a proxy in front can read two ways "
             "(request smuggling) is refused, and the connection closed")
VERSION = ("maitre speaks HTTP/1.0 and HTTP/1.1: another major version gets 505 (RFC 9110 "
           "15.6.6), a request line without a version 400")
TARGET_FORM = ("RFC 9112 3.2: each request-target form goes with its methods (asterisk with "
               "OPTIONS, authority with CONNECT, else a path or an absolute URL)")

# Cases maitre answers differently on purpose: id -> (maitre, waitress, why), each side the
# summary of the transcript (see twins.Transcript): each response's status, framing and
# Connection: close, then whether the connection stayed open for the pipelined probe.
DIFFERENT = {
    "raw-utf8-target": ("200 length close; closed", "400 length close; closed",
                        "PEP 3333 carries any byte as latin-1; clients that send raw UTF-8 "
                        "paths keep working (waitress's urlsplit needs ASCII)"),
    "nul-in-target": ("400 length close; closed", "200 length close; closed",
                      "RFC 3986: control characters are not allowed in a request-target"),
    "obs-fold": ("400 length close; closed", "200 length close; closed",
                 "RFC 9112 5.2: folded lines may be refused, and proxies unfold them "
                 "differently (request smuggling)"),
    "http11-no-host": ("400 length close; closed", "200 length close; closed",
                       "RFC 9112 3.2: an HTTP/1.1 request must carry Host"),
    "two-hosts": ("400 length close; closed", "200 length close; closed",
                  "RFC 9112 3.2: a request with several Host lines must be answered 400"),
    "version-2": ("505 length close; closed", "200 length close; closed", VERSION),
    "version-1.2": ("400 length close; closed", "200 length close; closed",
                    "RFC 9110 2.5: a later 1.x is served as 1.1, whose rules require Host"),
    "no-version": ("400 length close; closed", "200 length close; closed", VERSION),
    "method-with-dash": ("400 length close; closed", "200 length close; closed", TARGET_FORM),
    "get-asterisk": ("400 length close; closed", "200 length close; closed", TARGET_FORM),
    "relative-target": ("400 length close; closed", "200 length close; closed", TARGET_FORM),
    "authority-not-connect": ("400 length close; closed", "200 length close; closed",
                              TARGET_FORM),
    "invalid-host": ("400 length close; closed", "200 length close; closed",
                     "RFC 9110 7.2: an invalid Host value gets 400"),
    "long-request-line": ("414 length close; closed", "200 length close; closed",
                          "max_request_line (8190, as gunicorn's most)"),
    "chunked-and-length": ("400 length close; closed", "200 length close; closed", SMUGGLING),
    "chunked-twice": ("400 length close; closed", "200 length close; closed", SMUGGLING),
    "post-http10-chunked": ("400 length close; closed", "200 length close; closed", SMUGGLING),
    "frame-gen-keepalive": ("200 chunked; open", "200 chunked close; closed", NO_LENGTH),
    "status-500-gen": ("500 chunked; open", "500 chunked close; closed", NO_LENGTH),
    "pipelined-gen-then-get": ("200 chunked, 200 length; open", "200 chunked close; closed",
                               NO_LENGTH),
    "frame-list-keepalive": ("200 length; open", "200 chunked close; closed", LIST_LENGTH),
    "frame-list-http10-keepalive": ("200 length; open", "200 close close; closed", LIST_LENGTH),
    "pipelined-list-then-get": ("200 length, 200 length; open", "200 chunked close; closed",
                                LIST_LENGTH),
    "status-204": ("204 none; open", "204 none close; closed",
                   "204 and 304 have no body, so nothing is gained by closing"),
    "status-304": ("304 none; open", "304 none close; closed",
                   "204 and 304 have no body, so nothing is gained by closing"),
    "head": ("200 none[length] close; closed", "200 none[length]+body close; closed", HEAD_BODY),
    "head-keepalive": ("200 none[length]; open", "200 none[length]+body; open", HEAD_BODY),
    "head-one-item": ("200 none[length]; open", "200 none[length]+body; open", HEAD_BODY),
    "head-gen": ("200 none; open", "200 none[chunked]+body close; closed", HEAD_BODY),
    "head-http10": ("200 none[length] close; closed", "200 none[length]+body close; closed",
                    HEAD_BODY),
    "pipelined-head-then-get": ("200 none[length], 200 length; open",
                                "200 none[length]+body, 200 length; open", HEAD_BODY),
    "expect-no-body": ("200 length; open", "100 none, 200 length close; closed",
                       "with no body to wait for, 100 Continue asks for nothing (RFC 9110 "
                       "10.1.1 lets it be left out) and nothing calls for the close"),
    "pipelined-connection-close-token": (
        "200 length close; closed", "200 length, 200 length; open",
        "Connection is a list (RFC 9110 7.6.1): waitress sees close only when it is the "
        "whole value"),
    "proxied-malformed": ("400 length, 200 length; open", "400 chunked close; closed",
                          "a bad proxy header is the request's fault, not the connection's: "
                          "the next request is served"),
}

# Keys whose values must be the same for the same request.
COMPARED = (
    "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REQUEST_URI", "SCRIPT_NAME",
    "SERVER_PROTOCOL", "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "REMOTE_HOST",
    "REMOTE_PORT", "CONTENT_TYPE", "CONTENT_LENGTH", "wsgi.url_scheme",
)

BASE = {"server_name": "srv.invalid", "threads": 2}
XFF = {"trusted_proxy": "127.0.0.1", "trusted_proxy_headers": "x-forwarded-for x-forwarded-proto"}
CHUNKED = "Transfer-Encoding: chunked"


def case(name, *parts, options=None, methods=()):
    """One connection: ``parts`` sent in turn (a pause between them), then the probe.
    ``methods`` names each response's request method where it matters (HEAD)."""
    return pytest.param(options or {}, parts, methods, id=name)


CASES = [
    # -- the request-target, methods, headers (one request, Connection: close)
    case("root", req("GET / HTTP/1.1")),
    case("query", req("GET /a/b?x=1&y=2 HTTP/1.1")),
    case("percent", req("GET /a%20b/%C3%A9?q=%20 HTTP/1.1")),
    case("encoded-slash-bad-escape", req("GET /a%2Fb%zz HTTP/1.1")),
    case("leading-slashes", req("GET //a//b?x HTTP/1.1")),
    case("encoded-leading-slashes", req("GET /%2F%2Fa HTTP/1.1")),
    case("fragment", req("GET /a#frag HTTP/1.1")),
    case("query-fragment", req("GET /a?q=1#frag HTTP/1.1")),
    case("question-mark-in-fragment", req("GET /a#f?x=1 HTTP/1.1")),
    case("slashes-fragment", req("GET //a#f?x HTTP/1.1")),
    case("empty-query", req("GET /? HTTP/1.1")),
    case("absolute-form", req("GET http://example.com/p?q=1 HTTP/1.1")),
    case("absolute-form-no-path", req("GET http://example.com HTTP/1.1")),
    case("absolute-form-query", req("GET http://example.com?q HTTP/1.1")),
    case("absolute-form-https", req("GET https://example.com:8443/p HTTP/1.1")),
    case("asterisk", req("OPTIONS * HTTP/1.1")),
    case("get-asterisk", req("GET * HTTP/1.1")),
    case("relative-target", req("GET foo HTTP/1.1")),
    case("authority-not-connect", req("GET example.test:80 HTTP/1.1")),
    case("invalid-host", req("GET / HTTP/1.1", "Host: a b")),
    case("long-request-line", req("GET /" + "a" * 8200 + " HTTP/1.1")),
    case("head", req("HEAD / HTTP/1.1"), methods=("HEAD",)),
    case("extension-method", req("PROPFIND /dav HTTP/1.1")),
    case("method-with-dash", req("M-SEARCH * HTTP/1.1")),
    case("lowercase-method-400", req("get / HTTP/1.1")),
    case("mixed-case-method-400", req("Get / HTTP/1.1")),
    case("http10-no-host", req("GET / HTTP/1.0")),
    case("repeated-header", req("GET / HTTP/1.1", "Accept: a", "accept: b", "ACCEPT: c")),
    case("underscore-dropped", req("GET / HTTP/1.1", "X_Under: 1", "X-Dash: 2")),
    case("empty-and-padded", req("GET / HTTP/1.1", "X-Empty:", "X-Spaces:   v  ")),
    case("latin1-value", req("GET / HTTP/1.1", "X-Latin: caf\xe9")),
    case("cookies", req("GET / HTTP/1.1", "Cookie: a=1", "Cookie: b=2")),
    case("proxy-headers-cleared", req("GET / HTTP/1.1", "X-Forwarded-For: 1.2.3.4",
                                      "Forwarded: for=x")),
    case("content-type", req("GET / HTTP/1.1", "Content-Type: application/json")),
    case("long-header", req("GET / HTTP/1.1", "X-Long: " + "v" * 6000)),
    case("two-hosts", req("GET / HTTP/1.1", "Host: a.test", "Host: b.test")),
    case("host-with-port", req("GET / HTTP/1.1", "Host: a.test:8080")),
    case("url-scheme", req("GET / HTTP/1.1"), options={"url_scheme": "https"}),
    case("prefix-path", req("GET /app/x?q HTTP/1.1"), options={"url_prefix": "/app"}),
    case("prefix-exact", req("GET /app HTTP/1.1"), options={"url_prefix": "/app"}),
    case("prefix-longer", req("GET /application HTTP/1.1"), options={"url_prefix": "/app"}),
    case("prefix-outside", req("GET /other HTTP/1.1"), options={"url_prefix": "/app"}),
    # -- malformed requests
    case("raw-utf8-target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    case("obs-fold", req("GET / HTTP/1.1", "X-A: 1", " folded")),
    case("http11-no-host", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
    case("version-2", req("GET / HTTP/2.0")),
    case("version-1.2", req("GET / HTTP/1.2")),
    case("version-garbage", req("GET / HTTX/1.1")),
    case("no-version", b"GET /\r\n\r\n"),
    case("space-in-target", req("GET /a b HTTP/1.1")),
    case("header-without-colon", req("GET / HTTP/1.1", "X-Bad")),
    case("space-before-colon", req("GET / HTTP/1.1", "X-A : 1")),
    case("control-char-in-value", req("GET / HTTP/1.1", "X-A: a\x01b")),
    case("bare-lf", b"GET / HTTP/1.1\nHost: h\nConnection: close\n\n"),
    case("leading-empty-line", b"\r\n" + req("GET / HTTP/1.1")),
    case("nul-in-target", req("GET /a\x00b HTTP/1.1")),
    # -- response framing chosen by the app
    case("frame-length-keepalive", ka("GET /?frame=length HTTP/1.1")),
    case("frame-one-item-keepalive", ka("GET /?frame=one HTTP/1.1")),
    case("frame-list-keepalive", ka("GET /?frame=list HTTP/1.1")),
    case("frame-gen-keepalive", ka("GET /?frame=gen HTTP/1.1")),
    case("frame-gen-close", req("GET /?frame=gen HTTP/1.1")),
    case("frame-length-http10", req("GET /?frame=length HTTP/1.0")),
    case("frame-gen-http10", req("GET /?frame=gen HTTP/1.0")),
    case("frame-length-http10-keepalive", ka("GET / HTTP/1.0", "Connection: keep-alive")),
    case("frame-one-http10-keepalive", ka("GET /?frame=one HTTP/1.0", "Connection: keep-alive")),
    case("frame-gen-http10-keepalive", ka("GET /?frame=gen HTTP/1.0", "Connection: keep-alive")),
    case("frame-list-http10-keepalive", ka("GET /?frame=list HTTP/1.0", "Connection: keep-alive")),
    case("status-204", ka("GET /?status=204&frame=one HTTP/1.1")),
    case("status-304", ka("GET /?status=304&frame=one HTTP/1.1")),
    case("status-404", ka("GET /?status=404 HTTP/1.1")),
    case("status-500-gen", ka("GET /?status=500&frame=gen HTTP/1.1")),
    case("head-keepalive", ka("HEAD / HTTP/1.1"), methods=("HEAD",)),
    case("head-one-item", ka("HEAD /?frame=one HTTP/1.1"), methods=("HEAD",)),
    case("head-gen", ka("HEAD /?frame=gen HTTP/1.1"), methods=("HEAD",)),
    case("head-http10", req("HEAD / HTTP/1.0"), methods=("HEAD",)),
    # -- request bodies
    case("post-length", req("POST /p HTTP/1.1", "Content-Type: text/plain", "Content-Length: 5",
                            body=b"hello")),
    case("post-chunked", req("POST /p HTTP/1.1", CHUNKED, body=b"5\r\nhello\r\n0\r\n\r\n")),
    case("post-length-keepalive", ka("POST / HTTP/1.1", "Content-Length: 3", body=b"abc")),
    case("post-length-zero", ka("POST / HTTP/1.1", "Content-Length: 0")),
    case("post-chunked-keepalive", ka("POST / HTTP/1.1", CHUNKED,
                                      body=b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")),
    case("post-chunked-empty", ka("POST / HTTP/1.1", CHUNKED, body=b"0\r\n\r\n")),
    case("post-chunked-extension", ka("POST / HTTP/1.1", CHUNKED,
                                      body=b"3;name=value\r\nabc\r\n0\r\n\r\n")),
    case("post-chunked-trailer", ka("POST / HTTP/1.1", CHUNKED,
                                    body=b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n")),
    case("post-chunked-upper-hex", ka("POST / HTTP/1.1", CHUNKED,
                                      body=b"A\r\n0123456789\r\n0\r\n\r\n")),
    case("post-chunked-binary", ka("POST / HTTP/1.1", CHUNKED,
                                   body=b"4\r\n\x00\r\n\xff\r\n0\r\n\r\n")),
    case("post-http10-length", req("POST / HTTP/1.0", "Content-Length: 2", body=b"hi")),
    case("post-http10-chunked", req("POST / HTTP/1.0", CHUNKED, body=b"2\r\nhi\r\n0\r\n\r\n")),
    case("chunked-and-length", req("POST / HTTP/1.1", CHUNKED, "Content-Length: 3",
                                   body=b"2\r\nhi\r\n0\r\n\r\n")),
    case("two-equal-lengths", req("POST / HTTP/1.1", "Content-Length: 2", "Content-Length: 2",
                                  body=b"hi")),
    case("two-different-lengths", req("POST / HTTP/1.1", "Content-Length: 2",
                                      "Content-Length: 3", body=b"hi!")),
    case("length-plus-sign", req("POST / HTTP/1.1", "Content-Length: +2", body=b"hi")),
    case("length-negative", req("POST / HTTP/1.1", "Content-Length: -2")),
    case("length-not-a-number", req("POST / HTTP/1.1", "Content-Length: 2x", body=b"hi")),
    case("chunked-bad-size", req("POST / HTTP/1.1", CHUNKED, body=b"zz\r\nhi\r\n0\r\n\r\n")),
    case("chunked-no-crlf-after-data", req("POST / HTTP/1.1", CHUNKED,
                                           body=b"2\r\nhiXX0\r\n\r\n")),
    case("unknown-transfer-coding", req("POST / HTTP/1.1", "Transfer-Encoding: gzip")),
    case("gzip-then-chunked", req("POST / HTTP/1.1", "Transfer-Encoding: gzip, chunked",
                                  body=b"0\r\n\r\n")),
    case("chunked-twice", req("POST / HTTP/1.1", "Transfer-Encoding: chunked, chunked",
                              body=b"0\r\n\r\n")),
    case("body-too-large", ka("POST / HTTP/1.1", "Content-Length: 20", body=b"x" * 20),
         options={"max_request_body_size": 10}),
    case("chunked-too-large", ka("POST / HTTP/1.1", CHUNKED, body=b"14\r\n" + b"x" * 20
                                 + b"\r\n0\r\n\r\n"), options={"max_request_body_size": 10}),
    case("head-too-large", ka("GET / HTTP/1.1", "X-Big: " + "v" * 300),
         options={"max_request_header_size": 200}),
    # -- Expect: 100-continue
    case("expect-length", ka("POST / HTTP/1.1", "Expect: 100-continue", "Content-Length: 3"),
         b"abc"),
    case("expect-chunked", ka("POST / HTTP/1.1", "Expect: 100-continue", CHUNKED),
         b"3\r\nabc\r\n0\r\n\r\n"),
    case("expect-no-body", ka("GET / HTTP/1.1", "Expect: 100-continue")),
    case("expect-http10", req("POST / HTTP/1.0", "Expect: 100-continue", "Content-Length: 3"),
         b"abc"),
    case("expect-other-value", ka("POST / HTTP/1.1", "Expect: something",
                                  "Content-Length: 3", body=b"abc")),
    # -- pipelined requests, keep-alive and close
    case("pipelined-two", ka("GET /1 HTTP/1.1") + ka("GET /2 HTTP/1.1")),
    case("pipelined-ten", b"".join(ka(f"GET /{i} HTTP/1.1") for i in range(10))),
    case("pipelined-bodies", ka("POST /1 HTTP/1.1", "Content-Length: 3", body=b"abc")
         + ka("POST /2 HTTP/1.1", CHUNKED, body=b"2\r\nde\r\n0\r\n\r\n")
         + ka("GET /3 HTTP/1.1")),
    case("pipelined-head-then-get", ka("HEAD / HTTP/1.1") + ka("GET / HTTP/1.1"),
         methods=("HEAD", "GET")),
    case("pipelined-after-close", req("GET /1 HTTP/1.1") + ka("GET /2 HTTP/1.1")),
    case("pipelined-http10-keepalive", ka("GET /1 HTTP/1.0", "Connection: keep-alive")
         + ka("GET /2 HTTP/1.1")),
    case("pipelined-http10-then-get", ka("GET /1 HTTP/1.0") + ka("GET /2 HTTP/1.1")),
    case("pipelined-gen-then-get", ka("GET /?frame=gen HTTP/1.1") + ka("GET /2 HTTP/1.1")),
    case("pipelined-list-then-get", ka("GET /?frame=list HTTP/1.1") + ka("GET /2 HTTP/1.1")),
    case("pipelined-error-then-get", ka("GET /?status=500 HTTP/1.1") + ka("GET /2 HTTP/1.1")),
    case("pipelined-bad-then-get", ka("GET / HTTP/1.1", "X-Bad") + ka("GET /2 HTTP/1.1")),
    case("pipelined-get-then-bad", ka("GET /1 HTTP/1.1") + ka("get / HTTP/1.1")),
    case("pipelined-too-large-then-get", ka("POST / HTTP/1.1", "Content-Length: 20",
                                            body=b"x" * 20) + ka("GET /2 HTTP/1.1"),
         options={"max_request_body_size": 10}),
    case("pipelined-connection-close-token", ka("GET /1 HTTP/1.1", "Connection: foo, close")
         + ka("GET /2 HTTP/1.1")),
    case("pipelined-keepalive-token-http11", ka("GET /1 HTTP/1.1", "Connection: keep-alive")
         + ka("GET /2 HTTP/1.1")),
    # -- proxied
    case("proxied", req("GET / HTTP/1.1", "X-Forwarded-For: 192.0.2.1"),
         options={"trusted_proxy": "127.0.0.1", "trusted_proxy_headers": "x-forwarded-for"}),
    case("proxied-pipelined", ka("GET /1 HTTP/1.1", "X-Forwarded-For: 192.0.2.1")
         + ka("GET /2 HTTP/1.1", "X-Forwarded-For: 192.0.2.2", "X-Forwarded-Proto: https"),
         options=XFF),
    case("proxied-http10", req("GET / HTTP/1.0", "X-Forwarded-For: 192.0.2.1"), options=XFF),
    case("proxied-post", ka("POST / HTTP/1.1", "X-Forwarded-For: 192.0.2.1",
                            "Content-Length: 2", body=b"hi"), options=XFF),
    case("proxied-chain", ka("GET / HTTP/1.1", "X-Forwarded-For: 192.0.2.1, 198.51.100.2"),
         options=dict(XFF, trusted_proxy_count=2)),
    case("proxied-forwarded", ka("GET / HTTP/1.1", "Forwarded: for=192.0.2.1;proto=https"),
         options={"trusted_proxy": "*", "trusted_proxy_headers": "forwarded"}),
    case("proxied-untrusted-peer", ka("GET / HTTP/1.1", "X-Forwarded-For: 192.0.2.1"),
         options=dict(XFF, trusted_proxy="10.9.9.9")),
    case("proxied-malformed", ka("GET / HTTP/1.1", "X-Forwarded-Proto: gopher")
         + ka("GET /2 HTTP/1.1"), options=XFF),
]


def test_enough_cases_and_every_difference_is_one():
    assert len(CASES) >= 100
    assert set(DIFFERENT) <= {c.id for c in CASES}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("options, parts, methods", CASES)
def test_same_as_waitress(request, twin_servers, options, parts, methods):
    maitre_port, waitress_port = twin_servers(**BASE, **options)
    if waitress_port is None:
        pytest.skip("waitress is not installed")
    got = converse(maitre_port, parts, methods)
    twin = converse(waitress_port, parts, methods)
    different = DIFFERENT.get(request.node.callspec.id)
    assert (str(got), str(twin)) == (different[:2] if different else (str(twin), str(twin)))
    for mine, theirs in zip(got.replies, twin.replies):
        if mine.status != 200 or theirs.status != 200 or mine.framing.startswith("none"):
            continue
        a, b = mine.answer, theirs.answer
        assert set(a.keys) == set(b.keys) - DELIBERATE_KEYS
        assert a.request_body == b.request_body
        for key in COMPARED:
            assert a[key] == b[key], (key, a.env, b.env)
        http = sorted(k for k in b.env if k.startswith("HTTP_"))
        assert sorted(k for k in a.env if k.startswith("HTTP_")) == http
        for key in http:
            assert a[key] == b[key], key
