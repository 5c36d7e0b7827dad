#!/usr/bin/env python3
"""maitre's benchmark harness: one command, stdlib only.

    python bench/run.py                       # everything: 3 x 10 s per server and case
    python bench/run.py --quick               # 1 x 3 s, for a smoke test
    python bench/run.py --servers maitre,waitress --duration 20 --repeat 5

What it does, in order:
  1. setup (skip with --no-setup): apt-get install wrk if missing; a venv at bench/.venv with
     waitress and granian from PyPI; maitre installed from the repo root into that venv;
     the ceiling server (bench/ceiling) built with cargo.
  2. for each case, --repeat interleaved rounds; in each round, for each server: start it
     pinned to CPU 0 (taskset -c 0), wait until its port accepts, check one response, warm
     up with wrk, run `taskset -c 1 wrk -t1 -c<conns> -d<dur>s --latency` once, stop it
     (SIGTERM, then SIGKILL after 10 s).
  3. print a table per case (median req/s, median p50/p99 latency, errors, maitre/server
     ratio) and write bench/results/latest.md (+ latest.json with every run).

Adding a server: append a `Server` to SERVERS. Adding a case: an app in bench/apps.py and a
`Case` in CASES.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
VENV = os.path.join(BENCH, ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")
CEILING_DIR = os.path.join(BENCH, "ceiling")
CEILING_BIN = os.path.join(CEILING_DIR, "target", "release", "maitre-ceiling")
RESULTS = os.path.join(BENCH, "results")
LOGS = os.path.join(RESULTS, "logs")
HOST = "127.0.0.1"
SERVER_CPU = "0"
CLIENT_CPU = "1"
NOISE = 0.10  # other processes' CPU (fraction of one CPU) above which a run is flagged as noisy
QUIET = 0.05  # busy CPU (fraction of one) below which the machine counts as idle before a run
SPREAD = 0.10  # (max - min) / median of req/s over the rounds above which results are flagged
REFERENCE = "maitre"  # the ratio column is REFERENCE req/s divided by each server's req/s


# --------------------------------------------------------------------------------------------
# Cases and servers
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One workload: which app every server runs and how wrk drives it."""

    name: str
    title: str
    app: str  # attribute of bench/apps.py
    path: str = "/"
    connections: int = 50
    wrk_args: List[str] = field(default_factory=list)  # extra wrk args (-H ..., -s script.lua)
    expect_body: Optional[bytes] = None  # sanity check of one response before measuring
    ceiling: bool = True  # the canned-response ceiling only makes sense for some cases


CASES: List[Case] = [
    Case(
        name="plaintext",
        title="Plaintext hello world, keep-alive",
        app="plaintext",
        expect_body=b"Hello, world!",
    ),
    # Next: 1 MiB responses, 64 KiB POST echo, Connection: close, 5000 idle connections,
    # sleeping app. Each is a Case here plus an app in apps.py (and a wrk Lua script if needed).
]


@dataclass
class Ctx:
    threads: int


@dataclass
class Server:
    name: str
    # (ctx, case, port) -> argv, run with cwd=bench/ and pinned by run.py.
    argv: Callable[[Ctx, Case, int], List[str]]
    describe: Callable[[Ctx], str]
    version: Callable[[], str]
    pypi: List[str] = field(default_factory=list)  # requirements pip-installed into bench/.venv
    is_ceiling: bool = False


def _launcher(server: str) -> Callable[[Ctx, Case, int], List[str]]:
    def argv(ctx: Ctx, case: Case, port: int) -> List[str]:
        return [VENV_PY, os.path.join(BENCH, "launch.py"), server, "--app", case.app,
                "--host", HOST, "--port", str(port), "--threads", str(ctx.threads)]
    return argv


def _granian_argv(ctx: Ctx, case: Case, port: int) -> List[str]:
    return [os.path.join(VENV, "bin", "granian"), "--interface", "wsgi", "--http", "1",
            "--no-ws", "--workers", "1", "--runtime-threads", "1",
            "--blocking-threads", str(ctx.threads), "--no-access-log", "--log-level", "warning",
            "--host", HOST, "--port", str(port), "--working-dir", BENCH, f"apps:{case.app}"]


