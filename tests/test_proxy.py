"""Proxy headers (``trusted_proxy*``, ``clear_untrusted_proxy_headers``,
``log_untrusted_proxy_headers``) over real sockets, table-driven.

Each case sends one raw request to maitre and checks the environ keys a proxy can change
against the values written in the table; where waitress is installed the same request
goes to a real waitress with the same options, and both must agree on the status and on
every one of those keys (so the table's values are waitress's too).
"""

from __future__ import annotations

import logging
import warnings

import pytest

from conftest import Conn
from twins import CLIENT_PORT, SERVER_PORT, exchange, start_waitress, twin_servers, environ_app  # noqa: F401

try:
    import waitress  # noqa: F401

    HAVE_WAITRESS = True
except ImportError:  # pragma: no cover
    HAVE_WAITRESS = False

PROXY_KEYS = (
    "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_PORT", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT",
    "wsgi.url_scheme", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_BY", "HTTP_FORWARDED",
)

# Both servers get the same SERVER_NAME so it can be compared.
BASE = {"server_name": "srv.invalid", "threads": 2}
XFWD = "x-forwarded-for x-forwarded-host x-forwarded-proto x-forwarded-port x-forwarded-by"
ALL_X = {"trusted_proxy": "127.0.0.1", "trusted_proxy_headers": XFWD}
FWD = {"trusted_proxy": "*", "trusted_proxy_headers": "forwarded"}
ABSENT = None  # the key is not in the environ

SIX = [
    "X-Forwarded-For: 192.0.2.1",
    "X-Forwarded-Host: example.com",
    "X-Forwarded-Proto: https",
    "X-Forwarded-Port: 8443",
    "X-Forwarded-By: 203.0.113.9",
    "Forwarded: for=192.0.2.2",
]
NO_PROXY_KEYS = {
    "HTTP_X_FORWARDED_FOR": ABSENT, "HTTP_X_FORWARDED_HOST": ABSENT,
    "HTTP_X_FORWARDED_PROTO": ABSENT, "HTTP_X_FORWARDED_PORT": ABSENT,
    "HTTP_X_FORWARDED_BY": ABSENT, "HTTP_FORWARDED": ABSENT,
}
PEER = {"REMOTE_ADDR": "127.0.0.1", "REMOTE_HOST": "127.0.0.1", "REMOTE_PORT": CLIENT_PORT}
UNTOUCHED = dict(PEER, HTTP_HOST="h", SERVER_NAME="srv.invalid", SERVER_PORT=SERVER_PORT)
UNTOUCHED["wsgi.url_scheme"] = "http"


def case(name, options, headers, status=200, **expect):
    """One row: options, request headers, the status, and expected environ values
    (``ABSENT`` for a key that must not be there); keys are spelt with ``_`` for ``.``."""
    expect = {k.replace("wsgi_url_scheme", "wsgi.url_scheme"): v for k, v in expect.items()}
    return pytest.param(options, headers, status, expect, id=name)


