#!/usr/bin/env python3
"""maitre's benchmark harness: one command, stdlib only.

    python bench/run.py                       # everything: 3 rounds x 5 s per server and case
    python bench/run.py --quick               # 1 x 3 s, for a smoke test
    python bench/run.py --cases plaintext,sleep10 --servers maitre,waitress --repeat 5

What it does, in order:
  1. setup (skip with --no-setup): apt-get install wrk (and haproxy, for the unix and proxy
     cases) if missing; a venv at bench/.venv with
     the other servers (waitress, granian, gunicorn, pyruvate) and matplotlib from PyPI;
     maitre installed from the repo root into that venv; the ceiling server (bench/ceiling)
     built with cargo.
  2. for each case, --repeat interleaved rounds; in each round, for each server: start it
     pinned to CPU 0 (taskset -c 0), wait until its port accepts, check one response, warm
     up with wrk, run `taskset -c 1 wrk -t1 -c<conns> -d<dur>s --latency` once, stop it
     (SIGTERM, then SIGKILL after 10 s). The idle case also opens 5,000 idle keep-alive
     connections (bench/idle.py, on CPU 1) before measuring, and reads the server's RSS.
     The unix and proxy cases put HAProxy (on CPU 1) between wrk and the server.
     Peak RSS (VmHWM) is read at the end of each measured run. In the flask and django cases
     an "app alone" row (bench/alone.py) calls the app in a loop on CPU 0, with no server.
  3. print a table per case (median req/s, bytes/s, median p50/p99 latency, errors, CPU,
     CPU per request, peak RSS, maitre/server ratio) and write bench/results/latest.md,
     latest.json (every run) and latest.png (bench/chart.py, in the venv).

Adding a server: append a `Server` to SERVERS. Adding a case: an app in bench/apps.py and a
`Case` in CASES.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional
from apps import CHUNK, CHUNK_COUNT, DATA_FILE, DATA_SIZE, JSON_FIELDS
from rlimit import raise_nofile

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
VENV = os.path.join(BENCH, ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")
CEILING_DIR = os.path.join(BENCH, "ceiling")
CEILING_BIN = os.path.join(CEILING_DIR, "target", "release", "maitre-ceiling")
RESULTS = os.path.join(BENCH, "results")
LOGS = os.path.join(RESULTS, "logs")
HOST = "127.0.0.1"
NOISE = 0.10  # other processes' CPU (fraction of one CPU) above which a run is flagged as noisy
QUIET = 0.05  # busy CPU (fraction of one) below which the machine counts as idle before a run
SPREAD = 0.10  # (max - min) / median of req/s over the rounds above which results are flagged
REFERENCE = "maitre"  # the ratio column is REFERENCE req/s divided by each server's req/s

IDLE_COUNT = 5000  # idle keep-alive connections held open in the idle case
IDLE_DEADLINE = 30.0  # seconds the helper may take to open and get answers on all of them
CONNECTION_LIMIT = 6000  # servers' connection limits in the idle case (idle + wrk's)
BACKLOG = 8192  # listen backlog asked for in the idle case (the kernel caps it at somaxconn)
STOP_GRACE = 10.0

POST_BODY_SIZE = 64 * 1024
UPLOAD_SIZE = 20 << 20
# A 100 MiB response to each of 16 connections takes seconds: wrk's default 2 s timeout would
# count the slower servers' responses as errors.
SLOW_TIMEOUT = ["--timeout", "60s"]
ALONE = "app alone"  # the pseudo-server row: the app called in a loop, no server
NO_FILE_WRAPPER = ("granian has no `wsgi.file_wrapper`: there the app reads the file in 4 KiB "
                   "blocks and returns them, as Django does without one.")


def post_lua(size: int) -> str:
    return f"""-- written by bench/run.py: POST a {size}-byte body
wrk.method = "POST"
wrk.body = string.rep("x", {size})
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Content-Length"] = tostring(#wrk.body)
"""


# --------------------------------------------------------------------------------------------
# Cases and servers
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One workload: which app every server runs and how wrk drives it."""

    name: str
    title: str
    app: str  # attribute of bench/apps.py
    load: str  # what one request is, for the report
    path: str = "/"
    connections: int = 50
    wrk_args: List[str] = field(default_factory=list)  # extra wrk args (-H ...)
    lua: Optional[str] = None  # a wrk script, written to a temp file and passed with -s
    check_method: str = "GET"
    check_body: Optional[bytes] = None
    expect_body: Optional[bytes] = None  # sanity check of one response before measuring
    ceiling: bool = True  # the canned-response ceiling only makes sense for some cases
    threads: Optional[int] = None  # WSGI threads for every server (default: --threads)
    bytes_per_sec: bool = False  # report wrk's Transfer/sec
    data: bool = False  # serves the 100 MiB data file: the check compares the body with it
    upload: int = 0  # request body size: report req/s x this as bytes/s uploaded
    idle: int = 0  # idle keep-alive connections held open during the measurement
    reference: str = REFERENCE  # the server the ratio column divides by
    skip_servers: FrozenSet[str] = frozenset()
    notes: List[str] = field(default_factory=list)  # printed under the table
    # HAProxy between wrk and the server (see Front): "unix" (TCP in, the server's unix
    # socket out) or "proxy" (HTTP, the client's address passed on with the PROXY protocol
    # or X-Forwarded-For); "" for none.
    front: str = ""


# Servers without the unix socket and proxy options the fronted cases use.
FRONTLESS = frozenset({"granian", "gunicorn sync", "gunicorn gthread", "pyruvate"})

CASES: List[Case] = [
    Case(
        name="plaintext",
        title="Plaintext hello world, keep-alive",
        app="plaintext",
        load="`GET /` → 13-byte body",
        expect_body=b"Hello, world!",
    ),
    Case(
        name="large",
        title="1 MiB response body, keep-alive",
        app="large",
        load="`GET /` → 1 MiB body (one bytes object built at import, Content-Length)",
        connections=16,
        expect_body=b"x" * (1 << 20),
        ceiling=False,
        bytes_per_sec=True,
    ),
    Case(
        name="post64k",
        title="64 KiB POST echoed back, keep-alive",
        app="echo",
        load="`POST /` with a 64 KiB body (wrk Lua script), the app reads `wsgi.input` "
             "fully and returns it with Content-Length",
        connections=16,
        lua=post_lua(POST_BODY_SIZE),
        check_method="POST",
        check_body=b"x" * POST_BODY_SIZE,
        expect_body=b"x" * POST_BODY_SIZE,
        ceiling=False,
        bytes_per_sec=True,
        notes=["bytes/s counts the responses only (wrk's Transfer/sec); as much again is "
               "uploaded."],
    ),
    Case(
        name="close",
        title="Hello world, a new connection per request",
        app="plaintext",
        load="`GET /` with `Connection: close` → 13-byte body; wrk reconnects for every "
             "request",
        wrk_args=["-H", "Connection: close"],
        expect_body=b"Hello, world!",
    ),
    Case(
        name="idle5000",
        title=f"Plaintext with {IDLE_COUNT:,} idle keep-alive connections held open",
        app="plaintext",
        load=f"`GET /` → 13-byte body, while {IDLE_COUNT:,} other connections (each answered "
             "once) sit idle",
        expect_body=b"Hello, world!",
        idle=IDLE_COUNT,
    ),
    Case(
        name="sleep10",
        title="App sleeps 10 ms per request (time.sleep), keep-alive",
        app="sleep10",
        load="`GET /` → the app sleeps 10 ms, then a 13-byte body",
        connections=64,
        expect_body=b"Hello, world!",
        ceiling=False,
        threads=32,
        reference="maitre t32",
        skip_servers=frozenset({"maitre"}),  # maitre t1 and maitre t32 instead
        notes=["The bound is threads ÷ 10 ms: 100 req/s per thread, so at most ~3,200 req/s "
               "with 32 threads (64 connections keep them all busy)."],
    ),
    Case(
        name="stream",
        title="100 MiB streamed in fresh 64 KiB chunks, keep-alive",
        app="stream",
        load="`GET /` → a 100 MiB file as `iter(lambda: f.read(65536), b\"\")`, "
             "Content-Length set",
        connections=16,
        wrk_args=SLOW_TIMEOUT,
        data=True,
        ceiling=False,
        bytes_per_sec=True,
    ),
    Case(
        name="file",
        title="100 MiB file through wsgi.file_wrapper, keep-alive",
        app="file_wrapper",
        load="`GET /` → `environ[\"wsgi.file_wrapper\"](f, 4096)` of a 100 MiB file, "
             "Content-Length set",
        connections=4,
        wrk_args=SLOW_TIMEOUT,
        data=True,
        ceiling=False,
        bytes_per_sec=True,
        notes=[NO_FILE_WRAPPER],
    ),
    Case(
        name="djfile",
        title="100 MiB file as Django's FileResponse, keep-alive",
        app="django_site",
        path="/file",
        load="`GET /file` → Django's `FileResponse` of a 100 MiB file (default middleware; "
             "Django hands it to `wsgi.file_wrapper` in 4 KiB blocks)",
        connections=4,
        wrk_args=SLOW_TIMEOUT,
        data=True,
        ceiling=False,
        bytes_per_sec=True,
        notes=[NO_FILE_WRAPPER],
    ),
    Case(
        name="upload",
        title="20 MiB POST bodies read in 64 KiB blocks, keep-alive",
        app="upload",
        load="`POST /` with a 20 MiB body (wrk Lua script), the app calls "
             "`wsgi.input.read(65536)` until it returns b\"\" and answers with the byte count",
        connections=16,
        wrk_args=SLOW_TIMEOUT,
        lua=post_lua(UPLOAD_SIZE),
        check_method="POST",
        check_body=b"x" * UPLOAD_SIZE,
        expect_body=str(UPLOAD_SIZE).encode(),
        ceiling=False,
        upload=UPLOAD_SIZE,
    ),
    Case(
        name="chunks",
        title="A generator of 10 small chunks (chunked encoding), keep-alive",
        app="chunks",
        load=f"`GET /` → {CHUNK_COUNT} chunks of {len(CHUNK)} bytes from a generator, no "
             "Content-Length: the server sends `Transfer-Encoding: chunked`",
        expect_body=CHUNK * CHUNK_COUNT,
        ceiling=False,
    ),
    Case(
        name="unix",
        title="Plaintext hello world over a unix socket (through HAProxy), keep-alive",
        app="plaintext",
        load="`GET /` → 13-byte body; wrk → HAProxy (`mode tcp`, on wrk's CPU) → the "
             "server's `unix_socket`",
        expect_body=b"Hello, world!",
        ceiling=False,
        skip_servers=FRONTLESS,
        front="unix",
        notes=["wrk cannot connect to a unix socket: HAProxy in `mode tcp` relays each of "
               "wrk's connections to one connection on the server's socket, on the client CPU "
               "(its CPU in the HAProxy CPU column). The same relay for both servers; a row "
               "whose wrk + HAProxy CPU nears 100% is limited by them (compare CPU/req)."],
    ),
    Case(
        name="proxy",
        title="Plaintext hello world behind HAProxy passing the client's address, keep-alive",
        app="plaintext",
        load="`GET /` → 13-byte body; wrk → HAProxy (`mode http`, on wrk's CPU) → the "
             "server, with `send-proxy` to `proxy_protocol=True` (maitre) or `option "
             "forwardfor` to `trusted_proxy_headers=\"x-forwarded-for\"` (maitre xff, waitress)",
        expect_body=b"Hello, world!",
        ceiling=False,
        skip_servers=FRONTLESS,
        front="proxy",
        notes=["HAProxy runs on the client CPU (its CPU in the HAProxy CPU column); a row "
               "whose wrk + HAProxy CPU nears 100% is limited by them (compare CPU/req)."],
    ),
    Case(
        name="flask",
        title="Flask JSON view, keep-alive",
        app="flask_json",
        load="`GET /` → Flask's `jsonify` of three fields",
        expect_body=(json.dumps(JSON_FIELDS, sort_keys=True, separators=(",", ":"))
                     + "\n").encode(),
        ceiling=False,
    ),
    Case(
        name="django",
        title="Django JSON view (default middleware), keep-alive",
        app="django_site",
        load="`GET /` → Django's `JsonResponse` of three fields, through the default "
             "middleware (startproject's settings, bench/djangoapp)",
        expect_body=json.dumps(JSON_FIELDS).encode(),
        ceiling=False,
    ),
]