def _ceiling_argv(ctx: Ctx, case: Case, port: int) -> List[str]:
    return [CEILING_BIN, "--host", HOST, "--port", str(port)]


def _pkg_version(dist: str) -> Callable[[], str]:
    def version() -> str:
        code = f"import importlib.metadata as m; print(m.version({dist!r}))"
        r = subprocess.run([VENV_PY, "-c", code], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else "not installed"
    return version


SERVERS: List[Server] = [
    Server("maitre", _launcher("maitre"),
           lambda c: f"`serve(app, threads={c.threads})`", _pkg_version("maitre")),
    Server("waitress", _launcher("waitress"),
           lambda c: f"`serve(app, threads={c.threads})`", _pkg_version("waitress"),
           pypi=["waitress"]),
    Server("granian", _granian_argv,
           lambda c: f"`--interface wsgi --http 1 --workers 1 --runtime-threads 1 "
                     f"--blocking-threads {c.threads}`",
           _pkg_version("granian"), pypi=["granian"]),
    Server("ceiling", _ceiling_argv,
           lambda c: "bare mio + httparse, 1 thread, canned response (bench/ceiling)",
           lambda: "-", is_ceiling=True),
    # Next: gunicorn sync / gthread, pyruvate: a Server each (a launcher entry or a CLI argv).
]

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


def ensure_tools(pin: bool) -> None:
    missing = [t for t in (["wrk"] + (["taskset"] if pin else [])) if not shutil.which(t)]
    if not missing:
        return
    pkgs = {"wrk": "wrk", "taskset": "util-linux"}
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
    names = {s.name for s in servers}
    wanted = [req for s in servers for req in s.pypi]
    installed = subprocess.run([VENV_PY, "-m", "pip", "freeze"], capture_output=True,
                               text=True).stdout.lower()
    have = {line.split("==")[0].strip() for line in installed.splitlines()}
    from_pypi = [r for r in wanted if re.split(r"[<>=!~\[ ]", r)[0].lower() not in have]
    if from_pypi:
        sh([VENV_PY, "-m", "pip", "install", "-q"] + from_pypi, check=True)
    if "maitre" in names:
        if install_maitre or not venv_has("maitre"):
            r = sh([VENV_PY, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", ROOT])
            if r.returncode != 0:
                problems["maitre"] = f"`pip install {ROOT}` failed (exit {r.returncode})"
        if "maitre" not in problems and not venv_has("maitre"):
            problems["maitre"] = "`import maitre` fails in bench/.venv"
    return problems


def ensure_ceiling() -> Optional[str]:
    r = sh(["cargo", "build", "--release", "--quiet",
            "--manifest-path", os.path.join(CEILING_DIR, "Cargo.toml")])
    if r.returncode != 0 or not os.path.exists(CEILING_BIN):
        return f"cargo build of bench/ceiling failed (exit {r.returncode})"
    return None


# --------------------------------------------------------------------------------------------
# Running servers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pinned(cpu: str, argv: List[str], pin: bool) -> List[str]:
    return ["taskset", "-c", cpu] + argv if pin else argv


class Running:
    def __init__(self, server: Server, case: Case, ctx: Ctx, pin: bool):
        self.server = server
        self.port = free_port()
        os.makedirs(LOGS, exist_ok=True)
        self.log_path = os.path.join(LOGS, f"{case.name}-{server.name}.log")
        self.log_file = open(self.log_path, "wb")
        argv = pinned(SERVER_CPU, server.argv(ctx, case, self.port), pin)
        self.argv = argv
        log(f"start {server.name}: {shlex.join(argv)}")
        # Own session, so that stopping it reaches every process it started (granian's worker).
        self.proc = subprocess.Popen(argv, cwd=BENCH, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, n: int = 20) -> str:
        self.log_file.flush()
        with open(self.log_path, "rb") as f:
            return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.server.name} exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.server.name} did not accept on port {self.port} "
                           f"within {timeout:.0f} s:\n" + self.log_tail())

    def check(self, case: Case) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            conn.request("GET", case.path)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200 or (case.expect_body is not None and body != case.expect_body):
            raise RuntimeError(f"{self.server.name}: unexpected response "
                               f"{resp.status} {body[:80]!r}")

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the server's session."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # fields[0] is field 3 (state): session is field 6, utime 14, stime 15.
            if int(fields[3]) == self.proc.pid:
                total += int(fields[11]) + int(fields[12])
        return total / tick

    def stop(self, grace: float = 10.0) -> str:
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
        log(f"stop {self.server.name}: {outcome}")
        return outcome


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(out: str) -> dict:
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError("cannot parse wrk output:\n" + out)
    res = {"rps": float(m.group(1)), "latency_ms": {}, "socket_errors": {}, "non2xx3xx": 0}
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


