"""Stopping a server: signals, the drain deadline, worker processes (issue 13).

Servers that receive signals run in a subprocess of their own session; each binds
port 0 and reports the port on stderr.  Every process a test starts, worker
processes included, is SIGKILLed by process group at teardown.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
import textwrap
import threading
import time
from typing import Dict, List, Tuple

import pytest

import maitre
from maitre._maitre import Engine, Listeners
from conftest import HOST, Conn, Spawned, alive, get

posix_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="signals and fork are POSIX")

SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys, threading, time
    import maitre

    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            sys.stderr.write(f"SLOW-START {os.getpid()}\\n")
            sys.stderr.flush()
            time.sleep(float(environ["QUERY_STRING"]))
        elif environ["PATH_INFO"] == "/block":
            sys.stderr.write(f"BLOCK-START {os.getpid()}\\n")
            sys.stderr.flush()
            threading.Event().wait()
        body = f"done by {os.getpid()}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    how, kw = sys.argv[1], json.loads(sys.argv[2])
    if kw.pop("no_pdeathsig", False):  # take the portable path: the pipe check
        import maitre._maitre
        vars(maitre._maitre).pop("set_parent_death_signal", None)
    if how == "serve":
        maitre.serve(app, host="127.0.0.1", port=0, **kw)
    else:
        server = maitre.create_server(app, host="127.0.0.1", port=0, **kw)
        sys.stderr.write(f"PORT {server.effective_port}\\n")
        sys.stderr.flush()
        if how == "run":
            server.run()
        else:  # "close": run() in a thread, close() when a line arrives on stdin
            thread = threading.Thread(target=server.run)
            thread.start()
            sys.stdin.readline()
            server.close()
            thread.join()
    sys.stderr.write("RETURNED\\n")
    sys.stderr.flush()
    """
)


