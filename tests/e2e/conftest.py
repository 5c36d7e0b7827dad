"""Helpers for the end-to-end tests.

The ``serve`` fixture and the raw-socket tools come from ``tests/conftest.py`` (the
parent conftest applies here; its helpers are imported as ``from conftest import ...``).
This file adds:

* ``session`` (fixture): a ``requests.Session`` closed on teardown;
* ``url(running, path)``: ``http://127.0.0.1:<port><path>``;
* ``serve_process`` (fixture): ``maitre-serve`` in a subprocess on port 0 (it logs the
  real one), a ``Spawned`` from ``tests/conftest.py`` (as is ``spawn``, for any command
  that starts a server: ``manage.py``, ``flask``...).
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import pytest

from conftest import REPO_ROOT, SERVING, Spawned  # noqa: F401 (re-exported to the e2e tests)

HOST = "127.0.0.1"


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


@pytest.fixture
def serve_process(spawn):
    """``serve_process(APP, *args, command=None)``: ``maitre-serve --listen=127.0.0.1:0
    [args] APP`` from the repository root, once it serves (``port`` is the real one)."""

    def _start(app_spec: str, *args: str, command: Optional[List[str]] = None) -> Spawned:
        argv = (command or maitre_serve_command()) + [f"--listen={HOST}:0", *args, app_spec]
        return spawn(argv).wait_serving()

    return _start