def wrk(case: Case, port: int, duration: int, connections: int, pin: bool) -> dict:
    argv = pinned(CLIENT_CPU, ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
                               *case.wrk_args, f"http://{HOST}:{port}{case.path}"], pin)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, cwd=BENCH)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stderr.strip()}")
    res = parse_wrk(r.stdout)
    # wrk is the only child reaped meanwhile (servers are reaped when stopped).
    res["client_cpu"] = (after.ru_utime + after.ru_stime
                         - before.ru_utime - before.ru_stime) / wall
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


def run_once(server: Server, case: Case, ctx: Ctx, a: argparse.Namespace, rnd: int) -> dict:
    """Start `server`, warm it up, measure one wrk run, stop it. Raises on failure."""
    if a.quiet_wait > 0:
        wait_for_quiet(a.quiet_wait)
    srv = Running(server, case, ctx, a.pin)
    conns = a.connections or case.connections
    try:
        srv.wait_ready()
        srv.check(case)
        if a.warmup > 0:
            wrk(case, srv.port, a.warmup, conns, a.pin)
        cpu0, stat0, t0 = srv.cpu_seconds(), cpu_times(), time.monotonic()
        run = wrk(case, srv.port, a.duration, conns, a.pin)
        wall = time.monotonic() - t0
        stat1 = cpu_times()
        run["server_cpu"] = (srv.cpu_seconds() - cpu0) / wall
        # Process CPU on the whole machine that is neither the server nor wrk: other
        # processes competing for the two CPUs (interrupt time is not included).
        d = [y - x for x, y in zip(stat0, stat1)]
        tick = os.sysconf("SC_CLK_TCK")
        run["other_cpu"] = max(0.0, (d[0] + d[1] + d[2]) / tick / wall
                               - run["server_cpu"] - run["client_cpu"])
        run["steal_cpu"] = d[7] / tick / wall
        run["idle_cpu"] = (d[3] + d[4]) / tick / wall
        run["irq_cpu"] = (d[5] + d[6]) / tick / wall
        if srv.proc.poll() is not None:
            raise RuntimeError(f"{server.name} died during the run:\n" + srv.log_tail())
        log(f"round {rnd}/{a.repeat} {server.name}: {run['rps']:,.0f} req/s, "
            f"p50 {fmt_ms(run['latency_ms'].get('50'))}, "
            f"p99 {fmt_ms(run['latency_ms'].get('99'))}, errors {run['errors']}, "
            f"server CPU {run['server_cpu']:.0%}, wrk CPU {run['client_cpu']:.0%}, "
            f"other CPU {run['other_cpu']:.0%}")
        return run
    finally:
        run_stop = srv.stop()
        STOPS.setdefault((case.name, server.name), []).append(run_stop)
        COMMANDS[(case.name, server.name)] = shlex.join(srv.argv)


STOPS: Dict[tuple, List[str]] = {}
COMMANDS: Dict[tuple, str] = {}


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
        aggregate(result)
    return list(results.values())


def aggregate(result: dict) -> None:
    runs = result["runs"]
    if not runs or "error" in result:
        return
    med = statistics.median
    result["rps"] = med(r["rps"] for r in runs)
    result["p50_ms"] = med(r["latency_ms"].get("50", float("nan")) for r in runs)
    result["p99_ms"] = med(r["latency_ms"].get("99", float("nan")) for r in runs)
    result["errors"] = sum(r["errors"] for r in runs)
    result["server_cpu"] = med(r["server_cpu"] for r in runs)
    result["client_cpu"] = med(r["client_cpu"] for r in runs)
    result["other_cpu"] = max(r["other_cpu"] for r in runs)
    rps = [r["rps"] for r in runs]
    result["spread"] = (max(rps) - min(rps)) / result["rps"] if result["rps"] else 0.0
    kinds: Dict[str, int] = {}
    for r in runs:
        for k, v in r["socket_errors"].items():
            kinds[k] = kinds.get(k, 0) + v
        kinds["non-2xx/3xx"] = kinds.get("non-2xx/3xx", 0) + r["non2xx3xx"]
    result["error_kinds"] = {k: v for k, v in kinds.items() if v}


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def fmt_ms(v: Optional[float]) -> str:
    if v is None or v != v:
        return "-"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms"


