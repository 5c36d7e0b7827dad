"""Issue 17: every number ``server.stats()`` and the metrics endpoint report, checked
over real sockets; the start-up checks (backlog against somaxconn, file descriptors);
the logs that explain an episode; the status page in a real headless Chromium."""

from __future__ import annotations

import http.server
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import maitre
from conftest import Conn, connect, get, simple_app, wait_for

LINUX = sys.platform.startswith("linux")


def req(method: str, path: str) -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def somaxconn() -> int:
    with open("/proc/sys/net/core/somaxconn") as f:
        return int(f.read())


def fetch(addr, path: str):
    """(status, body) of GET ``path`` on the metrics endpoint."""
    host, port = addr
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} of a Prometheus scrape, parsed by prometheus_client."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def warnings_with(caplog, text: str) -> list:
    return [r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_idle_keep_alive_connections_are_counted_and_uncounted(serve):
    s = serve(simple_app(b"ok"))
    conns = [Conn(s.port) for _ in range(5)]
    for c in conns:
        c.send(req("GET", "/"))
        assert c.read_response().body == b"ok"
    assert wait_for(lambda: s.server.stats()["connections"]["idle"] == 5), s.server.stats()
    stats = s.server.stats()["connections"]
    assert (stats["open"], stats["active"], stats["accepted"]) == (5, 0, 5)
    for c in conns:
        c.close()
    assert wait_for(lambda: s.server.stats()["connections"]["open"] == 0), s.server.stats()
    stats = s.server.stats()
    assert stats["connections"]["idle"] == 0
    assert stats["connections"]["closed_by_client"] == 5
    assert stats["requests"]["total"] == 5
    assert stats["requests"]["by_status"]["2xx"] == 5
    assert stats["requests"]["bytes_in"] > 0 and stats["requests"]["bytes_out"] > 0
    assert stats["request_duration_seconds"]["count"] == 5
    assert stats["queue_wait_seconds"]["count"] == 5


def test_bad_requests_and_status_classes(serve):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]

    s = serve(app)
    assert get(s.port, "/x").status == 404
    assert get(s.port, "/boom").status == 500
    with connect(s.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400 from the loop
        sock.recv(1024)
    assert wait_for(lambda: s.server.stats()["requests"]["bad_requests"] == 1)
    r = s.server.stats()["requests"]
    assert r["by_status"] == {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 2, "5xx": 1}
    assert r["app_errors"] == 1


def test_channel_timeout_closes_are_counted(serve):
    s = serve(simple_app(), channel_timeout=0, cleanup_interval=0)
    with connect(s.port):
        assert wait_for(lambda: s.server.stats()["connections"]["closed_by_timeout"] == 1)


def test_saturated_threads_show_busy_waiting_oldest_wait_and_warn(serve, caplog):
    release = threading.Event()

    def slow(environ, start_response):
        release.wait(10)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    s = serve(slow, threads=2)
    with caplog.at_level(logging.WARNING, logger="maitre"):
        conns = [Conn(s.port) for _ in range(6)]
        try:
            for c in conns:
                c.send(req("GET", "/slow"))

            def saturated():
                st = s.server.stats()
                return st["threads"]["busy"] == 2 and st["requests"]["waiting"] == 4

            assert wait_for(saturated), s.server.stats()
            time.sleep(0.2)
            st = s.server.stats()
            assert st["threads"] == {"total": 2, "busy": 2, "idle": 0}
            assert st["requests"]["in_app"] == 2
            assert st["requests"]["oldest_wait_seconds"] >= 0.2
            assert st["connections"]["active"] == 6
            assert wait_for(lambda: warnings_with(caplog, "all 2 worker threads are busy"))
            message = warnings_with(caplog, "all 2 worker threads are busy")[0].getMessage()
            assert "4 request(s) wait" in message and "threads=2" in message
        finally:
            release.set()
        for c in conns:
            assert c.read_response().body == b"ok"
            c.close()
    st = s.server.stats()
    assert st["requests"]["waiting"] == 0 and st["queue_wait_seconds"]["count"] == 6
    assert len(warnings_with(caplog, "worker threads are busy")) == 1, "once per episode"


@pytest.mark.skipif(not LINUX, reason="the accept queue is read with Linux TCP_INFO")
def test_connection_limit_pauses_accepting_and_the_backlog_holds_the_rest(serve, caplog):
    s = serve(simple_app(), connection_limit=10)
    with caplog.at_level(logging.WARNING, logger="maitre"):
        socks = [socket.create_connection((s.host, s.port)) for _ in range(15)]
        try:
            def paused():
                st = s.server.stats()
                return (st["connections"]["open"] == 10
                        and st["connections"]["accepting_paused"] == 1
                        and st["listeners"][0]["queue_length"] == 5)

            assert wait_for(paused), s.server.stats()
            assert s.server.stats()["connections"]["limit_pauses"] == 1
            assert wait_for(lambda: warnings_with(caplog, "connection_limit=10 reached"))
            assert "5 queued" in warnings_with(caplog, "connection_limit=10")[0].getMessage()
            time.sleep(0.1)
            for sock in socks[:5]:
                sock.close()
            assert wait_for(lambda: s.server.stats()["listeners"][0]["queue_length"] == 0)
            assert wait_for(lambda: s.server.stats()["connections"]["open"] == 10)
        finally:
            for sock in socks:
                sock.close()
    assert wait_for(lambda: s.server.stats()["connections"]["accepting_paused"] == 0)
    assert s.server.stats()["connections"]["paused_seconds_total"] >= 0.1


def unaccepted_connects(port: int, n: int) -> list:
    """``n`` non-blocking connects: past a full backlog the kernel drops their handshakes."""
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    return socks


@pytest.mark.skipif(not LINUX, reason="per-socket drops are read with Linux SO_MEMINFO")
def test_kernel_drops_on_a_full_accept_queue_are_counted_per_listener(serve, caplog):
    s = serve(simple_app(), backlog=1, connection_limit=1, metrics="127.0.0.1:0")
    address = f"127.0.0.1:{s.port}"
    assert s.server.stats()["listeners"][0]["drops"] == 0
    with caplog.at_level(logging.WARNING, logger="maitre"):
        held = Conn(s.port)  # the one connection connection_limit allows
        socks = []
        try:
            assert wait_for(lambda: s.server.stats()["connections"]["accepting_paused"] == 1)
            socks = unaccepted_connects(s.port, 20)
            assert wait_for(lambda: s.server.stats()["listeners"][0]["drops"] > 0), \
                s.server.stats()["listeners"]
            drops = s.server.stats()["listeners"][0]["drops"]
            status, text = fetch(s.server.effective_metrics, "/metrics")
            assert status == 200
            found = samples(text)
            listener = frozenset({("listener", address)})
            assert found[("maitre_listen_drops_total", listener)] >= drops
            assert ("maitre_host_listen_overflows_total", frozenset()) in found
            assert ("maitre_listen_drops_total", frozenset()) not in found
            status, body = fetch(s.server.effective_metrics, "/stats")
            assert json.loads(body)["listeners"][0]["drops"] >= drops
            assert wait_for(lambda: warnings_with(caplog, f"on {address}"))
            [warning] = warnings_with(caplog, "the kernel dropped")
            assert "accept queue was full" in warning.getMessage()
            assert "connection_limit (now 1)" in warning.getMessage()
        finally:
            held.close()
            for sock in socks:
                sock.close()


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="unix sockets")
def test_a_unix_listener_reports_no_kernel_drops(tmp_path):
    # A connect to a full unix socket fails or waits: the kernel drops nothing there.
    server = maitre.create_server(simple_app(), unix_socket=str(tmp_path / "s.sock"))
    try:
        [listener] = server.stats()["listeners"]
        assert (listener["kind"], listener["drops"]) == ("unix", None)
    finally:
        server.close()


