"""maitre: a WSGI server with a Rust engine, a drop-in replacement for waitress.

    from maitre import serve
    serve(app, host="0.0.0.0", port=8000, threads=4)
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from maitre._maitre import Engine, Listeners, __version__
from maitre.options import Options
from maitre.supervisor import Supervisor

__all__ = ["serve", "create_server", "Server", "Options", "__version__"]

logger = logging.getLogger("maitre")


class Server:
    """A bound, not yet running server: what :func:`create_server` returns.

    The listening sockets are bound when the object is created, so
    ``effective_listen`` already holds the real addresses (port 0 gives a free port).
    With ``workers=N`` (N > 1), :meth:`run` forks N worker processes that share them.
    """

    def __init__(self, app: Callable[..., Any], options: Options) -> None:
        self.application = app
        self.options = options
        config = options.engine_config()
        self._listeners = Listeners(config)
        self._engine: Optional[Engine] = None
        self._supervisor: Optional[Supervisor] = None
        if options.workers > 1:
            self._supervisor = Supervisor(
                app, config, self._listeners, options.workers,
                stop_timeout=float(options.channel_timeout) + 5.0,
            )
        else:
            self._engine = Engine(app, config, self._listeners)

    @property
    def effective_listen(self) -> List[Tuple[str, int]]:
        """Every ``(host, port)`` actually bound, in ``listen`` order."""
        return list(self._listeners.effective_listen)

    @property
    def effective_host(self) -> str:
        """The host of the first listener (waitress's attribute of the same name)."""
        return self.effective_listen[0][0]

    @property
    def effective_port(self) -> int:
        """The port of the first listener (waitress's attribute of the same name)."""
        return self.effective_listen[0][1]

    def print_listen(self, format_str: str) -> None:
        """Log each listener with ``format_str.format(host, port)``, as waitress does."""
        for host, port in self.effective_listen:
            if ":" in host:
                host = f"[{host}]"
            logger.info(format_str.format(host, port))

    def run(self) -> None:
        """Serve until :meth:`close` is called or SIGINT/SIGTERM arrives, then stop cleanly.

        Stopping means: stop accepting, let in-flight responses finish, close every
        connection, join the worker threads (and worker processes), return.
        """
        if self._supervisor is not None:
            self._supervisor.run()
            return
        assert self._engine is not None
        self._engine.start()
        try:
            while not self._engine.wait(None):
                pass
        except (KeyboardInterrupt, SystemExit):
            logger.info("Stopping: finishing in-flight requests")
        finally:
            self._engine.close()
            self._engine.wait(None)

    def close(self) -> None:
        """Ask the server to stop; safe from any thread, returns at once."""
        if self._supervisor is not None:
            self._supervisor.stop_requested.set()
        else:
            assert self._engine is not None
            self._engine.close()

    def stats(self) -> Dict[str, int]:
        """Live counters: the engine's (connections, requests, queue depth), or with
        worker processes the parent's (workers alive, restarts)."""
        if self._supervisor is not None:
            return self._supervisor.stats()
        assert self._engine is not None
        return dict(self._engine.stats())


def create_server(app: Callable[..., Any], **kw: Any) -> Server:
    """Validate ``kw`` (waitress's option names), bind the listeners, return a :class:`Server`.

    Raises ``ValueError`` naming the option for an unknown option or a bad value.
    """
    return Server(app, Options(**kw))


def _raise_system_exit(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def serve(app: Callable[..., Any], **kw: Any) -> None:
    """Serve ``app`` until SIGINT (Ctrl-C) or SIGTERM, then stop cleanly and return.

    Takes waitress's options with the same names, defaults and meaning, e.g.
    ``serve(app, host="0.0.0.0", port=8000, threads=4)``.
    """
    quiet = kw.pop("_quiet", False)
    if not quiet:
        logging.basicConfig()
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    server = create_server(app, **kw)
    if not quiet:
        server.print_listen("Serving on http://{}:{}")
    previous = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        # SIGTERM's default action kills the process mid-response; turn it into
        # the same clean stop as Ctrl-C.
        previous = signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        server.run()
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
