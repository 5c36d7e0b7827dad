"""PasteDeploy: ``use = egg:maitre#main`` in an ini file, served by Pyramid's real
``pserve`` with the same string options waitress's ``serve_paste`` takes."""

from __future__ import annotations

import sys
import textwrap

import pytest

from conftest import get

pytest.importorskip("pyramid")
pytest.importorskip("paste.deploy")

APP = textwrap.dedent(
    """
    from pyramid.config import Configurator
    from pyramid.response import Response

    def hello(request):
        return Response(f"hello {request.remote_addr} via {request.environ['SERVER_SOFTWARE']}")

    def make_app(global_config, **settings):
        with Configurator(settings=settings) as config:
            config.add_route("hello", "/hello")
            config.add_view(hello, route_name="hello")
            return config.make_wsgi_app()
    """
)


def test_pserve_runs_maitre_from_an_ini_file(tmp_path, spawn):
    (tmp_path / "pastedemo.py").write_text(APP)
    (tmp_path / "app.ini").write_text(textwrap.dedent("""
        [app:main]
        use = call:pastedemo:make_app

        [server:main]
        use = egg:maitre#main
        listen = 127.0.0.1:0
        threads = 2
        ident = maitre-paste
        expose_tracebacks = false
        """))
    server = spawn(
        [sys.executable, "-m", "pyramid.scripts.pserve", str(tmp_path / "app.ini")],
        cwd=str(tmp_path), env={"PYTHONPATH": str(tmp_path)},
    ).wait_serving()
    r = get(server.port, "/hello")
    assert r.status == 200
    assert r.body == b"hello 127.0.0.1 via maitre-paste"
    assert r.header("Server") == "maitre-paste"
    assert get(server.port, "/nope").status == 404
    assert server.terminate(15) == 0, server.output
