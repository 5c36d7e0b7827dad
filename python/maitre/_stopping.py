"""How a server stops: SIGINT (Ctrl-C) or SIGTERM starts a drain (stop accepting,
finish in-flight responses, at most until the drain deadline); the same signal
again during the drain stops at once."""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from maitre._maitre import Engine
from maitre._systemd import notify

logger = logging.getLogger("maitre")

STOP_SIGNALS = (KeyboardInterrupt, SystemExit)


def raise_system_exit(signum: int, frame: Any) -> None:
    raise SystemExit(0)


@contextmanager
def sigterm_stops() -> Iterator[None]:
    """While the block runs in the main thread, SIGTERM raises ``SystemExit(0)`` as
    Ctrl-C raises ``KeyboardInterrupt``, instead of killing the process mid-response.

    Only SIGTERM's default action is replaced: a handler the application installed
    stays in charge.  Signal handlers can only be set from the main thread.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, raise_system_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_engine(engine: Engine, tell_systemd: bool = False) -> None:
    """Starts ``engine`` and serves until it is closed or a signal arrives, then drains.

    A second signal during the drain propagates at once (``KeyboardInterrupt`` or
    ``SystemExit``); the engine then finishes its drain in the background. With
    ``tell_systemd`` (the main process, not a worker), systemd hears of both.
    """
    engine.start()
    if tell_systemd:
        notify("READY=1")
    try:
        try:
            while not engine.wait(None):
                pass
        except STOP_SIGNALS:
            if tell_systemd:
                notify("STOPPING=1")
            logger.info("Stopping: finishing in-flight requests (signal again to stop at once)")
    finally:
        engine.close()
        try:
            engine.wait(None)
        except STOP_SIGNALS:
            logger.warning("Stopping at once: in-flight requests are dropped")
            raise