def fmt_errors(r: dict) -> str:
    if "errors" not in r:
        return "-"
    if not r["errors"]:
        return "0"
    return f"{r['errors']} ({', '.join(f'{k} {v}' for k, v in r['error_kinds'].items())})"


def table_rows(results: List[dict]) -> List[List[str]]:
    ref = next((r for r in results if r["server"] == REFERENCE and "rps" in r), None)
    rows = []
    for r in results:
        if "rps" not in r:
            rows.append([r["server"], "failed"] + ["-"] * (len(HEADER) - 2))
            continue
        ratio = f"{ref['rps'] / r['rps']:.2f}" if ref else "-"
        rows.append([r["server"], f"{r['rps']:,.0f}", fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]),
                     fmt_errors(r), f"{r['server_cpu']:.0%}", f"{r['client_cpu']:.0%}", ratio])
    return rows


HEADER = ["server", "req/s", "p50", "p99", "errors", "server CPU", "wrk CPU",
          f"{REFERENCE}/server"]


def text_table(rows: List[List[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(HEADER, *rows)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(HEADER), line(["-" * w for w in widths])] + [line(r) for r in rows])


def md_table(rows: List[List[str]]) -> str:
    out = ["| " + " | ".join(HEADER) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(HEADER) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


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
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "nproc": str(os.cpu_count()),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": py,
        "wrk": wrk_v[0] if wrk_v else "?",
        "commit": commit,
    }


def write_markdown(path: str, info: Dict[str, str], all_results: Dict[str, List[dict]],
                   ctx: Ctx, a: argparse.Namespace, command: str, skipped: Dict[str, str]) -> str:
    lines = [
        "# maitre benchmark: latest results",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['cpu']}, nproc {info['nproc']}, {info['kernel']}",
        f"- Python {info['python']}, {info['wrk']}",
        f"- maitre commit: {info['commit']}",
        f"- command: `{command}`",
        f"- method: server pinned to CPU {SERVER_CPU} (`taskset -c {SERVER_CPU}`), wrk pinned to "
        f"CPU {CLIENT_CPU} (`taskset -c {CLIENT_CPU} wrk -t1 -c<conns> -d{a.duration}s --latency`)"
        if a.pin else "- method: no CPU pinning (--no-pin)",
        f"- {a.repeat} interleaved round(s); in each, every server in turn is started fresh, "
        f"warmed up with wrk for {a.warmup} s, measured for {a.duration} s, and stopped. "
        "req/s, p50 and p99 are medians over the rounds, errors are summed",
        f"- ratio column: {REFERENCE} req/s ÷ that server's req/s (above 1: {REFERENCE} is faster)",
        "- server CPU: CPU time of the server's processes ÷ wall time during the runs "
        "(100% = one core busy); wrk CPU: the same for wrk. A row whose wrk CPU is near 100% "
        "while its server CPU is not is limited by the load generator, not by the server",
    ]
    for case in [c for c in CASES if c.name in all_results]:
        results = all_results[case.name]
        conns = a.connections or case.connections
        lines += ["", f"## {case.title} (`{case.name}`, {conns} connections, "
                      f"`GET {case.path}`)", "", md_table(table_rows(results)), ""]
        lines.append("Servers:")
        lines.append("")
        for r in results:
            s = next(s for s in SERVERS if s.name == r["server"])
            v = s.version()
            runs = ", ".join(f"{x['rps']:,.0f}" for x in r["runs"]) or "-"
            if "spread" in r and len(r["runs"]) > 1:
                runs += f" (spread {r['spread']:.0%})"
            lines.append(f"- **{s.name}** {'' if v == '-' else v + ' '}— {s.describe(ctx)}; "
                         f"req/s per run: {runs}; stop: {r['stop']}"
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
    if skipped:
        lines += ["", "Not run:", ""]
        lines += [f"- **{k}**: {v}" for k, v in skipped.items()]
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, help="seconds per wrk run (default 10)")
    p.add_argument("--repeat", type=int,
                   help="interleaved rounds: wrk runs per server and case (default 3)")
    p.add_argument("--warmup", type=int, help="seconds of wrk warm-up before each run (default 3)")
    p.add_argument("--quick", action="store_true",
                   help="defaults become 1 round of 3 s with 1 s warm-up")
    p.add_argument("--servers", default=",".join(s.name for s in SERVERS),
                   help="comma-separated, from: %(default)s")
    p.add_argument("--cases", default=",".join(c.name for c in CASES),
                   help="comma-separated, from: %(default)s")
    p.add_argument("--threads", type=int, default=4, help="WSGI worker threads (default 4)")
    p.add_argument("--connections", type=int, default=0,
                   help="override every case's wrk connection count")
    p.add_argument("--no-setup", action="store_true",
                   help="use bench/.venv, wrk and the ceiling binary as they are")
    p.add_argument("--no-install", action="store_true",
                   help="don't reinstall maitre from the repo if it is already in bench/.venv")
    p.add_argument("--quiet-wait", type=float, default=60,
                   help="before each run, wait up to this many seconds for other processes to "
                        "leave the CPUs idle (default 60; 0: don't wait)")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="don't use taskset")
    p.add_argument("--output", default=os.path.join(RESULTS, "latest.md"),
                   help="Markdown report (default bench/results/latest.md); JSON next to it")
    a = p.parse_args(argv)
    defaults = (3, 1, 1) if a.quick else (10, 3, 3)
    for name, default in zip(("duration", "repeat", "warmup"), defaults):
        if getattr(a, name) is None:
            setattr(a, name, default)
    if a.duration < 1 or a.repeat < 1 or a.warmup < 0:
        p.error("--duration and --repeat must be at least 1, --warmup at least 0")
    return a