@dataclass
class Ctx:
    threads: int


@dataclass
class Pinning:
    """Where servers and wrk run (taskset -c lists); set from --server-cpus, --client-cpus
    and --wrk-threads."""

    server: str = "0"
    client: str = "1"
    wrk_threads: int = 1


PIN = Pinning()


def cpu_list(spec: str) -> List[int]:
    """A taskset -c list ("0", "0-3,8") as CPU numbers."""
    out: List[int] = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


@dataclass
class Launch:
    """What one start of one server gets: the case, its port and the resolved settings."""

    case: Case
    port: int
    threads: int
    many: bool  # raise connection limits and backlog (the idle case)
    unix: str = ""  # listen on this unix socket instead of the port (the unix case)
    # Behind HAProxy in the proxy case: "protocol" (the PROXY protocol) or "xff"
    # (X-Forwarded-For from a trusted proxy).
    proxy: str = ""
    metrics_port: Optional[int] = None  # maitre's metrics endpoint, scraped during the run


@dataclass
class Server:
    name: str
    # Launch -> argv, run with cwd=bench/ and pinned by run.py.
    argv: Callable[[Launch], List[str]]
    describe: Callable[[Launch], str]
    version: Callable[[], str]
    pypi: List[str] = field(default_factory=list)  # requirements pip-installed into bench/.venv
    is_ceiling: bool = False
    is_alone: bool = False  # not a server: bench/alone.py calls the app in a loop (run_alone)
    threads: Optional[int] = None  # a fixed thread count (variants such as "maitre t1")
    only_cases: Optional[FrozenSet[str]] = None  # None: every case
    # Uses more than one core (maitre wN). Pinned to the server CPUs if they are at least two
    # (--server-cpus 0-3 on a bigger machine); otherwise (the default: one server CPU) it
    # runs on the server and client CPUs together and wrk runs unpinned, sharing them.
    multi_core: bool = False
    # Returns why the server cannot run yet (None: it can). Checked after setup; a server
    # that is not available is listed under "not run", without making the run fail.
    available: Optional[Callable[[], Optional[str]]] = None
    note: str = ""  # one line in the report's server list
    # Serves a metrics endpoint that the harness scrapes once a second (see Scraper).
    scrape: bool = False
    # In the proxy case, takes the address from X-Forwarded-For although it can read the
    # PROXY protocol (maitre xff).
    xff: bool = False

    def family(self) -> str:
        return self.name.split(" ")[0]

    def uses_maitre(self) -> bool:
        """Runs the maitre installed in bench/.venv (app alone: for the environ it builds)."""
        return self.family() == "maitre" or self.is_alone

    def shares_client_cpus(self) -> bool:
        return self.multi_core and len(cpu_list(PIN.server)) < 2

    def cpus(self) -> str:
        return f"{PIN.server},{PIN.client}" if self.shares_client_cpus() else PIN.server


def _launcher(server: str, workers: int = 0, access_log: bool = False, reuse_port: bool = False
              ) -> Callable[[Launch], List[str]]:
    def argv(l: Launch) -> List[str]:
        out = [VENV_PY, os.path.join(BENCH, "launch.py"), server, "--app", l.case.app,
               "--host", HOST, "--port", str(l.port), "--threads", str(l.threads)]
        if l.many:
            out += ["--connection-limit", str(CONNECTION_LIMIT), "--backlog", str(BACKLOG)]
        if l.unix:
            out += ["--unix-socket", l.unix]
        if l.proxy:
            out += ["--proxy", l.proxy]
        if workers:
            out += ["--workers", str(workers)]
        if reuse_port:
            out += ["--reuse-port"]
        if l.metrics_port:
            out += ["--metrics-port", str(l.metrics_port)]
        if access_log:
            out += ["--access-log"]
        return out
    return argv


def _granian_argv(l: Launch) -> List[str]:
    return [os.path.join(VENV, "bin", "granian"), "--interface", "wsgi", "--http", "1",
            "--no-ws", "--workers", "1", "--runtime-threads", "1",
            "--blocking-threads", str(l.threads), "--no-access-log", "--log-level", "warning",
            *(["--backlog", str(BACKLOG)] if l.many else []),
            "--host", HOST, "--port", str(l.port), "--working-dir", BENCH, f"apps:{l.case.app}"]


def _gunicorn_argv(worker: str) -> Callable[[Launch], List[str]]:
    def argv(l: Launch) -> List[str]:
        out = [os.path.join(VENV, "bin", "gunicorn"), "--workers", "1", "--worker-class", worker,
               "--bind", f"{HOST}:{l.port}", "--chdir", BENCH, "--log-level", "warning",
               # gunicorn's default keep-alive is 2 s: long enough for wrk, not for idle
               # connections. 120 s is waitress's (and maitre's) channel_timeout.
               "--keep-alive", "120", "--graceful-timeout", "5"]
        if worker == "gthread":
            out += ["--threads", str(l.threads)]
        if l.many:
            out += ["--backlog", str(BACKLOG)]
            if worker == "gthread":
                out += ["--worker-connections", str(CONNECTION_LIMIT)]
        return out + [f"apps:{l.case.app}"]
    return argv


def _ceiling_argv(l: Launch) -> List[str]:
    return [CEILING_BIN, "--host", HOST, "--port", str(l.port)]


def _alone_argv(l: Launch) -> List[str]:
    return [VENV_PY, os.path.join(BENCH, "alone.py"), "--app", l.case.app, "--path", l.case.path]


def _fronted(l: Launch) -> str:
    """The serve() arguments of the fronted cases, for the report."""
    if l.unix:
        return ", unix_socket=PATH"
    if l.proxy == "protocol":
        return ", proxy_protocol=True, trusted_proxy=\"127.0.0.1\""
    if l.proxy == "xff":
        return ", trusted_proxy=\"127.0.0.1\", trusted_proxy_headers=\"x-forwarded-for\""
    return ""


def _pkg_version(dist: str) -> Callable[[], str]:
    cache: Dict[str, str] = {}

    def version() -> str:
        if dist not in cache:
            code = f"import importlib.metadata as m; print(m.version({dist!r}))"
            r = subprocess.run([VENV_PY, "-c", code], capture_output=True, text=True)
            cache[dist] = r.stdout.strip() if r.returncode == 0 else "not installed"
        return cache[dist]
    return version


def _maitre_accepts(options: str) -> Callable[[], Optional[str]]:
    """The hook of a row that needs an option: it runs once maitre accepts `options`."""
    def available() -> Optional[str]:
        code = f"import maitre; maitre.Options({options})"
        r = subprocess.run([VENV_PY, "-c", code], capture_output=True, text=True)
        if r.returncode == 0:
            return None
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"this maitre does not accept `maitre.Options({options})` yet: {last}"
    return available


