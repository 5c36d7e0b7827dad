"""maitre: a WSGI server with a Rust engine, a drop-in replacement for waitress.

    from maitre import serve
    serve(app, host="0.0.0.0", port=8000, threads=4)
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

from maitre._maitre import Engine, Listeners, __version__
from maitre._stopping import run_engine, sigterm_stops
from maitre._systemd import listen_sockets, notify
from maitre.options import Options
from maitre.supervisor import Supervisor

if TYPE_CHECKING:
    from maitre._maitre import StatsDict

__all__ = ["serve", "serve_paste", "create_server", "Server", "Options", "__version__"]

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
                # A worker drains for at most graceful_timeout, then needs a
                # moment to exit.
                stop_timeout=float(options.graceful_timeout) + 2.0,
            )
        else:
            self._engine = Engine(app, config, self._listeners)

    @property
    def effective_listen(self) -> List[Tuple[str, Union[int, str]]]:
        """Every ``(host, port)`` actually bound, in ``listen`` order, then the
        ``sockets`` given; a Unix socket is ``("unix", path)``, as in waitress."""
        return list(self._listeners.effective_listen)

    @property
    def effective_metrics(self) -> Optional[Tuple[str, int]]:
        """The metrics endpoint's ``(host, port)``, or None without ``metrics``."""
        return self._listeners.effective_metrics

    @property
    def effective_host(self) -> str:
        """The host of the first listener (waitress's attribute of the same name)."""
        return self.effective_listen[0][0]

    @property
    def effective_port(self) -> Union[int, str]:
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

        Stopping means: stop accepting, let requests already received finish (for at
        most ``graceful_timeout`` seconds), close every connection, and return once
        the worker threads (and worker processes) are gone; a worker thread still
        inside the application after that is left behind.  The same signal again
        stops at once: it propagates as ``KeyboardInterrupt`` or ``SystemExit``.

        In the main thread, SIGTERM stops the server as Ctrl-C does while ``run``
        runs, unless the application installed a SIGTERM handler of its own.
        """
        with sigterm_stops():
            if self._supervisor is not None:
                self._supervisor.run()
            else:
                assert self._engine is not None
                run_engine(self._engine, tell_systemd=True)

    def close(self) -> None:
        """Ask the server to stop as SIGTERM does; safe from any thread, returns at once.

        :meth:`run` returns once in-flight responses are finished (in every worker
        process) or the drain deadline passed.
        """
        notify("STOPPING=1")
        if self._supervisor is not None:
            self._supervisor.stop_requested.set()
        else:
            assert self._engine is not None
            self._engine.close()

    def stats(self) -> "StatsDict":
        """The live numbers (see README, "Live numbers"): listeners, connections,
        requests, threads and latency histograms; with worker processes their sum, each
        worker's own under ``"workers"``, and the parent's under ``"supervisor"``."""
        if self._supervisor is not None:
            return self._supervisor.stats()
        assert self._engine is not None
        stats: "StatsDict" = json.loads(self._engine.stats_json())
        return stats


def create_server(app: Callable[..., Any], **kw: Any) -> Server:
    """Validate ``kw`` (waitress's option names), bind the listeners, return a :class:`Server`.

    Raises ``ValueError`` naming the option for an unknown option or a bad value.
    Under systemd socket activation (``LISTEN_FDS``), the sockets systemd passed are
    served, instead of the addresses given, unless ``sockets`` is given.
    """
    if "sockets" not in kw:
        activated = listen_sockets()
        if activated:
            # The unit's sockets decide where to listen; an address in the
            # command line or config is what the service would bind without them.
            ignored = [name for name in ("host", "port", "listen", "unix_socket") if name in kw]
            if ignored:
                logger.info("Socket activation: %s not used", ", ".join(ignored))
            kw = {k: v for k, v in kw.items() if k not in ignored}
            kw["sockets"] = activated
    return Server(app, Options(**kw))


def serve_paste(app: Callable[..., Any], global_conf: Dict[str, Any], **kw: Any) -> int:
    """The PasteDeploy server runner (``use = egg:maitre#main`` in a ``[server:main]``
    section, as ``egg:waitress#main``): ``kw`` are the section's options, strings that
    :class:`Options` converts as waitress does."""
    serve(app, **kw)
    return 0


def serve(app: Callable[..., Any], **kw: Any) -> None:
    """Serve ``app`` until SIGINT (Ctrl-C) or SIGTERM, then stop cleanly and return.

    Takes waitress's options with the same names, defaults and meaning, e.g.
    ``serve(app, host="0.0.0.0", port=8000, threads=4)``.  A second signal while
    in-flight requests finish stops at once (see :meth:`Server.run`).
    """
    quiet = kw.pop("_quiet", False)
    if not quiet:
        logging.basicConfig()
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    server = create_server(app, **kw)
    if not quiet:
        server.print_listen("Serving on http://{}:{}")
    server.run()