CASES = [
    # -- no trusted proxy: waitress 3 clears every proxy header by default
    case("default-clears-xff", {}, ["X-Forwarded-For: 192.0.2.1"], **UNTOUCHED,
         HTTP_X_FORWARDED_FOR=ABSENT),
    case("default-clears-all-six", {}, SIX, **UNTOUCHED, **NO_PROXY_KEYS),
    case("default-clears-any-case", {}, ["x-FORWARDED-proto: https", "FORWARDED: for=1.2.3.4"],
         **UNTOUCHED, HTTP_X_FORWARDED_PROTO=ABSENT, HTTP_FORWARDED=ABSENT),
    case("no-clear-keeps-all", {"clear_untrusted_proxy_headers": False}, SIX, **UNTOUCHED,
         HTTP_X_FORWARDED_FOR="192.0.2.1", HTTP_FORWARDED="for=192.0.2.2",
         HTTP_X_FORWARDED_BY="203.0.113.9"),
    case("no-clear-repeats-joined", {"clear_untrusted_proxy_headers": "false"},
         ["X-Forwarded-For: 1.1.1.1", "X-Forwarded-For: 2.2.2.2"], **UNTOUCHED,
         HTTP_X_FORWARDED_FOR="1.1.1.1, 2.2.2.2"),
    # -- untrusted peers
    case("untrusted-peer-cleared", {"trusted_proxy": "10.1.2.3", "trusted_proxy_headers": XFWD},
         SIX, **UNTOUCHED, **NO_PROXY_KEYS),
    case("untrusted-peer-kept-not-used",
         {"trusted_proxy": "10.1.2.3", "trusted_proxy_headers": XFWD,
          "clear_untrusted_proxy_headers": False},
         ["X-Forwarded-For: 192.0.2.1", "X-Forwarded-Proto: https"], **UNTOUCHED,
         HTTP_X_FORWARDED_FOR="192.0.2.1", HTTP_X_FORWARDED_PROTO="https"),
    case("untrusted-peer-malformed-ignored",
         {"trusted_proxy": "10.1.2.3", "trusted_proxy_headers": XFWD},
         ["X-Forwarded-Proto: gopher"], **UNTOUCHED, HTTP_X_FORWARDED_PROTO=ABSENT),
    # -- X-Forwarded-For
    case("xff-one", ALL_X, ["X-Forwarded-For: 192.0.2.1"], REMOTE_ADDR="192.0.2.1",
         REMOTE_HOST="192.0.2.1", REMOTE_PORT=CLIENT_PORT, HTTP_X_FORWARDED_FOR="192.0.2.1"),
    case("xff-chain-count-1", ALL_X, ["X-Forwarded-For: 192.0.2.1, 198.51.100.2, 203.0.113.3"],
         REMOTE_ADDR="203.0.113.3", HTTP_X_FORWARDED_FOR="203.0.113.3"),
    case("xff-chain-count-2", dict(ALL_X, trusted_proxy_count=2),
         ["X-Forwarded-For: 192.0.2.1, 198.51.100.2, 203.0.113.3"],
         REMOTE_ADDR="198.51.100.2", HTTP_X_FORWARDED_FOR="198.51.100.2, 203.0.113.3"),
    case("xff-chain-count-0-whole", dict(ALL_X, trusted_proxy_count=0),
         ["X-Forwarded-For: 192.0.2.1, 198.51.100.2"], REMOTE_ADDR="192.0.2.1",
         HTTP_X_FORWARDED_FOR="192.0.2.1, 198.51.100.2"),
    case("xff-count-beyond-chain", dict(ALL_X, trusted_proxy_count="3"),
         ["X-Forwarded-For: 192.0.2.1, 198.51.100.2"], REMOTE_ADDR="192.0.2.1"),
    case("xff-repeated-headers", dict(ALL_X, trusted_proxy_count=2),
         ["X-Forwarded-For: 192.0.2.1", "X-Forwarded-For: 198.51.100.2, 203.0.113.3"],
         REMOTE_ADDR="198.51.100.2", HTTP_X_FORWARDED_FOR="198.51.100.2, 203.0.113.3"),
    case("xff-with-port", ALL_X, ["X-Forwarded-For: 192.0.2.1:4711"], REMOTE_ADDR="192.0.2.1",
         REMOTE_HOST="192.0.2.1", REMOTE_PORT="4711"),
    case("xff-ipv6-bare", ALL_X, ["X-Forwarded-For: 2001:db8::1"], REMOTE_ADDR="2001:db8::1",
         REMOTE_PORT=CLIENT_PORT),
    case("xff-ipv6-quoted-port", ALL_X, ['X-Forwarded-For: "[2001:db8::1]:4711"'],
         REMOTE_ADDR="[2001:db8::1]:4711", REMOTE_PORT=CLIENT_PORT),
    case("xff-quoted", ALL_X, ['X-Forwarded-For: "192.0.2.1"'], REMOTE_ADDR="192.0.2.1"),
    case("xff-unknown", ALL_X, ["X-Forwarded-For: unknown"], REMOTE_ADDR="unknown"),
    case("xff-bad-quote-400", ALL_X, ['X-Forwarded-For: "192.0.2.1'], status=400),
    case("xff-empty-address-500", ALL_X, ['X-Forwarded-For: " "'], status=500),
    # -- X-Forwarded-Host, -Proto, -Port, -By
    case("xfh-alone", ALL_X, ["X-Forwarded-Host: example.com"], HTTP_HOST="example.com",
         SERVER_NAME="example.com", SERVER_PORT=SERVER_PORT, wsgi_url_scheme="http"),
    case("xfh-with-port", ALL_X, ["X-Forwarded-Host: example.com:8443"],
         HTTP_HOST="example.com:8443", SERVER_NAME="example.com", SERVER_PORT="8443"),
    case("xfh-chain", ALL_X, ["X-Forwarded-Host: a.example, b.example"], HTTP_HOST="b.example",
         HTTP_X_FORWARDED_HOST="b.example"),
    case("xfh-ipv6", ALL_X, ["X-Forwarded-Host: [2001:db8::1]"], HTTP_HOST="[2001:db8::1]",
         SERVER_NAME="[2001:db8::1]"),
    case("xfh-latin1", ALL_X, ["X-Forwarded-Host: \xe9xample.com"], HTTP_HOST="\xe9xample.com"),
    case("xfp-https", ALL_X, ["X-Forwarded-Proto: https"], wsgi_url_scheme="https",
         SERVER_PORT="443", HTTP_HOST="h"),
    case("xfp-upper", ALL_X, ["X-Forwarded-Proto: HTTP"], wsgi_url_scheme="http",
         SERVER_PORT="80"),
    case("xfp-quoted", ALL_X, ['X-Forwarded-Proto: "https"'], wsgi_url_scheme="https"),
    case("xfp-unsupported-400", ALL_X, ["X-Forwarded-Proto: ftp"], status=400),
    case("xfp-list-400", ALL_X, ["X-Forwarded-Proto: http, https"], status=400),
    case("xfport-alone", ALL_X, ["X-Forwarded-Port: 8443"], SERVER_PORT="8443", HTTP_HOST="h"),
    case("xfport-list-400", ALL_X, ["X-Forwarded-Port: 80, 81"], status=400),
    case("xfport-with-host", ALL_X, ["X-Forwarded-Host: example.com", "X-Forwarded-Port: 8443"],
         HTTP_HOST="example.com:8443", SERVER_PORT="8443"),
    case("xfport-80-over-https", ALL_X,
         ["X-Forwarded-Host: example.com", "X-Forwarded-Proto: https", "X-Forwarded-Port: 80"],
         HTTP_HOST="example.com:80", SERVER_PORT="80", wsgi_url_scheme="https"),
    case("xfport-443-over-https", ALL_X,
         ["X-Forwarded-Host: example.com", "X-Forwarded-Proto: https", "X-Forwarded-Port: 443"],
         HTTP_HOST="example.com", SERVER_PORT="443"),
    case("xfh-port-beats-xfport", ALL_X,
         ["X-Forwarded-Host: example.com:81", "X-Forwarded-Port: 82"],
         HTTP_HOST="example.com:81", SERVER_PORT="81"),
    case("xfb-trusted-kept", ALL_X, ["X-Forwarded-By: 203.0.113.9"],
         HTTP_X_FORWARDED_BY="203.0.113.9", REMOTE_ADDR="127.0.0.1"),
    case("all-x-together", ALL_X,
         ["X-Forwarded-For: 192.0.2.1:1234", "X-Forwarded-Host: example.com",
          "X-Forwarded-Proto: https", "X-Forwarded-Port: 443", "Forwarded: for=9.9.9.9"],
         REMOTE_ADDR="192.0.2.1", REMOTE_PORT="1234", HTTP_HOST="example.com",
         SERVER_NAME="example.com", SERVER_PORT="443", wsgi_url_scheme="https",
         HTTP_FORWARDED=ABSENT),
    case("only-xfp-trusted-clears-others",
         {"trusted_proxy": "127.0.0.1", "trusted_proxy_headers": "x-forwarded-proto"},
         ["X-Forwarded-Proto: https", "X-Forwarded-For: 192.0.2.1", "X-Forwarded-Host: e.com"],
         wsgi_url_scheme="https", REMOTE_ADDR="127.0.0.1", HTTP_HOST="h",
         HTTP_X_FORWARDED_FOR=ABSENT, HTTP_X_FORWARDED_HOST=ABSENT,
         HTTP_X_FORWARDED_PROTO="https"),
    case("only-xff-trusted-no-clear",
         {"trusted_proxy": "127.0.0.1", "trusted_proxy_headers": ["x-forwarded-for"],
          "clear_untrusted_proxy_headers": False},
         ["X-Forwarded-For: 192.0.2.1", "X-Forwarded-Host: e.com"], REMOTE_ADDR="192.0.2.1",
         HTTP_HOST="h", HTTP_X_FORWARDED_HOST="e.com"),
    case("url-scheme-https-default-port", dict(ALL_X, url_scheme="https"),
         ["X-Forwarded-Host: example.com", "X-Forwarded-Port: 443"], HTTP_HOST="example.com",
         wsgi_url_scheme="https"),
    case("http10-without-host", ALL_X, ["X-Forwarded-Host: example.com"],
         HTTP_HOST="example.com"),
    # -- Forwarded
    case("fwd-for", FWD, ["Forwarded: for=192.0.2.60"], REMOTE_ADDR="192.0.2.60",
         HTTP_FORWARDED="for=192.0.2.60"),
    case("fwd-full", FWD, ['Forwarded: for="[2001:db8::1]:4711";host=example.com;proto=https'],
         REMOTE_ADDR="2001:db8::1", REMOTE_PORT="4711", HTTP_HOST="example.com",
         SERVER_NAME="example.com", SERVER_PORT="443", wsgi_url_scheme="https"),
    case("fwd-two-hops-count-1", FWD,
         ["Forwarded: for=192.0.2.60;proto=http, for=198.51.100.17;host=example.com;proto=https"],
         REMOTE_ADDR="198.51.100.17", wsgi_url_scheme="https",
         HTTP_FORWARDED="for=198.51.100.17;host=example.com;proto=https"),
    case("fwd-two-hops-count-2", dict(FWD, trusted_proxy_count=2),
         ["Forwarded: for=192.0.2.60;proto=http, for=198.51.100.17;host=example.com;proto=https"],
         REMOTE_ADDR="192.0.2.60", wsgi_url_scheme="http", HTTP_HOST="example.com",
         SERVER_PORT="80"),
    case("fwd-repeated-header", dict(FWD, trusted_proxy_count=2),
         ["Forwarded: for=192.0.2.60", "Forwarded: for=198.51.100.17;host=h2"],
         REMOTE_ADDR="192.0.2.60", HTTP_HOST="h2"),
    case("fwd-upper-case-tokens", FWD, ['Forwarded: For=192.0.2.9;Proto=HTTPS;Host="Example.com"'],
         REMOTE_ADDR="192.0.2.9", wsgi_url_scheme="https", HTTP_HOST="example.com"),
    case("fwd-unknown-token", FWD, ["Forwarded: for=192.0.2.9;secret=1"],
         REMOTE_ADDR="192.0.2.9"),
    case("fwd-empty-pairs", FWD, ["Forwarded: for=192.0.2.9;;"], REMOTE_ADDR="192.0.2.9"),
    case("fwd-missing-equals-400", FWD, ["Forwarded: for"], status=400),
    case("fwd-space-around-token-400", FWD, ["Forwarded: for =192.0.2.9"], status=400),
    case("fwd-space-around-value-400", FWD, ["Forwarded: host= e.com"], status=400),
    case("fwd-bad-quote-400", FWD, ['Forwarded: for="192.0.2.9'], status=400),
    case("fwd-unsupported-proto-400", FWD, ["Forwarded: proto=gopher"], status=400),
    case("fwd-ignores-x-forwarded", FWD,
         ["X-Forwarded-For: 192.0.2.1", "X-Forwarded-Proto: https"], **UNTOUCHED,
         HTTP_X_FORWARDED_FOR=ABSENT, HTTP_X_FORWARDED_PROTO=ABSENT),
    case("fwd-no-clear-keeps-x", dict(FWD, clear_untrusted_proxy_headers=False),
         ["X-Forwarded-For: 192.0.2.1", "Forwarded: for=192.0.2.2"], REMOTE_ADDR="192.0.2.2",
         HTTP_X_FORWARDED_FOR="192.0.2.1"),
    case("fwd-host-with-port", FWD, ["Forwarded: host=example.com:8080;proto=https"],
         HTTP_HOST="example.com:8080", SERVER_NAME="example.com", SERVER_PORT="8080",
         wsgi_url_scheme="https"),
    # -- trusted_proxy alone implicitly trusts X-Forwarded-Proto (waitress, deprecated)
    case("implicit-xfp", {"trusted_proxy": "127.0.0.1"},
         ["X-Forwarded-Proto: https", "X-Forwarded-For: 192.0.2.1"], wsgi_url_scheme="https",
         REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=ABSENT),
]


