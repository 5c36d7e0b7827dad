"""``maitre-serve`` / ``python -m maitre``: parsing, help, errors, and a live run."""

from __future__ import annotations

import getopt
import http.client
import io
import subprocess
import sys
import textwrap
from wsgiref.util import setup_testing_defaults

import pytest

import maitre
import maitre.demo
from maitre import cli
from maitre.options import OPTIONS

HOST = "127.0.0.1"


# --------------------------------------------------------------------------- parsing


def test_parse_values_stay_strings():
    inv = cli.parse_args(["--threads=8", "--max-request-body-size=1024", "app:main"])
    assert inv.kw == {"threads": "8", "max_request_body_size": "1024"}
    assert inv.args == ["app:main"]
    assert not inv.help and not inv.call


def test_parse_request_limits():
    """The limits of issue 14 get their flags from the option table like the rest."""
    inv = cli.parse_args(["--max-request-line=4094", "--max-request-headers=100", "app:main"])
    assert inv.kw == {"max_request_line": "4094", "max_request_headers": "100"}


def test_parse_flags():
    inv = cli.parse_args(["--expose-tracebacks", "--no-ipv6", "--call", "m:f"])
    assert inv.kw == {"expose_tracebacks": "true", "ipv6": "false"}
    assert inv.call is True


def test_parse_repeated_listen_joins():
    inv = cli.parse_args(["--listen=127.0.0.1:1", "--listen", "[::1]:2", "m:a"])
    assert inv.kw == {"listen": "127.0.0.1:1 [::1]:2"}


def test_parse_space_separated_value_and_options_after_app():
    inv = cli.parse_args(["--port", "9000", "m:a", "--threads=2"])
    assert inv.kw == {"port": "9000", "threads": "2"}
    assert inv.args == ["m:a"]


def test_parse_help():
    assert cli.parse_args(["--help"]).help is True


def test_parse_unknown_option_suggests():
    with pytest.raises(getopt.GetoptError) as info:
        cli.parse_args(["--therads=4", "m:a"])
    assert "therads" in str(info.value)
    assert "--threads" in str(info.value)


def test_parse_flag_with_value_explains():
    with pytest.raises(getopt.GetoptError) as info:
        cli.parse_args(["--ipv6=no", "m:a"])
    assert "--no-ipv6" in str(info.value)


def test_every_option_has_a_cli_spelling():
    argv = []
    for option in OPTIONS:
        if not option.cli:
            continue
        name = option.name.replace("_", "-")
        argv.append(f"--{name}" if option.is_flag else f"--{name}=x")
        if option.is_flag:
            argv.append(f"--no-{name}")
    inv = cli.parse_args(argv + ["m:a"])
    assert set(inv.kw) == {o.name for o in OPTIONS if o.cli}


def test_sockets_has_no_cli_spelling():
    with pytest.raises(getopt.GetoptError):
        cli.parse_args(["--sockets=3", "m:a"])


# --------------------------------------------------------------------------- help


def test_help_lists_every_option(capsys):
    assert cli.main(["--help"], prog="maitre-serve") == 0
    out = capsys.readouterr().out
    assert "maitre-serve [OPTIONS] MODULE:CALLABLE" in out
    assert "--call" in out
    for option in OPTIONS:
        if not option.cli:
            continue
        name = option.name.replace("_", "-")
        if option.is_flag:
            assert f"--[no-]{name}" in out, name
        else:
            assert f"--{name}=" in out, name
    assert "--sockets" not in out
    assert "Default: 8080." in out


# --------------------------------------------------------------------------- errors


def run_main(argv, capsys):
    code = cli.main(argv, prog="maitre-serve")
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_unknown_option_exits_nonzero(capsys):
    code, _, err = run_main(["--bogus=1", "maitre.demo:app"], capsys)
    assert code != 0
    assert "bogus" in err
    assert "--help" in err


def test_bad_value_exits_nonzero(capsys):
    code, _, err = run_main(["--threads=abc", "maitre.demo:app"], capsys)
    assert code != 0
    assert "threads must be a positive integer" in err


def test_unix_socket_bind_failure_exits_nonzero(capsys, tmp_path):
    taken = tmp_path / "file-not-socket"
    taken.write_text("")
    code, _, err = run_main([f"--unix-socket={taken}", "maitre.demo:app"], capsys)
    assert code != 0
    assert "unix:" in err and str(taken) in err


def test_listen_with_port_exits_nonzero(capsys):
    code, _, err = run_main(["--listen=127.0.0.1:0", "--port=1", "maitre.demo:app"], capsys)
    assert code != 0
    assert "listen" in err