@pytest.mark.skipif(not LINUX, reason="reads net.core.somaxconn from procfs")
def test_backlog_above_somaxconn_warns_with_the_sysctl(serve, caplog):
    cap = somaxconn()
    with caplog.at_level(logging.WARNING, logger="maitre"):
        s = serve(simple_app(), backlog=cap + 1)
    [warning] = warnings_with(caplog, "somaxconn")
    text = warning.getMessage()
    assert f"backlog={cap + 1}" in text and f"is {cap}" in text
    assert f"sysctl -w net.core.somaxconn={cap + 1}" in text
    listener = s.server.stats()["listeners"][0]
    assert (listener["backlog_requested"], listener["backlog_effective"]) == (cap + 1, cap)
    assert s.server.stats()["somaxconn"] == cap


@pytest.mark.skipif(not LINUX, reason="reads the backlog in force back from procfs")
def test_a_given_sockets_own_backlog_is_not_blamed_on_somaxconn(caplog):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)  # its creator's backlog, kept
    try:
        with caplog.at_level(logging.WARNING, logger="maitre"):
            server = maitre.create_server(simple_app(), sockets=[sock])
        try:
            [warning] = warnings_with(caplog, "backlog=1024")
            text = warning.getMessage()
            assert "already listening with a backlog of 5" in text, text
            assert "somaxconn" not in text, text
            assert server.stats()["listeners"][0]["backlog_effective"] == 5
        finally:
            server.close()
    finally:
        sock.close()


