"""A tiny WSGI application to try maitre with: ``python -m maitre maitre.demo:app``.

* ``/``        a short page saying "maitre is serving"
* ``/echo``    POST (or PUT) a body, get it back with the same Content-Type
* ``/environ`` the WSGI environ of the request, as plain text
"""

from __future__ import annotations

import html
from typing import Any, Callable, Dict, Iterable, List, Tuple

__all__ = ["app"]

StartResponse = Callable[..., Any]

_PAGE = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>maitre</title></head>
<body>
<h1>maitre is serving</h1>
<p>This is the demo application of maitre, a WSGI server.</p>
<ul>
<li><a href="{prefix}/environ">{prefix}/environ</a>: the WSGI environ of your request</li>
<li>POST to {prefix}/echo: the body comes back</li>
</ul>
</body>
</html>
"""


def _reply(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str,
    extra: Iterable[Tuple[str, str]] = (),
) -> List[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    headers.extend(extra)
    start_response(status, headers)
    return [body]


def _read_body(environ: Dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    if length:
        try:
            size = int(length)
        except ValueError:
            return b""
        return bytes(stream.read(size))
    if environ.get("wsgi.input_terminated"):
        return bytes(stream.read())
    return b""


def app(environ: Dict[str, Any], start_response: StartResponse) -> List[bytes]:
    """The demo WSGI application."""
    path = environ.get("PATH_INFO", "") or "/"
    method = environ.get("REQUEST_METHOD", "GET")

    if path == "/":
        prefix = html.escape(environ.get("SCRIPT_NAME", ""))
        return _reply(
            start_response, "200 OK", _PAGE.format(prefix=prefix).encode("utf-8"),
            "text/html; charset=utf-8",
        )

    if path == "/echo":
        if method not in ("POST", "PUT"):
            return _reply(
                start_response, "405 Method Not Allowed",
                b"POST or PUT a body to /echo\n", "text/plain; charset=utf-8",
                [("Allow", "POST, PUT")],
            )
        body = _read_body(environ)
        content_type = environ.get("CONTENT_TYPE") or "application/octet-stream"
        return _reply(start_response, "200 OK", body, content_type)

    if path == "/environ":
        lines = [f"{key} = {environ[key]!r}" for key in sorted(environ)]
        text = "\n".join(lines) + "\n"
        return _reply(
            start_response, "200 OK", text.encode("utf-8", "backslashreplace"),
            "text/plain; charset=utf-8",
        )

    return _reply(
        start_response, "404 Not Found", b"Not Found\n", "text/plain; charset=utf-8"
    )