def request_bytes(name: str, headers) -> bytes:
    if name == "http10-without-host":
        lines = ["GET /p?q=1 HTTP/1.0"]
    else:
        lines = ["GET /p?q=1 HTTP/1.1", "Host: h"]
    return ("\r\n".join(lines + list(headers) + ["Connection: close"]) + "\r\n\r\n").encode(
        "latin-1"
    )


def test_table_is_big_enough():
    assert len(CASES) >= 40


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("options, headers, status, expect", CASES)
def test_proxy_case(request, twin_servers, options, headers, status, expect):
    data = request_bytes(request.node.callspec.id, headers)
    maitre_port, waitress_port = twin_servers(**BASE, **options)
    got = exchange(maitre_port, data)
    assert got.status == status, got.body
    for key, value in expect.items():
        assert got[key] == value, (key, got.env)
    if status == 400:
        assert b" malformed." in got.body, got.body
    if waitress_port is None:
        return
    twin = exchange(waitress_port, data)
    assert twin.status == got.status, (twin.body, got.body)
    if status == 400:
        # Both name the header the same way.
        assert got.body.split(b"\r\n\r\n")[1] == twin.body.split(b"\r\n\r\n")[1]
    for key in PROXY_KEYS:
        assert got[key] == twin[key], (key, got.env, twin.env)
    assert sorted(k for k in got.env if k.startswith("HTTP_")) == sorted(
        k for k in twin.env if k.startswith("HTTP_")
    )


