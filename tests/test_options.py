"""The option table and ``Options``: waitress's names, defaults, coercion and validation."""

from __future__ import annotations

import logging
import socket
import sys
import typing
import warnings

import pytest

from maitre.options import (
    OPTIONS,
    OPTIONS_BY_NAME,
    Options,
    Support,
    reference_markdown,
    resolve_listen,
)

# waitress 3.0.2 Adjustments: the parameters in order, with their class defaults.
WAITRESS_DEFAULTS = {
    "host": "0.0.0.0",
    "port": 8080,
    "ipv4": True,
    "ipv6": True,
    "listen": ["0.0.0.0:8080"],
    "threads": 4,
    "trusted_proxy": None,
    "trusted_proxy_count": None,
    "trusted_proxy_headers": set(),
    "log_untrusted_proxy_headers": False,
    "clear_untrusted_proxy_headers": True,
    "url_scheme": "http",
    "url_prefix": "",
    "backlog": 1024,
    "recv_bytes": 8192,
    "send_bytes": 1,
    "outbuf_overflow": 1048576,
    "outbuf_high_watermark": 16777216,
    "inbuf_overflow": 524288,
    "connection_limit": 100,
    "cleanup_interval": 30,
    "channel_timeout": 120,
    "log_socket_errors": True,
    "max_request_header_size": 262144,
    "max_request_body_size": 1073741824,
    "expose_tracebacks": False,
    "ident": "waitress",
    "asyncore_loop_timeout": 1,
    "asyncore_use_poll": False,
    "unix_socket": None,
    "unix_socket_perms": 0o600,
    "sockets": [],
    "channel_request_lookahead": 0,
    "server_name": "waitress.invalid",
}
MAITRE_OVERRIDES = {"ident": "maitre", "server_name": "maitre.invalid"}

ENGINE_KEYS = {
    "listen", "threads", "backlog", "connection_limit", "channel_timeout",
    "cleanup_interval", "recv_bytes", "send_bytes", "max_request_header_size",
    "max_request_body_size", "inbuf_overflow", "outbuf_overflow", "outbuf_high_watermark",
    "ident", "expose_tracebacks", "url_scheme", "url_prefix", "server_name", "workers",
    "trusted_proxy", "trusted_proxy_count", "trusted_proxy_headers",
    "log_untrusted_proxy_headers", "clear_untrusted_proxy_headers", "log_socket_errors",
    "header_timeout", "graceful_timeout",
    "strict_backlog", "access_log", "access_log_format", "metrics",
    "unix_socket_perms", "sockets", "proxy_protocol",
    "max_request_line", "max_request_headers", "reuse_port",
}
INT_ENGINE_KEYS = {
    "workers", "threads", "backlog", "connection_limit", "channel_timeout", "cleanup_interval",
    "recv_bytes", "send_bytes", "max_request_header_size", "max_request_body_size",
    "inbuf_overflow", "outbuf_overflow", "outbuf_high_watermark", "trusted_proxy_count",
    "header_timeout", "graceful_timeout",
    "unix_socket_perms",
    "max_request_line", "max_request_headers",
}

HAS_IPV6 = socket.has_ipv6


def local() -> dict:
    """Options that resolve without touching anything but the loopback."""
    return {"listen": "127.0.0.1:0"}


# --------------------------------------------------------------------------- the table


# Options of maitre's own, after waitress's, with their defaults.
MAITRE_ONLY = {
    "proxy_protocol": False, "workers": 1, "reuse_port": False, "header_timeout": 10,
    "graceful_timeout": 30,
    "strict_backlog": False, "access_log": False, "access_log_format": None, "metrics": None,
    "max_request_line": 8190, "max_request_headers": 1000,
}


def test_table_has_waitress_options_in_order_then_maitres_own():
    assert [o.name for o in OPTIONS] == list(WAITRESS_DEFAULTS) + list(MAITRE_ONLY)
    assert set(OPTIONS_BY_NAME) == set(WAITRESS_DEFAULTS) | set(MAITRE_ONLY)


