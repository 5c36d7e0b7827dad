"""``maitre-serve``: the command-line runner, a drop-in for ``waitress-serve``.

    maitre-serve [--option=value ...] [--call] MODULE:CALLABLE

Every option of :mod:`maitre.options` is a long option: underscores become dashes
(``--max-request-body-size=1048576``), booleans are ``--name`` / ``--no-name``, and
``--listen`` may be repeated.  ``python -m maitre`` is the same command.

The framework commands (``manage.py maitre``, ``flask maitre``) build their own parsers
from the same rows (:func:`command_line_options`, :func:`option_help`) and hand what they
parsed to :func:`option_strings`, so every command line takes the same options.
"""

from __future__ import annotations

import difflib
import getopt
import os
import pkgutil
import sys
import textwrap
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, TextIO

import maitre
from maitre.options import OPTIONS, OPTIONS_BY_NAME, Option, Options

__all__ = [
    "AppLoadError",
    "Invocation",
    "command_line_options",
    "help_text",
    "load_app",
    "main",
    "option_help",
    "option_strings",
    "parse_args",
]

_SECTIONS = ("Standard", "Tuning", "Proxy")
_RUNNER_FLAGS = ("help", "call")


@dataclass
class Invocation:
    """What the command line asked for, before any option is validated."""

    kw: Dict[str, str] = field(default_factory=dict)
    args: List[str] = field(default_factory=list)
    help: bool = False
    call: bool = False


class AppLoadError(Exception):
    """The application could not be imported, built by ``--call``, or is not callable."""


def command_line_options() -> List[Option]:
    """The rows of the option table that a command line offers (all but ``sockets``)."""
    return [option for option in OPTIONS if option.cli]


def option_strings(values: Mapping[str, Any]) -> Dict[str, str]:
    """Turn what a command-line parser produced into the string options ``serve`` takes.

    ``values`` maps option names to a string, ``True``/``False`` for a flag, or a list of
    strings for a repeated ``--listen``; ``None`` or an empty list means "not given" and
    is left out.  Flags become ``"true"``/``"false"``, several ``listen`` values one
    space-separated string, other values ``str(value)``.
    """
    kw: Dict[str, str] = {}
    for name, value in values.items():
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        if isinstance(value, bool):
            kw[name] = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            kw[name] = " ".join(str(item) for item in value)
        else:
            kw[name] = str(value)
    return kw


def _long_opts() -> List[str]:
    longs = list(_RUNNER_FLAGS)
    for option in command_line_options():
        name = option.cli_name[2:]
        if option.is_flag:
            longs += [name, "no-" + name]
        else:
            longs.append(name + "=")
    return longs


def parse_args(argv: List[str]) -> Invocation:
    """Split ``argv`` (without the program name) into option strings and positionals.

    Values stay strings (``Options`` coerces them, as waitress does); a flag becomes
    ``"true"`` and its ``--no-`` form ``"false"``; repeated ``--listen`` values are
    joined with spaces.  Raises ``getopt.GetoptError`` for an unknown or malformed option.
    """
    longs = _long_opts()
    try:
        pairs, args = getopt.gnu_getopt(argv, "", longs)
    except getopt.GetoptError as exc:
        raise getopt.GetoptError(_with_suggestion(exc, longs), exc.opt) from None
    result = Invocation(args=list(args))
    values: Dict[str, Any] = {}
    for opt, value in pairs:
        name = opt[2:].replace("-", "_")
        if name in _RUNNER_FLAGS:
            setattr(result, name, True)
        elif name == "listen":
            values.setdefault("listen", []).append(value)
        elif name.startswith("no_") and name not in OPTIONS_BY_NAME:
            values[name[3:]] = False
        elif OPTIONS_BY_NAME[name].is_flag:
            values[name] = True
        else:
            values[name] = value
    result.kw = option_strings(values)
    return result


def _with_suggestion(exc: getopt.GetoptError, longs: List[str]) -> str:
    message = str(exc)
    if exc.opt and "not recognized" in message:
        close = difflib.get_close_matches(exc.opt, [name.rstrip("=") for name in longs], n=1)
        if close:
            message += f" (did you mean --{close[0]}?)"
    elif exc.opt and "must not have an argument" in message:
        message += f" (write --{exc.opt} or --no-{exc.opt})"
    return message


