"""The request corpus (tests/corpus/cases.py), each case over a real socket (issue 14).

Every case gets exactly the statuses it expects, reaches the app exactly as often as
it expects (never, for a refused request), and leaves the connection closed (with
no byte more) or serving the next request, as it expects.
"""

from __future__ import annotations

import threading

import pytest

from conftest import Conn
from corpus.cases import CASES, Case


class Recorder:
    """Echoes the request body; counts the requests that reach it."""

    def __init__(self) -> None:
        self.bodies = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read()
        with self.lock:
            self.bodies.append(body)
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]


def test_corpus_is_large_and_says_why():
    assert len(CASES) >= 120
    assert len({case.id for case in CASES}) == len(CASES), "ids are unique"
    refused = [case for case in CASES if case.calls < len(case.status)]
    assert len(refused) >= 80
    for case in refused:
        assert case.source, f"{case.id}: a refused request names its rule or CVE"
        assert case.closed, f"{case.id}: a refused request closes the connection"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_corpus(serve, case: Case):
    app = Recorder()
    s = serve(app, **case.options)
    method = case.data.split(b" ", 1)[0].lstrip(b"\r\n").decode("latin-1")
    with Conn(s.port) as c:
        c.send(case.data)
        statuses = []
        while len(statuses) < len(case.status):
            r = c.read_response(method)
            if 100 <= r.status < 200:
                continue  # 100 Continue before the final response
            statuses.append(r.status)
        assert tuple(statuses) == case.status, r
        assert len(app.bodies) == case.calls, app.bodies
        if case.calls:
            assert app.bodies[-1] == case.body
        if case.closed:
            c.assert_closed()
        else:
            c.assert_open()
    assert len(app.bodies) == case.calls, "nothing more reached the app"