SERVERS: List[Server] = [
    Server("maitre", _launcher("maitre"),
           lambda l: f"`serve(app, threads={l.threads}"
                     + (f", connection_limit={CONNECTION_LIMIT}, backlog={BACKLOG}" if l.many
                        else "") + _fronted(l) + ")`",
           _pkg_version("maitre")),
    Server("maitre xff", _launcher("maitre"),
           lambda l: f"`serve(app, threads={l.threads}{_fronted(l)})`", _pkg_version("maitre"),
           only_cases=frozenset({"proxy"}), xff=True),
    Server("maitre t1", _launcher("maitre"),
           lambda l: f"`serve(app, threads={l.threads})`", _pkg_version("maitre"),
           threads=1, only_cases=frozenset({"sleep10", "flask"})),
    Server("maitre t32", _launcher("maitre"),
           lambda l: f"`serve(app, threads={l.threads})`", _pkg_version("maitre"),
           threads=32, only_cases=frozenset({"sleep10"})),
    # maitre w2 and maitre w2 reuseport (see set_workers): maitre wN with --workers N.
    None,
    None,
    # What maitre's own instruments cost, beside the plain maitre row (issue 17: within 3%).
    Server("maitre metrics", _launcher("maitre"),
           lambda l: f"`serve(app, threads={l.threads}, metrics=\"127.0.0.1:PORT\")`, "
                     "`/metrics` scraped once a second by the harness during warm-up and run",
           _pkg_version("maitre"), only_cases=frozenset({"plaintext"}), scrape=True),
    Server("maitre accesslog", _launcher("maitre", access_log=True),
           lambda l: f"`serve(app, threads={l.threads}, access_log=True)`, the combined-format "
                     "lines through a `logging.FileHandler` on /dev/null",
           _pkg_version("maitre"), only_cases=frozenset({"plaintext"})),
    Server("waitress", _launcher("waitress"),
           lambda l: f"`serve(app, threads={l.threads}"
                     + (f", connection_limit={CONNECTION_LIMIT}, backlog={BACKLOG}, "
                        "asyncore_use_poll=True" if l.many else "") + _fronted(l) + ")`",
           _pkg_version("waitress"), pypi=["waitress"]),
    Server("granian", _granian_argv,
           lambda l: f"`--interface wsgi --http 1 --workers 1 --runtime-threads 1 "
                     f"--blocking-threads {l.threads}"
                     + (f" --backlog {BACKLOG}" if l.many else "") + "`",
           _pkg_version("granian"), pypi=["granian"]),
    Server("gunicorn sync", _gunicorn_argv("sync"),
           lambda l: "`--workers 1 --worker-class sync` (one request at a time; no keep-alive: "
                     "it closes every connection after its response)"
                     + (f", `--backlog {BACKLOG}`" if l.many else ""),
           _pkg_version("gunicorn"), pypi=["gunicorn"], threads=1),
    Server("gunicorn gthread", _gunicorn_argv("gthread"),
           lambda l: f"`--workers 1 --worker-class gthread --threads {l.threads} "
                     "--keep-alive 120`"
                     + (f" `--backlog {BACKLOG} --worker-connections {CONNECTION_LIMIT}`"
                        if l.many else ""),
           _pkg_version("gunicorn"), pypi=["gunicorn"]),
    Server("pyruvate", _launcher("pyruvate"),
           lambda l: f"`pyruvate.serve(app, \"127.0.0.1:PORT\", {l.threads})` (its default "
                     "max_reuse_count=0: no keep-alive, every response closes its connection)",
           _pkg_version("pyruvate"), pypi=["pyruvate"]),
    Server("ceiling", _ceiling_argv,
           lambda l: "bare mio + httparse, 1 thread, canned response (bench/ceiling)",
           lambda: "-", is_ceiling=True),
    Server(ALONE, _alone_argv,
           lambda l: "the app called in a loop in one process (bench/alone.py), each call "
                     "with a copy of the environ maitre built for wrk's request; no sockets",
           lambda: "-", is_alone=True, only_cases=frozenset({"flask", "django"})),
]

CHART_PYPI = ["matplotlib"]
APPS_PYPI = ["flask", "django"]  # the flask, django and djfile cases' apps


def maitre_workers_server(n: int, reuse_port: bool = False) -> Server:
    """maitre with workers=n (n processes, each with its own loop and threads, sharing the
    listening socket's accept queue, or with reuse_port each with its own socket and queue).
    Runs only once the installed maitre accepts the options; until then it is listed as
    "not run". With one server CPU (the default) it is NOT pinned to it: it gets both CPUs
    and wrk runs unpinned on them too."""
    def describe(l: Launch) -> str:
        where = ("on both CPUs, shared with wrk (unpinned)" if s.shares_client_cpus()
                 else f"on CPUs {PIN.server}")
        extra = ", reuse_port=True" if reuse_port else ""
        return f"`serve(app, threads={l.threads}, workers={n}{extra})`, {where}"
    options = f"workers={n}" + (", reuse_port=True, listen='127.0.0.1:0'" if reuse_port else "")
    s = Server(f"maitre w{n}" + (" reuseport" if reuse_port else ""),
               _launcher("maitre", workers=n, reuse_port=reuse_port), describe,
               _pkg_version("maitre"), only_cases=frozenset({"plaintext"}), multi_core=True,
               available=_maitre_accepts(options))
    return s


def set_workers(n: int) -> None:
    """Makes the multi-process rows those of n workers: `maitre wN` (the shared accept
    queue), then `maitre wN reuseport` (a socket and queue per worker)."""
    rows = [i for i, s in enumerate(SERVERS) if s is None or s.multi_core]
    for i, reuse_port in zip(rows, (False, True)):
        SERVERS[i] = maitre_workers_server(n, reuse_port)


set_workers(2)


def server_threads(server: Server, case: Case, ctx: Ctx) -> int:
    if server.threads is not None:
        return server.threads
    return case.threads or ctx.threads


def runs_in(server: Server, case: Case) -> bool:
    if server.is_ceiling and not case.ceiling:
        return False
    if server.name in case.skip_servers:
        return False
    return server.only_cases is None or case.name in server.only_cases


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# --------------------------------------------------------------------------------------------
# Setup
# --------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def sh(argv: List[str], **kw) -> subprocess.CompletedProcess:
    log("$ " + shlex.join(argv))
    return subprocess.run(argv, **kw)


