"""``python manage.py maitre [OPTIONS]``: serve ``WSGI_APPLICATION`` with maitre.

The options are those of ``maitre-serve``, built from the option table, plus ``--reload``.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.servers.basehttp import get_internal_wsgi_application
from django.utils import autoreload

import maitre
from maitre.cli import command_line_options, option_help, option_strings
from maitre.options import Options


class Command(BaseCommand):
    """Serve the project's ``WSGI_APPLICATION`` with maitre."""

    help = (
        "Serve this project's WSGI_APPLICATION with maitre, a production WSGI server. "
        "Takes every option of maitre-serve (waitress-serve's options); --reload "
        "restarts the server when code changes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """One argparse option per row of the option table, then ``--reload``."""
        for option in command_line_options():
            # argparse %-formats help strings.
            common: Dict[str, Any] = {
                "dest": option.name,
                "default": None,
                "help": option_help(option).replace("%", "%%"),
            }
            if option.is_flag:
                parser.add_argument(
                    option.cli_name, action=argparse.BooleanOptionalAction, **common
                )
            elif option.name == "listen":
                parser.add_argument(
                    option.cli_name, action="append", metavar=option.metavar, **common
                )
            else:
                parser.add_argument(option.cli_name, metavar=option.metavar, **common)
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Restart the server when Python code changes, with Django's autoreloader "
            "(as runserver does). For development; off by default.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Validate the options, then serve (under the autoreloader with ``--reload``)."""
        given = {option.name: options[option.name] for option in command_line_options()}
        kw = option_strings(given)
        try:
            checked = Options(**kw)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["reload"]:
            if checked.workers > 1:
                # The reloader runs the server in a thread of its child process; forking
                # worker processes from there would escape its restarts.
                raise CommandError("--reload serves from one process: drop --workers")
            autoreload.run_with_reloader(self._serve, **kw)
        else:
            self._serve(**kw)

    def _serve(self, **kw: str) -> None:
        application = get_internal_wsgi_application()
        try:
            maitre.serve(application, **kw)
        except OSError as exc:
            raise CommandError(str(exc)) from None