@pytest.mark.parametrize("name", list(MAITRE_ONLY))
def test_maitre_only_defaults(name):
    assert OPTIONS_BY_NAME[name].default == MAITRE_ONLY[name]


def test_proxy_protocol_needs_trusted_proxy():
    with pytest.raises(ValueError, match="proxy_protocol needs trusted_proxy"):
        Options(proxy_protocol=True, **local())
    o = Options(proxy_protocol="yes", trusted_proxy="*", trusted_proxy_headers="x-forwarded-proto",
                **local())
    assert o.engine_config()["proxy_protocol"] is True


def test_workers_option():
    assert Options(workers="3").workers == 3
    with pytest.raises(ValueError, match="workers"):
        Options(workers=0)
    assert Options(workers=2).engine_config()["workers"] == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reuse_port is Linux only")
def test_reuse_port_option():
    assert Options(workers=2, reuse_port="on", **local()).engine_config()["reuse_port"] is True
    # TCP beside a unix socket: the TCP address gets a socket per worker, the unix one is shared.
    Options(workers=2, reuse_port=True, listen="127.0.0.1:0 unix:/tmp/x.sock")


@pytest.mark.parametrize("kw, message", [
    ({"workers": 1, "listen": "127.0.0.1:0"},
     r"reuse_port needs workers > 1 \(got workers=1\)"),
    ({"workers": 2, "unix_socket": "/tmp/x.sock"}, "reuse_port needs a TCP address in listen"),
    ({"workers": 2, "listen": "unix:/tmp/a.sock unix:/tmp/b.sock"},
     "reuse_port needs a TCP address in listen"),
    ({"workers": 2, "sockets": [socket.socket()]}, "reuse_port may not be combined with sockets"),
])
def test_reuse_port_refuses_what_it_cannot_honour(kw, message):
    if not sys.platform.startswith("linux"):
        message = "reuse_port needs"
    with pytest.raises(ValueError, match=message):
        Options(reuse_port=True, **kw)
    for sock in kw.get("sockets", []):
        sock.close()