@pytest.mark.skipif(not LINUX, reason="reads net.core.somaxconn from procfs")
def test_strict_backlog_refuses_to_start_naming_somaxconn():
    with pytest.raises(ValueError, match="somaxconn"):
        maitre.create_server(simple_app(), host="127.0.0.1", port=0,
                             backlog=somaxconn() + 1, strict_backlog=True)
    # Within the cap, strict_backlog starts as usual.
    server = maitre.create_server(simple_app(), host="127.0.0.1", port=0, backlog=16,
                                  strict_backlog=True)
    assert server.stats()["listeners"][0]["backlog_effective"] == 16
    server.close()


def test_backlog_without_strict_backlog_is_read_back(serve):
    s = serve(simple_app(), backlog=7)
    listener = s.server.stats()["listeners"][0]
    assert listener["address"] == f"127.0.0.1:{s.port}" and listener["kind"] == "tcp"
    if LINUX:
        assert listener["backlog_effective"] == 7 and listener["queue_length"] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_NOFILE is Unix")
def test_the_soft_fd_limit_is_raised_for_connection_limit_and_a_shortfall_warned():
    script = textwrap.dedent(
        """
        import logging, resource, sys
        import maitre
        logging.basicConfig(level=logging.INFO)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        app = lambda e, s: []
        maitre.create_server(app, host="127.0.0.1", port=0, connection_limit=1000).close()
        print(resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard, flush=True)
        maitre.create_server(app, host="127.0.0.1", port=0, connection_limit=hard + 100).close()
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
    assert "raised the soft file descriptor limit from 256" in out.stderr
    assert "file descriptors but this process may open only" in out.stderr


def test_metrics_endpoint_prometheus_json_health(serve):
    release = threading.Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            release.wait(10)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    s = serve(app, metrics="127.0.0.1:0", threads=2)
    addr = s.server.effective_metrics
    assert addr is not None and addr[0] == "127.0.0.1" and addr[1] != s.port
    for _ in range(3):
        assert get(s.port, "/").status == 200
    status, text = fetch(addr, "/metrics")
    assert status == 200
    found = samples(text)
    assert found[("maitre_requests_total", frozenset({("status", "2xx")}))] == 3
    assert found[("maitre_request_duration_seconds_count", frozenset())] == 3
    assert found[("maitre_queue_wait_seconds_bucket", frozenset({("le", "+Inf")}))] == 3
    assert found[("maitre_connections", frozenset({("state", "idle")}))] == 0
    assert found[("maitre_threads", frozenset())] == 2
    assert found[("maitre_threads_busy", frozenset())] == 0
    listener = frozenset({("listener", f"127.0.0.1:{s.port}")})
    if LINUX:
        assert found[("maitre_listen_backlog", listener)] == min(1024, somaxconn())
        assert found[("maitre_listen_queue_length", listener)] == 0
        assert found[("maitre_listen_drops_total", listener)] == 0
        assert ("maitre_host_listen_overflows_total", frozenset()) in found
    status, body = fetch(addr, "/stats")
    assert status == 200
    assert json.loads(body)["requests"]["by_status"] == s.server.stats()["requests"]["by_status"]
    assert fetch(addr, "/health/live") == (200, "live\n")
    assert fetch(addr, "/health/ready") == (200, "ready\n")
    assert fetch(addr, "/nope")[0] == 404

    # A drain: ready turns 503 at once, live stays 200, while a request finishes.
    slow = Conn(s.port)
    slow.send(req("GET", "/slow"))
    assert wait_for(lambda: s.server.stats()["requests"]["in_app"] == 1)
    s.server.close()
    assert wait_for(lambda: fetch(addr, "/health/ready")[0] == 503)
    assert fetch(addr, "/health/live")[0] == 200
    assert s.server.stats()["draining"] is True
    release.set()
    assert slow.read_response().body == b"ok"
    slow.close()


WORKERS_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    import maitre

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = maitre.create_server(app, listen="127.0.0.1:0", workers=2, threads=2,
                                  metrics="127.0.0.1:0")
    print(json.dumps([server.effective_port, server.effective_metrics[1]]), flush=True)

    def answer():
        for _ in sys.stdin:
            print(json.dumps(server.stats()), flush=True)

    threading.Thread(target=answer, daemon=True).start()
    server.run()
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need fork")
def test_workers_report_their_sum_and_each_their_own():
    # stderr is pytest's: shown with a failure, and never a full pipe blocking the server.
    proc = subprocess.Popen([sys.executable, "-c", WORKERS_SCRIPT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        port, metrics_port = json.loads(proc.stdout.readline())

        def parent_stats():
            proc.stdin.write("\n")
            proc.stdin.flush()
            return json.loads(proc.stdout.readline())

        assert wait_for(lambda: parent_stats()["supervisor"]["alive"] == 2, timeout=10)
        assert wait_for(lambda: len(parent_stats()["workers"]) == 2, timeout=10)
        for _ in range(10):
            assert get(port, "/").status == 200
        stats = parent_stats()
        assert stats["requests"]["total"] == 10
        assert sum(w["requests"]["total"] for w in stats["workers"]) == 10
        assert {w["worker"] for w in stats["workers"]} == {0, 1}
        assert len({w["pid"] for w in stats["workers"]}) == 2
        assert stats["threads"]["total"] == 4
        assert stats["supervisor"] == {"workers": 2, "alive": 2, "restarts": 0}

        status, text = fetch(("127.0.0.1", metrics_port), "/metrics")
        assert status == 200
        found = samples(text)
        assert found[("maitre_requests_total", frozenset({("status", "2xx")}))] == 10
        per_worker = [found[("maitre_worker_requests_total",
                             frozenset({("status", "2xx"), ("worker", str(i))}))] for i in (0, 1)]
        assert sum(per_worker) == 10
        assert found[("maitre_threads", frozenset())] == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def chromium() -> str:
    """The chromium binary, installed with apt-get when missing and this runs as root."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if not LINUX or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; needs root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env,
                          capture_output=True, text=True, timeout=600)
    found = shutil.which("chromium")
    if done.returncode != 0 or not found:
        pytest.skip(f"could not install chromium: {done.stderr[-500:]}")
    return found


