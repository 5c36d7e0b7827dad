"""Falcon, Pyramid and Bottle hello apps, each started as the README shows:
``maitre-serve MODULE:app`` in a process of its own, on a free port."""

from __future__ import annotations

import pytest

requests = pytest.importorskip("requests")

from .conftest import maitre_serve_command  # noqa: E402

FRAMEWORKS = ["falcon", "pyramid", "bottle"]


@pytest.fixture(params=FRAMEWORKS)
def framework_server(request, spawn):
    pytest.importorskip(request.param)
    argv = [*maitre_serve_command(), "--host=127.0.0.1", "--port=0",
            f"tests.e2e.{request.param}_app:app"]
    return request.param, spawn(argv).wait_serving()


def test_hello(framework_server):
    name, server = framework_server
    r = requests.get(server.url("/"))
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Server"] == "maitre"
    assert r.headers["Content-Length"] == str(len(r.content))
    assert r.text == f"hello from {name}\n"


def test_post_body_echoed(framework_server):
    _, server = framework_server
    body = bytes(range(256)) * 400
    r = requests.post(server.url("/echo"), data=body)
    assert r.status_code == 200
    assert r.content == body


def test_unknown_path_gets_the_frameworks_404(framework_server):
    _, server = framework_server
    r = requests.get(server.url("/no/such/page"))
    assert r.status_code == 404
    assert r.headers["Server"] == "maitre"
