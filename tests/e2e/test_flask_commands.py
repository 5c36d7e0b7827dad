"""Flask as its users start it: ``maitre.flask.run(app)`` in a script (port from the
argument or ``FLASK_RUN_PORT``) and ``flask --app ... maitre``, each a real process on a
free port, talked to over real sockets."""

from __future__ import annotations

import hashlib
import os
import sys

import pytest

pytest.importorskip("flask")
requests = pytest.importorskip("requests")

import maitre.flask  # noqa: E402
from conftest import Conn  # noqa: E402

from . import flask_app  # noqa: E402
from .conftest import REPO_ROOT, Spawned, console_script  # noqa: E402

FLASK = console_script("flask", "flask")
APP = "tests.e2e.flask_app:app"


def run_script(call: str) -> list:
    module, name = APP.split(":")
    return [sys.executable, "-c", f"import maitre.flask\nfrom {module} import {name}\n{call}"]


# how users start it -> (argv, environment)
STARTS = {
    # the argument wins over the environment (a bad FLASK_RUN_PORT would fail)
    "run_port_argument": (run_script("maitre.flask.run(app, port=0, ident='flask-e2e')"),
                          {"FLASK_RUN_PORT": "not-a-port"}),
    "run_FLASK_RUN_PORT": (run_script("maitre.flask.run(app, ident='flask-e2e', threads=2)"),
                           {"FLASK_RUN_PORT": "0"}),
    "flask_maitre": ([*FLASK, "--app", APP, "maitre", "--port=0", "--ident=flask-e2e"], {}),
}


@pytest.fixture(scope="module", params=list(STARTS))
def flask_server(request):
    argv, env = STARTS[request.param]
    process = Spawned(argv, REPO_ROOT, env)
    try:
        yield process.wait_serving()
    finally:
        process.kill()


def test_address_is_flask_runs_default_host_and_the_port_given(flask_server):
    assert flask_server.host == "127.0.0.1"
    # port 0 (argument or FLASK_RUN_PORT) was used, not the default 5000
    assert flask_server.port != maitre.flask.DEFAULT_PORT


def test_hello_with_options_applied(flask_server):
    r = requests.get(flask_server.url("/"))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["Server"] == "flask-e2e"
    assert r.content == b"hello from flask\n"


def test_json_round_trip(flask_server):
    r = requests.post(flask_server.url("/json"), json={"a": [1, 2], "b": "é"})
    assert r.status_code == 200
    assert r.json()["received"] == {"a": [1, 2], "b": "é"}
    assert r.json()["content_type"] == "application/json"


def test_streaming_response_in_order(flask_server):
    with Conn(flask_server.port) as conn:
        conn.send(b"GET /stream?name=e2e HTTP/1.1\r\nHost: t\r\n\r\n")
        r = conn.read_response()
    assert r.status == 200
    assert r.header("Transfer-Encoding") == "chunked"
    assert r.body == b"stream for e2e\n" + b"".join(flask_app.STREAM_PARTS)
    assert len(r.chunks) > 1


def test_multipart_upload_5_mib(flask_server):
    data = os.urandom(5 * 1024 * 1024)
    r = requests.post(
        flask_server.url("/upload"),
        files={"file": ("big.bin", data, "application/octet-stream")},
        data={"note": "five"},
    )
    assert r.status_code == 200
    body = r.json()
    assert (body["size"], body["sha256"], body["note"]) == (
        len(data), hashlib.sha256(data).hexdigest(), "five")


def test_flask_maitre_finds_factory_and_settings_in_flaskenv(spawn, tmp_path):
    pytest.importorskip("dotenv")
    (tmp_path / "factory_app.py").write_text(
        "from flask import Flask\n\n"
        "def create_app():\n"
        "    app = Flask(__name__)\n"
        "    app.add_url_rule('/', 'home', lambda: 'made by the factory')\n"
        "    return app\n"
    )
    # FLASK_APP and FLASK_RUN_PORT as flask run reads them; FLASK_MAITRE_* is click's
    # environment name for each option of the command.
    (tmp_path / ".flaskenv").write_text(
        "FLASK_APP=factory_app:create_app\nFLASK_RUN_PORT=0\nFLASK_MAITRE_IDENT=from-flaskenv\n"
    )
    server = spawn([*FLASK, "maitre"], cwd=str(tmp_path)).wait_serving()
    assert server.port != maitre.flask.DEFAULT_PORT
    r = requests.get(server.url("/"))
    assert r.status_code == 200
    assert r.text == "made by the factory"
    assert r.headers["Server"] == "from-flaskenv"


def test_flask_maitre_bad_option_value_names_it(spawn):
    process = spawn([*FLASK, "--app", APP, "maitre", "--port=0", "--threads=0"])
    assert process.wait_exit() == 2
    assert "threads must be a positive integer, got '0'" in process.output
    assert "Serving on" not in process.output


def test_flask_maitre_help_lists_the_option_table(spawn):
    process = spawn([*FLASK, "--app", APP, "maitre", "--help"])
    assert process.wait_exit() == 0
    for flag in ("--channel-timeout", "--expose-tracebacks / --no-expose-tracebacks", "--workers"):
        assert flag in process.output
    assert "FLASK_RUN_PORT, else 5000" in process.output


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    "env, args, options, expected",
    [
        ({}, (None, None), {}, {"host": "127.0.0.1", "port": 5000}),
        ({"FLASK_RUN_HOST": "0.0.0.0", "FLASK_RUN_PORT": "8000"}, (None, None), {},
         {"host": "0.0.0.0", "port": "8000"}),
        ({"FLASK_RUN_HOST": "", "FLASK_RUN_PORT": ""}, (None, None), {},
         {"host": "127.0.0.1", "port": 5000}),
        ({"FLASK_RUN_HOST": "0.0.0.0", "FLASK_RUN_PORT": "8000"}, ("::1", 9000), {},
         {"host": "::1", "port": 9000}),
        ({"FLASK_RUN_PORT": "8000"}, (None, None), {"listen": "127.0.0.1:1"}, {}),
        ({}, (None, 0), {"listen": "127.0.0.1:1"}, {"host": "127.0.0.1", "port": 0}),
    ],
)
def test_address_follows_flask_run(monkeypatch, env, args, options, expected):
    for name in ("FLASK_RUN_HOST", "FLASK_RUN_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert maitre.flask._address(*args, options) == expected
