"""systemd without libsystemd: the readiness protocol (``Type=notify``), a datagram
to the unix socket named by ``NOTIFY_SOCKET``; and socket activation, listening
sockets handed over from descriptor 3 on, as ``LISTEN_FDS``/``LISTEN_PID`` say.
Both are silent where systemd did not ask."""

from __future__ import annotations

import logging
import os
import socket
from typing import List

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


SD_LISTEN_FDS_START = 3


def listen_sockets() -> List[socket.socket]:
    """The listening sockets systemd passed to this process (socket activation), or
    none. The variables are removed once read, as sd_listen_fds(1) does, so a child
    process does not take the sockets for its own."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    finally:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    sockets = [socket.socket(fileno=SD_LISTEN_FDS_START + i) for i in range(max(count, 0))]
    for sock in sockets:
        logger.info("Using the listening socket systemd passed: %s", sock.getsockname())
    return sockets
