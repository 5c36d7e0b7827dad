"""WSGI applications the benchmark serves; one per case (see CASES in run.py).

Every server under test imports the same function from this module, so the only
thing that differs between the rows of a table is the server.
"""

import os
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


# The big-body cases read one file that run.py creates once (bench/.data is not committed).
DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".data", "100MiB.bin")
DATA_SIZE = 100 << 20
BLOCK = 64 * 1024


def _open_data():
    f = open(DATA_FILE, "rb")
    return f, [("Content-Type", "application/octet-stream"),
               ("Content-Length", str(os.fstat(f.fileno()).st_size))]


def stream(environ, start_response):
    """The 100 MiB file in fresh 64 KiB bytes objects, as an app generating or proxying data
    does (unlike `large`, which reuses one object); Content-Length set."""
    f, headers = _open_data()
    start_response("200 OK", headers)
    return iter(lambda: f.read(BLOCK), b"")


def file_wrapper(environ, start_response):
    """The 100 MiB file through the server's wsgi.file_wrapper, 4 KiB blocks (Django's
    FileResponse block size); Content-Length set. Without a file_wrapper (granian has none),
    4 KiB reads, as Django falls back to."""
    f, headers = _open_data()
    start_response("200 OK", headers)
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is None:
        return iter(lambda: f.read(4096), b"")
    return wrapper(f, 4096)


def upload(environ, start_response):
    """Reads the request body in 64 KiB blocks until read() returns b"" and answers with the
    number of bytes read."""
    read = environ["wsgi.input"].read
    total = 0
    while True:
        block = read(BLOCK)
        if not block:
            break
        total += len(block)
    body = str(total).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


CHUNK = b"Hello, world!\n"
CHUNK_COUNT = 10


def _ten_chunks():
    for _ in range(CHUNK_COUNT):
        yield CHUNK


def chunks(environ, start_response):
    """A generator of 10 small chunks and no Content-Length: the server sends it chunked."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _ten_chunks()


# The JSON body of the flask and django cases.
JSON_FIELDS = {"message": "Hello, world!", "id": 1, "ok": True}


def _flask_json():
    from flask import Flask, jsonify

    app = Flask(__name__)

    @app.route("/")
    def index():
        return jsonify(**JSON_FIELDS)

    return app


def _django_site():
    # bench/djangoapp: default middleware, `/` a JsonResponse, `/file` a FileResponse.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoapp.settings")
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


_FRAMEWORKS = {"flask_json": _flask_json, "django_site": _django_site}


def __getattr__(name):
    """flask_json and django_site are built on first access (module __getattr__), so that the
    servers of the other cases neither import nor carry the frameworks."""
    if name not in _FRAMEWORKS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = globals()[name] = _FRAMEWORKS[name]()
    return app


# `bench.apps:app` / `apps:app`: the default application.
app = plaintext