def root_prefix() -> List[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    sys.exit("wrk is missing and we are not root (and there is no sudo): install wrk first")


def haproxy_binary() -> Optional[str]:
    # Debian puts it in /usr/sbin, which a user's PATH may lack.
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def ensure_tools(pin: bool, front: bool) -> None:
    missing = [t for t in (["wrk"] + (["taskset"] if pin else [])) if not shutil.which(t)]
    missing += ["haproxy"] if front and not haproxy_binary() else []
    if not missing:
        return
    pkgs = {"wrk": "wrk", "taskset": "util-linux", "haproxy": "haproxy"}
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sh(root_prefix() + ["apt-get", "update"], check=True, env=env)
    sh(root_prefix() + ["apt-get", "install", "-y"] + [pkgs[t] for t in missing], check=True, env=env)


def venv_has(module: str) -> bool:
    return os.path.exists(VENV_PY) and subprocess.run(
        [VENV_PY, "-c", f"import {module}"], capture_output=True).returncode == 0


def ensure_venv(servers: List[Server], install_maitre: bool) -> Dict[str, str]:
    """Create bench/.venv and install what the chosen servers need. Returns {server: problem}."""
    problems: Dict[str, str] = {}
    if not os.path.exists(VENV_PY):
        sh([sys.executable, "-m", "venv", VENV], check=True)
        sh([VENV_PY, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=False)
    installed = subprocess.run([VENV_PY, "-m", "pip", "freeze"], capture_output=True,
                               text=True).stdout.lower()
    have = {line.split("==")[0].strip().replace("_", "-") for line in installed.splitlines()}
    base = lambda r: re.split(r"[<>=!~\[ ]", r)[0].lower()  # noqa: E731
    wanted = []
    for req in [r for s in servers for r in s.pypi] + CHART_PYPI + APPS_PYPI:
        if base(req) not in have and req not in wanted:
            wanted.append(req)
    # One at a time, so that one package that won't install doesn't take the others with it.
    for req in wanted:
        r = sh([VENV_PY, "-m", "pip", "install", "-q", req])
        if r.returncode != 0:
            for s in servers:
                if req in s.pypi:
                    problems[s.name] = f"`pip install {req}` failed (exit {r.returncode})"
    if any(s.uses_maitre() for s in servers):
        if install_maitre or not venv_has("maitre"):
            r = sh([VENV_PY, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", ROOT])
            if r.returncode != 0:
                for s in servers:
                    if s.uses_maitre():
                        problems[s.name] = f"`pip install {ROOT}` failed (exit {r.returncode})"
        if not venv_has("maitre"):
            for s in servers:
                if s.uses_maitre():
                    problems.setdefault(s.name, "`import maitre` fails in bench/.venv")
    for s in servers:
        mods = {"granian": "granian", "gunicorn": "gunicorn", "pyruvate": "pyruvate",
                "waitress": "waitress"}
        mod = mods.get(s.family())
        if mod and s.name not in problems and not venv_has(mod):
            problems[s.name] = f"`import {mod}` fails in bench/.venv"
    return problems


def ensure_data() -> None:
    """The 100 MiB file of the big-body cases, written once. Random bytes: nothing on the way
    can compress them."""
    if os.path.exists(DATA_FILE) and os.path.getsize(DATA_FILE) == DATA_SIZE:
        return
    log(f"writing {DATA_SIZE >> 20} MiB to {DATA_FILE}")
    os.makedirs(os.path.dirname(DATA_FILE), exist_ok=True)
    with open(DATA_FILE + ".tmp", "wb") as f:
        for _ in range(DATA_SIZE >> 20):
            f.write(os.urandom(1 << 20))
    os.replace(DATA_FILE + ".tmp", DATA_FILE)


@functools.lru_cache(maxsize=None)
def data_digest() -> str:
    h = hashlib.sha256()
    with open(DATA_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def body_ok(case: Case, status: int, body: bytes) -> bool:
    """The sanity check of one response (from a server, or from the app alone)."""
    if case.data:
        return status == 200 and hashlib.sha256(body).hexdigest() == data_digest()
    return status == 200 and (case.expect_body is None or body == case.expect_body)


def ensure_ceiling() -> Optional[str]:
    r = sh(["cargo", "build", "--release", "--quiet",
            "--manifest-path", os.path.join(CEILING_DIR, "Cargo.toml")])
    if r.returncode != 0 or not os.path.exists(CEILING_BIN):
        return f"cargo build of bench/ceiling failed (exit {r.returncode})"
    return None


# --------------------------------------------------------------------------------------------
# Running servers
# --------------------------------------------------------------------------------------------


def free_port(*taken: int) -> int:
    """A port nothing listens on, other than `taken` (ports picked but not yet
    bound: the kernel may hand the same one out again)."""
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


def pinned(cpu: str, argv: List[str], pin: bool) -> List[str]:
    return ["taskset", "-c", cpu] + argv if pin else argv


class Process:
    """A command started in its own session (so that stopping it reaches every process it
    started: granian's and gunicorn's workers), its output in a log file."""

    def __init__(self, name: str, argv: List[str], log_path: str):
        self.name = name
        self.argv = argv
        os.makedirs(LOGS, exist_ok=True)
        self.log_path = log_path
        self.log_file = open(self.log_path, "wb")
        log(f"start {name}: {shlex.join(argv)}")
        self.proc = subprocess.Popen(argv, cwd=BENCH, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=raise_nofile)

    def log_tail(self, n: int = 20) -> str:
        self.log_file.flush()
        with open(self.log_path, "rb") as f:
            return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])

    def wait_accepting(self, address, timeout: float = 30.0) -> None:
        """Until `address` (a TCP (host, port) or a unix socket path) accepts a connection."""
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            try:
                with socket.socket(family) as s:
                    s.settimeout(0.5)
                    s.connect(address)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not accept on {address} within {timeout:.0f} s:\n"
                           + self.log_tail())

    def session_pids(self) -> List[int]:
        pids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # fields[0] is field 3 (state): session is field 6.
            if int(fields[3]) == self.proc.pid:
                pids.append(int(pid))
        return pids

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the server's session."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.session_pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime (14), stime (15)
        return total / tick

    def memory(self, key: str = "VmRSS") -> int:
        """A /proc/PID/status memory line (VmRSS; VmHWM: peak RSS) in bytes, summed over the
        server's processes (taskset has exec'd into the server)."""
        total = 0
        for pid in self.session_pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith(key + ":"):
                            total += int(line.split()[1]) * 1024
                            break
            except OSError:
                continue
        return total

    def stop(self, grace: float = STOP_GRACE) -> str:
        """SIGTERM the session, SIGKILL after `grace` s. Returns how it went."""
        if self.proc.poll() is not None:
            outcome = f"had already exited ({self.proc.returncode})"
        else:
            t0 = time.monotonic()
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                rc = self.proc.wait(grace)
                outcome = f"SIGTERM: exit {rc} after {time.monotonic() - t0:.2f} s"
            except subprocess.TimeoutExpired:
                outcome = f"no exit {grace:.0f} s after SIGTERM: SIGKILL"
        try:  # whatever is left of the session (e.g. a worker process)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self.log_file.close()
        log(f"stop {self.name}: {outcome}")
        return outcome


class Front(Process):
    """HAProxy between wrk and the server (a case's `front`), pinned to the client CPUs: the
    same relay, configuration and core for every server, so the rows differ by the server
    only, and the server keeps its core to itself."""

    def __init__(self, case: Case, server: str, forwardfor: bool, log_path: str, pin: bool):
        self.port = free_port()
        mode = "tcp" if case.front == "unix" else "http"
        lines = ["global", "    maxconn 1000", "    nbthread 1", "defaults",
                 f"    mode {mode}", "    timeout connect 5s", "    timeout client 120s",
                 "    timeout server 120s", "frontend wrk", f"    bind {HOST}:{self.port}",
                 "    default_backend server", "backend server"]
        # One server connection per wrk connection, for every row, as in the unix case: with
        # its default (http-reuse safe), HAProxy 2.6 behind send-proxy opens and resets a
        # server connection per request once the first client connections have closed.
        lines += ["    http-reuse never"] * (mode == "http")
        lines += ["    option forwardfor"] * forwardfor + [f"    server s {server}"]
        config = os.path.join(tmpdir(), f"haproxy-{self.port}.cfg")
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        super().__init__("HAProxy", pinned(PIN.client, [haproxy_binary(), "-db", "-f", config],
                                           pin),
                         log_path)


class Running(Process):
    def __init__(self, server: Server, case: Case, ctx: Ctx, pin: bool):
        self.server = server
        self.pin = pin
        # The port wrk and the check connect to: HAProxy's when the case has a front.
        self.port = free_port()
        self.front: Optional[Front] = None
        unix = os.path.join(tmpdir(), f"{slug(server.name)}.sock") if case.front == "unix" else ""
        proxy = ""
        if case.front == "proxy":
            proxy = "xff" if server.xff or server.family() != "maitre" else "protocol"
        self.launch = Launch(case, self.port, server_threads(server, case, ctx), case.idle > 0,
                             unix, proxy, free_port(self.port) if server.scrape else None)
        super().__init__(server.name, pinned(server.cpus(), server.argv(self.launch), pin),
                         os.path.join(LOGS, f"{case.name}-{slug(server.name)}.log"))

    def wait_ready(self, timeout: float = 30.0) -> None:
        l = self.launch
        self.wait_accepting(l.unix or (HOST, l.port), timeout)
        if not l.case.front:
            return
        server = f"unix@{l.unix}" if l.unix else f"{HOST}:{l.port}"
        server += " send-proxy" * (l.proxy == "protocol")
        self.front = Front(l.case, server, l.proxy == "xff",
                           self.log_path.replace(".log", "-haproxy.log"), self.pin)
        self.port = self.front.port
        self.front.wait_accepting((HOST, self.port), timeout)

    def check(self, case: Case) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            conn.request(case.check_method, case.path, body=case.check_body)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if not body_ok(case, resp.status, body):
            raise RuntimeError(f"{self.server.name}: unexpected response "
                               f"{resp.status} {body[:80]!r} ({len(body)} bytes)")

    def stop(self, grace: float = STOP_GRACE) -> str:
        if self.front is not None:
            self.front.stop()
        return super().stop(grace)


class IdleHolder:
    """bench/idle.py, pinned to the client CPU: opens `count` keep-alive connections, one
    request each, and holds them idle until closed."""

    def __init__(self, port: int, count: int, pin: bool):
        argv = pinned(PIN.client, [sys.executable, os.path.join(BENCH, "idle.py"),
                                   "--host", HOST, "--port", str(port), "--count", str(count),
                                   "--deadline", str(IDLE_DEADLINE)], pin)
        log(f"idle: {shlex.join(argv)}")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, preexec_fn=raise_nofile)

    def _line(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"idle helper said nothing within {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"idle helper exited ({self.proc.wait()})")
        return json.loads(line)

    def opened(self) -> dict:
        return self._line(IDLE_DEADLINE + 30)

    def still_open(self) -> int:
        self.proc.stdin.write("check\n")
        self.proc.stdin.flush()
        return self._line(30)["open"]

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        try:
            self.proc.stdout.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}  # wrk: binary


def parse_wrk(out: str) -> dict:
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError("cannot parse wrk output:\n" + out)
    res = {"rps": float(m.group(1)), "latency_ms": {}, "socket_errors": {}, "non2xx3xx": 0}
    m = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", out)
    res["bytes_per_sec"] = float(m.group(1)) * _BYTES[m.group(2)] if m else None
    for pct, val, unit in re.findall(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M):
        res["latency_ms"][pct] = float(val) * _UNITS[unit]
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", out)
    if m:
        res["requests"] = int(m.group(1))
        res["seconds"] = float(m.group(2)) * _UNITS[m.group(3)] / 1e3
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx3xx"] = int(m.group(1))
    res["errors"] = res["non2xx3xx"] + sum(res["socket_errors"].values())
    return res


def cpu_times() -> List[int]:
    """The machine's `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


_SCRIPTS: Dict[str, str] = {}
_TMPDIR: Optional[str] = None


def tmpdir() -> str:
    """A directory for wrk scripts, HAProxy configurations and unix sockets (removed at exit)."""
    global _TMPDIR
    if _TMPDIR is None:
        _TMPDIR = tempfile.mkdtemp(prefix="maitre-bench-")
    return _TMPDIR


def lua_script(case: Case) -> str:
    """The case's wrk script, written once to a temp file."""
    if case.name not in _SCRIPTS:
        path = os.path.join(tmpdir(), f"{case.name}.lua")
        with open(path, "w") as f:
            f.write(case.lua or "")
        _SCRIPTS[case.name] = path
    return _SCRIPTS[case.name]


def wrk(case: Case, port: int, duration: int, connections: int, pin: bool) -> dict:
    script = ["-s", lua_script(case)] if case.lua else []
    argv = pinned(PIN.client, ["wrk", f"-t{PIN.wrk_threads}", f"-c{connections}",
                               f"-d{duration}s", "--latency",
                               *case.wrk_args, *script, f"http://{HOST}:{port}{case.path}"], pin)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, cwd=BENCH,
                       preexec_fn=raise_nofile)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stderr.strip()}")
    res = parse_wrk(r.stdout)
    # wrk is the only child reaped meanwhile (servers and the idle helper are reaped later).
    res["client_cpu"] = (after.ru_utime + after.ru_stime
                         - before.ru_utime - before.ru_stime) / wall
    res["argv"] = shlex.join(argv)
    res["raw"] = r.stdout
    return res