def test_reuse_port_off_linux_is_refused(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(ValueError, match="reuse_port needs Linux .*does not spread connections"):
        Options(workers=2, reuse_port=True, **local())


@pytest.mark.parametrize("name", list(WAITRESS_DEFAULTS))
def test_table_default_matches_waitress(name):
    expected = MAITRE_OVERRIDES.get(name, WAITRESS_DEFAULTS[name])
    default = OPTIONS_BY_NAME[name].default
    assert default == expected
    assert type(default) is type(expected)


def test_options_attributes_are_annotated():
    hints = typing.get_type_hints(Options)
    assert set(WAITRESS_DEFAULTS) <= set(hints)


def test_support_levels():
    support = {o.name: o.support for o in OPTIONS}
    assert {n for n, s in support.items() if s is Support.NOOP} == {
        "asyncore_loop_timeout", "asyncore_use_poll", "channel_request_lookahead",
    }
    assert {n for n, s in support.items() if s is Support.ADDRESS} == {
        "host", "port", "ipv4", "ipv6", "unix_socket",
    }
    assert {n for n, s in support.items() if s is Support.ENGINE} == ENGINE_KEYS


def test_every_option_has_help():
    for option in OPTIONS:
        assert option.help.strip(), option.name


def test_reference_markdown_lists_every_option():
    text = reference_markdown()
    for option in OPTIONS:
        assert f"`{option.name}`" in text
    assert "`--max-request-body-size=INT`" in text
    assert "`--[no-]expose-tracebacks`" in text


# --------------------------------------------------------------------------- defaults


# What waitress's Adjustments() instance holds where it differs from the class default.
WAITRESS_RESOLVED = {"trusted_proxy_count": 1}


def test_defaults():
    o = Options()
    for name, expected in WAITRESS_DEFAULTS.items():
        if name == "listen":
            continue
        expected = WAITRESS_RESOLVED.get(name, expected)
        assert getattr(o, name) == MAITRE_OVERRIDES.get(name, expected), name
    assert o.listen == [("0.0.0.0", 8080)]


def test_defaults_are_not_shared_between_instances():
    a, b = Options(), Options()
    assert a.trusted_proxy_headers is not b.trusted_proxy_headers
    assert a.sockets is not b.sockets
    assert a.sockets is not OPTIONS_BY_NAME["sockets"].default


# --------------------------------------------------------------------------- coercion


@pytest.mark.parametrize(
    "name, given, expected",
    [
        ("threads", "4", 4),
        ("threads", " 8 ", 8),
        ("threads", 2, 2),
        ("threads", 3.0, 3),
        ("backlog", "2048", 2048),
        ("connection_limit", "1", 1),
        ("channel_timeout", "5", 5),
        ("cleanup_interval", "1", 1),
        ("recv_bytes", "65536", 65536),
        ("send_bytes", "9000", 9000),
        ("max_request_header_size", "1024", 1024),
        ("max_request_body_size", "0", 0),
        ("max_request_line", "4094", 4094),
        ("max_request_headers", " 100 ", 100),
        ("inbuf_overflow", "0", 0),
        ("outbuf_overflow", "100", 100),
        ("outbuf_high_watermark", "100", 100),
        ("asyncore_loop_timeout", "0", 0),
        ("expose_tracebacks", "yes", True),
        ("expose_tracebacks", "true", True),
        ("expose_tracebacks", "TRUE", True),
        ("expose_tracebacks", "1", True),
        ("expose_tracebacks", "on", True),
        ("expose_tracebacks", "t", True),
        ("expose_tracebacks", "y", True),
        ("expose_tracebacks", " Yes ", True),
        ("expose_tracebacks", True, True),
        ("expose_tracebacks", 1, True),
        ("expose_tracebacks", "no", False),
        ("expose_tracebacks", "false", False),
        ("expose_tracebacks", "off", False),
        ("expose_tracebacks", "0", False),
        ("expose_tracebacks", "", False),
        ("expose_tracebacks", None, False),
        ("expose_tracebacks", False, False),
        ("asyncore_use_poll", "on", True),
        ("ident", "myserver/1.0", "myserver/1.0"),
        ("ident", "", None),
        ("ident", None, None),
        ("url_scheme", "https", "https"),
        ("url_prefix", "app", "/app"),
        ("url_prefix", "/app/", "/app"),
        ("url_prefix", "//app//", "/app"),
        ("url_prefix", "/a/b/", "/a/b"),
        ("url_prefix", " /app ", "/app"),
        # waitress keeps "/" (then SCRIPT_NAME "/" + PATH_INFO "/x"); maitre means no prefix
        ("url_prefix", "/", ""),
        ("url_prefix", "///", ""),
        ("url_prefix", "", ""),
        ("server_name", "example.com", "example.com"),
        # unsupported options still accept their default, spelt as waitress spells it
        ("unix_socket_perms", "600", 0o600),
        ("unix_socket_perms", 0o600, 0o600),
        ("log_socket_errors", "true", True),
        ("clear_untrusted_proxy_headers", "yes", True),
        ("log_untrusted_proxy_headers", "no", False),
        ("channel_request_lookahead", "0", 0),
        ("trusted_proxy", "", None),
        ("trusted_proxy_headers", "", set()),
        ("sockets", [], []),
        ("unix_socket", None, None),
        # values a working waitress configuration can hold, with waitress's meaning
        ("backlog", 0, 0),
        ("backlog", "-5", 0),  # socket.listen() takes a negative backlog as 0
        ("channel_timeout", 0, 0),
        ("channel_timeout", -1, 0),
        ("cleanup_interval", "0", 0),
        ("max_request_body_size", -1, 0),  # waitress: every request body gets 413
        ("inbuf_overflow", -1, 0),
        ("outbuf_overflow", -1, 0),
        ("send_bytes", 0, 0),
        ("channel_request_lookahead", "5", 5),
        ("channel_request_lookahead", -2, 0),
        ("trusted_proxy_count", None, 1),
        ("ident", 123, "123"),
        ("ident", 0, None),
        ("server_name", 1, "1"),
        ("url_scheme", 5, "5"),
        ("trusted_proxy", 0, None),
        ("expose_tracebacks", 2, False),
        ("expose_tracebacks", "maybe", False),
        ("ipv6", "enabled", False),
        ("log_socket_errors", "false", False),
    ],
)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_coercion(name, given, expected):
    # sockets/unix_socket may not be combined with listen, even at their defaults (waitress)
    extra = {} if name in ("sockets", "unix_socket") else local()
    o = Options(**{name: given}, **extra)
    value = getattr(o, name)
    assert value == expected
    assert type(value) is type(expected)


def test_word_waitress_reads_as_false_is_false_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="maitre"):
        o = Options(expose_tracebacks="ture", ipv6="off", **local())
    assert o.expose_tracebacks is False and o.ipv6 is False
    messages = [r.getMessage() for r in caplog.records if r.name == "maitre"]
    assert len(messages) == 1
    assert "'ture' is not a boolean word" in messages[0]
    assert "read as false, as waitress does" in messages[0]


