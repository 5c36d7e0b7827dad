"""Raw requests and what maitre must do with each, for tests/test_corpus.py.

Every case is sent on its own connection to a real server whose app echoes the
request body.  ``status`` is the status of each response, in order; ``calls`` how
many requests reach the app; ``closed`` whether the server then closes the
connection (if not, the connection must serve another request); ``body`` what the
app's echo of the last request's body is.  A refused case names its ``source``:
the RFC rule, or the CVE of another server that got it wrong (each a way to make a
proxy and the server read the same bytes as different requests, or to tie the
server up).  ``options`` are server options for that case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Tuple, Union


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes
    status: Tuple[int, ...]
    calls: int
    closed: bool
    source: str = ""
    body: bytes = b""
    options: Dict[str, int] = field(default_factory=dict)


def req(line: str, *headers: str, body: Union[bytes, str] = b"", host: bool = True) -> bytes:
    """A request: the line, ``Host: x`` for HTTP/1.1 unless ``host`` is false, the headers."""
    lines = [line]
    if host and line.endswith("HTTP/1.1"):
        lines.append("Host: x")
    lines += headers
    if isinstance(body, str):
        body = body.encode("latin-1")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def post(*headers: str, body: Union[bytes, str] = b"") -> bytes:
    return req("POST /echo HTTP/1.1", *headers, body=body)


def chunked(chunks: Union[bytes, str], *headers: str) -> bytes:
    return post("Transfer-Encoding: chunked", *headers, body=chunks)


CASES: List[Case] = []


def ok(id: str, data: bytes, body: bytes = b"", closed: bool = False, **options: int) -> None:
    """A valid request: one 200, the app called once."""
    CASES.append(Case(id, data, (200,), 1, closed, body=body, options=options))


def refused(id: str, data: bytes, source: str, status: int = 400, **options: int) -> None:
    """A request refused before the app: one ``status``, then the connection closes."""
    assert source, id
    CASES.append(Case(id, data, (status,), 0, True, source=source, options=options))


# ----------------------------------------------------------------- valid requests

ok("get-origin-form", req("GET / HTTP/1.1"))
ok("get-path-query", req("GET /a/b?x=1&y=%20 HTTP/1.1"))
ok("get-fragment", req("GET /a#frag HTTP/1.1"))
ok("get-raw-utf8-target", req("GET /caf\u00c3\u00a9 HTTP/1.1"))
ok("get-unusual-target-chars", req("GET /{a}|b^`c HTTP/1.1"))
ok("http10-no-host-closes", req("GET / HTTP/1.0"), closed=True)
ok("http10-keep-alive", req("GET / HTTP/1.0", "Connection: keep-alive"))
ok("http11-connection-close", req("GET / HTTP/1.1", "Connection: close"), closed=True)
ok("absolute-form", req("GET http://example.com/p?q HTTP/1.1"))
ok("absolute-form-https-upper", req("GET HTTPS://EXAMPLE.COM:8443 HTTP/1.1"))
ok("absolute-form-ipv6", req("GET http://[2001:db8::1]:80/ HTTP/1.1"))
ok("options-asterisk", req("OPTIONS * HTTP/1.1"))
ok("options-origin", req("OPTIONS /p HTTP/1.1"))
ok("connect-authority", req("CONNECT example.com:443 HTTP/1.1"))
ok("extension-method", req("PROPFIND /dav HTTP/1.1"))
ok("method-with-dash", req("M-SEARCH /upnp HTTP/1.1"))
ok("host-with-port", req("GET / HTTP/1.1", "Host: example.com:8080", host=False))
ok("host-ipv6", req("GET / HTTP/1.1", "Host: [::1]:8080", host=False))
ok("host-empty", req("GET / HTTP/1.1", "Host:", host=False))
ok("host-reg-name-chars", req("GET / HTTP/1.1", "Host: a_b-c~d%41.example.", host=False))
ok("header-value-obs-text", req("GET / HTTP/1.1", "X-Latin: caf\u00e9"))
ok("header-value-tab", req("GET / HTTP/1.1", "X-Tab: a\tb"))
ok("header-value-empty", req("GET / HTTP/1.1", "X-Empty:"))
ok("header-name-tchars", req("GET / HTTP/1.1", "X-!#$%&'*+.^_`|~: 1"))
ok("header-repeated", req("GET / HTTP/1.1", "Accept: a", "accept: b"))
ok("header-ows", req("GET / HTTP/1.1", "X-Pad: \t v \t"))
ok("leading-empty-lines", b"\r\n\r\n" + req("GET / HTTP/1.1"))
ok("content-length", post("Content-Length: 5", body="hello"), body=b"hello")
ok("content-length-zero", post("Content-Length: 0"))
ok("content-length-leading-zeros", post("Content-Length: 005", body="hello"), body=b"hello")
ok("content-length-ows", post("Content-Length: \t5 ", body="hello"), body=b"hello")
ok("chunked", chunked("5\r\nhello\r\n0\r\n\r\n"), body=b"hello")
ok("chunked-upper-case-coding", post("Transfer-Encoding: CHUNKED", body="1\r\nz\r\n0\r\n\r\n"),
   body=b"z")
ok("chunked-empty-list-elements", post("Transfer-Encoding: , chunked", body="1\r\nz\r\n0\r\n\r\n"),
   body=b"z")
ok("chunked-hex-sizes", chunked("a\r\n0123456789\r\nB\r\n0123456789A\r\n0\r\n\r\n"),
   body=b"0123456789" + b"0123456789A")
ok("chunked-leading-zero-size", chunked("0005\r\nhello\r\n000\r\n\r\n"), body=b"hello")
ok("chunked-extensions", chunked('5;a=b;c="d \\" e";f\r\nhello\r\n0;end\r\n\r\n'),
   body=b"hello")
ok("chunked-extension-bws", chunked("5 ; a = b\r\nhello\r\n0\r\n\r\n"), body=b"hello")
ok("chunked-trailers", chunked("5\r\nhello\r\n0\r\nX-T: 1\r\nY:\r\n\r\n"), body=b"hello")
ok("chunked-trailer-claims-length", chunked("5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"),
   body=b"hello")
ok("chunked-many-small-chunks", chunked("1\r\na\r\n" * 200 + "0\r\n\r\n"), body=b"a" * 200)
ok("expect-continue-chunked", chunked("2\r\nok\r\n0\r\n\r\n", "Expect: 100-continue"), body=b"ok")
ok("request-line-at-limit", req("GET /" + "a" * (8190 - 14) + " HTTP/1.1"))
ok("headers-at-limit", req("GET / HTTP/1.1", *[f"X-{i}: v" for i in range(999)]))
ok("body-at-limit", post("Content-Length: 10", body="0123456789"), body=b"0123456789",
   max_request_body_size=10)
ok("extensions-within-budget", chunked(("1;e=" + "x" * 1000 + "\r\nz\r\n") * 15 + "0\r\n\r\n"),
   body=b"z" * 15)
CASES.append(Case(
    "pipelined-two", req("GET /a HTTP/1.1") + post("Content-Length: 2", body="hi"),
    (200, 200), 2, False, body=b"hi",
))

# ----------------------------------------------------------------- request line

refused("relative-target", req("GET foo HTTP/1.1"), "RFC 9112 3.2: no form allows a relative "
        "target (issue 14: it reached the app)")
refused("relative-dot-target", req("GET ../etc/passwd HTTP/1.1"), "RFC 9112 3.2")
refused("query-only-target", req("GET ?q=1 HTTP/1.1"), "RFC 9112 3.2.1")
refused("asterisk-on-get", req("GET * HTTP/1.1"), "RFC 9112 3.2.4: asterisk-form is for "
        "OPTIONS only (issue 14: it reached the app)")
refused("asterisk-on-m-search", req("M-SEARCH * HTTP/1.1"), "RFC 9112 3.2.4")
refused("asterisk-with-more", req("OPTIONS *x HTTP/1.1"), "RFC 9112 3.2.4")
refused("authority-on-get", req("GET example.com:80 HTTP/1.1"), "RFC 9112 3.2.3: "
        "authority-form is for CONNECT only (issue 14: it reached the app)")
refused("connect-origin-form", req("CONNECT / HTTP/1.1"), "RFC 9112 3.2.3")
refused("connect-no-port", req("CONNECT example.com HTTP/1.1"), "RFC 9112 3.2.3: "
        "uri-host \":\" port")
refused("connect-userinfo", req("CONNECT user@example.com:443 HTTP/1.1"), "RFC 9112 3.2.3")
refused("absolute-form-ftp", req("GET ftp://example.com/ HTTP/1.1"), "RFC 9112 3.2.2: an "
        "origin server serves http and https URIs")
refused("absolute-form-no-authority", req("GET http:/p HTTP/1.1"), "RFC 9110 4.2.1: an http "
        "URI has a host")
refused("absolute-form-empty-host", req("GET http:///p HTTP/1.1"), "RFC 9110 4.2.1")
refused("absolute-form-userinfo", req("GET http://user:pw@example.com/ HTTP/1.1"),
        "RFC 9110 4.2.4: userinfo in an http URI is an error")
refused("double-space-after-method", req("GET  / HTTP/1.1"), "RFC 9112 3: single SP")
refused("double-space-before-version", req("GET /  HTTP/1.1"), "RFC 9112 3: single SP")
refused("tab-separator", req("GET\t/ HTTP/1.1"), "RFC 9112 3: SP, not HTAB")
refused("leading-space", req(" GET / HTTP/1.1"), "RFC 9112 2.2: whitespace before the "
        "request line")
refused("trailing-space", req("GET / HTTP/1.1 "), "RFC 9112 3")
refused("space-in-target", req("GET /a b HTTP/1.1"), "RFC 9112 3.2: no whitespace in a target")
refused("nul-in-target", req("GET /a\x00b HTTP/1.1"), "RFC 9110 5.5: NUL")
refused("del-in-target", req("GET /a\x7fb HTTP/1.1"), "RFC 3986 2: not a URI character")
refused("control-in-target", req("GET /a\x01b HTTP/1.1"), "RFC 3986 2")
refused("lowercase-version", req("GET / http/1.1"), "RFC 9112 2.3: HTTP-name is case-sensitive")
ok("version-1-2", req("GET / HTTP/1.2", "Host: x"))  # RFC 9110 2.5: answered as 1.1
refused("version-1-2-no-host", req("GET / HTTP/1.2"), "RFC 9110 2.5: 1.1's rules, so Host "
        "is required")
refused("version-2", req("GET / HTTP/2.0", "Host: x"), "RFC 9110 15.6.6: another major "
        "version", 505)
refused("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "RFC 9113 3.4: prior "
        "knowledge HTTP/2 to an HTTP/1.1 server", 505)
refused("version-0-9", b"GET /\r\n\r\n", "RFC 9112 2.3: no HTTP/0.9")
refused("version-garbage", req("GET / HTTP/1.1x"), "RFC 9112 3")
refused("lowercase-method", req("get / HTTP/1.1"), "RFC 9110 9.1: methods are case-sensitive "
        "(as waitress)")
refused("method-with-delimiter", req("GE(T / HTTP/1.1"), "RFC 9110 5.6.2: a method is a token")
refused("no-target", req("GET HTTP/1.1"), "RFC 9112 3")
refused("request-line-over-limit", req("GET /" + "a" * (8190 - 13) + " HTTP/1.1"),
        "max_request_line; RFC 9110 15.5.15 (414)", 414)
refused("request-line-never-ends", b"GET /" + b"a" * 9000, "max_request_line: refused "
        "before the line ends", 414)
refused("request-line-over-small-limit", req("GET /" + "a" * 100 + " HTTP/1.1"),
        "max_request_line", 414, max_request_line=64)
refused("empty-lines-flood", b"\r\n" * 100 + req("GET / HTTP/1.1"), "RFC 9112 2.2: a few "
        "empty lines may be ignored; not a stream of them")

# ----------------------------------------------------------------- line endings

refused("bare-lf-line-endings", b"GET / HTTP/1.1\nHost: x\n\n", "CVE-2019-16785 (waitress: "
        "LF-only line endings); CVE-2022-32214 (Node.js)")
refused("bare-lf-one-header", b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", "CVE-2019-16785")
refused("bare-lf-end-of-head", b"GET / HTTP/1.1\r\nHost: x\r\n\n", "CVE-2019-16785")
refused("bare-cr-line-ending", b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", "CVE-2023-30589 "
        "(Node.js: bare CR as a line end); RFC 9112 2.2")
refused("bare-cr-in-value", req("GET / HTTP/1.1", "X: a\rb"), "RFC 9110 5.5: CR in a value")
refused("bare-cr-in-request-line", b"GET / HTTP/1.1\rHost: x\r\n\r\n", "RFC 9112 2.2")
refused("cr-cr-lf", b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n", "RFC 9112 2.2")

# ----------------------------------------------------------------- header fields

refused("space-before-colon", req("GET / HTTP/1.1", "X-A : 1"), "RFC 9112 5.1; CVE-2019-16869 "
        "(Netty: 'Transfer-Encoding : chunked')")
refused("space-before-colon-te", post("Transfer-Encoding : chunked", "Content-Length: 3",
        body="abc"), "CVE-2019-16869 (Netty)")
refused("tab-before-colon", req("GET / HTTP/1.1", "Host\t: x", host=False), "RFC 9112 5.1")
refused("obs-fold", req("GET / HTTP/1.1", "X-A: 1", " folded"), "RFC 9112 5.2; "
        "CVE-2022-32215 (Node.js: multi-line Transfer-Encoding)")
refused("obs-fold-te", post("Transfer-Encoding:", " chunked", body="0\r\n\r\n"), "RFC 9112 5.2; "
        "CVE-2022-32215")
refused("space-before-first-header", req("GET / HTTP/1.1", " Content-Length: 0", host=False),
        "RFC 9112 2.2; CVE-2024-27982 (Node.js: space before Content-Length)")
refused("leading-space-te-then-cl", post(" Transfer-Encoding: chunked", "Content-Length: 3",
        body="abc"), "CVE-2020-7238 (Netty: ' Transfer-Encoding' and a Content-Length)")
refused("empty-header-name", req("GET / HTTP/1.1", ": x"), "CVE-2023-25725 (HAProxy: empty "
        "header names)")
refused("header-without-colon", req("GET / HTTP/1.1", "Content-Length 5"), "CVE-2019-20444 "
        "(Netty: a header line without a colon)")
refused("space-in-header-name", req("GET / HTTP/1.1", "X A: 1"), "RFC 9110 5.1: a name is a token")
refused("delimiter-in-header-name", req("GET / HTTP/1.1", "X(A): 1"), "RFC 9110 5.6.2")
refused("non-ascii-header-name", req("GET / HTTP/1.1", "caf\u00e9: 1"), "RFC 9110 5.6.2")
refused("nul-in-header-name", req("GET / HTTP/1.1", "X\x00: 1"), "RFC 9110 5.5")
refused("nul-in-header-value", req("GET / HTTP/1.1", "X: a\x00b"), "RFC 9110 5.5: NUL")
refused("del-in-header-value", req("GET / HTTP/1.1", "X: a\x7fb"), "RFC 9110 5.5")
refused("vt-in-header-value", req("GET / HTTP/1.1", "X: a\x0bb"), "RFC 9110 5.5; "
        "CVE-2019-16789 (waitress: special whitespace)")
refused("esc-in-header-value", req("GET / HTTP/1.1", "X: \x1b[31m"), "RFC 9110 5.5")
refused("whitespace-then-invalid-char", req("GET / HTTP/1.1", "X: a" + " \t" * 4000 + "\x7f"),
        "CVE-2020-5236 (waitress: catastrophic backtracking on header values)")
refused("header-count-over-limit", req("GET / HTTP/1.1", *[f"X-{i}: v" for i in range(1000)]),
        "max_request_headers (1000); RFC 6585 5 (431)", 431)
refused("header-count-over-small-limit", req("GET / HTTP/1.1", "A: 1", "B: 2", "C: 3"),
        "max_request_headers", 431, max_request_headers=3)
refused("header-block-over-size", req("GET / HTTP/1.1", "X: " + "v" * 2000),
        "max_request_header_size; RFC 6585 5 (431)", 431, max_request_header_size=1024)

# ----------------------------------------------------------------- Host

refused("http11-without-host", req("GET / HTTP/1.1", host=False), "RFC 9112 3.2: a 1.1 "
        "request carries Host")
refused("two-hosts", req("GET / HTTP/1.1", "Host: a", "Host: b", host=False), "RFC 9110 7.2: "
        "one Host (a cache and the app could pick different ones)")
refused("two-same-hosts", req("GET / HTTP/1.1", "Host: a", "host: a", host=False), "RFC 9110 7.2")
refused("host-with-space", req("GET / HTTP/1.1", "Host: a b", host=False), "RFC 9110 7.2: "
        "an invalid Host value gets 400")
refused("host-with-slash", req("GET / HTTP/1.1", "Host: evil.example/x", host=False),
        "RFC 9110 7.2 (host header injection into rebuilt URLs)")
refused("host-with-userinfo", req("GET / HTTP/1.1", "Host: user@example.com", host=False),
        "RFC 9110 7.2")
refused("host-bad-port", req("GET / HTTP/1.1", "Host: example.com:80x", host=False),
        "RFC 9110 7.2")
refused("host-two-ports", req("GET / HTTP/1.1", "Host: example.com:80:81", host=False),
        "RFC 9110 7.2")
refused("host-unclosed-ipv6", req("GET / HTTP/1.1", "Host: [::1", host=False), "RFC 3986 3.2.2")
refused("host-bad-escape", req("GET / HTTP/1.1", "Host: ex%zzample.com", host=False),
        "RFC 3986 3.2.2")
refused("host-raw-utf8", req("GET / HTTP/1.1", "Host: caf\u00c3\u00a9.example", host=False),
        "RFC 3986 3.2.2: a reg-name is ASCII (IDNs travel as punycode)")
refused("http10-invalid-host", req("GET / HTTP/1.0", "Host: a b"), "RFC 9110 7.2")

# ----------------------------------------------------------------- Content-Length

refused("two-content-lengths", post("Content-Length: 3", "Content-Length: 5", body="abcde"),
        "CVE-2019-16792 (waitress: two Content-Lengths); CVE-2019-20445 (Netty)")
refused("two-same-content-lengths", post("Content-Length: 3", "Content-Length: 3", body="abc"),
        "RFC 9112 6.3: a repeated Content-Length is refused, not merged")
refused("content-length-list", post("Content-Length: 3, 3", body="abc"), "RFC 9112 6.3")
refused("content-length-plus", post("Content-Length: +3", body="abc"), "CVE-2022-24761 "
        "(waitress: int() took '+3'); CVE-2021-32715 (hyper)")
refused("content-length-minus", post("Content-Length: -1", body="abc"), "CVE-2022-24761")
refused("content-length-underscore", post("Content-Length: 1_0", body="abc"), "CVE-2022-24761 "
        "(int() takes '1_0')")
refused("content-length-hex", post("Content-Length: 0x3", body="abc"), "RFC 9110 8.6: 1*DIGIT")
refused("content-length-empty", post("Content-Length:", body="abc"), "RFC 9110 8.6")
refused("content-length-space-inside", post("Content-Length: 1 0", body="abc"), "RFC 9110 8.6")
refused("content-length-unicode-digit", post("Content-Length: \u00b3", body="abc"),
        "RFC 9110 8.6: ASCII digits only")
refused("content-length-overflow", post("Content-Length: 99999999999999999999"),
        "RFC 9110 8.6: a length that overflows")
refused("body-over-limit", post("Content-Length: 11", body="0123456789A"),
        "max_request_body_size (413)", 413, max_request_body_size=10)

# ----------------------------------------------------------------- Transfer-Encoding

refused("te-and-cl", post("Content-Length: 4", "Transfer-Encoding: chunked",
        body="0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"), "RFC 9112 6.3: the "
        "classic CL.TE smuggling")
refused("cl-and-te", post("Transfer-Encoding: chunked", "Content-Length: 30",
        body="0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"), "RFC 9112 6.3: TE.CL smuggling")
refused("te-gzip", post("Transfer-Encoding: gzip", body="abc"), "RFC 9112 6.1: a coding "
        "maitre does not implement (501, as waitress)", 501)
refused("te-gzip-chunked", post("Transfer-Encoding: gzip, chunked", body="0\r\n\r\n"),
        "CVE-2019-16786 (waitress: only one TE value looked at)", 501)
refused("te-chunked-not-last", post("Transfer-Encoding: chunked, gzip", "Content-Length: 3",
        body="abc"), "RFC 9112 6.3: chunked must be final; CVE-2024-6827 (gunicorn fell back "
        "to Content-Length)", 501)
refused("te-identity", post("Transfer-Encoding: identity", body="abc"), "RFC 9112 6.1: "
        "identity is gone (RFC 7230)", 501)
refused("te-two-lines", post("Transfer-Encoding: gzip", "Transfer-Encoding: chunked",
        body="0\r\n\r\n"), "CVE-2021-21299 (hyper: several TE lines read as chunked); "
        "CVE-2024-1135 (gunicorn: conflicting TE headers)", 501)
refused("te-chunked-twice", post("Transfer-Encoding: chunked, chunked", body="0\r\n\r\n"),
        "RFC 9112 7: chunked is applied once; CVE-2024-1135 (gunicorn)")
refused("te-chunked-twice-lines", post("Transfer-Encoding: chunked", "Transfer-Encoding: chunked",
        body="0\r\n\r\n"), "RFC 9112 7")
refused("te-empty", post("Transfer-Encoding:", "Content-Length: 3", body="abc"),
        "RFC 9112 6.1: Transfer-Encoding with no coding")
refused("te-vertical-tab", post("Transfer-Encoding: \x0bchunked", body="0\r\n\r\n"),
        "CVE-2019-16789 (waitress: special whitespace in TE)")
refused("te-nbsp", post("Transfer-Encoding: chunked\u00a0", "Content-Length: 3", body="abc"),
        "CVE-2019-16789 (waitress stripped \\x85 and \\xa0 like spaces)", 501)
refused("te-with-parameter", post("Transfer-Encoding: chunked;q=1", body="0\r\n\r\n"),
        "RFC 9112 7: chunked takes no parameters", 501)
refused("te-quoted", post('Transfer-Encoding: "chunked"', body="0\r\n\r\n"), "RFC 9112 6.1", 501)
refused("te-xchunked", post("Transfer-Encoding: xchunked", "Content-Length: 3", body="abc"),
        "CVE-2024-6827 (gunicorn: unknown coding fell back to Content-Length)", 501)
refused("te-http10", req("POST /echo HTTP/1.0", "Transfer-Encoding: chunked",
        body="0\r\n\r\n"), "RFC 9112 6.1: TE in an HTTP/1.0 request is faulty framing")

# ----------------------------------------------------------------- chunked bodies

refused("chunk-size-missing", chunked("\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1: 1*HEXDIG")
refused("chunk-size-not-hex", chunked("zz\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1")
refused("chunk-size-0x", chunked("0x5\r\nhello\r\n0\r\n\r\n"), "CVE-2022-24761 (waitress: "
        "int(size, 16) takes '0x5')")
refused("chunk-size-plus", chunked("+5\r\nhello\r\n0\r\n\r\n"), "CVE-2022-24761")
refused("chunk-size-minus", chunked("-5\r\nhello\r\n0\r\n\r\n"), "CVE-2022-24761")
refused("chunk-size-underscore", chunked("0_5\r\nhello\r\n0\r\n\r\n"), "CVE-2022-24761")
refused("chunk-size-leading-space", chunked(" 5\r\nhello\r\n0\r\n\r\n"), "CVE-2022-24761")
refused("chunk-size-trailing-junk", chunked("5 junk\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1 "
        "(issue 13: '3 junk' was taken as 3)")
refused("chunk-size-overflow", chunked("10000000000000005\r\nhello\r\n0\r\n\r\n"),
        "CVE-2021-32714 (hyper: chunk size overflow)")
refused("chunk-size-bare-lf", chunked("5\nhello\r\n0\r\n\r\n"), "CVE-2019-16785; RFC 9112 7.1")
refused("chunk-ext-bare-lf", chunked("5;a=b\nhello\r\n0\r\n\r\n"), "CVE-2024-52304 (aiohttp: "
        "LF in chunk extensions); CVE-2021-41136 (Puma)")
refused("chunk-data-too-long", chunked("5\r\nhello!!\r\n0\r\n\r\n"), "RFC 9112 7.1: CRLF "
        "after the data")
refused("chunk-data-bare-lf", chunked("5\r\nhello\n0\r\n\r\n"), "RFC 9112 7.1")
refused("chunk-ext-no-name", chunked("5;\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1; "
        "CVE-2022-24761 (waitress took any extension)")
refused("chunk-ext-no-value", chunked("5;a=\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1")
refused("chunk-ext-nul", chunked("5;a\x00\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1")
refused("chunk-ext-unclosed-quote", chunked('5;a="x\r\nhello\r\n0\r\n\r\n'), "RFC 9110 5.6.4")
refused("chunk-ext-line-too-long", chunked("5;a=" + "b" * 5000 + "\r\nhello\r\n0\r\n\r\n"),
        "a chunk line is bounded (4 KiB)")
refused("chunk-ext-over-budget", chunked(("1;e=" + "x" * 1000 + "\r\nz\r\n") * 17 + "0\r\n\r\n"),
        "CVE-2023-39326 (Go), CVE-2024-22019 (Node.js), CVE-2024-21647 (Puma): unbounded "
        "chunk extensions")
refused("trailer-without-colon", chunked("5\r\nhello\r\n0\r\nNo colon\r\n\r\n"),
        "CVE-2023-45648 (Tomcat: invalid trailer headers)")
refused("trailer-space-before-colon", chunked("5\r\nhello\r\n0\r\nX : y\r\n\r\n"),
        "RFC 9112 5.1")
refused("trailer-obs-fold", chunked("5\r\nhello\r\n0\r\nX: y\r\n z\r\n\r\n"), "RFC 9112 5.2")
refused("trailer-nul", chunked("5\r\nhello\r\n0\r\nX: a\x00b\r\n\r\n"), "RFC 9110 5.5")
refused("trailers-over-budget",
        chunked("5\r\nhello\r\n0\r\n" + "".join(f"T{i}: {'v' * 1000}\r\n" for i in range(17))
                + "\r\n"),
        "CVE-2023-46589 (Tomcat: trailers past the header limit)")
refused("last-chunk-bare-lf", chunked("5\r\nhello\r\n0\n\r\n"), "RFC 9112 7.1")
refused("final-crlf-bare-lf", chunked("5\r\nhello\r\n0\r\n\n"), "RFC 9112 7.1")
refused("chunked-body-over-limit", chunked("b\r\n0123456789A\r\n0\r\n\r\n"),
        "max_request_body_size (413)", 413, max_request_body_size=10)

# ----------------------------------------------------------------- after a valid request

CASES.append(Case(
    "valid-then-smuggled-cl-te",
    req("GET /a HTTP/1.1") + post("Content-Length: 4", "Transfer-Encoding: chunked",
                                  body="0\r\n\r\n"),
    (200, 400), 1, True, source="RFC 9112 6.3: the second request of a pipeline is refused "
    "and the connection closes; CVE-2022-22720 (Apache did not close on such errors)",
))
CASES.append(Case(
    "valid-then-relative", req("GET /a HTTP/1.1") + req("GET b HTTP/1.1"),
    (200, 400), 1, True, source="RFC 9112 3.2",
))
CASES.append(Case(
    "valid-then-bare-lf", req("GET /a HTTP/1.1") + b"GET /b HTTP/1.1\nHost: x\n\n",
    (200, 400), 1, True, source="CVE-2019-16785",
))