# --------------------------------------------------------------------------------------------
# One server on one case
# --------------------------------------------------------------------------------------------


def wait_for_quiet(limit: float) -> float:
    """Wait up to `limit` s for the machine to be idle (nothing of ours runs now): busy CPU
    over a 1 s sample below QUIET of one CPU. Returns the last sample."""
    deadline = time.monotonic() + limit
    told = False
    while True:
        t0, s0 = time.monotonic(), cpu_times()
        time.sleep(1.0)
        d = [y - x for x, y in zip(s0, cpu_times())]
        busy = (sum(d[:3]) + d[5] + d[6] + d[7]) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)
        if busy < QUIET or time.monotonic() >= deadline:
            if busy >= QUIET:
                log(f"machine still busy ({busy:.0%} of a CPU) after {limit:.0f} s: going on")
            return busy
        if not told:
            log(f"machine busy ({busy:.0%} of a CPU used by other processes): waiting up to "
                f"{limit:.0f} s for it to calm down")
            told = True


def hold_idle(srv: Running, case: Case, pin: bool) -> tuple:
    """Open case.idle idle connections; returns (holder, what happened)."""
    rss0 = srv.memory()
    holder = IdleHolder(srv.port, case.idle, pin)
    info = holder.opened()
    time.sleep(1.0)  # let the server settle (and close what it is going to close)
    info["open_before_load"] = holder.still_open()
    info["rss_before"] = rss0
    info["rss_idle"] = srv.memory()
    held = info["open_before_load"]
    info["bytes_per_conn"] = (info["rss_idle"] - rss0) / held if held else None
    log(f"idle: {info['answered']}/{case.idle} answered in {info['seconds']:.1f} s, "
        f"{held} still open after 1 s, RSS {rss0 / 2**20:.1f} -> "
        f"{info['rss_idle'] / 2**20:.1f} MiB"
        + (f" ({info['bytes_per_conn'] / 1024:.1f} KiB per connection)" if held else "")
        + (f"; failures {info['failures']}" if info["failures"] else ""))
    return holder, info


def machine_cpu(run: dict, stat0: List[int], stat1: List[int], wall: float, own: float) -> None:
    """What the rest of the machine did during a run: CPU used by processes other than ours
    (`own`: the server's, wrk's and HAProxy's, in cores), steal, idle and interrupt time."""
    d = [y - x for x, y in zip(stat0, stat1)]
    tick = os.sysconf("SC_CLK_TCK")
    run["other_cpu"] = max(0.0, (d[0] + d[1] + d[2]) / tick / wall - own)
    run["steal_cpu"] = d[7] / tick / wall
    run["idle_cpu"] = (d[3] + d[4]) / tick / wall
    run["irq_cpu"] = (d[5] + d[6]) / tick / wall


def log_round(rnd: int, a: argparse.Namespace, case: Case, server: Server, run: dict) -> None:
    bps = run.get("bytes_per_sec")
    idle = run.get("idle")
    log(f"round {rnd}/{a.repeat} {case.name} {server.name}: {run['rps']:,.0f} req/s"
        + (f", {fmt_bytes(bps)}" if case.bytes_per_sec and bps else "")
        + f", p50 {fmt_ms(run['latency_ms'].get('50'))}, "
        f"p99 {fmt_ms(run['latency_ms'].get('99'))}, errors {run['errors']}, "
        f"server CPU {run['server_cpu']:.0%} ({fmt_us(run['cpu_us_per_req'])}/req), "
        f"wrk CPU {run['client_cpu']:.0%}, "
        + (f"HAProxy CPU {run['front_cpu']:.0%}, " if "front_cpu" in run else "")
        + f"other CPU {run['other_cpu']:.0%}, "
        f"peak RSS {fmt_mib(run['peak_rss'])}"
        + (f", idle held {idle['open_after_load']}" if idle is not None else ""))