def test_url_prefix_and_ident_reach_engine_config():
    config = Options(url_prefix="//shop/", ident="", **local()).engine_config()
    assert config["url_prefix"] == "/shop"
    assert config["ident"] is None


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"threads": "abc"}, "threads must be a positive integer, got 'abc'"),
        ({"threads": 0}, "threads must be a positive integer"),
        ({"threads": -1}, "threads must be a positive integer"),
        ({"threads": "4.5"}, "threads must be a positive integer"),
        ({"threads": 4.5}, "threads must be a positive integer"),
        ({"threads": True}, "threads must be a positive integer"),
        ({"threads": None}, "threads must be a positive integer"),
        ({"connection_limit": 0}, "connection_limit must be a positive integer"),
        ({"backlog": "many"}, "backlog must be an integer up to 2147483647"),
        ({"backlog": 2**31}, "backlog must be an integer up to 2147483647"),
        ({"recv_bytes": 0}, "recv_bytes must be a positive integer"),
        ({"channel_timeout": "2m"}, "channel_timeout must be an integer, got '2m'"),
        ({"cleanup_interval": 1.5}, "cleanup_interval must be an integer"),
        ({"max_request_header_size": 0}, "max_request_header_size must be a positive integer"),
        ({"max_request_body_size": "1G"}, "max_request_body_size must be an integer"),
        ({"max_request_line": 0}, "max_request_line must be a positive integer"),
        ({"max_request_line": "8k"}, "max_request_line must be a positive integer, got '8k'"),
        ({"max_request_headers": -1}, "max_request_headers must be a positive integer"),
        ({"inbuf_overflow": "big"}, "inbuf_overflow must be an integer"),
        ({"outbuf_high_watermark": -5}, "outbuf_high_watermark must be a non-negative integer"),
        ({"port": "http"}, "port must be an integer from 0 to 65535"),
        ({"port": 65536}, "port must be an integer from 0 to 65535"),
        ({"port": -1}, "port must be an integer from 0 to 65535"),
        ({"trusted_proxy_count": -1, "trusted_proxy": "*"},
         "trusted_proxy_count must be a non-negative integer"),
        ({"asyncore_loop_timeout": -1}, "asyncore_loop_timeout must be a non-negative integer"),
        ({"ident": ["x"]}, "ident must be a string"),
        ({"url_prefix": 5}, "url_prefix must be a string"),
        ({"url_scheme": None}, "url_scheme must be a string"),
        ({"server_name": None}, "server_name must be a string"),
        ({"url_scheme": b"https"}, "url_scheme must be a string"),
        ({"host": None}, "host must be a string"),
        ({"listen": 8080}, "listen must be"),
        ({"listen": [("127.0.0.1", 80)]}, "listen must be"),
        ({"unix_socket_perms": "999"}, "unix_socket_perms must be an octal"),
        ({"trusted_proxy_headers": "x-bogus"}, "trusted_proxy_headers must be"),
        ({"trusted_proxy_headers": "forwarded x-forwarded-for"}, "trusted_proxy_headers must be"),
        ({"sockets": "fd:3"}, "sockets must be"),
    ],
)
def test_bad_value_names_option(kw, fragment):
    with pytest.raises(ValueError) as info:
        Options(**kw)
    assert fragment in str(info.value)


