"""Helpers for the end-to-end tests.

The ``serve`` fixture and the raw-socket tools come from ``tests/conftest.py`` (the
parent conftest applies here; its helpers are imported as ``from conftest import ...``).
This file adds:

* ``session`` (fixture): a ``requests.Session`` closed on teardown;
* ``url(running, path)``: ``http://127.0.0.1:<port><path>``;
* ``ServeProcess`` / ``serve_process`` (fixture): ``maitre-serve`` in a subprocess on
  port 0 (it logs the real one), killed on teardown if a test left it running.
* ``Spawned`` / ``spawn`` (fixture): any command that starts a server (``manage.py``,
  ``flask``...) in its own process group; ``wait_serving()`` reads the port back from
  its ``Serving on http://HOST:PORT`` log line (so it can listen on port 0), and the
  whole group is killed on teardown.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence

import pytest

from conftest import wait_serving

HOST = "127.0.0.1"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def url(running, path: str = "/") -> str:
    return f"http://{running.host}:{running.port}{path}"


@pytest.fixture
def session():
    requests = pytest.importorskip("requests")
    s = requests.Session()
    yield s
    s.close()


def console_script(name: str, module: str) -> List[str]:
    """The console script ``name`` beside this interpreter, else ``python -m module``
    (never one found on PATH: it could belong to another Python)."""
    script = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", module]


def maitre_serve_command() -> List[str]:
    return console_script("maitre-serve", "maitre")


class ServeProcess:
    """``maitre-serve --listen=127.0.0.1:0 [args] APP`` run from the repository root;
    ``port`` is the one it logs once :meth:`wait_accepting` returned."""

    def __init__(self, app_spec: str, *args: str, command: Optional[List[str]] = None) -> None:
        self.port = 0
        argv = (command or maitre_serve_command()) + [f"--listen={HOST}:0", *args, app_spec]
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self._logs = tempfile.TemporaryDirectory(prefix="maitre-e2e-")
        self._out = os.path.join(self._logs.name, "stdout")
        self._err = os.path.join(self._logs.name, "stderr")
        with open(self._out, "w") as out, open(self._err, "w") as err:
            self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=err, text=True)
        self.stdout = ""
        self.stderr = ""

    def wait_accepting(self, timeout: float = 20.0) -> None:
        """Wait for the "Serving on" line (the socket listens from then on)."""
        try:
            self.port = wait_serving(self.proc, self._err, timeout)
        except BaseException:
            self.kill()
            raise

    def _collect(self) -> None:
        with open(self._out) as out, open(self._err) as err:
            self.stdout, self.stderr = out.read(), err.read()
        self._logs.cleanup()

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait for the exit; return the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"server did not exit within {timeout}s of SIGTERM: {self.stderr}")
        self._collect()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self._collect()


@pytest.fixture
def serve_process():
    started: List[ServeProcess] = []

    def _start(app_spec: str, *args: str, command: Optional[List[str]] = None) -> ServeProcess:
        p = ServeProcess(app_spec, *args, command=command)
        started.append(p)
        p.wait_accepting()
        return p

    yield _start
    for p in started:
        p.kill()


SERVING = re.compile(r"Serving on http://([0-9.]+):([0-9]+)")


class Spawned:
    """A server command in its own process group, its output (stdout and stderr) collected."""

    def __init__(self, argv: Sequence[str], cwd: str, env: Optional[Dict[str, str]]) -> None:
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # a new session: the group holds every process it starts (e.g. the reloader's child)
            start_new_session=True,
        )
        self.host = HOST
        self.port = 0
        self._lines: List[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def matches(self, pattern: "re.Pattern[str]") -> List["re.Match[str]"]:
        """Every output line so far that matches ``pattern``."""
        with self._changed:
            return [m for m in map(pattern.search, self._lines) if m]

    def wait_for(
        self, pattern: "re.Pattern[str]", count: int = 1, timeout: float = 20.0
    ) -> "re.Match[str]":
        """The ``count``-th output line matching ``pattern``; fails if the process exits first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = self.matches(pattern)
                if len(matches) >= count:
                    return matches[count - 1]
                if not self._reader.is_alive():
                    pytest.fail(f"{self.argv} exited ({self.proc.poll()}) before printing "
                                f"{pattern.pattern!r}:\n{''.join(self._lines)}")
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{self.argv} did not print {pattern.pattern!r} within "
                                f"{timeout}s:\n{''.join(self._lines)}")
                self._changed.wait(left)

    def wait_serving(self, count: int = 1) -> "Spawned":
        """Wait for the ``count``-th ``Serving on`` line and take its address."""
        match = self.wait_for(SERVING, count)
        self.host, self.port = match.group(1), int(match.group(2))
        return self

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit by itself; return its exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.argv} did not exit within {timeout}s:\n{self.output}")
        self._reader.join(5)
        return code

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM to the process alone (as a service manager sends it); its exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL the whole group, leader gone or not: no stray server survives."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._reader.join(5)


@pytest.fixture
def spawn():
    """``spawn(argv, cwd=REPO_ROOT, env=None)``: start a :class:`Spawned`; killed on teardown."""
    started: List[Spawned] = []

    def _spawn(
        argv: Sequence[str], cwd: str = REPO_ROOT, env: Optional[Dict[str, str]] = None
    ) -> Spawned:
        process = Spawned(argv, cwd, env)
        started.append(process)
        return process

    yield _spawn
    for process in started:
        process.kill()
