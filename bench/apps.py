"""WSGI applications the benchmark serves; one per case (see CASES in run.py).

Every server under test imports the same function from this module, so the only
thing that differs between the rows of a table is the server.
"""

PLAINTEXT_BODY = b"Hello, world!"
PLAINTEXT_HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(PLAINTEXT_BODY))),
]


def plaintext(environ, start_response):
    """The TechEmpower-style plaintext hello world: 13 bytes, Content-Length set, one-element list."""
    start_response("200 OK", PLAINTEXT_HEADERS)
    return [PLAINTEXT_BODY]


# `bench.apps:app` / `apps:app`: the default application.
app = plaintext
