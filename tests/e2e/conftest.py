"""Helpers for the end-to-end tests.

The ``serve`` fixture and the raw-socket tools come from ``tests/conftest.py`` (the
parent conftest applies here; its helpers are imported as ``from conftest import ...``).
This file adds:

* ``session`` (fixture): a ``requests.Session`` closed on teardown;
* ``url(running, path)``: ``http://127.0.0.1:<port><path>``;
* ``ServeProcess`` / ``serve_process`` (fixture): ``maitre-serve`` in a subprocess on a
  free port, killed on teardown if a test left it running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional

import pytest

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def maitre_serve_command() -> List[str]:
    """The ``maitre-serve`` console script beside this interpreter, else ``python -m maitre``
    (never one found on PATH: it could belong to another Python)."""
    script = os.path.join(os.path.dirname(sys.executable), "maitre-serve")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", "maitre"]


class ServeProcess:
    """``maitre-serve [args] APP`` run from the repository root on a free port."""

    def __init__(self, app_spec: str, *args: str, command: Optional[List[str]] = None) -> None:
        self.port = free_port()
        argv = (command or maitre_serve_command()) + [f"--listen={HOST}:{self.port}", *args, app_spec]
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout = ""
        self.stderr = ""

    def wait_accepting(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stdout, self.stderr = self.proc.communicate()
                pytest.fail(f"server exited early with {self.proc.returncode}: {self.stderr}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.kill()
        pytest.fail(f"server did not accept on {HOST}:{self.port} within {timeout}s")

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait for the exit; return the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"server did not exit within {timeout}s of SIGTERM: {self.stderr}")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.stdout, self.stderr = self.proc.communicate()


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
