"""A django-prodserver backend: ``python manage.py prodserver web`` serves with maitre.

    PRODUCTION_PROCESSES = {
        "web": {
            "BACKEND": "maitre.contrib.django_prodserver.MaitreServer",
            "ARGS": {"host": "0.0.0.0", "port": "8000", "threads": "4", "channel-timeout": "60"},
        }
    }

``ARGS`` are written as for django-prodserver's waitress backend: each key is a
``maitre-serve`` (``waitress-serve``) option with dashes, each value a string, a flag is
``{"expose-tracebacks": None}`` or ``{"no-ipv6": None}``.  maitre's own options
(``workers``) are accepted too.  An unknown key or a bad value stops the command with an
error naming it, before anything is served.  Needs ``pip install "maitre[django]"``.
"""

from __future__ import annotations

import getopt
from typing import Any, List

from django.core.management.base import CommandError
from django_prodserver.backends.base import BaseServerBackend
from django_prodserver.utils import wsgi_app_name

from maitre import cli
from maitre.options import Options

__all__ = ["MaitreServer"]


class MaitreServer(BaseServerBackend):
    """Serve the project's ``WSGI_APPLICATION`` with maitre, configured by ``ARGS``."""

    def __init__(self, **server_args: Any) -> None:
        """Turn ``ARGS`` into ``maitre-serve`` arguments and check them all now.

        Raises ``CommandError`` naming the first unknown key or bad value.
        """
        super().__init__(**server_args)
        try:
            invocation = cli.parse_args(list(self.args))
            Options(**invocation.kw)
        except getopt.GetoptError as exc:
            raise CommandError(f"maitre backend: ARGS key {exc.opt!r}: {exc}") from None
        except ValueError as exc:
            raise CommandError(f"maitre backend: bad value in ARGS: {exc}") from None
        if invocation.args:
            raise CommandError(
                f"maitre backend: ARGS holds {' '.join(invocation.args)!r}, not an option; "
                "the application is always WSGI_APPLICATION"
            )

    def prep_server_args(self) -> List[str]:
        """The ``maitre-serve`` command line: the options from ``ARGS``, then the app."""
        return [*self.args, wsgi_app_name()]

    def start_server(self, *args: str) -> None:
        """Run ``maitre-serve`` in this process until SIGINT/SIGTERM."""
        status = cli.main(list(args))
        if status:
            raise SystemExit(status)