def gone_within(pids: List[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def server_process(spawn):
    """SCRIPT in a new session: ``how`` is serve / run / close, ``kw`` the options; the
    result's ``workers`` are the worker processes it started."""

    def start(how: str, **kw) -> Spawned:
        p = spawn([sys.executable, "-c", SCRIPT, how, json.dumps(kw)], stdin=True)
        line = p.wait_for(r"^PORT (\d+)|Serving on http://[\d.]+:(\d+)")
        p.port = int(next(g for g in line.groups() if g))
        count = kw["workers"] if kw.get("workers", 1) > 1 else 0
        p.workers = [
            int(p.wait_for(r"Started worker process (\d+)", i + 1).group(1)) for i in range(count)
        ]
        return p

    return start


class InFlight:
    """One GET in a thread; ``result()`` is (status, body) or the exception."""

    def __init__(self, port: int, path: str) -> None:
        self.port, self.path = port, path
        self.outcome: Dict[str, object] = {}
        self.thread = threading.Thread(target=self._get, daemon=True)
        self.thread.start()

    def _get(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=20)
        try:
            conn.request("GET", self.path)
            resp = conn.getresponse()
            self.outcome["response"] = (resp.status, resp.read())
        except Exception as exc:
            self.outcome["error"] = exc
        finally:
            conn.close()

    def result(self, timeout: float = 20.0) -> Tuple[int, bytes]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "no response"
        assert "response" in self.outcome, f"request failed: {self.outcome.get('error')!r}"
        return self.outcome["response"]  # type: ignore[return-value]


# ----------------------------------------------------------------- item 6: SIGTERM and run()


@posix_only
def test_run_in_main_thread_finishes_in_flight_request_on_sigterm(server_process):
    """issue 13 item 6: create_server().run() in the main thread was killed by SIGTERM
    (rc -15) and the in-flight response lost; it must stop as serve() does."""
    p = server_process("run")
    req = InFlight(p.port, "/slow?1")
    pid = int(p.wait_for(r"SLOW-START (\d+)").group(1))
    p.send_signal(signal.SIGTERM)
    assert req.result() == (200, f"done by {pid}".encode())
    assert p.wait_exit(10) == 0, p.output
    assert "RETURNED" in p.output


@posix_only
def test_run_with_workers_sigterm_drains_and_stops_every_worker(server_process):
    """issue 13 item 6: with workers=2, SIGTERM killed the parent of run() and the
    workers kept serving, orphaned; now each worker drains and all exit."""
    p = server_process("run", workers=2)
    req = InFlight(p.port, "/slow?1")
    pid = int(p.wait_for(r"SLOW-START (\d+)").group(1))
    assert pid in p.workers
    p.send_signal(signal.SIGTERM)
    assert req.result() == (200, f"done by {pid}".encode())
    assert p.wait_exit(10) == 0, p.output
    assert gone_within(p.workers, 1.0), "a worker outlived its parent"


@posix_only
@pytest.mark.parametrize("no_pdeathsig", [False, True], ids=["pdeathsig", "pipe"])
def test_workers_exit_when_the_parent_is_killed(server_process, no_pdeathsig):
    """issue 13 item 6: workers must die with their parent, even a SIGKILLed one
    (PR_SET_PDEATHSIG on Linux, the pipe check elsewhere: both are tried here)."""
    p = server_process("serve", workers=2, no_pdeathsig=no_pdeathsig)
    assert all(alive(pid) for pid in p.workers)
    assert get(p.port, "/").status == 200
    p.proc.kill()
    p.proc.wait(5)
    assert gone_within(p.workers, 5.0), f"workers orphaned: {p.output!r}"


@posix_only
def test_close_with_workers_finishes_in_flight_request(server_process):
    """issue 13 item 6: close() with workers returned at once and dropped in-flight
    requests; it must drain each worker as SIGTERM does."""
    p = server_process("close", workers=2)
    req = InFlight(p.port, "/slow?1")
    pid = int(p.wait_for(r"SLOW-START (\d+)").group(1))
    assert p.proc.stdin is not None
    p.proc.stdin.write("close\n")
    p.proc.stdin.flush()
    assert req.result() == (200, f"done by {pid}".encode())
    assert p.wait_exit(10) == 0, p.output
    assert "RETURNED" in p.output
    assert gone_within(p.workers, 1.0)


def test_run_in_main_thread_restores_sigterm_and_keeps_an_app_handler():
    """issue 13 item 6: run() handles SIGTERM only while it runs, and only in place of
    the default action (a handler the application installed stays in charge)."""
    def mine(signum, frame):  # pragma: no cover - never delivered
        pass

    for before in (signal.SIG_DFL, mine):
        previous = signal.signal(signal.SIGTERM, before)
        try:
            server = maitre.create_server(lambda e, s: [], host=HOST, port=0)
            seen = []
            timer = threading.Timer(0.2, lambda: (seen.append(signal.getsignal(signal.SIGTERM)), server.close()))
            timer.start()
            server.run()
            timer.join()
            assert signal.getsignal(signal.SIGTERM) is before
            if before is mine:
                assert seen == [mine]
            else:
                assert seen and seen[0] not in (signal.SIG_DFL, None)
        finally:
            signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------- item 4: no endless wait


@posix_only
def test_sigint_does_not_wait_for_an_app_past_the_drain_deadline(server_process):
    """issue 13 item 4: an app sleeping 12 s with a 1 s drain deadline kept the process
    11.6 s after SIGINT; it must exit soon after the 1 s drain deadline."""
    p = server_process("serve", graceful_timeout=1)
    InFlight(p.port, "/slow?12")
    p.wait_for("SLOW-START")
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    assert p.wait_exit(8) == 0, p.output
    assert time.monotonic() - t0 < 3.5
    assert "RETURNED" in p.output


@posix_only
def test_an_app_blocked_forever_does_not_keep_the_process(server_process):
    """issue 13 item 4: an app blocked forever kept the process forever after SIGINT."""
    p = server_process("run", graceful_timeout=1)
    InFlight(p.port, "/block")
    p.wait_for("BLOCK-START")
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    assert p.wait_exit(8) == 0, p.output
    assert time.monotonic() - t0 < 3.5


@posix_only
@pytest.mark.parametrize("how", ["serve", "run"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_signal_stops_at_once(server_process, how, signum, workers):
    """issue 13 item 4: a second Ctrl-C (or SIGTERM) during the drain did nothing; it
    must end the process at once, worker processes included."""
    p = server_process(how, graceful_timeout=60, workers=workers)
    InFlight(p.port, "/block")
    p.wait_for("BLOCK-START")
    p.send_signal(signum)
    time.sleep(1.0)
    assert p.proc.poll() is None, f"the first signal must drain, not exit: {p.proc.returncode} {p.output!r}"
    t0 = time.monotonic()
    p.send_signal(signum)
    p.wait_exit(4)
    assert time.monotonic() - t0 < 2.0
    assert gone_within(p.workers, 1.0), "a worker outlived its parent"


def test_run_returns_although_an_app_thread_never_finishes(serve):
    """issue 13 item 4: after the drain deadline run() joined the worker threads
    without bound; a thread stuck in the app is now left behind."""
    release = threading.Event()

    def app(environ, start_response):
        release.wait(30)
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    s = serve(app, graceful_timeout=1)
    try:
        with Conn(s.port) as c:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)  # in the app
            t0 = time.monotonic()
            s.server.close()
            s.thread.join(4)
            assert not s.thread.is_alive(), "run() waited for a thread stuck in the app"
            assert time.monotonic() - t0 >= 0.9, "the drain deadline was not honoured"
    finally:
        release.set()


# ----------------------------------------------------------------- item 5: Engine.wait


def _engine():
    config = maitre.Options(host=HOST, port=0).engine_config()

    def app(environ, start_response):
        start_response("204 No Content", [])
        return []

    return Engine(app, config, Listeners(config))


def test_engine_wait_infinite_timeout_waits_until_closed():
    """issue 13 item 5: Engine.wait(float('inf')) raised PanicException."""
    engine = _engine()
    engine.start()
    outcome: list = []

    def waiter() -> None:
        try:
            outcome.append(engine.wait(float("inf")))
        except BaseException as exc:  # PanicException is a BaseException
            outcome.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    assert outcome == [], "wait(inf) returned while the server runs"
    engine.close()
    t.join(5)
    assert outcome == [True]


def test_engine_wait_odd_timeouts():
    """issue 13 item 5: huge and negative timeouts do not panic; NaN is a ValueError."""
    engine = _engine()
    engine.start()
    try:
        t0 = time.monotonic()
        assert engine.wait(-1.0) is False
        assert engine.wait(0.0) is False
        assert time.monotonic() - t0 < 1.0
        with pytest.raises(ValueError, match="NaN"):
            engine.wait(float("nan"))
    finally:
        engine.close()
    assert engine.wait(1e300) is True
    assert engine.wait(float("inf")) is True
