"""Flask: :func:`run` in place of ``app.run()``, and the ``flask maitre`` command.

    import maitre.flask
    maitre.flask.run(app)                      # http://127.0.0.1:5000/, like flask run

    flask --app hello maitre --threads=8       # the app flask's CLI finds, maitre's options

Both take ``flask run``'s address defaults: ``FLASK_RUN_HOST`` / ``FLASK_RUN_PORT`` from the
environment (or ``.flaskenv`` with python-dotenv), else ``127.0.0.1:5000``; ``host``,
``port`` or ``listen`` given explicitly win.  ``flask maitre`` is registered through the
``flask.commands`` entry point, so installing maitre is enough.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Union

import click
from click.core import ParameterSource
from flask.cli import ScriptInfo, pass_script_info
from flask.cli import load_dotenv as _load_dotenv

import maitre
from maitre.cli import command_line_options, option_help, option_strings
from maitre.options import Options

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "maitre_command", "run"]

#: ``flask run``'s defaults.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
_ADDRESS_HELP = {
    "host": f"Default: FLASK_RUN_HOST, else {DEFAULT_HOST}.",
    "port": f"Default: FLASK_RUN_PORT, else {DEFAULT_PORT}.",
}


def _address(
    host: Optional[str], port: Union[int, str, None], options: Dict[str, Any]
) -> Dict[str, Any]:
    """``host`` and ``port`` as ``flask run`` picks them; none at all when only ``listen``
    is given (listen replaces them; given together, ``serve`` refuses the mix)."""
    if "listen" in options and host is None and port is None:
        return {}
    # An empty variable counts as unset, as click treats flask run's.
    return {
        "host": host if host is not None else os.environ.get("FLASK_RUN_HOST") or DEFAULT_HOST,
        "port": port if port is not None else os.environ.get("FLASK_RUN_PORT") or DEFAULT_PORT,
    }


def run(
    app: Callable[..., Any],
    host: Optional[str] = None,
    port: Union[int, str, None] = None,
    *,
    load_dotenv: bool = True,
    **options: Any,
) -> None:
    """Serve ``app`` with maitre until SIGINT/SIGTERM: the production ``app.run()``.

    ``host`` and ``port`` default to ``FLASK_RUN_HOST`` / ``FLASK_RUN_PORT``, then to
    ``127.0.0.1`` and ``5000``.  ``options`` are any of maitre's (``threads=8``,
    ``listen=...``, ``url_scheme="https"``...).  As ``app.run()`` does, ``.env`` and
    ``.flaskenv`` are loaded first when python-dotenv is installed, unless
    ``load_dotenv=False``.  Raises ``ValueError`` naming a bad option.
    """
    if load_dotenv:
        _load_dotenv()
    maitre.serve(app, **_address(host, port, options), **options)


def _click_options() -> List[click.Option]:
    params: List[click.Option] = []
    for option in command_line_options():
        if option.name in _ADDRESS_HELP:
            text = f"{option.help} {_ADDRESS_HELP[option.name]}"
        else:
            text = option_help(option)
        if option.is_flag:
            decl = f"{option.cli_name}/--no-{option.cli_name[2:]}"
            params.append(click.Option([decl, option.name], default=None, help=text))
        else:
            params.append(
                click.Option(
                    [option.cli_name, option.name],
                    metavar=option.metavar,
                    multiple=option.name == "listen",
                    help=text,
                )
            )
    return params


@click.command(
    "maitre",
    params=_click_options(),
    short_help="Serve the app with maitre (production WSGI server).",
    help="Serve the application Flask's CLI finds (--app, FLASK_APP, a factory) with "
    "maitre, a production WSGI server. Takes every option of maitre-serve; the address "
    "defaults to flask run's (FLASK_RUN_HOST, FLASK_RUN_PORT, else 127.0.0.1:5000).",
)
@pass_script_info
def maitre_command(info: ScriptInfo, **values: Any) -> None:
    """``flask maitre [OPTIONS]``: serve the app Flask's CLI finds with maitre."""
    ctx = click.get_current_context()
    # Only what was given (command line or FLASK_MAITRE_* variables), so unset options
    # keep maitre's defaults and a lone --listen does not meet a default host/port.
    given = {
        name: value
        for name, value in values.items()
        if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
    }
    kw: Dict[str, Any] = option_strings(given)
    kw.update(_address(kw.pop("host", None), kw.pop("port", None), kw))
    try:
        Options(**kw)
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from None
    app = info.load_app()
    try:
        maitre.serve(app, **kw)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