def main(argv: List[str]) -> int:
    a = parse_args(argv)
    command = "python bench/run.py" + ("" if not argv else " " + shlex.join(argv))
    by_name = {s.name: s for s in SERVERS}
    unknown = [n for n in a.servers.split(",") if n not in by_name]
    cases = {c.name: c for c in CASES}
    unknown += [n for n in a.cases.split(",") if n not in cases]
    if unknown:
        sys.exit(f"unknown server or case: {', '.join(unknown)}")
    servers = [by_name[n] for n in a.servers.split(",")]
    if a.pin and (os.cpu_count() or 1) < 2:
        log("fewer than 2 CPUs: not pinning")
        a.pin = False

    skipped: Dict[str, str] = {}
    if not a.no_setup:
        ensure_tools(a.pin)
        skipped.update(ensure_venv(servers, install_maitre=not a.no_install))
        if any(s.is_ceiling for s in servers):
            problem = ensure_ceiling()
            if problem:
                skipped["ceiling"] = problem
    for name, why in skipped.items():
        log(f"skipping {name}: {why}")
    servers = [s for s in servers if s.name not in skipped]

    ctx = Ctx(threads=a.threads)
    all_results: Dict[str, List[dict]] = {}
    for name in a.cases.split(","):
        case = cases[name]
        all_results[name] = measure_case(
            case, [s for s in servers if case.ceiling or not s.is_ceiling], ctx, a)

    info = machine_info()
    for name, results in all_results.items():
        print(f"\n{cases[name].title} ({name}): {a.repeat} x {a.duration} s, "
              f"{a.connections or cases[name].connections} connections")
        print(text_table(table_rows(results)))
    for name, why in skipped.items():
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
    write_markdown(a.output, info, all_results, ctx, a, command, skipped)
    json_path = os.path.splitext(a.output)[0] + ".json"
    with open(json_path, "w") as f:
        json.dump({"info": info, "command": command, "args": vars(a), "skipped": skipped,
                   "results": all_results}, f, indent=1)
    show = lambda p: p if os.path.relpath(p).startswith("..") else os.path.relpath(p)  # noqa: E731
    print(f"\nwrote {show(os.path.abspath(a.output))} and {show(os.path.abspath(json_path))}")
    failed = any("error" in r for rs in all_results.values() for r in rs)
    return 1 if failed or skipped else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