def run_alone(server: Server, case: Case, a: argparse.Namespace) -> dict:
    """The app-alone row: bench/alone.py, pinned like a server, calls the app in a loop
    (warm-up, then the measured duration) and reports calls, its CPU and its peak RSS."""
    launch = Launch(case, 0, 1, False)
    argv = pinned(PIN.server, server.argv(launch) + ["--warmup", str(a.warmup),
                                                     "--duration", str(a.duration)], a.pin)
    key = (case.name, server.name)
    COMMANDS[key], DESCRIPTIONS[key] = shlex.join(argv), server.describe(launch)
    log(f"start {server.name}: {COMMANDS[key]}")
    stat0, t0 = cpu_times(), time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(argv, cwd=BENCH, capture_output=True, text=True,
                       timeout=a.warmup + a.duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - t0
    STOPS.setdefault(key, []).append(f"exit {r.returncode}")
    if r.returncode != 0:
        raise RuntimeError(f"alone.py exited with {r.returncode}:\n" + r.stderr[-2000:])
    out = json.loads(r.stdout)
    if not body_ok(case, out["status"], out["body"].encode("latin-1")):
        raise RuntimeError(f"{server.name}: unexpected response {out['status']} "
                           f"{out['body'][:80]!r}")
    run = {"rps": out["calls"] / out["seconds"], "requests": out["calls"],
           "seconds": out["seconds"], "latency_ms": {}, "socket_errors": {}, "non2xx3xx": 0,
           "errors": 0, "client_cpu": 0.0, "server_cpu": out["cpu_seconds"] / out["seconds"],
           "cpu_us_per_req": out["cpu_seconds"] / out["calls"] * 1e6,
           "peak_rss": out["peak_rss"], "argv": COMMANDS[key]}
    # Over its whole life (start-up and warm-up included), as the rusage is.
    machine_cpu(run, stat0, cpu_times(), wall, (after.ru_utime + after.ru_stime
                                                - before.ru_utime - before.ru_stime) / wall)
    return run


class Scraper(threading.Thread):
    """GETs `/metrics` once a second, as Prometheus would, until stopped; counts the
    scrapes that answered 200. Runs in the harness, not on the server's CPU."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.ok = 0
        self.failed = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
            try:
                conn.request("GET", "/metrics")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.ok += 1
                else:
                    self.failed += 1
            except OSError:
                self.failed += 1
            finally:
                conn.close()

    def stop(self) -> None:
        self.done.set()
        self.join()


def run_once(server: Server, case: Case, ctx: Ctx, a: argparse.Namespace, rnd: int) -> dict:
    """Start `server`, warm it up, measure one wrk run, stop it. Raises on failure."""
    if a.quiet_wait > 0:
        wait_for_quiet(a.quiet_wait)
    if server.is_alone:
        run = run_alone(server, case, a)
        log_round(rnd, a, case, server, run)
        return run
    srv = Running(server, case, ctx, a.pin)
    conns = a.connections or case.connections
    pin_client = a.pin and not server.shares_client_cpus()
    holder = None
    scraper = None
    try:
        srv.wait_ready()
        srv.check(case)
        if srv.launch.metrics_port:
            scraper = Scraper(srv.launch.metrics_port)
            scraper.start()
        if a.warmup > 0:
            wrk(case, srv.port, a.warmup, conns, pin_client)
            # Let the server finish what the warm-up left queued (requests read from
            # connections wrk has since closed: up to 64 x 10 ms for a one-thread server in
            # sleep10) before measuring: a request on a new connection waits behind them.
            srv.check(case)
            time.sleep(0.2)
        idle = None
        if case.idle:
            holder, idle = hold_idle(srv, case, a.pin)
            if srv.proc.poll() is not None:
                raise RuntimeError(f"{server.name} died while the idle connections were "
                                   "opened:\n" + srv.log_tail())
        front0 = srv.front.cpu_seconds() if srv.front else 0.0
        cpu0, stat0, t0 = srv.cpu_seconds(), cpu_times(), time.monotonic()
        run = wrk(case, srv.port, a.duration, conns, pin_client)
        wall = time.monotonic() - t0
        stat1 = cpu_times()
        # Peak RSS since the server started (the warm-up included): the processes' RSS
        # high-water marks, read before stopping them.
        run["peak_rss"] = srv.memory("VmHWM")
        cpu = srv.cpu_seconds() - cpu0
        run["server_cpu"] = cpu / wall
        run["cpu_us_per_req"] = cpu / run["requests"] * 1e6 if run.get("requests") else None
        if srv.front:
            run["front_cpu"] = (srv.front.cpu_seconds() - front0) / wall
        machine_cpu(run, stat0, stat1, wall,
                    run["server_cpu"] + run["client_cpu"] + run.get("front_cpu", 0.0))
        if idle is not None:
            idle["open_after_load"] = holder.still_open()
            run["idle"] = idle
        if srv.proc.poll() is not None:
            raise RuntimeError(f"{server.name} died during the run:\n" + srv.log_tail())
        if scraper is not None:
            scraper.stop()
            run["scrapes"] = scraper.ok
            if scraper.failed or not scraper.ok:
                raise RuntimeError(f"{server.name}: {scraper.failed} of "
                                   f"{scraper.ok + scraper.failed} scrapes of /metrics failed")
        log_round(rnd, a, case, server, run)
        return run
    finally:
        if scraper is not None:
            scraper.stop()
        if holder is not None:
            holder.close()
        run_stop = srv.stop()
        STOPS.setdefault((case.name, server.name), []).append(run_stop)
        COMMANDS[(case.name, server.name)] = shlex.join(srv.argv)
        DESCRIPTIONS[(case.name, server.name)] = server.describe(srv.launch)


STOPS: Dict[tuple, List[str]] = {}
COMMANDS: Dict[tuple, str] = {}
DESCRIPTIONS: Dict[tuple, str] = {}


def measure_case(case: Case, servers: List[Server], ctx: Ctx, a: argparse.Namespace) -> List[dict]:
    """Interleaved rounds: each round runs every server once (a fresh start each time), so a
    burst of noise on the machine spreads over all servers instead of hitting one of them."""
    results = {s.name: {"server": s.name, "case": case.name, "runs": []} for s in servers}
    for rnd in range(1, a.repeat + 1):
        for s in servers:
            result = results[s.name]
            if "error" in result:
                continue
            try:
                result["runs"].append(run_once(s, case, ctx, a, rnd))
            except Exception as e:  # noqa: BLE001 - report it in the table and go on
                result["error"] = str(e)
                log(f"{s.name}: {e}")
    for result in results.values():
        key = (case.name, result["server"])
        result["command"] = COMMANDS.get(key, "")
        result["describe"] = DESCRIPTIONS.get(key, "")
        result["threads"] = server_threads(next(s for s in servers if s.name == result["server"]),
                                           case, ctx)
        stops = STOPS.get(key, [])
        # How the server stopped: every distinct outcome, in order ("exit 0 after ..." varies).
        kinds = []
        for x in stops:
            k = re.sub(r" after [\d.]+ s", "", x)
            if k not in kinds:
                kinds.append(k)
        slowest = max((float(m.group(1)) for x in stops
                       for m in [re.search(r"after ([\d.]+) s", x)] if m), default=None)
        result["stop"] = "; ".join(kinds) + (f" (slowest {slowest:.2f} s)" if slowest is not None
                                             else "")
        aggregate(result, case)
    return list(results.values())


def aggregate(result: dict, case: Case) -> None:
    runs = result["runs"]
    if not runs or "error" in result:
        return
    med = statistics.median
    result["rps"] = med(r["rps"] for r in runs)
    bps = [r["bytes_per_sec"] for r in runs if r.get("bytes_per_sec") is not None]
    result["bytes_per_sec"] = med(bps) if bps else None
    result["p50_ms"] = med(r["latency_ms"].get("50", float("nan")) for r in runs)
    result["p99_ms"] = med(r["latency_ms"].get("99", float("nan")) for r in runs)
    result["errors"] = sum(r["errors"] for r in runs)
    result["server_cpu"] = med(r["server_cpu"] for r in runs)
    result["client_cpu"] = med(r["client_cpu"] for r in runs)
    if case.front:
        result["front_cpu"] = med(r["front_cpu"] for r in runs)
    per_req = [r["cpu_us_per_req"] for r in runs if r.get("cpu_us_per_req") is not None]
    result["cpu_us_per_req"] = med(per_req) if per_req else None
    result["peak_rss"] = max(r["peak_rss"] for r in runs)  # the highest over the rounds
    result["other_cpu"] = max(r["other_cpu"] for r in runs)
    rps = [r["rps"] for r in runs]
    result["spread"] = (max(rps) - min(rps)) / result["rps"] if result["rps"] else 0.0
    kinds: Dict[str, int] = {}
    for r in runs:
        for k, v in r["socket_errors"].items():
            kinds[k] = kinds.get(k, 0) + v
        kinds["non-2xx/3xx"] = kinds.get("non-2xx/3xx", 0) + r["non2xx3xx"]
    result["error_kinds"] = {k: v for k, v in kinds.items() if v}
    if case.idle:
        idles = [r["idle"] for r in runs if "idle" in r]
        held = min(min(i["open_before_load"], i["open_after_load"]) for i in idles)
        result["idle_held"] = held  # the fewest held at any check, over the rounds
        result["idle_answered"] = min(i["answered"] for i in idles)
        per = [i["bytes_per_conn"] for i in idles if i["bytes_per_conn"] is not None]
        result["idle_bytes_per_conn"] = med(per) if per else None
        result["idle_rss_before"] = med(i["rss_before"] for i in idles)
        result["idle_rss_idle"] = med(i["rss_idle"] for i in idles)
        failures: Dict[str, int] = {}
        for i in idles:
            for k, v in i["failures"].items():
                failures[k] = failures.get(k, 0) + v
        result["idle_failures"] = failures
        result["idle_kept"] = min(i.get("kept", i["answered"]) for i in idles)
        if held < case.idle:
            why = [f"{k}: {v:,}" for k, v in failures.items()]
            closed = result["idle_kept"] - held
            if closed > 0:
                why.append(f"closed by the server after being answered: {closed:,}")
            rounds = f" (summed over {len(idles)} rounds)" if len(idles) > 1 else ""
            result["idle_failed"] = (f"held {held:,} of {case.idle:,} connections; what "
                                     f"happened to the others{rounds}: " + "; ".join(why))


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def fmt_ms(v: Optional[float]) -> str:
    if v is None or v != v:
        return "-"
    if v < 1:
        return f"{v * 1000:.0f} µs"
    if v >= 1000:
        return f"{v / 1000:.2f} s"
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def fmt_bytes(v: Optional[float]) -> str:
    """Bytes per second, decimal units (1 GB/s = 10^9 bytes/s)."""
    if v is None:
        return "-"
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if v >= scale:
            return f"{v / scale:.2f} {unit}"
    return f"{v:.0f} B/s"


def fmt_errors(r: dict) -> str:
    if "errors" not in r:
        return "-"
    if not r["errors"]:
        return "0"
    return f"{r['errors']:,} ({', '.join(f'{k} {v:,}' for k, v in r['error_kinds'].items())})"


def fmt_kib(v: Optional[float]) -> str:
    return "-" if v is None else f"{v / 1024:.1f} KiB"


def fmt_mib(v: Optional[float]) -> str:
    return "-" if v is None else f"{v / 2**20:.1f} MiB"


def fmt_us(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v:.1f} µs" if v < 100 else f"{v:,.0f} µs"


def columns(case: Case, all_results: Dict[str, List[dict]]) -> List[tuple]:
    """(header, cell(result) -> str) for the case's table."""
    by = lambda case_name: {r["server"]: r for r in all_results.get(case_name, [])}  # noqa: E731
    ref = by(case.name).get(case.reference)
    cols = [("server", lambda r: r["server"]),
            ("req/s", lambda r: f"{r['rps']:,.0f}")]
    if case.bytes_per_sec:
        cols.append(("bytes/s", lambda r: fmt_bytes(r.get("bytes_per_sec"))))
    if case.upload:
        cols.append(("uploaded/s", lambda r: fmt_bytes(r["rps"] * case.upload)))
    cols += [("p50", lambda r: fmt_ms(r["p50_ms"])),
             ("p99", lambda r: fmt_ms(r["p99_ms"])),
             ("errors", fmt_errors),
             ("server CPU", lambda r: f"{r['server_cpu']:.0%}"),
             ("wrk CPU", lambda r: "-" if r["server"] == ALONE else f"{r['client_cpu']:.0%}"),
             *([("HAProxy CPU", lambda r: f"{r['front_cpu']:.0%}")] if case.front else []),
             ("CPU/req", lambda r: fmt_us(r.get("cpu_us_per_req"))),
             ("peak RSS", lambda r: fmt_mib(r.get("peak_rss")))]
    if case.idle:
        plain = by("plaintext")

        def held(r: dict) -> str:
            text = f"{r['idle_held']:,}"
            return text if "idle_failed" not in r else f"**{text} (failed)**"

        def vs_plain(r: dict) -> str:
            p = plain.get(r["server"])
            return f"{r['rps'] / p['rps']:.2f}" if p and p.get("rps") else "-"

        cols += [("idle held", held),
                 ("RSS before → with idle", lambda r: f"{r['idle_rss_before'] / 2**20:.1f} → "
                                                      f"{r['idle_rss_idle'] / 2**20:.1f} MiB"),
                 ("RSS per idle conn", lambda r: fmt_kib(r.get("idle_bytes_per_conn"))),
                 ("req/s vs plaintext", vs_plain)]
    alone = by(case.name).get(ALONE)
    if alone and alone.get("rps"):
        cols.append(("of app alone", lambda r: f"{r['rps'] / alone['rps']:.0%}"))
    cols.append((f"{case.reference}/server",
                 lambda r: f"{ref['rps'] / r['rps']:.2f}" if ref and ref.get("rps") else "-"))
    return cols


def table(case: Case, all_results: Dict[str, List[dict]]) -> tuple:
    cols = columns(case, all_results)
    header = [c[0] for c in cols]
    rows = []
    for r in all_results[case.name]:
        if "rps" not in r:
            rows.append([r["server"], "failed"] + ["-"] * (len(cols) - 2))
        else:
            rows.append([c[1](r) for c in cols])
    return header, rows


def text_table(header: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def md_table(header: List[str], rows: List[List[str]]) -> str:
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def scaling(all_results: Dict[str, List[dict]]) -> Optional[float]:
    rs = {r["server"]: r for r in all_results.get("sleep10", [])}
    t1, t32 = rs.get("maitre t1", {}).get("rps"), rs.get("maitre t32", {}).get("rps")
    return t32 / t1 if t1 and t32 else None


def case_notes(case: Case, all_results: Dict[str, List[dict]]) -> List[str]:
    """Lines under a case's table: what is special about it, derived numbers, failures."""
    out = list(case.notes)
    results = all_results[case.name]
    for r in results:
        s = next(s for s in SERVERS if s.name == r["server"])
        if s.shares_client_cpus():
            out.append(f"**{s.name} is not pinned**: it runs on CPUs {s.cpus()} and wrk runs "
                       "unpinned on the same two cores, so it competes with the load generator; "
                       "it is not comparable with the one-core rows. It shows that the workers "
                       "work and roughly what a second core adds on this machine, not how "
                       "workers scale (see bench/README.md for measuring that on a bigger "
                       "machine).")
    shared = next((r for r in results if re.fullmatch(r"maitre w\d+", r["server"])
                   and r.get("rps")), None)
    own = next((r for r in results if re.fullmatch(r"maitre w\d+ reuseport", r["server"])
                and r.get("rps")), None)
    if shared and own:
        out.append(f"**{own['server']} ÷ {shared['server']}: {own['rps'] / shared['rps']:.1%}** "
                   "of the req/s with a listening socket per worker (SO_REUSEPORT) instead of "
                   "one shared accept queue; bench/balance.py shows how each spreads "
                   "connections and requests over the workers.")
    for name in ("maitre metrics", "maitre accesslog"):
        on = next((r for r in results if r["server"] == name and r.get("rps")), None)
        plain = next((r for r in results if r["server"] == "maitre" and r.get("rps")), None)
        if on and plain:
            what = ("metrics on, /metrics scraped once a second" if name == "maitre metrics"
                    else "access log on")
            out.append(f"**{name} ÷ maitre: {on['rps'] / plain['rps']:.1%}** of the req/s with "
                       f"{what}" + (" (target: at least 97%)" if name == "maitre metrics"
                                    else "") + ".")
    if case.name == "sleep10":
        s = scaling(all_results)
        if s is not None:
            out.append(f"**maitre scaling, t32 ÷ t1: {s:.1f}×** (target: at least 25×; "
                       "ideal 32×).")
    if case.idle:
        out.append(f"RSS: VmRSS summed over the server's processes, read after warm-up (before) "
                   f"and 1 s after the {case.idle:,} idle connections were answered (with "
                   "idle); per idle conn = the difference ÷ connections held. Kernel socket "
                   "buffers are not in RSS. \"req/s vs plaintext\": this row's req/s ÷ the same "
                   "server's `plaintext` req/s in this report.")
        for r in results:
            if "idle_failed" in r:
                out.append(f"**{r['server']} failed the idle case**: {r['idle_failed']}.")
    rps = {r["server"]: r.get("rps") for r in results}
    if rps.get(ALONE):
        out.append(f"**{ALONE}** is not a server: the same app called in a loop in one process "
                   "pinned like the servers (bench/alone.py), each call with a copy of the "
                   "environ maitre built for wrk's request and a fresh `wsgi.input`, the body "
                   "iterated and closed; its req/s are calls/s. \"of app alone\": each row's "
                   "req/s ÷ those calls/s.")
        if rps.get(case.reference):
            out.append(f"**{case.reference}: {rps[case.reference] / rps[ALONE]:.0%} of app "
                       "alone** (target: at least 93%).")
    if rps.get("maitre t1") and rps.get("maitre") and case.name != "sleep10":
        out.append(f"**maitre t1 ÷ maitre: {rps['maitre t1'] / rps['maitre']:.0%}** of the "
                   "req/s with one thread instead of four, on a CPU-bound app (target: within "
                   "10%).")
    return out


def machine_info() -> Dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wrk_v = (wrk_v.stdout or wrk_v.stderr).strip().splitlines()
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain"],
                           capture_output=True, text=True)
    commit = git.stdout.strip() if git.returncode == 0 else "no commit yet"
    if dirty.returncode == 0 and dirty.stdout.strip():
        commit += " + uncommitted changes"
    py = subprocess.run([VENV_PY, "-c", "import platform; print(platform.python_version())"],
                        capture_output=True, text=True).stdout.strip() or platform.python_version()
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            somaxconn = f.read().strip()
    except OSError:
        somaxconn = "?"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "nproc": str(os.cpu_count()),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": py,
        "wrk": wrk_v[0] if wrk_v else "?",
        "commit": commit,
        "somaxconn": somaxconn,
        "nofile": str(resource.getrlimit(resource.RLIMIT_NOFILE)[1]),
    }