def test_unknown_option_rejected_with_suggestion():
    with pytest.raises(ValueError) as info:
        Options(thread=4)
    message = str(info.value)
    assert "'thread'" in message
    assert "did you mean 'threads'" in message


def test_unknown_option_without_close_match():
    with pytest.raises(ValueError, match="unknown option 'zzzz'"):
        Options(zzzz=1)


@pytest.mark.parametrize(
    "kw",
    [
        {"listen": "127.0.0.1:1", "host": "127.0.0.1"},
        {"listen": "127.0.0.1:1", "port": 1},
        {"sockets": [], "listen": "127.0.0.1:1"},
        {"sockets": [], "host": "127.0.0.1"},
        {"sockets": [], "unix_socket": "/tmp/s"},
        {"unix_socket": "/tmp/s", "port": 1},
        {"unix_socket": "/tmp/s", "listen": "127.0.0.1:1"},
    ],
)
def test_conflicting_address_options(kw):
    with pytest.raises(ValueError, match="may not be combined"):
        Options(**kw)


def test_proxy_options_need_trusted_proxy():
    with pytest.raises(ValueError, match="trusted_proxy_count has no meaning"):
        Options(trusted_proxy_count=2)
    with pytest.raises(ValueError, match="trusted_proxy_headers has no meaning"):
        Options(trusted_proxy_headers="x-forwarded-proto")


# --------------------------------------------------------------------------- support


def test_unix_socket_and_sockets_take_the_place_of_listen():
    assert Options(unix_socket="/tmp/maitre.sock").listen == [("unix", "/tmp/maitre.sock")]
    mixed = Options(listen="unix:/tmp/a.sock 127.0.0.1:1 unix:/tmp/b.sock")
    assert mixed.listen == [("unix", "/tmp/a.sock"), ("127.0.0.1", 1), ("unix", "/tmp/b.sock")]
    with pytest.raises(ValueError, match="names no socket path"):
        Options(listen="unix:")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        o = Options(sockets=[sock])
        assert o.listen == [] and o.sockets == [sock]
        assert o.engine_config()["sockets"] == [sock]
    finally:
        sock.close()


def test_sockets_must_be_internet_or_unix_stream_sockets():
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(ValueError, match="sockets must be a list of Internet or UNIX stream"):
            Options(sockets=[udp])
    finally:
        udp.close()


def test_proxy_options_as_waitress_resolves_them():
    o = Options(trusted_proxy="*", trusted_proxy_headers="Forwarded", **local())
    assert (o.trusted_proxy, o.trusted_proxy_count, o.trusted_proxy_headers) == (
        "*", 1, {"forwarded"},
    )
    o = Options(
        trusted_proxy="10.0.0.1", trusted_proxy_count="0",
        trusted_proxy_headers=["x-forwarded-for x-forwarded-host", "X-Forwarded-Proto"],
        **local(),
    )
    assert o.trusted_proxy_count == 0
    assert o.trusted_proxy_headers == {"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"}
    config = o.engine_config()
    assert config["trusted_proxy"] == "10.0.0.1"
    assert config["trusted_proxy_headers"] == o.trusted_proxy_headers


