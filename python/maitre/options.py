"""The options of maitre: one table, read by :class:`Options`, the command line and the docs.

Every option of waitress 3.0 is here under the same name, with the same default
(except ``ident`` and ``server_name``) and the same string coercion, so a waitress
configuration works unchanged.  Each row also says how far maitre supports it:

* ``Support.ENGINE``: handed to the Rust engine by :meth:`Options.engine_config`.
* ``Support.ADDRESS``: ``host``, ``port``, ``ipv4``, ``ipv6``, ``unix_socket``; folded
  into the resolved ``listen`` list.
* ``Support.NOOP``: accepted and ignored (they tune waitress's own asyncore loop).
"""

from __future__ import annotations

import difflib
import enum
import logging
import os
import socket
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union

__all__ = [
    "KNOWN_PROXY_HEADERS",
    "OPTIONS",
    "OPTIONS_BY_NAME",
    "Option",
    "Options",
    "Support",
    "reference_markdown",
    "resolve_listen",
]

logger = logging.getLogger("maitre")

# (numeric host, port), or ("unix", path) for a Unix socket, as waitress shows it.
Address = Tuple[str, Union[int, str]]

_UNIX_PREFIX = "unix:"


class Support(enum.Enum):
    """How far maitre implements an option."""

    ENGINE = "engine"
    ADDRESS = "address"
    NOOP = "noop"


