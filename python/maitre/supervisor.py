"""Worker processes (``workers=N``): the parent forks N copies of the server,
each with its own event loop and threads, all on the listening sockets it bound
before forking; it replaces a worker that dies and stops them all on SIGTERM,
SIGINT or :meth:`maitre.Server.close`.

The sockets are bound once, before fork, rather than once per worker with
``SO_REUSEPORT``: the accept queue then belongs to the shared socket, so a
worker that dies takes no queued connection with it, port 0 works, and it
behaves the same on every Unix (``SO_REUSEPORT`` balances only on Linux).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Dict

from maitre._maitre import Engine, Listeners

logger = logging.getLogger("maitre")

# A worker that dies within this many seconds of starting is restarted only
# after a pause, so a crash at start-up does not become a fork loop.
_QUICK_DEATH = 1.0
_RESTART_PAUSE = 1.0


def serve_in_worker(
    app: Callable[..., Any], config: Dict[str, Any], listeners: Listeners
) -> None:
    """Runs one worker's engine until it is told to stop (in the forked child)."""
    engine = Engine(app, config, listeners)
    engine.start()
    try:
        while not engine.wait(None):
            pass
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        engine.close()
        engine.wait(None)


class Supervisor:
    """Forks and watches the worker processes of one server."""

    def __init__(
        self,
        app: Callable[..., Any],
        config: Dict[str, Any],
        listeners: Listeners,
        workers: int,
        stop_timeout: float,
    ) -> None:
        self.app = app
        self.config = config
        self.listeners = listeners
        self.workers = workers
        self.stop_timeout = stop_timeout
        self.children: Dict[int, float] = {}  # pid -> start time
        self.restarts = 0
        self.stop_requested = threading.Event()

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 0
            try:
                serve_in_worker(self.app, self.config, self.listeners)
            except BaseException:
                logger.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = time.monotonic()
        logger.info("Started worker process %d", pid)

    def run(self) -> None:
        """Forks the workers, supervises them, stops them; returns when all are gone."""
        for _ in range(self.workers):
            self._spawn()
        try:
            while not self.stop_requested.is_set():
                if not self._reap(restart=True):
                    self.stop_requested.wait(0.1)
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self._stop_all()

    def _reap(self, restart: bool) -> bool:
        """Collects one dead worker (restarting it if asked); False if none died."""
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0 or pid not in self.children:
            return False
        started = self.children.pop(pid)
        if restart:
            logger.warning(
                "Worker process %d %s; starting a new one", pid, _describe_exit(status)
            )
            if time.monotonic() - started < _QUICK_DEATH:
                self.stop_requested.wait(_RESTART_PAUSE)
            if not self.stop_requested.is_set():
                self.restarts += 1
                self._spawn()
        return True

    def _stop_all(self) -> None:
        """SIGTERM every worker (each finishes its in-flight requests), then wait;
        SIGKILL what is still there after ``stop_timeout``."""
        for pid in list(self.children):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while self.children and time.monotonic() < deadline:
            if not self._reap(restart=False):
                time.sleep(0.05)
        for pid in list(self.children):
            logger.warning("Worker process %d did not stop in time; killing it", pid)
            _signal(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.children.pop(pid, None)
        self.listeners.close()

    def stats(self) -> Dict[str, int]:
        """What the parent knows: how many workers run, and how many were replaced."""
        return {
            "workers": self.workers,
            "workers_alive": len(self.children),
            "worker_restarts": self.restarts,
        }


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.WEXITSTATUS(status)}"

