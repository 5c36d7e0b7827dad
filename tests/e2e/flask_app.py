"""A small but real Flask application for the end-to-end tests.

Importable on its own (no test helpers), so ``maitre-serve tests.e2e.flask_app:app``
serves it in a subprocess too.

* ``app``: the application under test (Flask handles view exceptions itself: 500 page).
* ``propagating_app``: ``PROPAGATE_EXCEPTIONS=True``, so a view exception reaches the
  server, which must answer 500 on its own.
* ``STREAM_GATE``: ``/stream?gate=1`` waits on it after the first chunk, so a test can
  prove that chunk reached the client before the rest was produced.
"""

from __future__ import annotations

import hashlib
import threading

from flask import (
    Flask,
    Response,
    abort,
    jsonify,
    redirect,
    request,
    stream_with_context,
    url_for,
)

app = Flask(__name__)

STREAM_GATE = threading.Event()
STREAM_GATE_RESULTS: list = []
STREAM_PARTS = [b"part-%d:" % i + bytes([97 + i]) * (1000 * (i + 1)) + b"\n" for i in range(5)]


@app.route("/")
def hello():
    return Response("hello from flask\n", mimetype="text/plain")


@app.route("/json", methods=["POST"])
def json_round_trip():
    data = request.get_json()
    return jsonify(
        received=data,
        content_length=request.content_length,
        content_type=request.content_type,
    )


@app.route("/form", methods=["POST"])
def form():
    return jsonify(
        fields={key: request.form.getlist(key) for key in request.form},
        query=request.args.get("q"),
    )


@app.route("/upload", methods=["POST"])
def upload():
    stored = request.files["file"]
    data = stored.read()
    return jsonify(
        filename=stored.filename,
        content_type=stored.content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        note=request.form.get("note"),
        other_files=sorted(k for k in request.files if k != "file"),
    )


@app.route("/stream")
def stream():
    gate = request.args.get("gate") == "1"

    def generate():
        # request is only reachable here thanks to stream_with_context
        yield b"stream for " + request.args.get("name", "nobody").encode() + b"\n"
        if gate:
            STREAM_GATE_RESULTS.append(STREAM_GATE.wait(10))
        for part in STREAM_PARTS:
            yield part

    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.route("/stream-fail")
def stream_fail():
    def generate():
        yield b"first part\n"
        raise RuntimeError("generator failed mid-stream")

    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.route("/redirect")
def go_home():
    return redirect(url_for("hello"))


@app.route("/abort")
def aborted():
    abort(500)


@app.route("/boom")
def boom():
    raise RuntimeError("flask view failed")


@app.route("/headers")
def headers():
    return jsonify(
        x_custom=request.headers.get("X-Custom"),
        x_multi=request.headers.get("X-Multi"),
        user_agent=request.headers.get("User-Agent"),
        host=request.host,
        remote_addr=request.remote_addr,
        remote_port=request.environ.get("REMOTE_PORT"),
        scheme=request.scheme,
        method=request.method,
        server_software=request.environ.get("SERVER_SOFTWARE"),
        query=request.args.to_dict(flat=False),
    )


@app.route("/where")
def where():
    return jsonify(
        script_root=request.script_root,
        path=request.path,
        full_path=request.full_path,
        url_for=url_for("where"),
        url_for_external=url_for("where", _external=True),
        base_url=request.base_url,
        url_root=request.url_root,
    )


propagating_app = Flask(__name__)
propagating_app.config["PROPAGATE_EXCEPTIONS"] = True


@propagating_app.route("/")
def propagating_hello():
    return Response("still here\n", mimetype="text/plain")


@propagating_app.route("/boom")
def propagating_boom():
    raise RuntimeError("propagated to the server")
