"""Helpers for the end-to-end tests.

The ``serve`` fixture and the raw-socket tools come from ``tests/conftest.py`` (the
parent conftest applies here; its helpers are imported as ``from conftest import ...``).
This file adds:

* ``session`` (fixture): a ``requests.Session`` closed on teardown;
* ``url(running, path)``: ``http://127.0.0.1:<port><path>``;
* ``ServeProcess`` / ``serve_process`` (fixture): ``maitre-serve`` in a subprocess on
  port 0 (it logs the real one), killed on teardown if a test left it running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from typing import List, Optional

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


def maitre_serve_command() -> List[str]:
    """The ``maitre-serve`` console script beside this interpreter, else ``python -m maitre``
    (never one found on PATH: it could belong to another Python)."""
    script = os.path.join(os.path.dirname(sys.executable), "maitre-serve")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", "maitre"]


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