# --------------------------------------------------------------------------- logs


def maitre_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "maitre" and r.levelno == logging.WARNING]


def test_log_untrusted_proxy_headers(serve, caplog):
    with caplog.at_level(logging.WARNING, logger="maitre"):
        s = serve(environ_app, log_untrusted_proxy_headers=True)
        got = exchange(s.port, request_bytes("x", ["X-Forwarded-For: 1.2.3.4", "Forwarded: for=x"]))
        assert got.status == 200
        assert got["HTTP_X_FORWARDED_FOR"] is None
    assert "Removed untrusted headers (X-Forwarded-For, Forwarded). maitre recommends these be " \
        "removed upstream." in maitre_warnings(caplog)


def test_untrusted_headers_not_logged_by_default_or_when_absent(serve, caplog):
    with caplog.at_level(logging.WARNING, logger="maitre"):
        s = serve(environ_app)
        assert exchange(s.port, request_bytes("x", ["X-Forwarded-For: 1.2.3.4"])).status == 200
        quiet = serve(environ_app, log_untrusted_proxy_headers=True)
        assert exchange(quiet.port, request_bytes("x", ["X-Other: 1"])).status == 200
    assert not [m for m in maitre_warnings(caplog) if "untrusted" in m]


def test_malformed_header_is_logged_and_connection_stays_usable(serve, caplog):
    with caplog.at_level(logging.WARNING, logger="maitre"):
        s = serve(environ_app, trusted_proxy="127.0.0.1", trusted_proxy_headers="x-forwarded-proto")
        with Conn(s.port) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: ftp\r\n\r\n")
            r = c.read_response()
            assert r.status == 400
            assert r.header("Content-Type") == "text/plain; charset=utf-8"
            assert r.body == (
                b'Bad Request\r\n\r\nHeader "X-Forwarded-Proto" malformed.\r\n\r\n'
                b"(generated by maitre)"
            )
            c.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n\r\n")
            assert c.read_response().status == 200
    assert (
        'Malformed proxy header "X-Forwarded-Proto" from "127.0.0.1": unsupported proto value '
        "value: ftp" in maitre_warnings(caplog)
    )


