"""WSGI applications the benchmark serves; one per case (see CASES in run.py).

Every server under test imports the same function from this module, so the only
thing that differs between the rows of a table is the server.
"""

import time

PLAINTEXT_BODY = b"Hello, world!"
PLAINTEXT_HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(PLAINTEXT_BODY))),
]


def plaintext(environ, start_response):
    """The TechEmpower-style plaintext hello world: 13 bytes, Content-Length set, one-element list."""
    start_response("200 OK", PLAINTEXT_HEADERS)
    return [PLAINTEXT_BODY]


LARGE_BODY = b"x" * (1 << 20)  # built once, at import
LARGE_HEADERS = [
    ("Content-Type", "application/octet-stream"),
    ("Content-Length", str(len(LARGE_BODY))),
]


def large(environ, start_response):
    """A 1 MiB response body: one bytes object, one-element list, Content-Length set."""
    start_response("200 OK", LARGE_HEADERS)
    return [LARGE_BODY]


def echo(environ, start_response):
    """Reads the whole request body from wsgi.input and sends it back, Content-Length set."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    start_response("200 OK", [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(len(body))),
    ])
    return [body]


SLEEP_SECONDS = 0.010


def sleep10(environ, start_response):
    """Blocks its thread for 10 ms (a stand-in for a database or API call), then hello world.
    Throughput is bounded by threads / 10 ms: what it measures is how well the server keeps
    its worker threads busy, not how fast it parses HTTP."""
    time.sleep(SLEEP_SECONDS)
    start_response("200 OK", PLAINTEXT_HEADERS)
    return [PLAINTEXT_BODY]


# `bench.apps:app` / `apps:app`: the default application.
app = plaintext