@pytest.mark.parametrize("args", [[], ["a:b", "c:d"]])
def test_needs_exactly_one_app(args, capsys):
    code, _, err = run_main(args, capsys)
    assert code != 0
    assert "exactly one application" in err


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("no_such_module_for_maitre_tests:app", "no_such_module_for_maitre_tests"),
        ("maitre.demo:no_such_app", "no_such_app"),
        ("maitre.demo:__doc__", "not a WSGI callable"),
    ],
)
def test_unloadable_app_exits_nonzero(spec, fragment, capsys, monkeypatch):
    monkeypatch.setattr(maitre, "serve", lambda *a, **k: pytest.fail("serve called"))
    code, _, err = run_main(["--listen=127.0.0.1:0", spec], capsys)
    assert code != 0
    assert fragment in err


def test_app_module_raising_exits_nonzero(tmp_path, capsys, monkeypatch):
    (tmp_path / "maitre_broken_app.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(maitre, "serve", lambda *a, **k: pytest.fail("serve called"))
    code, _, err = run_main(["--listen=127.0.0.1:0", "maitre_broken_app:app"], capsys)
    assert code != 0
    assert "boom at import" in err


def test_bind_failure_exits_nonzero(capsys, monkeypatch):
    def fail(app, **kw):
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(maitre, "serve", fail)
    code, _, err = run_main(["--listen=127.0.0.1:0", "maitre.demo:app"], capsys)
    assert code != 0
    assert "Address already in use" in err


# --------------------------------------------------------------------------- serve call


def test_main_calls_serve_with_strings(capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(maitre, "serve", lambda app, **kw: calls.append((app, kw)))
    code, _, _ = run_main(
        ["--listen=127.0.0.1:0", "--threads=3", "--no-expose-tracebacks", "maitre.demo:app"],
        capsys,
    )
    assert code == 0
    assert calls == [
        (maitre.demo.app, {"listen": "127.0.0.1:0", "threads": "3", "expose_tracebacks": "false"})
    ]


def test_call_uses_factory(tmp_path, capsys, monkeypatch):
    (tmp_path / "maitre_factory_app.py").write_text(
        textwrap.dedent(
            """
            def make():
                def app(environ, start_response):
                    start_response("200 OK", [])
                    return [b""]
                app.made = True
                return app
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = []
    monkeypatch.setattr(maitre, "serve", lambda app, **kw: calls.append(app))
    code, _, _ = run_main(["--call", "--listen=127.0.0.1:0", "maitre_factory_app:make"], capsys)
    assert code == 0
    assert getattr(calls[0], "made", False) is True


# --------------------------------------------------------------------------- demo app


def call_demo(path, method="GET", body=b""):
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method}
    setup_testing_defaults(environ)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body)) if body else ""
    if body:
        environ["CONTENT_TYPE"] = "text/plain"
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    out = b"".join(maitre.demo.app(environ, start_response))
    assert seen["headers"]["Content-Length"] == str(len(out))
    return seen["status"], seen["headers"], out


def test_demo_app_routes():
    status, headers, body = call_demo("/")
    assert status == "200 OK" and b"maitre is serving" in body
    assert headers["Content-Type"].startswith("text/html")
    assert call_demo("/echo", "POST", b"hello there") == (
        "200 OK", {"Content-Type": "text/plain", "Content-Length": "11"}, b"hello there",
    )
    assert call_demo("/echo")[0].startswith("405")
    status, headers, body = call_demo("/environ")
    assert status == "200 OK" and b"REQUEST_METHOD = 'GET'" in body
    assert call_demo("/nope")[0].startswith("404")


# --------------------------------------------------------------------------- subprocess


def run_module(*args, timeout=30):
    return subprocess.run(
        [sys.executable, "-m", "maitre", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_module_help():
    result = run_module("--help")
    assert result.returncode == 0
    assert "python -m maitre [OPTIONS] MODULE:CALLABLE" in result.stdout
    assert "--max-request-body-size=INT" in result.stdout
    assert "--max-request-line=INT" in result.stdout
    assert "--max-request-headers=INT" in result.stdout


def test_module_bad_option():
    result = run_module("--no-such-option=1", "maitre.demo:app")
    assert result.returncode != 0
    assert "no-such-option" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_module_serves_demo_and_stops_on_sigterm(spawn):
    server = spawn(
        [sys.executable, "-m", "maitre", f"--listen={HOST}:0", "--threads=2", "maitre.demo:app"]
    ).wait_serving()
    port = server.port
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    conn.request("GET", "/")
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200
    assert b"maitre is serving" in body
    assert response.getheader("Server") == "maitre"

    conn.request("POST", "/echo", body=b"ping-pong", headers={"Content-Type": "text/plain"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.read() == b"ping-pong"
    conn.close()

    assert server.terminate(10) == 0, server.output
    assert f"Serving on http://{HOST}:{port}" in server.output