class _BadValue(Exception):
    """Raised by a converter; ``allowed`` describes what the option accepts."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


# --------------------------------------------------------------------------- converters
#
# A converter takes the value as given (a Python object, or a string from the command
# line or a config file) and returns the typed value, or raises _BadValue.

_TRUE_WORDS = frozenset({"t", "true", "y", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"f", "false", "n", "no", "off", "0", ""})


class _Converter:
    """A conversion; ``metavar`` is how the command-line help names its value."""

    metavar = "VALUE"

    def __call__(self, value: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class _Boolean(_Converter):
    """waitress's ``asbool``: true for the words in ``_TRUE_WORDS``, false for anything
    else.  A value that is neither a true nor a false word is logged, since it is most
    likely a typo, but it still means false, as in waitress."""

    metavar = ""

    def __call__(self, value: Any) -> bool:
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word not in _FALSE_WORDS:
            logger.warning(
                "%r is not a boolean word (true/false, yes/no, on/off, 1/0, t/f, y/n); "
                "read as false, as waitress does", value,
            )
        return False


class _Integer(_Converter):
    metavar = "INT"

    def __init__(
        self, minimum: Optional[int] = None, maximum: Optional[int] = None, metavar: str = "INT",
        floor: Optional[int] = None,
    ) -> None:
        self.minimum = minimum
        self.metavar = metavar
        self.maximum = maximum
        # Values below ``floor`` mean what ``floor`` means in waitress (a negative
        # backlog is listen(0), a negative timeout expires at once...): raised to it.
        self.floor = floor
        if minimum is not None and maximum is not None:
            self.allowed = f"an integer from {minimum} to {maximum}"
        elif minimum == 1:
            self.allowed = "a positive integer"
        elif minimum == 0:
            self.allowed = "a non-negative integer"
        elif minimum is not None:
            self.allowed = f"an integer >= {minimum}"
        elif maximum is not None:
            self.allowed = f"an integer up to {maximum}"
        else:
            self.allowed = "an integer"

    def __call__(self, value: Any) -> int:
        if isinstance(value, bool):
            raise _BadValue(self.allowed)
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            number = int(value)
        elif isinstance(value, str):
            try:
                number = int(value.strip(), 10)
            except ValueError:
                raise _BadValue(self.allowed) from None
        else:
            raise _BadValue(self.allowed)
        if self.minimum is not None and number < self.minimum:
            raise _BadValue(self.allowed)
        if self.maximum is not None and number > self.maximum:
            raise _BadValue(self.allowed)
        if self.floor is not None:
            number = max(number, self.floor)
        return number


class _OptionalInteger(_Integer):
    """An integer, or None (the value meaning "not set")."""

    def __call__(self, value: Any) -> Optional[int]:  # type: ignore[override]
        if value is None:
            return None
        return super().__call__(value)


class _Text(_Converter):
    metavar = "STR"

    def __init__(self, metavar: str = "STR", optional: bool = False) -> None:
        self.metavar = metavar
        self.optional = optional

    def __call__(self, value: Any) -> Optional[str]:
        if value is None and self.optional:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # waitress applies str()
        raise _BadValue("a string")


class _TextOrNone(_Converter):
    """A string, where an empty value means "none" (waitress's ``str_iftruthy``)."""

    def __init__(self, metavar: str = "STR") -> None:
        self.metavar = metavar

    def __call__(self, value: Any) -> Optional[str]:
        if not value:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # waitress: ident=123 sends "Server: 123"
        raise _BadValue("a string")


class _UrlPrefix(_Converter):
    """A path prefix: one leading slash, no trailing slash, or the empty string."""

    metavar = "PATH"

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _BadValue("a string such as '/app' (or '' for none)")
        return normalise_url_prefix(value)


def normalise_url_prefix(value: str) -> str:
    """Give a URL prefix exactly one leading slash and no trailing slash.

    Blank, or nothing but slashes, gives ``""`` (no prefix).  waitress keeps ``"/"`` as
    ``"/"``, which yields a SCRIPT_NAME of ``"/"`` next to a PATH_INFO starting with ``"/"``;
    maitre treats it as no prefix instead.
    """
    inner = value.strip().strip("/")
    return "/" + inner if inner else ""


def _words(value: Any, allowed: str) -> List[str]:
    """Split a whitespace- or newline-separated string, or each string of a list, into words."""
    if isinstance(value, str):
        items: Iterable[Any] = [value]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        raise _BadValue(allowed)
    words: List[str] = []
    for item in items:
        if not isinstance(item, str):
            raise _BadValue(allowed)
        words.extend(item.split())
    return words


class _Listen(_Converter):
    metavar = "HOST:PORT"
    allowed = (
        "a string of 'host:port' (or 'unix:/path') entries separated by spaces, or a "
        "list of them"
    )

    def __call__(self, value: Any) -> List[str]:
        return _words(value, self.allowed)


KNOWN_PROXY_HEADERS = frozenset(
    {
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-by",
    }
)


class _ProxyHeaders(_Converter):
    metavar = "NAMES"
    allowed = (
        "space-separated header names among "
        + ", ".join(sorted(KNOWN_PROXY_HEADERS))
        + " ('forwarded' may not be combined with the x-forwarded-* ones)"
    )

    def __call__(self, value: Any) -> Set[str]:
        headers = {word.lower() for word in _words(value, self.allowed)}
        if headers - KNOWN_PROXY_HEADERS:
            raise _BadValue(self.allowed)
        if "forwarded" in headers and len(headers) > 1:
            raise _BadValue(self.allowed)
        return headers


class _Octal(_Converter):
    metavar = "OCTAL"
    allowed = "an octal permission such as '600'"

    def __call__(self, value: Any) -> int:
        if isinstance(value, bool):
            raise _BadValue(self.allowed)
        if isinstance(value, int):
            number = value
        elif isinstance(value, str):
            try:
                number = int(value.strip(), 8)
            except ValueError:
                raise _BadValue(self.allowed) from None
        else:
            raise _BadValue(self.allowed)
        if not 0 <= number <= 0o7777:
            raise _BadValue(self.allowed)
        return number


class _Sockets(_Converter):
    metavar = ""
    allowed = "a list of socket.socket objects"

    def __call__(self, value: Any) -> List[socket.socket]:
        if not isinstance(value, (list, tuple)):
            raise _BadValue(self.allowed)
        # waitress quietly drops anything that is not a socket; so do we.
        sockets = [item for item in value if isinstance(item, socket.socket)]
        families = {socket.AF_INET, socket.AF_INET6, getattr(socket, "AF_UNIX", None)}
        for sock in sockets:
            if sock.family not in families or sock.type != socket.SOCK_STREAM:
                raise _BadValue("a list of Internet or UNIX stream sockets")
        return sockets


_BOOL = _Boolean()
_POSITIVE = _Integer(minimum=1)
_NON_NEGATIVE = _Integer(minimum=0)
_PORT = _Integer(minimum=0, maximum=65535, metavar="PORT")


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Option:
    """One row of the option table."""

    name: str
    convert: _Converter
    default: Any
    help: str
    support: Support
    section: str = "Standard"
    cli: bool = True

    @property
    def is_flag(self) -> bool:
        """True for a boolean, which the command line spells ``--name`` / ``--no-name``."""
        return isinstance(self.convert, _Boolean)

    @property
    def cli_name(self) -> str:
        """The long command-line option, e.g. ``--max-request-body-size``."""
        return "--" + self.name.replace("_", "-")

    @property
    def metavar(self) -> str:
        """What the command-line help shows for the value, e.g. ``INT``."""
        return self.convert.metavar

    @property
    def default_text(self) -> str:
        """The default as the help and the docs show it, e.g. ``600`` for an octal."""
        if isinstance(self.convert, _Octal):
            return format(self.default, "o")
        return _show(self.default)

    def fresh_default(self) -> Any:
        """The default value, copied when mutable so instances never share it."""
        if isinstance(self.default, (list, set, dict)):
            return type(self.default)(self.default)
        return self.default


_E, _A, _N = Support.ENGINE, Support.ADDRESS, Support.NOOP

OPTIONS: Tuple[Option, ...] = (
    Option(
        "host", _Text("ADDR"), "0.0.0.0",
        "Host name or IP address to listen on; '0.0.0.0' is every IPv4 address of this "
        "machine. Cannot be combined with listen.",
        _A,
    ),
    Option(
        "port", _PORT, 8080,
        "TCP port to listen on (0 picks a free port). Cannot be combined with listen.",
        _A,
    ),
    Option(
        "ipv4", _BOOL, True,
        "Allow IPv4 addresses when resolving host/listen (a '*' host then includes 0.0.0.0).",
        _A,
    ),
    Option(
        "ipv6", _BOOL, True,
        "Allow IPv6 addresses when resolving host/listen (a '*' host then includes ::).",
        _A,
    ),
    Option(
        "listen", _Listen(), ["0.0.0.0:8080"],
        "Space-separated addresses to listen on, each 'host:port', '[v6addr]:port' or "
        "'*:port' (every address of the enabled families), or 'unix:/path' for a Unix "
        "socket (maitre only). On the command line, repeat the option to listen on "
        "several. Cannot be combined with host or port.",
        _E,
    ),
    Option(
        "threads", _POSITIVE, 4,
        "Number of worker threads that run the application.",
        _E, "Tuning",
    ),
    Option(
        "trusted_proxy", _TextOrNone("ADDR"), None,
        "Address of the proxy whose forwarding headers are believed ('*' for any).",
        _E, "Proxy",
    ),
    Option(
        "trusted_proxy_count", _OptionalInteger(minimum=0), None,
        "How many proxies of a chain are trusted (X-Forwarded-For, Forwarded): the client "
        "address is taken that many hops from the end. Default 1 once trusted_proxy is "
        "set; 0 trusts the whole chain.",
        _E, "Proxy",
    ),
    Option(
        "trusted_proxy_headers", _ProxyHeaders(), set(),
        "Which forwarding headers the trusted proxy may set: 'forwarded', or some of "
        "x-forwarded-for, x-forwarded-host, x-forwarded-proto, x-forwarded-port, "
        "x-forwarded-by.",
        _E, "Proxy",
    ),
    Option(
        "log_untrusted_proxy_headers", _BOOL, False,
        "Log a warning when a request carries proxy headers that are not trusted.",
        _E, "Proxy",
    ),
    Option(
        "clear_untrusted_proxy_headers", _BOOL, True,
        "Remove untrusted proxy headers from the environ before the application sees it.",
        _E, "Proxy",
    ),
    Option(
        "url_scheme", _Text(), "http",
        "Value of wsgi.url_scheme in the environ.",
        _E,
    ),
    Option(
        "url_prefix", _UrlPrefix(), "",
        "Mount point of the application: becomes SCRIPT_NAME, and is removed from the "
        "start of PATH_INFO. A leading slash is added and trailing slashes dropped.",
        _E,
    ),
    Option(
        "backlog", _Integer(maximum=2**31 - 1, floor=0), 1024,
        "Length of the kernel queue of connections not yet accepted (listen(2) backlog); "
        "below 0 means 0, as with Python's socket.listen().",
        _E, "Tuning",
    ),
    Option(
        "recv_bytes", _POSITIVE, 8192,
        "Bytes asked for per read from a client socket.",
        _E, "Tuning",
    ),
    Option(
        "send_bytes", _Integer(), 1,
        "Deprecated in waitress: bytes buffered before a socket write is attempted.",
        _E, "Tuning",
    ),
    Option(
        "outbuf_overflow", _Integer(floor=0), 1048576,
        "Pending response bytes beyond which output is spooled to a temporary file (1 MB).",
        _E, "Tuning",
    ),
    Option(
        "outbuf_high_watermark", _NON_NEGATIVE, 16777216,
        "Pending response bytes at which the application's iterator is paused until the "
        "client catches up (16 MB).",
        _E, "Tuning",
    ),
    Option(
        "inbuf_overflow", _Integer(floor=0), 524288,
        "Request body bytes beyond which the body is spooled to a temporary file (512 KB).",
        _E, "Tuning",
    ),
    Option(
        "connection_limit", _POSITIVE, 100,
        "Most client connections open at once; further ones wait in the backlog.",
        _E, "Tuning",
    ),
    Option(
        "cleanup_interval", _Integer(floor=0), 30,
        "Seconds between sweeps that close idle connections (see channel_timeout); 0 or "
        "less sweeps as often as maitre allows (every 100 ms).",
        _E, "Tuning",
    ),
    Option(
        "channel_timeout", _Integer(floor=0), 120,
        "Seconds a connection may stay idle (nothing received or sent) before it is closed; "
        "0 closes each idle connection at the next sweep. An app still running a request "
        "past it is logged once, at WARNING.",
        _E, "Tuning",
    ),
    Option(
        "log_socket_errors", _BOOL, True,
        "Log socket errors at ERROR, as waitress does, and a client leaving while the app "
        "serves it at INFO (\"Client disconnected while serving ...\"); when false both "
        "are logged at DEBUG only.",
        _E, "Tuning",
    ),
    Option(
        "max_request_header_size", _POSITIVE, 262144,
        "Largest request line plus headers, in bytes (256 KB); larger gets 431.",
        _E, "Tuning",
    ),
    Option(
        "max_request_body_size", _Integer(floor=0), 1073741824,
        "Largest request body, in bytes (1 GB); larger gets 413. 0 (or less) refuses "
        "every request body.",
        _E, "Tuning",
    ),
    Option(
        "expose_tracebacks", _BOOL, False,
        "Put the traceback of an unhandled application exception in the 500 response body.",
        _E,
    ),
    Option(
        "ident", _TextOrNone(), "maitre",
        "Value of the Server response header and SERVER_SOFTWARE; empty sends no "
        "Server header.",
        _E,
    ),
    Option(
        "asyncore_loop_timeout", _NON_NEGATIVE, 1,
        "waitress's asyncore loop timeout; accepted and ignored by maitre.",
        _N, "Tuning",
    ),
    Option(
        "asyncore_use_poll", _BOOL, False,
        "waitress's poll() switch for its asyncore loop; accepted and ignored by maitre.",
        _N, "Tuning",
    ),
    Option(
        "unix_socket", _Text("PATH", optional=True), None,
        "Path of a Unix domain socket to listen on instead of TCP. A socket file left by "
        "a server that died is replaced; one a live server listens on is an error "
        "(EADDRINUSE). Unix only.",
        _A,
    ),
    Option(
        "unix_socket_perms", _Octal(), 0o600,
        "Octal permissions of the Unix domain sockets maitre creates.",
        _E,
    ),
    Option(
        "sockets", _Sockets(), [],
        "Already-bound sockets (TCP or Unix, listening or not) to serve on instead of "
        "listen, e.g. from socket activation. maitre serves a duplicate of each and "
        "leaves the caller's socket open and usable. Python API only; Unix only.",
        _E, cli=False,
    ),
    Option(
        "channel_request_lookahead", _Integer(floor=0), 0,
        "waitress reads this many pipelined requests ahead while one runs. Accepted; "
        "maitre reads no request ahead of the app, so the value has no effect.",
        _N, "Tuning",
    ),
    Option(
        "server_name", _Text(), "maitre.invalid",
        "Value of SERVER_NAME in the environ (URLs are rebuilt from HTTP_HOST when "
        "the request has a Host header).",
        _E,
    ),
    # maitre's own options (not in waitress) follow the same rules.
    Option(
        "proxy_protocol", _BOOL, False,
        "maitre only: each connection starts with a PROXY protocol header (version 1 or "
        "2, as HAProxy's send-proxy and send-proxy-v2 send it), whose client address "
        "becomes REMOTE_ADDR/REMOTE_PORT and whose destination port SERVER_PORT. Needs "
        "trusted_proxy: a connection from another peer, or without a valid header, is "
        "closed without a response.",
        _E, "Proxy",
    ),
    Option(
        "workers", _POSITIVE, 1,
        "maitre only: number of processes, each with its own event loop and threads, "
        "sharing the listening sockets (bound once, before fork). The parent supervises "
        "them and replaces one that dies. Needs os.fork (not on Windows).",
        _E, "Tuning",
    ),
    Option(
        "reuse_port", _BOOL, False,
        "maitre only, Linux, with workers > 1: each worker process gets its own listening "
        "socket on every TCP address (SO_REUSEPORT), and the kernel spreads new "
        "connections over the workers' accept queues by a hash of their addresses, "
        "instead of all workers taking from one shared queue. The parent binds them all "
        "before fork and keeps them, so a worker that dies loses no queued connection. "
        "Unix sockets and sockets= stay shared.",
        _E, "Tuning",
    ),
    Option(
        "header_timeout", _POSITIVE, 10,
        "maitre only: seconds a client has to send a whole request head (counted from "
        "accept, or from the first byte of a later request on a kept-alive connection), "
        "and to start sending a body the application asked for with 100 Continue; "
        "then the connection closes (408 where a response is still possible). A thread "
        "never waits longer than this for a body that does not come.",
        _E, "Tuning",
    ),
    Option(
        "graceful_timeout", _NON_NEGATIVE, 30,
        "maitre only: seconds a stop (SIGTERM, SIGINT, close()) waits for requests already "
        "received, or sent on connections queued in the listen backlog, to finish (their "
        "responses carry Connection: close; idle connections close at once) before "
        "closing what is left; the same signal again stops at once.",
        _E, "Tuning",
    ),
    Option(
        "strict_backlog", _BOOL, False,
        "maitre only: refuse to start when the kernel would clamp backlog to its cap "
        "(net.core.somaxconn, kern.ipc.somaxconn) instead of logging a warning.",
        _E, "Tuning",
    ),
    Option(
        "access_log", _BOOL, False,
        "maitre only: log each request to the logger maitre.access (INFO), in Apache "
        "combined format unless access_log_format says otherwise. Off by default.",
        _E, "Tuning",
    ),
    Option(
        "access_log_format", _TextOrNone("FORMAT"), None,
        "maitre only: the access log line in gunicorn's atoms (%(h)s %(r)s %(s)s %(b)s "
        "%(D)s %({header}i)s ...) plus %(W)s, microseconds waiting for a thread, and "
        "%(A)s, microseconds in the application. Default: Apache combined.",
        _E, "Tuning",
    ),
    Option(
        "metrics", _TextOrNone("HOST:PORT"), None,
        "maitre only: address of a separate listener serving /metrics (Prometheus), "
        "/stats (JSON), /health/live, /health/ready and a live status page at /. Off by "
        "default; keep it on a private address (port 9100 if none is given).",
        _E, "Tuning",
    ),
    Option(
        "max_request_line", _POSITIVE, 8190,
        "maitre only: longest request line (method, target, version), in bytes; longer "
        "gets 414 URI Too Long.",
        _E, "Tuning",
    ),
    Option(
        "max_request_headers", _POSITIVE, 1000,
        "maitre only: most header fields in a request; more gets 431 (the header block "
        "is also bounded by max_request_header_size).",
        _E, "Tuning",
    ),
)

OPTIONS_BY_NAME: Dict[str, Option] = {option.name: option for option in OPTIONS}


def _show(value: Any) -> str:
    """How a default is shown in help and docs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "(none)"
    if isinstance(value, (set, list)):
        return " ".join(sorted(str(item) for item in value)) if value else "(empty)"
    if isinstance(value, str) and value == "":
        return "''"
    return str(value)


# --------------------------------------------------------------------------- listen


def resolve_listen(
    specs: Iterable[str], default_port: int = 8080, ipv4: bool = True, ipv6: bool = True,
    option_name: str = "listen",
) -> List[Address]:
    """Resolve ``host:port`` strings to numeric ``(host, port)`` pairs, as waitress does.

    Each entry is ``host:port``, ``[v6addr]:port``, ``*:port`` (every address of the
    enabled families), a bare host (then ``default_port`` is used), or ``unix:PATH``
    (a Unix socket, given as ``("unix", PATH)``).  Names are
    resolved with ``getaddrinfo(AI_PASSIVE, SOCK_STREAM)``, restricted to IPv4 or IPv6
    when only one of ``ipv4``/``ipv6`` is on, and duplicate addresses dropped (port 0
    entries are kept: each binds its own free port).  Raises ``ValueError`` naming
    ``option_name`` for an entry that does not resolve.
    """
    if not ipv4 and not socket.has_ipv6:
        raise ValueError("ipv4 is disabled but this Python has no IPv6 support")
    family = socket.AF_UNSPEC
    if ipv4 and not ipv6:
        family = socket.AF_INET
    elif ipv6 and not ipv4:
        family = socket.AF_INET6
    # With both disabled waitress resolves both families, and so do we.

    result: List[Address] = []
    seen: Set[Address] = set()
    for spec in specs:
        if spec.startswith(_UNIX_PREFIX):
            path = spec[len(_UNIX_PREFIX):]
            if not path:
                raise ValueError(f"{option_name}: {spec!r} names no socket path")
            result.append(("unix", path))
            continue
        host, port_text = spec, str(default_port)
        if ":" in spec:
            host, port_text = spec.rsplit(":", 1)
            if "]" in port_text:  # a bracketed IPv6 address without a port
                host, port_text = spec, str(default_port)
        if "[" in host and "]" in host:
            host = host.strip("[").rstrip("]")
        lookup_host: Optional[str] = None if host == "*" else host
        port: Any = port_text
        if port_text.strip().isdigit():
            port = int(port_text)
            if port > 65535:
                raise ValueError(
                    f"{option_name}: port must be from 0 to 65535, got {port_text!r} "
                    f"in {spec!r}"
                )
        try:
            infos = socket.getaddrinfo(
                lookup_host, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                socket.AI_PASSIVE,
            )
        except (OSError, UnicodeError) as exc:
            hint = ""
            if host and ":" in host and "[" not in spec:
                hint = " (write an IPv6 address in brackets: [addr]:port)"
            raise ValueError(f"{option_name}: cannot resolve {spec!r}: {exc}{hint}") from None
        for info_family, _, _, _, sockaddr in infos:
            if info_family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = (str(sockaddr[0]), int(sockaddr[1]))
            # Some resolvers give the same link-local address with several zone indexes;
            # compare without the zone.
            key = (address[0].split("%", 1)[0], address[1])
            if address[1] != 0 and key in seen:
                continue
            seen.add(key)
            result.append(address)
    if not result:
        raise ValueError(f"{option_name}: no address to listen on")
    return result


# --------------------------------------------------------------------------- Options


class Options:
    """Validated options: waitress's adjustments, checked once, ready for the engine.

    ``Options(threads="8", port=8000)`` converts and checks every value (strings are
    coerced as waitress does), resolves ``host``/``port``/``listen`` to numeric
    addresses, and raises ``ValueError`` naming the option for anything wrong, unknown,
    or not possible on this platform.  Each option is then an attribute; ``listen`` holds the
    resolved ``(host, port)`` pairs.
    """

    host: str
    port: int
    ipv4: bool
    ipv6: bool
    listen: List[Address]
    threads: int
    trusted_proxy: Optional[str]
    trusted_proxy_count: Optional[int]
    trusted_proxy_headers: Set[str]
    log_untrusted_proxy_headers: bool
    clear_untrusted_proxy_headers: bool
    url_scheme: str
    url_prefix: str
    backlog: int
    recv_bytes: int
    send_bytes: int
    outbuf_overflow: int
    outbuf_high_watermark: int
    inbuf_overflow: int
    connection_limit: int
    cleanup_interval: int
    channel_timeout: int
    log_socket_errors: bool
    max_request_header_size: int
    max_request_body_size: int
    expose_tracebacks: bool
    ident: Optional[str]
    asyncore_loop_timeout: int
    asyncore_use_poll: bool
    unix_socket: Optional[str]
    unix_socket_perms: int
    sockets: List[socket.socket]
    channel_request_lookahead: int
    server_name: str
    proxy_protocol: bool
    workers: int
    reuse_port: bool
    header_timeout: int
    graceful_timeout: int
    strict_backlog: bool
    access_log: bool
    access_log_format: Optional[str]
    metrics: Optional[str]
    metrics_listen: Optional[Address]
    max_request_line: int
    max_request_headers: int

    def __init__(self, **kw: Any) -> None:
        """Convert and validate ``kw``; see the class docstring."""
        for name in kw:
            if name not in OPTIONS_BY_NAME:
                raise ValueError(_unknown_message(name))
        _check_combinations(kw)
        if "send_bytes" in kw:
            warnings.warn(
                "send_bytes is deprecated (waitress will remove it)",
                DeprecationWarning,
                stacklevel=2,
            )

        self.given: Dict[str, Any] = dict(kw)
        values: Dict[str, Any] = {}
        for option in OPTIONS:
            if option.name in kw:
                values[option.name] = _convert(option, kw[option.name])
            else:
                values[option.name] = option.fresh_default()
        # listen is kept as the strings given until it is resolved below.
        self.listen_spec: List[str] = values.pop("listen")
        for name, value in values.items():
            setattr(self, name, value)

        self._check_proxy_options()
        if self.workers > 1 and not hasattr(os, "fork"):
            raise ValueError(
                f"workers must be 1 on this platform (got {self.workers}): worker "
                "processes need os.fork; run several maitre processes instead"
            )

        ignored = [name for name in kw if OPTIONS_BY_NAME[name].support is Support.NOOP]
        if ignored:
            logger.debug(
                "%s: these tune waitress's own loop and have no effect in maitre",
                ", ".join(sorted(ignored)),
            )

        where = "listen"
        if "host" in kw or "port" in kw:
            self.listen_spec = [f"{self.host}:{self.port}"]
            where = "host/port"
        if self.sockets:
            self.listen = []  # only the given sockets, as waitress
        elif self.unix_socket is not None:
            self.listen = [("unix", self.unix_socket)]
        else:
            self.listen = resolve_listen(
                self.listen_spec, self.port, self.ipv4, self.ipv6, option_name=where
            )
        if sys.platform == "win32":
            if any(host == "unix" for host, _ in self.listen):
                raise ValueError("unix sockets (unix_socket, unix: in listen) need a Unix system")
            if self.sockets:
                raise ValueError("sockets needs a Unix system; listen on addresses instead")
        self.metrics_listen = None
        self._check_reuse_port()
        if self.metrics is not None:
            self.metrics_listen = resolve_listen(
                [self.metrics], 9100, self.ipv4, self.ipv6, option_name="metrics"
            )[0]

    def _check_reuse_port(self) -> None:
        """reuse_port only where it can do what it says: several workers, Linux, and a
        TCP address that maitre binds."""
        if not self.reuse_port:
            return
        if self.workers < 2:
            raise ValueError(
                f"reuse_port needs workers > 1 (got workers={self.workers}): it gives each "
                "worker process its own accept queue, and one process has one already"
            )
        if not sys.platform.startswith("linux"):
            raise ValueError(
                f"reuse_port needs Linux (this is {sys.platform}): elsewhere SO_REUSEPORT "
                "does not spread connections over the workers; leave it off and the "
                "workers share one accept queue"
            )
        if self.sockets:
            raise ValueError(
                "reuse_port may not be combined with sockets (given, or passed by systemd "
                "socket activation): it binds one socket per worker on the addresses in "
                "listen, and sockets bound elsewhere are shared as they are"
            )
        if not any(host != "unix" for host, _ in self.listen):
            raise ValueError(
                "reuse_port needs a TCP address in listen: unix sockets are always shared "
                "by the workers"
            )

    def _check_proxy_options(self) -> None:
        """waitress's rules for the proxy options, with its defaults filled in."""
        if self.trusted_proxy_count is not None and self.trusted_proxy is None:
            raise ValueError("trusted_proxy_count has no meaning without trusted_proxy")
        if self.trusted_proxy_count is None:
            self.trusted_proxy_count = 1
        if self.trusted_proxy_headers and self.trusted_proxy is None:
            raise ValueError("trusted_proxy_headers has no meaning without trusted_proxy")
        if self.proxy_protocol and self.trusted_proxy is None:
            raise ValueError(
                "proxy_protocol needs trusted_proxy: the address of the proxy that sends "
                "the PROXY header (or '*' for any peer)"
            )
        if self.trusted_proxy is not None and not self.trusted_proxy_headers:
            warnings.warn(
                "No proxy headers were marked as trusted, but trusted_proxy was set. "
                "Implicitly trusting X-Forwarded-Proto for backwards compatibility "
                "(as waitress does); set trusted_proxy_headers to say which to trust.",
                DeprecationWarning,
                stacklevel=3,
            )
            self.trusted_proxy_headers = {"x-forwarded-proto"}

    def engine_config(self) -> Dict[str, Any]:
        """The dict the Rust engine takes: every ``Support.ENGINE`` option, typed.

        ``listen`` is the resolved list of ``(numeric_host, port)`` tuples (IPv6 without
        brackets) and ``("unix", path)`` ones, ``metrics`` one such TCP tuple or ``None``;
        ``sockets`` the socket objects given; ``ident`` is ``None`` when it was given empty.
        """
        config: Dict[str, Any] = {}
        for option in OPTIONS:
            if option.support is Support.ENGINE:
                config[option.name] = getattr(self, option.name)
        config["listen"] = [(host, port) for host, port in self.listen]
        config["metrics"] = self.metrics_listen
        return config

    def as_dict(self) -> Dict[str, Any]:
        """Every option's value after validation, keyed by name."""
        return {option.name: getattr(self, option.name) for option in OPTIONS}

    def __repr__(self) -> str:
        changed = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.given)
        return f"Options({changed})"