def _wrap(text: str, indent: str) -> str:
    return textwrap.fill(text, width=79, initial_indent=indent, subsequent_indent=indent)


def option_help(option: Option) -> str:
    """One option's help text, as every command line shows it (with its default)."""
    return option.help + f" Default: {option.default_text}."


def _describe(option: Option) -> str:
    name = option.cli_name[2:]
    head = f"--[no-]{name}" if option.is_flag else f"--{name}={option.metavar}"
    return f"    {head}\n{_wrap(option_help(option), ' ' * 8)}\n"


def help_text(prog: str = "maitre-serve") -> str:
    """The ``--help`` text, built from the option table."""
    parts = [
        "Usage:\n",
        f"    {prog} [OPTIONS] MODULE:CALLABLE\n",
        _wrap(
            "Serve the WSGI application CALLABLE, found in the importable MODULE, with "
            "maitre. Accepts the options of waitress-serve.",
            "",
        )
        + "\n",
        "Runner options:\n",
        "    --help\n        Show this help and exit.\n",
        "    --call\n"
        + _wrap(
            "Treat MODULE:CALLABLE as a factory: call it with no arguments and serve "
            "the application it returns.",
            " " * 8,
        )
        + "\n",
    ]
    for section in _SECTIONS:
        rows = [_describe(o) for o in command_line_options() if o.section == section]
        if rows:
            parts.append(f"{section} options:\n")
            parts.extend(rows)
    return "\n".join(parts)


def load_app(spec: str, call: bool = False) -> Callable[..., Any]:
    """Import ``module:callable`` (or ``module.attr``), call it first when ``call``.

    The current directory is appended to ``sys.path``, as waitress-serve does.  Raises
    :class:`AppLoadError` with a readable message on any failure.
    """
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        app = pkgutil.resolve_name(spec)
    except (ValueError, ImportError, AttributeError) as exc:
        raise AppLoadError(
            f"cannot import the application {spec!r}: {type(exc).__name__}: {exc}"
        ) from exc
    except Exception as exc:
        raise AppLoadError(
            f"importing the application {spec!r} raised an exception:\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        ) from exc
    if call:
        try:
            app = app()
        except Exception as exc:
            raise AppLoadError(
                f"calling the factory {spec!r} (--call) raised an exception:\n"
                + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            ) from exc
    if not callable(app):
        hint = "" if call else " (use --call if it is a factory)"
        raise AppLoadError(f"{spec!r} is a {type(app).__name__}, not a WSGI callable{hint}")
    application: Callable[..., Any] = app
    return application


def _error(stream: TextIO, prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=stream)
    print(f"Run '{prog} --help' for the options.", file=stream)
    return 1


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    """Run ``maitre-serve`` with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    0 after a clean stop (Ctrl-C / SIGTERM) or ``--help``; 1 for a bad option, an
    application that cannot be loaded, or addresses that cannot be bound; 130 after
    a second Ctrl-C cut the drain short.
    """
    if argv is None:
        argv = sys.argv[1:]
    if prog is None:
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "maitre-serve"

    try:
        invocation = parse_args(list(argv))
    except getopt.GetoptError as exc:
        return _error(sys.stderr, prog, str(exc))

    if invocation.help:
        sys.stdout.write(help_text(prog))
        return 0

    if len(invocation.args) != 1:
        found = " ".join(invocation.args) or "none"
        return _error(
            sys.stderr, prog, f"give exactly one application MODULE:CALLABLE (got: {found})"
        )

    try:
        Options(**invocation.kw)
    except ValueError as exc:
        return _error(sys.stderr, prog, str(exc))

    try:
        app = load_app(invocation.args[0], call=invocation.call)
    except AppLoadError as exc:
        return _error(sys.stderr, prog, str(exc))

    try:
        maitre.serve(app, **invocation.kw)
    except OSError as exc:
        return _error(sys.stderr, prog, str(exc))
    except KeyboardInterrupt:  # a second Ctrl-C: stopped without draining
        return 130
    return 0
