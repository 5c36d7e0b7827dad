"""PasteDeploy: ``use = egg:maitre#main`` in an ini file, served by Pyramid's real
``pserve`` with the same string options waitress's ``serve_paste`` takes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

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


def test_pserve_runs_maitre_from_an_ini_file(tmp_path):
    (tmp_path / "pastedemo.py").write_text(APP)
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "app.ini").write_text(textwrap.dedent(f"""
        [app:main]
        use = call:pastedemo:make_app

        [server:main]
        use = egg:maitre#main
        listen = 127.0.0.1:{port}
        threads = 2
        ident = maitre-paste
        expose_tracebacks = false
        """))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    log = open(tmp_path / "pserve.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyramid.scripts.pserve", str(tmp_path / "app.ini")],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = get(port, "/hello")
                break
            except OSError:
                assert proc.poll() is None, open(log.name).read()
                assert time.monotonic() < deadline, open(log.name).read()
                time.sleep(0.1)
        assert r.status == 200
        assert r.body == b"hello 127.0.0.1 via maitre-paste"
        assert r.header("Server") == "maitre-paste"
        assert get(port, "/nope").status == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, open(log.name).read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