def _unknown_message(name: str) -> str:
    message = f"unknown option {name!r}"
    close = difflib.get_close_matches(name, list(OPTIONS_BY_NAME), n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return message


def _check_combinations(kw: Mapping[str, Any]) -> None:
    """Refuse the combinations waitress refuses, judged by which options were given."""
    given = set(kw)
    conflicts = (
        ("listen", ("host", "port")),
        ("sockets", ("listen",)),
        ("sockets", ("host", "port")),
        ("sockets", ("unix_socket",)),
        ("unix_socket", ("host", "port")),
        ("unix_socket", ("listen",)),
    )
    for name, others in conflicts:
        clash = [other for other in others if other in given]
        if name in given and clash:
            raise ValueError(f"{name} may not be combined with {' or '.join(clash)}")


def _convert(option: Option, value: Any) -> Any:
    try:
        return option.convert(value)
    except _BadValue as exc:
        raise ValueError(f"{option.name} must be {exc.allowed}, got {value!r}") from None


# --------------------------------------------------------------------------- docs


def reference_markdown() -> str:
    """The option table as Markdown, for the documentation."""
    notes = {
        Support.ENGINE: "",
        Support.ADDRESS: "",
        Support.NOOP: "accepted, ignored",
    }
    lines = [
        "| option | command line | default | meaning |",
        "|---|---|---|---|",
    ]
    for option in OPTIONS:
        if not option.cli:
            flag = "(Python only)"
        elif option.is_flag:
            flag = f"`--[no-]{option.cli_name[2:]}`"
        else:
            flag = f"`{option.cli_name}={option.metavar}`"
        meaning = option.help
        if notes[option.support]:
            meaning = f"*{notes[option.support]}.* {meaning}"
        lines.append(
            f"| `{option.name}` | {flag} | `{option.default_text}` | {meaning} |"
        )
    return "\n".join(lines) + "\n"