def write_markdown(path: str, info: Dict[str, str], all_results: Dict[str, List[dict]],
                   ctx: Ctx, a: argparse.Namespace, command: str, skipped: Dict[str, str],
                   pending: Dict[str, str], chart: Optional[str]) -> str:
    lines = [
        "# maitre benchmark: latest results",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['cpu']}, nproc {info['nproc']}, {info['kernel']} "
        f"(somaxconn {info['somaxconn']}, RLIMIT_NOFILE hard {info['nofile']})",
        f"- Python {info['python']}, {info['wrk']}",
        f"- maitre commit: {info['commit']}",
        f"- command: `{command}`",
        f"- method: server pinned to CPU {PIN.server} (`taskset -c {PIN.server}`), wrk pinned to "
        f"CPU {PIN.client} (`taskset -c {PIN.client} wrk -t{PIN.wrk_threads} -c<conns> "
        f"-d{a.duration}s --latency`)"
        if a.pin else "- method: no CPU pinning (--no-pin)",
        f"- {a.repeat} interleaved round(s); in each, every server in turn is started fresh, "
        f"warmed up with wrk for {a.warmup} s, measured for {a.duration} s, and stopped. "
        "req/s, bytes/s, p50 and p99 are medians over the rounds, errors are summed",
        f"- threads: {ctx.threads} WSGI threads per server unless the case or the row says "
        "otherwise (gunicorn sync: one request at a time)",
        "- ratio column: the reference row's req/s ÷ that server's req/s (above 1: the "
        "reference is faster)",
        "- server CPU: CPU time of the server's processes ÷ wall time during the runs "
        "(100% = one core busy); wrk CPU: the same for wrk. A row whose wrk CPU is near 100% "
        "while its server CPU is not is limited by the load generator, not by the server",
        "- bytes/s: wrk's Transfer/sec (response bytes, headers included), in decimal units; "
        "uploaded/s: req/s × the request body's size",
        "- CPU/req: the server's CPU time over the measured run ÷ the requests wrk completed "
        "in it (median over the rounds)",
        "- peak RSS: VmHWM (the RSS high-water mark since start, warm-up included) summed over "
        "the server's processes, read at the end of the measured run before stopping the "
        "server; the highest over the rounds",
    ]
    if chart:
        lines += ["", f"![chart]({os.path.basename(chart)})"]
    for case in [c for c in CASES if c.name in all_results]:
        results = all_results[case.name]
        conns = a.connections or case.connections
        header, rows = table(case, all_results)
        lines += ["", f"## {case.title} (`{case.name}`, {conns} connections)", "",
                  f"Load: {case.load}.", "", md_table(header, rows), ""]
        for note in case_notes(case, all_results):
            lines += [note, ""]
        lines.append("Servers:")
        lines.append("")
        for r in results:
            s = next(s for s in SERVERS if s.name == r["server"])
            v = s.version()
            runs = ", ".join(f"{x['rps']:,.0f}" for x in r["runs"]) or "-"
            if "spread" in r and len(r["runs"]) > 1:
                runs += f" (spread {r['spread']:.0%})"
            lines.append(f"- **{s.name}** {'' if v == '-' else v + ' '}— {r['describe']}"
                         + (f"; {s.note}" if s.note else "")
                         + f"; req/s per run: {runs}; stop: {r['stop']}"
                         + (f"; **error**: {r['error'].splitlines()[0]}" if "error" in r else ""))
    noisy = [f"{r['server']} ({r['case']}): {r['other_cpu']:.0%}"
             for rs in all_results.values() for r in rs if r.get("other_cpu", 0) > NOISE]
    if noisy:
        lines += ["", f"**Warning: other processes used more than {NOISE:.0%} of a CPU during "
                  "some runs; those numbers are noisy** (highest per server: "
                  + ", ".join(noisy) + ")."]
    unstable = [f"{r['server']} ({r['case']}): {r['spread']:.0%}"
                for rs in all_results.values() for r in rs if r.get("spread", 0) > SPREAD]
    if unstable:
        lines += ["", f"**Warning: req/s varied by more than {SPREAD:.0%} between rounds** "
                  "(max − min over median: " + ", ".join(unstable) + ")."]
    if skipped or pending:
        lines += ["", "Not run:", ""]
        lines += [f"- **{k}**: {v}" for k, v in {**skipped, **pending}.items()]
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def make_chart(json_path: str, png_path: str) -> Optional[str]:
    """bench/chart.py in the venv (matplotlib). Returns the PNG path or None."""
    if not venv_has("matplotlib"):
        log("no matplotlib in bench/.venv: no chart")
        return None
    r = subprocess.run([VENV_PY, os.path.join(BENCH, "chart.py"), json_path, png_path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        log(f"chart.py failed: {r.stderr.strip()}")
        return None
    return png_path


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def norm(name: str) -> str:
    return re.sub(r"[-_ ]+", " ", name.strip().lower())


def select_servers(spec: str) -> List[Server]:
    """Comma-separated names; a family name (`maitre`, `gunicorn`) also selects its variants
    (`maitre t1`, `gunicorn gthread`); `-` or `_` may stand for the space; `all`: all."""
    if spec.strip().lower() == "all":
        return list(SERVERS)
    chosen: List[Server] = []
    for want in [norm(x) for x in spec.split(",") if x.strip()]:
        hits = [s for s in SERVERS if s.name == want or s.name.startswith(want + " ")]
        if not hits:
            sys.exit(f"unknown server: {want} (from: {', '.join(s.name for s in SERVERS)})")
        chosen += [s for s in hits if s not in chosen]
    return [s for s in SERVERS if s in chosen]  # in SERVERS order


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, help="seconds per wrk run (default 5)")
    p.add_argument("--repeat", type=int,
                   help="interleaved rounds: wrk runs per server and case (default 3)")
    p.add_argument("--warmup", type=int, help="seconds of wrk warm-up before each run (default 2)")
    p.add_argument("--quick", action="store_true",
                   help="defaults become 1 round of 3 s with 1 s warm-up")
    p.add_argument("--servers", default="all",
                   help="comma-separated; a family (maitre, gunicorn) selects its variants too; "
                        "from: " + ", ".join(s.name.replace(" ", "-") for s in SERVERS)
                        + " (default: all)")
    p.add_argument("--cases", default=",".join(c.name for c in CASES),
                   help="comma-separated, from: %(default)s")
    p.add_argument("--threads", type=int, default=4,
                   help="WSGI worker threads where the case doesn't set them (default 4)")
    p.add_argument("--connections", type=int, default=0,
                   help="override every case's wrk connection count")
    p.add_argument("--workers", type=int, default=2,
                   help="processes of the `maitre wN` rows (default 2: `maitre w2`, "
                        "`maitre w2 reuseport`)")
    p.add_argument("--server-cpus", default="0",
                   help="taskset -c list for the servers (default 0). With two or more, "
                        "`maitre wN` is pinned there too instead of sharing wrk's CPUs")
    p.add_argument("--client-cpus", default="1",
                   help="taskset -c list for wrk and the idle helper (default 1)")
    p.add_argument("--wrk-threads", type=int, default=1,
                   help="wrk -t (default 1; one per client CPU on a bigger machine)")
    p.add_argument("--no-setup", action="store_true",
                   help="use bench/.venv, wrk and the ceiling binary as they are "
                        "(maitre is still reinstalled unless --no-install)")
    p.add_argument("--no-install", action="store_true",
                   help="don't reinstall maitre from the repo if it is already in bench/.venv")
    p.add_argument("--quiet-wait", type=float, default=60,
                   help="before each run, wait up to this many seconds for other processes to "
                        "leave the CPUs idle (default 60; 0: don't wait)")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="don't use taskset")
    p.add_argument("--report-from", metavar="JSON",
                   help="run nothing: rewrite the Markdown report and the chart from a "
                        "latest.json (e.g. after changing the report's format)")
    p.add_argument("--output", default=os.path.join(RESULTS, "latest.md"),
                   help="Markdown report (default bench/results/latest.md); .json and .png "
                        "next to it")
    a = p.parse_args(argv)
    defaults = (3, 1, 1) if a.quick else (5, 3, 2)
    for name, default in zip(("duration", "repeat", "warmup"), defaults):
        if getattr(a, name) is None:
            setattr(a, name, default)
    if a.duration < 1 or a.repeat < 1 or a.warmup < 0:
        p.error("--duration and --repeat must be at least 1, --warmup at least 0")
    return a


