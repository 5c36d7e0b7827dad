"""Django as its users start it: ``manage.py prodserver web`` (django-prodserver with the
maitre backend) and ``manage.py maitre`` (maitre's own app), on the project in ``djproject/``,
each a real process on a free port, talked to over real sockets."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time

import pytest

pytest.importorskip("django")
pytest.importorskip("django_prodserver")
pytest.importorskip("whitenoise")
requests = pytest.importorskip("requests")

from conftest import Conn  # noqa: E402

from .conftest import SERVING, Spawned  # noqa: E402

PROJECT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "djproject")
LOCAL = ["--host=127.0.0.1", "--port=0"]
STREAM = b"".join(b"chunk %03d\n" % i for i in range(200))

# (how users start it) -> the manage.py arguments
STARTS = {
    "prodserver": ["prodserver", "web"],  # django-prodserver 2.x's name (3.x: deprecated)
    "server": ["server", "web"],  # django-prodserver 3.x's name for it
    "manage_maitre": ["maitre", *LOCAL, "--threads=4"],
}


def manage(*args: str) -> list:
    return [sys.executable, "manage.py", *args]


@pytest.fixture(scope="module", params=list(STARTS))
def django_server(request):
    if request.param == "server":
        import django_prodserver.management.commands as commands

        if not os.path.exists(os.path.join(os.path.dirname(commands.__file__), "server.py")):
            pytest.skip("this django-prodserver has no 'server' command (before 3.0)")
    process = Spawned(manage(*STARTS[request.param]), PROJECT, None)
    try:
        yield process.wait_serving()
    finally:
        process.kill()


@pytest.fixture
def client():
    with requests.Session() as session:
        yield session


def test_json_view(django_server, client):
    r = client.get(django_server.url("/json?x=1"))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Server"] == "maitre"
    assert r.json() == {"framework": "django", "path": "/json", "method": "GET"}


def test_csrf_form_get_sets_cookie_and_post_with_token_passes(django_server, client):
    page = client.get(django_server.url("/form"))
    assert page.status_code == 200
    assert "csrftoken" in page.cookies
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    r = client.post(django_server.url("/form"), data={"csrfmiddlewaretoken": token, "name": "Ada"})
    assert r.status_code == 200
    assert r.text == "thanks, Ada"


def test_csrf_post_without_token_is_403(django_server, client):
    client.get(django_server.url("/form"))  # the cookie alone is not enough
    r = client.post(django_server.url("/form"), data={"name": "Mallory"})
    assert r.status_code == 403
    assert "CSRF" in r.text


def test_streaming_response_many_chunks_in_order(django_server):
    with Conn(django_server.port) as conn:
        conn.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        r = conn.read_response()
    assert r.status == 200
    assert r.header("Transfer-Encoding") == "chunked"
    assert not r.has_header("Content-Length")
    assert r.body == STREAM
    assert b"".join(r.chunks) == STREAM and len(r.chunks) > 1


def test_multipart_upload_5_mib(django_server, client):
    data = os.urandom(5 * 1024 * 1024)
    r = client.post(django_server.url("/upload"), files={"file": ("big.bin", data)})
    assert r.status_code == 200
    assert r.json() == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_static_file_through_whitenoise(django_server, client):
    r = client.get(django_server.url("/static/djsite/hello.txt"))
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.content == b"static file served by WhiteNoise\n"


def test_admin_login_page(django_server, client):
    r = client.get(django_server.url("/admin/login/"))
    assert r.status_code == 200
    assert "csrftoken" in r.cookies
    assert 'name="username"' in r.text and 'name="password"' in r.text


# --------------------------------------------------------------------------- prodserver ARGS


def test_prodserver_flags_spelled_as_for_waitress(spawn):
    """``{"expose-tracebacks": None, "no-ipv6": None, "ident": ...}`` reach the server."""
    server = spawn(manage("prodserver", "flags"), cwd=PROJECT).wait_serving()
    r = requests.get(server.url("/boom"))
    assert r.status_code == 500
    assert r.headers["Server"] == "djsite-flags"
    assert "RuntimeError: djsite view failed" in r.text  # expose-tracebacks is on


def test_prodserver_unknown_args_key_is_a_clear_error(spawn):
    process = spawn(manage("prodserver", "bad"), cwd=PROJECT)
    assert process.wait_exit() != 0
    assert "ARGS key 'bogus-knob'" in process.output
    assert "Serving on" not in process.output


def test_prodserver_sigterm_stops_cleanly(spawn):
    server = spawn(manage("prodserver", "web"), cwd=PROJECT).wait_serving()
    assert requests.get(server.url("/json")).status_code == 200
    assert server.terminate() == 0


# --------------------------------------------------------------------------- manage.py maitre


def test_manage_maitre_help_lists_the_option_table(spawn):
    process = spawn(manage("maitre", "--help"), cwd=PROJECT)
    assert process.wait_exit() == 0
    for flag in ("--channel-timeout", "--no-expose-tracebacks", "--listen", "--workers"):
        assert flag in process.output
    assert "--reload" in process.output


def test_manage_maitre_bad_option_value_names_it(spawn):
    process = spawn(manage("maitre", *LOCAL, "--threads=0"), cwd=PROJECT)
    assert process.wait_exit() != 0
    assert "CommandError: threads must be a positive integer, got '0'" in process.output


def test_manage_maitre_options_reach_the_server(spawn):
    server = spawn(
        manage("maitre", "--listen=127.0.0.1:0", "--ident=djsite-cli", "--expose-tracebacks"),
        cwd=PROJECT,
    ).wait_serving()
    r = requests.get(server.url("/boom"))
    assert r.status_code == 500
    assert r.headers["Server"] == "djsite-cli"
    assert "RuntimeError: djsite view failed" in r.text


def test_manage_maitre_reload_restarts_on_code_change(spawn, tmp_path):
    project = str(tmp_path / "djproject")
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    server = spawn(manage("maitre", *LOCAL, "--reload"), cwd=project).wait_serving()
    assert requests.get(server.url("/json")).json()["framework"] == "django"

    views = os.path.join(project, "djsite", "views.py")
    with open(views) as f:
        source = f.read()
    with open(views, "w") as f:
        f.write(source.replace('"framework": "django"', '"framework": "reloaded"'))
    # The reloader's first look at the files may come after the write: move the mtime on
    # until it notices (it polls once a second).
    deadline = time.monotonic() + 15
    while len(server.matches(SERVING)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        os.utime(views)
    # port 0: the restarted server logs the new port it got
    server.wait_serving(count=2)
    assert "djsite/views.py changed, reloading" in server.output
    assert requests.get(server.url("/json")).json()["framework"] == "reloaded"