def test_trusted_proxy_alone_trusts_x_forwarded_proto_with_a_warning():
    with pytest.warns(DeprecationWarning, match="Implicitly trusting X-Forwarded-Proto"):
        o = Options(trusted_proxy="127.0.0.1", **local())
    assert o.trusted_proxy_headers == {"x-forwarded-proto"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Options(trusted_proxy="127.0.0.1", trusted_proxy_headers="x-forwarded-for", **local())


def test_asyncore_options_accepted_and_logged(caplog):
    with caplog.at_level(logging.DEBUG, logger="maitre"):
        o = Options(asyncore_loop_timeout="5", asyncore_use_poll="true", **local())
    assert o.asyncore_loop_timeout == 5
    assert o.asyncore_use_poll is True
    assert "asyncore_loop_timeout" not in o.engine_config()
    records = [r for r in caplog.records if r.name == "maitre" and "asyncore" in r.getMessage()]
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG


def test_no_asyncore_log_when_not_given(caplog):
    with caplog.at_level(logging.DEBUG, logger="maitre"):
        Options(**local())
    assert not [r for r in caplog.records if "asyncore" in r.getMessage()]


def test_send_bytes_deprecated():
    with pytest.warns(DeprecationWarning, match="send_bytes"):
        o = Options(send_bytes="18000", **local())
    assert o.send_bytes == 18000


def test_no_warning_without_send_bytes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Options(**local())


# --------------------------------------------------------------------------- listen


def test_host_port_make_listen():
    assert Options(host="127.0.0.1", port=9000).listen == [("127.0.0.1", 9000)]
    assert Options(host="127.0.0.1").listen == [("127.0.0.1", 8080)]
    assert Options(port="9001").listen == [("0.0.0.0", 9001)]
    assert Options(host="127.0.0.1", port=0).listen == [("127.0.0.1", 0)]


def test_listen_single_and_several():
    assert Options(listen="127.0.0.1:8080").listen == [("127.0.0.1", 8080)]
    assert Options(listen="127.0.0.1:1 127.0.0.1:2").listen == [("127.0.0.1", 1), ("127.0.0.1", 2)]
    assert Options(listen="127.0.0.1:1\n127.0.0.1:2").listen == [("127.0.0.1", 1), ("127.0.0.1", 2)]
    assert Options(listen=["127.0.0.1:1", "127.0.0.1:2 127.0.0.1:3"]).listen == [
        ("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3),
    ]


def test_listen_bare_host_uses_default_port():
    assert Options(listen="127.0.0.1").listen == [("127.0.0.1", 8080)]


def test_listen_deduplicates_but_keeps_port_zero():
    assert Options(listen="127.0.0.1:80 127.0.0.1:80").listen == [("127.0.0.1", 80)]
    # each port-0 entry binds its own free port, as in waitress
    assert Options(listen="127.0.0.1:0 127.0.0.1:0").listen == [("127.0.0.1", 0), ("127.0.0.1", 0)]


def test_listen_localhost_resolves_to_numeric():
    addresses = Options(listen="localhost:0").listen
    assert addresses
    assert ("127.0.0.1", 0) in addresses or ("::1", 0) in addresses
    for host, port in addresses:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        assert port == 0


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 in this Python")
def test_listen_ipv6():
    assert Options(listen="[::1]:8080").listen == [("::1", 8080)]
    assert Options(listen="127.0.0.1:8080 [::1]:8080").listen == [
        ("127.0.0.1", 8080), ("::1", 8080),
    ]
    assert Options(host="::1", port=0).listen == [("::1", 0)]
    assert Options(host="[::1]", port=0).listen == [("::1", 0)]
    # a bracketed address without a port takes the default port
    assert Options(listen="[::1]").listen == [("::1", 8080)]


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 in this Python")
def test_listen_wildcard_follows_families():
    both = Options(listen="*:8080").listen
    assert ("0.0.0.0", 8080) in both
    assert ("::", 8080) in both
    assert Options(listen="*:8080", ipv6=False).listen == [("0.0.0.0", 8080)]
    assert Options(listen="*:8080", ipv4="false").listen == [("::", 8080)]


def test_ipv6_off_refuses_v6_address():
    if not HAS_IPV6:
        pytest.skip("no IPv6 in this Python")
    with pytest.raises(ValueError, match="listen"):
        Options(listen="[::1]:80", ipv6=False)


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"listen": "127.0.0.1:70000"}, "port must be from 0 to 65535"),
        ({"listen": "127.0.0.1:no-such-service-xyz"}, "listen: cannot resolve"),
        ({"listen": "no-such-host.invalid:80"}, "listen: cannot resolve"),
        ({"listen": ""}, "listen: no address"),
        ({"listen": []}, "listen: no address"),
        ({"host": "no-such-host.invalid"}, "host/port: cannot resolve"),
        ({"host": ""}, "host/port: cannot resolve"),
    ],
)
def test_bad_listen(kw, fragment):
    with pytest.raises(ValueError) as info:
        Options(**kw)
    assert fragment in str(info.value)