def test_unknown_forwarded_token_is_logged(serve, caplog):
    with caplog.at_level(logging.WARNING, logger="maitre"):
        s = serve(environ_app, **FWD)
        got = exchange(s.port, request_bytes("x", ["Forwarded: for=1.2.3.4;Secret=x"]))
    assert got["REMOTE_ADDR"] == "1.2.3.4"
    assert "Unknown Forwarded token: secret" in maitre_warnings(caplog)


def test_app_is_not_called_for_a_malformed_header(serve):
    calls = []

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        return environ_app(environ, start_response)

    s = serve(app, **FWD)
    assert exchange(s.port, request_bytes("x", ["Forwarded: proto=gopher"])).status == 400
    assert calls == []


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "options, message",
    [
        ({"trusted_proxy_count": 2}, "trusted_proxy_count has no meaning"),
        ({"trusted_proxy_headers": "x-forwarded-for"}, "trusted_proxy_headers has no meaning"),
        ({"trusted_proxy": "*", "trusted_proxy_headers": "x-forwarded-bogus"},
         "trusted_proxy_headers must be"),
        ({"trusted_proxy": "*", "trusted_proxy_headers": "forwarded x-forwarded-for"},
         "trusted_proxy_headers must be"),
        ({"trusted_proxy": "*", "trusted_proxy_headers": {"Forwarded", "X-Forwarded-Host"}},
         "trusted_proxy_headers must be"),
    ],
)
def test_refused_at_start_like_waitress(options, message):
    import maitre

    with pytest.raises(ValueError, match=message):
        maitre.create_server(environ_app, host="127.0.0.1", port=0, **options)
    if HAVE_WAITRESS:
        with pytest.raises(ValueError):
            start_waitress(environ_app, **options)


def test_trusted_proxy_without_headers_warns_at_start_like_waitress():
    import maitre

    with pytest.warns(DeprecationWarning, match="Implicitly trusting X-Forwarded-Proto"):
        server = maitre.create_server(environ_app, host="127.0.0.1", port=0, trusted_proxy="*")
    server.close()
    if HAVE_WAITRESS:
        with pytest.warns(DeprecationWarning, match="Implicitly trusting X-Forwarded-Proto"):
            start_waitress(environ_app, trusted_proxy="*").stop()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maitre.create_server(
            environ_app, host="127.0.0.1", port=0, trusted_proxy="*",
            trusted_proxy_headers="x-forwarded-proto",
        ).close()
