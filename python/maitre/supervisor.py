"""Worker processes (``workers=N``): the parent forks N copies of the server,
each with its own event loop and threads, all on the listening sockets it bound
before forking; it replaces a worker that dies and stops them all on SIGTERM,
SIGINT or :meth:`maitre.Server.close`.

Stopping sends SIGTERM to every worker, which drains as a single-process server
does, and SIGKILLs the ones still there after the drain deadline; a second
signal to the parent SIGKILLs them at once.  Workers ignore SIGINT: Ctrl-C
reaches the whole process group, and the parent turns it into that SIGTERM.
A worker dies with its parent however the parent dies: on Linux the kernel
sends it SIGTERM (``PR_SET_PDEATHSIG``), elsewhere it watches a pipe whose
write end only the parent holds.

The sockets are bound once, before fork: by default every worker takes from
the shared socket's one accept queue, so a worker that dies takes no queued
connection with it, port 0 works, and it behaves the same on every Unix.  With
``reuse_port`` (Linux) the parent binds, also before fork, one socket per worker
on each TCP address in one ``SO_REUSEPORT`` group, and worker ``i`` serves
socket ``i`` (its replacement too): the kernel spreads connections over the
workers' own queues, and since the parent keeps every socket open, a dead
worker's queue waits for its replacement instead of being reset.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Optional, Tuple

from maitre import _maitre
from maitre._maitre import Engine, Listeners
from maitre._stopping import STOP_SIGNALS, raise_system_exit, run_engine
from maitre._systemd import notify

if TYPE_CHECKING:
    from maitre._maitre import StatsDict

logger = logging.getLogger("maitre")

# A worker that dies within this many seconds of starting is restarted only
# after a pause, so a crash at start-up does not become a fork loop.
_QUICK_DEATH = 1.0
_RESTART_PAUSE = 1.0


def serve_in_worker(
    app: Callable[..., Any], config: Dict[str, Any], listeners: Listeners, slot: int
) -> None:
    """Runs one worker's engine until it is told to stop (in the forked child),
    counting into stats slot ``slot``."""
    run_engine(Engine(app, config, listeners, slot))


def _become_worker(
    parent: int, lifeline: Optional[Tuple[int, int]], mask: Iterable[int]
) -> bool:
    """Sets up a freshly forked worker's signals, then restores the signal ``mask``
    that :meth:`Supervisor._spawn` blocked; False if its parent is gone already."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, raise_system_exit)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if lifeline is None:
        _maitre.set_parent_death_signal(signal.SIGTERM)
        # The parent may have died before prctl: the worker is then an orphan.
        return os.getppid() == parent
    read_end, write_end = lifeline
    os.close(write_end)
    threading.Thread(
        target=_stop_at_eof, args=(read_end,), name="maitre-parent-watch", daemon=True
    ).start()
    return True


def _stop_at_eof(fd: int) -> None:
    """SIGTERMs this worker once the pipe's last write end, the parent's, closes."""
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


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
        # pid -> stats slot: a replacement counts on where the dead worker stopped.
        self.slots: Dict[int, int] = {}
        self.restarts = 0
        self.stop_requested = threading.Event()
        # Without PR_SET_PDEATHSIG, a pipe whose read end reaches EOF in each
        # worker when the parent dies.
        self._lifeline: Optional[Tuple[int, int]] = None

    def _spawn(self, slot: int) -> None:
        parent = os.getpid()
        # Held back until the pid is recorded (a signal handled in between would
        # lose the worker) and, in the worker, until its own handlers are set.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            pid = os.fork()
            if pid == 0:  # the worker: never returns into the parent's code
                code = 0
                try:
                    if _become_worker(parent, self._lifeline, mask):
                        serve_in_worker(self.app, self.config, self.listeners, slot)
                except SystemExit:  # SIGTERM during start-up, or a second one
                    pass
                except BaseException:
                    logger.exception("worker %d failed", os.getpid())
                    code = 1
                finally:
                    logging.shutdown()
                    os._exit(code)
            self.children[pid] = time.monotonic()
            self.slots[pid] = slot
            logger.info("Started worker process %d", pid)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def run(self) -> None:
        """Forks the workers, supervises them, stops them; returns when all are gone.

        Call it from a thread that outlives the workers: on Linux a worker gets its
        SIGTERM when the thread that forked it exits.
        """
        if not hasattr(_maitre, "set_parent_death_signal"):
            self._lifeline = os.pipe()
        try:
            try:
                for slot in range(self.workers):
                    self._spawn(slot)
                notify("READY=1")
                while not self.stop_requested.is_set():
                    if not self._reap(restart=True):
                        self.stop_requested.wait(0.1)
            except STOP_SIGNALS:
                notify("STOPPING=1")
                logger.info(
                    "Stopping: worker processes finish their in-flight requests "
                    "(signal again to stop at once)"
                )
            self._stop_all()
        finally:
            self._kill_all()
            if self._lifeline is not None:
                for fd in self._lifeline:
                    os.close(fd)
                self._lifeline = None
            self.listeners.close()

    def _reap(self, restart: bool) -> bool:
        """Collects one dead worker (restarting it if asked); False if none died."""
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0 or pid not in self.children:
            return False
        started = self.children.pop(pid)
        slot = self.slots.pop(pid)
        if restart:
            logger.warning(
                "Worker process %d %s; starting a new one", pid, _describe_exit(status)
            )
            if time.monotonic() - started < _QUICK_DEATH:
                self.stop_requested.wait(_RESTART_PAUSE)
            if not self.stop_requested.is_set():
                self.restarts += 1
                self._spawn(slot)
        return True

    def _stop_all(self) -> None:
        """SIGTERM every worker (each finishes its in-flight requests), then wait;
        what is still there after ``stop_timeout`` is left to :meth:`_kill_all`."""
        for pid in list(self.children):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        try:
            while self.children and time.monotonic() < deadline:
                if not self._reap(restart=False):
                    time.sleep(0.05)
        except STOP_SIGNALS:
            logger.warning("Stopping at once: killing the worker processes")
            raise
        for pid in self.children:
            logger.warning("Worker process %d did not stop in time; killing it", pid)

    def _kill_all(self) -> None:
        """SIGKILLs and reaps every worker still there."""
        for pid in self.children:
            _signal(pid, signal.SIGKILL)
        for pid in list(self.children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.children.pop(pid, None)
            self.slots.pop(pid, None)

    def stats(self) -> "StatsDict":
        """Every worker's numbers, summed and each its own (read from the memory they
        share with the parent), and the parent's: workers alive, restarts."""
        stats: "StatsDict" = json.loads(self.listeners.stats_json())
        stats["supervisor"] = {
            "workers": self.workers,
            "alive": len(self.children),
            "restarts": self.restarts,
        }
        return stats


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.WEXITSTATUS(status)}"