@pytest.mark.timeout(300)
def test_status_page_in_headless_chromium_shows_the_json_numbers(serve, tmp_path):
    browser = chromium()
    s = serve(simple_app(b"ok"), metrics="127.0.0.1:0", threads=3, connection_limit=50)
    idle = [Conn(s.port) for _ in range(2)]
    for c in idle:
        c.send(req("GET", "/"))
        assert c.read_response().status == 200
    for _ in range(5):
        get(s.port, "/")
    assert wait_for(lambda: s.server.stats()["connections"]["idle"] == 2)
    host, port = s.server.effective_metrics
    out = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=3000", "--dump-dom", f"http://{host}:{port}/"],
        capture_output=True, text=True, timeout=120,
    )
    dom = out.stdout
    assert "maitre status" in dom, (out.returncode, out.stderr[-2000:])
    console = [line for line in out.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    stats = s.server.stats()  # while the idle connections the page counted are still open
    for c in idle:
        c.close()
    expect = {
        "v-open": stats["connections"]["open"],
        "v-idle": stats["connections"]["idle"],
        "v-limit": 50,
        "v-requests": stats["requests"]["total"],
        "v-accepted": stats["connections"]["accepted"],
        "v-threads": "0 / 3",
    }
    for element, value in expect.items():
        assert f'id="{element}">{value}<' in dom, (element, value)
    assert "All well" in dom


@pytest.mark.skipif(not LINUX, reason="per-socket drops are read with Linux SO_MEMINFO")
@pytest.mark.timeout(300)
def test_status_page_shows_growing_kernel_drops_as_a_problem(serve, tmp_path):
    browser = chromium()
    s = serve(simple_app(), backlog=1, connection_limit=1, metrics="127.0.0.1:0")
    held = Conn(s.port)
    assert wait_for(lambda: s.server.stats()["connections"]["accepting_paused"] == 1)
    socks: list = []
    metrics = s.server.effective_metrics

    def drops() -> int:
        return s.server.stats()["listeners"][0]["drops"]

    class MoreDropsEachPoll(http.server.BaseHTTPRequestHandler):
        """Forwards the page's requests; before each /stats, the kernel drops more
        connections, so the page sees the count grow between any two of its polls
        (chromium's virtual clock polls far faster than a real-time flood)."""

        def do_GET(self):
            stats = self.path.startswith("/stats")
            if stats:
                before = drops()
                socks.extend(unaccepted_connects(s.port, 2))
                wait_for(lambda: drops() > before)
            status, body = fetch(metrics, self.path)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if stats else "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MoreDropsEachPoll)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        out = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path}", "--virtual-time-budget=4000", "--dump-dom",
             f"http://127.0.0.1:{proxy.server_address[1]}/"],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        proxy.shutdown()
        proxy.server_close()
        held.close()
        for sock in socks:
            sock.close()
    dom = out.stdout
    assert "maitre status" in dom, (out.returncode, out.stderr[-2000:])
    assert 'class="tile bad" id="t-drops"' in dom or 'id="t-drops" class="tile bad"' in dom, dom
    assert "The kernel dropped" in dom and f"on 127.0.0.1:{s.port} in the last minute" in dom
    assert '<td class="bad">' in dom