def report_from(json_path: str, output: str) -> int:
    with open(json_path) as f:
        data = json.load(f)
    a = argparse.Namespace(**data["args"])
    a.output = output
    PIN.server, PIN.client = a.server_cpus, a.client_cpus
    PIN.wrk_threads = a.wrk_threads
    if a.workers != 2:
        set_workers(a.workers)
    base = os.path.splitext(output)[0]
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    if os.path.abspath(base + ".json") != os.path.abspath(json_path):
        shutil.copyfile(json_path, base + ".json")
    chart = make_chart(base + ".json", base + ".png")
    write_markdown(output, data["info"], data["results"], Ctx(threads=a.threads), a,
                   data["command"], data.get("skipped", {}), data.get("pending", {}), chart)
    print(f"wrote {output}" + (f" and {chart}" if chart else ""))
    return 0


def main(argv: List[str]) -> int:
    a = parse_args(argv)
    if a.report_from:
        return report_from(a.report_from, a.output)
    command = "python bench/run.py" + ("" if not argv else " " + shlex.join(argv))
    cases = {c.name: c for c in CASES}
    unknown = [n for n in a.cases.split(",") if n not in cases]
    if unknown:
        sys.exit(f"unknown case: {', '.join(unknown)} (from: {', '.join(cases)})")
    chosen_cases = [cases[n] for n in a.cases.split(",")]
    PIN.server, PIN.client, PIN.wrk_threads = a.server_cpus, a.client_cpus, a.wrk_threads
    for spec in (PIN.server, PIN.client):
        try:
            cpu_list(spec)
        except ValueError:
            sys.exit(f"not a CPU list: {spec!r} (taskset -c syntax: 0 or 0-3 or 0,2)")
    if a.workers != 2:
        set_workers(a.workers)
    # The app-alone row is what the flask and django cases measure against: always in them.
    servers = [s for s in select_servers(a.servers) if not s.is_alone] + [
        s for s in SERVERS if s.is_alone]
    servers = [s for s in servers if any(runs_in(s, c) for c in chosen_cases)]
    if a.pin and (os.cpu_count() or 1) < 2:
        log("fewer than 2 CPUs: not pinning")
        a.pin = False

    skipped: Dict[str, str] = {}  # could not be set up: the run fails
    pending: Dict[str, str] = {}  # not available yet (e.g. maitre w2): reported, not a failure
    if not a.no_setup:
        ensure_tools(a.pin, any(c.front for c in chosen_cases))
        skipped.update(ensure_venv(servers, install_maitre=not a.no_install))
        if any(s.is_ceiling for s in servers):
            problem = ensure_ceiling()
            if problem:
                skipped["ceiling"] = problem
    elif not a.no_install and any(s.uses_maitre() for s in servers):
        # The report names the repository's commit: measure that build, even
        # when the rest of the set-up is skipped.
        r = sh([VENV_PY, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", ROOT])
        if r.returncode != 0:
            for s in servers:
                if s.uses_maitre():
                    skipped[s.name] = f"`pip install {ROOT}` failed (exit {r.returncode})"
    for s in servers:
        if s.name not in skipped and s.available is not None:
            problem = s.available()
            if problem:
                pending[s.name] = problem
    for name, why in {**skipped, **pending}.items():
        log(f"not running {name}: {why}")
    servers = [s for s in servers if s.name not in skipped and s.name not in pending]

    if any(c.data for c in chosen_cases):
        ensure_data()
    ctx = Ctx(threads=a.threads)
    all_results: Dict[str, List[dict]] = {}
    try:
        for case in chosen_cases:
            all_results[case.name] = measure_case(
                case, [s for s in servers if runs_in(s, case)], ctx, a)
    finally:
        if _TMPDIR:
            shutil.rmtree(_TMPDIR, ignore_errors=True)

    info = machine_info()
    for case in chosen_cases:
        print(f"\n{case.title} ({case.name}): {a.repeat} x {a.duration} s, "
              f"{a.connections or case.connections} connections")
        print(text_table(*table(case, all_results)))
        for note in case_notes(case, all_results)[len(case.notes):]:
            print(note.replace("**", ""))
    for name, why in {**skipped, **pending}.items():
        print(f"not run: {name}: {why}")
    for rs in all_results.values():
        for r in rs:
            if r.get("spread", 0) > SPREAD:
                print(f"warning: {r['server']} ({r['case']}) req/s varied by "
                      f"{r['spread']:.0%} between rounds")
            if r.get("other_cpu", 0) > NOISE:
                print(f"warning: other processes used {r['other_cpu']:.0%} of a CPU while "
                      f"{r['server']} ran ({r['case']}): its numbers are noisy")

    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    base = os.path.splitext(a.output)[0]
    json_path, png_path = base + ".json", base + ".png"
    with open(json_path, "w") as f:
        json.dump({"info": info, "command": command, "args": vars(a), "skipped": skipped,
                   "pending": pending, "scaling_t32_t1": scaling(all_results),
                   "cases": {c.name: {"title": c.title, "connections": a.connections or
                                      c.connections, "reference": c.reference,
                                      "bytes_per_sec": c.bytes_per_sec, "idle": c.idle,
                                      "upload": c.upload}
                             for c in chosen_cases},
                   "results": all_results}, f, indent=1)
    chart = make_chart(json_path, png_path)
    write_markdown(a.output, info, all_results, ctx, a, command, skipped, pending, chart)
    show = lambda p: p if os.path.relpath(p).startswith("..") else os.path.relpath(p)  # noqa: E731
    print(f"\nwrote {', '.join(show(os.path.abspath(p)) for p in [a.output, json_path] + ([chart] if chart else []))}")
    failed = any("error" in r for rs in all_results.values() for r in rs)
    return 1 if failed or skipped else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
