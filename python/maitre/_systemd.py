"""systemd's readiness protocol (``Type=notify``): a datagram to the unix socket
named by ``NOTIFY_SOCKET``; no libsystemd needed. Silent where it is not set."""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger("maitre")


def notify(state: str) -> None:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd if it asked for notifications."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path or not hasattr(socket, "AF_UNIX"):
        return
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall(state.encode())
    except OSError as e:
        logger.warning("could not notify systemd (%s) of %s: %s", path.lstrip("\0"), state, e)
