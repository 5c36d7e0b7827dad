"""``proxy_protocol=True``: each connection starts with a PROXY protocol header (v1
text or v2 binary) from a trusted proxy, whose addresses the environ shows; without
a valid header, or from an untrusted peer, the connection closes with no response.
Tested with raw bytes and behind a real HAProxy (send-proxy, send-proxy-v2)."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from conftest import HOST, parse_one, parse_responses, read_until_close, wait_for

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
KEYS = ("REMOTE_ADDR", "REMOTE_HOST", "REMOTE_PORT", "SERVER_PORT", "wsgi.url_scheme", "PATH_INFO")
GET = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
GET_CLOSE = b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"


def app(environ, start_response):
    body = json.dumps({k: environ.get(k) for k in KEYS}).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def v2(command: int, family: int, block: bytes) -> bytes:
    return V2_SIG + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def inet4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    pack = lambda a: ipaddress.IPv6Address(a).packed  # noqa: E731
    return pack(src) + pack(dst) + struct.pack("!HH", sport, dport)


def exchange(port: int, data: bytes, family=socket.AF_INET, address=None):
    """Sends ``data`` (ending with a Connection: close request), returns (environ
    of each response, the client's own port)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(address or (HOST, port))
        own = s.getsockname()
        s.sendall(data)
        raw = read_until_close(s, timeout=5)
    responses, _ = parse_responses(raw, eof=True)
    return [json.loads(r.body) for r in responses], own


def refused(port: int, data: bytes) -> bytes:
    """What the server answers to ``data`` before it closes."""
    with socket.socket() as s:
        s.settimeout(5)
        s.connect((HOST, port))
        s.sendall(data)
        return read_until_close(s, timeout=5)


@pytest.fixture
def proxied(serve):
    return serve(app, proxy_protocol=True, trusted_proxy="127.0.0.1",
                 trusted_proxy_headers="x-forwarded-proto")


@pytest.mark.parametrize(
    "header, remote, remote_port, server_port",
    [
        (b"PROXY TCP4 192.0.2.1 10.0.0.2 56324 443\r\n", "192.0.2.1", "56324", "443"),
        (b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 8443\r\n", "2001:db8::1", "4000", "8443"),
        (v2(1, 0x11, inet4("198.51.100.7", "10.0.0.2", 1234, 80)), "198.51.100.7", "1234", "80"),
        (v2(1, 0x21, inet6("2001:db8::7", "::1", 5555, 8080) + b"\x04\x00\x01\x00"),
         "2001:db8::7", "5555", "8080"),
    ],
    ids=["v1-tcp4", "v1-tcp6", "v2-inet", "v2-inet6-tlv"],
)
def test_the_headers_addresses_reach_the_environ_for_every_request(
    proxied, header, remote, remote_port, server_port
):
    envs, _ = exchange(proxied.port, header + GET + GET_CLOSE)
    assert len(envs) == 2, "keep-alive: the header covers the whole connection"
    for env in envs:
        assert (env["REMOTE_ADDR"], env["REMOTE_HOST"]) == (remote, remote)
        assert (env["REMOTE_PORT"], env["SERVER_PORT"]) == (remote_port, server_port)


@pytest.mark.parametrize(
    "header",
    [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
     v2(0, 0x00, b""), v2(0, 0x11, inet4("192.0.2.1", "10.0.0.2", 1, 2)), v2(1, 0x00, b"")],
    ids=["v1-unknown", "v1-unknown-addresses", "v2-local", "v2-local-inet", "v2-unspec"],
)
def test_local_unknown_and_unspec_keep_the_connections_addresses(proxied, header):
    envs, own = exchange(proxied.port, header + GET_CLOSE)
    assert envs[0]["REMOTE_ADDR"] == "127.0.0.1"
    assert envs[0]["REMOTE_PORT"] == str(own[1])
    assert envs[0]["SERVER_PORT"] == str(proxied.port)


def test_a_header_arriving_in_pieces(proxied):
    header = v2(1, 0x11, inet4("192.0.2.9", "10.0.0.2", 999, 443))
    with socket.socket() as s:
        s.settimeout(5)
        s.connect((HOST, proxied.port))
        for piece in (header[:5], header[5:14], header[14:20], header[20:] + GET_CLOSE[:10], GET_CLOSE[10:]):
            s.sendall(piece)
            time.sleep(0.05)
        response, _ = parse_one(read_until_close(s), eof=True)
    assert json.loads(response.body)["REMOTE_ADDR"] == "192.0.2.9"


def test_headers_of_the_trusted_proxy_still_apply(proxied):
    request = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
    envs, _ = exchange(proxied.port, b"PROXY TCP4 192.0.2.1 10.0.0.2 5 443\r\n" + request)
    assert envs[0]["wsgi.url_scheme"] == "https"
    assert envs[0]["REMOTE_ADDR"] == "192.0.2.1"


@pytest.mark.parametrize(
    "data",
    [
        GET_CLOSE,  # no header at all
        b"PROXY TCP4 192.0.2.1 10.0.0.2 56324\r\n" + GET_CLOSE,
        b"PROXY TCP4 ::1 10.0.0.2 1 2\r\n" + GET_CLOSE,
        b"PROXY " + b"x" * 120,
        v2(1, 0x11, b"\x00" * 8) + GET_CLOSE,  # too short for INET
        V2_SIG + b"\x31\x11\x00\x00" + GET_CLOSE,  # version 3
    ],
    ids=["missing", "v1-short", "v1-wrong-family", "v1-too-long", "v2-short", "v2-version"],
)
def test_missing_or_malformed_header_closes_without_a_response(proxied, data, caplog):
    with caplog.at_level(logging.DEBUG, logger="maitre"):
        assert refused(proxied.port, data) == b""
        assert wait_for(lambda: "PROXY protocol header" in caplog.text)


def test_an_untrusted_peer_is_closed_without_a_response(serve, caplog):
    server = serve(app, proxy_protocol=True, trusted_proxy="10.9.9.9",
                   trusted_proxy_headers="x-forwarded-for")
    with caplog.at_level(logging.DEBUG, logger="maitre"):
        assert refused(server.port, b"PROXY TCP4 192.0.2.1 10.0.0.2 5 443\r\n" + GET_CLOSE) == b""
        assert wait_for(lambda: "not from a trusted_proxy" in caplog.text)


def test_any_peer_with_a_star(serve):
    server = serve(app, proxy_protocol=True, trusted_proxy="*",
                   trusted_proxy_headers="x-forwarded-for")
    envs, _ = exchange(server.port, b"PROXY TCP4 192.0.2.3 10.0.0.2 5 443\r\n" + GET_CLOSE)
    assert envs[0]["REMOTE_ADDR"] == "192.0.2.3"


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")
def test_through_a_unix_socket_from_a_local_proxy():
    import threading

    import maitre

    directory = tempfile.mkdtemp(prefix="mt-", dir="/tmp")
    path = os.path.join(directory, "pp.sock")
    server = maitre.create_server(app, unix_socket=path, proxy_protocol=True,
                                  trusted_proxy="localhost", trusted_proxy_headers="x-forwarded-for")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        envs, _ = exchange(0, b"PROXY TCP4 192.0.2.4 10.0.0.2 6 443\r\n" + GET_CLOSE,
                           family=socket.AF_UNIX, address=path)
        assert (envs[0]["REMOTE_ADDR"], envs[0]["SERVER_PORT"]) == ("192.0.2.4", "443")
    finally:
        server.close()
        thread.join(5)
        shutil.rmtree(directory, ignore_errors=True)


def test_the_option_needs_trusted_proxy():
    import maitre

    with pytest.raises(ValueError, match="proxy_protocol needs trusted_proxy"):
        maitre.create_server(app, host=HOST, port=0, proxy_protocol=True)


# --------------------------------------------------------------------------- HAProxy


def _haproxy_binary() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("haproxy is not installed, and installing it (apt-get) needs root")
    if not shutil.which("apt-get"):
        pytest.skip("haproxy is not installed and there is no apt-get to install it")
    result = subprocess.run(["apt-get", "install", "-y", "haproxy"], capture_output=True, text=True,
                            timeout=600)
    found = shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if result.returncode != 0 or not found:
        pytest.skip(f"apt-get install -y haproxy failed: {result.stderr[-500:]}")
    return found


def _free_port(family=socket.AF_INET, host=HOST) -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def haproxy(serve, tmp_path):
    """HAProxy in front of maitre: frontends v1 (send-proxy), v2 (send-proxy-v2), v6
    (send-proxy-v2, clients on ::1), and a backend whose health checks go out with a
    PROXY v2 LOCAL header."""
    binary = _haproxy_binary()
    checks = []

    def recording(environ, start_response):
        if environ["PATH_INFO"] == "/health":
            checks.append(environ["REMOTE_ADDR"])
        return app(environ, start_response)

    server = serve(recording, ping=False, proxy_protocol=True, trusted_proxy="127.0.0.1",
                   trusted_proxy_headers="x-forwarded-for")
    ports = {"v1": _free_port(), "v2": _free_port()}
    frontends = [("v1", f"{HOST}:{ports['v1']}", "send-proxy"),
                 ("v2", f"{HOST}:{ports['v2']}", "send-proxy-v2")]
    if _ipv6_loopback():
        ports["v6"] = _free_port(socket.AF_INET6, "::1")
        frontends.append(("v6", f"[::1]:{ports['v6']}", "send-proxy-v2"))
    config = [
        "global", "    maxconn 200",
        "defaults", "    mode tcp", "    timeout connect 5s", "    timeout client 10s",
        "    timeout server 10s",
    ]
    for name, bind, send in frontends:
        config += [f"frontend f_{name}", f"    bind {bind}", f"    default_backend b_{name}",
                   f"backend b_{name}", f"    server s_{name} {HOST}:{server.port} {send}"]
    config += ["backend b_check", "    option httpchk GET /health",
               f"    server s_check {HOST}:{server.port} send-proxy-v2 check check-send-proxy inter 200ms"]
    path = tmp_path / "haproxy.cfg"
    path.write_text("\n".join(config) + "\n")
    log = open(tmp_path / "haproxy.log", "w+")
    proc = subprocess.Popen([binary, "-db", "-f", str(path)], stdout=log, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            try:
                socket.create_connection((HOST, ports["v2"]), timeout=1).close()
                return True
            except OSError:
                return False

        assert wait_for(up, timeout=10), open(log.name).read()
        yield ports, checks
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.parametrize("frontend", ["v1", "v2", "v6"])
def test_behind_haproxy(haproxy, frontend):
    ports, _ = haproxy
    if frontend not in ports:
        pytest.skip("no IPv6 loopback")
    family, host = (socket.AF_INET6, "::1") if frontend == "v6" else (socket.AF_INET, HOST)
    envs, own = exchange(0, GET + GET_CLOSE, family=family, address=(host, ports[frontend]))
    assert len(envs) == 2
    for env in envs:
        # The client's own address and port, not HAProxy's outgoing connection's.
        assert env["REMOTE_ADDR"] == host
        assert env["REMOTE_PORT"] == str(own[1])
        assert env["SERVER_PORT"] == str(ports[frontend])


def test_haproxy_health_checks_send_local_and_keep_the_real_peer(haproxy):
    _, checks = haproxy
    assert wait_for(lambda: len(checks) >= 2, timeout=10), "no health check reached the app"
    assert set(checks) == {"127.0.0.1"}