def test_resolve_listen_function():
    assert resolve_listen(["127.0.0.1:5"]) == [("127.0.0.1", 5)]
    assert resolve_listen(["127.0.0.1"], default_port=7) == [("127.0.0.1", 7)]


# --------------------------------------------------------------------------- engine_config


def test_engine_config_keys_and_types():
    config = Options().engine_config()
    assert set(config) == ENGINE_KEYS
    assert config["listen"] == [("0.0.0.0", 8080)]
    for host, port in config["listen"]:
        assert type(host) is str and type(port) is int
    for key in INT_ENGINE_KEYS:
        assert type(config[key]) is int, key
    assert type(config["expose_tracebacks"]) is bool
    for key in ("url_scheme", "url_prefix", "server_name", "ident"):
        assert type(config[key]) is str, key
    assert config["ident"] == "maitre"
    assert config["server_name"] == "maitre.invalid"
    assert config["url_prefix"] == ""


def test_engine_config_carries_given_values():
    config = Options(
        listen="127.0.0.1:0", threads="7", backlog=10, connection_limit="3",
        channel_timeout=9, cleanup_interval=2, recv_bytes=1024, max_request_header_size=4096,
        max_request_body_size=0, inbuf_overflow=1, outbuf_overflow=2,
        outbuf_high_watermark=3, expose_tracebacks="yes", url_scheme="https",
        url_prefix="/x/", server_name="srv", ident="me", workers="2",
        trusted_proxy="10.0.0.1", trusted_proxy_count="2",
        trusted_proxy_headers="x-forwarded-for", log_untrusted_proxy_headers="on",
        clear_untrusted_proxy_headers="no", log_socket_errors="false", header_timeout="4",
        graceful_timeout="5", max_request_line="100", max_request_headers="20",
        reuse_port="yes",
    ).engine_config()
    assert config == {
        "listen": [("127.0.0.1", 0)], "threads": 7, "backlog": 10, "connection_limit": 3,
        "channel_timeout": 9, "cleanup_interval": 2, "recv_bytes": 1024, "send_bytes": 1,
        "max_request_header_size": 4096, "max_request_body_size": 0, "inbuf_overflow": 1,
        "outbuf_overflow": 2, "outbuf_high_watermark": 3, "expose_tracebacks": True,
        "url_scheme": "https", "url_prefix": "/x", "server_name": "srv", "ident": "me",
        "workers": 2, "trusted_proxy": "10.0.0.1", "trusted_proxy_count": 2,
        "trusted_proxy_headers": {"x-forwarded-for"}, "log_untrusted_proxy_headers": True,
        "clear_untrusted_proxy_headers": False, "log_socket_errors": False,
        "header_timeout": 4, "graceful_timeout": 5,
        "strict_backlog": False, "access_log": False, "access_log_format": None,
        "metrics": None,
        "unix_socket_perms": 0o600, "sockets": [], "proxy_protocol": False,
        "max_request_line": 100, "max_request_headers": 20, "reuse_port": True,
    }


def test_engine_config_is_a_fresh_dict():
    o = Options(**local())
    first = o.engine_config()
    first["listen"].append(("1.2.3.4", 1))
    assert o.engine_config()["listen"] == [("127.0.0.1", 0)]
